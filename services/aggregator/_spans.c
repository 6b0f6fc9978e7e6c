/* Decode a SpanBatch (proto/vane/v1/bus.proto) straight into Postgres binary COPY tuples for `runs`
 * and the compact per-span records rollups and run assembly read, without a Python object per span.
 *
 * The C twin of services/aggregator/decode.py's decode_batch_python: same inputs, same outputs
 * (tests/unit/test_aggregator_decode.py compares them on generated and mutated batches). Field
 * numbers are not written here: the caller passes them, read from the generated descriptor. Any
 * input this decoder is not certain about (malformed bytes, invalid UTF-8, a known field with an
 * unexpected wire type, groups, a schema version it was not told) makes it return None, and the
 * caller decodes that message with the reference (protobuf) path, which has the last word.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Span slots, in the order of decode.SPAN_FIELDS (the layout tuple's first N_SPAN_SLOTS numbers). */
enum {
    S_PROJECT_ID, S_TRACE_ID, S_SPAN_ID, S_PARENT_SPAN_ID, S_NAME, S_KIND, S_PROJECT_NAME, S_APP_VERSION,
    S_PROJECT_TYPE, S_PROMPT_NAME, S_PROMPT_VERSION, S_MODEL, S_START, S_END, S_TTFT, S_INPUT_TOKENS,
    S_OUTPUT_TOKENS, S_TOTAL_TOKENS, S_CACHED_INPUT_TOKENS, S_COST, S_STATUS, S_ERROR_MESSAGE, S_SESSION_ID,
    S_USER_ID, S_INPUT, S_OUTPUT, S_EVAL_TAGS_JSON, S_ATTRIBUTES_JSON, S_PROMPT_LABEL, S_METADATA_JSON,
    S_INPUT_COST, S_OUTPUT_COST, N_SPAN_SLOTS
};
/* Batch slots follow the span slots in the layout tuple (decode.BATCH_FIELDS). */
enum { B_SCHEMA_VERSION, B_PROJECT_ID, B_SPANS, B_RECEIVED, N_BATCH_SLOTS };

enum { K_STRING, K_BYTES, K_INT64, K_INT32, K_DOUBLE };  /* how a slot is read off the wire */

static const unsigned char SPAN_KIND[N_SPAN_SLOTS] = {
    [S_PROJECT_ID] = K_STRING, [S_TRACE_ID] = K_BYTES, [S_SPAN_ID] = K_BYTES, [S_PARENT_SPAN_ID] = K_BYTES,
    [S_NAME] = K_STRING, [S_KIND] = K_STRING, [S_PROJECT_NAME] = K_STRING, [S_APP_VERSION] = K_STRING,
    [S_PROJECT_TYPE] = K_STRING, [S_PROMPT_NAME] = K_STRING, [S_PROMPT_VERSION] = K_INT32, [S_MODEL] = K_STRING,
    [S_START] = K_INT64, [S_END] = K_INT64, [S_TTFT] = K_DOUBLE, [S_INPUT_TOKENS] = K_INT64,
    [S_OUTPUT_TOKENS] = K_INT64, [S_TOTAL_TOKENS] = K_INT64, [S_CACHED_INPUT_TOKENS] = K_INT64,
    [S_COST] = K_DOUBLE, [S_STATUS] = K_INT32, [S_ERROR_MESSAGE] = K_STRING, [S_SESSION_ID] = K_STRING,
    [S_USER_ID] = K_STRING, [S_INPUT] = K_STRING, [S_OUTPUT] = K_STRING, [S_EVAL_TAGS_JSON] = K_STRING,
    [S_ATTRIBUTES_JSON] = K_STRING, [S_PROMPT_LABEL] = K_STRING, [S_METADATA_JSON] = K_STRING,
    [S_INPUT_COST] = K_DOUBLE, [S_OUTPUT_COST] = K_DOUBLE,
};
static const unsigned char BATCH_KIND[N_BATCH_SLOTS] = {
    [B_SCHEMA_VERSION] = K_INT32, [B_PROJECT_ID] = K_STRING, [B_SPANS] = K_BYTES, [B_RECEIVED] = K_INT64,
};

