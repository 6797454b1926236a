/*
 * npsd_pipeline — one poll batch end to end (see npsd_pipeline.h).
 */
#include "npsd/npsd_pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "npsd/npsd_event.h"
#include "npsd/npsd_log.h"
#include "npsd/npsd_pack.h"

#define NPSD_BACKOFF_MIN_MS 100
#define NPSD_BACKOFF_MAX_MS 5000
#define NPSD_STOP_DRAIN_MS 10000 /* delivery wait once asked to stop */

/* One message to produce; payload owned (malloc'd) until the batch ends. */
typedef struct npsd_out_s {
        const char *topic;
        const void *key;
        size_t key_len;
        char *payload;
        size_t len;
        volatile npsd_delivery_t status;
} npsd_out_t;

struct npsd_pipeline_s {
        const npsd_conf_t *conf;
        npsd_store_t *store;
        npsd_kafka_t *kafka;
        const npsd_themes_t *themes;
        npsd_parse_limits_t limits;
        npsd_enrich_conf_t enrich;
        npsd_pipeline_stats_t stats;
        void (*tick)(void *opaque); /* see npsd_pipeline_set_tick() */
        void *tick_opaque;

        /* grow-only, reused across batches */
        npsd_event_t *events;
        int *parsed; /* 1 when events[i] holds a parsed event */
        size_t events_size;
        npsd_store_response_t *responses;
        npsd_store_result_t *results;
        uint64_t *response_msg; /* index of each response's message */
        size_t responses_size;
        const npsd_account_t **accounts;
        const npsd_usage_t **usage;
        const npsd_followup_t **followups;
        size_t accounts_size;
        npsd_store_alert_t *alerts;
        npsd_out_t *outs;
        size_t outs_size, out_cnt;
};

static void npsd_pipeline_enrich_conf(npsd_pipeline_t *pl);

npsd_pipeline_t *npsd_pipeline_new(const npsd_conf_t *conf,
                                   npsd_store_t *store, npsd_kafka_t *kafka,
                                   const npsd_themes_t *themes) {
        npsd_pipeline_t *pl = calloc(1, sizeof(*pl));

        if (!pl)
                return NULL;
        pl->conf = conf;
        pl->store = store;
        pl->kafka = kafka;
        pl->themes = themes;
        npsd_parse_limits_default(&pl->limits);
        pl->limits.max_message_bytes = (size_t)conf->message_max_bytes;
        pl->limits.max_comment_bytes = (size_t)conf->comment_max_bytes;
        pl->limits.future_allowance_ms =
                (int64_t)conf->future_allowance_s * 1000;
        npsd_pipeline_enrich_conf(pl);
        return pl;
}

/* The enrichment settings (priority, follow-up deadlines) are copied out
 * of conf: at creation, and again when a reload changed conf. */
static void npsd_pipeline_enrich_conf(npsd_pipeline_t *pl) {
        const npsd_conf_t *conf = pl->conf;

        npsd_enrich_conf_default(&pl->enrich);
        pl->enrich.p1_renewal_days = conf->priority_renewal_days;
        pl->enrich.p2_renewal_days = conf->priority_renewal_days;
        pl->enrich.p1_arr = conf->priority_arr;
        pl->enrich.ack_ms = (int64_t)conf->followup_ack_hours * 3600000;
        pl->enrich.route_ms =
                (int64_t)conf->followup_route_days * 86400000LL;
        pl->enrich.close_ms =
                (int64_t)conf->followup_close_days * 86400000LL;
}

void npsd_pipeline_reconfigure(npsd_pipeline_t *pl,
                               const npsd_themes_t *themes) {
        npsd_pipeline_enrich_conf(pl);
        pl->themes = themes;
}

static void npsd_pipeline_clear_outs(npsd_pipeline_t *pl) {
        for (size_t i = 0; i < pl->out_cnt; i++)
                free(pl->outs[i].payload);
        pl->out_cnt = 0;
}

