/* tape_int.h - internal declarations shared by the core's files: the on-disk
 * layout (docs/FORMAT.md), the process-local state, and helpers. Not
 * installed; tests may include it. */
#ifndef TAPE_INT_H
#define TAPE_INT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "tape.h"

/* ---- on-disk layout --------------------------------------------------- */

#define TAPE_VERSION 1u       /* of tape.meta */
#define TAPE_CYC_VERSION 2u   /* of cycle files written now; 1 is still read */
#define TAPE_META_NAME "tape.meta"
#define TAPE_META_SIZE 65536u
#define TAPE_PAGE 4096u
#define TAPE_SUFFIX ".tape"

/* Page 0 of tape.meta: settings, written once. */
typedef struct tape_meta_hdr {
    char m_magic[8];           /* "TAPEMETA" */
    uint32_t m_version;
    uint32_t m_size;
    char m_roll[TAPE_NAME_MAX];
    char m_codec[TAPE_NAME_MAX];
    int64_t m_length_ms;
    int64_t m_epoch_ms;
    uint32_t m_seq_bits;
    uint32_t m_count_log2;
    uint32_t m_spacing_log2;
    uint32_t m_params_len;
    int64_t m_created_ns;
    uint32_t m_crc;            /* over bytes [0, offsetof(m_crc)) */
} tape_meta_hdr;

/* Page 1 of tape.meta: shared state, one cache line per group. */
typedef struct tape_meta_shared {
    /* line 0: owned by the lock holder */
    uint32_t ms_lock;           /* 0 free; owner token; TAPE_LOCK_WAITERS bit */
    uint32_t ms_lock_pid;
    uint64_t ms_hint_gen;       /* odd while the hint is being written */
    int64_t ms_hint_cycle;
    uint64_t ms_hint_pos;
    uint64_t ms_hint_seq;
    int64_t ms_last_ts;
    uint32_t ms_keyed;          /* 1 once an entry with a key was appended: never
                                 * cleared (0 in queues made before it) */
    uint8_t ms_pad0[12];
    /* line 1: cycles, changed on roll */
    int64_t ms_lowest;
    int64_t ms_highest;
    uint64_t ms_modcount;
    /* the checked point: entries of cycle ms_ok_cycle before ms_ok_pos
     * (ms_ok_seq of them) were checked and were on disk (fdatasync) when it
     * was stored; meaningless unless ms_ok_check is tape_ok_check of the
     * three (absent in queues made before it: zeros) */
    int64_t ms_ok_cycle;
    uint64_t ms_ok_pos;
    uint64_t ms_ok_seq;
    uint32_t ms_ok_check;
    uint8_t ms_pad1[12];
    /* line 2: wake-ups */
    uint32_t ms_notify;         /* futex word: counter, TAPE_NOTIFY_SLEEPERS bit */
    uint32_t ms_reserved;
} tape_meta_shared;

#define TAPE_META_SHARED_OFF 4096u
#define TAPE_NAMED_OFF 8192u

/* A named tailer's slot (FORMAT.md "Named tailers"). */
typedef struct tape_named_slot {
    char n_name[TAPE_NAME_MAX];
    int64_t n_next;            /* index of the next entry to read, -1 start */
    uint32_t n_state;          /* 0 free, 1 in use */
    uint32_t n_crc;            /* CRC of n_name */
} tape_named_slot;
#define TAPE_PARAMS_OFF 32768u
#define TAPE_LOCK_WAITERS 0x80000000u
#define TAPE_NOTIFY_SLEEPERS 0x80000000u
#define TAPE_LIVE_BASE ((off_t)1 << 32) /* OFD lock byte of token T: base + T */

typedef struct tape_cycle_hdr {
    char c_magic[8];           /* "TAPECYCL" */
    uint32_t c_version;
    uint32_t c_reserved;
    int64_t c_cycle;
    uint32_t c_seed;
    uint32_t c_seq_bits;
    uint32_t c_count_log2;
    uint32_t c_spacing_log2;
    uint64_t c_i2i_off;
    uint64_t c_data_off;
    int64_t c_created_ns;
    uint32_t c_crc;            /* over bytes [0, offsetof(c_crc)) */
} tape_cycle_hdr;

/* Entry header word. */
#define TAPE_H_NC   0x80000000u
#define TAPE_H_META 0x40000000u
#define TAPE_H_LEN  0x3FFFFFFFu
#define TAPE_H_EOF  0xC0000000u
#define TAPE_ENTRY_HDR 16u
#define TAPE_TAG_INDEX ((uint64_t)1 << 56)

/* The header word's length field counts the CRC, the timestamp and the
 * payload (FORMAT.md), so it is never 0. */
#define TAPE_L_EXTRA 12u
static inline uint32_t tape_hdr_len(uint32_t payload_len)
{
    return payload_len + TAPE_L_EXTRA;
}

/* Bit 63 of a data entry's timestamp word: an attribute block begins its
 * payload (FORMAT.md "Attributes"). */
#define TAPE_TS_ATTRS ((uint64_t)1 << 63)
/* The largest attribute block: header, key, not_before and origin records. */
#define TAPE_ATTRS_MAX (8u + 8u + TAPE_KEY_MAX + 16u + 24u)

