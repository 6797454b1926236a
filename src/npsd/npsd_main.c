/*
 * npsd — the daemon: configuration, signals, the consume loop and timers.
 *
 *   npsd [--config FILE] [--set key=value]... [--now RFC3339] [--check-config]
 *
 * Signals: SIGTERM and SIGINT finish the batch in hand and exit 0; SIGHUP
 * re-reads the configuration between two batches and applies what can
 * change while running (npsd_reload()).
 */
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_devbroker.h"
#include "npsd/npsd_kafka.h"
#include "npsd/npsd_kafka_check.h"
#include "npsd/npsd_log.h"
#include "npsd/npsd_metrics.h"
#include "npsd/npsd_pipeline.h"
#include "npsd/npsd_store.h"
#include "npsd/npsd_themes.h"
#include "npsd/npsd_time.h"

#ifndef NPSD_VERSION
#define NPSD_VERSION "unknown"
#endif

/* The timers run between batches, in short runs, so that a batch waits
 * for at most one run (a few milliseconds), not for a whole pass: account
 * ticks 64 at a time (a tick is an account's read, step and write), views
 * 8 at a time. A run that finds more comes back after the next batch. */
#define NPSD_ROLL_RUN 64
#define NPSD_VIEWS_RUN 8

extern char **environ;

static volatile sig_atomic_t npsd_stop;
static volatile sig_atomic_t npsd_hup;

static void npsd_on_signal(int sig) {
        if (sig == SIGHUP)
                npsd_hup = 1;
        else
                npsd_stop = 1;
}

static void npsd_usage(FILE *fp) {
        fprintf(fp,
                "usage: npsd [--config FILE] [--set key=value]... "
                "[--now RFC3339] [--check-config]\n"
                "  --config FILE   settings file (default: config/npsd.conf "
                "when present, else " NPSD_SYSCONF_FILE " when present)\n"
                "  --set k=v       override one setting (highest precedence)\n"
                "  --now TIME      pin the clock (tests, backfills); also "
                "NPSD_NOW\n"
                "  --check-config  validate, print the effective "
                "configuration (secrets masked), exit\n"
                "Every kafka.<property> setting is passed to librdkafka. With "
                "no kafka.bootstrap.servers, an embedded development broker "
                "is started.\n"
                "SIGHUP reloads the configuration (log.level, themes, "
                "benchmarks, health, alert and priority settings apply at "
                "once; other changes need a restart).\n");
}

static void npsd_emit_line(const char *line, void *opaque) {
        fprintf((FILE *)opaque, "%s\n", line);
}

static int64_t npsd_wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t npsd_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the whole lexicon file; NULL with errstr on failure. */
static char *npsd_read_file(const char *path, size_t *lenp, char *errstr,
                            size_t errstr_size) {
        FILE *fp = fopen(path, "rb");
        char *buf = NULL;
        long len;

        if (!fp) {
                snprintf(errstr, errstr_size, "%s: cannot open", path);
                return NULL;
        }
        if (fseek(fp, 0, SEEK_END) || (len = ftell(fp)) < 0 ||
            fseek(fp, 0, SEEK_SET) || !(buf = malloc((size_t)len + 1)) ||
            fread(buf, 1, (size_t)len, fp) != (size_t)len) {
                snprintf(errstr, errstr_size, "%s: cannot read", path);
                free(buf);
                fclose(fp);
                return NULL;
        }
        fclose(fp);
        buf[len] = '\0';
        *lenp = (size_t)len;
        return buf;
}

static npsd_themes_t *npsd_load_themes(const npsd_conf_t *conf, char *errstr,
                                       size_t errstr_size) {
        npsd_themes_t *themes;
        size_t len;
        char *text;

        if (!*conf->themes_file) {
                const char *def = npsd_themes_default_text();
                return npsd_themes_new(def, strlen(def), errstr, errstr_size);
        }
        if (!(text = npsd_read_file(conf->themes_file, &len, errstr,
                                    errstr_size)))
                return NULL;
        themes = npsd_themes_new(text, len, errstr, errstr_size);
        free(text);
        return themes;
}

