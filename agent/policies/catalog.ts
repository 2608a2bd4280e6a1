/**
 * The study's Table 1 as data (policies/scopes.yaml): each tool's policy scopes, what the study
 * says each covers, and which hook classes show it. `scopesShown` applies DESIGN.md's rule: a
 * scope counts as shown by the live inventory when a program of that tool is attached to a hook
 * of that kind; scopes no hook can show are user-space scopes.
 */
import { parse } from 'yaml'
import { z } from 'zod'

import catalogText from '../../policies/scopes.yaml' with { type: 'text' }
import type { KnownTool } from '../tools/types.ts'
import { objectMeta } from './schemas.ts'

/**
 * Kinds of hook, each a clause of DESIGN.md's rule. `non-syscall-tracepoint` narrows
 * `tracepoint` for Falco, whose Tracepoints scope covers kernel events that are not syscalls;
 * `kernel-extra` is Tracee's Extra scope (activity that syscalls miss), which DESIGN.md gives
 * no clause for: it is read here as a kprobe, fentry or LSM program, where Tracee's
 * non-syscall events come from.
 */
export const HOOK_CLASSES = [
  'kprobe',
  'tracepoint',
  'non-syscall-tracepoint',
  'uprobe',
  'lsm',
  'syscall',
  'process',
  'file',
  'network',
  'capability',
  'kernel-extra',
] as const
export type HookClass = (typeof HOOK_CLASSES)[number]

const scopeEntry = z.strictObject({
  scope: z.string().min(1),
  covers: z.string().min(1),
  /** the hook classes that show the scope, or [user-space] for a scope no hook can show */
  shownBy: z.array(z.enum([...HOOK_CLASSES, 'user-space'])).min(1),
})
export type ScopeEntry = z.infer<typeof scopeEntry>

export const scopeCatalog = z.strictObject({
  apiVersion: z.literal('hookmeter/v1'),
  kind: z.literal('PolicyScopeCatalog'),
  metadata: objectMeta,
  tools: z.strictObject({
    kubearmor: z.array(scopeEntry).min(1),
    tetragon: z.array(scopeEntry).min(1),
    falco: z.array(scopeEntry).min(1),
    tracee: z.array(scopeEntry).min(1),
  }),
})
export type ScopeCatalog = z.infer<typeof scopeCatalog>

/** Rules the schema cannot say: user-space stands alone, scope names are unique per tool. */
export function catalogRules(doc: unknown): Array<{ path: string[]; message: string }> {
  const out: Array<{ path: string[]; message: string }> = []
  const parsed = scopeCatalog.safeParse(doc)
  if (!parsed.success) return out
  for (const [tool, entries] of Object.entries(parsed.data.tools)) {
    const names = new Set<string>()
    entries.forEach((e, i) => {
      if (e.shownBy.includes('user-space') && e.shownBy.length > 1) {
        out.push({
          path: ['tools', tool, String(i), 'shownBy'],
          message: 'user-space stands alone: a user-space scope has no hook that shows it',
        })
      }
      if (names.has(e.scope)) {
        out.push({
          path: ['tools', tool, String(i), 'scope'],
          message: `'${e.scope}' is listed twice`,
        })
      }
      names.add(e.scope)
    })
  }
  return out
}

let loaded: ScopeCatalog | null = null

/** The shipped catalog (embedded in the binary); throws if the file does not match its schema. */
export function loadCatalog(): ScopeCatalog {
  if (loaded) return loaded
  const result = scopeCatalog.safeParse(parse(catalogText))
  if (!result.success) {
    const first = result.error.issues[0]
    throw new Error(`policies/scopes.yaml: ${first?.path.join('.')}: ${first?.message}`)
  }
  loaded = result.data
  return loaded
}

// ---------------------------------------------------------------------------------------------
// hooks, as the inventory writes them: `tracepoint/syscalls/sys_enter_execve`,
// `raw_tracepoint/sys_enter`, `tp_btf/sched_process_exec`, `kprobe/security_bprm_check+0x4`,
// `lsm/bprm_check_security`, `cgroup/inet_ingress (cgroup id 5)`, `uprobe/…`, `fentry/…`

interface ParsedHook {
  raw: string
  kind: string
  /** the tracepoint category, when the hook names one */
  category: string | null
  target: string
}

export function parseHook(hook: string): ParsedHook {
  const parts = hook.split('/')
  const kind = parts[0] ?? ''
  const rest = parts.slice(1)
  const target = (rest.at(-1) ?? '').replace(/\s*\(.*\)$/, '').replace(/\+0x[0-9a-f]+$/i, '')
  const category = kind === 'tracepoint' && rest.length > 1 ? (rest[0] ?? null) : null
  return { raw: hook, kind, category, target }
}

const KPROBE_KINDS = new Set(['kprobe', 'kretprobe', 'fentry', 'fexit', 'fmod_ret'])
const TRACEPOINT_KINDS = new Set(['tracepoint', 'raw_tracepoint', 'tp_btf'])
const UPROBE_KINDS = new Set(['uprobe', 'uretprobe'])
const KERNEL_KINDS = new Set([...KPROBE_KINDS, ...TRACEPOINT_KINDS, 'lsm'])

