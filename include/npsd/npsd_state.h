/*
 * npsd_state — an account's state record (pure, no I/O): everything the
 * rules need to recompute the account's views and alerts, kept by the
 * state engine as one binary value (docs/design.md, field `b` of
 * <prefix>:{A}:st) next to its version. It replaced the day-bucket hash,
 * totals cache, meta, usage, loop and alert-state keys of the Lua engine
 * (src/lua/apply.lua, deleted).
 *
 * Encoding: a format byte, then the fields in a fixed order with
 * npsd_codec varints and strings. A record of an unknown format is refused
 * (npsd_state_decode() fails), never guessed at.
 */
#ifndef NPSD_STATE_H
#define NPSD_STATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_buckets.h"
#include "npsd/npsd_event.h"
#include "npsd/npsd_health.h"
#include "npsd/npsd_time.h"

#define NPSD_STATE_FORMAT 1
#define NPSD_STATE_OWNER_MAX 129
#define NPSD_STATE_ERR_DAYS 32 /* error counts kept per day, 31 days back */
#define NPSD_STATE_ALERT_TYPES 5

/* Stage status beyond met: the timer raised its alert (missed), or it
 * raised it and a follow-up then showed the stage was met on time after
 * all (cleared: the alert stands, the overdue state does not). */
typedef enum {
        NPSD_STAGE_OPEN = 0,
        NPSD_STAGE_MISSED,
        NPSD_STAGE_CLEARED,
} npsd_stage_status_t;

/* One detractor's closed loop (SPEC §5). */
typedef struct npsd_state_loop_s {
        char rid[NPSD_ID_MAX + 1];             /* the response event_id */
        char owner[NPSD_STATE_OWNER_MAX];      /* csm_owner at loop start */
        int64_t submitted_ms;
        char submitted_at[NPSD_TIME_BUFSZ];
        int64_t due_ms[3];                     /* acknowledge route close */
        char met_at[3][NPSD_TIME_BUFSZ];       /* "" = not met */
        uint8_t status[3];                     /* npsd_stage_status_t */
        uint8_t overdue, closed;
} npsd_state_loop_t;

/* A follow-up that arrived before its response. */
typedef struct npsd_state_pending_s {
        char rid[NPSD_ID_MAX + 1];
        char event_id[NPSD_ID_MAX + 1];
        uint8_t level; /* stages it meets: 1 acknowledged .. 3 closed */
        int64_t at_ms;
        char at[NPSD_TIME_BUFSZ];
} npsd_state_pending_t;

/* One earlier response, for the outputs' previous[]. The comment is owned
 * by the record (malloc'd), NULL when the response had none. */
typedef struct npsd_state_recent_s {
        int score;
        npsd_role_t role;
        char submitted_at[NPSD_TIME_BUFSZ];
        char *comment;
} npsd_state_recent_t;

typedef struct npsd_state_s {
        int64_t context_updated_ms; /* -1: no context record yet */
        int64_t last_response_ms;   /* -1: none */
        char last_response_at[NPSD_TIME_BUFSZ];
        int last_score;
        uint64_t settings_digest;   /* of the settings the views were written
                                     * under: another one rewrites them whole */

        npsd_buckets_t buckets;

        /* usage */
        int64_t last_activity_ms;   /* -1: never */
        char last_activity_at[NPSD_TIME_BUFSZ];
        int64_t tickets_opened, tickets_closed;
        int32_t err_day[NPSD_STATE_ERR_DAYS]; /* error counts per day */
        int64_t err_cnt[NPSD_STATE_ERR_DAYS];
        int err_n;

        /* closed loop */
        npsd_state_loop_t *loops;
        size_t loop_cnt, loop_size;
        npsd_state_pending_t *pending;
        size_t pending_cnt, pending_size;
        int64_t open_detractors, overdue_followups, loops_closed,
                loops_closed_on_time;

        /* edge-triggered alert state, and occurrences raised per type
         * (role_gap nps_drop health_band usage_drop followup_overdue): the
         * <n> of alert ids */
        uint8_t role_gap_on, nps_drop_on, usage_drop_on;
        npsd_band_t band;
        uint64_t alert_n[NPSD_STATE_ALERT_TYPES];

        npsd_state_recent_t recent[8];
        int recent_n;

        uint64_t gseq; /* the last global delta sequence handed out */

        /* what the public views were last written from: the day and
         * settings they hold (another day or digest rewrites them whole) */
        int32_t views_day;          /* NPSD_DAY_NONE: never written */
        /* distinct users and features (HyperLogLog counts) as of
         * counted_day, the health inputs of the summary */
        int32_t counted_day;        /* NPSD_DAY_NONE: never counted */
        int64_t active_users_7d, active_users_30d, active_users_prev_7d,
                features_30d;
        uint8_t loops_ever;         /* a loop was opened: the summary keeps
                                     * its counters, 0 included */
} npsd_state_t;

/* An empty record (a new account). npsd_state_free() releases it. */
void npsd_state_init(npsd_state_t *st);
void npsd_state_free(npsd_state_t *st);

/* Appends a loop / a pending follow-up (copied). Returns a pointer to the
 * stored element, or NULL when out of memory. */
npsd_state_loop_t *npsd_state_loop_add(npsd_state_t *st,
                                       const npsd_state_loop_t *lp);
npsd_state_pending_t *npsd_state_pending_add(npsd_state_t *st,
                                             const npsd_state_pending_t *p);
/* The loop of response rid, or NULL. */
npsd_state_loop_t *npsd_state_loop_find(npsd_state_t *st, const char *rid);
/* Removes loop i / pending follow-up i (order not kept). */
void npsd_state_loop_remove(npsd_state_t *st, size_t i);
void npsd_state_pending_remove(npsd_state_t *st, size_t i);

/* Puts a response first in the recent list, keeping at most keep (<= 8);
 * comment is copied. Returns 0, or -1 when out of memory. */
int npsd_state_recent_push(npsd_state_t *st, int score, npsd_role_t role,
                           const char *submitted_at, const char *comment,
                           int keep);

/* Adds errors to a day's count, dropping days before today - 31. Returns 0,
 * or -1 when more than NPSD_STATE_ERR_DAYS days would be kept. */
int npsd_state_errors_add(npsd_state_t *st, int32_t day, int64_t n,
                          int32_t today);
/* Errors over the 7 days ending today. */
int64_t npsd_state_errors_7d(const npsd_state_t *st, int32_t today);

/* Encodes the record. Returns the bytes needed; writes them when they fit
 * in size (call with size 0 to measure). */
size_t npsd_state_encode(const npsd_state_t *st, unsigned char *buf,
                         size_t size);

/* Replaces st (initialised) with a decoded record. Returns 0, or -1 with
 * errstr when the bytes are not a record of NPSD_STATE_FORMAT (st is then
 * empty). */
int npsd_state_decode(npsd_state_t *st, const unsigned char *buf,
                      size_t len, char *errstr, size_t errstr_size);

/* The record as JSON, for people and tests (npsctl account --state):
 * every field by name, loops with their stages. Returns a new reference,
 * NULL when out of memory. */
json_t *npsd_state_json(const npsd_state_t *st);

#endif
