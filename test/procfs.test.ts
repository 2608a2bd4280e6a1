import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

import {
  clockTicksPerSecond,
  findBpffsMounts,
  MAX_PIN_DEPTH,
  ProcfsError,
  readCgroup,
  readProcStat,
  scanBpfHolders,
  walkPins,
  type CgroupInfo,
  type PinIdentity,
} from '../agent/procfs.ts'

const FIXTURES = join(import.meta.dir, 'fixtures', 'proc')
const PARSE_ROOT = join(FIXTURES, 'parse')

// fd/ and exe entries are symlinks, made here rather than committed so that the fixture tree
// survives any checkout, archive or copy unchanged.
const HOST_LINKS: Record<string, string> = {
  '1/exe': '/usr/lib/systemd/systemd',
  '1/fd/0': '/dev/null',
  '100/exe': '/usr/bin/tetragon',
  '100/fd/0': '/dev/null',
  '100/fd/1': 'socket:[40123]',
  '100/fd/3': 'anon_inode:bpf-prog',
  '100/fd/4': 'anon_inode:bpf-prog',
  '100/fd/5': 'anon_inode:bpf-map',
  '100/fd/6': 'anon_inode:bpf_link',
  '100/fd/7': 'anon_inode:[perf_event]',
  '100/fd/8': 'anon_inode:bpf-prog',
  '100/fd/9': 'anon_inode:bpf-prog',
  '100/fd/10': 'anon_inode:bpf-map',
  '200/exe': '/usr/bin/falco',
  '200/fd/5': 'anon_inode:bpf-prog',
  '200/fd/6': 'anon_inode:bpf-map',
  '200/fd/7': 'anon_inode:bpf-map',
  '200/fd/8': 'anon_inode:bpf_link',
  '200/fd/9': 'anon_inode:[perf_event]',
  '400/task/401/fd/3': 'anon_inode:bpf-prog',
  '500/fd/3': 'anon_inode:bpf-prog',
}

const TETRAGON_CGROUP: CgroupInfo = {
  path:
    '/kubepods.slice/kubepods-besteffort.slice/' +
    'kubepods-besteffort-pod5f3c2a1e_8b7d_4c6e_9a0f_1b2c3d4e5f60.slice/' +
    'cri-containerd-2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f.scope',
  version: 'v2',
  containerId: '2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f',
  podUid: '5f3c2a1e-8b7d-4c6e-9a0f-1b2c3d4e5f60',
}

const FALCO_CGROUP: CgroupInfo = {
  path: '/system.slice/docker-6de102c1cecc011032305908295668eedad74d736c6d216e4c42f416ae84988f.scope',
  version: 'v2',
  containerId: '6de102c1cecc011032305908295668eedad74d736c6d216e4c42f416ae84988f',
}

const DEEP_DIRS = Array.from({ length: MAX_PIN_DEPTH + 1 }, (_, i) => `d${i + 1}`)

let scratch = ''
let hostRoot = ''
let pinRoot = ''

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'hookmeter-procfs-'))

  hostRoot = join(scratch, 'proc')
  cpSync(join(FIXTURES, 'host'), hostRoot, { recursive: true })
  mkdirSync(join(hostRoot, '2', 'fd'), { recursive: true })
  mkdirSync(join(hostRoot, '400', 'fd'), { recursive: true })
  for (const [path, target] of Object.entries(HOST_LINKS)) {
    mkdirSync(dirname(join(hostRoot, path)), { recursive: true })
    symlinkSync(target, join(hostRoot, path))
  }

  pinRoot = join(scratch, 'bpffs')
  const pinFiles = ['tetragon/prog_exec', 'tetragon/maps/events', 'link_exec', 'notes', 'broken']
  for (const path of pinFiles) {
    mkdirSync(dirname(join(pinRoot, path)), { recursive: true })
    writeFileSync(join(pinRoot, path), '')
  }
  symlinkSync('tetragon/prog_exec', join(pinRoot, 'alias'))
  symlinkSync('tetragon', join(pinRoot, 'dirlink'))

  // A pin in the deepest directory walked (d1 is depth 1), and one in the directory below it.
  mkdirSync(join(pinRoot, ...DEEP_DIRS), { recursive: true })
  writeFileSync(join(pinRoot, ...DEEP_DIRS.slice(0, MAX_PIN_DEPTH), 'at_limit'), '')
  writeFileSync(join(pinRoot, ...DEEP_DIRS, 'too_deep'), '')
})

afterAll(() => {
  if (scratch !== '') rmSync(scratch, { recursive: true, force: true })
})

