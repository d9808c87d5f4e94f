/* read.c - tailers: reading forward and backward, moving by index and time,
 * and sleeping until a writer publishes (docs/FORMAT.md, "Entries",
 * "Rolling").
 *
 * Reading is split into peek (find the next entry, crossing cycles as needed,
 * and check it) and advance (step past it), so a batch read can stop before
 * an entry that does not fit without losing its place. */
#include "tape_int.h"
#include "fault.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A tailer counts what it maps: the bytes it reads through its mapping, and
 * for each place it starts reading at or moves to through the mapping, the
 * 16 pages that the kernel's fault-around maps. Past RELEASE_AFTER it
 * releases all of it but the index arrays, which moves read: resident memory
 * stays bounded whatever the tailer reads, in order or not. */
#define RELEASE_AFTER ((uint64_t)32 << 20)
#define FAULT_AROUND ((uint64_t)64 << 10)

/* A move to an index far from what the tailer has been reading would fault
 * in a page of the mapping (3-4 us on a virtual machine) and leave it mapped.
 * Instead the block is read with pread (about 1 us plus the copy) into the
 * jump buffer, which then serves the reads that usually follow. Only bytes
 * before the next indexed entry are read this way: the writer stores that
 * entry's index slot after publishing every entry before it, so the copy
 * cannot be torn. Published entries change only when tape_repair_tail clears
 * them (a move can land past damage); it then bumps the modification counter,
 * and the buffer is dropped. */
#define JUMP_BUF 16384

/* Where a tailer stands, enough to put it back there: a peeked batch
 * (tape_peek_many) records one per entry so that tape_tailer_advance moves
 * without reading again. */
typedef struct tape_mark {
    int64_t mk_cycle;
    int64_t mk_seq;
    uint64_t mk_pos;
    int mk_pos_ok;
    int64_t mk_last;        /* t_last there */
} tape_mark;

#define NO_BATCH SIZE_MAX

struct tape_tailer {
    tape_queue *t_q;
    tape_cyc t_y;           /* current cycle; y_cycle -1: none chosen yet */
    int64_t t_seq;          /* forward: next seq; backward: seq to read, -1 none */
    uint64_t t_pos;         /* offset of entry t_seq, when t_pos_ok */
    int t_pos_ok;
    int t_dir;
    int64_t t_last;         /* index of the last entry read, -1 */
    uint64_t t_cur_sz;      /* size of the peeked entry */
    int t_cur_attrs;        /* it has attributes (its e_attrs are set) */
    uint64_t t_mapped;      /* bytes counted as mapped since the last release, */
    uint64_t t_map_lo;      /* all within [t_map_lo, t_map_hi) */
    uint64_t t_map_hi;
    uint64_t t_bk_block;    /* backward: block whose entry offsets are cached, */
    uint64_t t_bk_mod;      /* at this ms_modcount */
    uint32_t t_bk_n;
    uint64_t *t_bk_pos;
    uint8_t *t_jb;          /* jump buffer (JUMP_BUF bytes), or NULL */
    uint8_t *t_cp;          /* what tape_read hands out: a copy (t_cp_cap bytes) */
    size_t t_cp_cap;
    uint64_t t_jb_off;      /* it holds bytes [t_jb_off, +t_jb_len) of t_y's file */
    uint64_t t_jb_len;
    uint64_t t_jb_mod;      /* ms_modcount when it was filled */
    uint64_t t_hot_lo;      /* read through the mapping since the last far move */
    uint64_t t_hot_hi;      /* or release: [t_hot_lo, t_hot_hi), empty if lo >= hi */
    tape_named_slot *t_slot; /* a named tailer's stored position, or NULL */
    int64_t t_spin_ns;      /* tape_wait spins this long first; < 0: only spins */
    int64_t t_poll_ns;      /* tape_wait without wake-ups: the next sleep */
    /* the pending batch of tape_peek_many: t_pk[k] is where the tailer stands
     * after its first k entries (k <= t_pk_n) */
    size_t t_pk_n;          /* its entries; NO_BATCH: none pending */
    tape_mark *t_pk;        /* grown on demand, t_pk_cap marks */
    size_t t_pk_cap;
    int64_t t_pk_stored;    /* the named slot's position when it was peeked */
    int t_pk_moved;         /* an advance stored a position since */
    int t_pk_keep;          /* peeking: keep the batch's first cycle open */
    tape_cyc t_pk_y;        /* another cycle of the batch, kept open (or none) */
};

int tape_tailer_open(tape_queue *q, tape_tailer **out)
{
    tape_tailer *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->t_bk_pos = malloc(sizeof(uint64_t) << q->q_roll.r_spacing_log2);
    if (!t->t_bk_pos) {
        free(t);
        return -ENOMEM;
    }
    t->t_q = q;
    tape_cyc_init(&t->t_y);
    t->t_last = -1;
    t->t_bk_block = UINT64_MAX;
    t->t_pk_n = NO_BATCH;
    tape_cyc_init(&t->t_pk_y);
    *out = t;
    return 0;
}

/* A named tailer stores the index of the next entry to read. */
static void store_next(tape_tailer *t, int64_t next)
{
    if (t->t_slot)
        __atomic_store_n(&t->t_slot->n_next, next, __ATOMIC_RELEASE);
}

/* After a move: store where the next read starts. */
static void store_pos(tape_tailer *t)
{
    if (t->t_slot && t->t_y.y_cycle >= 0 && t->t_seq >= 0)
        store_next(t, (t->t_y.y_cycle << t->t_q->q_roll.r_seq_bits) | t->t_seq);
}

void tape_tailer_close(tape_tailer *t)
{
    if (!t)
        return;
    tape_cyc_close(&t->t_y);
    tape_cyc_close(&t->t_pk_y);
    free(t->t_bk_pos);
    free(t->t_jb);
    free(t->t_cp);
    free(t->t_pk);
    free(t);
}

/* ---- what the mapping holds -------------------------------------------- */

/* `bytes` around [lo, hi) of the file count as mapped. */
static void note_mapped(tape_tailer *t, uint64_t lo, uint64_t hi, uint64_t bytes)
{
    if (t->t_map_lo >= t->t_map_hi) {
        t->t_map_lo = lo;
        t->t_map_hi = hi;
    }
    if (lo < t->t_map_lo)
        t->t_map_lo = lo;
    if (hi > t->t_map_hi)
        t->t_map_hi = hi;
    t->t_mapped += bytes;
}

/* Bytes [lo, hi) were read through the mapping: they join the hot range if
 * they touch it, else start a new one; either way they count as mapped. */
static void note_hot(tape_tailer *t, uint64_t lo, uint64_t hi)
{
    if (t->t_hot_lo >= t->t_hot_hi || hi < t->t_hot_lo || lo > t->t_hot_hi) {
        t->t_hot_lo = lo;
        t->t_hot_hi = hi;
        note_mapped(t, lo, hi, FAULT_AROUND + (hi - lo));
        return;
    }
    if (lo < t->t_hot_lo) {
        note_mapped(t, lo, t->t_hot_lo, t->t_hot_lo - lo);
        t->t_hot_lo = lo;
    }
    if (hi > t->t_hot_hi) {
        note_mapped(t, t->t_hot_hi, hi, hi - t->t_hot_hi);
        t->t_hot_hi = hi;
    }
}

