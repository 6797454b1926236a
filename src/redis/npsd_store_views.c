/*
 * npsd_store_views — cohort, theme and owner views (SPEC §7), refreshed
 * about every second from their day buckets and counters for the names in
 * the dirty set, each view replaced whole.
 */
#include "npsd_store_int.h"

/* ---- cohort, theme and owner views ---------------------------------------- */

/* Two refreshers may hold one name at once: A pops it and reads its data, a
 * delta lands and puts the name back, B pops it, reads and writes the new
 * view, then A's older view lands on top. Nothing would put the name back
 * again: the view stays stale until the next delta of that view. So each
 * delta raises the view's version (nps:{g}:vv, npsd_store_deltas.c), and
 * a refresher reads the versions before the data and again once its views
 * are written; a name whose version moved is marked dirty again. */

/* Appends HMGET of the names' versions; returns where the values go (cnt
 * entries, arena), or NULL out of memory. */
static int64_t *npsd_store_views_versions_append(npsd_store_t *store,
                                                 const char **nm, size_t cnt) {
        const char **argv = npsd_arena_alloc(&store->arena,
                                             sizeof(*argv) * (cnt + 2));
        int64_t *vv = npsd_arena_alloc(&store->arena, sizeof(*vv) * (cnt + 1));

        if (!argv || !vv || !(argv[1] = npsd_store_gkey(store, "{g}:vv")))
                return NULL;
        argv[0] = "HMGET";
        for (size_t i = 0; i < cnt; i++)
                argv[2 + i] = nm[i];
        /* vv[cnt]: the reply's index */
        if ((vv[cnt] = npsd_store_cmd(store, (int)cnt + 2, argv, NULL)) < 0)
                return NULL;
        return vv;
}

/* After the exec: the versions read (absent: 0). */
static int npsd_store_views_versions(npsd_store_t *store, int64_t *vv,
                                     size_t cnt, char *errstr,
                                     size_t errstr_size) {
        const redisReply *r = npsd_store_reply(store, (long)vv[cnt]);

        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != cnt)
                return npsd_store_bad(errstr, errstr_size, "HMGET vv", r);
        for (size_t i = 0; i < cnt; i++)
                vv[i] = r->element[i]->type == REDIS_REPLY_STRING
                                ? strtoll(r->element[i]->str, NULL, 10)
                                : 0;
        return 0;
}

/* Reads the versions again and starts a pipeline that marks dirty the
 * names whose version moved since vv. Returns 0, or -1 with errstr. */
static int npsd_store_views_recheck(npsd_store_t *store, const char **nm,
                                    const int64_t *vv, size_t cnt,
                                    char *errstr, size_t errstr_size) {
        int64_t *now;
        const char **argv;
        size_t n = 2;

        npsd_cluster_begin(store->cl);
        if (!(now = npsd_store_views_versions_append(store, nm, cnt)) ||
            !(argv = npsd_arena_alloc(&store->arena,
                                      sizeof(*argv) * (cnt + 2))))
                goto oom;
        if (npsd_store_exec(store, errstr, errstr_size) ||
            npsd_store_views_versions(store, now, cnt, errstr, errstr_size))
                return -1;
        argv[0] = "SADD";
        if (!(argv[1] = npsd_store_gkey(store, "{g}:dirty")))
                goto oom;
        for (size_t i = 0; i < cnt; i++)
                if (now[i] != vv[i])
                        argv[n++] = nm[i];
        npsd_cluster_begin(store->cl);
        if (n > 2 && npsd_store_cmd(store, (int)n, argv, NULL) < 0)
                goto oom;
        return 0;
oom:
        snprintf(errstr, errstr_size, "redis: out of memory");
        return -1;
}

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

/* "<day>:<slot>" (a cohort's day bucket field) into its numbers; -1 for
 * anything else. A refresh reads thousands of these a second: no sscanf. */
static int npsd_store_bucket_field(const char *f, int32_t *day,
                                   unsigned *slot) {
        int64_t d = 0;
        unsigned s = 0;
        int neg = *f == '-';
        const char *p = f + neg;

        if (*p < '0' || *p > '9')
                return -1;
        for (; *p >= '0' && *p <= '9'; p++)
                if ((d = d * 10 + (*p - '0')) > INT32_MAX)
                        return -1;
        if (*p++ != ':' || *p < '0' || *p > '9')
                return -1;
        for (; *p >= '0' && *p <= '9'; p++)
                if ((s = s * 10 + (unsigned)(*p - '0')) > 0xffff)
                        return -1;
        if (*p)
                return -1;
        *day = (int32_t)(neg ? -d : d);
        *slot = s;
        return 0;
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
                int32_t day;
                unsigned slot;
                long long cnt = strtoll(d->element[i + 1]->str, NULL, 10);
                if (npsd_store_bucket_field(d->element[i]->str, &day, &slot))
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
        int64_t *vv;

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
                /* the views' versions first: a delta landing after this
                 * read moves them, whatever the data read next holds */
                if (!(vv = npsd_store_views_versions_append(store, nm, cnt)))
                        goto oom;
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
                if (npsd_store_views_versions(store, vv, cnt, errstr,
                                              errstr_size))
                        return -1;
                {
                        /* the next begin would free the replies: the views
                         * are built from replies taken out of the router,
                         * which the store keeps until the next round (the
                         * view commands borrow their strings) */
                        size_t total = cnt;
                        redisReply **replies = calloc(total, sizeof(*replies));
                        int rc = 0;
                        if (!replies)
                                goto oom;
                        store->held = replies;
                        store->held_cnt = total;
                        for (size_t i = 0; i < total; i++) {
                                redisReply *c =
                                        npsd_cluster_reply_take(store->cl,
                                                                rx[i]);
                                if (c && c->type != REDIS_REPLY_ARRAY) {
                                        freeReplyObject(c);
                                        c = NULL;
                                }
                                replies[i] = c;
                        }
                        npsd_cluster_begin(store->cl);
                        for (size_t i = 0; i < total && !rc; i++) {
                                if (!replies[i])
                                        continue;
                                if (!strncmp(nm[i], "themes:", 7))
                                        rc = npsd_store_theme_view(
                                                store, nm[i] + 7, replies[i],
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
                                                        replies[i]->element[k];
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
                                                store, nm[i], replies[i],
                                                errstr, errstr_size);
                        }
                        if (rc)
                                return -1;
                }
                /* the views are written: a name whose version moved since
                 * goes back into the dirty set (another refresher may have
                 * written a newer view before this one landed) */
                if (npsd_store_exec(store, errstr, errstr_size) ||
                    npsd_store_views_recheck(store, nm, vv, cnt, errstr,
                                             errstr_size))
                        return -1;
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
