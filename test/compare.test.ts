import { describe, expect, test } from 'bun:test'

import type { MicroHook, MicroOwner, MicroReport } from '../agent/bench/report.ts'
import {
  bootstrapMedianRatio,
  compareRuns,
  formatCompare,
  resampleMedian,
  Rng,
} from '../agent/compare.ts'
import { quantiles } from '../agent/stats.ts'

function lognormal(rng: Rng, n: number, median: number, sigma: number): Float64Array {
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = median * Math.exp(sigma * rng.normal())
  return out
}

function uniformOn(rng: Rng, n: number, high: number): Float64Array {
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = high * rng.uniform()
  return out
}

function choose(n: number, k: number): number {
  let c = 1
  for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i
  return c
}

/** P(at least r of n draws fall in a set of probability p) = P(k-th order statistic <= x). */
function binomialAtLeast(n: number, p: number, r: number): number {
  let s = 0
  for (let i = r; i <= n; i++) s += choose(n, i) * p ** i * (1 - p) ** (n - i)
  return s
}

describe('rng', () => {
  test('the same seed gives the same stream and another seed another', () => {
    const one = new Rng(7)
    const again = new Rng(7)
    const other = new Rng(8)
    const high = new Rng(7 + 2 ** 32)
    const xs = Array.from({ length: 1000 }, () => one.nextUint32())
    expect(Array.from({ length: 1000 }, () => again.nextUint32())).toEqual(xs)
    expect(Array.from({ length: 1000 }, () => other.nextUint32())).not.toEqual(xs)
    expect(Array.from({ length: 1000 }, () => high.nextUint32())).not.toEqual(xs)
  })

  test('uniform draws lie strictly inside (0, 1) with mean one half', () => {
    const rng = new Rng(1)
    let sum = 0
    for (let i = 0; i < 100_000; i++) {
      const u = rng.uniform()
      expect(u > 0 && u < 1).toBe(true)
      sum += u
    }
    expect(Math.abs(sum / 100_000 - 0.5)).toBeLessThan(0.005)
  })

  test('gamma draws have the mean and variance of their shape', () => {
    const rng = new Rng(2)
    for (const shape of [0.5, 1, 3.5, 5000]) {
      const n = 50_000
      let s = 0
      let s2 = 0
      for (let i = 0; i < n; i++) {
        const g = rng.gamma(shape)
        s += g
        s2 += g * g
      }
      const m = s / n
      const v = s2 / n - m * m
      expect(Math.abs(m - shape) / Math.sqrt(shape / n)).toBeLessThan(5)
      expect(Math.abs(v / shape - 1)).toBeLessThan(0.05)
    }
  })

  test('gamma draws of shape 1 and 2 follow their exact distribution functions', () => {
    const rng = new Rng(5)
    const cdfs: Array<[number, (x: number) => number]> = [
      [1, (x) => 1 - Math.exp(-x)],
      [2, (x) => 1 - Math.exp(-x) * (1 + x)],
    ]
    for (const [shape, cdf] of cdfs) {
      const n = 100_000
      const xs = Float64Array.from({ length: n }, () => rng.gamma(shape)).sort()
      let ks = 0
      for (let i = 0; i < n; i++) {
        const f = cdf(xs[i]!)
        ks = Math.max(ks, Math.abs(f - i / n), Math.abs(f - (i + 1) / n))
      }
      // The Kolmogorov bound at 1e5 draws is about 0.0052 at the 0.1 % level.
      expect(ks).toBeLessThan(0.0052)
    }
  })

  test('a seed that is not a safe integer is refused', () => {
    expect(() => new Rng(1.5)).toThrow(RangeError)
    expect(() => new Rng(Number.NaN)).toThrow(/seed/)
  })
})

