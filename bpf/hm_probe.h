/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The exec probe's record and globals, shared by hm_probe.bpf.c and the TypeScript decoder
 * (little-endian, no padding). Changing a layout here means changing the decoder too.
 */
#ifndef __HM_PROBE_H
#define __HM_PROBE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* one record per traced child, emitted at the exit of its group leader */
struct hm_exec_record {
	__u32 pid;       /* child tgid */
	__u32 spawner;   /* tid of the spawning thread */
	__u64 fork_ns;   /* sched_process_fork */
	__u64 enter_ns;  /* sys_enter_execve (0 if not seen) */
	__u64 exec_ns;   /* sched_process_exec (0 if not seen) */
	__u64 exit_ns;   /* sched_process_exit */
	__u64 emit_ns;   /* bpf_ktime_get_ns() just before output */
	__u32 seq;       /* emission sequence number, from 1 */
	__u32 mechanism; /* 1 = ring buffer copy, 2 = perf buffer copy */
};

_Static_assert(sizeof(struct hm_exec_record) == 56, "hm_exec_record must be 56 bytes");

/* set from user space after load, through the object's .data map */
struct hm_config {
	__u32 emit_mask;    /* bit0 ring buffer, bit1 perf buffer */
	__u32 wakeup_every; /* 0 or 1: wake the reader on every record; N>1: on every Nth record */
};

_Static_assert(sizeof(struct hm_config) == 8, "hm_config must be 8 bytes");

/* read by user space from the object's .bss map */
struct hm_counters {
	__u64 emitted;                /* records stamped with a seq (one per traced exit) */
	__u64 rb_reserve_failed;      /* ring buffer full: record lost for that reader */
	__u64 perf_output_failed;     /* bpf_perf_event_output returned an error */
	__u64 children_full;          /* a fork not traced because hm_children was full */
	__u64 rb_wakeups;             /* ring buffer submits that forced a reader wake-up */
	__u64 perf_wakeups_requested; /* stays 0: the reader's perf_event_attr sets perf wake-ups */
};

_Static_assert(sizeof(struct hm_counters) == 48, "hm_counters must be 48 bytes");

#endif /* __HM_PROBE_H */
