/* _hot.h - the shared parts of tape._native._hot (see _hot.c). */
#ifndef TAPE_HOT_H
#define TAPE_HOT_H

#include "../_msgpack.h"
#include "tape.h"

/* The core's functions this module calls, taken from tape._core (hot_bind):
 * the module links no copy of the core. */
typedef struct hot_core {
    int64_t (*append)(tape_appender *a, const void *data, size_t len, int64_t ts_ns);
    int64_t (*append_many_ex)(tape_appender *a, const void *data, const uint64_t *ends, size_t n,
                              int64_t ts_ns, size_t *written, const tape_attrs *at);
    int64_t (*peek_many_ex)(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                            uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs);
    int64_t (*read_many_ex)(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                            uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs);
    int (*key_read)(tape_queue *q, tape_tailer *t, const void *key, uint32_t key_len, tape_entry *e);
} hot_core;

extern hot_core hot_fn;

/* Set while this thread calls the core holding the GIL: the core's wait for
 * the write lock then lets the GIL go (tape_set_wait_hooks). */
extern _Thread_local int hot_in_core;
extern const tape_mp_api *hot_mp;

/* How many forks made this process (each child counts one more than its parent). */
extern unsigned hot_forks;

/* The codecs handled here; any other calls its Python encode / decode. */
enum { HOT_RAW = 0, HOT_MSGPACK = 1, HOT_OTHER = 2 };

/* Batches: payloads and keys of at most HOT_BATCH_BYTES, at most HOT_BATCH_SLOTS entries. */
#define HOT_BATCH_BYTES (1u << 20)
#define HOT_BATCH_SLOTS 4096u

/* bind_writer(append_ex, append_if, append_if_key): the core's keyed appends, for Writer. */
PyObject *hot_bind_writer(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

extern PyTypeObject hot_writer_type;
extern PyTypeObject hot_reader_type;
extern PyTypeObject hot_batches_type;
extern PyTypeObject hot_keys_type;
extern PyTypeObject hot_view_type;

/* Consumer groups' claims and acks (_hot_group.c): its types added to the
 * module, and bind_group(claim, claim_many, ack, ack_many). */
int hot_group_init(PyObject *module);
PyObject *hot_bind_group(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* Names of the Python methods C hands over to (interned at import). */
extern PyObject *hot_str_write_slow, *hot_str_write_many_slow, *hot_str_after, *hot_str_after_many,
    *hot_str_read_slow, *hot_str_read_entry_slow;

/* Take the (just built) tuple e out of the garbage collector's watch when none
 * of its items is watched (ints, bytes, str, None...): it cannot be in a
 * cycle, and a batch of thousands then costs the collector nothing. */
void hot_untrack_atomic(PyObject *e);

/* The column functions of _hot_columns.c. */
PyObject *hot_ascending(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *hot_smallest(PyObject *module, PyObject *arg);
PyObject *hot_sums(PyObject *module, PyObject *arg);

/* self.<name>(*args, **kw) from a vectorcall's arguments. */
PyObject *hot_call_method(PyObject *name, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames);

#endif
