/**
 * The run store: benchmark runs, their reports and their samples, in one SQLite file
 * (`<dataDir>/hookmeter.db`) through bun:sqlite.
 *
 * The file is marked as ours with `PRAGMA application_id` and versioned with `PRAGMA user_version`.
 * A file that is not SQLite, that another application wrote, that a newer hookmeter wrote or that
 * is damaged is refused with a {@link StoreError}; the store never resets or rewrites such a file.
 * Only a missing file, an empty file or an SQLite file with nothing in it becomes a new store.
 *
 * Lifecycle: {@link RunStore.open} returns an open store that the caller closes (`close()` or
 * `using`). Several processes may hold the same store: WAL mode lets readers go on while one
 * writes, and a writer waits up to 5 s for another's lock.
 *
 * @module
 */
import { Database, SQLiteError } from 'bun:sqlite'
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

import type { Condition, MicroReport, RunStatus, StoredRun } from './bench/report.ts'
import { readProcStat } from './procfs.ts'

export const DB_FILE = 'hookmeter.db'

/** 'hmtr' in ASCII: marks an SQLite file as a hookmeter store. */
export const APPLICATION_ID = 0x686d7472

/** What each kind of StoreError means for the caller. */
export type StoreErrorKind =
  /** the directory or file could not be created or opened */
  | 'io'
  /** the file is not an SQLite database */
  | 'not-a-database'
  /** an SQLite database of another application */
  | 'foreign'
  /** written by a newer hookmeter with a schema this one does not know */
  | 'newer-schema'
  /** SQLite found the file damaged */
  | 'corrupt'
  /** another process held the store locked for longer than the busy timeout */
  | 'busy'
  /** a value the store cannot keep as given */
  | 'invalid'
  | 'no-such-run'
  /** the run already ended; only a running run can be finished or failed */
  | 'not-running'
  | 'closed'

/** The store failed or refused; the message names the file and, where there is one, the remedy. */
export class StoreError extends Error {
  override readonly name = 'StoreError'

  constructor(
    readonly kind: StoreErrorKind,
    /** the store's file, or its directory when that is what failed */
    readonly path: string,
    message: string,
    options?: { cause?: unknown }
  ) {
    super(message, options)
  }
}

export interface RunMeta {
  iterations: number
  binary: string
  args: string[]
  warmup: number
  condition: Condition | null
  label: string | null
}

export interface RunSummary {
  id: number
  status: RunStatus
  createdAt: string
  /** when the run became done, failed or aborted; null while running */
  finishedAt: string | null
  iterations: number
  binary: string
  condition: Condition | null
  label: string | null
  /** from the report; null until the run is done */
  statsMode: string | null
  wallNs: number | null
  latencyP50: number | null
}

export const INTERRUPTED_ERROR = 'agent stopped before the run finished'

const BUSY_TIMEOUT_MS = 5000
const REMEDY = 'move it away or choose another --data-dir'

