/*
 * npsd_store_watch — the guard without a script, on a standalone Redis:
 * the read WATCHes what the write will check, so that the write goes as
 * one MULTI/EXEC of plain commands, which EXEC runs only when nothing
 * watched changed since (npsd_write_use_multi()).
 *
 * A write.lua call costs Redis about twice its commands: Lua's argument
 * tables, a redis.call per command, the script's own checks. Watched are
 *   - the state records of the slice's accounts: their cas calls go in
 *     the transaction, checked by EXEC instead of by the script;
 *   - the fence hashes of the global deltas waiting ({g} and the two
 *     ranks), with the fields of those deltas read: the groups found
 *     passing (the {g} fence at seq - 1, a rank's below seq) go in the
 *     transaction (npsd_write_groups_checked()); a "groups all" call ran a
 *     Lua call per summed increment, a third of Redis's time per response.
 * What was not read passing goes as scripts after the EXEC, as before, and
 * so do the suppression keys ("later"): watching them too cost more than
 * it saved, as Redis 7.0's WATCH takes time linear in the keys the client
 * already watches for every key it adds (850 keys: 2 ms a WATCH).
 *
 * Every instance writes the fence hashes, so with several a transaction may
 * find one changed: EXEC then runs nothing, the accounts are read again and
 * written by scripts, and the fences stay out of the watch for
 * NPSD_STORE_FENCE_BACKOFF_MS. Cluster mode has no watch: a transaction
 * stays in one slot there.
 */
#include "npsd_store_int.h"

/* Appends UNWATCH (a slice that wrote nothing left its watches), the WATCH
 * and the reads of the fences. Only in the first round of a slice: later
 * rounds (the accounts that lost a race) go as scripts, which check each
 * account apart, so a busy account cannot keep a whole slice retrying.
 * Not before the first exec either, when the mode (cluster or not) is
 * still unknown. accounts 0: the deltas only (a flush between batches).
 * Returns 0, or -1 out of memory. */
int npsd_store_watch_append(npsd_store_t *store, int round, int accounts) {
        const char **argv;
        size_t n = 1;
        const char *un[1] = {"UNWATCH"};
        char *fk[NPSD_DG_SUPPRESS] = {NULL};
        int fence = store->delta_cnt && store->wall_ms >= store->fence_after;

        store->watch_idx = -1;
        for (int g = 0; g < NPSD_DG_SUPPRESS; g++)
                store->fence_idx[g] = -1;
        store->watched = 0;
        store->fence_cnt = 0;
        for (size_t i = 0; i < store->delta_cnt; i++)
                memset(store->deltas[i].checked, 0,
                       sizeof(store->deltas[i].checked));
        if (round || !store->up || npsd_cluster_enabled(store->cl))
                return 0;
        for (int g = 0; fence && g < NPSD_DG_SUPPRESS; g++)
                if (!(fk[g] = npsd_arena_alloc(&store->arena, NPSD_KEY_MAX)) ||
                    npsd_store_fence_key(store, g, fk[g], NPSD_KEY_MAX))
                        return -1;
        if (!(argv = npsd_arena_alloc(&store->arena,
                                      sizeof(*argv) *
                                              (store->hi - store->lo + 1 +
                                               NPSD_DG_SUPPRESS))))
                return -1;
        argv[0] = "WATCH";
        for (size_t i = store->lo; accounts && i < store->hi; i++)
                if (!store->accts[i].done &&
                    !(argv[n++] = npsd_store_akey(store, store->accts[i].id,
                                                  "st")))
                        return -1;
        if (n == 1 && (accounts || !fence))
                return 0;
        for (int g = 0; fence && g < NPSD_DG_SUPPRESS; g++)
                argv[n++] = fk[g];
        if (npsd_store_cmd_slot(store, 0, 1, un, NULL) < 0 ||
            (store->watch_idx = npsd_store_cmd(store, (int)n, argv, NULL)) <
                    0)
                return -1;
        if (!fence)
                return 0;
        for (int g = 0; g < NPSD_DG_SUPPRESS; g++) {
                if (!(argv = npsd_arena_alloc(&store->arena,
                                              sizeof(*argv) *
                                                      (store->delta_cnt + 2))))
                        return -1;
                argv[0] = "HMGET";
                argv[1] = fk[g];
                for (size_t i = 0; i < store->delta_cnt; i++)
                        argv[2 + i] = store->deltas[i].account;
                if ((store->fence_idx[g] = npsd_store_cmd(
                             store, (int)store->delta_cnt + 2, argv, NULL)) <
                    0)
                        return -1;
        }
        store->fence_cnt = store->delta_cnt;
        return 0;
}

