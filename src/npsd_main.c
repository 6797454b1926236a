/*
 * npsd — the daemon: configuration, signals, the consume loop and timers.
 *
 *   npsd [--config FILE] [--set key=value]... [--now RFC3339] [--check-config]
 */
#include <getopt.h>
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

extern char **environ;

static volatile sig_atomic_t npsd_stop;

static void npsd_on_signal(int sig) {
        (void)sig;
        npsd_stop = 1;
}

static void npsd_usage(FILE *fp) {
        fprintf(fp,
                "usage: npsd [--config FILE] [--set key=value]... "
                "[--now RFC3339] [--check-config]\n"
                "  --config FILE   settings file (default: config/npsd.conf "
                "when present)\n"
                "  --set k=v       override one setting (highest precedence)\n"
                "  --now TIME      pin the clock (tests, backfills); also "
                "NPSD_NOW\n"
                "  --check-config  validate, print the effective "
                "configuration (secrets masked), exit\n"
                "Every kafka.<property> setting is passed to librdkafka. With "
                "no kafka.bootstrap.servers, an embedded development broker "
                "is started.\n");
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

/* Builds the configuration from defaults, file, environment and --set. */
static npsd_conf_t *npsd_configure(int argc, char **argv, int *check_only) {
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'},
                {"set", required_argument, NULL, 's'},
                {"now", required_argument, NULL, 'n'},
                {"check-config", no_argument, NULL, 'C'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0}};
        npsd_conf_t *conf = npsd_conf_new();
        const char *config_path = NULL;
        char errstr[512];
        int opt;

        *check_only = 0;
        /* first pass: the file, so that --set wins over it */
        while ((opt = getopt_long(argc, argv, "c:s:n:Ch", opts, NULL)) != -1) {
                if (opt == 'c')
                        config_path = optarg;
                else if (opt == 'C')
                        *check_only = 1;
                else if (opt == 'h') {
                        npsd_usage(stdout);
                        exit(0);
                } else if (opt == '?') {
                        npsd_usage(stderr);
                        exit(2);
                }
        }
        if (!config_path && access("config/npsd.conf", R_OK) == 0)
                config_path = "config/npsd.conf";
        if (config_path &&
            npsd_conf_load_file(conf, config_path, errstr, sizeof(errstr)))
                goto fail;
        if (npsd_conf_load_env(conf, environ, errstr, sizeof(errstr)))
                goto fail;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "c:s:n:Ch", opts, NULL)) != -1) {
                if (opt == 's') {
                        char *eq = strchr(optarg, '=');
                        if (!eq) {
                                snprintf(errstr, sizeof(errstr),
                                         "--set %s: expected key=value",
                                         optarg);
                                goto fail;
                        }
                        *eq = '\0';
                        if (npsd_conf_set(conf, optarg, eq + 1, errstr,
                                          sizeof(errstr)))
                                goto fail;
                        *eq = '=';
                } else if (opt == 'n') {
                        if (npsd_conf_set(conf, "now", optarg, errstr,
                                          sizeof(errstr)))
                                goto fail;
                }
        }
        if (npsd_conf_finalize(conf, errstr, sizeof(errstr)))
                goto fail;
        return conf;

fail:
        fprintf(stderr, "npsd: configuration error: %s\n", errstr);
        npsd_conf_destroy(conf);
        exit(2);
}

/* The loop's side of /metrics and /healthz: the adapters it reads, and the
 * last Redis error seen (the reason /healthz gives while Redis is away). */
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
                             mono);
        lags = npsd_kafka_lag(ob->kafka, &lag_cnt);
        npsd_metrics_publish_lag(ob->metrics, lags, lag_cnt);
}

/* Pipeline tick (a batch waiting on Redis or the broker): keeps /healthz
 * current while the loop itself cannot run. */
