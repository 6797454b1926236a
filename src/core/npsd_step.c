/*
 * npsd_step — one account's state change (see include/npsd/npsd_step.h).
 *
 * The order of work follows what a batch means: context records first (a
 * response of the same batch is read in its account's newest context),
 * then responses, usage and follow-ups, then the timer's deadlines; the
 * views, ranks and edge-triggered alerts are evaluated once, at the end,
 * on the state all of them produced.
 */
#include "npsd/npsd_step.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_fmt.h"
#include "npsd/npsd_nps.h"
#include "npsd/npsd_pack.h"

#define NPSD_STEP_COHORTS_MAX (8 + NPSD_COHORT_ATTRS_MAX)
#define NPSD_STEP_ERR_KEEP 31 /* error days kept for errors_7d */

/* ---- owned name/value lists ------------------------------------------- */

void npsd_kvs_init(npsd_kvs_t *kvs) {
        memset(kvs, 0, sizeof(*kvs));
}

void npsd_kvs_clear(npsd_kvs_t *kvs) {
        for (size_t i = 0; i < kvs->cnt; i++) {
                free(kvs->v[i].key);
                free(kvs->v[i].value);
        }
        kvs->cnt = 0;
}

void npsd_kvs_free(npsd_kvs_t *kvs) {
        npsd_kvs_clear(kvs);
        free(kvs->v);
        npsd_kvs_init(kvs);
}

int npsd_kvs_add(npsd_kvs_t *kvs, const char *name, const char *value,
                 size_t len) {
        npsd_kv_t *kv;

        if (kvs->cnt == kvs->size) {
                size_t n = kvs->size ? kvs->size * 2 : 16;
                npsd_kv_t *v = realloc(kvs->v, n * sizeof(*v));
                if (!v)
                        return -1;
                kvs->v = v;
                kvs->size = n;
        }
        kv = &kvs->v[kvs->cnt];
        if (!(kv->key = strdup(name)))
                return -1;
        if (!(kv->value = malloc(len + 1))) {
                free(kv->key);
                return -1;
        }
        memcpy(kv->value, value, len);
        kv->value[len] = '\0';
        kvs->cnt++;
        return 0;
}

const char *npsd_kvs_get(const npsd_kvs_t *kvs, const char *name) {
        for (size_t i = 0; kvs && i < kvs->cnt; i++)
                if (!strcmp(kvs->v[i].key, name))
                        return kvs->v[i].value;
        return NULL;
}

static int npsd_kvs_adds(npsd_kvs_t *kvs, const char *name,
                         const char *value) {
        return value ? npsd_kvs_add(kvs, name, value, strlen(value)) : 0;
}

int npsd_account_fields(const npsd_account_t *acc, npsd_kvs_t *out) {
        char arr[64], seats[24], renewal[16], upd[NPSD_TIME_BUFSZ];
        int err = 0;

        npsd_kvs_clear(out);
        err |= npsd_kvs_adds(out, "name", acc->name);
        err |= npsd_kvs_adds(out, "segment", acc->segment);
        err |= npsd_kvs_adds(out, "plan", acc->plan);
        err |= npsd_kvs_adds(out, "lifecycle_stage", acc->lifecycle_stage);
        err |= npsd_kvs_adds(out, "csm_owner", acc->csm_owner);
        if (acc->has_arr) {
                snprintf(arr, sizeof(arr), "%.17g", acc->arr);
                err |= npsd_kvs_adds(out, "arr", arr);
        }
        if (acc->has_seats) {
                snprintf(seats, sizeof(seats), "%" PRId64, acc->seats);
                err |= npsd_kvs_adds(out, "seats", seats);
        }
        if (acc->has_renewal)
                err |= npsd_kvs_adds(out, "renewal_date",
                                     npsd_date_format(acc->renewal_day,
                                                      renewal));
        if (acc->has_updated_at)
                err |= npsd_kvs_adds(out, "updated_at",
                                     npsd_time_format(acc->updated_at_ms, upd));
        return err ? -1 : 0;
}

/* ---- settings ---------------------------------------------------------- */

/* FNV-1a: the digest only has to change when a setting does. */
static uint64_t npsd_step_fnv(const char *s) {
        uint64_t h = 1469598103934665603ULL;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ULL;
        }
        return h;
}

void npsd_step_env_init(npsd_step_env_t *env, const npsd_conf_t *conf,
                        const npsd_themes_t *themes, int64_t now_ms) {
        char buf[1024];
        size_t off = 0;

        memset(env, 0, sizeof(*env));
        env->conf = conf;
        env->themes = themes;
        npsd_periods_from(&env->periods, conf);
        npsd_health_conf_from(&env->hc, conf);
        npsd_alert_conf_from(&env->ac, conf);
        npsd_loop_conf_from(&env->lc, conf);
        env->now_ms = now_ms;
        env->today = npsd_time_day(now_ms);
        npsd_time_format(now_ms, env->now_str);
        /* every setting a view, a rank or an alert condition depends on */
        for (int i = 0; i < conf->window_cnt; i++)
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%d,",
                                        conf->window_days[i]);
        snprintf(buf + off, sizeof(buf) - off,
                 "%d/%d/%.17g/%d/%.17g/%.17g/%.17g/%.17g/%.17g/%.17g/"
                 "%.17g/%.17g/%.17g/%.17g/%.17g/%d/%d/%.17g/%.17g/%.17g",
                 conf->long_window_days, conf->low_confidence_n,
                 conf->role_gap_threshold, conf->role_gap_min_responses,
                 conf->benchmark_all, conf->benchmark_smb,
                 conf->benchmark_mid_market, conf->benchmark_enterprise,
                 conf->benchmark_relationship, conf->benchmark_transactional,
                 conf->health_w_nps, conf->health_w_adoption,
                 conf->health_w_engagement, conf->health_w_support,
                 conf->health_w_followup, conf->health_green,
                 conf->health_yellow, conf->health_ticket_penalty,
                 conf->health_error_penalty, conf->health_overdue_penalty);
        env->digest = npsd_step_fnv(buf);
}

/* ---- result lists ------------------------------------------------------ */

void npsd_step_out_init(npsd_step_out_t *out) {
        memset(out, 0, sizeof(*out));
        npsd_kvs_init(&out->account);
        out->next_timer_ms = -1;
}

void npsd_step_out_free(npsd_step_out_t *out) {
        for (size_t i = 0; i < out->alert_cnt; i++) {
                free(out->alerts[i].payload);
                free(out->alerts[i].log);
        }
        free(out->alerts);
        free(out->cohorts);
        free(out->themes);
        free(out->csm);
        free(out->suppress);
        free(out->fields);
        free(out->dels);
        npsd_kvs_free(&out->account);
        npsd_step_out_init(out);
}

void npsd_step_responses_free(npsd_step_response_t *responses, size_t cnt) {
        for (size_t i = 0; i < cnt; i++) {
                free(responses[i].snapshot);
                json_decref(responses[i].snapshot_json);
                responses[i].snapshot = NULL;
                responses[i].snapshot_json = NULL;
                responses[i].snapshot_len = 0;
        }
}

/* Makes room for one more element of an array that only grows. */
static void *npsd_step_grow(void *arr, size_t cnt, size_t *size,
                            size_t elsz) {
        size_t n;
        void *p;

        if (cnt < *size)
                return arr;
        n = *size ? *size * 2 : 16;
        if (!(p = realloc(arr, n * elsz)))
                return NULL;
        *size = n;
        return p;
}