/* A walk through the mapping from the indexed entry of seq's block to `pos`
 * counts as mapping the bytes between; when it read headers only, at most 16
 * pages per entry on the way. */
static void note_walk(tape_tailer *t, uint64_t seq, uint64_t pos, int headers_only)
{
    const int slog = t->t_q->q_roll.r_spacing_log2;
    uint64_t from = tape_cyc_block_pos(t->t_q, &t->t_y, seq >> slog);
    if (!from || from > pos)
        from = pos;
    uint64_t span = pos - from, per_entry = ((seq & ((1u << slog) - 1)) + 1) * FAULT_AROUND;
    if (headers_only && span > per_entry)
        span = per_entry;
    note_mapped(t, from, pos + 1, FAULT_AROUND + span);
}

/* The same for finding the end of data (every entry of the last block read,
 * its checksum checked) at `end`, after `count` entries. */
static void note_end_walk(tape_tailer *t, uint64_t count, uint64_t end)
{
    note_walk(t, count ? count - 1 : 0, end, 0);
}

/* Release the pages of the tailer's mapping in the span it counted as
 * mapped (widened by the fault-around), all but the index arrays. */
static void release_pages(tape_tailer *t)
{
    tape_view *v = &t->t_y.y_v;
    const uint64_t page = TAPE_PAGE, n = (uint64_t)1 << t->t_q->q_roll.r_count_log2;
    const uint64_t arr_sz = tape_entry_size((uint32_t)(8 * n));
    uint64_t lo = t->t_map_lo > FAULT_AROUND ? t->t_map_lo - FAULT_AROUND : 0;
    uint64_t end = (t->t_map_hi + FAULT_AROUND + page - 1) & ~(page - 1);
    t->t_mapped = t->t_map_lo = t->t_map_hi = 0;
    t->t_hot_lo = t->t_hot_hi = 0;
    if (!v->v_base)
        return;
    if (lo < t->t_y.y_data_off)
        lo = t->t_y.y_data_off;
    /* The arrays lie in order of k; only those in [lo, end) split the span. */
    const uint64_t *i2i = (const uint64_t *)(v->v_base + t->t_y.y_i2i_off);
    for (uint64_t k = 0; k < n && lo < end; k++) {
        uint64_t a = __atomic_load_n(&i2i[k], __ATOMIC_ACQUIRE);
        if (!a || a > v->v_size || v->v_size - a < arr_sz || a >= end)
            break;
        uint64_t a_hi = (a + arr_sz + page - 1) & ~(page - 1);
        if (a_hi <= lo)
            continue;
        tape_view_release(v, lo, a);
        lo = a_hi;
    }
    tape_view_release(v, lo, end);
}

/* After a read or a move: release the mapping's pages once enough is mapped. */
static void bound_mapped(tape_tailer *t)
{
    if (t->t_mapped >= RELEASE_AFTER)
        release_pages(t);
}

/* ---- positioning ---------------------------------------------------------- */

static void set_cycle(tape_tailer *t, tape_cyc *y)
{
    if (t->t_pk_keep && t->t_pk_y.y_cycle < 0 && t->t_y.y_cycle == t->t_pk[0].mk_cycle) {
        t->t_pk_y = t->t_y; /* the peek goes back to it */
        tape_cyc_init(&t->t_y);
    }
    tape_cyc_close(&t->t_y);
    t->t_y = *y;
    t->t_bk_block = UINT64_MAX;
    t->t_jb_len = 0;
    t->t_hot_lo = t->t_hot_hi = 0;
    t->t_mapped = t->t_map_lo = t->t_map_hi = 0;
}

static void set_pos(tape_tailer *t, int64_t seq, uint64_t pos)
{
    t->t_seq = seq;
    t->t_pos = pos;
    t->t_pos_ok = 1;
}

/* Open `cycle` at its start (dir > 0) or at its last entry (dir < 0); with
 * dir -2, at its last intact entry when entries after it are damaged (a
 * torn tail: reading forward from there reports it). */
static int enter_cycle(tape_tailer *t, int64_t cycle, int dir)
{
    int rc;
    if (cycle != t->t_y.y_cycle) { /* (to_end usually stays in its cycle) */
        tape_cyc y;
        if ((rc = tape_cyc_open(t->t_q, cycle, 0, &y)) < 0)
            return rc;
        set_cycle(t, &y);
    }
    if (dir > 0) {
        set_pos(t, 0, t->t_y.y_data_off);
        return 0;
    }
    uint64_t end = 0, count = 0;
    uint32_t h;
    rc = tape_cyc_find_end(t->t_q, &t->t_y, &end, &count, &h, NULL);
    if (rc < 0 && !(dir == -2 && rc == TAPE_ECORRUPT && end && !tape_view_hit(&t->t_y.y_v)))
        return rc;
    note_end_walk(t, count, end);
    t->t_seq = (int64_t)count - 1;
    t->t_pos_ok = 0;
    return 0;
}

/* Move to the next existing cycle in direction dir: 1 moved, 0 none. */
static int step_cycle(tape_tailer *t, int dir)
{
    for (;;) {
        int64_t c = tape_neighbour_cycle(t->t_q, t->t_y.y_cycle, dir);
        if (c < 0)
            return c == -1 ? 0 : (int)c;
        int rc = enter_cycle(t, c, dir);
        if (rc == -ENOENT) /* removed meanwhile: look again from it */
            continue;
        return rc < 0 ? rc : 1;
    }
}

/* The lowest cycle holding a file: 1 entered, 0 none. */
static int enter_first(tape_tailer *t)
{
    tape_meta_shared *sh = t->t_q->q_sh;
    /* (empty: both -1; one damaged field alone does not hide the files) */
    if (__atomic_load_n(&sh->ms_highest, __ATOMIC_ACQUIRE) < 0 &&
        __atomic_load_n(&sh->ms_lowest, __ATOMIC_ACQUIRE) < 0)
        return 0;
    /* The lowest cycle as the directory says (listed again only when the
     * modification counter moved): tape.meta's lowest cycle, if damaged,
     * would start the reader past the first cycles. */
    for (int64_t c = -1;;) {
        c = tape_neighbour_cycle(t->t_q, c, 1);
        if (c < 0)
            return c == -1 ? 0 : (int)c;
        int rc = enter_cycle(t, c, 1);
        if (rc != -ENOENT) /* (else removed meanwhile: the next one) */
            return rc < 0 ? rc : 1;
    }
}

/* ---- reading one entry ------------------------------------------------- */

/* The entry at `pos` if the jump buffer holds all of it, else NULL. Written
 * so that no sum can overflow, whatever a damaged file says. */
