/* summarise_blobs: the hot loop of an uncached metrics query (services/aggregator/version_merge.py).
 * ~1,600 rollup rows, ~11,000 DDSketch bin stores and ~3 million bins for 100 versions over 30 days
 * are read in place from the rows' blobs as Postgres returns them (_msgpack.h: no Python object per
 * row or store); the stores of each metric and version are summed into one array, and its quantiles
 * found on the running sums.
 *
 * A store is sketches.py's encoding: [0, dtype, first key, counts] (dense) or [1, dtype, first key,
 * int32 key deltas, counts] (sparse), counts in native uint8/16/32/64. A score's sketch may carry an
 * eighth item, its exact table ([float64 values ascending, int64 counts], at most EXACT_LIMIT, or nil):
 * when every row's sketch of a metric carries one, the quantiles are read off their union instead,
 * as long as it stays that small. A row's "c" (categorical counts) is skipped: queries read it in Python. Rows come from Postgres and
 * are read as untrusted bytes: anything this code is not certain about (a wrong type, a length that
 * does not divide, a key out of range, a count past int64) makes it return None, and the caller
 * merges with the Python twin (version_merge.merge_groups of the decoded rows, NumPy), which has the
 * last word; tests/unit/test_query_merge.py compares the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include "_msgpack.h"

static const Py_ssize_t ITEMSIZE[4] = {1, 2, 4, 8};
/* Keys of finite doubles at 0.5% accuracy stay within about ±71,000: anything far past is corrupt. */
static const long long KEY_LIMIT = 1LL << 20;
/* sketches.EXACT_LIMIT: the most distinct values an exact table holds. */
#define EXACT_LIMIT 64

typedef struct {
    long long slot;
    int sparse;
    int dtype;
    long long first;
    const unsigned char *keys; /* sparse: int32 deltas */
    const unsigned char *counts;
    Py_ssize_t bins;
} Store;

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

/* GCC's -O2 vectorises only loops whose trip count it knows; the adds of dense stores (most of a query's
 * bins) are a third faster vectorised with a runtime check, as -O3 would do (setup.py builds with -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
/* A dense store's counts added into row[0..bins): one tight loop per count type. Counts of up to 32 bits
 * cannot overflow an int64 however many stores add up (fewer than 2^31 of them); 64-bit ones are checked. */
#define ADD_DENSE(type)                                                                                          \
    for (Py_ssize_t i = 0; i < s->bins; i++) {                                                                   \
        type v;                                                                                                  \
        memcpy(&v, s->counts + sizeof(type) * i, sizeof(type));                                                  \
        row[i] += (long long)v;                                                                                  \
    }