describe('resampled median', () => {
  test('for odd n it follows the exact law of the median of a resample with replacement', () => {
    const n = 11
    const x = Float64Array.from({ length: n }, (_, i) => i)
    const rng = new Rng(3)
    const draws = 200_000
    const counts = new Array<number>(n).fill(0)
    for (let i = 0; i < draws; i++) counts[resampleMedian(x, rng)]!++
    let cdf = 0
    for (let j = 0; j < n; j++) {
      cdf += counts[j]! / draws
      expect(Math.abs(cdf - binomialAtLeast(n, (j + 1) / n, 6))).toBeLessThan(0.006)
    }
  })

  test('for even n both middle order statistics and their ties follow the exact law', () => {
    // x[i] = 2^i: the mean of two entries tells which two ranks were drawn.
    const n = 10
    const k = 5
    const x = Float64Array.from({ length: n }, (_, i) => 2 ** i)
    const rng = new Rng(4)
    const draws = 200_000
    const lower = new Array<number>(n).fill(0)
    const upper = new Array<number>(n).fill(0)
    let ties = 0
    for (let i = 0; i < draws; i++) {
      const s = 2 * resampleMedian(x, rng)
      const hi = Math.floor(Math.log2(s))
      if (s === 2 ** hi) {
        lower[hi - 1]!++
        upper[hi - 1]!++
        ties++
      } else {
        lower[Math.log2(s - 2 ** hi)]!++
        upper[hi]!++
      }
    }
    let cdfLower = 0
    let cdfUpper = 0
    for (let j = 0; j < n; j++) {
      cdfLower += lower[j]! / draws
      cdfUpper += upper[j]! / draws
      expect(Math.abs(cdfLower - binomialAtLeast(n, (j + 1) / n, k))).toBeLessThan(0.006)
      expect(Math.abs(cdfUpper - binomialAtLeast(n, (j + 1) / n, k + 1))).toBeLessThan(0.006)
    }
    // Ranks k and k+1 coincide at v when at most k-1 draws fall below v and at least k+1 at or
    // below it: a trinomial sum.
    let exactTies = 0
    const fact = (m: number): number => (m <= 1 ? 1 : m * fact(m - 1))
    for (let v = 0; v < n; v++) {
      const [pl, pe, pg] = [v / n, 1 / n, (n - 1 - v) / n]
      for (let i = 0; i <= k - 1; i++) {
        for (let j = k + 1 - i; j <= n - i; j++) {
          const rest = n - i - j
          exactTies += (fact(n) / (fact(i) * fact(j) * fact(rest))) * pl ** i * pe ** j * pg ** rest
        }
      }
    }
    expect(Math.abs(ties / draws - exactTies)).toBeLessThan(0.005)
  })
})

