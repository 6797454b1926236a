/*
 * npsd_store — Redis adapter (see include/npsd/npsd_store.h).
 */
#define _GNU_SOURCE /* qsort_r */
#include "npsd/npsd_store.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_log.h"
#include "npsd/npsd_time.h"

extern const char npsd_lua_apply[]; /* generated from src/lua/apply.lua */

#define NPSD_STORE_FIELDS 14 /* per response, as apply.lua reads them */

/* Per-response argument text that does not exist in the parsed event. */
typedef struct npsd_store_args_s {
        char score[4], day[16], ts_ms[24], ts_str[NPSD_TIME_BUFSZ];
        char role[4], survey[4];
} npsd_store_args_t;

struct npsd_store_s {
        const npsd_conf_t *conf;
        const npsd_themes_t *themes;
        redisContext *redis;
        char sha[41];
        int up;
        char server_version[64]; /* INFO server's redis_version, "" before */

        /* grow-only scratch, reused across batches */
        redisReply **replies;
        size_t replies_size;
        size_t reply_cnt;
        size_t *order;      /* responses of the batch, grouped by account */
        size_t order_size;
        size_t *ev_order;   /* usage or follow-ups, grouped by account */
        size_t ev_order_size;
        const char **argv;
        size_t *argvlen;
        size_t argv_size;
        long *toff; /* text offsets of a group: themes, attributes */
        size_t toff_size;
        npsd_store_args_t *args;
        size_t args_size;
        char *text; /* themes and attributes, per account group */
        size_t text_size;
        size_t outbox_len; /* alerts waiting, as of the last apply */

        /* the script arguments shared by every call of one round trip */
        char conf_json[2048];
        char now[24];
        char today[16];
};

npsd_store_t *npsd_store_new(const npsd_conf_t *conf,
                             const npsd_themes_t *themes) {
        npsd_store_t *store = calloc(1, sizeof(*store));

        if (!store)
                return NULL;
        store->conf = conf;
        store->themes = themes;
        return store;
}

static void npsd_store_release_replies(npsd_store_t *store) {
        for (size_t i = 0; i < store->reply_cnt; i++)
                freeReplyObject(store->replies[i]);
        store->reply_cnt = 0;
}

static void npsd_store_disconnect(npsd_store_t *store) {
        if (store->redis) {
                redisFree(store->redis);
                store->redis = NULL;
        }
        if (store->up)
                npsd_warn("msg=\"redis connection lost\" host=%s port=%d",
                          store->conf->redis_host, store->conf->redis_port);
        store->up = 0;
}

void npsd_store_destroy(npsd_store_t *store) {
        if (!store)
                return;
        npsd_store_release_replies(store);
        if (store->redis)
                redisFree(store->redis);
        free(store->replies);
        free(store->order);
        free(store->ev_order);
        free(store->argv);
        free(store->argvlen);
        free(store->toff);
        free(store->args);
        free(store->text);
        free(store);
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

/* Runs one command on a fresh connection during connect; returns the reply
 * or NULL with errstr (and the connection dropped). */
static redisReply *npsd_store_setup_cmd(npsd_store_t *store, char *errstr,
                                        size_t errstr_size, int argc,
                                        const char **argv) {
        redisReply *reply =
                redisCommandArgv(store->redis, argc, argv, NULL);

        if (!reply) {
                snprintf(errstr, errstr_size, "redis %s: %s", argv[0],
                         store->redis->errstr);
                return NULL;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "redis %s: %s", argv[0],
                         reply->str);
                freeReplyObject(reply);
                return NULL;
        }
        return reply;
}

/* Connects, authenticates, selects the database and loads the script. The
 * script is loaded on every (re)connect: a restarted Redis has an empty
 * script cache, and NOSCRIPT inside a pipeline would fail the batch. */
