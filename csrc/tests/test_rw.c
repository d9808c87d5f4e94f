/* test_rw.c - the reader/writer protocol in one thread: appending, reading
 * forward and backward, moving tailers, errors of open and append, and the
 * queue's bookkeeping (counts, cycles), as tape.h documents them.
 *
 * Most tests use "test_secondly" (4096 entries per cycle, an index array
 * every 128 entries) and explicit timestamps, so cycles, gaps between
 * cycles and index arrays are laid out deterministically. */
#include "test_harness.h"
#include "fault.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define T0_SEC 1700000000LL
#define T0 (T0_SEC * 1000000000LL)
#define SEC_NS 1000000000LL

/* ---- a model of what was written -------------------------------------------- */

typedef struct ment {
    int64_t index;
    int64_t ts;
    uint32_t len;
    int gi;           /* global number, seeds the payload */
} ment;

typedef struct model {
    ment e[1024];
    int n;
    int64_t cycles[8];
    int ncycles;
} model;

/* Cycle offsets from T0_SEC and entries in each: a gap at +2 and +4..+9. */
static const struct { int d; int count; } layout[] = {{0, 300}, {1, 1}, {3, 130}, {10, 5}};
#define NLAYOUT (int)(sizeof layout / sizeof layout[0])

static uint32_t gen_len(int gi) { return (uint32_t)((gi * 37) % 200); }

static void gen_payload(unsigned char *buf, int gi, uint32_t len)
{
    for (uint32_t j = 0; j < len; j++)
        buf[j] = (unsigned char)(gi * 31 + j * 7 + (gi >> 8));
}

static int payload_ok(const void *p, int gi, uint32_t len)
{
    const unsigned char *b = p;
    for (uint32_t j = 0; j < len; j++)
        if (b[j] != (unsigned char)(gi * 31 + j * 7 + (gi >> 8)))
            return 0;
    return 1;
}

/* Timestamps: the first entry of a cycle sits exactly on its boundary; the
 * others follow 1 us apart, so every timestamp is distinct. */
static int build(tape_queue *q, model *m)
{
    tape_appender *a = NULL;
    int rc = tape_appender_open(q, &a);
    if (rc < 0)
        return rc;
    unsigned char buf[256];
    m->n = 0;
    m->ncycles = 0;
    for (int l = 0; l < NLAYOUT; l++) {
        m->cycles[m->ncycles++] = T0_SEC + layout[l].d;
        for (int k = 0; k < layout[l].count; k++) {
            ment *e = &m->e[m->n];
            e->gi = m->n;
            e->len = gen_len(e->gi);
            e->ts = T0 + layout[l].d * SEC_NS + k * 1000LL;
            gen_payload(buf, e->gi, e->len);
            e->index = tape_append(a, buf, e->len, e->ts);
            if (e->index < 0) {
                rc = (int)e->index;
                tape_appender_close(a);
                return rc;
            }
            m->n++;
        }
    }
    tape_appender_close(a);
    return 0;
}

static int entry_ok(const tape_entry *e, const ment *m)
{
    if (e->e_index != m->index || e->e_timestamp != m->ts || e->e_len != m->len ||
        (m->len && !e->e_data) || !payload_ok(e->e_data, m->gi, m->len)) {
        TH_FAIL("entry %" PRId64 " ts %" PRId64 " len %u, want %" PRId64 " ts %" PRId64
                " len %u (gi %d)", e->e_index, e->e_timestamp, e->e_len, m->index,
                m->ts, m->len, m->gi);
        return 0;
    }
    return 1;
}

static int open_model(tape_queue **q, model *m)
{
    int rc = th_open("q", "test_secondly", "raw", q);
    if (rc < 0)
        return rc;
    return build(*q, m);
}

static model M; /* one model, rebuilt by each test that uses it */

/* ---- empty queue ------------------------------------------------------------ */

static void empty_queue_has_nothing_to_read(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(th_open("q", "test_secondly", "raw", &q), &q, &t));
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 0);
    char buf[64];
    int64_t idx[4], ts[4];
    uint64_t ends[4];
    EXPECT_EQ(tape_read_many(t, buf, sizeof buf, idx, ts, ends, 4), 0);
    EXPECT_EQ(tape_tailer_to_start(t), 0);
    EXPECT_EQ(tape_tailer_to_end(t), 0);
    EXPECT_EQ(tape_tailer_to_index(t, tape_make_index(q, T0_SEC, 0)), 0);
    EXPECT_EQ(tape_tailer_to_time(t, T0), 0);
    EXPECT_EQ(tape_tailer_last_read_index(t), -1);
    EXPECT_EQ(tape_read(t, &e), 0);
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    EXPECT_EQ(tape_tailer_to_end(t), 0);
    EXPECT_EQ(tape_read(t, &e), 0);
    EXPECT_EQ(tape_count(q), 0);
    EXPECT_EQ(tape_first_index(q), -1);
    EXPECT_EQ(tape_last_index(q), -1);
    int64_t cyc[4];
    EXPECT_EQ(tape_list_cycles(q, cyc, 4), 0);
    tape_cycle_info ci;
    EXPECT_EQ(tape_cycle_info_get(q, T0_SEC, &ci), -ENOENT);
    th_close_all(q, NULL, t);
}

/* ---- reading ---------------------------------------------------------------- */

static void forward_read_returns_every_entry_in_order(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    EXPECT_EQ(tape_tailer_direction(t), TAPE_FORWARD);
    EXPECT_EQ(tape_tailer_last_read_index(t), -1);
    tape_entry e;
    for (int i = 0; i < M.n; i++) {
        if (i == 0 || i == 299 || i == 300 || i == 301)
            EXPECT_EQ(tape_tailer_index(t), M.e[i].index);
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i]))
            break;
        EXPECT_EQ(tape_tailer_last_read_index(t), M.e[i].index);
    }
    EXPECT_EQ(tape_read(t, &e), 0);
    EXPECT_EQ(tape_read(t, &e), 0);
    EXPECT_EQ(tape_tailer_last_read_index(t), M.e[M.n - 1].index);
    th_close_all(q, NULL, t);
}

static void indexes_are_cycle_and_seq(void)
{
    tape_queue *q = NULL;
    CHECK_OK(open_model(&q, &M));
    int i = 0;
    for (int l = 0; l < NLAYOUT; l++)
        for (int k = 0; k < layout[l].count; k++, i++)
            EXPECT_EQ(M.e[i].index, tape_make_index(q, T0_SEC + layout[l].d, k));
    tape_close(q);
}

static void backward_read_returns_the_reverse(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    EXPECT_EQ(tape_tailer_direction(t), TAPE_BACKWARD);
    CHECK_OK(tape_tailer_to_end(t));
    tape_entry e;
    for (int i = M.n - 1; i >= 0; i--)
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i]))
            break;
    EXPECT_EQ(tape_read(t, &e), 0);
    EXPECT_EQ(tape_tailer_last_read_index(t), M.e[0].index);
    th_close_all(q, NULL, t);
}

