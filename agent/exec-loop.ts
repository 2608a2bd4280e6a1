/**
 * The benchmark's exec loop: spawn one binary N times with posix_spawn + waitpid, from a Worker,
 * and time each exec on CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns().
 *
 * The binary is exec'd directly, never through a shell, with stdin, stdout and stderr on
 * /dev/null, a fixed environment (PATH=/usr/bin:/bin, LC_ALL=C), default signal dispositions for
 * the signals the runtime ignores, an empty signal mask, and no inherited descriptor above 2.
 *
 * In a `bun build --compile` binary the worker file must be passed as a second entrypoint
 * (`bun build --compile agent/main.ts agent/exec-loop-worker.ts`), or it is looked up on disk.
 */

import { workerUrl } from '../libbpf-bindings/worker-url.ts'

export interface ExecLoopOptions {
  /** absolute path of the binary; the caller has checked it against its allowlist */
  binary: string
  /** argv[1..], passed as they are */
  args: string[]
  /** counted execs */
  iterations: number
  /** execs run before the counted ones and left out of every figure */
  warmup: number
  /**
   * execs done so far (warm-up included) out of warmup + iterations; called at most every 1 % of
   * the execs and at most every 100 ms, and once more when the loop ends
   */
  onProgress?: (done: number, total: number) => void
  /** stops the loop after the exec in flight; the result then has aborted: true */
  signal?: AbortSignal
}

export interface ExecLoopResult {
  /** counted execs done: the requested number unless aborted */
  iterations: number
  /** warm-up execs done */
  warmup: number
  /** CLOCK_MONOTONIC just before the first counted exec */
  startNs: bigint
  /** CLOCK_MONOTONIC just after the last counted exec */
  endNs: bigint
  /** endNs - startNs: the counted execs only */
  wallNs: bigint
  /** posix_spawn to waitpid return, one per counted exec, warm-up excluded */
  latencyNs: Float64Array
  /** counted execs that did not exit with status 0 */
  failures: number
  /** how the first failing counted exec ended, e.g. `/usr/bin/false exited with status 1` */
  firstFailure?: string
  aborted: boolean
  /** tid of the thread that called posix_spawn */
  spawnerTid: number
}

export interface ExecLoop {
  /** tid of the worker thread that calls posix_spawn, known once ready */
  readonly spawnerTid: Promise<number>
  /** starts the loop: the caller first registers spawnerTid with the probe, then calls start() */
  start(): Promise<ExecLoopResult>
  /** idempotent; terminates the worker, and rejects a start() still running */
  close(): void
  [Symbol.dispose](): void
}

/** A libc call that failed, named with the object it was called on and its errno. */
export class ExecLoopError extends Error {
  override readonly name = 'ExecLoopError'

  constructor(
    message: string,
    readonly call: string,
    readonly errno: number,
    /** errno name, e.g. ENOENT */
    readonly code: string
  ) {
    super(message)
  }
}

/** Messages from the main thread to the worker. */
export type ExecLoopRequest =
  | {
      kind: 'init'
      binary: string
      args: string[]
      iterations: number
      warmup: number
      /** Int32Array over a SharedArrayBuffer; non-zero asks the loop to stop */
      abortFlag: Int32Array
    }
  | { kind: 'start' }

/** Messages from the worker to the main thread. */
export type ExecLoopReply =
  | { kind: 'ready'; tid: number }
  | { kind: 'progress'; done: number; total: number }
  | { kind: 'done'; result: ExecLoopResult }
  | { kind: 'error'; message: string; call?: string; errno?: number; code?: string }

/**
 * Starts the worker and prepares the loop; no child is spawned before start().
 * Throws TypeError on invalid options. The caller closes the loop (or lets `using` do it); it
 * also closes itself once start() has settled.
 */
export function createExecLoop(opts: ExecLoopOptions): ExecLoop {
  validate(opts)

  return new WorkerExecLoop(opts)
}

function validate(opts: ExecLoopOptions): void {
  if (typeof opts.binary !== 'string' || !opts.binary.startsWith('/')) {
    throw new TypeError(`exec loop: binary must be an absolute path, got ${String(opts.binary)}`)
  }

  const strings = [opts.binary, ...opts.args]
  if (strings.some((s) => typeof s !== 'string' || s.includes('\0'))) {
    throw new TypeError('exec loop: binary and args must be strings without NUL characters')
  }

  if (!Number.isSafeInteger(opts.iterations) || opts.iterations < 1) {
    throw new TypeError(`exec loop: iterations must be a positive integer, got ${opts.iterations}`)
  }

  if (!Number.isSafeInteger(opts.warmup) || opts.warmup < 0) {
    throw new TypeError(`exec loop: warmup must be a non-negative integer, got ${opts.warmup}`)
  }
}

