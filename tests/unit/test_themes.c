/*
 * Unit tests of npsd_themes: lexicon parsing and comment matching.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_themes.h"

static npsd_themes_t *lex(const char *text) {
        char errstr[256];
        npsd_themes_t *th = npsd_themes_new(text, strlen(text), errstr,
                                            sizeof(errstr));

        if (!th)
                fail_msg("lexicon rejected: %s", errstr);
        return th;
}

static int theme_idx(const npsd_themes_t *th, const char *name) {
        int i;

        for (i = 0; i < npsd_themes_count(th); i++)
                if (!strcmp(npsd_themes_name(th, i), name))
                        return i;
        return -1;
}

static uint64_t match(const npsd_themes_t *th, const char *s) {
        return npsd_themes_match(th, s, strlen(s));
}

static uint64_t bit(const npsd_themes_t *th, const char *name) {
        int i = theme_idx(th, name);

        assert_true(i >= 0);
        return (uint64_t)1 << i;
}

/* config/themes.conf and the built-in text must never drift apart. */
static void test_default_equals_file(void **state) {
        const char *def = npsd_themes_default_text();
        FILE *fp = fopen(NPSD_SOURCE_DIR "/config/themes.conf", "rb");
        char *buf;
        size_t n;

        assert_non_null(fp);
        buf = malloc(1 << 16);
        assert_non_null(buf);
        n = fread(buf, 1, (1 << 16) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        assert_string_equal(buf, def);
        free(buf);
}

static void test_default_lexicon(void **state) {
        static const char *want[] = {
                "pricing", "reliability", "performance", "support",
                "onboarding", "integrations", "usability", "missing_features",
                "documentation", "billing"};
        const char *def = npsd_themes_default_text();
        npsd_themes_t *th = lex(def);
        size_t i;

        assert_true(npsd_themes_count(th) >= 10);
        for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
                assert_true(theme_idx(th, want[i]) >= 0);
        assert_null(npsd_themes_name(th, -1));
        assert_null(npsd_themes_name(th, npsd_themes_count(th)));

        assert_int_equal(match(th, "Way too expensive for what it does"),
                         bit(th, "pricing"));
        assert_int_equal(match(th, "The Salesforce integration keeps failing"),
                         bit(th, "integrations") | bit(th, "reliability"));
        assert_int_equal(match(th, "Dashboards are SLOW and the docs are "
                                   "outdated; I was overcharged twice."),
                         bit(th, "performance") | bit(th, "documentation") |
                                 bit(th, "billing"));
        assert_int_equal(match(th, "Great product, love it"), 0);
        npsd_themes_destroy(th);
}

static void test_word_boundaries(void **state) {
        npsd_themes_t *th = lex("pricing = cost, price\n"
                                "perf = slow\n");

        assert_int_equal(match(th, "cost"), 1);
        assert_int_equal(match(th, "the cost."), 1);
        assert_int_equal(match(th, "(cost)"), 1);
        assert_int_equal(match(th, "cost-effective"), 1); /* '-' is a boundary */
        assert_int_equal(match(th, "costume party"), 0);
        assert_int_equal(match(th, "lowcost"), 0);
        assert_int_equal(match(th, "cost2"), 0);
        assert_int_equal(match(th, "2cost"), 0);
        assert_int_equal(match(th, "prices"), 0); /* no '*': whole word */
        assert_int_equal(match(th, "slowly"), 0);
        assert_int_equal(match(th, "so slow!"), 2);
        assert_int_equal(match(th, "cost\xc3\xa9"), 1); /* non-ASCII byte is no letter */
        npsd_themes_destroy(th);
}

static void test_case_and_phrases(void **state) {
        npsd_themes_t *th = lex("# comment\n"
                                "  support = Customer Service , help   desk\n"
                                "\n"
                                "usability = hard to use\r\n");

        assert_int_equal(npsd_themes_count(th), 2);
        assert_string_equal(npsd_themes_name(th, 0), "support");
        assert_string_equal(npsd_themes_name(th, 1), "usability");
        assert_int_equal(match(th, "CUSTOMER SERVICE was rude"), 1);
        assert_int_equal(match(th, "customer\n  service"), 1);
        assert_int_equal(match(th, "the Help Desk"), 1);
        assert_int_equal(match(th, "customerservice"), 0);
        assert_int_equal(match(th, "it is hard to use"), 2);
        assert_int_equal(match(th, "hard to user"), 0);
        assert_int_equal(match(th, "hard to"), 0); /* phrase cut by the end */
        npsd_themes_destroy(th);
}

static void test_prefix(void **state) {
        npsd_themes_t *th = lex("integrations = integrat*, api\n");

        assert_int_equal(match(th, "integration"), 1);
        assert_int_equal(match(th, "Integrations"), 1);
        assert_int_equal(match(th, "integrate"), 1);
        assert_int_equal(match(th, "integrat"), 1);
        assert_int_equal(match(th, "reintegrate"), 0); /* still word start */
        assert_int_equal(match(th, "integra"), 0);
        assert_int_equal(match(th, "rapid"), 0);
        assert_int_equal(match(th, "the API"), 1);
        npsd_themes_destroy(th);
}

static void test_multiple_and_empty(void **state) {
        npsd_themes_t *th = lex("a = alpha\nb = beta\nc = gamma\n");

        assert_int_equal(match(th, "alpha beta gamma alpha"), 7);
        assert_int_equal(match(th, "gamma"), 4);
        assert_int_equal(match(th, ""), 0);
        assert_int_equal(npsd_themes_match(th, NULL, 0), 0);
        assert_int_equal(npsd_themes_match(th, "alpha", 3), 0); /* len bounds */
        assert_int_equal(npsd_themes_match(NULL, "alpha", 5), 0);
        npsd_themes_destroy(th);
}

static void test_64_themes(void **state) {
        char text[4096];
        size_t off = 0;
        npsd_themes_t *th;
        int i;

        for (i = 0; i < 64; i++)
                off += (size_t)snprintf(text + off, sizeof(text) - off,
                                        "t%d = kw%d\n", i, i);
        th = lex(text);
        assert_int_equal(npsd_themes_count(th), 64);
        assert_true(match(th, "kw63 kw0") == (((uint64_t)1 << 63) | 1));
        npsd_themes_destroy(th);

        snprintf(text + off, sizeof(text) - off, "t64 = kw64\n");
        {
                char errstr[256];

                assert_null(npsd_themes_new(text, strlen(text), errstr,
                                            sizeof(errstr)));
                assert_non_null(strstr(errstr, "more than 64"));
        }
}

static void test_syntax_errors(void **state) {
        static const struct {
                const char *text, *err;
        } cases[] = {
                {"pricing cost\n", "line 1"},
                {"# x\n\npricing = cost,\n", "line 3: empty keyword"},
                {"pricing = \n", "empty keyword"},
                {" = cost\n", "theme name"},
                {"bad name = cost\n", "theme name"},
                {"a = x\na = y\n", "defined twice"},
                {"a = in*ter\n", "'*'"},
                {"a = *\n", "matches everything"},
                {"# only comments\n", "no theme"},
        };
        char errstr[256];
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                npsd_themes_t *th = npsd_themes_new(
                        cases[i].text, strlen(cases[i].text), errstr,
                        sizeof(errstr));

                if (th)
                        fail_msg("accepted: %s", cases[i].text);
                if (!strstr(errstr, cases[i].err))
                        fail_msg("'%s': error '%s' lacks '%s'", cases[i].text,
                                 errstr, cases[i].err);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_default_equals_file),
                cmocka_unit_test(test_default_lexicon),
                cmocka_unit_test(test_word_boundaries),
                cmocka_unit_test(test_case_and_phrases),
                cmocka_unit_test(test_prefix),
                cmocka_unit_test(test_multiple_and_empty),
                cmocka_unit_test(test_64_themes),
                cmocka_unit_test(test_syntax_errors),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
