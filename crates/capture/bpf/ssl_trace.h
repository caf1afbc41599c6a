/* OpenSSL plaintext: uprobes on SSL_read/SSL_read_ex/SSL_write/SSL_write_ex (and, for ciphertext suppression
 * only, SSL_do_handshake/SSL_shutdown/SSL_peek/SSL_peek_ex) of libssl, one uretprobe for all of them.
 * #included by sock_trace.bpf.c after its maps and traced(); uses its socket helpers (declared below).
 *
 * Method: at SSL_* entry the thread remembers (SSL*, buffer, stack pointer) in its task storage (thread_ctx.ssl). The read/write
 * syscalls the thread makes before the call returns are OpenSSL moving ciphertext through the socket: the first
 * one names the SSL object's fd (ssl_syscall_enter) and all those on that fd are not reported
 * (ssl_syscall_is_ciphertext, counted). At the return the plaintext (the first capture_len bytes of the buffer,
 * the real length kept) becomes an ordinary data event of that fd's socket with FATHOM_FLAG_TLS. Calls served
 * from OpenSSL's own buffer make no syscall: their fd comes from ssl_fds, (pid, SSL*) -> the fd seen last. */
#ifndef FATHOM_SSL_TRACE_H
#define FATHOM_SSL_TRACE_H

#include <bpf/bpf_tracing.h>

static __always_inline struct fathom_sock_event *new_event(__u64 id, __u32 fd, const struct sock_info *si);
static __always_inline struct sock_state *sock_state_of(__u64 sk, __u64 ino, __u8 role, int fresh);
static __always_inline __u64 trace_id_of(struct thread_ctx *t, __u64 socket_id, int ingress);
static __always_inline void submit(struct fathom_sock_event *e, struct sock_state *st, __u64 n);

#define SSL_OP_READ 0
#define SSL_OP_WRITE 1
#define SSL_OP_OTHER 2 /* handshake, shutdown, peek: no plaintext event, only fd learning and suppression */

#define SSL_FD_UNKNOWN 0xffffffffu

/* ssl_counters indexes (per CPU; user space sums them) */
#define SSL_CNT_SUPPRESSED 0 /* ciphertext syscalls inside SSL calls, not reported */
#define SSL_CNT_NO_FD 1      /* plaintext calls whose socket was never seen: their bytes are lost */
#define SSL_CNT_EVENTS 2     /* plaintext events produced */
#define SSL_CNT_STALE 3      /* call entries whose return was never seen (replaced) */
#define SSL_CNT_N 4

struct ssl_key {
	__u64 ssl;
	__u32 pid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ssl_key);
	__type(value, __u32); /* fd */
} ssl_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SSL_CNT_N);
	__type(key, __u32);
	__type(value, __u64);
} ssl_counters SEC(".maps");

static __always_inline void ssl_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&ssl_counters, &idx);
	if (v)
		*v += 1;
}

/* A read/write syscall on inet socket fd starts on thread id: inside an SSL call, the first such fd is the
 * SSL's socket. */
static __always_inline void ssl_syscall_enter(struct thread_ctx *t, __u32 fd)
{
	if (t->in_ssl && t->ssl.fd == SSL_FD_UNKNOWN)
		t->ssl.fd = fd;
}

/* A syscall on fd that moved bytes returns: 1 when it is the ciphertext of an SSL call (not to be reported). */
static __always_inline int ssl_syscall_is_ciphertext(struct thread_ctx *t, __u32 fd)
{
	if (!t->in_ssl || t->ssl.fd != fd)
		return 0;
	ssl_count(SSL_CNT_SUPPRESSED);
	return 1;
}

static __always_inline int ssl_enter(struct pt_regs *ctx, __u32 op, int ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	__u64 sp = PT_REGS_SP(ctx);
	struct thread_ctx *t = thread_ctx_create();
	if (!t)
		return 0;
	if (t->in_ssl) {
		if (t->ssl.sp > sp)
			return 0; /* nested inside an outer SSL call of this thread: the outer one reports */
		ssl_count(SSL_CNT_STALE);
	}
	t->ssl.ssl = PT_REGS_PARM1(ctx);
	t->ssl.buf = PT_REGS_PARM2(ctx);
	t->ssl.ex_len = ex ? PT_REGS_PARM4(ctx) : 0;
	t->ssl.ts = bpf_ktime_get_ns();
	t->ssl.sp = sp;
	t->ssl.fd = SSL_FD_UNKNOWN;
	t->ssl.op = op;
	t->in_ssl = 1;
	return 0;
}

