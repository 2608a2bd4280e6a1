/**
 * The cost of BPF run-time statistics themselves: the exec loop with statistics on (our own
 * BPF_ENABLE_STATS fd held for the block) vs off (no fd held by us, kernel.bpf_stats_enabled 0),
 * in interleaved blocks. With statistics on, the kernel reads sched_clock() twice around every
 * program run, so the cost grows with the programs that run per exec: hookmeter's probe is
 * attached (batched) in both conditions, and a second phase adds Debian's libbpf-tools execsnoop,
 * a real third-party tool whose reader is woken on every exec.
 *
 * Whether statistics really were off is checked, not assumed: the counters of the probe's own
 * programs must not move during an "off" block. Another tenant holding an enable fd or setting
 * the sysctl makes them move; such rounds are left out and counted.
 *
 *   node_modules/.bin/bun bench/stats-cost.ts [--blocks N] [--block-size N] [--json]
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { ExecProbe } from '../agent/probe.ts'
import { programCounters } from '../libbpf-bindings/enumerate.ts'
import { readStatsSysctl, StatsSession, type StatsMode } from '../libbpf-bindings/stats.ts'
import { ensureTracefs } from '../libbpf-bindings/tracefs.ts'
import {
  BINARY,
  concat,
  describeEnvironment,
  environment,
  fmtRatio,
  hookmeterBlock,
  foreignPrograms,
  foreignStatsHolders,
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
  writeRaw,
  type RatioEstimate,
} from './lib.ts'

const EXECSNOOP = '/usr/sbin/execsnoop'
/** execsnoop attaches sys_enter_execve and sys_exit_execve, each through a perf-event bpf_link */
const EXECSNOOP_LINKS = 2
const READY_TIMEOUT_MS = 20_000
/** longest wait, before one round, for other tenants to stop keeping statistics on */
const CLEAN_WAIT_MS = 120_000

const opts = parseOptions(process.argv.slice(2), 'stats-cost')
const started = performance.now()

const sysctlAtStart = readStatsSysctl()
if (sysctlAtStart === 1) {
  const reason =
    'kernel.bpf_stats_enabled is 1, so BPF statistics are on for every program whatever this ' +
    'benchmark does and cannot be switched off; nothing was measured. Run it again when the ' +
    'sysctl is 0 (this benchmark never writes it).'
  const out = opts.json
    ? JSON.stringify({ benchmark: 'stats-cost', skipped: true, reason })
    : `stats-cost: ${reason}`
  process.stdout.write(`${out}\n`)
  process.exit(0)
}

const env = environment()
const random = rng(opts.seed)
const tracefsProblem = ensureTracefs()
if (tracefsProblem) {
  process.stderr.write(`stats-cost: ${tracefsProblem}\n`)
  process.exit(1)
}

const probe = await ExecProbe.load()
const own = probeIdentity(probe)
const probeIds = own.map((p) => p.id)
let execsnoop: ExecsnoopRun | null = null
let stats: StatsSession | null = null

const cleanup = async () => {
  stats?.close()
  if (probe.attached) await probe.detach().catch(() => {})
  probe.close()
  if (execsnoop) await stopExecsnoop(execsnoop)
}
onInterrupt(cleanup)

interface ExecsnoopRun {
  child: Bun.Subprocess
  dir: string
  stderrPath: string
  progIds: number[]
}

