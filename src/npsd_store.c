/*
 * npsd_store — the Redis adapter of the state engine (see
 * include/npsd/npsd_store.h and docs/design.md).
 *
 * One poll batch costs one read and one write round trip per Redis node:
 *
 *   read   per account: its state record and version, its context hash,
 *          its global deltas not yet known applied, the dedupe markers of
 *          the batch's events, the snapshots of responses seen before, the
 *          usage HyperLogLog additions and counts;
 *   step   npsd_step_account() per account (the core: every rule);
 *   write  per account one guarded call (write.lua "cas" on the version
 *          read) with the new record, markers and changed view fields; the
 *          global deltas committed by earlier round trips, fenced per
 *          account (write.lua "groups"); the suppression keys.
 *
 * A version conflict (another instance wrote the account since it was
 * read) re-reads and recomputes that account only. Global deltas are kept
 * in the account's own slot (<prefix>:{A}:gq) by the same guarded call
 * that commits the state, and applied afterwards under a fence per account
 * and global slot, so a crash between the two loses nothing and a repeat
 * counts nothing twice.
 */
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

/* ---- stable memory for one round trip's words --------------------------- */

/* Blocks that never move until reset: the routed pipeline borrows argv. */
typedef struct npsd_arena_block_s {
        struct npsd_arena_block_s *next;
        size_t used, size;
        unsigned char data[];
} npsd_arena_block_t;

typedef struct npsd_arena_s {
        npsd_arena_block_t *head, *cur;
} npsd_arena_t;

static void *npsd_arena_alloc(npsd_arena_t *a, size_t len) {
        npsd_arena_block_t *b = a->cur;

        len = (len + 7) & ~(size_t)7;
        while (b && b->used + len > b->size)
                b = b->next;
        if (!b) {
                size_t size = len > 65536 ? len : 65536;
                if (!(b = malloc(sizeof(*b) + size)))
                        return NULL;
                b->size = size;
                b->used = 0;
                b->next = a->head;
                a->head = b;
        }
        a->cur = b;
        b->used += len;
        return b->data + b->used - len;
}

static void npsd_arena_reset(npsd_arena_t *a) {
        for (npsd_arena_block_t *b = a->head; b; b = b->next)
                b->used = 0;
        a->cur = a->head;
}

static void npsd_arena_free(npsd_arena_t *a) {
        while (a->head) {
                npsd_arena_block_t *n = a->head->next;
                free(a->head);
                a->head = n;
        }
        a->cur = NULL;
}

static const char *npsd_arena_strn(npsd_arena_t *a, const char *s,
                                   size_t len) {
        char *p = npsd_arena_alloc(a, len + 1);

        if (!p)
                return NULL;
        memcpy(p, s, len);
        p[len] = '\0';
        return p;
}

/* ---- the store ----------------------------------------------------------- */

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

/* A global delta known committed, waiting to be applied. */
typedef struct npsd_store_delta_s {
        char *account;
        uint64_t seq;
        unsigned char *blob;
        size_t len;
        long call[4];    /* per group kind: its groups call, -1 none */
        size_t gidx[4];  /* and its place among that call's groups */
} npsd_store_delta_t;

/* Accounts per groups call: one call of every delta of a batch would hold
 * Redis for a long time (a script runs alone), while more accounts per
 * call share more cohort fields, summed in the call (32 -> 256 took the
 * responses benchmark from 22.0 to 15.4 HINCRBY per input event; 128
 * keeps one call to a few milliseconds of Redis). */
#define NPSD_STORE_GROUPS_PER_CALL 128
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
        uint64_t conflicts; /* account writes that lost a version race */
        int refresh_all; /* a round trip failed: refresh every global view */
        npsd_store_work_t *work; /* [work_cnt]: accts[lo..hi)'s st and out */
        size_t work_cnt, work_size;
        int recount_all; /* an apply failed (or this process just started):
                          * its PFADDs may have landed without the write
                          * they belonged to, and their retry moves no
                          * register; count every window until an apply
                          * succeeds */
        int *wait_node;  /* per write call, its WAIT's node (arena) */
        int64_t dedupe_period;
        int64_t wall_ms; /* Redis's clock (the wall clock), not a pinned one:
                          * what expiries are measured against */
        npsd_step_env_t env;
};

static int npsd_store_grow(void **arr, size_t *size, size_t n, size_t elsz) {
        size_t ns;
        void *p;

        if (n <= *size)
                return 0;
        ns = *size ? *size : 16;
        while (ns < n)
                ns *= 2;
        if (!(p = realloc(*arr, ns * elsz)))
                return -1;
        *arr = p;
        *size = ns;
        return 0;
}

static npsd_cluster_mode_t npsd_store_mode(const char *s) {
        if (s && !strcmp(s, "on"))
                return NPSD_CLUSTER_MODE_ON;
        if (s && !strcmp(s, "off"))
                return NPSD_CLUSTER_MODE_OFF;
        return NPSD_CLUSTER_MODE_AUTO;
}

npsd_store_t *npsd_store_new(const npsd_conf_t *conf,
                             const npsd_themes_t *themes) {
        npsd_store_t *store = calloc(1, sizeof(*store));
        npsd_cluster_conf_t cc;
        char errstr[256];

        if (!store)
                return NULL;
        store->conf = conf;
        store->themes = themes;
        /* the batch a crashed process left may have added its users */
        store->recount_all = 1;
        memset(&cc, 0, sizeof(cc));
        cc.host = conf->redis_host;
        cc.port = conf->redis_port;
        cc.nodes = conf->redis_nodes ? conf->redis_nodes : "";
        cc.user = conf->redis_user;
        cc.password = conf->redis_password;
        cc.db = conf->redis_db;
        cc.timeout_ms = conf->redis_timeout_ms;
        cc.mode = npsd_store_mode(conf->redis_cluster);
        if (!(store->cl = npsd_cluster_new(&cc, errstr, sizeof(errstr)))) {
                npsd_error("msg=\"redis settings\" error=\"%s\"", errstr);
                free(store);
                return NULL;
        }
        if (!(store->w = npsd_write_new()) ||
            !(store->sums = npsd_sums_new())) {
                npsd_write_destroy(store->w);
                npsd_cluster_destroy(store->cl);
                free(store);
                return NULL;
        }
        return store;
}

/* Gives accts[lo..hi) a state and a step output each, empty. Returns 0, or
 * -1 out of memory. */
static int npsd_store_work_bind(npsd_store_t *store) {
        size_t n = store->hi - store->lo;

        if (npsd_store_grow((void **)&store->work, &store->work_size, n,
                            sizeof(*store->work)))
                return -1;
        for (size_t k = 0; k < n; k++) {
                npsd_store_acct_t *a = &store->accts[store->lo + k];
                npsd_state_init(&store->work[k].st);
                npsd_step_out_init(&store->work[k].out);
                a->st = &store->work[k].st;
                a->out = &store->work[k].out;
        }
        store->work_cnt = n;
        return 0;
}

/* Frees what npsd_store_work_bind() gave accts[lo..hi). */
static void npsd_store_work_release(npsd_store_t *store) {
        for (size_t k = 0; k < store->work_cnt; k++) {
                npsd_store_acct_t *a = &store->accts[store->lo + k];
                npsd_state_free(&store->work[k].st);
                npsd_step_out_free(&store->work[k].out);
                a->st = NULL;
                a->out = NULL;
        }
        store->work_cnt = 0;
}

static void npsd_store_accts_clear(npsd_store_t *store) {
        npsd_store_work_release(store);
        for (size_t i = 0; i < store->acct_cnt; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                npsd_kvs_free(&a->account);
                free(a->delta);
        }
        store->acct_cnt = 0;
        npsd_step_responses_free(store->sresp, store->sresp_cnt);
        store->sresp_cnt = store->susage_cnt = store->sfu_cnt =
                store->sctx_cnt = 0;
}

static void npsd_store_delta_free(npsd_store_delta_t *d) {
        free(d->account);
        free(d->blob);
}

static void npsd_store_alerts_drop(npsd_store_t *store, size_t n) {
        for (size_t i = 0; i < n && i < store->alert_cnt; i++) {
                free(store->alerts[i].id);
                free(store->alerts[i].account);
                free(store->alerts[i].payload);
        }
        if (n > store->alert_cnt)
                n = store->alert_cnt;
        if (!n)
                return;
        memmove(store->alerts, store->alerts + n,
                (store->alert_cnt - n) * sizeof(*store->alerts));
        store->alert_cnt -= n;
}

void npsd_store_destroy(npsd_store_t *store) {
        if (!store)
                return;
        npsd_store_accts_clear(store);
        for (size_t i = 0; i < store->delta_cnt; i++)
                npsd_store_delta_free(&store->deltas[i]);
        for (size_t i = 0; i < store->cleanup_cnt; i++)
                npsd_store_delta_free(&store->cleanup[i]);
        npsd_store_alerts_drop(store, store->alert_cnt);
        free(store->alerts);
        free(store->deltas);
        free(store->cleanup);
        free(store->accts);
        free(store->work);
        free(store->hmap);
        free(store->sresp);
        free(store->sresp_batch);
        free(store->susage);
        free(store->sfu);
        free(store->sctx);
        npsd_arena_free(&store->arena);
        npsd_arena_free(&store->idarena);
        npsd_write_destroy(store->w);
        npsd_sums_destroy(store->sums);
        npsd_cluster_destroy(store->cl);
        free(store);
}

uint64_t npsd_store_conflicts(const npsd_store_t *store) {
        return store->conflicts;
}

int npsd_store_up(const npsd_store_t *store) {
        return store->up;
}

const char *npsd_store_server_version(const npsd_store_t *store) {
        return store->server_version;
}

void npsd_store_set_themes(npsd_store_t *store, const npsd_themes_t *themes) {
        store->themes = themes;
}

/* Runs the pipeline, keeping `up` and logging the transitions. */
static int npsd_store_exec(npsd_store_t *store, char *errstr,
                           size_t errstr_size) {
        if (npsd_cluster_exec(store->cl, errstr, errstr_size) == -1) {
                if (store->up)
                        npsd_warn("msg=\"redis unreachable\" error=\"%s\"",
                                  errstr);
                store->up = 0;
                /* a view written just before may be lost with its node
                 * (a failover), its name already taken off the dirty
                 * set: every view is refreshed once Redis is back */
                store->refresh_all = 1;
                return -1;
        }
        if (!store->up)
                npsd_info("msg=\"redis connected\" host=%s port=%d "
                          "cluster=%s",
                          store->conf->redis_host, store->conf->redis_port,
                          npsd_cluster_enabled(store->cl) ? "on" : "off");
        store->up = 1;
        return 0;
}

static const redisReply *npsd_store_reply(const npsd_store_t *store,
                                          long idx) {
        return idx < 0 ? NULL : npsd_cluster_reply(store->cl, idx);
}

int npsd_store_ping(npsd_store_t *store, char *errstr, size_t errstr_size) {
        const char *argv[2] = {"INFO", "server"};
        const redisReply *r;
        const char *v;
        long idx;

        npsd_cluster_begin(store->cl);
        if ((idx = npsd_cluster_append(store->cl, 0, 2, argv, NULL)) < 0) {
                snprintf(errstr, errstr_size, "redis: out of memory");
                return -1;
        }
        if (npsd_store_exec(store, errstr, errstr_size) == -1)
                return -1;
        r = npsd_store_reply(store, idx);
        if (r && r->type == REDIS_REPLY_STRING &&
            (v = strstr(r->str, "redis_version:")))
                sscanf(v + 14, "%63[^\r\n]", store->server_version);
        return 0;
}

/* ---- keys ---------------------------------------------------------------- */

/* head then the formatted rest, copied into the arena; NULL when it does
 * not fit a key or memory ran out. */
static const char *npsd_store_vfmt(npsd_store_t *store, const char *head,
                                   const char *fmt, va_list ap) {
        char buf[NPSD_KEY_MAX];
        int n = snprintf(buf, sizeof(buf), "%s", head);

        if (n < 0 || n >= (int)sizeof(buf))
                return NULL;
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
        if (n >= (int)sizeof(buf))
                return NULL;
        return npsd_arena_strn(&store->arena, buf, (size_t)n);
}

