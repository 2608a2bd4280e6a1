/**
 * Latency of the agent's read endpoints under a steady open-loop load from this process, on
 * 127.0.0.1: GET /v1/hooks?window=1s, GET /v1/programs and GET /metrics, one endpoint at a time,
 * each against a fresh `hookmeter serve` (the single binary), once idle and once while a micro
 * run is going.
 *
 *   node_modules/.bin/bun bench/api-latency.ts [--rate N] [--seconds N] [--iterations N] [--json]
 *
 * Open loop: request i is due at t0 + i × (1000 / rate) ms and is sent then whether or not the
 * earlier ones have been answered, so that a slow answer delays no later request and the figure
 * is not flattered by a client that waits (coordinated omission). Latency runs from the due time
 * (or the send, if the timer fired early) to the last byte of the body; the generator's own
 * lateness (send − due) is reported beside it.
 * A request due while `--max-inflight` are outstanding is not sent and is counted as skipped.
 *
 * /v1/hooks holds each request for its window (1 s is the least it takes), measuring every
 * program between two snapshots, so its latency is the window plus the work; the part above the
 * window is given as well. /v1/programs is the inventory alone (cached for a second), /metrics the
 * inventory plus fresh counters.
 *
 * The micro run (`POST /v1/bench/micro`) goes through delivery calibration, warm-up, an idle
 * window as long as the loop, then the exec loop; each request is tagged with the phase the run
 * was in when it was due (from the agent's log lines), so the loop phase, where the exec loop
 * competes for the 2 CPUs, is shown apart. The run is cut short by SIGTERM at the end.
 */
import { environment, progress } from './lib.ts'
import { quantiles } from '../agent/stats.ts'
import {
  AgentProcess,
  buildBinary,
  CLK_TCK,
  cpuTicks,
  freePort,
  header,
  kernelState,
  makeTempDir,
  parseArgs,
  printResult,
  runMain,
  type LogLine,
} from './start-ready.ts'

const WINDOW_MS = 1000
const ENDPOINTS = [
  { path: `/v1/hooks?window=${WINDOW_MS / 1000}s`, windowMs: WINDOW_MS },
  { path: '/v1/programs', windowMs: 0 },
  { path: '/metrics', windowMs: 0 },
]
const GOAL_P99_MS = 20
/** a request still unanswered this long after its window is abandoned and counted as a timeout */
const TIMEOUT_MS = 10_000
const WARMUP_REQUESTS = 5

interface Req {
  due: number
  sent: number
  /** min(due, sent): a late generator is charged to the request; an early send is timed from itself */
  start: number
  done: number
  status: number
  bytes: number
  error: string | null
  phase: string
}

interface Stats {
  n: number
  ok: number
  failed: number
  p50: number
  p99: number
  max: number
}

interface Row {
  endpoint: string
  condition: string
  /** requests due in the span (sent + skipped) */
  due: number
  sent: number
  skipped: number
  timeouts: number
  errors: number
  maxInflight: number
  /** min(due, send) → last byte, ms, over every sent request (a failure counts when it failed) */
  latencyMs: Stats
  /** the same less the endpoint's window: the work /v1/hooks does besides waiting */
  aboveWindowMs: Stats | null
  /** send − due: how late the generator itself was (negative: a timer that fired early) */
  lagMs: { p99: number; max: number }
  bytesMedian: number
  /** agent CPU over the load span, percent of one CPU; for the whole condition only */
  agentCpuPct: number | null
  /** stretches of requests slower than the goal (above the window, for /v1/hooks) */
  slowEpisodes: Episode[]
}

function stats(values: number[], ok: number, failed: number): Stats {
  const [p50, p99, max] = quantiles(values, [0.5, 0.99, 1])
  return { n: values.length, ok, failed, p50: p50!, p99: p99!, max: max! }
}

interface LoadResult {
  reqs: Req[]
  skippedAt: number[]
  maxInflight: number
}

