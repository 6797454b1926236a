/*
 * npsd_passthrough — the benchmark's ceiling: a Kafka consumer -> producer
 * that does no work, built on the librdkafka settings npsd uses
 * (src/kafka/npsd_kafka.c, src/npsd/npsd_pipeline.c, src/npsd/npsd_main.c):
 *
 *   consumer  enable.auto.commit=false, enable.auto.offset.store=false,
 *             statistics.interval.ms=5000 (with a callback that parses
 *             nothing), eager assignment, rd_kafka_poll_set_consumer;
 *   producer  enable.idempotence=true, linger.ms=2;
 *   loop      a batch of up to --batch messages gathered with
 *             rd_kafka_consumer_poll for --wait-ms after the first one,
 *             every message produced unchanged (same key and value) to
 *             --out, rd_kafka_flush until every delivery is acknowledged,
 *             then one asynchronous commit of the batch's offsets.
 *
 * It copies every input message (npsd produces one output per response
 * only), so for usage-heavy input it produces more than npsd does.
 *
 *   npsd_passthrough --bootstrap B --group G --out TOPIC [--batch N]
 *       [--wait-ms MS] [-X key=value]... TOPIC...
 *
 * Runs until SIGTERM/SIGINT; then prints one line "consumed=N produced=N
 * failed=N batches=N" on stdout and exits 0 (1 when a delivery failed).
 */
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t pt_stop;
static long long pt_failed;

static void pt_on_signal(int sig) {
        (void)sig;
        pt_stop = 1;
}

static long long pt_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pt_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                     void *opaque) {
        (void)rk;
        (void)opaque;
        if (m->err)
                pt_failed++;
}

static int pt_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
        (void)rk;
        (void)json;
        (void)len;
        (void)opaque;
        return 0; /* librdkafka frees json */
}

static void pt_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts,
                            void *opaque) {
        (void)opaque;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                fprintf(stderr, "npsd_passthrough: partitions assigned "
                                "count=%d\n",
                        parts->cnt);
                rd_kafka_assign(rk, parts);
        } else {
                rd_kafka_assign(rk, NULL);
        }
}

