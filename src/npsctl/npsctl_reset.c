/*
 * npsctl reset / replay — start npsd's state over.
 *
 *   reset   deletes every Redis key under the prefix (SCAN + UNLINK): on a
 *           Redis Cluster, SCAN on every primary and each UNLINK routed to
 *           the node that owns its keys' slot.
 *   replay  reset, plus the consumer group's committed offsets moved to the
 *           earliest retained offset of every input topic, so that the next
 *           npsd run recomputes everything from the topics.
 *
 * Both refuse to change anything without --yes and then only report what
 * they would do. replay joins the group itself: it goes ahead only when it
 * is the group's sole member (every input partition assigned to it), which
 * means no npsd is running, and it holds the partitions while Redis is
 * emptied and the offsets are committed.
 */
#include "npsctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPSCTL_UNLINK_BATCH 500

static const char *npsctl_input_topics[] = {"nps.responses", "accounts",
                                            "product.usage", "nps.followups"};
#define NPSCTL_INPUT_CNT (sizeof(npsctl_input_topics) / sizeof(char *))

/* "<prefix>:*" with the glob characters of the prefix escaped. */
static char *npsctl_match_pattern(const char *prefix) {
        char *pat = malloc(strlen(prefix) * 2 + 3), *o = pat;

        if (!pat)
                return NULL;
        for (; *prefix; prefix++) {
                if (strchr("*?[]\\", *prefix))
                        *o++ = '\\';
                *o++ = *prefix;
        }
        strcpy(o, ":*");
        return pat;
}

/* A key of a SCAN reply and its hash slot, for grouping keys by slot. */
typedef struct npsctl_slot_key_s {
        unsigned slot;
        const redisReply *key;
} npsctl_slot_key_t;

