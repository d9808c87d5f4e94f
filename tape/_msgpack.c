/* _msgpack.c - the msgpack codec's fast path (module tape._msgpack).
 *
 * msgpack-python spends most of an event's decoding on creating and interning
 * its map keys, the same few strings every time, and its packer plus our key
 * check cost more than the append. This module packs and unpacks the values
 * a typical event is made of, byte for byte and value for value as the codec's
 * msgpack-python settings do, and says "not mine" for everything else:
 *
 *   pack(obj)       the bytes msgpack.Packer(use_bin_type=True, datetime=True)
 *                   gives, when obj holds only exact dict, list, tuple, str,
 *                   bytes, int, float, bool and None (map keys: str, bytes, int);
 *                   None otherwise.
 *   unpack(buf)     what msgpack.unpackb(buf, raw=False, strict_map_key=False,
 *                   timestamp=3) gives, when buf is one value of nil, bool, int,
 *                   float, str, bin, array and map (keys: str, bin, int); FALLBACK
 *                   otherwise, for the codec to ask msgpack-python.
 *   unpack_into(values, buf, ends, start)
 *                   unpack() of each payload buf[ends[k-1]:ends[k]] from k = start,
 *                   appended to values, up to the first that gives FALLBACK;
 *                   returns that k (len(ends) when none does).
 *   check_keys(data)
 *                   the codec's rule on map keys (str, bin or int), checked on
 *                   packed bytes: 0, 1 at a key of another kind, -1 when data
 *                   is not one well-formed value (_msgpack_keys.c).
 *
 * C extensions get the packer and the unpacker without a Python call through
 * the capsule _API (_msgpack.h).
 *
 * Declining is always safe: msgpack-python then does the work, with its own
 * errors. So the fast path declines whenever in doubt: subclasses, extension
 * types, a lone surrogate, invalid UTF-8, truncated or trailing bytes, deep
 * nesting. Only exact builtin types are handled, so no code of the caller's
 * runs while packing. While unpacking, an allocation may start a garbage
 * collection whose finalizers run Python code: nothing of the caller's is read
 * during the walk but the buffer (unpack_into copies `ends` first).
 *
 * This is a codec accelerator, a CPython extension apart from the C core in
 * csrc/, which stays free of Python.h.
 *
 * Threads: the key cache below is shared module state mutated without a lock;
 * it relies on the GIL. Free-threaded builds are not a target: this module
 * does not declare itself safe without the GIL, so importing it there turns
 * the GIL back on. Nor are subinterpreters: the cache is one per process.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "_msgpack.h"
#include "_msgpack_keys.h"

/* Containers nested deeper than this are left to msgpack-python (its packer
 * stops at 1024 levels in msgpack 1.2, 511 in older ones; its unpacker at
 * 1024). Also bounds the C stack both ways. */
#define MP_DEPTH 511

/* msgpack's lengths are 32-bit. */
#define MP_LEN_MAX 0xffffffffu

/* ---- packing --------------------------------------------------------------- */

/* Room for n more bytes; false with MemoryError set if there is none. */
static bool mo_reserve(mp_out *o, size_t n)
{
    if (o->mo_cap - o->mo_len >= n)
        return true;
    size_t cap = o->mo_cap * 2;
    if (cap < o->mo_len + n)
        cap = o->mo_len + n;
    char *buf;
    if (o->mo_buf == o->mo_stack) {
        buf = PyMem_Malloc(cap);
        if (buf != NULL)
            memcpy(buf, o->mo_buf, o->mo_len);
    } else {
        buf = PyMem_Realloc(o->mo_buf, cap);
    }
    if (buf == NULL) {
        PyErr_NoMemory();
        return false;
    }
    o->mo_buf = buf;
    o->mo_cap = cap;
    return true;
}

