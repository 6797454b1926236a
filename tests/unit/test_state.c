/*
 * Unit tests of npsd_state: the account state record's helpers and its
 * encoding (round trip, refusal of truncated or foreign bytes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_state.h"

#define D 20412

static void fill(npsd_state_t *st) {
        npsd_state_loop_t lp;
        npsd_state_pending_t p;

        npsd_state_init(st);
        st->context_updated_ms = 1763600000000LL;
        st->last_response_ms = 1763600000123LL;
        strcpy(st->last_response_at, "2025-11-20T01:33:20.123Z");
        st->last_score = 3;
        st->settings_digest = 0xfeedfacecafebeefULL;
        npsd_buckets_add(&st->buckets, D - 100, 0, 2);
        npsd_buckets_add(&st->buckets, D, 20, 1);
        st->last_activity_ms = 1763600000999LL;
        strcpy(st->last_activity_at, "2025-11-20T01:33:20.999Z");
        st->tickets_opened = 7;
        st->tickets_closed = 9; /* more closed than opened: kept as is */
        npsd_state_errors_add(st, D - 2, 4, D);
        memset(&lp, 0, sizeof(lp));
        strcpy(lp.rid, "r-1");
        strcpy(lp.owner, "dana@example.com");
        lp.submitted_ms = 1763600000000LL;
        strcpy(lp.submitted_at, "2025-11-20T01:33:20Z");
        lp.due_ms[0] = lp.submitted_ms + 172800000LL;
        lp.due_ms[1] = lp.submitted_ms + 604800000LL;
        lp.due_ms[2] = lp.submitted_ms + 2592000000LL;
        strcpy(lp.met_at[0], "2025-11-21T00:00:00Z");
        lp.status[1] = NPSD_STAGE_MISSED;
        lp.status[0] = NPSD_STAGE_CLEARED;
        lp.overdue = 1;
        assert_non_null(npsd_state_loop_add(st, &lp));
        strcpy(lp.rid, "r-2");
        lp.closed = 1;
        lp.overdue = 0;
        assert_non_null(npsd_state_loop_add(st, &lp));
        memset(&p, 0, sizeof(p));
        strcpy(p.rid, "r-9");
        strcpy(p.event_id, "f-1");
        p.level = 3;
        p.at_ms = 5;
        strcpy(p.at, "1970-01-01T00:00:00.005Z");
        assert_non_null(npsd_state_pending_add(st, &p));
        st->open_detractors = 1;
        st->overdue_followups = 1;
        st->loops_closed = 4;
        st->loops_closed_on_time = 2;
        st->nps_drop_on = 1;
        st->usage_drop_on = 1;
        st->band = NPSD_BAND_YELLOW;
        st->alert_n[2] = 3;
        st->alert_n[4] = 12;
        assert_int_equal(npsd_state_recent_push(st, 9, NPSD_ROLE_ADMIN,
                                                "2025-11-19T00:00:00Z", NULL, 3),
                         0);
        assert_int_equal(npsd_state_recent_push(st, 3, NPSD_ROLE_OTHER,
                                                "2025-11-20T01:33:20.123Z",
                                                "slow \"exports\", ünïcode", 3),
                         0);
        st->gseq = 41;
        st->views_day = 20400;
        st->counted_day = 20401;
        st->active_users_7d = 12;
        st->active_users_30d = 30;
        st->active_users_prev_7d = 9;
        st->features_30d = 4;
        st->loops_ever = 1;
}

