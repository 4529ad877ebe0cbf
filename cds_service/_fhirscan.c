/* The per-call scans of FHIR JSON that every hook call makes, in C (cds_service/fhirscan.py
 * holds the Python version of each, which gives the same answers, and uses it when this module
 * is not built).
 *
 * entries(data) -> list[tuple[dict, str | None]]
 *     Each resource of the data with its Bundle entry's `fullUrl`: a list is read item by item,
 *     a Bundle's entries (a list) are unpacked (a Bundle in a Bundle: its own entries), any
 *     other dict with a string `resourceType` is a resource.
 * code_sets(values) -> tuple[frozenset[tuple[str | None, str]], frozenset[str]]
 *     The (system, code) pairs of the CodeableConcepts or Codings in `values` (a tuple: each a
 *     concept, a coding or a list of them), and the codes among them without a system.
 * codings_of(value) -> list[tuple[str | None, str | None]]
 *     The (system, code) pairs of a Coding, CodeableConcept, list of either, or code string.
 * group(data) -> tuple[dict[str, list[dict]], list[tuple[dict, str]]]
 *     The resources of `entries(data)` by resourceType (in order), and each Medication that
 *     has an entry `fullUrl`, with it.
 * coded(resources, known, loose, compute, elements, skip, codes, bare, under, answers)
 *     -> list[dict]: the resources whose code is in a value set (`DataIndex.coded`); `answers`
 *     holds under()'s answers by (system, code), read before it is called.
 * code_index(observations, statuses, wanted) -> dict[str, list[tuple[int, dict]]]
 *     The Observations whose status is in `statuses`, by each non-empty code of their `code`
 *     (any system) that is in `wanted` (a set; None: every code), with their position in the
 *     list (`PatientRecord._code_index`).
 * first_of_each_id(lists) -> list[dict]
 *     The resources of the lists (a list of lists), in order, without those whose string `id`
 *     an earlier one has (`DataIndex._collect`); resources without a string id are all kept.
 * reports_error(entries) -> bool
 *     True when one of a Bundle's entries (a list) holds an OperationOutcome resource with an
 *     issue of severity `error` or `fatal` (`is_operation_outcome`).
 *
 * The values are parsed JSON (dicts, lists, strings, numbers): dict keys are read with
 * PyDict_GetItemWithError, which runs no Python code for string keys, so the borrowed
 * references stay valid while a dict is read. Nesting is bounded by the JSON nesting limit of
 * every text the service reads (cds_service/jsondepth.py); Py_EnterRecursiveCall guards it all
 * the same.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *k_resource_type, *k_entry, *k_resource, *k_full_url, *k_coding, *k_code,
    *k_system, *k_status, *k_medication, *k_id, *k_operation_outcome, *k_issue, *k_severity, *k_error,
    *k_fatal;
static PyObject *no_codes; /* the empty frozenset every resource without loose codes shares */

/* -1 with an exception set, 0 when absent or not a `type`, 1 when found (borrowed in *out). */
static int
get_typed(PyObject *dict, PyObject *key, int (*check)(PyObject *), PyObject **out)
{
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!check(value)) {
        return 0;
    }
    *out = value;
    return 1;
}

static int is_str(PyObject *o) { return PyUnicode_Check(o); }
static int is_dict(PyObject *o) { return PyDict_Check(o); }
static int is_list(PyObject *o) { return PyList_Check(o); }

static int
append_pair(PyObject *out, PyObject *first, PyObject *second)
{
    PyObject *pair = PyTuple_Pack(2, first, second);
    if (pair == NULL) {
        return -1;
    }
    int failed = PyList_Append(out, pair);
    Py_DECREF(pair);
    return failed;
}

/* --- entries ------------------------------------------------------------------------------ */

static int add_entries(PyObject *data, PyObject *full_url, PyObject *out);

