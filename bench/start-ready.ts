/**
 * Start to ready: from spawning the single binary (`hookmeter serve`) to its first 200 from
 * GET /readyz, with a fresh data directory each time, then with a store that already holds runs.
 * Beside it, the agent's own `startMs` (logged with "agent ready": from after option parsing to
 * listening), and a breakdown of where the time goes: the bundle's start-up alone (`hookmeter
 * version`), and each step of Agent.start timed once, cold, in a child Bun process.
 *
 *   node_modules/.bin/bun bench/start-ready.ts [--starts N] [--store-runs N] [--json]
 *
 * This file also holds what the three agent benchmarks (start-ready, agent-idle, api-latency)
 * share: building the binary, starting it on 127.0.0.1, stopping it, and checking that none of
 * its eBPF programs outlived it. Its own benchmark runs only when it is the entry point.
 */
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'

import type { Subprocess } from 'bun'

import { quantiles } from '../agent/stats.ts'
import { listPrograms } from '../libbpf-bindings/enumerate.ts'
import {
  describeEnvironment,
  environment,
  onInterrupt,
  progress,
  rng,
  shuffled,
  type Environment,
} from './lib.ts'

export const REPO = resolve(import.meta.dir, '..')
const BUN = join(REPO, 'node_modules/.bin/bun')
const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled'

// ---------------------------------------------------------------------------------------------
// shared by the agent benchmarks

const tempDirs: string[] = []
const liveAgents = new Set<AgentProcess>()

export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

/** Stops every agent still running and removes every temporary directory; safe to call twice. */
export async function cleanup(): Promise<void> {
  for (const a of [...liveAgents]) await a.stop().catch(() => {})
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}

/**
 * Runs a benchmark's main with cleanup on every way out: normal end, a thrown error (exit 1),
 * SIGINT / SIGTERM (exit 130, through lib's handler).
 */
export async function runMain(main: () => Promise<void>): Promise<void> {
  onInterrupt(cleanup)
  try {
    await main()
  } catch (err) {
    progress(`failed: ${(err as Error).stack ?? err}`)
    process.exitCode = 1
  } finally {
    await cleanup()
  }
}

export interface CommonArgs {
  json: boolean
  /** an already built binary; otherwise one is built into a temporary directory */
  binary: string | null
}

/**
 * Parses `--json`, `--binary PATH` and the integer options in `ints` (name → [default, min]);
 * prints usage and exits 2 on anything else.
 */
