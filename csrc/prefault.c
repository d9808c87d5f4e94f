/* prefault.c - the prefaulter: one thread per appending queue handle that
 * keeps the current cycle file allocated and its pages faulted in for writing
 * ahead of the writer, and releases the pages behind it, so the append path
 * neither calls into the kernel nor takes page faults, and resident memory
 * stays bounded. */
#include "tape_int.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* 0, or -errno when the kernel could not fault the pages in: EFAULT (the
 * file shrank under us), ENOMEM or EIO (no page to back them), where a
 * plain access would have raised SIGBUS. */
static int fault_in(uint8_t *p, uint64_t len)
{
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    /* Kernels before 5.14: a write fault per page that changes no byte, safe
     * while other writers fill the same pages. */
    for (uint64_t off = 0; off < len; off += TAPE_PAGE)
        __atomic_fetch_or((uint32_t *)(p + off), 0u, __ATOMIC_RELAXED);
    return 0; /* a SIGBUS here marks the view (guard.c), checked by the caller */
}

/* The writer fills an index array's slots while it appends the entries the
 * array covers, tens of MiB past the array, so the array's pages are faulted
 * in again behind the trimmed stretch. Release each array once the next one
 * exists (it is full then) and trimming has passed it: otherwise every array
 * of the cycle would stay mapped, a huge page each. Reads only the shared
 * index2index; a damaged slot at worst stops the releases. */
static void release_full_arrays(tape_queue *q)
{
    tape_cyc *y = &q->q_w.w_y;
    tape_view *v = &y->y_v;
    const uint64_t n = (uint64_t)1 << q->q_roll.r_count_log2;
    const uint64_t *i2i = (const uint64_t *)(v->v_base + y->y_i2i_off);
    const uint64_t size = tape_entry_size((uint32_t)(8 * n));
    while (y->y_full_released + 1 < n) {
        uint64_t k = y->y_full_released;
        uint64_t arr = __atomic_load_n(&i2i[k], __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&i2i[k + 1], __ATOMIC_ACQUIRE) == 0)
            return;
        uint64_t hi = (arr + size + TAPE_HUGE - 1) & ~(TAPE_HUGE - 1);
        /* arr first: a damaged slot near 2^64 makes the sum wrap. */
        if (arr > v->v_trim_lo || hi > v->v_trim_lo)
            return;
        tape_view_release(v, arr & ~(TAPE_HUGE - 1), hi);
        y->y_full_released = k + 1;
    }
}

/* One unit of the prefaulter's work, holding w_mu: touch again the stretch
 * just behind a new kick position, or allocate and fault in one piece
 * towards pf_want. Returns 0 when there is nothing to do. The prefaulter
 * reads the writer's view (fd, base, length) under w_mu, which the writer
 * holds whenever it changes them, and never writes the view. */
