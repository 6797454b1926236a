/*
 * Unit tests of npsd_loop: closed-loop deadlines (plain UTC arithmetic
 * across months, years, leap days and DST dates), the stages each action
 * meets, late vs on time at the exact deadline, the timer, and the counter
 * moves apply.lua makes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_loop.h"
#include "npsd/npsd_time.h"

#define HOUR 3600000LL
#define DAY NPSD_MS_PER_DAY

static npsd_loop_conf_t lc;

static int setup(void **state) {
        npsd_loop_conf_default(&lc);
        return 0;
}

static int64_t ts(const char *s) {
        int64_t ms;

        assert_int_equal(npsd_time_parse_rfc3339(s, strlen(s), &ms), 0);
        return ms;
}

static void assert_due(int64_t submitted, npsd_loop_stage_t stage,
                       const char *want) {
        char buf[NPSD_TIME_BUFSZ];

        assert_string_equal(
                npsd_time_format(npsd_loop_due(submitted, stage, &lc), buf),
                want);
}

static void test_defaults(void **state) {
        npsd_loop_conf_t d;
        npsd_conf_t *c = npsd_conf_new();
        char errstr[256];

        assert_int_equal(lc.due_ms[NPSD_LOOP_ACKNOWLEDGE], 48 * HOUR);
        assert_int_equal(lc.due_ms[NPSD_LOOP_ROUTE], 7 * DAY);
        assert_int_equal(lc.due_ms[NPSD_LOOP_CLOSE], 30 * DAY);
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), 0);
        npsd_loop_conf_from(&d, c);
        assert_memory_equal(&d, &lc, sizeof(d));
        /* configurable */
        assert_int_equal(npsd_conf_set(c, "followup.ack_hours", "24", errstr,
                                       sizeof(errstr)), 0);
        assert_int_equal(npsd_conf_set(c, "followup.close_days", "14", errstr,
                                       sizeof(errstr)), 0);
        npsd_loop_conf_from(&d, c);
        assert_int_equal(d.due_ms[NPSD_LOOP_ACKNOWLEDGE], 24 * HOUR);
        assert_int_equal(d.due_ms[NPSD_LOOP_ROUTE], 7 * DAY);
        assert_int_equal(d.due_ms[NPSD_LOOP_CLOSE], 14 * DAY);
        npsd_conf_destroy(c);
}

static void test_deadlines(void **state) {
        /* across the end of a 28-day February */
        int64_t s = ts("2026-01-30T10:00:00Z");
        assert_due(s, NPSD_LOOP_ACKNOWLEDGE, "2026-02-01T10:00:00Z");
        assert_due(s, NPSD_LOOP_ROUTE, "2026-02-06T10:00:00Z");
        assert_due(s, NPSD_LOOP_CLOSE, "2026-03-01T10:00:00Z");

        /* across a year end */
        s = ts("2026-12-20T23:30:00Z");
        assert_due(s, NPSD_LOOP_ACKNOWLEDGE, "2026-12-22T23:30:00Z");
        assert_due(s, NPSD_LOOP_ROUTE, "2026-12-27T23:30:00Z");
        assert_due(s, NPSD_LOOP_CLOSE, "2027-01-19T23:30:00Z");

        /* a leap day */
        s = ts("2028-02-10T00:00:00Z");
        assert_due(s, NPSD_LOOP_CLOSE, "2028-03-11T00:00:00Z");

        /* DST changes do not exist in UTC: EU summer time starts on
         * 2026-03-29, ends on 2026-10-25; 48 h stay 48 h */
        s = ts("2026-03-27T12:00:00Z");
        assert_due(s, NPSD_LOOP_ACKNOWLEDGE, "2026-03-29T12:00:00Z");
        assert_due(s, NPSD_LOOP_ROUTE, "2026-04-03T12:00:00Z");
        s = ts("2026-10-24T02:30:00+02:00"); /* local CEST input */
        assert_due(s, NPSD_LOOP_ACKNOWLEDGE, "2026-10-26T00:30:00Z");
        assert_due(s, NPSD_LOOP_CLOSE, "2026-11-23T00:30:00Z");

        /* milliseconds are kept */
        s = ts("2026-11-20T10:00:00.250Z");
        assert_due(s, NPSD_LOOP_ACKNOWLEDGE, "2026-11-22T10:00:00.250Z");
}