#define NPSD_STEP_PUSH(out, arr, cnt, size)                                   \
        (((out)->arr = npsd_step_grow((out)->arr, (out)->cnt, &(out)->size,   \
                                      sizeof(*(out)->arr)))                   \
                 ? &(out)->arr[(out)->cnt++]                                  \
                 : NULL)

/* A counter move of the loop owner's nps:csm:<owner> hash. */
static int npsd_step_csm(npsd_step_out_t *out, const char *owner,
                         const char *field, int64_t by) {
        npsd_step_csm_t *c;

        if (!owner || !*owner || !by)
                return 0;
        for (size_t i = 0; i < out->csm_cnt; i++)
                if (!strcmp(out->csm[i].owner, owner) &&
                    !strcmp(out->csm[i].field, field)) {
                        out->csm[i].by += by;
                        return 0;
                }
        if (!(c = NPSD_STEP_PUSH(out, csm, csm_cnt, csm_size)))
                return -1;
        snprintf(c->owner, sizeof(c->owner), "%s", owner);
        snprintf(c->field, sizeof(c->field), "%s", field);
        c->by = by;
        return 0;
}

/* ---- the account's views ----------------------------------------------- */

/* What the rules compute from one state on one day. */
typedef struct npsd_step_view_s {
        npsd_totals_t totals;
        npsd_account_metrics_t m;
        npsd_view_usage_t usage;
} npsd_step_view_t;

static void npsd_step_usage_of(const npsd_step_env_t *env,
                               const npsd_state_t *st,
                               const npsd_kvs_t *account,
                               npsd_view_usage_t *u) {
        const char *seats = npsd_kvs_get(account, "seats");
        char *end;
        int64_t open = st->tickets_opened - st->tickets_closed;

        memset(u, 0, sizeof(*u));
        if (st->last_activity_ms >= 0) {
                u->active_users_7d = st->active_users_7d;
                u->active_users_30d = st->active_users_30d;
                u->active_users_prev_7d = st->active_users_prev_7d;
                u->open_tickets = open < 0 ? 0 : open;
                u->errors_7d = npsd_state_errors_7d(st, env->today);
        }
        u->overdue_followups = st->overdue_followups;
        if (seats && *seats) {
                double v = strtod(seats, &end);
                if (!*end) {
                        u->has_seats = 1;
                        u->seats = (int64_t)v;
                }
        }
}

static void npsd_step_view(const npsd_step_env_t *env, const npsd_state_t *st,
                           const npsd_kvs_t *account, npsd_step_view_t *v) {
        npsd_buckets_totals(&st->buckets, &env->periods, env->today,
                            &v->totals);
        npsd_step_usage_of(env, st, account, &v->usage);
        npsd_view_metrics(&v->totals, &env->periods, env->conf,
                          npsd_kvs_get(account, "segment"), &v->usage, &v->m);
}

static int npsd_step_add_int(npsd_fields_t *f, const char *name, int64_t v) {
        char buf[NPSD_FIELD_VALUE_MAX];

        (void)npsd_fmt_i64(v, buf);
        return npsd_fields_add(f, name, buf);
}

/* The summary hash of a view: the metrics' fields, then the usage inputs
 * (once the account has had activity), the closed-loop counters (once it
 * has had a loop), the last response. */
static int npsd_step_summary_of(const npsd_state_t *st,
                                const npsd_step_env_t *env,
                                const npsd_step_view_t *v,
                                npsd_fields_t *out) {
        int err = npsd_view_summary(&v->m, &env->periods, out);

        if (st->last_activity_ms >= 0) {
                err |= npsd_step_add_int(out, "active_users_7d",
                                         st->active_users_7d);
                err |= npsd_step_add_int(out, "active_users_30d",
                                         st->active_users_30d);
                err |= npsd_step_add_int(out, "active_users_prev_7d",
                                         st->active_users_prev_7d);
                err |= npsd_step_add_int(out, "features_30d",
                                         st->features_30d);
                err |= npsd_step_add_int(out, "errors_7d", v->usage.errors_7d);
                err |= npsd_step_add_int(out, "open_tickets",
                                         v->usage.open_tickets);
                err |= npsd_fields_add(out, "last_activity_at",
                                       st->last_activity_at);
        }
        if (st->loops_ever) {
                err |= npsd_step_add_int(out, "open_detractors",
                                         st->open_detractors);
                err |= npsd_step_add_int(out, "overdue_followups",
                                         st->overdue_followups);
                err |= npsd_step_add_int(out, "loops_closed",
                                         st->loops_closed);
                err |= npsd_step_add_int(out, "loops_closed_on_time",
                                         st->loops_closed_on_time);
        }
        if (st->last_response_ms >= 0) {
                err |= npsd_fields_add(out, "last_response_at",
                                       st->last_response_at);
                err |= npsd_step_add_int(out, "last_score", st->last_score);
        }
        return err ? -1 : 0;
}

/* The alert state hash (<prefix>:{A}:alerts): which edge-triggered
 * conditions hold, the last band, and the occurrences raised per type (the
 * <n> of the next alert id). For operators; npsd reads its state record. */
static int npsd_step_alert_fields(const npsd_state_t *st,
                                  npsd_fields_t *out) {
        char name[NPSD_FIELD_NAME_MAX];
        int err = 0;

        out->cnt = 0;
        err |= npsd_fields_add(out, "role_gap", st->role_gap_on ? "1" : "0");
        err |= npsd_fields_add(out, "nps_drop", st->nps_drop_on ? "1" : "0");
        err |= npsd_fields_add(out, "usage_drop",
                               st->usage_drop_on ? "1" : "0");
        if (st->band != NPSD_BAND_NONE)
                err |= npsd_fields_add(out, "health_band",
                                       npsd_band_name(st->band));
        for (int t = 0; t < NPSD_ALERT__CNT; t++) {
                if (!st->alert_n[t])
                        continue;
                snprintf(name, sizeof(name), "%s:n",
                         npsd_alert_type_name((npsd_alert_type_t)t));
                err |= npsd_step_add_int(out, name, (int64_t)st->alert_n[t]);
        }
        return err ? -1 : 0;
}

int npsd_step_summary(const npsd_step_env_t *env, const npsd_state_t *st,
                      const npsd_kvs_t *account, npsd_fields_t *out) {
        npsd_step_view_t v;

        npsd_step_view(env, st, account, &v);
        return npsd_step_summary_of(st, env, &v, out);
}

/* strlcpy: src cut to size - 1 bytes (the hot path's copies of field
 * names and values, without snprintf's format parsing). */
static void npsd_step_copy(char *dst, size_t size, const char *src) {
        size_t n = strnlen(src, size - 1);

        memcpy(dst, src, n);
        dst[n] = '\0';
}

static int npsd_step_push_field(npsd_step_out_t *out, const char *name,
                                const char *value) {
        npsd_field_t *f = NPSD_STEP_PUSH(out, fields, field_cnt, field_size);

        if (!f)
                return -1;
        npsd_step_copy(f->name, sizeof(f->name), name);
        npsd_step_copy(f->value, sizeof(f->value), value);
        return 0;
}