/* The command line, kept for a reload: SIGHUP reads the same sources. */
typedef struct npsd_args_s {
        int argc;
        char **argv;
        const char *config_path; /* the file read at start, NULL for none */
        int check_only;
} npsd_args_t;

static const struct option npsd_long_opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"now", required_argument, NULL, 'n'},
        {"check-config", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};

/* First pass over the command line: the file and the mode. Exits on
 * --help and on a bad option. */
static void npsd_args_parse(int argc, char **argv, npsd_args_t *args) {
        const char *given = NULL;
        int opt;

        memset(args, 0, sizeof(*args));
        args->argc = argc;
        args->argv = argv;
        while ((opt = getopt_long(argc, argv, "c:s:n:Ch", npsd_long_opts,
                                  NULL)) != -1) {
                if (opt == 'c')
                        given = optarg;
                else if (opt == 'C')
                        args->check_only = 1;
                else if (opt == 'h') {
                        npsd_usage(stdout);
                        exit(0);
                } else if (opt == '?') {
                        npsd_usage(stderr);
                        exit(2);
                }
        }
        args->config_path = npsd_conf_find_file(given);
}

/* An environment warning: on stderr for --check-config (opaque is the
 * stream), else in the log. */
static void npsd_env_warning(const char *msg, void *opaque) {
        char buf[512];

        if (opaque) {
                fprintf((FILE *)opaque, "npsd: warning: %s\n", msg);
                return;
        }
        snprintf(buf, sizeof(buf), "%s", msg);
        npsd_warn("msg=\"%s\"", npsd_log_quote_safe(buf));
}

/* Builds the configuration from defaults, the file, the environment and
 * --set / --now, in that order of precedence, and checks it. At start and
 * on every reload. Returns a configuration the caller must destroy, or
 * NULL with errstr. */
static npsd_conf_t *npsd_conf_build(const npsd_args_t *args,
                                    npsd_conf_warn_cb_t *warn, void *opaque,
                                    char *errstr, size_t errstr_size) {
        npsd_conf_t *conf = npsd_conf_new();
        int opt;

        if (!conf) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (args->config_path &&
            npsd_conf_load_file(conf, args->config_path, errstr, errstr_size))
                goto fail;
        if (npsd_conf_load_env(conf, environ, warn, opaque, errstr,
                               errstr_size))
                goto fail;
        optind = 0; /* GNU: a full restart of getopt's scan */
        opterr = 0; /* the first pass reported bad options already */
        while ((opt = getopt_long(args->argc, args->argv, "c:s:n:Ch",
                                  npsd_long_opts, NULL)) != -1) {
                if (opt == 's') {
                        char *eq = strchr(optarg, '=');
                        int rc;

                        if (!eq) {
                                snprintf(errstr, errstr_size,
                                         "--set %s: expected key=value",
                                         optarg);
                                goto fail;
                        }
                        *eq = '\0';
                        rc = npsd_conf_set(conf, optarg, eq + 1, errstr,
                                           errstr_size);
                        *eq = '=';
                        if (rc)
                                goto fail;
                } else if (opt == 'n') {
                        if (npsd_conf_set(conf, "now", optarg, errstr,
                                          errstr_size))
                                goto fail;
                }
        }
        if (npsd_conf_finalize(conf, errstr, errstr_size))
                goto fail;
        return conf;

fail:
        npsd_conf_destroy(conf);
        return NULL;
}

/* The loop's side of /metrics and the probes: the adapters it reads, and
 * the last Redis error seen (the reason /readyz gives while Redis is
 * away). Every publish is also the heartbeat /livez checks. */
