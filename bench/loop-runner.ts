/**
 * Loop runner: hookmeter's exec loop (posix_spawn + waitpid through bun:ffi in a Worker) against
 * the same loop in plain C (bench/c-loop.c, compiled here with gcc into a temporary directory), on
 * the same binary, in interleaved blocks. The ratio of pooled median exec latencies, hookmeter
 * over C, with a 95 % paired bootstrap interval over rounds, is what the runtime adds per exec.
 *
 *   node_modules/.bin/bun bench/loop-runner.ts [--blocks N] [--block-size N] [--json]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import {
  BINARY,
  blockSummary,
  concat,
  describeEnvironment,
  environment,
  fmtRatio,
  hookmeterBlock,
  median,
  onInterrupt,
  pairedRatio,
  parseOptions,
  progress,
  rng,
  secondsSince,
  shuffled,
  us,
  verdict,
  writeRaw,
  type BlockSummary,
} from './lib.ts'

const GOAL_AT_MOST = 1.03
const SOURCE = join(import.meta.dir, 'c-loop.c')

const opts = parseOptions(process.argv.slice(2), 'loop-runner')
const started = performance.now()
const env = environment()
const random = rng(opts.seed)

// the binary is built for this run only and removed with its directory, never committed
const dir = mkdtempSync(join(tmpdir(), 'hookmeter-bench-'))
const removeDir = () => rmSync(dir, { recursive: true, force: true })
onInterrupt(removeDir)
const cLoop = join(dir, 'c-loop')
const gccArgs = ['gcc', '-O2', '-Wall', '-Wextra', '-Werror', '-o', cLoop, SOURCE]
const gcc = Bun.spawnSync(gccArgs, { stderr: 'pipe' })
if (gcc.exitCode !== 0) {
  removeDir()
  process.stderr.write(`loop-runner: ${gccArgs.join(' ')} failed:\n${gcc.stderr.toString()}`)
  process.exit(1)
}
const gccVersion = Bun.spawnSync(['gcc', '-dumpfullversion']).stdout.toString().trim()

async function cBlock(iterations: number, warmup: number): Promise<Float64Array> {
  const out = join(dir, 'samples.txt')
  const child = Bun.spawn([cLoop, out, String(iterations), String(warmup), BINARY], {
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
  })
  const code = await child.exited
  if (code !== 0) {
    throw new Error(`c-loop exited with ${code}: ${await new Response(child.stderr).text()}`)
  }
  const lines = readFileSync(out, 'utf8').trim().split('\n')
  if (lines.length !== iterations) throw new Error(`c-loop wrote ${lines.length} samples`)
  return Float64Array.from(lines, Number)
}

const CONDITIONS = ['hookmeter', 'c'] as const
type Name = (typeof CONDITIONS)[number]
const blocks: Record<Name, Float64Array[]> = { hookmeter: [], c: [] }
const summaries: Record<Name, BlockSummary[]> = { hookmeter: [], c: [] }

try {
  // both loops are warmed up: the page cache, the binary's mappings and the dynamic loader are
  // shared, and a first C run also faults in c-loop itself
  progress(`warm-up: ${opts.warmup} execs of ${BINARY} from each loop`)
  await hookmeterBlock(Math.max(1, opts.warmup), 0)
  await cBlock(Math.max(1, opts.warmup), 0)

  for (let round = 0; round < opts.blocks; round++) {
    const order = shuffled(CONDITIONS, random)
    for (const [slot, name] of order.entries()) {
      const lat =
        name === 'c'
          ? await cBlock(opts.blockSize, opts.blockWarmup)
          : await hookmeterBlock(opts.blockSize, opts.blockWarmup)
      blocks[name].push(lat)
      summaries[name].push(blockSummary(round, slot, lat))
    }
    const [h, c] = [blocks.hookmeter.at(-1)!, blocks.c.at(-1)!]
    progress(
      `round ${round + 1}/${opts.blocks} (${order.join(' then ')}): hookmeter ${us(median(h))}, ` +
        `C ${us(median(c))}`
    )
  }
} finally {
  removeDir()
}

const est = pairedRatio(blocks.hookmeter, blocks.c, opts.bootstrapReps, opts.seed)
const goal = { atMost: GOAL_AT_MOST, verdict: verdict(est, GOAL_AT_MOST) }
writeRaw(opts.raw, blocks)
const durationS = secondsSince(started)

{
  const out = {
    benchmark: 'loop-runner',
    environment: env,
    options: opts,
    gcc: { version: gccVersion, flags: '-O2' },
    bootstrap: { unit: 'round (paired blocks)', reps: opts.bootstrapReps, level: 0.95 },
    conditions: Object.fromEntries(
      CONDITIONS.map((n) => [
        n,
        { pooledMedianNs: median(concat(blocks[n])), blocks: summaries[n] },
      ])
    ),
    ratioHookmeterOverC: { ...est, goal },
    durationS,
  }
  if (opts.json) process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
}
{
  const lines = [
    `loop runner: hookmeter's Worker loop vs a plain C posix_spawn loop (gcc ${gccVersion} -O2), ${BINARY}`,
    describeEnvironment(env),
    `${opts.blocks} rounds × 2 loops × ${opts.blockSize} execs (+${opts.blockWarmup} warm-up per ` +
      `block, ${opts.warmup} before the first), order shuffled per round, seed ${opts.seed}`,
    '',
    `${'loop'.padEnd(12)}${'pooled median'.padStart(14)}   block medians min … max`,
  ]
  for (const n of CONDITIONS) {
    const meds = blocks[n].map((b) => median(b))
    lines.push(
      `${n.padEnd(12)}${us(median(concat(blocks[n]))).padStart(14)}   ${us(Math.min(...meds))} … ` +
        us(Math.max(...meds))
    )
  }
  lines.push(
    '',
    `hookmeter / C, pooled medians, 95 % interval from ${opts.bootstrapReps} bootstrap ` +
      'resamples of whole rounds (paired blocks):',
    `  ${fmtRatio(est)}   goal ≤ ${GOAL_AT_MOST}: ${goal.verdict}`,
    `  per-round ratios: ${est.roundRatios.map((r) => r.toFixed(3)).join(' ')}`,
    '',
    `took ${durationS} s`
  )
  // with --json, stdout carries the JSON alone and the summary goes to stderr
  ;(opts.json ? process.stderr : process.stdout).write(`${lines.join('\n')}\n`)
}
