/** `hookmeter policies validate|render`: the tools' audit policies, checked and written. */
import { statSync } from 'node:fs'

import { parseOptions, UsageError } from '../cli.ts'
import {
  binaryProblem,
  DEFAULT_NAMESPACE,
  type FalcoForm,
  type PolicyKindOption,
  renderPolicy,
} from '../policies/render.ts'
import { validatePolicyFile, type ValidationResult } from '../policies/validate.ts'
import { KNOWN_TOOLS, type KnownTool } from '../tools/types.ts'

export const POLICIES_USAGE = `usage: hookmeter policies <validate|render> [options]

  policies validate FILE...   check policy files against the tools' schemas and the benchmark's
                              rules (audit only); prints FILE:LINE: field.path: message per issue
      --json                  one JSON object per file: {file, documents, issues}
  policies render --tool TOOL --binary PATH [--kind host|pod] [--form rules|helm|configmap]
                              the benchmark's audit policy for another binary, to stdout
      --tool kubearmor|tetragon|falco|tracee
      --binary PATH           absolute path of the binary whose execs are logged
      --kind host|pod         kubearmor: KubeArmorHostPolicy (host, default) or KubeArmorPolicy
                              (pod); the other tools' one policy covers host and pods (host)
      --form rules|helm|configmap
                              falco: a rules file (default), Helm values (customRules) or a
                              ConfigMap
      --namespace NS          kubearmor --kind pod: the namespace whose pods are audited
                              (default ${DEFAULT_NAMESPACE})

exit codes: 0 valid (or written), 1 issues found, 2 invalid command line or missing file
`

export async function cmdPolicies(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'validate':
      return validate(rest)
    case 'render':
      return render(rest)
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(POLICIES_USAGE)
      return 0
    case undefined:
      throw new UsageError('policies: expected a subcommand (validate, render)')
    default:
      throw new UsageError(`policies: unknown subcommand '${sub}' (subcommands: validate, render)`)
  }
}

async function validate(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(
    args,
    { json: { type: 'boolean' } },
    { positionals: Infinity }
  )
  if (values.help) {
    process.stdout.write(POLICIES_USAGE)
    return 0
  }
  if (!positionals.length)
    throw new UsageError('policies validate: expected one or more FILE arguments')

  // every argument is checked before any is validated, so a typo does not hide behind output
  for (const file of positionals) {
    let isFile = false
    try {
      isFile = statSync(file).isFile()
    } catch {
      throw new UsageError(`${file}: no such file`)
    }
    if (!isFile) throw new UsageError(`${file}: not a regular file`)
  }

  let failed = false
  for (const file of positionals) {
    let result: ValidationResult
    try {
      result = await validatePolicyFile(file)
    } catch (err) {
      throw new UsageError(`${file}: cannot read: ${(err as Error).message}`)
    }
    if (result.issues.length) failed = true
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ file, ...result })}\n`)
      continue
    }
    for (const i of result.issues) {
      const field = i.path.length ? `${i.path.join('.')}: ` : ''
      process.stdout.write(`${file}:${i.line}: ${field}${i.message}\n`)
    }
    if (!result.issues.length) {
      const kinds = result.documents
        .map((d) => (d.tool ? `${d.tool} ${d.kind}` : d.kind))
        .join(', ')
      process.stdout.write(`${file}: valid (${kinds})\n`)
    }
  }
  return failed ? 1 : 0
}

const KINDS: readonly PolicyKindOption[] = ['host', 'pod']
const FORMS: readonly FalcoForm[] = ['rules', 'helm', 'configmap']
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

function render(args: string[]): number {
  const { values } = parseOptions(args, {
    tool: { type: 'string' },
    binary: { type: 'string' },
    kind: { type: 'string' },
    form: { type: 'string' },
    namespace: { type: 'string' },
  })
  if (values.help) {
    process.stdout.write(POLICIES_USAGE)
    return 0
  }

  const tool = values.tool as KnownTool | undefined
  if (tool === undefined) throw new UsageError(`--tool: expected one of ${KNOWN_TOOLS.join(', ')}`)
  if (!KNOWN_TOOLS.includes(tool)) {
    throw new UsageError(`--tool: expected one of ${KNOWN_TOOLS.join(', ')}, got '${tool}'`)
  }
  if (values.binary === undefined)
    throw new UsageError('--binary: expected the absolute path of a binary')
  const problem = binaryProblem(tool, values.binary)
  if (problem) throw new UsageError(`--binary: ${problem}`)

  const kind = (values.kind ?? 'host') as PolicyKindOption
  if (!KINDS.includes(kind))
    throw new UsageError(`--kind: expected host or pod, got '${values.kind}'`)
  if (kind === 'pod' && tool !== 'kubearmor') {
    throw new UsageError(
      `--kind pod: only kubearmor has a pod-only policy kind; the ${tool} policy covers ` +
        'host and pods (use --kind host or leave it out)'
    )
  }

  const form = (values.form ?? 'rules') as FalcoForm
  if (values.form !== undefined && tool !== 'falco') {
    throw new UsageError(`--form: applies to --tool falco only (got --tool ${tool})`)
  }
  if (!FORMS.includes(form)) {
    throw new UsageError(`--form: expected rules, helm or configmap, got '${values.form}'`)
  }

  if (values.namespace !== undefined) {
    if (tool !== 'kubearmor' || kind !== 'pod') {
      throw new UsageError('--namespace: applies to --tool kubearmor --kind pod only')
    }
    if (!DNS_LABEL.test(values.namespace) || values.namespace.length > 63) {
      throw new UsageError(
        `--namespace: expected a namespace name (a DNS label), got '${values.namespace}'`
      )
    }
  }

  process.stdout.write(
    renderPolicy({ tool, binary: values.binary, kind, form, namespace: values.namespace })
  )
  return 0
}
