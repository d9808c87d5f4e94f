/* _hot_batches.c - Batches: a TailerHandle's batches of entries, built in C (see _hot.c).
 *
 * Batches(ptr, entry) holds the buffers of the C tailer at address `ptr`
 * (entry: the class tape.Entry). configure(kind, decode, decode_many) says
 * how values are decoded: RAW (the bytes), MSGPACK (tape._msgpack's C
 * unpacker, the codec's decode for what it leaves), OTHER (the codec's
 * decode_many, when it has one and the batch holds at least 4 entries, else
 * its decode). shut() forgets the tailer (its handle closes it next).
 *
 *   peek(slots, entries)   tape_peek_many_ex of up to `slots` entries: a tuple
 *                          (items, n, error): the values (entries: Entry) up to
 *                          the first that fails to decode, the entries peeked,
 *                          and that failure (None); 0 when there is none; a
 *                          negative return code; None once shut;
 *   index(k)               the index of entry k of the last peek;
 *   read_many(max_entries, max_bytes)
 *                          tape_read_many_ex: a list of Entry of the stored
 *                          bytes, or 0, a return code, None, as peek.
 *   read_columns(max_entries, max_bytes)
 *                          the same entries as columns, bytes objects in the
 *                          machine's order: (indexes i64, timestamps i64,
 *                          payload lengths u32, payloads back to back,
 *                          origin indexes i64 (-1 none) and origin timestamps
 *                          i64 (both None when no entry has an origin), keyed:
 *                          None, or a list of (position, key bytes, key was a
 *                          str, not_before ns (0 none), tombstone) of the
 *                          entries with a key or a not_before); 0, a return
 *                          code, None, as peek. For tape.replicate's frames.
 * The calls hold the GIL and reach the core before they make any Python
 * object (a garbage collection may run finalizers that close the tailer).
 */
#include "_hot.h"

#define DECODE_MANY_MIN 4 /* below, setting decode_many up costs more than it saves */

typedef struct hot_batches {
    PyObject_HEAD
    tape_tailer *b_ptr;
    PyObject *b_entry;
    PyObject *b_decode;
    PyObject *b_decode_many;
    int b_kind;
    char *b_buf;
    int64_t *b_idx;
    int64_t *b_ts;
    uint64_t *b_ends;
    tape_attrs *b_attrs;
    int64_t b_n; /* entries of the last peek */
} hot_batches;

/* One call's buffers: the object's own, or larger ones for this call. */
typedef struct take {
    char *buf;
    size_t cap;
    int64_t *idx;
    int64_t *ts;
    uint64_t *ends;
    tape_attrs *attrs;
    size_t n_attrs;
    char *mine; /* a buffer larger than the object's, for this call */
    char *big;  /* a buffer for one entry larger than cap */
} take;

static int batches_init(hot_batches *self, PyObject *args, PyObject *kw)
{
    unsigned long long ptr;
    PyObject *entry;
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Batches() takes no keywords");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "KO!", &ptr, &PyType_Type, &entry))
        return -1;
    if (hot_fn.peek_many_ex == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tape._native._hot.bind() was not called");
        return -1;
    }
    if (ptr == 0 || !PyType_IsSubtype((PyTypeObject *)entry, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "Batches(): a NULL tailer, or an entry class that is no tuple");
        return -1;
    }
    self->b_ptr = (tape_tailer *)(uintptr_t)ptr;
    self->b_kind = HOT_RAW;
    Py_XSETREF(self->b_entry, Py_NewRef(entry));
    return 0;
}

static int batches_traverse(hot_batches *self, visitproc visit, void *arg)
{
    Py_VISIT(self->b_entry);
    Py_VISIT(self->b_decode);
    Py_VISIT(self->b_decode_many);
    return 0;
}

static int batches_clear(hot_batches *self)
{
    Py_CLEAR(self->b_entry);
    Py_CLEAR(self->b_decode);
    Py_CLEAR(self->b_decode_many);
    return 0;
}

