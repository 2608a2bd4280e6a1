/**
 * Byte layouts of the kernel's uapi structs the bindings read (linux/bpf.h, linux/perf_event.h).
 * The uapi only ever grows at the end, so these offsets hold on every kernel that has the field;
 * test/layout.test.ts checks them against the system headers with a C compiler.
 */

export const PROG_INFO_SIZE = 232
export const PROG_INFO = {
  type: 0,
  id: 4,
  tag: 8,
  jitedProgLen: 16,
  xlatedProgLen: 20,
  loadTime: 40,
  createdByUid: 48,
  nrMapIds: 52,
  mapIds: 56,
  name: 64,
  btfId: 128,
  funcInfoRecSize: 132,
  funcInfo: 136,
  nrFuncInfo: 144,
  runTimeNs: 192,
  runCnt: 200,
  recursionMisses: 208,
  verifiedInsns: 216,
  attachBtfObjId: 220,
  attachBtfId: 224,
} as const

export const MAP_INFO_SIZE = 88
export const MAP_INFO = {
  type: 0,
  id: 4,
  keySize: 8,
  valueSize: 12,
  maxEntries: 16,
  mapFlags: 20,
  name: 24,
  btfId: 64,
  mapExtra: 80,
} as const

// Passed larger than the 6.1 struct (48) so newer kernels can fill the perf_event variants.
export const LINK_INFO_SIZE = 128
export const LINK_INFO = {
  type: 0,
  id: 4,
  progId: 8,
  rawTpName: 16,
  rawTpNameLen: 24,
  tracingAttachType: 16,
  tracingTargetObjId: 20,
  tracingTargetBtfId: 24,
  cgroupId: 16,
  cgroupAttachType: 24,
  netnsIno: 16,
  netnsAttachType: 20,
  xdpIfindex: 16,
  // perf_event (kernel 6.6+): type, then a union at 24
  perfEventType: 16,
  perfName: 24,
  perfNameLen: 32,
  perfOffset: 36,
  perfKprobeAddr: 40,
  perfEventConfig: 24,
  perfEventConfigType: 32,
} as const

export const PERF_ATTR_SIZE = 128
export const PERF_ATTR = {
  type: 0,
  size: 4,
  config: 8,
  samplePeriod: 16,
  sampleType: 24,
  readFormat: 32,
  flags: 40,
  wakeupEvents: 48,
} as const

export const PERF_MMAP_PAGE = { dataHead: 1024, dataTail: 1032, dataOffset: 1040, dataSize: 1048 }

export const PROG_TYPES: Record<number, string> = {
  0: 'unspec',
  1: 'socket_filter',
  2: 'kprobe',
  3: 'sched_cls',
  4: 'sched_act',
  5: 'tracepoint',
  6: 'xdp',
  7: 'perf_event',
  8: 'cgroup_skb',
  9: 'cgroup_sock',
  10: 'lwt_in',
  11: 'lwt_out',
  12: 'lwt_xmit',
  13: 'sock_ops',
  14: 'sk_skb',
  15: 'cgroup_device',
  16: 'sk_msg',
  17: 'raw_tracepoint',
  18: 'cgroup_sock_addr',
  19: 'lwt_seg6local',
  20: 'lirc_mode2',
  21: 'sk_reuseport',
  22: 'flow_dissector',
  23: 'cgroup_sysctl',
  24: 'raw_tracepoint_writable',
  25: 'cgroup_sockopt',
  26: 'tracing',
  27: 'struct_ops',
  28: 'ext',
  29: 'lsm',
  30: 'sk_lookup',
  31: 'syscall',
  32: 'netfilter',
}

export const MAP_TYPES: Record<number, string> = {
  0: 'unspec',
  1: 'hash',
  2: 'array',
  3: 'prog_array',
  4: 'perf_event_array',
  5: 'percpu_hash',
  6: 'percpu_array',
  7: 'stack_trace',
  8: 'cgroup_array',
  9: 'lru_hash',
  10: 'lru_percpu_hash',
  11: 'lpm_trie',
  12: 'array_of_maps',
  13: 'hash_of_maps',
  14: 'devmap',
  15: 'sockmap',
  16: 'cpumap',
  17: 'xskmap',
  18: 'sockhash',
  19: 'cgroup_storage',
  20: 'reuseport_sockarray',
  21: 'percpu_cgroup_storage',
  22: 'queue',
  23: 'stack',
  24: 'sk_storage',
  25: 'devmap_hash',
  26: 'struct_ops',
  27: 'ringbuf',
  28: 'inode_storage',
  29: 'task_storage',
  30: 'bloom_filter',
  31: 'user_ringbuf',
  32: 'cgrp_storage',
  33: 'arena',
}

export const LINK_TYPES: Record<number, string> = {
  0: 'unspec',
  1: 'raw_tracepoint',
  2: 'tracing',
  3: 'cgroup',
  4: 'iter',
  5: 'netns',
  6: 'xdp',
  7: 'perf_event',
  8: 'kprobe_multi',
  9: 'struct_ops',
  10: 'netfilter',
  11: 'tcx',
  12: 'uprobe_multi',
  13: 'netkit',
  14: 'sockmap',
}

export const ATTACH_TYPES: Record<number, string> = {
  0: 'cgroup_inet_ingress',
  1: 'cgroup_inet_egress',
  2: 'cgroup_inet_sock_create',
  3: 'cgroup_sock_ops',
  6: 'cgroup_device',
  8: 'cgroup_inet4_bind',
  9: 'cgroup_inet6_bind',
  10: 'cgroup_inet4_connect',
  11: 'cgroup_inet6_connect',
  18: 'cgroup_sysctl',
  23: 'raw_tp',
  24: 'fentry',
  25: 'fexit',
  26: 'fmod_ret',
  27: 'lsm',
  28: 'iter',
  37: 'xdp',
  41: 'perf_event',
  42: 'kprobe_multi',
  43: 'lsm_cgroup',
}

export const PERF_EVENT_LINK_TYPES: Record<number, string> = {
  1: 'uprobe',
  2: 'uretprobe',
  3: 'kprobe',
  4: 'kretprobe',
  5: 'tracepoint',
  6: 'perf_event',
}

export const TASK_FD_TYPES: Record<number, string> = {
  0: 'raw_tracepoint',
  1: 'tracepoint',
  2: 'kprobe',
  3: 'kretprobe',
  4: 'uprobe',
  5: 'uretprobe',
}

const decoder = new TextDecoder()

export function cString(buf: Uint8Array, offset: number, max: number): string {
  const bytes = buf.subarray(offset, offset + max)
  const end = bytes.indexOf(0)
  return decoder.decode(end < 0 ? bytes : bytes.subarray(0, end))
}

export interface MapInfo {
  id: number
  type: number
  typeName: string
  name: string
  keySize: number
  valueSize: number
  maxEntries: number
  flags: number
  btfId: number
}

export function decodeMapInfo(buf: Uint8Array): MapInfo {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const type = dv.getUint32(MAP_INFO.type, true)
  return {
    id: dv.getUint32(MAP_INFO.id, true),
    type,
    typeName: MAP_TYPES[type] ?? `type ${type}`,
    name: cString(buf, MAP_INFO.name, 16),
    keySize: dv.getUint32(MAP_INFO.keySize, true),
    valueSize: dv.getUint32(MAP_INFO.valueSize, true),
    maxEntries: dv.getUint32(MAP_INFO.maxEntries, true),
    flags: dv.getUint32(MAP_INFO.mapFlags, true),
    btfId: dv.getUint32(MAP_INFO.btfId, true),
  }
}
