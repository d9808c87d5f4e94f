/* queue.c - the queue handle: opening (and creating) a queue directory,
 * closing it, what it says about itself, and the questions asked of all its
 * cycles at once (their entries, first and last index, removing one). */
#include "tape_int.h"
#include "fault.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Make the directory `path` and its missing parents. *made is the length of
 * the prefix of `path` naming the first directory this call made (0: none),
 * also when it fails: undo_mkdir removes them. */
static int mkdir_p(const char *path, size_t *made)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    *made = 0;
    if (n == 0 || n >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) == 0) {
            if (!*made)
                *made = i;
        } else if (errno != EEXIST) {
            return -errno;
        }
        buf[i] = c;
    }
    return 0;
}

/* After a failed open: remove the directories mkdir_p made (deepest first;
 * one that is not empty stays, and so do its parents). */
static void undo_mkdir(const char *path, size_t made)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (!made || n >= sizeof buf)
        return;
    memcpy(buf, path, n + 1);
    while (n >= made) {
        while (n > made && buf[n - 1] == '/') /* trailing slashes */
            buf[--n] = '\0';
        if (rmdir(buf) < 0)
            return;
        while (n > 0 && buf[n - 1] != '/')
            n--;
        if (n == 0)
            return;
        buf[--n] = '\0';
    }
}

