// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* Socket data of running processes from syscall tracepoints, for AF_INET/AF_INET6 TCP and UDP sockets:
 *   data:    read/write, readv/writev (first MAX_IOV iovecs), recvfrom/sendto, recvmsg/sendmsg, recvmmsg/sendmmsg
 *            (the first MAX_MMSG messages)
 *   roles:   connect (client), accept/accept4 (server)
 *   end:     close
 * Only the exits of the calls are hooked (and close's entry, while the fd is still there): at a syscall's exit the
 * task's saved registers still hold its arguments, so the exit program checks the in-kernel filter (config map),
 * resolves fd -> struct socket -> sock, keeps inet TCP/UDP sockets and emits one fathom_sock_event with the first
 * bytes. Per socket, a state (LRU) gives the socket id, the event sequence number and the role; the thread's task
 * storage holds its syscall trace id (see docs/ebpf.md) and the OpenSSL call in progress.
 *
 * Cost: these programs run inside the traced processes' syscalls, so every nanosecond is taken from them.
 * What an fd's socket is (its struct file, inode number, struct sock, addresses) is cached per (tgid, fd) in
 * fd_cache: a data syscall on a known socket costs one read of the fd table slot plus two reads to check the
 * cached file is still the one behind the fd (its inode number; inode numbers of new sockets keep increasing),
 * instead of a dozen reads down file -> socket -> sock. The task is reached through bpf_get_current_task_btf()
 * (direct loads, no helper call); per-thread state lives in task storage (no hash, freed with the thread);
 * ids come from per-CPU counters (no shared cache line). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sock_event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115


/* Vectored calls: iovec entries copied at most (the rest of the bytes is counted, not captured). */
#define MAX_IOV 8

/* What the socket behind an fd is: cached per (tgid, fd) in fd_cache, copied into a call's arguments. */
struct sock_info {
	__u64 file; /* the struct file * the fd pointed to */
	__u64 ino;  /* its sockfs inode number (a freed struct file may come back at the same address) */
	__u64 sk;   /* struct sock * */
	__u8 family;
	__u8 l4;
	__u16 lport; /* host order */
	__u16 rport; /* host order, 0: not connected */
	__u16 pad;
	__u8 laddr[16];
	__u8 raddr[16];
};

struct fd_key {
	__u32 tgid;
	__u32 fd;
};

/* A data call, as its exit program sees it. */
struct args {
	__u64 buf;    /* the buffer, or the iovec array when iovcnt != 0 */
	__u64 iovcnt; /* 0 for plain-buffer calls */
	__u64 ts;     /* at the call's exit */
	__u64 addr;   /* user sockaddr * of sendto/recvfrom/sendmsg/recvmsg (the datagram's peer), 0 if none */
	__u32 fd;
	__u32 syscall;
	__u32 tcp_seq;
	__u32 flags; /* FATHOM_FLAG_TCP_SEQ */
	struct sock_info si;
};

/* One SSL call in progress on a thread (the outermost one when they nest); see ssl_trace.h. */
struct ssl_call {
	__u64 ssl;    /* the SSL * */
	__u64 buf;    /* the plaintext buffer */
	__u64 ex_len; /* the size_t * (readbytes/written) of the _ex variants and of OpenSSL's internal
		       * ssl_read_internal/ssl_write_internal; 0 for SSL_read/SSL_write */
	__u64 ts;
	__u64 sp; /* stack pointer at entry: tells the call's own return from nested ones, and stale entries */
	__u32 fd; /* first fd a syscall used during the call, SSL_FD_UNKNOWN before */
	__u32 op; /* SSL_OP_* */
};

/* Per thread (task storage: created at the thread's first traced ingress or SSL call, freed with the thread). */
struct thread_ctx {
	__u32 in_ssl; /* ssl describes an SSL call in progress */
	__u32 pad;
	__u64 trace_id;     /* of the thread's last ingress, 0 when none */
	__u64 trace_socket; /* the socket of that ingress */
	struct ssl_call ssl;
};

/* The event plus slack, so that the verifier can prove iovec copies in bounds: either offset <= MAX - TAIL and
 * length <= MAX, or offset <= MAX and length <= TAIL (always true then: length <= MAX - offset). A per-CPU value
 * must stay within 32 KiB. */
#define IOV_TAIL 256
struct scratch_buf {
	struct fathom_sock_event e;
	__u8 slack[FATHOM_MAX_DATA - IOV_TAIL];
};

struct sock_state {
	__u64 socket_id;
	__u32 seq; /* next event number */
	__u8 role;
	__u8 pad[3];
};

/* A socket: its struct sock and its sockfs inode number (the pointer alone may be reused after a close the programs
 * never saw, e.g. at process exit; the inode numbers of new sockets keep increasing). */
struct sock_key {
	__u64 sk;
	__u64 ino;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fathom_config);
} fathom_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} filter_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[FATHOM_COMM_LEN]);
	__type(value, __u8);
} filter_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
} filter_cgroups SEC(".maps");

