/* append.c - appenders: the write path (docs/FORMAT.md, "Writing an entry",
 * "Rolling").
 *
 * Everything here that touches q->q_w or a cycle file's tail runs holding the
 * shared write lock. Changes to the writer's mapping also take w_mu, which
 * the prefaulter holds while it works on that mapping. */
#include "tape_int.h"
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct tape_appender {
    tape_queue *a_q;
    int64_t a_last;
    int a_shut;  /* set by tape_appender_shut: calls fail from then on */
    int a_busy;  /* calls in progress, which tape_appender_shut waits for */
};

/* Begin a call on `a`: false (touch nothing) once it is shut. The seq_cst
 * increment-then-load here and store-then-load in tape_appender_shut mean
 * that either the shut sees this call busy, or this call sees the shut. */
static bool appender_enter(tape_appender *a)
{
    __atomic_add_fetch(&a->a_busy, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&a->a_shut, __ATOMIC_SEQ_CST))
        return true;
    __atomic_sub_fetch(&a->a_busy, 1, __ATOMIC_RELEASE);
    return false;
}

static void appender_leave(tape_appender *a)
{
    __atomic_sub_fetch(&a->a_busy, 1, __ATOMIC_RELEASE);
}

int tape_appender_open(tape_queue *q, tape_appender **out)
{
    if (q->q_read_only)
        return TAPE_EREADONLY;
    tape_appender *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    pthread_mutex_lock(&q->q_w.w_mu);
    int rc = tape_register_writer(q);
    if (rc == 0)
        rc = tape_prefault_start(q);
    pthread_mutex_unlock(&q->q_w.w_mu);
    if (rc < 0) {
        free(a);
        return rc;
    }
    a->a_q = q;
    a->a_last = -1;
    *out = a;
    return 0;
}

void tape_appender_shut(tape_appender *a)
{
    __atomic_store_n(&a->a_shut, 1, __ATOMIC_SEQ_CST);
    /* An append takes microseconds, a sync milliseconds: yield a little,
     * then sleep 0.1 ms at a time. */
    for (int k = 0; __atomic_load_n(&a->a_busy, __ATOMIC_SEQ_CST) != 0; k++) {
        if (k < 100)
            sched_yield();
        else
            nanosleep(&(struct timespec){0, 100000}, NULL);
    }
}

void tape_appender_close(tape_appender *a)
{
    tape_appender_shut(a);
    free(a);
}

int64_t tape_appender_last_index(tape_appender *a)
{
    return __atomic_load_n(&a->a_last, __ATOMIC_RELAXED);
}

/* ---- the writer's view of the newest cycle --------------------------------- */

/* The writer leaves cycle `c`: syncs flush its file too until one completes
 * after this, as entries this handle wrote there may not be on disk. */
static void note_left(tape_queue *q, int64_t c)
{
    if (c < 0)
        return;
    pthread_mutex_lock(&q->q_sync.sy_mu);
    if (q->q_sync.sy_from < 0 || c < q->q_sync.sy_from)
        q->q_sync.sy_from = c;
    q->q_sync.sy_epoch++;
    pthread_mutex_unlock(&q->q_sync.sy_mu);
}

/* Make `y` the writer's cycle file. */
static void writer_switch(tape_queue *q, tape_cyc *y)
{
    tape_writer *w = &q->q_w;
    note_left(q, w->w_y.y_cycle);
    pthread_mutex_lock(&q->q_w.w_mu);
    tape_cyc_close(&w->w_y);
    w->w_y = *y;
    w->w_y.y_v.v_mu = &q->q_w.w_mu;
    atomic_store_explicit(&q->q_pf.pf_ready, y->y_v.v_size, memory_order_release);
    atomic_store_explicit(&q->q_pf.pf_want, 0, memory_order_relaxed);
    atomic_store_explicit(&q->q_pf.pf_pos, 0, memory_order_relaxed);
    atomic_store_explicit(&q->q_pf.pf_last, 0, memory_order_relaxed);
    q->q_pf.pf_alloc = y->y_v.v_size;
    q->q_pf.pf_failed = 0;
    pthread_mutex_unlock(&q->q_w.w_mu);
    w->w_ready = y->y_v.v_size;
    w->w_kick_at = 0;
    w->w_valid = 0;
    /* Cached so that the append path does not divide; a span beyond the
     * range of int64 ns is left empty. */
    const tape_roll *r = &q->q_roll;
    int64_t start_ms = y->y_cycle * r->r_length_ms + r->r_epoch_ms;
    w->w_lo_ns = w->w_hi_ns = 0;
    if (y->y_cycle >= 0 && start_ms < INT64_MAX / 1000000 - r->r_length_ms) {
        w->w_lo_ns = start_ms * 1000000;
        w->w_hi_ns = w->w_lo_ns + r->r_length_ms * 1000000;
    }
}

/* Close the writer's view (the SIGBUS guard found it damaged): switch to no
 * file at all. Holding the lock. */
static void writer_drop(tape_queue *q)
{
    tape_cyc none;
    tape_cyc_init(&none);
    writer_switch(q, &none);
}

/* Zero an entry a dead writer left "not complete", header last, so the bytes
 * past the end of data are zero again. */
static int clear_abandoned(tape_cyc *y, uint64_t pos, uint32_t h)
{
    uint32_t l = h & TAPE_H_LEN;
    uint64_t sz = tape_entry_size(l > TAPE_L_EXTRA ? l - TAPE_L_EXTRA : 0);
    int rc = tape_view_cover(&y->y_v, pos + sz);
    if (rc < 0)
        return rc;
    if (rc > 0) /* a damaged length: clear what the file holds */
        sz = y->y_v.v_size - pos;
    if (sz > 4)
        memset(y->y_v.v_base + pos + 4, 0, sz - 4);
    __atomic_store_n((uint32_t *)(y->y_v.v_base + pos), 0u, __ATOMIC_RELEASE);
    return 0;
}

static void set_cycle_bounds(tape_queue *q, int64_t cycle)
{
    tape_meta_shared *sh = q->q_sh;
    int64_t lo = __atomic_load_n(&sh->ms_lowest, __ATOMIC_RELAXED);
    if (lo < 0 || cycle < lo)
        __atomic_store_n(&sh->ms_lowest, cycle, __ATOMIC_RELEASE);
    if (cycle > __atomic_load_n(&sh->ms_highest, __ATOMIC_RELAXED))
        __atomic_store_n(&sh->ms_highest, cycle, __ATOMIC_RELEASE);
    __atomic_fetch_add(&sh->ms_modcount, 1, __ATOMIC_RELEASE);
}

/* The hint of another writer (end at pos, seq entries) agrees with what this
 * handle knew of the same cycle: hopping over the headers published since
 * this handle's own end lands on it. */
static int hint_agrees(tape_writer *w, uint64_t pos, uint64_t seq)
{
    if (!w->w_valid || pos < w->w_pos || seq < w->w_seq)
        return 0;
    uint64_t p = w->w_pos, s = w->w_seq;
    tape_view *v = &w->w_y.y_v;
    while (p < pos) {
        if (tape_view_cover(v, p + 4) != 0)
            return 0;
        uint32_t h = tape_load_hdr(v, p);
        if (h == 0 || (h & TAPE_H_NC) || (h & TAPE_H_LEN) < TAPE_L_EXTRA)
            return 0;
        p += tape_entry_size((h & TAPE_H_LEN) - TAPE_L_EXTRA);
        s += !(h & TAPE_H_META);
    }
    return p == pos && s == seq;
}

/* The writer's file was removed or replaced under it: what it appends from
 * now on would be acknowledged and lost. Appends are refused from then on. */
