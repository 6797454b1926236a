/*
 * Unit tests for npsd_time: RFC 3339 parsing/formatting and UTC day math.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "npsd/npsd_time.h"

static int64_t parse_ok(const char *s) {
        int64_t ms = -12345;

        assert_int_equal(npsd_time_parse_rfc3339(s, strlen(s), &ms), 0);
        return ms;
}

static void parse_bad(const char *s) {
        int64_t ms = 0;

        if (npsd_time_parse_rfc3339(s, strlen(s), &ms) != -1)
                fail_msg("accepted invalid timestamp \"%s\"", s);
}

static void test_parse_utc(void **state) {
        (void)state;
        assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
        /* 2026-11-20T10:00:00Z */
        assert_int_equal(parse_ok("2026-11-20T10:00:00Z"), 1795168800000LL);
        assert_int_equal(parse_ok("2026-11-20t10:00:00z"), 1795168800000LL);
        assert_int_equal(parse_ok("2000-02-29T23:59:59Z"), 951868799000LL);
}

static void test_parse_fraction(void **state) {
        (void)state;
        assert_int_equal(parse_ok("2026-11-20T10:00:00.5Z"), 1795168800500LL);
        assert_int_equal(parse_ok("2026-11-20T10:00:00.25Z"), 1795168800250LL);
        assert_int_equal(parse_ok("2026-11-20T10:00:00.123Z"), 1795168800123LL);
        /* Sub-millisecond digits are truncated. */
        assert_int_equal(parse_ok("2026-11-20T10:00:00.123999999Z"),
                         1795168800123LL);
        assert_int_equal(parse_ok("2026-11-20T12:00:00.5+02:00"),
                         1795168800500LL);
}

static void test_parse_offsets_near_midnight(void **state) {
        int64_t ms;
        char buf[11];

        (void)state;
        /* 00:30 local at +02:00 is still the previous UTC day. */
        ms = parse_ok("2026-03-01T00:30:00+02:00");
        assert_string_equal(npsd_date_format(npsd_time_day(ms), buf),
                            "2026-02-28");
        assert_int_equal(ms, parse_ok("2026-02-28T22:30:00Z"));
        /* 21:00 local at -05:00 is already the next UTC day. */
        ms = parse_ok("2024-02-28T21:00:00-05:00");
        assert_string_equal(npsd_date_format(npsd_time_day(ms), buf),
                            "2024-02-29");
        assert_int_equal(ms, parse_ok("2024-02-29T02:00:00Z"));
        /* New year crossings. */
        ms = parse_ok("2025-12-31T23:30:00-05:00");
        assert_string_equal(npsd_date_format(npsd_time_day(ms), buf),
                            "2026-01-01");
        ms = parse_ok("2026-01-01T01:59:59.999+02:00");
        assert_string_equal(npsd_date_format(npsd_time_day(ms), buf),
                            "2025-12-31");
        /* +00:00 and -00:00 are UTC. */
        assert_int_equal(parse_ok("2026-11-20T10:00:00+00:00"),
                         parse_ok("2026-11-20T10:00:00-00:00"));
        assert_int_equal(parse_ok("2026-11-20T15:30:00+05:30"),
                         parse_ok("2026-11-20T10:00:00Z"));
}

static void test_parse_invalid(void **state) {
        int64_t ms;

        (void)state;
        parse_bad("");
        parse_bad("2026-11-20");
        parse_bad("2026-11-20T10:00:00");        /* no offset */
        parse_bad("2026-11-20 10:00:00Z");       /* space separator */
        parse_bad("2026-11-20T10:00Z");          /* no seconds */
        parse_bad("2026-13-20T10:00:00Z");
        parse_bad("2026-00-20T10:00:00Z");
        parse_bad("2026-02-29T10:00:00Z");       /* not a leap year */
        parse_bad("2026-04-31T10:00:00Z");
        parse_bad("2026-11-20T24:00:00Z");
        parse_bad("2026-11-20T10:60:00Z");
        parse_bad("2026-11-20T10:00:61Z");
        parse_bad("2026-11-20T10:00:00.Z");      /* empty fraction */
        parse_bad("2026-11-20T10:00:00+0200");
        parse_bad("2026-11-20T10:00:00+02");
        parse_bad("2026-11-20T10:00:00+24:00");
        parse_bad("2026-11-20T10:00:00Zjunk");
        parse_bad("2026-11-20T10:00:00X");
        parse_bad("+2026-11-20T10:00:00Z");
        parse_bad("2026-1a-20T10:00:00Z");
        /* Length is honoured: a valid prefix is not a valid timestamp. */
        assert_int_equal(npsd_time_parse_rfc3339("2026-11-20T10:00:00Z", 19,
                                                 &ms),
                         -1);
        assert_int_equal(npsd_time_parse_rfc3339("2026-11-20T10:00:00Zxx", 20,
                                                 &ms),
                         0);
        assert_int_equal(npsd_time_parse_rfc3339(NULL, 0, &ms), -1);
}