const FILE_TOKENS = new Set([
  'open',
  'openat',
  'openat2',
  'creat',
  'read',
  'write',
  'pread64',
  'pwrite64',
  'readv',
  'writev',
  'preadv',
  'pwritev',
  'preadv2',
  'pwritev2',
  'file',
  'filp',
])
const NETWORK_TOKENS = new Set([
  'socket',
  'sock',
  'tcp',
  'udp',
  'inet',
  'skb',
  'connect',
  'accept',
  'accept4',
  'bind',
  'listen',
  'sendmsg',
  'recvmsg',
  'sendto',
  'recvfrom',
])
const NETWORK_TYPES = new Set([
  'cgroup_skb',
  'cgroup_sock',
  'cgroup_sock_addr',
  'sock_ops',
  'sk_skb',
  'sk_msg',
  'socket_filter',
])

const tokens = (target: string) => target.split(/[_.]+/).filter(Boolean)

function isSyscallHook(h: ParsedHook): boolean {
  if (!TRACEPOINT_KINDS.has(h.kind)) return false
  if (h.category === 'syscalls' || h.category === 'raw_syscalls') return true
  return /^sys_(enter|exit)($|_)/.test(h.target)
}

interface ClassRule {
  /** what the class is, for `why`: "a kprobe or fentry program" */
  what: string
  hook: (h: ParsedHook) => boolean
  /** program types that show the class on their own; kprobe is not one, uprobes share it */
  types?: ReadonlySet<string>
}

const CLASS_RULES: Record<HookClass, ClassRule> = {
  kprobe: { what: 'a kprobe or fentry program', hook: (h) => KPROBE_KINDS.has(h.kind) },
  tracepoint: {
    what: 'a tracepoint, raw tracepoint or tp_btf program',
    hook: (h) => TRACEPOINT_KINDS.has(h.kind),
    types: new Set(['tracepoint', 'raw_tracepoint', 'raw_tracepoint_writable']),
  },
  'non-syscall-tracepoint': {
    what: 'a tracepoint, raw tracepoint or tp_btf program outside sys_enter / sys_exit',
    hook: (h) => TRACEPOINT_KINDS.has(h.kind) && !isSyscallHook(h),
  },
  uprobe: { what: 'a uprobe program', hook: (h) => UPROBE_KINDS.has(h.kind) },
  lsm: { what: 'an LSM program', hook: (h) => h.kind === 'lsm', types: new Set(['lsm']) },
  syscall: {
    what: 'a program on sys_enter / sys_exit or a syscalls:* tracepoint',
    hook: isSyscallHook,
  },
  process: {
    what: 'a program on sched_process_*',
    hook: (h) => KERNEL_KINDS.has(h.kind) && h.target.startsWith('sched_process_'),
  },
  file: {
    what: 'a program on a file hook (open, read, write, file LSM hooks)',
    hook: (h) => KERNEL_KINDS.has(h.kind) && tokens(h.target).some((t) => FILE_TOKENS.has(t)),
  },
  network: {
    what: 'a program on a socket, tcp or cgroup-skb hook',
    hook: (h) =>
      (KERNEL_KINDS.has(h.kind) && tokens(h.target).some((t) => NETWORK_TOKENS.has(t))) ||
      (h.kind === 'cgroup' && /^(inet|sock)/.test(h.target)),
    types: NETWORK_TYPES,
  },
  capability: {
    what: 'a program on capable / cap_* hooks',
    hook: (h) =>
      KERNEL_KINDS.has(h.kind) && (/(^|_)capable$/.test(h.target) || h.target.startsWith('cap_')),
  },
  'kernel-extra': {
    what: 'a kprobe, fentry or LSM program (events outside the syscall path)',
    hook: (h) => KPROBE_KINDS.has(h.kind) || h.kind === 'lsm',
    types: new Set(['lsm']),
  },
}

export interface ScopeShown {
  scope: string
  covers: string
  shown: boolean | 'user-space'
  why: string
}

/**
 * Which of a tool's Table 1 scopes the live inventory shows, given the hooks its programs are
 * attached to and their program types (a type alone shows a scope only where it is
 * unambiguous: lsm, tracepoint, raw_tracepoint, the socket and cgroup-skb types).
 */
export function scopesShown(
  tool: KnownTool,
  hooks: string[],
  programTypes: string[],
  catalog: ScopeCatalog = loadCatalog()
): ScopeShown[] {
  const parsed = hooks.filter((h) => h && h !== 'unknown').map(parseHook)
  return catalog.tools[tool].map((entry): ScopeShown => {
    const base = { scope: entry.scope, covers: entry.covers }
    if (entry.shownBy.includes('user-space')) {
      return { ...base, shown: 'user-space', why: 'works in user space: no kernel hook shows it' }
    }
    for (const cls of entry.shownBy as HookClass[]) {
      const rule = CLASS_RULES[cls]
      const hook = parsed.find(rule.hook)
      if (hook) return { ...base, shown: true, why: `${hook.raw}: ${rule.what}` }
      const type = programTypes.find((t) => rule.types?.has(t))
      if (type) return { ...base, shown: true, why: `a program of type ${type}: ${rule.what}` }
    }
    const wanted = (entry.shownBy as HookClass[]).map((c) => CLASS_RULES[c].what).join(', or ')
    return {
      ...base,
      shown: false,
      why: `no ${wanted.replace(/^an? /, '')} of this tool is attached`,
    }
  })
}
