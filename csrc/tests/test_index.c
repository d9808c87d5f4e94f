/* test_index.c - index arithmetic: the roll-cycle table, index packing,
 * the cycle of a timestamp and the cycle file names (docs/FORMAT.md,
 * "Indexes" and "Roll cycles"). */
#include "test_harness.h"

typedef struct roll_row {
    const char *name;
    int64_t length_ms;
    const char *format;
    int count_log2;
    int spacing_log2;
    int seq_bits;
    int64_t entries;
} roll_row;

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

/* The table of docs/FORMAT.md, copied by hand. */
static const roll_row format_table[] = {
    {"test_secondly", SEC, "%Y%m%d-%H%M%S", 5, 2, 12, 4096LL},
    {"test_ten_secondly", 10 * SEC, "%Y%m%d-%H%M%S", 5, 2, 12, 4096LL},
    {"minutely", MIN, "%Y%m%d-%H%M", 11, 4, 26, 67108864LL},
    {"five_minutely", 5 * MIN, "%Y%m%d-%H%M", 11, 5, 27, 134217728LL},
    {"ten_minutely", 10 * MIN, "%Y%m%d-%H%M", 11, 5, 27, 134217728LL},
    {"twenty_minutely", 20 * MIN, "%Y%m%d-%H%M", 11, 5, 27, 134217728LL},
    {"half_hourly", 30 * MIN, "%Y%m%d-%H%M", 11, 5, 27, 134217728LL},
    {"hourly", HOUR, "%Y%m%d-%H", 12, 4, 28, 268435456LL},
    {"two_hourly", 2 * HOUR, "%Y%m%d-%H", 12, 5, 29, 536870912LL},
    {"four_hourly", 4 * HOUR, "%Y%m%d-%H", 12, 5, 29, 536870912LL},
    {"six_hourly", 6 * HOUR, "%Y%m%d-%H", 12, 5, 29, 536870912LL},
    {"daily", DAY, "%Y%m%d", 13, 6, 32, 4294967296LL},
    {"weekly", 7 * DAY, "%Y%m%d", 14, 6, 34, 17179869184LL},
    {"large_hourly", HOUR, "%Y%m%d-%H", 14, 6, 34, 17179869184LL},
    {"large_daily", DAY, "%Y%m%d", 15, 7, 37, 137438953472LL},
    {"huge_daily", DAY, "%Y%m%d", 16, 8, 40, 1099511627776LL},
};
#define NROLL (sizeof format_table / sizeof format_table[0])

static const tape_roll_info *find_roll(const char *name)
{
    for (const tape_roll_info *r = tape_roll_cycles(); r->ri_name; r++)
        if (strcmp(r->ri_name, name) == 0)
            return r;
    return NULL;
}

static void roll_table_matches_format_md(void)
{
    size_t n = 0;
    for (const tape_roll_info *r = tape_roll_cycles(); r->ri_name; r++)
        n++;
    CHECK_EQ(n, NROLL);
    for (size_t i = 0; i < NROLL; i++) {
        const roll_row *w = &format_table[i];
        const tape_roll_info *r = find_roll(w->name);
        if (!EXPECT(r != NULL)) {
            fprintf(stderr, "  missing roll cycle %s\n", w->name);
            continue;
        }
        EXPECT_EQ(r->ri_length_ms, w->length_ms);
        EXPECT_EQ(r->ri_index_count_log2, w->count_log2);
        EXPECT_EQ(r->ri_index_spacing_log2, w->spacing_log2);
        EXPECT_EQ(r->ri_seq_bits, w->seq_bits);
        EXPECT_EQ(r->ri_seq_bits, 2 * r->ri_index_count_log2 + r->ri_index_spacing_log2);
        EXPECT_EQ(1LL << r->ri_seq_bits, w->entries);
        if (!EXPECT(r->ri_format && strcmp(r->ri_format, w->format) == 0))
            fprintf(stderr, "  %s: format %s, want %s\n", w->name,
                    r->ri_format ? r->ri_format : "(null)", w->format);
    }
}

