/* Batch lookup in the store's sorted key columns: the native core of lez.store.columns.
 *
 * find(key_hi, key_lo, bucket_starts, bucket_bits, q_hi, q_lo, out) -> None
 *   key_hi, key_lo: the table's sorted key halves (uint64, memcmp order of the 16-byte keys);
 *   bucket_starts: uint32, 2**bucket_bits + 1 entries (first row of each bucket of the top
 *   bucket_bits bits of the high half), or None to search the whole table;
 *   q_hi, q_lo: the query halves (uint64); out: int64, one per query, written with the row of
 *   the query's key or -1.
 *
 * find_one(key_hi, key_lo, bucket_starts, bucket_bits, key) -> int
 *   The same for one 16-byte key (a single check): its row or -1, no arrays set up.
 *
 * version_one(key_hi, key_lo, bucket_starts, bucket_bits, offsets, records, record_size,
 *             from_at, to_at, key, day) -> (group, row, rows)
 *   find_one, then the row of that key's version valid on day as fill_versions picks it (-1
 *   for either when there is none): a single check's vehicle in one call.
 *
 * fill_versions(records, record_size, from_at, to_at, offsets, idx, days,
 *               out, found, known) -> None
 *   For every query i with idx[i] >= 0: known[i] = the key has rows; the first row of its group
 *   (offsets[idx[i]] .. offsets[idx[i] + 1]) whose int32 fields at byte from_at and to_at
 *   satisfy from <= days[i] < to is copied to out[i] and found[i] set. Other queries are left
 *   as they are.
 *
 * Both do what lez.store.columns does with NumPy (which stays as the fallback and the oracle of
 * the property tests), query by query in one pass instead of ~10 whole-array passes. A query
 * touches a few cache lines scattered over hundreds of MB (bucket index, key halves, offsets,
 * records), each depending on the one before, so each function is a software pipeline: a
 * query's next cache line is prefetched AHEAD queries before it is read, and the misses of
 * dozens of queries overlap instead of following one another (against taking the queries in
 * blocks of 32, prefetching a stage for the whole block, then reading it: 15-20% less time a
 * query on the 8M store, both versions loaded in one process and alternated). Indices are
 * checked against the tables' sizes (a corrupt table raises ValueError, never reads out of
 * bounds). The GIL is released during the loops.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

#ifndef AHEAD
#define AHEAD 16
#endif /* steps between the stages of a pipeline */
#define RING 128 /* a power of two above 2 * AHEAD: the state of the queries in flight */

#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 0)
#else
#define PREFETCH(p) ((void)0)
#endif


/* A sorted key table as both lookups take it: the key halves and, unless None, its bucket
 * index, checked against each other. */
typedef struct {
    Py_buffer hi, lo, buckets;
    Py_ssize_t size;
    int have_buckets;
} KeyTable;

/* Take the table's buffers (released by release_table); on error raises and holds nothing. */
static int get_table(PyObject *o_hi, PyObject *o_lo, PyObject *o_buckets, int bucket_bits,
                     const char *who, KeyTable *t) {
    Py_ssize_t size_lo, n_buckets = 0;
    t->have_buckets = o_buckets != Py_None;
    if (get_array(o_hi, &t->hi, 8, &t->size, "key_hi", 0) < 0) return -1;
    if (get_array(o_lo, &t->lo, 8, &size_lo, "key_lo", 0) < 0) goto fail_hi;
    if (t->have_buckets &&
        get_array(o_buckets, &t->buckets, 4, &n_buckets, "bucket_starts", 0) < 0)
        goto fail_lo;
    if (size_lo != t->size) {
        PyErr_Format(PyExc_ValueError, "%s: key_hi and key_lo differ in length", who);
        goto fail;
    }
    if (t->have_buckets && (bucket_bits < 1 || bucket_bits > 30 ||
                            n_buckets != ((Py_ssize_t)1 << bucket_bits) + 1)) {
        PyErr_Format(PyExc_ValueError, "%s: bucket_starts does not match bucket_bits", who);
        goto fail;
    }
    return 0;
fail:
    if (t->have_buckets) PyBuffer_Release(&t->buckets);
fail_lo:
    PyBuffer_Release(&t->lo);
fail_hi:
    PyBuffer_Release(&t->hi);
    return -1;
}

