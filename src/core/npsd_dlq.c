/*
 * npsd_dlq — builds the dead-letter message of SPEC §2 (pure, no I/O).
 *
 * The DLQ record must carry the original message whole, so that it can be
 * fixed and replayed: a payload (or key) that is valid UTF-8 is embedded as
 * a JSON string, anything else is base64 encoded and flagged as such.
 */
#include "npsd/npsd_event.h"
#include "npsd/npsd_time.h"

#include <stdlib.h>
#include <string.h>

char *npsd_base64_encode(const void *buf, size_t len) {
        static const char tbl[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const unsigned char *p = buf;
        size_t i, o = 0, outlen;
        char *out;

        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return NULL;
        outlen = (len + 2) / 3 * 4;
        if (!(out = malloc(outlen + 1)))
                return NULL;
        for (i = 0; i + 2 < len; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
                             p[i + 2];
                out[o++] = tbl[v >> 18 & 0x3F];
                out[o++] = tbl[v >> 12 & 0x3F];
                out[o++] = tbl[v >> 6 & 0x3F];
                out[o++] = tbl[v & 0x3F];
        }
        if (i < len) {
                uint32_t v = (uint32_t)p[i] << 16;

                if (i + 1 < len)
                        v |= (uint32_t)p[i + 1] << 8;
                out[o++] = tbl[v >> 18 & 0x3F];
                out[o++] = tbl[v >> 12 & 0x3F];
                out[o++] = i + 1 < len ? tbl[v >> 6 & 0x3F] : '=';
                out[o++] = '=';
        }
        out[o] = '\0';
        return out;
}

/* A JSON string for text that should be UTF-8 but is not guaranteed to be
 * (field/detail come from our own code, but a caller may have filled the
 * reject by hand): invalid bytes are replaced by '?' rather than failing
 * the whole DLQ record, since json_stringn() refuses invalid UTF-8. */
static json_t *npsd_json_text(const char *s) {
        size_t len = strlen(s);
        json_t *v;
        char *copy;

        if (npsd_utf8_valid(s, len))
                return json_stringn(s, len);
        if (!(copy = malloc(len + 1)))
                return NULL;
        for (size_t i = 0; i < len; i++)
                copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
        copy[len] = '\0';
        v = json_stringn(copy, len);
        free(copy);
        return v;
}

/* Adds "<name>" holding buf as a UTF-8 string when it is valid UTF-8,
 * else as base64 with "<enc_name>": "base64". always_enc also writes
 * "utf8" in the valid case (the payload always states its encoding; the
 * key only when it is base64). Bytes with a NUL are base64 too: "\u0000"
 * is valid JSON but many consumers (jansson by default, C strings) refuse
 * or truncate it, and the DLQ record must reach a person intact. */
static int npsd_json_set_bytes(json_t *obj, const char *name,
                               const char *enc_name, int always_enc,
                               const void *buf, size_t len) {
        json_t *v;
        char *b64;

        if (npsd_utf8_valid(buf, len) && !memchr(buf, '\0', len)) {
                v = json_stringn(len ? buf : "", len);
                if (json_object_set_new(obj, name, v) < 0)
                        return -1;
                if (always_enc &&
                    json_object_set_new(obj, enc_name, json_string("utf8")) < 0)
                        return -1;
                return 0;
        }
        if (!(b64 = npsd_base64_encode(buf, len)))
                return -1;
        v = json_string(b64);
        free(b64);
        if (json_object_set_new(obj, name, v) < 0)
                return -1;
        return json_object_set_new(obj, enc_name, json_string("base64"));
}

char *npsd_dlq_build(const npsd_reject_t *reject, const char *topic,
                     int32_t partition, int64_t offset, const void *key,
                     size_t key_len, const void *payload, size_t len,
                     int64_t now_ms, size_t *lenp) {
        char tbuf[NPSD_TIME_BUFSZ];
        json_t *o;
        char *out = NULL;

        if (!reject)
                return NULL;
        if (!(o = json_object()))
                return NULL;

        /* json_object_set_new() steals the value even on failure and
         * rejects a NULL value, so allocation failures surface here. */
        if (json_object_set_new(o, "reason",
                                json_string(npsd_reject_reason_name(
                                        reject->reason))) < 0 ||
            json_object_set_new(o, "field",
                                reject->field[0]
                                        ? npsd_json_text(reject->field)
                                        : json_null()) < 0 ||
            json_object_set_new(o, "detail", npsd_json_text(reject->detail)) <
                    0 ||
            json_object_set_new(o, "topic",
                                topic ? npsd_json_text(topic) : json_null()) <
                    0 ||
            json_object_set_new(o, "partition", json_integer(partition)) < 0 ||
            json_object_set_new(o, "offset", json_integer(offset)) < 0)
                goto done;

        if (key) {
                if (npsd_json_set_bytes(o, "key", "key_encoding", 0, key,
                                        key_len) < 0)
                        goto done;
        } else if (json_object_set_new(o, "key", json_null()) < 0) {
                goto done;
        }
        if (!payload) {
                /* a tombstone (no value at all) is not an empty value */
                if (json_object_set_new(o, "payload", json_null()) < 0 ||
                    json_object_set_new(o, "payload_encoding", json_null()) < 0)
                        goto done;
        } else if (npsd_json_set_bytes(o, "payload", "payload_encoding", 1,
                                       payload, len) < 0) {
                goto done;
        }
        if (json_object_set_new(o, "rejected_at",
                                json_string(npsd_time_format(now_ms, tbuf))) < 0)
                goto done;

        if ((out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER)) && lenp)
                *lenp = strlen(out);

done:
        json_decref(o);
        return out;
}
