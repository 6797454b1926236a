/*
 * npsd_event — parsing and validating input messages (pure, no I/O).
 *
 * Every check produces a rejection a person can act on from the DLQ alone:
 * the reason (contract name), the field at fault and a detail sentence such
 * as "score must be an integer 0-10, got 11". The order of checks is fixed:
 * size, UTF-8 / JSON syntax, object-ness, then fields in SPEC §2 table
 * order, so that the same bad message always gets the same rejection.
 */
#include "npsd/npsd_event.h"
#include "npsd/npsd_time.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPSD_LONG_MAX 256     /* name, plan, csm_owner, attribute values */
#define NPSD_ATTR_KEY_MAX 64  /* attribute names */
#define NPSD_QUOTE_MAX 48     /* bytes of a bad value quoted in a detail */

static const char *npsd_reject_names[NPSD_REJECT__CNT] = {
        [NPSD_REJECT_NONE] = "none",
        [NPSD_REJECT_INVALID_JSON] = "invalid_json",
        [NPSD_REJECT_NOT_AN_OBJECT] = "not_an_object",
        [NPSD_REJECT_MISSING_FIELD] = "missing_field",
        [NPSD_REJECT_INVALID_FIELD] = "invalid_field",
        [NPSD_REJECT_TOO_LARGE] = "too_large",
        [NPSD_REJECT_TIMESTAMP_IN_FUTURE] = "timestamp_in_future",
};

static const char *npsd_role_names[NPSD_ROLE__CNT] = {
        [NPSD_ROLE_END_USER] = "end_user",
        [NPSD_ROLE_ADMIN] = "admin",
        [NPSD_ROLE_DECISION_MAKER] = "decision_maker",
        [NPSD_ROLE_OTHER] = "other",
};

static const char *npsd_survey_names[NPSD_SURVEY__CNT] = {
        [NPSD_SURVEY_RELATIONSHIP] = "relationship",
        [NPSD_SURVEY_TRANSACTIONAL] = "transactional",
};

static const char *npsd_category_names[NPSD_CAT__CNT] = {
        [NPSD_CAT_DETRACTOR] = "detractor",
        [NPSD_CAT_PASSIVE] = "passive",
        [NPSD_CAT_PROMOTER] = "promoter",
};

const char *npsd_reject_reason_name(npsd_reject_reason_t reason) {
        if ((unsigned)reason >= NPSD_REJECT__CNT)
                return "unknown";
        return npsd_reject_names[reason];
}

const char *npsd_role_name(npsd_role_t role) {
        if ((unsigned)role >= NPSD_ROLE__CNT)
                return "other";
        return npsd_role_names[role];
}

const char *npsd_survey_name(npsd_survey_t survey) {
        if ((unsigned)survey >= NPSD_SURVEY__CNT)
                return "relationship";
        return npsd_survey_names[survey];
}

const char *npsd_category_name(npsd_category_t cat) {
        if ((unsigned)cat >= NPSD_CAT__CNT)
                return "detractor";
        return npsd_category_names[cat];
}

/* Aliases are matched exactly (case-sensitively): SPEC §2 gives the values
 * in lower case, and "Admin" silently becoming admin would hide producer
 * bugs that "other" in the dashboards makes visible. */
npsd_role_t npsd_role_from_string(const char *s) {
        if (!s)
                return NPSD_ROLE_OTHER;
        if (!strcmp(s, "end_user") || !strcmp(s, "user"))
                return NPSD_ROLE_END_USER;
        if (!strcmp(s, "admin"))
                return NPSD_ROLE_ADMIN;
        if (!strcmp(s, "decision_maker") || !strcmp(s, "executive") ||
            !strcmp(s, "buyer"))
                return NPSD_ROLE_DECISION_MAKER;
        return NPSD_ROLE_OTHER;
}

