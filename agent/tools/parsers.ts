/**
 * Exec-event parsers for each tool's JSON output, one JSON document per line, and a counting
 * stream over them. The field layouts are from ../shared/ESST.md section 6 of each tool and the
 * tools' own documents named at each parser; the timestamp origins are ESST.md's.
 *
 * A line is one of three things: an exec event (returned), a valid record of the tool that is not
 * an exec event (`null`), or malformed (`EventParseError`). Nothing here logs; the caller logs the
 * errors and counts that {@link EventStream} keeps.
 *
 * @module
 */
import type { ExecEvent, KnownTool } from './types.ts'

/** How much of an offending line an {@link EventParseError} keeps. */
export const EXCERPT_LENGTH = 200

/** A line that is not a well-formed record of the tool's documented output. */
export class EventParseError extends Error {
  override readonly name = 'EventParseError'
  readonly tool: KnownTool
  /** what is wrong, in a few words, naming the field */
  readonly reason: string
  /** the line's first {@link EXCERPT_LENGTH} characters */
  readonly excerpt: string

  constructor(tool: KnownTool, reason: string, line: string, options?: { cause?: unknown }) {
    super(`${tool} event: ${reason}`, options)
    this.tool = tool
    this.reason = reason
    this.excerpt = line.slice(0, EXCERPT_LENGTH)
  }
}

type Json = null | boolean | number | bigint | string | Json[] | JsonObject
interface JsonObject {
  [key: string]: Json | undefined
}

const NS_PER_MS = 1_000_000n
const NS_PER_S = 1_000_000_000n

// epoch-nanosecond integers (Falco evt.time, Tracee v0.24.1 timestamp) have 19 digits, more than
// a double holds exactly; JSON.parse's source text (Bun supports it) keeps them whole
function keepBigIntegers(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value !== 'number' || Number.isSafeInteger(value)) return value
  const source = context?.source
  return source !== undefined && /^-?\d+$/.test(source) ? BigInt(source) : value
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?$/

/**
 * An RFC 3339 date-time as Unix epoch nanoseconds, or null when it is not one. Without a zone
 * the text is taken as UTC only when `zoneless` is 'utc'.
 */
export function rfc3339ToNs(text: string, zoneless: 'utc' | 'reject' = 'reject'): bigint | null {
  const m = RFC3339.exec(text)
  if (m === null) return null
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const zone = m[8]
  if (zone === undefined && zoneless === 'reject') return null
  if (year < 1970 || hour > 23 || minute > 59 || second > 59) return null

  const ms = Date.UTC(year, month - 1, day, hour, minute, second)
  const date = new Date(ms)
  // Date.UTC rolls 2026-02-31 over into March; a real date reads back unchanged
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return null

  let offsetMinutes = 0
  if (zone !== undefined && zone !== 'Z' && zone !== 'z') {
    const hours = Number(zone.slice(1, 3))
    const minutes = Number(zone.slice(4, 6))
    if (hours > 23 || minutes > 59) return null
    offsetMinutes = (zone.startsWith('-') ? -1 : 1) * (hours * 60 + minutes)
  }

  const fraction = BigInt((m[7] ?? '').padEnd(9, '0'))
  return BigInt(ms) * NS_PER_MS + fraction - BigInt(offsetMinutes) * 60n * NS_PER_S
}

/** Field access that names the field in the error when a line breaks the documented layout. */
class Reader {
  constructor(
    readonly tool: KnownTool,
    readonly line: string
  ) {}

  fail(reason: string): never {
    throw new EventParseError(this.tool, reason, this.line)
  }

  document(): JsonObject {
    let doc: Json
    try {
      doc = JSON.parse(this.line, keepBigIntegers) as Json
    } catch (cause) {
      throw new EventParseError(this.tool, 'not valid JSON', this.line, { cause })
    }
    if (!isObject(doc)) this.fail(`not a JSON object (${describe(doc)})`)
    return doc
  }

