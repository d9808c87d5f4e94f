/* cycle.c - cycle files: listing them, creating, opening and checking one,
 * its two-level index, and walking its entries to find the end of data
 * (docs/FORMAT.md, "Cycle files", "The two-level index"). */
#include "tape_int.h"
#include "fault.h"

#include <dirent.h>
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

_Static_assert(offsetof(tape_cycle_hdr, c_crc) == 64, "cycle header layout");

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int list_dir(tape_queue *q, int64_t **out, size_t *n)
{
    DIR *d = tape_dir_open(q->q_dirfd);
    if (!d)
        return -errno;
    size_t cap = 16, cnt = 0;
    int64_t *v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v && (de = readdir(d)) != NULL) {
        int64_t c = tape_cycle_parse(q, de->d_name);
        if (c < 0)
            continue;
        if (cnt == cap) {
            int64_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
            cap *= 2;
        }
        v[cnt++] = c;
    }
    closedir(d);
    if (!v)
        return -ENOMEM;
    qsort(v, cnt, sizeof *v, cmp_i64);
    *out = v;
    *n = cnt;
    return 0;
}

/* The directory is listed again only when the modification counter says a
 * cycle file was created or removed since (a file removed behind tape's back
 * shows up as -ENOENT when opened, which every caller handles). */
int tape_list_cycles_alloc(tape_queue *q, int64_t **out, size_t *n)
{
    uint64_t mod = __atomic_load_n(&q->q_sh->ms_modcount, __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&q->q_cyc.cc_mu);
    if (!q->q_cyc.cc_valid || q->q_cyc.cc_mod != mod) {
        int64_t *v = NULL;
        size_t cnt = 0;
        int rc = list_dir(q, &v, &cnt);
        if (rc < 0) {
            pthread_mutex_unlock(&q->q_cyc.cc_mu);
            return rc;
        }
        free(q->q_cyc.cc_list);
        q->q_cyc.cc_list = v;
        q->q_cyc.cc_n = cnt;
        q->q_cyc.cc_mod = mod;
        q->q_cyc.cc_valid = 1;
    }
    int64_t *copy = malloc((q->q_cyc.cc_n ? q->q_cyc.cc_n : 1) * sizeof *copy);
    if (copy && q->q_cyc.cc_n)
        memcpy(copy, q->q_cyc.cc_list, q->q_cyc.cc_n * sizeof *copy);
    *n = q->q_cyc.cc_n;
    pthread_mutex_unlock(&q->q_cyc.cc_mu);
    if (!copy)
        return -ENOMEM;
    *out = copy;
    return 0;
}

int64_t tape_list_cycles(tape_queue *q, int64_t *cycles, size_t cap)
{
    int64_t *v;
    size_t n;
    int rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0)
        return rc;
    if (n && cap)
        memcpy(cycles, v, (n < cap ? n : cap) * sizeof *v);
    free(v);
    return (int64_t)n;
}

int64_t tape_neighbour_cycle(tape_queue *q, int64_t c, int dir)
{
    /* Rolling forward one cycle at a time is the common case. */
    char name[80];
    if (dir > 0 && c >= 0 && tape_cycle_name(q, c + 1, name, sizeof name) == 0 &&
        faccessat(q->q_dirfd, name, F_OK, 0) == 0)
        return c + 1;
    int64_t *v;
    size_t n;
    int rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0)
        return rc;
    int64_t best = -1;
    for (size_t i = 0; i < n; i++) {
        if (dir > 0 && v[i] > c) {
            best = v[i];
            break;
        }
        if (dir < 0 && v[i] < c)
            best = v[i];
    }
    free(v);
    return best;
}

/* ---- cycle files -------------------------------------------------------- */

static uint64_t data_offset(const tape_queue *q)
{
    uint64_t i2i = (uint64_t)8 << q->q_roll.r_count_log2;
    return TAPE_PAGE + ((i2i + TAPE_PAGE - 1) & ~(uint64_t)(TAPE_PAGE - 1));
}

void tape_cyc_init(tape_cyc *y)
{
    memset(y, 0, sizeof *y);
    y->y_cycle = -1;
    tape_view_init(&y->y_v);
}

