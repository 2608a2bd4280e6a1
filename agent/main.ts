#!/usr/bin/env bun
/**
 * hookmeter: what eBPF security tools cost on this node, per hook. The same entry point is the
 * CLI on one host and, with `serve`, the node agent.
 */
import { setLibbpfSink } from '../libbpf-bindings/libbpf.ts'
import { releaseTracefs } from '../libbpf-bindings/tracefs.ts'
import { noteSignal, RuntimeError, runCleanups, UsageError } from './cli.ts'
import { cmdArch } from './commands/arch.ts'
import { cmdBench } from './commands/bench.ts'
import { log } from './commands/common.ts'
import { cmdHooks } from './commands/hooks.ts'
import { cmdNode } from './commands/node.ts'
import { cmdPolicies } from './commands/policies.ts'
import { cmdServe } from './commands/serve.ts'
import { KERNEL_BTF } from './features.ts'
import pkg from '../package.json' with { type: 'json' }

const USAGE = `usage: hookmeter <command> [options]

commands:
  bench micro [options]    the micro benchmark: exec a binary N times; loop totals, kernel
                           phases, and the cost per exec of every eBPF program by owner
      --iterations N (10000)  --binary PATH (/usr/bin/ls)  --args ARG (repeatable)
      --warmup N (100)  --condition baseline|no-policy|policy  --label TEXT  --json
      --data-dir DIR (HOOKMETER_DATA_DIR, /var/lib/hookmeter)  --allow-binary PATH
  bench compare A B        overhead of run B over run A, with a 95% confidence interval
  bench list | show ID     stored runs
  serve [options]          the node agent: HTTP API, Prometheus metrics, report page
      --address IP (127.0.0.1)  --port N (9464)  --data-dir DIR  --token-file FILE
      (or HOOKMETER_TOKEN; without a token the agent is read-only and loopback-only)
      --stats always|runs (always)  --allow-binary PATH
  node [--delivery]        kernel features; with --delivery, ring and perf buffer delivery
                           latency and wake-up cost  [--execs N] [--json]
  hooks [--once]           every eBPF program on the host: ns/run, runs/s, CPU share, owners,
                           hook (live, or one window)  [--window 5s] [--interval 1s] [--json]
  arch [TOOL] [--json] [--data-dir DIR]
                           each security tool as observed now: programs and hooks, maps by
                           type and size, delivery, tail-call graph, policy scopes
                           (TOOL: kubearmor, tetragon, falco, tracee, other)
  policies validate FILE…  check tool policies against their schemas (audit only), with lines
  policies render --tool TOOL --binary PATH [--kind host|pod] [--form rules|helm|configmap]
                           the benchmark's audit policy for another binary
  version

common options:
  --probe-object PATH   exec probe object to load instead of the built-in one (development)
  --kernel-btf PATH     kernel BTF to relocate against (default ${KERNEL_BTF})

exit codes: 0 done, 1 failed, 2 invalid command line, 130/143 interrupted by SIGINT/SIGTERM
(serve exits 0 when asked to stop)
`

setLibbpfSink((level, message) => {
  if (level !== 'debug') log.debug(`libbpf: ${message}`)
})

// the first signal asks the command to stop and clean up; a second one exits at once
const stop = new AbortController()
function onSignal(sig: NodeJS.Signals): void {
  if (stop.signal.aborted) {
    runCleanups(() => {}).finally(() => process.exit(sig === 'SIGINT' ? 130 : 143))
    return
  }
  log.info(`${sig}: stopping`)
  noteSignal(sig)
  stop.abort()
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case 'bench':
        return await cmdBench(rest, stop.signal)
      case 'arch':
        return await cmdArch(rest)
      case 'policies':
        return await cmdPolicies(rest)
      case 'serve':
        return await cmdServe(rest, stop.signal)
      case 'node':
        return await cmdNode(rest, stop.signal)
      case 'hooks':
        return await cmdHooks(rest, stop.signal)
      case 'version':
      case '--version':
        process.stdout.write(`hookmeter ${pkg.version}\n`)
        return 0
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE)
        return 0
      default:
        throw new UsageError(
          `unknown command '${command}' (commands: bench, serve, node, hooks, arch, policies, version)`
        )
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`hookmeter: ${err.message}\n(see hookmeter help)\n`)
      return 2
    }
    if (err instanceof RuntimeError) {
      log.error(err.message)
      return 1
    }
    log.error((err as Error).message ?? String(err))
    log.debug('stack', { stack: (err as Error).stack })
    return 1
  } finally {
    await runCleanups((err) => log.warn('cleanup failed', { error: err.message }))
    releaseTracefs()
  }
}

process.exitCode = await main(process.argv.slice(2))