/** Sends GET `url` at fixed intervals, at most `count` times, without waiting for answers. */
async function openLoop(
  url: string,
  count: number,
  intervalMs: number,
  maxInflight: number,
  timeoutMs: number
): Promise<LoadResult> {
  const reqs: Req[] = []
  const skippedAt: number[] = []
  const pending = new Set<Promise<void>>()
  let inflight = 0
  let most = 0
  const t0 = performance.now() + 20
  for (let i = 0; i < count; i++) {
    const due = t0 + i * intervalMs
    // timers fire to the millisecond, so a request may go out up to 1 ms early: its latency then
    // runs from the send; a late one's runs from its due time (see `start`)
    const wait = due - performance.now()
    if (wait >= 1) await Bun.sleep(Math.floor(wait))
    if (inflight >= maxInflight) {
      skippedAt.push(due)
      continue
    }
    inflight++
    most = Math.max(most, inflight)
    const sent = performance.now()
    const r: Req = {
      due,
      sent,
      start: Math.min(due, sent),
      done: 0,
      status: 0,
      bytes: 0,
      error: null,
      phase: '',
    }
    reqs.push(r)
    const p: Promise<void> = fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
      .then(async (res) => {
        r.bytes = (await res.arrayBuffer()).byteLength
        r.status = res.status
      })
      .catch((err: Error) => {
        r.error = err.name === 'TimeoutError' ? 'timeout' : err.message
      })
      .finally(() => {
        r.done = performance.now()
        inflight--
        pending.delete(p)
      })
    pending.add(p)
  }
  await Promise.all(pending)
  return { reqs, skippedAt, maxInflight: most }
}

/** The run's phases as [start, name], from the agent's log lines of that run. */
function phasesOf(log: LogLine[], runId: number): Array<[number, string]> {
  const names: Array<[RegExp, string]> = [
    [/^run started/, 'start'],
    [/^delivery calibration/, 'delivery calibration'],
    [/^warm-up/, 'warm-up'],
    [/^idle window/, 'idle window'],
    [/^loop:/, 'loop'],
    [/^collecting/, 'collect'],
    [/^run (done|failed|aborted)/, 'after the run'],
  ]
  const out: Array<[number, string]> = []
  for (const l of log) {
    if (l.line.run !== runId) continue
    const hit = names.find(([re]) => re.test(String(l.line.msg)))
    if (hit) out.push([l.at, hit[1]])
  }
  return out
}

function phaseAt(phases: Array<[number, string]>, t: number): string {
  let name = 'before the run'
  for (const [at, n] of phases) if (at <= t) name = n
  return name
}

interface Episode {
  /** seconds from the first due time of the load */
  atS: number
  requests: number
  maxMs: number
  phase: string
}

/**
 * Requests slower than the goal, grouped into episodes (a request starting while an earlier slow
 * one is still outstanding belongs to its episode): a few long stalls of the agent's event loop
 * and a steady slowness look alike in a p99 and not at all here.
 */
function slowEpisodes(reqs: Req[], windowMs: number): Episode[] {
  const t0 = reqs[0]?.due ?? 0
  const slow = reqs.filter((r) => r.done - r.start - windowMs > GOAL_P99_MS)
  const out: Array<Episode & { end: number }> = []
  for (const r of slow) {
    const last = out.at(-1)
    const ms = r.done - r.start - windowMs
    if (last && r.start < last.end) {
      last.requests++
      last.maxMs = Math.max(last.maxMs, ms)
      last.end = Math.max(last.end, r.done)
    } else {
      out.push({
        atS: +((r.start - t0) / 1000).toFixed(2),
        requests: 1,
        maxMs: ms,
        phase: r.phase,
        end: r.done,
      })
    }
  }
  return out.map(({ end: _end, ...e }) => ({ ...e, maxMs: +e.maxMs.toFixed(1) }))
}

function row(
  endpoint: string,
  condition: string,
  windowMs: number,
  reqs: Req[],
  skipped: number,
  maxInflight: number,
  agentCpuPct: number | null
): Row {
  const lat = reqs.map((r) => r.done - r.start)
  const ok = reqs.filter((r) => r.status === 200).length
  const [lagP99, lagMax] = quantiles(
    reqs.map((r) => r.sent - r.due),
    [0.99, 1]
  )
  const bytes = reqs.filter((r) => r.status === 200).map((r) => r.bytes)
  return {
    endpoint,
    condition,
    due: reqs.length + skipped,
    sent: reqs.length,
    skipped,
    timeouts: reqs.filter((r) => r.error === 'timeout').length,
    errors: reqs.filter((r) => r.status !== 200 && r.error !== 'timeout').length,
    maxInflight,
    latencyMs: stats(lat, ok, reqs.length - ok),
    aboveWindowMs: windowMs
      ? stats(
          lat.map((v) => v - windowMs),
          ok,
          reqs.length - ok
        )
      : null,
    lagMs: { p99: lagP99!, max: lagMax! },
    bytesMedian: bytes.length ? quantiles(bytes, [0.5])[0]! : 0,
    agentCpuPct,
    slowEpisodes: slowEpisodes(reqs, windowMs),
  }
}

