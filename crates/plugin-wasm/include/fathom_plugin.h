/*
 * fathom_plugin.h: the Fathom WASM plugin ABI (versions 1 and 2) for plugins written in C.
 *
 * A plugin is a core wasm module with no imports that exports `memory` and the functions below; see
 * docs/plugins.md for the full contract. Build freestanding, without libc:
 *
 *   clang --target=wasm32 -O2 -nostdlib -mbulk-memory -Wl,--no-entry \
 *         -I crates/plugin-wasm/include -o frpc.wasm frpc.c
 *
 * (or --target=wasm32-wasi with wasi-libc, as long as the module ends up with no imports).
 *
 * Exports (mark them with FATHOM_EXPORT):
 *   int32_t fathom_abi_version(void);                         return FATHOM_ABI_VERSION (1 or 2)
 *   int32_t fathom_alloc(int32_t len);                        a buffer of len bytes, valid until the next call
 *   int32_t fathom_probe(int32_t ptr, int32_t len, int32_t dir);   FATHOM_PROBE_NO / _MAYBE / _YES
 *   int32_t fathom_parse(int32_t ptr, int32_t len, int32_t dir);   0 need more, <0 not mine, else the address
 *                                                                  of a fathom_result
 * Version 2 only (parser exports become optional; at least a parser or one hook):
 *   int32_t fathom_hook_protocols(void);                      FATHOM_HOOK_* bits (optional: default all)
 *   int32_t fathom_on_http_request(int32_t ptr, int32_t len); ptr: a fathom_http_input; return 0 (no change)
 *   int32_t fathom_on_http_response(int32_t ptr, int32_t len);  or the address of a fathom_hook_result
 *
 * Addresses are 32-bit offsets into the module's memory: on wasm32 a pointer converts with FATHOM_ADDR(p)
 * and back with FATHOM_PTR(type, addr).
 */
#ifndef FATHOM_PLUGIN_H
#define FATHOM_PLUGIN_H

#include <stdint.h>

#define FATHOM_ABI_VERSION 2

#define FATHOM_EXPORT(name) __attribute__((export_name(#name)))
#define FATHOM_ADDR(p) ((uint32_t)(uintptr_t)(p))
#define FATHOM_PTR(type, addr) ((type *)(uintptr_t)(uint32_t)(addr))

/* dir bits */
#define FATHOM_DIR_SERVER_TO_CLIENT 1 /* bit 0: 0 client -> server, 1 server -> client */
#define FATHOM_DIR_AFTER_GAP 2        /* bit 1: resynchronise (skip with FATHOM_KIND_SKIP) */

/* fathom_probe verdicts */
#define FATHOM_PROBE_NO 0
#define FATHOM_PROBE_MAYBE 1
#define FATHOM_PROBE_YES 2

/* fathom_result.kind */
#define FATHOM_KIND_REQUEST 0
#define FATHOM_KIND_RESPONSE 1
#define FATHOM_KIND_ONE_WAY 2
#define FATHOM_KIND_EVENT 3
#define FATHOM_KIND_SKIP 4

/* response status (fathom_result.status, fathom_hook_result.status) */
#define FATHOM_STATUS_UNSET 0
#define FATHOM_STATUS_OK 1
#define FATHOM_STATUS_CLIENT_ERROR 2
#define FATHOM_STATUS_SERVER_ERROR 3

/* fathom_result.flags */
#define FATHOM_FLAG_ID 1   /* id is valid: pair by id (else in order) */
#define FATHOM_FLAG_CODE 2 /* code is valid */

/* fathom_result.fields[] */
#define FATHOM_FIELD_REQUEST_TYPE 0
#define FATHOM_FIELD_REQUEST_DOMAIN 1
#define FATHOM_FIELD_REQUEST_RESOURCE 2
#define FATHOM_FIELD_ENDPOINT 3
#define FATHOM_FIELD_RESPONSE_EXCEPTION 4
#define FATHOM_FIELD_RESPONSE_RESULT 5

/* A string in guest memory; len 0 means absent. At most 4096 bytes, UTF-8. */
typedef struct fathom_str {
    uint32_t ptr;
    uint32_t len;
} fathom_str;

