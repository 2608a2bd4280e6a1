/** Command-line plumbing: option errors (exit 2), run-time errors (1), cleanups, privileges. */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

/** An invalid command line: the message names the option and what it accepts. Exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Parses `5s`, `500ms`, `2m` or a bare number of seconds into milliseconds. */
export function parseDuration(option: string, value: string, minMs: number, maxMs: number): number {
  const ms = durationMs(value) ?? Number.NaN
  if (!Number.isFinite(ms) || ms < minMs || ms > maxMs) {
    throw new UsageError(
      `${option}: expected a duration from ${fmtMs(minMs)} to ${fmtMs(maxMs)} (such as 5s or 500ms), got '${value}'`
    )
  }
  return ms
}

/** `5s`, `500ms`, `2m` or a bare number of seconds in ms; null for anything else. */
export function durationMs(value: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim())
  return m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : null
}

function fmtMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}

/** Parses a whole number in [min, max]; anything else is a UsageError naming the option. */
export function parseInteger(option: string, value: string, min: number, max: number): number {
  const n = /^-?\d+$/.test(value.trim()) ? Number(value) : Number.NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${option}: expected a whole number from ${min} to ${max}, got '${value}'`)
  }
  return n
}

const CAP_SYS_ADMIN = 21n
const CAP_PERFMON = 38n
const CAP_BPF = 39n

/** Null when this process may load and inspect eBPF programs; else why not. */
export function privilegeProblem(): string | null {
  let capEff = 0n
  try {
    const status = readFileSync('/proc/self/status', 'utf8')
    capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`)
  } catch {
    return 'cannot read /proc/self/status to check capabilities'
  }
  const has = (c: bigint) => (capEff >> c) & 1n
  if (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) return null
  const uid = process.getuid?.() ?? -1
  return `hookmeter needs root, or CAP_BPF with CAP_PERFMON (and CAP_SYS_ADMIN to see other processes' programs); running as uid ${uid} without them`
}

/** A failure at run time (exit code 1), with a message for the user. */
export class RuntimeError extends Error {
  override readonly name = 'RuntimeError'
}

/** Cleanups that must run on every exit path, signals included; the last added runs first. */
const cleanups: Array<() => void | Promise<void>> = []

export function onCleanup(fn: () => void | Promise<void>): void {
  cleanups.push(fn)
}

export async function runCleanups(onError: (err: Error) => void): Promise<void> {
  while (cleanups.length) {
    try {
      await cleanups.pop()!()
    } catch (err) {
      onError(err as Error)
    }
  }
}

export const COMMON_OPTIONS = {
  'probe-object': { type: 'string' },
  'kernel-btf': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>

/** node:util parseArgs, strict, with its errors turned into UsageErrors. */
export function parseOptions<T extends OptionSpec>(
  args: string[],
  options: T,
  opts: { positionals?: number; rawValues?: string[] } = {}
) {
  // `--iterations -5` would read as a missing value: join it so the range check can name it;
  // options in rawValues (argv for the benchmarked binary) take the next word whatever it is
  const all: OptionSpec = { ...COMMON_OPTIONS, ...options }
  const joined: string[] = []
  for (let i = 0; i < args.length; i++) {
    const name = args[i]!.startsWith('--') ? args[i]!.slice(2) : ''
    const next = args[i + 1]
    const raw = opts.rawValues?.includes(name) && next !== undefined
    if (all[name]?.type === 'string' && (raw || /^-\d/.test(next ?? '')))
      joined.push(`${args[i]}=${args[++i]}`)
    else joined.push(args[i]!)
  }
  try {
    const parsed = parseArgs({
      args: joined,
      options: { ...COMMON_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    })
    checkPositionals(parsed, opts.positionals ?? 0)
    return parsed
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw new UsageError(parseArgsMessage((err as Error).message))
  }
}

function checkPositionals(parsed: { positionals: string[] }, allowed: number): void {
  if (parsed.positionals.length > allowed) {
    throw new UsageError(`unexpected argument '${parsed.positionals[allowed]}'`)
  }
}

export function requirePrivilege(): void {
  const problem = privilegeProblem()
  if (problem) throw new RuntimeError(problem)
}

/** node:util's parse errors, reworded to name the option first like every other usage error. */
function parseArgsMessage(raw: string): string {
  const msg = raw.replace(/^TypeError \[[A-Z_]+\]: /, '')
  const unknown = /^Unknown option '([^']+)'/.exec(msg)
  if (unknown) return `${unknown[1]}: unknown option`
  const missing = /^Option '([^']+?)(?: <value>)?' argument missing/.exec(msg)
  if (missing) return `${missing[1]!.split(',').pop()!.trim()}: expected a value`
  const notValue = /^Option '([^']+?)' does not take an argument/.exec(msg)
  if (notValue) return `${notValue[1]!.split(',').pop()!.trim()}: takes no value`
  const positional = /^Unexpected argument '([^']+)'/.exec(msg)
  if (positional) return `unexpected argument '${positional[1]}'`
  return msg.charAt(0).toLowerCase() + msg.slice(1)
}

let stopSignal: NodeJS.Signals | null = null

/** Records which signal asked the command to stop, for its exit code. */
export function noteSignal(sig: NodeJS.Signals): void {
  stopSignal ??= sig
}

/** The conventional exit code of a command interrupted by a signal: 128 + its number. */
export function interruptedExitCode(): number {
  return stopSignal === 'SIGTERM' ? 143 : 130
}

/**
 * A string safe to print on a terminal: control characters (a comm, a label or an argument can
 * carry escape sequences) are shown as \xNN instead of being sent to the terminal.
 */
export function printable(s: string): string {
  // eslint-style ranges: C0 controls, DEL and C1 controls
  return s.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`
  )
}

/** printable() for a whole report: keeps its line breaks. */
export function printableText(text: string): string {
  return text.split('\n').map(printable).join('\n')
}
