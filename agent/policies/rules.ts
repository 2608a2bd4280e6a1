/**
 * What hookmeter's benchmark asks of a policy beyond what the tool accepts. The benchmark
 * measures the cost of *auditing* every exec of a binary, so a policy that blocks, kills or
 * overrides would measure something else and break the node's workload; and a policy whose
 * binary list is empty audits nothing.
 *
 * `policies validate` always applies these rules (they are not optional): every file it checks
 * is one the benchmark may apply. Each issue says it is hookmeter's rule and why.
 */
import { KUBEARMOR_ACTIONS } from './schemas.ts'

export interface RuleIssue {
  path: string[]
  message: string
  /** `audit_only` for a blocking action, `hookmeter_rule` for the other benchmark rules */
  code: 'audit_only' | 'hookmeter_rule'
}

type Report = (path: Array<string | number>, code: RuleIssue['code'], message: string) => void

function collector(): { issues: RuleIssue[]; report: Report } {
  const issues: RuleIssue[] = []
  return {
    issues,
    report: (path, code, message) => issues.push({ path: path.map(String), code, message }),
  }
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

function each(v: unknown, fn: (item: unknown, i: number) => void): void {
  if (Array.isArray(v)) v.forEach(fn)
}

// ---------------------------------------------------------------------------------------------
// KubeArmor

const KUBEARMOR_SECTIONS = ['process', 'file', 'network', 'capabilities'] as const
const KUBEARMOR_MATCHES = [
  'matchPaths',
  'matchDirectories',
  'matchPatterns',
  'matchProtocols',
  'matchCapabilities',
] as const

/** KubeArmor policies: Audit everywhere, a named target, a non-empty process list. */
export function kubeArmorRules(doc: unknown, kind: string): RuleIssue[] {
  const { issues, report } = collector()
  if (!isObj(doc) || !isObj(doc.spec)) return issues
  const spec = doc.spec

  // the spec document says Block is assumed when action is absent, so it must be written out
  if (spec.action === undefined) {
    report(
      ['spec', 'action'],
      'audit_only',
      'missing: KubeArmor assumes Block when action is absent; the benchmark needs action: Audit'
    )
  }
  checkKubeArmorAction(spec.action, ['spec', 'action'], report)
  for (const section of KUBEARMOR_SECTIONS) {
    const s = spec[section]
    if (!isObj(s)) continue
    checkKubeArmorAction(s.action, ['spec', section, 'action'], report)
    for (const match of KUBEARMOR_MATCHES) {
      each(s[match], (rule, i) => {
        if (isObj(rule))
          checkKubeArmorAction(rule.action, ['spec', section, match, i, 'action'], report)
      })
    }
  }

  // KubeArmor applies a KubeArmorPolicy without a selector to the whole namespace; the
  // benchmark's policy says so explicitly (selector.matchLabels: {}) so a reader sees the target
  if (kind === 'KubeArmorPolicy' && spec.selector === undefined) {
    report(
      ['spec', 'selector'],
      'hookmeter_rule',
      'missing: name the target pods (selector.matchLabels: {} selects every pod of the namespace)'
    )
  }

  const process = spec.process
  if (isObj(process)) {
    const lists = ['matchPaths', 'matchDirectories', 'matchPatterns'] as const
    for (const list of lists) {
      if (Array.isArray(process[list]) && process[list].length === 0) {
        report(
          ['spec', 'process', list],
          'hookmeter_rule',
          'must not be empty: an empty list audits no binary'
        )
      }
    }
    if (lists.every((l) => process[l] === undefined)) {
      report(
        ['spec', 'process'],
        'hookmeter_rule',
        'names no binary: add matchPaths, matchDirectories or matchPatterns'
      )
    }
    each(process.matchPaths, (rule, i) => {
      if (isObj(rule) && rule.path === undefined && rule.execname === undefined) {
        report(
          ['spec', 'process', 'matchPaths', i],
          'hookmeter_rule',
          'names no binary: set path or execname'
        )
      }
    })
  }
  return issues
}

function checkKubeArmorAction(action: unknown, path: Array<string | number>, report: Report): void {
  // unknown values are the schema's to report; here only the valid non-audit ones
  if (action === 'Audit' || !(KUBEARMOR_ACTIONS as readonly unknown[]).includes(action)) return
  const effect = action === 'Block' ? 'would deny the exec' : 'would deny every other exec'
  report(
    path,
    'audit_only',
    `'${String(action)}' is not allowed: benchmark policies audit only (Audit); ${action} ${effect}`
  )
}

// ---------------------------------------------------------------------------------------------
// Tetragon

/** Actions that act on the traced process: kill or signal it, fail or rewrite the call. */
const TETRAGON_ENFORCING = new Set(['Sigkill', 'Signal', 'Override', 'NotifyEnforcer', 'Set'])
const TETRAGON_HOOKS = ['kprobes', 'fentries', 'lsmhooks', 'tracepoints'] as const

/** TracingPolicy(Namespaced): Post-only actions, no enforcers, non-empty value lists. */
export function tetragonRules(doc: unknown): RuleIssue[] {
  const { issues, report } = collector()
  if (!isObj(doc) || !isObj(doc.spec)) return issues
  const spec = doc.spec

  const checkSelector = (sel: unknown, path: Array<string | number>) => {
    if (!isObj(sel)) return
    for (const list of ['matchActions', 'matchReturnActions'] as const) {
      each(sel[list], (a, i) => {
        if (isObj(a) && typeof a.action === 'string' && TETRAGON_ENFORCING.has(a.action)) {
          report(
            [...path, list, i, 'action'],
            'audit_only',
            `'${a.action}' is not allowed: benchmark policies audit only (Post); ` +
              `${a.action} acts on the traced process`
          )
        }
      })
    }
    for (const list of ['matchBinaries', 'matchParentBinaries'] as const) {
      each(sel[list], (b, i) => {
        if (isObj(b) && Array.isArray(b.values) && b.values.length === 0) {
          report(
            [...path, list, i, 'values'],
            'hookmeter_rule',
            'must not be empty: an empty binary list matches nothing'
          )
        }
      })
    }
    each(sel.matchArgs, (a, i) => {
      if (isObj(a) && Array.isArray(a.values) && a.values.length === 0) {
        report(
          [...path, 'matchArgs', i, 'values'],
          'hookmeter_rule',
          'must not be empty: an empty value list matches nothing'
        )
      }
    })
  }

  for (const hook of TETRAGON_HOOKS) {
    each(spec[hook], (h, i) => {
      if (isObj(h)) each(h.selectors, (s, j) => checkSelector(s, ['spec', hook, i, 'selectors', j]))
    })
  }
  if (isObj(spec.selectorsMacros)) {
    for (const [name, sel] of Object.entries(spec.selectorsMacros)) {
      checkSelector(sel, ['spec', 'selectorsMacros', name])
    }
  }
  if (Array.isArray(spec.enforcers) && spec.enforcers.length > 0) {
    report(
      ['spec', 'enforcers'],
      'audit_only',
      'not allowed: benchmark policies audit only; an enforcer blocks calls'
    )
  }
  each(spec.options, (o, i) => {
    if (isObj(o) && o.name === 'policy-mode' && o.value === 'enforce') {
      report(
        ['spec', 'options', i, 'value'],
        'audit_only',
        "'enforce' is not allowed: benchmark policies audit only (monitor)"
      )
    }
  })
  return issues
}

// ---------------------------------------------------------------------------------------------
// Tracee (detects only: nothing to check for blocking)

/** Policy: at least one scope and rule, one rule per event (the policies docs allow no more). */
export function traceeRules(doc: unknown): RuleIssue[] {
  const { issues, report } = collector()
  if (!isObj(doc) || !isObj(doc.spec)) return issues
  const spec = doc.spec

  if (Array.isArray(spec.scope) && spec.scope.length === 0) {
    report(
      ['spec', 'scope'],
      'hookmeter_rule',
      'must not be empty: a policy without a scope traces nothing'
    )
  }
  if (Array.isArray(spec.rules) && spec.rules.length === 0) {
    report(
      ['spec', 'rules'],
      'hookmeter_rule',
      'must not be empty: a policy without rules outputs nothing'
    )
  }
  const seen = new Map<string, number>()
  each(spec.rules, (r, i) => {
    if (!isObj(r) || typeof r.event !== 'string') return
    const first = seen.get(r.event)
    if (first !== undefined) {
      report(
        ['spec', 'rules', i, 'event'],
        'hookmeter_rule',
        `'${r.event}' already has a rule (rules.${first}); ` +
          'Tracee allows one rule per event in a policy'
      )
    } else seen.set(r.event, i)
  })
  return issues
}

// ---------------------------------------------------------------------------------------------
// Tetragon export filters (Helm values)

/** Each line of an export allow or deny list is one JSON object (a Tetragon filter). */
export function tetragonValuesRules(doc: unknown): RuleIssue[] {
  const { issues, report } = collector()
  if (!isObj(doc) || !isObj(doc.tetragon)) return issues
  for (const key of ['exportAllowList', 'exportDenyList'] as const) {
    const text = doc.tetragon[key]
    if (typeof text !== 'string') continue
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return
      let parsed: unknown
      try {
        parsed = JSON.parse(line)
      } catch (err) {
        report(
          ['tetragon', key],
          'hookmeter_rule',
          `line ${i + 1} is not JSON: ${(err as Error).message}`
        )
        return
      }
      if (!isObj(parsed))
        report(['tetragon', key], 'hookmeter_rule', `line ${i + 1} is not a JSON object`)
    })
  }
  return issues
}