static void pt_set(rd_kafka_conf_t *c, const char *k, const char *v) {
        char errstr[512];

        if (rd_kafka_conf_set(c, k, v, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                fprintf(stderr, "npsd_passthrough: %s=%s: %s\n", k, v, errstr);
                exit(2);
        }
}

static void pt_usage(void) {
        fprintf(stderr,
                "usage: npsd_passthrough --bootstrap B --group G --out TOPIC "
                "[--batch N] [--wait-ms MS] [-X key=value]... TOPIC...\n");
        exit(2);
}

int main(int argc, char **argv) {
        const char *bootstrap = NULL, *group = NULL, *out = NULL;
        const char *xs[64];
        const char *topics[16];
        int xcnt = 0, tcnt = 0, batch = 5000, wait_ms = 20;
        long long consumed = 0, produced = 0, batches = 0;
        rd_kafka_conf_t *cconf, *pconf;
        rd_kafka_t *consumer, *producer;
        rd_kafka_topic_partition_list_t *sub;
        rd_kafka_message_t **msgs;
        char errstr[512];

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--bootstrap") && i + 1 < argc)
                        bootstrap = argv[++i];
                else if (!strcmp(argv[i], "--group") && i + 1 < argc)
                        group = argv[++i];
                else if (!strcmp(argv[i], "--out") && i + 1 < argc)
                        out = argv[++i];
                else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
                        batch = atoi(argv[++i]);
                else if (!strcmp(argv[i], "--wait-ms") && i + 1 < argc)
                        wait_ms = atoi(argv[++i]);
                else if (!strcmp(argv[i], "-X") && i + 1 < argc &&
                         xcnt < 64)
                        xs[xcnt++] = argv[++i];
                else if (argv[i][0] == '-')
                        pt_usage();
                else if (tcnt < 16)
                        topics[tcnt++] = argv[i];
        }
        if (!bootstrap || !group || !out || !tcnt || batch < 1)
                pt_usage();

        cconf = rd_kafka_conf_new();
        pt_set(cconf, "bootstrap.servers", bootstrap);
        pt_set(cconf, "group.id", group);
        pt_set(cconf, "enable.auto.commit", "false");
        pt_set(cconf, "enable.auto.offset.store", "false");
        pt_set(cconf, "client.id", "npsd_passthrough");
        pt_set(cconf, "statistics.interval.ms", "5000");
        pt_set(cconf, "auto.offset.reset", "earliest");
        pt_set(cconf, "partition.assignment.strategy", "range,roundrobin");
        pconf = rd_kafka_conf_new();
        pt_set(pconf, "bootstrap.servers", bootstrap);
        pt_set(pconf, "enable.idempotence", "true");
        pt_set(pconf, "linger.ms", "2");
        pt_set(pconf, "client.id", "npsd_passthrough");
        for (int i = 0; i < xcnt; i++) {
                char kv[512], *eq;
                snprintf(kv, sizeof(kv), "%s", xs[i]);
                if (!(eq = strchr(kv, '=')))
                        pt_usage();
                *eq = '\0';
                pt_set(cconf, kv, eq + 1);
                if (strncmp(kv, "session.", 8) && strncmp(kv, "queued.", 7) &&
                    strncmp(kv, "fetch.", 6) && strncmp(kv, "group.", 6))
                        pt_set(pconf, kv, eq + 1);
        }
        rd_kafka_conf_set_stats_cb(cconf, pt_stats_cb);
        rd_kafka_conf_set_rebalance_cb(cconf, pt_rebalance_cb);
        rd_kafka_conf_set_dr_msg_cb(pconf, pt_dr_cb);

        if (!(consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, errstr,
                                      sizeof(errstr))) ||
            !(producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr,
                                      sizeof(errstr)))) {
                fprintf(stderr, "npsd_passthrough: %s\n", errstr);
                return 2;
        }
        rd_kafka_poll_set_consumer(consumer);
        sub = rd_kafka_topic_partition_list_new(tcnt);
        for (int i = 0; i < tcnt; i++)
                rd_kafka_topic_partition_list_add(sub, topics[i],
                                                  RD_KAFKA_PARTITION_UA);
        if (rd_kafka_subscribe(consumer, sub)) {
                fprintf(stderr, "npsd_passthrough: subscribe failed\n");
                return 2;
        }
        rd_kafka_topic_partition_list_destroy(sub);
        signal(SIGTERM, pt_on_signal);
        signal(SIGINT, pt_on_signal);
        msgs = calloc((size_t)batch, sizeof(*msgs));

        while (!pt_stop) {
                int cnt = 0;
                long long deadline = 0;
                rd_kafka_topic_partition_list_t *offs;

                /* npsd_kafka_poll_batch(): 100 ms for the first message,
                 * then gather for wait_ms */
                while (cnt < batch) {
                        int timeout = cnt ? (int)(deadline - pt_mono_ms()) : 100;
                        rd_kafka_message_t *m;
                        if (timeout < 0)
                                timeout = 0;
                        m = rd_kafka_consumer_poll(consumer, timeout);
                        if (!m) {
                                if (cnt == 0 || timeout == 0)
                                        break;
                                continue;
                        }
                        if (m->err) {
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        if (cnt == 0)
                                deadline = pt_mono_ms() + wait_ms;
                        msgs[cnt++] = m;
                }
                if (!cnt)
                        continue;
                for (int i = 0; i < cnt; i++) {
                        rd_kafka_resp_err_t err;
                        for (;;) {
                                /* no copy: the payload lives until the
                                 * batch is flushed, as in npsd */
                                err = rd_kafka_producev(
                                        producer, RD_KAFKA_V_TOPIC(out),
                                        RD_KAFKA_V_KEY(msgs[i]->key,
                                                       msgs[i]->key_len),
                                        RD_KAFKA_V_VALUE(msgs[i]->payload,
                                                         msgs[i]->len),
                                        RD_KAFKA_V_END);
                                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                        break;
                                rd_kafka_poll(producer, 50);
                        }
                        if (err)
                                pt_failed++;
                }
                while (rd_kafka_flush(producer, 100) ==
                       RD_KAFKA_RESP_ERR__TIMED_OUT)
                        ;
                offs = rd_kafka_topic_partition_list_new(16);
                for (int i = 0; i < cnt; i++) {
                        rd_kafka_topic_partition_t *p =
                                rd_kafka_topic_partition_list_find(
                                        offs, rd_kafka_topic_name(msgs[i]->rkt),
                                        msgs[i]->partition);
                        if (!p)
                                p = rd_kafka_topic_partition_list_add(
                                        offs, rd_kafka_topic_name(msgs[i]->rkt),
                                        msgs[i]->partition);
                        if (msgs[i]->offset + 1 > p->offset)
                                p->offset = msgs[i]->offset + 1;
                }
                rd_kafka_commit(consumer, offs, 1);
                rd_kafka_topic_partition_list_destroy(offs);
                for (int i = 0; i < cnt; i++)
                        rd_kafka_message_destroy(msgs[i]);
                consumed += cnt;
                produced += cnt;
                batches++;
        }
        rd_kafka_consumer_close(consumer);
        rd_kafka_flush(producer, 10000);
        printf("consumed=%lld produced=%lld failed=%lld batches=%lld\n",
               consumed, produced, pt_failed, batches);
        fflush(stdout);
        rd_kafka_destroy(consumer);
        rd_kafka_destroy(producer);
        free(msgs);
        return pt_failed ? 1 : 0;
}
