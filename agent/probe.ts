/**
 * hookmeter's own exec probe (bpf/hm_probe.bpf.c): loaded and verified once, attached only while
 * something is measured, for the children of registered spawner threads only.
 */
import { BpfObject, type BpfLink, type OpenOptions } from '../libbpf-bindings/object.ts'
import { BufferReader, type Mechanism, type RecordBatch } from '../libbpf-bindings/reader.ts'
import { u32Key } from '../libbpf-bindings/map.ts'
import { ensureTracefs } from '../libbpf-bindings/tracefs.ts'
import { objectFile, PROBE_OBJECT } from './assets.ts'

export const RECORD_SIZE = 56

export interface ExecRecord {
  pid: number
  spawner: number
  forkNs: bigint
  enterNs: bigint
  execNs: bigint
  exitNs: bigint
  emitNs: bigint
  seq: number
  mechanism: Mechanism
  /** CLOCK_MONOTONIC ns at which the reader had the record */
  arrivalNs: bigint
}

/**
 * `batched`: the kernel wakes the reader once every `batchSize` records and the rest is drained at
 * the end, so observing costs the loop little. `per-record`: every record wakes its reader, which
 * is what delivery latency is measured with.
 */
export type WakeupPolicy = 'batched' | 'per-record'

export interface AttachOptions {
  policy: WakeupPolicy
  mechanisms?: Mechanism[]
  /** records per wake-up in batched mode (default 256) */
  batchSize?: number
}

export interface ProbeCounters {
  emitted: number
  ringbufReserveFailed: number
  perfOutputFailed: number
  childrenFull: number
  ringbufWakeups: number
}

export interface ProbeCollection {
  records: Record<Mechanism, ExecRecord[]>
  /** per mechanism: records the kernel could not hand over (ring reserve failures, perf lost) */
  lost: Record<Mechanism, number>
  counters: ProbeCounters
  policy: WakeupPolicy
  /** reader wake-ups that delivered records, per mechanism */
  wakeups: Record<Mechanism, number>
}

const PROGRAMS = [
  'hm_sched_process_fork',
  'hm_sys_enter_execve',
  'hm_sched_process_exec',
  'hm_sched_process_exit',
] as const

export function decodeRecords(batch: RecordBatch): ExecRecord[] {
  const out: ExecRecord[] = []
  const dv = new DataView(batch.bytes.buffer, batch.bytes.byteOffset, batch.bytes.byteLength)
  for (let i = 0; i + 1 < batch.offsets.length; i++) {
    const o = batch.offsets[i]!
    if (batch.offsets[i + 1]! - o < RECORD_SIZE) continue
    out.push({
      pid: dv.getUint32(o, true),
      spawner: dv.getUint32(o + 4, true),
      forkNs: dv.getBigUint64(o + 8, true),
      enterNs: dv.getBigUint64(o + 16, true),
      execNs: dv.getBigUint64(o + 24, true),
      exitNs: dv.getBigUint64(o + 32, true),
      emitNs: dv.getBigUint64(o + 40, true),
      seq: dv.getUint32(o + 48, true),
      mechanism: dv.getUint32(o + 52, true) === 2 ? 'perf' : 'ringbuf',
      arrivalNs: batch.arrivalNs[i]!,
    })
  }
  return out
}

/** The loaded probe. close() detaches and unloads everything; idempotent. */
export class ExecProbe implements Disposable {
  #links: BpfLink[] = []
  #readers: BufferReader[] = []
  #records: Record<Mechanism, ExecRecord[]> = { ringbuf: [], perf: [] }
  #perfLost = 0
  #wakeups: Record<Mechanism, number> = { ringbuf: 0, perf: 0 }
  #policy: WakeupPolicy = 'batched'
  #readerError: Error | null = null

  private constructor(readonly object: BpfObject) {}

  /** Opens and loads the probe object (verifier included); nothing is attached yet. */
  static async load(objectPath: string = PROBE_OBJECT, opts: OpenOptions = {}): Promise<ExecProbe> {
    using file = await objectFile(objectPath)
    const object = BpfObject.open(file.path, { objectName: 'hm_probe', ...opts })
    try {
      const missing = [
        ...PROGRAMS.filter((n) => !object.programs().some((p) => p.name === n)),
        ...['hm_spawners', 'hm_children', 'hm_rb', 'hm_perf', '.data', '.bss'].filter(
          (n) => !object.maps().some((m) => m.name === n || m.name.endsWith(n))
        ),
      ]
      if (missing.length)
        throw new Error(
          `${objectPath} is not a hookmeter exec probe: it lacks ${missing.join(', ')}`
        )
      object.load()
      return new ExecProbe(object)
    } catch (err) {
      object.close()
      throw err
    }
  }

  /** Program ids of the probe, to tell them apart in the host's inventory. */
  programFds(): Record<string, number> {
    return Object.fromEntries(PROGRAMS.map((n) => [n, this.object.program(n).fd]))
  }

  get attached(): boolean {
    return this.#links.length > 0
  }

