/*
 * Shared by scripts/text-order-trace.c and scripts/code-order-trace.c: a
 * breakpoint byte on each traced function's entry, put back on the
 * function's first call, and the functions written in the order of their
 * first calls. The including file allocates the arrays below, writes the
 * breakpoints, installs on_trap for SIGTRAP and defines lookup() (with
 * find_entry over its sorted runs of entries).
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <unistd.h>

static uintptr_t *entry;      /* breakpoint addresses, sorted (per block) */
static size_t entries;
static unsigned char *saved;  /* the byte each breakpoint replaced */
static unsigned char *called; /* set on a function's first call */
static uint32_t *first_calls; /* entry index + 1, in call order; 0: not yet written */
static size_t calls;

/* The entry index of a breakpoint at `a`, or -1 if it is not one. */
static long lookup(uintptr_t a);

/* The index of `a` among the sorted entries [lo, hi), or -1. */
static long find_entry(size_t lo, size_t hi, uintptr_t a)
{
    size_t end = hi;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (entry[mid] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < end && entry[lo] == a ? (long)lo : -1;
}

static void on_trap(int sig, siginfo_t *info, void *context)
{
    ucontext_t *uc = context;
    uintptr_t at = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP] - 1;
    long i = info->si_code == SI_KERNEL ? lookup(at) : -1;
    if (i < 0) {
        /* Not one of ours: what the signal would have done untraced. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    /* Several threads may trap on one function at once: each restores
     * the same byte and resumes; only the first is counted. */
    *(volatile unsigned char *)at = saved[i];
    if (!__atomic_exchange_n(&called[i], 1, __ATOMIC_SEQ_CST))
        __atomic_store_n(&first_calls[__atomic_fetch_add(&calls, 1, __ATOMIC_SEQ_CST)],
                         (uint32_t)i + 1, __ATOMIC_SEQ_CST);
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)at;
}

/* After $TRACE_SECONDS (60 by default), writes one line per function
 * called so far, by `print` (which returns how many it wrote), to
 * $TRACE_OUT. Written aside and renamed: whoever waits for TRACE_OUT never
 * reads half of it. Returns the number of lines, or -1. */
static long write_first_calls(const char *tool, int (*print)(FILE *, size_t))
{
    const char *secs = getenv("TRACE_SECONDS");
    unsigned left = secs ? (unsigned)atoi(secs) : 60;
    while (left)
        left = sleep(left); /* a handled signal ends sleep() early */
    const char *path = getenv("TRACE_OUT");
    char partial[4096];
    if (!path || snprintf(partial, sizeof partial, "%s.partial", path) >= (int)sizeof partial) {
        fprintf(stderr, "%s: no usable TRACE_OUT\n", tool);
        return -1;
    }
    FILE *out = fopen(partial, "w");
    if (!out) {
        fprintf(stderr, "%s: cannot write %s: %s\n", tool, partial, strerror(errno));
        return -1;
    }
    size_t n = __atomic_load_n(&calls, __ATOMIC_SEQ_CST);
    long written = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = __atomic_load_n(&first_calls[i], __ATOMIC_SEQ_CST);
        if (k)
            written += print(out, k - 1);
        /* else counted, not stored yet: its thread is mid-trap */
    }
    if (fclose(out) != 0 || rename(partial, path) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", tool, path, strerror(errno));
        return -1;
    }
    return written;
}