static void test_format(void **state) {
        char buf[NPSD_TIME_BUFSZ];

        (void)state;
        assert_string_equal(npsd_time_format(0, buf), "1970-01-01T00:00:00Z");
        assert_string_equal(npsd_time_format(1795168800000LL, buf),
                            "2026-11-20T10:00:00Z");
        assert_string_equal(npsd_time_format(1795168800250LL, buf),
                            "2026-11-20T10:00:00.250Z");
        assert_string_equal(npsd_time_format(1795168800123LL, buf),
                            "2026-11-20T10:00:00.123Z");
        assert_string_equal(npsd_time_format(-1, buf),
                            "1969-12-31T23:59:59.999Z");
        assert_string_equal(npsd_time_format(-86400000LL, buf),
                            "1969-12-31T00:00:00Z");
        /* Offsets always come out as UTC. */
        assert_string_equal(
                npsd_time_format(parse_ok("2026-11-20T12:00:00.5+02:00"), buf),
                "2026-11-20T10:00:00.500Z");
        /* Extremes do not overflow the buffer or crash. */
        npsd_time_format(INT64_MAX, buf);
        assert_true(strlen(buf) < NPSD_TIME_BUFSZ);
        npsd_time_format(INT64_MIN, buf);
        assert_true(strlen(buf) < NPSD_TIME_BUFSZ);
}

static void test_roundtrip(void **state) {
        char buf[NPSD_TIME_BUFSZ];
        int64_t ms;

        (void)state;
        for (ms = -5 * NPSD_MS_PER_DAY; ms < 20000LL * NPSD_MS_PER_DAY;
             ms += 7LL * 3600000 + 1234567) {
                int64_t back;

                npsd_time_format(ms, buf);
                assert_int_equal(
                        npsd_time_parse_rfc3339(buf, strlen(buf), &back), 0);
                assert_int_equal(back, ms);
        }
}

static void test_day_negative(void **state) {
        (void)state;
        assert_int_equal(npsd_time_day(0), 0);
        assert_int_equal(npsd_time_day(NPSD_MS_PER_DAY - 1), 0);
        assert_int_equal(npsd_time_day(NPSD_MS_PER_DAY), 1);
        assert_int_equal(npsd_time_day(-1), -1);
        assert_int_equal(npsd_time_day(-NPSD_MS_PER_DAY), -1);
        assert_int_equal(npsd_time_day(-NPSD_MS_PER_DAY - 1), -2);
}

static void test_civil(void **state) {
        int y;
        unsigned m, d;

        (void)state;
        assert_int_equal(npsd_days_from_civil(1970, 1, 1), 0);
        assert_int_equal(npsd_days_from_civil(1969, 12, 31), -1);
        assert_int_equal(npsd_days_from_civil(2000, 3, 1), 11017);
        assert_int_equal(npsd_days_from_civil(2024, 2, 29), 19782);
        assert_int_equal(npsd_days_from_civil(2024, 3, 1), 19783);
        assert_int_equal(npsd_days_from_civil(1900, 1, 1), -25567);
        assert_int_equal(npsd_days_from_civil(1, 1, 1), -719162);

        npsd_civil_from_days(19782, &y, &m, &d);
        assert_int_equal(y, 2024);
        assert_int_equal(m, 2);
        assert_int_equal(d, 29);
        npsd_civil_from_days(-1, &y, &m, &d);
        assert_int_equal(y, 1969);
        assert_int_equal(m, 12);
        assert_int_equal(d, 31);
        npsd_civil_from_days(-719162, &y, &m, &d);
        assert_int_equal(y, 1);
        assert_int_equal(m, 1);
        assert_int_equal(d, 1);

        /* Round trip over a wide range, including the 1900/2100 non-leap
         * centuries and 2000 (leap). */
        for (int32_t z = -800000; z <= 800000; z += 13) {
                npsd_civil_from_days(z, &y, &m, &d);
                assert_int_equal(npsd_days_from_civil(y, m, d), z);
        }
}

