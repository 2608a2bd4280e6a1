/**
 * Shared helpers for the live-kernel and CLI tests. They talk to the kernel only through the
 * system's own tools (bpftool, mount, /proc), never through hookmeter's code, so that a test can
 * check what the product did against an independent view.
 *
 * Exports (kept stable; other suites import them):
 * - `root`, `bunExe`, `isRoot`, `uname`: where and as whom the tests run
 * - `runCli(args, opts)`: `bun agent/main.ts …` in a child, with its exit code and output
 * - `spawnCli(args, opts)`: the same, handing back the running process to signal it
 * - `bpftoolProgs()`, `hmProgramNames()`: what bpftool lists
 * - `waitNoHmPrograms(ms)`, `orphanHmPrograms()`: hm_ programs left behind (held by no process)
 * - `progIdsHeldBy(pid)`, `heldProgIds()`: program ids held through fds, from /proc/<pid>/fdinfo
 * - `readStatsSysctl()`, `writeStatsSysctl(v)`: kernel.bpf_stats_enabled
 * - `ensureTracefs()`, `releaseTracefs()`: mount tracefs if missing, unmount only if we did
 * - `startExecsnoop()`: Debian's libbpf-tools execsnoop as a real third-party eBPF tool
 * - `execLoop(count)`, `startExecs()`: execs of /usr/bin/true, counted or until stopped
 * - `sleep(ms)`
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

/** The repository checkout the tests belong to. */
export const root = resolve(import.meta.dir, '..')

/** The pinned Bun from npm (node_modules/.bin/bun), else the Bun running the tests. */
export const bunExe = existsSync(join(root, 'node_modules/.bin/bun'))
  ? join(root, 'node_modules/.bin/bun')
  : process.execPath

export const isRoot = process.getuid?.() === 0

/** `uname -r` of the running kernel. */
export const uname = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()

export const STATS_SYSCTL = '/proc/sys/kernel/bpf_stats_enabled'
export const EXECSNOOP = '/usr/sbin/execsnoop'
export const BPFTOOL =
  Bun.which('bpftool') ?? (existsSync('/usr/sbin/bpftool') ? '/usr/sbin/bpftool' : null)

/** What goes in front of the CLI for `asUser: 'nobody'`: uid/gid 65534, no capabilities. */
export const AS_NOBODY = [
  'setpriv',
  '--reuid=65534',
  '--regid=65534',
  '--clear-groups',
  '--inh-caps=-all',
  '--bounding-set=-all',
]

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

export interface CliOptions {
  /** added to (and overriding) the test process's environment */
  env?: Record<string, string | undefined>
  /** killed with SIGKILL after this long (default 60 s); the result then has code 137 */
  timeoutMs?: number
  /** run without root and without any capability */
  asUser?: 'nobody'
}

/** Runs `bun agent/main.ts <args>` from the repository root and collects its exit and output. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, opts).result
}

export interface RunningCli {
  pid: number
  /** sends a signal to the CLI process */
  kill(signal: NodeJS.Signals): void
  /** resolves when it has exited; a signal death gives 128 + the signal number as code */
  result: Promise<CliResult>
}

/** Like `runCli`, but hands back the running process first, for tests that signal it. */
export function spawnCli(args: string[], opts: CliOptions = {}): RunningCli {
  const cmd = [bunExe, 'agent/main.ts', ...args]
  const proc = Bun.spawn(opts.asUser === 'nobody' ? [...AS_NOBODY, ...cmd] : cmd, {
    cwd: root,
    env: { ...process.env, ...opts.env },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 60_000)
  const result = Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]).then(([stdout, stderr, code]) => {
    clearTimeout(timer)
    return { code, stdout, stderr }
  })
  return { pid: proc.pid, kill: (signal) => proc.kill(signal), result }
}

/** True when `bun --version` runs as nobody (the checkout and the binary are readable by all). */
export function bunRunsAsNobody(): boolean {
  const r = Bun.spawnSync([...AS_NOBODY, bunExe, '--version'], { cwd: root })
  return r.exitCode === 0
}

