/* attrs.c - entry attributes: checking them, and the attribute block that
 * carries them inside an entry, written and parsed (docs/FORMAT.md,
 * "Attributes"). Pure functions over memory; no other core file is used. */
#include "tape_int.h"

#include <string.h>

enum { REC_KEY = 1, REC_NOT_BEFORE = 2, REC_ORIGIN = 3 };

#define A_FLAGS_KNOWN (TAPE_A_KEY_STR | TAPE_A_TOMBSTONE)
#define REC_HDR 8u

const tape_attrs tape_attrs_none = {NULL, 0, 0, 0, -1, 0};

static uint32_t pad8(uint32_t n)
{
    return (n + 7u) & ~7u;
}

int tape_attrs_check(const tape_attrs *at)
{
    if (!at)
        return 0;
    if (at->a_flags & ~A_FLAGS_KNOWN)
        return TAPE_EINVAL;
    if (!at->a_key) {
        if (at->a_key_len || at->a_flags)
            return TAPE_EINVAL;
    } else if (at->a_key_len == 0 || at->a_key_len > TAPE_KEY_MAX) {
        return TAPE_EINVAL;
    }
    if (at->a_not_before < 0 || at->a_origin_index < -1 || at->a_origin_ts < 0 ||
        (at->a_origin_index == -1 && at->a_origin_ts != 0))
        return TAPE_EINVAL;
    return at->a_key || at->a_not_before || at->a_origin_index >= 0;
}

/* Append one record of `type` to the block at b[*off]. */
static void put_rec(uint8_t *b, uint32_t *off, uint16_t type, const void *v, uint32_t n)
{
    uint16_t zero = 0;
    memcpy(b + *off, &type, 2);
    memcpy(b + *off + 2, &zero, 2);
    memcpy(b + *off + 4, &n, 4);
    memcpy(b + *off + REC_HDR, v, n);
    memset(b + *off + REC_HDR + n, 0, pad8(n) - n);
    *off += REC_HDR + pad8(n);
}

uint32_t tape_attrs_encode(const tape_attrs *at, uint8_t *out)
{
    uint32_t off = 8;
    if (at->a_key)
        put_rec(out, &off, REC_KEY, at->a_key, at->a_key_len);
    if (at->a_not_before)
        put_rec(out, &off, REC_NOT_BEFORE, &at->a_not_before, 8);
    if (at->a_origin_index >= 0) {
        int64_t o[2] = {at->a_origin_index, at->a_origin_ts};
        put_rec(out, &off, REC_ORIGIN, o, 16);
    }
    memcpy(out, &off, 4);
    memcpy(out + 4, &at->a_flags, 4);
    return off;
}

int64_t tape_attrs_decode(const uint8_t *p, uint32_t avail, tape_attrs *out)
{
    uint32_t blen, flags;
    if (avail < 8)
        return TAPE_ECORRUPT;
    memcpy(&blen, p, 4);
    memcpy(&flags, p + 4, 4);
    if (blen < 8 || (blen & 7) || blen > avail || blen > TAPE_ATTRS_MAX || (flags & ~A_FLAGS_KNOWN))
        return TAPE_ECORRUPT;
    tape_attrs a = tape_attrs_none;
    a.a_flags = flags;
    uint32_t off = 8, last = 0;
    while (off < blen) {
        uint16_t type, zero;
        uint32_t n;
        if (blen - off < REC_HDR)
            return TAPE_ECORRUPT;
        memcpy(&type, p + off, 2);
        memcpy(&zero, p + off + 2, 2);
        memcpy(&n, p + off + 4, 4);
        if (zero || type <= last || n > blen - off - REC_HDR || pad8(n) > blen - off - REC_HDR)
            return TAPE_ECORRUPT;
        const uint8_t *v = p + off + REC_HDR;
        for (uint32_t k = n; k < pad8(n); k++)
            if (v[k])
                return TAPE_ECORRUPT;
        switch (type) {
        case REC_KEY:
            if (n == 0 || n > TAPE_KEY_MAX)
                return TAPE_ECORRUPT;
            a.a_key = v;
            a.a_key_len = n;
            break;
        case REC_NOT_BEFORE:
            if (n != 8)
                return TAPE_ECORRUPT;
            memcpy(&a.a_not_before, v, 8);
            if (a.a_not_before <= 0)
                return TAPE_ECORRUPT;
            break;
        case REC_ORIGIN:
            if (n != 16)
                return TAPE_ECORRUPT;
            memcpy(&a.a_origin_index, v, 8);
            memcpy(&a.a_origin_ts, v + 8, 8);
            if (a.a_origin_index < 0 || a.a_origin_ts < 0)
                return TAPE_ECORRUPT;
            break;
        default:
            return TAPE_ECORRUPT;
        }
        last = type;
        off += REC_HDR + pad8(n);
    }
    if (last == 0 || (flags && !a.a_key))
        return TAPE_ECORRUPT; /* an empty block is never written; flags need a key */
    *out = a;
    return blen;
}
