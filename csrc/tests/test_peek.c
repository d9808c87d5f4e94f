/* test_peek.c - peeked batches: tape_peek_many reads without moving, and
 * tape_tailer_advance moves past any prefix of the batch exactly as that many
 * tape_read calls would. */
#include "test_harness.h"

static const int64_t T0 = 1763683200LL * 1000000000LL;
static const int64_t DAY = 86400LL * 1000000000LL;

#define N_ENTRIES 10

/* Five entries on day 0, an empty cycle file on day 1 (an append_if that
 * lost creates it), no file on day 2, five entries on day 3. */
static int fill(tape_queue *q)
{
    tape_appender *a;
    int rc = tape_appender_open(q, &a);
    for (int i = 0; rc >= 0 && i < N_ENTRIES; i++) {
        if (i == N_ENTRIES / 2) {
            int64_t c = tape_append_if(a, &i, sizeof i, T0 + DAY, -5);
            if (c != TAPE_ECONFLICT)
                rc = c < 0 ? (int)c : TAPE_EINVAL;
        }
        if (rc >= 0) {
            int64_t r = tape_append(a, &i, sizeof i, i < N_ENTRIES / 2 ? T0 : T0 + 3 * DAY);
            rc = r < 0 ? (int)r : 0;
        }
    }
    if (rc >= 0)
        tape_appender_close(a);
    return rc;
}

/* A peeked batch's buffers. */
typedef struct batch {
    char b_buf[1024];
    int64_t b_idx[N_ENTRIES + 1], b_ts[N_ENTRIES + 1];
    uint64_t b_ends[N_ENTRIES + 1];
} batch;

/* tape_peek_many into b, with `cap` bytes of room for up to `max` entries. */
static int64_t peek(tape_tailer *t, batch *b, size_t cap, size_t max)
{
    return tape_peek_many(t, b->b_buf, cap, b->b_idx, b->b_ts, b->b_ends, max);
}

/* The queue of fill() and a tailer (named when `name` is not NULL). */
static int open_filled(const char *name, tape_queue **q, tape_tailer **t)
{
    int rc = th_open("q", "daily", "raw", q);
    if (rc >= 0 && (rc = fill(*q)) >= 0)
        rc = name ? tape_tailer_open_named(*q, name, t) : tape_tailer_open(*q, t);
    if (rc < 0)
        tape_close(*q);
    return rc;
}

/* The position stored under `name`, -2 when there is none. */
static int64_t stored(tape_queue *q, const char *name)
{
    char n[TAPE_NAME_MAX];
    int64_t next;
    for (int s = 0; s < TAPE_NAMED_MAX; s++)
        if (tape_named_get(q, s, n, sizeof n, &next) == 1 && strcmp(n, name) == 0)
            return next;
    return -2;
}

/* A fresh named tailer reading in direction dir from its end of the queue. */
static int open_at_start(tape_queue *q, const char *name, int dir, tape_tailer **t)
{
    tape_named_remove(q, name);
    int rc = tape_tailer_open_named(q, name, t);
    if (rc < 0)
        return rc;
    if ((rc = tape_tailer_set_direction(*t, dir)) == 0 && dir == TAPE_BACKWARD)
        rc = tape_tailer_to_end(*t);
    if (rc < 0)
        tape_tailer_close(*t);
    return rc;
}

/* For every k: peek the whole queue and advance(k) (after advancing past all
 * of it first, to check that advance moves back too), against k tape_read. */
