/**
 * `policies validate`: reads a YAML file (one or more documents), tells which policy kind each
 * document is, checks it against that kind's schema (schemas.ts) and hookmeter's benchmark
 * rules (rules.ts), and returns issues that name the field and its line. Falco rules embedded
 * in a ConfigMap or in Helm `customRules` are parsed and checked too, with lines counted in the
 * outer file.
 */
import { readFile } from 'node:fs/promises'

import {
  type Document,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node as YamlNode,
  parseAllDocuments,
  Scalar,
} from 'yaml'
import type { z } from 'zod'

import type { KnownTool } from '../tools/types.ts'
import { catalogRules, scopeCatalog } from './catalog.ts'
import {
  kubeArmorRules,
  type RuleIssue,
  tetragonRules,
  tetragonValuesRules,
  traceeRules,
} from './rules.ts'
import {
  configMap,
  falcoEngineVersion,
  falcoHelmValues,
  falcoList,
  falcoMacro,
  falcoPluginVersions,
  falcoRule,
  falcoRulePatch,
  KUBEARMOR_API_VERSION,
  kubeArmorHelmValues,
  kubeArmorHostPolicy,
  kubeArmorPolicy,
  TETRAGON_API_VERSION,
  tetragonHelmValues,
  TRACEE_API_VERSION,
  traceePolicy,
  tracingPolicy,
  tracingPolicyNamespaced,
} from './schemas.ts'

export interface PolicyIssue {
  /** field names and list indices from the document's root (or the embedded rules file's) */
  path: string[]
  /** 1-based line in the file */
  line: number
  message: string
  /** a zod issue code (unrecognized_keys, invalid_type, invalid_value, …) or one of hookmeter's:
   * yaml_syntax, empty_file, unknown_document, unknown_item, audit_only, hookmeter_rule */
  code: string
}

export interface PolicyDocument {
  /** 1-based line where the document starts */
  line: number
  /** what the document is: its Kubernetes kind, `rules file` (Falco) or `Helm values` */
  kind: string
  tool: KnownTool | null
}

export interface ValidationResult {
  documents: PolicyDocument[]
  issues: PolicyIssue[]
}

interface KindSpec {
  kind: string
  tool: KnownTool | null
  schema: z.ZodType
  rules?: (doc: unknown) => Array<Omit<RuleIssue, 'code'> & { code: string }>
  /** paths of strings inside the document that are Falco rules files */
  embedded?: (doc: unknown) => string[][]
}

const RULES_FILE = /\.ya?ml$/

const K8S_KINDS: Record<string, KindSpec & { apiVersion: string }> = {
  KubeArmorPolicy: {
    kind: 'KubeArmorPolicy',
    apiVersion: KUBEARMOR_API_VERSION,
    tool: 'kubearmor',
    schema: kubeArmorPolicy,
    rules: (d) => kubeArmorRules(d, 'KubeArmorPolicy'),
  },
  KubeArmorHostPolicy: {
    kind: 'KubeArmorHostPolicy',
    apiVersion: KUBEARMOR_API_VERSION,
    tool: 'kubearmor',
    schema: kubeArmorHostPolicy,
    rules: (d) => kubeArmorRules(d, 'KubeArmorHostPolicy'),
  },
  TracingPolicy: {
    kind: 'TracingPolicy',
    apiVersion: TETRAGON_API_VERSION,
    tool: 'tetragon',
    schema: tracingPolicy,
    rules: tetragonRules,
  },
  TracingPolicyNamespaced: {
    kind: 'TracingPolicyNamespaced',
    apiVersion: TETRAGON_API_VERSION,
    tool: 'tetragon',
    schema: tracingPolicyNamespaced,
    rules: tetragonRules,
  },
  Policy: {
    kind: 'Policy',
    apiVersion: TRACEE_API_VERSION,
    tool: 'tracee',
    schema: traceePolicy,
    rules: traceeRules,
  },
  ConfigMap: {
    kind: 'ConfigMap',
    apiVersion: 'v1',
    tool: 'falco',
    schema: configMap,
    embedded: (d) => dataKeys(d, 'data'),
  },
  PolicyScopeCatalog: {
    kind: 'PolicyScopeCatalog',
    apiVersion: 'hookmeter/v1',
    tool: null,
    schema: scopeCatalog,
    rules: (d) => catalogRules(d).map((i) => ({ ...i, code: 'hookmeter_rule' })),
  },
}

