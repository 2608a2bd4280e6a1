/**
 * How each known tool is recognised from what the kernel and procfs show: the owner's comm and
 * exe, its container image, bpffs pin paths, and program and map names as the kernel keeps them
 * (15 characters, BPF_OBJ_NAME_LEN 16 with the NUL). Facts are from ../shared/ESST.md (sections 1
 * to 3 of each tool) unless a comment names another source.
 *
 * Names come in two strengths. A *distinctive* name is one only that tool is known to use; it can
 * attribute on its own. A *weak* name is one the tool uses but other software plausibly does too
 * (BCC's `TRACEPOINT_PROBE(sched, …)` macro yields `tracepoint__sch` exactly like Tracee, a BCC
 * `BPF_PERF_OUTPUT(events)` yields `events`); a weak name only adds to a tool that already has
 * distinctive evidence. Every pattern is anchored, so hookmeter's own `hm_…` names never match.
 *
 * @module
 */
import {
  KNOWN_TOOLS,
  type Attribution,
  type KnownTool,
  type Tool,
  type ToolSignature,
} from './types.ts'

/** Names of a tool that count only next to distinctive evidence of the same tool. */
export interface WeakNames {
  programNames: RegExp[]
  mapNames: RegExp[]
}

// an image reference ends the repository part at a tag, a digest or the end
const imageRe = (repo: string): RegExp => new RegExp(`(?:^|/)${repo}(?=[:@]|$)`)

export const SIGNATURES: Record<KnownTool, ToolSignature> = {
  tetragon: {
    comms: ['tetragon', 'tetra', 'hubble-export-s'],
    exeNames: ['tetragon', 'tetra', 'hubble-export-stdout'],
    images: [
      imageRe('cilium/tetragon'),
      imageRe('cilium/tetragon-operator'),
      imageRe('cilium/hubble-export-stdout'),
    ],
    programNames: [
      /^event_execve$/,
      /^execve_rate$/,
      /^execve_send$/,
      /^tg_kp_bprm_comm$/,
      /^event_wake_up_n$/,
      /^event_exit_acct$/,
      /^event_exit_disa$/,
      /^execve_map_upda$/,
      /^tg_cgroup_rmdir$/,
      /^tg_cgtracker_cg$/,
      // every generic_kprobe_* program collides into this one kernel name
      /^generic_kprobe_$/,
      /^generic_retkpro$/,
      /^generic_lsm_eve$/,
      /^generic_lsm_out$/,
    ],
    mapNames: [
      /^tg_rb_events$/,
      /^tcpmon_map$/,
      /^execve_calls$/,
      /^kprobe_calls$/,
      /^lsm_calls$/,
      /^tg_execve_joine$/,
      /^execve_map_stat$/,
      /^tg_conf_map$/,
      /^tg_stats_map$/,
      /^execve_msg_heap$/,
    ],
    // --bpf-dir defaults to "tetragon" under the bpffs mount (/sys/fs/bpf/tetragon/__base__/…)
    pinPaths: [/\/tetragon(?:\/|$)/],
  },
  kubearmor: {
    comms: ['kubearmor'],
    exeNames: ['kubearmor'],
    images: [
      imageRe('kubearmor/kubearmor'),
      imageRe('kubearmor/kubearmor-init'),
      imageRe('kubearmor/kubearmor-relay-server'),
      imageRe('kubearmor/kubearmor-operator'),
      imageRe('kubearmor/kubearmor-controller'),
    ],
    programNames: [
      /^kprobe__execve$/,
      /^kprobe__execvea$/,
      // BPF-LSM enforcer programs (enforce_proc, enforce_file_pe, enforce_net_con, …)
      /^enforce_[a-z_]{3,7}$/,
      /^exec_preset_bpr$/,
      /^fileless_preset$/,
      /^env_preset_enfo$/,
      /^ima_bprm_check_$/,
    ],
    mapNames: [
      // kubearmor_events, kubearmor_containers, kubearmor_exec_pids, cut to 15
      /^kubearmor_[a-z_]{1,5}$/,
      /^sys_events$/,
      /^proc_file_acces$/,
    ],
    // pinned by name directly under the bpffs mount (KubeArmor/BPF/shared.h)
    pinPaths: [/\/kubearmor_[a-z_]+$/],
  },
  falco: {
    comms: ['falco', 'falcoctl'],
    exeNames: ['falco', 'falcoctl'],
    images: [
      imageRe('falcosecurity/falco'),
      imageRe('falcosecurity/falcoctl'),
      imageRe('falcosecurity/falco-driver-loader'),
    ],
    programNames: [
      /^sched_p_exec$/,
      /^t[12]_sched_p_exec$/,
      /^sched_p_fork$/,
      /^t[12]_sched_p_fork$/,
      /^sched_proc_exit$/,
      /^execve_x$/,
      /^t[1-3]_execve_x$/,
      // TOCTOU-mitigation enter programs (programs/attached/events/toctou_mitigation)
      /^(?:openat|open|openat2|creat|connect)_e$/,
    ],
    mapNames: [
      /^ringbuf_maps$/,
      /^syscall_exit_ta$/,
      /^syscall_exit_ex$/,
      /^syscall_enter_t$/,
      /^extra_sched_pro$/,
      /^custom_sys_exit$/,
    ],
    // libpman pins nothing that ESST.md lists
    pinPaths: [],
  },
  tracee: {
    comms: ['tracee', 'tracee-operator'],
    exeNames: ['tracee', 'tracee-operator'],
    images: [imageRe('aquasec/tracee')],
    programNames: [
      /^trace_load_elf_$/,
      /^trace_execute_f$/,
      /^trace_sys_enter$/,
      /^trace_sys_exit$/,
      /^sys_enter_init$/,
      /^sys_enter_submi$/,
      /^sys_exit_init$/,
      /^sys_exit_submit$/,
      /^cgroup_mkdir_si$/,
      /^cgroup_rmdir_si$/,
    ],
    mapNames: [
      /^prog_array_tp$/,
      /^sys_enter_tails$/,
      /^sys_exit_tails$/,
      /^sys_enter_init_$/,
      /^sys_exit_init_t$/,
      /^sys_enter_submi$/,
      /^sys_exit_submit$/,
      /^generic_sys_ent$/,
      /^generic_sys_exi$/,
      /^file_writes$/,
    ],
    // Tracee pins nothing that ESST.md lists
    pinPaths: [],
  },
}

