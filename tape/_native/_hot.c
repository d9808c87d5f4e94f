/* _hot.c - tape._native._hot: the hot calls of Appender and Tailer in C.
 *
 * A CPython extension of the binding layer (the only importer of it is
 * tape/_native/). Its types:
 *   Writer   (_hot_writer.c) the base of tape.Appender: write(obj) and
 *            write_many(objs); encodes (raw bytes as they are, msgpack through tape._msgpack's
 *            C API, any other codec through its Python encode) and calls
 *            tape_append / tape_append_many_ex, holding the GIL;
 *   Reader   (_hot_reader.c) the base of tape.Tailer: read() and
 *            read_entry() take from the current batch, in C;
 *   Batches  (_hot_batches.c) a TailerHandle's batches: peeks at (or reads)
 *            up to 4,096 entries in one call and builds their values (or
 *            Entry) in C, decoding raw and msgpack values without Python;
 *   Keys     (_hot_keys.c) Queue.latest(key): tape_key_read and the Entry, in C;
 *   Claims, Claimer, DeliveryBase (_hot_group.c) consumer groups' claims and
 *            acks (the bases of tape.Consumer and tape.Delivery), in C;
 *   View     (_hot_reader.c) the read-only buffer under Tailer.read_view().
 * and loops over columns of integers for tape.replicate's frames (_hot_columns.c).
 * Anything else (keywords, a queue's clock, the end of a batch, an error, a
 * sync="always" queue's sync, retention at a roll) goes back at once to the
 * Python method of the public class it stands in for.
 *
 * It links no copy of the core: the core's functions come from tape._core
 * (bind(), called once by tape/_native/core.py with their addresses), so that
 * one process has one SIGBUS guard registry, one set of fork handlers and one
 * table of queues. Nor a copy of the msgpack codec: its C API comes from the
 * capsule of tape._msgpack.
 *
 * The GIL: these calls hold it (an append costs tens of nanoseconds), but
 * where the core may wait: when the write lock is taken by another thread or
 * process, tape_append's wait lets the GIL go (tape_set_wait_hooks, set by
 * bind(): hot_in_core marks the calls of ours that hold the GIL), and
 * write_many lets it go while a large batch is copied. What may wait long
 * otherwise (sync, tape_wait) is called through cffi, which releases the
 * GIL. peek and read_many never wait.
 */
#include "_hot.h"

#include <pthread.h>

hot_core hot_fn;
unsigned hot_forks;
const tape_mp_api *hot_mp;
_Thread_local int hot_in_core;
static _Thread_local PyThreadState *hot_saved;

/* The core's wait for a lock word (tape_set_wait_hooks): let the GIL go
 * while it sleeps, when this thread holds it in a call of ours. */
static void hot_wait_before(void)
{
    if (hot_in_core)
        hot_saved = PyEval_SaveThread();
}

static void hot_wait_after(void)
{
    if (hot_saved != NULL) {
        PyThreadState *saved = hot_saved;
        hot_saved = NULL;
        PyEval_RestoreThread(saved);
    }
}

PyObject *hot_str_write_slow, *hot_str_write_many_slow, *hot_str_after, *hot_str_after_many,
    *hot_str_read_slow, *hot_str_read_entry_slow;

PyObject *hot_call_method(PyObject *name, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    Py_ssize_t total = 1 + nargs + nkw;
    PyObject *small[8];
    PyObject **stack = small;
    if (total > 8) {
        stack = PyMem_Malloc((size_t)total * sizeof *stack);
        if (stack == NULL)
            return PyErr_NoMemory();
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < nargs + nkw; i++)
        stack[1 + i] = args[i];
    PyObject *result = PyObject_VectorcallMethod(name, stack, (size_t)(1 + nargs), kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return result;
}

void hot_untrack_atomic(PyObject *e)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(e); i++) {
        PyObject *item = PyTuple_GET_ITEM(e, i);
        if (PyObject_IS_GC(item) && PyObject_GC_IsTracked(item))
            return;
    }
    PyObject_GC_UnTrack(e);
}

static int hot_intern(PyObject **s, const char *text)
{
    if (*s == NULL)
        *s = PyUnicode_InternFromString(text);
    return *s == NULL ? -1 : 0;
}

static void hot_forked(void)
{
    hot_forks++;
}

/* bind(append, append_many_ex, peek_many_ex, read_many_ex, key_read, set_wait_hooks):
 * the addresses of the core's functions; the last is called at once. */
