/**
 * Who holds which eBPF object, read from procfs.
 *
 * The kernel does not record which process owns a program, map or link; the holders are the
 * processes with an fd on it. This module walks `/proc/<pid>/fd` and `fdinfo` for them, reads
 * each holder's comm, exe and cgroup (with the container and pod they name), finds bpffs mounts
 * and walks their pins, and reads a process's CPU times from `/proc/<pid>/stat`.
 *
 * Every reader takes `procRoot` (default `/proc`) so that tests can point it at a fixture tree
 * and a pod can point it at the host's proc mount.
 *
 * @module
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync, type Dirent } from 'node:fs'
import { endianness } from 'node:os'
import { join } from 'node:path'

export interface ProcfsOptions {
  /** Root of the proc filesystem to read. Default `/proc`. */
  procRoot?: string
}

export type CgroupVersion = 'v1' | 'v2' | 'hybrid'

export interface CgroupInfo {
  /** The cgroup path that best names the process's placement (see {@link readCgroup}). */
  path: string
  /** `hybrid` when both a v2 (`0::`) line and v1 hierarchy lines are present. */
  version: CgroupVersion
  /** 64-hex container id found in `path`. */
  containerId?: string
  /** Kubernetes pod UID found in a kubepods `path`, with dashes. */
  podUid?: string
}

/** One process holding one eBPF object, with every fd it holds on that object. */
export interface Owner {
  pid: number
  comm: string
  /** Target of `/proc/<pid>/exe`; '' when unreadable (kernel threads). */
  exe: string
  cgroup: CgroupInfo
  fds: number[]
}

export interface LinkHolders {
  /** The program the link attaches, from the link's fdinfo. */
  progId?: number
  owners: Owner[]
}

/** A perf-event fd, which BPF_TASK_FD_QUERY can resolve to the hook of an attached program. */
export interface PerfEventFd {
  pid: number
  fd: number
}

export interface HolderIndex {
  /** Owners by program id, in ascending pid order. */
  progs: Map<number, Owner[]>
  /** Owners by map id, in ascending pid order. */
  maps: Map<number, Owner[]>
  /** Attached program and owners by link id. */
  links: Map<number, LinkHolders>
  perfEventFds: PerfEventFd[]
  /**
   * What the scan gave up on, each counted once: a process that vanished (ENOENT, ESRCH) or
   * refused access (EACCES), an fd that vanished, a bpf fd whose fdinfo carries no id.
   */
  skipped: number
}

export type BpfObjectKind = 'prog' | 'map' | 'link'

export interface PinIdentity {
  kind: BpfObjectKind
  id: number
}

export interface PinnedObject extends PinIdentity {
  path: string
}

export interface PinWalk {
  pins: PinnedObject[]
  /**
   * Files whose `identify` threw, directories that vanished or could not be read, and
   * directories below the depth bound.
   */
  skipped: number
}

export interface ProcStat {
  /** User-mode CPU time, in clock ticks ({@link clockTicksPerSecond}). */
  utimeTicks: number
  /** Kernel-mode CPU time, in clock ticks. */
  stimeTicks: number
  /** Start time after boot, in clock ticks. */
  startTimeTicks: number
}

export type ProcfsCall = 'read' | 'readlink' | 'readdir' | 'parse'

/** A procfs read or parse that failed; `code` is the errno name when the system gave one. */
export class ProcfsError extends Error {
  override readonly name = 'ProcfsError'
  readonly call: ProcfsCall
  readonly path: string
  readonly code: string | undefined

  constructor(
    call: ProcfsCall,
    path: string,
    detail: string,
    options: { code?: string; cause?: unknown } = {}
  ) {
    super(`${call} ${path}: ${detail}`, { cause: options.cause })
    this.call = call
    this.path = path
    this.code = options.code
  }
}

const DEFAULT_PROC_ROOT = '/proc'

/** Pins deeper than this below a bpffs mount are not walked. */
export const MAX_PIN_DEPTH = 16

/** The clock-tick rate assumed when the auxiliary vector does not give one. */
export const FALLBACK_CLOCK_TICKS = 100