static int npsd_store_connect(npsd_store_t *store, char *errstr,
                              size_t errstr_size) {
        const npsd_conf_t *conf = store->conf;
        struct timeval tv = {conf->redis_timeout_ms / 1000,
                             (conf->redis_timeout_ms % 1000) * 1000};
        redisReply *reply;
        char db[16];

        if (store->redis)
                return 0;
        store->redis = redisConnectWithTimeout(conf->redis_host,
                                               conf->redis_port, tv);
        if (!store->redis || store->redis->err) {
                snprintf(errstr, errstr_size, "redis connect %s:%d: %s",
                         conf->redis_host, conf->redis_port,
                         store->redis ? store->redis->errstr
                                      : "out of memory");
                goto fail;
        }
        redisSetTimeout(store->redis, tv);
        if (*conf->redis_password) {
                const char *auth[3] = {"AUTH", conf->redis_user,
                                       conf->redis_password};
                int argc = *conf->redis_user ? 3 : 2;
                if (argc == 2)
                        auth[1] = conf->redis_password;
                if (!(reply = npsd_store_setup_cmd(store, errstr, errstr_size,
                                                   argc, auth)))
                        goto fail;
                freeReplyObject(reply);
        }
        if (conf->redis_db) {
                const char *sel[2] = {"SELECT", db};
                snprintf(db, sizeof(db), "%d", conf->redis_db);
                if (!(reply = npsd_store_setup_cmd(store, errstr, errstr_size,
                                                   2, sel)))
                        goto fail;
                freeReplyObject(reply);
        }
        {
                const char *load[3] = {"SCRIPT", "LOAD", npsd_lua_apply};
                if (!(reply = npsd_store_setup_cmd(store, errstr, errstr_size,
                                                   3, load)))
                        goto fail;
                if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
                        snprintf(errstr, errstr_size,
                                 "redis SCRIPT LOAD: unexpected reply");
                        freeReplyObject(reply);
                        goto fail;
                }
                memcpy(store->sha, reply->str, 40);
                store->sha[40] = '\0';
                freeReplyObject(reply);
        }
        {
                /* for npsd_build_info; a server that refuses INFO (ACL)
                 * still serves npsd */
                const char *info[2] = {"INFO", "server"};
                const char *v;

                reply = redisCommandArgv(store->redis, 2, info, NULL);
                if (!reply) {
                        snprintf(errstr, errstr_size, "redis INFO: %s",
                                 store->redis->errstr);
                        goto fail;
                }
                if (reply->type == REDIS_REPLY_STRING &&
                    (v = strstr(reply->str, "redis_version:")))
                        sscanf(v + 14, "%63[^\r\n]", store->server_version);
                freeReplyObject(reply);
        }
        if (!store->up)
                npsd_info("msg=\"redis connected\" host=%s port=%d db=%d "
                          "version=%s",
                          conf->redis_host, conf->redis_port, conf->redis_db,
                          *store->server_version ? store->server_version
                                                 : "unknown");
        store->up = 1;
        return 0;

fail:
        if (store->redis) {
                redisFree(store->redis);
                store->redis = NULL;
        }
        store->up = 0;
        return -1;
}

int npsd_store_ping(npsd_store_t *store, char *errstr, size_t errstr_size) {
        redisReply *reply;

        if (npsd_store_connect(store, errstr, errstr_size) == -1)
                return -1;
        reply = redisCommand(store->redis, "PING");
        if (!reply) {
                snprintf(errstr, errstr_size, "redis PING: %s",
                         store->redis->errstr);
                npsd_store_disconnect(store);
                return -1;
        }
        freeReplyObject(reply);
        return 0;
}

/* Grows an array to hold at least n elements of size elsz. */
static int npsd_store_grow(void **arr, size_t *size, size_t n, size_t elsz) {
        void *p;
        size_t nsize = *size ? *size : 64;

        if (n <= *size)
                return 0;
        while (nsize < n)
                nsize *= 2;
        if (!(p = realloc(*arr, nsize * elsz)))
                return -1;
        *arr = p;
        *size = nsize;
        return 0;
}

/* Makes room for n command arguments (argv and argvlen alike). */
static int npsd_store_argv_reserve(npsd_store_t *store, size_t n) {
        const char **argv;
        size_t *argvlen, nsize = store->argv_size ? store->argv_size : 64;

        if (n <= store->argv_size)
                return 0;
        while (nsize < n)
                nsize *= 2;
        if (!(argv = realloc(store->argv, nsize * sizeof(*argv))))
                return -1;
        store->argv = argv;
        if (!(argvlen = realloc(store->argvlen, nsize * sizeof(*argvlen))))
                return -1;
        store->argvlen = argvlen;
        store->argv_size = nsize;
        return 0;
}

/* The script's configuration argument: the settings it needs and the
 * batch's "now" as text. Built once per call. */
