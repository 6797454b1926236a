/*
 * npsd_view — the public Redis views of SPEC §7 as field lists, computed
 * from window totals (pure, no I/O): the window hashes of an account or a
 * cohort, and the account metrics behind the summary hash and the output
 * messages' `metrics`.
 *
 * The state engine (docs/design.md) computes a view before and after a
 * batch and writes only the fields that differ (npsd_fields_diff()), so it
 * never reads a view back from Redis. These are the views npsd writes:
 * npsd_step for an account's, npsd_store for a cohort's.
 */
#ifndef NPSD_VIEW_H
#define NPSD_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_buckets.h"
#include "npsd/npsd_config.h"
#include "npsd/npsd_health.h"

#define NPSD_FIELD_NAME_MAX 48
#define NPSD_FIELD_VALUE_MAX 32
#define NPSD_FIELDS_MAX 80 /* a window hash: 7 slices x 9 fields */

typedef struct npsd_field_s {
        char name[NPSD_FIELD_NAME_MAX];
        char value[NPSD_FIELD_VALUE_MAX];
} npsd_field_t;

/* A hash's fields, in the order they were added. */
typedef struct npsd_fields_s {
        npsd_field_t f[NPSD_FIELDS_MAX];
        size_t cnt;
} npsd_fields_t;

/* Appends name = value; a value of NULL appends nothing (the field is
 * absent: SPEC §7 "absent, never 0"). Returns 0, or -1 when full or a
 * string does not fit. */
int npsd_fields_add(npsd_fields_t *fields, const char *name,
                    const char *value);

/* The value of name, or NULL. */
const char *npsd_fields_get(const npsd_fields_t *fields, const char *name);

/* What turns hash `from` into `to`: indexes into to->f of the fields to
 * set (new or changed) and into from->f of the fields to delete (gone).
 * set[] and del[] hold NPSD_FIELDS_MAX each. */
void npsd_fields_diff(const npsd_fields_t *from, const npsd_fields_t *to,
                      size_t *set, size_t *set_cnt, size_t *del,
                      size_t *del_cnt);

/* The window hash of one period's slot counts: for every slice with
 * responses, `<slice>.responses promoters passives detractors nps moe
 * ci_low ci_high low_confidence` (no prefix for the slice "all"). */
void npsd_view_window(const int64_t slots[NPSD_SLOT_CNT],
                      int low_confidence_n, npsd_fields_t *out);

/* "all", "relationship", ... "other". */
const char *npsd_slice_name(npsd_slice_t slice);

/* The health inputs that do not come from the window totals. */
typedef struct npsd_view_usage_s {
        int64_t active_users_7d, active_users_prev_7d, active_users_30d;
        int64_t open_tickets, errors_7d;
        int64_t overdue_followups;
        int has_seats;
        int64_t seats;
} npsd_view_usage_t;

/* The account metrics of SPEC §4/§5 as of some totals. has_* 0 = absent. */
typedef struct npsd_account_metrics_s {
        int has_nps[NPSD_WINDOWS_MAX];
        double nps[NPSD_WINDOWS_MAX]; /* per configured window */
        int64_t responses_long;
        int has_long;                 /* the long window has responses */
        double moe_long;
        int has_prev;
        double nps_prev_long;
        int has_trend;
        double trend_long;            /* nps - nps_prev, one decimal */
        int has_gap;
        double role_gap_long;         /* end_user - decision_maker */
        int role_gap_flag;
        double benchmark;             /* the segment's median */
        int has_delta;
        double benchmark_delta;
        int has_survey[NPSD_SURVEY__CNT];
        double survey_benchmark[NPSD_SURVEY__CNT];
        double survey_delta[NPSD_SURVEY__CNT];
        npsd_health_t health;
        /* for the alert rules and their details */
        int64_t responses_prev;
        int has_end_user, has_decision_maker;
        double end_user_nps, decision_maker_nps; /* long window */
} npsd_account_metrics_t;

/* Computes the metrics from period totals (npsd_buckets_totals()), the
 * account's segment ("" or NULL when unknown) and its usage. */
void npsd_view_metrics(const npsd_totals_t *totals,
                       const npsd_periods_t *periods,
                       const npsd_conf_t *conf, const char *segment,
                       const npsd_view_usage_t *usage,
                       npsd_account_metrics_t *m);

/* The summary fields the metrics own (SPEC §7 names with the long window's
 * suffix: nps_30d nps_90d responses_90d moe_90d nps_prev_90d trend_90d
 * role_gap_90d role_gap_flag benchmark benchmark_delta benchmark.<type>
 * benchmark_delta.<type> health health_band health.<component>), absent
 * ones left out. Returns 0, or -1 when a name does not fit. */
int npsd_view_summary(const npsd_account_metrics_t *m,
                      const npsd_periods_t *periods, npsd_fields_t *out);

#endif
