/* _hot_writer.c - Writer, the base of tape.Appender: write(obj) and write_many(objs) in C (see _hot.c).
 *
 * The Appender's __init__ calls _hot_setup(handle, ptr, kind, encode):
 *   handle      the AppenderHandle, kept: the C appender `ptr` (an address)
 *               lives as long as it does (a closed one refuses: TAPE_ECLOSED);
 *   kind        RAW, MSGPACK or OTHER; encode the codec's encode.
 * Members: _fast (False: a clock, every call goes to Python) and _watch (a
 * result at or above it, or an error, goes to Python). The Appender's Python
 * methods take over where C stops:
 *   _write_slow(obj, ...), _write_many_slow(objs, ...)   a call with keywords, or not _fast;
 *   _after(index)                       an index at or above _watch (sync, retention), an error;
 *   _after_many(index, written, n)      the same for write_many.
 */
#include "_hot.h"

#include <structmember.h>

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
    if (hot_fn.append == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tape._native._hot.bind() was not called");
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

/* The core's appends, holding the GIL (let go if the write lock must be waited for). */
static int64_t append_one(hot_writer *self, const void *data, size_t len)
{
    hot_in_core = 1;
    int64_t index = hot_fn.append(self->w_ptr, data, len, 0);
    hot_in_core = 0;
    return index;
}

static PyObject *writer_write(hot_writer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1 || kwnames != NULL || !self->w_fast || self->w_ptr == NULL)
        return writer_python(self, hot_str_write_slow, args, nargs, kwnames);
    PyObject *obj = args[0];
    int64_t index;
    if (self->w_kind == HOT_RAW && PyBytes_CheckExact(obj)) {
        index = append_one(self, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
    } else {
        mp_out o;
        out_init(&o);
        if (writer_encode(self, &o, obj) < 0) {
            out_free(&o);
            return NULL;
        }
        index = append_one(self, o.mo_buf, o.mo_len);
        out_free(&o);
    }
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