/** Starts execsnoop with its output discarded and waits until both its programs are attached. */
async function startExecsnoop(): Promise<ExecsnoopRun> {
  const dir = mkdtempSync(join(tmpdir(), 'hookmeter-execsnoop-'))
  const stderrPath = join(dir, 'stderr')
  const child = Bun.spawn([EXECSNOOP], {
    stdin: 'ignore',
    // execsnoop prints one line per exec; /dev/null keeps its writes cheap and never blocking
    stdout: 'ignore',
    stderr: Bun.file(stderrPath),
  })
  const run = { child, dir, stderrPath, progIds: [] as number[] }
  const deadline = performance.now() + READY_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null) {
      const err = readFileSync(stderrPath, 'utf8').trim()
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`${EXECSNOOP} exited with ${child.exitCode}: ${err}`)
    }
    const fds = bpfFds(child.pid)
    if (fds.links >= EXECSNOOP_LINKS) {
      run.progIds = fds.progIds
      return run
    }
    if (performance.now() > deadline) {
      await stopExecsnoop(run)
      throw new Error(`${EXECSNOOP} did not attach its programs within ${READY_TIMEOUT_MS} ms`)
    }
    await Bun.sleep(50)
  }
}

async function stopExecsnoop(run: ExecsnoopRun): Promise<void> {
  // SIGINT is execsnoop's own way out: it detaches and unloads its programs before exiting
  if (run.child.exitCode === null) {
    run.child.kill('SIGINT')
    const exited = await Promise.race([run.child.exited, Bun.sleep(5000).then(() => null)])
    if (exited === null) {
      run.child.kill('SIGKILL')
      await run.child.exited
    }
  }
  rmSync(run.dir, { recursive: true, force: true })
}

function bpfFds(pid: number): { links: number; progIds: number[] } {
  let links = 0
  const progIds: number[] = []
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      continue
    }
    if (target === 'anon_inode:bpf_link') links++
    if (target === 'anon_inode:bpf-prog') {
      const m = /^prog_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))
      if (m) progIds.push(Number(m[1]))
    }
  }
  return { links, progIds }
}

function counters(ids: number[]): Map<number, { runs: bigint; ns: bigint }> {
  const want = new Set(ids)
  const out = new Map<number, { runs: bigint; ns: bigint }>()
  for (const c of programCounters()) {
    if (want.has(c.id)) out.set(c.id, { runs: c.runCnt, ns: c.runTimeNs })
  }
  return out
}

interface Program {
  id: number
  owner: 'hookmeter probe' | 'execsnoop'
  /** over the kept "on" blocks */
  runs: number
  runTimeNs: number
}

interface Dropped {
  attempt: number
  /** who had statistics on: foreign enable-fd holders, the sysctl, or only the counters moving */
  by: string[]
}

interface PhaseResult {
  name: string
  on: Float64Array[]
  off: Float64Array[]
  /** rounds run and thrown away because statistics were on during their "off" block */
  dropped: Dropped[]
  /** time spent waiting for other tenants to switch statistics off before a round */
  waitedS: number
  statsModes: StatsMode[]
  programs: Program[]
  ratio: RatioEstimate | null
  /** execs counted in the kept "on" blocks, warm-up included, for runs per exec */
  onExecs: number
}

/** Who keeps statistics on besides us: enable-fd holders and the sysctl. */
function statsForcedOnBy(): string[] {
  return [...foreignStatsHolders(), ...(readStatsSysctl() !== 0 ? ['sysctl=1'] : [])]
}

/**
 * Waits until no one else keeps statistics on, so that an "off" block can be off; gives up after
 * CLEAN_WAIT_MS and lets the round run, to be dropped if it is tainted.
 */
async function waitForStatsOff(): Promise<number> {
  const t0 = performance.now()
  let said = false
  while (statsForcedOnBy().length && performance.now() - t0 < CLEAN_WAIT_MS) {
    if (!said) progress(`statistics kept on by ${statsForcedOnBy().join(', ')}: waiting`)
    said = true
    await Bun.sleep(500)
  }
  return (performance.now() - t0) / 1e3
}

