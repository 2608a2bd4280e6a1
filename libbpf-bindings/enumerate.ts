/**
 * Every program, map and link on the host, decoded from the kernel's info structs. Objects come
 * and go while we walk them: one that vanishes between its id and its fd is skipped.
 */
import { readdirSync, readlinkSync } from 'node:fs'

import { ptr, read } from 'bun:ffi'

import { LibbpfError } from './errors.ts'
import { bpf, logMark, logSince } from './libbpf.ts'
import { CLOCK_BOOTTIME, CLOCK_REALTIME, clockNs, libc } from './libc.ts'
import {
  ATTACH_TYPES,
  cString,
  decodeMapInfo,
  LINK_INFO,
  LINK_INFO_SIZE,
  LINK_TYPES,
  MAP_INFO_SIZE,
  type MapInfo,
  PERF_EVENT_LINK_TYPES,
  PROG_INFO,
  PROG_INFO_SIZE,
  PROG_TYPES,
  TASK_FD_TYPES,
} from './layout.ts'
import { objInfo } from './map.ts'

export interface ProgramInfo {
  id: number
  type: number
  typeName: string
  /** the kernel's name, cut to 15 characters */
  name: string
  /** the full function name from the program's BTF, else `name` */
  fullName: string
  tag: string
  /** CLOCK_BOOTTIME ns at load; with `id`, the program's identity (ids are reused) */
  loadTimeNs: bigint
  loadedAt: string
  uid: number
  mapIds: number[]
  runTimeNs: bigint
  runCnt: bigint
  recursionMisses: bigint
  verifiedInsns: number
  jitedSize: number
  xlatedSize: number
  btfId: number
  attachBtfObjId: number
  attachBtfId: number
}

export interface LinkInfo {
  id: number
  type: number
  typeName: string
  progId: number
  /** where the program runs, in libbpf's section notation: `tp_btf/sched_process_exec` */
  hook: string
  attachType?: string
}

const fullNames = new Map<string, string>()
const FULL_NAME_CACHE = 8192

function nextIds(getNext: (start: number, next: never) => number, call: string): number[] {
  const ids: number[] = []
  const next = new Uint32Array(1)
  let start = 0
  for (;;) {
    const rc = getNext(start, ptr(next) as never)
    if (rc === -2) return ids
    if (rc < 0) throw new LibbpfError(call, -rc)
    start = next[0]!
    ids.push(start)
  }
}

export function programIds(): number[] {
  return nextIds(bpf.bpf_prog_get_next_id as never, 'bpf_prog_get_next_id')
}

export function mapIds(): number[] {
  return nextIds(bpf.bpf_map_get_next_id as never, 'bpf_map_get_next_id')
}

export function linkIds(): number[] {
  return nextIds(bpf.bpf_link_get_next_id as never, 'bpf_link_get_next_id')
}

function bootToWall(): bigint {
  return clockNs(CLOCK_REALTIME) - clockNs(CLOCK_BOOTTIME)
}

/** Opens a program by id; null if it is gone. The caller closes the fd. */
export function progFdById(id: number): number | null {
  const fd = bpf.bpf_prog_get_fd_by_id(id)
  // ENOENT: gone; EAGAIN: being torn down right now
  if (fd === -2 || fd === -11) return null
  if (fd < 0) throw new LibbpfError('bpf_prog_get_fd_by_id', -fd, [], `program id ${id}`)
  return fd
}