/** Helm values, told apart by the top-level key each chart reads. */
const HELM_VALUES: Array<KindSpec & { key: string }> = [
  {
    key: 'customRules',
    kind: 'Helm values',
    tool: 'falco',
    schema: falcoHelmValues,
    embedded: (d) => dataKeys(d, 'customRules'),
  },
  {
    key: 'tetragon',
    kind: 'Helm values',
    tool: 'tetragon',
    schema: tetragonHelmValues,
    rules: tetragonValuesRules,
  },
  { key: 'kubearmor', kind: 'Helm values', tool: 'kubearmor', schema: kubeArmorHelmValues },
]

function dataKeys(doc: unknown, field: string): string[][] {
  if (!isObj(doc) || !isObj(doc[field])) return []
  return Object.entries(doc[field])
    .filter(([k, v]) => RULES_FILE.test(k) && typeof v === 'string')
    .map(([k]) => [field, k])
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** Validates a file; the file must exist (the CLI checks before calling). */
export async function validatePolicyFile(path: string): Promise<ValidationResult> {
  return validatePolicyText(await readFile(path, 'utf8'))
}

/** Validates YAML text holding one or more policy documents. */
export function validatePolicyText(text: string): ValidationResult {
  return validateText(text, 'any')
}

function validateText(text: string, expect: 'any' | 'falco-rules'): ValidationResult {
  const lines = new LineCounter()
  const parsed = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false })
  const docs = Array.isArray(parsed) ? parsed : []
  const result: ValidationResult = { documents: [], issues: [] }
  const lineAt = (offset: number) => lines.linePos(offset).line

  for (const doc of docs) {
    if (doc.errors.length) {
      for (const err of doc.errors) {
        const line = err.linePos?.[0]?.line ?? lineAt(err.pos[0])
        result.issues.push({ path: [], line, message: firstLine(err.message), code: 'yaml_syntax' })
      }
      continue
    }
    // a stray `---` leaves an empty document; only a file with nothing at all is an error
    if (doc.contents === null) continue
    checkDocument(doc, doc.toJS({ maxAliasCount: 100 }), expect, lineAt, result)
  }
  if (!result.documents.length && !result.issues.length) {
    result.issues.push({
      path: [],
      line: 1,
      message: 'no YAML document in the file',
      code: 'empty_file',
    })
  }
  result.issues.sort((a, b) => a.line - b.line)
  return result
}

function checkDocument(
  doc: Document,
  value: unknown,
  expect: 'any' | 'falco-rules',
  lineAt: (offset: number) => number,
  result: ValidationResult
): void {
  const start = lineAt(doc.contents?.range?.[0] ?? 0)
  const push = (path: string[], message: string, code: string) =>
    result.issues.push({ path, line: locate(doc, path, lineAt), message, code })

  if (Array.isArray(value)) {
    result.documents.push({ line: start, kind: 'rules file', tool: 'falco' })
    checkFalcoRules(value, push)
    return
  }
  if (expect === 'falco-rules') {
    push(
      [],
      'expected a Falco rules file: a YAML list of rule, macro and list items',
      'unknown_document'
    )
    return
  }
  const spec = classify(value, push)
  if (!spec) return
  result.documents.push({ line: start, kind: spec.kind, tool: spec.tool })

  const parsed = spec.schema.safeParse(value)
  if (!parsed.success) {
    for (const i of zodIssues(parsed.error, value, spec.schema)) push(i.path, i.message, i.code)
  }
  for (const i of spec.rules?.(value) ?? []) push(i.path, i.message, i.code)
  for (const path of spec.embedded?.(value) ?? []) {
    checkEmbedded(doc, path, lineAt, result)
  }
  if (
    spec.kind === 'ConfigMap' &&
    isObj(value) &&
    isObj(value.data) &&
    !spec.embedded?.(value).length
  ) {
    push(
      ['data'],
      'holds no Falco rules file: hookmeter knows ConfigMaps whose data keys end in .yaml or .yml',
      'unknown_document'
    )
  }
}