  /** the object at `key`, or undefined when absent or null */
  object(obj: JsonObject, key: string, path: string): JsonObject | undefined {
    const v = obj[key]
    if (v === undefined || v === null) return undefined
    if (!isObject(v)) this.fail(`${path} is ${describe(v)}, not an object`)
    return v
  }

  array(obj: JsonObject, key: string, path: string): Json[] | undefined {
    const v = obj[key]
    if (v === undefined || v === null) return undefined
    if (!Array.isArray(v)) this.fail(`${path} is ${describe(v)}, not an array`)
    return v
  }

  string(obj: JsonObject, key: string, path: string): string | undefined {
    const v = obj[key]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'string') this.fail(`${path} is ${describe(v)}, not a string`)
    return v
  }

  integer(obj: JsonObject, key: string, path: string): bigint | undefined {
    return this.integerValue(obj[key], path)
  }

  integerValue(v: Json | undefined, path: string): bigint | undefined {
    if (v === undefined || v === null) return undefined
    if (typeof v === 'bigint') return v
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      this.fail(`${path} is ${describe(v)}, not an integer`)
    }
    return BigInt(v)
  }

  /** a pid, given as a number or (protobuf wrapper) as {"value": number} */
  pid(obj: JsonObject, key: string, path: string): number | undefined {
    const v = obj[key]
    const wrapped = isObject(v) ? this.integer(v, 'value', `${path}.value`) : undefined
    const n = wrapped ?? this.integer(obj, key, path)
    if (n === undefined) return undefined
    if (n < 0n || n > 0xffff_ffffn) this.fail(`${path} is ${n}, not a pid`)
    return Number(n)
  }

  requireString(obj: JsonObject, key: string, path: string): string {
    const v = this.string(obj, key, path)
    if (v === undefined || v === '') this.fail(`no ${path}`)
    return v
  }

  time(text: string, path: string, zoneless: 'utc' | 'reject' = 'reject'): bigint {
    const ns = rfc3339ToNs(text, zoneless)
    if (ns === null) this.fail(`${path} is not an RFC 3339 timestamp`)
    return ns
  }

  epochNs(n: bigint, path: string): bigint {
    if (n < 0n) this.fail(`${path} is negative`)
    return n
  }
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function describe(v: Json | undefined): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'object') return 'an object'
  if (typeof v === 'bigint') return 'a number'
  return `a ${typeof v}`
}

function strings(r: Reader, values: Json[] | undefined, path: string): string[] {
  if (values === undefined) return []
  return values.map((v) => (typeof v === 'string' ? v : r.fail(`${path} holds ${describe(v)}`)))
}

function policyOf(names: string[]): string | null {
  return names.length === 0 ? null : names.join(',')
}

// the event oneof of GetEventsResponse (api/v1/tetragon/events.proto): process_exec,
// process_exit, process_kprobe, …, plus rate_limit_info and test
const TETRAGON_EVENT_KEY = /^(?:process_[a-z_]+|rate_limit_info|test)$/

// The hooks a TracingPolicy puts on exec: ESST.md Tetragon section 4 (security_bprm_check as a
// kprobe, bprm_check_security as an LSM hook), both with a linux_binprm argument.
const TETRAGON_EXEC_HOOKS = new Map([
  ['process_kprobe', 'security_bprm_check'],
  ['process_lsm', 'bprm_check_security'],
])

/**
 * Tetragon 1.7 JSON export (protojson with proto field names). Shape from
 * docs/content/en/docs/concepts/events.md (cilium/tetragon): `process_exec.process.binary`,
 * `.pid`, `.start_time`, top-level `node_name` and `time`; argument oneofs from
 * docs/content/en/docs/reference/grpc-api.md (`linux_binprm_arg.path`). `time` is present in every
 * event type. Time origin: kernel ktime in the exec program turned into wall clock against
 * CLOCK_MONOTONIC (ESST.md Tetragon section 6); the RFC 3339 `time` is used.
 */