static void batches_dealloc(hot_batches *self)
{
    PyObject_GC_UnTrack(self);
    batches_clear(self);
    PyMem_Free(self->b_buf);
    PyMem_Free(self->b_idx);
    PyMem_Free(self->b_ts);
    PyMem_Free(self->b_ends);
    PyMem_Free(self->b_attrs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *batches_configure(hot_batches *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "configure(kind, decode, decode_many)");
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    if (kind < HOT_RAW || kind > HOT_OTHER) {
        PyErr_SetString(PyExc_ValueError, "configure(): an unknown kind");
        return NULL;
    }
    self->b_kind = (int)kind;
    Py_XSETREF(self->b_decode, Py_NewRef(args[1]));
    Py_XSETREF(self->b_decode_many, args[2] == Py_None ? NULL : Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyObject *batches_shut(hot_batches *self, PyObject *unused)
{
    (void)unused;
    self->b_ptr = NULL; /* (index() still answers for the last peek) */
    Py_RETURN_NONE;
}

/* The object's buffers, made at the first use; -1 with MemoryError. */
static int own_buffers(hot_batches *self)
{
    if (self->b_buf != NULL)
        return 0;
    self->b_buf = PyMem_Malloc(HOT_BATCH_BYTES);
    self->b_idx = PyMem_Malloc(HOT_BATCH_SLOTS * sizeof(int64_t));
    self->b_ts = PyMem_Malloc(HOT_BATCH_SLOTS * sizeof(int64_t));
    self->b_ends = PyMem_Malloc(HOT_BATCH_SLOTS * sizeof(uint64_t));
    self->b_attrs = PyMem_Malloc(HOT_BATCH_SLOTS * sizeof(tape_attrs));
    if (self->b_buf && self->b_idx && self->b_ts && self->b_ends && self->b_attrs)
        return 0;
    PyMem_Free(self->b_buf);
    PyMem_Free(self->b_idx);
    PyMem_Free(self->b_ts);
    PyMem_Free(self->b_ends);
    PyMem_Free(self->b_attrs);
    self->b_buf = NULL;
    self->b_idx = self->b_ts = NULL;
    self->b_ends = NULL;
    self->b_attrs = NULL;
    PyErr_NoMemory();
    return -1;
}

static void take_free(hot_batches *self, take *t)
{
    PyMem_Free(t->big);
    PyMem_Free(t->mine);
    if (t->idx != self->b_idx) {
        PyMem_Free(t->idx);
        PyMem_Free(t->ts);
        PyMem_Free(t->ends);
        PyMem_Free(t->attrs);
    }
}

/* The core's call (peek or read) into t's buffers: the number of entries, a
 * return code, or INT64_MIN with MemoryError set. */
static int64_t take_entries(hot_batches *self, take *t, int peek, size_t slots, size_t max_bytes)
{
    memset(t, 0, sizeof *t);
    if (own_buffers(self) < 0)
        return INT64_MIN;
    t->buf = self->b_buf;
    t->cap = HOT_BATCH_BYTES;
    t->idx = self->b_idx;
    t->ts = self->b_ts;
    t->ends = self->b_ends;
    t->attrs = self->b_attrs;
    if (slots > HOT_BATCH_SLOTS) {
        t->idx = PyMem_Malloc(slots * sizeof(int64_t));
        t->ts = PyMem_Malloc(slots * sizeof(int64_t));
        t->ends = PyMem_Malloc(slots * sizeof(uint64_t));
        t->attrs = PyMem_Malloc(slots * sizeof(tape_attrs));
        if (!t->idx || !t->ts || !t->ends || !t->attrs) {
            PyErr_NoMemory();
            return INT64_MIN;
        }
    }
    if (max_bytes > HOT_BATCH_BYTES) {
        t->buf = t->mine = PyMem_Malloc(max_bytes);
        if (t->buf == NULL) {
            PyErr_NoMemory();
            return INT64_MIN;
        }
    }
    if (max_bytes)
        t->cap = max_bytes;
    int64_t (*fn)(tape_tailer *, void *, size_t, int64_t *, int64_t *, uint64_t *, size_t, tape_attrs *,
                  size_t *) = peek ? hot_fn.peek_many_ex : hot_fn.read_many_ex;
    int64_t n = fn(self->b_ptr, t->buf, t->cap, t->idx, t->ts, t->ends, slots, t->attrs, &t->n_attrs);
    if (n == TAPE_EINVAL) { /* the first entry is larger than the buffer: take it alone */
        t->big = PyMem_Malloc(t->ends[0] ? t->ends[0] : 1);
        if (t->big == NULL) {
            PyErr_NoMemory();
            return INT64_MIN;
        }
        n = fn(self->b_ptr, t->big, t->ends[0], t->idx, t->ts, t->ends, 1, t->attrs, &t->n_attrs);
        t->buf = t->big;
    }
    return n;
}

/* The failure being raised, taken (with its traceback), when it is an Exception; NULL otherwise. */
static PyObject *caught(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Where entry k's payload starts and how long it is (after its key, if any). */
static const char *payload(const take *t, int64_t k, size_t *len)
{
    uint64_t start = k ? t->ends[k - 1] : 0;
    uint32_t klen = t->n_attrs ? t->attrs[k].a_key_len : 0;
    *len = (size_t)(t->ends[k] - start - klen);
    return t->buf + start + klen;
}

/* The values of the n entries of t into `values`; *error the first decoding
 * failure (the values stop before it). -1 on another error. */
static int decode_values(hot_batches *self, const take *t, int64_t n, int decode, PyObject *values,
                         PyObject **error)
{
    int kind = decode ? self->b_kind : HOT_RAW;
    if (kind == HOT_OTHER && self->b_decode_many != NULL && n >= DECODE_MANY_MIN) {
        /* the payloads back to back (without keys) and where each ends */
        PyObject *data, *ends = PyList_New((Py_ssize_t)n);
        if (ends == NULL)
            return -1;
        if (t->n_attrs == 0) {
            data = PyBytes_FromStringAndSize(t->buf, (Py_ssize_t)t->ends[n - 1]);
        } else {
            size_t total = 0, len;
            for (int64_t k = 0; k < n; k++) {
                payload(t, k, &len);
                total += len;
            }
            data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
            if (data != NULL) {
                char *p = PyBytes_AS_STRING(data);
                for (int64_t k = 0; k < n; k++) {
                    const char *src = payload(t, k, &len);
                    memcpy(p, src, len);
                    p += len;
                }
            }
        }
        size_t at = 0, len;
        for (int64_t k = 0; data != NULL && k < n; k++) {
            payload(t, k, &len);
            at += len;
            PyObject *end = PyLong_FromSize_t(t->n_attrs ? at : (size_t)t->ends[k]);
            if (end == NULL) {
                Py_CLEAR(data);
                break;
            }
            PyList_SET_ITEM(ends, (Py_ssize_t)k, end);
        }
        if (data == NULL) {
            Py_DECREF(ends);
            return -1;
        }
        PyObject *got = PyObject_CallFunctionObjArgs(self->b_decode_many, data, ends, NULL);
        Py_DECREF(data);
        Py_DECREF(ends);
        if (got == NULL)
            return -1;
        PyObject *list = NULL, *err = NULL;
        if (!PyArg_ParseTuple(got, "O!O", &PyList_Type, &list, &err)) {
            Py_DECREF(got);
            return -1;
        }
        int rc = PyList_SetSlice(values, 0, 0, list);
        if (rc == 0 && err != Py_None)
            *error = Py_NewRef(err);
        Py_DECREF(got);
        return rc;
    }
    for (int64_t k = 0; k < n; k++) {
        size_t len;
        const char *p = payload(t, k, &len);
        PyObject *value = NULL;
        if (kind == HOT_MSGPACK) {
            value = hot_mp->mp_unpack((const uint8_t *)p, len);
            if (value == NULL && PyErr_Occurred())
                return -1;
        }
        if (value == NULL) {
            value = PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
            if (value == NULL)
                return -1;
            if (kind != HOT_RAW) {
                Py_SETREF(value, PyObject_CallOneArg(self->b_decode, value));
                if (value == NULL) {
                    *error = caught();
                    return *error == NULL ? -1 : 0;
                }
            }
        }
        int rc = PyList_Append(values, value);
        Py_DECREF(value);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Entry k's attribute fields into e at 3..6: key, not_before, origin, tombstone. */
static int entry_attrs(const take *t, int64_t k, PyObject *e)
{
    PyObject *key = Py_None, *nb = Py_None, *origin = Py_None;
    int tomb = 0;
    if (t->n_attrs) {
        const tape_attrs *at = &t->attrs[k];
        uint64_t start = k ? t->ends[k - 1] : 0;
        if (at->a_key_len) {
            key = (at->a_flags & TAPE_A_KEY_STR)
                      ? PyUnicode_DecodeUTF8(t->buf + start, at->a_key_len, "surrogateescape")
                      : PyBytes_FromStringAndSize(t->buf + start, at->a_key_len);
            if (key == NULL)
                return -1;
            tomb = (at->a_flags & TAPE_A_TOMBSTONE) != 0;
        } else {
            Py_INCREF(key);
        }
        nb = at->a_not_before ? PyLong_FromLongLong(at->a_not_before) : Py_NewRef(Py_None);
        origin = at->a_origin_index >= 0
                     ? Py_BuildValue("(LL)", (long long)at->a_origin_index, (long long)at->a_origin_ts)
                     : Py_NewRef(Py_None);
        if (origin != NULL && origin != Py_None)
            hot_untrack_atomic(origin);
        if (nb == NULL || origin == NULL) {
            Py_DECREF(key);
            Py_XDECREF(nb);
            Py_XDECREF(origin);
            return -1;
        }
    } else {
        Py_INCREF(key);
        Py_INCREF(nb);
        Py_INCREF(origin);
    }
    PyTuple_SET_ITEM(e, 3, key);
    PyTuple_SET_ITEM(e, 4, nb);
    PyTuple_SET_ITEM(e, 5, origin);
    PyTuple_SET_ITEM(e, 6, Py_NewRef(tomb ? Py_True : Py_False));
    return 0;
}

/* values[k] (for each) turned into Entry(index, timestamp, value, attributes...). */
static int make_entries(hot_batches *self, const take *t, PyObject *values)
{
    PyTypeObject *entry = (PyTypeObject *)self->b_entry;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(values); k++) {
        PyObject *e = entry->tp_alloc(entry, 7);
        if (e == NULL)
            return -1;
        PyObject *index = PyLong_FromLongLong(t->idx[k]);
        PyObject *ts = PyLong_FromLongLong(t->ts[k]);
        if (index == NULL || ts == NULL) {
            Py_XDECREF(index);
            Py_XDECREF(ts);
            Py_DECREF(e);
            return -1;
        }
        PyTuple_SET_ITEM(e, 0, index);
        PyTuple_SET_ITEM(e, 1, ts);
        PyTuple_SET_ITEM(e, 2, Py_NewRef(PyList_GET_ITEM(values, k)));
        if (entry_attrs(t, k, e) < 0) {
            Py_DECREF(e);
            return -1;
        }
        hot_untrack_atomic(e);
        PyObject *value = PyList_GET_ITEM(values, k);
        PyList_SET_ITEM(values, k, e);
        Py_DECREF(value);
    }
    return 0;
}

static PyObject *batches_run(hot_batches *self, int peek, size_t slots, size_t max_bytes, int entries)
{
    if (self->b_ptr == NULL)
        Py_RETURN_NONE;
    take t;
    int64_t n = take_entries(self, &t, peek, slots, max_bytes);
    PyObject *result = NULL, *values = NULL, *error = NULL;
    if (n == INT64_MIN)
        goto done;
    if (peek)
        self->b_n = n > 0 ? n : 0;
    if (n <= 0) {
        result = PyLong_FromLongLong(n);
        goto done;
    }
    /* read_many makes bytes and Entry only, running no Python code: the
     * collector waits for the end of the batch (one collection, not one
     * every 700 entries) */
    int collecting = peek ? 0 : PyGC_Disable();
    values = PyList_New(0);
    int rc = values == NULL || decode_values(self, &t, n, peek, values, &error) < 0 ||
             (entries && make_entries(self, &t, values) < 0);
    if (collecting)
        PyGC_Enable();
    if (rc)
        goto done;
    if (!peek) {
        result = Py_NewRef(values);
        goto done;
    }
    result = Py_BuildValue("(OLO)", values, (long long)n, error ? error : Py_None);
done:
    Py_XDECREF(values);
    Py_XDECREF(error);
    take_free(self, &t);
    return result;
}

static PyObject *batches_peek(hot_batches *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "peek(slots, entries)");
        return NULL;
    }
    Py_ssize_t slots = PyLong_AsSsize_t(args[0]);
    if (slots == -1 && PyErr_Occurred())
        return NULL;
    int entries = PyObject_IsTrue(args[1]);
    if (entries < 0)
        return NULL;
    if (slots < 1)
        slots = 1;
    if ((size_t)slots > HOT_BATCH_SLOTS)
        slots = HOT_BATCH_SLOTS;
    return batches_run(self, 1, (size_t)slots, 0, entries);
}

/* The (max_entries, max_bytes) arguments of read_many and read_columns
 * (`name`), each at least 1: 0, or -1 with an exception set. */
static int batch_limits(PyObject *const *args, Py_ssize_t nargs, const char *name, Py_ssize_t *max_entries,
                        Py_ssize_t *max_bytes)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s(max_entries, max_bytes)", name);
        return -1;
    }
    *max_entries = PyLong_AsSsize_t(args[0]);
    if (*max_entries == -1 && PyErr_Occurred())
        return -1;
    *max_bytes = PyLong_AsSsize_t(args[1]);
    if (*max_bytes == -1 && PyErr_Occurred())
        return -1;
    if (*max_entries < 1 || *max_bytes < 1) {
        PyErr_Format(PyExc_ValueError, "%s(): max_entries and max_bytes must be at least 1", name);
        return -1;
    }
    return 0;
}

static PyObject *batches_read_many(hot_batches *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t max_entries, max_bytes;
    if (batch_limits(args, nargs, "read_many", &max_entries, &max_bytes) < 0)
        return NULL;
    return batches_run(self, 0, (size_t)max_entries, (size_t)max_bytes, 1);
}

/* A batch as columns, each one bytes object in the machine's order (see
 * read_columns): no object per entry but for those with a key or not_before. */
static PyObject *columns(const take *t, int64_t n)
{
    PyObject *idx = NULL, *ts = NULL, *lens = NULL, *data = NULL, *oi = NULL, *ots = NULL, *keyed = NULL;
    PyObject *result = NULL;
    size_t total = 0, len;
    int origins = 0, attributed = 0;
    for (int64_t k = 0; k < n; k++) {
        payload(t, k, &len); /* at most TAPE_MAX_PAYLOAD: a u32 */
        total += len;
        if (t->n_attrs) {
            origins |= t->attrs[k].a_origin_index >= 0;
            attributed |= t->attrs[k].a_key_len != 0 || t->attrs[k].a_not_before != 0;
        }
    }
    idx = PyBytes_FromStringAndSize((const char *)t->idx, (Py_ssize_t)(n * 8));
    ts = PyBytes_FromStringAndSize((const char *)t->ts, (Py_ssize_t)(n * 8));
    lens = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 4));
    data = PyBytes_FromStringAndSize(t->n_attrs ? NULL : t->buf, (Py_ssize_t)total);
    oi = origins ? PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 8)) : Py_NewRef(Py_None);
    ots = origins ? PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 8)) : Py_NewRef(Py_None);
    keyed = attributed ? PyList_New(0) : Py_NewRef(Py_None);
    if (!idx || !ts || !lens || !data || !oi || !ots || !keyed)
        goto done;
    char *to = PyBytes_AS_STRING(data);
    for (int64_t k = 0; k < n; k++) {
        const char *from = payload(t, k, &len);
        uint32_t len32 = (uint32_t)len;
        memcpy(PyBytes_AS_STRING(lens) + 4 * k, &len32, 4);
        if (t->n_attrs) {
            memcpy(to, from, len);
            to += len;
        }
        if (origins) {
            int64_t index = t->attrs[k].a_origin_index, when = index >= 0 ? t->attrs[k].a_origin_ts : 0;
            memcpy(PyBytes_AS_STRING(oi) + 8 * k, &index, 8);
            memcpy(PyBytes_AS_STRING(ots) + 8 * k, &when, 8);
        }
        const tape_attrs *at = t->n_attrs ? &t->attrs[k] : NULL;
        if (attributed && (at->a_key_len || at->a_not_before)) {
            /* (position, key bytes, key was a str, not_before (ns, 0 none), tombstone) */
            PyObject *row = Py_BuildValue("(Ly#OLO)", (long long)k, from - at->a_key_len, (Py_ssize_t)at->a_key_len,
                                          (at->a_flags & TAPE_A_KEY_STR) ? Py_True : Py_False,
                                          (long long)at->a_not_before,
                                          (at->a_flags & TAPE_A_TOMBSTONE) ? Py_True : Py_False);
            if (row == NULL)
                goto done;
            int rc = PyList_Append(keyed, row);
            Py_DECREF(row);
            if (rc < 0)
                goto done;
        }
    }
    result = PyTuple_Pack(7, idx, ts, lens, data, oi, ots, keyed);