describe('bootstrap median ratio', () => {
  test('a sample scaled by 1.2 gives ratio 1.2 inside a narrow interval', () => {
    const a = lognormal(new Rng(10), 10_000, 1e6, 0.2)
    const b = a.map((v) => v * 1.2)
    const r = bootstrapMedianRatio(a, b)
    expect(r.ratio).toBeCloseTo(1.2, 12)
    expect(r.low).toBeLessThanOrEqual(1.2)
    expect(r.high).toBeGreaterThanOrEqual(1.2)
    expect(r.high - r.low).toBeLessThan(0.02)
    expect(r.high - r.low).toBeGreaterThan(0)
    expect(r.resamples).toBe(2000)
  })

  test('independent uniform samples on [0,2] and [0,3] give an interval containing 1.5', () => {
    const rng = new Rng(11)
    const a = uniformOn(rng, 2000, 2)
    const b = uniformOn(rng, 2000, 3)
    const r = bootstrapMedianRatio(a, b)
    expect(Math.abs(r.ratio - 1.5)).toBeLessThan(0.1)
    expect(r.low).toBeLessThan(1.5)
    expect(r.high).toBeGreaterThan(1.5)
    expect(r.low).toBeLessThanOrEqual(r.ratio)
    expect(r.high).toBeGreaterThanOrEqual(r.ratio)
  })

  test('the 95 % interval covers the true ratio in 90 to 99 % of repeated experiments', () => {
    // a: lognormal with median 1e6; b: 1.1e6 plus an exponential of mean 2e5, median 1.1e6 + 2e5 ln 2.
    const truth = (1.1e6 + 2e5 * Math.LN2) / 1e6
    const rng = new Rng(12)
    const reps = 200
    const n = 400
    let covered = 0
    for (let rep = 0; rep < reps; rep++) {
      const a = lognormal(rng, n, 1e6, 0.3)
      const b = new Float64Array(n)
      for (let i = 0; i < n; i++) b[i] = 1.1e6 - 2e5 * Math.log(rng.uniform())
      const r = bootstrapMedianRatio(a, b, { seed: rep + 1 })
      if (r.low <= truth && truth <= r.high) covered++
    }
    expect(covered / reps).toBeGreaterThanOrEqual(0.9)
    expect(covered / reps).toBeLessThanOrEqual(0.99)
  })

  test('the same seed gives the same interval and another seed nearly the same', () => {
    const rng = new Rng(13)
    const a = lognormal(rng, 3000, 1e6, 0.3)
    const b = lognormal(rng, 3000, 1.1e6, 0.3)
    const first = bootstrapMedianRatio(a, b, { seed: 42 })
    expect(bootstrapMedianRatio(a, b, { seed: 42 })).toEqual(first)
    expect(bootstrapMedianRatio(a, b)).toEqual(bootstrapMedianRatio(a, b))
    const other = bootstrapMedianRatio(a, b, { seed: 43 })
    expect(other.ratio).toBe(first.ratio)
    expect(other.low === first.low && other.high === first.high).toBe(false)
    const width = first.high - first.low
    expect(Math.abs(other.low - first.low)).toBeLessThan(0.1 * width)
    expect(Math.abs(other.high - first.high)).toBeLessThan(0.1 * width)
  })

  test('a wider confidence gives a wider interval around the same ratio', () => {
    const rng = new Rng(14)
    const a = lognormal(rng, 1000, 1e6, 0.3)
    const b = lognormal(rng, 1000, 1.2e6, 0.3)
    const r90 = bootstrapMedianRatio(a, b, { confidence: 0.9 })
    const r99 = bootstrapMedianRatio(a, b, { confidence: 0.99 })
    expect(r99.ratio).toBe(r90.ratio)
    expect(r99.low).toBeLessThan(r90.low)
    expect(r99.high).toBeGreaterThan(r90.high)
  })

  test('two samples of 10,000 with 2000 resamples finish with a sound interval', () => {
    const rng = new Rng(15)
    const a = lognormal(rng, 10_000, 1e6, 0.3)
    const b = lognormal(rng, 10_000, 1.15e6, 0.3)
    const t0 = performance.now()
    const r = bootstrapMedianRatio(a, b, { resamples: 2000 })
    const ms = performance.now() - t0
    console.log(`bootstrap 10000 vs 10000, 2000 resamples: ${ms.toFixed(1)} ms`)
    expect(r.resamples).toBe(2000)
    expect(r.low).toBeLessThan(1.15)
    expect(r.high).toBeGreaterThan(1.15)
  })

  test('invalid samples and options throw a RangeError naming the argument', () => {
    const ok = Float64Array.from([1, 2, 3])
    expect(() => bootstrapMedianRatio(Float64Array.from([1]), ok)).toThrow(
      /^a must hold at least 2/
    )
    expect(() => bootstrapMedianRatio(ok, new Float64Array(0))).toThrow(/^b must hold at least 2/)
    expect(() => bootstrapMedianRatio(ok, Float64Array.from([1, Number.NaN]))).toThrow(
      /^b\[1\] is NaN/
    )
    expect(() => bootstrapMedianRatio(Float64Array.from([Infinity, 1]), ok)).toThrow(
      /^a\[0\] is Infinity/
    )
    expect(() => bootstrapMedianRatio(Float64Array.from([0, 1]), ok)).toThrow(/^a\[0\] is 0/)
    expect(() => bootstrapMedianRatio(ok, ok, { resamples: 0 })).toThrow(/^resamples/)
    expect(() => bootstrapMedianRatio(ok, ok, { resamples: 2.5 })).toThrow(/^resamples/)
    expect(() => bootstrapMedianRatio(ok, ok, { confidence: 1 })).toThrow(/^confidence/)
    expect(() => bootstrapMedianRatio(ok, ok, { seed: 0.5 })).toThrow(/^seed/)
    expect(() => bootstrapMedianRatio([1, 2] as unknown as Float64Array, ok)).toThrow(RangeError)
  })
})