static int npsd_store_conf_json(const npsd_store_t *store, int64_t now_ms,
                                char *buf, size_t size) {
        const npsd_conf_t *c = store->conf;
        char now_str[NPSD_TIME_BUFSZ], windows[128];
        size_t off = 0;

        for (int i = 0; i < c->window_cnt; i++)
                off += (size_t)snprintf(windows + off, sizeof(windows) - off,
                                        "%s%d", i ? "," : "",
                                        c->window_days[i]);
        npsd_time_format(now_ms, now_str);
        return snprintf(
                buf, size,
                "{\"windows\":[%s],\"long\":%d,\"low_conf_n\":%d,"
                "\"gap_threshold\":%.17g,\"gap_min\":%d,"
                "\"benchmark\":{\"all\":%.17g,\"smb\":%.17g,"
                "\"mid_market\":%.17g,\"enterprise\":%.17g},"
                "\"survey_benchmark\":{\"relationship\":%.17g,"
                "\"transactional\":%.17g},"
                "\"dedupe_ttl\":%lld,\"replay_ttl\":%lld,"
                "\"suppress_ms\":%lld,\"previous\":%d,\"now_str\":\"%s\","
                "\"usage_dedupe_ttl\":%d,"
                "\"loop\":{\"ack_ms\":%lld,\"route_ms\":%lld,"
                "\"close_ms\":%lld,\"window_ms\":%lld},"
                "\"health\":{\"weights\":{\"nps\":%.17g,\"adoption\":%.17g,"
                "\"engagement\":%.17g,\"support\":%.17g,\"followup\":%.17g},"
                "\"green\":%d,\"yellow\":%d,\"ticket_penalty\":%.17g,"
                "\"error_penalty\":%.17g,\"overdue_penalty\":%.17g,"
                "\"drop_points\":%.17g,\"drop_min\":%d,\"usage_min\":%d,"
                "\"usage_ratio\":%.17g}}",
                windows, c->long_window_days, c->low_confidence_n,
                c->role_gap_threshold, c->role_gap_min_responses,
                c->benchmark_all, c->benchmark_smb, c->benchmark_mid_market,
                c->benchmark_enterprise, c->benchmark_relationship,
                c->benchmark_transactional,
                (long long)c->dedupe_days * 86400,
                (long long)c->replay_days * 86400,
                (long long)c->suppress_days * NPSD_MS_PER_DAY,
                c->previous_count, now_str,
                /* usage events dedupe for 3 days: sets per occurrence day
                 * are kept one day longer than that */
                4 * 86400,
                (long long)c->followup_ack_hours * 3600000LL,
                (long long)c->followup_route_days * NPSD_MS_PER_DAY,
                (long long)c->followup_close_days * NPSD_MS_PER_DAY,
                (long long)c->long_window_days * NPSD_MS_PER_DAY,
                c->health_w_nps, c->health_w_adoption, c->health_w_engagement,
                c->health_w_support, c->health_w_followup, c->health_green,
                c->health_yellow, c->health_ticket_penalty,
                c->health_error_penalty, c->health_overdue_penalty,
                c->alert_nps_drop_points, c->alert_nps_drop_min_responses,
                c->alert_usage_drop_min_users, c->alert_usage_drop_ratio);
}

/* Appends one EVALSHA to the pipeline: argv[0..5] are filled here, the
 * caller has put its mode arguments at argv[10..argc). */
static int npsd_store_append(npsd_store_t *store, const char *key,
                             const char *account, const char *mode,
                             int argc) {
        const char **argv = store->argv;
        size_t *argvlen = store->argvlen;

        argv[0] = "EVALSHA";
        argv[1] = store->sha;
        argv[2] = "1";
        argv[3] = key;
        argv[4] = store->conf->redis_prefix;
        argv[5] = account;
        argv[6] = store->now;
        argv[7] = store->today;
        argv[8] = store->conf_json;
        argv[9] = mode;
        for (int i = 0; i < 10; i++)
                argvlen[i] = strlen(argv[i]);
        if (redisAppendCommandArgv(store->redis, argc, argv, argvlen) !=
            REDIS_OK)
                return -1;
        store->reply_cnt++; /* one reply expected */
        return 0;
}

/* Starts one round trip: connects if needed, frees the previous replies
 * and fills the arguments every script call of it shares. */
static int npsd_store_begin(npsd_store_t *store, int64_t now_ms, char *errstr,
                            size_t errstr_size) {
        npsd_store_release_replies(store);
        store->reply_cnt = 0;
        if (npsd_store_connect(store, errstr, errstr_size) == -1)
                return -1;
        if (npsd_store_argv_reserve(store, 64) == -1) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        npsd_store_conf_json(store, now_ms, store->conf_json,
                             sizeof(store->conf_json));
        snprintf(store->now, sizeof(store->now), "%lld", (long long)now_ms);
        snprintf(store->today, sizeof(store->today), "%d",
                 (int)npsd_time_day(now_ms));
        return 0;
}

/* Orders responses by account, keeping their batch order within one. */
static int npsd_store_cmp_order(const void *a, const void *b, void *opaque) {
        const npsd_store_response_t *responses = opaque;
        size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
        int c = strcmp(responses[ia].resp->account_id,
                       responses[ib].resp->account_id);
        if (c)
                return c;
        return ia < ib ? -1 : ia > ib;
}

/* Appends text to the group's scratch; returns its offset or -1. The
 * scratch may move while a group is built, so callers keep offsets. */
static long npsd_store_text(npsd_store_t *store, size_t *used, const char *s,
                            size_t len) {
        size_t off = *used;

        if (npsd_store_grow((void **)&store->text, &store->text_size,
                            off + len + 1, 1) == -1)
                return -1;
        memcpy(store->text + off, s, len);
        store->text[off + len] = '\0';
        *used = off + len + 1;
        return (long)off;
}

/* Themes of a response as "pricing,support" into the scratch. */
static long npsd_store_themes_text(npsd_store_t *store, size_t *used,
                                   uint64_t bits) {
        char buf[NPSD_THEMES_MAX * 40];
        size_t off = 0;

        buf[0] = '\0';
        for (int t = 0; t < npsd_themes_count(store->themes) && bits; t++) {
                const char *name;
                size_t len;
                if (!(bits & (1ULL << t)))
                        continue;
                name = npsd_themes_name(store->themes, t);
                len = strlen(name);
                if (off + len + 2 > sizeof(buf))
                        break;
                if (off)
                        buf[off++] = ',';
                memcpy(buf + off, name, len);
                off += len;
        }
        return npsd_store_text(store, used, buf, off);
}