/** Decodes the info of a program fd, with its map ids and BTF full name. */
export function programInfoByFd(fd: number, wallOffset = bootToWall()): ProgramInfo {
  const buf = new Uint8Array(PROG_INFO_SIZE)
  objInfo(fd, buf, `program fd ${fd}`)
  let dv = new DataView(buf.buffer)
  const nrMaps = dv.getUint32(PROG_INFO.nrMapIds, true)
  const nrFunc = dv.getUint32(PROG_INFO.nrFuncInfo, true)
  const btfId = dv.getUint32(PROG_INFO.btfId, true)
  const id = dv.getUint32(PROG_INFO.id, true)
  const loadTimeNs = dv.getBigUint64(PROG_INFO.loadTime, true)
  const name = cString(buf, PROG_INFO.name, 16)

  // the map ids and the first func_info record (the entry function) need a second call
  const mapIds = new Uint32Array(Math.max(nrMaps, 1))
  const funcInfo = new Uint32Array(2)
  const cacheKey = `${id}:${loadTimeNs}`
  const wantName = btfId !== 0 && nrFunc > 0 && !fullNames.has(cacheKey)
  if (nrMaps > 0 || wantName) {
    const second = new Uint8Array(PROG_INFO_SIZE)
    const sdv = new DataView(second.buffer)
    if (nrMaps > 0) {
      sdv.setUint32(PROG_INFO.nrMapIds, nrMaps, true)
      sdv.setBigUint64(PROG_INFO.mapIds, BigInt(ptr(mapIds)), true)
    }
    if (wantName) {
      sdv.setUint32(PROG_INFO.nrFuncInfo, 1, true)
      sdv.setUint32(PROG_INFO.funcInfoRecSize, 8, true)
      sdv.setBigUint64(PROG_INFO.funcInfo, BigInt(ptr(funcInfo)), true)
    }
    objInfo(fd, second, `program ${id} ${name}`)
    dv = new DataView(second.buffer)
    if (wantName) rememberFullName(cacheKey, btfTypeName(btfId, funcInfo[1]!) ?? name)
  }

  const type = new DataView(buf.buffer).getUint32(PROG_INFO.type, true)
  const info = new DataView(buf.buffer)
  return {
    id,
    type,
    typeName: PROG_TYPES[type] ?? `type ${type}`,
    name,
    fullName: fullNames.get(cacheKey) ?? name,
    tag: Buffer.from(buf.subarray(PROG_INFO.tag, PROG_INFO.tag + 8)).toString('hex'),
    loadTimeNs,
    loadedAt: new Date(Number((loadTimeNs + wallOffset) / 1_000_000n)).toISOString(),
    uid: info.getUint32(PROG_INFO.createdByUid, true),
    mapIds:
      nrMaps > 0
        ? [...mapIds.subarray(0, Math.min(nrMaps, dv.getUint32(PROG_INFO.nrMapIds, true)))]
        : [],
    runTimeNs: info.getBigUint64(PROG_INFO.runTimeNs, true),
    runCnt: info.getBigUint64(PROG_INFO.runCnt, true),
    recursionMisses: info.getBigUint64(PROG_INFO.recursionMisses, true),
    verifiedInsns: info.getUint32(PROG_INFO.verifiedInsns, true),
    jitedSize: info.getUint32(PROG_INFO.jitedProgLen, true),
    xlatedSize: info.getUint32(PROG_INFO.xlatedProgLen, true),
    btfId,
    attachBtfObjId: info.getUint32(PROG_INFO.attachBtfObjId, true),
    attachBtfId: info.getUint32(PROG_INFO.attachBtfId, true),
  }
}

function rememberFullName(key: string, value: string): void {
  if (fullNames.size >= FULL_NAME_CACHE) fullNames.delete(fullNames.keys().next().value!)
  fullNames.set(key, value)
}

/** Every program on the host. Needs CAP_SYS_ADMIN (or CAP_BPF with CAP_PERFMON). */
export function listPrograms(): ProgramInfo[] {
  const wallOffset = bootToWall()
  const out: ProgramInfo[] = []
  for (const id of programIds()) {
    const fd = progFdById(id)
    if (fd === null) continue
    try {
      out.push(programInfoByFd(fd, wallOffset))
    } catch (err) {
      if (!(err instanceof LibbpfError && err.errno === 2)) throw err
    } finally {
      libc.close(fd)
    }
  }
  return out
}

/** Only the counters, for frequent snapshots: id, load time, run time and count. */
export interface ProgramCounters {
  id: number
  loadTimeNs: bigint
  runTimeNs: bigint
  runCnt: bigint
  recursionMisses: bigint
}

