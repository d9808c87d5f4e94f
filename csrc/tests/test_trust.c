/* test_trust.c - a writer trusts no hint on disk that disagrees with the data
 * (issue 16 item 2, issue 17 item 2): for each crafted state, tape_verify
 * reports it, tape_append refuses it (TAPE_ECORRUPT) or brings it back, never
 * returning an index used before or one a reader going forward cannot reach,
 * tape_repair_tail clears it, and appends then go on where readers get them. */
#include "test_harness.h"
#include "tape_int.h"

static const int64_t T0 = 1763683200LL * 1000000000LL; /* a day's start */

static int64_t idx[300];

/* A queue "q" of n entries, all at T0 + i ns (one cycle), closed again. */
static int make_queue(const char *roll, int n)
{
    tape_queue *q;
    tape_appender *a;
    if (th_open_writer("q", roll, "raw", &q, &a) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        char buf[24];
        int len = snprintf(buf, sizeof buf, "v%d", i);
        if ((idx[i] = tape_append(a, buf, (size_t)len, T0 + i)) < 0)
            return -1;
    }
    th_close_all(q, a, NULL);
    return 0;
}

/* The cycle file of idx[0], and the file offsets of entry seq and of the
 * slot of block b (array 0). */
static const char *file_of(tape_queue *q)
{
    static char name[80], rel[96];
    if (tape_cycle_name(q, tape_index_cycle(q, idx[0]), name, sizeof name) < 0)
        return NULL;
    snprintf(rel, sizeof rel, "q/%s", name);
    return th_path(rel);
}

static uint64_t entry_pos(tape_queue *q, uint64_t seq)
{
    tape_cyc y;
    uint64_t pos = 0;
    if (tape_cyc_open(q, tape_index_cycle(q, idx[0]), 0, &y) < 0)
        return 0;
    if (tape_cyc_locate(q, &y, seq, &pos) != 1)
        pos = 0;
    tape_cyc_close(&y);
    return pos;
}

static uint64_t slot_off(const char *f, uint64_t b)
{
    unsigned char w[8];
    int fd = open(f, O_RDONLY);
    ssize_t got = pread(fd, w, 8, 4096);
    close(fd);
    return got == 8 ? th_le64(w) + 16 + 8 * b : 0;
}

static int put(const char *f, uint64_t off, const void *p, size_t n)
{
    int fd = open(f, O_WRONLY);
    ssize_t put = pwrite(fd, p, n, (off_t)off);
    close(fd);
    return put == (ssize_t)n ? 0 : -1;
}

/* Verify reports a problem whose text holds `what`; an append is refused;
 * repair clears it; then an append goes on at seq `next` of the same cycle
 * and a reader from the start gets `next` + 1 entries, the last the new one. */
static void refused_then_repaired(const char *what, uint64_t next)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    tape_verify_report r;
    CHECK_OK(th_open_writer("q", NULL, NULL, &q, &a));
    EXPECT_EQ(tape_verify(q, 0, &r), 1);
    if (!strstr(r.vr_message, what))
        TH_FAIL("verify says '%s', not '%s'", r.vr_message, what);
    EXPECT_EQ(tape_append(a, "no", 2, T0 + 1000), TAPE_ECORRUPT);
    EXPECT_EQ(tape_append(a, "no", 2, T0 + 1000), TAPE_ECORRUPT);
    EXPECT(tape_repair_tail(q) > 0);
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    EXPECT_EQ(tape_repair_tail(q), 0);
    int64_t i = tape_append(a, "new", 3, T0 + 1000);
    EXPECT_EQ(i, tape_make_index(q, tape_index_cycle(q, idx[0]), (int64_t)next));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    uint64_t n = 0;
    int64_t last = -1;
    while (tape_read(t, &e) == 1) {
        n++;
        last = e.e_index;
    }
    EXPECT_EQ(n, next + 1);
    EXPECT_EQ(last, i);
    EXPECT_EQ(tape_tailer_to_index(t, i), 1);
    EXPECT(tape_read(t, &e) == 1 && e.e_len == 3 && memcmp(e.e_data, "new", 3) == 0);
    th_close_all(q, a, t);
}

