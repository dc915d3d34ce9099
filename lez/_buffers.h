/* What the native cores (lez/_lookup.c, lez/_enrich.c, lez/_sort.c) share: taking a Python
 * buffer as an array of fixed-size items, holding a call's buffers to release them together,
 * and reading an unaligned field of a packed record. Include after <Python.h>. */
#ifndef LEZ_BUFFERS_H
#define LEZ_BUFFERS_H

#include <stdint.h>
#include <string.h>

/* The buffer of `obj` as `item`-byte elements (writable when asked); sets *count. On error
 * raises (ValueError when the length is not a whole number of items) and holds nothing. */
static int get_array(PyObject *obj, Py_buffer *view, Py_ssize_t item, Py_ssize_t *count,
                     const char *name, int writable) {
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view->len % item) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items",
                     name, view->len, item);
        PyBuffer_Release(view);
        return -1;
    }
    *count = view->len / item;
    return 0;
}

#define MAX_BUFFERS 16

/* The buffers of one call, released together. */
typedef struct {
    Py_buffer views[MAX_BUFFERS];
    int held;
} Buffers;

static inline void release_all(Buffers *b) {
    while (b->held > 0) PyBuffer_Release(&b->views[--b->held]);
}

/* `get_array` into `b`, released with the call's other buffers; sets *data too. */
static inline int take(Buffers *b, PyObject *obj, Py_ssize_t item, Py_ssize_t *count,
                       void **data, const char *name, int writable) {
    Py_buffer *view = &b->views[b->held];
    if (get_array(obj, view, item, count, name, writable) < 0) return -1;
    b->held++;
    *data = view->buf;
    return 0;
}

static inline int32_t read_i32(const unsigned char *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#endif
