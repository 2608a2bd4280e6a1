/**
 * What this kernel lets hookmeter do, probed by loading and attaching a tiny program of each kind:
 * a load-only probe says kprobes work on kernels without kprobe events, and calls tracing programs
 * unavailable where tp_btf works.
 */
import { existsSync, readFileSync } from 'node:fs'
import { release, arch } from 'node:os'

import { LibbpfError } from '../libbpf-bindings/errors.ts'
import { bpf, libbpfVersion } from '../libbpf-bindings/libbpf.ts'
import { BpfObject } from '../libbpf-bindings/object.ts'
import { readStatsSysctl, StatsSession } from '../libbpf-bindings/stats.ts'
import { ensureTracefs } from '../libbpf-bindings/tracefs.ts'
import { FEATURES_OBJECT, objectFile } from './assets.ts'

export type FeatureStatus = 'yes' | 'no' | 'refused'

export interface Feature {
  name: string
  status: FeatureStatus
  detail: string
}

export interface KernelReport {
  release: string
  arch: string
  libbpf: string
  btf: boolean
  statsSysctl: number
  features: Feature[]
}

export const KERNEL_BTF = '/sys/kernel/btf/vmlinux'

const PROGRAM_FEATURES: Array<{ name: string; program: string; needsTracefs?: boolean }> = [
  { name: 'tracepoint', program: 'hm_feat_tp', needsTracefs: true },
  { name: 'raw_tracepoint', program: 'hm_feat_raw_tp' },
  { name: 'tp_btf', program: 'hm_feat_tp_btf' },
  { name: 'ringbuf', program: 'hm_feat_ringbuf', needsTracefs: true },
  { name: 'kprobe', program: 'hm_feat_kprobe' },
  { name: 'fentry', program: 'hm_feat_fentry' },
  { name: 'lsm', program: 'hm_feat_lsm' },
]

function probeProgram(
  path: string,
  program: string,
  btfCustomPath?: string
): Feature['status'] | Error {
  using obj = BpfObject.open(path, { objectName: 'hm_features', btfCustomPath })
  for (const p of obj.programs()) p.autoload = p.name === program
  try {
    obj.load()
  } catch (err) {
    if (
      err instanceof LibbpfError &&
      (err.errno === 1 || err.errno === 13 || err.errno === 524 || err.errno === 95)
    ) {
      return new RefusedError(err)
    }
    return err as Error
  }
  try {
    using link = obj.program(program).attach()
    void link
    return 'yes'
  } catch (err) {
    return err as Error
  }
}

class RefusedError extends Error {
  constructor(override readonly cause: LibbpfError) {
    super(cause.message)
  }
}

function describe(
  name: string,
  result: Feature['status'] | Error,
  tracefs: string | null
): Feature {
  if (result === 'yes') return { name, status: 'yes', detail: 'loaded and attached' }
  if (result instanceof RefusedError) {
    return {
      name,
      status: 'refused',
      detail: `the kernel refused the load: ${result.cause.errnoName}`,
    }
  }
  const msg = result instanceof Error ? result.message : String(result)
  if (name === 'kprobe' && !existsSync('/sys/kernel/tracing/kprobe_events')) {
    return {
      name,
      status: 'no',
      detail: 'kernel without kprobe events (no kprobe_events in tracefs)',
    }
  }
  if (tracefs && (name === 'tracepoint' || name === 'ringbuf')) {
    return { name, status: 'no', detail: tracefs }
  }
  return { name, status: 'no', detail: msg }
}

function lsmDetail(f: Feature): Feature {
  if (f.status === 'yes') return f
  try {
    const lsms = readFileSync('/sys/kernel/security/lsm', 'utf8').trim()
    if (!lsms.split(',').includes('bpf'))
      return { ...f, detail: `${f.detail}; bpf is not in the active LSMs (${lsms})` }
  } catch {
    // securityfs not mounted: keep the load result alone
  }
  return f
}

export async function probeKernel(
  opts: { btfPath?: string; objectPath?: string } = {}
): Promise<KernelReport> {
  const btfPath = opts.btfPath ?? KERNEL_BTF
  const btf =
    existsSync(btfPath) && (btfPath !== KERNEL_BTF || bpf.btf__load_vmlinux_btf() !== null)
  const features: Feature[] = [
    btf
      ? { name: 'btf', status: 'yes', detail: btfPath }
      : {
          name: 'btf',
          status: 'no',
          detail: `no kernel BTF at ${btfPath} (CONFIG_DEBUG_INFO_BTF)`,
        },
  ]
  const tracefs = ensureTracefs()

  using file = await objectFile(opts.objectPath ?? FEATURES_OBJECT)
  for (const f of PROGRAM_FEATURES) {
    if (!btf && f.name !== 'raw_tracepoint') {
      features.push({ name: f.name, status: 'no', detail: 'needs kernel BTF (CO-RE)' })
      continue
    }
    const result = probeProgram(file.path, f.program, opts.btfPath)
    const feature = describe(f.name, result, f.needsTracefs ? tracefs : null)
    features.push(f.name === 'lsm' ? lsmDetail(feature) : feature)
  }

  features.push(probeStats())
  return {
    release: release(),
    arch: arch(),
    libbpf: libbpfVersion(),
    btf,
    statsSysctl: readStatsSysctl(),
    features,
  }
}

function probeStats(): Feature {
  try {
    using s = StatsSession.open()
    const how = s.mode === 'fd' ? 'BPF_ENABLE_STATS' : `kernel.bpf_stats_enabled (${s.mode})`
    return { name: 'stats', status: 'yes', detail: how }
  } catch (err) {
    return { name: 'stats', status: 'no', detail: (err as Error).message }
  }
}
