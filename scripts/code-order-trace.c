/*
 * Preloaded by scripts/code-order into wasmprobe: records which functions
 * of the plugins' compiled code run, in the order of their first call.
 *
 * The engine maps each plugin's compiled code from its cache file (a
 * `.cwasm` file in its cache directory, an ELF object with a symbol per
 * function) and then makes the code executable with mprotect. A seccomp
 * filter turns that mprotect into a SIGSYS; the handler puts a breakpoint
 * byte on every function entry the file's symbol table names before the
 * code can run, and then makes it executable (and writable). The first
 * call of a function traps; the SIGTRAP handler puts the byte back, notes
 * the function and resumes it. After $TRACE_SECONDS seconds the functions
 * called so far are written to $TRACE_OUT, one "<cwasm path>\t<symbol>"
 * per line.
 *
 * For this measurement only: the traced code stays writable, so the
 * traced process holds a private copy of it.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <ucontext.h>
#include <unistd.h>

#include "lib/first-call.h"

#define MAX_MAPS 64
#define MAX_ENTRIES (1u << 20)

struct block { /* one mapping's functions, sorted by address */
    uintptr_t lo, hi;
    size_t first, count;
    char path[512];
    char *names; /* NUL-separated, in entry order */
    char **name;
};

static struct block blocks[MAX_MAPS];
static size_t nblocks; /* published after a block is complete */

static long lookup(uintptr_t a)
{
    /* Newest first: a mapping that replaced an unmapped one at the same
     * addresses has the breakpoints that are there now. */
    size_t n = __atomic_load_n(&nblocks, __ATOMIC_ACQUIRE);
    for (size_t b = n; b-- > 0;) {
        if (a < blocks[b].lo || a >= blocks[b].hi)
            continue;
        long i = find_entry(blocks[b].first, blocks[b].first + blocks[b].count, a);
        if (i >= 0)
            return i;
    }
    return -1;
}

struct sym { uintptr_t at; const char *name; };

static int by_at(const void *a, const void *b)
{
    uintptr_t x = ((const struct sym *)a)->at, y = ((const struct sym *)b)->at;
    return (x > y) - (x < y);
}

/* Puts breakpoints on the functions of one mapping of a .cwasm file:
 * [lo, hi) maps the file from byte `off`. */
static void patch(const char *path, uintptr_t lo, uintptr_t hi, unsigned long off)
{
    if (nblocks == MAX_MAPS)
        return;
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    unsigned char *f = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f == MAP_FAILED)
        return;
    const Elf64_Ehdr *eh = (const void *)f;
    const Elf64_Shdr *sh = (const void *)(f + eh->e_shoff);
    const Elf64_Shdr *text = NULL, *symtab = NULL;
    const char *shstr = (const char *)f + sh[eh->e_shstrndx].sh_offset;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (!strcmp(shstr + sh[i].sh_name, ".text"))
            text = &sh[i];
        if (sh[i].sh_type == SHT_SYMTAB)
            symtab = &sh[i];
    }
    if (!text || !symtab) {
        munmap(f, st.st_size);
        return;
    }
    const char *strtab = (const char *)f + sh[symtab->sh_link].sh_offset;
    const Elf64_Sym *s = (const void *)(f + symtab->sh_offset);
    size_t nsym = symtab->sh_size / sizeof *s;
    struct sym *syms = malloc(nsym * sizeof *syms);
    size_t n = 0, bytes = 0;
    for (size_t i = 0; syms && i < nsym; i++) {
        if (ELF64_ST_TYPE(s[i].st_info) != STT_FUNC || s[i].st_shndx >= eh->e_shnum
            || &sh[s[i].st_shndx] != text)
            continue;
        uintptr_t at = lo + (text->sh_offset + s[i].st_value - off);
        if (at < lo || at >= hi)
            continue;
        syms[n].at = at;
        syms[n].name = strtab + s[i].st_name;
        bytes += strlen(syms[n].name) + 1;
        n++;
    }
    if (!n || entries + n > MAX_ENTRIES) {
        free(syms);
        munmap(f, st.st_size);
        return;
    }
    qsort(syms, n, sizeof *syms, by_at);
    struct block *b = &blocks[nblocks];
    b->lo = lo;
    b->hi = hi;
    b->first = entries;
    snprintf(b->path, sizeof b->path, "%s", path);
    b->names = malloc(bytes);
    b->name = malloc(n * sizeof *b->name);
    if (!b->names || !b->name) {
        free(syms);
        munmap(f, st.st_size);
        return;
    }
    char *w = b->names;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && entry[b->first + k - 1] == syms[i].at)
            continue; /* aliases: one breakpoint per address */
        entry[b->first + k] = syms[i].at;
        b->name[k] = w;
        w = stpcpy(w, syms[i].name) + 1;
        k++;
    }
    b->count = k;
    free(syms);
    munmap(f, st.st_size);
    if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
        perror("code-order-trace: mprotect");
        return;
    }
    for (size_t i = 0; i < k; i++)
        saved[b->first + i] = *(unsigned char *)entry[b->first + i];
    entries += k;
    __atomic_store_n(&nblocks, nblocks + 1, __ATOMIC_RELEASE);
    for (size_t i = 0; i < k; i++)
        *(volatile unsigned char *)entry[b->first + i] = 0xcc; /* int3 */
}