function parseTetragon(r: Reader, doc: JsonObject): ExecEvent | null {
  const time = r.string(doc, 'time', 'time')
  if (time === undefined) r.fail('no time: not a tetragon event')
  if (!Object.keys(doc).some((k) => TETRAGON_EVENT_KEY.test(k) && isObject(doc[k]))) {
    r.fail('no process_* event object: not a tetragon event')
  }
  const timeNs = r.time(time, 'time')

  const exec = r.object(doc, 'process_exec', 'process_exec')
  if (exec !== undefined) {
    const process = r.object(exec, 'process', 'process_exec.process')
    if (process === undefined) r.fail('no process_exec.process')
    const binary = r.requireString(process, 'binary', 'process_exec.process.binary')
    const pid = r.pid(process, 'pid', 'process_exec.process.pid') ?? null
    return { tool: 'tetragon', binary, pid, timeNs, policy: null }
  }

  for (const [key, hook] of TETRAGON_EXEC_HOOKS) {
    const event = r.object(doc, key, key)
    if (event === undefined) continue
    if (r.string(event, 'function_name', `${key}.function_name`) !== hook) return null

    const args = r.array(event, 'args', `${key}.args`) ?? []
    let binary: string | undefined
    for (const [i, arg] of args.entries()) {
      if (!isObject(arg)) r.fail(`${key}.args[${i}] is ${describe(arg)}, not an object`)
      const binprm = r.object(arg, 'linux_binprm_arg', `${key}.args[${i}].linux_binprm_arg`)
      if (binprm === undefined) continue
      binary = r.string(binprm, 'path', `${key}.args[${i}].linux_binprm_arg.path`)
      break
    }
    if (binary === undefined || binary === '') r.fail(`no ${key}.args[].linux_binprm_arg.path`)

    const process = r.object(event, 'process', `${key}.process`)
    const pid = process === undefined ? null : (r.pid(process, 'pid', `${key}.process.pid`) ?? null)
    const policy = r.string(event, 'policy_name', `${key}.policy_name`) ?? null
    return { tool: 'tetragon', binary, pid, timeNs, policy: policy === '' ? null : policy }
  }

  return null
}

const KUBEARMOR_EXEC_SYSCALL = /(?:^|\s)syscall=SYS_EXECVE(?:AT)?(?:\s|$)/

/**
 * KubeArmor logs and alerts. `karmor logs --json` prints the gRPC Log/Alert messages with the
 * proto field names (PascalCase: kubearmor-client log/logClient.go marshals them one per line);
 * `-logPath` writes the agent's Go struct with camelCase tags (KubeArmor/types/types.go). Field
 * layout from getting-started/kubearmor-events.md: `Operation` "Process" for exec, `Data`
 * "syscall=SYS_EXECVE", `ProcessName` the executed path, `Resource` path plus arguments,
 * `PolicyName` on alerts. Time origin: user-space wall clock when the record is built
 * (ESST.md KubeArmor section 6): `UpdatedTime` (RFC 3339, microseconds, UTC, shown without a zone
 * in some docs) is used, else `Timestamp` (Unix seconds).
 */
