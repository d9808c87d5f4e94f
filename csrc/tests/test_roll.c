/* test_roll.c - cycles: removing old ones (retention), what a roll gives back
 * to the disk, and that a process crossing thousands of cycles keeps a
 * bounded number of open files. */
#include "test_harness.h"
#include "fault.h"

#include <dirent.h>
#include <sys/syscall.h>

static const int64_t T0 = 1763683200LL * 1000000000LL;
#define SEC 1000000000LL

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 2;
}

static int64_t cycle_at(tape_queue *q, int s)
{
    return tape_cycle_of(q, T0 + s * SEC);
}

/* One entry in each of the first n seconds: n cycles. */
static void make_cycles(tape_appender *a, int n)
{
    for (int s = 0; s < n; s++)
        if (tape_append(a, &s, sizeof s, T0 + s * SEC) < 0)
            TH_FAIL("append in cycle %d", s);
}

static void old_cycles_are_removed_and_the_newest_kept(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    make_cycles(a, 5);
    EXPECT_EQ(tape_remove_cycle(q, cycle_at(q, 4)), TAPE_EINVAL);
    EXPECT_EQ(tape_remove_cycle(q, cycle_at(q, 0)), 0);
    EXPECT_EQ(tape_remove_cycle(q, cycle_at(q, 0)), -ENOENT);
    EXPECT_EQ(tape_list_cycles(q, NULL, 0), 4);
    EXPECT_EQ(tape_count(q), 4);
    tape_queue_info qi;
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT_EQ(qi.qi_lowest_cycle, cycle_at(q, 1));
    /* A tailer asked for a removed index: no; from the start: the first left. */
    tape_tailer *t;
    CHECK_OK(tape_tailer_open(q, &t));
    EXPECT_EQ(tape_tailer_to_index(t, tape_make_index(q, cycle_at(q, 0), 0)), 0);
    tape_entry e;
    CHECK_EQ(tape_read(t, &e), 1);
    EXPECT_EQ(*(const int *)e.e_data, 1);
    th_close_all(q, a, t);
}

static void a_tailer_reading_a_removed_cycle_goes_on(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    for (int i = 0; i < 100; i++)
        CHECK_OK(tape_append(a, &i, sizeof i, T0));
    int i = 100;
    CHECK_OK(tape_append(a, &i, sizeof i, T0 + SEC));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_entry e;
    CHECK_EQ(tape_read(t, &e), 1);
    CHECK_OK(tape_remove_cycle(q, cycle_at(q, 0)));
    int n = 1, rc;
    while ((rc = tape_read(t, &e)) == 1)
        EXPECT_EQ(*(const int *)e.e_data, n++);
    EXPECT_EQ(rc, 0);
    EXPECT_EQ(n, 101);
    th_close_all(q, a, t);
}

static void a_roll_gives_back_the_old_cycles_preallocation(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    make_cycles(a, 3);
    char name[80], rel[96];
    CHECK_OK(tape_cycle_name(q, cycle_at(q, 0), name, sizeof name));
    snprintf(rel, sizeof rel, "q/%s", name);
    struct stat st;
    CHECK(stat(th_path(rel), &st) == 0);
    /* Header and index2index (two pages) and a page of data. */
    EXPECT((uint64_t)st.st_blocks * 512 <= 3 * 4096);
    EXPECT(st.st_size >= 8192 + 32 * 1024); /* the size is kept (room for entries) */
    th_close_all(q, a, NULL);
}

/* Dirty pages of file `rel` in the page cache (cachestat(2), Linux 6.5), or
 * -1 when the kernel cannot tell. */
static long dirty_pages(const char *rel)
{
    struct { uint64_t off, len; } range = {0, 0}; /* len 0: to the end */
    struct { uint64_t cache, dirty, writeback, evicted, recently_evicted; } cs;
    int fd = open(th_path(rel), O_RDONLY);
    if (fd < 0)
        return -1;
    long rc = syscall(451 /* cachestat */, fd, &range, &cs, 0);
    close(fd);
    return rc == 0 ? (long)cs.dirty : -1;
}

/* Appends 100 entries to cycle 0 after a sync, then one to cycle 1 through
 * `roller` (which may be another queue handle), then one through `a` (whose
 * writer thereby leaves cycle 0 if it has not yet), then syncs `a`. Returns
 * the dirty pages of cycle 0's file before the roll and after the sync; -1
 * when the kernel cannot tell (no cachestat, or a filesystem such as tmpfs
 * that keeps no dirty pages). */
static void dirty_around_a_roll(tape_queue *q, tape_appender *a, tape_appender *roller,
                                long *before, long *after)
{
    char buf[1000] = {0}, name[80], old[96];
    *before = *after = -1;
    CHECK_OK(tape_cycle_name(q, cycle_at(q, 0), name, sizeof name));
    snprintf(old, sizeof old, "q/%s", name);
    CHECK(tape_append(a, buf, sizeof buf, T0) >= 0);
    CHECK_OK(tape_appender_sync(a));
    for (int k = 0; k < 100; k++)
        CHECK(tape_append(a, buf, sizeof buf, T0 + k) >= 0);
    if ((*before = dirty_pages(old)) <= 0) {
        *before = -1;
        return;
    }
    CHECK(tape_append(roller, buf, sizeof buf, T0 + SEC) >= 0); /* rolls */
    CHECK(tape_append(a, buf, sizeof buf, T0 + SEC + 1) >= 0);
    CHECK_OK(tape_appender_sync(a));
    *after = dirty_pages(old);
}

