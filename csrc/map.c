/* map.c - file views: a file and its shared mapping (the lowest layer: it
 * knows nothing of queues; the prefaulter, prefault.c, drives the writer's).
 *
 * A view maps a file with a length larger than the file (at least
 * TAPE_MAP_MIN, doubled by mremap when outgrown) so the mapping rarely moves;
 * only bytes below v_size, which the file is known to back, are touched, so a
 * full disk shows up as ENOSPC from fallocate, never as SIGBUS. */
#include "tape_int.h"
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

void tape_view_init(tape_view *v)
{
    memset(v, 0, sizeof *v);
    v->v_fd = -1;
    v->v_guard = -1;
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
        return tf_mmap(NULL, len, PROT_READ | PROT_WRITE, fd);
    uint8_t *at = reader_place(len);
    if (at == MAP_FAILED)
        return MAP_FAILED;
    void *p = tf_mmap(at, len, PROT_READ, fd);
    if (p == MAP_FAILED)
        munmap(at, len);
    return p;
}

int tape_view_open(tape_view *v, int dirfd, const char *name, int writable)
{
    tape_view_init(v);
    int fd = tf_openat(dirfd, name, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
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
    /* Registered before anything reads it (the header, at once). */
    int slot = tape_guard_add(p, len);
    if (slot < 0) {
        munmap(p, len);
        close(fd);
        return slot;
    }
    v->v_guard = slot;
    v->v_fd = fd;
    v->v_base = p;
    v->v_maplen = len;
    v->v_size = (uint64_t)st.st_size;
    v->v_writable = writable;
    return 0;
}

/* Unmap a mapping and forget its guard slot. */
static void unmap(uint8_t *base, size_t len, int guard)
{
    tape_guard_remove(guard);
    if (base)
        munmap(base, len);
}

struct tape_pin *tape_view_pin(tape_view *v)
{
    struct tape_pin *p = v->v_pin;
    if (!p) {
        if (!(p = malloc(sizeof *p)))
            return NULL;
        atomic_init(&p->p_refs, 1); /* the view's */
        p->p_base = v->v_base;
        p->p_len = v->v_maplen;
        p->p_guard = v->v_guard;
        v->v_pin = p;
    }
    atomic_fetch_add_explicit(&p->p_refs, 1, memory_order_relaxed);
    return p;
}

void tape_pin_release(tape_pin *p)
{
    if (!p || atomic_fetch_sub_explicit(&p->p_refs, 1, memory_order_acq_rel) != 1)
        return;
    unmap(p->p_base, p->p_len, p->p_guard);
    free(p);
}

int tape_pin_damaged(const tape_pin *p)
{
    return tape_guard_hit(p->p_guard) ? TAPE_ECORRUPT : 0;
}

/* The view stops using its mapping: unmapped, unless pins hold it. */
static void unpin(tape_view *v)
{
    tape_pin *p = v->v_pin;
    v->v_pin = NULL;
    if (!p)
        unmap(v->v_base, v->v_maplen, v->v_guard);
    else
        tape_pin_release(p);
}

void tape_view_close(tape_view *v)
{
    unpin(v);
    if (v->v_fd >= 0)
        close(v->v_fd);
    tape_view_init(v);
}

/* A pinned reader's view that must grow: a new mapping of `len` bytes (and
 * guard slot) for the view, the old one left to its pins. */
static int remap_pinned(tape_view *v, size_t len)
{
    uint8_t *p = map_view(len, 0, v->v_fd);
    if (p == MAP_FAILED)
        return -errno;
    int slot = tape_guard_add(p, len);
    if (slot < 0) {
        munmap(p, len);
        return slot;
    }
    unpin(v);
    v->v_base = p;
    v->v_maplen = len;
    v->v_guard = slot;
    return 0;
}

/* Only the thread that owns a view moves its mapping; v_mu (when set) keeps
 * the prefaulter off the mapping meanwhile. mremap moves a single VMA, so
 * nothing may give part of a view different flags (madvise MADV_RANDOM and
 * the like would split it). */
static int remap(tape_view *v, uint64_t end)
{
    if (end <= v->v_maplen)
        return 0;
    /* A zero page put in by the SIGBUS handler split the mapping, which
     * mremap cannot move: the owner must close the view. */
    if (tape_view_hit(v))
        return tape_view_damage(v);
    size_t len = map_len_for(end, v->v_writable);
    if (v->v_pin) {
        /* Only this view's own calls add holders: with none left but the
         * view, the mapping may move as usual. */
        if (atomic_load_explicit(&v->v_pin->p_refs, memory_order_acquire) > 1)
            return remap_pinned(v, len);
        free(v->v_pin);
        v->v_pin = NULL;
    }
    if (v->v_mu)
        pthread_mutex_lock(v->v_mu);
    /* Readers' views move to a place of their kind (see reader_place). */
    uint8_t *at = v->v_writable ? NULL : reader_place(len);
    void *p = at == MAP_FAILED ? MAP_FAILED : tf_mremap(v->v_base, v->v_maplen, len, at);
    if (p == MAP_FAILED && at && at != MAP_FAILED)
        munmap(at, len);
    if (p != MAP_FAILED) {
        v->v_base = p;
        v->v_maplen = len;
        tape_guard_move(v->v_guard, p, len);
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

/* Zeros appended at the end of the file (O_APPEND: each write lands at the
 * end as it is then, so bytes another writer put there are never
 * overwritten) until it holds `to` bytes. */
static int append_zeros(int fd, uint64_t to)
{
    static const uint8_t zeros[65536];
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (!(fl & O_APPEND) && fcntl(fd, F_SETFL, fl | O_APPEND) < 0))
        return -errno;
    for (;;) {
        struct stat st;
        if (fstat(fd, &st) < 0)
            return -errno;
        if ((uint64_t)st.st_size >= to)
            return 0;
        uint64_t n = to - (uint64_t)st.st_size;
        ssize_t w = write(fd, zeros, n < sizeof zeros ? (size_t)n : sizeof zeros);
        if (w < 0 && errno != EINTR)
            return -errno;
    }
}

int tape_file_alloc(int fd, uint64_t off, uint64_t len)
{
    if (tf_fallocate(fd, (off_t)off, (off_t)len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return -errno;
    /* No fallocate here (FUSE, NFS, 9p): blocks written are blocks
     * allocated, so a full disk is ENOSPC here too, never SIGBUS later. */
    return append_zeros(fd, off + len);
}

/* The size a file of `size` bytes grows to so that it holds `end`: while
 * it is smaller than a step, doubled (whole pages), so a small file stays
 * small and a growing one is not extended at every entry; past that, whole
 * steps, which are whole huge pages (the kernel maps a huge page only where
 * the file covers all of it). */
static uint64_t grow_to(uint64_t size, uint64_t end)
{
    if (end > TAPE_GROW_STEP)
        return (end + TAPE_GROW_STEP - 1) & ~(TAPE_GROW_STEP - 1);
    uint64_t to = 2 * size > end ? 2 * size : end;
    if (to > TAPE_GROW_STEP)
        to = TAPE_GROW_STEP;
    return (to + TAPE_PAGE - 1) & ~(uint64_t)(TAPE_PAGE - 1);
}

int tape_view_grow(tape_view *v, uint64_t end)
{
    uint64_t known = v->v_size;
    int rc = tape_view_cover(v, end);
    if (rc <= 0)
        return rc;
    /* Never grow a file that shrank under us (another process truncated
     * it): zeros there would hide the loss from readers and let the writer
     * go on. */
    if (v->v_size < known)
        return TAPE_ECORRUPT;
    /* Never ftruncate: another process may have extended the file meanwhile,
     * and only fallocate is sure not to shrink it. */
    uint64_t to = grow_to(v->v_size, end);
    if ((rc = tape_file_alloc(v->v_fd, v->v_size, to - v->v_size)) < 0)
        return rc;
    rc = tape_view_cover(v, to);
    return rc > 0 ? -EIO : rc;
}

int tape_cut_under(const tape_view *v, uint64_t last)
{
    return last != 0 && last + 4 <= v->v_maplen && tape_load_hdr(v, last) == 0;
}

int tape_view_damage(const tape_view *v)
{
    if (!tape_view_hit(v))
        return 0;
    uint64_t off = tape_guard_fault_off(v->v_guard);
    struct stat st;
    if (fstat(v->v_fd, &st) == 0 && (uint64_t)st.st_size <= off)
        return TAPE_ECORRUPT; /* the file was cut short under the mapping */
    struct statvfs fs;
    if (fstatvfs(v->v_fd, &fs) == 0 && fs.f_bavail == 0)
        return -ENOSPC;
    return -EIO;
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