/* Bytes an entry with this payload occupies. */
static inline uint64_t tape_entry_size(uint32_t payload_len)
{
    return (TAPE_ENTRY_HDR + (uint64_t)payload_len + 7u) & ~(uint64_t)7u;
}

/* ---- CRC-32C -------------------------------------------------------------- */

/* crc = ~update(~seed, p[0..n)); continuing a CRC: pass the previous result. */
uint32_t tape_crc32c(uint32_t seed, const void *p, size_t n);

/* The CRC of a data entry (FORMAT.md "Entries"). */
uint32_t tape_crc_data(uint32_t seed, uint32_t hdr, uint64_t seq, int64_t ts,
                       const void *payload, uint32_t len);
/* The CRC of a metadata entry. */
uint32_t tape_crc_meta(uint32_t seed, uint32_t hdr, uint64_t tag);

/* ---- entry attributes (attrs.c) ------------------------------------------ */

/* What an entry without attributes reads as. */
extern const tape_attrs tape_attrs_none;
/* 1 when *at (may be NULL) carries attributes, 0 when none, TAPE_EINVAL when
 * they are not valid (tape.h, tape_append_ex). */
int tape_attrs_check(const tape_attrs *at);
/* Write the block of the valid attributes *at (carrying some) into out
 * (TAPE_ATTRS_MAX bytes of room): its length. */
uint32_t tape_attrs_encode(const tape_attrs *at, uint8_t *out);
/* Parse the block at p (avail bytes: the entry's payload as stored) into
 * *out (a_key points into p): its length, or TAPE_ECORRUPT. */
int64_t tape_attrs_decode(const uint8_t *p, uint32_t avail, tape_attrs *out);

/* ---- file views: a file and its shared mapping ------------------------- */

typedef struct tape_view {
    int v_fd;                  /* -1 when closed */
    uint8_t *v_base;
    size_t v_maplen;           /* mapped length, may exceed the file */
    uint64_t v_size;           /* known file size: every byte below is backed */
    int v_writable;
    uint64_t v_trim_lo;        /* pages below were released from this mapping */
    pthread_mutex_t *v_mu;     /* held while the mapping moves (writer's view) */
    int v_guard;               /* its slot in guard.c's registry, -1 none */
    struct tape_pin *v_pin;    /* the mapping's holders once it was pinned (a
                                * reader's), or NULL */
} tape_view;

/* A reader's mapping kept alive for what was handed out of it (tape_pin in
 * tape.h): while any holder is left, the view that made it maps anew rather
 * than moving or unmapping it, and it stays registered with the SIGBUS guard.
 * The view holds one reference while it uses the mapping. */
struct tape_pin {
    _Atomic uint32_t p_refs;
    uint8_t *p_base;
    size_t p_len;
    int p_guard;
};

/* ---- SIGBUS guard (guard.c) ---------------------------------------------- */

/* A registered mapping: the SIGBUS handler reads these without a lock. */
typedef struct tape_guard_slot {
    _Atomic int g_state;       /* 0 free, 1 registered, 2 being changed */
    _Atomic int g_hit;         /* a fault in it was replaced by a zero page */
    _Atomic uintptr_t g_base;
    _Atomic size_t g_len;
    _Atomic uint64_t g_fault_off; /* offset of the first such page, or ~0 */
} tape_guard_slot;

#define TAPE_GUARD_SLOTS 8192
extern tape_guard_slot tape_guard_slots[TAPE_GUARD_SLOTS];

/* Register [base, base + len) (installs the handler on first use): its slot,
 * or -EMFILE when every slot is taken. */
int tape_guard_add(const void *base, size_t len);
/* The mapping of `slot` moved (its owner holds it still meanwhile). */
void tape_guard_move(int slot, const void *base, size_t len);
/* Forget `slot` (before the mapping is unmapped). slot < 0: nothing. */
void tape_guard_remove(int slot);
/* The offset in the mapping of the first page replaced, or UINT64_MAX. */
uint64_t tape_guard_fault_off(int slot);

/* Did an access to the mapping of `slot` fault (SIGBUS) since it was
 * registered? One relaxed load: cheap enough for the append path. */
static inline int tape_guard_hit(int slot)
{
    return slot >= 0 && atomic_load_explicit(&tape_guard_slots[slot].g_hit, memory_order_relaxed);
}

void tape_view_init(tape_view *v);
/* Open `name` in `dirfd` and map it. -ENOENT when missing. */
int tape_view_open(tape_view *v, int dirfd, const char *name, int writable);
void tape_view_close(tape_view *v);
/* Make [0, end) backed by the file (refreshing the known size) and mapped.
 * Returns 0, or 1 when the file is smaller than `end` (then all of it is
 * covered), or -errno. Keeps v_size <= v_maplen. */
int tape_view_cover(tape_view *v, uint64_t end);
/* Allocate [off, off + len) of the file: fallocate, or where the filesystem
 * has none (EOPNOTSUPP), zeros written at its end up to off + len (never
 * over bytes below the end). 0 or -errno (-ENOSPC: the disk is full). */