/* <prefix>:{<account>}:<suffix> into the arena. */
static const char *npsd_store_akey(npsd_store_t *store, const char *account,
                                   const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static const char *npsd_store_akey(npsd_store_t *store, const char *account,
                                   const char *fmt, ...) {
        char head[NPSD_KEY_MAX];
        const char *key;
        va_list ap;

        if (snprintf(head, sizeof(head), "%s:{%s}:",
                     store->conf->redis_prefix, account) >= (int)sizeof(head))
                return NULL;
        va_start(ap, fmt);
        key = npsd_store_vfmt(store, head, fmt, ap);
        va_end(ap);
        return key;
}

/* <prefix>:<suffix> (global keys) into the arena. */
static const char *npsd_store_gkey(npsd_store_t *store, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static const char *npsd_store_gkey(npsd_store_t *store, const char *fmt,
                                   ...) {
        char head[NPSD_KEY_MAX];
        const char *key;
        va_list ap;

        snprintf(head, sizeof(head), "%s:", store->conf->redis_prefix);
        va_start(ap, fmt);
        key = npsd_store_vfmt(store, head, fmt, ap);
        va_end(ap);
        return key;
}

static unsigned npsd_store_slot(const char *key) {
        return npsd_cluster_keyslot(key, strlen(key));
}

/* Appends a plain command; the words must live in the arena (or longer).
 * lens NULL: NUL-terminated words. */
static long npsd_store_cmd(npsd_store_t *store, int argc, const char **argv,
                           const size_t *lens) {
        const char **av = npsd_arena_alloc(&store->arena,
                                           sizeof(*av) * (size_t)argc);
        size_t *al = npsd_arena_alloc(&store->arena,
                                      sizeof(*al) * (size_t)argc);

        if (!av || !al)
                return -1;
        for (int i = 0; i < argc; i++) {
                av[i] = argv[i];
                al[i] = lens ? lens[i] : strlen(argv[i]);
        }
        return npsd_cluster_append(store->cl, npsd_store_slot(argv[1]), argc,
                                   av, al);
}

/* ---- the round trip's accounts -------------------------------------------- */

static uint64_t npsd_store_hash(const char *s) {
        uint64_t h = 1469598103934665603ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

/* The account's entry, added when new. NULL when out of memory. */
static npsd_store_acct_t *npsd_store_acct(npsd_store_t *store,
                                          const char *id) {
        size_t mask, i;
        npsd_store_acct_t *a;

        if (store->acct_cnt * 2 + 2 > store->hmap_size) {
                size_t ns = store->hmap_size ? store->hmap_size * 2 : 256;
                size_t *m = calloc(ns, sizeof(*m));
                if (!m)
                        return NULL;
                free(store->hmap);
                store->hmap = m;
                store->hmap_size = ns;
                for (size_t k = 0; k < store->acct_cnt; k++) {
                        size_t j = npsd_store_hash(store->accts[k].id) &
                                   (ns - 1);
                        while (m[j])
                                j = (j + 1) & (ns - 1);
                        m[j] = k + 1;
                }
        }
        mask = store->hmap_size - 1;
        for (i = npsd_store_hash(id) & mask; store->hmap[i];
             i = (i + 1) & mask)
                if (!strcmp(store->accts[store->hmap[i] - 1].id, id))
                        return &store->accts[store->hmap[i] - 1];
        if (npsd_store_grow((void **)&store->accts, &store->acct_size,
                            store->acct_cnt + 1, sizeof(*store->accts)))
                return NULL;
        a = &store->accts[store->acct_cnt];
        memset(a, 0, sizeof(*a));
        if (!(a->id = npsd_arena_strn(&store->idarena, id, strlen(id))))
                return NULL;
        a->call = -1;
        for (int k = 0; k < 4; k++)
                a->rx_pf[k] = -1;
        a->rx_outbox = -1;
        npsd_kvs_init(&a->account);
        store->hmap[i] = ++store->acct_cnt;
        return a;
}

static void npsd_store_round_begin(npsd_store_t *store) {
        npsd_store_accts_clear(store);
        if (store->hmap)
                memset(store->hmap, 0, store->hmap_size * sizeof(*store->hmap));
        npsd_arena_reset(&store->arena);
        npsd_arena_reset(&store->idarena);
        npsd_write_reset(store->w);
        store->lo = store->hi = 0;
}

static const char *npsd_store_resp_acct(const void *ev) {
        return ((const npsd_store_response_t *)ev)->resp->account_id;
}

/* Puts a batch's events in per-account slices: each kind in batch order
 * within one account. */
static int npsd_store_gather(npsd_store_t *store,
                             const npsd_store_batch_t *b) {
        /* two passes per kind: count per account, then place */

        for (size_t i = 0; i < b->account_cnt; i++)
                if (!npsd_store_acct(store, b->accounts[i]->account_id))
                        return -1;
        for (size_t i = 0; i < b->resp_cnt; i++)
                if (!npsd_store_acct(store, b->responses[i].resp->account_id))
                        return -1;
        for (size_t i = 0; i < b->usage_cnt; i++)
                if (!npsd_store_acct(store, b->usage[i]->account_id))
                        return -1;
        for (size_t i = 0; i < b->followup_cnt; i++)
                if (!npsd_store_acct(store, b->followups[i]->account_id))
                        return -1;
        if (npsd_store_grow((void **)&store->sresp, &store->sresp_size,
                            b->resp_cnt, sizeof(*store->sresp)) ||
            npsd_store_grow((void **)&store->sresp_batch,
                            &store->sresp_batch_size,
                            b->resp_cnt, sizeof(*store->sresp_batch)) ||
            npsd_store_grow((void **)&store->susage, &store->susage_size,
                            b->usage_cnt, sizeof(*store->susage)) ||
            npsd_store_grow((void **)&store->sfu, &store->sfu_size,
                            b->followup_cnt, sizeof(*store->sfu)) ||
            npsd_store_grow((void **)&store->sctx, &store->sctx_size,
                            b->account_cnt, sizeof(*store->sctx)))
                return -1;
        /* counts */
        for (size_t i = 0; i < b->account_cnt; i++)
                npsd_store_acct(store, b->accounts[i]->account_id)->cn++;
        for (size_t i = 0; i < b->resp_cnt; i++)
                npsd_store_acct(store, b->responses[i].resp->account_id)->rn++;
        for (size_t i = 0; i < b->usage_cnt; i++)
                npsd_store_acct(store, b->usage[i]->account_id)->un++;
        for (size_t i = 0; i < b->followup_cnt; i++)
                npsd_store_acct(store, b->followups[i]->account_id)->fn++;
        /* offsets */
        {
                size_t r = 0, u = 0, f = 0, c = 0;
                for (size_t i = 0; i < store->acct_cnt; i++) {
                        npsd_store_acct_t *a = &store->accts[i];
                        a->r0 = r;
                        a->u0 = u;
                        a->f0 = f;
                        a->c0 = c;
                        r += a->rn;
                        u += a->un;
                        f += a->fn;
                        c += a->cn;
                        a->rn = a->un = a->fn = a->cn = 0;
                }
        }
        /* place */
        for (size_t i = 0; i < b->account_cnt; i++) {
                npsd_store_acct_t *a =
                        npsd_store_acct(store, b->accounts[i]->account_id);
                store->sctx[a->c0 + a->cn++] = b->accounts[i];
        }
        for (size_t i = 0; i < b->resp_cnt; i++) {
                npsd_store_acct_t *a = npsd_store_acct(
                        store, npsd_store_resp_acct(&b->responses[i]));
                npsd_step_response_t *sr = &store->sresp[a->r0 + a->rn];
                memset(sr, 0, sizeof(*sr));
                sr->resp = b->responses[i].resp;
                sr->theme_bits = b->responses[i].theme_bits;
                sr->digest = b->responses[i].digest;
                store->sresp_batch[a->r0 + a->rn++] = i;
        }
        for (size_t i = 0; i < b->usage_cnt; i++) {
                npsd_store_acct_t *a =
                        npsd_store_acct(store, b->usage[i]->account_id);
                npsd_step_usage_t *su = &store->susage[a->u0 + a->un++];
                memset(su, 0, sizeof(*su));
                su->ev = b->usage[i];
        }
        for (size_t i = 0; i < b->followup_cnt; i++) {
                npsd_store_acct_t *a =
                        npsd_store_acct(store, b->followups[i]->account_id);
                npsd_step_followup_t *sf = &store->sfu[a->f0 + a->fn++];
                memset(sf, 0, sizeof(*sf));
                sf->ev = b->followups[i];
        }
        store->sresp_cnt = b->resp_cnt;
        store->susage_cnt = b->usage_cnt;
        store->sfu_cnt = b->followup_cnt;
        store->sctx_cnt = b->account_cnt;
        for (size_t i = 0; i < store->acct_cnt; i++)
                store->accts[i].slot = npsd_store_slot(
                        npsd_store_akey(store, store->accts[i].id, "st"));
        return 0;
}

/* ---- read round trip ---------------------------------------------------- */

/* Dedupe marker hashes are one per 100-day period of the wall clock (a
 * clock pinned for a backfill must not expire them): the current period,
 * the one after (another instance's clock may be ahead) and the ones
 * before that can still hold a marker younger than dedupe.days. */
static int npsd_store_periods(const npsd_store_t *store, int64_t *first) {
        int back = (int)((store->conf->dedupe_days * 86400LL +
                          NPSD_DEDUPE_PERIOD_S - 1) /
                         NPSD_DEDUPE_PERIOD_S);

        *first = store->dedupe_period - back;
        return back + 2;
}

/* HMGET <kind>p:<period> ids of every period, for the ids of get(). */
typedef const char *(*npsd_store_id_fn)(const npsd_store_t *store,
                                        const npsd_store_acct_t *a, size_t i);

static const char *npsd_store_resp_id(const npsd_store_t *store,
                                      const npsd_store_acct_t *a, size_t i) {
        return store->sresp[a->r0 + i].resp->event_id;
}

static const char *npsd_store_fu_id(const npsd_store_t *store,
                                    const npsd_store_acct_t *a, size_t i) {
        return store->sfu[a->f0 + i].ev->event_id;
}

static const char *npsd_store_fu_rid(const npsd_store_t *store,
                                     const npsd_store_acct_t *a, size_t i) {
        return store->sfu[a->f0 + i].ev->response_event_id;
}

static int npsd_store_read_markers(npsd_store_t *store,
                                   const npsd_store_acct_t *a,
                                   const char *kind, size_t n,
                                   npsd_store_id_fn get) {
        int64_t first;
        int np = npsd_store_periods(store, &first);
        const char **argv = npsd_arena_alloc(&store->arena,
                                             sizeof(*argv) * (n + 2));

        if (!argv)
                return -1;
        argv[0] = "HMGET";
        for (size_t i = 0; i < n; i++)
                argv[2 + i] = get(store, a, i);
        for (int p = 0; p < np; p++) {
                if (!(argv[1] = npsd_store_akey(store, a->id, "%sp:%" PRId64,
                                                kind, first + p)) ||
                    npsd_store_cmd(store, (int)n + 2, argv, NULL) < 0)
                        return -1;
        }
        return 0;
}

static const char *npsd_store_fmt(npsd_store_t *store, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static const char *npsd_store_fmt(npsd_store_t *store, const char *fmt, ...) {
        const char *out;
        va_list ap;

        va_start(ap, fmt);
        out = npsd_store_vfmt(store, "", fmt, ap);
        va_end(ap);
        return out;
}

/* Usage: per occurrence day the ids seen (SMISMEMBER), the HyperLogLog
 * additions (PFADD is idempotent: done before the guarded write, even if
 * that write then loses a race, it adds nothing that is not true), and the
 * four distinct counts after them. */
static int npsd_store_bad(char *errstr, size_t errstr_size, const char *what,
                          const redisReply *r) {
        snprintf(errstr, errstr_size, "redis %s: %s", what,
                 r && r->type == REDIS_REPLY_ERROR ? r->str
                                                   : "unexpected reply");
        return -1;
}

static int npsd_store_read_usage(npsd_store_t *store, npsd_store_acct_t *a) {
        for (size_t i = 0; i < a->un; i++) {
                const npsd_usage_t *u = store->susage[a->u0 + i].ev;
                const char *argv[3];
                argv[0] = "SMISMEMBER";
                if (!(argv[1] = npsd_store_akey(
                              store, a->id, "useen:%d",
                              (int)npsd_time_day(u->occurred_at_ms))))
                        return -1;
                argv[2] = u->event_id;
                /* one per event keeps the reply mapping trivial; they
                 * pipeline, and most batches hold a few per account */
                if (npsd_store_cmd(store, 3, argv, NULL) < 0)
                        return -1;
        }
        return 0;
}

/* A usage event of this batch that counts: not seen before, and the first
 * of its id and day in the batch (the step's rule). */
static int npsd_store_usage_fresh(const npsd_store_t *store,
                                  const npsd_store_acct_t *a, size_t i) {
        const npsd_usage_t *u = store->susage[a->u0 + i].ev;
        int32_t day = npsd_time_day(u->occurred_at_ms);

        if (store->susage[a->u0 + i].seen)
                return 0;
        for (size_t j = 0; j < i; j++) {
                const npsd_usage_t *v = store->susage[a->u0 + j].ev;
                if (!store->susage[a->u0 + j].seen &&
                    npsd_time_day(v->occurred_at_ms) == day &&
                    !strcmp(v->event_id, u->event_id))
                        return 0;
        }
        return 1;
}

/* The distinct counts and their windows of day HyperLogLogs (days from
 * today, both ends included). */
enum { NPSD_STORE_COUNT_AU7, NPSD_STORE_COUNT_AU30, NPSD_STORE_COUNT_AU_PREV7,
       NPSD_STORE_COUNT_FT30, NPSD_STORE_COUNT__CNT };

typedef struct npsd_store_count_window_s {
        const char *kind; /* "au" active users, "ft" features */
        int from, to;
} npsd_store_count_window_t;

static const npsd_store_count_window_t
        npsd_store_count_windows[NPSD_STORE_COUNT__CNT] = {
                [NPSD_STORE_COUNT_AU7] = {"au", -6, 0},
                [NPSD_STORE_COUNT_AU30] = {"au", -29, 0},
                [NPSD_STORE_COUNT_AU_PREV7] = {"au", -13, -7},
                [NPSD_STORE_COUNT_FT30] = {"ft", -29, 0},
};

#define NPSD_STORE_COUNT_ALL ((1u << NPSD_STORE_COUNT__CNT) - 1)
_Static_assert(NPSD_STORE_COUNT__CNT == 4, "npsd_store_acct_t.rx_pf");

/* The counts whose window holds a day key of kind at day offset off (from
 * today): those a register moved there can change. */
static unsigned npsd_store_count_bits(const char *kind, int off) {
        unsigned bits = 0;

        for (int k = 0; k < NPSD_STORE_COUNT__CNT; k++) {
                const npsd_store_count_window_t *cw =
                        &npsd_store_count_windows[k];
                if (!strcmp(cw->kind, kind) && off >= cw->from &&
                    off <= cw->to)
                        bits |= 1u << k;
        }
        return bits;
}

/* The day HyperLogLogs of active users and features get the users and
 * features of the events that count (after dedupe: an event id reused
 * with another user adds nobody). Outside the guarded write: a PFADD adds
 * only what is true, so one that lands for a write that then loses its
 * version race changes no count. Sets pf_moved where a register moved. */
static int npsd_store_hll_add(npsd_store_t *store, char *errstr,
                              size_t errstr_size) {
        int32_t today = store->env.today;
        long *rx;
        size_t n = 0;

        for (size_t i = store->lo; i < store->hi; i++)
                if (!store->accts[i].done)
                        n += store->accts[i].un * 2;
        if (!n)
                return 0;
        if (!(rx = npsd_arena_alloc(&store->arena, sizeof(*rx) * n)))
                goto oom;
        npsd_cluster_begin(store->cl);
        n = 0;
        for (size_t i = store->lo; i < store->hi; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                if (a->done)
                        continue;
                for (size_t k = 0; k < a->un; k++) {
                        const npsd_usage_t *u = store->susage[a->u0 + k].ev;
                        int32_t day = npsd_time_day(u->occurred_at_ms);
                        const char *pf[3] = {"PFADD", NULL, u->user_id};
                        const char *ex[3] = {"EXPIRE", NULL, "2764800"};
                        if (!npsd_store_usage_fresh(store, a, k) ||
                            day <= today - 31 || day > today + 1)
                                continue;
                        if (!(pf[1] = npsd_store_akey(store, a->id, "au:%d",
                                                      (int)day)) ||
                            (rx[n++] = npsd_store_cmd(store, 3, pf, NULL)) < 0)
                                goto oom;
                        ex[1] = pf[1];
                        if (npsd_store_cmd(store, 3, ex, NULL) < 0)
                                goto oom;
                        if (u->type != NPSD_USAGE_FEATURE_USED ||
                            !u->feature || !*u->feature)
                                continue;
                        pf[2] = u->feature;
                        if (!(pf[1] = npsd_store_akey(store, a->id, "ft:%d",
                                                      (int)day)) ||
                            (rx[n++] = npsd_store_cmd(store, 3, pf, NULL)) < 0)
                                goto oom;
                        ex[1] = pf[1];
                        if (npsd_store_cmd(store, 3, ex, NULL) < 0)
                                goto oom;
                }
        }
        if (!n)
                return 0;
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        n = 0;
        for (size_t i = store->lo; i < store->hi; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                if (a->done)
                        continue;
                for (size_t k = 0; k < a->un; k++) {
                        const npsd_usage_t *u = store->susage[a->u0 + k].ev;
                        int32_t day = npsd_time_day(u->occurred_at_ms);
                        int parts;
                        if (!npsd_store_usage_fresh(store, a, k) ||
                            day <= today - 31 || day > today + 1)
                                continue;
                        parts = u->type == NPSD_USAGE_FEATURE_USED &&
                                        u->feature && *u->feature
                                        ? 2
                                        : 1;
                        for (int p = 0; p < parts; p++) {
                                const redisReply *r =
                                        npsd_store_reply(store, rx[n++]);
                                if (!r || r->type != REDIS_REPLY_INTEGER)
                                        return npsd_store_bad(errstr,
                                                              errstr_size,
                                                              "PFADD", r);
                                if (r->integer == 1)
                                        a->pf_moved |= npsd_store_count_bits(
                                                p ? "ft" : "au", day - today);
                        }
                }
        }
        return 0;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}

/* PFCOUNT of one window of day keys of a kind. */
static long npsd_store_pfcount(npsd_store_t *store, const char *account,
                               const char *kind, int32_t from, int32_t to) {
        int n = (int)(to - from + 1);
        const char **argv = npsd_arena_alloc(&store->arena,
                                             sizeof(*argv) * (size_t)(n + 1));

        if (!argv)
                return -1;
        argv[0] = "PFCOUNT";
        for (int i = 0; i < n; i++)
                if (!(argv[1 + i] = npsd_store_akey(store, account, "%s:%d",
                                                    kind, (int)(from + i))))
                        return -1;
        return npsd_store_cmd(store, n + 1, argv, NULL);
}

/* The PFCOUNTs of the windows in want (bits 1 << NPSD_STORE_COUNT_*). */
static int npsd_store_read_counts(npsd_store_t *store, npsd_store_acct_t *a,
                                  unsigned want) {
        int32_t t = store->env.today;

        for (int k = 0; k < NPSD_STORE_COUNT__CNT; k++) {
                const npsd_store_count_window_t *cw =
                        &npsd_store_count_windows[k];
                if (!(want & (1u << k)))
                        continue;
                if ((a->rx_pf[k] = npsd_store_pfcount(store, a->id, cw->kind,
                                                      t + cw->from,
                                                      t + cw->to)) < 0)
                        return -1;
        }
        return 0;
}

/* Appends one account's reads; replies are parsed in the same order by
 * npsd_store_read_parse(). */
static int npsd_store_read_append(npsd_store_t *store, npsd_store_acct_t *a) {
        const char *argv[5];
        long idx;

        argv[0] = "HMGET";
        if (!(argv[1] = npsd_store_akey(store, a->id, "st")))
                return -1;
        argv[2] = "v";
        argv[3] = "b";
        if ((idx = npsd_store_cmd(store, 4, argv, NULL)) < 0)
                return -1;
        a->rx = idx;
        argv[0] = "HGETALL";
        if (!(argv[1] = npsd_store_akey(store, a->id, "account")) ||
            npsd_store_cmd(store, 2, argv, NULL) < 0)
                return -1;
        argv[0] = "ZRANGE";
        if (!(argv[1] = npsd_store_akey(store, a->id, "gq")))
                return -1;
        argv[2] = "0";
        argv[3] = "-1";
        argv[4] = "WITHSCORES";
        if (npsd_store_cmd(store, 5, argv, NULL) < 0)
                return -1;
        if (a->rn) {
                if (npsd_store_read_markers(store, a, "ev", a->rn,
                                            npsd_store_resp_id))
                        return -1;
                for (size_t i = 0; i < a->rn; i++) {
                        argv[0] = "GET";
                        if (!(argv[1] = npsd_store_akey(
                                      store, a->id, "out:%s",
                                      store->sresp[a->r0 + i].resp->event_id)) ||
                            npsd_store_cmd(store, 2, argv, NULL) < 0)
                                return -1;
                }
        }
        if (a->fn &&
            (npsd_store_read_markers(store, a, "fev", a->fn,
                                     npsd_store_fu_id) ||
             npsd_store_read_markers(store, a, "ev", a->fn,
                                     npsd_store_fu_rid)))
                return -1;
        if (a->un && npsd_store_read_usage(store, a))
                return -1;
        return 0;
}


/* Marks ids found in any period's HMGET reply. */
static int npsd_store_markers_seen(npsd_store_t *store, long *idx, size_t n,
                                   int *seen, size_t stride, char *errstr,
                                   size_t errstr_size) {
        int64_t first;
        int np = npsd_store_periods(store, &first);

        for (int p = 0; p < np; p++) {
                const redisReply *r = npsd_store_reply(store, (*idx)++);
                if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n)
                        return npsd_store_bad(errstr, errstr_size, "HMGET", r);
                for (size_t i = 0; i < n; i++)
                        if (r->element[i]->type == REDIS_REPLY_STRING)
                                *(int *)((char *)seen + i * stride) = 1;
        }
        return 0;
}

static int64_t npsd_store_int(const redisReply *r) {
        if (!r)
                return 0;
        if (r->type == REDIS_REPLY_INTEGER)
                return r->integer;
        if (r->type == REDIS_REPLY_STRING)
                return strtoll(r->str, NULL, 10);
        return 0;
}

/* A delta read from the account's gq is known committed: it joins the
 * list to apply, unless already there. */
static int npsd_store_delta_add(npsd_store_t *store, const char *account,
                                uint64_t seq, const void *blob, size_t len) {
        npsd_store_delta_t *d;

        for (size_t i = 0; i < store->delta_cnt; i++)
                if (store->deltas[i].seq == seq &&
                    !strcmp(store->deltas[i].account, account))
                        return 0;
        if (npsd_store_grow((void **)&store->deltas, &store->delta_size,
                            store->delta_cnt + 1, sizeof(*store->deltas)))
                return -1;
        d = &store->deltas[store->delta_cnt];
        memset(d, 0, sizeof(*d));
        if (!(d->account = strdup(account)) || !(d->blob = malloc(len + 1))) {
                free(d->account);
                return -1;
        }
        memcpy(d->blob, blob, len);
        d->len = len;
        d->seq = seq;
        store->delta_cnt++;
        return 0;
}

static int npsd_store_read_parse(npsd_store_t *store, npsd_store_acct_t *a,
                                 char *errstr, size_t errstr_size) {
        long idx = a->rx;
        const redisReply *r = npsd_store_reply(store, idx++);

        npsd_state_free(a->st);
        npsd_kvs_clear(&a->account);
        a->ver[0] = '\0';
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
                return npsd_store_bad(errstr, errstr_size, "HMGET st", r);
        if (r->element[0]->type == REDIS_REPLY_STRING)
                snprintf(a->ver, sizeof(a->ver), "%s", r->element[0]->str);
        if (r->element[1]->type == REDIS_REPLY_STRING) {
                char e[256];
                if (npsd_state_decode(a->st,
                                      (const unsigned char *)r->element[1]->str,
                                      r->element[1]->len, e, sizeof(e))) {
                        snprintf(errstr, errstr_size, "account %s: %s", a->id,
                                 e);
                        return -1;
                }
        }
        a->gseq_read = a->st->gseq;
        r = npsd_store_reply(store, idx++);
        if (!r || r->type != REDIS_REPLY_ARRAY)
                return npsd_store_bad(errstr, errstr_size, "HGETALL", r);
        for (size_t i = 0; i + 1 < r->elements; i += 2)
                if (npsd_kvs_add(&a->account, r->element[i]->str,
                                 r->element[i + 1]->str,
                                 r->element[i + 1]->len))
                        goto oom;
        r = npsd_store_reply(store, idx++);
        if (!r || r->type != REDIS_REPLY_ARRAY)
                return npsd_store_bad(errstr, errstr_size, "ZRANGE gq", r);
        for (size_t i = 0; i + 1 < r->elements; i += 2)
                if (npsd_store_delta_add(
                            store, a->id,
                            (uint64_t)npsd_store_int(r->element[i + 1]),
                            r->element[i]->str, r->element[i]->len))
                        goto oom;
        if (a->rn) {
                for (size_t i = 0; i < a->rn; i++)
                        store->sresp[a->r0 + i].seen = 0;
                if (npsd_store_markers_seen(store, &idx, a->rn,
                                            &store->sresp[a->r0].seen,
                                            sizeof(npsd_step_response_t),
                                            errstr, errstr_size))
                        return -1;
                idx += (long)a->rn; /* the GET out: replies, read later */
        }
        if (a->fn) {
                for (size_t i = 0; i < a->fn; i++) {
                        store->sfu[a->f0 + i].seen = 0;
                        store->sfu[a->f0 + i].response_seen = 0;
                }
                if (npsd_store_markers_seen(store, &idx, a->fn,
                                            &store->sfu[a->f0].seen,
                                            sizeof(npsd_step_followup_t),
                                            errstr, errstr_size) ||
                    npsd_store_markers_seen(store, &idx, a->fn,
                                            &store->sfu[a->f0].response_seen,
                                            sizeof(npsd_step_followup_t),
                                            errstr, errstr_size))
                        return -1;
        }
        for (size_t i = 0; i < a->un; i++) {
                r = npsd_store_reply(store, idx++);
                if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 1)
                        return npsd_store_bad(errstr, errstr_size,
                                              "SMISMEMBER", r);
                store->susage[a->u0 + i].seen = r->element[0]->integer == 1;
        }
        return 0;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}

/* The records of responses seen before (GET out:<id> of the read round
 * trip), copied: a second read round trip frees the replies. */
static int npsd_store_dup_snapshots(npsd_store_t *store,
                                    npsd_store_acct_t *a, char *errstr,
                                    size_t errstr_size) {
        int64_t first;
        long idx = a->rx + 3 + npsd_store_periods(store, &first);

        npsd_step_responses_free(&store->sresp[a->r0], a->rn);
        for (size_t k = 0; k < a->rn; k++) {
                const redisReply *r = npsd_store_reply(store, idx + (long)k);
                npsd_step_response_t *sr = &store->sresp[a->r0 + k];
                if (!sr->seen || !r || r->type != REDIS_REPLY_STRING)
                        continue;
                if (!(sr->snapshot = malloc(r->len + 1))) {
                        snprintf(errstr, errstr_size, "redis: out of memory");
                        return -1;
                }
                memcpy(sr->snapshot, r->str, r->len);
                sr->snapshot[r->len] = '\0';
                sr->snapshot_len = r->len;
        }
        return 0;
}

/* Distinct users and features are counted (PFCOUNT over the windows' day
 * HyperLogLogs) only for the accounts whose counts can have moved: a PFADD
 * of this batch changed a register, the day changed since the last count,
 * or a timer tick. Most usage events repeat a user already seen that day:
 * their batch needs no count, and no second read round trip. On the day
 * of the last count, only the windows holding a moved register's day are
 * counted again (a live event moves the 7- and 30-day windows, not the
 * previous 7 days). */
static int npsd_store_counts(npsd_store_t *store, char *errstr,
                             size_t errstr_size) {
        size_t need = 0;

        npsd_cluster_begin(store->cl);
        for (size_t i = store->lo; i < store->hi; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                unsigned want;
                a->has_counts = 0;
                for (int k = 0; k < NPSD_STORE_COUNT__CNT; k++)
                        a->rx_pf[k] = -1;
                if (a->done || (!a->un && !a->tick))
                        continue;
                /* a tick counts on a new day (the windows moved), for an
                 * account with activity in the last 31 days; a forced
                 * refresh always */
                if (a->tick && !a->un && !a->refresh &&
                    (a->st->last_activity_ms < 0 ||
                     npsd_time_day(a->st->last_activity_ms) <=
                             store->env.today - 31 ||
                     a->st->counted_day == store->env.today))
                        continue;
                /* the same day: only the windows a register moved in; the
                 * others keep the record's counts of today */
                want = a->tick || store->recount_all ||
                                       a->st->counted_day != store->env.today
                               ? NPSD_STORE_COUNT_ALL
                               : a->pf_moved;
                if (!want)
                        continue;
                if (npsd_store_read_counts(store, a, want)) {
                        snprintf(errstr, errstr_size, "redis: out of memory");
                        return -1;
                }
                need++;
        }
        if (!need)
                return 0;
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        for (size_t i = store->lo; i < store->hi; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                int64_t v[NPSD_STORE_COUNT__CNT] = {
                        [NPSD_STORE_COUNT_AU7] = a->st->active_users_7d,
                        [NPSD_STORE_COUNT_AU30] = a->st->active_users_30d,
                        [NPSD_STORE_COUNT_AU_PREV7] =
                                a->st->active_users_prev_7d,
                        [NPSD_STORE_COUNT_FT30] = a->st->features_30d};
                int counted = 0;
                for (int k = 0; k < NPSD_STORE_COUNT__CNT; k++) {
                        const redisReply *r;
                        if (a->rx_pf[k] < 0)
                                continue;
                        r = npsd_store_reply(store, a->rx_pf[k]);
                        if (!r || r->type != REDIS_REPLY_INTEGER)
                                return npsd_store_bad(errstr, errstr_size,
                                                      "PFCOUNT", r);
                        v[k] = r->integer;
                        counted = 1;
                }
                if (!counted)
                        continue;
                a->counts.active_users_7d = v[NPSD_STORE_COUNT_AU7];
                a->counts.active_users_30d = v[NPSD_STORE_COUNT_AU30];
                a->counts.active_users_prev_7d = v[NPSD_STORE_COUNT_AU_PREV7];
                a->counts.features_30d = v[NPSD_STORE_COUNT_FT30];
                a->has_counts = 1;
        }
        return 0;
}

/* ---- global deltas -------------------------------------------------------- */

/* A delta is one account step's effect on global keys, as plain commands in
 * three groups: the {g} group (cohort and theme day buckets, owner
 * counters, the timer, the views to refresh), and the two rank sorted sets.
 * Encoded as: per group its command count, per command its word count and
 * words (length-prefixed). */
enum { NPSD_DG_G = 0, NPSD_DG_RANK_NPS, NPSD_DG_RANK_HEALTH,
       NPSD_DG_SUPPRESS, /* SET nps:suppress:<user> at PXAT expiry, each in
                          * its own slot behind a "later" guard */
       NPSD_DG__CNT };

typedef struct npsd_store_dw_s {
        npsd_codec_writer_t w[NPSD_DG__CNT];
        unsigned char *buf[NPSD_DG__CNT];
        size_t cnt[NPSD_DG__CNT];
} npsd_store_dw_t;

static int npsd_store_dw_cmd(npsd_store_dw_t *dw, int g, int argc,
                             const char **argv) {
        npsd_codec_writer_t *w = &dw->w[g];
        size_t need;

        /* measure, grow, write */
        for (int pass = 0; pass < 2; pass++) {
                npsd_codec_writer_t m = *w;
                if (pass == 0) {
                        m.buf = NULL;
                        m.size = 0;
                }
                npsd_codec_put_uint(&m, (uint64_t)argc);
                for (int i = 0; i < argc; i++) {
                        size_t len = strlen(argv[i]);
                        npsd_codec_put_uint(&m, len);
                        npsd_codec_put_bytes(&m, argv[i], len);
                }
                if (pass == 0) {
                        need = m.off;
                        if (need > w->size) {
                                size_t ns = w->size ? w->size * 2 : 256;
                                unsigned char *p;
                                while (ns < need)
                                        ns *= 2;
                                if (!(p = realloc(dw->buf[g], ns)))
                                        return -1;
                                dw->buf[g] = p;
                                w->buf = p;
                                w->size = ns;
                        }
                } else {
                        *w = m;
                }
        }
        dw->cnt[g]++;
        return 0;
}

static void npsd_store_dw_free(npsd_store_dw_t *dw) {
        for (int g = 0; g < NPSD_DG__CNT; g++)
                free(dw->buf[g]);
}

/* a, b, c and d joined into dst (cut to size - 1 bytes): the hot path's
 * keys and fields, built without printf's format parsing. Returns dst. */
static char *npsd_store_cat4(char *dst, size_t size, const char *a,
                             const char *b, const char *c, const char *d) {
        const char *part[4] = {a, b, c, d};
        size_t off = 0;

        for (int i = 0; i < 4; i++) {
                size_t n = strnlen(part[i], size - 1 - off);
                memcpy(dst + off, part[i], n);
                off += n;
        }
        dst[off] = '\0';
        return dst;
}

/* day:slot, the field of a cohort day bucket */
static void npsd_store_day_field(char *dst, int32_t day, unsigned slot) {
        size_t n = npsd_fmt_i64(day, dst);

        dst[n++] = ':';
        (void)npsd_fmt_u64(slot, dst + n);
}

/* The delta of one committed step: NULL blob when it has none. */
static int npsd_store_delta_build(npsd_store_t *store, npsd_store_acct_t *a,
                                  unsigned char **blob, size_t *len) {
        const npsd_step_out_t *o = a->out;
        const char *P = store->conf->redis_prefix;
        npsd_store_dw_t dw;
        char k[NPSD_KEY_MAX], f[NPSD_KEY_MAX], by[32], sc[32];
        char dirty[NPSD_KEY_MAX], cohorts[NPSD_KEY_MAX];
        int err = 0;

        npsd_store_cat4(dirty, sizeof(dirty), P, ":{g}:dirty", "", "");
        npsd_store_cat4(cohorts, sizeof(cohorts), P, ":{g}:cohorts", "", "");
        memset(&dw, 0, sizeof(dw));
        *blob = NULL;
        *len = 0;
        /* cohort buckets, one increment per distinct field */
        for (size_t i = 0; i < o->cohort_cnt; i++) {
                const npsd_step_cohort_t *c = &o->cohorts[i];
                int dup = 0, n = 0;
                for (size_t j = 0; j < i && !dup; j++)
                        dup = o->cohorts[j].day == c->day &&
                              o->cohorts[j].slot == c->slot &&
                              !strcmp(o->cohorts[j].name, c->name);
                if (dup)
                        continue;
                for (size_t j = i; j < o->cohort_cnt; j++)
                        n += o->cohorts[j].day == c->day &&
                             o->cohorts[j].slot == c->slot &&
                             !strcmp(o->cohorts[j].name, c->name);
                npsd_store_cat4(k, sizeof(k), P, ":{g}:cohort:", c->name,
                                ":d");
                npsd_store_day_field(f, c->day, c->slot);
                (void)npsd_fmt_i64(n, by);
                {
                        const char *av[4] = {"HINCRBY", k, f, by};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 4, av);
                }
                /* a new day's bucket, or the first of its kind: the cohort's
                 * views are refreshed, and it is known for the daily roll */
                if (!i || strcmp(o->cohorts[i - 1].name, c->name)) {
                        const char *d[3] = {"SADD", dirty, c->name};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, d);
                        d[1] = cohorts;
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, d);
                }
        }
        for (size_t i = 0; i < o->theme_cnt; i++) {
                const npsd_step_theme_t *t = &o->themes[i];
                const char *cat = npsd_category_name(t->cat);
                char name[64];
                snprintf(k, sizeof(k), "%s:{g}:themes:%s:d", P, cat);
                snprintf(f, sizeof(f), "%d:%s", (int)t->day,
                         npsd_themes_name(store->themes, t->theme));
                {
                        const char *av[4] = {"HINCRBY", k, f, "1"};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 4, av);
                }
                snprintf(k, sizeof(k), "%s:{g}:dirty", P);
                snprintf(name, sizeof(name), "themes:%s", cat);
                {
                        const char *av[3] = {"SADD", k, name};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, av);
                }
        }
        /* owner counters: <owner>\t<field> of the {g} counter hash; the
         * public nps:csm:<owner> hash is refreshed from them */
        {
                char ck[NPSD_KEY_MAX], dk[NPSD_KEY_MAX], name[NPSD_KEY_MAX];
                char ck2[NPSD_KEY_MAX];
                snprintf(ck, sizeof(ck), "%s:{g}:csm", P);
                snprintf(dk, sizeof(dk), "%s:{g}:dirty", P);
                /* known views are refreshed by the daily roll too */
                snprintf(ck2, sizeof(ck2), "%s:{g}:cohorts", P);
                for (size_t i = 0; i < o->csm_cnt; i++) {
                        const char *av[4] = {"HINCRBY", ck, f, by};
                        const char *d[3] = {"SADD", dk, name};
                        if (!o->csm[i].by)
                                continue;
                        snprintf(f, sizeof(f), "%s\t%s", o->csm[i].owner,
                                 o->csm[i].field);
                        snprintf(by, sizeof(by), "%" PRId64, o->csm[i].by);
                        snprintf(name, sizeof(name), "csm:%s", o->csm[i].owner);
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 4, av);
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, d);
                        d[1] = ck2;
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, d);
                        d[1] = dk;
                }
                if (strcmp(o->old_owner, o->new_owner)) {
                        const char *owners[2] = {o->old_owner, o->new_owner};
                        for (int i = 0; i < 2; i++) {
                                const char *av[4] = {"HINCRBY", ck, f,
                                                     i ? "1" : "-1"};
                                const char *d[3] = {"SADD", dk, name};
                                if (!*owners[i])
                                        continue;
                                snprintf(f, sizeof(f), "%s\taccounts",
                                         owners[i]);
                                snprintf(name, sizeof(name), "csm:%s",
                                         owners[i]);
                                err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 4, av);
                                err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, d);
                        }
                }
        }
        /* the account's timer: its next due moment, sooner while alerts
         * wait for the broker */
        {
                int64_t t = o->next_timer_ms;
                snprintf(k, sizeof(k), "%s:{g}:timers", P);
                if (o->alert_cnt &&
                    (t < 0 || t > store->env.now_ms + NPSD_OUTBOX_RETRY_MS))
                        t = store->env.now_ms + NPSD_OUTBOX_RETRY_MS;
                if (t >= 0) {
                        const char *av[4] = {"ZADD", k, sc, a->id};
                        snprintf(sc, sizeof(sc), "%" PRId64, t);
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 4, av);
                } else {
                        const char *av[3] = {"ZREM", k, a->id};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, av);
                }
        }
        if (o->ranks_changed) {
                char v[NPSD_FIELD_VALUE_MAX];
                snprintf(k, sizeof(k), "%s:rank:nps_%dd", P,
                         store->env.periods.long_days);
                if (o->rank_nps_has) {
                        const char *av[4] = {"ZADD", k,
                                             npsd_metric_format(o->rank_nps, v),
                                             a->id};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_RANK_NPS, 4, av);
                } else {
                        const char *av[3] = {"ZREM", k, a->id};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_RANK_NPS, 3, av);
                }
                snprintf(k, sizeof(k), "%s:rank:health", P);
                if (o->rank_health_has) {
                        const char *av[4] = {"ZADD", k, v, a->id};
                        snprintf(v, sizeof(v), "%d", o->rank_health);
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_RANK_HEALTH, 4,
                                                 av);
                } else {
                        const char *av[3] = {"ZREM", k, a->id};
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_RANK_HEALTH, 3,
                                                 av);
                }
        }
        /* survey suppression: absolute expiries on the wall clock, so that
         * a delta applied late (or again) sets what it would have */
        for (size_t i = 0; i < o->suppress_cnt; i++) {
                const npsd_step_suppress_t *su = &o->suppress[i];
                char exp[32];
                const char *av[5] = {"SET", k, su->at, "PXAT", exp};
                snprintf(k, sizeof(k), "%s:suppress:%s", P, su->user_id);
                snprintf(exp, sizeof(exp), "%" PRId64,
                         store->wall_ms + su->ttl_s * 1000);
                err |= npsd_store_dw_cmd(&dw, NPSD_DG_SUPPRESS, 5, av);
        }
        if (err)
                goto fail;
        {
                npsd_codec_writer_t m = {0};
                unsigned char *p;
                for (int pass = 0; pass < 2; pass++) {
                        for (int g = 0; g < NPSD_DG__CNT; g++) {
                                npsd_codec_put_uint(&m, dw.cnt[g]);
                                npsd_codec_put_bytes(&m, dw.buf[g], dw.w[g].off);
                        }
                        if (pass == 0) {
                                if (!(p = malloc(m.off ? m.off : 1)))
                                        goto fail;
                                m.buf = p;
                                m.size = m.off;
                                m.off = 0;
                        }
                }
                *blob = p;
                *len = m.off;
        }
        npsd_store_dw_free(&dw);
        return 0;
