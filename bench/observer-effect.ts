/**
 * Observer effect: what hookmeter's own exec probe costs the loop it measures. Every round runs
 * one block of each condition in a shuffled order: no probe attached, the probe in batched mode
 * (both mechanisms, ring buffer only, perf buffer only), and the probe waking its reader on every
 * record. Each probe condition is reported as the ratio of its pooled median exec latency to the
 * no-probe blocks', with a 95 % paired bootstrap interval over rounds.
 *
 *   node_modules/.bin/bun bench/observer-effect.ts [--blocks N] [--block-size N] [--json]
 */
import type { AttachOptions } from '../agent/probe.ts'
import { ExecProbe } from '../agent/probe.ts'
import type { Mechanism } from '../libbpf-bindings/reader.ts'
import {
  BINARY,
  blockSummary,
  concat,
  describeEnvironment,
  environment,
  fmtRatio,
  hookmeterBlock,
  foreignPrograms,
  leftoverPrograms,
  median,
  onInterrupt,
  pairedRatio,
  parseOptions,
  probeIdentity,
  progress,
  rng,
  secondsSince,
  shuffled,
  us,
  verdict,
  writeRaw,
  type BlockSummary,
  type GoalVerdict,
  type RatioEstimate,
} from './lib.ts'

interface Condition {
  name: string
  attach?: AttachOptions
  /** the goal, for the batched conditions only: the loop slowed by under 1 % */
  goalAtMost?: number
}

const CONDITIONS: Condition[] = [
  { name: 'none' },
  { name: 'batched (both)', attach: { policy: 'batched' }, goalAtMost: 1.01 },
  {
    name: 'batched ringbuf',
    attach: { policy: 'batched', mechanisms: ['ringbuf'] },
    goalAtMost: 1.01,
  },
  { name: 'batched perf', attach: { policy: 'batched', mechanisms: ['perf'] }, goalAtMost: 1.01 },
  { name: 'per-record (both)', attach: { policy: 'per-record' } },
]

interface Delivery {
  /** the loop's children, warm-up included: each one should arrive once per mechanism */
  expected: number
  seen: Record<Mechanism, number>
  lost: Record<Mechanism, number>
}

const opts = parseOptions(process.argv.slice(2), 'observer-effect')
const started = performance.now()
const env = environment()
const random = rng(opts.seed)

const probe = await ExecProbe.load()
const own = probeIdentity(probe)
onInterrupt(async () => {
  if (probe.attached) await probe.detach().catch(() => {})
  probe.close()
})

const blocks = new Map<string, Float64Array[]>(CONDITIONS.map((c) => [c.name, []]))
const summaries = new Map<string, BlockSummary[]>(CONDITIONS.map((c) => [c.name, []]))
const delivery = new Map<string, Delivery>()

try {
  progress(`warm-up: ${opts.warmup} execs of ${BINARY}, no probe attached`)
  await hookmeterBlock(Math.max(1, opts.warmup), 0)

  for (let round = 0; round < opts.blocks; round++) {
    const order = shuffled(CONDITIONS, random)
    progress(`round ${round + 1}/${opts.blocks}: ${order.map((c) => c.name).join(', ')}`)
    for (const [slot, cond] of order.entries()) {
      let lat: Float64Array
      if (cond.attach) {
        // attach and detach lie outside the timed execs: only the probe's per-exec cost is measured
        await probe.attach(cond.attach)
        let collected
        try {
          lat = await hookmeterBlock(opts.blockSize, opts.blockWarmup, probe)
        } finally {
          collected = await probe.detach()
        }
        const d = delivery.get(cond.name) ?? {
          expected: 0,
          seen: { ringbuf: 0, perf: 0 },
          lost: { ringbuf: 0, perf: 0 },
        }
        d.expected += opts.blockSize + opts.blockWarmup
        for (const m of ['ringbuf', 'perf'] as const) {
          d.seen[m] += collected.records[m].length
          d.lost[m] += collected.lost[m]
        }
        delivery.set(cond.name, d)
      } else {
        lat = await hookmeterBlock(opts.blockSize, opts.blockWarmup)
      }
      blocks.get(cond.name)!.push(lat)
      const s = blockSummary(round, slot, lat)
      summaries.get(cond.name)!.push(s)
      progress(`  ${cond.name.padEnd(18)} median ${(s.medianNs / 1e3).toFixed(1)} µs`)
    }
  }
} finally {
  probe.close()
}

