/* bench_core.c - speed of the C core alone: append throughput and per-call
 * latency, batched appends, appends each followed by a sync (with large
 * pages and with small), reading, tailer moves by index, and the checksum
 * (CRC-32C) alone over payloads of 100 B to 1 MiB.
 *
 *   build/bench_core [--dir D] [--runs R] [--n N] [--lat-n N] [--moves N] [--big]
 *
 * Throughput runs follow one untimed run. Latency is measured at full speed
 * and again offered at 5 M appends/s.
 * Queues are created under D (default $TMPDIR or /tmp) in a fresh mkdtemp()
 * directory, "daily" roll cycle, "raw" codec, 100-byte payloads, and are
 * removed at the end. Each figure is the median over R runs (default 5).
 * --big adds a 100 M-entry queue of 8-byte payloads for to_index (about
 * 2.4 GB of disk). Then 64 KiB entries (256 MiB a run): appends, tape_read,
 * tape_read_pinned, tape_read_into; --large-only runs only those. */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "tape.h"
#include "tape_int.h" /* tape_crc32c */

#define PAYLOAD 100

static const char *g_root;
static int g_runs = 5;
static int64_t g_n = 10000000;      /* appends per throughput run */
static int64_t g_lat_n = 1000000;   /* timed appends per latency run */
static int64_t g_moves = 100000;    /* to_index moves per run */
static int g_big;
static int g_large_only;            /* only the rows of 64 KiB entries */

/* ---- helpers ------------------------------------------------------------------ */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int64_t rc)
{
    fprintf(stderr, "bench_core: %s: %s\n", what, tape_strerror((int)rc));
    exit(1);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void rm_rf(const char *p) { nftw(p, rm_one, 32, FTW_DEPTH | FTW_PHYS); }

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Percentile p (0..100) of sorted samples. */
static double pct(const uint32_t *s, int64_t n, double p)
{
    int64_t i = (int64_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return s[i];
}

static tape_queue *open_queue(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_root, name);
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_roll_cycle = "daily";
    o.oo_codec = "raw";
    o.oo_create = 1;
    tape_queue *q = NULL;
    int rc = tape_open(path, &o, &q);
    if (rc)
        die("tape_open", rc);
    return q;
}

static tape_appender *open_appender(tape_queue *q)
{
    tape_appender *a = NULL;
    int rc = tape_appender_open(q, &a);
    if (rc)
        die("appender_open", rc);
    return a;
}

static void drop_queue(tape_queue *q, const char *name)
{
    tape_close(q);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_root, name);
    rm_rf(path);
}

static void fill(unsigned char *p, int64_t i)
{
    memcpy(p, &i, 8);
    for (int j = 8; j < PAYLOAD; j++)
        p[j] = (unsigned char)j;
}

/* ---- results table -------------------------------------------------------------- */

typedef struct row {
    char name[64];
    double value;
    const char *unit;
    const char *target;
    int ok; /* 1 met, 0 missed, -1 no target */
} row;

static row rows[64];
static int nrows;

