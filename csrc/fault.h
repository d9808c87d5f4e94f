/* fault.h - the system calls the core makes that can fail on a full or
 * broken disk, and the points where a test may kill a writer. In a release
 * build these are the plain calls and nothing else. Built with -DTAPE_TESTING
 * they can be made to fail, and the kill points to raise SIGKILL, as the
 * environment (or tape_fault_configure) says:
 *
 *   TAPE_FAULT="call:n:ERRNO[:always],..."   fail the n-th call (counting from
 *       1, per process) of `call` with ERRNO (ENOSPC, EIO, ...); with :always,
 *       that call and every later one. Calls: open ftruncate fallocate mmap
 *       msync fsync rename pread. tape publishes new files with link(2),
 *       counted as "rename", and flushes with fdatasync(2), counted as
 *       "fsync"; it calls neither msync nor ftruncate (files only grow, by
 *       tape_file_alloc). pread only fills a tailer's jump
 *       buffer: when it fails, the tailer reads through its mapping.
 *   TAPE_KILL="point:n"   raise SIGKILL on reaching `point` the n-th time.
 *       Points: after_reserve after_copy before_publish index_array
 *       index_slot hint_update roll_created roll_sealed upgrade key_update.
 *
 * The wrappers carry the prefix tf_ (tf_openat, tf_pread...): a call spelled
 * so can be made to fail.
 */
#ifndef TAPE_FAULT_H
#define TAPE_FAULT_H

#include "tape_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

enum tape_call { TC_OPEN, TC_FTRUNCATE, TC_FALLOCATE, TC_MMAP, TC_MSYNC, TC_FSYNC, TC_RENAME, TC_PREAD, TC_N };

#ifdef TAPE_TESTING
/* The errno the next `call` must fail with, or 0. */
int tape_fault(enum tape_call call);
void tape_kill_point(const char *name);
/* Replace the configuration read from the environment (NULL: clear); the
 * counts of calls start again from 0. */
int tape_fault_configure(const char *faults, const char *kills);
/* How many times `call` was made since the last configuration. */
long tape_fault_calls(enum tape_call call);
#define TAPE_KILL(name) tape_kill_point(name)
#else
static inline int tape_fault(enum tape_call call)
{
    (void)call;
    return 0;
}
#define TAPE_KILL(name) ((void)0)
#endif

#define TAPE_FAIL_WITH(call, failed)                                         \
    do {                                                                     \
        int e_ = tape_fault(call);                                           \
        if (e_) {                                                            \
            errno = e_;                                                      \
            return failed;                                                   \
        }                                                                    \
    } while (0)

static inline int tf_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    TAPE_FAIL_WITH(TC_OPEN, -1);
    return openat(dirfd, path, flags, mode);
}

static inline int tf_fallocate(int fd, off_t off, off_t len)
{
    TAPE_FAIL_WITH(TC_FALLOCATE, -1);
    return fallocate(fd, 0, off, len);
}

/* Map fd at `at` (over what is there), or where the kernel likes (NULL). */
static inline void *tf_mmap(void *at, size_t len, int prot, int fd)
{
    TAPE_FAIL_WITH(TC_MMAP, MAP_FAILED);
    return mmap(at, len, prot, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
}

/* Grow a mapping, moving it to `at` (over what is there) or where the kernel
 * likes (NULL). */
static inline void *tf_mremap(void *old, size_t old_len, size_t len, void *at)
{
    TAPE_FAIL_WITH(TC_MMAP, MAP_FAILED);
    if (at)
        return mremap(old, old_len, len, MREMAP_MAYMOVE | MREMAP_FIXED, at);
    return mremap(old, old_len, len, MREMAP_MAYMOVE);
}

static inline int tf_fsync(int fd)
{
    TAPE_FAIL_WITH(TC_FSYNC, -1);
    return fsync(fd);
}

static inline int tf_fdatasync(int fd)
{
    TAPE_FAIL_WITH(TC_FSYNC, -1);
    return fdatasync(fd);
}

static inline ssize_t tf_pread(int fd, void *buf, size_t len, off_t off)
{
    TAPE_FAIL_WITH(TC_PREAD, -1);
    return pread(fd, buf, len, off);
}

static inline int tf_linkat(int dirfd, const char *from, const char *to)
{
    TAPE_FAIL_WITH(TC_RENAME, -1);
    return linkat(dirfd, from, dirfd, to, 0);
}

#endif /* TAPE_FAULT_H */