async function measure(
  binary: string,
  endpoint: (typeof ENDPOINTS)[number],
  withRun: boolean,
  opts: { rate: number; seconds: number; 'max-inflight': number; iterations: number }
): Promise<{ rows: Row[]; run: Record<string, unknown> | null }> {
  const agent = new AgentProcess({
    binary,
    dataDir: makeTempDir('hm-bench-api-'),
    port: freePort(),
  })
  await agent.ready()
  const url = `${agent.url}${endpoint.path}`
  const timeoutMs = endpoint.windowMs + TIMEOUT_MS
  // a few requests first, not counted: the first one of a fresh process pays for compilation
  await Promise.all(
    Array.from({ length: WARMUP_REQUESTS }, () =>
      fetch(url, { signal: AbortSignal.timeout(timeoutMs) }).then((r) => r.arrayBuffer())
    )
  )

  let runId = 0
  if (withRun) {
    const r = await fetch(`${agent.url}/v1/bench/micro`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ iterations: opts.iterations, label: 'bench api-latency' }),
      signal: AbortSignal.timeout(5000),
    })
    const body = (await r.json()) as { id?: number }
    if (r.status !== 202 || !body.id) {
      throw new Error(`POST /v1/bench/micro: ${r.status} ${JSON.stringify(body)}`)
    }
    runId = body.id
  }

  const condition = withRun ? `micro run (${opts.iterations} execs)` : 'idle'
  progress(`${endpoint.path}, ${condition}: ${opts.rate} req/s for ${opts.seconds} s`)
  const intervalMs = 1000 / opts.rate
  const count = Math.round((opts.seconds * 1000) / intervalMs)
  const cpu0 = cpuTicks(agent.pid)
  const tCpu0 = performance.now()
  const load = await openLoop(url, count, intervalMs, opts['max-inflight'], timeoutMs)
  const agentCpuPct =
    ((cpuTicks(agent.pid) - cpu0) / CLK_TCK / ((performance.now() - tCpu0) / 1000)) * 100

  let run: Record<string, unknown> | null = null
  const rows: Row[] = []
  const phases = withRun ? phasesOf(agent.log, runId) : []
  for (const r of load.reqs) r.phase = withRun ? phaseAt(phases, r.due) : 'idle'
  rows.push(
    row(
      endpoint.path,
      condition,
      endpoint.windowMs,
      load.reqs,
      load.skippedAt.length,
      load.maxInflight,
      agentCpuPct
    )
  )
  if (withRun) {
    const status = (await (
      await fetch(`${agent.url}/v1/runs/${runId}`, { signal: AbortSignal.timeout(5000) })
    ).json()) as { status: string; progress?: { done: number; total: number } }
    const t0 = load.reqs[0]?.due ?? 0
    run = {
      id: runId,
      statusAtEnd: status.status,
      progressAtEnd: status.progress ?? null,
      phases: phases.map(([at, name]) => ({ name, atS: +((at - t0) / 1000).toFixed(2) })),
    }
    // per phase, for the phases that held enough requests to give a p99
    const byPhase = new Map<string, Req[]>()
    for (const r of load.reqs) byPhase.set(r.phase, [...(byPhase.get(r.phase) ?? []), r])
    for (const [phase, reqs] of byPhase) {
      if (reqs.length < 100) continue
      const skipped = load.skippedAt.filter((d) => phaseAt(phases, d) === phase).length
      rows.push(
        row(
          endpoint.path,
          `  run phase: ${phase}`,
          endpoint.windowMs,
          reqs,
          skipped,
          load.maxInflight,
          null
        )
      )
    }
  }
  const code = await agent.stop()
  if (code !== 0) throw new Error(`agent exited ${code} after SIGTERM:\n${agent.tail()}`)
  if (withRun && run) {
    run.endedAs =
      agent.log.find(
        (l) => l.line.run === runId && /^run (done|failed|aborted)/.test(String(l.line.msg))
      )?.line.msg ?? null
  }
  return { rows, run }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2), 'api-latency', {
    rate: [100, 1, 'requests per second per endpoint'],
    seconds: [30, 1, 'seconds of load per endpoint and condition'],
    'max-inflight': [200, 1, 'outstanding requests at most; a request due beyond it is skipped'],
    iterations: [20_000, 1, 'execs of the micro run the loaded condition runs beside'],
  })
  // every loop is bounded by count as well as by time
  if (opts.rate * opts.seconds > 3000) {
    throw new Error(
      `--rate × --seconds is ${opts.rate * opts.seconds}; at most 3000 requests per endpoint`
    )
  }
  const env = environment()
  const before = kernelState()
  const binary = buildBinary(opts.binary)

  const rows: Row[] = []
  const runs: Record<string, unknown>[] = []
  for (const endpoint of ENDPOINTS) {
    for (const withRun of [false, true]) {
      const m = await measure(binary, endpoint, withRun, opts)
      rows.push(...m.rows)
      if (m.run) runs.push({ endpoint: endpoint.path, ...m.run })
      const top = m.rows[0]!
      progress(
        `  p50 ${top.latencyMs.p50.toFixed(1)} ms, p99 ${top.latencyMs.p99.toFixed(1)} ms, max ${top.latencyMs.max.toFixed(1)} ms, ${top.skipped} skipped, ${top.timeouts} timeouts, ${top.errors} errors`
      )
    }
  }
  const after = kernelState()

  // the goal: p99 under 20 ms; for /v1/hooks the part above the window, which is all it can mean
  const goalOf = (r: Row) => (r.aboveWindowMs ?? r.latencyMs).p99 < GOAL_P99_MS && r.skipped === 0
  const result = {
    benchmark: 'api-latency',
    environment: env,
    kernelBefore: before,
    kernelAfter: after,
    load: { ...opts, maxInflight: opts['max-inflight'], openLoop: true, timeoutMs: TIMEOUT_MS },
    rows: rows.map((r) => ({ ...r, goalP99UnderMs: GOAL_P99_MS, goalMet: goalOf(r) })),
    runs,
  }

  const f = (v: number) => v.toFixed(1).padStart(7)
  const lines = [
    header(
      env,
      `open loop, ${opts.rate} req/s per endpoint for ${opts.seconds} s, at most ${opts['max-inflight']} in flight, ` +
        `one endpoint at a time, fresh agent each; latency from due time to last byte, ms`
    ),
    `${'  endpoint'.padEnd(24)}${'condition'.padEnd(34)}   sent  skip  fail     p50     p99     max  above window p50/p99   lag p99  agent CPU`,
    ...rows.map(
      (r) =>
        `  ${r.endpoint.padEnd(22)}${r.condition.padEnd(34)}${String(r.sent).padStart(6)}${String(r.skipped).padStart(6)}${String(r.errors + r.timeouts).padStart(6)}` +
        `${f(r.latencyMs.p50)} ${f(r.latencyMs.p99)} ${f(r.latencyMs.max)}  ` +
        `${(r.aboveWindowMs ? `${r.aboveWindowMs.p50.toFixed(1)} / ${r.aboveWindowMs.p99.toFixed(1)}` : '').padStart(20)}` +
        `${f(r.lagMs.p99)}  ${r.agentCpuPct === null ? '' : `${r.agentCpuPct.toFixed(1).padStart(6)} %`}`
    ),
    ...rows
      .filter((r) => !r.condition.startsWith('  ') && r.slowEpisodes.length)
      .map(
        (r) =>
          `slow (over ${GOAL_P99_MS} ms${r.aboveWindowMs ? ' above the window' : ''}) ${r.endpoint}, ${r.condition}: ${r.slowEpisodes.length} episodes: ` +
          r.slowEpisodes
            .slice(0, 12)
            .map((e) => `@${e.atS} s ${e.requests}× ≤${e.maxMs} ms (${e.phase})`)
            .join(', ') +
          (r.slowEpisodes.length > 12 ? ', …' : '')
      ),
    ...runs.map(
      (r) =>
        `run ${r.id} under ${r.endpoint}: phases ${(r.phases as Array<{ name: string; atS: number }>).map((p) => `${p.name} @${p.atS} s`).join(', ')}; ` +
        `at the end of the load ${r.statusAtEnd}${r.progressAtEnd ? ` ${(r.progressAtEnd as { done: number }).done}/${(r.progressAtEnd as { total: number }).total}` : ''}, then ${r.endedAs ?? '?'}`
    ),
    `goal p99 under ${GOAL_P99_MS} ms (for /v1/hooks: above its window), nothing skipped: ` +
      rows
        .filter((r) => !r.condition.startsWith('  '))
        .map((r) => `${r.endpoint} ${r.condition.split(' (')[0]} ${goalOf(r) ? 'met' : 'not met'}`)
        .join('; '),
    `kernel: bpf_stats_enabled ${before.statsSysctl} → ${after.statsSysctl}; hm_ programs on the host ${before.hmPrograms} → ${after.hmPrograms} (ours checked gone by id)`,
  ]
  printResult(opts.json, result, lines.join('\n'))
}

await runMain(main)
