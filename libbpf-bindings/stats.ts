import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'

import { LibbpfError } from './errors.ts'
import { bpf } from './libbpf.ts'
import { libc } from './libc.ts'

export const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled'

/**
 * How run_time_ns / run_cnt were kept counting: through our own BPF_ENABLE_STATS fd (5.8+), by
 * the sysctl we switched on (older kernels), or already on by someone else's sysctl.
 */
export type StatsMode = 'fd' | 'sysctl' | 'sysctl-preset'

export function readStatsSysctl(): number {
  return Number(readFileSync(STATS_SYSCTL, 'utf8').trim())
}

/**
 * Keeps BPF run-time statistics on while open. Each consumer holds its own session: with an fd the
 * kernel counts enablers, so closing ours never turns statistics off under another tool. Only on
 * kernels without BPF_ENABLE_STATS is the shared sysctl used, and its previous value restored.
 *
 * `markerPath`, when given, records a sysctl we switched on so that `recoverStatsSysctl` can put it
 * back after a crash.
 */
export class StatsSession implements Disposable {
  #fd: number
  #restoreSysctl: number | null
  #closed = false

  private constructor(
    readonly mode: StatsMode,
    fd: number,
    restore: number | null,
    private readonly markerPath?: string
  ) {
    this.#fd = fd
    this.#restoreSysctl = restore
  }

  static open(opts: { markerPath?: string; forceSysctl?: boolean } = {}): StatsSession {
    if (!opts.forceSysctl) {
      const fd = bpf.bpf_enable_stats(0 /* BPF_STATS_RUN_TIME */)
      if (fd >= 0) return new StatsSession('fd', fd, null)
      if (fd !== -22 && fd !== -38) throw new LibbpfError('bpf_enable_stats', -fd)
    }

    const before = readStatsSysctl()
    if (before === 1) return new StatsSession('sysctl-preset', -1, null)
    if (opts.markerPath) writeFileSync(opts.markerPath, String(before))
    writeFileSync(STATS_SYSCTL, '1')
    return new StatsSession('sysctl', -1, before, opts.markerPath)
  }

  get closed(): boolean {
    return this.#closed
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#fd >= 0) libc.close(this.#fd)
    this.#fd = -1
    if (this.#restoreSysctl !== null) {
      writeFileSync(STATS_SYSCTL, String(this.#restoreSysctl))
      if (this.markerPath) rmSync(this.markerPath, { force: true })
    }
  }

  [Symbol.dispose](): void {
    this.close()
  }
}

/** Puts the sysctl back if a previous process switched it on and died before restoring it. */
export function recoverStatsSysctl(markerPath: string): boolean {
  if (!existsSync(markerPath)) return false
  const before = readFileSync(markerPath, 'utf8').trim()
  if (before === '0' || before === '1') writeFileSync(STATS_SYSCTL, before)
  rmSync(markerPath, { force: true })
  return true
}