void npsd_pipeline_destroy(npsd_pipeline_t *pl) {
        if (!pl)
                return;
        npsd_pipeline_clear_outs(pl);
        free(pl->events);
        free(pl->parsed);
        free(pl->responses);
        free(pl->results);
        free(pl->response_msg);
        free(pl->accounts);
        free(pl->usage);
        free(pl->followups);
        free(pl->alerts);
        free(pl->outs);
        free(pl);
}

const npsd_pipeline_stats_t *npsd_pipeline_stats(const npsd_pipeline_t *pl) {
        return &pl->stats;
}

void npsd_pipeline_stage_add(npsd_pipeline_t *pl, npsd_stage_t stage,
                             double seconds) {
        if ((unsigned)stage < NPSD_STAGE__CNT)
                pl->stats.stage_seconds[stage] += seconds;
}

void npsd_pipeline_timer_count(npsd_pipeline_t *pl) {
        pl->stats.timer_runs++;
}

void npsd_pipeline_set_tick(npsd_pipeline_t *pl, void (*tick)(void *opaque),
                            void *opaque) {
        pl->tick = tick;
        pl->tick_opaque = opaque;
}

static void npsd_pipeline_tick(npsd_pipeline_t *pl) {
        if (pl->tick)
                pl->tick(pl->tick_opaque);
}

static double npsd_pipeline_mono_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Adds the time since *t0 to a stage and moves *t0 to now. */
static void npsd_pipeline_lap(npsd_pipeline_t *pl, npsd_stage_t stage,
                              double *t0) {
        double t1 = npsd_pipeline_mono_s();

        pl->stats.stage_seconds[stage] += t1 - *t0;
        *t0 = t1;
}

/* Observes the end-to-end latency of every message of a batch whose outputs
 * were just acknowledged: wall clock now minus the message's Kafka
 * timestamp (messages without one are skipped; clock skew counts as 0). */
static void npsd_pipeline_observe_e2e(npsd_pipeline_t *pl,
                                      rd_kafka_message_t *const *msgs,
                                      size_t cnt) {
        struct timespec ts;
        int64_t now_ms;

        clock_gettime(CLOCK_REALTIME, &ts);
        now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        for (size_t i = 0; i < cnt; i++) {
                int64_t t = rd_kafka_message_timestamp(msgs[i], NULL);
                if (t < 0)
                        continue;
                npsd_hist_observe(&pl->stats.e2e_latency,
                                  NPSD_HIST_E2E_LATENCY,
                                  t < now_ms ? (double)(now_ms - t) / 1000.0
                                             : 0.0);
        }
}

/* Grows every per-message array to hold n entries. */
static int npsd_pipeline_reserve(npsd_pipeline_t *pl, size_t n) {
        size_t size = pl->events_size ? pl->events_size : 256;
        void *p;

        if (n <= pl->events_size)
                return 0;
        while (size < n)
                size *= 2;
#define NPSD_GROW(field)                                                       \
        do {                                                                   \
                if (!(p = realloc(pl->field, size * sizeof(*pl->field))))     \
                        return -1;                                             \
                pl->field = p;                                                 \
        } while (0)
        NPSD_GROW(events);
        NPSD_GROW(parsed);
        NPSD_GROW(responses);
        NPSD_GROW(results);
        NPSD_GROW(response_msg);
        NPSD_GROW(accounts);
        NPSD_GROW(usage);
        NPSD_GROW(followups);
        /* each message yields at most one output */
        NPSD_GROW(outs);
#undef NPSD_GROW
        pl->events_size = pl->responses_size = pl->accounts_size =
                pl->outs_size = size;
        return 0;
}

static npsd_out_t *npsd_pipeline_out(npsd_pipeline_t *pl, const char *topic,
                                     const void *key, size_t key_len,
                                     char *payload, size_t len) {
        npsd_out_t *out = &pl->outs[pl->out_cnt++];

        out->topic = topic;
        out->key = key;
        out->key_len = key_len;
        out->payload = payload;
        out->len = len;
        out->status = NPSD_DELIVERY_PENDING;
        return out;
}