function parseKubeArmor(r: Reader, doc: JsonObject): ExecEvent | null {
  // the proto form is recognised by its capitalised keys; a document has one form or the other
  const proto = 'Timestamp' in doc || 'UpdatedTime' in doc || 'Operation' in doc
  const key = (name: string): string =>
    proto ? name : name.charAt(0).toLowerCase() + name.slice(1)

  const seconds = r.integer(doc, key('Timestamp'), key('Timestamp'))
  const updated = r.string(doc, key('UpdatedTime'), key('UpdatedTime'))
  if (seconds === undefined && updated === undefined) {
    r.fail('no Timestamp or UpdatedTime: not a kubearmor record')
  }
  const timeNs =
    updated !== undefined
      ? r.time(updated, key('UpdatedTime'), 'utc')
      : r.epochNs((seconds ?? 0n) * NS_PER_S, key('Timestamp'))

  if (r.string(doc, key('Operation'), key('Operation')) !== 'Process') return null
  const data = r.string(doc, key('Data'), key('Data'))
  if (data !== undefined && data.includes('syscall=') && !KUBEARMOR_EXEC_SYSCALL.test(data)) {
    return null
  }

  let binary = r.string(doc, key('ProcessName'), key('ProcessName'))
  if (binary === undefined || binary === '') {
    const resource = r.string(doc, key('Resource'), key('Resource')) ?? ''
    binary = resource.split(/\s/, 1)[0]
  }
  if (binary === undefined || binary === '') {
    r.fail(`no ${key('ProcessName')} or ${key('Resource')}`)
  }

  // the host pid is the one other tools and /proc report; PID is inside the container
  const pid =
    r.pid(doc, proto ? 'HostPID' : 'hostPid', proto ? 'HostPID' : 'hostPid') ??
    r.pid(doc, proto ? 'PID' : 'pid', proto ? 'PID' : 'pid') ??
    null
  const policy = r.string(doc, key('PolicyName'), key('PolicyName')) ?? null
  return { tool: 'kubearmor', binary, pid, timeNs, policy: policy === '' ? null : policy }
}

const FALCO_EXEC_TYPES = new Set(['execve', 'execveat'])

// libsinsp renders a field it could not extract as <NA>
function falcoValue(v: Json | undefined): Json | undefined {
  return v === '<NA>' ? undefined : v
}

/**
 * Falco 0.44 alerts with `json_output: true` (userspace/engine/formats.cpp, per ESST.md Falco
 * section 6): `time`, `rule`, `priority`, `source`, `output_fields` holding every field of the
 * rule's output plus `evt.time`. An alert is an exec event when `evt.type` is execve/execveat, or
 * when `evt.type` is not in the output and an executable (`proc.exepath`, else `proc.exe`) is.
 * Time origin: taken in the kernel as boot_time + bpf_ktime_get_boot_ns(), already epoch ns;
 * `output_fields["evt.time"]` (integer ns) is used, else `time` (ISO 8601 UTC).
 */
function parseFalco(r: Reader, doc: JsonObject): ExecEvent | null {
  const rule = r.string(doc, 'rule', 'rule')
  const time = r.string(doc, 'time', 'time')
  if (rule === undefined || time === undefined) r.fail('no rule or time: not a falco alert')
  const rawFields = r.object(doc, 'output_fields', 'output_fields')
  if (rawFields === undefined) r.fail('no output_fields')

  const source = r.string(doc, 'source', 'source')
  if (source !== undefined && source !== 'syscall') return null
  const fields: JsonObject = Object.fromEntries(
    Object.entries(rawFields).map(([name, v]) => [name, falcoValue(v)])
  )
  const evtType = r.string(fields, 'evt.type', 'output_fields["evt.type"]')
  if (evtType !== undefined && !FALCO_EXEC_TYPES.has(evtType)) return null

  const binary =
    r.string(fields, 'proc.exepath', 'output_fields["proc.exepath"]') ||
    r.string(fields, 'proc.exe', 'output_fields["proc.exe"]')
  if (binary === undefined || binary === '') {
    if (evtType === undefined) return null
    r.fail('no output_fields["proc.exepath"] or ["proc.exe"] in an exec alert')
  }

  const pid = r.pid(fields, 'proc.pid', 'output_fields["proc.pid"]') ?? null
  // evt.time is an integer in JSON output; a rule may also print it, which gives a time string
  const evtTime = typeof fields['evt.time'] === 'string' ? undefined : fields['evt.time']
  const evtNs = r.integerValue(evtTime, 'output_fields["evt.time"]')
  const timeNs =
    evtNs === undefined ? r.time(time, 'time') : r.epochNs(evtNs, 'output_fields["evt.time"]')
  return { tool: 'falco', binary, pid, timeNs, policy: rule }
}