static int writer_lost(tape_queue *q)
{
    if (q->q_w.w_y.y_v.v_fd >= 0 && tape_cyc_gone(q, &q->q_w.w_y, 0)) {
        atomic_store(&q->q_w.w_poisoned, TAPE_LOST);
        return 1;
    }
    return 0;
}

/* ---- the checked point (docs/FORMAT.md, "Page 1") ------------------------- */

static uint32_t ok_check(int64_t cycle, uint64_t pos, uint64_t seq)
{
    uint64_t v[3] = {(uint64_t)cycle, pos, seq};
    uint32_t c = tape_crc32c(0, v, sizeof v);
    return c ? c : 1; /* 0 (a queue made before the point): absent */
}

/* Holding the lock: where a writer's first look at `cycle` starts checking
 * entries (*pos 0: from the first one). */
static void ok_load(tape_queue *q, int64_t cycle, uint64_t *pos, uint64_t *seq)
{
    tape_meta_shared *sh = q->q_sh;
    int64_t c = __atomic_load_n(&sh->ms_ok_cycle, __ATOMIC_RELAXED);
    uint64_t p = __atomic_load_n(&sh->ms_ok_pos, __ATOMIC_RELAXED);
    uint64_t s = __atomic_load_n(&sh->ms_ok_seq, __ATOMIC_RELAXED);
    int ok = c == cycle && __atomic_load_n(&sh->ms_ok_check, __ATOMIC_RELAXED) == ok_check(c, p, s);
    *pos = ok ? p : 0;
    *seq = ok ? s : 0;
}

/* Holding the lock: store the checked point (the check word last, so that a
 * writer killed meanwhile leaves none). */
static void ok_store(tape_queue *q, int64_t cycle, uint64_t pos, uint64_t seq)
{
    tape_meta_shared *sh = q->q_sh;
    __atomic_store_n(&sh->ms_ok_check, 0u, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&sh->ms_ok_cycle, cycle, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->ms_ok_pos, pos, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->ms_ok_seq, seq, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&sh->ms_ok_check, ok_check(cycle, pos, seq), __ATOMIC_RELAXED);
}

/* After a sync that flushed cycle `cycle` up to (pos, seq), what this handle
 * found there at modification count `mod`: raise the checked point to it,
 * unless a roll or a repair came in between. Every entry before it was
 * checked by the first look of the writer that appended after it, or
 * appended by a live writer. */
static void ok_advance(tape_queue *q, int64_t cycle, uint64_t pos, uint64_t seq, uint64_t mod)
{
    tape_meta_shared *sh = q->q_sh;
    int recovered;
    if (tape_lock(q, &recovered) < 0)
        return;
    if (recovered) /* a writer died holding the lock: the next append rebuilds */
        q->q_w.w_valid = 0;
    uint64_t p, s;
    ok_load(q, cycle, &p, &s);
    if (!recovered && __atomic_load_n(&sh->ms_modcount, __ATOMIC_ACQUIRE) == mod &&
        __atomic_load_n(&sh->ms_highest, __ATOMIC_ACQUIRE) == cycle && pos > p)
        ok_store(q, cycle, pos, seq);
    tape_unlock(q);
}

/* Open `cycle` (creating it if asked) as the writer's file and find its end:
 * from the hint when it is about this cycle and consistent, else through the
 * index. Returns the header word found at the end through *end_hdr. */
static int writer_open_end(tape_queue *q, int64_t cycle, int create, uint32_t *end_hdr,
                           int64_t *last_ts)
{
    tape_writer *w = &q->q_w;
    tape_meta_shared *sh = q->q_sh;
    if (w->w_y.y_cycle != cycle) {
        tape_cyc y;
        int rc = create ? tape_cyc_create(q, cycle, &y) : tape_cyc_open(q, cycle, 1, &y);
        if (rc < 0)
            return rc;
        writer_switch(q, &y);
        if (rc == 1) { /* a file we just made: its end is its start */
            w->w_pos = w->w_y.y_data_off;
            w->w_last_hdr = 0;
            w->w_seq = 0;
            w->w_checked = 1; /* (all of it seen: nothing to check) */
            w->w_gen = __atomic_load_n(&sh->ms_hint_gen, __ATOMIC_ACQUIRE);
            w->w_valid = 1;
            *end_hdr = 0;
            tape_named_clamp(q, cycle << q->q_roll.r_seq_bits);
            return 0;
        }
    }
    uint64_t gen = __atomic_load_n(&sh->ms_hint_gen, __ATOMIC_ACQUIRE);
    uint64_t pos = __atomic_load_n(&sh->ms_hint_pos, __ATOMIC_RELAXED);
    uint64_t seq = __atomic_load_n(&sh->ms_hint_seq, __ATOMIC_RELAXED);
    int64_t hc = __atomic_load_n(&sh->ms_hint_cycle, __ATOMIC_RELAXED);
    int rc = -1;
    /* A handle's first look does not take the hint on trust: after a power
     * loss it may point past a torn entry, and an append there would be
     * acknowledged yet unreachable. Later, the hint of a live writer is
     * taken when the entries between this handle's own end and it lead
     * there. */
    if (w->w_checked && !(gen & 1) && hc == cycle && pos >= w->w_y.y_data_off && (pos & 7) == 0 &&
        hint_agrees(w, pos, seq))
        rc = tape_cyc_walk(&w->w_y, &pos, &seq, end_hdr, last_ts);
    if (rc < 0) {
        uint64_t ok_pos, ok_seq, hint_seq = seq, hint_pos = pos;
        ok_load(q, cycle, &ok_pos, &ok_seq);
        rc = tape_cyc_writer_end(q, &w->w_y, ok_pos, ok_seq, &pos, &seq, end_hdr, last_ts);
        if (rc < 0)
            return rc;
        /* An unfinished entry at the end is a dead writer's only while its
         * append kept the generation odd: under a complete hint (even) that
         * counts it as published, it is a published entry damaged, and
         * clearing it would hand out its index again. */
        if (!(gen & 1) && hc == cycle && hint_seq > seq && (*end_hdr & TAPE_H_NC) &&
            *end_hdr != TAPE_H_EOF)
            return TAPE_ECORRUPT;
        /* Nor may a complete hint's end lie past the file's end: files only
         * grow, so the file was cut, and the entries it lost would be handed
         * out again. */
        if (!(gen & 1) && hc == cycle && hint_seq > seq && hint_pos > w->w_y.y_v.v_size)
            return TAPE_ECORRUPT;
        w->w_checked = 1;
        w->w_strict = 1;
        /* (the end as the files say, maybe short of what was read before a
         * power cut: no named tailer may be past it) */
        if (*end_hdr != TAPE_H_EOF) /* (sealed: the end is in a later cycle) */
            tape_named_clamp(q, (cycle << q->q_roll.r_seq_bits) + (int64_t)seq);
    }
    w->w_pos = pos;
    w->w_last_hdr = 0;
    w->w_seq = seq;
    w->w_gen = gen;
    w->w_valid = 1;
    return 0;
}

static void hint_store(tape_queue *q, int64_t ts);

/* A sealed cycle keeps its size but gives back the disk blocks preallocated
 * past its end (holes read as zeros, so no reader can fault on them). */
static void release_preallocation(tape_cyc *y, uint64_t end)
{
    uint64_t from = (end + TAPE_PAGE - 1) & ~(uint64_t)(TAPE_PAGE - 1);
    struct stat st;
    if (fstat(y->y_v.v_fd, &st) == 0 && (uint64_t)st.st_size > from)
        fallocate(y->y_v.v_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                  (off_t)((uint64_t)st.st_size - from));
}

/* The newest timestamp tape.meta may hold, by the data: the timestamp of the
 * last entry of the writer's cycle (the newest), or when it has none the end
 * of its time span. `known`: that entry's timestamp if the caller saw it. */
