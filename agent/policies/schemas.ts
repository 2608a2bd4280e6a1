/**
 * zod schemas for the policy kinds of the four tools, written from each tool's published CRD
 * schema or rule reference (sources named per section). Every object is strict: a field the
 * source does not define is an error, as the API server's structural-schema pruning would
 * silently drop it and the policy would not do what its author meant.
 *
 * These schemas say what the tool accepts. What hookmeter's benchmark additionally requires
 * (audit only, non-empty binary lists, an explicit selector) lives in rules.ts, so that a
 * reader can tell the tool's facts from hookmeter's choices.
 */
import { z } from 'zod'

/** One-line messages that name what was expected; the field itself is named by the issue path. */
const pattern = (re: RegExp, what: string) => z.string().regex(re, { error: `expected ${what}` })

// ---------------------------------------------------------------------------------------------
// Kubernetes object basics (k8s.io/apimachinery ObjectMeta, as much of it as a file to apply
// carries; server-set fields such as uid or resourceVersion are rejected on purpose)

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

export const objectMeta = z.strictObject({
  name: pattern(DNS_SUBDOMAIN, 'a DNS subdomain name (lowercase letters, digits, - and .)').max(
    253
  ),
  namespace: pattern(DNS_LABEL, 'a DNS label (lowercase letters, digits and -)').max(63).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
})

const labelsMap = z.record(z.string(), z.string())

// ---------------------------------------------------------------------------------------------
// KubeArmor: security.kubearmor.com/v1 KubeArmorPolicy and KubeArmorHostPolicy
// source: kubearmor/KubeArmor deployments/CRD/KubeArmorPolicy.yaml and KubeArmorHostPolicy.yaml
// (same as pkg/KubeArmorController/config/crd/bases/security.kubearmor.com_kubearmor*.yaml,
// read at commit 0163565e), getting-started/security_policy_specification.md and
// host_security_policy_specification.md. The CRD's capability and protocol patterns are not
// anchored at the start; here they are, so that `xnet_raw` is not taken for `net_raw`.

export const KUBEARMOR_API_VERSION = 'security.kubearmor.com/v1'
export const KUBEARMOR_ACTIONS = ['Allow', 'Audit', 'Block'] as const

const kaAction = z.enum(KUBEARMOR_ACTIONS)
const kaSeverity = z.int().min(1).max(10)
const kaExecPath = pattern(/^\/+.*[^/]$/, 'an absolute path that does not end in /')
const kaDir = pattern(/^\/$|^\/.*\/$/, 'an absolute directory path ending in /')
const kaProtocol = pattern(/^(icmp|ICMP|tcp|TCP|udp|UDP|raw|RAW)$/, 'one of tcp, udp, icmp, raw')
const KUBEARMOR_CAPABILITIES = [
  'chown',
  'dac_override',
  'dac_read_search',
  'fowner',
  'fsetid',
  'kill',
  'setgid',
  'setuid',
  'setpcap',
  'linux_immutable',
  'net_bind_service',
  'net_broadcast',
  'net_admin',
  'net_raw',
  'ipc_lock',
  'ipc_owner',
  'sys_module',
  'sys_rawio',
  'sys_chroot',
  'sys_ptrace',
  'sys_pacct',
  'sys_admin',
  'sys_boot',
  'sys_nice',
  'sys_resource',
  'sys_time',
  'sys_tty_config',
  'mknod',
  'lease',
  'audit_write',
  'audit_control',
  'setfcap',
  'mac_override',
  'mac_admin',
]
const kaCapability = pattern(
  new RegExp(`^(${KUBEARMOR_CAPABILITIES.join('|')})$`),
  'a Linux capability name in lowercase without CAP_ (such as net_raw)'
)
// the CRD enumerates the x86_64 syscall names; a name-shaped string is checked here instead
const kaSyscall = pattern(/^[a-z_][a-z0-9_]*$/, 'a syscall name (such as unlink)')

const kaMeta = {
  severity: kaSeverity.optional(),
  tags: z.array(z.string()).optional(),
  message: z.string().optional(),
  action: kaAction.optional(),
}
const kaFromSource = z.array(z.strictObject({ path: kaExecPath.optional() })).optional()