fail:
        npsd_store_dw_free(&dw);
        return -1;
}

/* What npsd_store_delta_group() does with a group's commands. */
enum {
        NPSD_STORE_DG_SKIP,  /* reads past them */
        NPSD_STORE_DG_ADD,   /* adds them to the current call */
        NPSD_STORE_DG_LATER, /* each SET in a "later" call of its own */
        NPSD_STORE_DG_SUM,   /* as ADD, but HINCRBY and SADD go to
                              * store->sums (a call in mode "all") */
};

/* An HINCRBY's increment, when it is a plain integer as Redis takes it. */
static int npsd_store_incr_by(const char *p, size_t len, long long *by) {
        char num[24], *end;

        if (!len || len >= sizeof(num))
                return -1;
        memcpy(num, p, len);
        num[len] = '\0';
        errno = 0;
        *by = strtoll(num, &end, 10);
        return errno || *end || (!*by && len != 1) ? -1 : 0;
}

/* Reads one group of an encoded delta and does with its commands what add
 * says (NPSD_STORE_DG_*). Returns 0, or -1 with errstr. */
static int npsd_store_delta_group(npsd_store_t *store,
                                  npsd_codec_reader_t *r, int add,
                                  char *errstr, size_t errstr_size) {
        uint64_t n = npsd_codec_get_uint(r);

        for (uint64_t c = 0; c < n && !r->err; c++) {
                uint64_t argc = npsd_codec_get_uint_max(r, 16);
                const char *argv[16];
                size_t lens[16];
                for (uint64_t i = 0; i < argc && !r->err; i++) {
                        lens[i] = (size_t)npsd_codec_get_uint_max(
                                r, r->len - r->off);
                        argv[i] = (const char *)r->buf + r->off;
                        r->off += lens[i];
                }
                if (r->err || argc < 2)
                        break;
                if (add == NPSD_STORE_DG_SUM) {
                        long long by;
                        int rc = 1;
                        if (argc == 4 && lens[0] == 7 &&
                            !memcmp(argv[0], "HINCRBY", 7) &&
                            !npsd_store_incr_by(argv[3], lens[3], &by))
                                rc = npsd_sums_incr(store->sums, argv[1],
                                                    lens[1], argv[2], lens[2],
                                                    by);
                        else if (argc == 3 && lens[0] == 4 &&
                                 !memcmp(argv[0], "SADD", 4))
                                rc = npsd_sums_sadd(store->sums, argv[1],
                                                    lens[1], argv[2], lens[2]);
                        if (rc == -1) {
                                snprintf(errstr, errstr_size,
                                         "global delta: out of memory or "
                                         "an increment out of range");
                                return -1;
                        }
                        if (!rc)
                                continue;
                }
                if (add == NPSD_STORE_DG_LATER) {
                        /* SET key at PXAT expiry behind its own guard */
                        char exp[32];
                        size_t el = lens[4] < sizeof(exp) - 1 ? lens[4]
                                                             : sizeof(exp) - 1;
                        char key[NPSD_KEY_MAX];
                        size_t kl = lens[1] < sizeof(key) - 1 ? lens[1]
                                                             : sizeof(key) - 1;
                        if (argc != 5)
                                continue;
                        memcpy(exp, argv[4], el);
                        exp[el] = '\0';
                        memcpy(key, argv[1], kl);
                        key[kl] = '\0';
                        if (npsd_write_later(store->w, key,
                                             strtoll(exp, NULL, 10), errstr,
                                             errstr_size) < 0)
                                return -1;
                }
                if (add && npsd_write_cmd(store->w, (int)argc, argv, lens, 1,
                                          errstr, errstr_size))
                        return -1;
        }
        if (r->err) {
                snprintf(errstr, errstr_size, "global delta: malformed");
                return -1;
        }
        return 0;
}

