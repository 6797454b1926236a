/*
 * npsd_health — the account health model (SPEC §5).
 *
 * What runs for every account summary (npsd_step, through npsd_view). No
 * allocation, no I/O.
 */
#include "npsd/npsd_health.h"

#include <math.h>
#include <string.h>

#include "npsd/npsd_config.h"

static const char *npsd_health_comp_names[NPSD_HEALTH__CNT] = {
        "nps", "adoption", "engagement", "support", "followup",
};

void npsd_health_conf_default(npsd_health_conf_t *hc) {
        memset(hc, 0, sizeof(*hc));
        hc->weight[NPSD_HEALTH_NPS] = 40;
        hc->weight[NPSD_HEALTH_ADOPTION] = 20;
        hc->weight[NPSD_HEALTH_ENGAGEMENT] = 15;
        hc->weight[NPSD_HEALTH_SUPPORT] = 10;
        hc->weight[NPSD_HEALTH_FOLLOWUP] = 15;
        hc->green = 70;
        hc->yellow = 40;
        hc->ticket_penalty = 15;
        hc->error_penalty = 2;
        hc->overdue_penalty = 34;
}

void npsd_health_conf_from(npsd_health_conf_t *hc,
                           const struct npsd_conf_s *conf) {
        hc->weight[NPSD_HEALTH_NPS] = conf->health_w_nps;
        hc->weight[NPSD_HEALTH_ADOPTION] = conf->health_w_adoption;
        hc->weight[NPSD_HEALTH_ENGAGEMENT] = conf->health_w_engagement;
        hc->weight[NPSD_HEALTH_SUPPORT] = conf->health_w_support;
        hc->weight[NPSD_HEALTH_FOLLOWUP] = conf->health_w_followup;
        hc->green = conf->health_green;
        hc->yellow = conf->health_yellow;
        hc->ticket_penalty = conf->health_ticket_penalty;
        hc->error_penalty = conf->health_error_penalty;
        hc->overdue_penalty = conf->health_overdue_penalty;
}

npsd_band_t npsd_health_band(int health, const npsd_health_conf_t *hc) {
        if (health >= hc->green)
                return NPSD_BAND_GREEN;
        if (health >= hc->yellow)
                return NPSD_BAND_YELLOW;
        return NPSD_BAND_RED;
}

static void npsd_health_set(npsd_health_t *out, npsd_health_comp_t c,
                            double v) {
        out->comp[c].present = 1;
        out->comp[c].value = v;
}

/* Presence follows the data, not the value: a component is present when
 * its inputs exist (usage in 30 days, a previous week with users, a
 * detractor in 90 days), so that "0 because nothing happened" and "0
 * because everything went wrong" are told apart. */
void npsd_health_compute(const npsd_health_in_t *in,
                         const npsd_health_conf_t *hc, npsd_health_t *out) {
        int used = in->active_users_30d > 0;
        int64_t open = in->open_tickets > 0 ? in->open_tickets : 0;
        double sum = 0, wsum = 0;

        memset(out, 0, sizeof(*out));

        /* nps: the relationship survey speaks for the account when it has
         * a response; transactional ones only stand in without it */
        if (in->has_rel_nps)
                npsd_health_set(out, NPSD_HEALTH_NPS,
                                (in->rel_nps + 100.0) / 2.0);
        else if (in->has_nps)
                npsd_health_set(out, NPSD_HEALTH_NPS, (in->nps + 100.0) / 2.0);

        if (used && in->has_seats && in->seats > 0)
                npsd_health_set(out, NPSD_HEALTH_ADOPTION,
                                fmin(100.0, 100.0 *
                                                    (double)in->active_users_30d /
                                                    (double)in->seats));

        if (in->active_users_prev_7d >= 1)
                npsd_health_set(out, NPSD_HEALTH_ENGAGEMENT,
                                fmin(100.0,
                                     100.0 * (double)in->active_users_7d /
                                             (double)in->active_users_prev_7d));

        if (used)
                npsd_health_set(out, NPSD_HEALTH_SUPPORT,
                                fmax(0.0, 100.0 -
                                                  hc->ticket_penalty * (double)open -
                                                  hc->error_penalty *
                                                          (double)in->errors_7d));

        if (in->detractors_90d > 0)
                npsd_health_set(
                        out, NPSD_HEALTH_FOLLOWUP,
                        fmax(0.0, 100.0 - hc->overdue_penalty *
                                                  (double)in->overdue_detractors));

        for (int c = 0; c < NPSD_HEALTH__CNT; c++) {
                if (!out->comp[c].present)
                        continue;
                sum += hc->weight[c] * out->comp[c].value;
                wsum += hc->weight[c];
        }
        if (wsum == 0)
                return; /* nothing present, or only zero-weight components */
        out->has = 1;
        out->health = (int)floor(sum / wsum + 0.5);
        out->band = npsd_health_band(out->health, hc);
}

const char *npsd_health_comp_name(npsd_health_comp_t comp) {
        if ((int)comp < 0 || comp >= NPSD_HEALTH__CNT)
                return NULL;
        return npsd_health_comp_names[comp];
}

const char *npsd_band_name(npsd_band_t band) {
        switch (band) {
        case NPSD_BAND_RED:
                return "red";
        case NPSD_BAND_YELLOW:
                return "yellow";
        case NPSD_BAND_GREEN:
                return "green";
        default:
                return NULL;
        }
}

npsd_band_t npsd_band_parse(const char *s) {
        if (!s)
                return NPSD_BAND_NONE;
        if (!strcmp(s, "red"))
                return NPSD_BAND_RED;
        if (!strcmp(s, "yellow"))
                return NPSD_BAND_YELLOW;
        if (!strcmp(s, "green"))
                return NPSD_BAND_GREEN;
        return NPSD_BAND_NONE;
}
