/**
 * The node agent's HTTP API end to end: the single binary built with `bun build --compile` into a
 * temporary dir, started as `hookmeter serve` on 127.0.0.1 with port 0, and driven with fetch.
 * What the agent says is checked against bpftool and /proc where they can tell. Each server has
 * its own temporary data dir (a restart reuses its predecessor's). Other work may run on this
 * machine meanwhile, so counts and ratios are asserted, never absolute timings; the timings the
 * issue asks for are printed for the closing note.
 */
import { Database } from 'bun:sqlite'
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'

import {
  BPFTOOL,
  bpftoolProgs,
  bunExe,
  ensureTracefs,
  isRoot,
  progIdsHeldBy,
  readStatsSysctl,
  releaseTracefs,
  root,
  sleep,
  waitNoHmPrograms,
  writeStatsSysctl,
} from './helpers.ts'

interface PromSample {
  value?: string
  labels?: Record<string, string>
  buckets?: Record<string, string>
}
interface PromFamily {
  name: string
  type: string
  metrics: PromSample[]
}
// a CommonJS module without types
const parsePrometheusTextFormat = createRequire(import.meta.url)(
  'parse-prometheus-text-format'
) as (text: string) => PromFamily[]

const tmp = mkdtempSync(join(tmpdir(), 'hm-api-'))
const hookmeter = join(tmp, 'hookmeter')
const TOKEN = 'api-test-token-0123456789abcdef'
const sysctlAtStart = isRoot ? readStatsSysctl() : null
const kernelProblem = !isRoot ? 'needs root' : !BPFTOOL ? 'needs bpftool' : null
const OWN_PROGRAMS = [
  'hm_sched_process_exec',
  'hm_sched_process_exit',
  'hm_sched_process_fork',
  'hm_sys_enter_execve',
]

let dirs = 0
/** A fresh data dir for one server, under the file's temporary dir. */
function dataDir(): string {
  const dir = join(tmp, `data-${++dirs}`)
  mkdirSync(dir)
  return dir
}

/** The test's environment without anything that configures hookmeter, plus `extra`. */
function agentEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('HOOKMETER_') && k !== 'NODE_NAME') env[k] = v
  }
  return { ...env, HOOKMETER_LOG_FORMAT: 'json', ...extra }
}

interface LogLine {
  level: string
  msg: string
  [field: string]: unknown
}

function logLines(stderr: string): LogLine[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as LogLine]
      } catch {
        return []
      }
    })
}

const running = new Set<Bun.Subprocess>()

interface Agent {
  pid: number
  url: string
  dataDir: string
  /** from spawn to the "agent ready" line, as this test saw it */
  spawnToReadyMs: number
  /** the agent's own figure in its "agent ready" line */
  startMs: number
  ready: LogLine
  stderr(): string
  proc: Bun.Subprocess
}

/** Starts `hookmeter serve --port 0` and resolves once it has logged "agent ready". */
async function startAgent(opts: {
  dataDir: string
  /** give the data dir as HOOKMETER_DATA_DIR rather than --data-dir */
  dataDirFromEnv?: boolean
  args?: string[]
  env?: Record<string, string>
}): Promise<Agent> {
  const t0 = performance.now()
  const where = opts.dataDirFromEnv ? [] : ['--data-dir', opts.dataDir]
  const env = opts.dataDirFromEnv ? { ...opts.env, HOOKMETER_DATA_DIR: opts.dataDir } : opts.env
  const args = ['serve', '--port', '0', ...where, '--delivery-execs', '20', ...(opts.args ?? [])]
  const proc = Bun.spawn([hookmeter, ...args], {
    env: agentEnv(env),
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
  })
  running.add(proc)
  void proc.exited.then(() => running.delete(proc))
  let text = ''
  // stderr is read to the end, so that the agent never blocks on a full pipe
  const ready = new Promise<LogLine>((resolve, reject) => {
    void (async () => {
      const decoder = new TextDecoder()
      for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true })
        const line = logLines(text).find((l) => l.msg === 'agent ready')
        if (line) resolve(line)
      }
      reject(new Error(`hookmeter serve exited (${await proc.exited}) before ready:\n${text}`))
    })()
  })
  const timeout = sleep(30_000).then(() => null)
  const line = await Promise.race([ready, timeout])
  if (!line) {
    proc.kill('SIGKILL')
    throw new Error(`hookmeter serve was not ready after 30 s:\n${text}`)
  }
  const spawnToReadyMs = performance.now() - t0
  expect(String(line.url)).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
  return {
    pid: proc.pid,
    url: String(line.url),
    dataDir: opts.dataDir,
    spawnToReadyMs,
    startMs: Number(line.startMs),
    ready: line,
    stderr: () => text,
    proc,
  }
}

/** Signals the agent and waits for it to exit (SIGKILL after `timeoutMs`). */
async function stopAgent(a: Agent, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000) {
  const t0 = performance.now()
  a.proc.kill(signal)
  const timer = setTimeout(() => a.proc.kill('SIGKILL'), timeoutMs)
  const code = await a.proc.exited
  clearTimeout(timer)
  return { code, signalCode: a.proc.signalCode, ms: performance.now() - t0 }
}

/** Runs the binary to its end, for the cases where it must refuse to start. */
async function runOnce(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000) {
  const proc = Bun.spawn([hookmeter, ...args], {
    env: agentEnv(env),
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  running.add(proc)
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ])
  clearTimeout(timer)
  running.delete(proc)
  return { code, stdout, stderr }
}

