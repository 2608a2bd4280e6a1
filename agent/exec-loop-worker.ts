/**
 * Worker half of agent/exec-loop.ts: the thread that calls posix_spawn. It reports its tid, waits
 * for a start message, then runs the loop synchronously; it checks a shared flag for aborts,
 * since no message is delivered while the loop runs.
 */

import { dlopen, FFIType, ptr, read, type Pointer } from 'bun:ffi'

import type { ExecLoopReply, ExecLoopRequest, ExecLoopResult } from './exec-loop.ts'

declare var self: Worker

type InitRequest = Extract<ExecLoopRequest, { kind: 'init' }>

const CLOCK_MONOTONIC = 1
const O_RDONLY = 0
const O_WRONLY = 1
const EINTR = 4
const SIGPIPE = 13
const SIGXFSZ = 25
const POSIX_SPAWN_SETSIGDEF = 0x04
const POSIX_SPAWN_SETSIGMASK = 0x08

// glibc x86_64 / aarch64 sizes are 80, 336 and 128 bytes; the buffers leave room to spare.
const FILE_ACTIONS_BYTES = 256
const SPAWNATTR_BYTES = 512
const SIGSET_BYTES = 128

const NS_PER_S = 1e9
const PROGRESS_MS = 100

const { i16, i32, u32, ptr: pointer, cstring } = FFIType

function openLibc() {
  return dlopen('libc.so.6', {
    posix_spawn: { args: [pointer, pointer, pointer, pointer, pointer, pointer], returns: i32 },
    posix_spawn_file_actions_init: { args: [pointer], returns: i32 },
    posix_spawn_file_actions_addopen: { args: [pointer, i32, pointer, i32, u32], returns: i32 },
    posix_spawn_file_actions_addclosefrom_np: { args: [pointer, i32], returns: i32 },
    posix_spawn_file_actions_destroy: { args: [pointer], returns: i32 },
    posix_spawnattr_init: { args: [pointer], returns: i32 },
    posix_spawnattr_setflags: { args: [pointer, i16], returns: i32 },
    posix_spawnattr_setsigmask: { args: [pointer, pointer], returns: i32 },
    posix_spawnattr_setsigdefault: { args: [pointer, pointer], returns: i32 },
    posix_spawnattr_destroy: { args: [pointer], returns: i32 },
    sigemptyset: { args: [pointer], returns: i32 },
    sigaddset: { args: [pointer, i32], returns: i32 },
    waitpid: { args: [i32, pointer, i32], returns: i32 },
    clock_gettime: { args: [i32, pointer], returns: i32 },
    gettid: { args: [], returns: i32 },
    __errno_location: { args: [], returns: pointer },
    strerror: { args: [i32], returns: cstring },
    strerrorname_np: { args: [i32], returns: cstring },
    sigabbrev_np: { args: [i32], returns: cstring },
  })
}

type Libc = ReturnType<typeof openLibc>['symbols']

class CallError extends Error {
  constructor(
    readonly call: string,
    readonly target: string,
    readonly errno: number,
    readonly code: string,
    description: string
  ) {
    super(`${call} ${target}: ${code} (${description})`)
  }
}

/** What the loop touches, built once; holding it keeps each buffer behind a pointer alive. */
interface Prepared {
  libc: Libc
  binary: string
  iterations: number
  warmup: number
  abortFlag: Int32Array
  strings: Uint8Array
  pointerArrays: BigUint64Array
  argv: Pointer
  envp: Pointer
  path: Pointer
  fileActions: Uint8Array
  fileActionsPtr: Pointer
  attr: Uint8Array
  attrPtr: Pointer
  sigsets: Uint8Array
  pid: Int32Array
  pidPtr: Pointer
  status: Int32Array
  statusPtr: Pointer
  clock: Int32Array
  clockPtr: Pointer
  samples: Float64Array
  errnoPtr: Pointer
}

let prepared: Prepared | undefined

function post(msg: ExecLoopReply, transfer: Transferable[] = []): void {
  self.postMessage(msg, transfer)
}

// Installed before anything can await, so that no message from the main thread is dropped.
self.onmessage = (event: MessageEvent<ExecLoopRequest>) => {
  const msg = event.data
  try {
    if (msg.kind === 'init') {
      prepared = prepare(msg)
      post({ kind: 'ready', tid: prepared.libc.gettid() })
    } else if (msg.kind === 'start' && prepared) {
      const p = prepared
      prepared = undefined
      const result = run(p)
      post({ kind: 'done', result }, [result.latencyNs.buffer])
    }
  } catch (err) {
    if (err instanceof CallError) {
      post({
        kind: 'error',
        message: err.message,
        call: err.call,
        errno: err.errno,
        code: err.code,
      })
    } else {
      post({ kind: 'error', message: `exec loop worker: ${String(err)}` })
    }
  }
}