/** Which kind a document is; reports and returns null when it is none hookmeter knows. */
function classify(value: unknown, push: (path: string[], message: string, code: string) => void) {
  if (!isObj(value)) {
    push(
      [],
      'expected a Kubernetes object, a Falco rules list or Helm values, got a scalar',
      'unknown_document'
    )
    return null
  }
  if ('kind' in value || 'apiVersion' in value) {
    const kind = value.kind
    const spec = typeof kind === 'string' ? K8S_KINDS[kind] : undefined
    if (!spec) {
      const known = Object.values(K8S_KINDS).map((k) => `${k.apiVersion} ${k.kind}`)
      const got = kind === undefined ? 'missing' : `unknown kind '${String(kind)}'`
      push(['kind'], `${got} (hookmeter knows: ${known.join(', ')})`, 'unknown_document')
      return null
    }
    return spec
  }
  const helm = HELM_VALUES.find((h) => h.key in value)
  if (!helm) {
    const keys = HELM_VALUES.map((h) => `${h.key} (${h.tool})`).join(', ')
    push(
      [],
      `not a document hookmeter knows: no apiVersion and kind, and no Helm values key of ${keys}`,
      'unknown_document'
    )
    return null
  }
  return helm
}

// ---------------------------------------------------------------------------------------------
// Falco rules lists

const FALCO_ITEM_KEYS = [
  'rule',
  'macro',
  'list',
  'required_engine_version',
  'required_plugin_versions',
]

function checkFalcoRules(
  items: unknown[],
  push: (path: string[], message: string, code: string) => void
) {
  items.forEach((item, i) => {
    const at = String(i)
    if (!isObj(item)) {
      push([at], 'expected a rule, macro or list item (a mapping)', 'unknown_item')
      return
    }
    const schema = falcoItemSchema(item)
    if (!schema) {
      push(
        [at],
        `names no item kind: expected one of the keys ${FALCO_ITEM_KEYS.join(', ')}`,
        'unknown_item'
      )
      return
    }
    const parsed = schema.safeParse(item)
    if (!parsed.success) {
      for (const issue of zodIssues(parsed.error, item, schema)) {
        push([at, ...issue.path], issue.message, issue.code)
      }
    }
    // Falco's schema gives override minProperties 1: an empty override changes nothing
    if (isObj(item.override) && Object.keys(item.override).length === 0) {
      push([at, 'override'], 'must not be empty: name the fields to append or replace', 'too_small')
    }
  })
}

function falcoItemSchema(item: Record<string, unknown>): z.ZodType | null {
  if ('rule' in item) return item.append === true || 'override' in item ? falcoRulePatch : falcoRule
  if ('macro' in item) return falcoMacro
  if ('list' in item) return falcoList
  if ('required_engine_version' in item) return falcoEngineVersion
  if ('required_plugin_versions' in item) return falcoPluginVersions
  return null
}

/** Checks a Falco rules file held in a string of the document, counting lines in the outer file. */
function checkEmbedded(
  doc: Document,
  path: string[],
  lineAt: (offset: number) => number,
  result: ValidationResult
): void {
  const node = nodeAt(doc, path)
  if (!isScalar(node) || typeof node.value !== 'string') return
  // a block scalar's text starts on the line after its `|` header; other scalars stay on one line
  const header = lineAt(node.range?.[0] ?? 0)
  const block = node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED
  const inner = validateText(node.value, 'falco-rules')
  for (const i of inner.issues) {
    result.issues.push({
      ...i,
      path: [...path, ...i.path],
      line: block ? header + i.line : header,
    })
  }
}

// ---------------------------------------------------------------------------------------------
// lines

function nodeAt(doc: Document, path: string[]): unknown {
  let node: unknown = doc.contents
  for (const seg of path) {
    if (isMap(node)) node = node.items.find((p) => keyOf(p.key) === seg)?.value
    else if (isSeq(node)) node = node.items[Number(seg)]
    else return undefined
  }
  return node
}

/**
 * The line of the deepest node the path reaches: the key's line for a field (so an unknown or
 * wrong field points at itself), the parent's line for a field that is missing.
 */
function locate(doc: Document, path: string[], lineAt: (offset: number) => number): number {
  let node: unknown = doc.contents
  let line = lineAt((doc.contents as YamlNode | null)?.range?.[0] ?? 0)
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => keyOf(p.key) === seg)
      if (!pair) return line
      const key = pair.key as YamlNode | null
      if (key?.range) line = lineAt(key.range[0])
      node = pair.value
    } else if (isSeq(node)) {
      const item = node.items[Number(seg)] as YamlNode | undefined
      if (!item) return line
      if (item.range) line = lineAt(item.range[0])
      node = item
    } else return line
  }
  return line
}

function keyOf(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value)
  return undefined
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
}

// ---------------------------------------------------------------------------------------------
// zod issues, reworded to name the field and what was found

interface ConvertedIssue {
  path: string[]
  message: string
  code: string
}

