/*
 * npsd_store_int.h — what the files of the Redis store share; not an API
 * (include/npsd/npsd_store.h is). The store, split by concept:
 *
 *   npsd_store.c          the store: connections, keys, the batch's accounts
 *                         and its slices' round trips (read, step, write),
 *                         replicas (WAIT)
 *   npsd_store_read.c     the read round trip: state records, contexts,
 *                         dedupe markers, snapshots of responses seen
 *                         before; usage HyperLogLogs and their counts
 *   npsd_store_deltas.c   global deltas: built with an account's write,
 *                         applied afterwards under fences
 *   npsd_store_account.c  the guarded write of one account (write.lua
 *                         "cas") and the script's loading
 *   npsd_store_alerts.c   alerts in the accounts' outboxes: handed to the
 *                         pipeline, acknowledged
 *   npsd_store_timers.c   timers: accounts whose deadlines, windows or
 *                         outboxes are due
 *   npsd_store_views.c    cohort, theme and owner views, refreshed from
 *                         their day buckets
 */
#ifndef NPSD_STORE_INT_H
#define NPSD_STORE_INT_H

#include "npsd/npsd_store.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "npsd/npsd_buckets.h"
#include "npsd/npsd_cluster.h"
#include "npsd/npsd_codec.h"
#include "npsd/npsd_fmt.h"
#include "npsd/npsd_log.h"
#include "npsd/npsd_nps.h"
#include "npsd/npsd_state.h"
#include "npsd/npsd_step.h"
#include "npsd/npsd_sums.h"
#include "npsd/npsd_time.h"
#include "npsd/npsd_view.h"
#include "npsd/npsd_write.h"

#define NPSD_DEDUPE_PERIOD_S (100 * 86400LL) /* one marker hash per account
                                               * per period */
#define NPSD_USAGE_SEEN_TTL_S (4 * 86400)     /* usage ids dedupe 3 days */
#define NPSD_HLL_TTL_S (32 * 86400)
#define NPSD_CONFLICT_ROUNDS 5
#define NPSD_OUTBOX_RETRY_MS 30000 /* an alert not acknowledged by then is
                                    * published again by the timer */
#define NPSD_KEY_MAX 512
#define NPSD_STORE_SLICE 384 /* accounts per read and write round trip */

/* Blocks that never move until reset: the routed pipeline borrows argv. */
typedef struct npsd_arena_block_s {
        struct npsd_arena_block_s *next;
        size_t used, size;
        unsigned char data[];
} npsd_arena_block_t;

typedef struct npsd_arena_s {
        npsd_arena_block_t *head, *cur;
} npsd_arena_t;

/* One account of a round trip: its inputs, where its replies are, its
 * state and what the step made of it. */
typedef struct npsd_store_acct_s {
        const char *id;
        unsigned slot;
        int tick;
        int refresh; /* its timer was set to 0: write its views whole */
        size_t r0, rn; /* responses: store->sresp[r0 .. r0 + rn) */
        size_t u0, un; /* usage: store->susage */
        size_t f0, fn; /* follow-ups: store->sfu */
        size_t c0, cn; /* contexts: store->sctx */
        int done;      /* committed (or nothing to commit) */

        long rx;       /* first read reply */
        long rx_pf[4]; /* PFCOUNTs by NPSD_STORE_COUNT_*, -1 none */
        long rx_outbox;

        char ver[24];  /* version read, "" when none */
        uint64_t gseq_read; /* gseq of the record read */
        /* the state and the step's output exist for the accounts of the
         * slice at work only (store->work): 3 KiB an account, a batch
         * holds thousands of accounts */
        npsd_state_t *st;
        npsd_kvs_t account;
        npsd_step_out_t *out;
        npsd_step_counts_t counts;
        int has_counts;
        unsigned pf_moved; /* bits 1 << NPSD_STORE_COUNT_*: a PFADD of this
                            * batch changed a register in that window (kept
                            * over a version race's rounds: the second
                            * round's PFADD moves nothing) */
        long call;     /* the guarded call, -1 none */
        unsigned char *delta; /* the global delta committed with it */
        size_t delta_len;
} npsd_store_acct_t;

/* What the slice at work holds per account besides its npsd_store_acct_t. */
typedef struct npsd_store_work_s {
        npsd_state_t st;
        npsd_step_out_t out;
} npsd_store_work_t;

/* The groups of a global delta (npsd_store_deltas.c). */
enum { NPSD_DG_G = 0, NPSD_DG_RANK_NPS, NPSD_DG_RANK_HEALTH,
       NPSD_DG_SUPPRESS, /* SET nps:suppress:<user> at PXAT expiry, each in
                          * its own slot behind a "later" guard */
       NPSD_DG__CNT };