static int
add_bundle(PyObject *bundle, PyObject *out)
{
    PyObject *entries;
    int found = get_typed(bundle, k_entry, is_list, &entries);
    if (found <= 0) {
        return found;
    }
    Py_INCREF(entries);
    int failed = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries) && !failed; i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i), *resource, *kind, *url = Py_None;
        if (!PyDict_Check(entry)) {
            continue;
        }
        if ((found = get_typed(entry, k_resource, is_dict, &resource)) <= 0 ||
            (found = get_typed(resource, k_resource_type, is_str, &kind)) <= 0) {
            failed = found < 0;
            continue;
        }
        if (get_typed(entry, k_full_url, is_str, &url) < 0) {
            failed = 1;
            break;
        }
        if (PyUnicode_CompareWithASCIIString(kind, "Bundle") == 0) {
            failed = add_entries(resource, url, out) < 0;
        } else {
            failed = append_pair(out, resource, url) < 0;
        }
    }
    Py_DECREF(entries);
    return failed ? -1 : 0;
}

static int
add_entries(PyObject *data, PyObject *full_url, PyObject *out)
{
    if (Py_EnterRecursiveCall(" while reading FHIR entries")) {
        return -1;
    }
    int failed = 0;
    if (PyList_Check(data)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(data) && !failed; i++) {
            failed = add_entries(PyList_GET_ITEM(data, i), Py_None, out) < 0;
        }
    } else if (PyDict_Check(data)) {
        PyObject *kind;
        int found = get_typed(data, k_resource_type, is_str, &kind);
        if (found < 0) {
            failed = 1;
        } else if (found > 0) {
            if (PyUnicode_CompareWithASCIIString(kind, "Bundle") == 0) {
                failed = add_bundle(data, out) < 0;
            } else {
                failed = append_pair(out, data, full_url) < 0;
            }
        }
    }
    Py_LeaveRecursiveCall();
    return failed ? -1 : 0;
}