static void release_table(KeyTable *t) {
    if (t->have_buckets) PyBuffer_Release(&t->buckets);
    PyBuffer_Release(&t->lo);
    PyBuffer_Release(&t->hi);
}

static PyObject *find(PyObject *self, PyObject *args) {
    PyObject *o_hi, *o_lo, *o_buckets, *o_qhi, *o_qlo, *o_out;
    int bucket_bits;
    if (!PyArg_ParseTuple(args, "OOOiOOO:find", &o_hi, &o_lo, &o_buckets, &bucket_bits, &o_qhi,
                          &o_qlo, &o_out)) {
        return NULL;
    }
    KeyTable t;
    Py_buffer b_qhi, b_qlo, b_out;
    Py_ssize_t n, n_lo, n_out;
    if (get_table(o_hi, o_lo, o_buckets, bucket_bits, "find", &t) < 0) return NULL;
    if (get_array(o_qhi, &b_qhi, 8, &n, "q_hi", 0) < 0) goto fail_table;
    if (get_array(o_qlo, &b_qlo, 8, &n_lo, "q_lo", 0) < 0) goto fail_qhi;
    if (get_array(o_out, &b_out, 8, &n_out, "out", 1) < 0) goto fail_qlo;
    if (n_lo != n || n_out != n) {
        PyErr_SetString(PyExc_ValueError, "find: queries and out differ in length");
        goto fail;
    }
    Py_ssize_t size = t.size;
    const uint64_t *key_hi = t.hi.buf, *key_lo = t.lo.buf, *q_hi = b_qhi.buf, *q_lo = b_qlo.buf;
    const uint32_t *buckets = t.have_buckets ? t.buckets.buf : NULL;
    int64_t *out = b_out.buf;
    int corrupt = 0;
    Py_BEGIN_ALLOW_THREADS
    int shift = 64 - bucket_bits;
    int64_t first[RING], end[RING];
    /* A software pipeline over the queries. At step i:
     *   query i prefetches its bucket's entry;
     *   query i - AHEAD reads its bucket and prefetches the bucket's high halves;
     *   query i - 2 * AHEAD searches them and prefetches the low half where it landed;
     *   query i - 3 * AHEAD compares the low halves.
     * Every load a query waits on was requested AHEAD steps earlier, so the misses of about
     * 3 * AHEAD queries are in flight together. */
    for (Py_ssize_t i = 0; i < n + 3 * AHEAD; i++) {
        if (buckets && i < n) PREFETCH(&buckets[q_hi[i] >> shift]);
        Py_ssize_t j = i - AHEAD;
        if (j >= 0 && j < n) {
            int64_t a = 0, z = size;
            if (buckets) {
                uint64_t b = q_hi[j] >> shift;
                a = buckets[b];
                z = buckets[b + 1];
                if (a > z || z > size) {
                    corrupt = 1; /* checked per query: checking the whole index costs more */
                    a = z = 0;
                } else if (z > a) {
                    PREFETCH(&key_hi[a]);
                    PREFETCH(&key_hi[z - 1]);
                }
            }
            first[j & (RING - 1)] = a;
            end[j & (RING - 1)] = z;
        }
        Py_ssize_t k = i - 2 * AHEAD;
        if (k >= 0 && k < n) {
            uint64_t hi = q_hi[k];
            int64_t a = first[k & (RING - 1)], len = end[k & (RING - 1)] - a;
            /* lower bound of hi in key_hi[a:a+len], without branches on the keys */
            while (len > 1) {
                int64_t half = len >> 1;
                a = key_hi[a + half - 1] < hi ? a + half : a;
                len -= half;
            }
            if (len == 1 && key_hi[a] < hi) a++;
            if (a < size && key_hi[a] == hi) PREFETCH(&key_lo[a]);
            first[k & (RING - 1)] = a; /* from here on: where the query's high half is */
        }
        Py_ssize_t m = i - 3 * AHEAD;
        if (m >= 0) {
            uint64_t hi = q_hi[m], lo = q_lo[m];
            int64_t found_at = -1;
            /* equal high halves (a 64-bit prefix collision is rare but legal) never straddle a
             * bucket; walk them comparing the low halves */
            for (int64_t a = first[m & (RING - 1)]; a < size && key_hi[a] == hi; a++) {
                if (key_lo[a] == lo) {
                    found_at = a;
                    break;
                }
            }
            out[m] = found_at;
        }
    }
    Py_END_ALLOW_THREADS
    if (corrupt) {
        PyErr_SetString(PyExc_ValueError, "find: bucket index inconsistent with the table");
        goto fail;
    }
    PyBuffer_Release(&b_out);
    PyBuffer_Release(&b_qlo);
    PyBuffer_Release(&b_qhi);
    release_table(&t);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&b_out);