async function phase(name: string, extraIds: number[]): Promise<PhaseResult> {
  const ids = [...probeIds, ...extraIds]
  const owner = (id: number) => (probeIds.includes(id) ? 'hookmeter probe' : 'execsnoop')
  const res: PhaseResult = {
    name,
    on: [],
    off: [],
    dropped: [],
    waitedS: 0,
    statsModes: [],
    programs: ids.map((id) => ({ id, owner: owner(id), runs: 0, runTimeNs: 0 })),
    ratio: null,
    onExecs: 0,
  }

  // a tainted round is replaced by another, up to twice as many extra rounds as asked for
  for (let attempt = 0; res.on.length < opts.blocks && attempt < 3 * opts.blocks; attempt++) {
    res.waitedS += await waitForStatsOff()
    const order = shuffled(['on', 'off'] as const, random)
    const taintedBy = new Set<string>()
    const lat: Record<'on' | 'off', Float64Array | null> = { on: null, off: null }
    const onDelta = new Map<number, { runs: bigint; ns: bigint }>()
    for (const cond of order) {
      await probe.attach({ policy: 'batched' })
      if (cond === 'on') {
        stats = StatsSession.open()
        res.statsModes.push(stats.mode)
      } else {
        for (const who of statsForcedOnBy()) taintedBy.add(who)
      }
      const before = counters(ids)
      let after: ReturnType<typeof counters>
      try {
        lat[cond] = await hookmeterBlock(opts.blockSize, opts.blockWarmup, probe)
      } finally {
        after = counters(ids)
        stats?.close()
        stats = null
        await probe.detach()
      }
      const delta = new Map<number, { runs: bigint; ns: bigint }>()
      for (const [id, a] of after) {
        const b = before.get(id)
        if (b) delta.set(id, { runs: a.runs - b.runs, ns: a.ns - b.ns })
      }
      const probeRuns = probeIds.reduce((n, id) => n + (delta.get(id)?.runs ?? 0n), 0n)
      if (cond === 'off') {
        for (const who of statsForcedOnBy()) taintedBy.add(who)
        if (probeRuns > 0n && !taintedBy.size)
          taintedBy.add('counters moved (holder gone by the end)')
      } else {
        if (probeRuns === 0n) throw new Error('statistics on, yet the probe counted no runs')
        for (const [id, d] of delta) onDelta.set(id, d)
      }
    }
    const [on, off] = [lat.on!, lat.off!]
    if (taintedBy.size) {
      res.dropped.push({ attempt, by: [...taintedBy] })
      progress(
        `${name} attempt ${attempt + 1}: statistics on during the off block (${[...taintedBy].join(', ')}), dropped`
      )
      continue
    }
    for (const p of res.programs) {
      const d = onDelta.get(p.id)
      if (d) {
        p.runs += Number(d.runs)
        p.runTimeNs += Number(d.ns)
      }
    }
    res.on.push(on)
    res.off.push(off)
    res.onExecs += opts.blockSize + opts.blockWarmup
    progress(
      `${name} round ${res.on.length}/${opts.blocks} (${order.join(' then ')}): on ${us(median(on))}, ` +
        `off ${us(median(off))}`
    )
  }
  if (res.on.length >= 2) {
    res.ratio = pairedRatio(res.on, res.off, opts.bootstrapReps, opts.seed + name.length)
  }
  return res
}

const phases: PhaseResult[] = []
try {
  progress(`warm-up: ${opts.warmup} execs of ${BINARY}, probe attached, statistics off`)
  await probe.attach({ policy: 'batched' })
  try {
    await hookmeterBlock(Math.max(1, opts.warmup), 0, probe)
  } finally {
    await probe.detach()
  }
  phases.push(await phase('probe', []))

  progress(`starting ${EXECSNOOP}`)
  execsnoop = await startExecsnoop()
  progress(`execsnoop pid ${execsnoop.child.pid}, programs ${execsnoop.progIds.join(', ')}`)
  phases.push(await phase('probe + execsnoop', execsnoop.progIds))
} finally {
  await cleanup()
  execsnoop = null
}

