/* test_verify.c - tape_verify: a sound queue passes; damage is found, placed,
 * and in salvage mode what is intact beyond it is counted. */
#include "test_harness.h"
#include "tape_int.h"

static const int64_t T0 = 1763683200LL * 1000000000LL;
#define NENT 1000 /* test_secondly: index arrays every 128 entries, blocks of 4 */

static int64_t idx[NENT];

static void make_queue(tape_queue **q, int cycles)
{
    tape_appender *a;
    if (th_open("q", "test_secondly", "raw", q) < 0 || tape_appender_open(*q, &a) < 0) {
        TH_FAIL("cannot create the queue");
        return;
    }
    for (int i = 0; i < NENT; i++) {
        char buf[40];
        memset(buf, 'a' + i % 26, sizeof buf);
        idx[i] = tape_append(a, buf, (size_t)(i % 40), T0 + (int64_t)(i * cycles / NENT) * 1000000000LL);
        if (idx[i] < 0)
            TH_FAIL("append %d: %s", i, tape_strerror((int)idx[i]));
    }
    tape_appender_close(a);
}

static const char *cycle_file(tape_queue *q, int64_t cycle)
{
    static char name[80], rel[96];
    if (tape_cycle_name(q, cycle, name, sizeof name) < 0)
        return NULL;
    snprintf(rel, sizeof rel, "q/%s", name);
    return th_path(rel);
}

/* File offset of entry i, and of the first entry of its cycle. */
static uint64_t offset_of(tape_queue *q, int i, uint64_t *data_off)
{
    tape_cyc y;
    uint64_t pos = 0;
    if (tape_cyc_open(q, tape_index_cycle(q, idx[i]), 0, &y) < 0)
        return 0;
    if (tape_cyc_locate(q, &y, (uint64_t)tape_index_seq(q, idx[i]), &pos) != 1)
        pos = 0;
    if (data_off)
        *data_off = y.y_data_off;
    tape_cyc_close(&y);
    return pos;
}

static void sound_queue_passes(void)
{
    tape_queue *q;
    make_queue(&q, 3);
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    EXPECT_EQ(r.vr_cycles, 3);
    EXPECT_EQ(r.vr_entries, NENT);
    EXPECT_EQ(r.vr_problems, 0);
    EXPECT_EQ(r.vr_unsealed, 0);
    EXPECT_EQ(r.vr_last_good, idx[NENT - 1]);
    EXPECT_EQ(r.vr_bad_cycle, -1);
    tape_close(q);
}

static void flipped_byte_is_found_and_salvage_reads_past_it(void)
{
    tape_queue *q;
    make_queue(&q, 1);
    int victim = 501; /* payload length 501 % 40 = 21: not empty */
    uint64_t off = offset_of(q, victim, NULL);
    CHECK(off);
    CHECK_OK(th_pwrite_byte(cycle_file(q, tape_index_cycle(q, idx[0])), (off_t)(off + 18), 0xFF));
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 1);
    EXPECT_EQ(r.vr_problems, 1);
    EXPECT_EQ(r.vr_last_good, idx[victim - 1]);
    EXPECT_EQ(r.vr_bad_offset, off);
    EXPECT_EQ(r.vr_entries, victim);
    EXPECT(strstr(r.vr_message, "checksum") != NULL);
    EXPECT_EQ(tape_verify(q, TAPE_VERIFY_SALVAGE, &r), 1);
    EXPECT_EQ(r.vr_problems, 1);
    /* Entries 501..503 (to the next block of 4) are skipped; the rest count. */
    EXPECT_EQ(r.vr_skipped, 3);
    EXPECT_EQ(r.vr_entries, NENT - 3);
    EXPECT_EQ(r.vr_last_good, idx[victim - 1]);
    tape_close(q);
}

static void garbage_after_the_end_is_found(void)
{
    tape_queue *q;
    make_queue(&q, 1);
    tape_cycle_info ci;
    uint64_t data;
    CHECK(offset_of(q, 0, &data));
    CHECK_OK(tape_cycle_info_get(q, tape_index_cycle(q, idx[0]), &ci));
    uint64_t end = data + ci.ci_bytes;
    CHECK_OK(th_pwrite_byte(cycle_file(q, ci.ci_cycle), (off_t)(end + 100), 0x42));
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 1);
    EXPECT_EQ(r.vr_entries, NENT);
    EXPECT_EQ(r.vr_last_good, idx[NENT - 1]);
    EXPECT_EQ(r.vr_bad_offset, end + 100);
    tape_close(q);
}

