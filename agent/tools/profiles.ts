/**
 * What hookmeter knows of each eBPF security tool: how to recognise it (see signatures.ts), its
 * policy kinds, how a policy takes effect, where its exec events come out and on which clock.
 * Every statement is from ../shared/ESST.md, sections 4 to 6 of each tool, which names the
 * source files and release tags it was read from (Tetragon v1.7.0, KubeArmor v1.7.4, Falco
 * 0.44.1 with libs 0.25.4, Tracee v0.24.1 and main).
 *
 * @module
 */
import { SIGNATURES } from './signatures.ts'
import type { KnownTool, ToolProfile } from './types.ts'

export {
  matchSignature,
  scoreSignatures,
  SIGNATURES,
  WEAK_NAMES,
  type Evidence,
  type SignatureInput,
  type SignatureMatch,
  type ToolScore,
  type WeakNames,
} from './signatures.ts'

export const PROFILES: Record<KnownTool, ToolProfile> = {
  tetragon: {
    name: 'tetragon',
    displayName: 'Tetragon',
    signature: SIGNATURES.tetragon,
    policyKinds: [
      { apiVersion: 'cilium.io/v1alpha1', kind: 'TracingPolicy', scope: 'cluster' },
      { apiVersion: 'cilium.io/v1alpha1', kind: 'TracingPolicyNamespaced', scope: 'namespaced' },
    ],
    applyMechanism:
      'The agent reconciles TracingPolicy objects with controller-runtime and loads or unloads ' +
      'their programs live, without a restart; gRPC (tetra tracingpolicy add) and ' +
      '--tracing-policy / --tracing-policy-dir at start do the same outside Kubernetes.',
    eventOutput:
      'JSON lines (protojson, snake_case) to --export-filename, which Helm sets to ' +
      '/var/log/tetragon/tetragon.log and the export-stdout container tails to its stdout; ' +
      'gRPC FineGuidanceSensors.GetEvents (tetra getevents -o json). Every exec is a ' +
      'process_exec event without any policy; the Helm export deny list drops host processes.',
    timestampOrigin:
      'Kernel time taken in the sched_process_exec program (bpf_ktime_get_boot_ns where ' +
      'available, else bpf_ktime_get_ns), turned into wall clock in user space by its distance ' +
      'to CLOCK_MONOTONIC; written as the RFC 3339 `time` with nanoseconds. Off by the suspended ' +
      'time if the host ever suspended.',
    // a perf event array (tcpmon_map) instead on kernels before 5.11 or with --use-perf-ring-buffer
    delivery: ['ringbuf'],
  },
  kubearmor: {
    name: 'kubearmor',
    displayName: 'KubeArmor',
    signature: SIGNATURES.kubearmor,
    policyKinds: [
      { apiVersion: 'security.kubearmor.com/v1', kind: 'KubeArmorPolicy', scope: 'namespaced' },
      { apiVersion: 'security.kubearmor.com/v1', kind: 'KubeArmorClusterPolicy', scope: 'cluster' },
      { apiVersion: 'security.kubearmor.com/v1', kind: 'KubeArmorHostPolicy', scope: 'host' },
    ],
    applyMechanism:
      'Client-go informers in the agent apply policies live: Block and Allow rules are ' +
      'written into BPF-LSM maps, Audit rules are matched in user space on system-monitor ' +
      'events; without Kubernetes, gRPC PolicyService (karmor vm policy add).',
    eventOutput:
      'gRPC LogService on port 32767 (WatchLogs, WatchAlerts), read as JSON lines by ' +
      'karmor logs --json; optionally JSON lines to -logPath (stdout or a file, camelCase ' +
      'field names). Exec events have Operation "Process"; host processes only with host ' +
      'visibility on and, for alerts, -enableKubeArmorHostPolicy.',
    timestampOrigin:
      'User-space wall clock (time.Now() in UTC) when the log record is built, not kernel ' +
      'time: `Timestamp` in Unix seconds and `UpdatedTime` as an RFC 3339 string with ' +
      'microseconds.',
    // sys_events (perf) carries the system monitor's exec events; kubearmor_events (ring buffer)
    // carries BPF-LSM enforcer events
    delivery: ['perf', 'ringbuf'],
  },
  falco: {
    name: 'falco',
    displayName: 'Falco',
    signature: SIGNATURES.falco,
    // no CRD and so no API version: rules are YAML files (falco_rules.yaml, rules.d, Helm
    // customRules ConfigMap)
    policyKinds: [{ apiVersion: '', kind: 'rules file', scope: 'file' }],
    applyMechanism:
      'Falco restarts itself in-process when a watched config or rules file changes (inotify, ' +
      'watch_config_files) or on SIGHUP; with Helm, helm upgrade changes a checksum annotation ' +
      'and the DaemonSet pods roll.',
    eventOutput:
      'Alerts only (rule matches), to stdout and syslog by default, optionally file, http or ' +
      'program outputs; one JSON object per alert with json_output: true (off by default). A ' +
      'plain exec produces nothing without a custom rule.',
    timestampOrigin:
      'Taken in the kernel by the modern probe as boot_time + bpf_ktime_get_boot_ns(), with ' +
      'boot_time computed once in user space at open, so already epoch nanoseconds: ' +
      'output_fields["evt.time"] as an integer, `time` as ISO 8601 UTC with nanoseconds.',
    delivery: ['ringbuf'],
  },
  tracee: {
    name: 'tracee',
    displayName: 'Tracee',
    signature: SIGNATURES.tracee,
    policyKinds: [{ apiVersion: 'tracee.aquasec.com/v1beta1', kind: 'Policy', scope: 'cluster' }],
    applyMechanism:
      'Policies are read once at startup (Policy objects, else --policy files); the ' +
      'tracee-operator answers a Policy change by patching the DaemonSet pod template, so ' +
      'every Tracee pod restarts and reloads its programs.',
    eventOutput:
      'JSON lines to stdout (Helm) or to the --output destination; gRPC ' +
      'TraceeService.StreamEvents when a gRPC address is set. v0.24.1 prints trace.Event ' +
      '(eventName, args); main prints the v1beta1 Event (name, workload, data).',
    timestampOrigin:
      'Kernel time from the BPF context (bpf_ktime_get_boot_ns where available, else ' +
      'bpf_ktime_get_ns) plus a boot-time epoch offset computed once at start, so epoch ' +
      'nanoseconds: an integer `timestamp` in v0.24.1, an RFC 3339 string on main.',
    delivery: ['perf'],
  },
}