/* The configured cohort attributes of a response as "key\tvalue\n"... */
static long npsd_store_attrs_text(npsd_store_t *store, size_t *used,
                                  const json_t *attributes) {
        char buf[NPSD_COHORT_ATTRS_MAX * 400];
        size_t off = 0;
        const npsd_conf_t *c = store->conf;

        for (int i = 0; attributes && i < c->cohort_attr_cnt; i++) {
                const char *v = json_string_value(
                        json_object_get(attributes, c->cohort_attr[i]));
                int n;
                if (!v || !*v || strchr(v, '\n') || strchr(v, '\t'))
                        continue;
                n = snprintf(buf + off, sizeof(buf) - off, "%s\t%s\n",
                             c->cohort_attr[i], v);
                if (n < 0 || (size_t)n >= sizeof(buf) - off)
                        break;
                off += (size_t)n;
        }
        return npsd_store_text(store, used, buf, off);
}

/* Appends the "responses" call of one account group [from, to) of order. */
static int npsd_store_append_group(npsd_store_t *store,
                                   const npsd_store_response_t *responses,
                                   size_t from, size_t to) {
        size_t n = to - from, used = 0;
        int argc = 11 + (int)(n * NPSD_STORE_FIELDS);
        const char *account = responses[store->order[from]].resp->account_id;
        char key[512], count[24];
        long *toff;

        if (npsd_store_argv_reserve(store, (size_t)argc) == -1 ||
            npsd_store_grow((void **)&store->args, &store->args_size, n,
                            sizeof(*store->args)) == -1 ||
            npsd_store_grow((void **)&store->toff, &store->toff_size, n * 2,
                            sizeof(*store->toff)) == -1)
                return -1;
        toff = store->toff;

        snprintf(key, sizeof(key), "%s:{%s}:summary",
                 store->conf->redis_prefix, account);
        snprintf(count, sizeof(count), "%zu", n);
        for (size_t i = 0; i < n; i++) {
                const npsd_response_t *r = responses[store->order[from + i]].resp;
                npsd_store_args_t *a = &store->args[i];
                snprintf(a->score, sizeof(a->score), "%d", r->score);
                snprintf(a->day, sizeof(a->day), "%d",
                         (int)npsd_time_day(r->submitted_at_ms));
                snprintf(a->ts_ms, sizeof(a->ts_ms), "%lld",
                         (long long)r->submitted_at_ms);
                npsd_time_format(r->submitted_at_ms, a->ts_str);
                snprintf(a->role, sizeof(a->role), "%d", (int)r->role);
                snprintf(a->survey, sizeof(a->survey), "%d",
                         (int)r->survey_type);
                toff[i * 2] = npsd_store_themes_text(
                        store, &used,
                        responses[store->order[from + i]].theme_bits);
                toff[i * 2 + 1] =
                        npsd_store_attrs_text(store, &used, r->attributes);
                if (toff[i * 2] < 0 || toff[i * 2 + 1] < 0)
                        return -1;
        }
        store->argv[10] = count;
        store->argvlen[10] = strlen(count);
        for (size_t i = 0; i < n; i++) {
                const npsd_response_t *r = responses[store->order[from + i]].resp;
                npsd_store_args_t *a = &store->args[i];
                const char **v = store->argv + 11 + i * NPSD_STORE_FIELDS;
                size_t *vl = store->argvlen + 11 + i * NPSD_STORE_FIELDS;
                v[0] = r->event_id;
                v[1] = r->user_id;
                v[2] = a->score;
                v[3] = a->day;
                v[4] = a->ts_ms;
                v[5] = a->ts_str;
                v[6] = a->role;
                v[7] = a->survey;
                v[8] = r->language ? r->language : "";
                v[9] = r->channel ? r->channel : "";
                v[10] = store->text + toff[i * 2];
                v[11] = store->text + toff[i * 2 + 1];
                v[12] = r->comment ? r->comment : "";
                v[13] = responses[store->order[from + i]].digest;
                for (int f = 0; f < NPSD_STORE_FIELDS; f++)
                        vl[f] = strlen(v[f]);
                if (r->comment)
                        vl[12] = r->comment_len;
        }
        /* argc counts EVALSHA..mode (10), the count, and the fields */
        return npsd_store_append(store, key, account, "responses", 11 + (int)(n * NPSD_STORE_FIELDS));
}