static void truncated_file_is_found(void)
{
    tape_queue *q;
    make_queue(&q, 1);
    uint64_t off = offset_of(q, NENT - 1, NULL);
    CHECK(off);
    CHECK(truncate(cycle_file(q, tape_index_cycle(q, idx[0])), (off_t)(off + 10)) == 0);
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 1);
    EXPECT_EQ(r.vr_entries, NENT - 1);
    EXPECT_EQ(r.vr_last_good, idx[NENT - 2]);
    tape_close(q);
}

static void unsealed_cycle_is_counted_not_a_problem(void)
{
    tape_queue *q;
    make_queue(&q, 2);
    /* Remove the end-of-file marker of the first cycle, as a writer that died
     * while rolling leaves it. */
    tape_cycle_info ci;
    int64_t c0 = tape_index_cycle(q, idx[0]);
    CHECK_OK(tape_cycle_info_get(q, c0, &ci));
    CHECK(ci.ci_sealed);
    uint64_t data;
    CHECK(offset_of(q, 0, &data));
    uint64_t end = data + ci.ci_bytes;
    for (int k = 0; k < 4; k++)
        CHECK_OK(th_pwrite_byte(cycle_file(q, c0), (off_t)(end + (uint64_t)k), 0));
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 0);
    EXPECT_EQ(r.vr_unsealed, 1);
    EXPECT_EQ(r.vr_entries, NENT);
    tape_close(q);
}

static void non_zero_padding_is_found(void)
{
    tape_queue *q;
    make_queue(&q, 1);
    int victim = 3; /* payload 3 bytes: 5 bytes of padding follow */
    uint64_t off = offset_of(q, victim, NULL);
    CHECK(off);
    CHECK_OK(th_pwrite_byte(cycle_file(q, tape_index_cycle(q, idx[0])), (off_t)(off + 16 + 3 + 1), 0x01));
    tape_verify_report r;
    EXPECT_EQ(tape_verify(q, 0, &r), 1);
    EXPECT(strstr(r.vr_message, "padding") != NULL);
    EXPECT_EQ(r.vr_last_good, idx[victim - 1]);
    tape_close(q);
}

typedef struct walk {
    uint64_t w_calls;
    uint64_t w_last;
    int w_backwards;
} walk;

static int on_progress(void *arg, uint64_t walked)
{
    walk *w = arg;
    if (walked < w->w_last)
        w->w_backwards = 1;
    w->w_last = walked;
    w->w_calls++;
    return 0;
}

static int stop_at_once(void *arg, uint64_t walked)
{
    (void)walked;
    ++*(int *)arg;
    return 1;
}

static void progress_grows_to_the_bytes_of_every_cycle(void)
{
    tape_queue *q;
    make_queue(&q, 3);
    walk w = {0, 0, 0};
    tape_verify_report r;
    EXPECT_EQ(tape_verify_progress(q, 0, &r, on_progress, &w), 0);
    EXPECT_EQ(r.vr_entries, NENT);
    int64_t cycles[8];
    int64_t n = tape_list_cycles(q, cycles, 8);
    EXPECT_EQ(n, 3);
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        tape_cycle_info ci;
        CHECK_OK(tape_cycle_info_get(q, cycles[i], &ci));
        total += ci.ci_bytes;
    }
    EXPECT_EQ(w.w_calls, 3); /* once per cycle file: each is under 16 MiB */
    EXPECT_EQ(w.w_last, total);
    EXPECT_EQ(w.w_backwards, 0);
    int calls = 0;
    EXPECT_EQ(tape_verify_progress(q, 0, &r, stop_at_once, &calls), -ECANCELED);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(r.vr_cycles, 1);
    tape_close(q);
}

static const th_test tests[] = {
    TEST(non_zero_padding_is_found),
    TEST(sound_queue_passes),
    TEST(progress_grows_to_the_bytes_of_every_cycle),
    TEST(flipped_byte_is_found_and_salvage_reads_past_it),
    TEST(garbage_after_the_end_is_found),
    TEST(truncated_file_is_found),
    TEST(unsealed_cycle_is_counted_not_a_problem),
};

TEST_MAIN(tests)