static int npsctl_slot_key_cmp(const void *a, const void *b) {
        const npsctl_slot_key_t *x = a, *y = b;

        return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Deletes keys[0..cnt) (at most NPSCTL_UNLINK_BATCH) in one routed
 * pipeline: one UNLINK per slot (a multi-key command must stay in one
 * slot on a cluster; standalone, all of them in one UNLINK, as before),
 * each sent to the node that owns its slot now: a key scanned on one node
 * may have moved with a reshard since. A slot caught mid-migration answers
 * TRYAGAIN when its keys are split between the two nodes; those keys are
 * then deleted one by one, each following its own ASK. Returns the number
 * deleted, or -1 with errstr. */
static long long npsctl_unlink_batch(npsd_cluster_t *cluster,
                                     redisReply **keys, size_t cnt,
                                     char *errstr, size_t errstr_size) {
        /* per command: "UNLINK" and its keys; at most 2 slots per key */
        const char *argv[2 * NPSCTL_UNLINK_BATCH];
        size_t argvlen[2 * NPSCTL_UNLINK_BATCH];
        npsctl_slot_key_t sk[NPSCTL_UNLINK_BATCH];
        size_t first[NPSCTL_UNLINK_BATCH]; /* each command's first key */
        size_t i, a = 0, ncmd = 0, nretry = 0;
        int cluster_mode = npsd_cluster_enabled(cluster);
        long long total = 0;

        for (i = 0; i < cnt; i++) {
                sk[i].key = keys[i];
                sk[i].slot = cluster_mode ? npsd_cluster_keyslot(keys[i]->str,
                                                                 keys[i]->len)
                                          : 0;
        }
        if (cluster_mode)
                qsort(sk, cnt, sizeof(*sk), npsctl_slot_key_cmp);

        npsd_cluster_begin(cluster);
        for (i = 0; i < cnt;) {
                size_t start = a, j = i;

                argv[a] = "UNLINK";
                argvlen[a++] = 6;
                for (; j < cnt && sk[j].slot == sk[i].slot; j++) {
                        argv[a] = sk[j].key->str;
                        argvlen[a++] = sk[j].key->len;
                }
                first[ncmd++] = i;
                if (npsd_cluster_append(cluster, sk[i].slot, (int)(a - start),
                                        argv + start, argvlen + start) == -1)
                        goto oom;
                i = j;
        }
        if (npsd_cluster_exec(cluster, errstr, errstr_size) == -1)
                return -1;
        for (size_t c = 0; c < ncmd; c++) {
                const redisReply *u = npsd_cluster_reply(cluster, (long)c);
                size_t end = c + 1 < ncmd ? first[c + 1] : cnt;

                if (u && u->type == REDIS_REPLY_INTEGER) {
                        total += u->integer;
                        continue;
                }
                if (u && u->type == REDIS_REPLY_ERROR &&
                    !strncmp(u->str, "TRYAGAIN", 8)) {
                        /* moved to the end of sk, in place: the keys of
                         * commands already read are not needed again */
                        for (size_t k = first[c]; k < end; k++)
                                sk[nretry++] = sk[k];
                        continue;
                }
                snprintf(errstr, errstr_size, "redis UNLINK: %s",
                         !u ? "no reply"
                         : u->type == REDIS_REPLY_ERROR ? u->str
                                                        : "unexpected reply");
                return -1;
        }
        if (!nretry)
                return total;

        npsd_cluster_begin(cluster);
        for (i = 0; i < nretry; i++) {
                argv[2 * i] = "UNLINK";
                argvlen[2 * i] = 6;
                argv[2 * i + 1] = sk[i].key->str;
                argvlen[2 * i + 1] = sk[i].key->len;
                if (npsd_cluster_append(cluster, sk[i].slot, 2, argv + 2 * i,
                                        argvlen + 2 * i) == -1)
                        goto oom;
        }
        if (npsd_cluster_exec(cluster, errstr, errstr_size) == -1)
                return -1;
        for (i = 0; i < nretry; i++) {
                const redisReply *u = npsd_cluster_reply(cluster, (long)i);

                if (!u || u->type != REDIS_REPLY_INTEGER) {
                        snprintf(errstr, errstr_size, "redis UNLINK: %s",
                                 !u ? "no reply"
                                 : u->type == REDIS_REPLY_ERROR
                                         ? u->str
                                         : "unexpected reply");
                        return -1;
                }
                total += u->integer;
        }
        return total;

oom:
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

/* SCAN walks the keys of the node it runs on: one node's keys matching
 * pat, counted (dry run) or deleted. Returns the number of keys, or -1
 * with errstr naming the node. */
static long long npsctl_scan_node(npsd_cluster_t *cluster, int node,
                                  const char *pat, int delete, char *errstr,
                                  size_t errstr_size) {
        const npsd_cluster_node_t *n = &npsd_cluster_map(cluster)->nodes[node];
        char cursor[32] = "0", where[NPSD_CLUSTER_HOST_MAX + 16];
        long long total = 0;

        snprintf(where, sizeof(where), "%s:%d", n->host, n->port);
        do {
                const char *argv[6] = {"SCAN", cursor, "MATCH", pat, "COUNT",
                                       "1000"};
                redisReply *r, *keys;

                r = npsd_cluster_node_command(cluster, node, 6, argv, NULL,
                                              errstr, errstr_size);
                if (!r)
                        return -1;
                if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                    r->element[0]->type != REDIS_REPLY_STRING ||
                    r->element[1]->type != REDIS_REPLY_ARRAY) {
                        snprintf(errstr, errstr_size, "redis SCAN on %s: %s",
                                 where,
                                 r->type == REDIS_REPLY_ERROR
                                         ? r->str
                                         : "unexpected reply");
                        freeReplyObject(r);
                        return -1;
                }
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                keys = r->element[1];
                for (size_t i = 0; delete && i < keys->elements;
                     i += NPSCTL_UNLINK_BATCH) {
                        /* UNLINK in batches: frees memory off the main
                         * thread, never one huge command */
                        size_t cnt = keys->elements - i;
                        long long d;

                        if (cnt > NPSCTL_UNLINK_BATCH)
                                cnt = NPSCTL_UNLINK_BATCH;
                        d = npsctl_unlink_batch(cluster, keys->element + i,
                                                cnt, errstr, errstr_size);
                        if (d < 0) {
                                freeReplyObject(r);
                                return -1;
                        }
                        total += d;
                }
                if (!delete)
                        total += (long long)keys->elements;
                freeReplyObject(r);
        } while (strcmp(cursor, "0") && !npsctl_stop);
        return total;
}

#define NPSCTL_RESET_PASSES 5

/* Counts (dry run) or deletes every key matching pat on every primary
 * (standalone: the one server, in one pass, as SCAN there returns every
 * key that exists throughout). On a cluster a reshard under the deletion
 * may carry a key from a node not yet scanned to one already scanned, so
 * the deletion goes over every primary again until a pass finds nothing
 * (with npsd stopped nothing adds keys: the second pass normally ends
 * it), at most NPSCTL_RESET_PASSES times. Returns the number of keys, or
 * -1 with errstr. */
static long long npsctl_scan_keys(npsctl_redis_t *rd, const char *pat,
                                  int delete, char *errstr,
                                  size_t errstr_size) {
        npsd_cluster_t *cluster = npsctl_redis_cluster(rd);
        long long total = 0, found = 1;
        int *nodes = NULL;

        for (int pass = 0; found && pass < NPSCTL_RESET_PASSES; pass++) {
                size_t cnt;

                if (npsd_cluster_connect(cluster, errstr, errstr_size) == -1)
                        goto fail;
                /* a copy: the map may be reloaded during the pass */
                cnt = npsd_cluster_map_primaries(npsd_cluster_map(cluster),
                                                 NULL, 0);
                free(nodes);
                if (!(nodes = malloc((cnt ? cnt : 1) * sizeof(*nodes)))) {
                        snprintf(errstr, errstr_size, "out of memory");
                        goto fail;
                }
                npsd_cluster_map_primaries(npsd_cluster_map(cluster), nodes,
                                           cnt);
                found = 0;
                for (size_t i = 0; i < cnt && !npsctl_stop; i++) {
                        long long n = npsctl_scan_node(cluster, nodes[i], pat,
                                                       delete, errstr,
                                                       errstr_size);
                        if (n < 0)
                                goto fail;
                        found += n;
                }
                if (npsctl_stop) {
                        snprintf(errstr, errstr_size, "interrupted");
                        goto fail;
                }
                total += found;
                if (!delete || !npsd_cluster_enabled(cluster))
                        break;
        }
        free(nodes);
        return total;

fail:
        free(nodes);
        return -1;
}

static void npsctl_reset_usage(FILE *fp, int replay) {
        if (replay)
                fprintf(fp,
                        "usage: npsctl replay --yes [--group G] --bootstrap B "
                        "[-X k=v]... [redis options]\n"
                        "\n"
                        "Starts npsd's state over from the input topics: "
                        "deletes every Redis key under\n"
                        "the prefix and moves consumer group G's committed "
                        "offsets on nps.responses,\n"
                        "accounts, product.usage and nps.followups to the "
                        "earliest retained offset.\n"
                        "npsd must be stopped (the group must have no other "
                        "member); start it again\n"
                        "afterwards and it recomputes everything the topics "
                        "still hold, publishing\n"
                        "every response again (consumers dedupe by "
                        "event_id). Without --yes nothing\n"
                        "changes: it prints what it would delete.\n"
                        "\n"
                        "  --yes          really do it\n"
                        "  --group G      consumer group of npsd (default "
                        "npsd)\n"
                        "  --topic-prefix P  prefix of the input topic "
                        "names\n"
                        "  --timeout S    how long to wait to join the group "
                        "(default 60)\n");
        else
                fprintf(fp,
                        "usage: npsctl reset --yes [redis options]\n"
                        "\n"
                        "Deletes every Redis key under the prefix (default "
                        "nps:*): all counts, windows,\n"
                        "cohorts, dedupe markers and snapshots. Stop npsd "
                        "first. Kafka offsets are\n"
                        "not touched, so npsd continues after its last "
                        "commit (see npsctl replay).\n"
                        "Without --yes nothing changes: it prints how many "
                        "keys it would delete.\n");
}

/* Joins group, waits to own every partition of the input topics, then
 * runs the Redis deletion (when rd) and commits the low watermarks. */
static int npsctl_replay_offsets(npsctl_opts_t *opts, const char *group,
                                 const char *topic_prefix, int timeout_s,
                                 npsctl_redis_t *rd, const char *pat,
                                 long long *deleted) {
        static const char *const defaults[][2] = {
                {"enable.auto.commit", "false"},
                {"enable.auto.offset.store", "false"},
                {"enable.partition.eof", "false"},
                {"client.id", "npsctl-replay"},
                /* npsd's default: a group only accepts members of one
                 * protocol; -X overrides for groups configured otherwise */
                {"partition.assignment.strategy", "range,roundrobin"},
        };
        char topics[NPSCTL_INPUT_CNT][512], errstr[512];
        rd_kafka_topic_partition_list_t *sub, *assigned = NULL, *commit;
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_conf_t *conf;
        rd_kafka_resp_err_t err;
        int total = 0, i, rcode = 1;
        int64_t deadline, stable_since = 0;
        rd_kafka_t *rk;
        size_t t;

        conf = npsctl_kafka_conf(opts, defaults,
                                 sizeof(defaults) / sizeof(defaults[0]),
                                 errstr, sizeof(errstr));
        if (!conf ||
            rd_kafka_conf_set(conf, "group.id", group, errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "npsctl replay: %s\n", errstr);
                if (conf)
                        rd_kafka_conf_destroy(conf);
                return 1;
        }
        if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr,
                                sizeof(errstr)))) {
                fprintf(stderr, "npsctl replay: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
                return 1;
        }
        rd_kafka_poll_set_consumer(rk);

        /* Which input topics exist, and their partition counts. */
        err = rd_kafka_metadata(rk, 1, NULL, &md, 15000);
        if (err) {
                fprintf(stderr, "npsctl replay: metadata: %s\n",
                        rd_kafka_err2str(err));
                goto done;
        }
        sub = rd_kafka_topic_partition_list_new((int)NPSCTL_INPUT_CNT);
        for (t = 0; t < NPSCTL_INPUT_CNT; t++) {
                snprintf(topics[t], sizeof(topics[t]), "%s%s", topic_prefix,
                         npsctl_input_topics[t]);
                for (i = 0; i < md->topic_cnt; i++) {
                        if (!strcmp(md->topics[i].topic, topics[t]) &&
                            !md->topics[i].err) {
                                total += md->topics[i].partition_cnt;
                                rd_kafka_topic_partition_list_add(
                                        sub, topics[t], RD_KAFKA_PARTITION_UA);
                                break;
                        }
                }
                if (i == md->topic_cnt)
                        printf("topic %s does not exist: skipped\n",
                               topics[t]);
        }
        if (!sub->cnt) {
                fprintf(stderr, "npsctl replay: none of the input topics "
                        "exists\n");
                rd_kafka_topic_partition_list_destroy(sub);
                goto done;
        }
        err = rd_kafka_subscribe(rk, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        if (err) {
                fprintf(stderr, "npsctl replay: subscribe: %s\n",
                        rd_kafka_err2str(err));
                goto done;
        }

        /* Own every partition, or find out that someone else holds some. */
        printf("joining consumer group %s ...\n", group);
        fflush(stdout);
        deadline = npsctl_mono_ms() + (int64_t)timeout_s * 1000;
        for (;;) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                int have = 0;

                if (m)
                        rd_kafka_message_destroy(m);
                if (assigned)
                        rd_kafka_topic_partition_list_destroy(assigned);
                assigned = NULL;
                if (!rd_kafka_assignment(rk, &assigned) && assigned)
                        have = assigned->cnt;
                if (have == total)
                        break;
                if (have > 0 && !stable_since)
                        stable_since = npsctl_mono_ms();
                if (npsctl_stop) {
                        fprintf(stderr, "npsctl replay: interrupted\n");
                        goto done;
                }
                if ((stable_since &&
                     npsctl_mono_ms() - stable_since > 15000) ||
                    npsctl_mono_ms() > deadline) {
                        fprintf(stderr,
                                "npsctl replay: consumer group %s has other "
                                "active members (%d of %d partitions "
                                "assigned to us): stop every npsd of the "
                                "group first. Nothing was changed.\n",
                                group, have, total);
                        goto done;
                }
        }
        /* Stop fetching: we only hold the partitions. */
        rd_kafka_pause_partitions(rk, assigned);

        if (rd) {
                char rerr[512];

                *deleted = npsctl_scan_keys(rd, pat, 1, rerr, sizeof(rerr));
                if (*deleted < 0) {
                        fprintf(stderr, "npsctl replay: %s (offsets not "
                                "changed)\n", rerr);
                        goto done;
                }
        }

        commit = rd_kafka_topic_partition_list_copy(assigned);
        for (i = 0; i < commit->cnt; i++) {
                rd_kafka_topic_partition_t *p = &commit->elems[i];
                int64_t lo = 0, hi = 0;

                err = rd_kafka_query_watermark_offsets(rk, p->topic,
                                                       p->partition, &lo, &hi,
                                                       15000);
                if (err) {
                        fprintf(stderr, "npsctl replay: watermarks of %s "
                                "[%d]: %s\n", p->topic, (int)p->partition,
                                rd_kafka_err2str(err));
                        rd_kafka_topic_partition_list_destroy(commit);
                        goto done;
                }
                p->offset = lo;
        }
        err = rd_kafka_commit(rk, commit, 0);
        if (!err) {
                for (i = 0; i < commit->cnt; i++)
                        if (commit->elems[i].err)
                                err = commit->elems[i].err;
        }
        rd_kafka_topic_partition_list_destroy(commit);
        if (err) {
                fprintf(stderr, "npsctl replay: commit: %s\n",
                        rd_kafka_err2str(err));
                goto done;
        }
        printf("consumer group %s: offsets of %d partitions set to the "
               "earliest retained offset\n", group, total);
        rcode = 0;

done:
        if (assigned)
                rd_kafka_topic_partition_list_destroy(assigned);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return rcode;
}

