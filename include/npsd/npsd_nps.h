/*
 * npsd_nps — Net Promoter Score arithmetic (pure, no I/O).
 *
 * This is the arithmetic npsd runs: npsd_step (the state engine) calls it
 * for every account view it writes, and Redis only stores the results. The
 * unit tests pin it; the integration tests compare what npsd wrote to
 * Redis with their own computation from the messages sent.
 */
#ifndef NPSD_NPS_H
#define NPSD_NPS_H

#include <stdint.h>

typedef struct npsd_counts_s {
        int64_t promoters, passives, detractors;
} npsd_counts_t;

typedef struct npsd_nps_s {
        int64_t n;          /* responses */
        int has;            /* 0 when n == 0: every value below is absent */
        double nps;         /* 100 * (p - d) / n, rounded to one decimal */
        double moe;         /* 1.96 * 100 * sqrt((p + d - (p - d)^2) / n), one decimal */
        double ci_low;      /* adjusted Wald (n' = n + 3), clamped, one decimal */
        double ci_high;
        int low_confidence; /* n < low_confidence_n */
} npsd_nps_t;

/* Rounds to one decimal, half away from zero, and never returns -0.0. */
double npsd_round1(double x);

/* Computes every field of *out from counts. low_confidence_n is the sample
 * size below which a result is flagged (SPEC: 50). */
void npsd_nps_compute(const npsd_counts_t *counts, int low_confidence_n,
                      npsd_nps_t *out);

/* Formats a one-decimal metric the way Redis hashes hold it ("30", "-12.5",
 * "33.3"): shortest form, no trailing ".0". buf holds >= 24 bytes. */
char *npsd_metric_format(double v, char *buf);

#endif
