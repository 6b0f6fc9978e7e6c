/* _canonical: an OTLP ExportTraceServiceRequest's bytes → each span's CanonicalSpan bytes, in one pass.
 *
 * The C twin of normalise + price_spans + serialise_spans (services/ingest/canonical.py wraps it).
 * It is table-driven: the conventions' tables (attribute name → rules) and CanonicalSpan's field
 * numbers arrive once, from Python, when a Canonicaliser is built. Attributes written the usual way
 * with a scalar value and converters of a common kind are mapped here, without a Python object;
 * anything else is handed to the Python reference (a request context's `attributes[raw]`, converters,
 * numbered message parts, an exception event's message, a model's prices), so results are identical.
 *
 * Every read is bounds-checked: the bytes come from the network. A body whose structure C does not
 * read exactly as upb would (groups, long varints, a field out of place…) is not an error here:
 * `spans` answers None and the Python path decides, with its own errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define OK 0
#define FAIL (-1)  /* a Python exception is set */
#define DEFER 1    /* not for C: the Python reference handles the whole request */

/* ---------------------------------------------------------------- converter kinds and fields */

enum { K_PYTHON = 0, K_TEXT, K_COUNT, K_AMOUNT, K_VERSION, K_SECONDS_TO_MS, K_TIMESTAMP_NS, K_LOWERED, K_IS_ERROR_LEVEL };
static const char *const KIND_NAMES[] = {"python", "text", "count", "amount", "version",
                                         "seconds_to_ms", "timestamp_ns", "lowered", "is_error_level"};
#define N_KINDS 9

/* The canonical fields the conventions fill (convention.SPAN_FIELDS), and what their values are. */
enum {
    F_KIND, F_MODEL, F_PROMPT_NAME, F_PROMPT_VERSION, F_PROMPT_LABEL, F_INPUT_TOKENS, F_OUTPUT_TOKENS,
    F_TOTAL_TOKENS, F_CACHED_INPUT_TOKENS, F_COST, F_INPUT_COST, F_OUTPUT_COST, F_TTFT_MS,
    F_COMPLETION_START_NS, F_SESSION_ID, F_USER_ID, F_INPUT, F_OUTPUT, F_ERROR_MESSAGE, F_IS_ERROR,
    F_APP_VERSION, N_FIELDS
};
static const char *const FIELD_NAMES[N_FIELDS] = {
    "kind", "model", "prompt_name", "prompt_version", "prompt_label", "input_tokens", "output_tokens",
    "total_tokens", "cached_input_tokens", "cost", "input_cost", "output_cost", "ttft_ms",
    "completion_start_ns", "session_id", "user_id", "input", "output", "error_message", "is_error",
    "app_version"};
enum { C_STR, C_INT, C_DBL, C_TRUTH };
static const int FIELD_CLASS[N_FIELDS] = {
    C_STR, C_STR, C_STR, C_INT, C_STR, C_INT, C_INT, C_INT, C_INT, C_DBL, C_DBL, C_DBL, C_DBL,
    C_INT, C_STR, C_STR, C_STR, C_STR, C_STR, C_TRUTH, C_STR};

/* The CanonicalSpan fields a span's own bytes may hold; numbers and types come from the descriptor. */
enum {
    S_TRACE_ID, S_SPAN_ID, S_PARENT_SPAN_ID, S_NAME, S_KIND, S_APP_VERSION, S_PROMPT_NAME,
    S_PROMPT_VERSION, S_MODEL, S_START, S_END, S_TTFT_MS, S_INPUT_TOKENS, S_OUTPUT_TOKENS,
    S_TOTAL_TOKENS, S_CACHED_INPUT_TOKENS, S_COST, S_STATUS, S_ERROR_MESSAGE, S_SESSION_ID, S_USER_ID,
    S_INPUT, S_OUTPUT, S_ATTRIBUTES_JSON, S_PROMPT_LABEL, S_INPUT_COST, S_OUTPUT_COST, N_SLOTS
};
static const char *const SLOT_NAMES[N_SLOTS] = {
    "trace_id", "span_id", "parent_span_id", "name", "kind", "app_version", "prompt_name",
    "prompt_version", "model", "start_time_unix_nano", "end_time_unix_nano", "ttft_ms", "input_tokens",
    "output_tokens", "total_tokens", "cached_input_tokens", "cost", "status", "error_message",
    "session_id", "user_id", "input", "output", "attributes_json", "prompt_label", "input_cost", "output_cost"};
enum { W_LEN, W_INT64, W_INT32, W_DOUBLE };
static const int SLOT_WIRE[N_SLOTS] = {
    W_LEN, W_LEN, W_LEN, W_LEN, W_LEN, W_LEN, W_LEN, W_INT32, W_LEN, W_INT64, W_INT64, W_DOUBLE,
    W_INT64, W_INT64, W_INT64, W_INT64, W_DOUBLE, W_INT32, W_LEN, W_LEN, W_LEN, W_LEN, W_LEN, W_LEN,
    W_LEN, W_DOUBLE, W_DOUBLE};
/* The mapped field each slot takes its value from (-1: the span itself, status or attributes_json). */
static const int SLOT_FIELD[N_SLOTS] = {
    -1, -1, -1, -1, F_KIND, F_APP_VERSION, F_PROMPT_NAME, F_PROMPT_VERSION, F_MODEL, -1, -1, F_TTFT_MS,
    F_INPUT_TOKENS, F_OUTPUT_TOKENS, F_TOTAL_TOKENS, F_CACHED_INPUT_TOKENS, F_COST, -1, -1,
    F_SESSION_ID, F_USER_ID, F_INPUT, F_OUTPUT, -1, F_PROMPT_LABEL, F_INPUT_COST, F_OUTPUT_COST};

#define STATUS_CODE_ERROR 2 /* opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR */
#define SPAN_OK 1
#define SPAN_ERROR 2
#define MAX_MODELS 32 /* distinct models whose prices one request remembers */

/* ---------------------------------------------------------------- the compiled tables */

typedef struct {
    int rank;
    int field;
    int kind;
    int lowered; /* index into lowered tables (K_LOWERED) */
    PyObject *convert;
} Rule;

typedef struct {
    char *key;
    Py_ssize_t len;
    uint64_t hash;
    int slow; /* some rule is an expander or an uncommon converter: Python maps every value */
    int carried;
    int nrules;
    Rule *rules;
} Name;

typedef struct {
    char *key;
    Py_ssize_t klen;
    char *value;
    Py_ssize_t vlen;
} Pair;

typedef struct {
    Pair *pairs;
    Py_ssize_t n;
} Lowered;

typedef struct {
    PyObject_HEAD
    Name *names;
    Py_ssize_t nnames;
    Name **slots; /* open addressing, power of two */
    size_t mask;
    Lowered *lowered;
    Py_ssize_t nlowered;
    char **prefixes;
    Py_ssize_t *prefix_lens;
    Py_ssize_t nprefixes;
    uint32_t number[N_SLOTS];
    int presence[N_SLOTS];
    int order[N_SLOTS]; /* slots by field number */
    PyObject *invalid;
    PyObject *s_attributes, *s_resource, *s_messages, *s_exception, *s_price;
} Canonicaliser;

/* A name's hash, eight bytes at a time (names are 10 to 60 bytes). */
static uint64_t hash_of(const char *s, Py_ssize_t n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    memcpy(&tail, s + i, (size_t)(n - i));
    h = (h ^ tail) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
}

static const Name *find_name(const Canonicaliser *self, const char *key, Py_ssize_t len)
{
    uint64_t h = hash_of(key, len);
    for (size_t i = (size_t)h & self->mask;; i = (i + 1) & self->mask) {
        const Name *name = self->slots[i];
        if (name == NULL)
            return NULL;
        if (name->hash == h && name->len == len && memcmp(name->key, key, (size_t)len) == 0)
            return name;
    }
}

/* ---------------------------------------------------------------- reading the wire */

typedef struct {
    const uint8_t *p, *end;
} Reader;

typedef struct {
    uint32_t number;
    int wire;
    uint64_t value;
    const uint8_t *data;
    Py_ssize_t len;
} Field;

