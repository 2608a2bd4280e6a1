// Tool profiles and signature matching. The names below are the kernel's 15-character forms
// listed in ../shared/ESST.md (section 2 and 3 of each tool); execsnoop's are libbpf-tools'
// tracepoint__syscalls__sys_enter_execve with its events/execs maps, bpftrace's are its
// probe-named programs and AT_ maps, and hookmeter's own start with hm_ (bpf/hm_probe.bpf.c).
import { describe, expect, test } from 'bun:test'

import {
  matchSignature,
  PROFILES,
  scoreSignatures,
  SIGNATURES,
  WEAK_NAMES,
  type SignatureInput,
} from '../agent/tools/profiles.ts'
import { KNOWN_TOOLS, type KnownTool } from '../agent/tools/types.ts'

const REAL: Record<KnownTool, { programs: string[]; maps: string[] }> = {
  tetragon: {
    programs: [
      'event_execve',
      'execve_rate',
      'execve_send',
      'tg_kp_bprm_comm',
      'event_wake_up_n',
      'event_exit_acct',
      'event_exit_disa',
      'execve_map_upda',
      'generic_kprobe_',
      'generic_retkpro',
      'generic_lsm_eve',
      'generic_lsm_out',
      'tg_cgroup_rmdir',
      'tg_cgtracker_cg',
    ],
    maps: [
      'tg_rb_events',
      'tcpmon_map',
      'execve_calls',
      'kprobe_calls',
      'lsm_calls',
      'execve_map',
      'tg_execve_joine',
      'execve_map_stat',
      'tg_conf_map',
      'tg_stats_map',
      'execve_msg_heap',
    ],
  },
  kubearmor: {
    programs: [
      'kprobe__execve',
      'kretprobe__exec',
      'kprobe__execvea',
      'kprobe__securit',
      'sched_process_f',
      'kprobe__do_exit',
      'enforce_proc',
      'enforce_file',
      'enforce_file_pe',
      'enforce_net_cre',
      'enforce_net_con',
      'enforce_net_acc',
      'enforce_cap',
      'enforce_dns',
      'exec_preset_bpr',
      'fileless_preset',
      'env_preset_enfo',
      'enforce_mmap_fi',
      'ima_bprm_check_',
    ],
    maps: [
      'sys_events',
      'kubearmor_event',
      'kubearmor_conta',
      'kubearmor_exec_',
      'proc_file_acces',
      'events',
      'bufs',
      'bufs_offset',
      'pid_ns_map',
      'args_map',
      'file_map',
    ],
  },
  falco: {
    programs: [
      'sys_exit',
      'sys_enter',
      'sched_p_exec',
      't1_sched_p_exec',
      't2_sched_p_exec',
      'sched_proc_exit',
      'sched_p_fork',
      't1_sched_p_fork',
      't2_sched_p_fork',
      'execve_x',
      't1_execve_x',
      't2_execve_x',
      't3_execve_x',
      'openat_e',
      'open_e',
      'openat2_e',
      'creat_e',
      'connect_e',
      'sched_switch',
      'pf_user',
      'pf_kernel',
      'signal_deliver',
      'dump_task',
      'dump_task_file',
    ],
    maps: [
      'ringbuf_maps',
      'syscall_exit_ta',
      'syscall_exit_ex',
      'extra_sched_pro',
      'custom_sys_exit',
      'counter_maps',
      'auxiliary_maps',
    ],
  },
  tracee: {
    programs: [
      'tracepoint__sch',
      'sched_process_e',
      'trace_load_elf_',
      'sched_process_f',
      'cgroup_mkdir_si',
      'cgroup_rmdir_si',
      'tracepoint__raw',
      'syscall__execve',
      'trace_sys_enter',
      'trace_sys_exit',
      'trace_security_',
      'trace_execute_f',
      'sys_enter_init',
      'sys_enter_submi',
      'sys_exit_init',
      'sys_exit_submit',
    ],
    maps: [
      'events',
      'signals',
      'logs',
      'file_writes',
      'prog_array',
      'prog_array_tp',
      'sys_enter_tails',
      'sys_exit_tails',
      'sys_enter_init_',
      'sys_exit_init_t',
      'sys_enter_submi',
      'sys_exit_submit',
      'generic_sys_ent',
      'generic_sys_exi',
    ],
  },
}

