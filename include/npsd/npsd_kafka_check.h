/*
 * npsd_kafka_check — validates the kafka.* settings against librdkafka
 * without connecting anywhere (npsd --check-config).
 */
#ifndef NPSD_KAFKA_CHECK_H
#define NPSD_KAFKA_CHECK_H

#include <stddef.h>

#include "npsd/npsd_config.h"

/* Sets every kafka.<property> on a fresh rd_kafka_conf_t, as npsd will.
 * Returns 0, or -1 with errstr naming the setting and librdkafka's reason
 * (unknown property, invalid value, feature not built in). */
int npsd_kafka_check_conf(const npsd_conf_t *conf, char *errstr,
                          size_t errstr_size);

#endif
