/*
 * npsd_kafka — the Kafka adapter: one consumer (group member) and one
 * idempotent producer built from the kafka.* settings, batches built from
 * rd_kafka_consumer_poll() (librdkafka 2.0.2's consume_batch API can lose
 * messages around pause/resume/rebalance), delivery tracking, and commits of
 * processed offsets only.
 */
#ifndef NPSD_KAFKA_H
#define NPSD_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_metrics.h"

typedef struct npsd_kafka_s npsd_kafka_t;

/* Delivery state of one produced message, written by the delivery report. */
typedef enum {
        NPSD_DELIVERY_PENDING = 0,
        NPSD_DELIVERY_OK,
        NPSD_DELIVERY_FAILED,
} npsd_delivery_t;

/* Creates the consumer and the producer. bootstraps, when not NULL,
 * overrides kafka.bootstrap.servers (the embedded broker). conf must
 * outlive the handle. Returns NULL with errstr on a bad property. Must be
 * destroyed with npsd_kafka_destroy(). */
npsd_kafka_t *npsd_kafka_new(const npsd_conf_t *conf, const char *bootstraps,
                             char *errstr, size_t errstr_size);

/* Subscribes the consumer to the given topics. Returns 0 or -1. */
int npsd_kafka_subscribe(npsd_kafka_t *kafka, const char *const *topics,
                         size_t topic_cnt, char *errstr, size_t errstr_size);

/* Polls up to max messages: waits up to first_wait_ms for the first one,
 * then gathers for at most gather_ms more. Error events are logged and
 * dropped. Returns the number of messages stored in msgs; each must be
 * destroyed with rd_kafka_message_destroy(). */
size_t npsd_kafka_poll_batch(npsd_kafka_t *kafka, rd_kafka_message_t **msgs,
                             size_t max, int first_wait_ms, int gather_ms);

/* Serves consumer callbacks (rebalances) without taking messages: returns
 * a message if one was still queued (the caller keeps it), else NULL. */
rd_kafka_message_t *npsd_kafka_serve(npsd_kafka_t *kafka);

/* Stops / restarts fetching on every assigned partition (Redis outage). */
void npsd_kafka_pause(npsd_kafka_t *kafka);
void npsd_kafka_resume(npsd_kafka_t *kafka);

/* Queues one message. payload and key are NOT copied: they must stay valid
 * until *status leaves NPSD_DELIVERY_PENDING. Returns 0 or -1 (queue full
 * after waiting, or unknown topic) with errstr (NULL: no message). */
int npsd_kafka_produce(npsd_kafka_t *kafka, const char *topic,
                       const void *key, size_t key_len, const void *payload,
                       size_t len, volatile npsd_delivery_t *status,
                       char *errstr, size_t errstr_size);

/* Serves delivery reports for up to timeout_ms; returns the number of
 * messages still in flight. */
int npsd_kafka_flush(npsd_kafka_t *kafka, int timeout_ms);

/* Stores and commits next offsets (offset + 1 per partition) for msgs.
 * async: 0 waits for the broker. Returns 0 or -1. */
int npsd_kafka_commit(npsd_kafka_t *kafka, rd_kafka_message_t *const *msgs,
                      size_t cnt, int async);

/* 1 while the consumer has an assignment or has heard from a broker
 * recently (for /healthz). */
int npsd_kafka_up(const npsd_kafka_t *kafka);

/* The consumer lag of each partition, from the last librdkafka statistics
 * report (statistics.interval.ms, 5000 unless set): a malloc'd copy the
 * caller owns (free() it, or hand it to npsd_metrics_publish_lag()), NULL
 * with *cntp 0 when none is known yet. Thread-safe. */
npsd_metrics_lag_t *npsd_kafka_lag(npsd_kafka_t *kafka, size_t *cntp);

/* Leaves the group (committing nothing beyond what was processed) and
 * flushes the producer for up to flush_ms. */
void npsd_kafka_close(npsd_kafka_t *kafka, int flush_ms);
void npsd_kafka_destroy(npsd_kafka_t *kafka);

#endif