export function programCounters(): ProgramCounters[] {
  const out: ProgramCounters[] = []
  const buf = new Uint8Array(PROG_INFO_SIZE)
  const dv = new DataView(buf.buffer)
  for (const id of programIds()) {
    const fd = progFdById(id)
    if (fd === null) continue
    try {
      buf.fill(0)
      objInfo(fd, buf, `program id ${id}`)
      out.push({
        id,
        loadTimeNs: dv.getBigUint64(PROG_INFO.loadTime, true),
        runTimeNs: dv.getBigUint64(PROG_INFO.runTimeNs, true),
        runCnt: dv.getBigUint64(PROG_INFO.runCnt, true),
        recursionMisses: dv.getBigUint64(PROG_INFO.recursionMisses, true),
      })
    } finally {
      libc.close(fd)
    }
  }
  return out
}

// A map's info never changes, and opening a map by id while the kernel tears it down can keep a
// prog array from ever being freed (seen on 6.18): open each map id once, then reuse its info.
const mapInfoCache = new Map<number, MapInfo>()

export function listMaps(): MapInfo[] {
  const ids = mapIds()
  const live = new Set(ids)
  for (const id of mapInfoCache.keys()) if (!live.has(id)) mapInfoCache.delete(id)

  const out: MapInfo[] = []
  const buf = new Uint8Array(MAP_INFO_SIZE)
  for (const id of ids) {
    const cached = mapInfoCache.get(id)
    if (cached) {
      out.push(cached)
      continue
    }
    const fd = bpf.bpf_map_get_fd_by_id(id)
    if (fd === -2 || fd === -11) continue
    if (fd < 0) throw new LibbpfError('bpf_map_get_fd_by_id', -fd, [], `map id ${id}`)
    try {
      buf.fill(0)
      objInfo(fd, buf, `map id ${id}`)
      const info = decodeMapInfo(buf)
      mapInfoCache.set(id, info)
      out.push(info)
    } finally {
      libc.close(fd)
    }
  }
  return out
}

/**
 * Every link on the host. `programTypes` (program id to type), when the caller has listed the
 * programs already, saves opening each raw tracepoint link's program again.
 */
export function listLinks(programTypes?: Map<number, number>): LinkInfo[] {
  const out: LinkInfo[] = []
  for (const id of linkIds()) {
    const fd = bpf.bpf_link_get_fd_by_id(id)
    // ENOENT: gone; EAGAIN: being torn down right now
    if (fd === -2 || fd === -11) continue
    if (fd < 0) throw new LibbpfError('bpf_link_get_fd_by_id', -fd, [], `link id ${id}`)
    try {
      out.push(linkInfoByFd(fd, programTypes))
    } finally {
      libc.close(fd)
    }
  }
  return out
}

export function linkInfoByFd(fd: number, programTypes?: Map<number, number>): LinkInfo {
  const buf = new Uint8Array(LINK_INFO_SIZE)
  objInfo(fd, buf, `link fd ${fd}`)
  const dv = new DataView(buf.buffer)
  const type = dv.getUint32(LINK_INFO.type, true)
  const base = {
    id: dv.getUint32(LINK_INFO.id, true),
    type,
    typeName: LINK_TYPES[type] ?? `type ${type}`,
    progId: dv.getUint32(LINK_INFO.progId, true),
  }

  switch (type) {
    case 1: {
      // tp_btf programs attach through raw tracepoint links too; their program type tells them apart
      const name = linkString(fd, LINK_INFO.rawTpName, LINK_INFO.rawTpNameLen) || '?'
      const type = programTypes?.get(base.progId) ?? programType(base.progId)
      const kind = type === 26 ? 'tp_btf' : 'raw_tracepoint'
      return { ...base, hook: `${kind}/${name}` }
    }
    case 2: {
      const attach = dv.getUint32(LINK_INFO.tracingAttachType, true)
      const target =
        btfTypeName(
          dv.getUint32(LINK_INFO.tracingTargetObjId, true),
          dv.getUint32(LINK_INFO.tracingTargetBtfId, true),
          true
        ) ?? '?'
      return { ...base, hook: tracingHook(attach, target), attachType: ATTACH_TYPES[attach] }
    }
    case 3: {
      const attach = dv.getUint32(LINK_INFO.cgroupAttachType, true)
      const cg = dv.getBigUint64(LINK_INFO.cgroupId, true)
      const name = ATTACH_TYPES[attach] ?? `attach ${attach}`
      return {
        ...base,
        hook: `cgroup/${name.replace(/^cgroup_/, '')} (cgroup id ${cg})`,
        attachType: name,
      }
    }
    case 6:
      return { ...base, hook: `xdp/ifindex ${dv.getUint32(LINK_INFO.xdpIfindex, true)}` }
    case 7:
      return { ...base, hook: perfEventHook(fd, dv.getUint32(LINK_INFO.perfEventType, true)) }
    default:
      return { ...base, hook: base.typeName }
  }
}

