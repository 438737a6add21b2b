/*
 * Preloaded by scripts/text-order into a release wasmprobe: records which
 * of the program's functions run, in the order of their first call.
 *
 * Every function entry listed in $TRACE_ENTRIES (hex link addresses, one
 * per line) gets a breakpoint byte. The first call of a function traps;
 * the handler puts the original byte back, notes the function and resumes
 * it, so each function costs one trap and then runs at full speed. After
 * $TRACE_SECONDS seconds the functions called so far are written to
 * $TRACE_OUT as link addresses.
 *
 * For this measurement only: the program's text is made writable, so the
 * traced process holds a private copy of it.
 */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "lib/first-call.h"

static uintptr_t load_bias, text_lo, text_hi;

static long lookup(uintptr_t a)
{
    return find_entry(0, entries, a);
}

static int find_text(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    if (info->dlpi_name && info->dlpi_name[0])
        return 0; /* a shared library; the program comes first */
    load_bias = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            text_lo = (load_bias + ph->p_vaddr) & ~(uintptr_t)4095;
            text_hi = (load_bias + ph->p_vaddr + ph->p_memsz + 4095) & ~(uintptr_t)4095;
        }
    }
    return 1;
}

static int print_entry(FILE *out, size_t e)
{
    fprintf(out, "%lx\n", (unsigned long)(entry[e] - load_bias));
    return 1;
}

static void *report(void *arg)
{
    (void)arg;
    long written = write_first_calls("text-order-trace", print_entry);
    if (written >= 0)
        fprintf(stderr, "text-order-trace: %ld of %zu functions called\n", written, entries);
    return NULL;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

__attribute__((constructor)) static void start_tracing(void)
{
    const char *list = getenv("TRACE_ENTRIES");
    if (!list)
        return;
    dl_iterate_phdr(find_text, NULL);
    FILE *in = fopen(list, "r");
    if (!in || !text_lo) {
        fprintf(stderr, "text-order-trace: no entries or no text segment\n");
        return;
    }
    size_t cap = 1024;
    entry = malloc(cap * sizeof *entry);
    unsigned long link_addr;
    while (entry && fscanf(in, "%lx", &link_addr) == 1) {
        uintptr_t a = load_bias + link_addr;
        if (a < text_lo || a >= text_hi)
            continue;
        if (entries == cap) {
            cap *= 2;
            entry = realloc(entry, cap * sizeof *entry);
            if (!entry)
                break;
        }
        entry[entries++] = a;
    }
    fclose(in);
    if (!entry || !entries)
        return;
    qsort(entry, entries, sizeof *entry, by_address);
    size_t unique = 0;
    for (size_t i = 0; i < entries; i++)
        if (!unique || entry[i] != entry[unique - 1])
            entry[unique++] = entry[i];
    entries = unique;
    saved = malloc(entries);
    called = calloc(entries, 1);
    first_calls = calloc(entries, sizeof *first_calls);
    if (!saved || !called || !first_calls)
        return;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGTRAP, &sa, NULL);
    if (mprotect((void *)text_lo, text_hi - text_lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
        perror("text-order-trace: mprotect");
        return;
    }
    for (size_t i = 0; i < entries; i++) {
        saved[i] = *(unsigned char *)entry[i];
        *(unsigned char *)entry[i] = 0xcc; /* int3 */
    }
    pthread_t t;
    if (pthread_create(&t, NULL, report, NULL) == 0)
        pthread_detach(t);
}
