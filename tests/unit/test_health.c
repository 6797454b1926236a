/*
 * Unit tests of npsd_health: the SPEC §5 health model as apply.lua's
 * health_of computes it — each component, presence and rescaling, caps and
 * floors, rounding, bands at their boundaries.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_health.h"

static npsd_health_conf_t hc;

static int setup(void **state) {
        npsd_health_conf_default(&hc);
        return 0;
}

static void assert_comp(const npsd_health_t *h, npsd_health_comp_t c,
                        double v) {
        assert_true(h->comp[c].present);
        assert_true(fabs(h->comp[c].value - v) < 1e-9);
}

/* Only the NPS component: health = round((nps + 100) / 2). */
static int nps_only(double nps, npsd_health_t *h) {
        npsd_health_in_t in = {.has_nps = 1, .nps = nps};

        npsd_health_compute(&in, &hc, h);
        return h->health;
}

static void test_defaults(void **state) {
        npsd_health_conf_t d;
        npsd_conf_t *c = npsd_conf_new();
        char errstr[256];

        assert_non_null(c);
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), 0);
        npsd_health_conf_from(&d, c);
        assert_memory_equal(&d, &hc, sizeof(d)); /* config == SPEC defaults */
        assert_true(hc.weight[NPSD_HEALTH_NPS] == 40);
        assert_true(hc.weight[NPSD_HEALTH_ADOPTION] == 20);
        assert_true(hc.weight[NPSD_HEALTH_ENGAGEMENT] == 15);
        assert_true(hc.weight[NPSD_HEALTH_SUPPORT] == 10);
        assert_true(hc.weight[NPSD_HEALTH_FOLLOWUP] == 15);
        assert_int_equal(hc.green, 70);
        assert_int_equal(hc.yellow, 40);
        assert_true(hc.ticket_penalty == 15 && hc.error_penalty == 2 &&
                    hc.overdue_penalty == 34);
        npsd_conf_destroy(c);
}

/* Every component present:
 *   nps        (20 + 100) / 2            = 60
 *   adoption   100 * 30 / 50             = 60
 *   engagement 100 * 8 / 10              = 80
 *   support    100 - 15 * 2 - 2 * 5      = 60
 *   followup   100 - 34 * 1              = 66
 *   health     (40*60 + 20*60 + 15*80 + 10*60 + 15*66) / 100 = 63.9 -> 64 */
static void test_all_components(void **state) {
        npsd_health_in_t in = {
                .has_rel_nps = 1, .rel_nps = 20, .has_nps = 1, .nps = -50,
                .active_users_30d = 30, .has_seats = 1, .seats = 50,
                .active_users_7d = 8, .active_users_prev_7d = 10,
                .open_tickets = 2, .errors_7d = 5,
                .detractors_90d = 2, .overdue_detractors = 1,
        };
        npsd_health_t h;

        npsd_health_compute(&in, &hc, &h);
        assert_int_equal(h.has, 1);
        assert_comp(&h, NPSD_HEALTH_NPS, 60);
        assert_comp(&h, NPSD_HEALTH_ADOPTION, 60);
        assert_comp(&h, NPSD_HEALTH_ENGAGEMENT, 80);
        assert_comp(&h, NPSD_HEALTH_SUPPORT, 60);
        assert_comp(&h, NPSD_HEALTH_FOLLOWUP, 66);
        assert_int_equal(h.health, 64);
        assert_int_equal(h.band, NPSD_BAND_YELLOW);
}

/* The relationship NPS wins over the all-responses NPS whenever it has a
 * response, whatever the two values; without it the 90d NPS stands in. */
static void test_relationship_preferred(void **state) {
        npsd_health_in_t in = {.has_rel_nps = 1, .rel_nps = 50,
                               .has_nps = 1, .nps = 0};
        npsd_health_t h;

        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_NPS, 75);
        in.rel_nps = -100;
        in.nps = 100;
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_NPS, 0);
        assert_int_equal(h.health, 0);
        assert_int_equal(h.band, NPSD_BAND_RED);
        in.has_rel_nps = 0; /* transactional responses only */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_NPS, 100);
        assert_int_equal(h.health, 100);
        in.has_nps = 0; /* no response in 90 days: no nps component */
        npsd_health_compute(&in, &hc, &h);
        assert_false(h.comp[NPSD_HEALTH_NPS].present);
        assert_int_equal(h.has, 0);
}

