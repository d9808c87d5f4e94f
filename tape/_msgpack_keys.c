/* _msgpack_keys.c - the check behind the msgpack codec's rule on map keys
 * (part of the extension tape._msgpack, as check_keys; also compiled into the
 * C test csrc/tests/test_msgpack.c).
 *
 * The msgpack codec refuses map keys that are not str, bytes or int: msgpack
 * would pack a tuple key as an array, which no reader can turn back into a
 * dict key, and a float, bool or None key would come back as a key no other
 * reader expects. Checking the Python value costs more than packing it, so
 * the codec packs first and this walk reads the packed bytes instead: one
 * pass, no allocation.
 */
#include "_msgpack_keys.h"

#include <stdbool.h>
#include <stdint.h>

/* Deeper than msgpack-python's own packer goes (it stops at 511 levels). */
#define MK_DEPTH 1024

/* What one item's first bytes say it is. */
typedef enum { MK_SCALAR, MK_ARRAY, MK_MAP } mk_kind;

typedef struct mk_item {
    mk_kind mi_kind;
    bool mi_key_ok;   /* a str, bin or int: what a map key may be */
    uint64_t mi_size; /* bytes after the head (scalars) or items (containers) */
    size_t mi_head;   /* bytes of the head: type byte and length or value */
} mk_item;

/* Big-endian unsigned of `n` bytes at p. */
static uint64_t mk_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Decode the head of the item at p (avail bytes left); false if truncated or
 * the reserved byte 0xc1. */
static bool mk_head(const uint8_t *p, size_t avail, mk_item *it)
{
    uint8_t b = p[0];
    it->mi_kind = MK_SCALAR;
    it->mi_key_ok = false;
    it->mi_size = 0;
    it->mi_head = 1;
    if (b <= 0x7f || b >= 0xe0) { /* positive and negative fixint */
        it->mi_key_ok = true;
        return true;
    }
    if (b <= 0x8f) {
        it->mi_kind = MK_MAP;
        it->mi_size = b & 0x0f;
        return true;
    }
    if (b <= 0x9f) {
        it->mi_kind = MK_ARRAY;
        it->mi_size = b & 0x0f;
        return true;
    }
    if (b <= 0xbf) { /* fixstr */
        it->mi_key_ok = true;
        it->mi_size = b & 0x1f;
        return true;
    }
    int len_bytes = 0; /* a length follows the type byte */
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3: /* nil, false, true */
        return true;
    case 0xc1:
        return false;
    case 0xc4: case 0xd9: it->mi_key_ok = true; len_bytes = 1; break; /* bin8, str8 */
    case 0xc5: case 0xda: it->mi_key_ok = true; len_bytes = 2; break;
    case 0xc6: case 0xdb: it->mi_key_ok = true; len_bytes = 4; break;
    case 0xc7: len_bytes = 1; it->mi_size = 1; break; /* ext: length, then type byte */
    case 0xc8: len_bytes = 2; it->mi_size = 1; break;
    case 0xc9: len_bytes = 4; it->mi_size = 1; break;
    case 0xca: it->mi_size = 4; return true; /* float32, float64 */
    case 0xcb: it->mi_size = 8; return true;
    case 0xcc: case 0xd0: it->mi_key_ok = true; it->mi_size = 1; return true;
    case 0xcd: case 0xd1: it->mi_key_ok = true; it->mi_size = 2; return true;
    case 0xce: case 0xd2: it->mi_key_ok = true; it->mi_size = 4; return true;
    case 0xcf: case 0xd3: it->mi_key_ok = true; it->mi_size = 8; return true;
    case 0xd4: it->mi_size = 2; return true; /* fixext: type byte and 1..16 bytes */
    case 0xd5: it->mi_size = 3; return true;
    case 0xd6: it->mi_size = 5; return true;
    case 0xd7: it->mi_size = 9; return true;
    case 0xd8: it->mi_size = 17; return true;
    case 0xdc: it->mi_kind = MK_ARRAY; len_bytes = 2; break;
    case 0xdd: it->mi_kind = MK_ARRAY; len_bytes = 4; break;
    case 0xde: it->mi_kind = MK_MAP; len_bytes = 2; break;
    default:   it->mi_kind = MK_MAP; len_bytes = 4; break; /* 0xdf */
    }
    if (avail < 1 + (size_t)len_bytes)
        return false;
    it->mi_size += mk_be(p + 1, len_bytes);
    it->mi_head = 1 + (size_t)len_bytes;
    return true;
}

int mpk_check_keys(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t left = len;
    /* Items still to come in each open container; in a map, an even count
     * means the next item is a key. The root is an array of one. */
    uint64_t todo[MK_DEPTH];
    bool in_map[MK_DEPTH];
    int depth = 0;
    todo[0] = 1;
    in_map[0] = false;
    for (;;) {
        while (todo[depth] == 0) {
            if (depth == 0)
                return left == 0 ? 0 : MPK_INVALID;
            depth--;
        }
        bool is_key = in_map[depth] && todo[depth] % 2 == 0;
        todo[depth]--;
        mk_item it;
        if (left == 0 || !mk_head(p, left, &it))
            return MPK_INVALID;
        p += it.mi_head;
        left -= it.mi_head;
        if (is_key && !it.mi_key_ok)
            return 1;
        if (it.mi_kind == MK_SCALAR) {
            if (left < it.mi_size)
                return MPK_INVALID;
            p += it.mi_size;
            left -= it.mi_size;
            continue;
        }
        if (it.mi_size == 0)
            continue;
        if (depth + 1 == MK_DEPTH || it.mi_size > left)
            return MPK_INVALID; /* every item takes a byte at least */
        depth++;
        todo[depth] = it.mi_kind == MK_MAP ? 2 * it.mi_size : it.mi_size;
        in_map[depth] = it.mi_kind == MK_MAP;
    }
}
