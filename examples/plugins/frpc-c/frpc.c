/*
 * FRPC, an invented binary RPC protocol, parsed by a Fathom WASM plugin written in C (freestanding, no libc).
 *
 * Wire format: "FRPC", u8 kind (0 request, 1 response), u32 id (big-endian), u16 body length (big-endian),
 * body. A request body is the method name; a response body is a status byte (0 ok, 1 client error, 2 server
 * error) followed by an error text.
 *
 * Build (from the repository root):
 *   clang --target=wasm32 -O2 -nostdlib -mbulk-memory -Wl,--no-entry \
 *         -I crates/plugin-wasm/include -o frpc.wasm examples/plugins/frpc-c/frpc.c
 */
#include "fathom_plugin.h"

/* The host hands at most 256 KiB per parse batch by default (PluginConfig::max_parse_window). */
#define BUF_LEN (256 * 1024)
static uint8_t buf[BUF_LEN];
static fathom_result result;

FATHOM_EXPORT(fathom_abi_version) int32_t fathom_abi_version(void) { return FATHOM_ABI_VERSION; }

FATHOM_EXPORT(fathom_alloc) int32_t fathom_alloc(int32_t len) {
    if (len < 0 || len > BUF_LEN) return -1; /* out of bounds: the host refuses the call */
    return (int32_t)FATHOM_ADDR(buf);
}

static int is_frpc(const uint8_t *p, int32_t n) {
    return n >= 4 && p[0] == 'F' && p[1] == 'R' && p[2] == 'P' && p[3] == 'C';
}

FATHOM_EXPORT(fathom_probe) int32_t fathom_probe(int32_t ptr, int32_t len, int32_t dir) {
    (void)dir;
    return is_frpc(FATHOM_PTR(const uint8_t, ptr), len) ? FATHOM_PROBE_YES : FATHOM_PROBE_NO;
}

FATHOM_EXPORT(fathom_parse) int32_t fathom_parse(int32_t ptr, int32_t len, int32_t dir) {
    const uint8_t *p = FATHOM_PTR(const uint8_t, ptr);
    if (len < 4) return 0;
    __builtin_memset(&result, 0, sizeof result);
    if (!is_frpc(p, len)) {
        if (dir & FATHOM_DIR_AFTER_GAP) { /* skip a byte and look again */
            result.consumed = 1;
            result.kind = FATHOM_KIND_SKIP;
            return (int32_t)FATHOM_ADDR(&result);
        }
        return -1;
    }
    if (len < 11) return 0;
    uint32_t body = ((uint32_t)p[9] << 8) | p[10];
    uint32_t total = 11 + body;
    if ((uint32_t)len < total) return 0;
    uint8_t kind = p[4];
    if (kind > 1) return -1;
    result.consumed = total;
    result.kind = kind;
    result.flags = FATHOM_FLAG_ID;
    result.id = ((uint32_t)p[5] << 24) | ((uint32_t)p[6] << 16) | ((uint32_t)p[7] << 8) | p[8];
    if (kind == 0) {
        result.fields[FATHOM_FIELD_REQUEST_TYPE] = fathom_str_of(p + 11, body);
    } else {
        if (body == 0) return -1;
        uint8_t st = p[11];
        if (st > 2) return -1;
        result.status = st + 1;
        result.flags |= FATHOM_FLAG_CODE;
        result.code = st;
        if (st != 0) result.fields[FATHOM_FIELD_RESPONSE_EXCEPTION] = fathom_str_of(p + 12, body - 1);
    }
    return (int32_t)FATHOM_ADDR(&result);
}
