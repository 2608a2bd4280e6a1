/**
 * The benchmark's audit policy of each tool, for any binary: log every execution of it on the
 * node, host processes included, and never block. The files under policies/ are this module's
 * output for /usr/bin/ls (a test holds them to it), plus the configuration changes that make
 * a tool's default installation show host processes, which are the same for every binary.
 */
import { createHash } from 'node:crypto'

import { stringify } from 'yaml'

import type { KnownTool } from '../tools/types.ts'

export type PolicyKindOption = 'host' | 'pod'
export type FalcoForm = 'rules' | 'helm' | 'configmap'

export interface RenderOptions {
  tool: KnownTool
  /** absolute path of the binary whose executions are audited */
  binary: string
  /** kubearmor only: host (KubeArmorHostPolicy) or pod (KubeArmorPolicy); others cover both */
  kind?: PolicyKindOption
  /** falco only: a rules file, Helm values (customRules) or a ConfigMap */
  form?: FalcoForm
  /** kubearmor pod only: the namespace whose pods are audited */
  namespace?: string
}

/** The namespace of hookmeter's DaemonSet, whose pods run the benchmark loop in a cluster. */
export const DEFAULT_NAMESPACE = 'hookmeter'

/** Why a binary cannot be rendered for a tool, or null. */
export function binaryProblem(tool: KnownTool, binary: string): string | null {
  if (!binary.startsWith('/')) return `expected an absolute path, got '${binary}'`
  if (binary.length < 2 || binary.endsWith('/')) return `expected a file path, got '${binary}'`
  if (/[\0\n\r]/.test(binary)) return 'the path holds a NUL or line break'
  // Tracee reads ',' as "or" and a leading or trailing '*' as a wildcard in filter values
  if (tool === 'tracee' && /[,*]/.test(binary)) {
    return `tracee filter values cannot hold ',' or '*', got '${binary}'`
  }
  if (tool === 'falco' && /["\\]/.test(binary)) {
    return `a Falco condition value cannot hold '"' or '\\', got '${binary}'`
  }
  return null
}

/** A DNS-subdomain name for the policy, unique per binary path. */
export function policyName(binary: string): string {
  const slug = binary
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
  const name = `hookmeter-audit-${slug || 'binary'}`
  if (name.length <= 63) return name
  const hash = createHash('sha256').update(binary).digest('hex').slice(0, 8)
  return `${name.slice(0, 54).replace(/-+$/, '')}-${hash}`
}

// ---------------------------------------------------------------------------------------------
// documents

function kubeArmorHost(binary: string) {
  return {
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorHostPolicy',
    metadata: { name: policyName(binary) },
    spec: {
      // a label every Linux node carries, so the policy covers each node of the cluster
      nodeSelector: { matchLabels: { 'kubernetes.io/os': 'linux' } },
      severity: 1,
      tags: ['hookmeter', 'benchmark'],
      message: `hookmeter benchmark: exec of ${binary}`,
      process: { matchPaths: [{ path: binary }] },
      action: 'Audit',
    },
  }
}

function kubeArmorPod(binary: string, namespace: string) {
  return {
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorPolicy',
    metadata: { name: policyName(binary), namespace },
    spec: {
      // no labels: every pod of the namespace
      selector: { matchLabels: {} },
      severity: 1,
      tags: ['hookmeter', 'benchmark'],
      message: `hookmeter benchmark: exec of ${binary}`,
      process: { matchPaths: [{ path: binary }] },
      action: 'Audit',
    },
  }
}

function tetragonPolicy(binary: string) {
  return {
    apiVersion: 'cilium.io/v1alpha1',
    kind: 'TracingPolicy',
    metadata: { name: policyName(binary) },
    spec: {
      kprobes: [
        {
          call: 'security_bprm_check',
          syscall: false,
          message: `hookmeter benchmark: exec of ${binary}`,
          tags: ['hookmeter', 'benchmark'],
          args: [{ index: 0, type: 'linux_binprm' }],
          selectors: [
            {
              matchArgs: [{ index: 0, operator: 'Equal', values: [binary] }],
              matchActions: [{ action: 'Post' }],
            },
          ],
        },
      ],
    },
  }
}

function traceePolicyDoc(binary: string) {
  return {
    apiVersion: 'tracee.aquasec.com/v1beta1',
    kind: 'Policy',
    metadata: {
      name: policyName(binary),
      annotations: { description: `hookmeter benchmark: log every exec of ${binary}` },
    },
    spec: {
      scope: ['global'],
      defaultActions: ['log'],
      rules: [{ event: 'sched_process_exec', filters: [`data.pathname=${binary}`] }],
    },
  }
}

function falcoValue(binary: string): string {
  return /^[A-Za-z0-9/_.+-]+$/.test(binary) ? binary : `"${binary}"`
}

export function falcoRules(binary: string) {
  return [
    {
      rule: `Hookmeter benchmark exec of ${binary}`,
      desc:
        `Every execution of ${binary}, on the host or in a container ` +
        "(hookmeter's benchmark audit rule).",
      // spawned_process is the macro of Falco's default rules (falco_rules.yaml), loaded first
      condition: `spawned_process and proc.exepath = ${falcoValue(binary)}`,
      output:
        'hookmeter benchmark exec (exepath=%proc.exepath pid=%proc.pid ppid=%proc.ppid ' +
        'cmdline=%proc.cmdline container_id=%container.id)',
      priority: 'NOTICE',
      tags: ['hookmeter', 'benchmark'],
    },
  ]
}

// single quotes, as prettier writes YAML with the repository's settings
const yamlText = (doc: unknown) => stringify(doc, { lineWidth: 0, singleQuote: true })

function falcoFileName(binary: string): string {
  return `${policyName(binary)}.yaml`
}

function falcoHelm(binary: string) {
  return {
    customRules: { [falcoFileName(binary)]: yamlText(falcoRules(binary)) },
    // the event parser reads Falco's JSON alerts; Falco writes text unless asked
    falco: { json_output: true },
  }
}

function falcoConfigMap(binary: string) {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: `${policyName(binary)}-falco`, namespace: 'falco' },
    data: { [falcoFileName(binary)]: yamlText(falcoRules(binary)) },
  }
}

