/**
 * How each tool on the node is built, as observed now: its programs with type and hook, its
 * maps by type with the sizes the kernel shows, how its events reach user space, the tail-call
 * graph read from the contents of its prog arrays, and its per-exec cost from the last run.
 *
 * Sizes: a ring buffer's data area is its max_entries, in bytes. A perf event array has no size
 * of its own; its buffers are the reader's mmaps, one per CPU, each one metadata page plus the
 * data pages, which show in the owner's /proc/<pid>/maps as `anon_inode:[perf_event]`. The
 * mmaps do not say which perf event array they belong to, so for an owner holding several
 * arrays the sizes are shared among them (`perCpuBytesExact: false`).
 *
 * Tail calls jump into the target without the kernel's accounting wrapper: a target's run time
 * and run count fall to the program that jumped, so a dispatcher's cost is that of its chain.
 *
 * @module
 */
import { readFileSync } from 'node:fs'

import { LibbpfError } from '../../libbpf-bindings/errors.ts'
import { PAGE_SIZE } from '../../libbpf-bindings/libc.ts'
import { openMapById, u32Key, type MapFd } from '../../libbpf-bindings/map.ts'
import type { MicroReport } from '../bench/report.ts'
import { scopesShown, type ScopeShown } from '../policies/catalog.ts'
import type { Inventory, MapEntry, OwnerRef, ProgramEntry } from '../inventory.ts'
import { attribute, type OwnedAttribution } from './attribute.ts'
import { PROFILES } from './profiles.ts'
import { TOOLS, type Attribution, type Tool } from './types.ts'

/** Prog arrays and arrays of maps are read slot by slot; beyond this many slots, not at all. */
export const MAX_SLOTS_READ = 65_536

export interface ArchOwner {
  pid: number
  comm: string
  exe: string
  cgroup: string
  containerId?: string
  podUid?: string
  /** this owner's perf buffer mmaps; absent when it has none or its maps file is unreadable */
  perfBuffers?: PerfMmaps
}

export interface PerfMmaps {
  /** number of `anon_inode:[perf_event]` mappings: one per CPU per perf buffer */
  mmaps: number
  /** distinct data sizes per CPU: each mapping's size minus its metadata page */
  perCpuBytes: number[]
}

export interface ArchProgram {
  progId: number
  /** the kernel's name, cut to 15 characters */
  name: string
  /** the entry function's name from BTF, else `name` */
  fullName: string
  type: string
  /** the first of `hooks`, or "unknown" (a tail-call target, or a pinned program left unattached) */
  hook: string
  hooks: string[]
  attached: boolean
  by: Attribution['by']
  toolDetail?: string
  containerId?: string
  podUid?: string
  ownerPids: number[]
  pins: string[]
  mapIds: number[]
  /** the program sits in a slot of some prog array on the node */
  tailCallTarget: boolean
  /** from the last run, when given and the run measured this program (same id and name) */
  nsPerExec?: number
}

export interface ProgArraySlot {
  index: number
  progId: number
  name: string
}

export interface InnerMap {
  /** array of maps: the slot; hash of maps: the key, as hex */
  index?: number
  key?: string
  mapId: number
  name: string
  type: string
}

export interface ArchMap {
  mapId: number
  name: string
  type: string
  keySize: number
  valueSize: number
  maxEntries: number
  flags: number
  by: Attribution['by']
  toolDetail?: string
  ownerPids: number[]
  pins: string[]
  /** programs on the node whose map ids include this one */
  usedBy: number[]
  /** ring buffer: its data area in bytes */
  sizeBytes?: number
  /** perf event array: per-CPU buffer sizes from its owners' mmaps */
  perCpuBytes?: number[]
  /** false when an owner holds several perf event arrays, whose mmaps cannot be told apart */
  perCpuBytesExact?: boolean
  /** prog array: the filled slots; absent when it was not read (see `unread`) */
  slots?: ProgArraySlot[]
  /** why the contents were not read */
  unread?: string
  /** array or hash of maps: the inner maps */
  innerMaps?: InnerMap[]
}

