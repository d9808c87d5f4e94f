/* test_concurrency.c - several threads and processes on one queue: one
 * total order that every tailer sees, nothing lost or duplicated, readers
 * that follow writers, tape_wait wake-ups, and a writer killed with -9. */
#include "test_harness.h"
#include "fault.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* Payload of entry `seq` of writer `who`: who, seq, then a pattern. */
static uint32_t msg_len(uint32_t seq) { return 8 + seq % 57; }

static void msg_fill(unsigned char *b, uint32_t who, uint32_t seq)
{
    memcpy(b, &who, 4);
    memcpy(b + 4, &seq, 4);
    for (uint32_t j = 8; j < msg_len(seq); j++)
        b[j] = (unsigned char)(who * 59 + seq * 7 + j);
}

/* Decode and check a payload; returns 0 when damaged. */
static int msg_parse(const void *p, uint32_t len, uint32_t *who, uint32_t *seq)
{
    const unsigned char *b = p;
    if (len < 8)
        return 0;
    memcpy(who, b, 4);
    memcpy(seq, b + 4, 4);
    if (len != msg_len(*seq))
        return 0;
    for (uint32_t j = 8; j < len; j++)
        if (b[j] != (unsigned char)(*who * 59 + *seq * 7 + j))
            return 0;
    return 1;
}

/* Read every entry of the queue from the start into (who << 32 | seq) and
 * index arrays; returns the count, or -1 after reporting a failure. */
static int64_t read_all(tape_queue *q, uint64_t *keys, int64_t *idx, int64_t max)
{
    tape_tailer *t = NULL;
    if (tape_tailer_open(q, &t) != 0) {
        TH_FAIL("tailer_open");
        return -1;
    }
    int64_t n = 0;
    tape_entry e;
    int rc;
    while ((rc = tape_read(t, &e)) == 1) {
        uint32_t who, seq;
        if (n >= max || !msg_parse(e.e_data, e.e_len, &who, &seq)) {
            TH_FAIL("entry %" PRId64 " (index %" PRId64 ") unexpected or damaged", n,
                    e.e_index);
            n = -1;
            break;
        }
        keys[n] = (uint64_t)who << 32 | seq;
        idx[n] = e.e_index;
        n++;
    }
    if (rc < 0) {
        TH_FAIL("tape_read: %s", tape_strerror(rc));
        n = -1;
    }
    tape_tailer_close(t);
    return n;
}

/* Every writer's entries appear once each, in its own order; indexes rise. */
static int check_order(const uint64_t *keys, const int64_t *idx, int64_t n, uint32_t writers,
                       uint32_t per_writer)
{
    uint32_t next[64] = {0};
    for (int64_t i = 0; i < n; i++) {
        uint32_t who = (uint32_t)(keys[i] >> 32), seq = (uint32_t)keys[i];
        if (who >= writers || seq != next[who]) {
            TH_FAIL("position %" PRId64 ": writer %u seq %u, expected seq %u", i, who, seq,
                    who < writers ? next[who] : 0);
            return 0;
        }
        next[who]++;
        if (i && idx[i] <= idx[i - 1]) {
            TH_FAIL("index not rising at %" PRId64, i);
            return 0;
        }
    }
    for (uint32_t w = 0; w < writers; w++)
        if (next[w] != per_writer) {
            TH_FAIL("writer %u: %u entries read, %u written", w, next[w], per_writer);
            return 0;
        }
    return 1;
}

/* ---- one writer thread, one reader thread ------------------------------------ */

enum { WR_N = 200000 };

typedef struct wr_ctx {
    tape_queue *q;
    atomic_int done;
    atomic_long written;  /* entries whose index is in idx[] */
    int64_t idx[WR_N];
} wr_ctx;

