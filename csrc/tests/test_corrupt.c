/* test_corrupt.c - damaged files: a reader reports TAPE_ECORRUPT or stops,
 * never returns wrong data and never crashes (truncation runs in a child
 * process so a SIGBUS is a failure, not the end of the test run). */
#include "test_harness.h"

#include <signal.h>
#include <sys/wait.h>

#define T0_SEC 1700000000LL
#define T0 (T0_SEC * 1000000000LL)
#define NENT 300

static uint32_t plen(int i) { return (uint32_t)(20 + (i * 13) % 180); }
static unsigned char pbyte(int i, uint32_t j) { return (unsigned char)(i * 17 + j * 5 + 3); }

static int64_t written_idx[NENT];

/* A test_secondly queue "q" with NENT entries in cycle T0_SEC. */
static int make_queue(void)
{
    tape_queue *q = NULL;
    int rc = th_open("q", "test_secondly", "raw", &q);
    if (rc < 0)
        return rc;
    tape_appender *a = NULL;
    rc = tape_appender_open(q, &a);
    unsigned char buf[256];
    for (int i = 0; rc == 0 && i < NENT; i++) {
        for (uint32_t j = 0; j < plen(i); j++)
            buf[j] = pbyte(i, j);
        written_idx[i] = tape_append(a, buf, plen(i), T0 + i);
        if (written_idx[i] < 0)
            rc = (int)written_idx[i];
    }
    if (a)
        th_close_all(q, a, NULL);
    return rc;
}

static const char *cycle_path(void)
{
    static char path[4096];
    time_t secs = (time_t)T0_SEC;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char name[64];
    strftime(name, sizeof name, "%Y%m%d-%H%M%S.tape", &tm);
    snprintf(path, sizeof path, "%s/q/%s", th_dir, name);
    return path;
}

/* File offset of data entry `seq` (by walking the file as FORMAT.md says),
 * or of the end of data when seq == NENT. */
static uint64_t entry_offset(int seq)
{
    size_t size;
    unsigned char *f = th_read_file(cycle_path(), &size);
    if (!f)
        return 0;
    uint64_t off = th_le64(f + 48);
    int s = 0;
    while (off + 16 <= size) {
        uint32_t h = th_le32(f + off);
        if (h == 0 || (h & 0x80000000u))
            break;
        if (!(h & 0x40000000u)) {
            if (s == seq)
                break;
            s++;
        }
        off += th_hdr_entry_size(h);
    }
    free(f);
    return s == seq ? off : 0;
}

static int entry_ok(const tape_entry *e, int i)
{
    if (i < 0 || i >= NENT || e->e_index != written_idx[i] || e->e_len != plen(i) ||
        e->e_timestamp != T0 + i) {
        TH_FAIL("wrong entry: index %" PRId64 " len %u, expected #%d", e->e_index,
                e->e_len, i);
        return 0;
    }
    const unsigned char *p = e->e_data;
    for (uint32_t j = 0; j < e->e_len; j++)
        if (p[j] != pbyte(i, j)) {
            TH_FAIL("entry #%d: wrong byte %u", i, j);
            return 0;
        }
    return 1;
}

static int open_q(tape_queue **q, int ro)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = ro;
    return tape_open(th_path("q"), &o, q);
}

/* Read forward from the start; every entry returned must be the right one.
 * Returns how many were read; *last_rc gets the read's final return. */
static int read_prefix(tape_tailer *t, int *last_rc)
{
    tape_entry e;
    int n = 0, rc;
    tape_tailer_to_start(t);
    while ((rc = tape_read(t, &e)) == 1) {
        if (!entry_ok(&e, n))
            break;
        n++;
    }
    *last_rc = rc;
    return n;
}

/* Flip one byte at `delta` bytes into entry `victim` and check that readers
 * stop there with TAPE_ECORRUPT. */
