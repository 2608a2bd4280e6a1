/**
 * The host's eBPF programs with who holds them and where they are attached: kernel enumeration
 * joined with fd holders from procfs, bpffs pins, link targets, and BPF_TASK_FD_QUERY for
 * programs attached through a perf event without a link.
 */
import {
  identifyPin,
  listLinks,
  listMaps,
  listPrograms,
  type LinkInfo,
  type ProgramInfo,
  taskFdQuery,
} from '../libbpf-bindings/enumerate.ts'
import type { MapInfo } from '../libbpf-bindings/layout.ts'
import { findBpffsMounts, type Owner, scanBpfHolders, walkPins } from './procfs.ts'
import { attribute } from './tools/attribute.ts'
import type { Attribution, Tool } from './tools/types.ts'

export interface OwnerRef {
  pid: number
  comm: string
  exe: string
  cgroup: string
  containerId?: string
  podUid?: string
  /** from the Kubernetes API, when running in a cluster */
  pod?: string
  namespace?: string
  daemonSet?: string
}

export interface ProgramEntry {
  progId: number
  name: string
  fullName: string
  type: string
  tag: string
  loadedAt: string
  loadTimeNs: bigint
  uid: number
  mapIds: number[]
  /** the first of `hooks`, or "unknown" */
  hook: string
  hooks: string[]
  linkIds: number[]
  owners: OwnerRef[]
  pins: string[]
  runTimeNs: bigint
  runCnt: bigint
  recursionMisses: bigint
  verifiedInsns: number
  jitedSize: number
  /** the tool it belongs to (agent/tools), and for `other` the owner's comm or the signature */
  tool: Tool
  toolDetail?: string
}

export interface MapEntry extends MapInfo {
  owners: OwnerRef[]
  pins: string[]
  tool: Tool
  toolDetail?: string
}

export interface Inventory {
  takenAtNs: bigint
  programs: ProgramEntry[]
  maps: MapEntry[]
  links: LinkInfo[]
  /** sources that could not be read this time; the rest is still reported */
  warnings: string[]
}

function ownerRef(o: Owner): OwnerRef {
  return {
    pid: o.pid,
    comm: o.comm,
    exe: o.exe,
    cgroup: o.cgroup.path,
    ...(o.cgroup.containerId ? { containerId: o.cgroup.containerId } : {}),
    ...(o.cgroup.podUid ? { podUid: o.cgroup.podUid } : {}),
  }
}

function mergeOwners(lists: Array<Owner[] | undefined>): OwnerRef[] {
  const byPid = new Map<number, OwnerRef>()
  for (const list of lists)
    for (const o of list ?? []) if (!byPid.has(o.pid)) byPid.set(o.pid, ownerRef(o))
  return [...byPid.values()].sort((a, b) => a.pid - b.pid)
}

export function takeInventory(opts: { programs?: ProgramInfo[] } = {}): Inventory {
  const warnings: string[] = []
  const programs = opts.programs ?? listPrograms()
  const links = listLinks(new Map(programs.map((p) => [p.id, p.type])))
  const maps = listMaps()

  let holders: ReturnType<typeof scanBpfHolders> | null = null
  try {
    holders = scanBpfHolders()
  } catch (err) {
    warnings.push(`owners unavailable: ${(err as Error).message}`)
  }

  // pins: a program kept alive by bpffs alone has no holder, only a path
  const progPins = new Map<number, string[]>()
  const mapPins = new Map<number, string[]>()
  const linkPins = new Map<number, string[]>()
  try {
    const walk = walkPins(findBpffsMounts(), identifyPin)
    for (const pin of walk.pins) {
      const target = pin.kind === 'prog' ? progPins : pin.kind === 'map' ? mapPins : linkPins
      target.set(pin.id, [...(target.get(pin.id) ?? []), pin.path])
    }
  } catch (err) {
    warnings.push(`bpffs pins unavailable: ${(err as Error).message}`)
  }

  const linksByProg = new Map<number, LinkInfo[]>()
  for (const l of links) linksByProg.set(l.progId, [...(linksByProg.get(l.progId) ?? []), l])

  // programs attached through a perf event fd without a link (bpftrace, older libbpf)
  const perfHooks = new Map<number, string[]>()
  for (const { pid, fd } of holders?.perfEventFds ?? []) {
    const q = taskFdQuery(pid, fd)
    if (!q || !q.progId) continue
    const list = perfHooks.get(q.progId) ?? []
    if (!list.includes(q.hook)) list.push(q.hook)
    perfHooks.set(q.progId, list)
  }

  const entries = programs.map((p): ProgramEntry => {
    const progLinks = linksByProg.get(p.id) ?? []
    const hooks = [
      ...new Set([...progLinks.map((l) => l.hook), ...(perfHooks.get(p.id) ?? [])]),
    ].filter((h) => h !== 'perf_event/?' || progLinks.length === 1)
    const usable = hooks.filter((h) => !h.endsWith('/?'))
    const owners = mergeOwners([
      holders?.progs.get(p.id),
      ...progLinks.map((l) => holders?.links.get(l.id)?.owners),
    ])
    const pins = [
      ...(progPins.get(p.id) ?? []),
      ...progLinks.flatMap((l) => linkPins.get(l.id) ?? []),
    ]
    return {
      progId: p.id,
      name: p.name,
      fullName: p.fullName,
      type: p.typeName,
      tag: p.tag,
      loadedAt: p.loadedAt,
      loadTimeNs: p.loadTimeNs,
      uid: p.uid,
      mapIds: p.mapIds,
      hook: usable[0] ?? hooks[0] ?? 'unknown',
      hooks: usable.length ? usable : hooks,
      linkIds: progLinks.map((l) => l.id),
      owners,
      pins,
      runTimeNs: p.runTimeNs,
      runCnt: p.runCnt,
      recursionMisses: p.recursionMisses,
      verifiedInsns: p.verifiedInsns,
      jitedSize: p.jitedSize,
      tool: 'other',
    }
  })

  const mapEntries = maps.map((m): MapEntry => ({
    ...m,
    owners: mergeOwners([holders?.maps.get(m.id)]),
    pins: mapPins.get(m.id) ?? [],
    tool: 'other',
  }))

  const inv: Inventory = {
    takenAtNs: process.hrtime.bigint(),
    programs: entries,
    maps: mapEntries,
    links,
    warnings,
  }

  // every program and map gets its tool: owner first, then names and pins (agent/tools)
  const found = attribute(inv)
  for (const p of entries) setTool(p, found.programs.get(p.progId))
  for (const m of mapEntries) setTool(m, found.maps.get(m.id))
  return inv
}

function setTool(e: { tool: Tool; toolDetail?: string }, a: Attribution | undefined): void {
  if (!a) return
  e.tool = a.tool
  if (a.toolDetail !== undefined) e.toolDetail = a.toolDetail
}
