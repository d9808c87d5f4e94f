/* meta.c - the metadata file (tape.meta): creating and checking it, the write
 * lock kept in it, and the wake-ups of sleeping readers, both halves: the
 * writer's and the reader's (docs/FORMAT.md, "The metadata file" and "The
 * write lock"). */
#include "tape_int.h"
#include "fault.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(offsetof(tape_meta_hdr, m_crc) == 152, "meta header layout");
_Static_assert(offsetof(tape_meta_shared, ms_lowest) == 64, "meta line 1");
_Static_assert(offsetof(tape_meta_shared, ms_notify) == 128, "meta line 2");

/* ---- the metadata file ------------------------------------------------------ */

DIR *tape_dir_open(int dirfd)
{
    int fd = tf_openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return d;
}

/* 1 when the directory holds nothing but (stale) temporary metadata files. */
int tape_dir_is_empty(int dirfd)
{
    DIR *d = tape_dir_open(dirfd);
    if (!d)
        return -errno;
    int empty = 1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strncmp(n, TAPE_META_NAME ".tmp.", 14))
            continue;
        empty = 0;
        break;
    }
    closedir(d);
    return empty;
}

/* Page by page: the page cache then holds the file in 4 KiB pages, so that
 * a flush after an append writes the one page the append changed, not the
 * whole 64 KiB a single write would have put in one large page. */
static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n < TAPE_PAGE ? n : TAPE_PAGE);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int tape_meta_create(int dirfd, const tape_open_opts *o, const tape_roll_info *ri)
{
    int rc = tape_dir_is_empty(dirfd);
    if (rc <= 0)
        return rc < 0 ? rc : TAPE_ENOTQUEUE;

    uint8_t *buf = calloc(1, TAPE_META_SIZE);
    if (!buf)
        return -ENOMEM;
    tape_meta_hdr *h = (tape_meta_hdr *)buf;
    memcpy(h->m_magic, "TAPEMETA", 8);
    h->m_version = TAPE_VERSION;
    h->m_size = TAPE_META_SIZE;
    snprintf(h->m_roll, sizeof h->m_roll, "%s", ri->ri_name);
    snprintf(h->m_codec, sizeof h->m_codec, "%s", o->oo_codec ? o->oo_codec : "msgpack");
    h->m_length_ms = ri->ri_length_ms;
    h->m_epoch_ms = o->oo_epoch_ms;
    h->m_seq_bits = (uint32_t)ri->ri_seq_bits;
    h->m_count_log2 = (uint32_t)ri->ri_index_count_log2;
    h->m_spacing_log2 = (uint32_t)ri->ri_index_spacing_log2;
    h->m_params_len = o->oo_params_len;
    h->m_created_ns = tape_now_ns();
    h->m_crc = tape_crc32c(0, h, offsetof(tape_meta_hdr, m_crc));
    tape_meta_shared *sh = (tape_meta_shared *)(buf + TAPE_META_SHARED_OFF);
    sh->ms_hint_cycle = -1;
    sh->ms_lowest = -1;
    sh->ms_highest = -1;
    if (o->oo_params_len)
        memcpy(buf + TAPE_PARAMS_OFF, o->oo_params, o->oo_params_len);

    char tmp[64];
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) < 0)
        r = (uint32_t)tape_now_ns();
    snprintf(tmp, sizeof tmp, TAPE_META_NAME ".tmp.%d.%08x", (int)getpid(), r);
    int fd = tf_openat(dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) {
        rc = -errno;
        free(buf);
        return rc;
    }
    rc = write_all(fd, buf, TAPE_META_SIZE);
    free(buf);
    if (rc == 0 && tf_fsync(fd) < 0)
        rc = -errno;
    close(fd);
    /* link() never replaces: if another process created the queue first, we
     * use theirs. */
    int linked = 0;
    if (rc == 0) {
        if (tf_linkat(dirfd, tmp, TAPE_META_NAME) == 0)
            linked = 1;
        else if (errno != EEXIST)
            rc = -errno;
    }
    unlinkat(dirfd, tmp, 0);
    if (rc == 0)
        tf_fsync(dirfd);
    return rc < 0 ? rc : linked;
}

