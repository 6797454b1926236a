/*
 * npsd_pack — the compact stored form of JSON values (see
 * include/npsd/npsd_pack.h).
 */
#include "npsd/npsd_pack.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_codec.h"
#include "npsd/npsd_time.h"

#define NPSD_PACK_FORMAT 0x01 /* never '{': that is the old JSON */

/* One byte before every value says what follows. */
enum {
        SNAP_NULL = 0,
        SNAP_FALSE,
        SNAP_TRUE,
        SNAP_INT,   /* zig-zag varint */
        SNAP_TENTH, /* a real with one decimal: zig-zag varint of 10 x */
        SNAP_REAL,  /* any other real: 8 bytes, IEEE 754, little endian */
        SNAP_STR,   /* varint length, bytes */
        SNAP_WORD,  /* varint index into npsd_pack_words */
        SNAP_TIME,  /* RFC 3339 with milliseconds: zig-zag varint epoch ms */
        SNAP_DATE,  /* YYYY-MM-DD: zig-zag varint epoch day */
        SNAP_HEX,   /* lowercase hex: varint byte count, bytes */
        SNAP_DEC,   /* decimal integer string: zig-zag varint */
        SNAP_ARRAY, /* varint count, values */
        SNAP_OBJECT /* varint count, then key (a string value), value */
};

/* The names and values every snapshot and alert repeats. Append only: an
 * index written once must keep meaning the same word. */
static const char *const npsd_pack_words[] = {
        /* the snapshot and previous[] */
        "processed_at", "digest", "account", "metrics", "previous", "score",
        "role", "submitted_at", "comment",
        /* account context */
        "name", "segment", "plan", "arr", "seats", "renewal_date",
        "lifecycle_stage", "csm_owner", "updated_at",
        /* metrics, with the default windows */
        "nps_7d", "nps_30d", "nps_90d", "responses_90d", "moe_90d",
        "nps_prev_90d", "trend_90d", "role_gap_flag", "role_gap_90d",
        "benchmark", "benchmark_delta", "health", "health_band",
        /* values */
        "end_user", "admin", "decision_maker", "other", "green", "yellow",
        "red", "smb", "mid_market", "enterprise", "onboarding", "adoption",
        "mature", "renewal",
        /* alerts (SPEC §6) and their details */
        "alert_id", "type", "severity", "account_id", "fired_at", "details",
        "event_id", "role_gap", "nps_drop", "usage_drop", "followup_overdue",
        "high", "medium", "low", "window", "end_user_nps",
        "decision_maker_nps", "from", "to", "trend", "nps", "nps_prev",
        "responses", "responses_prev", "active_users_7d",
        "active_users_prev_7d", "stage", "due_at", "met_at",
        "response_event_id", "acknowledge", "route", "close", "90d", "30d"};

#define NPSD_PACK_WORDS \
        (sizeof(npsd_pack_words) / sizeof(npsd_pack_words[0]))

static int npsd_pack_word(const char *s, size_t len) {
        for (size_t i = 0; i < NPSD_PACK_WORDS; i++) {
                const char *w = npsd_pack_words[i];
                if (w[0] == s[0] && !strncmp(w, s, len) && !w[len])
                        return (int)i;
        }
        return -1;
}

static int npsd_pack_hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* A string of lowercase hex digits, 8 or more and even in number. */
static int npsd_pack_is_hex(const char *s, size_t len) {
        if (len < 8 || len % 2)
                return 0;
        for (size_t i = 0; i < len; i++)
                if (npsd_pack_hexval(s[i]) < 0)
                        return 0;
        return 1;
}

/* A decimal integer that prints back as the same string ("-0", "007"
 * and "+1" do not). */
