/* What the native cores (lez/_lookup.c, lez/_enrich.c, lez/_sort.c) share: taking a Python
 * buffer as an array of fixed-size items, and reading an unaligned field of a packed record.
 * Include after <Python.h>. */
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

static inline int32_t read_i32(const unsigned char *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#endif