static void advance_matches_reads(int dir)
{
    tape_queue *q;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    CHECK_OK(fill(q));
    int64_t cycles[4];
    CHECK_EQ(tape_list_cycles(q, cycles, 4), 3); /* days 0, 1 (empty) and 3 */
    batch b;
    for (size_t k = 0; k <= N_ENTRIES; k++) {
        tape_tailer *p, *r;
        tape_entry e;
        CHECK_OK(open_at_start(q, "peek", dir, &p));
        CHECK_OK(open_at_start(q, "read", dir, &r));
        for (size_t i = 0; i < k; i++)
            CHECK_EQ(tape_read(r, &e), 1);
        int64_t before = tape_tailer_index(p);
        CHECK_EQ(peek(p, &b, sizeof b.b_buf, N_ENTRIES + 1), N_ENTRIES);
        EXPECT_EQ(tape_tailer_index(p), before);
        EXPECT_EQ(tape_tailer_last_read_index(p), -1);
        CHECK_OK(tape_tailer_advance(p, N_ENTRIES));
        CHECK_OK(tape_tailer_advance(p, k));
        EXPECT_EQ(stored(q, "peek"), stored(q, "read"));
        EXPECT_EQ(tape_tailer_last_read_index(p), tape_tailer_last_read_index(r));
        EXPECT_EQ(tape_tailer_index(p), tape_tailer_index(r));
        int rp = tape_read(p, &e);
        int64_t ip = rp == 1 ? e.e_index : -1;
        int rr = tape_read(r, &e);
        EXPECT_EQ(rp, rr);
        EXPECT_EQ(ip, rr == 1 ? e.e_index : -1);
        if (k < N_ENTRIES)
            EXPECT_EQ(ip, b.b_idx[k]);
        tape_tailer_close(p);
        tape_tailer_close(r);
    }
    tape_close(q);
}

static void advance_is_k_reads_forward_across_an_empty_cycle(void)
{
    advance_matches_reads(TAPE_FORWARD);
}

static void advance_is_k_reads_backward_across_an_empty_cycle(void)
{
    advance_matches_reads(TAPE_BACKWARD);
}

static void advance_needs_a_pending_batch_and_k_within_it(void)
{
    tape_queue *q;
    tape_tailer *t;
    batch b;
    tape_entry e;
    CHECK_OK(open_filled(NULL, &q, &t));
    EXPECT_EQ(tape_tailer_advance(t, 0), TAPE_EINVAL);
    CHECK_EQ(peek(t, &b, sizeof b.b_buf, 4), 4);
    EXPECT_EQ(tape_tailer_advance(t, 5), TAPE_EINVAL);
    EXPECT_EQ(tape_tailer_advance(t, 4), 0);
    EXPECT_EQ(tape_read(t, &e), 1); /* forgets the batch */
    EXPECT_EQ(tape_tailer_advance(t, 0), TAPE_EINVAL);
    EXPECT_EQ(peek(t, &b, 2, 4), TAPE_EINVAL); /* 4 > cap */
    EXPECT_EQ(tape_tailer_advance(t, 0), TAPE_EINVAL);
    CHECK_EQ(peek(t, &b, sizeof b.b_buf, 4), 4);
    CHECK_OK(tape_tailer_to_start(t));
    EXPECT_EQ(tape_tailer_advance(t, 1), TAPE_EINVAL);
    th_close_all(q, NULL, t);
}

static void a_peek_not_advanced_leaves_the_stored_position(void)
{
    tape_queue *q;
    tape_tailer *t;
    batch b;
    tape_entry e;
    CHECK_OK(open_filled("billing", &q, &t));
    CHECK_EQ(tape_read(t, &e), 1);
    CHECK_EQ(tape_read(t, &e), 1);
    int64_t at = stored(q, "billing");
    CHECK_EQ(at, e.e_index + 1);
    CHECK_EQ(peek(t, &b, sizeof b.b_buf, 8), 8);
    EXPECT_EQ(stored(q, "billing"), at);
    tape_tailer_close(t);
    EXPECT_EQ(stored(q, "billing"), at);
    CHECK_OK(tape_tailer_open_named(q, "billing", &t));
    CHECK_EQ(tape_read(t, &e), 1);
    EXPECT_EQ(e.e_index, b.b_idx[0]);
    int v;
    memcpy(&v, e.e_data, sizeof v);
    EXPECT_EQ(v, 2);
    th_close_all(q, NULL, t);
}

static const th_test tests[] = {
    TEST(advance_is_k_reads_forward_across_an_empty_cycle),
    TEST(advance_is_k_reads_backward_across_an_empty_cycle),
    TEST(advance_needs_a_pending_batch_and_k_within_it),
    TEST(a_peek_not_advanced_leaves_the_stored_position),
};

TEST_MAIN(tests)