static const uint8_t *buffered(tape_tailer *t, uint64_t pos)
{
    uint64_t r = pos - t->t_jb_off;
    if (!t->t_jb_len || pos < t->t_jb_off || r > t->t_jb_len || t->t_jb_len - r < TAPE_ENTRY_HDR)
        return NULL;
    if (__atomic_load_n(&t->t_q->q_sh->ms_modcount, __ATOMIC_ACQUIRE) != t->t_jb_mod) {
        t->t_jb_len = 0;
        return NULL;
    }
    const uint8_t *p = t->t_jb + r;
    uint32_t h;
    memcpy(&h, p, 4);
    uint32_t l = h & TAPE_H_LEN;
    if (h == 0 || (h & TAPE_H_NC) || l < TAPE_L_EXTRA ||
        t->t_jb_len - r < tape_entry_size(l - TAPE_L_EXTRA))
        return NULL; /* the mapping decides */
    return p;
}

/* The entry *e (len bytes of payload as stored) begins with an attribute
 * block: parse it into e_attrs, and leave the timestamp and the payload
 * without it. 1, or TAPE_ECORRUPT when the block does not parse. */
static int with_attrs(tape_entry *e, uint32_t len)
{
    int64_t blen = tape_attrs_decode(e->e_data, len, &e->e_attrs);
    if (blen < 0)
        return (int)blen;
    e->e_timestamp = (int64_t)((uint64_t)e->e_timestamp & ~TAPE_TS_ATTRS);
    e->e_data = (const uint8_t *)e->e_data + blen;
    e->e_len = len - (uint32_t)blen;
    return 1;
}

/* Check the entry at `pos` as data entry `seq` and describe it in *e:
 * 1 a published data entry, 2 a metadata entry (*e unset), 0 end of data. */
static int entry_at(tape_tailer *t, uint64_t pos, int64_t seq, tape_entry *e)
{
    const uint8_t *p = buffered(t, pos);
    uint32_t h;
    if (p) {
        memcpy(&h, p, 4);
    } else {
        tape_view *v = &t->t_y.y_v;
        if (pos + 4 > v->v_size) {
            int rc = tape_view_cover(v, pos + 4);
            if (rc != 0)
                return rc < 0 ? rc : 0;
        }
        h = tape_load_hdr(v, pos);
        if (h == 0 || (h & TAPE_H_NC))
            return 0;
        if ((h & TAPE_H_LEN) < TAPE_L_EXTRA)
            return TAPE_ECORRUPT;
        uint64_t sz = tape_entry_size((h & TAPE_H_LEN) - TAPE_L_EXTRA);
        if (pos + sz > v->v_size && tape_view_cover(v, pos + sz) != 0)
            return TAPE_ECORRUPT;
        p = v->v_base + pos;
        note_hot(t, pos, pos + sz);
    }
    uint32_t len = (h & TAPE_H_LEN) - TAPE_L_EXTRA;
    uint64_t sz = tape_entry_size(len);
    uint32_t crc;
    int64_t ts;
    memcpy(&crc, p + 4, 4);
    memcpy(&ts, p + 8, 8);
    t->t_cur_sz = sz;
    if (h & TAPE_H_META)
        return crc == tape_crc_meta(t->t_y.y_seed, h, (uint64_t)ts) ? 2 : TAPE_ECORRUPT;
    if (crc != tape_crc_data(t->t_y.y_seed, h, (uint64_t)seq, ts, p + TAPE_ENTRY_HDR, len))
        return TAPE_ECORRUPT;
    e->e_index = (t->t_y.y_cycle << t->t_q->q_roll.r_seq_bits) | seq;
    e->e_timestamp = ts;
    e->e_data = p + TAPE_ENTRY_HDR;
    e->e_len = len;
    /* bit 63: an attribute block; e_attrs is set only then (t_cur_attrs) */
    t->t_cur_attrs = ts < 0;
    return ts < 0 ? with_attrs(e, len) : 1;
}

/* Forward: is the cycle over at the end of its data? Yes when it is sealed,
 * or when a newer cycle exists and the end still shows nothing (a writer that
 * rolled never comes back to an older cycle). */
static int cycle_over(tape_tailer *t)
{
    tape_view *v = &t->t_y.y_v;
    uint32_t h = t->t_pos + 4 <= v->v_size ? tape_load_hdr(v, t->t_pos) : 0;
    if (h == TAPE_H_EOF) {
        /* Sealed, if the marker stands where the cycle's index says its
         * data ends: one written over entries (damage) would make the reader
         * skip the rest of the cycle without a word. Checked once a cycle.
         * (What follows a marker is not looked at: bytes there are never
         * read, and verify reports them.) */
        uint64_t end, count;
        uint32_t eh;
        int rc = tape_cyc_find_end(t->t_q, &t->t_y, &end, &count, &eh, NULL);
        if (rc < 0)
            return rc;
        if (end != t->t_pos || count != (uint64_t)t->t_seq)
            return TAPE_ECORRUPT;
        /* A marker written over the last block's entries (the index cannot
         * tell) has their bytes after it, and the roll's marker further on.
         * Bytes after a seal are not read otherwise (verify reports them).
         * (The sealed cycle's preallocation is a hole, skipped unread.) */
        if (tape_cyc_dirty_after(&t->t_y, t->t_pos, h) && tape_cyc_seal_further(&t->t_y, t->t_pos))
            return TAPE_ECORRUPT;
        return 1;
    }
    int64_t hi = __atomic_load_n(&t->t_q->q_sh->ms_highest, __ATOMIC_ACQUIRE);
    if (hi < t->t_y.y_cycle && (hi = tape_neighbour_cycle(t->t_q, t->t_y.y_cycle, 1)) < -1)
        return (int)hi; /* (below this cycle: damaged; the directory knows) */
    if (hi <= t->t_y.y_cycle)
        return 0;
    h = t->t_pos + 4 <= v->v_size ? tape_load_hdr(v, t->t_pos) : 0;
    if (h != 0 && !(h & TAPE_H_NC))
        return 0; /* published meanwhile: read on */
    /* Not sealed, and a newer cycle exists: its writer died before sealing
     * it, or this is damage (a zeroed page). It ends here only if its index
     * says so and nothing but zeros follows; otherwise moving on would skip
     * entries. */
    uint64_t end, count;
    uint32_t eh;
    int rc = tape_cyc_find_end(t->t_q, &t->t_y, &end, &count, &eh, NULL);
    if (rc < 0)
        return rc;
    if (end != t->t_pos || count != (uint64_t)t->t_seq || tape_cyc_dirty_after(&t->t_y, t->t_pos, h))
        return TAPE_ECORRUPT;
    return 1;
}

static int fwd_peek(tape_tailer *t, tape_entry *e)
{
    if (t->t_y.y_cycle < 0) {
        int rc = enter_first(t);
        if (rc <= 0)
            return rc;
    }
    if (t->t_seq < 0) { /* read backward past the start, now forward */
        t->t_seq = 0;
        t->t_pos_ok = 0;
    }
    for (;;) {
        if (!t->t_pos_ok) {
            uint64_t pos;
            int rc = tape_cyc_locate(t->t_q, &t->t_y, (uint64_t)t->t_seq, &pos);
            if (rc <= 0)
                return rc;
            note_walk(t, (uint64_t)t->t_seq, pos, 1);
            set_pos(t, t->t_seq, pos);
        }
        int rc = entry_at(t, t->t_pos, t->t_seq, e);
        if (rc == 1 || rc < 0)
            return rc;
        if (rc == 2) {
            t->t_pos += t->t_cur_sz;
            continue;
        }
        if ((rc = cycle_over(t)) <= 0)
            return rc;
        rc = step_cycle(t, 1);
        if (rc <= 0)
            return rc;
    }
}

