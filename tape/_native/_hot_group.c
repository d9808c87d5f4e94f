/* _hot_group.c - consumer groups' claims and acks in C (see _hot.c).
 *
 * Three types:
 *   Claims(consumer, tailer)   a ConsumerHandle's C consumer and tailer
 *            (addresses), and its lock: Claims is the handle's lock too
 *            (acquire, release, `with`), which every call here holds while it
 *            is in the core, as the handle's Python calls do (one call at a
 *            time per consumer), taken in C without a Python call; shut()
 *            forgets both (the handle calls it, holding the lock, before it
 *            frees them).
 *   Claimer  the base of tape.Consumer. _hot_setup(claims, kind, decode,
 *            delivery, fast): its Claims, how values are decoded (RAW,
 *            MSGPACK or OTHER and the codec's decode), the class tape.Delivery
 *            and whether the group's clock is time.time_ns (else every call
 *            goes to Python).
 *              claim(timeout=None)   tape_group_claim, the Delivery built in
 *                C; Python's _claim_slow(*args, **kw) takes over where it
 *                stops: nothing due (the wait, the dead letters to store), an
 *                error (raised there), a closed consumer, other keywords;
 *                a redriven dead letter's claim goes to _redriven(claim, now)
 *                (its payload is read from its copy); every 64th claim first
 *                calls _bury_dead(now), as Python's does;
 *              _hot_claim()   the same claim, or None where C stops (for the
 *                claims of Python's waits: it then claims in Python);
 *              _hot_batch(n)    up to n claims (tape_group_claim_many), then
 *                _bury_dead(now): a list of Delivery, or False where the
 *                Python path takes over (a closed consumer, an error or an
 *                entry too large for the buffer before any claim);
 *              _hot_ack_many(ds, now)   ack the list ds under one lock: the
 *                positions of those whose claim had lapsed, a negative return
 *                code of the core, or False (anything not a list of distinct
 *                deliveries of this consumer, a closed consumer: Python
 *                checks and raises).
 *   DeliveryBase  the base of tape.Delivery: its fields (value, index,
 *            attempt, timestamp, _slot, _gen, _due, _outcome, _consumer) and
 *            ack() (tape_group_ack); a lapsed claim, an error, a closed or
 *            slow consumer go to its Python _ack_slow().
 *
 * The GIL: held, but while the core waits for the group's lock (hot_in_core)
 * and while the consumer's lock is waited for (as threading.Lock's acquire,
 * a signal's handler runs meanwhile, and may raise). While the consumer's lock is held, only objects outside the
 * garbage collector are made (bytes, ints), so that no finalizer runs then
 * (one closing the consumer would wait for the lock this thread holds);
 * payloads are copied out of the mapping there and decoded after.
 */
#include "_hot.h"

#include <math.h>
#include <structmember.h>
#include <time.h>

#define GROUP_MANY 1024u             /* claims of one core call, at most */
#define GROUP_MANY_BYTES (1u << 20)  /* and bytes of their payloads */

static struct {
    int (*claim)(tape_consumer *c, tape_tailer *t, int64_t now_ns, tape_delivery *d, tape_entry *e);
    int64_t (*claim_many)(tape_consumer *c, tape_tailer *t, int64_t now_ns, size_t max, int64_t *out,
                          void *buf, size_t cap);
    int (*ack)(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns);
    int64_t (*ack_many)(tape_consumer *c, const uint32_t *slots, const uint64_t *gens, size_t n,
                        int64_t now_ns, uint8_t *stale);
} grp;

static PyObject *str_claim_slow, *str_bury_dead, *str_redriven, *str_ack_slow, *str_acked;

/* ---- Claims ---------------------------------------------------------------------- */

typedef struct hot_claims {
    PyObject_HEAD
    tape_consumer *c_cons;
    tape_tailer *c_tailer;
    PyThread_type_lock c_lock;
    int64_t *c_out;                  /* GROUP_MANY * TAPE_CLAIM_FIELDS, made at the first batch */
    char *c_buf;                     /* GROUP_MANY_BYTES */
} hot_claims;

