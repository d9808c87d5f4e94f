/* _msgpack_keys.h - the msgpack codec's rule on map keys, checked on packed
 * bytes (tape/_msgpack_keys.c): part of the extension tape._msgpack, kept free
 * of Python.h so that the C tests compile it directly. */
#ifndef TAPE_MSGPACK_KEYS_H
#define TAPE_MSGPACK_KEYS_H

#include <stddef.h>

#define MPK_INVALID (-1) /* not one well-formed value */

/* Whether the msgpack value in buf[0..len) keeps to the msgpack codec's rule
 * that every map key is a str, bin or int (of any width): 0 when it does and
 * the buffer holds exactly one value, 1 at the first key of another kind (a
 * float, bool, nil, array, map or ext), MPK_INVALID when the bytes are not
 * one well-formed value or nest deeper than 1,023 levels. Reads only buf. */
int mpk_check_keys(const void *buf, size_t len);

#endif /* TAPE_MSGPACK_KEYS_H */