/* One hash edit: the whole new hash, or the fields that differ from the
 * old one. Returns 1 when it has anything to write, 0 when not, -1 when
 * out of memory. */
static int npsd_step_hash_edit(npsd_step_out_t *out, npsd_step_hash_t *h,
                               const char *name, const npsd_fields_t *from,
                               const npsd_fields_t *to, int whole) {
        size_t set[NPSD_FIELDS_MAX], del[NPSD_FIELDS_MAX], sn = 0, dn = 0;

        memset(h, 0, sizeof(*h));
        npsd_step_copy(h->name, sizeof(h->name), name);
        h->set0 = out->field_cnt;
        h->del0 = out->del_cnt;
        if (whole) {
                h->whole = 1;
                for (size_t i = 0; i < to->cnt; i++)
                        if (npsd_step_push_field(out, to->f[i].name,
                                                 to->f[i].value))
                                return -1;
                h->set_cnt = to->cnt;
                return 1;
        }
        npsd_fields_diff(from, to, set, &sn, del, &dn);
        for (size_t i = 0; i < sn; i++)
                if (npsd_step_push_field(out, to->f[set[i]].name,
                                         to->f[set[i]].value))
                        return -1;
        for (size_t i = 0; i < dn; i++) {
                npsd_step_name_t *d = NPSD_STEP_PUSH(out, dels, del_cnt,
                                                     del_size);
                if (!d)
                        return -1;
                npsd_step_copy(d->name, sizeof(d->name), from->f[del[i]].name);
        }
        h->set_cnt = sn;
        h->del_cnt = dn;
        return sn + dn > 0;
}

const char *npsd_step_hash_get(const npsd_step_out_t *out,
                               const npsd_step_hash_t *h, const char *name) {
        for (size_t i = 0; i < h->set_cnt; i++)
                if (!strcmp(out->fields[h->set0 + i].name, name))
                        return out->fields[h->set0 + i].value;
        return NULL;
}

/* ---- JSON of snapshots and alerts -------------------------------------- */

/* A one-decimal metric as JSON: an integer when whole, as the output
 * contract shows them (and earlier versions printed them). */
static json_t *npsd_step_num(double v) {
        if (v == floor(v) && fabs(v) < 1e15)
                return json_integer((json_int_t)v);
        return json_real(v);
}

static int npsd_step_set(json_t *o, const char *k, json_t *v) {
        return v ? json_object_set_new(o, k, v) : -1;
}

/* The account context as the snapshot and alerts carry it: the hash's
 * strings, with arr and seats as numbers (absent when not numeric). */
static json_t *npsd_step_account_json(const npsd_kvs_t *account,
                                      int numbers) {
        json_t *o = json_object();

        if (!o)
                return NULL;
        for (size_t i = 0; account && i < account->cnt; i++) {
                const npsd_kv_t *kv = &account->v[i];
                if (numbers && (!strcmp(kv->key, "arr") ||
                                !strcmp(kv->key, "seats"))) {
                        char *end;
                        double d = strtod(kv->value, &end);
                        if (!*kv->value || *end)
                                continue;
                        if (npsd_step_set(o, kv->key, npsd_step_num(d)))
                                goto fail;
                        continue;
                }
                if (npsd_step_set(o, kv->key, json_string(kv->value)))
                        goto fail;
        }
        return o;
fail:
        json_decref(o);
        return NULL;
}

