/* map.c - files and their shared mappings, and the prefaulter.
 *
 * A view maps a file with a length larger than the file (at least
 * TAPE_MAP_MIN, doubled by mremap when outgrown) so the mapping rarely moves;
 * only bytes below v_size, which the file is known to back, are touched, so a
 * full disk shows up as ENOSPC from fallocate, never as SIGBUS.
 *
 * The prefaulter is one thread per appending queue handle that keeps the
 * current cycle file allocated and its pages faulted in for writing ahead of
 * the writer, and releases the pages behind it, so the append path neither
 * calls into the kernel nor takes page faults, and resident memory stays
 * bounded. */
#include "tape_int.h"
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void tape_view_init(tape_view *v)
{
    memset(v, 0, sizeof *v);
    v->v_fd = -1;
}

static size_t map_len_for(uint64_t size, int writable)
{
    size_t len = writable ? TAPE_MAP_MIN_WRITER : TAPE_MAP_MIN;
    while (len < size + size / 2)
        len *= 2;
    return len;
}

/* Where a reader's view of `len` bytes goes: a page past a huge page
 * boundary, in address space reserved for it (PROT_NONE), or MAP_FAILED.
 * The kernel then never maps a huge page into a reader's view: a fault maps
 * its fault-around (64 KiB) or a smaller folio readahead made, not the whole
 * 2 MiB page of the page cache that holds the byte, so what a tailer counts
 * as mapped stays near the truth when a writer keeps the file in huge pages.
 * Writers' views go where the kernel puts them, at huge page alignment.
 * A failed map over the place is undone with munmap: the kernel checks before
 * it replaces the reservation, so that frees the reservation, nothing else. */
static uint8_t *reader_place(size_t len)
{
    size_t span = len + TAPE_HUGE, page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return MAP_FAILED;
    uint8_t *at = (uint8_t *)(((uintptr_t)r + TAPE_HUGE - 1) & ~(uintptr_t)(TAPE_HUGE - 1)) + page;
    /* Keep only [at, at + len): the view replaces it. */
    if (at > r)
        munmap(r, (size_t)(at - r));
    if (r + span > at + len)
        munmap(at + len, (size_t)(r + span - (at + len)));
    return at;
}

static void *map_view(size_t len, int writable, int fd)
{
    if (writable)
        return t_mmap(NULL, len, PROT_READ | PROT_WRITE, fd);
    uint8_t *at = reader_place(len);
    if (at == MAP_FAILED)
        return MAP_FAILED;
    void *p = t_mmap(at, len, PROT_READ, fd);
    if (p == MAP_FAILED)
        munmap(at, len);
    return p;
}