/* Ends a {g} call in mode "all": its summed increments and set additions
 * go last, after every group's ordered commands. Returns 0 or -1. */
static int npsd_store_sums_flush(npsd_store_t *store, char *errstr,
                                 size_t errstr_size) {
        for (size_t i = 0; i < npsd_sums_count(store->sums); i++) {
                npsd_sums_entry_t e;
                char by[NPSD_FMT_INT_BUFSZ];
                const char *argv[4] = {"HINCRBY", NULL, NULL, by};
                size_t lens[4] = {7, 0, 0, 0};
                int argc = 4;

                npsd_sums_get(store->sums, i, &e);
                if (e.is_set) {
                        argv[0] = "SADD";
                        lens[0] = 4;
                        argc = 3;
                } else if (!e.by) {
                        continue;
                } else {
                        lens[3] = npsd_fmt_i64(e.by, by);
                }
                argv[1] = e.key;
                lens[1] = e.key_len;
                argv[2] = e.field;
                lens[2] = e.field_len;
                if (npsd_write_cmd(store->w, argc, argv, lens, 1, errstr,
                                   errstr_size))
                        return -1;
        }
        npsd_sums_reset(store->sums);
        return 0;
}

/* Appends the calls that apply the waiting deltas: for the {g} slot (every
 * delta has a {g} part, under an exact sequence per account) "all" calls
 * whose increments npsd sums, or, after one of those did not run, "exact"
 * calls group by group; one "newer" call per rank key (newest sequence
 * wins). Returns 0 or -1. */
