/**
 * The binaries hookmeter may exec. The agent is privileged: it runs only an absolute path that is
 * on this list, given exactly, never through a shell.
 */
import { accessSync, constants, realpathSync, statSync } from 'node:fs'
import { dirname, isAbsolute, normalize } from 'node:path'

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
  let real: string
  try {
    real = realpathSync(binary)
    if (!statSync(real).isFile()) return `'${binary}' is not a regular file`
    accessSync(real, constants.X_OK)
  } catch {
    return `'${binary}' does not exist or is not executable`
  }

  // a symlink must land on a binary that is itself allowed: an allowlisted link to /usr/bin/env
  // would otherwise run anything its arguments name
  if (real !== binary && !allowed.includes(real)) {
    return `'${binary}' resolves to '${real}', which is not on the allowlist`
  }

  // whoever can replace the file, or rename it inside its directory, chooses what root runs
  for (const path of [real, dirname(real)]) {
    const st = statSync(path)
    if (st.uid !== 0 || st.mode & 0o022) {
      return `'${path}' can be changed by a user other than root (owner uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}); hookmeter runs only root-controlled binaries`
    }
  }
  return null
}

/** The path to exec: the allowlisted path resolved, checked by binaryProblem first. */
export function resolvedBinary(binary: string): string {
  return realpathSync(binary)
}