static PyObject *
entries(PyObject *module, PyObject *data)
{
    (void)module;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    if (add_entries(data, Py_None, out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* --- code_sets ---------------------------------------------------------------------------- */

/* Add the pairs of one coding (a dict with a string code) to `pairs` (a set, or a frozenset
 * nobody else holds yet), and its code to `*loose` (a set made on first use) when it has no
 * system (or an empty one) and the code is not empty. */
static int
add_coding(PyObject *coding, PyObject *pairs, PyObject **loose)
{
    PyObject *code, *system = Py_None;
    int found = get_typed(coding, k_code, is_str, &code);
    if (found <= 0) {
        return found;
    }
    if (get_typed(coding, k_system, is_str, &system) < 0) {
        return -1;
    }
    PyObject *pair = PyTuple_Pack(2, system, code);
    if (pair == NULL) {
        return -1;
    }
    int failed = PySet_Add(pairs, pair);
    Py_DECREF(pair);
    if (failed) {
        return -1;
    }
    if ((system == Py_None || PyUnicode_GET_LENGTH(system) == 0) && PyUnicode_GET_LENGTH(code)) {
        if (*loose == NULL && (*loose = PySet_New(NULL)) == NULL) {
            return -1;
        }
        return PySet_Add(*loose, code);
    }
    return 0;
}

static int
add_concept(PyObject *concept, PyObject *pairs, PyObject **loose)
{
    if (!PyDict_Check(concept)) {
        return 0;
    }
    PyObject *codings;
    int found = get_typed(concept, k_coding, is_list, &codings);
    if (found < 0) {
        return -1;
    }
    if (found == 0) { /* a Coding itself */
        return add_coding(concept, pairs, loose);
    }
    Py_INCREF(codings);
    int failed = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(codings) && !failed; i++) {
        PyObject *coding = PyList_GET_ITEM(codings, i);
        if (PyDict_Check(coding)) {
            failed = add_coding(coding, pairs, loose) < 0;
        }
    }
    Py_DECREF(codings);
    return failed ? -1 : 0;
}

/* The (pairs, loose) frozensets of the values (new references in *pairs_out, *loose_out; the
 * usual loose set, empty, is the one shared `no_codes`), 0, or -1 on error. The pairs are
 * added to a new frozenset before anyone else holds it (as the C API allows), not copied. */
static int
concept_sets(PyObject *const *values, Py_ssize_t count, PyObject **pairs_out,
             PyObject **loose_out)
{
    PyObject *pairs = PyFrozenSet_New(NULL), *loose = NULL;
    if (pairs == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = values[i];
        if (PyList_Check(value)) {
            for (Py_ssize_t j = 0; j < PyList_GET_SIZE(value); j++) {
                if (add_concept(PyList_GET_ITEM(value, j), pairs, &loose) < 0) {
                    goto failed;
                }
            }
        }
        else if (add_concept(value, pairs, &loose) < 0) {
            goto failed;
        }
    }
    if (loose == NULL) {
        Py_INCREF(no_codes);
        *loose_out = no_codes;
    }
    else {
        *loose_out = PyFrozenSet_New(loose);
        Py_DECREF(loose);
        if (*loose_out == NULL) {
            Py_DECREF(pairs);
            return -1;
        }
    }
    *pairs_out = pairs;
    return 0;
failed:
    Py_DECREF(pairs);
    Py_XDECREF(loose);
    return -1;
}

static PyObject *
code_sets(PyObject *module, PyObject *values)
{
    (void)module;
    if (!PyTuple_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "code_sets() takes a tuple of values");
        return NULL;
    }
    PyObject *pairs, *loose;
    if (concept_sets(&PyTuple_GET_ITEM(values, 0), PyTuple_GET_SIZE(values), &pairs, &loose) < 0) {
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, pairs, loose);
    Py_DECREF(pairs);
    Py_DECREF(loose);
    return result;
}

/* --- codings_of --------------------------------------------------------------------------- */

/* Append (system or None, code or None) of a dict that has a `code` key. */
static int
append_coding(PyObject *coding, PyObject *out, int codes_only)
{
    PyObject *system = Py_None, *code = Py_None;
    if (codes_only) { /* the code alone, when it is a string */
        int found = get_typed(coding, k_code, is_str, &code);
        return found <= 0 ? found : PyList_Append(out, code);
    }
    if (get_typed(coding, k_system, is_str, &system) < 0 ||
        get_typed(coding, k_code, is_str, &code) < 0) {
        return -1;
    }
    return append_pair(out, system, code);
}

/* Append the (system, code) pairs of a coded value to `out`, or with `codes_only` the codes
 * that are strings (borrowed from the value: no pair is made). */
static int
add_codings(PyObject *value, PyObject *out, int codes_only)
{
    if (Py_EnterRecursiveCall(" while reading codings")) {
        return -1;
    }
    int failed = 0;
    if (PyList_Check(value)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value) && !failed; i++) {
            failed = add_codings(PyList_GET_ITEM(value, i), out, codes_only) < 0;
        }
    } else if (PyDict_Check(value)) {
        PyObject *coding;
        int found = get_typed(value, k_coding, is_list, &coding);
        if (found < 0) {
            failed = 1;
        } else if (found > 0) {
            failed = add_codings(coding, out, codes_only) < 0;
        } else {
            int has_code = PyDict_Contains(value, k_code);
            failed = has_code < 0 || (has_code && append_coding(value, out, codes_only) < 0);
        }
    } else if (PyUnicode_Check(value)) {
        failed = (codes_only ? PyList_Append(out, value) : append_pair(out, Py_None, value)) < 0;
    }
    Py_LeaveRecursiveCall();
    return failed ? -1 : 0;
}

