/* cycle.c - roll cycles, cycle files and their two-level index
 * (docs/FORMAT.md, "Roll cycles", "Cycle files", "The two-level index"). */
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
#include <time.h>
#include <unistd.h>

_Static_assert(offsetof(tape_cycle_hdr, c_crc) == 64, "cycle header layout");

#define SECS "%Y%m%d-%H%M%S"
#define MINS "%Y%m%d-%H%M"
#define HOURS "%Y%m%d-%H"
#define DAYS "%Y%m%d"

static const tape_roll_info rolls[] = {
    {"test_secondly", 1000, 12, 5, 2, SECS},
    {"test_ten_secondly", 10000, 12, 5, 2, SECS},
    {"minutely", 60000, 26, 11, 4, MINS},
    {"five_minutely", 300000, 27, 11, 5, MINS},
    {"ten_minutely", 600000, 27, 11, 5, MINS},
    {"twenty_minutely", 1200000, 27, 11, 5, MINS},
    {"half_hourly", 1800000, 27, 11, 5, MINS},
    {"hourly", 3600000, 28, 12, 4, HOURS},
    {"two_hourly", 7200000, 29, 12, 5, HOURS},
    {"four_hourly", 14400000, 29, 12, 5, HOURS},
    {"six_hourly", 21600000, 29, 12, 5, HOURS},
    {"daily", 86400000, 32, 13, 6, DAYS},
    {"weekly", 604800000, 34, 14, 6, DAYS},
    {"large_hourly", 3600000, 34, 14, 6, HOURS},
    {"large_daily", 86400000, 37, 15, 7, DAYS},
    {"huge_daily", 86400000, 40, 16, 8, DAYS},
    {NULL, 0, 0, 0, 0, NULL},
};

const tape_roll_info *tape_roll_cycles(void)
{
    return rolls;
}

const tape_roll_info *tape_roll_find(const char *name)
{
    for (const tape_roll_info *r = rolls; r->ri_name; r++)
        if (!strcmp(r->ri_name, name))
            return r;
    return NULL;
}

/* ---- index arithmetic ---------------------------------------------------- */

static int64_t max_cycle(const tape_queue *q)
{
    return (int64_t)1 << (63 - q->q_roll.r_seq_bits);
}

int64_t tape_make_index(tape_queue *q, int64_t cycle, int64_t seq)
{
    if (cycle < 0 || cycle >= max_cycle(q) || seq < 0 || (seq >> q->q_roll.r_seq_bits))
        return TAPE_EINVAL;
    return (cycle << q->q_roll.r_seq_bits) | seq;
}

int64_t tape_index_cycle(tape_queue *q, int64_t index)
{
    return index < 0 ? TAPE_EINVAL : index >> q->q_roll.r_seq_bits;
}

int64_t tape_index_seq(tape_queue *q, int64_t index)
{
    return index < 0 ? TAPE_EINVAL : index & (((int64_t)1 << q->q_roll.r_seq_bits) - 1);
}

int64_t tape_cycle_of(tape_queue *q, int64_t ts_ns)
{
    int64_t ms = tape_floor_div(ts_ns, 1000000);
    int64_t c = tape_floor_div(ms - q->q_roll.r_epoch_ms, q->q_roll.r_length_ms);
    return (c < 0 || c >= max_cycle(q)) ? TAPE_ECLOCK : c;
}

/* ---- names ---------------------------------------------------------------- */

int tape_cycle_name(tape_queue *q, int64_t cycle, char *buf, size_t cap)
{
    if (cycle < 0 || cycle >= max_cycle(q) || cycle > INT64_MAX / q->q_roll.r_length_ms)
        return TAPE_EINVAL;
    int64_t ms = cycle * q->q_roll.r_length_ms + q->q_roll.r_epoch_ms;
    time_t s = (time_t)tape_floor_div(ms, 1000);
    struct tm tm;
    if (!gmtime_r(&s, &tm))
        return TAPE_EINVAL;
    size_t n = strftime(buf, cap, q->q_roll.r_format, &tm);
    if (n == 0 || n + sizeof TAPE_SUFFIX > cap)
        return TAPE_EINVAL;
    memcpy(buf + n, TAPE_SUFFIX, sizeof TAPE_SUFFIX);
    return 0;
}

/* The cycle a file name stands for, or -1 when it is not a cycle file name.
 * A name shows its cycle's start truncated to the pattern's resolution, so the
 * cycle is the first one starting at or after the parsed time. */
