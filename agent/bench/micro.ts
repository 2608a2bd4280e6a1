/**
 * The study's micro benchmark: exec a binary N times, and beside the loop totals, what every eBPF
 * program on the host cost per exec and which process owns it.
 *
 * Order of a run: delivery calibration, warm-up (not traced), the probe attached, an idle window
 * as long as the loop is expected to take (the background rate of every program and owner), then
 * the counted loop with the probe tracing its children in batched mode.
 */
import { hostname, release } from 'node:os'

import { programInfoByFd } from '../../libbpf-bindings/enumerate.ts'
import type { Mechanism } from '../../libbpf-bindings/reader.ts'
import type { StatsMode } from '../../libbpf-bindings/stats.ts'
import { calibrateDelivery, DeliveryAbortedError, type DeliveryReport } from '../delivery.ts'
import { createExecLoop, type ExecLoopResult } from '../exec-loop.ts'
import { programDelta, snapshot, sleep } from '../hooks.ts'
import { takeInventory, type Inventory, type OwnerRef } from '../inventory.ts'
import type { ExecProbe, ExecRecord } from '../probe.ts'
import { processCpuNs } from '../procfs.ts'
import { histogram, mean, quantiles } from '../stats.ts'
import { resolvedBinary } from '../allowlist.ts'
import type { MicroOptions } from './options.ts'
import type { MicroHook, MicroOwner, MicroReport, Quantiles } from './report.ts'
import pkg from '../../package.json' with { type: 'json' }

export type MicroPhase = 'delivery' | 'warmup' | 'idle' | 'loop' | 'collect'

export interface MicroContext {
  probe: ExecProbe
  statsMode: StatsMode
  runId: number
  onPhase?: (phase: MicroPhase, detail: string) => void
  onProgress?: (done: number, total: number) => void
  signal?: AbortSignal
  /** execs per delivery-calibration pass; 0 skips the calibration */
  deliveryExecs?: number
  /** longest idle window; the background rate is scaled to the loop's real length */
  maxIdleMs?: number
}

export class AbortedError extends Error {
  override readonly name = 'AbortedError'
}

export function summarize(values: ArrayLike<number>): Quantiles {
  const [p50, p95, p99, min, max] = quantiles(values, [0.5, 0.95, 0.99, 0, 1])
  return { p50: p50!, p95: p95!, p99: p99!, mean: mean(values), min: min!, max: max! }
}

function ownerCpu(pids: number[]): Map<number, number> {
  const out = new Map<number, number>()
  for (const pid of pids) {
    const ns = processCpuNs(pid)
    if (ns !== null) out.set(pid, ns)
  }
  return out
}

function ownersOf(inv: Inventory): Map<number, OwnerRef> {
  const out = new Map<number, OwnerRef>()
  for (const p of inv.programs) for (const o of p.owners) out.set(o.pid, o)
  return out
}

/** Program counters and owner CPU times on both sides of a step. */
interface Span {
  start: ReturnType<typeof snapshot>
  end: ReturnType<typeof snapshot>
  cpu0: Map<number, number>
  cpu1: Map<number, number>
}

async function span<T>(pids: number[], step: () => Promise<T>): Promise<[Span, T]> {
  const cpu0 = ownerCpu(pids)
  const start = snapshot()
  const value = await step()
  const end = snapshot()
  const cpu1 = ownerCpu(pids)
  return [{ start, end, cpu0, cpu1 }, value]
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortedError('run aborted')
}

export async function runMicro(
  opts: MicroOptions,
  ctx: MicroContext
): Promise<{ report: MicroReport; samples: Float64Array }> {
  try {
    return await measure(opts, ctx)
  } finally {
    // a failure or an abort between the calibration's passes can leave the programs attached
    ctx.probe.detachPrograms()
  }
}