int tape_file_alloc(int fd, uint64_t off, uint64_t len);
/* Extend the file so that [0, end) is allocated (tape_file_alloc), and mapped. */
int tape_view_grow(tape_view *v, uint64_t end);
/* Whether the writer's file was cut short under its entry at `last` (0:
 * none known), and maybe grown again since (a fallocate racing the
 * truncation): that entry's header reads 0 then (a page the file no longer
 * backs reads as 0 through the SIGBUS guard). One load. */
int tape_cut_under(const tape_view *v, uint64_t last);
/* 0 when no access to the view faulted, else the error to report: TAPE_ECORRUPT
 * when the file now ends before the page that faulted (truncated), -ENOSPC
 * when the filesystem is full (it could not supply a page), else -EIO. */
int tape_view_damage(const tape_view *v);
static inline int tape_view_hit(const tape_view *v)
{
    return tape_guard_hit(v->v_guard);
}
/* rc, unless an access to the view faulted: then tape_view_damage (what was
 * read there is not to be believed). One relaxed load when none did. */
static inline int tape_view_guarded(const tape_view *v, int rc)
{
    return tape_view_hit(v) ? tape_view_damage(v) : rc;
}
/* A new reference to the view's mapping (see struct tape_pin), or NULL
 * (-ENOMEM). Only for a reader's view, by its owner. */
struct tape_pin *tape_view_pin(tape_view *v);
/* Release the pages of [lo, hi) from this mapping (both rounded down to a
 * page; RSS only, the file is untouched); returns where the release ended. */
uint64_t tape_view_release(tape_view *v, uint64_t lo, uint64_t hi);
/* Release the pages of [v_trim_lo, below) and move v_trim_lo up to there. */
void tape_view_trim(tape_view *v, uint64_t below);

static inline uint32_t tape_load_hdr(const tape_view *v, uint64_t pos)
{
    return __atomic_load_n((const uint32_t *)(v->v_base + pos), __ATOMIC_ACQUIRE);
}

/* ---- roll cycles and cycle files --------------------------------------- */

typedef struct tape_roll {
    int64_t r_length_ms;
    int64_t r_epoch_ms;
    int r_seq_bits;
    int r_count_log2;
    int r_spacing_log2;
    const char *r_format;
} tape_roll;

/* roll.c: the roll cycle called `name`, or NULL; the cycle a file name
 * stands for, or -1 when it is not a cycle file name. */
const tape_roll_info *tape_roll_find(const char *name);
int64_t tape_cycle_parse(tape_queue *q, const char *name);

/* An open cycle file, validated. */
typedef struct tape_cyc {
    int64_t y_cycle;
    tape_view y_v;
    uint32_t y_seed;
    uint64_t y_i2i_off;
    uint64_t y_data_off;
    uint64_t y_full_released;  /* writer's view: the prefaulter has released the
                                * full index arrays below this one */
    uint32_t y_version;        /* format version of the file as opened (or upgraded) */
} tape_cyc;

/* The timestamp stored in a data entry's timestamp word: without its flag
 * (TAPE_TS_ATTRS). Timestamps are never negative: a writer stores no less
 * than the queue's newest, which starts at 0. */
static inline int64_t tape_entry_ts(int64_t word)
{
    return (int64_t)((uint64_t)word & ~TAPE_TS_ATTRS);
}

void tape_cyc_init(tape_cyc *y);
int tape_cyc_open(tape_queue *q, int64_t cycle, int writable, tape_cyc *y);
void tape_cyc_close(tape_cyc *y);
/* Create cycle file `cycle` (1), or open it if it exists (0). Holding the
 * lock. */
int tape_cyc_create(tape_queue *q, int64_t cycle, tape_cyc *y);

/* End of data of a cycle: offset after the last published entry and its
 * count of data entries; *hdr_at_end is the header word found there (0, an
 * abandoned "not complete" word, or TAPE_H_EOF). TAPE_ECORRUPT when an entry
 * is damaged (*pos and *seq then at it, where the intact entries end) or the
 * index is (*pos and *seq unset). */
int tape_cyc_find_end(tape_queue *q, tape_cyc *y, uint64_t *pos, uint64_t *seq,
                      uint32_t *hdr_at_end, int64_t *last_ts);
/* Position of entry `seq`: 1 found (*pos set), 2 seq is the end of data
 * (*pos = end offset), 0 not present, or a negative error. */
int tape_cyc_locate(tape_queue *q, tape_cyc *y, uint64_t seq, uint64_t *pos);
/* Offset of index array k: 1 found (*arr set), 0 absent, or an error. */
int tape_cyc_index_array(tape_queue *q, tape_cyc *y, uint64_t k, uint64_t *arr);
/* The slots of the index array at offset arr. */
const uint64_t *tape_cyc_slots(const tape_cyc *y, uint64_t arr);
/* Walk forward from (*pos, *seq) over published entries, checking each CRC;
 * stops at the end of data (*last: the header word found there), or returns
 * TAPE_ECORRUPT with *pos and *seq at the first damaged entry. */
