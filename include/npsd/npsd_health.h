/*
 * npsd_health — the account health model of SPEC §5 (pure, no I/O).
 *
 * This is the model npsd runs: npsd_step (through npsd_view) computes it
 * whenever it writes an account's summary and evaluates its alerts. The unit tests pin it and the
 * documentation cites it.
 *
 * Health is the weighted mean of the components that have data, each
 * 0..100, rounded to an integer (half up); the weights of absent
 * components rescale away. With no component present there is no health.
 */
#ifndef NPSD_HEALTH_H
#define NPSD_HEALTH_H

#include <stdint.h>

struct npsd_conf_s;

typedef enum {
        NPSD_HEALTH_NPS = 0,    /* (90d relationship NPS, else 90d NPS + 100) / 2 */
        NPSD_HEALTH_ADOPTION,   /* 100 x active users 30d / seats, <= 100 */
        NPSD_HEALTH_ENGAGEMENT, /* 100 x active users 7d / the 7 days before, <= 100 */
        NPSD_HEALTH_SUPPORT,    /* 100 - 15 x open tickets - 2 x errors 7d, >= 0 */
        NPSD_HEALTH_FOLLOWUP,   /* 100 - 34 x overdue detractors, >= 0 */
        NPSD_HEALTH__CNT,
} npsd_health_comp_t;

typedef enum {
        NPSD_BAND_NONE = 0, /* no health: no component has data */
        NPSD_BAND_RED,
        NPSD_BAND_YELLOW,
        NPSD_BAND_GREEN,
} npsd_band_t;

/* Weights, bands and penalties (config keys health.*). */
typedef struct npsd_health_conf_s {
        double weight[NPSD_HEALTH__CNT]; /* 40 20 15 10 15 */
        int green;                       /* band green at or above: 70 */
        int yellow;                      /* band yellow at or above: 40 */
        double ticket_penalty;           /* per open ticket: 15 */
        double error_penalty;            /* per error in 7 days: 2 */
        double overdue_penalty;          /* per overdue detractor: 34 */
} npsd_health_conf_t;

/* The inputs, as the account summary holds them. A has_* of 0 means the
 * value does not exist (not that it is 0). */
typedef struct npsd_health_in_s {
        int has_rel_nps;  /* the 90d relationship slice has >= 1 response */
        double rel_nps;   /* its one-decimal NPS */
        int has_nps;      /* the 90d window has >= 1 response */
        double nps;       /* its one-decimal NPS */
        int64_t active_users_30d;
        int has_seats;    /* seats known (account context) */
        int64_t seats;
        int64_t active_users_7d;
        int64_t active_users_prev_7d; /* days 7..13 before today */
        int64_t open_tickets;         /* opened - closed, ever (< 0 reads 0) */
        int64_t errors_7d;
        int64_t detractors_90d;       /* detractors in the 90d window */
        int64_t overdue_detractors;   /* missed a deadline, not closed */
} npsd_health_in_t;

typedef struct npsd_health_s {
        int has;          /* 0: no component has data; health/band absent */
        int health;       /* 0..100 */
        npsd_band_t band; /* NPSD_BAND_NONE iff !has */
        struct {
                int present;  /* the component has data */
                double value; /* 0..100, unrounded (Redis holds one decimal) */
        } comp[NPSD_HEALTH__CNT];
} npsd_health_t;

/* The SPEC §5 defaults. */
void npsd_health_conf_default(npsd_health_conf_t *hc);

/* The health settings of a loaded configuration (health.* keys). */
void npsd_health_conf_from(npsd_health_conf_t *hc,
                           const struct npsd_conf_s *conf);

/* Computes *out from *in. Never fails; out is fully written. */
void npsd_health_compute(const npsd_health_in_t *in,
                         const npsd_health_conf_t *hc, npsd_health_t *out);

/* The band of an integer health value. */
npsd_band_t npsd_health_band(int health, const npsd_health_conf_t *hc);

/* "nps", "adoption", "engagement", "support", "followup": the suffix of
 * the summary field health.<component>. */
const char *npsd_health_comp_name(npsd_health_comp_t comp);

/* "green", "yellow", "red"; NULL for NPSD_BAND_NONE. */
const char *npsd_band_name(npsd_band_t band);

/* Parses a band name; NPSD_BAND_NONE when s is NULL or not a band. */
npsd_band_t npsd_band_parse(const char *s);

#endif
