/* Batch plate keying: the native keying core (lez.keys uses it when built).
 *
 * keys(secret, messages, width) -> bytes
 *   messages: n rows of `width` bytes, each a NUL-padded message (country + normalised plate);
 *   the message is the row up to its first NUL.
 *   returns n * 16 bytes: HMAC-SHA256(secret, message) truncated to 16 bytes per row.
 *
 * The inner and outer SHA-256 states of HMAC are computed once per call and copied per row,
 * exactly what lez.keys does in Python, so the output is byte-identical. The GIL is released
 * during the loop.
 *
 * A message of a country and a plate is at most 12 bytes, so each HMAC is exactly two SHA-256
 * compressions: the inner one over the message and its padding in one block, the outer one
 * over the inner digest and its padding. Where the CPU has the SHA extensions (checked once,
 * at import), those compressions run here with the SHA instructions directly, two keys at a
 * time (`KeyBatch`): the rounds of one compression wait on each other, and a second key's
 * rounds fill those waits. Normalising and keying then cost 0.096 us a plate against 0.136 us
 * through OpenSSL's SHA256_Update/Final (`python -m bench.single_paths`); one key at a time
 * measured slower than OpenSSL. Elsewhere, and for any message longer than one block, OpenSSL
 * does it.
 * accelerate(flag) switches the direct path off and on, so the tests hold both paths equal.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <openssl/sha.h>

#define KEY_BYTES 16
#define BLOCK 64
#define ONE_BLOCK_MAX 55 /* longest message whose padding still fits in its block */

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_CODE 1

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

static int cpu_has_sha(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 29)) != 0; /* CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29] */
}

#ifndef LANES
#define LANES 2
#endif

/* LANES independent SHA-256 compressions of `block[l]` into `state[l]` with the SHA
 * instructions, in lockstep: the rounds of one compression depend each on the one before, so
 * a single compression waits on the instruction's latency; interleaving independent ones fills
 * those waits. The message schedule four words at a time (sha256msg1/msg2), four rounds per
 * group (sha256rnds2 twice), the state held as ABEF and CDGH as the instructions want it. */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_sha(
    uint32_t state[LANES][8], const unsigned char *block[LANES]) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i state0[LANES], state1[LANES], abef[LANES], cdgh[LANES], w[LANES][4];
    for (int l = 0; l < LANES; l++) {
        __m128i tmp = _mm_loadu_si128((const __m128i *)&state[l][0]);
        __m128i s1 = _mm_loadu_si128((const __m128i *)&state[l][4]);
        tmp = _mm_shuffle_epi32(tmp, 0xB1);              /* CDAB */
        s1 = _mm_shuffle_epi32(s1, 0x1B);                /* EFGH */
        state0[l] = abef[l] = _mm_alignr_epi8(tmp, s1, 8); /* ABEF */
        state1[l] = cdgh[l] = _mm_blend_epi16(s1, tmp, 0xF0); /* CDGH */
    }
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        const __m128i k = _mm_loadu_si128((const __m128i *)&K256[4 * g]);
#pragma GCC unroll 4
        for (int l = 0; l < LANES; l++) {
            if (g < 4) {
                w[l][g] = _mm_shuffle_epi8(
                    _mm_loadu_si128((const __m128i *)(block[l] + 16 * g)), mask);
            } else { /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four at a time */
                __m128i t = _mm_sha256msg1_epu32(w[l][g & 3], w[l][(g + 1) & 3]);
                t = _mm_add_epi32(t, _mm_alignr_epi8(w[l][(g + 3) & 3], w[l][(g + 2) & 3], 4));
                w[l][g & 3] = _mm_sha256msg2_epu32(t, w[l][(g + 3) & 3]);
            }
            __m128i msg = _mm_add_epi32(w[l][g & 3], k);
            state1[l] = _mm_sha256rnds2_epu32(state1[l], state0[l], msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            state0[l] = _mm_sha256rnds2_epu32(state0[l], state1[l], msg);
        }
    }
    for (int l = 0; l < LANES; l++) {
        __m128i s0 = _mm_add_epi32(state0[l], abef[l]);
        __m128i s1 = _mm_add_epi32(state1[l], cdgh[l]);
        __m128i tmp = _mm_shuffle_epi32(s0, 0x1B);       /* FEBA */
        s1 = _mm_shuffle_epi32(s1, 0xB1);                /* DCHG */
        s0 = _mm_blend_epi16(tmp, s1, 0xF0);             /* DCBA */
        s1 = _mm_alignr_epi8(s1, tmp, 8);                /* HGFE */
        _mm_storeu_si128((__m128i *)&state[l][0], s0);
        _mm_storeu_si128((__m128i *)&state[l][4], s1);
    }
}
#endif