function programType(progId: number): number | null {
  const fd = bpf.bpf_prog_get_fd_by_id(progId)
  if (fd < 0) return null
  try {
    const buf = new Uint8Array(PROG_INFO_SIZE)
    objInfo(fd, buf, `program id ${progId}`)
    return new DataView(buf.buffer).getUint32(PROG_INFO.type, true)
  } catch {
    return null
  } finally {
    libc.close(fd)
  }
}

function tracingHook(attach: number, target: string): string {
  switch (attach) {
    case 23:
      return `tp_btf/${target.replace(/^btf_trace_/, '')}`
    case 24:
      return `fentry/${target}`
    case 25:
      return `fexit/${target}`
    case 26:
      return `fmod_ret/${target}`
    case 27:
      return `lsm/${target.replace(/^bpf_lsm_/, '')}`
    case 28:
      return `iter/${target.replace(/^bpf_iter_/, '')}`
    default:
      return `tracing/${target}`
  }
}

// kernel 6.6+ fills these; older kernels leave perf_event links with no target, and the caller
// falls back to BPF_TASK_FD_QUERY on the owner's perf-event fd
function perfEventHook(fd: number, perfType: number): string {
  const kind = PERF_EVENT_LINK_TYPES[perfType]
  if (!kind) return 'perf_event/?'
  if (kind === 'perf_event') return 'perf_event'
  const name = linkString(fd, LINK_INFO.perfName, LINK_INFO.perfNameLen)
  if (kind === 'tracepoint') return tracepointHook(name)
  return `${kind}/${name || '?'}`
}

/** `tracepoint/<category>/<name>`, the category looked up in tracefs. */
export function tracepointHook(name: string): string {
  const category = tracepointCategories().get(name)
  return category ? `tracepoint/${category}/${name}` : `tracepoint/${name || '?'}`
}

let categories: Map<string, string> | null = null

function tracepointCategories(): Map<string, string> {
  if (categories) return categories
  categories = new Map()
  for (const root of ['/sys/kernel/tracing/events', '/sys/kernel/debug/tracing/events']) {
    try {
      for (const cat of readdirSync(root, { withFileTypes: true })) {
        if (!cat.isDirectory()) continue
        for (const ev of readdirSync(`${root}/${cat.name}`, { withFileTypes: true })) {
          if (ev.isDirectory()) categories.set(ev.name, cat.name)
        }
      }
      if (categories.size) break
    } catch {
      // tracefs is not mounted at this path
    }
  }
  return categories
}

/** Reads a string the kernel writes into a buffer we pass through a link-info field pair. */
function linkString(fd: number, ptrOff: number, lenOff: number): string {
  const buf = new Uint8Array(LINK_INFO_SIZE)
  const name = new Uint8Array(512)
  const dv = new DataView(buf.buffer)
  dv.setBigUint64(ptrOff, BigInt(ptr(name)), true)
  dv.setUint32(lenOff, name.length, true)
  try {
    objInfo(fd, buf, `link fd ${fd}`)
  } catch {
    return ''
  }
  return cString(name, 0, name.length)
}

type BtfPtr = NonNullable<ReturnType<typeof bpf.btf__load_vmlinux_btf>>
let vmlinux: BtfPtr | null | undefined
const btfs = new Map<number, BtfPtr | null>()

