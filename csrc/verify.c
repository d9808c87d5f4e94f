/* verify.c - walking every cycle file and checking all of it: what `tape
 * verify` reports. Reading stops at damage; this finds and describes it, and
 * in salvage mode counts what is still intact beyond it, resuming at the next
 * indexed entry (whose seq the index gives, so its CRC can be checked). */
#include "tape_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often a walk reports its progress. */
#define PROGRESS_EVERY ((uint64_t)16 << 20)

typedef struct vctx {
    tape_queue *vc_q;
    tape_verify_report *vc_r;
    int vc_salvage;
    int vc_prefix;           /* still in the gap-free prefix */
    int64_t vc_prev_ts;
    tape_progress_fn vc_progress;
    void *vc_arg;
    uint64_t vc_walked;      /* bytes walked in the cycles before this one */
    int vc_stopped;          /* vc_progress asked to stop */
    int vc_newest_end;       /* the newest cycle was walked to its end of data */
    uint64_t vc_newest_seq;  /* ... holding this many entries */
    int vc_newest_nc;        /* ... followed by an unfinished entry */
    uint64_t vc_newest_size; /* ... in a file this long */
    int vc_err;              /* a page of a cycle faulted (SIGBUS): the error */
} vctx;

/* Report `p` (an offset in cycle y) as reached, if anyone asks; false when
 * the one asking wants the walk to stop. */
static bool progress(vctx *c, const tape_cyc *y, uint64_t p)
{
    if (c->vc_progress && c->vc_progress(c->vc_arg, c->vc_walked + (p - y->y_data_off)) != 0)
        c->vc_stopped = 1;
    return !c->vc_stopped;
}

__attribute__((format(printf, 4, 5)))
static void problem(vctx *c, int64_t cycle, uint64_t off, const char *fmt, ...)
{
    tape_verify_report *r = c->vc_r;
    c->vc_prefix = 0;
    if (r->vr_problems++ == 0) {
        r->vr_bad_cycle = cycle;
        r->vr_bad_offset = off;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->vr_message, sizeof r->vr_message, fmt, ap);
        va_end(ap);
    }
}

/* After the end of data at p (header word h there): only zeros may follow,
 * unless a writer has appended meanwhile. */
static void check_tail(vctx *c, tape_cyc *y, uint64_t p, uint32_t h)
{
    uint64_t bad = tape_cyc_dirty_after(y, p, h);
    if (bad && tape_load_hdr(&y->y_v, p) == h)
        problem(c, y->y_cycle, bad, "cycle %lld: non-zero bytes after the end of data, at offset %llu",
                (long long)y->y_cycle, (unsigned long long)bad);
}

/* After the end of data at p (seq entries before it): no index slot may
 * name a place for an entry at or past it (a writer would append where the
 * slot says, and readers going forward would not get there), unless a writer
 * has appended meanwhile. */
static void check_slots(vctx *c, tape_cyc *y, uint64_t p, uint64_t seq, uint32_t h)
{
    uint64_t bad = 0;
    int rc = tape_cyc_stray_slot(c->vc_q, y, p, seq, &bad);
    if (rc == 0 || tape_load_hdr(&y->y_v, p) != h)
        return;
    if (rc > 0)
        problem(c, y->y_cycle, p,
                "cycle %lld: an index slot past the end of data (seq %llu), at offset %llu",
                (long long)y->y_cycle, (unsigned long long)bad, (unsigned long long)p);
    else
        problem(c, y->y_cycle, p, "cycle %lld: a damaged index array after the end of data",
                (long long)y->y_cycle);
}

/* The timestamp of the data entry e (timestamp word `word`, len bytes
 * after it), checking its attribute block if it has one: *why says when the
 * block does not parse (FORMAT.md "Attributes"). */
static int64_t checked_ts(const uint8_t *e, int64_t word, uint32_t len, const char **why)
{
    tape_attrs a;
    if (word < 0 && tape_attrs_decode(e + TAPE_ENTRY_HDR, len, &a) < 0)
        *why = "an entry whose attribute block does not parse";
    return tape_entry_ts(word);
}

