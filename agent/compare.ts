/**
 * `bench compare A B`: the overhead of run B over run A (DESIGN, "How each number is obtained",
 * 6), as the study's ratio of loop totals and as a ratio of medians with a percentile bootstrap
 * interval, next to the per-hook and per-owner differences per exec that split it into in-kernel
 * and user-space time.
 */
import type { StatsMode } from '../libbpf-bindings/stats.ts'
import type { Condition, MicroHook, MicroOwner, MicroReport } from './bench/report.ts'
import { quantiles } from './stats.ts'

/** The seed used when none is given, so that the same two runs always give the same interval. */
export const DEFAULT_SEED = 0x5eed

const TWO_POW_26 = 67108864
const TWO_POW_32 = 4294967296
const TWO_POW_52 = 4503599627370496

/** murmur3's 32-bit finaliser over a Weyl sequence (splitmix32): spreads a seed over the state. */
function splitmix32(state: number): [next: number, out: number] {
  const next = (state + 0x9e3779b9) | 0
  let z = next
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return [next, (z ^ (z >>> 16)) >>> 0]
}

/**
 * A seedable xoshiro128** generator with the draws the bootstrap needs. Every draw is a pure
 * function of the seed and the draws before it, so a seed reproduces a result on any machine.
 */
export class Rng {
  #s0 = 0
  #s1 = 0
  #s2 = 0
  #s3 = 0
  #spareNormal: number | null = null

  /** `seed` is any safe integer; all 53 bits select the stream. */
  constructor(seed: number = DEFAULT_SEED) {
    if (!Number.isSafeInteger(seed))
      throw new RangeError(`seed must be a safe integer, got ${seed}`)
    let state = (seed >>> 0) ^ Math.imul(Math.floor(seed / TWO_POW_32) | 0, 0x9e3779b1)
    const words: number[] = []
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(state)
      state = next
      words.push(out)
    }
    ;[this.#s0, this.#s1, this.#s2, this.#s3] = words as [number, number, number, number]
    // xoshiro's one fixed point: from any other state it never reaches all zeros.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1
  }

  /** 32 uniform bits as an unsigned integer. */
  nextUint32(): number {
    const s1 = this.#s1
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
    const t = s1 << 9
    this.#s2 ^= this.#s0
    this.#s3 ^= this.#s1
    this.#s1 ^= this.#s2
    this.#s0 ^= this.#s3
    this.#s2 ^= t
    this.#s3 = rotl(this.#s3, 11)
    return result
  }

  /**
   * Uniform on the open interval (0, 1): the midpoints of a 2^-52 grid, so that log(u) and
   * u^(1/m) are always finite and 1 - u never rounds to 0.
   */
  uniform(): number {
    const hi = this.nextUint32() >>> 6
    const lo = this.nextUint32() >>> 6
    return (hi * TWO_POW_26 + lo + 0.5) / TWO_POW_52
  }

  /** Standard normal, by Marsaglia's polar method (exact: a rejection to the unit disc). */
  normal(): number {
    if (this.#spareNormal !== null) {
      const z = this.#spareNormal
      this.#spareNormal = null
      return z
    }
    for (;;) {
      const u = 2 * this.uniform() - 1
      const v = 2 * this.uniform() - 1
      const s = u * u + v * v
      if (s >= 1 || s === 0) continue
      const f = Math.sqrt((-2 * Math.log(s)) / s)
      this.#spareNormal = v * f
      return u * f
    }
  }

  /**
   * Gamma(shape, 1) by Marsaglia and Tsang (2000). For shape >= 1 it is a rejection sampler whose
   * envelope is a cubed shifted normal, so accepted draws follow the Gamma density exactly (the
   * squeeze 1 - 0.0331 x^4 only skips the log test where it would accept anyway). Below 1 it
   * uses Gamma(a) = Gamma(a + 1) * U^(1/a), also exact.
   */
  gamma(shape: number): number {
    if (!(shape > 0) || !Number.isFinite(shape)) {
      throw new RangeError(`shape must be a finite positive number, got ${shape}`)
    }
    if (shape < 1) return this.gamma(shape + 1) * Math.pow(this.uniform(), 1 / shape)
    const d = shape - 1 / 3
    const c = 1 / Math.sqrt(9 * d)
    for (;;) {
      const x = this.normal()
      const t = 1 + c * x
      if (t <= 0) continue
      const v = t * t * t
      const u = this.uniform()
      const x2 = x * x
      if (u < 1 - 0.0331 * x2 * x2) return d * v
      if (Math.log(u) < 0.5 * x2 + d * (1 - v + Math.log(v))) return d * v
    }
  }

