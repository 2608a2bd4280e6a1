/**
 * `hookmeter arch [TOOL] [--json]`: how each tool on this node is built, as observed now.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'

import type { MicroReport } from '../bench/report.ts'
import { parseOptions, printableText, requirePrivilege, RuntimeError, UsageError } from '../cli.ts'
import { DB_FILE, RunStore, StoreError } from '../store.ts'
import { DEFAULT_DATA_DIR } from './bench.ts'
import { takeInventory } from '../inventory.ts'
import {
  toolsReport,
  type ArchMap,
  type ArchOwner,
  type TailCallNode,
  type ToolArch,
} from '../tools/arch.ts'
import { TOOLS, type Tool } from '../tools/types.ts'

export async function cmdArch(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(
    args,
    { json: { type: 'boolean' }, 'data-dir': { type: 'string' } },
    { positionals: 1 }
  )
  const name = positionals[0]
  if (name !== undefined && !(TOOLS as readonly string[]).includes(name)) {
    throw new UsageError(`TOOL: expected one of ${TOOLS.join(', ')}, got '${name}'`)
  }
  requirePrivilege()

  const report = toolsReport(takeInventory(), { lastRun: lastRunIn(values['data-dir']) })
  const one = name === undefined ? null : report.tools.find((t) => t.tool === (name as Tool))!

  if (values.json) {
    process.stdout.write(`${JSON.stringify(one ?? report)}\n`)
    return 0
  }

  const shown = one ? [one] : report.tools.filter((t) => t.present)
  const parts = shown.map(renderTool)
  if (!one) {
    const absent = report.tools.filter((t) => !t.present && t.tool !== 'other').map((t) => t.tool)
    if (absent.length > 0) parts.push(`not observed on this node: ${absent.join(', ')}`)
  }
  for (const w of report.warnings) parts.push(`warning: ${w}`)
  process.stdout.write(`${printableText(parts.join('\n\n'))}\n`)
  return 0
}

/** The newest finished run of the store, for per-exec costs; none when there is no store yet. */
function lastRunIn(dir: string | undefined): MicroReport | null {
  const path = dir ?? process.env.HOOKMETER_DATA_DIR ?? DEFAULT_DATA_DIR
  if (!existsSync(join(path, DB_FILE))) return null
  try {
    using store = RunStore.open(path)
    const newest = store.listRuns({ limit: 50 }).find((r) => r.status === 'done')
    return newest ? (store.getRun(newest.id)?.report ?? null) : null
  } catch (err) {
    if (err instanceof StoreError) throw new RuntimeError(err.message)
    throw err
  }
}

const KiB = 1024

function bytes(n: number): string {
  if (n >= KiB * KiB && n % (KiB * KiB) === 0) return `${n / (KiB * KiB)} MiB`
  if (n >= KiB && n % KiB === 0) return `${n / KiB} KiB`
  return `${n} B`
}

function table(rows: string[][], indent: string): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map(
    (r) => indent + r.map((c, i) => (i < r.length - 1 ? c.padEnd(widths[i]!) : c)).join('  ')
  )
}

function ownerLine(o: ArchOwner): string {
  const where = [
    o.containerId ? `container ${o.containerId.slice(0, 12)}` : '',
    o.podUid ? `pod ${o.podUid}` : '',
  ].filter(Boolean)
  const perf = o.perfBuffers
    ? `  perf buffers: ${o.perfBuffers.mmaps} mmaps, ${o.perfBuffers.perCpuBytes.map(bytes).join(' / ')} per CPU`
    : ''
  return `    pid ${o.pid}  ${o.comm}  ${o.exe || '?'}${where.length ? `  ${where.join('  ')}` : ''}${perf}`
}

function mapDetail(m: ArchMap): string {
  if (m.type === 'ringbuf') return `${bytes(m.sizeBytes ?? m.maxEntries)} ring`
  if (m.type === 'perf_event_array') {
    const sizes = m.perCpuBytes ?? []
    if (sizes.length === 0) return `${m.maxEntries} slots; no perf buffer mmaps seen`
    const shared = m.perCpuBytesExact ? '' : " (shared with the owner's other perf event arrays)"
    return `${m.maxEntries} slots; per-CPU buffer ${sizes.map(bytes).join(' / ')}${shared}`
  }
  if (m.type === 'prog_array') {
    return m.unread
      ? `${m.maxEntries} slots, not read: ${m.unread}`
      : `${m.maxEntries} slots, ${m.slots?.length ?? 0} filled`
  }
  if (m.innerMaps) {
    const inner = m.innerMaps.map((i) => `${i.name} (${i.type}, id ${i.mapId})`).join(', ')
    return `${m.maxEntries} slots; holds ${inner || 'nothing'}`
  }
  return `${m.maxEntries} entries, key ${m.keySize} B, value ${m.valueSize} B`
}

