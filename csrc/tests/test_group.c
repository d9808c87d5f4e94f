/* test_group.c - consumer groups in the core (group.c): claims, fencing,
 * redelivery, dead entries, a consumer killed holding claims, bounds. */
#include "test_harness.h"
#include "tape_int.h"

#include <signal.h>
#include <sys/wait.h>

#define NS 1000000000LL
#define T0 (1763683200LL * NS)

static tape_group_settings settings(int64_t ack_wait_ns, uint32_t max)
{
    tape_group_settings s;
    memset(&s, 0, sizeof s);
    s.gset_ack_wait_ns = ack_wait_ns;
    s.gset_max_deliveries = max;
    return s;
}

static void fill(tape_appender *a, int n)
{
    for (int i = 0; i < n; i++)
        EXPECT(tape_append(a, &i, sizeof i, 0) >= 0);
}

static int value_of(const tape_entry *e)
{
    int v;
    memcpy(&v, e->e_data, sizeof v);
    return v;
}

static void claims_in_order_and_acks_fence(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    fill(a, 3);
    tape_group_settings s = settings(30 * NS, 5);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, &s, 0, &g));
    tape_consumer *c;
    tape_tailer *t;
    CHECK_OK(tape_consumer_open(g, "w", &c));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_delivery d;
    tape_entry e;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
        EXPECT_EQ(value_of(&e), i);
        EXPECT_EQ(d.d_attempt, 1);
        EXPECT_EQ(d.d_due, T0 + 30 * NS);
        CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0));
        EXPECT_EQ(tape_group_ack(c, d.d_slot, d.d_gen, T0), TAPE_ESTALE);
    }
    EXPECT_EQ(tape_group_claim(c, t, T0, &d, &e), 0);
    EXPECT_EQ(tape_group_ack(c, TAPE_GROUP_SLOTS, 1, T0), TAPE_EINVAL);
    tape_group_info gi;
    CHECK_OK(tape_group_info_get(g, T0, &gi));
    EXPECT_EQ(gi.gi_acked, 3);
    EXPECT_EQ(gi.gi_floor, gi.gi_last + 1);
    tape_consumer_close(c);
    tape_tailer_close(t);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

static void lapse_redelivers_and_max_deliveries_kill(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    fill(a, 1);
    tape_group_settings s = settings(10 * NS, 2);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, &s, 0, &g));
    tape_consumer *c1, *c2;
    tape_tailer *t1, *t2;
    CHECK_OK(tape_consumer_open(g, NULL, &c1));
    CHECK_OK(tape_consumer_open(g, NULL, &c2));
    CHECK_OK(tape_tailer_open(q, &t1));
    CHECK_OK(tape_tailer_open(q, &t2));
    tape_delivery d1, d2, dd;
    tape_entry e;
    CHECK_EQ(tape_group_claim(c1, t1, T0, &d1, &e), 1);
    EXPECT_EQ(tape_group_claim(c2, t2, T0 + 10 * NS, &d2, &e), 0);
    CHECK_EQ(tape_group_claim(c2, t2, T0 + 10 * NS + 1, &d2, &e), 1);
    EXPECT_EQ(d2.d_attempt, 2);
    EXPECT_EQ(d2.d_index, d1.d_index);
    EXPECT_EQ(tape_group_ack(c1, d1.d_slot, d1.d_gen, T0 + 11 * NS), TAPE_ESTALE);
    EXPECT_EQ(tape_group_extend(c1, d1.d_slot, d1.d_gen, T0 + 11 * NS, NS), TAPE_ESTALE);
    CHECK_OK(tape_group_nack(c2, d2.d_slot, d2.d_gen, T0 + 11 * NS, 0));
    /* delivered twice: dead, not handed out again */
    EXPECT_EQ(tape_group_claim(c1, t1, T0 + 12 * NS, &d1, &e), 0);
    CHECK_EQ(tape_group_take_dead(c1, T0 + 12 * NS, &dd), 1);
    EXPECT_EQ(dd.d_reason, TAPE_GR_DELIVERIES);
    EXPECT_EQ(dd.d_attempt, 2);
    EXPECT_EQ(dd.d_owner, tape_consumer_id(c2));
    EXPECT_EQ(tape_group_take_dead(c2, T0 + 12 * NS, &d2), 0);
    CHECK_OK(tape_group_dead_done(c1, dd.d_slot, dd.d_gen));
    EXPECT_EQ(tape_group_dead_done(c1, dd.d_slot, dd.d_gen), TAPE_ESTALE);
    /* redriven: a new delivery, read from the dead letter's copy */
    EXPECT_EQ(tape_group_redrive(g, dd.d_index, 7, T0), 1);
    EXPECT_EQ(tape_group_redrive(g, dd.d_index, 7, T0), 0);
    CHECK_EQ(tape_group_claim(c1, t1, T0 + 13 * NS, &d1, &e), 1);
    EXPECT_EQ(d1.d_dl, 7);
    EXPECT_EQ(d1.d_attempt, 1);
    CHECK_OK(tape_group_ack(c1, d1.d_slot, d1.d_gen, T0 + 13 * NS));
    tape_consumer_close(c1);
    tape_consumer_close(c2);
    tape_tailer_close(t1);
    tape_tailer_close(t2);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