typedef struct npsd_observe_s {
        npsd_metrics_t *metrics;   /* NULL when http.listen is "" */
        npsd_pipeline_t *pipeline; /* NULL until created: nothing published */
        npsd_kafka_t *kafka;
        npsd_store_t *store;
        uint64_t redis_errors_seen;
        char redis_reason[NPSD_METRICS_REASON_MAX];
        int64_t next_ms; /* monotonic time of the next periodic publish */
} npsd_observe_t;

static void npsd_observe_redis_error(npsd_observe_t *ob, const char *err) {
        const char *pre = strncmp(err, "redis", 5) ? "redis: " : "";
        size_t plen = strlen(pre);
        size_t n = strnlen(err, sizeof(ob->redis_reason) - 1 - plen);

        /* "redis..." first, cut to fit */
        memcpy(ob->redis_reason, pre, plen);
        memcpy(ob->redis_reason + plen, err, n);
        ob->redis_reason[plen + n] = '\0';
}

/* Publishes a copy of the counters, Kafka and Redis reachability and the
 * consumer lag to the metrics server. Cheap: after every batch, and about
 * every second otherwise (npsd_observe_tick()). */
static void npsd_observe_publish(npsd_observe_t *ob) {
        const npsd_pipeline_stats_t *st;
        npsd_metrics_lag_t *lags;
        char reason[NPSD_METRICS_REASON_MAX];
        size_t lag_cnt, off;
        int64_t mono = npsd_mono_ms();
        int kafka_up, redis_up;

        ob->next_ms = mono + 1000;
        if (!ob->metrics || !ob->pipeline)
                return;
        st = npsd_pipeline_stats(ob->pipeline);
        if (st->redis_errors != ob->redis_errors_seen) {
                ob->redis_errors_seen = st->redis_errors;
                npsd_observe_redis_error(ob, st->redis_error);
        }
        kafka_up = npsd_kafka_up(ob->kafka);
        redis_up = npsd_store_up(ob->store);
        reason[0] = '\0';
        if (!redis_up)
                snprintf(reason, sizeof(reason), "%s",
                         *ob->redis_reason ? ob->redis_reason
                                           : "redis: not connected");
        off = strlen(reason);
        if (!kafka_up)
                snprintf(reason + off, sizeof(reason) - off,
                         "%skafka: all brokers down", off ? "; " : "");
        npsd_metrics_publish(ob->metrics, st, kafka_up, redis_up, reason,
                             npsd_store_server_version(ob->store), mono);
        lags = npsd_kafka_lag(ob->kafka, &lag_cnt);
        npsd_metrics_publish_lag(ob->metrics, lags, lag_cnt);
}

/* Pipeline tick (a batch waiting on Redis or the broker): keeps /readyz
 * current and /livez alive while the batch retries: waiting for Redis to
 * come back is the loop working, not wedged. */
static void npsd_observe_tick(void *opaque) {
        npsd_observe_t *ob = opaque;

        if (npsd_hup == 1) {
                /* said now, done once the batch in hand is through */
                npsd_hup = 2;
                npsd_info("msg=\"SIGHUP received: the configuration is "
                          "reloaded after the batch in hand\"");
        }
        if (npsd_mono_ms() >= ob->next_ms)
                npsd_observe_publish(ob);
}

/* What a reload may swap: the running configuration (changed in place, so
 * that the store and the pipeline, which keep a pointer to it, see the new
 * values) and the theme lexicon (replaced). */
typedef struct npsd_live_s {
        const npsd_args_t *args;
        npsd_conf_t *conf;
        npsd_themes_t *themes;
        npsd_store_t *store;
        npsd_pipeline_t *pipeline;
        npsd_metrics_t *metrics;
} npsd_live_t;

/* SIGHUP, between two batches: reads the configuration again from the same
 * sources, and applies the keys marked live in the settings table. The
 * store derives the step's settings from conf at every round trip, so
 * benchmarks, health and alert settings reach the views with the next
 * batch; the pipeline copies priority settings and the lexicon. Changed
 * keys that need a restart are named and left as they are. A file or
 * lexicon that does not load is refused whole: nothing changes. */