static int npsd_pack_is_dec(const char *s, size_t len, int64_t *v) {
        char buf[24], *end;
        long long n;

        if (!len || len > 19 || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')))
                return 0;
        memcpy(buf, s, len);
        buf[len] = '\0';
        n = strtoll(buf, &end, 10);
        if (*end)
                return 0;
        snprintf(buf, sizeof(buf), "%lld", n);
        if (strlen(buf) != len || memcmp(buf, s, len))
                return 0;
        *v = n;
        return 1;
}

static void npsd_pack_put_string(npsd_codec_writer_t *w, const char *s,
                                     size_t len) {
        char buf[NPSD_TIME_BUFSZ];
        int64_t ms, n;
        int32_t day;
        int word;

        if (len && len < 32 && (word = npsd_pack_word(s, len)) >= 0) {
                npsd_codec_put_uint(w, SNAP_WORD);
                npsd_codec_put_uint(w, (uint64_t)word);
                return;
        }
        if ((len == 20 || len == 24) &&
            !npsd_time_parse_rfc3339(s, len, &ms) &&
            !memcmp(npsd_time_format(ms, buf), s, len) && !buf[len]) {
                npsd_codec_put_uint(w, SNAP_TIME);
                npsd_codec_put_int(w, ms);
                return;
        }
        if (len == 10 && !npsd_date_parse(s, len, &day) &&
            !memcmp(npsd_date_format(day, buf), s, len) && !buf[len]) {
                npsd_codec_put_uint(w, SNAP_DATE);
                npsd_codec_put_int(w, day);
                return;
        }
        if (npsd_pack_is_dec(s, len, &n)) {
                npsd_codec_put_uint(w, SNAP_DEC);
                npsd_codec_put_int(w, n);
                return;
        }
        if (npsd_pack_is_hex(s, len)) {
                npsd_codec_put_uint(w, SNAP_HEX);
                npsd_codec_put_uint(w, len / 2);
                for (size_t i = 0; i < len; i += 2) {
                        unsigned char b = (unsigned char)(
                                npsd_pack_hexval(s[i]) << 4 |
                                npsd_pack_hexval(s[i + 1]));
                        npsd_codec_put_bytes(w, &b, 1);
                }
                return;
        }
        npsd_codec_put_uint(w, SNAP_STR);
        npsd_codec_put_uint(w, len);
        npsd_codec_put_bytes(w, s, len);
}

static void npsd_pack_put_real(npsd_codec_writer_t *w, double d) {
        double t = d * 10.0;
        unsigned char b[8];
        uint64_t bits;

        if (isfinite(t) && fabs(t) < 9e15 &&
            (double)llround(t) / 10.0 == d && !(d == 0 && signbit(d))) {
                npsd_codec_put_uint(w, SNAP_TENTH);
                npsd_codec_put_int(w, (int64_t)llround(t));
                return;
        }
        memcpy(&bits, &d, sizeof(bits));
        for (int i = 0; i < 8; i++)
                b[i] = (unsigned char)(bits >> (8 * i));
        npsd_codec_put_uint(w, SNAP_REAL);
        npsd_codec_put_bytes(w, b, 8);
}

static int npsd_pack_put(npsd_codec_writer_t *w, const json_t *v,
                             int depth) {
        const char *key;
        json_t *item;
        size_t i;

        switch (json_typeof(v)) {
        case JSON_NULL:
                npsd_codec_put_uint(w, SNAP_NULL);
                return 0;
        case JSON_FALSE:
                npsd_codec_put_uint(w, SNAP_FALSE);
                return 0;
        case JSON_TRUE:
                npsd_codec_put_uint(w, SNAP_TRUE);
                return 0;
        case JSON_INTEGER:
                npsd_codec_put_uint(w, SNAP_INT);
                npsd_codec_put_int(w, (int64_t)json_integer_value(v));
                return 0;
        case JSON_REAL:
                npsd_pack_put_real(w, json_real_value(v));
                return 0;
        case JSON_STRING:
                npsd_pack_put_string(w, json_string_value(v),
                                         json_string_length(v));
                return 0;
        case JSON_ARRAY:
                if (depth >= NPSD_PACK_DEPTH)
                        return -1;
                npsd_codec_put_uint(w, SNAP_ARRAY);
                npsd_codec_put_uint(w, json_array_size(v));
                json_array_foreach(v, i, item) {
                        if (npsd_pack_put(w, item, depth + 1))
                                return -1;
                }
                return 0;
        case JSON_OBJECT:
                if (depth >= NPSD_PACK_DEPTH)
                        return -1;
                npsd_codec_put_uint(w, SNAP_OBJECT);
                npsd_codec_put_uint(w, json_object_size(v));
                json_object_foreach((json_t *)v, key, item) {
                        npsd_pack_put_string(w, key, strlen(key));
                        if (npsd_pack_put(w, item, depth + 1))
                                return -1;
                }
                return 0;
        }
        return -1;
}

char *npsd_pack_encode(const json_t *value, size_t *lenp) {
        unsigned char fmt = NPSD_PACK_FORMAT;
        npsd_codec_writer_t w = {NULL, 0, 0};
        char *buf;

        /* one pass measures, the second writes */
        npsd_codec_put_bytes(&w, &fmt, 1);
        if (!value || npsd_pack_put(&w, value, 0))
                return NULL;
        if (!(buf = malloc(w.off ? w.off : 1)))
                return NULL;
        w.buf = (unsigned char *)buf;
        w.size = w.off;
        w.off = 0;
        npsd_codec_put_bytes(&w, &fmt, 1);
        npsd_pack_put(&w, value, 0);
        *lenp = w.off;
        return buf;
}

/* The next n bytes of r, or NULL (and r failed) when fewer are left. */
static const unsigned char *npsd_pack_take(npsd_codec_reader_t *r,
                                               uint64_t n) {
        const unsigned char *p;

        if (r->err || n > r->len - r->off) {
                r->err = 1;
                return NULL;
        }
        p = r->buf + r->off;
        r->off += (size_t)n;
        return p;
}

/* A string value (also an object's key) into buf; NULL when the next
 * value is not a string or is corrupt. */
static char *npsd_pack_get_string(npsd_codec_reader_t *r, char *buf,
                                      size_t size, size_t *lenp) {
        static const char hex[] = "0123456789abcdef";
        uint64_t tag = npsd_codec_get_uint(r), n;
        const unsigned char *p;
        int32_t day;

        switch (r->err ? UINT64_MAX : tag) {
        case SNAP_WORD:
                n = npsd_codec_get_uint_max(r, NPSD_PACK_WORDS - 1);
                if (r->err)
                        return NULL;
                *lenp = strlen(npsd_pack_words[n]);
                return memcpy(buf, npsd_pack_words[n], *lenp + 1);
        case SNAP_TIME:
                npsd_time_format(npsd_codec_get_int(r), buf);
                break;
        case SNAP_DATE:
                day = (int32_t)npsd_codec_get_int(r);
                npsd_date_format(day, buf);
                break;
        case SNAP_DEC:
                snprintf(buf, size, "%" PRId64, npsd_codec_get_int(r));
                break;
        case SNAP_HEX:
                n = npsd_codec_get_uint(r);
                if (n >= size / 2 || !(p = npsd_pack_take(r, n)))
                        return NULL;
                for (uint64_t i = 0; i < n; i++) {
                        buf[2 * i] = hex[p[i] >> 4];
                        buf[2 * i + 1] = hex[p[i] & 15];
                }
                buf[2 * n] = '\0';
                *lenp = (size_t)(2 * n);
                return r->err ? NULL : buf;
        case SNAP_STR:
                n = npsd_codec_get_uint(r);
                if (n >= size || !(p = npsd_pack_take(r, n)))
                        return NULL;
                memcpy(buf, p, (size_t)n);
                buf[n] = '\0';
                *lenp = (size_t)n;
                return buf;
        default:
                return NULL;
        }
        *lenp = strlen(buf);
        return r->err ? NULL : buf;
}

static json_t *npsd_pack_get(npsd_codec_reader_t *r, char *buf,
                                 size_t size, int depth) {
        size_t off = r->off, len;
        uint64_t tag = npsd_codec_get_uint(r), n;
        const unsigned char *p;
        json_t *v, *item;
        uint64_t bits = 0;
        double d;

        if (r->err)
                return NULL;
        switch (tag) {
        case SNAP_NULL:
                return json_null();
        case SNAP_FALSE:
                return json_false();
        case SNAP_TRUE:
                return json_true();
        case SNAP_INT:
                v = json_integer((json_int_t)npsd_codec_get_int(r));
                break;
        case SNAP_TENTH:
                v = json_real((double)npsd_codec_get_int(r) / 10.0);
                break;
        case SNAP_REAL:
                if (!(p = npsd_pack_take(r, 8)))
                        return NULL;
                for (int i = 0; i < 8; i++)
                        bits |= (uint64_t)p[i] << (8 * i);
                memcpy(&d, &bits, sizeof(d));
                return json_real(d);
        case SNAP_ARRAY:
        case SNAP_OBJECT:
                if (depth >= NPSD_PACK_DEPTH)
                        return NULL;
                n = npsd_codec_get_uint(r);
                /* every member takes a byte at least: a count beyond the
                 * bytes left is corrupt, not a huge allocation */
                if (r->err || n > r->len - r->off)
                        return NULL;
                v = tag == SNAP_ARRAY ? json_array() : json_object();
                for (uint64_t i = 0; v && i < n; i++) {
                        char *key = NULL;
                        if (tag == SNAP_OBJECT &&
                            !(key = npsd_pack_get_string(r, buf, size,
                                                             &len)))
                                goto fail;
                        if (key && !(key = strdup(key)))
                                goto fail;
                        item = npsd_pack_get(r, buf, size, depth + 1);
                        if (!item ||
                            (key ? json_object_set_new(v, key, item)
                                 : json_array_append_new(v, item))) {
                                free(key);
                                goto fail;
                        }
                        free(key);
                }
                return v;
        fail:
                json_decref(v);
                return NULL;
        default:
                r->off = off; /* a string: read again with its tag */
                if (!npsd_pack_get_string(r, buf, size, &len))
                        return NULL;
                return json_stringn(buf, len);
        }
        return r->err ? (json_decref(v), NULL) : v;
}

json_t *npsd_pack_decode(const char *buf, size_t len, char *errstr,
                             size_t errstr_size) {
        npsd_codec_reader_t r = {(const unsigned char *)buf, len, 1, 0};
        json_error_t jerr;
        json_t *v;
        char *tmp;

        if (len && buf[0] == '{') {
                if (!(v = json_loadb(buf, len, 0, &jerr)))
                        snprintf(errstr, errstr_size, "packed value: %s",
                                 jerr.text);
                return v;
        }
        if (!len || (unsigned char)buf[0] != NPSD_PACK_FORMAT) {
                snprintf(errstr, errstr_size,
                         "packed value: unknown format byte %d",
                         len ? (unsigned char)buf[0] : -1);
                return NULL;
        }
        /* no string in a value is longer than the packed value itself,
         * nor its hex spelling longer than twice that */
        if (!(tmp = malloc(2 * len + NPSD_TIME_BUFSZ + 24))) {
                snprintf(errstr, errstr_size, "packed value: out of memory");
                return NULL;
        }
        v = npsd_pack_get(&r, tmp, 2 * len + NPSD_TIME_BUFSZ + 24, 0);
        free(tmp);
        if (v && r.off != len) {
                json_decref(v);
                v = NULL;
        }
        if (!v)
                snprintf(errstr, errstr_size,
                         "packed value: corrupt at byte %zu of %zu", r.off, len);
        return v;
}
