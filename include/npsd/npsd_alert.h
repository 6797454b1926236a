/*
 * npsd_alert — the edge-triggered account alert rules of SPEC §6 (pure,
 * no I/O).
 *
 * These are the rules npsd runs: npsd_step evaluates them once per
 * account per batch or timer tick, and the store writes the alerts they
 * raise in the same guarded call as the state change that raised them.
 * The unit tests pin them.
 *
 * Each rule fires on a transition, never on every event: the caller keeps
 * the previous state (the account's state record, shown in Redis as hash
 * <prefix>:{A}:alerts) and passes it in; the new state comes back with the
 * alerts to raise.
 */
#ifndef NPSD_ALERT_H
#define NPSD_ALERT_H

#include <stdint.h>

#include "npsd/npsd_health.h"

struct npsd_conf_s;

typedef enum {
        NPSD_ALERT_ROLE_GAP = 0,     /* role gap flag turns on */
        NPSD_ALERT_NPS_DROP,         /* trend <= -4, >= 10 responses each period */
        NPSD_ALERT_HEALTH_BAND,      /* band changes from a known band */
        NPSD_ALERT_USAGE_DROP,       /* active users 7d < 0.7 x the week before */
        NPSD_ALERT_FOLLOWUP_OVERDUE, /* a closed-loop stage missed (npsd_loop) */
        NPSD_ALERT__CNT,
} npsd_alert_type_t;

typedef enum {
        NPSD_SEVERITY_LOW = 0,
        NPSD_SEVERITY_MEDIUM,
        NPSD_SEVERITY_HIGH,
} npsd_severity_t;

/* Thresholds (config keys alert.*). */
typedef struct npsd_alert_conf_s {
        double drop_points;  /* nps_drop at trend <= this: -4 */
        int drop_min;        /* responses in each period: 10 */
        int usage_min;       /* active users the week before: 5 */
        double usage_ratio;  /* usage_drop below this share: 0.7 */
} npsd_alert_conf_t;

/* What the rules remember between evaluations of one account. */
typedef struct npsd_alert_state_s {
        int role_gap;     /* the flag was on */
        int nps_drop;     /* the drop condition held */
        npsd_band_t band; /* last known band; NONE = never had one */
        int usage_drop;   /* the usage drop condition held */
} npsd_alert_state_t;

/* The account's current values. */
typedef struct npsd_alert_in_s {
        int role_gap_flag;            /* summary role_gap_flag */
        int has_trend;                /* both periods have responses */
        double trend;                 /* trend_90d (one decimal) */
        int64_t responses;            /* 90d */
        int64_t responses_prev;       /* previous 90d */
        npsd_band_t band;             /* NONE when health has no data */
        int64_t active_users_7d;
        int64_t active_users_prev_7d;
} npsd_alert_in_t;

typedef struct npsd_alert_fired_s {
        npsd_alert_type_t type;
        npsd_severity_t severity;
        npsd_band_t from, to; /* health_band only */
} npsd_alert_fired_t;

#define NPSD_ALERT_CHECK_MAX 4 /* role_gap, nps_drop, health_band, usage_drop */

void npsd_alert_conf_default(npsd_alert_conf_t *ac);
void npsd_alert_conf_from(npsd_alert_conf_t *ac,
                          const struct npsd_conf_s *conf);

/* Evaluates the account rules in a fixed order (role_gap, nps_drop,
 * health_band, usage_drop), which is the order of their alerts. Writes the alerts to raise into
 * fired[] (room for NPSD_ALERT_CHECK_MAX) and the state to keep into
 * *next (may alias *prev). Returns the number of alerts. */
int npsd_alert_check(const npsd_alert_state_t *prev,
                     const npsd_alert_in_t *in, const npsd_alert_conf_t *ac,
                     npsd_alert_state_t *next, npsd_alert_fired_t *fired);

/* Severity of a health_band alert into band `to`: red high, yellow
 * medium, green low. */
npsd_severity_t npsd_alert_band_severity(npsd_band_t to);

/* Type and severity names as the alert message carries them. */
const char *npsd_alert_type_name(npsd_alert_type_t type);
/* The type of a name, or NPSD_ALERT__CNT when name is NULL or no type. */
npsd_alert_type_t npsd_alert_type_parse(const char *name);
const char *npsd_severity_name(npsd_severity_t sev);

#endif
