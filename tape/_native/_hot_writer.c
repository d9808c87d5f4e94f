/* _hot_writer.c - Writer, the base of tape.Appender: write(obj) and write_many(objs) in C (see _hot.c).
 *
 * The Appender's __init__ calls _hot_setup(handle, ptr, kind, encode):
 *   handle      the AppenderHandle, kept: the C appender `ptr` (an address)
 *               lives as long as it does (a closed one refuses: TAPE_ECLOSED);
 *   kind        RAW, MSGPACK or OTHER; encode the codec's encode.
 * Members: _fast (False: a clock, every call goes to Python) and _watch (a
 * result at or above it, or an error, goes to Python). write(obj, key=k),
 * delete(key) and write_if(obj, last, key=k) are done here too when the key
 * is a str (without lone surrogates) or bytes of 1 to TAPE_KEY_MAX bytes.
 * The Appender's Python methods take over where C stops:
 *   _write_slow(obj, ...), _write_many_slow(objs, ...)   a call with other keywords, or not _fast;
 *   _write_if_slow(obj, ...), _delete_slow(key)          the same (and a bad key, or last);
 *   _after(index)                       an index at or above _watch (sync, retention), an error;
 *   _after_many(index, written, n)      the same for write_many.
 * The checks that fail here are not reported here: the Python method raises.
 */
#include "_hot.h"

#include <structmember.h>

/* The core's keyed appends (bind_writer) and the names of the keywords and
 * methods used here (interned there). */
static struct {
    int64_t (*append_ex)(tape_appender *a, const void *data, size_t len, int64_t ts_ns, const tape_attrs *at);
    int64_t (*append_if)(tape_appender *a, const void *data, size_t len, int64_t ts_ns, int64_t expected);
    int64_t (*append_if_key)(tape_appender *a, const void *data, size_t len, int64_t ts_ns, int64_t expected,
                             const tape_attrs *at);
} writer_fn;
static PyObject *str_key, *str_last, *str_write_if_slow, *str_delete_slow;

PyObject *hot_bind_writer(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "bind_writer() takes 3 addresses");
        return NULL;
    }
    uintptr_t p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = (uintptr_t)PyLong_AsUnsignedLongLong(args[i]);
        if (PyErr_Occurred())
            return NULL;
        if (p[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "bind_writer(): a NULL address");
            return NULL;
        }
    }
    static const char *const names[] = {"key", "last", "_write_if_slow", "_delete_slow"};
    PyObject **slots[] = {&str_key, &str_last, &str_write_if_slow, &str_delete_slow};
    for (int i = 0; i < 4; i++)
        if (*slots[i] == NULL && (*slots[i] = PyUnicode_InternFromString(names[i])) == NULL)
            return NULL;
    writer_fn.append_ex = (int64_t (*)(tape_appender *, const void *, size_t, int64_t, const tape_attrs *))p[0];
    writer_fn.append_if = (int64_t (*)(tape_appender *, const void *, size_t, int64_t, int64_t))p[1];
    writer_fn.append_if_key =
        (int64_t (*)(tape_appender *, const void *, size_t, int64_t, int64_t, const tape_attrs *))p[2];
    Py_RETURN_NONE;
}

typedef struct hot_writer {
    PyObject_HEAD
    tape_appender *w_ptr;
    PyObject *w_handle;
    PyObject *w_encode;
    int w_kind;
    char w_fast;
    long long w_watch;
} hot_writer;