/* Appends the "context" call of one account record. */
static int npsd_store_append_context(npsd_store_t *store,
                                     const npsd_account_t *acc) {
        char key[512], upd[24], arr[64], seats[24], renewal[16];
        int argc = 11;
        const char *fields[][2] = {
                {"name", acc->name},
                {"segment", acc->segment},
                {"plan", acc->plan},
                {"lifecycle_stage", acc->lifecycle_stage},
                {"csm_owner", acc->csm_owner},
                {"arr", acc->has_arr ? arr : NULL},
                {"seats", acc->has_seats ? seats : NULL},
                {"renewal_date", acc->has_renewal ? renewal : NULL},
                {"updated_at", NULL},
        };
        char upd_str[NPSD_TIME_BUFSZ];

        if (npsd_store_argv_reserve(store, 64) == -1)
                return -1;
        snprintf(key, sizeof(key), "%s:{%s}:summary",
                 store->conf->redis_prefix, acc->account_id);
        snprintf(upd, sizeof(upd), "%lld",
                 acc->has_updated_at ? (long long)acc->updated_at_ms : -1LL);
        snprintf(arr, sizeof(arr), "%.17g", acc->has_arr ? acc->arr : 0.0);
        snprintf(seats, sizeof(seats), "%lld", (long long)acc->seats);
        if (acc->has_renewal)
                npsd_date_format(acc->renewal_day, renewal);
        if (acc->has_updated_at)
                fields[8][1] = npsd_time_format(acc->updated_at_ms, upd_str);
        store->argv[10] = upd;
        store->argvlen[10] = strlen(upd);
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
                if (!fields[i][1])
                        continue;
                store->argv[argc] = fields[i][0];
                store->argvlen[argc++] = strlen(fields[i][0]);
                store->argv[argc] = fields[i][1];
                store->argvlen[argc++] = strlen(fields[i][1]);
        }
        return npsd_store_append(store, key, acc->account_id, "context", argc);
}

/* Reads every reply the pipeline owes. Returns 0 when all arrived without
 * error; on any failure the connection is dropped (hiredis contexts are not
 * reusable after an error, and a half-read pipeline is unusable anyway). */
static int npsd_store_read_replies(npsd_store_t *store, size_t expected,
                                   char *errstr, size_t errstr_size) {
        int rc = 0;

        if (npsd_store_grow((void **)&store->replies, &store->replies_size,
                            expected, sizeof(*store->replies)) == -1) {
                snprintf(errstr, errstr_size, "out of memory");
                npsd_store_disconnect(store);
                return -1;
        }
        store->reply_cnt = 0;
        for (size_t i = 0; i < expected; i++) {
                void *r = NULL;
                if (redisGetReply(store->redis, &r) != REDIS_OK || !r) {
                        snprintf(errstr, errstr_size, "redis: %s",
                                 store->redis->errstr);
                        npsd_store_disconnect(store);
                        return -1;
                }
                store->replies[store->reply_cnt++] = r;
                if (((redisReply *)r)->type == REDIS_REPLY_ERROR && !rc) {
                        snprintf(errstr, errstr_size, "redis script: %s",
                                 ((redisReply *)r)->str);
                        rc = -1;
                }
        }
        if (rc == -1)
                /* NOSCRIPT (script cache flushed) or a refused write: the
                 * next call reconnects and loads the script again. */
                npsd_store_disconnect(store);
        return rc;
}

/* Orders pointers to events by their account id (the first member of every
 * event struct is not the account, so the caller passes an accessor). */
typedef const char *(*npsd_store_acct_fn)(const void *ev);

static const char *npsd_store_usage_acct(const void *ev) {
        return ((const npsd_usage_t *)ev)->account_id;
}

static const char *npsd_store_followup_acct(const void *ev) {
        return ((const npsd_followup_t *)ev)->account_id;
}

typedef struct npsd_store_sort_s {
        const void *const *evs;
        npsd_store_acct_fn acct;
} npsd_store_sort_t;

static int npsd_store_cmp_ptr(const void *a, const void *b, void *opaque) {
        const npsd_store_sort_t *ss = opaque;
        size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
        int c = strcmp(ss->acct(ss->evs[ia]), ss->acct(ss->evs[ib]));
        if (c)
                return c;
        return ia < ib ? -1 : ia > ib;
}

/* Appends one "usage" or "followups" call per account of evs, ordered by
 * account (order[] is scratch of cnt entries). Per-event arguments come from
 * fill(), which writes `per` values into argv and may use the scratch args. */
typedef int (*npsd_store_fill_fn)(npsd_store_t *store, const void *ev,
                                  npsd_store_args_t *a, const char **v,
                                  size_t *vl);

static int npsd_store_fill_usage(npsd_store_t *store, const void *ev,
                                 npsd_store_args_t *a, const char **v,
                                 size_t *vl) {
        const npsd_usage_t *u = ev;
        (void)store;
        snprintf(a->day, sizeof(a->day), "%d",
                 (int)npsd_time_day(u->occurred_at_ms));
        snprintf(a->role, sizeof(a->role), "%d", (int)u->type);
        snprintf(a->ts_ms, sizeof(a->ts_ms), "%lld",
                 (long long)u->occurred_at_ms);
        npsd_time_format(u->occurred_at_ms, a->ts_str);
        v[0] = u->event_id;
        v[1] = u->user_id;
        v[2] = a->day;
        v[3] = a->role;
        v[4] = u->feature ? u->feature : "";
        v[5] = a->ts_ms;
        v[6] = a->ts_str;
        for (int f = 0; f < 7; f++)
                vl[f] = strlen(v[f]);
        return 7;
}