// A process or fd can go away between listing and reading: "not this one", not "the scan
// failed". Access is refused per process (the kernel's ptrace check), so a refusal on one fd
// gives up the whole process at once rather than each of its fds.
const GONE_CODES: ReadonlySet<string> = new Set(['ENOENT', 'ESRCH'])
const UNREADABLE_CODES: ReadonlySet<string> = new Set([...GONE_CODES, 'EACCES'])

const FD_KINDS: ReadonlyMap<string, BpfObjectKind | 'perf_event'> = new Map([
  ['anon_inode:bpf-prog', 'prog'],
  ['anon_inode:bpf-map', 'map'],
  ['anon_inode:bpf_link', 'link'],
  ['anon_inode:[perf_event]', 'perf_event'],
])

const DECIMAL = /^\d+$/

const CONTAINER_SEGMENT = /^(?:(?:docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$/

const POD_SEGMENT = /^(?:kubepods(?:-[a-z]+)?-)?pod([0-9a-f][0-9a-f_-]*)(?:\.slice)?$/

// Pod UIDs are RFC 4122 UUIDs, except static pods, whose UID is a 32-hex hash of the manifest.
const POD_UID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$/

const AT_NULL = 0n
const AT_CLKTCK = 17n

interface CgroupLine {
  hierarchy: number
  controllers: string[]
  path: string
}

interface ProcessHoldings {
  progs: Map<number, number[]>
  maps: Map<number, number[]>
  links: Map<number, { progId?: number; fds: number[] }>
  perfEventFds: number[]
  skipped: number
}

interface ProcessInfo {
  comm: string
  exe: string
  cgroup: CgroupInfo
}

/**
 * Walks every process's fd table and indexes the eBPF programs, maps and links it holds, and
 * its perf-event fds.
 *
 * Only thread-group leaders (the numeric entries of procRoot) are walked. Processes and fds that
 * vanish or refuse access mid-scan are counted in `skipped`; other errors throw
 * {@link ProcfsError}.
 */
export function scanBpfHolders(opts: ProcfsOptions = {}): HolderIndex {
  const procRoot = opts.procRoot ?? DEFAULT_PROC_ROOT
  const index: HolderIndex = {
    progs: new Map(),
    maps: new Map(),
    links: new Map(),
    perfEventFds: [],
    skipped: 0,
  }

  for (const pid of listNumericEntries(procRoot)) {
    const holdings = skipOn(UNREADABLE_CODES, () => readHoldings(procRoot, pid))
    if (holdings === undefined) {
      index.skipped++
      continue
    }
    index.skipped += holdings.skipped
    for (const fd of holdings.perfEventFds) index.perfEventFds.push({ pid, fd })

    // Process details are read only for holders, so most processes cost one readdir.
    if (holdings.progs.size + holdings.maps.size + holdings.links.size === 0) continue
    const info = skipOn(UNREADABLE_CODES, () => readProcessInfo(procRoot, pid))
    if (info === undefined) {
      index.skipped++
      continue
    }

    for (const [id, fds] of holdings.progs) pushOwner(index.progs, id, { pid, ...info, fds })
    for (const [id, fds] of holdings.maps) pushOwner(index.maps, id, { pid, ...info, fds })
    for (const [id, link] of holdings.links) {
      const entry = index.links.get(id) ?? { owners: [] }
      entry.progId ??= link.progId
      entry.owners.push({ pid, ...info, fds: link.fds })
      index.links.set(id, entry)
    }
  }

  return index
}

/**
 * Reads a process's cgroup placement from `/proc/<pid>/cgroup`.
 *
 * The path is taken from the first of these lines whose path is not '/': the v2 `0::` line,
 * then the v1 `name=systemd`, `memory` and `cpu` hierarchies; if all are '/', from the first of
 * them present. A container id and pod UID are looked for in that path.
 */
export function readCgroup(pid: number, opts: ProcfsOptions = {}): CgroupInfo {
  const path = join(opts.procRoot ?? DEFAULT_PROC_ROOT, String(pid), 'cgroup')
  const lines = parseCgroupLines(readText(path), path)

  const v2 = lines.find((line) => line.hierarchy === 0 && line.controllers.length === 0)
  const v1 = lines.filter((line) => line !== v2)
  const version: CgroupVersion = v2 === undefined ? 'v1' : v1.length > 0 ? 'hybrid' : 'v2'

  const byController = (name: string) => v1.find((line) => line.controllers.includes(name))
  const candidates = [v2, byController('name=systemd'), byController('memory'), byController('cpu')]
  const present = candidates.filter((line) => line !== undefined)
  const chosen = present.find((line) => line.path !== '/') ?? present[0] ?? lines[0]
  if (chosen === undefined) throw new ProcfsError('parse', path, 'no cgroup lines')

  const info: CgroupInfo = { path: chosen.path, version }
  const containerId = findContainerId(chosen.path)
  if (containerId !== undefined) info.containerId = containerId
  const podUid = findPodUid(chosen.path)
  if (podUid !== undefined) info.podUid = podUid
  return info
}

/**
 * Mount points of type bpf, from `<procRoot>/self/mountinfo`, in mount order without
 * repeats. They are the mounts of the reading process's mount namespace.
 */
export function findBpffsMounts(opts: ProcfsOptions = {}): string[] {
  const path = join(opts.procRoot ?? DEFAULT_PROC_ROOT, 'self', 'mountinfo')
  const mounts: string[] = []

  for (const line of readText(path).split('\n')) {
    if (line === '') continue

    // Fields: id parent major:minor root mount-point options [optional...] - type source super
    const fields = line.split(' ')
    const separator = fields.indexOf('-', 6)
    const mountPoint = fields[4]
    if (separator < 0 || mountPoint === undefined || fields[separator + 1] === undefined) {
      throw new ProcfsError('parse', path, `malformed mountinfo line '${line}'`)
    }

    if (fields[separator + 1] !== 'bpf') continue
    const decoded = unescapeMountField(mountPoint)
    if (!mounts.includes(decoded)) mounts.push(decoded)
  }

  return mounts
}

/**
 * Walks each bpffs mount for pinned objects: regular files only, symlinks not followed, at most
 * {@link MAX_PIN_DEPTH} directories deep. `identify` names the object behind a path, or returns
 * null for a file that is not one; a throw from it skips that file.
 */
export function walkPins(
  mounts: string[],
  identify: (path: string) => PinIdentity | null
): PinWalk {
  const walk: PinWalk = { pins: [], skipped: 0 }

  for (const mount of mounts) walkPinDir(mount, 0, identify, walk)

  return walk
}

/**
 * CPU times and start time of a process, from `/proc/<pid>/stat`. The comm field is skipped up
 * to the last ')', since a comm may itself contain spaces and parentheses.
 */
export function readProcStat(pid: number, opts: ProcfsOptions = {}): ProcStat {
  const path = join(opts.procRoot ?? DEFAULT_PROC_ROOT, String(pid), 'stat')
  const text = readText(path)

  const commEnd = text.lastIndexOf(')')
  if (commEnd < 0) throw new ProcfsError('parse', path, 'no comm field')

  // fields[0] is field 3 (state) in proc(5)'s numbering.
  const fields = text
    .slice(commEnd + 1)
    .trim()
    .split(/ +/)
  const field = (number: number) => {
    const value = fields[number - 3]
    if (value === undefined || !DECIMAL.test(value)) {
      throw new ProcfsError('parse', path, `field ${number} is '${value ?? ''}', not a count`)
    }
    return Number(value)
  }

  return { utimeTicks: field(14), stimeTicks: field(15), startTimeTicks: field(22) }
}

/**
 * CPU time (user + system) a process has used, in ns: the sum of its threads' schedstat run
 * times, which count in ns where /proc/<pid>/stat counts in clock ticks; the stat ticks when
 * schedstat is unavailable. Null when the process is gone.
 */
export function processCpuNs(pid: number, opts: ProcfsOptions = {}): number | null {
  const taskDir = join(opts.procRoot ?? DEFAULT_PROC_ROOT, String(pid), 'task')
  try {
    let total = 0
    for (const tid of readdirSync(taskDir)) {
      try {
        total += Number(readFileSync(join(taskDir, tid, 'schedstat'), 'utf8').split(' ')[0])
      } catch {
        // a thread that exited between the listing and the read
      }
    }
    if (total > 0) return total
  } catch {
    // no task dir: the process is gone, or schedstat is not built in
  }
  try {
    const st = readProcStat(pid, opts)
    return ((st.utimeTicks + st.stimeTicks) * 1e9) / clockTicksPerSecond()
  } catch {
    return null
  }
}

let clockTicks: number | undefined

/**
 * Clock ticks per second (USER_HZ), the unit of {@link ProcStat}. Read once from this
 * process's auxiliary vector (AT_CLKTCK, what sysconf(_SC_CLK_TCK) returns); if that is
 * unreadable, {@link FALLBACK_CLOCK_TICKS}.
 */
export function clockTicksPerSecond(): number {
  clockTicks ??= readAuxvClockTicks() ?? FALLBACK_CLOCK_TICKS
  return clockTicks
}

function readHoldings(procRoot: string, pid: number): ProcessHoldings {
  const holdings: ProcessHoldings = {
    progs: new Map(),
    maps: new Map(),
    links: new Map(),
    perfEventFds: [],
    skipped: 0,
  }
  const pidDir = join(procRoot, String(pid))

  for (const fd of listNumericEntries(join(pidDir, 'fd'))) {
    const target = skipOn(GONE_CODES, () => readLink(join(pidDir, 'fd', String(fd))))
    if (target === undefined) {
      holdings.skipped++
      continue
    }

    const kind = FD_KINDS.get(target)
    if (kind === undefined) continue

    if (kind === 'perf_event') {
      holdings.perfEventFds.push(fd)
      continue
    }

    const fdinfoPath = join(pidDir, 'fdinfo', String(fd))
    const fdinfo = skipOn(GONE_CODES, () => parseFdinfo(readText(fdinfoPath)))
    const id = fdinfo === undefined ? undefined : parseId(fdinfo.get(`${kind}_id`))
    if (fdinfo === undefined || id === undefined) {
      holdings.skipped++
      continue
    }

    if (kind === 'link') {
      const link = holdings.links.get(id) ?? { fds: [] }
      link.progId ??= parseId(fdinfo.get('prog_id'))
      link.fds.push(fd)
      holdings.links.set(id, link)
    } else {
      const byId = kind === 'prog' ? holdings.progs : holdings.maps
      const fds = byId.get(id)
      if (fds === undefined) byId.set(id, [fd])
      else fds.push(fd)
    }
  }

  return holdings
}

function readProcessInfo(procRoot: string, pid: number): ProcessInfo {
  const pidDir = join(procRoot, String(pid))

  const comm = readText(join(pidDir, 'comm')).replace(/\n$/, '')

  // Kernel threads have no exe, and a process of another user refuses it.
  const exe = skipOn(UNREADABLE_CODES, () => readLink(join(pidDir, 'exe'))) ?? ''

  const cgroup = readCgroup(pid, { procRoot })
  return { comm, exe, cgroup }
}

function pushOwner(byId: Map<number, Owner[]>, id: number, owner: Owner): void {
  const owners = byId.get(id)
  if (owners === undefined) byId.set(id, [owner])
  else owners.push(owner)
}

function parseFdinfo(text: string): Map<string, string> {
  const fields = new Map<string, string>()

  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trim())
  }

  return fields
}

