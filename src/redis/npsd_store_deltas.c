/*
 * npsd_store_deltas — global deltas: an account's effect on global keys
 * (cohort and theme day buckets, owner counters, its timer, ranks,
 * suppression), committed with the account's guarded write into its own
 * slot, then applied in later round trips under a fence per account and
 * global slot, and cleaned up once known applied.
 */
#include "npsd_store_int.h"

/* ---- global deltas -------------------------------------------------------- */

/* A delta is one account step's effect on global keys, as plain commands in
 * groups (NPSD_DG_*): the {g} group (cohort and theme day buckets, owner
 * counters, the timer, the views to refresh), the two rank sorted sets,
 * the suppression keys. Encoded as: per group its command count, per
 * command its word count and words (length-prefixed). */

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

/* A view to refresh: its name into the dirty set, and its version raised
 * (nps:{g}:vv, name -> count). A refresher reads the version before the
 * view's data and again after writing the view: when it moved, another
 * refresher may have popped the name and written a newer view before its
 * own older one landed, so it puts the name back (npsd_store_views()). */
static int npsd_store_dw_dirty(npsd_store_dw_t *dw, const char *P,
                               const char *name) {
        char dk[NPSD_KEY_MAX], vk[NPSD_KEY_MAX];
        const char *d[3] = {"SADD", dk, name};
        const char *v[4] = {"HINCRBY", vk, name, "1"};

        snprintf(dk, sizeof(dk), "%s:{g}:dirty", P);
        snprintf(vk, sizeof(vk), "%s:{g}:vv", P);
        return npsd_store_dw_cmd(dw, NPSD_DG_G, 3, d) |
               npsd_store_dw_cmd(dw, NPSD_DG_G, 4, v);
}

