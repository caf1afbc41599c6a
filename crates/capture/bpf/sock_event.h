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
#define FATHOM_KIND_CLOSE 2   /* close() of a TCP socket */

/* syscall */
#define FATHOM_SYS_WRITE 0
#define FATHOM_SYS_READ 1
#define FATHOM_SYS_SENDTO 2
#define FATHOM_SYS_RECVFROM 3
#define FATHOM_SYS_CLOSE 4
#define FATHOM_SYS_WRITEV 5
#define FATHOM_SYS_READV 6
#define FATHOM_SYS_SENDMSG 7
#define FATHOM_SYS_RECVMSG 8
#define FATHOM_SYS_SSL_WRITE 32 /* OpenSSL SSL_write/SSL_write_ex (bpf/ssl_trace.h) */
#define FATHOM_SYS_SSL_READ 33  /* OpenSSL SSL_read/SSL_read_ex */

/* flags */
#define FATHOM_FLAG_TLS 2 /* data is TLS plaintext from a library hook (not a syscall) */

struct fathom_sock_event {
	__u64 ts_enter_ns; /* bpf_ktime_get_ns() at syscall entry (CLOCK_MONOTONIC) */
	__u64 ts_exit_ns;  /* at syscall exit (== ts_enter_ns for close) */
	__u32 pid;         /* tgid */
	__u32 tid;
	__u32 fd;
	__u32 len;      /* bytes the syscall transferred (its return value) */
	__u32 captured; /* bytes in data (<= len, <= the capture length) */
	__u8 kind;      /* FATHOM_KIND_* */
	__u8 family;    /* AF_INET (2) or AF_INET6 (10) */
	__u8 syscall;   /* FATHOM_SYS_* */
	__u8 flags; /* FATHOM_FLAG_* */
	__u16 lport; /* local port, host order */
	__u16 rport; /* remote port, host order */
	__u8 laddr[16]; /* local address (first 4 bytes for AF_INET), network order */
	__u8 raddr[16]; /* remote address */
	char comm[FATHOM_COMM_LEN];
	__u8 data[FATHOM_MAX_DATA];
};

/* Bytes before data: what is sent for an event with `captured` payload bytes is FATHOM_HDR_LEN + captured. */
#define FATHOM_HDR_LEN 92

/* The layout user space mirrors (checked by its test against the same numbers). */
_Static_assert(__builtin_offsetof(struct fathom_sock_event, pid) == 16, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, len) == 28, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, kind) == 36, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, lport) == 40, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, laddr) == 44, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, raddr) == 60, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, comm) == 76, "layout");
_Static_assert(__builtin_offsetof(struct fathom_sock_event, data) == FATHOM_HDR_LEN, "layout");
_Static_assert(sizeof(struct fathom_sock_event) == 16480, "layout");

#endif
