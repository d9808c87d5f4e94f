/* test_named.c - named tailers: positions kept in the queue, resumed by other
 * tailers and processes. */
#include "test_harness.h"

#include <sys/wait.h>

static const int64_t T0 = 1763683200LL * 1000000000LL;

static int append_n(tape_appender *a, int from, int n, int64_t ts)
{
    for (int i = from; i < from + n; i++) {
        int64_t rc = tape_append(a, &i, sizeof i, ts);
        if (rc < 0)
            return (int)rc;
    }
    return 0;
}

/* The value of the next entry, -1 when none, -2 on error. */
static int next_value(tape_tailer *t)
{
    tape_entry e;
    int rc = tape_read(t, &e);
    if (rc != 1)
        return rc == 0 ? -1 : -2;
    int v;
    memcpy(&v, e.e_data, sizeof v);
    return v;
}

static void named_tailer_resumes_after_the_last_entry_read(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    CHECK_OK(append_n(a, 0, 10, 0));
    CHECK_OK(tape_tailer_open_named(q, "billing", &t));
    for (int i = 0; i < 4; i++)
        CHECK_EQ(next_value(t), i);
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open_named(q, "billing", &t));
    EXPECT_EQ(next_value(t), 4);
    tape_tailer_close(t);
    /* Another name starts at the start. */
    CHECK_OK(tape_tailer_open_named(q, "audit", &t));
    EXPECT_EQ(next_value(t), 0);
    th_close_all(q, a, t);
}

static void another_process_resumes_a_named_tailer(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    CHECK_OK(append_n(a, 0, 100, 0));
    pid_t c = fork();
    if (c == 0) {
        tape_queue *cq;
        tape_tailer *ct;
        if (th_open("q", "daily", "raw", &cq) < 0 || tape_tailer_open_named(cq, "worker", &ct) < 0)
            _exit(2);
        for (int i = 0; i < 37; i++)
            if (next_value(ct) != i)
                _exit(3);
        _exit(0); /* no close: the position is already stored */
    }
    int st;
    CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_OK(tape_tailer_open_named(q, "worker", &t));
    EXPECT_EQ(next_value(t), 37);
    th_close_all(q, a, t);
}

static void moves_are_stored(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    int64_t first = tape_append(a, &(int){0}, sizeof(int), 0);
    CHECK_OK(first);
    CHECK_OK(append_n(a, 1, 9, 0));
    CHECK_OK(tape_tailer_open_named(q, "n", &t));
    CHECK_EQ(tape_tailer_to_index(t, first + 6), 1);
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open_named(q, "n", &t));
    EXPECT_EQ(next_value(t), 6);
    CHECK_OK(tape_tailer_to_end(t));
    tape_tailer_close(t);
    CHECK_OK(append_n(a, 10, 1, 0));
    CHECK_OK(tape_tailer_open_named(q, "n", &t));
    EXPECT_EQ(next_value(t), 10);
    CHECK_OK(tape_tailer_to_start(t));
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open_named(q, "n", &t));
    EXPECT_EQ(next_value(t), 0);
    th_close_all(q, a, t);
}

static void named_tailers_are_listed_and_removed(void)
{
    tape_queue *q;
    tape_tailer *t;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    CHECK_OK(tape_tailer_open_named(q, "one", &t));
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open_named(q, "two", &t));
    tape_tailer_close(t);
    int found = 0;
    for (int i = 0; i < TAPE_NAMED_MAX; i++) {
        char name[TAPE_NAME_MAX];
        int64_t next;
        int rc = tape_named_get(q, i, name, sizeof name, &next);
        CHECK_OK(rc);
        if (rc == 1) {
            EXPECT(!strcmp(name, "one") || !strcmp(name, "two"));
            EXPECT_EQ(next, -1);
            found++;
        }
    }
    EXPECT_EQ(found, 2);
    EXPECT_EQ(tape_named_remove(q, "one"), 0);
    EXPECT_EQ(tape_named_remove(q, "one"), -ENOENT);
    found = 0;
    for (int i = 0; i < TAPE_NAMED_MAX; i++) {
        char name[TAPE_NAME_MAX];
        int64_t next;
        found += tape_named_get(q, i, name, sizeof name, &next) == 1;
    }
    EXPECT_EQ(found, 1);
    tape_close(q);
}

