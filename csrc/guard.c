/* guard.c - SIGBUS inside tape's mappings becomes an error, not a crash.
 *
 * A mapped page that the file no longer backs (another process truncated the
 * file) or that the filesystem cannot supply (a full tmpfs asked for a page
 * of a hole) raises SIGBUS on access. Every view (map.c) registers its
 * mapping here; the handler, for an address inside one, maps an anonymous
 * zero page over the faulting page (MAP_FIXED: the access then completes,
 * reading zeros, which tape's format reads as "end of data") and marks the
 * mapping damaged. The code that touched it checks the mark when its work is
 * done (tape_guard_hit) and returns an error instead of its result; the
 * owner then closes the view (a damaged view is never remapped: the zero
 * page split its mapping). A fault anywhere else goes to the handler that
 * was installed before (Python's faulthandler, say) or to the default
 * action, as if tape were not there.
 *
 * The registry is a fixed table of slots, each a range and a mark, all
 * atomics: the handler reads it without a lock, so it is async-signal-safe.
 * A slot is claimed with a compare-and-swap on its state, and its range is
 * only written by the view's owner while no other thread touches the view.
 * This file calls no other core file. */
#include "tape_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

tape_guard_slot tape_guard_slots[TAPE_GUARD_SLOTS];
static _Atomic int g_top;          /* slots [0, g_top) have been used */
static _Atomic int g_next;         /* where the next claim starts looking */
static struct sigaction g_prev;    /* the handler installed before ours */
static _Atomic uintptr_t g_foreign = UINTPTR_MAX; /* the last fault passed on to g_prev */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void pass_on(int sig, siginfo_t *si, void *ctx)
{
    /* The same address again, right after it was passed on: the previous
     * handler returned without curing it, so the default action has it. */
    uintptr_t a = (uintptr_t)si->si_addr;
    int again = atomic_exchange_explicit(&g_foreign, a, memory_order_relaxed) == a;
    if (!again && (g_prev.sa_flags & SA_SIGINFO) && g_prev.sa_sigaction) {
        g_prev.sa_sigaction(sig, si, ctx);
        return;
    }
    if (!again && !(g_prev.sa_flags & SA_SIGINFO) && g_prev.sa_handler != SIG_DFL &&
        g_prev.sa_handler != SIG_IGN) {
        g_prev.sa_handler(sig);
        return;
    }
    /* Default action: restore it and raise; a fault happens again anyway
     * when the instruction is retried. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
    int saved = errno;
    uintptr_t a = (uintptr_t)si->si_addr;
    int top = atomic_load_explicit(&g_top, memory_order_acquire);
    if (si->si_code > 0) { /* raised by the kernel for an access, not sent */
        for (int i = 0; i < top; i++) {
            tape_guard_slot *s = &tape_guard_slots[i];
            if (atomic_load_explicit(&s->g_state, memory_order_acquire) != 1)
                continue;
            uintptr_t base = atomic_load_explicit(&s->g_base, memory_order_acquire);
            size_t len = atomic_load_explicit(&s->g_len, memory_order_acquire);
            if (a < base || a - base >= len)
                continue;
            uintptr_t page = a & ~(uintptr_t)(TAPE_PAGE - 1);
            uint64_t off = page - base;
            uint64_t first = UINT64_MAX;
            atomic_compare_exchange_strong(&s->g_fault_off, &first, off);
            /* The mark first: a thread that sees the zero page sees it. */
            atomic_store_explicit(&s->g_hit, 1, memory_order_seq_cst);
            void *p = mmap((void *)page, TAPE_PAGE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            errno = saved;
            if (p != MAP_FAILED)
                return;
            break; /* out of memory for a page table: nothing else to do */
        }
    }
    pass_on(sig, si, ctx);
    errno = saved;
}

static void our_action(struct sigaction *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sa_sigaction = on_sigbus;
    sa->sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa->sa_mask);
}

static void install(void)
{
    struct sigaction sa;
    our_action(&sa);
    sigaction(SIGBUS, &sa, &g_prev);
}

/* Installed once, on the first registration; installed again (chained to
 * the newcomer) if a handler installed since replaced it. */
static void ensure_installed(void)
{
    pthread_once(&g_once, install);
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
        cur.sa_sigaction == on_sigbus)
        return;
    struct sigaction sa;
    our_action(&sa);
    /* (rare: two threads racing here chain to each other's result, both ours) */
    struct sigaction prev;
    if (sigaction(SIGBUS, &sa, &prev) == 0 &&
        !((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction == on_sigbus))
        g_prev = prev;
}

int tape_guard_add(const void *base, size_t len)
{
    ensure_installed();
    int start = atomic_load_explicit(&g_next, memory_order_relaxed);
    for (int k = 0; k < TAPE_GUARD_SLOTS; k++) {
        int i = (start + k) % TAPE_GUARD_SLOTS;
        tape_guard_slot *s = &tape_guard_slots[i];
        int free_ = 0;
        if (!atomic_compare_exchange_strong(&s->g_state, &free_, 2))
            continue;
        /* Claimed (2): not yet seen by the handler. */
        atomic_store_explicit(&s->g_base, (uintptr_t)base, memory_order_relaxed);
        atomic_store_explicit(&s->g_len, len, memory_order_relaxed);
        atomic_store_explicit(&s->g_hit, 0, memory_order_relaxed);
        atomic_store_explicit(&s->g_fault_off, UINT64_MAX, memory_order_relaxed);
        int top = atomic_load_explicit(&g_top, memory_order_relaxed);
        while (top <= i && !atomic_compare_exchange_weak(&g_top, &top, i + 1))
            ;
        atomic_store_explicit(&s->g_state, 1, memory_order_release);
        atomic_store_explicit(&g_next, (i + 1) % TAPE_GUARD_SLOTS, memory_order_relaxed);
        return i;
    }
    return -EMFILE;
}

void tape_guard_move(int slot, const void *base, size_t len)
{
    if (slot < 0)
        return;
    tape_guard_slot *s = &tape_guard_slots[slot];
    atomic_store_explicit(&s->g_state, 2, memory_order_seq_cst);
    atomic_store_explicit(&s->g_base, (uintptr_t)base, memory_order_relaxed);
    atomic_store_explicit(&s->g_len, len, memory_order_relaxed);
    atomic_store_explicit(&s->g_state, 1, memory_order_release);
}

void tape_guard_remove(int slot)
{
    if (slot < 0)
        return;
    atomic_store_explicit(&tape_guard_slots[slot].g_state, 0, memory_order_release);
}

uint64_t tape_guard_fault_off(int slot)
{
    if (slot < 0)
        return UINT64_MAX;
    return atomic_load_explicit(&tape_guard_slots[slot].g_fault_off, memory_order_relaxed);
}