/* Per thread: the call in progress, the SSL call in progress, the trace id. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_ctx);
} tasks SEC(".maps");

/* Per (tgid, fd): the socket behind it, checked against the fd table at each use; removed on close, LRU for fds
 * whose close is never seen (process exit, dup2 over them). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fd_key);
	__type(value, struct sock_info);
} fd_cache SEC(".maps");

/* Per socket, removed on close; LRU for sockets whose close is never seen (process exit). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, struct sock_state);
} socks SEC(".maps");

/* Id generators, per CPU (an id is (count << 12) | cpu): index 0 socket ids, 1 trace ids. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_buf);
} scratch SEC(".maps");

/* FATHOM_STAT_* counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FATHOM_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &stat);
	if (v)
		*v += 1;
}

/* A new id, never 0, unique across CPUs. */
static __always_inline __u64 next_id(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&ids, &which);
	if (!v)
		return 0;
	__u64 n = __sync_fetch_and_add(v, 1) + 1; /* atomic: another program may preempt this one on the CPU */
	return (n << 12) | (bpf_get_smp_processor_id() & 0xfff);
}

static __always_inline struct fathom_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&fathom_config, &zero);
}

/* The process's name: the comm of the thread group leader (a worker thread may have renamed itself). */
static __always_inline void process_comm(char *comm)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (bpf_probe_read_kernel(comm, FATHOM_COMM_LEN, task->group_leader->comm))
		bpf_get_current_comm(comm, FATHOM_COMM_LEN);
}

/* Whether the current thread passes the in-kernel filter. */
static __always_inline int traced(__u64 pid_tgid)
{
	struct fathom_config *c = get_config();
	if (!c)
		return 0;
	__u32 tgid = (__u32)(pid_tgid >> 32);
	if (tgid == c->self_pid)
		return 0;
	__u32 filters = c->filters;
	if (!filters)
		return 1;
	if (filters & FATHOM_FILTER_PID) {
		__u32 n = c->inline_pids;
		if (n) {
			int found = 0;
			for (int i = 0; i < FATHOM_INLINE_PIDS; i++) {
				if ((__u32)i < n && c->pids[i] == tgid)
					found = 1;
			}
			if (!found)
				return 0;
		} else if (!bpf_map_lookup_elem(&filter_pids, &tgid)) {
			return 0;
		}
	}
	if (filters & FATHOM_FILTER_COMM) {
		char comm[FATHOM_COMM_LEN] = {};
		process_comm(comm);
		if (!bpf_map_lookup_elem(&filter_comms, comm))
			return 0;
	}
	if (filters & FATHOM_FILTER_CGROUP) {
		__u64 cg = bpf_get_current_cgroup_id();
		if (bpf_map_lookup_elem(&filter_cgroups, &cg))
			return 1;
		for (int level = 1; level <= FATHOM_CGROUP_LEVELS; level++) {
			cg = bpf_get_current_ancestor_cgroup_id(level);
			if (!cg)
				break;
			if (bpf_map_lookup_elem(&filter_cgroups, &cg))
				return 1;
		}
		return 0;
	}
	return 1;
}