npsd_category_t npsd_category_of(int score) {
        if (score >= 9)
                return NPSD_CAT_PROMOTER;
        if (score >= 7)
                return NPSD_CAT_PASSIVE;
        return NPSD_CAT_DETRACTOR;
}

void npsd_parse_limits_default(npsd_parse_limits_t *limits) {
        limits->max_message_bytes = 65536;
        limits->max_comment_bytes = 8192;
        limits->future_allowance_ms = 3600000;
}

static int npsd_id_char(unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
               c == '@' || c == '-';
}

int npsd_id_valid(const char *s, size_t len) {
        if (!s || len < 1 || len > NPSD_ID_MAX)
                return 0;
        for (size_t i = 0; i < len; i++)
                if (!npsd_id_char((unsigned char)s[i]))
                        return 0;
        return 1;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes available), or 0
 * if it is invalid: overlong forms, UTF-16 surrogates (U+D800-DFFF) and code
 * points above U+10FFFF are rejected (RFC 3629 table). */
static size_t npsd_utf8_seq(const unsigned char *p, size_t n) {
        unsigned char c = p[0];
        unsigned char lo = 0x80, hi = 0xBF;
        size_t need;

        if (c < 0x80)
                return 1;
        if (c < 0xC2)
                return 0;
        if (c < 0xE0) {
                need = 2;
        } else if (c < 0xF0) {
                need = 3;
                if (c == 0xE0)
                        lo = 0xA0;
                else if (c == 0xED)
                        hi = 0x9F;
        } else if (c < 0xF5) {
                need = 4;
                if (c == 0xF0)
                        lo = 0x90;
                else if (c == 0xF4)
                        hi = 0x8F;
        } else {
                return 0;
        }
        if (n < need)
                return 0;
        if (p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 2; i < need; i++)
                if ((p[i] & 0xC0) != 0x80)
                        return 0;
        return need;
}

/* Offset of the first invalid byte, or len if the whole buffer is valid. */
static size_t npsd_utf8_check(const void *buf, size_t len) {
        const unsigned char *p = buf;
        size_t i = 0;

        while (i < len) {
                size_t n;

                if (p[i] < 0x80) { /* ASCII fast path */
                        i++;
                        continue;
                }
                if (!(n = npsd_utf8_seq(p + i, len - i)))
                        return i;
                i += n;
        }
        return len;
}

int npsd_utf8_valid(const void *buf, size_t len) {
        if (!buf)
                return len == 0;
        return npsd_utf8_check(buf, len) == len;
}

/* Largest cut <= max that does not split a UTF-8 character of s (which is
 * valid UTF-8, as jansson only produces valid strings). */
static size_t npsd_utf8_cut(const char *s, size_t len, size_t max) {
        size_t cut;

        if (len <= max)
                return len;
        cut = max;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
                cut--;
        return cut;
}

static void npsd_reject_set(npsd_reject_t *rj, npsd_reject_reason_t reason,
                            const char *field, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Fills a rejection. The field name and detail are truncated to their
 * buffers; callers only put ASCII or UTF-8-cut text in them so a truncated
 * detail is still valid UTF-8 for the DLQ JSON. */
static void npsd_reject_set(npsd_reject_t *rj, npsd_reject_reason_t reason,
                            const char *field, const char *fmt, ...) {
        va_list ap;
        size_t n;

        rj->reason = reason;
        n = strlen(field);
        if (n >= sizeof(rj->field))
                n = sizeof(rj->field) - 1;
        memcpy(rj->field, field, n);
        rj->field[n] = '\0';
        va_start(ap, fmt);
        vsnprintf(rj->detail, sizeof(rj->detail), fmt, ap);
        va_end(ap);
        /* vsnprintf may cut inside a multi-byte character: end the detail
         * before the first invalid sequence. */
        rj->detail[npsd_utf8_check(rj->detail, strlen(rj->detail))] = '\0';
}

/* Copies a short, quoted excerpt of a bad string value for a detail:
 * at most NPSD_QUOTE_MAX bytes, cut on a character boundary, "..." added
 * when shortened. Quotes and backslashes inside are kept as is; the DLQ
 * JSON encoder escapes them. */
static const char *npsd_quote(const char *s, size_t len, char *buf,
                              size_t bufsz) {
        size_t n = npsd_utf8_cut(s, len, NPSD_QUOTE_MAX);

        snprintf(buf, bufsz, "\"%.*s\"%s", (int)n, s, n < len ? "..." : "");
        return buf;
}

static const char *npsd_json_type_name(const json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "object";
        case JSON_ARRAY:
                return "array";
        case JSON_STRING:
                return "string";
        case JSON_INTEGER:
                return "integer";
        case JSON_REAL:
                return "number";
        case JSON_TRUE:
                return "true";
        case JSON_FALSE:
                return "false";
        case JSON_NULL:
        default:
                return "null";
        }
}