/* Whether hmac_key takes the direct path (set at import where the CPU allows it). */
static int accelerated = 0;

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

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

/* HMAC-SHA256(secret, message) from the precomputed states, truncated to KEY_BYTES at `out`,
 * through OpenSSL. No Python API: called with the GIL released. */
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

/* Keys of several messages, LANES at a time on the direct path (see the top of this file),
 * each through hmac_key otherwise. Messages go in with `add` and come out at `flush`. */
typedef struct {
    const SHA256_CTX *inner, *outer;
    int count;
#ifdef HAVE_SHA_CODE
    unsigned char block[LANES][BLOCK];
    unsigned char *out[LANES];
#endif
} KeyBatch;

static void key_batch_init(KeyBatch *b, const SHA256_CTX *inner, const SHA256_CTX *outer) {
    b->inner = inner;
    b->outer = outer;
    b->count = 0;
}

static void key_batch_flush(KeyBatch *b) {
#ifdef HAVE_SHA_CODE
    if (b->count == 0) return;
    uint32_t state[LANES][8];
    const unsigned char *blocks[LANES];
    for (int l = 0; l < LANES; l++) { /* unused lanes hash a copy of lane 0, not read */
        memcpy(state[l], b->inner->h, sizeof state[l]);
        blocks[l] = b->block[l < b->count ? l : 0];
    }
    compress_sha(state, blocks);
    unsigned char outer_block[LANES][BLOCK];
    for (int l = 0; l < LANES; l++) {
        memset(outer_block[l], 0, BLOCK);
        for (int i = 0; i < 8; i++) put_be32(outer_block[l] + 4 * i, state[l][i]);
        outer_block[l][32] = 0x80;
        put_be32(outer_block[l] + BLOCK - 4, (BLOCK + 32) * 8);
        memcpy(state[l], b->outer->h, sizeof state[l]);
        blocks[l] = outer_block[l];
    }
    compress_sha(state, blocks);
    for (int l = 0; l < b->count; l++) {
        for (int i = 0; i < KEY_BYTES / 4; i++) put_be32(b->out[l] + 4 * i, state[l][i]);
    }
    b->count = 0;
#else
    (void)b;
#endif
}

static void key_batch_add(KeyBatch *b, const unsigned char *message, size_t len,
                          unsigned char *out) {
#ifdef HAVE_SHA_CODE
    if (accelerated && len <= ONE_BLOCK_MAX) {
        unsigned char *block = b->block[b->count];
        memset(block, 0, BLOCK);
        memcpy(block, message, len);
        block[len] = 0x80;
        put_be32(block + BLOCK - 4, (uint32_t)((BLOCK + len) * 8));
        b->out[b->count++] = out;
        if (b->count == LANES) key_batch_flush(b);
        return;
    }
#endif
    hmac_key(b->inner, b->outer, message, len, out);
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
    KeyBatch batch;
    key_batch_init(&batch, &inner, &outer);
    for (Py_ssize_t r = 0; r < n; r++) {
        const unsigned char *row = src + r * width;
        size_t len = strnlen((const char *)row, (size_t)width);
        key_batch_add(&batch, row, len, dst + r * KEY_BYTES);
    }
    key_batch_flush(&batch);
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
    KeyBatch batch;
    key_batch_init(&batch, &inner, &outer);
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
        key_batch_add(&batch, msg, (size_t)(2 + len), ko + r * KEY_BYTES);
    }
    key_batch_flush(&batch);
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


/* accelerate(flag) -> bool: use the SHA instructions directly where the CPU has them (the
 * default); returns whether the direct path is now on. For the tests and the bench. */
static PyObject *accelerate(PyObject *self, PyObject *arg) {
    int want = PyObject_IsTrue(arg);
    if (want < 0) return NULL;
#ifdef HAVE_SHA_CODE
    accelerated = want && cpu_has_sha();
#else
    accelerated = 0;
#endif
    return PyBool_FromLong(accelerated);
}

static PyMethodDef methods[] = {
    {"accelerate", accelerate, METH_O,
     "accelerate(flag) -> bool: SHA-256 with the CPU's SHA instructions directly (default where "
     "available); returns whether that path is on."},
    {"keys", keys, METH_VARARGS, "keys(secret, messages, width) -> n*16 bytes of HMAC-SHA256."},
    {"normalise_keys", normalise_keys, METH_VARARGS,
     "normalise_keys(secret, data, starts, lengths, countries) -> (plates, rules, keys)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "lez._hmac", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hmac(void) {
#ifdef HAVE_SHA_CODE
    accelerated = cpu_has_sha();
#endif
    return PyModule_Create(&module);
}
