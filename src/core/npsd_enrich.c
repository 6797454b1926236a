/*
 * npsd_enrich — priority, playbook, follow-up deadlines and the classified
 * output message of SPEC §6.
 *
 * The message is built only from the parsed response and the store's
 * snapshot of this response (account context, metrics and earlier responses
 * as of when it was counted), so that replaying a response re-publishes the
 * same message.
 */
#include "npsd/npsd_enrich.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_nps.h"
#include "npsd/npsd_time.h"

void npsd_enrich_conf_default(npsd_enrich_conf_t *conf) {
        conf->p1_renewal_days = 90;
        conf->p1_arr = 100000.0;
        conf->p1_segment = "enterprise";
        conf->p2_renewal_days = 90;
        conf->ack_ms = 48LL * 3600 * 1000;
        conf->route_ms = 7LL * NPSD_MS_PER_DAY;
        conf->close_ms = 30LL * NPSD_MS_PER_DAY;
}

/* A renewal already past (negative days) is not "within N days": the
 * account's context is stale and would otherwise make every detractor p1. */
static int npsd_renews_within(const npsd_account_facts_t *facts, int days) {
        return facts && facts->has_days_to_renewal &&
               facts->days_to_renewal >= 0 && facts->days_to_renewal <= days;
}

npsd_priority_t npsd_priority_of(npsd_category_t cat,
                                 const npsd_account_facts_t *facts,
                                 const npsd_enrich_conf_t *conf) {
        if (cat == NPSD_CAT_DETRACTOR) {
                if (npsd_renews_within(facts, conf->p1_renewal_days))
                        return NPSD_PRIORITY_P1;
                if (facts && facts->segment && conf->p1_segment &&
                    *conf->p1_segment &&
                    !strcmp(facts->segment, conf->p1_segment))
                        return NPSD_PRIORITY_P1;
                if (facts && facts->has_arr && facts->arr >= conf->p1_arr)
                        return NPSD_PRIORITY_P1;
                return NPSD_PRIORITY_P2;
        }
        if (cat == NPSD_CAT_PASSIVE &&
            npsd_renews_within(facts, conf->p2_renewal_days))
                return NPSD_PRIORITY_P2;
        return NPSD_PRIORITY_P3;
}

const char *npsd_priority_name(npsd_priority_t prio) {
        switch (prio) {
        case NPSD_PRIORITY_P1:
                return "p1";
        case NPSD_PRIORITY_P2:
                return "p2";
        default:
                return "p3";
        }
}

const char *npsd_playbook_of(npsd_category_t cat, npsd_priority_t prio) {
        switch (cat) {
        case NPSD_CAT_DETRACTOR:
                return prio == NPSD_PRIORITY_P1 ? "retention" : "recovery";
        case NPSD_CAT_PASSIVE:
                return "nudge";
        default:
                return "advocacy";
        }
}

/* The account hash holds strings; "" is how an absent field looks. Returns
 * the string value or NULL. */
static const char *npsd_acct_str(const json_t *acct, const char *field) {
        const json_t *v = acct ? json_object_get(acct, field) : NULL;
        const char *s;

        if (!json_is_string(v))
                return NULL;
        s = json_string_value(v);
        return *s ? s : NULL;
}

/* arr: a Redis hash string ("120000.5") or, leniently, a JSON number.
 * Returns 1 and *out when it is a finite number. */
static int npsd_acct_double(const json_t *acct, const char *field,
                            double *out) {
        const json_t *v = acct ? json_object_get(acct, field) : NULL;
        const char *s;
        char *end;
        double d;

        if (json_is_number(v)) {
                *out = json_number_value(v);
                return isfinite(*out);
        }
        if (!(s = npsd_acct_str(acct, field)))
                return 0;
        errno = 0;
        d = strtod(s, &end);
        if (end == s || *end || errno || !isfinite(d))
                return 0;
        *out = d;
        return 1;
}

/* seats: integral hash string ("40"), or a JSON integer. */
static int npsd_acct_int(const json_t *acct, const char *field,
                         json_int_t *out) {
        const json_t *v = acct ? json_object_get(acct, field) : NULL;
        const char *s;
        char *end;
        long long ll;

        if (json_is_integer(v)) {
                *out = json_integer_value(v);
                return 1;
        }
        if (!(s = npsd_acct_str(acct, field)))
                return 0;
        errno = 0;
        ll = strtoll(s, &end, 10);
        if (end == s || *end || errno)
                return 0;
        *out = (json_int_t)ll;
        return 1;
}

