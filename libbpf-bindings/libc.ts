/**
 * The few libc calls the bindings need, through bun:ffi. Loaded separately from libbpf so that
 * Worker threads can use them without touching libbpf's process-wide print callback.
 */
import { readFileSync } from 'node:fs'

import { dlopen, FFIType, ptr, read } from 'bun:ffi'

const { i32, i64, u32, u64, ptr: p, cstring } = FFIType
const usize = u64

const lib = dlopen('libc.so.6', {
  __errno_location: { args: [], returns: p },
  strerror: { args: [i32], returns: cstring },
  close: { args: [i32], returns: i32 },
  read: { args: [i32, p, usize], returns: i64 },
  write: { args: [i32, p, usize], returns: i64 },
  ioctl: { args: [i32, u64, u64], returns: i32 },
  syscall: { args: [i64, u64, u64, u64, u64, u64], returns: i64 },
  mmap: { args: [p, usize, i32, i32, i32, i64], returns: p },
  munmap: { args: [p, usize], returns: i32 },
  epoll_create1: { args: [i32], returns: i32 },
  epoll_ctl: { args: [i32, i32, i32, p], returns: i32 },
  epoll_wait: { args: [i32, p, i32, i32], returns: i32 },
  eventfd: { args: [u32, i32], returns: i32 },
  clock_gettime: { args: [i32, p], returns: i32 },
  vsnprintf: { args: [p, usize, p, p], returns: i32 },
  getpid: { args: [], returns: i32 },
  sysconf: { args: [i32], returns: i64 },
  get_nprocs_conf: { args: [], returns: i32 },
  geteuid: { args: [], returns: u32 },
  mount: { args: [cstring, cstring, cstring, u64, p], returns: i32 },
  umount2: { args: [cstring, i32], returns: i32 },
})

export const libc = lib.symbols

/** errno of the calling thread; read it right after the failing call. */
export function errno(): number {
  return read.i32(libc.__errno_location()!, 0)
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  3: 'ESRCH',
  4: 'EINTR',
  5: 'EIO',
  6: 'ENXIO',
  7: 'E2BIG',
  8: 'ENOEXEC',
  9: 'EBADF',
  10: 'ECHILD',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  14: 'EFAULT',
  16: 'EBUSY',
  17: 'EEXIST',
  19: 'ENODEV',
  20: 'ENOTDIR',
  21: 'EISDIR',
  22: 'EINVAL',
  23: 'ENFILE',
  24: 'EMFILE',
  25: 'ENOTTY',
  26: 'ETXTBSY',
  27: 'EFBIG',
  28: 'ENOSPC',
  30: 'EROFS',
  34: 'ERANGE',
  36: 'ENAMETOOLONG',
  38: 'ENOSYS',
  61: 'ENODATA',
  75: 'EOVERFLOW',
  95: 'EOPNOTSUPP',
  110: 'ETIMEDOUT',
  524: 'ENOTSUPP',
  4001: 'LIBBPF_ERRNO__LIBELF',
  4002: 'LIBBPF_ERRNO__FORMAT',
  4003: 'LIBBPF_ERRNO__KVERSION',
  4004: 'LIBBPF_ERRNO__ENDIAN',
  4005: 'LIBBPF_ERRNO__INTERNAL',
  4006: 'LIBBPF_ERRNO__RELOC',
  4007: 'LIBBPF_ERRNO__LOAD',
  4008: 'LIBBPF_ERRNO__VERIFY',
  4009: 'LIBBPF_ERRNO__PROG2BIG',
  4010: 'LIBBPF_ERRNO__KVER',
  4011: 'LIBBPF_ERRNO__PROGTYPE',
  4012: 'LIBBPF_ERRNO__WRNGPID',
  4013: 'LIBBPF_ERRNO__INVSEQ',
  4014: 'LIBBPF_ERRNO__NLPARSE',
}

export function errnoName(code: number): string {
  return ERRNO_NAMES[code] ?? `errno ${code}`
}

export function strerror(code: number): string {
  return code >= 4000 ? 'libbpf error' : String(libc.strerror(code))
}

export const CLOCK_MONOTONIC = 1
export const CLOCK_REALTIME = 0
export const CLOCK_BOOTTIME = 7

const tsBuf = new BigInt64Array(2)
const tsPtr = ptr(tsBuf)

/** CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_ns() reads. */
export function monotonicNs(): bigint {
  libc.clock_gettime(CLOCK_MONOTONIC, tsPtr)
  return tsBuf[0]! * 1_000_000_000n + tsBuf[1]!
}

export function clockNs(clock: number): bigint {
  libc.clock_gettime(clock, tsPtr)
  return tsBuf[0]! * 1_000_000_000n + tsBuf[1]!
}

export const PAGE_SIZE = Number(libc.sysconf(30 /* _SC_PAGESIZE */))

/** Number of possible CPUs, the size perf event arrays and per-CPU maps use. */
export function possibleCpus(): number {
  try {
    const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8')
    let n = 0
    for (const part of text.trim().split(',')) {
      const [a, b] = part.split('-').map(Number)
      n = Math.max(n, (b ?? a!) + 1)
    }
    return n
  } catch {
    return libc.get_nprocs_conf()
  }
}

export { ptr, read }
export type Pointer = NonNullable<ReturnType<typeof libc.__errno_location>>