void tape_cyc_close(tape_cyc *y)
{
    tape_view_close(&y->y_v);
    tape_cyc_init(y);
}

/* After a failed open of cycle file `name`: 1 when it is there but is not a
 * regular file (a directory, a device, a symbolic link to one), which is
 * damage to the queue, not a system error (mapping a directory fails with
 * ENODEV, opening it to write with EISDIR). */
static int not_a_cycle_file(tape_queue *q, const char *name)
{
    struct stat st;
    return fstatat(q->q_dirfd, name, &st, 0) == 0 && !S_ISREG(st.st_mode);
}

/* The header h (in a mapping) checks: its CRC holds with the version as
 * stored (returns that version), or, for a header a writer was turning from
 * version 1 into 2 when it died (FORMAT.md "Header"), with the other of the
 * two (returns 1: the upgrade is to be finished). -1 when it does not check.
 * The two words an upgrade changes are loaded atomically. */
static int64_t header_version(const tape_cycle_hdr *h)
{
    tape_cycle_hdr c;
    memcpy(&c, h, offsetof(tape_cycle_hdr, c_crc));
    c.c_version = __atomic_load_n(&h->c_version, __ATOMIC_ACQUIRE);
    uint32_t crc = __atomic_load_n(&h->c_crc, __ATOMIC_ACQUIRE);
    if (memcmp(c.c_magic, "TAPECYCL", 8) != 0)
        return -1;
    if (tape_crc32c(0, &c, offsetof(tape_cycle_hdr, c_crc)) == crc)
        return c.c_version;
    if (c.c_version != 1 && c.c_version != 2)
        return -1;
    c.c_version ^= 3; /* 1 <-> 2 */
    return tape_crc32c(0, &c, offsetof(tape_cycle_hdr, c_crc)) == crc ? 1 : -1;
}

int tape_cyc_open(tape_queue *q, int64_t cycle, int writable, tape_cyc *y)
{
    char name[80];
    int rc = tape_cycle_name(q, cycle, name, sizeof name);
    if (rc < 0)
        return rc;
    tape_cyc_init(y);
    rc = tape_view_open(&y->y_v, q->q_dirfd, name, writable);
    if (rc < 0)
        return not_a_cycle_file(q, name) ? TAPE_ECORRUPT : rc;
    /* Only writers: the page cache's pages are made by the writer's faults
     * (readers' views are placed so as never to map huge pages). Failure (no
     * transparent huge pages in this kernel) leaves the kernel's choice. */
    if (writable && !q->q_small_pages)
        madvise(y->y_v.v_base, y->y_v.v_maplen, MADV_HUGEPAGE);
    const tape_cycle_hdr *h = (const tape_cycle_hdr *)y->y_v.v_base;
    uint64_t data = data_offset(q);
    int64_t version = y->y_v.v_size < data + 8 ? -1 : header_version(h);
    if (version < 0) {
        rc = TAPE_ECORRUPT;
    } else if (version == 0 || version > TAPE_CYC_VERSION) {
        rc = TAPE_EVERSION;
    } else if (h->c_cycle != cycle || h->c_seq_bits != (uint32_t)q->q_roll.r_seq_bits ||
               h->c_count_log2 != (uint32_t)q->q_roll.r_count_log2 ||
               h->c_spacing_log2 != (uint32_t)q->q_roll.r_spacing_log2 ||
               h->c_i2i_off != TAPE_PAGE || h->c_data_off != data) {
        rc = TAPE_ECORRUPT;
    }
    rc = tape_view_guarded(&y->y_v, rc); /* the header's page could not be read */
    if (rc < 0) {
        tape_cyc_close(y);
        return rc;
    }
    y->y_cycle = cycle;
    y->y_seed = h->c_seed;
    y->y_i2i_off = h->c_i2i_off;
    y->y_data_off = h->c_data_off;
    y->y_version = (uint32_t)version;
    return 0;
}