static PyObject *writer_setup(hot_writer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "_hot_setup(handle, ptr, kind, encode)");
        return NULL;
    }
    unsigned long long ptr = PyLong_AsUnsignedLongLong(args[1]);
    if (ptr == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    long kind = PyLong_AsLong(args[2]);
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    if (hot_fn.append == NULL || writer_fn.append_ex == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tape._native._hot.bind() or bind_writer() was not called");
        return NULL;
    }
    if (ptr == 0 || kind < HOT_RAW || kind > HOT_OTHER) {
        PyErr_SetString(PyExc_ValueError, "_hot_setup(): a NULL appender or an unknown kind");
        return NULL;
    }
    self->w_ptr = (tape_appender *)(uintptr_t)ptr;
    self->w_kind = (int)kind;
    self->w_fast = 1;
    self->w_watch = 0;
    Py_XSETREF(self->w_handle, Py_NewRef(args[0]));
    Py_XSETREF(self->w_encode, Py_NewRef(args[3]));
    Py_RETURN_NONE;
}

static int writer_traverse(hot_writer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->w_handle);
    Py_VISIT(self->w_encode);
    return 0;
}

static int writer_clear(hot_writer *self)
{
    Py_CLEAR(self->w_handle);
    Py_CLEAR(self->w_encode);
    return 0;
}

static void writer_dealloc(hot_writer *self)
{
    PyObject_GC_UnTrack(self);
    writer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* self.<name>(*args, **kw): the Appender's Python method. */
static PyObject *writer_python(hot_writer *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return hot_call_method(name, (PyObject *)self, args, nargs, kwnames);
}

/* What an append's result `index` asks for: the index, or the appender's _after. */
static PyObject *writer_result(hot_writer *self, int64_t index)
{
    if (index >= 0 && index < self->w_watch)
        return PyLong_FromLongLong(index);
    PyObject *arg = PyLong_FromLongLong(index);
    if (arg == NULL)
        return NULL;
    PyObject *result = writer_python(self, hot_str_after, &arg, 1, NULL);
    Py_DECREF(arg);
    return result;
}

/* Append obj's encoding to *o: 0, or -1 with an exception set. */
static int writer_encode(hot_writer *self, mp_out *o, PyObject *obj)
{
    if (self->w_kind == HOT_RAW && PyBytes_CheckExact(obj)) {
        size_t n = (size_t)PyBytes_GET_SIZE(obj);
        if (hot_mp->mp_reserve(o, n) < 0)
            return -1;
        memcpy(o->mo_buf + o->mo_len, PyBytes_AS_STRING(obj), n);
        o->mo_len += n;
        return 0;
    }
    if (self->w_kind == HOT_MSGPACK) {
        size_t before = o->mo_len;
        int rc = hot_mp->mp_pack(o, obj);
        if (rc == PK_OK)
            return 0;
        if (rc == PK_ERROR)
            return -1;
        o->mo_len = before; /* not the fast path's: the codec's encode says */
    }
    PyObject *data = PyObject_CallOneArg(self->w_encode, obj);
    if (data == NULL)
        return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(data);
        return -1;
    }
    int rc = hot_mp->mp_reserve(o, (size_t)view.len);
    if (rc == 0) {
        memcpy(o->mo_buf + o->mo_len, view.buf, (size_t)view.len);
        o->mo_len += (size_t)view.len;
    }
    PyBuffer_Release(&view);
    Py_DECREF(data);
    return rc;
}

static void out_init(mp_out *o)
{
    o->mo_buf = o->mo_stack;
    o->mo_len = 0;
    o->mo_cap = sizeof o->mo_stack;
}

static void out_free(mp_out *o)
{
    if (o->mo_buf != o->mo_stack)
        PyMem_Free(o->mo_buf);
}

/* *at with `key`'s bytes and flags: 1, or 0 when the key is not one C takes
 * (another type, lone surrogates, an empty or too long one: the Python
 * method checks it and raises). The bytes live as long as `key`. */
