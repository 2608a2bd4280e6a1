/**
 * The node agent's state: the exec probe (loaded and verified at start, attached only during
 * runs), the statistics session, the store, and the one benchmark run that may be going.
 */
import { hostname } from 'node:os'

import { StatsSession, type StatsMode } from '../../libbpf-bindings/stats.ts'
import { AbortedError, runMicro } from '../bench/micro.ts'
import type { MicroOptions } from '../bench/options.ts'
import { existsSync } from 'node:fs'
import { arch, release } from 'node:os'

import { libbpfVersion } from '../../libbpf-bindings/libbpf.ts'
import { readStatsSysctl } from '../../libbpf-bindings/stats.ts'
import { KERNEL_BTF, probeKernel, type KernelReport } from '../features.ts'
import { measureWindow, type HooksWindow } from '../hooks.ts'
import { takeInventory, type Inventory } from '../inventory.ts'
import { inCluster, PodResolver } from '../k8s.ts'
import type { Logger } from '../log.ts'
import { ExecProbe } from '../probe.ts'
import { RunStore } from '../store.ts'
import pkg from '../../package.json' with { type: 'json' }

export type StatsPolicy = 'always' | 'runs'

export interface AgentOptions {
  dataDir: string
  stats: StatsPolicy
  probeObject?: string
  kernelBtf?: string
  allowed: string[]
  log: Logger
  deliveryExecs?: number
}

export interface RunProgress {
  done: number
  total: number
}

interface CurrentRun {
  id: number
  abort: AbortController
  progress: RunProgress
  listeners: Set<(event: RunEvent) => void>
  finished: Promise<void>
}

export type RunEvent =
  | { type: 'progress'; done: number; total: number }
  | { type: 'end'; status: 'done' | 'failed' | 'aborted' }

export class BusyError extends Error {
  constructor(readonly runId: number) {
    super(`run ${runId} is still going; one run at a time`)
  }
}

export class Agent {
  #stats: StatsSession | null = null
  #current: CurrentRun | null = null
  #inventory: { at: number; inv: Inventory } | null = null
  #pods: PodResolver | null = null
  #closed = false
  readonly startedAt = new Date().toISOString()
  readonly nodeName = process.env.NODE_NAME || hostname()

  private constructor(
    readonly opts: AgentOptions,
    readonly store: RunStore,
    readonly probe: ExecProbe
  ) {}

  #kernel: KernelReport | null = null
  #kernelProbe: Promise<void> | null = null

  /** Kernel features, probed once in the background after start (null until then). */
  get kernel(): KernelReport | null {
    return this.#kernel
  }

  /**
   * Loading and attaching a program of each kind takes a few hundred ms, most of it detaching
   * perf-event tracepoints; it runs after the agent is serving, not before.
   */
  probeFeatures(): Promise<void> {
    this.#kernelProbe ??= probeKernel({ btfPath: this.opts.kernelBtf })
      .then((k) => {
        this.#kernel = k
      })
      .catch((err) =>
        this.opts.log.warn('kernel feature probe failed', { error: (err as Error).message })
      )
    return this.#kernelProbe
  }