function parseId(value: string | undefined): number | undefined {
  if (value === undefined || !DECIMAL.test(value)) return undefined
  const id = Number(value)
  return id > 0 && Number.isSafeInteger(id) ? id : undefined
}

function parseCgroupLines(text: string, path: string): CgroupLine[] {
  const lines: CgroupLine[] = []

  for (const line of text.split('\n')) {
    if (line === '') continue

    // hierarchy-id:controller-list:path, and the path itself may contain ':'.
    const first = line.indexOf(':')
    const second = first < 0 ? -1 : line.indexOf(':', first + 1)
    const hierarchy = line.slice(0, first)
    if (second < 0 || !DECIMAL.test(hierarchy)) {
      throw new ProcfsError('parse', path, `malformed cgroup line '${line}'`)
    }

    const controllers = line.slice(first + 1, second)
    lines.push({
      hierarchy: Number(hierarchy),
      controllers: controllers === '' ? [] : controllers.split(','),
      path: line.slice(second + 1),
    })
  }

  return lines
}

// The innermost match wins, so a container nested in another names itself.
function findContainerId(cgroupPath: string): string | undefined {
  for (const segment of cgroupPath.split('/').reverse()) {
    const match = CONTAINER_SEGMENT.exec(segment)
    if (match !== null) return match[1]
  }
  return undefined
}

