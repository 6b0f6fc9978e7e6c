/* Merge many encoded DDSketch bin stores into the rows of one int64 matrix: the hot loop of an
 * uncached metrics query (services/aggregator/version_merge.py), ~11,000 stores and ~3 million bins
 * for 100 versions over 30 days.
 *
 * The C twin of version_merge._matrix_python: same inputs, same matrix (tests/unit/test_query_merge.py
 * compares them). A store is sketches.py's encoding, as msgspec decodes it: [0, dtype, first key,
 * counts] (dense) or [1, dtype, first key, int32 key deltas, counts] (sparse), counts in native
 * uint8/16/32/64. Rows come from Postgres and are read as untrusted bytes: anything this code is not
 * certain about (a wrong type, a length that does not divide, a slot or key out of range, a count
 * past int64) makes it return None, and the caller merges with the Python twin, which has the last word.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

static const Py_ssize_t ITEMSIZE[4] = {1, 2, 4, 8};
/* Encoded sketches and stores arrive as lists or tuples (msgspec decodes rows into tuples: no GC work). */
#define IS_SEQ(o) (PyList_Check(o) || PyTuple_Check(o))
#define SEQ_SIZE(o) PySequence_Fast_GET_SIZE(o)
#define SEQ_ITEM(o, i) PySequence_Fast_GET_ITEM(o, i)
/* Keys of finite doubles at 0.5% accuracy stay within about ±71,000: anything far past is corrupt. */
static const long long KEY_LIMIT = 1LL << 20;

typedef struct {
    long long slot;
    int sparse;
    int dtype;
    long long first;
    const unsigned char *keys; /* sparse: int32 deltas */
    const unsigned char *counts;
    Py_ssize_t bins;
} Store;

