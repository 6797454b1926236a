/*
 * Unit tests for npsd_event: SPEC §2 validation of the four input kinds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_event.h"
#include "npsd/npsd_time.h"

#define NOW_MS 1795168800000LL /* 2026-11-20T10:00:00Z */
#define HOUR_MS 3600000LL

static const char *base_json[] = {
        [NPSD_KIND_RESPONSE] =
                "{\"event_id\":\"r-1\",\"account_id\":\"acme\","
                "\"user_id\":\"u@acme.com\",\"score\":9,"
                "\"submitted_at\":\"2026-11-20T09:00:00Z\"}",
        [NPSD_KIND_USAGE] =
                "{\"event_id\":\"x-1\",\"account_id\":\"acme\","
                "\"user_id\":\"u1\",\"occurred_at\":\"2026-11-19T09:00:00Z\"}",
        [NPSD_KIND_ACCOUNT] = "{\"account_id\":\"acme\"}",
        [NPSD_KIND_FOLLOWUP] =
                "{\"event_id\":\"f-1\",\"account_id\":\"acme\","
                "\"response_event_id\":\"r-1\",\"action\":\"routed\","
                "\"at\":\"2026-11-20T09:30:00Z\"}",
};

static npsd_parse_limits_t limits;

static int setup(void **state) {
        (void)state;
        npsd_parse_limits_default(&limits);
        return 0;
}

/* The base message of a kind with one field replaced (val_json != NULL) or
 * removed (val_json == NULL). Returns a malloc'd JSON text. */
static char *with_field(npsd_kind_t kind, const char *key,
                        const char *val_json) {
        json_error_t err;
        json_t *o = json_loads(base_json[kind], 0, &err);
        char *s;

        assert_non_null(o);
        if (val_json) {
                json_t *v = json_loads(val_json, JSON_DECODE_ANY, &err);

                if (!v)
                        fail_msg("bad test value %s: %s", val_json, err.text);
                json_object_set_new(o, key, v);
        } else {
                json_object_del(o, key);
        }
        s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return s;
}

static void parse_ok_str(npsd_kind_t kind, const char *s, npsd_event_t *ev) {
        npsd_reject_t rj;

        if (npsd_event_parse(kind, s, strlen(s), NOW_MS, &limits, ev, &rj))
                fail_msg("rejected %s: %s field=%s detail=%s", s,
                         npsd_reject_reason_name(rj.reason), rj.field,
                         rj.detail);
        assert_int_equal(ev->kind, kind);
        assert_non_null(ev->root);
}

/* Expects a rejection; detail is matched exactly, or as a substring when
 * it starts with '~'. */
static void reject_str(npsd_kind_t kind, const char *s, size_t len,
                       npsd_reject_reason_t reason, const char *field,
                       const char *detail) {
        npsd_event_t ev;
        npsd_reject_t rj;

        if (!npsd_event_parse(kind, s, len, NOW_MS, &limits, &ev, &rj)) {
                npsd_event_clear(&ev);
                fail_msg("accepted %.*s", (int)len, s);
        }
        if (rj.reason != reason || strcmp(rj.field, field))
                fail_msg("%.*s: got %s field=\"%s\" detail=\"%s\", want %s "
                         "field=\"%s\"",
                         (int)(len > 200 ? 200 : len), s,
                         npsd_reject_reason_name(rj.reason), rj.field,
                         rj.detail, npsd_reject_reason_name(reason), field);
        if (detail) {
                if (detail[0] == '~') {
                        if (!strstr(rj.detail, detail + 1))
                                fail_msg("detail \"%s\" lacks \"%s\"",
                                         rj.detail, detail + 1);
                } else {
                        assert_string_equal(rj.detail, detail);
                }
        }
        assert_true(rj.detail[0] != '\0');
        assert_null(ev.root);
        assert_null(ev.comment_copy);
}

static void reject_field(npsd_kind_t kind, const char *key,
                         const char *val_json, npsd_reject_reason_t reason,
                         const char *field, const char *detail) {
        char *s = with_field(kind, key, val_json);

        reject_str(kind, s, strlen(s), reason, field, detail);
        free(s);
}

static void accept_field(npsd_kind_t kind, const char *key,
                         const char *val_json, npsd_event_t *ev) {
        char *s = with_field(kind, key, val_json);

        parse_ok_str(kind, s, ev);
        free(s);
}

/* ---- whole-message rejections ---------------------------------------- */

static void test_too_large(void **state) {
        size_t n = limits.max_message_bytes + 1;
        char *big = malloc(n);
        char detail[128];

        (void)state;
        memset(big, ' ', n);
        big[0] = '{';
        big[n - 1] = '}';
        snprintf(detail, sizeof(detail), "message is %zu bytes, limit is %zu",
                 n, limits.max_message_bytes);
        reject_str(NPSD_KIND_RESPONSE, big, n, NPSD_REJECT_TOO_LARGE, "",
                   detail);
        /* Too large wins even over invalid UTF-8. */
        big[5] = (char)0xff;
        reject_str(NPSD_KIND_USAGE, big, n, NPSD_REJECT_TOO_LARGE, "", detail);
        free(big);
}

static void test_size_limit_exact(void **state) {
        /* A message of exactly the limit is accepted (padding is JSON
         * whitespace). */
        size_t n = limits.max_message_bytes;
        const char *b = base_json[NPSD_KIND_ACCOUNT];
        char *msg = malloc(n);
        npsd_event_t ev;
        npsd_reject_t rj;

        (void)state;
        memset(msg, ' ', n);
        memcpy(msg, b, strlen(b));
        assert_int_equal(npsd_event_parse(NPSD_KIND_ACCOUNT, msg, n, NOW_MS,
                                          &limits, &ev, &rj),
                         0);
        npsd_event_clear(&ev);
        free(msg);
}

