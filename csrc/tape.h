/* tape.h - the C core of tape, an embedded, memory-mapped, persisted log.
 *
 * This header is the manual of the core. The on-disk format is described in
 * docs/FORMAT.md; this file describes the calls.
 *
 * Concepts
 *   A queue is a directory holding one metadata file (tape.meta) and one file
 *   per roll cycle (e.g. 20261121.tape for a daily cycle). Entries are appended
 *   to the newest cycle file; an entry is identified by its 64-bit index,
 *   (cycle << seq_bits) | sequence-within-cycle.
 *
 * Conventions
 *   - Every call returning int returns 0 (or a documented non-negative value)
 *     on success, or a negative error code: -errno for system errors (e.g.
 *     -ENOSPC) or one of the TAPE_E* codes below. tape_strerror() turns any of
 *     them into text. There is no global error state.
 *   - Each function lists the errors that can reach its caller. Four groups
 *     recur, named in brackets:
 *       [list]  listing the queue directory: -EACCES, -EMFILE, -ENFILE,
 *               -ENOMEM, -EIO.
 *       [open]  opening and mapping a cycle file: -EACCES, -EMFILE, -ENFILE,
 *               -ENOMEM, -EIO; TAPE_ECORRUPT when its header is damaged
 *               or it is not a regular file (a directory, a link to one),
 *               TAPE_EVERSION when it is of another format version.
 *       [lock]  becoming a writer of the queue (the first append or change
 *               through a handle): -EAGAIN (no free writer token), -ENOLCK,
 *               -EINVAL (the filesystem has no OFD locks).
 *       [grow]  creating, growing or mapping the newest cycle file: -ENOSPC,
 *               -EDQUOT, -EFBIG, -EIO, -EROFS, and those of [open].
 *   - Struct members carry an owner prefix, one per struct, so a line of code
 *     tells whose state it touches. Public (this header): ri_ roll info,
 *     oo_ open options, qi_ queue info, ci_ cycle info, e_ entry,
 *     a_ entry attributes (internally also the appender, append.c),
 *     vr_ verify report, gset_ group settings, gi_ group info, d_ delivery.
 *     Internal (tape_int.h and the file named): q_ queue,
 *     w_ writer (its appending side), sy_ sync bookkeeping, cc_ cycle-list
 *     cache, kv_ kept view, pf_ prefaulter, m_ metadata header,
 *     ms_ metadata shared page, n_ named tailer slot, c_ cycle file header,
 *     r_ roll cycle in use, y_ open cycle file, v_ file view, p_ its pin
 *     (map.c), k_ clock, a_ appender (append.c), t_ tailer and mk_ its batch marks (read.c),
 *     vc_ verify walk (verify.c), gp_ group handle, cn_ consumer, gh_ group
 *     file header, gs_ its shared page, gc_ its consumer slot, gt_ its table
 *     entry (group.c), fr_ fault rule and fe_ fault errno
 *     (fault.c), g_ guard slot (guard.c). Functions: tape_ everywhere; tf_ for the system calls a
 *     test can make fail (fault.h).
 *
 * Caveats
 *   - A tape_queue and its appenders may be used from several threads at once.
 *     A tape_tailer may not: give each thread its own tailer.
 *   - Which calls may block (a binding that holds a lock of its own, as the
 *     Python GIL, lets go of it around these, or through
 *     tape_set_wait_hooks): tape_append... wait for the write lock while
 *     another thread or process holds it (a dead owner is found within about
 *     a millisecond); tape_appender_sync waits for the disk; tape_wait
 *     waits for a writer; consumer groups' calls wait for the group's lock;
 *     claiming or forgetting a named tailer's slot waits for the write lock;
 *     opening, verifying and repairing read whole files. tape_read...,
 *     tape_peek_many..., tape_tailer_advance and the tailer's moves wait for
 *     no other thread or process.
 *   - Pointers returned by tape_read() point into the tailer's own copy of
 *     the payload (made under the SIGBUS guard) and stay valid only until
 *     the next call on the same tailer; those of tape_read_pinned() point
 *     into the mapped file and stay valid until the pin is released.
 *   - Appending takes a lock word kept in the mapped metadata file; its
 *     owner's death is detected through an OFD lock the owner holds (see
 *     docs/FORMAT.md, "The write lock"), so a killed writer never blocks the
 *     others for more than a few milliseconds.
 *   - A queue must live on a local filesystem that supports shared mmap and
 *     open file description locks (ext4, xfs, btrfs, tmpfs). Where fallocate
 *     is missing (EOPNOTSUPP: FUSE, NFS, 9p) files are extended by writing
 *     zeros at their end instead, so a full disk is still -ENOSPC.
 *   - SIGBUS. A mapped page the file no longer backs (another process
 *     truncated it) or that the filesystem cannot supply (a full tmpfs asked
 *     for a page of a hole) raises SIGBUS when touched. On the first mapping,
 *     tape installs a SIGBUS handler (guard.c), chained to the one installed
 *     before it: a fault inside one of tape's mappings gets a zero page in
 *     place of the missing one, and the call that touched it returns an
 *     error instead of its result; any other fault goes to the earlier
 *     handler, or to the default action. The error is TAPE_ECORRUPT when the
 *     file now ends before the page, -ENOSPC when the filesystem is full,
 *     else -EIO, and, per call:
 *       tape_read, tape_read_pinned, tape_read_many, tape_peek_many,
 *         tape_wait, the tailer's moves and tape_tailer_advance: the error,
 *         no entry (entries of a batch read before the fault are returned;
 *         the next call meets the fault again); the position does not move.
 *         The tailer maps the file anew for its next call. A pinned mapping
 *         that faults later reads as zeros there (tape_pin_damaged).
 *       tape_append, tape_append_if, tape_append_many: the error and no
 *         index; an entry whose copy met the fault is not published (it is
 *         left as an unfinished entry, as a killed writer's); entries of a
 *         batch published before stay (*written). The next append maps the
 *         file anew and finds the cycle damaged (TAPE_ECORRUPT) if it was
 *         truncated.
 *       tape_verify, tape_verify_progress: the error (a partial report).
 *       tape_repair_tail, tape_repair, tape_cycle_info_get, tape_first_index,
 *         tape_last_index, tape_count, tape_remove_cycle: the error.
 *       The prefaulter thread stops allocating ahead (the writer's own
 *         appends report what it met); a failed MADV_POPULATE_WRITE (EFAULT,
 *         ENOMEM, EIO) stops it the same way.
 *       tape.meta truncated under a handle: every later call of that handle
 *         that takes the write lock or reads (tape_append..., tape_read...,
 *         tape_verify, tape_repair_tail, tape_repair, named tailers) returns
 *         TAPE_ECORRUPT; open the queue again once the file is whole.
 */
#ifndef TAPE_H
#define TAPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error codes (negative, below every -errno) ------------------------ */

#define TAPE_EBASE        (-30000)
#define TAPE_ECORRUPT     (-30001) /* a file is damaged: bad magic, CRC, length */
#define TAPE_EVERSION     (-30002) /* format version this build cannot read */
#define TAPE_ENOTQUEUE    (-30003) /* directory exists, is not empty, has no tape.meta */
#define TAPE_EINCOMPAT    (-30004) /* roll cycle or codec differs from the stored ones */
#define TAPE_EREADONLY    (-30005) /* write attempted on a queue opened read-only */
#define TAPE_ETOOBIG      (-30006) /* payload larger than TAPE_MAX_PAYLOAD */
#define TAPE_ECYCLEFULL   (-30007) /* the cycle holds its maximum number of entries */
#define TAPE_EPOISONED    (-30008) /* an earlier flush failed; reopen the queue */
#define TAPE_EINVAL       (-30009) /* an argument is out of range */
#define TAPE_EROLLCYCLE   (-30010) /* unknown roll cycle name */
#define TAPE_ECLOCK       (-30011) /* timestamp outside the range of the roll cycle */
#define TAPE_ECONFLICT    (-30012) /* tape_append_if: the last entry is not the expected one */
#define TAPE_ECLOSED      (-30013) /* the appender was shut (tape_appender_shut) */
#define TAPE_ELIMIT       (-30014) /* a limit of the queue is reached (e.g. TAPE_NAMED_MAX) */
#define TAPE_ESTALE       (-30015) /* a group delivery's claim has lapsed (tape_group_ack...) */

