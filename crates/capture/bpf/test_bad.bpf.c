// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* A program the verifier must reject (a map value used without its NULL check), for the test of the load-failure
 * path (src/ebpf/mod.rs: the error names the program and carries the verifier log). Never attached. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int rejected_by_verifier(void *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&values, &k);
	return (int)*v;
}