static void read_many_with_small_buffers(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    /* cap 256 fits any one entry of the model (< 200 bytes). */
    size_t caps[] = {256, 300, 1000, 4096};
    size_t maxes[] = {1, 3, 7, 64};
    for (size_t c = 0; c < 4; c++) {
        CHECK_OK(tape_tailer_to_start(t));
        unsigned char buf[4096];
        int64_t idx[64], ts[64];
        uint64_t ends[64];
        int i = 0;
        for (;;) {
            int64_t n = tape_read_many(t, buf, caps[c], idx, ts, ends, maxes[c]);
            CHECK_OK(n);
            if (n == 0)
                break;
            CHECK((size_t)n <= maxes[c]);
            CHECK(ends[n - 1] <= caps[c]);
            for (int64_t k = 0; k < n; k++, i++) {
                CHECK(i < M.n);
                uint64_t start = k ? ends[k - 1] : 0;
                tape_entry e = {.e_index = idx[k], .e_timestamp = ts[k], .e_data = buf + start, .e_len = (uint32_t)(ends[k] - start)};
                if (!entry_ok(&e, &M.e[i]))
                    return;
            }
            EXPECT_EQ(tape_tailer_last_read_index(t), M.e[i - 1].index);
        }
        EXPECT_EQ(i, M.n);
    }
    th_close_all(q, NULL, t);
}

static void read_many_refuses_an_entry_larger_than_cap(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    unsigned char big[1000];
    memset(big, 0xAB, sizeof big);
    int64_t i0 = tape_append(a, "abc", 3, 0);
    int64_t i1 = tape_append(a, big, sizeof big, 0);
    CHECK_OK(i0);
    CHECK_OK(i1);
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    unsigned char buf[100];
    int64_t idx[8], ts[8];
    uint64_t ends[8];
    /* The first fits, the second does not: one entry is returned. */
    EXPECT_EQ(tape_read_many(t, buf, sizeof buf, idx, ts, ends, 8), 1);
    EXPECT_EQ(idx[0], i0);
    EXPECT_EQ(ends[0], 3);
    /* Now the first entry is too big: TAPE_EINVAL, the position stays. */
    EXPECT_EQ(tape_read_many(t, buf, sizeof buf, idx, ts, ends, 8), TAPE_EINVAL);
    EXPECT_EQ(tape_tailer_index(t), i1);
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT_EQ(e.e_index, i1);
    EXPECT_EQ(e.e_len, sizeof big);
    EXPECT(memcmp(e.e_data, big, sizeof big) == 0);
    th_close_all(q, a, t);
}

/* read_many follows the direction, as tape_read does. */
static void read_many_backward(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_OK(tape_tailer_to_end(t));
    unsigned char buf[2048];
    int64_t idx[16], ts[16];
    uint64_t ends[16];
    int i = M.n - 1;
    for (;;) {
        int64_t n = tape_read_many(t, buf, sizeof buf, idx, ts, ends, 16);
        CHECK_OK(n);
        if (n == 0)
            break;
        for (int64_t k = 0; k < n; k++, i--) {
            CHECK(i >= 0);
            uint64_t start = k ? ends[k - 1] : 0;
            tape_entry e = {.e_index = idx[k], .e_timestamp = ts[k], .e_data = buf + start, .e_len = (uint32_t)(ends[k] - start)};
            if (!entry_ok(&e, &M.e[i]))
                return;
        }
    }
    EXPECT_EQ(i, -1);
    th_close_all(q, NULL, t);
}

/* ---- moving ----------------------------------------------------------------- */

static void to_index_reaches_every_entry(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    tape_entry e;
    /* In a scrambled order, so that moves go back and forth. */
    for (int k = 0; k < M.n; k++) {
        int i = (int)(((int64_t)k * 211) % M.n);
        if (!EXPECT_EQ(tape_tailer_to_index(t, M.e[i].index), 1))
            break;
        EXPECT_EQ(tape_tailer_index(t), M.e[i].index);
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i]))
            break;
        if (i + 1 < M.n) {
            if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i + 1]))
                break;
        } else {
            EXPECT_EQ(tape_read(t, &e), 0);
        }
    }
    /* Backward: the entry itself, then the one before. */
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    for (int i = 0; i < M.n; i += 7) {
        CHECK_EQ(tape_tailer_to_index(t, M.e[i].index), 1);
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i]))
            break;
        if (i > 0) {
            if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i - 1]))
                break;
        } else {
            EXPECT_EQ(tape_read(t, &e), 0);
        }
    }
    th_close_all(q, NULL, t);
}

/* A move far from what the tailer read takes the entry's block with pread
 * into a 16 KiB buffer; entries of every size (some larger than the buffer,
 * some filling it exactly, index arrays between them), in two cycles, must
 * be found and read back, also when reads run on past the buffer or go
 * backward, and by a tailer that read nearby first (moves near what it read
 * go through the mapping, without pread). */
static void to_index_finds_entries_of_every_size(void)
{
    static const uint32_t sizes[] = {0, 1, 100, 5000, 16384 - 16, 16384, 17000, 40000, 7, 300, 16368, 2};
    enum { N = 600, NS = sizeof sizes / sizeof sizes[0] };
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "test_secondly", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    static unsigned char buf[40000];
    static ment want[N];
    for (int i = 0; i < N; i++) { /* two cycles: 0..399 and 400..599 */
        want[i].gi = i;
        want[i].len = sizes[(i * 5 + i / NS) % NS];
        want[i].ts = T0 + (i >= 400) * SEC_NS + i;
        gen_payload(buf, i, want[i].len);
        want[i].index = tape_append(a, buf, want[i].len, want[i].ts);
        CHECK(want[i].index >= 0);
    }
    tape_appender_close(a);
    tape_tailer *t = NULL, *fresh = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    CHECK_OK(tape_fault_configure(NULL, NULL)); /* count preads from here */
    for (int k = 0; k < N; k++) {
        int i = (int)(((int64_t)k * 241) % N);
        if (!EXPECT_EQ(tape_tailer_to_index(t, want[i].index), 1))
            break;
        int ok = 1;
        for (int j = i; ok && j < i + 3 && j < N; j++)
            ok = EXPECT_EQ(tape_read(t, &e), 1) && entry_ok(&e, &want[j]);
        CHECK_OK(tape_tailer_open(q, &fresh));
        ok = ok && EXPECT_EQ(tape_tailer_to_index(fresh, want[i].index), 1) &&
             EXPECT_EQ(tape_read(fresh, &e), 1) && entry_ok(&e, &want[i]);
        tape_tailer_close(fresh);
        if (!ok)
            break;
    }
    EXPECT(tape_fault_calls(TC_PREAD) > N);
    /* Backward after a far move: the entry, then the ones before it. */
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    for (int i = 7; i < N; i += 53) {
        CHECK_EQ(tape_tailer_to_index(t, want[i].index), 1);
        for (int j = i; j > i - 3; j--)
            if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &want[j]))
                break;
    }
    CHECK_OK(tape_tailer_set_direction(t, TAPE_FORWARD));
    /* A move into the other cycle that finds nothing leaves the position. */
    CHECK_EQ(tape_tailer_to_index(t, want[450].index), 1);
    EXPECT_EQ(tape_tailer_to_index(t, tape_make_index(q, T0_SEC, 1000)), 0);
    EXPECT(tape_read(t, &e) == 1 && entry_ok(&e, &want[450]));
    CHECK_EQ(tape_tailer_to_index(t, want[50].index), 1);
    EXPECT_EQ(tape_tailer_to_index(t, tape_make_index(q, T0_SEC + 1, 1000)), 0);
    EXPECT(tape_read(t, &e) == 1 && entry_ok(&e, &want[50]));
    /* Read a stretch in sequence: moves within it take no pread. */
    CHECK_OK(tape_tailer_to_start(t));
    for (int i = 0; i < 300; i++)
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &want[i]))
            break;
    CHECK_OK(tape_fault_configure(NULL, NULL));
    static const int near[] = {250, 100, 299, 20, 150};
    for (size_t m = 0; m < sizeof near / sizeof near[0]; m++) {
        CHECK_EQ(tape_tailer_to_index(t, want[near[m]].index), 1);
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &want[near[m]]))
            break;
    }
    EXPECT_EQ(tape_fault_calls(TC_PREAD), 0);
    CHECK_EQ(tape_tailer_to_index(t, want[380].index), 1);
    EXPECT(tape_read(t, &e) == 1 && entry_ok(&e, &want[380]));
    EXPECT(tape_fault_calls(TC_PREAD) > 0);
    th_close_all(q, NULL, t);
}