export type Mechanism = 'ringbuf' | 'perf'

export interface DeliveryMap {
  mechanism: Mechanism
  mapId: number
  name: string
  sizeBytes?: number
  perCpuBytes?: number[]
  perCpuBytesExact?: boolean
  /** an inner ring buffer reached through this map of maps */
  via?: { mapId: number; name: string }
}

export interface TailCallTarget {
  mapId: number
  /** the prog array's kernel name */
  map: string
  index: number
  progId: number
  name: string
}

export interface TailCallNode {
  progId: number
  name: string
  hook: string
  /** not itself in any prog array's slot: the kernel runs it from its hook */
  entry: boolean
  /** the filled slots of every prog array this program uses */
  targets: TailCallTarget[]
  /** every program reachable by tail calls from this one, transitively, by id */
  reaches: number[]
}

export interface ToolCost {
  runId: number
  startedAt: string
  /** sum of nsPerExec of the tool's programs in the run; null when none of them was in it */
  perExecNs: number | null
  programs: Array<{ progId: number; name: string; nsPerExec: number }>
}

export interface ToolArch {
  tool: Tool
  displayName: string
  /** some program or map on the node is attributed to this tool */
  present: boolean
  /** for `other`: the distinct details (owner comms, matched names) */
  toolDetails: string[]
  owners: ArchOwner[]
  programs: ArchProgram[]
  /** by kernel map type name: ringbuf, perf_event_array, prog_array, hash, array_of_maps … */
  mapsByType: Record<string, ArchMap[]>
  delivery: { mechanisms: Mechanism[]; maps: DeliveryMap[] }
  /** one node per program of the tool that uses a prog array; the targets' cost is its own */
  tailCalls: TailCallNode[]
  cost: ToolCost | null
  /**
   * The study's Table 1 scopes of the tool, each marked shown when a program of the tool is
   * attached to a hook of that kind (DESIGN.md's rule); null for `other`
   */
  scopes: ScopeShown[] | null
  /** what the tool's profile documents, to set beside what is observed */
  documented: {
    delivery: string[]
    policyKinds: Array<{ apiVersion: string; kind: string; scope: string }>
    applyMechanism: string
  } | null
}

export interface ToolsReport {
  takenAt: string
  tools: ToolArch[]
  lastRun: { id: number; startedAt: string; condition: string | null; label: string | null } | null
  warnings: string[]
}

export interface ToolsReportOptions {
  lastRun?: MicroReport | null
  /** where owners' maps files are read; default /proc */
  procRoot?: string
}

/** Sizes of the perf buffer mmaps in a /proc/<pid>/maps text. */
export function perfMmapSizes(mapsText: string, pageSize = PAGE_SIZE): PerfMmaps {
  const sizes = new Set<number>()
  let mmaps = 0
  for (const line of mapsText.split('\n')) {
    if (!line.endsWith('anon_inode:[perf_event]')) continue
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line)
    if (!m) continue
    const bytes = Number(BigInt(`0x${m[2]}`) - BigInt(`0x${m[1]}`))
    // a perf event mmap'd without a data area is a counter page, not a buffer
    if (bytes <= pageSize) continue
    mmaps++
    sizes.add(bytes - pageSize)
  }
  return { mmaps, perCpuBytes: [...sizes].sort((a, b) => a - b) }
}

function readPerfMmaps(pid: number, procRoot: string): PerfMmaps | null {
  try {
    return perfMmapSizes(readFileSync(`${procRoot}/${pid}/maps`, 'utf8'))
  } catch {
    // the owner exited, or its maps are not ours to read: the size is then unknown
    return null
  }
}

