/**
 * Ring-buffer and perf-buffer readers. The buffers are mapped here, on the calling thread, and
 * read by a Worker that blocks in epoll_wait on them: records reach the reader when the kernel
 * wakes it, never on a timer, and the caller's event loop never waits on the kernel.
 *
 * The Worker calls only libc (epoll, clock_gettime); libbpf is never entered off this thread.
 */
import { ptr } from 'bun:ffi'

import { ClosedError, LibbpfError } from './errors.ts'
import { errno, libc, PAGE_SIZE, possibleCpus } from './libc.ts'
import { PERF_ATTR, PERF_ATTR_SIZE } from './layout.ts'
import { MapFd, u32Key } from './map.ts'
import { workerUrl } from './worker-url.ts'
import {
  CMD_DRAIN,
  CMD_STOP,
  CTL_CMD,
  CTL_DRAINS,
  CTL_STATE,
  type Mechanism,
  STATE_CANCELLED,
  STATE_NEW,
  STATE_RUNNING,
  STATE_STOPPED,
  type WorkerSetup,
} from './reader-protocol.ts'

export type { Mechanism }

/** Records read after one wake-up (or one drain), with the time each was read. */
export interface RecordBatch {
  mechanism: Mechanism
  /** concatenated record payloads */
  bytes: Uint8Array
  /** offsets[i]..offsets[i+1] is record i */
  offsets: Uint32Array
  /** CLOCK_MONOTONIC ns at which the reader had record i */
  arrivalNs: BigUint64Array
  /** perf buffer only: samples the kernel reported lost since the previous batch */
  lost: number
  /** true when the batch came from drain() rather than a kernel wake-up */
  drained: boolean
}

export interface ReaderOptions {
  onBatch: (batch: RecordBatch) => void
  onError?: (err: Error) => void
}

export interface PerfReaderOptions extends ReaderOptions {
  /** data pages per CPU, a power of two (default 64) */
  pagesPerCpu?: number
  /** wake the reader after this many samples per CPU; 1 wakes on every record (default 1) */
  wakeupEvents?: number
}

const PROT_READ = 1
const PROT_WRITE = 2
const MAP_SHARED = 1
const MAP_FAILED = -1
const EPOLL_CTL_ADD = 1
const EPOLLIN = 1
const EFD_CLOEXEC = 0o2000000
const EFD_NONBLOCK = 0o4000
const SYS_PERF_EVENT_OPEN = process.arch === 'arm64' ? 241 : 298
const PERF_FLAG_FD_CLOEXEC = 8
const PERF_EVENT_IOC_ENABLE = 0x2400
const PERF_EVENT_IOC_DISABLE = 0x2401
export const EPOLL_EVENT_SIZE = process.arch === 'x64' ? 12 : 16

interface Region {
  addr: number
  len: number
}

function mmapOrThrow(len: number, prot: number, fd: number, offset: number, what: string): number {
  const addr = libc.mmap(null, len, prot, MAP_SHARED, fd, offset)
  if (!addr || Number(addr) === MAP_FAILED) throw new LibbpfError('mmap', errno(), [], what)
  return Number(addr)
}

/**
 * A reader of one ring buffer or of one perf event array (one buffer per CPU). close() stops the
 * worker, unmaps the buffers and closes every fd it opened; idempotent.
 */
export class BufferReader implements Disposable {
  #closed = false
  #worker: Worker | null = null
  #regions: Region[] = []
  #fds: number[] = []
  #perfMap: MapFd | null = null
  #perfCpus: number[] = []
  #control = new SharedArrayBuffer(16)
  #controlFd = -1
  #epollFd = -1
  #drainWaiters: Array<{ target: number; resolve: () => void }> = []
  #ready: Promise<void> = Promise.resolve()

  private constructor(
    readonly mechanism: Mechanism,
    private readonly opts: ReaderOptions
  ) {}

  /** Reads a BPF_MAP_TYPE_RINGBUF map. Its fd is borrowed, not closed by the reader. */
  static ringbuf(map: MapFd, opts: ReaderOptions): BufferReader {
    const reader = new BufferReader('ringbuf', opts)
    try {
      const size = map.maxEntries
      const consumer = mmapOrThrow(
        PAGE_SIZE,
        PROT_READ | PROT_WRITE,
        map.fd,
        0,
        `ring buffer ${map.name}`
      )
      reader.#regions.push({ addr: consumer, len: PAGE_SIZE })
      // the data area is mapped twice in a row, so a record that wraps reads as one piece
      const producer = mmapOrThrow(
        PAGE_SIZE + 2 * size,
        PROT_READ,
        map.fd,
        PAGE_SIZE,
        `ring buffer ${map.name}`
      )
      reader.#regions.push({ addr: producer, len: PAGE_SIZE + 2 * size })
      reader.#start([{ meta: consumer, data: producer, size }], [map.fd])
      return reader
    } catch (err) {
      reader.close()
      throw err
    }
  }