  /** Opens the store, loads and verifies the probe, takes an inventory. */
  static async start(opts: AgentOptions): Promise<Agent> {
    const store = RunStore.open(opts.dataDir)
    try {
      const aborted = store.markInterrupted()
      if (aborted) opts.log.warn(`${aborted} run(s) from an earlier agent were marked aborted`)
      const probe = await ExecProbe.load(opts.probeObject, { btfCustomPath: opts.kernelBtf })
      const agent = new Agent(opts, store, probe)
      if (opts.stats === 'always') agent.#stats = StatsSession.open()
      if (inCluster()) {
        // pods are looked up in the background; until the first list answers, owners have no pod
        try {
          agent.#pods = PodResolver.fromEnv({
            nodeName: agent.nodeName,
            onWarn: (m, f) => opts.log.warn(m, f),
          })
        } catch (err) {
          opts.log.warn('pods will not be named: the Kubernetes API is not usable', {
            error: (err as Error).message,
          })
        }
      }
      agent.inventory()
      return agent
    } catch (err) {
      store.close()
      throw err
    }
  }

  get statsMode(): StatsMode | 'off' {
    return this.#stats?.mode ?? 'off'
  }

  get currentRun(): { id: number; progress: RunProgress } | null {
    return this.#current ? { id: this.#current.id, progress: { ...this.#current.progress } } : null
  }

  /** The inventory, taken at most once a second however often it is asked for. */
  inventory(maxAgeMs = 1000): Inventory {
    const now = Date.now()
    if (!this.#inventory || now - this.#inventory.at > maxAgeMs) {
      this.#inventory = { at: now, inv: this.#withPods(takeInventory()) }
    }
    return this.#inventory.inv
  }

  /** Pod, namespace and DaemonSet of every owner whose cgroup names a pod or container. */
  #withPods(inv: Inventory): Inventory {
    const pods = this.#pods
    if (!pods) return inv
    for (const entry of [...inv.programs, ...inv.maps]) {
      for (const o of entry.owners) {
        const pod = o.podUid || o.containerId ? pods.resolve(o.podUid, o.containerId) : null
        if (!pod) continue
        o.pod = pod.pod
        o.namespace = pod.namespace
        if (pod.daemonSet) o.daemonSet = pod.daemonSet
      }
    }
    return inv
  }

  /** Kubernetes lookups: off outside a cluster, else the resolver's state. */
  podStatus() {
    return this.#pods
      ? this.#pods.status()
      : { state: 'off', reason: 'not in a cluster (KUBERNETES_SERVICE_HOST unset)' }
  }

  async hooks(windowMs: number, signal?: AbortSignal): Promise<HooksWindow> {
    const inventory = () => this.inventory(1000)
    if (this.#stats) return measureWindow(windowMs, this.#stats.mode, signal, inventory)
    using stats = StatsSession.open()
    return measureWindow(windowMs, stats.mode, signal, inventory)
  }

  /** Starts a run in the background; throws BusyError while another one is going. */
  startMicro(options: MicroOptions): number {
    if (this.#closed) throw new Error('agent is stopping')
    if (this.#current) throw new BusyError(this.#current.id)
    const id = this.store.createRun({
      iterations: options.iterations,
      binary: options.binary,
      args: options.args,
      warmup: options.warmup,
      condition: options.condition,
      label: options.label,
    })
    const abort = new AbortController()
    const current: CurrentRun = {
      id,
      abort,
      progress: { done: 0, total: options.iterations },
      listeners: new Set(),
      finished: Promise.resolve(),
    }
    this.#current = current
    current.finished = this.#run(current, options)
    return id
  }

  async #run(current: CurrentRun, options: MicroOptions): Promise<void> {
    const log = this.opts.log.child({ run: current.id })
    const emit = (e: RunEvent) => {
      for (const l of current.listeners) l(e)
    }
    let status: 'done' | 'failed' | 'aborted' = 'done'
    // with --stats runs, statistics are on for the run only
    const stats = this.#stats ? null : StatsSession.open()
    try {
      log.info('run started', { iterations: options.iterations, binary: options.binary })
      const { report, samples } = await runMicro(options, {
        probe: this.probe,
        statsMode: (this.#stats ?? stats)!.mode,
        runId: current.id,
        signal: current.abort.signal,
        deliveryExecs: this.opts.deliveryExecs,
        onPhase: (_p, detail) => log.info(detail),
        onProgress: (done, total) => {
          current.progress = { done, total }
          emit({ type: 'progress', done, total })
        },
      })
      this.store.finishRun(current.id, report, samples)
      log.info('run done', { wallNs: report.run.wallNs })
    } catch (err) {
      status = err instanceof AbortedError || current.abort.signal.aborted ? 'aborted' : 'failed'
      const message = status === 'aborted' ? 'agent stopped during the run' : (err as Error).message
      this.store.failRun(current.id, status, message)
      log[status === 'aborted' ? 'warn' : 'error'](`run ${status}`, { error: message })
    } finally {
      stats?.close()
      this.#current = null
      emit({ type: 'end', status })
    }
  }

  /** Subscribes to a running run's events; returns null when that run is not going. */
  subscribe(id: number, listener: (e: RunEvent) => void): (() => void) | null {
    const current = this.#current
    if (!current || current.id !== id) return null
    current.listeners.add(listener)
    return () => current.listeners.delete(listener)
  }

  /** Stops a run that is going (marked aborted), detaches everything, closes the store. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const current = this.#current
    if (current) {
      current.abort.abort()
      await current.finished
    }
    await this.#kernelProbe
    this.#pods?.close()
    this.probe.close()
    this.#stats?.close()
    this.store.close()
  }

  info() {
    return {
      node: this.nodeName,
      version: pkg.version,
      startedAt: this.startedAt,
      pid: process.pid,
      kernel: {
        release: release(),
        arch: arch(),
        libbpf: libbpfVersion(),
        btf: existsSync(this.opts.kernelBtf ?? KERNEL_BTF),
        statsSysctl: readStatsSysctl(),
      },
      /** empty until the background probe has run (featuresProbed) */
      features: this.#kernel?.features ?? [],
      featuresProbed: this.#kernel !== null,
      statsMode: this.statsMode,
      statsPolicy: this.opts.stats,
      probe: { loaded: true, attached: this.probe.attached },
      currentRun: this.currentRun,
      kubernetes: this.podStatus(),
    }
  }
}
