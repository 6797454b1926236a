/*
 * Unit tests of npsd_step: one account's batches and timer ticks, with the
 * state carried between them through its encoding, as the store does.
 * Expected values are worked out by hand in the comments.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_pack.h"
#include "npsd/npsd_step.h"

#define DAY NPSD_MS_PER_DAY
/* 2026-03-02T12:00:00Z */
#define T0 (20514LL * DAY + 12 * 3600000LL)

typedef struct fx_s {
        npsd_conf_t *conf;
        npsd_themes_t *themes;
        npsd_state_t st;
        npsd_kvs_t account;
} fx_t;

static int setup(void **state) {
        fx_t *fx = calloc(1, sizeof(*fx));
        char errstr[256];
        const char *lex = npsd_themes_default_text();

        assert_non_null(fx);
        fx->conf = npsd_conf_new();
        assert_non_null(fx->conf);
        assert_int_equal(npsd_conf_finalize(fx->conf, errstr, sizeof(errstr)),
                         0);
        fx->themes = npsd_themes_new(lex, strlen(lex), errstr, sizeof(errstr));
        assert_non_null(fx->themes);
        npsd_state_init(&fx->st);
        npsd_kvs_init(&fx->account);
        *state = fx;
        return 0;
}

static int teardown(void **state) {
        fx_t *fx = *state;

        npsd_state_free(&fx->st);
        npsd_kvs_free(&fx->account);
        npsd_themes_destroy(fx->themes);
        npsd_conf_destroy(fx->conf);
        free(fx);
        return 0;
}

static npsd_response_t resp(const char *id, int score, npsd_role_t role,
                            int64_t at) {
        npsd_response_t r;

        memset(&r, 0, sizeof(r));
        r.event_id = id;
        r.account_id = "acme";
        r.user_id = "u1";
        r.score = score;
        r.category = npsd_category_of(score);
        r.submitted_at_ms = at;
        r.role = role;
        r.survey_type = NPSD_SURVEY_RELATIONSHIP;
        return r;
}

/* Runs one step, then carries the state through its encoding as the store
 * does between batches. */
static void run(fx_t *fx, int64_t now, npsd_step_in_t *in,
                npsd_step_out_t *out) {
        npsd_step_env_t env;
        char errstr[256];
        size_t len;
        unsigned char *buf;

        in->account_id = "acme";
        in->account = &fx->account;
        npsd_step_env_init(&env, fx->conf, fx->themes, now);
        npsd_step_out_init(out);
        assert_int_equal(npsd_step_account(&env, in, &fx->st, out, errstr,
                                           sizeof(errstr)),
                         0);
        if (out->account_replaced) {
                npsd_kvs_clear(&fx->account);
                for (size_t i = 0; i < out->account.cnt; i++)
                        assert_int_equal(
                                npsd_kvs_add(&fx->account,
                                             out->account.v[i].key,
                                             out->account.v[i].value,
                                             strlen(out->account.v[i].value)),
                                0);
        }
        len = npsd_state_encode(&fx->st, NULL, 0);
        buf = malloc(len);
        assert_non_null(buf);
        npsd_state_encode(&fx->st, buf, len);
        assert_int_equal(npsd_state_decode(&fx->st, buf, len, errstr,
                                           sizeof(errstr)),
                         0);
        free(buf);
}

static const npsd_step_hash_t *hash(const npsd_step_out_t *out,
                                    const char *name) {
        for (size_t i = 0; i < out->hash_cnt; i++)
                if (!strcmp(out->hash[i].name, name))
                        return &out->hash[i];
        return NULL;
}

static void assert_set(const npsd_step_out_t *out, const char *h,
                       const char *field, const char *want) {
        const npsd_step_hash_t *e = hash(out, h);
        const char *got = e ? npsd_step_hash_get(out, e, field) : NULL;

        if (!want) {
                if (got)
                        fail_msg("%s %s: expected not set, got %s", h, field,
                                 got);
                return;
        }
        if (!got || strcmp(got, want))
                fail_msg("%s %s: got %s, expected %s", h, field,
                         got ? got : "(none)", want);
}

/* Three responses of a new account: 10 (promoter, end user), 8 (passive,
 * end user), 3 (detractor, decision maker). NPS = 100 * (1 - 1) / 3 = 0;
 * every view is written whole; the detractor opens a loop. */