/* The current thread's state, NULL when it has none. */
static __always_inline struct thread_ctx *thread_ctx(void)
{
	return bpf_task_storage_get(&tasks, bpf_get_current_task_btf(), 0, 0);
}

/* The current thread's state, created when missing; NULL (counted) when the kernel cannot give it (no memory, or
 * task storage busy on this CPU). */
static __always_inline struct thread_ctx *thread_ctx_create(void)
{
	struct thread_ctx *t =
		bpf_task_storage_get(&tasks, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		count(FATHOM_STAT_NO_THREAD_STATE);
	return t;
}

/* The struct file * behind fd in the current task's fd table, 0 when none. */
static __always_inline __u64 file_of_fd(__u32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	__u64 slot = (__u64)fdt->fd + (__u64)fd * sizeof(void *);
	__u64 file = 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), (const void *)slot))
		return 0;
	return file;
}

/* Addresses of sk into si (family and l4 set). */
static __always_inline void read_addrs(struct sock_info *si, struct sock *sk)
{
	si->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	si->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(si->laddr, 0, sizeof(si->laddr));
	__builtin_memset(si->raddr, 0, sizeof(si->raddr));
	if (si->family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(si->laddr, &l, 4);
		__builtin_memcpy(si->raddr, &r, 4);
	} else {
		BPF_CORE_READ_INTO(&si->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&si->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

/* si for the struct file `file` when it is an AF_INET/AF_INET6 TCP or UDP socket; -1 otherwise. */
static __always_inline int resolve_file(__u64 file, struct sock_info *si)
{
	struct file *f = (struct file *)file;
	struct inode *inode = BPF_CORE_READ(f, f_inode);
	if (!inode)
		return -1;
	umode_t mode = BPF_CORE_READ(inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return -1;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return -1;
	short type = BPF_CORE_READ(sock, type);
	if (type != SOCK_STREAM && type != SOCK_DGRAM)
		return -1;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return -1;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return -1;
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -1;
	si->file = file;
	si->ino = BPF_CORE_READ(inode, i_ino);
	si->sk = (__u64)sk;
	si->family = (__u8)family;
	si->l4 = (__u8)proto;
	si->pad = 0;
	read_addrs(si, sk);
	return 0;
}

/* The inet TCP/UDP socket behind fd of the current process, NULL when it is something else. From fd_cache when
 * the fd still holds the cached file; resolved anew (and cached) otherwise, or always when `fresh` (connect and
 * accept change or create the addresses). */
static __always_inline struct sock_info *sock_of_fd(__u64 pid_tgid, __u32 fd, int fresh)
{
	__u64 file = file_of_fd(fd);
	if (!file)
		return NULL;
	struct fd_key k = {.tgid = (__u32)(pid_tgid >> 32), .fd = fd};
	struct sock_info *ci = bpf_map_lookup_elem(&fd_cache, &k);
	if (ci && !fresh && ci->file == file) {
		struct inode *inode = BPF_CORE_READ((struct file *)file, f_inode);
		if (inode && BPF_CORE_READ(inode, i_ino) == ci->ino)
			return ci;
	}
	struct sock_info si = {};
	if (resolve_file(file, &si)) {
		if (ci)
			bpf_map_delete_elem(&fd_cache, &k);
		return NULL;
	}
	bpf_map_update_elem(&fd_cache, &k, &si, BPF_ANY);
	return bpf_map_lookup_elem(&fd_cache, &k);
}

#include "ssl_trace.h" /* OpenSSL uprobes; the exit programs call ssl_syscall_enter/ssl_syscall_is_ciphertext */

/* The peer of an unconnected UDP datagram, from the user sockaddr of sendto/recvfrom/sendmsg/recvmsg. A v4 peer
 * of a v6 socket is written v4-mapped. Returns 0 when it could be read. */
static __always_inline int peer_from_sockaddr(struct fathom_sock_event *e, __u64 addr)
{
	if (!addr)
		return -1;
	__u16 family = 0;
	if (bpf_probe_read_user(&family, sizeof(family), (const void *)addr))
		return -1;
	if (family == AF_INET) {
		struct sockaddr_in sin;
		if (bpf_probe_read_user(&sin, sizeof(sin), (const void *)addr))
			return -1;
		__builtin_memset(e->raddr, 0, sizeof(e->raddr));
		if (e->family == AF_INET6) {
			e->raddr[10] = 0xff;
			e->raddr[11] = 0xff;
			__builtin_memcpy(&e->raddr[12], &sin.sin_addr.s_addr, 4);
		} else {
			__builtin_memcpy(e->raddr, &sin.sin_addr.s_addr, 4);
		}
		e->rport = __builtin_bswap16(sin.sin_port);
		return 0;
	}
	if (family == AF_INET6 && e->family == AF_INET6) {
		struct sockaddr_in6 sin6;
		if (bpf_probe_read_user(&sin6, sizeof(sin6), (const void *)addr))
			return -1;
		__builtin_memcpy(e->raddr, &sin6.sin6_addr, 16);
		e->rport = __builtin_bswap16(sin6.sin6_port);
		return 0;
	}
	return -1;
}

/* The state of a socket, created with `role` when missing, or anew when `fresh` (connect, accept). */
static __always_inline struct sock_state *sock_state_of(__u64 sk, __u64 ino, __u8 role, int fresh)
{
	struct sock_key k = {.sk = sk, .ino = ino};
	struct sock_state *st = fresh ? NULL : bpf_map_lookup_elem(&socks, &k);
	if (st)
		return st;
	struct sock_state n = {.socket_id = next_id(0), .seq = 0, .role = role};
	bpf_map_update_elem(&socks, &k, &n, fresh ? BPF_ANY : BPF_NOEXIST);
	return bpf_map_lookup_elem(&socks, &k);
}

/* The syscall trace id of a data event (DeepFlow's thread causality): an ingress starts a new id unless it
 * continues the thread's last ingress on the same socket; an egress on another socket than that ingress's
 * shares its id; an egress on the same socket (the reply) or without a prior ingress has none. */
static __always_inline __u64 trace_id_of(struct thread_ctx *t, __u64 socket_id, int ingress)
{
	if (ingress) {
		if (t->trace_id && t->trace_socket == socket_id)
			return t->trace_id;
		t->trace_id = next_id(1);
		t->trace_socket = socket_id;
		return t->trace_id;
	}
	if (t->trace_id && t->trace_socket != socket_id)
		return t->trace_id;
	return 0;
}

/* The scratch event with its header filled for fd's socket si (addresses, process); data fields zeroed. */
static __always_inline struct fathom_sock_event *new_event(__u64 id, __u32 fd, const struct sock_info *si)
{
	__u32 zero = 0;
	struct scratch_buf *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return NULL;
	struct fathom_sock_event *e = &s->e;
	e->pid = (__u32)(id >> 32);
	e->tid = (__u32)id;
	e->fd = fd;
	e->pad0 = 0;
	e->trace_id = 0;
	e->tcp_seq = 0;
	e->flags = 0;
	e->len = 0;
	e->captured = 0;
	e->cgroup_id = bpf_get_current_cgroup_id();
	process_comm(e->comm);
	e->family = si->family;
	e->l4 = si->l4;
	e->lport = si->lport;
	e->rport = si->rport;
	__builtin_memcpy(e->laddr, si->laddr, sizeof(e->laddr));
	__builtin_memcpy(e->raddr, si->raddr, sizeof(e->raddr));
	return e;
}

/* Wake the consumer only once this much data waits in the ring (an eighth of it); below that the consumer
 * finds the events at its next poll timeout (EbpfConfig::poll_timeout). A wakeup per event would cost an
 * irq_work (a self-IPI: an MSR write, which traps to the hypervisor on a VM) in the traced process on every
 * syscall: the largest part of the tracing overhead before this. */
#define FATHOM_WAKEUP_BYTES (1024 * 1024)

static __always_inline __u64 ring_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= FATHOM_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										 : BPF_RB_NO_WAKEUP;
}

/* Number the event on its socket and push it with `n` payload bytes. */
static __always_inline void submit(struct fathom_sock_event *e, struct sock_state *st, __u64 n)
{
	e->socket_id = st->socket_id;
	e->role = st->role;
	e->sock_seq = __sync_fetch_and_add(&st->seq, 1);
	asm volatile("" : "+r"(n));
	if (n > FATHOM_MAX_DATA)
		n = FATHOM_MAX_DATA;
	if (bpf_ringbuf_output(&events, e, FATHOM_HDR_LEN + n, ring_flags()))
		count(FATHOM_STAT_RING_DROPS);
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

/* The saved user registers of the current task: at a syscall's exit they still hold its arguments (only the return
 * register changed), so one exit program sees the whole call and no entry program is needed. */
static __always_inline struct pt_regs *syscall_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

#define MSG_PEEK 2

#define RCV_SHUTDOWN 1

/* The TCP sequence number of the first of the `moved` bytes a call just moved on tp: the socket's write_seq (egress)
 * or copied_seq (ingress) now, minus `moved`. A read that reached the peer's FIN also counted the FIN in copied_seq
 * (one sequence number): then all was read (copied_seq == rcv_nxt) and the peer shut down, and one more is taken
 * off; a FIN that arrives after the read is in rcv_nxt but not in copied_seq. A MSG_PEEK read moved nothing:
 * copied_seq is the first byte's. */
static __always_inline __u32 tcp_seq_at_exit(struct tcp_sock *tp, int ingress, __u32 moved, int peek)
{
	if (!ingress)
		return BPF_CORE_READ(tp, write_seq) - moved;
	__u32 copied = BPF_CORE_READ(tp, copied_seq);
	if (peek)
		return copied;
	__u32 seq = copied - moved;
	if ((BPF_CORE_READ(&tp->inet_conn.icsk_inet.sk, sk_shutdown) & RCV_SHUTDOWN) &&
	    BPF_CORE_READ(tp, rcv_nxt) == copied)
		seq -= 1;
	return seq;
}

/* One data event of `ret` bytes for the call `a` (its socket, buffer and sequence number filled); t may be NULL
 * (a thread without state yet: it gets one for the trace id of an ingress). */
static __always_inline int emit_data(__u64 id, struct thread_ctx *t, struct args *a, long ret, __u8 kind)
{
	if (t && ssl_syscall_is_ciphertext(t, a->fd))
		return 0;
	if (a->si.lport == 0) {
		/* An unbound UDP socket got its port from this call. */
		struct sock_info *now = sock_of_fd(id, a->fd, 1);
		if (!now)
			return 0;
		a->si = *now;
	}
	struct fathom_sock_event *e = new_event(id, a->fd, &a->si);
	if (!e)
		return 0;
	int ingress = kind == FATHOM_KIND_INGRESS;
	if (e->rport == 0) {
		/* Not connected: an unconnected UDP socket names the peer in the call. */
		if (e->l4 != IPPROTO_UDP || peer_from_sockaddr(e, a->addr)) {
			count(FATHOM_STAT_NO_PEER);
			return 0;
		}
	}
	/* UDP has no connect/accept for a server: who sends first is the client. */
	struct sock_state *st = sock_state_of(a->si.sk, a->si.ino,
					      e->l4 == IPPROTO_UDP ? (ingress ? FATHOM_ROLE_SERVER : FATHOM_ROLE_CLIENT)
								   : FATHOM_ROLE_UNKNOWN,
					      0);
	if (!st)
		return 0;
	e->ts_enter_ns = a->ts;
	e->ts_exit_ns = a->ts;
	e->kind = kind;
	e->syscall = (__u8)a->syscall;
	e->tcp_seq = a->tcp_seq;
	e->flags = (__u8)a->flags;
	if (ingress && !t)
		t = thread_ctx_create();
	e->trace_id = t ? trace_id_of(t, st->socket_id, ingress) : 0;
	e->len = (__u32)ret;
	__u64 n = (__u64)ret;
	struct fathom_config *c = get_config();
	__u64 cap = c ? c->capture_len : 0;
	if (n > cap)
		n = cap;
	/* Keep clang from comparing one register and passing another: the verifier must see the bound on n. */
	asm volatile("" : "+r"(n));
	if (n > FATHOM_MAX_DATA)
		n = FATHOM_MAX_DATA;
	if (a->iovcnt)
		n = copy_iov(e, a->buf, a->iovcnt, n);
	else if (bpf_probe_read_user(e->data, n, (const void *)a->buf))
		n = 0;
	e->captured = (__u32)n;
	submit(e, st, n);
	return 0;
}

/* The exit of a data call on `fd` that moved `ret` bytes. The TCP sequence number of its first byte is the socket's
 * (write_seq for an egress, copied_seq for an ingress) now minus `ret`, except for a MSG_PEEK read, which did not
 * advance copied_seq. */
static __always_inline int on_data_exit(__u64 id, long ret, __u64 fd, __u64 buf, __u64 iovcnt, __u64 addr,
					__u32 syscall, __u8 kind, int peek)
{
	if (ret <= 0) {
		/* Nothing moved (EAGAIN...), but inside an SSL call it still names the SSL's socket. */
		struct thread_ctx *t = thread_ctx();
		if (t && t->in_ssl && t->ssl.fd == SSL_FD_UNKNOWN && sock_of_fd(id, (__u32)fd, 0))
			ssl_syscall_enter(t, (__u32)fd);
		return 0;
	}
	struct sock_info *si = sock_of_fd(id, (__u32)fd, 0);
	if (!si)
		return 0;
	struct thread_ctx *t = thread_ctx();
	if (t)
		ssl_syscall_enter(t, (__u32)fd);
	struct args a = {.buf = buf,
			 .iovcnt = iovcnt,
			 .ts = bpf_ktime_get_ns(),
			 .addr = addr,
			 .fd = (__u32)fd,
			 .syscall = syscall,
			 .tcp_seq = 0,
			 .flags = 0,
			 .si = *si};
	if (a.si.l4 == IPPROTO_TCP) {
		a.tcp_seq = tcp_seq_at_exit((struct tcp_sock *)a.si.sk, kind == FATHOM_KIND_INGRESS, (__u32)ret, peek);
		a.flags = FATHOM_FLAG_TCP_SEQ;
	}
	return emit_data(id, t, &a, ret, kind);
}

SEC("tracepoint/syscalls/sys_exit_write")
int exit_write(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_data_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), 0, 0, FATHOM_SYS_WRITE,
			    FATHOM_KIND_EGRESS, 0);
}

SEC("tracepoint/syscalls/sys_exit_read")
int exit_read(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_data_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), 0, 0, FATHOM_SYS_READ,
			    FATHOM_KIND_INGRESS, 0);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_data_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), 0, PT_REGS_PARM5_SYSCALL(r),
			    FATHOM_SYS_SENDTO, FATHOM_KIND_EGRESS, 0);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_data_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), 0, PT_REGS_PARM5_SYSCALL(r),
			    FATHOM_SYS_RECVFROM, FATHOM_KIND_INGRESS, PT_REGS_PARM4_SYSCALL(r) & MSG_PEEK);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_data_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), PT_REGS_PARM3_SYSCALL(r), 0,
			    FATHOM_SYS_WRITEV, FATHOM_KIND_EGRESS, 0);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_data_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), PT_REGS_PARM3_SYSCALL(r), 0,
			    FATHOM_SYS_READV, FATHOM_KIND_INGRESS, 0);
}

