/*
 * npsd_codec — the byte encoding of the state records npsd keeps in Redis
 * (pure, no I/O): unsigned LEB128 varints, zig-zag signed integers and
 * length-prefixed strings, written into a caller's buffer and read back
 * with bounds checks. Compact and allocation-free: a record is encoded and
 * decoded once per account per batch.
 */
#ifndef NPSD_CODEC_H
#define NPSD_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* A writer counts every byte it would write; bytes past size are dropped,
 * so one pass with size 0 measures and a second one writes. */
typedef struct npsd_codec_writer_s {
        unsigned char *buf;
        size_t size;
        size_t off;
} npsd_codec_writer_t;

void npsd_codec_put_uint(npsd_codec_writer_t *w, uint64_t v);
void npsd_codec_put_int(npsd_codec_writer_t *w, int64_t v);
void npsd_codec_put_bytes(npsd_codec_writer_t *w, const void *p, size_t len);
/* A length-prefixed string (NULL is written as ""). */
void npsd_codec_put_str(npsd_codec_writer_t *w, const char *s);

/* A reader fails once and stays failed: check err at the end. */
typedef struct npsd_codec_reader_s {
        const unsigned char *buf;
        size_t len;
        size_t off;
        int err;
} npsd_codec_reader_t;

uint64_t npsd_codec_get_uint(npsd_codec_reader_t *r);
/* An unsigned value that must not exceed max (else the reader fails). */
uint64_t npsd_codec_get_uint_max(npsd_codec_reader_t *r, uint64_t max);
int64_t npsd_codec_get_int(npsd_codec_reader_t *r);
/* A length-prefixed string copied into buf (NUL-terminated); the reader
 * fails when it does not fit in size. Returns its length. */
size_t npsd_codec_get_str(npsd_codec_reader_t *r, char *buf, size_t size);

#endif
