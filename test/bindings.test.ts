// libbpf-bindings against the live kernel and the real libbpf.so.1: load, attach, maps, global
// data, enumeration, statistics, dispose and errors. Needs root.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { ClosedError, LibbpfError, VerifierError } from '../libbpf-bindings/errors.ts'
import { listLinks, listMaps, listPrograms, programInfoByFd } from '../libbpf-bindings/enumerate.ts'
import { u32Key } from '../libbpf-bindings/map.ts'
import { BpfObject } from '../libbpf-bindings/object.ts'
import {
  readStatsSysctl,
  recoverStatsSysctl,
  StatsSession,
  STATS_SYSCTL,
} from '../libbpf-bindings/stats.ts'
import { ensureTracefs } from '../libbpf-bindings/tracefs.ts'
import { waitNoHmPrograms } from './helpers.ts'

const root = join(import.meta.dir, '..')
const PROBE = join(root, 'bpf/hm_probe.bpf.o')
const FEATURES = join(root, 'bpf/hm_features.bpf.o')
const isRoot = process.getuid?.() === 0
const clang = Bun.which('clang-19')

/** Another process keeping statistics on would keep the counters moving after ours closes. */
function statsHeldElsewhere(): boolean {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    if (Number(pid) === process.pid) continue
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).includes('bpf-stats')) return true
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return false
}

let tmp = ''
let sysctlBefore = 0

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'hm-bindings-'))
  if (isRoot) sysctlBefore = readStatsSysctl()
  if (isRoot) ensureTracefs()
})

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true })
  if (isRoot) writeFileSync(STATS_SYSCTL, String(sysctlBefore))
})

function openFeatures(only: string): BpfObject {
  const obj = BpfObject.open(FEATURES, { objectName: 'hm_features' })
  for (const p of obj.programs()) p.autoload = p.name === only
  return obj
}

/** Waits for the kernel to release programs named like `prefix` (it frees them asynchronously). */
async function waitGone(prefix: string, timeoutMs = 5000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const left = listPrograms()
      .filter((p) => p.name.startsWith(prefix))
      .map((p) => p.name)
    if (!left.length || Date.now() > deadline) return left
    await Bun.sleep(50)
  }
}