/* ---- limits ------------------------------------------------------------- */

#define TAPE_MAX_PAYLOAD  ((uint32_t)0x3FFFFFF0u) /* about 1 GiB */
#define TAPE_NAME_MAX     48 /* roll cycle and codec names, NUL included */
#define TAPE_PARAMS_MAX   32768 /* codec parameters blob (e.g. an Avro schema) */
#define TAPE_KEY_MAX      1024u /* bytes of an entry's key (tape_attrs) */

/* Turn any return code of this library (or a -errno) into a static string.
 * Never fails: an unknown code gives a generic text. */
const char *tape_strerror(int rc);

/* ---- roll cycles ---------------------------------------------------------- */

typedef struct tape_roll_info {
    const char *ri_name;      /* "daily" */
    int64_t ri_length_ms;     /* length of one cycle */
    int ri_seq_bits;          /* index shift: index = cycle << ri_seq_bits | seq */
    int ri_index_count_log2;  /* slots per index array and in index2index */
    int ri_index_spacing_log2;/* every 2^k-th entry is indexed */
    const char *ri_format;    /* strftime pattern of the file name (UTC) */
} tape_roll_info;

/* The table of roll cycles, ended by an entry whose ri_name is NULL. */
const tape_roll_info *tape_roll_cycles(void);

/* ---- queue -------------------------------------------------------------- */

typedef struct tape_queue tape_queue;

typedef struct tape_open_opts {
    const char *oo_roll_cycle;   /* NULL: the stored one, or "daily" when creating */
    const char *oo_codec;        /* NULL: the stored one, or "msgpack" when creating */
    const void *oo_params;       /* codec parameters stored at creation, may be NULL */
    uint32_t oo_params_len;
    int oo_read_only;            /* map read-only; appenders are refused */
    int oo_create;               /* create the directory and metadata if missing */
    int64_t oo_epoch_ms;         /* shift of the roll moment, stored at creation */
    int oo_small_pages;          /* no huge pages for appending (see below) */
} tape_open_opts;

/* Open (and, with oo_create, create) the queue in directory `path`.
 *
 * Appending maps the newest cycle file with MADV_HUGEPAGE, so the kernel
 * keeps its page cache in 2 MiB pages where it can: one fault (the
 * prefaulter's) per 2 MiB instead of 512, and far fewer TLB misses. A sync
 * (tape_appender_sync) then writes each dirty 2 MiB page whole, however little
 * of it changed, so a queue synced after every write or every few
 * milliseconds should set oo_small_pages, which leaves page sizes to the
 * kernel (4 KiB here, for pages an append fills). The page cache is shared:
 * whichever process first faults a stretch of the file decides its pages,
 * so all writers of such a queue should set it. Readers are not affected.
 * Errors:
 *   -ENOENT          the directory or tape.meta is missing, and not oo_create
 *                    (or oo_read_only)
 *   TAPE_ENOTQUEUE   the directory holds other files but no tape.meta
 *   TAPE_EINCOMPAT   oo_roll_cycle or oo_codec differs from the stored one
 *   TAPE_EROLLCYCLE  oo_roll_cycle (or the stored roll cycle) is unknown
 *   TAPE_EINVAL      oo_codec is empty or TAPE_NAME_MAX bytes or longer, or
 *                    oo_params_len exceeds TAPE_PARAMS_MAX
 *   TAPE_ECORRUPT    tape.meta has the wrong size or a damaged header
 *   TAPE_EVERSION    tape.meta is of another format version
 *   -ENAMETOOLONG, -ENOTDIR, -EACCES, -EROFS, -ELOOP  the path
 *   -ENOSPC, -EDQUOT, -EIO  creating tape.meta
 *   -EMFILE, -ENFILE, -ENOMEM
 * A failed open leaves nothing behind: the directories it made and the
 * tape.meta it created are removed. */
int tape_open(const char *path, const tape_open_opts *opts, tape_queue **out);

/* Close the queue. Every appender and tailer of it must be closed first.
 * q may be NULL. */
void tape_close(tape_queue *q);

/* Call in a fork child, for each queue it inherited open, once fork()
 * has returned and before anything else of the queue (not from a
 * pthread_atfork handler: it starts a thread). The child lets go of its copy
 * of the parent's hold on the write lock's liveness byte (it reopens
 * tape.meta under the same descriptor), so that the parent's death is seen
 * while the child lives, and its next write takes a token of its own; the
 * handle's process-local locks are made anew (another thread of the parent,
 * such as the prefaulter, may have held one at the fork), and a writer's
 * prefaulter thread is started again. Without it, a child that outlives a
 * parent killed holding the write lock keeps every writer waiting. Errors:
 * -EMFILE, -ENFILE, -ENOMEM, -EAGAIN (the child keeps the parent's hold, or
 * writes without a prefaulter). */
int tape_queue_after_fork(tape_queue *q);

typedef struct tape_queue_info {
    uint32_t qi_version;
    char qi_roll_cycle[TAPE_NAME_MAX];
    char qi_codec[TAPE_NAME_MAX];
    int qi_seq_bits;
    int64_t qi_epoch_ms;
    int64_t qi_created_ns;
    int64_t qi_lowest_cycle;     /* -1 when no cycle file exists */
    int64_t qi_highest_cycle;    /* -1 when no cycle file exists */
    uint64_t qi_modcount;        /* bumped on every roll, removal and tail repair */
    int64_t qi_last_timestamp;   /* newest entry's timestamp (ns), 0 if none */
    uint32_t qi_params_len;
} tape_queue_info;

/* Describe the queue. Always 0: it reads the mapped metadata only. */
int tape_queue_info_get(tape_queue *q, tape_queue_info *out);

/* Copy the codec parameters blob (up to cap bytes). Returns its length (which
 * may exceed cap); never fails. */
int tape_queue_params(tape_queue *q, void *buf, uint32_t cap);

typedef struct tape_cycle_info {
    int64_t ci_cycle;
    int64_t ci_first_index;      /* -1 when the cycle holds no entry */
    int64_t ci_last_index;       /* -1 when the cycle holds no entry */
    uint64_t ci_entries;
    uint64_t ci_bytes;           /* bytes occupied by entries (headers included) */
    uint64_t ci_file_bytes;      /* the file's size, preallocation included */
    int ci_sealed;               /* 1 when the end-of-file marker is written */
    int ci_damaged;              /* 1 when a checksum failed: the counts come from
                                  * the entry headers alone (run tape_verify) */
} tape_cycle_info;

/* List the cycles that have a file, ascending. Writes up to `cap` cycle
 * numbers and returns how many exist (which may be more than cap).
 * Errors: [list]. */
int64_t tape_list_cycles(tape_queue *q, int64_t *cycles, size_t cap);

/* Describe one cycle file, also a damaged one (ci_damaged).
 * Errors: -ENOENT when it has no file; TAPE_EINVAL when `cycle` is out of the
 * roll cycle's range; [open] (TAPE_ECORRUPT only when its file header is
 * unreadable). */