int tape_view_open(tape_view *v, int dirfd, const char *name, int writable)
{
    tape_view_init(v);
    int fd = t_openat(dirfd, name, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    size_t len = map_len_for((uint64_t)st.st_size, writable);
    void *p = map_view(len, writable, fd);
    if (p == MAP_FAILED) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    v->v_fd = fd;
    v->v_base = p;
    v->v_maplen = len;
    v->v_size = (uint64_t)st.st_size;
    v->v_writable = writable;
    return 0;
}

void tape_view_close(tape_view *v)
{
    if (v->v_base)
        munmap(v->v_base, v->v_maplen);
    if (v->v_fd >= 0)
        close(v->v_fd);
    tape_view_init(v);
}

/* Only the thread that owns a view moves its mapping; v_mu (when set) keeps
 * the prefaulter off the mapping meanwhile. mremap moves a single VMA, so
 * nothing may give part of a view different flags (madvise MADV_RANDOM and
 * the like would split it). */
static int remap(tape_view *v, uint64_t end)
{
    if (end <= v->v_maplen)
        return 0;
    size_t len = map_len_for(end, v->v_writable);
    if (v->v_mu)
        pthread_mutex_lock(v->v_mu);
    /* Readers' views move to a place of their kind (see reader_place). */
    uint8_t *at = v->v_writable ? NULL : reader_place(len);
    void *p = at == MAP_FAILED ? MAP_FAILED : t_mremap(v->v_base, v->v_maplen, len, at);
    if (p == MAP_FAILED && at && at != MAP_FAILED)
        munmap(at, len);
    if (p != MAP_FAILED) {
        v->v_base = p;
        v->v_maplen = len;
    }
    if (v->v_mu)
        pthread_mutex_unlock(v->v_mu);
    return p == MAP_FAILED ? -errno : 0;
}

int tape_view_cover(tape_view *v, uint64_t end)
{
    if (end <= v->v_size)
        return 0;
    struct stat st;
    if (fstat(v->v_fd, &st) < 0)
        return -errno;
    uint64_t size = (uint64_t)st.st_size;
    int rc = remap(v, end < size ? end : size);
    if (rc < 0)
        return rc;
    v->v_size = size < v->v_maplen ? size : v->v_maplen;
    return end > size ? 1 : 0;
}

int tape_view_grow(tape_view *v, uint64_t end)
{
    int rc = tape_view_cover(v, end);
    if (rc <= 0)
        return rc;
    /* Never ftruncate: another process may have extended the file meanwhile,
     * and only fallocate is sure not to shrink it. */
    uint64_t to = (end + TAPE_GROW_STEP - 1) & ~(TAPE_GROW_STEP - 1);
    if (t_fallocate(v->v_fd, (off_t)v->v_size, (off_t)(to - v->v_size)) < 0)
        return -errno;
    rc = tape_view_cover(v, to);
    return rc > 0 ? -EIO : rc;
}

uint64_t tape_view_release(tape_view *v, uint64_t lo, uint64_t hi)
{
    lo &= ~(uint64_t)(TAPE_PAGE - 1);
    hi &= ~(uint64_t)(TAPE_PAGE - 1);
    if (hi > v->v_maplen)
        hi = v->v_maplen;
    if (hi <= lo)
        return lo;
    /* On a shared mapping this only drops page table entries; the data stays
     * in the page cache (and dirty pages are still written back). */
    madvise(v->v_base + lo, hi - lo, MADV_DONTNEED);
    return hi;
}

void tape_view_trim(tape_view *v, uint64_t below)
{
    uint64_t hi = tape_view_release(v, v->v_trim_lo, below);
    if (hi > v->v_trim_lo)
        v->v_trim_lo = hi;
}

/* ---- prefaulter --------------------------------------------------------- */

static void fault_in(uint8_t *p, uint64_t len)
{
    /* EFAULT and the like (the file shrank under us, say) mean: leave it. */
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0 || errno != EINVAL)
        return;
    /* Kernels before 5.14: a write fault per page that changes no byte, safe
     * while other writers fill the same pages. */
    for (uint64_t off = 0; off < len; off += TAPE_PAGE)
        __atomic_fetch_or((uint32_t *)(p + off), 0u, __ATOMIC_RELAXED);
}

static long pf_futex(_Atomic uint32_t *w, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)w, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
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

/* One unit of the prefaulter's work, holding q_mu: touch again the stretch
 * just behind a new kick position, or allocate and fault in one piece
 * towards q_pf_want. Returns 0 when there is nothing to do. The prefaulter
 * reads the writer's view (fd, base, length) under q_mu, which the writer
 * holds whenever it changes them, and never writes the view. */
static int prefault_step(tape_queue *q, uint64_t *refreshed)
{
    tape_view *v = &q->q_w.w_y.y_v;
    if (v->v_fd < 0)
        return 0;
    uint64_t ready = atomic_load_explicit(&q->q_pf_ready, memory_order_relaxed);
    uint64_t pos = atomic_load_explicit(&q->q_pf_pos, memory_order_relaxed);
    uint64_t want = atomic_load_explicit(&q->q_pf_want, memory_order_relaxed);
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
            fault_in(v->v_base + lo, hi - lo);
        /* Whole huge pages: releasing part of one splits its mapping. */
        if (lo > v->v_trim_lo + TAPE_TRIM_WINDOW) {
            tape_view_trim(v, (lo - TAPE_TRIM_WINDOW / 2) & ~(TAPE_HUGE - 1));
            release_full_arrays(q);
        }
        return 1;
    }
    if (ready >= want || want == q->q_pf_failed)
        return 0;
    /* Allocate in steps (each fallocate takes filesystem locks the
     * writer's own faults may wait for), fault in by pieces. */
    uint64_t to = ready + TAPE_FAULT_PIECE;
    if (to > q->q_pf_alloc) {
        /* As far as wanted, at most a step, and to a huge page boundary: the
         * kernel makes a huge page only where the file covers all of it. */
        uint64_t step = want > to ? want : to;
        uint64_t most = ready + TAPE_GROW_STEP;
        step = (step + TAPE_HUGE - 1) & ~(TAPE_HUGE - 1);
        most = (most + TAPE_HUGE - 1) & ~(TAPE_HUGE - 1);
        if (step > most)
            step = most;
        if (step > v->v_maplen || t_fallocate(v->v_fd, (off_t)ready, (off_t)(step - ready)) < 0) {
            /* Out of room or out of space: the writer's own slow path
             * reports the error when it gets there. */
            q->q_pf_failed = want;
            return 0;
        }
        q->q_pf_alloc = step;
    }
    fault_in(v->v_base + ready, to - ready);
    /* Raise, never lower: the writer may have raised it past `to` meanwhile. */
    uint64_t cur = atomic_load_explicit(&q->q_pf_ready, memory_order_relaxed);
    while (cur < to && !atomic_compare_exchange_weak_explicit(&q->q_pf_ready, &cur, to,
                                                              memory_order_release,
                                                              memory_order_relaxed))
        ;
    return 1;
}