function tailCallLines(nodes: TailCallNode[]): string[] {
  const byId = new Map(nodes.map((n) => [n.progId, n]))
  const lines: string[] = []
  const walk = (n: TailCallNode, depth: number, path: Set<number>) => {
    for (const t of n.targets) {
      const pad = '  '.repeat(depth)
      lines.push(`${pad}${t.map}[${t.index}] -> ${t.name} (id ${t.progId})`)
      const next = byId.get(t.progId)
      // a chain that jumps back into itself is printed once
      if (next && !path.has(next.progId)) walk(next, depth + 1, new Set([...path, next.progId]))
    }
  }
  const roots = nodes.filter((n) => n.entry)
  for (const n of roots.length > 0 ? roots : nodes) {
    lines.push(`    ${n.name} (id ${n.progId}, ${n.hook})`)
    const start = lines.length
    walk(n, 3, new Set([n.progId]))
    if (lines.length === start) lines.push('      (its prog arrays are empty)')
  }
  return lines
}

function renderTool(t: ToolArch): string {
  const title =
    t.tool === 'other'
      ? `other${t.toolDetails.length ? ` (${t.toolDetails.join(', ')})` : ''}`
      : `${t.tool} (${t.displayName})`
  if (!t.present) return `${title}: not observed on this node`

  const lines = [
    `${title}: ${t.programs.length} programs, ${Object.values(t.mapsByType).flat().length} maps`,
  ]

  lines.push('  owners:')
  if (t.owners.length === 0) lines.push('    none alive (attributed from names or pins)')
  lines.push(...t.owners.map(ownerLine))

  lines.push('  programs:')
  if (t.programs.length > 0) {
    const rows = [['id', 'name', 'type', 'hook', 'attributed by']]
    for (const p of t.programs) {
      const hook = p.attached
        ? p.hooks.join(', ')
        : p.tailCallTarget
          ? '(tail-call target)'
          : p.hook
      const by = `${p.by}${p.toolDetail && t.tool === 'other' ? `: ${p.toolDetail}` : ''}`
      rows.push([String(p.progId), p.name, p.type, hook, by])
    }
    lines.push(...table(rows, '    '))
  }

  lines.push('  maps:')
  for (const [type, maps] of Object.entries(t.mapsByType)) {
    lines.push(`    ${type}`)
    lines.push(
      ...table(
        maps.map((m) => [String(m.mapId), m.name, mapDetail(m)]),
        '      '
      )
    )
  }

  const d = t.delivery
  const names = d.maps.map((m) => `${m.name}${m.via ? ` in ${m.via.name}` : ''}`).join(', ')
  lines.push(
    `  delivery: ${d.mechanisms.length ? `${d.mechanisms.map((m) => (m === 'ringbuf' ? 'ring buffer' : 'perf buffer')).join(' + ')} (${names})` : 'no ring buffer or perf event array'}`
  )

  if (t.tailCalls.length > 0) {
    lines.push("  tail calls (the targets' run time is charged to the dispatcher):")
    lines.push(...tailCallLines(t.tailCalls))
  }

  if (t.scopes) {
    lines.push("  policy scopes (the study's Table 1):")
    const mark = (v: boolean | 'user-space') =>
      v === 'user-space' ? 'user space' : v ? 'shown' : 'not shown'
    lines.push(
      ...table(
        t.scopes.map((sc) => [sc.scope, mark(sc.shown), sc.why]),
        '    '
      )
    )
  }

  if (t.cost) {
    const v =
      t.cost.perExecNs === null
        ? 'none of its programs was in that run'
        : `${t.cost.perExecNs.toFixed(0)} ns per exec`
    lines.push(`  cost in run ${t.cost.runId}: ${v}`)
  }
  return lines.join('\n')
}
