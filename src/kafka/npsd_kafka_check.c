/*
 * npsd_kafka_check — see include/npsd/npsd_kafka_check.h.
 */
#include "npsd/npsd_kafka_check.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

int npsd_kafka_check_conf(const npsd_conf_t *conf, char *errstr,
                          size_t errstr_size) {
        rd_kafka_conf_t *kconf = rd_kafka_conf_new();
        char err[512];
        size_t i;

        for (i = 0; i < conf->kafka_cnt; i++) {
                const npsd_kv_t *kv = &conf->kafka[i];

                /* An empty bootstrap.servers means the embedded broker. */
                if (!*kv->value && !strcmp(kv->key, "bootstrap.servers"))
                        continue;
                if (rd_kafka_conf_set(kconf, kv->key, kv->value, err,
                                      sizeof(err)) != RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size, "kafka.%s: %s", kv->key,
                                 err);
                        rd_kafka_conf_destroy(kconf);
                        return -1;
                }
        }
        rd_kafka_conf_destroy(kconf);
        return 0;
}