int tape_cycle_info_get(tape_queue *q, int64_t cycle, tape_cycle_info *out);

/* Remove the file of `cycle` (retention). The newest cycle file and the
 * newest cycle holding entries are never removed. A tailer reading the file
 * meanwhile finishes it and goes on to the next cycle.
 * Errors:
 *   TAPE_EREADONLY   a read-only queue
 *   TAPE_EINVAL      the newest cycle file, the newest cycle holding
 *                    entries, or `cycle` out of the roll cycle's range
 *   -ENOENT          `cycle` has no file
 *   -EACCES, -EPERM, -EBUSY, -EROFS, -EIO  unlinking it
 *   [lock], [list] */
int tape_remove_cycle(tape_queue *q, int64_t cycle);

/* Write the file name of `cycle` (without directory) into buf.
 * Errors: TAPE_EINVAL when `cycle` is out of the roll cycle's range or the
 * name and its NUL do not fit in cap bytes. */
int tape_cycle_name(tape_queue *q, int64_t cycle, char *buf, size_t cap);

/* Index of the first entry in the queue, or -1 when empty (a negative error
 * code below -1 on failure). Errors: [list], [open]. */
int64_t tape_first_index(tape_queue *q);

/* Index of the last entry in the queue, or -1 when empty.
 * Errors: [list], [open]. */
int64_t tape_last_index(tape_queue *q);

/* Number of entries in the queue (or a negative error).
 * Errors: [list], [open]. */
int64_t tape_count(tape_queue *q);

/* Index arithmetic for this queue's roll cycle. TAPE_EINVAL when the cycle or
 * seq is out of range (make) or the index is negative (cycle, seq). */
int64_t tape_make_index(tape_queue *q, int64_t cycle, int64_t seq);
int64_t tape_index_cycle(tape_queue *q, int64_t index);
int64_t tape_index_seq(tape_queue *q, int64_t index);

/* The cycle a timestamp (ns since the epoch) falls in. TAPE_ECLOCK when it
 * is before the queue's epoch or past the roll cycle's last cycle. */
int64_t tape_cycle_of(tape_queue *q, int64_t ts_ns);

/* ---- appender ------------------------------------------------------------ */

typedef struct tape_appender tape_appender;

/* Create an appender (the first one of a handle starts its prefaulter).
 * Errors: TAPE_EREADONLY on a read-only queue; -ENOMEM; -EAGAIN when no
 * thread can be started; [lock]. */
int tape_appender_open(tape_queue *q, tape_appender **out);

/* Shut the appender: every later call on it (append, sync) returns
 * TAPE_ECLOSED without touching its queue; waits for the calls other threads
 * have in progress. After it the queue may be closed while other threads
 * still hold the appender; free it with tape_appender_close when none does. */
void tape_appender_shut(tape_appender *a);

/* Shut (if not yet) and free the appender. */
void tape_appender_close(tape_appender *a);

/* Append one entry. `ts_ns` is the timestamp to record, or 0 for the wall
 * clock (CLOCK_REALTIME, counted forward with the CPU's time-stamp counter
 * for at most 100 us between readings); the stored timestamp is raised to the
 * queue's newest if lower, so timestamps never decrease within a queue.
 * Returns the entry's index (>= 0) or a negative error code. On error
 * nothing is visible to readers.
 * Errors:
 *   TAPE_ETOOBIG     len > TAPE_MAX_PAYLOAD
 *   TAPE_ECLOSED     the appender was shut
 *   TAPE_EPOISONED   an earlier sync failed; reopen the queue
 *   TAPE_ECLOCK      the timestamp falls outside the roll cycle's range
 *   TAPE_ECYCLEFULL  the cycle holds 2^seq_bits entries already
 *   TAPE_ECORRUPT    the writer refuses to append (nothing is written): the
 *                    tail it would append after is not consistent, and an
 *                    index it returned could be one returned before, or one
 *                    that readers going forward never reach. Until
 *                    tape_repair_tail (or, for the last case, a reopen):
 *                    - the newest cycle's tail is damaged (a power loss tore
 *                      it: a checksum fails, or non-zero bytes follow the end
 *                      of data, e.g. behind a zeroed header or an early
 *                      end-of-file marker);
 *                    - an index slot names a place past the end of data (a
 *                      torn write that left only the slot, or a stray word),
 *                      or the last indexed entry is not where its slot says;
 *                    - tape.meta names as the newest a cycle whose file is
 *                      missing while its hint says that cycle held entries;
 *                    - this handle's cycle file was removed or replaced
 *                      while it wrote (found at the next lock after another
 *                      writer, at a roll, at a sync, and within about 5 ms by
 *                      the prefaulter thread): every later append and sync of
 *                      this queue handle fails; reopen it.
 *                    These are checked where the writer finds its end anew
 *                    (its first append, after another writer died or
 *                    repaired, when the hint of a live writer does not lead
 *                    from this handle's own end to the new one): the last
 *                    block of entries before the end (back to the indexed
 *                    entry before the last), the index past the end, and the
 *                    bytes after the end. Damage further back is for
 *                    tape_verify to find.
 *                    Repaired without refusing: a newest timestamp in
 *                    tape.meta ahead of the newest cycle's last entry (or of
 *                    that cycle's end, when it holds none) is brought back
 *                    to it before it is used; a newest cycle in tape.meta
 *                    that has no file (and held no entries) is lowered to
 *                    the newest file's.
 *   [grow], [list] (finding the newest cycle after another writer died) */
int64_t tape_append(tape_appender *a, const void *data, size_t len, int64_t ts_ns);

/* Append `n` entries held back to back in `data`; entry k spans
 * [ends[k-1], ends[k]) (ends[-1] = 0). All get one timestamp and one lock
 * acquisition. Returns the index of the last one, or a negative error code.
 * Every length is checked first: a bad one (TAPE_ETOOBIG, TAPE_EINVAL)
 * writes nothing. A later failure (a full disk, a full cycle) leaves the
 * entries before the failing one written; *written (when not NULL) tells how
 * many. Errors: those of tape_append, and TAPE_EINVAL when n is 0 or the
 * ends decrease. */
int64_t tape_append_many(tape_appender *a, const void *data, const uint64_t *ends,
                         size_t n, int64_t ts_ns, size_t *written);

/* Append one entry only if the last entry of the queue is `expected_last`
 * (-1: only if the queue is empty), checked and written under the write
 * lock, so a read-modify-write over the queue is atomic across processes.
 * Returns the new index, TAPE_ECONFLICT when another entry came first (nothing
 * is written), or another negative error: those of tape_append, and [open]
 * while looking back for the last entry past empty cycles. */
int64_t tape_append_if(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                       int64_t expected_last);

/* ---- entry attributes ----------------------------------------------------- */

/* What an entry may carry besides its payload, stored inside the entry and
 * covered by its checksum (docs/FORMAT.md, "Attributes"). Reading, an entry
 * without any has a_key NULL, a_key_len 0, a_flags 0, a_not_before 0,
 * a_origin_index -1 and a_origin_ts 0. */
#define TAPE_A_KEY_STR    1u   /* a_key holds UTF-8 text (a str, to Python) */
#define TAPE_A_TOMBSTONE  2u   /* a delete of the key (the payload is empty) */
typedef struct tape_attrs {
    const void *a_key;        /* NULL: no key; else a_key_len bytes, 1..TAPE_KEY_MAX */
    uint32_t a_key_len;
    uint32_t a_flags;         /* TAPE_A_*; both need a key */
    int64_t a_not_before;     /* ns since the epoch, not handed to groups before; 0 none */
    int64_t a_origin_index;   /* the index this entry had in the queue it was copied
                               * from (replication); -1 none */
    int64_t a_origin_ts;      /* ... and its timestamp there, ns (with a_origin_index) */
} tape_attrs;