static void *writer_main(void *arg)
{
    wr_ctx *c = arg;
    tape_appender *a = NULL;
    if (!EXPECT_EQ(tape_appender_open(c->q, &a), 0))
        return NULL;
    unsigned char buf[128];
    for (uint32_t i = 0; i < WR_N; i++) {
        msg_fill(buf, 0, i);
        c->idx[i] = tape_append(a, buf, msg_len(i), 0);
        if (!EXPECT(c->idx[i] >= 0))
            break;
        atomic_store_explicit(&c->written, (long)i + 1, memory_order_release);
    }
    tape_appender_close(a);
    atomic_store(&c->done, 1);
    return NULL;
}

typedef struct rd_ctx {
    tape_queue *q;
    atomic_int *writers_done;
    int writers;
    int64_t expect;       /* entries to read */
    uint64_t *keys;
    int64_t *idx;
    int64_t n;
    int use_many;
} rd_ctx;

/* Follow the queue until `expect` entries have been read, sleeping in
 * tape_wait when there is nothing. */
static void *reader_main(void *arg)
{
    rd_ctx *r = arg;
    tape_tailer *t = NULL;
    if (!EXPECT_EQ(tape_tailer_open(r->q, &t), 0))
        return NULL;
    unsigned char *buf = malloc(8192);
    int64_t bidx[32], bts[32];
    uint64_t ends[32];
    int64_t deadline = th_now_ns() + 60 * 1000000000LL;
    while (r->n < r->expect) {
        int64_t got;
        if (r->use_many) {
            got = tape_read_many(t, buf, 8192, bidx, bts, ends, 32);
        } else {
            tape_entry e;
            got = tape_read(t, &e);
            if (got == 1) {
                memcpy(buf, e.e_data, e.e_len);
                bidx[0] = e.e_index;
                ends[0] = e.e_len;
            }
        }
        if (got < 0) {
            TH_FAIL("reader: %s", tape_strerror((int)got));
            break;
        }
        if (got == 0) {
            if (th_now_ns() > deadline) {
                TH_FAIL("reader stalled at %" PRId64 " of %" PRId64, r->n, r->expect);
                break;
            }
            int rc = tape_wait(t, 10 * 1000000LL);
            if (rc < 0 && rc != -EINTR) {
                TH_FAIL("tape_wait: %s", tape_strerror(rc));
                break;
            }
            continue;
        }
        for (int64_t k = 0; k < got; k++) {
            uint64_t start = k ? ends[k - 1] : 0;
            uint32_t who, seq;
            if (r->n >= r->expect ||
                !msg_parse(buf + start, (uint32_t)(ends[k] - start), &who, &seq)) {
                TH_FAIL("reader: damaged or extra entry at %" PRId64, r->n);
                goto out;
            }
            r->keys[r->n] = (uint64_t)who << 32 | seq;
            r->idx[r->n] = bidx[k];
            r->n++;
        }
    }
out:
    free(buf);
    tape_tailer_close(t);
    return NULL;
}

static void reader_thread_follows_writer_thread(void)
{
    for (int many = 0; many < 2; many++) {
        char name[16];
        snprintf(name, sizeof name, "q%d", many);
        tape_queue *q = NULL;
        CHECK_OK(th_open(name, "daily", "raw", &q));
        wr_ctx *w = calloc(1, sizeof *w);
        rd_ctx r = {q, &w->done, 1, WR_N, malloc(WR_N * 8), malloc(WR_N * 8), 0, many};
        CHECK(w && r.keys && r.idx);
        w->q = q;
        pthread_t tw, tr;
        CHECK(pthread_create(&tr, NULL, reader_main, &r) == 0);
        CHECK(pthread_create(&tw, NULL, writer_main, w) == 0);
        pthread_join(tw, NULL);
        pthread_join(tr, NULL);
        EXPECT_EQ(r.n, WR_N);
        if (check_order(r.keys, r.idx, r.n, 1, WR_N))
            for (int64_t i = 0; i < WR_N; i++)
                if (!EXPECT_EQ(r.idx[i], w->idx[i]))
                    break;
        free(r.keys);
        free(r.idx);
        free(w);
        tape_close(q);
    }
}

/* ---- moves while a writer appends ------------------------------------------------ */

