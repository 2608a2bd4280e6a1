import { existsSync } from 'node:fs'
import { join } from 'node:path'

import { StatsSession } from '../../libbpf-bindings/stats.ts'
import { allowedBinaries } from '../allowlist.ts'
import { AbortedError, runMicro } from '../bench/micro.ts'
import { formatMicro } from '../bench/format.ts'
import {
  baselineProblem,
  CONDITIONS,
  microOptionsWithAllowlist,
  type MicroOptions,
} from '../bench/options.ts'
import { takeInventory } from '../inventory.ts'
import {
  interruptedExitCode,
  onCleanup,
  parseInteger,
  parseOptions,
  printableText,
  requirePrivilege,
  RuntimeError,
  UsageError,
} from '../cli.ts'
import { compareRuns, formatCompare } from '../compare.ts'
import { DB_FILE, RunStore, StoreError } from '../store.ts'
import { commonOptions, loadProbe, log, progressReporter } from './common.ts'

export const DEFAULT_DATA_DIR = '/var/lib/hookmeter'

const FLAG: Record<string, string> = {
  iterations: '--iterations',
  binary: '--binary',
  args: '--args',
  warmup: '--warmup',
  condition: '--condition',
  label: '--label',
  force: '--force',
}

/** --data-dir, else HOOKMETER_DATA_DIR, else the default; an empty value is an error, not ".". */
export function dataDir(values: Record<string, unknown>): string {
  const flag = values['data-dir'] as string | undefined
  if (flag !== undefined && flag.trim() === '')
    throw new UsageError('--data-dir: expected a directory, got an empty string')
  const env = process.env.HOOKMETER_DATA_DIR
  if (flag === undefined && env !== undefined && env.trim() === '') {
    throw new UsageError('HOOKMETER_DATA_DIR: expected a directory, got an empty string')
  }
  return flag ?? env ?? DEFAULT_DATA_DIR
}

/** Opens the store; commands that only read do not create one where there is none. */
function openStore(dir: string, opts: { create?: boolean } = { create: true }): RunStore {
  if (!opts.create && !existsSync(join(dir, DB_FILE))) {
    throw new RuntimeError(
      `no runs stored yet: no ${DB_FILE} in ${dir} (run bench micro, or pass --data-dir)`
    )
  }
  try {
    const store = RunStore.open(dir)
    onCleanup(() => store.close())
    return store
  } catch (err) {
    if (err instanceof StoreError) throw new RuntimeError(err.message)
    throw err
  }
}

/** CLI flags into the shared option schema; any issue becomes one message naming the flag. */
export function microOptionsFromFlags(values: Record<string, unknown>): MicroOptions {
  const int = (flag: string, v: unknown, min: number, max: number) =>
    v === undefined ? undefined : parseInteger(flag, String(v), min, max)
  const raw = {
    iterations: int('--iterations', values.iterations, 1, 1_000_000),
    binary: values.binary,
    args: values.args ?? [],
    warmup: int('--warmup', values.warmup, 0, 100_000),
    condition: values.condition ?? null,
    label: values.label ?? null,
    force: values.force ?? false,
  }
  const allowed = allowedBinaries((values['allow-binary'] as string[] | undefined) ?? [])
  const parsed = microOptionsWithAllowlist(allowed).safeParse(raw)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]!
  const flag = FLAG[String(issue.path[0])] ?? String(issue.path[0])
  if (issue.path[0] === 'condition') {
    throw new UsageError(
      `${flag}: expected one of ${CONDITIONS.join(', ')}, got '${String(values.condition)}'`
    )
  }
  throw new UsageError(`${flag}: ${issue.message}`)
}

async function cmdMicro(args: string[], stop: AbortSignal): Promise<number> {
  const { values } = parseOptions(
    args,
    {
      iterations: { type: 'string' },
      binary: { type: 'string' },
      args: { type: 'string', multiple: true },
      warmup: { type: 'string' },
      condition: { type: 'string' },
      label: { type: 'string' },
      json: { type: 'boolean' },
      'data-dir': { type: 'string' },
      'allow-binary': { type: 'string', multiple: true },
      force: { type: 'boolean' },
      'delivery-execs': { type: 'string' },
    },
    { rawValues: ['args'] }
  )
  const opts = microOptionsFromFlags(values)
  const deliveryExecs =
    values['delivery-execs'] === undefined
      ? 200
      : parseInteger('--delivery-execs', values['delivery-execs'], 0, 100_000)
  requirePrivilege()
  if (opts.condition === 'baseline' && !opts.force) {
    const problem = baselineProblem(takeInventory(), '--force')
    if (problem) throw new UsageError(`--condition baseline: ${problem}`)
  }

  const store = openStore(dataDir(values))
  const interrupted = store.markInterrupted()
  if (interrupted) log.warn(`${interrupted} earlier run(s) had not finished; marked aborted`)
  // runs still marked running belong to live processes: two loops at once spoil both
  const going = store.listRuns({ limit: 50 }).find((r) => r.status === 'running')
  if (going) {
    throw new RuntimeError(
      `run ${going.id} is still going in ${store.path}: one run at a time (wait for it, or stop it)`
    )
  }
  const stats = StatsSession.open()
  onCleanup(() => stats.close())
  const probe = await loadProbe(commonOptions(values))

  const id = store.createRun({
    iterations: opts.iterations,
    binary: opts.binary,
    args: opts.args,
    warmup: opts.warmup,
    condition: opts.condition,
    label: opts.label,
  })
  log.info(`run ${id}: ${opts.iterations} execs of ${opts.binary}`, {
    condition: opts.condition ?? 'unlabelled',
  })
  try {
    const { report, samples } = await runMicro(opts, {
      probe,
      statsMode: stats.mode,
      runId: id,
      signal: stop,
      deliveryExecs,
      onPhase: (_p, detail) => log.info(detail),
      onProgress: progressReporter('loop'),
    })
    store.finishRun(id, report, samples)
    process.stdout.write(
      values.json ? `${JSON.stringify(report)}\n` : `${printableText(formatMicro(report))}\n`
    )
    return 0
  } catch (err) {
    if (err instanceof AbortedError || stop.aborted) {
      store.failRun(id, 'aborted', 'interrupted by a signal')
      log.warn(`run ${id} aborted; nothing is left attached`)
      return interruptedExitCode()
    }
    store.failRun(id, 'failed', (err as Error).message)
    throw err
  }
}