static void a_killed_consumers_claims_come_back(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    fill(a, 10);
    tape_group_settings s = settings(600 * NS, 5);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, &s, 0, &g));
    tape_group_close(g);
    th_close_all(q, a, NULL);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t kid = fork();
    if (kid == 0) {
        tape_queue *kq;
        tape_group *kg;
        tape_consumer *kc;
        tape_tailer *kt;
        tape_delivery d;
        tape_entry e;
        if (th_open("q", "daily", "raw", &kq) < 0 || tape_group_open(kq, "g", -1, NULL, 0, &kg) < 0 ||
            tape_consumer_open(kg, "doomed", &kc) < 0 || tape_tailer_open(kq, &kt) < 0)
            _exit(1);
        while (tape_group_claim(kc, kt, T0, &d, &e) == 1)
            ;
        (void)!write(ready[1], "x", 1);
        pause();
        _exit(0);
    }
    char x;
    CHECK(read(ready[0], &x, 1) == 1);
    CHECK_OK(th_open("q", "daily", "raw", &q));
    CHECK_OK(tape_group_open(q, "g", -1, NULL, 0, &g));
    tape_consumer *c;
    tape_tailer *t;
    CHECK_OK(tape_consumer_open(g, NULL, &c));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_delivery d;
    tape_entry e;
    EXPECT_EQ(tape_group_claim(c, t, T0 + 1, &d, &e), 0);
    tape_group_info gi;
    CHECK_OK(tape_group_info_get(g, T0, &gi));
    EXPECT_EQ(gi.gi_in_flight, 10);
    EXPECT_EQ(gi.gi_consumers, 2);
    EXPECT(tape_group_wait_hint(c, t, T0 + 2) == TAPE_GROUP_CHECK_NS);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    /* the next look for dead consumers (at most TAPE_GROUP_CHECK_NS on) */
    int n = 0;
    while (tape_group_claim(c, t, T0 + 2 * TAPE_GROUP_CHECK_NS, &d, &e) == 1) {
        EXPECT_EQ(value_of(&e), n);
        EXPECT_EQ(d.d_attempt, 2);
        n++;
    }
    EXPECT_EQ(n, 10);
    close(ready[0]);
    close(ready[1]);
    tape_consumer_close(c);
    tape_tailer_close(t);
    tape_group_close(g);
    th_close_all(q, NULL, NULL);
}

static void bad_names_and_settings_are_refused(void)
{
    tape_queue *q;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_group *g;
    tape_group_settings s = settings(0, 5);
    EXPECT_EQ(tape_group_open(q, "", -1, NULL, 0, &g), TAPE_EINVAL);
    EXPECT_EQ(tape_group_open(q, "a/b", -1, NULL, 0, &g), TAPE_EINVAL);
    EXPECT_EQ(tape_group_open(q, ".x", -1, NULL, 0, &g), TAPE_EINVAL);
    EXPECT_EQ(tape_group_open(q, "g", -4, NULL, 0, &g), TAPE_EINVAL);
    EXPECT_EQ(tape_group_open(q, "g", -1, &s, 0, &g), TAPE_EINVAL);
    s = settings(NS, 0);
    EXPECT_EQ(tape_group_open(q, "g", -1, &s, 0, &g), TAPE_EINVAL);
    th_close_all(q, NULL, NULL);
}

