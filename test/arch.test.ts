/**
 * Attribution and the architecture report.
 *
 * The live part loads one set of our own BPF programs per tool (test/fixtures/tools), each from
 * a copy of one loader named like the tool, so that exe and comm are the tool's; it runs
 * execsnoop and a bpftrace script beside them as third-party tools; and it pins a program on a
 * bpffs of its own and lets its loader exit. What hookmeter reports is checked against what the
 * test set up (the loader's --tail and --perf options) and what bpftool and /proc show.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { MicroReport } from '../agent/bench/report.ts'
import { UsageError } from '../agent/cli.ts'
import { cmdArch } from '../agent/commands/arch.ts'
import type { Inventory, MapEntry, OwnerRef, ProgramEntry } from '../agent/inventory.ts'
import { takeInventory } from '../agent/inventory.ts'
import { mapIds, programIds } from '../libbpf-bindings/enumerate.ts'
import {
  perfMmapSizes,
  toolReport,
  toolsReport,
  type ToolArch,
  type ToolsReport,
} from '../agent/tools/arch.ts'
import { attribute } from '../agent/tools/attribute.ts'
import type { KnownTool } from '../agent/tools/types.ts'
import {
  bpftoolProgs,
  bunExe,
  ensureTracefs,
  execsnoopProblem,
  heldProgIds,
  isRoot,
  progIdsHeldBy,
  releaseTracefs,
  root,
  runCli,
  sleep,
  startExecsnoop,
  type Execsnoop,
} from './helpers.ts'

// ---------------------------------------------------------------------------------------------
// without the kernel: synthetic inventories

const HOST_CGROUP = '/system.slice/tool.service'
const POD_UID = '3f1c2b9a-7d4e-4b8f-9a61-0c2d5e6f7a8b'
const CONTAINER_ID = 'ab'.repeat(32)

function owner(pid: number, comm: string, exe: string, inPod = false): OwnerRef {
  if (!inPod) return { pid, comm, exe, cgroup: HOST_CGROUP }
  return {
    pid,
    comm,
    exe,
    cgroup: `/kubepods.slice/kubepods-pod${POD_UID.replaceAll('-', '_')}.slice/cri-containerd-${CONTAINER_ID}.scope`,
    containerId: CONTAINER_ID,
    podUid: POD_UID,
  }
}

function prog(progId: number, name: string, more: Partial<ProgramEntry> = {}): ProgramEntry {
  return {
    progId,
    name,
    fullName: name,
    type: 'tracepoint',
    tag: '0000000000000000',
    loadedAt: '2026-01-01T00:00:00.000Z',
    loadTimeNs: 1n,
    uid: 0,
    mapIds: [],
    hook: 'unknown',
    hooks: [],
    linkIds: [],
    owners: [],
    pins: [],
    runTimeNs: 0n,
    runCnt: 0n,
    recursionMisses: 0n,
    verifiedInsns: 1,
    jitedSize: 1,
    tool: 'other',
    ...more,
  }
}

function map(id: number, name: string, typeName: string, more: Partial<MapEntry> = {}): MapEntry {
  return {
    id,
    type: 0,
    typeName,
    name,
    keySize: 4,
    valueSize: 4,
    maxEntries: 1,
    flags: 0,
    btfId: 0,
    owners: [],
    pins: [],
    tool: 'other',
    ...more,
  }
}

function inventory(programs: ProgramEntry[], maps: MapEntry[] = []): Inventory {
  return { takenAtNs: 1n, programs, maps, links: [], warnings: [] }
}

describe('attribution', () => {
  test('a live owner decides the tool even when the program is named like another tool', () => {
    const inv = inventory([
      prog(1, 'event_execve', { owners: [owner(10, 'falco', '/usr/bin/falco')] }),
      prog(2, 'event_execve', { owners: [owner(11, 'execsnoop', '/usr/sbin/execsnoop')] }),
    ])
    const a = attribute(inv).programs

    expect(a.get(1)).toMatchObject({ tool: 'falco', by: 'owner', ownerPid: 10 })
    expect(a.get(2)).toMatchObject({ tool: 'other', toolDetail: 'execsnoop', by: 'owner' })
  })

  test('a known tool among several holders wins over a passing holder such as bpftool', () => {
    const inv = inventory([
      prog(1, 'x', {
        owners: [owner(5, 'bpftool', '/usr/sbin/bpftool'), owner(9, 'tracee', '/tracee/tracee')],
      }),
    ])

    expect(attribute(inv).programs.get(1)).toMatchObject({ tool: 'tracee', ownerPid: 9 })
  })

  test('the container id and pod uid come from the deciding owner cgroup path', () => {
    const inv = inventory([
      prog(1, 'x', { owners: [owner(7, 'kubearmor', '/KubeArmor/kubearmor', true)] }),
    ])

    expect(attribute(inv).programs.get(1)).toEqual({
      tool: 'kubearmor',
      by: 'owner',
      ownerPid: 7,
      containerId: CONTAINER_ID,
      podUid: POD_UID,
    })
  })

  test('a program without owner is attributed by its own name or by the names of its maps', () => {
    const inv = inventory(
      [prog(1, 'event_execve'), prog(2, 'anything', { mapIds: [20] }), prog(3, 'lonely')],
      [map(20, 'syscall_exit_ta', 'prog_array')]
    )
    const a = attribute(inv).programs

    expect(a.get(1)).toEqual({ tool: 'tetragon', by: 'program-name' })
    expect(a.get(2)).toEqual({ tool: 'falco', by: 'map-name' })
    expect(a.get(3)).toEqual({ tool: 'other', toolDetail: 'lonely', by: 'none' })
  })

  test('a program without owner and with an unknown name is attributed by its pin path', () => {
    const inv = inventory([
      prog(1, 'gen_prog', { pins: ['/sys/fs/bpf/tetragon/__base__/gen/prog'] }),
    ])

    expect(attribute(inv).programs.get(1)).toEqual({ tool: 'tetragon', by: 'pin-path' })
  })

  test('a weak name alone such as tracepoint__sch does not make a program tracee', () => {
    const inv = inventory([prog(1, 'tracepoint__sch')])

    expect(attribute(inv).programs.get(1)?.tool).toBe('other')
  })

  test('a map without owner goes with the programs that use it, else with its own name', () => {
    const inv = inventory(
      [
        prog(1, 'p1', { mapIds: [30], owners: [owner(3, 'tetragon', '/usr/bin/tetragon')] }),
        prog(2, 'p2', { mapIds: [30], owners: [owner(4, 'cat', '/usr/bin/cat')] }),
      ],
      [map(30, 'shared', 'hash'), map(31, 'sys_events', 'perf_event_array'), map(32, 'q', 'hash')]
    )
    const a = attribute(inv).maps

    expect(a.get(30)).toMatchObject({ tool: 'tetragon', by: 'owner', ownerPid: 3 })
    expect(a.get(31)).toEqual({ tool: 'kubearmor', by: 'map-name' })
    expect(a.get(32)).toEqual({ tool: 'other', toolDetail: 'q', by: 'none' })
  })

  test('a map with a live owner is that owner tool, whichever programs use it', () => {
    const inv = inventory(
      [prog(1, 'event_execve', { mapIds: [40] })],
      [map(40, 'm', 'hash', { owners: [owner(8, 'falco', '/usr/bin/falco')] })]
    )

    expect(attribute(inv).maps.get(40)).toMatchObject({ tool: 'falco', by: 'owner' })
  })
})

describe('architecture report without the kernel', () => {
  test('perf buffer mmaps are read as one data area per cpu: the mapping minus its page', () => {
    const text = [
      '7f2c8fb64000-7f2c8fb67000 rw-s 00000000 00:10 1038                       anon_inode:[perf_event]',
      '7f2c8fb67000-7f2c8fb6a000 rw-s 00000000 00:10 1038                       anon_inode:[perf_event]',
      '7f2c8fb6a000-7f2c8fb73000 rw-s 00000000 00:10 1038                       anon_inode:[perf_event]',
      // a counter page without a data area is not a buffer
      '7f2c8fb73000-7f2c8fb74000 rw-s 00000000 00:10 1038                       anon_inode:[perf_event]',
      '7f2c8fb80000-7f2c8fb90000 rw-p 00000000 00:00 0                          [heap]',
      '',
    ].join('\n')

    expect(perfMmapSizes(text, 4096)).toEqual({ mmaps: 3, perCpuBytes: [8192, 32768] })
  })

  test('the ring buffer size is its max_entries and delivery follows the tool maps', () => {
    const inv = inventory(
      [prog(1, 'event_execve', { mapIds: [50] })],
      [map(50, 'tg_rb_events', 'ringbuf', { keySize: 0, valueSize: 0, maxEntries: 1 << 20 })]
    )
    const t = toolReport('tetragon', inv)!

    expect(t.present).toBe(true)
    expect(t.mapsByType.ringbuf?.map((m) => [m.name, m.sizeBytes])).toEqual([
      ['tg_rb_events', 1 << 20],
    ])
    expect(t.delivery.mechanisms).toEqual(['ringbuf'])
  })

  test('the per-exec cost sums the last run programs matched by id and by name', () => {
    const inv = inventory([
      prog(1, 'event_execve', { owners: [owner(3, 'tetragon', '/usr/bin/tetragon')] }),
      prog(2, 'tg_kp_bprm_comm', { owners: [owner(3, 'tetragon', '/usr/bin/tetragon')] }),
      prog(3, 'event_exit_acct', { owners: [owner(3, 'tetragon', '/usr/bin/tetragon')] }),
    ])
    const hooks = [
      { progId: 1, name: 'event_execve', nsPerExec: 700 },
      { progId: 2, name: 'tg_kp_bprm_comm', nsPerExec: 50 },
      // the id was reused since the run: another program then
      { progId: 3, name: 'hm_sched_proces', nsPerExec: 9000 },
    ]
    const lastRun = {
      run: { id: 12, startedAt: '2026-01-01T00:00:00.000Z', condition: 'no-policy', label: null },
      hooks,
    } as unknown as MicroReport
    const report = toolsReport(inv, { lastRun, procRoot: '/nonexistent' })
    const t = report.tools.find((x) => x.tool === 'tetragon')!

    expect(t.cost).toEqual({
      runId: 12,
      startedAt: '2026-01-01T00:00:00.000Z',
      perExecNs: 750,
      programs: [
        { progId: 1, name: 'event_execve', nsPerExec: 700 },
        { progId: 2, name: 'tg_kp_bprm_comm', nsPerExec: 50 },
      ],
    })
    expect(t.programs.find((p) => p.progId === 1)?.nsPerExec).toBe(700)
    expect(report.lastRun).toEqual({
      id: 12,
      startedAt: '2026-01-01T00:00:00.000Z',
      condition: 'no-policy',
      label: null,
    })
  })

  test('a prog array that no process or pin holds is not opened, and says so', () => {
    const falco = owner(4, 'falco', '/usr/bin/falco')
    // ids far above any the kernel has given out: opening them would find nothing either way
    const inv = inventory(
      [],
      [
        map(4_000_000_001, 'syscall_exit_ta', 'prog_array', { maxEntries: 4 }),
        map(4_000_000_002, 'extra_sched_pro', 'prog_array', { maxEntries: 4, owners: [falco] }),
      ]
    )
    const arrays = toolReport('falco', inv)!.mapsByType.prog_array!

    expect(arrays.map((m) => [m.name, m.slots, m.unread])).toEqual([
      ['syscall_exit_ta', undefined, 'held by no process or pin, so emptied by the kernel'],
      ['extra_sched_pro', [], undefined],
    ])
  })

  test('every tool is in the report, absent ones as not present, and unknown names are null', () => {
    const report = toolsReport(inventory([]))

    expect(report.tools.map((t) => [t.tool, t.present])).toEqual([
      ['kubearmor', false],
      ['tetragon', false],
      ['falco', false],
      ['tracee', false],
      ['other', false],
    ])
    expect(toolReport('cilium', inventory([]))).toBeNull()
  })

  test('arch refuses a tool name it does not know, naming it and the allowed ones', async () => {
    const err = await cmdArch(['cilium']).catch((e: unknown) => e)

    expect(err).toBeInstanceOf(UsageError)
    expect((err as Error).message).toBe(
      "TOOL: expected one of kubearmor, tetragon, falco, tracee, other, got 'cilium'"
    )
    await expect(cmdArch(['falco', 'tracee'])).rejects.toThrow("unexpected argument 'tracee'")
  })
})

// ---------------------------------------------------------------------------------------------
// on the live kernel

const CLANG = Bun.which('clang-19')
const GCC = Bun.which('gcc')
const BPFTRACE = Bun.which('bpftrace')

function liveProblem(): string | null {
  if (!isRoot) return 'needs root'
  if (!CLANG) return 'needs clang-19'
  if (!GCC) return 'needs gcc'
  if (!existsSync('/usr/include/bpf/libbpf.h')) return 'needs libbpf-dev'
  if (!BPFTRACE) return 'needs bpftrace'
  return execsnoopProblem()
}

const problem = liveProblem()

const PAGE = Number(Bun.spawnSync(['getconf', 'PAGESIZE']).stdout.toString().trim())
const TAIL = 'tail-call target'

/** What each set loads: its programs' hooks by C name, and the loader's options. */
const SETS: Record<
  KnownTool,
  {
    programs: Record<string, string>
    tails?: Record<string, Record<number, string>>
    perf?: Record<string, number>
  }