static PyObject *hot_bind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "bind() takes 6 addresses");
        return NULL;
    }
    uintptr_t p[6];
    for (int i = 0; i < 6; i++) {
        p[i] = (uintptr_t)PyLong_AsUnsignedLongLong(args[i]);
        if (PyErr_Occurred())
            return NULL;
        if (p[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "bind(): a NULL address");
            return NULL;
        }
    }
    hot_fn.append = (int64_t (*)(tape_appender *, const void *, size_t, int64_t))p[0];
    hot_fn.append_many_ex = (int64_t (*)(tape_appender *, const void *, const uint64_t *, size_t,
                                         int64_t, size_t *, const tape_attrs *))p[1];
    hot_fn.peek_many_ex = (int64_t (*)(tape_tailer *, void *, size_t, int64_t *, int64_t *,
                                       uint64_t *, size_t, tape_attrs *, size_t *))p[2];
    hot_fn.read_many_ex = (int64_t (*)(tape_tailer *, void *, size_t, int64_t *, int64_t *,
                                       uint64_t *, size_t, tape_attrs *, size_t *))p[3];
    hot_fn.key_read = (int (*)(tape_queue *, tape_tailer *, const void *, uint32_t, tape_entry *))p[4];
    void (*set_wait_hooks)(void (*)(void), void (*)(void)) = (void (*)(void (*)(void), void (*)(void)))p[5];
    set_wait_hooks(hot_wait_before, hot_wait_after);
    Py_RETURN_NONE;
}

static PyMethodDef hot_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))hot_bind, METH_FASTCALL,
     "bind(append, append_many_ex, peek_many_ex, read_many_ex, key_read, set_wait_hooks, /) -> None\n--\n\n"
     "Take the core's functions (their addresses in tape._core); once, before any Writer or Reader is used."},
    {"bind_group", (PyCFunction)(void (*)(void))hot_bind_group, METH_FASTCALL,
     "bind_group(claim, claim_many, ack, ack_many, /) -> None\n--\n\n"
     "Take the core's consumer group calls (their addresses in tape._core); once, before any Claims is made."},
    {"bind_writer", (PyCFunction)(void (*)(void))hot_bind_writer, METH_FASTCALL,
     "bind_writer(append_ex, append_if, append_if_key, /) -> None\n--\n\n"
     "Take the core's keyed appends for Writer (their addresses in tape._core); once, with bind()."},
    {"ascending", (PyCFunction)(void (*)(void))hot_ascending, METH_FASTCALL,
     "ascending(col, after, /) -> bool\n--\n\nTrue when the int64 column is strictly increasing, its first value above `after`."},
    {"smallest", (PyCFunction)hot_smallest, METH_O, "smallest(col, /) -> int\n--\n\nThe least value of the int64 column."},
    {"sums", (PyCFunction)hot_sums, METH_O, "sums(col, /) -> bytes\n--\n\nThe running sums (uint64) of the uint32 column."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hot_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tape._native._hot",
    .m_doc = "The hot calls of Appender, Tailer, Queue.latest and consumer groups in C (Writer, Reader, Batches, Keys, Claimer); the binding layer's own.",
    .m_size = -1,
    .m_methods = hot_methods,
};

PyMODINIT_FUNC PyInit__hot(void)
{
    /* (PyCapsule_Import finds tape._msgpack as an attribute of tape: import it first) */
    PyObject *mp = PyImport_ImportModule("tape._msgpack");
    if (mp == NULL)
        return NULL;
    Py_DECREF(mp);
    hot_mp = PyCapsule_Import(TAPE_MP_CAPSULE, 0);
    if (hot_mp == NULL)
        return NULL;
    if (hot_intern(&hot_str_write_slow, "_write_slow") < 0 ||
        hot_intern(&hot_str_write_many_slow, "_write_many_slow") < 0 ||
        hot_intern(&hot_str_after, "_after") < 0 || hot_intern(&hot_str_after_many, "_after_many") < 0 ||
        hot_intern(&hot_str_read_slow, "_read_slow") < 0 ||
        hot_intern(&hot_str_read_entry_slow, "_read_entry_slow") < 0)
        return NULL;
    if (PyType_Ready(&hot_writer_type) < 0 || PyType_Ready(&hot_reader_type) < 0 ||
        PyType_Ready(&hot_batches_type) < 0 || PyType_Ready(&hot_keys_type) < 0 ||
        PyType_Ready(&hot_view_type) < 0)
        return NULL;
    if (pthread_atfork(NULL, NULL, hot_forked) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *module = PyModule_Create(&hot_module);
    if (module == NULL)
        return NULL;
    if (hot_group_init(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Writer", (PyObject *)&hot_writer_type) < 0 ||
        PyModule_AddObjectRef(module, "Reader", (PyObject *)&hot_reader_type) < 0 ||
        PyModule_AddObjectRef(module, "Batches", (PyObject *)&hot_batches_type) < 0 ||
        PyModule_AddObjectRef(module, "Keys", (PyObject *)&hot_keys_type) < 0 ||
        PyModule_AddObjectRef(module, "View", (PyObject *)&hot_view_type) < 0 ||
        PyModule_AddIntConstant(module, "BATCH_BYTES", HOT_BATCH_BYTES) < 0 ||
        PyModule_AddIntConstant(module, "BATCH_SLOTS", HOT_BATCH_SLOTS) < 0 ||
        PyModule_AddIntConstant(module, "RAW", HOT_RAW) < 0 ||
        PyModule_AddIntConstant(module, "MSGPACK", HOT_MSGPACK) < 0 ||
        PyModule_AddIntConstant(module, "OTHER", HOT_OTHER) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