static void damaged_entry_is_reported(int victim, uint64_t delta)
{
    CHECK_OK(make_queue());
    uint64_t off = entry_offset(victim);
    CHECK(off != 0);
    size_t size;
    unsigned char *f = th_read_file(cycle_path(), &size);
    CHECK(f);
    unsigned char old = f[off + delta];
    free(f);
    CHECK_OK(th_pwrite_byte(cycle_path(), (off_t)(off + delta), old ^ 0x10));

    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_q(&q, 1), &q, &t));
    int rc;
    EXPECT_EQ(read_prefix(t, &rc), victim);
    EXPECT_EQ(rc, TAPE_ECORRUPT);
    /* The position does not move: the same answer again. */
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), TAPE_ECORRUPT);
    EXPECT_EQ(tape_tailer_index(t), written_idx[victim]);
    /* read_many: the good prefix, then the error. */
    CHECK_OK(tape_tailer_to_start(t));
    unsigned char buf[8192];
    int64_t idx[NENT], ts[NENT];
    uint64_t ends[NENT];
    int got = 0;
    for (;;) {
        int64_t n = tape_read_many(t, buf, sizeof buf, idx, ts, ends, 16);
        if (n <= 0) {
            EXPECT_EQ(n, TAPE_ECORRUPT);
            break;
        }
        for (int64_t k = 0; k < n; k++) {
            uint64_t start = k ? ends[k - 1] : 0;
            tape_entry m = {.e_index = idx[k], .e_timestamp = ts[k], .e_data = buf + start, .e_len = (uint32_t)(ends[k] - start)};
            if (!entry_ok(&m, got + (int)k))
                goto out;
        }
        got += (int)n;
    }
    EXPECT_EQ(got, victim);
    /* Moving straight to it, forward or backward. */
    for (int d = 0; d < 2; d++) {
        CHECK_OK(tape_tailer_set_direction(t, d ? TAPE_BACKWARD : TAPE_FORWARD));
        rc = tape_tailer_to_index(t, written_idx[victim]);
        if (rc == 1)
            EXPECT_EQ(tape_read(t, &e), TAPE_ECORRUPT);
        else
            EXPECT_EQ(rc, TAPE_ECORRUPT);
    }
    /* Backward from the end: whatever is returned is right, and the
     * reader stops with TAPE_ECORRUPT at or after the damaged entry
     * (backward_read_stops_at_the_damaged_entry checks exactly where). */
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    rc = tape_tailer_to_end(t);
    if (rc == TAPE_ECORRUPT && victim == NENT - 1)
        goto out; /* at a damaged last entry, the move itself may fail */
    CHECK_OK(rc);
    int i = NENT - 1;
    while ((rc = tape_read(t, &e)) == 1) {
        if (!entry_ok(&e, i))
            break;
        i--;
    }
    EXPECT(i >= victim);
    EXPECT_EQ(rc, TAPE_ECORRUPT);
    /* Entries after it, when reachable by index, are the right ones. */
    CHECK_OK(tape_tailer_set_direction(t, TAPE_FORWARD));
    if (victim + 1 < NENT && tape_tailer_to_index(t, written_idx[victim + 1]) == 1 &&
        tape_read(t, &e) == 1)
        entry_ok(&e, victim + 1);
out:
    th_close_all(q, NULL, t);
}

static void flipped_payload_byte_is_corrupt(void) { damaged_entry_is_reported(77, 16 + 9); }
static void flipped_indexed_entry_is_corrupt(void) { damaged_entry_is_reported(128, 16 + 1); }
static void flipped_timestamp_is_corrupt(void) { damaged_entry_is_reported(5, 8 + 2); }
static void flipped_crc_is_corrupt(void) { damaged_entry_is_reported(200, 4); }
static void flipped_last_entry_is_corrupt(void) { damaged_entry_is_reported(NENT - 1, 16); }

/* tape.h: TAPE_ECORRUPT means "the entry at the position is damaged", so a
 * backward reader returns every intact entry after the damaged one. */
static void backward_read_stops_at_the_damaged_entry(void)
{
    CHECK_OK(make_queue());
    int victim = 77; /* not the first of its 4-entry index block */
    uint64_t off = entry_offset(victim);
    CHECK(off != 0);
    size_t size;
    unsigned char *f = th_read_file(cycle_path(), &size);
    CHECK(f);
    unsigned char old = f[off + 20];
    free(f);
    CHECK_OK(th_pwrite_byte(cycle_path(), (off_t)(off + 20), old ^ 0x10));
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_q(&q, 1), &q, &t));
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_OK(tape_tailer_to_end(t));
    tape_entry e;
    int i = NENT - 1, rc;
    while ((rc = tape_read(t, &e)) == 1 && entry_ok(&e, i))
        i--;
    EXPECT_EQ(rc, TAPE_ECORRUPT);
    EXPECT_EQ(i, victim);
    /* Moved straight to the entries after it, backward, they are read. */
    for (int k = victim + 1; k < victim + 4; k++) {
        CHECK_EQ(tape_tailer_to_index(t, written_idx[k]), 1);
        if (EXPECT_EQ(tape_read(t, &e), 1))
            entry_ok(&e, k);
    }
    th_close_all(q, NULL, t);
}