/* RssFile of /proc/self/status, in KiB: file pages mapped by this process. */
static long rss_file_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssFile: %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* A tailer that moves and then reads a stretch shorter than what it may
 * keep mapped, again and again, in either order and either direction, keeps
 * its resident memory bounded (32 MiB of pages, plus the index arrays). */
static void reading_in_stretches_keeps_resident_memory_bounded(void)
{
    enum { ESZ = 4000, N = 40000, STRETCH = 3000 /* ~12 MiB */ };
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "minutely", "raw", &q));
    tape_appender *a;
    CHECK_OK(tape_appender_open(q, &a));
    static unsigned char buf[ESZ];
    static int64_t idx[N];
    for (int i = 0; i < N; i++) {
        memcpy(buf, &i, sizeof i);
        CHECK_OK(idx[i] = tape_append(a, buf, ESZ, T0));
    }
    th_close_all(q, a, NULL); /* so that only the tailer maps the file */
    CHECK_OK(th_open("q", "minutely", "raw", &q));
    for (int order = 0; order < 4; order++) {
        int reverse = order & 1, backward = order >> 1;
        tape_tailer *t;
        CHECK_OK(tape_tailer_open(q, &t));
        CHECK_OK(tape_tailer_set_direction(t, backward ? TAPE_BACKWARD : TAPE_FORWARD));
        long base = rss_file_kib(), most = 0;
        for (int k = 0; k < 12; k++) {
            int from = (reverse ? 11 - k : k) * (N / 12) + (backward ? STRETCH : 0);
            CHECK_EQ(tape_tailer_to_index(t, idx[from]), 1);
            tape_entry e;
            for (int i = 0; i < STRETCH; i++) {
                CHECK_EQ(tape_read(t, &e), 1);
                int got;
                memcpy(&got, e.e_data, sizeof got);
                CHECK_EQ(got, backward ? from - i : from + i);
            }
            long grew = rss_file_kib() - base;
            most = grew > most ? grew : most;
        }
        if (!EXPECT(most < 48 * 1024))
            fprintf(stderr, "  %s moves, reading %s: RssFile grew by %ld KiB\n",
                    reverse ? "descending" : "ascending", backward ? "backward" : "forward", most);
        tape_tailer_close(t);
    }
    tape_close(q);
}

static void to_index_of_a_missing_entry_leaves_the_position(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    int64_t missing[] = {
        tape_make_index(q, T0_SEC, 300),       /* one past a sealed cycle's last */
        tape_make_index(q, T0_SEC, 4095),      /* last seq of a cycle */
        tape_make_index(q, T0_SEC + 1, 1),
        tape_make_index(q, T0_SEC + 2, 0),     /* a cycle without file */
        tape_make_index(q, T0_SEC + 5, 17),
        tape_make_index(q, T0_SEC + 10, 5),    /* one past the last entry */
        tape_make_index(q, T0_SEC + 10, 4000),
        tape_make_index(q, T0_SEC + 11, 0),    /* a future cycle */
        tape_make_index(q, T0_SEC + 100000, 3),
        tape_make_index(q, T0_SEC - 1, 0),     /* before the first cycle */
        tape_make_index(q, 0, 0),
        0,
        -1,
        INT64_MIN,
    };
    tape_entry e;
    for (size_t m = 0; m < sizeof missing / sizeof missing[0]; m++) {
        for (int d = 0; d < 2; d++) {
            int at = d ? 301 : 5;
            CHECK_OK(tape_tailer_set_direction(t, d ? TAPE_BACKWARD : TAPE_FORWARD));
            CHECK_EQ(tape_tailer_to_index(t, M.e[at].index), 1);
            int rc = tape_tailer_to_index(t, missing[m]);
            if (!EXPECT(rc == 0 || (missing[m] < 0 && rc == TAPE_EINVAL)))
                fprintf(stderr, "  to_index(%" PRId64 ") = %d\n", missing[m], rc);
            EXPECT_EQ(tape_tailer_index(t), M.e[at].index);
            if (EXPECT_EQ(tape_read(t, &e), 1))
                entry_ok(&e, &M.e[at]);
        }
    }
    th_close_all(q, NULL, t);
}

static void to_start_and_to_end_in_both_directions(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    tape_entry e;
    ment *first = &M.e[0], *last = &M.e[M.n - 1];

    CHECK_OK(tape_tailer_to_index(t, M.e[200].index));
    CHECK_OK(tape_tailer_to_start(t));
    EXPECT_EQ(tape_read(t, &e), 1);
    entry_ok(&e, first);

    CHECK_OK(tape_tailer_to_end(t));
    EXPECT_EQ(tape_read(t, &e), 0);     /* forward to_end: only new entries */

    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_OK(tape_tailer_to_end(t));
    EXPECT_EQ(tape_read(t, &e), 1);     /* backward to_end: the last entry */
    entry_ok(&e, last);
    EXPECT_EQ(tape_read(t, &e), 1);
    entry_ok(&e, &M.e[M.n - 2]);

    CHECK_OK(tape_tailer_to_start(t));  /* backward to_start: at the first */
    EXPECT_EQ(tape_read(t, &e), 1);
    entry_ok(&e, first);
    EXPECT_EQ(tape_read(t, &e), 0);

    /* A forward tailer at the end sees only what is appended later, even
     * in a later cycle. */
    CHECK_OK(tape_tailer_set_direction(t, TAPE_FORWARD));
    CHECK_OK(tape_tailer_to_end(t));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    int64_t i1 = tape_append(a, "new", 3, T0 + 20 * SEC_NS);
    CHECK_OK(i1);
    EXPECT_EQ(tape_index_cycle(q, i1), T0_SEC + 20);
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT_EQ(e.e_index, i1);
    EXPECT_EQ(e.e_len, 3);
    EXPECT_EQ(tape_read(t, &e), 0);
    tape_appender_close(a);
    th_close_all(q, NULL, t);
}

static void to_time_finds_the_first_entry_at_or_after(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_model(&q, &M), &q, &t));
    tape_entry e;
    /* Every cycle boundary, with or without a file, from before the first
     * to after the last. */
    for (int d = -2; d <= 12; d++) {
        int64_t ts = T0 + d * SEC_NS;
        int want = -1;
        for (int i = 0; i < M.n; i++)
            if (M.e[i].ts >= ts) {
                want = i;
                break;
            }
        CHECK_OK(tape_tailer_to_start(t));
        int rc = tape_tailer_to_time(t, ts);
        if (want < 0) {
            EXPECT_EQ(rc, 0);
            EXPECT_EQ(tape_read(t, &e), 1);  /* unchanged: still at start */
            entry_ok(&e, &M.e[0]);
            continue;
        }
        if (!EXPECT_EQ(rc, 1))
            fprintf(stderr, "  to_time(T0 %+d s)\n", d);
        if (EXPECT_EQ(tape_read(t, &e), 1))
            entry_ok(&e, &M.e[want]);
    }
    /* At, just before and just after every entry's timestamp. */
    for (int i = 0; i < M.n; i++) {
        CHECK_EQ(tape_tailer_to_time(t, M.e[i].ts), 1);
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i]))
            break;
        CHECK_EQ(tape_tailer_to_time(t, M.e[i].ts - 1), 1);
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i]))
            break;
        if (i + 1 < M.n) {
            CHECK_EQ(tape_tailer_to_time(t, M.e[i].ts + 1), 1);
            if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i + 1]))
                break;
        }
    }
    /* After the last: 0, position unchanged. */
    CHECK_EQ(tape_tailer_to_index(t, M.e[42].index), 1);
    EXPECT_EQ(tape_tailer_to_time(t, M.e[M.n - 1].ts + 1), 0);
    EXPECT_EQ(tape_read(t, &e), 1);
    entry_ok(&e, &M.e[42]);
    th_close_all(q, NULL, t);
}

