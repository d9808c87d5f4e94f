"""Build script of tape._core: the C core (csrc/) compiled by cffi in API mode.

The cdef below is a hand copy of csrc/tape.h; cffi checks it against the real
header when it compiles, so a drift is a build error, not a crash.
"""

import os
from pathlib import Path

import cffi

_ROOT = Path(__file__).resolve().parent.parent
_CSRC = _ROOT / "csrc"


def _core_files(pattern: str) -> list[str]:
    """The core's files matching `pattern` in csrc/ (tests, benchmark and tools
    live in folders below it), relative to the repository root."""
    return sorted(str(p.relative_to(_ROOT)) for p in _CSRC.glob(pattern))


CDEF = """
#define TAPE_EBASE ...
#define TAPE_ECORRUPT ...
#define TAPE_EVERSION ...
#define TAPE_ENOTQUEUE ...
#define TAPE_EINCOMPAT ...
#define TAPE_EREADONLY ...
#define TAPE_ETOOBIG ...
#define TAPE_ECYCLEFULL ...
#define TAPE_EPOISONED ...
#define TAPE_EINVAL ...
#define TAPE_EROLLCYCLE ...
#define TAPE_ECLOCK ...
#define TAPE_ECONFLICT ...
#define TAPE_ECLOSED ...
#define TAPE_ELIMIT ...
#define TAPE_ESTALE ...

#define TAPE_MAX_PAYLOAD ...
#define TAPE_NAME_MAX ...
#define TAPE_PARAMS_MAX ...
#define TAPE_KEY_MAX ...
#define TAPE_A_KEY_STR ...
#define TAPE_A_TOMBSTONE ...

const char *tape_strerror(int rc);

typedef struct tape_roll_info {
    const char *ri_name;
    int64_t ri_length_ms;
    int ri_seq_bits;
    int ri_index_count_log2;
    int ri_index_spacing_log2;
    const char *ri_format;
} tape_roll_info;

const tape_roll_info *tape_roll_cycles(void);

typedef struct tape_queue tape_queue;

typedef struct tape_open_opts {
    const char *oo_roll_cycle;
    const char *oo_codec;
    const void *oo_params;
    uint32_t oo_params_len;
    int oo_read_only;
    int oo_create;
    int64_t oo_epoch_ms;
    int oo_small_pages;
} tape_open_opts;

int tape_open(const char *path, const tape_open_opts *opts, tape_queue **out);
void tape_close(tape_queue *q);
int tape_queue_after_fork(tape_queue *q);

typedef struct tape_queue_info {
    uint32_t qi_version;
    char qi_roll_cycle[...];
    char qi_codec[...];
    int qi_seq_bits;
    int64_t qi_epoch_ms;
    int64_t qi_created_ns;
    int64_t qi_lowest_cycle;
    int64_t qi_highest_cycle;
    uint64_t qi_modcount;
    int64_t qi_last_timestamp;
    uint32_t qi_params_len;
} tape_queue_info;

int tape_queue_info_get(tape_queue *q, tape_queue_info *out);
int tape_queue_params(tape_queue *q, void *buf, uint32_t cap);

typedef struct tape_cycle_info {
    int64_t ci_cycle;
    int64_t ci_first_index;
    int64_t ci_last_index;
    uint64_t ci_entries;
    uint64_t ci_bytes;
    uint64_t ci_file_bytes;
    int ci_sealed;
    int ci_damaged;
} tape_cycle_info;

int64_t tape_list_cycles(tape_queue *q, int64_t *cycles, size_t cap);
int tape_cycle_info_get(tape_queue *q, int64_t cycle, tape_cycle_info *out);
int tape_cycle_name(tape_queue *q, int64_t cycle, char *buf, size_t cap);
int tape_remove_cycle(tape_queue *q, int64_t cycle);

int64_t tape_first_index(tape_queue *q);
int64_t tape_last_index(tape_queue *q);
int64_t tape_count(tape_queue *q);

int64_t tape_make_index(tape_queue *q, int64_t cycle, int64_t seq);
int64_t tape_index_cycle(tape_queue *q, int64_t index);
int64_t tape_index_seq(tape_queue *q, int64_t index);
int64_t tape_cycle_of(tape_queue *q, int64_t ts_ns);

typedef struct tape_appender tape_appender;

int tape_appender_open(tape_queue *q, tape_appender **out);
void tape_appender_shut(tape_appender *a);
void tape_appender_close(tape_appender *a);
int64_t tape_append(tape_appender *a, const void *data, size_t len, int64_t ts_ns);
int64_t tape_append_many(tape_appender *a, const void *data, const uint64_t *ends,
                         size_t n, int64_t ts_ns, size_t *written);
int64_t tape_append_if(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                       int64_t expected_last);

typedef struct tape_attrs {
    const void *a_key;
    uint32_t a_key_len;
    uint32_t a_flags;
    int64_t a_not_before;
    int64_t a_origin_index;
    int64_t a_origin_ts;
} tape_attrs;

int64_t tape_append_ex(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                       const tape_attrs *at);
int64_t tape_append_many_ex(tape_appender *a, const void *data, const uint64_t *ends,
                            size_t n, int64_t ts_ns, size_t *written, const tape_attrs *at);
int64_t tape_append_if_ex(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                          int64_t expected_last, const tape_attrs *at);
int64_t tape_append_attrs(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                          const void *key, uint32_t key_len, uint32_t flags, int64_t not_before,
                          int64_t origin_index, int64_t origin_ts);
int64_t tape_append_many_each(tape_appender *a, const void *data, const uint64_t *ends,
                              size_t n, int64_t ts_ns, size_t *written, const int64_t *not_before,
                              const int64_t *origin_index, const int64_t *origin_ts);
int64_t tape_appender_last_index(tape_appender *a);
void tape_set_wait_hooks(void (*before)(void), void (*after)(void));
int tape_appender_sync(tape_appender *a);

typedef struct tape_tailer tape_tailer;

enum { TAPE_FORWARD = 0, TAPE_BACKWARD = 1 };

typedef struct tape_entry {
    int64_t e_index;
    int64_t e_timestamp;
    const void *e_data;
    uint32_t e_len;
    tape_attrs e_attrs;
} tape_entry;

int64_t tape_key_latest(tape_queue *q, const void *key, uint32_t key_len);
int64_t tape_append_if_key(tape_appender *a, const void *data, size_t len, int64_t ts_ns,
                           int64_t expected, const tape_attrs *at);
int64_t tape_keys_list(tape_queue *q, int64_t *indexes, size_t cap);
int tape_keys_rebuild(tape_queue *q);
int tape_key_read(tape_queue *q, tape_tailer *t, const void *key, uint32_t key_len, tape_entry *e);
int tape_keys_check(tape_queue *q, char *msg, size_t cap);

int tape_tailer_open(tape_queue *q, tape_tailer **out);
void tape_tailer_close(tape_tailer *t);
int tape_read(tape_tailer *t, tape_entry *e);
int64_t tape_read_many(tape_tailer *t, void *buf, size_t cap, int64_t *idx,
                       int64_t *ts, uint64_t *ends, size_t max);
int64_t tape_peek_many(tape_tailer *t, void *buf, size_t cap, int64_t *idx,
                       int64_t *ts, uint64_t *ends, size_t max);
int tape_tailer_advance(tape_tailer *t, size_t k);
int tape_read_into(tape_tailer *t, tape_entry *e, void *(*alloc)(void *ctx, size_t len),
                   void *ctx);
typedef struct tape_pin tape_pin;
int tape_read_pinned(tape_tailer *t, tape_entry *e, tape_pin **pin);
void tape_pin_release(tape_pin *pin);
int tape_pin_damaged(const tape_pin *pin);
int64_t tape_read_many_ex(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                          uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs);
int64_t tape_peek_many_ex(tape_tailer *t, void *buf, size_t cap, int64_t *idx, int64_t *ts,
                          uint64_t *ends, size_t max, tape_attrs *attrs, size_t *n_attrs);
int tape_tailer_to_index(tape_tailer *t, int64_t index);
int tape_tailer_to_start(tape_tailer *t);
int tape_tailer_to_end(tape_tailer *t);
int tape_tailer_to_time(tape_tailer *t, int64_t ts_ns);
int tape_tailer_set_direction(tape_tailer *t, int direction);
int tape_tailer_direction(tape_tailer *t);
int64_t tape_tailer_index(tape_tailer *t);
int64_t tape_tailer_last_read_index(tape_tailer *t);
int tape_wait(tape_tailer *t, int64_t timeout_ns);
int tape_tailer_set_spin(tape_tailer *t, int64_t spin_ns);

#define TAPE_NAMED_MAX ...
int tape_tailer_open_named(tape_queue *q, const char *name, tape_tailer **out);
int tape_named_get(tape_queue *q, int slot, char *name, size_t cap, int64_t *next);
int tape_named_remove(tape_queue *q, const char *name);

typedef struct tape_verify_report {
    uint64_t vr_cycles;
    uint64_t vr_entries;
    uint64_t vr_bytes;
    uint64_t vr_unsealed;
    uint64_t vr_abandoned;
    uint64_t vr_problems;
    uint64_t vr_skipped;
    int64_t vr_last_good;
    int64_t vr_bad_cycle;
    uint64_t vr_bad_offset;
    char vr_message[...];
} tape_verify_report;

#define TAPE_VERIFY_SALVAGE ...
int tape_verify(tape_queue *q, int flags, tape_verify_report *r);
typedef int (*tape_progress_fn)(void *arg, uint64_t walked);
int tape_verify_progress(tape_queue *q, int flags, tape_verify_report *r, tape_progress_fn fn,
                         void *arg);
extern "Python" int _tape_progress(void *arg, uint64_t walked);
int64_t tape_repair_tail(tape_queue *q);
typedef struct tape_repair_report {
    uint64_t rr_cleared;
    uint64_t rr_refilled;
    uint64_t rr_sealed;
    uint64_t rr_corrected;
} tape_repair_report;
int tape_repair(tape_queue *q, tape_repair_report *r);

typedef struct tape_group tape_group;
typedef struct tape_consumer tape_consumer;
#define TAPE_GROUP_SLOTS ...
#define TAPE_GROUP_CONSUMERS ...
#define TAPE_GROUP_BACKOFF ...
#define TAPE_GROUP_LATER ...
typedef struct tape_group_settings {
    int64_t gset_ack_wait_ns;
    uint32_t gset_max_deliveries;
    uint32_t gset_nbackoff;
    int64_t gset_backoff_ns[...];
} tape_group_settings;
int tape_group_open(tape_queue *q, const char *name, int64_t start, const tape_group_settings *set,
                    int sync, tape_group **out);
void tape_group_close(tape_group *g);
int tape_group_settings_get(tape_group *g, tape_group_settings *out);
int tape_group_settings_set(tape_group *g, const tape_group_settings *set);
typedef struct tape_group_info {
    int64_t gi_last;
    int64_t gi_floor;
    uint32_t gi_in_flight;
    uint32_t gi_waiting;
    uint32_t gi_dead;
    uint32_t gi_consumers;
    uint64_t gi_generation;
    uint64_t gi_acked;
    int64_t gi_redriven;
    uint64_t gi_deferred;
    uint64_t gi_later;
} tape_group_info;
int tape_group_info_get(tape_group *g, int64_t now_ns, tape_group_info *out);
typedef struct tape_delivery {
    int64_t d_index;
    uint64_t d_gen;
    int64_t d_due;
    int64_t d_dl;
    uint32_t d_slot;
    uint32_t d_state;
    uint32_t d_attempt;
    uint32_t d_owner;
    uint32_t d_reason;
} tape_delivery;
enum { TAPE_GS_FREE = 0, TAPE_GS_READY = 1, TAPE_GS_CLAIMED = 2, TAPE_GS_DEAD = 3,
       TAPE_GS_MOVING = 4 };
enum { TAPE_GR_NONE = 0, TAPE_GR_DELIVERIES = 1, TAPE_GR_REJECTED = 2 };
int tape_group_slot_get(tape_group *g, uint32_t k, tape_delivery *out);
int tape_group_consumer_get(tape_group *g, uint32_t k, char *name, size_t cap, int *alive);
int tape_consumer_open(tape_group *g, const char *name, tape_consumer **out);
void tape_consumer_close(tape_consumer *c);
void tape_consumer_forget(tape_consumer *c);
uint32_t tape_consumer_id(tape_consumer *c);
int tape_group_claim(tape_consumer *c, tape_tailer *t, int64_t now_ns, tape_delivery *d,
                     tape_entry *e);
enum { TAPE_CLAIM_SLOT, TAPE_CLAIM_GEN, TAPE_CLAIM_INDEX, TAPE_CLAIM_ATTEMPT, TAPE_CLAIM_DUE,
       TAPE_CLAIM_DL, TAPE_CLAIM_TS, TAPE_CLAIM_END, TAPE_CLAIM_FIELDS };
int64_t tape_group_claim_many(tape_consumer *c, tape_tailer *t, int64_t now_ns, size_t max,
                              int64_t *out, void *buf, size_t cap);
int64_t tape_group_wait_hint(tape_consumer *c, tape_tailer *t, int64_t now_ns);
int tape_group_ack(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns);
int64_t tape_group_ack_many(tape_consumer *c, const uint32_t *slots, const uint64_t *gens,
                            size_t n, int64_t now_ns, uint8_t *stale);
int tape_group_nack(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns, int64_t delay_ns);
int tape_group_extend(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns, int64_t delay_ns);
int tape_group_reject(tape_consumer *c, uint32_t slot, uint64_t gen, int64_t now_ns, tape_delivery *d);
int tape_group_take_dead(tape_consumer *c, int64_t now_ns, tape_delivery *d);
int tape_group_dead_done(tape_consumer *c, uint32_t slot, uint64_t gen);
int tape_group_redrive(tape_group *g, int64_t index, int64_t dl, int64_t now_ns);
int tape_group_remove(tape_group *g);
int tape_tailer_seek(tape_tailer *t, int64_t index);

"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "tape._core",
    '#include "tape.h"',
    sources=_core_files("*.c"),
    depends=_core_files("*.h"),  # rebuilt when a header changes; shipped in an sdist
    include_dirs=[str(_CSRC.relative_to(_ROOT))],
    extra_compile_args=["-std=c11", "-O2"],
    # TAPE_TESTING=1 compiles in the fault and kill hooks (csrc/fault.h) that
    # the crash tests drive; a release build has none.
    define_macros=[("TAPE_TESTING", None)] if os.environ.get("TAPE_TESTING") == "1" else [],
    libraries=["pthread"],
)