static PyObject *
codings_of(PyObject *module, PyObject *value)
{
    (void)module;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    if (add_codings(value, out, 0) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* --- group -------------------------------------------------------------------------------- */

static PyObject *
group(PyObject *module, PyObject *data)
{
    (void)module;
    PyObject *found = entries(NULL, data), *typed = NULL, *urls = NULL, *result = NULL;
    if (found == NULL || (typed = PyDict_New()) == NULL || (urls = PyList_New(0)) == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(found); i++) {
        PyObject *pair = PyList_GET_ITEM(found, i);
        PyObject *resource = PyTuple_GET_ITEM(pair, 0), *url = PyTuple_GET_ITEM(pair, 1);
        /* entries() kept only dicts whose resourceType is a string */
        PyObject *kind = PyDict_GetItemWithError(resource, k_resource_type);
        if (kind == NULL) {
            goto done;
        }
        PyObject *members = PyDict_GetItemWithError(typed, kind);
        if (members == NULL) {
            if (PyErr_Occurred() || (members = PyList_New(0)) == NULL) {
                goto done;
            }
            int failed = PyDict_SetItem(typed, kind, members);
            Py_DECREF(members); /* the dict holds it */
            if (failed) {
                goto done;
            }
        }
        if (PyList_Append(members, resource) < 0) {
            goto done;
        }
        if (url != Py_None && PyUnicode_Compare(kind, k_medication) == 0 &&
            PyList_Append(urls, pair) < 0) {
            goto done;
        }
    }
    result = PyTuple_Pack(2, typed, urls);
done:
    Py_XDECREF(found);
    Py_XDECREF(typed);
    Py_XDECREF(urls);
    return result;
}

/* --- coded -------------------------------------------------------------------------------- */

/* 1 when the two sets share a member, 0 when not, -1 on error. */
static int
intersects(PyObject *a, PyObject *b)
{
    if (PySet_GET_SIZE(a) > PySet_GET_SIZE(b)) {
        PyObject *swap = a;
        a = b;
        b = swap;
    }
    PyObject *members = PyObject_GetIter(a), *item;
    if (members == NULL) {
        return -1;
    }
    int found = 0;
    while (found == 0 && (item = PyIter_Next(members)) != NULL) {
        found = PySet_Contains(b, item);
        Py_DECREF(item);
    }
    Py_DECREF(members);
    return found != 0 ? found : (PyErr_Occurred() ? -1 : 0);
}

/* The (pairs, loose) of one resource, computed and kept in `known` and `loose` under `key`
 * (its id()): from its code elements (`elements`: resourceType -> tuple of element names,
 * ("code",) for the others), or by `compute(resource)` for the types in `skip` (medications,
 * whose drug is resolved in Python; compute keeps both itself). Borrowed results. */
static int
codes_of(PyObject *resource, PyObject *key, PyObject *known, PyObject *loose,
         PyObject *compute, PyObject *elements, PyObject *skip, PyObject **pairs_out,
         PyObject **loose_out)
{
    PyObject *kind = PyDict_GetItemWithError(resource, k_resource_type);
    if (kind == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (kind != NULL && !PyUnicode_Check(kind)) {
        kind = NULL; /* read as a type without a resourceType: its `code` */
    }
    int skipped = kind != NULL ? PySet_Contains(skip, kind) : 0;
    if (skipped < 0) {
        return -1;
    }
    if (skipped) {
        PyObject *computed = PyObject_CallOneArg(compute, resource);
        if (computed == NULL) {
            return -1;
        }
        Py_DECREF(computed); /* kept in `known` by compute */
    } else {
        PyObject *names = kind != NULL ? PyDict_GetItemWithError(elements, kind) : NULL;
        if (names == NULL && PyErr_Occurred()) {
            return -1;
        }
        static PyObject *code_only = NULL;
        if (names == NULL) {
            if (code_only == NULL && (code_only = PyTuple_Pack(1, k_code)) == NULL) {
                return -1;
            }
            names = code_only;
        }
        if (!PyTuple_Check(names)) {
            PyErr_SetString(PyExc_TypeError, "coded(): a type's code elements are not a tuple");
            return -1;
        }
        /* The elements' values, borrowed (nothing here runs Python code): on the stack for
         * the usual one or two elements. */
        PyObject *on_stack[4], **values = on_stack, *pairs, *loose_codes;
        Py_ssize_t count = PyTuple_GET_SIZE(names);
        if (count > 4 && (values = PyMem_New(PyObject *, (size_t)count)) == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        int failed = 0;
        for (Py_ssize_t i = 0; i < count && !failed; i++) {
            values[i] = PyDict_GetItemWithError(resource, PyTuple_GET_ITEM(names, i));
            if (values[i] == NULL) {
                failed = PyErr_Occurred() != NULL;
                values[i] = Py_None;
            }
        }
        failed = failed || concept_sets(values, count, &pairs, &loose_codes) < 0;
        if (values != on_stack) {
            PyMem_Free(values);
        }
        if (failed) {
            return -1;
        }
        failed = PyDict_SetItem(known, key, pairs) < 0 ||
                 PyDict_SetItem(loose, key, loose_codes) < 0;
        Py_DECREF(pairs);
        Py_DECREF(loose_codes);
        if (failed) {
            return -1;
        }
    }
    if ((*pairs_out = PyDict_GetItemWithError(known, key)) == NULL ||
        (*loose_out = PyDict_GetItemWithError(loose, key)) == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "compute() did not keep the resource's codes");
        }
        return -1;
    }
    return 0;
}

/* 1 when a resource with these (pairs, loose) is in the value set, 0 when not, -1 on error:
 * a pair among `codes`, a loose code among `bare`, else (with `under`) a pair with a non-empty
 * code that under(system, code) takes. */
static int
in_value_set(PyObject *pairs, PyObject *loose_codes, PyObject *codes, PyObject *bare,
             PyObject *under, PyObject *answers)
{
    int found = intersects(codes, pairs);
    if (found != 0) {
        return found;
    }
    if (PySet_GET_SIZE(loose_codes) > 0 && (found = intersects(bare, loose_codes)) != 0) {
        return found;
    }
    if (under == Py_None) {
        return 0;
    }
    PyObject *members = PyObject_GetIter(pairs), *pair;
    if (members == NULL) {
        return -1;
    }
    while (found == 0 && (pair = PyIter_Next(members)) != NULL) {
        PyObject *code = PyTuple_GET_ITEM(pair, 1);
        if (PyUnicode_Check(code) && PyUnicode_GET_LENGTH(code) > 0) {
            PyObject *known = answers != Py_None ? PyDict_GetItemWithError(answers, pair) : NULL;
            if (known != NULL) { /* under() answered this code before */
                found = PyObject_IsTrue(known);
            } else if (PyErr_Occurred()) {
                found = -1;
            } else {
                PyObject *taken = PyObject_Call(under, pair, NULL); /* may run any Python code */
                found = taken == NULL ? -1 : PyObject_IsTrue(taken);
                Py_XDECREF(taken);
            }
        }
        Py_DECREF(pair);
    }
    Py_DECREF(members);
    return found != 0 ? found : (PyErr_Occurred() ? -1 : 0);
}

static PyObject *
coded(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "coded() takes 10 arguments");
        return NULL;
    }
    PyObject *resources = args[0], *known = args[1], *loose = args[2], *compute = args[3],
             *elements = args[4], *skip = args[5], *codes = args[6], *bare = args[7],
             *under = args[8], *answers = args[9];
    if (!PyList_Check(resources) || !PyDict_Check(known) || !PyDict_Check(loose) ||
        !PyDict_Check(elements) || !PyAnySet_Check(skip) || !PyAnySet_Check(codes) ||
        !PyAnySet_Check(bare) || (answers != Py_None && !PyDict_Check(answers))) {
        PyErr_SetString(PyExc_TypeError, "coded(): list, dict, dict, callable, dict, set, "
                                         "set, set, callable or None, dict or None");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    Py_INCREF(resources);
    int failed = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(resources) && !failed; i++) {
        PyObject *resource = PyList_GET_ITEM(resources, i);
        if (!PyDict_Check(resource)) {
            PyErr_SetString(PyExc_TypeError, "coded(): a resource is not a dict");
            failed = 1;
            break;
        }
        Py_INCREF(resource);
        PyObject *key = PyLong_FromVoidPtr(resource), *pairs, *loose_codes;
        failed = key == NULL;
        if (!failed) {
            pairs = PyDict_GetItemWithError(known, key);
            loose_codes = pairs != NULL ? PyDict_GetItemWithError(loose, key) : NULL;
            if (PyErr_Occurred()) {
                failed = 1;
            } else if (pairs == NULL || loose_codes == NULL) {
                failed = codes_of(resource, key, known, loose, compute, elements, skip, &pairs,
                                  &loose_codes) < 0;
            }
        }
        if (!failed) {
            /* held across `under`, which runs Python code */
            Py_INCREF(pairs);
            Py_INCREF(loose_codes);
            int found = in_value_set(pairs, loose_codes, codes, bare, under, answers);
            Py_DECREF(pairs);
            Py_DECREF(loose_codes);
            failed = found < 0 || (found > 0 && PyList_Append(out, resource) < 0);
        }
        Py_XDECREF(key);
        Py_DECREF(resource);
    }
    Py_DECREF(resources);
    if (failed) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* --- code_index --------------------------------------------------------------------------- */

static PyObject *
code_index(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyList_Check(args[0]) || !PyAnySet_Check(args[1]) ||
        (args[2] != Py_None && !PyAnySet_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError,
                        "code_index(observations: list, statuses: set, wanted: set | None)");
        return NULL;
    }
    PyObject *observations = args[0], *statuses = args[1], *wanted = args[2];
    /* `codes` is each Observation's codes in turn (reused: no list or pair per Observation) */
    PyObject *index = PyDict_New(), *seen = PySet_New(NULL), *codes = PyList_New(0);
    if (index == NULL || seen == NULL || codes == NULL) {
        goto fail;
    }
    Py_INCREF(observations);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(observations); i++) {
        PyObject *obs = PyList_GET_ITEM(observations, i), *status, *code_value;
        if (!PyDict_Check(obs)) {
            continue;
        }
        status = PyDict_GetItemWithError(obs, k_status);
        if (status == NULL && PyErr_Occurred()) {
            goto fail_held;
        }
        int usable = status != NULL && PyUnicode_Check(status) ? PySet_Contains(statuses, status) : 0;
        if (usable < 0) {
            goto fail_held;
        }
        if (!usable) {
            continue;
        }
        code_value = PyDict_GetItemWithError(obs, k_code);
        if (code_value == NULL) {
            if (PyErr_Occurred()) {
                goto fail_held;
            }
            code_value = Py_None;
        }
        if (PyList_SetSlice(codes, 0, PyList_GET_SIZE(codes), NULL) < 0 ||
            add_codings(code_value, codes, 1) < 0) {
            goto fail_held;
        }
        PySet_Clear(seen);
        PyObject *entry = NULL;
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(codes); j++) {
            PyObject *code = PyList_GET_ITEM(codes, j);
            if (PyUnicode_GET_LENGTH(code) == 0) {
                continue;
            }
            if (wanted != Py_None) { /* only the codes asked about are indexed */
                int asked = PySet_Contains(wanted, code);
                if (asked <= 0) {
                    if (asked < 0) {
                        goto fail_entry;
                    }
                    continue;
                }
            }
            int repeated = PySet_Contains(seen, code);
            if (repeated != 0) {
                if (repeated < 0) {
                    goto fail_entry;
                }
                continue;
            }
            if (PySet_Add(seen, code) < 0) {
                goto fail_entry;
            }
            if (entry == NULL) {
                PyObject *position = PyLong_FromSsize_t(i);
                if (position == NULL) {
                    goto fail_entry;
                }
                entry = PyTuple_Pack(2, position, obs);
                Py_DECREF(position);
                if (entry == NULL) {
                    goto fail_entry;
                }
            }
            PyObject *members = PyDict_GetItemWithError(index, code);
            if (members == NULL) {
                if (PyErr_Occurred() || (members = PyList_New(0)) == NULL) {
                    goto fail_entry;
                }
                int failed = PyDict_SetItem(index, code, members);
                Py_DECREF(members);
                if (failed) {
                    goto fail_entry;
                }
            }
            if (PyList_Append(members, entry) < 0) {
                goto fail_entry;
            }
        }
        Py_XDECREF(entry);
        continue;
    fail_entry:
        Py_XDECREF(entry);
        goto fail_held;
    }
    Py_DECREF(observations);
    Py_DECREF(seen);
    Py_DECREF(codes);
    return index;