static int npsd_store_deltas_append(npsd_store_t *store, char *errstr,
                                    size_t errstr_size) {
        const char *P = store->conf->redis_prefix;
        char fence[NPSD_KEY_MAX];
        int split = store->g_split;

        /* nothing left from an append that failed halfway */
        npsd_sums_reset(store->sums);
        for (size_t i = 0; i < store->delta_cnt; i++)
                for (int g = 0; g < NPSD_DG__CNT; g++)
                        store->deltas[i].call[g] = -1;
        for (int g = 0; g < NPSD_DG_SUPPRESS; g++) {
                long call = -1;
                size_t in_call = 0;
                int sum = g == NPSD_DG_G && !split;
                size_t per_call = sum ? NPSD_STORE_GROUPS_ALL_PER_CALL
                                      : NPSD_STORE_GROUPS_PER_CALL;
                npsd_write_groups_mode_t mode =
                        g != NPSD_DG_G ? NPSD_WRITE_GROUPS_NEWER
                        : sum          ? NPSD_WRITE_GROUPS_ALL
                                       : NPSD_WRITE_GROUPS_EXACT;
                if (g == NPSD_DG_G) {
                        snprintf(fence, sizeof(fence), "%s:{g}:fence", P);
                } else {
                        char rk[NPSD_KEY_MAX];
                        if (g == NPSD_DG_RANK_NPS)
                                snprintf(rk, sizeof(rk), "%s:rank:nps_%dd", P,
                                         store->env.periods.long_days);
                        else
                                snprintf(rk, sizeof(rk), "%s:rank:health", P);
                        snprintf(fence, sizeof(fence), "%s:{%s}:rankv", P,
                                 npsd_cluster_slot_tag(npsd_store_slot(rk)));
                }
                for (size_t i = 0; i < store->delta_cnt; i++) {
                        npsd_store_delta_t *d = &store->deltas[i];
                        npsd_codec_reader_t r = {.buf = d->blob, .len = d->len};
                        for (int h = 0; h < g; h++)
                                if (npsd_store_delta_group(
                                            store, &r, NPSD_STORE_DG_SKIP,
                                            errstr, errstr_size))
                                        return -1;
                        {
                                npsd_codec_reader_t peek = r;
                                if (!npsd_codec_get_uint(&peek) &&
                                    g != NPSD_DG_G)
                                        continue;
                        }
                        if (call < 0 || in_call == per_call) {
                                if ((sum && call >= 0 &&
                                     npsd_store_sums_flush(store, errstr,
                                                           errstr_size)) ||
                                    (call = npsd_write_groups(
                                             store->w, fence, mode, errstr,
                                             errstr_size)) < 0)
                                        return -1;
                                in_call = 0;
                        }
                        d->call[g] = call;
                        d->gidx[g] = in_call++;
                        if (npsd_write_group(store->w, d->account, d->seq,
                                             errstr, errstr_size) ||
                            npsd_store_delta_group(
                                    store, &r,
                                    sum ? NPSD_STORE_DG_SUM : NPSD_STORE_DG_ADD,
                                    errstr, errstr_size))
                                return -1;
                }
                if (sum && call >= 0 &&
                    npsd_store_sums_flush(store, errstr, errstr_size))
                        return -1;
        }
        /* suppression: one guarded call per user key (each in its own
         * slot); an older response than the key holds changes nothing */
        for (size_t i = 0; i < store->delta_cnt; i++) {
                npsd_store_delta_t *d = &store->deltas[i];
                npsd_codec_reader_t r = {.buf = d->blob, .len = d->len};
                for (int h = 0; h < NPSD_DG_SUPPRESS; h++)
                        if (npsd_store_delta_group(store, &r,
                                                   NPSD_STORE_DG_SKIP, errstr,
                                                   errstr_size))
                                return -1;
                if (npsd_store_delta_group(store, &r, NPSD_STORE_DG_LATER,
                                           errstr, errstr_size))
                        return -1;
        }
        return 0;
}

/* Reads what the delta calls did: a delta applied (or found applied) in
 * every group it has is done, and its gq entry can go. */
static void npsd_store_deltas_result(npsd_store_t *store) {
        size_t keep = 0;

        store->g_split = 0;
        for (size_t i = 0; i < store->delta_cnt; i++) {
                npsd_store_delta_t *d = &store->deltas[i];
                int ok = 1;
                for (int g = 0; g < NPSD_DG__CNT; g++) {
                        npsd_write_status_t st;
                        if (d->call[g] < 0)
                                continue;
                        st = npsd_write_group_status(store->w,
                                                     (size_t)d->call[g],
                                                     store->cl, d->gidx[g]);
                        if (st != NPSD_WRITE_APPLIED &&
                            st != NPSD_WRITE_ALREADY)
                                ok = 0;
                        /* an "all" call that did not run: group by group
                         * next time, so that one account's gap holds up
                         * no other */
                        if (g == NPSD_DG_G && st == NPSD_WRITE_GAP &&
                            !store->g_split) {
                                store->g_split = 1;
                                npsd_debug("msg=\"global deltas did not all "
                                           "pass their fences, next round "
                                           "goes account by account\" "
                                           "account=%s seq=%" PRIu64,
                                           d->account, d->seq);
                        }
                }
                if (ok && !npsd_store_grow((void **)&store->cleanup,
                                           &store->cleanup_size,
                                           store->cleanup_cnt + 1,
                                           sizeof(*store->cleanup))) {
                        free(d->blob);
                        d->blob = NULL;
                        store->cleanup[store->cleanup_cnt++] = *d;
                        continue;
                }
                store->deltas[keep++] = *d;
        }
        store->delta_cnt = keep;
}

/* ZREMRANGEBYSCORE gq of deltas known applied (plain: they are applied,
 * removing them twice is harmless). */
static int npsd_store_cleanup_append(npsd_store_t *store, size_t *cnt) {
        *cnt = store->cleanup_cnt;
        for (size_t i = 0; i < store->cleanup_cnt; i++) {
                const char *argv[4] = {"ZREMRANGEBYSCORE", NULL, "-inf", NULL};
                if (!(argv[1] = npsd_store_akey(store,
                                                store->cleanup[i].account,
                                                "gq")) ||
                    !(argv[3] = npsd_store_fmt(store, "%" PRIu64,
                                               store->cleanup[i].seq)) ||
                    npsd_store_cmd(store, 4, argv, NULL) < 0)
                        return -1;
        }
        return 0;
}

static void npsd_store_cleanup_done(npsd_store_t *store, size_t cnt) {
        if (!cnt)
                return;
        for (size_t i = 0; i < cnt; i++)
                npsd_store_delta_free(&store->cleanup[i]);
        memmove(store->cleanup, store->cleanup + cnt,
                (store->cleanup_cnt - cnt) * sizeof(*store->cleanup));
        store->cleanup_cnt -= cnt;
}

/* ---- the guarded write of one account ------------------------------------ */

static int npsd_store_wcmd(npsd_store_t *store, int argc, const char **argv,
                           const size_t *lens, int keys, char *errstr,
                           size_t errstr_size) {
        return npsd_write_cmd(store->w, argc, argv, lens, keys, errstr,
                              errstr_size);
}

/* Markers of the events counted now: <kind>p:<period> fields, the hash
 * expiring dedupe.days after its period ends. */
static int npsd_store_mark(npsd_store_t *store, const npsd_store_acct_t *a,
                           const char *kind, const char **ids, size_t n,
                           char *errstr, size_t errstr_size) {
        const char *key, **vals;
        const char *ex[3] = {"PEXPIREAT", NULL, NULL};

        if (!n)
                return 0;
        if (!(key = npsd_store_akey(store, a->id, "%sp:%" PRId64, kind,
                                    store->dedupe_period)) ||
            !(vals = npsd_arena_alloc(&store->arena, sizeof(*vals) * n)))
                return -1;
        for (size_t i = 0; i < n; i++)
                vals[i] = "1";
        if (npsd_write_hset(store->w, key, n, ids, NULL, vals, NULL, errstr,
                            errstr_size))
                return -1;
        ex[1] = key;
        if (!(ex[2] = npsd_store_fmt(
                      store, "%lld",
                      (long long)(((store->dedupe_period + 1) *
                                           NPSD_DEDUPE_PERIOD_S +
                                   store->conf->dedupe_days * 86400LL) *
                                  1000))))
                return -1;
        return npsd_store_wcmd(store, 3, ex, NULL, 1, errstr, errstr_size);
}

static int npsd_store_write_hash(npsd_store_t *store,
                                 const npsd_store_acct_t *a,
                                 const npsd_step_hash_t *h, char *errstr,
                                 size_t errstr_size) {
        const char *key = npsd_store_akey(store, a->id, "%s", h->name);
        const char *names[NPSD_FIELDS_MAX], *vals[NPSD_FIELDS_MAX];

        if (!key)
                return -1;
        if (h->whole) {
                const char *del[2] = {"DEL", key};
                if (npsd_store_wcmd(store, 2, del, NULL, 1, errstr,
                                    errstr_size))
                        return -1;
        } else if (h->del_cnt) {
                for (size_t i = 0; i < h->del_cnt && i < NPSD_FIELDS_MAX; i++)
                        names[i] = a->out->dels[h->del0 + i].name;
                if (npsd_write_hdel(store->w, key,
                                    h->del_cnt < NPSD_FIELDS_MAX
                                            ? h->del_cnt
                                            : NPSD_FIELDS_MAX,
                                    names, NULL, errstr, errstr_size))
                        return -1;
        }
        for (size_t i = 0; i < h->set_cnt && i < NPSD_FIELDS_MAX; i++) {
                names[i] = a->out->fields[h->set0 + i].name;
                vals[i] = a->out->fields[h->set0 + i].value;
        }
        return npsd_write_hset(store->w, key,
                               h->set_cnt < NPSD_FIELDS_MAX ? h->set_cnt
                                                            : NPSD_FIELDS_MAX,
                               names, NULL, vals, NULL, errstr, errstr_size);
}

/* The account's guarded call: "if the version is still the one read, write
 * all of this". Returns 0 (a->call set, or -1 when there is nothing to
 * write) or -1 with errstr. */