static void test_new_account(void **state) {
        fx_t *fx = *state;
        npsd_response_t r[3] = {
                resp("e1", 10, NPSD_ROLE_END_USER, T0 - 3600000),
                resp("e2", 8, NPSD_ROLE_END_USER, T0 - 1800000),
                resp("e3", 3, NPSD_ROLE_DECISION_MAKER, T0 - 600000)};
        npsd_step_response_t sr[3];
        npsd_step_in_t in;
        npsd_step_out_t out;
        json_t *snap;
        json_error_t jerr;

        memset(sr, 0, sizeof(sr));
        for (int i = 0; i < 3; i++) {
                sr[i].resp = &r[i];
                sr[i].digest = "0123456789abcdef";
        }
        assert_int_equal(npsd_kvs_add(&fx->account, "segment", "enterprise",
                                      10), 0);
        assert_int_equal(npsd_kvs_add(&fx->account, "csm_owner", "jane", 4),
                         0);
        memset(&in, 0, sizeof(in));
        in.responses = sr;
        in.resp_cnt = 3;
        run(fx, T0, &in, &out);

        assert_true(out.changed && out.views_changed);
        for (int i = 0; i < 3; i++)
                assert_int_equal(sr[i].counted, 1);
        assert_true(hash(&out, "w:90d")->whole);
        assert_set(&out, "w:90d", "responses", "3");
        assert_set(&out, "w:90d", "nps", "0");
        assert_set(&out, "w:90d", "end_user.nps", "50");
        assert_set(&out, "w:90d", "decision_maker.nps", "-100");
        assert_set(&out, "summary", "nps_90d", "0");
        assert_set(&out, "summary", "role_gap_90d", "150");
        /* 2 responses per role: under role_gap.min_responses, no flag */
        assert_set(&out, "summary", "role_gap_flag", "0");
        assert_set(&out, "summary", "open_detractors", "1");
        assert_set(&out, "summary", "last_score", "3");
        assert_set(&out, "summary", "benchmark", "32"); /* enterprise */
        assert_int_equal(out.alert_cnt, 0);
        assert_int_equal(fx->st.loop_cnt, 1);
        assert_string_equal(fx->st.loops[0].owner, "jane");
        /* the owner's counter moves with the account's */
        assert_int_equal(out.csm_cnt, 1);
        assert_string_equal(out.csm[0].field, "open_detractors");
        assert_int_equal(out.csm[0].by, 1);
        /* cohorts: all, segment, survey_type, role = 4 x 3 slots each */
        assert_int_equal(out.cohort_cnt, 3 * 4 * 3);
        /* the ranks */
        assert_true(out.rank_nps_has && out.rank_nps == 0);
        /* the snapshot of the third response sees all three and the two
         * two earlier ones, newest first */
        snap = npsd_pack_decode(sr[2].snapshot, sr[2].snapshot_len,
                                    jerr.text, sizeof(jerr.text));
        assert_non_null(snap);
        /* what Redis keeps decodes to what the step built */
        assert_true(json_equal(snap, sr[2].snapshot_json));
        assert_int_equal(json_integer_value(json_object_get(
                                 json_object_get(snap, "metrics"),
                                 "responses_90d")),
                         3);
        assert_int_equal(json_array_size(json_object_get(snap, "previous")),
                         2);
        assert_int_equal(json_integer_value(json_object_get(
                                 json_array_get(json_object_get(snap,
                                                                "previous"),
                                                0),
                                 "score")),
                         8);
        json_decref(snap);
        /* the next timer: the acknowledge deadline, 48 h after e3 */
        assert_true(out.next_timer_ms == T0 - 600000 + 48 * 3600000LL + 1);
        npsd_step_responses_free(sr, 3);
        npsd_step_out_free(&out);

        /* the same three again (markers seen) and one in-batch repeat:
         * nothing changes, nothing is written */
        for (int i = 0; i < 3; i++)
                sr[i].seen = 1;
        run(fx, T0 + 1000, &in, &out);
        assert_int_equal(out.changed, 0);
        assert_int_equal(out.hash_cnt, 0);
        assert_null(sr[0].snapshot);
        npsd_step_out_free(&out);
}

