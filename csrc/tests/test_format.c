/* test_format.c - the bytes on disk, checked against docs/FORMAT.md.
 *
 * The files are read with plain pread and decoded here from the format
 * document alone, as a stranger's reader would; the CRC is the bitwise
 * reference of test_harness.h, never the library's. */
#include "test_harness.h"

#include <dirent.h>

#include "tape_int.h"

#define T0_SEC 1700000000LL                 /* a test_secondly cycle number */
#define T0 (T0_SEC * 1000000000LL)

static const char params[] = "{\"type\": \"record\"}";

/* ---- CRC ------------------------------------------------------------------ */

static void reference_crc_check_value(void)
{
    EXPECT_EQ(th_crc32c(0, "123456789", 9), 0xE3069283u);
    EXPECT_EQ(th_crc32c(0, "", 0), 0);
    EXPECT_EQ(tape_crc32c(0, "123456789", 9), 0xE3069283u);
    EXPECT_EQ(tape_crc32c(0, "", 0), 0);
    EXPECT_EQ(tape_crc32c(0xDEADBEEF, "", 0), 0xDEADBEEF);
}

static void crc32c_matches_reference_on_random_input(void)
{
    enum { MAXLEN = 300, ROUNDS = 20000 };
    unsigned char *raw = malloc(MAXLEN + 64);
    CHECK(raw);
    uint64_t rs = 0x1234567;
    for (int r = 0; r < ROUNDS; r++) {
        size_t len = th_rand(&rs) % (MAXLEN + 1);
        size_t align = th_rand(&rs) % 16;
        uint32_t seed = r % 5 == 0 ? 0 : (uint32_t)th_rand(&rs);
        unsigned char *p = raw + align;
        for (size_t i = 0; i < len; i++)
            p[i] = (unsigned char)th_rand(&rs);
        uint32_t want = th_crc32c(seed, p, len);
        if (!EXPECT_EQ(tape_crc32c(seed, p, len), want)) {
            fprintf(stderr, "  len %zu align %zu seed %08x\n", len, align, seed);
            break;
        }
        /* Seed chaining: CRC(a ++ b) = CRC(CRC(a), b). */
        size_t cut = len ? th_rand(&rs) % len : 0;
        EXPECT_EQ(tape_crc32c(tape_crc32c(seed, p, cut), p + cut, len - cut), want);
    }
    free(raw);
}

static void crc32c_matches_reference_on_long_input(void)
{
    size_t lens[] = {1000, 4096, 4097, 65536 + 13, 300000};
    unsigned char *buf = malloc(300000 + 16);
    CHECK(buf);
    uint64_t rs = 99;
    for (size_t i = 0; i < 300000 + 16; i++)
        buf[i] = (unsigned char)th_rand(&rs);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t a = 0; a < 8; a += 3)
            EXPECT_EQ(tape_crc32c(0x5EED, buf + a, lens[i]),
                      th_crc32c(0x5EED, buf + a, lens[i]));
    free(buf);
}

/* ---- the metadata file ------------------------------------------------------ */

