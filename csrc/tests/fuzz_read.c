/* fuzz_read.c - the cycle-file reader against arbitrary bytes. An input is a
 * cycle file's contents; it is put in a queue (valid tape.meta, roll cycle
 * test_secondly) and read every way the API allows: forward, backward, by
 * index, by time, counted and verified. Nothing may crash, and whatever is
 * read must carry a good checksum (the reader's own check).
 *
 *   fuzz_read FILE...                 replay inputs (the corpus)
 *   fuzz_read --mutate N SEED FILE... and N mutations of them, deterministic
 *   fuzz_read --make-corpus DIR       write seed inputs made by the writer
 *
 * Built with clang -fsanitize=fuzzer,address and -DTAPE_LIBFUZZER, the
 * LLVMFuzzerTestOneInput entry point serves libFuzzer instead. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tape.h"

static const int64_t T0 = 1763683200LL * 1000000000LL;
static char g_dir[256];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rm_rf(const char *p)
{
    nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static tape_queue *fresh_queue(const char *path)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_create = 1;
    o.oo_roll_cycle = "test_secondly";
    o.oo_codec = "raw";
    tape_queue *q = NULL;
    if (tape_open(path, &o, &q) < 0) {
        fprintf(stderr, "fuzz_read: cannot create a queue in %s\n", path);
        exit(2);
    }
    return q;
}

static void read_everything(tape_queue *q)
{
    tape_tailer *t;
    if (tape_tailer_open(q, &t) < 0)
        return;
    tape_entry e;
    int64_t seen[64];
    int n = 0;
    while (tape_read(t, &e) == 1)
        if (n < 64)
            seen[n++] = e.e_index;
    tape_tailer_set_direction(t, TAPE_BACKWARD);
    tape_tailer_to_end(t);
    for (int k = 0; k < 10000 && tape_read(t, &e) == 1; k++)
        ;
    tape_tailer_set_direction(t, TAPE_FORWARD);
    for (int i = 0; i < n; i++)
        if (tape_tailer_to_index(t, seen[i]) == 1)
            tape_read(t, &e);
    int64_t c = tape_cycle_of(q, T0);
    for (int64_t s = 0; s < 300; s += 7)
        tape_tailer_to_index(t, tape_make_index(q, c, s));
    tape_tailer_to_time(t, T0 + 5);
    tape_tailer_index(t);
    char buf[4096];
    int64_t idx[16], ts[16];
    uint64_t ends[16];
    tape_tailer_to_start(t);
    while (tape_read_many(t, buf, sizeof buf, idx, ts, ends, 16) > 0)
        ;
    tape_attrs at[16];
    size_t with;
    tape_tailer_to_start(t);
    int64_t got;
    while ((got = tape_read_many_ex(t, buf, sizeof buf, idx, ts, ends, 16, at, &with)) > 0) {
        /* A key lies in its entry's span of buf, before the payload. */
        for (int64_t k = 0; k < got; k++) {
            const char *lo = buf + (k ? ends[k - 1] : 0);
            if (at[k].a_key && ((const char *)at[k].a_key != lo || at[k].a_key_len > (uint64_t)(buf + ends[k] - lo)))
                abort();
        }
    }
    tape_tailer_close(t);
    tape_verify_report r;
    tape_verify(q, 0, &r);
    tape_verify(q, TAPE_VERIFY_SALVAGE, &r);
    tape_count(q);
    tape_last_index(q);
}

/* One input: `data` becomes the cycle file of cycle T0's second. */
static void run_one(const uint8_t *data, size_t len)
{
    char qpath[300], name[80], file[400];
    snprintf(qpath, sizeof qpath, "%s/q", g_dir);
    rm_rf(qpath);
    tape_queue *q = fresh_queue(qpath);
    tape_cycle_name(q, tape_cycle_of(q, T0), name, sizeof name);
    tape_close(q);
    snprintf(file, sizeof file, "%s/%s", qpath, name);
    int fd = open(file, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len)) {
        fprintf(stderr, "fuzz_read: cannot write %s\n", file);
        exit(2);
    }
    close(fd);
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_read_only = 1;
    if (tape_open(qpath, &o, &q) == 0) {
        read_everything(q);
        tape_close(q);
    }
}

#ifdef TAPE_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/fuzz_read.XXXXXX");
        if (!mkdtemp(g_dir))
            abort();
    }
    run_one(data, len);
    return 0;
}
#else

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Flip bits, overwrite words with boundary values, truncate, or copy a
 * stretch of the input over another place. */