/* An earlier entry's bytes copied to the end of data: its seq is inside the
 * CRC, so it must not pass as a new entry. */
static void copied_entry_after_the_end_never_passes(void)
{
    CHECK_OK(make_queue());
    uint64_t src = entry_offset(10), end = entry_offset(NENT);
    CHECK(src && end);
    size_t size;
    unsigned char *f = th_read_file(cycle_path(), &size);
    CHECK(f);
    uint64_t len = 16 + ((plen(10) + 7u) & ~7u);
    int fd = open(cycle_path(), O_WRONLY);
    CHECK(fd >= 0);
    EXPECT_EQ(pwrite(fd, f + src, len, (off_t)end), (ssize_t)len);
    close(fd);
    free(f);
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_q(&q, 1), &q, &t));
    int rc;
    EXPECT_EQ(read_prefix(t, &rc), NENT);
    EXPECT(rc == TAPE_ECORRUPT || rc == 0);
    th_close_all(q, NULL, t);
}

/* A zeroed page in the middle of the data: the reader stops (end of data
 * or TAPE_ECORRUPT) and what it returned is right. */
static void zeroed_page_stops_the_reader(void)
{
    CHECK_OK(make_queue());
    uint64_t off = entry_offset(150);
    CHECK(off);
    static const unsigned char zeros[4096];
    uint64_t page = off & ~4095ull;
    int fd = open(cycle_path(), O_WRONLY);
    CHECK(fd >= 0);
    EXPECT_EQ(pwrite(fd, zeros, 4096, (off_t)page), 4096);
    close(fd);
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_q(&q, 1), &q, &t));
    int rc;
    int n = read_prefix(t, &rc);
    EXPECT(n <= 150);
    EXPECT(rc == TAPE_ECORRUPT || rc == 0);
    th_close_all(q, NULL, t);
}

static void damaged_cycle_header_is_corrupt(void)
{
    CHECK_OK(make_queue());
    size_t size;
    unsigned char *f = th_read_file(cycle_path(), &size);
    CHECK(f);
    CHECK_OK(th_pwrite_byte(cycle_path(), 20, f[20] ^ 1)); /* inside the cycle number */
    free(f);
    tape_queue *q = NULL;
    int rc = open_q(&q, 1);
    if (rc == TAPE_ECORRUPT)
        return;
    CHECK_OK(rc);
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), TAPE_ECORRUPT);
    rc = tape_tailer_to_index(t, written_idx[3]);
    EXPECT(rc == TAPE_ECORRUPT || (rc == 1 && tape_read(t, &e) == TAPE_ECORRUPT));
    th_close_all(q, NULL, t);
}

/* ---- what a dead writer leaves behind ---------------------------------------- */

/* make_queue, then 3 entries in the next cycle: cycle T0_SEC ends with the
 * end-of-file marker, at entry_offset(NENT). */
static int make_two_cycles(void)
{
    int rc = make_queue();
    tape_queue *q = NULL;
    if (rc == 0)
        rc = open_q(&q, 0);
    if (rc)
        return rc;
    tape_appender *a = NULL;
    rc = tape_appender_open(q, &a);
    for (int k = 0; rc == 0 && k < 3; k++) {
        int64_t i = tape_append(a, "next", 4, T0 + 1000000000LL + k);
        if (i < 0)
            rc = (int)i;
    }
    if (a)
        th_close_all(q, a, NULL);
    return rc;
}

/* Readers cross into the next cycle whatever a dead writer left at the old
 * cycle's end: a zero header, or an unfinished entry (whose bytes, all within
 * the entry it reserved, may be anything). */
