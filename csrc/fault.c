/* fault.c - failing system calls and killing the process on request, for the
 * crash and fault-injection tests. Compiled to nothing unless TAPE_TESTING is
 * defined (see fault.h for the configuration). */
#include "fault.h"

#ifdef TAPE_TESTING

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES 16

static const char *const call_names[TC_N] = {"open", "ftruncate", "fallocate", "mmap",
                                             "msync", "fsync", "rename", "pread"};

static const struct {
    const char *fe_name;
    int fe_value;
} errnos[] = {{"ENOSPC", ENOSPC}, {"EIO", EIO}, {"EDQUOT", EDQUOT}, {"EACCES", EACCES},
              {"ENOMEM", ENOMEM}, {"EINTR", EINTR}, {"EROFS", EROFS}, {"EFBIG", EFBIG},
              {"EOPNOTSUPP", EOPNOTSUPP}, {"ENOSYS", ENOSYS}, {"EFAULT", EFAULT}};

typedef struct rule {
    int fr_call;             /* an enum tape_call, or -1 for a kill point */
    char fr_point[32];
    long fr_n;
    int fr_errno;
    int fr_always;
} rule;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static rule rules[MAX_RULES];
static int nrules;
static long calls[TC_N];
static long hits[MAX_RULES]; /* per kill rule */
static int configured;
/* Kill points are on the append path: when none is armed they cost one
 * relaxed load. -1 until the environment has been read. */
static atomic_int armed = -1;

static int parse_errno(const char *s)
{
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (!strcmp(errnos[i].fe_name, s))
            return errnos[i].fe_value;
    int v = atoi(s);
    return v > 0 ? v : EIO;
}

/* "a:b:c,d:e" -> rules; kills when `kill` is set. Holding mu. */
static int parse(const char *spec, int kill)
{
    if (!spec || !*spec)
        return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        if (nrules == MAX_RULES)
            return TAPE_EINVAL;
        char *f[4] = {NULL, NULL, NULL, NULL}, *s2 = NULL;
        int nf = 0;
        for (char *p = strtok_r(item, ":", &s2); p && nf < 4; p = strtok_r(NULL, ":", &s2))
            f[nf++] = p;
        rule *r = &rules[nrules];
        memset(r, 0, sizeof *r);
        r->fr_call = -1;
        if (kill) {
            if (nf != 2)
                return TAPE_EINVAL;
            snprintf(r->fr_point, sizeof r->fr_point, "%s", f[0]);
        } else {
            if (nf < 3)
                return TAPE_EINVAL;
            for (int c = 0; c < TC_N; c++)
                if (!strcmp(call_names[c], f[0]))
                    r->fr_call = c;
            if (r->fr_call < 0)
                return TAPE_EINVAL;
            r->fr_errno = parse_errno(f[2]);
            r->fr_always = nf == 4 && !strcmp(f[3], "always");
        }
        r->fr_n = atol(f[1]);
        if (r->fr_n < 1)
            return TAPE_EINVAL;
        nrules++;
    }
    return 0;
}

/* Holding mu. */
static void set_armed(void)
{
    int any = 0;
    for (int i = 0; i < nrules; i++)
        any |= rules[i].fr_call < 0;
    atomic_store_explicit(&armed, any, memory_order_relaxed);
}

/* Holding mu. */
static void configure_once(void)
{
    if (configured)
        return;
    configured = 1;
    parse(getenv("TAPE_FAULT"), 0);
    parse(getenv("TAPE_KILL"), 1);
    set_armed();
}

int tape_fault_configure(const char *faults, const char *kills)
{
    pthread_mutex_lock(&mu);
    configured = 1;
    nrules = 0;
    memset(calls, 0, sizeof calls);
    memset(hits, 0, sizeof hits);
    int rc = parse(faults, 0);
    if (rc == 0)
        rc = parse(kills, 1);
    set_armed();
    pthread_mutex_unlock(&mu);
    return rc;
}

int tape_fault(enum tape_call call)
{
    pthread_mutex_lock(&mu);
    configure_once();
    long n = ++calls[call];
    int e = 0;
    for (int i = 0; i < nrules && !e; i++) {
        const rule *r = &rules[i];
        if (r->fr_call == (int)call && (n == r->fr_n || (r->fr_always && n > r->fr_n)))
            e = r->fr_errno;
    }
    pthread_mutex_unlock(&mu);
    return e;
}

long tape_fault_calls(enum tape_call call)
{
    pthread_mutex_lock(&mu);
    long n = calls[call];
    pthread_mutex_unlock(&mu);
    return n;
}

void tape_kill_point(const char *name)
{
    if (atomic_load_explicit(&armed, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&mu);
    configure_once();
    int die = 0;
    for (int i = 0; i < nrules && !die; i++) {
        if (rules[i].fr_call >= 0 || strcmp(rules[i].fr_point, name) != 0)
            continue;
        die = ++hits[i] == rules[i].fr_n;
    }
    pthread_mutex_unlock(&mu);
    if (die)
        raise(SIGKILL);
}

#else
/* ISO C wants something in every translation unit. */
typedef int tape_fault_unused;
#endif