/* The metrics member of a response's snapshot (SPEC §6 `metrics`). */
static json_t *npsd_step_metrics_json(const npsd_step_env_t *env,
                                      const npsd_account_metrics_t *m) {
        json_t *o = json_object();
        char name[NPSD_FIELD_NAME_MAX];
        int L = env->periods.long_days, err = 0;

        if (!o)
                return NULL;
        for (int w = 0; w < env->periods.window_cnt; w++) {
                if (!m->has_nps[w])
                        continue;
                snprintf(name, sizeof(name), "nps_%dd",
                         env->periods.window_days[w]);
                err |= npsd_step_set(o, name, npsd_step_num(m->nps[w]));
        }
        snprintf(name, sizeof(name), "responses_%dd", L);
        err |= npsd_step_set(o, name, json_integer(m->responses_long));
        if (m->has_long) {
                snprintf(name, sizeof(name), "moe_%dd", L);
                err |= npsd_step_set(o, name, npsd_step_num(m->moe_long));
        }
        if (m->has_prev) {
                snprintf(name, sizeof(name), "nps_prev_%dd", L);
                err |= npsd_step_set(o, name, npsd_step_num(m->nps_prev_long));
        }
        if (m->has_trend) {
                snprintf(name, sizeof(name), "trend_%dd", L);
                err |= npsd_step_set(o, name, npsd_step_num(m->trend_long));
        }
        err |= npsd_step_set(o, "role_gap_flag",
                             json_integer(m->role_gap_flag));
        if (m->has_gap) {
                snprintf(name, sizeof(name), "role_gap_%dd", L);
                err |= npsd_step_set(o, name, npsd_step_num(m->role_gap_long));
        }
        err |= npsd_step_set(o, "benchmark", npsd_step_num(m->benchmark));
        if (m->has_delta)
                err |= npsd_step_set(o, "benchmark_delta",
                                     npsd_step_num(m->benchmark_delta));
        if (m->health.has) {
                err |= npsd_step_set(o, "health",
                                     json_integer(m->health.health));
                err |= npsd_step_set(o, "health_band",
                                     json_string(npsd_band_name(m->health.band)));
        }
        if (err) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static json_t *npsd_step_recent_json(int score, npsd_role_t role,
                                     const char *submitted_at,
                                     const char *comment) {
        json_t *o = json_object();

        if (!o || npsd_step_set(o, "score", json_integer(score)) ||
            npsd_step_set(o, "role", json_string(npsd_role_name(role))) ||
            npsd_step_set(o, "submitted_at", json_string(submitted_at)) ||
            (comment && *comment &&
             npsd_step_set(o, "comment", json_string(comment)))) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* A counted response's record: what npsd_enrich_build() reads, and what a
 * replay of the same event within replay.days publishes again. */
static int npsd_step_snapshot(const npsd_step_env_t *env,
                              const npsd_state_t *st,
                              const npsd_kvs_t *account,
                              const npsd_account_metrics_t *m,
                              npsd_step_response_t *sr) {
        json_t *o = json_object(), *prev = json_array();
        int keep = env->conf->previous_count, err = 0;

        if (!o || !prev)
                goto fail;
        err |= npsd_step_set(o, "processed_at", json_integer(env->now_ms));
        err |= npsd_step_set(o, "account",
                             npsd_step_account_json(account, 0));
        err |= npsd_step_set(o, "digest",
                             json_string(sr->digest ? sr->digest : ""));
        err |= npsd_step_set(o, "metrics", npsd_step_metrics_json(env, m));
        /* earlier responses, newest first: st->recent holds them already
         * (this batch's earlier ones were pushed as they counted) */
        for (int i = 0; i < st->recent_n && i < keep; i++) {
                const npsd_state_recent_t *r = &st->recent[i];
                err |= json_array_append_new(
                        prev, npsd_step_recent_json(r->score, r->role,
                                                    r->submitted_at,
                                                    r->comment));
        }
        err |= json_object_set(o, "previous", prev);
        if (err)
                goto fail;
        /* stored compact (npsd_pack.h): replay.days of these are the
         * largest per-account item in Redis */
        sr->snapshot = npsd_pack_encode(o, &sr->snapshot_len);
        if (!sr->snapshot)
                goto fail;
        json_decref(prev);
        sr->snapshot_json = o;
        return 0;
fail:
        json_decref(prev);
        json_decref(o);
        return -1;
}

/* Raises one alert: its id counts the type's occurrences for the account
 * (a redelivered event changes no state, so it cannot raise a copy) and
 * carries the instant (ids stay unique across `npsctl reset`). details is
 * consumed. */
static int npsd_step_fire(const npsd_step_env_t *env, const char *account_id,
                          const npsd_kvs_t *account, npsd_state_t *st,
                          npsd_step_out_t *out, npsd_alert_type_t type,
                          npsd_severity_t sev, json_t *details,
                          const char *cause) {
        npsd_step_alert_t *a;
        json_t *o = NULL;
        uint64_t n;

        if (!details)
                return -1;
        if (!(a = NPSD_STEP_PUSH(out, alerts, alert_cnt, alert_size)))
                goto fail;
        memset(a, 0, sizeof(*a));
        n = ++st->alert_n[type];
        snprintf(a->id, sizeof(a->id), "%s:%s:%" PRIu64 ":%" PRId64,
                 npsd_alert_type_name(type), account_id, n, env->now_ms);
        a->type = type;
        if (!(o = json_object()) ||
            npsd_step_set(o, "alert_id", json_string(a->id)) ||
            npsd_step_set(o, "type", json_string(npsd_alert_type_name(type))) ||
            npsd_step_set(o, "severity", json_string(npsd_severity_name(sev))) ||
            npsd_step_set(o, "account_id", json_string(account_id)) ||
            npsd_step_set(o, "fired_at", json_string(env->now_str)) ||
            json_object_set(o, "details", details) ||
            npsd_step_set(o, "account", npsd_step_account_json(account, 1)) ||
            npsd_step_set(o, "event_id",
                          cause ? json_string(cause) : json_null()))
                goto fail_alert;
        if (!(a->payload = json_dumps(o, JSON_COMPACT |
                                                 JSON_REAL_PRECISION(15))))
                goto fail_alert;
        a->len = strlen(a->payload);
        /* the log of recent alerts is read next to the account's context:
         * a copy of it in each of ten entries was most of the list */
        if (json_object_del(o, "account") ||
            !(a->log = npsd_pack_encode(o, &a->log_len))) {
                free(a->payload);
                goto fail_alert;
        }
        json_decref(o);
        json_decref(details);
        return 0;
fail_alert:
        out->alert_cnt--;
fail:
        json_decref(o);
        json_decref(details);
        return -1;
}

/* ---- closed loop ------------------------------------------------------- */

static void npsd_step_loop_to(const npsd_state_loop_t *s, npsd_loop_t *lp) {
        memset(lp, 0, sizeof(*lp));
        lp->submitted_ms = s->submitted_ms;
        for (int i = 0; i < NPSD_LOOP__CNT; i++) {
                lp->due_ms[i] = s->due_ms[i];
                lp->met[i] = s->met_at[i][0] != '\0';
                lp->missed[i] = s->status[i] == NPSD_STAGE_MISSED;
        }
        lp->overdue = s->overdue;
        lp->closed = s->closed;
}

static void npsd_step_loop_from(const npsd_loop_t *lp, npsd_state_loop_t *s) {
        for (int i = 0; i < NPSD_LOOP__CNT; i++) {
                if (lp->missed[i])
                        s->status[i] = NPSD_STAGE_MISSED;
                else if (s->status[i] == NPSD_STAGE_MISSED)
                        s->status[i] = NPSD_STAGE_CLEARED;
        }
        s->overdue = (uint8_t)lp->overdue;
        s->closed = (uint8_t)lp->closed;
}

/* Applies a loop step's counter moves to the account and its owner. */
static int npsd_step_loop_counters(npsd_state_t *st, npsd_step_out_t *out,
                                   const char *owner,
                                   const npsd_loop_effect_t *eff) {
        int err = 0;

        st->overdue_followups += eff->overdue_delta;
        st->open_detractors += eff->open_delta;
        st->loops_closed += eff->closed;
        st->loops_closed_on_time += eff->closed_on_time;
        err |= npsd_step_csm(out, owner, "overdue_followups",
                             eff->overdue_delta);
        err |= npsd_step_csm(out, owner, "open_detractors", eff->open_delta);
        err |= npsd_step_csm(out, owner, "loops_closed", eff->closed);
        err |= npsd_step_csm(out, owner, "loops_closed_on_time",
                             eff->closed_on_time);
        return err ? -1 : 0;
}

/* The followup_overdue alerts of the stages a loop step missed. met_at: the
 * late follow-up's time, NULL when the timer saw the deadline pass. */
static int npsd_step_loop_alerts(const npsd_step_env_t *env,
                                 const npsd_step_in_t *in,
                                 const npsd_kvs_t *account, npsd_state_t *st,
                                 npsd_step_out_t *out,
                                 const npsd_state_loop_t *s, unsigned missed,
                                 const char *met_at, const char *cause) {
        for (int i = 0; i < NPSD_LOOP__CNT; i++) {
                char due[NPSD_TIME_BUFSZ];
                json_t *d;
                if (!(missed & (1u << i)))
                        continue;
                d = json_object();
                if (!d ||
                    npsd_step_set(d, "response_event_id", json_string(s->rid)) ||
                    npsd_step_set(d, "stage", json_string(npsd_loop_stage_name(
                                                      (npsd_loop_stage_t)i))) ||
                    npsd_step_set(d, "due_at",
                                  json_string(npsd_time_format(s->due_ms[i],
                                                               due))) ||
                    npsd_step_set(d, "submitted_at",
                                  json_string(s->submitted_at)) ||
                    (met_at && npsd_step_set(d, "met_at", json_string(met_at)))) {
                        json_decref(d);
                        return -1;
                }
                if (npsd_step_fire(env, in->account_id, account, st, out,
                                   NPSD_ALERT_FOLLOWUP_OVERDUE,
                                   npsd_loop_severity((npsd_loop_stage_t)i), d,
                                   cause))
                        return -1;
        }
        return 0;
}

/* One follow-up action on an open loop: stages met (a late one raises its
 * alert), closing, the counters. Returns 1 when the loop changed, 0 when
 * not, -1 on OOM. */
static int npsd_step_loop_apply(const npsd_step_env_t *env,
                                const npsd_step_in_t *in,
                                const npsd_kvs_t *account, npsd_state_t *st,
                                npsd_step_out_t *out, npsd_state_loop_t *s,
                                int level, int64_t at_ms, const char *at,
                                const char *cause) {
        npsd_loop_t lp;
        npsd_loop_effect_t eff;
        int changed = 0;

        npsd_step_loop_to(s, &lp);
        npsd_loop_apply(&lp, (npsd_followup_action_t)(level - 1), at_ms, &eff);
        for (int i = 0; i < level && i < NPSD_LOOP__CNT; i++)
                if (!s->met_at[i][0]) {
                        snprintf(s->met_at[i], sizeof(s->met_at[i]), "%s", at);
                        changed = 1;
                }
        if (eff.closed)
                changed = 1;
        npsd_step_loop_from(&lp, s);
        if (npsd_step_loop_counters(st, out, s->owner, &eff) ||
            npsd_step_loop_alerts(env, in, account, st, out, s, eff.missed,
                                  at, cause))
                return -1;
        return changed;
}

/* A detractor's loop, with the follow-ups that arrived before it. */
static int npsd_step_loop_open(const npsd_step_env_t *env,
                               const npsd_step_in_t *in,
                               const npsd_kvs_t *account, npsd_state_t *st,
                               npsd_step_out_t *out,
                               const npsd_response_t *r, const char *ts_str) {
        npsd_state_loop_t s, *lp;
        const char *owner = npsd_kvs_get(account, "csm_owner");

        /* only detractors of the long window's days have a loop */
        if (npsd_time_day(r->submitted_at_ms) <=
            env->today - env->periods.long_days)
                return 0;
        if (npsd_state_loop_find(st, r->event_id))
                return 0;
        memset(&s, 0, sizeof(s));
        snprintf(s.rid, sizeof(s.rid), "%s", r->event_id);
        snprintf(s.owner, sizeof(s.owner), "%s", owner ? owner : "");
        s.submitted_ms = r->submitted_at_ms;
        snprintf(s.submitted_at, sizeof(s.submitted_at), "%s", ts_str);
        for (int i = 0; i < NPSD_LOOP__CNT; i++)
                s.due_ms[i] = npsd_loop_due(r->submitted_at_ms,
                                            (npsd_loop_stage_t)i, &env->lc);
        if (!(lp = npsd_state_loop_add(st, &s)))
                return -1;
        st->loops_ever = 1;
        st->open_detractors++;
        if (npsd_step_csm(out, s.owner, "open_detractors", 1))
                return -1;
        /* follow-ups kept for it, newest last as they arrived */
        for (size_t i = 0; i < st->pending_cnt;) {
                npsd_state_pending_t p = st->pending[i];
                if (strcmp(p.rid, r->event_id)) {
                        i++;
                        continue;
                }
                npsd_state_pending_remove(st, i);
                lp = npsd_state_loop_find(st, r->event_id);
                if (npsd_step_loop_apply(env, in, account, st, out, lp,
                                         p.level, p.at_ms, p.at,
                                         p.event_id) < 0)
                        return -1;
                i = 0; /* removal reorders: rescan */
        }
        return 0;
}

/* The timer: every deadline of a loop that passed (strictly: a follow-up
 * exactly at its deadline is on time), in the order they fell, and the
 * loop's end. Returns 1 when something changed. */
static int npsd_step_loops_due(const npsd_step_env_t *env,
                               const npsd_step_in_t *in,
                               const npsd_kvs_t *account, npsd_state_t *st,
                               npsd_step_out_t *out) {
        int changed = 0;

        for (size_t i = 0; i < st->loop_cnt;) {
                npsd_state_loop_t *s = &st->loops[i];
                npsd_loop_t lp;
                npsd_loop_stage_t stage;
                int removed = 0;

                npsd_step_loop_to(s, &lp);
                while (npsd_loop_next_timer(&lp, env->periods.long_days,
                                            &stage) < env->now_ms) {
                        npsd_loop_effect_t eff;
                        changed = 1;
                        if (stage == NPSD_LOOP__CNT) {
                                memset(&eff, 0, sizeof(eff));
                                if (!lp.closed) {
                                        eff.open_delta = -1;
                                        if (lp.overdue)
                                                eff.overdue_delta = -1;
                                }
                                if (npsd_step_loop_counters(st, out, s->owner,
                                                            &eff))
                                        return -1;
                                npsd_state_loop_remove(st, i);
                                removed = 1;
                                break;
                        }
                        memset(&eff, 0, sizeof(eff));
                        lp.missed[stage] = 1;
                        eff.missed = 1u << stage;
                        if (!lp.overdue && !lp.closed) {
                                lp.overdue = 1;
                                eff.overdue_delta = 1;
                        }
                        npsd_step_loop_from(&lp, s);
                        if (npsd_step_loop_counters(st, out, s->owner, &eff) ||
                            npsd_step_loop_alerts(env, in, account, st, out, s,
                                                  eff.missed, NULL, NULL))
                                return -1;
                }
                if (!removed)
                        i++;
        }
        return changed;
}

static int npsd_step_followup(const npsd_step_env_t *env,
                              const npsd_step_in_t *in,
                              const npsd_kvs_t *account, npsd_state_t *st,
                              npsd_step_out_t *out, size_t idx) {
        npsd_step_followup_t *sf = &in->followups[idx];
        const npsd_followup_t *f = sf->ev;
        npsd_state_loop_t *lp;
        char at[NPSD_TIME_BUFSZ];
        int level = npsd_loop_stages_met(f->action);

        sf->status = NPSD_FOLLOWUP_DUPLICATE;
        if (sf->seen)
                return 0;
        for (size_t j = 0; j < idx; j++)
                if (!strcmp(in->followups[j].ev->event_id, f->event_id))
                        return 0;
        npsd_time_format(f->at_ms, at);
        if ((lp = npsd_state_loop_find(st, f->response_event_id))) {
                int rc = npsd_step_loop_apply(env, in, account, st, out, lp,
                                              level, f->at_ms, at,
                                              f->event_id);
                if (rc < 0)
                        return -1;
                sf->status = NPSD_FOLLOWUP_APPLIED;
                return rc;
        }
        if (sf->response_seen) {
                sf->status = NPSD_FOLLOWUP_NO_OPEN_LOOP;
                return 0;
        }
        for (size_t j = 0; j < in->resp_cnt; j++)
                if (in->responses[j].counted &&
                    !strcmp(in->responses[j].resp->event_id,
                            f->response_event_id)) {
                        sf->status = NPSD_FOLLOWUP_NO_OPEN_LOOP;
                        return 0;
                }
        {
                /* the response has not arrived (yet): kept and matched on
                 * arrival */
                npsd_state_pending_t p;
                memset(&p, 0, sizeof(p));
                snprintf(p.rid, sizeof(p.rid), "%s", f->response_event_id);
                snprintf(p.event_id, sizeof(p.event_id), "%s", f->event_id);
                p.level = (uint8_t)level;
                p.at_ms = f->at_ms;
                snprintf(p.at, sizeof(p.at), "%s", at);
                if (!npsd_state_pending_add(st, &p))
                        return -1;
                sf->status = NPSD_FOLLOWUP_PENDING;
                return 1;
        }
}

/* ---- responses --------------------------------------------------------- */

size_t npsd_step_cohort_names(const npsd_conf_t *conf,
                              const npsd_response_t *r,
                              const npsd_kvs_t *account,
                              char names[][NPSD_SHORT_MAX * 2 + 8],
                              size_t max) {
        const char *dims[][2] = {
                {"segment", npsd_kvs_get(account, "segment")},
                {"plan", npsd_kvs_get(account, "plan")},
                {"lifecycle_stage", npsd_kvs_get(account, "lifecycle_stage")},
                {"language", r->language},
                {"channel", r->channel},
                {"survey_type", npsd_survey_name(r->survey_type)},
                {"role", npsd_role_name(r->role)},
        };
        size_t n = 0;

        if (n < max)
                snprintf(names[n++], NPSD_SHORT_MAX * 2 + 8, "all:all");
        for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]) && n < max;
             i++) {
                const char *v = dims[i][1];
                int len;
                if (!v || !*v)
                        continue;
                len = snprintf(names[n], NPSD_SHORT_MAX * 2 + 8, "%s:%s",
                               dims[i][0], v);
                if (len > 0 && len < NPSD_SHORT_MAX * 2 + 8)
                        n++;
        }
        for (int i = 0; r->attributes && i < conf->cohort_attr_cnt && n < max;
             i++) {
                const char *v = json_string_value(
                        json_object_get(r->attributes, conf->cohort_attr[i]));
                int len;
                if (!v || !*v || strchr(v, '\n') || strchr(v, '\t'))
                        continue;
                len = snprintf(names[n], NPSD_SHORT_MAX * 2 + 8, "%s:%s",
                               conf->cohort_attr[i], v);
                if (len > 0 && len < NPSD_SHORT_MAX * 2 + 8)
                        n++;
        }
        return n;
}

