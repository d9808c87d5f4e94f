/* test_fault.c - failing system calls (TAPE_TESTING builds only): each hooked
 * call failing with ENOSPC and with EIO, once and from then on, at every
 * position of a short workload that creates a queue, appends across three
 * cycles and syncs. Every failure must be a typed error (never a crash or
 * SIGBUS), and after reopening without faults the queue must verify and hold
 * exactly the entries whose append succeeded, in order. */
#include "test_harness.h"
#include "fault.h"

static const int64_t T0 = 1763683200LL * 1000000000LL;
#define NAPPEND 300

static const char *const calls[] = {"open", "ftruncate", "fallocate", "mmap", "fsync", "rename"};

typedef struct outcome {
    int acked[NAPPEND];     /* which appends succeeded */
    int errors;             /* typed errors seen */
} outcome;

static int typed(int64_t rc)
{
    return rc < 0 && (rc > TAPE_EBASE || (rc <= TAPE_ECORRUPT && rc >= TAPE_ECLOCK));
}

/* The workload, under whatever faults are configured. */
static void workload(const char *dir, outcome *o)
{
    memset(o, 0, sizeof *o);
    tape_queue *q;
    int rc = th_open_at(dir, "test_secondly", "raw", &q);
    if (rc < 0) {
        o->errors += typed(rc);
        if (!typed(rc))
            TH_FAIL("tape_open: untyped %d", rc);
        return;
    }
    tape_appender *a;
    rc = tape_appender_open(q, &a);
    if (rc < 0) {
        o->errors++;
        tape_close(q);
        return;
    }
    char buf[2000];
    for (int i = 0; i < NAPPEND; i++) {
        memset(buf, i & 0xFF, sizeof buf);
        memcpy(buf, &i, sizeof i);
        int64_t r = tape_append(a, buf, 200 + (size_t)(i % 7) * 250, T0 + (int64_t)(i / 100) * 1000000000LL);
        if (r >= 0)
            o->acked[i] = 1;
        else if (typed(r))
            o->errors++;
        else
            TH_FAIL("append %d: untyped %lld", i, (long long)r);
        if (i % 100 == 99 && (rc = tape_appender_sync(a)) < 0)
            o->errors++;
    }
    th_close_all(q, a, NULL);
}

/* Reopen without faults: it verifies, and holds exactly the acked entries. */
static void check_after(const char *dir, const outcome *o, const char *what)
{
    tape_fault_configure(NULL, NULL);
    tape_queue *q;
    int rc = th_open_at(dir, NULL, NULL, &q); /* the stored roll cycle and codec */
    if (rc == TAPE_ENOTQUEUE || rc == -ENOENT) { /* failed before the queue existed */
        for (int i = 0; i < NAPPEND; i++)
            if (o->acked[i]) {
                TH_FAIL("%s: no queue, yet append %d succeeded", what, i);
                return;
            }
        return;
    }
    if (rc < 0) {
        TH_FAIL("%s: reopen: %s", what, tape_strerror(rc));
        return;
    }
    tape_verify_report r;
    if (tape_verify(q, 0, &r) != 0)
        TH_FAIL("%s: verify: %s", what, r.vr_message);
    tape_tailer *t;
    if (tape_tailer_open(q, &t) == 0) {
        tape_entry e;
        int next = 0;
        while ((rc = tape_read(t, &e)) == 1) {
            int v;
            memcpy(&v, e.e_data, sizeof v);
            while (next < NAPPEND && !o->acked[next])
                next++;
            if (v != next) {
                TH_FAIL("%s: read %d, expected %d", what, v, next);
                break;
            }
            next++;
        }
        while (next < NAPPEND && !o->acked[next])
            next++;
        if (rc < 0)
            TH_FAIL("%s: read: %s", what, tape_strerror(rc));
        else if (next != NAPPEND)
            TH_FAIL("%s: acknowledged entry %d is missing", what, next);
        tape_tailer_close(t);
    }
    /* And it takes writes again. */
    tape_appender *a;
    if (tape_appender_open(q, &a) < 0 || tape_append(a, "again", 5, 0) < 0)
        TH_FAIL("%s: the queue refuses writes after the faults", what);
    else
        th_close_all(q, a, NULL);
}

