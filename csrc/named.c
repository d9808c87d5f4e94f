/* named.c - named tailers' slots in tape.meta (docs/FORMAT.md, "Named
 * tailers"): finding, claiming and forgetting them. The positions themselves
 * are stored by the tailers (read.c). */
#include "tape_int.h"

#include <errno.h>
#include <string.h>

_Static_assert(sizeof(tape_named_slot) == 64, "named tailer slot layout");

static tape_named_slot *slots(tape_queue *q)
{
    return (tape_named_slot *)(q->q_meta + TAPE_NAMED_OFF);
}

static int valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n < TAPE_NAME_MAX;
}

static int slot_is(const tape_named_slot *s, const char *padded)
{
    return __atomic_load_n(&s->n_state, __ATOMIC_ACQUIRE) == 1 &&
           memcmp(s->n_name, padded, TAPE_NAME_MAX) == 0 &&
           s->n_crc == tape_crc32c(0, s->n_name, TAPE_NAME_MAX);
}

static tape_named_slot *find(tape_queue *q, const char *padded)
{
    for (int i = 0; i < TAPE_NAMED_MAX; i++)
        if (slot_is(&slots(q)[i], padded))
            return &slots(q)[i];
    return NULL;
}

/* The slot of `name`, claiming a free one if needed (not on a read-only
 * queue, where *out is NULL when there is none). */
int tape_named_claim(tape_queue *q, const char *name, tape_named_slot **out)
{
    if (!valid_name(name))
        return TAPE_EINVAL;
    char padded[TAPE_NAME_MAX];
    memset(padded, 0, sizeof padded);
    memcpy(padded, name, strlen(name));
    *out = find(q, padded);
    if (*out || q->q_read_only)
        return 0;
    int rc = tape_lock_meta(q);
    if (rc < 0)
        return rc;
    tape_named_slot *s = find(q, padded);
    for (int i = 0; !s && i < TAPE_NAMED_MAX; i++) {
        tape_named_slot *f = &slots(q)[i];
        if (__atomic_load_n(&f->n_state, __ATOMIC_ACQUIRE) != 0)
            continue;
        memcpy(f->n_name, padded, TAPE_NAME_MAX);
        __atomic_store_n(&f->n_next, -1, __ATOMIC_RELAXED);
        f->n_crc = tape_crc32c(0, padded, TAPE_NAME_MAX);
        __atomic_store_n(&f->n_state, 1u, __ATOMIC_RELEASE);
        s = f;
    }
    tape_unlock(q);
    if (!s)
        return TAPE_ELIMIT;
    *out = s;
    return 0;
}

int tape_named_get(tape_queue *q, int slot, char *name, size_t cap, int64_t *next)
{
    if (slot < 0 || slot >= TAPE_NAMED_MAX || cap == 0)
        return TAPE_EINVAL;
    const tape_named_slot *s = &slots(q)[slot];
    if (__atomic_load_n(&s->n_state, __ATOMIC_ACQUIRE) != 1)
        return 0;
    if (memchr(s->n_name, 0, TAPE_NAME_MAX) == NULL ||
        s->n_crc != tape_crc32c(0, s->n_name, TAPE_NAME_MAX))
        return TAPE_ECORRUPT;
    size_t n = strlen(s->n_name);
    if (n >= cap)
        return TAPE_EINVAL;
    memcpy(name, s->n_name, n + 1);
    *next = __atomic_load_n(&s->n_next, __ATOMIC_ACQUIRE);
    return 1;
}

int tape_named_remove(tape_queue *q, const char *name)
{
    if (!valid_name(name))
        return TAPE_EINVAL;
    if (q->q_read_only)
        return TAPE_EREADONLY;
    char padded[TAPE_NAME_MAX];
    memset(padded, 0, sizeof padded);
    memcpy(padded, name, strlen(name));
    int rc = tape_lock_meta(q);
    if (rc < 0)
        return rc;
    tape_named_slot *s = find(q, padded);
    if (s) {
        __atomic_store_n(&s->n_state, 0u, __ATOMIC_RELEASE);
        memset(s->n_name, 0, TAPE_NAME_MAX);
    }
    tape_unlock(q);
    return s ? 0 : -ENOENT;
}

/* Holding the write lock, the end of data just found at `end` (the index the
 * next entry gets): bring every stored position beyond it back to it. Such a
 * position was made durable ahead of the data it was read from (a sync
 * flushes the cycle files, then tape.meta: a tailer that read in between),
 * and the data was lost with a power cut; the entries written next reuse
 * those indexes, and the tailer must not skip them. A tailer storing a
 * position meanwhile stores one at most `end`: it is left alone. */
void tape_named_clamp(tape_queue *q, int64_t end)
{
    for (int i = 0; i < TAPE_NAMED_MAX; i++) {
        tape_named_slot *s = &slots(q)[i];
        if (__atomic_load_n(&s->n_state, __ATOMIC_ACQUIRE) != 1)
            continue;
        int64_t next = __atomic_load_n(&s->n_next, __ATOMIC_ACQUIRE);
        while (next > end &&
               !__atomic_compare_exchange_n(&s->n_next, &next, end, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
            ;
    }
}
