/* test_attrs.c - entry attributes: written by tape_append*_ex, read back by
 * every read call, stored as docs/FORMAT.md says, refused when bad; version-1
 * cycle files upgraded (also by a writer killed midway, or failing to flush);
 * a block that does not parse is damage. */
#include "test_harness.h"
#include "../fault.h"

#include <signal.h>
#include <sys/wait.h>

static const int64_t T0 = 1763683200LL * 1000000000LL;
#define FIRST_ENTRY (4096 + 4096 + 16 + 8 * 32) /* test_secondly: after index array 0 */

static tape_attrs attrs(const char *key, uint32_t flags, int64_t nb, int64_t oi, int64_t ots)
{
    tape_attrs a = {key, key ? (uint32_t)strlen(key) : 0, flags, nb, oi, ots};
    return a;
}

/* e carries the attributes *w (the key compared by its bytes) and payload p. */
static void expect_entry(const tape_entry *e, const tape_attrs *w, const char *p)
{
    EXPECT_EQ(e->e_timestamp, T0);
    EXPECT_EQ(e->e_len, strlen(p));
    EXPECT(memcmp(e->e_data, p, e->e_len) == 0);
    EXPECT_EQ(e->e_attrs.a_key_len, w->a_key_len);
    EXPECT_EQ(e->e_attrs.a_key == NULL, w->a_key == NULL);
    if (w->a_key && e->e_attrs.a_key)
        EXPECT(memcmp(e->e_attrs.a_key, w->a_key, w->a_key_len) == 0);
    EXPECT_EQ(e->e_attrs.a_flags, w->a_flags);
    EXPECT_EQ(e->e_attrs.a_not_before, w->a_not_before);
    EXPECT_EQ(e->e_attrs.a_origin_index, w->a_origin_index);
    EXPECT_EQ(e->e_attrs.a_origin_ts, w->a_origin_ts);
}

#define N_KINDS 6
static const char *const PAYLOAD[N_KINDS] = {"plain", "keyed", "", "later", "copied", "all"};

static tape_attrs kind(int k)
{
    switch (k) {
    case 1: return attrs("acct-1", TAPE_A_KEY_STR, 0, -1, 0);
    case 2: return attrs("gone", TAPE_A_TOMBSTONE, 0, -1, 0);
    case 3: return attrs(NULL, 0, T0 + 5, -1, 0);
    case 4: return attrs(NULL, 0, 0, 42, T0 - 7);
    case 5: return attrs("k", TAPE_A_KEY_STR | TAPE_A_TOMBSTONE, 9, 0, 0);
    default: return attrs(NULL, 0, 0, -1, 0);
    }
}

static void write_kinds(tape_appender *a)
{
    for (int k = 0; k < N_KINDS; k++) {
        tape_attrs at = kind(k);
        EXPECT(tape_append_ex(a, PAYLOAD[k], strlen(PAYLOAD[k]), T0, k ? &at : NULL) >= 0);
    }
}

