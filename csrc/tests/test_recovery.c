/* test_recovery.c - what a writer or reader finds after another one died or
 * fell far behind: regression tests for the defects a review of the core
 * found (stale writer state after a recovery, abandoned entries larger than a
 * process's view, lagging tailers, full cycles, damaged index slots). These
 * tests reach into tape_int.h to set up states a crash leaves behind. */
#include "test_harness.h"
#include "tape_int.h"

#include <signal.h>
#include <sys/wait.h>

static const int64_t T0 = 1763683200LL * 1000000000LL; /* a second boundary */

static int open_q(const char *roll, tape_queue **q)
{
    return th_open("q", roll, "raw", q);
}

/* Read every entry; returns the count, or a negative error. Payloads are
 * copied into out[i] (up to 8 bytes) when out is given. */
static long read_all(tape_queue *q, char (*out)[8], long cap)
{
    tape_tailer *t;
    int rc = tape_tailer_open(q, &t);
    if (rc < 0)
        return rc;
    tape_entry e;
    long n = 0;
    while ((rc = tape_read(t, &e)) == 1) {
        if (out && n < cap) {
            memset(out[n], 0, 8);
            memcpy(out[n], e.e_data, e.e_len < 8 ? e.e_len : 8);
        }
        n++;
    }
    tape_tailer_close(t);
    return rc < 0 ? rc : n;
}

/* A writer publishes two entries and dies holding the lock before it
 * records the new end (the hint is put back as it was); another process
 * takes the lock over without writing. The first writer, whose remembered end
 * is now stale, must append after the dead writer's entries, not over them. */
