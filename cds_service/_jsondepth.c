/* The JSON nesting check in one pass over the bytes (cds_service/jsondepth.py falls back to its
 * Python version when this module is not built).
 *
 * depth_exceeds(data, limit) -> bool: True when the JSON text nests containers (objects and
 * arrays) deeper than `limit`. The text has been parsed already (it is valid JSON): outside a
 * string, `{` and `[` open a container and `}` and `]` close one; inside a string, a backslash
 * escapes the byte after it and an unescaped quote ends the string.
 *
 * A body is mostly short strings (about 10,000 of 18 bytes on average in a Synthea prefetch):
 * where the compiler targets SSE2 (every x86-64), a string is scanned 16 bytes at a time for its
 * first quote or backslash; elsewhere, and for the last bytes, one at a time. Outside strings
 * each byte is classified by a table lookup (the structural bytes there are a few apart).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
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

static PyObject *
depth_exceeds(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
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
    exceeded = nests_deeper((const unsigned char *)view.buf, view.len, limit);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(exceeded);
}

static PyMethodDef methods[] = {
    {"depth_exceeds", (PyCFunction)(void (*)(void))depth_exceeds, METH_FASTCALL,
     "depth_exceeds(data, limit): True when the JSON text nests deeper than limit."},
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
    return PyModule_Create(&module);
}