  /**
   * Starts the readers, then attaches the programs, so that no record is written before a reader
   * exists. Throws (having undone everything) if any step fails.
   */
  async attach(opts: AttachOptions): Promise<void> {
    if (this.#readers.length) throw new Error('exec probe is already measuring')
    const mechanisms = opts.mechanisms ?? ['ringbuf', 'perf']
    const batch = opts.policy === 'per-record' ? 1 : Math.max(2, opts.batchSize ?? 256)
    this.#policy = opts.policy
    this.#records = { ringbuf: [], perf: [] }
    this.#wakeups = { ringbuf: 0, perf: 0 }
    this.#perfLost = 0
    this.#readerError = null
    this.#writeConfig(mechanisms, batch)
    this.#zeroCounters()

    try {
      const onBatch = (b: RecordBatch) => {
        if (!b.drained) this.#wakeups[b.mechanism]++
        if (b.mechanism === 'perf') this.#perfLost += b.lost
        const list = this.#records[b.mechanism]
        for (const r of decodeRecords(b)) list.push(r)
      }
      const onError = (err: Error) => {
        this.#readerError ??= err
      }
      if (mechanisms.includes('ringbuf')) {
        this.#readers.push(
          BufferReader.ringbuf(this.object.map('hm_rb').kernel, { onBatch, onError })
        )
      }
      if (mechanisms.includes('perf')) {
        this.#readers.push(
          BufferReader.perf(this.object.map('hm_perf').kernel, {
            onBatch,
            onError,
            wakeupEvents: batch,
          })
        )
      }
      await Promise.all(this.#readers.map((r) => r.ready()))

      // still attached from a detach({ keepAttached: true }): only the readers are new
      if (!this.#links.length) {
        const reason = ensureTracefs()
        if (reason) throw new Error(`cannot attach the exec probe: ${reason}`)
        for (const name of PROGRAMS) this.#links.push(this.object.program(name).attach())
      }
    } catch (err) {
      await this.#teardown(false, false)
      throw err
    }
  }

  /** Traces the children that thread `tid` forks from now on. */
  addSpawner(tid: number): void {
    this.object.map('hm_spawners').kernel.update(u32Key(tid), new Uint8Array([1]))
  }

  removeSpawner(tid: number): void {
    this.object.map('hm_spawners').kernel.delete(u32Key(tid))
  }

  /** Records received so far (live view while attached). */
  get received(): Record<Mechanism, number> {
    return { ringbuf: this.#records.ringbuf.length, perf: this.#records.perf.length }
  }

  /**
   * Detaches the programs, drains what the buffers still hold, stops the readers and returns what
   * was collected since attach(). With keepAttached the programs stay on their hooks (tracing
   * nobody, as the spawners are cleared) for the next attach(): detaching a perf-event
   * tracepoint blocks for tens of ms, which a run of several passes should pay only once.
   */
  async detach(opts: { keepAttached?: boolean } = {}): Promise<ProbeCollection> {
    await this.#teardown(true, opts.keepAttached ?? false)
    if (this.#readerError) throw this.#readerError
    const counters = this.counters()
    const records = this.#records
    this.#records = { ringbuf: [], perf: [] }
    return {
      records,
      lost: {
        ringbuf: counters.ringbufReserveFailed,
        perf: this.#perfLost + counters.perfOutputFailed,
      },
      counters,
      policy: this.#policy,
      wakeups: this.#wakeups,
    }
  }

  /** Takes the programs off their hooks if a detach({ keepAttached: true }) left them there. */
  detachPrograms(): void {
    if (this.#readers.length) return
    for (const link of this.#links.reverse()) link.close()
    this.#links = []
  }

  async #teardown(drain: boolean, keepAttached: boolean): Promise<void> {
    if (!keepAttached) {
      for (const link of this.#links.reverse()) link.close()
      this.#links = []
    }
    const spawners = this.object.closed ? [] : this.object.map('hm_spawners').kernel.keys()
    for (const key of spawners) this.object.map('hm_spawners').kernel.delete(key)
    if (drain) await Promise.all(this.#readers.map((r) => r.drain()))
    for (const r of this.#readers) r.close()
    this.#readers = []
  }

  counters(): ProbeCounters {
    const bss = this.#globalMap('.bss').kernel.lookup(u32Key(0))!
    const dv = new DataView(bss.buffer, bss.byteOffset, bss.byteLength)
    const at = (i: number) => Number(dv.getBigUint64(i * 8, true))
    return {
      emitted: at(0),
      ringbufReserveFailed: at(1),
      perfOutputFailed: at(2),
      childrenFull: at(3),
      ringbufWakeups: at(4),
    }
  }

  #writeConfig(mechanisms: Mechanism[], wakeupEvery: number): void {
    const mask = (mechanisms.includes('ringbuf') ? 1 : 0) | (mechanisms.includes('perf') ? 2 : 0)
    this.#globalMap('.data').kernel.update(
      u32Key(0),
      new Uint8Array(new Uint32Array([mask, wakeupEvery]).buffer)
    )
  }

  #zeroCounters(): void {
    this.#globalMap('.bss').kernel.update(u32Key(0), new Uint8Array(48))
  }

  #globalMap(suffix: string) {
    const map = this.object.maps().find((m) => m.name.endsWith(suffix))
    if (!map) throw new Error(`probe object has no ${suffix} map`)
    return map
  }

  close(): void {
    for (const link of this.#links) link.close()
    this.#links = []
    for (const r of this.#readers) r.close()
    this.#readers = []
    this.object.close()
  }

  [Symbol.dispose](): void {
    this.close()
  }
}