/* Counts one new response: its day buckets, its cohorts' and themes' day
 * buckets, the survey suppression, the last response, its snapshot, the
 * recent list and, for a detractor, its loop. */
static int npsd_step_response(const npsd_step_env_t *env,
                              const npsd_step_in_t *in,
                              const npsd_kvs_t *account, npsd_state_t *st,
                              npsd_step_out_t *out, npsd_step_response_t *sr) {
        const npsd_response_t *r = sr->resp;
        int32_t day = npsd_time_day(r->submitted_at_ms);
        int32_t oldest = env->today - 2 * env->periods.long_days + 1;
        char ts_str[NPSD_TIME_BUFSZ];
        unsigned slots[3];
        int64_t ttl;
        npsd_step_view_t v;

        npsd_time_format(r->submitted_at_ms, ts_str);
        npsd_slots_of(r->category, r->survey_type, r->role, slots);
        if (day >= oldest) {
                char names[NPSD_STEP_COHORTS_MAX][NPSD_SHORT_MAX * 2 + 8];
                size_t n;
                for (int i = 0; i < 3; i++)
                        if (npsd_buckets_add(&st->buckets, day, slots[i], 1))
                                return -1;
                /* the cohorts it counts in as of now: responses already
                 * counted keep theirs when the context changes later */
                n = npsd_step_cohort_names(env->conf, r, account, names,
                                           NPSD_STEP_COHORTS_MAX);
                for (size_t c = 0; c < n; c++)
                        for (int i = 0; i < 3; i++) {
                                npsd_step_cohort_t *co = NPSD_STEP_PUSH(
                                        out, cohorts, cohort_cnt, cohort_size);
                                if (!co)
                                        return -1;
                                memcpy(co->name, names[c], sizeof(co->name));
                                co->day = day;
                                co->slot = slots[i];
                        }
                for (int t = 0; t < npsd_themes_count(env->themes); t++) {
                        npsd_step_theme_t *th;
                        if (!(sr->theme_bits & (1ULL << t)))
                                continue;
                        if (!(th = NPSD_STEP_PUSH(out, themes, theme_cnt,
                                                  theme_size)))
                                return -1;
                        th->cat = r->category;
                        th->day = day;
                        th->theme = t;
                }
        }
        /* survey senders skip users surveyed within the suppression period */
        ttl = (r->submitted_at_ms +
               (int64_t)env->conf->suppress_days * NPSD_MS_PER_DAY -
               env->now_ms) / 1000;
        if (ttl > 0) {
                npsd_step_suppress_t *su = NULL;
                for (size_t i = 0; i < out->suppress_cnt; i++)
                        if (!strcmp(out->suppress[i].user_id, r->user_id))
                                su = &out->suppress[i];
                if (!su || su->ttl_s < ttl) {
                        if (!su && !(su = NPSD_STEP_PUSH(out, suppress,
                                                         suppress_cnt,
                                                         suppress_size)))
                                return -1;
                        su->user_id = r->user_id;
                        memcpy(su->at, ts_str, sizeof(su->at));
                        su->ttl_s = ttl;
                }
        }
        if (r->submitted_at_ms >= st->last_response_ms) {
                st->last_response_ms = r->submitted_at_ms;
                memcpy(st->last_response_at, ts_str, sizeof(ts_str));
                st->last_score = r->score;
        }
        /* the snapshot: this response's account view as of its counting */
        npsd_step_view(env, st, account, &v);
        if (npsd_step_snapshot(env, st, account, &v.m, sr))
                return -1;
        if (env->conf->previous_count > 0 &&
            npsd_state_recent_push(st, r->score, r->role, ts_str,
                                   r->comment, env->conf->previous_count))
                return -1;
        if (r->category == NPSD_CAT_DETRACTOR &&
            npsd_step_loop_open(env, in, account, st, out, r, ts_str))
                return -1;
        sr->counted = 1;
        return 0;
}

