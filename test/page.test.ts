/**
 * The report page in a real browser: `hookmeter serve` on a loopback port with runs stored through
 * the API, opened in Debian's headless Chromium driven by playwright-core. The page may reach
 * nothing but the agent: every request to another host is aborted and fails the test.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { chromium, type BrowserContext, type Page } from 'playwright-core'

import {
  bunExe,
  ensureTracefs,
  execsnoopProblem,
  isRoot,
  releaseTracefs,
  root,
  sleep,
  startExecsnoop,
  waitNoHmPrograms,
  type Execsnoop,
} from './helpers.ts'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = '/tmp/hookmeter-report.png'
const SCREENSHOT_EMPTY = '/tmp/hookmeter-report-empty.png'
const TOKEN = 'page-test-token-0123456789'
const ITERATIONS = 500

/** The flags the browser starts with; playwright adds a fresh --user-data-dir of ours. */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

const problem = !isRoot
  ? 'needs root'
  : !existsSync(CHROMIUM)
    ? `needs ${CHROMIUM} (apt install chromium)`
    : null

const tmp = mkdtempSync(join(tmpdir(), 'hm-page-'))

interface Server {
  url: string
  pid: number
  /** what the agent logged on stderr so far */
  log(): string
  /** SIGTERM, and the exit code once it has exited */
  stop(): Promise<number>
}

/** Starts `hookmeter serve --port 0` and resolves with its URL once it has logged "agent ready". */
async function startServer(dataDir: string, token: string | null): Promise<Server> {
  const proc = Bun.spawn([bunExe, 'agent/main.ts', 'serve', '--port', '0', '--data-dir', dataDir], {
    cwd: root,
    env: { ...process.env, HOOKMETER_TOKEN: token ?? '', HOOKMETER_LOG_FORMAT: 'json' },
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
  })

  let text = ''
  const decoder = new TextDecoder()
  const pump = (async () => {
    for await (const chunk of proc.stderr) text += decoder.decode(chunk, { stream: true })
  })()

  const deadline = Date.now() + 30_000
  let url: string | null = null
  while (!url) {
    const ready = text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; url?: string })
      .find((l) => l.msg === 'agent ready')
    url = ready?.url ?? null
    if (url) break
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error(`hookmeter serve did not get ready (exit ${proc.exitCode}): ${text}`)
    }
    await sleep(50)
  }

  let stopped: Promise<number> | null = null
  return {
    url,
    pid: proc.pid,
    log: () => text,
    stop() {
      stopped ??= (async () => {
        proc.kill('SIGTERM')
        const code = await Promise.race([proc.exited, sleep(10_000).then(() => null)])
        if (code === null) {
          proc.kill('SIGKILL')
          await proc.exited
          throw new Error(`hookmeter serve ignored SIGTERM for 10 s: ${text}`)
        }
        await pump
        return code
      })()
      return stopped
    },
  }
}

interface RunSummary {
  id: number
  status: string
  iterations: number
  condition: string | null
  label: string | null
  wallNs: number
}

interface Histogram {
  le: number[]
  buckets: number[]
  count: number
}

interface RunDetail {
  status: string
  error: string | null
  histograms: {
    latency: Histogram
    phases: Record<'forkToExecve' | 'execveToExec' | 'execToExit', Histogram>
  }
  hooks: Array<{ fullName: string; own: boolean; owners: Array<{ comm: string }> }>
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

/** Starts a micro run through the API and waits until it has ended; it must end done. */
async function microRun(server: Server, body: Record<string, unknown>): Promise<number> {
  const res = await fetch(`${server.url}/v1/bench/micro`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ iterations: ITERATIONS, warmup: 10, ...body }),
  })
  if (res.status !== 202) throw new Error(`POST /v1/bench/micro: ${res.status} ${await res.text()}`)
  const { id } = (await res.json()) as { id: number }

  const deadline = Date.now() + 90_000
  for (;;) {
    const run = await getJson<RunDetail>(`${server.url}/v1/runs/${id}`)
    if (run.status === 'done') return id
    if (run.status !== 'running') throw new Error(`run ${id} ended ${run.status}: ${run.error}`)
    if (Date.now() > deadline) throw new Error(`run ${id} still running after 90 s`)
    await sleep(200)
  }
}