/* Moves to entries just written, in blocks the writer is still filling and
 * in blocks behind it, land on exactly that entry. */
static void moves_land_while_a_writer_appends(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "minutely", "raw", &q));
    wr_ctx *c = calloc(1, sizeof *c);
    CHECK(c);
    c->q = q;
    pthread_t tw;
    CHECK(pthread_create(&tw, NULL, writer_main, c) == 0);
    tape_tailer *t = NULL;
    uint64_t rnd = 88172645463325252ull;
    CHECK_OK(tape_fault_configure(NULL, NULL)); /* count preads from here */
    long moves = 0, live = 0, written;
    /* Until the writer is done, and at least 2,000 moves in all. */
    while ((written = atomic_load_explicit(&c->written, memory_order_acquire)) < WR_N ||
           moves < 2000) {
        if (written == 0)
            continue;
        live += written < WR_N;
        if (moves % 1000 == 0) { /* a fresh tailer now and then: no hot range */
            tape_tailer_close(t);
            if (!EXPECT_EQ(tape_tailer_open(q, &t), 0))
                break;
        }
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        /* Half the moves go to the newest 64 entries. */
        long back = (long)(rnd % 64), i = (long)(rnd % (uint64_t)written);
        if (moves % 2)
            i = back < written ? written - 1 - back : written - 1;
        tape_entry e;
        uint32_t who, seq;
        if (!EXPECT_EQ(tape_tailer_to_index(t, c->idx[i]), 1) || !EXPECT_EQ(tape_read(t, &e), 1) ||
            !EXPECT(msg_parse(e.e_data, e.e_len, &who, &seq)) || !EXPECT_EQ(seq, i)) {
            fprintf(stderr, "  move %ld to entry %ld of %ld written\n", moves, i, written);
            break;
        }
        moves++;
    }
    pthread_join(tw, NULL);
    printf("       %ld moves, %ld of them while the writer wrote\n", moves, live);
    EXPECT(tape_fault_calls(TC_PREAD) > 0); /* some moves read their block with pread */
    tape_tailer_close(t);
    free(c);
    tape_close(q);
}

/* ---- four writer threads -------------------------------------------------------- */

enum { MT_WRITERS = 4, MT_PER = 50000 };

typedef struct mt_ctx {
    tape_appender *a;
    uint32_t who;
    int batch;         /* use tape_append_many in batches of this size */
    int64_t idx[MT_PER];
} mt_ctx;

static void *mt_writer(void *arg)
{
    mt_ctx *c = arg;
    unsigned char buf[16 * 128];
    uint64_t ends[16];
    for (uint32_t i = 0; i < MT_PER;) {
        if (c->batch) {
            uint32_t n = 0;
            uint64_t off = 0;
            for (; n < (uint32_t)c->batch && i + n < MT_PER; n++) {
                msg_fill(buf + off, c->who, i + n);
                off += msg_len(i + n);
                ends[n] = off;
            }
            size_t written = 0;
            int64_t last = tape_append_many(c->a, buf, ends, n, 0, &written);
            if (!EXPECT(last >= 0) || !EXPECT_EQ(written, n))
                return NULL;
            /* One lock acquisition: the batch is contiguous. */
            for (uint32_t k = 0; k < n; k++)
                c->idx[i + k] = last - (int64_t)(n - 1 - k);
            i += n;
        } else {
            msg_fill(buf, c->who, i);
            c->idx[i] = tape_append(c->a, buf, msg_len(i), 0);
            if (!EXPECT(c->idx[i] >= 0))
                return NULL;
            i++;
        }
    }
    return NULL;
}