int tape_cyc_upgrade(tape_cyc *y)
{
    if (y->y_version >= TAPE_CYC_VERSION)
        return 0;
    tape_cycle_hdr *h = (tape_cycle_hdr *)y->y_v.v_base, c;
    memcpy(&c, h, offsetof(tape_cycle_hdr, c_crc));
    c.c_version = TAPE_CYC_VERSION;
    uint32_t crc = tape_crc32c(0, &c, offsetof(tape_cycle_hdr, c_crc));
    __atomic_store_n(&h->c_version, TAPE_CYC_VERSION, __ATOMIC_RELEASE);
    TAPE_KILL("upgrade");
    __atomic_store_n(&h->c_crc, crc, __ATOMIC_RELEASE);
    /* On disk before any entry that needs it: after a power loss an earlier
     * release must not find a version-1 header above attributed entries. */
    if (tf_fdatasync(y->y_v.v_fd) < 0)
        return -errno;
    int rc = tape_view_guarded(&y->y_v, 0);
    if (rc == 0)
        y->y_version = TAPE_CYC_VERSION;
    return rc;
}

int tape_cyc_create(tape_queue *q, int64_t cycle, tape_cyc *y)
{
    int rc = tape_cyc_open(q, cycle, 1, y);
    if (rc != -ENOENT)
        return rc;
    char name[80], tmp[128];
    if ((rc = tape_cycle_name(q, cycle, name, sizeof name)) < 0)
        return rc;
    tape_cycle_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.c_magic, "TAPECYCL", 8);
    h.c_version = TAPE_CYC_VERSION;
    h.c_cycle = cycle;
    while (h.c_seed == 0)
        if (getrandom(&h.c_seed, sizeof h.c_seed, 0) < 0)
            return -errno;
    h.c_seq_bits = (uint32_t)q->q_roll.r_seq_bits;
    h.c_count_log2 = (uint32_t)q->q_roll.r_count_log2;
    h.c_spacing_log2 = (uint32_t)q->q_roll.r_spacing_log2;
    h.c_i2i_off = TAPE_PAGE;
    h.c_data_off = data_offset(q);
    h.c_created_ns = tape_now_ns();
    h.c_crc = tape_crc32c(0, &h, offsetof(tape_cycle_hdr, c_crc));

    snprintf(tmp, sizeof tmp, "%s.tmp.%d.%08x", name, (int)getpid(), h.c_seed);
    int fd = tf_openat(q->q_dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0)
        return -errno;
    /* A little room for the first entries; the prefaulter adds more as the
     * cycle fills. */
    off_t size = (off_t)(h.c_data_off + TAPE_FAULT_PIECE);
    /* The header first: the fallback of tape_file_alloc leaves the file
     * descriptor in O_APPEND mode, in which pwrite appends. */
    rc = 0;
    errno = 0;
    if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        rc = errno ? -errno : -EIO;
    if (rc == 0)
        rc = tape_file_alloc(fd, 0, (uint64_t)size);
    /* On disk before it has a name, so a name never leads to a file without
     * a header after a power loss. */
    if (rc == 0 && tf_fdatasync(fd) < 0)
        rc = -errno;
    close(fd);
    /* Published whole under its final name; if it is already there (a writer
     * died after creating it), that one is used. */
    if (rc == 0 && tf_linkat(q->q_dirfd, tmp, name) < 0 && errno != EEXIST)
        rc = -errno;
    unlinkat(q->q_dirfd, tmp, 0);
    if (rc < 0)
        return rc;
    rc = tape_cyc_open(q, cycle, 1, y);
    return rc < 0 ? rc : 1;
}

/* ---- the index --------------------------------------------------------- */

static int valid_pos(const tape_cyc *y, uint64_t p)
{
    return p >= y->y_data_off && (p & 7) == 0;
}