/* A second batch on the same day writes only the fields that moved. */
static void test_diff_only(void **state) {
        fx_t *fx = *state;
        npsd_response_t r1 = resp("a1", 10, NPSD_ROLE_ADMIN, T0 - 7200000);
        npsd_response_t r2 = resp("a2", 9, NPSD_ROLE_ADMIN, T0 - 3600000);
        npsd_step_response_t sr;
        npsd_step_in_t in;
        npsd_step_out_t out;
        const npsd_step_hash_t *w;

        memset(&sr, 0, sizeof(sr));
        sr.resp = &r1;
        memset(&in, 0, sizeof(in));
        in.responses = &sr;
        in.resp_cnt = 1;
        run(fx, T0, &in, &out);
        npsd_step_responses_free(&sr, 1);
        npsd_step_out_free(&out);

        memset(&sr, 0, sizeof(sr));
        sr.resp = &r2;
        run(fx, T0 + 1000, &in, &out);
        w = hash(&out, "w:90d");
        assert_non_null(w);
        assert_int_equal(w->whole, 0);
        /* 2 promoters of 2: nps stays 100; responses and promoters move */
        assert_set(&out, "w:90d", "responses", "2");
        assert_set(&out, "w:90d", "promoters", "2");
        assert_set(&out, "w:90d", "nps", NULL);
        assert_set(&out, "w:90d", "admin.responses", "2");
        assert_set(&out, "summary", "nps_90d", NULL);
        assert_set(&out, "summary", "responses_90d", "2");
        assert_non_null(npsd_step_hash_get(&out, hash(&out, "summary"),
                                           "updated_at"));
        npsd_step_responses_free(&sr, 1);
        npsd_step_out_free(&out);

        /* the next day: every view is written whole again */
        memset(&in, 0, sizeof(in));
        in.tick = 1;
        run(fx, T0 + DAY, &in, &out);
        assert_true(hash(&out, "w:90d")->whole);
        assert_true(hash(&out, "summary")->whole);
        npsd_step_out_free(&out);
}

/* A follow-up before its response waits; the detractor's arrival applies
 * it. A late acknowledgement raises followup_overdue with met_at. */
static void test_followup_pending_then_late(void **state) {
        fx_t *fx = *state;
        npsd_followup_t f;
        npsd_step_followup_t sf;
        npsd_response_t r = resp("d1", 2, NPSD_ROLE_ADMIN, T0 - DAY);
        npsd_step_response_t sr;
        npsd_step_in_t in;
        npsd_step_out_t out;
        json_t *a;
        json_error_t jerr;

        memset(&f, 0, sizeof(f));
        f.event_id = "f1";
        f.account_id = "acme";
        f.response_event_id = "d1";
        f.action = NPSD_FOLLOWUP_ACKNOWLEDGED;
        f.at_ms = T0 - DAY + 50 * 3600000LL; /* 50 h: 2 h late */
        memset(&sf, 0, sizeof(sf));
        sf.ev = &f;
        memset(&in, 0, sizeof(in));
        in.followups = &sf;
        in.followup_cnt = 1;
        run(fx, T0 + 3 * DAY, &in, &out);
        assert_int_equal(sf.status, NPSD_FOLLOWUP_PENDING);
        assert_int_equal(fx->st.pending_cnt, 1);
        npsd_step_out_free(&out);

        memset(&sr, 0, sizeof(sr));
        sr.resp = &r;
        memset(&in, 0, sizeof(in));
        in.responses = &sr;
        in.resp_cnt = 1;
        run(fx, T0 + 3 * DAY + 1000, &in, &out);
        assert_int_equal(fx->st.pending_cnt, 0);
        assert_int_equal(out.alert_cnt, 1);
        assert_int_equal(out.alerts[0].type, NPSD_ALERT_FOLLOWUP_OVERDUE);
        a = json_loads(out.alerts[0].payload, 0, &jerr);
        assert_non_null(a);
        assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(a, "details"), "stage")),
                            "acknowledge");
        assert_non_null(json_object_get(json_object_get(a, "details"),
                                        "met_at"));
        assert_string_equal(json_string_value(json_object_get(a, "event_id")),
                            "f1");
        assert_string_equal(json_string_value(json_object_get(a, "severity")),
                            "medium");
        /* the alert_log entry is the message less its account object,
         * packed */
        {
                json_t *lg = npsd_pack_decode(out.alerts[0].log,
                                              out.alerts[0].log_len,
                                              jerr.text, sizeof(jerr.text));
                assert_non_null(lg);
                assert_non_null(json_object_get(a, "account"));
                assert_null(json_object_get(lg, "account"));
                json_object_del(a, "account");
                assert_true(json_equal(a, lg));
                json_decref(lg);
        }
        json_decref(a);
        /* id: type, account, first occurrence, the instant */
        {
                char want[128];
                snprintf(want, sizeof(want), "followup_overdue:acme:1:%lld",
                         (long long)(T0 + 3 * DAY + 1000));
                assert_string_equal(out.alerts[0].id, want);
        }
        assert_int_equal(fx->st.overdue_followups, 1);
        assert_set(&out, "summary", "overdue_followups", "1");
        npsd_step_responses_free(&sr, 1);
        npsd_step_out_free(&out);

        /* closing on time (within 30 days) clears overdue and counts */
        f.event_id = "f2";
        f.action = NPSD_FOLLOWUP_CLOSED;
        f.at_ms = T0 + 4 * DAY;
        memset(&sf, 0, sizeof(sf));
        sf.ev = &f;
        memset(&in, 0, sizeof(in));
        in.followups = &sf;
        in.followup_cnt = 1;
        run(fx, T0 + 4 * DAY, &in, &out);
        assert_int_equal(sf.status, NPSD_FOLLOWUP_APPLIED);
        /* route met on time, close on time: no new alert */
        assert_int_equal(out.alert_cnt, 0);
        assert_int_equal(fx->st.open_detractors, 0);
        assert_int_equal(fx->st.overdue_followups, 0);
        assert_int_equal(fx->st.loops_closed, 1);
        assert_int_equal(fx->st.loops_closed_on_time, 1);
        npsd_step_out_free(&out);
}

