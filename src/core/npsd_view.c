/*
 * npsd_view — the public Redis views as field lists (see
 * include/npsd/npsd_view.h).
 */
#include "npsd/npsd_view.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "npsd/npsd_fmt.h"
#include "npsd/npsd_nps.h"

static const char *const npsd_slice_names[NPSD_SLICE_CNT] = {
        "all",      "relationship",   "transactional", "end_user",
        "admin",    "decision_maker", "other"};

const char *npsd_slice_name(npsd_slice_t slice) {
        if ((int)slice < 0 || slice >= NPSD_SLICE_CNT)
                return NULL;
        return npsd_slice_names[slice];
}

int npsd_fields_add(npsd_fields_t *fields, const char *name,
                    const char *value) {
        npsd_field_t *f;

        if (!value)
                return 0;
        if (fields->cnt == NPSD_FIELDS_MAX ||
            strlen(name) >= NPSD_FIELD_NAME_MAX ||
            strlen(value) >= NPSD_FIELD_VALUE_MAX)
                return -1;
        f = &fields->f[fields->cnt++];
        strcpy(f->name, name);
        strcpy(f->value, value);
        return 0;
}

const char *npsd_fields_get(const npsd_fields_t *fields, const char *name) {
        for (size_t i = 0; i < fields->cnt; i++)
                if (!strcmp(fields->f[i].name, name))
                        return fields->f[i].value;
        return NULL;
}

/* The field named name in fields, looked up at index hint first: both
 * lists of a diff come from the same builder in the same order, so the
 * field after the last one matched is nearly always the next match, and
 * the diff stays linear (a field added or dropped shifts it by one). */
static const npsd_field_t *npsd_fields_find(const npsd_fields_t *fields,
                                            const char *name, size_t hint) {
        if (hint < fields->cnt && !strcmp(fields->f[hint].name, name))
                return &fields->f[hint];
        for (size_t i = 0; i < fields->cnt; i++)
                if (!strcmp(fields->f[i].name, name))
                        return &fields->f[i];
        return NULL;
}

void npsd_fields_diff(const npsd_fields_t *from, const npsd_fields_t *to,
                      size_t *set, size_t *set_cnt, size_t *del,
                      size_t *del_cnt) {
        size_t next = 0; /* where the next match likely is: after the last */

        *set_cnt = *del_cnt = 0;
        for (size_t i = 0; i < to->cnt; i++) {
                const npsd_field_t *was =
                        npsd_fields_find(from, to->f[i].name, next);
                if (was)
                        next = (size_t)(was - from->f) + 1;
                if (!was || strcmp(was->value, to->f[i].value))
                        set[(*set_cnt)++] = i;
        }
        next = 0;
        for (size_t i = 0; i < from->cnt; i++) {
                const npsd_field_t *is =
                        npsd_fields_find(to, from->f[i].name, next);
                if (is)
                        next = (size_t)(is - to->f) + 1;
                else
                        del[(*del_cnt)++] = i;
        }
}

static void npsd_fmt_int(int64_t v, char *buf) {
        (void)npsd_fmt_i64(v, buf);
}

/* One slice's NPS: slots hold detractor, passive, promoter in that order. */
static void npsd_slice_nps(const int64_t slots[NPSD_SLOT_CNT],
                           npsd_slice_t slice, int low_confidence_n,
                           npsd_nps_t *out) {
        const int64_t *s = &slots[slice * NPSD_CAT__CNT];
        npsd_counts_t c = {.detractors = s[NPSD_CAT_DETRACTOR],
                           .passives = s[NPSD_CAT_PASSIVE],
                           .promoters = s[NPSD_CAT_PROMOTER]};

        npsd_nps_compute(&c, low_confidence_n, out);
}