static int npsctl_reset_common(npsctl_opts_t *opts, int argc, char **argv,
                               int replay) {
        const char *group = "npsd", *topic_prefix = "", *v;
        const char *cmd = replay ? "replay" : "reset";
        long long timeout_s = 60, n;
        npsctl_redis_t *rd;
        char errstr[512], *pat;
        int yes = 0, i, r, rcode;

        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        npsctl_reset_usage(stdout, replay);
                        return 0;
                }
                if (!strcmp(argv[i], "--yes")) {
                        yes = 1;
                } else if (replay &&
                           (r = npsctl_optval(argc, argv, &i, "--group",
                                              &v))) {
                        if (r < 0)
                                return 2;
                        if (!*v) {
                                fprintf(stderr, "npsctl replay: --group must "
                                        "not be empty\n");
                                return 2;
                        }
                        group = v;
                } else if (replay &&
                           (r = npsctl_optval(argc, argv, &i, "--topic-prefix",
                                              &v))) {
                        if (r < 0)
                                return 2;
                        topic_prefix = v;
                } else if (replay &&
                           (r = npsctl_optval(argc, argv, &i, "--timeout",
                                              &v))) {
                        if (r < 0 || npsctl_parse_int("--timeout", v, 1, 3600,
                                                      &timeout_s))
                                return 2;
                } else if ((r = npsctl_common_opt(opts, argc, argv, &i))) {
                        if (r < 0)
                                return 2;
                } else {
                        fprintf(stderr, "npsctl %s: unknown argument \"%s\"\n",
                                cmd, argv[i]);
                        npsctl_reset_usage(stderr, replay);
                        return 2;
                }
        }
        if (replay && !opts->bootstrap) {
                fprintf(stderr, "npsctl replay: --bootstrap is required\n");
                return 2;
        }
        if (!(pat = npsctl_match_pattern(opts->prefix))) {
                fprintf(stderr, "npsctl %s: out of memory\n", cmd);
                return 1;
        }
        npsctl_signals_install();
        if (!(rd = npsctl_redis_open(opts, errstr, sizeof(errstr)))) {
                fprintf(stderr, "npsctl %s: %s\n", cmd, errstr);
                free(pat);
                return 1;
        }
        if (!yes) {
                n = npsctl_scan_keys(rd, pat, 0, errstr, sizeof(errstr));
                if (n < 0) {
                        fprintf(stderr, "npsctl %s: %s\n", cmd, errstr);
                        rcode = 1;
                } else {
                        printf("would delete %lld keys matching %s in redis "
                               "%s", n, pat, npsctl_redis_where(rd));
                        if (replay)
                                printf(" and reset consumer group %s to the "
                                       "earliest offsets of the input topics",
                                       group);
                        printf("\nnothing changed: run again with --yes to "
                               "do it (stop npsd first)\n");
                        rcode = 2;
                }
                goto done;
        }
        if (replay) {
                n = 0;
                rcode = npsctl_replay_offsets(opts, group, topic_prefix,
                                              (int)timeout_s, rd, pat, &n);
                if (!rcode)
                        printf("deleted %lld keys matching %s\n"
                               "start npsd again: it reprocesses the input "
                               "topics from the beginning\n", n, pat);
        } else {
                n = npsctl_scan_keys(rd, pat, 1, errstr, sizeof(errstr));
                if (n < 0) {
                        fprintf(stderr, "npsctl reset: %s\n", errstr);
                        rcode = 1;
                } else {
                        printf("deleted %lld keys matching %s\n", n, pat);
                        rcode = 0;
                }
        }

done:
        npsctl_redis_close(rd);
        free(pat);
        return rcode;
}

int npsctl_reset_main(npsctl_opts_t *opts, int argc, char **argv) {
        return npsctl_reset_common(opts, argc, argv, 0);
}

int npsctl_replay_main(npsctl_opts_t *opts, int argc, char **argv) {
        return npsctl_reset_common(opts, argc, argv, 1);
}
