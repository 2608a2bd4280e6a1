// The uapi offsets the bindings decode, checked against this machine's kernel headers with a C
// compiler: a wrong offset would silently misread every program's counters.
import { describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import {
  LINK_INFO,
  MAP_INFO,
  MAP_INFO_SIZE,
  PERF_ATTR,
  PERF_ATTR_SIZE,
  PERF_MMAP_PAGE,
  PROG_INFO,
  PROG_INFO_SIZE,
} from '../libbpf-bindings/layout.ts'

const gcc = Bun.which('gcc')

const fields: Array<[string, string, number]> = [
  ...Object.entries({
    type: 'type',
    id: 'id',
    tag: 'tag',
    jitedProgLen: 'jited_prog_len',
    xlatedProgLen: 'xlated_prog_len',
    loadTime: 'load_time',
    createdByUid: 'created_by_uid',
    nrMapIds: 'nr_map_ids',
    mapIds: 'map_ids',
    name: 'name',
    btfId: 'btf_id',
    funcInfoRecSize: 'func_info_rec_size',
    funcInfo: 'func_info',
    nrFuncInfo: 'nr_func_info',
    runTimeNs: 'run_time_ns',
    runCnt: 'run_cnt',
    recursionMisses: 'recursion_misses',
    verifiedInsns: 'verified_insns',
    attachBtfObjId: 'attach_btf_obj_id',
    attachBtfId: 'attach_btf_id',
  }).map(
    ([ts, c]) =>
      [`bpf_prog_info`, c, PROG_INFO[ts as keyof typeof PROG_INFO]] as [string, string, number]
  ),
  ...Object.entries({
    type: 'type',
    id: 'id',
    keySize: 'key_size',
    valueSize: 'value_size',
    maxEntries: 'max_entries',
    mapFlags: 'map_flags',
    name: 'name',
    btfId: 'btf_id',
    mapExtra: 'map_extra',
  }).map(
    ([ts, c]) =>
      [`bpf_map_info`, c, MAP_INFO[ts as keyof typeof MAP_INFO]] as [string, string, number]
  ),
  ['bpf_link_info', 'type', LINK_INFO.type],
  ['bpf_link_info', 'id', LINK_INFO.id],
  ['bpf_link_info', 'prog_id', LINK_INFO.progId],
  ['bpf_link_info', 'raw_tracepoint.tp_name', LINK_INFO.rawTpName],
  ['bpf_link_info', 'raw_tracepoint.tp_name_len', LINK_INFO.rawTpNameLen],
  ['bpf_link_info', 'tracing.attach_type', LINK_INFO.tracingAttachType],
  ['bpf_link_info', 'tracing.target_obj_id', LINK_INFO.tracingTargetObjId],
  ['bpf_link_info', 'tracing.target_btf_id', LINK_INFO.tracingTargetBtfId],
  ['bpf_link_info', 'cgroup.cgroup_id', LINK_INFO.cgroupId],
  ['bpf_link_info', 'cgroup.attach_type', LINK_INFO.cgroupAttachType],
  ['bpf_link_info', 'xdp.ifindex', LINK_INFO.xdpIfindex],
  ['perf_event_attr', 'config', PERF_ATTR.config],
  ['perf_event_attr', 'sample_period', PERF_ATTR.samplePeriod],
  ['perf_event_attr', 'sample_type', PERF_ATTR.sampleType],
  ['perf_event_attr', 'wakeup_events', PERF_ATTR.wakeupEvents],
  ['perf_event_mmap_page', 'data_head', PERF_MMAP_PAGE.dataHead],
  ['perf_event_mmap_page', 'data_tail', PERF_MMAP_PAGE.dataTail],
  ['perf_event_mmap_page', 'data_offset', PERF_MMAP_PAGE.dataOffset],
  ['perf_event_mmap_page', 'data_size', PERF_MMAP_PAGE.dataSize],
]

describe.skipIf(!gcc)('uapi layouts', () => {
  test('every decoded offset matches linux/bpf.h and linux/perf_event.h', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hm-layout-'))
    try {
      const lines = fields.map(
        ([s, f]) => `printf("%s.%s %zu\\n", "${s}", "${f}", offsetof(struct ${s}, ${f}));`
      )
      const sizes = ['bpf_prog_info', 'bpf_map_info', 'perf_event_attr'].map(
        (s) => `printf("sizeof %s %zu\\n", "${s}", sizeof(struct ${s}));`
      )
      writeFileSync(
        join(dir, 'l.c'),
        `#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\n#include <linux/perf_event.h>\nint main(void){${[...lines, ...sizes].join('\n')}return 0;}\n`
      )
      const cc = Bun.spawnSync([gcc!, '-o', join(dir, 'l'), join(dir, 'l.c')])
      expect(cc.stderr.toString()).toBe('')
      const out = Bun.spawnSync([join(dir, 'l')])
        .stdout.toString()
        .trim()
        .split('\n')
      const got = new Map(
        out.map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))])
      )

      for (const [s, f, offset] of fields)
        expect([`${s}.${f}`, got.get(`${s}.${f}`)]).toEqual([`${s}.${f}`, offset])
      expect(got.get('sizeof bpf_prog_info')).toBe(PROG_INFO_SIZE)
      expect(got.get('sizeof bpf_map_info')).toBe(MAP_INFO_SIZE)
      expect(got.get('sizeof perf_event_attr')).toBe(PERF_ATTR_SIZE)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
