/* _hot_columns.c - checks and sums over columns of integers (see _hot.c), for
 * tape.replicate's frames: a loop in C where Python would make an int object
 * per value. Each column is a buffer of the machine's integers (an array).
 *
 *   ascending(col, after)  True when col (int64) is strictly increasing and
 *                          its first value is above `after`;
 *   smallest(col)          the least value of col (int64, at least one);
 *   sums(col)              bytes of the running sums (uint64) of col (uint32).
 */
#include "_hot.h"

/* The buffer args[0] as `n` values of `size` bytes; -1 with an exception. */
static int column(PyObject *arg, Py_buffer *view, Py_ssize_t size, Py_ssize_t *n)
{
    if (PyObject_GetBuffer(arg, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len % size) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "a column of whole values");
        return -1;
    }
    *n = view->len / size;
    return 0;
}

PyObject *hot_ascending(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ascending(col, after)");
        return NULL;
    }
    long long after = PyLong_AsLongLong(args[1]);
    if (after == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    Py_ssize_t n;
    if (column(args[0], &view, 8, &n) < 0)
        return NULL;
    int64_t last = (int64_t)after, value;
    int ok = 1;
    for (Py_ssize_t k = 0; ok && k < n; k++) {
        memcpy(&value, (const char *)view.buf + 8 * k, 8);
        ok = value > last;
        last = value;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

PyObject *hot_smallest(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t n;
    if (column(arg, &view, 8, &n) < 0)
        return NULL;
    if (n == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "smallest() of no value");
        return NULL;
    }
    int64_t least = INT64_MAX, value;
    for (Py_ssize_t k = 0; k < n; k++) {
        memcpy(&value, (const char *)view.buf + 8 * k, 8);
        if (value < least)
            least = value;
    }
    PyBuffer_Release(&view);
    return PyLong_FromLongLong((long long)least);
}

PyObject *hot_sums(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t n;
    if (column(arg, &view, 4, &n) < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 8 * n);
    if (out != NULL) {
        uint64_t sum = 0;
        uint32_t value;
        for (Py_ssize_t k = 0; k < n; k++) {
            memcpy(&value, (const char *)view.buf + 4 * k, 4);
            sum += value;
            memcpy(PyBytes_AS_STRING(out) + 8 * k, &sum, 8);
        }
    }
    PyBuffer_Release(&view);
    return out;
}