/* A type byte and the low `n` bytes of v, big-endian. */
static int mo_head(mp_out *o, uint8_t type, uint64_t v, int n)
{
    if (!mo_reserve(o, 1 + (size_t)n))
        return PK_ERROR;
    uint8_t *p = (uint8_t *)o->mo_buf + o->mo_len;
    p[0] = type;
    for (int i = 0; i < n; i++)
        p[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    o->mo_len += 1 + (size_t)n;
    return PK_OK;
}

static int mo_bytes(mp_out *o, const char *s, size_t n)
{
    if (!mo_reserve(o, n))
        return PK_ERROR;
    memcpy(o->mo_buf + o->mo_len, s, n);
    o->mo_len += n;
    return PK_OK;
}

/* The smallest format for v, as msgpack-python chooses it. */
static int pk_uint(mp_out *o, uint64_t v)
{
    if (v < 0x80)
        return mo_head(o, (uint8_t)v, 0, 0);
    if (v <= 0xff)
        return mo_head(o, 0xcc, v, 1);
    if (v <= 0xffff)
        return mo_head(o, 0xcd, v, 2);
    if (v <= 0xffffffffu)
        return mo_head(o, 0xce, v, 4);
    return mo_head(o, 0xcf, v, 8);
}

static int pk_int(mp_out *o, PyObject *obj)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow < 0)
        return PK_NOT_MINE; /* below -2**63 */
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(obj);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return PK_ERROR;
            PyErr_Clear(); /* 2**64 or more */
            return PK_NOT_MINE;
        }
        return pk_uint(o, u);
    }
    if (v == -1 && PyErr_Occurred())
        return PK_ERROR;
    if (v >= 0)
        return pk_uint(o, (uint64_t)v);
    uint64_t bits = (uint64_t)v;
    if (v >= -32)
        return mo_head(o, (uint8_t)bits, 0, 0); /* negative fixint */
    if (v >= -128)
        return mo_head(o, 0xd0, bits, 1);
    if (v >= -32768)
        return mo_head(o, 0xd1, bits, 2);
    if (v >= INT32_MIN)
        return mo_head(o, 0xd2, bits, 4);
    return mo_head(o, 0xd3, bits, 8);
}

static int pk_float(mp_out *o, PyObject *obj)
{
    double d = PyFloat_AS_DOUBLE(obj);
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return mo_head(o, 0xcb, bits, 8);
}

/* A str or bin of len bytes: the fix format `fix | len` below `fix_below`
 * (0 for none), else the 8, 16 or 32-bit format (type8, type8 + 1, + 2). */
static int pk_raw(mp_out *o, const char *s, size_t len, size_t fix_below, uint8_t fix, uint8_t type8)
{
    int rc;
    if (len < fix_below)
        rc = mo_head(o, (uint8_t)(fix | len), 0, 0);
    else if (len <= 0xff)
        rc = mo_head(o, type8, len, 1);
    else if (len <= 0xffff)
        rc = mo_head(o, (uint8_t)(type8 + 1), len, 2);
    else if (len <= MP_LEN_MAX)
        rc = mo_head(o, (uint8_t)(type8 + 2), len, 4);
    else
        return PK_NOT_MINE;
    return rc != PK_OK ? rc : mo_bytes(o, s, len);
}

/* A str, in UTF-8 (with use_bin_type=True msgpack-python uses str8 too). */
static int pk_str(mp_out *o, PyObject *obj)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
    if (s == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return PK_ERROR;
        PyErr_Clear(); /* a lone surrogate */
        return PK_NOT_MINE;
    }
    return pk_raw(o, s, (size_t)n, 32, 0xa0, 0xd9);
}

static int pk_bin(mp_out *o, PyObject *obj)
{
    return pk_raw(o, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj), 0, 0, 0xc4);
}

/* The head of a container of n items: fix format, then 16 or 32 bits. */
static int pk_container(mp_out *o, size_t n, uint8_t fix, uint8_t type16)
{
    if (n < 16)
        return mo_head(o, (uint8_t)(fix | n), 0, 0);
    if (n <= 0xffff)
        return mo_head(o, type16, n, 2);
    if (n <= MP_LEN_MAX)
        return mo_head(o, (uint8_t)(type16 + 1), n, 4);
    return PK_NOT_MINE;
}

static int pk_value(mp_out *o, PyObject *obj, int depth);

static int pk_array(mp_out *o, PyObject *const *items, Py_ssize_t n, int depth)
{
    int rc = pk_container(o, (size_t)n, 0x90, 0xdc);
    for (Py_ssize_t i = 0; rc == PK_OK && i < n; i++)
        rc = pk_value(o, items[i], depth + 1);
    return rc;
}

