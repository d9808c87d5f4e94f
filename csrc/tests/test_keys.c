/* test_keys.c - the key directory: the newest entry of a key, tombstones,
 * the live keys, compare-and-append per key; the directory grown, rebuilt
 * when missing or damaged, and brought up to date after a writer killed
 * between publishing and updating it. */
#include "test_harness.h"
#include "../fault.h"

#include <signal.h>
#include <sys/wait.h>

static const int64_t T0 = 1763683200LL * 1000000000LL;

static int64_t put_key(tape_appender *a, const char *key, uint32_t flags)
{
    tape_attrs at = {key, (uint32_t)strlen(key), flags, 0, -1, 0};
    return tape_append_ex(a, "v", 1, T0, &at);
}

static int64_t latest(tape_queue *q, const char *key)
{
    return tape_key_latest(q, key, (uint32_t)strlen(key));
}

static void latest_tombstones_and_the_live_keys(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    EXPECT_EQ(latest(q, "a"), -1);
    int64_t a1 = put_key(a, "a", 0);
    EXPECT(tape_append(a, "plain", 5, T0) >= 0);
    int64_t b1 = put_key(a, "b", TAPE_A_KEY_STR);
    int64_t a2 = put_key(a, "a", 0);
    EXPECT(a1 >= 0 && b1 > a1 && a2 > b1);
    EXPECT_EQ(latest(q, "a"), a2);
    EXPECT_EQ(latest(q, "b"), b1);
    int64_t idx[4];
    EXPECT_EQ(tape_keys_list(q, idx, 4), 2);
    EXPECT(put_key(a, "b", TAPE_A_TOMBSTONE) >= 0);
    EXPECT_EQ(latest(q, "b"), -1);
    EXPECT_EQ(tape_keys_list(q, idx, 4), 1);
    EXPECT_EQ(idx[0], a2);
    EXPECT_EQ(tape_key_latest(q, "a", 0), TAPE_EINVAL);

    /* Compare-and-append per key. */
    tape_attrs at = {"a", 1, 0, 0, -1, 0};
    EXPECT_EQ(tape_append_if_key(a, "w", 1, T0, a1, &at), TAPE_ECONFLICT);
    size_t len;
    unsigned char *f = th_read_file(th_path("q/tape.keys"), &len);
    CHECK(f != NULL);
    EXPECT_EQ(th_le32(f + 72), 0); /* nothing written: not left marked */
    free(f);
    int64_t a3 = tape_append_if_key(a, "w", 1, T0, a2, &at);
    EXPECT(a3 > a2);
    EXPECT_EQ(latest(q, "a"), a3);
    tape_attrs bt = {"b", 1, 0, 0, -1, 0};
    EXPECT(tape_append_if_key(a, "w", 1, T0, -1, &bt) >= 0); /* b was deleted */
    tape_attrs none = {NULL, 0, 0, 5, -1, 0};
    EXPECT_EQ(tape_append_if_key(a, "w", 1, T0, -1, &none), TAPE_EINVAL);
    th_close_all(q, a, NULL);
}

#define MANY 5000

static void many_keys_grow_the_table_and_survive_a_rebuild(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    int64_t want[MANY];
    char key[32];
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        want[i] = put_key(a, key, 0);
    }
    for (int i = 0; i < MANY; i += 7) {
        snprintf(key, sizeof key, "key-%d", i);
        EXPECT_EQ(latest(q, key), want[i]);
    }
    EXPECT_EQ(tape_keys_list(q, NULL, 0), MANY);
    th_close_all(q, a, NULL);
    /* Gone: rebuilt from the log. Damaged: the same. */
    CHECK_OK(unlink(th_path("q/tape.keys")));
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    EXPECT_EQ(latest(q, "key-4999"), want[4999]);
    CHECK_OK(th_pwrite_byte(th_path("q/tape.keys"), 9, 0x55));
    tape_queue *q2;
    CHECK_OK(th_open("q", "daily", "raw", &q2));
    EXPECT_EQ(latest(q2, "key-17"), want[17]);
    EXPECT_EQ(tape_keys_list(q2, NULL, 0), MANY);
    /* The first handle maps the rebuilt file: what it writes, the other sees. */
    int64_t again = put_key(a, "key-17", 0);
    EXPECT_EQ(latest(q2, "key-17"), again);
    tape_close(q2);
    want[17] = again;
    /* A read-only handle without a usable file reads the log. */
    CHECK_OK(unlink(th_path("q/tape.keys")));
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = 1;
    CHECK_OK(tape_open(th_path("q"), &o, &q2));
    EXPECT_EQ(latest(q2, "key-4998"), want[4998]);
    EXPECT_EQ(tape_keys_list(q2, NULL, 0), MANY);
    tape_close(q2);
    th_close_all(q, a, NULL);
}

static void a_writer_killed_before_the_update_is_caught_up(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    int64_t k1 = put_key(a, "k", 0);
    th_close_all(q, a, NULL);
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        if (tape_fault_configure(NULL, "key_update:1") != 0 ||
            th_open_writer("q", "daily", "raw", &q, &a) < 0)
            _exit(3);
        put_key(a, "k", 0);
        _exit(4);
    }
    int st;
    waitpid(c, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* The entry was published, the directory not updated. */
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = 1;
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    int64_t k2 = latest(q, "k");
    EXPECT(k2 > k1);
    tape_close(q);
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    EXPECT_EQ(latest(q, "k"), k2);
    int64_t k3 = put_key(a, "k", 0);
    EXPECT_EQ(latest(q, "k"), k3);
    th_close_all(q, a, NULL);
}

static void another_process_sees_the_key_once_the_append_returned(void)
{
    tape_queue *q;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    EXPECT_EQ(latest(q, "x"), -1); /* maps the (new) directory first */
    int p[2];
    CHECK_OK(pipe(p));
    pid_t c = fork();
    CHECK(c >= 0);
    if (c == 0) {
        tape_queue *cq;
        tape_appender *a;
        if (th_open_writer("q", "daily", "raw", &cq, &a) < 0)
            _exit(3);
        for (int i = 0; i < 200; i++) {
            int64_t idx = put_key(a, i % 2 ? "x" : "y", 0);
            if (write(p[1], &idx, sizeof idx) != sizeof idx)
                _exit(4);
        }
        _exit(0);
    }
    close(p[1]);
    int64_t idx;
    int i = 0;
    while (read(p[0], &idx, sizeof idx) == sizeof idx) {
        int64_t got = latest(q, i % 2 ? "x" : "y");
        if (!EXPECT(got >= idx))
            break;
        i++;
    }
    close(p[0]);
    int st;
    waitpid(c, &st, 0);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_EQ(i, 200);
    tape_close(q);
}

static const th_test tests[] = {
    TEST(latest_tombstones_and_the_live_keys),
    TEST(many_keys_grow_the_table_and_survive_a_rebuild),
    TEST(a_writer_killed_before_the_update_is_caught_up),
    TEST(another_process_sees_the_key_once_the_append_returned),
};

TEST_MAIN(tests)
