/*
 * Unit tests of npsd_alert: the edge-triggered account alert rules of
 * SPEC §6 as apply.lua's alerts_check applies them — no repeat while a
 * condition holds, a new alert after it clears and returns, band changes
 * both ways, thresholds at their boundaries, severities.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "npsd/npsd_alert.h"
#include "npsd/npsd_config.h"

static npsd_alert_conf_t ac;
static npsd_alert_state_t st;
static npsd_alert_fired_t fired[NPSD_ALERT_CHECK_MAX];

static int setup(void **state) {
        npsd_alert_conf_default(&ac);
        memset(&st, 0, sizeof(st));
        return 0;
}

/* A quiet account: no condition holds, no health. */
static npsd_alert_in_t quiet(void) {
        npsd_alert_in_t in;

        memset(&in, 0, sizeof(in));
        return in;
}

/* One evaluation carrying the state forward; returns the alert count. */
static int step(const npsd_alert_in_t *in) {
        return npsd_alert_check(&st, in, &ac, &st, fired);
}

static void test_defaults(void **state) {
        npsd_alert_conf_t d;
        npsd_conf_t *c = npsd_conf_new();
        char errstr[256];

        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), 0);
        npsd_alert_conf_from(&d, c);
        assert_true(d.drop_points == -4 && ac.drop_points == -4);
        assert_int_equal(d.drop_min, 10);
        assert_int_equal(d.usage_min, 5);
        assert_true(d.usage_ratio == 0.7 && ac.usage_ratio == 0.7);
        npsd_conf_destroy(c);
}

static void test_quiet(void **state) {
        npsd_alert_in_t in = quiet();

        assert_int_equal(step(&in), 0);
        assert_int_equal(st.band, NPSD_BAND_NONE);
        assert_false(st.role_gap || st.nps_drop || st.usage_drop);
}

static void test_role_gap_edges(void **state) {
        npsd_alert_in_t in = quiet();

        in.role_gap_flag = 1;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].type, NPSD_ALERT_ROLE_GAP);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_MEDIUM);
        assert_true(st.role_gap);
        /* holds: nothing more, however many events */
        for (int i = 0; i < 5; i++)
                assert_int_equal(step(&in), 0);
        /* clears, then returns: fires again */
        in.role_gap_flag = 0;
        assert_int_equal(step(&in), 0);
        assert_false(st.role_gap);
        in.role_gap_flag = 1;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].type, NPSD_ALERT_ROLE_GAP);
}

static void test_nps_drop_thresholds(void **state) {
        npsd_alert_in_t in = quiet();

        in.has_trend = 1;
        in.responses = 10;
        in.responses_prev = 10;
        in.trend = -3.9; /* above the threshold */
        assert_int_equal(step(&in), 0);
        in.trend = -4; /* at it: fires */
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].type, NPSD_ALERT_NPS_DROP);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_MEDIUM);
        in.trend = -30; /* deeper while on: no repeat */
        assert_int_equal(step(&in), 0);

        /* too few responses in either period: off */
        in.responses = 9;
        assert_int_equal(step(&in), 0);
        assert_false(st.nps_drop);
        in.responses = 10;
        in.responses_prev = 9;
        assert_int_equal(step(&in), 0);
        in.responses_prev = 10;
        in.trend = -8; /* back on, at twice the threshold: high */
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_HIGH);
        in.has_trend = 0; /* no previous period any more: off */
        assert_int_equal(step(&in), 0);
        assert_false(st.nps_drop);
        in.has_trend = 1;
        in.trend = -7.9;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_MEDIUM);
}

static void test_health_band_changes(void **state) {
        npsd_alert_in_t in = quiet();

        /* the first band ever known raises nothing: no change from it */
        in.band = NPSD_BAND_GREEN;
        assert_int_equal(step(&in), 0);
        assert_int_equal(st.band, NPSD_BAND_GREEN);
        assert_int_equal(step(&in), 0);
        /* down to yellow: medium */
        in.band = NPSD_BAND_YELLOW;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].type, NPSD_ALERT_HEALTH_BAND);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_MEDIUM);
        assert_int_equal(fired[0].from, NPSD_BAND_GREEN);
        assert_int_equal(fired[0].to, NPSD_BAND_YELLOW);
        assert_int_equal(step(&in), 0);
        /* to red: high */
        in.band = NPSD_BAND_RED;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_HIGH);
        /* health disappears: nothing, the last band is remembered */
        in.band = NPSD_BAND_NONE;
        assert_int_equal(step(&in), 0);
        assert_int_equal(st.band, NPSD_BAND_RED);
        in.band = NPSD_BAND_RED; /* back, unchanged: nothing */
        assert_int_equal(step(&in), 0);
        /* up, straight to green: low */
        in.band = NPSD_BAND_GREEN;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_LOW);
        assert_int_equal(fired[0].from, NPSD_BAND_RED);
        assert_int_equal(fired[0].to, NPSD_BAND_GREEN);
        /* green -> red directly: high */
        in.band = NPSD_BAND_RED;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_HIGH);
        assert_int_equal(fired[0].from, NPSD_BAND_GREEN);
        assert_int_equal(npsd_alert_band_severity(NPSD_BAND_YELLOW),
                         NPSD_SEVERITY_MEDIUM);
}