/** The policy documents for the options (validated as they are; the CLI checks the options). */
export function renderDocuments(opts: RenderOptions): unknown {
  const { binary } = opts
  switch (opts.tool) {
    case 'kubearmor':
      return opts.kind === 'pod'
        ? kubeArmorPod(binary, opts.namespace ?? DEFAULT_NAMESPACE)
        : kubeArmorHost(binary)
    case 'tetragon':
      return tetragonPolicy(binary)
    case 'tracee':
      return traceePolicyDoc(binary)
    case 'falco':
      if (opts.form === 'helm') return falcoHelm(binary)
      if (opts.form === 'configmap') return falcoConfigMap(binary)
      return falcoRules(binary)
  }
}

// ---------------------------------------------------------------------------------------------
// text: the document with a header saying what it does and what else the tool needs

const HOST_NOTES: Record<KnownTool, string[]> = {
  kubearmor: [
    'KubeArmor in Kubernetes ignores host policies and host processes by default',
    '(enableKubeArmorHostPolicy false, host visibility none): install',
    'policies/kubearmor/host-visibility.values.yaml with the KubeArmor Helm chart first.',
  ],
  tetragon: [
    'Tetragon\'s Helm export deny list drops events of host processes (namespace ""):',
    'install policies/tetragon/export-host.values.yaml with the Tetragon Helm chart first.',
  ],
  tracee: [
    "Tracee's Helm default policy does not output sched_process_exec; this policy adds it,",
    'and scope global covers host processes. No other change is needed.',
  ],
  falco: [
    'Falco sees host processes; its default rules raise nothing for this binary, so this rule',
    'is what makes an exec of it produce an alert.',
  ],
}

const FALCO_FORM_NOTES: Record<FalcoForm, string[]> = {
  rules: [
    'Load it after falco_rules.yaml (it uses its spawned_process macro), e.g. in',
    '/etc/falco/rules.d; run Falco with -o json_output=true for JSON alerts.',
  ],
  helm: ['Install with the Falco Helm chart: helm upgrade falco falcosecurity/falco -f FILE.'],
  configmap: [
    'Mount it at /etc/falco/rules.d (Falco chart values mounts.volumes and mounts.volumeMounts);',
    'run Falco with -o json_output=true for JSON alerts.',
  ],
}

/** YAML text of the policy, with a header of comments. */
export function renderPolicy(opts: RenderOptions): string {
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE
  const what =
    opts.tool === 'kubearmor' && opts.kind === 'pod'
      ? `every exec of ${opts.binary}\n# in the pods of namespace ${namespace}`
      : `every exec of ${opts.binary}\n# on the node, host processes included`
  const command = [
    'hookmeter policies render',
    `--tool ${opts.tool}`,
    `--binary ${opts.binary}`,
    ...(opts.tool === 'kubearmor' ? [`--kind ${opts.kind ?? 'host'}`] : []),
    ...(opts.tool === 'falco' ? [`--form ${opts.form ?? 'rules'}`] : []),
    ...(opts.tool === 'kubearmor' && opts.kind === 'pod' ? [`--namespace ${namespace}`] : []),
  ].join(' ')
  const notes = [
    ...(opts.tool === 'kubearmor' && opts.kind === 'pod' ? [] : HOST_NOTES[opts.tool]),
    ...(opts.tool === 'falco' ? FALCO_FORM_NOTES[opts.form ?? 'rules'] : []),
  ]
  const header = [
    `# hookmeter benchmark audit policy (${opts.tool}): never blocks; logs ${what}.`,
    `# written by: ${command}`,
    ...notes.map((n) => `# ${n}`),
  ]
  return `${header.join('\n')}\n${yamlText(renderDocuments(opts))}`
}

// ---------------------------------------------------------------------------------------------
// configuration that makes a default installation show host processes (the same for every
// binary; shipped under policies/, held to these values by a test)

/** KubeArmor Helm chart (deployments/helm/KubeArmor) agent flags. */
export const KUBEARMOR_HOST_VALUES = {
  kubearmor: { args: ['-enableKubeArmorHostPolicy=true', '-hostVisibility=process'] },
}

/** Tetragon Helm chart: the default export deny list without namespace "" (host processes). */
export const TETRAGON_HOST_VALUES = {
  tetragon: { exportDenyList: '{"health_check":true}\n{"namespace":["cilium","kube-system"]}' },
}