/* The file and file offset mapped at `addr`, from /proc/self/maps. */
static int mapping_of(uintptr_t addr, char *path, size_t size, unsigned long *off)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps)
        return 0;
    char line[1024];
    int found = 0;
    while (!found && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi, o;
        char name[512] = "";
        if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %511s", &lo, &hi, &o, name) < 3)
            continue;
        if (addr >= lo && addr < hi) {
            snprintf(path, size, "%s", name);
            *off = o + (addr - lo);
            found = 1;
        }
    }
    fclose(maps);
    return found;
}

static int patching; /* one patch at a time: loads run on several threads */

/* An mprotect that asks for execute and not write: patch the code first
 * if it is a .cwasm file's, then grant it (writable too, so that the
 * SIGTRAP handler can restore bytes). */
static void on_sys(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)info;
    int saved_errno = errno;
    ucontext_t *uc = context;
    greg_t *r = uc->uc_mcontext.gregs;
    uintptr_t addr = (uintptr_t)r[REG_RDI];
    size_t len = (size_t)r[REG_RSI];
    int prot = (int)r[REG_RDX];
    char path[512];
    unsigned long off;
    if (mapping_of(addr, path, sizeof path, &off)) {
        size_t n = strlen(path);
        if (n > 6 && !strcmp(path + n - 6, ".cwasm")) {
            while (__atomic_exchange_n(&patching, 1, __ATOMIC_ACQUIRE))
                ;
            patch(path, addr, addr + len, off);
            __atomic_store_n(&patching, 0, __ATOMIC_RELEASE);
        }
    }
    /* The filter lets an mprotect that includes write through. The
     * interrupted code sees the system call's own result (-errno on
     * failure) and its errno as it was. */
    long rc = syscall(SYS_mprotect, addr, len, prot | PROT_WRITE);
    r[REG_RAX] = rc == -1 ? -errno : rc;
    errno = saved_errno;
}

static int print_entry(FILE *out, size_t e)
{
    for (size_t b = 0; b < nblocks; b++)
        if (e >= blocks[b].first && e < blocks[b].first + blocks[b].count) {
            fprintf(out, "%s\t%s\n", blocks[b].path, blocks[b].name[e - blocks[b].first]);
            return 1;
        }
    return 0;
}

static void *report(void *arg)
{
    (void)arg;
    long written = write_first_calls("code-order-trace", print_entry);
    if (written >= 0)
        fprintf(stderr, "code-order-trace: %ld of %zu functions called, %zu mappings\n",
                written, entries, nblocks);
    return NULL;
}

__attribute__((constructor)) static void start_tracing(void)
{
    if (!getenv("TRACE_OUT"))
        return;
    entry = malloc(MAX_ENTRIES * sizeof *entry);
    saved = malloc(MAX_ENTRIES);
    called = calloc(MAX_ENTRIES, 1);
    first_calls = calloc(MAX_ENTRIES, sizeof *first_calls);
    if (!entry || !saved || !called || !first_calls)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGTRAP, &sa, NULL);
    sa.sa_sigaction = on_sys;
    sigaction(SIGSYS, &sa, NULL);

    /* mprotect with PROT_EXEC and without PROT_WRITE raises SIGSYS;
     * everything else runs as it would. Child processes inherit the
     * filter but not this library (the engine clears their environment):
     * an optimizing compile in a child would die of SIGSYS, so the traced
     * engine must start with a filled cache (scripts/code-order fills it
     * and checks). */
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_WRITE, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        perror("code-order-trace: seccomp");
        return;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, report, NULL) == 0)
        pthread_detach(t);
}