/* A varint of at most `max` bytes, truncated to 64 bits as upb does; 0 when truncated or longer. */
static int read_varint(Reader *r, int max, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < max; i++) {
        if (r->p >= r->end)
            return 0;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (b < 0x80) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

static uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* The next field: 1; the end: 0; -1 when the bytes are malformed or unusual (groups, long tags):
 * C does not claim to read those as upb would. */
static int next_field(Reader *r, Field *f)
{
    uint64_t tag, size;
    if (r->p >= r->end)
        return 0;
    if (!read_varint(r, 5, &tag) || tag > UINT32_MAX || (tag >> 3) == 0)
        return -1;
    f->number = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    switch (f->wire) {
    case 0:
        return read_varint(r, 10, &f->value) ? 1 : -1;
    case 1:
        if (r->end - r->p < 8)
            return -1;
        f->value = load64(r->p);
        r->p += 8;
        return 1;
    case 2:
        if (!read_varint(r, 5, &size) || size > (uint64_t)(r->end - r->p))
            return -1;
        f->data = r->p;
        f->len = (Py_ssize_t)size;
        r->p += size;
        return 1;
    case 5:
        if (r->end - r->p < 4)
            return -1;
        r->p += 4;
        return 1;
    default:
        return -1;
    }
}

static void reader_of(Reader *r, const uint8_t *data, Py_ssize_t len)
{
    r->p = data;
    r->end = data + len;
}

/* Python's own varint reading of attribute bytes (wire._varint): up to 10 bytes, -1 when longer. */
static int py_varint(const uint8_t *raw, Py_ssize_t n, Py_ssize_t at, uint64_t *value, Py_ssize_t *after)
{
    uint64_t v = 0;
    for (Py_ssize_t i = at; i < n && i < at + 10; i++) {
        uint8_t b = raw[i];
        if (i - at == 9 && b > 1)
            return -1; /* beyond 64 bits: Python's arithmetic differs from C's, let Python read it */
        v |= (uint64_t)(b & 0x7F) << (7 * (i - at));
        if (b < 0x80) {
            *value = v;
            *after = i + 1;
            return 0;
        }
    }
    return -1;
}

static int utf8_valid(const uint8_t *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
                return 0;
            i += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0))
                return 0; /* overlong, surrogate */
            i += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return 0;
            if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
                return 0; /* overlong, beyond U+10FFFF */
            i += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static int is_ascii(const uint8_t *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- the structural check */

/* Each returns 1 when upb would parse the message as C reads it, 0 otherwise. */
static int check_utf8_fields(const uint8_t *data, Py_ssize_t len, uint32_t text)
{
    Reader r;
    Field f;
    int got;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1)
        if (f.number == text && f.wire == 2 && !utf8_valid(f.data, f.len))
            return 0;
    return got == 0;
}

static int check_any(const uint8_t *data, Py_ssize_t len)
{
    Reader r;
    Field f;
    int got;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1) {
    }
    return got == 0;
}

static int check_span(const uint8_t *data, Py_ssize_t len)
{
    Reader r;
    Field f;
    int got;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1) {
        if (f.wire != 2)
            continue;
        if (f.number == 5 && !utf8_valid(f.data, f.len))
            return 0;
        if ((f.number == 11 || f.number == 15) && !check_utf8_fields(f.data, f.len, 2))
            return 0; /* Event.name, Status.message */
    }
    return got == 0;
}

static int check_scope_spans(const uint8_t *data, Py_ssize_t len)
{
    Reader r;
    Field f;
    int got;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1)
        if (f.number == 2 && f.wire == 2 && !check_span(f.data, f.len))
            return 0;
    return got == 0;
}

static int check_resource_spans(const uint8_t *data, Py_ssize_t len)
{
    Reader r;
    Field f;
    int got;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1) {
        if (f.wire != 2)
            continue;
        if (f.number == 1 && !check_any(f.data, f.len))
            return 0;
        if (f.number == 2 && !check_scope_spans(f.data, f.len))
            return 0;
    }
    return got == 0;
}

static int check_request(const uint8_t *data, Py_ssize_t len)
{
    Reader r;
    Field f;
    int got;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1)
        if (f.number == 1 && f.wire == 2 && !check_resource_spans(f.data, f.len))
            return 0;
    return got == 0;
}

/* ---------------------------------------------------------------- buffers */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int buf_grow(Buf *b, Py_ssize_t extra)
{
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return FAIL;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return FAIL;
    }
    b->data = data;
    b->cap = cap;
    return OK;
}

static inline int buf_reserve(Buf *b, Py_ssize_t extra)
{
    return b->len + extra <= b->cap ? OK : buf_grow(b, extra);
}

/* An int64 in decimal; returns its length (at most 20). */
static Py_ssize_t decimal(int64_t v, char *out)
{
    char digits[20];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    Py_ssize_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = digits[--n];
    out[len] = '\0';
    return len;
}

static int buf_put(Buf *b, const void *s, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0)
        return FAIL;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return OK;
}