/* Text columns of a row, in RUN_COLUMNS order where they appear (Postgres refuses a NUL in text). */
static const int TEXT_SLOTS[] = {
    S_NAME, S_KIND, S_PROJECT_NAME, S_APP_VERSION, S_PROJECT_TYPE, S_PROMPT_NAME, S_PROMPT_LABEL, S_MODEL,
    S_ERROR_MESSAGE, S_SESSION_ID, S_USER_ID, S_INPUT, S_OUTPUT, S_ATTRIBUTES_JSON, S_METADATA_JSON,
};

/* Why a span is left out (decode.SKIP_REASONS has the words). */
enum { SKIP_IDS, SKIP_NO_PROJECT, SKIP_STATUS_RANGE, SKIP_NUL };

#define RUN_COLUMN_COUNT 34
#define STATUS_ERROR 2
/* Microseconds from 1970 to Postgres's epoch 2000-01-01 (int64 nanoseconds always fit its range). */
#define PG_EPOCH_US INT64_C(946684800000000)
#define US_PER_DAY INT64_C(86400000000)
#define MAX_DAYS 64 /* distinct days of one message: more than that and the reference path decodes it */

/* Flags of a span record (decode.SPAN_DTYPE). */
#define F_TTFT 1
#define F_INPUT 2
#define F_OUTPUT 4
#define F_COST 8
#define F_ERROR 16
#define F_GENERATION 32
#define F_ROOT 64
#define F_INPUT_COST 128
#define F_OUTPUT_COST 256
#define RECORD_SIZE 80

typedef struct {
    const uint8_t *ptr;
    Py_ssize_t len;
} Slice;

typedef struct {
    Slice text[N_SPAN_SLOTS]; /* string and bytes slots */
    int64_t num[N_SPAN_SLOTS]; /* integer slots; doubles as their bits */
    unsigned char has[N_SPAN_SLOTS]; /* seen on the wire (presence of the optional fields) */
} Span;

typedef struct {
    char *data;
    size_t len, cap;
} Buffer;