function runOrThrow(store: RunStore, arg: string | undefined, what: string) {
  if (arg === undefined)
    throw new UsageError(`bench compare: missing run ${what} (usage: bench compare A B)`)
  const id = parseInteger(`run ${what}`, arg, 1, Number.MAX_SAFE_INTEGER)
  const run = store.getRun(id)
  if (!run) throw new RuntimeError(`no run ${id} in ${store.path}`)
  if (run.status !== 'done' || !run.report)
    throw new RuntimeError(`run ${id} is ${run.status}, not done: it has no results to compare`)
  return run
}

function cmdCompare(args: string[]): number {
  const { values, positionals } = parseOptions(
    args,
    { json: { type: 'boolean' }, 'data-dir': { type: 'string' } },
    { positionals: 2 }
  )
  const store = openStore(dataDir(values), { create: false })
  const a = runOrThrow(store, positionals[0], 'A')
  const b = runOrThrow(store, positionals[1], 'B')
  for (const r of [a, b]) {
    if (r.samples.length < 2)
      throw new RuntimeError(
        `run ${r.id} has ${r.samples.length} exec: a comparison needs at least 2`
      )
  }
  const result = compareRuns(a.report!, a.samples, b.report!, b.samples)
  process.stdout.write(
    values.json ? `${JSON.stringify(result)}\n` : `${printableText(formatCompare(result))}\n`
  )
  return 0
}

function cmdList(args: string[]): number {
  const { values } = parseOptions(args, {
    json: { type: 'boolean' },
    limit: { type: 'string' },
    'data-dir': { type: 'string' },
  })
  const limit = values.limit === undefined ? 50 : parseInteger('--limit', values.limit, 1, 100_000)
  const dir = dataDir(values)
  // listing creates nothing: no store yet is an empty list
  const store = existsSync(join(dir, DB_FILE)) ? openStore(dir, { create: false }) : null
  const runs = store ? store.listRuns({ limit }) : []
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ runs })}\n`)
    return 0
  }
  const lines = [
    `${'ID'.padStart(5)}  ${'CREATED'.padEnd(24)} ${'STATUS'.padEnd(8)} ${'CONDITION'.padEnd(10)} ${'EXECS'.padStart(8)} ${'P50'.padStart(10)}  STATS   BINARY / LABEL`,
  ]
  for (const r of runs) {
    const p50 = r.latencyP50 === null ? '-' : `${(r.latencyP50 / 1000).toFixed(1)} µs`
    lines.push(
      `${String(r.id).padStart(5)}  ${r.createdAt.padEnd(24)} ${r.status.padEnd(8)} ${(r.condition ?? '-').padEnd(10)} ${String(r.iterations).padStart(8)} ${p50.padStart(10)}  ${(r.statsMode ?? '-').padEnd(7)} ${r.binary}${r.label ? `  ${r.label}` : ''}`
    )
  }
  if (!runs.length) lines.push(`(no runs in ${store?.path ?? join(dir, DB_FILE)})`)
  process.stdout.write(`${printableText(lines.join('\n'))}\n`)
  return 0
}

function cmdShow(args: string[]): number {
  const { values, positionals } = parseOptions(
    args,
    { json: { type: 'boolean' }, 'data-dir': { type: 'string' } },
    { positionals: 1 }
  )
  const store = openStore(dataDir(values), { create: false })
  const run = runOrThrow(store, positionals[0], 'id')
  process.stdout.write(
    values.json ? `${JSON.stringify(run.report)}\n` : `${formatMicro(run.report!)}\n`
  )
  return 0
}

export async function cmdBench(args: string[], stop: AbortSignal): Promise<number> {
  const [sub, ...rest] = args
  switch (sub) {
    case 'micro':
      return cmdMicro(rest, stop)
    case 'compare':
      return cmdCompare(rest)
    case 'list':
      return cmdList(rest)
    case 'show':
      return cmdShow(rest)
    default:
      throw new UsageError(`bench: expected micro, compare, list or show, got '${sub ?? ''}'`)
  }
}