/* Describes a JSON value for "got ..." in a detail: numbers and literals
 * verbatim, strings quoted with their type ("string \"9\""), containers by
 * type only. */
static const char *npsd_describe(const json_t *v, char *buf, size_t bufsz) {
        char q[NPSD_QUOTE_MAX + 8];

        switch (json_typeof(v)) {
        case JSON_INTEGER:
                snprintf(buf, bufsz, "%lld", (long long)json_integer_value(v));
                break;
        case JSON_REAL:
                snprintf(buf, bufsz, "%g", json_real_value(v));
                break;
        case JSON_STRING:
                snprintf(buf, bufsz, "string %s",
                         npsd_quote(json_string_value(v), json_string_length(v),
                                    q, sizeof(q)));
                break;
        default:
                snprintf(buf, bufsz, "%s", npsd_json_type_name(v));
                break;
        }
        return buf;
}

/* Optional fields: absent and JSON null are the same thing. */
static json_t *npsd_get(json_t *obj, const char *name) {
        json_t *v = json_object_get(obj, name);

        return json_is_null(v) ? NULL : v;
}

static int npsd_get_id(json_t *obj, const char *name, const char **out,
                       npsd_reject_t *rj) {
        json_t *v = npsd_get(obj, name);
        const char *s;
        size_t len;
        char got[96];

        if (!v) {
                npsd_reject_set(rj, NPSD_REJECT_MISSING_FIELD, name,
                                "missing required field %s", name);
                return -1;
        }
        if (!json_is_string(v)) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                "%s must be a string identifier, got %s", name,
                                npsd_describe(v, got, sizeof(got)));
                return -1;
        }
        s = json_string_value(v);
        len = json_string_length(v);
        if (len == 0) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                "%s must not be empty", name);
                return -1;
        }
        if (len > NPSD_ID_MAX) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                "%s is %zu characters, limit is %d", name, len,
                                NPSD_ID_MAX);
                return -1;
        }
        for (size_t i = 0; i < len; i++) {
                if (!npsd_id_char((unsigned char)s[i])) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                        "%s has an invalid character at "
                                        "offset %zu (allowed: A-Z a-z 0-9 . _ "
                                        ": @ -)",
                                        name, i);
                        return -1;
                }
        }
        *out = s;
        return 0;
}

/* Optional string of at most max bytes. Empty strings count as absent so
 * downstream code never sees "" as a cohort, owner or feature name. */
static int npsd_get_str(json_t *obj, const char *name, size_t max,
                        const char **out, npsd_reject_t *rj) {
        json_t *v = npsd_get(obj, name);
        char got[96];

        *out = NULL;
        if (!v)
                return 0;
        if (!json_is_string(v)) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                "%s must be a string, got %s", name,
                                npsd_describe(v, got, sizeof(got)));
                return -1;
        }
        if (json_string_length(v) > max) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                "%s is %zu bytes, limit is %zu", name,
                                json_string_length(v), max);
                return -1;
        }
        if (json_string_length(v) > 0)
                *out = json_string_value(v);
        return 0;
}

