/*
 * npsd_devbroker — the embedded development broker.
 *
 * librdkafka ships a mock Kafka cluster (rdkafka_mock.h): real Kafka
 * protocol listeners on 127.0.0.1, all state in memory, with producers
 * (idempotent included), consumers, balanced consumer groups and offset
 * commits. It needs an rd_kafka_t for its internal book keeping; we create
 * an otherwise idle producer handle for that. For demos and tests only.
 */
#include "npsd/npsd_devbroker.h"
#include "npsd/npsd_log.h"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

struct npsd_devbroker_s {
        rd_kafka_t *rk;                        /* owner of the mock cluster */
        rd_kafka_mock_cluster_t *mcluster;
        char *bootstraps;
};

/* librdkafka's own logger prints "%7|..." lines; route them through the
 * logfmt logger so that the broker's output looks like the rest. */
static void npsd_devbroker_log_cb(const rd_kafka_t *rk, int level,
                                  const char *fac, const char *buf) {
        char msg[1024];

        (void)rk;
        /* The host handle has no bootstrap servers on purpose. */
        if (!strcmp(fac, "CONFWARN") && strstr(buf, "bootstrap.servers"))
                return;
        snprintf(msg, sizeof(msg), "%s", buf);
        npsd_log_quote_safe(msg);
        if (level <= 3)
                npsd_error("msg=\"devbroker: %s\" facility=%s", msg, fac);
        else if (level <= 4)
                npsd_warn("msg=\"devbroker: %s\" facility=%s", msg, fac);
        else if (level <= 6)
                npsd_info("msg=\"devbroker: %s\" facility=%s", msg, fac);
        else
                npsd_debug("msg=\"devbroker: %s\" facility=%s", msg, fac);
}

/*
 * Sets TCP_NODELAY on every listening TCP socket of this process (Linux
 * accepted sockets inherit it). The mock cluster does not set it, where a
 * Kafka broker does: with several requests in flight on one connection (an
 * idempotent producer keeps up to five), Nagle's algorithm holds each
 * response behind the client's delayed ACK, and every produce round trip
 * took 40 to 46 ms instead of under 1. Called right after the cluster is
 * created, before any client knows its address. Returns the sockets set.
 */
static int npsd_devbroker_nodelay(void) {
        DIR *dir = opendir("/proc/self/fd");
        struct dirent *de;
        int cnt = 0;

        if (!dir)
                return 0;
        while ((de = readdir(dir))) {
                int fd = atoi(de->d_name), on = 1, v = 0;
                socklen_t len = sizeof(v);
                struct stat sb;

                if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
                    fd == dirfd(dir) || fstat(fd, &sb) || !S_ISSOCK(sb.st_mode))
                        continue;
                if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) ||
                    !v)
                        continue;
                len = sizeof(v);
                if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) ||
                    (v != AF_INET && v != AF_INET6))
                        continue;
                if (!setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on,
                                sizeof(on)))
                        cnt++;
        }
        closedir(dir);
        return cnt;
}

npsd_devbroker_t *npsd_devbroker_new(int broker_cnt, int partitions,
                                     const char *const *topics,
                                     size_t topic_cnt, char *errstr,
                                     size_t errstr_size) {
        npsd_devbroker_t *db;
        rd_kafka_conf_t *conf;
        rd_kafka_resp_err_t err;
        const char *bs;
        size_t i;

        if (broker_cnt < 1 || broker_cnt > 16) {
                snprintf(errstr, errstr_size,
                         "broker count must be 1-16, got %d", broker_cnt);
                return NULL;
        }
        if (partitions < 1 || partitions > 1000) {
                snprintf(errstr, errstr_size,
                         "partition count must be 1-1000, got %d", partitions);
                return NULL;
        }

        db = calloc(1, sizeof(*db));
        if (!db) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }

        conf = rd_kafka_conf_new();
        rd_kafka_conf_set_log_cb(conf, npsd_devbroker_log_cb);
        /* The handle never connects anywhere by itself: no bootstrap
         * servers, it only hosts the mock cluster. */
        if (rd_kafka_conf_set(conf, "client.id", "npsd-devbroker", errstr,
                              errstr_size) != RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                goto fail_free;
        }
        db->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
        if (!db->rk) {
                rd_kafka_conf_destroy(conf);
                goto fail_free;
        }

        db->mcluster = rd_kafka_mock_cluster_new(db->rk, broker_cnt);
        if (!db->mcluster) {
                snprintf(errstr, errstr_size,
                         "could not create the mock cluster "
                         "(no free ports on 127.0.0.1?)");
                goto fail_rk;
        }
        if (npsd_devbroker_nodelay() < broker_cnt)
                npsd_warn("msg=\"devbroker: could not set TCP_NODELAY on "
                          "every listener: produce round trips may take "
                          "40 ms\"");

        for (i = 0; i < topic_cnt; i++) {
                /* Replication factor 1: with several brokers, leaders are
                 * still spread over the brokers. */
                err = rd_kafka_mock_topic_create(db->mcluster, topics[i],
                                                 partitions, 1);
                if (err) {
                        snprintf(errstr, errstr_size,
                                 "could not create topic %s: %s", topics[i],
                                 rd_kafka_err2str(err));
                        goto fail_mcluster;
                }
        }

        bs = rd_kafka_mock_cluster_bootstraps(db->mcluster);
        db->bootstraps = strdup(bs ? bs : "");
        if (!db->bootstraps || !*db->bootstraps) {
                snprintf(errstr, errstr_size,
                         "mock cluster has no bootstrap servers");
                goto fail_mcluster;
        }
        return db;

fail_mcluster:
        free(db->bootstraps);
        rd_kafka_mock_cluster_destroy(db->mcluster);
fail_rk:
        rd_kafka_destroy(db->rk);
fail_free:
        free(db);
        return NULL;
}

const char *npsd_devbroker_bootstraps(const npsd_devbroker_t *db) {
        return db->bootstraps;
}

rd_kafka_mock_cluster_t *npsd_devbroker_mock(npsd_devbroker_t *db) {
        return db->mcluster;
}

void npsd_devbroker_destroy(npsd_devbroker_t *db) {
        if (!db)
                return;
        /* The cluster first: it borrows the handle's internals. */
        rd_kafka_mock_cluster_destroy(db->mcluster);
        rd_kafka_destroy(db->rk);
        free(db->bootstraps);
        free(db);
}
