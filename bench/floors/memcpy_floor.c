/* memcpy_floor.c - the floor under any queue on this machine: copying payloads into (and
 * out of) a prefaulted shared file mapping, with no headers, checksums or locks.
 *
 *   memcpy_floor DIR SIZE tput BOX_S              write, then read, for BOX_S seconds each
 *   memcpy_floor DIR SIZE lat BOX_S CAP OUT       full speed, each copy timed (at most CAP)
 *   memcpy_floor DIR SIZE rate PER_S BOX_S OUT    PER_S copies a second, each timed from
 *                                                 its intended start (no coordinated omission)
 *
 * The mapping (MAP_BYTES of DIR/floor.map, fallocated, then MADV_POPULATE_WRITE) is reused
 * round and round. Prints one JSON object on stdout; latency samples (int64 ns, the clock's
 * own cost included) go to OUT, and "overhead_ns" is the median of an empty clock pair.
 * Built by `python -m bench.compare` with the system cc. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MAP_BYTES ((size_t)64 << 20)
#define BARRIER() __asm__ volatile("" ::: "memory")

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t clock_overhead(void)
{
    enum { N = 100001 };
    static int64_t s[N];
    for (int i = 0; i < N; i++) {
        int64_t t0 = now_ns();
        s[i] = now_ns() - t0;
    }
    qsort(s, N, sizeof s[0], cmp_i64);
    return s[N / 2];
}

static char *map_prefaulted(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/floor.map", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open");
    if (posix_fallocate(fd, 0, (off_t)MAP_BYTES) != 0)
        die("posix_fallocate");
    char *m = mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die("mmap");
    close(fd);
    if (madvise(m, MAP_BYTES, MADV_POPULATE_WRITE) != 0)
        for (size_t off = 0; off < MAP_BYTES; off += 4096)
            m[off] = 0;
    return m;
}

static void write_samples(const char *out, const int64_t *s, size_t n)
{
    FILE *f = fopen(out, "wb");
    if (f == NULL || fwrite(s, sizeof s[0], n, f) != n || fclose(f) != 0)
        die(out);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: memcpy_floor DIR SIZE tput|lat|rate ARGS...\n");
        return 2;
    }
    const char *dir = argv[1], *mode = argv[3];
    size_t size = strtoull(argv[2], NULL, 10);
    size_t slots = MAP_BYTES / size;
    char *payload = malloc(size), *buf = malloc(size);
    if (payload == NULL || buf == NULL || slots == 0)
        die("setup");
    for (size_t i = 0; i < size; i++)
        payload[i] = (char)(i * 131 + 7);
    char *m = map_prefaulted(dir);
    volatile unsigned sink = 0;

    if (strcmp(mode, "tput") == 0) {
        double box = atof(argv[4]);
        int64_t n_w = 0, n_r = 0, t0 = now_ns(), t_w, t_r;
        size_t slot = 0;
        for (;;) {
            for (int k = 0; k < 1024; k++) {
                memcpy(m + slot * size, payload, size);
                BARRIER();
                if (++slot == slots)
                    slot = 0;
            }
            n_w += 1024;
            if ((t_w = now_ns() - t0) >= box * 1e9)
                break;
        }
        t0 = now_ns();
        slot = 0;
        for (;;) {
            for (int k = 0; k < 1024; k++) {
                memcpy(buf, m + slot * size, size);
                BARRIER();
                sink += (unsigned char)buf[size - 1];
                if (++slot == slots)
                    slot = 0;
            }
            n_r += 1024;
            if ((t_r = now_ns() - t0) >= box * 1e9)
                break;
        }
        printf("{\"write_items\": %lld, \"write_ns\": %lld, \"read_items\": %lld, \"read_ns\": %lld}\n",
               (long long)n_w, (long long)t_w, (long long)n_r, (long long)t_r);
        return 0;
    }

    int latency = strcmp(mode, "lat") == 0;
    if (!latency && strcmp(mode, "rate") != 0) {
        fprintf(stderr, "memcpy_floor: unknown mode %s\n", mode);
        return 2;
    }
    if (argc < 7) {
        fprintf(stderr, "memcpy_floor: %s needs two more arguments and OUT\n", mode);
        return 2;
    }
    int64_t overhead = clock_overhead();
    double box = atof(argv[latency ? 4 : 5]);
    double per_s = latency ? 0 : atof(argv[4]);
    size_t cap = latency ? strtoull(argv[5], NULL, 10) : (size_t)(per_s * box);
    int64_t *s = malloc(cap * sizeof *s);
    if (s == NULL)
        die("malloc");
    size_t n = 0, slot = 0;
    if (latency) {
        int64_t end = now_ns() + (int64_t)(box * 1e9);
        while (n < cap) {
            int64_t t0 = now_ns();
            memcpy(m + slot * size, payload, size);
            BARRIER();
            int64_t t1 = now_ns();
            s[n++] = t1 - t0;
            if (++slot == slots)
                slot = 0;
            if (t1 >= end)
                break;
        }
    } else {
        double interval = 1e9 / per_s;
        int64_t start = now_ns() + 1000000;
        for (; n < cap; n++) {
            int64_t due = start + (int64_t)(n * interval), t;
            while ((t = now_ns()) < due)
                if (due - t > 300000) {
                    struct timespec nap = {0, due - t - 200000};
                    nanosleep(&nap, NULL);
                }
            memcpy(m + slot * size, payload, size);
            BARRIER();
            s[n] = now_ns() - due;
            if (++slot == slots)
                slot = 0;
        }
    }
    write_samples(argv[6], s, n);
    printf("{\"samples\": %zu, \"overhead_ns\": %lld}\n", n, (long long)overhead);
    return 0;
}