static void test_invalid_json(void **state) {
        (void)state;
        reject_str(NPSD_KIND_RESPONSE, "", 0, NPSD_REJECT_INVALID_JSON, "",
                   "message is empty");
        /* a Kafka tombstone has no value at all */
        reject_str(NPSD_KIND_ACCOUNT, NULL, 0, NPSD_REJECT_INVALID_JSON, "",
                   "message has no value (a tombstone)");
        reject_str(NPSD_KIND_RESPONSE, "{\"a\":", 5, NPSD_REJECT_INVALID_JSON,
                   "", "~invalid JSON at line 1");
        reject_str(NPSD_KIND_RESPONSE, "not json", 8,
                   NPSD_REJECT_INVALID_JSON, "", "~invalid JSON");
        reject_str(NPSD_KIND_RESPONSE, "{} {}", 5, NPSD_REJECT_INVALID_JSON,
                   "", "~end of file expected");
        /* Invalid UTF-8 (a lone continuation byte, an overlong, a
         * surrogate) is invalid_json too. */
        reject_str(NPSD_KIND_RESPONSE, "{\"a\":\"\x80\"}", 8,
                   NPSD_REJECT_INVALID_JSON, "",
                   "message is not valid UTF-8 (byte 0x80 at offset 6)");
        reject_str(NPSD_KIND_RESPONSE, "{\"a\":\"\xc0\xaf\"}", 9,
                   NPSD_REJECT_INVALID_JSON, "", "~not valid UTF-8");
        reject_str(NPSD_KIND_RESPONSE, "{\"a\":\"\xed\xa0\x80\"}", 10,
                   NPSD_REJECT_INVALID_JSON, "", "~not valid UTF-8");
        /* An escaped NUL cannot become a C string. */
        reject_str(NPSD_KIND_RESPONSE, "{\"a\":\"\\u0000\"}", 14,
                   NPSD_REJECT_INVALID_JSON, "", "~invalid JSON");
}

static void test_not_an_object(void **state) {
        (void)state;
        reject_str(NPSD_KIND_RESPONSE, "[1,2]", 5, NPSD_REJECT_NOT_AN_OBJECT,
                   "", "message must be a JSON object, got an array");
        reject_str(NPSD_KIND_USAGE, "42", 2, NPSD_REJECT_NOT_AN_OBJECT, "",
                   "message must be a JSON object, got integer");
        reject_str(NPSD_KIND_ACCOUNT, "\"x\"", 3, NPSD_REJECT_NOT_AN_OBJECT,
                   "", "message must be a JSON object, got string");
        reject_str(NPSD_KIND_FOLLOWUP, "null", 4, NPSD_REJECT_NOT_AN_OBJECT,
                   "", "message must be a JSON object, got null");
}

/* ---- responses -------------------------------------------------------- */

static void test_response_valid(void **state) {
        npsd_event_t ev;
        const char *s =
                "{\"event_id\":\"r-1\",\"account_id\":\"acme\","
                "\"user_id\":\"u@acme.com\",\"score\":6,"
                "\"submitted_at\":\"2026-11-20T09:00:00Z\",\"role\":\"admin\","
                "\"survey_type\":\"transactional\",\"trigger\":\"support_ticket\","
                "\"channel\":\"in_app\",\"language\":\"de\","
                "\"comment\":\"slow exports\",\"attributes\":{\"region\":\"emea\"},"
                "\"unknown\":[1,2,{\"x\":null}]}";
        npsd_response_t *r = &ev.u.response;

        (void)state;
        parse_ok_str(NPSD_KIND_RESPONSE, s, &ev);
        assert_string_equal(r->event_id, "r-1");
        assert_string_equal(r->account_id, "acme");
        assert_string_equal(r->user_id, "u@acme.com");
        assert_int_equal(r->score, 6);
        assert_int_equal(r->category, NPSD_CAT_DETRACTOR);
        assert_int_equal(r->submitted_at_ms, NOW_MS - HOUR_MS);
        assert_int_equal(r->role, NPSD_ROLE_ADMIN);
        assert_int_equal(r->survey_type, NPSD_SURVEY_TRANSACTIONAL);
        assert_string_equal(r->trigger, "support_ticket");
        assert_string_equal(r->channel, "in_app");
        assert_string_equal(r->language, "de");
        assert_string_equal(r->comment, "slow exports");
        assert_int_equal(r->comment_len, 12);
        assert_null(ev.comment_copy);
        assert_non_null(r->attributes);
        assert_string_equal(json_string_value(json_object_get(r->attributes,
                                                              "region")),
                            "emea");
        npsd_event_clear(&ev);
        assert_null(ev.root);
        npsd_event_clear(&ev); /* idempotent */
}

static void test_response_defaults(void **state) {
        npsd_event_t ev;
        npsd_response_t *r = &ev.u.response;

        (void)state;
        parse_ok_str(NPSD_KIND_RESPONSE, base_json[NPSD_KIND_RESPONSE], &ev);
        assert_int_equal(r->role, NPSD_ROLE_OTHER);
        assert_int_equal(r->survey_type, NPSD_SURVEY_RELATIONSHIP);
        assert_null(r->trigger);
        assert_null(r->channel);
        assert_null(r->language);
        assert_null(r->comment);
        assert_int_equal(r->comment_len, 0);
        assert_null(r->attributes);
        assert_int_equal(r->category, NPSD_CAT_PROMOTER);
        npsd_event_clear(&ev);

        /* null is the same as absent for optional fields. */
        accept_field(NPSD_KIND_RESPONSE, "comment", "null", &ev);
        assert_null(r->comment);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "role", "null", &ev);
        assert_int_equal(r->role, NPSD_ROLE_OTHER);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "survey_type", "null", &ev);
        assert_int_equal(r->survey_type, NPSD_SURVEY_RELATIONSHIP);
        npsd_event_clear(&ev);
        /* Empty optional strings count as absent. */
        accept_field(NPSD_KIND_RESPONSE, "channel", "\"\"", &ev);
        assert_null(r->channel);
        npsd_event_clear(&ev);
}

static void test_response_required(void **state) {
        static const char *req[] = {"event_id", "account_id", "user_id",
                                    "score", "submitted_at"};
        char detail[64];

        (void)state;
        for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
                snprintf(detail, sizeof(detail), "missing required field %s",
                         req[i]);
                reject_field(NPSD_KIND_RESPONSE, req[i], NULL,
                             NPSD_REJECT_MISSING_FIELD, req[i], detail);
                reject_field(NPSD_KIND_RESPONSE, req[i], "null",
                             NPSD_REJECT_MISSING_FIELD, req[i], detail);
        }
        reject_str(NPSD_KIND_RESPONSE, "{}", 2, NPSD_REJECT_MISSING_FIELD,
                   "event_id", "missing required field event_id");
}

