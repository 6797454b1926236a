/*
 * npsd_nps — Net Promoter Score arithmetic (SPEC §4).
 *
 * What runs: npsd_step calls it for every account view, npsd_store for
 * every cohort view. The unit tests pin it.
 */
#include "npsd/npsd_nps.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "npsd/npsd_fmt.h"

/* Half away from zero, not the banker's rounding of printf, as the contract
 * states (and earlier versions stored); and -0.0 is folded to 0.0 so that a
 * tiny negative value never prints as "-0". */
double npsd_round1(double x) {
        double r;

        if (!isfinite(x))
                return x;
        r = round(x * 10.0) / 10.0;
        if (r == 0.0)
                return 0.0;
        return r;
}

/* 100 * (P - D) / n rounded to one decimal, computed in integers so that a
 * value lying exactly on .x5 (e.g. 1/16 -> 6.25) rounds the same on every
 * platform instead of depending on the binary representation. */
static double npsd_nps_exact(int64_t diff, int64_t n) {
        /* 1000 * diff / n, rounded half away from zero */
        int64_t num = 1000 * (diff < 0 ? -diff : diff);
        int64_t q = num / n, rem = num % n;

        if (2 * rem >= n)
                q++;
        if (q == 0)
                return 0.0;
        return (diff < 0 ? -(double)q : (double)q) / 10.0;
}

static double npsd_clamp100(double x) {
        if (x < -100.0)
                return -100.0;
        if (x > 100.0)
                return 100.0;
        return x;
}

void npsd_nps_compute(const npsd_counts_t *counts, int low_confidence_n,
                      npsd_nps_t *out) {
        int64_t P = counts->promoters, D = counts->detractors;
        int64_t n = P + counts->passives + D;
        double p, d, var, np, pp, dp, diff, half;

        memset(out, 0, sizeof(*out));
        out->n = n;
        out->low_confidence = n < (int64_t)low_confidence_n;
        if (n <= 0 || P < 0 || D < 0 || counts->passives < 0) {
                out->n = n < 0 ? 0 : n;
                return;
        }
        out->has = 1;

        out->nps = npsd_nps_exact(P - D, n);

        /* Margin of error: variance of the promoter-minus-detractor
         * difference of one response is p + d - (p - d)^2. */
        p = (double)P / (double)n;
        d = (double)D / (double)n;
        var = p + d - (p - d) * (p - d);
        if (var < 0.0) /* rounding noise at p or d == 1 */
                var = 0.0;
        out->moe = npsd_round1(1.96 * 100.0 * sqrt(var / (double)n));

        /* Adjusted Wald (Rocks 2016): add 3 pseudo-responses, 3/4 each to
         * promoters and detractors, 3/2 to passives. */
        np = (double)n + 3.0;
        pp = ((double)P + 0.75) / np;
        dp = ((double)D + 0.75) / np;
        diff = pp - dp;
        var = pp + dp - diff * diff;
        if (var < 0.0)
                var = 0.0;
        half = 1.96 * sqrt(var / np);
        out->ci_low = npsd_round1(npsd_clamp100(100.0 * (diff - half)));
        out->ci_high = npsd_round1(npsd_clamp100(100.0 * (diff + half)));
}

/* A one-decimal metric as the Redis views store it (docs/contract.md §9):
 * integral values without ".0", otherwise one decimal. */
char *npsd_metric_format(double v, char *buf) {
        size_t len;

        if (v == 0.0)
                v = 0.0; /* -0.0 -> 0.0 */
        len = npsd_fmt_1dp(v, buf);
        if (len >= 2 && !strcmp(buf + len - 2, ".0")) {
                buf[len - 2] = '\0';
                len -= 2;
        }
        if (!strcmp(buf, "-0"))
                strcpy(buf, "0");
        return buf;
}