/* Offset of index array k: 1 found, 0 absent, or a negative error. */
int tape_cyc_index_array(tape_queue *q, tape_cyc *y, uint64_t k, uint64_t *arr)
{
    uint64_t n = (uint64_t)1 << q->q_roll.r_count_log2;
    if (k >= n)
        return 0;
    const uint64_t *i2i = (const uint64_t *)(y->y_v.v_base + y->y_i2i_off);
    uint64_t a = __atomic_load_n(&i2i[k], __ATOMIC_ACQUIRE);
    if (!a)
        return 0;
    uint32_t want = TAPE_H_META | tape_hdr_len((uint32_t)(8 * n));
    uint64_t sz = tape_entry_size((uint32_t)(8 * n));
    if (!valid_pos(y, a) || a > UINT64_MAX - sz || tape_view_cover(&y->y_v, a + sz) != 0)
        return TAPE_ECORRUPT;
    const uint8_t *e = y->y_v.v_base + a;
    uint32_t crc;
    uint64_t tag;
    memcpy(&crc, e + 4, 4);
    memcpy(&tag, e + 8, 8);
    if (tape_load_hdr(&y->y_v, a) != want || tag != (TAPE_TAG_INDEX | k) ||
        crc != tape_crc_meta(y->y_seed, want, tag))
        return TAPE_ECORRUPT;
    *arr = a;
    return 1;
}

const uint64_t *tape_cyc_slots(const tape_cyc *y, uint64_t arr)
{
    return (const uint64_t *)(y->y_v.v_base + arr + TAPE_ENTRY_HDR);
}

uint64_t tape_cyc_block_pos(tape_queue *q, tape_cyc *y, uint64_t b)
{
    uint64_t arr;
    if (tape_cyc_index_array(q, y, b >> q->q_roll.r_count_log2, &arr) != 1)
        return 0;
    uint64_t j = b & (((uint64_t)1 << q->q_roll.r_count_log2) - 1);
    uint64_t p = __atomic_load_n(&tape_cyc_slots(y, arr)[j], __ATOMIC_ACQUIRE);
    return valid_pos(y, p) ? p : 0;
}

/* Number of leading non-zero slots (slots are filled in order). */
static uint64_t filled(const uint64_t *slots, uint64_t n)
{
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (__atomic_load_n(&slots[mid], __ATOMIC_ACQUIRE))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Walk forward from (*pos, *seq) over published entries, checking each. */
static int walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last, int64_t *last_ts);

int tape_cyc_walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last, int64_t *last_ts)
{
    return tape_view_guarded(&y->y_v, walk(y, pos, seq, last, last_ts));
}

static int walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last, int64_t *last_ts)
{
    uint64_t p = *pos, s = *seq;
    uint32_t h = 0;
    for (;;) {
        int rc = tape_view_cover(&y->y_v, p + 4);
        if (rc < 0)
            return rc;
        if (rc > 0) { /* the file ends here: a truncated file */
            h = 0;
            break;
        }
        h = tape_load_hdr(&y->y_v, p);
        if (h == 0 || (h & TAPE_H_NC))
            break;
        if ((h & TAPE_H_LEN) < TAPE_L_EXTRA)
            goto bad;
        uint32_t len = (h & TAPE_H_LEN) - TAPE_L_EXTRA;
        uint64_t sz = tape_entry_size(len);
        if (tape_view_cover(&y->y_v, p + sz) != 0)
            goto bad;
        const uint8_t *e = y->y_v.v_base + p;
        uint32_t crc;
        int64_t ts;
        memcpy(&crc, e + 4, 4);
        memcpy(&ts, e + 8, 8);
        if (h & TAPE_H_META) {
            if (crc != tape_crc_meta(y->y_seed, h, (uint64_t)ts))
                goto bad;
        } else {
            if (crc != tape_crc_data(y->y_seed, h, s, ts, e + TAPE_ENTRY_HDR, len))
                goto bad;
            if (last_ts)
                *last_ts = tape_entry_ts(ts);
            s++;
        }
        p += sz;
    }
    *pos = p;
    *seq = s;
    *last = h;
    return 0;
bad: /* where the intact data ends */
    *pos = p;
    *seq = s;
    *last = h;
    return TAPE_ECORRUPT;
}

/* The offset of the first non-zero byte of b[lo, hi), or 0. */
static uint64_t first_nonzero(const uint8_t *b, uint64_t lo, uint64_t hi)
{
    uint64_t p = lo;
    for (; p < hi && (p & 7); p++)
        if (b[p])
            return p;
    for (; p + 8 <= hi; p += 8) {
        uint64_t w;
        memcpy(&w, b + p, 8);
        if (w)
            break;
    }
    for (; p < hi; p++)
        if (b[p])
            return p;
    return 0;
}