static void verify_cycle(vctx *c, int64_t cycle, int newest)
{
    tape_queue *q = c->vc_q;
    tape_verify_report *r = c->vc_r;
    tape_cyc y;
    int rc = tape_cyc_open(q, cycle, 0, &y);
    if (rc == -ENOENT)
        return; /* removed meanwhile */
    if (rc < 0) {
        problem(c, cycle, 0, "cycle %lld: unreadable file header (%s)", (long long)cycle,
                tape_strerror(rc));
        return;
    }
    r->vr_cycles++;
    const int slog = q->q_roll.r_spacing_log2;
    uint64_t p = y.y_data_off, seq = 0, report_at = p + PROGRESS_EVERY;
    for (;;) {
        const char *why = NULL;
        if (p >= report_at) {
            if (!progress(c, &y, p))
                break;
            report_at = p + PROGRESS_EVERY;
        }
        rc = tape_view_cover(&y.y_v, p + 4);
        if (rc != 0) {
            why = "the file ends inside the data";
            goto bad;
        }
        uint32_t h = tape_load_hdr(&y.y_v, p);
        if (h == 0 || (h & TAPE_H_NC)) {
            if (h != TAPE_H_EOF && !newest)
                r->vr_unsealed++;
            if (h != TAPE_H_EOF && (h & TAPE_H_NC))
                r->vr_abandoned++;
            check_tail(c, &y, p, h);
            check_slots(c, &y, p, seq, h);
            if (newest && c->vc_prefix) {
                c->vc_newest_end = 1;
                c->vc_newest_seq = seq;
                c->vc_newest_nc = h != TAPE_H_EOF && (h & TAPE_H_NC);
                tape_view_cover(&y.y_v, UINT64_MAX);
                c->vc_newest_size = y.y_v.v_size;
            }
            break;
        }
        if ((h & TAPE_H_LEN) < TAPE_L_EXTRA) {
            why = "an entry header with an impossible length";
            goto bad;
        }
        uint32_t len = (h & TAPE_H_LEN) - TAPE_L_EXTRA;
        uint64_t sz = tape_entry_size(len);
        if (tape_view_cover(&y.y_v, p + sz) != 0) {
            why = "an entry that runs past the end of the file";
            goto bad;
        }
        const uint8_t *e = y.y_v.v_base + p;
        uint32_t crc;
        int64_t ts;
        memcpy(&crc, e + 4, 4);
        memcpy(&ts, e + 8, 8);
        if (h & TAPE_H_META) {
            /* Index arrays are checked through the slots of the entries they
             * index; one left unreferenced by a writer that died is harmless. */
            if (crc != tape_crc_meta(y.y_seed, h, (uint64_t)ts))
                why = "a metadata entry with a bad checksum";
            else if (((uint64_t)ts >> 56) != 1)
                why = "a metadata entry of an unknown kind";
            if (why)
                goto bad;
            p += sz;
            continue;
        }
        if (crc != tape_crc_data(y.y_seed, h, seq, ts, e + TAPE_ENTRY_HDR, len)) {
            why = "an entry whose checksum does not match";
            goto bad;
        }
        for (uint64_t k = TAPE_ENTRY_HDR + len; k < sz && !why; k++)
            if (e[k])
                why = "an entry whose padding is not zero";
        ts = checked_ts(e, ts, len, &why);
        if (why)
            goto bad;
        if ((seq & (((uint64_t)1 << slog) - 1)) == 0 && tape_cyc_block_pos(q, &y, seq >> slog) != p) {
            why = "an index slot that does not point at its entry";
            goto bad;
        }
        if (ts < c->vc_prev_ts)
            problem(c, cycle, p, "cycle %lld: timestamp goes back at offset %llu", (long long)cycle,
                    (unsigned long long)p);
        c->vc_prev_ts = ts;
        r->vr_entries++;
        r->vr_bytes += sz;
        if (c->vc_prefix)
            r->vr_last_good = tape_make_index(q, cycle, (int64_t)seq);
        seq++;
        p += sz;
        continue;
    bad:
        problem(c, cycle, p, "cycle %lld: %s, at offset %llu (seq %llu)", (long long)cycle, why,
                (unsigned long long)p, (unsigned long long)seq);
        if (!c->vc_salvage)
            break;
        /* Resume at the next indexed entry, if the index knows one. */
        uint64_t b = (seq >> slog) + 1, np = tape_cyc_block_pos(q, &y, b);
        if (!np || np <= p)
            break;
        r->vr_skipped += (b << slog) - seq;
        seq = b << slog;
        p = np;
    }
    if (!c->vc_stopped)
        progress(c, &y, p);
    c->vc_walked += p - y.y_data_off;
    /* A page that faulted read as zeros: what the walk found of this cycle
     * is not to be believed, nor the report. */
    if (tape_view_hit(&y.y_v) && !c->vc_err)
        c->vc_err = tape_view_damage(&y.y_v);
    tape_cyc_close(&y);
}

/* tape.meta's hints against the files: the newest cycle it names has a file,
 * and its newest timestamp is not ahead of both the newest entry (or, when
 * the newest cycle holds none, of that cycle's end) and the clock. A writer
 * would otherwise hand out indexes of the missing file again, or append to a
 * cycle of the far future. */
