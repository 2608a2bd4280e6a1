/**
 * Tracepoint attachment reads event ids from tracefs. Where nothing mounted it, hookmeter mounts
 * it for as long as it runs and unmounts it at exit, leaving the host as it found it.
 */
import { existsSync } from 'node:fs'

import { libc } from './libc.ts'

const TRACEFS = '/sys/kernel/tracing'
let mountedByUs = false

const cstr = (s: string) => Buffer.from(`${s}\0`)

export function tracefsReady(): boolean {
  return existsSync(`${TRACEFS}/events`) || existsSync('/sys/kernel/debug/tracing/events')
}

/** Mounts tracefs if needed; returns a reason when tracepoints cannot be attached. */
export function ensureTracefs(): string | null {
  if (tracefsReady()) return null
  if (!existsSync(TRACEFS)) return `${TRACEFS} does not exist (kernel without tracefs)`
  if (libc.mount(cstr('nodev'), cstr(TRACEFS), cstr('tracefs'), 0n, null) !== 0) {
    return `tracefs is not mounted at ${TRACEFS} and mounting it failed`
  }
  mountedByUs = true
  process.once('exit', releaseTracefs)
  return null
}

export function releaseTracefs(): void {
  if (!mountedByUs) return
  mountedByUs = false
  libc.umount2(cstr(TRACEFS), 2 /* MNT_DETACH */)
}
