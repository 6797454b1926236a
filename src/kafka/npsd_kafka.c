/*
 * npsd_kafka — Kafka adapter (see include/npsd/npsd_kafka.h).
 */
#include "npsd/npsd_kafka.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "npsd/npsd_log.h"
#include "npsd/npsd_metrics.h"

struct npsd_kafka_s {
        const npsd_conf_t *conf;
        rd_kafka_t *consumer;
        rd_kafka_t *producer;
        volatile int brokers_down; /* set by error_cb, cleared on traffic */
        int paused;

        /* Partitions the group gave us that are not assigned to the
         * fetcher yet (held): the other inputs' partitions of an
         * assignment, until every assigned accounts partition (ctx_wait)
         * reported its end or until held_until (context first); and every
         * partition assigned during a Redis outage, until it ends. */
        rd_kafka_topic_partition_list_t *held, *ctx_wait;
        int handover_failing; /* failed handovers in a row */
        int64_t held_until;

        /* consumer lag per partition, from the last statistics report */
        pthread_mutex_t lag_lock;
        npsd_metrics_lag_t *lags;
        size_t lag_cnt;
};

/* Properties that only a consumer understands: not passed to the producer,
 * which would otherwise warn about each at start-up. */
static int npsd_kafka_consumer_only(const char *key) {
        static const char *prefixes[] = {
                "group.",  "auto.",       "enable.auto.",   "session.",
                "fetch.",  "isolation.",  "partition.assignment",
                "max.poll", "heartbeat.", "queued.",        "check.crcs",
                "enable.partition.eof",   "allow.auto.create.topics",
                "coordinator.",           "consume.",       NULL};
        for (int i = 0; prefixes[i]; i++)
                if (!strncmp(key, prefixes[i], strlen(prefixes[i])))
                        return 1;
        return 0;
}

static int64_t npsd_kafka_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void npsd_kafka_log_cb(const rd_kafka_t *rk, int level,
                              const char *fac, const char *buf) {
        npsd_log_level_t l = level <= 3   ? NPSD_LOG_ERROR
                             : level <= 5 ? NPSD_LOG_WARN
                             : level == 6 ? NPSD_LOG_INFO
                                          : NPSD_LOG_DEBUG;
        if (npsd_log_enabled(l))
                npsd_log_write(l, "msg=\"librdkafka\" client=%s fac=%s "
                                  "detail=\"%s\"",
                               rd_kafka_name(rk), fac, buf);
}

static void npsd_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason,
                                void *opaque) {
        npsd_kafka_t *kafka = opaque;

        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
                if (!kafka->brokers_down)
                        npsd_warn("msg=\"kafka brokers down\" client=%s "
                                  "reason=\"%s\"",
                                  rd_kafka_name(rk), reason);
                kafka->brokers_down = 1;
                return;
        }
        npsd_warn("msg=\"kafka error\" client=%s err=%s reason=\"%s\"",
                  rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

static void npsd_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                             void *opaque) {
        npsd_kafka_t *kafka = opaque;
        volatile npsd_delivery_t *status = msg->_private;

        if (msg->err) {
                npsd_warn("msg=\"delivery failed, will retry\" topic=%s "
                          "err=%s",
                          rd_kafka_topic_name(msg->rkt),
                          rd_kafka_err2str(msg->err));
                if (status)
                        *status = NPSD_DELIVERY_FAILED;
                return;
        }
        kafka->brokers_down = 0;
        if (status)
                *status = NPSD_DELIVERY_OK;
}

/* Consumer statistics (every statistics.interval.ms): keeps the consumer
 * lag of each partition for /metrics, and takes a broker seen UP as proof
 * that Kafka is reachable again (an idle consumer sees no other traffic). */
static int npsd_kafka_stats_cb(rd_kafka_t *rk, char *json, size_t json_len,
                               void *opaque) {
        npsd_kafka_t *kafka = opaque;
        npsd_metrics_lag_t *lags, *old;
        size_t cnt;
        int up;

        if (npsd_metrics_parse_stats(json, json_len, &lags, &cnt, &up) ==
            -1) {
                npsd_debug("msg=\"unreadable librdkafka statistics\"");
                return 0;
        }
        pthread_mutex_lock(&kafka->lag_lock);
        old = kafka->lags;
        kafka->lags = lags;
        kafka->lag_cnt = cnt;
        pthread_mutex_unlock(&kafka->lag_lock);
        free(old);
        if (up > 0)
                kafka->brokers_down = 0;
        return 0; /* librdkafka frees json */
}