static void put_varint_unchecked(Buf *b, uint64_t v)
{
    while (v >= 0x80) {
        b->data[b->len++] = (char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (char)v;
}

static int put_varint(Buf *b, uint64_t v)
{
    if (buf_reserve(b, 10) < 0)
        return FAIL;
    put_varint_unchecked(b, v);
    return OK;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether any of eight bytes is a control character, a quote or a backslash (exact, branch-free). */
static int needs_escape(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"'), backslash = w ^ (ONES * '\\');
    uint64_t found = ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash) | ((w - ONES * 0x20) & ~w);
    return (found & HIGHS) != 0;
}

/* A JSON string: quotes, backslashes and control characters escaped; the rest, valid UTF-8, as is. */
static int put_json_string(Buf *b, const uint8_t *s, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n > (PY_SSIZE_T_MAX - 2) / 6 || buf_reserve(b, n * 6 + 2) < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return FAIL;
    }
    char *o = b->data + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + 8 <= n) { /* eight bytes at a time while none needs escaping */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!needs_escape(w)) {
                memcpy(o, s + i, 8);
                o += 8;
                i += 7;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->len = o - b->data;
    return OK;
}

/* ---------------------------------------------------------------- values */

enum { V_NONE, V_STR, V_NUMSTR, V_INT, V_DBL, V_BOOL, V_OBJ };

typedef struct {
    int kind;
    const char *s; /* V_STR */
    Py_ssize_t n;  /* V_STR, V_NUMSTR */
    int64_t i;     /* V_INT, V_BOOL */
    double d;      /* V_DBL */
    PyObject *obj; /* V_OBJ: owned by whoever holds the value */
    char num[40];  /* V_NUMSTR: text of a number */
} Value;

static const char *value_text(const Value *v) { return v->kind == V_NUMSTR ? v->num : v->s; }

static PyObject *value_to_python(const Value *v)
{
    switch (v->kind) {
    case V_STR: return PyUnicode_DecodeUTF8(v->s, v->n, "strict");
    case V_INT: return PyLong_FromLongLong(v->i);
    case V_DBL: return PyFloat_FromDouble(v->d);
    case V_BOOL: return PyBool_FromLong((long)v->i);
    default: Py_RETURN_NONE;
    }
}

typedef struct {
    uint64_t bits;
    Py_ssize_t n;
    char text[40];
} Repr;
#define REPRS 16 /* doubles whose repr one request remembers (a temperature repeats in every span) */

static int double_repr_uncached(double d, char *out, Py_ssize_t *n)
{
    char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return FAIL;
    size_t len = strlen(text);
    if (len >= 40) {
        PyMem_Free(text);
        return DEFER;
    }
    memcpy(out, text, len + 1);
    PyMem_Free(text);
    *n = (Py_ssize_t)len;
    return OK;
}

/* repr(d), as str(float) writes it, remembered by its bits. */
static int double_repr(Repr *cache, double d, char *out, Py_ssize_t *n)
{
    uint64_t bits;
    memcpy(&bits, &d, 8);
    Repr *slot = &cache[(bits * 0x9E3779B97F4A7C15ULL) >> 60];
    if (slot->n > 0 && slot->bits == bits) {
        memcpy(out, slot->text, (size_t)slot->n + 1);
        *n = slot->n;
        return OK;
    }
    int rc = double_repr_uncached(d, out, n);
    if (rc == OK) {
        slot->bits = bits;
        slot->n = *n;
        memcpy(slot->text, out, (size_t)*n + 1);
    }
    return rc;
}

/* All ASCII digits, 1 to 18 of them: their number (no overflow possible); else -1. */
static int64_t ascii_digits(const char *s, Py_ssize_t n)
{
    if (n < 1 || n > 18)
        return -1;
    int64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

#define TWO_63 9223372036854775808.0

/* A converter of a common kind, natively: OK with `out` (V_NONE for None), DEFER when the value
 * needs the Python converter, FAIL on a Python error. Mirrors conventions/convention.py. */
static int convert_native(const Canonicaliser *self, Repr *reprs, const Rule *rule, const Value *in, Value *out)
{
    out->kind = V_NONE;
    switch (rule->kind) {
    case K_TEXT:
        if (in->kind == V_STR) {
            if (in->n > 0)
                *out = *in;
            return OK;
        }
        out->kind = V_NUMSTR;
        if (in->kind == V_INT) {
            out->n = decimal(in->i, out->num);
            return OK;
        }
        if (in->kind == V_BOOL) {
            out->n = in->i ? 4 : 5;
            memcpy(out->num, in->i ? "True" : "False", (size_t)out->n + 1);
            return OK;
        }
        return double_repr(reprs, in->d, out->num, &out->n);
    case K_COUNT:
    case K_VERSION: {
        int64_t number = -1;
        if (in->kind == V_INT) {
            number = in->i;
        } else if (in->kind == V_DBL) {
            if (in->d >= TWO_63)
                return DEFER;
            if (in->d >= 0 && in->d == floor(in->d))
                number = (int64_t)in->d;
        } else if (in->kind == V_STR) {
            const char *s = in->s;
            Py_ssize_t n = in->n;
            if (rule->kind == K_VERSION)
                while (n > 0 && (*s == 'v' || *s == 'V'))
                    s++, n--;
            number = ascii_digits(s, n);
            if (number < 0)
                return DEFER; /* whitespace, signs, other digits: Python's strip/isdigit decide */
        }
        if (number < 0 || (rule->kind == K_VERSION && number == 0))
            return OK;
        out->kind = V_INT;
        out->i = number;
        return OK;
    }
    case K_AMOUNT:
    case K_SECONDS_TO_MS: {
        double number;
        if (in->kind == V_INT && in->i >= 0)
            number = (double)in->i;
        else if (in->kind == V_DBL && in->d >= 0)
            number = in->d;
        else if (in->kind == V_STR)
            return DEFER; /* float(str) has its own grammar */
        else
            return OK;
        out->kind = V_DBL;
        out->d = rule->kind == K_SECONDS_TO_MS ? number * 1000.0 : number;
        return OK;
    }
    case K_TIMESTAMP_NS:
        if (in->kind == V_INT) {
            out->kind = V_INT;
            out->i = in->i;
        } else if (in->kind == V_STR && in->n > 0) {
            return DEFER; /* ISO 8601: datetime.fromisoformat decides */
        }
        return OK;
    case K_LOWERED: {
        if (in->kind != V_STR)
            return OK;
        if (!is_ascii((const uint8_t *)in->s, in->n))
            return DEFER; /* str.lower() beyond ASCII */
        const Lowered *table = &self->lowered[rule->lowered];
        for (Py_ssize_t p = 0; p < table->n; p++) {
            const Pair *pair = &table->pairs[p];
            if (pair->klen != in->n)
                continue;
            Py_ssize_t i = 0;
            for (; i < in->n; i++) {
                char c = in->s[i];
                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                if (c != pair->key[i])
                    break;
            }
            if (i == in->n) {
                out->kind = V_STR;
                out->s = pair->value;
                out->n = pair->vlen;
                return OK;
            }
        }
        return OK;
    }
    case K_IS_ERROR_LEVEL:
        if (in->kind != V_STR)
            return OK;
        if (!is_ascii((const uint8_t *)in->s, in->n))
            return DEFER;
        if (in->n == 5) {
            int same = 1;
            for (int i = 0; i < 5; i++) {
                char c = in->s[i];
                if (c >= 'a' && c <= 'z')
                    c = (char)(c - 'a' + 'A');
                same &= c == "ERROR"[i];
            }
            if (same) {
                out->kind = V_BOOL;
                out->i = 1;
            }
        }
        return OK;
    default:
        return DEFER;
    }
}

/* ---------------------------------------------------------------- one request */

/* A span attribute's JSON member: written in `json`, or, for a text that may travel as the input or
 * output (and then leave attributes_json), its name and text, escaped only if it stays. */
typedef struct {
    Py_ssize_t off, len;
    const uint8_t *key, *text;
    Py_ssize_t klen, tlen;
    int deferred;
    int removed;
} Fragment;


typedef struct {
    int set;
    int rank;
    Py_ssize_t fragment; /* its attribute's JSON member, when it is carried (input/output) */
    Value v;
} Found;

typedef struct {
    char *model;
    Py_ssize_t len;
    PyObject *candidates;
} Prices;

typedef struct {
    const uint8_t *data;
    Py_ssize_t len;
} Slice;

typedef struct {
    Canonicaliser *self;
    PyObject *context;
    PyObject *attributes; /* context.attributes: KeyValue bytes → Attribute (normalise.Attributes) */
    PyObject *records;
    PyObject *shared;     /* the current resource's shared CanonicalSpan bytes */
    int resource_has_app_version;
    Py_ssize_t index;
    Buf json, attributes_json, out;
    Fragment *fragments;
    Py_ssize_t nfragments, capfragments;
    Slice *raws;
    Py_ssize_t nraws, capraws;
    Found found[N_FIELDS];
    PyObject *numbered; /* this span's numbered message parts, or NULL */
    PyObject *keep;     /* Python objects this span's values point into */
    Prices prices[MAX_MODELS];
    int nprices;
    Repr reprs[REPRS];
} Request;

static void found_clear(Request *q)
{
    for (int f = 0; f < N_FIELDS; f++) {
        if (q->found[f].set && q->found[f].v.kind == V_OBJ)
            Py_DECREF(q->found[f].v.obj);
        q->found[f].set = 0;
    }
    Py_CLEAR(q->numbered);
    Py_CLEAR(q->keep);
    q->nfragments = 0;
    q->json.len = 0;
}

static void request_free(Request *q)
{
    found_clear(q);
    PyMem_Free(q->json.data);
    PyMem_Free(q->attributes_json.data);
    PyMem_Free(q->out.data);
    PyMem_Free(q->fragments);
    PyMem_Free(q->raws);
    for (int i = 0; i < q->nprices; i++) {
        PyMem_Free(q->prices[i].model);
        Py_DECREF(q->prices[i].candidates);
    }
    Py_XDECREF(q->attributes);
    Py_XDECREF(q->records);
    Py_XDECREF(q->shared);
}

static int raise_invalid(Request *q, PyObject *message)
{
    if (message == NULL)
        return FAIL;
    PyObject *error = PyObject_CallOneArg(q->self->invalid, message);
    Py_DECREF(message);
    if (error != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    return FAIL;
}

/* A contribution to a canonical field: kept when its precedence is at least the held one's
 * (equal: the same name sent twice, the last wins). Takes over a V_OBJ reference. */
static void contribute(Request *q, int field, int rank, const Value *v, Py_ssize_t fragment)
{
    Found *held = &q->found[field];
    if (held->set && rank > held->rank) {
        if (v->kind == V_OBJ)
            Py_DECREF(v->obj);
        return;
    }
    if (held->set && held->v.kind == V_OBJ)
        Py_DECREF(held->v.obj);
    held->set = 1;
    held->rank = rank;
    held->fragment = fragment;
    held->v = *v;
}

static Fragment *new_fragment(Request *q)
{
    if (q->nfragments == q->capfragments) {
        Py_ssize_t cap = q->capfragments ? q->capfragments * 2 : 64;
        Fragment *grown = PyMem_Realloc(q->fragments, (size_t)cap * sizeof(Fragment));
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        q->fragments = grown;
        q->capfragments = cap;
    }
    Fragment *fragment = &q->fragments[q->nfragments++];
    memset(fragment, 0, sizeof *fragment);
    return fragment;
}

/* The member written in `json` from `off` on. */
static int add_fragment(Request *q, Py_ssize_t off)
{
    Fragment *fragment = new_fragment(q);
    if (fragment == NULL)
        return FAIL;
    fragment->off = off;
    fragment->len = q->json.len - off;
    return OK;
}

static int add_deferred(Request *q, const Slice *key, const Value *text)
{
    Fragment *fragment = new_fragment(q);
    if (fragment == NULL)
        return FAIL;
    fragment->deferred = 1;
    fragment->key = key->data;
    fragment->klen = key->len;
    fragment->text = (const uint8_t *)text->s;
    fragment->tlen = text->n;
    return OK;
}

static int field_of(PyObject *name)
{
    for (int f = 0; f < N_FIELDS; f++)
        if (PyUnicode_CompareWithASCIIString(name, FIELD_NAMES[f]) == 0)
            return f;
    return -1;
}

/* An attribute C does not map itself: the Python reference's Attribute for it (wire + normalise),
 * merged like a native one. */
static int attribute_in_python(Request *q, const uint8_t *raw, Py_ssize_t n)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, n);
    if (key == NULL)
        return FAIL;
    PyObject *attribute = PyObject_GetItem(q->attributes, key);
    Py_DECREF(key);
    if (attribute == NULL)
        return FAIL;
    int rc = DEFER;
    Py_ssize_t size;
    const char *text;
    if (!PyTuple_CheckExact(attribute) || PyTuple_GET_SIZE(attribute) != 5)
        goto done;
    PyObject *contributions = PyTuple_GET_ITEM(attribute, 2);
    PyObject *fragment = PyTuple_GET_ITEM(attribute, 3);
    PyObject *numbered = PyTuple_GET_ITEM(attribute, 4);
    if (!PyTuple_CheckExact(contributions) || !PyUnicode_CheckExact(fragment))
        goto done;
    text = PyUnicode_AsUTF8AndSize(fragment, &size);
    if (text == NULL) {
        rc = FAIL;
        goto done;
    }
    Py_ssize_t off = q->json.len;
    if (buf_put(&q->json, text, size) < 0 || add_fragment(q, off) < 0) {
        rc = FAIL;
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(contributions); i++) {
        PyObject *c = PyTuple_GET_ITEM(contributions, i); /* (rank, field, value, key, carried) */
        if (!PyTuple_CheckExact(c) || PyTuple_GET_SIZE(c) != 5 || !PyLong_CheckExact(PyTuple_GET_ITEM(c, 0)))
            goto done;
        int field = field_of(PyTuple_GET_ITEM(c, 1));
        long rank = PyLong_AsLong(PyTuple_GET_ITEM(c, 0));
        PyObject *carried = PyTuple_GET_ITEM(c, 4);
        if (field < 0 || rank == -1 || rank > INT32_MAX || !PyUnicode_Check(carried)) {
            PyErr_Clear();
            goto done;
        }
        Value v = {.kind = V_OBJ, .obj = Py_NewRef(PyTuple_GET_ITEM(c, 2))};
        contribute(q, field, (int)rank, &v, PyUnicode_GET_LENGTH(carried) ? q->nfragments - 1 : -1);
    }
    if (numbered != Py_None) {
        if (q->numbered == NULL && (q->numbered = PyList_New(0)) == NULL) {
            rc = FAIL;
            goto done;
        }
        if (PyList_Append(q->numbered, numbered) < 0) {
            rc = FAIL;
            goto done;
        }
    }
    rc = OK;
done:
    Py_DECREF(attribute);
    return rc;
}

/* A KeyValue written the usual way (key, then a non-empty value, once each), as wire.split_key_value
 * reads it: 1 with the name and the AnyValue's place, else 0. */
static int split_key_value(const uint8_t *raw, Py_ssize_t n, Slice *key, Py_ssize_t *value_at)
{
    uint64_t size, value_size;
    Py_ssize_t start, after, value_start;
    if (n < 2 || raw[0] != 0x0A || py_varint(raw, n, 1, &size, &start) < 0 || size > (uint64_t)n)
        return 0;
    after = start + (Py_ssize_t)size;
    if (after + 1 >= n || raw[after] != 0x12 || py_varint(raw, n, after + 1, &value_size, &value_start) < 0)
        return 0;
    if (value_size == 0 || value_size != (uint64_t)(n - value_start))
        return 0;
    key->data = raw + start;
    key->len = (Py_ssize_t)size;
    *value_at = value_start;
    return 1;
}

/* The AnyValue filling raw[at:] when it is one scalar field, as wire.value_at reads it: 1, else 0. */
static int scalar_value(const uint8_t *raw, Py_ssize_t n, Py_ssize_t at, Value *v)
{
    uint64_t number;
    Py_ssize_t start;
    switch (raw[at]) {
    case 0x0A:
        if (py_varint(raw, n, at + 1, &number, &start) < 0 || number != (uint64_t)(n - start))
            return 0;
        if (!utf8_valid(raw + start, n - start))
            return 0;
        v->kind = V_STR;
        v->s = (const char *)raw + start;
        v->n = n - start;
        return 1;
    case 0x18:
        if (py_varint(raw, n, at + 1, &number, &start) < 0 || start != n)
            return 0;
        v->kind = V_INT;
        v->i = (int64_t)number;
        return 1;
    case 0x21:
        if (n != at + 9)
            return 0;
        {
            uint64_t bits = load64(raw + at + 1);
            memcpy(&v->d, &bits, 8);
        }
        v->kind = V_DBL;
        return 1;
    case 0x10:
        if (n != at + 2 || raw[at + 1] >= 0x80)
            return 0;
        v->kind = V_BOOL;
        v->i = raw[at + 1] != 0;
        return 1;
    default:
        return 0;
    }
}

static int put_json_value(Request *q, const Value *v)
{
    Buf *b = &q->json;
    char number[40];
    Py_ssize_t n;
    switch (v->kind) {
    case V_STR:
        return put_json_string(b, (const uint8_t *)v->s, v->n);
    case V_INT:
        n = decimal(v->i, number);
        return buf_put(b, number, n);
    case V_BOOL:
        return buf_put(b, v->i ? "true" : "false", v->i ? 4 : 5);
    default:
        if (!isfinite(v->d))
            return buf_put(b, "null", 4);
        {
            int rc = double_repr(q->reprs, v->d, number, &n);
            return rc != OK ? rc : buf_put(b, number, n);
        }
    }
}

static int starts_numbered(const Canonicaliser *self, const Slice *key)
{
    for (Py_ssize_t i = 0; i < self->nprefixes; i++)
        if (key->len >= self->prefix_lens[i] &&
            memcmp(key->data, self->prefixes[i], (size_t)self->prefix_lens[i]) == 0)
            return 1;
    return 0;
}

static int attribute(Request *q, const uint8_t *raw, Py_ssize_t n)
{
    Canonicaliser *self = q->self;
    Slice key;
    Py_ssize_t at;
    Value value;
    if (!split_key_value(raw, n, &key, &at) || !scalar_value(raw, n, at, &value) ||
        !utf8_valid(key.data, key.len))
        return attribute_in_python(q, raw, n);
    const Name *name = find_name(self, (const char *)key.data, key.len);
    if ((name != NULL && name->slow) || (name == NULL && starts_numbered(self, &key)))
        return attribute_in_python(q, raw, n);
    int rc;
    if (name != NULL && name->carried && value.kind == V_STR) {
        if (add_deferred(q, &key, &value) < 0)
            return FAIL;
    } else {
        Py_ssize_t off = q->json.len;
        if (put_json_string(&q->json, key.data, key.len) < 0 || buf_put(&q->json, ":", 1) < 0)
            return FAIL;
        if ((rc = put_json_value(q, &value)) != OK)
            return rc;
        if (add_fragment(q, off) < 0)
            return FAIL;
    }
    if (name == NULL)
        return OK;
    Py_ssize_t carried = name->carried && value.kind == V_STR ? q->nfragments - 1 : -1;
    for (int r = 0; r < name->nrules; r++) {
        const Rule *rule = &name->rules[r];
        Value out;
        rc = convert_native(self, q->reprs, rule, &value, &out);
        if (rc == FAIL)
            return FAIL;
        if (rc == DEFER) {
            PyObject *argument = value_to_python(&value);
            if (argument == NULL)
                return FAIL;
            PyObject *converted = PyObject_CallOneArg(rule->convert, argument);
            Py_DECREF(argument);
            if (converted == NULL)
                return FAIL;
            if (converted == Py_None) {
                Py_DECREF(converted);
                continue;
            }
            out.kind = V_OBJ;
            out.obj = converted;
        }
        if (out.kind != V_NONE)
            contribute(q, rule->field, rule->rank, &out, carried);
    }
    return OK;
}

/* ---------------------------------------------------------------- a span's canonical fields */

typedef struct {
    int set;
    const char *s;
    Py_ssize_t n;
    int64_t i;
    double d;
    int beyond; /* an integer outside int64 (only allowed where it cannot matter) */
} Typed;

/* The held value of a field as its type; DEFER when it is not one C encodes as Python would. */
static int typed_of(Request *q, int field, Typed *t)
{
    Found *held = &q->found[field];
    Value *v = &held->v;
    memset(t, 0, sizeof *t);
    if (!held->set)
        return OK;
    t->set = 1;
    switch (FIELD_CLASS[field]) {
    case C_STR:
        if (v->kind == V_STR || v->kind == V_NUMSTR) {
            t->s = value_text(v);
            t->n = v->n;
            return OK;
        }
        if (v->kind == V_OBJ && PyUnicode_CheckExact(v->obj)) {
            t->s = PyUnicode_AsUTF8AndSize(v->obj, &t->n);
            if (t->s == NULL) {
                PyErr_Clear();
                return DEFER;
            }
            return OK;
        }
        return DEFER;
    case C_INT:
        if (v->kind == V_INT) {
            t->i = v->i;
        } else if (v->kind == V_OBJ && PyLong_CheckExact(v->obj)) {
            int overflow;
            long long i = PyLong_AsLongLongAndOverflow(v->obj, &overflow);
            if (overflow && field == F_COMPLETION_START_NS)
                t->beyond = 1;
            else if (overflow)
                return DEFER;
            else if (i == -1 && PyErr_Occurred())
                return FAIL;
            t->i = i;
        } else {
            return DEFER;
        }
        if (field == F_PROMPT_VERSION && (t->i > INT32_MAX || t->i < INT32_MIN))
            return DEFER;
        return OK;
    case C_DBL:
        if (v->kind == V_DBL) {
            t->d = v->d;
            return OK;
        }
        if (v->kind == V_OBJ && PyFloat_CheckExact(v->obj)) {
            t->d = PyFloat_AS_DOUBLE(v->obj);
            return OK;
        }
        return DEFER;
    default: /* C_TRUTH */
        if (v->kind == V_BOOL) {
            t->i = v->i;
            return OK;
        }
        if (v->kind == V_OBJ) {
            int truth = PyObject_IsTrue(v->obj);
            if (truth < 0)
                return FAIL;
            t->i = truth;
            return OK;
        }
        return DEFER;
    }
}

/* Numbered message parts (gen_ai.prompt.0.content…) become the fields they fill, when not found. */
static int merge_numbered(Request *q)
{
    if (q->numbered == NULL)
        return OK;
    PyObject *messages = PyObject_CallMethodOneArg(q->context, q->self->s_messages, q->numbered);
    if (messages == NULL)
        return FAIL;
    int rc = DEFER;
    if (!PyList_CheckExact(messages))
        goto done;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(messages); i++) {
        PyObject *item = PyList_GET_ITEM(messages, i); /* (field, rank, JSON text) */
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3)
            goto done;
        int field = field_of(PyTuple_GET_ITEM(item, 0));
        long rank = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        if (field < 0 || rank == -1 || rank > INT32_MAX) {
            PyErr_Clear();
            goto done;
        }
        if (!q->found[field].set) {
            Value v = {.kind = V_OBJ, .obj = Py_NewRef(PyTuple_GET_ITEM(item, 2))};
            contribute(q, field, (int)rank, &v, -1);
        }
    }
    rc = OK;