static void test_date_parse_format(void **state) {
        int32_t day;
        char buf[11];

        (void)state;
        assert_int_equal(npsd_date_parse("2024-02-29", 10, &day), 0);
        assert_int_equal(day, 19782);
        assert_string_equal(npsd_date_format(day, buf), "2024-02-29");
        assert_int_equal(npsd_date_parse("1970-01-01", 10, &day), 0);
        assert_int_equal(day, 0);
        assert_int_equal(npsd_date_parse("1969-12-31", 10, &day), 0);
        assert_int_equal(day, -1);
        assert_string_equal(npsd_date_format(-1, buf), "1969-12-31");
        assert_int_equal(npsd_date_parse("2000-02-29", 10, &day), 0);
        /* Four-digit years only: the ends of that range, and days beyond
         * them clamped to those ends (never a cut or wider string). */
        assert_string_equal(npsd_date_format(-719528, buf), "0000-01-01");
        assert_string_equal(npsd_date_format(2932896, buf), "9999-12-31");
        assert_string_equal(npsd_date_format(-719529, buf), "0000-01-01");
        assert_string_equal(npsd_date_format(2932897, buf), "9999-12-31");
        assert_string_equal(npsd_date_format(INT32_MIN, buf), "0000-01-01");
        assert_string_equal(npsd_date_format(INT32_MAX, buf), "9999-12-31");
        /* Every formatted day parses back to itself. */
        for (int32_t z = -719528; z <= 2932896; z += 7) {
                int32_t back;

                assert_int_equal(npsd_date_parse(npsd_date_format(z, buf), 10,
                                                 &back),
                                 0);
                assert_int_equal(back, z);
        }

        assert_int_equal(npsd_date_parse("2023-02-29", 10, &day), -1);
        assert_int_equal(npsd_date_parse("1900-02-29", 10, &day), -1);
        assert_int_equal(npsd_date_parse("2026-13-01", 10, &day), -1);
        assert_int_equal(npsd_date_parse("2026-06-31", 10, &day), -1);
        assert_int_equal(npsd_date_parse("2026-06-00", 10, &day), -1);
        assert_int_equal(npsd_date_parse("2026-6-01", 9, &day), -1);
        assert_int_equal(npsd_date_parse("2026/06/01", 10, &day), -1);
        assert_int_equal(npsd_date_parse("2026-06-01T", 11, &day), -1);
        assert_int_equal(npsd_date_parse("", 0, &day), -1);
}

static void test_window_contains(void **state) {
        int32_t today = npsd_days_from_civil(2026, 11, 20);

        (void)state;
        /* Window 30 ending today holds today-29 .. today. */
        assert_true(npsd_window_contains(today, 30, today));
        assert_true(npsd_window_contains(today, 30, today - 29));
        assert_false(npsd_window_contains(today, 30, today - 30));
        assert_false(npsd_window_contains(today, 30, today + 1));
        /* Window 1 is today only. */
        assert_true(npsd_window_contains(today, 1, today));
        assert_false(npsd_window_contains(today, 1, today - 1));
        assert_false(npsd_window_contains(today, 0, today));
        /* Works across the epoch. */
        assert_true(npsd_window_contains(5, 30, -24));
        assert_false(npsd_window_contains(5, 30, -25));
}

static void test_window_prev_contains(void **state) {
        int32_t today = npsd_days_from_civil(2026, 11, 20);

        (void)state;
        /* Previous period of 90 holds today-179 .. today-90. */
        assert_true(npsd_window_prev_contains(today, 90, today - 90));
        assert_true(npsd_window_prev_contains(today, 90, today - 179));
        assert_false(npsd_window_prev_contains(today, 90, today - 89));
        assert_false(npsd_window_prev_contains(today, 90, today - 180));
        assert_false(npsd_window_prev_contains(today, 90, today));
        /* Current and previous periods tile without overlap or gap. */
        for (int32_t d = today - 200; d <= today + 5; d++) {
                int n = npsd_window_contains(today, 90, d) +
                        npsd_window_prev_contains(today, 90, d);
                assert_int_equal(n, (d <= today && d >= today - 179) ? 1 : 0);
        }
}

static void test_window_parse(void **state) {
        (void)state;
        assert_int_equal(npsd_window_parse("30d"), 30);
        assert_int_equal(npsd_window_parse("90d"), 90);
        assert_int_equal(npsd_window_parse("1d"), 1);
        assert_int_equal(npsd_window_parse("3650d"), 3650);
        assert_int_equal(npsd_window_parse("3651d"), -1);
        assert_int_equal(npsd_window_parse("0d"), -1);
        assert_int_equal(npsd_window_parse("30"), -1);
        assert_int_equal(npsd_window_parse("d"), -1);
        assert_int_equal(npsd_window_parse("30D"), -1);
        assert_int_equal(npsd_window_parse("30dd"), -1);
        assert_int_equal(npsd_window_parse("-30d"), -1);
        assert_int_equal(npsd_window_parse(" 30d"), -1);
        assert_int_equal(npsd_window_parse("99999999999d"), -1);
        assert_int_equal(npsd_window_parse(""), -1);
        assert_int_equal(npsd_window_parse(NULL), -1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_utc),
                cmocka_unit_test(test_parse_fraction),
                cmocka_unit_test(test_parse_offsets_near_midnight),
                cmocka_unit_test(test_parse_invalid),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_day_negative),
                cmocka_unit_test(test_civil),
                cmocka_unit_test(test_date_parse_format),
                cmocka_unit_test(test_window_contains),
                cmocka_unit_test(test_window_prev_contains),
                cmocka_unit_test(test_window_parse),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
