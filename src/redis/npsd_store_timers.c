/*
 * npsd_store_timers — between batches: the waiting global deltas applied,
 * and the accounts whose timer is due (loop deadlines, windows that move
 * on a new day, outboxes to publish again) stepped as ticks.
 */
#include "npsd_store_int.h"

/* ---- timers --------------------------------------------------------------- */

/* Applies waiting global deltas with no batch (between batches, so that
 * cohort views trail accounts by about a second). On a standalone Redis a
 * round trip first WATCHes and reads their fences, so that the groups
 * found passing go as one transaction too (npsd_store_watch_append()):
 * the flush applies the last slice of every batch. */
int npsd_store_flush(npsd_store_t *store, char *errstr,
                     size_t errstr_size) {
        size_t cleaned;

        if (!store->delta_cnt && !store->cleanup_cnt)
                return 0;
        npsd_arena_reset(&store->arena);
        npsd_cluster_begin(store->cl);
        if (npsd_store_watch_append(store, 0, 0)) {
                snprintf(errstr, errstr_size, "redis: out of memory");
                return -1;
        }
        if (store->watch_idx >= 0) {
                if (npsd_store_exec(store, errstr, errstr_size))
                        return -1;
                npsd_store_watch_read(store);
        }
        npsd_store_scripts(store);
        npsd_write_reset(store->w);
        npsd_write_use_multi(store->w, npsd_store_watch_held(store));
        npsd_cluster_begin(store->cl);
        if (npsd_store_deltas_append(store, errstr, errstr_size) ||
            npsd_store_cleanup_append(store, &cleaned) ||
            npsd_write_append(store->w, store->cl, errstr, errstr_size) ||
            npsd_store_wait_append(store, 0))
                return -1;
        /* the deltas' gq entries go only after replicas hold them applied */
        if (npsd_store_exec(store, errstr, errstr_size) ||
            npsd_store_noscript(store, errstr, errstr_size) ||
            npsd_store_wait_check(store, errstr, errstr_size)) {
                npsd_store_watch_end(store, 0);
                return -1;
        }
        npsd_store_cleanup_done(store, cleaned);
        npsd_store_watch_end(store, npsd_store_deltas_result(store));
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
                        for (size_t j = 0; j < store->alert_cnt && !known; j++)
                                known = !strcmp(store->alerts[j].id,
                                                ob->element[k]->str);
                        if (!known &&
                            npsd_store_alert_keep(store, ob->element[k]->str,
                                                  a->id,
                                                  ob->element[k + 1]->str,
                                                  ob->element[k + 1]->len))
                                goto oom;
                }
        }
        return n;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}
