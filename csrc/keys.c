/* keys.c - the key directory: for each key, the index of its newest entry,
 * in tape.keys, a hash table mapped by every process (docs/FORMAT.md, "The
 * key directory"). Writers update it holding the write lock, after
 * publishing a keyed entry; it is rebuilt from the log when it is missing,
 * damaged, or was written before the last reboot, and brought up to date when
 * a writer died between publishing and updating it. */
#include "tape_int.h"
#include "fault.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYS_NAME "tape.keys"
#define KEYS_TMP KEYS_NAME ".tmp." /* and the writer's pid: a new directory being written */
#define KEYS_VERSION 1u
#define KEYS_HDR 4096u
#define KEYS_MIN_LOG2 10
#define KEYS_MAX_LOG2 34

typedef struct keys_hdr {
    char kh_magic[8];          /* "TAPEKEYS" */
    uint32_t kh_version;
    uint32_t kh_log2;          /* 2^kh_log2 slots */
    uint32_t kh_crc;           /* of bytes 0..15 */
    uint8_t kh_boot[16];       /* the boot it was written in */
    uint8_t kh_pad0[28];
    int64_t kh_upto;           /* 64: every keyed entry below this index is in */
    uint32_t kh_pending;       /* 72: a writer is between publishing and updating */
    uint32_t kh_moved;         /* 76: replaced by a bigger file: map the new one */
    uint64_t kh_used;          /* 80: slots taken */
} keys_hdr;

typedef struct key_slot {
    uint64_t s_h1;             /* 0: empty; set last, never changed */
    uint64_t s_h2;
    int64_t s_word;            /* the newest entry's index; -(index + 1): a tombstone */
    uint64_t s_hint;           /* where that entry starts in its cycle file; 0: not known */
} key_slot;

_Static_assert(sizeof(keys_hdr) <= KEYS_HDR, "keys header");
_Static_assert(sizeof(key_slot) == 32, "key slot");

/* ---- hashing ------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_with(const uint8_t *p, uint32_t n, uint64_t seed)
{
    uint64_t h = mix(seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ULL));
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix(h ^ w) + 0x9E3779B97F4A7C15ULL;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix(h ^ w);
}

/* The two halves of a key's 128-bit hash; h1 is never 0. */
static void key_hash(const void *key, uint32_t n, uint64_t *h1, uint64_t *h2)
{
    *h1 = hash_with(key, n, 0x243F6A8885A308D3ULL) | 1;
    *h2 = hash_with(key, n, 0x13198A2E03707344ULL);
}

/* ---- the table ----------------------------------------------------------- */

static key_slot *slots_of(uint8_t *map)
{
    return (key_slot *)(map + KEYS_HDR);
}

/* The slot of (h1, h2), or the empty one where it would go; NULL when full. */
static key_slot *probe(uint8_t *map, uint32_t log2, uint64_t h1, uint64_t h2)
{
    uint64_t mask = ((uint64_t)1 << log2) - 1;
    key_slot *s = slots_of(map);
    for (uint64_t i = 0, k = h1 & mask; i <= mask; i++, k = (k + 1) & mask) {
        uint64_t a = __atomic_load_n(&s[k].s_h1, __ATOMIC_ACQUIRE);
        if (a == 0 || (a == h1 && __atomic_load_n(&s[k].s_h2, __ATOMIC_RELAXED) == h2))
            return &s[k];
    }
    return NULL;
}

/* Store `word` (and its entry's position, `hint`) for (h1, h2): 1 when a slot
 * was taken, 0 when updated, -1 full. The hint may be seen with another word
 * than its own: a reader checks it (tape_read_at). */
static int put(uint8_t *map, uint32_t log2, uint64_t h1, uint64_t h2, int64_t word, uint64_t hint)
{
    key_slot *s = probe(map, log2, h1, h2);
    if (!s)
        return -1;
    __atomic_store_n(&s->s_hint, hint, __ATOMIC_RELAXED);
    if (__atomic_load_n(&s->s_h1, __ATOMIC_RELAXED)) {
        __atomic_store_n(&s->s_word, word, __ATOMIC_RELEASE);
        return 0;
    }
    __atomic_store_n(&s->s_word, word, __ATOMIC_RELAXED);
    __atomic_store_n(&s->s_h2, h2, __ATOMIC_RELAXED);
    __atomic_store_n(&s->s_h1, h1, __ATOMIC_RELEASE);
    return 1;
}

