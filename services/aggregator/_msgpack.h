/* A bounded reader of the msgpack subset msgspec writes for rollup blobs (maps, arrays, strings, bin,
 * integers, floats), for _bins.c's summarise_blobs. Every read checks the bytes left: a function
 * returns 1 when it read a well-formed item of the kind asked for, 0 otherwise (truncated, another
 * kind, a number out of range), and the caller then leaves the blob to the Python twin. */
#ifndef VANE_MSGPACK_H
#define VANE_MSGPACK_H

#include <stdint.h>
#include <string.h>

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
} Reader;

static inline int mp_take(Reader *r, Py_ssize_t n, const unsigned char **out) {
    if (n < 0 || r->end - r->at < n) return 0;
    *out = r->at;
    r->at += n;
    return 1;
}

/* An unsigned big-endian number of `size` bytes. */
static inline int mp_be(Reader *r, int size, uint64_t *out) {
    const unsigned char *p;
    if (!mp_take(r, size, &p)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < size; i++) v = (v << 8) | p[i];
    *out = v;
    return 1;
}

static inline int mp_tag(Reader *r, unsigned char *tag) {
    if (r->at >= r->end) return 0;
    *tag = *r->at++;
    return 1;
}

/* The length that follows a tag of an 8/16/32-bit length family (`first` is the 8-bit tag, or -1). */
static inline int mp_length(Reader *r, unsigned char tag, int first8, unsigned char first16, Py_ssize_t *n) {
    uint64_t v;
    int size = (first8 >= 0 && tag == first8) ? 1 : tag == first16 ? 2 : tag == first16 + 1 ? 4 : 0;
    if (!size || !mp_be(r, size, &v)) return 0;
    *n = (Py_ssize_t)v;
    return 1;
}

static inline int mp_map(Reader *r, Py_ssize_t *n) {
    unsigned char tag;
    if (!mp_tag(r, &tag)) return 0;
    if ((tag & 0xf0) == 0x80) {
        *n = tag & 0x0f;
        return 1;
    }
    return mp_length(r, tag, -1, 0xde, n);
}

static inline int mp_array(Reader *r, Py_ssize_t *n) {
    unsigned char tag;
    if (!mp_tag(r, &tag)) return 0;
    if ((tag & 0xf0) == 0x90) {
        *n = tag & 0x0f;
        return 1;
    }
    return mp_length(r, tag, -1, 0xdc, n);
}

static inline int mp_str(Reader *r, const char **s, Py_ssize_t *len) {
    unsigned char tag;
    if (!mp_tag(r, &tag)) return 0;
    if ((tag & 0xe0) == 0xa0) *len = tag & 0x1f;
    else if (!mp_length(r, tag, 0xd9, 0xda, len)) return 0;
    return mp_take(r, *len, (const unsigned char **)s);
}

static inline int mp_bin(Reader *r, const unsigned char **b, Py_ssize_t *len) {
    unsigned char tag;
    if (!mp_tag(r, &tag)) return 0;
    if (!mp_length(r, tag, 0xc4, 0xc5, len)) return 0;
    return mp_take(r, *len, b);
}

/* An integer that fits a long long. */
static inline int mp_int(Reader *r, long long *out) {
    unsigned char tag;
    uint64_t v;
    if (!mp_tag(r, &tag)) return 0;
    if (tag <= 0x7f) *out = tag;
    else if (tag >= 0xe0) *out = (signed char)tag;
    else if (tag >= 0xcc && tag <= 0xcf) {
        if (!mp_be(r, 1 << (tag - 0xcc), &v) || v > (uint64_t)INT64_MAX) return 0;
        *out = (long long)v;
    } else if (tag >= 0xd0 && tag <= 0xd3) {
        int size = 1 << (tag - 0xd0);
        if (!mp_be(r, size, &v)) return 0;
        if (size < 8 && (v >> (size * 8 - 1))) v |= ~(uint64_t)0 << (size * 8); /* sign-extend */
        *out = (long long)v;
    } else return 0;
    return 1;
}

/* A float (32 or 64 bits) or an integer, as a double. */
static inline int mp_double(Reader *r, double *out) {
    uint64_t v;
    if (r->at < r->end && *r->at == 0xcb) {
        r->at++;
        if (!mp_be(r, 8, &v)) return 0;
        memcpy(out, &v, 8);
        return 1;
    }
    if (r->at < r->end && *r->at == 0xca) {
        float f;
        uint32_t bits;
        r->at++;
        if (!mp_be(r, 4, &v)) return 0;
        bits = (uint32_t)v;
        memcpy(&f, &bits, 4);
        *out = f;
        return 1;
    }
    long long i;
    if (!mp_int(r, &i)) return 0;
    *out = (double)i;
    return 1;
}

/* A nil: 1 read (and consumed), 0 another kind (nothing consumed). */
static inline int mp_nil(Reader *r) {
    if (r->at >= r->end || *r->at != 0xc0) return 0;
    r->at++;
    return 1;
}

/* Past one item of the subset (nil, booleans, integers, floats, str, bin, arrays and maps of them, nested
 * at most `depth` deep): 1 skipped, 0 malformed or another kind. */
static inline int mp_skip(Reader *r, int depth) {
    unsigned char tag;
    Py_ssize_t n;
    const unsigned char *ignored;
    if (depth < 0 || r->at >= r->end) return 0;
    tag = *r->at;
    if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3) {
        r->at++;
        return 1;
    }
    if ((tag >= 0xcc && tag <= 0xd3) || tag == 0xca || tag == 0xcb) { /* integers of 1-8 bytes, floats of 4 or 8 */
        r->at++;
        return mp_take(r, tag == 0xca ? 4 : tag == 0xcb ? 8 : 1 << ((tag - 0xcc) & 3), &ignored);
    }
    if ((tag & 0xe0) == 0xa0 || tag == 0xd9 || tag == 0xda || tag == 0xdb) return mp_str(r, (const char **)&ignored, &n);
    if (tag == 0xc4 || tag == 0xc5 || tag == 0xc6) return mp_bin(r, &ignored, &n);
    if ((tag & 0xf0) == 0x90 || tag == 0xdc || tag == 0xdd) {
        if (!mp_array(r, &n)) return 0;
        for (Py_ssize_t i = 0; i < n; i++)
            if (!mp_skip(r, depth - 1)) return 0;
        return 1;
    }
    if ((tag & 0xf0) == 0x80 || tag == 0xde || tag == 0xdf) {
        if (!mp_map(r, &n)) return 0;
        for (Py_ssize_t i = 0; i < 2 * n; i++)
            if (!mp_skip(r, depth - 1)) return 0;
        return 1;
    }
    return 0;
}

#endif
