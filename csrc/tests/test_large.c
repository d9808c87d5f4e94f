/* test_large.c - reading large payloads: tape_read_into (one copy, into
 * memory the caller allocates once it knows the size) and tape_read_pinned
 * (no copy: entries handed out of the mapping, held by pins that outlive the
 * tailer, its moves to other cycles and the queue; a file truncated under a
 * pin reads as zeros (the SIGBUS guard), which tape_pin_damaged reports). */
#include "test_harness.h"

static const int64_t T0 = 1763683200LL * 1000000000LL;
static const int64_t DAY = 86400LL * 1000000000LL;

#define BIG (64 * 1024)
#define N 8

/* Payload k: BIG bytes of k + i. */
static void fill_payload(unsigned char *p, int k)
{
    for (int i = 0; i < BIG; i++)
        p[i] = (unsigned char)(k + i);
}

static int same_payload(const void *d, int k)
{
    unsigned char want[BIG];
    fill_payload(want, k);
    return memcmp(d, want, BIG) == 0;
}

/* N entries of BIG bytes, entry k on day k / 2 (four cycle files). */
static int open_filled(tape_queue **q, tape_tailer **t)
{
    tape_appender *a = NULL;
    int rc = th_open_writer("q", "daily", "raw", q, &a);
    static unsigned char p[BIG];
    for (int k = 0; rc >= 0 && k < N; k++) {
        fill_payload(p, k);
        int64_t r = tape_append(a, p, BIG, T0 + (k / 2) * DAY);
        rc = r < 0 ? (int)r : 0;
    }
    if (a)
        tape_appender_close(a);
    if (rc >= 0)
        rc = tape_tailer_open(*q, t);
    if (rc < 0)
        tape_close(*q);
    return rc;
}

static void pins_outlive_the_tailer_its_cycles_and_the_queue(void)
{
    tape_queue *q;
    tape_tailer *t;
    CHECK_OK(open_filled(&q, &t));
    tape_pin *pins[N];
    const void *data[N];
    tape_entry e;
    for (int k = 0; k < N; k++) {
        CHECK_EQ(tape_read_pinned(t, &e, &pins[k]), 1);
        CHECK(pins[k] != NULL);
        EXPECT_EQ(e.e_len, BIG);
        EXPECT(same_payload(e.e_data, k));
        data[k] = e.e_data;
    }
    tape_pin *none = (tape_pin *)&e;
    EXPECT_EQ(tape_read_pinned(t, &e, &none), 0);
    EXPECT(none == NULL);
    CHECK_OK(tape_tailer_to_start(t));
    CHECK_EQ(tape_read(t, &e), 1);
    th_close_all(q, NULL, t);
    for (int k = 0; k < N; k++) {
        EXPECT(same_payload(data[k], k));
        EXPECT_EQ(tape_pin_damaged(pins[k]), 0);
        tape_pin_release(pins[k]);
    }
    tape_pin_release(NULL);
}

static void a_truncated_file_reads_as_zeros_and_is_reported(void)
{
    tape_queue *q;
    tape_tailer *t;
    CHECK_OK(open_filled(&q, &t));
    tape_entry e;
    tape_pin *pin;
    CHECK_EQ(tape_read_pinned(t, &e, &pin), 1);
    char name[64], path[128];
    CHECK_OK(tape_cycle_name(q, tape_cycle_of(q, T0), name, sizeof name));
    snprintf(path, sizeof path, "q/%s", name);
    th_close_all(q, NULL, t);
    EXPECT_EQ(tape_pin_damaged(pin), 0);
    CHECK_OK(truncate(th_path(path), 4096));
    const unsigned char *d = e.e_data;
    int nonzero = 0;
    for (uint32_t i = 0; i < e.e_len; i++)
        nonzero += d[i] != 0;
    EXPECT_EQ(nonzero, 0);
    EXPECT_EQ(tape_pin_damaged(pin), TAPE_ECORRUPT);
    tape_pin_release(pin);
}

/* alloc for tape_read_into: malloc, counting the calls in *ctx (int). */
static void *counted_malloc(void *ctx, size_t len)
{
    ++*(int *)ctx;
    return malloc(len ? len : 1);
}

static void *no_memory(void *ctx, size_t len)
{
    (void)ctx;
    (void)len;
    return NULL;
}

static void read_into_copies_each_payload_once_into_the_callers_memory(void)
{
    tape_queue *q;
    tape_tailer *t;
    CHECK_OK(open_filled(&q, &t));
    tape_entry e;
    int calls = 0;
    EXPECT_EQ(tape_read_into(t, &e, no_memory, NULL), -ENOMEM);
    for (int k = 0; k < N; k++) {
        CHECK_EQ(tape_read_into(t, &e, counted_malloc, &calls), 1);
        EXPECT_EQ(calls, k + 1);
        EXPECT_EQ(e.e_len, BIG);
        EXPECT_EQ(e.e_index, tape_make_index(q, tape_cycle_of(q, T0 + (k / 2) * DAY), k % 2));
        EXPECT(e.e_attrs.a_key == NULL);
        EXPECT(same_payload(e.e_data, k)); /* (the first one too: -ENOMEM did not move) */
        free((void *)e.e_data);
    }
    EXPECT_EQ(tape_read_into(t, &e, counted_malloc, &calls), 0);
    EXPECT_EQ(calls, N);
    th_close_all(q, NULL, t);
}

static void read_into_gives_the_key_of_an_attributed_entry(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    static unsigned char p[BIG];
    fill_payload(p, 7);
    tape_attrs at = {"order-17", 8, 0, 0, -1, 0};
    CHECK_OK(tape_append_ex(a, p, BIG, T0, &at));
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    int calls = 0;
    CHECK_EQ(tape_read_into(t, &e, counted_malloc, &calls), 1);
    EXPECT(same_payload(e.e_data, 7));
    EXPECT_EQ(e.e_attrs.a_key_len, 8);
    EXPECT(e.e_attrs.a_key && memcmp(e.e_attrs.a_key, "order-17", 8) == 0);
    free((void *)e.e_data);
    th_close_all(q, a, t);
}

static const th_test tests[] = {
    TEST(read_into_copies_each_payload_once_into_the_callers_memory),
    TEST(read_into_gives_the_key_of_an_attributed_entry),
    TEST(pins_outlive_the_tailer_its_cycles_and_the_queue),
    TEST(a_truncated_file_reads_as_zeros_and_is_reported),
};

TEST_MAIN(tests)