done:
    Py_XDECREF(idx);
    Py_XDECREF(ts);
    Py_XDECREF(lens);
    Py_XDECREF(data);
    Py_XDECREF(oi);
    Py_XDECREF(ots);
    Py_XDECREF(keyed);
    return result;
}

static PyObject *batches_read_columns(hot_batches *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t max_entries, max_bytes;
    if (batch_limits(args, nargs, "read_columns", &max_entries, &max_bytes) < 0)
        return NULL;
    if (self->b_ptr == NULL)
        Py_RETURN_NONE;
    take t;
    int64_t n = take_entries(self, &t, 0, (size_t)max_entries, (size_t)max_bytes);
    PyObject *result = n == INT64_MIN ? NULL : n <= 0 ? PyLong_FromLongLong(n) : columns(&t, n);
    take_free(self, &t);
    return result;
}

static PyObject *batches_index(hot_batches *self, PyObject *arg)
{
    Py_ssize_t k = PyLong_AsSsize_t(arg);
    if (k == -1 && PyErr_Occurred())
        return NULL;
    if (k < 0 || k >= self->b_n) {
        PyErr_SetString(PyExc_IndexError, "no such entry in the batch");
        return NULL;
    }
    return PyLong_FromLongLong(self->b_idx[k]);
}

static PyMethodDef batches_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))batches_configure, METH_FASTCALL,
     "configure($self, kind, decode, decode_many, /)\n--\n\nHow values are decoded (see the module's comment)."},
    {"shut", (PyCFunction)batches_shut, METH_NOARGS,
     "shut($self, /)\n--\n\nForget the tailer: it is being closed."},
    {"peek", (PyCFunction)(void (*)(void))batches_peek, METH_FASTCALL,
     "peek($self, slots, entries, /)\n--\n\n"
     "(items, n, error) of up to `slots` entries from the position, which does not move;\n"
     "0 when there is none, a negative return code, or None once shut."},
    {"read_many", (PyCFunction)(void (*)(void))batches_read_many, METH_FASTCALL,
     "read_many($self, max_entries, max_bytes, /)\n--\n\n"
     "Entry of the stored bytes of up to `max_entries` entries, moving past them;\n"
     "0, a negative return code, or None as peek."},
    {"read_columns", (PyCFunction)(void (*)(void))batches_read_columns, METH_FASTCALL,
     "read_columns($self, max_entries, max_bytes, /)\n--\n\n"
     "read_many's entries as columns, moving past them: (indexes, timestamps, payload lengths,\n"
     "payloads, origin indexes, origin timestamps, keyed); 0, a return code or None as peek."},
    {"index", (PyCFunction)batches_index, METH_O,
     "index($self, k, /)\n--\n\nThe index of entry k of the last peek."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject hot_batches_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.Batches",
    .tp_doc = "A tailer's batches, peeked or read and built in C.",
    .tp_basicsize = sizeof(hot_batches),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)batches_init,
    .tp_dealloc = (destructor)batches_dealloc,
    .tp_traverse = (traverseproc)batches_traverse,
    .tp_clear = (inquiry)batches_clear,
    .tp_methods = batches_methods,
};