int tape_cyc_walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last, int64_t *last_ts);
/* The end of data is at `pos`, header word `h` there: offset of the first
 * non-zero byte after it (past a dead writer's unfinished entry) up to the
 * end of the file, or 0 when only zeros follow. */
uint64_t tape_cyc_dirty_after(tape_cyc *y, uint64_t pos, uint32_t h);
/* After an end-of-file marker at `pos` with non-zero bytes after it: 1 when
 * another marker lies further on with nothing but zeros after it (the one at
 * pos was written over entries, not by the roll), else 0 (garbage after a
 * seal, which readers never read). Reads up to the end of the file's data. */
int tape_cyc_seal_further(tape_cyc *y, uint64_t pos);
/* Offset of the indexed entry of block b (seq b*S), 0 when absent. */
uint64_t tape_cyc_block_pos(tape_queue *q, tape_cyc *y, uint64_t b);
/* The end of data by entry headers alone, from the first entry: what a
 * damaged cycle seems to hold. */
int tape_cyc_header_walk(tape_cyc *y, uint64_t *pos, uint64_t *seq, uint32_t *last);

/* The end of data as a writer may append after it: tape_cyc_find_end, then
 * checks that the index agrees with the data there (the last indexed entry
 * is intact, or is the end; no slot names a place past the end) and that only
 * zeros follow (past a dead writer's unfinished entry). TAPE_ECORRUPT when
 * not: appending there could give an index used before or one no reader
 * reaches. Every entry is checked from (ok_pos, ok_seq), the checked point
 * (docs/FORMAT.md, "Page 1"), or from the cycle's first entry when ok_pos
 * is 0, and at least the last block of entries: damage there, which would
 * stop a reader going forward before the end, is TAPE_ECORRUPT too. */
int tape_cyc_writer_end(tape_queue *q, tape_cyc *y, uint64_t ok_pos, uint64_t ok_seq,
                        uint64_t *pos, uint64_t *seq, uint32_t *hdr_at_end, int64_t *last_ts);
/* 1 when an index slot (or index array) names a place for an entry at or
 * past `end_seq`, the end of data being at `end_pos` (*bad_seq: the first
 * seq it stands for); 0 when none does; or TAPE_ECORRUPT (a damaged array). */
int tape_cyc_stray_slot(tape_queue *q, tape_cyc *y, uint64_t end_pos, uint64_t end_seq,
                        uint64_t *bad_seq);

/* Holding the write lock: make the writable y a version-2 file, on disk (a
 * no-op when it is one), before an entry with attributes goes into it.
 * 0, or -errno of fdatasync, or the error of a fault (tape_view_damage). */
int tape_cyc_upgrade(tape_cyc *y);

/* 1 when the open file y was removed (no link left) or, with by_name, when
 * its name now leads to another file or to none. */
int tape_cyc_gone(tape_queue *q, const tape_cyc *y, int by_name);

/* Cycles that have a file, ascending; *out is malloc'ed. */
int tape_list_cycles_alloc(tape_queue *q, int64_t **out, size_t *n);
/* The smallest existing cycle > c (dir > 0) or largest < c (dir < 0); -1 none. */
int64_t tape_neighbour_cycle(tape_queue *q, int64_t c, int dir);

/* ---- the appender's clock (clock.c) ------------------------------------ */

#define TAPE_CLOCK_SPAN_NS 100000 /* the counter is trusted this long */

/* CLOCK_REALTIME, counted forward with the time-stamp counter between
 * readings; guarded by the write lock. */
typedef struct tape_clock {
    uint64_t k_tsc;            /* counter at the last reading (anchor) */
    int64_t k_ns;              /* CLOCK_REALTIME then */
    uint64_t k_span;           /* ticks past k_tsc still trusted; 0: none */
    uint64_t k_mult;           /* ns per tick << 32, 0 until measured */
    uint64_t k_cal_tsc;        /* where the rate is measured from */
    int64_t k_cal_ns;
    int64_t k_cal_next;        /* measure it again this far from there */
    uint64_t k_span_ticks;     /* TAPE_CLOCK_SPAN_NS in ticks at k_mult */
    uint64_t k_best;           /* the tightest reading seen, in ticks */
    int k_usable;              /* the counter may be used at all */
} tape_clock;

void tape_clock_init(tape_clock *k);
/* Read CLOCK_REALTIME and re-anchor. */
int64_t tape_clock_read(tape_clock *k);

/* Now, ns since the epoch: at most TAPE_CLOCK_SPAN_NS past a reading of
 * CLOCK_REALTIME made before the call. */
static inline int64_t tape_clock_now(tape_clock *k)
{
#if defined(__x86_64__)
    /* k_span stays 0 where the counter must not be read (see clock.c) */
    if (k->k_span) {
        uint64_t d = __builtin_ia32_rdtsc() - k->k_tsc;
        if (d < k->k_span)
            return k->k_ns + (int64_t)((d * k->k_mult) >> 32);
    }
#endif
    return tape_clock_read(k);
}

/* ---- the queue ------------------------------------------------------------ */