static int npsd_store_fill_followup(npsd_store_t *store, const void *ev,
                                    npsd_store_args_t *a, const char **v,
                                    size_t *vl) {
        static const char *actions[] = {"acknowledged", "routed", "closed"};
        const npsd_followup_t *f = ev;
        (void)store;
        snprintf(a->ts_ms, sizeof(a->ts_ms), "%lld", (long long)f->at_ms);
        npsd_time_format(f->at_ms, a->ts_str);
        v[0] = f->event_id;
        v[1] = f->response_event_id;
        v[2] = actions[f->action];
        v[3] = a->ts_ms;
        v[4] = a->ts_str;
        for (int i = 0; i < 5; i++)
                vl[i] = strlen(v[i]);
        return 5;
}

static int npsd_store_append_by_account(npsd_store_t *store,
                                        const void *const *evs, size_t cnt,
                                        npsd_store_acct_fn acct,
                                        npsd_store_fill_fn fill, int per,
                                        const char *mode) {
        npsd_store_sort_t ss = {evs, acct};
        size_t from, g;

        if (!cnt)
                return 0;
        if (npsd_store_grow((void **)&store->ev_order, &store->ev_order_size,
                            cnt, sizeof(*store->ev_order)) == -1)
                return -1;
        for (size_t i = 0; i < cnt; i++)
                store->ev_order[i] = i;
        qsort_r(store->ev_order, cnt, sizeof(*store->ev_order), npsd_store_cmp_ptr,
                &ss);
        for (from = 0, g = 1; g <= cnt; g++) {
                const char *account = acct(evs[store->ev_order[from]]);
                char key[512], count[24];
                size_t n = g - from;
                int argc = 11;
                if (g < cnt && !strcmp(acct(evs[store->ev_order[g]]), account))
                        continue;
                if (npsd_store_argv_reserve(store, 11 + n * (size_t)per) ==
                            -1 ||
                    npsd_store_grow((void **)&store->args, &store->args_size,
                                    n, sizeof(*store->args)) == -1)
                        return -1;
                snprintf(key, sizeof(key), "%s:{%s}:summary",
                         store->conf->redis_prefix, account);
                snprintf(count, sizeof(count), "%zu", n);
                store->argv[10] = count;
                store->argvlen[10] = strlen(count);
                for (size_t i = 0; i < n; i++)
                        argc += fill(store, evs[store->ev_order[from + i]],
                                     &store->args[i], store->argv + argc,
                                     store->argvlen + argc);
                if (npsd_store_append(store, key, account, mode, argc) == -1)
                        return -1;
                from = g;
        }
        return 0;
}

int npsd_store_apply(npsd_store_t *store, int64_t now_ms,
                     const npsd_store_batch_t *batch, char *errstr,
                     size_t errstr_size) {
        char okey[256];
        size_t expected, g, from;
        const npsd_store_response_t *responses = batch->responses;
        size_t resp_cnt = batch->resp_cnt;

        store->outbox_len = 0;
        if (npsd_store_begin(store, now_ms, errstr, errstr_size) == -1)
                return -1;
        /* context first, so that this batch's responses see it */
        for (size_t i = 0; i < batch->account_cnt; i++)
                if (npsd_store_append_context(store, batch->accounts[i]) == -1)
                        goto oom;
        if (npsd_store_grow((void **)&store->order, &store->order_size,
                            resp_cnt + 1, sizeof(*store->order)) == -1)
                goto oom;
        for (size_t i = 0; i < resp_cnt; i++)
                store->order[i] = i;
        qsort_r(store->order, resp_cnt, sizeof(*store->order),
                npsd_store_cmp_order, (void *)responses);
        for (from = 0, g = 1; g <= resp_cnt; g++) {
                if (g < resp_cnt &&
                    !strcmp(responses[store->order[g]].resp->account_id,
                            responses[store->order[from]].resp->account_id))
                        continue;
                if (npsd_store_append_group(store, responses, from, g) == -1)
                        goto oom;
                from = g;
        }
        /* the response groups' replies come first, after the context ones */
        expected = store->reply_cnt;
        {
                size_t r = batch->account_cnt;
                if (npsd_store_append_by_account(
                            store, (const void *const *)batch->usage,
                            batch->usage_cnt, npsd_store_usage_acct,
                            npsd_store_fill_usage, 7, "usage") == -1 ||
                    npsd_store_append_by_account(
                            store, (const void *const *)batch->followups,
                            batch->followup_cnt, npsd_store_followup_acct,
                            npsd_store_fill_followup, 5, "followups") == -1)
                        goto oom;
                snprintf(okey, sizeof(okey), "%s:outbox",
                         store->conf->redis_prefix);
                if (redisAppendCommand(store->redis, "HLEN %s", okey) !=
                    REDIS_OK)
                        goto oom;
                store->reply_cnt++;
                if (npsd_store_read_replies(store, store->reply_cnt, errstr,
                                            errstr_size) == -1)
                        return -1;
                store->outbox_len =
                        (size_t)store->replies[store->reply_cnt - 1]->integer;

                for (from = 0, g = 1; g <= resp_cnt; g++) {
                        redisReply *rep;
                        if (g < resp_cnt &&
                            !strcmp(responses[store->order[g]].resp->account_id,
                                    responses[store->order[from]].resp->account_id))
                                continue;
                        if (r >= expected)
                                goto bad_reply;
                        rep = store->replies[r++];
                        if (rep->type != REDIS_REPLY_ARRAY ||
                            rep->elements != (g - from) * 2)
                                goto bad_reply;
                        for (size_t i = 0; i < g - from; i++) {
                                npsd_store_result_t *res =
                                        &batch->results[store->order[from + i]];
                                redisReply *st = rep->element[i * 2];
                                redisReply *sn = rep->element[i * 2 + 1];
                                res->counted = st->type == REDIS_REPLY_INTEGER &&
                                               st->integer == 1;
                                res->snapshot = sn->type == REDIS_REPLY_STRING
                                                        ? sn->str
                                                        : NULL;
                                res->snapshot_len =
                                        res->snapshot ? sn->len : 0;
                        }
                        from = g;
                }
        }
        return 0;

bad_reply:
        snprintf(errstr, errstr_size, "redis script: unexpected reply");
        npsd_store_disconnect(store);
        return -1;

oom:
        snprintf(errstr, errstr_size, "redis: cannot build the pipeline: %s",
                 store->redis && store->redis->err ? store->redis->errstr
                                                   : "out of memory");
        npsd_store_disconnect(store);
        return -1;
}

