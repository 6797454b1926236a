/*
 * Unit tests of npsd_enrich: priority rules, playbooks and the classified
 * output message (parsed back with jansson).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_enrich.h"
#include "npsd/npsd_time.h"

/* 2026-11-20T10:00:00Z */
#define T0 1795168800000LL

static npsd_account_facts_t facts_none(void) {
        npsd_account_facts_t f;

        memset(&f, 0, sizeof(f));
        return f;
}

static npsd_account_facts_t facts_renewal(int days) {
        npsd_account_facts_t f = facts_none();

        f.has_days_to_renewal = 1;
        f.days_to_renewal = days;
        return f;
}

static void test_priority_detractor(void **state) {
        npsd_enrich_conf_t c;
        npsd_account_facts_t f;

        npsd_enrich_conf_default(&c);

        /* no account context at all: p2 */
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, NULL, &c),
                         NPSD_PRIORITY_P2);
        f = facts_none();
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P2);

        /* renewal window 0..90 inclusive */
        f = facts_renewal(90);
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P1);
        f = facts_renewal(0);
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P1);
        f = facts_renewal(91);
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P2);
        f = facts_renewal(-1); /* renewal already past */
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P2);

        /* segment */
        f = facts_none();
        f.segment = "enterprise";
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P1);
        f.segment = "mid_market";
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P2);

        /* arr >= 100000 */
        f = facts_none();
        f.has_arr = 1;
        f.arr = 100000.0;
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P1);
        f.arr = 99999.99;
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P2);
        f.has_arr = 0;
        f.arr = 500000.0; /* value without has_arr is ignored */
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P2);

        /* configurable thresholds */
        c.p1_renewal_days = 30;
        f = facts_renewal(31);
        assert_int_equal(npsd_priority_of(NPSD_CAT_DETRACTOR, &f, &c),
                         NPSD_PRIORITY_P2);
}

static void test_priority_passive_promoter(void **state) {
        npsd_enrich_conf_t c;
        npsd_account_facts_t f;

        npsd_enrich_conf_default(&c);

        f = facts_renewal(90);
        assert_int_equal(npsd_priority_of(NPSD_CAT_PASSIVE, &f, &c),
                         NPSD_PRIORITY_P2);
        f = facts_renewal(0);
        assert_int_equal(npsd_priority_of(NPSD_CAT_PASSIVE, &f, &c),
                         NPSD_PRIORITY_P2);
        f = facts_renewal(91);
        assert_int_equal(npsd_priority_of(NPSD_CAT_PASSIVE, &f, &c),
                         NPSD_PRIORITY_P3);
        f = facts_renewal(-5);
        assert_int_equal(npsd_priority_of(NPSD_CAT_PASSIVE, &f, &c),
                         NPSD_PRIORITY_P3);
        assert_int_equal(npsd_priority_of(NPSD_CAT_PASSIVE, NULL, &c),
                         NPSD_PRIORITY_P3);

        /* enterprise / big arr do not lift passives */
        f = facts_none();
        f.segment = "enterprise";
        f.has_arr = 1;
        f.arr = 1e6;
        assert_int_equal(npsd_priority_of(NPSD_CAT_PASSIVE, &f, &c),
                         NPSD_PRIORITY_P3);

        /* promoters are always p3 */
        f = facts_renewal(10);
        f.segment = "enterprise";
        assert_int_equal(npsd_priority_of(NPSD_CAT_PROMOTER, &f, &c),
                         NPSD_PRIORITY_P3);
}

static void test_names_and_playbooks(void **state) {
        assert_string_equal(npsd_priority_name(NPSD_PRIORITY_P1), "p1");
        assert_string_equal(npsd_priority_name(NPSD_PRIORITY_P2), "p2");
        assert_string_equal(npsd_priority_name(NPSD_PRIORITY_P3), "p3");
        assert_string_equal(
                npsd_playbook_of(NPSD_CAT_DETRACTOR, NPSD_PRIORITY_P1),
                "retention");
        assert_string_equal(
                npsd_playbook_of(NPSD_CAT_DETRACTOR, NPSD_PRIORITY_P2),
                "recovery");
        assert_string_equal(
                npsd_playbook_of(NPSD_CAT_PASSIVE, NPSD_PRIORITY_P2), "nudge");
        assert_string_equal(
                npsd_playbook_of(NPSD_CAT_PASSIVE, NPSD_PRIORITY_P3), "nudge");
        assert_string_equal(
                npsd_playbook_of(NPSD_CAT_PROMOTER, NPSD_PRIORITY_P3),
                "advocacy");
}