/** Ids of the hm_ programs the process holds (program and link fds), from its fdinfo. */
function hmProgIdsHeldBy(pid: number): number[] {
  const hm = new Set(
    bpftoolProgs()
      .filter((p) => p.name?.startsWith('hm_'))
      .map((p) => p.id)
  )
  return progIdsHeldBy(pid).filter((id) => hm.has(id))
}

/** Polls bpftool until none of `ids` is loaded; returns those still loaded at the timeout. */
async function waitProgramsGone(ids: number[], timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const loaded = new Set(bpftoolProgs().map((p) => p.id))
    const left = ids.filter((id) => loaded.has(id))
    if (left.length === 0 || Date.now() >= deadline) return left
    await sleep(100)
  }
}

interface Issue {
  code: string
  path: Array<string | number>
  message: string
}
interface ErrorBody {
  error: { message: string; issues: Issue[] }
}

async function getJson<T = any>(a: Agent, path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(a.url + path)
  const text = await res.text()
  try {
    return { status: res.status, body: JSON.parse(text) as T }
  } catch {
    throw new Error(`GET ${path} → ${res.status}, not JSON: ${text.slice(0, 300)}`)
  }
}

function post(
  a: Agent,
  path: string,
  body: unknown,
  opts: { token?: string | null; contentType?: string; raw?: string; auth?: string } = {}
): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': opts.contentType ?? 'application/json' }
  const token = opts.token === undefined ? TOKEN : opts.token
  if (opts.auth !== undefined) headers.authorization = opts.auth
  else if (token !== null) headers.authorization = `Bearer ${token}`
  return fetch(a.url + path, {
    method: 'POST',
    headers,
    body: opts.raw ?? JSON.stringify(body),
  })
}

/** Asserts the API's one error shape and status; `path`, when given, must be the only issue's. */
async function expectApiError(
  res: Response,
  status: number,
  path?: Array<string | number>
): Promise<ErrorBody> {
  const text = await res.text()
  const where = `${res.url} → ${res.status} ${text.slice(0, 500)}`
  expect({ where, status: res.status }).toEqual({ where, status })
  expect(res.headers.get('content-type') ?? '').toContain('application/json')
  const body = JSON.parse(text) as ErrorBody
  expect({ where, keys: Object.keys(body) }).toEqual({ where, keys: ['error'] })
  expect({ where, keys: Object.keys(body.error).sort() }).toEqual({
    where,
    keys: ['issues', 'message'],
  })
  expect(typeof body.error.message).toBe('string')
  expect(body.error.message.length).toBeGreaterThan(0)
  expect(Array.isArray(body.error.issues)).toBe(true)
  for (const i of body.error.issues) {
    expect({ where, issue: Object.keys(i).sort() }).toEqual({
      where,
      issue: ['code', 'message', 'path'],
    })
    expect(typeof i.code).toBe('string')
    expect(Array.isArray(i.path)).toBe(true)
    expect(typeof i.message).toBe('string')
  }
  if (path)
    expect({ where, paths: body.error.issues.map((i) => i.path) }).toEqual({ where, paths: [path] })
  return body
}

interface RunJson {
  status: 'running' | 'done' | 'failed' | 'aborted'
  error: string | null
  createdAt: string
  progress?: { done: number; total: number }
  run: { id: number; iterations: number; binary: string; node: string; statsMode: string }
  latencyNs: { p50: number; p99: number }
  probe: { seen: { ringbuf: number; perf: number }; lost: { ringbuf: number; perf: number } }
  hooks: Array<{ progId: number; fullName: string; own: boolean; owners: Array<{ pid: number }> }>
  owners: Array<{ pid: number; cpuNs: number }>
}

/** Starts a micro run and returns its id (asserting 202 {id, status: 'running'}). */
async function startRun(a: Agent, body: Record<string, unknown>): Promise<number> {
  const res = await post(a, '/v1/bench/micro', body)
  const text = await res.text()
  expect({ status: res.status, text }).toEqual({ status: 202, text: expect.any(String) })
  const json = JSON.parse(text) as { id: number; status: string }
  expect(json).toEqual({ id: expect.any(Number), status: 'running' })
  return json.id
}

/** Polls the run until it is no longer running. */
async function waitRunEnd(a: Agent, id: number, timeoutMs = 120_000): Promise<RunJson> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { body } = await getJson<RunJson>(a, `/v1/runs/${id}`)
    if (body.status !== 'running') return body
    if (Date.now() >= deadline) throw new Error(`run ${id} still running after ${timeoutMs} ms`)
    await sleep(100)
  }
}

/** Polls the run until its traced loop has started (progress.done > 0). */
async function waitLoopStarted(a: Agent, id: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { body } = await getJson<RunJson>(a, `/v1/runs/${id}`)
    if (body.status !== 'running') throw new Error(`run ${id} ended (${body.status}) too early`)
    if ((body.progress?.done ?? 0) > 0) return
    if (Date.now() >= deadline) throw new Error(`run ${id}: no exec after ${timeoutMs} ms`)
    await sleep(50)
  }
}

interface SseEvent {
  event: string
  data: string
}

