/* clock.c - the appender's clock: CLOCK_REALTIME in ns, read cheaply.
 *
 * clock_gettime costs about 23 ns here, half of an append. Between two
 * readings of it the writer counts time with the CPU's time-stamp counter
 * (about 10 ns), at a rate measured against CLOCK_REALTIME itself. The
 * counter is trusted for at most TAPE_CLOCK_SPAN_NS (100 us) after a
 * reading: past that, or when it runs backwards (another CPU, a resume),
 * CLOCK_REALTIME is read again. So a timestamp is never more than
 * TAPE_CLOCK_SPAN_NS past a reading of CLOCK_REALTIME that this process made
 * before the call, whatever the counter does; with a sane counter it is
 * within about 0.1 us of the clock (measured here).
 * A clock that steps is followed at the next reading; the queue's rule
 * (never below the newest timestamp) keeps timestamps from decreasing.
 *
 * The state is per queue handle and guarded by the write lock. */
#include "tape_int.h"

#include <time.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/prctl.h>
#define HAVE_TSC 1
#endif

#define CAL_MIN_NS 2000000              /* measure its rate over >= 2 ms */
#define CAL_MAX_NS 1000000000           /* and start anew after 1 s */
#define TIGHT_TICKS 500                 /* a reading bracketed more loosely
                                         * was interrupted: no anchor */

int64_t tape_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tape_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#if HAVE_TSC
/* An invariant counter (constant rate, not stopped in idle states), readable
 * without a trap. */
static int tsc_usable(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u)
        return 0;
    __get_cpuid(0x80000007u, &a, &b, &c, &d);
    if (!(d & (1u << 8)))
        return 0;
#ifdef PR_GET_TSC
    int mode = 0;
    if (prctl(PR_GET_TSC, &mode, 0, 0, 0) == 0 && mode != PR_TSC_ENABLE)
        return 0;
#endif
    return 1;
}
#endif

void tape_clock_init(tape_clock *k)
{
    k->k_tsc = 0;
    k->k_ns = 0;
    k->k_span = 0;
    k->k_mult = 0;
    k->k_cal_tsc = 0;
    k->k_cal_ns = 0;
    k->k_cal_next = CAL_MIN_NS;
    k->k_span_ticks = 0;
    k->k_best = 0;
#if HAVE_TSC
    k->k_usable = tsc_usable();
#else
    k->k_usable = 0;
#endif
}

/* Read CLOCK_REALTIME, and take it as the new anchor when the counter
 * brackets the reading tightly. The rate is measured from a base reading,
 * again each time the distance to it has doubled (2 ms, 4 ms, ... 0.5 s),
 * then from a new base: so a clock slewed by NTP is followed, and the slow
 * path does no division most of the time. */
int64_t tape_clock_read(tape_clock *k)
{
#if HAVE_TSC
    if (!k->k_usable)
        return tape_now_ns();
    uint64_t t0 = __builtin_ia32_rdtsc();
    int64_t ns = tape_now_ns();
    uint64_t t1 = __builtin_ia32_rdtsc();
    k->k_span = 0;
    if (t1 < t0)
        return ns;
    /* Where clock_gettime is a system call (a clock source other than the
     * counter), no reading is that tight: allow four times the best seen. */
    uint64_t b = t1 - t0;
    if (k->k_best == 0 || b < k->k_best)
        k->k_best = b;
    if (b > TIGHT_TICKS && b > 4 * k->k_best)
        return ns;
    uint64_t t = t0 + (t1 - t0) / 2;
    k->k_tsc = t;
    k->k_ns = ns;
    int64_t since = ns - k->k_cal_ns;
    if (k->k_cal_tsc == 0 || t <= k->k_cal_tsc || since <= 0 || since > CAL_MAX_NS) {
        /* First reading, or the counter or the clock went back, or a long
         * pause: measure from here (keeping the rate known so far). */
        k->k_cal_tsc = t;
        k->k_cal_ns = ns;
        k->k_cal_next = CAL_MIN_NS;
    } else if (since >= k->k_cal_next) {
        uint64_t mult = ((uint64_t)since << 32) / (t - k->k_cal_tsc);
        /* 0.01 to 100 ns per tick; else a step of the clock fell inside. */
        if (mult >= ((uint64_t)1 << 32) / 100 && mult <= ((uint64_t)100 << 32)) {
            k->k_mult = mult;
            k->k_span_ticks = ((uint64_t)TAPE_CLOCK_SPAN_NS << 32) / mult;
        }
        k->k_cal_next = 2 * since;
        if (since >= CAL_MAX_NS / 2) {
            k->k_cal_tsc = t;
            k->k_cal_ns = ns;
            k->k_cal_next = CAL_MAX_NS / 2;
        }
    }
    k->k_span = k->k_span_ticks; /* 0 until the rate is known */
    return ns;
#else
    (void)k;
    return tape_now_ns();
#endif
}
