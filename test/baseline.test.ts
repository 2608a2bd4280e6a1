// A baseline run needs no security tool loaded: the check that refuses one, on inventories
// shaped as takeInventory returns them (no kernel needed).
import { describe, expect, test } from 'bun:test'

import { baselineProblem, toolsLoaded } from '../agent/bench/options.ts'
import type { Inventory, ProgramEntry } from '../agent/inventory.ts'
import type { Tool } from '../agent/tools/types.ts'

function program(progId: number, fullName: string, tool: Tool): ProgramEntry {
  return {
    progId,
    name: fullName.slice(0, 15),
    fullName,
    type: 'tracepoint',
    tag: '0000000000000000',
    loadedAt: '2026-12-04T00:00:00.000Z',
    loadTimeNs: 1n,
    uid: 0,
    mapIds: [],
    hook: 'tracepoint/syscalls/sys_enter_execve',
    hooks: [],
    linkIds: [],
    owners: [],
    pins: [],
    runTimeNs: 0n,
    runCnt: 0n,
    recursionMisses: 0n,
    verifiedInsns: 1,
    jitedSize: 1,
    tool,
  }
}

const inventory = (programs: ProgramEntry[]): Inventory => ({
  takenAtNs: 0n,
  programs,
  maps: [],
  links: [],
  warnings: [],
})

describe('baseline check', () => {
  test('a host with only other programs may take a baseline', () => {
    const inv = inventory([program(1, 'tracepoint__syscalls__sys_enter_execve', 'other')])
    expect(toolsLoaded(inv)).toEqual([])
    expect(baselineProblem(inv, '--force')).toBeNull()
  })

  test('a loaded tool is named with its programs and the way to force it', () => {
    const inv = inventory([
      program(7, 'event_execve', 'tetragon'),
      program(8, 'generic_kprobe_event', 'tetragon'),
      program(9, 'sched_p_exec', 'falco'),
      program(10, 'tracepoint__syscalls__sys_exit_execve', 'other'),
    ])
    expect(toolsLoaded(inv)).toEqual([
      { tool: 'tetragon', programs: ['event_execve', 'generic_kprobe_event'] },
      { tool: 'falco', programs: ['sched_p_exec'] },
    ])
    const problem = baselineProblem(inv, 'force: true')
    expect(problem).toContain('tetragon (2 programs, e.g. event_execve)')
    expect(problem).toContain('falco (1 programs, e.g. sched_p_exec)')
    expect(problem).toEndWith('pass force: true')
  })
})