/* The appending side of a queue handle (not used when read-only): what this
 * process knows about the end of the newest cycle, and the process-local
 * locks and tokens it appends with. Members are guarded by the shared write
 * lock (tape_lock) unless said otherwise. */
typedef struct tape_writer {
    pthread_mutex_t w_mu;      /* guards w_token and w_pid while they are set up,
                                * every change of w_y's mapping (w_y.y_v.v_mu
                                * points here), and the prefaulter's pf_running,
                                * pf_alloc and pf_failed (its thread holds it
                                * while it works on w_y) */
    uint32_t w_token;          /* 0 until the first appender, and in a fork child
                                * after tape_queue_after_fork (set under w_mu;
                                * atomic: tape_lock reads it without) */
    uint32_t w_pid;            /* (w_mu) */
    atomic_int w_poisoned;     /* a sync failed (1) or the writer's file was
                                * removed or replaced (TAPE_LOST): appends
                                * refused (atomic) */
    tape_cyc w_y;              /* y_cycle -1: none open */
    uint64_t w_pos;
    uint64_t w_last_hdr;       /* where this writer's last entry starts (0: not
                                * known); its header is never 0 while the file is whole */
    uint64_t w_seq;
    int64_t w_lo_ns, w_hi_ns;  /* the time span of w_y's cycle */
    uint64_t w_gen;            /* hint generation this state matches */
    int w_valid;
    int w_strict;              /* the last end was found by tape_cyc_writer_end */
    int w_checked;             /* this handle found an end itself, checking every
                                * entry on the way: from then on it may trust the
                                * hints of live writers */
    uint64_t w_ready;          /* the file is allocated up to here (may lag) */
    uint64_t w_kick_at;        /* next offset at which to wake the prefaulter */
    tape_clock w_clock;        /* timestamps of appends given none */
} tape_writer;

#define TAPE_LOST 2 /* w_poisoned: the writer's file is not the queue's any more */

/* What tape_appender_sync must flush besides the newest cycle: the cycles the
 * writer left since the last complete sync. */
typedef struct tape_sync_state {
    pthread_mutex_t sy_mu;     /* guards the two below */
    int64_t sy_from;           /* lowest cycle the writer left since the last
                                * complete sync (-1: none) */
    uint64_t sy_epoch;         /* counts the writer's leaving cycles */
} tape_sync_state;

/* The cycles that have a file, as last listed (tape_list_cycles_alloc). */
typedef struct tape_cycle_cache {
    pthread_mutex_t cc_mu;     /* guards the four below */
    int64_t *cc_list;
    size_t cc_n;
    uint64_t cc_mod;           /* ms_modcount when listed */
    int cc_valid;
} tape_cycle_cache;

/* The newest cycle file as tape_cycle_info_get last read it, kept open so
 * that asking again (last_index, count...) maps and faults in nothing new.
 * The newest cycle is never removed; once a newer one exists, the next
 * question closes it (an idle handle holds it until then, as an idle tailer
 * holds its cycle). */
typedef struct tape_kept_view {
    pthread_mutex_t kv_mu;     /* guards the two below */
    tape_cyc kv_y;
    uint64_t kv_trimmed;       /* the end of data at its last release */
} tape_kept_view;

/* The prefaulter thread (prefault.c). The writer kicks it through the atomics
 * without taking a lock; the rest is guarded by the writer's w_mu. */
typedef struct tape_prefaulter {
    pthread_t pf_thread;
    int pf_running;            /* (w_mu) */
    _Atomic int pf_stop;
    _Atomic uint64_t pf_pos;   /* the writer's offset at its last kick */
    _Atomic uint64_t pf_last;  /* w_last_hdr at its last kick */
    _Atomic uint64_t pf_want;  /* allocate and fault in up to here */
    _Atomic uint32_t pf_kicks; /* futex word: bumped by every kick */
    _Atomic int pf_sleeping;   /* the prefaulter waits on pf_kicks */
    uint64_t pf_failed;        /* a want the prefaulter could not reach (w_mu) */
    uint64_t pf_alloc;         /* the prefaulter has allocated up to here (w_mu) */
    _Atomic uint64_t pf_ready; /* allocated (and faulted in) up to here */
} tape_prefaulter;

/* The key directory, tape.keys, as this handle maps it (keys.c). */
typedef struct tape_keydir {
    pthread_mutex_t kd_mu;     /* guards the two below; taken after the write lock */
    uint8_t *kd_map;           /* NULL: not mapped */
    size_t kd_len;
} tape_keydir;

/* A queue handle: what tape_open found (set once, read by any thread), then
 * one member per job, each with its own lock. */
struct tape_queue {
    char *q_path;
    int q_dirfd;
    int q_meta_fd;
    uint8_t *q_meta;           /* the 64 KiB mapping */
    int q_meta_guard;          /* its slot in guard.c's registry, -1 none */
    tape_meta_hdr *q_hdr;
    tape_meta_shared *q_sh;
    int q_read_only;
    int q_small_pages;         /* oo_small_pages: no MADV_HUGEPAGE on writers' views */
    tape_roll q_roll;