/* Sets key to a string, or to null when s is NULL. Returns 0 or -1. */
static int npsd_set_str_or_null(json_t *obj, const char *key, const char *s) {
        return json_object_set_new(obj, key,
                                   s ? json_string(s) : json_null());
}

static int npsd_set_time(json_t *obj, const char *key, int64_t ms) {
        char buf[NPSD_TIME_BUFSZ];

        return json_object_set_new(obj, key,
                                   json_string(npsd_time_format(ms, buf)));
}

/* Builds "account" from the snapshot's hash strings and fills *facts (whose
 * segment points into the snapshot) for the priority rules. */
static json_t *npsd_account_build(const json_t *acct, int32_t today,
                                  npsd_account_facts_t *facts) {
        static const char *strs[] = {"name", "segment", "plan"};
        json_t *o = json_object();
        const char *rd;
        json_int_t seats;
        int32_t rday;
        double arr;
        size_t i;
        int err = 0;

        memset(facts, 0, sizeof(*facts));
        if (!o)
                return NULL;

        for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
                err |= npsd_set_str_or_null(o, strs[i],
                                            npsd_acct_str(acct, strs[i]));
        facts->segment = npsd_acct_str(acct, "segment");

        if ((facts->has_arr = npsd_acct_double(acct, "arr", &arr))) {
                facts->arr = arr;
                err |= json_object_set_new(o, "arr", json_real(arr));
        } else
                err |= json_object_set_new(o, "arr", json_null());

        if (npsd_acct_int(acct, "seats", &seats))
                err |= json_object_set_new(o, "seats", json_integer(seats));
        else
                err |= json_object_set_new(o, "seats", json_null());

        rd = npsd_acct_str(acct, "renewal_date");
        if (rd && npsd_date_parse(rd, strlen(rd), &rday) == 0) {
                facts->has_days_to_renewal = 1;
                facts->days_to_renewal = (int)(rday - today);
                err |= json_object_set_new(o, "renewal_date", json_string(rd));
                err |= json_object_set_new(
                        o, "days_to_renewal",
                        json_integer(facts->days_to_renewal));
        } else {
                err |= json_object_set_new(o, "renewal_date", json_null());
                err |= json_object_set_new(o, "days_to_renewal", json_null());
        }

        err |= npsd_set_str_or_null(o, "lifecycle_stage",
                                    npsd_acct_str(acct, "lifecycle_stage"));
        err |= npsd_set_str_or_null(o, "csm_owner",
                                    npsd_acct_str(acct, "csm_owner"));
        if (err) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* A deep copy of snapshot member `key` when it has the wanted type, else a
 * new empty object/array. */
static json_t *npsd_snapshot_copy(const json_t *snapshot, const char *key,
                                  int want_array) {
        const json_t *v = snapshot ? json_object_get(snapshot, key) : NULL;

        if (want_array ? json_is_array(v) : json_is_object(v))
                return json_deep_copy(v);
        return want_array ? json_array() : json_object();
}

/* Whole-number arr values print as "120000.0" with json_real; a JSON
 * integer is friendlier to consumers when arr has no fraction. */
static void npsd_arr_normalise(json_t *account) {
        json_t *arr = json_object_get(account, "arr");
        double d;

        if (!json_is_real(arr))
                return;
        d = json_real_value(arr);
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
                json_object_set_new(account, "arr",
                                    json_integer((json_int_t)d));
}

/* The snapshot's metrics are one-decimal values, but a real stored with 17
 * significant digits reads back as 138.59999999999999. Real members are
 * rounded back to one decimal; with JSON_REAL_PRECISION(15) they then print
 * as "138.6", whatever precision the snapshot was written with. */
static void npsd_metrics_round(json_t *metrics) {
        const char *k;
        json_t *v;

        json_object_foreach(metrics, k, v) {
                if (json_is_real(v))
                        json_real_set(v, npsd_round1(json_real_value(v)));
        }
}

char *npsd_enrich_build(const npsd_response_t *resp, const json_t *snapshot,
                        const npsd_themes_t *themes, uint64_t theme_bits,
                        const npsd_enrich_conf_t *conf, int64_t now_ms,
                        size_t *lenp) {
        json_t *msg = NULL, *themes_arr = NULL, *account = NULL,
               *followup = NULL, *v;
        const json_t *acct, *pa;
        npsd_account_facts_t facts;
        npsd_priority_t prio;
        int64_t processed_at = now_ms;
        char *out = NULL;
        int err = 0, i;

        if (!(msg = json_object()))
                goto fail;

        pa = snapshot ? json_object_get(snapshot, "processed_at") : NULL;
        if (json_is_integer(pa))
                processed_at = (int64_t)json_integer_value(pa);
        else if (json_is_real(pa))
                processed_at = (int64_t)json_real_value(pa);

        err |= json_object_set_new(msg, "event_id", json_string(resp->event_id));
        err |= json_object_set_new(msg, "account_id",
                                   json_string(resp->account_id));
        err |= json_object_set_new(msg, "user_id", json_string(resp->user_id));
        err |= json_object_set_new(msg, "category",
                                   json_string(npsd_category_name(resp->category)));
        err |= json_object_set_new(msg, "score", json_integer(resp->score));
        err |= json_object_set_new(msg, "role",
                                   json_string(npsd_role_name(resp->role)));
        err |= json_object_set_new(msg, "survey_type",
                                   json_string(npsd_survey_name(resp->survey_type)));
        err |= npsd_set_str_or_null(msg, "trigger", resp->trigger);
        err |= npsd_set_str_or_null(msg, "channel", resp->channel);
        err |= npsd_set_str_or_null(msg, "language", resp->language);
        if (resp->comment)
                err |= json_object_set_new(
                        msg, "comment",
                        json_stringn(resp->comment, resp->comment_len));
        else
                err |= json_object_set_new(msg, "comment", json_null());
        if (err)
                goto fail;

        /* themes: names of the set bits, in lexicon order */
        if (!(themes_arr = json_array()))
                goto fail;
        for (i = 0; i < npsd_themes_count(themes) && i < 64; i++) {
                if (theme_bits & ((uint64_t)1 << i) &&
                    json_array_append_new(
                            themes_arr,
                            json_string(npsd_themes_name(themes, i))) == -1)
                        goto fail;
        }
        err |= json_object_set_new(msg, "themes", themes_arr);
        themes_arr = NULL; /* msg owns it (also on error) */

        if (json_is_object(resp->attributes))
                v = json_deep_copy(resp->attributes);
        else
                v = json_object();
        err |= json_object_set_new(msg, "attributes", v);

        err |= npsd_set_time(msg, "submitted_at", resp->submitted_at_ms);
        err |= npsd_set_time(msg, "processed_at", processed_at);
        if (err)
                goto fail;

        /* account facts first: priority depends on them */
        acct = snapshot ? json_object_get(snapshot, "account") : NULL;
        if (!json_is_object(acct))
                acct = NULL;
        if (!(account = npsd_account_build(acct, npsd_time_day(processed_at),
                                           &facts)))
                goto fail;
        npsd_arr_normalise(account);

        prio = npsd_priority_of(resp->category, &facts, conf);
        err |= json_object_set_new(msg, "priority",
                                   json_string(npsd_priority_name(prio)));
        err |= json_object_set_new(msg, "playbook",
                                   json_string(npsd_playbook_of(resp->category,
                                                                prio)));

        if (resp->category == NPSD_CAT_DETRACTOR) {
                if (!(followup = json_object()))
                        goto fail;
                err |= npsd_set_time(followup, "acknowledge_by",
                                     resp->submitted_at_ms + conf->ack_ms);
                err |= npsd_set_time(followup, "route_by",
                                     resp->submitted_at_ms + conf->route_ms);
                err |= npsd_set_time(followup, "close_by",
                                     resp->submitted_at_ms + conf->close_ms);
                err |= json_object_set_new(msg, "followup", followup);
                followup = NULL;
        }

        err |= json_object_set_new(msg, "account", account);
        account = NULL;
        if (!(v = npsd_snapshot_copy(snapshot, "metrics", 0)))
                goto fail;
        npsd_metrics_round(v);
        err |= json_object_set_new(msg, "metrics", v);
        err |= json_object_set_new(msg, "previous",
                                   npsd_snapshot_copy(snapshot, "previous", 1));
        if (err)
                goto fail;

        if (!(out = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(15))))
                goto fail;
        if (lenp)
                *lenp = strlen(out);
        json_decref(msg);
        return out;

fail:
        json_decref(followup);
        json_decref(account);
        json_decref(themes_arr);
        json_decref(msg);
        return NULL;
}
