/**
 * The agent at rest: `hookmeter serve` (the single binary) started, ready, and then sent no
 * request at all for a minute, once with statistics held for its whole life (`--stats always`,
 * the default) and once with `--stats runs`. Every second it reads the agent's VmRSS from
 * /proc/<pid>/status and its utime + stime (all threads, Workers included) from /proc/<pid>/stat.
 *
 *   node_modules/.bin/bun bench/agent-idle.ts [--seconds N] [--json]
 *
 * CPU is given as a share of one CPU over the sampled span; the counters tick at CLK_TCK (100 Hz
 * here), so over 60 s the resolution is about 0.017 %.
 */
import { readFileSync } from 'node:fs'

import { environment, progress } from './lib.ts'
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
  rssBytes,
  runMain,
} from './start-ready.ts'

/** the goal is in MB; RSS is reported in MB of 10^6 bytes to match it */
const RSS_GOAL_MB = 100
const CPU_GOAL_PCT = 1

interface Sample {
  /** seconds since the first sample */
  t: number
  rssBytes: number
  cpuTicks: number
  threads: number
}

interface ModeResult {
  stats: 'always' | 'runs'
  /** the statistics mode the agent reported ("fd", "off", ...) */
  statsMode: string
  startMs: number
  seconds: number
  rssMb: { atReady: number; min: number; max: number; final: number }
  /** share of one CPU over the whole span, and the busiest one-second step */
  cpuPct: { overall: number; maxSecond: number }
  samples: Sample[]
}

function threads(pid: number): number {
  const m = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : 0
}

async function measure(
  binary: string,
  stats: 'always' | 'runs',
  seconds: number
): Promise<ModeResult> {
  const agent = new AgentProcess({
    binary,
    dataDir: makeTempDir('hm-bench-idle-'),
    port: freePort(),
    args: ['--stats', stats],
  })
  // readiness from the log line, so that not even a /readyz poll reaches the agent
  const ready = await agent.ready()
  const samples: Sample[] = []
  const t0 = performance.now()
  for (let i = 0; i <= seconds; i++) {
    // sleep to the next whole second of the schedule, so that late wake-ups do not add up
    const wait = t0 + i * 1000 - performance.now()
    if (wait > 0) await Bun.sleep(wait)
    if (agent.exitCode !== null)
      throw new Error(`agent exited (${agent.exitCode}):\n${agent.tail()}`)
    const pid = agent.pid
    samples.push({
      t: (performance.now() - t0) / 1000,
      rssBytes: rssBytes(pid),
      cpuTicks: cpuTicks(pid),
      threads: threads(pid),
    })
    if (i % 10 === 0) {
      const s = samples.at(-1)!
      progress(
        `--stats ${stats}: ${i} s, RSS ${(s.rssBytes / 1e6).toFixed(1)} MB, ${s.threads} threads`
      )
    }
  }
  const code = await agent.stop()
  if (code !== 0) throw new Error(`agent exited ${code} after SIGTERM:\n${agent.tail()}`)

  const mb = (b: number) => b / 1e6
  const rss = samples.map((s) => mb(s.rssBytes))
  const first = samples[0]!
  const last = samples.at(-1)!
  const span = last.t - first.t
  let maxSecond = 0
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i]!.t - samples[i - 1]!.t
    const pct = ((samples[i]!.cpuTicks - samples[i - 1]!.cpuTicks) / CLK_TCK / dt) * 100
    maxSecond = Math.max(maxSecond, pct)
  }
  return {
    stats,
    statsMode: String(ready.line.stats),
    startMs: Number(ready.line.startMs),
    seconds: span,
    rssMb: {
      atReady: rss[0]!,
      min: Math.min(...rss),
      max: Math.max(...rss),
      final: rss.at(-1)!,
    },
    cpuPct: { overall: ((last.cpuTicks - first.cpuTicks) / CLK_TCK / span) * 100, maxSecond },
    samples,
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2), 'agent-idle', {
    seconds: [60, 5, 'seconds sampled per mode, one sample a second'],
  })
  const env = environment()
  const before = kernelState()
  const binary = buildBinary(opts.binary)
  const modes: ModeResult[] = []
  for (const stats of ['always', 'runs'] as const)
    modes.push(await measure(binary, stats, opts.seconds))
  const after = kernelState()

  const goals = modes.map((m) => ({
    stats: m.stats,
    rss: m.rssMb.max < RSS_GOAL_MB,
    cpu: m.cpuPct.overall < CPU_GOAL_PCT,
  }))
  const result = {
    benchmark: 'agent-idle',
    environment: env,
    kernelBefore: before,
    kernelAfter: after,
    clockTicksPerSecond: CLK_TCK,
    modes,
    goals: { rssMbBelow: RSS_GOAL_MB, cpuPctBelow: CPU_GOAL_PCT, met: goals },
  }
  const f = (v: number) => v.toFixed(1).padStart(6)
  const lines = [
    header(env, `agent idle: no requests for ${opts.seconds} s after ready, sampled every second`),
    '  --stats  mode    RSS MB:  ready    min    max  final   CPU % of one CPU: overall  max 1-s step',
    ...modes.map(
      (m) =>
        `  ${m.stats.padEnd(7)} ${m.statsMode.padEnd(6)}        ${f(m.rssMb.atReady)} ${f(m.rssMb.min)} ${f(m.rssMb.max)} ${f(m.rssMb.final)}` +
        `                    ${m.cpuPct.overall.toFixed(3).padStart(7)}  ${m.cpuPct.maxSecond.toFixed(1).padStart(12)}`
    ),
    ...goals.map(
      (g) =>
        `goal --stats ${g.stats}: RSS under ${RSS_GOAL_MB} MB ${g.rss ? 'met' : 'not met'}, CPU under ${CPU_GOAL_PCT} % ${g.cpu ? 'met' : 'not met'}`
    ),
    `kernel: bpf_stats_enabled ${before.statsSysctl} → ${after.statsSysctl}; hm_ programs on the host ${before.hmPrograms} → ${after.hmPrograms} (ours checked gone by id)`,
  ]
  printResult(opts.json, result, lines.join('\n'))
}

await runMain(main)