static void stale_writer_appends_after_a_dead_writers_entries(void)
{
    tape_queue *qb;
    tape_appender *ab;
    CHECK_OK(open_q("daily", &qb));
    CHECK_OK(tape_appender_open(qb, &ab));
    CHECK_OK(tape_append(ab, "B0", 2, 0));
    pid_t c = fork();
    if (c == 0) {
        tape_queue *q;
        tape_appender *a;
        if (open_q("daily", &q) < 0 || tape_appender_open(q, &a) < 0)
            _exit(2);
        tape_meta_shared saved = *q->q_sh;
        if (tape_append(a, "C0", 2, 0) < 0 || tape_append(a, "C1", 2, 0) < 0)
            _exit(3);
        q->q_sh->ms_hint_gen = saved.ms_hint_gen;
        q->q_sh->ms_hint_pos = saved.ms_hint_pos;
        q->q_sh->ms_hint_seq = saved.ms_hint_seq;
        q->q_sh->ms_last_ts = saved.ms_last_ts;
        int r;
        tape_lock(q, &r);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pid_t d = fork();
    if (d == 0) {
        tape_queue *q;
        tape_appender *a;
        if (open_q("daily", &q) < 0 || tape_appender_open(q, &a) < 0 || tape_appender_sync(a) < 0)
            _exit(2);
        tape_appender_close(a);
        tape_close(q);
        _exit(0);
    }
    CHECK(waitpid(d, &st, 0) == d && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_OK(tape_append(ab, "B1", 2, 0));
    char got[8][8];
    EXPECT_EQ(read_all(qb, got, 8), 4);
    EXPECT(!strcmp(got[0], "B0") && !strcmp(got[1], "C0") && !strcmp(got[2], "C1") &&
           !strcmp(got[3], "B1"));
    tape_appender_close(ab);
    tape_close(qb);
}

/* A dead writer's "not complete" entry reaching far past what the recovering
 * process has mapped is cleared over its whole length: no byte past the end
 * of data stays non-zero, and the queue goes on working. */
static void abandoned_entry_beyond_the_recoverers_view(uint64_t len, uint64_t at)
{
    th_rm_rf(th_path("q"));
    tape_queue *qb;
    tape_appender *ab;
    CHECK_OK(open_q("test_secondly", &qb));
    CHECK_OK(tape_appender_open(qb, &ab));
    CHECK_OK(tape_append(ab, "B0", 2, T0));
    pid_t c = fork();
    if (c == 0) {
        tape_queue *q;
        tape_appender *a;
        if (open_q("test_secondly", &q) < 0 || tape_appender_open(q, &a) < 0)
            _exit(2);
        static char buf[8000];
        memset(buf, 0x63, sizeof buf);
        while (q->q_w.w_pos < at)
            if (tape_append(a, buf, sizeof buf, T0) < 0)
                _exit(3);
        int r;
        tape_lock(q, &r);
        uint64_t pos = q->q_w.w_pos;
        if (tape_view_grow(&q->q_w.w_y.y_v, pos + len + 64) < 0)
            _exit(4);
        uint8_t *b = q->q_w.w_y.y_v.v_base;
        uint32_t h = TAPE_H_NC | (uint32_t)(len - 4);
        memcpy(b + pos, &h, 4);
        memset(b + pos + 16, 0x11, len - 16);
        _exit(0);
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_OK(tape_append(ab, "B1", 2, T0));
    tape_view *v = &qb->q_w.w_y.y_v;
    CHECK(tape_view_cover(v, UINT64_MAX) >= 0);
    uint64_t nonzero = 0;
    for (uint64_t p = qb->q_w.w_pos; p < v->v_size; p++)
        nonzero += v->v_base[p] != 0;
    EXPECT_EQ(nonzero, 0);
    long before = read_all(qb, NULL, 0);
    EXPECT(before > 2);
    for (int i = 0; i < 300; i++)
        CHECK_OK(tape_append(ab, "more", 4, T0));
    EXPECT_EQ(read_all(qb, NULL, 0), before + 300);
    EXPECT_EQ(tape_count(qb), before + 300);
    tape_appender_close(ab);
    tape_close(qb);
}

static void abandoned_entry_larger_than_the_view_is_cleared(void)
{
    abandoned_entry_beyond_the_recoverers_view((uint64_t)32 << 20, ((uint64_t)2 << 20) - 4096);
}

static void abandoned_entry_larger_than_the_mapping_is_cleared(void)
{
    abandoned_entry_beyond_the_recoverers_view((uint64_t)300 << 20, (uint64_t)13 << 20);
}

/* A tailer that mapped the file when it was small and then falls far behind
 * reads on past its first mapping. */
static void lagging_tailer_reads_past_its_first_mapping(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_with_appender(open_q("daily", &q), &q, &a));
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_OK(tape_append(a, "first", 5, 0));
    tape_entry e;
    CHECK_EQ(tape_read(t, &e), 1);
    char *big = calloc(1, 1 << 20);
    CHECK(big);
    for (int i = 0; i < 400; i++) {
        big[0] = (char)i;
        CHECK_OK(tape_append(a, big, 1 << 20, 0));
    }
    free(big);
    int n = 0, rc;
    while ((rc = tape_read(t, &e)) == 1) {
        EXPECT_EQ(((const unsigned char *)e.e_data)[0], (unsigned char)n);
        n++;
    }
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(n, 400);
    th_close_all(q, a, t);
}

/* After to_end on a full cycle, a forward tailer moves on to the next one. */
static void full_cycle_end_moves_to_the_next_cycle(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_with_appender(open_q("test_secondly", &q), &q, &a));
    for (int i = 0; i < 4096; i++)
        CHECK_OK(tape_append(a, "x", 1, T0));
    CHECK_EQ(tape_append(a, "x", 1, T0), TAPE_ECYCLEFULL);
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_OK(tape_tailer_to_end(t));
    int64_t next = tape_append(a, "next", 4, T0 + 1000000000);
    CHECK_OK(next);
    tape_entry e;
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT_EQ(e.e_index, next);
    th_close_all(q, a, t);
}

/* Backward past the first entry, then forward: the first entry again. */
static void forward_after_reading_backward_past_the_start(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_with_appender(open_q("daily", &q), &q, &a));
    int64_t first = tape_append(a, "a", 1, 0);
    CHECK_OK(first);
    CHECK_OK(tape_append(a, "b", 1, 0));
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_OK(tape_tailer_to_end(t));
    tape_entry e;
    while (tape_read(t, &e) == 1)
        ;
    CHECK_OK(tape_tailer_set_direction(t, TAPE_FORWARD));
    EXPECT_EQ(tape_read(t, &e), 1);
    EXPECT_EQ(e.e_index, first);
    th_close_all(q, a, t);
}

/* Index slots pointing outside the file are damage, reported, never
 * followed. */