static void readers_cross_a_cycle_end_with(uint32_t hdr, int garbage)
{
    CHECK_OK(make_two_cycles());
    uint64_t eof = entry_offset(NENT);
    CHECK(eof != 0);
    unsigned char w[64];
    size_t len = garbage ? th_hdr_entry_size(hdr) : 4;
    CHECK(len <= sizeof w);
    memset(w, garbage ? 0xA5 : 0, sizeof w);
    th_put_le32(w, hdr);
    int fd = open(cycle_path(), O_WRONLY);
    CHECK(fd >= 0);
    EXPECT_EQ(pwrite(fd, w, len, (off_t)eof), (ssize_t)len);
    close(fd);

    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_q(&q, 1), &q, &t));
    int rc;
    tape_entry e;
    for (int i = 0; i < NENT; i++)
        if (!EXPECT_EQ(tape_read(t, &e), 1) || !entry_ok(&e, i))
            break;
    int more = 0;
    while ((rc = tape_read(t, &e)) == 1) {
        EXPECT(e.e_len == 4 && memcmp(e.e_data, "next", 4) == 0);
        more++;
    }
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(more, 3);
    /* Backward over the same boundary. */
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_OK(tape_tailer_to_end(t));
    int n = 0;
    while ((rc = tape_read(t, &e)) == 1) {
        if (n >= 3 && !entry_ok(&e, NENT - 1 - (n - 3)))
            break;
        n++;
    }
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(n, NENT + 3);
    EXPECT_EQ(tape_count(q), NENT + 3);
    th_close_all(q, NULL, t);
}

static void missing_end_of_file_marker_does_not_stall_readers(void)
{
    readers_cross_a_cycle_end_with(0, 0);
}

static void abandoned_entry_at_a_cycle_end_does_not_stall_readers(void)
{
    readers_cross_a_cycle_end_with(0x80000000u | (12 + 40), 1);
}

/* A writer died after step 1 of "Writing an entry": the next writer zeroes
 * the incomplete entry and writes over it. */
static void abandoned_incomplete_entry_is_overwritten(void)
{
    CHECK_OK(make_queue());
    uint64_t end = entry_offset(NENT);
    CHECK(end != 0);
    unsigned char w[16 + 56];
    memset(w, 0xA5, sizeof w);
    th_put_le32(w, 0x80000000u | (12 + 56));
    int fd = open(cycle_path(), O_WRONLY);
    CHECK(fd >= 0);
    EXPECT_EQ(pwrite(fd, w, sizeof w, (off_t)end), (ssize_t)sizeof w);
    close(fd);

    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(open_q(&q, 0), &q, &t));
    int rc;
    EXPECT_EQ(read_prefix(t, &rc), NENT);
    EXPECT_EQ(rc, 0); /* an incomplete entry is the end of data */
    EXPECT_EQ(tape_count(q), NENT);

    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    int64_t i = tape_append(a, "fresh", 5, T0 + NENT);
    EXPECT_EQ(i, tape_make_index(q, T0_SEC, NENT));
    tape_appender_close(a);
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT(e.e_index == i && e.e_len == 5 && memcmp(e.e_data, "fresh", 5) == 0);
    EXPECT_EQ(tape_read(t, &e), 0);
    th_close_all(q, NULL, t);

    /* On disk: the new entry sits where the abandoned one was, and the
     * bytes after it are zero again. */
    size_t size;
    unsigned char *f = th_read_file(cycle_path(), &size);
    CHECK(f);
    EXPECT_EQ(th_le32(f + end), 12 + 5);
    for (uint64_t p = end + 5 + 16; p < end + sizeof w + 64; p++)
        if (!EXPECT_EQ(f[p], 0))
            break;
    free(f);
}

/* ---- truncation ------------------------------------------------------------------ */

/* In a child: open, read everything every way we can; wrong data is a
 * failure (exit 1), a crash is a signal. */
