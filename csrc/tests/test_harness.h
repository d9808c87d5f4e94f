/* test_harness.h - the small harness shared by the C tests (test_*.c).
 *
 * Each test binary lists its tests in a TEST_LIST table and calls
 * test_main(). CHECK* abort the current test function (they `return`), so
 * use them only in functions returning void; EXPECT* record the failure and
 * go on, for threads and helpers. Every test runs in its own fresh directory
 * under a mkdtemp() root in $TMPDIR (default /tmp), removed at exit unless
 * TAPE_TEST_KEEP is set. A test name given on the command line runs only the
 * tests whose names contain it.
 *
 * Also here: a bitwise reference CRC-32C written from docs/FORMAT.md, and
 * helpers to read files with plain pread, as a foreign reader would.
 */
#ifndef TAPE_TEST_HARNESS_H
#define TAPE_TEST_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, nftw, pread, gmtime_r under -std=c11 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tape.h"

static atomic_int th_failures;
static int th_test_failed_before;
static char th_root[1024];
static char th_dir[2048];

static inline void th_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TH_FAIL(...) th_fail(__FILE__, __LINE__, __VA_ARGS__)

#define EXPECT(c)                                                           \
    ((c) ? 1 : (TH_FAIL("%s", #c), 0))

#define EXPECT_EQ(a, b)                                                     \
    th_expect_eq((long long)(a), (long long)(b), #a, #b, __FILE__, __LINE__)

#define CHECK(c)                                                            \
    do { if (!EXPECT(c)) return; } while (0)

#define CHECK_EQ(a, b)                                                      \
    do { if (!EXPECT_EQ(a, b)) return; } while (0)

/* A call that must succeed (return >= 0); prints the tape_strerror text. */
#define CHECK_OK(call)                                                      \
    do {                                                                    \
        long long th_rc_ = (long long)(call);                               \
        if (th_rc_ < 0) {                                                   \
            TH_FAIL("%s returned %lld (%s)", #call, th_rc_,                 \
                    tape_strerror((int)th_rc_));                            \
            return;                                                         \
        }                                                                   \
    } while (0)

static inline void th_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    atomic_fetch_add(&th_failures, 1);
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static inline int th_expect_eq(long long a, long long b, const char *as,
                               const char *bs, const char *file, int line)
{
    if (a == b)
        return 1;
    atomic_fetch_add(&th_failures, 1);
    fprintf(stderr, "%s:%d: FAIL: %s == %s: %lld (0x%llx) != %lld (0x%llx)",
            file, line, as, bs, a, (unsigned long long)a, b, (unsigned long long)b);
    if (a <= TAPE_EBASE && a > TAPE_EBASE - 100)
        fprintf(stderr, " [%s]", tape_strerror((int)a));
    fputc('\n', stderr);
    return 0;
}

typedef struct th_test {
    const char *tt_name;
    void (*tt_fn)(void);
} th_test;

#define TEST(fn) { #fn, fn }

/* ---- directories ---------------------------------------------------------- */

static int th_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static inline void th_rm_rf(const char *path)
{
    nftw(path, th_rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

/* A path inside the current test's directory (static buffer, rotating). */
static inline const char *th_path(const char *name)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", th_dir, name);
    return b;
}

/* ---- plain file access ---------------------------------------------------- */

static inline uint32_t th_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t th_le64(const unsigned char *p)
{
    return (uint64_t)th_le32(p) | (uint64_t)th_le32(p + 4) << 32;
}

static inline void th_put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline void th_put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Entry header word (FORMAT.md "Entries"): the low 30 bits are L, the bytes
 * after the header word up to the end of the payload (12 + payload length);
 * the entry occupies round_up(4 + L, 8) bytes. */
static inline uint32_t th_hdr_payload_len(uint32_t h) { return (h & 0x3FFFFFFFu) - 12; }
static inline uint64_t th_hdr_entry_size(uint32_t h)
{
    return (4 + (uint64_t)(h & 0x3FFFFFFFu) + 7) & ~(uint64_t)7;
}

/* Read a whole file with pread; *len gets its size. NULL on error. */
static inline unsigned char *th_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    size_t done = 0;
    while (buf && done < (size_t)st.st_size) {
        ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);
        if (n <= 0) {
            free(buf);
            buf = NULL;
            break;
        }
        done += (size_t)n;
    }
    close(fd);
    *len = done;
    return buf;
}

static inline int th_pwrite_byte(const char *path, off_t off, unsigned char b)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = pwrite(fd, &b, 1, off);
    close(fd);
    return n == 1 ? 0 : -1;
}

/* ---- reference CRC-32C, bit by bit, exactly as docs/FORMAT.md states ------ */

static inline uint32_t th_crc_update(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        crc ^= b[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return crc;
}

static inline uint32_t th_crc32c(uint32_t seed, const void *p, size_t n)
{
    return ~th_crc_update(~seed, p, n);
}

/* ---- misc ----------------------------------------------------------------- */

static inline int64_t th_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t th_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* xorshift64*: deterministic pseudo-random numbers for the tests. */
static inline uint64_t th_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Open (creating) the queue in directory `path`. */
static inline int th_open_at(const char *path, const char *roll, const char *codec,
                             tape_queue **q)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_roll_cycle = roll;
    o.oo_codec = codec;
    o.oo_create = 1;
    return tape_open(path, &o, q);
}

/* Open (creating) a queue in the test directory. */
static inline int th_open(const char *name, const char *roll, const char *codec,
                          tape_queue **q)
{
    return th_open_at(th_path(name), roll, codec, q);
}

/* After an open that returned rc: on success, an appender on *q too (*q is
 * closed again when there is none). Returns the first error, or 0. */
static inline int th_with_appender(int rc, tape_queue **q, tape_appender **a)
{
    if (rc < 0)
        return rc;
    if ((rc = tape_appender_open(*q, a)) < 0)
        tape_close(*q);
    return rc;
}

/* The same for a tailer at the start of *q. */
static inline int th_with_tailer(int rc, tape_queue **q, tape_tailer **t)
{
    if (rc < 0)
        return rc;
    if ((rc = tape_tailer_open(*q, t)) < 0)
        tape_close(*q);
    return rc;
}

/* Open (creating) a queue in the test directory, and an appender on it. */
static inline int th_open_writer(const char *name, const char *roll, const char *codec,
                                 tape_queue **q, tape_appender **a)
{
    return th_with_appender(th_open(name, roll, codec, q), q, a);
}

/* Close a test's tailer, appender and queue: those that are not NULL. */
static inline void th_close_all(tape_queue *q, tape_appender *a, tape_tailer *t)
{
    if (t)
        tape_tailer_close(t);
    if (a)
        tape_appender_close(a);
    if (q)
        tape_close(q);
}

/* ---- main ----------------------------------------------------------------- */

static inline int test_main(int argc, char **argv, const th_test *tests, size_t n)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(th_root, sizeof th_root, "%s/tape-test-XXXXXX", tmp);
    if (!mkdtemp(th_root)) {
        perror("mkdtemp");
        return 2;
    }
    int run = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && !strstr(tests[i].tt_name, argv[1]))
            continue;
        snprintf(th_dir, sizeof th_dir, "%s/%s", th_root, tests[i].tt_name);
        if (mkdir(th_dir, 0700) != 0) {
            perror("mkdir");
            return 2;
        }
        th_test_failed_before = atomic_load(&th_failures);
        int64_t t0 = th_now_ns();
        tests[i].tt_fn();
        double ms = (double)(th_now_ns() - t0) / 1e6;
        run++;
        if (atomic_load(&th_failures) != th_test_failed_before) {
            failed++;
            printf("  FAIL %-44s %9.1f ms\n", tests[i].tt_name, ms);
        } else {
            printf("  ok   %-44s %9.1f ms\n", tests[i].tt_name, ms);
        }
        fflush(stdout);
    }
    if (!getenv("TAPE_TEST_KEEP"))
        th_rm_rf(th_root);
    else
        printf("  kept %s\n", th_root);
    printf("%s: %d tests, %d passed, %d failed\n", argv[0], run, run - failed, failed);
    return failed ? 1 : 0;
}

#define TEST_MAIN(list)                                                     \
    int main(int argc, char **argv)                                         \
    {                                                                       \
        return test_main(argc, argv, list, sizeof list / sizeof list[0]);   \
    }

#endif /* TAPE_TEST_HARNESS_H */
