/*
 * Unit tests for npsd_dlq: the dead-letter record of SPEC §2 and base64.
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

static const char *const dlq_keys[] = {
        "reason",  "field",   "detail",           "topic",      "partition",
        "offset",  "key",     "payload",          "payload_encoding",
        "rejected_at",
};

/* Parses a built record back and checks it has exactly the contract keys
 * (plus key_encoding when expected). Caller decrefs. */
static json_t *build_and_load(const npsd_reject_t *rj, const char *topic,
                              int32_t partition, int64_t offset,
                              const void *key, size_t key_len,
                              const void *payload, size_t len,
                              int expect_key_encoding) {
        size_t outlen = 0;
        char *out = npsd_dlq_build(rj, topic, partition, offset, key, key_len,
                                   payload, len, NOW_MS, &outlen);
        json_error_t err;
        json_t *o;

        assert_non_null(out);
        assert_int_equal(outlen, strlen(out));
        /* Compact: one line, no spaces after separators. */
        assert_null(strchr(out, '\n'));
        assert_null(strstr(out, "\": "));
        o = json_loads(out, 0, &err);
        if (!o)
                fail_msg("DLQ record is not JSON (%s): %s", err.text, out);
        free(out);
        assert_true(json_is_object(o));
        for (size_t i = 0; i < sizeof(dlq_keys) / sizeof(dlq_keys[0]); i++)
                if (!json_object_get(o, dlq_keys[i]))
                        fail_msg("DLQ record lacks \"%s\"", dlq_keys[i]);
        assert_int_equal(json_object_size(o),
                         sizeof(dlq_keys) / sizeof(dlq_keys[0]) +
                                 (expect_key_encoding ? 1 : 0));
        return o;
}

static const char *str(json_t *o, const char *k) {
        json_t *v = json_object_get(o, k);

        assert_true(json_is_string(v));
        return json_string_value(v);
}

/* A real rejection from the parser flows into a complete DLQ record. */
static void test_dlq_from_parse(void **state) {
        const char *payload = "{\"event_id\":\"r-1\",\"account_id\":\"acme\","
                              "\"user_id\":\"u1\",\"score\":11,"
                              "\"submitted_at\":\"2026-11-20T09:00:00Z\"}";
        npsd_event_t ev;
        npsd_reject_t rj;
        json_t *o;

        (void)state;
        assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, payload,
                                          strlen(payload), NOW_MS, NULL, &ev,
                                          &rj),
                         -1);
        o = build_and_load(&rj, "nps.responses", 3, 12345678901LL, "acme", 4,
                           payload, strlen(payload), 0);
        assert_string_equal(str(o, "reason"), "invalid_field");
        assert_string_equal(str(o, "field"), "score");
        assert_string_equal(str(o, "detail"),
                            "score must be an integer 0-10, got 11");
        assert_string_equal(str(o, "topic"), "nps.responses");
        assert_true(json_is_integer(json_object_get(o, "partition")));
        assert_int_equal(json_integer_value(json_object_get(o, "partition")),
                         3);
        assert_int_equal(json_integer_value(json_object_get(o, "offset")),
                         12345678901LL);
        assert_string_equal(str(o, "key"), "acme");
        assert_string_equal(str(o, "payload"), payload);
        assert_string_equal(str(o, "payload_encoding"), "utf8");
        assert_string_equal(str(o, "rejected_at"), "2026-11-20T10:00:00Z");
        assert_null(json_object_get(o, "key_encoding"));
        json_decref(o);
}

static void test_dlq_every_reason(void **state) {
        static const struct {
                npsd_reject_reason_t reason;
                const char *name;
        } reasons[] = {
                {NPSD_REJECT_INVALID_JSON, "invalid_json"},
                {NPSD_REJECT_NOT_AN_OBJECT, "not_an_object"},
                {NPSD_REJECT_MISSING_FIELD, "missing_field"},
                {NPSD_REJECT_INVALID_FIELD, "invalid_field"},
                {NPSD_REJECT_TOO_LARGE, "too_large"},
                {NPSD_REJECT_TIMESTAMP_IN_FUTURE, "timestamp_in_future"},
        };

        (void)state;
        for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
                npsd_reject_t rj = {.reason = reasons[i].reason};
                json_t *o;

                snprintf(rj.detail, sizeof(rj.detail), "detail %zu", i);
                o = build_and_load(&rj, "t", 0, 0, NULL, 0, "x", 1, 0);
                assert_string_equal(str(o, "reason"), reasons[i].name);
                assert_string_equal(str(o, "detail"), rj.detail);
                json_decref(o);
        }
}

