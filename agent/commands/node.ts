import {
  interruptedExitCode,
  parseInteger,
  parseOptions,
  requirePrivilege,
  UsageError,
} from '../cli.ts'
import { calibrateDelivery, DeliveryAbortedError, type DeliveryReport } from '../delivery.ts'
import { probeKernel, type KernelReport } from '../features.ts'
import { commonOptions, loadProbe, log } from './common.ts'
import pkg from '../../package.json' with { type: 'json' }

function printKernel(k: KernelReport): void {
  const lines = [
    `kernel ${k.release} (${k.arch}), libbpf ${k.libbpf}, kernel.bpf_stats_enabled=${k.statsSysctl}`,
  ]
  for (const f of k.features) lines.push(`  ${f.name.padEnd(15)} ${f.status.padEnd(8)} ${f.detail}`)
  process.stdout.write(`${lines.join('\n')}\n`)
}

export function formatDelivery(d: DeliveryReport): string {
  const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`
  const lines = [
    `delivery calibration: ${d.execs} execs of ${d.binary} per pass, statistics ${d.statsMode}`,
    `  exit program with no output: ${us(d.exitProgNoOutputNs)} per exec`,
  ]
  for (const [mech, f] of Object.entries(d.mechanisms)) {
    const lat = f.deliveryNs
    lines.push(
      `  ${mech}:`,
      `    delivery latency (woken per record)  p50 ${us(lat.p50)}  p99 ${us(lat.p99)}  (${lat.samples} records)`,
      `    in-kernel cost of a record           with wake-up ${us(f.recordNs.withWakeup)}  without ${us(f.recordNs.withoutWakeup)} (1 wake-up per ${f.batchSize})`,
      `    the wake-up itself                   ${us(f.wakeupNs)}`,
      `    received ${f.received.perRecord} + ${f.received.batched}, lost ${f.lost.perRecord} + ${f.lost.batched}`
    )
  }
  return lines.join('\n')
}

export async function cmdNode(args: string[], stop: AbortSignal): Promise<number> {
  const { values } = parseOptions(args, {
    delivery: { type: 'boolean' },
    execs: { type: 'string' },
    json: { type: 'boolean' },
  })
  const execs =
    values.execs === undefined ? 500 : parseInteger('--execs', values.execs, 10, 100_000)
  requirePrivilege()
  const opts = commonOptions(values)

  const kernel = await probeKernel({ btfPath: opts.kernelBtf })
  const probe = await loadProbe(opts)
  let delivery: DeliveryReport | undefined
  if (values.delivery) {
    try {
      delivery = await calibrateDelivery({
        probe,
        execs,
        signal: stop,
        onStep: (step) => log.info(`delivery calibration: ${step}`),
      })
    } catch (err) {
      if (!(err instanceof DeliveryAbortedError)) throw err
      log.warn('delivery calibration interrupted; nothing is left attached')
      return interruptedExitCode()
    }
  }

  if (values.json) {
    const out = { version: pkg.version, kernel, probe: 'loaded and verified', delivery }
    process.stdout.write(`${JSON.stringify(out)}\n`)
    return 0
  }
  printKernel(kernel)
  process.stdout.write('  exec probe      yes      loaded and verified\n')
  if (delivery) process.stdout.write(`\n${formatDelivery(delivery)}\n`)
  return 0
}
