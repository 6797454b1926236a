/*
 * Unit tests of npsd_nps: NPS, margin of error, adjusted-Wald interval and
 * the formatting the Redis hashes use.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "npsd/npsd_nps.h"

static void compute(int64_t p, int64_t pa, int64_t d, npsd_nps_t *out) {
        npsd_counts_t c = {.promoters = p, .passives = pa, .detractors = d};

        npsd_nps_compute(&c, 50, out);
}

/* n=100, P=50, D=20:
 *   nps = 100*(50-20)/100 = 30
 *   moe = 1.96*100*sqrt((.5+.2-(.3)^2)/100) = 196*sqrt(.0061) = 15.308 -> 15.3
 *   n'=103, p'=50.75/103=.492718, d'=20.75/103=.201456, p'-d'=.291262
 *   var = .694175-.084834 = .609341; se = sqrt(.609341/103) = .076915
 *   ci = 100*(.291262 -+ 1.96*.076915) = 29.126 -+ 15.075 -> 14.1 .. 44.2 */
static void test_known_values(void **state) {
        npsd_nps_t r;

        compute(50, 30, 20, &r);
        assert_int_equal(r.n, 100);
        assert_int_equal(r.has, 1);
        assert_true(r.nps == 30.0);
        assert_true(r.moe == 15.3);
        assert_true(r.ci_low == 14.1);
        assert_true(r.ci_high == 44.2);
        assert_int_equal(r.low_confidence, 0);
}

/* n=10, P=2, D=5: nps = -30
 *   moe = 196*sqrt((.7-.09)/10) = 196*.246982 = 48.408 -> 48.4
 *   n'=13, p'=2.75/13=.211538, d'=5.75/13=.442308, diff=-.230769
 *   var = .653846-.053254 = .600592; se = sqrt(.600592/13) = .214942
 *   ci = 100*(-.230769 -+ .421286) -> -65.2 .. 19.1 */
static void test_small_sample(void **state) {
        npsd_nps_t r;

        compute(2, 3, 5, &r);
        assert_true(r.nps == -30.0);
        assert_true(r.moe == 48.4);
        assert_true(r.ci_low == -65.2);
        assert_true(r.ci_high == 19.1);
        assert_int_equal(r.low_confidence, 1);
}

static void test_empty(void **state) {
        npsd_nps_t r;

        compute(0, 0, 0, &r);
        assert_int_equal(r.n, 0);
        assert_int_equal(r.has, 0);
        assert_int_equal(r.low_confidence, 1);
}

/* 10 promoters: nps 100, moe 0 (variance 1 - 1 = 0).
 *   n'=13, p'=10.75/13=.826923, d'=.75/13=.057692, diff=.769231
 *   var = .884615-.591716 = .292899; se = sqrt(.292899/13) = .150102
 *   ci = 76.9 -+ 29.4 -> 47.5 .. 106.3, clamped to 100 */
static void test_all_promoters(void **state) {
        npsd_nps_t r;

        compute(10, 0, 0, &r);
        assert_true(r.nps == 100.0);
        assert_true(r.moe == 0.0);
        assert_true(r.ci_low == 47.5);
        assert_true(r.ci_high == 100.0);

        compute(0, 0, 10, &r);
        assert_true(r.nps == -100.0);
        assert_true(r.ci_low == -100.0);
        assert_true(r.ci_high == -47.5);

        /* one promoter: the interval is clamped on the high side too */
        compute(1, 0, 0, &r);
        assert_true(r.ci_high <= 100.0 && r.ci_low >= -100.0);
}

static void test_low_confidence_boundary(void **state) {
        npsd_nps_t r;

        compute(49, 0, 0, &r);
        assert_int_equal(r.low_confidence, 1);
        compute(50, 0, 0, &r);
        assert_int_equal(r.low_confidence, 0);
        compute(20, 10, 19, &r);
        assert_int_equal(r.n, 49);
        assert_int_equal(r.low_confidence, 1);
}

static void test_round1(void **state) {
        assert_true(npsd_round1(-0.04) == 0.0);
        assert_false(signbit(npsd_round1(-0.04)));
        assert_false(signbit(npsd_round1(-0.0)));
        assert_true(npsd_round1(0.05) == 0.1);
        assert_true(npsd_round1(-0.05) == -0.1);
        assert_true(npsd_round1(12.25) == 12.3);   /* half away from zero */
        assert_true(npsd_round1(-12.25) == -12.3);
        assert_true(npsd_round1(33.333333) == 33.3);
        assert_true(npsd_round1(66.666666) == 66.7);
}

/* NPS on a .x5 boundary: P-D = 1, n = 16 -> 6.25 -> 6.3; -6.25 -> -6.3.
 * 1/3 -> 33.3; 2/3 -> 66.7; tiny negatives never give -0. */
static void test_nps_rounding(void **state) {
        npsd_nps_t r;

        compute(1, 15, 0, &r);
        assert_true(r.nps == 6.3);
        compute(0, 15, 1, &r);
        assert_true(r.nps == -6.3);
        compute(1, 2, 0, &r);
        assert_true(r.nps == 33.3);
        compute(2, 1, 0, &r);
        assert_true(r.nps == 66.7);
        compute(0, 3000, 1, &r); /* -0.033 -> 0 */
        assert_true(r.nps == 0.0);
        assert_false(signbit(r.nps));
        compute(5, 0, 5, &r);
        assert_false(signbit(r.nps));
}

static void test_metric_format(void **state) {
        char buf[24];

        assert_string_equal(npsd_metric_format(30.0, buf), "30");
        assert_string_equal(npsd_metric_format(-12.5, buf), "-12.5");
        assert_string_equal(npsd_metric_format(33.3, buf), "33.3");
        assert_string_equal(npsd_metric_format(0.0, buf), "0");
        assert_string_equal(npsd_metric_format(-0.0, buf), "0");
        assert_string_equal(npsd_metric_format(-0.04, buf), "0");
        assert_string_equal(npsd_metric_format(100.0, buf), "100");
        assert_string_equal(npsd_metric_format(-100.0, buf), "-100");
        assert_string_equal(npsd_metric_format(0.1, buf), "0.1");
        assert_string_equal(npsd_metric_format(1234567.0, buf), "1234567");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_values),
                cmocka_unit_test(test_small_sample),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_all_promoters),
                cmocka_unit_test(test_low_confidence_boundary),
                cmocka_unit_test(test_round1),
                cmocka_unit_test(test_nps_rounding),
                cmocka_unit_test(test_metric_format),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
