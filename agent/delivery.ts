/**
 * Delivery calibration: what handing one record to user space costs in the kernel, with and
 * without waking the reader, and how long a woken reader takes to have it, per mechanism.
 */
import { programInfoByFd } from '../libbpf-bindings/enumerate.ts'
import type { Mechanism } from '../libbpf-bindings/reader.ts'
import { StatsSession } from '../libbpf-bindings/stats.ts'
import { createExecLoop } from './exec-loop.ts'
import { ExecProbe, type WakeupPolicy } from './probe.ts'
import { histogram, type Histogram, quantiles } from './stats.ts'

export interface DeliveryFigures {
  /** from the record's bpf_ktime_get_ns() to the reader having it, woken on every record */
  deliveryNs: { p50: number; p99: number; mean: number; samples: number }
  deliveryHistogram: Histogram
  /** hm_sched_process_exit per run, emitting through this mechanism only */
  exitProgNs: { perRecord: number; batched: number }
  /** in-kernel cost of one record: per-record minus no output; the wake-up: per-record minus batched */
  recordNs: { withWakeup: number; withoutWakeup: number }
  wakeupNs: number
  batchSize: number
  received: { perRecord: number; batched: number }
  lost: { perRecord: number; batched: number }
}

export interface DeliveryReport {
  execs: number
  binary: string
  statsMode: string
  /** hm_sched_process_exit per run with no output at all */
  exitProgNoOutputNs: number
  mechanisms: Record<Mechanism, DeliveryFigures>
}

export class DeliveryAbortedError extends Error {
  override readonly name = 'DeliveryAbortedError'
}

interface Pass {
  exitNsPerRun: number
  records: number
  lost: number
  deliveries: number[]
}

async function pass(
  probe: ExecProbe,
  mechanisms: Mechanism[],
  policy: WakeupPolicy,
  execs: number,
  batchSize: number,
  binary: string,
  signal?: AbortSignal
): Promise<Pass> {
  const exitFd = probe.object.program('hm_sched_process_exit').fd
  await probe.attach({ policy, mechanisms, batchSize })
  let collected
  const before = programInfoByFd(exitFd)
  try {
    using loop = createExecLoop({ binary, args: [], iterations: execs, warmup: 0, signal })
    const tid = await loop.spawnerTid
    probe.addSpawner(tid)
    await loop.start()
  } finally {
    collected = await probe.detach({ keepAttached: true })
  }
  const after = programInfoByFd(exitFd)
  const runs = Number(after.runCnt - before.runCnt)
  const mech = mechanisms[0]
  const records = mech ? collected.records[mech] : []
  return {
    // per traced exec: the few exits of other processes in the window cost little and are kept in
    exitNsPerRun: runs > 0 ? Number(after.runTimeNs - before.runTimeNs) / execs : 0,
    records: records.length,
    lost: mech ? collected.lost[mech] : 0,
    deliveries: records.map((r) => Number(r.arrivalNs - r.emitNs)),
  }
}

export async function calibrateDelivery(opts: {
  probe: ExecProbe
  execs?: number
  batchSize?: number
  binary?: string
  onStep?: (step: string) => void
  signal?: AbortSignal
}): Promise<DeliveryReport> {
  const execs = opts.execs ?? 500
  const batchSize = opts.batchSize ?? 256
  const binary = opts.binary ?? '/usr/bin/true'
  using stats = StatsSession.open()

  const check = () => {
    if (opts.signal?.aborted) throw new DeliveryAbortedError('delivery calibration aborted')
  }
  opts.onStep?.('no output')
  const none = await pass(opts.probe, [], 'batched', execs, batchSize, binary, opts.signal)
  const mechanisms = {} as Record<Mechanism, DeliveryFigures>
  for (const mech of ['ringbuf', 'perf'] as const) {
    check()
    opts.onStep?.(`${mech}, reader woken on every record`)
    const woken = await pass(
      opts.probe,
      [mech],
      'per-record',
      execs,
      batchSize,
      binary,
      opts.signal
    )
    check()
    opts.onStep?.(`${mech}, batched wake-ups`)
    const batched = await pass(opts.probe, [mech], 'batched', execs, batchSize, binary, opts.signal)
    const q = quantiles(woken.deliveries, [0.5, 0.99])
    mechanisms[mech] = {
      deliveryNs: {
        p50: q[0] ?? 0,
        p99: q[1] ?? 0,
        mean: woken.deliveries.reduce((a, b) => a + b, 0) / Math.max(1, woken.deliveries.length),
        samples: woken.deliveries.length,
      },
      deliveryHistogram: histogram(woken.deliveries),
      exitProgNs: { perRecord: woken.exitNsPerRun, batched: batched.exitNsPerRun },
      recordNs: {
        withWakeup: woken.exitNsPerRun - none.exitNsPerRun,
        withoutWakeup: batched.exitNsPerRun - none.exitNsPerRun,
      },
      wakeupNs: woken.exitNsPerRun - batched.exitNsPerRun,
      batchSize,
      received: { perRecord: woken.records, batched: batched.records },
      lost: { perRecord: woken.lost, batched: batched.lost },
    }
  }
  check()
  // the passes kept the programs attached; the caller's detach, or the next run's, ends that
  return { execs, binary, statsMode: stats.mode, exitProgNoOutputNs: none.exitNsPerRun, mechanisms }
}