static void damaged_index_slots_are_reported(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_with_appender(open_q("test_secondly", &q), &q, &a));
    for (int i = 0; i < 40; i++)
        CHECK_OK(tape_append(a, "entry", 5, T0 + i));
    tape_cyc y;
    CHECK_OK(tape_cyc_open(q, tape_cycle_of(q, T0), 1, &y));
    uint64_t arr;
    CHECK_EQ(tape_cyc_index_array(q, &y, 0, &arr), 1);
    uint64_t *slots = (uint64_t *)tape_cyc_slots(&y, arr);
    slots[3] = (uint64_t)100 << 20;
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    EXPECT_EQ(tape_tailer_to_time(t, T0 + 15), TAPE_ECORRUPT);
    uint64_t *i2i = (uint64_t *)(y.y_v.v_base + y.y_i2i_off);
    i2i[0] = UINT64_MAX - 65535;
    /* Counted from the entry headers, and said to be damaged. */
    EXPECT_EQ(tape_count(q), 40);
    tape_cycle_info ci;
    CHECK_OK(tape_cycle_info_get(q, tape_cycle_of(q, T0), &ci));
    EXPECT(ci.ci_damaged);
    tape_cyc_close(&y);
    th_close_all(q, a, t);
}

/* A tailer killed while asleep costs writers one wake-up: the next append
 * clears the sleepers bit. */
static void killed_sleeper_costs_one_wake_up(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_with_appender(open_q("daily", &q), &q, &a));
    CHECK_OK(tape_append(a, "a", 1, 0));
    pid_t c = fork();
    if (c == 0) {
        tape_queue *cq;
        tape_tailer *t;
        tape_entry e;
        if (open_q("daily", &cq) < 0 || tape_tailer_open(cq, &t) < 0 || tape_read(t, &e) != 1)
            _exit(2);
        for (;;)
            tape_wait(t, -1);
    }
    for (int i = 0; i < 200 && !(__atomic_load_n(&q->q_sh->ms_notify, __ATOMIC_SEQ_CST) &
                                 TAPE_NOTIFY_SLEEPERS); i++)
        usleep(5000);
    EXPECT(__atomic_load_n(&q->q_sh->ms_notify, __ATOMIC_SEQ_CST) & TAPE_NOTIFY_SLEEPERS);
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    CHECK_OK(tape_append(a, "b", 1, 0));
    EXPECT(!(__atomic_load_n(&q->q_sh->ms_notify, __ATOMIC_SEQ_CST) & TAPE_NOTIFY_SLEEPERS));
    th_close_all(q, a, NULL);
}

/* A zeroed page in the middle of an older cycle looks like its end: the
 * reader must report damage, not skip the rest of that cycle. */
static void zeroed_page_in_an_older_cycle_is_damage_not_its_end(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_with_appender(open_q("test_secondly", &q), &q, &a));
    char buf[200];
    memset(buf, 'v', sizeof buf);
    for (int i = 0; i < 100; i++)
        CHECK_OK(tape_append(a, buf, sizeof buf, T0));
    CHECK_OK(tape_append(a, buf, sizeof buf, T0 + 1000000000LL));
    tape_cyc y;
    CHECK_OK(tape_cyc_open(q, tape_cycle_of(q, T0), 1, &y));
    uint64_t pos;
    CHECK_EQ(tape_cyc_locate(q, &y, 30, &pos), 1);
    /* Unseal it, as if its writer had died before sealing; zero a page. */
    uint64_t end, count;
    uint32_t h;
    CHECK_OK(tape_cyc_find_end(q, &y, &end, &count, &h, NULL));
    memset(y.y_v.v_base + end, 0, 4);
    uint64_t page = (pos + 4095) & ~(uint64_t)4095;
    memset(y.y_v.v_base + page, 0, 4096);
    tape_cyc_close(&y);
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    int n = 0, rc;
    while ((rc = tape_read(t, &e)) == 1) {
        EXPECT(e.e_len == sizeof buf); /* never the next cycle's entry */
        n++;
    }
    EXPECT_EQ(rc, TAPE_ECORRUPT);
    EXPECT(n < 100);
    th_close_all(q, a, t);
}

/* A power loss tore the last entry: appends are refused until the tail is
 * repaired, which removes only what no reader could reach. */