const kaProcess = z.strictObject({
  matchPaths: z
    .array(
      z.strictObject({
        path: kaExecPath.optional(),
        execname: pattern(/^[^/]+$/, 'an executable name without /').optional(),
        ownerOnly: z.boolean().optional(),
        fromSource: kaFromSource,
        ...kaMeta,
      })
    )
    .optional(),
  matchDirectories: z
    .array(
      z.strictObject({
        dir: kaDir,
        recursive: z.boolean().optional(),
        ownerOnly: z.boolean().optional(),
        fromSource: kaFromSource,
        ...kaMeta,
      })
    )
    .optional(),
  matchPatterns: z
    .array(z.strictObject({ pattern: z.string(), ownerOnly: z.boolean().optional(), ...kaMeta }))
    .optional(),
  ...kaMeta,
})

const kaFile = z.strictObject({
  matchPaths: z
    .array(
      z.strictObject({
        path: kaExecPath,
        readOnly: z.boolean().optional(),
        ownerOnly: z.boolean().optional(),
        fromSource: kaFromSource,
        ...kaMeta,
      })
    )
    .optional(),
  matchDirectories: z
    .array(
      z.strictObject({
        dir: kaDir,
        recursive: z.boolean().optional(),
        readOnly: z.boolean().optional(),
        ownerOnly: z.boolean().optional(),
        fromSource: kaFromSource,
        ...kaMeta,
      })
    )
    .optional(),
  matchPatterns: z
    .array(
      z.strictObject({
        pattern: z.string(),
        readOnly: z.boolean().optional(),
        ownerOnly: z.boolean().optional(),
        ...kaMeta,
      })
    )
    .optional(),
  ...kaMeta,
})

// the host CRD requires fromSource on network and capability rules; the container CRD does not
function kaNetwork(host: boolean) {
  const fromSource = host ? kaFromSource.unwrap() : kaFromSource
  return z.strictObject({
    matchProtocols: z
      .array(z.strictObject({ protocol: kaProtocol, fromSource, ...kaMeta }))
      .optional(),
    ...kaMeta,
  })
}

function kaCapabilities(host: boolean) {
  const fromSource = host ? kaFromSource.unwrap() : kaFromSource
  return z.strictObject({
    matchCapabilities: z
      .array(z.strictObject({ capability: kaCapability, fromSource, ...kaMeta }))
      .optional(),
    ...kaMeta,
  })
}

const kaSyscallSource = z
  .array(
    z.strictObject({
      path: kaExecPath.optional(),
      dir: z.string().optional(),
      recursive: z.boolean().optional(),
    })
  )
  .optional()

const kaSyscalls = z.strictObject({
  matchSyscalls: z
    .array(z.strictObject({ syscall: z.array(kaSyscall).optional(), fromSource: kaSyscallSource }))
    .optional(),
  matchPaths: z
    .array(
      z.strictObject({
        path: pattern(/(^\/+.*[^/]$)|(^\/$|^\/.*\/$)/, 'an absolute file or directory path'),
        recursive: z.boolean().optional(),
        syscall: z.array(kaSyscall).optional(),
        fromSource: kaSyscallSource,
      })
    )
    .optional(),
  severity: kaSeverity.optional(),
  tags: z.array(z.string()).optional(),
  message: z.string().optional(),
})

function kaSpecFields(host: boolean) {
  return {
    action: kaAction.optional(),
    apparmor: z.string().optional(),
    capabilities: kaCapabilities(host).optional(),
    file: kaFile.optional(),
    message: z.string().optional(),
    network: kaNetwork(host).optional(),
    process: kaProcess.optional(),
    severity: kaSeverity.optional(),
    syscalls: kaSyscalls.optional(),
    tags: z.array(z.string()).optional(),
  }
}

export const kubeArmorPolicy = z.strictObject({
  apiVersion: z.literal(KUBEARMOR_API_VERSION),
  kind: z.literal('KubeArmorPolicy'),
  metadata: objectMeta,
  spec: z.strictObject({
    ...kaSpecFields(false),
    selector: z.strictObject({ matchLabels: labelsMap.optional() }).optional(),
  }),
})

export const kubeArmorHostPolicy = z.strictObject({
  apiVersion: z.literal(KUBEARMOR_API_VERSION),
  kind: z.literal('KubeArmorHostPolicy'),
  metadata: objectMeta,
  spec: z.strictObject({
    ...kaSpecFields(true),
    nodeSelector: z.strictObject({ matchLabels: labelsMap.optional() }),
  }),
})

/**
 * Helm values for the non-operator KubeArmor chart (kubearmor/KubeArmor
 * deployments/helm/KubeArmor/values.yaml: `kubearmor.args`, the agent's command-line flags).
 * Only the key hookmeter ships is known; Helm itself would accept any other.
 */