function errnoError(libc: Libc, call: string, target: string, errno: number): CallError {
  const code = libc.strerrorname_np(errno) ?? `errno ${errno}`
  const description = libc.strerror(errno) ?? 'unknown error'
  return new CallError(call, target, errno, code, description)
}

// A typed array made over an ArrayBuffer keeps its storage at one address; one made from a length
// alone may have its storage moved the first time its buffer is taken.
function bytes(n: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(n))
}

function asPointer(n: number): Pointer {
  return n as Pointer
}

function toPointer(value: Pointer | bigint | null): Pointer {
  return asPointer(Number(value ?? 0))
}

function prepare(msg: InitRequest): Prepared {
  const libc = openLibc().symbols

  // One block holds every C string; argv and envp point into it.
  const argvStrings = [msg.binary, ...msg.args]
  const envStrings = ['PATH=/usr/bin:/bin', 'LC_ALL=C']
  const all = [...argvStrings, ...envStrings, '/dev/null']
  const encoder = new TextEncoder()
  const encoded = all.map((s) => encoder.encode(s))
  const strings = bytes(encoded.reduce((n, e) => n + e.length + 1, 0))
  const offsets: number[] = []
  let offset = 0
  for (const e of encoded) {
    offsets.push(offset)
    strings.set(e, offset)
    offset += e.length + 1
  }
  const base = ptr(strings)
  const stringPtr = (i: number) => BigInt(base + (offsets[i] ?? 0))

  // argv and envp, each NULL-terminated, in one array of pointers.
  const pointerArrays = new BigUint64Array(new ArrayBuffer(8 * (all.length + 1)))
  argvStrings.forEach((_, i) => (pointerArrays[i] = stringPtr(i)))
  pointerArrays[argvStrings.length] = 0n
  const envAt = argvStrings.length + 1
  envStrings.forEach((_, i) => (pointerArrays[envAt + i] = stringPtr(argvStrings.length + i)))
  pointerArrays[envAt + envStrings.length] = 0n
  const argv = ptr(pointerArrays)
  const envp = asPointer(argv + 8 * envAt)
  const path = asPointer(base)
  const devNull = asPointer(base + (offsets[all.length - 1] ?? 0))

  // A setup error names the binary, so that the caller can tell which loop failed.
  const must = (call: string, rc: number) => {
    if (rc !== 0) throw errnoError(libc, call, msg.binary, rc)
  }

  // stdin, stdout and stderr on /dev/null.
  const fileActions = bytes(FILE_ACTIONS_BYTES)
  const fa = ptr(fileActions)
  must('posix_spawn_file_actions_init', libc.posix_spawn_file_actions_init(fa))
  const opens: [number, number][] = [
    [0, O_RDONLY],
    [1, O_WRONLY],
    [2, O_WRONLY],
  ]
  for (const [fd, flags] of opens) {
    const rc = libc.posix_spawn_file_actions_addopen(fa, fd, devNull, flags, 0)
    must('posix_spawn_file_actions_addopen', rc)
  }

  // The agent holds BPF and stats fds; a child that inherited one could use it or keep it open.
  const closeFrom = libc.posix_spawn_file_actions_addclosefrom_np(fa, 3)
  must('posix_spawn_file_actions_addclosefrom_np', closeFrom)

  // The runtime ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec; the child gets
  // the defaults and an empty mask, as it would from a shell.
  const attr = bytes(SPAWNATTR_BYTES)
  const at = ptr(attr)
  const sigsets = bytes(2 * SIGSET_BYTES)
  const defaults = ptr(sigsets)
  const mask = asPointer(defaults + SIGSET_BYTES)
  must('posix_spawnattr_init', libc.posix_spawnattr_init(at))
  libc.sigemptyset(defaults)
  libc.sigaddset(defaults, SIGPIPE)
  libc.sigaddset(defaults, SIGXFSZ)
  libc.sigemptyset(mask)
  must('posix_spawnattr_setsigdefault', libc.posix_spawnattr_setsigdefault(at, defaults))
  must('posix_spawnattr_setsigmask', libc.posix_spawnattr_setsigmask(at, mask))
  const flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
  must('posix_spawnattr_setflags', libc.posix_spawnattr_setflags(at, flags))

  const pid = new Int32Array(new ArrayBuffer(4))
  const status = new Int32Array(new ArrayBuffer(4))

  // Two timespecs: [sec lo, sec hi, nsec lo, nsec hi] before the spawn, then after the wait.
  const clock = new Int32Array(new ArrayBuffer(32))

  return {
    libc,
    binary: msg.binary,
    iterations: msg.iterations,
    warmup: msg.warmup,
    abortFlag: msg.abortFlag,
    strings,
    pointerArrays,
    argv,
    envp,
    path,
    fileActions,
    fileActionsPtr: fa,
    attr,
    attrPtr: at,
    sigsets,
    pid,
    pidPtr: ptr(pid),
    status,
    statusPtr: ptr(status),
    clock,
    clockPtr: ptr(clock),
    samples: new Float64Array(new ArrayBuffer(8 * msg.iterations)),
    errnoPtr: toPointer(libc.__errno_location()),
  }
}

