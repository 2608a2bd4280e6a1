/**
 * What the three benchmarks share: options, interleaved block order, the hookmeter exec loop for
 * one block, pooled medians and a paired bootstrap over rounds, and the summary's environment.
 *
 * Vocabulary: a *block* is one exec loop of `blockSize` counted execs under one condition; a
 * *round* holds one block of every condition, run in a freshly shuffled order, so that drift of
 * the machine (other tenants, frequency, cache state) falls on every condition alike.
 */
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'

import { bootstrapMedianRatio } from '../agent/compare.ts'
import { createExecLoop } from '../agent/exec-loop.ts'
import type { ExecProbe } from '../agent/probe.ts'
import { quantiles } from '../agent/stats.ts'
import { listPrograms, programInfoByFd } from '../libbpf-bindings/enumerate.ts'

export const BINARY = '/usr/bin/ls'

export interface BenchOptions {
  blocks: number
  blockSize: number
  /** execs once at the start, before the first round, not counted */
  warmup: number
  /** execs at the start of every block, not counted: a fresh loop's first execs are slower */
  blockWarmup: number
  bootstrapReps: number
  seed: number
  json: boolean
  /** where to write every block's raw per-exec latencies, as JSON */
  raw: string | null
}

const USAGE = `options:
  --blocks N          rounds; each round runs one block of every condition (default 10)
  --block-size N      counted execs per block (default 1000)
  --warmup N          execs before the first round, not counted (default 200)
  --block-warmup N    execs at the start of each block, not counted (default 20)
  --bootstrap N       bootstrap resamples (default 2000)
  --seed N            seed of the block order and of the bootstrap (default: from the clock)
  --raw FILE          also write every block's per-exec latencies (ns) to FILE as JSON
  --json              print the result as one JSON object on stdout`

/** Parses the shared options; prints usage and exits 2 on anything it does not know. */
export function parseOptions(argv: string[], name: string): BenchOptions {
  const opts: BenchOptions = {
    blocks: 10,
    blockSize: 1000,
    warmup: 200,
    blockWarmup: 20,
    bootstrapReps: 2000,
    seed: Date.now() % 2 ** 31,
    json: false,
    raw: null,
  }
  const ints: Record<string, [keyof BenchOptions, number]> = {
    '--blocks': ['blocks', 2],
    '--block-size': ['blockSize', 10],
    '--warmup': ['warmup', 0],
    '--block-warmup': ['blockWarmup', 0],
    '--bootstrap': ['bootstrapReps', 100],
    '--seed': ['seed', 0],
  }
  const fail = (msg: string): never => {
    process.stderr.write(`${name}: ${msg}\n${USAGE}\n`)
    process.exit(2)
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--json') {
      opts.json = true
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`usage: bun bench/${name}.ts [options]\n${USAGE}\n`)
      process.exit(0)
    } else if (arg === '--raw') {
      const v = argv[++i]
      if (!v) fail('--raw needs a file name')
      opts.raw = v!
    } else if (arg in ints) {
      const [key, min] = ints[arg]!
      const v = argv[++i]
      const n = Number(v)
      if (v === undefined || !/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) {
        fail(`${arg} must be an integer of at least ${min}, got ${v ?? 'nothing'}`)
      }
      ;(opts as unknown as Record<string, number>)[key] = n
    } else {
      fail(`unknown option ${arg}`)
    }
  }
  return opts
}