class WorkerExecLoop implements ExecLoop {
  readonly spawnerTid: Promise<number>

  readonly #opts: ExecLoopOptions
  readonly #worker: Worker
  readonly #abortFlag = new Int32Array(new SharedArrayBuffer(4))
  readonly #ready = Promise.withResolvers<number>()
  #run: PromiseWithResolvers<ExecLoopResult> | undefined
  #failure: Error | undefined
  #lastDone = 0
  #closed = false

  constructor(opts: ExecLoopOptions) {
    this.#opts = opts
    this.spawnerTid = this.#ready.promise

    // A caller that only awaits start() must not see an unhandled rejection of spawnerTid.
    this.spawnerTid.catch(() => {})

    opts.signal?.addEventListener('abort', this.#onAbort)
    if (opts.signal?.aborted) this.#onAbort()

    this.#worker = new Worker(
      workerUrl('agent/exec-loop-worker.ts', new URL('./exec-loop-worker.ts', import.meta.url))
    )
    this.#worker.addEventListener('message', this.#onMessage)
    this.#worker.addEventListener('error', this.#onError)
    this.#worker.addEventListener('close', this.#onClose)

    const init: ExecLoopRequest = {
      kind: 'init',
      binary: opts.binary,
      args: [...opts.args],
      iterations: opts.iterations,
      warmup: opts.warmup,
      abortFlag: this.#abortFlag,
    }
    this.#worker.postMessage(init)
  }

  start(): Promise<ExecLoopResult> {
    if (this.#run) return this.#run.promise

    this.#run = Promise.withResolvers<ExecLoopResult>()
    if (this.#failure) {
      this.#run.reject(this.#failure)
      return this.#run.promise
    }

    // The loop must not begin before the worker has reported its tid, which the caller may be
    // putting in the probe's filter map.
    const run = this.#run
    this.#ready.promise.then(
      () => {
        if (this.#closed) return
        const start: ExecLoopRequest = { kind: 'start' }
        this.#worker.postMessage(start)
      },
      (err: unknown) => run.reject(err)
    )

    return run.promise
  }

  close(): void {
    if (this.#closed) return
    this.#closed = true

    Atomics.store(this.#abortFlag, 0, 1)
    this.#opts.signal?.removeEventListener('abort', this.#onAbort)

    this.#worker.removeEventListener('message', this.#onMessage)
    this.#worker.removeEventListener('error', this.#onError)
    this.#worker.removeEventListener('close', this.#onClose)
    this.#worker.terminate()

    this.#fail(new Error(`exec loop ${this.#opts.binary}: closed`))
  }

  [Symbol.dispose](): void {
    this.close()
  }

  #onAbort = (): void => {
    Atomics.store(this.#abortFlag, 0, 1)
  }

  #onMessage = (event: MessageEvent<ExecLoopReply>): void => {
    const msg = event.data
    switch (msg.kind) {
      case 'ready':
        this.#ready.resolve(msg.tid)
        break

      case 'progress':
        this.#lastDone = msg.done
        this.#opts.onProgress?.(msg.done, msg.total)
        break

      case 'done': {
        const done = msg.result.warmup + msg.result.iterations
        if (done !== this.#lastDone) {
          this.#opts.onProgress?.(done, this.#opts.warmup + this.#opts.iterations)
        }
        this.#run?.resolve(msg.result)
        this.close()
        break
      }

      case 'error': {
        const err =
          msg.call !== undefined && msg.errno !== undefined && msg.code !== undefined
            ? new ExecLoopError(msg.message, msg.call, msg.errno, msg.code)
            : new Error(msg.message)
        this.#fail(err)
        this.close()
        break
      }
    }
  }

  #onError = (event: ErrorEvent): void => {
    this.#fail(new Error(`exec loop worker: ${event.message}`))
    this.close()
  }

  #onClose = (): void => {
    this.#fail(new Error('exec loop worker exited'))
    this.close()
  }

  #fail(err: Error): void {
    this.#failure ??= err
    this.#ready.reject(this.#failure)
    this.#run?.reject(this.#failure)
  }
}