static void fwd_advance(tape_tailer *t, const tape_entry *e)
{
    t->t_pos += t->t_cur_sz;
    t->t_seq++;
    t->t_last = e->e_index;
    store_next(t, e->e_index + 1);
    bound_mapped(t);
}

/* Offsets of the data entries of block b, cached for reading backward. */
static int bk_fill(tape_tailer *t, uint64_t b)
{
    tape_queue *q = t->t_q;
    t->t_bk_mod = __atomic_load_n(&q->q_sh->ms_modcount, __ATOMIC_ACQUIRE);
    uint64_t p = tape_cyc_block_pos(q, &t->t_y, b);
    uint32_t cap = 1u << q->q_roll.r_spacing_log2, n = 0;
    t->t_bk_block = b;
    t->t_bk_n = 0;
    /* Headers only: each entry's CRC is checked when it is read, so damage
     * stops the reader at the damaged entry, not at its block. */
    tape_view *v = &t->t_y.y_v;
    while (p && n < cap) {
        int rc = tape_view_cover(v, p + 4);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        uint32_t h = tape_load_hdr(v, p);
        if (h == 0 || (h & TAPE_H_NC))
            break;
        if ((h & TAPE_H_LEN) < TAPE_L_EXTRA)
            return TAPE_ECORRUPT;
        uint64_t sz = tape_entry_size((h & TAPE_H_LEN) - TAPE_L_EXTRA);
        if (tape_view_cover(v, p + sz) != 0)
            return TAPE_ECORRUPT;
        if (!(h & TAPE_H_META))
            t->t_bk_pos[n++] = p;
        p += sz;
    }
    t->t_bk_n = n;
    if (n)
        note_walk(t, (b << q->q_roll.r_spacing_log2) + n - 1, p, 1);
    return 0;
}

static int bwd_peek(tape_tailer *t, tape_entry *e)
{
    tape_queue *q = t->t_q;
    if (t->t_y.y_cycle < 0)
        return 0;
    for (;;) {
        if (t->t_seq >= 0) {
            uint64_t b = (uint64_t)t->t_seq >> q->q_roll.r_spacing_log2;
            uint32_t i = (uint32_t)((uint64_t)t->t_seq & ((1u << q->q_roll.r_spacing_log2) - 1));
            /* (tape_repair_tail, which moves the counter, may have cleared
             * entries of the cached block) */
            if (b != t->t_bk_block || i >= t->t_bk_n ||
                t->t_bk_mod != __atomic_load_n(&q->q_sh->ms_modcount, __ATOMIC_ACQUIRE)) {
                int rc = bk_fill(t, b);
                if (rc < 0)
                    return rc;
            }
            if (i < t->t_bk_n) {
                int rc = entry_at(t, t->t_bk_pos[i], t->t_seq, e);
                if (rc != 0)
                    return rc == 2 ? TAPE_ECORRUPT : rc;
            }
            /* Past the end of data (e.g. after reading forward to the end):
             * start from the newest entry of this cycle. */
            uint64_t end, count;
            uint32_t h;
            int rc = tape_cyc_find_end(q, &t->t_y, &end, &count, &h, NULL);
            if (rc < 0)
                return rc;
            note_end_walk(t, count, end);
            if ((uint64_t)t->t_seq < count) /* it exists, yet its block is unreadable */
                return TAPE_ECORRUPT;
            if (count > 0) {
                t->t_seq = (int64_t)count - 1;
                continue;
            }
        }
        int rc = step_cycle(t, -1);
        if (rc <= 0) {
            t->t_seq = -1;
            return rc;
        }
    }
}

static void bwd_advance(tape_tailer *t, const tape_entry *e)
{
    t->t_seq--;
    t->t_pos_ok = 0;
    t->t_last = e->e_index;
    store_next(t, e->e_index + 1);
    bound_mapped(t);
}

/* The SIGBUS guard (guard.c) marked a view of this tailer: a page that
 * faulted read as zeros, so what this call found is not to be believed.
 * Report it (instead of rc), and map the file again, so that the next call
 * reads what the file holds (and faults again where it still cannot). The
 * position is unchanged. Two relaxed loads when nothing faulted. */
static int unless_damaged(tape_tailer *t, int rc)
{
    int err = tape_meta_guarded(t->t_q, 0);
    tape_cyc *ys[2] = {&t->t_y, &t->t_pk_y};
    for (int i = 0; i < 2; i++) {
        tape_cyc *y = ys[i];
        if (y->y_cycle < 0 || !tape_view_hit(&y->y_v))
            continue;
        if (!err)
            err = tape_view_damage(&y->y_v);
        tape_cyc fresh;
        if (tape_cyc_open(t->t_q, y->y_cycle, 0, &fresh) == 0) {
            tape_cyc_close(y);
            *y = fresh;
        }
    }
    if (!err)
        return rc;
    t->t_bk_block = UINT64_MAX;
    t->t_jb_len = 0;
    t->t_hot_lo = t->t_hot_hi = 0;
    t->t_mapped = t->t_map_lo = t->t_map_hi = 0;
    return err;
}

static int peek(tape_tailer *t, tape_entry *e)
{
    return unless_damaged(t, t->t_dir == TAPE_FORWARD ? fwd_peek(t, e) : bwd_peek(t, e));
}

static void advance(tape_tailer *t, const tape_entry *e)
{
    if (t->t_dir == TAPE_FORWARD)
        fwd_advance(t, e);
    else
        bwd_advance(t, e);
}

/* ---- batches ------------------------------------------------------------ */

static int seek_from(tape_tailer *t, int64_t index);

/* (on every read: a few loads when there is nothing to forget) */
static void forget_batch(tape_tailer *t)
{
    if (t->t_pk_n == NO_BATCH && t->t_pk_y.y_cycle < 0 && !t->t_pk_keep)
        return;
    t->t_pk_n = NO_BATCH;
    t->t_pk_keep = 0;
    tape_cyc_close(&t->t_pk_y);
}

/* Record in t_pk[k] where the tailer stands; -ENOMEM when it cannot. */
static int mark(tape_tailer *t, size_t k)
{
    if (k >= t->t_pk_cap) {
        size_t cap = t->t_pk_cap ? 2 * t->t_pk_cap : 64;
        tape_mark *m = cap <= SIZE_MAX / sizeof *m ? realloc(t->t_pk, cap * sizeof *m) : NULL;
        if (!m)
            return -ENOMEM;
        t->t_pk = m;
        t->t_pk_cap = cap;
    }
    t->t_pk[k] = (tape_mark){t->t_y.y_cycle, t->t_seq, t->t_pos, t->t_pos_ok, t->t_last};
    return 0;
}

/* Stand at m again: in the current cycle, the kept one (swapped with the
 * current), or its file reopened. A cycle removed meanwhile is left for the
 * next one in the direction of reading, as a read would. */