export interface BpftoolProg {
  id: number
  name: string
  type?: string
  /** only present while statistics are on, or once they have been */
  run_time_ns?: number
  run_cnt?: number
  recursion_misses?: number
}

/** Every program loaded on the host, as `bpftool prog show --json` lists it. */
export function bpftoolProgs(): BpftoolProg[] {
  if (!BPFTOOL) throw new Error('bpftool is not installed')
  const r = Bun.spawnSync([BPFTOOL, 'prog', 'show', '--json'])
  if (r.exitCode !== 0) {
    throw new Error(`bpftool prog show --json exited ${r.exitCode}: ${r.stderr.toString()}`)
  }
  const out = r.stdout.toString().trim()
  return out ? (JSON.parse(out) as BpftoolProg[]) : []
}

/** Names of hookmeter's own programs (hm_*) loaded right now. */
export function hmProgramNames(): string[] {
  return bpftoolProgs()
    .filter((p) => p.name?.startsWith('hm_'))
    .map((p) => p.name)
}

/**
 * Ids of every program some live process holds a program or link fd of, from /proc/<pid>/fdinfo
 * (only fds that are `anon_inode:bpf-prog` or `anon_inode:bpf_link` are read).
 */
export function heldProgIds(): Set<number> {
  const held = new Set<number>()
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue
    let fds: string[]
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`)
        if (target !== 'anon_inode:bpf-prog' && target !== 'anon_inode:bpf_link') continue
        const m = /^prog_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))
        if (m) held.add(Number(m[1]))
      } catch {
        // the fd or the process went away while we looked
      }
    }
  }
  return held
}

/** hm_ programs that no live process holds: left pinned or attached by the kernel, or unloading. */
export function orphanHmPrograms(): BpftoolProg[] {
  const hm = bpftoolProgs().filter((p) => p.name?.startsWith('hm_'))
  if (hm.length === 0) return []
  const held = heldProgIds()
  return hm.filter((p) => !held.has(p.id))
}

/**
 * Polls until no hm_ program is left behind, and returns the names of those still left at the
 * timeout ([] when clean). "Left behind" means loaded while no live process holds it: after a
 * CLI run has exited that is all it can leave (a pin, or an attachment the kernel keeps), and
 * hm_ programs that another process running now (another test, a benchmark) holds are not ours
 * to count. The kernel frees an exited process's programs asynchronously, for a second or two,
 * so a program counts only if it stays left behind from the first poll to the last: one that
 * goes away, or that only appears later (someone else exiting meanwhile), does not.
 */
export async function waitNoHmPrograms(timeoutMs = 5000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  let left = new Map(orphanHmPrograms().map((p) => [p.id, p.name]))
  while (left.size > 0 && Date.now() < deadline) {
    await sleep(100)
    const now = new Set(orphanHmPrograms().map((p) => p.id))
    left = new Map([...left].filter(([id]) => now.has(id)))
  }
  return [...left.values()]
}

/** Ids of the programs whose fds (program or link fds) a process holds, from its fdinfo. */
export function progIdsHeldBy(pid: number): number[] {
  const ids = new Set<number>()
  let fds: string[]
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`)
  } catch {
    return []
  }
  for (const fd of fds) {
    let info: string
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8')
    } catch {
      continue
    }
    const m = /^prog_id:\s*(\d+)/m.exec(info)
    if (m) ids.add(Number(m[1]))
  }
  return [...ids].sort((a, b) => a - b)
}

export function readStatsSysctl(): number {
  return Number(readFileSync(STATS_SYSCTL, 'utf8').trim())
}

export function writeStatsSysctl(value: 0 | 1 | number): void {
  writeFileSync(STATS_SYSCTL, String(value))
}

let tracefsMountedByUs = false

/**
 * Mounts tracefs at /sys/kernel/tracing when its events are missing (execsnoop needs them).
 * Returns null when tracefs is ready, else why it is not. Pair with `releaseTracefs()`.
 */