/**
 * The schema, as the steps that take a store from user_version i to i + 1. A released step is
 * never edited: a change is a new step, so that every older store can be brought forward.
 *
 * The samples sit in their own table so that listing runs never reads the blobs. The owner
 * columns say which process created a run, so that a restarted agent can tell a run whose process
 * died from one that another live process is still running.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE runs (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     created_at TEXT NOT NULL,
     finished_at TEXT,
     status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'aborted')),
     iterations INTEGER NOT NULL CHECK (iterations > 0),
     warmup INTEGER NOT NULL CHECK (warmup >= 0),
     binary TEXT NOT NULL,
     args TEXT NOT NULL CHECK (json_valid(args) AND json_type(args) = 'array'),
     condition TEXT CHECK (condition IN ('baseline', 'no-policy', 'policy')),
     label TEXT,
     stats_mode TEXT,
     wall_ns REAL,
     latency_p50 REAL,
     report TEXT CHECK (json_valid(report)),
     error TEXT,
     owner_pid INTEGER NOT NULL,
     owner_start_ticks INTEGER,
     owner_boot_id TEXT,
     CHECK (status <> 'done' OR report IS NOT NULL),
     CHECK (status NOT IN ('failed', 'aborted') OR error IS NOT NULL)
   ) STRICT;
   CREATE TABLE samples (
     run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
     latency BLOB NOT NULL CHECK (length(latency) % 8 = 0)
   ) STRICT;`,
]

export const SCHEMA_VERSION = MIGRATIONS.length

interface Identity {
  applicationId: number
  userVersion: number
  objects: number
}

interface Owner {
  pid: number
  startTicks: number | null
  bootId: string | null
}

interface RunRow {
  id: number
  status: RunStatus
  created_at: string
  finished_at: string | null
  iterations: number
  binary: string
  condition: Condition | null
  label: string | null
  stats_mode: string | null
  wall_ns: number | null
  latency_p50: number | null
}

interface FullRunRow {
  id: number
  status: RunStatus
  created_at: string
  report: string | null
  error: string | null
  latency: Uint8Array | null
}

const SUMMARY_COLUMNS = `id, status, created_at, finished_at, iterations, binary, condition, label,
  stats_mode, wall_ns, latency_p50`

/** Benchmark runs in `<dataDir>/hookmeter.db`. Close it when done; close() is idempotent. */
export class RunStore implements Disposable {
  #db: Database | null

  private constructor(
    readonly path: string,
    db: Database
  ) {
    this.#db = db
  }

  /**
   * Opens the store in `dataDir`, creating the directory (0700) and the file (0600) when missing,
   * and the schema in a new or empty file. Throws {@link StoreError} for a file that is not a
   * hookmeter store, is from a newer hookmeter, or fails SQLite's quick_check.
   */
  static open(dataDir: string): RunStore {
    const dir = resolve(dataDir)
    const path = join(dir, DB_FILE)
    ensureDir(dir)
    ensureFile(path)

    let db: Database
    try {
      db = new Database(path, { readwrite: true, create: false, strict: true })
    } catch (e) {
      throw wrapError(path, 'open', e)
    }

    try {
      prepare(db, path)
    } catch (e) {
      db.close()
      throw wrapError(path, 'open', e)
    }
    return new RunStore(path, db)
  }