static int64_t newest_ts_bound(tape_queue *q, int64_t known)
{
    tape_writer *w = &q->q_w;
    if (w->w_seq == 0)
        return w->w_hi_ns > w->w_lo_ns ? w->w_hi_ns - 1 : INT64_MAX;
    if (known != INT64_MIN)
        return known;
    uint64_t p;
    if (tape_cyc_locate(q, &w->w_y, w->w_seq - 1, &p) != 1)
        return INT64_MAX; /* cannot tell: the index walk will report it */
    int64_t ts;
    memcpy(&ts, w->w_y.y_v.v_base + p + 8, 8);
    return tape_entry_ts(ts);
}

/* tape.meta's newest timestamp, checked against the data: one ahead of the
 * newest entry (written there by hand or by damage) would send every later
 * append to that time's cycle, so it is brought back to the entry's. Returns
 * 1 when it was. */
static int check_newest_ts(tape_queue *q, int64_t known)
{
    tape_meta_shared *sh = q->q_sh;
    int64_t cur = __atomic_load_n(&sh->ms_last_ts, __ATOMIC_RELAXED);
    if (known != INT64_MIN && cur <= known)
        return 0;
    int64_t bound = newest_ts_bound(q, known);
    if (cur <= bound)
        return 0;
    __atomic_store_n(&sh->ms_last_ts, bound, __ATOMIC_RELEASE);
    return 1;
}

/* A cycle damaged before its end of data: sealed all the same, by its entry
 * headers (damage in a sealed cycle is for verify to report)? */
static int sealed_by_headers(tape_cyc *y)
{
    uint64_t p, s;
    uint32_t last;
    return tape_cyc_header_walk(y, &p, &s, &last) == 0 && last == TAPE_H_EOF;
}

/* At a writer's first look: is the cycle before the newest one a roll cut
 * short left unsealed, with damage or non-zero bytes after its last intact
 * entry (a power cut between the roll's steps)? Readers going forward stop
 * there and would never reach what is appended after: TAPE_ECORRUPT
 * (tape_repair_tail cuts and seals it). */
static int check_unsealed_before(tape_queue *q, int64_t newest)
{
    int64_t prev = tape_neighbour_cycle(q, newest, -1);
    if (prev < 0)
        return prev < -1 ? (int)prev : 0;
    tape_cyc y;
    tape_cyc_init(&y);
    int rc = tape_cyc_open(q, prev, 0, &y);
    if (rc < 0)
        return rc == -ENOENT ? 0 : rc; /* (purged meanwhile) */
    uint64_t p = 0, s = 0, bad;
    uint32_t h = 0;
    rc = tape_cyc_find_end(q, &y, &p, &s, &h, NULL);
    if (rc == TAPE_ECORRUPT && sealed_by_headers(&y))
        rc = 0, h = TAPE_H_EOF;
    if (rc == 0 && h != TAPE_H_EOF &&
        (tape_cyc_dirty_after(&y, p, h) || tape_cyc_stray_slot(q, &y, p, s, &bad)))
        rc = TAPE_ECORRUPT;
    rc = tape_view_guarded(&y.y_v, rc);
    tape_cyc_close(&y);
    return rc;
}

/* Rebuild q->q_w from the files: the end of the newest cycle, at least
 * `cycle`, repairing what a dead writer left and rolling when the newest
 * cycle is older than `cycle`. Returns 1 (and rolls not) when tape.meta's
 * newest timestamp was ahead of the data: the caller picks its cycle again. */
static int writer_rebuild(tape_queue *q, int64_t newest, int64_t cycle)
{
    tape_writer *w = &q->q_w;
    tape_meta_shared *sh = q->q_sh;
    int64_t last_ts = INT64_MIN;
    int64_t announced = newest;
    uint32_t h = 0;
    w->w_strict = 0;
    while (newest >= 0) {
        int rc = writer_open_end(q, newest, 0, &h, &last_ts);
        if (rc == -ENOENT) { /* removed: fall back to what the directory holds */
            /* The newest cycle is never purged: its file was removed behind
             * tape's back. If it held entries, a new file would hand out
             * their indexes again. */
            uint64_t g = __atomic_load_n(&sh->ms_hint_gen, __ATOMIC_ACQUIRE);
            if (newest == announced && !(g & 1) &&
                __atomic_load_n(&sh->ms_hint_cycle, __ATOMIC_RELAXED) == newest &&
                __atomic_load_n(&sh->ms_hint_seq, __ATOMIC_RELAXED) > 0)
                return TAPE_ECORRUPT;
            newest = tape_neighbour_cycle(q, newest, -1);
            if (newest < -1)
                return (int)newest;
            continue;
        }
        if (rc < 0)
            return rc;
        if (h != TAPE_H_EOF)
            break;
        /* Sealed by a roller that died before announcing the next cycle. */
        int64_t next = tape_neighbour_cycle(q, newest, 1);
        if (next < 0) {
            if (cycle <= newest)
                cycle = newest + 1;
            break;
        }
        set_cycle_bounds(q, next);
        newest = next;
    }
    if (newest < announced) {
        /* tape.meta named a cycle with no file (removed, or a damaged
         * field): readers would take the real newest cycle as over. */
        __atomic_store_n(&sh->ms_highest, newest, __ATOMIC_RELEASE);
        __atomic_fetch_add(&sh->ms_modcount, 1, __ATOMIC_RELEASE);
    }
    if (w->w_strict && newest > 0) {
        int rc = check_unsealed_before(q, newest);
        if (rc < 0)
            return rc;
    }
    if (newest >= 0 && h != TAPE_H_EOF && (h & TAPE_H_NC)) {
        int rc = clear_abandoned(&w->w_y, w->w_pos, h);
        if (rc < 0)
            return rc;
    }
    /* A writer killed before updating the newest timestamp. */
    if (last_ts > __atomic_load_n(&sh->ms_last_ts, __ATOMIC_RELAXED))
        __atomic_store_n(&sh->ms_last_ts, last_ts, __ATOMIC_RELAXED);
    /* One ahead of the data is believed neither at a first look nor to roll
     * (nor when it is past the newest cycle's end). */
    if (newest >= 0 &&
        (w->w_strict || cycle > newest ||
         __atomic_load_n(&sh->ms_last_ts, __ATOMIC_RELAXED) >= w->w_hi_ns) &&
        check_newest_ts(q, last_ts))
        return 1;
    if (newest >= 0 && cycle <= newest)
        return 0;

    /* Roll: create the new file, seal the old one, announce the new one. */
    if (newest >= 0 && tape_cyc_gone(q, &w->w_y, 1)) {
        atomic_store(&w->w_poisoned, TAPE_LOST);
        return TAPE_ECORRUPT;
    }
    uint64_t old_end = w->w_pos;
    int sealing = newest >= 0 && h != TAPE_H_EOF;
    pthread_mutex_lock(&q->q_w.w_mu); /* keep `old` mapped until it is sealed */
    tape_cyc old = w->w_y;
    tape_cyc_init(&w->w_y);
    pthread_mutex_unlock(&q->q_w.w_mu);
    note_left(q, old.y_cycle);
    uint32_t nh;
    int rc = writer_open_end(q, cycle, 1, &nh, &last_ts);
    if (rc < 0) {
        writer_switch(q, &old);
        return rc;
    }
    TAPE_KILL("roll_created");
    if (sealing) {
        __atomic_store_n((uint32_t *)(old.y_v.v_base + old_end), TAPE_H_EOF, __ATOMIC_RELEASE);
        release_preallocation(&old, old_end + 4);
    }
    TAPE_KILL("roll_sealed");
    tape_cyc_close(&old);
    if (nh & TAPE_H_NC && nh != TAPE_H_EOF && (rc = clear_abandoned(&w->w_y, w->w_pos, nh)) < 0)
        return rc;
    set_cycle_bounds(q, cycle);
    return 0;
}