static void test_stages_met(void **state) {
        assert_int_equal(npsd_loop_stages_met(NPSD_FOLLOWUP_ACKNOWLEDGED), 1);
        assert_int_equal(npsd_loop_stages_met(NPSD_FOLLOWUP_ROUTED), 2);
        assert_int_equal(npsd_loop_stages_met(NPSD_FOLLOWUP_CLOSED), 3);
        assert_string_equal(npsd_loop_stage_name(NPSD_LOOP_ACKNOWLEDGE),
                            "acknowledge");
        assert_string_equal(npsd_loop_stage_name(NPSD_LOOP_ROUTE), "route");
        assert_string_equal(npsd_loop_stage_name(NPSD_LOOP_CLOSE), "close");
        assert_null(npsd_loop_stage_name(NPSD_LOOP__CNT));
        assert_int_equal(npsd_loop_severity(NPSD_LOOP_ACKNOWLEDGE),
                         NPSD_SEVERITY_MEDIUM);
        assert_int_equal(npsd_loop_severity(NPSD_LOOP_ROUTE),
                         NPSD_SEVERITY_MEDIUM);
        assert_int_equal(npsd_loop_severity(NPSD_LOOP_CLOSE),
                         NPSD_SEVERITY_HIGH);
}

static void test_late_boundary(void **state) {
        int64_t s = ts("2026-11-20T10:00:00Z");
        int64_t due = s + 48 * HOUR;
        npsd_loop_t lp;
        npsd_loop_effect_t e;

        assert_false(npsd_loop_late(due, due));
        assert_true(npsd_loop_late(due + 1, due));
        assert_false(npsd_loop_late(due - 1, due));

        /* acknowledged exactly at the deadline: on time */
        npsd_loop_open(&lp, s, &lc);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ACKNOWLEDGED, due, &e);
        assert_int_equal(e.missed, 0);
        assert_int_equal(e.overdue_delta, 0);
        assert_true(lp.met[NPSD_LOOP_ACKNOWLEDGE]);
        assert_int_equal(lp.met_ms[NPSD_LOOP_ACKNOWLEDGE], due);

        /* one millisecond later: late, one alert */
        npsd_loop_open(&lp, s, &lc);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ACKNOWLEDGED, due + 1, &e);
        assert_int_equal(e.missed, 1u << NPSD_LOOP_ACKNOWLEDGE);
        assert_int_equal(e.overdue_delta, 1);
        assert_true(npsd_loop_is_overdue(&lp));

        /* the timer at the deadline leaves the stage open; after it, missed */
        npsd_loop_open(&lp, s, &lc);
        npsd_loop_tick(&lp, due, &e);
        assert_int_equal(e.missed, 0);
        npsd_loop_tick(&lp, due + 1, &e);
        assert_int_equal(e.missed, 1u << NPSD_LOOP_ACKNOWLEDGE);
        assert_int_equal(e.overdue_delta, 1);

        /* closed exactly at the close deadline: on time */
        npsd_loop_open(&lp, s, &lc);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_CLOSED, s + 30 * DAY, &e);
        assert_true(e.closed);
        assert_true(e.closed_on_time);
        /* every stage before close was met late by that action */
        assert_int_equal(e.missed, (1u << NPSD_LOOP_ACKNOWLEDGE) |
                                           (1u << NPSD_LOOP_ROUTE));
        assert_int_equal(e.overdue_delta, 0); /* +1 then -1 on closing */
        assert_false(npsd_loop_is_overdue(&lp));
}

/* Closing early meets every stage: no alert, closed on time. */
/* The timer declared a stage missed, then the follow-up arrives dated on
 * time (delayed in transit): the loop is no longer overdue. */
static void test_on_time_after_timer(void **state) {
        int64_t s = ts("2026-11-20T10:00:00Z");
        int64_t due = s + 48 * HOUR;
        npsd_loop_t lp;
        npsd_loop_effect_t e;

        (void)state;
        npsd_loop_open(&lp, s, &lc);
        npsd_loop_tick(&lp, due + HOUR, &e);
        assert_int_equal(e.overdue_delta, 1);
        assert_true(npsd_loop_is_overdue(&lp));
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ACKNOWLEDGED, due - HOUR, &e);
        assert_int_equal(e.missed, 0);
        assert_int_equal(e.overdue_delta, -1);
        assert_false(npsd_loop_is_overdue(&lp));
}