const raw: Record<string, Float64Array[]> = {}
for (const p of phases) {
  raw[`${p.name} on`] = p.on
  raw[`${p.name} off`] = p.off
}
writeRaw(opts.raw, raw)
const leftover = leftoverPrograms(own)
const othersAtEnd = foreignPrograms(own)
const sysctlAtEnd = readStatsSysctl()
const durationS = secondsSince(started)

{
  const out = {
    benchmark: 'stats-cost',
    environment: env,
    options: opts,
    bootstrap: { unit: 'round (paired blocks)', reps: opts.bootstrapReps, level: 0.95 },
    sysctl: { atStart: sysctlAtStart, atEnd: sysctlAtEnd },
    phases: phases.map((p) => ({
      name: p.name,
      keptRounds: p.on.length,
      droppedRounds: p.dropped,
      waitedForStatsOffS: Math.round(p.waitedS),
      statsModes: [...new Set(p.statsModes)],
      pooledMedianNs: { on: median(concat(p.on)), off: median(concat(p.off)) },
      blockMediansNs: { on: p.on.map((b) => median(b)), off: p.off.map((b) => median(b)) },
      ratioOnOverOff: p.ratio,
      programs: p.programs.map((g) => ({
        ...g,
        runsPerExec: g.runs / Math.max(1, p.onExecs),
        nsPerRun: g.runs ? g.runTimeNs / g.runs : null,
      })),
    })),
    leftoverOwnPrograms: leftover,
    otherProgramsAtEnd: othersAtEnd,
    durationS,
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
}
{
  const lines = [
    `cost of BPF statistics (on: own BPF_ENABLE_STATS fd held; off: none, sysctl 0) on a loop of ${BINARY}`,
    describeEnvironment(env),
    `${opts.blocks} rounds × 2 conditions × ${opts.blockSize} execs per phase (+${opts.blockWarmup} ` +
      `warm-up per block), probe attached batched throughout, order shuffled per round, seed ${opts.seed}`,
    '',
  ]
  for (const p of phases) {
    lines.push(`phase: ${p.name}`)
    if (p.dropped.length) {
      const by = [...new Set(p.dropped.flatMap((d) => d.by))].join(', ')
      lines.push(
        `  ${p.dropped.length} rounds dropped and re-run: statistics were on during their off ` +
          `block (${by})`
      )
    }
    if (p.waitedS >= 1) {
      lines.push(
        `  waited ${Math.round(p.waitedS)} s in all for other tenants to switch statistics off`
      )
    }
    if (!p.ratio) {
      lines.push('  too few clean rounds for a ratio', '')
      continue
    }
    lines.push(
      `  pooled median  on ${us(median(concat(p.on)))}, off ${us(median(concat(p.off)))}`,
      `  on / off (95 % paired bootstrap over ${p.on.length} rounds): ${fmtRatio(p.ratio)}`,
      `  per-round ratios: ${p.ratio.roundRatios.map((r) => r.toFixed(3)).join(' ')}`,
      '  programs counted in the on blocks (runs per loop exec, host-wide; ns per run):'
    )
    for (const g of p.programs) {
      const perRun = g.runs ? (g.runTimeNs / g.runs).toFixed(0) : '-'
      lines.push(
        `    ${String(g.id).padStart(6)} ${g.owner.padEnd(16)} ` +
          `${(g.runs / Math.max(1, p.onExecs)).toFixed(2)} runs/exec, ${perRun} ns/run`
      )
    }
    lines.push('')
  }
  lines.push(
    `kernel.bpf_stats_enabled: ${sysctlAtStart} at start, ${sysctlAtEnd} at end (never written here)`,
    `other eBPF programs loaded at the end: ${othersAtEnd.join(', ') || 'none'}`,
    leftover.length
      ? `LEFT LOADED: ${leftover.join(', ')}`
      : 'none of our probe programs left loaded',
    `took ${durationS} s`
  )
  // with --json, stdout carries the JSON alone and the summary goes to stderr
  ;(opts.json ? process.stderr : process.stdout).write(`${lines.join('\n')}\n`)
}