function run(p: Prepared): ExecLoopResult {
  try {
    return loop(p)
  } finally {
    p.libc.posix_spawn_file_actions_destroy(p.fileActionsPtr)
    p.libc.posix_spawnattr_destroy(p.attrPtr)
  }
}

function loop(p: Prepared): ExecLoopResult {
  const { libc, binary, warmup, abortFlag, samples, clock, pid, status } = p
  const { posix_spawn, waitpid, clock_gettime } = libc
  const { pidPtr, path, fileActionsPtr, attrPtr, argv, envp, statusPtr, clockPtr } = p
  const afterPtr = asPointer(clockPtr + 16)
  const total = warmup + p.iterations
  const progressStep = Math.max(1, Math.ceil(total / 100))
  const tid = libc.gettid()

  let done = 0
  let failures = 0
  let firstFailure: string | undefined
  let aborted = false
  let startNs: bigint | undefined
  let nextProgressDone = progressStep
  let nextProgressMs = 0

  for (; done < total; done++) {
    if (Atomics.load(abortFlag, 0) !== 0) {
      aborted = true
      break
    }

    if (done === warmup) startNs = now(libc, clock, clockPtr)

    clock_gettime(CLOCK_MONOTONIC, clockPtr)
    const rc = posix_spawn(pidPtr, path, fileActionsPtr, attrPtr, argv, envp)
    if (rc !== 0) throw errnoError(libc, 'posix_spawn', binary, rc)
    const child = pid[0] ?? 0
    while (waitpid(child, statusPtr, 0) !== child) {
      const errno = read.i32(p.errnoPtr)
      if (errno !== EINTR) throw errnoError(libc, 'waitpid', `${binary} (pid ${child})`, errno)
    }
    clock_gettime(CLOCK_MONOTONIC, afterPtr)

    // Seconds since boot fit the low 32 bits; the difference is exact in a double.
    const s0 = clock[0] ?? 0
    const n0 = clock[2] ?? 0
    const s1 = clock[4] ?? 0
    const n1 = clock[6] ?? 0
    if (done >= warmup) {
      samples[done - warmup] = (s1 - s0) * NS_PER_S + (n1 - n0)
      const st = status[0] ?? 0
      if (st !== 0) {
        failures++
        firstFailure ??= describeStatus(libc, binary, st)
      }
    }

    const nowMs = s1 * 1e3 + n1 / 1e6
    if (done + 1 >= nextProgressDone && nowMs >= nextProgressMs) {
      post({ kind: 'progress', done: done + 1, total })
      nextProgressDone = done + 1 + progressStep
      nextProgressMs = nowMs + PROGRESS_MS
    }
  }

  const endNs = now(libc, clock, clockPtr)
  const start = startNs ?? endNs
  const counted = Math.max(0, done - warmup)

  const result: ExecLoopResult = {
    iterations: counted,
    warmup: Math.min(done, warmup),
    startNs: start,
    endNs,
    wallNs: endNs - start,
    latencyNs: counted === samples.length ? samples : samples.slice(0, counted),
    failures,
    aborted,
    spawnerTid: tid,
  }
  if (firstFailure !== undefined) result.firstFailure = firstFailure
  return result
}

function now(libc: Libc, clock: Int32Array, clockPtr: Pointer): bigint {
  libc.clock_gettime(CLOCK_MONOTONIC, clockPtr)
  const sec = (BigInt(clock[1] ?? 0) << 32n) | BigInt((clock[0] ?? 0) >>> 0)
  return sec * 1_000_000_000n + BigInt(clock[2] ?? 0)
}

function describeStatus(libc: Libc, binary: string, status: number): string {
  const termsig = status & 0x7f
  if (termsig === 0) return `${binary} exited with status ${(status >> 8) & 0xff}`

  if (termsig !== 0x7f) {
    const name = libc.sigabbrev_np(termsig)
    const core = status & 0x80 ? ', core dumped' : ''
    return `${binary} killed by signal ${termsig}${name ? ` (SIG${name}${core})` : core}`
  }

  return `${binary} ended with wait status 0x${status.toString(16)}`
}