done:
    Py_DECREF(messages);
    return rc;
}

static int same_fragment(const Request *q, const Fragment *a, const Fragment *b);

/* The carried input/output travel once, in their own fields: their JSON members leave attributes_json
 * (the first member equal to the winner's, as list.remove does). */
static void remove_carried(Request *q, int field)
{
    Found *held = &q->found[field];
    if (!held->set || held->fragment < 0)
        return;
    const Fragment *winner = &q->fragments[held->fragment];
    for (Py_ssize_t i = 0; i < q->nfragments; i++) {
        Fragment *f = &q->fragments[i];
        if (!f->removed && same_fragment(q, f, winner)) {
            f->removed = 1;
            return;
        }
    }
}

static int same_fragment(const Request *q, const Fragment *a, const Fragment *b)
{
    if (a == b)
        return 1;
    if (a->deferred != b->deferred)
        return 0;
    if (a->deferred)
        return a->klen == b->klen && a->tlen == b->tlen && memcmp(a->key, b->key, (size_t)a->klen) == 0 &&
               memcmp(a->text, b->text, (size_t)a->tlen) == 0;
    return a->len == b->len && memcmp(q->json.data + a->off, q->json.data + b->off, (size_t)a->len) == 0;
}

static int build_attributes_json(Request *q)
{
    Buf *b = &q->attributes_json;
    b->len = 0;
    if (buf_reserve(b, q->json.len + q->nfragments + 2) < 0)
        return FAIL;
    b->data[b->len++] = '{';
    int first = 1;
    for (Py_ssize_t i = 0; i < q->nfragments; i++) {
        const Fragment *f = &q->fragments[i];
        if (f->removed)
            continue;
        if (!first && buf_put(b, ",", 1) < 0)
            return FAIL;
        first = 0;
        if (!f->deferred) {
            if (buf_put(b, q->json.data + f->off, f->len) < 0)
                return FAIL;
        } else if (put_json_string(b, f->key, f->klen) < 0 || buf_put(b, ":", 1) < 0 ||
                   put_json_string(b, f->text, f->tlen) < 0) {
            return FAIL;
        }
    }
    return buf_put(b, "}", 1);
}