/* Each whole-message reason as produced by the parser. */
static void test_dlq_parser_reasons(void **state) {
        static const struct {
                npsd_kind_t kind;
                const char *payload;
                const char *reason;
                const char *field; /* NULL: JSON null */
        } cases[] = {
                {NPSD_KIND_RESPONSE, "{oops", "invalid_json", NULL},
                {NPSD_KIND_USAGE, "[]", "not_an_object", NULL},
                {NPSD_KIND_ACCOUNT, "{}", "missing_field", "account_id"},
                {NPSD_KIND_FOLLOWUP,
                 "{\"event_id\":\"f\",\"account_id\":\"a\","
                 "\"response_event_id\":\"r\",\"action\":\"closed\","
                 "\"at\":\"2027-01-01T00:00:00Z\"}",
                 "timestamp_in_future", "at"},
        };
        npsd_parse_limits_t l;

        (void)state;
        npsd_parse_limits_default(&l);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                npsd_event_t ev;
                npsd_reject_t rj;
                json_t *o;
                const char *p = cases[i].payload;

                assert_int_equal(npsd_event_parse(cases[i].kind, p, strlen(p),
                                                  NOW_MS, &l, &ev, &rj),
                                 -1);
                o = build_and_load(&rj, "topic", 1, 2, NULL, 0, p, strlen(p),
                                   0);
                assert_string_equal(str(o, "reason"), cases[i].reason);
                if (cases[i].field)
                        assert_string_equal(str(o, "field"), cases[i].field);
                else
                        assert_true(json_is_null(json_object_get(o, "field")));
                assert_string_equal(str(o, "payload"), p);
                json_decref(o);
        }

        /* too_large: the whole payload is still carried. */
        {
                size_t n = l.max_message_bytes + 10;
                char *big = malloc(n);
                npsd_event_t ev;
                npsd_reject_t rj;
                json_t *o;

                memset(big, 'a', n);
                assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, big, n,
                                                  NOW_MS, &l, &ev, &rj),
                                 -1);
                o = build_and_load(&rj, "topic", 1, 2, NULL, 0, big, n, 0);
                assert_string_equal(str(o, "reason"), "too_large");
                assert_int_equal(json_string_length(json_object_get(o, "payload")),
                                 n);
                json_decref(o);
                free(big);
        }
}

static void test_dlq_base64_payload(void **state) {
        static const unsigned char bad[] = {'{', 0xff, 0xfe, '}'};
        npsd_event_t ev;
        npsd_reject_t rj;
        json_t *o;

        (void)state;
        assert_int_equal(npsd_event_parse(NPSD_KIND_RESPONSE, bad, sizeof(bad),
                                          NOW_MS, NULL, &ev, &rj),
                         -1);
        assert_int_equal(rj.reason, NPSD_REJECT_INVALID_JSON);
        o = build_and_load(&rj, "nps.responses", 0, 7, NULL, 0, bad,
                           sizeof(bad), 0);
        assert_string_equal(str(o, "reason"), "invalid_json");
        assert_true(json_is_null(json_object_get(o, "field")));
        assert_true(json_is_null(json_object_get(o, "key")));
        assert_string_equal(str(o, "payload"), "e//+fQ==");
        assert_string_equal(str(o, "payload_encoding"), "base64");
        json_decref(o);
}

static void test_dlq_keys(void **state) {
        npsd_reject_t rj = {.reason = NPSD_REJECT_INVALID_FIELD,
                            .field = "score",
                            .detail = "d"};
        static const unsigned char badkey[] = {0x80, 'k'};
        json_t *o;

        (void)state;
        /* NULL key: JSON null, no key_encoding. */
        o = build_and_load(&rj, "t", 0, 0, NULL, 0, "{}", 2, 0);
        assert_true(json_is_null(json_object_get(o, "key")));
        json_decref(o);
        /* Empty key is an empty string, not null. */
        o = build_and_load(&rj, "t", 0, 0, "", 0, "{}", 2, 0);
        assert_string_equal(str(o, "key"), "");
        json_decref(o);
        /* Binary key: base64 with key_encoding. */
        o = build_and_load(&rj, "t", 0, 0, badkey, sizeof(badkey), "{}", 2, 1);
        assert_string_equal(str(o, "key"), "gGs=");
        assert_string_equal(str(o, "key_encoding"), "base64");
        assert_string_equal(str(o, "payload_encoding"), "utf8");
        json_decref(o);
}

