/* _hot_keys.c - Keys: Queue.latest(key) in C (see _hot.c).
 *
 * Keys(queue, tailer, kind, decode, entry): `queue` and `tailer` the
 * addresses of a C queue and of a tailer of it kept for this object (the
 * QueueHandle's), kind RAW, MSGPACK or OTHER and decode the codec's decode,
 * entry the class tape.Entry.
 *
 *   latest(key)   tape_key_read, then Entry(index, timestamp, value, key, ...)
 *                 or None; False where the caller's Python path takes over:
 *                 a key that is neither a str nor bytes of 1 to TAPE_KEY_MAX
 *                 bytes, nor a str without lone surrogates (the Python path
 *                 checks it and raises), an error of the core (it raises it),
 *                 a call made while another thread's is in the core, any call
 *                 once shut. (No callable kept: the queue's handle holds this
 *                 object, which would then hold the Queue in a cycle.)
 *   shut()        forget the queue and the tailer (the handle closes them
 *                 next); waits, letting the GIL go, for a call in the core.
 *
 * The GIL: latest holds it, but where the core waits for the write lock (a
 * key directory rebuilt): there the wait hook lets it go (hot_in_core), and
 * l_busy marks the tailer taken meanwhile. Until l_busy is cleared, only
 * objects outside the garbage collector are made (bytes, str, int: no
 * finalizer can run and close the queue under the call); the payload is
 * copied out of the mapping before it is decoded.
 */
#include "_hot.h"

#include <time.h>

typedef struct hot_keys {
    PyObject_HEAD
    tape_queue *l_queue;
    tape_tailer *l_tailer;
    PyObject *l_decode;
    PyObject *l_entry;
    int l_kind;
    unsigned l_busy; /* hot_forks + 1 while a call is in the core (0: none) */
} hot_keys;

static int keys_init(hot_keys *self, PyObject *args, PyObject *kw)
{
    unsigned long long queue, tailer;
    int kind;
    PyObject *decode, *entry;
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Keys() takes no keywords");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "KKiOO!", &queue, &tailer, &kind, &decode, &PyType_Type, &entry))
        return -1;
    if (hot_fn.key_read == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tape._native._hot.bind() was not called");
        return -1;
    }
    if (queue == 0 || tailer == 0 || kind < HOT_RAW || kind > HOT_OTHER ||
        !PyType_IsSubtype((PyTypeObject *)entry, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "Keys(): a NULL queue or tailer, an unknown kind, or an entry class that is no tuple");
        return -1;
    }
    self->l_queue = (tape_queue *)(uintptr_t)queue;
    self->l_tailer = (tape_tailer *)(uintptr_t)tailer;
    self->l_kind = kind;
    Py_XSETREF(self->l_decode, Py_NewRef(decode));
    Py_XSETREF(self->l_entry, Py_NewRef(entry));
    return 0;
}

static int keys_traverse(hot_keys *self, visitproc visit, void *arg)
{
    Py_VISIT(self->l_decode);
    Py_VISIT(self->l_entry);
    return 0;
}

static int keys_clear(hot_keys *self)
{
    Py_CLEAR(self->l_decode);
    Py_CLEAR(self->l_entry);
    return 0;
}