size_t npsd_store_outbox_len(const npsd_store_t *store) {
        return store->outbox_len;
}

/* Orders "account\trid\tstage" members by account. */
static int npsd_store_cmp_member(const void *a, const void *b) {
        const redisReply *ra = *(redisReply *const *)a;
        const redisReply *rb = *(redisReply *const *)b;
        return strcmp(ra->str, rb->str);
}

int npsd_store_roll(npsd_store_t *store, int64_t now_ms, int max,
                    char *errstr, size_t errstr_size) {
        char maxc[16], key[512];
        redisReply *due = NULL, *loops = NULL;
        size_t cnt, lcnt, from, g;
        int rc = -1;

        if (npsd_store_begin(store, now_ms, errstr, errstr_size) == -1)
                return -1;
        snprintf(maxc, sizeof(maxc), "%d", max);
        snprintf(key, sizeof(key), "%s:roll", store->conf->redis_prefix);

        store->argv[10] = maxc;
        store->argvlen[10] = strlen(maxc);
        if (npsd_store_append(store, key, "", "due",
                              11) == -1 ||
            npsd_store_append(store, key, "", "loops_due", 11) == -1 ||
            redisAppendCommand(store->redis, "HLEN %s:outbox",
                               store->conf->redis_prefix) != REDIS_OK)
                goto fail;
        store->reply_cnt++;
        if (npsd_store_read_replies(store, 3, errstr, errstr_size) == -1)
                goto fail;
        due = store->replies[0];
        loops = store->replies[1];
        /* alerts left by an earlier run (published after its commit) are
         * drained by the timer even when no input arrives */
        store->outbox_len = (size_t)store->replies[2]->integer;
        freeReplyObject(store->replies[2]);
        store->replies[0] = store->replies[1] = store->replies[2] = NULL;
        store->reply_cnt = 0;
        cnt = due->type == REDIS_REPLY_ARRAY ? due->elements : 0;
        lcnt = loops->type == REDIS_REPLY_ARRAY ? loops->elements : 0;
        if (!cnt && !lcnt) {
                rc = 0;
                goto done;
        }

        for (size_t i = 0; i < cnt; i++) {
                snprintf(key, sizeof(key), "%s:{%s}:summary",
                         store->conf->redis_prefix, due->element[i]->str);
                if (npsd_store_append(store, key, due->element[i]->str, "refresh", 10) == -1)
                        goto fail;
        }
        /* Due loop stages, one "tick" call per account: the script removes
         * each member from the timer before acting, so two instances that
         * both saw it cannot both raise its alert. */
        if (lcnt > 1)
                qsort(loops->element, lcnt, sizeof(*loops->element),
                      npsd_store_cmp_member);
        for (from = 0; from < lcnt; from = g) {
                char account[256];
                const char *m = loops->element[from]->str;
                const char *tab = strchr(m, '\t');
                size_t alen = tab ? (size_t)(tab - m) : 0;
                int argc = 10;
                if (!tab || alen >= sizeof(account)) {
                        g = from + 1;
                        continue;
                }
                memcpy(account, m, alen);
                account[alen] = '\0';
                for (g = from; g < lcnt; g++) {
                        const char *mg = loops->element[g]->str;
                        const char *t1 = strchr(mg, '\t'), *t2;
                        if (!t1 || (size_t)(t1 - mg) != alen ||
                            strncmp(mg, account, alen))
                                break;
                        if (!(t2 = strchr(t1 + 1, '\t')))
                                continue;
                        if (npsd_store_argv_reserve(store,
                                                    (size_t)argc + 2) == -1)
                                goto fail;
                        store->argv[argc] = t1 + 1;
                        store->argvlen[argc++] = (size_t)(t2 - t1 - 1);
                        store->argv[argc] = t2 + 1;
                        store->argvlen[argc++] = strlen(t2 + 1);
                }
                snprintf(key, sizeof(key), "%s:{%s}:summary",
                         store->conf->redis_prefix, account);
                if (npsd_store_append(store, key, account, "tick", argc) == -1)
                        goto fail;
        }
        {
                char okey[256];
                snprintf(okey, sizeof(okey), "%s:outbox",
                         store->conf->redis_prefix);
                if (redisAppendCommand(store->redis, "HLEN %s", okey) !=
                    REDIS_OK)
                        goto fail;
                store->reply_cnt++;
        }
        if (npsd_store_read_replies(store, store->reply_cnt, errstr,
                                    errstr_size) == -1)
                goto done;
        store->outbox_len =
                (size_t)store->replies[store->reply_cnt - 1]->integer;
        rc = (int)(cnt + lcnt);
        goto done;

fail:
        if (!*errstr)
                snprintf(errstr, errstr_size, "redis: roll failed");
        npsd_store_disconnect(store);
done:
        if (due)
                freeReplyObject(due);
        if (loops)
                freeReplyObject(loops);
        return rc;
}