function vmlinuxBtf(): BtfPtr | null {
  if (vmlinux === undefined) vmlinux = bpf.btf__load_vmlinux_btf() ?? null
  return vmlinux
}

/**
 * The name of a BTF type. `kernelTarget` means objId is kernel BTF (vmlinux or a module), whose
 * type ids continue vmlinux's numbering; else objId is a program's own BTF.
 */
function btfTypeName(objId: number, typeId: number, kernelTarget = false): string | null {
  let btf: BtfPtr | null
  if (kernelTarget) {
    const base = vmlinuxBtf()
    if (!base) return null
    if (objId === 0 || typeId < bpf.btf__type_cnt(base)) btf = base
    else btf = cachedBtf(objId, base)
  } else {
    btf = cachedBtf(objId, null)
  }
  if (!btf) return null

  const type = bpf.btf__type_by_id(btf, typeId)
  if (!type) return null
  const nameOff = read.u32(type, 0)
  const name = bpf.btf__name_by_offset(btf, nameOff)
  return name ? String(name) : null
}

function cachedBtf(objId: number, base: BtfPtr | null): BtfPtr | null {
  if (btfs.has(objId)) return btfs.get(objId)!
  const mark = logMark()
  const btf = base
    ? bpf.btf__load_from_kernel_by_id_split(objId, base)
    : bpf.btf__load_from_kernel_by_id(objId)
  logSince(mark)
  // program BTF objects are small but many; keep the cache bounded
  if (btfs.size > 256) {
    for (const b of btfs.values()) if (b) bpf.btf__free(b)
    btfs.clear()
  }
  btfs.set(objId, btf ?? null)
  return btf ?? null
}

export interface TaskFdQuery {
  progId: number
  fdType: string
  hook: string
}

/**
 * What a program attached through a perf-event fd (no bpf_link) is attached to, from
 * BPF_TASK_FD_QUERY on that fd of process `pid`. Null if the fd holds no program.
 */
export function taskFdQuery(pid: number, fd: number): TaskFdQuery | null {
  const buf = new Uint8Array(512)
  const bufLen = new Uint32Array([buf.length])
  const progId = new Uint32Array(1)
  const fdType = new Uint32Array(1)
  const offset = new BigUint64Array(1)
  const addr = new BigUint64Array(1)
  const rc = bpf.bpf_task_fd_query(
    pid,
    fd,
    0,
    ptr(buf),
    ptr(bufLen),
    ptr(progId),
    ptr(fdType),
    ptr(offset),
    ptr(addr)
  )
  if (rc < 0) return null

  const type = TASK_FD_TYPES[fdType[0]!] ?? `type ${fdType[0]}`
  const name = cString(buf, 0, buf.length)
  let hook: string
  if (type === 'tracepoint') hook = tracepointHook(name)
  else if (type === 'raw_tracepoint') hook = `raw_tracepoint/${name}`
  else if (name) hook = `${type}/${name}${offset[0] ? `+0x${offset[0].toString(16)}` : ''}`
  else hook = `${type}/0x${addr[0]!.toString(16)}`
  return { progId: progId[0]!, fdType: type, hook }
}

export type PinnedKind = 'prog' | 'map' | 'link'

/** Opens a bpffs pin and says what it is; null when the path holds no bpf object. */
export function identifyPin(path: string): { kind: PinnedKind; id: number } | null {
  const fd = bpf.bpf_obj_get(Buffer.from(`${path}\0`))
  if (fd < 0) return null
  try {
    const target = readlinkSync(`/proc/self/fd/${fd}`)
    const kind: PinnedKind | null = target.includes('bpf-prog')
      ? 'prog'
      : target.includes('bpf-map')
        ? 'map'
        : target.includes('bpf_link')
          ? 'link'
          : null
    if (!kind) return null
    const buf = new Uint8Array(kind === 'prog' ? PROG_INFO_SIZE : LINK_INFO_SIZE)
    objInfo(fd, buf, path)
    return { kind, id: new DataView(buf.buffer).getUint32(4, true) }
  } finally {
    libc.close(fd)
  }
}
