/*
 * npsd_step — one account's state change for one poll batch or timer tick
 * (pure, no I/O): the rules of SPEC §3–§6 applied to the account's state
 * record (npsd_state), with everything the store must write and npsd must
 * publish as the result.
 *
 * The store reads the account (its state record, context hash, which of the
 * batch's events were seen before, the usage counts), calls
 * npsd_step_account() once, and writes what comes back in one guarded
 * call; on a version conflict it reads again and calls the step again with
 * the fresh state (the step has no effect outside *st and *out).
 *
 * Views are never read back: the step computes the views the old state
 * stands for and the new ones, and returns the fields that differ — or the
 * whole hash when the old views were written on another day or under other
 * settings (npsd_state_t.views_day, settings_digest).
 */
#ifndef NPSD_STEP_H
#define NPSD_STEP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_alert.h"
#include "npsd/npsd_buckets.h"
#include "npsd/npsd_config.h"
#include "npsd/npsd_event.h"
#include "npsd/npsd_health.h"
#include "npsd/npsd_loop.h"
#include "npsd/npsd_state.h"
#include "npsd/npsd_themes.h"
#include "npsd/npsd_time.h"
#include "npsd/npsd_view.h"

/* ---- strings the step owns --------------------------------------------- */

/* A name/value list of owned strings (an account context hash), of
 * npsd_config.h's npsd_kv_t pairs. */
typedef struct npsd_kvs_s {
        npsd_kv_t *v;
        size_t cnt, size;
} npsd_kvs_t;

void npsd_kvs_init(npsd_kvs_t *kvs);
void npsd_kvs_free(npsd_kvs_t *kvs);  /* empty and reusable afterwards */
void npsd_kvs_clear(npsd_kvs_t *kvs); /* keeps the memory */
/* Appends copies of name and value (len bytes). Returns 0 or -1 (OOM). */
int npsd_kvs_add(npsd_kvs_t *kvs, const char *name, const char *value,
                 size_t len);
/* The value of name, or NULL. */
const char *npsd_kvs_get(const npsd_kvs_t *kvs, const char *name);

/* The context hash of an account record (SPEC §2 account fields as the
 * hash stores them: strings, arr with 17 digits, renewal_date a date).
 * Returns 0 or -1 (OOM). */
int npsd_account_fields(const npsd_account_t *acc, npsd_kvs_t *out);

/* ---- settings of one batch --------------------------------------------- */

typedef struct npsd_step_env_s {
        const npsd_conf_t *conf;
        const npsd_themes_t *themes;
        npsd_periods_t periods;
        npsd_health_conf_t hc;
        npsd_alert_conf_t ac;
        npsd_loop_conf_t lc;
        uint64_t digest;  /* of the settings the views depend on */
        int64_t now_ms;
        int32_t today;
        char now_str[NPSD_TIME_BUFSZ];
} npsd_step_env_t;

/* Derives the step settings from conf at now_ms. conf and themes are
 * borrowed and must outlive env. */
void npsd_step_env_init(npsd_step_env_t *env, const npsd_conf_t *conf,
                        const npsd_themes_t *themes, int64_t now_ms);

/* ---- one account's inputs ---------------------------------------------- */

typedef struct npsd_step_response_s {
        const npsd_response_t *resp;  /* borrowed */
        uint64_t theme_bits;          /* npsd_themes_match() */
        const char *digest;           /* of the raw payload (16 hex) */
        int seen;                     /* in: its marker exists (duplicate) */
        int counted;                  /* out: counted by this step */
        char *snapshot;               /* out: the counted response's record
                                       * (JSON, see npsd_enrich_build()),
                                       * owned by the step result */
        size_t snapshot_len;
        json_t *snapshot_json;        /* out: the same record as built (a
                                       * reference owned likewise), so that
                                       * the output needs no parse of it */
} npsd_step_response_t;

typedef struct npsd_step_usage_s {
        const npsd_usage_t *ev;       /* borrowed */
        int seen;                     /* in: in its day's dedupe set */
        int counted;                  /* out */
} npsd_step_usage_t;

typedef enum {
        NPSD_FOLLOWUP_APPLIED = 0,
        NPSD_FOLLOWUP_DUPLICATE,
        NPSD_FOLLOWUP_NO_OPEN_LOOP, /* not a detractor, or its loop ended */
        NPSD_FOLLOWUP_PENDING,      /* its response has not arrived yet */
} npsd_followup_status_t;

typedef struct npsd_step_followup_s {
        const npsd_followup_t *ev;    /* borrowed */
        int seen;                     /* in: its marker exists */
        int response_seen;            /* in: the response's marker exists */
        npsd_followup_status_t status; /* out */
} npsd_step_followup_t;

/* Distinct users / features from the usage HyperLogLogs, counted after the
 * batch's additions. */
typedef struct npsd_step_counts_s {
        int64_t active_users_7d, active_users_30d, active_users_prev_7d,
                features_30d;
} npsd_step_counts_t;

typedef struct npsd_step_in_s {
        const char *account_id;
        const npsd_kvs_t *account;     /* the stored context hash */
        const npsd_account_t *const *contexts; /* batch order */
        size_t context_cnt;
        npsd_step_response_t *responses; /* batch order */
        size_t resp_cnt;
        npsd_step_usage_t *usage;
        size_t usage_cnt;
        npsd_step_followup_t *followups; /* batch order */
        size_t followup_cnt;
        const npsd_step_counts_t *counts; /* NULL: not counted this time */
        int refresh;                   /* write every view whole (an
                                        * operator's forced refresh) */
        int tick;                      /* a timer: roll windows, act on
                                        * deadlines that passed */
} npsd_step_in_t;