static void check_meta(vctx *c, int64_t highest, int64_t last_file, int64_t newest_ts,
                       const uint64_t hint[3])
{
    const tape_roll *rl = &c->vc_q->q_roll;
    if (highest > last_file)
        problem(c, highest, 0,
                "tape.meta: the newest cycle is %lld, but its file is missing (newest file: %lld)",
                (long long)highest, (long long)last_file);
    if (!c->vc_newest_end)
        return; /* no file, or damage already reported */
    /* An unfinished entry at the end that a complete writer's hint counts
     * as published: damage, not a dead writer's (writers refuse it). */
    if (c->vc_newest_nc && (int64_t)hint[0] == last_file && hint[1] > c->vc_newest_seq)
        problem(c, last_file, 0,
                "cycle %lld: an unfinished entry at seq %llu, which tape.meta's hint counts as published",
                (long long)last_file, (unsigned long long)c->vc_newest_seq);
    /* ... or whose end lies past the end of the file: it was cut. */
    if ((int64_t)hint[0] == last_file && hint[1] > c->vc_newest_seq && hint[2] > c->vc_newest_size)
        problem(c, last_file, 0,
                "cycle %lld: the file ends at %llu, before the end of data tape.meta's hint names (%llu): it was cut",
                (long long)last_file, (unsigned long long)c->vc_newest_size, (unsigned long long)hint[2]);
    int64_t bound = c->vc_prev_ts;
    if (c->vc_newest_seq == 0) {
        int64_t end_ms = (last_file + 1) * rl->r_length_ms + rl->r_epoch_ms;
        bound = last_file < (INT64_MAX / 1000000 - rl->r_epoch_ms) / rl->r_length_ms - 1
                    ? end_ms * 1000000 - 1 : INT64_MAX;
    }
    /* Ahead of the data but not of the clock is harmless: a power cut after
     * the flusher synced tape.meta but not the entries leaves it so, and the
     * next writer brings it back (check_newest_ts, append.c). */
    if (newest_ts > bound && newest_ts > tape_now_ns())
        problem(c, last_file, 0,
                "tape.meta: the newest timestamp (%lld ns) is ahead of the newest entry's (%lld ns)",
                (long long)newest_ts, (long long)bound);
}

int tape_verify(tape_queue *q, int flags, tape_verify_report *r)
{
    return tape_verify_progress(q, flags, r, NULL, NULL);
}

int tape_verify_progress(tape_queue *q, int flags, tape_verify_report *r, tape_progress_fn fn,
                         void *arg)
{
    memset(r, 0, sizeof *r);
    r->vr_last_good = -1;
    r->vr_bad_cycle = -1;
    /* Read before the files: what a writer adds meanwhile only raises what
     * the walk finds. */
    int64_t highest = __atomic_load_n(&q->q_sh->ms_highest, __ATOMIC_ACQUIRE);
    int64_t newest_ts = __atomic_load_n(&q->q_sh->ms_last_ts, __ATOMIC_ACQUIRE);
    uint64_t hint[3] = {UINT64_MAX, 0, 0}; /* cycle, seq and offset, when complete */
    uint64_t g = __atomic_load_n(&q->q_sh->ms_hint_gen, __ATOMIC_ACQUIRE);
    if (!(g & 1)) {
        hint[0] = (uint64_t)__atomic_load_n(&q->q_sh->ms_hint_cycle, __ATOMIC_RELAXED);
        hint[1] = __atomic_load_n(&q->q_sh->ms_hint_seq, __ATOMIC_RELAXED);
        hint[2] = __atomic_load_n(&q->q_sh->ms_hint_pos, __ATOMIC_RELAXED);
        if (__atomic_load_n(&q->q_sh->ms_hint_gen, __ATOMIC_ACQUIRE) != g)
            hint[0] = UINT64_MAX;
    }
    int64_t *v;
    size_t n;
    int rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0)
        return rc;
    vctx c = {q, r, flags & TAPE_VERIFY_SALVAGE, 1, INT64_MIN, fn, arg, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < n && !c.vc_stopped && !c.vc_err; i++)
        verify_cycle(&c, v[i], i == n - 1);
    int64_t last_file = n ? v[n - 1] : -1;
    free(v);
    if (c.vc_err)
        return c.vc_err;
    if (c.vc_stopped)
        return -ECANCELED;
    check_meta(&c, highest, last_file, newest_ts, hint);
    return tape_meta_guarded(q, r->vr_problems ? 1 : 0);
}