function hook(
  progId: number,
  fullName: string,
  hookName: string,
  owner: { pid: number; comm: string; exe: string } | null,
  nsPerExec: number,
  runsPerExec = 1,
  own = false
): MicroHook {
  return {
    progId,
    name: fullName.slice(0, 15),
    fullName,
    type: 'tracepoint',
    hook: hookName,
    tool: 'other',
    owners: owner ? [owner] : [],
    runs: runsPerExec * 10_000,
    runTimeNs: nsPerExec * 10_000,
    nsPerRun: runsPerExec ? nsPerExec / runsPerExec : null,
    runsPerExec,
    nsPerExec,
    shareOfExec: nsPerExec / 1e6,
    own,
  }
}

function owner(pid: number, comm: string, exe: string, cpuNsPerExec: number): MicroOwner {
  return { pid, comm, exe, tool: 'other', cpuNsPerExec, cpuNs: cpuNsPerExec * 10_000 }
}

const q = { p50: 1e6, p95: 1.2e6, p99: 1.3e6, mean: 1e6, min: 9e5, max: 2e6 }

function report(
  run: Partial<MicroReport['run']>,
  hooks: MicroHook[],
  owners: MicroOwner[],
  extra: Partial<MicroReport> = {}
): MicroReport {
  return {
    run: {
      id: 1,
      iterations: 10_000,
      warmup: 100,
      binary: '/usr/bin/ls',
      args: [],
      condition: 'baseline',
      label: null,
      statsMode: 'fd',
      wallNs: 1e10,
      startedAt: '2025-01-01T00:00:00.000Z',
      node: 'node-1',
      kernel: '6.12.0',
      version: '0.1.0',
      ...run,
    },
    latencyNs: q,
    phasesNs: { forkToExecve: q, execveToExec: q, execToExit: q },
    probe: {
      policy: 'batched',
      seen: { ringbuf: 10_000, perf: 10_000 },
      lost: { ringbuf: 0, perf: 0 },
      deliveryNs: { ringbuf: { p50: 5000, p99: 9000 }, perf: { p50: 6000, p99: 10000 } },
    },
    delivery: null,
    idle: { windowNs: 1e10 },
    hooks,
    owners,
    failures: 0,
    warnings: [],
    ...extra,
  }
}

const SYSTEMD_A = { pid: 1, comm: 'systemd', exe: '/usr/lib/systemd/systemd' }
const SNOOP_B = { pid: 900, comm: 'execsnoop', exe: '/usr/sbin/execsnoop' }
const FALCO_A = { pid: 700, comm: 'falco', exe: '/usr/bin/falco' }
const HM = { pid: 600, comm: 'hookmeter', exe: '/usr/local/bin/hookmeter' }

const runA = report(
  { id: 3, condition: 'baseline', iterations: 10_000, wallNs: 1e10 },
  [
    hook(10, 'sd_devices', 'cgroup_device', SYSTEMD_A, 2),
    hook(11, 'falco_exec', 'raw_tracepoint:sched_process_exec', FALCO_A, 600),
    hook(12, 'hm_exec_enter', 'tracepoint:syscalls:sys_enter_execve', HM, 50, 1, true),
    hook(13, 'orphan_prog', 'raw_tracepoint:sys_enter', null, 7, 20),
  ],
  [owner(1, 'systemd', '/usr/lib/systemd/systemd', 10), owner(700, 'falco', '/usr/bin/falco', 900)]
)