  /**
   * Reads a BPF_MAP_TYPE_PERF_EVENT_ARRAY map: opens one perf event per CPU, maps its buffer and
   * puts it in the map. The map's fd is borrowed; the perf events are the reader's.
   */
  static perf(map: MapFd, opts: PerfReaderOptions): BufferReader {
    const reader = new BufferReader('perf', opts)
    const pages = opts.pagesPerCpu ?? 64
    if (pages & (pages - 1))
      throw new RangeError(`pagesPerCpu must be a power of two, got ${pages}`)
    const wakeup = Math.max(1, Math.floor(opts.wakeupEvents ?? 1))

    try {
      const cpus = Math.min(possibleCpus(), map.maxEntries)
      const attr = new Uint8Array(PERF_ATTR_SIZE)
      const dv = new DataView(attr.buffer)
      dv.setUint32(PERF_ATTR.type, 1 /* PERF_TYPE_SOFTWARE */, true)
      dv.setUint32(PERF_ATTR.size, PERF_ATTR_SIZE, true)
      dv.setBigUint64(PERF_ATTR.config, 10n /* PERF_COUNT_SW_BPF_OUTPUT */, true)
      dv.setBigUint64(PERF_ATTR.sampleType, 1n << 10n /* PERF_SAMPLE_RAW */, true)
      dv.setBigUint64(PERF_ATTR.samplePeriod, 1n, true)
      dv.setUint32(PERF_ATTR.wakeupEvents, wakeup, true)

      const sources: WorkerSetup['sources'] = []
      const pollFds: number[] = []
      for (let cpu = 0; cpu < cpus; cpu++) {
        const fd = Number(
          libc.syscall(
            SYS_PERF_EVENT_OPEN,
            BigInt(ptr(attr)),
            -1n & 0xffffffffn,
            BigInt(cpu),
            0xffffffffn,
            BigInt(PERF_FLAG_FD_CLOEXEC)
          )
        )
        if (fd < 0) {
          const e = errno()
          // offline CPUs cannot take an event; skip them like libbpf does
          if (e === 19 /* ENODEV */) continue
          throw new LibbpfError('perf_event_open', e, [], `cpu ${cpu}`)
        }
        reader.#fds.push(fd)
        const len = (1 + pages) * PAGE_SIZE
        const addr = mmapOrThrow(len, PROT_READ | PROT_WRITE, fd, 0, `perf buffer cpu ${cpu}`)
        reader.#regions.push({ addr, len })
        map.update(u32Key(cpu), u32Key(fd))
        reader.#perfCpus.push(cpu)
        if (libc.ioctl(fd, BigInt(PERF_EVENT_IOC_ENABLE), 0n) < 0) {
          throw new LibbpfError('ioctl PERF_EVENT_IOC_ENABLE', errno(), [], `cpu ${cpu}`)
        }
        sources.push({ meta: addr, data: addr + PAGE_SIZE, size: pages * PAGE_SIZE })
        pollFds.push(fd)
      }
      reader.#perfMap = map
      reader.#start(sources, pollFds)
      return reader
    } catch (err) {
      reader.close()
      throw err
    }
  }