/* The writer never waits for the prefaulter: it stores what it wants, bumps
 * q_pf_kicks and wakes the thread only when it sleeps. The thread reads the
 * counter before it looks for work and sleeps on that value, so a kick that
 * comes after it found nothing to do is never lost. q_mu is released after
 * every piece, so a writer that must move or switch its mapping waits for one
 * piece at most. */
static void *prefault_main(void *arg)
{
    tape_queue *q = arg;
    uint64_t refreshed = 0;
    while (!atomic_load_explicit(&q->q_pf_stop, memory_order_relaxed)) {
        uint32_t kicks = atomic_load_explicit(&q->q_pf_kicks, memory_order_acquire);
        pthread_mutex_lock(&q->q_mu);
        int busy = prefault_step(q, &refreshed);
        pthread_mutex_unlock(&q->q_mu);
        if (busy)
            continue;
        atomic_store_explicit(&q->q_pf_sleeping, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&q->q_pf_kicks, memory_order_seq_cst) == kicks &&
            !atomic_load_explicit(&q->q_pf_stop, memory_order_relaxed))
            pf_futex(&q->q_pf_kicks, FUTEX_WAIT, kicks);
        atomic_store_explicit(&q->q_pf_sleeping, 0, memory_order_relaxed);
    }
    return NULL;
}

static void prefault_wake(tape_queue *q)
{
    atomic_fetch_add_explicit(&q->q_pf_kicks, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&q->q_pf_sleeping, memory_order_seq_cst))
        pf_futex(&q->q_pf_kicks, FUTEX_WAKE, 1);
}

/* Holding q_mu. */
int tape_prefault_start(tape_queue *q)
{
    if (q->q_pf_running)
        return 0;
    atomic_store_explicit(&q->q_pf_stop, 0, memory_order_relaxed);
    int rc = pthread_create(&q->q_pf_thread, NULL, prefault_main, q);
    if (rc)
        return -rc;
    q->q_pf_running = 1;
    return 0;
}

/* Not holding q_mu. */
void tape_prefault_stop(tape_queue *q)
{
    pthread_mutex_lock(&q->q_mu);
    int running = q->q_pf_running;
    pthread_mutex_unlock(&q->q_mu);
    if (!running)
        return;
    atomic_store_explicit(&q->q_pf_stop, 1, memory_order_relaxed);
    prefault_wake(q);
    pthread_join(q->q_pf_thread, NULL);
    q->q_pf_running = 0;
}

/* Called by the writer (holding the write lock) when it passes w_kick_at,
 * with what the cycle has received so far: the prefaulter runs ahead by
 * twice that, between 256 KiB and TAPE_PREFAULT_AHEAD, so a cycle that gets
 * a few entries does not cost megabytes of zeroed pages. Never blocks. */
void tape_prefault_kick(tape_queue *q, uint64_t pos, uint64_t received)
{
    uint64_t ahead = 2 * received;
    if (ahead < TAPE_FAULT_PIECE)
        ahead = TAPE_FAULT_PIECE;
    if (ahead > TAPE_PREFAULT_AHEAD)
        ahead = TAPE_PREFAULT_AHEAD;
    atomic_store_explicit(&q->q_pf_pos, pos, memory_order_relaxed);
    atomic_store_explicit(&q->q_pf_want, pos + ahead, memory_order_relaxed);
    prefault_wake(q);
}