/* The timer misses the acknowledgement (no met_at, no cause), then the
 * loop ends when its day leaves the long window. */
static void test_tick_deadlines_and_end(void **state) {
        fx_t *fx = *state;
        npsd_response_t r = resp("d2", 0, NPSD_ROLE_OTHER, T0);
        npsd_step_response_t sr;
        npsd_step_in_t in;
        npsd_step_out_t out;
        json_t *a;
        json_error_t jerr;

        memset(&sr, 0, sizeof(sr));
        sr.resp = &r;
        memset(&in, 0, sizeof(in));
        in.responses = &sr;
        in.resp_cnt = 1;
        run(fx, T0 + 1000, &in, &out);
        npsd_step_responses_free(&sr, 1);
        npsd_step_out_free(&out);

        /* exactly at the deadline: still on time */
        memset(&in, 0, sizeof(in));
        in.tick = 1;
        run(fx, T0 + 48 * 3600000LL, &in, &out);
        assert_int_equal(out.alert_cnt, 0);
        npsd_step_out_free(&out);
        run(fx, T0 + 48 * 3600000LL + 1, &in, &out);
        assert_int_equal(out.alert_cnt, 1);
        a = json_loads(out.alerts[0].payload, 0, &jerr);
        assert_non_null(a);
        assert_null(json_object_get(json_object_get(a, "details"), "met_at"));
        assert_true(json_is_null(json_object_get(a, "event_id")));
        json_decref(a);
        assert_int_equal(fx->st.overdue_followups, 1);
        npsd_step_out_free(&out);

        /* 91 days on: route and close missed on the way, then the end */
        run(fx, T0 + 91 * DAY, &in, &out);
        assert_int_equal(out.alert_cnt, 2);
        assert_int_equal(fx->st.loop_cnt, 0);
        assert_int_equal(fx->st.open_detractors, 0);
        assert_int_equal(fx->st.overdue_followups, 0);
        assert_int_equal(fx->st.alert_n[NPSD_ALERT_FOLLOWUP_OVERDUE], 3);
        /* the detractor left the 90d window: its fields are gone */
        assert_true(hash(&out, "w:90d")->whole);
        assert_set(&out, "summary", "nps_90d", NULL);
        assert_set(&out, "summary", "open_detractors", "0");
        npsd_step_out_free(&out);
}

/* Role gap: 5 end users at 10 and 5 decision makers at 0: end user NPS
 * 100, decision maker -100, gap 200 > 15 with 5 each: the alert fires once,
 * and not again on the next batch while the flag holds. */
static void test_role_gap_edge(void **state) {
        fx_t *fx = *state;
        npsd_response_t r[10];
        npsd_step_response_t sr[10];
        char ids[10][8];
        npsd_step_in_t in;
        npsd_step_out_t out;
        json_t *a;
        json_error_t jerr;

        memset(sr, 0, sizeof(sr));
        for (int i = 0; i < 10; i++) {
                snprintf(ids[i], sizeof(ids[i]), "g%d", i);
                r[i] = resp(ids[i], i < 5 ? 10 : 0,
                            i < 5 ? NPSD_ROLE_END_USER
                                  : NPSD_ROLE_DECISION_MAKER,
                            T0 - 1000 * (10 - i));
                sr[i].resp = &r[i];
        }
        memset(&in, 0, sizeof(in));
        in.responses = sr;
        in.resp_cnt = 10;
        run(fx, T0, &in, &out);
        assert_int_equal(out.alert_cnt, 1);
        assert_int_equal(out.alerts[0].type, NPSD_ALERT_ROLE_GAP);
        a = json_loads(out.alerts[0].payload, 0, &jerr);
        assert_non_null(a);
        assert_int_equal(json_integer_value(json_object_get(
                                 json_object_get(a, "details"), "role_gap")),
                         200);
        assert_string_equal(json_string_value(json_object_get(a, "event_id")),
                            "g9");
        json_decref(a);
        npsd_step_responses_free(sr, 10);
        npsd_step_out_free(&out);

        /* one more decision maker detractor: the flag holds, no alert */
        memset(sr, 0, sizeof(sr));
        r[0] = resp("g10", 0, NPSD_ROLE_DECISION_MAKER, T0);
        sr[0].resp = &r[0];
        in.resp_cnt = 1;
        run(fx, T0 + 1000, &in, &out);
        for (size_t i = 0; i < out.alert_cnt; i++)
                assert_int_not_equal(out.alerts[i].type, NPSD_ALERT_ROLE_GAP);
        npsd_step_responses_free(sr, 1);
        npsd_step_out_free(&out);
}