    tape_writer q_w;           /* appending */
    tape_sync_state q_sync;    /* flushing */
    tape_cycle_cache q_cyc;    /* listing cycles */
    tape_kept_view q_view;     /* questions about the newest cycle */
    tape_prefaulter q_pf;      /* allocating ahead of the writer */
    tape_keydir q_keys;        /* key -> newest index */
    /* Wake-ups (meta.c): the shared page, writable, where tape_wait announces
     * a sleeper: q_sh, or on a read-only handle a page of its own mapped from
     * a second, writable open of tape.meta (q_wake_map, q_wake_len), or NULL
     * when tape.meta cannot be written (tape_wait then polls). */
    tape_meta_shared *q_wake;
    void *q_wake_map;
    size_t q_wake_len;
};

/* The metadata file (meta.c): create it in dirfd (racing creators: one
 * wins; 1 when this call made it, 0 when another did, TAPE_ENOTQUEUE when
 * the directory holds something else); check the
 * mapped header against the options and set q_roll from it. */
int tape_meta_create(int dirfd, const tape_open_opts *o, const tape_roll_info *ri);
/* The directory dirfd names, opened to read (opendir's DIR, its own file
 * descriptor): NULL and errno on failure. */
DIR *tape_dir_open(int dirfd);
/* 1 when the directory holds nothing but (stale) temporary metadata files. */
int tape_dir_is_empty(int dirfd);
int tape_meta_validate(tape_queue *q, const tape_open_opts *o);

/* TAPE_ECORRUPT once an access to tape.meta's mapping faulted (the file
 * was truncated under this handle; a zero page stands in for what faulted),
 * else rc: from then on nothing of this handle that tape.meta says is to be
 * believed. One relaxed load. */
static inline int tape_meta_guarded(const tape_queue *q, int rc)
{
    return tape_guard_hit(q->q_meta_guard) ? TAPE_ECORRUPT : rc;
}

/* Lock protocol (meta.c). *recovered is set when the lock was taken over from
 * a dead owner: the writer state must then be rebuilt. TAPE_ECORRUPT (and
 * no lock) once tape.meta's mapping faulted (tape_meta_guarded). */
int tape_lock(tape_queue *q, int *recovered);
void tape_unlock(tape_queue *q);
int tape_register_writer(tape_queue *q);
int tape_lock_meta(tape_queue *q);
int tape_meta_after_fork(tape_queue *q);
/* A lock word in a shared mapping whose owner's token T is alive while the
 * owner holds the OFD lock on byte base + T of file fd (the write lock, a
 * consumer group's lock): the contended acquire (tok: the caller's token;
 * *recovered set when taken over from a dead owner) and the release. The
 * uncontended acquire is the caller's compare-and-swap of 0 to tok. */
void tape_shlock_slow(uint32_t *w, int fd, off_t base, uint32_t tok, int *recovered);
void tape_shlock_release(uint32_t *w);

/* Wake-ups (meta.c): the writer's half after publishing; the reader's half,
 * announce then (finding no data) sleep on the value announced. */
void tape_wake_readers(tape_queue *q);
/* Set q_wake: q_sh on a writable handle; on a read-only one, the shared page
 * mapped writable when tape.meta can be opened to write (else NULL).
 * tape_wake_unmap undoes it. Never fail. */
void tape_wake_map(tape_queue *q);
void tape_wake_unmap(tape_queue *q);
/* (holding q_wake) */
uint32_t tape_announce_sleeper(tape_queue *q);
int tape_sleep_readers(tape_queue *q, uint32_t seen, int64_t timeout_ns);

/* Named tailers (named.c): the slot of `name`, claimed if needed; *out is
 * NULL on a read-only queue that has none. */
int tape_named_claim(tape_queue *q, const char *name, tape_named_slot **out);
/* Holding the write lock: stored positions beyond `end`, the index the next
 * entry gets, are brought back to it (after a power cut lost their data). */
void tape_named_clamp(tape_queue *q, int64_t end);

/* The key directory (keys.c). Holding the write lock, before writing
 * entries with a key: the directory mapped and up to date, marked as being
 * changed; after publishing them: the newest one's index recorded for its
 * key (index -1: none was written) with where it starts in its cycle file
 * (pos; 0: not known), and the mark cleared. */
void tape_keys_init(tape_queue *q);
void tape_keys_close(tape_queue *q);
int tape_keys_begin(tape_queue *q);
int tape_keys_apply(tape_queue *q, const tape_attrs *at, int64_t index, uint64_t pos);
/* After tape_keys_begin: the newest entry with at's key, -1 none (or deleted). */
int64_t tape_keys_newest(tape_queue *q, const tape_attrs *at);
/* At open (a writable handle of a keyed queue): remove the tape.keys.tmp.<pid>
 * files of writers killed while writing a new directory, holding the write
 * lock (only when there are some). Never fails: what stays is removed later. */
void tape_keys_sweep(tape_queue *q);

/* tape_read of entry `index` at byte `pos` of its cycle file, a hint kept
 * elsewhere (the key directory's), without locating it (read.c): 1 and *e as
 * tape_read fills them (the tailer after it), or 0 when the hint does not
 * hold: another cycle than the tailer's, a tailer reading backward, no entry
 * `index` there (its checksum covers its sequence number: a stale hint never
 * reads as it). The caller then moves by index. */