/* Holding the lock: make q->q_w the end of the newest cycle, at least
 * `cycle`. The state is trusted when nobody else appended since (same hint
 * generation, which an append keeps odd while it works) and the end is still
 * empty; otherwise it is rebuilt, and the rebuilt end is published as the new
 * hint so that every other process rebuilds too. Returns 1 when the caller
 * must pick its cycle again (see writer_rebuild). */
static int writer_prepare(tape_queue *q, int64_t cycle, int recovered)
{
    tape_writer *w = &q->q_w;
    tape_meta_shared *sh = q->q_sh;
    int64_t newest = __atomic_load_n(&sh->ms_highest, __ATOMIC_ACQUIRE);
    if (!recovered && w->w_valid && w->w_y.y_cycle == newest && cycle <= newest &&
        __atomic_load_n(&sh->ms_hint_gen, __ATOMIC_RELAXED) == w->w_gen &&
        tape_load_hdr(&w->w_y.y_v, w->w_pos) == 0)
        return 0;
    /* Someone else wrote (or died writing): is this still our file? */
    if (w->w_y.y_cycle >= 0 && w->w_y.y_cycle == newest && writer_lost(q))
        return TAPE_ECORRUPT;
    int rc = writer_rebuild(q, newest, cycle);
    if (rc < 0) {
        w->w_valid = 0;
        return rc;
    }
    hint_store(q, __atomic_load_n(&sh->ms_last_ts, __ATOMIC_RELAXED));
    return rc;
}

/* Make sure the file backs [0, end). */
static int writer_room(tape_queue *q, uint64_t end)
{
    tape_writer *w = &q->q_w;
    uint64_t ready = atomic_load_explicit(&q->q_pf.pf_ready, memory_order_acquire);
    if (ready < end) {
        int rc = tape_view_grow(&w->w_y.y_v, end);
        if (rc < 0)
            return rc;
        if (tape_cut_under(&w->w_y.y_v, w->w_last_hdr)) {
            atomic_store(&w->w_poisoned, TAPE_LOST);
            return TAPE_ECORRUPT;
        }
        ready = w->w_y.y_v.v_size;
        /* Raise, never lower: the prefaulter may be ahead. */
        uint64_t cur = atomic_load_explicit(&q->q_pf.pf_ready, memory_order_relaxed);
        while (cur < ready && !atomic_compare_exchange_weak(&q->q_pf.pf_ready, &cur, ready))
            ;
    }
    w->w_ready = ready;
    return 0;
}

/* The body of an entry with attributes at e: the timestamp word with its
 * flag, the block, the payload; returns the entry's CRC. */
static uint32_t write_attributed(uint8_t *e, const void *data, uint32_t len, int64_t ts,
                                 const uint8_t *blk, uint32_t blen, uint32_t seed, uint32_t h,
                                 uint64_t seq)
{
    int64_t word = (int64_t)((uint64_t)ts | TAPE_TS_ATTRS);
    memcpy(e + 8, &word, 8);
    memcpy(e + TAPE_ENTRY_HDR, blk, blen);
    memcpy(e + TAPE_ENTRY_HDR + blen, data, len);
    TAPE_KILL("after_copy");
    return tape_crc32c(tape_crc_data(seed, h, seq, word, blk, blen), data, len);
}

/* Write one entry at the end of the writer's cycle (payload data, len bytes;
 * blen bytes of attribute block blk before it when blen is not 0), holding
 * the lock. Returns its seq. */
static int64_t write_one(tape_queue *q, const void *data, uint32_t len, int64_t ts,
                         const uint8_t *blk, uint32_t blen)
{
    tape_writer *w = &q->q_w;
    tape_cyc *y = &w->w_y;
    const int nlog = q->q_roll.r_count_log2, slog = q->q_roll.r_spacing_log2;
    const uint64_t n = (uint64_t)1 << nlog;
    uint64_t seq = w->w_seq, pos = w->w_pos;
    if (seq >> q->q_roll.r_seq_bits)
        return TAPE_ECYCLEFULL;

    uint64_t need = tape_entry_size(blen + len), arr = 0, meta_sz = 0, k = 0;
    int indexed = (seq & (((uint64_t)1 << slog) - 1)) == 0;
    if (indexed) {
        uint64_t b = seq >> slog;
        k = b >> nlog;
        int rc = tape_cyc_index_array(q, y, k, &arr);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            if (b & (n - 1))
                return TAPE_ECORRUPT; /* the array of a later block is missing */
            meta_sz = tape_entry_size((uint32_t)(8 * n));
        }
    }
    uint64_t end = pos + meta_sz + need + TAPE_ENTRY_HDR; /* room for the next header */
    if (end > w->w_ready) {
        int rc = writer_room(q, end);
        if (rc < 0)
            return rc;
    }
    uint8_t *base = y->y_v.v_base;

    if (meta_sz) {
        /* A new index array: slots are already zero (bytes past the end are). */
        uint32_t mh = TAPE_H_META | tape_hdr_len((uint32_t)(8 * n));
        uint64_t tag = TAPE_TAG_INDEX | k;
        uint32_t crc = tape_crc_meta(y->y_seed, mh, tag);
        memcpy(base + pos + 4, &crc, 4);
        memcpy(base + pos + 8, &tag, 8);
        __atomic_store_n((uint32_t *)(base + pos), mh, __ATOMIC_RELEASE);
        TAPE_KILL("index_array");
        __atomic_store_n((uint64_t *)(base + y->y_i2i_off) + k, pos, __ATOMIC_RELEASE);
        arr = pos;
        pos += meta_sz;
    }

    uint8_t *e = base + pos;
    uint32_t h = tape_hdr_len(blen + len);
    /* Reserve: a writer killed from here on leaves a "not complete" header
     * that covers every byte it may have written. Only program order matters
     * for that, so a compiler barrier suffices. */
    __atomic_store_n((uint32_t *)e, h | TAPE_H_NC, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    TAPE_KILL("after_reserve");
    uint32_t crc;
    if (blen) {
        crc = write_attributed(e, data, len, ts, blk, blen, y->y_seed, h, seq);
    } else {
        memcpy(e + 8, &ts, 8);
        memcpy(e + TAPE_ENTRY_HDR, data, len);
        TAPE_KILL("after_copy");
        crc = tape_crc_data(y->y_seed, h, seq, ts, data, len);
    }
    memcpy(e + 4, &crc, 4);
    /* A page of the entry that faulted (the file was truncated under us) was
     * replaced by a zero page: the copy is not in the file. Not published,
     * not acknowledged; what the file holds of it reads as an entry a dead
     * writer abandoned. One relaxed load. */
    if (tape_view_hit(&y->y_v))
        return tape_view_damage(&y->y_v);
    if (indexed) {
        __atomic_store_n((uint64_t *)tape_cyc_slots(y, arr) + ((seq >> slog) & (n - 1)), pos,
                         __ATOMIC_RELEASE);
        TAPE_KILL("index_slot");
    }
    TAPE_KILL("before_publish");
    /* Publish. */
    __atomic_store_n((uint32_t *)e, h, __ATOMIC_RELEASE);
    w->w_last_hdr = pos;
    w->w_pos = pos + need;
    w->w_seq = seq + 1;
    return (int64_t)seq;
}

/* Record where the end is, for the next lock holder. The generation is odd
 * while the three fields change, so a writer killed in between leaves a hint
 * that is ignored rather than believed. */