static void probe_truncated(int ro)
{
    atomic_store(&th_failures, 0); /* count this child's failures only */
    tape_queue *q = NULL;
    int rc = open_q(&q, ro);
    if (rc == TAPE_ECORRUPT)
        _exit(0);
    if (rc != 0)
        _exit(20);
    tape_tailer *t = NULL;
    if (tape_tailer_open(q, &t) != 0)
        _exit(21);
    int last;
    int n = read_prefix(t, &last);
    if (last != 0 && last != TAPE_ECORRUPT)
        _exit(22);
    tape_entry e;
    tape_tailer_set_direction(t, TAPE_BACKWARD);
    tape_tailer_to_end(t);
    while (tape_read(t, &e) == 1)
        if (!entry_ok(&e, (int)tape_index_seq(q, e.e_index)))
            _exit(23);
    tape_tailer_set_direction(t, TAPE_FORWARD);
    for (int i = 0; i < NENT; i++)
        if (tape_tailer_to_index(t, written_idx[i]) == 1 && tape_read(t, &e) == 1 &&
            !entry_ok(&e, i))
            _exit(24);
    tape_tailer_to_time(t, T0 + NENT - 2);
    (void)tape_read(t, &e);
    tape_count(q);
    tape_last_index(q);
    tape_cycle_info ci;
    tape_cycle_info_get(q, T0_SEC, &ci);
    unsigned char buf[4096];
    int64_t idx[64], ts[64];
    uint64_t ends[64];
    tape_tailer_to_start(t);
    while (tape_read_many(t, buf, sizeof buf, idx, ts, ends, 64) > 0)
        ;
    tape_tailer_close(t);
    if (!ro) {
        /* A writer on the damaged file: an error or a readable entry. */
        tape_appender *a = NULL;
        if (tape_appender_open(q, &a) == 0) {
            int64_t i = tape_append(a, "after", 5, T0 + NENT);
            tape_appender_close(a);
            if (i >= 0 && tape_tailer_open(q, &t) == 0) {
                if (tape_tailer_to_index(t, i) == 1 && tape_read(t, &e) == 1 &&
                    (e.e_len != 5 || memcmp(e.e_data, "after", 5) != 0))
                    _exit(25);
                tape_tailer_close(t);
            }
        }
    }
    tape_close(q);
    (void)n;
    _exit(atomic_load(&th_failures) ? 1 : 0);
}

static void truncated_at(const char *what, uint64_t cut)
{
    CHECK_OK(make_queue());
    CHECK(truncate(cycle_path(), (off_t)cut) == 0);
    for (int ro = 1; ro >= 0; ro--) {
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            probe_truncated(ro);
        int st;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            if (WIFSIGNALED(st))
                fprintf(stderr, "  cut %s at %" PRIu64 " (%s): killed by signal %d\n", what,
                        cut, ro ? "read-only" : "read-write", WTERMSIG(st));
            else
                fprintf(stderr, "  cut %s at %" PRIu64 " (%s): exit %d\n", what, cut,
                        ro ? "read-only" : "read-write", WEXITSTATUS(st));
        }
    }
    th_rm_rf(th_path("q"));
}

/* A move onto an entry that the file's end cuts short reports the damage
 * (and does not move), as reading it would. */
static void move_onto_a_truncated_entry_reports_damage(void)
{
    CHECK_OK(make_queue());
    uint64_t at = entry_offset(150);
    CHECK(at > 0);
    CHECK(truncate(cycle_path(), (off_t)(at + 16 + plen(150) / 2)) == 0);
    tape_queue *q;
    CHECK_OK(open_q(&q, 1));
    tape_tailer *t;
    tape_entry e;
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_EQ(tape_tailer_to_index(t, written_idx[10]), 1);
    EXPECT_EQ(tape_tailer_to_index(t, written_idx[150]), TAPE_ECORRUPT);
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT(entry_ok(&e, 10));
    th_close_all(q, NULL, t);
}

static void truncated_cycle_file_never_crashes_a_reader(void)
{
    CHECK_OK(make_queue());
    uint64_t last = entry_offset(NENT - 1), end = entry_offset(NENT);
    uint64_t mid = entry_offset(NENT / 2);
    CHECK(last && end && mid);
    th_rm_rf(th_path("q"));
    truncated_at("in the last entry's payload", last + 16 + plen(NENT - 1) / 2);
    truncated_at("in the last entry's header", last + 6);
    truncated_at("at the last entry's start", last);
    truncated_at("at the end of data", end);
    truncated_at("in the middle", mid + 20);
    truncated_at("in the index2index", 4096 + 100);
    truncated_at("in the file header", 30);
    truncated_at("to zero bytes", 0);
}

static const th_test tests[] = {
    TEST(flipped_payload_byte_is_corrupt),
    TEST(flipped_indexed_entry_is_corrupt),
    TEST(flipped_timestamp_is_corrupt),
    TEST(flipped_crc_is_corrupt),
    TEST(flipped_last_entry_is_corrupt),
    TEST(backward_read_stops_at_the_damaged_entry),
    TEST(copied_entry_after_the_end_never_passes),
    TEST(zeroed_page_stops_the_reader),
    TEST(damaged_cycle_header_is_corrupt),
    TEST(missing_end_of_file_marker_does_not_stall_readers),
    TEST(abandoned_entry_at_a_cycle_end_does_not_stall_readers),
    TEST(abandoned_incomplete_entry_is_overwritten),
    TEST(truncated_cycle_file_never_crashes_a_reader),
    TEST(move_onto_a_truncated_entry_reports_damage),
};

TEST_MAIN(tests)