fail_qlo:
    PyBuffer_Release(&b_qlo);
fail_qhi:
    PyBuffer_Release(&b_qhi);
fail_table:
    release_table(&t);
    return NULL;
}

static PyObject *fill_versions(PyObject *self, PyObject *args) {
    PyObject *o_records, *o_offsets, *o_idx, *o_days, *o_out, *o_found, *o_known;
    Py_ssize_t record_size, from_at, to_at;
    if (!PyArg_ParseTuple(args, "OnnnOOOOOO:fill_versions", &o_records, &record_size, &from_at,
                          &to_at, &o_offsets, &o_idx, &o_days, &o_out, &o_found, &o_known)) {
        return NULL;
    }
    if (record_size < 8 || from_at < 0 || to_at < 0 || from_at + 4 > record_size ||
        to_at + 4 > record_size) {
        PyErr_SetString(PyExc_ValueError, "fill_versions: bad record layout");
        return NULL;
    }
    Py_buffer b_records, b_offsets, b_idx, b_days, b_out, b_found, b_known;
    Py_ssize_t n_records, n_offsets, n, n_days, n_out, n_found, n_known;
    if (get_array(o_records, &b_records, record_size, &n_records, "records", 0) < 0) return NULL;
    if (get_array(o_offsets, &b_offsets, 8, &n_offsets, "offsets", 0) < 0) goto fail_records;
    if (get_array(o_idx, &b_idx, 8, &n, "idx", 0) < 0) goto fail_offsets;
    if (get_array(o_days, &b_days, 4, &n_days, "days", 0) < 0) goto fail_idx;
    if (get_array(o_out, &b_out, record_size, &n_out, "out", 1) < 0) goto fail_days;
    if (get_array(o_found, &b_found, 1, &n_found, "found", 1) < 0) goto fail_out;
    if (get_array(o_known, &b_known, 1, &n_known, "known", 1) < 0) goto fail_found;
    if (n_days != n || n_out != n || n_found != n || n_known != n || n_offsets < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "fill_versions: idx, days, out, found and known differ in length");
        goto fail;
    }
    const unsigned char *records = b_records.buf;
    const uint64_t *offsets = b_offsets.buf;
    const int64_t *idx = b_idx.buf;
    const int32_t *days = b_days.buf;
    unsigned char *out = b_out.buf, *found = b_found.buf, *known = b_known.buf;
    const int64_t groups = n_offsets - 1;
    int corrupt = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t start[RING], stop[RING];
    /* The same pipeline as find's: at step i, query i's offsets are prefetched, query
     * i - AHEAD reads them and prefetches its first record, query i - 2 * AHEAD scans its
     * records for the day. */
    for (Py_ssize_t i = 0; i < n + 2 * AHEAD && !corrupt; i++) {
        if (i < n) {
            int64_t g = idx[i];
            if (g >= groups) {
                corrupt = 1;
                break;
            }
            if (g >= 0) PREFETCH(&offsets[g]);
        }
        Py_ssize_t j = i - AHEAD;
        if (j >= 0 && j < n && idx[j] >= 0) {
            int64_t g = idx[j];
            uint64_t a = offsets[g], z = offsets[g + 1];
            if (z < a || z > (uint64_t)n_records) {
                corrupt = 1;
                break;
            }
            if (z > a) {
                const unsigned char *p = records + a * (uint64_t)record_size;
                PREFETCH(p);
                PREFETCH(p + record_size - 1);
            }
            start[j & (RING - 1)] = a;
            stop[j & (RING - 1)] = z;
        }
        Py_ssize_t k = i - 2 * AHEAD;
        if (k >= 0 && idx[k] >= 0) {
            uint64_t a = start[k & (RING - 1)], z = stop[k & (RING - 1)];
            known[k] = z > a;
            for (uint64_t r = a; r < z; r++) {
                const unsigned char *p = records + r * (uint64_t)record_size;
                if (read_i32(p + from_at) <= days[k] && days[k] < read_i32(p + to_at)) {
                    memcpy(out + k * record_size, p, (size_t)record_size);
                    found[k] = 1;
                    break;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (corrupt) {
        PyErr_SetString(PyExc_ValueError, "fill_versions: index or offsets outside the table");
        goto fail;
    }
    PyBuffer_Release(&b_known);
    PyBuffer_Release(&b_found);
    PyBuffer_Release(&b_out);
    PyBuffer_Release(&b_days);
    PyBuffer_Release(&b_idx);
    PyBuffer_Release(&b_offsets);
    PyBuffer_Release(&b_records);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&b_known);
fail_found:
    PyBuffer_Release(&b_found);
fail_out:
    PyBuffer_Release(&b_out);
fail_days:
    PyBuffer_Release(&b_days);
fail_idx:
    PyBuffer_Release(&b_idx);
fail_offsets:
    PyBuffer_Release(&b_offsets);
fail_records:
    PyBuffer_Release(&b_records);
    return NULL;
}

static uint64_t big_endian_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* The row of one 16-byte key in table t (-1 when absent): a binary search of the high halves
 * inside the key's bucket (the whole table without an index), then a walk of the equal ones.
 * Returns -2 with ValueError set when the bucket index disagrees with the table. */
static Py_ssize_t search_one(const KeyTable *t, int bucket_bits, const unsigned char *k,
                             const char *who) {
    const uint64_t *hi = t->hi.buf, *lo = t->lo.buf;
    uint64_t q_hi = big_endian_u64(k), q_lo = big_endian_u64(k + 8);
    Py_ssize_t first = 0, end = t->size;
    if (t->have_buckets) {
        const uint32_t *starts = t->buckets.buf;
        uint64_t bucket = q_hi >> (64 - bucket_bits);
        first = starts[bucket];
        end = starts[bucket + 1];
        if (first > end || end > t->size) {
            PyErr_Format(PyExc_ValueError, "%s: bucket index inconsistent with the table", who);
            return -2;
        }
    }
    while (first < end) { /* the first row whose high half is not below the query's */
        Py_ssize_t mid = first + (end - first) / 2;
        if (hi[mid] < q_hi) first = mid + 1;
        else end = mid;
    }
    for (; first < t->size && hi[first] == q_hi; first++) {
        if (lo[first] == q_lo) return first;
    }
    return -1;
}

static PyObject *find_one(PyObject *self, PyObject *args) {
    PyObject *o_hi, *o_lo, *o_buckets;
    int bucket_bits;
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "OOOiy*:find_one", &o_hi, &o_lo, &o_buckets, &bucket_bits, &key)) {
        return NULL;
    }
    KeyTable t;
    PyObject *result = NULL;
    if (key.len != 16) {
        PyErr_SetString(PyExc_ValueError, "find_one: a key is 16 bytes");
        goto fail_key;
    }
    if (get_table(o_hi, o_lo, o_buckets, bucket_bits, "find_one", &t) < 0) goto fail_key;
    Py_ssize_t found = search_one(&t, bucket_bits, (const unsigned char *)key.buf, "find_one");
    if (found >= -1) result = PyLong_FromSsize_t(found);
    release_table(&t);
fail_key:
    PyBuffer_Release(&key);
    return result;
}