static void hint_store(tape_queue *q, int64_t ts)
{
    tape_writer *w = &q->q_w;
    tape_meta_shared *sh = q->q_sh;
    uint64_t g = w->w_gen + (w->w_gen & 1); /* even, also after a dead writer's odd one */
    __atomic_store_n(&sh->ms_hint_gen, g + 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&sh->ms_hint_cycle, w->w_y.y_cycle, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->ms_hint_pos, w->w_pos, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->ms_hint_seq, w->w_seq, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->ms_last_ts, ts, __ATOMIC_RELAXED);
    TAPE_KILL("hint_update");
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&sh->ms_hint_gen, g + 2, __ATOMIC_RELEASE);
    w->w_gen = g + 2;
}

/* Holding the lock, the writer prepared: the index of the queue's last
 * entry, -1 when empty. */
static int64_t last_written(tape_queue *q)
{
    tape_writer *w = &q->q_w;
    if (w->w_seq > 0)
        return tape_make_index(q, w->w_y.y_cycle, (int64_t)w->w_seq - 1);
    return tape_last_index(q); /* the newest cycle is empty: look further back */
}

/* Per-entry attributes of tape_append_many_each: columns, each may be NULL. */
struct each_cols {
    const int64_t *not_before, *origin_index, *origin_ts;
};

static tape_attrs each_row(const struct each_cols *c, size_t k)
{
    tape_attrs at = tape_attrs_none;
    if (c->not_before)
        at.a_not_before = c->not_before[k];
    if (c->origin_index) {
        at.a_origin_index = c->origin_index[k];
        at.a_origin_ts = c->origin_ts[k];
    }
    return at;
}

/* Append n entries (entry k: data[ends[k-1], ends[k])), each with the
 * attributes at (NULL: none) encoded in blk (blen bytes), only if the queue's
 * last entry (by_key: the newest with at's key) is *expected_last (when not
 * NULL). With `each` (checked, sizes checked), entry k has the
 * attributes of row k of its columns instead. */
