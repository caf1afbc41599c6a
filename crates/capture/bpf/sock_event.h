/* Event layout shared by the eBPF programs (sock_trace.bpf.c) and user space (src/ebpf/event.rs, a #[repr(C)]
 * mirror checked by a size/offset test). Change both together. */
#ifndef FATHOM_SOCK_EVENT_H
#define FATHOM_SOCK_EVENT_H

/* Largest payload prefix one event carries (the configurable capture length is capped to this). */
#define FATHOM_MAX_DATA 16384
#define FATHOM_COMM_LEN 16

/* kind */
#define FATHOM_KIND_EGRESS 0  /* write/sendto/writev/sendmsg: bytes leave the process */
#define FATHOM_KIND_INGRESS 1 /* read/recvfrom/readv/recvmsg: bytes enter the process */
#define FATHOM_KIND_CLOSE 2   /* close() of a traced socket */
#define FATHOM_KIND_CONNECT 3 /* connect() returned 0 or EINPROGRESS: this process is the socket's client */
#define FATHOM_KIND_ACCEPT 4  /* accept()/accept4() returned this socket: this process is its server */
#define FATHOM_KIND_EXIT 5    /* the process (its thread group leader) exited: its sockets are gone; no socket fields */

/* syscall (what made the event; values >= 32 are reserved for library hooks such as OpenSSL) */
#define FATHOM_SYS_WRITE 0
#define FATHOM_SYS_READ 1
#define FATHOM_SYS_SENDTO 2
#define FATHOM_SYS_RECVFROM 3
#define FATHOM_SYS_CLOSE 4
#define FATHOM_SYS_WRITEV 5
#define FATHOM_SYS_READV 6
#define FATHOM_SYS_SENDMSG 7
#define FATHOM_SYS_RECVMSG 8
#define FATHOM_SYS_CONNECT 9
#define FATHOM_SYS_ACCEPT 10
#define FATHOM_SYS_ACCEPT4 11
#define FATHOM_SYS_SENDMMSG 12 /* the first 4 messages of the vector, one event each */
#define FATHOM_SYS_RECVMMSG 13
#define FATHOM_SYS_SSL_WRITE 32 /* OpenSSL SSL_write/SSL_write_ex (bpf/ssl_trace.h) */
#define FATHOM_SYS_SSL_READ 33  /* OpenSSL SSL_read/SSL_read_ex */

/* role: what the traced process is on this socket, as far as the kernel side knows */
#define FATHOM_ROLE_UNKNOWN 0 /* opened before tracing started (user space guesses from listening ports) */
#define FATHOM_ROLE_CLIENT 1  /* the process connect()ed it (or, for UDP, sent first) */
#define FATHOM_ROLE_SERVER 2  /* the process accept()ed it (or, for UDP, received first) */

/* flags */
#define FATHOM_FLAG_TCP_SEQ 1 /* tcp_seq is valid */
#define FATHOM_FLAG_TLS 2     /* data is TLS plaintext from a library hook (not a syscall) */

struct fathom_sock_event {
	__u64 ts_enter_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) at the call's entry: only OpenSSL plaintext events
			    * have one (SSL call entry); syscall events are timed at their exit and set both equal */
	__u64 ts_exit_ns;  /* at the call's exit (close: at its entry) */
	__u64 socket_id;   /* unique per socket for the life of the programs (never reused) */
	__u64 trace_id;    /* syscall_trace_id (thread causality, see docs/ebpf.md), 0 when none */
	__u64 cgroup_id;   /* cgroup v2 id of the thread */
	__u32 pid;         /* tgid */
	__u32 tid;
	__u32 fd;
	__u32 len;      /* bytes the syscall transferred (its return value) */
	__u32 captured; /* bytes in data (<= len, <= the capture length) */
	__u32 sock_seq; /* per-socket event number, 0, 1, 2...: a hole means events were lost */
	__u32 tcp_seq;  /* TCP sequence number of the first byte (write_seq or copied_seq at exit minus the length, minus
			 * the FIN a read consumed; MSG_PEEK: copied_seq) */
	__u8 kind;      /* FATHOM_KIND_* */
	__u8 family;    /* AF_INET (2) or AF_INET6 (10) */
	__u8 syscall;   /* FATHOM_SYS_* */
	__u8 l4;        /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 role;      /* FATHOM_ROLE_* */
	__u8 flags;     /* FATHOM_FLAG_* */
	__u16 lport;    /* local port, host order */
	__u16 rport;    /* remote port, host order */
	__u16 pad0;
	__u8 laddr[16]; /* local address (first 4 bytes for AF_INET), network order */
	__u8 raddr[16]; /* remote address (the datagram's peer for unconnected UDP) */
	char comm[FATHOM_COMM_LEN]; /* the process's name (its thread group leader's comm) */
	__u8 data[FATHOM_MAX_DATA];
};

/* Bytes before data: what is sent for an event with `captured` payload bytes is FATHOM_HDR_LEN + captured. */
#define FATHOM_HDR_LEN 128

/* The layout user space mirrors (checked by its test against the same numbers). */
_Static_assert(__builtin_offsetof(struct fathom_sock_event, socket_id) == 16, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, trace_id) == 24, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, cgroup_id) == 32, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, pid) == 40, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, len) == 52, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, sock_seq) == 60, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, tcp_seq) == 64, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, kind) == 68, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, role) == 72, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, lport) == 74, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, laddr) == 80, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, raddr) == 96, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, comm) == 112, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, data) == FATHOM_HDR_LEN, "layout");
_Static_assert(sizeof(struct fathom_sock_event) == 16512, "layout");

/* In-kernel filter (the `fathom_config` array map, index 0). A thread is traced when its tgid is not self_pid and it
 * passes every enabled filter: tgid in `filter_pids`, comm in `filter_comms`, cgroup (or an ancestor up to
 * FATHOM_CGROUP_LEVELS) in `filter_cgroups`. */
#define FATHOM_FILTER_PID 1
#define FATHOM_FILTER_COMM 2
#define FATHOM_FILTER_CGROUP 4
#define FATHOM_CGROUP_LEVELS 8

/* Up to this many pids are also written into the config itself (checked without a hash lookup). */
#define FATHOM_INLINE_PIDS 8

struct fathom_config {
	__u32 self_pid;    /* never traced (the agent's tgid), 0: none */
	__u32 capture_len; /* payload bytes per event, <= FATHOM_MAX_DATA */
	__u32 filters;     /* FATHOM_FILTER_* enabled */
	__u32 inline_pids; /* with FATHOM_FILTER_PID: n <= FATHOM_INLINE_PIDS when the pids are all in pids[0..n]
			    * (filter_pids holds them too), 0 when only filter_pids holds them */
	__u32 pids[FATHOM_INLINE_PIDS];
};
_Static_assert(sizeof(struct fathom_config) == 48, "layout");

/* Per-CPU counters (the `stats` per-CPU array map), index: */
#define FATHOM_STAT_RING_DROPS 0 /* events lost: the ring buffer was full */
#define FATHOM_STAT_NO_PEER 1    /* datagrams of an unconnected UDP socket whose peer could not be read */
#define FATHOM_STAT_MMSG_SKIPPED 2 /* messages of sendmmsg/recvmmsg after the fourth (not captured) */
#define FATHOM_STAT_NO_THREAD_STATE 3 /* calls not traced: the thread's state (task storage) could not be had */
#define FATHOM_STAT_COUNT 4

#endif