int npsd_store_outbox_fetch(npsd_store_t *store, int max,
                            npsd_store_alert_t *alerts, char *errstr,
                            size_t errstr_size) {
        redisReply *reply;
        size_t n = 0;

        npsd_store_release_replies(store);
        if (npsd_store_connect(store, errstr, errstr_size) == -1)
                return -1;
        reply = redisCommand(store->redis, "HSCAN %s:outbox 0 COUNT %d",
                             store->conf->redis_prefix, max);
        if (!reply) {
                snprintf(errstr, errstr_size, "redis HSCAN: %s",
                         store->redis->errstr);
                npsd_store_disconnect(store);
                return -1;
        }
        if (npsd_store_grow((void **)&store->replies, &store->replies_size, 1,
                            sizeof(*store->replies)) == -1) {
                freeReplyObject(reply);
                return -1;
        }
        store->replies[store->reply_cnt++] = reply; /* owns the strings */
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
            reply->element[1]->type == REDIS_REPLY_ARRAY) {
                redisReply *kv = reply->element[1];
                for (size_t i = 0; i + 1 < kv->elements && (int)n < max;
                     i += 2, n++) {
                        alerts[n].id = kv->element[i]->str;
                        alerts[n].payload = kv->element[i + 1]->str;
                        alerts[n].len = kv->element[i + 1]->len;
                }
        }
        return (int)n;
}

int npsd_store_outbox_ack(npsd_store_t *store,
                          const npsd_store_alert_t *alerts, size_t cnt,
                          char *errstr, size_t errstr_size) {
        char key[256];
        redisReply *reply;

        if (!cnt)
                return 0;
        if (npsd_store_connect(store, errstr, errstr_size) == -1 ||
            npsd_store_argv_reserve(store, cnt + 2) == -1)
                return -1;
        snprintf(key, sizeof(key), "%s:outbox", store->conf->redis_prefix);
        store->argv[0] = "HDEL";
        store->argvlen[0] = 4;
        store->argv[1] = key;
        store->argvlen[1] = strlen(key);
        for (size_t i = 0; i < cnt; i++) {
                store->argv[2 + i] = alerts[i].id;
                store->argvlen[2 + i] = strlen(alerts[i].id);
        }
        reply = redisCommandArgv(store->redis, (int)cnt + 2, store->argv,
                                 store->argvlen);
        if (!reply) {
                snprintf(errstr, errstr_size, "redis HDEL: %s",
                         store->redis->errstr);
                npsd_store_disconnect(store);
                return -1;
        }
        freeReplyObject(reply);
        return 0;
}

int npsd_store_cohorts(npsd_store_t *store, int64_t now_ms, int max,
                       char *errstr, size_t errstr_size) {
        char maxc[16], key[512];
        redisReply *reply;

        if (npsd_store_begin(store, now_ms, errstr, errstr_size) == -1)
                return -1;
        snprintf(maxc, sizeof(maxc), "%d", max);
        snprintf(key, sizeof(key), "%s:dirty", store->conf->redis_prefix);
        store->argv[10] = maxc;
        store->argvlen[10] = strlen(maxc);
        if (npsd_store_append(store, key, "", "cohorts", 11) == -1) {
                snprintf(errstr, errstr_size, "redis: cannot send");
                npsd_store_disconnect(store);
                return -1;
        }
        if (npsd_store_read_replies(store, 1, errstr, errstr_size) == -1)
                return -1;
        reply = store->replies[0];
        return reply->type == REDIS_REPLY_INTEGER ? (int)reply->integer : 0;
}