static void round_trip_through_read_and_batches(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    write_kinds(a);
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    for (int k = 0; k < N_KINDS; k++) {
        tape_attrs w = kind(k);
        CHECK_EQ(tape_read(t, &e), 1);
        expect_entry(&e, &w, PAYLOAD[k]);
    }
    EXPECT_EQ(tape_read(t, &e), 0);

    /* Backward, one by one. */
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_OK(tape_tailer_to_end(t));
    for (int k = N_KINDS - 1; k >= 0; k--) {
        tape_attrs w = kind(k);
        CHECK_EQ(tape_read(t, &e), 1);
        expect_entry(&e, &w, PAYLOAD[k]);
    }
    CHECK_OK(tape_tailer_set_direction(t, TAPE_FORWARD));

    /* Batches with attributes: each key before its payload. */
    char buf[256];
    int64_t idx[8], ts[8];
    uint64_t ends[8];
    tape_attrs at[8];
    size_t with = 99;
    CHECK_OK(tape_tailer_to_start(t));
    CHECK_EQ(tape_peek_many_ex(t, buf, sizeof buf, idx, ts, ends, 8, at, &with), N_KINDS);
    EXPECT_EQ(with, N_KINDS - 1);
    uint64_t start = 0;
    for (int k = 0; k < N_KINDS; k++) {
        tape_attrs w = kind(k);
        tape_entry got = {.e_index = idx[k], .e_timestamp = ts[k], .e_attrs = at[k]};
        got.e_data = buf + start + at[k].a_key_len;
        got.e_len = (uint32_t)(ends[k] - start - at[k].a_key_len);
        expect_entry(&got, &w, PAYLOAD[k]);
        if (at[k].a_key)
            EXPECT((const char *)at[k].a_key == buf + start);
        start = ends[k];
    }
    /* Room: the first entry's key counts (on a plain call it does not). */
    CHECK_OK(tape_tailer_advance(t, 1));
    EXPECT_EQ(tape_read_many_ex(t, buf, 3, idx, ts, ends, 8, at, &with), TAPE_EINVAL);
    EXPECT_EQ(ends[0], strlen("acct-1") + strlen("keyed"));
    CHECK_EQ(tape_read_many(t, buf, sizeof buf, idx, ts, ends, 8), N_KINDS - 1);
    EXPECT(memcmp(buf, "keyed", 5) == 0); /* payloads alone */
    EXPECT_EQ(ends[0], 5);

    /* A batch without attributes counts none and leaves attrs alone. */
    EXPECT(tape_append(a, "p", 1, T0) >= 0);
    at[0].a_not_before = 77;
    CHECK_EQ(tape_read_many_ex(t, buf, sizeof buf, idx, ts, ends, 8, at, &with), 1);
    EXPECT_EQ(with, 0);
    EXPECT_EQ(at[0].a_not_before, 77);
    EXPECT_EQ(tape_read_many_ex(t, buf, sizeof buf, idx, ts, ends, 8, at, NULL), TAPE_EINVAL);
    th_close_all(q, a, t);
}

static void many_and_if_carry_the_attributes(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    tape_attrs w = attrs("batch", TAPE_A_KEY_STR, T0 + 1, -1, 0);
    uint64_t ends[3] = {1, 2, 3};
    size_t written = 9;
    int64_t last = tape_append_many_ex(a, "abc", ends, 3, T0, &written, &w);
    EXPECT_EQ(written, 3);
    EXPECT_EQ(tape_append_if_ex(a, "d", 1, T0, last - 1, &w), TAPE_ECONFLICT);
    EXPECT_EQ(tape_append_if_ex(a, "d", 1, T0, last, &w), last + 1);
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    const char *want[] = {"a", "b", "c", "d"};
    for (int k = 0; k < 4; k++) {
        CHECK_EQ(tape_read(t, &e), 1);
        expect_entry(&e, &w, want[k]);
    }
    EXPECT_EQ(tape_read(t, &e), 0);
    th_close_all(q, a, t);
}

static void many_each_gives_each_entry_its_own(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    uint64_t ends[3] = {1, 2, 3};
    int64_t nb[3] = {0, T0 + 5, 0}, oi[3] = {40, -1, 42}, ots[3] = {T0 - 2, 0, T0 - 1};
    size_t written = 9;
    int64_t last = tape_append_many_each(a, "abc", ends, 3, T0, &written, nb, oi, ots);
    EXPECT_EQ(written, 3);
    EXPECT_EQ(tape_append_many_each(a, "d", ends, 1, T0, &written, NULL, NULL, NULL), last + 1);
    int64_t bad_nb[2] = {0, -1}, bad_oi[2] = {1, -2};
    EXPECT_EQ(tape_append_many_each(a, "ef", ends, 2, T0, &written, bad_nb, NULL, NULL), TAPE_EINVAL);
    EXPECT_EQ(written, 0);
    EXPECT_EQ(tape_append_many_each(a, "ef", ends, 2, T0, &written, NULL, bad_oi, ots), TAPE_EINVAL);
    EXPECT_EQ(tape_append_many_each(a, "ef", ends, 2, T0, &written, NULL, oi, NULL), TAPE_EINVAL);
    EXPECT_EQ(tape_append_many_each(a, "ef", ends, 0, T0, &written, NULL, NULL, NULL), TAPE_EINVAL);
    EXPECT_EQ(tape_count(q), 4);
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    tape_attrs want[4] = {attrs(NULL, 0, 0, 40, T0 - 2), attrs(NULL, 0, T0 + 5, -1, 0),
                          attrs(NULL, 0, 0, 42, T0 - 1), attrs(NULL, 0, 0, -1, 0)};
    const char *payload[] = {"a", "b", "c", "d"};
    for (int k = 0; k < 4; k++) {
        CHECK_EQ(tape_read(t, &e), 1);
        expect_entry(&e, &want[k], payload[k]);
    }
    EXPECT_EQ(tape_read(t, &e), 0);
    th_close_all(q, a, t);
}