static int claims_init(hot_claims *self, PyObject *args, PyObject *kw)
{
    unsigned long long cons, tailer;
    if (kw != NULL && PyDict_GET_SIZE(kw)) {
        PyErr_SetString(PyExc_TypeError, "Claims() takes no keywords");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "KK", &cons, &tailer))
        return -1;
    if (grp.claim == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tape._native._hot.bind_group() was not called");
        return -1;
    }
    if (cons == 0 || tailer == 0) {
        PyErr_SetString(PyExc_ValueError, "Claims(): a NULL consumer or tailer");
        return -1;
    }
    if (self->c_lock == NULL && (self->c_lock = PyThread_allocate_lock()) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->c_cons = (tape_consumer *)(uintptr_t)cons;
    self->c_tailer = (tape_tailer *)(uintptr_t)tailer;
    return 0;
}

static void claims_dealloc(hot_claims *self)
{
    if (self->c_lock != NULL)
        PyThread_free_lock(self->c_lock);
    PyMem_Free(self->c_out);
    PyMem_Free(self->c_buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *claims_shut(hot_claims *self, PyObject *unused)
{
    (void)unused;
    self->c_cons = NULL;
    self->c_tailer = NULL;
    Py_RETURN_NONE;
}

/* Take the consumer's lock: 0, or -1 with an exception (a signal handler's, while it waited). */
static int claims_lock(hot_claims *s)
{
    if (s->c_lock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Claims(): not initialised");
        return -1;
    }
    if (PyThread_acquire_lock(s->c_lock, NOWAIT_LOCK))
        return 0;
    for (;;) {
        PyLockStatus r;
        Py_BEGIN_ALLOW_THREADS
        r = PyThread_acquire_lock_timed(s->c_lock, -1, 1);
        Py_END_ALLOW_THREADS
        if (r == PY_LOCK_ACQUIRED)
            return 0;
        if (Py_MakePendingCalls() < 0) /* interrupted: the signal's handler ran, and raised */
            return -1;
    }
}

static void claims_unlock(hot_claims *s)
{
    PyThread_release_lock(s->c_lock);
}

static PyObject *claims_acquire(hot_claims *self, PyObject *unused)
{
    (void)unused;
    if (claims_lock(self) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

static PyObject *claims_release(hot_claims *self, PyObject *unused)
{
    (void)unused;
    claims_unlock(self);
    Py_RETURN_NONE;
}

static PyObject *claims_exit(hot_claims *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    claims_unlock(self);
    Py_RETURN_FALSE;
}

static PyMethodDef claims_methods[] = {
    {"shut", (PyCFunction)claims_shut, METH_NOARGS,
     "shut($self, /)\n--\n\nForget the consumer and its tailer (the caller holds the lock): they are being freed."},
    {"acquire", (PyCFunction)claims_acquire, METH_NOARGS,
     "acquire($self, /)\n--\n\nTake the consumer's lock (waiting, the GIL let go): True."},
    {"release", (PyCFunction)claims_release, METH_NOARGS,
     "release($self, /)\n--\n\nLet the consumer's lock go (the caller holds it)."},
    {"__enter__", (PyCFunction)claims_acquire, METH_NOARGS, "__enter__($self, /)\n--\n\nacquire()."},
    {"__exit__", (PyCFunction)(void (*)(void))claims_exit, METH_FASTCALL,
     "__exit__($self, *exc_info)\n--\n\nrelease()."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject hot_claims_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.Claims",
    .tp_doc = "A ConsumerHandle's C consumer and tailer for the C claims and acks, and its lock.",
    .tp_basicsize = sizeof(hot_claims),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)claims_init,
    .tp_dealloc = (destructor)claims_dealloc,
    .tp_methods = claims_methods,
};

/* ---- DeliveryBase ---------------------------------------------------------------- */

typedef struct hot_delivery {
    PyObject_HEAD
    PyObject *d_consumer;
    PyObject *d_value;
    PyObject *d_outcome; /* NULL: None */
    long long d_slot;
    unsigned long long d_gen;
    long long d_index;
    long long d_attempt;
    long long d_due;
    long long d_ts;
    char d_mark; /* seen by _hot_ack_many's check for duplicates */
} hot_delivery;

static int delivery_traverse(hot_delivery *self, visitproc visit, void *arg)
{
    Py_VISIT(self->d_consumer);
    Py_VISIT(self->d_value);
    Py_VISIT(self->d_outcome);
    return 0;
}

static int delivery_clear(hot_delivery *self)
{
    Py_CLEAR(self->d_consumer);
    Py_CLEAR(self->d_value);
    Py_CLEAR(self->d_outcome);
    return 0;
}

static void delivery_dealloc(hot_delivery *self)
{
    PyObject_GC_UnTrack(self);
    delivery_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* what time.time_ns() reads */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct hot_claimer hot_claimer;
static int claimer_ready(const hot_claimer *self);
static hot_claims *claimer_claims(const hot_claimer *self);
PyTypeObject hot_claimer_type;

static PyObject *delivery_ack(hot_delivery *self, PyObject *unused)
{
    (void)unused;
    PyObject *c = self->d_consumer;
    if (c != NULL && PyObject_TypeCheck(c, &hot_claimer_type) && claimer_ready((hot_claimer *)c) &&
        self->d_slot >= 0 && self->d_slot < TAPE_GROUP_SLOTS) {
        hot_claims *s = claimer_claims((hot_claimer *)c);
        int64_t now = now_ns();
        Py_INCREF(s);
        if (claims_lock(s) < 0) {
            Py_DECREF(s);
            return NULL;
        }
        int rc = -1;
        if (s->c_cons != NULL) {
            hot_in_core = 1;
            rc = grp.ack(s->c_cons, (uint32_t)self->d_slot, self->d_gen, now);
            hot_in_core = 0;
        }
        claims_unlock(s);
        Py_DECREF(s);
        if (rc == 0) {
            Py_XSETREF(self->d_outcome, Py_NewRef(str_acked));
            Py_RETURN_NONE;
        }
    }
    /* (a lapsed or failed ack changed nothing: Python's asks again, and raises) */
    return PyObject_CallMethodNoArgs((PyObject *)self, str_ack_slow);
}

static PyMemberDef delivery_members[] = {
    {"value", T_OBJECT_EX, offsetof(hot_delivery, d_value), 0, "The entry's value, decoded."},
    {"index", T_LONGLONG, offsetof(hot_delivery, d_index), 0, "The entry's index in the queue."},
    {"attempt", T_LONGLONG, offsetof(hot_delivery, d_attempt), 0, "Deliveries of the entry so far, this one included."},
    {"timestamp", T_LONGLONG, offsetof(hot_delivery, d_ts), 0, "The entry's timestamp, in ns since the epoch."},
    {"_consumer", T_OBJECT_EX, offsetof(hot_delivery, d_consumer), 0, NULL},
    {"_outcome", T_OBJECT, offsetof(hot_delivery, d_outcome), 0, NULL},
    {"_slot", T_LONGLONG, offsetof(hot_delivery, d_slot), 0, NULL},
    {"_gen", T_ULONGLONG, offsetof(hot_delivery, d_gen), 0, NULL},
    {"_due", T_LONGLONG, offsetof(hot_delivery, d_due), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef delivery_methods[] = {
    {"ack", (PyCFunction)delivery_ack, METH_NOARGS,
     "ack($self, /)\n--\n\nFinished: never handed out again. StaleDeliveryError when the claim lapsed."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject hot_delivery_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.DeliveryBase",
    .tp_doc = "The base of tape.Delivery: its fields and ack() in C.",
    .tp_basicsize = sizeof(hot_delivery),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)delivery_dealloc,
    .tp_traverse = (traverseproc)delivery_traverse,
    .tp_clear = (inquiry)delivery_clear,
    .tp_methods = delivery_methods,
    .tp_members = delivery_members,
};

/* ---- Claimer ----------------------------------------------------------------------- */

struct hot_claimer {
    PyObject_HEAD
    hot_claims *k_claims;
    PyObject *k_decode;
    PyTypeObject *k_delivery;
    int k_kind;
    char k_fast;
    unsigned k_count; /* claims made in C */
};

static int claimer_ready(const hot_claimer *self)
{
    return self->k_fast && self->k_claims != NULL && self->k_claims->c_cons != NULL;
}

static hot_claims *claimer_claims(const hot_claimer *self)
{
    return self->k_claims;
}

static PyObject *claimer_setup(hot_claimer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "_hot_setup(claims, kind, decode, delivery, fast)");
        return NULL;
    }
    long kind = PyLong_AsLong(args[1]);
    if (kind == -1 && PyErr_Occurred())
        return NULL;
    int fast = PyObject_IsTrue(args[4]);
    if (fast < 0)
        return NULL;
    if (!PyObject_TypeCheck(args[0], &hot_claims_type) || kind < HOT_RAW || kind > HOT_OTHER ||
        !PyType_Check(args[3]) || !PyType_IsSubtype((PyTypeObject *)args[3], &hot_delivery_type)) {
        PyErr_SetString(PyExc_ValueError, "_hot_setup(): not a Claims, an unknown kind, or not a DeliveryBase class");
        return NULL;
    }
    Py_XSETREF(self->k_claims, (hot_claims *)Py_NewRef(args[0]));
    Py_XSETREF(self->k_decode, Py_NewRef(args[2]));
    Py_XSETREF(self->k_delivery, (PyTypeObject *)Py_NewRef(args[3]));
    self->k_kind = (int)kind;
    self->k_fast = (char)fast;
    Py_RETURN_NONE;
}

static int claimer_traverse(hot_claimer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->k_claims);
    Py_VISIT(self->k_decode);
    Py_VISIT(self->k_delivery);
    return 0;
}

static int claimer_clear(hot_claimer *self)
{
    Py_CLEAR(self->k_claims);
    Py_CLEAR(self->k_decode);
    Py_CLEAR(self->k_delivery);
    return 0;
}

static void claimer_dealloc(hot_claimer *self)
{
    PyObject_GC_UnTrack(self);
    claimer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The value of payload `data` (a reference taken). */
static PyObject *claimer_decode(hot_claimer *self, PyObject *data)
{
    if (self->k_kind == HOT_RAW)
        return data;
    if (self->k_kind == HOT_MSGPACK) {
        PyObject *v = hot_mp->mp_unpack((const uint8_t *)PyBytes_AS_STRING(data), (size_t)PyBytes_GET_SIZE(data));
        if (v != NULL || PyErr_Occurred()) {
            Py_DECREF(data);
            return v;
        }
    }
    PyObject *v = PyObject_CallOneArg(self->k_decode, data);
    Py_DECREF(data);
    return v;
}

/* A Delivery of claim o (TAPE_CLAIM_FIELDS numbers) with `value` (a reference taken). */
static PyObject *claimer_delivery(hot_claimer *self, const int64_t *o, PyObject *value)
{
    if (value == NULL)
        return NULL;
    PyTypeObject *type = self->k_delivery;
    hot_delivery *d = (hot_delivery *)type->tp_alloc(type, 0);
    if (d == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    d->d_consumer = Py_NewRef(self);
    d->d_value = value;
    d->d_slot = o[TAPE_CLAIM_SLOT];
    d->d_gen = (unsigned long long)o[TAPE_CLAIM_GEN];
    d->d_index = o[TAPE_CLAIM_INDEX];
    d->d_attempt = o[TAPE_CLAIM_ATTEMPT];
    d->d_due = o[TAPE_CLAIM_DUE];
    d->d_ts = o[TAPE_CLAIM_TS];
    return (PyObject *)d;
}

/* The TAPE_CLAIM_FIELDS numbers of claim d (the entry's timestamp ts) at o (its end: 0). */
static void claim_numbers(int64_t *o, const tape_delivery *d, int64_t ts)
{
    o[TAPE_CLAIM_SLOT] = d->d_slot;
    o[TAPE_CLAIM_GEN] = (int64_t)d->d_gen;
    o[TAPE_CLAIM_INDEX] = d->d_index;
    o[TAPE_CLAIM_ATTEMPT] = d->d_attempt;
    o[TAPE_CLAIM_DUE] = d->d_due;
    o[TAPE_CLAIM_DL] = d->d_dl;
    o[TAPE_CLAIM_TS] = ts;
    o[TAPE_CLAIM_END] = 0;
}

/* A redriven dead letter's claim o: Python's _redriven(claim, now) reads its copy: a Delivery, or None. */
static PyObject *claimer_redriven(hot_claimer *self, const int64_t *o, int64_t now)
{
    PyObject *list = PyList_New(TAPE_CLAIM_FIELDS);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < TAPE_CLAIM_FIELDS; i++) {
        PyObject *v = PyLong_FromLongLong(o[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    PyObject *args[3] = {(PyObject *)self, list, PyLong_FromLongLong(now)};
    PyObject *r = NULL;
    if (args[2] != NULL)
        r = PyObject_VectorcallMethod(str_redriven, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(list);
    Py_XDECREF(args[2]);
    return r;
}

static int claimer_bury(hot_claimer *self, int64_t now)
{
    PyObject *n = PyLong_FromLongLong(now);
    if (n == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_bury_dead, n);
    Py_DECREF(n);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* One claim: a Delivery, or NULL: an error set, or none (Python takes over). */
static PyObject *claimer_claim_one(hot_claimer *self)
{
    for (;;) {
        if (!claimer_ready(self))
            return NULL;
        int64_t now = now_ns();
        if ((++self->k_count & 63) == 0 && (claimer_bury(self, now) < 0 || !claimer_ready(self)))
            return NULL;
        hot_claims *s = self->k_claims;
        Py_INCREF(s);
        if (claims_lock(s) < 0) {
            Py_DECREF(s);
            return NULL;
        }
        tape_delivery d;
        tape_entry e;
        int rc = 0;
        PyObject *data = NULL;
        if (s->c_cons != NULL) {
            hot_in_core = 1;
            rc = grp.claim(s->c_cons, s->c_tailer, now, &d, &e);
            hot_in_core = 0;
            if (rc == 1 && d.d_dl < 0)
                data = PyBytes_FromStringAndSize(e.e_data, (Py_ssize_t)e.e_len);
        }
        claims_unlock(s);
        Py_DECREF(s);
        if (rc != 1)
            return NULL; /* nothing due, or an error: Python's claim again, which raises it */
        int64_t o[TAPE_CLAIM_FIELDS];
        claim_numbers(o, &d, d.d_dl < 0 ? e.e_timestamp : 0);
        if (d.d_dl >= 0) {
            PyObject *r = claimer_redriven(self, o, now);
            if (r != Py_None)
                return r;
            Py_DECREF(r);
            continue; /* its copy was lost: the next one */
        }
        if (data == NULL)
            return NULL;
        return claimer_delivery(self, o, claimer_decode(self, data));
    }
}

/* Whether a call gives no keywords but `timeout` (the first argument otherwise). */
static int only_timeout(Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames == NULL)
        return nargs <= 1;
    return nargs == 0 && PyTuple_GET_SIZE(kwnames) == 1 &&
           PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "timeout") == 0;
}

/* Whether a timeout is one C takes as it is: None, or a finite float or an int at least 0
 * (any other goes to Python, which checks it). */
static int plain_timeout(PyObject *t)
{
    if (t == Py_None)
        return 1;
    if (PyFloat_CheckExact(t)) {
        double v = PyFloat_AS_DOUBLE(t);
        return v >= 0 && isfinite(v);
    }
    if (PyLong_CheckExact(t)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(t, &overflow);
        return overflow == 0 && v >= 0;
    }
    return 0;
}

static PyObject *claimer_claim(hot_claimer *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t given = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    if (only_timeout(nargs, kwnames) && (given == 0 || plain_timeout(args[0]))) {
        PyObject *d = claimer_claim_one(self);
        if (d != NULL || PyErr_Occurred())
            return d;
    }
    return hot_call_method(str_claim_slow, (PyObject *)self, args, nargs, kwnames);
}

/* Up to n claims, one core call of up to GROUP_MANY after another: 0 with the Delivery
 * appended to out, 1 when Python takes over (nothing appended), -1 an error. */
static int claimer_batch_into(hot_claimer *self, Py_ssize_t n, PyObject *out)
{
    PyObject *payloads[GROUP_MANY];
    while (PyList_GET_SIZE(out) < n) {
        if (!claimer_ready(self))
            return PyList_GET_SIZE(out) ? 0 : 1;
        hot_claims *s = self->k_claims;
        if (s->c_out == NULL) {
            s->c_out = PyMem_Malloc(GROUP_MANY * TAPE_CLAIM_FIELDS * sizeof *s->c_out);
            s->c_buf = s->c_out == NULL ? NULL : PyMem_Malloc(GROUP_MANY_BYTES);
            if (s->c_buf == NULL) {
                PyMem_Free(s->c_out);
                s->c_out = NULL;
                PyErr_NoMemory();
                return -1;
            }
        }
        size_t want = (size_t)(n - PyList_GET_SIZE(out));
        if (want > GROUP_MANY)
            want = GROUP_MANY;
        int64_t now = now_ns();
        Py_INCREF(s);
        if (claims_lock(s) < 0) {
            Py_DECREF(s);
            return -1;
        }
        int64_t got = 0;
        PyObject *big = NULL; /* a claim alone: its payload */
        if (s->c_cons != NULL) {
            hot_in_core = 1;
            got = grp.claim_many(s->c_cons, s->c_tailer, now, want, s->c_out, s->c_buf, GROUP_MANY_BYTES);
            if (got == TAPE_EINVAL) { /* the first entry due is larger than the buffer: claimed alone */
                tape_delivery d;
                tape_entry e;
                got = grp.claim(s->c_cons, s->c_tailer, now, &d, &e);
                if (got == 1)
                    claim_numbers(s->c_out, &d, d.d_dl < 0 ? e.e_timestamp : 0);
                if (got == 1 && d.d_dl < 0 && (big = PyBytes_FromStringAndSize(e.e_data, (Py_ssize_t)e.e_len)) == NULL)
                    big = Py_None; /* (failed: an error is set) */
            }
            hot_in_core = 0;
        }
        int64_t start = 0, made = 0;
        for (; made < got; made++) { /* bytes only, under the lock */
            const int64_t *o = s->c_out + made * TAPE_CLAIM_FIELDS;
            payloads[made] = NULL;
            if (o[TAPE_CLAIM_DL] >= 0)
                continue;
            if (big != NULL) {
                if (big == Py_None)
                    break;
                payloads[made] = big;
                continue;
            }
            payloads[made] = PyBytes_FromStringAndSize(s->c_buf + start, (Py_ssize_t)(o[TAPE_CLAIM_END] - start));
            if (payloads[made] == NULL)
                break;
            start = o[TAPE_CLAIM_END];
        }
        /* The numbers, copied before the lock goes (another thread's batch may use the buffer next). */
        int64_t *claims = NULL;
        if (got > 0 && (claims = PyMem_Malloc((size_t)got * TAPE_CLAIM_FIELDS * sizeof *claims)) != NULL)
            memcpy(claims, s->c_out, (size_t)got * TAPE_CLAIM_FIELDS * sizeof *claims);
        claims_unlock(s);
        Py_DECREF(s);
        if (got <= 0)
            return got < 0 && PyList_GET_SIZE(out) == 0 ? 1 : 0;
        int failed = made < got;
        if (claims == NULL && !failed) {
            PyErr_NoMemory();
            failed = 1;
        }
        for (int64_t k = 0; k < made; k++) {
            if (failed) {
                Py_XDECREF(payloads[k]);
                continue;
            }
            const int64_t *o = claims + k * TAPE_CLAIM_FIELDS;
            PyObject *d;
            if (payloads[k] == NULL) {
                d = claimer_redriven(self, o, now);
            } else {
                d = claimer_delivery(self, o, claimer_decode(self, payloads[k]));
            }
            if (d == NULL || (d != Py_None && PyList_Append(out, d) < 0))
                failed = 1;
            Py_XDECREF(d);
        }
        PyMem_Free(claims);
        if (failed)
            return -1;
    }
    return 0;
}

static PyObject *claimer_hot_batch(hot_claimer *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (!claimer_ready(self) || n < 1)
        Py_RETURN_FALSE;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    int rc = claimer_batch_into(self, n, out);
    if (rc == 0 && claimer_bury(self, now_ns()) < 0)
        rc = -1;
    if (rc != 0) {
        Py_DECREF(out);
        if (rc < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    return out;
}

static PyObject *claimer_hot_ack_many(hot_claimer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_hot_ack_many(deliveries, now)");
        return NULL;
    }
    long long now = PyLong_AsLongLong(args[1]);
    if (now == -1 && PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(args[0]) || self->k_claims == NULL || self->k_claims->c_cons == NULL)
        Py_RETURN_FALSE;
    PyObject *ds = PyList_AsTuple(args[0]); /* the list may change while the lock is waited for */
    if (ds == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(ds), i;
    PyObject *result = NULL;
    for (i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(ds, i);
        if (!PyObject_TypeCheck(item, &hot_delivery_type))
            break;
        hot_delivery *d = (hot_delivery *)item;
        if (d->d_consumer != (PyObject *)self || d->d_mark || d->d_slot < 0 || d->d_slot >= TAPE_GROUP_SLOTS)
            break;
        d->d_mark = 1;
    }
    for (Py_ssize_t j = 0; j < i; j++)
        ((hot_delivery *)PyTuple_GET_ITEM(ds, j))->d_mark = 0;
    uint32_t *slots = NULL;
    uint64_t *gens = NULL;
    uint8_t *stale = NULL;
    if (i < n) {
        result = Py_NewRef(Py_False);
        goto done;
    }
    slots = PyMem_Malloc((size_t)n * sizeof *slots + 1);
    gens = PyMem_Malloc((size_t)n * sizeof *gens + 1);
    stale = PyMem_Malloc((size_t)n + 1);
    if (slots == NULL || gens == NULL || stale == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        hot_delivery *d = (hot_delivery *)PyTuple_GET_ITEM(ds, i);
        slots[i] = (uint32_t)d->d_slot;
        gens[i] = d->d_gen;
    }
    hot_claims *s = self->k_claims;
    Py_INCREF(s);
    if (claims_lock(s) < 0) {
        Py_DECREF(s);
        goto done;
    }
    int64_t rc = 1;
    if (s->c_cons != NULL && n > 0) {
        hot_in_core = 1;
        rc = grp.ack_many(s->c_cons, slots, gens, (size_t)n, (int64_t)now, stale);
        hot_in_core = 0;
    } else if (n == 0) {
        rc = 0;
    }
    int closed = s->c_cons == NULL;
    claims_unlock(s);
    Py_DECREF(s);
    if (closed) {
        result = Py_NewRef(Py_False);
        goto done;
    }
    if (rc < 0) {
        result = PyLong_FromLongLong(rc);
        goto done;
    }
    if ((result = PyList_New(0)) == NULL)
        goto done;
    for (i = 0; i < n; i++) {
        hot_delivery *d = (hot_delivery *)PyTuple_GET_ITEM(ds, i);
        if (!stale[i]) {
            Py_XSETREF(d->d_outcome, Py_NewRef(str_acked));
            continue;
        }
        PyObject *k = PyLong_FromSsize_t(i);
        if (k == NULL || PyList_Append(result, k) < 0) {
            Py_XDECREF(k);
            Py_CLEAR(result);
            break;
        }
        Py_DECREF(k);
    }
done:
    PyMem_Free(slots);
    PyMem_Free(gens);
    PyMem_Free(stale);
    Py_DECREF(ds);
    return result;
}

static PyObject *claimer_hot_claim(hot_claimer *self, PyObject *unused)
{
    (void)unused;
    PyObject *d = claimer_claim_one(self);
    if (d != NULL || PyErr_Occurred())
        return d;
    Py_RETURN_NONE;
}

static PyMethodDef claimer_methods[] = {
    {"claim", (PyCFunction)(void (*)(void))claimer_claim, METH_FASTCALL | METH_KEYWORDS,
     "claim($self, timeout=None)\n--\n\n"
     "The next entry due, claimed; None when none came within `timeout` seconds (None: no wait)."},
    {"_hot_setup", (PyCFunction)(void (*)(void))claimer_setup, METH_FASTCALL,
     "_hot_setup($self, claims, kind, decode, delivery, fast, /)\n--\n\n"
     "The consumer's Claims, its codec (kind and decode), the Delivery class; fast: the clock is time.time_ns."},
    {"_hot_claim", (PyCFunction)claimer_hot_claim, METH_NOARGS,
     "_hot_claim($self, /)\n--\n\nThe next entry due, claimed (a Delivery), or None: Python's path."},
    {"_hot_batch", (PyCFunction)claimer_hot_batch, METH_O,
     "_hot_batch($self, n, /)\n--\n\nUp to n entries due, claimed (a list of Delivery), or False: Python's path."},
    {"_hot_ack_many", (PyCFunction)(void (*)(void))claimer_hot_ack_many, METH_FASTCALL,
     "_hot_ack_many($self, deliveries, now, /)\n--\n\n"
     "Ack a list of this consumer's deliveries: the positions of the lapsed ones, a core error code, or False."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject hot_claimer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tape._native._hot.Claimer",
    .tp_doc = "The base of tape.Consumer: claim() and the batches' claims and acks in C.",
    .tp_basicsize = sizeof(hot_claimer),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)claimer_dealloc,
    .tp_traverse = (traverseproc)claimer_traverse,
    .tp_clear = (inquiry)claimer_clear,
    .tp_methods = claimer_methods,
};

/* ---- the module's part -------------------------------------------------------------- */

static int intern(PyObject **s, const char *text)
{
    if (*s == NULL)
        *s = PyUnicode_InternFromString(text);
    return *s == NULL ? -1 : 0;
}

PyObject *hot_bind_group(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "bind_group() takes 4 addresses");
        return NULL;
    }
    uintptr_t p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (uintptr_t)PyLong_AsUnsignedLongLong(args[i]);
        if (PyErr_Occurred())
            return NULL;
        if (p[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "bind_group(): a NULL address");
            return NULL;
        }
    }
    grp.claim = (int (*)(tape_consumer *, tape_tailer *, int64_t, tape_delivery *, tape_entry *))p[0];
    grp.claim_many = (int64_t (*)(tape_consumer *, tape_tailer *, int64_t, size_t, int64_t *, void *, size_t))p[1];
    grp.ack = (int (*)(tape_consumer *, uint32_t, uint64_t, int64_t))p[2];
    grp.ack_many = (int64_t (*)(tape_consumer *, const uint32_t *, const uint64_t *, size_t, int64_t, uint8_t *))p[3];
    Py_RETURN_NONE;
}

int hot_group_init(PyObject *module)
{
    if (intern(&str_claim_slow, "_claim_slow") < 0 || intern(&str_bury_dead, "_bury_dead") < 0 ||
        intern(&str_redriven, "_redriven") < 0 || intern(&str_ack_slow, "_ack_slow") < 0 ||
        intern(&str_acked, "acked") < 0)
        return -1;
    if (PyType_Ready(&hot_claims_type) < 0 || PyType_Ready(&hot_delivery_type) < 0 ||
        PyType_Ready(&hot_claimer_type) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Claims", (PyObject *)&hot_claims_type) < 0 ||
        PyModule_AddObjectRef(module, "Claimer", (PyObject *)&hot_claimer_type) < 0 ||
        PyModule_AddObjectRef(module, "DeliveryBase", (PyObject *)&hot_delivery_type) < 0)
        return -1;
    return 0;
}