export const kubeArmorHelmValues = z.strictObject({
  kubearmor: z.strictObject({
    args: z.array(pattern(/^-{1,2}[A-Za-z][A-Za-z0-9]*(=.*)?$/, 'a flag such as -name=value')),
  }),
})

// ---------------------------------------------------------------------------------------------
// Tetragon: cilium.io/v1alpha1 TracingPolicy and TracingPolicyNamespaced
// source: cilium/tetragon install/kubernetes/tetragon/crds-yaml/cilium.io_tracingpolicies.yaml
// (read at 02233dc4, main; controller-gen v0.21.0) and
// pkg/k8s/apis/cilium.io/v1alpha1/tracing_policy_types.go. uprobes and usdts entries are
// checked as objects only: their fields are not modelled here.

export const TETRAGON_API_VERSION = 'cilium.io/v1alpha1'

export const TETRAGON_ACTIONS = [
  'Post',
  'FollowFD',
  'UnfollowFD',
  'Sigkill',
  'CopyFD',
  'Override',
  'GetUrl',
  'DnsLookup',
  'NoPost',
  'Signal',
  'TrackSock',
  'UntrackSock',
  'NotifyEnforcer',
  'CleanupEnforcerNotification',
  'Set',
] as const

const TETRAGON_ARG_TYPES = [
  'auto',
  'int',
  'sint8',
  'int8',
  'uint8',
  'sint16',
  'int16',
  'uint16',
  'uint32',
  'sint32',
  'int32',
  'ulong',
  'uint64',
  'size_t',
  'long',
  'sint64',
  'int64',
  'char_buf',
  'char_iovec',
  'skb',
  'sock',
  'sockaddr',
  'socket',
  'sockaddr_un',
  'string',
  'fd',
  'file',
  'filename',
  'path',
  'nop',
  'bpf_attr',
  'perf_event',
  'bpf_map',
  'user_namespace',
  'capability',
  'kiocb',
  'iov_iter',
  'cred',
  'const_buf',
  'load_info',
  'module',
  'syscall64',
  'kernel_cap_t',
  'cap_inheritable',
  'cap_permitted',
  'cap_effective',
  'linux_binprm',
  'data_loc',
  'net_device',
  'bpf_cmd',
  'dentry',
  'bpf_prog',
] as const

const TETRAGON_ARG_OPERATORS = [
  'Equal',
  'NotEqual',
  'Prefix',
  'NotPrefix',
  'Postfix',
  'NotPostfix',
  'GreaterThan',
  'LessThan',
  'GT',
  'LT',
  'Mask',
  'SPort',
  'NotSPort',
  'SPortPriv',
  'NotSportPriv',
  'DPort',
  'NotDPort',
  'DPortPriv',
  'NotDPortPriv',
  'SAddr',
  'NotSAddr',
  'DAddr',
  'NotDAddr',
  'Protocol',
  'Family',
  'State',
  'InMap',
  'NotInMap',
  'CapabilitiesGained',
  'InRange',
  'NotInRange',
  'SubString',
  'SubStringIgnCase',
  'CelExpr',
  'FileType',
  'NotFileType',
] as const

const inOrNotIn = z.enum(['In', 'NotIn'])
const index = z.int().min(0)

// label values: at most 63 characters of the Kubernetes label-value alphabet
const tgLabelSelector = z.strictObject({
  matchExpressions: z
    .array(
      z.strictObject({
        key: z.string(),
        operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
        values: z.array(z.string()).optional(),
      })
    )
    .optional(),
  matchLabels: z
    .record(
      z.string(),
      pattern(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, 'a label value').max(63)
    )
    .optional(),
})

// the CRD's CEL rule: a hostSelector is either null (no host) or {} (all hosts)
const hostOnlyEmpty = z.never({ error: 'hostSelector is either null or {}; it takes no labels' })
const tgHostSelector = z
  .strictObject({
    matchLabels: hostOnlyEmpty.optional(),
    matchExpressions: hostOnlyEmpty.optional(),
  })
  .nullable()

const tgArg = z.strictObject({
  btfType: z.string().optional(),
  btfTypeModule: z.string().optional(),
  index,
  label: z.string().optional(),
  maxData: z.boolean().optional(),
  resolve: z.string().optional(),
  returnCopy: z.boolean().optional(),
  sizeArgIndex: index.optional(),
  source: z.string().optional(),
  type: z.enum(TETRAGON_ARG_TYPES),
})