> = {
  tetragon: {
    programs: {
      event_execve: 'tracepoint/sched/sched_process_exec',
      tg_kp_bprm_committing_creds: 'tp_btf/sched_process_exec',
      event_wake_up_new_task: 'raw_tracepoint/sched_process_fork',
      event_exit_acct_process: 'tracepoint/sched/sched_process_exit',
    },
  },
  kubearmor: {
    programs: {
      kprobe__execve: 'tracepoint/syscalls/sys_enter_execve',
      kretprobe__execve: 'tracepoint/syscalls/sys_exit_execve',
      kprobe__security_bprm_check: 'tp_btf/sched_process_exec',
      sched_process_fork: 'tracepoint/sched/sched_process_fork',
      kprobe__do_exit: 'raw_tracepoint/sched_process_exit',
    },
    perf: { sys_events: 4 },
  },
  falco: {
    programs: {
      sys_exit: 'raw_tracepoint/sys_exit',
      sched_p_exec: 'tp_btf/sched_process_exec',
      execve_x: TAIL,
      execveat_x: TAIL,
      clone_x: TAIL,
      t1_sched_p_exec: TAIL,
      t2_sched_p_exec: TAIL,
    },
    tails: {
      syscall_exit_tail_table: { 56: 'clone_x', 59: 'execve_x', 322: 'execveat_x' },
      extra_sched_proc_exec_calls: { 0: 't1_sched_p_exec', 1: 't2_sched_p_exec' },
    },
  },
  tracee: {
    programs: {
      tracepoint__raw_syscalls__sys_enter: 'raw_tracepoint/sys_enter',
      tracepoint__raw_syscalls__sys_exit: 'raw_tracepoint/sys_exit',
      tracepoint__sched__sched_process_exec: 'raw_tracepoint/sched_process_exec',
      tracepoint__sched__sched_process_fork: 'raw_tracepoint/sched_process_fork',
      sys_enter_init: TAIL,
      sys_enter_submit: TAIL,
      sys_exit_init: TAIL,
      sched_process_exec_event_submit_tail: TAIL,
    },
    tails: {
      sys_enter_init_tail: { 59: 'sys_enter_init', 322: 'sys_enter_init' },
      sys_enter_submit_tail: { 59: 'sys_enter_submit', 322: 'sys_enter_submit' },
      sys_exit_init_tail: { 59: 'sys_exit_init' },
      prog_array_tp: { 0: 'sched_process_exec_event_submit_tail' },
    },
    perf: { events: 8, signals: 2 },
  },
}