/* tape_append, tape_append_many and tape_append_if writing the attributes *at
 * with the entry (with every entry of the batch). `at` may be NULL, or carry
 * none (no key, no flags, a_not_before 0, a_origin_index -1): the entry is
 * then written as by the plain call. The payload and the attribute block
 * (at most 1,080 bytes) together are limited to TAPE_MAX_PAYLOAD.
 * An attributed entry written into a cycle file of format version 1 (made by
 * an earlier release) turns the file into version 2 first, which earlier
 * releases refuse to read (TAPE_EVERSION) rather than misread.
 * Errors: those of the plain call, and TAPE_EINVAL for bad attributes: a_key
 * NULL with a_key_len or a_flags set, a_key_len 0 or above TAPE_KEY_MAX,
 * unknown a_flags bits, a_not_before < 0, a_origin_index < -1 (or -1 with
 * a_origin_ts set), a_origin_ts < 0. */
int64_t tape_append_ex(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                       const tape_attrs *at);
int64_t tape_append_many_ex(tape_appender *a, const void *data, const uint64_t *ends,
                            size_t n, int64_t ts_ns, size_t *written, const tape_attrs *at);
int64_t tape_append_if_ex(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                          int64_t expected_last, const tape_attrs *at);

/* tape_append_ex with the attributes given one by one (the members of
 * tape_attrs; key_len 0 means no key, whatever key is): for bindings, which
 * call it without building a struct. */
int64_t tape_append_attrs(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                          const void *key, uint32_t key_len, uint32_t flags, int64_t not_before,
                          int64_t origin_index, int64_t origin_ts);

/* tape_append_many with attributes of its own for each entry, given as
 * columns of n values (each column may be NULL: none): entry k gets
 * not_before[k] (0: none) and the origin (origin_index[k], origin_ts[k])
 * (origin_index[k] -1: none; origin_index and origin_ts both given or both
 * NULL). For copies (replication); no keys (the key directory is kept per
 * call: tape_append_many_ex). Every row and length is checked first: a bad
 * one writes nothing. Errors: those of tape_append_many_ex. */
int64_t tape_append_many_each(tape_appender *a, const void *data, const uint64_t *ends,
                              size_t n, int64_t ts_ns, size_t *written, const int64_t *not_before,
                              const int64_t *origin_index, const int64_t *origin_ts);

/* Hooks around a wait for a lock word taken by another thread or process
 * (the write lock of the appends, a consumer group's lock): after a short
 * spin, before() runs in the waiting thread, then it sleeps until the lock
 * is its own, then after() runs. For a binding that holds a lock of its own
 * while it calls the core and must let go of it while the core waits (the
 * Python GIL: tape._native._hot). Both NULL (the default): nothing runs.
 * The hooks must not call the core. Set them before any other thread uses
 * tape. */
void tape_set_wait_hooks(void (*before)(void), void (*after)(void));

/* Index of the last entry this appender wrote, or -1. Never fails. */
int64_t tape_appender_last_index(tape_appender *a);

/* Make everything written to the queue so far durable: fdatasync of the
 * newest cycle file and of any this handle's writer left since its last sync,
 * fsync of the metadata file and of the directory.
 * A failure poisons the queue's appenders: later appends return
 * TAPE_EPOISONED until the queue is reopened.
 * Errors: TAPE_ECLOSED, TAPE_EPOISONED (without trying); -EIO, -ENOSPC,
 * -EDQUOT from fdatasync/fsync (these poison); TAPE_ECORRUPT (a refusal of
 * tape_append's: the newest cycle's tail is inconsistent, or the file
 * flushed was removed or replaced meanwhile, which refuses every later
 * append); -EMFILE, -ENFILE (dup and open of the cycle files to flush);
 * [grow] and [list] (finding the newest cycle first). */
int tape_appender_sync(tape_appender *a);

/* ---- the key directory ------------------------------------------------------ */

/* The index of the newest entry with this key, or -1 when there is none or
 * it is a tombstone (TAPE_A_TOMBSTONE). The directory (tape.keys, see
 * docs/FORMAT.md) is shared by every process: it answers the same
 * everywhere once an append returned. A missing or damaged one, or one
 * written before the last reboot, is rebuilt from the log (holding the write
 * lock; on a read-only queue the answer comes from reading the log).
 * Errors: TAPE_EINVAL (key NULL, key_len 0 or above TAPE_KEY_MAX); [lock],
 * [open], [list], TAPE_ECORRUPT (reading the log); -ENOMEM, -ENOSPC, -EIO
 * (writing a new tape.keys); TAPE_ELIMIT (more than 2^33 keys). */
int64_t tape_key_latest(tape_queue *q, const void *key, uint32_t key_len);

/* Append one entry with the attributes *at (a key needed) only if the newest
 * entry with its key is `expected` (-1: only if there is none, or it is a
 * tombstone), checked and written under the write lock. Returns the new
 * index, TAPE_ECONFLICT (nothing written), or an error of tape_append_ex
 * (TAPE_EINVAL also without a key) or tape_key_latest. */
int64_t tape_append_if_key(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                           int64_t expected, const tape_attrs *at);

/* The live keys (not deleted): how many, and up to cap indexes of their
 * newest entries in indexes (in no order). Errors: those of tape_key_latest. */
int64_t tape_keys_list(tape_queue *q, int64_t *indexes, size_t cap);

/* Rebuild tape.keys from the log. Errors: TAPE_EREADONLY, [lock], and those of
 * tape_key_latest. */
int tape_keys_rebuild(tape_queue *q);

/* tape_key_latest's entry read with tailer t (a tailer of q, left after it;
 * read where the directory says the entry starts when that holds, else
 * moved there by index): 1 and *e filled as tape_read fills it, 0 when there is none (none
 * written, deleted, or its cycle removed meanwhile). A directory that names
 * an entry without this key is rebuilt from the log, once (read-only:
 * TAPE_ECORRUPT). Errors: those of tape_key_latest and tape_tailer_to_index,
 * TAPE_ECORRUPT. */
struct tape_tailer;
struct tape_entry;
int tape_key_read(tape_queue *q, struct tape_tailer *t, const void *key, uint32_t key_len, struct tape_entry *e);

/* Check tape.keys against the log (for verify): 0 when they agree (or there
 * is no tape.keys, or one written before this boot: it is rebuilt when next
 * used), 1 when they do not, the first difference described in msg (cap
 * bytes, NUL-terminated). Entries appended meanwhile are allowed for; a
 * tombstone whose cycle was removed is not a difference. Errors: [open],
 * [list], TAPE_ECORRUPT (reading the log), -ENOMEM, TAPE_ELIMIT. */
int tape_keys_check(tape_queue *q, char *msg, size_t cap);

/* ---- tailer ------------------------------------------------------------- */

typedef struct tape_tailer tape_tailer;

enum { TAPE_FORWARD = 0, TAPE_BACKWARD = 1 };

typedef struct tape_entry {
    int64_t e_index;
    int64_t e_timestamp;
    const void *e_data;  /* into the mapping or the tailer's buffer; valid until the
                          * next call on the tailer (tape_read_pinned: while
                          * its pin is held) */
    uint32_t e_len;
    tape_attrs e_attrs;  /* the entry's attributes (see tape_attrs: an entry without
                          * any has the defaults); a_key points into the same memory
                          * as e_data, valid as long */
} tape_entry;

/* A new tailer positioned at the start of the queue, reading forward.
 * Errors: -ENOMEM. */