static void a_damaged_group_file_is_reported(void)
{
    tape_queue *q;
    CHECK_OK(th_open("q", "daily", "raw", &q));
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, NULL, 0, &g));
    tape_group_close(g);
    char path[4096];
    snprintf(path, sizeof path, "%s/groups/g.group", th_path("q"));
    CHECK(th_pwrite_byte(path, 9, 0x55) == 0); /* the header's version */
    EXPECT_EQ(tape_group_open(q, "g", -1, NULL, 0, &g), TAPE_EVERSION);
    CHECK(th_pwrite_byte(path, 9, 0) == 0);
    off_t later_state = TAPE_GROUP_LATER_OFF + 5 * 32 + 28; /* later slot 5's state */
    CHECK(th_pwrite_byte(path, later_state, 2) == 0);
    EXPECT_EQ(tape_group_open(q, "g", -1, NULL, 0, &g), TAPE_ECORRUPT);
    CHECK(th_pwrite_byte(path, later_state, 0) == 0);
    off_t move = 4096 + offsetof(tape_group_shared, gs_move); /* the move under way */
    CHECK(th_pwrite_byte(path, move, 3) == 0);
    EXPECT_EQ(tape_group_open(q, "g", -1, NULL, 0, &g), TAPE_ECORRUPT);
    CHECK(th_pwrite_byte(path, move, 0) == 0);
    CHECK(truncate(path, TAPE_GROUP_SIZE_V2) == 0); /* version 3 without its later list */
    EXPECT_EQ(tape_group_open(q, "g", -1, NULL, 0, &g), TAPE_ECORRUPT);
    CHECK(truncate(path, TAPE_GROUP_SIZE) == 0);
    CHECK_OK(tape_group_open(q, "g", -1, NULL, 0, &g));
    tape_group_close(g);
    CHECK(th_pwrite_byte(path, 4096 + 16, 0x77) == 0); /* the settings */
    EXPECT_EQ(tape_group_open(q, "g", -1, NULL, 0, &g), TAPE_ECORRUPT);
    CHECK(truncate(path, 5000) == 0);
    EXPECT_EQ(tape_group_open(q, "g", -1, NULL, 0, &g), TAPE_ECORRUPT);
    th_close_all(q, NULL, NULL);
}

static void the_table_bounds_what_is_in_flight(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    fill(a, TAPE_GROUP_SLOTS + 1);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, NULL, 0, &g));
    tape_consumer *c;
    tape_tailer *t;
    CHECK_OK(tape_consumer_open(g, NULL, &c));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_delivery d, first = {0};
    tape_entry e;
    int n = 0;
    while (tape_group_claim(c, t, T0, &d, &e) == 1) {
        if (n == 0)
            first = d;
        n++;
    }
    EXPECT_EQ(n, TAPE_GROUP_SLOTS);
    CHECK_OK(tape_group_ack(c, first.d_slot, first.d_gen, T0));
    CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
    EXPECT_EQ(value_of(&e), TAPE_GROUP_SLOTS);
    tape_consumer_close(c);
    tape_tailer_close(t);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