/* A global delta known committed, waiting to be applied. */
typedef struct npsd_store_delta_s {
        char *account;
        uint64_t seq;
        unsigned char *blob;
        size_t len;
        /* per group, its fence read under the WATCH and passing
         * (npsd_store_watch_read()): {g}'s at seq - 1, a rank's below seq */
        int checked[NPSD_DG__CNT];
        long call[NPSD_DG__CNT]; /* per group: its groups call, -1 none */
        size_t gidx[NPSD_DG__CNT]; /* and its place among its groups */
} npsd_store_delta_t;

/* Accounts per groups call: one call of every delta of a batch would hold
 * Redis for a long time (a script runs alone), while more accounts per
 * call share more cohort fields, summed in the call (32 -> 256 took the
 * responses benchmark from 22.0 to 15.4 HINCRBY per input event; 128
 * keeps one call to a few milliseconds of Redis). */
#define NPSD_STORE_GROUPS_PER_CALL 128

/* How long the {g} fence stays out of the watch after a transaction found
 * a watched key changed (npsd_store_watch_append()). */
#define NPSD_STORE_FENCE_BACKOFF_MS 10000
/* The same for the {g} part in mode "all", whose increments npsd sums
 * before sending. A call's time in Redis grows with the distinct fields
 * its accounts increment: in the responses benchmark (responses spread
 * over 30 days) about 14 ms for 256 accounts, 17 ms for 1,024, with no
 * difference in Redis CPU per event beyond the machine's noise; 256 keeps
 * the time other clients wait behind one call short. */
#define NPSD_STORE_GROUPS_ALL_PER_CALL 256

/* An alert to publish; owned strings. */
typedef struct npsd_store_pending_alert_s {
        char *id, *account, *payload;
        size_t len;
} npsd_store_pending_alert_t;

struct npsd_store_s {
        const npsd_conf_t *conf;
        const npsd_themes_t *themes;
        npsd_cluster_t *cl;
        npsd_write_t *w;
        npsd_sums_t *sums;    /* a {g} call's summed increments */
        /* the last {g} call in mode "all" did not run (a delta found
         * applied or a gap): the next one goes group by group */
        int g_split;
        npsd_arena_t arena;   /* one slice's keys and argv */
        npsd_arena_t idarena; /* the round's account ids */
        int up;
        char server_version[64];

        /* the round trip's accounts */
        npsd_store_acct_t *accts;
        size_t acct_cnt, acct_size;
        size_t lo, hi; /* the slice of accts being read, stepped, written */
        size_t *hmap; /* open addressing: account index + 1, 0 empty */
        size_t hmap_size;

        npsd_step_response_t *sresp;
        size_t *sresp_batch; /* index into the batch's responses */
        size_t sresp_cnt, sresp_size, sresp_batch_size;
        npsd_step_usage_t *susage;
        size_t susage_cnt, susage_size;
        npsd_step_followup_t *sfu;
        size_t sfu_cnt, sfu_size;
        const npsd_account_t **sctx;
        size_t sctx_cnt, sctx_size;

        /* global deltas committed, not yet applied */
        npsd_store_delta_t *deltas;
        size_t delta_cnt, delta_size;
        /* (account, seq) whose gq entries can go */
        npsd_store_delta_t *cleanup;
        size_t cleanup_cnt, cleanup_size;

        npsd_store_pending_alert_t *alerts;
        size_t alert_cnt, alert_size;
        size_t alerts_handed; /* fetched, not yet acknowledged */

        int sha_ok; /* write.lua is loaded on every primary (EVALSHA) */
        /* standalone: the slice's state records are WATCHed on the
         * connection (npsd_store_watch_append()): watch_idx the WATCH's
         * reply in the read, watched when it answered OK, watch_conns the
         * router's connections opened and dropped then (a new connection
         * has no WATCH) */
        long watch_idx;
        int watched;
        uint64_t watch_conns;
        /* the fence hashes of the delta groups WATCHed too, and the HMGET
         * of the fields of deltas [0, fence_cnt) at fence_idx (per group
         * with a fence); not until fence_after (ms, wall clock) after a
         * transaction found a watched key changed */
        long fence_idx[NPSD_DG_SUPPRESS];
        size_t fence_cnt;
        int64_t fence_after;
        uint64_t conflicts; /* account writes that lost a version race */
        int refresh_all; /* a round trip failed: refresh every global view */
        /* replies taken from the router (the views' day buckets), whose
         * strings the next exec's commands borrow: freed by the next round */
        redisReply **held;
        size_t held_cnt;
        npsd_store_work_t *work; /* [work_cnt]: accts[lo..hi)'s st and out */
        size_t work_cnt, work_size;
        int recount_all; /* an apply failed (or this process just started):
                          * its PFADDs may have landed without the write
                          * they belonged to, and their retry moves no
                          * register; count every window until an apply
                          * succeeds */
        int *wait_node;  /* per write call, its WAIT's node (arena) */
        /* proof writes of this round trip (npsd_store_wait_append()): the
         * reply index of each and the node its WAIT went to */
        long *proof_idx; /* (arena) */
        int *proof_node; /* (arena) */
        size_t proof_cnt;
        int64_t dedupe_period;
        int64_t wall_ms; /* Redis's clock (the wall clock), not a pinned one:
                          * what expiries are measured against */
        npsd_step_env_t env;
};