/* A Python int as long long into *out: 1 done, 0 not an int in range (no error left set). */
static int read_int(PyObject *obj, long long *out) {
    if (!PyLong_Check(obj)) return 0;
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* One encoded store of `slot` into *s: 1 done, 0 malformed. Pointers borrow the bytes the list holds. */
static int read_store(PyObject *slot, PyObject *raw, Store *s) {
    if (!IS_SEQ(raw) || SEQ_SIZE(raw) < 4) return 0;
    long long fmt, dtype;
    if (!read_int(slot, &s->slot) || !read_int(SEQ_ITEM(raw, 0), &fmt) || !read_int(SEQ_ITEM(raw, 1), &dtype) ||
        !read_int(SEQ_ITEM(raw, 2), &s->first))
        return 0;
    if ((fmt != 0 && fmt != 1) || dtype < 0 || dtype > 3 || s->first < -KEY_LIMIT || s->first > KEY_LIMIT) return 0;
    s->sparse = (int)fmt;
    s->dtype = (int)dtype;
    PyObject *a = SEQ_ITEM(raw, 3);
    if (!PyBytes_Check(a)) return 0;
    Py_ssize_t alen = PyBytes_GET_SIZE(a);
    if (!s->sparse) {
        if (alen % ITEMSIZE[dtype]) return 0;
        s->keys = NULL;
        s->counts = (const unsigned char *)PyBytes_AS_STRING(a);
        s->bins = alen / ITEMSIZE[dtype];
        return 1;
    }
    if (SEQ_SIZE(raw) < 5) return 0;
    PyObject *b = SEQ_ITEM(raw, 4);
    if (!PyBytes_Check(b)) return 0;
    Py_ssize_t blen = PyBytes_GET_SIZE(b);
    if (alen % 4 || blen % ITEMSIZE[dtype] || alen / 4 != blen / ITEMSIZE[dtype]) return 0;
    s->keys = (const unsigned char *)PyBytes_AS_STRING(a);
    s->counts = (const unsigned char *)PyBytes_AS_STRING(b);
    s->bins = alen / 4;
    return 1;
}

/* The i-th count of a store, or -1 when it does not fit an int64. */
static long long count_at(const Store *s, Py_ssize_t i) {
    switch (s->dtype) {
    case 0: return s->counts[i];
    case 1: { uint16_t v; memcpy(&v, s->counts + 2 * i, 2); return v; }
    case 2: { uint32_t v; memcpy(&v, s->counts + 4 * i, 4); return v; }
    default: { uint64_t v; memcpy(&v, s->counts + 8 * i, 8); return v > (uint64_t)INT64_MAX ? -1 : (long long)v; }
    }
}

static int32_t delta_at(const Store *s, Py_ssize_t i) {
    int32_t v;
    memcpy(&v, s->keys + 4 * i, 4);
    return v;
}

/* Lowest key and one past the highest of a store with bins: 1 done, 0 a key past KEY_LIMIT. */
static int key_range(const Store *s, long long *low, long long *high) {
    if (!s->sparse) {
        *low = s->first;
        *high = s->first + s->bins;
        return 1;
    }
    long long key = s->first, lo = key, hi = key;
    for (Py_ssize_t i = 0; i < s->bins; i++) {
        key += delta_at(s, i);
        if (key < -KEY_LIMIT || key > KEY_LIMIT) return 0;
        if (key < lo) lo = key;
        if (key > hi) hi = key;
    }
    *low = lo;
    *high = hi + 1;
    return 1;
}

/* A dense store's counts added into row[0..bins): one tight loop per count type. Counts of up to 32 bits
 * cannot overflow an int64 however many stores add up (fewer than 2^31 of them); 64-bit ones are checked. */
#define ADD_DENSE(type)                                                                                          \
    for (Py_ssize_t i = 0; i < s->bins; i++) {                                                                   \
        type v;                                                                                                  \
        memcpy(&v, s->counts + sizeof(type) * i, sizeof(type));                                                  \
        row[i] += (long long)v;                                                                                  \
    }

/* Add a store into row `slot` of the n × width matrix whose first column is key `low`: 1 done, 0 malformed. */
static int add_store(const Store *s, long long *matrix, Py_ssize_t n, long long width, long long low) {
    if (s->slot < 0 || s->slot >= n) return 0;
    long long *row = matrix + s->slot * width;
    if (!s->sparse) {
        if (s->first < low || s->first - low + s->bins > width) return 0;
        row += s->first - low;
        switch (s->dtype) {
        case 0: ADD_DENSE(uint8_t) break;
        case 1: ADD_DENSE(uint16_t) break;
        case 2: ADD_DENSE(uint32_t) break;
        default:
            for (Py_ssize_t i = 0; i < s->bins; i++) {
                long long count = count_at(s, i);
                if (count < 0 || row[i] > INT64_MAX - count) return 0;
                row[i] += count;
            }
        }
        return 1;
    }
    long long key = s->first; /* a sparse store's first delta is 0: its keys are first + running sum */
    for (Py_ssize_t i = 0; i < s->bins; i++) {
        long long count = count_at(s, i);
        key += delta_at(s, i);
        long long column = key - low;
        if (count < 0 || column < 0 || column >= width || row[column] > INT64_MAX - count) return 0;
        row[column] += count;
    }
    return 1;
}

/* (low, width, bytearray | None) of `count` parsed stores summed into an n × width int64 matrix; Py_None
 * (a new reference) when malformed; NULL with an exception on a Python error. */
static PyObject *build_matrix(const Store *stores, Py_ssize_t count, Py_ssize_t n, Py_ssize_t max_cells) {
    long long low = KEY_LIMIT, high = -KEY_LIMIT;
    for (Py_ssize_t i = 0; i < count; i++) {
        long long lo, hi;
        if (stores[i].bins == 0) continue;
        if (!key_range(&stores[i], &lo, &hi)) Py_RETURN_NONE;
        if (lo < low) low = lo;
        if (hi > high) high = hi;
    }
    if (high <= low) low = high = 0; /* no store holds a bin */
    long long width = high - low;
    if (n > 1 && (long long)n * width > (long long)max_cells) return Py_BuildValue("LLO", low, width, Py_None);
    PyObject *matrix = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(n * width * 8));
    if (matrix == NULL) return NULL;
    long long *cells = (long long *)PyByteArray_AS_STRING(matrix);
    memset(cells, 0, (size_t)(n * width * 8));
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!add_store(&stores[i], cells, n, width, low)) {
            Py_DECREF(matrix);
            Py_RETURN_NONE;
        }
    }
    return Py_BuildValue("LLN", low, width, matrix); /* N: the tuple takes our reference */
}

/* merge_stores(stores, n, max_cells) -> (low, width, bytearray | None) | None
 *
 * `stores`: a list of (slot, encoded store) with slot in [0, n). The bytearray holds the n × width
 * int64 matrix (native order) of their summed bins, key `low` in column 0; it is None when n > 1 and
 * n × width would pass max_cells (the caller then merges one slot at a time). None: malformed input. */
static PyObject *merge_stores(PyObject *self, PyObject *args) {
    PyObject *stores;
    Py_ssize_t n, max_cells;
    if (!PyArg_ParseTuple(args, "O!nn", &PyList_Type, &stores, &n, &max_cells)) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(stores);
    if (n < 1 || n > KEY_LIMIT) Py_RETURN_NONE;
    Store *parsed = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(Store));
    if (parsed == NULL) return PyErr_NoMemory();
    PyObject *out = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(stores, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !read_store(PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1), &parsed[i])) {
            out = Py_NewRef(Py_None);
            break;
        }
    }
    if (out == NULL) out = build_matrix(parsed, count, n, max_cells);
    PyMem_Free(parsed);
    return out;
}