describe('opening objects', () => {
  test('an object lists its programs and maps before load', () => {
    using obj = BpfObject.open(PROBE, { objectName: 'hm_probe' })
    expect(obj.programs().map((p) => [p.name, p.sectionName])).toEqual([
      ['hm_sched_process_fork', 'tp_btf/sched_process_fork'],
      ['hm_sys_enter_execve', 'tracepoint/syscalls/sys_enter_execve'],
      ['hm_sched_process_exec', 'tp_btf/sched_process_exec'],
      ['hm_sched_process_exit', 'tp_btf/sched_process_exit'],
    ])
    expect(
      obj
        .maps()
        .map((m) => m.name)
        .sort()
    ).toEqual(
      ['hm_children', 'hm_perf', 'hm_probe.bss', 'hm_probe.data', 'hm_rb', 'hm_spawners'].sort()
    )
    expect(obj.map('hm_rb').maxEntries).toBe(4 * 1024 * 1024)
    expect(obj.loaded).toBe(false)
  })

  test('a missing file fails with ENOENT naming the call and the path', () => {
    const path = join(tmp, 'missing.bpf.o')
    let err: unknown
    try {
      BpfObject.open(path)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(LibbpfError)
    expect((err as LibbpfError).call).toBe('bpf_object__open_file')
    expect((err as LibbpfError).errnoName).toBe('ENOENT')
    expect((err as LibbpfError).message).toContain(path)
  })

  test('a corrupt file fails with libbpf message attached', () => {
    const path = join(tmp, 'corrupt.bpf.o')
    writeFileSync(path, Buffer.from('\x7fELF this is not an object file at all'))
    let err: unknown
    try {
      BpfObject.open(path)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(LibbpfError)
    expect((err as LibbpfError).message).toContain(path)
    expect((err as LibbpfError).libbpfMessages.join(' ')).toMatch(/elf|ELF/)
  })
})

describe.skipIf(!isRoot)('loading and attaching', () => {
  test('only programs left to autoload are loaded', async () => {
    {
      using obj = openFeatures('hm_feat_raw_tp')
      obj.load()
      const names = listPrograms()
        .map((p) => p.name)
        .filter((n) => n.startsWith('hm_feat'))
      expect(names).toEqual(['hm_feat_raw_tp'])
    }
    expect(await waitGone('hm_feat')).toEqual([])
  })

  test('links report their hooks for raw_tracepoint, tp_btf and tracepoint programs', async () => {
    const expected: Record<string, string> = {
      hm_feat_raw_tp: 'raw_tracepoint/sys_enter',
      hm_feat_tp_btf: 'tp_btf/sys_enter',
      hm_feat_tp: 'tracepoint/syscalls/sys_enter_getppid',
    }
    for (const [prog, hook] of Object.entries(expected)) {
      using obj = openFeatures(prog)
      obj.load()
      using link = obj.program(prog).attach()
      const progId = programInfoByFd(obj.program(prog).fd).id
      const found = listLinks().find((l) => l.progId === progId)
      expect([prog, found?.hook]).toEqual([prog, hook])
      expect(link.fd).toBeGreaterThan(0)
    }
    expect(await waitGone('hm_feat')).toEqual([])
  })

  test('closing an object destroys the links made through it', async () => {
    let progId = 0
    {
      using obj = openFeatures('hm_feat_raw_tp')
      obj.load()
      obj.program('hm_feat_raw_tp').attach()
      progId = programInfoByFd(obj.program('hm_feat_raw_tp').fd).id
      expect(listLinks().some((l) => l.progId === progId)).toBe(true)
    }
    expect(listLinks().some((l) => l.progId === progId)).toBe(false)
    expect(await waitGone('hm_feat')).toEqual([])
  })

  test('an attach the kernel cannot do names the call and the program', () => {
    using obj = openFeatures('hm_feat_kprobe')
    obj.load()
    let err: unknown
    try {
      obj.program('hm_feat_kprobe').attach()
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(LibbpfError)
    expect((err as LibbpfError).call).toBe('bpf_program__attach')
    expect((err as LibbpfError).message).toContain('hm_feat_kprobe')
  })

  test.skipIf(!clang)('a program the verifier refuses gives its log', () => {
    const obj = join(tmp, 'hm_bad.bpf.o')
    const cc = Bun.spawnSync([
      clang!,
      '-g',
      '-O2',
      '-target',
      'bpf',
      '-c',
      join(import.meta.dir, 'fixtures/bpf/hm_bad.bpf.c'),
      '-o',
      obj,
    ])
    expect(cc.exitCode).toBe(0)
    using bad = BpfObject.open(obj)
    let err: unknown
    try {
      bad.load()
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(VerifierError)
    expect((err as VerifierError).log.length).toBeGreaterThan(0)
    expect((err as VerifierError).log.join('\n')).toContain('invalid mem access')
    expect((err as VerifierError).message).toContain(obj)
  })

  test('close is idempotent and a closed object refuses use', () => {
    const obj = openFeatures('hm_feat_raw_tp')
    obj.load()
    const link = obj.program('hm_feat_raw_tp').attach()
    link.close()
    link.close()
    obj.close()
    obj.close()
    expect(obj.closed).toBe(true)
    expect(() => obj.program('hm_feat_raw_tp').fd).toThrow(ClosedError)
  })
})

describe.skipIf(!isRoot)('maps and global data', () => {
  test('hash map update, lookup, iterate and delete', () => {
    using obj = BpfObject.open(PROBE, { objectName: 'hm_probe' })
    obj.load()
    const m = obj.map('hm_spawners').kernel
    expect(m.lookup(u32Key(7))).toBeNull()
    m.update(u32Key(7), new Uint8Array([1]))
    m.update(u32Key(9), new Uint8Array([2]))
    expect([...m.lookup(u32Key(9))!]).toEqual([2])
    const keys = m
      .keys()
      .map((k) => new DataView(k.buffer).getUint32(0, true))
      .sort()
    expect(keys).toEqual([7, 9])
    expect(m.entries().length).toBe(2)
    expect(m.delete(u32Key(7))).toBe(true)
    expect(m.delete(u32Key(7))).toBe(false)
    expect(() => m.lookup(new Uint8Array(2))).toThrow(/key is 2 bytes, expected 4/)
  })

  test('global data can be set before load and read from the kernel after', () => {
    using obj = BpfObject.open(PROBE, { objectName: 'hm_probe' })
    const data = obj.map('hm_probe.data')
    expect([...data.initialValue()]).toEqual([3, 0, 0, 0, 1, 0, 0, 0])
    data.setInitialValue(new Uint8Array([1, 0, 0, 0, 64, 0, 0, 0]))
    obj.load()
    expect([...data.kernel.lookup(u32Key(0))!]).toEqual([1, 0, 0, 0, 64, 0, 0, 0])
    expect([...obj.map('hm_probe.bss').kernel.lookup(u32Key(0))!]).toEqual(new Array(48).fill(0))
  })
})

describe.skipIf(!isRoot)('enumeration', () => {
  test('programs carry the kernel name, the BTF full name, type and map ids', () => {
    using obj = BpfObject.open(PROBE, { objectName: 'hm_probe' })
    obj.load()
    const exit = programInfoByFd(obj.program('hm_sched_process_exit').fd)
    expect(exit.name).toBe('hm_sched_proces')
    expect(exit.fullName).toBe('hm_sched_process_exit')
    expect(exit.typeName).toBe('tracing')
    expect(exit.tag).toMatch(/^[0-9a-f]{16}$/)
    expect(exit.verifiedInsns).toBeGreaterThan(0)
    expect(exit.jitedSize).toBeGreaterThan(0)
    expect(Math.abs(Date.parse(exit.loadedAt) - Date.now())).toBeLessThan(60_000)

    const maps = listMaps()
    const rb = maps.find((m) => m.name === 'hm_rb' && exit.mapIds.includes(m.id))
    expect(rb?.typeName).toBe('ringbuf')
    expect(rb?.maxEntries).toBe(4 * 1024 * 1024)
    const all = listPrograms().find((p) => p.id === exit.id)
    expect(all?.fullName).toBe('hm_sched_process_exit')
  })
})

describe.skipIf(!isRoot)('statistics', () => {
  async function runCount(fn: () => void): Promise<bigint> {
    using obj = openFeatures('hm_feat_raw_tp')
    obj.load()
    using link = obj.program('hm_feat_raw_tp').attach()
    void link
    const fd = obj.program('hm_feat_raw_tp').fd
    const before = programInfoByFd(fd).runCnt
    fn()
    for (let i = 0; i < 200; i++) readFileSync('/proc/self/stat')
    return programInfoByFd(fd).runCnt - before
  }

  test.skipIf(statsHeldElsewhere())(
    'counters advance while a stats fd is held and freeze once it is closed',
    async () => {
      writeFileSync(STATS_SYSCTL, '0')
      let counted = 0n
      {
        using s = StatsSession.open()
        expect(s.mode).toBe('fd')
        counted = await runCount(() => {})
        expect(readStatsSysctl()).toBe(0)
      }
      expect(counted).toBeGreaterThan(200n)
      expect(await runCount(() => {})).toBe(0n)
    }
  )

  test('the sysctl fallback restores 0 and leaves a preset 1 alone', () => {
    const marker = join(tmp, 'stats-marker')
    writeFileSync(STATS_SYSCTL, '0')
    {
      using s = StatsSession.open({ forceSysctl: true, markerPath: marker })
      expect(s.mode).toBe('sysctl')
      expect(readStatsSysctl()).toBe(1)
      expect(readFileSync(marker, 'utf8')).toBe('0')
    }
    expect(readStatsSysctl()).toBe(0)

    writeFileSync(STATS_SYSCTL, '1')
    {
      using s = StatsSession.open({ forceSysctl: true })
      expect(s.mode).toBe('sysctl-preset')
    }
    expect(readStatsSysctl()).toBe(1)
    writeFileSync(STATS_SYSCTL, String(sysctlBefore))
  })

  test('a marker left by a crashed run puts the sysctl back', () => {
    const marker = join(tmp, 'stats-crashed')
    writeFileSync(marker, '0')
    writeFileSync(STATS_SYSCTL, '1')
    expect(recoverStatsSysctl(marker)).toBe(true)
    expect(readStatsSysctl()).toBe(0)
    expect(recoverStatsSysctl(marker)).toBe(false)
    writeFileSync(STATS_SYSCTL, String(sysctlBefore))
  })
})

describe.skipIf(!isRoot)('leaving nothing behind', () => {
  test('no hm_ program is left once every object here is closed', async () => {
    // another hookmeter running on the host holds its own; only unheld ones are leaks
    expect(await waitNoHmPrograms()).toEqual([])
  })
})