/* ---- npsd_store.c: memory, keys, the round trip ------------------------- */

void *npsd_arena_alloc(npsd_arena_t *a, size_t len);
void npsd_arena_reset(npsd_arena_t *a);
const char *npsd_arena_strn(npsd_arena_t *a, const char *s, size_t len);
int npsd_store_grow(void **arr, size_t *size, size_t n, size_t elsz);

/* Keys and formatted words, in the arena (until the next slice); NULL when
 * a key would exceed NPSD_KEY_MAX or memory ran out. */
const char *npsd_store_akey(npsd_store_t *store, const char *account,
                            const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
const char *npsd_store_gkey(npsd_store_t *store, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
const char *npsd_store_fmt(npsd_store_t *store, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
unsigned npsd_store_slot(const char *key);
long npsd_store_cmd(npsd_store_t *store, int argc, const char **argv,
                    const size_t *lens);
/* The same, to the node of a slot (for commands without a key). */
long npsd_store_cmd_slot(npsd_store_t *store, unsigned slot, int argc,
                         const char **argv, const size_t *lens);
int npsd_store_exec(npsd_store_t *store, char *errstr, size_t errstr_size);
const redisReply *npsd_store_reply(const npsd_store_t *store, long idx);
int npsd_store_bad(char *errstr, size_t errstr_size, const char *what,
                   const redisReply *r);
int64_t npsd_store_int(const redisReply *r);

npsd_store_acct_t *npsd_store_acct(npsd_store_t *store, const char *id);
void npsd_store_round_begin(npsd_store_t *store);
void npsd_store_now(npsd_store_t *store, int64_t now_ms);
int npsd_store_work_bind(npsd_store_t *store);
int npsd_store_process(npsd_store_t *store, char *errstr,
                       size_t errstr_size);
int npsd_store_wait_append(npsd_store_t *store, int accounts);
int npsd_store_wait_check(npsd_store_t *store, char *errstr,
                          size_t errstr_size);
void npsd_store_delta_free(npsd_store_delta_t *d);
void npsd_store_alerts_drop(npsd_store_t *store, size_t n);

/* ---- npsd_store_read.c ---------------------------------------------------- */

int npsd_store_read_append(npsd_store_t *store, npsd_store_acct_t *a);
int npsd_store_read_parse(npsd_store_t *store, npsd_store_acct_t *a,
                          char *errstr, size_t errstr_size);
int npsd_store_dup_snapshots(npsd_store_t *store, npsd_store_acct_t *a,
                             char *errstr, size_t errstr_size);
int npsd_store_hll_add(npsd_store_t *store, char *errstr,
                       size_t errstr_size);
int npsd_store_counts(npsd_store_t *store, char *errstr, size_t errstr_size);

/* ---- npsd_store_deltas.c -------------------------------------------------- */

int npsd_store_delta_build(npsd_store_t *store, npsd_store_acct_t *a,
                           unsigned char **blob, size_t *len);
int npsd_store_delta_add(npsd_store_t *store, const char *account,
                         uint64_t seq, const void *blob, size_t len);
int npsd_store_deltas_append(npsd_store_t *store, char *errstr,
                             size_t errstr_size);
int npsd_store_deltas_result(npsd_store_t *store);
int npsd_store_fence_key(npsd_store_t *store, int g, char *key,
                         size_t size);
int npsd_store_cleanup_append(npsd_store_t *store, size_t *cnt);
void npsd_store_cleanup_done(npsd_store_t *store, size_t cnt);

/* ---- npsd_store_alerts.c -------------------------------------------------- */

/* Keeps a copy of an alert to publish (the pipeline fetches it). Returns 0,
 * or -1 out of memory (nothing kept). */
int npsd_store_alert_keep(npsd_store_t *store, const char *id,
                          const char *account, const char *payload,
                          size_t len);

/* ---- npsd_store_account.c ------------------------------------------------- */

int npsd_store_write_account(npsd_store_t *store, npsd_store_acct_t *a,
                             char *errstr, size_t errstr_size);
int npsd_store_timers_due(npsd_store_t *store);
void npsd_store_scripts(npsd_store_t *store);
int npsd_store_noscript(npsd_store_t *store, char *errstr,
                        size_t errstr_size);

/* ---- npsd_store_watch.c --------------------------------------------------- */

int npsd_store_watch_append(npsd_store_t *store, int round, int accounts);
void npsd_store_watch_read(npsd_store_t *store);
int npsd_store_watch_held(const npsd_store_t *store);
void npsd_store_watch_end(npsd_store_t *store, int conflict);

#endif