static int pk_map(mp_out *o, PyObject *obj, int depth)
{
    int rc = pk_container(o, (size_t)PyDict_GET_SIZE(obj), 0x80, 0xde);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (rc == PK_OK && PyDict_Next(obj, &pos, &key, &value)) {
        PyTypeObject *kt = Py_TYPE(key);
        /* The codec's rule: str, bytes or int keys (bool is not exactly int). */
        if (kt != &PyUnicode_Type && kt != &PyBytes_Type && kt != &PyLong_Type)
            return PK_NOT_MINE;
        rc = pk_value(o, key, depth + 1);
        if (rc == PK_OK)
            rc = pk_value(o, value, depth + 1);
    }
    return rc;
}

/* Pack obj, at `depth` containers down; exact types only. */
static int pk_value(mp_out *o, PyObject *obj, int depth)
{
    if (depth > MP_DEPTH)
        return PK_NOT_MINE; /* deep, or a container that holds itself */
    PyTypeObject *t = Py_TYPE(obj);
    if (t == &PyUnicode_Type)
        return pk_str(o, obj);
    if (t == &PyLong_Type)
        return pk_int(o, obj);
    if (t == &PyDict_Type)
        return pk_map(o, obj, depth);
    if (t == &PyFloat_Type)
        return pk_float(o, obj);
    if (obj == Py_None)
        return mo_head(o, 0xc0, 0, 0);
    if (obj == Py_True)
        return mo_head(o, 0xc3, 0, 0);
    if (obj == Py_False)
        return mo_head(o, 0xc2, 0, 0);
    if (t == &PyBytes_Type)
        return pk_bin(o, obj);
    if (t == &PyList_Type)
        return pk_array(o, PySequence_Fast_ITEMS(obj), PyList_GET_SIZE(obj), depth);
    if (t == &PyTuple_Type)
        return pk_array(o, PySequence_Fast_ITEMS(obj), PyTuple_GET_SIZE(obj), depth);
    return PK_NOT_MINE;
}

static PyObject *mp_pack(PyObject *module, PyObject *obj)
{
    (void)module;
    mp_out o;
    o.mo_buf = o.mo_stack;
    o.mo_len = 0;
    o.mo_cap = sizeof o.mo_stack;
    int rc = pk_value(&o, obj, 0);
    PyObject *result = NULL;
    if (rc == PK_OK)
        result = PyBytes_FromStringAndSize(o.mo_buf, (Py_ssize_t)o.mo_len);
    else if (rc == PK_NOT_MINE)
        result = Py_NewRef(Py_None);
    if (o.mo_buf != o.mo_stack)
        PyMem_Free(o.mo_buf);
    return result;
}

/* ---- the key cache ------------------------------------------------------------ */

/* Map keys of up to KC_KEY_MAX bytes of UTF-8 are kept here, by a hash of
 * their bytes: a key seen before is the same str object again, its hash
 * already computed, instead of a new one to decode, hash and intern. A slot
 * holds one key; another key of the same slot replaces it. */
#define KC_SLOTS 1024 /* a power of two */
#define KC_KEY_MAX 64

typedef struct kc_slot {
    PyObject *ks_str; /* a strong reference; NULL when empty */
    uint32_t ks_len;
    char ks_utf8[KC_KEY_MAX];
} kc_slot;

static kc_slot kc_table[KC_SLOTS];

static uint32_t kc_hash(const uint8_t *p, size_t n)
{
    uint64_t h = n * 0x9e3779b97f4a7c15u;
    while (n > 0) {
        uint64_t w = 0;
        size_t k = n < 8 ? n : 8;
        memcpy(&w, p, k);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
        p += k;
        n -= k;
    }
    return (uint32_t)h;
}

/* The str of the n UTF-8 bytes at p (n <= KC_KEY_MAX), from the cache or new;
 * NULL without an error set when they are not valid UTF-8. */
static PyObject *kc_get(const uint8_t *p, size_t n)
{
    kc_slot *slot = &kc_table[kc_hash(p, n) & (KC_SLOTS - 1)];
    if (slot->ks_str != NULL && slot->ks_len == n && memcmp(slot->ks_utf8, p, n) == 0)
        return Py_NewRef(slot->ks_str);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, NULL);
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            PyErr_Clear();
        return NULL;
    }
    PyUnicode_InternInPlace(&s); /* as msgpack-python does with map keys */
    PyObject *old = slot->ks_str;
    slot->ks_str = Py_NewRef(s);
    slot->ks_len = (uint32_t)n;
    memcpy(slot->ks_utf8, p, n);
    Py_XDECREF(old);
    return s;
}