static void test_score(void **state) {
        npsd_event_t ev;

        (void)state;
        for (int s = 0; s <= 10; s++) {
                char v[8];

                snprintf(v, sizeof(v), "%d", s);
                accept_field(NPSD_KIND_RESPONSE, "score", v, &ev);
                assert_int_equal(ev.u.response.score, s);
                assert_int_equal(ev.u.response.category,
                                 s >= 9 ? NPSD_CAT_PROMOTER
                                        : s >= 7 ? NPSD_CAT_PASSIVE
                                                 : NPSD_CAT_DETRACTOR);
                npsd_event_clear(&ev);
        }
        accept_field(NPSD_KIND_RESPONSE, "score", "9.0", &ev);
        assert_int_equal(ev.u.response.score, 9);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "score", "0.0", &ev);
        assert_int_equal(ev.u.response.score, 0);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "score", "1e1", &ev);
        assert_int_equal(ev.u.response.score, 10);
        npsd_event_clear(&ev);

        reject_field(NPSD_KIND_RESPONSE, "score", "9.5",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got 9.5");
        reject_field(NPSD_KIND_RESPONSE, "score", "\"9\"",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got string \"9\"");
        reject_field(NPSD_KIND_RESPONSE, "score", "true",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got true");
        reject_field(NPSD_KIND_RESPONSE, "score", "false",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got false");
        reject_field(NPSD_KIND_RESPONSE, "score", "11",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got 11");
        reject_field(NPSD_KIND_RESPONSE, "score", "-1",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got -1");
        reject_field(NPSD_KIND_RESPONSE, "score", "10.5",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got 10.5");
        reject_field(NPSD_KIND_RESPONSE, "score", "11.0",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got 11");
        reject_field(NPSD_KIND_RESPONSE, "score", "1e300",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got 1e+300");
        reject_field(NPSD_KIND_RESPONSE, "score", "[9]",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got array");
        reject_field(NPSD_KIND_RESPONSE, "score", "{}",
                     NPSD_REJECT_INVALID_FIELD, "score",
                     "score must be an integer 0-10, got object");
}

static void test_timestamps(void **state) {
        npsd_event_t ev;
        char v[64];

        (void)state;
        /* Epoch milliseconds. */
        snprintf(v, sizeof(v), "%lld", (long long)(NOW_MS - 1234));
        accept_field(NPSD_KIND_RESPONSE, "submitted_at", v, &ev);
        assert_int_equal(ev.u.response.submitted_at_ms, NOW_MS - 1234);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "submitted_at", "0", &ev);
        assert_int_equal(ev.u.response.submitted_at_ms, 0);
        npsd_event_clear(&ev);

        /* Offsets near midnight land on the right UTC day. */
        accept_field(NPSD_KIND_RESPONSE, "submitted_at",
                     "\"2026-11-20T00:30:00+02:00\"", &ev);
        assert_int_equal(npsd_time_day(ev.u.response.submitted_at_ms),
                         npsd_days_from_civil(2026, 11, 19));
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "submitted_at",
                     "\"2026-11-19T21:00:00-05:00\"", &ev);
        assert_int_equal(npsd_time_day(ev.u.response.submitted_at_ms),
                         npsd_days_from_civil(2026, 11, 20));
        assert_int_equal(ev.u.response.submitted_at_ms,
                         NOW_MS - 8 * HOUR_MS);
        npsd_event_clear(&ev);

        /* Fractional seconds and lower-case separators. */
        accept_field(NPSD_KIND_RESPONSE, "submitted_at",
                     "\"2026-11-20t09:59:59.250z\"", &ev);
        assert_int_equal(ev.u.response.submitted_at_ms, NOW_MS - 750);
        npsd_event_clear(&ev);

        /* Exactly now + 1 h is accepted; 1 ms later is in the future. */
        snprintf(v, sizeof(v), "%lld", (long long)(NOW_MS + HOUR_MS));
        accept_field(NPSD_KIND_RESPONSE, "submitted_at", v, &ev);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "submitted_at",
                     "\"2026-11-20T11:00:00Z\"", &ev);
        npsd_event_clear(&ev);
        snprintf(v, sizeof(v), "%lld", (long long)(NOW_MS + HOUR_MS + 1));
        reject_field(NPSD_KIND_RESPONSE, "submitted_at", v,
                     NPSD_REJECT_TIMESTAMP_IN_FUTURE, "submitted_at",
                     "submitted_at 2026-11-20T11:00:00.001Z is more than "
                     "3600 s after now (2026-11-20T10:00:00Z)");
        reject_field(NPSD_KIND_RESPONSE, "submitted_at",
                     "\"2026-11-20T13:00:00.001+02:00\"",
                     NPSD_REJECT_TIMESTAMP_IN_FUTURE, "submitted_at", NULL);
        reject_field(NPSD_KIND_RESPONSE, "submitted_at",
                     "9223372036854775807", NPSD_REJECT_TIMESTAMP_IN_FUTURE,
                     "submitted_at", NULL);

        /* Invalid forms. */
        reject_field(NPSD_KIND_RESPONSE, "submitted_at", "-1",
                     NPSD_REJECT_INVALID_FIELD, "submitted_at",
                     "submitted_at must be an RFC 3339 timestamp or "
                     "non-negative epoch milliseconds, got -1");
        reject_field(NPSD_KIND_RESPONSE, "submitted_at", "1795168800000.0",
                     NPSD_REJECT_INVALID_FIELD, "submitted_at",
                     "~got 1.79517e+12");
        reject_field(NPSD_KIND_RESPONSE, "submitted_at", "true",
                     NPSD_REJECT_INVALID_FIELD, "submitted_at",
                     "~got true");
        reject_field(NPSD_KIND_RESPONSE, "submitted_at", "\"2026-11-20\"",
                     NPSD_REJECT_INVALID_FIELD, "submitted_at",
                     "submitted_at is not a valid RFC 3339 timestamp, got "
                     "string \"2026-11-20\"");
        reject_field(NPSD_KIND_RESPONSE, "submitted_at",
                     "\"2026-11-20T10:00:00\"", NPSD_REJECT_INVALID_FIELD,
                     "submitted_at", NULL);
        reject_field(NPSD_KIND_RESPONSE, "submitted_at", "\"yesterday\"",
                     NPSD_REJECT_INVALID_FIELD, "submitted_at", NULL);
}

static void test_future_allowance_limit(void **state) {
        npsd_event_t ev;
        npsd_reject_t rj;
        char *s = with_field(NPSD_KIND_RESPONSE, "submitted_at",
                             "\"2026-11-20T10:00:01Z\"");
        npsd_parse_limits_t l = limits;

        (void)state;
        l.future_allowance_ms = 0;
        assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, s, strlen(s),
                                          NOW_MS, &l, &ev, &rj),
                         -1);
        assert_int_equal(rj.reason, NPSD_REJECT_TIMESTAMP_IN_FUTURE);
        /* NULL limits means the defaults. */
        assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, s, strlen(s),
                                          NOW_MS, NULL, &ev, &rj),
                         0);
        npsd_event_clear(&ev);
        free(s);
}

static void test_role(void **state) {
        static const struct {
                const char *json;
                npsd_role_t role;
        } cases[] = {
                {"\"end_user\"", NPSD_ROLE_END_USER},
                {"\"user\"", NPSD_ROLE_END_USER},
                {"\"admin\"", NPSD_ROLE_ADMIN},
                {"\"decision_maker\"", NPSD_ROLE_DECISION_MAKER},
                {"\"executive\"", NPSD_ROLE_DECISION_MAKER},
                {"\"buyer\"", NPSD_ROLE_DECISION_MAKER},
                {"\"champion\"", NPSD_ROLE_OTHER},
                {"\"Admin\"", NPSD_ROLE_OTHER},
                {"\"\"", NPSD_ROLE_OTHER},
                {"\"other\"", NPSD_ROLE_OTHER},
        };
        npsd_event_t ev;

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                accept_field(NPSD_KIND_RESPONSE, "role", cases[i].json, &ev);
                assert_int_equal(ev.u.response.role, cases[i].role);
                npsd_event_clear(&ev);
        }
        reject_field(NPSD_KIND_RESPONSE, "role", "3",
                     NPSD_REJECT_INVALID_FIELD, "role",
                     "role must be a string, got 3");

        assert_int_equal(npsd_role_from_string(NULL), NPSD_ROLE_OTHER);
        assert_int_equal(npsd_role_from_string("buyer"),
                         NPSD_ROLE_DECISION_MAKER);
        assert_string_equal(npsd_role_name(NPSD_ROLE_END_USER), "end_user");
        assert_string_equal(npsd_role_name(NPSD_ROLE_ADMIN), "admin");
        assert_string_equal(npsd_role_name(NPSD_ROLE_DECISION_MAKER),
                            "decision_maker");
        assert_string_equal(npsd_role_name(NPSD_ROLE_OTHER), "other");
}