static void claim_many_copies_a_batch_under_one_lock(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    fill(a, 10);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, NULL, 0, &g));
    tape_consumer *c;
    tape_tailer *t;
    CHECK_OK(tape_consumer_open(g, NULL, &c));
    CHECK_OK(tape_tailer_open(q, &t));
    int64_t out[8 * TAPE_CLAIM_FIELDS];
    char buf[64];
    /* 3 bytes of room: the first entry is too large */
    EXPECT_EQ(tape_group_claim_many(c, t, T0, 8, out, buf, 3), TAPE_EINVAL);
    EXPECT_EQ(out[TAPE_CLAIM_END], (int64_t)sizeof(int));
    CHECK_EQ(tape_group_claim_many(c, t, T0, 8, out, buf, 4 * sizeof(int)), 4);
    for (int k = 0; k < 4; k++) {
        int v;
        memcpy(&v, buf + k * sizeof(int), sizeof v);
        EXPECT_EQ(v, k);
        EXPECT_EQ(out[k * TAPE_CLAIM_FIELDS + TAPE_CLAIM_END], (int64_t)((k + 1) * sizeof(int)));
        EXPECT_EQ(out[k * TAPE_CLAIM_FIELDS + TAPE_CLAIM_ATTEMPT], 1);
        EXPECT_EQ(out[k * TAPE_CLAIM_FIELDS + TAPE_CLAIM_DL], -1);
    }
    int64_t *second = out + TAPE_CLAIM_FIELDS;
    CHECK_OK(tape_group_nack(c, (uint32_t)second[TAPE_CLAIM_SLOT], (uint64_t)second[TAPE_CLAIM_GEN], T0, 0));
    CHECK_EQ(tape_group_claim_many(c, t, T0, 8, out, buf, sizeof buf), 7);
    int first;
    memcpy(&first, buf, sizeof first);
    EXPECT_EQ(first, 1); /* the redelivery first */
    EXPECT_EQ(out[TAPE_CLAIM_ATTEMPT], 2);
    EXPECT_EQ(tape_group_claim_many(c, t, T0, 8, out, buf, sizeof buf), 0);
    tape_consumer_close(c);
    tape_tailer_close(t);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

/* Far delays saturate (a deadline past 2262 is never), a fork child's close of
 * an inherited consumer changes nothing, and an existing-only open of a missing
 * group is -ENOENT. */
static void far_delays_fork_and_existing_only(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    fill(a, 2);
    tape_group *g;
    EXPECT_EQ(tape_group_open(q, "none", -3, NULL, 0, &g), -ENOENT);
    tape_group_settings s = settings(INT64_MAX, 5);
    CHECK_OK(tape_group_open(q, "g", -1, &s, 0, &g));
    tape_consumer *c, *c2;
    tape_tailer *t, *t2;
    CHECK_OK(tape_consumer_open(g, "w", &c));
    CHECK_OK(tape_consumer_open(g, "w2", &c2));
    CHECK_OK(tape_tailer_open(q, &t));
    CHECK_OK(tape_tailer_open(q, &t2));
    tape_delivery d, d2;
    tape_entry e;
    CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
    EXPECT_EQ(d.d_due, INT64_MAX);
    CHECK_OK(tape_group_extend(c, d.d_slot, d.d_gen, T0, INT64_MAX));
    CHECK_EQ(tape_group_claim(c2, t2, T0 + NS, &d2, &e), 1);
    EXPECT_EQ(value_of(&e), 1);
    CHECK_OK(tape_group_nack(c2, d2.d_slot, d2.d_gen, T0 + NS, INT64_MAX - 1));
    EXPECT_EQ(tape_group_claim(c2, t2, T0 + 2 * NS, &d2, &e), 0);
    pid_t pid = fork();
    if (pid == 0) {
        tape_consumer_close(c); /* not its own: only its copy goes */
        _exit(0);
    }
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(tape_group_claim(c2, t2, T0 + 3 * NS, &d2, &e), 0); /* still c's */
    CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0 + 3 * NS));
    tape_consumer_close(c);
    tape_consumer_close(c2);
    tape_tailer_close(t);
    tape_tailer_close(t2);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

/* A file of version 1 (before the deferred range and the later list, whose
 * fields it holds as zeros, and shorter) opens and is used as it is; its
 * first entry nacked for later makes it version 3, grown to hold the list. */