static void stray_slot_past_the_end(void)
{
    CHECK_OK(make_queue("daily", 200));
    tape_queue *q;
    CHECK_OK(th_open("q", NULL, NULL, &q));
    const char *f = file_of(q);
    uint64_t p = entry_pos(q, 100), off = slot_off(f, 4096);
    tape_close(q);
    unsigned char w[8];
    th_put_le64(w, p);
    CHECK_OK(put(f, off, w, 8));
    struct stat st0, st1;
    stat(f, &st0);
    refused_then_repaired("index slot past the end", 200);
    stat(f, &st1);
    /* Nothing appended far away (6 MiB once): the file grows by at most
     * what the prefaulter allocates after the append that follows repair. */
    EXPECT(st1.st_size <= st0.st_size + (off_t)TAPE_GROW_STEP);
}

/* A torn write that left only the index slot of a later entry: the slot of
 * seq 20 names where entry 20 was, but entries 17.. never reached the disk. */
static void torn_write_left_only_the_slot(void)
{
    CHECK_OK(make_queue("test_secondly", 22));
    tape_queue *q;
    CHECK_OK(th_open("q", NULL, NULL, &q));
    const char *f = file_of(q);
    uint64_t from = entry_pos(q, 17), to = entry_pos(q, 21) + 32;
    tape_close(q);
    static unsigned char zeros[4096];
    CHECK(to - from <= sizeof zeros);
    CHECK_OK(put(f, from, zeros, to - from));
    refused_then_repaired("index slot past the end", 17);
}

static void zeroed_indexed_header(void)
{
    CHECK_OK(make_queue("test_secondly", 20));
    tape_queue *q;
    CHECK_OK(th_open("q", NULL, NULL, &q));
    const char *f = file_of(q);
    uint64_t p = entry_pos(q, 16);
    tape_close(q);
    unsigned char z[4] = {0};
    CHECK_OK(put(f, p, z, 4));
    refused_then_repaired("non-zero bytes after the end", 16);
}

static void newest_timestamp_far_ahead(void)
{
    CHECK_OK(make_queue("daily", 10));
    unsigned char w[8];
    th_put_le64(w, (uint64_t)INT64_MAX);
    CHECK_OK(put(th_path("q/tape.meta"), TAPE_META_SHARED_OFF + offsetof(tape_meta_shared, ms_last_ts), w, 8));
    tape_queue *q;
    tape_appender *a;
    tape_verify_report r;
    CHECK_OK(th_open_writer("q", NULL, NULL, &q, &a));
    EXPECT_EQ(tape_verify(q, 0, &r), 1);
    EXPECT(strstr(r.vr_message, "newest timestamp") != NULL);
    /* brought back to the last entry's, not believed */
    int64_t i = tape_append(a, "x", 1, T0 + 5);
    EXPECT_EQ(i, idx[9] + 1);
    tape_queue_info qi;
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT_EQ(qi.qi_last_timestamp, T0 + 9);
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    th_close_all(q, a, NULL);
}

static void removed_file_refuses_within_milliseconds(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    CHECK_OK(idx[0] = tape_append(a, "a", 1, 0));
    CHECK_OK(unlink(file_of(q)));
    nanosleep(&(struct timespec){0, 30000000}, NULL);
    EXPECT_EQ(tape_append(a, "b", 1, 0), TAPE_ECORRUPT);
    EXPECT_EQ(tape_appender_sync(a), TAPE_ECORRUPT);
    th_close_all(q, a, NULL);
    /* reopened: the hint says the missing cycle held an entry */
    tape_verify_report r;
    CHECK_OK(th_open_writer("q", NULL, NULL, &q, &a));
    EXPECT_EQ(tape_verify(q, 0, &r), 1);
    EXPECT(strstr(r.vr_message, "missing") != NULL);
    EXPECT_EQ(tape_append(a, "c", 1, 0), TAPE_ECORRUPT);
    EXPECT(tape_repair_tail(q) > 0);
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    EXPECT(tape_append(a, "d", 1, 0) >= 0);
    th_close_all(q, a, NULL);
}

static const th_test tests[] = {
    TEST(stray_slot_past_the_end),
    TEST(torn_write_left_only_the_slot),
    TEST(zeroed_indexed_header),
    TEST(newest_timestamp_far_ahead),
    TEST(removed_file_refuses_within_milliseconds),
};

TEST_MAIN(tests)