int tape_read_at(tape_tailer *t, int64_t index, uint64_t pos, tape_entry *e);

/* Prefaulter (prefault.c). */
int tape_prefault_start(tape_queue *q);
void tape_prefault_stop(tape_queue *q);
/* The writer's kick at `pos`, the cycle having received `received` bytes:
 * returns how far it goes before it kicks again. */
uint64_t tape_prefault_kick(tape_queue *q, uint64_t pos, uint64_t received);

/* The futex system call, which the C library does not wrap: FUTEX_WAIT and
 * FUTEX_WAKE on a word of tape.meta, shared between processes (the lock word,
 * the readers' wake-up word); the _PRIVATE ops on a word of this process (the
 * prefaulter's). ts: a relative timeout, or NULL. */
static inline long tape_futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

int64_t tape_now_ns(void);                    /* clock.c: CLOCK_REALTIME */
int64_t tape_mono_ns(void);                   /* clock.c: CLOCK_MONOTONIC, for intervals */
int64_t tape_floor_div(int64_t a, int64_t b); /* roll.c */

#define TAPE_MAP_MIN ((size_t)256 << 20)
#define TAPE_MAP_MIN_WRITER ((size_t)16 << 30) /* address space only: moving a
                                                 * writer's mapping stalls it */
/* Growing the writer's file (map.c, prefault.c). A new cycle file has room
 * for its first index array and TAPE_START_ROOM bytes of entries; the
 * prefaulter then keeps twice what the cycle received ahead of the writer
 * (at least TAPE_START_ROOM, at most TAPE_PREFAULT_AHEAD), so a queue with
 * a few entries stays small. It faults pages in by TAPE_FAULT_PIECE at most
 * and allocates at most TAPE_GROW_STEP at a time; the writer's own growth
 * (tape_view_grow) doubles the file up to TAPE_GROW_STEP, then adds whole
 * steps. */
#define TAPE_START_ROOM ((uint64_t)32 << 10)
#define TAPE_FAULT_PIECE ((uint64_t)256 << 10)
#define TAPE_GROW_STEP ((uint64_t)2 << 20)
#define TAPE_PREFAULT_AHEAD ((uint64_t)16 << 20)
/* A transparent huge page on x86-64 and on arm64 with 4 KiB pages. With other
 * page sizes the alignments using it are merely not those of huge pages. */
#define TAPE_HUGE ((uint64_t)2 << 20)
#define TAPE_TRIM_WINDOW ((uint64_t)16 << 20)


/* ---- consumer groups (group.c; FORMAT.md "Consumer groups") ---------------- */

#define TAPE_GROUP_VERSION 3u  /* 1: before the deferred range, 2: before the later list; opened alike */
#define TAPE_GROUP_DIR "groups"
#define TAPE_GROUP_SUFFIX ".group"
#define TAPE_GROUP_SHARED_OFF 4096u
#define TAPE_GROUP_CONS_OFF 8192u
#define TAPE_GROUP_SLOTS_OFF 32768u
#define TAPE_GROUP_LATER_OFF (TAPE_GROUP_SLOTS_OFF + TAPE_GROUP_SLOTS * 48u)
#define TAPE_GROUP_SIZE_V2 TAPE_GROUP_LATER_OFF /* a file of version 1 or 2 ends there */
#define TAPE_GROUP_SIZE (TAPE_GROUP_LATER_OFF + TAPE_GROUP_LATER * 32u)

/* Page 0 of a group file: written at creation; a file of version 1 or 2
 * becomes version 3 (grown to hold the later list) before its first deferred
 * or nacked-for-later entry (group.c, upgrade). */
typedef struct tape_group_hdr {
    char gh_magic[8];          /* "TAPEGRUP" */
    uint32_t gh_version;
    uint32_t gh_size;          /* TAPE_GROUP_SIZE */
    uint32_t gh_slots;         /* TAPE_GROUP_SLOTS */
    uint32_t gh_consumers;     /* TAPE_GROUP_CONSUMERS */
    char gh_name[TAPE_NAME_MAX];
    int64_t gh_created_ns;
    uint32_t gh_crc;           /* over bytes [0, offsetof(gh_crc)) */
} tape_group_hdr;

/* The deferred range (group.c, "deferred entries"): entries from df_first - 1
 * up to the position that were not yet due when the position passed them and
 * the table had no room to spare, found again by a pass over the log. An entry
 * in it is deferred when its not_before exceeds df_hi below df_cursor, df_lo
 * from df_cursor on. Changed as a whole: the other copy is written, then
 * gs_defer_sel flips. All zero: none. */