static npsd_kind_t npsd_pipeline_kind(const npsd_pipeline_t *pl,
                                      const char *topic, int *known) {
        *known = 1;
        if (!strcmp(topic, pl->conf->topic_responses))
                return NPSD_KIND_RESPONSE;
        if (!strcmp(topic, pl->conf->topic_accounts))
                return NPSD_KIND_ACCOUNT;
        if (!strcmp(topic, pl->conf->topic_usage))
                return NPSD_KIND_USAGE;
        if (!strcmp(topic, pl->conf->topic_followups))
                return NPSD_KIND_FOLLOWUP;
        *known = 0;
        return NPSD_KIND_RESPONSE;
}

static int64_t npsd_pipeline_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void npsd_pipeline_sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

/* FNV-1a 64 of a payload, as 16 hex digits: enough to tell a redelivered
 * message from a different one that reuses its event_id. */
static void npsd_pipeline_digest(const void *buf, size_t len, char out[17]) {
        const unsigned char *p = buf;
        uint64_t h = 14695981039346656037ULL;

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 1099511628211ULL;
        }
        snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* Parses every message; rejected ones become DLQ outputs. */
static int npsd_pipeline_parse(npsd_pipeline_t *pl, rd_kafka_message_t **msgs,
                               size_t cnt, int64_t now_ms,
                               npsd_store_batch_t *b) {
        size_t *resp_cnt = &b->resp_cnt, *acct_cnt = &b->account_cnt;

        memset(b, 0, sizeof(*b));
        b->accounts = pl->accounts;
        b->responses = pl->responses;
        b->results = pl->results;
        b->usage = pl->usage;
        b->followups = pl->followups;
        for (size_t i = 0; i < cnt; i++) {
                const rd_kafka_message_t *m = msgs[i];
                const char *topic = rd_kafka_topic_name(m->rkt);
                npsd_reject_t rej;
                int known;
                npsd_kind_t kind = npsd_pipeline_kind(pl, topic, &known);

                pl->parsed[i] = 0;
                if (!known)
                        continue; /* not subscribed by this build: skip */
                if (npsd_event_parse(kind, m->payload, m->len, now_ms,
                                     &pl->limits, &pl->events[i],
                                     &rej) == 0) {
                        pl->parsed[i] = 1;
                        if (kind == NPSD_KIND_RESPONSE) {
                                npsd_store_response_t *r =
                                        &pl->responses[*resp_cnt];
                                r->resp = &pl->events[i].u.response;
                                npsd_pipeline_digest(m->payload, m->len,
                                                     r->digest);
                                r->theme_bits =
                                        r->resp->comment
                                                ? npsd_themes_match(
                                                          pl->themes,
                                                          r->resp->comment,
                                                          r->resp->comment_len)
                                                : 0;
                                pl->response_msg[(*resp_cnt)++] = i;
                        } else if (kind == NPSD_KIND_ACCOUNT) {
                                pl->accounts[(*acct_cnt)++] =
                                        &pl->events[i].u.account;
                        } else if (kind == NPSD_KIND_USAGE) {
                                pl->usage[b->usage_cnt++] =
                                        &pl->events[i].u.usage;
                        } else {
                                pl->followups[b->followup_cnt++] =
                                        &pl->events[i].u.followup;
                        }
                        continue;
                }
                {
                        size_t len;
                        char *dlq = npsd_dlq_build(
                                &rej, topic, m->partition, m->offset, m->key,
                                m->key_len, m->payload, m->len, now_ms, &len);
                        if (!dlq)
                                return -1;
                        npsd_pipeline_out(pl, pl->conf->topic_dlq, m->key,
                                          m->key_len, dlq, len);
                        pl->stats.rejected[rej.reason]++;
                }
        }
        return 0;
}

/* Applies the batch to Redis, retrying with capped backoff while Redis is
 * away: partitions are paused (so the group keeps us as a member and nothing
 * new is fetched), and one line is logged per state change. */