function withMap<T>(id: number, warnings: string[], read: (fd: MapFd) => T): T | null {
  let fd: MapFd
  try {
    fd = openMapById(id)
  } catch (err) {
    // a map freed since the inventory was taken has nothing left to show
    if (!(err instanceof LibbpfError && err.errno === 2)) {
      warnings.push(`map ${id}: cannot open: ${(err as Error).message}`)
    }
    return null
  }
  try {
    return read(fd)
  } catch (err) {
    warnings.push(`map ${id}: cannot read: ${(err as Error).message}`)
    return null
  } finally {
    fd.close()
  }
}

function u32(value: Uint8Array): number {
  return new DataView(value.buffer, value.byteOffset, value.byteLength).getUint32(0, true)
}

/** Slot index and the id the kernel returns for it (a program id, or an inner map id). */
function readSlots(m: MapEntry, warnings: string[]): Array<{ index: number; id: number }> {
  if (m.maxEntries > MAX_SLOTS_READ) {
    warnings.push(`map ${m.id} ${m.name}: ${m.maxEntries} slots, over ${MAX_SLOTS_READ}: not read`)
    return []
  }
  return (
    withMap(m.id, warnings, (fd) => {
      const out: Array<{ index: number; id: number }> = []
      for (let index = 0; index < m.maxEntries; index++) {
        const v = fd.lookup(u32Key(index))
        if (v) out.push({ index, id: u32(v) })
      }
      return out
    }) ?? []
  )
}

function readHashOfMaps(m: MapEntry, warnings: string[]): Array<{ key: string; id: number }> {
  return (
    withMap(m.id, warnings, (fd) =>
      fd.entries().map(([k, v]) => ({ key: Buffer.from(k).toString('hex'), id: u32(v) }))
    ) ?? []
  )
}

function ownerView(o: OwnerRef, perf: PerfMmaps | null): ArchOwner {
  const v: ArchOwner = { pid: o.pid, comm: o.comm, exe: o.exe, cgroup: o.cgroup }
  if (o.containerId !== undefined) v.containerId = o.containerId
  if (o.podUid !== undefined) v.podUid = o.podUid
  if (perf && perf.mmaps > 0) v.perfBuffers = perf
  return v
}

function attributionFields(a: OwnedAttribution) {
  return { by: a.by, ...(a.toolDetail !== undefined ? { toolDetail: a.toolDetail } : {}) }
}

/** A program's container and pod, from the owner that decided its tool. */
function placementFields(a: OwnedAttribution) {
  return {
    ...(a.containerId !== undefined ? { containerId: a.containerId } : {}),
    ...(a.podUid !== undefined ? { podUid: a.podUid } : {}),
  }
}

