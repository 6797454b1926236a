/*
 * Unit tests of npsd_codec: varints, zig-zag integers, strings, the
 * measuring pass and the reader's bounds checks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "npsd/npsd_codec.h"

static void test_uint_bytes(void **state) {
        unsigned char buf[16];
        npsd_codec_writer_t w = {.buf = buf, .size = sizeof(buf)};

        npsd_codec_put_uint(&w, 0);
        npsd_codec_put_uint(&w, 127);
        npsd_codec_put_uint(&w, 128);
        npsd_codec_put_uint(&w, 300);
        assert_int_equal(w.off, 1 + 1 + 2 + 2);
        /* LEB128: 300 = 0b10_0101100 -> 0xac 0x02 */
        const unsigned char want[] = {0x00, 0x7f, 0x80, 0x01, 0xac, 0x02};
        assert_memory_equal(buf, want, sizeof(want));
}

static void test_roundtrip_and_measure(void **state) {
        const int64_t ints[] = {0, 1, -1, 63, -64, INT32_MIN, INT64_MAX,
                                INT64_MIN};
        unsigned char buf[128];
        npsd_codec_writer_t m = {0}, w = {.buf = buf, .size = sizeof(buf)};
        npsd_codec_reader_t r;
        char s[8];

        for (int pass = 0; pass < 2; pass++) {
                npsd_codec_writer_t *x = pass ? &w : &m;
                for (size_t i = 0; i < sizeof(ints) / sizeof(*ints); i++)
                        npsd_codec_put_int(x, ints[i]);
                npsd_codec_put_uint(x, UINT64_MAX);
                npsd_codec_put_str(x, "héllo");
                npsd_codec_put_str(x, NULL);
        }
        assert_int_equal(m.off, w.off); /* the measuring pass agrees */
        r = (npsd_codec_reader_t){.buf = buf, .len = w.off};
        for (size_t i = 0; i < sizeof(ints) / sizeof(*ints); i++)
                assert_true(npsd_codec_get_int(&r) == ints[i]);
        assert_true(npsd_codec_get_uint(&r) == UINT64_MAX);
        assert_int_equal(npsd_codec_get_str(&r, s, sizeof(s)), 6);
        assert_string_equal(s, "héllo");
        assert_int_equal(npsd_codec_get_str(&r, s, sizeof(s)), 0);
        assert_string_equal(s, "");
        assert_int_equal(r.err, 0);
        assert_int_equal(r.off, w.off);
        /* one more read fails, and stays failed */
        npsd_codec_get_uint(&r);
        assert_int_equal(r.err, 1);
}

static void test_reader_bounds(void **state) {
        const unsigned char cont[] = {0x80, 0x80};          /* truncated */
        const unsigned char big[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                     0xff, 0xff, 0xff, 0xff, 0x01}; /* > 64 bits */
        const unsigned char str[] = {0x05, 'a', 'b'};       /* short string */
        const unsigned char fit[] = {0x03, 'a', 'b', 'c'};
        npsd_codec_reader_t r;
        char s[4];

        r = (npsd_codec_reader_t){.buf = cont, .len = sizeof(cont)};
        npsd_codec_get_uint(&r);
        assert_int_equal(r.err, 1);
        r = (npsd_codec_reader_t){.buf = big, .len = sizeof(big)};
        npsd_codec_get_uint(&r);
        assert_int_equal(r.err, 1);
        r = (npsd_codec_reader_t){.buf = str, .len = sizeof(str)};
        npsd_codec_get_str(&r, s, sizeof(s));
        assert_int_equal(r.err, 1);
        /* "abc" needs 4 bytes with its NUL: fits in 4, not in 3 */
        r = (npsd_codec_reader_t){.buf = fit, .len = sizeof(fit)};
        assert_int_equal(npsd_codec_get_str(&r, s, 4), 3);
        assert_int_equal(r.err, 0);
        r = (npsd_codec_reader_t){.buf = fit, .len = sizeof(fit)};
        npsd_codec_get_str(&r, s, 3);
        assert_int_equal(r.err, 1);
        r = (npsd_codec_reader_t){.buf = fit, .len = sizeof(fit)};
        npsd_codec_get_uint_max(&r, 2);
        assert_int_equal(r.err, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uint_bytes),
                cmocka_unit_test(test_roundtrip_and_measure),
                cmocka_unit_test(test_reader_bounds),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
