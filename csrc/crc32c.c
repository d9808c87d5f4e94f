/* crc32c.c - CRC-32C (Castagnoli), with the SSE4.2 instruction when the CPU
 * has it and a slicing-by-8 table otherwise.
 *
 * The instruction takes 3 cycles to give its result but can start one every
 * cycle, so one chain of it runs at a third of its speed. Long inputs are cut
 * into three parts whose CRCs are computed side by side and then joined: the
 * CRC is linear, so CRC(A B) = CRC(A) moved past |B| zero bytes, xor CRC(B)
 * from zero; moving a CRC past a fixed number of zero bytes is a product with
 * x^(8n) mod P, done by four table lookups. */
#include "tape_int.h"

#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[8][256];

/* The product of two polynomials mod P, both bit-reflected (bit 31 is x^0). */
static uint32_t gf_mul(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 32; i++) {
        if (a & (0x80000000u >> i))
            r ^= b;
        b = (b >> 1) ^ (POLY & (0u - (b & 1u)));
    }
    return r;
}

/* x^(8n) mod P: the operator that moves a CRC past n zero bytes. */
static uint32_t x_pow_bytes(uint64_t n)
{
    uint32_t r = 0x80000000u, sq = 0x00800000u; /* x^0, x^8 */
    for (; n; n >>= 1) {
        if (n & 1)
            r = gf_mul(r, sq);
        sq = gf_mul(sq, sq);
    }
    return r;
}

/* The parts of a three-way step: LONG bytes each while the input lasts, then
 * SHORT. */
#define LONG 4096u
#define SHORT 256u

/* move[w][k][b]: byte b at byte k of a CRC moved past LONG (w = 0) or SHORT
 * (w = 1) zero bytes. */
static uint32_t move[2][4][256];

static void move_init(int w, uint64_t n)
{
    uint32_t xn = x_pow_bytes(n);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++)
            move[w][k][b] = gf_mul(xn, b << (8 * k));
}

static inline uint32_t moved(int w, uint32_t c)
{
    return move[w][0][c & 0xFF] ^ move[w][1][(c >> 8) & 0xFF] ^
           move[w][2][(c >> 16) & 0xFF] ^ move[w][3][c >> 24];
}

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
    move_init(0, LONG);
    move_init(1, SHORT);
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

/* Three chains of `part` bytes side by side, joined (the header's comment). */
__attribute__((target("sse4.2")))
static inline uint32_t three_parts(uint32_t c, const uint8_t *p, size_t part, int w)
{
    uint64_t c0 = c, c1 = 0, c2 = 0;
    for (size_t i = 0; i < part; i += 8) {
        uint64_t w0, w1, w2;
        memcpy(&w0, p + i, 8);
        memcpy(&w1, p + part + i, 8);
        memcpy(&w2, p + 2 * part + i, 8);
        c0 = _mm_crc32_u64(c0, w0);
        c1 = _mm_crc32_u64(c1, w1);
        c2 = _mm_crc32_u64(c2, w2);
    }
    return moved(w, moved(w, (uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2")))
static uint32_t update_hw3(uint32_t c, const uint8_t *p, size_t n)
{
    for (; n >= 3 * LONG; p += 3 * LONG, n -= 3 * LONG)
        c = three_parts(c, p, LONG, 0);
    for (; n >= 3 * SHORT; p += 3 * SHORT, n -= 3 * SHORT)
        c = three_parts(c, p, SHORT, 1);
    return update_hw(c, p, n);
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
    return ~update_hw3((uint32_t)c, payload, len);
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
        f = update_hw3;
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
    if (f == update_hw3)
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