static void bad_attributes_write_nothing(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    static char big[TAPE_KEY_MAX + 1];
    memset(big, 'k', sizeof big);
    tape_attrs bad[] = {
        {NULL, 3, 0, 0, -1, 0},            /* a length without a key */
        {NULL, 0, TAPE_A_KEY_STR, 0, -1, 0}, /* flags without a key */
        {"k", 0, 0, 0, -1, 0},             /* an empty key */
        {big, TAPE_KEY_MAX + 1, 0, 0, -1, 0},
        {"k", 1, 4, 0, -1, 0},             /* an unknown flag */
        {NULL, 0, 0, -1, -1, 0},
        {NULL, 0, 0, 0, -2, 0},
        {NULL, 0, 0, 0, -1, 5},            /* an origin timestamp without its index */
        {NULL, 0, 0, 0, 1, -5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t end = 1;
        size_t written = 7;
        if (!EXPECT_EQ(tape_append_ex(a, "x", 1, T0, &bad[i]), TAPE_EINVAL))
            fprintf(stderr, "  bad[%zu] accepted\n", i);
        EXPECT_EQ(tape_append_many_ex(a, "x", &end, 1, T0, &written, &bad[i]), TAPE_EINVAL);
        EXPECT_EQ(written, 0);
        EXPECT_EQ(tape_append_if_ex(a, "x", 1, T0, -1, &bad[i]), TAPE_EINVAL);
    }
    /* The key at its limit is fine; payload and block together are limited
     * (checked before the payload is read). */
    tape_attrs most = {big, TAPE_KEY_MAX, 0, 0, -1, 0};
    EXPECT_EQ(tape_append_ex(a, "x", TAPE_MAX_PAYLOAD - 100, T0, &most), TAPE_ETOOBIG);
    EXPECT_EQ(tape_count(q), 0);
    EXPECT_EQ(tape_append_ex(a, "x", 1, T0, &most), tape_make_index(q, tape_cycle_of(q, T0), 0));
    th_close_all(q, a, NULL);
}

/* The file's bytes, as docs/FORMAT.md describes them. */
static void stored_as_documented(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    tape_attrs none = attrs(NULL, 0, 0, -1, 0), all = attrs("key", 3, 5, 9, 10);
    EXPECT(tape_append_ex(a, "plain", 5, T0, &none) >= 0); /* no attributes: a plain entry */
    EXPECT(tape_append_ex(a, "payload", 7, T0, &all) >= 0);
    th_close_all(q, a, NULL);
    char name[64];
    snprintf(name, sizeof name, "q/%s", "20251121-000000.tape");
    size_t len;
    unsigned char *f = th_read_file(th_path(name), &len);
    CHECK(f != NULL);
    EXPECT_EQ(th_le32(f + 8), 2);
    uint32_t seed = th_le32(f + 24);
    unsigned char *e = f + FIRST_ENTRY;
    EXPECT_EQ(th_le32(e), 12 + 5);
    EXPECT_EQ((int64_t)th_le64(e + 8), T0);
    e += 24;
    uint32_t h = th_le32(e);
    EXPECT_EQ(h, 12 + 64 + 7);
    EXPECT_EQ(th_le64(e + 8), (uint64_t)T0 | (1ull << 63));
    const unsigned char *b = e + 16;
    EXPECT_EQ(th_le32(b), 64);
    EXPECT_EQ(th_le32(b + 4), 3);
    EXPECT_EQ(th_le32(b + 8), 1);  /* type 1, 0 */
    EXPECT_EQ(th_le32(b + 12), 3); /* n */
    EXPECT(memcmp(b + 16, "key\0\0\0\0\0", 8) == 0);
    EXPECT_EQ(th_le32(b + 24), 2);
    EXPECT_EQ(th_le32(b + 28), 8);
    EXPECT_EQ(th_le64(b + 32), 5);
    EXPECT_EQ(th_le32(b + 40), 3);
    EXPECT_EQ(th_le32(b + 44), 16);
    EXPECT_EQ(th_le64(b + 48), 9);
    EXPECT_EQ(th_le64(b + 56), 10);
    EXPECT(memcmp(b + 64, "payload", 7) == 0);
    /* The CRC: header word, seq 1, the timestamp word as stored, every byte after. */
    unsigned char head[20];
    memcpy(head, e, 4);
    th_put_le64(head + 4, 1);
    memcpy(head + 12, e + 8, 8);
    uint32_t crc = ~th_crc_update(th_crc_update(~seed, head, 20), b, 64 + 7);
    EXPECT_EQ(th_le32(e + 4), crc);
    free(f);
}

/* ---- version-1 files ------------------------------------------------------ */

static const char *cycle_path(void)
{
    return th_path("q/20251121-000000.tape");
}

/* Rewrite the header's version (and, with crc, its CRC). */
static void set_version(uint32_t version, int crc)
{
    size_t len;
    unsigned char *f = th_read_file(cycle_path(), &len);
    CHECK(f != NULL);
    th_put_le32(f + 8, version);
    if (crc)
        th_put_le32(f + 64, th_crc32c(0, f, 64));
    int fd = open(cycle_path(), O_WRONLY);
    CHECK(fd >= 0);
    EXPECT_EQ(pwrite(fd, f, 68, 0), 68);
    close(fd);
    free(f);
}

/* The header's version when its CRC holds, else -1. */
static int header_version(void)
{
    size_t len;
    unsigned char *f = th_read_file(cycle_path(), &len);
    if (!f)
        return -2;
    int v = th_le32(f + 64) == th_crc32c(0, f, 64) ? (int)th_le32(f + 8) : -1;
    free(f);
    return v;
}

static int count_entries(tape_queue *q)
{
    tape_tailer *t;
    if (tape_tailer_open(q, &t) < 0)
        return -1;
    tape_entry e;
    int n = 0, rc;
    while ((rc = tape_read(t, &e)) == 1)
        n++;
    tape_tailer_close(t);
    return rc < 0 ? rc : n;
}

/* A queue of 3 plain entries whose cycle file is version 1. */
static void make_version_1_queue(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    for (int i = 0; i < 3; i++)
        EXPECT(tape_append(a, "v1", 2, T0) >= 0);
    th_close_all(q, a, NULL);
    set_version(1, 1);
    EXPECT_EQ(header_version(), 1);
}

static void a_version_1_file_is_upgraded_by_the_first_attributes(void)
{
    make_version_1_queue();
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT(tape_append(a, "p", 1, T0) >= 0);
    EXPECT_EQ(header_version(), 1);
    tape_attrs at = attrs("k", 0, 0, -1, 0);
    EXPECT(tape_append_ex(a, "q", 1, T0, &at) >= 0);
    EXPECT_EQ(header_version(), 2);
    CHECK_EQ(tape_read(t, &e), 1); /* opened at version 1 */
    CHECK_EQ(tape_read(t, &e), 1);
    expect_entry(&e, &at, "q");
    EXPECT_EQ(count_entries(q), 5);
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    th_close_all(q, a, t);
}

static void an_upgrade_cut_short_is_read_and_finished(void)
{
    make_version_1_queue();
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        tape_queue *q;
        tape_appender *a;
        if (tape_fault_configure(NULL, "upgrade:1") != 0 ||
            th_open_writer("q", "test_secondly", "raw", &q, &a) < 0)
            _exit(3);
        tape_attrs at = attrs("k", 0, 0, -1, 0);
        tape_append_ex(a, "x", 1, T0, &at);
        _exit(4); /* not killed */
    }
    int st;
    waitpid(c, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    EXPECT_EQ(header_version(), -1); /* says 2, its CRC is version 1's */
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    EXPECT_EQ(count_entries(q), 3);
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    EXPECT(tape_append(a, "p", 1, T0) >= 0);
    tape_attrs at = attrs("k", 0, 0, -1, 0);
    EXPECT(tape_append_ex(a, "x", 1, T0, &at) >= 0);
    EXPECT_EQ(header_version(), 2);
    EXPECT_EQ(count_entries(q), 5);
    th_close_all(q, a, NULL);
}

static void a_failed_flush_of_the_upgrade_writes_nothing(void)
{
    make_version_1_queue();
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    EXPECT(tape_append(a, "p", 1, T0) >= 0); /* the writer has found the end */
    CHECK_OK(tape_fault_configure("fsync:1:EIO", NULL));
    tape_attrs at = attrs("k", 0, 0, -1, 0);
    EXPECT_EQ(tape_append_ex(a, "x", 1, T0, &at), -EIO);
    CHECK_OK(tape_fault_configure(NULL, NULL));
    EXPECT_EQ(count_entries(q), 4);
    EXPECT(tape_append_ex(a, "x", 1, T0, &at) >= 0);
    EXPECT_EQ(header_version(), 2);
    EXPECT_EQ(count_entries(q), 5);
    th_close_all(q, a, NULL);
}

static void a_version_this_build_does_not_know_is_refused(void)
{
    make_version_1_queue();
    set_version(3, 1);
    tape_queue *q;
    tape_tailer *t;
    CHECK_OK(th_with_tailer(th_open("q", "test_secondly", "raw", &q), &q, &t));
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), TAPE_EVERSION);
    th_close_all(q, NULL, t);
}