/* The exception event's message, as normalise._exception_message gives it. */
static int exception_message(Request *q, const Slice *event, Typed *out)
{
    PyObject *raws = PyList_New(0);
    if (raws == NULL)
        return FAIL;
    Reader r;
    Field f;
    int got;
    reader_of(&r, event->data, event->len);
    while ((got = next_field(&r, &f)) == 1) {
        if (f.number == 3 && f.wire == 2) {
            PyObject *raw = PyBytes_FromStringAndSize((const char *)f.data, f.len);
            if (raw == NULL || PyList_Append(raws, raw) < 0) {
                Py_XDECREF(raw);
                Py_DECREF(raws);
                return FAIL;
            }
            Py_DECREF(raw);
        }
    }
    if (got < 0) {
        Py_DECREF(raws);
        return DEFER;
    }
    PyObject *message = PyObject_CallMethodOneArg(q->context, q->self->s_exception, raws);
    Py_DECREF(raws);
    if (message == NULL)
        return FAIL;
    if (!PyUnicode_CheckExact(message)) {
        Py_DECREF(message);
        return DEFER;
    }
    out->s = PyUnicode_AsUTF8AndSize(message, &out->n);
    if (out->s == NULL) {
        PyErr_Clear();
        Py_DECREF(message);
        return DEFER;
    }
    out->set = 1;
    q->keep = message; /* keeps out->s alive until the span is encoded */
    return OK;
}

/* The model's prices, newest first, the project's before the built-in ones: (valid_from_ns, input,
 * output, cached input) per million tokens; asked of Python once per model per request. */
static int prices_of(Request *q, const Typed *model, PyObject **candidates)
{
    for (int i = 0; i < q->nprices; i++)
        if (q->prices[i].len == model->n && memcmp(q->prices[i].model, model->s, (size_t)model->n) == 0) {
            *candidates = Py_NewRef(q->prices[i].candidates);
            return OK;
        }
    PyObject *name = PyUnicode_DecodeUTF8(model->s, model->n, "strict");
    if (name == NULL)
        return FAIL;
    PyObject *found = PyObject_CallMethodOneArg(q->context, q->self->s_price, name);
    Py_DECREF(name);
    if (found == NULL)
        return FAIL;
    if (!PyTuple_CheckExact(found)) {
        Py_DECREF(found);
        return DEFER;
    }
    if (q->nprices < MAX_MODELS) {
        char *copy = PyMem_Malloc((size_t)model->n + 1);
        if (copy == NULL) {
            Py_DECREF(found);
            PyErr_NoMemory();
            return FAIL;
        }
        memcpy(copy, model->s, (size_t)model->n);
        q->prices[q->nprices].model = copy;
        q->prices[q->nprices].len = model->n;
        q->prices[q->nprices].candidates = Py_NewRef(found);
        q->nprices++;
    }
    *candidates = found;
    return OK;
}

/* pricing.ModelPrice.costs, in the same order of operations: (total, input, output) USD into out[3];
 * volatile keeps each product rounded to a double (no fused multiply-add) as Python's are. */
static void costs_of(int64_t input, int64_t output, int64_t cached, double in_price, double out_price,
                     double cached_price, double out[3])
{
    if (cached > input)
        cached = input;
    volatile double uncached_cost = (double)(input - cached) * in_price;
    volatile double cached_cost = (double)cached * cached_price;
    volatile double output_cost = (double)output * out_price;
    volatile double inputs = uncached_cost + cached_cost;
    volatile double sum = inputs + output_cost;
    out[0] = sum / 1000000.0;
    out[1] = inputs / 1000000.0;
    out[2] = output_cost / 1000000.0;
}

static int price(Request *q, Typed *t, int64_t start)
{
    if (!t[F_MODEL].set || t[F_MODEL].n == 0 || t[F_COST].set)
        return OK;
    if (!t[F_INPUT_TOKENS].set && !t[F_OUTPUT_TOKENS].set)
        return OK;
    PyObject *candidates;
    int rc = prices_of(q, &t[F_MODEL], &candidates);
    if (rc != OK)
        return rc;
    rc = OK;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(candidates); i++) {
        PyObject *c = PyTuple_GET_ITEM(candidates, i);
        if (!PyTuple_CheckExact(c) || PyTuple_GET_SIZE(c) != 4 || !PyLong_CheckExact(PyTuple_GET_ITEM(c, 0)) ||
            !PyFloat_CheckExact(PyTuple_GET_ITEM(c, 1)) || !PyFloat_CheckExact(PyTuple_GET_ITEM(c, 2)) ||
            !PyFloat_CheckExact(PyTuple_GET_ITEM(c, 3))) {
            rc = DEFER;
            break;
        }
        int overflow;
        long long valid_from = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(c, 0), &overflow);
        if (overflow || (valid_from == -1 && PyErr_Occurred())) {
            rc = overflow ? DEFER : FAIL;
            break;
        }
        if (valid_from > start)
            continue;
        double costs[3];
        costs_of(t[F_INPUT_TOKENS].set ? t[F_INPUT_TOKENS].i : 0, t[F_OUTPUT_TOKENS].set ? t[F_OUTPUT_TOKENS].i : 0,
                 t[F_CACHED_INPUT_TOKENS].set ? t[F_CACHED_INPUT_TOKENS].i : 0,
                 PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(c, 1)), PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(c, 2)),
                 PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(c, 3)), costs);
        t[F_COST].set = 1;
        t[F_COST].d = costs[0];
        for (int part = 0; part < 2; part++) /* a span's own split stands (price_spans' setdefault) */
            if (!t[F_INPUT_COST + part].set) {
                t[F_INPUT_COST + part].set = 1;
                t[F_INPUT_COST + part].d = costs[1 + part];
            }
        break;
    }
    Py_DECREF(candidates);
    return rc;
}

