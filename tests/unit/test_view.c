/*
 * Unit tests of npsd_view: window hash fields, field diffs, the account
 * metrics and summary fields, against values worked out by hand below.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_view.h"

#define SLOT(slice, cat) ((slice) * NPSD_CAT__CNT + (cat))

static void set3(int64_t *t, npsd_slice_t sl, int64_t d, int64_t s,
                 int64_t p) {
        t[SLOT(sl, NPSD_CAT_DETRACTOR)] = d;
        t[SLOT(sl, NPSD_CAT_PASSIVE)] = s;
        t[SLOT(sl, NPSD_CAT_PROMOTER)] = p;
}

static void assert_field(const npsd_fields_t *f, const char *name,
                         const char *want) {
        const char *got = npsd_fields_get(f, name);

        if (!want) {
                if (got)
                        fail_msg("%s: expected absent, got %s", name, got);
                return;
        }
        if (!got)
                fail_msg("%s: missing, expected %s", name, want);
        if (strcmp(got, want))
                fail_msg("%s: got %s, expected %s", name, got, want);
}

/* 50 promoters, 30 passives, 20 detractors, all relationship, end_user:
 * NPS 30, moe 15.3, ci 14.1..44.2 (worked in test_nps.c). */
static void test_window_fields(void **state) {
        int64_t t[NPSD_SLOT_CNT] = {0};
        npsd_fields_t f;

        set3(t, NPSD_SLICE_ALL, 20, 30, 50);
        set3(t, NPSD_SLICE_RELATIONSHIP, 20, 30, 50);
        set3(t, NPSD_SLICE_END_USER, 20, 30, 50);
        npsd_view_window(t, 50, &f);
        assert_int_equal(f.cnt, 27); /* three slices x nine fields */
        assert_field(&f, "responses", "100");
        assert_field(&f, "promoters", "50");
        assert_field(&f, "passives", "30");
        assert_field(&f, "detractors", "20");
        assert_field(&f, "nps", "30");
        assert_field(&f, "moe", "15.3");
        assert_field(&f, "ci_low", "14.1");
        assert_field(&f, "ci_high", "44.2");
        assert_field(&f, "low_confidence", "0");
        assert_field(&f, "relationship.nps", "30");
        assert_field(&f, "end_user.ci_high", "44.2");
        assert_field(&f, "transactional.responses", NULL);
        assert_field(&f, "admin.nps", NULL);
        /* n=10 (2 promoters, 3 passives, 5 detractors): -30, flagged low */
        memset(t, 0, sizeof(t));
        set3(t, NPSD_SLICE_OTHER, 5, 3, 2);
        npsd_view_window(t, 50, &f);
        assert_int_equal(f.cnt, 9);
        assert_field(&f, "other.nps", "-30");
        assert_field(&f, "other.moe", "48.4");
        assert_field(&f, "other.ci_low", "-65.2");
        assert_field(&f, "other.ci_high", "19.1");
        assert_field(&f, "other.low_confidence", "1");
        /* nothing counted: no field at all */
        memset(t, 0, sizeof(t));
        npsd_view_window(t, 50, &f);
        assert_int_equal(f.cnt, 0);
}

static void test_diff(void **state) {
        npsd_fields_t a = {.cnt = 0}, b = {.cnt = 0};
        size_t set[NPSD_FIELDS_MAX], del[NPSD_FIELDS_MAX], ns, nd;

        npsd_fields_add(&a, "x", "1");
        npsd_fields_add(&a, "y", "2");
        npsd_fields_add(&a, "gone", "3");
        npsd_fields_add(&b, "y", "2");
        npsd_fields_add(&b, "x", "5");
        npsd_fields_add(&b, "new", "7");
        assert_int_equal(npsd_fields_add(&b, "absent", NULL), 0);
        npsd_fields_diff(&a, &b, set, &ns, del, &nd);
        assert_int_equal(ns, 2);
        assert_string_equal(b.f[set[0]].name, "x");
        assert_string_equal(b.f[set[1]].name, "new");
        assert_int_equal(nd, 1);
        assert_string_equal(a.f[del[0]].name, "gone");
        npsd_fields_diff(&b, &b, set, &ns, del, &nd);
        assert_int_equal(ns + nd, 0);
}

/* Windows 30d and 90d, segment enterprise (median 32).
 * 90d:  all 50P 30S 20D -> NPS 30, moe 15.3, 100 responses; every one a
 *       relationship survey (benchmark 35: delta -5);
 *       end_user 40P 10S -> 80; decision_maker 10P 20S 20D -> -20;
 *       gap 80 - (-20) = 100, flagged (> 15, 50 each side >= 3).
 * 30d:  5P 5D -> 0.          previous 90d: 30P 10S 10D -> 40; trend -10.
 * Health: nps (30 + 100) / 2 = 65; adoption 100 x 8 / 10 = 80;
 *   engagement 100 x 4 / 5 = 80; support 100 - 15 x 2 - 2 x 3 = 64;
 *   follow-up 100 - 34 x 1 = 66 (20 detractors in 90d);
 *   (65x40 + 80x20 + 80x15 + 64x10 + 66x15) / 100 = 70.3 -> 70, green. */