const runB = report(
  { id: 7, condition: 'policy', iterations: 5000, wallNs: 6.25e9 },
  [
    hook(40, 'sd_devices', 'cgroup_device', { ...SYSTEMD_A }, 3),
    hook(
      41,
      'tracepoint__syscalls__sys_enter_execve',
      'tracepoint:syscalls:sys_enter_execve',
      SNOOP_B,
      300
    ),
    hook(
      42,
      'tracepoint__syscalls__sys_enter_execve',
      'tracepoint:syscalls:sys_enter_execve',
      SNOOP_B,
      200
    ),
    hook(
      43,
      'tracepoint__syscalls__sys_exit_execve',
      'tracepoint:syscalls:sys_exit_execve',
      SNOOP_B,
      40
    ),
    hook(44, 'hm_exec_enter', 'tracepoint:syscalls:sys_enter_execve', HM, 80, 1, true),
    hook(45, 'orphan_prog', 'raw_tracepoint:sys_enter', null, 9, 20),
  ],
  [
    owner(1, 'systemd', '/usr/lib/systemd/systemd', 12),
    owner(900, 'execsnoop', '/usr/sbin/execsnoop', 4000),
  ]
)

const samplesA = lognormal(new Rng(20), 10_000, 1e6, 0.2)
const samplesB = lognormal(new Rng(21), 5000, 1.25e6, 0.2)