static int64_t append_n(tape_appender *a, const uint8_t *data, const uint64_t *ends, size_t n,
                        int64_t ts, size_t *written, const int64_t *expected_last,
                        const tape_attrs *at, const uint8_t *blk, uint32_t blen, int by_key,
                        const struct each_cols *each)
{
    tape_queue *q = a->a_q;
    if (written)
        *written = 0;
    int poisoned = atomic_load_explicit(&q->q_w.w_poisoned, memory_order_relaxed);
    if (poisoned)
        return poisoned == TAPE_LOST ? TAPE_ECORRUPT : TAPE_EPOISONED;
    for (size_t k = 0; k < n; k++) {
        uint64_t start = k ? ends[k - 1] : 0;
        if (ends[k] < start)
            return TAPE_EINVAL;
        if (ends[k] - start > TAPE_MAX_PAYLOAD - blen)
            return TAPE_ETOOBIG;
    }
    int recovered;
    int rc = tape_lock(q, &recovered);
    if (rc < 0)
        return rc;
    tape_writer *w = &q->q_w;
    if (ts == 0) /* taken holding the lock, which guards the clock's state */
        ts = tape_clock_now(&w->w_clock);
    const int64_t asked = ts;
    int64_t newest = __atomic_load_n(&q->q_sh->ms_last_ts, __ATOMIC_RELAXED);
    if (ts < newest)
        ts = newest;
    int64_t cycle = ts >= w->w_lo_ns && ts < w->w_hi_ns ? w->w_y.y_cycle : tape_cycle_of(q, ts);
    if (cycle < 0 && ts != asked) {
        /* tape.meta's newest timestamp leads out of the roll cycle's range:
         * check it against the data (a rebuild does) before believing it. */
        int64_t at = __atomic_load_n(&q->q_sh->ms_highest, __ATOMIC_ACQUIRE);
        cycle = at >= 0 ? at : tape_cycle_of(q, asked);
        recovered = 1;
    }
    int64_t result = cycle < 0 ? cycle : writer_prepare(q, cycle, recovered);
    for (int again = 0; result == 1 && again < 3; again++) {
        /* The newest timestamp was ahead of the data and was brought back. */
        newest = __atomic_load_n(&q->q_sh->ms_last_ts, __ATOMIC_RELAXED);
        ts = asked < newest ? newest : asked;
        cycle = tape_cycle_of(q, ts);
        result = cycle < 0 ? cycle : writer_prepare(q, cycle, 0);
    }
    if (result == 1)
        result = TAPE_ECORRUPT;
    newest = __atomic_load_n(&q->q_sh->ms_last_ts, __ATOMIC_RELAXED);
    if (result >= 0 && ts < newest) {
        /* The rebuild found an entry that a writer killed before it recorded
         * its timestamp had published: go no lower than that entry. */
        ts = newest;
        int64_t later = tape_cycle_of(q, ts);
        if (later != cycle)
            result = later < 0 ? later : writer_prepare(q, later, 0);
        if (result == 1)
            result = TAPE_ECORRUPT;
    }
    size_t done = 0;
    int keyed = 0;
    if (result >= 0 && (blen || each))
        result = tape_cyc_upgrade(&w->w_y); /* a version-1 file becomes version 2 */
    if (result >= 0 && blen && at->a_key && (result = tape_keys_begin(q)) >= 0)
        keyed = 1;
    if (result >= 0 && expected_last) {
        int64_t last = by_key ? tape_keys_newest(q, at) : last_written(q);
        if (last != *expected_last)
            result = last < -1 ? last : TAPE_ECONFLICT;
    }
    if (result >= 0) {
        /* Odd for as long as this append changes the file: a writer killed
         * meanwhile leaves it odd, and the next lock holder rebuilds. */
        __atomic_store_n(&q->q_sh->ms_hint_gen, w->w_gen + 1, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        uint8_t own[TAPE_ATTRS_MAX];
        for (; done < n; done++) {
            uint64_t start = done ? ends[done - 1] : 0;
            if (each) {
                tape_attrs row = each_row(each, done);
                blk = own;
                blen = tape_attrs_check(&row) > 0 ? tape_attrs_encode(&row, own) : 0;
            }
            result = write_one(q, data + start, (uint32_t)(ends[done] - start), ts, blk, blen);
            if (result < 0)
                break;
        }
        if (done == 0) /* nothing changed */
            __atomic_store_n(&q->q_sh->ms_hint_gen, w->w_gen, __ATOMIC_RELAXED);
    }
    if (done > 0) {
        int64_t last = tape_make_index(q, w->w_y.y_cycle, (int64_t)w->w_seq - 1);
        if (done == n)
            result = last;
        /* Threads may share an appender. */
        __atomic_store_n(&a->a_last, last, __ATOMIC_RELAXED);
        hint_store(q, ts);
    }
    /* (failing, it leaves the directory marked: readers read the log past it) */
    if (keyed) { /* the last entry written, and where it starts: it ends at w_pos */
        uint32_t len = done > 0 ? (uint32_t)(ends[done - 1] - (done > 1 ? ends[done - 2] : 0)) : 0;
        tape_keys_apply(q, at, done > 0 ? tape_make_index(q, w->w_y.y_cycle, (int64_t)w->w_seq - 1) : -1,
                        done > 0 ? w->w_pos - tape_entry_size(blen + len) : 0);
    }
    if (tape_view_hit(&w->w_y.y_v)) {
        /* Something this append read or wrote faulted: its result is not
         * to be believed, and the view (split by the zero page) is dropped;
         * the next append opens the file again. An entry published was
         * checked after its copy (write_one): a fault seen only later
         * (the prefaulter's, ahead of it) does not undo it. */
        if (done == 0 && result >= 0)
            result = tape_view_damage(&w->w_y.y_v);
        writer_drop(q);
    }
    if (w->w_pos >= w->w_kick_at && w->w_valid && w->w_y.y_cycle >= 0) {
        uint64_t received = w->w_pos - w->w_y.y_data_off;
        atomic_store_explicit(&q->q_pf.pf_last, w->w_last_hdr, memory_order_release);
        w->w_kick_at = w->w_pos + tape_prefault_kick(q, w->w_pos, received);
    }
    tape_unlock(q);
    if (done > 0)
        tape_wake_readers(q);
    if (written)
        *written = done;
    return result;
}

int64_t tape_append(tape_appender *a, const void *data, size_t len, int64_t ts_ns)
{
    if (len > TAPE_MAX_PAYLOAD)
        return TAPE_ETOOBIG;
    if (!appender_enter(a))
        return TAPE_ECLOSED;
    uint64_t end = len;
    int64_t rc = append_n(a, data, &end, 1, ts_ns, NULL, NULL, NULL, NULL, 0, 0, NULL);
    appender_leave(a);
    return rc;
}

int64_t tape_append_if(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                       int64_t expected_last)
{
    if (len > TAPE_MAX_PAYLOAD)
        return TAPE_ETOOBIG;
    if (!appender_enter(a))
        return TAPE_ECLOSED;
    uint64_t end = len;
    int64_t rc = append_n(a, data, &end, 1, ts_ns, NULL, &expected_last, NULL, NULL, 0, 0, NULL);
    appender_leave(a);
    return rc;
}

int64_t tape_append_many(tape_appender *a, const void *data, const uint64_t *ends, size_t n,
                         int64_t ts_ns, size_t *written)
{
    if (n == 0)
        return TAPE_EINVAL;
    if (!appender_enter(a))
        return TAPE_ECLOSED;
    int64_t rc = append_n(a, data, ends, n, ts_ns, written, NULL, NULL, NULL, 0, 0, NULL);
    appender_leave(a);
    return rc;
}

/* The _ex calls: the attributes *at checked and encoded into blk (1 when
 * there are some, 0 none, TAPE_EINVAL). */
static int attrs_block(const tape_attrs *at, uint8_t *blk, uint32_t *blen)
{
    int rc = tape_attrs_check(at);
    *blen = rc > 0 ? tape_attrs_encode(at, blk) : 0;
    return rc;
}

/* One entry with the attributes *at: written, or (expected not NULL) only if
 * the queue's last entry, or by_key the newest entry with its key, is
 * *expected. */
static int64_t append_one_ex(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                             const tape_attrs *at, int64_t *expected, int by_key)
{
    uint8_t blk[TAPE_ATTRS_MAX];
    uint32_t blen;
    int rc = attrs_block(at, blk, &blen);
    if (rc < 0)
        return rc;
    if (len > TAPE_MAX_PAYLOAD - blen)
        return TAPE_ETOOBIG;
    if (!appender_enter(a))
        return TAPE_ECLOSED;
    uint64_t end = len;
    int64_t r = append_n(a, data, &end, 1, ts_ns, NULL, expected, at, blk, blen, by_key, NULL);
    appender_leave(a);
    return r;
}

int64_t tape_append_ex(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                       const tape_attrs *at)
{
    return append_one_ex(a, data, len, ts_ns, at, NULL, 0);
}

int64_t tape_append_attrs(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                          const void *key, uint32_t key_len, uint32_t flags, int64_t not_before,
                          int64_t origin_index, int64_t origin_ts)
{
    tape_attrs at = {key_len ? key : NULL, key_len, flags, not_before, origin_index, origin_ts};
    return tape_append_ex(a, data, len, ts_ns, &at);
}

int64_t tape_append_if_key(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                           int64_t expected, const tape_attrs *at)
{
    if (!at || !at->a_key || expected < -1) {
        int rc = tape_attrs_check(at);
        return rc < 0 ? rc : TAPE_EINVAL;
    }
    return append_one_ex(a, data, len, ts_ns, at, &expected, 1);
}

int64_t tape_append_if_ex(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                          int64_t expected_last, const tape_attrs *at)
{
    return append_one_ex(a, data, len, ts_ns, at, &expected_last, 0);
}

int64_t tape_append_many_ex(tape_appender *a, const void *data, const uint64_t *ends, size_t n,
                            int64_t ts_ns, size_t *written, const tape_attrs *at)
{
    uint8_t blk[TAPE_ATTRS_MAX];
    uint32_t blen;
    if (written)
        *written = 0;
    int rc = attrs_block(at, blk, &blen);
    if (rc < 0)
        return rc;
    if (n == 0)
        return TAPE_EINVAL;
    if (!appender_enter(a))
        return TAPE_ECLOSED;
    int64_t r = append_n(a, data, ends, n, ts_ns, written, NULL, at, blk, blen, 0, NULL);
    appender_leave(a);
    return r;
}

int64_t tape_append_many_each(tape_appender *a, const void *data, const uint64_t *ends, size_t n,
                              int64_t ts_ns, size_t *written, const int64_t *not_before,
                              const int64_t *origin_index, const int64_t *origin_ts)
{
    uint8_t blk[TAPE_ATTRS_MAX];
    const struct each_cols cols = {not_before, origin_index, origin_ts};
    int some = 0;
    if (written)
        *written = 0;
    if (n == 0 || !origin_index != !origin_ts)
        return TAPE_EINVAL;
    for (size_t k = 0; k < n; k++) {
        tape_attrs row = each_row(&cols, k);
        int rc = tape_attrs_check(&row);
        if (rc < 0)
            return rc;
        uint64_t start = k ? ends[k - 1] : 0;
        uint32_t blen = rc > 0 ? tape_attrs_encode(&row, blk) : 0;
        if (ends[k] < start)
            return TAPE_EINVAL;
        if (ends[k] - start > TAPE_MAX_PAYLOAD - blen)
            return TAPE_ETOOBIG;
        some |= rc;
    }
    if (!appender_enter(a))
        return TAPE_ECLOSED;
    int64_t r = append_n(a, data, ends, n, ts_ns, written, NULL, NULL, NULL, 0, 0, some ? &cols : NULL);
    appender_leave(a);
    return r;
}

/* The offset after the last non-zero byte of y at or after `from` (from
 * when there is none), reading only the file's data, not its holes. */
static uint64_t nonzero_end(tape_cyc *y, uint64_t from)
{
    uint64_t end = from, p = from;
    const uint64_t size = y->y_v.v_size;
    while (p < size) {
        off_t d = lseek(y->y_v.v_fd, (off_t)p, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            break;
        uint64_t lo = d >= 0 && (uint64_t)d > p ? (uint64_t)d : p, hi = size;
        if (d >= 0) {
            off_t e = lseek(y->y_v.v_fd, d, SEEK_HOLE);
            if (e > d && (uint64_t)e < size)
                hi = (uint64_t)e;
        }
        uint64_t k = hi;
        for (; k > lo && (k & 7); k--) /* to a word boundary, then a word at a time */
            if (y->y_v.v_base[k - 1])
                goto found;
        for (uint64_t w; k >= lo + 8; k -= 8) {
            memcpy(&w, y->y_v.v_base + k - 8, 8);
            if (w)
                break;
        }
        for (; k > lo; k--)
            if (y->y_v.v_base[k - 1])
                goto found;
        p = hi > lo ? hi : size;
        continue;
    found:
        end = k;
        p = hi > lo ? hi : size;
    }
    return end;
}

/* Empty the index arrays and slots of y that name a place at or past `cut`,
 * or stand for an entry at or past seq `s` (nothing may point past a cut);
 * returns how many words it emptied inside the data (before `cut`). The
 * whole file is covered. */
static uint64_t clear_slots_past(tape_queue *q, tape_cyc *y, uint64_t cut, uint64_t s)
{
    const int nlog = q->q_roll.r_count_log2, slog = q->q_roll.r_spacing_log2;
    const uint64_t n = (uint64_t)1 << nlog;
    uint64_t b_end = (s + ((uint64_t)1 << slog) - 1) >> slog;
    uint64_t *i2i = (uint64_t *)(y->y_v.v_base + y->y_i2i_off);
    uint64_t before = 0;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t a = __atomic_load_n(&i2i[k], __ATOMIC_ACQUIRE);
        if (a >= cut || k > (b_end >> nlog) ||
            (a && a + TAPE_ENTRY_HDR + 8 * n > y->y_v.v_size)) {
            before += a != 0;
            __atomic_store_n(&i2i[k], 0, __ATOMIC_RELEASE);
        } else if (a) {
            uint64_t *slots = (uint64_t *)(y->y_v.v_base + a + TAPE_ENTRY_HDR);
            for (uint64_t j = 0; j < n; j++)
                if (slots[j] && (slots[j] >= cut || k * n + j >= b_end)) {
                    before += a < cut; /* inside the data: counted here */
                    __atomic_store_n(&slots[j], 0, __ATOMIC_RELEASE);
                }
        }
    }
    return before;
}

/* Fill in the index words of y that a lost page left 0 while the entries
 * they stand for are intact: walking the entries before `end` (all intact),
 * each index array's offset into index2index, each indexed entry's offset
 * into its slot. Returns how many words it stored. The whole file is
 * covered. */
static uint64_t refill_slots(tape_queue *q, tape_cyc *y, uint64_t end)
{
    const int nlog = q->q_roll.r_count_log2, slog = q->q_roll.r_spacing_log2;
    const uint64_t n = (uint64_t)1 << nlog;
    const uint32_t arr_hdr = TAPE_H_META | tape_hdr_len((uint32_t)(8 * n));
    uint64_t *i2i = (uint64_t *)(y->y_v.v_base + y->y_i2i_off);
    uint64_t p = y->y_data_off, s = 0, stored = 0;
    while (p + TAPE_ENTRY_HDR <= end) {
        uint32_t h = tape_load_hdr(&y->y_v, p);
        if ((h & TAPE_H_LEN) < TAPE_L_EXTRA)
            break; /* (cannot be: the walk checked every entry before end) */
        if (h & TAPE_H_META) {
            uint64_t tag;
            memcpy(&tag, y->y_v.v_base + p + 8, 8);
            uint64_t k = tag - TAPE_TAG_INDEX;
            if (h == arr_hdr && tag >= TAPE_TAG_INDEX && k < n &&
                __atomic_load_n(&i2i[k], __ATOMIC_ACQUIRE) == 0) {
                __atomic_store_n(&i2i[k], p, __ATOMIC_RELEASE);
                stored++;
            }
        } else {
            uint64_t b = s >> slog, arr;
            if ((s & (((uint64_t)1 << slog) - 1)) == 0 &&
                tape_cyc_index_array(q, y, b >> nlog, &arr) == 1) {
                uint64_t *slot = (uint64_t *)(y->y_v.v_base + arr + TAPE_ENTRY_HDR) + (b & (n - 1));
                if (__atomic_load_n(slot, __ATOMIC_ACQUIRE) == 0) {
                    __atomic_store_n(slot, p, __ATOMIC_RELEASE);
                    stored++;
                }
            }
            s++;
        }
        p += tape_entry_size((h & TAPE_H_LEN) - TAPE_L_EXTRA);
    }
    return stored;
}

/* Zero y from `from` up to its last non-zero byte (the preallocation after
 * it is zeros already, and holes stay holes); returns the bytes zeroed. */
static uint64_t zero_after(tape_cyc *y, uint64_t from)
{
    uint64_t nz_end = nonzero_end(y, from);
    if (nz_end <= from)
        return 0;
    memset(y->y_v.v_base + from, 0, nz_end - from);
    return nz_end - from;
}

/* The cycle before the newest, `cycle`, when a roll did not seal it (a
 * power cut inside the roll, or a roller killed there) and the bytes after
 * its last intact entry are damaged: readers going forward would stop there
 * and never reach the newer cycle. Cut it after that entry and seal it; fill
 * in lost index words before. Adds to *r what it did. */
static int repair_unsealed(tape_queue *q, int64_t cycle, tape_repair_report *r)
{
    tape_cyc y;
    tape_cyc_init(&y);
    int rc = tape_cyc_open(q, cycle, 1, &y);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    uint64_t p = y.y_data_off, s = 0, bad;
    uint32_t h = 0;
    int wrc = tape_cyc_walk(&y, &p, &s, &h, NULL), damaged = wrc == TAPE_ECORRUPT;
    if (wrc < 0 && !damaged)
        rc = wrc;
    else if (h != TAPE_H_EOF && !(damaged && sealed_by_headers(&y))) {
        tape_view_cover(&y.y_v, UINT64_MAX);
        r->rr_refilled += refill_slots(q, &y, p);
        if (damaged || (h & TAPE_H_NC) || tape_cyc_dirty_after(&y, p, h) ||
            tape_cyc_stray_slot(q, &y, p, s, &bad)) {
            r->rr_cleared += 8 * clear_slots_past(q, &y, p, s);
            if (p + 4 <= y.y_v.v_size) {
                r->rr_cleared += zero_after(&y, p + 4);
                __atomic_store_n((uint32_t *)(y.y_v.v_base + p), TAPE_H_EOF, __ATOMIC_RELEASE);
                r->rr_sealed++;
            }
        }
        rc = tape_view_guarded(&y.y_v, 0);
    }
    tape_cyc_close(&y);
    return rc;
}

int64_t tape_repair_tail(tape_queue *q)
{
    tape_repair_report r;
    int rc = tape_repair(q, &r);
    return rc < 0 ? rc : (int64_t)(r.rr_cleared + 8 * r.rr_refilled + 4 * r.rr_sealed + r.rr_corrected);
}

int tape_repair(tape_queue *q, tape_repair_report *r)
{
    memset(r, 0, sizeof *r);
    if (q->q_read_only)
        return TAPE_EREADONLY;
    int rc = tape_lock_meta(q);
    if (rc < 0)
        return rc;
    tape_meta_shared *sh = q->q_sh;
    int64_t newest = tape_neighbour_cycle(q, INT64_MAX, -1);
    int changed = 0;
    if (newest < -1)
        rc = (int)newest;
    /* tape.meta naming a newest cycle whose file is gone: the real newest. */
    if (rc == 0 && __atomic_load_n(&sh->ms_highest, __ATOMIC_ACQUIRE) > newest) {
        __atomic_store_n(&sh->ms_highest, newest, __ATOMIC_RELEASE);
        r->rr_corrected += 8;
    }
    /* The cycle before the newest, left unsealed by a roll cut short. */
    int64_t prev = newest > 0 ? tape_neighbour_cycle(q, newest, -1) : -1;
    if (rc == 0 && prev < -1)
        rc = (int)prev;
    if (rc == 0 && prev >= 0)
        rc = repair_unsealed(q, prev, r);
    tape_cyc y;
    tape_cyc_init(&y);
    if (rc == 0 && newest >= 0 && (rc = tape_cyc_open(q, newest, 1, &y)) == 0) {
        uint64_t p = y.y_data_off, s = 0, bad;
        uint32_t h = 0;
        int64_t last_ts = INT64_MIN;
        int damaged = tape_cyc_walk(&y, &p, &s, &h, &last_ts) == TAPE_ECORRUPT;
        uint64_t cut = h == TAPE_H_EOF ? p + 4 : p; /* a sealed end stays */
        /* An unfinished entry at the end that a complete hint counts as
         * published (writers refuse it): damage, cut here too. */
        uint64_t g = __atomic_load_n(&sh->ms_hint_gen, __ATOMIC_ACQUIRE);
        int hinted = !(g & 1) && __atomic_load_n(&sh->ms_hint_cycle, __ATOMIC_RELAXED) == newest &&
                     __atomic_load_n(&sh->ms_hint_seq, __ATOMIC_RELAXED) > s;
        damaged |= hinted && (h & TAPE_H_NC) && h != TAPE_H_EOF;
        /* A complete hint whose end lies past the file's (writers refuse:
         * the file was cut): forgotten below, as the generation goes odd. */
        tape_view_cover(&y.y_v, UINT64_MAX);
        if (hinted && __atomic_load_n(&sh->ms_hint_pos, __ATOMIC_RELAXED) > y.y_v.v_size)
            r->rr_corrected += 8;
        /* Index words a lost page left 0 before intact entries (writers
         * refuse them in the last blocks; tailers cannot start there). */
        r->rr_refilled += refill_slots(q, &y, p);
        if (damaged || tape_cyc_dirty_after(&y, p, h) || tape_cyc_stray_slot(q, &y, p, s, &bad)) {
            uint64_t before = clear_slots_past(q, &y, cut, s);
            /* Up to the last non-zero byte, the header last. */
            uint64_t nz_end = nonzero_end(&y, cut);
            zero_after(&y, h == TAPE_H_EOF ? cut : cut + 4);
            if (h != TAPE_H_EOF && cut + 4 <= y.y_v.v_size)
                __atomic_store_n((uint32_t *)(y.y_v.v_base + cut), 0u, __ATOMIC_RELEASE);
            r->rr_cleared += (nz_end > cut ? nz_end - cut : 0) + 8 * before;
            changed = 1; /* (even with nothing to zero: a stray slot past the end) */
        }
        rc = tape_view_guarded(&y.y_v, rc);
        /* The newest timestamp no later than the newest entry's (or the
         * newest cycle's end when it holds none). */
        int64_t lo_ms = newest * q->q_roll.r_length_ms + q->q_roll.r_epoch_ms;
        int64_t bound = s ? last_ts : INT64_MAX;
        if (!s && lo_ms < INT64_MAX / 1000000 - q->q_roll.r_length_ms)
            bound = (lo_ms + q->q_roll.r_length_ms) * 1000000 - 1;
        if (s && last_ts == INT64_MIN)
            bound = INT64_MAX; /* damage before any entry: nothing to go by */
        if (__atomic_load_n(&sh->ms_last_ts, __ATOMIC_RELAXED) > bound) {
            __atomic_store_n(&sh->ms_last_ts, bound, __ATOMIC_RELEASE);
            r->rr_corrected += 8;
        }
    }
    changed |= r->rr_cleared || r->rr_refilled || r->rr_sealed || r->rr_corrected;
    /* The checked point may name a place the repair cut, or be damaged
     * itself: the next writer checks the whole newest cycle. */
    __atomic_store_n(&sh->ms_ok_check, 0u, __ATOMIC_RELAXED);
    if (changed) {
        /* Every writer, here and elsewhere, finds the end anew; tailers
         * drop what they copied of the cleared bytes. */
        uint64_t g = __atomic_load_n(&sh->ms_hint_gen, __ATOMIC_RELAXED);
        __atomic_store_n(&sh->ms_hint_gen, (g + 1) | 1, __ATOMIC_RELEASE);
        __atomic_fetch_add(&sh->ms_modcount, 1, __ATOMIC_RELEASE);
        q->q_w.w_valid = 0;
    }
    tape_cyc_close(&y);
    tape_unlock(q);
    return rc < 0 ? rc : 0;
}

/* fdatasync the files of cycles [from, to) that exist. */
static int sync_cycles(tape_queue *q, int64_t from, int64_t to)
{
    int64_t *v;
    size_t n;
    int rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char name[80];
        if (v[i] < from || v[i] >= to || (rc = tape_cycle_name(q, v[i], name, sizeof name)) < 0)
            continue;
        int fd = tf_openat(q->q_dirfd, name, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0) {
            rc = errno == ENOENT ? 0 : -errno; /* removed since: nothing to keep */
            continue;
        }
        if (tf_fdatasync(fd) < 0)
            rc = -errno;
        close(fd);
    }
    free(v);
    return rc;
}