describe('scanBpfHolders on a fixture tree', () => {
  test('indexes programs by id with one owner per process and all its fds', () => {
    const index = scanBpfHolders({ procRoot: hostRoot })

    expect(index.progs.get(11)).toEqual([
      {
        pid: 100,
        comm: 'tetragon',
        exe: '/usr/bin/tetragon',
        cgroup: TETRAGON_CGROUP,
        fds: [3, 4],
      },
      { pid: 200, comm: 'falco worker', exe: '/usr/bin/falco', cgroup: FALCO_CGROUP, fds: [5] },
    ])
    expect(index.progs.get(12)?.map((owner) => [owner.pid, owner.fds])).toEqual([[100, [9]]])
    expect([...index.progs.keys()].sort()).toEqual([11, 12])
  })

  test('indexes maps and links, with the program each link attaches', () => {
    const index = scanBpfHolders({ procRoot: hostRoot })

    expect(index.maps.get(21)?.map((owner) => [owner.pid, owner.fds])).toEqual([
      [100, [5]],
      [200, [6, 7]],
    ])
    expect([...index.maps.keys()]).toEqual([21])

    const link = index.links.get(31)
    expect(link?.progId).toBe(11)
    expect(link?.owners.map((owner) => [owner.pid, owner.fds])).toEqual([
      [100, [6]],
      [200, [8]],
    ])
  })

  test('remembers perf-event fds by pid and fd', () => {
    const index = scanBpfHolders({ procRoot: hostRoot })

    expect(index.perfEventFds).toEqual([
      { pid: 100, fd: 7 },
      { pid: 200, fd: 9 },
    ])
  })

  test('counts vanished processes and fds and fdinfo without an id as skipped', () => {
    const index = scanBpfHolders({ procRoot: hostRoot })

    // pid 300 has no fd dir, pid 500 no comm, 100/fd/8 no fdinfo, 100/fdinfo/10 no map_id.
    expect(index.skipped).toBe(4)
    expect(index.progs.get(11)?.some((owner) => owner.pid === 500)).toBe(false)
  })

  test('walks thread-group leaders only, not their task entries', () => {
    const index = scanBpfHolders({ procRoot: hostRoot })

    expect(index.progs.has(99)).toBe(false)
  })

  test('throws a ProcfsError naming the path when the proc root is missing', () => {
    const missing = join(scratch, 'no-such-proc')

    expect(() => scanBpfHolders({ procRoot: missing })).toThrow(ProcfsError)
    expect(() => scanBpfHolders({ procRoot: missing })).toThrow(`readdir ${missing}: ENOENT`)
  })
})