/* Usage: errors, tickets and the last activity from the events, the
 * distinct counts from the store; a drop from 10 to 6 active users is
 * below 0.7 x 10: usage_drop. */
static void test_usage(void **state) {
        fx_t *fx = *state;
        npsd_usage_t u[4];
        npsd_step_usage_t su[4];
        npsd_step_counts_t c = {.active_users_7d = 6, .active_users_30d = 12,
                                .active_users_prev_7d = 10,
                                .features_30d = 3};
        npsd_step_in_t in;
        npsd_step_out_t out;

        memset(u, 0, sizeof(u));
        memset(su, 0, sizeof(su));
        for (int i = 0; i < 4; i++) {
                u[i].event_id = i == 3 ? "u2" : (i == 0 ? "u0" : (i == 1 ? "u1" : "u2"));
                u[i].account_id = "acme";
                u[i].user_id = "x";
                u[i].occurred_at_ms = T0 - 1000 * (4 - i);
                su[i].ev = &u[i];
        }
        u[0].type = NPSD_USAGE_ERROR;
        u[1].type = NPSD_USAGE_TICKET_OPENED;
        u[2].type = NPSD_USAGE_ERROR;
        u[3].type = NPSD_USAGE_ERROR; /* u2 again in the batch: a duplicate */
        memset(&in, 0, sizeof(in));
        in.usage = su;
        in.usage_cnt = 4;
        in.counts = &c;
        run(fx, T0, &in, &out);
        assert_int_equal(su[3].counted, 0);
        assert_set(&out, "summary", "errors_7d", "2");
        assert_set(&out, "summary", "open_tickets", "1");
        assert_set(&out, "summary", "active_users_7d", "6");
        assert_set(&out, "summary", "features_30d", "3");
        /* support: 100 - 15 x 1 - 2 x 2 = 81; engagement 60; no seats */
        assert_set(&out, "summary", "health.support", "81");
        assert_set(&out, "summary", "health.engagement", "60");
        assert_int_equal(out.alert_cnt, 1);
        assert_int_equal(out.alerts[0].type, NPSD_ALERT_USAGE_DROP);
        /* usage moves the windows daily: the timer is tomorrow 00:01 */
        assert_true(out.next_timer_ms == 20515LL * DAY + 60000);
        npsd_step_out_free(&out);
}

/* Context records: an older one is ignored; a newer one replaces the hash
 * and moves the owner. */
static void test_context(void **state) {
        fx_t *fx = *state;
        npsd_account_t a1, a0;
        const npsd_account_t *ctx[2] = {&a1, &a0};
        npsd_step_in_t in;
        npsd_step_out_t out;

        memset(&a1, 0, sizeof(a1));
        a1.account_id = "acme";
        a1.segment = "smb";
        a1.csm_owner = "bob";
        a1.has_seats = 1;
        a1.seats = 40;
        a1.has_updated_at = 1;
        a1.updated_at_ms = T0 - 1000;
        a0 = a1;
        a0.segment = "enterprise";
        a0.updated_at_ms = T0 - 5000;
        memset(&in, 0, sizeof(in));
        in.contexts = ctx;
        in.context_cnt = 2;
        run(fx, T0, &in, &out);
        assert_true(out.account_replaced);
        assert_string_equal(npsd_kvs_get(&out.account, "segment"), "smb");
        assert_string_equal(npsd_kvs_get(&out.account, "seats"), "40");
        assert_string_equal(out.old_owner, "");
        assert_string_equal(out.new_owner, "bob");
        /* the smb benchmark (42) applies */
        assert_set(&out, "summary", "benchmark", "42");
        npsd_step_out_free(&out);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_new_account, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_diff_only, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(
                        test_followup_pending_then_late, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tick_deadlines_and_end,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_role_gap_edge, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_context, setup,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
