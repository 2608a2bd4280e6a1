import { ptr, read, toArrayBuffer } from 'bun:ffi'

import { ClosedError, LibbpfError } from './errors.ts'
import { bpf, logMark, logSince } from './libbpf.ts'
import { libc, possibleCpus } from './libc.ts'
import { decodeMapInfo, MAP_INFO_SIZE, type MapInfo } from './layout.ts'

const PERCPU_TYPES = new Set([5, 6, 10, 21]) // percpu hash, percpu array, lru percpu hash, percpu cgroup storage
const NO_VALUE_LOOKUP = new Set([3, 4, 27]) // prog array, perf event array, ring buffer: no value reads

export const BPF_ANY = 0
export const BPF_NOEXIST = 1
export const BPF_EXIST = 2

/**
 * Operations on a map through its fd. Keys and values are bytes; callers decode them.
 * For per-CPU maps a value holds one 8-byte-aligned slot per possible CPU.
 */
export class MapFd implements Disposable {
  #fd: number
  readonly valueBytes: number

  constructor(
    fd: number,
    readonly name: string,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    private readonly ownsFd: boolean
  ) {
    this.#fd = fd
    this.valueBytes = PERCPU_TYPES.has(type)
      ? Math.ceil(valueSize / 8) * 8 * possibleCpus()
      : valueSize
  }

  get fd(): number {
    if (this.#fd < 0) throw new ClosedError(`map ${this.name}`)
    return this.#fd
  }

  get closed(): boolean {
    return this.#fd < 0
  }

  lookup(key: Uint8Array): Uint8Array | null {
    this.#checkKey(key)
    const value = new Uint8Array(Math.max(this.valueBytes, 8))
    const rc = bpf.bpf_map_lookup_elem(this.fd, ptr(key), ptr(value))
    if (rc === -2) return null
    if (rc < 0) throw new LibbpfError('bpf_map_lookup_elem', -rc, [], `map ${this.name}`)
    return value.subarray(0, this.valueBytes)
  }

  update(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
    this.#checkKey(key)
    if (value.length !== this.valueBytes && !NO_VALUE_LOOKUP.has(this.type)) {
      throw new RangeError(
        `map ${this.name}: value is ${value.length} bytes, expected ${this.valueBytes}`
      )
    }
    const rc = bpf.bpf_map_update_elem(this.fd, ptr(key), ptr(value), BigInt(flags))
    if (rc < 0) throw new LibbpfError('bpf_map_update_elem', -rc, [], `map ${this.name}`)
  }

  /** Returns false when the key was not there. */
  delete(key: Uint8Array): boolean {
    this.#checkKey(key)
    const rc = bpf.bpf_map_delete_elem(this.fd, ptr(key))
    if (rc === -2) return false
    if (rc < 0) throw new LibbpfError('bpf_map_delete_elem', -rc, [], `map ${this.name}`)
    return true
  }

  /** Every key, read before yielding so that deletes while iterating are safe. */
  keys(): Uint8Array[] {
    const out: Uint8Array[] = []
    let prev: Uint8Array | null = null
    const limit = this.maxEntries + 1

    while (out.length < limit) {
      const next = new Uint8Array(this.keySize)
      const rc = bpf.bpf_map_get_next_key(this.fd, prev ? ptr(prev) : null, ptr(next))
      if (rc === -2) break
      if (rc < 0) throw new LibbpfError('bpf_map_get_next_key', -rc, [], `map ${this.name}`)
      out.push(next)
      prev = next
    }
    return out
  }

  /** Key and value pairs; entries deleted between the two reads are skipped. */
  entries(): Array<[Uint8Array, Uint8Array]> {
    const out: Array<[Uint8Array, Uint8Array]> = []
    for (const key of this.keys()) {
      const value = this.lookup(key)
      if (value) out.push([key, value])
    }
    return out
  }

  /** Idempotent; a map owned by a BpfObject is closed with the object, not here. */
  close(): void {
    if (this.#fd < 0) return
    if (this.ownsFd) libc.close(this.#fd)
    this.#fd = -1
  }

  [Symbol.dispose](): void {
    this.close()
  }

  #checkKey(key: Uint8Array): void {
    if (key.length !== this.keySize) {
      throw new RangeError(`map ${this.name}: key is ${key.length} bytes, expected ${this.keySize}`)
    }
  }
}

/** The info struct of any bpf object fd (program, map, link): fills `buf`, returns its length. */
export function objInfo(fd: number, buf: Uint8Array, what: string): number {
  const len = new Uint32Array([buf.length])
  const rc = bpf.bpf_obj_get_info_by_fd(fd, ptr(buf), ptr(len))
  if (rc < 0) throw new LibbpfError('bpf_obj_get_info_by_fd', -rc, [], what)
  return len[0]!
}

export function mapInfoByFd(fd: number): MapInfo {
  const buf = new Uint8Array(MAP_INFO_SIZE)
  objInfo(fd, buf, `map fd ${fd}`)
  return decodeMapInfo(buf)
}

/** Opens a map of any process by id. The caller closes it. Throws ENOENT if it is gone. */
export function openMapById(id: number): MapFd {
  const mark = logMark()
  const fd = bpf.bpf_map_get_fd_by_id(id)
  if (fd < 0) throw new LibbpfError('bpf_map_get_fd_by_id', -fd, logSince(mark), `map id ${id}`)
  try {
    const info = mapInfoByFd(fd)
    return new MapFd(fd, info.name, info.type, info.keySize, info.valueSize, info.maxEntries, true)
  } catch (err) {
    libc.close(fd)
    throw err
  }
}

export function u32Key(n: number): Uint8Array {
  return new Uint8Array(new Uint32Array([n]).buffer)
}

export { read, toArrayBuffer }