static void test_close_early(void **state) {
        int64_t s = ts("2026-11-20T10:00:00Z");
        npsd_loop_t lp;
        npsd_loop_effect_t e;

        npsd_loop_open(&lp, s, &lc);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_CLOSED, s + HOUR, &e);
        assert_int_equal(e.missed, 0);
        assert_int_equal(e.open_delta, -1);
        assert_true(e.closed && e.closed_on_time);
        for (int st = 0; st < NPSD_LOOP__CNT; st++) {
                assert_true(lp.met[st]);
                assert_int_equal(lp.met_ms[st], s + HOUR);
        }
        /* later actions change nothing: no second close */
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ACKNOWLEDGED, s + 2 * HOUR, &e);
        assert_int_equal(e.missed, 0);
        assert_false(e.closed);
        assert_int_equal(lp.met_ms[NPSD_LOOP_ACKNOWLEDGE], s + HOUR);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_CLOSED, s + 40 * DAY, &e);
        assert_int_equal(e.missed, 0);
        assert_false(e.closed);
        assert_int_equal(e.open_delta, 0);
        npsd_loop_tick(&lp, s + 89 * DAY, &e);
        assert_int_equal(e.missed, 0);
}

/* The timeline of tests/integration/it_followups.py: acknowledged on
 * time, route missed by the timer, routed late (nothing new), closed late
 * (one alert for close). */
static void test_timeline(void **state) {
        int64_t s = ts("2026-11-20T11:00:00Z");
        npsd_loop_t lp;
        npsd_loop_effect_t e;

        npsd_loop_open(&lp, s, &lc);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ACKNOWLEDGED, s + HOUR, &e);
        assert_int_equal(e.missed, 0);
        npsd_loop_tick(&lp, s + 3 * DAY, &e); /* ack met, route not due */
        assert_int_equal(e.missed, 0);
        npsd_loop_tick(&lp, s + 8 * DAY, &e);
        assert_int_equal(e.missed, 1u << NPSD_LOOP_ROUTE);
        assert_int_equal(e.overdue_delta, 1);
        npsd_loop_tick(&lp, s + 8 * DAY + HOUR, &e); /* no repeat */
        assert_int_equal(e.missed, 0);
        assert_int_equal(e.overdue_delta, 0);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ROUTED, s + 9 * DAY, &e);
        assert_int_equal(e.missed, 0); /* late, but already raised */
        assert_int_equal(e.overdue_delta, 0);
        assert_true(lp.met[NPSD_LOOP_ROUTE]);
        assert_true(npsd_loop_is_overdue(&lp));
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_CLOSED, s + 30 * DAY + HOUR, &e);
        assert_int_equal(e.missed, 1u << NPSD_LOOP_CLOSE);
        assert_int_equal(e.overdue_delta, -1);
        assert_int_equal(e.open_delta, -1);
        assert_true(e.closed);
        assert_false(e.closed_on_time);
        assert_false(npsd_loop_is_overdue(&lp));
}

/* A quiet loop: the timer misses all three stages, the loop counts as
 * one overdue detractor. */
static void test_tick_all(void **state) {
        int64_t s = ts("2026-11-20T11:00:00Z");
        npsd_loop_t lp;
        npsd_loop_effect_t e;

        npsd_loop_open(&lp, s, &lc);
        npsd_loop_tick(&lp, s + 31 * DAY, &e);
        assert_int_equal(e.missed, 7u);
        assert_int_equal(e.overdue_delta, 1);
        npsd_loop_tick(&lp, s + 32 * DAY, &e);
        assert_int_equal(e.missed, 0);
        /* a late routed changes no alert; closing ends the overdue */
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ROUTED, s + 33 * DAY, &e);
        assert_int_equal(e.missed, 0);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_CLOSED, s + 34 * DAY, &e);
        assert_int_equal(e.missed, 0);
        assert_int_equal(e.overdue_delta, -1);
        assert_true(e.closed);
        assert_false(e.closed_on_time);
}

/* Ack late but closed on time: the close counts on time, the ack alert
 * stays raised. */
static void test_ack_late_close_on_time(void **state) {
        int64_t s = ts("2026-11-20T11:00:00Z");
        npsd_loop_t lp;
        npsd_loop_effect_t e;

        npsd_loop_open(&lp, s, &lc);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ROUTED, s + 3 * DAY, &e);
        assert_int_equal(e.missed, 1u << NPSD_LOOP_ACKNOWLEDGE);
        assert_int_equal(e.overdue_delta, 1);
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_CLOSED, s + 10 * DAY, &e);
        assert_int_equal(e.missed, 0);
        assert_true(e.closed && e.closed_on_time);
        assert_int_equal(e.overdue_delta, -1);
}