/* Absent components leave the mean, the other weights rescale:
 * nps 60 (w 40) and followup 66 (w 15): (2400 + 990) / 55 = 61.6 -> 62. */
static void test_rescaling(void **state) {
        npsd_health_in_t in = {.has_nps = 1, .nps = 20,
                               .detractors_90d = 1, .overdue_detractors = 1};
        npsd_health_t h;

        npsd_health_compute(&in, &hc, &h);
        assert_false(h.comp[NPSD_HEALTH_ADOPTION].present);
        assert_false(h.comp[NPSD_HEALTH_ENGAGEMENT].present);
        assert_false(h.comp[NPSD_HEALTH_SUPPORT].present);
        assert_int_equal(h.health, 62);

        /* one component alone is the health */
        memset(&in, 0, sizeof(in));
        in.active_users_30d = 3; /* usage, no seats, no tickets: support 100 */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_SUPPORT, 100);
        assert_int_equal(h.health, 100);
        assert_int_equal(h.band, NPSD_BAND_GREEN);

        /* weights are relative: doubling them all changes nothing */
        in.has_nps = 1;
        in.nps = -40; /* nps 30, support 100: (40*30 + 10*100)/50 = 44 */
        npsd_health_compute(&in, &hc, &h);
        assert_int_equal(h.health, 44);
        for (int c = 0; c < NPSD_HEALTH__CNT; c++)
                hc.weight[c] *= 2;
        npsd_health_compute(&in, &hc, &h);
        assert_int_equal(h.health, 44);
}

static void test_nothing_present(void **state) {
        npsd_health_in_t in;
        npsd_health_t h;

        memset(&in, 0, sizeof(in));
        in.has_seats = 1; /* seats alone are no usage */
        in.seats = 10;
        in.open_tickets = 3; /* tickets without usage in 30 days: absent */
        in.overdue_detractors = 2; /* no detractor in 90 days: absent */
        npsd_health_compute(&in, &hc, &h);
        assert_int_equal(h.has, 0);
        assert_int_equal(h.band, NPSD_BAND_NONE);
        for (int c = 0; c < NPSD_HEALTH__CNT; c++)
                assert_false(h.comp[c].present);

        /* present components of zero weight make no health either */
        in.detractors_90d = 1;
        hc.weight[NPSD_HEALTH_FOLLOWUP] = 0;
        npsd_health_compute(&in, &hc, &h);
        assert_true(h.comp[NPSD_HEALTH_FOLLOWUP].present);
        assert_int_equal(h.has, 0);
}

static void test_adoption(void **state) {
        npsd_health_in_t in = {.active_users_30d = 7, .has_seats = 1,
                               .seats = 20};
        npsd_health_t h;

        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ADOPTION, 35);
        in.active_users_30d = 80; /* more users than seats: capped */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ADOPTION, 100);
        in.active_users_30d = 20; /* exactly the seats */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ADOPTION, 100);
        in.active_users_30d = 1;
        in.seats = 3; /* 33.33..., unrounded */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ADOPTION, 100.0 / 3.0);
        in.has_seats = 0; /* seats unknown */
        npsd_health_compute(&in, &hc, &h);
        assert_false(h.comp[NPSD_HEALTH_ADOPTION].present);
        in.has_seats = 1;
        in.seats = 0; /* zero seats: no ratio */
        npsd_health_compute(&in, &hc, &h);
        assert_false(h.comp[NPSD_HEALTH_ADOPTION].present);
        in.seats = 10;
        in.active_users_30d = 0; /* no usage in 30 days */
        npsd_health_compute(&in, &hc, &h);
        assert_false(h.comp[NPSD_HEALTH_ADOPTION].present);
}

static void test_engagement(void **state) {
        npsd_health_in_t in = {.active_users_30d = 9, .active_users_7d = 3,
                               .active_users_prev_7d = 6};
        npsd_health_t h;

        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ENGAGEMENT, 50);
        in.active_users_7d = 12; /* growth: capped */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ENGAGEMENT, 100);
        in.active_users_7d = 0; /* everyone left: present, 0 */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ENGAGEMENT, 0);
        in.active_users_prev_7d = 1; /* the smallest previous week */
        in.active_users_7d = 1;
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_ENGAGEMENT, 100);
        in.active_users_prev_7d = 0; /* nobody the week before: absent */
        npsd_health_compute(&in, &hc, &h);
        assert_false(h.comp[NPSD_HEALTH_ENGAGEMENT].present);
}

