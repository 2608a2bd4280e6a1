/**
 * The tools' audit policies: the shipped files validate and are what `render` writes, render
 * output validates for every tool, kind and form, broken variants fail naming the field and its
 * line, the CLI exits as documented, and Table 1's scopes are marked shown by DESIGN.md's rule.
 * Pure tests: no root, no kernel.
 */
import { afterAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'

import { parseAllDocuments } from 'yaml'

import { scopeCatalog, scopesShown } from '../agent/policies/catalog.ts'
import {
  KUBEARMOR_HOST_VALUES,
  type RenderOptions,
  renderDocuments,
  renderPolicy,
  TETRAGON_HOST_VALUES,
} from '../agent/policies/render.ts'
import { validatePolicyFile, validatePolicyText } from '../agent/policies/validate.ts'
import { bunExe, root } from './helpers.ts'

const POLICIES = join(root, 'policies')
const BROKEN = join(root, 'test/fixtures/policies/broken')
const tmp = mkdtempSync(join(tmpdir(), 'hm-policies-'))

afterAll(() => rmSync(tmp, { recursive: true, force: true }))

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort()
}

const docsOf = (text: string) => parseAllDocuments(text as string) as Array<{ toJS(): unknown }>

/** `hookmeter policies …` in a child process (see test/fixtures/policies/cli.ts). */
async function policiesCli(args: string[]) {
  const proc = Bun.spawn([bunExe, 'test/fixtures/policies/cli.ts', ...args], {
    cwd: root,
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  return { code, stdout, stderr }
}

// ---------------------------------------------------------------------------------------------

/** Every shipped policy and the command that writes it (the file's second line says so too). */
const SHIPPED: Array<{ file: string; opts: RenderOptions }> = [
  {
    file: 'kubearmor/host-policy.yaml',
    opts: { tool: 'kubearmor', binary: '/usr/bin/ls', kind: 'host' },
  },
  {
    file: 'kubearmor/pod-policy.yaml',
    opts: { tool: 'kubearmor', binary: '/usr/bin/ls', kind: 'pod' },
  },
  { file: 'tetragon/tracing-policy.yaml', opts: { tool: 'tetragon', binary: '/usr/bin/ls' } },
  { file: 'tracee/policy.yaml', opts: { tool: 'tracee', binary: '/usr/bin/ls' } },
  { file: 'falco/rules.yaml', opts: { tool: 'falco', binary: '/usr/bin/ls', form: 'rules' } },
  { file: 'falco/values.yaml', opts: { tool: 'falco', binary: '/usr/bin/ls', form: 'helm' } },
  {
    file: 'falco/configmap.yaml',
    opts: { tool: 'falco', binary: '/usr/bin/ls', form: 'configmap' },
  },
]

describe('shipped policies', () => {
  test('every yaml file under policies/ validates', async () => {
    const files = yamlFiles(POLICIES)
    expect(files.length).toBeGreaterThanOrEqual(SHIPPED.length + 3)
    for (const file of files) {
      const result = await validatePolicyFile(file)
      expect({ file: relative(root, file), issues: result.issues }).toEqual({
        file: relative(root, file),
        issues: [],
      })
      expect(result.documents.length).toBeGreaterThan(0)
    }
  })

  test('the shipped files cover every tool and the kinds the issue names', async () => {
    const kinds = new Set<string>()
    for (const file of yamlFiles(POLICIES)) {
      for (const d of (await validatePolicyFile(file)).documents) kinds.add(`${d.tool} ${d.kind}`)
    }
    expect([...kinds].sort()).toEqual(
      [
        'falco ConfigMap',
        'falco Helm values',
        'falco rules file',
        'kubearmor Helm values',
        'kubearmor KubeArmorHostPolicy',
        'kubearmor KubeArmorPolicy',
        'null PolicyScopeCatalog',
        'tetragon Helm values',
        'tetragon TracingPolicy',
        'tracee Policy',
      ].sort()
    )
  })

  for (const { file, opts } of SHIPPED) {
    test(`policies/${file} is what render writes for /usr/bin/ls`, () => {
      // regenerate with the command on the file's second line if render changes
      expect(readFileSync(join(POLICIES, file), 'utf8')).toBe(renderPolicy(opts))
    })
  }

  test('the host configuration changes ship with the values render knows', () => {
    const ka = readFileSync(join(POLICIES, 'kubearmor/host-visibility.values.yaml'), 'utf8')
    const tg = readFileSync(join(POLICIES, 'tetragon/export-host.values.yaml'), 'utf8')
    expect(docsOf(ka)[0]!.toJS()).toEqual(KUBEARMOR_HOST_VALUES)
    expect(docsOf(tg)[0]!.toJS()).toEqual(TETRAGON_HOST_VALUES)
    // each says in a comment what it changes and why
    expect(ka).toMatch(/^# .*host/m)
    expect(tg).toMatch(/^# .*host processes/m)
    // the Tetragon deny list keeps its other filters and loses only namespace "" (the host)
    const deny = TETRAGON_HOST_VALUES.tetragon.exportDenyList.split('\n').map((l) => JSON.parse(l))
    expect(deny).toEqual([{ health_check: true }, { namespace: ['cilium', 'kube-system'] }])
  })

  test('a policy whose tool hides host processes names the change', () => {
    const host = readFileSync(join(POLICIES, 'kubearmor/host-policy.yaml'), 'utf8')
    const tetragon = readFileSync(join(POLICIES, 'tetragon/tracing-policy.yaml'), 'utf8')
    const tracee = readFileSync(join(POLICIES, 'tracee/policy.yaml'), 'utf8')
    expect(host).toContain('# policies/kubearmor/host-visibility.values.yaml')
    expect(tetragon).toContain('policies/tetragon/export-host.values.yaml')
    expect(tracee).toMatch(/^# Tracee's Helm default policy does not output sched_process_exec/m)
  })
})

// ---------------------------------------------------------------------------------------------

const BINARIES = ['/usr/bin/ls', '/opt/tools/run-me.sh', '/srv/my app/bin x']

const COMBOS: RenderOptions[] = [
  { tool: 'kubearmor', binary: '', kind: 'host' },
  { tool: 'kubearmor', binary: '', kind: 'pod' },
  { tool: 'kubearmor', binary: '', kind: 'pod', namespace: 'bench-ns' },
  { tool: 'tetragon', binary: '' },
  { tool: 'tracee', binary: '' },
  { tool: 'falco', binary: '', form: 'rules' },
  { tool: 'falco', binary: '', form: 'helm' },
  { tool: 'falco', binary: '', form: 'configmap' },
]

/** Where each rendered document carries the binary's path. */
function binaryIn(opts: RenderOptions, doc: unknown): string[] {
  const d = doc as Record<string, any>
  switch (opts.tool) {
    case 'kubearmor':
      return d.spec.process.matchPaths.map((m: { path: string }) => m.path)
    case 'tetragon':
      return d.spec.kprobes[0].selectors[0].matchArgs[0].values
    case 'tracee':
      return d.spec.rules[0].filters.map((f: string) => f.replace(/^data\.pathname=/, ''))
    case 'falco': {
      const rules =
        opts.form === 'rules'
          ? d
          : (docsOf(
              Object.values(opts.form === 'helm' ? d.customRules : d.data)[0] as string
            )[0]!.toJS() as any)
      return [
        rules[0].condition
          .replace(/^spawned_process and proc\.exepath = /, '')
          .replace(/^"|"$/g, ''),
      ]
    }
  }
}

describe('render', () => {
  for (const combo of COMBOS) {
    const label = [combo.tool, combo.kind, combo.form, combo.namespace].filter(Boolean).join(' ')
    test(`render output validates for ${label}`, () => {
      for (const binary of BINARIES) {
        const opts = { ...combo, binary }
        const text = renderPolicy(opts)
        const result = validatePolicyText(text)
        expect({ binary, issues: result.issues }).toEqual({ binary, issues: [] })
        expect(result.documents).toHaveLength(1)
        expect(result.documents[0]!.tool).toBe(combo.tool)
        // the text is the documents render returns, and they audit exactly this binary
        expect(docsOf(text)[0]!.toJS()).toEqual(renderDocuments(opts))
        expect(binaryIn(opts, renderDocuments(opts))).toEqual([binary])
      }
    })
  }

  test('different binaries get different policy names', () => {
    const name = (binary: string) =>
      (renderDocuments({ tool: 'tetragon', binary }) as { metadata: { name: string } }).metadata
        .name
    expect(name('/usr/bin/ls')).toBe('hookmeter-audit-usr-bin-ls')
    expect(name('/usr/local/bin/ls')).not.toBe(name('/usr/bin/ls'))
    const long = name(`/${'very-long-directory/'.repeat(6)}tool`)
    expect(long.length).toBeLessThanOrEqual(63)
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
  })
})

// ---------------------------------------------------------------------------------------------

interface Expected {
  path: string
  line: number
  code: string
}

/** Each broken variant and exactly the issues it must produce (path, line in the file, code). */
const BROKEN_VARIANTS: Record<string, Expected[]> = {
  'kubearmor-wrong-api-version.yaml': [{ path: 'apiVersion', line: 2, code: 'invalid_value' }],
  'kubearmor-block.yaml': [{ path: 'spec.action', line: 13, code: 'audit_only' }],
  'kubearmor-missing-node-selector.yaml': [
    { path: 'spec.nodeSelector', line: 6, code: 'invalid_type' },
  ],
  'kubearmor-pod-missing-selector.yaml': [
    { path: 'spec.selector', line: 7, code: 'hookmeter_rule' },
  ],
  'kubearmor-unknown-field.yaml': [
    { path: 'spec.process', line: 10, code: 'hookmeter_rule' },
    { path: 'spec.process.matchPath', line: 11, code: 'unrecognized_keys' },
  ],
  'kubearmor-wrong-type.yaml': [{ path: 'spec.severity', line: 10, code: 'invalid_type' }],
  'kubearmor-empty-binaries.yaml': [
    { path: 'spec.process.matchPaths', line: 11, code: 'hookmeter_rule' },
  ],
  'tetragon-sigkill.yaml': [
    { path: 'spec.kprobes.0.selectors.0.matchActions.0.action', line: 20, code: 'audit_only' },
  ],
  'tetragon-unknown-action.yaml': [
    { path: 'spec.kprobes.0.selectors.0.matchActions.0.action', line: 20, code: 'invalid_value' },
  ],
  'tetragon-empty-binaries.yaml': [
    {
      path: 'spec.lsmhooks.0.selectors.0.matchBinaries.0.values',
      line: 15,
      code: 'hookmeter_rule',
    },
  ],
  'tetragon-wrong-api-version.yaml': [{ path: 'apiVersion', line: 2, code: 'invalid_value' }],
  'tracee-wrong-api-version.yaml': [{ path: 'apiVersion', line: 2, code: 'invalid_value' }],
  'tracee-missing-scope.yaml': [{ path: 'spec.scope', line: 8, code: 'invalid_type' }],
  'tracee-unknown-scope.yaml': [{ path: 'spec.scope.0', line: 10, code: 'invalid_format' }],
  'tracee-empty-rules.yaml': [{ path: 'spec.rules', line: 11, code: 'hookmeter_rule' }],
  'falco-missing-priority.yaml': [{ path: '0.priority', line: 2, code: 'invalid_type' }],
  'falco-unknown-priority.yaml': [{ path: '0.priority', line: 6, code: 'invalid_format' }],
  'falco-unknown-field.yaml': [
    { path: '0.condition', line: 2, code: 'invalid_type' },
    { path: '0.conditions', line: 4, code: 'unrecognized_keys' },
  ],
  'falco-helm-wrong-type.yaml': [
    { path: 'customRules.hookmeter-audit-usr-bin-ls.yaml.0.tags', line: 9, code: 'invalid_type' },
  ],
  'falco-configmap-missing-output.yaml': [
    { path: 'data.hookmeter-audit-usr-bin-ls.yaml.1.output', line: 11, code: 'invalid_type' },
  ],
}

describe('broken variants', () => {
  test('every broken fixture is listed; two or more per tool, ten in all', () => {
    const files = readdirSync(BROKEN)
      .filter((f) => f.endsWith('.yaml'))
      .sort()
    expect(files).toEqual(Object.keys(BROKEN_VARIANTS).sort())
    expect(files.length).toBeGreaterThanOrEqual(10)
    for (const tool of ['kubearmor', 'tetragon', 'tracee', 'falco']) {
      expect(files.filter((f) => f.startsWith(`${tool}-`)).length).toBeGreaterThanOrEqual(2)
    }
  })

  for (const [file, expected] of Object.entries(BROKEN_VARIANTS)) {
    const first = expected.at(-1)!
    test(`${file} fails naming ${first.path} at line ${first.line}`, async () => {
      const result = await validatePolicyFile(join(BROKEN, file))
      const got = result.issues.map((i) => ({ path: i.path.join('.'), line: i.line, code: i.code }))
      expect(got).toEqual(expected)

      // the message names the field: its last path segment, or the field's own value
      for (const issue of result.issues) expect(issue.message.length).toBeGreaterThan(10)
    })
  }

  test('each kind of break named by the issue is among the variants', () => {
    const codes = new Set(
      Object.values(BROKEN_VARIANTS)
        .flat()
        .map((e) => e.code)
    )
    // wrong apiVersion and unknown action (invalid_value), missing selector (invalid_type,
    // hookmeter_rule), Block where Audit is required (audit_only), unknown field
    // (unrecognized_keys), wrong type (invalid_type), empty binary list (hookmeter_rule)
    for (const code of [
      'invalid_value',
      'invalid_type',
      'audit_only',
      'unrecognized_keys',
      'hookmeter_rule',
    ]) {
      expect(codes.has(code)).toBe(true)
    }
  })

  test('messages say what was wrong in words a user can act on', async () => {
    const msg = async (file: string) =>
      (await validatePolicyFile(join(BROKEN, file))).issues.at(-1)!.message
    expect(await msg('kubearmor-block.yaml')).toContain("'Block' is not allowed")
    expect(await msg('kubearmor-unknown-field.yaml')).toBe(
      "unknown field 'matchPath' (did you mean 'matchPaths'?)"
    )
    expect(await msg('kubearmor-wrong-api-version.yaml')).toBe(
      "expected 'security.kubearmor.com/v1', got 'security.kubearmor.com/v2'"
    )
    expect(await msg('tetragon-unknown-action.yaml')).toMatch(
      /^unknown value 'Block' \(expected one of 'Post',/
    )
    expect(await msg('tetragon-sigkill.yaml')).toContain("'Sigkill' is not allowed")
    expect(await msg('kubearmor-missing-node-selector.yaml')).toBe(
      'required field is missing (expected object)'
    )
    expect(await msg('falco-unknown-priority.yaml')).toMatch(/got 'SEVERE'$/)
  })
})

// ---------------------------------------------------------------------------------------------

describe('validate', () => {
  const host = readFileSync(join(POLICIES, 'kubearmor/host-policy.yaml'), 'utf8')

  test('an unknown field in a shipped policy is an error at its line', () => {
    const text = host.replace('  action: Audit', '  action: Audit\n  actions: Audit')
    const line = text.split('\n').findIndex((l) => l === '  actions: Audit') + 1
    const { issues } = validatePolicyText(text)
    expect(issues).toEqual([
      {
        path: ['spec', 'actions'],
        line,
        code: 'unrecognized_keys',
        message: "unknown field 'actions' (did you mean 'action'?)",
      },
    ])
  })

  test('metadata takes only what a file to apply carries', () => {
    const text = host.replace('metadata:\n', 'metadata:\n  uid: 0b6c5e0e\n')
    const { issues } = validatePolicyText(text)
    expect(issues.map((i) => [i.path.join('.'), i.code])).toEqual([
      ['metadata.uid', 'unrecognized_keys'],
    ])
  })

  test('a per-rule Block inside an audit policy is refused', () => {
    const text = host.replace(
      '      - path: /usr/bin/ls',
      '      - path: /usr/bin/ls\n        action: Block'
    )
    const { issues } = validatePolicyText(text)
    expect(issues.map((i) => i.path.join('.'))).toEqual(['spec.process.matchPaths.0.action'])
    expect(issues[0]!.code).toBe('audit_only')
  })

  test('a KubeArmor path rule must name a binary', () => {
    const text = host.replace('      - path: /usr/bin/ls', '      - ownerOnly: false')
    const { issues } = validatePolicyText(text)
    expect(issues.map((i) => [i.path.join('.'), i.code])).toEqual([
      ['spec.process.matchPaths.0', 'hookmeter_rule'],
    ])
  })

  test('a KubeArmor policy without action is refused, since KubeArmor then blocks', () => {
    const { issues } = validatePolicyText(host.replace('  action: Audit\n', ''))
    expect(issues.map((i) => [i.path.join('.'), i.code])).toEqual([['spec.action', 'audit_only']])
  })

  test('tetragon enforcement in any form is refused', () => {
    const base = readFileSync(join(POLICIES, 'tetragon/tracing-policy.yaml'), 'utf8')
    for (const action of ['Sigkill', 'Override', 'Signal', 'NotifyEnforcer', 'Set']) {
      const { issues } = validatePolicyText(base.replace('action: Post', `action: ${action}`))
      expect(issues.map((i) => i.code)).toEqual(['audit_only'])
    }
    const enforcer = `${base}  enforcers:\n    - calls: [security_bprm_check]\n`
    expect(validatePolicyText(enforcer).issues.map((i) => i.path.join('.'))).toEqual([
      'spec.enforcers',
    ])
  })

  test('issues of the second document of a file carry that document’s lines', () => {
    const text = `${host}---\n${host.replace('severity: 1', 'severity: 11')}`
    const { documents, issues } = validatePolicyText(text)
    expect(documents).toHaveLength(2)
    const line = text.split('\n').findIndex((l) => l === '  severity: 11') + 1
    expect(issues).toEqual([
      {
        path: ['spec', 'severity'],
        line,
        code: 'too_big',
        message: 'must be at most 10, got number 11',
      },
    ])
    expect(line).toBeGreaterThan(host.split('\n').length)
  })

  test('a YAML syntax error is reported at its line', () => {
    const { issues } = validatePolicyText('apiVersion: v1\nkind: ConfigMap\ndata:\n  a: [1, 2\n')
    expect(issues).toHaveLength(1)
    expect(issues[0]!.code).toBe('yaml_syntax')
    expect(issues[0]!.line).toBeGreaterThanOrEqual(4)
  })

  test('an empty file, an unknown kind and unknown Helm values are errors', () => {
    expect(validatePolicyText('').issues.map((i) => i.code)).toEqual(['empty_file'])
    const unknownKind = validatePolicyText('apiVersion: apps/v1\nkind: Deployment\n').issues
    expect(unknownKind.map((i) => [i.path.join('.'), i.line, i.code])).toEqual([
      ['kind', 2, 'unknown_document'],
    ])
    const values = validatePolicyText('image:\n  tag: latest\n').issues
    expect(values.map((i) => i.code)).toEqual(['unknown_document'])
    const extra = validatePolicyText(
      'tetragon:\n  exportDenyList: ""\n  enablePolicyFilter: true\n'
    ).issues
    expect(extra.map((i) => [i.path.join('.'), i.line])).toEqual([
      ['tetragon.enablePolicyFilter', 3],
    ])
  })

  test('a Falco item that names no kind, and a ConfigMap without rules files, are errors', () => {
    const item = validatePolicyText(
      '- rule: ok\n  desc: d\n  condition: c\n  output: o\n  priority: info\n- foo: bar\n'
    )
    expect(item.issues.map((i) => [i.path.join('.'), i.line, i.code])).toEqual([
      ['1', 6, 'unknown_item'],
    ])
    const cm = validatePolicyText(
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  tetragon.conf: "a"\n'
    )
    expect(cm.issues.map((i) => [i.path.join('.'), i.line, i.code])).toEqual([
      ['data', 5, 'unknown_document'],
    ])
  })

  test('Falco priorities are case-insensitive and patch items need only the rule name', () => {
    const text = [
      '- rule: A',
      '  desc: d',
      '  condition: evt.type = execve',
      '  output: o',
      '  priority: informational',
      '- rule: A',
      '  override:',
      '    condition: append',
      '  condition: and proc.name = ls',
      '- list: shells',
      '  items: [bash, sh]',
      '- macro: m',
      '  condition: proc.name in (shells)',
      '- required_engine_version: 0.31.0',
    ].join('\n')
    expect(validatePolicyText(text).issues).toEqual([])
  })

  test('a Tetragon export deny list line that is not JSON is an error', () => {
    const { issues } = validatePolicyText(
      'tetragon:\n  exportDenyList: |-\n    {"health_check":true}\n    {namespace}\n'
    )
    expect(issues.map((i) => [i.path.join('.'), i.code])).toEqual([
      ['tetragon.exportDenyList', 'hookmeter_rule'],
    ])
    expect(issues[0]!.message).toMatch(/^line 2 is not JSON/)
  })

  test('a Tracee policy with an empty scope is refused', () => {
    const base = readFileSync(join(POLICIES, 'tracee/policy.yaml'), 'utf8')
    const text = base.replace('  scope:\n    - global\n', '  scope: []\n')
    expect(validatePolicyText(text).issues.map((i) => [i.path.join('.'), i.code])).toEqual([
      ['spec.scope', 'hookmeter_rule'],
    ])
  })

  test('Tracee allows one rule per event', () => {
    const base = readFileSync(join(POLICIES, 'tracee/policy.yaml'), 'utf8')
    const text = `${base}    - event: sched_process_exec\n`
    expect(validatePolicyText(text).issues.map((i) => i.path.join('.'))).toEqual([
      'spec.rules.1.event',
    ])
  })
})

// ---------------------------------------------------------------------------------------------

describe('policies cli', () => {
  test('validate exits 0 and says valid for the shipped files', async () => {
    const files = yamlFiles(POLICIES).map((f) => relative(root, f))
    const r = await policiesCli(['validate', ...files])
    expect(r.code).toBe(0)
    expect(r.stdout.trim().split('\n')).toHaveLength(files.length)
    expect(r.stdout).toContain(
      'policies/tetragon/tracing-policy.yaml: valid (tetragon TracingPolicy)'
    )
  })

  test('validate exits 1 and prints FILE:LINE: path: message per issue', async () => {
    const file = 'test/fixtures/policies/broken/tetragon-sigkill.yaml'
    const r = await policiesCli(['validate', file, 'policies/tracee/policy.yaml'])
    expect(r.code).toBe(1)
    const lines = r.stdout.trim().split('\n')
    const field = 'spec.kprobes.0.selectors.0.matchActions.0.action'
    expect(lines[0]).toStartWith(`${file}:20: ${field}: 'Sigkill' is not allowed`)
    expect(lines[1]).toBe('policies/tracee/policy.yaml: valid (tracee Policy)')
  })

  test('validate --json prints one object per file with its issues', async () => {
    const r = await policiesCli([
      'validate',
      '--json',
      'test/fixtures/policies/broken/kubearmor-block.yaml',
    ])
    expect(r.code).toBe(1)
    const out = JSON.parse(r.stdout)
    expect(out.issues).toEqual([
      expect.objectContaining({ path: ['spec', 'action'], line: 13, code: 'audit_only' }),
    ])
    expect(out.documents).toEqual([{ line: 2, kind: 'KubeArmorHostPolicy', tool: 'kubearmor' }])
  })

  test('validate exits 2 naming a missing file, and without files', async () => {
    const missing = await policiesCli(['validate', 'policies/tracee/policy.yaml', 'no/such.yaml'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('no/such.yaml: no such file')
    expect(missing.stdout).toBe('')
    const none = await policiesCli(['validate'])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('expected one or more FILE arguments')
  })

  test('render writes a policy that validate accepts', async () => {
    const r = await policiesCli([
      'render',
      '--tool',
      'falco',
      '--binary',
      '/usr/bin/true',
      '--form',
      'configmap',
    ])
    expect(r.code).toBe(0)
    const file = join(tmp, 'rendered.yaml')
    writeFileSync(file, r.stdout)
    const v = await policiesCli(['validate', file])
    expect(v.code).toBe(0)
    expect(r.stdout).toContain('proc.exepath = /usr/bin/true')
  })

  const usageErrors: Array<[string[], string]> = [
    [
      ['render', '--binary', '/usr/bin/ls'],
      '--tool: expected one of kubearmor, tetragon, falco, tracee',
    ],
    [
      ['render', '--tool', 'osquery', '--binary', '/usr/bin/ls'],
      "--tool: expected one of kubearmor, tetragon, falco, tracee, got 'osquery'",
    ],
    [['render', '--tool', 'tetragon'], '--binary: expected the absolute path of a binary'],
    [
      ['render', '--tool', 'tetragon', '--binary', 'ls'],
      "--binary: expected an absolute path, got 'ls'",
    ],
    [
      ['render', '--tool', 'tracee', '--binary', '/usr/bin/*'],
      "--binary: tracee filter values cannot hold ',' or '*'",
    ],
    [
      ['render', '--tool', 'tetragon', '--binary', '/usr/bin/ls', '--form', 'helm'],
      '--form: applies to --tool falco only',
    ],
    [
      ['render', '--tool', 'falco', '--binary', '/usr/bin/ls', '--form', 'chart'],
      "--form: expected rules, helm or configmap, got 'chart'",
    ],
    [
      ['render', '--tool', 'tracee', '--binary', '/usr/bin/ls', '--kind', 'pod'],
      '--kind pod: only kubearmor has a pod-only policy kind',
    ],
    [
      ['render', '--tool', 'kubearmor', '--binary', '/usr/bin/ls', '--kind', 'node'],
      "--kind: expected host or pod, got 'node'",
    ],
    [
      ['render', '--tool', 'kubearmor', '--binary', '/usr/bin/ls', '--namespace', 'x'],
      '--namespace: applies to --tool kubearmor --kind pod only',
    ],
    [
      [
        'render',
        '--tool',
        'kubearmor',
        '--binary',
        '/usr/bin/ls',
        '--kind',
        'pod',
        '--namespace',
        'Bad_NS',
      ],
      '--namespace: expected a namespace name',
    ],
    [
      ['render', '--tool', 'tetragon', '--binary', '/usr/bin/ls', '--colour'],
      '--colour: unknown option',
    ],
    [['frobnicate'], "policies: unknown subcommand 'frobnicate'"],
    [[], 'policies: expected a subcommand'],
  ]
  for (const [args, message] of usageErrors) {
    test(`${['policies', ...args].join(' ')} exits 2 naming the option`, async () => {
      const r = await policiesCli(args)
      expect(r.code).toBe(2)
      expect(r.stderr).toContain(message)
      expect(r.stdout).toBe('')
    })
  }

  test('--kind host is accepted for every tool', async () => {
    for (const tool of ['kubearmor', 'tetragon', 'tracee', 'falco']) {
      const r = await policiesCli([
        'render',
        '--tool',
        tool,
        '--binary',
        '/usr/bin/ls',
        '--kind',
        'host',
      ])
      expect({ tool, code: r.code }).toEqual({ tool, code: 0 })
    }
  })

  test('help prints the usage and exits 0', async () => {
    const r = await policiesCli(['--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('policies render --tool TOOL --binary PATH')
  })
})

// ---------------------------------------------------------------------------------------------

describe('scopes catalog', () => {
  const names = (tool: Parameters<typeof scopesShown>[0]) =>
    scopesShown(tool, [], []).map((s) => s.scope)

  test('the catalog holds the scopes of Table 1 for each tool', () => {
    expect(names('tracee')).toEqual(['Security', 'Network', 'Extra', 'Syscalls'])
    expect(names('kubearmor')).toEqual(['Process', 'File', 'Network', 'Capabilities', 'Syscalls'])
    expect(names('falco')).toEqual(['Syscalls', 'Tracepoints', 'Meta', 'Plugins'])
    expect(names('tetragon')).toEqual(['Kprobes', 'Tracepoints', 'Uprobes', 'LSM BPF'])
  })

  test('a catalog that mixes user-space with hooks or lists a scope twice is an error', () => {
    const text = readFileSync(join(POLICIES, 'scopes.yaml'), 'utf8')
    const mixed = text.replace('shownBy: [user-space]', 'shownBy: [user-space, network]')
    expect(validatePolicyText(mixed).issues.map((i) => i.path.join('.'))).toEqual([
      'tools.tracee.0.shownBy',
    ])
    const twice = text.replace('scope: Extra', 'scope: Network')
    expect(validatePolicyText(twice).issues.map((i) => i.path.join('.'))).toEqual([
      'tools.tracee.2.scope',
    ])
    const unknown = text.replace('shownBy: [kernel-extra]', 'shownBy: [magic]')
    expect(validatePolicyText(unknown).issues.map((i) => i.code)).toEqual(['invalid_value'])
    expect(scopeCatalog.safeParse(docsOf(text)[0]!.toJS()).success).toBe(true)
  })

  const shown = (tool: Parameters<typeof scopesShown>[0], hooks: string[], types: string[] = []) =>
    Object.fromEntries(scopesShown(tool, hooks, types).map((s) => [s.scope, s.shown]))

  test('tetragon: its base sensor and a kprobe policy show Kprobes and Tracepoints', () => {
    const hooks = [
      'tracepoint/sched/sched_process_exec',
      'kprobe/security_bprm_committing_creds',
      'kprobe/wake_up_new_task',
      'kprobe/security_bprm_check',
    ]
    expect(shown('tetragon', hooks)).toEqual({
      Kprobes: true,
      Tracepoints: true,
      Uprobes: false,
      'LSM BPF': false,
    })
    expect(
      shown('tetragon', ['lsm/bprm_check_security', 'uprobe/usr/lib/libc.so.6:malloc'])
    ).toEqual({
      Kprobes: false,
      Tracepoints: false,
      Uprobes: true,
      'LSM BPF': true,
    })
    expect(shown('tetragon', ['fentry/security_bprm_check'])).toMatchObject({ Kprobes: true })
  })

  test('falco: sys_exit shows Syscalls only, sched_process_exec shows Tracepoints', () => {
    expect(shown('falco', ['tp_btf/sys_exit'])).toEqual({
      Syscalls: true,
      Tracepoints: false,
      Meta: 'user-space',
      Plugins: 'user-space',
    })
    expect(shown('falco', ['tp_btf/sys_exit', 'tp_btf/sched_process_exec'])).toMatchObject({
      Syscalls: true,
      Tracepoints: true,
    })
    expect(shown('falco', ['tracepoint/syscalls/sys_enter_openat'])).toMatchObject({
      Syscalls: true,
      Tracepoints: false,
    })
  })

  test("kubearmor: its monitor's hooks show all five scopes; none show without programs", () => {
    const hooks = [
      'kprobe/__x64_sys_execve',
      'kprobe/security_bprm_check',
      'tracepoint/sched/sched_process_fork',
      'tracepoint/syscalls/sys_exit_openat',
      'lsm/file_open',
      'kprobe/tcp_connect+0x0',
      'lsm/capable',
    ]
    expect(shown('kubearmor', hooks)).toEqual({
      Process: true,
      File: true,
      Network: true,
      Capabilities: true,
      Syscalls: true,
    })
    // each clause on its own: a file LSM hook, a socket kprobe, cap_capable
    expect(shown('kubearmor', ['lsm/file_permission'])).toMatchObject({
      File: true,
      Network: false,
    })
    expect(shown('kubearmor', ['kprobe/udp_send_skb'])).toMatchObject({
      File: false,
      Network: true,
    })
    expect(shown('kubearmor', ['kprobe/cap_capable'])).toMatchObject({ Capabilities: true })
    const none = scopesShown('kubearmor', [], [])
    expect(none.every((s) => s.shown === false)).toBe(true)
    expect(none[0]!.why).toBe('no program on sched_process_* of this tool is attached')
  })

  test('tracee: each scope needs its own hook; cgroup links and program types count', () => {
    expect(shown('tracee', ['raw_tracepoint/sched_process_exec'])).toEqual({
      Security: 'user-space',
      Network: false,
      Extra: false,
      Syscalls: false,
    })
    expect(
      shown('tracee', [
        'raw_tracepoint/sys_enter',
        'kprobe/load_elf_phdrs',
        'cgroup/inet_ingress (cgroup id 5)',
      ])
    ).toEqual({ Security: 'user-space', Network: true, Extra: true, Syscalls: true })
    expect(shown('tracee', ['unknown'], ['cgroup_skb'])).toMatchObject({ Network: true })
  })

  test('why names the hook that shows a scope', () => {
    const [kprobes] = scopesShown('tetragon', ['kprobe/security_bprm_check'], [])
    expect(kprobes).toEqual({
      scope: 'Kprobes',
      covers: 'arguments collected and filtered at the hook',
      shown: true,
      why: 'kprobe/security_bprm_check: a kprobe or fentry program',
    })
    const lsm = scopesShown('tetragon', ['unknown'], ['lsm']).find((s) => s.scope === 'LSM BPF')!
    expect(lsm.why).toBe('a program of type lsm: an LSM program')
  })
})