static int64_t parse_name(tape_queue *q, const char *name)
{
    size_t n = strlen(name), sl = sizeof TAPE_SUFFIX - 1;
    char stem[64];
    if (n <= sl || n - sl >= sizeof stem || strcmp(name + n - sl, TAPE_SUFFIX) != 0)
        return -1;
    memcpy(stem, name, n - sl);
    stem[n - sl] = '\0';
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(stem, q->q_roll.r_format, &tm);
    if (!end || *end)
        return -1;
    int64_t ms = (int64_t)timegm(&tm) * 1000 - q->q_roll.r_epoch_ms;
    int64_t len = q->q_roll.r_length_ms;
    int64_t c = -tape_floor_div(-ms, len);
    char again[80];
    if (tape_cycle_name(q, c, again, sizeof again) < 0 || strcmp(again, name) != 0)
        return -1;
    return c;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int list_dir(tape_queue *q, int64_t **out, size_t *n)
{
    int fd = t_openat(q->q_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    size_t cap = 16, cnt = 0;
    int64_t *v = malloc(cap * sizeof *v);
    struct dirent *de;
    while (v && (de = readdir(d)) != NULL) {
        int64_t c = parse_name(q, de->d_name);
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
    uint64_t mod = __atomic_load_n(&q->q_sh->m_modcount, __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&q->q_mu);
    if (!q->q_cyc_valid || q->q_cyc_mod != mod) {
        int64_t *v = NULL;
        size_t cnt = 0;
        int rc = list_dir(q, &v, &cnt);
        if (rc < 0) {
            pthread_mutex_unlock(&q->q_mu);
            return rc;
        }
        free(q->q_cyc_list);
        q->q_cyc_list = v;
        q->q_cyc_n = cnt;
        q->q_cyc_mod = mod;
        q->q_cyc_valid = 1;
    }
    int64_t *copy = malloc((q->q_cyc_n ? q->q_cyc_n : 1) * sizeof *copy);
    if (copy && q->q_cyc_n)
        memcpy(copy, q->q_cyc_list, q->q_cyc_n * sizeof *copy);
    *n = q->q_cyc_n;
    pthread_mutex_unlock(&q->q_mu);
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

int tape_cyc_open(tape_queue *q, int64_t cycle, int writable, tape_cyc *y)
{
    char name[80];
    int rc = tape_cycle_name(q, cycle, name, sizeof name);
    if (rc < 0)
        return rc;
    tape_cyc_init(y);
    rc = tape_view_open(&y->y_v, q->q_dirfd, name, writable);
    if (rc < 0)
        return rc;
    /* Only writers: the page cache's pages are made by the writer's faults
     * (readers' views are placed so as never to map huge pages). Failure (no
     * transparent huge pages in this kernel) leaves the kernel's choice. */
    if (writable && !q->q_small_pages)
        madvise(y->y_v.v_base, y->y_v.v_maplen, MADV_HUGEPAGE);
    const tape_cycle_hdr *h = (const tape_cycle_hdr *)y->y_v.v_base;
    uint64_t data = data_offset(q);
    if (y->y_v.v_size < data + 8 || memcmp(h->c_magic, "TAPECYCL", 8) != 0 ||
        tape_crc32c(0, h, offsetof(tape_cycle_hdr, c_crc)) != h->c_crc) {
        rc = TAPE_ECORRUPT;
    } else if (h->c_version != TAPE_VERSION) {
        rc = TAPE_EVERSION;
    } else if (h->c_cycle != cycle || h->c_seq_bits != (uint32_t)q->q_roll.r_seq_bits ||
               h->c_count_log2 != (uint32_t)q->q_roll.r_count_log2 ||
               h->c_spacing_log2 != (uint32_t)q->q_roll.r_spacing_log2 ||
               h->c_i2i_off != TAPE_PAGE || h->c_data_off != data) {
        rc = TAPE_ECORRUPT;
    }
    if (rc < 0) {
        tape_cyc_close(y);
        return rc;
    }
    y->y_cycle = cycle;
    y->y_seed = h->c_seed;
    y->y_i2i_off = h->c_i2i_off;
    y->y_data_off = h->c_data_off;
    return 0;
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
    h.c_version = TAPE_VERSION;
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
    int fd = t_openat(q->q_dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0)
        return -errno;
    /* A little room for the first entries; the prefaulter adds more as the
     * cycle fills. */
    off_t size = (off_t)(h.c_data_off + TAPE_FAULT_PIECE);
    rc = t_fallocate(fd, 0, size);
    if (rc < 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
        rc = t_ftruncate(fd, size); /* private until linked: cannot race */
    if (rc == 0 && pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        rc = -1;
    /* On disk before it has a name, so a name never leads to a file without
     * a header after a power loss. */
    if (rc == 0)
        rc = t_fdatasync(fd);
    rc = rc < 0 ? (errno ? -errno : -EIO) : 0;
    close(fd);
    /* Published whole under its final name; if it is already there (a writer
     * died after creating it), that one is used. */
    if (rc == 0 && t_linkat(q->q_dirfd, tmp, name) < 0 && errno != EEXIST)
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
int tape_cyc_walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last, int64_t *last_ts)
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
                *last_ts = ts;
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

uint64_t tape_cyc_dirty_after(tape_cyc *y, uint64_t pos, uint32_t h)
{
    uint64_t p = pos + 4;
    if ((h & TAPE_H_NC) && h != TAPE_H_EOF)
        p = pos + tape_entry_size((h & TAPE_H_LEN) > TAPE_L_EXTRA ? (h & TAPE_H_LEN) - TAPE_L_EXTRA : 0);
    if (tape_view_cover(&y->y_v, UINT64_MAX) < 0) /* all of the file */
        return 0;
    const uint8_t *b = y->y_v.v_base;
    for (; p < y->y_v.v_size && (p & 7); p++)
        if (b[p])
            return p;
    for (; p + 8 <= y->y_v.v_size; p += 8) {
        uint64_t w;
        memcpy(&w, b + p, 8);
        if (w)
            break;
    }
    for (; p < y->y_v.v_size; p++)
        if (b[p])
            return p;
    return 0;
}

int tape_cyc_find_end(tape_queue *q, tape_cyc *y, uint64_t *pos, uint64_t *seq,
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

int tape_cyc_locate(tape_queue *q, tape_cyc *y, uint64_t seq, uint64_t *pos)
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

/* ---- queue-wide views of the cycles ------------------------------------- */

/* The end of data by entry headers alone, from the first entry: what a
 * damaged cycle seems to hold. */
static int header_walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last)
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
    return 0;
}

/* The kept view keeps mapped what its last walks read, up to this far
 * behind the end of data, and releases the rest when the end has moved twice
 * as far. */
#define VIEW_KEEP ((uint64_t)4 << 20)

/* The queue's kept view, holding q_view_mu: the newest cycle's when `cycle`
 * is the newest, else NULL. A view of a cycle that is no longer the newest is
 * closed here, so that it does not keep the file's space once a purge removes
 * it. */
static tape_cyc *kept_view(tape_queue *q, int64_t cycle)
{
    int64_t newest = __atomic_load_n(&q->q_sh->m_highest, __ATOMIC_ACQUIRE);
    tape_cyc *y = &q->q_view;
    if (y->y_cycle >= 0 && y->y_cycle != newest)
        tape_cyc_close(y);
    if (cycle != newest)
        return NULL;
    if (y->y_cycle != cycle) {
        if (tape_cyc_open(q, cycle, 0, y) < 0)
            return NULL; /* the caller opens its own, and reports why */
        q->q_view_trimmed = y->y_data_off;
    }
    return y;
}

int tape_cycle_info_get(tape_queue *q, int64_t cycle, tape_cycle_info *out)
{
    pthread_mutex_lock(&q->q_view_mu);
    tape_cyc own, *y = kept_view(q, cycle);
    int kept = y != NULL, rc = 0;
    if (!kept) {
        pthread_mutex_unlock(&q->q_view_mu);
        y = &own;
        rc = tape_cyc_open(q, cycle, 0, y);
    }
    uint64_t end = 0, count;
    uint32_t h;
    if (rc == 0)
        rc = tape_cyc_find_end(q, y, &end, &count, &h, NULL);
    int damaged = rc == TAPE_ECORRUPT;
    if (damaged)
        rc = header_walk(y, &end, &count, &h);
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
    if (!kept || rc < 0 || damaged) {
        /* (a damaged cycle's walk maps all of it: not worth keeping) */
        tape_cyc_close(y);
    } else if (end > q->q_view_trimmed + 2 * VIEW_KEEP) {
        /* The end moves on as writers append: release the pages behind it,
         * all of them from the first entry on (the walks of earlier calls
         * may have mapped some below the last release). */
        tape_view_release(&y->y_v, y->y_data_off, end - VIEW_KEEP);
        q->q_view_trimmed = end;
    }
    if (kept)
        pthread_mutex_unlock(&q->q_view_mu);
    return rc;
}

/* Close the kept view if it is of `cycle` (about to be removed). */
static void drop_kept_view(tape_queue *q, int64_t cycle)
{
    pthread_mutex_lock(&q->q_view_mu);
    if (q->q_view.y_cycle == cycle)
        tape_cyc_close(&q->q_view);
    pthread_mutex_unlock(&q->q_view_mu);
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
        __atomic_store_n(&q->q_sh->m_lowest, lowest, __ATOMIC_RELEASE);
        __atomic_fetch_add(&q->q_sh->m_modcount, 1, __ATOMIC_RELEASE);
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