/* Adds p (topic, partition and offset) to list. */
static void npsd_kafka_list_copy(rd_kafka_topic_partition_list_t *list,
                                 const rd_kafka_topic_partition_t *p) {
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)
                ->offset = p->offset;
}

/* The end of a context-first hold that starts (or restarts) now. */
static int64_t npsd_kafka_hold_deadline(const npsd_kafka_t *kafka) {
        return npsd_kafka_mono_ms() + kafka->conf->accounts_first_s * 1000LL;
}

/* Ends the context-first wait; the held partitions are assigned by the
 * next npsd_kafka_handover() (never from inside a rebalance callback). */
static void npsd_kafka_release(npsd_kafka_t *kafka, const char *why) {
        if (!kafka->ctx_wait)
                return;
        npsd_info("msg=\"account context read, other inputs resumed\" "
                  "partitions=%d reason=%s",
                  kafka->held ? kafka->held->cnt : 0, why);
        rd_kafka_topic_partition_list_destroy(kafka->ctx_wait);
        kafka->ctx_wait = NULL;
}

/* A failed handover is retried on every poll: its warning goes out once
 * per run of failures, not once per poll. */
static void npsd_kafka_handover_failed(npsd_kafka_t *kafka, const char *why) {
        if (!kafka->handover_failing++)
                npsd_warn("msg=\"assigning held partitions failed, retrying "
                          "on every poll\" error=\"%s\"",
                          why);
}

/* Assigns the held partitions to the fetcher once nothing holds them (no
 * context wait, no Redis outage). Held partitions are kept out of the
 * assignment rather than assigned and paused: librdkafka 2.0 can drop an
 * assignment's fetch start when a pause or resume of the partition follows
 * it closely, and the partition is then never fetched (librdkafka #2190;
 * CI saw a partition of a fresh group never consumed). The eager protocol
 * has no incremental assign: the whole assignment is given again, every
 * assigned partition from its position (the message after the last one
 * handed to npsd), so nothing is fetched twice. */