static void four_writer_threads_one_total_order(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    static mt_ctx ctx[MT_WRITERS];
    tape_appender *own[3] = {NULL, NULL, NULL};
    /* Writers 0 and 1 have their own appender; 2 and 3 share one, and 3
     * appends in batches. */
    for (int i = 0; i < 3; i++)
        CHECK_OK(tape_appender_open(q, &own[i]));
    for (uint32_t w = 0; w < MT_WRITERS; w++) {
        ctx[w].a = own[w < 2 ? w : 2];
        ctx[w].who = w;
        ctx[w].batch = w == 3 ? 10 : 0;
    }
    /* A reader follows while they write. */
    atomic_int dummy = 0;
    int64_t total = (int64_t)MT_WRITERS * MT_PER;
    rd_ctx live = {q, &dummy, MT_WRITERS, total, malloc(total * 8), malloc(total * 8), 0, 1};
    CHECK(live.keys && live.idx);
    pthread_t tr, tw[MT_WRITERS];
    CHECK(pthread_create(&tr, NULL, reader_main, &live) == 0);
    for (int w = 0; w < MT_WRITERS; w++)
        CHECK(pthread_create(&tw[w], NULL, mt_writer, &ctx[w]) == 0);
    for (int w = 0; w < MT_WRITERS; w++)
        pthread_join(tw[w], NULL);
    pthread_join(tr, NULL);
    for (int i = 0; i < 3; i++)
        tape_appender_close(own[i]);

    EXPECT_EQ(tape_count(q), total);
    uint64_t *keys = malloc(total * 8);
    int64_t *idx = malloc(total * 8);
    CHECK(keys && idx);
    int64_t n = read_all(q, keys, idx, total);
    EXPECT_EQ(n, total);
    EXPECT_EQ(live.n, total);
    if (n == total && check_order(keys, idx, n, MT_WRITERS, MT_PER) && live.n == total) {
        /* Both readers saw one and the same order. */
        EXPECT(memcmp(keys, live.keys, total * 8) == 0);
        EXPECT(memcmp(idx, live.idx, total * 8) == 0);
        /* Each append returned the index its entry has. */
        for (int64_t i = 0; i < n; i++) {
            uint32_t who = (uint32_t)(keys[i] >> 32), seq = (uint32_t)keys[i];
            if (!EXPECT_EQ(ctx[who].idx[seq], idx[i]))
                break;
        }
    }
    free(keys);
    free(idx);
    free(live.keys);
    free(live.idx);
    tape_close(q);
}

/* ---- writer processes -------------------------------------------------------------- */

enum { MP_PROCS = 2, MP_PER = 50000 };

/* Child: open the queue itself, wait for the start signal, append. */
static void child_writer(const char *path, uint32_t who, int start_fd, uint32_t count,
                         int create)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_create = create;
    o.oo_roll_cycle = create ? "daily" : NULL;
    o.oo_codec = create ? "raw" : NULL;
    char c;
    if (start_fd >= 0 && read(start_fd, &c, 1) < 0)
        _exit(10);
    tape_queue *q = NULL;
    int rc = tape_open(path, &o, &q);
    if (rc != 0) {
        fprintf(stderr, "  child %u: open: %s\n", who, tape_strerror(rc));
        _exit(11);
    }
    tape_appender *a = NULL;
    if (tape_appender_open(q, &a) != 0)
        _exit(12);
    unsigned char buf[128];
    for (uint32_t i = 0; i < count; i++) {
        msg_fill(buf, who, i);
        int64_t idx = tape_append(a, buf, msg_len(i), 0);
        if (idx < 0) {
            fprintf(stderr, "  child %u: append %u: %s\n", who, i, tape_strerror((int)idx));
            _exit(13);
        }
    }
    th_close_all(q, a, NULL);
    _exit(0);
}