const KNOWN: KnownTool[] = ['tetragon', 'kubearmor', 'falco', 'tracee']

/** The kernel's name for an object: 15 characters. */
const kname = (s: string) => s.slice(0, 15)

function loaderArgs(tool: KnownTool): string[] {
  const set = SETS[tool]
  const args: string[] = []
  for (const [m, slots] of Object.entries(set.tails ?? {})) {
    for (const [i, p] of Object.entries(slots)) args.push('--tail', `${m}:${i}=${p}`)
  }
  for (const [m, pages] of Object.entries(set.perf ?? {})) args.push('--perf', `${m}:${pages}`)
  return args
}

interface Loader {
  tool: KnownTool
  pid: number
  /** C name → program id, from bpftool, for the programs this loader holds */
  ids: Map<string, number>
  /** the maps it holds, from its fdinfo */
  mapIds: number[]
  stop(): Promise<void>
}

/** Ids of the maps whose fds a process holds, from its fdinfo. */
function mapIdsHeldBy(pid: number): number[] {
  const ids = new Set<number>()
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    try {
      const m = /^map_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))
      if (m) ids.add(Number(m[1]))
    } catch {
      // an fd closed while we looked
    }
  }
  return [...ids].sort((a, b) => a - b)
}

/**
 * Ids of every map, from BPF_MAP_GET_NEXT_ID alone. Opening a prog array by id while the kernel
 * tears it down (as bpftool map show does for every map) makes kernel 6.18 leak it: the deferred
 * clear is scheduled a second time while still pending, and its map reference is never dropped.
 * Listing ids opens nothing.
 */
