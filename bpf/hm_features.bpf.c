// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Feature probes: one do-nothing program per kind of hook. The agent loads *and attaches* each
 * one on its own to learn what this kernel allows; a load-only probe is not enough.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} hm_feat_rb SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int hm_feat_tp(struct trace_event_raw_sys_enter *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int hm_feat_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(hm_feat_tp_btf, struct pt_regs *regs, long id)
{
	return 0;
}

SEC("kprobe/do_nanosleep")
int BPF_KPROBE(hm_feat_kprobe)
{
	return 0;
}

SEC("fentry/do_nanosleep")
int BPF_PROG(hm_feat_fentry)
{
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(hm_feat_lsm, struct linux_binprm *bprm)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int hm_feat_ringbuf(struct trace_event_raw_sys_enter *ctx)
{
	__u64 v = 0;

	/* one 8-byte record, never waking a reader */
	bpf_ringbuf_output(&hm_feat_rb, &v, sizeof(v), BPF_RB_NO_WAKEUP);
	return 0;
}
