/*
 * npsd_pipeline — one poll batch, end to end:
 *   parse and validate (rejects to the DLQ), apply to Redis in one pipelined
 *   round trip (retried with capped backoff while Redis is away, partitions
 *   paused), build the classified messages, produce, wait for every delivery
 *   report (failed ones are produced again), and only then commit offsets.
 */
#ifndef NPSD_PIPELINE_H
#define NPSD_PIPELINE_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdint.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_enrich.h"
#include "npsd/npsd_kafka.h"
#include "npsd/npsd_metrics.h"
#include "npsd/npsd_store.h"
#include "npsd/npsd_alert.h"
#include "npsd/npsd_themes.h"

typedef struct npsd_pipeline_s npsd_pipeline_t;

/* Counters since start, for logs and metrics. */
typedef struct npsd_pipeline_stats_s {
        uint64_t consumed, accepted, duplicates, produced, batches;
        uint64_t rejected[NPSD_REJECT__CNT];
        uint64_t redis_errors, delivery_retries;
        uint64_t version_conflicts; /* account writes that lost a version
                                     * race and were computed again */
        uint64_t alerts[NPSD_ALERT__CNT]; /* alerts published, by type */
        uint64_t timer_runs; /* timer passes completed: windows rolled,
                              * deadlines checked, outbox drained */
        npsd_hist_t redis_apply;  /* seconds per npsd_store_apply() call */
        npsd_hist_t batch_size;   /* messages per batch */
        npsd_hist_t e2e_latency;  /* seconds from each input message's Kafka
                                   * timestamp to its batch's outputs
                                   * acknowledged */
        double stage_seconds[NPSD_STAGE__CNT]; /* wall time per stage */
        char redis_error[NPSD_METRICS_REASON_MAX]; /* last failed apply's
                                                    * error, "" before any */
} npsd_pipeline_stats_t;

/* Creates a pipeline over the given adapters (not owned; they must outlive
 * it). Must be destroyed with npsd_pipeline_destroy(). */
npsd_pipeline_t *npsd_pipeline_new(const npsd_conf_t *conf,
                                   npsd_store_t *store, npsd_kafka_t *kafka,
                                   const npsd_themes_t *themes);
void npsd_pipeline_destroy(npsd_pipeline_t *pipeline);

/* Takes up a reload between batches: re-reads the settings it copies out
 * of conf (priority and follow-up deadlines; conf itself was changed in
 * place) and classifies comments with themes from now on (not owned; it
 * must outlive the pipeline or the next reconfigure). Never during
 * npsd_pipeline_run(). */
void npsd_pipeline_reconfigure(npsd_pipeline_t *pipeline,
                               const npsd_themes_t *themes);

/* Processes msgs (ownership stays with the caller). now_ms is the batch's
 * "now". Returns 0 when the batch's state is in Redis, its outputs are
 * acknowledged and its offsets committed; -1 when *stop was raised before
 * that (nothing of the batch is committed: it will be redelivered). Messages
 * the consumer handed out while paused are appended to carry (up to
 * carry_max; *carry_cnt updated) for the next batch. */
int npsd_pipeline_run(npsd_pipeline_t *pipeline, rd_kafka_message_t **msgs,
                      size_t cnt, int64_t now_ms,
                      volatile sig_atomic_t *stop, rd_kafka_message_t **carry,
                      size_t carry_max, size_t *carry_cnt);

/* Publishes the alerts waiting in Redis' outbox to the alerts topic and
 * removes each once acknowledged (at-least-once; alert ids are stable).
 * Returns the number published, or -1 on a Redis or delivery problem (they
 * stay in the outbox for the next call). */
int npsd_pipeline_alerts(npsd_pipeline_t *pipeline,
                         volatile sig_atomic_t *stop);

const npsd_pipeline_stats_t *npsd_pipeline_stats(const npsd_pipeline_t *pipeline);

/* Adds wall time spent outside the pipeline (the main loop's timers) to a
 * stage's total. */
void npsd_pipeline_stage_add(npsd_pipeline_t *pipeline, npsd_stage_t stage,
                             double seconds);

/* Counts one completed timer pass (the main loop's roll and the outbox
 * drain after it). Exposed so that a reader can tell that a pass ran after
 * a given moment: "nothing more was raised" means something only then. */
void npsd_pipeline_timer_count(npsd_pipeline_t *pipeline);

/* Registers tick (NULL to remove), called on the pipeline's thread about
 * every 100 ms while a batch waits for Redis to come back or for delivery
 * reports, so that the owner keeps publishing metrics and health. */
void npsd_pipeline_set_tick(npsd_pipeline_t *pipeline,
                            void (*tick)(void *opaque), void *opaque);

#endif
