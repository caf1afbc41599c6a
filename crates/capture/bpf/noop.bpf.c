// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* The hooking floor: empty programs with the names of sock_trace.bpf.c's, attached to the same syscall tracepoints
 * (src/ebpf/mod.rs: NoopProbes). What tracing costs a traced process before the programs do any work: the
 * syscall slow path, the tracepoint and the program call; for the OpenSSL uprobes, the traps. For overhead
 * benchmarks only. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NOOP(name, tp)                                                                                                 \
	SEC("tracepoint/syscalls/" #tp)                                                                                \
	int name(void *ctx)                                                                                            \
	{                                                                                                              \
		return 0;                                                                                              \
	}

/* The copying floor (NoopProbes::attach_copying): when copy_pid is set, the data exits of that process copy the
 * bytes the call moved (at most copy_len, the first 2 iovec entries of vectored calls) into a ring buffer (the same
 * size and wakeup threshold as sock_trace's) that user space drains without looking: what any tracer that captures
 * payloads must at least do in the traced process. No socket lookup, no per-socket or per-thread state, no event
 * header beyond the length. */
const volatile __u32 copy_pid = 0;
const volatile __u32 copy_len = 0;

#define COPY_MAX 4096

struct copy_buf {
	__u32 len;
	__u8 data[2 * COPY_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct copy_buf);
} copy_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} copy_ring SEC(".maps");

static __always_inline int copy_out(long ret, __u64 buf, __u64 iovcnt)
{
	if (!copy_pid || ret <= 0 || (__u32)(bpf_get_current_pid_tgid() >> 32) != copy_pid)
		return 0;
	__u32 zero = 0;
	struct copy_buf *b = bpf_map_lookup_elem(&copy_scratch, &zero);
	if (!b)
		return 0;
	__u64 total = (__u64)ret < copy_len ? (__u64)ret : copy_len;
	__u64 n = 0;
	if (!iovcnt) {
		n = total;
		asm volatile("" : "+r"(n));
		if (n > COPY_MAX)
			n = COPY_MAX;
		if (bpf_probe_read_user(b->data, n, (const void *)buf))
			return 0;
	} else {
		for (int i = 0; i < 2 && (__u64)i < iovcnt && n < total; i++) {
			struct iovec iov;
			if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(buf + i * sizeof(iov))))
				break;
			__u64 m = iov.iov_len < total - n ? iov.iov_len : total - n;
			__u64 o = n;
			asm volatile("" : "+r"(m), "+r"(o));
			if (m > COPY_MAX || o > COPY_MAX)
				break;
			if (bpf_probe_read_user(b->data + o, m, iov.iov_base))
				break;
			n += m;
		}
	}
	b->len = (__u32)n;
	asm volatile("" : "+r"(n));
	if (n > 2 * COPY_MAX)
		n = 2 * COPY_MAX;
	bpf_ringbuf_output(&copy_ring, b, sizeof(b->len) + n,
			   bpf_ringbuf_query(&copy_ring, BPF_RB_AVAIL_DATA) >= 1024 * 1024 ? BPF_RB_FORCE_WAKEUP
											  : BPF_RB_NO_WAKEUP);
	return 0;
}

#define COPY(name, tp, iov)                                                                                            \
	SEC("tracepoint/syscalls/" #tp)                                                                                \
	int name(struct trace_event_raw_sys_exit *ctx)                                                                 \
	{                                                                                                              \
		if (!copy_pid)                                                                                         \
			return 0;                                                                                      \
		struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());                   \
		return copy_out(ctx->ret, PT_REGS_PARM2_SYSCALL(r), iov ? PT_REGS_PARM3_SYSCALL(r) : 0);            \
	}

COPY(exit_write, sys_exit_write, 0)
COPY(exit_read, sys_exit_read, 0)
COPY(exit_sendto, sys_exit_sendto, 0)
COPY(exit_recvfrom, sys_exit_recvfrom, 0)
COPY(exit_writev, sys_exit_writev, 1)
COPY(exit_readv, sys_exit_readv, 1)
NOOP(exit_sendmsg, sys_exit_sendmsg)
NOOP(exit_recvmsg, sys_exit_recvmsg)
NOOP(exit_sendmmsg, sys_exit_sendmmsg)
NOOP(exit_recvmmsg, sys_exit_recvmmsg)
NOOP(exit_connect, sys_exit_connect)
NOOP(exit_accept, sys_exit_accept)
NOOP(exit_accept4, sys_exit_accept4)
NOOP(enter_close, sys_enter_close)

/* And the OpenSSL hooks (src/ebpf/ssl.rs attaches them by these names): the cost of the uprobe traps alone. */
#define NOOP_PROBE(sec, name)                                                                                          \
	SEC(sec)                                                                                                       \
	int name(void *ctx)                                                                                            \
	{                                                                                                              \
		return 0;                                                                                              \
	}

NOOP_PROBE("uprobe", ssl_read_enter)
NOOP_PROBE("uprobe", ssl_read_ex_enter)
NOOP_PROBE("uprobe", ssl_write_enter)
NOOP_PROBE("uprobe", ssl_write_ex_enter)
NOOP_PROBE("uprobe", ssl_other_enter)
NOOP_PROBE("uretprobe", ssl_ret)

/* The raw syscall tracepoints (every syscall of every process, no perf record): the floor of the other way to hook
 * syscalls on a kernel without kprobes (NoopProbes::attach_raw). */
SEC("raw_tracepoint/sys_enter")
int raw_sys_enter(void *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int raw_sys_exit(void *ctx)
{
	return 0;
}
