/*
 * npsd_devbroker — the embedded development broker: librdkafka's mock
 * cluster, a real Kafka-protocol server held in memory, listening on
 * 127.0.0.1. For demos and tests only; it keeps nothing on disk.
 */
#ifndef NPSD_DEVBROKER_H
#define NPSD_DEVBROKER_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stddef.h>

typedef struct npsd_devbroker_s npsd_devbroker_t;

/* Starts a mock cluster of broker_cnt brokers and creates each topic with
 * `partitions` partitions. Returns NULL and fills errstr on failure.
 * Must be destroyed with npsd_devbroker_destroy(). */
npsd_devbroker_t *npsd_devbroker_new(int broker_cnt, int partitions,
                                     const char *const *topics,
                                     size_t topic_cnt, char *errstr,
                                     size_t errstr_size);

/* "127.0.0.1:port,..." — valid until destroy. */
const char *npsd_devbroker_bootstraps(const npsd_devbroker_t *devbroker);

/* The mock cluster, for fault injection (rd_kafka_mock_*). */
rd_kafka_mock_cluster_t *npsd_devbroker_mock(npsd_devbroker_t *devbroker);

void npsd_devbroker_destroy(npsd_devbroker_t *devbroker);

#endif