static void test_dlq_special_content(void **state) {
        npsd_reject_t rj = {.reason = NPSD_REJECT_INVALID_JSON};
        const char payload[] = "a\tb\"\\\n\xc3\xa9\x01";
        const char nulpayload[] = "a\0b";
        json_t *o;
        size_t outlen;
        char *out;

        (void)state;
        /* Quotes, backslashes and control characters in a valid UTF-8
         * payload survive the round trip exactly. */
        strcpy(rj.detail, "bad \"thing\" \xe2\x82\xac");
        o = build_and_load(&rj, "t", -1, -1, NULL, 0, payload,
                           sizeof(payload) - 1, 0);
        assert_string_equal(str(o, "payload_encoding"), "utf8");
        assert_string_equal(str(o, "payload"), payload);
        assert_string_equal(str(o, "detail"), rj.detail);
        json_decref(o);

        /* An embedded NUL is base64 encoded: "\u0000" trips up consumers. */
        o = build_and_load(&rj, "t", 0, 0, NULL, 0, nulpayload,
                           sizeof(nulpayload) - 1, 0);
        assert_string_equal(str(o, "payload_encoding"), "base64");
        assert_string_equal(str(o, "payload"), "YQBi");
        json_decref(o);

        /* Empty payload, NULL topic. */
        out = npsd_dlq_build(&rj, NULL, 0, 0, NULL, 0, "", 0, NOW_MS + 250,
                             &outlen);
        assert_non_null(out);
        o = json_loads(out, 0, NULL);
        assert_non_null(o);
        assert_string_equal(str(o, "payload"), "");
        assert_true(json_is_null(json_object_get(o, "topic")));
        assert_string_equal(str(o, "rejected_at"), "2026-11-20T10:00:00.250Z");
        json_decref(o);
        free(out);

        /* A hand-filled reject with invalid UTF-8 in detail still builds. */
        rj.detail[0] = (char)0xff;
        rj.detail[1] = '\0';
        out = npsd_dlq_build(&rj, "t", 0, 0, NULL, 0, "x", 1, NOW_MS, NULL);
        assert_non_null(out);
        free(out);
        assert_null(npsd_dlq_build(NULL, "t", 0, 0, NULL, 0, "x", 1, NOW_MS,
                                   NULL));
}

static void test_base64(void **state) {
        static const struct {
                const char *in, *out;
        } v[] = {
                /* RFC 4648 §10 test vectors. */
                {"", ""},
                {"f", "Zg=="},
                {"fo", "Zm8="},
                {"foo", "Zm9v"},
                {"foob", "Zm9vYg=="},
                {"fooba", "Zm9vYmE="},
                {"foobar", "Zm9vYmFy"},
        };
        static const unsigned char bin[] = {0x00, 0xff, 0xfe, 0xfb, 0xef};
        char *s;

        (void)state;
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                s = npsd_base64_encode(v[i].in, strlen(v[i].in));
                assert_non_null(s);
                assert_string_equal(s, v[i].out);
                free(s);
        }
        s = npsd_base64_encode(bin, sizeof(bin));
        assert_string_equal(s, "AP/+++8=");
        free(s);
}

/* A tombstone (no value) keeps its null payload rather than becoming "". */
static void test_dlq_tombstone(void **state) {
        npsd_reject_t rj = {NPSD_REJECT_INVALID_JSON, "", "no value"};
        json_t *o;

        (void)state;
        o = build_and_load(&rj, "accounts", 3, 9, "acme", 4, NULL, 0, 0);
        assert_true(json_is_null(json_object_get(o, "payload")));
        assert_true(json_is_null(json_object_get(o, "payload_encoding")));
        assert_string_equal(json_string_value(json_object_get(o, "key")),
                            "acme");
        json_decref(o);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_dlq_from_parse),
                cmocka_unit_test(test_dlq_tombstone),
                cmocka_unit_test(test_dlq_every_reason),
                cmocka_unit_test(test_dlq_parser_reasons),
                cmocka_unit_test(test_dlq_base64_payload),
                cmocka_unit_test(test_dlq_keys),
                cmocka_unit_test(test_dlq_special_content),
                cmocka_unit_test(test_base64),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
