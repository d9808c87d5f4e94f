/* test_clock.c - the appender's clock (clock.c): it stays within
 * TAPE_CLOCK_SPAN_NS of CLOCK_REALTIME, reads the clock again when the
 * counter runs backwards or past its span, and appends that take their time
 * from it get the wall clock, never decreasing. */
#include "test_harness.h"
#include "tape_int.h"

/* Every reading lies within the span of CLOCK_REALTIME around the call, also
 * while the counter's rate is still being measured (the first few ms) and
 * after. */
static void clock_stays_near_realtime(void)
{
    tape_clock k;
    tape_clock_init(&k);
    int64_t start = th_wall_ns(), bad = 0, n = 0;
    while (th_wall_ns() - start < 50000000) { /* 50 ms: past the first rate */
        int64_t b = th_wall_ns();
        int64_t ts = tape_clock_now(&k);
        int64_t a = th_wall_ns();
        if (ts < b - TAPE_CLOCK_SPAN_NS || ts > a + TAPE_CLOCK_SPAN_NS) {
            if (bad++ == 0)
                TH_FAIL("reading %" PRId64 " outside [%" PRId64 ", %" PRId64 "]", ts, b, a);
        }
        n++;
    }
    EXPECT_EQ(bad, 0);
    EXPECT(n > 1000);
}

/* Make k's anchor `age_ticks` old (negative: in the counter's future), with a
 * measured rate and a stale reading. */
static void stale_anchor(tape_clock *k, int64_t age_ticks)
{
    tape_clock_init(k);
    k->k_mult = (uint64_t)1 << 31; /* 0.5 ns per tick */
    k->k_span = ((uint64_t)TAPE_CLOCK_SPAN_NS << 32) / k->k_mult;
    k->k_ns = 1000000000; /* 1970 */
#if defined(__x86_64__)
    k->k_tsc = __builtin_ia32_rdtsc() - (uint64_t)age_ticks;
#endif
}

static void clock_reads_again_when_the_counter_goes_back(void)
{
    tape_clock k;
    stale_anchor(&k, -((int64_t)1 << 40));
    int64_t b = th_wall_ns();
    EXPECT(tape_clock_now(&k) >= b);
}

static void clock_reads_again_past_its_span(void)
{
    tape_clock k;
    stale_anchor(&k, 0);
    int64_t b = th_wall_ns();
    /* Within the span the (stale) anchor is used: at most the span past it. */
    int64_t ts = tape_clock_now(&k);
    if (ts < b) {
        EXPECT(ts >= k.k_ns && ts <= k.k_ns + TAPE_CLOCK_SPAN_NS);
        while (th_wall_ns() - b < 10 * TAPE_CLOCK_SPAN_NS)
            ;
        EXPECT(tape_clock_now(&k) >= b);
    }
}

/* Appends given no timestamp take the wall clock and never decrease. */
static void appends_take_the_wall_clock(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    enum { N = 200000 };
    static int64_t before[N], after[N];
    for (int i = 0; i < N; i++) {
        before[i] = th_wall_ns();
        CHECK_OK(tape_append(a, &i, sizeof i, 0));
        after[i] = th_wall_ns();
    }
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    int64_t prev = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        CHECK_EQ(tape_read(t, &e), 1);
        int64_t ts = e.e_timestamp;
        if (ts < prev || ts < before[i] - TAPE_CLOCK_SPAN_NS || ts > after[i] + TAPE_CLOCK_SPAN_NS) {
            if (bad++ == 0)
                TH_FAIL("entry %d: %" PRId64 " (previous %" PRId64 ", call %" PRId64 "..%" PRId64 ")",
                        i, ts, prev, before[i], after[i]);
        }
        prev = ts;
    }
    EXPECT_EQ(bad, 0);
    th_close_all(q, a, t);
}

static const th_test tests[] = {
    TEST(clock_stays_near_realtime),
    TEST(clock_reads_again_when_the_counter_goes_back),
    TEST(clock_reads_again_past_its_span),
    TEST(appends_take_the_wall_clock),
};

TEST_MAIN(tests)
