/* error.c - one place that turns a return code into text. */
#include "tape_int.h"

#include <string.h>

const char *tape_strerror(int rc)
{
    switch (rc) {
    case 0: return "success";
    case TAPE_ECORRUPT: return "damaged queue file";
    case TAPE_EVERSION: return "queue format version not supported by this build";
    case TAPE_ENOTQUEUE: return "directory is not empty and is not a tape queue";
    case TAPE_EINCOMPAT: return "roll cycle or codec differs from the queue's";
    case TAPE_EREADONLY: return "queue is open read-only";
    case TAPE_ETOOBIG: return "entry larger than the maximum payload (about 1 GiB)";
    case TAPE_ECYCLEFULL: return "the roll cycle holds its maximum number of entries";
    case TAPE_EPOISONED: return "an earlier flush to disk failed; reopen the queue";
    case TAPE_EINVAL: return "invalid argument";
    case TAPE_EROLLCYCLE: return "unknown roll cycle";
    case TAPE_ECLOCK: return "timestamp outside the range of the roll cycle";
    case TAPE_ECONFLICT: return "another entry was appended first";
    case TAPE_ECLOSED: return "the appender is closed";
    case TAPE_ELIMIT: return "a limit of the queue is reached (e.g. 256 named tailers)";
    case TAPE_ESTALE: return "the delivery's claim has lapsed (handed out again, or finished)";
    default: break;
    }
    if (rc < 0 && rc > TAPE_EBASE)
        return strerror(-rc);
    return "unknown error";
}
