/**
 * Which tool each program and map on the node belongs to.
 *
 * A live owner decides: the process holding the object's fd is the tool whose comm or exe it
 * has, else `other` detailed by its comm. Only an object no live process holds (a pinned
 * program whose loader exited, a program kept by a pinned link) is attributed from names: its
 * own kernel name with the names of the maps it uses, then its bpffs pin paths. A map without
 * an owner goes with the programs that use it, else with its own name and pins. Container id
 * and pod UID come from the deciding owner's cgroup path.
 *
 * @module
 */
import type { Inventory, MapEntry, OwnerRef, ProgramEntry } from '../inventory.ts'
import { matchSignature } from './profiles.ts'
import type { Attribution } from './types.ts'

export interface OwnedAttribution extends Attribution {
  /** the owner that decided, when one did */
  ownerPid?: number
  containerId?: string
  podUid?: string
}

export interface Attributions {
  programs: Map<number, OwnedAttribution>
  maps: Map<number, OwnedAttribution>
}

const NONE: OwnedAttribution = { tool: 'other', by: 'none' }

function fromOwner(owner: OwnerRef, tool: Attribution['tool'], toolDetail?: string) {
  const a: OwnedAttribution = { tool, by: 'owner', ownerPid: owner.pid }
  if (toolDetail !== undefined) a.toolDetail = toolDetail
  if (owner.containerId !== undefined) a.containerId = owner.containerId
  if (owner.podUid !== undefined) a.podUid = owner.podUid
  return a
}

/**
 * The owner's verdict, or null without owners. Of several holders, one that is a known tool
 * wins (the best score), since a short-lived holder such as bpftool must not hide the agent;
 * else the lowest pid names the `other`.
 */
function byOwners(owners: OwnerRef[]): OwnedAttribution | null {
  let best: { owner: OwnerRef; tool: Attribution['tool']; score: number } | null = null
  for (const owner of owners) {
    const m = matchSignature({
      programNames: [],
      mapNames: [],
      pins: [],
      comm: owner.comm,
      exe: owner.exe,
    })
    if (m.tool !== 'other' && (best === null || m.score > best.score)) {
      best = { owner, tool: m.tool, score: m.score }
    }
  }
  if (best) return fromOwner(best.owner, best.tool)

  const first = owners[0]
  if (first === undefined) return null
  const detail = first.comm || first.exe.slice(first.exe.lastIndexOf('/') + 1) || `pid ${first.pid}`
  return fromOwner(first, 'other', detail)
}

/** Names first, then pins; `other` when neither names a known tool. */
function byNames(programNames: string[], mapNames: string[], pins: string[]): OwnedAttribution {
  const names = matchSignature({ programNames, mapNames, pins: [] })
  if (names.tool !== 'other') return { tool: names.tool, by: names.by }

  if (pins.length > 0) {
    const pinned = matchSignature({ programNames: [], mapNames: [], pins })
    if (pinned.tool !== 'other') return { tool: pinned.tool, by: pinned.by }
  }

  const detail = names.toolDetail ?? pins[0]
  return detail === undefined ? { ...NONE } : { tool: 'other', toolDetail: detail, by: 'none' }
}

function attributeProgram(p: ProgramEntry, mapNames: Map<number, string>): OwnedAttribution {
  const owned = byOwners(p.owners)
  if (owned) return owned

  const maps = p.mapIds.map((id) => mapNames.get(id)).filter((n) => n !== undefined)
  return byNames([p.name], maps, p.pins)
}

/**
 * Of the programs using a map, a known tool wins over `other`, and among known tools the one
 * most of them belong to; ties go to the lowest program id, so that the answer is stable.
 */
function byUsers(users: OwnedAttribution[]): OwnedAttribution | null {
  const known = users.filter((a) => a.tool !== 'other')
  const pool = known.length > 0 ? known : users
  if (pool.length === 0) return null

  const counts = new Map<string, number>()
  for (const a of pool) counts.set(a.tool, (counts.get(a.tool) ?? 0) + 1)
  const top = Math.max(...counts.values())
  const chosen = pool.find((a) => counts.get(a.tool) === top)!
  return { ...chosen }
}

function attributeMap(m: MapEntry, users: OwnedAttribution[]): OwnedAttribution {
  return byOwners(m.owners) ?? byUsers(users) ?? byNames([], [m.name], m.pins)
}

/** Every program and map of the inventory, by id. */
export function attribute(inv: Inventory): Attributions {
  const mapNames = new Map(inv.maps.map((m) => [m.id, m.name]))
  const programs = new Map<number, OwnedAttribution>()
  for (const p of inv.programs) programs.set(p.progId, attributeProgram(p, mapNames))

  // ascending program ids, for byUsers' tie-break
  const usersOf = new Map<number, OwnedAttribution[]>()
  for (const p of [...inv.programs].sort((a, b) => a.progId - b.progId)) {
    for (const id of p.mapIds)
      usersOf.set(id, [...(usersOf.get(id) ?? []), programs.get(p.progId)!])
  }

  const maps = new Map<number, OwnedAttribution>()
  for (const m of inv.maps) maps.set(m.id, attributeMap(m, usersOf.get(m.id) ?? []))

  return { programs, maps }
}
