/*
 * npsd_store_read — the read round trip of a slice of accounts: state
 * records and versions, contexts, global deltas not yet known applied,
 * dedupe markers, snapshots of responses seen before; then the usage
 * HyperLogLog additions and the distinct counts that can have moved.
 */
#include "npsd_store_int.h"

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

/* What usage event k of account a adds to the day HyperLogLogs: 0 nothing
 * (a repeat, or a day no window holds), 1 its user, 2 its user and its
 * feature; *day its day. */
static int npsd_store_hll_parts(const npsd_store_t *store,
                                const npsd_store_acct_t *a, size_t k,
                                int32_t *day) {
        const npsd_usage_t *u = store->susage[a->u0 + k].ev;
        int32_t today = store->env.today;

        *day = npsd_time_day(u->occurred_at_ms);
        if (!npsd_store_usage_fresh(store, a, k) || *day <= today - 31 ||
            *day > today + 1)
                return 0;
        return u->type == NPSD_USAGE_FEATURE_USED && u->feature &&
                               *u->feature
                       ? 2
                       : 1;
}

/* The day HyperLogLogs of active users and features get the users and
 * features of the events that count (after dedupe: an event id reused
 * with another user adds nobody). Outside the guarded write: a PFADD adds
 * only what is true, so one that lands for a write that then loses its
 * version race changes no count. Sets pf_moved where a register moved. */
int npsd_store_hll_add(npsd_store_t *store, char *errstr,
                       size_t errstr_size) {
        int32_t today = store->env.today;
        const char *ttl;
        long *rx;
        size_t n = 0;

        for (size_t i = store->lo; i < store->hi; i++)
                if (!store->accts[i].done)
                        n += store->accts[i].un * 2;
        if (!n)
                return 0;
        if (!(rx = npsd_arena_alloc(&store->arena, sizeof(*rx) * n)) ||
            !(ttl = npsd_store_fmt(store, "%d", NPSD_HLL_TTL_S)))
                goto oom;
        npsd_cluster_begin(store->cl);
        n = 0;
        for (size_t i = store->lo; i < store->hi; i++) {
                npsd_store_acct_t *a = &store->accts[i];
                if (a->done)
                        continue;
                for (size_t k = 0; k < a->un; k++) {
                        const npsd_usage_t *u = store->susage[a->u0 + k].ev;
                        int32_t day;
                        int parts = npsd_store_hll_parts(store, a, k, &day);
                        for (int p = 0; p < parts; p++) {
                                const char *pf[3] = {
                                        "PFADD", NULL,
                                        p ? u->feature : u->user_id};
                                const char *ex[3] = {"EXPIRE", NULL, ttl};
                                if (!(pf[1] = npsd_store_akey(
                                              store, a->id, "%s:%d",
                                              p ? "ft" : "au", (int)day)) ||
                                    (rx[n++] = npsd_store_cmd(store, 3, pf,
                                                              NULL)) < 0)
                                        goto oom;
                                ex[1] = pf[1];
                                if (npsd_store_cmd(store, 3, ex, NULL) < 0)
                                        goto oom;
                        }
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
                        int32_t day;
                        int parts = npsd_store_hll_parts(store, a, k, &day);
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
int npsd_store_read_append(npsd_store_t *store, npsd_store_acct_t *a) {
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

int npsd_store_read_parse(npsd_store_t *store, npsd_store_acct_t *a,
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
int npsd_store_dup_snapshots(npsd_store_t *store,
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
int npsd_store_counts(npsd_store_t *store, char *errstr,
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