static size_t mutate(uint8_t *b, size_t len)
{
    if (len == 0)
        return 0;
    switch (rnd() % 5) {
    case 0:
        for (int k = 0, n = 1 + (int)(rnd() % 4); k < n; k++)
            b[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1: {
        static const uint32_t words[] = {0, 0xFFFFFFFFu, 0xC0000000u, 0x80000000u, 0x40000000u,
                                         12, 0x3FFFFFFFu, 0x4000000Cu};
        size_t at = (rnd() % len) & ~(size_t)3;
        if (at + 4 <= len)
            memcpy(b + at, &words[rnd() % 8], 4);
        break;
    }
    case 2:
        return rnd() % len;
    case 3: {
        size_t from = rnd() % len, to = rnd() % len, n = 1 + rnd() % 256;
        if (from + n <= len && to + n <= len)
            memmove(b + to, b + from, n);
        break;
    }
    default: {
        uint64_t v = rnd();
        size_t at = (rnd() % len) & ~(size_t)7;
        if (at + 8 <= len)
            memcpy(b + at, &v, 8);
    }
    }
    return len;
}

/* The attributes of entry i of a seed with attributes (some have none). */
static tape_attrs seed_attrs(int i)
{
    static const char key[] = "key-0123456789";
    tape_attrs a = {NULL, 0, 0, 0, -1, 0};
    if (i % 3 == 0) {
        a.a_key = key;
        a.a_key_len = 1 + (uint32_t)(i % 14);
        a.a_flags = (i % 2 ? TAPE_A_KEY_STR : 0) | (i % 9 == 0 ? TAPE_A_TOMBSTONE : 0);
    }
    if (i % 4 == 1)
        a.a_not_before = T0 + i;
    if (i % 5 == 2) {
        a.a_origin_index = i;
        a.a_origin_ts = T0 - i;
    }
    return a;
}

/* Seeds: cycle files written by the real writer, trailing zeros trimmed:
 * seed-N holds N plain entries, seed-attrs-N entries with attributes. */
static int make_corpus(const char *out)
{
    static const int counts[] = {0, 1, 5, 40, 300, -1, -40};
    mkdir(out, 0755);
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        int n = abs(counts[k]), with_attrs = counts[k] < 0;
        char qpath[300], name[80], file[400], dst[400];
        snprintf(qpath, sizeof qpath, "%s/seed", g_dir);
        rm_rf(qpath);
        tape_queue *q = fresh_queue(qpath);
        tape_appender *a;
        if (tape_appender_open(q, &a) < 0)
            return 2;
        for (int i = 0; i < (n ? n : 1); i++) {
            char buf[64];
            memset(buf, 'a' + i % 26, sizeof buf);
            tape_attrs at = seed_attrs(i);
            tape_append_ex(a, buf, n ? (size_t)(i % 60) : 0, T0 + i, with_attrs ? &at : NULL);
        }
        tape_appender_close(a);
        tape_cycle_name(q, tape_cycle_of(q, T0), name, sizeof name);
        tape_close(q);
        snprintf(file, sizeof file, "%s/%s", qpath, name);
        size_t len;
        uint8_t *b = slurp(file, &len);
        if (!b)
            return 2;
        while (len > 0 && b[len - 1] == 0)
            len--;
        len = (len + 4 + 7) & ~(size_t)7; /* keep the final zero header */
        snprintf(dst, sizeof dst, "%s/seed-%s%d", out, with_attrs ? "attrs-" : "", n);
        FILE *f = fopen(dst, "wb");
        if (!f || fwrite(b, 1, len, f) != len)
            return 2;
        fclose(f);
        free(b);
    }
    return 0;
}

int main(int argc, char **argv)
{
    snprintf(g_dir, sizeof g_dir, "%s/fuzz_read.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 2;
    }
    int rc = 0, first = 1;
    long mutations = 0;
    if (argc >= 3 && !strcmp(argv[1], "--make-corpus")) {
        rc = make_corpus(argv[2]);
        rm_rf(g_dir);
        return rc;
    }
    if (argc >= 4 && !strcmp(argv[1], "--mutate")) {
        mutations = atol(argv[2]);
        rng = strtoull(argv[3], NULL, 0) | 1;
        first = 4;
    }
    long runs = 0;
    for (int i = first; i < argc; i++) {
        size_t len;
        uint8_t *b = slurp(argv[i], &len);
        if (!b) {
            fprintf(stderr, "fuzz_read: cannot read %s\n", argv[i]);
            rc = 2;
            continue;
        }
        run_one(b, len);
        runs++;
        long per = argc > first ? mutations / (argc - first) : 0;
        uint8_t *m = malloc(len + 1);
        for (long k = 0; m && k < per; k++) {
            memcpy(m, b, len);
            size_t ml = mutate(m, len);
            if (rnd() % 3 == 0)
                ml = mutate(m, ml);
            run_one(m, ml);
            runs++;
        }
        free(m);
        free(b);
    }
    rm_rf(g_dir);
    printf("fuzz_read: %ld inputs read without a crash\n", runs);
    return rc;
}
#endif