static int writer_key(PyObject *key, tape_attrs *at)
{
    const char *kb;
    Py_ssize_t klen;
    uint32_t flags = 0;
    if (PyUnicode_CheckExact(key)) {
        kb = PyUnicode_AsUTF8AndSize(key, &klen);
        if (kb == NULL) {
            PyErr_Clear();
            return 0;
        }
        flags = TAPE_A_KEY_STR;
    } else if (PyBytes_CheckExact(key)) {
        kb = PyBytes_AS_STRING(key);
        klen = PyBytes_GET_SIZE(key);
    } else {
        return 0;
    }
    if (klen < 1 || klen > TAPE_KEY_MAX)
        return 0;
    *at = (tape_attrs){.a_key = kb, .a_key_len = (uint32_t)klen, .a_flags = flags, .a_origin_index = -1};
    return 1;
}

/* The value of keyword `name` among a vectorcall's keywords (interned names
 * only, as a call's are), NULL when not given; *seen counts the matches. */
static PyObject *writer_keyword(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject *name,
                                Py_ssize_t *seen)
{
    for (Py_ssize_t i = 0; kwnames != NULL && i < PyTuple_GET_SIZE(kwnames); i++)
        if (PyTuple_GET_ITEM(kwnames, i) == name) {
            ++*seen;
            return args[nargs + i];
        }
    return NULL;
}

/* obj's payload in *data, *len: raw bytes as they are, else encoded into o
 * (out_init'ed; the caller frees it). 0, or -1 with an exception set. */
static int writer_payload(hot_writer *self, PyObject *obj, mp_out *o, const void **data, size_t *len)
{
    if (self->w_kind == HOT_RAW && PyBytes_CheckExact(obj)) {
        *data = PyBytes_AS_STRING(obj);
        *len = (size_t)PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (writer_encode(self, o, obj) < 0)
        return -1;
    *data = o->mo_buf;
    *len = o->mo_len;
    return 0;
}

#define WRITER_ANY (-2) /* writer_append's `expected` of a write that is not a write_if */

/* obj encoded and appended with `attrs` (its key, or NULL); `expected` is
 * write_if's last index (-1: none yet), or WRITER_ANY. The core's result,
 * or INT64_MIN with an exception set. */
static int64_t writer_append(hot_writer *self, PyObject *obj, const tape_attrs *attrs, long long expected)
{
    const void *data;
    size_t len;
    mp_out o;
    out_init(&o);
    if (writer_payload(self, obj, &o, &data, &len) < 0) {
        out_free(&o);
        return INT64_MIN;
    }
    int64_t index;
    hot_in_core = 1;
    if (expected == WRITER_ANY)
        index = attrs == NULL ? hot_fn.append(self->w_ptr, data, len, 0)
                              : writer_fn.append_ex(self->w_ptr, data, len, 0, attrs);
    else
        index = attrs == NULL ? writer_fn.append_if(self->w_ptr, data, len, 0, expected)
                              : writer_fn.append_if_key(self->w_ptr, data, len, 0, expected, attrs);
    hot_in_core = 0;
    out_free(&o);
    return index;
}

static PyObject *writer_write(hot_writer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    tape_attrs at;
    const tape_attrs *attrs = NULL;
    if (nargs != 1 || !self->w_fast || self->w_ptr == NULL)
        return writer_python(self, hot_str_write_slow, args, nargs, kwnames);
    if (kwnames != NULL) { /* key= alone */
        Py_ssize_t seen = 0;
        PyObject *key = writer_keyword(args, nargs, kwnames, str_key, &seen);
        if (seen != PyTuple_GET_SIZE(kwnames) || (key != Py_None && !writer_key(key, &at)))
            return writer_python(self, hot_str_write_slow, args, nargs, kwnames);
        attrs = key == Py_None ? NULL : &at;
    }
    int64_t index = writer_append(self, args[0], attrs, WRITER_ANY);
    return index == INT64_MIN ? NULL : writer_result(self, index);
}

static PyObject *writer_write_if(hot_writer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t seen = 0;
    PyObject *last = nargs == 2 ? args[1] : writer_keyword(args, nargs, kwnames, str_last, &seen);
    PyObject *key = writer_keyword(args, nargs, kwnames, str_key, &seen);
    tape_attrs at;
    long long expected = -1;
    int ok = nargs >= 1 && nargs <= 2 && seen == (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames)) &&
             self->w_fast && self->w_ptr != NULL && (key == NULL || key == Py_None || writer_key(key, &at));
    if (ok && last != NULL && last != Py_None) {
        expected = PyLong_CheckExact(last) ? PyLong_AsLongLong(last) : -1;
        if (expected < 0) {
            PyErr_Clear();
            ok = 0;
        }
    }
    if (!ok)
        return writer_python(self, str_write_if_slow, args, nargs, kwnames);
    int64_t index = writer_append(self, args[0], key == NULL || key == Py_None ? NULL : &at, expected);
    if (index == INT64_MIN)
        return NULL;
    if (index == TAPE_ECONFLICT)
        Py_RETURN_NONE;
    return writer_result(self, index);
}

