/** The micro benchmark's report on a terminal. */
import type { MicroHook, MicroReport, Quantiles } from './report.ts'

export function fmtNs(ns: number | null): string {
  if (ns === null || !Number.isFinite(ns)) return '-'
  const a = Math.abs(ns)
  if (a >= 1e9) return `${(ns / 1e9).toFixed(2)} s`
  if (a >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`
  if (a >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`
  return `${ns.toFixed(0)} ns`
}

const q = (x: Quantiles) =>
  `p50 ${fmtNs(x.p50)}  p95 ${fmtNs(x.p95)}  p99 ${fmtNs(x.p99)}  mean ${fmtNs(x.mean)}`
const pad = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n))
const lpad = (s: string, n: number) => s.padStart(n)

function hookLine(h: MicroHook): string {
  return `    ${lpad(String(h.progId), 6)} ${pad(h.fullName, 30)} ${pad(h.type, 11)} ${lpad(h.runsPerExec.toFixed(2), 9)} ${lpad(fmtNs(h.nsPerRun), 10)} ${lpad(fmtNs(h.nsPerExec), 10)} ${lpad(`${(h.shareOfExec * 100).toFixed(2)}%`, 7)}  ${h.hook}`
}

export function formatMicro(r: MicroReport): string {
  const run = r.run
  const cond = run.condition ?? 'unlabelled'
  const lines = [
    `run ${run.id}: ${run.iterations} execs of ${[run.binary, ...run.args].join(' ')}  condition ${cond}${run.label ? `  label ${run.label}` : ''}`,
    `  node ${run.node}, kernel ${run.kernel}, statistics ${run.statsMode}, hookmeter ${run.version}`,
    '',
    `loop     total ${fmtNs(run.wallNs)}  (${fmtNs(run.wallNs / run.iterations)} per exec)${r.failures ? `  ${r.failures} failed` : ''}`,
    `  per exec (user space)   ${q(r.latencyNs)}`,
    `  fork → execve           ${q(r.phasesNs.forkToExecve)}`,
    `  execve → exec           ${q(r.phasesNs.execveToExec)}`,
    `  exec → exit             ${q(r.phasesNs.execToExit)}`,
    `probe    seen ringbuf ${r.probe.seen.ringbuf}, perf ${r.probe.seen.perf}; lost ringbuf ${r.probe.lost.ringbuf}, perf ${r.probe.lost.perf} (batched wake-ups)`,
    `  delivery (woken per record)  ringbuf p50 ${fmtNs(r.probe.deliveryNs.ringbuf.p50)} p99 ${fmtNs(r.probe.deliveryNs.ringbuf.p99)};  perf p50 ${fmtNs(r.probe.deliveryNs.perf.p50)} p99 ${fmtNs(r.probe.deliveryNs.perf.p99)}`,
    '',
    `eBPF programs over the loop, by owner (per exec: less an idle window of ${fmtNs(r.idle.windowNs)}):`,
    `    ${lpad('ID', 6)} ${pad('PROGRAM', 30)} ${pad('TYPE', 11)} ${lpad('RUNS/EXEC', 9)} ${lpad('NS/RUN', 10)} ${lpad('NS/EXEC', 10)} ${lpad('SHARE', 7)}  HOOK`,
  ]

  const groups = new Map<string, MicroHook[]>()
  for (const h of r.hooks) {
    const o = h.owners[0]
    const tool = h.tool === 'other' ? `other${h.toolDetail ? ` (${h.toolDetail})` : ''}` : h.tool
    const who = o ? `${o.comm}[${o.pid}] ${o.exe}` : 'no owner: pinned or held by the kernel'
    const g = h.own ? 'hookmeter (its own exec probe)' : `${tool}: ${who}`
    groups.set(g, [...(groups.get(g) ?? []), h])
  }
  const cpu = new Map(r.owners.map((o) => [o.pid, o]))
  const ordered = [...groups.entries()].sort(
    (a, b) => Number(a[0].startsWith('hookmeter')) - Number(b[0].startsWith('hookmeter'))
  )
  for (const [g, hs] of ordered) {
    const total = hs.reduce((s, h) => s + h.nsPerExec, 0)
    const owner = hs[0]!.owners[0]
    const user = owner && !hs[0]!.own ? cpu.get(owner.pid) : undefined
    lines.push(
      `  ${g}: in kernel ${fmtNs(total)}/exec${user ? `, user space ${fmtNs(user.cpuNsPerExec)}/exec` : ''}`
    )
    for (const h of hs) lines.push(hookLine(h))
  }
  if (!r.hooks.length) lines.push('  (no eBPF programs on this host)')

  const listed = new Set(r.hooks.flatMap((h) => h.owners.map((o) => o.pid)))
  const others = r.owners.filter((o) => !listed.has(o.pid))
  for (const o of others)
    lines.push(`  ${o.comm}[${o.pid}]: user space ${fmtNs(o.cpuNsPerExec)}/exec`)

  if (r.warnings.length) lines.push('', ...r.warnings.map((w) => `warning: ${w}`))
  return lines.join('\n')
}