const tgAction = z.strictObject({
  action: z.enum(TETRAGON_ACTIONS),
  argError: z.int().optional(),
  argFd: z.int().optional(),
  argFqdn: z.string().optional(),
  argIndex: z.int().optional(),
  argName: z.int().optional(),
  argRegs: z.array(z.string()).optional(),
  argSig: z.int().optional(),
  argSock: z.int().optional(),
  argUrl: z.string().optional(),
  argValue: z.int().optional(),
  imaHash: z.boolean().optional(),
  kernelStackTrace: z.boolean().optional(),
  rateLimit: z.string().optional(),
  // the CRD types this as a string; its description names these three values
  rateLimitScope: z.enum(['thread', 'process', 'global']).optional(),
  userStackTrace: z.boolean().optional(),
})

const tgArgSelector = z.strictObject({
  args: z.array(index).optional(),
  index: index.optional(),
  operator: z.enum(TETRAGON_ARG_OPERATORS),
  values: z.array(z.string()).optional(),
})

const tgBinarySelector = z.strictObject({
  followChildren: z.boolean().optional(),
  operator: z.enum(['In', 'NotIn', 'Prefix', 'NotPrefix', 'Postfix', 'NotPostfix']),
  values: z.array(z.string()),
})

const tgCapabilities = z.strictObject({
  isNamespaceCapability: z.boolean().optional(),
  operator: inOrNotIn,
  type: z.enum(['Effective', 'Inheritable', 'Permitted']).optional(),
  values: z.array(z.string()),
})

const tgSelector = z.strictObject({
  macros: z.array(z.string()).optional(),
  matchActions: z.array(tgAction).optional(),
  matchArgs: z.array(tgArgSelector).optional(),
  matchBinaries: z.array(tgBinarySelector).max(1).optional(),
  matchCapabilities: z.array(tgCapabilities).optional(),
  matchCapabilityChanges: z.array(tgCapabilities).optional(),
  matchData: z.array(tgArgSelector).optional(),
  matchNamespaceChanges: z
    .array(z.strictObject({ operator: inOrNotIn, values: z.array(z.string()) }))
    .optional(),
  matchNamespaces: z
    .array(
      z.strictObject({
        namespace: z.enum([
          'Uts',
          'Ipc',
          'Mnt',
          'Pid',
          'PidForChildren',
          'Net',
          'Time',
          'TimeForChildren',
          'Cgroup',
          'User',
        ]),
        operator: inOrNotIn,
        values: z.array(z.string()),
      })
    )
    .optional(),
  matchPIDs: z
    .array(
      z.strictObject({
        followForks: z.boolean().optional(),
        isNamespacePID: z.boolean().optional(),
        operator: inOrNotIn,
        values: z.array(z.int()),
      })
    )
    .optional(),
  matchParentBinaries: z.array(tgBinarySelector).max(1).optional(),
  matchReturnActions: z.array(tgAction).optional(),
  matchReturnArgs: z.array(tgArgSelector).optional(),
  matchWorkloads: z
    .strictObject({
      containerSelector: tgLabelSelector.optional(),
      hostSelector: tgHostSelector.optional(),
      podSelector: tgLabelSelector.optional(),
    })
    .optional(),
})

const tgMessage = z.string().max(256).optional()
const tgTags = z.array(z.string()).max(16).optional()

const tgKprobe = z.strictObject({
  args: z.array(tgArg).optional(),
  call: z.string(),
  data: z.array(tgArg).optional(),
  ignore: z.strictObject({ callNotFound: z.boolean().optional() }).optional(),
  message: tgMessage,
  return: z.boolean().optional(),
  returnArg: tgArg.optional(),
  returnArgAction: z.string().optional(),
  selectors: z.array(tgSelector).optional(),
  syscall: z.boolean().optional(),
  tags: tgTags,
})

const tgLsmHook = z.strictObject({
  args: z.array(tgArg).optional(),
  hook: z.string(),
  message: tgMessage,
  selectors: z.array(tgSelector).optional(),
  tags: tgTags,
})

const tgTracepoint = z.strictObject({
  args: z.array(tgArg).optional(),
  event: z.string(),
  message: tgMessage,
  raw: z.boolean().optional(),
  selectors: z.array(tgSelector).optional(),
  subsystem: z.string(),
  tags: tgTags,
})