  /** Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b) independent: an identity in law. */
  beta(a: number, b: number): number {
    const x = this.gamma(a)
    return x / (x + this.gamma(b))
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}

/**
 * The median of one resample with replacement of `sorted` (ascending), drawn without building the
 * resample. Why it is exact: a draw with replacement is x[floor(n V)] with V ~ U(0, 1), and that
 * map is nondecreasing in V because x is sorted; so the k-th smallest of n draws is x at
 * floor(n V_(k)), where V_(k) is the k-th smallest of n uniforms, which is Beta(k, n - k + 1).
 * For even n the median also needs the next order statistic: given V_(k) = u, the other n - k
 * uniforms above u are independent and uniform on (u, 1), so V_(k+1) = u + (1 - u) M with M the
 * minimum of n - k uniforms, M ~ Beta(1, n - k), drawn by inversion as 1 - U^(1/(n - k)).
 * The cost is O(1) per resample instead of O(n log n).
 */
export function resampleMedian(sorted: Float64Array, rng: Rng): number {
  const n = sorted.length
  const k = (n + 1) >> 1
  const u = rng.beta(k, n - k + 1)
  const lower = sorted[Math.min(n - 1, Math.floor(n * u))]!
  if (n % 2 === 1) return lower
  // -expm1(log(U) / m) is 1 - U^(1/m) without the cancellation near 1 for large m.
  const m = -Math.expm1(Math.log(rng.uniform()) / (n - k))
  const next = u + (1 - u) * m
  return (lower + sorted[Math.min(n - 1, Math.floor(n * next))]!) / 2
}

export interface BootstrapOptions {
  /** default 2000 */
  resamples?: number
  /** default 0.95 */
  confidence?: number
  /** default DEFAULT_SEED */
  seed?: number
}

export interface BootstrapResult {
  /** median(b) / median(a) of the samples themselves */
  ratio: number
  /** percentile bootstrap interval of the ratio */
  low: number
  high: number
  resamples: number
}

/** A validated, sorted copy. Values must be positive: a ratio of medians means nothing otherwise. */
function sortedSample(values: Float64Array, name: string): Float64Array {
  if (!(values instanceof Float64Array)) throw new RangeError(`${name} must be a Float64Array`)
  if (values.length < 2) {
    throw new RangeError(`${name} must hold at least 2 values, got ${values.length}`)
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!
    if (!Number.isFinite(v) || v <= 0) {
      throw new RangeError(`${name}[${i}] is ${v}: every value must be a finite positive number`)
    }
  }
  return Float64Array.from(values).sort()
}

function medianOfSorted(sorted: Float64Array): number {
  const n = sorted.length
  const mid = n >> 1
  return n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function checkOptions(opts: BootstrapOptions): Required<BootstrapOptions> {
  const resamples = opts.resamples ?? 2000
  const confidence = opts.confidence ?? 0.95
  const seed = opts.seed ?? DEFAULT_SEED
  if (!Number.isSafeInteger(resamples) || resamples < 1 || resamples > 10_000_000) {
    throw new RangeError(`resamples must be an integer from 1 to 10000000, got ${resamples}`)
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new RangeError(`confidence must lie strictly between 0 and 1, got ${confidence}`)
  }
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`)
  return { resamples, confidence, seed }
}

function bootstrapSorted(
  a: Float64Array,
  b: Float64Array,
  { resamples, confidence, seed }: Required<BootstrapOptions>
): BootstrapResult {
  const rng = new Rng(seed)
  const ratios = new Float64Array(resamples)
  for (let i = 0; i < resamples; i++) ratios[i] = resampleMedian(b, rng) / resampleMedian(a, rng)
  const [low, high] = quantiles(ratios, [(1 - confidence) / 2, (1 + confidence) / 2]) as [
    number,
    number,
  ]
  return { ratio: medianOfSorted(b) / medianOfSorted(a), low, high, resamples }
}

/**
 * median(b) / median(a) with a percentile bootstrap interval, each sample resampled
 * independently with replacement. Each sample needs at least 2 values, all finite and positive;
 * otherwise a RangeError names the argument.
 */
export function bootstrapMedianRatio(
  a: Float64Array,
  b: Float64Array,
  opts: BootstrapOptions = {}
): BootstrapResult {
  const o = checkOptions(opts)
  return bootstrapSorted(sortedSample(a, 'a'), sortedSample(b, 'b'), o)
}

export interface CompareRunSummary {
  id: number
  condition: Condition | null
  label: string | null
  statsMode: StatsMode
  binary: string
  args: string[]
  iterations: number
  wallNs: number
  /** median of the run's per-exec latencies */
  medianNs: number
  /** number of per-exec latencies the median and the interval were taken from */
  samples: number
}

export interface HookKey {
  /** comm of the program's first owner, '' when it has none */
  comm: string
  fullName: string
  hook: string
}

export interface HookSide {
  /** programs of the run with this key, summed */
  programs: number
  nsPerExec: number
  runsPerExec: number
}

export interface HookDelta {
  key: HookKey
  a: HookSide | null
  b: HookSide | null
  deltaNsPerExec: number
}

export interface OwnerDelta {
  comm: string
  exe: string
  /** cpuNsPerExec summed over the run's processes with this comm and exe */
  a: number | null
  b: number | null
  deltaCpuNsPerExec: number
}

export interface CompareReport {
  a: CompareRunSummary
  b: CompareRunSummary
  overhead: {
    /** the study's figure: loop totals per exec, B over A, in percent */
    totalTimePct: number
    medianRatio: number
    medianPct: number
    /** 95 % percentile bootstrap interval of medianRatio */
    ci95: { low: number; high: number }
    ci95Pct: { low: number; high: number }
    resamples: number
    seed: number
  }
  /**
   * The median's difference per exec, beside what the kernel's statistics and the owners' CPU
   * time account for. Per-hook and owner figures are means per exec; program run time leaves out
   * hook dispatch and reader wake-ups (MEASURING, 1), which fall in unattributed.
   */
  split: {
    totalNsPerExec: number
    inKernelNsPerExec: number
    userSpaceNsPerExec: number
    unattributedNsPerExec: number
  }
  /** by |delta| descending */
  hooks: HookDelta[]
  /** by |delta| descending */
  owners: OwnerDelta[]
  warnings: string[]
}

export interface CompareOptions {
  /** default 2000 */
  resamples?: number
  /** default DEFAULT_SEED */
  seed?: number
}

function hookKey(h: MicroHook): HookKey {
  return { comm: h.owners[0]?.comm ?? '', fullName: h.fullName, hook: h.hook }
}

function keyString(...parts: string[]): string {
  return JSON.stringify(parts)
}

function groupHooks(hooks: MicroHook[]): Map<string, { key: HookKey; side: HookSide }> {
  const out = new Map<string, { key: HookKey; side: HookSide }>()
  for (const h of hooks) {
    if (h.own) continue
    const key = hookKey(h)
    const k = keyString(key.comm, key.fullName, key.hook)
    const g = out.get(k)
    if (g) {
      g.side.programs++
      g.side.nsPerExec += h.nsPerExec
      g.side.runsPerExec += h.runsPerExec
    } else {
      out.set(k, { key, side: { programs: 1, nsPerExec: h.nsPerExec, runsPerExec: h.runsPerExec } })
    }
  }
  return out
}

function groupOwners(
  owners: MicroOwner[]
): Map<string, { comm: string; exe: string; cpu: number }> {
  const out = new Map<string, { comm: string; exe: string; cpu: number }>()
  for (const o of owners) {
    const k = keyString(o.comm, o.exe)
    const g = out.get(k)
    if (g) g.cpu += o.cpuNsPerExec
    else out.set(k, { comm: o.comm, exe: o.exe, cpu: o.cpuNsPerExec })
  }
  return out
}

function byAbsDelta<T>(delta: (t: T) => number, name: (t: T) => string): (x: T, y: T) => number {
  return (x, y) => {
    const d = Math.abs(delta(y)) - Math.abs(delta(x))
    if (d !== 0) return d
    const nx = name(x)
    const ny = name(y)
    return nx < ny ? -1 : nx > ny ? 1 : 0
  }
}

function summary(r: MicroReport, sorted: Float64Array): CompareRunSummary {
  const { id, condition, label, statsMode, binary, args, iterations, wallNs } = r.run
  return {
    id,
    condition,
    label,
    statsMode,
    binary,
    args: [...args],
    iterations,
    wallNs,
    medianNs: medianOfSorted(sorted),
    samples: sorted.length,
  }
}

function checkReport(r: MicroReport, name: string): void {
  const run = r?.run
  if (!run) throw new RangeError(`${name} is not a micro benchmark report`)
  if (!Number.isSafeInteger(run.iterations) || run.iterations < 1) {
    throw new RangeError(`${name}.run.iterations must be a positive integer, got ${run.iterations}`)
  }
  if (!Number.isFinite(run.wallNs) || run.wallNs <= 0) {
    throw new RangeError(`${name}.run.wallNs must be a finite positive number, got ${run.wallNs}`)
  }
}

function runWarnings(r: MicroReport, sorted: Float64Array): string[] {
  const out: string[] = []
  const id = r.run.id
  if (sorted.length !== r.run.iterations) {
    out.push(`run ${id} has ${sorted.length} latency samples for ${r.run.iterations} iterations`)
  }
  if (r.failures > 0) {
    out.push(`run ${id} had ${r.failures} failed execs of ${r.run.iterations}`)
  }
  const lost = r.probe.lost
  if (lost.ringbuf > 0 || lost.perf > 0) {
    out.push(
      `run ${id} lost probe records (ring buffer ${lost.ringbuf}, perf buffer ${lost.perf}): its kernel phases miss those execs`
    )
  }
  return out
}

function pairWarnings(a: MicroReport, b: MicroReport): string[] {
  const out: string[] = []
  const ra = a.run
  const rb = b.run
  const both = (f: (r: MicroReport['run']) => string) =>
    `run ${ra.id}: ${f(ra)}, run ${rb.id}: ${f(rb)}`
  if (ra.id === rb.id) out.push(`run ${ra.id} is compared with itself`)
  if (ra.statsMode !== rb.statsMode) {
    out.push(
      `runs were measured with different statistics modes (${both((r) => r.statsMode)}): their per-hook figures and loop times may not be comparable`
    )
  }
  if (ra.binary !== rb.binary) {
    out.push(
      `runs exec different binaries (${both((r) => r.binary)}): the overhead compares different work`
    )
  }
  if (JSON.stringify(ra.args) !== JSON.stringify(rb.args)) {
    out.push(
      `runs pass different arguments (${both((r) => JSON.stringify(r.args))}): the overhead compares different work`
    )
  }
  const iterRatio = Math.max(ra.iterations, rb.iterations) / Math.min(ra.iterations, rb.iterations)
  if (iterRatio > 10) {
    out.push(
      `iteration counts differ more than tenfold (${both((r) => String(r.iterations))}): figures are per exec, but caches and background settle differently`
    )
  }
  if (ra.node !== rb.node) out.push(`runs were taken on different nodes (${both((r) => r.node)})`)
  if (ra.kernel !== rb.kernel) {
    out.push(`runs were taken on different kernels (${both((r) => r.kernel)})`)
  }
  if (rb.condition === 'baseline' && ra.condition !== 'baseline') {
    out.push(
      `run ${rb.id} (B) is a baseline and run ${ra.id} (A) is not: the runs are probably swapped (give the baseline first)`
    )
  }
  return out
}

/**
 * Run B against run A. `sa` and `sb` are the runs' per-exec latencies (ns); they give the medians
 * and the interval. Hooks are matched by (first owner's comm, fullName, hook), as program ids
 * change between runs, and summed within a run; the measuring hookmeter's own programs (`own`)
 * are left out of every table and sum; its own process is never among a report's owners.
 */
export function compareRuns(
  a: MicroReport,
  sa: Float64Array,
  b: MicroReport,
  sb: Float64Array,
  opts: CompareOptions = {}
): CompareReport {
  checkReport(a, 'a')
  checkReport(b, 'b')
  const o = checkOptions({ resamples: opts.resamples, seed: opts.seed, confidence: 0.95 })
  const sortedA = sortedSample(sa, 'sa')
  const sortedB = sortedSample(sb, 'sb')
  const boot = bootstrapSorted(sortedA, sortedB, o)
  const sumA = summary(a, sortedA)
  const sumB = summary(b, sortedB)

  const hooksA = groupHooks(a.hooks)
  const hooksB = groupHooks(b.hooks)
  const hooks: HookDelta[] = []
  for (const k of new Set([...hooksA.keys(), ...hooksB.keys()])) {
    const ga = hooksA.get(k)
    const gb = hooksB.get(k)
    hooks.push({
      key: (ga ?? gb)!.key,
      a: ga?.side ?? null,
      b: gb?.side ?? null,
      deltaNsPerExec: (gb?.side.nsPerExec ?? 0) - (ga?.side.nsPerExec ?? 0),
    })
  }
  hooks.sort(
    byAbsDelta(
      (h) => h.deltaNsPerExec,
      (h) => keyString(h.key.comm, h.key.fullName, h.key.hook)
    )
  )

  const ownersA = groupOwners(a.owners)
  const ownersB = groupOwners(b.owners)
  const owners: OwnerDelta[] = []
  for (const k of new Set([...ownersA.keys(), ...ownersB.keys()])) {
    const ga = ownersA.get(k)
    const gb = ownersB.get(k)
    const { comm, exe } = (ga ?? gb)!
    owners.push({
      comm,
      exe,
      a: ga?.cpu ?? null,
      b: gb?.cpu ?? null,
      deltaCpuNsPerExec: (gb?.cpu ?? 0) - (ga?.cpu ?? 0),
    })
  }
  owners.sort(
    byAbsDelta(
      (x) => x.deltaCpuNsPerExec,
      (x) => keyString(x.comm, x.exe)
    )
  )

  // a difference of means, like the per-hook and per-owner figures it is split into
  const totalNsPerExec = b.run.wallNs / b.run.iterations - a.run.wallNs / a.run.iterations
  const inKernelNsPerExec = hooks.reduce((s, h) => s + h.deltaNsPerExec, 0)
  const userSpaceNsPerExec = owners.reduce((s, x) => s + x.deltaCpuNsPerExec, 0)
  const perExecA = a.run.wallNs / a.run.iterations
  const perExecB = b.run.wallNs / b.run.iterations
  const pct = (ratio: number) => ratio * 100 - 100

  return {
    a: sumA,
    b: sumB,
    overhead: {
      totalTimePct: pct(perExecB / perExecA),
      medianRatio: boot.ratio,
      medianPct: pct(boot.ratio),
      ci95: { low: boot.low, high: boot.high },
      ci95Pct: { low: pct(boot.low), high: pct(boot.high) },
      resamples: boot.resamples,
      seed: o.seed,
    },
    split: {
      totalNsPerExec,
      inKernelNsPerExec,
      userSpaceNsPerExec,
      unattributedNsPerExec: totalNsPerExec - inKernelNsPerExec - userSpaceNsPerExec,
    },
    hooks,
    owners,
    warnings: [...pairWarnings(a, b), ...runWarnings(a, sortedA), ...runWarnings(b, sortedB)],
  }
}

const TOP_HOOKS = 15
const TOP_OWNERS = 10

const pad = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n))
const lpad = (s: string, n: number) => s.padStart(n)

function runName(s: CompareRunSummary): string {
  const tags = [s.condition, s.label].filter((t): t is string => t !== null && t !== '')
  return `run ${s.id} (${tags.length ? tags.join(', ') : 'unlabelled'})`
}

function signedPct(p: number): string {
  return `${p >= 0 ? '+' : '-'}${Math.abs(p).toFixed(1)} %`
}

function ns(v: number): string {
  const a = Math.abs(v)
  if (a >= 1e9) return `${(v / 1e9).toFixed(2)} s`
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)} ms`
  if (a >= 1e3) return `${(v / 1e3).toFixed(2)} µs`
  return `${v.toFixed(a >= 100 ? 0 : 1)} ns`
}

function signedNs(v: number): string {
  return v >= 0 ? `+${ns(v)}` : `-${ns(-v)}`
}

function nsOrDash(v: number | null | undefined): string {
  return v === null || v === undefined ? '-' : ns(v)
}

/** Enough decimals that the interval's ends read apart, at least three. */
function ratioDigits(low: number, high: number): number {
  let d = 3
  while (d < 6 && low.toFixed(d) === high.toFixed(d)) d++
  return d
}

/** The terminal report: overhead, its split per exec, the top hooks and owners, warnings. */
export function formatCompare(r: CompareReport): string {
  const o = r.overhead
  const d = ratioDigits(o.ci95.low, o.ci95.high)
  const lines = [
    `overhead of ${runName(r.b)} over ${runName(r.a)}: ${signedPct(o.totalTimePct)} total time; median ratio ${o.medianRatio.toFixed(d)} [${o.ci95.low.toFixed(d)}, ${o.ci95.high.toFixed(d)}] 95 % CI`,
    `  median ${signedPct(o.medianPct)} [${signedPct(o.ci95Pct.low)}, ${signedPct(o.ci95Pct.high)}], percentile bootstrap of ${o.resamples} resamples, seed ${o.seed}`,
  ]
  for (const s of [r.a, r.b]) {
    lines.push(
      `  ${runName(s)}: ${s.iterations} execs of ${[s.binary, ...s.args].join(' ')} in ${ns(s.wallNs)}, ${ns(s.wallNs / s.iterations)} per exec, median ${ns(s.medianNs)}, statistics ${s.statsMode}`
    )
  }

  const sp = r.split
  lines.push(
    '',
    `per exec, mean difference ${signedNs(sp.totalNsPerExec)}:`,
    `  in kernel (eBPF program run time)   ${lpad(signedNs(sp.inKernelNsPerExec), 12)}`,
    `  user space (owner processes' CPU)   ${lpad(signedNs(sp.userSpaceNsPerExec), 12)}`,
    `  unattributed                        ${lpad(signedNs(sp.unattributedNsPerExec), 12)}`
  )

  lines.push(
    '',
    `hooks, per exec (${Math.min(TOP_HOOKS, r.hooks.length)} of ${r.hooks.length} by |Δ|):`
  )
  if (r.hooks.length) {
    lines.push(
      `  ${pad('OWNER', 16)} ${pad('PROGRAM', 40)} ${lpad('A', 10)} ${lpad('B', 10)} ${lpad('Δ', 11)} ${lpad('RUNS B', 7)}  HOOK`
    )
    for (const h of r.hooks.slice(0, TOP_HOOKS)) {
      lines.push(
        `  ${pad(h.key.comm || '(no owner)', 16)} ${pad(h.key.fullName, 40)} ${lpad(nsOrDash(h.a?.nsPerExec), 10)} ${lpad(nsOrDash(h.b?.nsPerExec), 10)} ${lpad(signedNs(h.deltaNsPerExec), 11)} ${lpad(h.b ? h.b.runsPerExec.toFixed(2) : '-', 7)}  ${h.key.hook}`
      )
    }
  } else lines.push('  (none)')

  lines.push(
    '',
    `owners, CPU per exec (${Math.min(TOP_OWNERS, r.owners.length)} of ${r.owners.length} by |Δ|):`
  )
  if (r.owners.length) {
    lines.push(`  ${pad('COMM', 16)} ${lpad('A', 10)} ${lpad('B', 10)} ${lpad('Δ', 11)}  EXE`)
    for (const x of r.owners.slice(0, TOP_OWNERS)) {
      lines.push(
        `  ${pad(x.comm, 16)} ${lpad(nsOrDash(x.a), 10)} ${lpad(nsOrDash(x.b), 10)} ${lpad(signedNs(x.deltaCpuNsPerExec), 11)}  ${x.exe}`
      )
    }
  } else lines.push('  (none)')

  if (r.warnings.length) {
    lines.push('', 'warnings:', ...r.warnings.map((w) => `  - ${w}`))
  }
  return lines.join('\n')
}