static void keys_dealloc(hot_keys *self)
{
    PyObject_GC_UnTrack(self);
    keys_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A call of this object is in the core (in this process: a fork leaves none). */
static int keys_busy(const hot_keys *self)
{
    return self->l_busy != 0 && self->l_busy == hot_forks + 1;
}

static PyObject *keys_shut(hot_keys *self, PyObject *unused)
{
    (void)unused;
    self->l_queue = NULL;
    self->l_tailer = NULL;
    while (keys_busy(self)) {
        struct timespec pause = {0, 100000};
        Py_BEGIN_ALLOW_THREADS
        nanosleep(&pause, NULL);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* The key's attribute fields of the entry at e[3..6]: `key` as asked (the
 * key's bytes kb), made a str or bytes as stored. */
static int key_fields(PyObject *e, PyObject *key, const char *kb, Py_ssize_t klen, const tape_attrs *at)
{
    PyObject *k;
    if (at->a_flags & TAPE_A_KEY_STR)
        k = PyUnicode_CheckExact(key) ? Py_NewRef(key) : PyUnicode_DecodeUTF8(kb, klen, "surrogateescape");
    else
        k = PyBytes_CheckExact(key) ? Py_NewRef(key) : PyBytes_FromStringAndSize(kb, klen);
    if (k == NULL)
        return -1;
    PyObject *nb = at->a_not_before ? PyLong_FromLongLong(at->a_not_before) : Py_NewRef(Py_None);
    PyObject *origin = at->a_origin_index >= 0
                           ? Py_BuildValue("(LL)", (long long)at->a_origin_index, (long long)at->a_origin_ts)
                           : Py_NewRef(Py_None);
    if (origin != NULL && origin != Py_None)
        hot_untrack_atomic(origin);
    if (nb == NULL || origin == NULL) {
        Py_DECREF(k);
        Py_XDECREF(nb);
        Py_XDECREF(origin);
        return -1;
    }
    PyTuple_SET_ITEM(e, 3, k);
    PyTuple_SET_ITEM(e, 4, nb);
    PyTuple_SET_ITEM(e, 5, origin);
    PyTuple_SET_ITEM(e, 6, Py_NewRef(at->a_flags & TAPE_A_TOMBSTONE ? Py_True : Py_False));
    return 0;
}

/* The caller's Python path takes over. */
static PyObject *keys_slow(void)
{
    Py_RETURN_FALSE;
}

static PyObject *keys_latest(hot_keys *self, PyObject *key)
{
    const char *kb;
    Py_ssize_t klen;
    if (PyUnicode_CheckExact(key)) {
        kb = PyUnicode_AsUTF8AndSize(key, &klen);
        if (kb == NULL) { /* lone surrogates: their escaped bytes, in Python */
            PyErr_Clear();
            return keys_slow();
        }
    } else if (PyBytes_CheckExact(key)) {
        kb = PyBytes_AS_STRING(key);
        klen = PyBytes_GET_SIZE(key);
    } else {
        return keys_slow();
    }
    if (klen < 1 || klen > TAPE_KEY_MAX || self->l_queue == NULL || keys_busy(self))
        return keys_slow();

    tape_entry e;
    self->l_busy = hot_forks + 1;
    hot_in_core = 1;
    int rc = hot_fn.key_read(self->l_queue, self->l_tailer, kb, (uint32_t)klen, &e);
    hot_in_core = 0;
    if (rc < 0) {
        self->l_busy = 0;
        return keys_slow(); /* which raises the error */
    }
    if (rc == 0) {
        self->l_busy = 0;
        Py_RETURN_NONE;
    }
    /* Copied out of the mapping: bytes and ints only, until l_busy is cleared. */
    tape_attrs at = e.e_attrs;
    PyObject *index = PyLong_FromLongLong(e.e_index);
    PyObject *ts = PyLong_FromLongLong(e.e_timestamp);
    PyObject *data = PyBytes_FromStringAndSize(e.e_data, (Py_ssize_t)e.e_len);
    self->l_busy = 0;
    PyObject *value = NULL, *entry = NULL;
    if (index == NULL || ts == NULL || data == NULL)
        goto done;
    if (self->l_kind == HOT_RAW) {
        value = Py_NewRef(data);
    } else {
        if (self->l_kind == HOT_MSGPACK) {
            value = hot_mp->mp_unpack((const uint8_t *)PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
            if (value == NULL && PyErr_Occurred())
                goto done;
        }
        if (value == NULL && (value = PyObject_CallOneArg(self->l_decode, data)) == NULL)
            goto done;
    }
    PyTypeObject *type = (PyTypeObject *)self->l_entry;
    entry = type->tp_alloc(type, 7);
    if (entry == NULL)
        goto done;
    PyTuple_SET_ITEM(entry, 0, index);
    PyTuple_SET_ITEM(entry, 1, ts);
    PyTuple_SET_ITEM(entry, 2, value);
    index = ts = value = NULL;
    if (key_fields(entry, key, kb, klen, &at) < 0)
        Py_CLEAR(entry);
    else
        hot_untrack_atomic(entry);
done:
    Py_XDECREF(index);
    Py_XDECREF(ts);
    Py_XDECREF(data);
    Py_XDECREF(value);
    return entry;
}

static PyMethodDef keys_methods[] = {
    {"latest", (PyCFunction)keys_latest, METH_O,
     "latest($self, key, /)\n--\n\nThe Entry of the newest entry with `key`, None when there is none or it was deleted;\n"
     "False: the caller's Python path takes over."},
    {"shut", (PyCFunction)keys_shut, METH_NOARGS,
     "shut($self, /)\n--\n\nForget the queue and the tailer: they are being closed."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject hot_keys_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.Keys",
    .tp_doc = "Queue.latest(key) in C.",
    .tp_basicsize = sizeof(hot_keys),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)keys_init,
    .tp_dealloc = (destructor)keys_dealloc,
    .tp_traverse = (traverseproc)keys_traverse,
    .tp_clear = (inquiry)keys_clear,
    .tp_methods = keys_methods,
};