static void meta_file_settings_page(void)
{
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    o.oo_roll_cycle = "test_secondly";
    o.oo_codec = "raw";
    o.oo_params = params;
    o.oo_params_len = sizeof params - 1;
    o.oo_create = 1;
    o.oo_epoch_ms = 250;
    int64_t before = th_wall_ns();
    tape_queue *q = NULL;
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    int64_t after = th_wall_ns();

    size_t len = 0;
    unsigned char *m = th_read_file(th_path("q/tape.meta"), &len);
    CHECK(m);
    EXPECT_EQ(len, 65536);
    EXPECT(memcmp(m, "TAPEMETA", 8) == 0);
    EXPECT_EQ(th_le32(m + 8), 1);
    EXPECT_EQ(th_le32(m + 12), 65536);
    char name[49] = {0};
    memcpy(name, m + 16, 48);
    EXPECT(strcmp(name, "test_secondly") == 0);
    for (size_t i = strlen("test_secondly"); i < 48; i++)
        EXPECT_EQ(m[16 + i], 0);
    memcpy(name, m + 64, 48);
    EXPECT(strcmp(name, "raw") == 0);
    for (size_t i = 3; i < 48; i++)
        EXPECT_EQ(m[64 + i], 0);
    EXPECT_EQ(th_le64(m + 112), 1000);
    EXPECT_EQ((int64_t)th_le64(m + 120), 250);
    EXPECT_EQ(th_le32(m + 128), 12);
    EXPECT_EQ(th_le32(m + 132), 5);
    EXPECT_EQ(th_le32(m + 136), 2);
    EXPECT_EQ(th_le32(m + 140), sizeof params - 1);
    int64_t created = (int64_t)th_le64(m + 144);
    EXPECT(created >= before - 1000000000LL && created <= after + 1000000000LL);
    EXPECT_EQ(th_le32(m + 152), th_crc32c(0, m, 152));
    EXPECT(memcmp(m + 32768, params, sizeof params - 1) == 0);
    EXPECT_EQ(m[32768 + sizeof params - 1], 0);

    /* Shared state of an empty queue. */
    EXPECT_EQ(th_le32(m + 4096), 0);                 /* lock free */
    EXPECT_EQ((int64_t)th_le64(m + 4160), -1);       /* lowest cycle */
    EXPECT_EQ((int64_t)th_le64(m + 4168), -1);       /* highest cycle */

    /* The API reports the same settings. */
    tape_queue_info qi;
    CHECK_OK(tape_queue_info_get(q, &qi));
    EXPECT_EQ(qi.qi_created_ns, created);
    EXPECT_EQ(qi.qi_params_len, sizeof params - 1);
    char pb[64];
    EXPECT_EQ(tape_queue_params(q, pb, sizeof pb), sizeof params - 1);
    EXPECT(memcmp(pb, params, sizeof params - 1) == 0);
    free(m);
    tape_close(q);

    /* Nothing but tape.meta is in the directory: no temporary left over. */
    DIR *d = opendir(th_path("q"));
    CHECK(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        EXPECT(strcmp(de->d_name, "tape.meta") == 0);
    }
    closedir(d);
    EXPECT_EQ(n, 1);
}

