/*
 * Unit tests of npsd_buckets: slots, day buckets, window and previous-period
 * totals, pruning, the next change day and the serialised form.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_buckets.h"
#include "npsd/npsd_time.h"

#define D 20412 /* 2025-11-20 */

static npsd_periods_t periods_30_90(void) {
        npsd_periods_t p = {.window_days = {30, 90}, .window_cnt = 2,
                            .long_days = 90};
        return p;
}

static void test_slots(void **state) {
        unsigned s[3];

        npsd_slots_of(NPSD_CAT_DETRACTOR, NPSD_SURVEY_TRANSACTIONAL,
                      NPSD_ROLE_ADMIN, s);
        assert_int_equal(s[0], 0);  /* all.detractor */
        assert_int_equal(s[1], 6);  /* transactional.detractor */
        assert_int_equal(s[2], 12); /* admin.detractor */
        npsd_slots_of(NPSD_CAT_PROMOTER, NPSD_SURVEY_RELATIONSHIP,
                      NPSD_ROLE_OTHER, s);
        assert_int_equal(s[0], 2);
        assert_int_equal(s[1], 5);
        assert_int_equal(s[2], 20); /* the last slot */
}

static void test_add_keeps_order_and_merges(void **state) {
        npsd_buckets_t b;

        npsd_buckets_init(&b);
        assert_int_equal(npsd_buckets_add(&b, D, 5, 1), 0);
        assert_int_equal(npsd_buckets_add(&b, D - 3, 7, 2), 0);
        assert_int_equal(npsd_buckets_add(&b, D, 2, 1), 0);
        assert_int_equal(npsd_buckets_add(&b, D, 5, 4), 0);
        assert_int_equal(npsd_buckets_add(&b, D + 1, 0, 1), 0);
        assert_int_equal(b.cnt, 4);
        assert_int_equal(b.v[0].day, D - 3);
        assert_int_equal(b.v[1].slot, 2);
        assert_int_equal(b.v[2].slot, 5);
        assert_int_equal(b.v[2].count, 5);
        assert_int_equal(b.v[3].day, D + 1);
        /* refused: slot out of range, zero, overflow */
        assert_int_equal(npsd_buckets_add(&b, D, 21, 1), -1);
        assert_int_equal(npsd_buckets_add(&b, D, 1, 0), -1);
        assert_int_equal(npsd_buckets_add(&b, D, 5, UINT32_MAX), -1);
        assert_int_equal(b.cnt, 4);
        npsd_buckets_free(&b);
}

/* Windows 30d and 90d on D: 30d holds D-29..D, 90d D-89..D, the previous
 * period D-179..D-90. One count per edge day, in slot 2 (all.promoter):
 *   D+1 (future)  -> nowhere         D      -> 30, 90
 *   D-29          -> 30, 90          D-30   -> 90
 *   D-89          -> 90              D-90   -> prev
 *   D-179         -> prev            D-180  -> nowhere
 * so 30d = 2, 90d = 4, prev = 2. */
static void test_totals_edges(void **state) {
        npsd_periods_t p = periods_30_90();
        npsd_buckets_t b;
        npsd_totals_t t;
        int32_t days[] = {D + 1, D, D - 29, D - 30, D - 89, D - 90, D - 179,
                          D - 180};

        npsd_buckets_init(&b);
        for (size_t i = 0; i < sizeof(days) / sizeof(*days); i++)
                assert_int_equal(npsd_buckets_add(&b, days[i], 2, 1), 0);
        assert_int_equal(npsd_buckets_add(&b, D, 0, 3), 0);
        npsd_buckets_totals(&b, &p, D, &t);
        assert_int_equal(t.period_cnt, 3);
        assert_int_equal(t.t[0][2], 2);
        assert_int_equal(t.t[1][2], 4);
        assert_int_equal(t.t[2][2], 2);
        assert_int_equal(t.t[0][0], 3);
        assert_int_equal(t.t[2][0], 0);
        /* a day later: D-29 leaves 30d, D-89 moves to prev, D-179 leaves */
        npsd_buckets_totals(&b, &p, D + 1, &t);
        assert_int_equal(t.t[0][2], 2); /* D+1, D */
        assert_int_equal(t.t[1][2], 4); /* D+1, D, D-29, D-30 */
        assert_int_equal(t.t[2][2], 2); /* D-89, D-90 */
        npsd_buckets_free(&b);
}

/* The same sums by the window predicates of npsd_time, over random days. */
static void test_totals_match_window_predicates(void **state) {
        npsd_periods_t p = {.window_days = {7, 30, 90}, .window_cnt = 3,
                            .long_days = 90};
        int64_t want[NPSD_PERIODS_MAX][NPSD_SLOT_CNT];
        npsd_buckets_t b;
        npsd_totals_t t;

        srand(7);
        npsd_buckets_init(&b);
        memset(want, 0, sizeof(want));
        for (int i = 0; i < 2000; i++) {
                int32_t day = D - 200 + rand() % 203;
                unsigned slot = (unsigned)(rand() % NPSD_SLOT_CNT);
                uint32_t by = 1 + (uint32_t)(rand() % 3);
                assert_int_equal(npsd_buckets_add(&b, day, slot, by), 0);
                if (day > D)
                        continue;
                for (int w = 0; w < p.window_cnt; w++)
                        if (npsd_window_contains(D, p.window_days[w], day))
                                want[w][slot] += by;
                if (npsd_window_prev_contains(D, p.long_days, day))
                        want[p.window_cnt][slot] += by;
        }
        npsd_buckets_totals(&b, &p, D, &t);
        for (int w = 0; w <= p.window_cnt; w++)
                for (int s = 0; s < NPSD_SLOT_CNT; s++)
                        assert_int_equal(t.t[w][s], want[w][s]);
        npsd_buckets_free(&b);
}