/* The 72-byte parse result record. */
typedef struct fathom_result {
    uint32_t consumed; /* 1..=len */
    uint8_t kind;      /* FATHOM_KIND_* */
    uint8_t status;    /* FATHOM_STATUS_* */
    uint8_t flags;     /* FATHOM_FLAG_* */
    uint8_t reserved;  /* 0 */
    uint64_t id;       /* correlation id / request_id */
    int64_t code;      /* response_code */
    fathom_str fields[6];
} fathom_result;

/* fathom_hook_protocols() bits */
#define FATHOM_HOOK_HTTP1 1
#define FATHOM_HOOK_HTTP2 2
#define FATHOM_HOOK_GRPC 4

/* fathom_http_input.protocol */
#define FATHOM_HTTP1 1
#define FATHOM_HTTP2 2
#define FATHOM_GRPC 3

/* fathom_http_input.flags */
#define FATHOM_INPUT_TRUNCATED 1 /* bytes holds less than the whole message */
#define FATHOM_INPUT_IPV6 2      /* ip_src / ip_dst are IPv6 (else IPv4 in their first 4 bytes) */
#define FATHOM_INPUT_STATUS 4    /* status_code is valid */

/* One header (HTTP/1 only; HTTP/2 and gRPC header blocks are HPACK-coded and not passed). */
typedef struct fathom_header {
    fathom_str name;
    fathom_str value;
} fathom_header;

/* The 112-byte fixed part of the hook input; the strings it points to follow it in the same buffer. */
typedef struct fathom_http_input {
    uint32_t total_len;     /* the whole input, strings included */
    uint8_t protocol;       /* FATHOM_HTTP1 / FATHOM_HTTP2 / FATHOM_GRPC */
    uint8_t direction;      /* 0 client -> server, 1 server -> client */
    uint8_t kind;           /* 0 request, 1 response */
    uint8_t flags;          /* FATHOM_INPUT_* */
    uint16_t port_src;      /* client port */
    uint16_t port_dst;      /* server port */
    uint32_t header_count;  /* entries at headers_ptr */
    uint8_t ip_src[16];     /* client address */
    uint8_t ip_dst[16];     /* server address */
    int64_t status_code;    /* HTTP status / grpc-status, when FATHOM_INPUT_STATUS */
    uint64_t time_us;       /* capture time of the first byte */
    fathom_str method;      /* requests */
    fathom_str path;        /* requests: path with query */
    fathom_str host;        /* requests: Host / :authority */
    fathom_str endpoint;    /* requests: the endpoint the parser derived */
    uint32_t headers_ptr;   /* fathom_header[header_count] */
    uint32_t reserved;
    fathom_str bytes;       /* the first bytes of the message (at most 4096) */
} fathom_http_input;

/* fathom_hook_result.flags: which fields to set (a string of len 0 clears the field) */
#define FATHOM_SET_ENDPOINT 1
#define FATHOM_SET_REQUEST_TYPE 2
#define FATHOM_SET_STATUS 4
#define FATHOM_SET_CODE 8
#define FATHOM_SET_EXCEPTION 16

/* A tag to add to the log: key 1..=128 bytes, value at most 4096. */
typedef struct fathom_tag {
    fathom_str key;
    fathom_str value;
} fathom_tag;

#define FATHOM_MAX_TAGS 16

/* The 48-byte hook result record. */
typedef struct fathom_hook_result {
    uint8_t flags;      /* FATHOM_SET_* */
    uint8_t status;     /* FATHOM_STATUS_OK..SERVER_ERROR when FATHOM_SET_STATUS */
    uint16_t reserved0;
    uint32_t tag_count; /* at most FATHOM_MAX_TAGS */
    int64_t code;       /* when FATHOM_SET_CODE */
    uint32_t tags_ptr;  /* fathom_tag[tag_count] */
    uint32_t reserved1;
    fathom_str endpoint;
    fathom_str request_type;
    fathom_str exception;
} fathom_hook_result;

_Static_assert(sizeof(fathom_result) == 72, "fathom_result is 72 bytes");
_Static_assert(sizeof(fathom_http_input) == 112, "fathom_http_input is 112 bytes");
_Static_assert(sizeof(fathom_hook_result) == 48, "fathom_hook_result is 48 bytes");

static inline fathom_str fathom_str_of(const void *p, uint32_t len) {
    fathom_str s = {FATHOM_ADDR(p), len};
    return s;
}

#endif /* FATHOM_PLUGIN_H */