  /** Records a new run as 'running' and returns its id. */
  createRun(meta: RunMeta): number {
    const owner = currentOwner()
    return this.#use('create run', (db) => {
      const { lastInsertRowid } = db
        .query(
          `INSERT INTO runs (created_at, status, iterations, warmup, binary, args, condition, label,
             owner_pid, owner_start_ticks, owner_boot_id)
           VALUES ($createdAt, 'running', $iterations, $warmup, $binary, $args, $condition, $label,
             $pid, $startTicks, $bootId)`
        )
        .run({
          createdAt: new Date().toISOString(),
          iterations: meta.iterations,
          warmup: meta.warmup,
          binary: meta.binary,
          args: JSON.stringify(meta.args),
          condition: meta.condition,
          label: meta.label,
          pid: owner.pid,
          startTicks: owner.startTicks,
          bootId: owner.bootId,
        })
      return Number(lastInsertRowid)
    })
  }

  /**
   * Stores the report and the per-exec latencies (ns, loop order) of a running run and marks it
   * done, all in one transaction. `report.run.id` must be `id`, and every number in the report
   * finite, since JSON would turn NaN and Infinity into null.
   */
  finishRun(id: number, report: MicroReport, samples: Float64Array): void {
    const what = `finish run ${id}`
    if (report.run.id !== id) {
      throw new StoreError(
        'invalid',
        this.path,
        `${this.path}: ${what}: the report is of run ${report.run.id}`
      )
    }
    const json = reportJson(this.path, what, report)
    const blob = encodeSamples(samples)

    this.#use(what, (db) => {
      db.transaction(() => {
        this.#end(db, id, what, {
          status: 'done',
          report: json,
          error: null,
          statsMode: report.run.statsMode,
          wallNs: report.run.wallNs,
          latencyP50: report.latencyNs.p50,
        })
        db.query('INSERT INTO samples (run_id, latency) VALUES ($id, $blob)').run({ id, blob })
      }).immediate()
    })
  }

  /** Marks a running run failed or aborted, with the error that ended it. */
  failRun(id: number, status: 'failed' | 'aborted', error: string): void {
    const what = `mark run ${id} ${status}`
    this.#use(what, (db) => {
      db.transaction(() => {
        this.#end(db, id, what, {
          status,
          report: null,
          error,
          statsMode: null,
          wallNs: null,
          latencyP50: null,
        })
      }).immediate()
    })
  }

  /** The run with its report and samples, or null when there is no run with this id. */
  getRun(id: number): StoredRun | null {
    const what = `read run ${id}`
    return this.#use(what, (db) => {
      const row = db
        .query<FullRunRow, { id: number }>(
          `SELECT r.id, r.status, r.created_at, r.report, r.error, s.latency
           FROM runs r LEFT JOIN samples s ON s.run_id = r.id
           WHERE r.id = $id`
        )
        .get({ id })
      if (!row) return null

      let report: MicroReport | null = null
      if (row.report !== null) {
        try {
          report = JSON.parse(row.report) as MicroReport
        } catch (e) {
          throw corruptError(this.path, `the report of run ${id} is not JSON`, e)
        }
      }
      return {
        id: row.id,
        status: row.status,
        createdAt: row.created_at,
        report,
        error: row.error,
        samples: row.latency ? decodeSamples(row.latency) : new Float64Array(0),
      }
    })
  }

  /** Runs without their reports and samples, newest first; all of them unless `limit` is given. */
  listRuns(opts: { limit?: number } = {}): RunSummary[] {
    const limit = opts.limit ?? -1
    if (opts.limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) {
      throw new RangeError(`listRuns: limit must be a positive integer, got ${opts.limit}`)
    }

    return this.#use('list runs', (db) =>
      db
        .query<RunRow, { limit: number }>(
          `SELECT ${SUMMARY_COLUMNS} FROM runs ORDER BY id DESC LIMIT $limit`
        )
        .all({ limit })
        .map(summary)
    )
  }

  /**
   * Marks as aborted every run still 'running' whose process is gone: the process that created it
   * has exited, or the node rebooted since. Runs of live processes, this one included, are left
   * alone. Returns how many runs were marked.
   */
  markInterrupted(): number {
    return this.#use('mark interrupted runs', (db) =>
      db
        .transaction(() => {
          const running = db
            .query<{ id: number } & OwnerColumns, []>(
              `SELECT id, owner_pid, owner_start_ticks, owner_boot_id FROM runs
               WHERE status = 'running'`
            )
            .all()
          const stopped = running.filter((row) => !ownerAlive(row))
          for (const row of stopped) {
            this.#end(db, row.id, `mark run ${row.id} aborted`, {
              status: 'aborted',
              report: null,
              error: INTERRUPTED_ERROR,
              statsMode: null,
              wallNs: null,
              latencyP50: null,
            })
          }
          return stopped.length
        })
        .immediate()
    )
  }

  close(): void {
    const db = this.#db
    if (!db) return
    this.#db = null
    try {
      db.close(true)
    } catch (e) {
      throw wrapError(this.path, 'close', e)
    }
  }

  [Symbol.dispose](): void {
    this.close()
  }

  #use<T>(what: string, fn: (db: Database) => T): T {
    const db = this.#db
    if (!db) throw new StoreError('closed', this.path, `${this.path}: ${what}: the store is closed`)
    try {
      return fn(db)
    } catch (e) {
      throw wrapError(this.path, what, e)
    }
  }

  #end(
    db: Database,
    id: number,
    what: string,
    end: {
      status: Exclude<RunStatus, 'running'>
      report: string | null
      error: string | null
      statsMode: string | null
      wallNs: number | null
      latencyP50: number | null
    }
  ): void {
    const { changes } = db
      .query(
        `UPDATE runs SET status = $status, finished_at = $finishedAt, report = $report,
           error = $error, stats_mode = $statsMode, wall_ns = $wallNs, latency_p50 = $latencyP50
         WHERE id = $id AND status = 'running'`
      )
      .run({ id, finishedAt: new Date().toISOString(), ...end })
    if (changes === 1) return

    const row = db
      .query<{ status: RunStatus }, { id: number }>('SELECT status FROM runs WHERE id = $id')
      .get({ id })
    if (!row) throw new StoreError('no-such-run', this.path, `${this.path}: ${what}: no run ${id}`)
    throw new StoreError(
      'not-running',
      this.path,
      `${this.path}: ${what}: run ${id} is ${row.status}, not running`
    )
  }
}