fail_held:
    Py_DECREF(observations);
fail:
    Py_XDECREF(index);
    Py_XDECREF(seen);
    Py_XDECREF(codes);
    return NULL;
}

/* --- first_of_each_id ---------------------------------------------------------------------- */

static PyObject *
first_of_each_id(PyObject *module, PyObject *lists)
{
    (void)module;
    if (!PyList_Check(lists)) {
        PyErr_SetString(PyExc_TypeError, "first_of_each_id(lists) takes a list of lists");
        return NULL;
    }
    PyObject *out = PyList_New(0), *seen = PySet_New(NULL);
    if (out == NULL || seen == NULL) {
        goto failed;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lists); i++) {
        PyObject *resources = PyList_GET_ITEM(lists, i);
        if (!PyList_Check(resources)) {
            PyErr_SetString(PyExc_TypeError, "first_of_each_id(lists) takes a list of lists");
            goto failed;
        }
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(resources); j++) {
            PyObject *resource = PyList_GET_ITEM(resources, j), *ident;
            int found = PyDict_Check(resource) ? get_typed(resource, k_id, is_str, &ident) : 0;
            if (found < 0) {
                goto failed;
            }
            if (found) { /* a string id: the first resource with it is kept */
                Py_ssize_t before = PySet_GET_SIZE(seen);
                if (PySet_Add(seen, ident) < 0) {
                    goto failed;
                }
                if (PySet_GET_SIZE(seen) == before) {
                    continue;
                }
            }
            if (PyList_Append(out, resource) < 0) {
                goto failed;
            }
        }
    }
    Py_DECREF(seen);
    return out;