/* ---- damage ----------------------------------------------------------------- */

static void a_block_that_does_not_parse_is_damage(void)
{
    /* (offset in the block, byte value): each makes the block unparseable. */
    static const struct { int off; unsigned char v; } cuts[] = {
        {0, 12}, {0, 200}, {4, 4}, {8, 7}, {10, 1}, {12, 9}, {21, 1}, {0, 8},
    };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char dir[32];
        snprintf(dir, sizeof dir, "q%zu", i);
        tape_queue *q;
        tape_appender *a;
        CHECK_OK(th_open_writer(dir, "test_secondly", "raw", &q, &a));
        tape_attrs at = attrs("key", 0, 0, -1, 0);
        EXPECT(tape_append(a, "before", 6, T0) >= 0);
        EXPECT(tape_append_ex(a, "payload", 7, T0, &at) >= 0);
        th_close_all(q, a, NULL);
        char name[64];
        snprintf(name, sizeof name, "%s/20251121-000000.tape", dir);
        size_t len;
        unsigned char *f = th_read_file(th_path(name), &len);
        CHECK(f != NULL);
        unsigned char *e = f + FIRST_ENTRY + 24, *b = e + 16;
        b[cuts[i].off] = cuts[i].v;
        /* The checksum holds: only the block is wrong. */
        unsigned char head[20];
        memcpy(head, e, 4);
        th_put_le64(head + 4, 1);
        memcpy(head + 12, e + 8, 8);
        uint32_t crc = ~th_crc_update(th_crc_update(~th_le32(f + 24), head, 20), b, 24 + 7);
        th_put_le32(e + 4, crc);
        int fd = open(th_path(name), O_WRONLY);
        CHECK(fd >= 0);
        EXPECT_EQ(pwrite(fd, f, len, 0), (ssize_t)len);
        close(fd);
        free(f);

        tape_tailer *t;
        CHECK_OK(th_with_tailer(th_open(dir, "test_secondly", "raw", &q), &q, &t));
        tape_entry ent;
        EXPECT_EQ(tape_read(t, &ent), 1);
        if (!EXPECT_EQ(tape_read(t, &ent), TAPE_ECORRUPT))
            fprintf(stderr, "  cut %zu read as data\n", i);
        tape_verify_report r;
        EXPECT_EQ(tape_verify(q, 0, &r), 1);
        EXPECT(strstr(r.vr_message, "attribute block") != NULL);
        EXPECT_EQ(r.vr_last_good, tape_make_index(q, tape_cycle_of(q, T0), 0));
        th_close_all(q, NULL, t);
    }
}

static const th_test tests[] = {
    TEST(round_trip_through_read_and_batches),
    TEST(many_and_if_carry_the_attributes),
    TEST(many_each_gives_each_entry_its_own),
    TEST(bad_attributes_write_nothing),
    TEST(stored_as_documented),
    TEST(a_version_1_file_is_upgraded_by_the_first_attributes),
    TEST(an_upgrade_cut_short_is_read_and_finished),
    TEST(a_failed_flush_of_the_upgrade_writes_nothing),
    TEST(a_version_this_build_does_not_know_is_refused),
    TEST(a_block_that_does_not_parse_is_damage),
};

TEST_MAIN(tests)
