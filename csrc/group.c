/* group.c - consumer groups (docs/FORMAT.md, "Consumer groups"): the group
 * file shared by every process of the group, its lock, the consumers'
 * liveness, and the claims, acks, nacks, extensions, rejections and dead
 * entries of its table of entries in flight. Entries are read from the log
 * through the caller's tailer (read.c). */
#include "tape_int.h"
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(tape_group_slot) == 48, "group slot layout");
_Static_assert(sizeof(tape_group_cons) == 64, "group consumer layout");
_Static_assert(sizeof(tape_group_later) == 32, "group later layout");
_Static_assert(offsetof(tape_group_shared, gs_defer) == 240 &&
               offsetof(tape_group_shared, gs_defer_n) == 384 &&
               offsetof(tape_group_shared, gs_move_slot) == 432 &&
               offsetof(tape_group_shared, gs_later_due) == 456, "group shared layout");
_Static_assert(sizeof(tape_group_shared) <= TAPE_PAGE, "group shared page");
_Static_assert(TAPE_GROUP_CONS_OFF + TAPE_GROUP_CONSUMERS * 64u <= TAPE_GROUP_SLOTS_OFF,
               "group consumers fit");

#define NEVER INT64_MAX
#define IDLE_RECHECK_NS 10000000 /* tape_group_wait_hint with nothing in flight */

/* now + d (d >= 0), saturated: a far delay is "never", not the past. */
static int64_t later(int64_t now, int64_t d)
{
    return now > INT64_MAX - d ? INT64_MAX : now + d;
}

/* ---- names and files --------------------------------------------------------- */

static int valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n < TAPE_NAME_MAX && name[0] != '.' && !strchr(name, '/');
}

static int valid_settings(const tape_group_settings *s)
{
    if (s->gset_ack_wait_ns <= 0 || s->gset_max_deliveries < 1 ||
        s->gset_nbackoff > TAPE_GROUP_BACKOFF)
        return 0;
    for (uint32_t i = 0; i < s->gset_nbackoff; i++)
        if (s->gset_backoff_ns[i] < 0)
            return 0;
    return 1;
}

static uint32_t settings_crc(const tape_group_settings *s)
{
    return tape_crc32c(0, s, sizeof *s);
}

static void file_name(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, TAPE_GROUP_DIR "/%s" TAPE_GROUP_SUFFIX, name);
}

/* Create the group file (1), or find that another process did first (0):
 * position `last`; `origin` the index asked for as its start (0 none). */
static int create_file(tape_queue *q, const char *name, int64_t last, int64_t origin,
                       const tape_group_settings *set)
{
    if (mkdirat(q->q_dirfd, TAPE_GROUP_DIR, 0777) < 0 && errno != EEXIST)
        return -errno;
    uint8_t *buf = calloc(1, TAPE_GROUP_SLOTS_OFF);
    if (!buf)
        return -ENOMEM;
    tape_group_hdr *h = (tape_group_hdr *)buf;
    memcpy(h->gh_magic, "TAPEGRUP", 8);
    h->gh_version = TAPE_GROUP_VERSION;
    h->gh_size = TAPE_GROUP_SIZE;
    h->gh_slots = TAPE_GROUP_SLOTS;
    h->gh_consumers = TAPE_GROUP_CONSUMERS;
    memcpy(h->gh_name, name, strlen(name));
    h->gh_created_ns = tape_now_ns();
    h->gh_crc = tape_crc32c(0, h, offsetof(tape_group_hdr, gh_crc));
    tape_group_shared *sh = (tape_group_shared *)(buf + TAPE_GROUP_SHARED_OFF);
    sh->gs_set = *set;
    sh->gs_settings_crc = settings_crc(set);
    sh->gs_last = last;
    sh->gs_origin = origin;
    sh->gs_min_due = NEVER;
    sh->gs_later_due = NEVER;

    char tmp[TAPE_NAME_MAX + 64], final[TAPE_NAME_MAX + 32];
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) < 0)
        r = (uint32_t)tape_now_ns();
    snprintf(tmp, sizeof tmp, TAPE_GROUP_DIR "/.%s.tmp.%d.%08x", name, (int)getpid(), r);
    file_name(final, sizeof final, name);
    int fd = tf_openat(q->q_dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0) {
        int rc = -errno;
        free(buf);
        return rc;
    }
    int rc = tape_file_alloc(fd, 0, TAPE_GROUP_SIZE);
    if (rc == 0 && pwrite(fd, buf, TAPE_GROUP_SLOTS_OFF, 0) != (ssize_t)TAPE_GROUP_SLOTS_OFF)
        rc = errno ? -errno : -EIO;
    free(buf);
    if (rc == 0 && tf_fsync(fd) < 0)
        rc = -errno;
    close(fd);
    int made = 0;
    if (rc == 0) {
        if (tf_linkat(q->q_dirfd, tmp, final) == 0)
            made = 1;
        else if (errno != EEXIST)
            rc = -errno;
    }
    unlinkat(q->q_dirfd, tmp, 0);
    if (rc == 0) {
        int d = openat(q->q_dirfd, TAPE_GROUP_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
            tf_fsync(d);
            close(d);
        }
    }
    return rc < 0 ? rc : made;
}

/* Every field that could send a call out of bounds or loop is checked: a
 * damaged file is reported, never trusted. */
static int validate_hdr(const tape_group_hdr *h, const char *name)
{
    if (memcmp(h->gh_magic, "TAPEGRUP", 8) != 0)
        return TAPE_ECORRUPT;
    if (h->gh_version < 1 || h->gh_version > TAPE_GROUP_VERSION)
        return TAPE_EVERSION;
    if (h->gh_size != (h->gh_version < 3 ? TAPE_GROUP_SIZE_V2 : TAPE_GROUP_SIZE) ||
        tape_crc32c(0, h, offsetof(tape_group_hdr, gh_crc)) != h->gh_crc ||
        h->gh_slots != TAPE_GROUP_SLOTS || h->gh_consumers != TAPE_GROUP_CONSUMERS ||
        strncmp(h->gh_name, name, TAPE_NAME_MAX) != 0)
        return TAPE_ECORRUPT;
    return 0;
}

static int validate(tape_group *g, const char *name)
{
    const tape_group_hdr *h = (const tape_group_hdr *)g->gp_map;
    int rc = validate_hdr(h, name);
    if (rc == TAPE_ECORRUPT) { /* caught between upgrade_hdr's two stores? */
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
        rc = validate_hdr(h, name);
    }
    if (rc < 0)
        return rc;
    const tape_group_shared *sh = g->gp_sh;
    if (settings_crc(&sh->gs_set) != sh->gs_settings_crc || !valid_settings(&sh->gs_set) ||
        sh->gs_hi > TAPE_GROUP_SLOTS || sh->gs_last < -1 || sh->gs_origin < 0 ||
        sh->gs_defer_sel > 1 || sh->gs_move > 2 ||
        (sh->gs_move && (sh->gs_move_slot >= TAPE_GROUP_SLOTS || sh->gs_move_later >= TAPE_GROUP_LATER)))
        return TAPE_ECORRUPT;
    const tape_group_defer *df = &sh->gs_defer[sh->gs_defer_sel];
    if (df->df_first < 0 || df->df_pass > 1 || df->df_pfirst < 0 ||
        (df->df_first && df->df_cursor < df->df_first - 1))
        return TAPE_ECORRUPT;
    for (uint32_t k = 0; k < TAPE_GROUP_SLOTS; k++) {
        const tape_group_slot *s = &g->gp_slots[k];
        if (s->gt_state > TAPE_GS_MOVING || s->gt_owner > TAPE_GROUP_CONSUMERS ||
            (s->gt_state != TAPE_GS_FREE && s->gt_index < 0))
            return TAPE_ECORRUPT;
    }
    for (uint32_t k = 0; k < TAPE_GROUP_CONSUMERS; k++)
        if (g->gp_cons[k].gc_state > 2)
            return TAPE_ECORRUPT;
    if (h->gh_version >= 3) {
        struct stat st;
        if (fstat(g->gp_fd, &st) < 0)
            return -errno;
        if (st.st_size != (off_t)TAPE_GROUP_SIZE)
            return TAPE_ECORRUPT;
        for (uint32_t j = 0; j < TAPE_GROUP_LATER; j++) {
            const tape_group_later *l = &g->gp_later[j];
            if (l->gl_state > 1 || (l->gl_state && l->gl_index < 0))
                return TAPE_ECORRUPT;
        }
    }
    return tape_guard_hit(g->gp_guard) ? TAPE_ECORRUPT : 0;
}

/* ---- the lock and liveness ------------------------------------------------------- */

static void repair(tape_group *g);