/* ---- unpacking --------------------------------------------------------------- */

/* The bytes still to read. Every unpacking function returns a new reference,
 * or NULL: with an exception set on a real error (no memory), without one
 * when the bytes are not for the fast path (the caller falls back). */
typedef struct mp_in {
    const uint8_t *mi_p;
    const uint8_t *mi_end;
} mp_in;

static size_t mi_left(const mp_in *in)
{
    return (size_t)(in->mi_end - in->mi_p);
}

/* Read the big-endian unsigned of n bytes into *v; false if fewer are left. */
static bool mi_uint(mp_in *in, int n, uint64_t *v)
{
    if (mi_left(in) < (size_t)n)
        return false;
    uint64_t x = 0;
    for (int i = 0; i < n; i++)
        x = x << 8 | in->mi_p[i];
    in->mi_p += n;
    *v = x;
    return true;
}

/* Take n bytes, if there are as many left. */
static const uint8_t *mi_take(mp_in *in, uint64_t n)
{
    if (mi_left(in) < n)
        return NULL;
    const uint8_t *p = in->mi_p;
    in->mi_p += n;
    return p;
}

static PyObject *un_str(mp_in *in, uint64_t n, bool is_key)
{
    const uint8_t *p = mi_take(in, n);
    if (p == NULL)
        return NULL;
    if (is_key && n <= KC_KEY_MAX)
        return kc_get(p, (size_t)n);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    if (s != NULL && is_key)
        PyUnicode_InternInPlace(&s);
    return s;
}

static PyObject *un_bin(mp_in *in, uint64_t n)
{
    const uint8_t *p = mi_take(in, n);
    return p == NULL ? NULL : PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
}

static PyObject *un_value(mp_in *in, int depth, bool is_key);