static int go_to_mark(tape_tailer *t, const tape_mark *m)
{
    t->t_last = m->mk_last;
    if (m->mk_cycle != t->t_y.y_cycle) {
        tape_cyc y;
        if (m->mk_cycle == t->t_pk_y.y_cycle) {
            y = t->t_pk_y;
            t->t_pk_y = t->t_y;
            tape_cyc_init(&t->t_y);
        } else {
            int rc = tape_cyc_open(t->t_q, m->mk_cycle, 0, &y);
            if (rc == -ENOENT && t->t_dir == TAPE_FORWARD)
                return seek_from(t, (m->mk_cycle << t->t_q->q_roll.r_seq_bits) | m->mk_seq);
            if (rc == -ENOENT) {
                int64_t c = tape_neighbour_cycle(t->t_q, m->mk_cycle, -1);
                if (c >= 0)
                    return enter_cycle(t, c, -1);
                tape_cyc_close(&t->t_y);
                return c == -1 ? 0 : (int)c;
            }
            if (rc < 0)
                return rc;
        }
        set_cycle(t, &y);
    }
    t->t_seq = m->mk_seq;
    t->t_pos = m->mk_pos;
    t->t_pos_ok = m->mk_pos_ok;
    return 0;
}

/* After copying a peeked entry's payload out of the mapping: 0, or the
 * error when the copy faulted (the file shrank meanwhile: zeros were
 * copied). One relaxed load per view. */
static int copied(tape_tailer *t)
{
    if (!tape_view_hit(&t->t_y.y_v) && !tape_view_hit(&t->t_pk_y.y_v))
        return 0;
    return unless_damaged(t, 0);
}

/* The payload of e (and its key), which tape_read hands out, copied into
 * the tailer's buffer (checked): a pointer into the mapping would fault, or
 * read zeros, if the file shrank before the caller copied it. */
static int copy_out(tape_tailer *t, tape_entry *e)
{
    const uint8_t *d = e->e_data;
    if (t->t_jb_len && d >= t->t_jb && d < t->t_jb + JUMP_BUF)
        return 1; /* a copy already */
    size_t klen = e->e_attrs.a_key ? e->e_attrs.a_key_len : 0, need = klen + e->e_len;
    if (need > t->t_cp_cap || !t->t_cp) {
        size_t cap = need < 256 ? 256 : need;
        uint8_t *b = realloc(t->t_cp, cap);
        if (!b)
            return -ENOMEM;
        t->t_cp = b;
        t->t_cp_cap = cap;
    }
    if (klen) {
        memcpy(t->t_cp, e->e_attrs.a_key, klen);
        e->e_attrs.a_key = t->t_cp;
    }
    if (e->e_len)
        memcpy(t->t_cp + klen, d, e->e_len);
    e->e_data = t->t_cp + klen;
    int rc = copied(t);
    return rc < 0 ? rc : 1;
}

int tape_read(tape_tailer *t, tape_entry *e)
{
    forget_batch(t);
    int rc = peek(t, e);
    if (rc == 1) {
        if (!t->t_cur_attrs)
            e->e_attrs = tape_attrs_none;
        rc = copy_out(t, e);
        if (rc == 1)
            advance(t, e);
    }
    return rc;
}

int tape_read_at(tape_tailer *t, int64_t index, uint64_t pos, tape_entry *e)
{
    forget_batch(t);
    tape_queue *q = t->t_q;
    uint64_t seq = (uint64_t)index & (((uint64_t)1 << q->q_roll.r_seq_bits) - 1);
    if (index < 0 || t->t_dir != TAPE_FORWARD || t->t_y.y_cycle < 0 ||
        index >> q->q_roll.r_seq_bits != t->t_y.y_cycle || pos < t->t_y.y_data_off || pos > INT64_MAX)
        return 0;
    /* (a wrong hint: no entry, another entry, a checksum that fails) */
    if (unless_damaged(t, entry_at(t, pos, (int64_t)seq, e)) != 1)
        return 0;
    set_pos(t, (int64_t)seq, pos);
    if (!t->t_cur_attrs)
        e->e_attrs = tape_attrs_none;
    int rc = copy_out(t, e);
    if (rc == 1)
        fwd_advance(t, e);
    return rc;
}

int tape_read_into(tape_tailer *t, tape_entry *e, void *(*alloc)(void *ctx, size_t len),
                   void *ctx)
{
    forget_batch(t);
    int rc = peek(t, e);
    if (rc != 1)
        return rc;
    if (!t->t_cur_attrs)
        e->e_attrs = tape_attrs_none;
    size_t klen = e->e_attrs.a_key ? e->e_attrs.a_key_len : 0;
    if (klen > t->t_cp_cap || !t->t_cp) {
        uint8_t *b = realloc(t->t_cp, klen < 256 ? 256 : klen);
        if (!b)
            return -ENOMEM;
        t->t_cp = b;
        t->t_cp_cap = klen < 256 ? 256 : klen;
    }
    if (klen) {
        memcpy(t->t_cp, e->e_attrs.a_key, klen);
        e->e_attrs.a_key = t->t_cp;
    }
    uint8_t *dst = alloc(ctx, e->e_len);
    if (!dst)
        return -ENOMEM;
    memcpy(dst, e->e_data, e->e_len);
    if ((rc = copied(t)) < 0)
        return rc;
    e->e_data = dst;
    advance(t, e);
    return 1;
}

int tape_read_pinned(tape_tailer *t, tape_entry *e, tape_pin **pin)
{
    *pin = NULL;
    forget_batch(t);
    t->t_jb_len = 0; /* read through the mapping, not a copy of it */
    int rc = peek(t, e);
    if (rc != 1)
        return rc;
    if (!t->t_cur_attrs)
        e->e_attrs = tape_attrs_none;
    if (!(*pin = tape_view_pin(&t->t_y.y_v)))
        return -ENOMEM;
    advance(t, e);
    return 1;
}

/* Entry k of a batch into attrs (tape_read_many_ex), its key copied to
 * out + *off: the entry just peeked, e. `with` entries before it had
 * attributes: until the first that has, nothing is stored for the others. */
static void batch_attrs(tape_tailer *t, const tape_entry *e, size_t k, tape_attrs *attrs,
                        size_t with, uint8_t *out, size_t *off)
{
    if (!t->t_cur_attrs) {
        if (with)
            attrs[k] = tape_attrs_none;
        return;
    }
    if (!with)
        for (size_t i = 0; i < k; i++)
            attrs[i] = tape_attrs_none;
    attrs[k] = e->e_attrs;
    if (e->e_attrs.a_key) {
        memcpy(out + *off, e->e_attrs.a_key, e->e_attrs.a_key_len);
        attrs[k].a_key = out + *off;
        *off += e->e_attrs.a_key_len;
    }
}

/* Read up to max entries into buf (see tape_read_many); with `marks`, record
 * in t_pk where the tailer stands before each entry and after the last; with
 * `attrs`, each entry's attributes, its key copied before its payload, and in
 * *n_attrs how many carry any (tape_read_many_ex). */
