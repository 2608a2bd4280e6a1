/**
 * The micro benchmark's result, as printed by `bench micro --json`, stored, and served by the API.
 * Field names are a contract (issue: the main job): add fields, never rename them.
 */
import type { StatsMode } from '../../libbpf-bindings/stats.ts'
import type { DeliveryReport } from '../delivery.ts'
import type { ProgramDelta } from '../hooks.ts'
import type { Histogram } from '../stats.ts'
import type { Tool } from '../tools/types.ts'

export type Condition = 'baseline' | 'no-policy' | 'policy'
export type RunStatus = 'running' | 'done' | 'failed' | 'aborted'

export interface Quantiles {
  p50: number
  p95: number
  p99: number
  mean: number
  min: number
  max: number
}

/** runs, runTimeNs and nsPerRun are raw deltas over the loop */
export interface MicroHook extends ProgramDelta {
  /** background-corrected: minus the idle window's rate over the loop's duration, per exec */
  runsPerExec: number
  nsPerExec: number
  /** nsPerExec over the mean exec latency */
  shareOfExec: number
  /** the program is this run's own exec probe (by program id) */
  own: boolean
}

export interface MicroOwner {
  pid: number
  comm: string
  exe: string
  tool: Tool
  /** utime + stime of the process over the loop, background-corrected, per exec */
  cpuNsPerExec: number
  /** raw CPU ns over the loop */
  cpuNs: number
}

export interface MicroReport {
  run: {
    id: number
    iterations: number
    warmup: number
    binary: string
    args: string[]
    condition: Condition | null
    label: string | null
    statsMode: StatsMode
    wallNs: number
    startedAt: string
    node: string
    kernel: string
    version: string
  }
  latencyNs: Quantiles
  /** kernel phases of each exec, from the probe's timestamps */
  phasesNs: {
    forkToExecve: Quantiles
    execveToExec: Quantiles
    execToExit: Quantiles
  }
  probe: {
    policy: 'batched'
    seen: { ringbuf: number; perf: number }
    lost: { ringbuf: number; perf: number }
    /** from the delivery calibration taken with the run (reader woken per record) */
    deliveryNs: { ringbuf: { p50: number; p99: number }; perf: { p50: number; p99: number } }
  }
  delivery: DeliveryReport | null
  idle: { windowNs: number }
  hooks: MicroHook[]
  owners: MicroOwner[]
  failures: number
  warnings: string[]
  /** distributions for plots and Prometheus histograms (seconds) */
  histograms?: {
    latency: Histogram
    phases: { forkToExecve: Histogram; execveToExec: Histogram; execToExit: Histogram }
    delivery: { ringbuf: Histogram; perf: Histogram }
  }
}

/** A stored run: its report plus the raw per-exec latencies (ns), in loop order. */
export interface StoredRun {
  id: number
  status: RunStatus
  createdAt: string
  report: MicroReport | null
  error: string | null
  samples: Float64Array
}