/** Reads a text/event-stream to its end, calling `onEvent` as each event arrives. */
async function readSse(
  url: string,
  onEvent: (e: SseEvent) => Promise<void> | void,
  timeoutMs = 60_000
): Promise<SseEvent[]> {
  const abort = new AbortController()
  const timer = setTimeout(() => abort.abort(), timeoutMs)
  const events: SseEvent[] = []
  try {
    const res = await fetch(url, { signal: abort.signal, headers: { accept: 'text/event-stream' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type') ?? '').toContain('text/event-stream')
    const decoder = new TextDecoder()
    let buf = ''
    for await (const chunk of res.body as ReadableStream<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true })
      let end: number
      while ((end = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, end)
        buf = buf.slice(end).replace(/^\r?\n\r?\n/, '')
        let event = 'message'
        const data: string[] = []
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith(':')) continue
          const m = /^([^:]+):?\s?(.*)$/.exec(line)
          if (!m) continue
          if (m[1] === 'event') event = m[2]!
          else if (m[1] === 'data') data.push(m[2]!)
        }
        if (data.length === 0) continue
        const e = { event, data: data.join('\n') }
        events.push(e)
        await onEvent(e)
      }
    }
    return events
  } finally {
    clearTimeout(timer)
  }
}

function quantile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!
}

/** One GET /healthz, its round trip in milliseconds. */
async function timedHealthz(a: Agent): Promise<number> {
  const t0 = performance.now()
  const res = await fetch(`${a.url}/healthz`)
  await res.text()
  const ms = performance.now() - t0
  if (res.status !== 200) throw new Error(`/healthz answered ${res.status}`)
  return ms
}

beforeAll(() => {
  if (kernelProblem) return
  ensureTracefs()
  const r = Bun.spawnSync(
    [
      bunExe,
      'build',
      '--compile',
      'agent/main.ts',
      'agent/exec-loop-worker.ts',
      'libbpf-bindings/reader-worker.ts',
      '--outfile',
      hookmeter,
    ],
    { cwd: root, stdout: 'pipe', stderr: 'pipe' }
  )
  if (r.exitCode !== 0) {
    throw new Error(`bun build --compile exited ${r.exitCode}: ${r.stderr.toString()}`)
  }
}, 120_000)

afterAll(async () => {
  for (const proc of running) proc.kill('SIGKILL')
  await Promise.all([...running].map((p) => p.exited))
  if (kernelProblem) return
  const left = await waitNoHmPrograms(10_000)
  if (left.length) console.error(`api.test: hm_ programs left behind: ${left.join(', ')}`)
  if (sysctlAtStart !== null) writeStatsSysctl(sysctlAtStart)
  releaseTracefs()
  rmSync(tmp, { recursive: true, force: true })
}, 60_000)