static void names_are_checked_and_slots_are_bounded(void)
{
    tape_queue *q;
    tape_tailer *t = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    EXPECT_EQ(tape_tailer_open_named(q, "", &t), TAPE_EINVAL);
    char longname[TAPE_NAME_MAX + 1];
    memset(longname, 'x', TAPE_NAME_MAX);
    longname[TAPE_NAME_MAX] = '\0';
    EXPECT_EQ(tape_tailer_open_named(q, longname, &t), TAPE_EINVAL);
    for (int i = 0; i < TAPE_NAMED_MAX; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        CHECK_OK(tape_tailer_open_named(q, name, &t));
        tape_tailer_close(t);
    }
    EXPECT_EQ(tape_tailer_open_named(q, "one-too-many", &t), TAPE_ELIMIT);
    /* An existing name still opens. */
    EXPECT_EQ(tape_tailer_open_named(q, "t7", &t), 0);
    th_close_all(q, NULL, t);
}

static void read_only_queue_resumes_without_storing(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    CHECK_OK(append_n(a, 0, 5, 0));
    CHECK_OK(tape_tailer_open_named(q, "r", &t));
    CHECK_EQ(next_value(t), 0);
    CHECK_EQ(next_value(t), 1);
    th_close_all(q, a, t);

    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = 1;
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    CHECK_OK(tape_tailer_open_named(q, "r", &t));
    EXPECT_EQ(next_value(t), 2);
    EXPECT_EQ(next_value(t), 3);
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open_named(q, "r", &t));
    EXPECT_EQ(next_value(t), 2); /* nothing was stored */
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open_named(q, "new-name", &t));
    EXPECT_EQ(next_value(t), 0);
    tape_tailer_close(t);
    int used = 0;
    for (int i = 0; i < TAPE_NAMED_MAX; i++) {
        char name[TAPE_NAME_MAX];
        int64_t next;
        used += tape_named_get(q, i, name, sizeof name, &next) == 1;
    }
    EXPECT_EQ(used, 1);
    tape_close(q);
}

/* A tailer that read a whole cycle goes on in the next one; a tailer whose
 * cycle was removed starts at the first entry that remains. */
static void stored_positions_survive_rolls_and_removed_cycles(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    CHECK_OK(append_n(a, 0, 3, T0));
    CHECK_OK(tape_tailer_open_named(q, "end", &t));
    for (int i = 0; i < 3; i++)
        CHECK_EQ(next_value(t), i);
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open_named(q, "old", &t));
    CHECK_EQ(next_value(t), 0);
    tape_tailer_close(t);
    CHECK_OK(append_n(a, 3, 3, T0 + 2000000000LL));
    CHECK_OK(append_n(a, 6, 3, T0 + 4000000000LL));
    CHECK_OK(tape_tailer_open_named(q, "end", &t));
    EXPECT_EQ(next_value(t), 3);
    tape_tailer_close(t);
    char name[80], rel[96];
    CHECK_OK(tape_cycle_name(q, tape_cycle_of(q, T0), name, sizeof name));
    snprintf(rel, sizeof rel, "q/%s", name);
    CHECK(unlink(th_path(rel)) == 0);
    CHECK_OK(tape_tailer_open_named(q, "old", &t));
    EXPECT_EQ(next_value(t), 3);
    th_close_all(q, a, t);
}

static const th_test tests[] = {
    TEST(named_tailer_resumes_after_the_last_entry_read),
    TEST(another_process_resumes_a_named_tailer),
    TEST(moves_are_stored),
    TEST(named_tailers_are_listed_and_removed),
    TEST(names_are_checked_and_slots_are_bounded),
    TEST(read_only_queue_resumes_without_storing),
    TEST(stored_positions_survive_rolls_and_removed_cycles),
};

TEST_MAIN(tests)