/* A sparse store's counts added at their keys' columns, the same way (keys checked to fall in the row). */
#define ADD_SPARSE(type)                                                                                         \
    for (Py_ssize_t i = 0; i < s->bins; i++) {                                                                   \
        type v;                                                                                                  \
        memcpy(&v, s->counts + sizeof(type) * i, sizeof(type));                                                  \
        key += delta_at(s, i);                                                                                   \
        if (key < low || key - low >= width) return 0;                                                           \
        row[key - low] += (long long)v;                                                                          \
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
    switch (s->dtype) {
    case 0: ADD_SPARSE(uint8_t) break;
    case 1: ADD_SPARSE(uint16_t) break;
    case 2: ADD_SPARSE(uint32_t) break;
    default:
        for (Py_ssize_t i = 0; i < s->bins; i++) {
            long long count = count_at(s, i);
            key += delta_at(s, i);
            long long column = key - low;
            if (count < 0 || column < 0 || column >= width || row[column] > INT64_MAX - count) return 0;
            row[column] += count;
        }
    }
    return 1;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

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

/* ---- summarise_blobs: rollup rows' blobs merged by group and summarised, read in place ---- */

/* One metric's sketch in one row: its scalars and bin stores (pointers into the blob). */
typedef struct {
    int metric;
    long long count, zeros;
    double total, low, high;
    Store stores[2]; /* positive, negative; bins == 0 when absent */
    const unsigned char *exact_values, *exact_counts; /* the exact table, when exact_n > 0 */
    Py_ssize_t exact_n;
} Part;

#define MAX_METRICS 256

typedef struct {
    Part *parts;
    Py_ssize_t n_parts, capacity;
    const char *names[MAX_METRICS];
    Py_ssize_t name_lengths[MAX_METRICS];
    int n_names;
} Parsed;

/* The index of metric `name`, added if new: -1 when there are too many names. `hint` is tried first
 * (rows of one table list their metrics in the same order). */
static int metric_index(Parsed *p, const char *name, Py_ssize_t len, int hint) {
    if (hint < p->n_names && p->name_lengths[hint] == len && memcmp(p->names[hint], name, (size_t)len) == 0)
        return hint;
    for (int i = 0; i < p->n_names; i++)
        if (p->name_lengths[i] == len && memcmp(p->names[i], name, (size_t)len) == 0) return i;
    if (p->n_names == MAX_METRICS) return -1;
    p->names[p->n_names] = name;
    p->name_lengths[p->n_names] = len;
    return p->n_names++;
}

/* An encoded store (sketches.py: [] or [0, dtype, first, counts] or [1, dtype, first, deltas, counts]). */
static int read_blob_store(Reader *r, Py_ssize_t slot, Store *s) {
    Py_ssize_t items, alen, blen = 0;
    long long fmt, dtype;
    const unsigned char *a, *b = NULL;
    s->slot = slot;
    s->bins = 0;
    if (!mp_array(r, &items)) return 0;
    if (items == 0) return 1;
    if ((items != 4 && items != 5) || !mp_int(r, &fmt) || !mp_int(r, &dtype) || !mp_int(r, &s->first) ||
        !mp_bin(r, &a, &alen))
        return 0;
    if (fmt != items - 4 || dtype < 0 || dtype > 3 || s->first < -KEY_LIMIT || s->first > KEY_LIMIT) return 0;
    s->sparse = (int)fmt;
    s->dtype = (int)dtype;
    if (!s->sparse) {
        if (alen % ITEMSIZE[dtype]) return 0;
        s->keys = NULL;
        s->counts = a;
        s->bins = alen / ITEMSIZE[dtype];
        return 1;
    }
    if (!mp_bin(r, &b, &blen) || alen % 4 || blen % ITEMSIZE[dtype] || alen / 4 != blen / ITEMSIZE[dtype]) return 0;
    s->keys = a;
    s->counts = b;
    s->bins = alen / 4;
    return 1;
}

/* A row's "s" map: every metric with values becomes a Part of `slot`. */
static int read_sketches(Reader *r, Parsed *p, Py_ssize_t slot) {
    Py_ssize_t n, len, fields;
    if (!mp_map(r, &n)) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name;
        if (!mp_str(r, &name, &len) || !mp_array(r, &fields) || (fields != 7 && fields != 8)) return 0;
        if (p->n_parts == p->capacity) {
            Py_ssize_t capacity = p->capacity ? 2 * p->capacity : 1024;
            Part *grown = PyMem_Realloc(p->parts, (size_t)capacity * sizeof(Part));
            if (grown == NULL) return -1;
            p->parts = grown;
            p->capacity = capacity;
        }
        Part *part = &p->parts[p->n_parts];
        if (!mp_int(r, &part->count) || !mp_double(r, &part->total) || !mp_double(r, &part->low) ||
            !mp_double(r, &part->high) || !mp_int(r, &part->zeros) || !read_blob_store(r, slot, &part->stores[0]) ||
            !read_blob_store(r, slot, &part->stores[1]) || part->count < 0 || part->zeros < 0)
            return 0;
        part->exact_n = 0;
        if (fields == 8 && !mp_nil(r)) {
            Py_ssize_t items, vlen, clen;
            if (!mp_array(r, &items) || items != 2 || !mp_bin(r, &part->exact_values, &vlen) ||
                !mp_bin(r, &part->exact_counts, &clen) || vlen % 8 || vlen != clen || vlen / 8 > EXACT_LIMIT)
                return 0;
            part->exact_n = vlen / 8;
        }
        if (part->count == 0) continue; /* an empty sketch adds nothing, not even its extremes */
        if (!isfinite(part->total) || !isfinite(part->low) || !isfinite(part->high)) return 0;
        part->metric = metric_index(p, name, len, (int)i);
        if (part->metric < 0) return 0;
        p->n_parts++;
    }
    return 1;
}