static int npsd_store_write_account(npsd_store_t *store, npsd_store_acct_t *a,
                                    char *errstr, size_t errstr_size) {
        const npsd_step_out_t *o = a->out;
        const char **ids;
        size_t n = 0, nmax = a->rn > a->fn ? a->rn : a->fn;
        int marks = 0;
        char nv[24];
        const char *stkey;

        for (size_t i = 0; i < a->rn; i++)
                marks |= store->sresp[a->r0 + i].counted;
        for (size_t i = 0; i < a->fn; i++)
                marks |= store->sfu[a->f0 + i].status !=
                         NPSD_FOLLOWUP_DUPLICATE;
        for (size_t i = 0; i < a->un; i++)
                marks |= store->susage[a->u0 + i].counted;
        a->call = -1;
        if (!o->changed && !marks && !o->account_replaced)
                return 0;
        snprintf(nv, sizeof(nv), "%lld", strtoll(a->ver, NULL, 10) + 1);
        if (!(stkey = npsd_store_akey(store, a->id, "st")) ||
            (a->call = npsd_write_cas(store->w, stkey, "v", a->ver, nv, errstr,
                                      errstr_size)) < 0)
                return -1;
        /* the record, with the delta's sequence */
        free(a->delta);
        a->delta = NULL;
        if (npsd_store_delta_build(store, a, &a->delta, &a->delta_len))
                goto oom;
        a->st->gseq = a->gseq_read + 1;
        {
                size_t len = npsd_state_encode(a->st, NULL, 0);
                unsigned char *b = npsd_arena_alloc(&store->arena, len ? len : 1);
                const char *av[4] = {"HSET", stkey, "b", (const char *)b};
                size_t al[4] = {4, strlen(stkey), 1, len};
                if (!b)
                        goto oom;
                npsd_state_encode(a->st, b, len);
                if (npsd_store_wcmd(store, 4, av, al, 1, errstr, errstr_size))
                        return -1;
        }
        {
                const char *av[4] = {"ZADD", NULL, NULL, (const char *)a->delta};
                size_t al[4];
                if (!(av[1] = npsd_store_akey(store, a->id, "gq")) ||
                    !(av[2] = npsd_store_fmt(store, "%" PRIu64, a->st->gseq)))
                        goto oom;
                al[0] = 4;
                al[1] = strlen(av[1]);
                al[2] = strlen(av[2]);
                al[3] = a->delta_len;
                if (npsd_store_wcmd(store, 4, av, al, 1, errstr, errstr_size))
                        return -1;
        }
        /* markers */
        if (!(ids = npsd_arena_alloc(&store->arena,
                                     sizeof(*ids) * (nmax ? nmax : 1))))
                goto oom;
        for (size_t i = 0; i < a->rn; i++)
                if (store->sresp[a->r0 + i].counted)
                        ids[n++] = store->sresp[a->r0 + i].resp->event_id;
        if (npsd_store_mark(store, a, "ev", ids, n, errstr, errstr_size))
                return -1;
        n = 0;
        for (size_t i = 0; i < a->fn; i++)
                if (store->sfu[a->f0 + i].status != NPSD_FOLLOWUP_DUPLICATE)
                        ids[n++] = store->sfu[a->f0 + i].ev->event_id;
        if (npsd_store_mark(store, a, "fev", ids, n, errstr, errstr_size))
                return -1;
        for (size_t i = 0; i < a->un; i++) {
                const npsd_usage_t *u = store->susage[a->u0 + i].ev;
                const char *sa[3] = {"SADD", NULL, u->event_id};
                const char *ex[3] = {"EXPIRE", NULL, "345600"};
                if (!store->susage[a->u0 + i].counted)
                        continue;
                if (!(sa[1] = npsd_store_akey(store, a->id, "useen:%d",
                                              (int)npsd_time_day(
                                                      u->occurred_at_ms))))
                        goto oom;
                ex[1] = sa[1];
                if (npsd_store_wcmd(store, 3, sa, NULL, 1, errstr,
                                    errstr_size) ||
                    npsd_store_wcmd(store, 3, ex, NULL, 1, errstr,
                                    errstr_size))
                        return -1;
        }
        /* the counted responses' records, for a replay within replay.days */
        for (size_t i = 0; i < a->rn; i++) {
                const npsd_step_response_t *sr = &store->sresp[a->r0 + i];
                const char *av[5] = {"SET", NULL, sr->snapshot, "EX", NULL};
                size_t al[5];
                if (!sr->counted || !sr->snapshot)
                        continue;
                if (!(av[1] = npsd_store_akey(store, a->id, "out:%s",
                                              sr->resp->event_id)) ||
                    !(av[4] = npsd_store_fmt(
                              store, "%lld",
                              (long long)store->conf->replay_days * 86400LL)))
                        goto oom;
                for (int k = 0; k < 5; k++)
                        al[k] = strlen(av[k]);
                al[2] = sr->snapshot_len;
                if (npsd_store_wcmd(store, 5, av, al, 1, errstr, errstr_size))
                        return -1;
        }
        /* the context hash, replaced whole */
        if (o->account_replaced) {
                const char *key = npsd_store_akey(store, a->id, "account");
                const char *del[2] = {"DEL", key};
                const char *names[64], *vals[64];
                size_t cnt = o->account.cnt < 64 ? o->account.cnt : 64;
                if (!key)
                        goto oom;
                for (size_t i = 0; i < cnt; i++) {
                        names[i] = o->account.v[i].key;
                        vals[i] = o->account.v[i].value;
                }
                if (npsd_store_wcmd(store, 2, del, NULL, 1, errstr,
                                    errstr_size) ||
                    npsd_write_hset(store->w, key, cnt, names, NULL, vals,
                                    NULL, errstr, errstr_size))
                        return -1;
        }
        for (size_t i = 0; i < o->hash_cnt; i++)
                if (npsd_store_write_hash(store, a, &o->hash[i], errstr,
                                          errstr_size))
                        return -1;
        /* alerts: the outbox until the broker has them, and the last ten */
        for (size_t i = 0; i < o->alert_cnt; i++) {
                const npsd_step_alert_t *al = &o->alerts[i];
                const char *ob = npsd_store_akey(store, a->id, "outbox");
                const char *lg = npsd_store_akey(store, a->id, "alert_log");
                const char *hs[4] = {"HSET", ob, al->id, al->payload};
                const char *lp[3] = {"LPUSH", lg, al->payload};
                const char *lt[4] = {"LTRIM", lg, "0", "9"};
                if (!ob || !lg)
                        goto oom;
                if (npsd_store_wcmd(store, 4, hs, NULL, 1, errstr,
                                    errstr_size) ||
                    npsd_store_wcmd(store, 3, lp, NULL, 1, errstr,
                                    errstr_size) ||
                    npsd_store_wcmd(store, 4, lt, NULL, 1, errstr,
                                    errstr_size))
                        return -1;
        }
        if (o->notice[0]) {
                const char *ch = npsd_store_gkey(store, "events");
                const char *pb[3] = {"PUBLISH", ch, o->notice};
                if (!ch)
                        goto oom;
                if (npsd_store_wcmd(store, 3, pb, NULL, 0, errstr,
                                    errstr_size))
                        return -1;
        }
        return 0;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}


/* An account whose write commits a global delta is due on the timer
 * within a minute (ZADD LT: only ever sooner), after the delta calls in
 * the pipeline: if the delta is applied, its own ZADD of the account's
 * next moment comes later and replaces this one; if the instance dies
 * first, the account's tick reads its gq and applies what waits there. */
static int npsd_store_timers_due(npsd_store_t *store) {
        const char *zk = NULL, *at = NULL;

        for (size_t i = store->lo; i < store->hi; i++) {
                const npsd_store_acct_t *a = &store->accts[i];
                const char *av[5] = {"ZADD", NULL, "LT", NULL, a->id};
                if (a->done || a->call < 0 || !a->delta)
                        continue;
                if (!zk && (!(zk = npsd_store_gkey(store, "{g}:timers")) ||
                            !(at = npsd_store_fmt(store, "%" PRId64,
                                                  store->env.now_ms + 60000))))
                        return -1;
                av[1] = zk;
                av[3] = at;
                if (npsd_store_cmd(store, 5, av, NULL) < 0)
                        return -1;
        }
        return 0;
}

/* ---- the guard script ------------------------------------------------ */

/* Loads write.lua on every primary once (again after a NOSCRIPT: a node
 * that restarted or was promoted has an empty script cache), so that calls
 * go as EVALSHA: Redis then neither hashes nor parses the body on every
 * call. Any failure leaves calls as EVAL, which always works. */
static void npsd_store_scripts(npsd_store_t *store) {
        int nodes[64];
        size_t n, len;
        const char *body = npsd_write_script(store->w, &len);
        char sha[41] = "", e[256];

        if (store->sha_ok)
                return;
        npsd_write_use_sha(store->w, NULL);
        if (npsd_cluster_connect(store->cl, e, sizeof(e)))
                return;
        n = npsd_cluster_map_primaries(npsd_cluster_map(store->cl), nodes,
                                       64);
        if (!n || n > 64)
                return;
        for (size_t i = 0; i < n; i++) {
                const char *argv[3] = {"SCRIPT", "LOAD", body};
                size_t lens[3] = {6, 4, len};
                redisReply *r = npsd_cluster_node_command(
                        store->cl, nodes[i], 3, argv, lens, e, sizeof(e));
                int ok = r && r->type == REDIS_REPLY_STRING && r->len == 40;
                if (ok)
                        memcpy(sha, r->str, 41);
                if (r)
                        freeReplyObject(r);
                if (!ok)
                        return;
        }
        npsd_write_use_sha(store->w, sha);
        store->sha_ok = 1;
}

/* After an exec: a node without the script refused its calls; they did
 * not run. Returns -1 with errstr then (the batch is retried, as after any
 * Redis error, with the script loaded again first). */
static int npsd_store_noscript(npsd_store_t *store, char *errstr,
                               size_t errstr_size) {
        if (!npsd_write_noscript(store->w, store->cl))
                return 0;
        store->sha_ok = 0;
        npsd_write_use_sha(store->w, NULL);
        snprintf(errstr, errstr_size,
                 "redis: a node has no write.lua loaded (restarted or "
                 "promoted); loading it again");
        return -1;
}

/* ---- replicas ---------------------------------------------------------- */

/* WAIT on every node the write round trip touched (redis.wait.replicas):
 * offsets are committed only once the replicas hold the writes, so that a
 * primary lost right after cannot take acknowledged input with it. Appends
 * one WAIT per node; *first and *cnt say where their replies are, and
 * store->wait_node[call] the node each write call's WAIT went to. */
static int npsd_store_wait_append(npsd_store_t *store, long *first,
                                  size_t *cnt) {
        const npsd_cluster_map_t *map = npsd_cluster_map(store->cl);
        const char *argv[3] = {"WAIT", NULL, NULL};
        unsigned char seen[1024];
        size_t n = npsd_write_calls(store->w);

        *first = -1;
        *cnt = 0;
        if (store->conf->redis_wait_replicas <= 0 || !n)
                return 0;
        memset(seen, 0, sizeof(seen));
        if (!(store->wait_node = npsd_arena_alloc(
                      &store->arena, sizeof(*store->wait_node) * n)))
                return -1;
        if (!(argv[1] = npsd_store_fmt(store, "%d",
                                       store->conf->redis_wait_replicas)) ||
            /* within the connection's own timeout, so that a shortfall is
             * an answer rather than a dropped connection */
            !(argv[2] = npsd_store_fmt(store, "%d",
                                       store->conf->redis_timeout_ms / 2 + 1)))
                return -1;
        for (size_t i = 0; i < n; i++) {
                const char **av;
                const size_t *al;
                char e[64];
                unsigned slot, node;
                long idx;
                if (npsd_write_argv(store->w, i, &av, &al, e, sizeof(e)) < 0)
                        return -1;
                slot = npsd_cluster_keyslot(av[3], al[3]); /* the guard */
                node = npsd_cluster_enabled(store->cl) ? map->slot_node[slot]
                                                       : 0;
                store->wait_node[i] = (int)node;
                if (node >= sizeof(seen) || seen[node])
                        continue;
                seen[node] = 1;
                {
                        /* the router borrows argv until its exec */
                        const char **av2 = npsd_arena_alloc(
                                &store->arena, sizeof(*av2) * 3);
                        size_t *al2 = npsd_arena_alloc(&store->arena,
                                                       sizeof(*al2) * 3);
                        if (!av2 || !al2)
                                return -1;
                        for (int k = 0; k < 3; k++) {
                                av2[k] = argv[k];
                                al2[k] = strlen(argv[k]);
                        }
                        if ((idx = npsd_cluster_append(store->cl, slot, 3,
                                                       av2, al2)) < 0)
                                return -1;
                }
                if (*first < 0)
                        *first = idx;
                (*cnt)++;
        }
        return 0;
}

/* Every WAIT answered with enough replicas, and every write call ran on
 * the node its WAIT went to: WAIT covers only the writes its own
 * connection sent before it, and a write redirected (MOVED or ASK, as in
 * a failover or a reshard) ran elsewhere, after it. Then the round trip
 * counts as failed, and its guarded writes are repeated. */
static int npsd_store_wait_check(npsd_store_t *store, long first, size_t cnt,
                                 char *errstr, size_t errstr_size) {
        if (first < 0)
                return 0;
        for (size_t i = 0; i < npsd_write_calls(store->w); i++) {
                long idx = npsd_write_reply_index(store->w, i);
                int node = npsd_cluster_reply_node(store->cl, idx);
                if (idx >= 0 && node != store->wait_node[i]) {
                        snprintf(errstr, errstr_size,
                                 "redis WAIT: a write was redirected to "
                                 "another node after its WAIT");
                        return -1;
                }
        }
        for (size_t i = 0; i < cnt; i++) {
                const redisReply *r = npsd_store_reply(store, first + (long)i);
                if (!r || r->type != REDIS_REPLY_INTEGER ||
                    r->integer < store->conf->redis_wait_replicas) {
                        snprintf(errstr, errstr_size,
                                 "redis WAIT: %lld of %d replicas hold the "
                                 "batch's writes",
                                 r && r->type == REDIS_REPLY_INTEGER
                                         ? (long long)r->integer
                                         : -1LL,
                                 store->conf->redis_wait_replicas);
                        return -1;
                }
        }
        return 0;
}

/* ---- a round trip of accounts --------------------------------------------- */

static void npsd_store_now(npsd_store_t *store, int64_t now_ms) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        store->dedupe_period = ts.tv_sec / NPSD_DEDUPE_PERIOD_S;
        store->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        npsd_step_env_init(&store->env, store->conf, store->themes, now_ms);
}

/* Reads, steps and writes the accounts not done yet; repeats for those
 * that lost a version race. */
static int npsd_store_process(npsd_store_t *store, char *errstr,
                              size_t errstr_size) {
        for (int round = 0; round < NPSD_CONFLICT_ROUNDS; round++) {
                long wfirst;
                size_t cleaned, todo = 0, wcnt;

                /* read */
                npsd_cluster_begin(store->cl);
                for (size_t i = store->lo; i < store->hi; i++) {
                        npsd_store_acct_t *a = &store->accts[i];
                        if (a->done)
                                continue;
                        todo++;
                        if (npsd_store_read_append(store, a))
                                goto oom;
                }
                if (!todo)
                        return 0;
                if (npsd_store_exec(store, errstr, errstr_size))
                        return -1;
                /* parse, then the counts where they can have moved */
                for (size_t i = store->lo; i < store->hi; i++) {
                        npsd_store_acct_t *a = &store->accts[i];
                        if (a->done)
                                continue;
                        if (npsd_store_read_parse(store, a, errstr,
                                                  errstr_size) ||
                            npsd_store_dup_snapshots(store, a, errstr,
                                                     errstr_size))
                                return -1;
                }
                if (npsd_store_hll_add(store, errstr, errstr_size) ||
                    npsd_store_counts(store, errstr, errstr_size))
                        return -1;
                /* step */
                for (size_t i = store->lo; i < store->hi; i++) {
                        npsd_store_acct_t *a = &store->accts[i];
                        npsd_step_in_t in;
                        if (a->done)
                                continue;
                        npsd_step_out_free(a->out);
                        memset(&in, 0, sizeof(in));
                        in.account_id = a->id;
                        in.account = &a->account;
                        in.contexts = &store->sctx[a->c0];
                        in.context_cnt = a->cn;
                        in.responses = &store->sresp[a->r0];
                        in.resp_cnt = a->rn;
                        in.usage = &store->susage[a->u0];
                        in.usage_cnt = a->un;
                        in.followups = &store->sfu[a->f0];
                        in.followup_cnt = a->fn;
                        in.counts = a->has_counts ? &a->counts : NULL;
                        in.tick = a->tick;
                        in.refresh = a->refresh;
                        if (npsd_step_account(&store->env, &in, a->st,
                                              a->out, errstr, errstr_size))
                                return -1;
                }
                /* write: the accounts, the waiting deltas, the cleanup */
                npsd_store_scripts(store);
                npsd_write_reset(store->w);
                npsd_cluster_begin(store->cl);
                for (size_t i = store->lo; i < store->hi; i++) {
                        npsd_store_acct_t *a = &store->accts[i];
                        if (a->done)
                                continue;
                        if (npsd_store_write_account(store, a, errstr,
                                                     errstr_size))
                                return -1;
                }
                if (npsd_store_deltas_append(store, errstr, errstr_size) ||
                    npsd_store_cleanup_append(store, &cleaned) ||
                    npsd_write_append(store->w, store->cl, errstr,
                                      errstr_size) ||
                    npsd_store_timers_due(store) ||
                    npsd_store_wait_append(store, &wfirst, &wcnt))
                        return -1;
                if (npsd_store_exec(store, errstr, errstr_size) ||
                    npsd_store_noscript(store, errstr, errstr_size) ||
                    npsd_store_wait_check(store, wfirst, wcnt, errstr,
                                          errstr_size))
                        return -1;
                npsd_store_cleanup_done(store, cleaned);
                npsd_store_deltas_result(store);
                for (size_t i = store->lo; i < store->hi; i++) {
                        npsd_store_acct_t *a = &store->accts[i];
                        npsd_write_cur_t cur;
                        npsd_write_status_t st;
                        if (a->done)
                                continue;
                        if (a->call < 0) {
                                a->done = 1;
                                continue;
                        }
                        st = npsd_write_call_result(store->w, (size_t)a->call,
                                                    store->cl, &cur, errstr,
                                                    errstr_size);
                        if (st == NPSD_WRITE_CONFLICT) {
                                store->conflicts++;
                                continue; /* read again, step again */
                        }
                        if (st != NPSD_WRITE_APPLIED)
                                return -1;
                        a->done = 1;
                        if (a->delta &&
                            npsd_store_delta_add(store, a->id, a->st->gseq,
                                                 a->delta, a->delta_len))
                                goto oom;
                        for (size_t k = 0; k < a->out->alert_cnt; k++) {
                                const npsd_step_alert_t *al = &a->out->alerts[k];
                                npsd_store_pending_alert_t *p;
                                if (npsd_store_grow((void **)&store->alerts,
                                                    &store->alert_size,
                                                    store->alert_cnt + 1,
                                                    sizeof(*store->alerts)))
                                        goto oom;
                                p = &store->alerts[store->alert_cnt];
                                p->id = strdup(al->id);
                                p->account = strdup(a->id);
                                p->payload = malloc(al->len + 1);
                                if (!p->id || !p->account || !p->payload) {
                                        free(p->id);
                                        free(p->account);
                                        free(p->payload);
                                        goto oom;
                                }
                                memcpy(p->payload, al->payload, al->len + 1);
                                p->len = al->len;
                                store->alert_cnt++;
                        }
                }
        }
        snprintf(errstr, errstr_size,
                 "redis: accounts still in a version race after %d rounds",
                 NPSD_CONFLICT_ROUNDS);
        return -1;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}