static int npsd_pipeline_apply(npsd_pipeline_t *pl,
                               const npsd_store_batch_t *batch, int64_t now_ms,
                               volatile sig_atomic_t *stop,
                               rd_kafka_message_t **carry, size_t carry_max,
                               size_t *carry_cnt) {
        char errstr[512];
        int backoff = NPSD_BACKOFF_MIN_MS, paused = 0;

        for (;;) {
                double t0 = npsd_pipeline_mono_s();
                int arc = npsd_store_apply(pl->store, now_ms, batch, errstr,
                                           sizeof(errstr));

                npsd_hist_observe(&pl->stats.redis_apply,
                                  NPSD_HIST_REDIS_APPLY,
                                  npsd_pipeline_mono_s() - t0);
                pl->stats.version_conflicts = npsd_store_conflicts(pl->store);
                if (arc == 0)
                        break;
                pl->stats.redis_errors++;
                {
                        /* kept for /healthz, cut to fit */
                        size_t n = strnlen(errstr,
                                           sizeof(pl->stats.redis_error) - 1);
                        memcpy(pl->stats.redis_error, errstr, n);
                        pl->stats.redis_error[n] = '\0';
                }
                if (!paused) {
                        npsd_warn("msg=\"redis unavailable, consumption "
                                  "paused\" error=\"%s\"",
                                  errstr);
                        npsd_kafka_pause(pl->kafka);
                        paused = 1;
                }
                for (int waited = 0; waited < backoff; waited += 50) {
                        rd_kafka_message_t *m;
                        if (*stop)
                                goto stopped;
                        /* keep the group membership alive */
                        if (*carry_cnt < carry_max &&
                            (m = npsd_kafka_serve(pl->kafka)))
                                carry[(*carry_cnt)++] = m;
                        npsd_pipeline_tick(pl);
                        npsd_pipeline_sleep_ms(50);
                }
                backoff = backoff * 2 > NPSD_BACKOFF_MAX_MS
                                  ? NPSD_BACKOFF_MAX_MS
                                  : backoff * 2;
        }
        if (paused) {
                npsd_info("msg=\"redis back, consumption resumed\"");
                npsd_kafka_resume(pl->kafka);
        }
        return 0;

stopped:
        if (paused)
                npsd_kafka_resume(pl->kafka);
        return -1;
}

/* Builds one classified message per response the store answered with a
 * snapshot (new ones, and duplicates still within replay.days: the output
 * may not have been delivered the first time). */
static int npsd_pipeline_enrich(npsd_pipeline_t *pl, size_t resp_cnt,
                                int64_t now_ms) {
        for (size_t i = 0; i < resp_cnt; i++) {
                const npsd_store_result_t *res = &pl->results[i];
                const npsd_response_t *r = pl->responses[i].resp;
                json_t *snap;
                char errstr[256];
                char *payload;
                size_t len;
                const char *topic;

                if (res->counted)
                        pl->stats.accepted++;
                else
                        pl->stats.duplicates++;
                if (!res->snapshot)
                        continue;
                /* counted now: the record as the step built it; else the
                 * one Redis kept */
                snap = res->snapshot_json
                               ? json_incref((json_t *)res->snapshot_json)
                               : npsd_pack_decode(res->snapshot,
                                                      res->snapshot_len,
                                                      errstr,
                                                      sizeof(errstr));
                if (!snap && !res->snapshot_json)
                        /* Redis holds something else under out:<id>; the
                         * response counted before and stays counted */
                        npsd_warn("msg=\"stored snapshot unreadable, "
                                  "duplicate not published again\" "
                                  "event_id=%s error=\"%s\"",
                                  r->event_id, errstr);
                if (!res->counted &&
                    strcmp(json_string_value(json_object_get(snap, "digest"))
                                   ?: "",
                           pl->responses[i].digest)) {
                        /* the event_id was reused for another answer: the
                         * first one counted and was published; this one is
                         * only a duplicate */
                        json_decref(snap);
                        continue;
                }
                payload = npsd_enrich_build(r, snap, pl->themes,
                                            pl->responses[i].theme_bits,
                                            &pl->enrich, now_ms, &len);
                json_decref(snap);
                if (!payload)
                        return -1;
                topic = r->category == NPSD_CAT_PROMOTER
                                ? pl->conf->topic_promoters
                        : r->category == NPSD_CAT_PASSIVE
                                ? pl->conf->topic_passives
                                : pl->conf->topic_detractors;
                npsd_pipeline_out(pl, topic, r->account_id,
                                  strlen(r->account_id), payload, len);
        }
        return 0;
}

