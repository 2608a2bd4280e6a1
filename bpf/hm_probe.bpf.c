// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * hookmeter's exec probe: the kernel phases of each exec of the children forked by the
 * threads in hm_spawners (fork, sys_enter_execve, sched_process_exec, exit), one record per
 * child at its exit, through a ring buffer and/or a perf buffer.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hm_probe.h"

#define HM_E2BIG 7
#define HM_EMIT_RINGBUF 1
#define HM_EMIT_PERF 2
#define HM_MECHANISM_RINGBUF 1
#define HM_MECHANISM_PERF 2

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* phase timestamps of one traced child, kept until its exit */
struct hm_child {
	__u64 fork_ns;
	__u64 enter_ns;
	__u64 exec_ns;
	__u32 spawner;
	__u32 pad;
};

struct hm_config hm_cfg = { .emit_mask = 3, .wakeup_every = 1 };
struct hm_counters hm_cnt;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} hm_spawners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct hm_child);
} hm_children SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} hm_rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} hm_perf SEC(".maps");

SEC("tp_btf/sched_process_fork")
int BPF_PROG(hm_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 spawner = parent->pid;
	struct hm_child c = {};
	__u32 pid = child->pid;
	long err;

	/* only new processes (not threads) forked by a registered spawner thread */
	if (!bpf_map_lookup_elem(&hm_spawners, &spawner))
		return 0;
	if (child->pid != child->tgid)
		return 0;

	/* start the child's entry; a full map loses this child, so count it */
	c.fork_ns = bpf_ktime_get_ns();
	c.spawner = spawner;
	err = bpf_map_update_elem(&hm_children, &pid, &c, BPF_NOEXIST);
	if (err == -HM_E2BIG)
		__sync_fetch_and_add(&hm_cnt.children_full, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int hm_sys_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct hm_child *c;

	/* only the traced child's own thread; keys are child tgids, which are their leader tids */
	c = bpf_map_lookup_elem(&hm_children, &tid);
	if (!c)
		return 0;

	/* a failed attempt is overwritten by the next one; calls after the first exec are not */
	if (!c->exec_ns)
		c->enter_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(hm_sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct hm_child *c;

	/* only traced children */
	c = bpf_map_lookup_elem(&hm_children, &pid);
	if (!c)
		return 0;

	/* keep the first successful exec, the one the loop measures */
	if (!c->exec_ns)
		c->exec_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(hm_sched_process_exit, struct task_struct *p)
{
	__u32 emit_mask = hm_cfg.emit_mask;
	__u32 every = hm_cfg.wakeup_every;
	struct hm_exec_record rec;
	struct hm_exec_record *e;
	__u32 pid = p->pid;
	struct hm_child *c;
	__u64 flags;
	long err;

	/* only the group leader of a traced child */
	if (p->pid != p->tgid)
		return 0;
	c = bpf_map_lookup_elem(&hm_children, &pid);
	if (!c)
		return 0;

	/* fill the record and take the next sequence number */
	rec.exit_ns = bpf_ktime_get_ns();
	rec.pid = pid;
	rec.spawner = c->spawner;
	rec.fork_ns = c->fork_ns;
	rec.enter_ns = c->enter_ns;
	rec.exec_ns = c->exec_ns;
	rec.emit_ns = 0;
	rec.mechanism = 0;
	rec.seq = 0;
	if (emit_mask & (HM_EMIT_RINGBUF | HM_EMIT_PERF))
		rec.seq = __sync_fetch_and_add(&hm_cnt.emitted, 1) + 1;

	/* ring buffer copy: wake the reader on every record, or on every Nth one */
	if (emit_mask & HM_EMIT_RINGBUF) {
		flags = BPF_RB_FORCE_WAKEUP;
		if (every > 1 && rec.seq % every)
			flags = BPF_RB_NO_WAKEUP;
		e = bpf_ringbuf_reserve(&hm_rb, sizeof(*e), 0);
		if (e) {
			*e = rec;
			e->mechanism = HM_MECHANISM_RINGBUF;
			e->emit_ns = bpf_ktime_get_ns();
			bpf_ringbuf_submit(e, flags);
			if (flags == BPF_RB_FORCE_WAKEUP)
				__sync_fetch_and_add(&hm_cnt.rb_wakeups, 1);
		} else {
			__sync_fetch_and_add(&hm_cnt.rb_reserve_failed, 1);
		}
	}

	/* perf buffer copy: its wake-ups follow the reader's perf_event_attr */
	if (emit_mask & HM_EMIT_PERF) {
		rec.mechanism = HM_MECHANISM_PERF;
		rec.emit_ns = bpf_ktime_get_ns();
		err = bpf_perf_event_output(ctx, &hm_perf, BPF_F_CURRENT_CPU, &rec, sizeof(rec));
		if (err)
			__sync_fetch_and_add(&hm_cnt.perf_output_failed, 1);
	}

	/* the child is done */
	bpf_map_delete_elem(&hm_children, &pid);
	return 0;
}