static PyObject *writer_delete(hot_writer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char nil = (char)0xc0; /* msgpack's None */
    tape_attrs at;
    if (nargs != 1 || kwnames != NULL || !self->w_fast || self->w_ptr == NULL || self->w_kind == HOT_OTHER ||
        !writer_key(args[0], &at))
        return writer_python(self, str_delete_slow, args, nargs, kwnames);
    at.a_flags |= TAPE_A_TOMBSTONE;
    hot_in_core = 1;
    int64_t index = writer_fn.append_ex(self->w_ptr, &nil, self->w_kind == HOT_MSGPACK ? 1 : 0, 0, &at);
    hot_in_core = 0;
    return writer_result(self, index);
}

/* From this many bytes on, write_many lets other threads run while the core copies. */
#define WRITER_UNLOCK_BYTES (256u << 10)

static PyObject *writer_write_many(hot_writer *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *objs = nargs == 1 ? args[0] : NULL;
    if (objs == NULL || kwnames != NULL || !self->w_fast || self->w_ptr == NULL ||
        !(PyList_CheckExact(objs) || PyTuple_CheckExact(objs)) || PySequence_Fast_GET_SIZE(objs) == 0)
        return writer_python(self, hot_str_write_many_slow, args, nargs, kwnames);
    Py_INCREF(objs);
    mp_out o;
    out_init(&o);
    size_t cap = (size_t)PySequence_Fast_GET_SIZE(objs), n = 0;
    uint64_t *ends = PyMem_Malloc(cap * sizeof *ends);
    PyObject *result = NULL;
    if (ends == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Room for the whole batch at once: raw bytes' sizes are known, msgpack's guessed. */
    size_t room = 0;
    if (self->w_kind == HOT_RAW) {
        PyObject **items = PySequence_Fast_ITEMS(objs);
        for (size_t i = 0; i < cap && PyBytes_CheckExact(items[i]); i++)
            room += (size_t)PyBytes_GET_SIZE(items[i]);
    } else if (self->w_kind == HOT_MSGPACK) {
        room = cap * 64;
    }
    if (room > o.mo_cap && hot_mp->mp_reserve(&o, room) < 0)
        goto done;
    /* Encoding may run Python code (a codec's encode) that changes a list: its
     * size is read again at every step, each item held while it is encoded. */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(objs); i++) {
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            uint64_t *grown = PyMem_Realloc(ends, cap * sizeof *ends);
            if (grown == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            ends = grown;
        }
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(objs, i));
        int rc = writer_encode(self, &o, item);
        Py_DECREF(item);
        if (rc < 0)
            goto done;
        ends[n++] = o.mo_len;
    }
    if (n == 0) { /* emptied while encoding: what the Python method says of an empty batch */
        result = writer_python(self, hot_str_write_many_slow, args, nargs, kwnames);
        goto done;
    }
    size_t written = 0;
    int64_t index;
    if (o.mo_len >= WRITER_UNLOCK_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        index = hot_fn.append_many_ex(self->w_ptr, o.mo_buf, ends, n, 0, &written, NULL);
        Py_END_ALLOW_THREADS
    } else {
        hot_in_core = 1;
        index = hot_fn.append_many_ex(self->w_ptr, o.mo_buf, ends, n, 0, &written, NULL);
        hot_in_core = 0;
    }
    if (index >= 0 && index < self->w_watch) {
        result = PyLong_FromLongLong(index);
    } else {
        PyObject *call[3] = {PyLong_FromLongLong(index), PyLong_FromSize_t(written), PyLong_FromSize_t(n)};
        if (call[0] != NULL && call[1] != NULL && call[2] != NULL)
            result = writer_python(self, hot_str_after_many, call, 3, NULL);
        Py_XDECREF(call[0]);
        Py_XDECREF(call[1]);
        Py_XDECREF(call[2]);
    }