void npsd_view_window(const int64_t slots[NPSD_SLOT_CNT],
                      int low_confidence_n, npsd_fields_t *out) {
        out->cnt = 0;
        for (int sl = 0; sl < NPSD_SLICE_CNT; sl++) {
                const int64_t *s = &slots[sl * NPSD_CAT__CNT];
                char pre[24], name[NPSD_FIELD_NAME_MAX];
                char v[9][NPSD_FIELD_VALUE_MAX];
                static const char *const names[9] = {
                        "responses", "promoters", "passives",
                        "detractors", "nps",      "moe",
                        "ci_low",    "ci_high",  "low_confidence"};
                npsd_nps_t r;

                npsd_slice_nps(slots, (npsd_slice_t)sl, low_confidence_n, &r);
                if (!r.has)
                        continue;
                size_t pre_len = 0;
                if (sl != NPSD_SLICE_ALL) {
                        pre_len = strlen(npsd_slice_names[sl]);
                        memcpy(pre, npsd_slice_names[sl], pre_len);
                        pre[pre_len++] = '.';
                }
                npsd_fmt_int(r.n, v[0]);
                npsd_fmt_int(s[NPSD_CAT_PROMOTER], v[1]);
                npsd_fmt_int(s[NPSD_CAT_PASSIVE], v[2]);
                npsd_fmt_int(s[NPSD_CAT_DETRACTOR], v[3]);
                npsd_metric_format(r.nps, v[4]);
                npsd_metric_format(r.moe, v[5]);
                npsd_metric_format(r.ci_low, v[6]);
                npsd_metric_format(r.ci_high, v[7]);
                npsd_fmt_int(r.low_confidence, v[8]);
                for (int f = 0; f < 9; f++) {
                        size_t len = strlen(names[f]);
                        memcpy(name, pre, pre_len);
                        memcpy(name + pre_len, names[f], len + 1);
                        /* 63 fields of at most 30 bytes always fit */
                        (void)npsd_fields_add(out, name, v[f]);
                }
        }
}

static int npsd_window_index(const npsd_periods_t *periods, int days) {
        for (int w = 0; w < periods->window_cnt; w++)
                if (periods->window_days[w] == days)
                        return w;
        return periods->window_cnt - 1;
}

static double npsd_segment_benchmark(const npsd_conf_t *conf,
                                     const char *segment) {
        if (segment && !strcmp(segment, "smb"))
                return conf->benchmark_smb;
        if (segment && !strcmp(segment, "mid_market"))
                return conf->benchmark_mid_market;
        if (segment && !strcmp(segment, "enterprise"))
                return conf->benchmark_enterprise;
        return conf->benchmark_all;
}

/* Derived values (trend, gap, deltas) use the published one-decimal NPS,
 * so that a reader of the hashes can redo the arithmetic. */
void npsd_view_metrics(const npsd_totals_t *totals,
                       const npsd_periods_t *periods,
                       const npsd_conf_t *conf, const char *segment,
                       const npsd_view_usage_t *usage,
                       npsd_account_metrics_t *m) {
        int li = npsd_window_index(periods, periods->long_days);
        const int64_t *lt = totals->t[li];
        int low = conf->low_confidence_n;
        npsd_nps_t all, prev, eu, dm, rel;
        npsd_health_in_t hin;
        npsd_health_conf_t hc;

        memset(m, 0, sizeof(*m));
        for (int w = 0; w < periods->window_cnt; w++) {
                npsd_nps_t r;
                npsd_slice_nps(totals->t[w], NPSD_SLICE_ALL, low, &r);
                m->has_nps[w] = r.has;
                m->nps[w] = r.nps;
        }
        npsd_slice_nps(lt, NPSD_SLICE_ALL, low, &all);
        npsd_slice_nps(totals->t[periods->window_cnt], NPSD_SLICE_ALL, low,
                       &prev);
        m->responses_long = all.n;
        m->responses_prev = prev.n;
        m->has_long = all.has;
        m->moe_long = all.moe;
        m->has_prev = prev.has;
        m->nps_prev_long = prev.nps;
        if (all.has && prev.has) {
                m->has_trend = 1;
                m->trend_long = npsd_round1(all.nps - prev.nps);
        }
        npsd_slice_nps(lt, NPSD_SLICE_END_USER, low, &eu);
        npsd_slice_nps(lt, NPSD_SLICE_DECISION_MAKER, low, &dm);
        m->has_end_user = eu.has;
        m->end_user_nps = eu.nps;
        m->has_decision_maker = dm.has;
        m->decision_maker_nps = dm.nps;
        if (eu.has && dm.has) {
                m->has_gap = 1;
                m->role_gap_long = npsd_round1(eu.nps - dm.nps);
                m->role_gap_flag =
                        fabs(m->role_gap_long) > conf->role_gap_threshold &&
                        eu.n >= conf->role_gap_min_responses &&
                        dm.n >= conf->role_gap_min_responses;
        }
        m->benchmark = npsd_segment_benchmark(conf, segment);
        if (all.has) {
                m->has_delta = 1;
                m->benchmark_delta = npsd_round1(all.nps - m->benchmark);
        }
        for (int st = 0; st < NPSD_SURVEY__CNT; st++) {
                npsd_nps_t r;
                npsd_slice_nps(lt, (npsd_slice_t)(NPSD_SLICE_RELATIONSHIP + st),
                               low, &r);
                if (!r.has)
                        continue;
                m->has_survey[st] = 1;
                m->survey_benchmark[st] = st == NPSD_SURVEY_RELATIONSHIP
                                                  ? conf->benchmark_relationship
                                                  : conf->benchmark_transactional;
                m->survey_delta[st] =
                        npsd_round1(r.nps - m->survey_benchmark[st]);
        }

        npsd_slice_nps(lt, NPSD_SLICE_RELATIONSHIP, low, &rel);
        memset(&hin, 0, sizeof(hin));
        hin.has_rel_nps = rel.has;
        hin.rel_nps = rel.nps;
        hin.has_nps = all.has;
        hin.nps = all.nps;
        hin.active_users_30d = usage->active_users_30d;
        hin.has_seats = usage->has_seats;
        hin.seats = usage->seats;
        hin.active_users_7d = usage->active_users_7d;
        hin.active_users_prev_7d = usage->active_users_prev_7d;
        hin.open_tickets = usage->open_tickets;
        hin.errors_7d = usage->errors_7d;
        hin.detractors_90d = lt[NPSD_SLICE_ALL * NPSD_CAT__CNT +
                                NPSD_CAT_DETRACTOR];
        hin.overdue_detractors = usage->overdue_followups;
        npsd_health_conf_from(&hc, conf);
        npsd_health_compute(&hin, &hc, &m->health);
}

