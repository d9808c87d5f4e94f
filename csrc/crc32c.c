/* crc32c.c - CRC-32C (Castagnoli), with the SSE4.2 instruction when the CPU
 * has it and a slicing-by-8 table otherwise. */
#include "tape_int.h"

#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int s = 1; s < 8; s++)
            table[s][i] = (table[s - 1][i] >> 8) ^ table[0][table[s - 1][i] & 0xFF];
}

/* Raw update, no inversion. */
static uint32_t update_sw(uint32_t c, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c;
        c = table[7][w & 0xFF] ^ table[6][(w >> 8) & 0xFF] ^
            table[5][(w >> 16) & 0xFF] ^ table[4][(w >> 24) & 0xFF] ^
            table[3][(w >> 32) & 0xFF] ^ table[2][(w >> 40) & 0xFF] ^
            table[1][(w >> 48) & 0xFF] ^ table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xFF];
    return c;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t update_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    if (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        c = _mm_crc32_u32(c, w);
        p += 4;
        n -= 4;
    }
    while (n--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}

/* The entry head as three wide steps: a CRC over a little-endian word equals
 * the CRC over its bytes. */
__attribute__((target("sse4.2")))
static uint32_t crc_data_hw(uint32_t seed, uint32_t hdr, uint64_t seq, int64_t ts,
                            const void *payload, uint32_t len)
{
    uint64_t c = _mm_crc32_u32(~seed, hdr);
    c = _mm_crc32_u64(c, seq);
    c = _mm_crc32_u64(c, (uint64_t)ts);
    return ~update_hw((uint32_t)c, payload, len);
}
#endif

typedef uint32_t (*update_fn)(uint32_t, const uint8_t *, size_t);
static _Atomic(update_fn) chosen;

static update_fn choose(void)
{
    update_fn f = atomic_load_explicit(&chosen, memory_order_acquire);
    if (f)
        return f;
    table_init();
    f = update_sw;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        f = update_hw;
#endif
    atomic_store_explicit(&chosen, f, memory_order_release);
    return f;
}

uint32_t tape_crc32c(uint32_t seed, const void *p, size_t n)
{
    return ~choose()(~seed, p, n);
}

uint32_t tape_crc_data(uint32_t seed, uint32_t hdr, uint64_t seq, int64_t ts,
                       const void *payload, uint32_t len)
{
    update_fn f = choose();
#if defined(__x86_64__)
    if (f == update_hw)
        return crc_data_hw(seed, hdr, seq, ts, payload, len);
#endif
    uint8_t head[20];
    memcpy(head, &hdr, 4);
    memcpy(head + 4, &seq, 8);
    memcpy(head + 12, &ts, 8);
    uint32_t c = f(~seed, head, sizeof head);
    return ~f(c, payload, len);
}

uint32_t tape_crc_meta(uint32_t seed, uint32_t hdr, uint64_t tag)
{
    uint8_t head[12];
    memcpy(head, &hdr, 4);
    memcpy(head + 4, &tag, 8);
    return ~choose()(~seed, head, sizeof head);
}
