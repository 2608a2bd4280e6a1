import { Database } from 'bun:sqlite'
import { afterAll, describe, expect, test } from 'bun:test'
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { MicroReport } from '../agent/bench/report.ts'
import {
  APPLICATION_ID,
  DB_FILE,
  INTERRUPTED_ERROR,
  RunStore,
  SCHEMA_VERSION,
  StoreError,
  type RunMeta,
} from '../agent/store.ts'
import { bunExe, root } from './helpers.ts'

const tmp = mkdtempSync(join(tmpdir(), 'hm-store-'))
let dirs = 0

afterAll(() => rmSync(tmp, { recursive: true, force: true }))

function freshDir(): string {
  return join(tmp, `store-${++dirs}`)
}

const META: RunMeta = {
  iterations: 10000,
  binary: '/usr/bin/ls',
  args: ['-l', '/tmp'],
  warmup: 100,
  condition: 'no-policy',
  label: 'execsnoop on',
}

const quantiles = (p50: number) => ({
  p50,
  p95: p50 * 1.4,
  p99: p50 * 2.1,
  mean: p50 * 1.07,
  min: p50 * 0.62,
  max: p50 * 9.8,
})

function fixtureReport(id: number): MicroReport {
  return {
    run: {
      id,
      iterations: 10000,
      warmup: 100,
      binary: '/usr/bin/ls',
      args: ['-l', '/tmp'],
      condition: 'no-policy',
      label: 'execsnoop on',
      statsMode: 'fd',
      wallNs: 6_512_345_678,
      startedAt: '2026-09-01T10:15:30.123Z',
      node: 'worker-2',
      kernel: '6.12.38+deb13-amd64',
      version: '0.1.0',
    },
    latencyNs: quantiles(612_345.5),
    phasesNs: {
      forkToExecve: quantiles(48_210.25),
      execveToExec: quantiles(201_877),
      execToExit: quantiles(330_512.75),
    },
    probe: {
      policy: 'batched',
      seen: { ringbuf: 10000, perf: 10000 },
      lost: { ringbuf: 0, perf: 0 },
      deliveryNs: { ringbuf: { p50: 8_150, p99: 21_400 }, perf: { p50: 9_020, p99: 25_870 } },
    },
    delivery: {
      execs: 2000,
      binary: '/usr/bin/true',
      statsMode: 'fd',
      exitProgNoOutputNs: 412.5,
      mechanisms: {
        ringbuf: {
          deliveryNs: { p50: 8_150, p99: 21_400, mean: 9_310.2, samples: 2000 },
          deliveryHistogram: { le: [1e-5, 1e-4], buckets: [1500, 2000], sum: 0.0186, count: 2000 },
          exitProgNs: { perRecord: 1_630.4, batched: 702.1 },
          recordNs: { withWakeup: 1_217.9, withoutWakeup: 289.6 },
          wakeupNs: 928.3,
          batchSize: 64,
          received: { perRecord: 2000, batched: 2000 },
          lost: { perRecord: 0, batched: 0 },
        },
        perf: {
          deliveryNs: { p50: 9_020, p99: 25_870, mean: 10_044.8, samples: 2000 },
          deliveryHistogram: { le: [1e-5, 1e-4], buckets: [1400, 2000], sum: 0.0201, count: 2000 },
          exitProgNs: { perRecord: 1_905.7, batched: 811.4 },
          recordNs: { withWakeup: 1_493.2, withoutWakeup: 398.9 },
          wakeupNs: 1_094.3,
          batchSize: 64,
          received: { perRecord: 2000, batched: 1998 },
          lost: { perRecord: 0, batched: 2 },
        },
      },
    },
    idle: { windowNs: 6_500_000_000 },
    hooks: [
      {
        progId: 412,
        name: 'handle_exec',
        fullName: 'handle_exec',
        type: 'tracepoint',
        hook: 'syscalls:sys_enter_execve',
        tool: 'other',
        toolDetail: 'execsnoop',
        owners: [{ pid: 48121, comm: 'execsnoop', exe: '/usr/sbin/execsnoop' }],
        runs: 10003,
        runTimeNs: 14_204_260,
        nsPerRun: 1420,
        runsPerExec: 1.0001,
        nsPerExec: 1419.8,
        shareOfExec: 0.00232,
        own: false,
      },
      {
        progId: 415,
        name: 'hm_sched_proces',
        fullName: 'hm_sched_process_exit',
        type: 'raw_tracepoint',
        hook: 'sched_process_exit',
        tool: 'other',
        owners: [{ pid: 50007, comm: 'hookmeter', exe: '/usr/local/bin/hookmeter' }],
        runs: 0,
        runTimeNs: 0,
        nsPerRun: null,
        runsPerExec: 0,
        nsPerExec: 0,
        shareOfExec: 0,
        own: true,
      },
    ],
    owners: [
      {
        pid: 48121,
        comm: 'execsnoop',
        exe: '/usr/sbin/execsnoop',
        tool: 'other',
        cpuNsPerExec: 3_512.4,
        cpuNs: 35_124_000,
      },
    ],
    failures: 0,
    warnings: ['statistics were enabled through the sysctl by another tool'],
  }
}