uint64_t tape_cyc_dirty_after(tape_cyc *y, uint64_t pos, uint32_t h)
{
    uint64_t p = pos + 4;
    if ((h & TAPE_H_NC) && h != TAPE_H_EOF)
        p = pos + tape_entry_size((h & TAPE_H_LEN) > TAPE_L_EXTRA ? (h & TAPE_H_LEN) - TAPE_L_EXTRA : 0);
    if (tape_view_cover(&y->y_v, UINT64_MAX) < 0) /* all of the file */
        return 0;
    /* Holes (a sealed cycle's preallocation, punched out) read as zeros:
     * skip them rather than read them through the mapping, which on tmpfs
     * would give each a page again (and on a full one, SIGBUS). */
    const uint64_t size = y->y_v.v_size;
    /* A dead writer's unfinished entry always fits in the file (the writer
     * grew it first): one that claims more is damage, not a dead writer's. */
    if (p > size)
        return pos;
    while (p < size) {
        off_t d = lseek(y->y_v.v_fd, (off_t)p, SEEK_DATA);
        if (d < 0 && errno == ENXIO)
            return 0; /* nothing but a hole from p on */
        uint64_t lo = p, hi = size;
        if (d >= 0) {
            off_t h = lseek(y->y_v.v_fd, d, SEEK_HOLE);
            lo = (uint64_t)d > p ? (uint64_t)d : p;
            hi = h > d && (uint64_t)h < size ? (uint64_t)h : size;
        } /* else: no SEEK_DATA here, read all of it */
        uint64_t bad = first_nonzero(y->y_v.v_base, lo, hi);
        if (bad)
            return bad;
        p = hi > lo ? hi : size;
    }
    return 0;
}

static int find_end(tape_queue *q, tape_cyc *y, uint64_t *pos, uint64_t *seq,
                    uint32_t *hdr_at_end, int64_t *last_ts);

int tape_cyc_find_end(tape_queue *q, tape_cyc *y, uint64_t *pos, uint64_t *seq,
                      uint32_t *hdr_at_end, int64_t *last_ts)
{
    return tape_view_guarded(&y->y_v, find_end(q, y, pos, seq, hdr_at_end, last_ts));
}

static int find_end(tape_queue *q, tape_cyc *y, uint64_t *pos, uint64_t *seq,
                    uint32_t *hdr_at_end, int64_t *last_ts)
{
    uint64_t n = (uint64_t)1 << q->q_roll.r_count_log2;
    const uint64_t *i2i = (const uint64_t *)(y->y_v.v_base + y->y_i2i_off);
    uint64_t arrays = filled(i2i, n);
    uint64_t p = y->y_data_off, s = 0;
    if (arrays > 0) {
        uint64_t k = arrays - 1, arr;
        int rc = tape_cyc_index_array(q, y, k, &arr);
        if (rc <= 0)
            return rc < 0 ? rc : TAPE_ECORRUPT;
        uint64_t j = filled(tape_cyc_slots(y, arr), n);
        if (j == 0) {
            p = arr;
            s = (k * n) << q->q_roll.r_spacing_log2;
        } else {
            p = tape_cyc_slots(y, arr)[j - 1];
            s = (k * n + j - 1) << q->q_roll.r_spacing_log2;
            if (!valid_pos(y, p))
                return TAPE_ECORRUPT;
        }
    }
    /* A slot pointing past the end of the file is damage, not the end. */
    if (tape_view_cover(&y->y_v, p + 4) != 0)
        return TAPE_ECORRUPT;
    int rc = tape_cyc_walk(y, &p, &s, hdr_at_end, last_ts);
    if (rc < 0)
        return rc;
    *pos = p;
    *seq = s;
    return 0;
}

static int locate(tape_queue *q, tape_cyc *y, uint64_t seq, uint64_t *pos);

int tape_cyc_locate(tape_queue *q, tape_cyc *y, uint64_t seq, uint64_t *pos)
{
    return tape_view_guarded(&y->y_v, locate(q, y, seq, pos));
}