static int appender_sync(tape_appender *a)
{
    tape_queue *q = a->a_q;
    int poisoned = atomic_load_explicit(&q->q_w.w_poisoned, memory_order_relaxed);
    if (poisoned)
        return poisoned == TAPE_LOST ? TAPE_ECORRUPT : TAPE_EPOISONED;
    int recovered;
    int rc = tape_lock(q, &recovered);
    if (rc < 0)
        return rc;
    int fd = -1;
    int64_t newest = __atomic_load_n(&q->q_sh->ms_highest, __ATOMIC_ACQUIRE);
    if (newest >= 0 && (rc = writer_prepare(q, newest, recovered)) == 1)
        rc = 0; /* the newest timestamp was brought back: nothing to pick */
    if (rc == 0 && q->q_w.w_y.y_v.v_fd >= 0 && (fd = dup(q->q_w.w_y.y_v.v_fd)) < 0)
        rc = -errno;
    int64_t cur = q->q_w.w_y.y_cycle;
    /* What this sync makes durable: the checked point may rise to it. */
    int checked = rc == 0 && fd >= 0 && q->q_w.w_valid && q->q_w.w_checked;
    uint64_t ok_pos = q->q_w.w_pos, ok_seq = q->q_w.w_seq;
    uint64_t mod = __atomic_load_n(&q->q_sh->ms_modcount, __ATOMIC_ACQUIRE);
    tape_unlock(q);
    if (rc < 0)
        return rc;
    /* Cycles the writer left (a roll) since the last complete sync, whose
     * last entries may be only in the page cache. Forgotten only if no cycle
     * was left meanwhile: a sync running beside this one flushes them too. */
    pthread_mutex_lock(&q->q_sync.sy_mu);
    int64_t from = q->q_sync.sy_from;
    uint64_t epoch = q->q_sync.sy_epoch;
    pthread_mutex_unlock(&q->q_sync.sy_mu);
    /* Flushing outside the lock: other writers go on meanwhile. */
    if (from >= 0 && from < cur)
        rc = sync_cycles(q, from, cur);
    if (rc == 0 && ((fd >= 0 && tf_fdatasync(fd) < 0) || tf_fsync(q->q_meta_fd) < 0 ||
                    tf_fsync(q->q_dirfd) < 0))
        rc = -errno;
    /* Flushed, but to the file this handle writes? (One removed or
     * replaced meanwhile took the entries with it.) */
    if (rc == 0 && fd >= 0 && cur == __atomic_load_n(&q->q_sh->ms_highest, __ATOMIC_ACQUIRE)) {
        tape_cyc probe = {.y_cycle = cur, .y_v = {.v_fd = fd}};
        if (tape_cyc_gone(q, &probe, 1)) {
            close(fd);
            atomic_store(&q->q_w.w_poisoned, TAPE_LOST);
            return TAPE_ECORRUPT;
        }
    }
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        atomic_store(&q->q_w.w_poisoned, 1);
        return rc;
    }
    pthread_mutex_lock(&q->q_sync.sy_mu);
    if (q->q_sync.sy_epoch == epoch && from <= cur)
        q->q_sync.sy_from = -1;
    pthread_mutex_unlock(&q->q_sync.sy_mu);
    if (checked)
        ok_advance(q, cur, ok_pos, ok_seq, mod);
    return rc;
}

int tape_appender_sync(tape_appender *a)
{
    if (!appender_enter(a))
        return TAPE_ECLOSED;
    int rc = appender_sync(a);
    appender_leave(a);
    return rc;
}
