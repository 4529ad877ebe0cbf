/* The JSON nesting check of a request body in one pass over its bytes (cds_service/api/body.py
 * falls back to its Python version when this module is not built).
 *
 * depth_exceeds(data, limit) -> bool: True when the JSON text nests containers (objects and
 * arrays) deeper than `limit`. The text has been parsed already (it is valid JSON): outside a
 * string, `{` and `[` open a container and `}` and `]` close one; inside a string, a backslash
 * escapes the byte after it and an unescaped quote ends the string.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
depth_exceeds(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t limit, depth = 0, i;
    int in_string = 0, exceeded = 0;
    const unsigned char *text;

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
    text = (const unsigned char *)view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < view.len; i++) {
        unsigned char c = text[i];
        if (in_string) {
            if (c == '\\') {
                i++; /* the escaped byte, whatever it is */
            } else if (c == '"') {
                in_string = 0;
            }
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > limit) {
                exceeded = 1;
                break;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
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
    return PyModule_Create(&module);
}