static void run_writer_processes(int nprocs, uint32_t per, int create)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pids[8];
    fflush(NULL);
    for (int p = 0; p < nprocs; p++) {
        pids[p] = fork();
        CHECK(pids[p] >= 0);
        if (pids[p] == 0) {
            close(pfd[1]);
            child_writer(th_path("q"), (uint32_t)p, pfd[0], per, create);
        }
    }
    close(pfd[0]);
    close(pfd[1]); /* start: every child's read returns 0 */
    for (int p = 0; p < nprocs; p++) {
        int st = 0;
        CHECK(waitpid(pids[p], &st, 0) == pids[p]);
        if (!EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0))
            fprintf(stderr, "  child %d status %#x\n", p, st);
    }
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", NULL, NULL, &q));
    int64_t total = (int64_t)nprocs * per;
    EXPECT_EQ(tape_count(q), total);
    uint64_t *k1 = malloc(total * 8), *k2 = malloc(total * 8);
    int64_t *i1 = malloc(total * 8), *i2 = malloc(total * 8);
    CHECK(k1 && k2 && i1 && i2);
    int64_t n1 = read_all(q, k1, i1, total);
    int64_t n2 = read_all(q, k2, i2, total);
    EXPECT_EQ(n1, total);
    if (n1 == total && n2 == total && check_order(k1, i1, n1, (uint32_t)nprocs, per)) {
        EXPECT(memcmp(k1, k2, total * 8) == 0);
        EXPECT(memcmp(i1, i2, total * 8) == 0);
    }
    free(k1);
    free(k2);
    free(i1);
    free(i2);
    tape_close(q);
}

static void two_writer_processes_one_total_order(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_close(q);
    run_writer_processes(MP_PROCS, MP_PER, 0);
}

/* Processes that create the same queue at once all open one queue. */
static void concurrent_creation_makes_one_queue(void)
{
    run_writer_processes(4, 1000, 1);
}

/* ---- tape_wait ------------------------------------------------------------------------ */

typedef struct tick_ctx {
    tape_queue *q;
    atomic_int stop;
    int period_ms;
} tick_ctx;

static void *ticker(void *arg)
{
    tick_ctx *c = arg;
    tape_appender *a = NULL;
    if (!EXPECT_EQ(tape_appender_open(c->q, &a), 0))
        return NULL;
    while (!atomic_load(&c->stop)) {
        struct timespec ts = {0, c->period_ms * 1000000L};
        nanosleep(&ts, NULL);
        if (!EXPECT(tape_append(a, "tick", 4, 0) >= 0))
            break;
    }
    tape_appender_close(a);
    return NULL;
}

static void wait_returns_when_another_thread_appends(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(th_open("q", "daily", "raw", &q), &q, &t));
    tick_ctx c = {q, 0, 30};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ticker, &c) == 0);
    int woke = 0;
    for (int round = 0; round < 5; round++) {
        tape_entry e;
        while (tape_read(t, &e) == 1)
            ;
        int64_t t0 = th_now_ns();
        int rc = tape_wait(t, 5 * 1000000000LL);
        int64_t waited = th_now_ns() - t0;
        EXPECT(rc == 0 || rc == -EINTR);
        if (EXPECT(waited < 1000000000LL) && tape_read(t, &e) == 1)
            woke++;
    }
    EXPECT_EQ(woke, 5);
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    th_close_all(q, NULL, t);
}

/* A read-only queue cannot touch the shared wake-up word; its tailers
 * still see new entries and their waits still end. */
static void read_only_tailer_follows_and_waits(void)
{
    tape_queue *q = NULL, *ro = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = 1;
    CHECK_OK(tape_open(th_path("q"), &o, &ro));
    tape_tailer *t = NULL;
    CHECK_OK(tape_tailer_open(ro, &t));
    tick_ctx c = {q, 0, 30};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ticker, &c) == 0);
    /* tape_wait may return early ("the caller reads again to know
     * which"): wait and read until an entry comes, within a second. */
    int woke = 0;
    for (int round = 0; round < 5; round++) {
        tape_entry e;
        while (tape_read(t, &e) == 1)
            ;
        int64_t t0 = th_now_ns();
        int got = 0, waits = 0;
        while (!got && th_now_ns() - t0 < 1000000000LL) {
            int rc = tape_wait(t, 5 * 1000000000LL);
            EXPECT(rc == 0 || rc == -EINTR);
            waits++;
            got = tape_read(t, &e) == 1;
        }
        if (EXPECT(got)) {
            woke++;
            EXPECT(e.e_len == 4 && memcmp(e.e_data, "tick", 4) == 0);
        }
        /* Sleeping, not spinning: a tick comes every 30 ms. */
        if (!EXPECT(waits < 1000))
            fprintf(stderr, "  %d waits for one entry\n", waits);
    }
    EXPECT_EQ(woke, 5);
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    tape_tailer_close(t);
    tape_close(ro);
    tape_close(q);
}

