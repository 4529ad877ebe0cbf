/* The JSON nesting check in one pass over the bytes (cds_service/jsondepth.py falls back to its
 * Python version when this module is not built).
 *
 * depth_exceeds(data, limit) -> bool: True when the JSON text nests containers (objects and
 * arrays) deeper than `limit`. The text has been parsed already (it is valid JSON): outside a
 * string, `{` and `[` open a container and `}` and `]` close one; inside a string, a backslash
 * escapes the byte after it and an unescaped quote ends the string.
 *
 * Two ways, with the same answers (the tests compare them through `_scalar_depth_exceeds`):
 *  - by blocks of 64 bytes, on x86-64 processors with POPCNT (chosen at import): SSE2 compares
 *    give a bit per byte for quotes, backslashes, openings and closings; the bytes a backslash
 *    escapes are found from the backslashes' bits (rare in FHIR JSON), the bytes inside strings
 *    by a prefix XOR of the unescaped quotes' bits, and a block whose openings cannot take the
 *    depth past the limit is counted whole (two popcounts); only a block that could is walked
 *    bracket by bracket. About 1.5 instructions per byte.
 *  - byte by byte elsewhere: outside strings each byte is classified by a table lookup; a
 *    string is scanned 16 bytes at a time for its first quote or backslash (SSE2, every
 *    x86-64), else one at a time. About 3 instructions per byte of a Synthea prefetch.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__SSE2__) && defined(__GNUC__)
#define BLOCKS 1
#endif

enum { OTHER = 0, QUOTE = 1, OPEN = 2, CLOSE = 3 };

/* The class of each byte outside strings (filled at import). */
static unsigned char kinds[256];

/* Just past the quote that ends the string whose first byte is `start`; `end` when the string
 * does not end (the text is not JSON then: nothing after it counts). */
static const unsigned char *
string_end(const unsigned char *start, const unsigned char *end)
{
    const unsigned char *at = start;
#if defined(__SSE2__) && defined(__GNUC__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    while (end - at >= 16) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)at);
        int found = _mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)));
        if (found == 0) {
            at += 16;
            continue;
        }
        at += __builtin_ctz((unsigned int)found);
        if (*at == '"') {
            return at + 1;
        }
        at += 2; /* a backslash and the byte it escapes */
    }
#endif
    while (at < end) {
        if (*at == '"') {
            return at + 1;
        }
        at += *at == '\\' ? 2 : 1;
    }
    return end;
}

static int
nests_deeper(const unsigned char *text, Py_ssize_t length, Py_ssize_t limit)
{
    const unsigned char *at = text, *end = text + length;
    Py_ssize_t depth = 0;
    while (at < end) {
        switch (kinds[*at]) {
        case OTHER:
            at++;
            break;
        case QUOTE:
            at = string_end(at + 1, end);
            break;
        case OPEN:
            if (++depth > limit) {
                return 1;
            }
            at++;
            break;
        default: /* CLOSE */
            depth--;
            at++;
            break;
        }
    }
    return 0;
}

#ifdef BLOCKS
/* Bit i set where byte i of the 16 is `want`, shifted to the chunk's place in the block. */
#define BITS(chunk, want, shift) \
    ((uint64_t)(unsigned int)_mm_movemask_epi8(_mm_cmpeq_epi8((chunk), (want))) << (shift))

/* Bit i set where byte i is inside a string, given the unescaped quotes' bits: the XOR of the
 * quote bits up to i (an opening quote counts as inside, a closing one as outside). */
static inline uint64_t
prefix_xor(uint64_t bits)
{
    bits ^= bits << 1;
    bits ^= bits << 2;
    bits ^= bits << 4;
    bits ^= bits << 8;
    bits ^= bits << 16;
    bits ^= bits << 32;
    return bits;
}