static int64_t read_batch(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                          uint64_t *ends, size_t max, int marks, tape_attrs *attrs,
                          size_t *n_attrs)
{
    uint8_t *out = buf;
    size_t n = 0, off = 0, with = 0;
    while (n < max) {
        tape_entry e;
        int rc = peek(t, &e);
        uint32_t key_len = attrs && rc > 0 && t->t_cur_attrs ? e.e_attrs.a_key_len : 0;
        if (rc > 0 && (uint64_t)e.e_len + key_len > cap - off) {
            if (n == 0)
                ends[0] = (uint64_t)e.e_len + key_len; /* the room it needs */
            rc = TAPE_EINVAL;
        }
        if (rc > 0 && marks && n == 0) {
            if ((rc = mark(t, 0)) == 0) {
                rc = 1;
                t->t_pk_keep = 1;
            }
        }
        if (rc <= 0) {
            if (n == 0)
                return rc;
            break;
        }
        if (attrs) {
            batch_attrs(t, &e, n, attrs, with, out, &off);
            with += t->t_cur_attrs;
        }
        memcpy(out + off, e.e_data, e.e_len);
        if ((rc = copied(t)) < 0) { /* the copy met a fault: not read */
            if (n == 0)
                return rc;
            break;
        }
        off += e.e_len;
        idx[n] = e.e_index;
        ts[n] = e.e_timestamp;
        ends[n] = off;
        n++;
        advance(t, &e);
        if (marks && mark(t, n) < 0) { /* leave the last one unpeeked */
            if (--n == 0)
                return -ENOMEM;
            break;
        }
    }
    if (attrs)
        *n_attrs = with;
    return (int64_t)n;
}

int64_t tape_read_many(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                       uint64_t *ends, size_t max)
{
    return tape_read_many_ex(t, buf, cap, idx, ts, ends, max, NULL, NULL);
}

int64_t tape_read_many_ex(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                          uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs)
{
    if (attrs && !n_attrs)
        return TAPE_EINVAL;
    if (n_attrs)
        *n_attrs = 0;
    forget_batch(t);
    return read_batch(t, buf, cap, idx, ts, ends, max, 0, attrs, n_attrs);
}

int64_t tape_peek_many(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                       uint64_t *ends, size_t max)
{
    return tape_peek_many_ex(t, buf, cap, idx, ts, ends, max, NULL, NULL);
}

int64_t tape_peek_many_ex(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                          uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs)
{
    if (attrs && !n_attrs)
        return TAPE_EINVAL;
    if (n_attrs)
        *n_attrs = 0;
    forget_batch(t);
    tape_named_slot *slot = t->t_slot;
    t->t_slot = NULL; /* nothing is stored until tape_tailer_advance */
    int64_t n = read_batch(t, buf, cap, idx, ts, ends, max, 1, attrs, n_attrs);
    t->t_slot = slot;
    if (t->t_pk_keep) { /* entries were read: back to the first */
        t->t_pk_keep = 0;
        int rc = go_to_mark(t, &t->t_pk[0]);
        if (rc < 0) {
            forget_batch(t);
            return rc;
        }
    }
    if (n < 0)
        return n;
    t->t_pk_n = (size_t)n;
    t->t_pk_stored = slot ? __atomic_load_n(&slot->n_next, __ATOMIC_ACQUIRE) : -1;
    t->t_pk_moved = 0;
    return n;
}

static int advance_body(tape_tailer *t, size_t k)
{
    if (t->t_pk_n == NO_BATCH || k > t->t_pk_n)
        return TAPE_EINVAL;
    if (t->t_pk_n == 0)
        return 0;
    int rc = go_to_mark(t, &t->t_pk[k]);
    if (rc < 0)
        return rc;
    if (k > 0) {
        store_next(t, t->t_pk[k].mk_last + 1);
        t->t_pk_moved = 1;
    } else if (t->t_pk_moved) {
        store_next(t, t->t_pk_stored);
    }
    bound_mapped(t);
    return 0;
}

/* ---- moving ------------------------------------------------------------- */

/* Read [off, off + len) of y's file into the jump buffer: 1, or 0 if nothing
 * could be read. */
static int jb_fill(tape_tailer *t, tape_cyc *y, uint64_t off, uint64_t len)
{
    if (!t->t_jb && !(t->t_jb = malloc(JUMP_BUF)))
        return 0;
    if (len > JUMP_BUF)
        len = JUMP_BUF;
    ssize_t n = tf_pread(y->y_v.v_fd, t->t_jb, len, (off_t)off);
    t->t_jb_off = off;
    /* Short of what the index says the file holds: damage, for the mapping
     * to report. */
    t->t_jb_len = n == (ssize_t)len ? len : 0;
    return t->t_jb_len > 0;
}

/* Locate entry `seq` of y through the jump buffer (see JUMP_BUF): 1 found
 * (*pos set), 0 when it cannot or need not (the caller then locates through
 * the mapping, which also judges anything odd found here). */
static int locate_far(tape_tailer *t, tape_cyc *y, uint64_t seq, uint64_t *pos)
{
    tape_queue *q = t->t_q;
    const int slog = q->q_roll.r_spacing_log2;
    uint64_t b = seq >> slog, s = b << slog;
    uint64_t p = tape_cyc_block_pos(q, y, b);
    if (!p)
        return 0;
    int current = y == &t->t_y;
    if (current && p >= t->t_hot_lo && p < t->t_hot_hi)
        return 0; /* near what was just read: the mapping has it */
    uint64_t end = tape_cyc_block_pos(q, y, b + 1);
    if (end <= p || end > INT64_MAX)
        return 0; /* the last block, still being written; or damage */
    uint64_t mod = __atomic_load_n(&q->q_sh->ms_modcount, __ATOMIC_ACQUIRE);
    if (!current || t->t_jb_mod != mod)
        t->t_jb_len = 0;
    t->t_jb_mod = mod;
    uint64_t mean = (end - p) >> slog;
    while (p < end) {
        uint64_t r = p - t->t_jb_off;
        if (p < t->t_jb_off || r > t->t_jb_len || t->t_jb_len - r < TAPE_ENTRY_HDR) {
            /* Enough for the entries up to seq and one more, if they are of
             * the block's mean size. */
            uint64_t want = (seq - s + 2) * mean + TAPE_ENTRY_HDR;
            if (want < 512)
                want = 512;
            if (!jb_fill(t, y, p, want < end - p ? want : end - p) || t->t_jb_len < TAPE_ENTRY_HDR)
                return 0;
        }
        uint32_t h;
        memcpy(&h, t->t_jb + (p - t->t_jb_off), 4);
        if (h == 0 || (h & TAPE_H_NC) || (h & TAPE_H_LEN) < TAPE_L_EXTRA)
            return 0;
        uint64_t sz = tape_entry_size((h & TAPE_H_LEN) - TAPE_L_EXTRA);
        if (sz > end - p)
            return 0;
        if (!(h & TAPE_H_META)) {
            if (s == seq) {
                *pos = p;
                return 1;
            }
            s++;
        }
        p += sz;
    }
    return 0;
}