/* Timestamps: an RFC 3339 string with any offset, or a non-negative JSON
 * integer of epoch milliseconds. Reals are refused: 1.7e12 has lost its
 * milliseconds already and usually means epoch seconds were meant. */
static int npsd_get_ts(json_t *obj, const char *name, int required,
                       int64_t now_ms, const npsd_parse_limits_t *limits,
                       int64_t *out, int *present, npsd_reject_t *rj) {
        json_t *v = npsd_get(obj, name);
        int64_t ms;
        char got[96], b1[NPSD_TIME_BUFSZ], b2[NPSD_TIME_BUFSZ];

        *present = 0;
        if (!v) {
                if (!required)
                        return 0;
                npsd_reject_set(rj, NPSD_REJECT_MISSING_FIELD, name,
                                "missing required field %s", name);
                return -1;
        }
        if (json_is_integer(v)) {
                ms = (int64_t)json_integer_value(v);
                if (ms < 0) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                        "%s must be an RFC 3339 timestamp or "
                                        "non-negative epoch milliseconds, got "
                                        "%lld",
                                        name, (long long)ms);
                        return -1;
                }
        } else if (json_is_string(v)) {
                if (npsd_time_parse_rfc3339(json_string_value(v),
                                            json_string_length(v), &ms) < 0) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                        "%s is not a valid RFC 3339 "
                                        "timestamp, got %s",
                                        name,
                                        npsd_describe(v, got, sizeof(got)));
                        return -1;
                }
        } else {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                                "%s must be an RFC 3339 timestamp or epoch "
                                "milliseconds, got %s",
                                name, npsd_describe(v, got, sizeof(got)));
                return -1;
        }
        /* ms > now + allowance, written so that neither side overflows for
         * extreme epoch-ms integers. */
        if (ms > now_ms &&
            (uint64_t)ms - (uint64_t)now_ms > (uint64_t)limits->future_allowance_ms) {
                npsd_reject_set(rj, NPSD_REJECT_TIMESTAMP_IN_FUTURE, name,
                                "%s %s is more than %lld s after now (%s)",
                                name, npsd_time_format(ms, b1),
                                (long long)(limits->future_allowance_ms / 1000),
                                npsd_time_format(now_ms, b2));
                return -1;
        }
        *out = ms;
        *present = 1;
        return 0;
}

/* Optional value restricted to a fixed set; returns the index in names[]
 * or def when absent. */
static int npsd_get_enum(json_t *obj, const char *name, const char *const *names,
                         int n, int def, int *out, npsd_reject_t *rj) {
        json_t *v = npsd_get(obj, name);
        char got[96], allowed[160];
        size_t off = 0;

        *out = def;
        if (!v)
                return 0;
        if (json_is_string(v)) {
                for (int i = 0; i < n; i++) {
                        if (!strcmp(json_string_value(v), names[i])) {
                                *out = i;
                                return 0;
                        }
                }
        }
        allowed[0] = '\0';
        for (int i = 0; i < n && off < sizeof(allowed); i++)
                off += (size_t)snprintf(allowed + off, sizeof(allowed) - off,
                                        "%s%s", i ? ", " : "", names[i]);
        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, name,
                        "%s must be one of %s, got %s", name, allowed,
                        npsd_describe(v, got, sizeof(got)));
        return -1;
}

/* Accepts a JSON integer, or a real with no fractional part (9.0), in
 * [lo, hi]. */
static int npsd_integral(const json_t *v, int64_t lo, int64_t hi,
                         int64_t *out) {
        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);

                if (i < lo || i > hi)
                        return -1;
                *out = (int64_t)i;
                return 0;
        }
        if (json_is_real(v)) {
                double d = json_real_value(v);

                /* Range check first: casting an out-of-range double to
                 * int64_t is undefined behaviour. */
                if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
                        return -1;
                *out = (int64_t)d;
                if (*out < lo || *out > hi)
                        return -1;
                return 0;
        }
        return -1;
}