__attribute__((target("popcnt"))) static int
nests_deeper_blocks(const unsigned char *text, Py_ssize_t length, Py_ssize_t limit)
{
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'),
                  open = _mm_set1_epi8('{'), close = _mm_set1_epi8('}'),
                  fold = _mm_set1_epi8(0x20); /* '[' | 0x20 is '{', ']' | 0x20 is '}' */
    unsigned char last[64];
    uint64_t inside_carry = 0; /* all ones when the previous block ended inside a string */
    uint64_t escape_carry = 0; /* 1 when the previous block's last backslash escapes byte 0 */
    Py_ssize_t depth = 0;
    for (Py_ssize_t at = 0; at < length; at += 64) {
        const unsigned char *block = text + at;
        if (length - at < 64) { /* the last bytes, padded with spaces (not structural) */
            memset(last, ' ', sizeof last);
            memcpy(last, block, (size_t)(length - at));
            block = last;
        }
        uint64_t quotes = 0, backslashes = 0, opens = 0, closes = 0;
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) { /* unrolled: each shift is a constant */
            __m128i chunk = _mm_loadu_si128((const __m128i *)(block + 16 * k));
            __m128i folded = _mm_or_si128(chunk, fold);
            quotes |= BITS(chunk, quote, 16 * k);
            backslashes |= BITS(chunk, backslash, 16 * k);
            opens |= BITS(folded, open, 16 * k);
            closes |= BITS(folded, close, 16 * k);
        }
        uint64_t escaped = escape_carry;
        escape_carry = 0;
        while (backslashes) { /* in order: a backslash escaped itself escapes nothing */
            int i = __builtin_ctzll(backslashes);
            backslashes &= backslashes - 1;
            if ((escaped >> i) & 1) {
                continue;
            }
            if (i == 63) {
                escape_carry = 1;
            }
            else {
                escaped |= (uint64_t)1 << (i + 1);
            }
        }
        uint64_t inside = prefix_xor(quotes & ~escaped) ^ inside_carry;
        inside_carry = (inside >> 63) ? ~(uint64_t)0 : 0;
        opens &= ~inside;
        closes &= ~inside;
        Py_ssize_t opened = __builtin_popcountll(opens);
        if (depth + opened <= limit) {
            depth += opened - __builtin_popcountll(closes);
            continue;
        }
        for (uint64_t marks = opens | closes; marks; marks &= marks - 1) {
            if ((opens >> __builtin_ctzll(marks)) & 1) {
                if (++depth > limit) {
                    return 1;
                }
            }
            else {
                depth--;
            }
        }
    }
    return 0;
}
#endif

/* The way this processor runs fastest (chosen at import). */
static int (*nests)(const unsigned char *, Py_ssize_t, Py_ssize_t) = nests_deeper;

static PyObject *
check(PyObject *const *args, Py_ssize_t nargs,
      int (*way)(const unsigned char *, Py_ssize_t, Py_ssize_t))
{
    Py_buffer view;
    Py_ssize_t limit;
    int exceeded;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "depth_exceeds(data, limit) takes two arguments");
        return NULL;
    }
    limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    exceeded = way((const unsigned char *)view.buf, view.len, limit);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(exceeded);
}

static PyObject *
depth_exceeds(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return check(args, nargs, nests);
}

static PyObject *
scalar_depth_exceeds(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return check(args, nargs, nests_deeper);
}

static PyMethodDef methods[] = {
    {"depth_exceeds", (PyCFunction)(void (*)(void))depth_exceeds, METH_FASTCALL,
     "depth_exceeds(data, limit): True when the JSON text nests deeper than limit."},
    {"_scalar_depth_exceeds", (PyCFunction)(void (*)(void))scalar_depth_exceeds, METH_FASTCALL,
     "depth_exceeds byte by byte, whatever the processor (for the tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jsondepth", "The JSON nesting check, natively.", -1, methods,
};

PyMODINIT_FUNC
PyInit__jsondepth(void)
{
    kinds['"'] = QUOTE;
    kinds['{'] = OPEN;
    kinds['['] = OPEN;
    kinds['}'] = CLOSE;
    kinds[']'] = CLOSE;
    PyObject *created = PyModule_Create(&module);
    int blocks = 0;
#ifdef BLOCKS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("popcnt")) {
        nests = nests_deeper_blocks;
        blocks = 1;
    }
#endif
    /* Which way depth_exceeds takes here: True by blocks of 64 bytes. */
    if (created != NULL && PyModule_AddObject(created, "BLOCKS", PyBool_FromLong(blocks)) < 0) {
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