static void npsd_kafka_handover(npsd_kafka_t *kafka) {
        rd_kafka_topic_partition_list_t *all = NULL, *go, *keep;
        rd_kafka_error_t *error;
        const char *accounts = kafka->conf->topic_accounts;

        if (!kafka->held || kafka->paused)
                return;
        /* while context is awaited, only accounts partitions go */
        go = rd_kafka_topic_partition_list_new(kafka->held->cnt);
        keep = rd_kafka_topic_partition_list_new(kafka->held->cnt);
        for (int i = 0; i < kafka->held->cnt; i++) {
                const rd_kafka_topic_partition_t *p = &kafka->held->elems[i];
                npsd_kafka_list_copy(
                        !kafka->ctx_wait || !strcmp(p->topic, accounts) ? go
                                                                        : keep,
                        p);
        }
        if (!go->cnt)
                goto done;
        if (!strcmp(rd_kafka_rebalance_protocol(kafka->consumer),
                    "COOPERATIVE")) {
                if ((error = rd_kafka_incremental_assign(kafka->consumer,
                                                         go))) {
                        npsd_kafka_handover_failed(
                                kafka, rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        goto fail;
                }
        } else {
                rd_kafka_resp_err_t err;
                if ((err = rd_kafka_assignment(kafka->consumer, &all)) ||
                    !all) {
                        npsd_kafka_handover_failed(kafka, rd_kafka_err2str(err));
                        goto fail;
                }
                rd_kafka_position(kafka->consumer, all);
                for (int i = 0; i < go->cnt; i++)
                        npsd_kafka_list_copy(all, &go->elems[i]);
                if ((err = rd_kafka_assign(kafka->consumer, all))) {
                        npsd_kafka_handover_failed(kafka, rd_kafka_err2str(err));
                        goto fail;
                }
        }
        if (kafka->handover_failing) {
                npsd_info("msg=\"held partitions assigned after failures\" "
                          "failures=%d",
                          kafka->handover_failing);
                kafka->handover_failing = 0;
        }
done:
        rd_kafka_topic_partition_list_destroy(kafka->held);
        kafka->held = keep->cnt ? keep : NULL;
        if (!keep->cnt)
                rd_kafka_topic_partition_list_destroy(keep);
        keep = NULL;
fail:
        if (all)
                rd_kafka_topic_partition_list_destroy(all);
        if (keep)
                rd_kafka_topic_partition_list_destroy(keep);
        rd_kafka_topic_partition_list_destroy(go);
}

/* Context first. Responses, usage and follow-ups are keyed like the
 * account records, but each topic is fetched on its own: after a reset,
 * a replay or a backlog, a response could be counted (and its snapshot,
 * priority and cohorts taken) before its account's context that sits
 * earlier in the accounts topic. So an assignment pauses the other inputs'
 * new partitions until each new accounts partition reports its end (a
 * partition-EOF event, which librdkafka queues after the partition's last
 * message), for at most accounts.first.s of consumption (a Redis outage
 * restarts the limit; a cooperative addition to a hold keeps it). Only an
 * assignment with both accounts and other partitions holds anything. A
 * batch applies context before responses, so whatever the account records
 * up to that end hold is in Redis before the first held message counts.
 * During a Redis outage every new partition is held. Returns the
 * partitions to assign now (the caller destroys the list). */
static rd_kafka_topic_partition_list_t *
npsd_kafka_hold(npsd_kafka_t *kafka,
                const rd_kafka_topic_partition_list_t *parts) {
        const char *accounts = kafka->conf->topic_accounts;
        rd_kafka_topic_partition_list_t *now =
                rd_kafka_topic_partition_list_new(parts->cnt);
        int nacc = 0, hold;

        if (kafka->conf->accounts_first_s > 0 && accounts && *accounts)
                for (int i = 0; i < parts->cnt; i++)
                        nacc += !strcmp(parts->elems[i].topic, accounts);
        hold = nacc && nacc < parts->cnt;
        if (hold && !kafka->ctx_wait) {
                /* a new hold; a cooperative addition keeps its limit */
                kafka->held_until = npsd_kafka_hold_deadline(kafka);
                kafka->ctx_wait = rd_kafka_topic_partition_list_new(nacc);
        }
        for (int i = 0; i < parts->cnt; i++) {
                const rd_kafka_topic_partition_t *p = &parts->elems[i];
                int is_acc = nacc && !strcmp(p->topic, accounts);
                if (hold && is_acc)
                        rd_kafka_topic_partition_list_add(
                                kafka->ctx_wait, p->topic, p->partition);
                if (kafka->paused || (hold && !is_acc)) {
                        if (!kafka->held)
                                kafka->held = rd_kafka_topic_partition_list_new(
                                        parts->cnt);
                        npsd_kafka_list_copy(kafka->held, p);
                } else {
                        npsd_kafka_list_copy(now, p);
                }
        }
        if (hold)
                npsd_info("msg=\"holding other inputs until account context "
                          "is read\" held=%d accounts_partitions=%d",
                          kafka->held ? kafka->held->cnt : 0,
                          kafka->ctx_wait->cnt);
        return now;
}

/* Forgets revoked partitions from the held lists; returns the revoked
 * ones that the fetcher has (the caller destroys the list). */
static rd_kafka_topic_partition_list_t *
npsd_kafka_unhold(npsd_kafka_t *kafka,
                  const rd_kafka_topic_partition_list_t *parts) {
        rd_kafka_topic_partition_list_t *had =
                rd_kafka_topic_partition_list_new(parts->cnt);

        for (int i = 0; i < parts->cnt; i++) {
                const rd_kafka_topic_partition_t *p = &parts->elems[i];
                if (!kafka->held || !rd_kafka_topic_partition_list_del(
                                            kafka->held, p->topic,
                                            p->partition))
                        rd_kafka_topic_partition_list_add(had, p->topic,
                                                          p->partition);
                if (kafka->ctx_wait)
                        rd_kafka_topic_partition_list_del(
                                kafka->ctx_wait, p->topic, p->partition);
        }
        if (kafka->held && kafka->held->cnt == 0) {
                rd_kafka_topic_partition_list_destroy(kafka->held);
                kafka->held = NULL;
        }
        if (kafka->ctx_wait && kafka->ctx_wait->cnt == 0)
                npsd_kafka_release(kafka, "accounts_revoked");
        return had;
}

/* Assignments follow the group's protocol: incremental for
 * cooperative-sticky, whole for the eager strategies. Nothing needs
 * committing on revoke: every batch commits when it completes, and a batch
 * whose partitions moved away is simply redelivered to the new owner, where
 * dedupe makes it count once. */
static void npsd_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                    rd_kafka_topic_partition_list_t *parts,
                                    void *opaque) {
        npsd_kafka_t *kafka = opaque;
        int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                rd_kafka_topic_partition_list_t *now;
                npsd_info("msg=\"partitions assigned\" count=%d protocol=%s",
                          parts->cnt, coop ? "cooperative" : "eager");
                /* librdkafka keeps an application pause across unassign
                 * and reassign (a partition revoked during a Redis outage
                 * would never be fetched again): cleared before the
                 * assignment, never right after it (see handover) */
                rd_kafka_resume_partitions(rk, parts);
                now = npsd_kafka_hold(kafka, parts);
                if (coop) {
                        if (now->cnt)
                                rd_kafka_error_destroy(
                                        rd_kafka_incremental_assign(rk, now));
                } else {
                        rd_kafka_assign(rk, now);
                }
                rd_kafka_topic_partition_list_destroy(now);
                kafka->brokers_down = 0;
        } else {
                rd_kafka_topic_partition_list_t *had;
                npsd_info("msg=\"partitions revoked\" count=%d", parts->cnt);
                had = npsd_kafka_unhold(kafka, parts);
                if (coop) {
                        if (had->cnt)
                                rd_kafka_error_destroy(
                                        rd_kafka_incremental_unassign(rk,
                                                                      had));
                } else {
                        rd_kafka_assign(rk, NULL);
                }
                rd_kafka_topic_partition_list_destroy(had);
        }
}

