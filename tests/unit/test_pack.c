/*
 * Unit tests of npsd_pack: what goes in comes out equal (member order
 * kept), the compact forms are used only where they print back the same
 * string, the size gain on a real snapshot and alert, the old JSON form, and
 * corrupt bytes refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_pack.h"

/* A snapshot as npsd_step builds it (taken from a benchmark run). */
static const char SNAP[] =
        "{\"processed_at\":1796656347916,\"account\":{\"name\":\"Pied Piper "
        "Analytics\",\"segment\":\"smb\",\"plan\":\"starter\","
        "\"lifecycle_stage\":\"mature\",\"csm_owner\":\"alice.martin\","
        "\"arr\":\"25600\",\"seats\":\"20\",\"renewal_date\":\"2027-10-17\","
        "\"updated_at\":\"2026-12-07T15:12:13.804Z\"},\"digest\":"
        "\"9509617aafa6b19a\",\"metrics\":{\"nps_30d\":40,\"nps_90d\":27.3,"
        "\"responses_90d\":11,\"moe_90d\":36.4,\"nps_prev_90d\":0,"
        "\"trend_90d\":27.3,\"role_gap_flag\":1,\"role_gap_90d\":28.6,"
        "\"benchmark\":42,\"benchmark_delta\":-14.7,\"health\":70,"
        "\"health_band\":\"green\"},\"previous\":[{\"score\":8,\"role\":"
        "\"end_user\",\"submitted_at\":\"2026-11-24T00:24:51.911Z\"},"
        "{\"score\":8,\"role\":\"admin\",\"submitted_at\":"
        "\"2026-09-08T23:57:53.012Z\",\"comment\":\"Good, not great. Reports "
        "take forever and often time out.\"},{\"score\":7,\"role\":"
        "\"decision_maker\",\"submitted_at\":\"2026-12-03T09:57:26.182Z\"}]}";

/* An alert_log entry: the alert message less its account object. */
static const char ALERT[] =
        "{\"alert_id\":\"role_gap:acct-0784:1:1796656349470\",\"type\":"
        "\"role_gap\",\"severity\":\"medium\",\"account_id\":\"acct-0784\","
        "\"fired_at\":\"2026-12-07T15:12:29.470Z\",\"details\":{\"role_gap\":"
        "16.7,\"end_user_nps\":50,\"decision_maker_nps\":33.3,\"window\":"
        "\"90d\"},\"event_id\":\"r-31-44255\"}";

/* Encodes, decodes, and checks the value and its member order (the dump
 * without sorting equals the input's). Returns the encoded size. */
static size_t roundtrip(const json_t *in) {
        char errstr[128], *enc, *a, *b;
        size_t len = 0;
        json_t *out;

        enc = npsd_pack_encode(in, &len);
        assert_non_null(enc);
        out = npsd_pack_decode(enc, len, errstr, sizeof(errstr));
        assert_non_null(out);
        assert_true(json_equal((json_t *)in, out));
        a = json_dumps(in, JSON_COMPACT | JSON_ENCODE_ANY |
                                   JSON_REAL_PRECISION(17));
        b = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY |
                                    JSON_REAL_PRECISION(17));
        assert_string_equal(a, b);
        free(a);
        free(b);
        json_decref(out);
        free(enc);
        return len;
}

static json_t *load(const char *text) {
        json_error_t jerr;
        json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

        assert_non_null(v);
        return v;
}

static void test_real_values(void **state) {
        json_t *v = load(SNAP);
        size_t len = roundtrip(v);

        /* the point of the format: 292 bytes for these 803, about a
         * third; the comment alone is 55 */
        assert_true(len * 5 <= strlen(SNAP) * 2);
        json_decref(v);
        /* 261 bytes of JSON, 107 packed: the ids are most of it */
        v = load(ALERT);
        len = roundtrip(v);
        assert_true(len * 20 <= strlen(ALERT) * 9);
        json_decref(v);
}