function findPodUid(cgroupPath: string): string | undefined {
  if (!cgroupPath.includes('kubepods')) return undefined

  for (const segment of cgroupPath.split('/').reverse()) {
    const match = POD_SEGMENT.exec(segment)
    if (match === null || match[1] === undefined) continue

    // The systemd cgroup driver writes the UID's dashes as underscores in slice names.
    const uid = match[1].replaceAll('_', '-')
    if (POD_UID.test(uid)) return uid
  }
  return undefined
}

// The kernel escapes space, tab, newline and backslash in mountinfo as \ooo.
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(parseInt(octal, 8))
  )
}

function walkPinDir(
  dir: string,
  depth: number,
  identify: (path: string) => PinIdentity | null,
  walk: PinWalk
): void {
  const entries = skipOn(UNREADABLE_CODES, () => readDir(dir))
  if (entries === undefined) {
    walk.skipped++
    return
  }

  for (const entry of entries) {
    const path = join(dir, entry.name)
    const type = skipOn(UNREADABLE_CODES, () => entryType(entry, path))

    if (type === 'dir') {
      if (depth < MAX_PIN_DEPTH) walkPinDir(path, depth + 1, identify, walk)
      else walk.skipped++
    } else if (type === 'file') {
      try {
        const identity = identify(path)
        if (identity !== null) walk.pins.push({ path, kind: identity.kind, id: identity.id })
      } catch {
        walk.skipped++
      }
    } else if (type === undefined) {
      walk.skipped++
    }
  }
}