static int buffer_reserve(Buffer *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        if (cap > ((size_t)PY_SSIZE_T_MAX) / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *grown = PyMem_Realloc(b->data, cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = grown;
    b->cap = cap;
    return 0;
}

static void put_be16(char *out, uint16_t v) {
    out[0] = (char)(v >> 8);
    out[1] = (char)v;
}
static void put_be32(char *out, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8) out[i] = (char)v;
}
static void put_be64(char *out, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (char)v;
}

/* COPY field writers: a 4-byte length (-1 for NULL) then the value in network order. */
static void field_int(Buffer *b, uint64_t v, int size) {
    char *out = b->data + b->len;
    put_be32(out, (uint32_t)size);
    if (size == 2) put_be16(out + 4, (uint16_t)v);
    else if (size == 4) put_be32(out + 4, (uint32_t)v);
    else put_be64(out + 4, v);
    b->len += 4 + (size_t)size;
}
static void field_null(Buffer *b) {
    put_be32(b->data + b->len, UINT32_MAX);
    b->len += 4;
}
static void field_bytes(Buffer *b, const void *ptr, Py_ssize_t len) {
    put_be32(b->data + b->len, (uint32_t)len);
    if (len) memcpy(b->data + b->len + 4, ptr, (size_t)len);
    b->len += 4 + (size_t)len;
}
static uint64_t bits_of(double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

/* Wire reading. Every function returns 0 on success, -1 on bytes it does not accept. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end) return -1;
        uint8_t byte = *(*p)++;
        if (shift == 63 && byte > 1) return -1;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int read_length(const uint8_t **p, const uint8_t *end, Slice *out) {
    uint64_t len;
    if (read_varint(p, end, &len) || len > (uint64_t)(end - *p)) return -1;
    out->ptr = *p;
    out->len = (Py_ssize_t)len;
    *p += len;
    return 0;
}

static int skip_field(const uint8_t **p, const uint8_t *end, int wire) {
    uint64_t ignored;
    Slice s;
    switch (wire) {
    case 0: return read_varint(p, end, &ignored);
    case 1: if (end - *p < 8) return -1; *p += 8; return 0;
    case 2: return read_length(p, end, &s);
    case 5: if (end - *p < 4) return -1; *p += 4; return 0;
    default: return -1; /* groups and invalid wire types: the reference path decides */
    }
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF): at least as strict as protobuf. */
static int valid_utf8(const uint8_t *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        uint64_t word;
        if (n - i >= 8 && (memcpy(&word, s + i, 8), (word & UINT64_C(0x8080808080808080)) == 0)) {
            i += 8; /* eight ASCII bytes */
            continue;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int need;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) need = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) need = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) need = 3, cp = c & 0x07;
        else return 0;
        if (n - i <= need) return 0;
        for (int k = 1; k <= need; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* Read one field into its slot; `kinds` says how. Returns -1 on anything the reference path must judge. */
static int read_slot(const uint8_t **p, const uint8_t *end, int wire, int kind, Slice *text, int64_t *num) {
    uint64_t v;
    switch (kind) {
    case K_STRING:
    case K_BYTES:
        if (wire != 2 || read_length(p, end, text)) return -1;
        if (kind == K_STRING && !valid_utf8(text->ptr, text->len)) return -1;
        return 0;
    case K_INT64:
    case K_INT32:
        if (wire != 0 || read_varint(p, end, &v)) return -1;
        *num = kind == K_INT32 ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
        return 0;
    case K_DOUBLE:
        if (wire != 1 || end - *p < 8) return -1;
        memcpy(&v, *p, 8); /* protobuf's fixed64 is little-endian, as is every platform this builds on */
        *p += 8;
        *num = (int64_t)v;
        return 0;
    }
    return -1;
}

/* The field numbers of the slots, and for small numbers (all of bus.proto's) the slot of each. */
#define DIRECT_FIELDS 64
typedef struct {
    uint32_t numbers[N_SPAN_SLOTS + N_BATCH_SLOTS];
    signed char span_slot[DIRECT_FIELDS]; /* -1: not a span field this decoder reads */
} Layout;

static int slot_of(const uint32_t *numbers, int count, uint64_t field) {
    for (int i = 0; i < count; i++)
        if (numbers[i] == field) return i;
    return -1;
}

static int span_slot_of(const Layout *layout, uint64_t field) {
    if (field < DIRECT_FIELDS) return layout->span_slot[field];
    return slot_of(layout->numbers, N_SPAN_SLOTS, field);
}

static int parse_span(const uint8_t *p, const uint8_t *end, const Layout *layout, Span *span) {
    memset(span->has, 0, sizeof span->has);
    while (p < end) {
        uint64_t tag;
        if (read_varint(&p, end, &tag)) return -1;
        uint64_t field = tag >> 3;
        int wire = (int)(tag & 7);
        if (field == 0 || field > 536870911) return -1;
        int slot = span_slot_of(layout, field);
        if (slot < 0) {
            if (skip_field(&p, end, wire)) return -1;
            continue;
        }
        if (read_slot(&p, end, wire, SPAN_KIND[slot], &span->text[slot], &span->num[slot])) return -1;
        span->has[slot] = 1;
    }
    return 0;
}

static Slice text_of(const Span *s, int slot) {
    if (s->has[slot]) return s->text[slot];
    Slice empty = {(const uint8_t *)"", 0};
    return empty;
}
static int64_t num_of(const Span *s, int slot) { return s->has[slot] ? s->num[slot] : 0; }

static int is_generation(const Span *s, PyObject *not_generations) {
    Slice kind = text_of(s, S_KIND);
    if ((kind.len == 3 && memcmp(kind.ptr, "llm", 3) == 0) || num_of(s, S_PROMPT_VERSION) > 0) return 1;
    if (text_of(s, S_MODEL).len == 0) return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(not_generations);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(not_generations, i);
        if (PyBytes_GET_SIZE(item) == kind.len && memcmp(PyBytes_AS_STRING(item), kind.ptr, (size_t)kind.len) == 0)
            return 0;
    }
    return 1;
}

/* Projects of one message: each distinct project_id string turned into a UUID once, by the caller's function. */
typedef struct {
    Slice raw;
    PyObject *uuid;      /* owned */
    char bytes[16];
    int canonical;       /* the first project of the same UUID (another spelling of it is the same project) */
    int row_index;       /* its index in the message's projects list, or -1 until a row uses it */
} Project;