/* Adds "<base>_<days>d" with a one-decimal value, or nothing when absent. */
static int npsd_add_metric(npsd_fields_t *out, const char *base, int days,
                           int has, double value) {
        char name[NPSD_FIELD_NAME_MAX], v[NPSD_FIELD_VALUE_MAX];

        snprintf(name, sizeof(name), "%s_%dd", base, days);
        return npsd_fields_add(out, name,
                               has ? npsd_metric_format(value, v) : NULL);
}

int npsd_view_summary(const npsd_account_metrics_t *m,
                      const npsd_periods_t *periods, npsd_fields_t *out) {
        char name[NPSD_FIELD_NAME_MAX], v[NPSD_FIELD_VALUE_MAX];
        int L = periods->long_days, err = 0;

        out->cnt = 0;
        for (int w = 0; w < periods->window_cnt; w++)
                err |= npsd_add_metric(out, "nps", periods->window_days[w],
                                       m->has_nps[w], m->nps[w]);
        snprintf(name, sizeof(name), "responses_%dd", L);
        npsd_fmt_int(m->responses_long, v);
        err |= npsd_fields_add(out, name, v);
        err |= npsd_add_metric(out, "moe", L, m->has_long, m->moe_long);
        err |= npsd_add_metric(out, "nps_prev", L, m->has_prev,
                               m->nps_prev_long);
        err |= npsd_add_metric(out, "trend", L, m->has_trend, m->trend_long);
        err |= npsd_add_metric(out, "role_gap", L, m->has_gap,
                               m->role_gap_long);
        err |= npsd_fields_add(out, "role_gap_flag",
                               m->role_gap_flag ? "1" : "0");
        err |= npsd_fields_add(out, "benchmark",
                               npsd_metric_format(m->benchmark, v));
        err |= npsd_fields_add(out, "benchmark_delta",
                               m->has_delta
                                       ? npsd_metric_format(m->benchmark_delta, v)
                                       : NULL);
        for (int st = 0; st < NPSD_SURVEY__CNT; st++) {
                if (!m->has_survey[st])
                        continue;
                snprintf(name, sizeof(name), "benchmark.%s",
                         npsd_survey_name((npsd_survey_t)st));
                err |= npsd_fields_add(
                        out, name,
                        npsd_metric_format(m->survey_benchmark[st], v));
                snprintf(name, sizeof(name), "benchmark_delta.%s",
                         npsd_survey_name((npsd_survey_t)st));
                err |= npsd_fields_add(
                        out, name, npsd_metric_format(m->survey_delta[st], v));
        }
        if (m->health.has) {
                npsd_fmt_int(m->health.health, v);
                err |= npsd_fields_add(out, "health", v);
                err |= npsd_fields_add(out, "health_band",
                                       npsd_band_name(m->health.band));
        }
        for (int c = 0; c < NPSD_HEALTH__CNT; c++) {
                if (!m->health.comp[c].present)
                        continue;
                snprintf(name, sizeof(name), "health.%s",
                         npsd_health_comp_name((npsd_health_comp_t)c));
                err |= npsd_fields_add(
                        out, name,
                        npsd_metric_format(
                                npsd_round1(m->health.comp[c].value), v));
        }
        return err ? -1 : 0;
}