static void every_roll_cycle_opens_and_stores_its_parameters(void)
{
    for (size_t i = 0; i < NROLL; i++) {
        tape_queue *q = NULL;
        CHECK_OK(th_open(format_table[i].name, format_table[i].name, "raw", &q));
        tape_queue_info qi;
        CHECK_OK(tape_queue_info_get(q, &qi));
        EXPECT_EQ(qi.qi_version, 1);
        EXPECT(strcmp(qi.qi_roll_cycle, format_table[i].name) == 0);
        EXPECT(strcmp(qi.qi_codec, "raw") == 0);
        EXPECT_EQ(qi.qi_seq_bits, format_table[i].seq_bits);
        EXPECT_EQ(qi.qi_lowest_cycle, -1);
        EXPECT_EQ(qi.qi_highest_cycle, -1);
        EXPECT_EQ(qi.qi_last_timestamp, 0);
        EXPECT_EQ(tape_count(q), 0);
        EXPECT_EQ(tape_first_index(q), -1);
        EXPECT_EQ(tape_last_index(q), -1);
        tape_close(q);
    }
}

static void unknown_roll_cycle_is_refused(void)
{
    tape_queue *q = NULL;
    EXPECT_EQ(th_open("q", "fortnightly", "raw", &q), TAPE_EROLLCYCLE);
    struct stat st;
    /* Nothing that looks like a queue is left behind. */
    EXPECT(stat(th_path("q/tape.meta"), &st) != 0);
}

static void index_packs_cycle_and_seq(void)
{
    for (size_t i = 0; i < NROLL; i++) {
        tape_queue *q = NULL;
        CHECK_OK(th_open(format_table[i].name, format_table[i].name, "raw", &q));
        int bits = format_table[i].seq_bits;
        int64_t maxseq = (1LL << bits) - 1;
        int64_t cycles[] = {0, 1, 7, 20413, 490000, (1LL << (62 - bits)) - 1};
        int64_t seqs[] = {0, 1, 63, 64, 4095, maxseq};
        for (size_t c = 0; c < sizeof cycles / sizeof cycles[0]; c++) {
            for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++) {
                int64_t idx = tape_make_index(q, cycles[c], seqs[s]);
                EXPECT_EQ(idx, (int64_t)((uint64_t)cycles[c] << bits | (uint64_t)seqs[s]));
                EXPECT_EQ(tape_index_cycle(q, idx), cycles[c]);
                EXPECT_EQ(tape_index_seq(q, idx), seqs[s]);
            }
        }
        /* Indexes increase with the cycle, then with the seq. */
        EXPECT(tape_make_index(q, 5, maxseq) < tape_make_index(q, 6, 0));
        tape_close(q);
    }
}

static void cycle_of_timestamp_at_boundaries(void)
{
    for (size_t i = 0; i < NROLL; i++) {
        tape_queue *q = NULL;
        CHECK_OK(th_open(format_table[i].name, format_table[i].name, "raw", &q));
        int64_t len_ns = format_table[i].length_ms * 1000000;
        int64_t ts_now = 1763683200LL * 1000000000; /* 2025-11-21T00:00Z */
        int64_t c = ts_now / len_ns;
        int64_t start = c * len_ns;
        EXPECT_EQ(tape_cycle_of(q, start), c);
        EXPECT_EQ(tape_cycle_of(q, start - 1), c - 1);
        EXPECT_EQ(tape_cycle_of(q, start + len_ns - 1), c);
        EXPECT_EQ(tape_cycle_of(q, start + len_ns), c + 1);
        EXPECT_EQ(tape_cycle_of(q, 1), 0);
        EXPECT_EQ(tape_cycle_of(q, len_ns), 1);
        tape_close(q);
    }
}

static void cycle_of_honours_the_epoch(void)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_roll_cycle = "daily";
    o.oo_codec = "raw";
    o.oo_create = 1;
    o.oo_epoch_ms = 3 * HOUR; /* roll at 03:00 UTC */
    tape_queue *q = NULL;
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    tape_queue_info qi;
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT_EQ(qi.qi_epoch_ms, 3 * HOUR);
    int64_t day = 20413;
    int64_t roll_ns = (day * DAY + 3 * HOUR) * 1000000;
    EXPECT_EQ(tape_cycle_of(q, roll_ns), day);
    EXPECT_EQ(tape_cycle_of(q, roll_ns - 1), day - 1);
    EXPECT_EQ(tape_cycle_of(q, roll_ns - 2 * HOUR * 1000000), day - 1);
    char name[64];
    CHECK_OK(tape_cycle_name(q, day, name, sizeof name));
    EXPECT(strcmp(name, "20251121.tape") == 0);
    tape_close(q);

    /* Reopened without an epoch, the stored one is used. */
    memset(&o, 0, sizeof o);
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT_EQ(qi.qi_epoch_ms, 3 * HOUR);
    EXPECT_EQ(tape_cycle_of(q, roll_ns - 1), day - 1);
    tape_close(q);
}