static void test_survey_type(void **state) {
        npsd_event_t ev;

        (void)state;
        accept_field(NPSD_KIND_RESPONSE, "survey_type", "\"relationship\"",
                     &ev);
        assert_int_equal(ev.u.response.survey_type, NPSD_SURVEY_RELATIONSHIP);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "survey_type", "\"transactional\"",
                     &ev);
        assert_int_equal(ev.u.response.survey_type,
                         NPSD_SURVEY_TRANSACTIONAL);
        npsd_event_clear(&ev);
        reject_field(NPSD_KIND_RESPONSE, "survey_type", "\"pulse\"",
                     NPSD_REJECT_INVALID_FIELD, "survey_type",
                     "survey_type must be one of relationship, "
                     "transactional, got string \"pulse\"");
        reject_field(NPSD_KIND_RESPONSE, "survey_type", "\"Relationship\"",
                     NPSD_REJECT_INVALID_FIELD, "survey_type", NULL);
        reject_field(NPSD_KIND_RESPONSE, "survey_type", "\"\"",
                     NPSD_REJECT_INVALID_FIELD, "survey_type", NULL);
        reject_field(NPSD_KIND_RESPONSE, "survey_type", "1",
                     NPSD_REJECT_INVALID_FIELD, "survey_type", NULL);
        assert_string_equal(npsd_survey_name(NPSD_SURVEY_RELATIONSHIP),
                            "relationship");
        assert_string_equal(npsd_survey_name(NPSD_SURVEY_TRANSACTIONAL),
                            "transactional");
}

static void test_short_strings(void **state) {
        static const char *fields[] = {"trigger", "channel", "language"};
        char v[80], detail[80];
        npsd_event_t ev;

        (void)state;
        for (size_t i = 0; i < 3; i++) {
                /* 64 bytes ok, 65 rejected. */
                v[0] = '"';
                memset(v + 1, 'a', 64);
                strcpy(v + 65, "\"");
                accept_field(NPSD_KIND_RESPONSE, fields[i], v, &ev);
                npsd_event_clear(&ev);
                strcpy(v + 65, "a\"");
                snprintf(detail, sizeof(detail),
                         "%s is 65 bytes, limit is 64", fields[i]);
                reject_field(NPSD_KIND_RESPONSE, fields[i], v,
                             NPSD_REJECT_INVALID_FIELD, fields[i], detail);
                snprintf(detail, sizeof(detail),
                         "%s must be a string, got 5", fields[i]);
                reject_field(NPSD_KIND_RESPONSE, fields[i], "5",
                             NPSD_REJECT_INVALID_FIELD, fields[i], detail);
        }
}