  #start(sources: WorkerSetup['sources'], pollFds: number[]): void {
    this.#epollFd = libc.epoll_create1(0o2000000 /* EPOLL_CLOEXEC */)
    if (this.#epollFd < 0) throw new LibbpfError('epoll_create1', errno())
    this.#controlFd = libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
    if (this.#controlFd < 0) throw new LibbpfError('eventfd', errno())

    const ev = new Uint8Array(16)
    const dv = new DataView(ev.buffer)
    const add = (fd: number, tag: number) => {
      dv.setUint32(0, EPOLLIN, true)
      dv.setBigUint64(4, BigInt(tag), true)
      if (libc.epoll_ctl(this.#epollFd, EPOLL_CTL_ADD, fd, ptr(ev)) < 0) {
        throw new LibbpfError('epoll_ctl', errno(), [], `fd ${fd}`)
      }
    }
    add(this.#controlFd, 0)
    pollFds.forEach((fd, i) => add(fd, i + 1))

    const setup: WorkerSetup = {
      mechanism: this.mechanism,
      epollFd: this.#epollFd,
      controlFd: this.#controlFd,
      control: this.#control,
      sources,
      epollEventSize: EPOLL_EVENT_SIZE,
      pageSize: PAGE_SIZE,
    }
    const worker = new Worker(
      workerUrl('libbpf-bindings/reader-worker.ts', new URL('./reader-worker.ts', import.meta.url))
    )
    this.#worker = worker
    this.#ready = new Promise((resolve, reject) => {
      worker.onmessage = (msg: MessageEvent) => this.#onMessage(msg.data, resolve)
      worker.onerror = (e) => {
        const err = new Error(`${this.mechanism} reader worker failed: ${e.message}`)
        reject(err)
        this.opts.onError?.(err)
      }
    })
    worker.postMessage(setup)
  }

  #onMessage(data: unknown, ready: () => void): void {
    const msg = data as { kind: string } & Record<string, unknown>
    if (msg.kind === 'ready') return ready()
    if (msg.kind === 'batch') {
      const b = msg as unknown as Omit<RecordBatch, 'mechanism'>
      if (b.offsets.length > 1 || b.lost > 0) this.opts.onBatch({ ...b, mechanism: this.mechanism })
      return
    }
    if (msg.kind === 'drained') {
      const answered = msg.count as number
      this.#drainWaiters = this.#drainWaiters.filter((w) => {
        if (w.target > answered) return true
        w.resolve()
        return false
      })
      return
    }
    if (msg.kind === 'error') this.opts.onError?.(new Error(String(msg.message)))
  }

  /** Resolves once the worker is waiting on the buffers. */
  ready(): Promise<void> {
    return this.#ready
  }

  /**
   * Reads everything the buffers hold now, woken or not (records written without a wake-up), and
   * resolves after their batch has been delivered to onBatch.
   */
  drain(): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError(`${this.mechanism} reader`))
    const control = new Int32Array(this.#control)
    const target = Atomics.add(control, CTL_DRAINS, 1) + 1
    const done = new Promise<void>((resolve) => this.#drainWaiters.push({ target, resolve }))
    this.#signal(CMD_DRAIN)
    return done
  }

  #signal(cmd: number): void {
    Atomics.or(new Int32Array(this.#control), CTL_CMD, cmd)
    libc.write(this.#controlFd, ptr(new BigUint64Array([1n])), 8)
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Stops the worker (records not yet drained are dropped), unmaps and closes. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    if (this.#worker && !this.#stopWorker()) {
      // the worker did not stop in time: leave its buffers mapped rather than pull memory out
      // from under a thread that may still read it
      this.#regions = []
    }
    for (const { resolve } of this.#drainWaiters) resolve()
    this.#drainWaiters = []

    for (const cpu of this.#perfCpus) {
      try {
        this.#perfMap?.delete(u32Key(cpu))
      } catch {
        // the map may already be gone with its object; the event fd is closed below either way
      }
    }
    for (const fd of this.#fds) libc.ioctl(fd, BigInt(PERF_EVENT_IOC_DISABLE), 0n)
    for (const r of this.#regions.reverse()) libc.munmap(r.addr as never, r.len)
    for (const fd of this.#fds) libc.close(fd)
    if (this.#controlFd >= 0) libc.close(this.#controlFd)
    if (this.#epollFd >= 0) libc.close(this.#epollFd)
    this.#regions = []
    this.#fds = []
    this.#controlFd = -1
    this.#epollFd = -1
  }

  [Symbol.dispose](): void {
    this.close()
  }

  /** True once the worker can no longer touch the buffers. */
  #stopWorker(): boolean {
    const control = new Int32Array(this.#control)
    const worker = this.#worker!
    this.#worker = null
    let stopped =
      Atomics.compareExchange(control, CTL_STATE, STATE_NEW, STATE_CANCELLED) === STATE_NEW
    if (!stopped) {
      this.#signal(CMD_STOP)
      stopped =
        Atomics.wait(control, CTL_STATE, STATE_RUNNING, 2000) !== 'timed-out' &&
        Atomics.load(control, CTL_STATE) === STATE_STOPPED
    }
    worker.terminate()
    return stopped
  }
}