static int npsd_parse_score(json_t *obj, npsd_response_t *r,
                            npsd_reject_t *rj) {
        json_t *v = npsd_get(obj, "score");
        int64_t score;
        char got[96];

        if (!v) {
                npsd_reject_set(rj, NPSD_REJECT_MISSING_FIELD, "score",
                                "missing required field score");
                return -1;
        }
        if (npsd_integral(v, 0, 10, &score) < 0) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, "score",
                                "score must be an integer 0-10, got %s",
                                npsd_describe(v, got, sizeof(got)));
                return -1;
        }
        r->score = (int)score;
        r->category = npsd_category_of(r->score);
        return 0;
}

static int npsd_parse_role(json_t *obj, npsd_response_t *r,
                           npsd_reject_t *rj) {
        json_t *v = npsd_get(obj, "role");
        char got[96];

        r->role = NPSD_ROLE_OTHER;
        if (!v)
                return 0;
        if (!json_is_string(v)) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, "role",
                                "role must be a string, got %s",
                                npsd_describe(v, got, sizeof(got)));
                return -1;
        }
        r->role = npsd_role_from_string(json_string_value(v));
        return 0;
}

/* Comments are kept up to limits->max_comment_bytes; longer ones are cut on
 * a character boundary into an owned copy (the JSON document's string must
 * stay intact as jansson owns it). */
static int npsd_parse_comment(json_t *obj, npsd_event_t *ev,
                              const npsd_parse_limits_t *limits,
                              npsd_reject_t *rj) {
        npsd_response_t *r = &ev->u.response;
        json_t *v = npsd_get(obj, "comment");
        const char *s;
        size_t len, cut;
        char got[96];

        if (!v)
                return 0;
        if (!json_is_string(v)) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, "comment",
                                "comment must be a string, got %s",
                                npsd_describe(v, got, sizeof(got)));
                return -1;
        }
        s = json_string_value(v);
        len = json_string_length(v);
        if (len == 0)
                return 0;
        cut = npsd_utf8_cut(s, len, limits->max_comment_bytes);
        if (cut < len) {
                if (!(ev->comment_copy = malloc(cut + 1))) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD,
                                        "comment",
                                        "out of memory copying comment");
                        return -1;
                }
                memcpy(ev->comment_copy, s, cut);
                ev->comment_copy[cut] = '\0';
                s = ev->comment_copy;
        }
        r->comment = s;
        r->comment_len = cut;
        return 0;
}

static int npsd_attr_key_valid(const char *k) {
        size_t len = strlen(k);

        if (len < 1 || len > NPSD_ATTR_KEY_MAX)
                return 0;
        for (size_t i = 0; i < len; i++)
                if (!npsd_id_char((unsigned char)k[i]))
                        return 0;
        return 1;
}

/* attributes feed cohort keys, so they must be small and flat: at most
 * NPSD_ATTR_MAX entries, identifier-like keys, string values. */