static void test_comment_truncation(void **state) {
        npsd_event_t ev;
        npsd_reject_t rj;
        npsd_parse_limits_t l = limits;
        /* "héllo" with é = C3 A9: bytes h C3 A9 l l o */
        const char *s = "{\"event_id\":\"r\",\"account_id\":\"a\",\"user_id\":\"u\","
                        "\"score\":3,\"submitted_at\":0,"
                        "\"comment\":\"h\xc3\xa9llo\"}";

        (void)state;
        /* Limit falls inside é: cut before it. */
        l.max_comment_bytes = 2;
        assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, s, strlen(s),
                                          NOW_MS, &l, &ev, &rj),
                         0);
        assert_int_equal(ev.u.response.comment_len, 1);
        assert_string_equal(ev.u.response.comment, "h");
        assert_non_null(ev.comment_copy);
        npsd_event_clear(&ev);
        assert_null(ev.comment_copy);

        /* Limit right after é keeps it whole. */
        l.max_comment_bytes = 3;
        assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, s, strlen(s),
                                          NOW_MS, &l, &ev, &rj),
                         0);
        assert_int_equal(ev.u.response.comment_len, 3);
        assert_string_equal(ev.u.response.comment, "h\xc3\xa9");
        npsd_event_clear(&ev);

        /* Exactly at the limit: no copy. */
        l.max_comment_bytes = 6;
        assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, s, strlen(s),
                                          NOW_MS, &l, &ev, &rj),
                         0);
        assert_int_equal(ev.u.response.comment_len, 6);
        assert_null(ev.comment_copy);
        assert_string_equal(ev.u.response.comment, "h\xc3\xa9llo");
        npsd_event_clear(&ev);

        /* Default limit 8192 with a 4-byte character straddling it. */
        {
                size_t n = 8190;
                char *c = malloc(n + 8);
                json_t *o = json_loads(base_json[NPSD_KIND_RESPONSE], 0, NULL);
                char *msg;

                memset(c, 'x', n);
                memcpy(c + n, "\xf0\x9f\x98\x80zz", 6); /* U+1F600 */
                json_object_set_new(o, "comment", json_stringn(c, n + 6));
                msg = json_dumps(o, JSON_COMPACT);
                parse_ok_str(NPSD_KIND_RESPONSE, msg, &ev);
                assert_int_equal(ev.u.response.comment_len, 8190);
                assert_int_equal(strlen(ev.u.response.comment), 8190);
                npsd_event_clear(&ev);
                free(msg);
                json_decref(o);
                free(c);
        }

        reject_field(NPSD_KIND_RESPONSE, "comment", "{\"a\":1}",
                     NPSD_REJECT_INVALID_FIELD, "comment",
                     "comment must be a string, got object");
}

static void test_attributes(void **state) {
        npsd_event_t ev;
        char *v;
        size_t off;

        (void)state;
        accept_field(NPSD_KIND_RESPONSE, "attributes",
                     "{\"region\":\"emea\",\"tier\":\"gold\"}", &ev);
        assert_int_equal(json_object_size(ev.u.response.attributes), 2);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_RESPONSE, "attributes", "{}", &ev);
        npsd_event_clear(&ev);

        reject_field(NPSD_KIND_RESPONSE, "attributes", "[\"emea\"]",
                     NPSD_REJECT_INVALID_FIELD, "attributes",
                     "attributes must be an object of string values, got "
                     "array");
        reject_field(NPSD_KIND_RESPONSE, "attributes", "\"emea\"",
                     NPSD_REJECT_INVALID_FIELD, "attributes", NULL);
        reject_field(NPSD_KIND_RESPONSE, "attributes", "{\"region\":5}",
                     NPSD_REJECT_INVALID_FIELD, "attributes.region",
                     "attributes.region must be a string, got 5");
        reject_field(NPSD_KIND_RESPONSE, "attributes",
                     "{\"region\":{\"nested\":\"x\"}}",
                     NPSD_REJECT_INVALID_FIELD, "attributes.region",
                     "attributes.region must be a string, got object");
        reject_field(NPSD_KIND_RESPONSE, "attributes", "{\"region\":null}",
                     NPSD_REJECT_INVALID_FIELD, "attributes.region", NULL);
        reject_field(NPSD_KIND_RESPONSE, "attributes", "{\"bad key\":\"x\"}",
                     NPSD_REJECT_INVALID_FIELD, "attributes",
                     "~attributes key \"bad key\" is not a valid name");
        reject_field(NPSD_KIND_RESPONSE, "attributes", "{\"\":\"x\"}",
                     NPSD_REJECT_INVALID_FIELD, "attributes", NULL);

        /* Value of 256 bytes ok, 257 rejected. */
        v = malloc(400);
        off = (size_t)sprintf(v, "{\"k\":\"");
        memset(v + off, 'v', 256);
        strcpy(v + off + 256, "\"}");
        accept_field(NPSD_KIND_RESPONSE, "attributes", v, &ev);
        npsd_event_clear(&ev);
        strcpy(v + off + 256, "v\"}");
        reject_field(NPSD_KIND_RESPONSE, "attributes", v,
                     NPSD_REJECT_INVALID_FIELD, "attributes.k",
                     "attributes.k is 257 bytes, limit is 256");

        /* NPSD_ATTR_MAX entries ok, one more rejected. */
        off = (size_t)sprintf(v, "{");
        for (int i = 0; i < NPSD_ATTR_MAX; i++)
                off += (size_t)sprintf(v + off, "%s\"k%d\":\"v\"",
                                       i ? "," : "", i);
        strcpy(v + off, "}");
        accept_field(NPSD_KIND_RESPONSE, "attributes", v, &ev);
        npsd_event_clear(&ev);
        strcpy(v + off, ",\"extra\":\"v\"}");
        reject_field(NPSD_KIND_RESPONSE, "attributes", v,
                     NPSD_REJECT_INVALID_FIELD, "attributes",
                     "attributes has 33 entries, limit is 32");
        free(v);
}