static npsd_response_t response(int score, npsd_category_t cat,
                                const char *comment) {
        npsd_response_t r;

        memset(&r, 0, sizeof(r));
        r.event_id = "evt-1";
        r.account_id = "ACME";
        r.user_id = "u-42";
        r.score = score;
        r.category = cat;
        r.submitted_at_ms = T0;
        r.role = NPSD_ROLE_DECISION_MAKER;
        r.survey_type = NPSD_SURVEY_RELATIONSHIP;
        r.comment = comment;
        r.comment_len = comment ? strlen(comment) : 0;
        return r;
}

static const char *snapshot_text =
        "{\"processed_at\": 1795168805000,"
        " \"account\": {\"name\": \"Acme Corp\", \"segment\": \"mid_market\","
        "   \"plan\": \"growth\", \"arr\": \"120000.5\", \"seats\": \"40\","
        "   \"renewal_date\": \"2027-01-15\", \"lifecycle_stage\": \"mature\","
        "   \"csm_owner\": \"jane\"},"
        " \"metrics\": {\"nps_30d\": 12.5, \"nps_90d\": -3, \"responses_90d\": 17,"
        "   \"moe_90d\": 41.2, \"trend_90d\": -4.5, \"role_gap_90d\": 20,"
        "   \"benchmark_delta\": -38, \"health\": 55,"
        "   \"health_band\": \"yellow\"},"
        " \"previous\": [{\"score\": 9, \"role\": \"end_user\","
        "   \"submitted_at\": \"2026-10-01T08:00:00Z\", \"comment\": null}]}";

/* Builds and parses back one message. */
static json_t *build(const npsd_response_t *r, const json_t *snapshot,
                     const npsd_themes_t *th, uint64_t bits, int64_t now) {
        npsd_enrich_conf_t c;
        json_error_t jerr;
        size_t len = 0;
        json_t *msg;
        char *s;

        npsd_enrich_conf_default(&c);
        s = npsd_enrich_build(r, snapshot, th, bits, &c, now, &len);
        assert_non_null(s);
        assert_int_equal(len, strlen(s));
        assert_null(strchr(s, '\n')); /* compact */
        msg = json_loads(s, 0, &jerr);
        if (!msg)
                fail_msg("not JSON (%s): %s", jerr.text, s);
        free(s);
        return msg;
}

static const char *str(const json_t *o, const char *k) {
        const json_t *v = json_object_get(o, k);

        if (!json_is_string(v))
                fail_msg("%s is not a string", k);
        return json_string_value(v);
}

