// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* Socket data of running processes from syscall tracepoints (write/read/sendto/recvfrom, writev/readv,
 * sendmsg/recvmsg, close), for TCP sockets
 * only. The entry programs remember the arguments per thread; the exit programs resolve fd -> struct socket -> sock
 * with CO-RE reads, keep AF_INET/AF_INET6 TCP sockets and emit one fathom_sock_event with the first bytes. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sock_event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* Set by user space before loading. */
const volatile __u32 self_pid = 0;                 /* never trace this tgid (the agent) */
const volatile __u32 capture_len = FATHOM_MAX_DATA; /* payload bytes per event, <= FATHOM_MAX_DATA */

/* Vectored calls: iovec entries copied at most (the rest of the bytes is counted, not captured). */
#define MAX_IOV 8

struct args {
	__u64 buf;    /* the buffer, or the iovec array when iovcnt != 0 */
	__u64 iovcnt; /* 0 for plain-buffer calls */
	__u64 ts;
	__u32 fd;
	__u32 syscall;
};

/* The event plus slack, so that the verifier can prove iovec copies in bounds: either offset <= MAX - 128 and
 * length <= MAX, or offset <= MAX and length <= 128 (always true then: length <= MAX - offset). A per-CPU value
 * must stay under 32 KiB. */
#define IOV_TAIL 128
struct scratch_buf {
	struct fathom_sock_event e;
	__u8 slack[FATHOM_MAX_DATA - IOV_TAIL];
};

/* Arguments of the calls in progress, per thread (LRU: a thread killed inside a call leaves no leak). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct args);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_buf);
} scratch SEC(".maps");

/* Index 0: events lost because the ring buffer was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

static __always_inline int traced(__u64 pid_tgid)
{
	return (__u32)(pid_tgid >> 32) != self_pid;
}

#include "ssl_trace.h" /* OpenSSL uprobes: ssl_syscall_enter/ssl_syscall_is_ciphertext below */

static __always_inline int on_enter(__u64 fd, __u64 buf, __u64 iovcnt, __u32 syscall)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct args a = {
		.buf = buf, .iovcnt = iovcnt, .ts = bpf_ktime_get_ns(), .fd = (__u32)fd, .syscall = syscall};
	bpf_map_update_elem(&active, &id, &a, BPF_ANY);
	ssl_syscall_enter(id, (__u32)fd);
	return 0;
}

/* fd -> struct sock of an AF_INET/AF_INET6 TCP socket, NULL otherwise. */
static __always_inline struct sock *tcp_sock_of_fd(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return NULL;
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max_fds)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	if (BPF_CORE_READ(sock, type) != SOCK_STREAM)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return NULL;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	return sk;
}

static __always_inline void fill_addrs(struct fathom_sock_event *e, struct sock *sk)
{
	e->family = (__u8)BPF_CORE_READ(sk, __sk_common.skc_family);
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(e->laddr, 0, sizeof(e->laddr));
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	if (e->family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->laddr, &l, 4);
		__builtin_memcpy(e->raddr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

static __always_inline struct fathom_sock_event *new_event(__u64 id, __u32 fd, struct sock *sk)
{
	__u32 zero = 0;
	struct scratch_buf *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return NULL;
	struct fathom_sock_event *e = &s->e;
	e->pid = (__u32)(id >> 32);
	e->tid = (__u32)id;
	e->fd = fd;
	e->flags = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	fill_addrs(e, sk);
	return e;
}

static __always_inline void submit(struct fathom_sock_event *e, __u64 n)
{
	asm volatile("" : "+r"(n));
	if (n > FATHOM_MAX_DATA)
		n = FATHOM_MAX_DATA;
	if (bpf_ringbuf_output(&events, e, FATHOM_HDR_LEN + n, 0)) {
		__u32 zero = 0;
		__u64 *d = bpf_map_lookup_elem(&drops, &zero);
		if (d)
			*d += 1;
	}
}

/* Copy the first `total` (<= FATHOM_MAX_DATA) bytes of an iovec array into e->data; returns the bytes copied. */
static __always_inline __u64 copy_iov(struct fathom_sock_event *e, __u64 iovp, __u64 iovcnt, __u64 total)
{
	__u64 off = 0;
	for (int i = 0; i < MAX_IOV; i++) {
		if ((__u64)i >= iovcnt || off >= total)
			break;
		struct iovec iov;
		if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)(iovp + i * sizeof(iov))))
			break;
		__u64 n = iov.iov_len;
		if (n > total - off)
			n = total - off;
		asm volatile("" : "+r"(n));
		if (n > FATHOM_MAX_DATA)
			n = FATHOM_MAX_DATA;
		__u64 o = off;
		asm volatile("" : "+r"(o));
		if (o > FATHOM_MAX_DATA)
			break;
		if (o > FATHOM_MAX_DATA - IOV_TAIL && n > IOV_TAIL)
			n = IOV_TAIL;
		if (bpf_probe_read_user(e->data + o, n, iov.iov_base))
			break;
		off += n;
	}
	return off;
}

