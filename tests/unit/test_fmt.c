/*
 * Unit tests of npsd_fmt: every result equals what printf prints, on
 * edges and on a million pseudo-random values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "npsd/npsd_fmt.h"
#include "npsd/npsd_nps.h"

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void) { /* xorshift64 */
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void check_i64(int64_t v) {
        char want[32], got[NPSD_FMT_INT_BUFSZ];
        size_t n;

        snprintf(want, sizeof(want), "%" PRId64, v);
        n = npsd_fmt_i64(v, got);
        assert_string_equal(got, want);
        assert_int_equal(n, strlen(want));
}

static void check_1dp(double v) {
        char want[64], got[24];
        size_t n;

        if (snprintf(want, sizeof(want), "%.1f", v) >= 24)
                return; /* the caller's buffer is for metrics, not 1e30 */
        n = npsd_fmt_1dp(v, got);
        assert_string_equal(got, want);
        assert_int_equal(n, strlen(want));
}

static void test_integers(void **state) {
        const int64_t edges[] = {0,  1,         -1,        9,  10, -10, 99,
                                 100, INT64_MAX, INT64_MIN, INT64_MIN + 1,
                                 1000000007};
        char buf[NPSD_FMT_INT_BUFSZ];

        (void)state;
        for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
                check_i64(edges[i]);
        for (int i = 0; i < 1000000; i++)
                check_i64((int64_t)next() >> (next() % 64));
        assert_int_equal(npsd_fmt_u64(UINT64_MAX, buf), 20);
        assert_string_equal(buf, "18446744073709551615");
}

/* Ties of the binary value (0.25, 0.35 ...) and values a hair from them are
 * where a naive round(v * 10) differs from printf. */
static void test_one_decimal(void **state) {
        const double edges[] = {0.0,   -0.0,  0.05,   0.15,  0.25, 0.35,
                                -0.25, -0.04, 2.5,    -2.45, 99.95,
                                -100,  100,   33.35,  1e8,   -1e8,
                                1e15,  NAN,   INFINITY, 12345678.95};

        (void)state;
        for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
                check_1dp(edges[i]);
                check_1dp(nextafter(edges[i], 1e300));
                check_1dp(nextafter(edges[i], -1e300));
        }
        for (int i = 0; i < 1000000; i++) {
                /* metrics: -100 .. 100 in hundredths and arbitrary bits */
                check_1dp((double)((int64_t)(next() % 20001) - 10000) / 100.0);
                check_1dp((double)(int64_t)(next() >> 11) / 9007199254740992.0 *
                          200.0 - 100.0);
        }
}

/* The views' format: integral without ".0", never "-0". */
static void test_metric_format(void **state) {
        char buf[24];

        (void)state;
        assert_string_equal(npsd_metric_format(30.0, buf), "30");
        assert_string_equal(npsd_metric_format(-0.04, buf), "0");
        assert_string_equal(npsd_metric_format(-0.0, buf), "0");
        assert_string_equal(npsd_metric_format(15.25, buf), "15.2");
        assert_string_equal(npsd_metric_format(-33.35, buf), "-33.4");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_integers),
                cmocka_unit_test(test_one_decimal),
                cmocka_unit_test(test_metric_format),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