static PyObject *un_array(mp_in *in, uint64_t n, int depth)
{
    /* Every item takes a byte at least: this also bounds the allocation. */
    if (depth >= MP_DEPTH || n > mi_left(in))
        return NULL;
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL)
        return NULL;
    for (uint64_t i = 0; i < n; i++) {
        PyObject *item = un_value(in, depth + 1, false);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

/* A dict for n items: sized once, not grown twice on the way to ten fields.
 * _PyDict_NewPresized is CPython's own (what BUILD_MAP uses), private: where
 * a version no longer offers it, a plain dict. */
static PyObject *mp_dict_new(Py_ssize_t n)
{
#if PY_VERSION_HEX < 0x030D0000
    return _PyDict_NewPresized(n);
#else
    (void)n;
    return PyDict_New();
#endif
}

static PyObject *un_map(mp_in *in, uint64_t n, int depth)
{
    if (depth >= MP_DEPTH || n > mi_left(in) / 2)
        return NULL;
    PyObject *dict = mp_dict_new((Py_ssize_t)n);
    if (dict == NULL)
        return NULL;
    for (uint64_t i = 0; i < n; i++) {
        PyObject *key = un_value(in, depth + 1, true);
        if (key == NULL)
            goto fail;
        PyObject *value = un_value(in, depth + 1, false);
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        int rc = PyDict_SetItem(dict, key, value); /* a repeated key: the last wins */
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            goto fail;
    }
    return dict;
fail:
    Py_DECREF(dict);
    return NULL;
}

/* The value at in, `depth` containers down; as a map key (is_key) only a
 * str, bin or int. */
static PyObject *un_value(mp_in *in, int depth, bool is_key)
{
    if (in->mi_p >= in->mi_end)
        return NULL;
    uint8_t b = *in->mi_p++;
    if (b <= 0x7f)
        return PyLong_FromLong(b);
    if (b >= 0xe0)
        return PyLong_FromLong((long)b - 0x100);
    if (b >= 0xa0 && b <= 0xbf)
        return un_str(in, b & 0x1f, is_key);
    uint64_t v;
    switch (b) {
    case 0xcc: return mi_uint(in, 1, &v) ? PyLong_FromUnsignedLongLong(v) : NULL;
    case 0xcd: return mi_uint(in, 2, &v) ? PyLong_FromUnsignedLongLong(v) : NULL;
    case 0xce: return mi_uint(in, 4, &v) ? PyLong_FromUnsignedLongLong(v) : NULL;
    case 0xcf: return mi_uint(in, 8, &v) ? PyLong_FromUnsignedLongLong(v) : NULL;
    case 0xd0: return mi_uint(in, 1, &v) ? PyLong_FromLong((int8_t)(uint8_t)v) : NULL;
    case 0xd1: return mi_uint(in, 2, &v) ? PyLong_FromLong((int16_t)(uint16_t)v) : NULL;
    case 0xd2: return mi_uint(in, 4, &v) ? PyLong_FromLong((int32_t)(uint32_t)v) : NULL;
    case 0xd3: return mi_uint(in, 8, &v) ? PyLong_FromLongLong((int64_t)v) : NULL;
    case 0xd9: return mi_uint(in, 1, &v) ? un_str(in, v, is_key) : NULL;
    case 0xda: return mi_uint(in, 2, &v) ? un_str(in, v, is_key) : NULL;
    case 0xdb: return mi_uint(in, 4, &v) ? un_str(in, v, is_key) : NULL;
    case 0xc4: return mi_uint(in, 1, &v) ? un_bin(in, v) : NULL;
    case 0xc5: return mi_uint(in, 2, &v) ? un_bin(in, v) : NULL;
    case 0xc6: return mi_uint(in, 4, &v) ? un_bin(in, v) : NULL;
    default: break;
    }
    if (is_key)
        return NULL; /* nil, bool, float, array or map: msgpack-python decides */
    if (b <= 0x8f)
        return un_map(in, b & 0x0f, depth);
    if (b <= 0x9f)
        return un_array(in, b & 0x0f, depth);
    switch (b) {
    case 0xc0: return Py_NewRef(Py_None);
    case 0xc2: return Py_NewRef(Py_False);
    case 0xc3: return Py_NewRef(Py_True);
    case 0xca:
        if (mi_left(in) < 4)
            return NULL;
        in->mi_p += 4; /* as msgpack-python converts it (NaNs differ by version) */
        return PyFloat_FromDouble(PyFloat_Unpack4((const char *)in->mi_p - 4, 0));
    case 0xcb:
        if (mi_uint(in, 8, &v)) {
            double d;
            memcpy(&d, &v, sizeof d);
            return PyFloat_FromDouble(d);
        }
        return NULL;
    case 0xdc: return mi_uint(in, 2, &v) ? un_array(in, v, depth) : NULL;
    case 0xdd: return mi_uint(in, 4, &v) ? un_array(in, v, depth) : NULL;
    case 0xde: return mi_uint(in, 2, &v) ? un_map(in, v, depth) : NULL;
    case 0xdf: return mi_uint(in, 4, &v) ? un_map(in, v, depth) : NULL;
    default: return NULL; /* 0xc1, ext and fixext (timestamps among them) */
    }
}

/* The one value that is exactly the n bytes at p, or NULL (see mp_in). */
static PyObject *un_exactly(const uint8_t *p, size_t n)
{
    mp_in in = {p, p + n};
    PyObject *value = un_value(&in, 0, false);
    if (value != NULL && in.mi_p != in.mi_end) {
        Py_DECREF(value); /* trailing bytes */
        return NULL;
    }
    return value;
}

static PyObject *mp_fallback; /* the FALLBACK marker */

static PyObject *mp_unpack(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear(); /* msgpack-python says what is wrong with it */
        return Py_NewRef(mp_fallback);
    }
    if (view.itemsize != 1) { /* msgpack-python: BufferError */
        PyBuffer_Release(&view);
        return Py_NewRef(mp_fallback);
    }
    PyObject *value = un_exactly(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (value == NULL && !PyErr_Occurred())
        return Py_NewRef(mp_fallback);
    return value;
}

static PyObject *mp_unpack_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "unpack_into(values, buf, ends, start) takes 4 arguments");
        return NULL;
    }
    PyObject *values = args[0];
    if (!PyList_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "unpack_into: values must be a list");
        return NULL;
    }
    Py_ssize_t k = PyLong_AsSsize_t(args[3]);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    /* A tuple of our own: a list could be changed (or be `values`) while we read it. */
    PyObject *ends = PySequence_Tuple(args[2]);
    if (ends == NULL)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(ends);
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(ends);
    if (view.itemsize != 1) /* msgpack-python: BufferError */
        count = 0;
    PyObject *const *items = &PyTuple_GET_ITEM(ends, 0);
    Py_ssize_t start = 0;
    if (k < 0)
        k = 0;
    if (k > 0 && k <= count) {
        start = PyLong_AsSsize_t(items[k - 1]);
        if (start == -1 && PyErr_Occurred())
            goto fail;
    }
    for (; k < count; k++) {
        Py_ssize_t end = PyLong_AsSsize_t(items[k]);
        if (end == -1 && PyErr_Occurred())
            goto fail;
        if (start < 0 || end < start || end > view.len)
            break; /* not a payload of buf: left to the caller */
        PyObject *value = un_exactly((const uint8_t *)view.buf + start, (size_t)(end - start));
        if (value == NULL) {
            if (PyErr_Occurred())
                goto fail;
            break;
        }
        int rc = PyList_Append(values, value);
        Py_DECREF(value);
        if (rc < 0)
            goto fail;
        start = end;
    }
    PyBuffer_Release(&view);
    Py_DECREF(ends);
    return PyLong_FromSsize_t(k < count ? k : count);