/** Every tool, in the order of TOOLS, as observed in `inv`; absent tools with present: false. */
export function toolsReport(inv: Inventory, opts: ToolsReportOptions = {}): ToolsReport {
  const procRoot = opts.procRoot ?? '/proc'
  const warnings = [...inv.warnings]
  const attr = attribute(inv)
  const progById = new Map(inv.programs.map((p) => [p.progId, p]))
  const mapById = new Map(inv.maps.map((m) => [m.id, m]))

  // the contents of every prog array and map of maps, read once
  const slots = new Map<number, ProgArraySlot[]>()
  const inner = new Map<number, InnerMap[]>()
  const unheld = new Set<number>()
  for (const m of inv.maps) {
    if (m.typeName === 'prog_array' && m.owners.length + m.pins.length === 0) {
      // the kernel empties a prog array once no fd or pin holds it; opening such a map by id
      // while it is being freed leaks it on kernel 6.18 (the deferred clear is scheduled twice
      // and one map reference is never dropped), so it is left unopened
      unheld.add(m.id)
    } else if (m.typeName === 'prog_array') {
      slots.set(
        m.id,
        readSlots(m, warnings).map(({ index, id }) => ({
          index,
          progId: id,
          name: progById.get(id)?.name ?? '?',
        }))
      )
    } else if (m.typeName === 'array_of_maps' || m.typeName === 'hash_of_maps') {
      const entries =
        m.typeName === 'array_of_maps' ? readSlots(m, warnings) : readHashOfMaps(m, warnings)
      inner.set(
        m.id,
        entries.map((e) => ({
          ...('index' in e ? { index: e.index } : { key: e.key }),
          mapId: e.id,
          name: mapById.get(e.id)?.name ?? '?',
          type: mapById.get(e.id)?.typeName ?? '?',
        }))
      )
    }
  }

  // an inner map nobody holds or names (created from user space and put in) is its outer's
  for (const [outerId, list] of inner) {
    const outer = attr.maps.get(outerId)
    for (const im of list) {
      const a = attr.maps.get(im.mapId)
      if (outer && a && a.by === 'none' && outer.by !== 'none')
        attr.maps.set(im.mapId, { ...outer })
    }
  }

  const targetIds = new Set([...slots.values()].flat().map((s) => s.progId))
  const usedBy = new Map<number, number[]>()
  for (const p of inv.programs) {
    for (const id of p.mapIds) usedBy.set(id, [...(usedBy.get(id) ?? []), p.progId])
  }

  const perfCache = new Map<number, PerfMmaps | null>()
  const perfOf = (pid: number) => {
    if (!perfCache.has(pid)) perfCache.set(pid, readPerfMmaps(pid, procRoot))
    return perfCache.get(pid)!
  }
  const perfArraysHeld = new Map<number, number>()
  for (const m of inv.maps) {
    if (m.typeName !== 'perf_event_array') continue
    for (const o of m.owners) perfArraysHeld.set(o.pid, (perfArraysHeld.get(o.pid) ?? 0) + 1)
  }

  const ctx: BuildContext = {
    inv,
    attr,
    slots,
    unheld,
    inner,
    targetIds,
    usedBy,
    perfOf,
    perfArraysHeld,
    progById,
    lastRun: opts.lastRun ?? null,
  }
  const run = opts.lastRun?.run
  return {
    takenAt: new Date().toISOString(),
    tools: TOOLS.map((tool) => buildTool(tool, ctx)),
    lastRun: run
      ? { id: run.id, startedAt: run.startedAt, condition: run.condition, label: run.label }
      : null,
    warnings,
  }
}

/** One tool's report; null when `name` is not one of TOOLS. */
export function toolReport(
  name: string,
  inv: Inventory,
  opts: ToolsReportOptions = {}
): ToolArch | null {
  if (!(TOOLS as readonly string[]).includes(name)) return null
  return toolsReport(inv, opts).tools.find((t) => t.tool === name) ?? null
}

interface BuildContext {
  inv: Inventory
  attr: ReturnType<typeof attribute>
  slots: Map<number, ProgArraySlot[]>
  unheld: Set<number>
  inner: Map<number, InnerMap[]>
  targetIds: Set<number>
  usedBy: Map<number, number[]>
  perfOf: (pid: number) => PerfMmaps | null
  perfArraysHeld: Map<number, number>
  progById: Map<number, ProgramEntry>
  lastRun: MicroReport | null
}

