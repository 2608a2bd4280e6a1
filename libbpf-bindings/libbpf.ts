/**
 * Raw libbpf.so.1 symbols and the one print callback. Only this folder calls these; every symbol
 * has one typed wrapper elsewhere in libbpf-bindings that turns libbpf's return convention
 * (negative errno for int, NULL plus errno for pointers) into a LibbpfError.
 *
 * Floor: libbpf 1.1 (Debian 12). Every symbol here exists there.
 */
import { dlopen, FFIType, JSCallback, ptr } from 'bun:ffi'

import { errno, libc } from './libc.ts'

const { i32, u32, u64, ptr: p, cstring, bool, void: v } = FFIType
const usize = u64

const lib = (() => {
  try {
    return dlopen('libbpf.so.1', {
      libbpf_major_version: { args: [], returns: u32 },
      libbpf_minor_version: { args: [], returns: u32 },
      libbpf_set_print: { args: [p], returns: p },
      bpf_object__open_file: { args: [cstring, p], returns: p },
      bpf_object__load: { args: [p], returns: i32 },
      bpf_object__close: { args: [p], returns: v },
      bpf_object__name: { args: [p], returns: cstring },
      bpf_object__next_program: { args: [p, p], returns: p },
      bpf_object__next_map: { args: [p, p], returns: p },
      bpf_program__name: { args: [p], returns: cstring },
      bpf_program__section_name: { args: [p], returns: cstring },
      bpf_program__set_autoload: { args: [p, bool], returns: i32 },
      bpf_program__autoload: { args: [p], returns: bool },
      bpf_program__fd: { args: [p], returns: i32 },
      bpf_program__type: { args: [p], returns: u32 },
      bpf_program__attach: { args: [p], returns: p },
      bpf_link__destroy: { args: [p], returns: i32 },
      bpf_link__fd: { args: [p], returns: i32 },
      bpf_map__name: { args: [p], returns: cstring },
      bpf_map__fd: { args: [p], returns: i32 },
      bpf_map__type: { args: [p], returns: u32 },
      bpf_map__key_size: { args: [p], returns: u32 },
      bpf_map__value_size: { args: [p], returns: u32 },
      bpf_map__max_entries: { args: [p], returns: u32 },
      bpf_map__set_max_entries: { args: [p, u32], returns: i32 },
      bpf_map__initial_value: { args: [p, p], returns: p },
      bpf_map__set_initial_value: { args: [p, p, usize], returns: i32 },
      bpf_map_lookup_elem: { args: [i32, p, p], returns: i32 },
      bpf_map_update_elem: { args: [i32, p, p, u64], returns: i32 },
      bpf_map_delete_elem: { args: [i32, p], returns: i32 },
      bpf_map_get_next_key: { args: [i32, p, p], returns: i32 },
      bpf_prog_get_next_id: { args: [u32, p], returns: i32 },
      bpf_map_get_next_id: { args: [u32, p], returns: i32 },
      bpf_link_get_next_id: { args: [u32, p], returns: i32 },
      bpf_prog_get_fd_by_id: { args: [u32], returns: i32 },
      bpf_map_get_fd_by_id: { args: [u32], returns: i32 },
      bpf_link_get_fd_by_id: { args: [u32], returns: i32 },
      bpf_obj_get_info_by_fd: { args: [i32, p, p], returns: i32 },
      bpf_obj_get: { args: [cstring], returns: i32 },
      bpf_obj_pin: { args: [i32, cstring], returns: i32 },
      bpf_enable_stats: { args: [i32], returns: i32 },
      bpf_task_fd_query: { args: [i32, i32, u32, p, p, p, p, p, p], returns: i32 },
      btf__load_from_kernel_by_id: { args: [u32], returns: p },
      btf__load_vmlinux_btf: { args: [], returns: p },
      btf__load_from_kernel_by_id_split: { args: [u32, p], returns: p },
      btf__free: { args: [p], returns: v },
      btf__type_by_id: { args: [p, u32], returns: p },
      btf__name_by_offset: { args: [p, u32], returns: cstring },
      btf__type_cnt: { args: [p], returns: u32 },
      libbpf_strerror: { args: [i32, p, usize], returns: i32 },
    })
  } catch (cause) {
    throw new Error('cannot load libbpf.so.1: install the libbpf1 package (libbpf 1.1 or newer)', {
      cause,
    })
  }
})()

export const bpf = lib.symbols

export function libbpfVersion(): string {
  return `${bpf.libbpf_major_version()}.${bpf.libbpf_minor_version()}`
}

export type LibbpfLevel = 'warn' | 'info' | 'debug'
export type LibbpfSink = (level: LibbpfLevel, message: string) => void

const LEVELS: LibbpfLevel[] = ['warn', 'info', 'debug']
const MAX_KEPT = 512
const kept: string[] = []
let serial = 0
let sink: LibbpfSink | undefined
const printBuf = new Uint8Array(8192)
const decoder = new TextDecoder()

// Kept alive for the life of the process: libbpf may call it from any later call.
const printCallback = new JSCallback(
  (level: number, fmt: number, ap: number) => {
    const n = libc.vsnprintf(ptr(printBuf), printBuf.length, fmt as never, ap as never)
    const text = decoder.decode(printBuf.subarray(0, Math.max(0, Math.min(n, printBuf.length - 1))))
    const lvl = LEVELS[level] ?? 'debug'
    if (lvl !== 'debug') {
      kept.push(text.trimEnd())
      serial++
      if (kept.length > MAX_KEPT) kept.shift()
    }
    sink?.(lvl, text.trimEnd())
    return 0
  },
  { args: [i32, p, p], returns: i32 }
)
bpf.libbpf_set_print(printCallback.ptr)

/**
 * Send libbpf's own diagnostics somewhere (the agent's logger). The bindings never print;
 * without a sink, messages are only kept to be attached to errors.
 */
export function setLibbpfSink(next: LibbpfSink | undefined): void {
  sink = next
}

/** A mark in libbpf's message stream; `since(mark)` returns what libbpf said after it. */
export function logMark(): number {
  return serial
}

export function logSince(mark: number): string[] {
  const count = Math.min(serial - mark, kept.length)
  return count > 0 ? kept.slice(kept.length - count) : []
}

/** Pointer-returning libbpf calls report failure as NULL plus errno, read at once. */
export function pointerErrno(): number {
  return errno() || 22
}