/* ---- usage ------------------------------------------------------------- */

static int npsd_step_usage(const npsd_step_env_t *env, const npsd_step_in_t *in,
                           npsd_state_t *st) {
        int counted = 0;

        for (size_t i = 0; i < in->usage_cnt; i++) {
                npsd_step_usage_t *su = &in->usage[i];
                const npsd_usage_t *u = su->ev;
                int32_t day = npsd_time_day(u->occurred_at_ms);
                int dup = su->seen;

                for (size_t j = 0; j < i && !dup; j++)
                        dup = in->usage[j].counted &&
                              npsd_time_day(in->usage[j].ev->occurred_at_ms) ==
                                      day &&
                              !strcmp(in->usage[j].ev->event_id, u->event_id);
                if (dup)
                        continue;
                su->counted = 1;
                counted++;
                if (u->type == NPSD_USAGE_ERROR && day > env->today - 31 &&
                    day <= env->today + 1 &&
                    npsd_state_errors_add(st, day, 1, env->today))
                        return -1;
                if (u->type == NPSD_USAGE_TICKET_OPENED)
                        st->tickets_opened++;
                if (u->type == NPSD_USAGE_TICKET_CLOSED)
                        st->tickets_closed++;
                if (u->occurred_at_ms > st->last_activity_ms) {
                        st->last_activity_ms = u->occurred_at_ms;
                        npsd_time_format(u->occurred_at_ms,
                                         st->last_activity_at);
                }
        }
        return counted;
}

/* ---- views, ranks, alerts, schedule ------------------------------------ */