int tape_open(const char *path, const tape_open_opts *opts, tape_queue **out)
{
    tape_open_opts none;
    memset(&none, 0, sizeof none);
    const tape_open_opts *o = opts ? opts : &none;
    const tape_roll_info *ri = tape_roll_find(o->oo_roll_cycle ? o->oo_roll_cycle : "daily");
    if (!ri)
        return TAPE_EROLLCYCLE;
    if ((o->oo_codec && (strlen(o->oo_codec) == 0 || strlen(o->oo_codec) >= TAPE_NAME_MAX)) ||
        o->oo_params_len > TAPE_PARAMS_MAX)
        return TAPE_EINVAL;

    /* A failed open leaves nothing behind: the directories it made and the
     * tape.meta it linked are removed (fail_dir). */
    int rc, made_meta = 0;
    size_t made_dir = 0;
    if (o->oo_create && !o->oo_read_only && (rc = mkdir_p(path, &made_dir)) < 0) {
        undo_mkdir(path, made_dir);
        return rc;
    }
    int dirfd = tf_openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (dirfd < 0) {
        rc = -errno;
        undo_mkdir(path, made_dir);
        return rc;
    }

    int fd = -1;
    for (int attempt = 0; attempt < 3 && fd < 0; attempt++) {
        fd = tf_openat(dirfd, TAPE_META_NAME, (o->oo_read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
        if (fd >= 0)
            break;
        rc = -errno;
        if (rc == -ENOENT && (!o->oo_create || o->oo_read_only) && tape_dir_is_empty(dirfd) == 0)
            rc = TAPE_ENOTQUEUE;
        if (rc != -ENOENT || !o->oo_create || o->oo_read_only)
            goto fail_dir;
        rc = tape_meta_create(dirfd, o, ri);
        if (rc == 1)
            made_meta = 1;
        /* A racing creator may have linked tape.meta after our emptiness
         * check saw its temporary file: look again before giving up. */
        if (rc < 0 && rc != TAPE_ENOTQUEUE)
            goto fail_dir;
    }
    if (fd < 0)
        goto fail_dir;

    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto fail_fd;
    }
    if (st.st_size != TAPE_META_SIZE) {
        rc = TAPE_ECORRUPT;
        goto fail_fd;
    }
    void *map = tf_mmap(NULL, TAPE_META_SIZE, PROT_READ | (o->oo_read_only ? 0 : PROT_WRITE), fd);
    if (map == MAP_FAILED) {
        rc = -errno;
        goto fail_fd;
    }
    /* Faults read in 4 KiB pages, not readahead's large ones (see write_all). */
    madvise(map, TAPE_META_SIZE, MADV_RANDOM);

    tape_queue *q = calloc(1, sizeof *q);
    char *p = strdup(path);
    if (!q || !p) {
        free(q);
        free(p);
        munmap(map, TAPE_META_SIZE);
        rc = -ENOMEM;
        goto fail_fd;
    }
    q->q_path = p;
    q->q_dirfd = dirfd;
    q->q_meta_fd = fd;
    q->q_meta = map;
    /* (a full registry: unguarded, as before the guard) */
    q->q_meta_guard = tape_guard_add(map, TAPE_META_SIZE);
    q->q_hdr = map;
    q->q_sh = (tape_meta_shared *)((uint8_t *)map + TAPE_META_SHARED_OFF);
    q->q_read_only = o->oo_read_only;
    q->q_small_pages = o->oo_small_pages;
    q->q_sync.sy_from = -1;
    pthread_mutex_init(&q->q_w.w_mu, NULL);
    pthread_mutex_init(&q->q_view.kv_mu, NULL);
    pthread_mutex_init(&q->q_sync.sy_mu, NULL);
    pthread_mutex_init(&q->q_cyc.cc_mu, NULL);
    tape_keys_init(q);
    tape_cyc_init(&q->q_view.kv_y);
    tape_cyc_init(&q->q_w.w_y);
    tape_clock_init(&q->q_w.w_clock);
    rc = tape_meta_guarded(q, tape_meta_validate(q, o));
    if (rc < 0) { /* (not one we made: it would be valid) */
        tape_close(q);
        return rc;
    }
    tape_wake_map(q);
    tape_keys_sweep(q);
    *out = q;
    return 0;

fail_fd:
    close(fd);
fail_dir:
    /* (a tape.meta made here and not opened yet, as far as this process
     * knows: another opening it in the microseconds between would lose it) */
    if (made_meta)
        unlinkat(dirfd, TAPE_META_NAME, 0);
    close(dirfd);
    undo_mkdir(path, made_dir);
    return rc;
}

int tape_queue_after_fork(tape_queue *q)
{
    /* The child has one thread: a lock that another thread of the parent
     * held at the fork (the prefaulter holds w_mu while it works) would stay
     * locked for ever. */
    pthread_mutex_init(&q->q_w.w_mu, NULL);
    pthread_mutex_init(&q->q_sync.sy_mu, NULL);
    pthread_mutex_init(&q->q_cyc.cc_mu, NULL);
    pthread_mutex_init(&q->q_view.kv_mu, NULL);
    pthread_mutex_init(&q->q_keys.kd_mu, NULL);
    /* Nor is the parent's prefaulter thread here: a writer gets its own
     * (else the child's writes would fault in every page themselves, keep
     * all they wrote resident, and nothing would notice a removed file). */
    int running = q->q_pf.pf_running;
    q->q_pf.pf_running = 0;
    atomic_store_explicit(&q->q_pf.pf_sleeping, 0, memory_order_relaxed);
    if (running) {
        int rc = tape_prefault_start(q);
        if (rc < 0)
            return rc;
    }
    return tape_meta_after_fork(q);
}

void tape_close(tape_queue *q)
{
    if (!q)
        return;
    tape_prefault_stop(q);
    tape_cyc_close(&q->q_w.w_y);
    tape_cyc_close(&q->q_view.kv_y);
    free(q->q_cyc.cc_list);
    tape_keys_close(q);
    tape_wake_unmap(q);
    tape_guard_remove(q->q_meta_guard);
    munmap(q->q_meta, TAPE_META_SIZE);
    close(q->q_meta_fd); /* drops our liveness lock */
    close(q->q_dirfd);
    pthread_mutex_destroy(&q->q_w.w_mu);
    pthread_mutex_destroy(&q->q_view.kv_mu);
    pthread_mutex_destroy(&q->q_sync.sy_mu);
    pthread_mutex_destroy(&q->q_cyc.cc_mu);
    free(q->q_path);
    free(q);
}

int tape_queue_info_get(tape_queue *q, tape_queue_info *out)
{
    const tape_meta_hdr *h = q->q_hdr;
    tape_meta_shared *sh = q->q_sh;
    memset(out, 0, sizeof *out);
    out->qi_version = h->m_version;
    memcpy(out->qi_roll_cycle, h->m_roll, TAPE_NAME_MAX);
    memcpy(out->qi_codec, h->m_codec, TAPE_NAME_MAX);
    out->qi_seq_bits = (int)h->m_seq_bits;
    out->qi_epoch_ms = h->m_epoch_ms;
    out->qi_created_ns = h->m_created_ns;
    out->qi_lowest_cycle = __atomic_load_n(&sh->ms_lowest, __ATOMIC_ACQUIRE);
    out->qi_highest_cycle = __atomic_load_n(&sh->ms_highest, __ATOMIC_ACQUIRE);
    out->qi_modcount = __atomic_load_n(&sh->ms_modcount, __ATOMIC_ACQUIRE);
    out->qi_last_timestamp = __atomic_load_n(&sh->ms_last_ts, __ATOMIC_ACQUIRE);
    out->qi_params_len = h->m_params_len;
    return 0;
}

int tape_queue_params(tape_queue *q, void *buf, uint32_t cap)
{
    uint32_t n = q->q_hdr->m_params_len;
    memcpy(buf, q->q_meta + TAPE_PARAMS_OFF, n < cap ? n : cap);
    return (int)n;
}

/* ---- queue-wide views of the cycles ------------------------------------- */

/* The kept view keeps mapped what its last walks read, up to this far
 * behind the end of data, and releases the rest when the end has moved twice
 * as far. */
#define VIEW_KEEP ((uint64_t)4 << 20)

/* The queue's kept view, holding kv_mu: the newest cycle's when `cycle`
 * is the newest, else NULL. A view of a cycle that is no longer the newest is
 * closed here, so that it does not keep the file's space once a purge removes
 * it. */
static tape_cyc *kept_view(tape_queue *q, int64_t cycle)
{
    int64_t newest = __atomic_load_n(&q->q_sh->ms_highest, __ATOMIC_ACQUIRE);
    tape_cyc *y = &q->q_view.kv_y;
    if (y->y_cycle >= 0 && y->y_cycle != newest)
        tape_cyc_close(y);
    if (cycle != newest)
        return NULL;
    if (y->y_cycle != cycle) {
        if (tape_cyc_open(q, cycle, 0, y) < 0)
            return NULL; /* the caller opens its own, and reports why */
        q->q_view.kv_trimmed = y->y_data_off;
    }
    return y;
}

int tape_cycle_info_get(tape_queue *q, int64_t cycle, tape_cycle_info *out)
{
    pthread_mutex_lock(&q->q_view.kv_mu);
    tape_cyc own, *y = kept_view(q, cycle);
    int kept = y != NULL, rc = 0;
    if (!kept) {
        pthread_mutex_unlock(&q->q_view.kv_mu);
        y = &own;
        rc = tape_cyc_open(q, cycle, 0, y);
    }
    uint64_t end = 0, count;
    uint32_t h;
    if (rc == 0)
        rc = tape_cyc_find_end(q, y, &end, &count, &h, NULL);
    /* (damaged entries, not a damaged header: then there is nothing to walk) */
    int damaged = rc == TAPE_ECORRUPT && y->y_cycle == cycle;
    if (damaged)
        rc = tape_cyc_header_walk(y, &end, &count, &h);
    if (rc == 0) {
        memset(out, 0, sizeof *out);
        out->ci_damaged = damaged;
        out->ci_cycle = cycle;
        out->ci_first_index = count ? tape_make_index(q, cycle, 0) : -1;
        out->ci_last_index = count ? tape_make_index(q, cycle, (int64_t)count - 1) : -1;
        out->ci_entries = count;
        out->ci_bytes = end - y->y_data_off;
        tape_view_cover(&y->y_v, UINT64_MAX); /* refresh the size */
        out->ci_file_bytes = y->y_v.v_size;
        out->ci_sealed = h == TAPE_H_EOF;
    }
    if (rc == 0 && tape_view_hit(&y->y_v)) /* a page faulted: zeros were read */
        rc = tape_view_damage(&y->y_v);
    if (!kept || rc < 0 || damaged) {
        /* (a damaged cycle's walk maps all of it: not worth keeping) */
        tape_cyc_close(y);
    } else if (end > q->q_view.kv_trimmed + 2 * VIEW_KEEP) {
        /* The end moves on as writers append: release the pages behind it,
         * all of them from the first entry on (the walks of earlier calls
         * may have mapped some below the last release). */
        tape_view_release(&y->y_v, y->y_data_off, end - VIEW_KEEP);
        q->q_view.kv_trimmed = end;
    }
    if (kept)
        pthread_mutex_unlock(&q->q_view.kv_mu);
    return rc;
}

/* Close the kept view if it is of `cycle` (about to be removed). */
static void drop_kept_view(tape_queue *q, int64_t cycle)
{
    pthread_mutex_lock(&q->q_view.kv_mu);
    if (q->q_view.kv_y.y_cycle == cycle)
        tape_cyc_close(&q->q_view.kv_y);
    pthread_mutex_unlock(&q->q_view.kv_mu);
}

int tape_remove_cycle(tape_queue *q, int64_t cycle)
{
    if (q->q_read_only)
        return TAPE_EREADONLY;
    char name[80];
    int rc = tape_cycle_name(q, cycle, name, sizeof name);
    if (rc < 0)
        return rc;
    if ((rc = tape_lock_meta(q)) < 0)
        return rc;
    int64_t *v;
    size_t n;
    rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0) {
        tape_unlock(q);
        return rc;
    }
    size_t at = n;
    for (size_t i = 0; i < n; i++)
        if (v[i] == cycle)
            at = i;
    if (at == n) {
        rc = -ENOENT;
    } else if (at == n - 1) {
        rc = TAPE_EINVAL; /* the newest cycle */
    } else {
        /* Nor the newest cycle holding entries. */
        for (size_t i = n; i-- > at && rc == 0;) {
            tape_cycle_info ci;
            int r = tape_cycle_info_get(q, v[i], &ci);
            if (r == 0 && ci.ci_entries) {
                if (i == at)
                    rc = TAPE_EINVAL;
                break;
            }
        }
    }
    if (rc == 0)
        drop_kept_view(q, cycle);
    if (rc == 0 && unlinkat(q->q_dirfd, name, 0) < 0)
        rc = -errno;
    if (rc == 0) {
        int64_t lowest = -1;
        for (size_t i = 0; i < n && lowest < 0; i++)
            if (v[i] != cycle)
                lowest = v[i];
        __atomic_store_n(&q->q_sh->ms_lowest, lowest, __ATOMIC_RELEASE);
        __atomic_fetch_add(&q->q_sh->ms_modcount, 1, __ATOMIC_RELEASE);
    }
    free(v);
    tape_unlock(q);
    return rc;
}