static int to_index_body(tape_tailer *t, int64_t index)
{
    forget_batch(t);
    tape_queue *q = t->t_q;
    if (index < 0)
        return 0;
    int64_t cycle = index >> q->q_roll.r_seq_bits;
    uint64_t seq = (uint64_t)index & (((uint64_t)1 << q->q_roll.r_seq_bits) - 1);
    tape_cyc other, *y = &t->t_y;
    if (cycle != t->t_y.y_cycle) {
        int rc = tape_cyc_open(q, cycle, 0, &other);
        if (rc < 0)
            return rc == -ENOENT ? 0 : rc;
        y = &other;
    }
    uint64_t pos;
    int far = locate_far(t, y, seq, &pos);
    int rc = far ? 1 : tape_cyc_locate(q, y, seq, &pos);
    if (rc != 1) {
        if (y == &other) {
            tape_cyc_close(&other);
            t->t_jb_len = 0; /* it may hold other's bytes */
        }
        return rc < 0 ? rc : 0;
    }
    if (y == &other) {
        uint64_t jb_off = t->t_jb_off, jb_len = far ? t->t_jb_len : 0;
        set_cycle(t, &other);
        t->t_jb_off = jb_off;
        t->t_jb_len = jb_len;
    }
    if (far) {
        t->t_hot_lo = t->t_hot_hi = 0;
    } else {
        note_walk(t, seq, pos, 1);
        bound_mapped(t);
    }
    set_pos(t, (int64_t)seq, pos);
    store_pos(t);
    return 1;
}

static int to_start_body(tape_tailer *t)
{
    forget_batch(t);
    tape_cyc_close(&t->t_y);
    t->t_bk_block = UINT64_MAX;
    int rc = enter_first(t);
    if (rc == 0)
        store_next(t, -1);
    else if (rc > 0)
        store_pos(t);
    return rc < 0 ? rc : 0;
}

static int to_end_body(tape_tailer *t)
{
    forget_batch(t);
    tape_queue *q = t->t_q;
    int64_t hi = __atomic_load_n(&q->q_sh->ms_highest, __ATOMIC_ACQUIRE);
    int rc = hi < 0 ? -ENOENT : enter_cycle(t, hi, -2); /* (-1: empty, or damaged) */
    if (rc == -ENOENT) {
        hi = tape_neighbour_cycle(q, INT64_MAX, -1);
        if (hi < 0)
            return hi == -1 ? tape_tailer_to_start(t) : (int)hi;
        rc = enter_cycle(t, hi, -2);
    }
    if (rc < 0)
        return rc;
    /* enter_cycle(-1) leaves t_seq at the last (intact) entry; forward
     * reads go on after it, backward ones start with it (not with a
     * damaged entry after it). */
    t->t_seq++;
    t->t_pos_ok = 0;
    bound_mapped(t);
    store_pos(t);
    if (t->t_dir != TAPE_FORWARD)
        t->t_seq--;
    return 0;
}

/* Timestamp of the entry at pos (the reader checks the entry when it reads
 * it); TAPE_ECORRUPT when pos is past the end of the file. */
static int ts_at(tape_cyc *y, uint64_t pos, int64_t *ts)
{
    if (tape_view_cover(&y->y_v, pos + TAPE_ENTRY_HDR) != 0)
        return TAPE_ECORRUPT;
    memcpy(ts, y->y_v.v_base + pos + 8, 8);
    *ts = tape_entry_ts(*ts);
    return 0;
}

/* In cycle y: the first data entry with timestamp >= target. 1 found. */
static int find_time(tape_queue *q, tape_cyc *y, int64_t target, uint64_t *pos, uint64_t *seq)
{
    uint64_t end, count;
    uint32_t h;
    int rc = tape_cyc_find_end(q, y, &end, &count, &h, NULL);
    if (rc < 0 || count == 0)
        return rc;
    const int slog = q->q_roll.r_spacing_log2;
    uint64_t blocks = ((count - 1) >> slog) + 1;
    /* The last block whose first entry is before the target. */
    uint64_t lo = 0, hi = blocks;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t p = tape_cyc_block_pos(q, y, mid);
        int64_t ts;
        if (!p || ts_at(y, p, &ts) < 0)
            return TAPE_ECORRUPT;
        if (ts < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t b = lo ? lo - 1 : 0;
    uint64_t p = tape_cyc_block_pos(q, y, b), s = b << slog;
    if (!p)
        return TAPE_ECORRUPT;
    while (p < end) {
        uint32_t hw = tape_load_hdr(&y->y_v, p);
        if ((hw & TAPE_H_LEN) < TAPE_L_EXTRA)
            return TAPE_ECORRUPT;
        uint64_t sz = tape_entry_size((hw & TAPE_H_LEN) - TAPE_L_EXTRA);
        if (!(hw & TAPE_H_META)) {
            int64_t ts;
            if (ts_at(y, p, &ts) < 0)
                return TAPE_ECORRUPT;
            if (ts >= target) {
                *pos = p;
                *seq = s;
                return 1;
            }
            s++;
        }
        p += sz;
    }
    return 0;
}

static int to_time_body(tape_tailer *t, int64_t ts_ns)
{
    forget_batch(t);
    tape_queue *q = t->t_q;
    int64_t first = tape_cycle_of(q, ts_ns);
    if (first < 0)
        first = ts_ns < 0 ? 0 : INT64_MAX;
    int64_t *v;
    size_t n;
    int rc = tape_list_cycles_alloc(q, &v, &n);
    if (rc < 0)
        return rc;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        if (v[i] < first)
            continue;
        tape_cyc y;
        rc = tape_cyc_open(q, v[i], 0, &y);
        if (rc == -ENOENT)
            continue;
        if (rc < 0)
            break;
        uint64_t pos = 0, seq = 0;
        rc = find_time(q, &y, ts_ns, &pos, &seq);
        if (rc == 1) {
            set_cycle(t, &y);
            set_pos(t, (int64_t)seq, pos);
            store_pos(t);
            found = 1;
        } else {
            tape_cyc_close(&y);
            if (rc < 0)
                break;
        }
    }
    free(v);
    if (rc < 0 && !found)
        return rc;
    return found;
}

/* Position at `index`, or at the first entry after it that still exists: at
 * the end of data when it names the end of a cycle, at the start of the next
 * cycle when its cycle is gone. An index beyond the end of the data (past
 * the end of its cycle, or in a cycle later than the newest) is brought back
 * to the end; *beyond (when not NULL) says so. */
static int seek_from_at(tape_tailer *t, int64_t index, int *beyond)
{
    tape_queue *q = t->t_q;
    if (index < 0)
        return tape_tailer_to_start(t);
    int64_t cycle = index >> q->q_roll.r_seq_bits;
    uint64_t seq = (uint64_t)index & (((uint64_t)1 << q->q_roll.r_seq_bits) - 1);
    tape_cyc y;
    int rc = tape_cyc_open(q, cycle, 0, &y);
    if (rc == 0) {
        uint64_t pos;
        rc = tape_cyc_locate(q, &y, seq, &pos);
        if (rc == 0) { /* beyond the end of data: at the end */
            uint32_t h;
            rc = tape_cyc_find_end(q, &y, &pos, &seq, &h, NULL);
            if (beyond)
                *beyond = 1;
        }
        if (rc < 0) {
            tape_cyc_close(&y);
            return rc;
        }
        set_cycle(t, &y);
        set_pos(t, (int64_t)seq, pos);
        return 0;
    }
    if (rc != -ENOENT)
        return rc;
    int64_t next = tape_neighbour_cycle(q, cycle, 1);
    if (next < -1)
        return (int)next;
    if (next < 0) {
        if (beyond)
            *beyond = 1;
        return tape_tailer_to_end(t);
    }
    return enter_cycle(t, next, 1);
}