describe('readCgroup on fixture files', () => {
  const cases: Array<[string, number, CgroupInfo]> = [
    [
      'v2, containerd with the systemd driver in a burstable pod',
      1001,
      {
        path:
          '/kubepods.slice/kubepods-burstable.slice/' +
          'kubepods-burstable-pod5f3c2a1e_8b7d_4c6e_9a0f_1b2c3d4e5f60.slice/' +
          'cri-containerd-2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f.scope',
        version: 'v2',
        containerId: '2397d068a8d1552a4c3f9147ba9c94e086bfd66fb2acb5bbaf47197105127d5f',
        podUid: '5f3c2a1e-8b7d-4c6e-9a0f-1b2c3d4e5f60',
      },
    ],
    [
      'v1, docker with the cgroupfs driver',
      1002,
      {
        path: '/docker/2a759f8fac4d817ff2bc28c224d51c5030f915c0c14997110517984ca9aa8d0f',
        version: 'v1',
        containerId: '2a759f8fac4d817ff2bc28c224d51c5030f915c0c14997110517984ca9aa8d0f',
      },
    ],
    [
      'v1, kubepods with the cgroupfs driver',
      1003,
      {
        path:
          '/kubepods/burstable/podd8f1e7c2-3a4b-4c5d-8e9f-0a1b2c3d4e5f/' +
          'af2800a3611b6b11bcf86c918756de0596bb5c0d60da7ae5c24ccbfc714da9fd',
        version: 'v1',
        containerId: 'af2800a3611b6b11bcf86c918756de0596bb5c0d60da7ae5c24ccbfc714da9fd',
        podUid: 'd8f1e7c2-3a4b-4c5d-8e9f-0a1b2c3d4e5f',
      },
    ],
    [
      'hybrid with a root v2 line, cri-o with the systemd driver in a besteffort pod',
      1004,
      {
        path:
          '/kubepods.slice/kubepods-besteffort.slice/' +
          'kubepods-besteffort-pod0c1d2e3f_4a5b_4c6d_8e7f_9a0b1c2d3e4f.slice/' +
          'crio-c64064614423cb790e88b3e5492ff5ccf673b25ae823089f7a60c65cda24d809.scope',
        version: 'hybrid',
        containerId: 'c64064614423cb790e88b3e5492ff5ccf673b25ae823089f7a60c65cda24d809',
        podUid: '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f',
      },
    ],
    [
      'hybrid whose v2 line is placed, preferred over name=systemd',
      1005,
      {
        path: '/system.slice/docker-6de102c1cecc011032305908295668eedad74d736c6d216e4c42f416ae84988f.scope',
        version: 'hybrid',
        containerId: '6de102c1cecc011032305908295668eedad74d736c6d216e4c42f416ae84988f',
      },
    ],
    [
      'hybrid where only the memory hierarchy is placed',
      1006,
      { path: '/process_api/d41b348a3232d2709f5310343fbb40a2', version: 'hybrid' },
    ],
    ['hybrid with every hierarchy at the root', 1007, { path: '/', version: 'hybrid' }],
    [
      'v2, a host login session',
      1008,
      { path: '/user.slice/user-1000.slice/session-2.scope', version: 'v2' },
    ],
    [
      'v2, a guaranteed pod, which has no QoS slice',
      1009,
      {
        path:
          '/kubepods.slice/kubepods-pod7a8b9c0d_1e2f_4a3b_9c4d_5e6f7a8b9c0d.slice/' +
          'cri-containerd-99401a294931bb4fb58bc21f4079b18bdf37a1894e311ec1069be547d861adb9.scope',
        version: 'v2',
        containerId: '99401a294931bb4fb58bc21f4079b18bdf37a1894e311ec1069be547d861adb9',
        podUid: '7a8b9c0d-1e2f-4a3b-9c4d-5e6f7a8b9c0d',
      },
    ],
    [
      'v1, a static pod, whose UID is a hash without dashes',
      1010,
      {
        path:
          '/kubepods/besteffort/pod6e0bbc3fd0bce2df6b2e0cbd1e9bd3c1/' +
          'a8a820fbada81c53d65a0c50e0f2a499f0edd10f42e4e1b28784619f74d0452f',
        version: 'v1',
        containerId: 'a8a820fbada81c53d65a0c50e0f2a499f0edd10f42e4e1b28784619f74d0452f',
        podUid: '6e0bbc3fd0bce2df6b2e0cbd1e9bd3c1',
      },
    ],
    [
      'v2, podman, in a sub-cgroup of the container scope',
      1011,
      {
        path: '/machine.slice/libpod-409d6a88b2635ae831a3a7e86dee6bbc0f5cbfd3606a54c6fd690f50bd61e1c1.scope/container',
        version: 'v2',
        containerId: '409d6a88b2635ae831a3a7e86dee6bbc0f5cbfd3606a54c6fd690f50bd61e1c1',
      },
    ],
    [
      'v2, docker nested in a pod container, which names the inner container',
      1012,
      {
        path:
          '/kubepods/besteffort/pod11111111-2222-4333-8444-555555555555/' +
          'dbc8aee0dde1e93eb75070f216f39d320b338b9f165dc303ba9f6e77fea526d8/docker/' +
          '8293f3c131a6d756b9b8e3f80501c31b5b395779ad959b538f3ff96a5d9dd52f',
        version: 'v2',
        containerId: '8293f3c131a6d756b9b8e3f80501c31b5b395779ad959b538f3ff96a5d9dd52f',
        podUid: '11111111-2222-4333-8444-555555555555',
      },
    ],
    [
      'v2, the cri-o conmon scope, which is not the container',
      1013,
      {
        path:
          '/kubepods.slice/kubepods-besteffort.slice/' +
          'kubepods-besteffort-pod0c1d2e3f_4a5b_4c6d_8e7f_9a0b1c2d3e4f.slice/' +
          'crio-conmon-c64064614423cb790e88b3e5492ff5ccf673b25ae823089f7a60c65cda24d809.scope',
        version: 'v2',
        podUid: '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f',
      },
    ],
    [
      'v2, a path containing a colon',
      1015,
      { path: '/system.slice/app:worker.service', version: 'v2' },
    ],
  ]

  test.each(cases)('reads %s', (_, pid, expected) => {
    expect(readCgroup(pid, { procRoot: PARSE_ROOT })).toEqual(expected)
  })

  test('throws a parse error naming the file for a malformed line', () => {
    const read = () => readCgroup(1014, { procRoot: PARSE_ROOT })

    expect(read).toThrow(ProcfsError)
    expect(read).toThrow(`parse ${join(PARSE_ROOT, '1014', 'cgroup')}: malformed cgroup line`)
  })

  test('throws with code ENOENT for a process that does not exist', () => {
    let caught: unknown
    try {
      readCgroup(9999, { procRoot: PARSE_ROOT })
    } catch (error) {
      caught = error
    }

    expect(caught).toBeInstanceOf(ProcfsError)
    expect((caught as ProcfsError).code).toBe('ENOENT')
    expect((caught as ProcfsError).call).toBe('read')
  })
})