/* A sync after a roll also flushes the cycle the writer left: its last
 * entries were written after the previous sync and must not stay in the
 * page cache only; whether this handle rolled or another one did, which
 * this handle's writer follows. */
static void a_sync_after_a_roll_flushes_the_cycle_left(void)
{
    for (int other = 0; other <= 1; other++) {
        tape_queue *q, *q2;
        tape_appender *a, *b;
        CHECK_OK(th_open("q", "test_secondly", "raw", &q));
        CHECK_OK(th_open("q", "test_secondly", "raw", &q2));
        CHECK_OK(tape_appender_open(q, &a));
        CHECK_OK(tape_appender_open(q2, &b));
        long before, after;
        dirty_around_a_roll(q, a, other ? b : a, &before, &after);
        if (before < 0)
            fprintf(stderr, "  (dirty pages cannot be told here: not checked)\n");
        else if (!EXPECT_EQ(after, 0))
            fprintf(stderr, "  roll by %s handle\n", other ? "another" : "the same");
        tape_appender_close(b);
        tape_appender_close(a);
        tape_close(q2);
        tape_close(q);
        th_rm_rf(th_path("q"));
    }
}

static void crossing_thousands_of_cycles_keeps_few_files_open(void)
{
    tape_queue *q;
    tape_appender *a;
    tape_tailer *t;
    /* On tmpfs when there is one: every roll syncs its new cycle file, and
     * what is checked here (descriptors) does not depend on the disk. */
    char shm[] = "/dev/shm/tape-roll-XXXXXX";
    int on_shm = mkdtemp(shm) != NULL;
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_create = 1;
    o.oo_roll_cycle = "test_secondly";
    o.oo_codec = "raw";
    char path[64];
    snprintf(path, sizeof path, "%s/q", shm);
    CHECK_OK(on_shm ? tape_open(path, &o, &q) : th_open("q", "test_secondly", "raw", &q));
    CHECK_OK(tape_appender_open(q, &a));
    CHECK_OK(tape_tailer_open(q, &t));
    int before = open_fds(), most = 0;
    tape_entry e;
    for (int s = 0; s < 2000; s++) {
        /* Every third second is left empty: there is no file for it. */
        if (s % 3 != 2)
            CHECK_OK(tape_append(a, &s, sizeof s, T0 + s * SEC));
        while (tape_read(t, &e) == 1)
            ;
        int now = open_fds();
        if (now > most)
            most = now;
    }
    EXPECT(most - before <= 4);
    tape_tailer_close(t);
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_OK(tape_tailer_set_direction(t, TAPE_BACKWARD));
    CHECK_OK(tape_tailer_to_end(t));
    int n = 0;
    while (tape_read(t, &e) == 1)
        n++;
    EXPECT_EQ(n, 2000 - 2000 / 3);
    EXPECT(open_fds() - before <= 4);
    th_close_all(q, a, t);
    if (on_shm)
        th_rm_rf(shm);
}

/* A roll's new file is flushed before it gets its name, and the directory
 * after it (the fault hooks count both as "fsync"), so that a power loss
 * cannot lose the name of a cycle tape.meta says exists. A failure of the
 * directory's flush fails that append; the file keeps its name and the
 * next append writes to it. */
static void a_new_cycle_files_name_is_flushed_to_disk(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "test_secondly", "raw", &q, &a));
    make_cycles(a, 1);
    int v = 7;
    CHECK_OK(tape_fault_configure("", NULL)); /* count from here */
    CHECK_OK(tape_append(a, &v, sizeof v, T0 + SEC));
    EXPECT_EQ(tape_fault_calls(TC_FSYNC), 2);
    CHECK_OK(tape_append(a, &v, sizeof v, T0 + SEC)); /* no new file: no flush */
    EXPECT_EQ(tape_fault_calls(TC_FSYNC), 2);

    CHECK_OK(tape_fault_configure("fsync:2:EIO", NULL));
    EXPECT_EQ(tape_append(a, &v, sizeof v, T0 + 2 * SEC), -EIO);
    tape_fault_configure(NULL, NULL);
    char name[80], rel[96];
    CHECK_OK(tape_cycle_name(q, cycle_at(q, 2), name, sizeof name));
    snprintf(rel, sizeof rel, "q/%s", name);
    struct stat st;
    EXPECT(stat(th_path(rel), &st) == 0);
    int64_t i = tape_append(a, &v, sizeof v, T0 + 2 * SEC);
    EXPECT(i >= 0);
    EXPECT_EQ(tape_index_cycle(q, i), cycle_at(q, 2));
    th_close_all(q, a, NULL);
}

static const th_test tests[] = {
    TEST(old_cycles_are_removed_and_the_newest_kept),
    TEST(a_tailer_reading_a_removed_cycle_goes_on),
    TEST(a_roll_gives_back_the_old_cycles_preallocation),
    TEST(a_sync_after_a_roll_flushes_the_cycle_left),
    TEST(crossing_thousands_of_cycles_keeps_few_files_open),
    TEST(a_new_cycle_files_name_is_flushed_to_disk),
};

TEST_MAIN(tests)