typedef struct {
    Project *items;
    int count, cap;
} Projects;

static void projects_free(Projects *ps) {
    for (int i = 0; i < ps->count; i++) Py_XDECREF(ps->items[i].uuid);
    PyMem_Free(ps->items);
}

/* The index of the project of `raw`, asking `project_of` for a string not seen before in this message;
 * -1 on error. (Indices, not pointers: the array grows.) */
static int project_for(Projects *ps, Slice raw, PyObject *project_of) {
    for (int i = 0; i < ps->count; i++)
        if (ps->items[i].raw.len == raw.len && memcmp(ps->items[i].raw.ptr, raw.ptr, (size_t)raw.len) == 0)
            return ps->items[i].canonical;
    if (ps->count == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 4;
        Project *grown = PyMem_Realloc(ps->items, (size_t)cap * sizeof(Project));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ps->items = grown;
        ps->cap = cap;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)raw.ptr, raw.len, "strict");
    if (text == NULL) return -1;
    PyObject *uuid = PyObject_CallOneArg(project_of, text);
    Py_DECREF(text);
    if (uuid == NULL) return -1;
    PyObject *bytes = PyObject_GetAttrString(uuid, "bytes");
    if (bytes == NULL || !PyBytes_Check(bytes) || PyBytes_GET_SIZE(bytes) != 16) {
        if (bytes != NULL) PyErr_SetString(PyExc_TypeError, "project_of must return a uuid.UUID");
        Py_XDECREF(bytes);
        Py_DECREF(uuid);
        return -1;
    }
    Project *p = &ps->items[ps->count];
    p->raw = raw;
    p->uuid = uuid;
    memcpy(p->bytes, PyBytes_AS_STRING(bytes), 16);
    p->row_index = -1;
    p->canonical = ps->count;
    Py_DECREF(bytes);
    for (int i = 0; i < ps->count; i++)
        if (memcmp(ps->items[i].bytes, p->bytes, 16) == 0) {
            p->canonical = i;
            break;
        }
    ps->count++;
    return p->canonical;
}

/* Distinct keys of one message (project, project name, app version, prompt name, prompt version, model):
 * an open-addressing table of indices into `keys`, a list of tuples made once per distinct key. */
typedef struct {
    int project;
    Slice project_name, app, prompt, model;
    int64_t prompt_version;
} KeyParts;

typedef struct {
    KeyParts *parts;  /* by key index */
    int32_t *table;   /* -1: empty */
    size_t mask;
    int count;
} Keys;

static uint64_t hash_bytes(uint64_t h, const uint8_t *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) h = (h ^ p[i]) * UINT64_C(1099511628211);
    return (h ^ (uint64_t)n) * UINT64_C(1099511628211);
}

static int same_slice(Slice a, Slice b) { return a.len == b.len && memcmp(a.ptr, b.ptr, (size_t)a.len) == 0; }

/* The key index of these parts, appending a new tuple to `list` for a key not seen before; -1 on error. */
static int32_t key_index(Keys *keys, const KeyParts *k, PyObject *uuid, PyObject *list) {
    uint64_t h = (UINT64_C(14695981039346656037) ^ (uint64_t)k->project) * UINT64_C(1099511628211);
    h = hash_bytes(h, k->project_name.ptr, k->project_name.len);
    h = hash_bytes(h, k->app.ptr, k->app.len);
    h = hash_bytes(h, k->prompt.ptr, k->prompt.len);
    h = hash_bytes(h, k->model.ptr, k->model.len);
    h = (h ^ (uint64_t)k->prompt_version) * UINT64_C(1099511628211);
    for (size_t at = (size_t)h & keys->mask;; at = (at + 1) & keys->mask) {
        int32_t i = keys->table[at];
        if (i < 0) {
            PyObject *key = Py_BuildValue(
                "(Os#s#s#Ls#)", uuid, (const char *)k->project_name.ptr, k->project_name.len,
                (const char *)k->app.ptr, k->app.len, (const char *)k->prompt.ptr, k->prompt.len,
                (long long)k->prompt_version, (const char *)k->model.ptr, k->model.len);
            if (key == NULL) return -1;
            int failed = PyList_Append(list, key);
            Py_DECREF(key);
            if (failed) return -1;
            keys->parts[keys->count] = *k;
            keys->table[at] = keys->count;
            return keys->count++;
        }
        const KeyParts *o = &keys->parts[i];
        if (o->project == k->project && o->prompt_version == k->prompt_version && same_slice(o->app, k->app) &&
            same_slice(o->project_name, k->project_name) && same_slice(o->prompt, k->prompt) &&
            same_slice(o->model, k->model))
            return i;
    }
}