// what runs on an exec of /usr/bin/ls without a policy (ESST.md summary table)
const EXEC_PATH: Record<KnownTool, { programs: string[]; maps: string[] }> = {
  tetragon: {
    programs: [
      'event_execve',
      'execve_rate',
      'execve_send',
      'tg_kp_bprm_comm',
      'event_wake_up_n',
      'event_exit_acct',
    ],
    maps: ['tg_rb_events', 'execve_calls', 'execve_map'],
  },
  kubearmor: {
    programs: [
      'kprobe__execve',
      'kretprobe__exec',
      'kprobe__securit',
      'enforce_proc',
      'exec_preset_bpr',
      'fileless_preset',
      'sched_process_f',
      'kprobe__do_exit',
    ],
    maps: ['sys_events', 'kubearmor_event', 'events'],
  },
  falco: {
    programs: ['sched_p_exec', 't1_sched_p_exec', 't2_sched_p_exec', 'sys_exit', 'execve_x'],
    maps: ['ringbuf_maps', 'syscall_exit_ta', 'extra_sched_pro'],
  },
  tracee: {
    programs: ['tracepoint__sch', 'sched_process_e', 'trace_load_elf_'],
    maps: ['events', 'signals', 'prog_array', 'prog_array_tp', 'sys_enter_tails'],
  },
}

const OWNER: Record<KnownTool, { comm: string; exe: string; image: string }> = {
  tetragon: { comm: 'tetragon', exe: '/usr/bin/tetragon', image: 'quay.io/cilium/tetragon:v1.7.0' },
  kubearmor: {
    comm: 'kubearmor',
    exe: '/KubeArmor/kubearmor',
    image: 'docker.io/kubearmor/kubearmor:stable',
  },
  falco: { comm: 'falco', exe: '/usr/bin/falco', image: 'docker.io/falcosecurity/falco:0.44.1' },
  tracee: { comm: 'tracee', exe: '/tracee/tracee', image: 'docker.io/aquasec/tracee:0.24.1' },
}

const EXECSNOOP = {
  programNames: ['tracepoint__sys', 'tracepoint__sys'],
  mapNames: ['events', 'execs', 'execsnoo.rodata'],
}
const BPFTRACE = {
  programNames: ['tracepoint_sysc', 'kprobe_do_nanos'],
  mapNames: ['AT_count', 'ringbuf', 'event_loss_coun'],
}
const HOOKMETER = {
  programNames: ['hm_sys_enter_ex', 'hm_feat_raw_tp', 'hm_feat_tp'],
  mapNames: ['hm_rb', 'hm_perf', 'hm_spawners', 'hm_children'],
}

function input(partial: Partial<SignatureInput>): SignatureInput {
  return { programNames: [], mapNames: [], pins: [], ...partial }
}

function patterns(tool: KnownTool, strength: 'strong' | 'weak'): RegExp[] {
  const set = strength === 'strong' ? SIGNATURES[tool] : WEAK_NAMES[tool]
  return [...set.programNames, ...set.mapNames]
}

const matches = (res: RegExp[], name: string): boolean => res.some((re) => re.test(name))