function pathnameArg(
  r: Reader,
  entries: Json[],
  path: string,
  valueKeys: string[]
): string | undefined {
  for (const [i, entry] of entries.entries()) {
    if (!isObject(entry)) r.fail(`${path}[${i}] is ${describe(entry)}, not an object`)
    if (r.string(entry, 'name', `${path}[${i}].name`) !== 'pathname') continue
    for (const k of valueKeys) {
      const v = r.string(entry, k, `${path}[${i}].${k}`)
      if (v !== undefined) return v
    }
    return undefined
  }
  return undefined
}

/**
 * Tracee v0.24.1: the trace.Event struct (types/trace/trace.go): integer `timestamp`,
 * `eventName`, `processId` / `hostProcessId`, `executable.path`, `matchedPolicies`, and `args` as
 * {name, type, value}, the exec path being the arg named `pathname`
 * (docs/docs/events/builtin/man/lifecycle/sched_process_exec.md).
 */
function parseTraceeV0(r: Reader, doc: JsonObject): ExecEvent | null {
  const stamp = r.integer(doc, 'timestamp', 'timestamp')
  if (stamp === undefined) r.fail('no timestamp')
  const timeNs = r.epochNs(stamp, 'timestamp')
  if (r.string(doc, 'eventName', 'eventName') !== 'sched_process_exec') return null

  const args = r.array(doc, 'args', 'args') ?? []
  const executable = r.object(doc, 'executable', 'executable')
  const binary =
    pathnameArg(r, args, 'args', ['value']) ||
    (executable && r.string(executable, 'path', 'executable.path'))
  if (binary === undefined || binary === '') r.fail('no pathname arg or executable.path')

  const pid = r.pid(doc, 'hostProcessId', 'hostProcessId') ?? r.pid(doc, 'processId', 'processId')
  const policies = strings(r, r.array(doc, 'matchedPolicies', 'matchedPolicies'), 'matchedPolicies')
  return { tool: 'tracee', binary, pid: pid ?? null, timeNs, policy: policyOf(policies) }
}

/**
 * Tracee main: the v1beta1 Event (api/v1beta1/event.proto) with proto field names: `timestamp`,
 * `name`, `policies.matched`, `workload.process.{executable.path, pid, host_pid}`, `data` as
 * {name, <value>}. Two renderings are in circulation and both are read: the custom marshaller
 * (api/v1beta1/event_json.go, commit 381efe188: RFC 3339 `timestamp`, plain pids, `value`) and the
 * protojson form documented in docs/docs/outputs/event-structure.md (`timestamp` as
 * {seconds, nanos}, pids as {"value": n}, typed keys such as `str`).
 */
function parseTraceeV1(r: Reader, doc: JsonObject): ExecEvent | null {
  let timeNs: bigint
  const stamp = doc['timestamp']
  if (typeof stamp === 'string') {
    timeNs = r.time(stamp, 'timestamp')
  } else if (isObject(stamp)) {
    const seconds = stamp['seconds']
    const s =
      typeof seconds === 'string' && /^\d+$/.test(seconds)
        ? BigInt(seconds)
        : r.integer(stamp, 'seconds', 'timestamp.seconds')
    const nanos = r.integer(stamp, 'nanos', 'timestamp.nanos') ?? 0n
    if (s === undefined || nanos < 0n || nanos >= NS_PER_S) r.fail('timestamp is not a timestamp')
    timeNs = r.epochNs(s * NS_PER_S + nanos, 'timestamp')
  } else {
    r.fail(stamp === undefined ? 'no timestamp' : `timestamp is ${describe(stamp)}`)
  }
  if (r.string(doc, 'name', 'name') !== 'sched_process_exec') return null

  const workload = r.object(doc, 'workload', 'workload')
  const process = workload && r.object(workload, 'process', 'workload.process')
  const executable = process && r.object(process, 'executable', 'workload.process.executable')
  const data = r.array(doc, 'data', 'data') ?? []
  const binary =
    pathnameArg(r, data, 'data', ['str', 'value']) ||
    (executable && r.string(executable, 'path', 'workload.process.executable.path'))
  if (binary === undefined || binary === '') {
    r.fail('no pathname in data or workload.process.executable.path')
  }

  const pid =
    process &&
    (r.pid(process, 'host_pid', 'workload.process.host_pid') ??
      r.pid(process, 'pid', 'workload.process.pid'))
  const policies = r.object(doc, 'policies', 'policies')
  const matched = policies && r.array(policies, 'matched', 'policies.matched')
  const policy = policyOf(strings(r, matched, 'policies.matched'))
  return { tool: 'tracee', binary, pid: pid ?? null, timeNs, policy }
}