static int has_nul(const Span *s) {
    for (size_t i = 0; i < sizeof TEXT_SLOTS / sizeof TEXT_SLOTS[0]; i++) {
        Slice t = text_of(s, TEXT_SLOTS[i]);
        if (t.len && memchr(t.ptr, 0, (size_t)t.len) != NULL) return 1;
    }
    return 0;
}

static void put_text(Buffer *b, const Span *s, int slot) {
    Slice t = text_of(s, slot);
    field_bytes(b, t.ptr, t.len);
}
static void put_optional_int(Buffer *b, const Span *s, int slot) {
    if (s->has[slot]) field_int(b, (uint64_t)s->num[slot], 8);
    else field_null(b);
}

/* The COPY tuple of one span (RUN_COLUMNS order). */
static int put_row(Buffer *b, const Span *s, const Project *project, int64_t start, int64_t end, int64_t start_us,
                   int generation, double latency_ms) {
    size_t size = 2 + RUN_COLUMN_COUNT * 4 + 16 + 8 * 14 + 4 + 2 + 1;
    for (int slot = 0; slot < N_SPAN_SLOTS; slot++)
        if (SPAN_KIND[slot] != K_INT64 && SPAN_KIND[slot] != K_INT32 && SPAN_KIND[slot] != K_DOUBLE)
            size += (size_t)text_of(s, slot).len;
    if (buffer_reserve(b, size)) return -1;
    put_be16(b->data + b->len, RUN_COLUMN_COUNT);
    b->len += 2;
    field_bytes(b, project->bytes, 16);
    field_int(b, (uint64_t)(start_us - PG_EPOCH_US), 8);
    put_text(b, s, S_TRACE_ID);
    put_text(b, s, S_SPAN_ID);
    put_text(b, s, S_PARENT_SPAN_ID);
    field_int(b, (uint64_t)start, 8);
    field_int(b, (uint64_t)end, 8);
    field_bytes(b, generation ? "\1" : "\0", 1);
    put_text(b, s, S_NAME);
    put_text(b, s, S_KIND);
    put_text(b, s, S_PROJECT_NAME);
    put_text(b, s, S_APP_VERSION);
    put_text(b, s, S_PROJECT_TYPE);
    put_text(b, s, S_PROMPT_NAME);
    field_int(b, (uint64_t)num_of(s, S_PROMPT_VERSION), 4);
    put_text(b, s, S_PROMPT_LABEL);
    put_text(b, s, S_MODEL);
    field_int(b, bits_of(latency_ms), 8);
    put_optional_int(b, s, S_TTFT); /* a double's bits, written as they are */
    put_optional_int(b, s, S_INPUT_TOKENS);
    put_optional_int(b, s, S_OUTPUT_TOKENS);
    put_optional_int(b, s, S_TOTAL_TOKENS);
    put_optional_int(b, s, S_CACHED_INPUT_TOKENS);
    put_optional_int(b, s, S_COST);
    put_optional_int(b, s, S_INPUT_COST);
    put_optional_int(b, s, S_OUTPUT_COST);
    field_int(b, (uint64_t)num_of(s, S_STATUS), 2);
    put_text(b, s, S_ERROR_MESSAGE);
    put_text(b, s, S_SESSION_ID);
    put_text(b, s, S_USER_ID);
    put_text(b, s, S_INPUT);
    put_text(b, s, S_OUTPUT);
    put_text(b, s, S_ATTRIBUTES_JSON);
    put_text(b, s, S_METADATA_JSON);
    return 0;
}