/* One key's version valid on one day (a single check): the key's row group by find_one's
 * search, then the first of its rows whose int32 fields at from_at and to_at hold the day, as
 * fill_versions takes them. Returns (group, row, rows): group -1 when the key is not in the
 * table, row -1 when none of its rows is valid that day, rows the size of the key's group (0
 * for a layer's removal or an absent key). One call in place of find_one, a NumPy slice and
 * copy of the group, and a scan of its fields from Python. */
static PyObject *version_one(PyObject *self, PyObject *args) {
    PyObject *o_hi, *o_lo, *o_buckets, *o_offsets, *o_records;
    int bucket_bits, day;
    Py_ssize_t record_size, from_at, to_at;
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "OOOiOOnnny*i:version_one", &o_hi, &o_lo, &o_buckets,
                          &bucket_bits, &o_offsets, &o_records, &record_size, &from_at, &to_at,
                          &key, &day)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (key.len != 16) {
        PyErr_SetString(PyExc_ValueError, "version_one: a key is 16 bytes");
        goto fail_key;
    }
    if (record_size < 8 || from_at < 0 || to_at < 0 || from_at + 4 > record_size ||
        to_at + 4 > record_size) {
        PyErr_SetString(PyExc_ValueError, "version_one: bad record layout");
        goto fail_key;
    }
    KeyTable t;
    if (get_table(o_hi, o_lo, o_buckets, bucket_bits, "version_one", &t) < 0) goto fail_key;
    Py_buffer b_offsets, b_records;
    Py_ssize_t n_offsets, n_records;
    if (get_array(o_offsets, &b_offsets, 8, &n_offsets, "offsets", 0) < 0) goto fail_table;
    if (get_array(o_records, &b_records, record_size, &n_records, "records", 0) < 0)
        goto fail_offsets;
    if (n_offsets != t.size + 1) {
        PyErr_SetString(PyExc_ValueError, "version_one: offsets do not match the keys");
        goto done;
    }
    const uint64_t *offsets = b_offsets.buf;
    const unsigned char *records = b_records.buf;
    Py_ssize_t row = -1, rows = 0;
    Py_ssize_t group = search_one(&t, bucket_bits, (const unsigned char *)key.buf, "version_one");
    if (group == -2) goto done;
    if (group >= 0) {
        uint64_t a = offsets[group], z = offsets[group + 1];
        if (z < a || z > (uint64_t)n_records) {
            PyErr_SetString(PyExc_ValueError, "version_one: offsets outside the records");
            goto done;
        }
        rows = (Py_ssize_t)(z - a);
        for (uint64_t r = a; r < z; r++) {
            const unsigned char *p = records + r * (uint64_t)record_size;
            if (read_i32(p + from_at) <= day && day < read_i32(p + to_at)) {
                row = (Py_ssize_t)r;
                break;
            }
        }
    }
    result = Py_BuildValue("nnn", group, row, rows);