describe.skipIf(kernelProblem !== null)('hookmeter serve with a token', () => {
  let a: Agent
  let firstRun: RunJson
  let secondRun: RunJson

  beforeAll(async () => {
    a = await startAgent({
      dataDir: dataDir(),
      args: ['--stats', 'always'],
      env: { HOOKMETER_TOKEN: TOKEN, NODE_NAME: 'test-node-1' },
    })
    console.log(
      `start to ready: ${a.spawnToReadyMs.toFixed(0)} ms from spawn, startMs ${a.startMs} (agent's own)`
    )
  }, 60_000)

  test('answers healthz and readyz once it has logged agent ready', async () => {
    expect(await getJson(a, '/healthz')).toEqual({ status: 200, body: { status: 'ok' } })
    expect(await getJson(a, '/readyz')).toEqual({ status: 200, body: { ready: true } })
    expect(a.ready).toMatchObject({
      level: 'info',
      node: 'test-node-1',
      stats: 'fd',
      readOnly: false,
    })
    expect(a.startMs).toBeGreaterThan(0)
  })

  test('reports the node name from NODE_NAME, kernel features and statistics by fd', async () => {
    const { status, body } = await getJson(a, '/v1/node')

    expect(status).toBe(200)
    expect(body.node).toBe('test-node-1')
    expect(body.pid).toBe(a.pid)
    expect(body.version).toBe(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version)
    expect(body.kernel.release).toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim())
    expect(body.statsMode).toBe('fd')
    expect(body.statsPolicy).toBe('always')
    expect(body.probe).toEqual({ loaded: true, attached: false })
    expect(body.currentRun).toBeNull()
    const features = body.features as Array<{ name: string; status: string; detail: string }>
    expect(features.map((f) => f.name)).toEqual(
      expect.arrayContaining(['btf', 'tracepoint', 'raw_tracepoint', 'tp_btf', 'ringbuf', 'stats'])
    )
    for (const f of features) {
      expect({ f: f.name, status: ['yes', 'no', 'refused'].includes(f.status) }).toEqual({
        f: f.name,
        status: true,
      })
      expect(typeof f.detail).toBe('string')
    }
  })

  test('lists its own hm_ programs in /v1/programs with its pid among the owners', async () => {
    const { status, body } = await getJson(a, '/v1/programs')

    expect(status).toBe(200)
    expect(Object.keys(body).sort()).toEqual(['links', 'maps', 'programs', 'warnings'])
    const mine = (body.programs as any[]).filter((p) =>
      p.owners.some((o: { pid: number }) => o.pid === a.pid)
    )
    expect(mine.map((p) => p.fullName).sort()).toEqual(OWN_PROGRAMS)
    // the same programs as the agent's fdinfo shows
    expect(mine.map((p) => p.progId).sort((x, y) => x - y)).toEqual(hmProgIdsHeldBy(a.pid))
    for (const p of mine) {
      expect(p.name).toBe(p.fullName.slice(0, 15))
      expect(typeof p.hook).toBe('string')
      expect(Array.isArray(p.hooks)).toBe(true)
      expect(typeof p.tag).toBe('string')
    }
  })

  test('measures /v1/hooks over the window asked for, its idle probe not running', async () => {
    const { status, body } = await getJson(a, '/v1/hooks?window=1s')

    expect(status).toBe(200)
    expect(body.windowNs).toBeGreaterThan(0.8e9)
    expect(body.windowNs).toBeLessThan(1.2e9)
    expect(body.statsMode).toBe('fd')
    expect(body.cpus).toBeGreaterThan(0)
    const rows = body.hooks as any[]
    expect(rows.length).toBeGreaterThan(0)
    for (const r of rows) {
      expect(['kubearmor', 'tetragon', 'falco', 'tracee', 'other']).toContain(r.tool)
      expect(
        Object.keys(r)
          .filter((k) => k !== 'toolDetail')
          .sort()
      ).toEqual(
        [
          'cpuShare',
          'fullName',
          'hook',
          'name',
          'nodeShare',
          'nsPerRun',
          'owners',
          'progId',
          'recursionMisses',
          'runTimeNs',
          'runs',
          'runsPerSecond',
          'tool',
          'type',
        ].sort()
      )
    }
    const mine = rows.filter((r) => r.owners.some((o: { pid: number }) => o.pid === a.pid))
    expect(mine.map((r) => r.fullName).sort()).toEqual(OWN_PROGRAMS)
    // the exec probe is attached only during runs
    expect(mine.map((r) => r.runs)).toEqual([0, 0, 0, 0])
  }, 15_000)

  test('runs a micro benchmark: 202 running, running while it goes, done with its report', async () => {
    const id = await startRun(a, { iterations: 300, binary: '/usr/bin/true', warmup: 5 })

    const during = await getJson<RunJson>(a, `/v1/runs/${id}`)
    expect(during.status).toBe(200)
    expect(during.body.status).toBe('running')
    const listed = await getJson(a, '/v1/runs')
    expect(listed.body.runs.find((r: { id: number }) => r.id === id)?.status).toBe('running')

    const run = await waitRunEnd(a, id)
    firstRun = run
    expect({ status: run.status, error: run.error }).toEqual({ status: 'done', error: null })
    expect(run.run).toMatchObject({
      id,
      iterations: 300,
      binary: '/usr/bin/true',
      node: 'test-node-1',
      statsMode: 'fd',
    })
    expect(run.latencyNs.p50).toBeGreaterThan(0)
    expect(run.latencyNs.p99).toBeGreaterThanOrEqual(run.latencyNs.p50)
    expect(run.probe.seen.ringbuf).toBe(300)
    expect(Array.isArray(run.owners)).toBe(true)
    // its own programs (other hm_ programs on the node are other processes')
    const own = run.hooks.filter((h) => h.owners.some((o) => o.pid === a.pid))
    expect(own.map((h) => h.fullName).sort()).toEqual(OWN_PROGRAMS)
    expect(own.map((h) => h.own)).toEqual([true, true, true, true])
    const after = await getJson(a, '/v1/runs')
    expect(after.body.runs.find((r: { id: number }) => r.id === id)).toMatchObject({
      status: 'done',
      iterations: 300,
      binary: '/usr/bin/true',
    })
  }, 60_000)

  test('streams progress events with done rising to the total, then one end event', async () => {
    const id = await startRun(a, { iterations: 2000, binary: '/usr/bin/true', warmup: 5 })
    let statusAtFirstEvent = null as string | null

    const events = await readSse(`${a.url}/v1/runs/${id}/events`, async () => {
      // the first event comes while the run goes, not buffered until its end
      statusAtFirstEvent ??= (await getJson<RunJson>(a, `/v1/runs/${id}`)).body.status
    })

    expect(statusAtFirstEvent).toBe('running')
    const progress = events.filter((e) => e.event === 'progress').map((e) => JSON.parse(e.data))
    expect(progress.length).toBeGreaterThan(0)
    for (const p of progress) expect(p).toEqual({ done: expect.any(Number), total: 2000 })
    const done = progress.map((p) => p.done as number)
    expect(done).toEqual([...done].sort((x, y) => x - y))
    expect(done.at(-1)).toBe(2000)
    expect(events.filter((e) => e.event === 'end')).toHaveLength(1)
    expect(events.at(-1)!.event).toBe('end')
    expect(JSON.parse(events.at(-1)!.data)).toEqual({ status: 'done' })
    expect(events.every((e) => e.event === 'progress' || e.event === 'end')).toBe(true)

    // a finished run's stream is its end alone
    const again = await readSse(`${a.url}/v1/runs/${id}/events`, () => {})
    expect(again).toEqual([{ event: 'end', data: JSON.stringify({ status: 'done' }) }])
    secondRun = await waitRunEnd(a, id)
    expect(secondRun.status).toBe('done')
    expect(secondRun.probe.seen.ringbuf).toBe(2000)
  }, 60_000)

  test('compares two finished runs with the overhead of b over a', async () => {
    const res = await post(a, '/v1/runs/compare', { a: firstRun.run.id, b: secondRun.run.id })
    const body = (await res.json()) as any

    expect(res.status).toBe(200)
    expect(body.a.id).toBe(firstRun.run.id)
    expect(body.b.id).toBe(secondRun.run.id)
    const o = body.overhead
    for (const k of ['totalTimePct', 'medianRatio', 'medianPct', 'resamples', 'seed']) {
      expect({ k, finite: Number.isFinite(o[k]) }).toEqual({ k, finite: true })
    }
    expect(o.medianPct).toBeCloseTo((o.medianRatio - 1) * 100, 6)
    expect(o.ci95.low).toBeLessThanOrEqual(o.medianRatio)
    expect(o.ci95.high).toBeGreaterThanOrEqual(o.medianRatio)
    expect(Object.keys(body.split).sort()).toEqual([
      'inKernelNsPerExec',
      'totalNsPerExec',
      'unattributedNsPerExec',
      'userSpaceNsPerExec',
    ])
  })

  test('answers a second run while one is going with 409 and starts nothing', async () => {
    const id = await startRun(a, { iterations: 300, binary: '/usr/bin/true', warmup: 5 })
    const before = (await getJson(a, '/v1/runs')).body.runs.length

    const res = await post(a, '/v1/bench/micro', { iterations: 300, binary: '/usr/bin/true' })

    const body = await expectApiError(res, 409)
    expect(body.error.message).toContain(String(id))
    expect(body.error.issues.map((i) => i.code)).toEqual(['conflict'])
    expect((await getJson(a, '/v1/node')).body.currentRun?.id).toBe(id)
    expect((await getJson(a, '/v1/runs')).body.runs.length).toBe(before)
    expect((await waitRunEnd(a, id)).status).toBe('done')
  }, 60_000)

  test('refuses a run without a token or with a wrong one (401) and takes the right one', async () => {
    const ok = { iterations: 50, binary: '/usr/bin/true', warmup: 0 }
    const before = (await getJson(a, '/v1/runs')).body.runs.length

    const missing = await post(a, '/v1/bench/micro', ok, { token: null })
    expect(missing.headers.get('www-authenticate') ?? '').toContain('Bearer')
    expect((await expectApiError(missing, 401)).error.message).toContain('missing')
    const wrong = await post(a, '/v1/bench/micro', ok, { token: `${TOKEN.slice(0, -1)}X` })
    expect((await expectApiError(wrong, 401)).error.message).toContain('wrong')
    await expectApiError(await post(a, '/v1/bench/micro', ok, { token: 'short' }), 401)
    await expectApiError(await post(a, '/v1/bench/micro', ok, { auth: `Basic ${TOKEN}` }), 401)
    await expectApiError(await post(a, '/v1/bench/micro', ok, { auth: TOKEN }), 401)
    // the token is checked before the body is read
    await expectApiError(await post(a, '/v1/bench/micro', { iterations: -5 }, { token: null }), 401)
    expect((await getJson(a, '/v1/runs')).body.runs.length).toBe(before)

    const id = await startRun(a, ok)
    expect((await waitRunEnd(a, id)).status).toBe('done')
  }, 60_000)

  const badFields: Array<[string, Record<string, unknown>, Array<string | number>]> = [
    ['iterations -5', { iterations: -5 }, ['iterations']],
    ['iterations 0', { iterations: 0 }, ['iterations']],
    ['iterations 2000000', { iterations: 2_000_000 }, ['iterations']],
    ["iterations 'abc'", { iterations: 'abc' }, ['iterations']],
    ['iterations 1.5', { iterations: 1.5 }, ['iterations']],
    ["binary 'ls'", { binary: 'ls' }, ['binary']],
    ['binary /etc/passwd', { binary: '/etc/passwd' }, ['binary']],
    ['binary /usr/bin/env', { binary: '/usr/bin/env' }, ['binary']],
    ['args that are not an array', { args: '-l' }, ['args']],
    ['args with a number', { args: ['-l', 1] }, ['args', 1]],
    ['warmup -1', { warmup: -1 }, ['warmup']],
    ["condition 'sometimes'", { condition: 'sometimes' }, ['condition']],
    ['a label of 1000 characters', { label: 'x'.repeat(1000) }, ['label']],
    ["force 'yes'", { force: 'yes' }, ['force']],
    ['an unknown field', { iterations: 10, colour: 'blue' }, ['colour']],
  ]
  test.each(badFields)('rejects %s with 422 naming the field', async (_name, body, path) => {
    const before = (await getJson(a, '/v1/runs')).body.runs.length

    await expectApiError(await post(a, '/v1/bench/micro', body), 422, path)

    expect((await getJson(a, '/v1/runs')).body.runs.length).toBe(before)
  })

  test('rejects a body that is not JSON, or not sent as JSON, with 400', async () => {
    await expectApiError(await post(a, '/v1/bench/micro', null, { raw: '{"iterations": 10' }), 400)
    await expectApiError(
      await post(a, '/v1/bench/micro', null, { raw: 'iterations=10', contentType: 'text/plain' }),
      400
    )
    await expectApiError(
      await post(a, '/v1/bench/micro', null, {
        raw: '{"iterations":10}',
        contentType: 'application/x-www-form-urlencoded',
      }),
      400
    )
    expect((await getJson(a, '/v1/node')).body.currentRun).toBeNull()
  })

  test.each([
    ['abc', 'window=abc'],
    ['0s', 'window=0s'],
    ['301s', 'window=301s'],
    ['500ms', 'window=500ms'],
  ])('rejects window=%s on /v1/hooks with 400 naming window', async (_w, query) => {
    await expectApiError(await fetch(`${a.url}/v1/hooks?${query}`), 400, ['window'])
  })

  test('rejects an unknown query parameter on /v1/hooks with 400 naming it', async () => {
    await expectApiError(await fetch(`${a.url}/v1/hooks?window=1s&every=2s`), 400, ['every'])
  })

  test('answers a malformed run id with 400 and an unknown one with 404', async () => {
    await expectApiError(await fetch(`${a.url}/v1/runs/abc`), 400, ['id'])
    await expectApiError(await fetch(`${a.url}/v1/runs/0`), 400, ['id'])
    await expectApiError(await fetch(`${a.url}/v1/runs/999999`), 404)
    await expectApiError(await fetch(`${a.url}/v1/runs/abc/events`), 400, ['id'])
    await expectApiError(await fetch(`${a.url}/v1/runs/999999/events`), 404)
  })

  test('answers compare with a missing run 404 and a non-number 422', async () => {
    const id = firstRun.run.id
    await expectApiError(await post(a, '/v1/runs/compare', { a: id, b: 999999 }), 404, ['b'])
    await expectApiError(await post(a, '/v1/runs/compare', { a: 999999, b: id }), 404, ['a'])
    await expectApiError(await post(a, '/v1/runs/compare', { a: 'one', b: id }), 422, ['a'])
    await expectApiError(await post(a, '/v1/runs/compare', { a: id }), 422, ['b'])
    await expectApiError(await post(a, '/v1/runs/compare', null, { raw: 'a=1&b=2' }), 400)
  })

  test('answers an unknown route with 404 in the error shape', async () => {
    const body = await expectApiError(await fetch(`${a.url}/v1/nothing-here`), 404)
    expect(body.error.message).toContain('/v1/nothing-here')
    await expectApiError(await fetch(`${a.url}/v1/bench/micro`), 404)
  })

  test('serves the report page as HTML and chart.js beside it', async () => {
    const page = await fetch(`${a.url}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type') ?? '').toContain('text/html')
    const html = await page.text()
    expect(html.toLowerCase()).toStartWith('<!doctype html>')
    expect(html).toContain('/assets/chart.js')
    const chart = await fetch(`${a.url}/assets/chart.js`)
    expect(chart.status).toBe(200)
    expect(chart.headers.get('content-type') ?? '').toContain('javascript')
    expect((await chart.text()).length).toBeGreaterThan(10_000)
  })

  let bigRunId = 0

  test('answers /healthz during a 10,000-exec run within 50 times its idle p99', async () => {
    for (let i = 0; i < 5; i++) await timedHealthz(a)
    // spaced as during the run, so that both find the agent waiting in the same way
    const idle: number[] = []
    for (let i = 0; i < 50; i++) {
      idle.push(await timedHealthz(a))
      await sleep(20)
    }
    const id = await startRun(a, { iterations: 10_000 })
    await waitLoopStarted(a, id, 90_000)

    const during: number[] = []
    for (let i = 0; i < 200; i++) {
      during.push(await timedHealthz(a))
      await sleep(20)
    }
    const status = (await getJson<RunJson>(a, `/v1/runs/${id}`)).body.status

    const fig = (v: number[]) =>
      `p50 ${quantile(v, 0.5).toFixed(2)} ms, p99 ${quantile(v, 0.99).toFixed(2)} ms, max ${Math.max(...v).toFixed(2)} ms`
    const ratio = quantile(during, 0.99) / quantile(idle, 0.99)
    console.log(
      `/healthz idle (${idle.length}): ${fig(idle)}; during a 10,000-exec run (${during.length}): ${fig(during)}; p99 ratio ${ratio.toFixed(1)}`
    )
    // every sample was taken while the run was going
    expect(status).toBe('running')
    expect(ratio).toBeLessThan(50)
    const run = await waitRunEnd(a, id, 150_000)
    expect(run.status).toBe('done')
    expect(run.probe.seen.ringbuf).toBe(10_000)
    bigRunId = id
  }, 240_000)

  test('serves /metrics that a Prometheus parser reads, one series per label set', async () => {
    const res = await fetch(`${a.url}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type') ?? '').toContain('text/plain')
    const text = await res.text()

    const families = parsePrometheusTextFormat(text)
    const byName = new Map(families.map((f) => [f.name, f]))
    for (const name of [
      'hookmeter_program_run_time_seconds_total',
      'hookmeter_program_runs_total',
      'hookmeter_program_info',
      'hookmeter_program_owner_info',
      'hookmeter_stats_enabled',
      'hookmeter_last_run_exec_latency_seconds',
      'hookmeter_last_run_exec_phase_seconds',
      'hookmeter_last_run_delivery_latency_seconds',
      'hookmeter_agent_cpu_seconds_total',
      'hookmeter_agent_resident_memory_bytes',
      'hookmeter_build_info',
    ]) {
      expect({ name, found: byName.has(name) }).toEqual({ name, found: true })
    }
    const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))
    for (const f of families) {
      if (f.type === 'HISTOGRAM') continue
      // the parser merges a series into the one before it when their labels are equal, so a
      // count below the text's lines is a duplicate; distinct label sets catch the others
      const lines = samples.filter((l) => /^[^{ ]+/.exec(l)![0] === f.name)
      expect({ family: f.name, series: f.metrics.length }).toEqual({
        family: f.name,
        series: lines.length,
      })
      const keys = new Set(
        f.metrics.map((m) => JSON.stringify(Object.entries(m.labels ?? {}).sort()))
      )
      expect({ family: f.name, unique: keys.size }).toEqual({
        family: f.name,
        unique: f.metrics.length,
      })
    }
    // histogram series: no sample line (name and labels) twice
    const keyOf = (l: string) => l.slice(0, l.lastIndexOf(' '))
    const histogramLines = samples.filter((l) => /_(bucket|sum|count)[{ ]/.test(l)).map(keyOf)
    expect(histogramLines.length).toBeGreaterThan(0)
    expect(new Set(histogramLines).size).toBe(histogramLines.length)

    // the agent's own programs: three share the kernel name hm_sched_proces, told apart by prog_id
    const ownIds = new Set(
      byName
        .get('hookmeter_program_owner_info')!
        .metrics.filter((m) => m.labels?.pid === String(a.pid))
        .map((m) => m.labels!.prog_id)
    )
    expect([...ownIds].map(Number).sort((x, y) => x - y)).toEqual(hmProgIdsHeldBy(a.pid))
    const sameName = byName
      .get('hookmeter_program_runs_total')!
      .metrics.filter((m) => ownIds.has(m.labels!.prog_id!) && m.labels!.name === 'hm_sched_proces')
    const ids = new Set(sameName.map((m) => m.labels!.prog_id))
    expect(sameName.length).toBeGreaterThanOrEqual(2)
    expect(ids.size).toBe(sameName.length)
    const fullNames = byName
      .get('hookmeter_program_info')!
      .metrics.filter((m) => ids.has(m.labels!.prog_id!))
      .map((m) => m.labels!.full_name)
    expect(new Set(fullNames).size).toBe(ids.size)

    // the last run's exec phases: the parser folds a labelled histogram's series into one, so
    // each phase's lines are given to it alone
    const run = (await getJson<RunJson>(a, `/v1/runs/${bigRunId}`)).body
    const family = 'hookmeter_last_run_exec_phase_seconds'
    const header = text
      .split('\n')
      .filter((l) => l.startsWith(`# HELP ${family} `) || l.startsWith(`# TYPE ${family} `))
    for (const phase of ['fork_to_execve', 'execve_to_exec', 'exec_to_exit']) {
      const lines = samples.filter(
        (l) => l.startsWith(`${family}_bucket{`) && l.includes(`phase="${phase}"`)
      )
      expect({ phase, runId: lines.every((l) => l.includes(`run_id="${bigRunId}"`)) }).toEqual({
        phase,
        runId: true,
      })
      const parsed = parsePrometheusTextFormat([...header, ...lines, ''].join('\n'))
      const buckets = parsed[0]?.metrics[0]?.buckets ?? {}
      const counts = Object.values(buckets).map(Number)
      expect({ phase, buckets: counts.length }).toEqual({ phase, buckets: lines.length })
      expect(counts.length).toBeGreaterThan(1)
      expect(counts).toEqual([...counts].sort((x, y) => x - y))
      expect({ phase, inf: Number(buckets['+Inf']) }).toEqual({
        phase,
        inf: run.probe.seen.ringbuf,
      })
    }

    const rss = Number(byName.get('hookmeter_agent_resident_memory_bytes')!.metrics[0]!.value)
    expect(rss).toBeGreaterThan(0)
    const cpu = byName.get('hookmeter_agent_cpu_seconds_total')!.metrics
    expect(cpu.map((m) => m.labels!.mode).sort()).toEqual(['system', 'user'])
    expect(byName.get('hookmeter_stats_enabled')!.metrics).toEqual([
      { value: '1', labels: { mode: 'fd' } },
    ])
    expect(byName.get('hookmeter_build_info')!.metrics[0]!.labels!.node).toBe('test-node-1')
  })

  test('exits 0 on SIGTERM and leaves none of its programs loaded', async () => {
    const ids = hmProgIdsHeldBy(a.pid)
    expect(ids.length).toBe(OWN_PROGRAMS.length)

    const r = await stopAgent(a)

    expect({ code: r.code, signal: r.signalCode }).toEqual({ code: 0, signal: null })
    expect(await waitProgramsGone(ids)).toEqual([])
    expect(logLines(a.stderr()).filter((l) => l.level === 'error')).toEqual([])
  }, 30_000)
})