static void test_roundtrip(void **state) {
        npsd_state_t a, b;
        unsigned char *buf;
        size_t need;
        char err[128];

        fill(&a);
        need = npsd_state_encode(&a, NULL, 0);
        buf = malloc(need);
        assert_int_equal(npsd_state_encode(&a, buf, need), need);
        npsd_state_init(&b);
        assert_int_equal(npsd_state_decode(&b, buf, need, err, sizeof(err)), 0);
        assert_true(b.context_updated_ms == a.context_updated_ms);
        assert_true(b.last_response_ms == a.last_response_ms);
        assert_string_equal(b.last_response_at, a.last_response_at);
        assert_int_equal(b.last_score, 3);
        assert_true(b.settings_digest == a.settings_digest);
        assert_int_equal(b.buckets.cnt, 2);
        assert_int_equal(b.buckets.v[0].day, D - 100);
        assert_int_equal(b.buckets.v[1].slot, 20);
        assert_string_equal(b.last_activity_at, a.last_activity_at);
        assert_int_equal(b.tickets_closed, 9);
        assert_int_equal(npsd_state_errors_7d(&b, D), 4);
        assert_int_equal(b.loop_cnt, 2);
        assert_string_equal(b.loops[0].owner, "dana@example.com");
        assert_true(b.loops[0].due_ms[2] == a.loops[0].due_ms[2]);
        assert_string_equal(b.loops[0].met_at[0], "2025-11-21T00:00:00Z");
        assert_string_equal(b.loops[0].met_at[1], "");
        assert_int_equal(b.loops[0].status[0], NPSD_STAGE_CLEARED);
        assert_int_equal(b.loops[0].status[1], NPSD_STAGE_MISSED);
        assert_int_equal(b.loops[0].overdue, 1);
        assert_int_equal(b.loops[1].closed, 1);
        assert_int_equal(b.loops[1].overdue, 0);
        assert_int_equal(b.pending_cnt, 1);
        assert_string_equal(b.pending[0].event_id, "f-1");
        assert_int_equal(b.pending[0].level, 3);
        assert_int_equal(b.loops_closed, 4);
        assert_int_equal(b.role_gap_on, 0);
        assert_int_equal(b.nps_drop_on, 1);
        assert_int_equal(b.usage_drop_on, 1);
        assert_int_equal(b.band, NPSD_BAND_YELLOW);
        assert_true(b.alert_n[4] == 12);
        assert_int_equal(b.recent_n, 2);
        assert_int_equal(b.recent[0].score, 3); /* newest first */
        assert_string_equal(b.recent[0].comment, "slow \"exports\", ünïcode");
        assert_null(b.recent[1].comment);
        assert_int_equal(b.recent[1].role, NPSD_ROLE_ADMIN);
        assert_true(b.gseq == 41);
        assert_int_equal(b.views_day, 20400);
        assert_int_equal(b.counted_day, 20401);
        assert_true(b.active_users_7d == 12 && b.active_users_30d == 30 &&
                    b.active_users_prev_7d == 9 && b.features_30d == 4);
        assert_int_equal(b.loops_ever, 1);
        /* re-encoding the decoded record gives the same bytes */
        {
                unsigned char *again = malloc(need);
                assert_int_equal(npsd_state_encode(&b, again, need), need);
                assert_memory_equal(again, buf, need);
                free(again);
        }
        npsd_state_free(&b);
        npsd_state_free(&a);
        free(buf);
}

static void test_refuses_bad_bytes(void **state) {
        npsd_state_t a, b;
        unsigned char buf[1024];
        size_t need;
        char err[128];

        fill(&a);
        need = npsd_state_encode(&a, buf, sizeof(buf));
        assert_true(need < sizeof(buf));
        npsd_state_init(&b);
        for (size_t cut = 0; cut < need; cut++) {
                assert_int_equal(npsd_state_decode(&b, buf, cut, err,
                                                   sizeof(err)),
                                 -1);
                assert_int_equal(b.loop_cnt + b.buckets.cnt + b.recent_n, 0);
        }
        /* trailing bytes are not ignored */
        buf[need] = 0;
        assert_int_equal(npsd_state_decode(&b, buf, need + 1, err,
                                           sizeof(err)),
                         -1);
        /* another format */
        buf[0] = NPSD_STATE_FORMAT + 1;
        assert_int_equal(npsd_state_decode(&b, buf, need, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "format"));
        npsd_state_free(&a);
        npsd_state_free(&b);
}

static void test_recent_and_errors(void **state) {
        npsd_state_t st;

        npsd_state_init(&st);
        for (int i = 0; i < 5; i++)
                assert_int_equal(npsd_state_recent_push(&st, i, NPSD_ROLE_OTHER,
                                                        "t", "c", 3),
                                 0);
        assert_int_equal(st.recent_n, 3);
        assert_int_equal(st.recent[0].score, 4);
        assert_int_equal(st.recent[2].score, 2);
        /* keep 0: nothing kept */
        npsd_state_free(&st);
        assert_int_equal(npsd_state_recent_push(&st, 1, NPSD_ROLE_OTHER, "t",
                                                NULL, 0),
                         0);
        assert_int_equal(st.recent_n, 0);

        /* errors: 7 days ending today; days before today - 30 dropped */
        assert_int_equal(npsd_state_errors_add(&st, D, 1, D), 0);
        assert_int_equal(npsd_state_errors_add(&st, D - 6, 2, D), 0);
        assert_int_equal(npsd_state_errors_add(&st, D - 7, 4, D), 0);
        assert_int_equal(npsd_state_errors_add(&st, D, 8, D), 0);
        assert_int_equal(npsd_state_errors_7d(&st, D), 11);
        assert_int_equal(npsd_state_errors_7d(&st, D + 1), 9);
        assert_int_equal(npsd_state_errors_add(&st, D + 31, 1, D + 31), 0);
        assert_int_equal(st.err_n, 1); /* the older days went */
        npsd_state_free(&st);
}

static void test_loops(void **state) {
        npsd_state_t st;
        npsd_state_loop_t lp;

        npsd_state_init(&st);
        memset(&lp, 0, sizeof(lp));
        for (int i = 0; i < 10; i++) {
                snprintf(lp.rid, sizeof(lp.rid), "r-%d", i);
                assert_non_null(npsd_state_loop_add(&st, &lp));
        }
        assert_non_null(npsd_state_loop_find(&st, "r-7"));
        npsd_state_loop_remove(&st, 7);
        assert_null(npsd_state_loop_find(&st, "r-7"));
        assert_non_null(npsd_state_loop_find(&st, "r-9"));
        assert_int_equal(st.loop_cnt, 9);
        npsd_state_free(&st);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_refuses_bad_bytes),
                cmocka_unit_test(test_recent_and_errors),
                cmocka_unit_test(test_loops),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
