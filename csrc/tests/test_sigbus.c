/* test_sigbus.c - a page that faults (SIGBUS) inside one of tape's mappings
 * becomes an error of the call that touched it (guard.c), never a crash:
 * a cycle file truncated under a tailer, an appender and verify; a fault
 * outside tape's mappings still reaches the handler installed before tape's
 * (or the default action); and a filesystem without fallocate still gets
 * its files allocated (zeros written), through the fault hooks. */
#include "test_harness.h"
#include "fault.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static const int64_t T0 = 1763683200LL * 1000000000LL;

/* The path of `q`'s only (or first) cycle file. */
static const char *cycle_path(const char *dir, tape_queue *q)
{
    int64_t c;
    char name[80];
    if (tape_list_cycles(q, &c, 1) < 1 || tape_cycle_name(q, c, name, sizeof name) < 0)
        return "";
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* A daily raw queue at dir and an appender of it that wrote n entries of
 * 100 B: entry i starts with i, then the letter 'a' + i % 26. */
static int open_filled(const char *dir, int n, tape_queue **q, tape_appender **a)
{
    int rc = th_open_at(dir, "daily", "raw", q);
    if (rc == 0)
        rc = tape_appender_open(*q, a);
    char buf[100];
    for (int i = 0; rc == 0 && i < n; i++) {
        memset(buf, 'a' + i % 26, sizeof buf);
        memcpy(buf, &i, sizeof i);
        int64_t r = tape_append(*a, buf, sizeof buf, T0 + i);
        rc = r < 0 ? (int)r : 0;
    }
    return rc;
}

/* Another queue of the process still works. */
static void other_queue_works(void)
{
    tape_queue *q;
    tape_appender *a;
    if (!EXPECT_EQ(th_open_writer("other", "daily", "raw", &q, &a), 0))
        return;
    EXPECT(tape_append(a, "ok", 2, T0) >= 0);
    tape_tailer *t;
    tape_entry e;
    if (EXPECT_EQ(tape_tailer_open(q, &t), 0)) {
        EXPECT_EQ(tape_read(t, &e), 1);
        EXPECT_EQ(e.e_len, 2);
        tape_tailer_close(t);
    }
    tape_appender_close(a);
    tape_close(q);
}

static void truncated_under_a_tailer(void)
{
    tape_queue *q;
    tape_appender *a;
    const char *dir = th_path("q");
    CHECK_OK(open_filled(dir, 20000, &q, &a));
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    for (int i = 0; i < 10; i++)
        CHECK_EQ(tape_read(t, &e), 1);
    /* The writer goes first: its prefaulter, still at work, could grow the
     * file again after the cut (zeros: "no data", not the damage tested). */
    tape_appender_close(a);
    CHECK_EQ(truncate(cycle_path(dir, q), 12288), 0);
    int64_t rc;
    int got = 10;
    while ((rc = tape_read(t, &e)) == 1) {
        int i;
        memcpy(&i, e.e_data, sizeof i);
        if (!EXPECT_EQ(i, got)) /* never a wrong value */
            break;
        got++;
    }
    EXPECT_EQ(rc, TAPE_ECORRUPT);
    EXPECT(got < 20000);
    /* Again: the same error, not a crash, not "no data". */
    EXPECT_EQ(tape_read(t, &e), TAPE_ECORRUPT);
    char buf[4096];
    int64_t idx[64], ts[64];
    uint64_t ends[64];
    EXPECT_EQ(tape_peek_many(t, buf, sizeof buf, idx, ts, ends, 64), TAPE_ECORRUPT);
    tape_tailer_close(t);
    tape_close(q);
    other_queue_works();
}

/* What tape_read hands out stays readable after the file shrinks under it
 * (a copy, made under the guard: the caller's own copy cannot fault). */
static void read_payload_outlives_a_truncation(void)
{
    tape_queue *q;
    tape_appender *a;
    const char *dir = th_path("q");
    CHECK_OK(open_filled(dir, 20000, &q, &a));
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    for (int i = 0; i <= 15000; i++)
        CHECK_EQ(tape_read(t, &e), 1);
    CHECK_EQ(truncate(cycle_path(dir, q), 12288), 0);
    int i;
    memcpy(&i, e.e_data, sizeof i); /* would be SIGBUS (or zeros) through the mapping */
    EXPECT_EQ(i, 15000);
    EXPECT_EQ(((const char *)e.e_data)[99], 'a' + 15000 % 26);
    EXPECT_EQ(tape_read(t, &e), TAPE_ECORRUPT);
    tape_tailer_close(t);
    tape_appender_close(a);
    tape_close(q);
}

static void truncated_under_an_appender(void)
{
    tape_queue *q;
    tape_appender *a;
    const char *dir = th_path("q");
    CHECK_OK(open_filled(dir, 2000, &q, &a));
    CHECK_EQ(truncate(cycle_path(dir, q), 12288), 0);
    char buf[100] = {0};
    /* The first append meets the fault (its copy lands past the end of the
     * file): an error, no index. The next ones find the cycle damaged. */
    for (int k = 0; k < 3; k++) {
        int64_t r = tape_append(a, buf, sizeof buf, T0 + 5000);
        EXPECT(r < 0);
        EXPECT(r == TAPE_ECORRUPT || r == -EIO);
    }
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    int64_t rc;
    int got = 0;
    while ((rc = tape_read(t, &e)) == 1) {
        int i;
        memcpy(&i, e.e_data, sizeof i);
        if (!EXPECT_EQ(i, got))
            break;
        got++;
    }
    EXPECT(rc < 0);
    tape_tailer_close(t);
    tape_appender_close(a);
    tape_close(q);
    other_queue_works();
}

static int truncate_now(void *arg, uint64_t walked)
{
    (void)walked;
    const char *path = arg;
    if (*path) {
        EXPECT_EQ(truncate(path, 12288), 0);
        ((char *)arg)[0] = 0;
    }
    return 0;
}

static void truncated_under_verify(void)
{
    tape_queue *q;
    tape_appender *a;
    const char *dir = th_path("q");
    CHECK_OK(open_filled(dir, 160000, &q, &a)); /* past 16 MiB: verify reports progress midway */
    char path[4096];
    snprintf(path, sizeof path, "%s", cycle_path(dir, q));
    tape_verify_report r;
    EXPECT_EQ(tape_verify_progress(q, 0, &r, truncate_now, path), TAPE_ECORRUPT);
    EXPECT_EQ(path[0], 0);
    tape_appender_close(a);
    tape_close(q);
    other_queue_works();
}

/* A fault outside tape's mappings reaches the handler installed before: it
 * jumps out here. */
static sigjmp_buf jb;
static volatile sig_atomic_t seen;
static void mine(int sig, siginfo_t *si, void *ctx)
{
    (void)sig, (void)si, (void)ctx;
    seen++;
    siglongjmp(jb, 1);
}

static int touch_foreign(void)
{
    int fd = open(th_path("empty"), O_CREAT | O_RDWR, 0600);
    if (fd < 0)
        return -1;
    volatile uint8_t *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return -1;
    return p[0]; /* past the end of an empty file: SIGBUS */
}

static void foreign_faults_are_passed_on(void)
{
    /* In children: the handler of this process is installed already. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = mine;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
        tape_queue *q; /* tape installs its handler on top, chained to mine */
        if (th_open_at(th_path("child"), "daily", "raw", &q) < 0)
            _exit(2);
        tape_appender *a;
        if (tape_appender_open(q, &a) < 0 || tape_append(a, "x", 1, T0) < 0)
            _exit(3);
        if (sigsetjmp(jb, 1) == 0)
            touch_foreign();
        /* Not only the first: every foreign fault that handler cures. */
        if (sigsetjmp(jb, 1) == 0)
            touch_foreign();
        _exit(seen == 2 ? 0 : 4);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGBUS, SIG_DFL);
        tape_queue *q;
        if (th_open_at(th_path("child2"), "daily", "raw", &q) < 0)
            _exit(2);
        touch_foreign();
        _exit(0);
    }
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS);
}

