/*
 * LD_PRELOAD shim that lets the 2020 `lightstep-streaming==0.14.0` wheel run on Python >= 3.10.
 *
 * The wheel's extension (lightstep_streaming.so, abi3) was compiled without PY_SSIZE_T_CLEAN
 * and keeps the lengths of its `s#` arguments in `int` variables. Since Python 3.10 the plain
 * (non-`_SizeT`) parsers reject every `#` format unit with
 * `SystemError: PY_SSIZE_T_CLEAN macro must be defined for '#' formats`, so span names and tag
 * keys cannot be passed at all.
 *
 * What the extension calls (from `nm -D` and its disassembly):
 *   - PyArg_ParseTupleAndKeywords with "s#..." formats (start_span, start_active_span, set_tag,
 *     set_operation_name, {get,set}_baggage_item, inject, extract) and formats without `#`.
 *   - PyArg_ParseTuple only with "OOO" and Py_BuildValue only with "(O)" and "Oi": no `#`, so
 *     they work unchanged and are left alone.
 *
 * Forwarding to `_PyArg_ParseTupleAndKeywords_SizeT` alone would be wrong: it stores a
 * Py_ssize_t (8 bytes) through each length pointer, which points at a 4-byte `int` on the
 * extension's stack (for `s#` the int sits right below the char* and the store would clobber
 * it). So `parse_tuple_and_keywords` below walks the format, passes the `_SizeT` parser a
 * Py_ssize_t of its own for each `#` length, and narrows the results back into the caller's
 * ints. Formats without `#` go to PyArg_VaParseTupleAndKeywords unchanged. Only single-pointer
 * format units are understood (all the extension uses); a `#` format with anything else fails
 * with a SystemError naming the unit rather than guessing at the argument layout.
 *
 * How the wrapper gets in: not by defining PyArg_ParseTupleAndKeywords here. An interpreter
 * linked statically with libpython (Debian's /usr/bin/python3, for one) exports the Py* symbols
 * from the executable, which the dynamic linker searches before any LD_PRELOAD object, so such
 * an interposer would silently lose. Instead the shim wraps dlopen (the interpreter imports it
 * from libc, so the preloaded definition wins everywhere) and, when lightstep_streaming.so has
 * been loaded, points that one library's GOT slot for PyArg_ParseTupleAndKeywords at the
 * wrapper. Nothing else in the process is touched.
 *
 * Built without Python.h (nothing but a C compiler is needed): the few CPython entry points it
 * uses are declared below and resolved from the interpreter at load time. x86-64 Linux only,
 * like the wheel.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <link.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct _object PyObject;
typedef ptrdiff_t Py_ssize_t;

extern int PyArg_VaParseTupleAndKeywords(PyObject *, PyObject *, const char *, char **, va_list);
extern int _PyArg_ParseTupleAndKeywords_SizeT(PyObject *, PyObject *, const char *, char **, ...);
extern void PyErr_Format(PyObject *, const char *, ...);
extern PyObject *PyExc_SystemError;
extern PyObject *PyExc_OverflowError;

/* More than any format of the extension needs (its longest takes 7 pointers). */
#define MAX_POINTERS 16

/* Format units that take exactly one output pointer. */
static const char SINGLE_POINTER_UNITS[] = "bBhHiIlkKLncCfdDpOSUYsyzu";

/* PyArg_ParseTupleAndKeywords as a PY_SSIZE_T_CLEAN-less caller with int lengths expects it. */
static int parse_tuple_and_keywords(PyObject *args, PyObject *kwargs, const char *format,
                                    char **keywords, ...) {
    va_list ap;
    va_start(ap, keywords);
    const char *end = format + strcspn(format, ":;");
    if (memchr(format, '#', (size_t)(end - format)) == NULL) {
        int ok = PyArg_VaParseTupleAndKeywords(args, kwargs, format, keywords, ap);
        va_end(ap);
        return ok;
    }

    void *pointers[MAX_POINTERS] = {0};
    Py_ssize_t lengths[MAX_POINTERS] = {0};
    int *callers_lengths[MAX_POINTERS] = {0};
    int n = 0;
    for (const char *c = format; c < end; c++) {
        if (*c == '|' || *c == '$' || *c == '(' || *c == ')') {
            continue;
        }
        int with_length = strchr("syzu", *c) != NULL && c + 1 < end && c[1] == '#';
        if (strchr(SINGLE_POINTER_UNITS, *c) == NULL || n + 1 + with_length > MAX_POINTERS) {
            va_end(ap);
            PyErr_Format(PyExc_SystemError,
                         "py_ssize_t_clean shim: unsupported unit '%c' in format \"%s\"", *c,
                         format);
            return 0;
        }
        pointers[n++] = va_arg(ap, void *);
        if (with_length) {
            c++;
            callers_lengths[n] = va_arg(ap, int *);
            /* Seeded with the caller's value: an absent optional argument keeps its default. */
            lengths[n] = *callers_lengths[n];
            pointers[n] = &lengths[n];
            n++;
        }
    }
    va_end(ap);

    /* Surplus NULL arguments are never read: the parser takes one per unit. */
    int ok = _PyArg_ParseTupleAndKeywords_SizeT(
        args, kwargs, format, keywords, pointers[0], pointers[1], pointers[2], pointers[3],
        pointers[4], pointers[5], pointers[6], pointers[7], pointers[8], pointers[9],
        pointers[10], pointers[11], pointers[12], pointers[13], pointers[14], pointers[15]);
    if (!ok) {
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (callers_lengths[i] == NULL) {
            continue;
        }
        if (lengths[i] > INT_MAX) {
            PyErr_Format(PyExc_OverflowError,
                         "py_ssize_t_clean shim: argument of %zd bytes does not fit the "
                         "extension's int length",
                         lengths[i]);
            return 0;
        }
        *callers_lengths[i] = (int)lengths[i];
    }
    return 1;
}