static void test_usage_drop_thresholds(void **state) {
        npsd_alert_in_t in = quiet();

        /* 4 users before: too few to judge, even if all left */
        in.active_users_prev_7d = 4;
        in.active_users_7d = 0;
        assert_int_equal(step(&in), 0);
        /* 5 before: below 3.5 fires, 4 does not */
        in.active_users_prev_7d = 5;
        in.active_users_7d = 4;
        assert_int_equal(step(&in), 0);
        in.active_users_7d = 3;
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].type, NPSD_ALERT_USAGE_DROP);
        assert_int_equal(fired[0].severity, NPSD_SEVERITY_MEDIUM);
        in.active_users_7d = 0;
        assert_int_equal(step(&in), 0); /* holds */
        /* exactly 70 %: not below, clears */
        in.active_users_prev_7d = 10;
        in.active_users_7d = 7;
        assert_int_equal(step(&in), 0);
        assert_false(st.usage_drop);
        in.active_users_7d = 6; /* returns: fires again */
        assert_int_equal(step(&in), 1);
        assert_int_equal(fired[0].type, NPSD_ALERT_USAGE_DROP);
}

/* Several rules turning on in one evaluation fire in apply.lua's order. */
static void test_order_and_state_copy(void **state) {
        npsd_alert_in_t in = quiet();
        npsd_alert_state_t prev, next;

        in.band = NPSD_BAND_GREEN;
        assert_int_equal(step(&in), 0);
        in.role_gap_flag = 1;
        in.has_trend = 1;
        in.trend = -20;
        in.responses = in.responses_prev = 50;
        in.band = NPSD_BAND_RED;
        in.active_users_prev_7d = 20;
        in.active_users_7d = 2;
        prev = st;
        assert_int_equal(npsd_alert_check(&prev, &in, &ac, &next, fired), 4);
        assert_int_equal(fired[0].type, NPSD_ALERT_ROLE_GAP);
        assert_int_equal(fired[1].type, NPSD_ALERT_NPS_DROP);
        assert_int_equal(fired[1].severity, NPSD_SEVERITY_HIGH);
        assert_int_equal(fired[2].type, NPSD_ALERT_HEALTH_BAND);
        assert_int_equal(fired[3].type, NPSD_ALERT_USAGE_DROP);
        /* prev untouched when next is another struct */
        assert_false(prev.role_gap);
        assert_int_equal(prev.band, NPSD_BAND_GREEN);
        assert_true(next.role_gap && next.nps_drop && next.usage_drop);
        /* the same evaluation again from the new state: nothing (a
         * redelivered event changes nothing and raises nothing) */
        assert_int_equal(npsd_alert_check(&next, &in, &ac, &next, fired), 0);
}

static void test_names(void **state) {
        assert_string_equal(npsd_alert_type_name(NPSD_ALERT_ROLE_GAP),
                            "role_gap");
        assert_string_equal(npsd_alert_type_name(NPSD_ALERT_NPS_DROP),
                            "nps_drop");
        assert_string_equal(npsd_alert_type_name(NPSD_ALERT_HEALTH_BAND),
                            "health_band");
        assert_string_equal(npsd_alert_type_name(NPSD_ALERT_USAGE_DROP),
                            "usage_drop");
        assert_string_equal(npsd_alert_type_name(NPSD_ALERT_FOLLOWUP_OVERDUE),
                            "followup_overdue");
        assert_null(npsd_alert_type_name(NPSD_ALERT__CNT));
        /* parse is the inverse of name; anything else is no type */
        for (int t = 0; t < NPSD_ALERT__CNT; t++)
                assert_int_equal(npsd_alert_type_parse(npsd_alert_type_name(
                                         (npsd_alert_type_t)t)),
                                 t);
        assert_int_equal(npsd_alert_type_parse("role_gaps"), NPSD_ALERT__CNT);
        assert_int_equal(npsd_alert_type_parse(""), NPSD_ALERT__CNT);
        assert_int_equal(npsd_alert_type_parse(NULL), NPSD_ALERT__CNT);
        assert_string_equal(npsd_severity_name(NPSD_SEVERITY_HIGH), "high");
        assert_string_equal(npsd_severity_name(NPSD_SEVERITY_MEDIUM),
                            "medium");
        assert_string_equal(npsd_severity_name(NPSD_SEVERITY_LOW), "low");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_defaults, setup),
                cmocka_unit_test_setup(test_quiet, setup),
                cmocka_unit_test_setup(test_role_gap_edges, setup),
                cmocka_unit_test_setup(test_nps_drop_thresholds, setup),
                cmocka_unit_test_setup(test_health_band_changes, setup),
                cmocka_unit_test_setup(test_usage_drop_thresholds, setup),
                cmocka_unit_test_setup(test_order_and_state_copy, setup),
                cmocka_unit_test_setup(test_names, setup),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