typedef struct {
    Slice trace_id, span_id, parent, name, status_message, exception_event;
    uint64_t start, end;
    int32_t status_code;
} Span;

static int encode(Request *q, const Span *span, const Typed *t, int status, const Typed *error)
{
    const Canonicaliser *self = q->self;
    Buf *b = &q->out;
    b->len = 0;
    for (int k = 0; k < N_SLOTS; k++) {
        int slot = self->order[k];
        const char *s = NULL;
        Py_ssize_t n = 0;
        int64_t i = 0;
        double d = 0;
        int set = 1;
        switch (slot) {
        case S_TRACE_ID: s = (const char *)span->trace_id.data, n = span->trace_id.len; break;
        case S_SPAN_ID: s = (const char *)span->span_id.data, n = span->span_id.len; break;
        case S_PARENT_SPAN_ID: s = (const char *)span->parent.data, n = span->parent.len; break;
        case S_NAME: s = (const char *)span->name.data, n = span->name.len; break;
        case S_START: i = (int64_t)span->start; break;
        case S_END: i = (int64_t)span->end; break;
        case S_STATUS: i = status; break;
        case S_ERROR_MESSAGE: set = error->set, s = error->s, n = error->n; break;
        case S_ATTRIBUTES_JSON: s = q->attributes_json.data, n = q->attributes_json.len; break;
        default: {
            const Typed *v = &t[SLOT_FIELD[slot]];
            set = v->set, s = v->s, n = v->n, i = v->i, d = v->d;
        }
        }
        if (!set)
            continue;
        int presence = self->presence[slot];
        uint32_t number = self->number[slot];
        if (buf_reserve(b, 24) < 0)
            return FAIL;
        switch (SLOT_WIRE[slot]) {
        case W_LEN:
            if (n == 0 && !presence)
                break;
            put_varint_unchecked(b, (uint64_t)number << 3 | 2);
            put_varint_unchecked(b, (uint64_t)n);
            if (buf_put(b, s, n) < 0)
                return FAIL;
            break;
        case W_INT64:
        case W_INT32: /* a negative int32 is sign-extended to ten bytes, as protobuf writes it */
            if (i == 0 && !presence)
                break;
            put_varint_unchecked(b, (uint64_t)number << 3);
            put_varint_unchecked(b, (uint64_t)i);
            break;
        default: {
            uint64_t bits;
            memcpy(&bits, &d, 8);
            if (bits == 0 && !presence)
                break;
            put_varint_unchecked(b, (uint64_t)number << 3 | 1);
            for (int byte = 0; byte < 8; byte++)
                b->data[b->len++] = (char)(bits >> (8 * byte));
        }
        }
    }
    Py_ssize_t shared = PyBytes_GET_SIZE(q->shared);
    PyObject *record = PyBytes_FromStringAndSize(NULL, shared + b->len);
    if (record == NULL)
        return FAIL;
    memcpy(PyBytes_AS_STRING(record), PyBytes_AS_STRING(q->shared), (size_t)shared);
    memcpy(PyBytes_AS_STRING(record) + shared, b->data, (size_t)b->len);
    int rc = PyList_Append(q->records, record);
    Py_DECREF(record);
    return rc < 0 ? FAIL : OK;
}

/* normalise.derive, the status, the resource's version and the price; then the span's bytes. */
static int complete(Request *q, const Span *span)
{
    Typed t[N_FIELDS];
    int rc;
    for (int f = 0; f < N_FIELDS; f++)
        if ((rc = typed_of(q, f, &t[f])) != OK)
            return rc;
    int64_t start = (int64_t)span->start, end = (int64_t)span->end;
    const Typed *completion = &t[F_COMPLETION_START_NS];
    if (!t[F_TTFT_MS].set && completion->set && !completion->beyond && start <= completion->i &&
        completion->i <= end) {
        t[F_TTFT_MS].set = 1;
        t[F_TTFT_MS].d = (double)(completion->i - start) / 1e6;
    }
    if (!t[F_COST].set && (t[F_INPUT_COST].set || t[F_OUTPUT_COST].set)) {
        t[F_COST].set = 1;
        t[F_COST].d = (t[F_INPUT_COST].set ? t[F_INPUT_COST].d : 0.0) + (t[F_OUTPUT_COST].set ? t[F_OUTPUT_COST].d : 0.0);
    }
    if (!t[F_TOTAL_TOKENS].set && (t[F_INPUT_TOKENS].set || t[F_OUTPUT_TOKENS].set)) {
        int64_t in = t[F_INPUT_TOKENS].set ? t[F_INPUT_TOKENS].i : 0;
        int64_t out = t[F_OUTPUT_TOKENS].set ? t[F_OUTPUT_TOKENS].i : 0;
        if ((out > 0 && in > INT64_MAX - out) || (out < 0 && in < INT64_MIN - out))
            return DEFER;
        t[F_TOTAL_TOKENS].set = 1;
        t[F_TOTAL_TOKENS].i = in + out;
    }
    if (!t[F_KIND].set) {
        t[F_KIND].set = 1;
        t[F_KIND].s = t[F_MODEL].set ? "llm" : "span";
        t[F_KIND].n = t[F_MODEL].set ? 3 : 4;
    }
    Typed error = {0};
    int status = SPAN_OK;
    if (span->status_code == STATUS_CODE_ERROR || (t[F_IS_ERROR].set && t[F_IS_ERROR].i)) {
        status = SPAN_ERROR;
        if (span->status_message.len > 0) {
            error.set = 1, error.s = (const char *)span->status_message.data, error.n = span->status_message.len;
        } else if (t[F_ERROR_MESSAGE].set && t[F_ERROR_MESSAGE].n > 0) {
            error = t[F_ERROR_MESSAGE];
        } else if (span->exception_event.data != NULL) {
            if ((rc = exception_message(q, &span->exception_event, &error)) != OK)
                return rc;
        }
    }
    if (q->resource_has_app_version)
        t[F_APP_VERSION].set = 0;
    if ((rc = price(q, t, start)) != OK)
        return rc;
    return encode(q, span, t, status, &error);
}

static int read_status(const Field *status, Span *span)
{
    Reader r;
    Field f;
    int got;
    reader_of(&r, status->data, status->len);
    while ((got = next_field(&r, &f)) == 1) {
        if (f.number == 2 && f.wire == 2)
            span->status_message = (Slice){f.data, f.len};
        else if (f.number == 3 && f.wire == 0)
            span->status_code = (int32_t)(uint32_t)f.value;
    }
    return got;
}

static int is_exception_event(const Field *event, int *yes)
{
    Reader r;
    Field f;
    int got;
    Slice name = {NULL, 0};
    reader_of(&r, event->data, event->len);
    while ((got = next_field(&r, &f)) == 1)
        if (f.number == 2 && f.wire == 2)
            name = (Slice){f.data, f.len};
    *yes = name.len == 9 && memcmp(name.data, "exception", 9) == 0;
    return got;
}

static int span_invalid(Request *q, const Span *span, const char *what)
{
    PyObject *name = PyUnicode_DecodeUTF8((const char *)span->name.data, span->name.len, "strict");
    if (name == NULL)
        return FAIL;
    PyObject *message = PyUnicode_FromFormat("span %zd (%R): %s", q->index, name, what);
    Py_DECREF(name);
    return raise_invalid(q, message);
}

static int all_zero(const Slice *s)
{
    for (Py_ssize_t i = 0; i < s->len; i++)
        if (s->data[i])
            return 0;
    return 1;
}