static void every_call_fails_at_every_position(void)
{
    const char *errs[] = {"ENOSPC", "EIO"};
    int runs = 0, failing = 0;
    for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
        for (int n = 1;; n++) {
            int fired_any = 0;
            for (int e = 0; e < 2; e++) {
                for (int always = 0; always < 2; always++) {
                    char spec[64], dir[64], what[128];
                    snprintf(spec, sizeof spec, "%s:%d:%s%s", calls[c], n, errs[e], always ? ":always" : "");
                    snprintf(dir, sizeof dir, "q-%s-%d-%d-%d", calls[c], n, e, always);
                    snprintf(what, sizeof what, "TAPE_FAULT=%s", spec);
                    CHECK_OK(tape_fault_configure(spec, NULL));
                    outcome o;
                    workload(th_path(dir), &o);
                    runs++;
                    if (o.errors) {
                        fired_any = 1;
                        failing++;
                    }
                    check_after(th_path(dir), &o, what);
                    th_rm_rf(th_path(dir));
                }
            }
            /* Past the last call the workload makes, nothing fails any more. */
            if (!fired_any)
                break;
        }
    }
    printf("       %d runs, %d with a failed call\n", runs, failing);
    EXPECT(failing > 0);
}

/* A failed flush poisons the queue's appenders until it is reopened. */
static void failed_sync_poisons_until_reopened(void)
{
    CHECK_OK(tape_fault_configure(NULL, NULL));
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    CHECK_OK(tape_append(a, "a", 1, 0));
    tape_fault_configure("fsync:1:EIO", NULL); /* count from here */
    EXPECT_EQ(tape_appender_sync(a), -EIO);
    EXPECT_EQ(tape_append(a, "b", 1, 0), TAPE_EPOISONED);
    EXPECT_EQ(tape_appender_sync(a), TAPE_EPOISONED);
    th_close_all(q, a, NULL);
    tape_fault_configure(NULL, NULL);
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    EXPECT(tape_append(a, "c", 1, 0) >= 0);
    EXPECT_EQ(tape_appender_sync(a), 0);
    EXPECT_EQ(tape_count(q), 2);
    th_close_all(q, a, NULL);
}

/* A failing pread only costs a move its jump buffer: it still lands, through
 * the mapping, once or from then on. */
static void failing_pread_leaves_moves_to_the_mapping(void)
{
    enum { N = 500 };
    CHECK_OK(tape_fault_configure(NULL, NULL));
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    char buf[700];
    int64_t idx[N];
    for (int i = 0; i < N; i++) {
        memset(buf, i & 0xFF, sizeof buf);
        memcpy(buf, &i, sizeof i);
        idx[i] = tape_append(a, buf, 100 + (size_t)(i % 3) * 300, T0);
        CHECK(idx[i] >= 0);
    }
    tape_appender_close(a);
    const char *specs[] = {"pread:1:EIO", "pread:1:EIO:always", "pread:7:EINTR:always"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        CHECK_OK(tape_fault_configure(specs[s], NULL));
        tape_tailer *t;
        CHECK_OK(tape_tailer_open(q, &t));
        for (int k = 0; k < N; k++) {
            int i = (k * 163) % N, got;
            tape_entry e;
            if (!EXPECT_EQ(tape_tailer_to_index(t, idx[i]), 1) || !EXPECT_EQ(tape_read(t, &e), 1))
                break;
            memcpy(&got, e.e_data, sizeof got);
            if (!EXPECT_EQ(got, i) || !EXPECT_EQ(e.e_len, 100 + (i % 3) * 300)) {
                fprintf(stderr, "  under TAPE_FAULT=%s\n", specs[s]);
                break;
            }
        }
        EXPECT(tape_fault_calls(TC_PREAD) > 0); /* the moves did try pread */
        tape_tailer_close(t);
    }
    tape_fault_configure(NULL, NULL);
    tape_close(q);
}

static const th_test tests[] = {
    TEST(every_call_fails_at_every_position),
    TEST(failed_sync_poisons_until_reopened),
    TEST(failing_pread_leaves_moves_to_the_mapping),
};

TEST_MAIN(tests)