/* ---- payloads --------------------------------------------------------------- */

static void payload_sizes_round_trip(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    size_t sizes[] = {0, 1, 7, 8, 9, 65536, 64u << 20, 3, 0};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    unsigned char *buf = malloc(64u << 20);
    CHECK(buf);
    int64_t idx[NS];
    for (size_t s = 0; s < NS; s++) {
        for (size_t j = 0; j < sizes[s]; j++)
            buf[j] = (unsigned char)(j * 131 + s + (j >> 16));
        idx[s] = tape_append(a, buf, sizes[s], 0);
        CHECK_OK(idx[s]);
        EXPECT_EQ(tape_appender_last_index(a), idx[s]);
        if (s)
            EXPECT(idx[s] > idx[s - 1]);
    }
    CHECK_OK(tape_appender_sync(a));
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    for (size_t s = 0; s < NS; s++) {
        tape_entry e;
        CHECK_EQ(tape_read(t, &e), 1);
        EXPECT_EQ(e.e_index, idx[s]);
        CHECK_EQ(e.e_len, sizes[s]);
        const unsigned char *p = e.e_data;
        for (size_t j = 0; j < sizes[s]; j++)
            if (p[j] != (unsigned char)(j * 131 + s + (j >> 16))) {
                TH_FAIL("payload %zu differs at byte %zu", s, j);
                break;
            }
    }
    /* read_many copies them too, the 64 MiB one with a buffer that fits. */
    CHECK_OK(tape_tailer_to_start(t));
    int64_t ri[NS], rt[NS];
    uint64_t ends[NS];
    int got = 0;
    while (got < NS) {
        int64_t n = tape_read_many(t, buf, 64u << 20, ri + got, rt + got, ends + got,
                                   (size_t)(NS - got));
        CHECK(n > 0);
        for (int64_t k = 0; k < n; k++) {
            uint64_t start = k ? ends[got + k - 1] : 0;
            EXPECT_EQ(ri[got + k], idx[got + k]);
            EXPECT_EQ(ends[got + k] - start, sizes[got + k]);
            if (sizes[got + k] == 65536)
                EXPECT_EQ(buf[start + 1000], (unsigned char)(1000 * 131 + 5));
        }
        got += (int)n;
    }
    free(buf);
    th_close_all(q, a, t);
}