static int npsd_store_delta_cmp(const void *a, const void *b) {
        return strcmp((*(const npsd_store_delta_t *const *)a)->account,
                      (*(const npsd_store_delta_t *const *)b)->account);
}

/* An account's rank in two deltas: their ZADDs in one transaction would
 * all run, in the deltas' order, while "newer" keeps the latest whatever
 * the order. Its rank parts are left unchecked (they go as scripts). */
static void npsd_store_watch_dups(npsd_store_t *store) {
        npsd_store_delta_t **by;

        if (store->fence_cnt < 2)
                return;
        if (!(by = npsd_arena_alloc(&store->arena,
                                    sizeof(*by) * store->fence_cnt))) {
                for (size_t i = 0; i < store->fence_cnt; i++)
                        memset(store->deltas[i].checked, 0,
                               sizeof(store->deltas[i].checked));
                return;
        }
        for (size_t i = 0; i < store->fence_cnt; i++)
                by[i] = &store->deltas[i];
        qsort(by, store->fence_cnt, sizeof(*by), npsd_store_delta_cmp);
        for (size_t i = 1; i < store->fence_cnt; i++) {
                if (strcmp(by[i - 1]->account, by[i]->account))
                        continue;
                for (int g = NPSD_DG_RANK_NPS; g <= NPSD_DG_RANK_HEALTH; g++)
                        by[i - 1]->checked[g] = by[i]->checked[g] = 0;
        }
}

/* After the read's exec: whether the WATCH holds, and which deltas' groups
 * were read passing. */
void npsd_store_watch_read(npsd_store_t *store) {
        const redisReply *r = npsd_store_reply(store, store->watch_idx);
        npsd_cluster_stats_t cs;

        npsd_cluster_stats(store->cl, &cs);
        store->watch_conns = cs.connects + cs.node_errors;
        store->watched = r && r->type == REDIS_REPLY_STATUS &&
                         !npsd_cluster_enabled(store->cl);
        if (!store->watched || !store->fence_cnt)
                return;
        for (int g = 0; g < NPSD_DG_SUPPRESS; g++) {
                const redisReply *f =
                        npsd_store_reply(store, store->fence_idx[g]);
                if (!f || f->type != REDIS_REPLY_ARRAY ||
                    f->elements != store->fence_cnt)
                        return;
                for (size_t i = 0; i < store->fence_cnt; i++) {
                        const redisReply *v = f->element[i];
                        npsd_store_delta_t *d = &store->deltas[i];
                        uint64_t at = 0;
                        if (v->type == REDIS_REPLY_STRING) {
                                char *end;
                                at = strtoull(v->str, &end, 10);
                                if (end != v->str + v->len || !v->len)
                                        continue;
                        } else if (v->type != REDIS_REPLY_NIL) {
                                continue;
                        }
                        d->checked[g] = g == NPSD_DG_G ? d->seq == at + 1
                                                       : at < d->seq;
                }
        }
        npsd_store_watch_dups(store);
}

/* At the write: 1 when the WATCH still holds, on the connection it was
 * sent on (a new connection has none). */
int npsd_store_watch_held(const npsd_store_t *store) {
        npsd_cluster_stats_t cs;

        if (!store->watched)
                return 0;
        npsd_cluster_stats(store->cl, &cs);
        return cs.connects + cs.node_errors == store->watch_conns;
}

/* After the write's exec: the EXEC (or the failure) ended the watch.
 * conflict: a watched key changed, maybe only a fence another instance
 * wrote; the fences are left out for a while. */
void npsd_store_watch_end(npsd_store_t *store, int conflict) {
        if (conflict && store->fence_cnt)
                store->fence_after =
                        store->wall_ms + NPSD_STORE_FENCE_BACKOFF_MS;
        store->watched = 0;
        store->fence_cnt = 0;
        for (size_t i = 0; i < store->delta_cnt; i++)
                memset(store->deltas[i].checked, 0,
                       sizeof(store->deltas[i].checked));
}
