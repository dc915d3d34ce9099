/* Radix sort of uint64 values: the native core of lez.store.columns.sort_u64.
 *
 * partition(values, scratch, starts) -> None
 *   Copies values into scratch grouped by their top TOP_BITS bits (a stable counting sort on
 *   that digit) and writes starts (uint64, 2**TOP_BITS + 1 entries): bucket b holds
 *   scratch[starts[b]:starts[b + 1]].
 *
 * sort_buckets(scratch, values, starts, first, end) -> None
 *   Sorts buckets first..end-1 of scratch (as partition left them) by their remaining bits and
 *   writes each, sorted, to the same positions of values. scratch is used as working space.
 *   Buckets are independent: threads may sort disjoint ranges of them at once (the GIL is
 *   released during the loops).
 *
 * Why: the loader orders the whole register by key (about 11 million uint64 values for
 * 8 million plates), and NumPy's np.sort took 0.70 s for 11 million uint64 on the bench machine
 * of 2026-12-05 (AMD EPYC; NumPy 2.4 does not use its AVX-512 sort on that processor), against
 * 0.15-0.17 s here on 2 threads, the scratch array's allocation included. The maintained
 * sorts at hand were slower on the same values: pyarrow's (already the loader's CSV reader)
 * array_sort_indices 1.9-2.0 s, NumPy's stable sort 0.84 s (it radix-sorts only 16-bit
 * types). Keys are HMAC outputs, so the top bits spread the values evenly and a bucket (about
 * 5,500 values, 44 KiB) is sorted inside the core's cache: one pass over memory to partition,
 * then a least-significant-digit radix sort of 8-bit digits per bucket, skipping the digits all
 * of a bucket's values share. Any input is sorted correctly;
 * skewed input (few distinct top bits) is only slower. NumPy's sort stays the fallback and the
 * oracle of the property tests (tests/lez/test_sort_native.py).
 *
 * values and scratch must be distinct arrays: sorting from one into itself would scramble it,
 * so overlapping buffers are refused (ValueError).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

#define TOP_BITS 11
#define BUCKETS (1 << TOP_BITS)
#define DIGITS 7 /* 8-bit digits below the top bits: 56 bits cover the remaining 53 */

/* Whether any two of the call's buffers share a byte. */
static int overlap(const Buffers *b) {
    for (int i = 0; i < b->held; i++) {
        const char *p = b->views[i].buf;
        for (int j = i + 1; j < b->held; j++) {
            const char *q = b->views[j].buf;
            if (b->views[i].len > 0 && b->views[j].len > 0 && p < q + b->views[j].len &&
                q < p + b->views[i].len) {
                return 1;
            }
        }
    }
    return 0;
}

/* Refuse a call (ValueError with `problem`), releasing its buffers. */
static PyObject *refuse(Buffers *b, const char *problem) {
    if (problem != NULL) PyErr_SetString(PyExc_ValueError, problem);
    release_all(b);
    return NULL;
}

static PyObject *partition(PyObject *self, PyObject *args) {
    PyObject *o_values, *o_scratch, *o_starts;
    if (!PyArg_ParseTuple(args, "OOO:partition", &o_values, &o_scratch, &o_starts)) return NULL;
    Buffers b = {.held = 0};
    void *p_values, *p_scratch, *p_starts;
    Py_ssize_t n, n_scratch, n_starts;
    if (take(&b, o_values, 8, &n, &p_values, "values", 0) < 0 ||
        take(&b, o_scratch, 8, &n_scratch, &p_scratch, "scratch", 1) < 0 ||
        take(&b, o_starts, 8, &n_starts, &p_starts, "starts", 1) < 0) {
        return refuse(&b, NULL);
    }
    if (n_scratch != n || n_starts != BUCKETS + 1) {
        return refuse(&b, "partition: scratch must hold the values and starts BUCKETS + 1 entries");
    }
    if (overlap(&b)) return refuse(&b, "partition: values, scratch and starts overlap");
    const uint64_t *values = p_values;
    uint64_t *scratch = p_scratch, *starts = p_starts;
    Py_BEGIN_ALLOW_THREADS
    uint64_t next[BUCKETS];
    memset(next, 0, sizeof next);
    for (Py_ssize_t i = 0; i < n; i++) next[values[i] >> (64 - TOP_BITS)]++;
    uint64_t at = 0;
    for (int b = 0; b < BUCKETS; b++) {
        uint64_t count = next[b];
        starts[b] = next[b] = at;
        at += count;
    }
    starts[BUCKETS] = at;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t v = values[i];
        scratch[next[v >> (64 - TOP_BITS)]++] = v;
    }
    Py_END_ALLOW_THREADS
    release_all(&b);
    Py_RETURN_NONE;
}