/* A Python float or int as a double: 1 done, 0 neither. */
static int read_double(PyObject *obj, double *out) {
    if (PyFloat_Check(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return 1;
    }
    if (!PyLong_Check(obj)) return 0;
    *out = PyLong_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* merge_sketches(parts, n, max_cells) -> (count, total, low, high, zeros, positive, negative) | None
 *
 * `parts`: a list of (slot, encoded sketch) (sketches.encode: [count, total, low, high, zeros, positive
 * store, negative store]). Per slot, as bytes of n native numbers: the summed counts and zeros (int64),
 * the totals (float64, compensated sums) and the extremes (float64; +inf/-inf where a slot has none).
 * `positive` and `negative` are merge_stores' answers for the two stores. None: malformed input. */
static PyObject *merge_sketches(PyObject *self, PyObject *args) {
    PyObject *parts;
    Py_ssize_t n, max_cells;
    if (!PyArg_ParseTuple(args, "O!nn", &PyList_Type, &parts, &n, &max_cells)) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(parts);
    if (n < 1 || n > KEY_LIMIT) Py_RETURN_NONE;
    /* one block: the stores of both signs, then the per-slot numbers */
    size_t stores_bytes = (size_t)(count ? count : 1) * sizeof(Store);
    char *block = PyMem_Calloc(1, 2 * stores_bytes + (size_t)n * 7 * 8);
    if (block == NULL) return PyErr_NoMemory();
    Store *positive = (Store *)block, *negative = (Store *)(block + stores_bytes);
    long long *counts = (long long *)(block + 2 * stores_bytes), *zeros = counts + n;
    double *totals = (double *)(zeros + n), *carry = totals + n, *lows = carry + n, *highs = lows + n;
    Py_ssize_t n_pos = 0, n_neg = 0;
    PyObject *out = NULL, *pos = NULL, *neg = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        lows[i] = Py_HUGE_VAL;
        highs[i] = -Py_HUGE_VAL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(parts, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) goto malformed;
        PyObject *slot_obj = PyTuple_GET_ITEM(item, 0), *raw = PyTuple_GET_ITEM(item, 1);
        long long slot, c, z;
        double total, low, high;
        if (!IS_SEQ(raw) || SEQ_SIZE(raw) != 7 || !read_int(slot_obj, &slot) || slot < 0 || slot >= n ||
            !read_int(SEQ_ITEM(raw, 0), &c) || !read_double(SEQ_ITEM(raw, 1), &total) ||
            !read_double(SEQ_ITEM(raw, 2), &low) || !read_double(SEQ_ITEM(raw, 3), &high) || !read_int(SEQ_ITEM(raw, 4), &z) || c < 0 || z < 0 || counts[slot] > INT64_MAX - c ||
            zeros[slot] > INT64_MAX - z)
            goto malformed;
        counts[slot] += c;
        zeros[slot] += z;
        /* Neumaier's compensated sum: within a unit in the last place of math.fsum's total */
        double sum = totals[slot] + total;
        carry[slot] += fabs(totals[slot]) >= fabs(total) ? (totals[slot] - sum) + total : (total - sum) + totals[slot];
        totals[slot] = sum;
        if (low < lows[slot]) lows[slot] = low;
        if (high > highs[slot]) highs[slot] = high;
        for (int sign = 0; sign < 2; sign++) {
            PyObject *store = SEQ_ITEM(raw, 5 + sign);
            if (IS_SEQ(store) && SEQ_SIZE(store) == 0) continue;
            Store *into = sign ? &negative[n_neg++] : &positive[n_pos++];
            if (!read_store(slot_obj, store, into)) goto malformed;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) totals[i] += carry[i];
    pos = build_matrix(positive, n_pos, n, max_cells);
    if (pos == NULL) goto done;
    neg = build_matrix(negative, n_neg, n, max_cells);
    if (neg == NULL) goto done;
    if (pos == Py_None || neg == Py_None) goto malformed;
    out = Py_BuildValue("y#y#y#y#y#OO", (const char *)counts, n * 8, (const char *)totals, n * 8, (const char *)lows,
                        n * 8, (const char *)highs, n * 8, (const char *)zeros, n * 8, pos, neg);
    goto done;
malformed:
    out = Py_NewRef(Py_None);
done:
    Py_XDECREF(pos);
    Py_XDECREF(neg);
    PyMem_Free(block);
    return out;
}

static PyMethodDef methods[] = {
    {"merge_stores", merge_stores, METH_VARARGS,
     "merge_stores(stores, n, max_cells) -> (low, width, bytearray | None) | None: encoded bin stores summed "
     "into the rows of an n x width int64 matrix."},
    {"merge_sketches", merge_sketches, METH_VARARGS,
     "merge_sketches(parts, n, max_cells) -> (count, total, low, high, zeros, positive, negative) | None: "
     "encoded sketches summed by slot."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_bins", NULL, 0, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__bins(void) { return PyModule_Create(&module_def); }