export function ensureTracefs(): string | null {
  if (existsSync('/sys/kernel/tracing/events')) return null
  if (!isRoot) return 'tracefs is not mounted and only root can mount it'
  const r = Bun.spawnSync(['mount', '-t', 'tracefs', 'nodev', '/sys/kernel/tracing'])
  if (r.exitCode !== 0) return `mount -t tracefs failed: ${r.stderr.toString().trim()}`
  tracefsMountedByUs = true
  return existsSync('/sys/kernel/tracing/events') ? null : 'tracefs mounted but has no events'
}

/** Unmounts tracefs only if `ensureTracefs()` mounted it. */
export function releaseTracefs(): void {
  if (!tracefsMountedByUs) return
  tracefsMountedByUs = false
  Bun.spawnSync(['umount', '/sys/kernel/tracing'])
}

/** Null when execsnoop can be run here, else why not. */
export function execsnoopProblem(): string | null {
  if (!isRoot) return 'needs root'
  if (!existsSync(EXECSNOOP)) return `no ${EXECSNOOP} (apt install libbpf-tools)`
  if (!BPFTOOL) return 'no bpftool'
  return null
}

export interface Execsnoop {
  pid: number
  /** the programs execsnoop holds (its sys_enter_execve and sys_exit_execve tracepoints) */
  progIds: number[]
  /** stops execsnoop and waits (up to 5 s) until bpftool no longer lists its programs */
  stop(): Promise<void>
}

/**
 * Starts /usr/sbin/execsnoop with its output to /dev/null and resolves once its programs are
 * loaded and held by it (seen in its fdinfo and in bpftool as tracepoint__sys* programs).
 */
export async function startExecsnoop(timeoutMs = 10_000): Promise<Execsnoop> {
  const proc = Bun.spawn([EXECSNOOP], { stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' })
  const stderr = new Response(proc.stderr).text()
  const deadline = Date.now() + timeoutMs
  let progIds: number[] = []
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`execsnoop exited (${proc.exitCode ?? proc.signalCode}): ${await stderr}`)
    }
    const held = progIdsHeldBy(proc.pid)
    const named = new Set(
      bpftoolProgs()
        .filter((p) => p.name?.startsWith('tracepoint__sys'))
        .map((p) => p.id)
    )
    progIds = held.filter((id) => named.has(id))
    if (progIds.length >= 2) break
    if (Date.now() >= deadline) {
      proc.kill('SIGKILL')
      throw new Error(`execsnoop held no tracepoint programs after ${timeoutMs} ms`)
    }
    await sleep(50)
  }

  let stopped = false
  const ids = progIds
  return {
    pid: proc.pid,
    progIds: ids,
    async stop() {
      if (stopped) return
      stopped = true
      proc.kill('SIGINT')
      const exited = await Promise.race([
        proc.exited.then(() => true),
        sleep(3000).then(() => false),
      ])
      if (!exited) {
        proc.kill('SIGKILL')
        await proc.exited
      }
      const until = Date.now() + 5000
      while (Date.now() < until) {
        const loaded = new Set(bpftoolProgs().map((p) => p.id))
        if (!ids.some((id) => loaded.has(id))) return
        await sleep(100)
      }
      throw new Error(`execsnoop's programs ${ids.join(', ')} still loaded 5 s after it exited`)
    },
  }
}

/** Execs /usr/bin/true `count` times from a child shell loop, and resolves when all are done. */
export async function execLoop(count: number): Promise<void> {
  const proc = Bun.spawn(
    [
      'bash',
      '-c',
      'for ((i = 0; i < $1; i++)); do /usr/bin/true; done',
      'exec-loop',
      String(count),
    ],
    { stdin: 'ignore', stdout: 'ignore', stderr: 'inherit' }
  )
  const code = await proc.exited
  if (code !== 0) throw new Error(`exec loop exited ${code}`)
}

export interface RunningExecs {
  /** stops the loop after the exec in progress and resolves when the shell has exited */
  stop(): Promise<void>
}

/** Execs /usr/bin/true back to back, from a child shell loop, until stopped. */
export function startExecs(): RunningExecs {
  const proc = Bun.spawn(['bash', '-c', 'trap "exit 0" TERM; while :; do /usr/bin/true; done'], {
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'inherit',
  })
  return {
    async stop() {
      proc.kill('SIGTERM')
      await proc.exited
    },
  }
}