const reference = blocks.get('none')!
const ratios = new Map<
  string,
  RatioEstimate & { goal?: { atMost: number; verdict: GoalVerdict } }
>()
for (const [i, cond] of CONDITIONS.entries()) {
  if (!cond.attach) continue
  const est = pairedRatio(blocks.get(cond.name)!, reference, opts.bootstrapReps, opts.seed + i)
  ratios.set(cond.name, {
    ...est,
    ...(cond.goalAtMost
      ? { goal: { atMost: cond.goalAtMost, verdict: verdict(est, cond.goalAtMost) } }
      : {}),
  })
}
writeRaw(opts.raw, Object.fromEntries(blocks))
const leftover = leftoverPrograms(own)
const othersAtEnd = foreignPrograms(own)
const durationS = secondsSince(started)

{
  const out = {
    benchmark: 'observer-effect',
    environment: env,
    options: opts,
    bootstrap: { unit: 'round (paired blocks)', reps: opts.bootstrapReps, level: 0.95 },
    conditions: Object.fromEntries(
      CONDITIONS.map((c) => [
        c.name,
        {
          pooledMedianNs: median(concat(blocks.get(c.name)!)),
          blocks: summaries.get(c.name),
          delivery: delivery.get(c.name) ?? null,
        },
      ])
    ),
    ratiosVsNone: Object.fromEntries(ratios),
    leftoverOwnPrograms: leftover,
    otherProgramsAtEnd: othersAtEnd,
    durationS,
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
}
{
  const lines = [
    `observer effect of the exec probe on a loop of ${BINARY}`,
    describeEnvironment(env),
    `${opts.blocks} rounds × ${CONDITIONS.length} conditions × ${opts.blockSize} execs ` +
      `(+${opts.blockWarmup} warm-up per block, ${opts.warmup} before the first), ` +
      `order shuffled per round, seed ${opts.seed}`,
    '',
    `${'condition'.padEnd(20)}${'pooled median'.padStart(14)}   block medians min … max`,
  ]
  for (const c of CONDITIONS) {
    const bs = blocks.get(c.name)!
    const meds = bs.map((b) => median(b))
    lines.push(
      `${c.name.padEnd(20)}${us(median(concat(bs))).padStart(14)}   ${us(Math.min(...meds))} … ${us(
        Math.max(...meds)
      )}`
    )
  }
  lines.push(
    '',
    `ratio to none: pooled medians, 95 % interval from ${opts.bootstrapReps} bootstrap resamples ` +
      'of whole rounds (paired blocks)'
  )
  for (const [name, r] of ratios) {
    const goal = r.goal ? `   goal ≤ ${r.goal.atMost}: ${r.goal.verdict}` : ''
    lines.push(`${name.padEnd(20)}${fmtRatio(r)}${goal}`)
  }
  lines.push('', 'records per mechanism (the loop children, warm-up included):')
  for (const c of CONDITIONS) {
    const d = delivery.get(c.name)
    if (!c.attach || !d) continue
    const name = c.name
    const mechs = c.attach.mechanisms ?? ['ringbuf', 'perf']
    const parts = mechs.map((m) => `${m} ${d.seen[m]}/${d.expected} seen, ${d.lost[m]} lost`)
    lines.push(`${name.padEnd(20)}${parts.join('; ')}`)
  }
  lines.push(
    '',
    `other eBPF programs loaded at the end: ${othersAtEnd.join(', ') || 'none'}`,
    leftover.length
      ? `LEFT LOADED: ${leftover.join(', ')}`
      : 'none of our probe programs left loaded',
    `took ${durationS} s`
  )
  // with --json, stdout carries the JSON alone and the summary goes to stderr
  ;(opts.json ? process.stderr : process.stdout).write(`${lines.join('\n')}\n`)
}
