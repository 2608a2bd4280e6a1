import { existsSync } from 'node:fs'

import { onCleanup, RuntimeError } from '../cli.ts'
import { KERNEL_BTF } from '../features.ts'
import { createLogger } from '../log.ts'
import { ExecProbe } from '../probe.ts'

export const log = createLogger()

export interface CommonOptions {
  probeObject?: string
  kernelBtf?: string
}

export function commonOptions(values: Record<string, unknown>): CommonOptions {
  return {
    probeObject: values['probe-object'] as string | undefined,
    kernelBtf: values['kernel-btf'] as string | undefined,
  }
}

/** Loads and verifies the exec probe, closed on every exit path. */
export async function loadProbe(opts: CommonOptions): Promise<ExecProbe> {
  const btf = opts.kernelBtf ?? KERNEL_BTF
  if (!existsSync(btf)) {
    throw new RuntimeError(
      `no kernel BTF at ${btf}: the exec probe needs a kernel built with CONFIG_DEBUG_INFO_BTF`
    )
  }
  if (opts.probeObject && !existsSync(opts.probeObject)) {
    throw new RuntimeError(`--probe-object: no file at ${opts.probeObject}`)
  }
  try {
    const probe = await ExecProbe.load(opts.probeObject, { btfCustomPath: opts.kernelBtf })
    onCleanup(() => probe.close())
    return probe
  } catch (err) {
    const from = opts.probeObject ? ` from ${opts.probeObject}` : ''
    throw new RuntimeError(`cannot load the exec probe${from}: ${(err as Error).message}`)
  }
}

/** Progress of long work: a line redrawn in place on a terminal, log lines every 10% elsewhere. */
export function progressReporter(label: string): (done: number, total: number) => void {
  const tty = process.stderr.isTTY
  const started = Date.now()
  let lastDecile = -1
  return (done, total) => {
    const pct = total ? (done / total) * 100 : 100
    if (tty) {
      const elapsed = (Date.now() - started) / 1000
      const eta = done ? (elapsed / done) * (total - done) : 0
      const line = `${label} ${done}/${total} ${pct.toFixed(0)}%  eta ${eta.toFixed(1)}s`
      process.stderr.write(`\r\x1b[K${line}${done >= total ? '\n' : ''}`)
      return
    }
    const decile = Math.floor(pct / 10)
    if (decile !== lastDecile) {
      lastDecile = decile
      log.info(`${label} progress`, { done, total })
    }
  }
}
