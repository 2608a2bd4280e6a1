/**
 * What a buffer reader and its worker share. Imports nothing: the worker must not load libbpf,
 * whose print callback is process-wide and belongs to the main thread.
 */
export type Mechanism = 'ringbuf' | 'perf'

export interface WorkerSetup {
  mechanism: Mechanism
  epollFd: number
  controlFd: number
  control: SharedArrayBuffer
  /** ring buffer: meta = consumer page, data = producer page; perf: meta = data = mmap base */
  sources: Array<{ meta: number; data: number; size: number }>
  epollEventSize: number
  pageSize: number
}

/**
 * The shared control words: command bits, drains asked for, and the worker's state. The state
 * handshake guarantees the buffers are unmapped only when the worker cannot read them.
 */
export const CTL_CMD = 0
export const CTL_DRAINS = 1
export const CTL_STATE = 2
export const CMD_DRAIN = 1
export const CMD_STOP = 2
export const STATE_NEW = 0
export const STATE_RUNNING = 1
export const STATE_CANCELLED = 2
export const STATE_STOPPED = 3