/* Applies every kafka.* setting; producer skips consumer-only ones. */
static int npsd_kafka_conf_apply(const npsd_conf_t *conf,
                                 rd_kafka_conf_t *kconf, int producer,
                                 const char *bootstraps, char *errstr,
                                 size_t errstr_size) {
        for (size_t i = 0; i < conf->kafka_cnt; i++) {
                const npsd_kv_t *kv = &conf->kafka[i];
                if (producer && npsd_kafka_consumer_only(kv->key))
                        continue;
                if (bootstraps && !strcmp(kv->key, "bootstrap.servers"))
                        continue;
                if (rd_kafka_conf_set(kconf, kv->key, kv->value, errstr,
                                      errstr_size) != RD_KAFKA_CONF_OK)
                        return -1;
        }
        if (bootstraps &&
            rd_kafka_conf_set(kconf, "bootstrap.servers", bootstraps, errstr,
                              errstr_size) != RD_KAFKA_CONF_OK)
                return -1;
        return 0;
}

npsd_kafka_t *npsd_kafka_new(const npsd_conf_t *conf, const char *bootstraps,
                             char *errstr, size_t errstr_size) {
        npsd_kafka_t *kafka = calloc(1, sizeof(*kafka));
        rd_kafka_conf_t *cconf = NULL, *pconf = NULL;

        if (!kafka) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        kafka->conf = conf;
        pthread_mutex_init(&kafka->lag_lock, NULL);

        cconf = rd_kafka_conf_new();
        /* Our defaults first; kafka.* settings override them. Offsets are
         * committed only by npsd_kafka_commit(), after the batch's state
         * and outputs are confirmed. */
        if (rd_kafka_conf_set(cconf, "enable.auto.commit", "false", errstr,
                              errstr_size) ||
            rd_kafka_conf_set(cconf, "enable.auto.offset.store", "false",
                              errstr, errstr_size) ||
            rd_kafka_conf_set(cconf, "client.id", "npsd", errstr,
                              errstr_size) ||
            rd_kafka_conf_set(cconf, "statistics.interval.ms", "5000", errstr,
                              errstr_size) ||
            npsd_kafka_conf_apply(conf, cconf, 0, bootstraps, errstr,
                                  errstr_size))
                goto fail;
        /* partition-EOF events end the context-first hold (they are
         * dropped otherwise) */
        if (rd_kafka_conf_set(cconf, "enable.partition.eof", "true", errstr,
                              errstr_size))
                goto fail;
        rd_kafka_conf_set_opaque(cconf, kafka);
        rd_kafka_conf_set_stats_cb(cconf, npsd_kafka_stats_cb);
        rd_kafka_conf_set_log_cb(cconf, npsd_kafka_log_cb);
        rd_kafka_conf_set_error_cb(cconf, npsd_kafka_error_cb);
        rd_kafka_conf_set_rebalance_cb(cconf, npsd_kafka_rebalance_cb);

        pconf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(pconf, "enable.idempotence", "true", errstr,
                              errstr_size) ||
            rd_kafka_conf_set(pconf, "linger.ms", "2", errstr, errstr_size) ||
            rd_kafka_conf_set(pconf, "client.id", "npsd", errstr,
                              errstr_size) ||
            npsd_kafka_conf_apply(conf, pconf, 1, bootstraps, errstr,
                                  errstr_size))
                goto fail;
        rd_kafka_conf_set_opaque(pconf, kafka);
        rd_kafka_conf_set_log_cb(pconf, npsd_kafka_log_cb);
        rd_kafka_conf_set_error_cb(pconf, npsd_kafka_error_cb);
        rd_kafka_conf_set_dr_msg_cb(pconf, npsd_kafka_dr_cb);

        if (!(kafka->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, errstr,
                                             errstr_size)))
                goto fail;
        cconf = NULL; /* owned by the consumer now */
        rd_kafka_poll_set_consumer(kafka->consumer);
        if (!(kafka->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr,
                                             errstr_size)))
                goto fail;
        return kafka;