static void repairing_a_torn_tail_lets_writers_append_again(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_with_appender(open_q("daily", &q), &q, &a));
    char buf[100];
    memset(buf, 'r', sizeof buf);
    int64_t last = 0;
    for (int i = 0; i < 200; i++)
        CHECK_OK(last = tape_append(a, buf, sizeof buf, 0));
    tape_appender_close(a);
    tape_cyc y;
    CHECK_OK(tape_cyc_open(q, tape_index_cycle(q, last), 1, &y));
    uint64_t pos;
    CHECK_EQ(tape_cyc_locate(q, &y, (uint64_t)tape_index_seq(q, last), &pos), 1);
    memset(y.y_v.v_base + pos + 16, 0, 50); /* its payload never reached the disk */
    tape_cyc_close(&y);
    tape_close(q);

    CHECK_OK(open_q("daily", &q)); /* as after a restart */
    CHECK_OK(tape_appender_open(q, &a));
    EXPECT_EQ(tape_append(a, "x", 1, 0), TAPE_ECORRUPT);
    int64_t cleared = tape_repair_tail(q);
    EXPECT(cleared > 0);
    int64_t next = tape_append(a, "after", 5, 0);
    EXPECT_EQ(next, last); /* the torn entry's place */
    EXPECT_EQ(tape_count(q), 200);
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    EXPECT_EQ(tape_repair_tail(q), 0); /* a sound tail is left alone */
    th_close_all(q, a, NULL);
}

/* Index slots damaged to offsets near 2^64 (sums with them wrap around):
 * moves and reads report damage or stop, and never crash. */
static void extreme_index_slots_never_crash_a_tailer(void)
{
    static const uint64_t bad[][2] = {
        {0xFFFFFFFFFFFFFFF0ull, 0xFFFFFFFFFFFFFFF8ull},
        {0xFFFFFFFFFFFFFFF0ull, 0},
        {(uint64_t)INT64_MAX + 1, (uint64_t)INT64_MAX + 9},
        {0, 0xFFFFFFFFFFFFFFF8ull},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char name[16];
        snprintf(name, sizeof name, "q%zu", k);
        tape_queue *q;
        tape_appender *a;
        CHECK_OK(th_open(name, "test_secondly", "raw", &q));
        CHECK_OK(tape_appender_open(q, &a));
        int64_t idx[60];
        for (int i = 0; i < 60; i++)
            CHECK_OK(idx[i] = tape_append(a, &i, sizeof i, T0 + i));
        tape_appender_close(a);
        tape_tailer *named;
        CHECK_OK(tape_tailer_open_named(q, "n", &named));
        CHECK_EQ(tape_tailer_to_index(named, idx[9]), 1);
        tape_tailer_close(named);
        tape_cyc y;
        CHECK_OK(tape_cyc_open(q, tape_cycle_of(q, T0), 1, &y));
        uint64_t arr;
        CHECK_EQ(tape_cyc_index_array(q, &y, 0, &arr), 1);
        uint64_t *slots = (uint64_t *)tape_cyc_slots(&y, arr);
        slots[2] = bad[k][0]; /* test_secondly: block 2 holds entries 8..11 */
        slots[3] = bad[k][1];
        tape_cyc_close(&y);
        for (int i = 0; i < 60; i++) {
            tape_tailer *t;
            tape_entry e;
            CHECK_OK(tape_tailer_open(q, &t));
            int rc = tape_tailer_to_index(t, idx[i]);
            EXPECT(rc == 0 || rc == 1 || rc == TAPE_ECORRUPT);
            if (rc == 1 && (rc = tape_read(t, &e)) == 1)
                EXPECT_EQ(e.e_index, idx[i]);
            EXPECT(rc >= 0 || rc == TAPE_ECORRUPT);
            tape_tailer_close(t);
        }
        /* A named tailer resuming inside the damaged block. */
        int rc = tape_tailer_open_named(q, "n", &named);
        EXPECT(rc == 0 || rc == TAPE_ECORRUPT);
        if (rc == 0) {
            tape_entry e;
            rc = tape_read(named, &e);
            EXPECT(rc == 0 || rc == TAPE_ECORRUPT || (rc == 1 && e.e_index == idx[9]));
            tape_tailer_close(named);
        }
        tape_close(q);
    }
}

/* 300 entries of 40 bytes (payload: the entry's number), entry 290's payload
 * damaged: a torn tail that tape_repair_tail clears from 290 on. */