function entryType(entry: Dirent, path: string): 'dir' | 'file' | 'other' {
  if (entry.isSymbolicLink()) return 'other'
  if (entry.isDirectory()) return 'dir'
  if (entry.isFile()) return 'file'
  if (entry.isFIFO() || entry.isSocket() || entry.isBlockDevice() || entry.isCharacterDevice()) {
    return 'other'
  }

  // Some filesystems report no type in readdir; ask lstat, which does not follow symlinks.
  const stat = fsCall('read', path, () => lstatSync(path))
  return stat.isDirectory() ? 'dir' : stat.isFile() ? 'file' : 'other'
}

function readAuxvClockTicks(): number | undefined {
  let auxv: Buffer
  try {
    auxv = readFileSync(join(DEFAULT_PROC_ROOT, 'self', 'auxv'))
  } catch {
    return undefined
  }

  // Entries are (type, value) pairs of native unsigned longs; Bun runs only on 64-bit targets.
  const view = new DataView(auxv.buffer, auxv.byteOffset, auxv.byteLength)
  const littleEndian = endianness() === 'LE'
  for (let offset = 0; offset + 16 <= auxv.byteLength; offset += 16) {
    const type = view.getBigUint64(offset, littleEndian)
    if (type === AT_NULL) break
    if (type !== AT_CLKTCK) continue

    const ticks = Number(view.getBigUint64(offset + 8, littleEndian))
    return ticks > 0 ? ticks : undefined
  }
  return undefined
}

function listNumericEntries(dir: string): number[] {
  return fsCall('readdir', dir, () => readdirSync(dir))
    .filter((name) => DECIMAL.test(name))
    .map(Number)
    .sort((a, b) => a - b)
}

function readDir(dir: string): Dirent[] {
  return fsCall('readdir', dir, () => readdirSync(dir, { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0
  )
}

function readText(path: string): string {
  return fsCall('read', path, () => readFileSync(path, 'utf8'))
}

function readLink(path: string): string {
  return fsCall('readlink', path, () => readlinkSync(path))
}

function fsCall<T>(call: ProcfsCall, path: string, run: () => T): T {
  try {
    return run()
  } catch (error) {
    const code = errnoCode(error)
    const detail = code ?? (error instanceof Error ? error.message : String(error))
    throw new ProcfsError(call, path, detail, { code, cause: error })
  }
}

function errnoCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  return typeof error.code === 'string' ? error.code : undefined
}

/** Runs a read; undefined when it failed with one of `codes`, any other error thrown. */
function skipOn<T>(codes: ReadonlySet<string>, read: () => T): T | undefined {
  try {
    return read()
  } catch (error) {
    if (error instanceof ProcfsError && codes.has(error.code ?? '')) return undefined
    throw error
  }
}