static __always_inline int on_msg_exit(__u64 id, long ret, __u64 fd, __u64 msgp, __u32 syscall, __u8 kind,
				       int peek)
{
	if (ret <= 0)
		return 0;
	struct user_msghdr msg;
	if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)msgp))
		return 0;
	if (!msg.msg_iovlen)
		return 0;
	return on_data_exit(id, ret, fd, (__u64)msg.msg_iov, msg.msg_iovlen, (__u64)msg.msg_name, syscall, kind, peek);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_msg_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), FATHOM_SYS_SENDMSG,
			   FATHOM_KIND_EGRESS, 0);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_msg_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), FATHOM_SYS_RECVMSG,
			   FATHOM_KIND_INGRESS, PT_REGS_PARM3_SYSCALL(r) & MSG_PEEK);
}

/* sendmmsg/recvmmsg: the first MAX_MMSG messages of the vector are traced like sendmsg/recvmsg, one event each
 * (a message's length is its msg_len, which the kernel fills in); the others are counted in
 * FATHOM_STAT_MMSG_SKIPPED. (glibc's resolver sends its A and AAAA queries with one sendmmsg.) */
#define MAX_MMSG 4

static __always_inline int on_mmsg_exit(__u64 id, long ret, __u64 fd, __u64 vec, __u32 syscall, __u8 kind)
{
	if (ret <= 0 || !vec)
		return 0;
	struct sock_info *si = sock_of_fd(id, (__u32)fd, 0);
	if (!si)
		return 0;
	if (ret > MAX_MMSG) {
		__u32 stat = FATHOM_STAT_MMSG_SKIPPED;
		__u64 *v = bpf_map_lookup_elem(&stats, &stat);
		if (v)
			*v += (__u64)(ret - MAX_MMSG);
	}
	struct thread_ctx *t = thread_ctx();
	if (t)
		ssl_syscall_enter(t, (__u32)fd);
	struct args one = {.ts = bpf_ktime_get_ns(), .fd = (__u32)fd, .syscall = syscall, .si = *si};
	/* TCP: the sequence number of the first message is the socket's now minus all the bytes moved (known when
	 * every message is among the first MAX_MMSG). */
	__u32 seq = 0;
	int tcp_seq = 0;
	if (one.si.l4 == IPPROTO_TCP && ret <= MAX_MMSG) {
		__u32 total = 0;
		for (int i = 0; i < MAX_MMSG; i++) {
			if (i >= ret)
				break;
			__u32 len = 0;
			if (bpf_probe_read_user(&len, sizeof(len),
						(const void *)(vec + i * sizeof(struct mmsghdr) +
							       __builtin_offsetof(struct mmsghdr, msg_len))))
				break;
			total += len;
		}
		seq = tcp_seq_at_exit((struct tcp_sock *)one.si.sk, kind == FATHOM_KIND_INGRESS, total, 0);
		tcp_seq = 1;
	}
	for (int i = 0; i < MAX_MMSG; i++) {
		if (i >= ret)
			break;
		struct mmsghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)(vec + i * sizeof(m))))
			break;
		one.buf = (__u64)m.msg_hdr.msg_iov;
		one.iovcnt = m.msg_hdr.msg_iovlen;
		one.addr = (__u64)m.msg_hdr.msg_name;
		one.tcp_seq = seq;
		one.flags = tcp_seq ? FATHOM_FLAG_TCP_SEQ : 0;
		seq += m.msg_len;
		if (m.msg_len && one.iovcnt)
			emit_data(id, t, &one, m.msg_len, kind);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_mmsg_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), FATHOM_SYS_SENDMMSG,
			    FATHOM_KIND_EGRESS);
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_mmsg_exit(id, ctx->ret, PT_REGS_PARM1_SYSCALL(r), PT_REGS_PARM2_SYSCALL(r), FATHOM_SYS_RECVMMSG,
			    FATHOM_KIND_INGRESS);
}

