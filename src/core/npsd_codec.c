/*
 * npsd_codec — byte encoding of state records (see
 * include/npsd/npsd_codec.h).
 */
#include "npsd/npsd_codec.h"

#include <string.h>

void npsd_codec_put_uint(npsd_codec_writer_t *w, uint64_t v) {
        do {
                unsigned char byte = v & 0x7f;
                v >>= 7;
                if (v)
                        byte |= 0x80;
                if (w->off < w->size)
                        w->buf[w->off] = byte;
                w->off++;
        } while (v);
}

/* Zig-zag: small negative numbers stay small (-1 -> 1, 1 -> 2). */
void npsd_codec_put_int(npsd_codec_writer_t *w, int64_t v) {
        npsd_codec_put_uint(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void npsd_codec_put_bytes(npsd_codec_writer_t *w, const void *p,
                          size_t len) {
        if (len == 0) /* p may be NULL then: memcpy() must not see it */
                return;
        if (w->off < w->size)
                memcpy(w->buf + w->off, p,
                       len < w->size - w->off ? len : w->size - w->off);
        w->off += len;
}

void npsd_codec_put_str(npsd_codec_writer_t *w, const char *s) {
        size_t len = s ? strlen(s) : 0;

        npsd_codec_put_uint(w, len);
        npsd_codec_put_bytes(w, s, len);
}

uint64_t npsd_codec_get_uint(npsd_codec_reader_t *r) {
        uint64_t out = 0;

        if (r->err)
                return 0;
        for (int shift = 0; shift < 64; shift += 7) {
                unsigned char byte;
                if (r->off >= r->len)
                        break;
                byte = r->buf[r->off++];
                out |= (uint64_t)(byte & 0x7f) << shift;
                if (!(byte & 0x80))
                        return out;
        }
        r->err = 1; /* truncated, or longer than 64 bits */
        return 0;
}

uint64_t npsd_codec_get_uint_max(npsd_codec_reader_t *r, uint64_t max) {
        uint64_t v = npsd_codec_get_uint(r);

        if (v > max) {
                r->err = 1;
                return 0;
        }
        return v;
}

int64_t npsd_codec_get_int(npsd_codec_reader_t *r) {
        uint64_t v = npsd_codec_get_uint(r);

        return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

size_t npsd_codec_get_str(npsd_codec_reader_t *r, char *buf, size_t size) {
        uint64_t len = npsd_codec_get_uint(r);

        if (r->err || len >= size || len > r->len - r->off) {
                r->err = 1;
                if (size)
                        buf[0] = '\0';
                return 0;
        }
        memcpy(buf, r->buf + r->off, (size_t)len);
        buf[len] = '\0';
        r->off += (size_t)len;
        return (size_t)len;
}