/* Take the group's lock as `tok` (whose byte fd holds), for process `pid`. */
static void lock(tape_group *g, int fd, uint32_t tok, pid_t pid)
{
    uint32_t e = 0;
    int recovered = 0;
    if (!__atomic_compare_exchange_n(&g->gp_sh->gs_lock, &e, tok, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        tape_shlock_slow(&g->gp_sh->gs_lock, fd, TAPE_LIVE_BASE, tok, &recovered);
    __atomic_store_n(&g->gp_sh->gs_lock_pid, (uint32_t)pid, __ATOMIC_RELAXED);
    if (recovered)
        repair(g);
}

static void unlock(tape_group *g)
{
    TAPE_KILL("group_unlock");
    tape_shlock_release(&g->gp_sh->gs_lock);
    if (g->gp_sync)
        msync(g->gp_map + TAPE_GROUP_SHARED_OFF, TAPE_GROUP_SIZE - TAPE_GROUP_SHARED_OFF, MS_SYNC);
}

/* Does the holder of token `tok` live? Asked through fd, which holds `self`'s
 * byte (a byte the asking file holds itself would read as free). */
static int alive(int fd, uint32_t self, uint32_t tok)
{
    if (tok == self)
        return 1;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                       .l_start = TAPE_LIVE_BASE + tok, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return 1;
    return fl.l_type != F_UNLCK;
}

/* Take the byte of a consumer slot whose holder is gone: its token, or 0 when
 * none is free. The caller then locks and adopts the slot (adopt). */
static uint32_t take_byte(tape_group *g, int fd)
{
    for (uint32_t k = 0; k < TAPE_GROUP_CONSUMERS; k++) {
        uint32_t tok = k + 1;
        if (__atomic_load_n(&g->gp_cons[k].gc_state, __ATOMIC_RELAXED) != 0 &&
            alive(fd, 0, tok))
            continue;
        /* Not a dead owner's token still in the lock word: we would wait for
         * ourselves. */
        if ((__atomic_load_n(&g->gp_sh->gs_lock, __ATOMIC_RELAXED) & ~TAPE_LOCK_WAITERS) == tok)
            continue;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
                           .l_start = TAPE_LIVE_BASE + tok, .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
            return tok;
    }
    return 0;
}

/* The group handle takes a byte only while it holds the lock (so that an
 * open group takes no consumer slot): a dead consumer's slot it lands on is
 * reaped. 0, or TAPE_ELIMIT when every slot is in use. */
static void release_owner(tape_group *g, uint32_t tok);

static int group_lock(tape_group *g)
{
    uint32_t tok = take_byte(g, g->gp_fd);
    if (!tok)
        return TAPE_ELIMIT;
    g->gp_token = tok;
    lock(g, g->gp_fd, tok, getpid());
    release_owner(g, tok);
    __atomic_store_n(&g->gp_cons[tok - 1].gc_state, 0u, __ATOMIC_RELEASE);
    return 0;
}

static void group_unlock(tape_group *g)
{
    unlock(g);
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET,
                       .l_start = TAPE_LIVE_BASE + g->gp_token, .l_len = 1};
    fcntl(g->gp_fd, F_OFD_SETLK, &fl);
    g->gp_token = 0;
}

/* A fault in the mapping (the file was truncated under it): what it reads is
 * not to be believed. */
static int damaged(const tape_group *g)
{
    return tape_guard_hit(g->gp_guard);
}

/* ---- the table ---------------------------------------------------------------------- */

static void free_slot(tape_group *g, uint32_t k)
{
    tape_group_shared *sh = g->gp_sh;
    tape_group_slot *s = &g->gp_slots[k];
    if (s->gt_state == TAPE_GS_DEAD || s->gt_state == TAPE_GS_MOVING)
        sh->gs_dead--;
    __atomic_store_n(&s->gt_state, (uint32_t)TAPE_GS_FREE, __ATOMIC_RELEASE);
    s->gt_owner = 0;
    sh->gs_busy--;
    if (k < sh->gs_free_hint)
        sh->gs_free_hint = k;
    while (sh->gs_hi > 0 && g->gp_slots[sh->gs_hi - 1].gt_state == TAPE_GS_FREE)
        sh->gs_hi--;
}

/* A free slot, taken (state still FREE: the caller fills it, state last), or
 * -1 when the table is full. */
static int64_t alloc_slot(tape_group *g)
{
    tape_group_shared *sh = g->gp_sh;
    for (uint32_t k = sh->gs_free_hint; k < TAPE_GROUP_SLOTS; k++) {
        if (g->gp_slots[k].gt_state != TAPE_GS_FREE)
            continue;
        sh->gs_free_hint = k + 1;
        if (k >= sh->gs_hi)
            sh->gs_hi = k + 1;
        sh->gs_busy++;
        return k;
    }
    return -1;
}

static void set_state(tape_group_slot *s, uint32_t state)
{
    __atomic_store_n(&s->gt_state, state, __ATOMIC_RELEASE);
}

/* The owner stays: the last consumer, for the dead letter's provenance. */
static void make_dead(tape_group *g, tape_group_slot *s, uint32_t reason)
{
    s->gt_reason = reason;
    s->gt_due = (int64_t)++g->gp_sh->gs_gen; /* the death's id, kept until stored */
    set_state(s, TAPE_GS_DEAD);
    g->gp_sh->gs_dead++;
}

static void due_at(tape_group *g, int64_t t)
{
    if (t < g->gp_sh->gs_min_due)
        g->gp_sh->gs_min_due = t;
}

/* ---- deferred entries ------------------------------------------------------------
 * An entry not yet due when the position passes it waits in the table while
 * half of the table is free. Past that it stays in the log only, in the
 * deferred range (tape_group_defer), so that any number of them holds back
 * nothing and the table stays bounded. When the earliest of them is due, a
 * pass walks the range and moves those due by the pass's start into the table
 * (waiting, due), as room allows; meanwhile the position defers every entry
 * whose not_before exceeds df_lo, so that one rule tells the range's deferred
 * entries from those handed out. */

#define GR_DEFERRED 3u                                   /* gt_reason: moved by the pass under way */
#define DEFER_ROOM (TAPE_GROUP_SLOTS / 2)                 /* waiting entries before any is deferred */
#define PASS_ROOM (TAPE_GROUP_SLOTS - TAPE_GROUP_SLOTS / 8) /* a pass fills the table up to this */

static const tape_group_defer *defer_cur(const tape_group_shared *sh)
{
    return &sh->gs_defer[sh->gs_defer_sel & 1];
}

static const tape_group_defer_n *defer_cur_n(const tape_group_shared *sh)
{
    return &sh->gs_defer_n[sh->gs_defer_sel & 1];
}

/* The copy to change (then defer_commit), filled from the current one; its
 * count is the same copy's of gs_defer_n (defer_next_n). */
static tape_group_defer *defer_next(tape_group_shared *sh)
{
    uint32_t cur = sh->gs_defer_sel & 1;
    sh->gs_defer[cur ^ 1] = sh->gs_defer[cur];
    sh->gs_defer_n[cur ^ 1] = sh->gs_defer_n[cur];
    return &sh->gs_defer[cur ^ 1];
}

static tape_group_defer_n *defer_next_n(tape_group_shared *sh)
{
    return &sh->gs_defer_n[(sh->gs_defer_sel & 1) ^ 1];
}

static void count_down(tape_group_defer_n *dn)
{
    if (dn->dn_count > 0) /* a range begun before the count is counted from its next pass */
        dn->dn_count--;
}

static void defer_commit(tape_group_shared *sh)
{
    __atomic_store_n(&sh->gs_defer_sel, (sh->gs_defer_sel & 1) ^ 1, __ATOMIC_RELEASE);
}

/* Does the file hold the later list (version 3)? */
static int later_on(const tape_group *g)
{
    return __atomic_load_n(&((const tape_group_hdr *)g->gp_map)->gh_version, __ATOMIC_ACQUIRE) >= 3;
}

/* A file of version 1 or 2 (older releases know no deferred range, or no
 * later list) becomes version 3 before its first deferred or nacked-for-later
 * entry, so that such a release refuses it rather than skip those entries:
 * grown to hold the later list (zeros) and synced, then its header written.
 * Holding the lock; an opener that reads the header between the stores looks
 * again (validate). 0, or -errno of growing the file (nothing changed). */
static int upgrade(tape_group *g)
{
    tape_group_hdr *h = (tape_group_hdr *)g->gp_map;
    if (later_on(g))
        return 0;
    struct stat st;
    if (fstat(g->gp_fd, &st) < 0)
        return -errno;
    if (st.st_size < (off_t)TAPE_GROUP_SIZE) {
        int rc = tape_file_alloc(g->gp_fd, TAPE_GROUP_SIZE_V2, TAPE_GROUP_SIZE - TAPE_GROUP_SIZE_V2);
        if (rc < 0)
            return rc;
    }
    if (tf_fsync(g->gp_fd) < 0)
        return -errno;
    tape_group_shared *sh = g->gp_sh;
    sh->gs_later_n = sh->gs_later_hi = sh->gs_later_free = 0;
    sh->gs_later_due = NEVER;
    tape_group_hdr copy = *h;
    copy.gh_version = TAPE_GROUP_VERSION;
    copy.gh_size = TAPE_GROUP_SIZE;
    uint32_t crc = tape_crc32c(0, &copy, offsetof(tape_group_hdr, gh_crc));
    TAPE_KILL("group_upgrade");
    __atomic_store_n(&h->gh_size, (uint32_t)TAPE_GROUP_SIZE, __ATOMIC_RELAXED);
    __atomic_store_n(&h->gh_version, (uint32_t)TAPE_GROUP_VERSION, __ATOMIC_RELEASE);
    __atomic_store_n(&h->gh_crc, crc, __ATOMIC_RELEASE);
    return 0;
}

/* The position passes entry `index`, not due before nb: 1 when it is
 * deferred (recorded; the caller moves the position past it), else 0. */
static int defer(tape_group *g, int64_t index, int64_t nb, int64_t now)
{
    tape_group_shared *sh = g->gp_sh;
    const tape_group_defer *cur = defer_cur(sh);
    if (cur->df_first ? nb <= cur->df_lo : (nb <= now || sh->gs_busy < DEFER_ROOM))
        return 0;
    if (cur->df_first && index < defer_cur_n(sh)->dn_last)
        return 1; /* counted in by a holder killed before it moved the position */
    if (!cur->df_first && upgrade(g) < 0)
        return 0; /* no room on the disk for the later list: it waits in the table */
    tape_group_defer *df = defer_next(sh);
    tape_group_defer_n *dn = defer_next_n(sh);
    if (!df->df_first) {
        memset(df, 0, sizeof *df);
        memset(dn, 0, sizeof *dn);
        df->df_first = index + 1;
        df->df_cursor = index;
        df->df_lo = now;
        df->df_due = nb;
    }
    if (nb < df->df_due)
        df->df_due = nb;
    dn->dn_count++;
    dn->dn_last = index + 1;
    defer_commit(sh);
    return 1;
}

/* Holding the lock, when a deferred entry may be due: walk the range from
 * where the pass stands with tailer t, moving into the table the entries due
 * by the pass's start, until the table is full enough (the pass stands there)
 * or the walk reaches the position (the pass is over: the range becomes what
 * it left deferred). 0, or an error. */
static int pass(tape_consumer *c, tape_tailer *t, int64_t now)
{
    tape_group *g = c->cn_g;
    tape_group_shared *sh = g->gp_sh;
    const tape_group_defer *cur = defer_cur(sh);
    if (!cur->df_first || (!cur->df_pass && cur->df_due > now) || sh->gs_busy >= PASS_ROOM)
        return 0;
    tape_group_defer *df = defer_next(sh);
    if (!df->df_pass) {
        for (uint32_t k = 0; k < sh->gs_hi; k++)
            if (g->gp_slots[k].gt_reason == GR_DEFERRED)
                g->gp_slots[k].gt_reason = TAPE_GR_NONE;
        df->df_pass = 1;
        df->df_hi = now;
        df->df_cursor = df->df_first - 1;
        df->df_pfirst = 0;
        df->df_pdue = NEVER;
        df->df_dupe = 0;
        defer_next_n(sh)->dn_pcount = 0;
        defer_commit(sh);
        df = defer_next(sh);
    }
    tape_group_defer_n *dn = defer_next_n(sh);
    c->cn_after = -2;
    int64_t last = sh->gs_last, at = df->df_cursor;
    int rc = tape_tailer_seek(t, at), over = 0;
    tape_entry e;
    while (rc >= 0 && sh->gs_busy < PASS_ROOM) {
        rc = tape_read(t, &e);
        if (rc <= 0 || e.e_index > last) {
            over = rc >= 0;
            break;
        }
        at = e.e_index + 1;
        int64_t nb = e.e_attrs.a_not_before;
        if (e.e_index + 1 == df->df_dupe) {
            /* moved by a holder killed before it moved the cursor: in the
             * table, or handed out and finished since */
            df->df_dupe = 0;
            count_down(dn);
        } else if (nb <= df->df_lo) {
            /* handed out when the position passed it */
        } else if (nb > df->df_hi) { /* still deferred */
            if (!df->df_pfirst)
                df->df_pfirst = e.e_index + 1;
            if (nb < df->df_pdue)
                df->df_pdue = nb;
            dn->dn_pcount++;
        } else {
            int64_t k = alloc_slot(g);
            if (k < 0) { /* the counts disagree with the table: put right, stop here */
                repair(g);
                at = e.e_index;
                break;
            }
            tape_group_slot *s = &g->gp_slots[k];
            s->gt_index = e.e_index;
            s->gt_dl = -1;
            s->gt_attempt = 0;
            s->gt_reason = GR_DEFERRED;
            s->gt_owner = 0;
            s->gt_due = nb;
            set_state(s, TAPE_GS_READY);
            due_at(g, nb);
            TAPE_KILL("group_pass");
            count_down(dn);
        }
        /* Past each entry the cursor moves at once, with what the walk
         * learnt: a holder killed leaves at most the entry it moved ahead of
         * the cursor, the first the walk reads again (repair names it). */
        df->df_cursor = at;
        defer_commit(sh);
        df = defer_next(sh);
        dn = defer_next_n(sh);
    }
    if (rc < 0)
        return rc;
    if (over) { /* the walk reached the position */
        int64_t first = df->df_pfirst, due = df->df_pdue, lo = df->df_hi;
        memset(df, 0, sizeof *df);
        dn->dn_count = first ? dn->dn_pcount : 0; /* exact again, whatever came before */
        dn->dn_pcount = 0;
        if (first) {
            df->df_first = first;
            df->df_cursor = first - 1;
            df->df_lo = lo;
            df->df_due = due;
        }
    } else {
        df->df_cursor = at;
    }
    defer_commit(sh);
    return 0;
}

/* ---- entries nacked for later ------------------------------------------------------
 * An entry nacked with a delay leaves the table for the later list (its
 * index, due time, deliveries so far, dead letter copy), so that any number
 * of them up to TAPE_GROUP_LATER holds back nothing; past that the nack is
 * refused (TAPE_ELIMIT) and changes nothing. When one is due, a claim moves
 * it back into the table (waiting, due), as room allows, before it looks at
 * new entries. A move writes the destination's fields, names both slots and
 * its direction (gs_move, last), writes the two states, then clears gs_move:
 * the next holder after one killed in the middle finishes it (repair). */

#define MOVE_OUT 1u /* a table slot into the later list */
#define MOVE_IN 2u  /* a later slot back into the table */

/* The two states of the move named by gs_move (again: idempotent). */
static void move_states(tape_group *g)
{
    tape_group_shared *sh = g->gp_sh;
    tape_group_slot *s = &g->gp_slots[sh->gs_move_slot];
    tape_group_later *l = &g->gp_later[sh->gs_move_later];
    if (sh->gs_move == MOVE_OUT) {
        __atomic_store_n(&l->gl_state, 1u, __ATOMIC_RELEASE);
        s->gt_owner = 0;
        set_state(s, TAPE_GS_FREE);
    } else {
        set_state(s, TAPE_GS_READY);
        __atomic_store_n(&l->gl_state, 0u, __ATOMIC_RELEASE);
    }
}

/* gs_moves goes odd before a move and even after it: a reader without the
 * lock (info) that saw it even and unchanged around its walk saw no entry
 * between the two places; odd and unchanged, only the move named by gs_move. */
static void moves_tick(tape_group_shared *sh)
{
    __atomic_store_n(&sh->gs_moves, __atomic_load_n(&sh->gs_moves, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}

static void move_begin(tape_group *g, uint32_t k, uint32_t j, uint32_t dir)
{
    tape_group_shared *sh = g->gp_sh;
    if (!(__atomic_load_n(&sh->gs_moves, __ATOMIC_RELAXED) & 1))
        moves_tick(sh);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    sh->gs_move_slot = k;
    sh->gs_move_later = j;
    __atomic_store_n(&sh->gs_move, dir, __ATOMIC_RELEASE);
}

static void move_end(tape_group *g)
{
    __atomic_store_n(&g->gp_sh->gs_move, 0u, __ATOMIC_RELEASE);
    if (__atomic_load_n(&g->gp_sh->gs_moves, __ATOMIC_RELAXED) & 1)
        moves_tick(g->gp_sh);
}

/* The later list's counts and bounds, from its slots. */
static void later_recount(tape_group *g)
{
    tape_group_shared *sh = g->gp_sh;
    uint32_t n = 0, hi = 0;
    int64_t due = NEVER;
    for (uint32_t j = 0; j < TAPE_GROUP_LATER; j++) {
        const tape_group_later *l = &g->gp_later[j];
        if (!l->gl_state)
            continue;
        n++;
        hi = j + 1;
        if (l->gl_due < due)
            due = l->gl_due;
    }
    sh->gs_later_n = n;
    sh->gs_later_hi = hi;
    sh->gs_later_free = 0;
    sh->gs_later_due = due;
}

/* Holding the lock: claimed slot k (s) leaves the table for the later list,
 * due at `due`. 0, TAPE_ELIMIT when the list is full, or -errno of making
 * the file version 3 (nothing changed then). */
static int later_put(tape_group *g, uint32_t k, tape_group_slot *s, int64_t due)
{
    tape_group_shared *sh = g->gp_sh;
    int rc = upgrade(g);
    if (rc < 0)
        return rc;
    uint32_t j = sh->gs_later_free;
    while (j < TAPE_GROUP_LATER && g->gp_later[j].gl_state)
        j++;
    if (j >= TAPE_GROUP_LATER)
        return TAPE_ELIMIT;
    tape_group_later *l = &g->gp_later[j];
    l->gl_index = s->gt_index;
    l->gl_due = due;
    l->gl_dl = s->gt_dl;
    l->gl_attempt = s->gt_attempt;
    move_begin(g, k, j, MOVE_OUT);
    TAPE_KILL("group_later_out");
    move_states(g);
    free_slot(g, k); /* the counts (its state is FREE already) */
    sh->gs_later_n++;
    sh->gs_later_free = j + 1;
    if (j >= sh->gs_later_hi)
        sh->gs_later_hi = j + 1;
    if (due < sh->gs_later_due)
        sh->gs_later_due = due;
    move_end(g);
    return 0;
}

/* How many later entries are due at `now` with an index at most `upto`. */
static uint32_t later_due_upto(const tape_group *g, int64_t now, int64_t upto)
{
    uint32_t n = 0;
    for (uint32_t j = 0; j < g->gp_sh->gs_later_hi; j++) {
        const tape_group_later *l = &g->gp_later[j];
        n += l->gl_state && l->gl_due <= now && l->gl_index <= upto;
    }
    return n;
}

/* May a later entry be due at `now`? (Then no new entry is read: due
 * redeliveries come first.) */
static int later_due(const tape_group *g, int64_t now)
{
    return later_on(g) && g->gp_sh->gs_later_due <= now;
}

/* Holding the lock: later slot j back into the table (waiting, due). 0, or
 * -1 when the table's counts were wrong (put right: no more moves now). */
static int later_in(tape_group *g, uint32_t j)
{
    tape_group_shared *sh = g->gp_sh;
    tape_group_later *l = &g->gp_later[j];
    int64_t k = alloc_slot(g);
    if (k < 0) {
        repair(g);
        return -1;
    }
    tape_group_slot *s = &g->gp_slots[k];
    s->gt_index = l->gl_index;
    s->gt_dl = l->gl_dl;
    s->gt_attempt = l->gl_attempt;
    s->gt_reason = TAPE_GR_NONE;
    s->gt_owner = 0;
    s->gt_gen = ++sh->gs_gen;
    s->gt_due = l->gl_due;
    move_begin(g, (uint32_t)k, j, MOVE_IN);
    TAPE_KILL("group_later_in");
    move_states(g);
    due_at(g, l->gl_due);
    sh->gs_later_n--;
    if (j < sh->gs_later_free)
        sh->gs_later_free = j;
    move_end(g);
    return 0;
}

/* The later slot of the due entry with the lowest index, or -1 none. */
static int64_t later_oldest_due(const tape_group *g, int64_t now)
{
    int64_t best = -1;
    for (uint32_t j = 0; j < g->gp_sh->gs_later_hi; j++) {
        const tape_group_later *l = &g->gp_later[j];
        if (l->gl_state && l->gl_due <= now && (best < 0 || l->gl_index < g->gp_later[best].gl_index))
            best = j;
    }
    return best;
}

/* Holding the lock: the later entries due at `now` back into the table, as
 * room allows; when more are due than there is room for, the oldest (with
 * little room one at a time, else all up to the index at which they fit). */
static void later_take(tape_group *g, int64_t now)
{
    tape_group_shared *sh = g->gp_sh;
    if (!later_due(g, now) || sh->gs_busy >= TAPE_GROUP_SLOTS)
        return;
    int64_t upto = INT64_MAX;
    uint32_t room = TAPE_GROUP_SLOTS - sh->gs_busy;
    if (later_due_upto(g, now, INT64_MAX) > room) {
        if (room < 64) {
            int64_t j;
            while (sh->gs_busy < TAPE_GROUP_SLOTS && (j = later_oldest_due(g, now)) >= 0)
                if (later_in(g, (uint32_t)j) < 0)
                    return;
            later_recount(g);
            return;
        }
        /* the highest index up to which the due ones fit */
        int64_t lo = -1, hi = INT64_MAX - 1;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2 + 1;
            if (later_due_upto(g, now, mid) <= room)
                lo = mid;
            else
                hi = mid - 1;
        }
        upto = lo;
        if (!later_due_upto(g, now, upto)) { /* copies of one entry (redriven twice): some of them */
            upto = INT64_MAX;
            for (uint32_t j = 0; j < sh->gs_later_hi; j++) {
                const tape_group_later *l = &g->gp_later[j];
                if (l->gl_state && l->gl_due <= now && l->gl_index < upto)
                    upto = l->gl_index;
            }
        }
    }
    int64_t due = NEVER;
    uint32_t hi = 0;
    for (uint32_t j = 0; j < sh->gs_later_hi; j++) {
        tape_group_later *l = &g->gp_later[j];
        if (!l->gl_state)
            continue;
        if (l->gl_due > now || l->gl_index > upto || sh->gs_busy >= TAPE_GROUP_SLOTS) {
            hi = j + 1;
            if (l->gl_due < due)
                due = l->gl_due;
            continue;
        }
        if (later_in(g, j) < 0)
            return;
    }
    sh->gs_later_hi = hi;
    sh->gs_later_due = due;
}

/* Every entry the holder of `tok` has: handed out again at once (moving a
 * dead one: dead again, for another to move). */
static void release_owner(tape_group *g, uint32_t tok)
{
    for (uint32_t k = 0; k < g->gp_sh->gs_hi; k++) {
        tape_group_slot *s = &g->gp_slots[k];
        if (s->gt_owner != tok)
            continue;
        if (s->gt_state == TAPE_GS_CLAIMED) {
            s->gt_due = 0;
            s->gt_owner = 0;
            set_state(s, TAPE_GS_READY);
            due_at(g, 0);
        } else if (s->gt_state == TAPE_GS_MOVING) {
            s->gt_owner = 0;
            set_state(s, TAPE_GS_DEAD);
        }
    }
}

/* After a holder of the lock died: the counts and bounds are brought back to
 * the table (each change writes the slot first, the position last, so that a
 * change cut short loses nothing; the position may lag an entry it took). */
static void repair(tape_group *g)
{
    tape_group_shared *sh = g->gp_sh;
    if (later_on(g)) {
        if (sh->gs_move) /* a move between the table and the later list, cut short */
            move_states(g);
        move_end(g);
        later_recount(g);
    }
    uint32_t busy = 0, dead = 0, hi = 0;
    int64_t min_due = NEVER;
    for (uint32_t k = 0; k < TAPE_GROUP_SLOTS; k++) {
        tape_group_slot *s = &g->gp_slots[k];
        if (s->gt_state == TAPE_GS_FREE)
            continue;
        busy++;
        hi = k + 1;
        if (s->gt_state == TAPE_GS_DEAD || s->gt_state == TAPE_GS_MOVING)
            dead++;
        else if (s->gt_due < min_due)
            min_due = s->gt_due;
        if (s->gt_dl < 0 && s->gt_index > sh->gs_last)
            sh->gs_last = s->gt_index;
    }
    sh->gs_busy = busy;
    sh->gs_dead = dead;
    sh->gs_hi = hi;
    sh->gs_free_hint = 0;
    sh->gs_min_due = min_due;
    /* A pass's holder killed between moving an entry and moving the cursor
     * (one entry at most, the last it moved): the pass skips that entry when
     * it walks there again, whatever became of its slot by then. */
    if (defer_cur(sh)->df_pass) {
        int64_t top = 0;
        for (uint32_t k = 0; k < hi; k++) {
            const tape_group_slot *s = &g->gp_slots[k];
            if (s->gt_state != TAPE_GS_FREE && s->gt_reason == GR_DEFERRED && s->gt_dl < 0 &&
                s->gt_index + 1 > top)
                top = s->gt_index + 1;
        }
        if (top > defer_cur(sh)->df_cursor) {
            defer_next(sh)->df_dupe = top;
            defer_commit(sh);
        }
    }
}

/* Dead consumers' entries handed out again, their slots freed. */
static void reap(tape_group *g, int fd, uint32_t self)
{
    for (uint32_t k = 0; k < TAPE_GROUP_CONSUMERS; k++) {
        tape_group_cons *gc = &g->gp_cons[k];
        if (gc->gc_state == 0 || alive(fd, self, k + 1))
            continue;
        release_owner(g, k + 1);
        __atomic_store_n(&gc->gc_state, 0u, __ATOMIC_RELEASE);
    }
}

/* Take consumer slot tok - 1 (its byte held through fd) under the lock. */
static void adopt(tape_group *g, uint32_t tok, const char *name, uint32_t state)
{
    tape_group_cons *gc = &g->gp_cons[tok - 1];
    release_owner(g, tok); /* a dead holder's leftovers */
    memset(gc->gc_name, 0, TAPE_NAME_MAX);
    if (name)
        memcpy(gc->gc_name, name, strlen(name));
    gc->gc_pid = (uint32_t)getpid();
    __atomic_store_n(&gc->gc_state, state, __ATOMIC_RELEASE);
}

/* ---- opening ------------------------------------------------------------------------ */

static const tape_group_settings DEFAULTS = {
    .gset_ack_wait_ns = 30000000000LL, .gset_max_deliveries = 5, .gset_nbackoff = 0,
};

static int map_file(tape_group *g, const char *name)
{
    struct stat st;
    if (fstat(g->gp_fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) ||
        (st.st_size != (off_t)TAPE_GROUP_SIZE && st.st_size != (off_t)TAPE_GROUP_SIZE_V2))
        return TAPE_ECORRUPT;
    int prot = g->gp_read_only ? PROT_READ : PROT_READ | PROT_WRITE;
    void *m = tf_mmap(NULL, TAPE_GROUP_SIZE, prot, g->gp_fd);
    if (m == MAP_FAILED)
        return -errno;
    g->gp_map = m;
    g->gp_sh = (tape_group_shared *)(g->gp_map + TAPE_GROUP_SHARED_OFF);
    g->gp_cons = (tape_group_cons *)(g->gp_map + TAPE_GROUP_CONS_OFF);
    g->gp_slots = (tape_group_slot *)(g->gp_map + TAPE_GROUP_SLOTS_OFF);
    /* Mapped whole even where an older file ends: read only from version 3,
     * which another process may make it (grown first) while this one has it. */
    g->gp_later = (tape_group_later *)(g->gp_map + TAPE_GROUP_LATER_OFF);
    int slot = tape_guard_add(g->gp_map, TAPE_GROUP_SIZE);
    if (slot < 0)
        return slot;
    g->gp_guard = slot;
    return validate(g, name);
}

/* Holding the lock: a position beyond the end of the data (made durable ahead
 * of entries a power cut lost) is brought back to the end, and the entries
 * in flight past it, which are gone, are forgotten. */
static int clamp(tape_group *g)
{
    int64_t last = tape_last_index(g->gp_q);
    if (last < -1)
        return (int)last;
    tape_group_shared *sh = g->gp_sh;
    if (sh->gs_origin - 1 > last) /* created at an index beyond the end: it starts there */
        last = sh->gs_origin - 1;
    if (sh->gs_last <= last)
        return 0;
    for (uint32_t k = 0; k < sh->gs_hi; k++) {
        tape_group_slot *s = &g->gp_slots[k];
        if (s->gt_state != TAPE_GS_FREE && s->gt_dl < 0 && s->gt_index > last)
            free_slot(g, k);
    }
    if (later_on(g)) {
        for (uint32_t j = 0; j < sh->gs_later_hi; j++) {
            tape_group_later *l = &g->gp_later[j];
            if (l->gl_state && l->gl_dl < 0 && l->gl_index > last)
                __atomic_store_n(&l->gl_state, 0u, __ATOMIC_RELEASE);
        }
        later_recount(g);
    }
    const tape_group_defer *cur = &sh->gs_defer[sh->gs_defer_sel];
    if (cur->df_first) {
        tape_group_defer *df = defer_next(sh);
        tape_group_defer_n *dn = defer_next_n(sh);
        if (df->df_first - 1 > last) {
            memset(df, 0, sizeof *df);
            memset(dn, 0, sizeof *dn);
        } else if (df->df_cursor > last + 1) {
            df->df_cursor = last + 1;
        }
        if (dn->dn_last > last + 1)
            dn->dn_last = last + 1;
        defer_commit(sh);
    }
    sh->gs_last = last;
    return 0;
}

int tape_group_open(tape_queue *q, const char *name, int64_t start, const tape_group_settings *set,
                    int sync, tape_group **out)
{
    if (!valid_name(name) || start < -3 || (set && !valid_settings(set)))
        return TAPE_EINVAL;
    char path[TAPE_NAME_MAX + 32];
    file_name(path, sizeof path, name);
    tape_group *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->gp_q = q;
    g->gp_guard = -1;
    g->gp_sync = sync;
    g->gp_read_only = q->q_read_only;
    int rc = 0;
    for (int tries = 0; tries < 2; tries++) {
        g->gp_fd = tf_openat(q->q_dirfd, path, (g->gp_read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
        if (g->gp_fd >= 0 || errno != ENOENT || g->gp_read_only || tries || start == -3)
            break;
        int64_t last = -1;
        if (start == -2 && (last = tape_last_index(q)) < -1) {
            rc = (int)last;
            break;
        }
        if (start >= 0)
            last = start - 1;
        if ((rc = create_file(q, name, last, start > 0 ? start : 0, set ? set : &DEFAULTS)) < 0)
            break;
        rc = 0;
    }
    if (rc == 0 && g->gp_fd < 0)
        rc = -errno;
    if (rc == 0)
        rc = map_file(g, name);
    if (rc == 0 && !g->gp_read_only)
        rc = group_lock(g);
    if (rc == 0 && !g->gp_read_only) {
        repair(g); /* the derived counts and bounds: a damaged one would stop every claim */
        if (set) {
            g->gp_sh->gs_set = *set;
            g->gp_sh->gs_settings_crc = settings_crc(set);
        }
        rc = clamp(g);
        group_unlock(g);
    }
    if (rc < 0) {
        tape_group_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

void tape_group_close(tape_group *g)
{
    if (!g)
        return;
    tape_guard_remove(g->gp_guard);
    if (g->gp_map)
        munmap(g->gp_map, TAPE_GROUP_SIZE);
    if (g->gp_fd >= 0)
        close(g->gp_fd);
    free(g);
}

int tape_group_settings_set(tape_group *g, const tape_group_settings *set)
{
    if (g->gp_read_only)
        return TAPE_EREADONLY;
    if (!valid_settings(set))
        return TAPE_EINVAL;
    int rc = group_lock(g);
    if (rc < 0)
        return rc;
    g->gp_sh->gs_set = *set;
    g->gp_sh->gs_settings_crc = settings_crc(set);
    group_unlock(g);
    return 0;
}

int tape_group_settings_get(tape_group *g, tape_group_settings *out)
{
    *out = g->gp_sh->gs_set;
    if (tape_guard_hit(g->gp_guard) || !valid_settings(out))
        return TAPE_ECORRUPT;
    return 0;
}

/* ---- inspection ---------------------------------------------------------------------- */

static void describe(const tape_group_slot *s, uint32_t k, tape_delivery *d)
{
    d->d_index = s->gt_index;
    d->d_gen = s->gt_gen;
    d->d_due = s->gt_due;
    d->d_dl = s->gt_dl;
    d->d_slot = k;
    d->d_state = s->gt_state;
    d->d_attempt = s->gt_attempt;
    d->d_owner = s->gt_owner;
    d->d_reason = s->gt_reason;
}

/* info's walk of the later list and the table into *out: 0 done, 1 to be
 * walked again (a move began or ended meanwhile), or TAPE_ECORRUPT. */
static int info_walk(tape_group *g, tape_group_info *out, int locked)
{
    const tape_group_shared *sh = g->gp_sh;
    uint32_t moves = __atomic_load_n(&sh->gs_moves, __ATOMIC_ACQUIRE);
    out->gi_later = out->gi_in_flight = out->gi_waiting = out->gi_dead = 0;
    for (uint32_t j = 0; later_on(g) && j < TAPE_GROUP_LATER; j++) {
        const tape_group_later *l = &g->gp_later[j];
        if (!__atomic_load_n(&l->gl_state, __ATOMIC_ACQUIRE))
            continue;
        out->gi_later++;
        if (l->gl_dl < 0 && l->gl_index < out->gi_floor)
            out->gi_floor = l->gl_index;
    }
    for (uint32_t k = 0; k < TAPE_GROUP_SLOTS; k++) {
        const tape_group_slot *s = &g->gp_slots[k];
        uint32_t st = __atomic_load_n(&s->gt_state, __ATOMIC_ACQUIRE);
        if (st == TAPE_GS_FREE)
            continue;
        if (st > TAPE_GS_MOVING)
            return TAPE_ECORRUPT;
        if (st == TAPE_GS_CLAIMED)
            out->gi_in_flight++;
        else if (st == TAPE_GS_READY)
            out->gi_waiting++;
        else
            out->gi_dead++;
        if (s->gt_dl < 0 && s->gt_index < out->gi_floor)
            out->gi_floor = s->gt_index;
    }
    if (locked)
        return 0;
    /* A move under way all along (one killed in the middle, or slow): its
     * entry counts, wherever the walk saw it. */
    uint32_t dir = __atomic_load_n(&sh->gs_move, __ATOMIC_ACQUIRE);
    uint32_t j = __atomic_load_n(&sh->gs_move_later, __ATOMIC_RELAXED);
    int64_t index = -1, dl = 0;
    if (dir && j < TAPE_GROUP_LATER) {
        index = __atomic_load_n(&g->gp_later[j].gl_index, __ATOMIC_RELAXED);
        dl = __atomic_load_n(&g->gp_later[j].gl_dl, __ATOMIC_RELAXED);
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&sh->gs_moves, __ATOMIC_RELAXED) != moves)
        return 1;
    if ((moves & 1) && dl < 0 && index >= 0 && index < out->gi_floor)
        out->gi_floor = index;
    return 0;
}

int tape_group_info_get(tape_group *g, int64_t now_ns, tape_group_info *out)
{
    (void)now_ns;
    const tape_group_shared *sh = g->gp_sh;
    memset(out, 0, sizeof *out);
    out->gi_last = __atomic_load_n(&sh->gs_last, __ATOMIC_ACQUIRE);
    out->gi_floor = out->gi_last < 0 ? -1 : out->gi_last + 1;
    /* The deferred range's start, read without the lock: again if a commit
     * came in between. */
    for (int tries = 0; tries < 100; tries++) {
        uint32_t sel = __atomic_load_n(&sh->gs_defer_sel, __ATOMIC_ACQUIRE);
        int64_t first = __atomic_load_n(&sh->gs_defer[sel & 1].df_first, __ATOMIC_RELAXED);
        int64_t count = __atomic_load_n(&sh->gs_defer_n[sel & 1].dn_count, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&sh->gs_defer_sel, __ATOMIC_RELAXED) != sel)
            continue;
        if (first > 0 && first - 1 < out->gi_floor)
            out->gi_floor = first - 1;
        out->gi_deferred = first > 0 && count > 0 ? (uint64_t)count : 0;
        break;
    }
    /* The later list and the table, walked again when an entry moved between
     * them meanwhile (it could be seen in neither); after many tries, under
     * the lock when this handle may take it, else with pauses of 0.1 ms
     * between tries (-EAGAIN after 2,000 of them). */
    int64_t floor = out->gi_floor;
    int locked = 0;
    for (int tries = 0;; tries++) {
        if (tries >= 1000) {
            int rc = g->gp_read_only ? TAPE_ELIMIT : group_lock(g);
            if (rc == 0) {
                locked = 1;
            } else if (rc != TAPE_ELIMIT) {
                return rc;
            } else if (tries >= 3000) {
                return -EAGAIN;
            } else {
                struct timespec pause = {0, 100000};
                nanosleep(&pause, NULL);
            }
        }
        out->gi_floor = floor;
        int rc = info_walk(g, out, locked);
        if (locked)
            group_unlock(g);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
    }
    int fd = g->gp_fd;
    for (uint32_t k = 0; k < TAPE_GROUP_CONSUMERS; k++)
        if (__atomic_load_n(&g->gp_cons[k].gc_state, __ATOMIC_ACQUIRE) == 1 &&
            alive(fd, 0, k + 1))
            out->gi_consumers++;
    out->gi_generation = sh->gs_gen;
    out->gi_acked = sh->gs_acked;
    out->gi_redriven = (int64_t)__atomic_load_n(&sh->gs_redriven, __ATOMIC_ACQUIRE) - 1;
    return tape_guard_hit(g->gp_guard) ? TAPE_ECORRUPT : 0;
}

int tape_group_slot_get(tape_group *g, uint32_t k, tape_delivery *out)
{
    if (k >= TAPE_GROUP_SLOTS)
        return TAPE_EINVAL;
    const tape_group_slot *s = &g->gp_slots[k];
    uint32_t st = __atomic_load_n(&s->gt_state, __ATOMIC_ACQUIRE);
    if (st > TAPE_GS_MOVING || tape_guard_hit(g->gp_guard))
        return TAPE_ECORRUPT;
    if (st == TAPE_GS_FREE)
        return 0;
    describe(s, k, out);
    return 1;
}

int tape_group_consumer_get(tape_group *g, uint32_t k, char *name, size_t cap, int *is_alive)
{
    if (k >= TAPE_GROUP_CONSUMERS || cap < TAPE_NAME_MAX)
        return TAPE_EINVAL;
    const tape_group_cons *gc = &g->gp_cons[k];
    if (__atomic_load_n(&gc->gc_state, __ATOMIC_ACQUIRE) != 1)
        return 0;
    memcpy(name, gc->gc_name, TAPE_NAME_MAX);
    name[TAPE_NAME_MAX - 1] = 0;
    *is_alive = alive(g->gp_fd, 0, k + 1);
    return 1;
}

/* ---- consumers --------------------------------------------------------------------- */

int tape_consumer_open(tape_group *g, const char *name, tape_consumer **out)
{
    if (g->gp_read_only)
        return TAPE_EREADONLY;
    if (name && *name && !(strlen(name) < TAPE_NAME_MAX))
        return TAPE_EINVAL;
    tape_consumer *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    char path[TAPE_NAME_MAX + 32];
    file_name(path, sizeof path, ((const tape_group_hdr *)g->gp_map)->gh_name);
    c->cn_fd = tf_openat(g->gp_q->q_dirfd, path, O_RDWR | O_CLOEXEC, 0);
    if (c->cn_fd < 0) {
        int rc = -errno;
        free(c);
        return rc;
    }
    c->cn_g = g;
    c->cn_pid = getpid();
    c->cn_after = -2;
    c->cn_token = take_byte(g, c->cn_fd);
    if (!c->cn_token) {
        close(c->cn_fd);
        free(c);
        return TAPE_ELIMIT;
    }
    lock(g, c->cn_fd, c->cn_token, c->cn_pid);
    struct stat st;
    if (fstat(c->cn_fd, &st) < 0 || st.st_nlink == 0) { /* removed (tape_group_remove) */
        int rc = st.st_nlink == 0 ? -ENOENT : -errno;
        unlock(g);
        close(c->cn_fd);
        free(c);
        return rc;
    }
    adopt(g, c->cn_token, name, 1);
    unlock(g);
    *out = c;
    return 0;
}

void tape_consumer_forget(tape_consumer *c)
{
    if (!c)
        return;
    close(c->cn_fd); /* this process's reference to its byte's lock */
    free(c);
}

void tape_consumer_close(tape_consumer *c)
{
    if (!c)
        return;
    if (c->cn_pid != getpid()) { /* inherited through fork: the parent's */
        tape_consumer_forget(c);
        return;
    }
    tape_group *g = c->cn_g;
    lock(g, c->cn_fd, c->cn_token, c->cn_pid);
    release_owner(g, c->cn_token);
    __atomic_store_n(&g->gp_cons[c->cn_token - 1].gc_state, 0u, __ATOMIC_RELEASE);
    unlock(g);
    close(c->cn_fd); /* lets go of its byte */
    free(c);
}

uint32_t tape_consumer_id(tape_consumer *c)
{
    return c->cn_token;
}

/* ---- claims ------------------------------------------------------------------------ */

/* The oldest due entry of the table (a lapsed claim is due; one delivered
 * max_deliveries times becomes dead instead), or -1; gs_min_due is brought
 * up to the earliest due time left (the entry found counts: it stays due
 * unless the caller hands it out). */
static int64_t oldest_due(tape_group *g, int64_t now)
{
    tape_group_shared *sh = g->gp_sh;
    if (sh->gs_min_due > now)
        return -1;
    int64_t best = -1, min_due = NEVER;
    uint32_t max = sh->gs_set.gset_max_deliveries;
    for (uint32_t k = 0; k < sh->gs_hi; k++) {
        tape_group_slot *s = &g->gp_slots[k];
        uint32_t st = s->gt_state;
        if (st != TAPE_GS_READY && st != TAPE_GS_CLAIMED)
            continue;
        /* A claim lapses after its deadline (an ack at the deadline counts);
         * a waiting entry is due at its due time. */
        if (s->gt_due > now || (st == TAPE_GS_CLAIMED && s->gt_due == now)) {
            if (s->gt_due < min_due)
                min_due = s->gt_due;
            continue;
        }
        if (s->gt_attempt >= max) {
            make_dead(g, s, TAPE_GR_DELIVERIES);
            continue;
        }
        min_due = now;
        if (best < 0 || s->gt_index < g->gp_slots[best].gt_index)
            best = k;
    }
    sh->gs_min_due = min_due;
    return best;
}

static void hand_out(tape_consumer *c, tape_group_slot *s, int64_t now)
{
    tape_group_shared *sh = c->cn_g->gp_sh;
    s->gt_gen = ++sh->gs_gen;
    s->gt_owner = c->cn_token;
    s->gt_attempt++;
    s->gt_due = later(now, sh->gs_set.gset_ack_wait_ns);
    set_state(s, TAPE_GS_CLAIMED);
    due_at(c->cn_g, s->gt_due);
}

/* Place t just after the group's position. */
static int place(tape_consumer *c, tape_tailer *t)
{
    int64_t last = c->cn_g->gp_sh->gs_last;
    if (c->cn_after == last)
        return 0;
    int rc = last >= 0 ? tape_tailer_to_index(t, last + 1) : 0;
    if (rc == 0)
        rc = tape_tailer_seek(t, last + 1);
    if (rc < 0)
        return rc;
    c->cn_after = last;
    return 0;
}

static int claim_once(tape_consumer *c, tape_tailer *t, int64_t now, size_t room,
                      tape_delivery *d, tape_entry *e);

/* Holding the lock: claim the next entry due if its payload fits in `room`
 * bytes. 1 (claimed: *d, and *e unless a redriven dead letter), 0 nothing
 * due, 2 the next one does not fit (nothing changed), or an error. Once more
 * when new entries deferred one that is due already (the position defers by
 * the range's rule, not by now). */
static int claim_locked(tape_consumer *c, tape_tailer *t, int64_t now, size_t room,
                        tape_delivery *d, tape_entry *e)
{
    int rc = claim_once(c, t, now, room, d, e);
    const tape_group_defer *df = defer_cur(c->cn_g->gp_sh);
    if (rc == 0 && df->df_first && (df->df_pass || df->df_due <= now))
        rc = claim_once(c, t, now, room, d, e);
    return rc;
}

static int claim_once(tape_consumer *c, tape_tailer *t, int64_t now, size_t room,
                      tape_delivery *d, tape_entry *e)
{
    tape_group *g = c->cn_g;
    tape_group_shared *sh = g->gp_sh;
    int64_t k;
    int rc = pass(c, t, now);
    if (rc < 0)
        return rc;
    later_take(g, now);
    while ((k = oldest_due(g, now)) >= 0) {
        tape_group_slot *s = &g->gp_slots[k];
        if (s->gt_dl < 0) {
            c->cn_after = -2;
            rc = tape_tailer_to_index(t, s->gt_index);
            if (rc == 1 && (rc = tape_read(t, e)) == 1 && e->e_index != s->gt_index)
                rc = 0;
            if (rc < 0)
                return rc;
            if (rc == 0) {
                /* The entry is gone from the log (the queue was purged by
                 * hand under the group): nothing to hand out. */
                free_slot(g, (uint32_t)k);
                continue;
            }
            if (e->e_len > room)
                return 2;
        }
        hand_out(c, s, now);
        describe(s, (uint32_t)k, d);
        return 1;
    }
    /* New entries: one not due yet waits in the table, or is deferred
     * (holding back nothing either way), and the next is read. Entries at or
     * before the position (a group started ahead of the log) are passed over. */
    if ((rc = place(c, t)) < 0) {
        c->cn_after = -2;
        return rc;
    }
    for (;;) { /* bounded by the table's room and the log's end */
        if (sh->gs_busy >= TAPE_GROUP_SLOTS || later_due(g, now))
            return 0;
        rc = tape_read(t, e);
        if (rc <= 0) {
            if (rc < 0)
                c->cn_after = -2;
            return rc;
        }
        int64_t nb = e->e_attrs.a_not_before;
        if (e->e_index <= sh->gs_last || defer(g, e->e_index, nb, now)) {
            if (e->e_index > sh->gs_last) {
                TAPE_KILL("group_defer");
                sh->gs_last = e->e_index;
                c->cn_after = e->e_index;
            }
            continue;
        }
        if (nb <= now && e->e_len > room) {
            c->cn_after = -2; /* the tailer moved past it */
            return 2;
        }
        int64_t at = alloc_slot(g);
        if (at < 0) { /* the counts disagree with the table: put right, then no claim */
            repair(g);
            c->cn_after = -2;
            return 0;
        }
        tape_group_slot *s = &g->gp_slots[at];
        s->gt_index = e->e_index;
        s->gt_dl = -1;
        s->gt_attempt = 0;
        s->gt_reason = TAPE_GR_NONE;
        if (nb > now) {
            s->gt_owner = 0;
            s->gt_due = nb;
            set_state(s, TAPE_GS_READY);
            due_at(g, nb);
        } else {
            hand_out(c, s, now);
            describe(s, (uint32_t)at, d);
        }
        TAPE_KILL("group_claim");
        sh->gs_last = e->e_index;
        c->cn_after = e->e_index;
        if (nb <= now)
            return 1;
    }
}

/* Lock, and look for dead consumers when it is time. */
static int claim_begin(tape_consumer *c, int64_t now)
{
    tape_group *g = c->cn_g;
    tape_group_shared *sh = g->gp_sh;
    if (damaged(g))
        return TAPE_ECORRUPT;
    lock(g, c->cn_fd, c->cn_token, c->cn_pid);
    if (now >= sh->gs_next_check || sh->gs_next_check - now > 2 * TAPE_GROUP_CHECK_NS) {
        reap(g, c->cn_fd, c->cn_token);
        sh->gs_next_check = now + TAPE_GROUP_CHECK_NS;
    }
    return 0;
}

int tape_group_claim(tape_consumer *c, tape_tailer *t, int64_t now, tape_delivery *d, tape_entry *e)
{
    int rc = claim_begin(c, now);
    if (rc < 0)
        return rc;
    rc = claim_locked(c, t, now, SIZE_MAX, d, e);
    unlock(c->cn_g);
    return rc;
}

int64_t tape_group_claim_many(tape_consumer *c, tape_tailer *t, int64_t now, size_t max,
                              int64_t *out, void *buf, size_t cap)
{
    int rc = claim_begin(c, now);
    if (rc < 0)
        return rc;
    size_t n = 0, used = 0;
    tape_entry e;
    tape_delivery d;
    while (n < max) {
        rc = claim_locked(c, t, now, cap - used, &d, &e);
        if (rc != 1)
            break;
        int64_t *o = out + n++ * TAPE_CLAIM_FIELDS;
        o[TAPE_CLAIM_SLOT] = d.d_slot;
        o[TAPE_CLAIM_GEN] = (int64_t)d.d_gen;
        o[TAPE_CLAIM_INDEX] = d.d_index;
        o[TAPE_CLAIM_ATTEMPT] = d.d_attempt;
        o[TAPE_CLAIM_DUE] = d.d_due;
        o[TAPE_CLAIM_DL] = d.d_dl;
        o[TAPE_CLAIM_TS] = 0;
        if (d.d_dl < 0) {
            memcpy((uint8_t *)buf + used, e.e_data, e.e_len);
            used += e.e_len;
            o[TAPE_CLAIM_TS] = e.e_timestamp;
        }
        o[TAPE_CLAIM_END] = (int64_t)used;
    }
    unlock(c->cn_g);
    if (n == 0 && rc == 2) {
        out[TAPE_CLAIM_END] = (int64_t)e.e_len;
        return TAPE_EINVAL;
    }
    return n ? (int64_t)n : rc;
}

int64_t tape_group_wait_hint(tape_consumer *c, tape_tailer *t, int64_t now)
{
    tape_group *g = c->cn_g;
    lock(g, c->cn_fd, c->cn_token, c->cn_pid);
    int rc = place(c, t);
    int64_t min_due = g->gp_sh->gs_min_due;
    uint32_t busy = g->gp_sh->gs_busy;
    const tape_group_defer *df = defer_cur(g->gp_sh);
    if (df->df_first) {
        int64_t due = df->df_pass ? now : df->df_due;
        if (due < min_due)
            min_due = due;
    }
    if (later_on(g) && g->gp_sh->gs_later_due < min_due)
        min_due = g->gp_sh->gs_later_due;
    unlock(g);
    if (rc < 0)
        return rc;
    /* Idle, a waiter still looks again now and then: a consumer that claims
     * after it started waiting may die holding what it claimed. */
    int64_t hint = busy ? TAPE_GROUP_CHECK_NS : IDLE_RECHECK_NS;
    if (min_due != NEVER) {
        /* Nothing was due at `now` (the caller's claim found none): at least
         * a millisecond, so that a clock that stands still is not spun on. */
        int64_t until = min_due > now + 1000000 ? min_due - now : 1000000;
        if (hint < 0 || until < hint)
            hint = until;
    }
    return hint;
}

/* ---- finishing -------------------------------------------------------------------- */

/* The slot of the live claim (slot, gen) of c, locked; NULL (unlocked) when
 * it is not (TAPE_ESTALE) or slot is out of range (*rc). */
static tape_group_slot *held(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now,
                             uint32_t state, int *rc)
{
    if (slot >= TAPE_GROUP_SLOTS) {
        *rc = TAPE_EINVAL;
        return NULL;
    }
    tape_group *g = c->cn_g;
    if (damaged(g)) {
        *rc = TAPE_ECORRUPT;
        return NULL;
    }
    lock(g, c->cn_fd, c->cn_token, c->cn_pid);
    if (damaged(g)) { /* truncated while it waited: the zero page says nothing */
        unlock(g);
        *rc = TAPE_ECORRUPT;
        return NULL;
    }
    tape_group_slot *s = &g->gp_slots[slot];
    if (s->gt_state != state || s->gt_gen != gen || s->gt_owner != c->cn_token ||
        (state == TAPE_GS_CLAIMED && s->gt_due < now)) {
        unlock(g);
        *rc = TAPE_ESTALE;
        return NULL;
    }
    *rc = 0;
    return s;
}

int tape_group_ack(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now)
{
    int rc;
    if (!held(c, slot, gen, now, TAPE_GS_CLAIMED, &rc))
        return rc;
    free_slot(c->cn_g, slot);
    c->cn_g->gp_sh->gs_acked++;
    unlock(c->cn_g);
    return 0;
}

int64_t tape_group_ack_many(tape_consumer *c, const uint32_t *slots, const uint64_t *gens,
                            size_t n, int64_t now, uint8_t *stale)
{
    tape_group *g = c->cn_g;
    for (size_t i = 0; i < n; i++)
        if (slots[i] >= TAPE_GROUP_SLOTS)
            return TAPE_EINVAL;
    if (damaged(g))
        return TAPE_ECORRUPT;
    lock(g, c->cn_fd, c->cn_token, c->cn_pid);
    if (damaged(g)) {
        unlock(g);
        return TAPE_ECORRUPT;
    }
    int64_t acked = 0;
    for (size_t i = 0; i < n; i++) {
        tape_group_slot *s = &g->gp_slots[slots[i]];
        stale[i] = s->gt_state != TAPE_GS_CLAIMED || s->gt_gen != gens[i] ||
                   s->gt_owner != c->cn_token || s->gt_due < now;
        if (stale[i])
            continue;
        free_slot(g, slots[i]);
        acked++;
    }
    g->gp_sh->gs_acked += (uint64_t)acked;
    unlock(g);
    return acked;
}

int tape_group_nack(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now, int64_t delay)
{
    int rc;
    tape_group_slot *s = held(c, slot, gen, now, TAPE_GS_CLAIMED, &rc);
    if (!s)
        return rc;
    tape_group *g = c->cn_g;
    const tape_group_settings *set = &g->gp_sh->gs_set;
    int dead = s->gt_attempt >= set->gset_max_deliveries;
    if (dead) {
        make_dead(g, s, TAPE_GR_DELIVERIES);
    } else {
        if (delay < 0) {
            uint32_t n = set->gset_nbackoff, step = s->gt_attempt - 1;
            delay = n ? set->gset_backoff_ns[step < n ? step : n - 1] : 0;
        }
        int64_t due = later(now, delay);
        /* For later: out of the table; with the later list full it waits in
         * the table (holding a slot) as a redelivery due then. */
        int rc2 = due > now ? later_put(g, slot, s, due) : 1; /* 1: in the table */
        if (rc2 == TAPE_ELIMIT)
            rc2 = 1;
        if (rc2 < 0) {
            unlock(g);
            return rc2;
        }
        if (rc2 == 1) {
            s->gt_due = due;
            s->gt_owner = 0;
            set_state(s, TAPE_GS_READY);
            due_at(g, s->gt_due);
        }
    }
    unlock(g);
    return dead;
}

int tape_group_extend(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now, int64_t delay)
{
    if (delay < 0)
        return TAPE_EINVAL;
    int rc;
    tape_group_slot *s = held(c, slot, gen, now, TAPE_GS_CLAIMED, &rc);
    if (!s)
        return rc;
    s->gt_due = later(now, delay);
    due_at(c->cn_g, s->gt_due);
    unlock(c->cn_g);
    return 0;
}

/* Hand dead slot s to c to store as a dead letter. */
static void take(tape_consumer *c, tape_group_slot *s, uint32_t k, tape_delivery *d)
{
    uint32_t last = s->gt_owner;
    s->gt_gen = ++c->cn_g->gp_sh->gs_gen;
    s->gt_owner = c->cn_token;
    set_state(s, TAPE_GS_MOVING);
    describe(s, k, d);
    d->d_owner = last; /* the last consumer it was delivered to */
}

int tape_group_reject(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now, tape_delivery *d)
{
    int rc;
    tape_group_slot *s = held(c, slot, gen, now, TAPE_GS_CLAIMED, &rc);
    if (!s)
        return rc;
    make_dead(c->cn_g, s, TAPE_GR_REJECTED);
    take(c, s, slot, d);
    unlock(c->cn_g);
    return 0;
}

int tape_group_take_dead(tape_consumer *c, int64_t now, tape_delivery *d)
{
    tape_group *g = c->cn_g;
    if (damaged(g))
        return TAPE_ECORRUPT;
    if (!__atomic_load_n(&g->gp_sh->gs_dead, __ATOMIC_RELAXED) &&
        g->gp_sh->gs_min_due > now)
        return 0;
    lock(g, c->cn_fd, c->cn_token, c->cn_pid);
    oldest_due(g, now); /* lapsed entries out of deliveries become dead */
    for (uint32_t k = 0; k < g->gp_sh->gs_hi; k++) {
        tape_group_slot *s = &g->gp_slots[k];
        if (s->gt_state == TAPE_GS_DEAD) {
            take(c, s, k, d);
            unlock(g);
            return 1;
        }
    }
    unlock(g);
    return 0;
}

int tape_group_dead_done(tape_consumer *c, uint32_t slot, uint64_t gen)
{
    int rc;
    if (!held(c, slot, gen, 0, TAPE_GS_MOVING, &rc))
        return rc;
    free_slot(c->cn_g, slot);
    unlock(c->cn_g);
    return 0;
}

int tape_group_remove(tape_group *g)
{
    if (g->gp_read_only)
        return TAPE_EREADONLY;
    if (damaged(g))
        return TAPE_ECORRUPT;
    int rc = group_lock(g);
    if (rc < 0)
        return rc;
    reap(g, g->gp_fd, g->gp_token);
    for (uint32_t k = 0; k < TAPE_GROUP_CONSUMERS && rc == 0; k++)
        if (g->gp_cons[k].gc_state == 1 && alive(g->gp_fd, g->gp_token, k + 1))
            rc = -EBUSY;
    char path[TAPE_NAME_MAX + 32];
    file_name(path, sizeof path, ((const tape_group_hdr *)g->gp_map)->gh_name);
    struct stat mine, named;
    if (rc == 0 && (fstat(g->gp_fd, &mine) < 0 || fstatat(g->gp_q->q_dirfd, path, &named, 0) < 0))
        rc = -errno;
    if (rc == 0 && (mine.st_ino != named.st_ino || mine.st_dev != named.st_dev))
        rc = -ENOENT; /* removed, and made anew, by others */
    if (rc == 0 && unlinkat(g->gp_q->q_dirfd, path, 0) < 0)
        rc = -errno;
    group_unlock(g);
    return rc;
}

int tape_group_redrive(tape_group *g, int64_t index, int64_t dl, int64_t now)
{
    if (g->gp_read_only)
        return TAPE_EREADONLY;
    if (index < 0 || dl < 0)
        return TAPE_EINVAL;
    if (damaged(g))
        return TAPE_ECORRUPT;
    int rc = group_lock(g);
    if (rc < 0)
        return rc;
    tape_group_shared *sh = g->gp_sh;
    for (uint32_t k = 0; k < sh->gs_hi; k++)
        if (g->gp_slots[k].gt_state != TAPE_GS_FREE && g->gp_slots[k].gt_dl == dl) {
            group_unlock(g);
            return 0;
        }
    for (uint32_t j = 0; later_on(g) && j < sh->gs_later_hi; j++)
        if (g->gp_later[j].gl_state && g->gp_later[j].gl_dl == dl) { /* nacked for later */
            group_unlock(g);
            return 0;
        }
    int64_t at = alloc_slot(g);
    if (at < 0) {
        group_unlock(g);
        return TAPE_ELIMIT;
    }
    tape_group_slot *s = &g->gp_slots[at];
    s->gt_index = index;
    s->gt_dl = dl;
    s->gt_attempt = 0;
    s->gt_reason = TAPE_GR_NONE;
    s->gt_owner = 0;
    s->gt_gen = ++sh->gs_gen;
    s->gt_due = now;
    set_state(s, TAPE_GS_READY);
    due_at(g, now);
    __atomic_store_n(&sh->gs_redriven, (uint64_t)dl + 1, __ATOMIC_RELEASE);
    group_unlock(g);
    return 1;
}