/* Submitted 2026-11-20T10:00Z, long window 90 days: acknowledge by
 * 11-22T10:00, route by 11-27T10:00, close by 12-20T10:00; the loop ends
 * at midnight of 2026-11-20 + 90 days = 2027-02-18T00:00Z. */
static void test_next_timer(void **state) {
        npsd_loop_t lp;
        npsd_loop_effect_t eff;
        npsd_loop_stage_t st;
        char buf[NPSD_TIME_BUFSZ];
        int64_t t0 = ts("2026-11-20T10:00:00Z");

        npsd_loop_open(&lp, t0, &lc);
        assert_string_equal(npsd_time_format(npsd_loop_end_ms(&lp, 90), buf),
                            "2027-02-18T00:00:00Z");
        assert_true(npsd_loop_next_timer(&lp, 90, &st) ==
                    ts("2026-11-22T10:00:00Z"));
        assert_int_equal(st, NPSD_LOOP_ACKNOWLEDGE);
        /* acknowledged: the route deadline is next */
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_ACKNOWLEDGED,
                        ts("2026-11-21T00:00:00Z"), &eff);
        assert_true(npsd_loop_next_timer(&lp, 90, &st) ==
                    ts("2026-11-27T10:00:00Z"));
        assert_int_equal(st, NPSD_LOOP_ROUTE);
        /* route missed by the timer: acted on, so close is next */
        npsd_loop_tick(&lp, ts("2026-11-28T00:00:00Z"), &eff);
        assert_int_equal(eff.missed, 1u << NPSD_LOOP_ROUTE);
        npsd_loop_next_timer(&lp, 90, &st);
        assert_int_equal(st, NPSD_LOOP_CLOSE);
        /* closed: only the end remains */
        npsd_loop_apply(&lp, NPSD_FOLLOWUP_CLOSED,
                        ts("2026-12-01T00:00:00Z"), &eff);
        assert_true(npsd_loop_next_timer(&lp, 90, &st) ==
                    npsd_loop_end_ms(&lp, 90));
        assert_int_equal(st, NPSD_LOOP__CNT);
        /* a window shorter than a deadline: the end comes first */
        npsd_loop_open(&lp, t0, &lc);
        assert_true(npsd_loop_next_timer(&lp, 1, &st) ==
                    ts("2026-11-21T00:00:00Z"));
        assert_int_equal(st, NPSD_LOOP__CNT);
}

/* Ties: a stage before the end, an earlier stage before a later one. */
static void test_next_timer_ties(void **state) {
        npsd_loop_conf_t same = lc;
        npsd_loop_t lp;
        npsd_loop_stage_t st;
        int64_t t0 = ts("2026-11-20T00:00:00Z"); /* midnight */

        /* close due at +30 d, midnight; a 30-day window ends then too */
        npsd_loop_open(&lp, t0, &lc);
        lp.met[NPSD_LOOP_ACKNOWLEDGE] = lp.met[NPSD_LOOP_ROUTE] = 1;
        assert_true(npsd_loop_next_timer(&lp, 30, &st) == t0 + 30 * DAY);
        assert_int_equal(st, NPSD_LOOP_CLOSE);
        /* acknowledge and route due at once */
        same.due_ms[NPSD_LOOP_ROUTE] = same.due_ms[NPSD_LOOP_ACKNOWLEDGE];
        npsd_loop_open(&lp, t0, &same);
        npsd_loop_next_timer(&lp, 90, &st);
        assert_int_equal(st, NPSD_LOOP_ACKNOWLEDGE);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_defaults, setup),
                cmocka_unit_test_setup(test_deadlines, setup),
                cmocka_unit_test_setup(test_stages_met, setup),
                cmocka_unit_test_setup(test_late_boundary, setup),
                cmocka_unit_test_setup(test_on_time_after_timer, setup),
                cmocka_unit_test_setup(test_close_early, setup),
                cmocka_unit_test_setup(test_timeline, setup),
                cmocka_unit_test_setup(test_tick_all, setup),
                cmocka_unit_test_setup(test_ack_late_close_on_time, setup),
                cmocka_unit_test_setup(test_next_timer, setup),
                cmocka_unit_test_setup(test_next_timer_ties, setup),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