const tgSpec = z.strictObject({
  containerSelector: tgLabelSelector.optional(),
  enforcers: z.array(z.strictObject({ calls: z.array(z.string()) })).optional(),
  fentries: z.array(tgKprobe).optional(),
  hostSelector: tgHostSelector.optional(),
  kprobes: z.array(tgKprobe).optional(),
  lists: z
    .array(
      z.strictObject({
        name: z.string(),
        pattern: z.string().optional(),
        type: z.enum(['syscalls', 'generated_syscalls', 'generated_ftrace']).optional(),
        validated: z.boolean().optional(),
        values: z.array(z.string()).optional(),
      })
    )
    .optional(),
  loader: z.boolean().optional(),
  lsmhooks: z.array(tgLsmHook).optional(),
  options: z.array(z.strictObject({ name: z.string(), value: z.string().optional() })).optional(),
  podSelector: tgLabelSelector.optional(),
  selectorsMacros: z.record(z.string(), tgSelector).optional(),
  tracepoints: z.array(tgTracepoint).optional(),
  uprobes: z.array(z.record(z.string(), z.unknown())).optional(),
  usdts: z.array(z.record(z.string(), z.unknown())).optional(),
})

export const tracingPolicy = z.strictObject({
  apiVersion: z.literal(TETRAGON_API_VERSION),
  kind: z.literal('TracingPolicy'),
  metadata: objectMeta,
  spec: tgSpec,
})

export const tracingPolicyNamespaced = z.strictObject({
  apiVersion: z.literal(TETRAGON_API_VERSION),
  kind: z.literal('TracingPolicyNamespaced'),
  metadata: objectMeta,
  // the CRD's CEL rule: a namespaced policy has no hostSelector
  spec: tgSpec.extend({
    hostSelector: z.never({ error: 'TracingPolicyNamespaced takes no hostSelector' }).optional(),
  }),
})

/**
 * Helm values for the Tetragon chart (cilium/tetragon install/kubernetes/tetragon/values.yaml:
 * `tetragon.exportAllowList` and `tetragon.exportDenyList`, one JSON filter per line). Only the
 * keys hookmeter ships are known.
 */
export const tetragonHelmValues = z.strictObject({
  tetragon: z.strictObject({
    exportAllowList: z.string().optional(),
    exportDenyList: z.string().optional(),
  }),
})

// ---------------------------------------------------------------------------------------------
// Tracee: tracee.aquasec.com/v1beta1 Policy
// source: aquasecurity/tracee deploy/helm/tracee/crds/tracee.aquasec.com_policies.yaml (the CRD
// types every list entry as a string) and docs/docs/policies/{index,scopes,rules,actions}.md
// for what those strings may be. Filters are `name op value` (data.*, args.* in older
// releases, retval, or a scope field); scopes are the documented names.

export const TRACEE_API_VERSION = 'tracee.aquasec.com/v1beta1'

const TRACEE_SCOPE_FIELDS = 'uid|pid|mntns|pidns|uts|comm|tree|executable|exec|container'
const TRACEE_SCOPE = new RegExp(
  `^(global|container|not-container|follow|(${TRACEE_SCOPE_FIELDS})(=|!=|<=|>=|<|>).+)$`
)
const TRACEE_FILTER = /^[A-Za-z_][A-Za-z0-9_.\-[\]]*(=|!=|<=|>=|<|>).*$/
const TRACEE_ACTION = /^(log|forward|webhook)(:.+)?$/

const traceeAction = pattern(TRACEE_ACTION, 'an action: log, forward or webhook (with :URL)')

export const traceePolicy = z.strictObject({
  apiVersion: z.literal(TRACEE_API_VERSION),
  kind: z.literal('Policy'),
  metadata: objectMeta,
  spec: z.strictObject({
    defaultActions: z.array(traceeAction).optional(),
    rules: z.array(
      z.strictObject({
        actions: z.array(traceeAction).optional(),
        event: pattern(/^[A-Za-z0-9_-]+$/, 'an event name (such as sched_process_exec)'),
        filters: z
          .array(
            pattern(
              TRACEE_FILTER,
              'a filter of the form name=value (such as data.pathname=/usr/bin/ls)'
            )
          )
          .optional(),
      })
    ),
    scope: z.array(
      pattern(
        TRACEE_SCOPE,
        'a scope: global, container, not-container, follow, or one of uid, pid, mntns, ' +
          'pidns, uts, comm, tree, executable with an operator and value'
      )
    ),
  }),
})