int tape_tailer_open(tape_queue *q, tape_tailer **out);
void tape_tailer_close(tape_tailer *t);

/* Read the entry at the tailer's position and move past it (forward) or
 * before it (backward). Returns 1 and fills *e, 0 when there is nothing to
 * read, or a negative error code; the position does not move on error.
 * Damage is reported, not hidden: reading forward into a torn tail returns
 * every intact entry before it, then TAPE_ECORRUPT at the torn entry (for as
 * long as it is there; a zeroed header reads as the end of data, and
 * tape_verify reports what follows it).
 * Errors: TAPE_ECORRUPT (the entry at the position is damaged, or a cycle
 * ends before its index says); [open] and [list] (going on to another
 * cycle). */
int tape_read(tape_tailer *t, tape_entry *e);

/* tape_read with one copy, into memory the caller provides once it knows
 * the size: alloc(ctx, e_len) returns room for the payload (NULL: -ENOMEM,
 * nothing read), which the payload is copied into, after its CRC was
 * checked; e_data then points there. A key is copied into the tailer's own
 * buffer (valid until its next call). alloc must not call the tailer. On an
 * error after alloc (the copy met a fault: see SIGBUS above) the position
 * does not move and the memory is the caller's to free. For large payloads
 * read into an object of the caller's (a Python bytes of the right size). */
int tape_read_into(tape_tailer *t, tape_entry *e, void *(*alloc)(void *ctx, size_t len),
                   void *ctx);

/* A reader's mapping kept alive for an entry handed out without a copy. */
typedef struct tape_pin tape_pin;

/* tape_read without the copy, for large payloads: e_data (and a_key) point
 * into the tailer's mapping of the cycle file, the entry's CRC checked, and
 * *pin holds that mapping until tape_pin_release(*pin): the bytes stay
 * readable while the tailer reads on, moves, maps the file anew or is closed,
 * and after the queue is closed. Published entries do not change, so they
 * hold the entry as it was read, unless the file is damaged meanwhile: a page
 * the file no longer backs (another process truncated it) then reads as
 * zeros, never SIGBUS (see SIGBUS above), and tape_pin_damaged says so. The
 * memory is read-only: writing to it raises SIGSEGV. *pin is NULL unless 1 is
 * returned. Each pin keeps its mapping's address space (256 MiB or more)
 * reserved and one slot of the SIGBUS guard taken, shared by every pin of
 * the same mapping: release pins promptly. Returns as tape_read; also
 * -ENOMEM (the position then does not move). */
int tape_read_pinned(tape_tailer *t, tape_entry *e, tape_pin **pin);
/* Drop a hold of tape_read_pinned (NULL: nothing); the last one unmaps. May
 * be called from any thread, also after the tailer and queue were closed. */
void tape_pin_release(tape_pin *pin);
/* 0, or TAPE_ECORRUPT when a page of the pinned mapping read as zeros
 * because the file no longer backs it (the bytes read there are not the
 * entry's). */
int tape_pin_damaged(const tape_pin *pin);

/* Read up to `max` entries, copying payloads back to back into `buf` (at most
 * `cap` bytes). For entry k: idx[k], ts[k], and ends[k] (its end offset in
 * buf). Returns the number read (0 when nothing is there) or a negative
 * error code when not even one was read: TAPE_EINVAL when the first entry is
 * larger than `cap` (ends[0] is then set to its length, the room it needs), or
 * an error of tape_read. */
int64_t tape_read_many(tape_tailer *t, void *buf, size_t cap, int64_t *idx,
                       int64_t *ts, uint64_t *ends, size_t max);

/* Like tape_read_many, but the position does not move: the entries read are
 * the tailer's pending batch until the next read or move of the tailer. A
 * named tailer stores nothing. Returns the number of entries (0 when nothing
 * is there: an empty batch is pending), TAPE_EINVAL when the first entry is
 * larger than `cap` (ends[0] is then set to its length: peek again with that
 * much room), -ENOMEM (recording the batch), or an error of tape_read
 * when not even one entry was read (then no batch is pending). */
int64_t tape_peek_many(tape_tailer *t, void *buf, size_t cap, int64_t *idx,
                       int64_t *ts, uint64_t *ends, size_t max);

/* Move past the first k entries of the pending batch (0 <= k <= its size), as
 * if they had been read one by one with tape_read: position, last_read_index
 * and a named tailer's stored position end just after entry k (k = 0: where the
 * batch started). May be called again with any k while the batch is pending;
 * costs no reading (the peek recorded where each entry ends). Any other call
 * that reads or moves the tailer (tape_read, tape_read_many, tape_peek_many,
 * tape_tailer_to_*, tape_tailer_set_direction) forgets the batch.
 * TAPE_EINVAL when no batch is pending or k is larger than it. When the batch
 * spans cycles and entry k's cycle file must be reopened: -EMFILE, -ENOMEM or
 * another -errno of open/mmap (the position is then unchanged); a cycle file
 * removed meanwhile leaves the tailer at the next entry that still exists. */
int tape_tailer_advance(tape_tailer *t, size_t k);

/* tape_read_many and tape_peek_many that also give each entry's attributes
 * (attrs NULL: the plain call). *n_attrs is the number of entries of the
 * batch that carry any; when it is not 0, attrs[k] holds entry k's (the
 * defaults for one without), and when it is 0 attrs is left as it was, so
 * that a batch without attributes costs nothing more. An entry's key is
 * copied into buf just before its payload: entry k's span [ends[k-1],
 * ends[k]) holds a_key_len bytes of key (attrs[k].a_key points at them) and
 * then its payload; for an entry without a key the span is its payload
 * alone, as in the plain calls. The room an entry needs (ends[0] on
 * TAPE_EINVAL) counts its key. Errors: those of the plain calls, and
 * TAPE_EINVAL when attrs is given without n_attrs. */
int64_t tape_read_many_ex(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                          uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs);
int64_t tape_peek_many_ex(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                          uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs);

/* Move to `index`. Returns 1 when the entry exists (the next read returns
 * it), 0 when it does not (the position is unchanged), or a negative error:
 * TAPE_ECORRUPT (the cycle's index or entries are damaged), [open]. */
int tape_tailer_to_index(tape_tailer *t, int64_t index);

/* Move before the first entry (forward) / at the first entry.
 * Errors: [open] (of the first cycle file), [list]. */
int tape_tailer_to_start(tape_tailer *t);

/* Forward: move after the last entry, so the next read returns only new
 * entries. Backward: move to the last entry, so the next read returns it.
 * Errors: TAPE_ECORRUPT (the newest cycle's tail is damaged), [open], [list]. */
int tape_tailer_to_end(tape_tailer *t);

/* Move to the first entry whose timestamp is >= ts_ns. Returns 1 when such
 * an entry exists, 0 when not (position unchanged), or a negative error:
 * TAPE_ECORRUPT (a cycle's index or entries are damaged), [open], [list]. */
int tape_tailer_to_time(tape_tailer *t, int64_t ts_ns);

/* Set the direction (TAPE_FORWARD or TAPE_BACKWARD); TAPE_EINVAL for any
 * other value. tape_tailer_direction returns it. */
int tape_tailer_set_direction(tape_tailer *t, int direction);
int tape_tailer_direction(tape_tailer *t);

/* The index the next read would return (when it exists; else the position's
 * index, -1 when there is none), and the index of the last entry read (-1
 * before any). Never fail: an error looking for the next entry gives the
 * position. */
int64_t tape_tailer_index(tape_tailer *t);
int64_t tape_tailer_last_read_index(tape_tailer *t);

/* ---- verification -------------------------------------------------------- */

