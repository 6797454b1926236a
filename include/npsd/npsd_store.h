/*
 * npsd_store — the Redis adapter: one connection, the Lua script of
 * src/lua/apply.lua, and one pipelined round trip per poll batch.
 *
 * Every state change runs inside that script, one call per account per batch,
 * so that dedupe, counting and the derived views change together (two npsd
 * instances never corrupt each other). hiredis 0.14 contexts are unusable
 * after an error: the store drops them and reconnects on the next call,
 * loading the script again (a NOSCRIPT reply cannot be recovered inside a
 * pipeline).
 */
#ifndef NPSD_STORE_H
#define NPSD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_event.h"
#include "npsd/npsd_themes.h"

typedef struct npsd_store_s npsd_store_t;

/* One response to count, with its theme bits (npsd_themes_match()). */
typedef struct npsd_store_response_s {
        const npsd_response_t *resp;
        uint64_t theme_bits;
        char digest[17]; /* of the raw payload, hex: tells a re-send of the
                          * same message from an event_id reused for another */
} npsd_store_response_t;

/* What the store says about one response. */
typedef struct npsd_store_result_s {
        int counted;          /* 1 counted now, 0 duplicate (already counted) */
        const char *snapshot; /* JSON record of the response as counted, or
                               * NULL (a duplicate older than replay.days) */
        size_t snapshot_len;
} npsd_store_result_t;

/* Creates a store for conf's Redis settings and tries to connect (a failed
 * first connection is not an error: every call reconnects). conf and themes
 * must outlive the store. The store reads conf at every round trip, so a
 * reload that changes conf in place (npsd_conf_apply_live()) reaches the
 * script's settings argument at the next batch. Must be destroyed with
 * npsd_store_destroy(). */
npsd_store_t *npsd_store_new(const npsd_conf_t *conf,
                             const npsd_themes_t *themes);
void npsd_store_destroy(npsd_store_t *store);

/* 1 while the last command reached Redis. */
int npsd_store_up(const npsd_store_t *store);

/* The Redis server's version (INFO server), "" until a connection told it.
 * Owned by the store; valid until the next call on it. */
const char *npsd_store_server_version(const npsd_store_t *store);

/* Replaces the lexicon theme names are taken from (a reloaded one; not
 * owned: it must outlive the store or the next call). Between round trips
 * only. */
void npsd_store_set_themes(npsd_store_t *store, const npsd_themes_t *themes);

/* Connects if needed and PINGs. Returns 0, or -1 with errstr. */
int npsd_store_ping(npsd_store_t *store, char *errstr, size_t errstr_size);

/* One poll batch's valid events, grouped by kind. results[i] answers
 * responses[i]. */
typedef struct npsd_store_batch_s {
        const npsd_account_t *const *accounts;
        size_t account_cnt;
        const npsd_store_response_t *responses;
        size_t resp_cnt;
        npsd_store_result_t *results;
        const npsd_usage_t *const *usage;
        size_t usage_cnt;
        const npsd_followup_t *const *followups;
        size_t followup_cnt;
} npsd_store_batch_t;

/* Applies one batch in one pipelined round trip, one script call per
 * account and kind: account context records first (in order; a record
 * older than the stored one is ignored), then responses, usage and
 * follow-ups. Cohort and theme views are derived later by
 * npsd_store_cohorts(). Snapshots stay valid until the next call on this
 * store. Returns 0, or -1 with errstr when Redis was unreachable or
 * refused: nothing is half-applied per account, and the whole call may be
 * repeated (every event is deduplicated). */
int npsd_store_apply(npsd_store_t *store, int64_t now_ms,
                     const npsd_store_batch_t *batch, char *errstr,
                     size_t errstr_size);

/* Alerts waiting in the outbox, as of the last apply or roll. */
size_t npsd_store_outbox_len(const npsd_store_t *store);

/* An alert waiting in the outbox (strings valid until the next call). */
typedef struct npsd_store_alert_s {
        const char *id;
        const char *payload;
        size_t len;
} npsd_store_alert_t;

/* Reads up to max alerts of the outbox into alerts[]. Returns the count or
 * -1 with errstr. */
int npsd_store_outbox_fetch(npsd_store_t *store, int max,
                            npsd_store_alert_t *alerts, char *errstr,
                            size_t errstr_size);

/* Removes alerts the broker acknowledged. Returns 0 or -1. */
int npsd_store_outbox_ack(npsd_store_t *store,
                          const npsd_store_alert_t *alerts, size_t cnt,
                          char *errstr, size_t errstr_size);

/* Timer work: rolls the windows of up to max accounts whose windows change
 * by now (SPEC §3: quiet accounts too), and acts on up to max follow-up
 * deadlines that passed (SPEC §5), raising their alerts. Returns the number
 * of due items handled, or -1 with errstr. */
int npsd_store_roll(npsd_store_t *store, int64_t now_ms, int max,
                    char *errstr, size_t errstr_size);

/* Timer work: recomputes up to max cohort and theme views that responses
 * changed since the last call (and, on a new day, all of them). Returns the
 * number still waiting, or -1 with errstr. */
int npsd_store_cohorts(npsd_store_t *store, int64_t now_ms, int max,
                       char *errstr, size_t errstr_size);

#endif