/* No fallocate (FUSE, NFS, 9p): the files are extended with zeros written,
 * allocated as with fallocate. */
static void no_fallocate_still_a_queue(void)
{
    CHECK_OK(tape_fault_configure("fallocate:1:EOPNOTSUPP:always", NULL));
    tape_queue *q;
    tape_appender *a;
    const char *dir = th_path("q");
    int rc = th_open_at(dir, "test_secondly", "raw", &q);
    if (rc == 0 && (rc = tape_appender_open(q, &a)) < 0)
        tape_close(q);
    if (!EXPECT_EQ(rc, 0)) {
        tape_fault_configure(NULL, NULL);
        return;
    }
    char buf[1000] = {1};
    int n = 0;
    /* 5 MiB over two cycles: past the first 256 KiB and several steps. */
    for (; n < 5000; n++) {
        memcpy(buf, &n, sizeof n);
        int64_t r = tape_append(a, buf, sizeof buf, T0 + (n < 2500 ? 0 : 1000000000LL) + n);
        if (!EXPECT(r >= 0)) {
            fprintf(stderr, "  append %d: %s\n", n, tape_strerror((int)r));
            break;
        }
    }
    EXPECT(tape_fault_calls(TC_FALLOCATE) > 0);
    tape_fault_configure(NULL, NULL);
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    EXPECT_EQ(r.vr_entries, 5000);
    int64_t cycles[2];
    EXPECT_EQ(tape_list_cycles(q, cycles, 2), 2);
    char name[80], path[4096];
    tape_cycle_name(q, cycles[1], name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    EXPECT_EQ(stat(path, &st), 0);
    EXPECT((uint64_t)st.st_blocks * 512 >= (uint64_t)st.st_size); /* no holes */
    tape_appender_close(a);
    tape_close(q);
}

static const th_test tests[] = {
    TEST(truncated_under_a_tailer),
    TEST(read_payload_outlives_a_truncation),
    TEST(truncated_under_an_appender),
    TEST(truncated_under_verify),
    TEST(foreign_faults_are_passed_on),
    TEST(no_fallocate_still_a_queue),
};

TEST_MAIN(tests)
