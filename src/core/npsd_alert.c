/*
 * npsd_alert — edge-triggered account alert rules (SPEC §6).
 *
 * What npsd runs: npsd_step calls npsd_alert_check() once per account per
 * batch or timer tick. Pure: the state a rule remembers is passed in and
 * handed back, the caller (the account's state record) keeps it.
 */
#include "npsd/npsd_alert.h"

#include <string.h>

#include "npsd/npsd_config.h"

void npsd_alert_conf_default(npsd_alert_conf_t *ac) {
        ac->drop_points = -4;
        ac->drop_min = 10;
        ac->usage_min = 5;
        ac->usage_ratio = 0.7;
}

void npsd_alert_conf_from(npsd_alert_conf_t *ac,
                          const struct npsd_conf_s *conf) {
        ac->drop_points = conf->alert_nps_drop_points;
        ac->drop_min = conf->alert_nps_drop_min_responses;
        ac->usage_min = conf->alert_usage_drop_min_users;
        ac->usage_ratio = conf->alert_usage_drop_ratio;
}

npsd_severity_t npsd_alert_band_severity(npsd_band_t to) {
        if (to == NPSD_BAND_RED)
                return NPSD_SEVERITY_HIGH;
        if (to == NPSD_BAND_YELLOW)
                return NPSD_SEVERITY_MEDIUM;
        return NPSD_SEVERITY_LOW;
}

static int npsd_alert_fire(npsd_alert_fired_t *fired, int n,
                           npsd_alert_type_t type, npsd_severity_t sev) {
        fired[n].type = type;
        fired[n].severity = sev;
        fired[n].from = fired[n].to = NPSD_BAND_NONE;
        return n + 1;
}

/* A condition that holds keeps its state "on" and raises nothing; one that
 * clears turns the state "off", so that its next return fires again. The
 * band is the exception: it is not a condition but a value, remembered
 * while health exists and kept across a spell without health, so that a
 * band reappearing unchanged raises nothing. */
int npsd_alert_check(const npsd_alert_state_t *prev,
                     const npsd_alert_in_t *in, const npsd_alert_conf_t *ac,
                     npsd_alert_state_t *next, npsd_alert_fired_t *fired) {
        npsd_alert_state_t st = *prev;
        int n = 0, on;

        on = in->role_gap_flag != 0;
        if (on && !st.role_gap)
                n = npsd_alert_fire(fired, n, NPSD_ALERT_ROLE_GAP,
                                    NPSD_SEVERITY_MEDIUM);
        st.role_gap = on;

        on = in->has_trend && in->trend <= ac->drop_points &&
             in->responses >= ac->drop_min &&
             in->responses_prev >= ac->drop_min;
        if (on && !st.nps_drop)
                n = npsd_alert_fire(fired, n, NPSD_ALERT_NPS_DROP,
                                    in->trend <= 2 * ac->drop_points
                                            ? NPSD_SEVERITY_HIGH
                                            : NPSD_SEVERITY_MEDIUM);
        st.nps_drop = on;

        if (in->band != NPSD_BAND_NONE) {
                if (st.band != NPSD_BAND_NONE && st.band != in->band) {
                        n = npsd_alert_fire(fired, n, NPSD_ALERT_HEALTH_BAND,
                                            npsd_alert_band_severity(in->band));
                        fired[n - 1].from = st.band;
                        fired[n - 1].to = in->band;
                }
                st.band = in->band;
        }

        on = in->active_users_prev_7d >= ac->usage_min &&
             (double)in->active_users_7d <
                     ac->usage_ratio * (double)in->active_users_prev_7d;
        if (on && !st.usage_drop)
                n = npsd_alert_fire(fired, n, NPSD_ALERT_USAGE_DROP,
                                    NPSD_SEVERITY_MEDIUM);
        st.usage_drop = on;

        *next = st;
        return n;
}

const char *npsd_alert_type_name(npsd_alert_type_t type) {
        static const char *names[NPSD_ALERT__CNT] = {
                "role_gap", "nps_drop", "health_band", "usage_drop",
                "followup_overdue",
        };
        if ((int)type < 0 || type >= NPSD_ALERT__CNT)
                return NULL;
        return names[type];
}

npsd_alert_type_t npsd_alert_type_parse(const char *name) {
        for (int t = 0; name && t < NPSD_ALERT__CNT; t++)
                if (!strcmp(npsd_alert_type_name((npsd_alert_type_t)t), name))
                        return (npsd_alert_type_t)t;
        return NPSD_ALERT__CNT;
}

const char *npsd_severity_name(npsd_severity_t sev) {
        switch (sev) {
        case NPSD_SEVERITY_LOW:
                return "low";
        case NPSD_SEVERITY_MEDIUM:
                return "medium";
        case NPSD_SEVERITY_HIGH:
                return "high";
        }
        return NULL;
}