static void test_support(void **state) {
        npsd_health_in_t in = {.active_users_30d = 1};
        npsd_health_t h;

        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_SUPPORT, 100);
        in.open_tickets = 1;
        in.errors_7d = 1;
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_SUPPORT, 83);
        in.open_tickets = 6; /* 100 - 90 - 2*5 = 0: exactly the floor */
        in.errors_7d = 5;
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_SUPPORT, 0);
        in.errors_7d = 400; /* far below: floored */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_SUPPORT, 0);
        in.open_tickets = -3; /* more closed than opened reads as none */
        in.errors_7d = 0;
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_SUPPORT, 100);
}

static void test_followup(void **state) {
        npsd_health_in_t in = {.detractors_90d = 4};
        npsd_health_t h;

        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_FOLLOWUP, 100);
        in.overdue_detractors = 2;
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_FOLLOWUP, 32);
        in.overdue_detractors = 3; /* 100 - 102: floored */
        npsd_health_compute(&in, &hc, &h);
        assert_comp(&h, NPSD_HEALTH_FOLLOWUP, 0);
        assert_int_equal(h.health, 0);
        assert_int_equal(h.band, NPSD_BAND_RED);
}

/* Health rounds half up: 69.5 -> 70 (green), 69.45 -> 69 (yellow). */
static void test_bands(void **state) {
        npsd_health_t h;

        assert_int_equal(nps_only(40, &h), 70);
        assert_int_equal(h.band, NPSD_BAND_GREEN);
        assert_int_equal(nps_only(38, &h), 69);
        assert_int_equal(h.band, NPSD_BAND_YELLOW);
        assert_int_equal(nps_only(39, &h), 70); /* 69.5 */
        assert_int_equal(h.band, NPSD_BAND_GREEN);
        assert_int_equal(nps_only(38.9, &h), 69); /* 69.45 */
        assert_int_equal(h.band, NPSD_BAND_YELLOW);
        assert_int_equal(nps_only(-20, &h), 40);
        assert_int_equal(h.band, NPSD_BAND_YELLOW);
        assert_int_equal(nps_only(-22, &h), 39);
        assert_int_equal(h.band, NPSD_BAND_RED);
        assert_int_equal(nps_only(-21, &h), 40); /* 39.5 */
        assert_int_equal(h.band, NPSD_BAND_YELLOW);
        assert_int_equal(nps_only(-100, &h), 0);
        assert_int_equal(h.band, NPSD_BAND_RED);
        assert_int_equal(nps_only(100, &h), 100);
        assert_int_equal(h.band, NPSD_BAND_GREEN);

        assert_int_equal(npsd_health_band(70, &hc), NPSD_BAND_GREEN);
        assert_int_equal(npsd_health_band(69, &hc), NPSD_BAND_YELLOW);
        assert_int_equal(npsd_health_band(40, &hc), NPSD_BAND_YELLOW);
        assert_int_equal(npsd_health_band(39, &hc), NPSD_BAND_RED);
        hc.green = 80; /* configurable */
        assert_int_equal(npsd_health_band(79, &hc), NPSD_BAND_YELLOW);
}

static void test_names(void **state) {
        assert_string_equal(npsd_health_comp_name(NPSD_HEALTH_NPS), "nps");
        assert_string_equal(npsd_health_comp_name(NPSD_HEALTH_FOLLOWUP),
                            "followup");
        assert_null(npsd_health_comp_name(NPSD_HEALTH__CNT));
        assert_string_equal(npsd_band_name(NPSD_BAND_RED), "red");
        assert_null(npsd_band_name(NPSD_BAND_NONE));
        assert_int_equal(npsd_band_parse("yellow"), NPSD_BAND_YELLOW);
        assert_int_equal(npsd_band_parse("blue"), NPSD_BAND_NONE);
        assert_int_equal(npsd_band_parse(NULL), NPSD_BAND_NONE);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_defaults, setup),
                cmocka_unit_test_setup(test_all_components, setup),
                cmocka_unit_test_setup(test_relationship_preferred, setup),
                cmocka_unit_test_setup(test_rescaling, setup),
                cmocka_unit_test_setup(test_nothing_present, setup),
                cmocka_unit_test_setup(test_adoption, setup),
                cmocka_unit_test_setup(test_engagement, setup),
                cmocka_unit_test_setup(test_support, setup),
                cmocka_unit_test_setup(test_followup, setup),
                cmocka_unit_test_setup(test_bands, setup),
                cmocka_unit_test_setup(test_names, setup),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
