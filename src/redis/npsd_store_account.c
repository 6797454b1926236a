/*
 * npsd_store_account — the guarded write of one account (write.lua "cas"
 * on the version read, or on a standalone Redis a cas call that goes in
 * the slice's transaction, npsd_store_watch.c): its state record, dedupe
 * markers, snapshots, changed view fields, alerts and global delta in one
 * atomic call; and the loading of write.lua (EVALSHA, NOSCRIPT).
 */
#include "npsd_store_int.h"

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
int npsd_store_write_account(npsd_store_t *store, npsd_store_acct_t *a,
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
        /* alerts: the outbox until the broker has them, and the last ten
         * (without the account's context: the card shows it once) */
        for (size_t i = 0; i < o->alert_cnt; i++) {
                const npsd_step_alert_t *al = &o->alerts[i];
                const char *ob = npsd_store_akey(store, a->id, "outbox");
                const char *lg = npsd_store_akey(store, a->id, "alert_log");
                const char *hs[4] = {"HSET", ob, al->id, al->payload};
                const char *lp[3] = {"LPUSH", lg, al->log};
                const size_t lpl[3] = {5, strlen(lg), al->log_len};
                const char *lt[4] = {"LTRIM", lg, "0", "9"};
                if (!ob || !lg)
                        goto oom;
                if (npsd_store_wcmd(store, 4, hs, NULL, 1, errstr,
                                    errstr_size) ||
                    npsd_store_wcmd(store, 3, lp, lpl, 1, errstr,
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
int npsd_store_timers_due(npsd_store_t *store) {
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
void npsd_store_scripts(npsd_store_t *store) {
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
int npsd_store_noscript(npsd_store_t *store, char *errstr,
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