describe('profiles', () => {
  test('there is one profile per known tool, under its own name', () => {
    expect(Object.keys(PROFILES).sort()).toEqual([...KNOWN_TOOLS].sort())
    for (const tool of KNOWN_TOOLS) {
      expect(PROFILES[tool].name).toBe(tool)
      expect(PROFILES[tool].signature).toBe(SIGNATURES[tool])
    }
  })

  test("policy kinds carry the api versions and scopes of the tools' crds", () => {
    expect(PROFILES.tetragon.policyKinds).toEqual([
      { apiVersion: 'cilium.io/v1alpha1', kind: 'TracingPolicy', scope: 'cluster' },
      { apiVersion: 'cilium.io/v1alpha1', kind: 'TracingPolicyNamespaced', scope: 'namespaced' },
    ])
    expect(PROFILES.kubearmor.policyKinds.map((k) => [k.apiVersion, k.kind, k.scope])).toEqual([
      ['security.kubearmor.com/v1', 'KubeArmorPolicy', 'namespaced'],
      ['security.kubearmor.com/v1', 'KubeArmorClusterPolicy', 'cluster'],
      ['security.kubearmor.com/v1', 'KubeArmorHostPolicy', 'host'],
    ])
    expect(PROFILES.tracee.policyKinds).toEqual([
      { apiVersion: 'tracee.aquasec.com/v1beta1', kind: 'Policy', scope: 'cluster' },
    ])
    expect(PROFILES.falco.policyKinds).toEqual([
      { apiVersion: '', kind: 'rules file', scope: 'file' },
    ])
  })

  test('delivery is the default mechanism of each tool', () => {
    expect(PROFILES.tetragon.delivery).toEqual(['ringbuf'])
    expect(PROFILES.kubearmor.delivery).toEqual(['perf', 'ringbuf'])
    expect(PROFILES.falco.delivery).toEqual(['ringbuf'])
    expect(PROFILES.tracee.delivery).toEqual(['perf'])
  })

  test('every profile says how a policy applies, where events go and on which clock', () => {
    for (const tool of KNOWN_TOOLS) {
      const p = PROFILES[tool]
      for (const text of [p.applyMechanism, p.eventOutput, p.timestampOrigin, p.displayName]) {
        expect(text.trim().length).toBeGreaterThan(0)
      }
    }
    expect(PROFILES.kubearmor.timestampOrigin).toContain('User-space wall clock')
    expect(PROFILES.falco.timestampOrigin).toContain('bpf_ktime_get_boot_ns')
    expect(PROFILES.tracee.applyMechanism).toContain('restarts')
  })
})

describe('signature patterns', () => {
  test('every test name is a kernel name of at most 15 characters', () => {
    const all = KNOWN_TOOLS.flatMap((t) => [...REAL[t].programs, ...REAL[t].maps])
    expect(all.filter((n) => n.length > 15)).toEqual([])
  })

  test('every name of each tool matches one of its own patterns', () => {
    for (const tool of KNOWN_TOOLS) {
      const own = [...patterns(tool, 'strong'), ...patterns(tool, 'weak')]
      const missed = [...REAL[tool].programs, ...REAL[tool].maps].filter((n) => !matches(own, n))
      expect({ tool, missed }).toEqual({ tool, missed: [] })
    }
  })

  test('no distinctive pattern of one tool matches a name of another tool', () => {
    for (const tool of KNOWN_TOOLS) {
      for (const other of KNOWN_TOOLS.filter((t) => t !== tool)) {
        const strong = patterns(other, 'strong')
        const hits = [...REAL[tool].programs, ...REAL[tool].maps].filter((n) => matches(strong, n))
        expect({ tool, other, hits }).toEqual({ tool, other, hits: [] })
      }
    }
  })

  test('program and map patterns are anchored at both ends', () => {
    for (const tool of KNOWN_TOOLS) {
      for (const re of [...patterns(tool, 'strong'), ...patterns(tool, 'weak')]) {
        expect(re.source.startsWith('^') && re.source.endsWith('$')).toBe(true)
      }
    }
    expect(matches(patterns('falco', 'weak'), 'sys_exit')).toBe(true)
    expect(
      matches([...patterns('falco', 'strong'), ...patterns('falco', 'weak')], 'sys_exit_x')
    ).toBe(false)
  })

  test('hookmeter names never match any tool, even when they embed a tool name', () => {
    const embedded = KNOWN_TOOLS.flatMap((t) => [...REAL[t].programs, ...REAL[t].maps]).map((n) =>
      `hm_${n}`.slice(0, 15)
    )
    for (const name of [...HOOKMETER.programNames, ...HOOKMETER.mapNames, ...embedded]) {
      for (const tool of KNOWN_TOOLS) {
        const all = [...patterns(tool, 'strong'), ...patterns(tool, 'weak')]
        expect({ name, tool, hit: matches(all, name) }).toEqual({ name, tool, hit: false })
      }
    }
  })

  test("execsnoop's tracepoint__sys is not tracee's tracepoint__sch", () => {
    const tracee = [...patterns('tracee', 'strong'), ...patterns('tracee', 'weak')]
    expect(matches(tracee, 'tracepoint__sch')).toBe(true)
    expect(matches(tracee, 'tracepoint__sys')).toBe(false)
    expect(scoreSignatures(input({ programNames: ['tracepoint__sys'] }))).toEqual([])
  })

  test("image patterns match tags and digests of the tools' images only", () => {
    const images: [string, KnownTool | null][] = [
      ['quay.io/cilium/tetragon:v1.7.0', 'tetragon'],
      ['quay.io/cilium/tetragon@sha256:8e86f744bfea', 'tetragon'],
      ['quay.io/cilium/hubble-export-stdout:v1.1.1', 'tetragon'],
      ['quay.io/cilium/tetragon-ci:latest', null],
      ['kubearmor/kubearmor', 'kubearmor'],
      ['docker.io/kubearmor/kubearmor-init:stable', 'kubearmor'],
      ['example.com/notkubearmor/kubearmor:1', null],
      ['docker.io/falcosecurity/falco:0.44.1', 'falco'],
      ['docker.io/falcosecurity/falcoctl:0.13.0', 'falco'],
      ['docker.io/library/falcon:1', null],
      ['docker.io/aquasec/tracee:0.24.1', 'tracee'],
      ['docker.io/aquasec/trivy:0.50', null],
    ]
    for (const [image, tool] of images) {
      expect({ image, tool: matchSignature(input({ image })).tool }).toEqual({
        image,
        tool: tool ?? 'other',
      })
    }
  })
})

