/**
 * The node agent's HTTP API on Hono. Reads are open; every request that starts or changes
 * something needs the bearer token. Every input goes through a zod schema.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

import { Hono, type Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import { z } from 'zod'

import { durationMs } from '../cli.ts'
import { baselineProblem, microOptionsWithAllowlist } from '../bench/options.ts'
import { compareRuns } from '../compare.ts'
import type { Logger } from '../log.ts'
import { StoreError } from '../store.ts'
import type { Agent, RunEvent } from './agent.ts'
import { BusyError } from './agent.ts'
import { ApiError, errorResponse, issuesMessage, zodIssues } from './errors.ts'
import { lastDoneRun, renderMetrics } from './metrics.ts'
import { toolReport, toolsReport } from '../tools/arch.ts'
import { TOOLS } from '../tools/types.ts'
import chartJsPath from '../../node_modules/chart.js/dist/chart.umd.min.js' with { type: 'file' }
import { reportPage } from './page.ts'

export interface AppOptions {
  agent: Agent
  /** the bearer token; without one the agent is read-only */
  token: string | null
  log: Logger
  ready: () => boolean
  /** the agent listens on loopback only: requests must name a loopback host (DNS rebinding) */
  loopbackOnly?: boolean
}

/** JSON with bigints as numbers: counters stay far below 2^53 in any window we report. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))
}

function json(c: Context, value: unknown, status: 200 | 202 = 200) {
  return c.body(toJson(value), status, { 'content-type': 'application/json; charset=utf-8' })
}

const digest = (s: string) => createHash('sha256').update(s).digest()

const idParam = z.object({
  id: z.string().regex(/^[1-9]\d{0,15}$/, 'expected a run id (a positive whole number)'),
})
const windowQuery = z
  .object({
    window: z
      .string()
      .regex(/^\d+(\.\d+)?(ms|s|m)?$/, 'expected a duration such as 5s or 500ms')
      .optional(),
  })
  .strict()
const toolParam = z.object({
  name: z.enum(TOOLS, { error: `expected one of ${TOOLS.join(', ')}` }),
})
const compareBody = z
  .object({ a: z.number().int().positive(), b: z.number().int().positive() })
  .strict()

async function readJson(c: Context): Promise<unknown> {
  const type = c.req.header('content-type') ?? ''
  if (!type.includes('application/json')) {
    throw new ApiError(400, 'expected a JSON body (content-type: application/json)', [
      { code: 'invalid_type', path: [], message: `content-type is '${type || 'missing'}'` },
    ])
  }
  const text = await c.req.text()
  if (text.length > 64 * 1024) throw new ApiError(413, 'request body over 64 KiB')
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new ApiError(400, `body is not valid JSON: ${(err as Error).message}`, [
      { code: 'invalid_json', path: [], message: (err as Error).message },
    ])
  }
}

function parseWith<T extends z.ZodType>(
  schema: T,
  value: unknown,
  what: string,
  status: 400 | 422
): z.infer<T> {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const issues = zodIssues(r.error)
  throw new ApiError(status, issuesMessage(what, issues), issues)
}

export function createApp(opts: AppOptions): Hono {
  const { agent, log } = opts
  const app = new Hono()
  const tokenDigest = opts.token ? digest(opts.token) : null

  app.use('*', async function accessLog(c, next) {
    const start = performance.now()
    await next()
    const fields = {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: +(performance.now() - start).toFixed(2),
    }
    if (c.req.method === 'GET') log.debug('request', fields)
    else log.info('request', fields)
  })

  app.use('*', async function guard(c, next) {
    // a page on another site, its name rebound to 127.0.0.1, would name that site in Host
    if (opts.loopbackOnly) {
      const host = (c.req.header('host') ?? '').replace(/:\d+$/, '').toLowerCase()
      if (!/^(localhost|127(\.\d{1,3}){3}|\[::1\])$/.test(host)) {
        throw new ApiError(
          403,
          `this agent listens on loopback only and answers requests for a loopback host, not '${host}'`
        )
      }
    }
    await next()
    c.header('x-content-type-options', 'nosniff')
    c.header('referrer-policy', 'no-referrer')
    c.header('x-frame-options', 'DENY')
    c.header(
      'content-security-policy',
      "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
    )
  })

  // mutating requests: a bearer token, compared in constant time
  const requireToken = async function requireToken(c: Context, next: () => Promise<void>) {
    if (!tokenDigest) {
      throw new ApiError(
        401,
        'this agent has no token configured and is read-only; start it with --token-file or HOOKMETER_TOKEN'
      )
    }
    const header = c.req.header('authorization') ?? ''
    // the scheme is case-insensitive (RFC 9110, 11.1)
    const m = /^bearer +(\S.*)$/i.exec(header)
    if (!m || !timingSafeEqual(digest(m[1]!), tokenDigest)) {
      c.header('www-authenticate', 'Bearer realm="hookmeter"')
      throw new ApiError(
        401,
        m ? 'wrong bearer token' : 'missing bearer token (Authorization: Bearer <token>)'
      )
    }
    await next()
  }

  app.get('/healthz', (c) => json(c, { status: 'ok' }))

  app.get('/readyz', (c) =>
    opts.ready() ? json(c, { ready: true }) : c.json({ ready: false }, 503)
  )

  app.get('/v1/node', async (c) => {
    // the background feature probe finishes within a second of start; wait for it once
    await agent.probeFeatures()
    return json(c, agent.info())
  })

  app.get('/v1/programs', (c) => {
    const inv = agent.inventory()
    return json(c, {
      programs: inv.programs,
      maps: inv.maps,
      links: inv.links,
      warnings: inv.warnings,
    })
  })

  app.get('/v1/hooks', async (c) => {
    const q = parseWith(windowQuery, c.req.query(), 'query', 400)
    const ms = q.window ? durationMs(q.window)! : 5000
    if (ms < 1000 || ms > 300_000) {
      const issue = {
        code: 'too_big',
        path: ['window'],
        message: 'expected a window from 1s to 300s',
      }
      if (ms < 1000) issue.code = 'too_small'
      throw new ApiError(400, issuesMessage('query', [issue]), [issue])
    }
    // windows longer than the server's idle timeout (255 s at most) must not be cut off
    ;(c.env as { server?: { timeout(r: Request, s: number): void } } | undefined)?.server?.timeout(
      c.req.raw,
      ms > 200_000 ? 0 : Math.min(255, Math.ceil(ms / 1000) + 30)
    )
    return json(c, await agent.hooks(ms, c.req.raw.signal))
  })

  app.get('/v1/tools', (c) =>
    json(c, toolsReport(agent.inventory(), { lastRun: lastDoneRun(agent) }))
  )

  app.get('/v1/tools/:name', (c) => {
    const { name } = parseWith(toolParam, c.req.param(), 'path', 400)
    return json(c, toolReport(name, agent.inventory(), { lastRun: lastDoneRun(agent) }))
  })

  app.post('/v1/bench/micro', requireToken, async (c) => {
    const body = await readJson(c)
    const options = parseWith(
      microOptionsWithAllowlist(agent.opts.allowed),
      body,
      'benchmark options',
      422
    )
    if (options.condition === 'baseline' && !options.force) {
      const problem = baselineProblem(agent.inventory(0), 'force: true')
      if (problem) {
        const issue = { code: 'tool_loaded', path: ['condition'], message: problem }
        throw new ApiError(422, issuesMessage('benchmark options', [issue]), [issue])
      }
    }
    try {
      const id = agent.startMicro(options)
      return json(c, { id, status: 'running' }, 202)
    } catch (err) {
      if (err instanceof BusyError) {
        throw new ApiError(409, err.message, [
          { code: 'conflict', path: [], message: `run ${err.runId} is running` },
        ])
      }
      throw err
    }
  })

  app.get('/v1/runs', (c) => json(c, { runs: agent.store.listRuns({ limit: 500 }) }))

  app.get('/v1/runs/:id', (c) => {
    const { id } = parseWith(idParam, c.req.param(), 'path', 400)
    const run = agent.store.getRun(Number(id))
    if (!run) throw new ApiError(404, `no run ${id}`)
    const current = agent.currentRun
    const progress = current?.id === run.id ? current.progress : undefined
    return json(c, {
      ...(run.report ?? { run: { id: run.id } }),
      status: run.status,
      error: run.error,
      createdAt: run.createdAt,
      ...(progress ? { progress } : {}),
    })
  })

  app.get('/v1/runs/:id/events', (c) => {
    const { id } = parseWith(idParam, c.req.param(), 'path', 400)
    const run = agent.store.getRun(Number(id))
    if (!run) throw new ApiError(404, `no run ${id}`)
    return streamSSE(c, async (stream) => {
      const queue: RunEvent[] = []
      let wake: (() => void) | null = null
      const unsubscribe = agent.subscribe(run.id, (e) => {
        queue.push(e)
        wake?.()
      })
      if (!unsubscribe) {
        const status = agent.store.getRun(run.id)?.status ?? run.status
        await stream.writeSSE({ event: 'end', data: JSON.stringify({ status }) })
        return
      }
      stream.onAbort(() => {
        unsubscribe()
        wake?.()
      })
      const current = agent.currentRun
      if (current?.id === run.id) {
        await stream.writeSSE({ event: 'progress', data: JSON.stringify(current.progress) })
      }
      for (;;) {
        while (queue.length) {
          const e = queue.shift()!
          if (e.type === 'progress') {
            await stream.writeSSE({
              event: 'progress',
              data: JSON.stringify({ done: e.done, total: e.total }),
            })
          } else {
            await stream.writeSSE({ event: 'end', data: JSON.stringify({ status: e.status }) })
            unsubscribe()
            return
          }
        }
        if (stream.aborted) return
        await new Promise<void>((resolve) => (wake = resolve))
        wake = null
      }
    })
  })

  app.post('/v1/runs/compare', async (c) => {
    const body = parseWith(compareBody, await readJson(c), 'compare request', 422)
    const runs = [body.a, body.b].map((id, i) => {
      const run = agent.store.getRun(id)
      const field = i === 0 ? 'a' : 'b'
      if (!run)
        throw new ApiError(404, `no run ${id}`, [
          { code: 'not_found', path: [field], message: `no run ${id}` },
        ])
      if (run.status !== 'done' || !run.report) {
        throw new ApiError(
          409,
          `run ${id} ${run.status === 'running' ? 'is still running' : run.status}: it has no results to compare`,
          [{ code: 'not_done', path: [field], message: `run ${id} is ${run.status}` }]
        )
      }
      return run
    })
    return json(
      c,
      compareRuns(runs[0]!.report!, runs[0]!.samples, runs[1]!.report!, runs[1]!.samples)
    )
  })

  app.get('/metrics', (c) =>
    c.body(renderMetrics(agent), 200, {
      'content-type': 'text/plain; version=0.0.4; charset=utf-8',
    })
  )

  app.get('/', (c) => c.html(reportPage()))
  app.get('/assets/chart.js', async (c) => {
    c.header('content-type', 'text/javascript; charset=utf-8')
    c.header('cache-control', 'max-age=3600')
    return c.body(await chartJs())
  })

  app.notFound((c) => errorResponse(c, new ApiError(404, `no route ${c.req.method} ${c.req.path}`)))

  app.onError((err, c) => {
    if (err instanceof ApiError) return errorResponse(c, err)
    if (err instanceof StoreError) return errorResponse(c, new ApiError(500, err.message))
    log.error('request failed', { path: c.req.path, error: err.message, stack: err.stack })
    return errorResponse(c, new ApiError(500, `internal error: ${err.message}`))
  })

  return app
}

let chartJsText: string | null = null
async function chartJs(): Promise<string> {
  chartJsText ??= await Bun.file(chartJsPath).text()
  return chartJsText
}
