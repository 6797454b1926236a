/*
 * npsd_store — the Redis adapter of the state engine (see
 * include/npsd/npsd_store.h and docs/design.md).
 *
 * A poll batch's accounts go in slices of NPSD_STORE_SLICE; each slice costs
 * one read and one write round trip per Redis node:
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
 *
 * This file holds the store, its keys and memory, and the slices' round
 * trips; npsd_store_int.h lists the files of the other concerns.
 */
#include "npsd_store_int.h"

/* ---- stable memory for one round trip's words --------------------------- */

void *npsd_arena_alloc(npsd_arena_t *a, size_t len) {
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

void npsd_arena_reset(npsd_arena_t *a) {
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

const char *npsd_arena_strn(npsd_arena_t *a, const char *s,
                            size_t len) {
        char *p = npsd_arena_alloc(a, len + 1);

        if (!p)
                return NULL;
        memcpy(p, s, len);
        p[len] = '\0';
        return p;
}

/* ---- the store ----------------------------------------------------------- */

int npsd_store_grow(void **arr, size_t *size, size_t n, size_t elsz) {
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
int npsd_store_work_bind(npsd_store_t *store) {
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

void npsd_store_delta_free(npsd_store_delta_t *d) {
        free(d->account);
        free(d->blob);
}

void npsd_store_alerts_drop(npsd_store_t *store, size_t n) {
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

/* Frees the replies a round took from the router (store->held). */
static void npsd_store_held_free(npsd_store_t *store) {
        for (size_t i = 0; i < store->held_cnt; i++)
                if (store->held[i])
                        freeReplyObject(store->held[i]);
        free(store->held);
        store->held = NULL;
        store->held_cnt = 0;
}

void npsd_store_destroy(npsd_store_t *store) {
        if (!store)
                return;
        npsd_store_held_free(store);
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
int npsd_store_exec(npsd_store_t *store, char *errstr,
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

const redisReply *npsd_store_reply(const npsd_store_t *store,
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
const char *npsd_store_akey(npsd_store_t *store, const char *account,
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
const char *npsd_store_gkey(npsd_store_t *store, const char *fmt,
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

unsigned npsd_store_slot(const char *key) {
        return npsd_cluster_keyslot(key, strlen(key));
}

/* Appends a plain command; the words must live in the arena (or longer).
 * lens NULL: NUL-terminated words. */
long npsd_store_cmd(npsd_store_t *store, int argc, const char **argv,
                    const size_t *lens) {
        return npsd_store_cmd_slot(store, npsd_store_slot(argv[1]), argc,
                                   argv, lens);
}

long npsd_store_cmd_slot(npsd_store_t *store, unsigned slot, int argc,
                         const char **argv, const size_t *lens) {
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
        return npsd_cluster_append(store->cl, slot, argc, av, al);
}

/* ---- the round trip's accounts -------------------------------------------- */

static uint64_t npsd_store_hash(const char *s) {
        uint64_t h = 1469598103934665603ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

/* The account's entry, added when new. NULL when out of memory. */
npsd_store_acct_t *npsd_store_acct(npsd_store_t *store,
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

void npsd_store_round_begin(npsd_store_t *store) {
        npsd_store_held_free(store);
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

/* ---- replicas ---------------------------------------------------------- */

/* WAIT on every node the write round trip touched (redis.wait.replicas):
 * offsets are committed only once the replicas hold the writes, so that a
 * primary lost right after cannot take acknowledged input with it. Appends
 * a proof write and a WAIT per node: store->proof_idx[] says where each
 * proof write's reply is (its WAIT's is the next one), store->wait_node
 * [call] the node each write call's WAIT went to.
 *
 * Why the proof write: WAIT counts the replicas holding what its own
 * connection last wrote, and a guarded call that changes nothing (a fence
 * already moved, a version already raised) writes nothing. After a
 * reconnect, the retry of a round trip whose writes landed and whose WAIT
 * failed finds everything applied: it would WAIT for nothing and commit
 * input no replica may hold yet. A primary replicates in order, so one
 * real write (a short-lived SET of <prefix>:{<slot tag>}:wp) proves every
 * earlier write there. With `accounts`, the nodes of this round's
 * accounts get one too, also those with no write call at all (their
 * events were all counted already). */
int npsd_store_wait_append(npsd_store_t *store, int accounts) {
        const npsd_cluster_map_t *map = npsd_cluster_map(store->cl);
        unsigned char seen[1024];
        size_t n = npsd_write_calls(store->w);
        size_t extra = accounts ? store->hi - store->lo : 0;
        const char *wait[3] = {"WAIT", NULL, NULL};

        store->proof_cnt = 0;
        if (store->conf->redis_wait_replicas <= 0 || !(n + extra))
                return 0;
        memset(seen, 0, sizeof(seen));
        if (!(store->wait_node = npsd_arena_alloc(
                      &store->arena, sizeof(*store->wait_node) * (n + 1))) ||
            !(store->proof_idx = npsd_arena_alloc(
                      &store->arena, sizeof(*store->proof_idx) *
                                             (n + extra))) ||
            !(store->proof_node = npsd_arena_alloc(
                      &store->arena, sizeof(*store->proof_node) *
                                             (n + extra))) ||
            !(wait[1] = npsd_store_fmt(store, "%d",
                                       store->conf->redis_wait_replicas)) ||
            /* within the connection's own timeout, so that a shortfall is
             * an answer rather than a dropped connection */
            !(wait[2] = npsd_store_fmt(store, "%d",
                                       store->conf->redis_timeout_ms / 2 + 1)))
                return -1;
        for (size_t i = 0; i < n + extra; i++) {
                const char *set[5] = {"SET", NULL, "1", "PX", "10000"};
                unsigned slot, node;
                long idx;
                if (i < n) {
                        const char **av;
                        const size_t *al;
                        char e[64];
                        if (npsd_write_argv(store->w, i, &av, &al, e,
                                            sizeof(e)) < 0)
                                return -1;
                        slot = npsd_cluster_keyslot(av[3], al[3]); /* guard */
                } else {
                        const npsd_store_acct_t *a =
                                &store->accts[store->lo + (i - n)];
                        if (a->done)
                                continue;
                        slot = a->slot;
                }
                node = npsd_cluster_enabled(store->cl) ? map->slot_node[slot]
                                                       : 0;
                if (i < n)
                        store->wait_node[i] = (int)node;
                if (node >= sizeof(seen) || seen[node])
                        continue;
                seen[node] = 1;
                if (!(set[1] = npsd_store_fmt(store, "%s:{%s}:wp",
                                              store->conf->redis_prefix,
                                              npsd_cluster_slot_tag(slot))) ||
                    (idx = npsd_store_cmd(store, 5, set, NULL)) < 0)
                        return -1;
                store->proof_idx[store->proof_cnt] = idx;
                store->proof_node[store->proof_cnt++] = (int)node;
                if ((idx = npsd_store_cmd_slot(store, slot, 3, wait, NULL)) < 0)
                        return -1;
        }
        return 0;
}

/* Every WAIT answered with enough replicas, and every write call and proof
 * write ran on the node its WAIT went to: WAIT covers only the writes its
 * own connection sent before it, and a write redirected (MOVED or ASK, as
 * in a failover or a reshard) ran elsewhere, after it. Then the round trip
 * counts as failed, and its guarded writes are repeated. */
int npsd_store_wait_check(npsd_store_t *store, char *errstr,
                          size_t errstr_size) {
        if (!store->proof_cnt) /* no WAIT */
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
        for (size_t i = 0; i < store->proof_cnt; i++) {
                /* the proof write, then its WAIT */
                const redisReply *p = npsd_store_reply(store,
                                                       store->proof_idx[i]);
                const redisReply *r =
                        npsd_store_reply(store, store->proof_idx[i] + 1);
                if (!p || p->type == REDIS_REPLY_ERROR ||
                    npsd_cluster_reply_node(store->cl, store->proof_idx[i]) !=
                            store->proof_node[i]) {
                        snprintf(errstr, errstr_size,
                                 "redis WAIT: a proof write failed or was "
                                 "redirected after its WAIT");
                        return -1;
                }
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

void npsd_store_now(npsd_store_t *store, int64_t now_ms) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        store->dedupe_period = ts.tv_sec / NPSD_DEDUPE_PERIOD_S;
        store->wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        npsd_step_env_init(&store->env, store->conf, store->themes, now_ms);
}

/* Reads, steps and writes the accounts not done yet; repeats for those
 * that lost a version race. */
int npsd_store_process(npsd_store_t *store, char *errstr,
                       size_t errstr_size) {
        for (int round = 0; round < NPSD_CONFLICT_ROUNDS; round++) {
                size_t cleaned, todo = 0;
                int conflict;

                /* read */
                npsd_cluster_begin(store->cl);
                if (npsd_store_watch_append(store, round, 1))
                        goto oom;
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
                npsd_store_watch_read(store);
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
                npsd_write_use_multi(store->w, npsd_store_watch_held(store));
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
                    npsd_store_wait_append(store, 1))
                        return -1;
                if (npsd_store_exec(store, errstr, errstr_size) ||
                    npsd_store_noscript(store, errstr, errstr_size) ||
                    npsd_store_wait_check(store, errstr,
                                          errstr_size)) {
                        npsd_store_watch_end(store, 0);
                        return -1;
                }
                npsd_store_cleanup_done(store, cleaned);
                conflict = npsd_store_deltas_result(store);
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
                                conflict = 1;
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
                                if (npsd_store_alert_keep(store, al->id, a->id,
                                                          al->payload, al->len))
                                        goto oom;
                        }
                }
                npsd_store_watch_end(store, conflict);
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

const char *npsd_store_fmt(npsd_store_t *store, const char *fmt, ...) {
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
int npsd_store_bad(char *errstr, size_t errstr_size, const char *what,
                   const redisReply *r) {
        snprintf(errstr, errstr_size, "redis %s: %s", what,
                 r && r->type == REDIS_REPLY_ERROR ? r->str
                                                   : "unexpected reply");
        return -1;
}

int64_t npsd_store_int(const redisReply *r) {
        if (!r)
                return 0;
        if (r->type == REDIS_REPLY_INTEGER)
                return r->integer;
        if (r->type == REDIS_REPLY_STRING)
                return strtoll(r->str, NULL, 10);
        return 0;
}