typedef struct tape_group_defer {
    int64_t df_first;          /* the first deferred entry + 1, 0 none */
    int64_t df_cursor;         /* a pass: the next entry it looks at; else df_first - 1 */
    int64_t df_lo;
    int64_t df_hi;             /* a pass's horizon: the time it started */
    int64_t df_due;            /* no deferred entry is due before this */
    int64_t df_pfirst;         /* a pass: the first entry it left deferred + 1, 0 none */
    int64_t df_pdue;           /* a pass: the earliest due time of those */
    uint32_t df_pass;          /* 1: a pass is under way */
    uint32_t df_pad;
    int64_t df_dupe;           /* 1 + the index a pass moved into the table but
                                * not past the cursor (killed): skipped (0: none) */
} tape_group_defer;

/* The count of a deferred range, a pair written and selected with
 * gs_defer's (zeros in a file written before it: counted from the next pass). */
typedef struct tape_group_defer_n {
    int64_t dn_count;          /* entries deferred in the range now */
    int64_t dn_pcount;         /* a pass: those it left deferred */
    int64_t dn_last;           /* the last entry counted in (-1 + 1: 0 none) */
} tape_group_defer_n;

/* An entry nacked for later, out of the table until due (group.c, "later"). */
typedef struct tape_group_later {
    int64_t gl_index;
    int64_t gl_due;            /* when it is due */
    int64_t gl_dl;             /* as gt_dl */
    uint32_t gl_attempt;       /* deliveries so far */
    uint32_t gl_state;         /* 0 free, 1 in use (written last) */
} tape_group_later;

/* Page 1: the shared state, changed under gs_lock. */
typedef struct tape_group_shared {
    uint32_t gs_lock;          /* 0 free; owner token (consumer slot + 1); waiters bit */
    uint32_t gs_lock_pid;
    uint32_t gs_settings_crc;  /* over gs_set */
    uint32_t gs_reserved;
    tape_group_settings gs_set;
    int64_t gs_last;           /* last entry taken from the log, -1 none */
    uint64_t gs_gen;           /* last claim generation given */
    uint64_t gs_acked;
    int64_t gs_min_due;        /* no slot is due before this (a lower bound) */
    int64_t gs_next_check;     /* next look for dead consumers (now_ns) */
    uint32_t gs_hi;            /* slots at or above are free */
    uint32_t gs_free_hint;     /* slots below are in use */
    uint32_t gs_busy;          /* slots in use (derived) */
    uint32_t gs_dead;          /* slots dead (derived) */
    uint64_t gs_redriven;      /* the last dead letter redriven + 1, 0 none */
    int64_t gs_origin;         /* the index the group was created at (kept by clamp), 0 none */
    uint32_t gs_defer_sel;     /* which of gs_defer is current (the other is written first) */
    uint32_t gs_reserved2;
    tape_group_defer gs_defer[2];
    tape_group_defer_n gs_defer_n[2]; /* at 384: with gs_defer[k] */
    uint32_t gs_move_slot;     /* a move between table and later list under way: */
    uint32_t gs_move_later;    /* its table slot and later slot, */
    uint32_t gs_move;          /* 0 none, 1 into the later list, 2 back into the table */
    uint32_t gs_later_n;       /* later slots in use (derived) */
    uint32_t gs_later_hi;      /* later slots at or above are free (derived) */
    uint32_t gs_later_free;    /* later slots below are in use (derived) */
    int64_t gs_later_due;      /* no later entry is due before this (derived) */
} tape_group_shared;

/* A consumer's slot; slot k's liveness byte is TAPE_LIVE_BASE + k + 1. */
typedef struct tape_group_cons {
    char gc_name[TAPE_NAME_MAX];
    uint32_t gc_state;         /* 0 free, 1 consumer (2: a group handle of an older version) */
    uint32_t gc_pid;
    uint64_t gc_reserved;
} tape_group_cons;

/* An entry in the table (48 bytes). */
typedef struct tape_group_slot {
    int64_t gt_index;
    int64_t gt_due;            /* claimed: deadline; ready: due time */
    uint64_t gt_gen;
    int64_t gt_dl;             /* redriven: index of its copy in the dead letters, else -1 */
    uint32_t gt_state;         /* TAPE_GS_* (written last) */
    uint32_t gt_owner;         /* consumer slot + 1, 0 none */
    uint32_t gt_attempt;
    uint32_t gt_reason;        /* TAPE_GR_* */
} tape_group_slot;

struct tape_group {
    tape_queue *gp_q;
    int gp_fd;
    uint8_t *gp_map;            /* TAPE_GROUP_SIZE bytes */
    tape_group_shared *gp_sh;
    tape_group_cons *gp_cons;
    tape_group_slot *gp_slots;
    tape_group_later *gp_later;  /* TAPE_GROUP_LATER of them (the file holds them from version 3) */
    int gp_guard;               /* its slot in guard.c's registry */
    uint32_t gp_token;          /* the consumer slot + 1 whose byte it holds while locked, else 0 */
    int gp_sync;
    int gp_read_only;
};

struct tape_consumer {
    tape_group *cn_g;
    int cn_fd;                  /* its own open of the group file: holds its byte */
    pid_t cn_pid;               /* the process that opened it (a fork child's copy is not its own) */
    uint32_t cn_token;          /* slot + 1 */
    int64_t cn_after;           /* its tailer stands just after this entry (-2 unknown) */
};

#endif /* TAPE_INT_H */
