// Exec-event parsers over sample lines in test/fixtures/events/, written for these tests from each
// tool's documented field layout (no line is copied from a tool's output):
// - tetragon.jsonl: docs/content/en/docs/concepts/events.md (process_exec), the KprobeArgument
//   table in docs/content/en/docs/reference/grpc-api.md (linux_binprm_arg), cilium/tetragon;
// - kubearmor-karmor.jsonl: getting-started/kubearmor-events.md (kubearmor/KubeArmor), one
//   JSON object per line as kubearmor-client log/logClient.go prints with --json;
// - kubearmor-logpath.jsonl: the Log struct's json tags in KubeArmor/types/types.go;
// - falco.jsonl: the alert fields of userspace/engine/formats.cpp per ESST.md (Falco section 6),
//   laid out like the json_output example on falco.org and in falcosecurity/falcosidekick's README;
// - tracee-v0.24.1.jsonl: trace.Event's json tags in types/trace/trace.go (aquasecurity/tracee);
// - tracee-main.jsonl: api/v1beta1/event_json.go at 381efe188 (line 1) and the protojson shape
//   of docs/docs/outputs/event-structure.md (line 2).
// Timestamps are chosen so that a double would round them: 1772446530123456789 reads back as
// ...768 through Number.
import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import {
  EventParseError,
  EventStream,
  EXCERPT_LENGTH,
  parseExecEvent,
  rfc3339ToNs,
} from '../agent/tools/parsers.ts'
import type { ExecEvent, KnownTool } from '../agent/tools/types.ts'

const FIXTURES = join(import.meta.dir, 'fixtures', 'events')

function lines(file: string): string[] {
  return readFileSync(join(FIXTURES, file), 'utf8')
    .split('\n')
    .filter((l) => l !== '')
}

function parseFile(tool: KnownTool, file: string): (ExecEvent | null)[] {
  return lines(file).map((l) => parseExecEvent(tool, l))
}

function exec(
  tool: KnownTool,
  binary: string,
  pid: number | null,
  timeNs: bigint,
  policy: string | null
): ExecEvent {
  return { tool, binary, pid, timeNs, policy }
}

function rejection(tool: KnownTool, line: string): EventParseError {
  try {
    parseExecEvent(tool, line)
  } catch (err) {
    if (err instanceof EventParseError) return err
    throw err
  }
  throw new Error(`${tool} accepted ${line}`)
}

/** The first line of a fixture, parsed, changed by `edit`, and written back. */
function edited(file: string, edit: (doc: any) => void, index = 0): string {
  const doc = JSON.parse(lines(file)[index]!)
  edit(doc)
  return JSON.stringify(doc)
}

describe('tetragon', () => {
  test('reads process_exec and bprm-check policy events with exact binary, pid and time', () => {
    expect(parseFile('tetragon', 'tetragon.jsonl')).toEqual([
      exec('tetragon', '/usr/bin/ls', 31337, 1772446530123456789n, null),
      null,
      exec('tetragon', '/usr/bin/curl', 52699, 1772446531000001000n, null),
      exec('tetragon', '/usr/bin/ls', 4242, 1772446532000000042n, 'hookmeter-exec-audit'),
      null,
      // +01:00 is 09:15:33Z
      exec('tetragon', '/usr/bin/ls', 4243, 1772442933000000000n, 'hookmeter-exec-lsm'),
    ])
  })

  test('the kprobe event names the executed file, not the calling process', () => {
    const event = parseExecEvent('tetragon', lines('tetragon.jsonl')[3]!)
    expect(event?.binary).toBe('/usr/bin/ls')
    expect(JSON.parse(lines('tetragon.jsonl')[3]!).process_kprobe.process.binary).toBe(
      '/usr/bin/bash'
    )
  })

  test('rejects broken lines naming the field', () => {
    const first = lines('tetragon.jsonl')[0]!
    const cases: [string, string][] = [
      [first.slice(0, 120), 'not valid JSON'],
      [`[${first}]`, 'not a JSON object (an array)'],
      [
        edited('tetragon.jsonl', (d) => (d.process_exec.process.pid = '31337')),
        'process_exec.process.pid is a string',
      ],
      [
        edited('tetragon.jsonl', (d) => (d.process_exec.process.binary = 7)),
        'process_exec.process.binary is a number',
      ],
      [
        edited('tetragon.jsonl', (d) => delete d.process_exec.process.binary),
        'no process_exec.process.binary',
      ],
      [edited('tetragon.jsonl', (d) => (d.time = '1772446530')), 'time is not an RFC 3339'],
      [edited('tetragon.jsonl', (d) => delete d.time), 'no time'],
      [
        edited('tetragon.jsonl', (d) => (d.process_kprobe.args = [{ int_arg: 1 }]), 3),
        'no process_kprobe.args[].linux_binprm_arg.path',
      ],
    ]
    for (const [line, reason] of cases) {
      const err = rejection('tetragon', line)
      expect({ reason, got: err.reason.startsWith(reason) }).toEqual({ reason, got: true })
      expect(err.tool).toBe('tetragon')
      expect(err.message).toStartWith('tetragon event: ')
    }
  })
})