done:
    PyMem_Free(ends);
    out_free(&o);
    Py_DECREF(objs);
    return result;
}

static PyMethodDef writer_methods[] = {
    {"write", (PyCFunction)(void (*)(void))writer_write, METH_FASTCALL | METH_KEYWORDS,
     "write($self, obj, key=None, delay=None, not_before=None)\n--\n\n"
     "Append `obj` and return its index; nothing is written if it cannot be encoded (or an argument is bad).\n\n"
     "key (str or bytes, 1 to 1024 bytes) is kept with the entry (Entry.key).\n"
     "delay (seconds or a timedelta, from now) or not_before (a datetime or\n"
     "epoch seconds), one of the two: consumer groups hand the entry out no\n"
     "earlier (Entry.not_before)."},
    {"write_if", (PyCFunction)(void (*)(void))writer_write_if, METH_FASTCALL | METH_KEYWORDS,
     "write_if($self, obj, last=None, *, key=None)\n--\n\n"
     "Append `obj` only if the queue's last entry is `last` (None: only if empty).\n\n"
     "With `key`, only if the newest entry with that key is `last` (None:\n"
     "there is none, or it was deleted), and the entry gets the key. The\n"
     "check and the append happen under the queue's write lock, so a\n"
     "read-modify-write built on it is atomic across processes. Returns the\n"
     "new index, or None when another entry came first (nothing written)."},
    {"delete", (PyCFunction)(void (*)(void))writer_delete, METH_FASTCALL | METH_KEYWORDS,
     "delete($self, key)\n--\n\n"
     "Append a tombstone of `key` (its value None): Queue.latest(key) is None from now on; the index."},
    {"write_many", (PyCFunction)(void (*)(void))writer_write_many, METH_FASTCALL | METH_KEYWORDS,
     "write_many($self, objs, *, delay=None, not_before=None)\n--\n\n"
     "Append every value of `objs` and return the last index.\n\n"
     "All are encoded before anything is written. If the core fails midway,\n"
     "the entries before the failing one stay written (a note says how many).\n"
     "delay or not_before (as in write) applies to every entry."},
    {"_hot_setup", (PyCFunction)(void (*)(void))writer_setup, METH_FASTCALL,
     "_hot_setup($self, handle, ptr, kind, encode, /)\n--\n\n"
     "Write with the C appender at address `ptr` (kept alive by `handle`), encoding as `kind` says."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef writer_members[] = {
    {"_fast", T_BOOL, offsetof(hot_writer, w_fast), 0,
     "False: every call goes to the Python methods (a queue with a clock)."},
    {"_watch", T_LONGLONG, offsetof(hot_writer, w_watch), 0,
     "A result at or above it (or an error) goes to _after."},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject hot_writer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.Writer",
    .tp_doc = "The base of tape.Appender: write() and write_many() in C.",
    .tp_basicsize = sizeof(hot_writer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_traverse = (traverseproc)writer_traverse,
    .tp_clear = (inquiry)writer_clear,
    .tp_methods = writer_methods,
    .tp_members = writer_members,
};