static void npsd_reload(npsd_live_t *lv) {
        npsd_conf_t *fresh;
        npsd_themes_t *themes = NULL;
        char errstr[512], applied[1024], restart[1024];
        const char *file = lv->args->config_path ? lv->args->config_path
                                                 : "none";
        int cnt;

        npsd_info("msg=\"SIGHUP: reloading the configuration\" file=%s",
                  file);
        if (!(fresh = npsd_conf_build(lv->args, NULL, NULL, errstr,
                                      sizeof(errstr))))
                goto refused;
        if (!(themes = npsd_load_themes(fresh, errstr, sizeof(errstr))))
                goto refused;
        cnt = npsd_conf_apply_live(lv->conf, fresh, applied, sizeof(applied),
                                   restart, sizeof(restart), errstr,
                                   sizeof(errstr));
        npsd_conf_destroy(fresh);
        fresh = NULL;
        if (cnt < 0) {
                npsd_error("msg=\"reload incomplete\" error=\"%s\"", errstr);
                cnt = 0;
        }
        if (*restart)
                npsd_warn("msg=\"reload: changed settings need a restart; "
                          "still running with the old values\" keys=%s",
                          restart);
        npsd_log_set_level(lv->conf->log_level);
        npsd_pipeline_reconfigure(lv->pipeline, themes);
        npsd_store_set_themes(lv->store, themes);
        npsd_themes_destroy(lv->themes);
        lv->themes = themes;
        npsd_metrics_set_stall(lv->metrics,
                               lv->conf->http_livez_stall_s * 1000LL);
        npsd_info("msg=\"configuration reloaded\" file=%s applied=%s "
                  "themes=%d",
                  file, cnt ? applied : "none", npsd_themes_count(themes));
        return;

refused:
        npsd_themes_destroy(themes);
        npsd_conf_destroy(fresh);
        npsd_error("msg=\"reload refused: keeping the running configuration\" "
                   "error=\"%s\"",
                   npsd_log_quote_safe(errstr));
}

/* glibc gives each thread that allocates its own malloc arena, up to eight
 * per core; librdkafka's threads allocate fetch buffers that the main
 * thread frees, so each arena holds its own high-water mark. Two arenas
 * took 3 to 6 MiB off the rss100k peak (docs/benchmarks.md). An operator's
 * MALLOC_ARENA_MAX wins. */
static void npsd_malloc_tune(void) {
#ifdef M_ARENA_MAX
        if (!getenv("MALLOC_ARENA_MAX"))
                mallopt(M_ARENA_MAX, 2);
#endif
}