/* An event without data for the socket si (connect, accept, close). */
static __always_inline void emit_control(__u64 id, __u32 fd, const struct sock_info *si, struct sock_state *st,
					 __u8 kind, __u8 syscall)
{
	struct fathom_sock_event *e = new_event(id, fd, si);
	if (!e)
		return;
	e->ts_enter_ns = bpf_ktime_get_ns();
	e->ts_exit_ns = e->ts_enter_ns;
	e->kind = kind;
	e->syscall = syscall;
	submit(e, st, 0);
}

/* connect() returned 0 or EINPROGRESS on fd (accept(): returned fd): this process is the socket's client (server).
 * The addresses are known now: the fd's cache entry is made anew. */
static __always_inline int on_role_exit(__u64 fd, __u8 role, __u8 kind, __u8 syscall)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!traced(id))
		return 0;
	struct sock_info *si = sock_of_fd(id, (__u32)fd, 1);
	if (!si)
		return 0;
	struct sock_state *st = sock_state_of(si->sk, si->ino, role, 1);
	if (!st)
		return 0;
	st->role = role;
	emit_control(id, (__u32)fd, si, st, kind, syscall);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
		return 0;
	struct pt_regs *r = syscall_regs();
	return on_role_exit(PT_REGS_PARM1_SYSCALL(r), FATHOM_ROLE_CLIENT, FATHOM_KIND_CONNECT, FATHOM_SYS_CONNECT);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	return on_role_exit(ctx->ret, FATHOM_ROLE_SERVER, FATHOM_KIND_ACCEPT, FATHOM_SYS_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	return on_role_exit(ctx->ret, FATHOM_ROLE_SERVER, FATHOM_KIND_ACCEPT, FATHOM_SYS_ACCEPT4);
}