int npsd_store_apply(npsd_store_t *store, int64_t now_ms,
                     const npsd_store_batch_t *batch, char *errstr,
                     size_t errstr_size) {
        npsd_store_round_begin(store);
        npsd_store_now(store, now_ms);
        if (npsd_store_gather(store, batch)) {
                snprintf(errstr, errstr_size, "redis: out of memory");
                return -1;
        }
        /* a slice of accounts at a time: a batch of thousands of accounts
         * would otherwise hold every account's state, views and words at
         * once (a slice is one read and one write round trip) */
        for (store->lo = 0; store->lo < store->acct_cnt;
             store->lo = store->hi) {
                store->hi = store->lo + NPSD_STORE_SLICE < store->acct_cnt
                                    ? store->lo + NPSD_STORE_SLICE
                                    : store->acct_cnt;
                npsd_arena_reset(&store->arena);
                if (npsd_store_work_bind(store)) {
                        snprintf(errstr, errstr_size, "redis: out of memory");
                        return -1;
                }
                if (npsd_store_process(store, errstr, errstr_size)) {
                        store->recount_all = 1;
                        return -1;
                }
                npsd_store_work_release(store);
                for (size_t i = store->lo; i < store->hi; i++) {
                        npsd_store_acct_t *a = &store->accts[i];
                        npsd_kvs_free(&a->account);
                        free(a->delta);
                        a->delta = NULL;
                }
        }
        store->recount_all = 0;
        for (size_t i = 0; i < store->sresp_cnt; i++) {
                const npsd_step_response_t *sr = &store->sresp[i];
                npsd_store_result_t *res =
                        &batch->results[store->sresp_batch[i]];
                res->counted = sr->counted;
                res->snapshot = sr->snapshot;
                res->snapshot_len = sr->snapshot_len;
                res->snapshot_json = sr->counted ? sr->snapshot_json : NULL;
                /* a repeat within the batch reads as its first copy */
                if (!sr->counted && !sr->snapshot)
                        for (size_t j = 0; j < store->sresp_cnt; j++)
                                if (store->sresp[j].counted &&
                                    !strcmp(store->sresp[j].resp->event_id,
                                            sr->resp->event_id) &&
                                    !strcmp(store->sresp[j].resp->account_id,
                                            sr->resp->account_id)) {
                                        res->snapshot = store->sresp[j].snapshot;
                                        res->snapshot_len =
                                                store->sresp[j].snapshot_len;
                                        res->snapshot_json = NULL;
                                        break;
                                }
        }
        return 0;
}

/* ---- alerts --------------------------------------------------------------- */

size_t npsd_store_outbox_len(const npsd_store_t *store) {
        return store->alert_cnt;
}

int npsd_store_outbox_fetch(npsd_store_t *store, int max,
                            npsd_store_alert_t *alerts, char *errstr,
                            size_t errstr_size) {
        size_t n = store->alert_cnt < (size_t)max ? store->alert_cnt
                                                  : (size_t)max;

        (void)errstr;
        (void)errstr_size;
        for (size_t i = 0; i < n; i++) {
                alerts[i].id = store->alerts[i].id;
                alerts[i].payload = store->alerts[i].payload;
                alerts[i].len = store->alerts[i].len;
        }
        store->alerts_handed = n;
        return (int)n;
}

int npsd_store_outbox_ack(npsd_store_t *store,
                          const npsd_store_alert_t *alerts, size_t cnt,
                          char *errstr, size_t errstr_size) {
        if (!cnt)
                return 0;
        npsd_arena_reset(&store->arena);
        npsd_cluster_begin(store->cl);
        for (size_t i = 0; i < cnt && i < store->alerts_handed; i++) {
                const char *argv[3] = {"HDEL", NULL, alerts[i].id};
                if (!(argv[1] = npsd_store_akey(store,
                                                store->alerts[i].account,
                                                "outbox")) ||
                    npsd_store_cmd(store, 3, argv, NULL) < 0) {
                        snprintf(errstr, errstr_size, "redis: out of memory");
                        return -1;
                }
        }
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        npsd_store_alerts_drop(store, cnt < store->alerts_handed
                                              ? cnt
                                              : store->alerts_handed);
        store->alerts_handed = 0;
        return 0;
}

/* ---- timers --------------------------------------------------------------- */

/* Applies waiting global deltas with no batch (between batches, so that
 * cohort views trail accounts by about a second). */
int npsd_store_flush(npsd_store_t *store, char *errstr,
                     size_t errstr_size) {
        long wfirst;
        size_t cleaned, wcnt;

        if (!store->delta_cnt && !store->cleanup_cnt)
                return 0;
        npsd_arena_reset(&store->arena);
        npsd_store_scripts(store);
        npsd_write_reset(store->w);
        npsd_cluster_begin(store->cl);
        if (npsd_store_deltas_append(store, errstr, errstr_size) ||
            npsd_store_cleanup_append(store, &cleaned) ||
            npsd_write_append(store->w, store->cl, errstr, errstr_size) ||
            npsd_store_wait_append(store, &wfirst, &wcnt))
                return -1;
        /* the deltas' gq entries go only after replicas hold them applied */
        if (npsd_store_exec(store, errstr, errstr_size) ||
            npsd_store_noscript(store, errstr, errstr_size) ||
            npsd_store_wait_check(store, wfirst, wcnt, errstr, errstr_size))
                return -1;
        npsd_store_cleanup_done(store, cleaned);
        npsd_store_deltas_result(store);
        return 0;
}

int npsd_store_roll(npsd_store_t *store, int64_t now_ms, int max,
                    char *errstr, size_t errstr_size) {
        const redisReply *r;
        const char *argv[8];
        long idx;
        int n = 0;

        if (npsd_store_flush(store, errstr, errstr_size))
                return -1;
        npsd_store_round_begin(store);
        npsd_store_now(store, now_ms);
        argv[0] = "ZRANGEBYSCORE";
        if (!(argv[1] = npsd_store_gkey(store, "{g}:timers")) ||
            !(argv[3] = npsd_store_fmt(store, "(%" PRId64, now_ms)) ||
            !(argv[7] = npsd_store_fmt(store, "%d", max)))
                goto oom;
        argv[2] = "-inf";
        argv[4] = "WITHSCORES";
        argv[5] = "LIMIT";
        argv[6] = "0";
        npsd_cluster_begin(store->cl);
        if ((idx = npsd_store_cmd(store, 8, argv, NULL)) < 0)
                goto oom;
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        r = npsd_store_reply(store, idx);
        if (!r || r->type != REDIS_REPLY_ARRAY)
                return npsd_store_bad(errstr, errstr_size, "ZRANGEBYSCORE", r);
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
                npsd_store_acct_t *a = npsd_store_acct(store, r->element[i]->str);
                if (!a)
                        goto oom;
                a->tick = 1;
                /* a timer of 0 is an operator's (or a test's) request to
                 * write the account's views whole; npsd never sets one */
                a->refresh = npsd_store_int(r->element[i + 1]) == 0;
                a->slot = npsd_store_slot(npsd_store_akey(store, a->id, "st"));
                n++;
        }
        if (!n)
                return 0;
        store->lo = 0;
        store->hi = store->acct_cnt;
        if (npsd_store_work_bind(store))
                goto oom;
        if (npsd_store_process(store, errstr, errstr_size))
                return -1;
        /* alerts left in the accounts' outboxes (a crash before the broker
         * had them); and timers of accounts whose tick changed nothing */
        npsd_cluster_begin(store->cl);
        for (size_t i = 0; i < store->acct_cnt; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                if (a->call < 0) {
                        const char *zk = npsd_store_gkey(store, "{g}:timers");
                        if (a->out->next_timer_ms >= 0) {
                                const char *av[4] = {"ZADD", zk, NULL, a->id};
                                if (!(av[2] = npsd_store_fmt(
                                              store, "%" PRId64,
                                              a->out->next_timer_ms)) ||
                                    npsd_store_cmd(store, 4, av, NULL) < 0)
                                        goto oom;
                        } else {
                                const char *av[3] = {"ZREM", zk, a->id};
                                if (npsd_store_cmd(store, 3, av, NULL) < 0)
                                        goto oom;
                        }
                }
                {
                        const char *av[2] = {"HGETALL", NULL};
                        if (!(av[1] = npsd_store_akey(store, a->id, "outbox")) ||
                            (a->rx_outbox = npsd_store_cmd(store, 2, av, NULL)) < 0)
                                goto oom;
                }
        }
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        for (size_t i = 0; i < store->acct_cnt; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                const redisReply *ob = npsd_store_reply(store, a->rx_outbox);
                if (!ob || ob->type != REDIS_REPLY_ARRAY)
                        continue;
                for (size_t k = 0; k + 1 < ob->elements; k += 2) {
                        int known = 0;
                        npsd_store_pending_alert_t *p;
                        for (size_t j = 0; j < store->alert_cnt && !known; j++)
                                known = !strcmp(store->alerts[j].id,
                                                ob->element[k]->str);
                        if (known)
                                continue;
                        if (npsd_store_grow((void **)&store->alerts,
                                            &store->alert_size,
                                            store->alert_cnt + 1,
                                            sizeof(*store->alerts)))
                                goto oom;
                        p = &store->alerts[store->alert_cnt];
                        p->id = strdup(ob->element[k]->str);
                        p->account = strdup(a->id);
                        p->payload = strdup(ob->element[k + 1]->str);
                        p->len = ob->element[k + 1]->len;
                        if (!p->id || !p->account || !p->payload) {
                                free(p->id);
                                free(p->account);
                                free(p->payload);
                                goto oom;
                        }
                        store->alert_cnt++;
                }
        }
        return n;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}

/* ---- cohort, theme and owner views ---------------------------------------- */

/* Starts replacing a whole view: the new content goes into a key of the
 * same slot, which RENAME then puts in the view's place, so a dashboard
 * never finds the view missing or half written (DEL then HSET would show
 * it missing between the two, as Redis may serve other clients between
 * two commands of a pipeline). Appends the DEL of that key and returns its
 * name in *tmp_out, or the view's own name when no such name exists (a
 * view key with braces that make no hash tag of the whole name, or one too
 * long): the view is then deleted and written in place. Returns 0, or -1
 * out of memory. */
static int npsd_store_view_begin(npsd_store_t *store, const char *key,
                                 const char **tmp_out) {
        unsigned slot = npsd_store_slot(key);
        const char *tmp = npsd_store_fmt(store, "%s:new", key);
        const char *del[2] = {"DEL", NULL};

        /* a key with a hash tag keeps it with a suffix; one without gets
         * its whole name as the tag (NULL: the name would be too long) */
        if (!tmp || npsd_store_slot(tmp) != slot)
                tmp = npsd_store_fmt(store, "{%s}:new", key);
        if (!tmp || npsd_store_slot(tmp) != slot)
                tmp = key;
        del[1] = tmp;
        *tmp_out = tmp;
        return npsd_store_cmd(store, 2, del, NULL) < 0 ? -1 : 0;
}

/* Ends npsd_store_view_begin(): the written key takes the view's place. */
static int npsd_store_view_end(npsd_store_t *store, const char *key,
                               const char *tmp) {
        const char *ren[3] = {"RENAME", tmp, key};

        if (tmp == key)
                return 0;
        return npsd_store_cmd(store, 3, ren, NULL) < 0 ? -1 : 0;
}

/* A view left with no content: deleted (a field with no data is absent). */
static int npsd_store_view_drop(npsd_store_t *store, const char *key) {
        const char *del[2] = {"DEL", key};

        return npsd_store_cmd(store, 2, del, NULL) < 0 ? -1 : 0;
}

/* The window hashes of one cohort from its day buckets ("<day>:<slot>" ->
 * count), each replaced whole (npsd_store_view_begin()); buckets no window
 * needs any more are dropped. */