fail:
    PyBuffer_Release(&view);
    Py_DECREF(ends);
    return NULL;
}

/* ---- the C API (_msgpack.h) -------------------------------------------------------- */

static int api_reserve(mp_out *o, size_t n)
{
    return mo_reserve(o, n) ? 0 : -1;
}

static int api_pack(mp_out *o, PyObject *obj)
{
    return pk_value(o, obj, 0);
}

static const tape_mp_api mp_api = {
    .mp_reserve = api_reserve,
    .mp_pack = api_pack,
    .mp_unpack = un_exactly,
};

/* ---- the key rule ------------------------------------------------------------------ */

static PyObject *mp_check_keys(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc = mpk_check_keys(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong(rc);
}

/* ---- the module ------------------------------------------------------------------ */

static PyMethodDef mp_methods[] = {
    {"pack", mp_pack, METH_O,
     "pack(obj, /) -> bytes | None\n--\n\n"
     "msgpack-python's packing of obj, or None when obj is not made of exact builtin types only."},
    {"unpack", mp_unpack, METH_O,
     "unpack(buf, /) -> object\n--\n\n"
     "The one value buf holds, or FALLBACK when msgpack-python must decide."},
    {"unpack_into", (PyCFunction)(void (*)(void))mp_unpack_into, METH_FASTCALL,
     "unpack_into(values, buf, ends, start, /) -> int\n--\n\n"
     "Append unpack() of the payloads of buf ending at ends[start:] to values,\n"
     "up to the first that gives FALLBACK; return its position (len(ends) if none)."},
    {"check_keys", mp_check_keys, METH_O,
     "check_keys(data, /) -> int\n--\n\n"
     "0 when data is one msgpack value whose map keys are all str, bin or int;\n"
     "1 at the first key of another kind; -1 when data is not one well-formed value."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mp_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tape._msgpack",
    .m_doc = "The msgpack codec's fast path: exact builtin values, packed and unpacked as "
             "msgpack-python does; the rest is left to msgpack-python.",
    .m_size = -1,
    .m_methods = mp_methods,
};

PyMODINIT_FUNC PyInit__msgpack(void)
{
    PyObject *module = PyModule_Create(&mp_module);
    if (module == NULL)
        return NULL;
    if (mp_fallback == NULL) {
        mp_fallback = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
        if (mp_fallback == NULL) {
            Py_DECREF(module);
            return NULL;
        }
    }
    if (PyModule_AddObjectRef(module, "FALLBACK", mp_fallback) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    /* (a const table: the capsule's pointer is not, but nothing writes through it) */
    PyObject *api = PyCapsule_New((void *)(uintptr_t)&mp_api, TAPE_MP_CAPSULE, NULL);
    int rc = api == NULL ? -1 : PyModule_AddObjectRef(module, "_API", api);
    Py_XDECREF(api);
    if (rc < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
