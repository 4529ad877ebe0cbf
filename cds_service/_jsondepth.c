/* The JSON nesting check in one pass over the bytes (cds_service/jsondepth.py falls back to its
 * Python version when this module is not built).
 *
 * depth_exceeds(data, limit) -> bool: True when the JSON text nests containers (objects and
 * arrays) deeper than `limit`. The text has been parsed already (it is valid JSON): outside a
 * string, `{` and `[` open a container and `}` and `]` close one; inside a string, a backslash
 * escapes the byte after it and an unescaped quote ends the string.
 *
 * Three ways, with the same answers (`WAYS` names those of this processor, the one taken first;
 * the tests compare each through `_depth_exceeds_way`):
 *  - by blocks of 64 bytes, on x86-64 processors with POPCNT (chosen at import): AVX2 compares
 *    where the processor has them, else SSE2, give a bit per byte for quotes, backslashes,
 *    openings and closings; the bytes a backslash
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
#include <immintrin.h>

/* The bits of a 64-byte block: bit i set where byte i is a quote, a backslash, `{` or `[`, and
 * `}` or `]`. */
typedef struct {
    uint64_t quotes, backslashes, opens, closes;
} Marks;

/* Bit i set where byte i of the chunk is `want`, shifted to the chunk's place in the block. */
#define BITS16(chunk, want, shift) \
    ((uint64_t)(unsigned int)_mm_movemask_epi8(_mm_cmpeq_epi8((chunk), (want))) << (shift))
#define BITS32(chunk, want, shift) \
    ((uint64_t)(unsigned int)_mm256_movemask_epi8(_mm256_cmpeq_epi8((chunk), (want))) << (shift))

/* The marks of a block 16 bytes at a time (SSE2, every x86-64). `[` | 0x20 is `{` and
 * `]` | 0x20 is `}`: one compare each finds both kinds of bracket. */
static inline __attribute__((always_inline)) Marks
marks_sse2(const unsigned char *block)
{
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'),
                  open = _mm_set1_epi8('{'), close = _mm_set1_epi8('}'), fold = _mm_set1_epi8(0x20);
    Marks m = {0, 0, 0, 0};
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* unrolled: each shift is a constant */
        __m128i chunk = _mm_loadu_si128((const __m128i *)(block + 16 * k));
        __m128i folded = _mm_or_si128(chunk, fold);
        m.quotes |= BITS16(chunk, quote, 16 * k);
        m.backslashes |= BITS16(chunk, backslash, 16 * k);
        m.opens |= BITS16(folded, open, 16 * k);
        m.closes |= BITS16(folded, close, 16 * k);
    }
    return m;
}

/* The same 32 bytes at a time (AVX2). */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) Marks
marks_avx2(const unsigned char *block)
{
    const __m256i quote = _mm256_set1_epi8('"'), backslash = _mm256_set1_epi8('\\'),
                  open = _mm256_set1_epi8('{'), close = _mm256_set1_epi8('}'),
                  fold = _mm256_set1_epi8(0x20);
    Marks m = {0, 0, 0, 0};
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        __m256i chunk = _mm256_loadu_si256((const __m256i *)(block + 32 * k));
        __m256i folded = _mm256_or_si256(chunk, fold);
        m.quotes |= BITS32(chunk, quote, 32 * k);
        m.backslashes |= BITS32(chunk, backslash, 32 * k);
        m.opens |= BITS32(folded, open, 32 * k);
        m.closes |= BITS32(folded, close, 32 * k);
    }
    return m;
}

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

/* The walk over the blocks, with the marks of each from `marks` (inlined into each way). */
static inline __attribute__((always_inline)) int
walk_blocks(const unsigned char *text, Py_ssize_t length, Py_ssize_t limit,
            Marks (*marks)(const unsigned char *))
{
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
        Marks m = marks(block);
        uint64_t escaped = escape_carry, backslashes = m.backslashes;
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
        uint64_t inside = prefix_xor(m.quotes & ~escaped) ^ inside_carry;
        inside_carry = (inside >> 63) ? ~(uint64_t)0 : 0;
        uint64_t opens = m.opens & ~inside, closes = m.closes & ~inside;
        Py_ssize_t opened = __builtin_popcountll(opens);
        if (depth + opened <= limit) {
            depth += opened - __builtin_popcountll(closes);
            continue;
        }
        for (uint64_t both = opens | closes; both; both &= both - 1) {
            if ((opens >> __builtin_ctzll(both)) & 1) {
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

__attribute__((target("popcnt"))) static int
nests_deeper_sse2(const unsigned char *text, Py_ssize_t length, Py_ssize_t limit)
{
    return walk_blocks(text, length, limit, marks_sse2);
}

__attribute__((target("avx2,popcnt"))) static int
nests_deeper_avx2(const unsigned char *text, Py_ssize_t length, Py_ssize_t limit)
{
    return walk_blocks(text, length, limit, marks_avx2);
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

/* Each way this processor can take: its name and function (the first is the fastest). */
typedef int (*Way)(const unsigned char *, Py_ssize_t, Py_ssize_t);
static struct {
    const char *name;
    Way way;
} ways[3];
static int way_count = 0;

/* _depth_exceeds_way(way, data, limit): depth_exceeds the named way (for the tests). */
static PyObject *
depth_exceeds_way(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_depth_exceeds_way(way, data, limit)");
        return NULL;
    }
    for (int i = 0; i < way_count; i++) {
        if (PyUnicode_CompareWithASCIIString(args[0], ways[i].name) == 0) {
            return check(args + 1, 2, ways[i].way);
        }
    }
    PyErr_SetString(PyExc_ValueError, "_depth_exceeds_way(): not a way of this processor");
    return NULL;
}

static PyMethodDef methods[] = {
    {"depth_exceeds", (PyCFunction)(void (*)(void))depth_exceeds, METH_FASTCALL,
     "depth_exceeds(data, limit): True when the JSON text nests deeper than limit."},
    {"_depth_exceeds_way", (PyCFunction)(void (*)(void))depth_exceeds_way, METH_FASTCALL,
     "_depth_exceeds_way(way, data, limit): depth_exceeds the named way (for the tests)."},
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
#ifdef BLOCKS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt")) {
        ways[way_count].name = "avx2";
        ways[way_count++].way = nests_deeper_avx2;
    }
    if (__builtin_cpu_supports("popcnt")) {
        ways[way_count].name = "sse2";
        ways[way_count++].way = nests_deeper_sse2;
    }
#endif
    ways[way_count].name = "bytewise";
    ways[way_count++].way = nests_deeper;
    nests = ways[0].way;
    PyObject *created = PyModule_Create(&module), *names = PyTuple_New(way_count);
    if (created == NULL || names == NULL) {
        goto failed;
    }
    for (int i = 0; i < way_count; i++) {
        PyObject *name = PyUnicode_FromString(ways[i].name);
        if (name == NULL) {
            goto failed;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    /* WAYS: the ways this processor can take, the one depth_exceeds takes first. */
    if (PyModule_AddObject(created, "WAYS", names) < 0) {
        goto failed;
    }
    return created;
failed:
    Py_XDECREF(created);
    Py_XDECREF(names);
    return NULL;
}