/* Produces every output and waits until each is acknowledged; failed
 * deliveries (broker down past message.timeout.ms, say) are produced again.
 * Returns -1 only when stopped first. */
static int npsd_pipeline_deliver(npsd_pipeline_t *pl,
                                 volatile sig_atomic_t *stop) {
        char errstr[512];
        int backoff = NPSD_BACKOFF_MIN_MS, round = 0;
        int64_t stop_at = 0;

        for (;;) {
                size_t failed = 0, refused = 0;
                for (size_t i = 0; i < pl->out_cnt; i++) {
                        npsd_out_t *o = &pl->outs[i];
                        if (round > 0 && o->status != NPSD_DELIVERY_FAILED)
                                continue;
                        /* one log line per round, not per output: a topic
                         * that refuses every message would flood the log */
                        if (npsd_kafka_produce(pl->kafka, o->topic, o->key,
                                               o->key_len, o->payload, o->len,
                                               &o->status,
                                               refused ? NULL : errstr,
                                               sizeof(errstr)) == -1)
                                refused++;
                }
                if (refused)
                        npsd_warn("msg=\"produce failed\" count=%zu "
                                  "error=\"%s\"",
                                  refused, errstr);
                while (npsd_kafka_flush(pl->kafka, 100) > 0) {
                        /* Stopping: the batch in hand gets a bounded time to
                         * be acknowledged; past it, it stays uncommitted and
                         * is redelivered (never lost, never committed
                         * early). */
                        if (*stop && !stop_at)
                                stop_at = npsd_pipeline_mono_ms();
                        if (stop_at && npsd_pipeline_mono_ms() - stop_at >
                                               NPSD_STOP_DRAIN_MS)
                                return -1;
                        npsd_pipeline_tick(pl);
                }
                for (size_t i = 0; i < pl->out_cnt; i++)
                        if (pl->outs[i].status != NPSD_DELIVERY_OK)
                                failed++;
                if (!failed)
                        break;
                if (*stop)
                        return -1;
                pl->stats.delivery_retries += failed;
                npsd_warn("msg=\"outputs not acknowledged, producing again\" "
                          "count=%zu",
                          failed);
                for (int waited = 0; waited < backoff; waited += 100) {
                        npsd_pipeline_tick(pl);
                        npsd_pipeline_sleep_ms(backoff - waited < 100
                                                       ? backoff - waited
                                                       : 100);
                }
                backoff = backoff * 2 > NPSD_BACKOFF_MAX_MS
                                  ? NPSD_BACKOFF_MAX_MS
                                  : backoff * 2;
                round++;
        }
        pl->stats.produced += pl->out_cnt;
        return 0;
}

#define NPSD_ALERTS_PER_ROUND 500

static int npsd_pipeline_alerts_run(npsd_pipeline_t *pl,
                                    volatile sig_atomic_t *stop) {
        char errstr[512];
        int n, total = 0;
        uint64_t by_type[NPSD_ALERT__CNT];

        if (!pl->alerts &&
            !(pl->alerts = calloc(NPSD_ALERTS_PER_ROUND, sizeof(*pl->alerts))))
                return -1;
        if (npsd_pipeline_reserve(pl, NPSD_ALERTS_PER_ROUND) == -1)
                return -1;
        while (!*stop) {
                n = npsd_store_outbox_fetch(pl->store, NPSD_ALERTS_PER_ROUND,
                                            pl->alerts, errstr,
                                            sizeof(errstr));
                if (n <= 0)
                        break;
                npsd_pipeline_clear_outs(pl);
                memset(by_type, 0, sizeof(by_type));
                for (int i = 0; i < n; i++) {
                        /* key: the alert's account id (ids may hold ':',
                         * so it is read from the message, not the alert
                         * id); copied behind the payload in one buffer,
                         * both owned by the output */
                        const npsd_store_alert_t *a = &pl->alerts[i];
                        json_t *msg = json_loadb(a->payload, a->len, 0, NULL);
                        const char *acct = json_string_value(
                                json_object_get(msg, "account_id"));
                        npsd_alert_type_t type = npsd_alert_type_parse(
                                json_string_value(
                                        json_object_get(msg, "type")));
                        size_t klen = acct ? strlen(acct) : 0;
                        char *payload = malloc(a->len + klen + 1);
                        if (!payload) {
                                json_decref(msg);
                                return -1;
                        }
                        memcpy(payload, a->payload, a->len);
                        memcpy(payload + a->len, acct ? acct : "", klen + 1);
                        json_decref(msg);
                        if (type < NPSD_ALERT__CNT)
                                by_type[type]++;
                        npsd_pipeline_out(pl, pl->conf->topic_alerts,
                                          payload + a->len, klen, payload,
                                          a->len);
                }
                if (npsd_pipeline_deliver(pl, stop) == -1) {
                        npsd_pipeline_clear_outs(pl);
                        return -1;
                }
                npsd_pipeline_clear_outs(pl);
                if (npsd_store_outbox_ack(pl->store, pl->alerts, (size_t)n,
                                          errstr, sizeof(errstr)) == -1)
                        return -1;
                for (int t = 0; t < NPSD_ALERT__CNT; t++)
                        pl->stats.alerts[t] += by_type[t];
                total += n;
                if (n < NPSD_ALERTS_PER_ROUND)
                        break;
        }
        return total;
}