/* close(): reported before the fd goes away, so user space can end the flow; the socket's state goes. Only fds
 * in fd_cache can be traced sockets: the close of any other fd costs one lookup. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct fd_key k = {.tgid = (__u32)(id >> 32), .fd = (__u32)ctx->args[0]};
	struct sock_info *ci = bpf_map_lookup_elem(&fd_cache, &k);
	if (!ci)
		return 0;
	struct sock_info si = *ci;
	bpf_map_delete_elem(&fd_cache, &k);
	if (!traced(id) || file_of_fd(k.fd) != si.file)
		return 0;
	struct sock_key key = {.sk = si.sk, .ino = si.ino};
	struct sock_state *st = bpf_map_lookup_elem(&socks, &key);
	if (!st)
		return 0; /* never traced */
	emit_control(id, k.fd, &si, st, FATHOM_KIND_CLOSE, FATHOM_SYS_CLOSE);
	bpf_map_delete_elem(&socks, &key);
	return 0;
}

/* A traced process exited: its sockets were closed by the kernel without close() calls. One event (no socket:
 * socket_id 0, AF_INET/TCP with zero addresses) so that user space ends its flows at once. */
SEC("tracepoint/sched/sched_process_exit")
int on_process_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)id != (__u32)(id >> 32) || !traced(id))
		return 0;
	__u32 zero = 0;
	struct scratch_buf *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	struct fathom_sock_event *e = &s->e;
	__builtin_memset(e, 0, FATHOM_HDR_LEN);
	e->ts_enter_ns = bpf_ktime_get_ns();
	e->ts_exit_ns = e->ts_enter_ns;
	e->pid = (__u32)(id >> 32);
	e->tid = (__u32)id;
	e->kind = FATHOM_KIND_EXIT;
	e->family = AF_INET;
	e->l4 = IPPROTO_TCP;
	process_comm(e->comm);
	if (bpf_ringbuf_output(&events, e, FATHOM_HDR_LEN, ring_flags()))
		count(FATHOM_STAT_RING_DROPS);
	return 0;
}