async function measure(
  opts: MicroOptions,
  ctx: MicroContext
): Promise<{ report: MicroReport; samples: Float64Array }> {
  const warnings: string[] = []
  const phase = (p: MicroPhase, d: string) => ctx.onPhase?.(p, d)
  // exec what the allowlist check resolved, so a link changed later is not followed
  const exe = resolvedBinary(opts.binary)
  const deliveryExecs = ctx.deliveryExecs ?? 200

  // delivery calibration: latency and wake-up cost per mechanism, on this node, now
  let delivery: DeliveryReport | null = null
  if (deliveryExecs > 0) {
    phase('delivery', `delivery calibration (${deliveryExecs} execs × 5 passes)`)
    try {
      delivery = await calibrateDelivery({
        probe: ctx.probe,
        execs: deliveryExecs,
        signal: ctx.signal,
      })
    } catch (err) {
      if (err instanceof DeliveryAbortedError) throw new AbortedError('run aborted')
      throw err
    }
  }
  checkAbort(ctx.signal)

  // warm-up, untraced; its median sizes the idle window (1 ms an exec without one)
  phase('warmup', `warm-up: ${opts.warmup} execs`)
  let perExecNs = 1e6
  if (opts.warmup > 0) {
    using loop = createExecLoop({
      binary: exe,
      args: opts.args,
      iterations: opts.warmup,
      warmup: 0,
      signal: ctx.signal,
    })
    const warm = await loop.start()
    if (warm.failures > 0)
      warnings.push(`warm-up: ${warm.failures} execs failed (${warm.firstFailure})`)
    if (warm.latencyNs.length) perExecNs = quantiles(warm.latencyNs, [0.5])[0]!
  }
  checkAbort(ctx.signal)
  const expectedMs = (perExecNs * opts.iterations) / 1e6
  const idleMs = Math.min(Math.max(expectedMs, 200), ctx.maxIdleMs ?? 30_000)

  await ctx.probe.attach({ policy: 'batched', mechanisms: ['ringbuf', 'perf'] })
  let collected
  let result: ExecLoopResult
  let idle: Span
  let loopSnap: Span
  let before: Inventory
  let after: Inventory
  try {
    // idle window: the background each program and owner runs at without the loop
    phase('idle', `idle window: ${(idleMs / 1000).toFixed(1)} s`)
    before = takeInventory()
    const pids = [...ownersOf(before).keys()].filter((p) => p !== process.pid)
    idle = (await span(pids, () => sleep(idleMs, ctx.signal)))[0]
    checkAbort(ctx.signal)

    // the counted loop, its children traced
    phase('loop', `loop: ${opts.iterations} execs of ${opts.binary}`)
    using loop = createExecLoop({
      binary: exe,
      args: opts.args,
      iterations: opts.iterations,
      warmup: 0,
      signal: ctx.signal,
      onProgress: ctx.onProgress,
    })
    ctx.probe.addSpawner(await loop.spawnerTid)
    ;[loopSnap, result] = await span(pids, () => loop.start())
    // names, owners and hooks while the probe is still attached, so its own hooks show too
    after = takeInventory()
  } finally {
    collected = await ctx.probe.detach()
  }
  if (result.aborted) throw new AbortedError('run aborted')

  phase('collect', 'collecting')
  const loopNs = Number(loopSnap.end.at - loopSnap.start.at)
  const idleNs = Number(idle.end.at - idle.start.at)
  const scale = loopNs / idleNs
  const n = result.iterations
  const latency = result.latencyNs
  const meanLatency = mean(latency)

  // hookmeter's own programs are this probe's, by id: a name can be borrowed by anyone
  const ownIds = new Set(Object.values(ctx.probe.programFds()).map((fd) => programInfoByFd(fd).id))

  // per hook: raw deltas over the loop, and per exec less the idle window's rate
  const key = (id: number, t: bigint) => `${id}:${t}`
  const hooks: MicroHook[] = []
  for (const p of after.programs) {
    const k = key(p.progId, p.loadTimeNs)
    const ls = loopSnap.start.counters.get(k)
    const le = loopSnap.end.counters.get(k)
    if (!le) continue
    if (!ls)
      warnings.push(
        `program ${p.progId} ${p.fullName} was loaded during the loop; counted from its load`
      )
    const runs = Number(le.runCnt - (ls?.runCnt ?? 0n))
    const runTimeNs = Number(le.runTimeNs - (ls?.runTimeNs ?? 0n))
    const is = idle.start.counters.get(k)
    const ie = idle.end.counters.get(k)
    const bgRuns = is && ie ? Number(ie.runCnt - is.runCnt) * scale : 0
    const bgNs = is && ie ? Number(ie.runTimeNs - is.runTimeNs) * scale : 0
    const nsPerExec = (runTimeNs - bgNs) / n
    hooks.push({
      ...programDelta(p, runs, runTimeNs),
      runsPerExec: (runs - bgRuns) / n,
      nsPerExec,
      shareOfExec: meanLatency > 0 ? nsPerExec / meanLatency : 0,
      own: ownIds.has(p.progId),
    })
  }
  const gone = before.programs.filter(
    (p) => !after.programs.some((q) => q.progId === p.progId && q.loadTimeNs === p.loadTimeNs)
  )
  for (const p of gone)
    warnings.push(
      `program ${p.progId} ${p.fullName} was unloaded during the run and is not in the table`
    )
  hooks.sort((a, b) => b.nsPerExec - a.nsPerExec || a.progId - b.progId)

  // the probe's exit program runs once per child of the loop: far from 1 per exec, the idle
  // window did not see the same background as the loop (another run, a busy host)
  const exit = hooks.find((h) => h.own && h.fullName === 'hm_sched_process_exit')
  if (exit && Math.abs(exit.runsPerExec - 1) > 0.1) {
    warnings.push(
      `background correction is unreliable: hookmeter's exit probe ran ${exit.runsPerExec.toFixed(2)} times per exec after correction, not 1 (other work on the host changed between the idle window and the loop)`
    )
  }

  // user-space share: CPU of every owner process (hookmeter itself left out)
  const owners: MicroOwner[] = []
  const ownerRefs = ownersOf(before)
  for (const [pid, o] of ownerRefs) {
    if (pid === process.pid) continue
    const c0 = loopSnap.cpu0.get(pid)
    const c1 = loopSnap.cpu1.get(pid)
    if (c0 === undefined || c1 === undefined) {
      warnings.push(`owner ${o.comm}[${pid}] exited during the loop; its CPU time is not counted`)
      continue
    }
    const i0 = idle.cpu0.get(pid)
    const i1 = idle.cpu1.get(pid)
    const bg = i0 !== undefined && i1 !== undefined ? (i1 - i0) * scale : 0
    const tool = before.programs.find((p) => p.owners.some((x) => x.pid === pid))?.tool ?? 'other'
    owners.push({
      pid,
      comm: o.comm,
      exe: o.exe,
      tool,
      cpuNs: c1 - c0,
      cpuNsPerExec: (c1 - c0 - bg) / n,
    })
  }
  owners.sort((a, b) => b.cpuNsPerExec - a.cpuNsPerExec)

  const records = collected.records
  const traced = records.ringbuf.length >= records.perf.length ? records.ringbuf : records.perf
  const phases = phasesOf(traced)
  const ok = traced.filter((r) => r.enterNs > 0n && r.execNs > 0n)
  for (const mech of ['ringbuf', 'perf'] as const) {
    if (records[mech].length !== n)
      warnings.push(`probe: ${records[mech].length} of ${n} execs arrived through the ${mech}`)
  }
  if (result.failures > 0) warnings.push(`${result.failures} execs failed (${result.firstFailure})`)
  for (const w of [...before.warnings, ...after.warnings])
    if (!warnings.includes(w)) warnings.push(w)

  const q = (m: Mechanism) => ({
    p50: delivery?.mechanisms[m].deliveryNs.p50 ?? 0,
    p99: delivery?.mechanisms[m].deliveryNs.p99 ?? 0,
  })
  const report: MicroReport = {
    run: {
      id: ctx.runId,
      iterations: n,
      warmup: opts.warmup,
      binary: opts.binary,
      args: opts.args,
      condition: opts.condition,
      label: opts.label,
      statsMode: ctx.statsMode,
      wallNs: Number(result.wallNs),
      startedAt: new Date(Date.now() - Number(result.wallNs) / 1e6).toISOString(),
      node: process.env.NODE_NAME || hostname(),
      kernel: release(),
      version: pkg.version,
    },
    latencyNs: summarize(latency),
    phasesNs: phases,
    probe: {
      policy: 'batched',
      seen: { ringbuf: records.ringbuf.length, perf: records.perf.length },
      lost: collected.lost,
      deliveryNs: { ringbuf: q('ringbuf'), perf: q('perf') },
    },
    delivery,
    idle: { windowNs: idleNs },
    hooks,
    owners,
    failures: result.failures,
    warnings,
    histograms: {
      latency: histogram(latency),
      phases: {
        forkToExecve: histogram(ok.map((r) => Number(r.enterNs - r.forkNs))),
        execveToExec: histogram(ok.map((r) => Number(r.execNs - r.enterNs))),
        execToExit: histogram(ok.map((r) => Number(r.exitNs - r.execNs))),
      },
      delivery: {
        ringbuf: delivery?.mechanisms.ringbuf.deliveryHistogram ?? histogram([]),
        perf: delivery?.mechanisms.perf.deliveryHistogram ?? histogram([]),
      },
    },
  }
  return { report, samples: Float64Array.from(latency) }
}

function phasesOf(records: ExecRecord[]): MicroReport['phasesNs'] {
  const ok = records.filter((r) => r.enterNs > 0n && r.execNs > 0n)
  return {
    forkToExecve: summarize(ok.map((r) => Number(r.enterNs - r.forkNs))),
    execveToExec: summarize(ok.map((r) => Number(r.execNs - r.enterNs))),
    execToExit: summarize(ok.map((r) => Number(r.exitNs - r.execNs))),
  }
}