function buildTool(tool: Tool, ctx: BuildContext): ToolArch {
  const programs = ctx.inv.programs.filter((p) => ctx.attr.programs.get(p.progId)?.tool === tool)
  const maps = ctx.inv.maps.filter((m) => ctx.attr.maps.get(m.id)?.tool === tool)
  const cost = toolCost(programs, ctx.lastRun)
  const measured = new Map(cost?.programs.map((c) => [c.progId, c.nsPerExec]))

  const programViews = programs
    .map((p): ArchProgram => {
      const v: ArchProgram = {
        progId: p.progId,
        name: p.name,
        fullName: p.fullName,
        type: p.type,
        hook: p.hook,
        hooks: p.hooks,
        attached: p.hooks.length > 0 && p.hook !== 'unknown',
        ...attributionFields(ctx.attr.programs.get(p.progId)!),
        ...placementFields(ctx.attr.programs.get(p.progId)!),
        ownerPids: p.owners.map((o) => o.pid),
        pins: p.pins,
        mapIds: p.mapIds,
        tailCallTarget: ctx.targetIds.has(p.progId),
      }
      const ns = measured.get(p.progId)
      if (ns !== undefined) v.nsPerExec = ns
      return v
    })
    .sort((a, b) => a.progId - b.progId)

  const mapViews = maps.map((m) => mapView(m, ctx)).sort((a, b) => a.mapId - b.mapId)
  const mapsByType: Record<string, ArchMap[]> = {}
  for (const m of [...mapViews].sort((a, b) => a.type.localeCompare(b.type))) {
    ;(mapsByType[m.type] ??= []).push(m)
  }

  const owners = new Map<number, OwnerRef>()
  for (const o of [...programs.flatMap((p) => p.owners), ...maps.flatMap((m) => m.owners)]) {
    if (!owners.has(o.pid)) owners.set(o.pid, o)
  }

  const details = new Set<string>()
  if (tool === 'other') {
    for (const v of [...programViews, ...mapViews]) if (v.toolDetail) details.add(v.toolDetail)
  }

  const profile = tool === 'other' ? null : PROFILES[tool]
  return {
    tool,
    displayName: profile?.displayName ?? 'other',
    present: programs.length + maps.length > 0,
    toolDetails: [...details].sort(),
    owners: [...owners.values()]
      .sort((a, b) => a.pid - b.pid)
      .map((o) => ownerView(o, ctx.perfOf(o.pid))),
    programs: programViews,
    mapsByType,
    delivery: delivery(mapViews, ctx),
    tailCalls: tailCalls(programs, ctx),
    cost,
    scopes: tool === 'other' ? null : scopes(tool, programViews),
    documented: profile
      ? {
          delivery: profile.delivery,
          policyKinds: profile.policyKinds.map((k) => ({ ...k })),
          applyMechanism: profile.applyMechanism,
        }
      : null,
  }
}

/**
 * Hooks of the attached programs. A program type counts too for a program that is held but
 * whose hook could not be read; a tail-call target runs on its dispatcher's hook, and a pinned
 * program without a link runs nowhere.
 */
function scopes(tool: Exclude<Tool, 'other'>, programs: ArchProgram[]): ScopeShown[] {
  const hooks = programs.filter((p) => p.attached).flatMap((p) => p.hooks)
  const types = programs
    .filter((p) => p.attached || (!p.tailCallTarget && p.ownerPids.length > 0))
    .map((p) => p.type)
  return scopesShown(tool, hooks, [...new Set(types)])
}

function mapView(m: MapEntry, ctx: BuildContext): ArchMap {
  const v: ArchMap = {
    mapId: m.id,
    name: m.name,
    type: m.typeName,
    keySize: m.keySize,
    valueSize: m.valueSize,
    maxEntries: m.maxEntries,
    flags: m.flags,
    ...attributionFields(ctx.attr.maps.get(m.id)!),
    ownerPids: m.owners.map((o) => o.pid),
    pins: m.pins,
    usedBy: ctx.usedBy.get(m.id) ?? [],
  }

  if (m.typeName === 'ringbuf') v.sizeBytes = m.maxEntries
  if (m.typeName === 'perf_event_array') {
    const sizes = new Set<number>()
    let exact = true
    for (const o of m.owners) {
      for (const s of ctx.perfOf(o.pid)?.perCpuBytes ?? []) sizes.add(s)
      if ((ctx.perfArraysHeld.get(o.pid) ?? 0) > 1) exact = false
    }
    v.perCpuBytes = [...sizes].sort((a, b) => a - b)
    v.perCpuBytesExact = exact && sizes.size > 0
  }
  const slots = ctx.slots.get(m.id)
  if (slots) v.slots = slots
  if (ctx.unheld.has(m.id)) v.unread = 'held by no process or pin, so emptied by the kernel'
  const inner = ctx.inner.get(m.id)
  if (inner) v.innerMaps = inner
  return v
}