/* Strings that look like a compact form but would not print back the
 * same stay strings; values of every type survive. */
static void test_lookalikes(void **state) {
        static const char *const cases[] = {
                /* times: whole seconds, no Z, an offset, out of range */
                "\"2026-12-07T15:12:13Z\"", "\"2026-12-07T15:12:13.000Z\"",
                "\"2026-12-07T15:12:13.804\"", "\"2026-12-07T15:12:13+01:00\"",
                "\"2026-13-07T15:12:13.804Z\"",
                /* dates */
                "\"2026-02-30\"", "\"2026-2-03\"", "\"0000-01-01\"",
                /* decimals */
                "\"-0\"", "\"007\"", "\"+1\"", "\"0\"", "\"-42\"",
                "\"9223372036854775807\"", "\"99999999999999999999\"", "\"1e3\"",
                "\"12.5\"",
                /* hex */
                "\"9509617AAFA6B19A\"", "\"abcdef0\"", "\"abcdef01\"",
                "\"0123456789abcdef0123456789abcdef\"",
                /* words, and words with more */
                "\"admin\"", "\"admins\"", "\"adm\"", "\"\"",
                /* numbers */
                "0", "-1", "9223372036854775807", "-9223372036854775808",
                "0.1", "-0.0", "27.3", "-14.7", "0.05", "1e300", "3.14159",
                "123456789012.3",
                /* the rest */
                "null", "true", "false", "[]", "{}", "[[1,[2,[3]]]]",
                "{\"a\":{\"score\":1,\"x y\":\"caf\\u00e9 \\u0000 nul\"}}",
                "{\"z\":1,\"a\":2,\"m\":3}"};

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *v = load(cases[i]);
                roundtrip(v);
                json_decref(v);
        }
}

static void test_old_json(void **state) {
        char errstr[128];
        json_t *in = load(SNAP),
               *out = npsd_pack_decode(SNAP, strlen(SNAP), errstr,
                                           sizeof(errstr));

        assert_non_null(out);
        assert_true(json_equal(in, out));
        json_decref(in);
        json_decref(out);
}

static void test_too_deep(void **state) {
        json_t *v = load("[[[[[[[[[1]]]]]]]]]");
        size_t len;

        assert_null(npsd_pack_encode(v, &len));
        json_decref(v);
}

/* Every truncation of a real snapshot, and every single-byte change,
 * either decodes to some value or is refused with a reason: never a
 * crash or a read past the end (ASan watches this test). */
static void test_corrupt(void **state) {
        json_t *v = load(SNAP);
        char errstr[128], *enc, *bad;
        size_t len, refused = 0;

        enc = npsd_pack_encode(v, &len);
        assert_non_null(enc);
        for (size_t n = 0; n < len; n++) {
                json_t *out;
                assert_non_null(bad = malloc(n ? n : 1));
                memcpy(bad, enc, n);
                errstr[0] = '\0';
                out = npsd_pack_decode(bad, n, errstr, sizeof(errstr));
                assert_null(out); /* a cut snapshot is never whole */
                assert_true(errstr[0] != '\0');
                free(bad);
        }
        assert_non_null(bad = malloc(len));
        for (size_t i = 0; i < len; i++) {
                for (int x = 1; x < 256; x <<= 1) {
                        json_t *out;
                        memcpy(bad, enc, len);
                        bad[i] = (char)(bad[i] ^ x);
                        out = npsd_pack_decode(bad, len, errstr,
                                                   sizeof(errstr));
                        refused += out == NULL;
                        json_decref(out);
                }
        }
        assert_true(refused > 0);
        free(bad);
        free(enc);
        json_decref(v);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_real_values),
                cmocka_unit_test(test_lookalikes),
                cmocka_unit_test(test_old_json),
                cmocka_unit_test(test_too_deep),
                cmocka_unit_test(test_corrupt),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