typedef struct tape_verify_report {
    uint64_t vr_cycles;         /* cycle files checked */
    uint64_t vr_entries;        /* intact data entries */
    uint64_t vr_bytes;          /* bytes those entries occupy */
    uint64_t vr_unsealed;       /* cycles before the newest without an end-of-file
                                 * marker (a writer died while rolling; harmless) */
    uint64_t vr_abandoned;      /* unfinished entries a killed writer left at the
                                 * end of data (harmless: the next writer clears
                                 * them; never read) */
    uint64_t vr_problems;       /* damaged places found */
    uint64_t vr_skipped;        /* salvage: data entries lost to damage (lower bound) */
    int64_t vr_last_good;       /* last index of the gap-free prefix, -1 if none */
    int64_t vr_bad_cycle;       /* the first problem's cycle, -1 if none */
    uint64_t vr_bad_offset;     /* ... and file offset */
    char vr_message[256];       /* the first problem, in words */
} tape_verify_report;

#define TAPE_VERIFY_SALVAGE 1   /* go on past damage: count what is still intact */

/* Walk every cycle file, checking headers, every entry's length and CRC,
 * metadata entries, index slots (each indexed entry's, and none past the end
 * of data but the one naming the end itself), timestamp order (within and
 * across cycles), that nothing but zeros follows the end of data, and
 * tape.meta's hints against the files: the newest cycle it names has a file,
 * and its newest timestamp is not ahead of the newest cycle's last entry (or
 * of that cycle's end when it holds none). Every state tape_append refuses
 * or repairs is reported. In strict mode (flags
 * 0) a cycle is abandoned at its first problem; with TAPE_VERIFY_SALVAGE the
 * walk resumes at the next indexed entry after it. Returns 0 when nothing is
 * wrong, 1 when problems were found (see *r: a cycle file that cannot be
 * opened is one), or a negative error: [list]. Safe while writers append (it
 * sees a consistent prefix). */
int tape_verify(tape_queue *q, int flags, tape_verify_report *r);

/* Told how far a walk has got: `walked` bytes of cycle files, counted from
 * each file's first entry (the sum of tape_cycle_info's ci_bytes at the end
 * of a sound queue that no one writes meanwhile). Returns 0 to go on, any
 * other value to stop the walk. */
typedef int (*tape_progress_fn)(void *arg, uint64_t walked);

/* tape_verify, calling fn(arg, walked) after every 16 MiB and at the end of
 * each cycle file; -ECANCELED (and a partial report) when fn stopped it, or
 * an error of tape_verify. */
int tape_verify_progress(tape_queue *q, int flags, tape_verify_report *r, tape_progress_fn fn,
                         void *arg);

/* Make the queue writable again after a power loss: in the
 * newest cycle file, everything after the last entry whose checksum holds
 * (what no reader going forward can get past: readers raise TAPE_ECORRUPT
 * there, or see the end of data at a zeroed header) is cleared, and index
 * slots pointing there, or standing for entries past that end, are emptied.
 * tape.meta's hints are brought back to the files: a newest cycle with no
 * file to the newest file's, a newest timestamp ahead of the newest cycle's
 * last entry to that entry's. Clears whatever tape_verify reports about the
 * newest cycle's tail, so that tape_append accepts writes again. Nothing a
 * reader could read is removed. Index words (an index array's offset in
 * index2index, an indexed entry's offset in its slot) that a lost page left
 * 0 before intact entries of the newest cycle are filled back in. The cycle
 * before the newest, when a roll cut short left it unsealed with damage or
 * non-zero bytes after its last intact entry (readers going forward would
 * stop there), is cut after that entry (its index words past it emptied,
 * lost ones before it filled in) and sealed with an end-of-file marker.
 * Returns the number of bytes cleared or corrected, 8 for each index word
 * filled in, 4 for each seal (0 when there was nothing to do), or a negative
 * error: TAPE_EREADONLY, [lock], [open] (of the two newest cycle files),
 * [list]. Damage further back is left for tape_verify to report. */
int64_t tape_repair_tail(tape_queue *q);

/* What tape_repair did. */
typedef struct tape_repair_report {
    uint64_t rr_cleared;   /* bytes cleared after the last intact entry (of the
                            * newest cycle, and of a cycle sealed), 8 for
                            * each index word emptied before it */
    uint64_t rr_refilled;  /* index words a lost page left 0, filled in */
    uint64_t rr_sealed;    /* cycles before the newest sealed (0 or 1) */
    uint64_t rr_corrected; /* bytes of tape.meta's hints brought back to the
                            * files (8 a word) */
} tape_repair_report;

/* tape_repair_tail, telling what it did apart in *r: 0, or its errors. */
int tape_repair(tape_queue *q, tape_repair_report *r);

/* ---- named tailers ------------------------------------------------------- */

#define TAPE_NAMED_MAX 256 /* named tailers per queue */

/* A tailer whose position is kept in the queue under `name` (1 to 47 bytes),
 * visible to other processes: it resumes at the stored position (after the
 * last entry a tailer of that name read, or where it was last moved), and
 * stores its position after every read and move. Reading forward is what it
 * is for; reading backward stores the entry after the one last read. On a
 * read-only queue it resumes but cannot store (nothing is created).
 * Two tailers of one name in use at once both store; the last store wins.
 * A stored position beyond the end of the data (a power cut lost data that
 * a tailer had read, after its position reached the disk) is brought back
 * to the end, and stored, both here and by the first append of a handle,
 * so that the entries written there next are read, not skipped.
 * Errors: TAPE_EINVAL for a bad name; TAPE_ELIMIT when all slots are taken;
 * -ENOMEM; [lock] (claiming a slot); TAPE_ECORRUPT, [open], [list] (going to
 * the stored position). */
int tape_tailer_open_named(tape_queue *q, const char *name, tape_tailer **out);

/* Named tailer slot `slot` (0 <= slot < TAPE_NAMED_MAX): 1 and its name and
 * stored index when in use, 0 when free, or a negative error: TAPE_EINVAL
 * (slot out of range, or the name and its NUL do not fit in cap bytes),
 * TAPE_ECORRUPT (the slot's name fails its checksum). */
int tape_named_get(tape_queue *q, int slot, char *name, size_t cap, int64_t *next);

/* Forget the named tailer `name`. Errors: -ENOENT when there is none;
 * TAPE_EINVAL for a bad name; TAPE_EREADONLY; [lock]. */
int tape_named_remove(tape_queue *q, const char *name);

/* Sleep until a writer of the queue (in any process) publishes an entry, or
 * timeout_ns passes (negative: no limit). Returns 0 (woken or timed out; the
 * caller reads again to know which) or a negative error: -EINTR when a
 * signal arrived, or an error of tape_read (looking for data first).
 * On a queue opened read-only it sleeps the same way when this process may
 * write tape.meta (it opens it a second time, to write the wake-up word
 * alone); without write permission it polls instead: it looks for data after
 * 1 ms, and after twice as long each time it finds none, up to 8 ms, so an
 * idle tailer wakes about 125 times a second and sees a new entry within 8 ms
 * (at once when it spins, tape_tailer_set_spin). */
int tape_wait(tape_tailer *t, int64_t timeout_ns);

/* How tape_wait waits: spin (checking for data, burning a core) for up to
 * spin_ns before sleeping; 0 (the default) sleeps at once, a negative value
 * spins until data arrives or the timeout passes, for the lowest latency.
 * Always 0. */
int tape_tailer_set_spin(tape_tailer *t, int64_t spin_ns);