function liveMapIds(): Set<number> {
  return new Set(mapIds())
}

let out = ''
const running: Loader[] = []

async function startLoader(tool: KnownTool, extra: string[] = []): Promise<Loader> {
  const proc = Bun.spawn(
    [join(out, 'bin', tool), join(out, `${tool}.bpf.o`), ...loaderArgs(tool), ...extra],
    { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' }
  )
  const stderr = new Response(proc.stderr).text()
  const reader = proc.stdout.getReader()
  let seen = ''
  const ready = (async () => {
    while (!seen.includes('ready\n')) {
      const { value, done } = await reader.read()
      if (done) return false
      seen += new TextDecoder().decode(value)
    }
    return true
  })()
  const ok = await Promise.race([ready, sleep(15_000).then(() => false)])
  if (!ok) {
    proc.kill('SIGKILL')
    throw new Error(`${tool} loader did not get ready: ${await stderr}`)
  }

  // bpftool names programs by their BTF (C) name, an independent view of what the loader holds
  const held = new Set(progIdsHeldBy(proc.pid))
  const ids = new Map(
    bpftoolProgs()
      .filter((p) => held.has(p.id))
      .map((p) => [p.name, p.id])
  )
  let stopped = false
  const loader: Loader = {
    tool,
    pid: proc.pid,
    ids,
    mapIds: mapIdsHeldBy(proc.pid),
    async stop() {
      if (stopped) return
      stopped = true
      // end of stdin is the loader's signal to detach, close and exit
      proc.stdin.end()
      const exited = await Promise.race([
        proc.exited.then(() => true),
        sleep(5000).then(() => false),
      ])
      if (!exited) {
        proc.kill('SIGKILL')
        await proc.exited
      }
    },
  }
  running.push(loader)
  return loader
}

interface Bpftrace {
  pid: number
  progIds: number[]
  stop(): Promise<void>
}

async function startBpftrace(): Promise<Bpftrace> {
  const proc = Bun.spawn(
    [BPFTRACE!, '-e', 'tracepoint:syscalls:sys_enter_getppid { @c = count(); }'],
    { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' }
  )
  const deadline = Date.now() + 15_000
  let progIds: number[] = []
  while (progIds.length === 0) {
    if (proc.exitCode !== null) throw new Error(`bpftrace exited ${proc.exitCode}`)
    if (Date.now() > deadline) {
      proc.kill('SIGKILL')
      throw new Error('bpftrace held no program after 15 s')
    }
    await sleep(100)
    progIds = progIdsHeldBy(proc.pid)
  }
  return {
    pid: proc.pid,
    progIds,
    async stop() {
      proc.kill('SIGINT')
      const exited = await Promise.race([
        proc.exited.then(() => true),
        sleep(5000).then(() => false),
      ])
      if (!exited) proc.kill('SIGKILL')
      await proc.exited
    },
  }
}

/**
 * Polls until none of `ids` is listed. Programs and maps are listed by id alone, never opened:
 * bpftool prog show opens each program's maps by id to look for metadata, and opening a prog
 * array by id while the kernel tears it down makes kernel 6.18 leak it (see liveMapIds).
 */
async function waitGone(
  ids: number[],
  timeoutMs = 10_000,
  list: () => Set<number> = () => new Set(programIds())
): Promise<number[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const loaded = list()
    const left = ids.filter((id) => loaded.has(id))
    if (left.length === 0 || Date.now() > deadline) return left
    await sleep(100)
  }
}

describe.skipIf(problem !== null)(
  `tools on the live kernel${problem ? ` (skipped: ${problem})` : ''}`,
  () => {
    const loaders = new Map<KnownTool, Loader>()
    let execsnoop: Execsnoop | null = null
    let bpftrace: Bpftrace | null = null
    let report: ToolsReport
    let inv: Inventory
    let bpffs: string | null = null
    const fixtureIds: number[] = []
    const fixtureMapIds: number[] = []

    const tool = (name: string): ToolArch => report.tools.find((t) => t.tool === name)!
    // a map another process left behind may carry the same name; the set's own are the loader's
    const mapsOf = (t: KnownTool, type: string) =>
      (tool(t).mapsByType[type] ?? []).filter((m) => loaders.get(t)!.mapIds.includes(m.mapId))

    beforeAll(async () => {
      out = mkdtempSync(join(tmpdir(), 'hm-arch-'))
      const build = Bun.spawnSync(['bash', join(root, 'test/fixtures/tools/build.sh'), out])
      if (build.exitCode !== 0) throw new Error(`build.sh failed: ${build.stderr.toString()}`)

      const tracefs = ensureTracefs()
      if (tracefs) throw new Error(tracefs)
      for (const t of KNOWN) {
        const l = await startLoader(t)
        loaders.set(t, l)
        fixtureIds.push(...l.ids.values())
        fixtureMapIds.push(...l.mapIds)
      }
      execsnoop = await startExecsnoop()
      bpftrace = await startBpftrace()

      inv = takeInventory()
      report = toolsReport(inv)
    }, 120_000)

    afterAll(async () => {
      for (const l of running) await l.stop()
      await execsnoop?.stop()
      await bpftrace?.stop()
      if (bpffs) {
        Bun.spawnSync(['umount', bpffs])
        rmSync(bpffs, { recursive: true, force: true })
      }
      releaseTracefs()
      if (out) rmSync(out, { recursive: true, force: true })
    })

    test('each set loads every program it declares, held by its tool-named loader', () => {
      for (const t of KNOWN) {
        const l = loaders.get(t)!
        expect([...l.ids.keys()].sort()).toEqual(Object.keys(SETS[t].programs).sort())
        expect(readFileSync(`/proc/${l.pid}/comm`, 'utf8').trim()).toBe(t)
      }
    })

    test('each set is attributed by its owner to the tool its loader is named after', () => {
      const a = attribute(inv)
      for (const t of KNOWN) {
        const l = loaders.get(t)!
        for (const id of l.ids.values()) {
          expect({ id, ...a.programs.get(id) }).toMatchObject({
            id,
            tool: t,
            by: 'owner',
            ownerPid: l.pid,
          })
        }
        const listed = tool(t).programs.map((p) => p.progId)
        for (const id of l.ids.values()) expect(listed).toContain(id)
        expect(tool(t).owners.map((o) => [o.pid, o.comm])).toContainEqual([l.pid, t])
      }
    })

    test('the inventory itself carries each set tool, and so do hooks rows', async () => {
      for (const t of KNOWN) {
        for (const id of loaders.get(t)!.ids.values()) {
          expect({ id, tool: inv.programs.find((p) => p.progId === id)?.tool }).toEqual({
            id,
            tool: t,
          })
        }
      }
      const r = await runCli(['hooks', '--once', '--window', '1s', '--json'])
      expect(r.code).toBe(0)
      const rows = JSON.parse(r.stdout).hooks as Array<{ progId: number; tool: string }>
      const tetragon = [...loaders.get('tetragon')!.ids.values()]
      for (const id of tetragon) expect(rows.find((h) => h.progId === id)?.tool).toBe('tetragon')
    })

    test('a baseline run is refused while a known tool is loaded, naming it', async () => {
      const dir = join(out, 'baseline-data')
      const r = await runCli([
        'bench',
        'micro',
        '--condition',
        'baseline',
        '--iterations',
        '10',
        '--data-dir',
        dir,
      ])
      expect(r.code).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toContain('--condition baseline:')
      for (const t of KNOWN) expect(r.stderr).toContain(t)
      expect(r.stderr).toContain('--force')
      expect(existsSync(join(dir, 'hookmeter.db'))).toBe(false)
    })

    test('the report shows each set program with its type and hook, tail-call targets unhooked', () => {
      for (const t of KNOWN) {
        const l = loaders.get(t)!
        const shown = tool(t).programs
        for (const [cname, hook] of Object.entries(SETS[t].programs)) {
          const p = shown.find((x) => x.progId === l.ids.get(cname))!
          expect(p.name).toBe(kname(cname))
          if (hook === TAIL) {
            expect({ cname, attached: p.attached, target: p.tailCallTarget }).toEqual({
              cname,
              attached: false,
              target: true,
            })
          } else {
            expect({ cname, hook: p.hook, attached: p.attached }).toEqual({
              cname,
              hook,
              attached: true,
            })
            expect(p.type).toBe(
              hook.startsWith('tp_btf/')
                ? 'tracing'
                : hook.startsWith('raw_tracepoint/')
                  ? 'raw_tracepoint'
                  : 'tracepoint'
            )
          }
        }
      }
    })

    test('the tetragon set delivers through a ring buffer whose size is its max_entries', () => {
      const t = tool('tetragon')

      expect(mapsOf('tetragon', 'ringbuf').map((m) => [m.name, m.sizeBytes])).toEqual([
        ['tg_rb_events', 256 * 1024],
      ])
      expect(mapsOf('tetragon', 'hash').map((m) => m.name)).toEqual(['execve_map'])
      expect(t.delivery.mechanisms).toEqual(['ringbuf'])
    })

    test('the kubearmor set delivers through a perf event array sized from its reader mmaps', () => {
      const t = tool('kubearmor')
      const perf = mapsOf('kubearmor', 'perf_event_array')

      expect(perf.map((m) => [m.name, m.perCpuBytes, m.perCpuBytesExact])).toEqual([
        ['sys_events', [4 * PAGE], true],
      ])
      expect(t.delivery.mechanisms).toEqual(['perf'])
      const o = t.owners.find((x) => x.pid === loaders.get('kubearmor')!.pid)!
      expect(o.perfBuffers?.perCpuBytes).toEqual([4 * PAGE])
    })

    test('the tracee set delivers through two perf event arrays whose mmaps its owner shares', () => {
      const t = tool('tracee')
      const perf = mapsOf('tracee', 'perf_event_array')

      expect(perf.map((m) => [m.name, m.perCpuBytes, m.perCpuBytesExact])).toEqual([
        ['events', [2 * PAGE, 8 * PAGE], false],
        ['signals', [2 * PAGE, 8 * PAGE], false],
      ])
      expect(t.delivery.mechanisms).toEqual(['perf'])
    })

    test('the falco set delivers through the ring buffer inside its array of maps', () => {
      const t = tool('falco')
      const outer = mapsOf('falco', 'array_of_maps').find((m) => m.name === 'ringbuf_maps')!

      expect(outer.innerMaps?.map((m) => [m.index, m.name, m.type])).toEqual([
        [0, 'rb_cpus_0_1', 'ringbuf'],
      ])
      expect(t.delivery.mechanisms).toEqual(['ringbuf'])
      expect(t.delivery.maps).toContainEqual({
        mechanism: 'ringbuf',
        mapId: outer.innerMaps![0]!.mapId,
        name: 'rb_cpus_0_1',
        sizeBytes: 1024 * 1024,
        via: { mapId: outer.mapId, name: 'ringbuf_maps' },
      })
    })

    for (const t of ['falco', 'tracee'] as const) {
      test(`the ${t} tail-call graph lists the targets its loader put into each prog array`, () => {
        const l = loaders.get(t)!
        const arch = tool(t)

        for (const [mapName, slots] of Object.entries(SETS[t].tails!)) {
          const pa = mapsOf(t, 'prog_array').find((m) => m.name === kname(mapName))!
          const expected = Object.entries(slots).map(([i, p]) => ({
            index: Number(i),
            progId: l.ids.get(p)!,
            name: kname(p),
          }))
          expect({ map: mapName, slots: pa.slots }).toEqual({ map: mapName, slots: expected })

          // every program of the set that uses the prog array is a dispatcher to all its slots
          for (const node of arch.tailCalls.filter((n) =>
            arch.programs.find((p) => p.progId === n.progId)!.mapIds.includes(pa.mapId)
          )) {
            const viaThis = node.targets.filter((x) => x.mapId === pa.mapId)
            expect(viaThis.map((x) => [x.index, x.progId])).toEqual(
              expected.map((e) => [e.index, e.progId])
            )
          }
        }
      })
    }

    test('falco dispatchers: sys_exit reaches the syscall handlers, sched_p_exec its chain', () => {
      const l = loaders.get('falco')!
      const nodes = tool('falco').tailCalls
      const node = (c: string) => nodes.find((n) => n.progId === l.ids.get(c))!
      const ids = (...cs: string[]) => cs.map((c) => l.ids.get(c)!).sort((a, b) => a - b)

      expect(node('sys_exit')).toMatchObject({ entry: true, hook: 'raw_tracepoint/sys_exit' })
      expect(node('sys_exit').reaches).toEqual(ids('execve_x', 'execveat_x', 'clone_x'))
      expect(node('sched_p_exec').entry).toBe(true)
      expect(node('sched_p_exec').reaches).toEqual(ids('t1_sched_p_exec', 't2_sched_p_exec'))
      // t1 tail-calls on through the same prog array, so it is a dispatcher that is also a target
      expect(node('t1_sched_p_exec').entry).toBe(false)
    })

    test('tracee dispatchers: raw sys_enter reaches init and then submit through two arrays', () => {
      const l = loaders.get('tracee')!
      const nodes = tool('tracee').tailCalls
      const node = (c: string) => nodes.find((n) => n.progId === l.ids.get(c))!
      const ids = (...cs: string[]) => cs.map((c) => l.ids.get(c)!).sort((a, b) => a - b)

      expect(node('tracepoint__raw_syscalls__sys_enter')).toMatchObject({
        entry: true,
        reaches: ids('sys_enter_init', 'sys_enter_submit'),
      })
      expect(node('tracepoint__raw_syscalls__sys_exit').reaches).toEqual(ids('sys_exit_init'))
      expect(node('tracepoint__sched__sched_process_exec').reaches).toEqual(
        ids('sched_process_exec_event_submit_tail')
      )
      expect(tool('tetragon').tailCalls).toEqual([])
      expect(tool('kubearmor').tailCalls).toEqual([])
    })

    test('the report marks which of each tool policy scopes the set hooks show', () => {
      const shown = (t: KnownTool) =>
        Object.fromEntries((tool(t).scopes ?? []).map((sc) => [sc.scope, sc.shown]))

      // the sets hang on tracepoints where the tools use kprobes and LSM hooks
      expect(shown('tetragon')).toMatchObject({ Tracepoints: true, Kprobes: false })
      expect(shown('kubearmor')).toMatchObject({ Process: true, Syscalls: true, File: false })
      expect(shown('falco')).toMatchObject({ Syscalls: true, Tracepoints: true })
      expect(shown('tracee')).toMatchObject({ Syscalls: true })
      expect(tool('other').scopes).toBeNull()
    })

    test('execsnoop and a bpftrace script come out as other, detailed by their comm', () => {
      const a = attribute(inv).programs
      for (const [ids, comm] of [
        [execsnoop!.progIds, 'execsnoop'],
        [bpftrace!.progIds, 'bpftrace'],
      ] as const) {
        expect(ids.length).toBeGreaterThan(0)
        for (const id of ids) {
          expect({ id, ...a.get(id) }).toMatchObject({ id, tool: 'other', toolDetail: comm })
        }
      }
      const other = tool('other')
      expect(other.toolDetails).toEqual(expect.arrayContaining(['execsnoop', 'bpftrace']))
      expect(other.programs.map((p) => p.progId)).toEqual(
        expect.arrayContaining([...execsnoop!.progIds, ...bpftrace!.progIds])
      )
      const snoop = other.programs.find((p) => p.progId === execsnoop!.progIds[0])!
      expect(snoop.hook).toMatch(/^tracepoint\/syscalls\/sys_(enter|exit)_execve$/)
    })

    test('the arch command prints the report as json and as text', async () => {
      // until `arch` is wired into agent/main.ts the command module is run on its own
      const wired = /cmdArch/.test(readFileSync(join(root, 'agent/main.ts'), 'utf8'))
      const runner = join(out, 'arch-runner.ts')
      writeFileSync(
        runner,
        `import { cmdArch } from '${join(root, 'agent/commands/arch.ts')}'\n` +
          'process.exitCode = await cmdArch(process.argv.slice(2))\n'
      )
      const arch = async (args: string[]) => {
        if (wired) return runCli(['arch', ...args])
        const p = Bun.spawn([bunExe, runner, ...args], {
          cwd: root,
          stdout: 'pipe',
          stderr: 'pipe',
        })
        const [stdout, stderr, code] = await Promise.all([
          new Response(p.stdout).text(),
          new Response(p.stderr).text(),
          p.exited,
        ])
        return { code, stdout, stderr }
      }

      const all = await arch(['--json'])
      expect(all.code).toBe(0)
      const parsed = JSON.parse(all.stdout) as ToolsReport
      for (const t of KNOWN) {
        const shown = parsed.tools.find((x) => x.tool === t)!.programs.map((p) => p.progId)
        expect(shown).toEqual(expect.arrayContaining([...loaders.get(t)!.ids.values()]))
      }

      const one = await arch(['tracee', '--json'])
      expect(one.code).toBe(0)
      expect((JSON.parse(one.stdout) as ToolArch).delivery.mechanisms).toEqual(['perf'])

      const text = await arch(['falco'])
      expect(text.code).toBe(0)
      const f = loaders.get('falco')!
      expect(text.stdout).toContain(`falco (Falco)`)
      expect(text.stdout).toContain(`pid ${f.pid}  falco  ${join(out, 'bin', 'falco')}`)
      expect(text.stdout).toMatch(
        new RegExp(
          `\\n {4}${f.ids.get('sys_exit')}\\s+sys_exit\\s+raw_tracepoint\\s+raw_tracepoint/sys_exit`
        )
      )
      expect(text.stdout).toContain(
        `    sys_exit (id ${f.ids.get('sys_exit')}, raw_tracepoint/sys_exit)\n` +
          `      syscall_exit_ta[56] -> clone_x (id ${f.ids.get('clone_x')})\n` +
          `      syscall_exit_ta[59] -> execve_x (id ${f.ids.get('execve_x')})\n`
      )
      expect(text.stdout).toContain('delivery: ring buffer (rb_cpus_0_1 in ringbuf_maps)')
    }, 60_000)

    test('a pinned program whose loader exited is still attributed to tetragon', async () => {
      bpffs = join(out, 'bpffs')
      mkdirSync(bpffs)
      const mount = Bun.spawnSync(['mount', '-t', 'bpf', 'bpf', bpffs])
      expect(mount.exitCode).toBe(0)
      const pin = join(bpffs, 'tetragon/__base__/event_execve/prog')

      const l = await startLoader('tetragon', ['--pin', `event_execve=${pin}`])
      const id = l.ids.get('event_execve')!
      fixtureIds.push(...l.ids.values())
      fixtureMapIds.push(...l.mapIds)
      await l.stop()
      const deadline = Date.now() + 5000
      while (heldProgIds().has(id) && Date.now() < deadline) await sleep(50)

      const now = takeInventory()
      const p = now.programs.find((x) => x.progId === id)!
      expect(p.owners).toEqual([])
      expect(p.pins).toEqual([pin])
      const a = attribute(now)
      expect(a.programs.get(id)).toEqual({ tool: 'tetragon', by: 'program-name' })
      // its ring buffer has no holder either, and goes with the program that uses it
      const rb = now.maps.find((m) => p.mapIds.includes(m.id) && m.name === 'tg_rb_events')!
      expect(rb.owners).toEqual([])
      expect(a.maps.get(rb.id)?.tool).toBe('tetragon')

      const shown = toolReport('tetragon', now)!.programs.find((x) => x.progId === id)!
      expect(shown).toMatchObject({ attached: false, pins: [pin], ownerPids: [] })

      // unmounting the bpffs drops the last reference: the kernel frees the program
      expect(Bun.spawnSync(['umount', bpffs]).exitCode).toBe(0)
      rmSync(bpffs, { recursive: true })
      bpffs = null
      expect(await waitGone([id])).toEqual([])
    }, 60_000)

    test('stopping the loaders frees every fixture program and map', async () => {
      for (const l of running) await l.stop()
      expect(await waitGone(fixtureIds)).toEqual([])
      const left = await waitGone(fixtureMapIds, 10_000, liveMapIds)
      if (left.length > 0) {
        // another process opening maps by id meanwhile can trigger the kernel leak described at
        // liveMapIds; the message says so, since the maps then stay until reboot
        const named = left.map((id) => `${id} ${inv.maps.find((m) => m.id === id)?.name ?? '?'}`)
        throw new Error(
          `fixture maps left behind: ${named.join(', ')}` +
            ' (prog arrays that some process opened by id while they were being freed leak on this kernel)'
        )
      }
    }, 30_000)
  }
)