static void add(const char *name, double v, const char *unit, const char *target, int ok)
{
    row *r = &rows[nrows++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->value = v;
    r->unit = unit;
    r->target = target;
    r->ok = ok;
    printf("  %-46s %12.2f %-4s %s\n", name, v, unit, target ? target : "");
    fflush(stdout);
}

/* ---- (a) append ----------------------------------------------------------------- */

/* Appends n entries; returns appends per second. ts: 0 = wall clock. */
static double append_run(tape_queue *q, int64_t n, int64_t ts)
{
    tape_appender *a = open_appender(q);
    unsigned char buf[PAYLOAD];
    fill(buf, 0);
    int64_t t0 = now_ns();
    for (int64_t i = 0; i < n; i++) {
        memcpy(buf, &i, 8);
        int64_t idx = tape_append(a, buf, PAYLOAD, ts);
        if (idx < 0)
            die("tape_append", idx);
    }
    int64_t dt = now_ns() - t0;
    tape_appender_close(a);
    return (double)n / ((double)dt / 1e9);
}

static void bench_append_throughput(void)
{
    double wall[16], fixed[16];
    /* Untimed first: this VM hands memory touched for the first time (or
     * given back to the host) over slowly, as bench/api.py notes too. */
    tape_queue *wq = open_queue("tp");
    append_run(wq, g_n, 0);
    drop_queue(wq, "tp");
    for (int r = 0; r < g_runs; r++) {
        tape_queue *q = open_queue("tp");
        wall[r] = append_run(q, g_n, 0);
        drop_queue(q, "tp");
        q = open_queue("tp");
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        fixed[r] = append_run(q, g_n, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
        /* The last run's queue is kept for the reading benchmarks. */
        if (r + 1 < g_runs)
            drop_queue(q, "tp");
        else
            tape_close(q);
        printf("    run %d: %.2f M/s (wall clock), %.2f M/s (given ts)\n", r + 1,
                wall[r] / 1e6, fixed[r] / 1e6);
    }
    double m = median(wall, g_runs) / 1e6;
    add("append, ts from the clock (M appends/s)", m, "M/s", ">= 20", m >= 20);
    m = median(fixed, g_runs) / 1e6;
    add("append, ts given (M appends/s)", m, "M/s", ">= 20", m >= 20);
}

/* Per-call append latency: at full speed (rate 0), or offered at `rate` a
 * second (busy-waiting between calls) below what the page cache supplies
 * here, so that the tail shows the append path rather than the kernel
 * catching up with a writer that outruns it. */
static void bench_append_latency(double rate)
{
    uint32_t *lat = malloc((size_t)g_lat_n * sizeof *lat);
    double p50[16], p99[16], p999[16], p9999[16], mx[16];
    if (!lat)
        die("malloc", -ENOMEM);
    int64_t gap = rate > 0 ? (int64_t)(1e9 / rate) : 0;
    char at[32] = "";
    if (rate > 0)
        snprintf(at, sizeof at, " at %.0f M/s", rate / 1e6);
    for (int r = 0; r < g_runs; r++) {
        tape_queue *q = open_queue("lat");
        tape_appender *a = open_appender(q);
        unsigned char buf[PAYLOAD];
        fill(buf, 0);
        for (int64_t i = 0; i < 1000; i++) /* warm-up: creates the cycle file */
            tape_append(a, buf, PAYLOAD, 0);
        int64_t next = now_ns();
        for (int64_t i = 0; i < g_lat_n; i++) {
            while (gap && now_ns() < next)
                ;
            next += gap;
            memcpy(buf, &i, 8);
            int64_t t0 = now_ns();
            int64_t idx = tape_append(a, buf, PAYLOAD, 0);
            int64_t t1 = now_ns();
            if (idx < 0)
                die("tape_append", idx);
            lat[i] = (uint32_t)(t1 - t0 > UINT32_MAX ? UINT32_MAX : t1 - t0);
        }
        tape_appender_close(a);
        drop_queue(q, "lat");
        qsort(lat, (size_t)g_lat_n, sizeof *lat, cmp_u32);
        p50[r] = pct(lat, g_lat_n, 50);
        p99[r] = pct(lat, g_lat_n, 99);
        p999[r] = pct(lat, g_lat_n, 99.9);
        p9999[r] = pct(lat, g_lat_n, 99.99);
        mx[r] = lat[g_lat_n - 1];
        printf("    run %d%s: median %.0f ns, p99 %.0f, p99.9 %.0f, p99.99 %.0f, max %.0f\n",
               r + 1, at, p50[r], p99[r], p999[r], p9999[r], mx[r]);
    }
    free(lat);
    char name[64];
    snprintf(name, sizeof name, "append latency median%s (ns)", at);
    add(name, median(p50, g_runs), "ns", NULL, -1);
    snprintf(name, sizeof name, "append latency p99%s (ns)", at);
    add(name, median(p99, g_runs), "ns", NULL, -1);
    snprintf(name, sizeof name, "append latency p99.9%s (ns)", at);
    double m = median(p999, g_runs);
    add(name, m, "ns", rate > 0 ? NULL : "< 1000", rate > 0 ? -1 : m < 1000);
    snprintf(name, sizeof name, "append latency p99.99%s (ns)", at);
    add(name, median(p9999, g_runs), "ns", NULL, -1);
    snprintf(name, sizeof name, "append latency max%s (ns)", at);
    add(name, median(mx, g_runs), "ns", NULL, -1);
}

/* ---- (b) append_many -------------------------------------------------------------- */

static void bench_append_many(int batch)
{
    unsigned char *buf = malloc((size_t)batch * PAYLOAD);
    uint64_t *ends = malloc((size_t)batch * sizeof *ends);
    double rate[16];
    for (int k = 0; k < batch; k++) {
        fill(buf + (size_t)k * PAYLOAD, k);
        ends[k] = (uint64_t)(k + 1) * PAYLOAD;
    }
    for (int r = 0; r < g_runs; r++) {
        tape_queue *q = open_queue("many");
        tape_appender *a = open_appender(q);
        int64_t t0 = now_ns();
        for (int64_t i = 0; i < g_n; i += batch) {
            int64_t idx = tape_append_many(a, buf, ends, (size_t)batch, 0, NULL);
            if (idx < 0)
                die("tape_append_many", idx);
        }
        int64_t dt = now_ns() - t0;
        tape_appender_close(a);
        drop_queue(q, "many");
        int64_t done = (g_n + batch - 1) / batch * batch;
        rate[r] = (double)done / ((double)dt / 1e9);
    }
    char name[64];
    snprintf(name, sizeof name, "append_many, batches of %d (M entries/s)", batch);
    add(name, median(rate, g_runs) / 1e6, "M/s", NULL, -1);
    free(buf);
    free(ends);
}

/* ---- (b2) append and sync ------------------------------------------------------------ */

/* write_bytes of /proc/self/io: what this process has dirtied for the disk. */
static int64_t io_write_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    long long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %lld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* A sync after every append (what sync="always" does), after 50,000 appends
 * without, with large pages and with small: appends a second, and bytes
 * dirtied per append, which is what each sync writes. */
static void bench_append_sync(int small)
{
    double rate[16], per[16];
    const int n = 2000;
    for (int r = 0; r < g_runs; r++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/sync", g_root);
        tape_open_opts o;
        memset(&o, 0, sizeof o);
        o.oo_roll_cycle = "daily";
        o.oo_codec = "raw";
        o.oo_create = 1;
        o.oo_small_pages = small;
        tape_queue *q = NULL;
        int rc = tape_open(path, &o, &q);
        if (rc)
            die("tape_open", rc);
        tape_appender *a = open_appender(q);
        unsigned char buf[PAYLOAD];
        fill(buf, 0);
        for (int i = 0; i < 50000; i++)
            tape_append(a, buf, PAYLOAD, 0);
        if ((rc = tape_appender_sync(a)) < 0)
            die("tape_appender_sync", rc);
        int64_t b0 = io_write_bytes(), t0 = now_ns();
        for (int i = 0; i < n; i++) {
            int64_t idx = tape_append(a, buf, PAYLOAD, 0);
            if (idx < 0)
                die("tape_append", idx);
            if ((rc = tape_appender_sync(a)) < 0)
                die("tape_appender_sync", rc);
        }
        int64_t dt = now_ns() - t0, b1 = io_write_bytes();
        tape_appender_close(a);
        drop_queue(q, "sync");
        rate[r] = n / ((double)dt / 1e9);
        per[r] = b0 < 0 || b1 < 0 ? -1 : (double)(b1 - b0) / n / 1024;
    }
    char name[64];
    snprintf(name, sizeof name, "append + sync, %s pages (appends/s)", small ? "small" : "large");
    add(name, median(rate, g_runs), "/s", NULL, -1);
    snprintf(name, sizeof name, "append + sync, %s pages (KiB dirtied)", small ? "small" : "large");
    add(name, median(per, g_runs), "KiB", NULL, -1);
}

/* ---- (c) reading -------------------------------------------------------------------- */

static void bench_read(tape_queue *q)
{
    int64_t count = tape_count(q);
    tape_tailer *t = NULL;
    int rc = tape_tailer_open(q, &t);
    if (rc)
        die("tailer_open", rc);
    double r1[16], r2[16];
    size_t cap = 64 << 10, max = 512;
    unsigned char *buf = malloc(cap);
    int64_t *idx = malloc(max * 8), *ts = malloc(max * 8);
    uint64_t *ends = malloc(max * 8);
    uint64_t sink = 0;
    for (int r = 0; r < g_runs; r++) {
        tape_tailer_to_start(t);
        tape_entry e;
        int64_t n = 0, t0 = now_ns();
        while ((rc = tape_read(t, &e)) == 1) {
            sink += e.e_len + ((const unsigned char *)e.e_data)[0];
            n++;
        }
        int64_t dt = now_ns() - t0;
        if (rc < 0 || n != count)
            die("tape_read scan", rc < 0 ? rc : TAPE_ECORRUPT);
        r1[r] = (double)n / ((double)dt / 1e9);

        tape_tailer_to_start(t);
        n = 0;
        t0 = now_ns();
        int64_t got;
        while ((got = tape_read_many(t, buf, cap, idx, ts, ends, max)) > 0) {
            sink += ends[got - 1] + buf[0];
            n += got;
        }
        dt = now_ns() - t0;
        if (got < 0 || n != count)
            die("tape_read_many scan", got < 0 ? got : TAPE_ECORRUPT);
        r2[r] = (double)n / ((double)dt / 1e9);
    }
    tape_tailer_close(t);
    free(buf);
    free(idx);
    free(ts);
    free(ends);
    if (sink == 42)
        printf(" ");
    char name[64];
    snprintf(name, sizeof name, "tape_read scan of %" PRId64 " M (M entries/s)", count / 1000000);
    add(name, median(r1, g_runs) / 1e6, "M/s", NULL, -1);
    snprintf(name, sizeof name, "tape_read_many scan, 64 KiB/512 (M entries/s)");
    add(name, median(r2, g_runs) / 1e6, "M/s", NULL, -1);
}

/* ---- (c') large entries ------------------------------------------------------------ */

#define LARGE (64 << 10)
#define LARGE_N 4096 /* 256 MiB a run */

/* Appends LARGE_N entries of LARGE bytes to a new queue; returns appends a second. */
static double large_append_run(const char *name)
{
    tape_queue *q = open_queue(name);
    tape_appender *a = open_appender(q);
    unsigned char *buf = malloc(LARGE);
    if (!buf)
        die("malloc", -ENOMEM);
    for (int j = 0; j < LARGE; j++)
        buf[j] = (unsigned char)rnd();
    int64_t t0 = now_ns();
    for (int64_t i = 0; i < LARGE_N; i++) {
        memcpy(buf, &i, 8);
        int64_t idx = tape_append(a, buf, LARGE, 0);
        if (idx < 0)
            die("tape_append", idx);
    }
    int64_t dt = now_ns() - t0;
    tape_appender_close(a);
    tape_close(q);
    free(buf);
    return (double)LARGE_N / ((double)dt / 1e9);
}

/* tape_read_into's alloc: a new buffer of the payload's size, as a binding
 * allocates a bytes object (freed by the reader). */
static void *alloc_payload(void *ctx, size_t len)
{
    (void)ctx;
    return malloc(len ? len : 1);
}

/* Reads the queue `name` from its start: how = 0 tape_read (a copy into the
 * tailer's buffer), 1 tape_read_pinned (each pin released after the
 * payload's first and last byte are read), 2 tape_read_into (a copy into a
 * new buffer each, freed); returns entries a second. */
static double large_read_run(const char *name, int how)
{
    tape_queue *q = open_queue(name);
    tape_tailer *t = NULL;
    int rc = tape_tailer_open(q, &t);
    if (rc)
        die("tailer_open", rc);
    tape_entry e;
    tape_pin *pin;
    uint64_t sink = 0;
    int64_t n = 0, t0 = now_ns();
    for (;;) {
        pin = NULL;
        rc = how == 0   ? tape_read(t, &e)
             : how == 1 ? tape_read_pinned(t, &e, &pin)
                        : tape_read_into(t, &e, alloc_payload, NULL);
        if (rc != 1)
            break;
        const unsigned char *d = e.e_data;
        sink += d[0] + d[e.e_len - 1];
        tape_pin_release(pin);
        if (how == 2)
            free((void *)d);
        n++;
    }
    int64_t dt = now_ns() - t0;
    if (rc < 0 || n != LARGE_N)
        die("large read", rc < 0 ? rc : TAPE_ECORRUPT);
    tape_tailer_close(t);
    tape_close(q);
    if (sink == 42)
        printf(" ");
    return (double)n / ((double)dt / 1e9);
}

static void bench_large(void)
{
    double w[16], r[16], p[16], c[16];
    char path[4096];
    snprintf(path, sizeof path, "%s/large", g_root);
    large_append_run("large"); /* untimed: see bench_append_throughput */
    for (int k = 0; k < g_runs; k++) {
        rm_rf(path);
        w[k] = large_append_run("large");
        r[k] = large_read_run("large", 0);
        p[k] = large_read_run("large", 1);
        c[k] = large_read_run("large", 2);
        printf("    run %d: append %.1f k/s, tape_read %.1f k/s, tape_read_pinned %.1f k/s, "
               "tape_read_into %.1f k/s\n", k + 1, w[k] / 1e3, r[k] / 1e3, p[k] / 1e3, c[k] / 1e3);
    }
    rm_rf(path);
    add("append 64 KiB (k appends/s)", median(w, g_runs) / 1e3, "k/s", NULL, -1);
    add("tape_read 64 KiB, a copy (k entries/s)", median(r, g_runs) / 1e3, "k/s", NULL, -1);
    add("tape_read_pinned 64 KiB (k entries/s)", median(p, g_runs) / 1e3, "k/s", NULL, -1);
    add("tape_read_into 64 KiB, new buffers (k entries/s)", median(c, g_runs) / 1e3, "k/s", NULL, -1);
}

/* ---- (d) to_index ------------------------------------------------------------------------ */

typedef struct span {
    int64_t cycle;
    uint64_t entries;
} span;

static void bench_to_index(tape_queue *q, const char *label)
{
    int64_t cycles[64];
    int64_t nc = tape_list_cycles(q, cycles, 64);
    if (nc <= 0 || nc > 64)
        die("tape_list_cycles", nc <= 0 ? nc : TAPE_EINVAL);
    span sp[64];
    uint64_t total = 0;
    for (int64_t c = 0; c < nc; c++) {
        tape_cycle_info ci;
        int rc = tape_cycle_info_get(q, cycles[c], &ci);
        if (rc)
            die("tape_cycle_info_get", rc);
        sp[c].cycle = cycles[c];
        sp[c].entries = ci.ci_entries;
        total += ci.ci_entries;
    }
    tape_tailer *t = NULL;
    int rc = tape_tailer_open(q, &t);
    if (rc)
        die("tailer_open", rc);
    uint32_t *lat = malloc((size_t)g_moves * sizeof *lat);
    uint32_t *lat2 = malloc((size_t)g_moves * sizeof *lat2);
    int64_t *targets = malloc((size_t)g_moves * sizeof *targets);
    double m1[16], p1[16], m2[16], p2[16];
    for (int r = 0; r < g_runs; r++) {
        for (int64_t i = 0; i < g_moves; i++) {
            uint64_t k = rnd() % total;
            int64_t c = 0;
            while (k >= sp[c].entries)
                k -= sp[c++].entries;
            targets[i] = tape_make_index(q, sp[c].cycle, (int64_t)k);
        }
        for (int64_t i = 0; i < g_moves; i++) {
            int64_t t0 = now_ns();
            rc = tape_tailer_to_index(t, targets[i]);
            int64_t t1 = now_ns();
            if (rc != 1)
                die("to_index", rc < 0 ? rc : TAPE_EINVAL);
            tape_entry e;
            rc = tape_read(t, &e);
            int64_t t2 = now_ns();
            if (rc != 1 || e.e_index != targets[i])
                die("read after to_index", rc < 0 ? rc : TAPE_EINVAL);
            lat[i] = (uint32_t)(t1 - t0);
            lat2[i] = (uint32_t)(t2 - t0);
        }
        qsort(lat, (size_t)g_moves, sizeof *lat, cmp_u32);
        qsort(lat2, (size_t)g_moves, sizeof *lat2, cmp_u32);
        m1[r] = pct(lat, g_moves, 50);
        p1[r] = pct(lat, g_moves, 99);
        m2[r] = pct(lat2, g_moves, 50);
        p2[r] = pct(lat2, g_moves, 99);
    }
    tape_tailer_close(t);
    free(lat);
    free(lat2);
    free(targets);
    char name[64];
    double m = median(m1, g_runs) / 1e3;
    snprintf(name, sizeof name, "to_index median, %s (us)", label);
    add(name, m, "us", "<= 5", m <= 5);
    snprintf(name, sizeof name, "to_index p99, %s (us)", label);
    add(name, median(p1, g_runs) / 1e3, "us", NULL, -1);
    snprintf(name, sizeof name, "to_index + read median, %s (us)", label);
    add(name, median(m2, g_runs) / 1e3, "us", NULL, -1);
    snprintf(name, sizeof name, "to_index + read p99, %s (us)", label);
    add(name, median(p2, g_runs) / 1e3, "us", NULL, -1);
}

static void bench_big(void)
{
    const int64_t n = 100000000;
    struct statvfs vfs;
    if (statvfs(g_root, &vfs) == 0) {
        uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (free_bytes < (uint64_t)6 << 30) {
            printf("  --big skipped: %.1f GB free under %s, 6 GB wanted\n",
                   (double)free_bytes / 1e9, g_root);
            return;
        }
    }
    tape_queue *q = open_queue("big");
    tape_appender *a = open_appender(q);
    enum { B = 256 };
    unsigned char buf[B * 8];
    uint64_t ends[B];
    for (int k = 0; k < B; k++)
        ends[k] = (uint64_t)(k + 1) * 8;
    int64_t t0 = now_ns();
    for (int64_t i = 0; i < n; i += B) {
        for (int k = 0; k < B; k++) {
            int64_t v = i + k;
            memcpy(buf + 8 * k, &v, 8);
        }
        int64_t idx = tape_append_many(a, buf, ends, B, 0, NULL);
        if (idx < 0)
            die("append_many (big)", idx);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    tape_appender_close(a);
    printf("  (built 100 M x 8 B entries in %.1f s)\n", secs);
    bench_to_index(q, "100 M x 8 B");
    drop_queue(q, "big");
}

/* ---- machine ------------------------------------------------------------------------------ */

static void machine(void)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p) {
                    snprintf(model, sizeof model, "%s", p + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    struct statfs sf;
    const char *fs = "unknown";
    if (statfs(g_root, &sf) == 0) {
        switch ((unsigned long)sf.f_type) {
        case 0xEF53: fs = "ext4"; break;
        case 0x01021994: fs = "tmpfs"; break;
        case 0x58465342: fs = "xfs"; break;
        case 0x9123683E: fs = "btrfs"; break;
        case 0x794c7630: fs = "overlayfs"; break;
        default: break;
        }
    }
    /* The cost of the clock read that surrounds each timed call. */
    uint32_t d[10001];
    for (int i = 0; i < 10001; i++) {
        int64_t a = now_ns();
        d[i] = (uint32_t)(now_ns() - a);
    }
    qsort(d, 10001, sizeof d[0], cmp_u32);
    printf("machine: %s, %ld cores, Linux %s, queue on %s (%s)\n", model,
           sysconf(_SC_NPROCESSORS_ONLN), u.release, fs, g_root);
    printf("clock_gettime(CLOCK_MONOTONIC) back to back: median %u ns\n", d[5000]);
    printf("runs: %d; appends per throughput run: %" PRId64 "; timed appends per latency run: %"
           PRId64 "; moves: %" PRId64 "\n\n", g_runs, g_n, g_lat_n, g_moves);
}

/* ---- the checksum alone ------------------------------------------------------- */

/* Every entry's CRC covers its payload: for large payloads its speed bounds
 * the writer's and the reader's. */
static volatile uint32_t crc_sink; /* keeps the loop from being optimised away */

static void bench_crc(void)
{
    static const size_t sizes[] = {100, 4096, 65536, 1 << 20};
    enum { TOTAL = 1 << 30 }; /* bytes checksummed per run */
    unsigned char *buf = malloc(1 << 20);
    if (!buf)
        die("malloc", -ENOMEM);
    for (size_t i = 0; i < (1u << 20); i++)
        buf[i] = (unsigned char)rnd();
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s], calls = TOTAL / n;
        double v[16];
        uint32_t c = 0;
        for (int r = 0; r < g_runs; r++) {
            int64_t t0 = now_ns();
            for (size_t i = 0; i < calls; i++)
                c = tape_crc32c(c, buf, n);
            v[r] = (double)(n * calls) / (double)(now_ns() - t0);
        }
        char name[64];
        crc_sink = c;
        snprintf(name, sizeof name, "CRC-32C over %zu B (GB/s)", n);
        add(name, median(v, g_runs), "GB/s", NULL, -1);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            g_runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            g_n = atoll(argv[++i]);
        else if (strcmp(argv[i], "--lat-n") == 0 && i + 1 < argc)
            g_lat_n = atoll(argv[++i]);
        else if (strcmp(argv[i], "--moves") == 0 && i + 1 < argc)
            g_moves = atoll(argv[++i]);
        else if (strcmp(argv[i], "--big") == 0)
            g_big = 1;
        else if (strcmp(argv[i], "--large-only") == 0)
            g_large_only = 1;
        else {
            fprintf(stderr, "usage: %s [--dir D] [--runs R] [--n N] [--lat-n N] "
                            "[--moves N] [--big] [--large-only]\n", argv[0]);
            return 2;
        }
    }
    if (g_runs < 1 || g_runs > 15 || g_n < 1 || g_lat_n < 1 || g_moves < 1) {
        fprintf(stderr, "bench_core: runs must be 1..15 and counts positive\n");
        return 2;
    }
    static char root[4096];
    snprintf(root, sizeof root, "%s/tape-bench-XXXXXX", dir);
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    g_root = root;
    machine();
    printf("  %-46s %12s %-4s %s\n", "measure (median of runs)", "value", "unit", "target");

    if (g_large_only) {
        bench_large();
        rm_rf(root);
        return 0;
    }
    bench_append_throughput();
    bench_append_latency(0);
    bench_append_latency(5e6);
    bench_append_many(64);
    bench_append_many(256);
    bench_append_sync(0);
    bench_append_sync(1);
    tape_queue *q = open_queue("tp"); /* the last throughput run's queue */
    char label[32];
    snprintf(label, sizeof label, "%" PRId64 " M x 100 B", tape_count(q) / 1000000);
    bench_read(q);
    bench_to_index(q, label);
    drop_queue(q, "tp");
    bench_large();
    if (g_big)
        bench_big();
    bench_crc();
    rm_rf(root);

    int missed = 0;
    printf("\ntargets: ");
    for (int i = 0; i < nrows; i++)
        if (rows[i].ok == 0) {
            printf("%sMISSED %s", missed ? "; " : "", rows[i].name);
            missed++;
        }
    printf("%s\n", missed ? "" : "all met");
    return 0;
}