/* ---- consumer groups ------------------------------------------------------
 *
 * A consumer group hands each entry of the queue to one of its consumers and
 * takes it back when that consumer fails (docs/FORMAT.md, "Consumer groups").
 * Its state is one file, <queue>/groups/<name>.group, mapped by every process
 * using the group: settings, the position (the last entry taken from the
 * log), and a fixed table of the entries in flight, each with its state,
 * owner, attempt, due time and claim generation. Acked entries leave the
 * table, so the file never grows. Changes are made under a lock word in the
 * file whose owner's death is detected as for the write lock; a consumer
 * holds an OFD lock on its own byte of the file, so its death is seen by the
 * next claim (checked at most every TAPE_GROUP_CHECK_NS) and its entries are
 * handed out again. Every claim gets a new generation: an ack, nack, extend
 * or reject naming an older one returns TAPE_ESTALE and changes nothing.
 * An entry not yet due when the position passes it waits in the table while
 * half of it is free; past that it stays in the log only (the group's
 * deferred range), and claims find it again when it is due: any number of
 * entries not yet due hold back nothing, and the table stays bounded. An
 * entry nacked with a delay leaves the table for the later list (up to
 * TAPE_GROUP_LATER of them, with their attempt counts; past that it waits in
 * the table) and a claim moves it back when it is due, before reading new
 * entries.
 *
 * Times (now_ns, due times) are ns since the epoch, passed by the caller, so
 * that a test may drive them; every process using a group must use one
 * clock. Dead letters: an entry delivered max_deliveries times without an
 * ack, or rejected, becomes dead in the table; tape_group_take_dead hands it
 * to a caller that stores a copy (the Python layer keeps a queue of them) and
 * then calls tape_group_dead_done. A caller killed in between leaves it dead
 * for the next one.
 *
 * Processes: a handle belongs to the process that opened it. A fork child
 * closing an inherited consumer only frees its own copy (tape_consumer_close
 * checks the pid; tape_consumer_forget does it at once, right after fork, so
 * that the child holds no reference to the parent's liveness byte). A group
 * handle holds a byte of the file only while it holds the lock, and closing
 * it changes nothing shared (unmaps, closes its file): safe in a fork child.
 *
 * The file is mapped under the SIGBUS guard: when it is truncated under a
 * handle, the calls that change or claim return TAPE_ECORRUPT from then on.
 *
 * A group handle and its consumers may be used from several threads, one
 * call at a time per consumer. A tailer given to a consumer call belongs to
 * that consumer (and is moved by it). */

typedef struct tape_group tape_group;
typedef struct tape_consumer tape_consumer;

#define TAPE_GROUP_SLOTS     4096  /* entries in flight (or waiting) per group */
#define TAPE_GROUP_CONSUMERS 255   /* consumers at once */
#define TAPE_GROUP_BACKOFF   16    /* steps of a backoff list */
#define TAPE_GROUP_LATER     16384 /* entries nacked for later, out of the table, per group */
#define TAPE_GROUP_CHECK_NS  2000000 /* how often claims look for dead consumers */

typedef struct tape_group_settings {
    int64_t gset_ack_wait_ns;      /* > 0; how long a claim lasts */
    uint32_t gset_max_deliveries;  /* >= 1 */
    uint32_t gset_nbackoff;        /* <= TAPE_GROUP_BACKOFF */
    int64_t gset_backoff_ns[TAPE_GROUP_BACKOFF]; /* delay of redelivery n (the last repeated) */
} tape_group_settings;

/* Open group `name` (1 to 47 bytes, no '/', not starting with '.'), creating
 * it when missing with its first entry at or after `start` (-1: the start of
 * the queue; -2: after the last entry now; -3: open an existing group only,
 * -ENOENT when missing). `set` (may be NULL) replaces the
 * stored settings; a group is created with ack_wait 30 s, max_deliveries 5 and
 * no backoff otherwise. A position beyond the end of the data (a power cut
 * lost entries the group had taken) is brought back to the end, and entries
 * in flight past it are forgotten. `sync` (non-zero): every change is flushed
 * to disk (msync) before the call returns. On a read-only queue the group is
 * opened for inspection only (-ENOENT when missing); changes return
 * TAPE_EREADONLY. Errors: TAPE_EINVAL (name, settings), TAPE_ECORRUPT (the
 * file is damaged), TAPE_EVERSION, TAPE_ELIMIT (every consumer slot taken:
 * the open takes one while it holds the lock),
 * -ENOENT, [lock], -ENOSPC and other -errno of creating and mapping it. */
int tape_group_open(tape_queue *q, const char *name, int64_t start, const tape_group_settings *set,
                    int sync, tape_group **out);
void tape_group_close(tape_group *g);
/* The stored settings; replace them (TAPE_EINVAL, TAPE_EREADONLY,
 * TAPE_ELIMIT as tape_group_open). Due times are now + a setting, saturated
 * (a delay past the year 2262 is never). */
int tape_group_settings_get(tape_group *g, tape_group_settings *out);
int tape_group_settings_set(tape_group *g, const tape_group_settings *set);

typedef struct tape_group_info {
    int64_t gi_last;          /* the last entry taken from the log, -1 none */
    int64_t gi_floor;         /* every entry before it is finished (-1: none taken) */
    uint32_t gi_in_flight;    /* claimed now */
    uint32_t gi_waiting;      /* in the table, not claimed (due later, or now) */
    uint32_t gi_dead;         /* dead, not yet stored as dead letters */
    uint32_t gi_consumers;    /* live consumers */
    uint64_t gi_generation;   /* the last claim generation given */
    uint64_t gi_acked;        /* entries acked since the group was created */
    int64_t gi_redriven;      /* the last dead letter redriven (its dl), -1 none */
    uint64_t gi_deferred;     /* past the table, before the position: not yet handed
                               * out, not due when the position passed them (the
                               * deferred range); none of the counts above */
    uint64_t gi_later;        /* nacked for later, out of the table (at most
                               * TAPE_GROUP_LATER); not in gi_waiting */
} tape_group_info;

/* Describe the group: a snapshot taken without the lock, walked again when
 * an entry moved between the table and the later list meanwhile (after
 * 1,000 tries, under the lock; a read-only handle, or one finding every
 * consumer slot taken, pauses between tries instead). Every entry from the
 * floor on not finished nor dead is after gi_last, or in gi_deferred,
 * gi_in_flight, gi_waiting or gi_later. Errors: TAPE_ECORRUPT, -EAGAIN (still
 * moving after 3,000 tries). */
int tape_group_info_get(tape_group *g, int64_t now_ns, tape_group_info *out);

/* One entry of the table, as tape_group_slot_get and the claims report it. */
typedef struct tape_delivery {
    int64_t d_index;          /* the entry's index in the queue */
    uint64_t d_gen;           /* the claim's generation */
    int64_t d_due;            /* claimed: its deadline; else when it is due */
    int64_t d_dl;             /* a redriven dead letter: its index in the dead
                               * letters' queue; else -1 */
    uint32_t d_slot;          /* its slot in the table */
    uint32_t d_state;         /* TAPE_GS_* */
    uint32_t d_attempt;       /* deliveries so far */
    uint32_t d_owner;         /* consumer slot + 1, 0 none (a dead entry taken:
                               * the last consumer it was delivered to) */
    uint32_t d_reason;        /* dead: TAPE_GR_* */
} tape_delivery;

enum { TAPE_GS_FREE = 0, TAPE_GS_READY = 1, TAPE_GS_CLAIMED = 2, TAPE_GS_DEAD = 3,
       TAPE_GS_MOVING = 4 };
enum { TAPE_GR_NONE = 0, TAPE_GR_DELIVERIES = 1, TAPE_GR_REJECTED = 2 };