static void test_build_detractor(void **state) {
        char errstr[256];
        const char *lextext = "pricing = expensive\nsupport = support\n";
        npsd_themes_t *th = npsd_themes_new(lextext, strlen(lextext), errstr,
                                            sizeof(errstr));
        const char *comment = "Too expensive and support is slow";
        npsd_response_t r = response(3, NPSD_CAT_DETRACTOR, comment);
        json_t *snap = json_loads(snapshot_text, 0, NULL);
        json_t *attrs = json_pack("{s:s}", "region", "emea");
        json_t *msg, *fu, *acct, *m, *prev, *th_arr;

        assert_non_null(th);
        assert_non_null(snap);
        r.trigger = "support_ticket";
        r.channel = "in_app";
        r.language = "en";
        r.attributes = attrs;

        msg = build(&r, snap, th, npsd_themes_match(th, comment,
                                                    strlen(comment)),
                    T0 + 999999);

        assert_string_equal(str(msg, "event_id"), "evt-1");
        assert_string_equal(str(msg, "account_id"), "ACME");
        assert_string_equal(str(msg, "user_id"), "u-42");
        assert_string_equal(str(msg, "category"), "detractor");
        assert_int_equal(json_integer_value(json_object_get(msg, "score")), 3);
        assert_string_equal(str(msg, "role"), "decision_maker");
        assert_string_equal(str(msg, "survey_type"), "relationship");
        assert_string_equal(str(msg, "trigger"), "support_ticket");
        assert_string_equal(str(msg, "channel"), "in_app");
        assert_string_equal(str(msg, "language"), "en");
        assert_string_equal(str(msg, "comment"), comment);
        assert_string_equal(
                str(json_object_get(msg, "attributes"), "region"), "emea");
        assert_string_equal(str(msg, "submitted_at"), "2026-11-20T10:00:00Z");
        /* processed_at comes from the snapshot, not now_ms */
        assert_string_equal(str(msg, "processed_at"), "2026-11-20T10:00:05Z");

        th_arr = json_object_get(msg, "themes");
        assert_int_equal(json_array_size(th_arr), 2);
        assert_string_equal(json_string_value(json_array_get(th_arr, 0)),
                            "pricing");
        assert_string_equal(json_string_value(json_array_get(th_arr, 1)),
                            "support");

        /* arr 120000.5 >= 100000 and renewal in 56 days: p1 retention */
        assert_string_equal(str(msg, "priority"), "p1");
        assert_string_equal(str(msg, "playbook"), "retention");

        /* +48 h, +7 d, +30 d */
        fu = json_object_get(msg, "followup");
        assert_true(json_is_object(fu));
        assert_string_equal(str(fu, "acknowledge_by"), "2026-11-22T10:00:00Z");
        assert_string_equal(str(fu, "route_by"), "2026-11-27T10:00:00Z");
        assert_string_equal(str(fu, "close_by"), "2026-12-20T10:00:00Z");

        acct = json_object_get(msg, "account");
        assert_string_equal(str(acct, "name"), "Acme Corp");
        assert_string_equal(str(acct, "segment"), "mid_market");
        assert_string_equal(str(acct, "plan"), "growth");
        assert_true(json_is_real(json_object_get(acct, "arr")));
        assert_true(json_real_value(json_object_get(acct, "arr")) == 120000.5);
        assert_true(json_is_integer(json_object_get(acct, "seats")));
        assert_int_equal(json_integer_value(json_object_get(acct, "seats")), 40);
        assert_string_equal(str(acct, "renewal_date"), "2027-01-15");
        /* 2026-11-20 -> 2027-01-15: 10 + 31 + 15 */
        assert_int_equal(
                json_integer_value(json_object_get(acct, "days_to_renewal")),
                56);
        assert_string_equal(str(acct, "lifecycle_stage"), "mature");
        assert_string_equal(str(acct, "csm_owner"), "jane");

        m = json_object_get(msg, "metrics");
        assert_true(json_equal(m, json_object_get(snap, "metrics")));
        assert_string_equal(str(m, "health_band"), "yellow");

        prev = json_object_get(msg, "previous");
        assert_true(json_equal(prev, json_object_get(snap, "previous")));
        assert_int_equal(json_array_size(prev), 1);

        json_decref(msg);
        json_decref(attrs);
        json_decref(snap);
        npsd_themes_destroy(th);
}

static void test_build_promoter_no_snapshot(void **state) {
        npsd_response_t r = response(10, NPSD_CAT_PROMOTER, NULL);
        json_t *msg = build(&r, NULL, NULL, 0, T0 + 1500);
        json_t *acct;
        const char *k;
        json_t *v;

        assert_string_equal(str(msg, "category"), "promoter");
        assert_null(json_object_get(msg, "followup"));
        assert_true(json_is_null(json_object_get(msg, "comment")));
        assert_true(json_is_null(json_object_get(msg, "trigger")));
        assert_true(json_is_null(json_object_get(msg, "channel")));
        assert_true(json_is_null(json_object_get(msg, "language")));
        assert_int_equal(json_array_size(json_object_get(msg, "themes")), 0);
        assert_true(json_is_object(json_object_get(msg, "attributes")));
        assert_int_equal(json_object_size(json_object_get(msg, "attributes")),
                         0);
        /* no snapshot: processed_at is now_ms */
        assert_string_equal(str(msg, "processed_at"),
                            "2026-11-20T10:00:01.500Z");
        assert_string_equal(str(msg, "priority"), "p3");
        assert_string_equal(str(msg, "playbook"), "advocacy");

        acct = json_object_get(msg, "account");
        assert_int_equal(json_object_size(acct), 9);
        json_object_foreach(acct, k, v)
                assert_true(json_is_null(v));
        assert_int_equal(json_object_size(json_object_get(msg, "metrics")), 0);
        assert_int_equal(json_array_size(json_object_get(msg, "previous")), 0);
        json_decref(msg);
}