/* The name a stranger computes from FORMAT.md: strftime of the cycle's
 * start (UTC) with the pattern, then ".tape". */
static void expected_name(const roll_row *w, int64_t cycle, int64_t epoch_ms,
                          char *buf, size_t cap)
{
    time_t secs = (time_t)((cycle * w->length_ms + epoch_ms) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, cap, w->format, &tm);
    snprintf(buf + n, cap - n, ".tape");
}

static void cycle_names_follow_the_pattern(void)
{
    for (size_t i = 0; i < NROLL; i++) {
        tape_queue *q = NULL;
        CHECK_OK(th_open(format_table[i].name, format_table[i].name, "raw", &q));
        int64_t len_ns = format_table[i].length_ms * 1000000;
        int64_t cnow = 1763683200LL * 1000000000 / len_ns;
        int64_t cycles[] = {0, 1, cnow - 1, cnow, cnow + 1, cnow + 1000};
        for (size_t c = 0; c < sizeof cycles / sizeof cycles[0]; c++) {
            char got[128], want[128];
            CHECK_OK(tape_cycle_name(q, cycles[c], got, sizeof got));
            expected_name(&format_table[i], cycles[c], 0, want, sizeof want);
            if (!EXPECT(strcmp(got, want) == 0))
                fprintf(stderr, "  %s cycle %" PRId64 ": got %s, want %s\n",
                        format_table[i].name, cycles[c], got, want);
        }
        tape_close(q);
    }
}

static void cycle_names_known_values(void)
{
    static const struct { const char *roll; int64_t cycle; const char *name; } k[] = {
        {"daily", 20413, "20251121.tape"},
        {"daily", 0, "19700101.tape"},
        {"test_secondly", 1700000000, "20231114-221320.tape"},
        {"hourly", 490000, "20251124-16.tape"},
        {"weekly", 2900, "20250731.tape"},
        {"minutely", 60, "19700101-0100.tape"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        tape_queue *q = NULL;
        char dir[64];
        snprintf(dir, sizeof dir, "q%zu", i);
        CHECK_OK(th_open(dir, k[i].roll, "raw", &q));
        char got[64];
        CHECK_OK(tape_cycle_name(q, k[i].cycle, got, sizeof got));
        if (!EXPECT(strcmp(got, k[i].name) == 0))
            fprintf(stderr, "  %s %" PRId64 ": got %s want %s\n", k[i].roll,
                    k[i].cycle, got, k[i].name);
        tape_close(q);
    }
}

static void cycle_name_never_writes_past_cap(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    char buf[16];
    memset(buf, 'X', sizeof buf);
    int rc = tape_cycle_name(q, 20413, buf, 6);
    EXPECT(rc < 0);   /* "20251121.tape" does not fit in 6 bytes */
    for (size_t i = 6; i < sizeof buf; i++)
        EXPECT(buf[i] == 'X');
    tape_close(q);
}

static void strerror_covers_every_code(void)
{
    int codes[] = {TAPE_ECORRUPT, TAPE_EVERSION, TAPE_ENOTQUEUE, TAPE_EINCOMPAT,
                   TAPE_EREADONLY, TAPE_ETOOBIG, TAPE_ECYCLEFULL, TAPE_EPOISONED,
                   TAPE_EINVAL, TAPE_EROLLCYCLE, TAPE_ECLOCK, TAPE_ECONFLICT,
                   TAPE_ECLOSED, -ENOENT, -ENOSPC, 0,
                   -123456, 42};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = tape_strerror(codes[i]);
        EXPECT(s != NULL && s[0] != '\0');
    }
    /* The library's texts are distinct from each other. */
    for (int a = TAPE_ECLOSED; a <= TAPE_ECORRUPT; a++)
        for (int b = a + 1; b <= TAPE_ECORRUPT; b++)
            EXPECT(strcmp(tape_strerror(a), tape_strerror(b)) != 0);
}

static const th_test tests[] = {
    TEST(roll_table_matches_format_md),
    TEST(every_roll_cycle_opens_and_stores_its_parameters),
    TEST(unknown_roll_cycle_is_refused),
    TEST(index_packs_cycle_and_seq),
    TEST(cycle_of_timestamp_at_boundaries),
    TEST(cycle_of_honours_the_epoch),
    TEST(cycle_names_follow_the_pattern),
    TEST(cycle_names_known_values),
    TEST(cycle_name_never_writes_past_cap),
    TEST(strerror_covers_every_code),
};

TEST_MAIN(tests)