// ---------------------------------------------------------------------------------------------
// Falco: rules files (no CRD)
// source: falcosecurity/falco userspace/engine/rule_json_schema.h (Falco's own schema of a rules
// file item, read at 61d77cfb) and falco.org/docs/reference/rules/rule-fields (which fields a
// rule requires; priorities are case-insensitive there while the JSON schema lists upper case).
// The JSON schema describes one flat item; here each item kind has its own schema, chosen by
// the key that names it (rule, macro, list, required_engine_version, required_plugin_versions).

export const FALCO_PRIORITIES = [
  'emergency',
  'alert',
  'critical',
  'error',
  'warning',
  'notice',
  'informational',
  'info',
  'debug',
] as const

const falcoOverrideMode = z.enum(['append', 'replace'])
const falcoOverride = z.strictObject({
  items: falcoOverrideMode.optional(),
  desc: falcoOverrideMode.optional(),
  condition: falcoOverrideMode.optional(),
  output: falcoOverrideMode.optional(),
  priority: falcoOverrideMode.optional(),
  enabled: falcoOverrideMode.optional(),
  exceptions: falcoOverrideMode.optional(),
  capture: falcoOverrideMode.optional(),
  capture_duration: falcoOverrideMode.optional(),
  capture_events: falcoOverrideMode.optional(),
  capture_filesize: falcoOverrideMode.optional(),
  tags: falcoOverrideMode.optional(),
  warn_evttypes: falcoOverrideMode.optional(),
  'skip-if-unknown-filter': falcoOverrideMode.optional(),
})

const falcoPriority = pattern(
  new RegExp(`^(${FALCO_PRIORITIES.join('|')})$`, 'i'),
  'a priority: EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFORMATIONAL (INFO) or DEBUG'
)

/** A full rule definition: the five fields the reference marks required are required. */
export const falcoRule = z.strictObject({
  rule: z.string().min(1),
  desc: z.string(),
  condition: z.string().min(1),
  output: z.string().min(1),
  priority: falcoPriority,
  enabled: z.boolean().optional(),
  append: z.boolean().optional(),
  capture: z.boolean().optional(),
  capture_duration: z.int().optional(),
  capture_events: z.int().optional(),
  capture_filesize: z.int().optional(),
  source: z.string().optional(),
  exceptions: z
    .array(
      z.strictObject({
        name: z.string(),
        fields: z.unknown().optional(),
        comps: z.unknown().optional(),
        values: z.unknown().optional(),
      })
    )
    .optional(),
  override: falcoOverride.optional(),
  tags: z.array(z.string()).optional(),
  warn_evttypes: z.boolean().optional(),
  'skip-if-unknown-filter': z.boolean().optional(),
})

/** A rule item that changes an earlier rule (append: true or override): only `rule` is needed. */
export const falcoRulePatch = falcoRule.partial().required({ rule: true })

export const falcoMacro = z.strictObject({
  macro: z.string().min(1),
  condition: z.string(),
  append: z.boolean().optional(),
  override: falcoOverride.optional(),
})

export const falcoList = z.strictObject({
  list: z.string().min(1),
  items: z.array(z.union([z.string(), z.number()])),
  append: z.boolean().optional(),
  override: falcoOverride.optional(),
})

export const falcoEngineVersion = z.strictObject({
  required_engine_version: z.union([z.string(), z.number()]),
})

const falcoNameVersion = { name: z.string(), version: z.string() }
export const falcoPluginVersions = z.strictObject({
  required_plugin_versions: z.array(
    z.strictObject({
      ...falcoNameVersion,
      alternatives: z.array(z.strictObject(falcoNameVersion)).optional(),
    })
  ),
})

/**
 * Helm values for the Falco chart (falcosecurity/charts charts/falco/values.yaml and
 * templates/rules-configmap.yaml: `customRules` maps a file name to rules text, rendered into
 * the ConfigMap `<fullname>-rules` mounted at /etc/falco/rules.d; `falco.*` is falco.yaml).
 * Only the keys hookmeter ships are known.
 */
export const falcoHelmValues = z.strictObject({
  customRules: z.record(
    pattern(/\.ya?ml$/, 'a rules file name ending in .yaml or .yml'),
    z.string()
  ),
  falco: z
    .strictObject({
      json_output: z.boolean().optional(),
      json_include_output_property: z.boolean().optional(),
    })
    .optional(),
})

/** A core/v1 ConfigMap; hookmeter knows the ones that carry Falco rules files. */
export const configMap = z.strictObject({
  apiVersion: z.literal('v1'),
  kind: z.literal('ConfigMap'),
  metadata: objectMeta,
  data: z.record(z.string(), z.string()),
  immutable: z.boolean().optional(),
})