describe('compare runs', () => {
  const r = compareRuns(runA, samplesA, runB, samplesB)

  test('total time overhead is the ratio of wall time per exec', () => {
    // (6.25e9 / 5000) / (1e10 / 10000) = 1.25 exactly
    expect(r.overhead.totalTimePct).toBe(25)
  })

  test('medians come from the samples and the ratio carries its interval', () => {
    const [ma] = quantiles(samplesA, [0.5])
    const [mb] = quantiles(samplesB, [0.5])
    expect(r.a.medianNs).toBe(ma!)
    expect(r.b.medianNs).toBe(mb!)
    expect(r.overhead.medianRatio).toBe(mb! / ma!)
    expect(r.overhead.medianPct).toBeCloseTo((mb! / ma!) * 100 - 100, 10)
    expect(r.overhead.ci95.low).toBeLessThan(r.overhead.medianRatio)
    expect(r.overhead.ci95.high).toBeGreaterThan(r.overhead.medianRatio)
    expect(r.overhead.ci95Pct.low).toBeCloseTo(r.overhead.ci95.low * 100 - 100, 10)
    expect(r.overhead.ci95Pct.high).toBeCloseTo(r.overhead.ci95.high * 100 - 100, 10)
    expect(r.a).toMatchObject({ id: 3, condition: 'baseline', statsMode: 'fd', iterations: 10_000 })
    expect(r.b).toMatchObject({ id: 7, condition: 'policy', iterations: 5000, wallNs: 6.25e9 })
  })

  test('the split sums hook and owner deltas without hookmeter and adds up to the total', () => {
    // kernel: B (3 + 300 + 200 + 40 + 9) - A (2 + 600 + 7); user: B (12 + 4000) - A (10 + 900)
    expect(r.split.inKernelNsPerExec).toBe(552 - 609)
    expect(r.split.userSpaceNsPerExec).toBe(4012 - 910)
    expect(r.split.totalNsPerExec).toBe(r.b.wallNs / r.b.iterations - r.a.wallNs / r.a.iterations)
    expect(r.split.unattributedNsPerExec).toBeCloseTo(
      r.split.totalNsPerExec - r.split.inKernelNsPerExec - r.split.userSpaceNsPerExec,
      6
    )
  })

  test('hooks are matched across program ids by owner, name and hook, and summed within a run', () => {
    const find = (fullName: string, hookName: string) =>
      r.hooks.find((h) => h.key.fullName === fullName && h.key.hook === hookName)
    expect(find('sd_devices', 'cgroup_device')).toEqual({
      key: { comm: 'systemd', fullName: 'sd_devices', hook: 'cgroup_device' },
      a: { programs: 1, nsPerExec: 2, runsPerExec: 1 },
      b: { programs: 1, nsPerExec: 3, runsPerExec: 1 },
      deltaNsPerExec: 1,
    })
    expect(
      find('tracepoint__syscalls__sys_enter_execve', 'tracepoint:syscalls:sys_enter_execve')
    ).toEqual({
      key: {
        comm: 'execsnoop',
        fullName: 'tracepoint__syscalls__sys_enter_execve',
        hook: 'tracepoint:syscalls:sys_enter_execve',
      },
      a: null,
      b: { programs: 2, nsPerExec: 500, runsPerExec: 2 },
      deltaNsPerExec: 500,
    })
    expect(find('falco_exec', 'raw_tracepoint:sched_process_exec')).toMatchObject({
      b: null,
      deltaNsPerExec: -600,
    })
    expect(find('orphan_prog', 'raw_tracepoint:sys_enter')?.key.comm).toBe('')
    expect(r.hooks.length).toBe(5)
  })

  test("the measuring hookmeter's own programs are left out", () => {
    expect(r.hooks.some((h) => h.key.fullName.startsWith('hm_'))).toBe(false)
    expect(r.owners.map((o) => o.comm).sort()).toEqual(['execsnoop', 'falco', 'systemd'])
  })

  test('hooks and owners are sorted by absolute delta, largest first', () => {
    expect(r.hooks.map((h) => h.deltaNsPerExec)).toEqual([-600, 500, 40, 2, 1])
    expect(r.owners.map((o) => o.deltaCpuNsPerExec)).toEqual([4000, -900, 2])
    expect(r.owners[0]).toEqual({
      comm: 'execsnoop',
      exe: '/usr/sbin/execsnoop',
      a: null,
      b: 4000,
      deltaCpuNsPerExec: 4000,
    })
  })

  test('two comparable runs in the right order give no warnings', () => {
    expect(r.warnings).toEqual([])
  })

  test('the result survives a round trip through json', () => {
    expect(JSON.parse(JSON.stringify(r))).toEqual(r)
  })

  test('differing statistics modes and a baseline given second are warned about', () => {
    const policyA = {
      ...runA,
      run: { ...runA.run, condition: 'policy' as const, statsMode: 'fd' as const },
    }
    const baselineB = {
      ...runB,
      run: { ...runB.run, condition: 'baseline' as const, statsMode: 'sysctl' as const },
    }
    const w = compareRuns(policyA, samplesA, baselineB, samplesB).warnings
    expect(w).toHaveLength(2)
    expect(w[0]).toMatch(/different statistics modes \(run 3: fd, run 7: sysctl\)/)
    expect(w[1]).toMatch(/run 7 \(B\) is a baseline and run 3 \(A\) is not: .*swapped/)
  })

  test.each([
    [
      'binaries differ',
      { run: { binary: '/usr/bin/true' } },
      /different binaries \(run 3: \/usr\/bin\/ls, run 7: \/usr\/bin\/true\)/,
    ],
    [
      'arguments differ',
      { run: { args: ['-l'] } },
      /different arguments \(run 3: \[\], run 7: \["-l"\]\)/,
    ],
    [
      'iterations differ over tenfold',
      { run: { iterations: 100, wallNs: 1.25e8 } },
      /more than tenfold \(run 3: 10000, run 7: 100\)/,
    ],
    ['run b had failures', { failures: 3 }, /run 7 had 3 failed execs of 5000/],
    [
      'run b lost records',
      { probe: { ...runB.probe, lost: { ringbuf: 0, perf: 2 } } },
      /run 7 lost probe records \(ring buffer 0, perf buffer 2\)/,
    ],
    [
      'nodes differ',
      { run: { node: 'node-2' } },
      /different nodes \(run 3: node-1, run 7: node-2\)/,
    ],
  ] as const)('a warning is given when %s', (_name, change, pattern) => {
    const { run, ...rest } = change as { run?: Partial<MicroReport['run']> } & Partial<MicroReport>
    const b = { ...runB, ...rest, run: { ...runB.run, ...run } }
    const sb = lognormal(new Rng(22), b.run.iterations, 1.25e6, 0.2)
    const w = compareRuns(runA, samplesA, b, sb).warnings
    expect(w).toHaveLength(1)
    expect(w[0]).toMatch(pattern)
  })

  test('samples that do not match the iteration count are warned about', () => {
    const w = compareRuns(runA, samplesA, runB, samplesB.subarray(0, 4000)).warnings
    expect(w).toEqual(['run 7 has 4000 latency samples for 5000 iterations'])
  })

  test('invalid samples throw a RangeError naming the argument', () => {
    expect(() => compareRuns(runA, new Float64Array(1), runB, samplesB)).toThrow(/^sa must hold/)
    expect(() => compareRuns(runA, samplesA, runB, Float64Array.from([1, -1]))).toThrow(
      /^sb\[1\] is -1/
    )
    const broken = { ...runB, run: { ...runB.run, iterations: 0 } }
    expect(() => compareRuns(runA, samplesA, broken, samplesB)).toThrow(/^b\.run\.iterations/)
  })
})

