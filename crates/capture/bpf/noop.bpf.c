// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* The hooking floor: empty programs with the names of sock_trace.bpf.c's, attached to the same syscall tracepoints
 * (src/ebpf/mod.rs: NoopProbes). What tracing costs a traced process before the programs do any work: the
 * syscall slow path, the tracepoint and the program call; for the OpenSSL uprobes, the traps. For overhead
 * benchmarks only. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NOOP(name, tp)                                                                                                 \
	SEC("tracepoint/syscalls/" #tp)                                                                                \
	int name(void *ctx)                                                                                            \
	{                                                                                                              \
		return 0;                                                                                              \
	}

NOOP(exit_write, sys_exit_write)
NOOP(exit_read, sys_exit_read)
NOOP(exit_sendto, sys_exit_sendto)
NOOP(exit_recvfrom, sys_exit_recvfrom)
NOOP(exit_writev, sys_exit_writev)
NOOP(exit_readv, sys_exit_readv)
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