static void damaged_meta_is_refused(void)
{
    tape_queue *q = NULL;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_close(q);
    tape_open_opts o;
    memset(&o, 0, sizeof o);

    /* A flipped byte inside the CRC-covered settings. */
    size_t len;
    unsigned char *m = th_read_file(th_path("q/tape.meta"), &len);
    CHECK(m);
    CHECK_OK(th_pwrite_byte(th_path("q/tape.meta"), 113, m[113] ^ 0x40));
    EXPECT_EQ(tape_open(th_path("q"), &o, &q), TAPE_ECORRUPT);
    CHECK_OK(th_pwrite_byte(th_path("q/tape.meta"), 113, m[113]));
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    tape_close(q);

    /* A version this build does not know, with a valid CRC. */
    unsigned char hdr[156];
    memcpy(hdr, m, sizeof hdr);
    th_put_le32(hdr + 8, 2);
    th_put_le32(hdr + 152, th_crc32c(0, hdr, 152));
    int fd = open(th_path("q/tape.meta"), O_WRONLY);
    CHECK(fd >= 0);
    EXPECT_EQ(pwrite(fd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
    /* tape.h has TAPE_EVERSION for this; FORMAT.md calls any version
     * mismatch "damaged": accept either, never success. */
    int rc = tape_open(th_path("q"), &o, &q);
    EXPECT(rc == TAPE_EVERSION || rc == TAPE_ECORRUPT);
    if (rc == 0)
        tape_close(q);

    /* Bad magic. */
    memcpy(hdr, m, sizeof hdr);
    hdr[0] = 'X';
    EXPECT_EQ(pwrite(fd, hdr, sizeof hdr, 0), (ssize_t)sizeof hdr);
    rc = tape_open(th_path("q"), &o, &q);
    EXPECT_EQ(rc, TAPE_ECORRUPT);
    if (rc == 0)
        tape_close(q);

    /* Truncated to less than its size. */
    EXPECT_EQ(pwrite(fd, m, sizeof hdr, 0), (ssize_t)sizeof hdr);
    EXPECT_EQ(ftruncate(fd, 4096), 0);
    rc = tape_open(th_path("q"), &o, &q);
    EXPECT_EQ(rc, TAPE_ECORRUPT);
    if (rc == 0)
        tape_close(q);
    close(fd);
    free(m);
}

/* ---- cycle files ------------------------------------------------------------ */

typedef struct written {
    int64_t index;
    int64_t ts;
    uint32_t len;
    int64_t cycle;
    int64_t seq;
} written;

static uint32_t payload_len(int i) { return (uint32_t)(i % 41); }
static unsigned char payload_byte(int i, uint32_t j) { return (unsigned char)(i * 7 + j * 13 + 1); }

#define N_C0 300 /* entries in the first cycle: three index arrays */
#define N_C1 5

/* Append N_C0 entries in cycle T0_SEC and N_C1 in the next. */
static int write_two_cycles(tape_queue *q, written *w)
{
    tape_appender *a = NULL;
    int rc = tape_appender_open(q, &a);
    if (rc < 0)
        return rc;
    unsigned char buf[64];
    for (int i = 0; i < N_C0 + N_C1; i++) {
        uint32_t len = payload_len(i);
        for (uint32_t j = 0; j < len; j++)
            buf[j] = payload_byte(i, j);
        int64_t ts = T0 + (i < N_C0 ? 0 : 1000000000LL) + i * 1000LL;
        int64_t idx = tape_append(a, buf, len, ts);
        if (idx < 0) {
            tape_appender_close(a);
            return (int)idx;
        }
        w[i].index = idx;
        w[i].ts = ts;
        w[i].len = len;
        w[i].cycle = i < N_C0 ? T0_SEC : T0_SEC + 1;
        w[i].seq = i < N_C0 ? i : i - N_C0;
    }
    tape_appender_close(a);
    return 0;
}

/* Decode one cycle file with FORMAT.md alone and compare it with what was
 * written (w[0..n)). `sealed`: an end-of-file marker must end it. */
static void check_cycle_file(const char *path, int64_t cycle, const written *w,
                             int base, int n, int sealed, int64_t t_before)
{
    size_t size = 0;
    unsigned char *f = th_read_file(path, &size);
    if (!EXPECT(f != NULL)) {
        fprintf(stderr, "  cannot read %s\n", path);
        return;
    }
    const uint64_t N = 32, S = 4;
    uint64_t first = 4096 + ((8 * N + 4095) / 4096) * 4096;
    if (!EXPECT(size >= first + 4096 && size % 4096 == 0))
        goto out;
    EXPECT(memcmp(f, "TAPECYCL", 8) == 0);
    EXPECT_EQ(th_le32(f + 8), 2); /* new cycle files are version 2 */
    EXPECT_EQ(th_le32(f + 12), 0);
    EXPECT_EQ((int64_t)th_le64(f + 16), cycle);
    uint32_t seed = th_le32(f + 24);
    EXPECT(seed != 0);
    EXPECT_EQ(th_le32(f + 28), 12);
    EXPECT_EQ(th_le32(f + 32), 5);
    EXPECT_EQ(th_le32(f + 36), 2);
    EXPECT_EQ(th_le64(f + 40), 4096);
    EXPECT_EQ(th_le64(f + 48), first);
    int64_t created = (int64_t)th_le64(f + 56);
    EXPECT(created >= t_before - 1000000000LL && created <= th_wall_ns() + 1000000000LL);
    EXPECT_EQ(th_le32(f + 64), th_crc32c(0, f, 64));

    uint64_t i2i[32];
    for (uint64_t k = 0; k < N; k++)
        i2i[k] = th_le64(f + 4096 + 8 * k);
    /* Bytes between index2index and the first entry are zero. */
    for (uint64_t p = 4096 + 8 * N; p < first; p++)
        if (!EXPECT_EQ(f[p], 0))
            break;

    uint64_t off = first;
    int64_t seq = 0;
    uint64_t arrays_seen = 0;
    int ended = 0;
    while (off + 16 <= size) {
        uint32_t h = th_le32(f + off);
        if (h == 0)
            break;
        if (h == 0xC0000000u) {
            ended = 1;
            break;
        }
        if (!EXPECT((h & 0x80000000u) == 0)) {
            fprintf(stderr, "  %s: incomplete header %08x at %" PRIu64 "\n", path, h, off);
            goto out;
        }
        if (!EXPECT((h & 0x3FFFFFFFu) >= 12)) {
            fprintf(stderr, "  %s: header %08x at %" PRIu64 " has L < 12\n", path, h, off);
            goto out;
        }
        uint32_t len = th_hdr_payload_len(h);
        uint64_t next = off + th_hdr_entry_size(h);
        EXPECT_EQ(next, off + 16 + ((len + 7ull) & ~7ull));
        if (!EXPECT(next <= size))
            goto out;
        if (h & 0x40000000u) {
            /* Metadata entry: an index array, created just before the
             * entry with seq k*N*S. */
            uint64_t tag = th_le64(f + off + 8);
            uint64_t k = tag & ((1ull << 56) - 1);
            EXPECT_EQ(tag >> 56, 1);
            EXPECT_EQ(k, arrays_seen);
            EXPECT_EQ((uint64_t)seq, k * N * S);
            EXPECT_EQ(len, 8 * N);
            uint32_t crc = th_crc32c(seed, f + off, 4);
            crc = th_crc32c(crc, f + off + 8, 8);
            EXPECT_EQ(th_le32(f + off + 4), crc);
            if (k < N)
                EXPECT_EQ(i2i[k], off);
            arrays_seen++;
        } else {
            if (!EXPECT(seq < n)) {
                fprintf(stderr, "  %s: more entries than written\n", path);
                goto out;
            }
            const written *e = &w[seq];
            EXPECT_EQ(len, e->len);
            EXPECT_EQ((int64_t)th_le64(f + off + 8), e->ts);
            EXPECT_EQ(e->index, (int64_t)((uint64_t)cycle << 12 | (uint64_t)seq));
            for (uint32_t j = 0; j < len && j < e->len; j++)
                if (!EXPECT_EQ(f[off + 16 + j], payload_byte(base + (int)seq, j)))
                    break;
            for (uint64_t p = off + 16 + len; p < next; p++)
                EXPECT_EQ(f[p], 0); /* padding */
            unsigned char seqle[8];
            th_put_le64(seqle, (uint64_t)seq);
            uint32_t crc = th_crc32c(seed, f + off, 4);
            crc = th_crc32c(crc, seqle, 8);
            crc = th_crc32c(crc, f + off + 8, 8);
            crc = th_crc32c(crc, f + off + 16, len);
            EXPECT_EQ(th_le32(f + off + 4), crc);
            if ((uint64_t)seq % S == 0) {
                uint64_t k = (uint64_t)seq / (N * S), j = ((uint64_t)seq / S) % N;
                if (EXPECT(k < arrays_seen && i2i[k] != 0))
                    EXPECT_EQ(th_le64(f + i2i[k] + 16 + 8 * j), off);
            }
            seq++;
        }
        off = next;
    }
    EXPECT_EQ(seq, n);
    EXPECT_EQ(ended, sealed);
    /* Index arrays: exactly the ones needed, unused slots zero. */
    uint64_t need = n ? ((uint64_t)n - 1) / (N * S) + 1 : 0;
    EXPECT_EQ(arrays_seen, need);
    for (uint64_t k = 0; k < N; k++) {
        if (k >= arrays_seen) {
            EXPECT_EQ(i2i[k], 0);
            continue;
        }
        for (uint64_t j = 0; j < N; j++) {
            uint64_t s = (k * N + j) * S;
            if (s >= (uint64_t)n)
                EXPECT_EQ(th_le64(f + i2i[k] + 16 + 8 * j), 0);
        }
    }
    /* Bytes past the last entry (or past the end-of-file marker's 16 bytes)
     * are zero. */
    uint64_t tail = ended ? off + 16 : off;
    for (uint64_t p = tail; p < size; p++) {
        if (!EXPECT_EQ(f[p], 0)) {
            fprintf(stderr, "  %s: non-zero byte at %" PRIu64 " (end of data %" PRIu64 ")\n",
                    path, p, off);
            break;
        }
    }
out:
    free(f);
}

static void check_queue_files(tape_queue *q, const written *w, int64_t t_before)
{
    char name[64], want[64];
    CHECK_OK(tape_cycle_name(q, T0_SEC, name, sizeof name));
    time_t secs = (time_t)T0_SEC;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(want, sizeof want, "%Y%m%d-%H%M%S.tape", &tm);
    EXPECT(strcmp(name, want) == 0);
    char path[256];
    snprintf(path, sizeof path, "q/%s", name);
    check_cycle_file(th_path(path), T0_SEC, w, 0, N_C0, 1, t_before);
    CHECK_OK(tape_cycle_name(q, T0_SEC + 1, name, sizeof name));
    snprintf(path, sizeof path, "q/%s", name);
    check_cycle_file(th_path(path), T0_SEC + 1, w + N_C0, N_C0, N_C1, 0, t_before);
}

static void cycle_files_entries_and_indexes(void)
{
    tape_queue *q = NULL;
    int64_t t_before = th_wall_ns();
    CHECK_OK(th_open("q", "test_secondly", "raw", &q));
    size_t len;
    unsigned char *m = th_read_file(th_path("q/tape.meta"), &len);
    CHECK(m);
    uint64_t modcount0 = th_le64(m + 4176);
    free(m);

    static written w[N_C0 + N_C1];
    int rc = write_two_cycles(q, w);
    CHECK_OK(rc);

    /* Read while the queue is open (the page cache is shared with the
     * mapping), then again after close. */
    check_queue_files(q, w, t_before);

    m = th_read_file(th_path("q/tape.meta"), &len);
    CHECK(m);
    EXPECT_EQ(th_le32(m + 4096), 0);                    /* lock released */
    EXPECT_EQ(th_le64(m + 4104) % 2, 0);                /* hint stable */
    EXPECT_EQ((int64_t)th_le64(m + 4112), T0_SEC + 1);  /* hint cycle */
    EXPECT_EQ(th_le64(m + 4128), N_C1);                 /* hint next seq */
    EXPECT_EQ((int64_t)th_le64(m + 4136), w[N_C0 + N_C1 - 1].ts);
    EXPECT_EQ((int64_t)th_le64(m + 4160), T0_SEC);
    EXPECT_EQ((int64_t)th_le64(m + 4168), T0_SEC + 1);
    EXPECT_EQ(th_le64(m + 4176), modcount0 + 2);
    uint64_t hint_off = th_le64(m + 4120);
    free(m);

    /* The hinted offset is just after the last entry of the newest file. */
    char name[64], path[256];
    CHECK_OK(tape_cycle_name(q, T0_SEC + 1, name, sizeof name));
    snprintf(path, sizeof path, "q/%s", name);
    unsigned char *f = th_read_file(th_path(path), &len);
    CHECK(f);
    uint64_t off = 8192;
    while (off + 4 <= len && th_le32(f + off) != 0)
        off += th_hdr_entry_size(th_le32(f + off));
    EXPECT_EQ(hint_off, off);
    free(f);

    tape_close(q);
    tape_open_opts o;
    memset(&o, 0, sizeof o);
    CHECK_OK(tape_open(th_path("q"), &o, &q));
    check_queue_files(q, w, t_before);
    tape_close(q);

    /* Exactly three files in the directory. */
    DIR *d = opendir(th_path("q"));
    CHECK(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    EXPECT_EQ(n, 3);
}

/* A full index array and many arrays: 4096 entries fill one test_secondly
 * cycle, using all 32 arrays of 32 slots. */
static void full_cycle_uses_every_index_array(void)
{
    tape_queue *q = NULL;
    int64_t t_before = th_wall_ns();
    CHECK_OK(th_open("q", "test_secondly", "raw", &q));
    tape_appender *a = NULL;
    CHECK_OK(tape_appender_open(q, &a));
    static written w[4096];
    unsigned char buf[64];
    for (int i = 0; i < 4096; i++) {
        uint32_t len = payload_len(i);
        for (uint32_t j = 0; j < len; j++)
            buf[j] = payload_byte(i, j);
        int64_t idx = tape_append(a, buf, len, T0 + i);
        CHECK_OK(idx);
        w[i] = (written){idx, T0 + i, len, T0_SEC, i};
    }
    tape_appender_close(a);
    char name[64], path[256];
    CHECK_OK(tape_cycle_name(q, T0_SEC, name, sizeof name));
    snprintf(path, sizeof path, "q/%s", name);
    check_cycle_file(th_path(path), T0_SEC, w, 0, 4096, 0, t_before);
    tape_close(q);
}

static const th_test tests[] = {
    TEST(reference_crc_check_value),
    TEST(crc32c_matches_reference_on_random_input),
    TEST(crc32c_matches_reference_on_long_input),
    TEST(meta_file_settings_page),
    TEST(damaged_meta_is_refused),
    TEST(cycle_files_entries_and_indexes),
    TEST(full_cycle_uses_every_index_array),
};

TEST_MAIN(tests)