static int prefault_step(tape_queue *q, uint64_t *refreshed)
{
    tape_view *v = &q->q_w.w_y.y_v;
    /* A view the SIGBUS guard marked is left alone: the writer drops it at
     * its next append. */
    if (v->v_fd < 0 || tape_view_hit(v))
        return 0;
    uint64_t ready = atomic_load_explicit(&q->q_pf.pf_ready, memory_order_relaxed);
    uint64_t pos = atomic_load_explicit(&q->q_pf.pf_pos, memory_order_relaxed);
    uint64_t want = atomic_load_explicit(&q->q_pf.pf_want, memory_order_relaxed);
    if (pos != *refreshed) {
        /* Writeback cleans (and write-protects) pages faulted in earlier;
         * touch the stretch the writer fills before its next kick again,
         * which costs little for pages still writable. */
        *refreshed = pos;
        uint64_t lo = pos & ~(uint64_t)(TAPE_PAGE - 1);
        if (lo < v->v_trim_lo) {
            /* The end moved back (tape_repair_tail): trim from there on. */
            v->v_trim_lo = lo & ~(TAPE_HUGE - 1);
            q->q_w.w_y.y_full_released = 0;
        }
        uint64_t hi = lo + TAPE_GROW_STEP;
        if (hi > ready)
            hi = ready;
        if (hi > lo && hi <= v->v_maplen)
            (void)fault_in(v->v_base + lo, hi - lo); /* the writer's check reports */
        /* Whole huge pages: releasing part of one splits its mapping. */
        if (lo > v->v_trim_lo + TAPE_TRIM_WINDOW) {
            tape_view_trim(v, (lo - TAPE_TRIM_WINDOW / 2) & ~(TAPE_HUGE - 1));
            release_full_arrays(q);
        }
        return 1;
    }
    if (ready >= want || want == q->q_pf.pf_failed)
        return 0;
    /* Allocate in steps (each fallocate takes filesystem locks the
     * writer's own faults may wait for), fault in by pieces; a young cycle
     * no further than wanted. */
    uint64_t to = ready + TAPE_FAULT_PIECE;
    if (to > want)
        to = (want + TAPE_PAGE - 1) & ~(uint64_t)(TAPE_PAGE - 1);
    if (to > q->q_pf.pf_alloc) {
        /* As far as wanted, at most a step, and past the first huge page to
         * a huge page boundary: the kernel makes a huge page only where the
         * file covers all of it. Within the first, whole pages: a file
         * smaller than a huge page has none. */
        uint64_t step = want > to ? want : to;
        uint64_t most = ready + TAPE_GROW_STEP;
        if (step > TAPE_HUGE) {
            step = (step + TAPE_HUGE - 1) & ~(TAPE_HUGE - 1);
            most = (most + TAPE_HUGE - 1) & ~(TAPE_HUGE - 1);
        } else {
            step = (step + TAPE_PAGE - 1) & ~(uint64_t)(TAPE_PAGE - 1);
        }
        if (step > most)
            step = most;
        /* Never grow a file that shrank under the writer (another process
         * truncated it): zeros there would hide the loss from readers and
         * let the writer go on; readers fault and report it instead. */
        struct stat st;
        if (step > v->v_maplen || fstat(v->v_fd, &st) < 0 || (uint64_t)st.st_size < ready ||
            tape_file_alloc(v->v_fd, ready, step - ready) < 0) {
            /* Out of room or out of space: the writer's own slow path
             * reports the error when it gets there. */
            q->q_pf.pf_failed = want;
            return 0;
        }
        q->q_pf.pf_alloc = step;
        /* Cut under the writer between our fstat and fallocate: grown
         * again, the file hides the loss; refuse appends (as look_at_file). */
        if (tape_cut_under(v, atomic_load_explicit(&q->q_pf.pf_last, memory_order_acquire))) {
            atomic_store(&q->q_w.w_poisoned, TAPE_LOST);
            q->q_pf.pf_failed = want;
            return 0;
        }
    }
    if (fault_in(v->v_base + ready, to - ready) < 0 || tape_view_hit(v)) {
        /* Not backed after all (the file was truncated, or the filesystem
         * has no page for it): stop here; the writer finds out itself. */
        q->q_pf.pf_failed = want;
        return 0;
    }
    /* Raise, never lower: the writer may have raised it past `to` meanwhile. */
    uint64_t cur = atomic_load_explicit(&q->q_pf.pf_ready, memory_order_relaxed);
    while (cur < to && !atomic_compare_exchange_weak_explicit(&q->q_pf.pf_ready, &cur, to,
                                                              memory_order_release,
                                                              memory_order_relaxed))
        ;
    return 1;
}

/* How often the prefaulter looks whether the writer's file is still the
 * queue's. */
#define LOOK_EVERY_NS 5000000

/* Holding w_mu: the writer's file was removed (rm, or renamed over) while it
 * is the newest cycle; entries appended to it from now on would be
 * acknowledged and lost, so appends are refused (a file purged after another
 * writer rolled past it is not the newest, and is let go). */
static void look_at_file(tape_queue *q)
{
    tape_cyc *y = &q->q_w.w_y;
    if (y->y_v.v_fd < 0 || atomic_load_explicit(&q->q_w.w_poisoned, memory_order_relaxed))
        return;
    if (tape_cyc_gone(q, y, 1) &&
        __atomic_load_n(&q->q_sh->ms_highest, __ATOMIC_ACQUIRE) == y->y_cycle)
        atomic_store(&q->q_w.w_poisoned, TAPE_LOST);
    /* Truncated below what the writer has written (and maybe grown again
     * since: its last entry's header reads 0): the same, lost. */
    struct stat st;
    if ((fstat(y->y_v.v_fd, &st) == 0 &&
         (uint64_t)st.st_size < atomic_load_explicit(&q->q_pf.pf_pos, memory_order_relaxed)) ||
        tape_cut_under(&y->y_v, atomic_load_explicit(&q->q_pf.pf_last, memory_order_acquire)))
        atomic_store(&q->q_w.w_poisoned, TAPE_LOST);
}