/* The span record rollups and run assembly read (decode.SPAN_DTYPE, little-endian). */
static int put_record(Buffer *b, const Span *s, int32_t key, int64_t start, int64_t end, double latency_ms,
                      int generation) {
    if (buffer_reserve(b, RECORD_SIZE)) return -1;
    char *out = b->data + b->len;
    memset(out, 0, RECORD_SIZE);
    uint16_t flags = (uint16_t)((s->has[S_TTFT] ? F_TTFT : 0) | (s->has[S_INPUT_TOKENS] ? F_INPUT : 0) |
                                (s->has[S_OUTPUT_TOKENS] ? F_OUTPUT : 0) | (s->has[S_COST] ? F_COST : 0) |
                                (num_of(s, S_STATUS) == STATUS_ERROR ? F_ERROR : 0) | (generation ? F_GENERATION : 0) |
                                (text_of(s, S_PARENT_SPAN_ID).len == 0 ? F_ROOT : 0) |
                                (s->has[S_INPUT_COST] ? F_INPUT_COST : 0) | (s->has[S_OUTPUT_COST] ? F_OUTPUT_COST : 0));
    int64_t fields[9] = {start,
                         end,
                         (int64_t)bits_of(latency_ms),
                         num_of(s, S_TTFT),
                         num_of(s, S_INPUT_TOKENS),
                         num_of(s, S_OUTPUT_TOKENS),
                         num_of(s, S_COST),
                         num_of(s, S_INPUT_COST),
                         num_of(s, S_OUTPUT_COST)};
    memcpy(out, &key, 4);
    memcpy(out + 4, &flags, 2);
    memcpy(out + 8, fields, sizeof fields);
    b->len += RECORD_SIZE;
    return 0;
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

typedef struct {
    Buffer rows, records, traces, row_projects;
    int64_t days[MAX_DAYS];
    int day_count;
    Py_ssize_t row_count;
} Output;

/* Add a span's row (or its reason to be skipped) to the output. 0: done, 1: outside what this decoder
 * handles (the reference path decodes the message), -1: a Python error is set. */
static int add_span(Output *out, const Span *s, Projects *projects, int project_index, int64_t received, PyObject *not_generations,
                    Keys *keys, PyObject *key_list, PyObject *project_list, PyObject *skipped) {
    int reason = -1;
    int64_t start = num_of(s, S_START) ? num_of(s, S_START) : received;
    int64_t end = num_of(s, S_END) > start ? num_of(s, S_END) : start;
    int64_t start_us = floor_div(start, 1000);
    int64_t status = num_of(s, S_STATUS);
    if (status < -32768 || status > 32767) reason = SKIP_STATUS_RANGE;
    else if (has_nul(s)) reason = SKIP_NUL;
    if (reason >= 0) {
        Slice name = text_of(s, S_NAME);
        PyObject *item = Py_BuildValue("(s#i)", (const char *)name.ptr, name.len, reason);
        if (item == NULL) return -1;
        int failed = PyList_Append(skipped, item);
        Py_DECREF(item);
        return failed ? -1 : 0;
    }
    Project *project = &projects->items[project_index];
    double latency_ms = (double)((uint64_t)end - (uint64_t)start) / 1e6;
    int generation = is_generation(s, not_generations);
    if (put_row(&out->rows, s, project, start, end, start_us, generation, latency_ms)) return -1;
    if (project->row_index < 0) {
        project->row_index = (int)PyList_GET_SIZE(project_list);
        if (PyList_Append(project_list, project->uuid)) return -1;
    }
    int32_t row_project = project->row_index;
    if (buffer_reserve(&out->row_projects, 4) || buffer_reserve(&out->traces, 16)) return -1;
    memcpy(out->row_projects.data + out->row_projects.len, &row_project, 4);
    out->row_projects.len += 4;
    memcpy(out->traces.data + out->traces.len, s->text[S_TRACE_ID].ptr, 16);
    out->traces.len += 16;
    int64_t day = floor_div(start_us, US_PER_DAY);
    int known = 0;
    for (int i = 0; i < out->day_count && !known; i++) known = out->days[i] == day;
    if (!known) {
        if (out->day_count == MAX_DAYS) return 1;
        out->days[out->day_count++] = day;
    }
    out->row_count++;
    KeyParts parts = {project_index, text_of(s, S_PROJECT_NAME), text_of(s, S_APP_VERSION), text_of(s, S_PROMPT_NAME),
                      text_of(s, S_MODEL), num_of(s, S_PROMPT_VERSION)};
    int32_t key = key_index(keys, &parts, project->uuid, key_list);
    if (key < 0) return -1;
    return put_record(&out->records, s, key, start, end, latency_ms, generation);
}

static PyObject *bytes_of(const Buffer *b) {
    return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len);
}