static int npsd_parse_attributes(json_t *obj, npsd_response_t *r,
                                 npsd_reject_t *rj) {
        json_t *v = npsd_get(obj, "attributes");
        const char *k;
        json_t *val;
        char got[96], field[96], q[NPSD_QUOTE_MAX + 8];

        if (!v)
                return 0;
        if (!json_is_object(v)) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, "attributes",
                                "attributes must be an object of string "
                                "values, got %s",
                                npsd_describe(v, got, sizeof(got)));
                return -1;
        }
        if (json_object_size(v) > NPSD_ATTR_MAX) {
                npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, "attributes",
                                "attributes has %zu entries, limit is %d",
                                json_object_size(v), NPSD_ATTR_MAX);
                return -1;
        }
        json_object_foreach(v, k, val) {
                if (!npsd_attr_key_valid(k)) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD,
                                        "attributes",
                                        "attributes key %s is not a valid "
                                        "name (1-%d of A-Z a-z 0-9 . _ : @ -)",
                                        npsd_quote(k, strlen(k), q, sizeof(q)),
                                        NPSD_ATTR_KEY_MAX);
                        return -1;
                }
                snprintf(field, sizeof(field), "attributes.%s", k);
                if (!json_is_string(val)) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, field,
                                        "%s must be a string, got %s", field,
                                        npsd_describe(val, got, sizeof(got)));
                        return -1;
                }
                if (json_string_length(val) > NPSD_LONG_MAX) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, field,
                                        "%s is %zu bytes, limit is %d", field,
                                        json_string_length(val),
                                        NPSD_LONG_MAX);
                        return -1;
                }
        }
        r->attributes = v;
        return 0;
}

static int npsd_parse_response(json_t *root, npsd_event_t *ev, int64_t now_ms,
                               const npsd_parse_limits_t *limits,
                               npsd_reject_t *rj) {
        static const char *const surveys[] = {"relationship", "transactional"};
        npsd_response_t *r = &ev->u.response;
        int present, survey;

        if (npsd_get_id(root, "event_id", &r->event_id, rj) < 0 ||
            npsd_get_id(root, "account_id", &r->account_id, rj) < 0 ||
            npsd_get_id(root, "user_id", &r->user_id, rj) < 0 ||
            npsd_parse_score(root, r, rj) < 0 ||
            npsd_get_ts(root, "submitted_at", 1, now_ms, limits,
                        &r->submitted_at_ms, &present, rj) < 0 ||
            npsd_parse_role(root, r, rj) < 0 ||
            npsd_get_enum(root, "survey_type", surveys, 2,
                          NPSD_SURVEY_RELATIONSHIP, &survey, rj) < 0 ||
            npsd_get_str(root, "trigger", NPSD_SHORT_MAX, &r->trigger, rj) < 0 ||
            npsd_get_str(root, "channel", NPSD_SHORT_MAX, &r->channel, rj) < 0 ||
            npsd_get_str(root, "language", NPSD_SHORT_MAX, &r->language, rj) < 0 ||
            npsd_parse_comment(root, ev, limits, rj) < 0 ||
            npsd_parse_attributes(root, r, rj) < 0)
                return -1;
        r->survey_type = (npsd_survey_t)survey;
        return 0;
}

static int npsd_parse_usage(json_t *root, npsd_event_t *ev, int64_t now_ms,
                            const npsd_parse_limits_t *limits,
                            npsd_reject_t *rj) {
        static const struct {
                const char *name;
                npsd_usage_type_t type;
        } types[] = {
                {"session", NPSD_USAGE_SESSION},
                {"feature_used", NPSD_USAGE_FEATURE_USED},
                {"error", NPSD_USAGE_ERROR},
                {"ticket_opened", NPSD_USAGE_TICKET_OPENED},
                {"ticket_closed", NPSD_USAGE_TICKET_CLOSED},
        };
        npsd_usage_t *u = &ev->u.usage;
        const char *type;
        int present;

        if (npsd_get_id(root, "event_id", &u->event_id, rj) < 0 ||
            npsd_get_id(root, "account_id", &u->account_id, rj) < 0 ||
            npsd_get_id(root, "user_id", &u->user_id, rj) < 0 ||
            npsd_get_ts(root, "occurred_at", 1, now_ms, limits,
                        &u->occurred_at_ms, &present, rj) < 0 ||
            npsd_get_str(root, "type", NPSD_SHORT_MAX, &type, rj) < 0 ||
            npsd_get_str(root, "feature", NPSD_SHORT_MAX, &u->feature, rj) < 0)
                return -1;
        u->type = NPSD_USAGE_OTHER;
        for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++) {
                if (!strcmp(type, types[i].name)) {
                        u->type = types[i].type;
                        break;
                }
        }
        return 0;
}