static void test_identifiers(void **state) {
        char v[140];
        npsd_event_t ev;

        (void)state;
        assert_true(npsd_id_valid("a", 1));
        assert_true(npsd_id_valid("A-z_0.9:x@y", 11));
        assert_false(npsd_id_valid("", 0));
        assert_false(npsd_id_valid("a b", 3));
        assert_false(npsd_id_valid("a/b", 3));
        assert_false(npsd_id_valid("\xc3\xa9", 2));
        assert_false(npsd_id_valid(NULL, 0));

        /* 128 characters ok, 129 rejected. */
        v[0] = '"';
        memset(v + 1, 'i', 128);
        strcpy(v + 129, "\"");
        accept_field(NPSD_KIND_RESPONSE, "event_id", v, &ev);
        assert_int_equal(strlen(ev.u.response.event_id), 128);
        npsd_event_clear(&ev);
        strcpy(v + 129, "i\"");
        reject_field(NPSD_KIND_RESPONSE, "event_id", v,
                     NPSD_REJECT_INVALID_FIELD, "event_id",
                     "event_id is 129 characters, limit is 128");

        reject_field(NPSD_KIND_RESPONSE, "account_id", "\"acme corp\"",
                     NPSD_REJECT_INVALID_FIELD, "account_id",
                     "account_id has an invalid character at offset 4 "
                     "(allowed: A-Z a-z 0-9 . _ : @ -)");
        reject_field(NPSD_KIND_RESPONSE, "user_id", "\"\"",
                     NPSD_REJECT_INVALID_FIELD, "user_id",
                     "user_id must not be empty");
        reject_field(NPSD_KIND_RESPONSE, "user_id", "42",
                     NPSD_REJECT_INVALID_FIELD, "user_id",
                     "user_id must be a string identifier, got 42");
        reject_field(NPSD_KIND_RESPONSE, "user_id", "\"j\xc3\xb6rg\"",
                     NPSD_REJECT_INVALID_FIELD, "user_id", NULL);
}

static void test_utf8_valid(void **state) {
        (void)state;
        assert_true(npsd_utf8_valid("", 0));
        assert_true(npsd_utf8_valid("abc", 3));
        assert_true(npsd_utf8_valid("\xc3\xa9", 2));
        assert_true(npsd_utf8_valid("\xe2\x82\xac", 3));         /* € */
        assert_true(npsd_utf8_valid("\xf0\x9f\x98\x80", 4));     /* U+1F600 */
        assert_true(npsd_utf8_valid("\xf4\x8f\xbf\xbf", 4));     /* U+10FFFF */
        assert_true(npsd_utf8_valid("\xed\x9f\xbf", 3));         /* U+D7FF */
        assert_false(npsd_utf8_valid("\x80", 1));
        assert_false(npsd_utf8_valid("\xc3", 1));                /* truncated */
        assert_false(npsd_utf8_valid("\xc0\x80", 2));            /* overlong */
        assert_false(npsd_utf8_valid("\xc1\xbf", 2));            /* overlong */
        assert_false(npsd_utf8_valid("\xe0\x80\xaf", 3));        /* overlong */
        assert_false(npsd_utf8_valid("\xf0\x80\x80\xaf", 4));    /* overlong */
        assert_false(npsd_utf8_valid("\xed\xa0\x80", 3));        /* surrogate */
        assert_false(npsd_utf8_valid("\xed\xbf\xbf", 3));        /* surrogate */
        assert_false(npsd_utf8_valid("\xf4\x90\x80\x80", 4));    /* > 10FFFF */
        assert_false(npsd_utf8_valid("\xf5\x80\x80\x80", 4));
        assert_false(npsd_utf8_valid("\xff", 1));
        assert_false(npsd_utf8_valid("\xe2\x82", 2));
        assert_false(npsd_utf8_valid("\xe2\x28\xa1", 3));
}

/* ---- usage -------------------------------------------------------------- */

static void test_usage(void **state) {
        static const struct {
                const char *json;
                npsd_usage_type_t type;
        } types[] = {
                {"\"session\"", NPSD_USAGE_SESSION},
                {"\"feature_used\"", NPSD_USAGE_FEATURE_USED},
                {"\"error\"", NPSD_USAGE_ERROR},
                {"\"ticket_opened\"", NPSD_USAGE_TICKET_OPENED},
                {"\"ticket_closed\"", NPSD_USAGE_TICKET_CLOSED},
                {"\"login\"", NPSD_USAGE_OTHER},
                {"null", NPSD_USAGE_OTHER},
        };
        static const char *req[] = {"event_id", "account_id", "user_id",
                                    "occurred_at"};
        npsd_event_t ev;
        npsd_usage_t *u = &ev.u.usage;
        const char *s = "{\"event_id\":\"x-9\",\"account_id\":\"acme\","
                        "\"user_id\":\"u1\",\"occurred_at\":1795165200000,"
                        "\"type\":\"feature_used\",\"feature\":\"export\"}";

        (void)state;
        parse_ok_str(NPSD_KIND_USAGE, s, &ev);
        assert_string_equal(u->event_id, "x-9");
        assert_string_equal(u->account_id, "acme");
        assert_string_equal(u->user_id, "u1");
        assert_int_equal(u->occurred_at_ms, NOW_MS - HOUR_MS);
        assert_int_equal(u->type, NPSD_USAGE_FEATURE_USED);
        assert_string_equal(u->feature, "export");
        npsd_event_clear(&ev);

        parse_ok_str(NPSD_KIND_USAGE, base_json[NPSD_KIND_USAGE], &ev);
        assert_int_equal(u->type, NPSD_USAGE_OTHER);
        assert_null(u->feature);
        npsd_event_clear(&ev);

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                accept_field(NPSD_KIND_USAGE, "type", types[i].json, &ev);
                assert_int_equal(u->type, types[i].type);
                npsd_event_clear(&ev);
        }
        for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
                reject_field(NPSD_KIND_USAGE, req[i], NULL,
                             NPSD_REJECT_MISSING_FIELD, req[i], NULL);
        reject_field(NPSD_KIND_USAGE, "type", "7", NPSD_REJECT_INVALID_FIELD,
                     "type", "type must be a string, got 7");
        reject_field(NPSD_KIND_USAGE, "feature", "[]",
                     NPSD_REJECT_INVALID_FIELD, "feature", NULL);
        reject_field(NPSD_KIND_USAGE, "occurred_at",
                     "\"2026-11-21T10:00:00Z\"",
                     NPSD_REJECT_TIMESTAMP_IN_FUTURE, "occurred_at", NULL);
        reject_field(NPSD_KIND_USAGE, "event_id", "\"a|b\"",
                     NPSD_REJECT_INVALID_FIELD, "event_id", NULL);
}

/* ---- accounts ----------------------------------------------------------- */