/* The writer never waits for the prefaulter: it stores what it wants, bumps
 * pf_kicks and wakes the thread only when it sleeps. The thread reads the
 * counter before it looks for work and sleeps on that value, so a kick that
 * comes after it found nothing to do is never lost. w_mu is released after
 * every piece, so a writer that must move or switch its mapping waits for one
 * piece at most. */
static void *prefault_main(void *arg)
{
    tape_queue *q = arg;
    uint64_t refreshed = 0;
    int64_t looked = tape_mono_ns();
    while (!atomic_load_explicit(&q->q_pf.pf_stop, memory_order_relaxed)) {
        uint32_t kicks = atomic_load_explicit(&q->q_pf.pf_kicks, memory_order_acquire);
        int64_t now = tape_mono_ns();
        pthread_mutex_lock(&q->q_w.w_mu);
        if (now - looked >= LOOK_EVERY_NS) {
            look_at_file(q);
            looked = now;
        }
        int busy = prefault_step(q, &refreshed);
        int has_file = q->q_w.w_y.y_v.v_fd >= 0;
        pthread_mutex_unlock(&q->q_w.w_mu);
        if (busy)
            continue;
        atomic_store_explicit(&q->q_pf.pf_sleeping, 1, memory_order_seq_cst);
        /* With a file to watch, wake up to look at it every few ms. */
        struct timespec look = {0, LOOK_EVERY_NS};
        if (atomic_load_explicit(&q->q_pf.pf_kicks, memory_order_seq_cst) == kicks &&
            !atomic_load_explicit(&q->q_pf.pf_stop, memory_order_relaxed))
            tape_futex((uint32_t *)&q->q_pf.pf_kicks, FUTEX_WAIT_PRIVATE, kicks,
                       has_file ? &look : NULL);
        atomic_store_explicit(&q->q_pf.pf_sleeping, 0, memory_order_relaxed);
    }
    return NULL;
}

static void prefault_wake(tape_queue *q)
{
    atomic_fetch_add_explicit(&q->q_pf.pf_kicks, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&q->q_pf.pf_sleeping, memory_order_seq_cst))
        tape_futex((uint32_t *)&q->q_pf.pf_kicks, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* Holding w_mu. */
int tape_prefault_start(tape_queue *q)
{
    if (q->q_pf.pf_running)
        return 0;
    atomic_store_explicit(&q->q_pf.pf_stop, 0, memory_order_relaxed);
    int rc = pthread_create(&q->q_pf.pf_thread, NULL, prefault_main, q);
    if (rc)
        return -rc;
    q->q_pf.pf_running = 1;
    return 0;
}

/* Not holding w_mu. */
void tape_prefault_stop(tape_queue *q)
{
    pthread_mutex_lock(&q->q_w.w_mu);
    int running = q->q_pf.pf_running;
    pthread_mutex_unlock(&q->q_w.w_mu);
    if (!running)
        return;
    atomic_store_explicit(&q->q_pf.pf_stop, 1, memory_order_relaxed);
    prefault_wake(q);
    pthread_join(q->q_pf.pf_thread, NULL);
    q->q_pf.pf_running = 0;
}

/* Called by the writer (holding the write lock) when it passes w_kick_at,
 * with what the cycle has received so far: the prefaulter runs ahead by
 * twice that, between TAPE_START_ROOM and TAPE_PREFAULT_AHEAD, so a cycle
 * that gets a few entries does not cost megabytes of disk and zeroed pages;
 * the writer kicks again after half as much (at least half the least
 * distance ahead, at most half a step), so it never outruns what it asked
 * for with entries smaller than that. The first index array, written with
 * the first entry, is not counted as traffic. Never blocks. */
uint64_t tape_prefault_kick(tape_queue *q, uint64_t pos, uint64_t received)
{
    uint64_t first = tape_entry_size((uint32_t)(8u << q->q_roll.r_count_log2));
    uint64_t data = received > first ? received - first : 0;
    uint64_t ahead = 2 * data;
    if (ahead < TAPE_START_ROOM)
        ahead = TAPE_START_ROOM;
    if (ahead > TAPE_PREFAULT_AHEAD)
        ahead = TAPE_PREFAULT_AHEAD;
    atomic_store_explicit(&q->q_pf.pf_pos, pos, memory_order_relaxed);
    atomic_store_explicit(&q->q_pf.pf_want, pos + ahead, memory_order_relaxed);
    prefault_wake(q);
    uint64_t next = data / 2;
    if (next < TAPE_START_ROOM / 2)
        next = TAPE_START_ROOM / 2;
    if (next > TAPE_GROW_STEP / 2)
        next = TAPE_GROW_STEP / 2;
    return next;
}