function isLoopbackUrl(url: string): boolean {
  if (url.startsWith('data:') || url === 'about:blank') return true
  const host = new URL(url).hostname
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]'
}

interface PageProblems {
  console: string[]
  blocked: string[]
}

/** A new tab that records console errors and warnings, page errors and off-loopback requests. */
async function openPage(context: BrowserContext, url: string): Promise<[Page, PageProblems]> {
  const problems: PageProblems = { console: [], blocked: [] }
  const page = await context.newPage()
  await page.route('**/*', (route) => {
    if (isLoopbackUrl(route.request().url())) return route.continue()
    problems.blocked.push(route.request().url())
    return route.abort('blockedbyclient')
  })
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') {
      problems.console.push(`${m.type()}: ${m.text()}`)
    }
  })
  page.on('pageerror', (err) => problems.console.push(`pageerror: ${err.message}`))
  await page.goto(url)
  await page.waitForFunction(() => document.body.dataset.ready === 'true', null, {
    timeout: 30_000,
  })
  return [page, problems]
}

interface ChartSeen {
  labels: string[]
  datasets: Array<{ label: string; data: Array<number | null> }>
  /** the drawn size of the canvas, 0 × 0 while its box is hidden */
  width: number
  height: number
}

interface PageSeen {
  charts: Record<string, ChartSeen | null>
  hookRows: number
  picked: string
  notes: Record<string, string | null>
}

/** What the page shows: each chart's data (from Chart.js itself), the table, picker and notes. */
function readPage(page: Page): Promise<PageSeen> {
  return page.evaluate(() => {
    interface ChartLike {
      data: {
        labels: unknown[]
        datasets: Array<{ label: string; data: Array<number | null> }>
      }
    }
    const Chart = (window as unknown as { Chart: { getChart(c: HTMLCanvasElement): ChartLike } })
      .Chart
    const charts: Record<string, ChartSeen | null> = {}
    for (const id of ['fig2', 'latency', 'phases', 'cost']) {
      const canvas = document.getElementById(id) as HTMLCanvasElement | null
      const chart = canvas ? Chart.getChart(canvas) : undefined
      charts[id] = chart
        ? {
            labels: chart.data.labels.map(String),
            datasets: chart.data.datasets.map((d) => ({ label: d.label, data: [...d.data] })),
            width: canvas!.clientWidth,
            height: canvas!.clientHeight,
          }
        : null
    }
    const notes: Record<string, string | null> = {}
    for (const id of ['fig2-note', 'run-note', 'cost-note', 'hooks-note']) {
      const p = document.getElementById(id)!
      notes[id] = p.hidden ? null : p.textContent
    }
    return {
      charts,
      hookRows: document.querySelectorAll('#hooks tbody tr').length,
      picked: (document.getElementById('run-picker') as HTMLSelectElement).value,
      notes,
    }
  })
}

const sum = (xs: Array<number | null>) => xs.reduce<number>((a, x) => a + (x ?? 0), 0)