export function progress(msg: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`)
}

/** mulberry32: a small seeded generator, so that a block order and an interval can be re-made. */
export function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/**
 * One block of hookmeter's loop. With a probe, its spawner thread is registered before the first
 * exec, so that every child of the block (warm-up included) is traced.
 */
export async function hookmeterBlock(
  iterations: number,
  warmup: number,
  probe?: ExecProbe
): Promise<Float64Array> {
  using loop = createExecLoop({ binary: BINARY, args: [], iterations, warmup })
  const tid = await loop.spawnerTid
  probe?.addSpawner(tid)
  const result = await loop.start()
  if (result.failures > 0)
    throw new Error(`${result.failures} execs failed: ${result.firstFailure}`)
  return result.latencyNs
}

export function concat(bs: Float64Array[]): Float64Array {
  const out = new Float64Array(bs.reduce((n, b) => n + b.length, 0))
  let at = 0
  for (const b of bs) {
    out.set(b, at)
    at += b.length
  }
  return out
}

export function us(ns: number): string {
  return `${(ns / 1e3).toFixed(1)} µs`
}

export function median(values: ArrayLike<number>): number {
  return quantiles(values, [0.5])[0]!
}

function pooledMedian(blocks: Float64Array[], pick: ArrayLike<number>, buf: Float64Array): number {
  let n = 0
  for (let i = 0; i < pick.length; i++) {
    const b = blocks[pick[i]!]!
    buf.set(b, n)
    n += b.length
  }
  const view = buf.subarray(0, n).sort()
  return n % 2 ? view[(n - 1) / 2]! : (view[n / 2 - 1]! + view[n / 2]!) / 2
}

export interface RatioEstimate {
  /** pooled median of the test blocks over pooled median of the reference blocks */
  ratio: number
  /** percentile interval of the paired round bootstrap */
  lo: number
  hi: number
  level: number
  reps: number
  /**
   * the interval agent/compare.ts gives (`bench compare`): every exec resampled on its own, as if
   * independent; shown beside the round interval to make visible how much drift it leaves out
   */
  execLevel: { lo: number; hi: number }
  /** test block median over reference block median, round by round: the drift the interval sees */
  roundRatios: number[]
}

/**
 * Ratio of pooled medians with a bootstrap over rounds: resample round indices with replacement,
 * the same indices for both conditions so that the pairing made by interleaving is kept, pool the
 * chosen blocks' execs, and take the ratio of the two medians. Resampling whole blocks rather
 * than single execs is what lets the interval see the block-to-block drift of a shared machine;
 * an exec-level bootstrap treats 10,000 execs as independent and comes out several times too
 * narrow. With few rounds the percentile interval is itself a little narrow; more rounds help.
 */
export function pairedRatio(
  test: Float64Array[],
  reference: Float64Array[],
  reps: number,
  seed: number,
  level = 0.95
): RatioEstimate {
  const rounds = test.length
  if (rounds !== reference.length || rounds < 2) throw new Error('pairedRatio: need paired rounds')
  const all = Array.from({ length: rounds }, (_, i) => i)
  const bufT = new Float64Array(Math.max(...test.map((b) => b.length)) * rounds)
  const bufR = new Float64Array(Math.max(...reference.map((b) => b.length)) * rounds)
  const ratio = pooledMedian(test, all, bufT) / pooledMedian(reference, all, bufR)

  const random = rng(seed)
  const pick = new Uint32Array(rounds)
  const draws = new Float64Array(reps)
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < rounds; i++) pick[i] = Math.floor(random() * rounds)
    draws[r] = pooledMedian(test, pick, bufT) / pooledMedian(reference, pick, bufR)
  }
  const [lo, hi] = quantiles(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
  const roundRatios = all.map((i) => median(test[i]!) / median(reference[i]!))
  const execs = bootstrapMedianRatio(concat(reference), concat(test), { resamples: reps, seed })
  const execLevel = { lo: execs.low, hi: execs.high }
  return { ratio, lo: lo!, hi: hi!, level, reps, execLevel, roundRatios }
}

export type GoalVerdict = 'met' | 'not met' | 'undecided'

/**
 * A goal "ratio at most g" is met when the whole interval lies at or below g, missed when the
 * whole interval lies above it, and undecided when the interval straddles it.
 */
export function verdict(est: RatioEstimate, atMost: number): GoalVerdict {
  if (est.hi <= atMost) return 'met'
  if (est.lo > atMost) return 'not met'
  return 'undecided'
}

export function pct(ratio: number, digits = 2): string {
  const p = (ratio - 1) * 100
  return `${p >= 0 ? '+' : ''}${p.toFixed(digits)} %`
}

/** ratio [round interval] as percent, then the exec-level interval for comparison */
export function fmtRatio(e: RatioEstimate): string {
  const f = (x: number) => x.toFixed(4)
  return (
    `${f(e.ratio)} [${f(e.lo)}, ${f(e.hi)}]  ${pct(e.ratio)} (${pct(e.lo)} … ${pct(e.hi)})  ` +
    `exec-level [${f(e.execLevel.lo)}, ${f(e.execLevel.hi)}]`
  )
}

export interface BlockSummary {
  round: number
  /** position of the block inside its round */
  slot: number
  medianNs: number
  p95Ns: number
}

export function blockSummary(round: number, slot: number, lat: Float64Array): BlockSummary {
  const [p50, p95] = quantiles(lat, [0.5, 0.95])
  return { round, slot, medianNs: p50!, p95Ns: p95! }
}

export interface Environment {
  date: string
  kernel: string
  cpus: number
  binary: string
  /** kernel.bpf_stats_enabled when the benchmark started */
  statsSysctl: number
  /** eBPF programs loaded when the benchmark started (before its own probe), by id and name */
  otherPrograms: string[]
  /** other processes holding a statistics enable fd at the start */
  statsHolders: string[]
  /** 1-minute load average at the start: the tenants the machine was shared with */
  loadAverage: number
}

export function environment(): Environment {
  const others = foreignPrograms()
  return {
    date: new Date().toISOString(),
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    cpus: availableParallelism(),
    binary: BINARY,
    statsSysctl: Number(readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim()),
    otherPrograms: others,
    statsHolders: foreignStatsHolders(),
    loadAverage: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
  }
}

export function describeEnvironment(env: Environment): string {
  const others = env.otherPrograms.length
    ? `${env.otherPrograms.length} other eBPF programs loaded (${env.otherPrograms.join(', ')})`
    : 'no other eBPF programs loaded'
  const holders = env.statsHolders.length
    ? `; statistics enabled by ${env.statsHolders.join(', ')}`
    : ''
  return `${env.date}  kernel ${env.kernel}, ${env.cpus} CPUs, load ${env.loadAverage}, ${others}${holders}`
}

/** A program's identity: ids are reused, so the load time goes with the id. */
export interface ProgramIdentity {
  id: number
  loadTimeNs: bigint
}

export function probeIdentity(probe: ExecProbe): ProgramIdentity[] {
  return Object.values(probe.programFds()).map((fd) => {
    const info = programInfoByFd(fd)
    return { id: info.id, loadTimeNs: info.loadTimeNs }
  })
}

/** Our own probe's programs still loaded after close; a benchmark must leave none behind. */
export function leftoverPrograms(own: ProgramIdentity[]): string[] {
  const key = (id: number, t: bigint) => `${id}:${t}`
  const mine = new Set(own.map((p) => key(p.id, p.loadTimeNs)))
  return listPrograms()
    .filter((p) => mine.has(key(p.id, p.loadTimeNs)))
    .map((p) => `${p.id}:${p.name}`)
}

/** Programs loaded now that are not ours: other tenants that came or went during the run. */
export function foreignPrograms(own: ProgramIdentity[] = []): string[] {
  const mine = new Set(own.map((p) => p.id))
  return listPrograms()
    .filter((p) => !mine.has(p.id))
    .map((p) => `${p.id}:${p.fullName}`)
}

/**
 * Processes other than this one holding a BPF_ENABLE_STATS fd: while one does, statistics are
 * on for every program on the host, whatever this process does.
 */
export function foreignStatsHolders(): string[] {
  const out: string[] = []
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      let target = ''
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`)
      } catch {
        continue
      }
      if (target === 'anon_inode:bpf-stats') {
        let comm = '?'
        try {
          comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
        } catch {}
        out.push(`${pid} (${comm})`)
        break
      }
    }
  }
  return out
}

export function writeRaw(path: string | null, raw: Record<string, Float64Array[]>): void {
  if (!path) return
  const out = Object.fromEntries(
    Object.entries(raw).map(([k, blocks]) => [k, blocks.map((b) => Array.from(b))])
  )
  writeFileSync(path, JSON.stringify(out))
}

export function secondsSince(startMs: number): number {
  return Math.round((performance.now() - startMs) / 100) / 10
}

/**
 * Runs `cleanup` once, on normal completion or on SIGINT / SIGTERM (as `timeout` sends), so that
 * no probe, statistics fd or child tool outlives an interrupted benchmark.
 */
export function onInterrupt(cleanup: () => void | Promise<void>): void {
  let done = false
  const handler = async (sig: string) => {
    if (done) return
    done = true
    progress(`${sig}: cleaning up`)
    try {
      await cleanup()
    } finally {
      process.exit(130)
    }
  }
  process.on('SIGINT', () => void handler('SIGINT'))
  process.on('SIGTERM', () => void handler('SIGTERM'))
}
