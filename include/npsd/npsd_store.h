/*
 * npsd_store — the Redis adapter of the state engine (docs/design.md):
 * per poll batch one read and one write round trip per Redis node
 * (npsd_cluster: standalone or Redis Cluster).
 *
 * The rules run in npsd_step_account(), once per account per batch. Each
 * account is written in one guarded call (src/lua/write.lua "cas" on its
 * version), so that dedupe markers, the state record and the changed views
 * change together, and two npsd instances never corrupt each other: the
 * one whose version check fails reads the account again and recomputes
 * it. Effects on keys shared by many accounts go as global deltas, kept in
 * the account's slot and applied afterwards under fences. hiredis 0.14
 * contexts are unusable after an error: npsd_cluster drops them and
 * reconnects on the next call (write.lua is EVAL'd with every call, so
 * there is no script to load again).
 */
#ifndef NPSD_STORE_H
#define NPSD_STORE_H

#include <jansson.h>
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
        const json_t *snapshot_json; /* the same record as built, when the
                                      * response counted now (no parse
                                      * needed); NULL otherwise */
} npsd_store_result_t;

/* Creates a store for conf's Redis settings and tries to connect (a failed
 * first connection is not an error: every call reconnects). conf and themes
 * must outlive the store. The store reads conf at every round trip, so a
 * reload that changes conf in place (npsd_conf_apply_live()) reaches the
 * step's settings at the next batch. Must be destroyed with
 * npsd_store_destroy(). */
npsd_store_t *npsd_store_new(const npsd_conf_t *conf,
                             const npsd_themes_t *themes);
void npsd_store_destroy(npsd_store_t *store);

/* Account writes refused since creation because another writer had
 * changed the account since it was read (each was read and computed
 * again). */
uint64_t npsd_store_conflicts(const npsd_store_t *store);

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

/* Applies one batch: one read round trip, npsd_step_account() per account
 * (account context records first, in order, a record older than the stored
 * one ignored; then responses, usage and follow-ups), one write round trip
 * with one guarded call per account, the global deltas of earlier calls
 * and the suppression keys. Accounts that lost a version race are read and
 * computed again. Cohort, theme and owner views are refreshed later by
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

/* Timer work: applies waiting global deltas, then gives up to max accounts
 * due in the timer set a tick (npsd_step_account() with tick set): windows
 * roll (SPEC §3: quiet accounts too), follow-up deadlines that passed raise
 * their alerts (SPEC §5), the views are written whole; alerts left in
 * those accounts' outboxes are queued for publishing. Returns the number
 * of accounts ticked, or -1 with errstr. */
int npsd_store_roll(npsd_store_t *store, int64_t now_ms, int max,
                    char *errstr, size_t errstr_size);

/* Timer work: applies waiting global deltas, then refreshes up to max
 * cohort, theme and owner views that deltas marked since the last call
 * (and, on a new day, every cohort and theme view) from their buckets.
 * Returns the number still waiting, or -1 with errstr. */
/* Applies the global deltas committed by earlier round trips (cohort and
 * theme buckets, owner counters, timers, ranks) now. npsd_store_roll() and
 * npsd_store_cohorts() do it first; npsd calls it once more when it
 * stops. Returns 0, or -1 with errstr (the deltas stay in Redis, applied
 * by a later call or another instance). */
int npsd_store_flush(npsd_store_t *store, char *errstr, size_t errstr_size);

int npsd_store_cohorts(npsd_store_t *store, int64_t now_ms, int max,
                       char *errstr, size_t errstr_size);

#endif