/* Table slot k (0 <= k < TAPE_GROUP_SLOTS): 1 and *out when in use, 0 when
 * free, TAPE_EINVAL out of range, TAPE_ECORRUPT damaged. */
int tape_group_slot_get(tape_group *g, uint32_t k, tape_delivery *out);
/* Consumer slot k: 1 with its name (cap bytes at least TAPE_NAME_MAX) and
 * liveness (*alive) when in use, 0 when free; TAPE_EINVAL out of range. */
int tape_group_consumer_get(tape_group *g, uint32_t k, char *name, size_t cap, int *alive);

/* A consumer of the group, named `name` (NULL or "": anonymous; at most 47
 * bytes). It opens the group file anew and holds the lock on its byte until
 * closed. Errors: TAPE_EREADONLY, TAPE_EINVAL, TAPE_ELIMIT (every consumer
 * slot taken), -ENOENT (the group was removed: tape_group_remove), -ENOMEM,
 * -EMFILE and other -errno of opening the file. */
int tape_consumer_open(tape_group *g, const char *name, tape_consumer **out);
/* Give back every entry the consumer holds (handed out again at once) and
 * free it. c may be NULL. In a process other than the one that opened it (a
 * fork child), as tape_consumer_forget. */
void tape_consumer_close(tape_consumer *c);
/* Free this process's copy of an inherited consumer (a fork child's): close
 * its file (the parent's lock on its byte stays the parent's alone) without
 * changing the group. c may be NULL. */
void tape_consumer_forget(tape_consumer *c);
/* The consumer's slot + 1 (the owner number of its deliveries). */
uint32_t tape_consumer_id(tape_consumer *c);

/* Claim the next entry due: the oldest due redelivery, else the next entry
 * of the log, read with tailer t (which the claim moves). Returns 1 with *d
 * (and, unless d_dl >= 0, *e: the entry, valid until the next call on t), 0
 * when nothing is due (or the table is full), or a negative error:
 * TAPE_EREADONLY, TAPE_ECORRUPT, errors of tape_read. The claim lasts until
 * now_ns + ack_wait. Entries nacked for later that are due come back first
 * (the oldest when more are due than the table has room for); while one is
 * due, no new entry is read (with a full table, none is until acks make room). */
int tape_group_claim(tape_consumer *c, tape_tailer *t, int64_t now_ns, tape_delivery *d,
                     tape_entry *e);
/* Claim up to `max` entries due, as tape_group_claim one after the other
 * under one lock, copying their payloads back to back into buf (cap bytes).
 * Claim k is described by the TAPE_CLAIM_FIELDS numbers from
 * out[k * TAPE_CLAIM_FIELDS] (a flat array, which a binding reads in one
 * go): its slot, generation, index, attempt, deadline, the index of its copy
 * in the dead letters (-1 unless a redriven dead letter: its span in buf is
 * empty, read its copy), the entry's timestamp, and the end of its payload in
 * buf. Returns the number claimed (0: nothing due), TAPE_EINVAL when the first
 * entry due is larger than cap (out[TAPE_CLAIM_END] is set to its length;
 * nothing is claimed: claim it alone), or an error of tape_group_claim when
 * none was claimed. */
enum { TAPE_CLAIM_SLOT, TAPE_CLAIM_GEN, TAPE_CLAIM_INDEX, TAPE_CLAIM_ATTEMPT, TAPE_CLAIM_DUE,
       TAPE_CLAIM_DL, TAPE_CLAIM_TS, TAPE_CLAIM_END, TAPE_CLAIM_FIELDS };
int64_t tape_group_claim_many(tape_consumer *c, tape_tailer *t, int64_t now_ns, size_t max,
                              int64_t *out, void *buf, size_t cap);
/* How long (ns) a claimer finding nothing should wait at most before trying
 * again (waiting for a new entry with tape_wait on t, which this call places
 * at the group's position): until the earliest due entry (at least 1 ms), or
 * TAPE_GROUP_CHECK_NS while other consumers hold entries (their death must be
 * noticed), or 10 ms when none does (one may claim meanwhile, and die).
 * Errors: those of positioning t. */
int64_t tape_group_wait_hint(tape_consumer *c, tape_tailer *t, int64_t now_ns);

/* Finish the delivery (slot, gen): ack removes it; nack hands it out again
 * at now_ns + delay_ns (delay_ns < 0: the backoff list's step for its
 * attempt, none: at once), or makes it dead when it was delivered
 * max_deliveries times (its d_due is then the death's id, kept while it is
 * dead or taken, for the stored copy to name); extend moves its deadline to now_ns + delay_ns;
 * reject makes it dead (TAPE_GR_REJECTED) and hands it to this consumer to
 * store (as tape_group_take_dead does: *d filled). nack returns 1 when it
 * made the entry dead, else 0 (as the others do); a nack with a delay (due
 * after now_ns) moves the entry out of the table into the later list (with
 * TAPE_GROUP_LATER entries in it already, the entry waits in the table as a
 * redelivery due then; -errno of growing a group file of an older version to
 * hold the list changes nothing). All return TAPE_ESTALE
 * when the claim is not this consumer's live one any more (another
 * generation, finished, or its deadline passed), and change nothing then;
 * TAPE_EINVAL for a slot out of range. */
int tape_group_ack(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns);
/* Ack the n deliveries (slots[i], gens[i]) under one lock: the number acked;
 * stale[i] is 1 for each that was not this consumer's live claim (unchanged,
 * as tape_group_ack's TAPE_ESTALE), else 0. TAPE_EINVAL (nothing acked) when
 * a slot is out of range; TAPE_ECORRUPT. */
int64_t tape_group_ack_many(tape_consumer *c, const uint32_t *slots, const uint64_t *gens,
                            size_t n, int64_t now_ns, uint8_t *stale);
int tape_group_nack(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns, int64_t delay_ns);
int tape_group_extend(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns, int64_t delay_ns);
int tape_group_reject(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns, tape_delivery *d);

/* Take a dead entry to store as a dead letter: 1 and *d (a new generation),
 * 0 when none is dead. Then tape_group_dead_done(slot, gen) frees it
 * (TAPE_ESTALE when it is not this consumer's any more). */
int tape_group_take_dead(tape_consumer *c, int64_t now_ns, tape_delivery *d);
int tape_group_dead_done(tape_consumer *c, uint32_t slot, uint64_t gen);

/* Hand a dead letter out again, as a new delivery: entry `index` whose copy
 * is entry dl of the dead letters' queue. 1 when added, 0 when it is in the
 * table already (a redrive killed before it was recorded), TAPE_ELIMIT when
 * the table is full, TAPE_EREADONLY. The group remembers the last dead
 * letter redriven (tape_group_info_get's gi_redriven), so that a caller
 * killed before recording a redrive can record it. */
int tape_group_redrive(tape_group *g, int64_t index, int64_t dl, int64_t now_ns);

/* Remove the group: its file is unlinked, under its lock, when no live
 * consumer uses it; -EBUSY when one does (dead ones are reaped first), -ENOENT
 * when the file is gone or is another group's of that name already. Group
 * handles still open on it may be closed; tape_consumer_open on them returns
 * -ENOENT from then on. Errors: TAPE_EREADONLY, TAPE_ELIMIT, TAPE_ECORRUPT. */
int tape_group_remove(tape_group *g);

/* Tailer t: move to the first entry at or after `index` (index < 0: the
 * start; beyond the end: the end). Errors: as tape_tailer_to_index. (A move
 * of read.c; consumer groups position their tailers with it.) */
int tape_tailer_seek(tape_tailer *t, int64_t index);

#ifdef __cplusplus
}
#endif

#endif /* TAPE_H */
