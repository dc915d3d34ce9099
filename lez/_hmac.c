/* Batch HMAC-SHA256 for plate keys: the one native piece of the project.
 *
 * keys(secret, messages, width) -> bytes
 *   messages: n rows of `width` bytes, each a NUL-padded message (country + normalised plate);
 *   the message is the row up to its first NUL.
 *   returns n * 16 bytes: HMAC-SHA256(secret, message) truncated to 16 bytes per row.
 *
 * The inner and outer SHA-256 states of HMAC are computed once per call and copied per row,
 * exactly what lez.keys does in Python, so the output is byte-identical. OpenSSL's SHA-256
 * uses the CPU's SHA extensions where present. The GIL is released during the loop.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <string.h>
#include <openssl/sha.h>

#define KEY_BYTES 16
#define BLOCK 64

static PyObject *keys(PyObject *self, PyObject *args) {
    Py_buffer secret, messages;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*y*n", &secret, &messages, &width)) return NULL;
    if (width <= 0 || messages.len % width != 0) {
        PyBuffer_Release(&secret);
        PyBuffer_Release(&messages);
        PyErr_SetString(PyExc_ValueError, "messages must be whole rows of `width` bytes");
        return NULL;
    }
    Py_ssize_t n = messages.len / width;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * KEY_BYTES);
    if (!out) {
        PyBuffer_Release(&secret);
        PyBuffer_Release(&messages);
        return NULL;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *src = (const unsigned char *)messages.buf;

    unsigned char key[BLOCK];
    memset(key, 0, sizeof key);
    if (secret.len > BLOCK) {
        SHA256((const unsigned char *)secret.buf, (size_t)secret.len, key);
    } else {
        memcpy(key, secret.buf, (size_t)secret.len);
    }
    unsigned char ipad[BLOCK], opad[BLOCK];
    for (int i = 0; i < BLOCK; i++) {
        ipad[i] = key[i] ^ 0x36;
        opad[i] = key[i] ^ 0x5c;
    }
    SHA256_CTX inner, outer;
    SHA256_Init(&inner);
    SHA256_Update(&inner, ipad, BLOCK);
    SHA256_Init(&outer);
    SHA256_Update(&outer, opad, BLOCK);

    Py_BEGIN_ALLOW_THREADS
    unsigned char digest[SHA256_DIGEST_LENGTH];
    for (Py_ssize_t r = 0; r < n; r++) {
        const unsigned char *row = src + r * width;
        size_t len = strnlen((const char *)row, (size_t)width);
        SHA256_CTX ctx = inner;
        SHA256_Update(&ctx, row, len);
        SHA256_Final(digest, &ctx);
        ctx = outer;
        SHA256_Update(&ctx, digest, SHA256_DIGEST_LENGTH);
        SHA256_Final(digest, &ctx);
        memcpy(dst + r * KEY_BYTES, digest, KEY_BYTES);
    }
    Py_END_ALLOW_THREADS

    memset(key, 0, sizeof key);
    memset(ipad, 0, sizeof ipad);
    memset(opad, 0, sizeof opad);
    PyBuffer_Release(&secret);
    PyBuffer_Release(&messages);
    return out;
}

static PyMethodDef methods[] = {
    {"keys", keys, METH_VARARGS, "keys(secret, messages, width) -> n*16 bytes of HMAC-SHA256."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "lez._hmac", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hmac(void) { return PyModule_Create(&module); }
