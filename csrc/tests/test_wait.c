/* test_wait.c - how a tailer waits: spinning, spinning then sleeping, and
 * waiting on a read-only queue (which polls, since it cannot announce itself
 * to writers). */
#include "test_harness.h"

#include <pthread.h>

typedef struct later {
    tape_queue *l_q;
    int l_delay_ms;
} later;

/* Append one entry after a delay, from another thread. */
static void *append_later(void *arg)
{
    later *l = arg;
    tape_appender *a;
    usleep((useconds_t)l->l_delay_ms * 1000);
    if (tape_appender_open(l->l_q, &a) == 0) {
        tape_append(a, "late", 4, 0);
        tape_appender_close(a);
    }
    return NULL;
}

/* Wait (up to 5 s) with the given spin setting on tailer t while another
 * thread appends through `writer` after 50 ms; returns the ms it took. */
static long wait_for_append(tape_queue *writer, tape_tailer *t, int64_t spin)
{
    EXPECT_EQ(tape_tailer_set_spin(t, spin), 0);
    later l = {writer, 50};
    pthread_t th;
    pthread_create(&th, NULL, append_later, &l);
    int64_t start = th_now_ns();
    tape_entry e;
    int rc;
    while ((rc = tape_read(t, &e)) == 0 && th_now_ns() - start < 5000000000LL)
        EXPECT_EQ(tape_wait(t, 5000000000LL - (th_now_ns() - start)), 0);
    EXPECT_EQ(rc, 1);
    pthread_join(th, NULL);
    return (long)((th_now_ns() - start) / 1000000);
}

static void spinning_tailer_sees_an_append(void)
{
    tape_queue *q;
    tape_tailer *t;
    CHECK_OK(th_with_tailer(th_open("q", "daily", "raw", &q), &q, &t));
    long ms = wait_for_append(q, t, -1);
    EXPECT(ms >= 40 && ms < 4000);
    ms = wait_for_append(q, t, 1000000); /* spin 1 ms, then sleep */
    EXPECT(ms >= 40 && ms < 4000);
    /* Spinning still honours the timeout. */
    CHECK_OK(tape_tailer_set_spin(t, -1));
    int64_t start = th_now_ns();
    EXPECT_EQ(tape_wait(t, 20000000), 0);
    int64_t took = th_now_ns() - start;
    EXPECT(took >= 20000000 && took < 2000000000);
    th_close_all(q, NULL, t);
}

static void read_only_tailer_waits_for_an_append(void)
{
    tape_queue *w, *r;
    tape_tailer *t;
    CHECK_OK(th_open("q", "daily", "raw", &w));
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = 1;
    CHECK_OK(tape_open(th_path("q"), &o, &r));
    CHECK_OK(tape_tailer_open(r, &t));
    long ms = wait_for_append(w, t, 0);
    EXPECT(ms >= 40 && ms < 4000);
    tape_tailer_close(t);
    tape_close(r);
    tape_close(w);
}

static const th_test tests[] = {
    TEST(spinning_tailer_sees_an_append),
    TEST(read_only_tailer_waits_for_an_append),
};

TEST_MAIN(tests)