static int damaged_tail(tape_queue **q, tape_appender **a, int64_t idx[300])
{
    int rc = open_q("test_secondly", q);
    if (rc < 0 || (rc = tape_appender_open(*q, a)) < 0)
        return rc;
    char buf[40];
    for (int i = 0; i < 300; i++) {
        memset(buf, 'o', sizeof buf);
        memcpy(buf, &i, sizeof i);
        if ((idx[i] = tape_append(*a, buf, sizeof buf, T0 + i)) < 0)
            return (int)idx[i];
    }
    tape_cyc y;
    if ((rc = tape_cyc_open(*q, tape_cycle_of(*q, T0), 1, &y)) < 0)
        return rc;
    uint64_t pos;
    if (tape_cyc_locate(*q, &y, (uint64_t)tape_index_seq(*q, idx[290]), &pos) == 1)
        y.y_v.v_base[pos + 16 + 20] ^= 0xFF;
    else
        rc = TAPE_ECORRUPT;
    tape_cyc_close(&y);
    return rc;
}

/* Repair the tail, then append entries 290..299 again, `len` bytes each
 * (payload: 1000 + the entry's number). */
static void repair_and_rewrite(tape_queue *q, tape_appender *a, const int64_t idx[300], size_t len)
{
    EXPECT(tape_repair_tail(q) > 0);
    char buf[200];
    for (int i = 290; i < 300; i++) {
        int v = 1000 + i;
        memset(buf, 'n', sizeof buf);
        memcpy(buf, &v, sizeof v);
        EXPECT_EQ(tape_append(a, buf, len, T0 + 400), idx[i]);
    }
}

/* The next read of `t` is entry `i` as rewritten, or nothing (never a copy of
 * the entry that was cleared). */
static void next_read_is_rewritten(tape_tailer *t, int i, size_t len, int or_nothing)
{
    tape_entry e;
    int rc = tape_read(t, &e), got = -1;
    if (rc == 1)
        memcpy(&got, e.e_data, sizeof got);
    if (!EXPECT((or_nothing && rc == 0) || (rc == 1 && got == 1000 + i && e.e_len == len)))
        fprintf(stderr, "  read %d, payload of entry %d\n", rc, got);
}

/* A move can land past damage in the newest cycle (it walks headers only).
 * Repairing the tail then clears that entry and writers write new ones in its
 * place: the tailer must read the new entry, not a copy of the old one. */
static void tailer_past_the_damage_reads_what_repair_left(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    tape_entry e;
    int64_t idx[300];
    CHECK_OK(damaged_tail(&q, &a, idx));
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_EQ(tape_tailer_to_index(t, idx[291]), 1);
    CHECK_EQ(tape_read(t, &e), 1);
    CHECK_EQ(tape_tailer_to_index(t, idx[291]), 1);
    repair_and_rewrite(q, a, idx, 40);
    next_read_is_rewritten(t, 291, 40, 1);
    th_close_all(q, a, t);
}

/* The same for a tailer reading backward, whose entry positions in the block
 * are cached: after the repair, new entries of other sizes lie at other
 * offsets, and it reads them. */
static void backward_tailer_past_the_damage_reads_what_repair_left(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    tape_entry e;
    int64_t idx[300];
    CHECK_OK(damaged_tail(&q, &a, idx));
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_EQ(tape_tailer_to_index(t, idx[295]), 1);
    CHECK_EQ(tape_read(t, &e), 1); /* 295: caches the offsets of 292..295 */
    repair_and_rewrite(q, a, idx, 120);
    next_read_is_rewritten(t, 294, 120, 0);
    th_close_all(q, a, t);
}

static const th_test tests[] = {
    TEST(repairing_a_torn_tail_lets_writers_append_again),
    TEST(zeroed_page_in_an_older_cycle_is_damage_not_its_end),
    TEST(stale_writer_appends_after_a_dead_writers_entries),
    TEST(abandoned_entry_larger_than_the_view_is_cleared),
    TEST(abandoned_entry_larger_than_the_mapping_is_cleared),
    TEST(lagging_tailer_reads_past_its_first_mapping),
    TEST(full_cycle_end_moves_to_the_next_cycle),
    TEST(forward_after_reading_backward_past_the_start),
    TEST(damaged_index_slots_are_reported),
    TEST(killed_sleeper_costs_one_wake_up),
    TEST(extreme_index_slots_never_crash_a_tailer),
    TEST(tailer_past_the_damage_reads_what_repair_left),
    TEST(backward_tailer_past_the_damage_reads_what_repair_left),
};

TEST_MAIN(tests)