int tape_meta_validate(tape_queue *q, const tape_open_opts *o)
{
    const tape_meta_hdr *h = q->q_hdr;
    if (memcmp(h->m_magic, "TAPEMETA", 8) != 0 || h->m_size != TAPE_META_SIZE)
        return TAPE_ECORRUPT;
    if (h->m_version != TAPE_VERSION)
        return TAPE_EVERSION;
    if (tape_crc32c(0, h, offsetof(tape_meta_hdr, m_crc)) != h->m_crc)
        return TAPE_ECORRUPT;
    if (memchr(h->m_roll, 0, TAPE_NAME_MAX) == NULL || memchr(h->m_codec, 0, TAPE_NAME_MAX) == NULL)
        return TAPE_ECORRUPT;
    if (h->m_length_ms <= 0 || h->m_count_log2 < 1 || h->m_count_log2 > 20 ||
        h->m_spacing_log2 > 16 || h->m_seq_bits != 2 * h->m_count_log2 + h->m_spacing_log2 ||
        h->m_seq_bits > 48 || h->m_params_len > TAPE_PARAMS_MAX)
        return TAPE_ECORRUPT;
    if (o->oo_roll_cycle && strcmp(o->oo_roll_cycle, h->m_roll) != 0)
        return TAPE_EINCOMPAT;
    if (o->oo_codec && strcmp(o->oo_codec, h->m_codec) != 0)
        return TAPE_EINCOMPAT;

    const tape_roll_info *ri = tape_roll_find(h->m_roll);
    if (!ri)
        return TAPE_EROLLCYCLE;
    q->q_roll.r_length_ms = h->m_length_ms;
    q->q_roll.r_epoch_ms = h->m_epoch_ms;
    q->q_roll.r_seq_bits = (int)h->m_seq_bits;
    q->q_roll.r_count_log2 = (int)h->m_count_log2;
    q->q_roll.r_spacing_log2 = (int)h->m_spacing_log2;
    q->q_roll.r_format = ri->ri_format;
    return 0;
}

/* ---- the write lock ---------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Take a token whose liveness byte nobody holds; the kernel releases our
 * hold on it when this process dies (or closes the queue). Holding w_mu. */
int tape_register_writer(tape_queue *q)
{
    if (__atomic_load_n(&q->q_w.w_token, __ATOMIC_RELAXED))
        return 0;
    for (int tries = 0; tries < 64; tries++) {
        uint32_t tok = 0;
        if (getrandom(&tok, sizeof tok, 0) < 0)
            return -errno;
        tok &= ~TAPE_LOCK_WAITERS;
        /* Not 0, and not a dead owner's token still in the lock word: we
         * would take its lock for our own and wait for ourselves. */
        if (!tok || tok == (__atomic_load_n(&q->q_sh->ms_lock, __ATOMIC_RELAXED) & ~TAPE_LOCK_WAITERS))
            continue;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                           .l_start = TAPE_LIVE_BASE + tok, .l_len = 1};
        if (fcntl(q->q_meta_fd, F_OFD_SETLK, &fl) == 0) {
            q->q_w.w_pid = (uint32_t)getpid();
            __atomic_store_n(&q->q_w.w_token, tok, __ATOMIC_RELEASE); /* read by tape_lock */
            return 0;
        }
        if (errno != EAGAIN && errno != EACCES)
            return -errno;
    }
    return -EAGAIN;
}