static void a_version_1_file_opens(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    fill(a, 3);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, NULL, 0, &g));
    tape_group_close(g);
    char path[4096];
    snprintf(path, sizeof path, "%s/groups/g.group", th_path("q"));
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    tape_group_hdr h;
    CHECK(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    EXPECT_EQ(h.gh_version, TAPE_GROUP_VERSION);
    h.gh_version = 1;
    h.gh_size = TAPE_GROUP_SIZE_V2;
    h.gh_crc = tape_crc32c(0, &h, offsetof(tape_group_hdr, gh_crc));
    CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    CHECK(ftruncate(fd, TAPE_GROUP_SIZE_V2) == 0);
    CHECK_OK(tape_group_open(q, "g", -1, NULL, 0, &g));
    tape_consumer *c;
    tape_tailer *t;
    CHECK_OK(tape_consumer_open(g, NULL, &c));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_delivery d;
    tape_entry e;
    CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
    CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0));
    CHECK(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    EXPECT_EQ(h.gh_version, 1);
    CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
    CHECK_OK(tape_group_nack(c, d.d_slot, d.d_gen, T0, NS));
    CHECK(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    EXPECT_EQ(h.gh_version, TAPE_GROUP_VERSION);
    EXPECT_EQ(h.gh_size, TAPE_GROUP_SIZE);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    EXPECT_EQ(st.st_size, (off_t)TAPE_GROUP_SIZE);
    close(fd);
    tape_group_info gi;
    CHECK_OK(tape_group_info_get(g, T0, &gi));
    EXPECT_EQ(gi.gi_later, 1);
    EXPECT_EQ(gi.gi_waiting, 0);
    int64_t index = d.d_index;
    CHECK_EQ(tape_group_claim(c, t, T0 + NS - 1, &d, &e), 1); /* the third: the nacked one is not due */
    EXPECT(d.d_index > index);
    CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0 + NS - 1));
    CHECK_EQ(tape_group_claim(c, t, T0 + NS, &d, &e), 1);
    EXPECT_EQ(d.d_index, index);
    EXPECT_EQ(d.d_attempt, 2);
    CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0 + NS));
    tape_consumer_close(c);
    tape_tailer_close(t);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

/* Entries nacked for later leave the table: past TAPE_GROUP_SLOTS of them a
 * new entry is still claimed; the later list full, a nack for later is
 * refused and changes nothing (the claim is still held); when due they come
 * back in order, with their deliveries counted. */
static void nacked_for_later_leave_the_table_up_to_a_bound(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    int n = TAPE_GROUP_LATER + 1;
    fill(a, n);
    tape_group_settings s = settings(30 * NS, 5);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, &s, 0, &g));
    tape_consumer *c;
    tape_tailer *t;
    CHECK_OK(tape_consumer_open(g, NULL, &c));
    CHECK_OK(tape_tailer_open(q, &t));
    tape_delivery d;
    tape_entry e;
    for (int i = 0; i < n - 1; i++) {
        CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
        EXPECT_EQ(value_of(&e), i);
        CHECK_OK(tape_group_nack(c, d.d_slot, d.d_gen, T0, 3600 * NS - i));
    }
    tape_group_info gi;
    CHECK_OK(tape_group_info_get(g, T0, &gi));
    EXPECT_EQ(gi.gi_later, TAPE_GROUP_LATER);
    EXPECT_EQ(gi.gi_waiting + gi.gi_in_flight, 0);
    EXPECT_EQ(gi.gi_floor, d.d_index - (n - 2));
    CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1); /* the last: nothing holds it back */
    EXPECT_EQ(value_of(&e), n - 1);
    EXPECT_EQ(tape_group_nack(c, d.d_slot, d.d_gen, T0, NS), TAPE_ELIMIT);
    CHECK_OK(tape_group_extend(c, d.d_slot, d.d_gen, T0, NS)); /* still held */
    CHECK_OK(tape_group_nack(c, d.d_slot, d.d_gen, T0, 0)); /* at once: stays in the table */
    CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
    EXPECT_EQ(value_of(&e), n - 1);
    EXPECT_EQ(d.d_attempt, 2);
    CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0));
    EXPECT_EQ(tape_group_claim(c, t, T0 + 3600 * NS - n, &d, &e), 0);
    EXPECT(tape_group_wait_hint(c, t, T0) <= 3600 * NS - (n - 2));
    /* Due: the last nacked first (its delay was the shortest), then in order
     * of index as they come due together. */
    CHECK_EQ(tape_group_claim(c, t, T0 + 3600 * NS - (n - 2), &d, &e), 1);
    EXPECT_EQ(value_of(&e), n - 2);
    EXPECT_EQ(d.d_attempt, 2);
    CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0 + 3600 * NS));
    for (int i = 0; i < n - 2; i++) {
        CHECK_EQ(tape_group_claim(c, t, T0 + 3600 * NS, &d, &e), 1);
        EXPECT_EQ(value_of(&e), i);
        EXPECT_EQ(d.d_attempt, 2);
        CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0 + 3600 * NS));
    }
    EXPECT_EQ(tape_group_claim(c, t, T0 + 3600 * NS, &d, &e), 0);
    CHECK_OK(tape_group_info_get(g, T0, &gi));
    EXPECT_EQ(gi.gi_later + gi.gi_waiting + gi.gi_in_flight, 0);
    EXPECT_EQ(gi.gi_acked, (uint64_t)n);
    tape_consumer_close(c);
    tape_tailer_close(t);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