static void too_big_payload_is_refused(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    /* A readable region larger than the limit, backed by the zero page. */
    size_t len = (size_t)TAPE_MAX_PAYLOAD + 1;
    void *p = mmap(NULL, len + 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(p != MAP_FAILED);
    EXPECT_EQ(tape_append(a, p, len, 0), TAPE_ETOOBIG);
    /* In a batch: the entries before it may be written or not, but
     * *written says which. */
    uint64_t ends[2] = {1, 1 + len};
    size_t written = 99;
    EXPECT_EQ(tape_append_many(a, p, ends, 2, 0, &written), TAPE_ETOOBIG);
    EXPECT(written <= 1);
    munmap(p, len + 4096);
    EXPECT_EQ(tape_count(q), (int64_t)written);
    th_close_all(q, a, NULL);
}

/* A full disk must be an error code, never SIGBUS. RLIMIT_FSIZE makes
 * fallocate fail (EFBIG) the way a full disk does (ENOSPC), in a child
 * process so that a crash is a failure and the limit stays there. */
static void file_size_limit_is_a_clean_error(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {8u << 20, 8u << 20};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(30);
        tape_queue *q = NULL;
        tape_appender *a = NULL;
        if (th_open("q", "daily", "raw", &q) != 0 || tape_appender_open(q, &a) != 0)
            _exit(31);
        static unsigned char buf[1000];
        int64_t ok = 0, rc = 0;
        for (int i = 0; i < 20000; i++) {
            memset(buf, i & 0xff, sizeof buf);
            rc = tape_append(a, buf, sizeof buf, 0);
            if (rc < 0)
                break;
            ok++;
        }
        if (rc != -EFBIG && rc != -ENOSPC) {
            fprintf(stderr, "  after %" PRId64 " appends: %" PRId64 " (%s)\n", ok, rc,
                    tape_strerror((int)rc));
            _exit(32);
        }
        /* Later appends fail the same way; what was written is intact. */
        rc = tape_append(a, buf, sizeof buf, 0);
        if (rc >= 0)
            ok++;
        tape_appender_close(a);
        if (tape_count(q) != ok)
            _exit(33);
        tape_tailer *t = NULL;
        if (tape_tailer_open(q, &t) != 0)
            _exit(34);
        tape_entry e;
        int64_t n = 0;
        while (tape_read(t, &e) == 1) {
            const unsigned char *p = e.e_data;
            if (e.e_len != sizeof buf || p[0] != (n & 0xff) || p[999] != (n & 0xff))
                _exit(35);
            n++;
        }
        tape_tailer_close(t);
        tape_close(q);
        _exit(n == ok && ok > 1000 ? 0 : 36);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    if (!EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        if (WIFSIGNALED(st))
            fprintf(stderr, "  killed by signal %d\n", WTERMSIG(st));
        else
            fprintf(stderr, "  exit %d\n", WEXITSTATUS(st));
    }
}

static void append_many_writes_a_batch(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "test_secondly", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    unsigned char data[4096];
    uint64_t ends[40];
    uint64_t off = 0;
    for (int k = 0; k < 40; k++) {
        uint32_t len = gen_len(k) / 2;
        gen_payload(data + off, k, len);
        off += len;
        ends[k] = off;
    }
    size_t written = 0;
    int64_t last = tape_append_many(a, data, ends, 40, T0 + 5, &written);
    CHECK_OK(last);
    EXPECT_EQ(written, 40);
    EXPECT_EQ(last, tape_make_index(q, T0_SEC, 39));
    EXPECT_EQ(tape_appender_last_index(a), last);
    /* A second batch continues the sequence; the timestamp is raised. */
    int64_t last2 = tape_append_many(a, data, ends, 3, T0 + 1, &written);
    EXPECT_EQ(last2, last + 3);
    EXPECT_EQ(written, 3);
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    for (int k = 0; k < 43; k++) {
        CHECK_EQ(tape_read(t, &e), 1);
        int gi = k % 40;
        ment m = {last - 39 + k, T0 + 5, gen_len(gi) / 2, gi};
        if (!entry_ok(&e, &m))
            break;
    }
    EXPECT_EQ(tape_read(t, &e), 0);
    th_close_all(q, a, t);
}

/* ---- reopening and open errors --------------------------------------------- */

static void reopened_queue_reads_the_same(void)
{
    tape_queue *q = NULL;
    CHECK_OK(open_model(&q, &M));
    tape_close(q);
    for (int ro = 0; ro < 2; ro++) {
        tape_open_opts o;
        memset(&o, 0, sizeof o);
        o.oo_read_only = ro;
        CHECK_OK(tape_open(th_path("q"), &o, &q));
        tape_queue_info qi;
        CHECK_OK(tape_queue_info_get(q, &qi));
        EXPECT(strcmp(qi.qi_roll_cycle, "test_secondly") == 0);
        EXPECT(strcmp(qi.qi_codec, "raw") == 0);
        EXPECT_EQ(tape_count(q), M.n);
        tape_tailer *t = NULL;
        CHECK_OK(tape_tailer_open(q, &t));
        tape_entry e;
        for (int i = 0; i < M.n; i++)
            if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, &M.e[i]))
                break;
        EXPECT_EQ(tape_read(t, &e), 0);
        CHECK_EQ(tape_tailer_to_index(t, M.e[350].index), 1);
        EXPECT_EQ(tape_read(t, &e), 1);
        entry_ok(&e, &M.e[350]);
        tape_tailer_close(t);
        tape_close(q);
    }
    /* A reopened writer continues after the last entry. */
    CHECK_OK(th_open("q", NULL, NULL, &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    int64_t i = tape_append(a, "x", 1, M.e[M.n - 1].ts);
    EXPECT_EQ(i, M.e[M.n - 1].index + 1);
    th_close_all(q, a, NULL);
}

static void read_only_queue_refuses_appenders(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    CHECK_OK(tape_append(a, "hello", 5, 0));
    th_close_all(q, a, NULL);

    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = 1;
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    a = NULL;
    EXPECT_EQ(tape_appender_open(q, &a), TAPE_EREADONLY);
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT(e.e_len == 5 && memcmp(e.e_data, "hello", 5) == 0);
    th_close_all(q, NULL, t);

    /* Read-only and missing: an error, never a new queue. */
    o.oo_create = 1;
    int rc = tape_open(th_path("nothere"), &o, &q);
    EXPECT(rc < 0);
    if (rc == 0)
        tape_close(q);
    EXPECT(access(th_path("nothere/tape.meta"), F_OK) != 0);
}

/* A reader without write permission on the directory and the files (a
 * child process that drops root, when the tests run as root). */
static void read_only_works_without_write_permission(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    CHECK_OK(tape_append(a, "hello", 5, 0));
    tape_appender_close(a);
    char name[64], path[256];
    CHECK_OK(tape_cycle_name(q, tape_index_cycle(q, tape_last_index(q)), name, sizeof name));
    tape_close(q);
    snprintf(path, sizeof path, "q/%s", name);
    CHECK(chmod(th_path(path), 0444) == 0);
    CHECK(chmod(th_path("q/tape.meta"), 0444) == 0);
    CHECK(chmod(th_path("q"), 0555) == 0);
    CHECK(chmod(th_root, 0711) == 0);
    CHECK(chmod(th_dir, 0711) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        tape_open_opts o;
        memset(&o, 0, sizeof o);
        o.oo_read_only = 1;
        tape_queue *rq = NULL;
        int rc = tape_open(th_path("q"), &o, &rq);
        if (rc != 0) {
            fprintf(stderr, "  read-only open without permission: %s\n", tape_strerror(rc));
            _exit(1);
        }
        tape_tailer *t = NULL;
        tape_entry e;
        int ok = tape_count(rq) == 1 && tape_tailer_open(rq, &t) == 0 &&
                 tape_read(t, &e) == 1 && e.e_len == 5 && memcmp(e.e_data, "hello", 5) == 0;
        if (t)
            tape_tailer_close(t);
        tape_close(rq);
        _exit(ok ? 0 : 2);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    if (!EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fprintf(stderr, "  child status %#x\n", st);
    chmod(th_path("q"), 0755);
    chmod(th_dir, 0700);
    chmod(th_root, 0700);
}

static void non_queue_directory_is_refused(void)
{
    CHECK(mkdir(th_path("d"), 0755) == 0);
    int fd = open(th_path("d/notes.txt"), O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "hi\n", 3) == 3);
    close(fd);
    tape_queue *q = NULL;
    EXPECT_EQ(th_open("d", "daily", "raw", &q), TAPE_ENOTQUEUE);
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    EXPECT_EQ(tape_open(th_path("d"), &o, &q), TAPE_ENOTQUEUE);
    /* Nothing was added to it. */
    EXPECT(access(th_path("d/tape.meta"), F_OK) != 0);

    /* Missing without oo_create: -ENOENT, and nothing is created. */
    EXPECT_EQ(tape_open(th_path("missing"), &o, &q), -ENOENT);
    EXPECT(access(th_path("missing"), F_OK) != 0);

    /* An empty existing directory becomes a queue. */
    CHECK(mkdir(th_path("empty"), 0755) == 0);
    CHECK_OK(th_open("empty", "daily", "raw", &q));
    tape_close(q);
}

static void reopen_with_other_settings_is_incompatible(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "hourly", "raw", &q));
    tape_close(q);
    EXPECT_EQ(th_open("q", "hourly", "msgpack", &q), TAPE_EINCOMPAT);
    EXPECT_EQ(th_open("q", "daily", "raw", &q), TAPE_EINCOMPAT);
    EXPECT_EQ(th_open("q", "daily", NULL, &q), TAPE_EINCOMPAT);
    EXPECT_EQ(th_open("q", NULL, "msgpack", &q), TAPE_EINCOMPAT);
    /* None given, or the same ones: the stored ones are used. */
    CHECK_OK(th_open("q", NULL, NULL, &q));
    tape_queue_info qi;
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT(strcmp(qi.qi_roll_cycle, "hourly") == 0);
    EXPECT(strcmp(qi.qi_codec, "raw") == 0);
    tape_close(q);
    CHECK_OK(th_open("q", "hourly", "raw", &q));
    tape_close(q);

    /* Defaults at creation: daily and msgpack. */
    CHECK_OK(th_open("q2", NULL, NULL, &q));
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT(strcmp(qi.qi_roll_cycle, "daily") == 0);
    EXPECT(strcmp(qi.qi_codec, "msgpack") == 0);
    tape_close(q);
}

/* ---- appending rules -------------------------------------------------------- */

static void full_cycle_is_refused(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "test_secondly", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    for (int i = 0; i < 4096; i++) {
        int64_t idx = tape_append(a, &i, sizeof i, T0 + 500000000LL + i);
        CHECK_EQ(idx, tape_make_index(q, T0_SEC, i));
    }
    EXPECT_EQ(tape_append(a, "x", 1, T0 + 999999999LL), TAPE_ECYCLEFULL);
    size_t written = 7;
    uint64_t ends[1] = {1};
    EXPECT_EQ(tape_append_many(a, "x", ends, 1, T0 + 999999999LL, &written),
              TAPE_ECYCLEFULL);
    EXPECT_EQ(written, 0);
    EXPECT_EQ(tape_count(q), 4096);
    EXPECT_EQ(tape_last_index(q), tape_make_index(q, T0_SEC, 4095));
    /* The next second rolls and works again. */
    int64_t idx = tape_append(a, "y", 1, T0 + SEC_NS);
    EXPECT_EQ(idx, tape_make_index(q, T0_SEC + 1, 0));
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_EQ(tape_tailer_to_index(t, tape_make_index(q, T0_SEC, 4095)), 1);
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT_EQ(e.e_len, sizeof(int));
    int v;
    memcpy(&v, e.e_data, sizeof v);
    EXPECT_EQ(v, 4095);
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT(e.e_len == 1 && ((const char *)e.e_data)[0] == 'y');
    EXPECT_EQ(tape_read(t, &e), 0);
    th_close_all(q, a, t);
}

/* tape.h: on error, the entries before the failing one are written and
 * *written tells how many. */