static void npsd_observe_tick(void *opaque) {
        npsd_observe_t *ob = opaque;

        if (npsd_mono_ms() >= ob->next_ms)
                npsd_observe_publish(ob);
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
        int64_t next_cohorts = 0;
        const char *bootstraps = NULL;
        char errstr[512];
        int check_only, rc = 1;
        struct sigaction sa;
        npsd_observe_t obs;

        memset(&obs, 0, sizeof(obs));

        conf = npsd_configure(argc, argv, &check_only);
        if (check_only) {
                /* kafka.* names and values librdkafka can check now */
                if (npsd_kafka_check_conf(conf, errstr, sizeof(errstr))) {
                        fprintf(stderr, "npsd: configuration error: %s\n",
                                errstr);
                        npsd_conf_destroy(conf);
                        return 2;
                }
                npsd_conf_dump(conf, npsd_emit_line, stdout);
                npsd_conf_destroy(conf);
                return 0;
        }
        npsd_log_set_level(conf->log_level);
        if (*conf->now &&
            npsd_time_parse_rfc3339(conf->now, strlen(conf->now), &pinned_ms))
                pinned_ms = -1;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = npsd_on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        if (*conf->http_listen) {
                if (!(obs.metrics = npsd_metrics_new(conf->http_listen,
                                                     errstr,
                                                     sizeof(errstr)))) {
                        npsd_error("msg=\"cannot serve /metrics and "
                                   "/healthz\" error=\"%s\"",
                                   errstr);
                        goto done;
                }
                npsd_info("msg=\"serving /metrics and /healthz\" "
                          "listen=%s",
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
        npsd_observe_publish(&obs);
        npsd_info("msg=\"npsd started\" group=%s responses=%s accounts=%s "
                  "usage=%s followups=%s pinned_now=%s",
                  npsd_conf_kafka_get(conf, "group.id"),
                  conf->topic_responses, conf->topic_accounts,
                  conf->topic_usage, conf->topic_followups,
                  *conf->now ? conf->now : "no");

        while (!npsd_stop) {
                int64_t now_ms = pinned_ms >= 0 ? pinned_ms : npsd_wall_ms();
                int64_t mono = npsd_mono_ms();
                size_t cnt = carry_cnt;

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
                        int rolled = npsd_store_roll(store, now_ms, 500,
                                                     errstr, sizeof(errstr));
                        if (rolled > 0)
                                npsd_debug("msg=\"timers\" due=%d", rolled);
                        else if (rolled < 0)
                                npsd_observe_redis_error(&obs, errstr);
                        npsd_pipeline_stage_add(pipeline, NPSD_STAGE_TIMERS,
                                                (npsd_mono_ms() - t0) / 1e3);
                        if (rolled >= 0 && npsd_store_outbox_len(store) > 0)
                                npsd_pipeline_alerts(pipeline, &npsd_stop);
                        if (rolled >= 0) {
                                /* published at once: a reader that sees
                                 * the count grow by two knows a whole pass
                                 * ran after it looked */
                                npsd_pipeline_timer_count(pipeline);
                                npsd_observe_publish(&obs);
                        }
                        /* more due: come back soon, else at the interval */
                        next_roll = mono + (rolled >= 500
                                                    ? 1000
                                                    : conf->roll_interval_s *
                                                              1000LL);
                }
                if (mono >= next_cohorts) {
                        /* Cohort views trail the accounts by about a
                         * second: one refresh per tick serves every batch
                         * of that second. */
                        int64_t t0 = npsd_mono_ms();
                        int left = npsd_store_cohorts(store, now_ms, 32,
                                                      errstr, sizeof(errstr));

                        npsd_pipeline_stage_add(pipeline, NPSD_STAGE_TIMERS,
                                                (npsd_mono_ms() - t0) / 1e3);
                        if (left < 0)
                                npsd_observe_redis_error(&obs, errstr);
                        /* small calls, repeated between batches while work
                         * is left: a long script would stall Redis */
                        next_cohorts = mono + (left > 0 ? 0 : 1000);
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
