/**
 * Prometheus text exposition (format 0.0.4). Every series has a unique label set: programs are
 * told apart by prog_id, owners are a separate info metric joined on prog_id.
 */
import { programCounters } from '../../libbpf-bindings/enumerate.ts'
import type { MicroReport } from '../bench/report.ts'
import type { Histogram } from '../stats.ts'
import type { Agent } from './agent.ts'

const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')

function labels(l: Record<string, string | number>): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escape(String(v))}"`)
  return parts.length ? `{${parts.join(',')}}` : ''
}

class Exposition {
  lines: string[] = []

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
  }

  sample(name: string, l: Record<string, string | number>, value: number): void {
    this.lines.push(`${name}${labels(l)} ${Number.isFinite(value) ? value : 'NaN'}`)
  }

  histogram(name: string, l: Record<string, string | number>, h: Histogram): void {
    h.le.forEach((le, i) => this.sample(`${name}_bucket`, { ...l, le: String(le) }, h.buckets[i]!))
    this.sample(`${name}_bucket`, { ...l, le: '+Inf' }, h.count)
    this.sample(`${name}_sum`, l, h.sum)
    this.sample(`${name}_count`, l, h.count)
  }
}

let lastRun: { id: number; report: MicroReport } | null = null

// the last hook each program was seen attached to: a program detached for a while (hookmeter's
// own probe between runs) keeps its series instead of moving to hook="unknown" and back
const knownHooks = new Map<string, string>()

function stableHook(progId: number, loadTimeNs: bigint, hook: string): string {
  const key = `${progId}:${loadTimeNs}`
  if (hook !== 'unknown') knownHooks.set(key, hook)
  return knownHooks.get(key) ?? hook
}

/** The newest finished run's report (cached by id). */
export function lastDoneRun(agent: Agent): MicroReport | null {
  const newest = agent.store.listRuns({ limit: 20 }).find((r) => r.status === 'done')
  if (!newest) return null
  if (lastRun?.id !== newest.id) {
    const run = agent.store.getRun(newest.id)
    if (!run?.report) return null
    lastRun = { id: newest.id, report: run.report }
  }
  return lastRun.report
}

export function renderMetrics(agent: Agent): string {
  const out = new Exposition()
  const inv = agent.inventory(1000)
  // counters are read fresh; names, hooks and owners may be a second old
  const counters = new Map(programCounters().map((c) => [c.id, c]))

  // one pass over the programs; each family's samples are then written together, as the
  // format requires
  const series = inv.programs.flatMap((p) => {
    const c = counters.get(p.progId)
    if (!c || c.loadTimeNs !== p.loadTimeNs) return []
    const hook = stableHook(p.progId, p.loadTimeNs, p.hook)
    return [{ labels: { prog_id: p.progId, name: p.name, type: p.type, hook, tool: p.tool }, c }]
  })
  out.family(
    'hookmeter_program_run_time_seconds_total',
    'counter',
    'Time spent in the eBPF program since it was loaded, counted while BPF statistics are on.'
  )
  for (const { labels, c } of series) {
    out.sample('hookmeter_program_run_time_seconds_total', labels, Number(c.runTimeNs) / 1e9)
  }
  out.family(
    'hookmeter_program_runs_total',
    'counter',
    'Runs of the eBPF program since it was loaded, counted while BPF statistics are on.'
  )
  for (const { labels, c } of series) {
    out.sample('hookmeter_program_runs_total', labels, Number(c.runCnt))
  }

  const alive = new Set(inv.programs.map((p) => `${p.progId}:${p.loadTimeNs}`))
  for (const key of knownHooks.keys()) if (!alive.has(key)) knownHooks.delete(key)

  out.family(
    'hookmeter_program_info',
    'gauge',
    'One series per eBPF program: its BTF full name and tag.'
  )
  for (const p of inv.programs)
    out.sample(
      'hookmeter_program_info',
      { prog_id: p.progId, full_name: p.fullName, tag: p.tag },
      1
    )
  out.family(
    'hookmeter_program_owner_info',
    'gauge',
    'One series per process holding an eBPF program; join on prog_id.'
  )
  for (const p of inv.programs) {
    for (const o of p.owners)
      out.sample(
        'hookmeter_program_owner_info',
        { prog_id: p.progId, pid: o.pid, comm: o.comm, exe: o.exe },
        1
      )
  }

  out.family(
    'hookmeter_stats_enabled',
    'gauge',
    'Whether hookmeter keeps BPF statistics on, and how (fd, sysctl, sysctl-preset, off).'
  )
  out.sample(
    'hookmeter_stats_enabled',
    { mode: agent.statsMode },
    agent.statsMode === 'off' ? 0 : 1
  )

  const run = lastDoneRun(agent)
  if (run?.histograms) {
    const h = run.histograms
    const id = run.run.id
    out.family(
      'hookmeter_last_run_exec_latency_seconds',
      'histogram',
      'User-space latency of each exec of the last finished run.'
    )
    out.histogram('hookmeter_last_run_exec_latency_seconds', { run_id: id }, h.latency)
    out.family(
      'hookmeter_last_run_exec_phase_seconds',
      'histogram',
      'Kernel phases of each exec of the last finished run, from the exec probe.'
    )
    out.histogram(
      'hookmeter_last_run_exec_phase_seconds',
      { run_id: id, phase: 'fork_to_execve' },
      h.phases.forkToExecve
    )
    out.histogram(
      'hookmeter_last_run_exec_phase_seconds',
      { run_id: id, phase: 'execve_to_exec' },
      h.phases.execveToExec
    )
    out.histogram(
      'hookmeter_last_run_exec_phase_seconds',
      { run_id: id, phase: 'exec_to_exit' },
      h.phases.execToExit
    )
    out.family(
      'hookmeter_last_run_delivery_latency_seconds',
      'histogram',
      "Kernel-to-reader delivery latency of the last run's calibration, reader woken per record."
    )
    out.histogram(
      'hookmeter_last_run_delivery_latency_seconds',
      { run_id: id, mechanism: 'ringbuf' },
      h.delivery.ringbuf
    )
    out.histogram(
      'hookmeter_last_run_delivery_latency_seconds',
      { run_id: id, mechanism: 'perf' },
      h.delivery.perf
    )
  }

  const cpu = process.cpuUsage()
  out.family(
    'hookmeter_agent_cpu_seconds_total',
    'counter',
    'CPU time used by the hookmeter agent process.'
  )
  out.sample('hookmeter_agent_cpu_seconds_total', { mode: 'user' }, cpu.user / 1e6)
  out.sample('hookmeter_agent_cpu_seconds_total', { mode: 'system' }, cpu.system / 1e6)
  out.family(
    'hookmeter_agent_resident_memory_bytes',
    'gauge',
    'Resident memory of the hookmeter agent process.'
  )
  out.sample('hookmeter_agent_resident_memory_bytes', {}, process.memoryUsage.rss())
  out.family('hookmeter_build_info', 'gauge', 'The hookmeter version and the node it runs on.')
  out.sample('hookmeter_build_info', { version: agent.info().version, node: agent.nodeName }, 1)
  return `${out.lines.join('\n')}\n`
}
