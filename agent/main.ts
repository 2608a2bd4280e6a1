#!/usr/bin/env bun
/**
 * hookmeter: what eBPF security tools cost on this node, per hook. The same entry point is the
 * CLI on one host and, with `serve`, the node agent.
 */
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { setLibbpfSink } from '../libbpf-bindings/libbpf.ts'
import { StatsSession } from '../libbpf-bindings/stats.ts'
import { releaseTracefs } from '../libbpf-bindings/tracefs.ts'
import { parseDuration, parseInteger, privilegeProblem, UsageError } from './cli.ts'
import { calibrateDelivery, type DeliveryReport } from './delivery.ts'
import { KERNEL_BTF, probeKernel, type KernelReport } from './features.ts'
import { measureWindow, renderTable, sleep, snapshot, diffWindow } from './hooks.ts'
import { takeInventory } from './inventory.ts'
import { createLogger } from './log.ts'
import { ExecProbe } from './probe.ts'
import pkg from '../package.json' with { type: 'json' }

const log = createLogger()
setLibbpfSink((level, message) => {
  if (level === 'debug') return
  log.debug(`libbpf: ${message}`)
})

const USAGE = `usage: hookmeter <command> [options]

commands:
  node [--delivery] [--execs N] [--json]      kernel features; with --delivery, ring and perf
                                              buffer delivery latency and wake-up cost
  hooks [--once] [--window 5s] [--json]       every eBPF program on the host: ns/run, runs/s,
                                              CPU share, owners, hook (live, or one window)
  version

common options:
  --probe-object PATH   exec probe object to load instead of the built-in one (development)
  --kernel-btf PATH     kernel BTF to relocate against (default ${KERNEL_BTF})
`

/** Cleanups that must run on every exit path, signals included (last added runs first). */
const cleanups: Array<() => void | Promise<void>> = []
let exiting = false

async function runCleanups(): Promise<void> {
  while (cleanups.length) {
    try {
      await cleanups.pop()!()
    } catch (err) {
      log.warn('cleanup failed', { error: (err as Error).message })
    }
  }
  releaseTracefs()
}

function onSignal(sig: NodeJS.Signals): void {
  if (exiting) return
  exiting = true
  log.info(`${sig}: stopping`)
  runCleanups().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)

function common(values: Record<string, unknown>) {
  return {
    probeObject: values['probe-object'] as string | undefined,
    kernelBtf: values['kernel-btf'] as string | undefined,
  }
}

const COMMON_OPTIONS = {
  'probe-object': { type: 'string' },
  'kernel-btf': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>>(
  args: string[],
  options: T
) {
  try {
    return parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''))
  }
}

function requirePrivilege(): void {
  const problem = privilegeProblem()
  if (problem) throw new RuntimeError(problem)
}

/** A failure at run time (exit code 1), with a message for the user. */
class RuntimeError extends Error {}

async function loadProbe(opts: { probeObject?: string; kernelBtf?: string }): Promise<ExecProbe> {
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
    cleanups.push(() => probe.close())
    return probe
  } catch (err) {
    throw new RuntimeError(`cannot load the exec probe${opts.probeObject ? ` from ${opts.probeObject}` : ''}: ${(err as Error).message}`)
  }
}

function printKernel(k: KernelReport): void {
  const lines = [`kernel ${k.release} (${k.arch}), libbpf ${k.libbpf}, kernel.bpf_stats_enabled=${k.statsSysctl}`]
  for (const f of k.features) lines.push(`  ${f.name.padEnd(15)} ${f.status.padEnd(8)} ${f.detail}`)
  process.stdout.write(`${lines.join('\n')}\n`)
}