static int npsd_step_alerts(const npsd_step_env_t *env,
                            const npsd_step_in_t *in,
                            const npsd_kvs_t *account, npsd_state_t *st,
                            npsd_step_out_t *out, const npsd_step_view_t *v,
                            const char *cause) {
        const npsd_account_metrics_t *m = &v->m;
        npsd_alert_state_t prev = {.role_gap = st->role_gap_on,
                                   .nps_drop = st->nps_drop_on,
                                   .band = st->band,
                                   .usage_drop = st->usage_drop_on};
        npsd_alert_state_t next;
        npsd_alert_in_t ain = {
                .role_gap_flag = m->role_gap_flag,
                .has_trend = m->has_trend,
                .trend = m->trend_long,
                .responses = m->responses_long,
                .responses_prev = m->responses_prev,
                .band = m->health.has ? m->health.band : NPSD_BAND_NONE,
                .active_users_7d = v->usage.active_users_7d,
                .active_users_prev_7d = v->usage.active_users_prev_7d,
        };
        npsd_alert_fired_t fired[NPSD_ALERT_CHECK_MAX];
        char win[16];
        int n = npsd_alert_check(&prev, &ain, &env->ac, &next, fired);

        snprintf(win, sizeof(win), "%dd", env->periods.long_days);
        for (int i = 0; i < n; i++) {
                json_t *d = json_object();
                int err = !d;
                int lw = 0;
                for (int w = 0; w < env->periods.window_cnt; w++)
                        if (env->periods.window_days[w] ==
                            env->periods.long_days)
                                lw = w;
                switch (fired[i].type) {
                case NPSD_ALERT_ROLE_GAP:
                        err = err ||
                              npsd_step_set(d, "role_gap",
                                            npsd_step_num(m->role_gap_long)) ||
                              (m->has_end_user &&
                               npsd_step_set(d, "end_user_nps",
                                             npsd_step_num(m->end_user_nps))) ||
                              (m->has_decision_maker &&
                               npsd_step_set(d, "decision_maker_nps",
                                             npsd_step_num(
                                                     m->decision_maker_nps))) ||
                              npsd_step_set(d, "window", json_string(win));
                        break;
                case NPSD_ALERT_NPS_DROP:
                        err = err ||
                              npsd_step_set(d, "trend",
                                            npsd_step_num(m->trend_long)) ||
                              npsd_step_set(d, "nps",
                                            npsd_step_num(m->nps[lw])) ||
                              npsd_step_set(d, "nps_prev",
                                            npsd_step_num(m->nps_prev_long)) ||
                              npsd_step_set(d, "responses",
                                            json_integer(m->responses_long)) ||
                              npsd_step_set(d, "responses_prev",
                                            json_integer(m->responses_prev)) ||
                              npsd_step_set(d, "window", json_string(win));
                        break;
                case NPSD_ALERT_HEALTH_BAND:
                        err = err ||
                              npsd_step_set(d, "from", json_string(npsd_band_name(
                                                               fired[i].from))) ||
                              npsd_step_set(d, "to", json_string(npsd_band_name(
                                                             fired[i].to))) ||
                              npsd_step_set(d, "health",
                                            json_integer(m->health.health));
                        break;
                case NPSD_ALERT_USAGE_DROP:
                        err = err ||
                              npsd_step_set(d, "active_users_7d",
                                            json_integer(
                                                    v->usage.active_users_7d)) ||
                              npsd_step_set(d, "active_users_prev_7d",
                                            json_integer(
                                                    v->usage.active_users_prev_7d));
                        break;
                default:
                        break;
                }
                if (err) {
                        json_decref(d);
                        return -1;
                }
                if (npsd_step_fire(env, in->account_id, account, st, out,
                                   fired[i].type, fired[i].severity, d, cause))
                        return -1;
        }
        st->role_gap_on = (uint8_t)next.role_gap;
        st->nps_drop_on = (uint8_t)next.nps_drop;
        st->band = next.band;
        st->usage_drop_on = (uint8_t)next.usage_drop;
        return 0;
}

/* When the account needs the timer next: a day entering or leaving a
 * window (a minute past midnight UTC), the usage windows moving daily while
 * there was activity in the last 31 days, a loop deadline passing
 * (strictly after it). */
static int64_t npsd_step_next_timer(const npsd_step_env_t *env,
                                    const npsd_state_t *st) {
        int64_t best = -1;
        int32_t d = npsd_buckets_next_change(&st->buckets, &env->periods,
                                             env->today);

        if (st->last_activity_ms >= 0 &&
            npsd_time_day(st->last_activity_ms) > env->today - 31 &&
            (d == NPSD_DAY_NONE || d > env->today + 1))
                d = env->today + 1;
        if (d != NPSD_DAY_NONE)
                best = (int64_t)d * NPSD_MS_PER_DAY + 60000;
        for (size_t i = 0; i < st->loop_cnt; i++) {
                npsd_loop_t lp;
                npsd_loop_stage_t stage;
                int64_t t;
                npsd_step_loop_to(&st->loops[i], &lp);
                t = npsd_loop_next_timer(&lp, env->periods.long_days, &stage) +
                    1;
                if (best < 0 || t < best)
                        best = t;
        }
        return best;
}

/* Drops follow-ups waiting longer than dedupe.days for their response. */
static int npsd_step_pending_expire(const npsd_step_env_t *env,
                                    npsd_state_t *st) {
        int64_t horizon = env->now_ms -
                          (int64_t)env->conf->dedupe_days * NPSD_MS_PER_DAY;
        int changed = 0;

        for (size_t i = 0; i < st->pending_cnt;) {
                if (st->pending[i].at_ms < horizon) {
                        npsd_state_pending_remove(st, i);
                        changed = 1;
                } else {
                        i++;
                }
        }
        return changed;
}

/* The views and field lists one step compares, some 40 KiB: allocated
 * once per thread and reused by every step (a step runs to its end on one
 * thread), not once per account. */
typedef struct npsd_step_scratch_s {
        npsd_step_view_t oldv, newv;
        npsd_fields_t of[NPSD_WINDOWS_MAX + 2]; /* windows, summary, alerts */
        npsd_fields_t nf;
} npsd_step_scratch_t;

static _Thread_local npsd_step_scratch_t *npsd_step_scratch_tls;

static npsd_step_scratch_t *npsd_step_scratch(void) {
        if (!npsd_step_scratch_tls)
                npsd_step_scratch_tls = malloc(sizeof(*npsd_step_scratch_tls));
        return npsd_step_scratch_tls;
}