describe('readProcStat on fixture files', () => {
  test('reads CPU and start times past a comm with spaces and parentheses', () => {
    expect(readProcStat(2001, { procRoot: PARSE_ROOT })).toEqual({
      utimeTicks: 1234,
      stimeTicks: 567,
      startTimeTicks: 89012,
    })
  })

  test('throws a parse error for a stat line cut short', () => {
    const read = () => readProcStat(2002, { procRoot: PARSE_ROOT })

    expect(read).toThrow(ProcfsError)
    expect(read).toThrow("field 14 is '', not a count")
  })
})

describe('findBpffsMounts on a fixture mountinfo', () => {
  test('lists bpf mounts once each, decoding escaped characters', () => {
    expect(findBpffsMounts({ procRoot: hostRoot })).toEqual(['/sys/fs/bpf', '/run/tool pins'])
  })
})

describe('walkPins on a scratch tree', () => {
  const known: Record<string, PinIdentity> = {
    'tetragon/prog_exec': { kind: 'prog', id: 11 },
    'tetragon/maps/events': { kind: 'map', id: 21 },
    link_exec: { kind: 'link', id: 31 },
  }

  function walk() {
    const asked: string[] = []
    const result = walkPins([pinRoot, join(scratch, 'no-such-bpffs')], (path) => {
      const relative = path.slice(pinRoot.length + 1)
      asked.push(relative)
      if (relative === 'broken') throw new Error('bpf_obj_get: EPERM')
      if (relative.endsWith('at_limit')) return { kind: 'map', id: 77 }
      return known[relative] ?? null
    })
    return { asked, result }
  }

  test('reports identified files with their kind and id, depth first in name order', () => {
    const { result } = walk()

    expect(
      result.pins.map((pin) => [pin.path.slice(pinRoot.length + 1), pin.kind, pin.id])
    ).toEqual([
      [[...DEEP_DIRS.slice(0, MAX_PIN_DEPTH), 'at_limit'].join('/'), 'map', 77],
      ['link_exec', 'link', 31],
      ['tetragon/maps/events', 'map', 21],
      ['tetragon/prog_exec', 'prog', 11],
    ])
  })

  test('never follows or identifies symlinks', () => {
    const { asked } = walk()

    expect(asked.some((path) => path.startsWith('alias') || path.startsWith('dirlink'))).toBe(false)
  })

  test('counts a throwing identify, a missing mount and a directory past the depth bound', () => {
    const { asked, result } = walk()

    expect(result.skipped).toBe(3)
    expect(asked.some((path) => path.endsWith('too_deep'))).toBe(false)
    expect(asked).toContain('notes')
  })
})

describe('on this machine', () => {
  test('scanBpfHolders walks the real /proc without throwing', () => {
    const index = scanBpfHolders()

    // The scan's own readdir fd is listed and closed before it is read, so at least one skip.
    expect(index.skipped).toBeGreaterThan(0)
    for (const owners of [...index.progs.values(), ...index.maps.values()]) {
      for (const owner of owners) expect(owner.fds.length).toBeGreaterThan(0)
    }
    for (const { pid, fd } of index.perfEventFds) expect(pid > 0 && fd >= 0).toBe(true)
  })

  test('readCgroup of this process gives a path and the version the mounts imply', () => {
    // The mounts are a source independent of /proc/self/cgroup: v1 hierarchies are mounted as
    // type cgroup, the unified one as cgroup2.
    const types = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' - ')[1]?.split(' ')[0])
    const v1 = types.includes('cgroup')
    const v2 = types.includes('cgroup2')
    const expected = v1 && v2 ? 'hybrid' : v2 ? 'v2' : 'v1'

    const cgroup = readCgroup(process.pid)

    expect(cgroup.path.startsWith('/')).toBe(true)
    expect(cgroup.version).toBe(expected)
  })

  test('readProcStat of this process gives a start time and growing CPU time', () => {
    const before = readProcStat(process.pid)
    const until = performance.now() + 50
    while (performance.now() < until) {
      // Burn CPU so the tick counters can move.
    }
    const after = readProcStat(process.pid)

    expect(before.startTimeTicks).toBeGreaterThan(0)
    expect(after.startTimeTicks).toBe(before.startTimeTicks)
    expect(after.utimeTicks + after.stimeTicks).toBeGreaterThanOrEqual(
      before.utimeTicks + before.stimeTicks
    )
  })

  test('clockTicksPerSecond agrees with getconf CLK_TCK', () => {
    const getconf = Bun.spawnSync(['getconf', 'CLK_TCK'])

    expect(getconf.exitCode).toBe(0)
    expect(clockTicksPerSecond()).toBe(Number(getconf.stdout.toString().trim()))
  })

  test('findBpffsMounts reads the real mountinfo', () => {
    const mounts = findBpffsMounts()

    for (const mount of mounts) expect(mount.startsWith('/')).toBe(true)
  })
})