/* The library whose calls are redirected, and the one call. */
static const char TARGET_LIBRARY[] = "lightstep_streaming.so";
static const char TARGET_SYMBOL[] = "PyArg_ParseTupleAndKeywords";

/* Dynamic-section addresses are relocated by glibc on x86-64; tolerate raw offsets too. */
static uintptr_t dynamic_address(const struct link_map *map, ElfW(Addr) value) {
    return value < map->l_addr ? map->l_addr + value : value;
}

/* The read-only-after-relocation (PT_GNU_RELRO) range of one loaded object. */
struct relro {
    ElfW(Addr) base;
    uintptr_t start, end;
};

static int find_relro(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct relro *relro = data;
    if (info->dlpi_addr != relro->base) {
        return 0;
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type == PT_GNU_RELRO) {
            relro->start = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            relro->end = relro->start + info->dlpi_phdr[i].p_memsz;
        }
    }
    return 1;
}

/* Points the GOT slots of `map` that bind TARGET_SYMBOL at the wrapper; returns how many. */
static int redirect(const struct link_map *map) {
    const ElfW(Sym) *symbols = NULL;
    const char *names = NULL;
    const ElfW(Rela) *tables[2] = {NULL, NULL};
    size_t sizes[2] = {0, 0};
    for (const ElfW(Dyn) *d = map->l_ld; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB: symbols = (const ElfW(Sym) *)dynamic_address(map, d->d_un.d_ptr); break;
        case DT_STRTAB: names = (const char *)dynamic_address(map, d->d_un.d_ptr); break;
        case DT_JMPREL: tables[0] = (const ElfW(Rela) *)dynamic_address(map, d->d_un.d_ptr); break;
        case DT_PLTRELSZ: sizes[0] = d->d_un.d_val; break;
        case DT_RELA: tables[1] = (const ElfW(Rela) *)dynamic_address(map, d->d_un.d_ptr); break;
        case DT_RELASZ: sizes[1] = d->d_un.d_val; break;
        }
    }
    if (symbols == NULL || names == NULL) {
        return 0;
    }
    struct relro relro = {map->l_addr, 0, 0};
    dl_iterate_phdr(find_relro, &relro);
    long page = sysconf(_SC_PAGESIZE);
    int redirected = 0;
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; tables[t] != NULL && i < sizes[t] / sizeof(ElfW(Rela)); i++) {
            const ElfW(Rela) *r = &tables[t][i];
            unsigned long type = ELF64_R_TYPE(r->r_info);
            if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) {
                continue;
            }
            if (strcmp(names + symbols[ELF64_R_SYM(r->r_info)].st_name, TARGET_SYMBOL) != 0) {
                continue;
            }
            void **slot = (void **)(map->l_addr + r->r_offset);
            /* A slot in the RELRO segment is read-only once the library is loaded (the wheel
             * is linked with BIND_NOW and RELRO): open its page for the one store. */
            int in_relro = (uintptr_t)slot >= relro.start && (uintptr_t)slot < relro.end;
            void *start = (void *)((uintptr_t)slot & ~(uintptr_t)(page - 1));
            if (in_relro && mprotect(start, (size_t)page, PROT_READ | PROT_WRITE) != 0) {
                perror("py_ssize_t_clean shim: mprotect");
                continue;
            }
            *slot = (void *)parse_tuple_and_keywords;
            if (in_relro) {
                mprotect(start, (size_t)page, PROT_READ);
            }
            redirected++;
        }
    }
    return redirected;
}

void *dlopen(const char *file, int mode) {
    static void *(*real_dlopen)(const char *, int);
    if (real_dlopen == NULL) {
        real_dlopen = (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen");
    }
    void *handle = real_dlopen(file, mode);
    if (handle == NULL || file == NULL) {
        return handle;
    }
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", file);
    struct link_map *map = NULL;
    if (strcmp(basename(copy), TARGET_LIBRARY) == 0 &&
        dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && redirect(map) == 0) {
        fprintf(stderr, "py_ssize_t_clean shim: no %s binding found in %s\n", TARGET_SYMBOL,
                file);
    }
    return handle;
}