/* Walk the cycles in one direction and stop at the first holding entries. */
static int64_t edge_index(tape_queue *q, int last)
{
    int64_t *v;
    size_t n;
    int rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0)
        return rc;
    int64_t found = -1;
    for (size_t i = 0; i < n && found == -1; i++) {
        tape_cycle_info ci;
        rc = tape_cycle_info_get(q, v[last ? n - 1 - i : i], &ci);
        if (rc == -ENOENT) /* purged meanwhile */
            continue;
        if (rc < 0) {
            found = rc;
            break;
        }
        if (ci.ci_entries)
            found = last ? ci.ci_last_index : ci.ci_first_index;
    }
    free(v);
    return found;
}

int64_t tape_first_index(tape_queue *q)
{
    return edge_index(q, 0);
}

int64_t tape_last_index(tape_queue *q)
{
    return edge_index(q, 1);
}

int64_t tape_count(tape_queue *q)
{
    int64_t *v;
    size_t n;
    int rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0)
        return rc;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        tape_cycle_info ci;
        rc = tape_cycle_info_get(q, v[i], &ci);
        if (rc == -ENOENT)
            continue;
        if (rc < 0) {
            total = rc;
            break;
        }
        total += (int64_t)ci.ci_entries;
    }
    free(v);
    return total;
}