done:
    PyBuffer_Release(&b_records);
fail_offsets:
    PyBuffer_Release(&b_offsets);
fail_table:
    release_table(&t);
fail_key:
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef methods[] = {
    {"find_one", find_one, METH_VARARGS,
     "find_one(key_hi, key_lo, bucket_starts, bucket_bits, key): row of one 16-byte key or -1"},
    {"find", find, METH_VARARGS,
     "find(key_hi, key_lo, bucket_starts, bucket_bits, q_hi, q_lo, out): row of each query key "
     "in a sorted table, -1 where absent, written into out (int64)."},
    {"version_one", version_one, METH_VARARGS,
     "version_one(key_hi, key_lo, bucket_starts, bucket_bits, offsets, records, record_size, "
     "from_at, to_at, key, day): (row group of one 16-byte key or -1, row of its version valid "
     "on day or -1, rows of the key)"},
    {"fill_versions", fill_versions, METH_VARARGS,
     "fill_versions(records, record_size, from_at, to_at, offsets, idx, days, out, found, known):"
     " the version valid on each query's day, copied into out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lookup",
    "Batch lookup in sorted key columns (native core of lez.store.columns).", -1, methods,
};

PyMODINIT_FUNC PyInit__lookup(void) { return PyModule_Create(&module); }