SEC("uprobe")
int ssl_read_enter(struct pt_regs *ctx)
{
	return ssl_enter(ctx, SSL_OP_READ, 0);
}

SEC("uprobe")
int ssl_read_ex_enter(struct pt_regs *ctx)
{
	return ssl_enter(ctx, SSL_OP_READ, 1);
}

SEC("uprobe")
int ssl_write_enter(struct pt_regs *ctx)
{
	return ssl_enter(ctx, SSL_OP_WRITE, 0);
}

SEC("uprobe")
int ssl_write_ex_enter(struct pt_regs *ctx)
{
	return ssl_enter(ctx, SSL_OP_WRITE, 1);
}

SEC("uprobe")
int ssl_other_enter(struct pt_regs *ctx)
{
	return ssl_enter(ctx, SSL_OP_OTHER, 0);
}

/* The return of any hooked SSL function. */
SEC("uretprobe")
int ssl_ret(struct pt_regs *ctx)
{
	struct thread_ctx *t = thread_ctx();
	if (!t || !t->in_ssl)
		return 0;
	__u64 sp = PT_REGS_SP(ctx);
#if defined(__TARGET_ARCH_x86)
	sp -= 8; /* `ret` popped the return address the entry saw at the top of the stack */
#endif
	if (t->ssl.sp != sp)
		return 0; /* a nested SSL call returns */
	struct ssl_call c = t->ssl;
	t->in_ssl = 0;
	__u64 id = bpf_get_current_pid_tgid();

	struct ssl_key k = {.ssl = c.ssl, .pid = (__u32)(id >> 32), .pad = 0};
	__u32 fd = c.fd;
	__u32 *known = bpf_map_lookup_elem(&ssl_fds, &k);
	if (fd != SSL_FD_UNKNOWN) {
		/* Written only when new or changed: an LRU update costs several times a lookup. */
		if (!known || *known != fd)
			bpf_map_update_elem(&ssl_fds, &k, &fd, BPF_ANY);
	} else if (known) {
		fd = *known;
	}
	if (c.op == SSL_OP_OTHER)
		return 0;

	long rc = PT_REGS_RC(ctx);
	__u64 len;
	if (c.ex_len) {
		if ((int)rc <= 0) /* _ex: 1 on success; the internal functions: > 0 */
			return 0;
		__u64 done = 0;
		if (bpf_probe_read_user(&done, sizeof(done), (const void *)c.ex_len))
			return 0;
		len = done;
	} else {
		if ((int)rc <= 0)
			return 0;
		len = (__u64)(int)rc;
	}
	if (len == 0)
		return 0;
	if (fd == SSL_FD_UNKNOWN) {
		ssl_count(SSL_CNT_NO_FD);
		return 0;
	}
	struct sock_info *si = sock_of_fd(id, fd, 0);
	if (!si) {
		ssl_count(SSL_CNT_NO_FD);
		return 0;
	}
	if (si->rport == 0 || si->l4 != IPPROTO_TCP)
		return 0;
	struct sock_info info = *si;
	struct fathom_sock_event *e = new_event(id, fd, &info);
	if (!e)
		return 0;
	struct sock_state *st = sock_state_of(info.sk, info.ino, FATHOM_ROLE_UNKNOWN, 0);
	if (!st)
		return 0;
	int ingress = c.op == SSL_OP_READ;
	e->ts_enter_ns = c.ts;
	e->ts_exit_ns = bpf_ktime_get_ns();
	e->kind = ingress ? FATHOM_KIND_INGRESS : FATHOM_KIND_EGRESS;
	e->syscall = ingress ? FATHOM_SYS_SSL_READ : FATHOM_SYS_SSL_WRITE;
	e->flags = FATHOM_FLAG_TLS; /* no tcp_seq: the bytes on the wire are ciphertext */
	e->trace_id = trace_id_of(t, st->socket_id, ingress);
	e->len = len > 0xffffffffull ? 0xffffffffu : (__u32)len;
	__u64 n = len;
	struct fathom_config *cfg = get_config();
	__u64 cap = cfg ? cfg->capture_len : 0;
	if (n > cap)
		n = cap;
	asm volatile("" : "+r"(n));
	if (n > FATHOM_MAX_DATA)
		n = FATHOM_MAX_DATA;
	if (bpf_probe_read_user(e->data, n, (const void *)c.buf))
		n = 0;
	e->captured = (__u32)n;
	ssl_count(SSL_CNT_EVENTS);
	submit(e, st, n);
	return 0;
}

#endif
