/**
 * The reading half of BufferReader: blocks in epoll_wait on the buffers' fds and the control
 * eventfd, copies out every record the kernel has committed, stamps when it had each one, and
 * posts them as one batch per wake-up. Touches the mapped memory only while the state is running.
 */
import { ptr, toArrayBuffer } from 'bun:ffi'

import { errno, libc, monotonicNs } from './libc.ts'
import {
  CMD_DRAIN,
  CMD_STOP,
  CTL_CMD,
  CTL_DRAINS,
  CTL_STATE,
  STATE_NEW,
  STATE_RUNNING,
  STATE_STOPPED,
  type WorkerSetup,
} from './reader-protocol.ts'

declare const self: Worker

const RINGBUF_BUSY = 0x80000000
const RINGBUF_DISCARD = 0x40000000
const PERF_RECORD_LOST = 2
const PERF_RECORD_SAMPLE = 9
const EINTR = 4

class Batch {
  bytes = new Uint8Array(64 * 1024)
  offsets: number[] = [0]
  arrival: bigint[] = []
  used = 0
  lost = 0

  push(src: Uint8Array): void {
    if (this.used + src.length > this.bytes.length) {
      const next = new Uint8Array(Math.max(this.bytes.length * 2, this.used + src.length))
      next.set(this.bytes.subarray(0, this.used))
      this.bytes = next
    }
    this.bytes.set(src, this.used)
    this.used += src.length
    this.offsets.push(this.used)
    this.arrival.push(monotonicNs())
  }

  post(drained: boolean): void {
    const bytes = this.bytes.slice(0, this.used)
    const offsets = Uint32Array.from(this.offsets)
    const arrivalNs = BigUint64Array.from(this.arrival)
    self.postMessage({ kind: 'batch', bytes, offsets, arrivalNs, lost: this.lost, drained }, [
      bytes.buffer,
      offsets.buffer,
      arrivalNs.buffer,
    ])
    this.offsets = [0]
    this.arrival = []
    this.used = 0
    this.lost = 0
  }
}

type Source = (batch: Batch) => void

/** The 64-bit position from two 32-bit loads, retried if the high half moved in between. */
function producerPos(words: Uint32Array): bigint {
  for (;;) {
    const hi = words[1]!
    const lo = words[0]!
    if (words[1] === hi) return (BigInt(hi) << 32n) | BigInt(lo)
  }
}

function ringSource(s: WorkerSetup['sources'][number], pageSize: number): Source {
  const consumer = new BigUint64Array(toArrayBuffer(s.meta as never, 0, 8))
  // the producer page and the data are mapped read-only, and JSC's Atomics.load is a locked
  // read-modify-write that faults there: plain loads are used, which x86-64's ordering makes
  // acquire loads (README: the readers are tested on x86-64 only)
  const producer = new Uint32Array(toArrayBuffer(s.data as never, 0, 8))
  const ring = new Uint8Array(toArrayBuffer(s.data as never, pageSize, 2 * s.size))
  const words = new Uint32Array(ring.buffer, ring.byteOffset, ring.byteLength / 4)
  const mask = BigInt(s.size - 1)

  return (batch) => {
    let cons = Atomics.load(consumer, 0)
    const prod = producerPos(producer)
    while (cons < prod) {
      const off = Number(cons & mask)
      const len = words[off / 4]!
      if (len & RINGBUF_BUSY) break
      const size = len & 0x3fffffff
      if (!(len & RINGBUF_DISCARD)) batch.push(ring.subarray(off + 8, off + 8 + size))
      cons += BigInt((size + 8 + 7) & ~7)
      Atomics.store(consumer, 0, cons)
    }
  }
}

function perfSource(s: WorkerSetup['sources'][number], pageSize: number): Source {
  const meta = new BigUint64Array(toArrayBuffer(s.meta as never, 0, pageSize))
  const headIdx = 1024 / 8
  const tailIdx = 1032 / 8
  const dataOffset = Number(meta[1040 / 8]) || pageSize
  const dataSize = Number(meta[1048 / 8]) || s.size
  const data = new Uint8Array(toArrayBuffer(s.meta as never, dataOffset, dataSize))
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength)
  let scratch = new Uint8Array(256)

  return (batch) => {
    const head = Atomics.load(meta, headIdx)
    let tail = meta[tailIdx]!
    while (tail < head) {
      const off = Number(tail % BigInt(dataSize))
      const type = dv.getUint32(off, true)
      const size = dv.getUint16(off + 6, true)
      if (size === 0) break

      // a record may wrap around the end of the buffer: read it through a copy
      let rec: Uint8Array
      if (off + size <= dataSize) {
        rec = data.subarray(off, off + size)
      } else {
        if (scratch.length < size) scratch = new Uint8Array(size * 2)
        const first = dataSize - off
        scratch.set(data.subarray(off), 0)
        scratch.set(data.subarray(0, size - first), first)
        rec = scratch.subarray(0, size)
      }
      const rdv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength)
      if (type === PERF_RECORD_SAMPLE) {
        const raw = rdv.getUint32(8, true)
        batch.push(rec.subarray(12, 12 + raw))
      } else if (type === PERF_RECORD_LOST) {
        batch.lost += Number(rdv.getBigUint64(16, true))
      }
      tail += BigInt(size)
    }
    Atomics.store(meta, tailIdx, tail)
  }
}

function run(setup: WorkerSetup): void {
  const control = new Int32Array(setup.control)
  if (Atomics.compareExchange(control, CTL_STATE, STATE_NEW, STATE_RUNNING) !== STATE_NEW) return
  self.postMessage({ kind: 'ready' })

  const make = setup.mechanism === 'ringbuf' ? ringSource : perfSource
  const sources = setup.sources.map((s) => make(s, setup.pageSize))
  const maxEvents = sources.length + 1
  const events = new Uint8Array(setup.epollEventSize * maxEvents)
  const edv = new DataView(events.buffer)
  const counter = new BigUint64Array(1)
  const batch = new Batch()

  try {
    for (;;) {
      const n = libc.epoll_wait(setup.epollFd, ptr(events), maxEvents, -1)
      if (n < 0) {
        if (errno() === EINTR) continue
        self.postMessage({ kind: 'error', message: `epoll_wait: errno ${errno()}` })
        return
      }

      let controlFired = false
      const fired: number[] = []
      for (let i = 0; i < n; i++) {
        const tag = Number(edv.getBigUint64(i * setup.epollEventSize + 4, true))
        if (tag === 0) controlFired = true
        else fired.push(tag - 1)
      }

      if (controlFired) {
        libc.read(setup.controlFd, ptr(counter), 8)
        const cmd = Atomics.exchange(control, CTL_CMD, 0)
        if (cmd & CMD_STOP) return
        if (cmd & CMD_DRAIN) {
          const asked = Atomics.load(control, CTL_DRAINS)
          for (const read of sources) read(batch)
          batch.post(true)
          self.postMessage({ kind: 'drained', count: asked })
          continue
        }
      }

      for (const i of fired) sources[i]!(batch)
      if (fired.length) batch.post(false)
    }
  } finally {
    Atomics.store(control, CTL_STATE, STATE_STOPPED)
    Atomics.notify(control, CTL_STATE)
  }
}

self.onmessage = (msg: MessageEvent) => {
  try {
    run(msg.data as WorkerSetup)
  } catch (err) {
    self.postMessage({ kind: 'error', message: String((err as Error)?.stack ?? err) })
  }
}