static void test_build_account_conversions(void **state) {
        npsd_response_t r = response(7, NPSD_CAT_PASSIVE, "ok");
        json_t *snap = json_pack(
                "{s:{s:s, s:s, s:s, s:s, s:s}}", "account", "segment",
                "enterprise", "arr", "not-a-number", "seats", "4.5",
                "renewal_date", "2026-11-19", "name", "");
        json_t *msg, *acct;

        msg = build(&r, snap, NULL, 0, T0);
        acct = json_object_get(msg, "account");
        assert_true(json_is_null(json_object_get(acct, "arr")));
        assert_true(json_is_null(json_object_get(acct, "seats")));
        assert_true(json_is_null(json_object_get(acct, "name")));
        assert_int_equal(
                json_integer_value(json_object_get(acct, "days_to_renewal")),
                -1);
        /* passive, renewal passed, enterprise does not matter: p3 nudge */
        assert_string_equal(str(msg, "priority"), "p3");
        assert_string_equal(str(msg, "playbook"), "nudge");
        assert_null(json_object_get(msg, "followup"));
        json_decref(msg);
        json_decref(snap);

        /* whole arr, renewal in 90 days: passive p2; detractor p1 */
        snap = json_pack("{s:{s:s, s:s}}", "account", "arr", "50000",
                         "renewal_date", "2027-02-18");
        msg = build(&r, snap, NULL, 0, T0);
        acct = json_object_get(msg, "account");
        assert_true(json_number_value(json_object_get(acct, "arr")) == 50000.0);
        assert_int_equal(
                json_integer_value(json_object_get(acct, "days_to_renewal")),
                90);
        assert_string_equal(str(msg, "priority"), "p2");
        json_decref(msg);

        r = response(0, NPSD_CAT_DETRACTOR, NULL);
        msg = build(&r, snap, NULL, 0, T0);
        assert_string_equal(str(msg, "priority"), "p1");
        assert_string_equal(str(msg, "playbook"), "retention");
        json_decref(msg);
        json_decref(snap);

        /* 91 days and small arr: detractor p2 recovery */
        snap = json_pack("{s:{s:s, s:s, s:s}}", "account", "arr", "99999.99",
                         "renewal_date", "2027-02-19", "segment", "smb");
        msg = build(&r, snap, NULL, 0, T0);
        assert_string_equal(str(msg, "priority"), "p2");
        assert_string_equal(str(msg, "playbook"), "recovery");
        assert_true(json_is_object(json_object_get(msg, "followup")));
        json_decref(msg);
        json_decref(snap);
}

/* Redis Lua cjson prints reals with 17 significant digits; the output
 * carries them as one-decimal values. */
static void test_build_metrics_one_decimal(void **state) {
        npsd_response_t r = response(8, NPSD_CAT_PASSIVE, NULL);
        json_t *snap = json_loads(
                "{\"metrics\": {\"moe_90d\": 138.59999999999999,"
                " \"nps_30d\": -33.299999999999997,"
                " \"trend_90d\": 0.10000000000000001,"
                " \"responses_90d\": 3, \"health_band\": \"red\"}}",
                0, NULL);
        npsd_enrich_conf_t c;
        json_t *msg, *m;
        char *s;

        assert_non_null(snap);
        npsd_enrich_conf_default(&c);
        s = npsd_enrich_build(&r, snap, NULL, 0, &c, T0, NULL);
        assert_non_null(s);
        assert_non_null(strstr(s, "\"moe_90d\":138.6"));
        assert_null(strstr(s, "138.59"));
        assert_non_null(strstr(s, "\"nps_30d\":-33.3,"));
        assert_non_null(strstr(s, "\"trend_90d\":0.1,"));
        assert_non_null(strstr(s, "\"responses_90d\":3"));

        msg = json_loads(s, 0, NULL);
        assert_non_null(msg);
        m = json_object_get(msg, "metrics");
        assert_true(json_real_value(json_object_get(m, "moe_90d")) == 138.6);
        assert_true(json_is_integer(json_object_get(m, "responses_90d")));
        assert_string_equal(str(m, "health_band"), "red");
        json_decref(msg);
        free(s);
        json_decref(snap);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_priority_detractor),
                cmocka_unit_test(test_priority_passive_promoter),
                cmocka_unit_test(test_names_and_playbooks),
                cmocka_unit_test(test_build_detractor),
                cmocka_unit_test(test_build_promoter_no_snapshot),
                cmocka_unit_test(test_build_account_conversions),
                cmocka_unit_test(test_build_metrics_one_decimal),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