export function parseArgs<K extends string>(
  argv: string[],
  name: string,
  ints: Record<K, [number, number, string]>,
  flags: string[] = []
): CommonArgs & Record<K, number> & { flags: Set<string> } {
  const usage =
    `usage: bun bench/${name}.ts [options]\n` +
    Object.entries<[number, number, string]>(ints)
      .map(([k, [def, , help]]) => `  --${k} N`.padEnd(22) + `${help} (default ${def})`)
      .concat(flags.map((f) => `  --${f}`))
      .concat([
        '  --binary PATH'.padEnd(22) + 'use this hookmeter binary instead of building one',
        '  --json'.padEnd(22) + 'print the result as one JSON object on stdout',
      ])
      .join('\n')
  const out = {
    json: false,
    binary: null as string | null,
    flags: new Set<string>(),
  } as CommonArgs & Record<string, number> & { flags: Set<string> }
  for (const [k, [def]] of Object.entries<[number, number, string]>(ints)) out[k] = def
  const fail = (msg: string): never => {
    process.stderr.write(`${name}: ${msg}\n${usage}\n`)
    process.exit(2)
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const key = arg.slice(2)
    if (arg === '--json') out.json = true
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${usage}\n`)
      process.exit(0)
    } else if (arg === '--binary') {
      const v = argv[++i]
      if (!v) fail('--binary needs a path')
      out.binary = resolve(v!)
    } else if (arg.startsWith('--') && flags.includes(key)) out.flags.add(key)
    else if (arg.startsWith('--') && key in ints) {
      const v = argv[++i]
      const n = Number(v)
      const min = ints[key as K][1]
      if (v === undefined || !/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) {
        fail(`${arg} must be an integer of at least ${min}, got ${v ?? 'nothing'}`)
      }
      out[key] = n
    } else fail(`unknown option ${arg}`)
  }
  return out as CommonArgs & Record<K, number> & { flags: Set<string> }
}

/** The single binary, built the way it ships (workers bundled in), unless one was given. */
export function buildBinary(given: string | null): string {
  if (given) {
    if (!statSync(given).isFile()) throw new Error(`--binary: ${given} is not a file`)
    return given
  }
  const out = join(makeTempDir('hm-bench-bin-'), 'hookmeter')
  const t0 = performance.now()
  const r = Bun.spawnSync(
    [
      BUN,
      'build',
      '--compile',
      'agent/main.ts',
      'agent/exec-loop-worker.ts',
      'libbpf-bindings/reader-worker.ts',
      '--outfile',
      out,
    ],
    { cwd: REPO, stdout: 'pipe', stderr: 'pipe' }
  )
  if (r.exitCode !== 0) {
    throw new Error(
      `bun build --compile failed (exit ${r.exitCode}): ${r.stderr.toString().trim()}`
    )
  }
  progress(`built ${out} in ${(performance.now() - t0).toFixed(0)} ms`)
  return out
}

/** A port that was free a moment ago on 127.0.0.1; the agent needs it before it listens. */
export function freePort(): number {
  const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } })
  const port = s.port
  s.stop(true)
  return port
}

export function readStatsSysctl(): number {
  return Number(readFileSync(STATS_SYSCTL, 'utf8').trim())
}

/** utime + stime of a whole process (every thread, Workers included), in clock ticks. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the command name may hold spaces and parentheses: the fields start after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12])
}

export const CLK_TCK = (() => {
  const r = Bun.spawnSync(['getconf', 'CLK_TCK'], { stdout: 'pipe', stderr: 'ignore' })
  const n = Number(r.stdout.toString().trim())
  return r.exitCode === 0 && n > 0 ? n : 100
})()

/** VmRSS of a process in bytes. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

export interface LogLine {
  /** performance.now() of this process when the line arrived */
  at: number
  line: Record<string, unknown>
}

export interface AgentStart {
  binary: string
  dataDir: string
  port: number
  args?: string[]
}

/** One `hookmeter serve` child on 127.0.0.1, its JSON log lines collected as they arrive. */
export class AgentProcess {
  readonly log: LogLine[] = []
  readonly token = randomBytes(16).toString('hex')
  readonly url: string
  /** performance.now() just before the spawn */
  readonly spawnedAt: number
  readonly proc: Subprocess<'ignore', 'ignore', 'pipe'>
  /** programs the agent held (by id, with load time since ids are reused), for the leftover check */
  readonly ownPrograms = new Map<number, bigint>()
  exitCode: number | null = null
  #listeners = new Set<() => void>()
  #stopped: Promise<number> | null = null

  constructor(opts: AgentStart) {
    this.url = `http://127.0.0.1:${opts.port}`
    const argv = [
      opts.binary,
      'serve',
      '--address',
      '127.0.0.1',
      '--port',
      String(opts.port),
      '--data-dir',
      opts.dataDir,
      ...(opts.args ?? []),
    ]
    // a small fixed environment, so that nothing of the caller's (allowlist, log level) leaks in
    const env = {
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      HOOKMETER_TOKEN: this.token,
      HOOKMETER_LOG_FORMAT: 'json',
    }
    this.spawnedAt = performance.now()
    this.proc = Bun.spawn(argv, { env, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' })
    liveAgents.add(this)
    void this.proc.exited.then((code) => {
      this.exitCode = code
      liveAgents.delete(this)
      this.#notify()
    })
    void this.#readLog()
  }

  get pid(): number {
    return this.proc.pid
  }

  async #readLog(): Promise<void> {
    const decoder = new TextDecoder()
    let buf = ''
    for await (const chunk of this.proc.stderr) {
      const at = performance.now()
      buf += decoder.decode(chunk, { stream: true })
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        if (!text.trim()) continue
        let line: Record<string, unknown>
        try {
          line = JSON.parse(text)
        } catch {
          line = { msg: text, raw: true }
        }
        this.log.push({ at, line })
      }
      this.#notify()
    }
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l()
  }

  /** The last few log lines, for an error message. */
  tail(n = 8): string {
    return this.log
      .slice(-n)
      .map((l) => JSON.stringify(l.line))
      .join('\n')
  }

  /** Resolves with the first log line whose msg is `msg`; rejects on exit or after `timeoutMs`. */
  waitForLog(msg: string, timeoutMs: number): Promise<LogLine> {
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        this.#listeners.delete(check)
        reject(new Error(`no '${msg}' from the agent within ${timeoutMs} ms; log:\n${this.tail()}`))
      }, timeoutMs)
      const check = () => {
        const hit = this.log.find((l) => l.line.msg === msg)
        if (hit || this.exitCode !== null) {
          clearTimeout(timer)
          this.#listeners.delete(check)
          if (hit) resolvePromise(hit)
          else
            reject(
              new Error(`agent exited (${this.exitCode}) before '${msg}'; log:\n${this.tail()}`)
            )
        }
      }
      this.#listeners.add(check)
      check()
    })
  }

  async ready(timeoutMs = 20_000): Promise<LogLine> {
    const line = await this.waitForLog('agent ready', timeoutMs)
    this.recordPrograms()
    return line
  }

  /** Notes the programs the agent holds now (fds and links from /proc/<pid>/fd and fdinfo). */
  recordPrograms(): void {
    const ids = new Set<number>()
    let fds: string[] = []
    try {
      fds = readdirSync(`/proc/${this.pid}/fd`)
    } catch {
      return
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${this.pid}/fd/${fd}`)
        if (target !== 'anon_inode:bpf-prog' && target !== 'anon_inode:bpf_link') continue
        const m = /^prog_id:\s+(\d+)/m.exec(readFileSync(`/proc/${this.pid}/fdinfo/${fd}`, 'utf8'))
        if (m) ids.add(Number(m[1]))
      } catch {
        // the fd closed between readdir and read: it is not a program we need to account for
      }
    }
    for (const p of listPrograms()) if (ids.has(p.id)) this.ownPrograms.set(p.id, p.loadTimeNs)
  }

  /**
   * SIGTERM, as the DaemonSet would; SIGKILL if it has not exited after `timeoutMs`. Resolves with
   * the exit code, after checking that none of the agent's programs is still loaded.
   */
  stop(timeoutMs = 20_000): Promise<number> {
    this.#stopped ??= (async () => {
      if (this.exitCode === null) {
        this.recordPrograms()
        this.proc.kill('SIGTERM')
        const timer = setTimeout(() => {
          progress(`agent ${this.pid} still running ${timeoutMs} ms after SIGTERM: SIGKILL`)
          this.proc.kill('SIGKILL')
        }, timeoutMs)
        await this.proc.exited
        clearTimeout(timer)
      }
      const left = await leftoverPrograms(this.ownPrograms)
      if (left.length) throw new Error(`agent ${this.pid} left programs loaded: ${left.join(', ')}`)
      return this.exitCode ?? (await this.proc.exited)
    })()
    return this.#stopped
  }
}

/** Programs of `own` still loaded; the kernel frees them shortly after the last fd closes. */
async function leftoverPrograms(own: Map<number, bigint>): Promise<string[]> {
  let left: string[] = []
  for (let i = 0; i < 40; i++) {
    left = listPrograms()
      .filter((p) => own.get(p.id) === p.loadTimeNs)
      .map((p) => `${p.id}:${p.name}`)
    if (!left.length) break
    await Bun.sleep(50)
  }
  return left
}

export function summarize(values: number[]): { median: number; min: number; max: number } {
  const [median, min, max] = quantiles(values, [0.5, 0, 1])
  return { median: median!, min: min!, max: max! }
}

export const ms = (v: number, digits = 1) => `${v.toFixed(digits)} ms`

/** Kernel state the agent benchmarks must leave as they found it. */
export function kernelState(): { statsSysctl: number; hmPrograms: number } {
  return {
    statsSysctl: readStatsSysctl(),
    hmPrograms: listPrograms().filter((p) => p.name.startsWith('hm_')).length,
  }
}

export function printResult(json: boolean, result: Record<string, unknown>, text: string): void {
  if (json) {
    process.stderr.write(`${text}\n`)
    process.stdout.write(`${JSON.stringify(result)}\n`)
  } else process.stdout.write(`${text}\n`)
}

export function header(env: Environment, extra: string): string {
  return `${describeEnvironment(env)}\n${extra}`
}

// ---------------------------------------------------------------------------------------------
// the start-to-ready benchmark

interface StartSample {
  /** spawn → first 200 from /readyz */
  readyMs: number
  /** the agent's own startMs field */
  startMs: number
  /** spawn → the "agent ready" line arriving here */
  logMs: number
  /** /readyz requests made until the 200 (every 2 ms) */
  polls: number
}

const POLL_MS = 2
const READY_DEADLINE_MS = 15_000

async function oneStart(
  binary: string,
  dataDir: string,
  args: string[] = []
): Promise<StartSample> {
  const port = freePort()
  const agent = new AgentProcess({ binary, dataDir, port, args })
  let polls = 0
  let readyAt = 0
  const deadline = agent.spawnedAt + READY_DEADLINE_MS
  while (performance.now() < deadline) {
    polls++
    try {
      const r = await fetch(`${agent.url}/readyz`, { signal: AbortSignal.timeout(1000) })
      await r.arrayBuffer()
      if (r.status === 200) {
        readyAt = performance.now()
        break
      }
    } catch {
      // not listening yet (connection refused): try again
    }
    if (agent.exitCode !== null)
      throw new Error(`agent exited (${agent.exitCode}):\n${agent.tail()}`)
    await Bun.sleep(POLL_MS)
  }
  if (!readyAt)
    throw new Error(`no 200 from /readyz within ${READY_DEADLINE_MS} ms:\n${agent.tail()}`)
  const line = await agent.ready(5000)
  const code = await agent.stop()
  if (code !== 0) throw new Error(`agent exited ${code} after SIGTERM:\n${agent.tail()}`)
  return {
    readyMs: readyAt - agent.spawnedAt,
    startMs: Number(line.line.startMs),
    logMs: line.at - agent.spawnedAt,
    polls,
  }
}

/** `hookmeter version`: the bundle's start-up and module evaluation, with no agent work. */
function versionMs(binary: string): number {
  const t0 = performance.now()
  const r = Bun.spawnSync([binary, 'version'], { stdout: 'ignore', stderr: 'pipe' })
  if (r.exitCode !== 0) throw new Error(`hookmeter version failed: ${r.stderr.toString()}`)
  return performance.now() - t0
}

/** Makes a store with `runs` finished micro runs, through the API of an agent started for it. */
async function makeStore(binary: string, dataDir: string, runs: number): Promise<number> {
  // without delivery calibration and warm-up a 100-exec run takes well under a second
  const agent = new AgentProcess({
    binary,
    dataDir,
    port: freePort(),
    args: ['--delivery-execs', '0'],
  })
  await agent.ready()
  const started = performance.now()
  for (let i = 0; i < runs; i++) {
    const r = await fetch(`${agent.url}/v1/bench/micro`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ iterations: 100, warmup: 0, label: `start-ready store ${i + 1}` }),
      signal: AbortSignal.timeout(5000),
    })
    const body = (await r.json()) as { id?: number }
    if (r.status !== 202 || !body.id)
      throw new Error(`POST /v1/bench/micro: ${r.status} ${JSON.stringify(body)}`)
    const until = performance.now() + 30_000
    for (;;) {
      const s = (await (
        await fetch(`${agent.url}/v1/runs/${body.id}`, { signal: AbortSignal.timeout(5000) })
      ).json()) as { status: string; error?: string }
      if (s.status === 'done') break
      if (s.status !== 'running')
        throw new Error(`store run ${body.id} ended ${s.status}: ${s.error}`)
      if (performance.now() > until)
        throw new Error(`store run ${body.id} still running after 30 s`)
      await Bun.sleep(50)
    }
  }
  await agent.stop()
  progress(`store of ${runs} runs made in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return readdirSync(dataDir).reduce((n, f) => n + statSync(join(dataDir, f)).size, 0)
}

/**
 * The breakdown child: each step of Agent.start, in its order, timed once in a fresh process so
 * that every step is cold as it is in the agent. Prints one JSON object.
 */
async function breakdownChild(dataDir: string): Promise<void> {
  const t = performance.now()
  const { RunStore } = await import('../agent/store.ts')
  const { probeKernel } = await import('../agent/features.ts')
  const { ExecProbe } = await import('../agent/probe.ts')
  const { StatsSession } = await import('../libbpf-bindings/stats.ts')
  const { takeInventory } = await import('../agent/inventory.ts')
  const { BpfObject } = await import('../libbpf-bindings/object.ts')
  const { FEATURES_OBJECT } = await import('../agent/assets.ts')
  const steps: Record<string, number> = {}
  let at = performance.now()
  steps.importFromSource = at - t
  const lap = (name: string) => {
    const now = performance.now()
    steps[name] = now - at
    at = now
  }
  const store = RunStore.open(dataDir)
  store.markInterrupted()
  lap('storeOpen')
  await probeKernel()
  lap('featureProbe')
  // the probe attaches two programs to tracepoints through perf events; time one detach alone
  {
    using obj = BpfObject.open(FEATURES_OBJECT, { objectName: 'hm_features' })
    for (const p of obj.programs()) p.autoload = p.name === 'hm_feat_tp'
    obj.load()
    const link = obj.program('hm_feat_tp').attach()
    at = performance.now()
    link.close()
    lap('oneTracepointDetach')
  }
  at = performance.now()
  const probe = await ExecProbe.load()
  lap('probeLoad')
  const stats = StatsSession.open()
  lap('statsOpen')
  takeInventory()
  lap('firstInventory')
  takeInventory()
  lap('secondInventory')
  probe.close()
  stats.close()
  store.close()
  process.stdout.write(`${JSON.stringify(steps)}\n`)
}

function breakdown(runs: number): Record<string, number>[] {
  const out: Record<string, number>[] = []
  for (let i = 0; i < runs; i++) {
    const dir = makeTempDir('hm-bench-breakdown-')
    const r = Bun.spawnSync([BUN, import.meta.path, '--breakdown-child', dir], {
      cwd: REPO,
      stdout: 'pipe',
      stderr: 'pipe',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    })
    if (r.exitCode !== 0) throw new Error(`breakdown child failed: ${r.stderr.toString()}`)
    out.push(JSON.parse(r.stdout.toString().trim().split('\n').pop()!))
  }
  return out
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2), 'start-ready', {
    starts: [10, 1, 'starts with a fresh data directory'],
    'store-runs': [50, 0, 'runs in the existing store (0 skips that variant)'],
    'store-starts': [3, 1, 'starts with the existing store'],
    breakdown: [3, 0, 'breakdown children and `hookmeter version` runs (0 skips)'],
    seed: [Date.now() % 2 ** 31, 0, 'seed of the order of fresh and store starts'],
  })
  const env = environment()
  const before = kernelState()
  const binary = buildBinary(opts.binary)

  // the store is made first, and its starts shuffled in among the fresh ones, so that the two
  // variants see the same drift of the machine (grace periods vary with the other tenants)
  let storeDir: string | null = null
  let storeBytes = 0
  if (opts['store-runs'] > 0) {
    storeDir = makeTempDir('hm-bench-store-')
    storeBytes = await makeStore(binary, storeDir, opts['store-runs'])
  }
  const order = shuffled(
    [
      ...Array<'fresh'>(opts.starts).fill('fresh'),
      ...Array<'store'>(storeDir ? opts['store-starts'] : 0).fill('store'),
    ],
    rng(opts.seed)
  )
  const fresh: StartSample[] = []
  const withStore: StartSample[] = []
  for (const [i, kind] of order.entries()) {
    const s = await oneStart(binary, kind === 'store' ? storeDir! : makeTempDir('hm-bench-start-'))
    ;(kind === 'store' ? withStore : fresh).push(s)
    progress(
      `start ${i + 1}/${order.length} (${kind}): ready ${ms(s.readyMs)}, startMs ${ms(s.startMs)}`
    )
  }

  const version: number[] = []
  let steps: Record<string, number>[] = []
  if (opts.breakdown > 0) {
    for (let i = 0; i < opts.breakdown; i++) version.push(versionMs(binary))
    steps = breakdown(opts.breakdown)
    progress('breakdown done')
  }

  const after = kernelState()
  const stat = (xs: StartSample[], k: keyof StartSample) => summarize(xs.map((x) => x[k]))
  const stepNames = steps.length ? Object.keys(steps[0]!) : []
  const stepMedians = Object.fromEntries(
    stepNames.map((k) => [k, summarize(steps.map((s) => s[k]!)).median])
  )
  const readyFresh = stat(fresh, 'readyMs')
  const result = {
    benchmark: 'start-ready',
    environment: env,
    kernelBefore: before,
    kernelAfter: after,
    pollMs: POLL_MS,
    seed: opts.seed,
    order,
    fresh: { samples: fresh, readyMs: readyFresh, startMs: stat(fresh, 'startMs') },
    withStore: withStore.length
      ? {
          runs: opts['store-runs'],
          storeBytes,
          samples: withStore,
          readyMs: stat(withStore, 'readyMs'),
          startMs: stat(withStore, 'startMs'),
        }
      : null,
    versionMs: version.length ? summarize(version) : null,
    breakdownMs: steps.length ? { medians: stepMedians, samples: steps } : null,
    goal: { readyMsAtMost: 300, met: readyFresh.median <= 300 },
  }

  const row = (label: string, s: { median: number; min: number; max: number }) =>
    `  ${label.padEnd(34)} median ${ms(s.median).padStart(9)}  min ${ms(s.min).padStart(9)}  max ${ms(s.max).padStart(9)}`
  const lines = [
    header(
      env,
      `start to ready (/readyz polled every ${POLL_MS} ms), ${fresh.length} fresh starts`
    ),
    row('spawn → 200 from /readyz', readyFresh),
    row('agent startMs (its own clock)', stat(fresh, 'startMs')),
    row('spawn → "agent ready" log line', stat(fresh, 'logMs')),
  ]
  if (withStore.length) {
    lines.push(
      `with a store of ${opts['store-runs']} runs (${(storeBytes / 1024).toFixed(0)} KiB), ${withStore.length} starts shuffled among the fresh ones (seed ${opts.seed})`,
      row('spawn → 200 from /readyz', stat(withStore, 'readyMs')),
      row('agent startMs', stat(withStore, 'startMs'))
    )
  } else lines.push('existing-store variant skipped (--store-runs 0)')
  if (version.length) {
    lines.push(
      `where the time goes (medians of ${steps.length})`,
      row('`hookmeter version` (bun start-up)', summarize(version)),
      ...stepNames.map((k) => `  ${k.padEnd(34)} ${ms(stepMedians[k]!).padStart(9)}  (from source)`)
    )
  }
  lines.push(
    `goal: median spawn → ready at most 300 ms: ${result.goal.met ? 'met' : 'not met'}`,
    `kernel: bpf_stats_enabled ${before.statsSysctl} → ${after.statsSysctl}; hm_ programs on the host ${before.hmPrograms} → ${after.hmPrograms} (ours checked gone by id)`
  )
  printResult(opts.json, result, lines.join('\n'))
}

if (import.meta.main) {
  const i = process.argv.indexOf('--breakdown-child')
  if (i >= 0) await breakdownChild(process.argv[i + 1]!)
  else await runMain(main)
}