static int locate(tape_queue *q, tape_cyc *y, uint64_t seq, uint64_t *pos)
{
    /* seq == capacity is the end of a full cycle, not an error. */
    if (seq > ((uint64_t)1 << q->q_roll.r_seq_bits))
        return 0;
    uint64_t b = seq >> q->q_roll.r_spacing_log2;
    uint64_t p = tape_cyc_block_pos(q, y, b);
    if (!p) {
        uint64_t end, count;
        uint32_t h;
        int rc = tape_cyc_find_end(q, y, &end, &count, &h, NULL);
        if (rc < 0)
            return rc;
        if (count != seq)
            return 0;
        *pos = end;
        return 2;
    }
    uint64_t s = b << q->q_roll.r_spacing_log2;
    for (;;) {
        int rc = tape_view_cover(&y->y_v, p + 4);
        if (rc < 0)
            return rc;
        uint32_t h = rc > 0 ? 0 : tape_load_hdr(&y->y_v, p);
        if (h == 0 || (h & TAPE_H_NC)) {
            if (s != seq)
                return 0;
            *pos = p;
            return 2;
        }
        if ((h & TAPE_H_LEN) < TAPE_L_EXTRA)
            return TAPE_ECORRUPT;
        uint64_t sz = tape_entry_size((h & TAPE_H_LEN) - TAPE_L_EXTRA);
        if (tape_view_cover(&y->y_v, p + sz) != 0)
            return TAPE_ECORRUPT;
        if (!(h & TAPE_H_META)) {
            if (s == seq) {
                *pos = p;
                return 1;
            }
            s++;
        }
        p += sz;
    }
}

/* The end of data by entry headers alone, from the first entry: what a
 * damaged cycle seems to hold. */
int tape_cyc_header_walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last)
{
    uint64_t p = y->y_data_off, s = 0;
    uint32_t h = 0;
    for (;;) {
        int rc = tape_view_cover(&y->y_v, p + 4);
        if (rc < 0)
            return rc;
        h = rc > 0 ? 0 : tape_load_hdr(&y->y_v, p);
        if (h == 0 || (h & TAPE_H_NC) || (h & TAPE_H_LEN) < TAPE_L_EXTRA)
            break;
        uint64_t sz = tape_entry_size((h & TAPE_H_LEN) - TAPE_L_EXTRA);
        if (tape_view_cover(&y->y_v, p + sz) != 0)
            break;
        s += !(h & TAPE_H_META);
        p += sz;
    }
    *pos = p;
    *seq = s;
    *last = h;
    return tape_view_guarded(&y->y_v, 0);
}

/* ---- the end a writer may append after ---------------------------------- */

/* A published data entry with this seq at p (its checksum holds). */
static int entry_is(tape_cyc *y, uint64_t p, uint64_t seq)
{
    if (!valid_pos(y, p) || tape_view_cover(&y->y_v, p + TAPE_ENTRY_HDR) != 0)
        return 0;
    uint32_t h = tape_load_hdr(&y->y_v, p);
    if (h == 0 || (h & (TAPE_H_NC | TAPE_H_META)) || (h & TAPE_H_LEN) < TAPE_L_EXTRA)
        return 0;
    uint32_t len = (h & TAPE_H_LEN) - TAPE_L_EXTRA;
    if (tape_view_cover(&y->y_v, p + tape_entry_size(len)) != 0)
        return 0;
    const uint8_t *e = y->y_v.v_base + p;
    uint32_t crc;
    int64_t ts;
    memcpy(&crc, e + 4, 4);
    memcpy(&ts, e + 8, 8);
    return crc == tape_crc_data(y->y_seed, h, seq, ts, e + TAPE_ENTRY_HDR, len);
}