static int npsd_store_cohort_view(npsd_store_t *store, const char *name,
                                  const redisReply *d, char *errstr,
                                  size_t errstr_size) {
        npsd_buckets_t b;
        npsd_totals_t t;
        npsd_fields_t f;
        const npsd_periods_t *pe = &store->env.periods;
        int32_t oldest = store->env.today - 2 * pe->long_days + 1;
        const char **stale;
        size_t ns = 0;
        int rc = -1;

        npsd_buckets_init(&b);
        if (!(stale = npsd_arena_alloc(&store->arena,
                                       sizeof(*stale) * (d->elements / 2 + 1))))
                goto done;
        for (size_t i = 0; i + 1 < d->elements; i += 2) {
                int day;
                unsigned slot;
                long long cnt = strtoll(d->element[i + 1]->str, NULL, 10);
                if (sscanf(d->element[i]->str, "%d:%u", &day, &slot) != 2)
                        continue;
                if (day < oldest) {
                        stale[ns++] = d->element[i]->str;
                        continue;
                }
                if (cnt > 0 && npsd_buckets_add(&b, day, slot, (uint32_t)cnt))
                        goto done;
        }
        npsd_buckets_totals(&b, pe, store->env.today, &t);
        for (int w = 0; w < pe->window_cnt; w++) {
                const char *key = npsd_store_gkey(store, "cohort:%s:w:%dd",
                                                  name, pe->window_days[w]);
                const char *tmp;
                const char **av;
                npsd_view_window(t.t[w], store->conf->low_confidence_n, &f);
                if (!key)
                        goto done;
                if (!f.cnt) {
                        if (npsd_store_view_drop(store, key))
                                goto done;
                        continue;
                }
                if (npsd_store_view_begin(store, key, &tmp) ||
                    !(av = npsd_arena_alloc(&store->arena,
                                            sizeof(*av) * (2 + 2 * f.cnt))))
                        goto done;
                av[0] = "HSET";
                av[1] = tmp;
                for (size_t i = 0; i < f.cnt; i++) {
                        av[2 + 2 * i] = npsd_arena_strn(
                                &store->arena, f.f[i].name,
                                strlen(f.f[i].name));
                        av[3 + 2 * i] = npsd_arena_strn(
                                &store->arena, f.f[i].value,
                                strlen(f.f[i].value));
                        if (!av[2 + 2 * i] || !av[3 + 2 * i])
                                goto done;
                }
                if (npsd_store_cmd(store, 2 + 2 * (int)f.cnt, av, NULL) < 0 ||
                    npsd_store_view_end(store, key, tmp))
                        goto done;
        }
        if (ns) {
                const char **av = npsd_arena_alloc(&store->arena,
                                                   sizeof(*av) * (ns + 2));
                if (!av)
                        goto done;
                av[0] = "HDEL";
                if (!(av[1] = npsd_store_gkey(store, "{g}:cohort:%s:d", name)))
                        goto done;
                memcpy(av + 2, stale, ns * sizeof(*av));
                if (npsd_store_cmd(store, (int)ns + 2, av, NULL) < 0)
                        goto done;
        }
        rc = 0;
done:
        npsd_buckets_free(&b);
        if (rc)
                snprintf(errstr, errstr_size, "redis: out of memory");
        return rc;
}

/* A category's theme rankings per window from its day counts ("<day>:
 * <theme>" -> count), each replaced whole (npsd_store_view_begin()). */
static int npsd_store_theme_view(npsd_store_t *store, const char *cat,
                                 const redisReply *d, char *errstr,
                                 size_t errstr_size) {
        const npsd_periods_t *pe = &store->env.periods;
        int32_t today = store->env.today;
        int32_t oldest = today - 2 * pe->long_days + 1;
        const char **stale = npsd_arena_alloc(
                &store->arena, sizeof(*stale) * (d->elements / 2 + 2));
        size_t ns = 2;

        /* days no window can hold any more go, as a cohort's do */
        if (!stale)
                goto oom;
        for (size_t i = 0; i + 1 < d->elements; i += 2)
                if (atoi(d->element[i]->str) < oldest)
                        stale[ns++] = d->element[i]->str;
        if (ns > 2) {
                stale[0] = "HDEL";
                if (!(stale[1] = npsd_store_gkey(store, "{g}:themes:%s:d",
                                                 cat)) ||
                    npsd_store_cmd(store, (int)ns, stale, NULL) < 0)
                        goto oom;
        }
        for (int w = 0; w < pe->window_cnt; w++) {
                const char *key = npsd_store_gkey(store, "themes:%s:w:%dd",
                                                  cat, pe->window_days[w]);
                const char *tmp;
                const char **av = npsd_arena_alloc(
                        &store->arena, sizeof(*av) * (2 + d->elements));
                long long *sum = calloc(d->elements / 2 + 1, sizeof(*sum));
                int n = 0;
                if (!key || !av || !sum) {
                        free(sum);
                        goto oom;
                }
                /* sum per theme: the same theme on several days */
                for (size_t i = 0; i + 1 < d->elements; i += 2) {
                        const char *f = d->element[i]->str;
                        const char *th = strchr(f, ':');
                        int day = atoi(f);
                        if (!th || day > today ||
                            day <= today - pe->window_days[w])
                                continue;
                        th++;
                        {
                                int found = -1;
                                for (int k = 0; k < n && found < 0; k++)
                                        if (!strcmp(av[3 + 2 * k], th))
                                                found = k;
                                if (found < 0) {
                                        found = n++;
                                        av[3 + 2 * found] = th;
                                }
                                sum[found] += strtoll(d->element[i + 1]->str,
                                                      NULL, 10);
                        }
                }
                for (int k = 0; k < n; k++)
                        if (!(av[2 + 2 * k] = npsd_store_fmt(store, "%lld",
                                                             sum[k]))) {
                                free(sum);
                                goto oom;
                        }
                free(sum);
                if (!n) {
                        if (npsd_store_view_drop(store, key))
                                goto oom;
                        continue;
                }
                if (npsd_store_view_begin(store, key, &tmp))
                        goto oom;
                av[0] = "ZADD";
                av[1] = tmp;
                if (npsd_store_cmd(store, 2 + 2 * n, av, NULL) < 0 ||
                    npsd_store_view_end(store, key, tmp))
                        goto oom;
        }
        return 0;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}

int npsd_store_cohorts(npsd_store_t *store, int64_t now_ms, int max,
                       char *errstr, size_t errstr_size) {
        const redisReply *r, *names;
        const char *argv[8];
        char wins[128];
        long i_rolled, i_pop, i_left;
        size_t off = 0;
        long *rx;

        if (npsd_store_flush(store, errstr, errstr_size))
                return -1;
        npsd_store_round_begin(store);
        npsd_store_now(store, now_ms);
        for (int w = 0; w < store->env.periods.window_cnt; w++)
                off += (size_t)snprintf(wins + off, sizeof(wins) - off, "%s%d",
                                        w ? "," : "",
                                        store->env.periods.window_days[w]);
        /* a new day, or other windows: every view rolls */
        npsd_cluster_begin(store->cl);
        argv[0] = "GET";
        if (!(argv[1] = npsd_store_gkey(store, "{g}:rolled")) ||
            (i_rolled = npsd_store_cmd(store, 2, argv, NULL)) < 0)
                goto oom;
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        r = npsd_store_reply(store, i_rolled);
        {
                char want[160];
                snprintf(want, sizeof(want), "%d/%s", (int)store->env.today,
                         wins);
                if (!r || r->type != REDIS_REPLY_STRING ||
                    strcmp(r->str, want) || store->refresh_all) {
                        const char *dk = npsd_store_gkey(store, "{g}:dirty");
                        const char *su[4] = {"SUNIONSTORE", dk, dk, NULL};
                        const char *sa[6] = {"SADD", dk, "themes:detractor",
                                             "themes:passive",
                                             "themes:promoter", NULL};
                        const char *se[3] = {"SET", NULL, want};
                        int day = r && r->type == REDIS_REPLY_STRING
                                          ? atoi(r->str)
                                          : -1;
                        npsd_cluster_begin(store->cl);
                        if (!dk ||
                            !(su[3] = npsd_store_gkey(store, "{g}:cohorts")) ||
                            npsd_store_cmd(store, 4, su, NULL) < 0 ||
                            npsd_store_cmd(store, 5, sa, NULL) < 0)
                                goto oom;
                        /* never back: an instance with a clock behind */
                        if (day <= store->env.today) {
                                if (!(se[1] = npsd_store_gkey(store,
                                                              "{g}:rolled")) ||
                                    npsd_store_cmd(store, 3, se, NULL) < 0)
                                        goto oom;
                        }
                        if (npsd_store_exec(store, errstr, errstr_size))
                                return -1;
                        store->refresh_all = 0;
                }
        }
        npsd_cluster_begin(store->cl);
        argv[0] = "SPOP";
        if (!(argv[1] = npsd_store_gkey(store, "{g}:dirty")) ||
            !(argv[2] = npsd_store_fmt(store, "%d", max)) ||
            (i_pop = npsd_store_cmd(store, 3, argv, NULL)) < 0)
                goto oom;
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        names = npsd_store_reply(store, i_pop);
        if (!names || names->type != REDIS_REPLY_ARRAY)
                return npsd_store_bad(errstr, errstr_size, "SPOP", names);
        if (!names->elements)
                return 0;
        /* the popped names are in this pipeline's replies until the next
         * begin: copy them */
        {
                size_t cnt = names->elements;
                const char **nm = npsd_arena_alloc(&store->arena,
                                                   sizeof(*nm) * cnt);
                if (!nm || !(rx = npsd_arena_alloc(&store->arena,
                                                   sizeof(*rx) * cnt)))
                        goto oom;
                for (size_t i = 0; i < cnt; i++)
                        if (!(nm[i] = npsd_arena_strn(&store->arena,
                                                      names->element[i]->str,
                                                      names->element[i]->len)))
                                goto oom;
                npsd_cluster_begin(store->cl);
                for (size_t i = 0; i < cnt; i++) {
                        argv[0] = "HGETALL";
                        if (!strncmp(nm[i], "themes:", 7))
                                argv[1] = npsd_store_gkey(store, "{g}:%s:d",
                                                          nm[i]);
                        else if (!strncmp(nm[i], "csm:", 4)) {
                                argv[0] = "HMGET";
                                argv[1] = npsd_store_gkey(store, "{g}:csm");
                        } else
                                argv[1] = npsd_store_gkey(store,
                                                          "{g}:cohort:%s:d",
                                                          nm[i]);
                        if (!argv[1])
                                goto oom;
                        if (argv[0][0] == 'H' && argv[0][1] == 'M') {
                                static const char *const cf[5] = {
                                        "accounts", "open_detractors",
                                        "overdue_followups", "loops_closed",
                                        "loops_closed_on_time"};
                                for (int k = 0; k < 5; k++)
                                        if (!(argv[2 + k] = npsd_store_fmt(
                                                      store, "%s\t%s",
                                                      nm[i] + 4, cf[k])))
                                                goto oom;
                                rx[i] = npsd_store_cmd(store, 7, argv, NULL);
                        } else {
                                rx[i] = npsd_store_cmd(store, 2, argv, NULL);
                        }
                        if (rx[i] < 0)
                                goto oom;
                }
                if (npsd_store_exec(store, errstr, errstr_size))
                        return -1;
                {
                        /* the next begin frees the replies: the views are
                         * built from copies of them */
                        size_t total = cnt;
                        redisReply **copies = calloc(total, sizeof(*copies));
                        int rc = 0;
                        if (!copies)
                                goto oom;
                        for (size_t i = 0; i < total; i++) {
                                const redisReply *src =
                                        npsd_store_reply(store, rx[i]);
                                /* keep the reply alive across begin: a deep
                                 * copy of the strings into the arena */
                                redisReply *c;
                                if (!src || src->type != REDIS_REPLY_ARRAY)
                                        continue;
                                c = npsd_arena_alloc(&store->arena, sizeof(*c));
                                if (!c) {
                                        rc = -1;
                                        break;
                                }
                                memset(c, 0, sizeof(*c));
                                c->type = REDIS_REPLY_ARRAY;
                                c->elements = src->elements;
                                c->element = npsd_arena_alloc(
                                        &store->arena,
                                        sizeof(*c->element) *
                                                (src->elements + 1));
                                if (!c->element) {
                                        rc = -1;
                                        break;
                                }
                                for (size_t k = 0; k < src->elements; k++) {
                                        redisReply *e = npsd_arena_alloc(
                                                &store->arena, sizeof(*e));
                                        const redisReply *s = src->element[k];
                                        if (!e) {
                                                rc = -1;
                                                break;
                                        }
                                        memset(e, 0, sizeof(*e));
                                        e->type = s->type;
                                        if (s->type == REDIS_REPLY_STRING) {
                                                e->str = (char *)npsd_arena_strn(
                                                        &store->arena, s->str,
                                                        s->len);
                                                e->len = s->len;
                                                if (!e->str) {
                                                        rc = -1;
                                                        break;
                                                }
                                        }
                                        c->element[k] = e;
                                }
                                copies[i] = c;
                        }
                        if (rc) {
                                free(copies);
                                goto oom;
                        }
                        npsd_cluster_begin(store->cl);
                        for (size_t i = 0; i < total && !rc; i++) {
                                if (!copies[i])
                                        continue;
                                if (!strncmp(nm[i], "themes:", 7))
                                        rc = npsd_store_theme_view(
                                                store, nm[i] + 7, copies[i],
                                                errstr, errstr_size);
                                else if (!strncmp(nm[i], "csm:", 4)) {
                                        static const char *const cf[5] = {
                                                "accounts", "open_detractors",
                                                "overdue_followups",
                                                "loops_closed",
                                                "loops_closed_on_time"};
                                        const char *av[12];
                                        int ac = 2;
                                        av[0] = "HSET";
                                        av[1] = npsd_store_gkey(store, "csm:%s",
                                                                nm[i] + 4);
                                        for (int k = 0; k < 5; k++) {
                                                const redisReply *e =
                                                        copies[i]->element[k];
                                                av[ac++] = cf[k];
                                                av[ac++] = e->type ==
                                                                   REDIS_REPLY_STRING
                                                                   ? e->str
                                                                   : "0";
                                        }
                                        if (!av[1] ||
                                            npsd_store_cmd(store, ac, av,
                                                           NULL) < 0)
                                                rc = -1;
                                } else
                                        rc = npsd_store_cohort_view(
                                                store, nm[i], copies[i],
                                                errstr, errstr_size);
                        }
                        free(copies);
                        if (rc)
                                return -1;
                }
        }
        argv[0] = "SCARD";
        if (!(argv[1] = npsd_store_gkey(store, "{g}:dirty")) ||
            (i_left = npsd_store_cmd(store, 2, argv, NULL)) < 0)
                goto oom;
        if (npsd_store_exec(store, errstr, errstr_size))
                return -1;
        return (int)npsd_store_int(npsd_store_reply(store, i_left));
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}
