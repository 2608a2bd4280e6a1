// The exec probe against the live kernel: a known number of children, exactly that many records
// per mechanism in both wake-up policies, phases in order, nothing lost. Needs root.
import { describe, expect, test } from 'bun:test'

import type { Mechanism } from '../libbpf-bindings/reader.ts'
import { createExecLoop } from '../agent/exec-loop.ts'
import { ExecProbe, type ProbeCollection, type WakeupPolicy } from '../agent/probe.ts'
import { waitNoHmPrograms } from './helpers.ts'

const isRoot = process.getuid?.() === 0
const EXECS = 300

async function traced(
  policy: WakeupPolicy,
  mechanisms?: Mechanism[]
): Promise<{ c: ProbeCollection; pids: Set<number> }> {
  using probe = await ExecProbe.load()
  await probe.attach({ policy, mechanisms, batchSize: 64 })
  // a child of another thread while attached: it must not be traced
  Bun.spawnSync(['/usr/bin/true'])
  using loop = createExecLoop({ binary: '/usr/bin/true', args: [], iterations: EXECS, warmup: 0 })
  probe.addSpawner(await loop.spawnerTid)
  const result = await loop.start()
  expect(result.failures).toBe(0)
  const c = await probe.detach()
  return { c, pids: new Set(c.records.ringbuf.map((r) => r.pid)) }
}

function checkRecords(c: ProbeCollection, mech: Mechanism): void {
  const records = c.records[mech]
  expect(records.length).toBe(EXECS)
  expect(c.lost[mech]).toBe(0)
  expect(new Set(records.map((r) => r.seq)).size).toBe(EXECS)
  for (const r of records) {
    expect(r.mechanism).toBe(mech)
    const order = [r.forkNs, r.enterNs, r.execNs, r.exitNs, r.emitNs, r.arrivalNs]
    const sorted = [...order].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    expect(order).toEqual(sorted)
    expect(r.forkNs).toBeGreaterThan(0n)
    expect(r.enterNs).toBeGreaterThan(r.forkNs)
  }
}

describe.skipIf(!isRoot)('exec probe', () => {
  test('per-record mode delivers every exec on both mechanisms, each through a wake-up', async () => {
    const { c, pids } = await traced('per-record')
    checkRecords(c, 'ringbuf')
    checkRecords(c, 'perf')
    expect(pids.size).toBe(EXECS)
    expect(new Set(c.records.perf.map((r) => r.pid))).toEqual(pids)
    // records reached the reader through epoll wake-ups, not the final drain
    for (const mech of ['ringbuf', 'perf'] as const) {
      expect(c.wakeups[mech]).toBeGreaterThan(EXECS / 2)
      const delivered = c.records[mech].map((r) => Number(r.arrivalNs - r.emitNs))
      expect(Math.max(...delivered)).toBeLessThan(1e9)
    }
    expect(c.counters.ringbufWakeups).toBe(EXECS)
  })

  test('batched mode delivers every exec on both mechanisms with few wake-ups', async () => {
    const { c } = await traced('batched')
    checkRecords(c, 'ringbuf')
    checkRecords(c, 'perf')
    expect(c.counters.ringbufWakeups).toBe(Math.floor(EXECS / 64))
    // a level-triggered epoll also returns when records written without a wake-up are waiting at
    // the next wait, so the reader can see a few more returns than the kernel forced
    expect(c.wakeups.ringbuf).toBeLessThan(EXECS / 16)
    expect(c.wakeups.perf).toBeLessThan(EXECS / 16)
  })

  test('one mechanism alone gets every record and the other none', async () => {
    const { c } = await traced('per-record', ['perf'])
    checkRecords(c, 'perf')
    expect(c.records.ringbuf.length).toBe(0)
  })

  test('detaching removes the probe programs from their hooks and closing unloads them', async () => {
    {
      using probe = await ExecProbe.load()
      await probe.attach({ policy: 'batched' })
      expect(probe.attached).toBe(true)
      await probe.detach()
      expect(probe.attached).toBe(false)
    }
    // another hookmeter on the host holds its own; only unheld hm_ programs are leaks
    expect(await waitNoHmPrograms()).toEqual([])
  })
})
