/**
 * The binaries hookmeter may exec. The agent is privileged: it runs only an absolute path that is
 * on this list, given exactly, never through a shell.
 */
import { accessSync, constants, statSync } from 'node:fs'
import { isAbsolute, normalize } from 'node:path'

export const DEFAULT_ALLOWED = ['/usr/bin/ls', '/bin/ls', '/usr/bin/true']

/** The allowlist: the defaults, HOOKMETER_ALLOWED_BINARIES (colon-separated), and extras. */
export function allowedBinaries(extra: string[] = [], env = process.env): string[] {
  const fromEnv = (env.HOOKMETER_ALLOWED_BINARIES ?? '').split(':').filter(Boolean)
  return [...new Set([...DEFAULT_ALLOWED, ...fromEnv, ...extra])]
}

/** Null when `binary` may be run; else what is wrong, for an error naming the option. */
export function binaryProblem(binary: string, allowed: string[]): string | null {
  if (!isAbsolute(binary)) return `expected an absolute path, got '${binary}'`
  if (normalize(binary) !== binary) return `expected a normalised absolute path, got '${binary}'`
  if (!allowed.includes(binary)) {
    return `'${binary}' is not on the allowlist (${allowed.join(', ')}); add it with --allow-binary or HOOKMETER_ALLOWED_BINARIES`
  }
  try {
    if (!statSync(binary).isFile()) return `'${binary}' is not a regular file`
    accessSync(binary, constants.X_OK)
  } catch {
    return `'${binary}' does not exist or is not executable`
  }
  return null
}
