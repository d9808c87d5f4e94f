/* test_cas.c - tape_append_if: an append that happens only if the queue's
 * last entry is the expected one, the building block of atomic
 * read-modify-write across processes (durable atoms). */
#include "test_harness.h"

#include <sys/wait.h>

static void append_if_checks_the_last_entry(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    EXPECT_EQ(tape_append_if(a, "x", 1, 0, 12345), TAPE_ECONFLICT);
    int64_t first = tape_append_if(a, "a", 1, 0, -1);
    CHECK_OK(first);
    EXPECT_EQ(tape_append_if(a, "b", 1, 0, -1), TAPE_ECONFLICT);
    int64_t second = tape_append_if(a, "b", 1, 0, first);
    EXPECT_EQ(second, first + 1);
    EXPECT_EQ(tape_append_if(a, "c", 1, 0, first), TAPE_ECONFLICT);
    EXPECT_EQ(tape_count(q), 2);
    th_close_all(q, a, NULL);
}

/* Read the counter (the last entry) and append it plus one, retrying on
 * conflict; `n` times. */
static int increment(const char *path, int n)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    if (tape_open(path, &o, &q) < 0 || tape_appender_open(q, &a) < 0 || tape_tailer_open(q, &t) < 0)
        return -1;
    tape_tailer_set_direction(t, TAPE_BACKWARD);
    for (int i = 0; i < n;) {
        tape_entry e;
        int64_t last = tape_last_index(q);
        int v = 0;
        if (last >= 0) {
            if (tape_tailer_to_index(t, last) != 1 || tape_read(t, &e) != 1)
                return -2;
            memcpy(&v, e.e_data, sizeof v);
        }
        v++;
        int64_t rc = tape_append_if(a, &v, sizeof v, 0, last);
        if (rc >= 0)
            i++;
        else if (rc != TAPE_ECONFLICT)
            return -3;
    }
    th_close_all(q, a, t);
    return 0;
}

static void two_processes_incrementing_lose_no_update(void)
{
    tape_queue *q;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_close(q);
    const char *path = th_path("q");
    pid_t kids[2];
    for (int k = 0; k < 2; k++)
        if ((kids[k] = fork()) == 0)
            _exit(increment(path, 500) == 0 ? 0 : 1);
    for (int k = 0; k < 2; k++) {
        int st;
        CHECK(waitpid(kids[k], &st, 0) == kids[k] && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK_OK(th_open("q", "daily", "raw", &q));
    EXPECT_EQ(tape_count(q), 1000);
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    int expect = 1, v;
    while (tape_read(t, &e) == 1) {
        memcpy(&v, e.e_data, sizeof v);
        EXPECT_EQ(v, expect++);
    }
    th_close_all(q, NULL, t);
}

static const th_test tests[] = {
    TEST(append_if_checks_the_last_entry),
    TEST(two_processes_incrementing_lose_no_update),
};

TEST_MAIN(tests)