describe('kubearmor', () => {
  test('reads karmor --json logs and alerts, preferring the host pid and UpdatedTime', () => {
    expect(parseFile('kubearmor', 'kubearmor-karmor.jsonl')).toEqual([
      exec('kubearmor', '/usr/bin/ls', 31337, 1772446530123456000n, null),
      null,
      exec('kubearmor', '/usr/bin/ls', 31338, 1772446531000007000n, 'hookmeter-ls-host-audit'),
      // HostPID, not the PID 12 inside the container
      exec('kubearmor', '/bin/sh', 2514068, 1772446532500000000n, null),
      // no UpdatedTime: Timestamp in whole seconds; execveat counts as exec
      exec('kubearmor', '/usr/sbin/cron', 900, 1772446533000000000n, null),
    ])
  })

  test('reads the camelCase lines that -logPath writes', () => {
    expect(parseFile('kubearmor', 'kubearmor-logpath.jsonl')).toEqual([
      exec('kubearmor', '/usr/bin/ls', 31340, 1772446534000250000n, 'hookmeter-ls-host-audit'),
      null,
    ])
  })

  test('takes a zoneless UpdatedTime as utc and falls back to Resource for the binary', () => {
    const zoneless = edited('kubearmor-karmor.jsonl', (d) => {
      d.UpdatedTime = '2026-03-02T10:15:30.123456'
      delete d.ProcessName
    })
    expect(parseExecEvent('kubearmor', zoneless)).toEqual(
      exec('kubearmor', '/usr/bin/ls', 31337, 1772446530123456000n, null)
    )
  })

  test('rejects broken lines naming the field', () => {
    const first = lines('kubearmor-karmor.jsonl')[0]!
    const cases: [string, string][] = [
      [first.slice(0, 50), 'not valid JSON'],
      [`[${first}]`, 'not a JSON object (an array)'],
      [edited('kubearmor-karmor.jsonl', (d) => (d.HostPID = '31337')), 'HostPID is a string'],
      [edited('kubearmor-karmor.jsonl', (d) => (d.Timestamp = 1.5)), 'Timestamp is a number'],
      [edited('kubearmor-karmor.jsonl', (d) => (d.ProcessName = ['/usr/bin/ls'])), 'ProcessName'],
      [
        edited('kubearmor-karmor.jsonl', (d) => {
          delete d.ProcessName
          delete d.Resource
        }),
        'no ProcessName or Resource',
      ],
      [
        edited('kubearmor-logpath.jsonl', (d) => {
          delete d.processName
          delete d.resource
        }),
        'no processName or resource',
      ],
      ['{"Operation":"Process","ProcessName":"/usr/bin/ls"}', 'no Timestamp or UpdatedTime'],
    ]
    for (const [line, reason] of cases) {
      const err = rejection('kubearmor', line)
      expect({ reason, got: err.reason.startsWith(reason) }).toEqual({ reason, got: true })
      expect(err.tool).toBe('kubearmor')
    }
  })
})

describe('falco', () => {
  test('reads exec alerts with the rule as policy and evt.time to the nanosecond', () => {
    expect(parseFile('falco', 'falco.jsonl')).toEqual([
      exec('falco', '/usr/bin/ls', 31337, 1772446530123456789n, 'hookmeter exec of /usr/bin/ls'),
      // no evt.type in the output: an alert carrying an executable is taken as an exec
      exec('falco', '/usr/bin/ls', 31338, 1772446531000000001n, 'hookmeter exec seen'),
      null,
      // no evt.time: the ISO 8601 `time`
      exec('falco', '/bin/sh', 5000, 1772446533000000250n, 'hookmeter exec in container'),
      null,
    ])
    const first = parseExecEvent('falco', lines('falco.jsonl')[0]!)
    expect(first?.timeNs).not.toBe(BigInt(Number(1772446530123456789n)))
  })

  test('an exec alert without an executable is rejected, another alert without one is not', () => {
    const noExe = edited('falco.jsonl', (d) => (d.output_fields['proc.exepath'] = '<NA>'))
    expect(rejection('falco', noExe).reason).toContain('proc.exepath')
    const openat = edited('falco.jsonl', (d) => delete d.output_fields['proc.exepath'], 2)
    expect(parseExecEvent('falco', openat)).toBeNull()
  })

  test('rejects broken lines naming the field', () => {
    const first = lines('falco.jsonl')[0]!
    const cases: [string, string][] = [
      [first.slice(0, first.length - 1), 'not valid JSON'],
      [`[${first}]`, 'not a JSON object (an array)'],
      [
        edited('falco.jsonl', (d) => (d.output_fields['proc.pid'] = -1)),
        'output_fields["proc.pid"] is -1',
      ],
      [
        edited('falco.jsonl', (d) => (d.output_fields['proc.exepath'] = 42)),
        'output_fields["proc.exepath"] is a number',
      ],
      [edited('falco.jsonl', (d) => (d.output_fields = 'x')), 'output_fields is a string'],
      [
        edited('falco.jsonl', (d) => delete d.output_fields['proc.exepath']),
        'no output_fields["proc.exepath"]',
      ],
      [edited('falco.jsonl', (d) => delete d.rule), 'no rule or time'],
    ]
    for (const [line, reason] of cases) {
      const err = rejection('falco', line)
      expect({ reason, got: err.reason.startsWith(reason) }).toEqual({ reason, got: true })
      expect(err.tool).toBe('falco')
    }
  })
})