/* A fork child's hold on the liveness byte let go (tape_queue_after_fork). */
int tape_meta_after_fork(tape_queue *q)
{
    if (q->q_read_only || !__atomic_load_n(&q->q_w.w_token, __ATOMIC_RELAXED))
        return 0; /* no token: this process holds no liveness byte */
    int fd = openat(q->q_dirfd, TAPE_META_NAME, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* The parent's open file description (which holds the lock) is kept
     * alive by the mapping as well as by the descriptor: map the same file
     * at the same place through the fresh one (contents are shared, so
     * nothing moves), then put the fresh one under the descriptor number. */
    int rc = 0;
    if (mmap(q->q_meta, TAPE_META_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        rc = -errno;
    } else {
        madvise(q->q_meta, TAPE_META_SIZE, MADV_RANDOM); /* as tape_open maps it */
        if (dup3(fd, q->q_meta_fd, O_CLOEXEC) < 0)
            rc = -errno;
    }
    close(fd);
    if (rc == 0) /* the next tape_lock takes a token of this process */
        __atomic_store_n(&q->q_w.w_token, 0u, __ATOMIC_RELEASE);
    return rc;
}

/* Take the write lock for a change that is not an append (named tailers,
 * removing a cycle). A lock taken over from a dead writer is repaired by the
 * next append, which finds the generation the dead writer left odd. */
int tape_lock_meta(tape_queue *q)
{
    pthread_mutex_lock(&q->q_w.w_mu);
    int rc = tape_register_writer(q);
    pthread_mutex_unlock(&q->q_w.w_mu);
    if (rc < 0)
        return rc;
    int recovered;
    return tape_lock(q, &recovered);
}

/* 1 when the owner of token `tok` holds its liveness byte (base + tok) of
 * the file fd, or when that cannot be told; `self` is the caller's own. */
static int owner_alive(int fd, off_t base, uint32_t self, uint32_t tok)
{
    if (tok == self)
        return 1;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = base + tok, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return 1; /* cannot tell: keep waiting rather than break a live lock */
    return fl.l_type != F_UNLCK;
}

static int cas(uint32_t *w, uint32_t *expected, uint32_t desired)
{
    return __atomic_compare_exchange_n(w, expected, desired, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

int tape_lock(tape_queue *q, int *recovered)
{
    uint32_t e = 0;
    *recovered = 0;
    if (tape_meta_guarded(q, 0) < 0)
        return TAPE_ECORRUPT;
    uint32_t tok = __atomic_load_n(&q->q_w.w_token, __ATOMIC_ACQUIRE);
    if (__builtin_expect(!tok, 0)) { /* a fork child's first lock after tape_queue_after_fork */
        pthread_mutex_lock(&q->q_w.w_mu);
        int rc = tape_register_writer(q);
        pthread_mutex_unlock(&q->q_w.w_mu);
        if (rc < 0)
            return rc;
        tok = __atomic_load_n(&q->q_w.w_token, __ATOMIC_ACQUIRE);
    }
    if (!cas(&q->q_sh->ms_lock, &e, tok))
        tape_shlock_slow(&q->q_sh->ms_lock, q->q_meta_fd, TAPE_LIVE_BASE, tok, recovered);
    __atomic_store_n(&q->q_sh->ms_lock_pid, q->q_w.w_pid, __ATOMIC_RELAXED);
    /* (taking it faulted: the word taken is the zero page's, no lock) */
    return tape_meta_guarded(q, 0);
}

/* tape_set_wait_hooks: called around the sleeping half of a lock wait. */
static void (*wait_before)(void);
static void (*wait_after)(void);

void tape_set_wait_hooks(void (*before)(void), void (*after)(void))
{
    __atomic_store_n(&wait_after, after, __ATOMIC_RELAXED);
    __atomic_store_n(&wait_before, before, __ATOMIC_RELEASE);
}

/* The contended half of a shared lock word (the write lock's and a consumer
 * group's): spin a little, then sleep on the word, marked as having waiters;
 * every millisecond without progress, check that its owner still lives. */
void tape_shlock_slow(uint32_t *w, int fd, off_t base, uint32_t tok, int *recovered)
{
    uint32_t e;
    for (int i = 0; i < 200; i++) {
        cpu_relax();
        e = 0;
        if (__atomic_load_n(w, __ATOMIC_RELAXED) == 0 && cas(w, &e, tok))
            return;
    }
    void (*before)(void) = __atomic_load_n(&wait_before, __ATOMIC_ACQUIRE);
    void (*after)(void) = before ? __atomic_load_n(&wait_after, __ATOMIC_RELAXED) : NULL;
    if (before)
        before();
    for (;;) {
        e = __atomic_load_n(w, __ATOMIC_RELAXED);
        if (e == 0) {
            if (cas(w, &e, tok | TAPE_LOCK_WAITERS))
                break;
            continue;
        }
        if (!(e & TAPE_LOCK_WAITERS)) {
            if (!cas(w, &e, e | TAPE_LOCK_WAITERS))
                continue;
            e |= TAPE_LOCK_WAITERS;
        }
        struct timespec ts = {0, 1000000};
        if (tape_futex(w, FUTEX_WAIT, e, &ts) < 0 && errno == ETIMEDOUT &&
            !owner_alive(fd, base, tok, e & ~TAPE_LOCK_WAITERS)) {
            if (cas(w, &e, tok | TAPE_LOCK_WAITERS)) {
                *recovered = 1;
                break;
            }
        }
    }
    if (after)
        after();
}

void tape_shlock_release(uint32_t *w)
{
    uint32_t old = __atomic_exchange_n(w, 0, __ATOMIC_SEQ_CST);
    if (old & TAPE_LOCK_WAITERS)
        tape_futex(w, FUTEX_WAKE, 1, NULL);
}

void tape_unlock(tape_queue *q)
{
    tape_shlock_release(&q->q_sh->ms_lock);
}

/* After publishing (and unlocking): wake tailers sleeping in tape_wait. The
 * reader sets the sleepers bit and then looks for data; we published and then
 * look at the bit: with a full barrier on both sides one of us sees the
 * other. On x86 the unlock's locked exchange is that barrier. */
void tape_wake_readers(tape_queue *q)
{
#if !defined(__x86_64__) && !defined(__i386__)
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
    tape_meta_shared *sh = q->q_sh;
    uint32_t v = __atomic_load_n(&sh->ms_notify, __ATOMIC_SEQ_CST);
    if (v & TAPE_NOTIFY_SLEEPERS) {
        /* A new value (counter up, bit clear) also stops a sleeper that is
         * about to wait on the old one. */
        __atomic_store_n(&sh->ms_notify, (v + 1) & ~TAPE_NOTIFY_SLEEPERS, __ATOMIC_SEQ_CST);
        tape_futex(&sh->ms_notify, FUTEX_WAKE, INT_MAX, NULL);
    }
}

/* A read-only handle maps tape.meta read-only, so it could not announce
 * itself and would have to poll. Wherever this process may write tape.meta
 * it opens the file a second time, to write, and maps the shared page alone
 * from it: tape_wait then sleeps as on a writable queue. Nothing else is
 * written through that page. The second open must be of the file the handle
 * mapped (not one renamed over it since). */
void tape_wake_map(tape_queue *q)
{
    q->q_wake_map = NULL;
    q->q_wake_len = 0;
    if (!q->q_read_only) {
        q->q_wake = q->q_sh;
        return;
    }
    q->q_wake = NULL;
    int fd = openat(q->q_dirfd, TAPE_META_NAME, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return; /* no write permission, a read-only filesystem...: tape_wait polls */
    struct stat a, b;
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0 && fstat(fd, &a) == 0 && fstat(q->q_meta_fd, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino && a.st_size == TAPE_META_SIZE) {
        off_t off = (off_t)(TAPE_META_SHARED_OFF & ~((uint64_t)page - 1));
        size_t len = TAPE_META_SHARED_OFF - (size_t)off + TAPE_PAGE;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
        if (m != MAP_FAILED) {
            q->q_wake_map = m;
            q->q_wake_len = len;
            q->q_wake = (tape_meta_shared *)((uint8_t *)m + (TAPE_META_SHARED_OFF - (size_t)off));
        }
    }
    close(fd); /* the mapping stays */
}

void tape_wake_unmap(tape_queue *q)
{
    if (q->q_wake_map)
        munmap(q->q_wake_map, q->q_wake_len);
    q->q_wake_map = NULL;
    q->q_wake = NULL;
}

/* The reader's half (tape_wait): announce a sleeper by a bit the next
 * publishing writer clears (so a sleeper killed here costs writers one
 * wake-up, not one per append). The caller then looks for data once more,
 * and sleeps with tape_sleep_readers only if there is none; the full barrier
 * here pairs with the writer's in tape_wake_readers. Returns the word's value
 * to sleep on. */
uint32_t tape_announce_sleeper(tape_queue *q)
{
    tape_meta_shared *sh = q->q_wake;
    uint32_t seen = __atomic_fetch_or(&sh->ms_notify, TAPE_NOTIFY_SLEEPERS, __ATOMIC_SEQ_CST) |
                    TAPE_NOTIFY_SLEEPERS;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return seen;
}

/* Sleep until a writer changes the word from `seen` or timeout_ns passes
 * (negative: no limit). 0, or -EINTR when a signal arrived. */
int tape_sleep_readers(tape_queue *q, uint32_t seen, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    if (tape_futex(&q->q_wake->ms_notify, FUTEX_WAIT, seen, tsp) < 0 && errno == EINTR)
        return -EINTR;
    return 0;
}