export const WEAK_NAMES: Record<KnownTool, WeakNames> = {
  tetragon: {
    programNames: [],
    mapNames: [/^execve_map$/],
  },
  kubearmor: {
    // kprobe__<fn> / kretprobe__<fn> is BCC's auto-attach naming, so these occur in BCC scripts
    programNames: [
      /^kprobe__securit$/,
      /^kprobe__do_exit$/,
      /^kretprobe__exec$/,
      /^sched_process_f$/,
    ],
    // `events` is the ring buffer of every preset object
    mapNames: [/^events$/, /^bufs$/, /^bufs_offset$/, /^pid_ns_map$/, /^args_map$/, /^file_map$/],
  },
  falco: {
    // the raw sys_enter/sys_exit dispatchers: exact names, but names any tool could pick
    programNames: [
      /^sys_exit$/,
      /^sys_enter$/,
      /^sched_switch$/,
      /^signal_deliver$/,
      /^pf_user$/,
      /^pf_kernel$/,
      /^dump_task$/,
      /^dump_task_file$/,
    ],
    mapNames: [/^counter_maps$/, /^auxiliary_maps$/],
  },
  tracee: {
    // BCC's TRACEPOINT_PROBE(sched|raw_syscalls, …) and libbpf tools' sched_process_exec/exit
    // handlers truncate to the same names; BCC execsnoop's handler is syscall__execve
    programNames: [
      /^tracepoint__sch$/,
      /^tracepoint__raw$/,
      /^sched_process_e$/,
      /^sched_process_f$/,
      /^syscall__execve$/,
      /^trace_security_$/,
    ],
    mapNames: [/^events$/, /^signals$/, /^logs$/, /^prog_array$/],
  },
}

export interface SignatureInput {
  programNames: string[]
  mapNames: string[]
  pins: string[]
  comm?: string
  exe?: string
  image?: string
}

export type EvidenceKind = Exclude<Attribution['by'], 'none'>

export interface Evidence {
  by: EvidenceKind
  /** the name, path or reference that matched */
  value: string
  weak: boolean
  weight: number
}

export interface ToolScore {
  tool: KnownTool
  /** distinctive evidence weights, plus weak ones when there is any distinctive evidence */
  score: number
  evidence: Evidence[]
}