static int seek_from(tape_tailer *t, int64_t index)
{
    return seek_from_at(t, index, NULL);
}

int tape_tailer_open_named(tape_queue *q, const char *name, tape_tailer **out)
{
    tape_named_slot *slot;
    int rc = tape_named_claim(q, name, &slot);
    if (rc < 0)
        return rc;
    tape_tailer *t;
    if ((rc = tape_tailer_open(q, &t)) < 0)
        return rc;
    int beyond = 0;
    int64_t stored = slot ? __atomic_load_n(&slot->n_next, __ATOMIC_ACQUIRE) : -1;
    if (slot && (rc = seek_from_at(t, stored, &beyond)) < 0) {
        tape_tailer_close(t);
        return rc;
    }
    /* Set after the seek: resuming is not a move to store (on a read-only
     * queue the slot cannot be written at all)... */
    t->t_slot = q->q_read_only ? NULL : slot;
    /* ...unless the stored position was beyond the end of the data (made
     * durable ahead of data a power cut lost): the end is stored in its
     * place, so that what is written there next is read, also by a tailer
     * of this name that resumes later. Only if the slot still holds what
     * was read: another tailer of the name may have stored since. */
    if (beyond && t->t_slot) {
        int64_t end = -1; /* no cycle file at all: from the start */
        if (t->t_y.y_cycle >= 0 && t->t_seq >= 0)
            end = (t->t_y.y_cycle << q->q_roll.r_seq_bits) + t->t_seq;
        if (end < stored)
            __atomic_compare_exchange_n(&t->t_slot->n_next, &stored, end, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE);
    }
    *out = t;
    return 0;
}

int tape_tailer_set_direction(tape_tailer *t, int direction)
{
    if (direction != TAPE_FORWARD && direction != TAPE_BACKWARD)
        return TAPE_EINVAL;
    forget_batch(t);
    t->t_dir = direction;
    return 0;
}

int tape_tailer_direction(tape_tailer *t)
{
    return t->t_dir;
}

int64_t tape_tailer_index(tape_tailer *t)
{
    tape_entry e;
    int rc = peek(t, &e);
    if (rc == 1)
        return e.e_index;
    if (t->t_y.y_cycle < 0 || t->t_seq < 0)
        return -1;
    return (t->t_y.y_cycle << t->t_q->q_roll.r_seq_bits) | t->t_seq;
}

int64_t tape_tailer_last_read_index(tape_tailer *t)
{
    return t->t_last;
}

/* ---- waiting ------------------------------------------------------------- */

/* A process that cannot write tape.meta (no write permission: see
 * tape_wake_map) cannot announce itself to writers, so it looks for data
 * again after POLL_MIN_NS, and after twice as long each time it finds none,
 * up to POLL_MAX_NS: an idle tailer wakes about 125 times a second, and a new
 * entry is seen within POLL_MAX_NS (within POLL_MIN_NS of the one before it
 * in a burst). */
#define POLL_MIN_NS 1000000
#define POLL_MAX_NS 8000000

int tape_tailer_set_spin(tape_tailer *t, int64_t spin_ns)
{
    t->t_spin_ns = spin_ns;
    return 0;
}

/* Spin on the tailer's next header until data or `budget` ns; 1 data. */
static int spin(tape_tailer *t, int64_t budget)
{
    tape_entry e;
    int64_t until = tape_mono_ns() + budget;
    for (unsigned k = 0;; k++) {
        int rc = peek(t, &e);
        if (rc != 0)
            return 1;
        if ((k & 63) == 63 && tape_mono_ns() >= until)
            return 0;
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

/* tape_wait without wake-ups: look, sleep, look again, sleeping longer the
 * longer nothing comes (t_poll_ns, back to POLL_MIN_NS once data is found). */
static int poll_wait(tape_tailer *t, int64_t timeout_ns)
{
    int64_t start = tape_mono_ns();
    int64_t until = timeout_ns < 0 || timeout_ns > INT64_MAX - start ? INT64_MAX : start + timeout_ns;
    for (;;) {
        tape_entry e;
        int rc = peek(t, &e);
        if (rc != 0) {
            t->t_poll_ns = POLL_MIN_NS;
            return rc < 0 ? rc : 0;
        }
        int64_t now = tape_mono_ns();
        if (now >= until)
            return 0;
        int64_t ns = t->t_poll_ns < POLL_MIN_NS ? POLL_MIN_NS : t->t_poll_ns;
        t->t_poll_ns = ns >= POLL_MAX_NS / 2 ? POLL_MAX_NS : 2 * ns;
        if (ns > until - now)
            ns = until - now;
        struct timespec ts = {ns / 1000000000, ns % 1000000000};
        if (nanosleep(&ts, NULL) < 0)
            return -errno;
    }
}

int tape_wait(tape_tailer *t, int64_t timeout_ns)
{
    tape_entry e;
    if (t->t_spin_ns != 0) {
        /* Spin for the budget, or for the whole timeout (which may be
         * unlimited, -1) when that is shorter or the tailer only spins. */
        int64_t budget = t->t_spin_ns;
        if (budget < 0 || (timeout_ns >= 0 && budget > timeout_ns))
            budget = timeout_ns;
        if (spin(t, budget < 0 ? INT64_MAX / 2 : budget) || budget == timeout_ns)
            return 0;
        if (timeout_ns >= 0)
            timeout_ns -= budget;
    }
    if (!t->t_q->q_wake)
        return poll_wait(t, timeout_ns);
    /* The wake-up protocol (meta.c): announce, look for data once more,
     * sleep. */
    uint32_t seen = tape_announce_sleeper(t->t_q);
    int rc = peek(t, &e);
    if (rc == 0)
        rc = tape_sleep_readers(t->t_q, seen, timeout_ns);
    return rc < 0 ? rc : 0;
}

/* ---- the public moves, checked by the SIGBUS guard ------------------------ */

int tape_tailer_advance(tape_tailer *t, size_t k)
{
    return unless_damaged(t, advance_body(t, k));
}

int tape_tailer_to_index(tape_tailer *t, int64_t index)
{
    return unless_damaged(t, to_index_body(t, index));
}

int tape_tailer_seek(tape_tailer *t, int64_t index)
{
    forget_batch(t);
    return unless_damaged(t, seek_from(t, index));
}

int tape_tailer_to_start(tape_tailer *t)
{
    return unless_damaged(t, to_start_body(t));
}

int tape_tailer_to_end(tape_tailer *t)
{
    return unless_damaged(t, to_end_body(t));
}

int tape_tailer_to_time(tape_tailer *t, int64_t ts_ns)
{
    return unless_damaged(t, to_time_body(t, ts_ns));
}
