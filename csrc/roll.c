/* roll.c - roll cycles and index arithmetic: the table of roll cycles, an
 * index made of a cycle and a sequence and split again, the cycle a timestamp
 * falls in, and cycle file names both ways (docs/FORMAT.md, "Roll cycles",
 * "Indexes"). Arithmetic only: no file is touched here. */
#include "tape_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t tape_floor_div(int64_t a, int64_t b)
{
    int64_t d = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? d - 1 : d;
}

#define SECS "%Y%m%d-%H%M%S"
#define MINS "%Y%m%d-%H%M"
#define HOURS "%Y%m%d-%H"
#define DAYS "%Y%m%d"

static const tape_roll_info rolls[] = {
    {"test_secondly", 1000, 12, 5, 2, SECS},
    {"test_ten_secondly", 10000, 12, 5, 2, SECS},
    {"minutely", 60000, 26, 11, 4, MINS},
    {"five_minutely", 300000, 27, 11, 5, MINS},
    {"ten_minutely", 600000, 27, 11, 5, MINS},
    {"twenty_minutely", 1200000, 27, 11, 5, MINS},
    {"half_hourly", 1800000, 27, 11, 5, MINS},
    {"hourly", 3600000, 28, 12, 4, HOURS},
    {"two_hourly", 7200000, 29, 12, 5, HOURS},
    {"four_hourly", 14400000, 29, 12, 5, HOURS},
    {"six_hourly", 21600000, 29, 12, 5, HOURS},
    {"daily", 86400000, 32, 13, 6, DAYS},
    {"weekly", 604800000, 34, 14, 6, DAYS},
    {"large_hourly", 3600000, 34, 14, 6, HOURS},
    {"large_daily", 86400000, 37, 15, 7, DAYS},
    {"huge_daily", 86400000, 40, 16, 8, DAYS},
    {NULL, 0, 0, 0, 0, NULL},
};

const tape_roll_info *tape_roll_cycles(void)
{
    return rolls;
}

const tape_roll_info *tape_roll_find(const char *name)
{
    for (const tape_roll_info *r = rolls; r->ri_name; r++)
        if (!strcmp(r->ri_name, name))
            return r;
    return NULL;
}

/* ---- index arithmetic ---------------------------------------------------- */

static int64_t max_cycle(const tape_queue *q)
{
    return (int64_t)1 << (63 - q->q_roll.r_seq_bits);
}

int64_t tape_make_index(tape_queue *q, int64_t cycle, int64_t seq)
{
    if (cycle < 0 || cycle >= max_cycle(q) || seq < 0 || (seq >> q->q_roll.r_seq_bits))
        return TAPE_EINVAL;
    return (cycle << q->q_roll.r_seq_bits) | seq;
}

int64_t tape_index_cycle(tape_queue *q, int64_t index)
{
    return index < 0 ? TAPE_EINVAL : index >> q->q_roll.r_seq_bits;
}

int64_t tape_index_seq(tape_queue *q, int64_t index)
{
    return index < 0 ? TAPE_EINVAL : index & (((int64_t)1 << q->q_roll.r_seq_bits) - 1);
}

int64_t tape_cycle_of(tape_queue *q, int64_t ts_ns)
{
    int64_t ms = tape_floor_div(ts_ns, 1000000);
    int64_t c = tape_floor_div(ms - q->q_roll.r_epoch_ms, q->q_roll.r_length_ms);
    return (c < 0 || c >= max_cycle(q)) ? TAPE_ECLOCK : c;
}

/* ---- names ---------------------------------------------------------------- */

int tape_cycle_name(tape_queue *q, int64_t cycle, char *buf, size_t cap)
{
    if (cycle < 0 || cycle >= max_cycle(q) || cycle > INT64_MAX / q->q_roll.r_length_ms)
        return TAPE_EINVAL;
    int64_t ms = cycle * q->q_roll.r_length_ms + q->q_roll.r_epoch_ms;
    time_t s = (time_t)tape_floor_div(ms, 1000);
    struct tm tm;
    if (!gmtime_r(&s, &tm))
        return TAPE_EINVAL;
    size_t n = strftime(buf, cap, q->q_roll.r_format, &tm);
    if (n == 0 || n + sizeof TAPE_SUFFIX > cap)
        return TAPE_EINVAL;
    memcpy(buf + n, TAPE_SUFFIX, sizeof TAPE_SUFFIX);
    return 0;
}

/* The cycle a file name stands for, or -1 when it is not a cycle file name.
 * A name shows its cycle's start truncated to the pattern's resolution, so the
 * cycle is the first one starting at or after the parsed time. */
int64_t tape_cycle_parse(tape_queue *q, const char *name)
{
    size_t n = strlen(name), sl = sizeof TAPE_SUFFIX - 1;
    char stem[64];
    if (n <= sl || n - sl >= sizeof stem || strcmp(name + n - sl, TAPE_SUFFIX) != 0)
        return -1;
    memcpy(stem, name, n - sl);
    stem[n - sl] = '\0';
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(stem, q->q_roll.r_format, &tm);
    if (!end || *end)
        return -1;
    int64_t ms = (int64_t)timegm(&tm) * 1000 - q->q_roll.r_epoch_ms;
    int64_t len = q->q_roll.r_length_ms;
    int64_t c = -tape_floor_div(-ms, len);
    char again[80];
    if (tape_cycle_name(q, c, again, sizeof again) < 0 || strcmp(again, name) != 0)
        return -1;
    return c;
}