/* A row's "e" map (failed evaluations by score name) added into `errors` (a dict). */
static int read_errors(Reader *r, PyObject *errors) {
    Py_ssize_t n, len;
    if (!mp_map(r, &n)) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name;
        long long count;
        if (!mp_str(r, &name, &len) || !mp_int(r, &count)) return 0;
        PyObject *key = PyUnicode_DecodeUTF8(name, len, NULL);
        if (key == NULL) {
            PyErr_Clear();
            return 0;
        }
        PyObject *old = PyDict_GetItemWithError(errors, key), *sum;
        if (old == NULL && PyErr_Occurred()) sum = NULL;
        else if (old == NULL) sum = PyLong_FromLongLong(count);
        else {
            PyObject *add = PyLong_FromLongLong(count);
            sum = add ? PyNumber_Add(old, add) : NULL;
            Py_XDECREF(add);
        }
        int failed = sum == NULL || PyDict_SetItem(errors, key, sum) < 0;
        Py_DECREF(key);
        Py_XDECREF(sum);
        if (failed) return -1;
    }
    return 1;
}

/* One blob (rollup.to_blob: {"s": {name: sketch}, "e": {name: count}}): 1 read, 0 malformed, -1 error. */
static int read_blob(PyObject *blob, Parsed *p, Py_ssize_t slot, PyObject *errors) {
    if (!PyBytes_Check(blob)) return 0;
    Reader r = {(const unsigned char *)PyBytes_AS_STRING(blob),
                (const unsigned char *)PyBytes_AS_STRING(blob) + PyBytes_GET_SIZE(blob)};
    Py_ssize_t n, len;
    if (r.at == r.end) return 1; /* an empty blob: a row without sketches */
    if (!mp_map(&r, &n)) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *key;
        if (!mp_str(&r, &key, &len) || len != 1) return 0;
        int done = key[0] == 's'   ? read_sketches(&r, p, slot)
                   : key[0] == 'e' ? read_errors(&r, errors)
                   : key[0] == 'c' ? mp_skip(&r, 3)
                                   : 0;
        if (done != 1) return done;
    }
    return r.at == r.end;
}

/* values_of(key) from the table of every key's value: NaN past the table (the caller checks ranges). */
typedef struct {
    const double *values;
    long long low, size;
} ValueTable;

/* The sum of `count` stores (all of one slot) as a dense array from key *low: its width, or -1 malformed,
 * -2 no memory. `cells` is grown as needed. */
static long long sum_stores(Store *const *stores, Py_ssize_t count, long long **cells, long long *capacity,
                            long long *low) {
    long long lo = KEY_LIMIT, hi = -KEY_LIMIT;
    for (Py_ssize_t i = 0; i < count; i++) {
        long long a, b;
        if (!key_range(stores[i], &a, &b)) return -1;
        if (a < lo) lo = a;
        if (b > hi) hi = b;
    }
    if (hi <= lo) return 0;
    long long width = hi - lo;
    if (width > *capacity) {
        long long *grown = PyMem_Realloc(*cells, (size_t)width * 8);
        if (grown == NULL) return -2;
        *cells = grown;
        *capacity = width;
    }
    memset(*cells, 0, (size_t)width * 8);
    for (Py_ssize_t i = 0; i < count; i++) {
        Store s = *stores[i];
        s.slot = 0;
        if (!add_store(&s, *cells, 1, width, lo)) return -1;
    }
    *low = lo;
    return width;
}

/* Each cell replaced by the running sum up to it: 1 done, 0 a sum past int64. */
static int running_sums(long long *cells, long long width) {
    for (long long i = 1; i < width; i++) {
        if (cells[i] > INT64_MAX - cells[i - 1]) return 0;
        cells[i] += cells[i - 1];
    }
    return 1;
}

/* The first index whose running sum is >= target (strict: > target), or `width`: NumPy's searchsorted
 * (side left, or right) on running sums, comparing as doubles as NumPy does. */