describe.skipIf(kernelProblem !== null)('hookmeter serve without a token', () => {
  let b: Agent

  beforeAll(async () => {
    b = await startAgent({ dataDir: dataDir(), args: ['--stats', 'runs'] })
  }, 60_000)

  test('is read-only: a run is refused with 401 saying so, with or without a token', async () => {
    const ok = { iterations: 50, binary: '/usr/bin/true' }
    expect(b.ready.readOnly).toBe(true)

    for (const token of [null, TOKEN]) {
      const body = await expectApiError(await post(b, '/v1/bench/micro', ok, { token }), 401)
      expect(body.error.message).toContain('read-only')
    }
    expect((await getJson(b, '/v1/runs')).body).toEqual({ runs: [] })
  })

  test('answers reads without a token and keeps statistics off between runs', async () => {
    expect(await getJson(b, '/healthz')).toEqual({ status: 200, body: { status: 'ok' } })
    expect(await getJson(b, '/readyz')).toEqual({ status: 200, body: { ready: true } })
    const node = await getJson(b, '/v1/node')
    expect(node.status).toBe(200)
    expect(node.body.node).toBe(hostname())
    expect(node.body.statsMode).toBe('off')
    expect(node.body.statsPolicy).toBe('runs')
    expect((await getJson(b, '/v1/programs')).status).toBe(200)
    const hooks = await getJson(b, '/v1/hooks?window=1s')
    expect(hooks.status).toBe(200)
    // statistics are on for the window only
    expect(hooks.body.statsMode).not.toBe('off')
    expect(hooks.body.windowNs).toBeGreaterThan(0.8e9)
    expect(hooks.body.windowNs).toBeLessThan(1.2e9)
    const metrics = await fetch(`${b.url}/metrics`)
    expect(metrics.status).toBe(200)
    const stats = parsePrometheusTextFormat(await metrics.text()).find(
      (f) => f.name === 'hookmeter_stats_enabled'
    )
    expect(stats?.metrics).toEqual([{ value: '0', labels: { mode: 'off' } }])
  }, 15_000)

  test('refuses to start on 0.0.0.0 with exit code 2 and a message naming --address', async () => {
    const r = await runOnce([
      'serve',
      '--address',
      '0.0.0.0',
      '--port',
      '0',
      '--data-dir',
      dataDir(),
    ])

    expect({ code: r.code, stderr: r.stderr }).toEqual({
      code: 2,
      stderr: expect.stringContaining('--address'),
    })
    expect(r.stderr).not.toContain('agent ready')
  })

  test('exits 0 on SIGTERM and leaves none of its programs loaded', async () => {
    const ids = hmProgIdsHeldBy(b.pid)
    expect(ids.length).toBe(OWN_PROGRAMS.length)

    const r = await stopAgent(b)

    expect({ code: r.code, signal: r.signalCode }).toEqual({ code: 0, signal: null })
    expect(await waitProgramsGone(ids)).toEqual([])
  }, 30_000)
})