static __always_inline int on_exit(long ret, __u8 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct args *a = bpf_map_lookup_elem(&active, &id);
	if (!a)
		return 0;
	struct args saved = *a;
	bpf_map_delete_elem(&active, &id);
	if (ret <= 0)
		return 0;
	if (ssl_syscall_is_ciphertext(id, saved.fd))
		return 0;
	struct sock *sk = tcp_sock_of_fd(saved.fd);
	if (!sk)
		return 0;
	struct fathom_sock_event *e = new_event(id, saved.fd, sk);
	if (!e)
		return 0;
	if (e->rport == 0)
		return 0; /* not connected */
	e->ts_enter_ns = saved.ts;
	e->ts_exit_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->syscall = (__u8)saved.syscall;
	e->len = (__u32)ret;
	__u64 n = (__u64)ret;
	__u64 cap = capture_len;
	if (n > cap)
		n = cap;
	/* Keep clang from comparing one register and passing another: the verifier must see the bound on n. */
	asm volatile("" : "+r"(n));
	if (n > FATHOM_MAX_DATA)
		n = FATHOM_MAX_DATA;
	if (saved.iovcnt)
		n = copy_iov(e, saved.buf, saved.iovcnt, n);
	else if (bpf_probe_read_user(e->data, n, (const void *)saved.buf))
		n = 0;
	e->captured = (__u32)n;
	submit(e, n);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], 0, FATHOM_SYS_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_write")
int exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], 0, FATHOM_SYS_SENDTO);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], 0, FATHOM_SYS_READ);
}

SEC("tracepoint/syscalls/sys_exit_read")
int exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_INGRESS);
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], 0, FATHOM_SYS_RECVFROM);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_INGRESS);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], FATHOM_SYS_WRITEV);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1], ctx->args[2], FATHOM_SYS_READV);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_INGRESS);
}

static __always_inline int on_enter_msg(__u64 fd, __u64 msgp, __u32 syscall)
{
	struct user_msghdr msg;
	if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)msgp))
		return 0;
	if (!msg.msg_iovlen)
		return 0;
	return on_enter(fd, (__u64)msg.msg_iov, msg.msg_iovlen, syscall);
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter_msg(ctx->args[0], ctx->args[1], FATHOM_SYS_SENDMSG);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_EGRESS);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter_msg(ctx->args[0], ctx->args[1], FATHOM_SYS_RECVMSG);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit(ctx->ret, FATHOM_KIND_INGRESS);
}

/* close(): reported before the fd goes away, so user space can end the flow. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	__u32 fd = (__u32)ctx->args[0];
	struct sock *sk = tcp_sock_of_fd(fd);
	if (!sk)
		return 0;
	struct fathom_sock_event *e = new_event(id, fd, sk);
	if (!e)
		return 0;
	e->ts_enter_ns = bpf_ktime_get_ns();
	e->ts_exit_ns = e->ts_enter_ns;
	e->kind = FATHOM_KIND_CLOSE;
	e->syscall = FATHOM_SYS_CLOSE;
	e->len = 0;
	e->captured = 0;
	submit(e, 0);
	return 0;
}
