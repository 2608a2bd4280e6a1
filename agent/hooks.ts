/**
 * Per-program cost over a window: deltas of run_time_ns and run_cnt between two snapshots taken
 * while statistics stay on. Programs are keyed by id and load time, since ids are reused.
 */
import { cpus } from 'node:os'

import { programCounters, type ProgramCounters } from '../libbpf-bindings/enumerate.ts'
import type { StatsMode } from '../libbpf-bindings/stats.ts'
import { takeInventory, type Inventory, type ProgramEntry } from './inventory.ts'
import type { Tool } from './tools/types.ts'

/** A program's identity and its raw counter deltas over a window, as every report shows them. */
export interface ProgramDelta {
  progId: number
  name: string
  fullName: string
  type: string
  hook: string
  /** kubearmor, tetragon, falco, tracee or other (agent/tools) */
  tool: Tool
  toolDetail?: string
  owners: Array<{ pid: number; comm: string; exe: string }>
  runs: number
  runTimeNs: number
  /** Δrun_time_ns / Δrun_cnt over the window; null when the program did not run */
  nsPerRun: number | null
}

export interface HookRow extends ProgramDelta {
  runsPerSecond: number
  /** share of one CPU's time spent in the program over the window */
  cpuShare: number
  /** share of all the node's CPUs */
  nodeShare: number
  recursionMisses: number
}

export interface HooksWindow {
  windowNs: number
  statsMode: StatsMode
  cpus: number
  hooks: HookRow[]
}

export type Snapshot = Map<string, ProgramCounters>

const key = (id: number, loadTimeNs: bigint) => `${id}:${loadTimeNs}`

export function programDelta(p: ProgramEntry, runs: number, runTimeNs: number): ProgramDelta {
  return {
    progId: p.progId,
    name: p.name,
    fullName: p.fullName,
    type: p.type,
    hook: p.hook,
    tool: p.tool,
    ...(p.toolDetail !== undefined ? { toolDetail: p.toolDetail } : {}),
    owners: p.owners.map((o) => ({ pid: o.pid, comm: o.comm, exe: o.exe })),
    runs,
    runTimeNs,
    nsPerRun: runs > 0 ? runTimeNs / runs : null,
  }
}

export function snapshot(): { at: bigint; counters: Snapshot } {
  const at = process.hrtime.bigint()
  const counters = new Map(programCounters().map((c) => [key(c.id, c.loadTimeNs), c]))
  return { at, counters }
}

/** Rows for every program alive at the end of the window, most run time first. */
export function diffWindow(
  start: { at: bigint; counters: Snapshot },
  end: { at: bigint; counters: Snapshot },
  inventory: Inventory,
  statsMode: StatsMode
): HooksWindow {
  const windowNs = Number(end.at - start.at)
  const ncpu = cpus().length || 1
  const rows: HookRow[] = []

  for (const p of inventory.programs) {
    const k = key(p.progId, p.loadTimeNs)
    const b = start.counters.get(k)
    const e = end.counters.get(k)
    if (!e) continue
    // a program loaded inside the window counts from zero
    const runs = Number(e.runCnt - (b?.runCnt ?? 0n))
    const runTimeNs = Number(e.runTimeNs - (b?.runTimeNs ?? 0n))
    const misses = Number(e.recursionMisses - (b?.recursionMisses ?? 0n))
    rows.push(row(p, runs, runTimeNs, windowNs, ncpu, misses))
  }

  rows.sort((a, b) => b.runTimeNs - a.runTimeNs || a.progId - b.progId)
  return { windowNs, statsMode, cpus: ncpu, hooks: rows }
}

function row(
  p: ProgramEntry,
  runs: number,
  runTimeNs: number,
  windowNs: number,
  ncpu: number,
  misses: number
): HookRow {
  const cpuShare = windowNs > 0 ? runTimeNs / windowNs : 0
  return {
    ...programDelta(p, runs, runTimeNs),
    runsPerSecond: windowNs > 0 ? runs / (windowNs / 1e9) : 0,
    cpuShare,
    nodeShare: cpuShare / ncpu,
    recursionMisses: Math.max(0, misses),
  }
}

/**
 * One window: a counter snapshot, the wait, another, then names, owners and hooks. `inventory`
 * lets the agent pass its cached one: the counters are what must be fresh.
 */
export async function measureWindow(
  windowMs: number,
  statsMode: StatsMode,
  signal?: AbortSignal,
  inventory: () => Inventory = takeInventory
): Promise<HooksWindow> {
  const start = snapshot()
  await sleep(windowMs, signal)
  const end = snapshot()
  return diffWindow(start, end, inventory(), statsMode)
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done() {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

const pad = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n))
const lpad = (s: string, n: number) => s.padStart(n)

function fmtNs(ns: number | null): string {
  if (ns === null) return '-'
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)}ms`
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)}µs`
  return `${ns.toFixed(0)}ns`
}

/** The live view's table, sized to the terminal width. */
export function renderTable(
  w: HooksWindow,
  width = process.stdout.isTTY ? process.stdout.columns : 0
): string {
  const head = `${lpad('ID', 6)} ${pad('NAME', 40)} ${pad('TYPE', 14)} ${lpad('RUNS/S', 9)} ${lpad('NS/RUN', 9)} ${lpad('CPU%', 7)} ${lpad('NODE%', 7)}  ${pad('TOOL', 10)} ${pad('OWNER', 22)} HOOK`
  const lines = [
    `hookmeter hooks: ${w.hooks.length} programs, window ${(w.windowNs / 1e9).toFixed(2)}s, statistics ${w.statsMode}, ${w.cpus} CPUs (CPU% of one CPU, NODE% of all)`,
    '',
    head,
  ]
  for (const h of w.hooks) {
    const owner = h.owners.length
      ? h.owners.map((o) => `${o.comm}[${o.pid}]`).join(',')
      : '(no owner)'
    lines.push(
      `${lpad(String(h.progId), 6)} ${pad(h.fullName, 40)} ${pad(h.type, 14)} ${lpad(h.runsPerSecond.toFixed(0), 9)} ${lpad(fmtNs(h.nsPerRun), 9)} ${lpad((h.cpuShare * 100).toFixed(3), 7)} ${lpad((h.nodeShare * 100).toFixed(3), 7)}  ${pad(h.tool, 10)} ${pad(owner, 22)} ${h.hook}`
    )
  }
  // cut to the terminal's width; piped output keeps whole lines
  return lines.map((l) => (width && l.length > width ? l.slice(0, width) : l)).join('\n')
}