describe('tracee', () => {
  test('reads v0.24.1 sched_process_exec events with the host pid and integer ns time', () => {
    expect(parseFile('tracee', 'tracee-v0.24.1.jsonl')).toEqual([
      exec('tracee', '/usr/bin/ls', 31337, 1772446530123456789n, 'hookmeter-ls'),
      null,
      exec('tracee', '/bin/sh', 5012, 1772446531000000007n, null),
    ])
  })

  test('reads the current v1beta1 event in both of its json renderings', () => {
    expect(parseFile('tracee', 'tracee-main.jsonl')).toEqual([
      exec('tracee', '/usr/bin/ls', 31337, 1772446530123456789n, 'hookmeter-ls'),
      exec('tracee', '/usr/bin/ls', 4242, 1772446531000000005n, 'hookmeter-ls,default-policy'),
      null,
    ])
  })

  test('falls back to the executable path when the pathname argument is missing', () => {
    const line = edited('tracee-v0.24.1.jsonl', (d) => {
      d.args = d.args.filter((a: { name: string }) => a.name !== 'pathname')
      d.timestamp = 1772446530
    })
    expect(parseExecEvent('tracee', line)?.binary).toBe('/usr/bin/ls')
  })

  test('rejects broken lines naming the field', () => {
    const v0 = lines('tracee-v0.24.1.jsonl')[0]!
    const cases: [string, string][] = [
      [v0.slice(0, 200), 'not valid JSON'],
      [`[${v0}]`, 'not a JSON object (an array)'],
      [
        edited('tracee-v0.24.1.jsonl', (d) => (d.timestamp = '1772446530')),
        'timestamp is a string',
      ],
      [edited('tracee-v0.24.1.jsonl', (d) => (d.args[1].value = 3)), 'args[1].value is a number'],
      [
        edited('tracee-v0.24.1.jsonl', (d) => {
          d.args = []
          delete d.executable
        }),
        'no pathname arg or executable.path',
      ],
      [
        edited('tracee-main.jsonl', (d) => (d.workload.process.host_pid = 'x')),
        'workload.process.host_pid is a string',
      ],
      [edited('tracee-main.jsonl', (d) => (d.timestamp = 'yesterday')), 'timestamp is not an RFC'],
      [
        edited('tracee-main.jsonl', (d) => {
          d.data = []
          delete d.workload
        }),
        'no pathname in data',
      ],
      [edited('tracee-main.jsonl', (d) => (d.policies.matched = [1])), 'policies.matched holds'],
      ['{"level":"info","msg":"tracee started"}', 'no eventName or name'],
    ]
    for (const [line, reason] of cases) {
      const err = rejection('tracee', line)
      expect({ reason, got: err.reason.startsWith(reason) }).toEqual({ reason, got: true })
      expect(err.tool).toBe('tracee')
    }
  })
})

describe('parseExecEvent', () => {
  test("another tool's line is malformed, not silently ignored", () => {
    const tetragon = lines('tetragon.jsonl')[0]!
    for (const tool of ['kubearmor', 'falco', 'tracee'] as const) {
      expect(rejection(tool, tetragon).tool).toBe(tool)
    }
    expect(rejection('tetragon', lines('falco.jsonl')[0]!).reason).toContain('not a tetragon event')
  })

  test('an error keeps the first 200 characters of the line', () => {
    const long = `{"x":"${'a'.repeat(400)}"`
    const err = rejection('falco', long)
    expect(err.excerpt).toBe(long.slice(0, EXCERPT_LENGTH))
    expect(err.excerpt.length).toBe(200)
    expect(err.cause).toBeInstanceOf(SyntaxError)
  })
})