static void test_account(void **state) {
        npsd_event_t ev;
        npsd_account_t *a = &ev.u.account;
        const char *s =
                "{\"account_id\":\"acme\",\"name\":\"Acme Corp\","
                "\"segment\":\"mid_market\",\"plan\":\"pro\",\"arr\":120000.5,"
                "\"seats\":250,\"renewal_date\":\"2027-02-28\","
                "\"lifecycle_stage\":\"adoption\",\"csm_owner\":\"jane\","
                "\"updated_at\":\"2026-11-20T08:00:00Z\"}";

        (void)state;
        parse_ok_str(NPSD_KIND_ACCOUNT, s, &ev);
        assert_string_equal(a->account_id, "acme");
        assert_string_equal(a->name, "Acme Corp");
        assert_string_equal(a->segment, "mid_market");
        assert_string_equal(a->plan, "pro");
        assert_true(a->has_arr);
        assert_true(a->arr == 120000.5);
        assert_true(a->has_seats);
        assert_int_equal(a->seats, 250);
        assert_true(a->has_renewal);
        assert_int_equal(a->renewal_day, npsd_days_from_civil(2027, 2, 28));
        assert_string_equal(a->lifecycle_stage, "adoption");
        assert_string_equal(a->csm_owner, "jane");
        assert_true(a->has_updated_at);
        assert_int_equal(a->updated_at_ms, NOW_MS - 2 * HOUR_MS);
        npsd_event_clear(&ev);

        parse_ok_str(NPSD_KIND_ACCOUNT, base_json[NPSD_KIND_ACCOUNT], &ev);
        assert_null(a->name);
        assert_null(a->segment);
        assert_null(a->plan);
        assert_null(a->lifecycle_stage);
        assert_null(a->csm_owner);
        assert_false(a->has_arr);
        assert_false(a->has_seats);
        assert_false(a->has_renewal);
        assert_false(a->has_updated_at);
        npsd_event_clear(&ev);

        accept_field(NPSD_KIND_ACCOUNT, "arr", "0", &ev);
        assert_true(a->has_arr);
        assert_true(a->arr == 0.0);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_ACCOUNT, "seats", "9.0", &ev);
        assert_int_equal(a->seats, 9);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_ACCOUNT, "segment", "\"smb\"", &ev);
        assert_string_equal(a->segment, "smb");
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_ACCOUNT, "segment", "\"enterprise\"", &ev);
        assert_string_equal(a->segment, "enterprise");
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_ACCOUNT, "lifecycle_stage", "\"hibernating\"",
                     &ev);
        assert_string_equal(a->lifecycle_stage, "hibernating");
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_ACCOUNT, "updated_at", "1795161600000", &ev);
        assert_int_equal(a->updated_at_ms, NOW_MS - 2 * HOUR_MS);
        npsd_event_clear(&ev);
        accept_field(NPSD_KIND_ACCOUNT, "renewal_date", "\"2028-02-29\"",
                     &ev);
        npsd_event_clear(&ev);

        reject_field(NPSD_KIND_ACCOUNT, "account_id", NULL,
                     NPSD_REJECT_MISSING_FIELD, "account_id",
                     "missing required field account_id");
        reject_field(NPSD_KIND_ACCOUNT, "segment", "\"startup\"",
                     NPSD_REJECT_INVALID_FIELD, "segment",
                     "segment must be one of smb, mid_market, enterprise, "
                     "got string \"startup\"");
        reject_field(NPSD_KIND_ACCOUNT, "arr", "-1",
                     NPSD_REJECT_INVALID_FIELD, "arr",
                     "arr must be a number >= 0, got -1");
        reject_field(NPSD_KIND_ACCOUNT, "arr", "\"100\"",
                     NPSD_REJECT_INVALID_FIELD, "arr", NULL);
        reject_field(NPSD_KIND_ACCOUNT, "seats", "2.5",
                     NPSD_REJECT_INVALID_FIELD, "seats",
                     "seats must be an integer >= 0, got 2.5");
        reject_field(NPSD_KIND_ACCOUNT, "seats", "-3",
                     NPSD_REJECT_INVALID_FIELD, "seats", NULL);
        reject_field(NPSD_KIND_ACCOUNT, "seats", "\"10\"",
                     NPSD_REJECT_INVALID_FIELD, "seats", NULL);
        reject_field(NPSD_KIND_ACCOUNT, "renewal_date", "\"2027-02-29\"",
                     NPSD_REJECT_INVALID_FIELD, "renewal_date",
                     "renewal_date must be a date YYYY-MM-DD, got string "
                     "\"2027-02-29\"");
        reject_field(NPSD_KIND_ACCOUNT, "renewal_date",
                     "\"2027-02-01T00:00:00Z\"", NPSD_REJECT_INVALID_FIELD,
                     "renewal_date", NULL);
        reject_field(NPSD_KIND_ACCOUNT, "renewal_date", "20270201",
                     NPSD_REJECT_INVALID_FIELD, "renewal_date", NULL);
        reject_field(NPSD_KIND_ACCOUNT, "name", "false",
                     NPSD_REJECT_INVALID_FIELD, "name",
                     "name must be a string, got false");
        reject_field(NPSD_KIND_ACCOUNT, "updated_at",
                     "\"2026-11-20T12:00:00Z\"",
                     NPSD_REJECT_TIMESTAMP_IN_FUTURE, "updated_at", NULL);
        reject_field(NPSD_KIND_ACCOUNT, "updated_at", "\"soon\"",
                     NPSD_REJECT_INVALID_FIELD, "updated_at", NULL);
}

/* ---- follow-ups --------------------------------------------------------- */