failed:
    Py_XDECREF(out);
    Py_XDECREF(seen);
    return NULL;
}

/* --- reports_error ------------------------------------------------------------------------ */

/* 1 when the string equals the interned `key` (compared by identity first), else 0. */
static int
equals(PyObject *text, PyObject *key)
{
    return text == key || PyUnicode_Compare(text, key) == 0;
}

/* 1 when the OperationOutcome's `issue` list has an error or fatal issue, 0 if not, -1 on error. */
static int
has_error_issue(PyObject *outcome)
{
    PyObject *issues, *severity;
    int found = get_typed(outcome, k_issue, is_list, &issues);
    if (found <= 0) {
        return found;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(issues); i++) {
        PyObject *issue = PyList_GET_ITEM(issues, i);
        if (!PyDict_Check(issue)) {
            continue;
        }
        found = get_typed(issue, k_severity, is_str, &severity);
        if (found < 0) {
            return -1;
        }
        if (found && (equals(severity, k_error) || equals(severity, k_fatal))) {
            return 1;
        }
    }
    return 0;
}

static PyObject *
reports_error(PyObject *module, PyObject *entries)
{
    (void)module;
    if (!PyList_Check(entries)) {
        PyErr_SetString(PyExc_TypeError, "reports_error(entries) takes a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i), *resource, *kind;
        if (!PyDict_Check(entry)) {
            continue;
        }
        int found = get_typed(entry, k_resource, is_dict, &resource);
        if (found > 0) {
            found = get_typed(resource, k_resource_type, is_str, &kind);
        }
        if (found > 0 && equals(kind, k_operation_outcome)) {
            found = has_error_issue(resource);
            if (found > 0) {
                Py_RETURN_TRUE;
            }
        }
        if (found < 0) {
            return NULL;
        }
    }
    Py_RETURN_FALSE;
}

/* --- the module --------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"entries", entries, METH_O, "Each resource of the data with its entry's fullUrl."},
    {"code_sets", code_sets, METH_O, "(system, code) pairs and system-less codes of concepts."},
    {"codings_of", codings_of, METH_O, "(system, code) pairs of a coded value."},
    {"group", group, METH_O, "The resources of the data by type, and Medications' fullUrls."},
    {"coded", (PyCFunction)(void (*)(void))coded, METH_FASTCALL, "Resources in a value set."},
    {"code_index", (PyCFunction)(void (*)(void))code_index, METH_FASTCALL,
     "Usable Observations by code."},
    {"first_of_each_id", first_of_each_id, METH_O, "The resources, the first of each id kept."},
    {"reports_error", reports_error, METH_O, "Whether a Bundle's entries report an error."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fhirscan", "FHIR JSON scans in C (see fhirscan.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fhirscan(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } keys[] = {
        {&k_resource_type, "resourceType"}, {&k_entry, "entry"},   {&k_resource, "resource"},
        {&k_full_url, "fullUrl"},           {&k_coding, "coding"}, {&k_code, "code"},
        {&k_system, "system"},              {&k_status, "status"}, {&k_medication, "Medication"},
        {&k_id, "id"},
        {&k_operation_outcome, "OperationOutcome"}, {&k_issue, "issue"},
        {&k_severity, "severity"},                  {&k_error, "error"},
        {&k_fatal, "fatal"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if ((*keys[i].slot = PyUnicode_InternFromString(keys[i].text)) == NULL) {
            return NULL;
        }
    }
    if ((no_codes = PyFrozenSet_New(NULL)) == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