describe.skipIf(problem !== null)(
  problem ? `the report page (skipped: ${problem})` : 'the report page',
  () => {
    let server: Server | null = null
    let emptyServer: Server | null = null
    let execsnoop: Execsnoop | null = null
    let context: BrowserContext | null = null
    const ids = { baseline: 0, noPolicy: 0, policy: 0 }

    beforeAll(async () => {
      // execsnoop, a real third-party tool, runs for the tool's two runs when it can
      const snoopProblem = execsnoopProblem() ?? ensureTracefs()
      if (snoopProblem) console.warn(`page test: runs without execsnoop: ${snoopProblem}`)

      server = await startServer(join(tmp, 'data'), TOKEN)
      emptyServer = await startServer(join(tmp, 'empty'), TOKEN)

      ids.baseline = await microRun(server, { condition: 'baseline' })
      if (!snoopProblem) execsnoop = await startExecsnoop()
      ids.noPolicy = await microRun(server, { condition: 'no-policy', label: 'execsnoop' })
      ids.policy = await microRun(server, { condition: 'policy', label: 'execsnoop' })

      const profile = mkdtempSync(join(tmp, 'chromium-'))
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: CHROMIUM_FLAGS,
        viewport: { width: 1280, height: 900 },
      })
    }, 240_000)

    afterAll(async () => {
      await context?.close()
      await Promise.allSettled([server?.stop(), emptyServer?.stop()])
      await execsnoop?.stop()
      releaseTracefs()
      rmSync(tmp, { recursive: true, force: true })
    }, 60_000)

    test('the plots render the stored runs and the console stays clean', async () => {
      const runs = (await getJson<{ runs: RunSummary[] }>(`${server!.url}/v1/runs`)).runs
      const byId = new Map(runs.map((r) => [r.id, r]))
      const perExec = (id: number) => byId.get(id)!.wallNs / byId.get(id)!.iterations
      const overhead = (id: number) => (perExec(id) / perExec(ids.baseline)) * 100 - 100
      const policy = await getJson<RunDetail>(`${server!.url}/v1/runs/${ids.policy}`)

      const [page, problems] = await openPage(context!, server!.url)
      const seen = await readPage(page)
      await page.screenshot({ path: SCREENSHOT, fullPage: true })

      // Figure 2: the execsnoop group, its no-policy and policy bars over the baseline
      const fig2 = seen.charts.fig2!
      expect(fig2.labels).toEqual(['execsnoop'])
      expect(fig2.datasets.map((d) => d.label)).toEqual(['no policy', 'policy'])
      expect(fig2.datasets[0]!.data[0]).toBeCloseTo(overhead(ids.noPolicy), 6)
      expect(fig2.datasets[1]!.data[0]).toBeCloseTo(overhead(ids.policy), 6)
      expect(seen.notes['fig2-note']).toBeNull()

      // the newest finished run is picked: its latency and phase histograms, every exec counted
      expect(seen.picked).toBe(String(ids.policy))
      const latency = seen.charts.latency!
      expect(latency.datasets[0]!.data.length).toBeGreaterThan(0)
      expect(sum(latency.datasets[0]!.data)).toBe(policy.histograms.latency.count)
      expect(latency.labels.every((l) => /^[≤>] [\d.,]+ (ns|µs|ms|s)$/.test(l))).toBe(true)
      const phases = seen.charts.phases!
      expect(phases.datasets.map((d) => d.label)).toEqual([
        'fork → execve',
        'execve → exec',
        'exec → exit',
      ])
      const phaseCounts = [
        policy.histograms.phases.forkToExecve.count,
        policy.histograms.phases.execveToExec.count,
        policy.histograms.phases.execToExit.count,
      ]
      expect(phases.datasets.map((d) => sum(d.data))).toEqual(phaseCounts)
      expect(phaseCounts[0]).toBeGreaterThan(0)

      // per-hook cost: one bar per program, hookmeter's own apart from the others
      const cost = seen.charts.cost!
      expect(cost.labels.length).toBe(Math.min(25, policy.hooks.length))
      expect(cost.datasets.map((d) => d.label)).toEqual(['other programs', "hookmeter's own"])
      const [others, own] = cost.datasets as [ChartSeen['datasets'][0], ChartSeen['datasets'][0]]
      cost.labels.forEach((label, i) => {
        expect(others.data[i] === null).toBe(own.data[i] !== null)
        // own means this agent's probe, by id; another hookmeter's hm_ programs are others
        if (own.data[i] !== null) expect(label.startsWith('hm_')).toBe(true)
      })
      expect(own.data.some((v) => v !== null)).toBe(true)
      if (execsnoop) {
        expect(cost.labels.some((l) => l.includes(`execsnoop[${execsnoop!.pid}]`))).toBe(true)
      }

      // every chart is drawn at a visible size, and the live table has rows
      for (const chart of Object.values(seen.charts)) {
        expect(chart!.width).toBeGreaterThan(100)
        expect(chart!.height).toBeGreaterThan(100)
      }
      expect(seen.hookRows).toBeGreaterThan(0)

      expect(problems).toEqual({ console: [], blocked: [] })
      await page.close()
    }, 60_000)

    test('picking another run redraws its distributions', async () => {
      const baseline = await getJson<RunDetail>(`${server!.url}/v1/runs/${ids.baseline}`)
      const [page, problems] = await openPage(context!, server!.url)

      await page.selectOption('#run-picker', String(ids.baseline))
      await page.waitForFunction((id) => document.body.dataset.run === id, String(ids.baseline))
      const seen = await readPage(page)

      expect(sum(seen.charts.latency!.datasets[0]!.data)).toBe(baseline.histograms.latency.count)
      expect(seen.charts.cost!.labels.length).toBe(Math.min(25, baseline.hooks.length))
      expect(problems).toEqual({ console: [], blocked: [] })
      await page.close()
    }, 60_000)

    test('the live hooks table refreshes without overlapping requests', async () => {
      const [page, problems] = await openPage(context!, server!.url)
      let inFlight = 0
      let most = 0
      let requests = 0
      page.on('request', (r) => {
        if (!r.url().includes('/v1/hooks')) return
        requests++
        most = Math.max(most, ++inFlight)
      })
      page.on('requestfinished', (r) => r.url().includes('/v1/hooks') && inFlight--)
      page.on('requestfailed', (r) => r.url().includes('/v1/hooks') && inFlight--)

      await page.waitForFunction(
        () => !/measuring/.test(document.getElementById('hooks-info')!.textContent!)
      )
      const first = await page.textContent('#hooks-info')
      await page.waitForFunction(
        (before) => document.getElementById('hooks-info')!.textContent !== before,
        first,
        { timeout: 20_000 }
      )

      expect(requests).toBeGreaterThan(0)
      expect(most).toBe(1)
      expect(problems).toEqual({ console: [], blocked: [] })
      await page.close()
    }, 60_000)

    test('with no runs the page shows its empty states and no console errors', async () => {
      const [page, problems] = await openPage(context!, emptyServer!.url)
      const seen = await readPage(page)
      await page.screenshot({ path: SCREENSHOT_EMPTY, fullPage: true })

      for (const chart of Object.values(seen.charts)) {
        expect(chart).not.toBeNull()
        expect(chart!.labels).toEqual([])
        expect(chart!.height).toBe(0)
      }
      expect(seen.notes['fig2-note']).toContain('No finished runs yet')
      expect(seen.notes['run-note']).toContain('No finished run')
      expect(seen.picked).toBe('')
      expect(seen.hookRows).toBeGreaterThan(0)
      expect(problems).toEqual({ console: [], blocked: [] })
      await page.close()
    }, 60_000)

    test('without a baseline run figure 2 says so and draws no bars', async () => {
      const id = await microRun(emptyServer!, { condition: 'no-policy', label: 'execsnoop' })
      const [page, problems] = await openPage(context!, emptyServer!.url)
      const seen = await readPage(page)

      expect(seen.notes['fig2-note']).toContain('No baseline run')
      expect(seen.charts.fig2!.labels).toEqual([])
      expect(seen.charts.fig2!.height).toBe(0)
      expect(seen.picked).toBe(String(id))
      expect(seen.charts.latency!.datasets[0]!.data.length).toBeGreaterThan(0)
      expect(problems).toEqual({ console: [], blocked: [] })
      await page.close()
    }, 120_000)

    test('stopping the agents leaves no hm_ program behind', async () => {
      expect(await server!.stop()).toBe(0)
      expect(await emptyServer!.stop()).toBe(0)
      await execsnoop?.stop()
      expect(await waitNoHmPrograms(8000)).toEqual([])
    }, 60_000)
  }
)