/** Exec latencies around 0.6 ms with fractional ns, from a fixed seed so a failure repeats. */
function fixtureSamples(count: number): Float64Array {
  let state = 0x2545f491
  const samples = new Float64Array(count)
  for (let i = 0; i < count; i++) {
    state = (state * 1103515245 + 12345) >>> 0
    samples[i] = 550_000 + (state / 2 ** 32) * 150_000 + i / 7
  }
  return samples
}

function mismatches(a: Float64Array, b: Float64Array): number {
  let count = Math.abs(a.length - b.length)
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (!Object.is(a[i], b[i])) count++
  return count
}

function storeError(fn: () => unknown): StoreError {
  try {
    fn()
  } catch (e) {
    if (e instanceof StoreError) return e
    throw e
  }
  throw new Error('expected a StoreError, nothing was thrown')
}

/** A store with one finished run, closed again; returns the db file's path. */
function realStore(dir: string): string {
  using store = RunStore.open(dir)
  const id = store.createRun(META)
  store.finishRun(id, fixtureReport(id), fixtureSamples(10000))
  return store.path
}

describe('run store', () => {
  test('open creates the data directory with mode 0700 and the file with mode 0600', () => {
    const dir = join(freshDir(), 'nested', 'data')
    using store = RunStore.open(dir)
    store.createRun(META)

    expect(store.path).toBe(join(dir, DB_FILE))
    expect(statSync(dir).mode & 0o777).toBe(0o700)
    expect(statSync(store.path).mode & 0o777).toBe(0o600)
    expect(statSync(`${store.path}-wal`).mode & 0o777).toBe(0o600)

    using raw = new Database(store.path, { readonly: true })
    expect(raw.query('PRAGMA journal_mode').values()).toEqual([['wal']])
    expect(raw.query('PRAGMA application_id').values()).toEqual([[APPLICATION_ID]])
    expect(raw.query('PRAGMA user_version').values()).toEqual([[SCHEMA_VERSION]])
  })

  test('the directory is 0700 and the files 0600 even under a umask that takes owner bits', () => {
    const dir = freshDir()
    const umask = process.umask(0o277)
    try {
      using store = RunStore.open(dir)
      store.createRun(META)

      expect(statSync(dir).mode & 0o777).toBe(0o700)
      expect(statSync(store.path).mode & 0o777).toBe(0o600)
      expect(statSync(`${store.path}-wal`).mode & 0o777).toBe(0o600)
    } finally {
      process.umask(umask)
    }
  })

  test('a finished run reads back with the same report and the same 10,000 samples', () => {
    using store = RunStore.open(freshDir())
    const id = store.createRun(META)
    const report = fixtureReport(id)
    const samples = fixtureSamples(10000)
    store.finishRun(id, report, samples)

    const run = store.getRun(id)
    expect(run).not.toBeNull()
    expect(run!.id).toBe(id)
    expect(run!.status).toBe('done')
    expect(run!.error).toBeNull()
    expect(new Date(run!.createdAt).toISOString()).toBe(run!.createdAt)
    expect(run!.report).toStrictEqual(report)
    expect(run!.samples).toBeInstanceOf(Float64Array)
    expect(run!.samples.length).toBe(10000)
    expect(mismatches(run!.samples, samples)).toBe(0)
  })

  test('samples are stored as little-endian float64 bytes', () => {
    using store = RunStore.open(freshDir())
    const id = store.createRun(META)
    const samples = fixtureSamples(10000)
    store.finishRun(id, fixtureReport(id), samples)

    using raw = new Database(store.path, { readonly: true })
    const row = raw
      .query<{ latency: Uint8Array }, [number]>('SELECT latency FROM samples WHERE run_id = ?')
      .get(id)
    expect(row!.latency.byteLength).toBe(80000)
    const view = new DataView(row!.latency.buffer, row!.latency.byteOffset, 80000)
    const decoded = Float64Array.from({ length: 10000 }, (_, i) => view.getFloat64(i * 8, true))
    expect(mismatches(decoded, samples)).toBe(0)
  })

  test('runs are listed newest first with their summary fields', () => {
    using store = RunStore.open(freshDir())
    const done = store.createRun(META)
    store.finishRun(done, fixtureReport(done), fixtureSamples(10))
    const failed = store.createRun({ ...META, condition: 'baseline', label: null, args: [] })
    store.failRun(failed, 'failed', 'posix_spawn /usr/bin/ls: EAGAIN')
    const running = store.createRun({ ...META, iterations: 50, condition: null })

    const runs = store.listRuns()
    expect(runs.map((r) => r.id)).toEqual([running, failed, done])
    expect(runs[2]).toMatchObject({
      id: done,
      status: 'done',
      iterations: 10000,
      binary: '/usr/bin/ls',
      condition: 'no-policy',
      label: 'execsnoop on',
      statsMode: 'fd',
      wallNs: 6_512_345_678,
      latencyP50: 612_345.5,
    })
    expect(runs[1]).toMatchObject({
      status: 'failed',
      condition: 'baseline',
      label: null,
      statsMode: null,
      wallNs: null,
      latencyP50: null,
    })
    expect(runs[0]).toMatchObject({ status: 'running', iterations: 50, condition: null })
    expect(runs[0]!.finishedAt).toBeNull()
    expect(runs[2]!.finishedAt).not.toBeNull()
    expect(runs[2]!.createdAt <= runs[0]!.createdAt).toBe(true)

    expect(store.listRuns({ limit: 2 }).map((r) => r.id)).toEqual([running, failed])
    expect(() => store.listRuns({ limit: 0 })).toThrow(RangeError)
  })

  test('failRun records the status and the error of a running run only', () => {
    using store = RunStore.open(freshDir())
    const failed = store.createRun(META)
    const aborted = store.createRun(META)
    store.failRun(failed, 'failed', 'attach hm_sched_process_exit: EPERM')
    store.failRun(aborted, 'aborted', 'SIGTERM')

    expect(store.getRun(failed)).toMatchObject({
      status: 'failed',
      error: 'attach hm_sched_process_exit: EPERM',
      report: null,
    })
    expect(store.getRun(failed)!.samples.length).toBe(0)
    expect(store.getRun(aborted)).toMatchObject({ status: 'aborted', error: 'SIGTERM' })

    const again = storeError(() => store.failRun(failed, 'aborted', 'late'))
    expect(again.kind).toBe('not-running')
    expect(again.message).toContain(`run ${failed} is failed, not running`)
    expect(store.getRun(failed)!.error).toBe('attach hm_sched_process_exit: EPERM')
  })

  test('finishRun of an ended or unknown run throws and stores no samples', () => {
    using store = RunStore.open(freshDir())
    const failed = store.createRun(META)
    store.failRun(failed, 'failed', 'boom')

    const ended = storeError(() =>
      store.finishRun(failed, fixtureReport(failed), fixtureSamples(5))
    )
    expect(ended.kind).toBe('not-running')
    const unknown = storeError(() => store.finishRun(999, fixtureReport(999), fixtureSamples(5)))
    expect(unknown.kind).toBe('no-such-run')
    expect(unknown.message).toBe(`${store.path}: finish run 999: no run 999`)
    expect(store.getRun(failed)).toMatchObject({ status: 'failed', report: null })

    using raw = new Database(store.path, { readonly: true })
    expect(raw.query('SELECT count(*) FROM samples').values()).toEqual([[0]])
  })

  test('finishRun refuses a report of another run or with a non-finite number', () => {
    using store = RunStore.open(freshDir())
    const id = store.createRun(META)

    const other = storeError(() => store.finishRun(id, fixtureReport(id + 1), fixtureSamples(5)))
    expect(other.kind).toBe('invalid')
    const report = fixtureReport(id)
    report.hooks[0]!.shareOfExec = Number.NaN
    const nan = storeError(() => store.finishRun(id, report, fixtureSamples(5)))
    expect(nan.kind).toBe('invalid')
    expect(nan.message).toContain("'shareOfExec' is NaN")
    expect(store.getRun(id)!.status).toBe('running')
  })

  test('markInterrupted aborts the runs of a process that died and leaves live ones', async () => {
    const dir = freshDir()
    using store = RunStore.open(dir)
    const ours = store.createRun(META)

    // another hookmeter process that starts a run and then is killed in the middle of it
    const code = `
      import { RunStore } from './agent/store.ts'
      const store = RunStore.open(${JSON.stringify(dir)})
      console.log(store.createRun({ iterations: 10, binary: '/usr/bin/true', args: [],
        warmup: 0, condition: null, label: 'child' }))
      setInterval(() => {}, 1000)
    `
    const child = Bun.spawn([bunExe, '-e', code], { cwd: root, stdout: 'pipe', stderr: 'pipe' })
    const reader = child.stdout.getReader()
    const { value } = await reader.read()
    const theirs = Number(new TextDecoder().decode(value).trim())
    expect(theirs).toBe(ours + 1)

    expect(store.markInterrupted()).toBe(0)
    expect(store.getRun(theirs)!.status).toBe('running')

    child.kill('SIGKILL')
    await child.exited

    expect(store.markInterrupted()).toBe(1)
    expect(store.getRun(theirs)).toMatchObject({ status: 'aborted', error: INTERRUPTED_ERROR })
    expect(store.getRun(ours)).toMatchObject({ status: 'running', error: null })
    expect(store.markInterrupted()).toBe(0)
  })

  test('markInterrupted aborts a run whose pid was reused or whose node rebooted', () => {
    using store = RunStore.open(freshDir())
    const ours = store.createRun(META)
    const reused = store.createRun(META)
    const rebooted = store.createRun(META)
    {
      // the owner columns as another process with our pid, and one before a reboot, left them
      using raw = new Database(store.path)
      raw.run('UPDATE runs SET owner_start_ticks = owner_start_ticks - 1 WHERE id = ?', [reused])
      raw.run("UPDATE runs SET owner_boot_id = 'an-earlier-boot' WHERE id = ?", [rebooted])
    }

    expect(store.markInterrupted()).toBe(2)
    expect(store.getRun(ours)!.status).toBe('running')
    expect(store.getRun(reused)!.status).toBe('aborted')
    expect(store.getRun(rebooted)!.status).toBe('aborted')
  })

  test('a new store on the same directory sees the runs of the old one', () => {
    const dir = freshDir()
    let first: number
    {
      using store = RunStore.open(dir)
      first = store.createRun(META)
      store.finishRun(first, fixtureReport(first), fixtureSamples(10000))
      store.createRun(META)
    }

    using store = RunStore.open(dir)
    expect(store.listRuns().map((r) => r.status)).toEqual(['running', 'done'])
    expect(store.getRun(first)!.report).toStrictEqual(fixtureReport(first))
    expect(mismatches(store.getRun(first)!.samples, fixtureSamples(10000))).toBe(0)
    expect(store.createRun(META)).toBe(first + 2)
  })

  test('an empty file becomes a new store', () => {
    const dir = freshDir()
    RunStore.open(dir).close()
    rmSync(join(dir, DB_FILE))
    writeFileSync(join(dir, DB_FILE), '')

    using store = RunStore.open(dir)
    const id = store.createRun(META)
    expect(store.getRun(id)!.status).toBe('running')
  })

  test('a file that is not a database is refused and left as it was', () => {
    const dir = freshDir()
    RunStore.open(dir).close()
    const path = join(dir, DB_FILE)
    const text = '{"runs": "this is not a database"}\n'.repeat(300)
    writeFileSync(path, text)

    const err = storeError(() => RunStore.open(dir))
    expect(err.kind).toBe('not-a-database')
    expect(err.path).toBe(path)
    expect(err.message).toBe(
      `${path} is not an SQLite database (file is not a database); ` +
        'move it away or choose another --data-dir'
    )
    expect(readFileSync(path, 'utf8')).toBe(text)
    expect(existsSync(`${path}-wal`)).toBe(false)
  })

  test('an sqlite database of another application is refused and left as it was', () => {
    const dir = freshDir()
    RunStore.open(dir).close()
    const path = join(dir, DB_FILE)
    rmSync(path)
    {
      using foreign = new Database(path)
      foreign.run('CREATE TABLE foo (bar TEXT)')
      foreign.run("INSERT INTO foo VALUES ('keep me')")
    }
    const before = readFileSync(path)

    const err = storeError(() => RunStore.open(dir))
    expect(err.kind).toBe('foreign')
    expect(err.path).toBe(path)
    expect(err.message).toBe(
      `${path} is not a hookmeter store (application_id 0x0, expected 0x686d7472); ` +
        'move it away or choose another --data-dir'
    )
    expect(readFileSync(path).equals(before)).toBe(true)
    using raw = new Database(path, { readonly: true })
    expect(raw.query('SELECT name FROM sqlite_schema').values()).toEqual([['foo']])
  })

  test('an empty sqlite database with another application id is refused', () => {
    const dir = freshDir()
    RunStore.open(dir).close()
    const path = join(dir, DB_FILE)
    rmSync(path)
    {
      using foreign = new Database(path)
      foreign.run('PRAGMA application_id = 0x12345678')
    }

    const err = storeError(() => RunStore.open(dir))
    expect(err.kind).toBe('foreign')
    expect(err.message).toContain('application_id 0x12345678, expected 0x686d7472')
  })

  test('a store of a newer schema version is refused and left as it was', () => {
    const dir = freshDir()
    const path = realStore(dir)
    {
      using raw = new Database(path)
      raw.run(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`)
    }

    const err = storeError(() => RunStore.open(dir))
    expect(err.kind).toBe('newer-schema')
    expect(err.path).toBe(path)
    expect(err.message).toBe(
      `${path} was written by a newer hookmeter (schema version ${SCHEMA_VERSION + 1}, this one ` +
        `knows up to ${SCHEMA_VERSION}); run a newer hookmeter or choose another --data-dir`
    )
    using raw = new Database(path, { readonly: true })
    expect(raw.query('PRAGMA user_version').values()).toEqual([[SCHEMA_VERSION + 1]])
  })

  test('a store damaged in the middle is refused on open with an error naming the file', () => {
    const dir = freshDir()
    const path = realStore(dir)
    // the runs table's root page follows the header page; with the WAL folded in, it is on disk
    expect(existsSync(`${path}-wal`)).toBe(false)
    expect(statSync(path).size).toBeGreaterThan(3 * 4096)
    const fd = openSync(path, 'r+')
    writeSync(fd, Buffer.alloc(4096, 0xff), 0, 4096, 4096)
    closeSync(fd)

    const err = storeError(() => RunStore.open(dir))
    expect(err.kind).toBe('corrupt')
    expect(err.path).toBe(path)
    expect(err.message).toStartWith(`${path} is damaged (`)
    expect(err.message).toContain('malformed')
    expect(err.message).toEndWith('or choose another --data-dir')
  })

  test('a data directory path taken by a file is refused', () => {
    const file = join(tmp, 'not-a-dir')
    writeFileSync(file, 'x')

    const err = storeError(() => RunStore.open(file))
    expect(err.kind).toBe('io')
    expect(err.path).toBe(file)
    expect(err.message).toContain(`cannot create data directory ${file}: a file is in the way`)
  })

  test('close is idempotent and a closed store throws a store error', () => {
    const store = RunStore.open(freshDir())
    store.close()
    store.close()
    store[Symbol.dispose]()

    const err = storeError(() => store.listRuns())
    expect(err.kind).toBe('closed')
    expect(err.message).toBe(`${store.path}: list runs: the store is closed`)
  })

  test('getRun of an unknown id is null', () => {
    using store = RunStore.open(freshDir())
    const id = store.createRun(META)
    expect(store.getRun(id + 1)).toBeNull()
    expect(store.getRun(0)).toBeNull()
  })
})