function printDelivery(d: DeliveryReport): void {
  const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`
  const lines = [
    '',
    `delivery calibration: ${d.execs} execs of ${d.binary} per pass, statistics ${d.statsMode}`,
    `  exit program with no output: ${us(d.exitProgNoOutputNs)} per exec`,
  ]
  for (const [mech, f] of Object.entries(d.mechanisms)) {
    lines.push(
      `  ${mech}:`,
      `    delivery latency (woken per record)  p50 ${us(f.deliveryNs.p50)}  p99 ${us(f.deliveryNs.p99)}  (${f.deliveryNs.samples} records)`,
      `    in-kernel cost of a record           with wake-up ${us(f.recordNs.withWakeup)}  without ${us(f.recordNs.withoutWakeup)} (1 wake-up per ${f.batchSize})`,
      `    the wake-up itself                   ${us(f.wakeupNs)}`,
      `    received ${f.received.perRecord} + ${f.received.batched}, lost ${f.lost.perRecord} + ${f.lost.batched}`
    )
  }
  process.stdout.write(`${lines.join('\n')}\n`)
}

async function cmdNode(args: string[]): Promise<void> {
  const { values } = parse(args, {
    delivery: { type: 'boolean' },
    execs: { type: 'string' },
    json: { type: 'boolean' },
  })
  const execs = values.execs === undefined ? 500 : parseInteger('--execs', values.execs, 10, 100_000)
  requirePrivilege()
  const opts = common(values)

  const kernel = await probeKernel({ btfPath: opts.kernelBtf })
  const probe = await loadProbe(opts)
  let delivery: DeliveryReport | undefined
  if (values.delivery) {
    delivery = await calibrateDelivery({
      probe,
      execs,
      onStep: (step) => log.info(`delivery calibration: ${step}`),
    })
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ version: pkg.version, kernel, probe: 'loaded and verified', delivery })}\n`)
  } else {
    printKernel(kernel)
    process.stdout.write('  exec probe      yes      loaded and verified\n')
    if (delivery) printDelivery(delivery)
  }
}

async function cmdHooks(args: string[]): Promise<void> {
  const { values } = parse(args, {
    once: { type: 'boolean' },
    window: { type: 'string' },
    interval: { type: 'string' },
    json: { type: 'boolean' },
  })
  const windowMs = values.window === undefined ? 5000 : parseDuration('--window', values.window, 1000, 300_000)
  const intervalMs = values.interval === undefined ? 1000 : parseDuration('--interval', values.interval, 200, 60_000)
  requirePrivilege()

  const stats = StatsSession.open()
  cleanups.push(() => stats.close())

  if (values.once || values.json) {
    const w = await measureWindow(windowMs, stats.mode)
    process.stdout.write(values.json ? `${JSON.stringify(w)}\n` : `${renderTable(w)}\n`)
    return
  }

  // live view: the first window is drawn only after a baseline snapshot a full interval old
  const stop = new AbortController()
  process.removeListener('SIGINT', onSignal)
  process.once('SIGINT', () => stop.abort())
  process.stdout.write('\x1b[?25l')
  cleanups.push(() => void process.stdout.write('\x1b[?25h\n'))
  let prev = snapshot()
  process.stdout.write(`\x1b[2J\x1b[Hhookmeter hooks: taking a baseline (${intervalMs} ms)…`)
  while (!stop.signal.aborted) {
    await sleep(intervalMs, stop.signal)
    if (stop.signal.aborted) break
    const cur = snapshot()
    const w = diffWindow(prev, cur, takeInventory(), stats.mode)
    prev = cur
    process.stdout.write(`\x1b[2J\x1b[H${renderTable(w)}\n\n(ctrl-c to quit)`)
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case 'node':
        await cmdNode(rest)
        break
      case 'hooks':
        await cmdHooks(rest)
        break
      case 'version':
      case '--version':
        process.stdout.write(`hookmeter ${pkg.version}\n`)
        break
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE)
        break
      default:
        throw new UsageError(`unknown command '${command}' (commands: node, hooks, version)`)
    }
    return 0
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`hookmeter: ${err.message}\n${USAGE}`)
      return 2
    }
    if (err instanceof RuntimeError) {
      log.error(err.message)
      return 1
    }
    log.error((err as Error).message ?? String(err), { stack: (err as Error).stack })
    return 1
  } finally {
    await runCleanups()
  }
}

process.exitCode = await main(process.argv.slice(2))
