/* _msgpack.h - what tape._msgpack gives other extensions (tape._native._hot) in C.
 *
 * The module exports a tape_mp_api through the capsule "tape._msgpack._API"
 * (PyCapsule_Import): the same packer and unpacker as its Python functions,
 * called without a Python call in between. Every function needs the GIL.
 */
#ifndef TAPE_MSGPACK_H
#define TAPE_MSGPACK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

/* Bytes being packed: in mo_stack until they outgrow it, then on the heap
 * (PyMem; free mo_buf when it is not mo_stack). Start with mo_buf = mo_stack,
 * mo_len = 0, mo_cap = sizeof mo_stack. */
typedef struct mp_out {
    char *mo_buf;
    size_t mo_len;
    size_t mo_cap;
    char mo_stack[512];
} mp_out;

/* What packing a value gave. */
enum { PK_ERROR = -1, PK_OK = 0, PK_NOT_MINE = 1 };

#define TAPE_MP_CAPSULE "tape._msgpack._API"

typedef struct tape_mp_api {
    /* Room for n more bytes in *o; 0, or -1 with MemoryError set. */
    int (*mp_reserve)(mp_out *o, size_t n);
    /* Append pack(obj)'s bytes to *o: PK_OK, PK_NOT_MINE (obj is not made of
     * exact builtin types only: *o may hold part of it, cut it back), or
     * PK_ERROR with an exception set. */
    int (*mp_pack)(mp_out *o, PyObject *obj);
    /* unpack() of the n bytes at p: a new reference, or NULL with an
     * exception set, or NULL without one when msgpack-python must decide. */
    PyObject *(*mp_unpack)(const uint8_t *p, size_t n);
} tape_mp_api;

#endif