int npsd_pipeline_alerts(npsd_pipeline_t *pl, volatile sig_atomic_t *stop) {
        double t0 = npsd_pipeline_mono_s();
        int rc = npsd_pipeline_alerts_run(pl, stop);

        npsd_pipeline_lap(pl, NPSD_STAGE_ALERTS, &t0);
        return rc;
}

int npsd_pipeline_run(npsd_pipeline_t *pl, rd_kafka_message_t **msgs,
                      size_t cnt, int64_t now_ms,
                      volatile sig_atomic_t *stop, rd_kafka_message_t **carry,
                      size_t carry_max, size_t *carry_cnt) {
        npsd_store_batch_t batch;
        double t0 = npsd_pipeline_mono_s();
        int rc = -1;

        if (npsd_pipeline_reserve(pl, cnt) == -1) {
                npsd_error("msg=\"out of memory\" batch=%zu", cnt);
                return -1;
        }
        pl->stats.consumed += cnt;
        pl->stats.batches++;
        npsd_hist_observe(&pl->stats.batch_size, NPSD_HIST_BATCH_SIZE,
                          (double)cnt);
        if (npsd_pipeline_parse(pl, msgs, cnt, now_ms, &batch) == -1)
                goto done;
        npsd_pipeline_lap(pl, NPSD_STAGE_PARSE, &t0);
        if ((batch.resp_cnt || batch.account_cnt || batch.usage_cnt ||
             batch.followup_cnt) &&
            npsd_pipeline_apply(pl, &batch, now_ms, stop, carry, carry_max,
                                carry_cnt) == -1)
                goto done;
        npsd_pipeline_lap(pl, NPSD_STAGE_REDIS, &t0);
        if (npsd_pipeline_enrich(pl, batch.resp_cnt, now_ms) == -1)
                goto done;
        npsd_pipeline_lap(pl, NPSD_STAGE_ENRICH, &t0);
        if (npsd_pipeline_deliver(pl, stop) == -1)
                goto done;
        npsd_pipeline_lap(pl, NPSD_STAGE_DELIVER, &t0);
        npsd_pipeline_observe_e2e(pl, msgs, cnt);
        /* asynchronous while running; the last batch before a stop waits
         * for the broker so that a restart resumes right after it */
        npsd_kafka_commit(pl->kafka, msgs, cnt, *stop ? 0 : 1);
        npsd_pipeline_lap(pl, NPSD_STAGE_COMMIT, &t0);
        rc = 0;
        /* Alerts the batch raised wait in Redis' outbox: publishing them
         * does not hold the commit back (a crash now loses none of them). */
        if (npsd_store_outbox_len(pl->store) > 0)
                npsd_pipeline_alerts(pl, stop);

done:
        for (size_t i = 0; i < cnt; i++)
                if (pl->parsed[i])
                        npsd_event_clear(&pl->events[i]);
        npsd_pipeline_clear_outs(pl);
        return rc;
}