static void test_metrics_and_summary(void **state) {
        npsd_conf_t *conf = npsd_conf_new();
        char err[256];
        npsd_periods_t periods;
        npsd_totals_t t;
        npsd_view_usage_t u = {.active_users_7d = 4, .active_users_prev_7d = 5,
                               .active_users_30d = 8, .open_tickets = 2,
                               .errors_7d = 3, .overdue_followups = 1,
                               .has_seats = 1, .seats = 10};
        npsd_account_metrics_t m;
        npsd_fields_t f;

        assert_non_null(conf);
        assert_int_equal(npsd_conf_finalize(conf, err, sizeof(err)), 0);
        npsd_periods_from(&periods, conf);
        assert_int_equal(periods.window_cnt, 2);
        memset(&t, 0, sizeof(t));
        t.period_cnt = 3;
        set3(t.t[1], NPSD_SLICE_ALL, 20, 30, 50);
        set3(t.t[1], NPSD_SLICE_RELATIONSHIP, 20, 30, 50);
        set3(t.t[1], NPSD_SLICE_END_USER, 0, 10, 40);
        set3(t.t[1], NPSD_SLICE_DECISION_MAKER, 20, 20, 10);
        set3(t.t[0], NPSD_SLICE_ALL, 5, 0, 5);
        set3(t.t[2], NPSD_SLICE_ALL, 10, 10, 30);
        npsd_view_metrics(&t, &periods, conf, "enterprise", &u, &m);
        assert_int_equal(npsd_view_summary(&m, &periods, &f), 0);
        assert_field(&f, "nps_30d", "0");
        assert_field(&f, "nps_90d", "30");
        assert_field(&f, "responses_90d", "100");
        assert_field(&f, "moe_90d", "15.3");
        assert_field(&f, "nps_prev_90d", "40");
        assert_field(&f, "trend_90d", "-10");
        assert_field(&f, "role_gap_90d", "100");
        assert_field(&f, "role_gap_flag", "1");
        assert_field(&f, "benchmark", "32");
        assert_field(&f, "benchmark_delta", "-2");
        assert_field(&f, "benchmark.relationship", "35");
        assert_field(&f, "benchmark_delta.relationship", "-5");
        assert_field(&f, "benchmark.transactional", NULL);
        assert_field(&f, "health", "70");
        assert_field(&f, "health_band", "green");
        assert_field(&f, "health.nps", "65");
        assert_field(&f, "health.adoption", "80");
        assert_field(&f, "health.engagement", "80");
        assert_field(&f, "health.support", "64");
        assert_field(&f, "health.followup", "66");
        assert_int_equal(f.cnt, 19);
        assert_int_equal(m.responses_prev, 50);

        /* an empty account: only the fields that are counts or settings */
        memset(&t, 0, sizeof(t));
        memset(&u, 0, sizeof(u));
        npsd_view_metrics(&t, &periods, conf, NULL, &u, &m);
        assert_int_equal(npsd_view_summary(&m, &periods, &f), 0);
        assert_int_equal(f.cnt, 3);
        assert_field(&f, "responses_90d", "0");
        assert_field(&f, "role_gap_flag", "0");
        assert_field(&f, "benchmark", "38"); /* unknown segment: all */
        npsd_conf_destroy(conf);
}

/* A gap over 15 with too few responses on one side is not flagged; a gap
 * of exactly 15 is not over 15. */
static void test_role_gap_rules(void **state) {
        npsd_conf_t *conf = npsd_conf_new();
        char err[256];
        npsd_periods_t periods;
        npsd_totals_t t;
        npsd_view_usage_t u = {0};
        npsd_account_metrics_t m;

        npsd_conf_finalize(conf, err, sizeof(err));
        npsd_periods_from(&periods, conf);
        memset(&t, 0, sizeof(t));
        set3(t.t[1], NPSD_SLICE_END_USER, 0, 0, 2);       /* 100 */
        set3(t.t[1], NPSD_SLICE_DECISION_MAKER, 5, 0, 0); /* -100 */
        npsd_view_metrics(&t, &periods, conf, "smb", &u, &m);
        assert_true(m.has_gap && m.role_gap_long == 200.0);
        assert_int_equal(m.role_gap_flag, 0); /* end_user has 2 < 3 */
        /* 20 end users: 11P 9S -> 55; 20 decision makers: 8P 12S -> 40 */
        set3(t.t[1], NPSD_SLICE_END_USER, 0, 9, 11);
        set3(t.t[1], NPSD_SLICE_DECISION_MAKER, 0, 12, 8);
        npsd_view_metrics(&t, &periods, conf, "smb", &u, &m);
        assert_true(m.role_gap_long == 15.0);
        assert_int_equal(m.role_gap_flag, 0);
        set3(t.t[1], NPSD_SLICE_DECISION_MAKER, 0, 13, 7); /* 35: gap 20 */
        npsd_view_metrics(&t, &periods, conf, "smb", &u, &m);
        assert_int_equal(m.role_gap_flag, 1);
        npsd_conf_destroy(conf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_window_fields),
                cmocka_unit_test(test_diff),
                cmocka_unit_test(test_metrics_and_summary),
                cmocka_unit_test(test_role_gap_rules),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