describe('format compare', () => {
  const r = compareRuns(runA, samplesA, runB, samplesB)
  const text = formatCompare(r)
  const lines = text.split('\n')

  test('the first line gives both overhead figures with the interval', () => {
    const d = (v: number) => v.toFixed(3)
    expect(lines[0]).toBe(
      `overhead of run 7 (policy) over run 3 (baseline): +25.0 % total time; median ratio ${d(r.overhead.medianRatio)} [${d(r.overhead.ci95.low)}, ${d(r.overhead.ci95.high)}] 95 % CI`
    )
  })

  test('the split, hooks and owners follow in that order with signed deltas', () => {
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l))
    const split = at(/^per exec, mean difference \+/)
    const kernel = at(/^ {2}in kernel .* -57\.0 ns$/)
    const user = at(/^ {2}user space .* \+3\.10 µs$/)
    const hooks = at(/^hooks, per exec \(5 of 5 by \|Δ\|\):$/)
    const falco = at(
      /^ {2}falco .* falco_exec .* 600 ns +- +-600 ns +- {2}raw_tracepoint:sched_process_exec$/
    )
    const owners = at(/^owners, CPU per exec \(3 of 3 by \|Δ\|\):$/)
    const snoop = at(/^ {2}execsnoop +- +4\.00 µs +\+4\.00 µs {2}\/usr\/sbin\/execsnoop$/)
    expect([split, kernel, user, hooks, falco, owners, snoop].every((i) => i > 0)).toBe(true)
    expect([split, kernel, user, hooks, falco, owners, snoop]).toEqual(
      [split, kernel, user, hooks, falco, owners, snoop].toSorted((x, y) => x - y)
    )
    expect(text).not.toContain('hm_exec_enter')
    expect(text).not.toContain('warnings:')
  })

  test('warnings come last', () => {
    const b = {
      ...runB,
      run: {
        ...runB.run,
        condition: 'no-policy' as const,
        label: 'again',
        statsMode: 'sysctl' as const,
      },
    }
    const out = formatCompare(compareRuns(runA, samplesA, b, samplesB)).split('\n')
    expect(out[0]).toStartWith('overhead of run 7 (no-policy, again) over run 3 (baseline): ')
    expect(out.at(-2)).toBe('warnings:')
    expect(out.at(-1)).toBe(
      '  - runs were measured with different statistics modes (run 3: fd, run 7: sysctl): their per-hook figures and loop times may not be comparable'
    )
  })
})