static int read_layout(PyObject *tuple, Layout *layout) {
    if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != N_SPAN_SLOTS + N_BATCH_SLOTS) {
        PyErr_SetString(PyExc_ValueError, "layout must be a tuple of the span's and the batch's field numbers");
        return -1;
    }
    for (int i = 0; i < N_SPAN_SLOTS + N_BATCH_SLOTS; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(tuple, i));
        if (v == -1 && PyErr_Occurred()) return -1;
        if (v < 1 || v > 536870911) {
            PyErr_SetString(PyExc_ValueError, "a field number is out of range");
            return -1;
        }
        layout->numbers[i] = (uint32_t)v;
    }
    memset(layout->span_slot, -1, sizeof layout->span_slot);
    for (int i = N_SPAN_SLOTS - 1; i >= 0; i--) /* the first slot of a number wins, as in slot_of */
        if (layout->numbers[i] < DIRECT_FIELDS) layout->span_slot[layout->numbers[i]] = (signed char)i;
    return 0;
}

/* The whole decode of one message; see the module docstring. */
static PyObject *decode_span_batch(PyObject *module, PyObject *args) {
    Py_buffer data;
    PyObject *layout_tuple, *not_generations, *project_of;
    int expected_schema;
    (void)module;
    if (!PyArg_ParseTuple(args, "y*O!iO!O:decode_span_batch", &data, &PyTuple_Type, &layout_tuple, &expected_schema,
                          &PyTuple_Type, &not_generations, &project_of))
        return NULL;
    PyObject *result = NULL, *keys_list = NULL, *projects_list = NULL, *skipped = NULL, *days = NULL;
    Span *spans = NULL;
    Slice *span_bytes = NULL;
    Keys keys = {NULL, NULL, 0, 0};
    Projects projects = {NULL, 0, 0};
    Output out;
    memset(&out, 0, sizeof out);
    Layout layout;
    if (read_layout(layout_tuple, &layout)) goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(not_generations); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(not_generations, i))) {
            PyErr_SetString(PyExc_TypeError, "not_generations must be a tuple of bytes");
            goto done;
        }
    }

    /* First pass: the batch's own fields, and where each span's bytes are. */
    const uint8_t *p = data.buf, *end = p + data.len;
    int64_t batch_num[N_BATCH_SLOTS] = {0};
    Slice batch_text[N_BATCH_SLOTS];
    unsigned char batch_has[N_BATCH_SLOTS] = {0};
    Py_ssize_t span_count = 0, span_cap = 0;
    const uint32_t *batch_numbers = layout.numbers + N_SPAN_SLOTS;
    while (p < end) {
        uint64_t tag;
        if (read_varint(&p, end, &tag)) goto fallback;
        uint64_t field = tag >> 3;
        int wire = (int)(tag & 7);
        if (field == 0 || field > 536870911) goto fallback;
        int slot = slot_of(batch_numbers, N_BATCH_SLOTS, field);
        if (slot < 0) {
            if (skip_field(&p, end, wire)) goto fallback;
            continue;
        }
        Slice text;
        int64_t num;
        if (read_slot(&p, end, wire, BATCH_KIND[slot], &text, &num)) goto fallback;
        if (slot == B_SPANS) {
            if (span_count == span_cap) {
                span_cap = span_cap ? span_cap * 2 : 64;
                Slice *grown = PyMem_Realloc(span_bytes, (size_t)span_cap * sizeof(Slice));
                if (grown == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                span_bytes = grown;
            }
            span_bytes[span_count++] = text;
            continue;
        }
        batch_text[slot] = text;
        batch_num[slot] = num;
        batch_has[slot] = 1;
    }

    /* Second pass: every span parsed before anything is judged, so malformed bytes anywhere fall back. */
    if (span_count) {
        spans = PyMem_Malloc((size_t)span_count * sizeof(Span)); /* parse_span clears what it reads */
        if (spans == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < span_count; i++)
        if (parse_span(span_bytes[i].ptr, span_bytes[i].ptr + span_bytes[i].len, &layout, &spans[i])) goto fallback;
    if ((batch_has[B_SCHEMA_VERSION] ? batch_num[B_SCHEMA_VERSION] : 0) != expected_schema) goto fallback;

    keys_list = PyList_New(0);
    projects_list = PyList_New(0);
    skipped = PyList_New(0);
    if (keys_list == NULL || projects_list == NULL || skipped == NULL) goto done;
    size_t capacity = 16;
    while (capacity < (size_t)span_count * 2) capacity *= 2;
    keys.parts = PyMem_Malloc(((size_t)span_count + 1) * sizeof(KeyParts));
    keys.table = PyMem_Malloc(capacity * sizeof(int32_t));
    if (keys.parts == NULL || keys.table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memset(keys.table, 0xff, capacity * sizeof(int32_t));
    keys.mask = capacity - 1;

    int default_project = -1;
    if (batch_has[B_PROJECT_ID] && batch_text[B_PROJECT_ID].len) {
        default_project = project_for(&projects, batch_text[B_PROJECT_ID], project_of);
        if (default_project < 0) goto done;
    }
    int64_t received = batch_num[B_RECEIVED];
    for (Py_ssize_t i = 0; i < span_count; i++) {
        const Span *s = &spans[i];
        int project = default_project;
        int reason = -1;
        if (text_of(s, S_TRACE_ID).len != 16 || text_of(s, S_SPAN_ID).len != 8) reason = SKIP_IDS;
        else if (text_of(s, S_PROJECT_ID).len) {
            project = project_for(&projects, s->text[S_PROJECT_ID], project_of);
            if (project < 0) goto done;
        } else if (project < 0) reason = SKIP_NO_PROJECT;
        if (reason >= 0) {
            Slice name = text_of(s, S_NAME);
            PyObject *item = Py_BuildValue("(s#i)", (const char *)name.ptr, name.len, reason);
            if (item == NULL) goto done;
            int failed = PyList_Append(skipped, item);
            Py_DECREF(item);
            if (failed) goto done;
            continue;
        }
        int added = add_span(&out, s, &projects, project, received, not_generations, &keys, keys_list, projects_list, skipped);
        if (added < 0) goto done;
        if (added > 0) goto fallback;
    }
    days = PyList_New(out.day_count);
    if (days == NULL) goto done;
    for (int i = 0; i < out.day_count; i++) {
        PyObject *day = PyLong_FromLongLong(out.days[i]);
        if (day == NULL) goto done;
        PyList_SET_ITEM(days, i, day);
    }
    PyObject *rows = bytes_of(&out.rows), *records = bytes_of(&out.records);
    PyObject *traces = bytes_of(&out.traces), *row_projects = bytes_of(&out.row_projects);
    if (rows && records && traces && row_projects)
        result = Py_BuildValue("(nOOOOOOOO)", out.row_count, rows, records, keys_list, traces, row_projects,
                               projects_list, days, skipped);
    Py_XDECREF(rows);
    Py_XDECREF(records);
    Py_XDECREF(traces);
    Py_XDECREF(row_projects);
    goto done;

fallback:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&data);
    PyMem_Free(spans);
    PyMem_Free(span_bytes);
    PyMem_Free(keys.parts);
    PyMem_Free(keys.table);
    projects_free(&projects);
    PyMem_Free(out.rows.data);
    PyMem_Free(out.records.data);
    PyMem_Free(out.traces.data);
    PyMem_Free(out.row_projects.data);
    Py_XDECREF(keys_list);
    Py_XDECREF(projects_list);
    Py_XDECREF(skipped);
    Py_XDECREF(days);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_span_batch", decode_span_batch, METH_VARARGS,
     "decode_span_batch(data, layout, schema_version, not_generations, project_of) -> tuple | None\n\n"
     "The COPY rows and generation records of a SpanBatch, or None when the reference decoder must judge it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_spans", NULL, 0, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__spans(void) { return PyModule_Create(&module_def); }