/* ---- what to write and publish ----------------------------------------- */

/* An edit of one of the account's view hashes: its fields to set are
 * out->fields[set0 .. set0 + set_cnt), to delete out->dels[del0 ..
 * del0 + del_cnt) (only what changed is kept: a whole hash holds about 60
 * fields, an edit a handful). */
typedef struct npsd_step_hash_s {
        char name[NPSD_FIELD_NAME_MAX]; /* key suffix: "w:30d", "summary" */
        int whole;      /* delete the key first, then set every field */
        size_t set0, set_cnt;
        size_t del0, del_cnt;
} npsd_step_hash_t;

typedef struct npsd_step_name_s {
        char name[NPSD_FIELD_NAME_MAX];
} npsd_step_name_t;

typedef struct npsd_step_alert_s {
        char id[NPSD_ID_MAX * 2 + 64]; /* <type>:<account>:<n>:<now_ms> */
        char *payload;                 /* the alert message (JSON), owned */
        size_t len;
        char *log;                     /* the same without account{},
                                        * packed (npsd_pack.h), for the
                                        * account's alert_log; owned */
        size_t log_len;
        npsd_alert_type_t type;
} npsd_step_alert_t;

/* One unit added to a cohort's or theme's day bucket. */
typedef struct npsd_step_cohort_s {
        char name[NPSD_SHORT_MAX * 2 + 8]; /* "<dimension>:<value>" */
        int32_t day;
        unsigned slot;
} npsd_step_cohort_t;

typedef struct npsd_step_theme_s {
        npsd_category_t cat;
        int32_t day;
        int theme; /* index into the lexicon */
} npsd_step_theme_t;

/* A counter move in nps:csm:<owner>. */
typedef struct npsd_step_csm_s {
        char owner[NPSD_STATE_OWNER_MAX];
        char field[24];
        int64_t by;
} npsd_step_csm_t;

typedef struct npsd_step_suppress_s {
        const char *user_id;            /* borrowed from the response */
        char at[NPSD_TIME_BUFSZ];
        int64_t ttl_s;
} npsd_step_suppress_t;

typedef struct npsd_step_out_s {
        int changed;          /* the state record changed: write it */
        int views_changed;    /* a view changed: announce it */

        int account_replaced; /* a context record applied: `account` is the
                               * whole new context hash */
        npsd_kvs_t account;
        char old_owner[NPSD_STATE_OWNER_MAX]; /* csm owner before and after */
        char new_owner[NPSD_STATE_OWNER_MAX];

        npsd_step_hash_t hash[NPSD_WINDOWS_MAX + 2]; /* windows, summary,
                                                      * alerts */
        size_t hash_cnt;
        npsd_field_t *fields;     /* the edits' fields to set */
        size_t field_cnt, field_size;
        npsd_step_name_t *dels;   /* the edits' fields to delete */
        size_t del_cnt, del_size;

        int rank_nps_has, rank_health_has; /* 1 set the score, 0 remove */
        double rank_nps;
        int rank_health;
        int ranks_changed;

        char notice[512];     /* nps:events message, "" when none */

        npsd_step_alert_t *alerts;
        size_t alert_cnt, alert_size;

        npsd_step_cohort_t *cohorts;
        size_t cohort_cnt, cohort_size;
        npsd_step_theme_t *themes;
        size_t theme_cnt, theme_size;
        npsd_step_csm_t *csm;
        size_t csm_cnt, csm_size;
        npsd_step_suppress_t *suppress;
        size_t suppress_cnt, suppress_size;

        int64_t next_timer_ms; /* when the account needs the timer next; -1
                                * none */
} npsd_step_out_t;

void npsd_step_out_init(npsd_step_out_t *out);
/* Frees what the result owns (alerts, snapshots are the caller's through
 * npsd_step_response_t and freed by npsd_step_responses_free()). The
 * result is empty and reusable afterwards. */
void npsd_step_out_free(npsd_step_out_t *out);
void npsd_step_responses_free(npsd_step_response_t *responses, size_t cnt);

/* The value hash edit h sets field name to, or NULL. */
const char *npsd_step_hash_get(const npsd_step_out_t *out,
                               const npsd_step_hash_t *h, const char *name);

/* Applies one account's inputs to *st (decoded, or npsd_state_init()'d for
 * a new account) and fills *out (initialised by npsd_step_out_init()).
 * Returns 0, or -1 with errstr when memory ran out (then *st and *out are
 * undefined: free both and discard the account's work). */
int npsd_step_account(const npsd_step_env_t *env, const npsd_step_in_t *in,
                      npsd_state_t *st, npsd_step_out_t *out, char *errstr,
                      size_t errstr_size);

/* The summary hash of a state as of env's day (all fields npsd writes:
 * metrics, usage, loop counters, last response and activity; not
 * updated_at). Exposed for npsctl and tests. Returns 0 or -1. */
int npsd_step_summary(const npsd_step_env_t *env, const npsd_state_t *st,
                      const npsd_kvs_t *account, npsd_fields_t *out);

/* The cohorts a response counts in, as of the account's context (SPEC §7:
 * all:all, segment, plan, lifecycle_stage, language, channel, survey_type,
 * role, and the configured attributes). Returns how many were written
 * (at most max). */
size_t npsd_step_cohort_names(const npsd_conf_t *conf,
                              const npsd_response_t *r,
                              const npsd_kvs_t *account,
                              char names[][NPSD_SHORT_MAX * 2 + 8],
                              size_t max);

#endif