describe('rfc3339ToNs', () => {
  test('reads nanoseconds, zones and offsets', () => {
    expect(rfc3339ToNs('2026-03-02T10:15:30.123456789Z')).toBe(1772446530123456789n)
    expect(rfc3339ToNs('2026-03-02T10:15:30.1Z')).toBe(1772446530100000000n)
    expect(rfc3339ToNs('2026-03-02T11:45:30+01:30')).toBe(1772446530000000000n)
    expect(rfc3339ToNs('2026-03-02T05:15:30-05:00')).toBe(1772446530000000000n)
  })

  test('rejects impossible dates, a missing zone unless utc is asked for, and other text', () => {
    expect(rfc3339ToNs('2026-02-30T00:00:00Z')).toBeNull()
    expect(rfc3339ToNs('2026-03-02T24:00:00Z')).toBeNull()
    expect(rfc3339ToNs('2026-03-02T10:15:30.1234567891Z')).toBeNull()
    expect(rfc3339ToNs('2026-03-02T10:15:30')).toBeNull()
    expect(rfc3339ToNs('2026-03-02T10:15:30', 'utc')).toBe(1772446530000000000n)
    expect(rfc3339ToNs('1772446530')).toBeNull()
  })
})

describe('EventStream', () => {
  const MALFORMED = ['{"process_exec":', '[]', '{"time":"2026-03-02T10:15:30Z","process_exec":{}}']

  test('counts every line in exactly one bucket and keeps the last error', () => {
    const stream = new EventStream('tetragon')
    const events = stream.push([...lines('tetragon.jsonl'), '', ...MALFORMED, '  \r'])

    expect(events.map((e) => e.binary)).toEqual([
      '/usr/bin/ls',
      '/usr/bin/curl',
      '/usr/bin/ls',
      '/usr/bin/ls',
    ])
    const c = stream.counts
    expect({ ...c, lastError: undefined }).toEqual({
      lines: 11,
      execEvents: 4,
      ignored: 4,
      malformed: 3,
      lastError: undefined,
    })
    expect(c.lines).toBe(c.execEvents + c.ignored + c.malformed)
    expect(c.lastError?.reason).toBe('no process_exec.process')
    expect(c.lastError?.excerpt).toBe(MALFORMED[2]!)
  })

  test('every fixture file adds up, for every tool', () => {
    const files: [KnownTool, string][] = [
      ['tetragon', 'tetragon.jsonl'],
      ['kubearmor', 'kubearmor-karmor.jsonl'],
      ['kubearmor', 'kubearmor-logpath.jsonl'],
      ['falco', 'falco.jsonl'],
      ['tracee', 'tracee-v0.24.1.jsonl'],
      ['tracee', 'tracee-main.jsonl'],
    ]
    for (const [tool, file] of files) {
      const stream = new EventStream(tool)
      const events = stream.push([...lines(file), 'not json'])
      const expected = parseFile(tool, file).filter((e) => e !== null)
      expect(events).toEqual(expected)
      const c = stream.counts
      expect({ file, lines: c.lines, sum: c.execEvents + c.ignored + c.malformed }).toEqual({
        file,
        lines: lines(file).length + 1,
        sum: lines(file).length + 1,
      })
      expect({ file, malformed: c.malformed, tool: c.lastError?.tool }).toEqual({
        file,
        malformed: 1,
        tool,
      })
    }
  })

  test('chunks split anywhere give the same events as whole lines', () => {
    const text = readFileSync(join(FIXTURES, 'falco.jsonl'), 'utf8').replaceAll('\n', '\r\n')
    const whole = new EventStream('falco').push(lines('falco.jsonl'))

    const chunked = new EventStream('falco')
    const events: ExecEvent[] = []
    for (let i = 0; i < text.length; i += 37) events.push(...chunked.write(text.slice(i, i + 37)))
    events.push(...chunked.end())

    expect(events).toEqual(whole)
    expect(chunked.counts).toMatchObject({ lines: 5, execEvents: 3, ignored: 2, malformed: 0 })
  })

  test('a last line without a newline is parsed at the end and not before', () => {
    const stream = new EventStream('tracee')
    const [first] = lines('tracee-main.jsonl')
    expect(stream.write(first!)).toEqual([])
    expect(stream.counts.lines).toBe(0)
    expect(stream.end()).toHaveLength(1)
    expect(stream.end()).toEqual([])
    expect(stream.counts).toMatchObject({ lines: 1, execEvents: 1 })
  })

  test('counts returns a copy that later lines do not change', () => {
    const stream = new EventStream('kubearmor')
    const before = stream.counts
    stream.pushLine(lines('kubearmor-karmor.jsonl')[0]!)
    expect(before.lines).toBe(0)
    expect(stream.counts.execEvents).toBe(1)
  })
})