static int npsd_parse_account(json_t *root, npsd_event_t *ev, int64_t now_ms,
                              const npsd_parse_limits_t *limits,
                              npsd_reject_t *rj) {
        static const char *const segments[] = {"smb", "mid_market",
                                               "enterprise"};
        npsd_account_t *a = &ev->u.account;
        json_t *v;
        int seg;
        char got[96];

        if (npsd_get_id(root, "account_id", &a->account_id, rj) < 0 ||
            npsd_get_str(root, "name", NPSD_LONG_MAX, &a->name, rj) < 0 ||
            npsd_get_enum(root, "segment", segments, 3, -1, &seg, rj) < 0 ||
            npsd_get_str(root, "plan", NPSD_LONG_MAX, &a->plan, rj) < 0)
                return -1;
        a->segment = seg >= 0 ? segments[seg] : NULL;

        if ((v = npsd_get(root, "arr"))) {
                if (!json_is_number(v) || json_number_value(v) < 0) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD, "arr",
                                        "arr must be a number >= 0, got %s",
                                        npsd_describe(v, got, sizeof(got)));
                        return -1;
                }
                a->has_arr = 1;
                a->arr = json_number_value(v);
        }
        if ((v = npsd_get(root, "seats"))) {
                if (npsd_integral(v, 0, INT64_MAX / 2, &a->seats) < 0) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD,
                                        "seats",
                                        "seats must be an integer >= 0, got %s",
                                        npsd_describe(v, got, sizeof(got)));
                        return -1;
                }
                a->has_seats = 1;
        }
        if ((v = npsd_get(root, "renewal_date"))) {
                if (!json_is_string(v) ||
                    npsd_date_parse(json_string_value(v), json_string_length(v),
                                    &a->renewal_day) < 0) {
                        npsd_reject_set(rj, NPSD_REJECT_INVALID_FIELD,
                                        "renewal_date",
                                        "renewal_date must be a date "
                                        "YYYY-MM-DD, got %s",
                                        npsd_describe(v, got, sizeof(got)));
                        return -1;
                }
                a->has_renewal = 1;
        }
        if (npsd_get_str(root, "lifecycle_stage", NPSD_SHORT_MAX,
                         &a->lifecycle_stage, rj) < 0 ||
            npsd_get_str(root, "csm_owner", NPSD_LONG_MAX, &a->csm_owner, rj) < 0 ||
            npsd_get_ts(root, "updated_at", 0, now_ms, limits,
                        &a->updated_at_ms, &a->has_updated_at, rj) < 0)
                return -1;
        return 0;
}

static int npsd_parse_followup(json_t *root, npsd_event_t *ev, int64_t now_ms,
                               const npsd_parse_limits_t *limits,
                               npsd_reject_t *rj) {
        static const char *const actions[] = {"acknowledged", "routed",
                                              "closed"};
        npsd_followup_t *f = &ev->u.followup;
        int action, present;

        if (npsd_get_id(root, "event_id", &f->event_id, rj) < 0 ||
            npsd_get_id(root, "account_id", &f->account_id, rj) < 0 ||
            npsd_get_id(root, "response_event_id", &f->response_event_id,
                        rj) < 0)
                return -1;
        if (!npsd_get(root, "action")) {
                npsd_reject_set(rj, NPSD_REJECT_MISSING_FIELD, "action",
                                "missing required field action");
                return -1;
        }
        if (npsd_get_enum(root, "action", actions, 3, -1, &action, rj) < 0 ||
            npsd_get_ts(root, "at", 1, now_ms, limits, &f->at_ms, &present,
                        rj) < 0 ||
            npsd_get_str(root, "owner", NPSD_SHORT_MAX, &f->owner, rj) < 0 ||
            npsd_get_str(root, "team", NPSD_SHORT_MAX, &f->team, rj) < 0)
                return -1;
        f->action = (npsd_followup_action_t)action;
        return 0;
}