/* More entries nacked for later come due than the table has room for: the
 * oldest come back first, whatever their order in the later list. */
static void due_later_entries_come_back_oldest_first(void)
{
    tape_queue *q;
    tape_appender *a;
    CHECK_OK(th_open_writer("q", "daily", "raw", &q, &a));
    /* held: a table 7/8 full less 100 (where group.c's PASS_ROOM has a look) */
    enum { N = 700, HOLD = TAPE_GROUP_SLOTS - TAPE_GROUP_SLOTS / 8 - 100 };
    fill(a, N);
    tape_group_settings s = settings(3600 * NS, 5);
    tape_group *g;
    CHECK_OK(tape_group_open(q, "g", -1, &s, 0, &g));
    tape_consumer *c;
    tape_tailer *t;
    CHECK_OK(tape_consumer_open(g, NULL, &c));
    CHECK_OK(tape_tailer_open(q, &t));
    static tape_delivery ds[N];
    tape_entry e;
    for (int i = 0; i < N; i++)
        CHECK_EQ(tape_group_claim(c, t, T0, &ds[i], &e), 1);
    for (int i = N - 1; i >= 0; i--) /* the newest first into the later list */
        CHECK_OK(tape_group_nack(c, ds[i].d_slot, ds[i].d_gen, T0, NS));
    fill(a, HOLD);
    tape_delivery d;
    for (int i = 0; i < HOLD; i++)
        CHECK_EQ(tape_group_claim(c, t, T0, &d, &e), 1);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(tape_group_claim(c, t, T0 + NS, &d, &e), 1);
        EXPECT_EQ(d.d_index, ds[i].d_index);
        EXPECT_EQ(d.d_attempt, 2);
        CHECK_OK(tape_group_ack(c, d.d_slot, d.d_gen, T0 + NS));
    }
    tape_group_info gi;
    CHECK_OK(tape_group_info_get(g, T0 + NS, &gi));
    EXPECT_EQ(gi.gi_later, 0);
    EXPECT_EQ(gi.gi_in_flight, HOLD);
    tape_consumer_close(c);
    tape_tailer_close(t);
    tape_group_close(g);
    th_close_all(q, a, NULL);
}

static const th_test tests[] = {
    TEST(due_later_entries_come_back_oldest_first),
    TEST(nacked_for_later_leave_the_table_up_to_a_bound),
    TEST(a_version_1_file_opens),
    TEST(far_delays_fork_and_existing_only),
    TEST(claim_many_copies_a_batch_under_one_lock),
    TEST(claims_in_order_and_acks_fence),
    TEST(lapse_redelivers_and_max_deliveries_kill),
    TEST(a_killed_consumers_claims_come_back),
    TEST(bad_names_and_settings_are_refused),
    TEST(a_damaged_group_file_is_reported),
    TEST(the_table_bounds_what_is_in_flight),
};

TEST_MAIN(tests)