/**
 * Tracee JSON, either layout. Time origin (ESST.md Tracee section 6): kernel time from the BPF
 * context plus a boot-time epoch offset computed once at start, i.e. epoch ns; integer in
 * v0.24.1, RFC 3339 on main.
 */
function parseTracee(r: Reader, doc: JsonObject): ExecEvent | null {
  if ('eventName' in doc) return parseTraceeV0(r, doc)
  if (typeof doc['name'] === 'string') return parseTraceeV1(r, doc)
  return r.fail('no eventName or name: not a tracee event')
}

const PARSERS: Record<KnownTool, (r: Reader, doc: JsonObject) => ExecEvent | null> = {
  tetragon: parseTetragon,
  kubearmor: parseKubeArmor,
  falco: parseFalco,
  tracee: parseTracee,
}

/**
 * The exec event in one line of `tool`'s JSON output, or null when the line is a valid record of
 * the tool that is not an exec event. Throws {@link EventParseError} for anything else.
 */
export function parseExecEvent(tool: KnownTool, line: string): ExecEvent | null {
  const r = new Reader(tool, line)
  return PARSERS[tool](r, r.document())
}

export interface StreamCounts {
  /** every line seen; always execEvents + ignored + malformed */
  lines: number
  execEvents: number
  /** valid records that are not exec events, and blank lines */
  ignored: number
  malformed: number
  lastError: EventParseError | null
}

/**
 * Reads a tool's output line by line and keeps count: every line lands in exactly one of
 * execEvents, ignored and malformed, and a malformed line never stops the stream.
 */
export class EventStream {
  readonly tool: KnownTool
  #counts: StreamCounts = { lines: 0, execEvents: 0, ignored: 0, malformed: 0, lastError: null }
  #partial = ''

  constructor(tool: KnownTool) {
    this.tool = tool
  }

  get counts(): Readonly<StreamCounts> {
    return { ...this.#counts }
  }

  /** One complete line (a trailing CR or LF is dropped); its exec event or null. */
  pushLine(line: string): ExecEvent | null {
    const text = line.replace(/\r?\n?$/, '')
    this.#counts.lines++

    if (text.trim() === '') {
      this.#counts.ignored++
      return null
    }

    let event: ExecEvent | null
    try {
      event = parseExecEvent(this.tool, text)
    } catch (err) {
      this.#counts.malformed++
      this.#counts.lastError =
        err instanceof EventParseError
          ? err
          : new EventParseError(this.tool, `parser failed: ${String(err)}`, text, { cause: err })
      return null
    }

    if (event === null) this.#counts.ignored++
    else this.#counts.execEvents++
    return event
  }

  /** Complete lines, one per element; their exec events in order. */
  push(lines: Iterable<string>): ExecEvent[] {
    const events: ExecEvent[] = []
    for (const line of lines) {
      const event = this.pushLine(line)
      if (event !== null) events.push(event)
    }
    return events
  }

  /** A chunk of output split anywhere; a last line without its newline waits for more. */
  write(chunk: string): ExecEvent[] {
    const parts = (this.#partial + chunk).split('\n')
    this.#partial = parts.pop() ?? ''
    return this.push(parts)
  }

  /** The end of output: a last line without a newline is parsed now. */
  end(): ExecEvent[] {
    const rest = this.#partial
    this.#partial = ''
    return rest === '' ? [] : this.push([rest])
  }
}