static long long first_reaching(const long long *sums, long long width, double target, int strict) {
    long long lo = 0, hi = width;
    while (lo < hi) {
        long long mid = lo + (hi - lo) / 2;
        int reached = strict ? (double)sums[mid] > target : (double)sums[mid] >= target;
        if (reached) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* version_merge._quantiles for one slot, clipped to [low, high], from the running sums of its negative
 * and positive bins: 1 done, 0 a key past the value table. */
static int slot_quantiles(const double *qs, int n_qs, long long count, long long zeros, const long long *neg,
                          long long neg_low, long long neg_width, const long long *pos, long long pos_low,
                          long long pos_width, double low, double high, const ValueTable *table, double *out) {
    long long below = neg_width ? neg[neg_width - 1] : 0;
    for (int k = 0; k < n_qs; k++) {
        double rank = (double)(count > 1 ? count - 1 : 0) * qs[k], v = 0.0;
        long long key;
        int sign = 0;
        if (rank < (double)below) {
            key = first_reaching(neg, neg_width, (double)below - rank, 0) + neg_low;
            sign = -1;
        } else if (rank >= (double)(below + zeros) && pos_width) {
            long long i = first_reaching(pos, pos_width, rank - (double)(below + zeros), 1);
            key = (i < pos_width ? i : pos_width - 1) + pos_low;
            sign = 1;
        }
        if (sign) {
            if (key < table->low || key >= table->low + table->size) return 0;
            v = sign * table->values[key - table->low];
        }
        v = v > low ? v : low; /* np.clip: maximum, then minimum */
        out[k] = v < high ? v : high;
    }
    return 1;
}

#define MAX_QUANTILES 16

/* The exact quantiles of parts[0..count) (sketches.exact_quantiles of merge_exact): 1 found, 0 not exact
 * (a part keeps no table, the union is past EXACT_LIMIT, or the tables do not add up to `n`). */
static int exact_quantiles(Part *const *parts, Py_ssize_t count, long long n, const double *qs, int n_qs,
                           double *out) {
    double values[EXACT_LIMIT];
    long long counts[EXACT_LIMIT];
    int distinct = 0;
    long long sum = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const Part *part = parts[i];
        if (part->exact_n == 0) return 0;
        for (Py_ssize_t j = 0; j < part->exact_n; j++) {
            double v;
            long long c;
            memcpy(&v, part->exact_values + 8 * j, 8);
            memcpy(&c, part->exact_counts + 8 * j, 8);
            if (!isfinite(v) || c <= 0 || sum > INT64_MAX - c) return 0;
            sum += c;
            int at = 0; /* insert into the sorted table (at most 64 entries: a linear walk is enough) */
            while (at < distinct && values[at] < v) at++;
            if (at < distinct && values[at] == v) {
                counts[at] += c;
                continue;
            }
            if (distinct == EXACT_LIMIT) return 0;
            memmove(values + at + 1, values + at, (size_t)(distinct - at) * sizeof(double));
            memmove(counts + at + 1, counts + at, (size_t)(distinct - at) * sizeof(long long));
            values[at] = v;
            counts[at] = c;
            distinct++;
        }
    }
    if (sum != n || distinct == 0) return 0;
    for (int k = 0; k < n_qs; k++) {
        double rank = (double)(n > 1 ? n - 1 : 0) * qs[k];
        long long running = 0;
        int at = 0;
        for (; at < distinct - 1; at++) { /* searchsorted(side="right") on the running counts */
            running += counts[at];
            if ((double)running > rank) break;
        }
        out[k] = values[at];
    }
    return 1;
}

typedef struct {
    PyObject *make;    /* called with (count, total, low, high, {quantile: value}) for each summary */
    PyObject *q_keys;  /* the quantiles asked, as given */
    double qs[MAX_QUANTILES];
    int n_qs;
    ValueTable table;
    long long *cells[2], capacity[2]; /* scratch: one slot's positive and negative bins */
    Store **runs[2];                  /* scratch: one slot's stores of each sign */
} Summariser;

/* (count, total, low, high, quantiles) of parts[0..count), all of one metric and slot; Py_None (new
 * reference) when malformed, NULL on error. */
static PyObject *summarise_run(Summariser *m, Part *const *parts, Py_ssize_t count) {
    long long n = 0, zeros = 0, width[2], low[2] = {0, 0};
    double sum = 0.0, carry = 0.0, lo = Py_HUGE_VAL, hi = -Py_HUGE_VAL, found[MAX_QUANTILES];
    Py_ssize_t stores[2] = {0, 0};
    for (Py_ssize_t i = 0; i < count; i++) {
        const Part *part = parts[i];
        if (n > INT64_MAX - part->count || zeros > INT64_MAX - part->zeros) Py_RETURN_NONE;
        n += part->count;
        zeros += part->zeros;
        double t = sum + part->total; /* Neumaier's compensated sum (the twin: math.fsum) */
        carry += fabs(sum) >= fabs(part->total) ? (sum - t) + part->total : (part->total - t) + sum;
        sum = t;
        if (part->low < lo) lo = part->low;
        if (part->high > hi) hi = part->high;
        for (int sign = 0; sign < 2; sign++)
            if (part->stores[sign].bins) m->runs[sign][stores[sign]++] = (Store *)&part->stores[sign];
    }
    for (int sign = 0; sign < 2; sign++) {
        width[sign] = sum_stores(m->runs[sign], stores[sign], &m->cells[sign], &m->capacity[sign], &low[sign]);
        if (width[sign] == -2) return PyErr_NoMemory();
        if (width[sign] < 0 || !running_sums(m->cells[sign], width[sign])) Py_RETURN_NONE;
    }
    if (!exact_quantiles(parts, count, n, m->qs, m->n_qs, found) &&
        !slot_quantiles(m->qs, m->n_qs, n, zeros, m->cells[1], low[1], width[1], m->cells[0], low[0], width[0], lo,
                        hi, &m->table, found))
        Py_RETURN_NONE;
    PyObject *quantiles = PyDict_New();
    if (quantiles == NULL) return NULL;
    for (int k = 0; k < m->n_qs; k++) {
        PyObject *v = PyFloat_FromDouble(found[k]);
        int failed = v == NULL || PyDict_SetItem(quantiles, PyTuple_GET_ITEM(m->q_keys, k), v) < 0;
        Py_XDECREF(v);
        if (failed) {
            Py_DECREF(quantiles);
            return NULL;
        }
    }
    PyObject *fields[5] = {PyLong_FromLongLong(n), PyFloat_FromDouble(sum + carry), PyFloat_FromDouble(lo),
                           PyFloat_FromDouble(hi), quantiles};
    PyObject *summary = NULL;
    if (fields[0] && fields[1] && fields[2] && fields[3]) summary = PyObject_Vectorcall(m->make, fields, 5, NULL);
    for (int i = 0; i < 5; i++) Py_XDECREF(fields[i]);
    return summary;
}

/* Every metric's parts summarised by slot into summaries[slot][name]: 1 done, 0 malformed, -1 error. */
static int summarise_parts(Summariser *m, Parsed *p, PyObject *summaries) {
    Py_ssize_t *start = PyMem_Calloc((size_t)p->n_names + 1, sizeof(Py_ssize_t));
    Part **order = PyMem_Malloc((size_t)(p->n_parts ? p->n_parts : 1) * sizeof(Part *));
    int done = -1;
    if (start == NULL || order == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    /* a stable counting sort by metric: each metric's parts stay in slot order */
    for (Py_ssize_t i = 0; i < p->n_parts; i++) start[p->parts[i].metric + 1]++;
    for (int k = 0; k < p->n_names; k++) start[k + 1] += start[k];
    for (Py_ssize_t i = 0; i < p->n_parts; i++) order[start[p->parts[i].metric]++] = &p->parts[i];
    Py_ssize_t at = 0;
    for (int k = 0; k < p->n_names; k++) {
        PyObject *name = PyUnicode_DecodeUTF8(p->names[k], p->name_lengths[k], NULL);
        if (name == NULL) {
            PyErr_Clear();
            done = 0;
            goto out;
        }
        while (at < start[k]) {
            Py_ssize_t end = at;
            while (end < start[k] && order[end]->stores[0].slot == order[at]->stores[0].slot) end++;
            PyObject *summary = summarise_run(m, order + at, end - at);
            int failed = summary == NULL || summary == Py_None ||
                         PyDict_SetItem(PyList_GET_ITEM(summaries, order[at]->stores[0].slot), name, summary) < 0;
            done = summary == Py_None ? 0 : -1;
            Py_XDECREF(summary);
            if (failed) {
                Py_DECREF(name);
                goto out;
            }
            at = end;
        }
        Py_DECREF(name);
    }
    done = 1;
out:
    PyMem_Free(start);
    PyMem_Free(order);
    return done;
}

/* summarise_blobs(groups, quantiles, values, values_low, make) -> (summaries, errors) | None
 *
 * `groups`: a list (one per slot) of lists of rollup blobs (rollup.to_blob's bytes, b"" for none).
 * Per slot, `summaries[slot]` maps each metric with values to make(count, total, low, high,
 * {quantile: value}) of its merged sketches, quantiles as version_merge._quantiles finds them (`values`: float64 bytes of
 * values_of(key) for keys from `values_low`); `errors[slot]` sums the rows' failed evaluations by
 * score name. None: a blob this code is not sure of (the caller decodes them in Python instead). */
static PyObject *summarise_blobs(PyObject *self, PyObject *args) {
    PyObject *groups, *qs, *out = NULL, *summaries = NULL, *errors = NULL;
    Py_buffer values;
    long long values_low;
    PyObject *make;
    if (!PyArg_ParseTuple(args, "O!O!y*LO", &PyList_Type, &groups, &PyTuple_Type, &qs, &values, &values_low, &make))
        return NULL;
    Summariser m = {.make = make,
                    .q_keys = qs,
                    .n_qs = (int)PyTuple_GET_SIZE(qs),
                    .table = {(const double *)values.buf, values_low, values.len / 8}};
    Parsed p = {0};
    Py_ssize_t n = PyList_GET_SIZE(groups);
    int done = 0;
    if (m.n_qs > MAX_QUANTILES) goto finish;
    for (int k = 0; k < m.n_qs; k++)
        if (!read_double(PyTuple_GET_ITEM(qs, k), &m.qs[k])) goto finish;
    summaries = PyList_New(n);
    errors = PyList_New(n);
    if (summaries == NULL || errors == NULL) goto error;
    for (Py_ssize_t slot = 0; slot < n; slot++) {
        PyObject *mine = PyDict_New(), *theirs = PyDict_New();
        if (mine) PyList_SET_ITEM(summaries, slot, mine);
        if (theirs) PyList_SET_ITEM(errors, slot, theirs);
        if (mine == NULL || theirs == NULL) goto error;
        PyObject *rows = PyList_GET_ITEM(groups, slot);
        if (!PyList_Check(rows)) goto finish;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
            done = read_blob(PyList_GET_ITEM(rows, i), &p, slot, theirs);
            if (done == -1) goto error;
            if (done == 0) goto finish;
        }
    }
    for (int sign = 0; sign < 2; sign++) {
        m.runs[sign] = PyMem_Malloc((size_t)(p.n_parts ? p.n_parts : 1) * sizeof(Store *));
        if (m.runs[sign] == NULL) {
            PyErr_NoMemory();
            goto error;
        }
    }
    done = summarise_parts(&m, &p, summaries);
    if (done == -1) goto error;
finish:
    out = done == 1 ? PyTuple_Pack(2, summaries, errors) : Py_NewRef(Py_None);
error:
    Py_XDECREF(summaries);
    Py_XDECREF(errors);
    for (int sign = 0; sign < 2; sign++) {
        PyMem_Free(m.cells[sign]);
        PyMem_Free(m.runs[sign]);
    }
    PyMem_Free(p.parts);
    PyBuffer_Release(&values);
    return out;
}

static PyMethodDef methods[] = {
    {"summarise_blobs", summarise_blobs, METH_VARARGS,
     "summarise_blobs(groups, quantiles, values, values_low, make) -> (summaries, errors) | None: rollup "
     "blobs merged by group, make(count, total, low, high, quantiles) of each metric."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_bins", NULL, 0, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__bins(void) { return PyModule_Create(&module_def); }