static void wait_returns_after_its_timeout(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(th_open("q", "daily", "raw", &q), &q, &t));
    int64_t t0 = th_now_ns();
    EXPECT_EQ(tape_wait(t, 100 * 1000000LL), 0);
    int64_t waited = th_now_ns() - t0;
    EXPECT(waited >= 90 * 1000000LL);
    EXPECT(waited < 2000 * 1000000LL);
    t0 = th_now_ns();
    EXPECT_EQ(tape_wait(t, 0), 0);
    EXPECT(th_now_ns() - t0 < 50 * 1000000LL);
    th_close_all(q, NULL, t);
}

static void wait_returns_when_another_process_appends(void)
{
    tape_queue *q = NULL;
    tape_tailer *t = NULL;
    CHECK_OK(th_with_tailer(th_open("q", "daily", "raw", &q), &q, &t));
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
        child_writer(th_path("q"), 0, -1, 1, 0);
    }
    int64_t t0 = th_now_ns();
    tape_entry e;
    int got = 0;
    while (!got && th_now_ns() - t0 < 5 * 1000000000LL) {
        int rc = tape_wait(t, 5 * 1000000000LL);
        EXPECT(rc == 0 || rc == -EINTR);
        got = tape_read(t, &e) == 1;
    }
    int64_t waited = th_now_ns() - t0;
    EXPECT(got);
    EXPECT(waited < 2 * 1000000000LL);
    int st;
    waitpid(pid, &st, 0);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    th_close_all(q, NULL, t);
}

/* ---- a writer killed with -9 ------------------------------------------------------------- */

/* The child appends as fast as it can and counts each acknowledged entry in
 * shared memory; it is killed at a random moment. Then: every acknowledged
 * entry is readable, nothing damaged is returned, and another writer gets
 * the lock quickly. */
static void killed_writer_loses_nothing_and_blocks_no_one(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_close(q);
    _Atomic uint32_t *acked = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(acked != MAP_FAILED);
    uint64_t rs = (uint64_t)th_now_ns() | 1;
    uint32_t total_acked = 0;
    for (int round = 0; round < 8; round++) {
        atomic_store(acked, 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            tape_open_opts o;
            memset(&o, 0, sizeof o);
            tape_queue *cq = NULL;
            tape_appender *a = NULL;
            if (tape_open(th_path("q"), &o, &cq) != 0 || tape_appender_open(cq, &a) != 0)
                _exit(1);
            unsigned char buf[128];
            uint32_t who = 100 + (uint32_t)round;
            for (uint32_t i = 0;; i++) {
                msg_fill(buf, who, i);
                if (tape_append(a, buf, msg_len(i), 0) < 0)
                    _exit(2);
                atomic_store(acked, i + 1);
            }
        }
        /* Let it run 20-80 ms, then kill it mid-flight. */
        int64_t t_start = th_now_ns();
        while (atomic_load(acked) == 0 && th_now_ns() - t_start < 10 * 1000000000LL) {
            struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL);
        }
        if (!EXPECT(atomic_load(acked) > 0))
            fprintf(stderr, "  round %d: the writer never appended\n", round);
        struct timespec ts = {0, (long)(20 + th_rand(&rs) % 60) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        EXPECT(WIFSIGNALED(st));
        uint32_t n_acked = atomic_load(acked);
        total_acked += n_acked;

        /* Another writer gets through quickly. */
        tape_open_opts o;
        memset(&o, 0, sizeof o);
        CHECK_OK(tape_open(th_path("q"), &o, &q));
        tape_appender *a = NULL;
        CHECK_OK(tape_appender_open(q, &a));
        int64_t t0 = th_now_ns();
        unsigned char buf[128];
        msg_fill(buf, 99, (uint32_t)round);
        EXPECT(tape_append(a, buf, msg_len((uint32_t)round), 0) >= 0);
        int64_t took = th_now_ns() - t0;
        if (!EXPECT(took < 1000000000LL))
            fprintf(stderr, "  append after kill took %.1f ms\n", (double)took / 1e6);
        tape_appender_close(a);

        /* Everything the dead writer acknowledged is there, in order. */
        tape_tailer *t = NULL;
        CHECK_OK(tape_tailer_open(q, &t));
        tape_entry e;
        int rc;
        uint32_t seen = 0, mine = 0, next99 = 0;
        while ((rc = tape_read(t, &e)) == 1) {
            uint32_t who, seq;
            if (!EXPECT(msg_parse(e.e_data, e.e_len, &who, &seq)))
                break;
            if (who == 100 + (uint32_t)round) {
                if (!EXPECT_EQ(seq, mine))
                    break;
                mine++;
            } else if (who == 99) {
                EXPECT_EQ(seq, next99);
                next99++;
            }
            seen++;
        }
        EXPECT_EQ(rc, 0);
        EXPECT(mine >= n_acked && mine <= n_acked + 1);
        EXPECT_EQ(next99, (uint32_t)round + 1);
        tape_tailer_close(t);
        tape_close(q);
    }
    EXPECT(total_acked > 0);
    munmap((void *)acked, 4096);
}