int tape_cyc_stray_slot(tape_queue *q, tape_cyc *y, uint64_t end_pos, uint64_t end_seq,
                        uint64_t *bad_seq)
{
    const int nlog = q->q_roll.r_count_log2, slog = q->q_roll.r_spacing_log2;
    const uint64_t n = (uint64_t)1 << nlog;
    const uint64_t *i2i = (const uint64_t *)(y->y_v.v_base + y->y_i2i_off);
    uint64_t b_end = (end_seq + ((uint64_t)1 << slog) - 1) >> slog; /* first block with no entry */
    uint64_t k_end = b_end >> nlog;
    for (uint64_t k = k_end + 1; k < n; k++)
        if (__atomic_load_n(&i2i[k], __ATOMIC_ACQUIRE)) {
            *bad_seq = (k * n) << slog;
            return 1;
        }
    uint64_t arr;
    int rc = tape_cyc_index_array(q, y, k_end, &arr);
    if (rc <= 0)
        return rc; /* absent (it may be: nothing needs it yet), or damaged */
    const uint64_t *slots = tape_cyc_slots(y, arr);
    for (uint64_t j = b_end & (n - 1); j < n; j++) {
        uint64_t p = __atomic_load_n(&slots[j], __ATOMIC_ACQUIRE);
        uint64_t b = k_end * n + j;
        /* A writer stores the slot before it publishes the entry: a slot
         * naming the end itself, for the entry that goes there, is sound. */
        if (p && !(b == b_end && (b << slog) == end_seq && p == end_pos)) {
            *bad_seq = b << slog;
            return 1;
        }
    }
    return 0;
}

int tape_cyc_writer_end(tape_queue *q, tape_cyc *y, uint64_t *pos, uint64_t *seq,
                        uint32_t *hdr_at_end, int64_t *last_ts)
{
    const int nlog = q->q_roll.r_count_log2, slog = q->q_roll.r_spacing_log2;
    const uint64_t n = (uint64_t)1 << nlog;
    const uint64_t *i2i = (const uint64_t *)(y->y_v.v_base + y->y_i2i_off);
    uint64_t arrays = filled(i2i, n);
    uint64_t p = y->y_data_off, s = 0, pt = 0, st = 0;
    int indexed = 0;
    if (arrays > 0) {
        uint64_t k = arrays - 1, arr;
        int rc = tape_cyc_index_array(q, y, k, &arr);
        if (rc <= 0)
            return rc < 0 ? rc : TAPE_ECORRUPT;
        const uint64_t *slots = tape_cyc_slots(y, arr);
        uint64_t j = filled(slots, n);
        p = arr;
        s = (k * n) << slog;
        if (j > 0) {
            indexed = 1;
            pt = slots[j - 1];
            st = (k * n + j - 1) << slog;
            if (j > 1) { /* walk the whole last block, from the one before */
                p = slots[j - 2];
                s = (k * n + j - 2) << slog;
            }
            if (!valid_pos(y, p) || !valid_pos(y, pt) || pt < p)
                return TAPE_ECORRUPT;
        }
    }
    if (tape_view_cover(&y->y_v, p + 4) != 0)
        return TAPE_ECORRUPT;
    uint64_t from = s;
    int rc = tape_cyc_walk(y, &p, &s, hdr_at_end, last_ts);
    if (rc < 0)
        return rc;
    /* The index and the data must tell the same end: the last indexed entry
     * is there (or is the end, about to be written), no entry past it should
     * have had a slot of its own, and no slot names anything past the end. */
    if (indexed && (st > s || (st == s && pt != p) || (st < s && !entry_is(y, pt, st))))
        return TAPE_ECORRUPT;
    if (s > (indexed ? st + ((uint64_t)1 << slog) : from))
        return TAPE_ECORRUPT;
    uint64_t bad;
    rc = tape_cyc_stray_slot(q, y, p, s, &bad);
    if (rc != 0)
        return rc < 0 ? rc : TAPE_ECORRUPT;
    /* Past the end only zeros (and a dead writer's unfinished entry). */
    if (tape_cyc_dirty_after(y, p, *hdr_at_end))
        return TAPE_ECORRUPT;
    *pos = p;
    *seq = s;
    return 0;
}

int tape_cyc_gone(tape_queue *q, const tape_cyc *y, int by_name)
{
    struct stat st, sn;
    if (y->y_v.v_fd < 0 || fstat(y->y_v.v_fd, &st) < 0)
        return 0;
    if (st.st_nlink == 0)
        return 1;
    char name[80];
    if (!by_name || tape_cycle_name(q, y->y_cycle, name, sizeof name) < 0)
        return 0;
    if (fstatat(q->q_dirfd, name, &sn, 0) < 0)
        return errno == ENOENT;
    return sn.st_ino != st.st_ino || sn.st_dev != st.st_dev;
}