static void test_followup(void **state) {
        static const struct {
                const char *json;
                npsd_followup_action_t action;
        } actions[] = {
                {"\"acknowledged\"", NPSD_FOLLOWUP_ACKNOWLEDGED},
                {"\"routed\"", NPSD_FOLLOWUP_ROUTED},
                {"\"closed\"", NPSD_FOLLOWUP_CLOSED},
        };
        static const char *req[] = {"event_id", "account_id",
                                    "response_event_id", "action", "at"};
        npsd_event_t ev;
        npsd_followup_t *f = &ev.u.followup;
        const char *s =
                "{\"event_id\":\"f-1\",\"account_id\":\"acme\","
                "\"response_event_id\":\"r-1\",\"action\":\"closed\","
                "\"at\":\"2026-11-20T10:30:00+01:00\",\"owner\":\"jane\","
                "\"team\":\"support\"}";

        (void)state;
        parse_ok_str(NPSD_KIND_FOLLOWUP, s, &ev);
        assert_string_equal(f->event_id, "f-1");
        assert_string_equal(f->account_id, "acme");
        assert_string_equal(f->response_event_id, "r-1");
        assert_int_equal(f->action, NPSD_FOLLOWUP_CLOSED);
        assert_int_equal(f->at_ms, NOW_MS - HOUR_MS / 2);
        assert_string_equal(f->owner, "jane");
        assert_string_equal(f->team, "support");
        npsd_event_clear(&ev);

        parse_ok_str(NPSD_KIND_FOLLOWUP, base_json[NPSD_KIND_FOLLOWUP], &ev);
        assert_null(f->owner);
        assert_null(f->team);
        npsd_event_clear(&ev);

        for (size_t i = 0; i < 3; i++) {
                accept_field(NPSD_KIND_FOLLOWUP, "action", actions[i].json,
                             &ev);
                assert_int_equal(f->action, actions[i].action);
                npsd_event_clear(&ev);
        }
        for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
                char detail[64];

                snprintf(detail, sizeof(detail), "missing required field %s",
                         req[i]);
                reject_field(NPSD_KIND_FOLLOWUP, req[i], NULL,
                             NPSD_REJECT_MISSING_FIELD, req[i], detail);
        }
        reject_field(NPSD_KIND_FOLLOWUP, "action", "\"escalated\"",
                     NPSD_REJECT_INVALID_FIELD, "action",
                     "action must be one of acknowledged, routed, closed, "
                     "got string \"escalated\"");
        reject_field(NPSD_KIND_FOLLOWUP, "action", "1",
                     NPSD_REJECT_INVALID_FIELD, "action", NULL);
        reject_field(NPSD_KIND_FOLLOWUP, "response_event_id", "\"r 1\"",
                     NPSD_REJECT_INVALID_FIELD, "response_event_id", NULL);
        reject_field(NPSD_KIND_FOLLOWUP, "at", "\"2026-11-20T11:00:00.001Z\"",
                     NPSD_REJECT_TIMESTAMP_IN_FUTURE, "at", NULL);
        reject_field(NPSD_KIND_FOLLOWUP, "owner", "{}",
                     NPSD_REJECT_INVALID_FIELD, "owner", NULL);
        reject_field(NPSD_KIND_FOLLOWUP, "team", "1",
                     NPSD_REJECT_INVALID_FIELD, "team", NULL);
}

static void test_names(void **state) {
        (void)state;
        assert_string_equal(npsd_reject_reason_name(NPSD_REJECT_INVALID_JSON),
                            "invalid_json");
        assert_string_equal(npsd_reject_reason_name(NPSD_REJECT_NOT_AN_OBJECT),
                            "not_an_object");
        assert_string_equal(npsd_reject_reason_name(NPSD_REJECT_MISSING_FIELD),
                            "missing_field");
        assert_string_equal(npsd_reject_reason_name(NPSD_REJECT_INVALID_FIELD),
                            "invalid_field");
        assert_string_equal(npsd_reject_reason_name(NPSD_REJECT_TOO_LARGE),
                            "too_large");
        assert_string_equal(
                npsd_reject_reason_name(NPSD_REJECT_TIMESTAMP_IN_FUTURE),
                "timestamp_in_future");
        assert_string_equal(npsd_category_name(NPSD_CAT_DETRACTOR),
                            "detractor");
        assert_string_equal(npsd_category_name(NPSD_CAT_PASSIVE), "passive");
        assert_string_equal(npsd_category_name(NPSD_CAT_PROMOTER), "promoter");
        assert_int_equal(npsd_category_of(0), NPSD_CAT_DETRACTOR);
        assert_int_equal(npsd_category_of(6), NPSD_CAT_DETRACTOR);
        assert_int_equal(npsd_category_of(7), NPSD_CAT_PASSIVE);
        assert_int_equal(npsd_category_of(8), NPSD_CAT_PASSIVE);
        assert_int_equal(npsd_category_of(9), NPSD_CAT_PROMOTER);
        assert_int_equal(npsd_category_of(10), NPSD_CAT_PROMOTER);
}

static void test_limits_default(void **state) {
        npsd_parse_limits_t l;

        (void)state;
        npsd_parse_limits_default(&l);
        assert_int_equal(l.max_message_bytes, 65536);
        assert_int_equal(l.max_comment_bytes, 8192);
        assert_int_equal(l.future_allowance_ms, 3600000);
}

static void test_duplicate_keys(void **state) {
        npsd_event_t ev;
        const char *s = "{\"event_id\":\"r\",\"account_id\":\"a\","
                        "\"user_id\":\"u\",\"score\":3,\"score\":10,"
                        "\"submitted_at\":0}";

        (void)state;
        /* Duplicate keys are allowed; the last one wins. */
        parse_ok_str(NPSD_KIND_RESPONSE, s, &ev);
        assert_int_equal(ev.u.response.score, 10);
        npsd_event_clear(&ev);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_size_limit_exact),
                cmocka_unit_test(test_invalid_json),
                cmocka_unit_test(test_not_an_object),
                cmocka_unit_test(test_response_valid),
                cmocka_unit_test(test_response_defaults),
                cmocka_unit_test(test_response_required),
                cmocka_unit_test(test_score),
                cmocka_unit_test(test_timestamps),
                cmocka_unit_test(test_future_allowance_limit),
                cmocka_unit_test(test_role),
                cmocka_unit_test(test_survey_type),
                cmocka_unit_test(test_short_strings),
                cmocka_unit_test(test_comment_truncation),
                cmocka_unit_test(test_attributes),
                cmocka_unit_test(test_identifiers),
                cmocka_unit_test(test_utf8_valid),
                cmocka_unit_test(test_usage),
                cmocka_unit_test(test_account),
                cmocka_unit_test(test_followup),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_limits_default),
                cmocka_unit_test(test_duplicate_keys),
        };

        return cmocka_run_group_tests(tests, setup, NULL);
}