static size_t map_len(uint32_t log2)
{
    return KEYS_HDR + (sizeof(key_slot) << log2);
}

static void boot_id(uint8_t out[16])
{
    memset(out, 0, 16);
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char text[64];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    for (ssize_t i = 0, k = 0; i < n && k < 32; i++) {
        char c = text[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v >= 0) {
            out[k / 2] = (uint8_t)(out[k / 2] << 4 | v);
            k++;
        }
    }
}

static uint32_t header_crc(const keys_hdr *h)
{
    return tape_crc32c(0, h, 16);
}

/* ---- the file -------------------------------------------------------------- */

static void unmap(tape_keydir *kd)
{
    if (kd->kd_map)
        munmap(kd->kd_map, kd->kd_len);
    kd->kd_map = NULL;
    kd->kd_len = 0;
}

void tape_keys_init(tape_queue *q)
{
    pthread_mutex_init(&q->q_keys.kd_mu, NULL);
}

void tape_keys_close(tape_queue *q)
{
    unmap(&q->q_keys);
    pthread_mutex_destroy(&q->q_keys.kd_mu);
}

/* Map tape.keys (kd_mu held): 0, 1 when it is missing or not to be
 * believed (damaged, written before this boot), or -errno. */
static int map_file(tape_queue *q)
{
    tape_keydir *kd = &q->q_keys;
    unmap(kd);
    int fd = tf_openat(q->q_dirfd, KEYS_NAME, (q->q_read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? 1 : -errno;
    struct stat st;
    keys_hdr h;
    int rc = 1;
    if (fstat(fd, &st) == 0 && st.st_size >= (off_t)KEYS_HDR && pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h &&
        memcmp(h.kh_magic, "TAPEKEYS", 8) == 0 && h.kh_crc == header_crc(&h) && h.kh_version == KEYS_VERSION &&
        !h.kh_moved && /* replaced, or a writer died replacing it */
        h.kh_log2 >= KEYS_MIN_LOG2 && h.kh_log2 <= KEYS_MAX_LOG2 && (uint64_t)st.st_size == map_len(h.kh_log2)) {
        uint8_t boot[16];
        boot_id(boot);
        rc = memcmp(boot, h.kh_boot, 16) == 0 ? 0 : 1;
    }
    if (rc == 0) {
        size_t len = map_len(h.kh_log2);
        void *m = tf_mmap(NULL, len, q->q_read_only ? PROT_READ : PROT_READ | PROT_WRITE, fd);
        if (m == MAP_FAILED) {
            rc = -errno;
        } else {
            kd->kd_map = m;
            kd->kd_len = len;
        }
    }
    close(fd);
    return rc;
}

static keys_hdr *hdr(tape_keydir *kd)
{
    return (keys_hdr *)kd->kd_map;
}

/* Write a new tape.keys of 2^log2 slots whose contents `fill` puts in
 * (holding the write lock), publish it under its name, and map it. */
static int write_file(tape_queue *q, uint32_t log2, int (*fill)(tape_queue *, uint8_t *, uint32_t, void *),
                      void *arg)
{
    size_t len = map_len(log2);
    uint8_t *buf = calloc(1, len);
    if (!buf)
        return -ENOMEM;
    keys_hdr *h = (keys_hdr *)buf;
    memcpy(h->kh_magic, "TAPEKEYS", 8);
    h->kh_version = KEYS_VERSION;
    h->kh_log2 = log2;
    h->kh_crc = header_crc(h);
    boot_id(h->kh_boot);
    int rc = fill(q, buf, log2, arg);
    char tmp[64];
    snprintf(tmp, sizeof tmp, KEYS_TMP "%d", (int)getpid());
    int fd = rc < 0 ? -1 : tf_openat(q->q_dirfd, tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0666);
    if (rc == 0 && fd < 0)
        rc = -errno;
    if (rc == 0 && write(fd, buf, len) != (ssize_t)len)
        rc = errno ? -errno : -EIO;
    if (fd >= 0)
        close(fd);
    free(buf);
    /* The file it replaces (also a damaged one) says so first, for the
     * processes that map it, then the new one takes its name: a writer
     * killed in between leaves a file marked moved under the name, which
     * map_file does not believe (the next writer rebuilds), never a
     * replaced file that other processes go on changing unawares. */
    int old = rc == 0 ? openat(q->q_dirfd, KEYS_NAME, O_WRONLY | O_CLOEXEC) : -1;
    if (old >= 0) {
        uint32_t moved = 1;
        if (pwrite(old, &moved, 4, offsetof(keys_hdr, kh_moved)) != 4)
            rc = errno ? -errno : -EIO;
        close(old);
        TAPE_KILL("keys_moved");
    }
    if (rc == 0 && renameat(q->q_dirfd, tmp, q->q_dirfd, KEYS_NAME) < 0)
        rc = -errno;
    if (rc < 0) {
        unlinkat(q->q_dirfd, tmp, 0);
        return rc;
    }
    rc = map_file(q);
    return rc > 0 ? TAPE_ECORRUPT : rc;
}

/* Put the key of entry e into the table in map (2^log2 slots): TAPE_ELIMIT
 * when the table is too small for it. */
static int put_entry(const tape_entry *e, uint8_t *map, uint32_t log2, uint64_t *used)
{
    uint64_t h1, h2;
    key_hash(e->e_attrs.a_key, e->e_attrs.a_key_len, &h1, &h2);
    int64_t word = e->e_attrs.a_flags & TAPE_A_TOMBSTONE ? -(e->e_index + 1) : e->e_index;
    int r = put(map, log2, h1, h2, word, 0);
    if (r < 0 || (*used += (uint64_t)r) > ((uint64_t)3 << log2) / 4)
        return TAPE_ELIMIT;
    return 0;
}

/* Apply the keyed entries of the log from index `from` on (0: all) to the
 * table in map; *upto: the index after the last entry read. */
/* A tailer at index `from` (0: the start); `from` - 1 is an entry read
 * before: when its cycle is gone, all that remains is after it. */
static int tailer_from(tape_queue *q, int64_t from, tape_tailer **out)
{
    int rc = tape_tailer_open(q, out);
    tape_entry e;
    if (rc == 0 && from > 0 && (rc = tape_tailer_to_index(*out, from - 1)) == 1)
        rc = tape_read(*out, &e); /* (the entry before: read already) */
    if (rc < 0 && *out) {
        tape_tailer_close(*out);
        *out = NULL;
    }
    return rc < 0 ? rc : 0;
}

static int scan(tape_queue *q, uint8_t *map, uint32_t log2, int64_t from, int64_t *upto, uint64_t *used)
{
    tape_tailer *t = NULL;
    int rc = tailer_from(q, from, &t);
    if (rc < 0)
        return rc;
    tape_entry e;
    int64_t last = from;
    while (rc >= 0 && (rc = tape_read(t, &e)) == 1) {
        last = e.e_index + 1;
        if (e.e_attrs.a_key && (rc = put_entry(&e, map, log2, used)) < 0)
            break;
    }
    tape_tailer_close(t);
    *upto = last;
    return rc < 0 ? rc : 0;
}

static int fill_from_log(tape_queue *q, uint8_t *buf, uint32_t log2, void *arg)
{
    (void)arg;
    keys_hdr *h = (keys_hdr *)buf;
    int64_t upto = 0;
    uint64_t used = 0;
    int rc = scan(q, buf, log2, 0, &upto, &used);
    h->kh_upto = upto;
    h->kh_used = used;
    return rc;
}

/* The live keys of the table in map: tombstones' slots not counted. */
static uint64_t live_keys(uint8_t *map)
{
    keys_hdr *h = (keys_hdr *)map;
    key_slot *s = slots_of(map);
    uint64_t n = 0;
    for (uint64_t k = 0; k < ((uint64_t)1 << h->kh_log2); k++)
        n += __atomic_load_n(&s[k].s_h1, __ATOMIC_ACQUIRE) && __atomic_load_n(&s[k].s_word, __ATOMIC_ACQUIRE) >= 0;
    return n;
}

/* The size (log2 of the slots) of a table for n keys: at most 3/8 full,
 * so that as many keys again fit before it is written anew; above
 * KEYS_MAX_LOG2 when none is big enough. */
static uint32_t fit_log2(uint64_t n)
{
    uint32_t log2 = KEYS_MIN_LOG2;
    while (log2 <= KEYS_MAX_LOG2 && n > ((uint64_t)3 << log2) / 8)
        log2++;
    return log2;
}

/* The live keys of the table `arg` (a mapped or built one), without the
 * tombstones' slots: a deleted key and a key never written look the same
 * to every reader (no newest entry), so a table written anew forgets them. */
static int fill_from_table(tape_queue *q, uint8_t *buf, uint32_t log2, void *arg)
{
    (void)q;
    keys_hdr *from = arg, *h = (keys_hdr *)buf;
    key_slot *s = slots_of((uint8_t *)from);
    uint64_t used = 0;
    for (uint64_t k = 0; k < ((uint64_t)1 << from->kh_log2); k++) {
        uint64_t h1 = __atomic_load_n(&s[k].s_h1, __ATOMIC_ACQUIRE);
        int64_t word = __atomic_load_n(&s[k].s_word, __ATOMIC_ACQUIRE);
        if (!h1 || word < 0)
            continue;
        if (put(buf, log2, h1, s[k].s_h2, word, __atomic_load_n(&s[k].s_hint, __ATOMIC_RELAXED)) < 0)
            return TAPE_ELIMIT;
        used++;
    }
    h->kh_upto = from->kh_upto;
    h->kh_used = used;
    return 0;
}

/* Rebuild tape.keys from the whole log (holding the write lock): built in
 * memory, big enough for every key the log names, then written at the size
 * its live keys need. */
static int rebuild(tape_queue *q)
{
    for (uint32_t log2 = KEYS_MIN_LOG2; log2 <= KEYS_MAX_LOG2; log2 += 2) {
        uint8_t *mem = calloc(1, map_len(log2));
        if (!mem)
            return -ENOMEM;
        ((keys_hdr *)mem)->kh_log2 = log2;
        int rc = fill_from_log(q, mem, log2, NULL);
        if (rc == 0) {
            uint32_t fit = fit_log2(live_keys(mem));
            rc = fit > KEYS_MAX_LOG2 ? TAPE_ELIMIT : write_file(q, fit, fill_from_table, mem);
        } else if (rc == TAPE_ELIMIT) {
            rc = 1; /* a bigger table, then */
        }
        free(mem);
        if (rc != 1)
            return rc;
    }
    return TAPE_ELIMIT;
}

/* Holding kd_mu: tape.keys mapped and current for a lookup or a change:
 * mapped anew when another process replaced it. 1 when it must be rebuilt
 * (or, read-only, cannot be trusted), 0, or -errno. */
static int current(tape_queue *q)
{
    tape_keydir *kd = &q->q_keys;
    if (kd->kd_map && !__atomic_load_n(&hdr(kd)->kh_moved, __ATOMIC_ACQUIRE))
        return 0;
    return map_file(q);
}

/* ---- writers ---------------------------------------------------------------- */

/* The first keyed append of a queue marks tape.meta, on disk before the
 * entry is written: readers that find no mark look for no keys. */
static int mark_keyed(tape_queue *q)
{
    if (__atomic_load_n(&q->q_sh->ms_keyed, __ATOMIC_RELAXED))
        return 0;
    __atomic_store_n(&q->q_sh->ms_keyed, 1, __ATOMIC_RELEASE);
    return msync(q->q_sh, TAPE_PAGE, MS_SYNC) < 0 ? -errno : 0;
}

int tape_keys_begin(tape_queue *q)
{
    int mk = mark_keyed(q);
    if (mk < 0)
        return mk;
    tape_keydir *kd = &q->q_keys;
    pthread_mutex_lock(&kd->kd_mu);
    int rc = current(q);
    if (rc == 1)
        rc = rebuild(q);
    if (rc == 0 && __atomic_load_n(&hdr(kd)->kh_pending, __ATOMIC_ACQUIRE)) {
        /* A writer died after publishing keyed entries: apply what follows. */
        keys_hdr *h = hdr(kd);
        int64_t upto;
        uint64_t used = __atomic_load_n(&h->kh_used, __ATOMIC_RELAXED);
        rc = scan(q, kd->kd_map, h->kh_log2, __atomic_load_n(&h->kh_upto, __ATOMIC_RELAXED), &upto, &used);
        if (rc == TAPE_ELIMIT)
            rc = rebuild(q);
        else if (rc == 0) {
            __atomic_store_n(&h->kh_used, used, __ATOMIC_RELAXED);
            __atomic_store_n(&h->kh_upto, upto, __ATOMIC_RELEASE);
        }
    }
    if (rc == 0)
        __atomic_store_n(&hdr(kd)->kh_pending, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&kd->kd_mu);
    return rc;
}

int tape_keys_apply(tape_queue *q, const tape_attrs *at, int64_t index, uint64_t pos)
{
    TAPE_KILL("key_update");
    tape_keydir *kd = &q->q_keys;
    pthread_mutex_lock(&kd->kd_mu);
    keys_hdr *h = hdr(kd);
    if (index < 0) {
        __atomic_store_n(&h->kh_pending, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&kd->kd_mu);
        return 0;
    }
    uint64_t h1, h2;
    key_hash(at->a_key, at->a_key_len, &h1, &h2);
    int64_t word = at->a_flags & TAPE_A_TOMBSTONE ? -(index + 1) : index;
    int rc = 0, r = put(kd->kd_map, h->kh_log2, h1, h2, word, pos);
    uint64_t used = __atomic_load_n(&h->kh_used, __ATOMIC_RELAXED) + (uint64_t)(r > 0);
    __atomic_store_n(&h->kh_used, used, __ATOMIC_RELAXED);
    if (r < 0 || used > ((uint64_t)3 << h->kh_log2) / 4) {
        /* Full: written anew without the tombstones' slots, at the size its
         * live keys need (bigger, the same, or smaller), the entry written
         * since in it. */
        __atomic_store_n(&h->kh_upto, index + 1, __ATOMIC_RELAXED);
        uint32_t fit = fit_log2(live_keys(kd->kd_map) + 1);
        rc = fit > KEYS_MAX_LOG2 ? TAPE_ELIMIT : write_file(q, fit, fill_from_table, h);
        if (rc == 0 && r < 0)
            put(kd->kd_map, hdr(kd)->kh_log2, h1, h2, word, pos);
        h = rc == 0 ? hdr(kd) : h;
    }
    if (rc == 0) {
        __atomic_store_n(&h->kh_upto, index + 1, __ATOMIC_RELEASE);
        __atomic_store_n(&h->kh_pending, 0, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&kd->kd_mu);
    return rc;
}

int64_t tape_keys_newest(tape_queue *q, const tape_attrs *at)
{
    tape_keydir *kd = &q->q_keys;
    uint64_t h1, h2;
    key_hash(at->a_key, at->a_key_len, &h1, &h2);
    pthread_mutex_lock(&kd->kd_mu);
    key_slot *s = probe(kd->kd_map, hdr(kd)->kh_log2, h1, h2);
    int64_t word = s && s->s_h1 ? s->s_word : -1;
    pthread_mutex_unlock(&kd->kd_mu);
    return word >= 0 ? word : -1;
}

/* ---- readers ------------------------------------------------------------------ */

/* No entry with a key was ever appended to q (tape.meta says so): there are
 * no keys, and no directory is read, built or checked (a purge of a queue
 * without keys scans nothing). */
static int never_keyed(tape_queue *q)
{
    return !__atomic_load_n(&q->q_sh->ms_keyed, __ATOMIC_ACQUIRE);
}

/* The tape.keys.tmp.<pid> files in q's directory: how many; removed when
 * `remove` is set (holding the write lock: then none is a live writer's). */
static int tmp_files(tape_queue *q, int remove)
{
    int fd = openat(q->q_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        if (strncmp(de->d_name, KEYS_TMP, sizeof KEYS_TMP - 1) == 0) {
            n++;
            if (remove)
                unlinkat(q->q_dirfd, de->d_name, 0);
        }
    closedir(d);
    return n;
}

void tape_keys_sweep(tape_queue *q)
{
    if (q->q_read_only || never_keyed(q) || tmp_files(q, 0) == 0)
        return;
    if (tape_lock_meta(q) == 0) {
        tmp_files(q, 1);
        tape_unlock(q);
    }
}

/* The table mapped and current (kd_mu held): 0; a writable handle rebuilds
 * a missing or damaged one, holding the write lock; 1 when there is none to
 * believe (read-only), or -errno. */
static int ready(tape_queue *q)
{
    tape_keydir *kd = &q->q_keys;
    int rc = current(q);
    if (rc == 1 && !q->q_read_only) {
        pthread_mutex_unlock(&kd->kd_mu); /* the write lock comes first */
        rc = tape_lock_meta(q);
        pthread_mutex_lock(&kd->kd_mu);
        if (rc == 0) {
            rc = current(q);
            if (rc == 1)
                rc = rebuild(q);
            tape_unlock(q);
        }
    }
    return rc;
}

/* A table this call may believe (kd_mu held): the mapped one, current (a
 * writable handle rebuilds a missing or damaged one, holding the write lock),
 * or in *mem (malloc'ed, 2^*log2 slots) a copy brought up to date with the
 * entries a writer has not applied yet, or, where the file cannot be used,
 * one built from the whole log. */
static int usable(tape_queue *q, uint8_t **mem, uint32_t *log2)
{
    tape_keydir *kd = &q->q_keys;
    *mem = NULL;
    int rc = ready(q);
    if (rc < 0)
        return rc;
    if (rc == 0 && !__atomic_load_n(&hdr(kd)->kh_pending, __ATOMIC_ACQUIRE)) {
        *log2 = hdr(kd)->kh_log2;
        return 0;
    }
    int64_t from = rc == 0 ? __atomic_load_n(&hdr(kd)->kh_upto, __ATOMIC_ACQUIRE) : 0;
    for (uint32_t l = rc == 0 ? hdr(kd)->kh_log2 : KEYS_MIN_LOG2; l <= KEYS_MAX_LOG2; l += 2) {
        uint8_t *m = calloc(1, map_len(l));
        if (!m)
            return -ENOMEM;
        uint64_t used = 0;
        int64_t upto;
        int r = 0;
        if (rc == 0) { /* the mapped table, then what follows it */
            key_slot *s = slots_of(kd->kd_map);
            for (uint64_t k = 0; r == 0 && k < ((uint64_t)1 << hdr(kd)->kh_log2); k++) {
                uint64_t h1 = __atomic_load_n(&s[k].s_h1, __ATOMIC_ACQUIRE);
                int p = h1 ? put(m, l, h1, s[k].s_h2, __atomic_load_n(&s[k].s_word, __ATOMIC_ACQUIRE), 0) : 0;
                if (p < 0 || (used += (uint64_t)p) > ((uint64_t)3 << l) / 4)
                    r = TAPE_ELIMIT;
            }
        }
        if (r == 0)
            r = scan(q, m, l, from, &upto, &used);
        if (r == 0) {
            *mem = m;
            *log2 = l;
            return 0;
        }
        free(m);
        if (r != TAPE_ELIMIT)
            return r;
    }
    return TAPE_ELIMIT;
}

/* *word updated by the entries with this key from index `from` on. */
static int scan_key(tape_queue *q, int64_t from, const void *key, uint32_t key_len, int64_t *word)
{
    tape_tailer *t = NULL;
    int rc = tailer_from(q, from, &t);
    tape_entry e;
    while (rc >= 0 && (rc = tape_read(t, &e)) == 1)
        if (e.e_attrs.a_key_len == key_len && e.e_attrs.a_key && memcmp(e.e_attrs.a_key, key, key_len) == 0)
            *word = e.e_attrs.a_flags & TAPE_A_TOMBSTONE ? -(e.e_index + 1) : e.e_index;
    if (t)
        tape_tailer_close(t);
    return rc < 0 ? rc : 0;
}

/* tape_key_latest, and in *hint where the entry starts in its cycle file
 * when the directory knows (else 0). */
static int64_t latest(tape_queue *q, const void *key, uint32_t key_len, uint64_t *hint)
{
    *hint = 0;
    if (!key || key_len == 0 || key_len > TAPE_KEY_MAX)
        return TAPE_EINVAL;
    if (never_keyed(q))
        return -1;
    tape_keydir *kd = &q->q_keys;
    uint64_t h1, h2;
    key_hash(key, key_len, &h1, &h2);
    pthread_mutex_lock(&kd->kd_mu);
    int64_t word = -1;
    int rc = ready(q);
    if (rc == 0) {
        key_slot *s = probe(kd->kd_map, hdr(kd)->kh_log2, h1, h2);
        if (s && __atomic_load_n(&s->s_h1, __ATOMIC_ACQUIRE)) {
            word = __atomic_load_n(&s->s_word, __ATOMIC_ACQUIRE);
            *hint = __atomic_load_n(&s->s_hint, __ATOMIC_RELAXED);
        }
        if (__atomic_load_n(&hdr(kd)->kh_pending, __ATOMIC_ACQUIRE)) { /* and what it lacks */
            *hint = 0;
            rc = scan_key(q, __atomic_load_n(&hdr(kd)->kh_upto, __ATOMIC_ACQUIRE), key, key_len, &word);
        }
    } else if (rc == 1) { /* no table to believe: the log */
        rc = scan_key(q, 0, key, key_len, &word);
    }
    pthread_mutex_unlock(&kd->kd_mu);
    return rc < 0 ? rc : word >= 0 ? word : -1;
}

int64_t tape_key_latest(tape_queue *q, const void *key, uint32_t key_len)
{
    uint64_t hint;
    return latest(q, key, key_len, &hint);
}

int64_t tape_keys_list(tape_queue *q, int64_t *indexes, size_t cap)
{
    if (never_keyed(q))
        return 0;
    tape_keydir *kd = &q->q_keys;
    pthread_mutex_lock(&kd->kd_mu);
    uint8_t *mem;
    uint32_t log2;
    int64_t rc = usable(q, &mem, &log2);
    if (rc == 0) {
        key_slot *s = slots_of(mem ? mem : kd->kd_map);
        size_t n = 0;
        for (uint64_t k = 0; k < ((uint64_t)1 << log2); k++) {
            if (!__atomic_load_n(&s[k].s_h1, __ATOMIC_ACQUIRE))
                continue;
            int64_t word = __atomic_load_n(&s[k].s_word, __ATOMIC_ACQUIRE);
            if (word < 0)
                continue;
            if (n < cap)
                indexes[n] = word;
            n++;
        }
        rc = (int64_t)n;
    }
    pthread_mutex_unlock(&kd->kd_mu);
    free(mem);
    return rc;
}

int tape_keys_rebuild(tape_queue *q)
{
    if (q->q_read_only)
        return TAPE_EREADONLY;
    int rc = tape_lock_meta(q);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&q->q_keys.kd_mu);
    rc = rebuild(q);
    pthread_mutex_unlock(&q->q_keys.kd_mu);
    tape_unlock(q);
    return rc;
}

int tape_key_read(tape_queue *q, tape_tailer *t, const void *key, uint32_t key_len, tape_entry *e)
{
    for (int attempt = 0;; attempt++) {
        uint64_t hint;
        int64_t index = latest(q, key, key_len, &hint);
        if (index < 0)
            return index == -1 ? 0 : (int)index;
        /* Read where the directory says it starts, else found by its index. */
        int rc = hint ? tape_read_at(t, index, hint, e) : 0;
        if (rc == 0 && (rc = tape_tailer_to_index(t, index)) == 1)
            rc = tape_read(t, e);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return 0; /* its cycle was removed meanwhile: the key went with it */
        if (e->e_index == index && e->e_attrs.a_key && e->e_attrs.a_key_len == key_len &&
            memcmp(e->e_attrs.a_key, key, key_len) == 0)
            return 1;
        /* The directory disagrees with the log: rebuilt from it, once. */
        if (attempt > 0 || q->q_read_only)
            return TAPE_ECORRUPT;
        if ((rc = tape_keys_rebuild(q)) < 0)
            return rc;
    }
}

/* ---- verify ---------------------------------------------------------------------- */

static int64_t index_of(int64_t word)
{
    return word < 0 ? -(word + 1) : word;
}

/* The index of the log's first entry, -1 when it is empty (or unreadable:
 * the scan reports that). */
static int64_t first_index(tape_queue *q)
{
    tape_tailer *t = NULL;
    tape_entry e;
    int64_t first = -1;
    if (tailer_from(q, 0, &t) == 0 && tape_read(t, &e) == 1)
        first = e.e_index;
    if (t)
        tape_tailer_close(t);
    return first;
}

/* Holding kd_mu, for verify: 0 when tape.keys is mapped and current, 1 when
 * it is missing or from another boot (not a problem: rebuilt when next
 * used), 2 when its header is damaged (msg says so), or -errno. */
static int check_file(tape_queue *q, char *msg, size_t cap)
{
    int rc = current(q);
    if (rc != 1)
        return rc;
    struct stat st;
    keys_hdr h;
    int fd = tf_openat(q->q_dirfd, KEYS_NAME, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return 1;
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)KEYS_HDR || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
        memcmp(h.kh_magic, "TAPEKEYS", 8) != 0 || h.kh_crc != header_crc(&h) || h.kh_version != KEYS_VERSION ||
        h.kh_log2 < KEYS_MIN_LOG2 || h.kh_log2 > KEYS_MAX_LOG2 || (uint64_t)st.st_size != map_len(h.kh_log2)) {
        snprintf(msg, cap, "tape.keys: damaged header (rebuilt from the log by tape repair or the next use)");
        rc = 2;
    }
    close(fd);
    return rc;
}

int tape_keys_check(tape_queue *q, char *msg, size_t cap)
{
    if (cap)
        msg[0] = '\0';
    if (never_keyed(q))
        return 0;
    tape_keydir *kd = &q->q_keys;
    pthread_mutex_lock(&kd->kd_mu);
    int mapped = check_file(q, msg, cap);
    pthread_mutex_unlock(&kd->kd_mu);
    if (mapped != 0)
        return mapped == 2 ? 1 : mapped == 1 ? 0 : mapped;
    /* What the log says, first: whatever is written after `upto` is newer
     * than this scan and may be in the directory already. */
    uint8_t *log = NULL;
    uint32_t log2 = KEYS_MIN_LOG2;
    int64_t upto = 0;
    int rc = TAPE_ELIMIT;
    for (; rc == TAPE_ELIMIT && log2 <= KEYS_MAX_LOG2; log2 += 2) {
        free(log);
        uint64_t used = 0;
        log = calloc(1, map_len(log2));
        rc = log ? scan(q, log, log2, 0, &upto, &used) : -ENOMEM;
    }
    log2 -= 2;
    if (rc < 0) {
        free(log);
        return rc;
    }
    int64_t first = first_index(q);
    pthread_mutex_lock(&kd->kd_mu);
    mapped = check_file(q, msg, cap); /* replaced meanwhile, perhaps */
    if (mapped != 0) {
        pthread_mutex_unlock(&kd->kd_mu);
        free(log);
        return mapped == 2 ? 1 : mapped == 1 ? 0 : mapped;
    }
    uint8_t *mem = NULL;
    uint32_t dlog2 = 0;
    /* The mapped table, with what a writer has not applied yet. */
    rc = 0;
    if (__atomic_load_n(&hdr(kd)->kh_pending, __ATOMIC_ACQUIRE)) {
        rc = usable(q, &mem, &dlog2);
    } else {
        dlog2 = hdr(kd)->kh_log2;
    }
    const key_slot *dir = rc == 0 ? slots_of(mem ? mem : kd->kd_map) : NULL;
    /* Each key of the log: the directory has its newest entry, or a newer. */
    const key_slot *ls = slots_of(log);
    for (uint64_t k = 0; rc == 0 && k < ((uint64_t)1 << log2); k++) {
        if (!ls[k].s_h1)
            continue;
        key_slot *d = probe(mem ? mem : kd->kd_map, dlog2, ls[k].s_h1, ls[k].s_h2);
        int64_t want = ls[k].s_word;
        int64_t got = d && __atomic_load_n(&d->s_h1, __ATOMIC_ACQUIRE) ? __atomic_load_n(&d->s_word, __ATOMIC_ACQUIRE)
                                                                       : INT64_MIN;
        if (got == want || (got != INT64_MIN && index_of(got) >= upto) || (got == INT64_MIN && want < 0))
            continue; /* (a table written anew forgets tombstones) */
        if (got == INT64_MIN)
            snprintf(msg, cap, "tape.keys: the key of entry %lld is missing (rebuilt from the log by tape repair)",
                     (long long)index_of(want));
        else
            snprintf(msg, cap,
                     "tape.keys: names entry %lld as a key's newest where the log has %lld (rebuilt from the log by "
                     "tape repair)",
                     (long long)index_of(got), (long long)index_of(want));
        rc = 1;
    }
    /* Each key of the directory: in the log, or newer than the scan, or a
     * tombstone in a removed cycle. */
    for (uint64_t k = 0; rc == 0 && k < ((uint64_t)1 << dlog2); k++) {
        uint64_t h1 = __atomic_load_n(&dir[k].s_h1, __ATOMIC_ACQUIRE);
        if (!h1)
            continue;
        int64_t word = __atomic_load_n(&dir[k].s_word, __ATOMIC_ACQUIRE);
        key_slot *l = probe(log, log2, h1, dir[k].s_h2);
        if ((l && l->s_h1) || index_of(word) >= upto || (word < 0 && (first < 0 || index_of(word) < first)))
            continue;
        snprintf(msg, cap,
                 "tape.keys: names entry %lld as a %s, which the log does not hold (rebuilt from the log by tape "
                 "repair)",
                 (long long)index_of(word), word < 0 ? "deleted key's tombstone" : "live key's newest entry");
        rc = 1;
    }
    pthread_mutex_unlock(&kd->kd_mu);
    free(mem);
    free(log);
    return rc;
}