static void append_many_stops_at_a_full_cycle(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "test_secondly", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    for (int i = 0; i < 4090; i++)
        CHECK_OK(tape_append(a, &i, sizeof i, T0));
    unsigned char data[10];
    uint64_t ends[10];
    for (int k = 0; k < 10; k++) {
        data[k] = (unsigned char)k;
        ends[k] = (uint64_t)k + 1;
    }
    size_t written = 99;
    EXPECT_EQ(tape_append_many(a, data, ends, 10, T0, &written), TAPE_ECYCLEFULL);
    EXPECT_EQ(written, 6);
    EXPECT_EQ(tape_count(q), 4096);
    EXPECT_EQ(tape_appender_last_index(a), tape_make_index(q, T0_SEC, 4095));
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_EQ(tape_tailer_to_index(t, tape_make_index(q, T0_SEC, 4095)), 1);
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT(e.e_len == 1 && ((const unsigned char *)e.e_data)[0] == 5);
    th_close_all(q, a, t);
}

static void timestamps_never_decrease(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "test_secondly", "raw", &q));
    tape_appender *a = NULL, *b = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    CHECK_OK(tape_appender_open(q, &b));
    int64_t ts_in[] = {T0 + 5 * SEC_NS + 7, T0 + 1 * SEC_NS, T0, T0 + 5 * SEC_NS + 8,
                       T0 + 2 * SEC_NS, 0};
    enum { N = sizeof ts_in / sizeof ts_in[0] };
    int64_t idx[N];
    int64_t wall0 = th_wall_ns();
    for (int i = 0; i < N; i++) {
        idx[i] = tape_append(i % 2 ? b : a, &i, sizeof i, ts_in[i]);
        CHECK_OK(idx[i]);
    }
    int64_t wall1 = th_wall_ns();
    int64_t want[N] = {T0 + 5 * SEC_NS + 7, T0 + 5 * SEC_NS + 7, T0 + 5 * SEC_NS + 7,
                       T0 + 5 * SEC_NS + 8, T0 + 5 * SEC_NS + 8, 0};
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    for (int i = 0; i < N; i++) {
        CHECK_EQ(tape_read(t, &e), 1);
        EXPECT_EQ(e.e_index, idx[i]);
        if (i < N - 1) {
            EXPECT_EQ(e.e_timestamp, want[i]);
            /* A lowered timestamp stays in the newest cycle. */
            EXPECT_EQ(tape_index_cycle(q, idx[i]), T0_SEC + 5);
        } else {
            EXPECT(e.e_timestamp >= wall0 && e.e_timestamp <= wall1);
        }
        if (i)
            EXPECT(idx[i] > idx[i - 1]);
    }
    tape_queue_info qi;
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT_EQ(qi.qi_last_timestamp, e.e_timestamp);
    tape_tailer_close(t);
    tape_appender_close(a);
    tape_appender_close(b);
    tape_close(q);
}

static void tailer_opened_early_sees_later_cycles(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(th_open("q", "test_secondly", "raw", &q), &q, &t));
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 0);
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    for (int d = 0; d < 6; d += 2) {
        for (int k = 0; k < 3; k++) {
            int v = d * 10 + k;
            int64_t idx = tape_append(a, &v, sizeof v, T0 + d * SEC_NS + k);
            CHECK_OK(idx);
            CHECK_EQ(tape_read(t, &e), 1);
            EXPECT_EQ(e.e_index, idx);
            int got;
            memcpy(&got, e.e_data, sizeof got);
            EXPECT_EQ(got, v);
            EXPECT_EQ(tape_read(t, &e), 0);
        }
    }
    tape_appender_close(a);
    th_close_all(q, NULL, t);
}

/* ---- bookkeeping -------------------------------------------------------------- */

static void counts_and_cycles_agree_with_what_was_written(void)
{
    tape_queue *q = NULL;
    CHECK_OK(open_model(&q, &M));
    EXPECT_EQ(tape_count(q), M.n);
    EXPECT_EQ(tape_first_index(q), M.e[0].index);
    EXPECT_EQ(tape_last_index(q), M.e[M.n - 1].index);

    int64_t cyc[8];
    EXPECT_EQ(tape_list_cycles(q, cyc, 8), M.ncycles);
    for (int c = 0; c < M.ncycles; c++)
        EXPECT_EQ(cyc[c], M.cycles[c]);
    int64_t two[3] = {-7, -7, -7};
    EXPECT_EQ(tape_list_cycles(q, two, 2), M.ncycles);
    EXPECT_EQ(two[0], M.cycles[0]);
    EXPECT_EQ(two[1], M.cycles[1]);
    EXPECT_EQ(two[2], -7);
    EXPECT_EQ(tape_list_cycles(q, NULL, 0), M.ncycles);

    tape_queue_info qi;
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT_EQ(qi.qi_lowest_cycle, M.cycles[0]);
    EXPECT_EQ(qi.qi_highest_cycle, M.cycles[M.ncycles - 1]);
    EXPECT_EQ(qi.qi_last_timestamp, M.e[M.n - 1].ts);
    EXPECT_EQ(qi.qi_seq_bits, 12);

    int i = 0;
    for (int l = 0; l < NLAYOUT; l++) {
        tape_cycle_info ci;
        CHECK_OK(tape_cycle_info_get(q, M.cycles[l], &ci));
        EXPECT_EQ(ci.ci_cycle, M.cycles[l]);
        EXPECT_EQ(ci.ci_entries, layout[l].count);
        EXPECT_EQ(ci.ci_first_index, M.e[i].index);
        EXPECT_EQ(ci.ci_last_index, M.e[i + layout[l].count - 1].index);
        EXPECT_EQ(ci.ci_sealed, l < NLAYOUT - 1);
        uint64_t data = 0;
        for (int k = 0; k < layout[l].count; k++)
            data += 16 + ((M.e[i + k].len + 7u) & ~7u);
        uint64_t arrays = ((uint64_t)layout[l].count + 127) / 128;
        /* Data entries, plus perhaps index arrays and the end marker. */
        if (!EXPECT(ci.ci_bytes >= data && ci.ci_bytes <= data + arrays * (16 + 256) + 16))
            fprintf(stderr, "  cycle %d: ci_bytes %" PRIu64 ", data %" PRIu64 "\n", l,
                    ci.ci_bytes, data);
        char name[64], path[256];
        CHECK_OK(tape_cycle_name(q, M.cycles[l], name, sizeof name));
        snprintf(path, sizeof path, "q/%s", name);
        struct stat st;
        CHECK(stat(th_path(path), &st) == 0);
        EXPECT_EQ(ci.ci_file_bytes, st.st_size);
        i += layout[l].count;
    }
    tape_cycle_info ci;
    EXPECT_EQ(tape_cycle_info_get(q, T0_SEC + 2, &ci), -ENOENT);
    EXPECT_EQ(tape_cycle_info_get(q, T0_SEC + 11, &ci), -ENOENT);
    tape_close(q);
}

/* A handle that only reads keeps the newest cycle open between questions:
 * its answers must still follow appends made through another handle, rolls
 * to a new cycle, and the removal of an old one. */