describe('matchSignature', () => {
  test("each tool's exec-path programs alone name the tool by program name", () => {
    for (const tool of KNOWN_TOOLS) {
      const m = matchSignature(input({ programNames: EXEC_PATH[tool].programs }))
      expect({ tool: m.tool, by: m.by }).toEqual({ tool, by: 'program-name' })
    }
  })

  test("each tool's delivery and tail-call maps alone name the tool by map name", () => {
    for (const tool of KNOWN_TOOLS) {
      const m = matchSignature(input({ mapNames: EXEC_PATH[tool].maps }))
      expect({ tool: m.tool, by: m.by }).toEqual({ tool, by: 'map-name' })
    }
  })

  test("the owner's comm, exe or image names the tool before any name does", () => {
    for (const tool of KNOWN_TOOLS) {
      const { comm, exe, image } = OWNER[tool]
      for (const owner of [{ comm }, { exe }, { image }]) {
        const m = matchSignature(input({ ...owner, programNames: EXEC_PATH.tetragon.programs }))
        expect({ owner, tool: m.tool, by: m.by }).toEqual({ owner, tool, by: 'owner' })
      }
    }
  })

  test('sidecars, the systemd-mode path and a replaced binary count as the owner', () => {
    expect(matchSignature(input({ comm: 'hubble-export-s' })).tool).toBe('tetragon')
    expect(matchSignature(input({ exe: '/usr/bin/hubble-export-stdout' })).tool).toBe('tetragon')
    expect(matchSignature(input({ exe: '/opt/kubearmor/kubearmor' })).tool).toBe('kubearmor')
    expect(matchSignature(input({ exe: '/usr/bin/tetragon (deleted)' })).tool).toBe('tetragon')
    expect(matchSignature(input({ comm: 'tracee-operator' })).tool).toBe('tracee')
  })

  test('a pin path decides before program names when no owner is known', () => {
    const m = matchSignature(
      input({
        pins: ['/sys/fs/bpf/tetragon/__base__/event_execve/prog'],
        programNames: ['sched_p_exec'],
      })
    )
    expect({ tool: m.tool, by: m.by }).toEqual({ tool: 'tetragon', by: 'pin-path' })
    expect(matchSignature(input({ pins: ['/tmp/hm-bpffs-1/tetragon/x/prog'] })).tool).toBe(
      'tetragon'
    )
    expect(matchSignature(input({ pins: ['/sys/fs/bpf/kubearmor_events'] })).by).toBe('pin-path')
    expect(matchSignature(input({ pins: ['/sys/fs/bpf/tetragonish/prog'] })).tool).toBe('other')
  })

  test('execsnoop comes out as other, detailed by its comm or else its program name', () => {
    expect(matchSignature(input({ ...EXECSNOOP, comm: 'execsnoop' }))).toEqual({
      tool: 'other',
      toolDetail: 'execsnoop',
      by: 'owner',
      score: 0,
    })
    expect(matchSignature(input(EXECSNOOP))).toEqual({
      tool: 'other',
      toolDetail: 'tracepoint__sys',
      by: 'none',
      score: 0,
    })
  })

  test('bcc-style names shared with tracee do not make a tracee', () => {
    // BCC exitsnoop: TRACEPOINT_PROBE(sched, sched_process_exit) and BPF_PERF_OUTPUT(events)
    const exitsnoop = input({ programNames: ['tracepoint__sch'], mapNames: ['events'] })
    expect(matchSignature(exitsnoop).tool).toBe('other')
    // BCC execsnoop: syscall__execve and do_ret_sys_execve
    const bccExecsnoop = input({
      programNames: ['syscall__execve', 'do_ret_sys_exec'],
      mapNames: ['events'],
      comm: 'execsnoop',
    })
    expect(matchSignature(bccExecsnoop)).toMatchObject({ tool: 'other', toolDetail: 'execsnoop' })
  })

  test('bpftrace comes out as other, detailed by its comm', () => {
    expect(matchSignature(input({ ...BPFTRACE, comm: 'bpftrace' }))).toEqual({
      tool: 'other',
      toolDetail: 'bpftrace',
      by: 'owner',
      score: 0,
    })
    expect(matchSignature(input(BPFTRACE)).toolDetail).toBe('tracepoint_sysc')
  })

  test("hookmeter's own programs and maps come out as other", () => {
    expect(matchSignature(input({ ...HOOKMETER, comm: 'hookmeter' }))).toMatchObject({
      tool: 'other',
      toolDetail: 'hookmeter',
    })
    expect(matchSignature(input(HOOKMETER))).toMatchObject({
      tool: 'other',
      toolDetail: 'hm_sys_enter_ex',
    })
  })

  test('a single generic map name is not enough, nor are generic names together', () => {
    expect(matchSignature(input({ mapNames: ['events'] }))).toEqual({
      tool: 'other',
      toolDetail: 'events',
      by: 'none',
      score: 0,
    })
    expect(matchSignature(input({ mapNames: ['events', 'signals', 'logs'] })).tool).toBe('other')
    expect(matchSignature(input({ programNames: ['sys_exit'] })).tool).toBe('other')
    expect(matchSignature(input({ mapNames: ['events', 'prog_array_tp'] }))).toMatchObject({
      tool: 'tracee',
      by: 'map-name',
    })
  })

  test("falco's sys_exit counts only as the exact name and only with falco evidence", () => {
    const m = matchSignature(input({ programNames: ['sys_exit'], mapNames: ['syscall_exit_ta'] }))
    expect({ tool: m.tool, by: m.by }).toEqual({ tool: 'falco', by: 'map-name' })
    expect(matchSignature(input({ programNames: ['sys_exit_submit'] })).tool).toBe('tracee')
    expect(matchSignature(input({ programNames: ['sys_exit_x', 'sched_p_exec'] })).score).toBe(3)
    expect(matchSignature(input({ programNames: ['sys_exit', 'sched_p_exec'] })).score).toBe(4)
  })

  test('weak names add to the score of the tool that has distinctive evidence only', () => {
    const alone = scoreSignatures(input({ programNames: ['trace_load_elf_'] }))
    const withMaps = scoreSignatures(
      input({ programNames: ['trace_load_elf_'], mapNames: ['events', 'signals'] })
    )
    expect(alone.map((s) => [s.tool, s.score])).toEqual([['tracee', 3]])
    // `events` is also a weak KubeArmor name, but KubeArmor has nothing distinctive here
    expect(withMaps.map((s) => [s.tool, s.score])).toEqual([['tracee', 5]])
    expect(withMaps[0]?.evidence.filter((e) => e.weak).map((e) => e.value)).toEqual([
      'events',
      'signals',
    ])
  })

  test('the score grows with the evidence and the strongest tool wins a mixed set', () => {
    const names = matchSignature(input({ programNames: EXEC_PATH.falco.programs }))
    const withOwner = matchSignature(
      input({ programNames: EXEC_PATH.falco.programs, comm: 'falco' })
    )
    expect(withOwner.score).toBeGreaterThan(names.score)

    const mixed = matchSignature(
      input({ programNames: [...EXEC_PATH.kubearmor.programs, 'event_execve'] })
    )
    expect(mixed.tool).toBe('kubearmor')
  })

  test('nothing at all is other with no detail', () => {
    expect(matchSignature(input({}))).toEqual({ tool: 'other', by: 'none', score: 0 })
  })
})