static int push_raw(Request *q, const Field *f)
{
    if (q->nraws == q->capraws) {
        Py_ssize_t cap = q->capraws ? q->capraws * 2 : 64;
        Slice *grown = PyMem_Realloc(q->raws, (size_t)cap * sizeof(Slice));
        if (grown == NULL) {
            PyErr_NoMemory();
            return FAIL;
        }
        q->raws = grown;
        q->capraws = cap;
    }
    q->raws[q->nraws++] = (Slice){f->data, f->len};
    return OK;
}

static int convert_span(Request *q, const uint8_t *data, Py_ssize_t len)
{
    Span span;
    Reader r;
    Field f;
    int got, rc;
    memset(&span, 0, sizeof span);
    q->nraws = 0;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1) {
        if (f.wire == 2) {
            switch (f.number) {
            case 1: span.trace_id = (Slice){f.data, f.len}; break;
            case 2: span.span_id = (Slice){f.data, f.len}; break;
            case 4: span.parent = (Slice){f.data, f.len}; break;
            case 5:
                if (!utf8_valid(f.data, f.len))
                    return DEFER;
                span.name = (Slice){f.data, f.len};
                break;
            case 9:
                if (push_raw(q, &f) < 0)
                    return FAIL;
                break;
            case 11:
                if (span.exception_event.data == NULL) {
                    int yes;
                    if (is_exception_event(&f, &yes) < 0)
                        return DEFER;
                    if (yes)
                        span.exception_event = (Slice){f.data, f.len};
                }
                break;
            case 15:
                if (read_status(&f, &span) < 0)
                    return DEFER;
                break;
            }
        } else if (f.wire == 1 && (f.number == 7 || f.number == 8)) {
            *(f.number == 7 ? &span.start : &span.end) = f.value;
        }
    }
    if (got < 0 || !utf8_valid(span.status_message.data, span.status_message.len))
        return DEFER;
    if (span.trace_id.len != 16 || all_zero(&span.trace_id))
        return span_invalid(q, &span, "trace_id must be 16 bytes, not all zero");
    if (span.span_id.len != 8 || all_zero(&span.span_id))
        return span_invalid(q, &span, "span_id must be 8 bytes, not all zero");
    if (span.parent.len != 0 && span.parent.len != 8)
        return span_invalid(q, &span, "parent_span_id must be 8 bytes or empty");
    if (span.end < span.start)
        return span_invalid(q, &span, "end_time_unix_nano is before start_time_unix_nano");
    if (span.start > INT64_MAX || span.end > INT64_MAX)
        return DEFER; /* CanonicalSpan's int64 cannot hold them: Python's own error */
    found_clear(q);
    for (Py_ssize_t i = 0; i < q->nraws; i++)
        if ((rc = attribute(q, q->raws[i].data, q->raws[i].len)) != OK)
            return rc;
    if ((rc = merge_numbered(q)) != OK)
        return rc;
    remove_carried(q, F_INPUT);
    remove_carried(q, F_OUTPUT);
    if (build_attributes_json(q) < 0)
        return FAIL;
    rc = complete(q, &span);
    found_clear(q);
    q->index++;
    return rc;
}

static int convert_resource_spans(Request *q, const uint8_t *data, Py_ssize_t len)
{
    Reader r, inner;
    Field f, g;
    int got, rc;
    PyObject *raws = PyList_New(0);
    if (raws == NULL)
        return FAIL;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1) {
        if (f.number != 1 || f.wire != 2)
            continue;
        reader_of(&inner, f.data, f.len);
        while ((got = next_field(&inner, &g)) == 1) {
            if (g.number != 1 || g.wire != 2)
                continue;
            PyObject *raw = PyBytes_FromStringAndSize((const char *)g.data, g.len);
            if (raw == NULL || PyList_Append(raws, raw) < 0) {
                Py_XDECREF(raw);
                Py_DECREF(raws);
                return FAIL;
            }
            Py_DECREF(raw);
        }
        if (got < 0)
            break;
    }
    if (got < 0) {
        Py_DECREF(raws);
        return DEFER;
    }
    PyObject *resource = PyObject_CallMethodOneArg(q->context, q->self->s_resource, raws);
    Py_DECREF(raws);
    if (resource == NULL)
        return FAIL;
    if (!PyTuple_CheckExact(resource) || PyTuple_GET_SIZE(resource) != 2 ||
        !PyBytes_CheckExact(PyTuple_GET_ITEM(resource, 0))) {
        Py_DECREF(resource);
        return DEFER;
    }
    Py_XSETREF(q->shared, Py_NewRef(PyTuple_GET_ITEM(resource, 0)));
    q->resource_has_app_version = PyObject_IsTrue(PyTuple_GET_ITEM(resource, 1));
    Py_DECREF(resource);
    if (q->resource_has_app_version < 0)
        return FAIL;
    reader_of(&r, data, len);
    while ((got = next_field(&r, &f)) == 1) {
        if (f.number != 2 || f.wire != 2)
            continue;
        reader_of(&inner, f.data, f.len);
        while ((got = next_field(&inner, &g)) == 1)
            if (g.number == 2 && g.wire == 2 && (rc = convert_span(q, g.data, g.len)) != OK)
                return rc;
        if (got < 0)
            return DEFER;
    }
    return got < 0 ? DEFER : OK;
}

/* ---------------------------------------------------------------- the Python type */

static PyObject *Canonicaliser_check(Canonicaliser *self, PyObject *arg)
{
    Py_buffer body;
    if (PyObject_GetBuffer(arg, &body, PyBUF_SIMPLE) < 0)
        return NULL;
    int ok = check_request(body.buf, body.len);
    PyBuffer_Release(&body);
    return PyBool_FromLong(ok);
}

static PyObject *Canonicaliser_spans(Canonicaliser *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "spans(body, context) takes two arguments");
        return NULL;
    }
    Py_buffer body;
    if (PyObject_GetBuffer(args[0], &body, PyBUF_SIMPLE) < 0)
        return NULL;
    Request q;
    memset(&q, 0, sizeof q);
    q.self = self;
    q.context = args[1];
    int rc = FAIL;
    q.attributes = PyObject_GetAttr(q.context, self->s_attributes);
    q.records = PyList_New(0);
    if (q.attributes != NULL && q.records != NULL) {
        Reader r;
        Field f;
        int got;
        rc = OK;
        reader_of(&r, body.buf, body.len);
        while (rc == OK && (got = next_field(&r, &f)) == 1)
            if (f.number == 1 && f.wire == 2)
                rc = convert_resource_spans(&q, f.data, f.len);
        if (rc == OK && got < 0)
            rc = DEFER;
    }
    PyObject *result = NULL;
    if (rc == OK)
        result = Py_NewRef(q.records);
    else if (rc == DEFER)
        result = Py_NewRef(Py_None);
    request_free(&q);
    PyBuffer_Release(&body);
    return result;
}

static void Canonicaliser_dealloc(Canonicaliser *self)
{
    for (Py_ssize_t i = 0; i < self->nnames; i++) {
        for (int r = 0; r < self->names[i].nrules; r++)
            Py_XDECREF(self->names[i].rules[r].convert);
        PyMem_Free(self->names[i].rules);
        PyMem_Free(self->names[i].key);
    }
    PyMem_Free(self->names);
    PyMem_Free(self->slots);
    for (Py_ssize_t i = 0; i < self->nlowered; i++) {
        for (Py_ssize_t p = 0; p < self->lowered[i].n; p++) {
            PyMem_Free(self->lowered[i].pairs[p].key);
            PyMem_Free(self->lowered[i].pairs[p].value);
        }
        PyMem_Free(self->lowered[i].pairs);
    }
    PyMem_Free(self->lowered);
    for (Py_ssize_t i = 0; i < self->nprefixes; i++)
        PyMem_Free(self->prefixes[i]);
    PyMem_Free(self->prefixes);
    PyMem_Free(self->prefix_lens);
    Py_XDECREF(self->invalid);
    Py_XDECREF(self->s_attributes);
    Py_XDECREF(self->s_resource);
    Py_XDECREF(self->s_messages);
    Py_XDECREF(self->s_exception);
    Py_XDECREF(self->s_price);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A copy of a str's UTF-8, NUL-terminated, in PyMem. */
static char *utf8_copy(PyObject *text, Py_ssize_t *len)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "expected str");
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8AndSize(text, len);
    if (s == NULL)
        return NULL;
    char *copy = PyMem_Malloc((size_t)*len + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, s, (size_t)*len + 1);
    return copy;
}

static int field_index(const char *name)
{
    for (int f = 0; f < N_FIELDS; f++)
        if (strcmp(FIELD_NAMES[f], name) == 0)
            return f;
    return -1;
}