static void counts_follow_appends_rolls_and_removals(void)
{
    tape_queue *rq = NULL, *wq = NULL;
    CHECK_OK(th_open("q", "test_secondly", "raw", &wq));
    CHECK_OK(th_open("q", "test_secondly", "raw", &rq));
    tape_appender *a = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(tape_appender_open(wq, &a));
    CHECK_OK(tape_tailer_open(rq, &t));
    EXPECT_EQ(tape_count(rq), 0);
    EXPECT_EQ(tape_last_index(rq), -1);
    int64_t first = -1, last = -1, n = 0, first_of[3];
    char buf[3000];
    memset(buf, 7, sizeof buf);
    for (int c = 0; c < 3; c++) {
        for (int k = 0; k < 1200; k++) {
            last = tape_append(a, buf, (size_t)(k * 13) % sizeof buf, T0 + c * SEC_NS + k);
            CHECK(last >= 0);
            if (k == 0)
                first_of[c] = last;
            if (first < 0)
                first = last;
            n++;
            if (k % 97 && k != 1199)
                continue;
            EXPECT_EQ(tape_count(rq), n);
            EXPECT_EQ(tape_first_index(rq), first);
            if (!EXPECT_EQ(tape_last_index(rq), last))
                fprintf(stderr, "  cycle %d, entry %d\n", c, k);
            /* The writer's prefaulter may extend the file meanwhile. */
            char name[64], path[256];
            CHECK_OK(tape_cycle_name(rq, T0_SEC + c, name, sizeof name));
            snprintf(path, sizeof path, "q/%s", name);
            struct stat before, after;
            CHECK(stat(th_path(path), &before) == 0);
            tape_cycle_info ci;
            CHECK_OK(tape_cycle_info_get(rq, T0_SEC + c, &ci));
            CHECK(stat(th_path(path), &after) == 0);
            EXPECT_EQ(ci.ci_entries, k + 1);
            EXPECT_EQ(ci.ci_last_index, last);
            EXPECT(ci.ci_file_bytes >= (uint64_t)before.st_size &&
                   ci.ci_file_bytes <= (uint64_t)after.st_size);
            /* to_end stays in its cycle, and the next read waits for the next append. */
            tape_entry e;
            CHECK_OK(tape_tailer_to_end(t));
            EXPECT_EQ(tape_read(t, &e), 0);
        }
    }
    CHECK_OK(tape_remove_cycle(wq, T0_SEC));
    EXPECT_EQ(tape_first_index(rq), first_of[1]);
    EXPECT_EQ(tape_count(rq), n - 1200);
    EXPECT_EQ(tape_last_index(rq), last);
    tape_cycle_info ci;
    EXPECT_EQ(tape_cycle_info_get(rq, T0_SEC, &ci), -ENOENT);
    tape_tailer_close(t);
    tape_appender_close(a);
    tape_close(rq);
    tape_close(wq);
}

/* Rss (KiB) of this process's mappings of cycle files, but for appenders'
 * (their mappings reserve TAPE_MAP_MIN_WRITER of address space or more). */
static long reader_rss_kib(void)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    long total = 0, kib;
    int in = 0;
    unsigned long lo, hi;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            in = strstr(line, TAPE_SUFFIX) && hi - lo < TAPE_MAP_MIN_WRITER;
        else if (in && sscanf(line, "Rss: %ld kB", &kib) == 1)
            total += kib;
    }
    if (f)
        fclose(f);
    return total;
}

/* How many mappings of removed cycle files this process holds. */
static int removed_files_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, TAPE_SUFFIX " (deleted)") != NULL;
    if (f)
        fclose(f);
    return n;
}

/* The newest cycle, which a handle keeps open for its questions, stops being
 * kept at the first question after a newer one appears, whichever cycle it
 * is about: a purge then frees the file's space. */
static void kept_newest_cycle_is_let_go_after_a_roll(void)
{
    tape_queue *wq, *rq;
    CHECK_OK(th_open("q", "test_secondly", "raw", &wq));
    CHECK_OK(th_open("q", "test_secondly", "raw", &rq));
    tape_appender *a;
    CHECK_OK(tape_appender_open(wq, &a));
    char buf[1000] = {0};
    for (int k = 0; k < 100; k++)
        CHECK(tape_append(a, buf, sizeof buf, T0 + k) >= 0);
    CHECK(tape_last_index(rq) >= 0); /* keeps cycle T0_SEC */
    for (int k = 0; k < 100; k++)
        CHECK(tape_append(a, buf, sizeof buf, T0 + SEC_NS + k) >= 0);
    tape_cycle_info ci;
    CHECK_OK(tape_cycle_info_get(rq, T0_SEC, &ci)); /* no longer the newest */
    EXPECT_EQ(ci.ci_entries, 100);
    CHECK_OK(tape_remove_cycle(wq, T0_SEC));
    EXPECT_EQ(removed_files_mapped(), 0);
    EXPECT_EQ(tape_first_index(rq), tape_make_index(rq, T0_SEC + 1, 0));
    tape_appender_close(a);
    tape_close(rq);
    tape_close(wq);
}

/* Moving to the end again and again while the end moves on, with entries of
 * 256 KiB, keeps the tailer's resident memory bounded; so does counting the
 * entries of a newest cycle whose end is damaged (which walks all of it). */
static void questions_about_the_end_keep_resident_memory_bounded(void)
{
    tape_queue *q;
    CHECK_OK(th_open("q", "hourly", "raw", &q));
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(tape_appender_open(q, &a));
    CHECK_OK(tape_tailer_open(q, &t));
    const size_t sz = 256 << 10;
    char *buf = calloc(1, sz);
    CHECK(buf);
    long most = 0;
    int64_t last = -1;
    for (int k = 0; k < 800; k++) { /* 200 MiB */
        CHECK((last = tape_append(a, buf, sz, T0 + k)) >= 0);
        if (k % 16 == 15) {
            tape_entry e;
            CHECK_OK(tape_tailer_to_end(t));
            EXPECT_EQ(tape_read(t, &e), 0);
            EXPECT_EQ(tape_count(q), k + 1);
            long r = reader_rss_kib();
            most = r > most ? r : most;
        }
    }
    free(buf);
    if (!EXPECT(most < 80 * 1024))
        fprintf(stderr, "  to_end and count while appending: %ld KiB resident\n", most);
    tape_tailer_close(t);
    tape_appender_close(a);
    /* Damage the newest entry's payload: counting walks every header. */
    tape_cyc y;
    CHECK_OK(tape_cyc_open(q, tape_index_cycle(q, last), 1, &y));
    uint64_t pos;
    CHECK_EQ(tape_cyc_locate(q, &y, (uint64_t)tape_index_seq(q, last), &pos), 1);
    y.y_v.v_base[pos + 100] ^= 0x5a;
    tape_cyc_close(&y);
    tape_close(q);
    CHECK_OK(th_open("q", "hourly", "raw", &q));
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(tape_count(q), 800);
        long r = reader_rss_kib();
        if (!EXPECT(r < 16 * 1024))
            fprintf(stderr, "  counting a damaged cycle: %ld KiB resident\n", r);
    }
    tape_close(q);
}

/* This process's writable mapping of a cycle file under `dir`: its address
 * range, and whether it has MADV_HUGEPAGE ("hg" in its VmFlags). Returns 1
 * or 0 for that flag, -1 when there is no such mapping. */
static int writer_mapping(const char *dir, unsigned long *start, unsigned long *end)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[4096], perms[8], path[2048];
    unsigned long lo, hi;
    int in = 0, found = -1;
    while (f && fgets(line, sizeof line, f)) {
        path[0] = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %2047s", &lo, &hi, perms, path) >= 3) {
            in = strcmp(perms, "rw-s") == 0 && strncmp(path, dir, strlen(dir)) == 0 &&
                 strstr(path, TAPE_SUFFIX) != NULL;
            if (in)
                *start = lo, *end = hi;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " hg") != NULL;
        }
    }
    if (f)
        fclose(f);
    return found;
}