interface OwnerColumns {
  owner_pid: number
  owner_start_ticks: number | null
  owner_boot_id: string | null
}

function ensureDir(dir: string): void {
  try {
    // recursive mkdir returns the first directory it made, undefined when dir already existed
    if (mkdirSync(dir, { recursive: true, mode: 0o700 }) !== undefined) chmodSync(dir, 0o700)
  } catch (e) {
    const code = errnoCode(e)
    const why =
      code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : describeFsError(e)
    throw new StoreError(
      'io',
      dir,
      `cannot create data directory ${dir}: ${why}; choose another --data-dir`,
      { cause: e }
    )
  }
}

function ensureFile(path: string): void {
  try {
    // SQLite would create the file with 0644 under the usual umask; create it first with 0600
    closeSync(openSync(path, 'wx', 0o600))
    chmodSync(path, 0o600)
  } catch (e) {
    if (errnoCode(e) === 'EEXIST') return
    throw new StoreError('io', path, `cannot create ${path}: ${describeFsError(e)}`, { cause: e })
  }
}

function prepare(db: Database, path: string): void {
  db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`)

  // nothing may write to the file before it is known to be ours or new
  const fresh = checkIdentity(path, readIdentity(db))
  if (!fresh) quickCheck(db, path)

  const mode = db.query<{ journal_mode: string }, []>('PRAGMA journal_mode = WAL').get()
  if (mode?.journal_mode !== 'wal') {
    throw new StoreError(
      'io',
      path,
      `${path}: cannot use WAL journal mode (SQLite kept '${mode?.journal_mode}'); ` +
        'put --data-dir on a local filesystem'
    )
  }
  db.run('PRAGMA foreign_keys = ON')

  migrate(db, path)
}

function readIdentity(db: Database): Identity {
  const pragma = (name: string) =>
    Number(db.query<Record<string, number>, []>(`PRAGMA ${name}`).values()[0]?.[0] ?? 0)
  return {
    applicationId: pragma('application_id'),
    userVersion: pragma('user_version'),
    objects: Number(db.query('SELECT count(*) FROM sqlite_schema').values()[0]?.[0] ?? 0),
  }
}

/** True for a file that can become a new store; throws for one that is not ours to open. */
function checkIdentity(path: string, id: Identity): boolean {
  if (id.applicationId === 0 && id.userVersion === 0 && id.objects === 0) return true

  if (id.applicationId !== APPLICATION_ID) {
    throw new StoreError(
      'foreign',
      path,
      `${path} is not a hookmeter store (application_id ${hex(id.applicationId)}, expected ` +
        `${hex(APPLICATION_ID)}); ${REMEDY}`
    )
  }
  if (id.userVersion > SCHEMA_VERSION) {
    throw new StoreError(
      'newer-schema',
      path,
      `${path} was written by a newer hookmeter (schema version ${id.userVersion}, this one ` +
        `knows up to ${SCHEMA_VERSION}); run a newer hookmeter or choose another --data-dir`
    )
  }
  return false
}

function quickCheck(db: Database, path: string): void {
  let problems: string[]
  try {
    problems = db
      .query<{ quick_check: string }, []>('PRAGMA quick_check(3)')
      .values()
      .map((row) => String(row[0]))
  } catch (e) {
    // damage that SQLite meets while checking is thrown rather than listed
    throw wrapError(path, 'quick_check', e)
  }
  if (problems.length === 1 && problems[0] === 'ok') return
  throw corruptError(path, `quick_check: ${problems.join('; ')}`)
}

function migrate(db: Database, path: string): void {
  db.transaction(() => {
    // another process may have brought the store forward since the first look
    const id = readIdentity(db)
    checkIdentity(path, id)
    for (let version = id.userVersion; version < SCHEMA_VERSION; version++) {
      db.run(MIGRATIONS[version]!)
    }
    if (id.userVersion < SCHEMA_VERSION) {
      db.run(`PRAGMA application_id = ${APPLICATION_ID}`)
      db.run(`PRAGMA user_version = ${SCHEMA_VERSION}`)
    }
  }).immediate()
}

function summary(row: RunRow): RunSummary {
  return {
    id: row.id,
    status: row.status,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    iterations: row.iterations,
    binary: row.binary,
    condition: row.condition,
    label: row.label,
    statsMode: row.stats_mode,
    wallNs: row.wall_ns,
    latencyP50: row.latency_p50,
  }
}

function reportJson(path: string, what: string, report: MicroReport): string {
  return JSON.stringify(report, (key, value: unknown) => {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new StoreError(
        'invalid',
        path,
        `${path}: ${what}: report field '${key}' is ${value}; a stored report holds finite numbers`
      )
    }
    return value
  })
}

/** The samples as little-endian float64 bytes, whatever the host's byte order. */
function encodeSamples(samples: Float64Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 8)
  const view = new DataView(bytes.buffer)
  for (let i = 0; i < samples.length; i++) view.setFloat64(i * 8, samples[i]!, true)
  return bytes
}

function decodeSamples(bytes: Uint8Array): Float64Array {
  // the blob may start at any offset of its buffer, so it is read through a view, not reinterpreted
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const samples = new Float64Array(bytes.byteLength >>> 3)
  for (let i = 0; i < samples.length; i++) samples[i] = view.getFloat64(i * 8, true)
  return samples
}

function currentOwner(): Owner {
  return { pid: process.pid, startTicks: startTicksOf(process.pid), bootId: bootId() }
}

/**
 * Whether the process that created a run still runs. A pid alone could have been reused by
 * another process since, so its start time must match too, and the node must not have rebooted.
 */
function ownerAlive(row: OwnerColumns): boolean {
  const boot = bootId()
  if (row.owner_boot_id !== null && boot !== null && row.owner_boot_id !== boot) return false
  const start = startTicksOf(row.owner_pid)
  if (start === null) return false
  return row.owner_start_ticks === null || row.owner_start_ticks === start
}

function startTicksOf(pid: number): number | null {
  try {
    return readProcStat(pid).startTimeTicks
  } catch {
    return null
  }
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return null
  }
}

function corruptError(path: string, detail: string, cause?: unknown): StoreError {
  return new StoreError(
    'corrupt',
    path,
    `${path} is damaged (${detail}); move it away, keeping it to recover runs from, and start a ` +
      'new store, or choose another --data-dir',
    { cause }
  )
}

/** SQLite's error as a StoreError that names the file and the operation; others pass through. */
function wrapError(path: string, what: string, e: unknown): unknown {
  if (e instanceof StoreError || !(e instanceof SQLiteError)) return e

  // extended result codes keep the primary code in their low byte
  switch (e.errno & 0xff) {
    case 26 /* SQLITE_NOTADB */:
      return new StoreError(
        'not-a-database',
        path,
        `${path} is not an SQLite database (${e.message}); ${REMEDY}`,
        { cause: e }
      )
    case 11 /* SQLITE_CORRUPT */:
      return corruptError(path, `${what}: ${e.message}`, e)
    case 5 /* SQLITE_BUSY */:
      return new StoreError(
        'busy',
        path,
        `${path}: ${what}: another process held the store locked for over ` +
          `${BUSY_TIMEOUT_MS / 1000} s (${e.message})`,
        { cause: e }
      )
    case 19 /* SQLITE_CONSTRAINT */:
      return new StoreError('invalid', path, `${path}: ${what}: ${e.message}`, { cause: e })
    default:
      return new StoreError('io', path, `${path}: ${what}: ${e.message} (${e.code})`, { cause: e })
  }
}

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | null)?.code
}

function describeFsError(e: unknown): string {
  const err = e as NodeJS.ErrnoException
  return err.code ? `${err.code} (${err.message})` : String(e)
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`
}