/* Appends on a shared appender until the core refuses it; counts refusals
 * that are not TAPE_ECLOSED as failures. */
static void *append_until_shut(void *arg)
{
    tape_appender *a = arg;
    int64_t rc;
    while ((rc = tape_append(a, "payload", 7, 0)) >= 0)
        ;
    if (rc != TAPE_ECLOSED)
        TH_FAIL("append: %s", tape_strerror((int)rc));
    EXPECT_EQ(tape_appender_sync(a), TAPE_ECLOSED);
    return NULL;
}

/* A shut appender refuses every call without touching its queue, so the
 * queue may be closed while other threads still call it (ASan checks that). */
static void shut_appender_refuses_calls_and_its_queue_can_close(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    pthread_t th[3];
    for (int k = 0; k < 3; k++)
        CHECK_EQ(pthread_create(&th[k], NULL, append_until_shut, a), 0);
    for (int waited = 0; waited < 10000 && tape_count(q) <= 0; waited++)
        usleep(1000); /* until the threads have appended (a loaded machine may start them late) */
    tape_appender_shut(a);
    int64_t count = tape_count(q);
    EXPECT(count > 0);
    tape_close(q); /* the threads may still be calling tape_append(a) */
    for (int k = 0; k < 3; k++)
        pthread_join(th[k], NULL);
    EXPECT_EQ(tape_append(a, "x", 1, 0), TAPE_ECLOSED);
    size_t written = 1;
    uint64_t end = 1;
    EXPECT_EQ(tape_append_many(a, "x", &end, 1, 0, &written), TAPE_ECLOSED);
    EXPECT_EQ(tape_append_if(a, "x", 1, 0, -1), TAPE_ECLOSED);
    tape_appender_close(a);
    CHECK_OK(th_open("q", "daily", "raw", &q));
    EXPECT_EQ(tape_count(q), count);
    tape_close(q);
}

static const th_test tests[] = {
    TEST(reader_thread_follows_writer_thread),
    TEST(moves_land_while_a_writer_appends),
    TEST(four_writer_threads_one_total_order),
    TEST(two_writer_processes_one_total_order),
    TEST(concurrent_creation_makes_one_queue),
    TEST(wait_returns_when_another_thread_appends),
    TEST(read_only_tailer_follows_and_waits),
    TEST(wait_returns_after_its_timeout),
    TEST(wait_returns_when_another_process_appends),
    TEST(killed_writer_loses_nothing_and_blocks_no_one),
    TEST(shut_appender_refuses_calls_and_its_queue_can_close),
};

TEST_MAIN(tests)