int main(int argc, char **argv) {
        npsd_conf_t *conf;
        npsd_themes_t *themes = NULL;
        npsd_devbroker_t *devbroker = NULL;
        npsd_kafka_t *kafka = NULL;
        npsd_store_t *store = NULL;
        npsd_pipeline_t *pipeline = NULL;
        rd_kafka_message_t **msgs = NULL, **carry = NULL;
        size_t carry_cnt = 0;
        int64_t pinned_ms = -1, next_roll = 0, next_report = 0;
        int64_t next_cohorts = 0, views_pass_at = -1;
        long views_pass_left = 0;
        const char *bootstraps = NULL;
        char errstr[512];
        int rc = 1;
        struct sigaction sa;
        npsd_observe_t obs;
        npsd_args_t args;
        npsd_live_t live;

        npsd_malloc_tune();
        memset(&obs, 0, sizeof(obs));
        memset(&live, 0, sizeof(live));

        npsd_args_parse(argc, argv, &args);
        if (!(conf = npsd_conf_build(&args, npsd_env_warning,
                                     args.check_only ? stderr : NULL, errstr,
                                     sizeof(errstr)))) {
                fprintf(stderr, "npsd: configuration error: %s\n", errstr);
                return 2;
        }
        if (args.check_only) {
                /* kafka.* names and values librdkafka can check now */
                if (npsd_kafka_check_conf(conf, errstr, sizeof(errstr))) {
                        fprintf(stderr, "npsd: configuration error: %s\n",
                                errstr);
                        npsd_conf_destroy(conf);
                        return 2;
                }
                printf("# configuration file: %s\n",
                       args.config_path ? args.config_path
                                        : "none (defaults, environment and "
                                          "--set only)");
                npsd_conf_dump(conf, npsd_emit_line, stdout);
                npsd_conf_destroy(conf);
                return 0;
        }
        npsd_log_set_level(conf->log_level);
        npsd_info("msg=\"configuration read\" file=%s",
                  args.config_path ? args.config_path : "none");
        if (*conf->http_listen &&
            conf->http_livez_stall_s * 1000LL <= conf->redis_timeout_ms)
                npsd_warn("msg=\"http.livez.stall.s is not above "
                          "redis.timeout.ms: a slow Redis call shows as a "
                          "stuck loop on /livez\" stall_s=%d timeout_ms=%d",
                          conf->http_livez_stall_s, conf->redis_timeout_ms);
        if (*conf->now &&
            npsd_time_parse_rfc3339(conf->now, strlen(conf->now), &pinned_ms))
                pinned_ms = -1;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = npsd_on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        /* a reload flag only: interrupted calls carry on */
        sa.sa_flags = SA_RESTART;
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (*conf->http_listen) {
                npsd_metrics_build_t build;

                memset(&build, 0, sizeof(build));
                snprintf(build.version, sizeof(build.version), "%s",
                         NPSD_VERSION);
                snprintf(build.librdkafka, sizeof(build.librdkafka), "%s",
                         rd_kafka_version_str());
                snprintf(build.hiredis, sizeof(build.hiredis), "%d.%d.%d",
                         HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
                if (!(obs.metrics = npsd_metrics_new(
                              conf->http_listen, &build,
                              conf->http_livez_stall_s * 1000LL, errstr,
                              sizeof(errstr)))) {
                        npsd_error("msg=\"cannot serve /metrics and the "
                                   "probes\" error=\"%s\"",
                                   errstr);
                        goto done;
                }
                npsd_info("msg=\"serving /metrics, /livez, /readyz and "
                          "/healthz\" listen=%s",
                          conf->http_listen);
        }
        if (!(themes = npsd_load_themes(conf, errstr, sizeof(errstr)))) {
                npsd_error("msg=\"themes\" error=\"%s\"", errstr);
                goto done;
        }
        {
                const char *bs = npsd_conf_kafka_get(conf, "bootstrap.servers");
                if (!bs || !*bs) {
                        const char *topics[] = {
                                conf->topic_responses, conf->topic_usage,
                                conf->topic_accounts, conf->topic_followups,
                                conf->topic_detractors, conf->topic_passives,
                                conf->topic_promoters, conf->topic_alerts,
                                conf->topic_dlq};
                        devbroker = npsd_devbroker_new(
                                1, 4, topics, sizeof(topics) / sizeof(*topics),
                                errstr, sizeof(errstr));
                        if (!devbroker) {
                                npsd_error("msg=\"embedded broker\" "
                                           "error=\"%s\"",
                                           errstr);
                                goto done;
                        }
                        bootstraps = npsd_devbroker_bootstraps(devbroker);
                        npsd_warn("msg=\"no kafka.bootstrap.servers: embedded "
                                  "development broker started (in memory, "
                                  "not for production)\" bootstrap=%s",
                                  bootstraps);
                }
        }
        if (!(kafka = npsd_kafka_new(conf, bootstraps, errstr,
                                     sizeof(errstr)))) {
                npsd_error("msg=\"kafka\" error=\"%s\"", errstr);
                goto done;
        }
        {
                const char *topics[] = {conf->topic_responses,
                                        conf->topic_accounts,
                                        conf->topic_usage,
                                        conf->topic_followups};
                if (npsd_kafka_subscribe(kafka, topics, 4, errstr,
                                         sizeof(errstr))) {
                        npsd_error("msg=\"kafka\" error=\"%s\"", errstr);
                        goto done;
                }
        }
        store = npsd_store_new(conf, themes);
        pipeline = npsd_pipeline_new(conf, store, kafka, themes);
        msgs = calloc((size_t)conf->batch_max * 2, sizeof(*msgs));
        carry = calloc((size_t)conf->batch_max, sizeof(*carry));
        if (!store || !pipeline || !msgs || !carry) {
                npsd_error("msg=\"out of memory\"");
                goto done;
        }
        if (npsd_store_ping(store, errstr, sizeof(errstr))) {
                npsd_warn("msg=\"redis not reachable yet, will retry\" "
                          "error=\"%s\"",
                          errstr);
                npsd_observe_redis_error(&obs, errstr);
        }
        obs.pipeline = pipeline;
        obs.kafka = kafka;
        obs.store = store;
        npsd_pipeline_set_tick(pipeline, npsd_observe_tick, &obs);
        live.args = &args;
        live.conf = conf;
        live.themes = themes;
        live.store = store;
        live.pipeline = pipeline;
        live.metrics = obs.metrics;
        npsd_observe_publish(&obs);
        npsd_info("msg=\"npsd started\" group=%s responses=%s accounts=%s "
                  "usage=%s followups=%s pinned_now=%s",
                  npsd_conf_kafka_get(conf, "group.id"),
                  conf->topic_responses, conf->topic_accounts,
                  conf->topic_usage, conf->topic_followups,
                  *conf->now ? conf->now : "no");

        while (!npsd_stop) {
                int64_t now_ms, mono;
                size_t cnt = carry_cnt;

                if (npsd_hup) {
                        /* between batches: nothing of one is in flight */
                        npsd_hup = 0;
                        npsd_reload(&live);
                        themes = live.themes;
                }
                now_ms = pinned_ms >= 0 ? pinned_ms : npsd_wall_ms();
                mono = npsd_mono_ms();

                memcpy(msgs, carry, carry_cnt * sizeof(*msgs));
                carry_cnt = 0;
                cnt += npsd_kafka_poll_batch(kafka, msgs + cnt,
                                             (size_t)conf->batch_max,
                                             cnt ? 0 : 100,
                                             conf->batch_wait_ms);
                if (cnt) {
                        int brc = npsd_pipeline_run(pipeline, msgs, cnt,
                                                    now_ms, &npsd_stop, carry,
                                                    (size_t)conf->batch_max,
                                                    &carry_cnt);
                        for (size_t i = 0; i < cnt; i++)
                                rd_kafka_message_destroy(msgs[i]);
                        npsd_observe_publish(&obs);
                        if (brc == -1 && !npsd_stop) {
                                /* A batch that could not complete must not
                                 * be passed by a later commit: exit, and the
                                 * uncommitted batch is redelivered. */
                                npsd_error("msg=\"batch failed, exiting "
                                           "without committing it\"");
                                goto done;
                        }
                }
                if (mono >= next_roll) {
                        int64_t t0 = npsd_mono_ms();
                        int rolled = npsd_store_roll(store, now_ms,
                                                     NPSD_ROLL_RUN, errstr,
                                                     sizeof(errstr));
                        if (rolled > 0)
                                npsd_debug("msg=\"timers\" due=%d", rolled);
                        else if (rolled < 0)
                                npsd_observe_redis_error(&obs, errstr);
                        npsd_pipeline_stage_add(pipeline, NPSD_STAGE_TIMERS,
                                                (npsd_mono_ms() - t0) / 1e3);
                        if (rolled >= 0 && npsd_store_outbox_len(store) > 0)
                                npsd_pipeline_alerts(pipeline, &npsd_stop);
                        if (rolled >= 0 && rolled < NPSD_ROLL_RUN) {
                                /* published at once: a reader that sees
                                 * the count grow by two knows a whole pass
                                 * ran after it looked (a full run is only
                                 * part of one) */
                                npsd_pipeline_timer_count(pipeline);
                                npsd_observe_publish(&obs);
                        }
                        /* more due: after the next batch, else at the
                         * interval */
                        next_roll = rolled >= NPSD_ROLL_RUN
                                            ? mono
                                            : mono + conf->roll_interval_s *
                                                             1000LL;
                }
                if (mono >= next_cohorts) {
                        /* Cohort, theme and owner views trail the accounts
                         * by about a second: one pass a second refreshes
                         * what was dirty when it began, serving every
                         * batch of that second. Batches keep dirtying the
                         * views as the pass runs; a pass that went on
                         * until none is dirty would never end. */
                        int64_t t0 = npsd_mono_ms();
                        int left = npsd_store_cohorts(store, now_ms,
                                                      NPSD_VIEWS_RUN, errstr,
                                                      sizeof(errstr));

                        npsd_pipeline_stage_add(pipeline, NPSD_STAGE_TIMERS,
                                                (npsd_mono_ms() - t0) / 1e3);
                        if (left < 0)
                                npsd_observe_redis_error(&obs, errstr);
                        if (views_pass_at < 0) {
                                views_pass_at = mono;
                                views_pass_left = left;
                        } else {
                                views_pass_left -= NPSD_VIEWS_RUN;
                        }
                        if (left > 0 && views_pass_left > 0) {
                                next_cohorts = mono; /* after the next batch */
                        } else {
                                next_cohorts = views_pass_at + 1000;
                                views_pass_at = -1;
                        }
                }
                if (mono >= next_report) {
                        const npsd_pipeline_stats_t *st =
                                npsd_pipeline_stats(pipeline);
                        uint64_t rejected = 0;
                        for (int r = 0; r < NPSD_REJECT__CNT; r++)
                                rejected += st->rejected[r];
                        if (next_report)
                                npsd_info("msg=\"progress\" consumed=%llu "
                                          "accepted=%llu duplicates=%llu "
                                          "rejected=%llu produced=%llu "
                                          "batches=%llu redis_errors=%llu",
                                          (unsigned long long)st->consumed,
                                          (unsigned long long)st->accepted,
                                          (unsigned long long)st->duplicates,
                                          (unsigned long long)rejected,
                                          (unsigned long long)st->produced,
                                          (unsigned long long)st->batches,
                                          (unsigned long long)st->redis_errors);
                        next_report = mono + 10000;
                }
                if (npsd_mono_ms() >= obs.next_ms)
                        npsd_observe_publish(&obs);
        }
        npsd_info("msg=\"stopping: leaving the group\"");
        /* global deltas of the last batches: applied now rather than by
         * the next instance's timer (they are safe in Redis either way) */
        if (npsd_store_flush(store, errstr, sizeof(errstr)))
                npsd_warn("msg=\"global deltas left for the timer\" "
                          "error=\"%s\"", errstr);
        for (size_t i = 0; i < carry_cnt; i++)
                rd_kafka_message_destroy(carry[i]);
        npsd_kafka_close(kafka, 10000);
        rc = 0;

done:
        npsd_metrics_destroy(obs.metrics);
        npsd_pipeline_destroy(pipeline);
        npsd_store_destroy(store);
        npsd_kafka_destroy(kafka);
        npsd_devbroker_destroy(devbroker);
        npsd_themes_destroy(themes);
        free(msgs);
        free(carry);
        npsd_info("msg=\"npsd stopped\" exit=%d", rc);
        npsd_conf_destroy(conf);
        return rc;
}
