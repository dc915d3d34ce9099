/* Batch plate keying: the one native piece of the project (lez.keys uses it when built).
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
#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>

#define KEY_BYTES 16
#define BLOCK 64

/* The inner and outer SHA-256 states of HMAC for one secret. */
static void hmac_states(const Py_buffer *secret, SHA256_CTX *inner, SHA256_CTX *outer) {
    unsigned char key[BLOCK], ipad[BLOCK], opad[BLOCK];
    memset(key, 0, sizeof key);
    if (secret->len > BLOCK) {
        SHA256((const unsigned char *)secret->buf, (size_t)secret->len, key);
    } else {
        memcpy(key, secret->buf, (size_t)secret->len);
    }
    for (int i = 0; i < BLOCK; i++) {
        ipad[i] = key[i] ^ 0x36;
        opad[i] = key[i] ^ 0x5c;
    }
    SHA256_Init(inner);
    SHA256_Update(inner, ipad, BLOCK);
    SHA256_Init(outer);
    SHA256_Update(outer, opad, BLOCK);
    memset(key, 0, sizeof key);
    memset(ipad, 0, sizeof ipad);
    memset(opad, 0, sizeof opad);
}

/* HMAC-SHA256(secret, message) from the precomputed states, truncated to KEY_BYTES at `out`.
 * No Python API: called with the GIL released. */
static void hmac_key(const SHA256_CTX *inner, const SHA256_CTX *outer,
                     const unsigned char *message, size_t len, unsigned char *out) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx = *inner;
    SHA256_Update(&ctx, message, len);
    SHA256_Final(digest, &ctx);
    ctx = *outer;
    SHA256_Update(&ctx, digest, SHA256_DIGEST_LENGTH);
    SHA256_Final(digest, &ctx);
    memcpy(out, digest, KEY_BYTES);
}

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

    SHA256_CTX inner, outer;
    hmac_states(&secret, &inner, &outer);

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < n; r++) {
        const unsigned char *row = src + r * width;
        size_t len = strnlen((const char *)row, (size_t)width);
        hmac_key(&inner, &outer, row, len, dst + r * KEY_BYTES);
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&secret);
    PyBuffer_Release(&messages);
    return out;
}

/* Plate rules, mirrored from lez/plates.py (PlateRule); a property test holds them equal. */
enum { OK = 0, EMPTY = 1, BAD_CHARACTER = 2, TOO_LONG = 3, TOO_SHORT = 4, NO_LETTER = 5,
       BAD_COUNTRY = 6 };
#define PLATE_WIDTH 10
#define BELGIAN_MIN 2
#define BELGIAN_MAX 8
#define FOREIGN_MAX PLATE_WIDTH

/* normalise_keys(secret, data, starts, lengths, countries) -> (plates, rules, keys)
 *   data: all plates' bytes; starts, lengths: int64 per plate; countries: 2 upper-case bytes
 *   per plate. Returns the normalised plates (n*10, NUL padded, zero where refused), the
 *   PlateRule per plate (n bytes) and the keys (n*16, zero where refused) as three bytes. */
static PyObject *normalise_keys(PyObject *self, PyObject *args) {
    Py_buffer secret, data, starts, lengths, countries;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*", &secret, &data, &starts, &lengths, &countries))
        return NULL;
    PyObject *result = NULL, *plates = NULL, *rules = NULL, *keys_out = NULL;
    Py_ssize_t n = starts.len / 8;
    if (lengths.len != starts.len || countries.len != 2 * n) {
        PyErr_SetString(PyExc_ValueError, "starts, lengths and countries must describe n plates");
        goto done;
    }
    const int64_t *st = (const int64_t *)starts.buf, *ln = (const int64_t *)lengths.buf;
    for (Py_ssize_t r = 0; r < n; r++) {
        if (st[r] < 0 || ln[r] < 0 || st[r] + ln[r] > data.len) {
            PyErr_SetString(PyExc_ValueError, "a plate lies outside the data buffer");
            goto done;
        }
    }
    plates = PyBytes_FromStringAndSize(NULL, n * PLATE_WIDTH);
    rules = PyBytes_FromStringAndSize(NULL, n);
    keys_out = PyBytes_FromStringAndSize(NULL, n * KEY_BYTES);
    if (!plates || !rules || !keys_out) goto done;
    unsigned char *po = (unsigned char *)PyBytes_AS_STRING(plates);
    unsigned char *ro = (unsigned char *)PyBytes_AS_STRING(rules);
    unsigned char *ko = (unsigned char *)PyBytes_AS_STRING(keys_out);
    const unsigned char *src = (const unsigned char *)data.buf;
    const unsigned char *cty = (const unsigned char *)countries.buf;
    SHA256_CTX inner, outer;
    hmac_states(&secret, &inner, &outer);

    Py_BEGIN_ALLOW_THREADS
    unsigned char msg[2 + PLATE_WIDTH];
    for (Py_ssize_t r = 0; r < n; r++) {
        const unsigned char *p = src + st[r];
        unsigned char *out = po + r * PLATE_WIDTH;
        memset(out, 0, PLATE_WIDTH);
        memset(ko + r * KEY_BYTES, 0, KEY_BYTES);
        unsigned char c0 = cty[2 * r], c1 = cty[2 * r + 1];
        int rule = OK;
        int64_t len = 0, letters = 0;
        int bad = 0;
        for (int64_t i = 0; i < ln[r]; i++) {
            unsigned char ch = p[i];
            if (ch >= 'a' && ch <= 'z') ch = (unsigned char)(ch - 32);
            if ((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
                if (len < PLATE_WIDTH) out[len] = ch;
                len++;
                letters += (ch >= 'A' && ch <= 'Z');
            } else if (!(ch == ' ' || ch == '\t' || ch == '-' || ch == '.' || ch == 0)) {
                bad = 1;
            }
        }
        int belgian = (c0 == 'B' && c1 == 'E');
        if (!(c0 >= 'A' && c0 <= 'Z' && c1 >= 'A' && c1 <= 'Z')) rule = BAD_COUNTRY;
        else if (bad) rule = BAD_CHARACTER;
        else if (len == 0) rule = EMPTY;
        else if (belgian ? len > BELGIAN_MAX : len > FOREIGN_MAX) rule = TOO_LONG;
        else if (belgian && len < BELGIAN_MIN) rule = TOO_SHORT;
        else if (belgian && letters == 0) rule = NO_LETTER;
        ro[r] = (unsigned char)rule;
        if (rule != OK) {
            memset(out, 0, PLATE_WIDTH);
            continue;
        }
        msg[0] = c0;
        msg[1] = c1;
        memcpy(msg + 2, out, (size_t)len);
        hmac_key(&inner, &outer, msg, (size_t)(2 + len), ko + r * KEY_BYTES);
    }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(3, plates, rules, keys_out);

done:
    Py_XDECREF(plates);
    Py_XDECREF(rules);
    Py_XDECREF(keys_out);
    PyBuffer_Release(&secret);
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&lengths);
    PyBuffer_Release(&countries);
    return result;
}


static PyMethodDef methods[] = {
    {"keys", keys, METH_VARARGS, "keys(secret, messages, width) -> n*16 bytes of HMAC-SHA256."},
    {"normalise_keys", normalise_keys, METH_VARARGS,
     "normalise_keys(secret, data, starts, lengths, countries) -> (plates, rules, keys)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "lez._hmac", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hmac(void) { return PyModule_Create(&module); }