export interface SignatureMatch {
  tool: Tool
  toolDetail?: string
  by: Attribution['by']
  score: number
}

// an owner is the strongest evidence there is; a distinctive program name outweighs a map name
const WEIGHT: Record<EvidenceKind, number> = {
  owner: 10,
  'pin-path': 6,
  'program-name': 3,
  'map-name': 2,
}
const WEAK_WEIGHT = 1
const ORDER: EvidenceKind[] = ['owner', 'pin-path', 'program-name', 'map-name']

function exeBase(exe: string): string {
  // a replaced binary reads back from /proc/<pid>/exe with this suffix
  const path = exe.endsWith(' (deleted)') ? exe.slice(0, -' (deleted)'.length) : exe
  return path.slice(path.lastIndexOf('/') + 1)
}

function unique(values: string[]): string[] {
  return [...new Set(values.filter((v) => v !== ''))]
}

function collect(
  out: Evidence[],
  by: EvidenceKind,
  values: string[],
  strong: RegExp[],
  weak: RegExp[]
): void {
  for (const value of values) {
    if (strong.some((re) => re.test(value))) {
      out.push({ by, value, weak: false, weight: WEIGHT[by] })
    } else if (weak.some((re) => re.test(value))) {
      out.push({ by, value, weak: true, weight: WEAK_WEIGHT })
    }
  }
}

/**
 * Every known tool's evidence in `input`, highest score first. Tools without distinctive
 * evidence score 0 whatever weak names they share, and are left out.
 */
export function scoreSignatures(input: SignatureInput): ToolScore[] {
  const programs = unique(input.programNames)
  const maps = unique(input.mapNames)
  const pins = unique(input.pins)
  const scores: ToolScore[] = []

  for (const tool of KNOWN_TOOLS) {
    const sig = SIGNATURES[tool]
    const weak = WEAK_NAMES[tool]
    const evidence: Evidence[] = []

    if (input.comm !== undefined && sig.comms.includes(input.comm)) {
      evidence.push({ by: 'owner', value: input.comm, weak: false, weight: WEIGHT.owner })
    }
    if (input.exe !== undefined && sig.exeNames.includes(exeBase(input.exe))) {
      evidence.push({ by: 'owner', value: input.exe, weak: false, weight: WEIGHT.owner })
    }
    if (input.image !== undefined && sig.images.some((re) => re.test(input.image ?? ''))) {
      evidence.push({ by: 'owner', value: input.image, weak: false, weight: WEIGHT.owner })
    }
    collect(evidence, 'pin-path', pins, sig.pinPaths, [])
    collect(evidence, 'program-name', programs, sig.programNames, weak.programNames)
    collect(evidence, 'map-name', maps, sig.mapNames, weak.mapNames)

    if (!evidence.some((e) => !e.weak)) continue
    const score = evidence.reduce((sum, e) => sum + e.weight, 0)
    scores.push({ tool, score, evidence })
  }

  return scores.sort((a, b) => b.score - a.score)
}

/**
 * Which tool a program or map belongs to. The first kind of evidence that names a known tool
 * decides, in the order owner (comm, exe, image), pin path, program name, map name; weak names
 * alone never decide. Anything else is `other`, detailed by the owner's comm (or exe), else by
 * the first program name, else the first map name. `score` is the winner's total evidence weight
 * (0 for `other`).
 */
export function matchSignature(input: SignatureInput): SignatureMatch {
  const scores = scoreSignatures(input)

  for (const by of ORDER) {
    const decided = scores.find((s) => s.evidence.some((e) => e.by === by && !e.weak))
    if (decided !== undefined) return { tool: decided.tool, by, score: decided.score }
  }

  if (input.comm !== undefined && input.comm !== '') {
    return { tool: 'other', toolDetail: input.comm, by: 'owner', score: 0 }
  }
  if (input.exe !== undefined && input.exe !== '') {
    return { tool: 'other', toolDetail: exeBase(input.exe), by: 'owner', score: 0 }
  }
  const detail = input.programNames.find((n) => n !== '') ?? input.mapNames.find((n) => n !== '')
  return detail === undefined
    ? { tool: 'other', by: 'none', score: 0 }
    : { tool: 'other', toolDetail: detail, by: 'none', score: 0 }
}