fail:
        if (pconf)
                rd_kafka_conf_destroy(pconf);
        if (cconf)
                rd_kafka_conf_destroy(cconf);
        if (kafka->consumer)
                rd_kafka_destroy(kafka->consumer);
        pthread_mutex_destroy(&kafka->lag_lock);
        free(kafka->lags);
        free(kafka);
        return NULL;
}

int npsd_kafka_subscribe(npsd_kafka_t *kafka, const char *const *topics,
                         size_t topic_cnt, char *errstr, size_t errstr_size) {
        rd_kafka_topic_partition_list_t *list =
                rd_kafka_topic_partition_list_new((int)topic_cnt);
        rd_kafka_resp_err_t err;

        for (size_t i = 0; i < topic_cnt; i++)
                rd_kafka_topic_partition_list_add(list, topics[i],
                                                  RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(kafka->consumer, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (err) {
                snprintf(errstr, errstr_size, "subscribe: %s",
                         rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

/* A consumer error event is not a message: log it (once per kind of
 * trouble in practice: librdkafka reports state changes) and drop it. */
static int npsd_kafka_keep(npsd_kafka_t *kafka, rd_kafka_message_t *msg) {
        if (!msg->err) {
                kafka->brokers_down = 0;
                return 1;
        }
        if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && kafka->ctx_wait &&
            msg->rkt) {
                rd_kafka_topic_partition_list_del(kafka->ctx_wait,
                                                  rd_kafka_topic_name(msg->rkt),
                                                  msg->partition);
                if (kafka->ctx_wait->cnt == 0)
                        npsd_kafka_release(kafka, "accounts_read");
        }
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                npsd_warn("msg=\"consumer error\" err=%s detail=\"%s\"",
                          rd_kafka_err2name(msg->err),
                          rd_kafka_message_errstr(msg));
        rd_kafka_message_destroy(msg);
        return 0;
}

size_t npsd_kafka_poll_batch(npsd_kafka_t *kafka, rd_kafka_message_t **msgs,
                             size_t max, int first_wait_ms, int gather_ms) {
        size_t cnt = 0;
        int64_t deadline = 0;

        if (kafka->ctx_wait && !kafka->paused &&
            npsd_kafka_mono_ms() >= kafka->held_until)
                npsd_kafka_release(kafka, "accounts.first.s");
        npsd_kafka_handover(kafka);
        while (cnt < max) {
                int timeout;
                rd_kafka_message_t *msg;
                if (cnt == 0) {
                        timeout = first_wait_ms;
                } else {
                        int64_t left = deadline - npsd_kafka_mono_ms();
                        timeout = left > 0 ? (int)left : 0;
                }
                msg = rd_kafka_consumer_poll(kafka->consumer, timeout);
                if (!msg) {
                        if (cnt == 0 || timeout == 0)
                                break;
                        continue;
                }
                if (!npsd_kafka_keep(kafka, msg))
                        continue;
                if (cnt == 0)
                        deadline = npsd_kafka_mono_ms() + gather_ms;
                msgs[cnt++] = msg;
        }
        return cnt;
}

rd_kafka_message_t *npsd_kafka_serve(npsd_kafka_t *kafka) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(kafka->consumer, 0);

        if (msg && !npsd_kafka_keep(kafka, msg))
                return NULL;
        return msg;
}

static void npsd_kafka_pause_set(npsd_kafka_t *kafka, int pause) {
        rd_kafka_topic_partition_list_t *parts = NULL;

        kafka->paused = pause;
        /* still waiting for account context: the time limit counts from
         * the end of the outage, not through it */
        if (!pause && kafka->ctx_wait)
                kafka->held_until = npsd_kafka_hold_deadline(kafka);
        if (!rd_kafka_assignment(kafka->consumer, &parts) && parts) {
                if (pause)
                        rd_kafka_pause_partitions(kafka->consumer, parts);
                else
                        rd_kafka_resume_partitions(kafka->consumer, parts);
                rd_kafka_topic_partition_list_destroy(parts);
        }
        npsd_kafka_handover(kafka);
}

void npsd_kafka_pause(npsd_kafka_t *kafka) {
        npsd_kafka_pause_set(kafka, 1);
}

void npsd_kafka_resume(npsd_kafka_t *kafka) {
        npsd_kafka_pause_set(kafka, 0);
}

int npsd_kafka_produce(npsd_kafka_t *kafka, const char *topic,
                       const void *key, size_t key_len, const void *payload,
                       size_t len, volatile npsd_delivery_t *status,
                       char *errstr, size_t errstr_size) {
        rd_kafka_resp_err_t err;

        *status = NPSD_DELIVERY_PENDING;
        for (;;) {
                err = rd_kafka_producev(
                        kafka->producer, RD_KAFKA_V_TOPIC(topic),
                        RD_KAFKA_V_KEY((void *)key, key_len),
                        RD_KAFKA_V_VALUE((void *)payload, len),
                        RD_KAFKA_V_OPAQUE((void *)status), RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                /* Back-pressure: serve delivery reports until room frees. */
                rd_kafka_poll(kafka->producer, 50);
        }
        if (err) {
                if (errstr)
                        snprintf(errstr, errstr_size, "produce to %s: %s",
                                 topic, rd_kafka_err2str(err));
                *status = NPSD_DELIVERY_FAILED;
                return -1;
        }
        return 0;
}

int npsd_kafka_flush(npsd_kafka_t *kafka, int timeout_ms) {
        rd_kafka_flush(kafka->producer, timeout_ms);
        return rd_kafka_outq_len(kafka->producer);
}

int npsd_kafka_commit(npsd_kafka_t *kafka, rd_kafka_message_t *const *msgs,
                      size_t cnt, int async) {
        rd_kafka_topic_partition_list_t *list;
        rd_kafka_resp_err_t err;

        if (!cnt)
                return 0;
        list = rd_kafka_topic_partition_list_new(16);
        for (size_t i = 0; i < cnt; i++) {
                const rd_kafka_message_t *m = msgs[i];
                rd_kafka_topic_partition_t *p =
                        rd_kafka_topic_partition_list_find(
                                list, rd_kafka_topic_name(m->rkt),
                                m->partition);
                if (!p)
                        p = rd_kafka_topic_partition_list_add(
                                list, rd_kafka_topic_name(m->rkt),
                                m->partition);
                if (m->offset + 1 > p->offset)
                        p->offset = m->offset + 1;
        }
        err = rd_kafka_commit(kafka->consumer, list, async);
        rd_kafka_topic_partition_list_destroy(list);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
                npsd_warn("msg=\"commit failed\" err=%s",
                          rd_kafka_err2name(err));
                return -1;
        }
        return 0;
}

int npsd_kafka_up(const npsd_kafka_t *kafka) {
        return !kafka->brokers_down;
}

npsd_metrics_lag_t *npsd_kafka_lag(npsd_kafka_t *kafka, size_t *cntp) {
        npsd_metrics_lag_t *copy = NULL;

        *cntp = 0;
        pthread_mutex_lock(&kafka->lag_lock);
        if (kafka->lag_cnt &&
            (copy = malloc(kafka->lag_cnt * sizeof(*copy)))) {
                memcpy(copy, kafka->lags, kafka->lag_cnt * sizeof(*copy));
                *cntp = kafka->lag_cnt;
        }
        pthread_mutex_unlock(&kafka->lag_lock);
        return copy;
}

void npsd_kafka_close(npsd_kafka_t *kafka, int flush_ms) {
        rd_kafka_consumer_close(kafka->consumer);
        rd_kafka_flush(kafka->producer, flush_ms);
}

void npsd_kafka_destroy(npsd_kafka_t *kafka) {
        if (!kafka)
                return;
        if (kafka->consumer)
                rd_kafka_destroy(kafka->consumer);
        if (kafka->producer)
                rd_kafka_destroy(kafka->producer);
        if (kafka->held)
                rd_kafka_topic_partition_list_destroy(kafka->held);
        if (kafka->ctx_wait)
                rd_kafka_topic_partition_list_destroy(kafka->ctx_wait);
        pthread_mutex_destroy(&kafka->lag_lock);
        free(kafka->lags);
        free(kafka);
}