static void test_prune(void **state) {
        npsd_periods_t p = periods_30_90();
        npsd_buckets_t b;
        npsd_totals_t before, after;

        npsd_buckets_init(&b);
        npsd_buckets_add(&b, D - 400, 1, 1);
        npsd_buckets_add(&b, D - 180, 1, 1);
        npsd_buckets_add(&b, D - 179, 1, 1);
        npsd_buckets_add(&b, D, 1, 1);
        npsd_buckets_totals(&b, &p, D, &before);
        assert_int_equal(npsd_buckets_prune(&b, &p, D), 2);
        assert_int_equal(b.cnt, 2);
        assert_int_equal(b.v[0].day, D - 179);
        npsd_buckets_totals(&b, &p, D, &after);
        assert_memory_equal(&before, &after, sizeof(before));
        assert_int_equal(npsd_buckets_prune(&b, &p, D), 0);
        npsd_buckets_free(&b);
}

static void test_next_change(void **state) {
        npsd_periods_t p = periods_30_90();
        npsd_buckets_t b;

        npsd_buckets_init(&b);
        assert_int_equal(npsd_buckets_next_change(&b, &p, D), NPSD_DAY_NONE);
        /* D-95: left 30d and 90d already; leaves prev on D-95+180 */
        npsd_buckets_add(&b, D - 95, 0, 1);
        assert_int_equal(npsd_buckets_next_change(&b, &p, D), D + 85);
        /* D-29 leaves 30d tomorrow */
        npsd_buckets_add(&b, D - 29, 0, 1);
        assert_int_equal(npsd_buckets_next_change(&b, &p, D), D + 1);
        /* on D+1 the next is D-29 + 90 */
        assert_int_equal(npsd_buckets_next_change(&b, &p, D + 1), D + 61);
        npsd_buckets_free(&b);
        /* a future day enters on its own day */
        npsd_buckets_init(&b);
        npsd_buckets_add(&b, D + 1, 0, 1);
        assert_int_equal(npsd_buckets_next_change(&b, &p, D), D + 1);
        npsd_buckets_free(&b);
        /* a day too old to matter schedules nothing */
        npsd_buckets_init(&b);
        npsd_buckets_add(&b, D - 180, 0, 1);
        assert_int_equal(npsd_buckets_next_change(&b, &p, D), NPSD_DAY_NONE);
        npsd_buckets_free(&b);
}

static void test_encode_roundtrip(void **state) {
        npsd_buckets_t b, c;
        unsigned char buf[256];
        size_t need, used;

        npsd_buckets_init(&b);
        npsd_buckets_init(&c);
        npsd_buckets_add(&b, -3, 0, 1); /* before 1970 */
        npsd_buckets_add(&b, D, 20, 300);
        npsd_buckets_add(&b, D, 4, UINT32_MAX);
        npsd_buckets_add(&b, D + 1, 4, 1);
        need = npsd_buckets_encode(&b, NULL, 0);
        assert_true(need > 0 && need < sizeof(buf));
        assert_int_equal(npsd_buckets_encode(&b, buf, sizeof(buf)), need);
        used = npsd_buckets_decode(&c, buf, need);
        assert_int_equal(used, need);
        assert_int_equal(c.cnt, b.cnt);
        for (size_t i = 0; i < b.cnt; i++) { /* field by field: padding */
                assert_int_equal(c.v[i].day, b.v[i].day);
                assert_int_equal(c.v[i].slot, b.v[i].slot);
                assert_int_equal(c.v[i].count, b.v[i].count);
        }

        /* truncated anywhere: refused, empty */
        for (size_t cut = 0; cut < need; cut++) {
                assert_int_equal(npsd_buckets_decode(&c, buf, cut), 0);
                assert_int_equal(c.cnt, 0);
        }
        /* an empty set is one byte */
        npsd_buckets_free(&b);
        assert_int_equal(npsd_buckets_encode(&b, buf, sizeof(buf)), 1);
        assert_int_equal(npsd_buckets_decode(&c, buf, 1), 1);
        assert_int_equal(c.cnt, 0);
        npsd_buckets_free(&c);
}

static void test_decode_refuses_bad_input(void **state) {
        npsd_buckets_t b;
        /* count 2: day 10 (zig-zag 20) slot 3 count 1, then delta 0 slot 3:
         * the same bucket twice, out of order */
        const unsigned char dup[] = {2, 20, 3, 1, 0, 3, 1};
        const unsigned char slot21[] = {1, 20, 21, 1};
        const unsigned char zero[] = {1, 20, 3, 0};
        const unsigned char ok[] = {2, 20, 3, 1, 0, 4, 1};

        npsd_buckets_init(&b);
        assert_int_equal(npsd_buckets_decode(&b, dup, sizeof(dup)), 0);
        assert_int_equal(npsd_buckets_decode(&b, slot21, sizeof(slot21)), 0);
        assert_int_equal(npsd_buckets_decode(&b, zero, sizeof(zero)), 0);
        assert_int_equal(npsd_buckets_decode(&b, ok, sizeof(ok)), sizeof(ok));
        assert_int_equal(b.cnt, 2);
        assert_int_equal(b.v[1].day, 10);
        assert_int_equal(b.v[1].slot, 4);
        npsd_buckets_free(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_slots),
                cmocka_unit_test(test_add_keeps_order_and_merges),
                cmocka_unit_test(test_totals_edges),
                cmocka_unit_test(test_totals_match_window_predicates),
                cmocka_unit_test(test_prune),
                cmocka_unit_test(test_next_change),
                cmocka_unit_test(test_encode_roundtrip),
                cmocka_unit_test(test_decode_refuses_bad_input),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