/* Open (creating) daily raw queue `path`, with small pages or large. */
static int open_paged(const char *path, int small, tape_queue **q)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_roll_cycle = "daily";
    o.oo_codec = "raw";
    o.oo_create = 1;
    o.oo_small_pages = small;
    return tape_open(path, &o, q);
}

/* An appender asks for huge pages for the file it appends to, unless the
 * queue was opened with oo_small_pages; either way the file grows to whole
 * huge pages, as the kernel makes one only where the file covers all of it. */
static void appenders_ask_for_huge_pages_unless_told_not_to(void)
{
    int thp = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    for (int small = 0; small <= 1; small++) {
        const char *path = th_path(small ? "small" : "large");
        tape_queue *q;
        CHECK_OK(open_paged(path, small, &q));
        tape_appender *a;
        CHECK_OK(tape_appender_open(q, &a));
        char buf[1000] = {0};
        int64_t last = -1;
        for (int k = 0; k < 10000; k++) /* 10 MB */
            CHECK((last = tape_append(a, buf, sizeof buf, T0 + k)) >= 0);
        unsigned long start, end;
        EXPECT_EQ(writer_mapping(path, &start, &end), thp && !small);
        /* The prefaulter allocates ahead in the background: wait until the
         * file has not grown for 100 ms (3 s at most). */
        tape_cycle_info ci;
        uint64_t seen = 0;
        for (int still = 0, waited = 0; still < 10 && waited < 300; waited++) {
            CHECK_OK(tape_cycle_info_get(q, tape_index_cycle(q, last), &ci));
            still = ci.ci_file_bytes == seen ? still + 1 : 0;
            seen = ci.ci_file_bytes;
            usleep(10000);
        }
        EXPECT_EQ(ci.ci_entries, 10000);
        if (!EXPECT_EQ(ci.ci_file_bytes % (2u << 20), 0))
            fprintf(stderr, "  file of %llu bytes\n", (unsigned long long)ci.ci_file_bytes);
        tape_appender_close(a);
        tape_close(q);
    }
}

/* Pages of this process's writable mapping of a cycle file under `dir`
 * that are present, among file offsets [lo, hi); -1 when there is none. */
static long writer_pages_present(const char *dir, uint64_t lo, uint64_t hi)
{
    unsigned long start = 0, end = 0;
    writer_mapping(dir, &start, &end);
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (!end || fd < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    long present = 0;
    for (uint64_t off = lo; off < hi && start + off < end; off += 4096) {
        uint64_t e = 0;
        if (pread(fd, &e, 8, (off_t)((start + off) / 4096 * 8)) == 8)
            present += (long)(e >> 63);
    }
    close(fd);
    return present;
}

/* The most resident memory of a tailer making random moves and reading on
 * from each, in daily queue `name` of `n` raw entries (KiB; -1: not opened). */
static long rss_of_random_reads(const char *name, int64_t n)
{
    tape_queue *q;
    tape_tailer *t;
    if (th_open(name, "daily", "raw", &q) < 0)
        return -1;
    if (tape_tailer_open(q, &t) < 0) {
        tape_close(q);
        return -1;
    }
    int64_t first = tape_first_index(q);
    uint64_t x = 12345;
    long most = 0;
    for (int i = 0; i < 2000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tape_entry e;
        int64_t want = first + (int64_t)((x >> 33) % (uint64_t)n);
        if (!EXPECT_EQ(tape_tailer_to_index(t, want), 1) || !EXPECT_EQ(tape_read(t, &e), 1) ||
            !EXPECT_EQ(e.e_index, want))
            break;
        for (int k = 0; k < 20; k++) /* and on a little */
            tape_read(t, &e);
        long r = reader_rss_kib();
        most = r > most ? r : most;
    }
    th_close_all(q, NULL, t);
    return most;
}

/* An appender maps only what it is about to fill and a stretch behind it:
 * the index arrays it wrote slots into long after passing them are let go
 * once full, with large pages and with small. A tailer's random moves and
 * reads keep its resident memory bounded in such a file, whose page cache
 * holds huge pages. */
static void appenders_map_nothing_far_behind_their_end(void)
{
    for (int small = 0; small <= 1; small++) {
        const char *name = small ? "small" : "large", *path = th_path(name);
        tape_queue *q;
        CHECK_OK(open_paged(path, small, &q));
        tape_appender *a;
        CHECK_OK(tape_appender_open(q, &a));
        char buf[100] = {0};
        for (int k = 0; k < 3000000; k++) /* 360 MB: index arrays every 63 MB */
            CHECK(tape_append(a, buf, sizeof buf, T0 + k) >= 0);
        long n = writer_pages_present(path, 4 << 20, 200 << 20);
        if (!EXPECT_EQ(n, 0))
            fprintf(stderr, "  %s pages: %ld pages mapped in [4 MiB, 200 MiB)\n",
                    small ? "small" : "large", n);
        tape_appender_close(a);
        tape_close(q);
        long r = rss_of_random_reads(name, 3000000);
        if (!EXPECT(r >= 0 && r < 40 * 1024))
            fprintf(stderr, "  %s pages: %ld KiB resident in a reader\n", small ? "small" : "large", r);
    }
}

static void direction_values_are_checked(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(th_open("q", "daily", "raw", &q), &q, &t));
    EXPECT_EQ(tape_tailer_set_direction(t, 2), TAPE_EINVAL);
    EXPECT_EQ(tape_tailer_set_direction(t, -1), TAPE_EINVAL);
    EXPECT_EQ(tape_tailer_direction(t), TAPE_FORWARD);
    EXPECT_EQ(tape_tailer_set_direction(t, TAPE_BACKWARD), 0);
    EXPECT_EQ(tape_tailer_direction(t), TAPE_BACKWARD);
    th_close_all(q, NULL, t);
}

static const th_test tests[] = {
    TEST(empty_queue_has_nothing_to_read),
    TEST(forward_read_returns_every_entry_in_order),
    TEST(indexes_are_cycle_and_seq),
    TEST(backward_read_returns_the_reverse),
    TEST(read_many_with_small_buffers),
    TEST(read_many_refuses_an_entry_larger_than_cap),
    TEST(read_many_backward),
    TEST(to_index_reaches_every_entry),
    TEST(to_index_finds_entries_of_every_size),
    TEST(reading_in_stretches_keeps_resident_memory_bounded),
    TEST(to_index_of_a_missing_entry_leaves_the_position),
    TEST(to_start_and_to_end_in_both_directions),
    TEST(to_time_finds_the_first_entry_at_or_after),
    TEST(payload_sizes_round_trip),
    TEST(too_big_payload_is_refused),
    TEST(file_size_limit_is_a_clean_error),
    TEST(append_many_writes_a_batch),
    TEST(reopened_queue_reads_the_same),
    TEST(read_only_queue_refuses_appenders),
    TEST(read_only_works_without_write_permission),
    TEST(non_queue_directory_is_refused),
    TEST(reopen_with_other_settings_is_incompatible),
    TEST(full_cycle_is_refused),
    TEST(append_many_stops_at_a_full_cycle),
    TEST(timestamps_never_decrease),
    TEST(tailer_opened_early_sees_later_cycles),
    TEST(counts_and_cycles_agree_with_what_was_written),
    TEST(counts_follow_appends_rolls_and_removals),
    TEST(kept_newest_cycle_is_let_go_after_a_roll),
    TEST(questions_about_the_end_keep_resident_memory_bounded),
    TEST(appenders_ask_for_huge_pages_unless_told_not_to),
    TEST(appenders_map_nothing_far_behind_their_end),
    TEST(direction_values_are_checked),
};

TEST_MAIN(tests)
