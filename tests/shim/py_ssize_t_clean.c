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
 *     they work unchanged and are not interposed.
 *
 * Forwarding to `_PyArg_ParseTupleAndKeywords_SizeT` alone would be wrong: it stores a
 * Py_ssize_t (8 bytes) through each length pointer, which points at a 4-byte `int` on the
 * extension's stack (for `s#` the int sits right below the char* and the store would clobber
 * it). So this wrapper walks the format, passes the `_SizeT` parser a Py_ssize_t of its own
 * for each `#` length, and narrows the results back into the caller's ints.
 *
 * Formats without `#` go to PyArg_VaParseTupleAndKeywords unchanged. Only the single-pointer
 * format units are understood (all the extension uses); a `#` format with anything else fails
 * with a SystemError naming the unit rather than guessing at the argument layout.
 *
 * Built without Python.h (nothing but a C compiler is needed): the few CPython entry points it
 * uses are declared below and resolved from the interpreter at load time.
 */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

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

int PyArg_ParseTupleAndKeywords(PyObject *args, PyObject *kwargs, const char *format,
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