int npsd_step_account(const npsd_step_env_t *env, const npsd_step_in_t *in,
                      npsd_state_t *st, npsd_step_out_t *out, char *errstr,
                      size_t errstr_size) {
        const npsd_kvs_t *account = in->account;
        npsd_step_scratch_t *scratch;
        npsd_step_view_t *oldv, *newv;
        npsd_fields_t *of, *nf; /* windows, then summary, alerts */
        const char *cause = NULL;
        const char *owner0 = npsd_kvs_get(in->account, "csm_owner");
        int changed = 0, rewrite, whole, W = env->periods.window_cnt;

        snprintf(out->old_owner, sizeof(out->old_owner), "%s",
                 owner0 ? owner0 : "");
        snprintf(out->new_owner, sizeof(out->new_owner), "%s", out->old_owner);
        if (!(scratch = npsd_step_scratch()))
                goto oom;
        oldv = &scratch->oldv;
        newv = &scratch->newv;
        of = scratch->of;
        nf = &scratch->nf;
        for (int w = 0; w < W + 2; w++)
                of[w].cnt = 0;

        /* the views the state stands for as it comes in: written today
         * under today's settings, they are what Redis holds, and only the
         * fields that differ from them are written; else, and when asked
         * to (a view lost behind npsd's back comes back), every view is
         * written whole */
        whole = st->views_day != env->today ||
                st->settings_digest != env->digest || in->refresh;
        if (!whole) {
                npsd_step_view(env, st, in->account, oldv);
                for (int w = 0; w < W; w++)
                        npsd_view_window(oldv->totals.t[w],
                                         env->conf->low_confidence_n, &of[w]);
                if (npsd_step_summary_of(st, env, oldv, &of[W]))
                        goto oom;
        }
        /* the alert state as Redis holds it (unless never written) */
        if (st->views_day != NPSD_DAY_NONE &&
            npsd_step_alert_fields(st, &of[W + 1]))
                goto oom;

        /* context records, in order; an older one than the stored is
         * ignored */
        for (size_t i = 0; i < in->context_cnt; i++) {
                const npsd_account_t *acc = in->contexts[i];
                int64_t upd = acc->has_updated_at ? acc->updated_at_ms : -1;
                if (upd >= 0 && st->context_updated_ms >= 0 &&
                    upd < st->context_updated_ms)
                        continue;
                if (npsd_account_fields(acc, &out->account))
                        goto oom;
                out->account_replaced = 1;
                account = &out->account;
                if (upd >= 0)
                        st->context_updated_ms = upd;
                snprintf(out->new_owner, sizeof(out->new_owner), "%s",
                         acc->csm_owner ? acc->csm_owner : "");
                changed = 1;
        }

        for (size_t i = 0; i < in->resp_cnt; i++) {
                npsd_step_response_t *sr = &in->responses[i];
                int dup = sr->seen;
                sr->counted = 0;
                for (size_t j = 0; j < i && !dup; j++)
                        dup = in->responses[j].counted &&
                              !strcmp(in->responses[j].resp->event_id,
                                      sr->resp->event_id);
                if (dup)
                        continue;
                if (npsd_step_response(env, in, account, st, out, sr))
                        goto oom;
                cause = sr->resp->event_id;
                changed = 1;
        }

        if (in->usage_cnt) {
                int n = npsd_step_usage(env, in, st);
                if (n < 0)
                        goto oom;
                if (n > 0) {
                        changed = 1;
                        for (size_t i = in->usage_cnt; i-- > 0;)
                                if (in->usage[i].counted) {
                                        cause = in->usage[i].ev->event_id;
                                        break;
                                }
                }
        }
        if (in->counts && st->last_activity_ms >= 0) {
                st->active_users_7d = in->counts->active_users_7d;
                st->active_users_30d = in->counts->active_users_30d;
                st->active_users_prev_7d = in->counts->active_users_prev_7d;
                st->features_30d = in->counts->features_30d;
                if (st->counted_day != env->today)
                        changed = 1;
                st->counted_day = env->today;
        }

        for (size_t i = 0; i < in->followup_cnt; i++) {
                int rc = npsd_step_followup(env, in, account, st, out, i);
                if (rc < 0)
                        goto oom;
                if (rc > 0) {
                        changed = 1;
                        if (in->followups[i].status == NPSD_FOLLOWUP_APPLIED)
                                cause = in->followups[i].ev->event_id;
                }
        }

        if (in->tick) {
                int rc = npsd_step_loops_due(env, in, account, st, out);
                if (rc < 0)
                        goto oom;
                if (rc > 0) {
                        changed = 1;
                        cause = NULL;
                }
        }
        if (npsd_step_pending_expire(env, st))
                changed = 1;
        if (npsd_buckets_prune(&st->buckets, &env->periods, env->today))
                changed = 1;

        rewrite = changed || whole;
        if (rewrite) {
                int any = 0;

                npsd_step_view(env, st, account, newv);
                if (npsd_step_alerts(env, in, account, st, out, newv, cause))
                        goto oom;
                /* the windows */
                for (int w = 0; w < env->periods.window_cnt; w++) {
                        char name[NPSD_FIELD_NAME_MAX];
                        snprintf(name, sizeof(name), "w:%dd",
                                 env->periods.window_days[w]);
                        npsd_view_window(newv->totals.t[w],
                                         env->conf->low_confidence_n, nf);
                        int rc = npsd_step_hash_edit(
                                out, &out->hash[out->hash_cnt], name, &of[w],
                                nf, whole);
                        if (rc < 0)
                                goto oom;
                        if (rc) {
                                out->hash_cnt++;
                                any = 1;
                        }
                }
                /* the summary */
                if (npsd_step_summary_of(st, env, newv, nf))
                        goto oom;
                {
                        npsd_step_hash_t *h = &out->hash[out->hash_cnt];
                        int rc = npsd_step_hash_edit(out, h, "summary",
                                                     &of[W], nf, whole);
                        if (rc < 0)
                                goto oom;
                        if (rc || changed) {
                                /* right after the edit's fields: its range */
                                if (npsd_step_push_field(out, "updated_at",
                                                         env->now_str))
                                        goto oom;
                                h->set_cnt++;
                                out->hash_cnt++;
                                any = 1;
                        }
                }
                /* the alert state */
                if (npsd_step_alert_fields(st, nf))
                        goto oom;
                {
                        int rc = npsd_step_hash_edit(
                                out, &out->hash[out->hash_cnt], "alerts",
                                &of[W + 1], nf,
                                st->views_day == NPSD_DAY_NONE);
                        if (rc < 0)
                                goto oom;
                        if (rc)
                                out->hash_cnt++;
                }
                /* ranks: the long window's NPS and health */
                {
                        int lw = 0;
                        for (int w = 0; w < env->periods.window_cnt; w++)
                                if (env->periods.window_days[w] ==
                                    env->periods.long_days)
                                        lw = w;
                        out->rank_nps_has = newv->m.has_nps[lw];
                        out->rank_nps = newv->m.nps[lw];
                        out->rank_health_has = newv->m.health.has;
                        out->rank_health = newv->m.health.health;
                        out->ranks_changed =
                                whole ||
                                oldv->m.has_nps[lw] != newv->m.has_nps[lw] ||
                                oldv->m.nps[lw] != newv->m.nps[lw] ||
                                oldv->m.health.has != newv->m.health.has ||
                                oldv->m.health.health !=
                                        newv->m.health.health;
                }
                if (any) {
                        /* absent values are left out, never null */
                        char nps[NPSD_FIELD_VALUE_MAX + 16] = "";
                        char health[48] = "", band[48] = "";
                        int lw = 0;
                        for (int w = 0; w < env->periods.window_cnt; w++)
                                if (env->periods.window_days[w] ==
                                    env->periods.long_days)
                                        lw = w;
                        if (newv->m.has_nps[lw]) {
                                char v[NPSD_FIELD_VALUE_MAX];
                                snprintf(nps, sizeof(nps), ",\"nps_%dd\":%s",
                                         env->periods.long_days,
                                         npsd_metric_format(newv->m.nps[lw],
                                                            v));
                        }
                        if (newv->m.health.has) {
                                snprintf(health, sizeof(health),
                                         ",\"health\":%d",
                                         newv->m.health.health);
                                snprintf(band, sizeof(band),
                                         ",\"health_band\":\"%s\"",
                                         npsd_band_name(newv->m.health.band));
                        }
                        {
                                json_t *id = json_string(in->account_id);
                                char *ids = id ? json_dumps(id, JSON_ENCODE_ANY)
                                               : NULL;
                                json_decref(id);
                                if (!ids)
                                        goto oom;
                                snprintf(out->notice, sizeof(out->notice),
                                         "{\"account_id\":%s,"
                                         "\"updated_at\":\"%s\"%s%s%s}",
                                         ids, env->now_str, nps, health, band);
                                free(ids);
                        }
                        out->views_changed = 1;
                }
                st->views_day = env->today;
                st->settings_digest = env->digest;
                changed = 1;
        }
        out->changed = changed;
        out->next_timer_ms = npsd_step_next_timer(env, st);

        return 0;
oom:
        snprintf(errstr, errstr_size, "account %s: out of memory",
                 in->account_id);
        return -1;
}