export function zodIssues(error: z.ZodError, input: unknown, schema: z.ZodType): ConvertedIssue[] {
  return error.issues.flatMap((issue): ConvertedIssue[] => {
    const path = issue.path.map(String)
    const actual = valueAt(input, path)

    switch (issue.code) {
      case 'unrecognized_keys': {
        const known = knownKeys(schema, path)
        return issue.keys.map((k) => ({
          path: [...path, k],
          code: issue.code,
          message: `unknown field '${k}'${suggest(k, known)}`,
        }))
      }
      case 'invalid_type': {
        if (actual === undefined && isObj(valueAt(input, path.slice(0, -1)))) {
          return [
            {
              path,
              code: issue.code,
              message: `required field is missing (expected ${issue.expected})`,
            },
          ]
        }
        const message =
          custom(issue.message) ?? `expected ${issue.expected}, got ${describe(actual)}`
        return [{ path, code: issue.code, message }]
      }
      case 'invalid_value': {
        const values = issue.values.map((v) => `'${String(v)}'`)
        const message =
          values.length === 1
            ? `expected ${values[0]}, got ${describe(actual)}`
            : `unknown value ${describe(actual)} (expected one of ${values.join(', ')})`
        return [{ path, code: issue.code, message }]
      }
      case 'invalid_format': {
        const what = custom(issue.message) ?? `a value matching ${issue.pattern ?? issue.format}`
        const expected = what.startsWith('expected ') ? what : `expected ${what}`
        return [{ path, code: issue.code, message: `${expected}, got ${describe(actual)}` }]
      }
      case 'too_small': {
        const min = String(issue.minimum)
        const message =
          issue.origin === 'array'
            ? min === '1'
              ? 'must not be empty'
              : `needs at least ${min} entries`
            : issue.origin === 'string'
              ? min === '1'
                ? 'must not be empty'
                : `needs at least ${min} characters`
              : `must be at least ${min}, got ${describe(actual)}`
        return [{ path, code: issue.code, message }]
      }
      case 'too_big': {
        const max = String(issue.maximum)
        const message =
          issue.origin === 'array'
            ? `takes at most ${max} entries`
            : issue.origin === 'string'
              ? `takes at most ${max} characters`
              : `must be at most ${max}, got ${describe(actual)}`
        return [{ path, code: issue.code, message }]
      }
      default:
        return [{ path, code: issue.code, message: issue.message }]
    }
  })
}

/** zod's own messages start with "Invalid"; a schema's custom error is returned as written. */
function custom(message: string): string | null {
  return /^Invalid/.test(message) ? null : message
}

function valueAt(input: unknown, path: string[]): unknown {
  let cur = input
  for (const seg of path) {
    if (Array.isArray(cur)) cur = cur[Number(seg)]
    else if (isObj(cur)) cur = cur[seg]
    else return undefined
  }
  return cur
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'null'
  if (typeof v === 'string') return `'${v.length > 60 ? `${v.slice(0, 57)}...` : v}'`
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return `${typeof v} ${String(v)}`
}

type Def = { type: string; [k: string]: unknown }
const defOf = (s: unknown): Def => (s as { _zod: { def: Def } })._zod.def

function unwrap(s: unknown): unknown {
  let cur = s
  for (let i = 0; i < 16; i++) {
    const def = defOf(cur)
    if (['optional', 'nullable', 'default', 'readonly', 'nonoptional'].includes(def.type)) {
      cur = def.innerType
    } else if (def.type === 'pipe') cur = def.in
    else break
  }
  return cur
}

/** The field names the schema knows at a path, for "did you mean" hints. */
function knownKeys(schema: z.ZodType, path: string[]): string[] {
  let cur = unwrap(schema)
  for (const seg of path) {
    const def = defOf(cur)
    if (def.type === 'object') {
      const next = (def.shape as Record<string, unknown>)[seg]
      if (!next) return []
      cur = unwrap(next)
    } else if (def.type === 'array') cur = unwrap(def.element)
    else if (def.type === 'record') cur = unwrap(def.valueType)
    else return []
  }
  const def = defOf(cur)
  return def.type === 'object' ? Object.keys(def.shape as Record<string, unknown>) : []
}

function suggest(key: string, known: string[]): string {
  if (!known.length) return ''
  const near = known
    .map((k) => ({ k, d: distance(key.toLowerCase(), k.toLowerCase()) }))
    .filter((x) => x.d <= Math.max(2, Math.floor(key.length / 3)))
    .sort((a, b) => a.d - b.d)[0]
  if (near) return ` (did you mean '${near.k}'?)`
  return known.length <= 16 ? ` (known fields: ${known.join(', ')})` : ''
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length]!
}
