/* _hot_reader.c - Reader, the base of tape.Tailer: read() and read_entry() in C (see _hot.c).
 *
 * The Tailer hands out its current batch (a list of values, or of Entry)
 * through an iterator over that list; _serve(it, mode) names it: mode 1 a
 * batch of values that read() may take from, 2 one of Entry for
 * read_entry(), 0 none (no batch, or a named tailer, whose stored position
 * moves before each value). read() and read_entry() without a timeout take
 * the iterator's next item; anything else (the batch is used up, a timeout,
 * keywords read() does not know) calls the Tailer's _read_slow(*args, **kw)
 * / _read_entry_slow(*args, **kw). Closing empties the list, which ends the
 * iterator.
 *
 * View: the object under Tailer.read_view()'s memoryview: it exports the
 * pinned entry's bytes as a read-only buffer (writing through it would hit a
 * PROT_READ mapping) and releases the pin (tape_pin_release) when collected.
 */
#include "_hot.h"

typedef struct hot_view {
    PyObject_HEAD
    const void *v_data;
    Py_ssize_t v_len;
    void *v_pin;
    void (*v_release)(void *pin);
} hot_view;

/* View(data, length, pin, release): the addresses of the entry's bytes, of
 * its tape_pin and of tape_pin_release; the View owns the pin from then on. */
static PyObject *view_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    unsigned long long data, pin, release;
    Py_ssize_t len;
    if (kw != NULL && PyDict_GET_SIZE(kw) != 0) {
        PyErr_SetString(PyExc_TypeError, "View() takes no keywords");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "KnKK:View", &data, &len, &pin, &release))
        return NULL;
    if (len < 0 || pin == 0 || release == 0 || (data == 0 && len != 0)) {
        PyErr_SetString(PyExc_ValueError, "View(): a NULL address or a negative length");
        return NULL;
    }
    hot_view *self = (hot_view *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->v_data = (const void *)(uintptr_t)data;
    self->v_len = len;
    self->v_pin = (void *)(uintptr_t)pin;
    self->v_release = (void (*)(void *))(uintptr_t)release;
    return (PyObject *)self;
}

static void view_dealloc(hot_view *self)
{
    if (self->v_pin != NULL)
        self->v_release(self->v_pin);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int view_getbuffer(hot_view *self, Py_buffer *view, int flags)
{
    /* readonly: a request for a writable buffer gets BufferError */
    return PyBuffer_FillInfo(view, (PyObject *)self, (void *)(uintptr_t)self->v_data, self->v_len, 1,
                             flags);
}

static PyBufferProcs view_as_buffer = {
    .bf_getbuffer = (getbufferproc)view_getbuffer,
};

PyTypeObject hot_view_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.View",
    .tp_doc = "A pinned entry's bytes in the mapped file, as a read-only buffer (under Tailer.read_view()).",
    .tp_basicsize = sizeof(hot_view),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = view_new,
    .tp_dealloc = (destructor)view_dealloc,
    .tp_as_buffer = &view_as_buffer,
};

typedef struct hot_reader {
    PyObject_HEAD
    PyObject *r_cur; /* the batch's iterator, or NULL */
    int r_mode;
} hot_reader;

static int reader_traverse(hot_reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->r_cur);
    return 0;
}

static int reader_clear(hot_reader *self)
{
    Py_CLEAR(self->r_cur);
    return 0;
}

static void reader_dealloc(hot_reader *self)
{
    PyObject_GC_UnTrack(self);
    reader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *reader_serve(hot_reader *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_serve(it, mode)");
        return NULL;
    }
    long mode = PyLong_AsLong(args[1]);
    if (mode == -1 && PyErr_Occurred())
        return NULL;
    if (mode < 0 || mode > 2 || (mode != 0 && Py_TYPE(args[0])->tp_iternext == NULL)) {
        PyErr_SetString(PyExc_ValueError, "_serve(): mode 0, or 1 or 2 with an iterator");
        return NULL;
    }
    Py_XSETREF(self->r_cur, mode ? Py_NewRef(args[0]) : NULL);
    self->r_mode = (int)mode;
    Py_RETURN_NONE;
}

/* Whether a call gives no timeout (or None): timeout is the first argument, or
 * the keyword `timeout`; any keyword but `timeout` and `other` is not known. */
static int no_timeout(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, const char *other)
{
    if (nargs > 0 && args[0] != Py_None)
        return 0;
    if (kwnames == NULL)
        return 1;
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0) {
            if (nargs > 0 || args[nargs + i] != Py_None)
                return 0;
        } else if (other == NULL || PyUnicode_CompareWithASCIIString(name, other) != 0) {
            return 0;
        }
    }
    return 1;
}

/* The batch's next item when it is of `mode` and the call may take it; NULL (no error) otherwise. */
static PyObject *reader_next(hot_reader *self, int mode, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames, Py_ssize_t max_args, const char *other)
{
    if (self->r_mode != mode || self->r_cur == NULL || nargs > max_args ||
        !no_timeout(args, nargs, kwnames, other))
        return NULL;
    PyObject *cur = Py_NewRef(self->r_cur);
    PyObject *item = Py_TYPE(cur)->tp_iternext(cur);
    Py_DECREF(cur);
    return item;
}

static PyObject *reader_read(hot_reader *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *item = reader_next(self, 1, args, nargs, kwnames, 2, "default");
    if (item != NULL || PyErr_Occurred())
        return item;
    return hot_call_method(hot_str_read_slow, (PyObject *)self, args, nargs, kwnames);
}

static PyObject *reader_read_entry(hot_reader *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    PyObject *item = reader_next(self, 2, args, nargs, kwnames, 1, NULL);
    if (item != NULL || PyErr_Occurred())
        return item;
    return hot_call_method(hot_str_read_entry_slow, (PyObject *)self, args, nargs, kwnames);
}

static PyMethodDef reader_methods[] = {
    {"read", (PyCFunction)(void (*)(void))reader_read, METH_FASTCALL | METH_KEYWORDS,
     "read($self, timeout=None, default=None)\n--\n\n"
     "The next value, or `default` when there is none (after waiting up to `timeout` seconds).\n\n"
     "A queue that stores None tells \"nothing there\" from None by a default\n"
     "of its own (`t.read(default=EMPTY)`), or by read_entry()."},
    {"read_entry", (PyCFunction)(void (*)(void))reader_read_entry, METH_FASTCALL | METH_KEYWORDS,
     "read_entry($self, timeout=None)\n--\n\n"
     "The next Entry, or None when there is none (after waiting up to `timeout` seconds)."},
    {"_serve", (PyCFunction)(void (*)(void))reader_serve, METH_FASTCALL,
     "_serve($self, it, mode, /)\n--\n\n"
     "Hand out the batch through iterator `it`: mode 1 to read(), 2 to read_entry(), 0 to neither."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject hot_reader_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.Reader",
    .tp_doc = "The base of tape.Tailer: read() and read_entry() in C.",
    .tp_basicsize = sizeof(hot_reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_traverse = (traverseproc)reader_traverse,
    .tp_clear = (inquiry)reader_clear,
    .tp_methods = reader_methods,
};