describe.skipIf(kernelProblem !== null)('stopping and restarting', () => {
  let c: Agent
  let tokenFile: string
  let kept: RunJson
  let abortedId = 0

  beforeAll(async () => {
    tokenFile = join(tmp, 'token')
    writeFileSync(tokenFile, `${TOKEN}\n`)
    chmodSync(tokenFile, 0o600)
    c = await startAgent({ dataDir: dataDir(), args: ['--token-file', tokenFile] })
    const id = await startRun(c, { iterations: 300, binary: '/usr/bin/true', warmup: 5 })
    kept = await waitRunEnd(c, id)
    expect(kept.status).toBe('done')
  }, 90_000)

  test('exits 0 soon after SIGTERM during a run and leaves nothing attached', async () => {
    abortedId = await startRun(c, { iterations: 200_000, binary: '/usr/bin/true', warmup: 5 })
    await waitLoopStarted(c, abortedId, 90_000)
    expect((await getJson(c, '/v1/node')).body.probe.attached).toBe(true)
    const ids = hmProgIdsHeldBy(c.pid)
    expect(ids.length).toBeGreaterThanOrEqual(OWN_PROGRAMS.length)

    const r = await stopAgent(c, 'SIGTERM', 15_000)

    console.log(`SIGTERM during a run: exited ${r.code} after ${r.ms.toFixed(0)} ms`)
    expect({ code: r.code, signal: r.signalCode }).toEqual({ code: 0, signal: null })
    expect(r.ms).toBeLessThan(10_000)
    expect(await waitProgramsGone(ids)).toEqual([])
    expect(await waitNoHmPrograms(5000)).toEqual([])
    const msgs = logLines(c.stderr()).map((l) => l.msg)
    expect(msgs).toContain('run aborted')
    expect(msgs).toContain('agent stopped')
  }, 150_000)

  test('shows the interrupted run aborted and the finished one unchanged after a restart', async () => {
    // the same data dir, this time from HOOKMETER_DATA_DIR
    const again = await startAgent({
      dataDir: c.dataDir,
      dataDirFromEnv: true,
      args: ['--token-file', tokenFile],
    })
    try {
      const runs = (await getJson(again, '/v1/runs')).body.runs as Array<{
        id: number
        status: string
      }>
      expect(runs.map((r) => [r.id, r.status]).sort()).toEqual(
        [
          [kept.run.id, 'done'],
          [abortedId, 'aborted'],
        ].sort()
      )
      expect((await getJson(again, `/v1/runs/${kept.run.id}`)).body).toEqual(kept)
      const aborted = (await getJson<RunJson>(again, `/v1/runs/${abortedId}`)).body
      expect(aborted.status).toBe('aborted')
      expect(aborted.error).toEqual(expect.any(String))
      const events = await readSse(`${again.url}/v1/runs/${abortedId}/events`, () => {})
      expect(events).toEqual([{ event: 'end', data: JSON.stringify({ status: 'aborted' }) }])
    } finally {
      const r = await stopAgent(again)
      expect(r.code).toBe(0)
    }
  }, 60_000)

  test('refuses a data file that is not a store: exit 1 naming it, the file unchanged', async () => {
    const dir = dataDir()
    const file = join(dir, 'hookmeter.db')
    const garbage = Buffer.from('this is not a hookmeter store\n'.repeat(200))
    writeFileSync(file, garbage)

    const r = await runOnce(['serve', '--port', '0', '--data-dir', dir], { HOOKMETER_TOKEN: TOKEN })

    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: expect.any(String) })
    const errors = logLines(r.stderr).filter((l) => l.level === 'error')
    expect(errors.map((l) => l.msg).join('\n')).toContain(file)
    expect(r.stderr).not.toContain('agent ready')
    expect(readFileSync(file).equals(garbage)).toBe(true)
  }, 60_000)

  test('refuses another application’s SQLite file: exit 1 naming it, the file unchanged', async () => {
    const dir = dataDir()
    const file = join(dir, 'hookmeter.db')
    const db = new Database(file)
    db.run('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)')
    db.run("INSERT INTO notes (text) VALUES ('not hookmeter')")
    db.close()
    const before = readFileSync(file)

    const r = await runOnce(['serve', '--port', '0', '--data-dir', dir], { HOOKMETER_TOKEN: TOKEN })

    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: expect.any(String) })
    const errors = logLines(r.stderr).filter((l) => l.level === 'error')
    expect(errors.map((l) => l.msg).join('\n')).toContain(file)
    expect(readFileSync(file).equals(before)).toBe(true)
  }, 60_000)
})