/* Sort the n values at src by their low 56 bits (8-bit digits, least significant first),
 * using dst as the other buffer; the result ends in dst (copied there if the passes left it in
 * src). A digit every value shares is skipped. */
static void sort_bucket(uint64_t *src, uint64_t *dst, uint64_t n) {
    uint64_t counts[DIGITS][256];
    memset(counts, 0, sizeof counts);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = src[i];
        for (int d = 0; d < DIGITS; d++) counts[d][(v >> (8 * d)) & 0xff]++;
    }
    uint64_t *from = src, *to = dst;
    for (int d = 0; d < DIGITS; d++) {
        uint64_t *c = counts[d], at = 0;
        int shared = 0;
        for (int k = 0; k < 256; k++) {
            if (c[k] == n) shared = 1;
            uint64_t count = c[k];
            c[k] = at;
            at += count;
        }
        if (shared) continue; /* every value has this digit: the order stays */
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v = from[i];
            to[c[(v >> (8 * d)) & 0xff]++] = v;
        }
        uint64_t *t = from;
        from = to;
        to = t;
    }
    if (from != dst) memcpy(dst, from, n * sizeof *dst);
}

static PyObject *sort_buckets(PyObject *self, PyObject *args) {
    PyObject *o_scratch, *o_values, *o_starts;
    Py_ssize_t first, end;
    if (!PyArg_ParseTuple(args, "OOOnn:sort_buckets", &o_scratch, &o_values, &o_starts, &first,
                          &end)) {
        return NULL;
    }
    Buffers b = {.held = 0};
    void *p_scratch, *p_values, *p_starts;
    Py_ssize_t n, n_values, n_starts;
    if (take(&b, o_scratch, 8, &n, &p_scratch, "scratch", 1) < 0 ||
        take(&b, o_values, 8, &n_values, &p_values, "values", 1) < 0 ||
        take(&b, o_starts, 8, &n_starts, &p_starts, "starts", 0) < 0) {
        return refuse(&b, NULL);
    }
    const uint64_t *starts = p_starts;
    if (n_values != n || n_starts != BUCKETS + 1 || first < 0 || end > BUCKETS || first > end) {
        return refuse(&b, "sort_buckets: arrays or bucket range do not match");
    }
    if (overlap(&b)) return refuse(&b, "sort_buckets: scratch, values and starts overlap");
    for (Py_ssize_t k = first; k < end; k++) { /* a corrupt starts never reads out of bounds */
        if (starts[k] > starts[k + 1] || starts[k + 1] > (uint64_t)n) {
            return refuse(&b, "sort_buckets: starts outside the values");
        }
    }
    uint64_t *scratch = p_scratch, *values = p_values;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = first; k < end; k++) {
        uint64_t a = starts[k], z = starts[k + 1];
        if (z > a) sort_bucket(scratch + a, values + a, z - a);
    }
    Py_END_ALLOW_THREADS
    release_all(&b);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"partition", partition, METH_VARARGS,
     "partition(values, scratch, starts): values copied into scratch grouped by their top bits; "
     "starts (uint64, BUCKETS + 1) the first position of each group."},
    {"sort_buckets", sort_buckets, METH_VARARGS,
     "sort_buckets(scratch, values, starts, first, end): buckets first..end-1 of scratch sorted "
     "into the same positions of values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sort",
    "Radix sort of uint64 values (native core of lez.store.columns.sort_u64).", -1, methods,
};

PyMODINIT_FUNC PyInit__sort(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "BUCKETS", BUCKETS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