/* names: ((key, slow, carried, ((rank, field, kind, convert, lowered index), …)), …) */
static int init_names(Canonicaliser *self, PyObject *names)
{
    if (!PyTuple_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "names must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    self->names = PyMem_Calloc((size_t)n + 1, sizeof(Name));
    size_t size = 16;
    while (size < (size_t)n * 2)
        size *= 2;
    self->slots = PyMem_Calloc(size, sizeof(Name *));
    if (self->names == NULL || self->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->mask = size - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key, *rules;
        int slow, carried;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(names, i), "UppO!", &key, &slow, &carried, &PyTuple_Type, &rules))
            return -1;
        Name *name = &self->names[i];
        self->nnames = i + 1;
        if ((name->key = utf8_copy(key, &name->len)) == NULL)
            return -1;
        name->hash = hash_of(name->key, name->len);
        name->slow = slow;
        name->carried = carried;
        Py_ssize_t nrules = PyTuple_GET_SIZE(rules);
        name->rules = PyMem_Calloc((size_t)nrules + 1, sizeof(Rule));
        if (name->rules == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t j = 0; j < nrules; j++) {
            Rule *rule = &name->rules[j];
            const char *field;
            PyObject *convert;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(rules, j), "isiOi", &rule->rank, &field, &rule->kind, &convert,
                                  &rule->lowered))
                return -1;
            rule->convert = Py_NewRef(convert);
            name->nrules = (int)j + 1;
            rule->field = field_index(field);
            if (rule->field < 0 || rule->kind < 0 || rule->kind >= N_KINDS ||
                (rule->kind == K_LOWERED && (rule->lowered < 0 || rule->lowered >= self->nlowered))) {
                PyErr_Format(PyExc_ValueError, "rule of %R: unknown field %s or kind %d", key, field, rule->kind);
                return -1;
            }
        }
        size_t at = (size_t)name->hash & self->mask;
        while (self->slots[at] != NULL) {
            if (self->slots[at]->len == name->len && memcmp(self->slots[at]->key, name->key, (size_t)name->len) == 0) {
                PyErr_Format(PyExc_ValueError, "name %R given twice", key);
                return -1;
            }
            at = (at + 1) & self->mask;
        }
        self->slots[at] = name;
    }
    return 0;
}

/* lowered: ({lowered key: canonical value}, …) */
static int init_lowered(Canonicaliser *self, PyObject *lowered)
{
    if (!PyTuple_Check(lowered)) {
        PyErr_SetString(PyExc_TypeError, "lowered must be a tuple of dicts");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(lowered);
    self->lowered = PyMem_Calloc((size_t)n + 1, sizeof(Lowered));
    if (self->lowered == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *table = PyTuple_GET_ITEM(lowered, i);
        if (!PyDict_Check(table)) {
            PyErr_SetString(PyExc_TypeError, "lowered must be a tuple of dicts");
            return -1;
        }
        Lowered *l = &self->lowered[i];
        self->nlowered = i + 1;
        l->pairs = PyMem_Calloc((size_t)PyDict_GET_SIZE(table) + 1, sizeof(Pair));
        if (l->pairs == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(table, &pos, &key, &value)) {
            Pair *pair = &l->pairs[l->n];
            if ((pair->key = utf8_copy(key, &pair->klen)) == NULL)
                return -1;
            l->n++;
            if ((pair->value = utf8_copy(value, &pair->vlen)) == NULL)
                return -1;
        }
    }
    return 0;
}

static int init_prefixes(Canonicaliser *self, PyObject *prefixes)
{
    if (!PyTuple_Check(prefixes)) {
        PyErr_SetString(PyExc_TypeError, "prefixes must be a tuple of str");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(prefixes);
    self->prefixes = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    self->prefix_lens = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    if (self->prefixes == NULL || self->prefix_lens == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((self->prefixes[i] = utf8_copy(PyTuple_GET_ITEM(prefixes, i), &self->prefix_lens[i])) == NULL)
            return -1;
        self->nprefixes = i + 1;
    }
    return 0;
}

/* fields: ((number, descriptor type, has presence), …) in OUTPUT_FIELDS order. */
static int init_fields(Canonicaliser *self, PyObject *fields)
{
    /* FieldDescriptor.TYPE_*: double 1, int64 3, int32 5, string 9, bytes 12, enum 14 */
    if (!PyTuple_Check(fields) || PyTuple_GET_SIZE(fields) != N_SLOTS) {
        PyErr_Format(PyExc_ValueError, "fields must be a tuple of %d (number, type, presence)", N_SLOTS);
        return -1;
    }
    for (int s = 0; s < N_SLOTS; s++) {
        unsigned int number;
        int type, presence;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, s), "Iip", &number, &type, &presence))
            return -1;
        int wire = SLOT_WIRE[s];
        int fits = (wire == W_LEN && (type == 9 || type == 12)) || (wire == W_INT64 && type == 3) ||
                   (wire == W_INT32 && (type == 5 || type == 14)) || (wire == W_DOUBLE && type == 1);
        if (!fits || number == 0 || number > 536870911u) {
            PyErr_Format(PyExc_ValueError, "CanonicalSpan.%s has type %d, not the one C writes", SLOT_NAMES[s], type);
            return -1;
        }
        self->number[s] = number;
        self->presence[s] = presence;
        self->order[s] = s;
    }
    for (int i = 1; i < N_SLOTS; i++) /* by field number, as protobuf writes them */
        for (int j = i; j > 0 && self->number[self->order[j - 1]] > self->number[self->order[j]]; j--) {
            int swap = self->order[j];
            self->order[j] = self->order[j - 1];
            self->order[j - 1] = swap;
        }
    return 0;
}

static int Canonicaliser_init(Canonicaliser *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"names", "lowered", "prefixes", "fields", "invalid", NULL};
    PyObject *names, *lowered, *prefixes, *fields, *invalid;
    if (self->names != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Canonicaliser is built once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOO", keywords, &names, &lowered, &prefixes, &fields, &invalid))
        return -1;
    self->invalid = Py_NewRef(invalid);
    self->s_attributes = PyUnicode_InternFromString("attributes");
    self->s_resource = PyUnicode_InternFromString("resource");
    self->s_messages = PyUnicode_InternFromString("messages");
    self->s_exception = PyUnicode_InternFromString("exception");
    self->s_price = PyUnicode_InternFromString("price");
    if (!self->s_attributes || !self->s_resource || !self->s_messages || !self->s_exception || !self->s_price)
        return -1;
    if (init_lowered(self, lowered) < 0 || init_names(self, names) < 0 || init_prefixes(self, prefixes) < 0 ||
        init_fields(self, fields) < 0)
        return -1;
    return 0;
}

static PyMethodDef Canonicaliser_methods[] = {
    {"check", (PyCFunction)Canonicaliser_check, METH_O,
     "check(body) -> bool: whether C reads these request bytes exactly as the protobuf parser would."},
    {"spans", (PyCFunction)(void (*)(void))Canonicaliser_spans, METH_FASTCALL,
     "spans(body, context) -> list[bytes] | None: each span's CanonicalSpan bytes (its resource's shared "
     "fields, then its own), or None when the Python path must decide."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject CanonicaliserType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "services.ingest._canonical.Canonicaliser",
    .tp_basicsize = sizeof(Canonicaliser),
    .tp_dealloc = (destructor)Canonicaliser_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The conventions' tables and CanonicalSpan's layout, compiled for the span path in C.",
    .tp_methods = Canonicaliser_methods,
    .tp_init = (initproc)Canonicaliser_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_canonical",
    "OTLP trace request bytes to CanonicalSpan bytes in C (see services/ingest/canonical.py).", -1, NULL,
    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__canonical(void)
{
    if (PyType_Ready(&CanonicaliserType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *kinds = PyDict_New();
    PyObject *outputs = PyTuple_New(N_SLOTS);
    if (kinds == NULL || outputs == NULL)
        goto error;
    for (int k = 0; k < N_KINDS; k++) {
        PyObject *code = PyLong_FromLong(k);
        if (code == NULL || PyDict_SetItemString(kinds, KIND_NAMES[k], code) < 0) {
            Py_XDECREF(code);
            goto error;
        }
        Py_DECREF(code);
    }
    for (int s = 0; s < N_SLOTS; s++) {
        PyObject *name = PyUnicode_FromString(SLOT_NAMES[s]);
        if (name == NULL)
            goto error;
        PyTuple_SET_ITEM(outputs, s, name);
    }
    if (PyModule_AddObjectRef(m, "KINDS", kinds) < 0 || PyModule_AddObjectRef(m, "OUTPUT_FIELDS", outputs) < 0 ||
        PyModule_AddObjectRef(m, "Canonicaliser", (PyObject *)&CanonicaliserType) < 0)
        goto error;
    Py_DECREF(kinds);
    Py_DECREF(outputs);
    return m;
error:
    Py_XDECREF(kinds);
    Py_XDECREF(outputs);
    Py_DECREF(m);
    return NULL;
}