int npsd_event_parse(npsd_kind_t kind, const void *payload, size_t len,
                     int64_t now_ms, const npsd_parse_limits_t *limits,
                     npsd_event_t *event, npsd_reject_t *reject) {
        npsd_parse_limits_t deflimits;
        json_error_t jerr;
        json_t *root = NULL;
        size_t bad;
        int r;

        memset(event, 0, sizeof(*event));
        memset(reject, 0, sizeof(*reject));
        event->kind = kind;
        if (!limits) {
                npsd_parse_limits_default(&deflimits);
                limits = &deflimits;
        }

        if (len > limits->max_message_bytes) {
                npsd_reject_set(reject, NPSD_REJECT_TOO_LARGE, "",
                                "message is %zu bytes, limit is %zu", len,
                                limits->max_message_bytes);
                goto fail;
        }
        if (!payload) {
                npsd_reject_set(reject, NPSD_REJECT_INVALID_JSON, "",
                                "message has no value (a tombstone)");
                goto fail;
        }
        if (len == 0) {
                npsd_reject_set(reject, NPSD_REJECT_INVALID_JSON, "",
                                "message is empty");
                goto fail;
        }
        if ((bad = npsd_utf8_check(payload, len)) != len) {
                npsd_reject_set(reject, NPSD_REJECT_INVALID_JSON, "",
                                "message is not valid UTF-8 (byte 0x%02x at "
                                "offset %zu)",
                                ((const unsigned char *)payload)[bad], bad);
                goto fail;
        }
        /* JSON_DECODE_ANY so that a bare scalar ("5", "\"x\"") parses and is
         * reported as not_an_object rather than invalid_json. Duplicate keys
         * are allowed (last one wins), as in most JSON producers. */
        if (!(root = json_loadb(payload, len, JSON_DECODE_ANY, &jerr))) {
                npsd_reject_set(reject, NPSD_REJECT_INVALID_JSON, "",
                                "invalid JSON at line %d column %d "
                                "(byte %d): %.160s",
                                jerr.line, jerr.column, jerr.position,
                                jerr.text);
                goto fail;
        }
        if (!json_is_object(root)) {
                npsd_reject_set(reject, NPSD_REJECT_NOT_AN_OBJECT, "",
                                "message must be a JSON object, got %s",
                                json_typeof(root) == JSON_ARRAY ? "an array"
                                                                : npsd_json_type_name(root));
                goto fail;
        }

        switch (kind) {
        case NPSD_KIND_RESPONSE:
                r = npsd_parse_response(root, event, now_ms, limits, reject);
                break;
        case NPSD_KIND_USAGE:
                r = npsd_parse_usage(root, event, now_ms, limits, reject);
                break;
        case NPSD_KIND_ACCOUNT:
                r = npsd_parse_account(root, event, now_ms, limits, reject);
                break;
        case NPSD_KIND_FOLLOWUP:
                r = npsd_parse_followup(root, event, now_ms, limits, reject);
                break;
        default:
                npsd_reject_set(reject, NPSD_REJECT_INVALID_JSON, "",
                                "unknown input kind %d", (int)kind);
                r = -1;
                break;
        }
        if (r < 0)
                goto fail;
        event->root = root;
        return 0;

fail:
        free(event->comment_copy);
        if (root)
                json_decref(root);
        memset(event, 0, sizeof(*event));
        event->kind = kind;
        return -1;
}

void npsd_event_clear(npsd_event_t *event) {
        npsd_kind_t kind;

        if (!event)
                return;
        kind = event->kind;
        free(event->comment_copy);
        if (event->root)
                json_decref(event->root);
        memset(event, 0, sizeof(*event));
        event->kind = kind;
}