/* The delta of one committed step: NULL blob when it has none. */
int npsd_store_delta_build(npsd_store_t *store, npsd_store_acct_t *a,
                           unsigned char **blob, size_t *len) {
        const npsd_step_out_t *o = a->out;
        const char *P = store->conf->redis_prefix;
        npsd_store_dw_t dw;
        char k[NPSD_KEY_MAX], f[NPSD_KEY_MAX], by[32], sc[32];
        char cohorts[NPSD_KEY_MAX];
        int err = 0;

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
                        const char *d[3] = {"SADD", cohorts, c->name};
                        err |= npsd_store_dw_dirty(&dw, P, c->name);
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
                snprintf(name, sizeof(name), "themes:%s", cat);
                err |= npsd_store_dw_dirty(&dw, P, name);
        }
        /* owner counters: <owner>\t<field> of the {g} counter hash; the
         * public nps:csm:<owner> hash is refreshed from them */
        {
                char ck[NPSD_KEY_MAX], name[NPSD_KEY_MAX];
                char ck2[NPSD_KEY_MAX];
                snprintf(ck, sizeof(ck), "%s:{g}:csm", P);
                /* known views are refreshed by the daily roll too */
                snprintf(ck2, sizeof(ck2), "%s:{g}:cohorts", P);
                for (size_t i = 0; i < o->csm_cnt; i++) {
                        const char *av[4] = {"HINCRBY", ck, f, by};
                        const char *d[3] = {"SADD", ck2, name};
                        if (!o->csm[i].by)
                                continue;
                        snprintf(f, sizeof(f), "%s\t%s", o->csm[i].owner,
                                 o->csm[i].field);
                        snprintf(by, sizeof(by), "%" PRId64, o->csm[i].by);
                        snprintf(name, sizeof(name), "csm:%s", o->csm[i].owner);
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 4, av);
                        err |= npsd_store_dw_dirty(&dw, P, name);
                        err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 3, d);
                }
                if (strcmp(o->old_owner, o->new_owner)) {
                        const char *owners[2] = {o->old_owner, o->new_owner};
                        for (int i = 0; i < 2; i++) {
                                const char *av[4] = {"HINCRBY", ck, f,
                                                     i ? "1" : "-1"};
                                if (!*owners[i])
                                        continue;
                                snprintf(f, sizeof(f), "%s\taccounts",
                                         owners[i]);
                                snprintf(name, sizeof(name), "csm:%s",
                                         owners[i]);
                                err |= npsd_store_dw_cmd(&dw, NPSD_DG_G, 4, av);
                                err |= npsd_store_dw_dirty(&dw, P, name);
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

/* Appends the groups calls of group kind g for the deltas waiting whose
 * checked[g] is `select` (-1: every delta; 1: checked calls), per_call
 * deltas a call; sum: the calls' increments are summed (mode all).
 * Returns 0 or -1. */
static int npsd_store_deltas_pass(npsd_store_t *store, int g,
                                  const char *fence,
                                  npsd_write_groups_mode_t mode,
                                  size_t per_call, int sum, int select,
                                  char *errstr, size_t errstr_size) {
        long call = -1;
        size_t in_call = 0;

        for (size_t i = 0; i < store->delta_cnt; i++) {
                npsd_store_delta_t *d = &store->deltas[i];
                npsd_codec_reader_t r = {.buf = d->blob, .len = d->len};
                if (select != -1 && d->checked[g] != select)
                        continue;
                for (int h = 0; h < g; h++)
                        if (npsd_store_delta_group(store, &r,
                                                   NPSD_STORE_DG_SKIP, errstr,
                                                   errstr_size))
                                return -1;
                {
                        npsd_codec_reader_t peek = r;
                        if (!npsd_codec_get_uint(&peek) && g != NPSD_DG_G)
                                continue;
                }
                if (call < 0 || in_call == per_call) {
                        if ((sum && call >= 0 &&
                             npsd_store_sums_flush(store, errstr,
                                                   errstr_size)) ||
                            (call = (select == 1
                                             ? npsd_write_groups_checked
                                             : npsd_write_groups)(
                                     store->w, fence, mode, errstr,
                                     errstr_size)) < 0)
                                return -1;
                        in_call = 0;
                }
                d->call[g] = call;
                d->gidx[g] = in_call++;
                if (npsd_write_group(store->w, d->account, d->seq, errstr,
                                     errstr_size) ||
                    npsd_store_delta_group(
                            store, &r,
                            sum ? NPSD_STORE_DG_SUM : NPSD_STORE_DG_ADD,
                            errstr, errstr_size))
                        return -1;
        }
        if (sum && call >= 0 &&
            npsd_store_sums_flush(store, errstr, errstr_size))
                return -1;
        return 0;
}

/* The fence hash of delta group g (not NPSD_DG_SUPPRESS): {g}'s, or a
 * rank's in the rank key's slot. Returns 0, or -1 when it does not fit. */
int npsd_store_fence_key(npsd_store_t *store, int g, char *key,
                         size_t size) {
        const char *P = store->conf->redis_prefix;
        char rk[NPSD_KEY_MAX];
        int n;

        if (g == NPSD_DG_G) {
                n = snprintf(key, size, "%s:{g}:fence", P);
        } else {
                if (g == NPSD_DG_RANK_NPS)
                        snprintf(rk, sizeof(rk), "%s:rank:nps_%dd", P,
                                 store->env.periods.long_days);
                else
                        snprintf(rk, sizeof(rk), "%s:rank:health", P);
                n = snprintf(key, size, "%s:{%s}:rankv", P,
                             npsd_cluster_slot_tag(npsd_store_slot(rk)));
        }
        return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Appends the calls that apply the waiting deltas: for the {g} slot (every
 * delta has a {g} part, under an exact sequence per account) "all" calls
 * whose increments npsd sums, or, after one of those did not run, "exact"
 * calls group by group; one "newer" call per rank key (newest sequence
 * wins). Returns 0 or -1. */
int npsd_store_deltas_append(npsd_store_t *store, char *errstr,
                             size_t errstr_size) {
        char fence[NPSD_KEY_MAX];
        int split = store->g_split;

        /* nothing left from an append that failed halfway */
        npsd_sums_reset(store->sums);
        for (size_t i = 0; i < store->delta_cnt; i++)
                for (int g = 0; g < NPSD_DG__CNT; g++)
                        store->deltas[i].call[g] = -1;
        for (int g = 0; g < NPSD_DG_SUPPRESS; g++) {
                int sum = g == NPSD_DG_G && !split;
                size_t per_call = sum ? NPSD_STORE_GROUPS_ALL_PER_CALL
                                      : NPSD_STORE_GROUPS_PER_CALL;
                /* pass 0: the deltas whose fences were read passing under
                 * the watch, into the transaction; pass 1: the rest, as
                 * scripts (all of them when {g} goes account by account) */
                int checked = (sum || g != NPSD_DG_G) &&
                              npsd_write_multi(store->w);
                if (npsd_store_fence_key(store, g, fence, sizeof(fence))) {
                        snprintf(errstr, errstr_size,
                                 "global delta: fence key too long");
                        return -1;
                }
                for (int pass = checked ? 0 : 1; pass < 2; pass++) {
                        npsd_write_groups_mode_t mode =
                                g != NPSD_DG_G ? NPSD_WRITE_GROUPS_NEWER
                                : !sum         ? NPSD_WRITE_GROUPS_EXACT
                                               : NPSD_WRITE_GROUPS_ALL;
                        if (npsd_store_deltas_pass(store, g, fence, mode,
                                                   per_call, sum,
                                                   checked ? pass == 0 : -1,
                                                   errstr, errstr_size))
                                return -1;
                }
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
 * every group it has is done, and its gq entry can go. Returns 1 when a
 * transaction's EXEC ran nothing (a watched key changed), else 0. */
int npsd_store_deltas_result(npsd_store_t *store) {
        size_t keep = 0;
        int conflict = 0;

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
                        conflict |= st == NPSD_WRITE_CONFLICT;
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
        return conflict;
}

/* ZREMRANGEBYSCORE gq of deltas known applied (plain: they are applied,
 * removing them twice is harmless). */
int npsd_store_cleanup_append(npsd_store_t *store, size_t *cnt) {
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

void npsd_store_cleanup_done(npsd_store_t *store, size_t cnt) {
        if (!cnt)
                return;
        for (size_t i = 0; i < cnt; i++)
                npsd_store_delta_free(&store->cleanup[i]);
        memmove(store->cleanup, store->cleanup + cnt,
                (store->cleanup_cnt - cnt) * sizeof(*store->cleanup));
        store->cleanup_cnt -= cnt;
}

/* A delta read from the account's gq is known committed: it joins the
 * list to apply, unless already there, or known applied with its gq entry
 * still to remove (an account read again soon after its delta went:
 * applying it again would only find it applied, and a call in mode "all"
 * with one such delta runs none of its others). */
int npsd_store_delta_add(npsd_store_t *store, const char *account,
                         uint64_t seq, const void *blob, size_t len) {
        npsd_store_delta_t *d;

        for (size_t i = 0; i < store->delta_cnt; i++)
                if (store->deltas[i].seq == seq &&
                    !strcmp(store->deltas[i].account, account))
                        return 0;
        for (size_t i = 0; i < store->cleanup_cnt; i++)
                if (store->cleanup[i].seq == seq &&
                    !strcmp(store->cleanup[i].account, account))
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
