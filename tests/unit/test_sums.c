/*
 * Unit tests of npsd_sums: sums per (key, field), set members once, first-
 * added order, keys and fields that only differ in where they split, a
 * reset, and many entries against a plain reference.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "npsd/npsd_sums.h"

static void expect_entry(const npsd_sums_t *s, size_t i, int is_set,
                         const char *key, const char *field, long long by) {
        npsd_sums_entry_t e;

        npsd_sums_get(s, i, &e);
        assert_int_equal(e.is_set, is_set);
        assert_string_equal(e.key, key);
        assert_int_equal(e.key_len, strlen(key));
        assert_string_equal(e.field, field);
        assert_int_equal(e.field_len, strlen(field));
        assert_int_equal(e.by, by);
}

static void test_sums_and_members(void **state) {
        npsd_sums_t *s = npsd_sums_new();
        (void)state;

        assert_non_null(s);
        assert_int_equal(npsd_sums_incr(s, "c:seg:smb", 9, "20794\tn", 7, 1), 0);
        assert_int_equal(npsd_sums_sadd(s, "dirty", 5, "cohort:seg", 10), 0);
        assert_int_equal(npsd_sums_incr(s, "c:seg:smb", 9, "20794\tp", 7, 1), 0);
        assert_int_equal(npsd_sums_incr(s, "c:seg:smb", 9, "20794\tn", 7, 1), 0);
        assert_int_equal(npsd_sums_sadd(s, "dirty", 5, "cohort:seg", 10), 0);
        assert_int_equal(npsd_sums_incr(s, "c:seg:smb", 9, "20794\tp", 7, -1), 0);
        /* a set member and a counter of the same name are different */
        assert_int_equal(npsd_sums_incr(s, "dirty", 5, "cohort:seg", 10, 5), 0);
        /* the split between key and field matters */
        assert_int_equal(npsd_sums_incr(s, "ab", 2, "c", 1, 1), 0);
        assert_int_equal(npsd_sums_incr(s, "a", 1, "bc", 2, 2), 0);
        assert_int_equal(npsd_sums_count(s), 6);
        expect_entry(s, 0, 0, "c:seg:smb", "20794\tn", 2);
        expect_entry(s, 1, 1, "dirty", "cohort:seg", 0);
        expect_entry(s, 2, 0, "c:seg:smb", "20794\tp", 0);
        expect_entry(s, 3, 0, "dirty", "cohort:seg", 5);
        expect_entry(s, 4, 0, "ab", "c", 1);
        expect_entry(s, 5, 0, "a", "bc", 2);

        npsd_sums_reset(s);
        assert_int_equal(npsd_sums_count(s), 0);
        assert_int_equal(npsd_sums_incr(s, "a", 1, "bc", 2, 7), 0);
        assert_int_equal(npsd_sums_count(s), 1);
        expect_entry(s, 0, 0, "a", "bc", 7);
        npsd_sums_destroy(s);
        npsd_sums_destroy(NULL);
}

static void test_overflow_refused(void **state) {
        npsd_sums_t *s = npsd_sums_new();
        (void)state;

        assert_int_equal(npsd_sums_incr(s, "k", 1, "f", 1, LLONG_MAX), 0);
        assert_int_equal(npsd_sums_incr(s, "k", 1, "f", 1, 1), -1);
        assert_int_equal(npsd_sums_incr(s, "k", 1, "f", 1, -1), 0);
        expect_entry(s, 0, 0, "k", "f", LLONG_MAX - 1);
        assert_int_equal(npsd_sums_count(s), 1);
        npsd_sums_destroy(s);
}

/* Thousands of entries (the slot table grows several times, the text
 * buffer moves) against a plain array of expected sums. */
static void test_many_against_reference(void **state) {
        enum { KEYS = 37, FIELDS = 211, ADDS = 60000 };
        static long long want[KEYS][FIELDS];
        static int order[KEYS][FIELDS];
        npsd_sums_t *s = npsd_sums_new();
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        size_t seen = 0;
        (void)state;

        memset(want, 0, sizeof(want));
        memset(order, -1, sizeof(order));
        for (int round = 0; round < 2; round++) {
                for (int i = 0; i < ADDS; i++) {
                        char key[32], field[32];
                        int k, f;
                        long long by;
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        k = (int)(x % KEYS);
                        f = (int)((x >> 20) % FIELDS);
                        by = (long long)((x >> 40) % 7) - 3;
                        snprintf(key, sizeof(key), "nps:{g}:cohort:%d:d", k);
                        snprintf(field, sizeof(field), "%d\t%d", 20000 + f,
                                 f % 3);
                        assert_int_equal(npsd_sums_incr(s, key, strlen(key),
                                                        field, strlen(field),
                                                        by),
                                         0);
                        if (order[k][f] < 0)
                                order[k][f] = (int)seen++;
                        want[k][f] += by;
                }
                assert_int_equal(npsd_sums_count(s), seen);
                for (int k = 0; k < KEYS; k++)
                        for (int f = 0; f < FIELDS; f++) {
                                char key[32], field[32];
                                if (order[k][f] < 0)
                                        continue;
                                snprintf(key, sizeof(key),
                                         "nps:{g}:cohort:%d:d", k);
                                snprintf(field, sizeof(field), "%d\t%d",
                                         20000 + f, f % 3);
                                expect_entry(s, (size_t)order[k][f], 0, key,
                                             field, want[k][f]);
                        }
                /* the second round starts again from a reset table */
                npsd_sums_reset(s);
                memset(want, 0, sizeof(want));
                memset(order, -1, sizeof(order));
                seen = 0;
        }
        npsd_sums_destroy(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sums_and_members),
                cmocka_unit_test(test_overflow_refused),
                cmocka_unit_test(test_many_against_reference),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