function delivery(maps: ArchMap[], ctx: BuildContext): ToolArch['delivery'] {
  const out: DeliveryMap[] = []
  const seen = new Set<number>()

  for (const m of maps) {
    if (m.type === 'ringbuf' && !seen.has(m.mapId)) {
      seen.add(m.mapId)
      out.push({ mechanism: 'ringbuf', mapId: m.mapId, name: m.name, sizeBytes: m.sizeBytes })
    } else if (m.type === 'perf_event_array') {
      out.push({
        mechanism: 'perf',
        mapId: m.mapId,
        name: m.name,
        perCpuBytes: m.perCpuBytes ?? [],
        perCpuBytesExact: m.perCpuBytesExact ?? false,
      })
    }
  }

  // ring buffers inside the tool's maps of maps count even when another tool's scan saw them
  for (const m of maps) {
    for (const im of m.innerMaps ?? []) {
      if (im.type !== 'ringbuf') continue
      const rb = ctx.inv.maps.find((x) => x.id === im.mapId)
      const entry = out.find((d) => d.mapId === im.mapId)
      if (entry) {
        entry.via = { mapId: m.mapId, name: m.name }
        continue
      }
      out.push({
        mechanism: 'ringbuf',
        mapId: im.mapId,
        name: im.name,
        ...(rb ? { sizeBytes: rb.maxEntries } : {}),
        via: { mapId: m.mapId, name: m.name },
      })
    }
  }

  const mechanisms = (['ringbuf', 'perf'] as const).filter((k) =>
    out.some((d) => d.mechanism === k)
  )
  return { mechanisms, maps: out }
}

function tailCalls(programs: ProgramEntry[], ctx: BuildContext): TailCallNode[] {
  const targetsOf = (p: ProgramEntry): TailCallTarget[] =>
    p.mapIds.flatMap((id) =>
      (ctx.slots.get(id) ?? []).map((s) => ({
        mapId: id,
        map: ctx.inv.maps.find((m) => m.id === id)?.name ?? '?',
        index: s.index,
        progId: s.progId,
        name: s.name,
      }))
    )

  const nodes: TailCallNode[] = []
  for (const p of programs) {
    if (!p.mapIds.some((id) => ctx.slots.has(id))) continue

    // breadth first, so that a program that tail-calls itself (a loop) ends
    const reached = new Set<number>()
    const queue = targetsOf(p).map((t) => t.progId)
    while (queue.length > 0) {
      const id = queue.shift()!
      if (reached.has(id)) continue
      reached.add(id)
      const next = ctx.progById.get(id)
      if (next) queue.push(...targetsOf(next).map((t) => t.progId))
    }
    reached.delete(p.progId)

    nodes.push({
      progId: p.progId,
      name: p.name,
      hook: p.hook,
      entry: !ctx.targetIds.has(p.progId),
      targets: targetsOf(p).sort((a, b) => a.mapId - b.mapId || a.index - b.index),
      reaches: [...reached].sort((a, b) => a - b),
    })
  }
  return nodes.sort((a, b) => a.progId - b.progId)
}

/** Matched by id and name, since ids are reused once a program is freed. */
function toolCost(programs: ProgramEntry[], lastRun: MicroReport | null): ToolCost | null {
  if (!lastRun) return null

  const mine = new Map(programs.map((p) => [p.progId, p.name]))
  const matched = lastRun.hooks
    .filter((h) => mine.get(h.progId) === h.name)
    .map((h) => ({ progId: h.progId, name: h.name, nsPerExec: h.nsPerExec }))
    .sort((a, b) => a.progId - b.progId)
  return {
    runId: lastRun.run.id,
    startedAt: lastRun.run.startedAt,
    perExecNs: matched.length > 0 ? matched.reduce((s, h) => s + h.nsPerExec, 0) : null,
    programs: matched,
  }
}
