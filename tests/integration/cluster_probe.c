/*
 * npsd_cluster_probe — drives npsd's routed Redis pipeline from a test.
 *
 *   npsd_cluster_probe HOST PORT [NODES] [MODE]   (MODE: auto | on | off)
 *
 * Reads commands from stdin, one per line, arguments separated by single
 * spaces, and appends each to a pipeline (its slot from its second word,
 * the key). A line "EXEC" sends the pipeline and prints one line per reply,
 * in append order: "<index> <type> <text>" (type: str int nil arr status
 * err), then "ok" or "fail <reason>". "STATS" prints "stats moved=N ask=N
 * map_loads=N node_errors=N cluster=0|1 nodes=N". EOF ends it.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_cluster.h"

#define PROBE_MAX_ARGS 16

typedef struct probe_cmd_s {
        char *line;
        const char *argv[PROBE_MAX_ARGS];
        size_t argvlen[PROBE_MAX_ARGS];
        int argc;
} probe_cmd_t;

static void probe_print(long i, const redisReply *r) {
        if (!r) {
                printf("%ld none\n", i);
                return;
        }
        switch (r->type) {
        case REDIS_REPLY_STRING:
                printf("%ld str %.*s\n", i, (int)r->len, r->str);
                break;
        case REDIS_REPLY_INTEGER:
                printf("%ld int %lld\n", i, r->integer);
                break;
        case REDIS_REPLY_NIL:
                printf("%ld nil\n", i);
                break;
        case REDIS_REPLY_ARRAY:
                printf("%ld arr %zu\n", i, r->elements);
                break;
        case REDIS_REPLY_STATUS:
                printf("%ld status %.*s\n", i, (int)r->len, r->str);
                break;
        default:
                printf("%ld err %.*s\n", i, (int)r->len, r->str);
        }
}

int main(int argc, char **argv) {
        npsd_cluster_conf_t conf = {0};
        npsd_cluster_t *cluster;
        probe_cmd_t *cmds = NULL;
        size_t cmd_cnt = 0, cmd_size = 0;
        char errstr[512], *line = NULL;
        size_t line_size = 0;
        ssize_t n;

        if (argc < 3) {
                fprintf(stderr, "usage: %s HOST PORT [NODES] [MODE]\n",
                        argv[0]);
                return 2;
        }
        conf.host = argv[1];
        conf.port = atoi(argv[2]);
        conf.nodes = argc > 3 ? argv[3] : "";
        conf.timeout_ms = 2000;
        if (argc > 4)
                conf.mode = !strcmp(argv[4], "on")    ? NPSD_CLUSTER_MODE_ON
                            : !strcmp(argv[4], "off") ? NPSD_CLUSTER_MODE_OFF
                                                      : NPSD_CLUSTER_MODE_AUTO;
        if (!(cluster = npsd_cluster_new(&conf, errstr, sizeof(errstr)))) {
                fprintf(stderr, "%s\n", errstr);
                return 1;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        while ((n = getline(&line, &line_size, stdin)) != -1) {
                if (n && line[n - 1] == '\n')
                        line[--n] = '\0';
                if (!strcmp(line, "EXEC")) {
                        npsd_cluster_begin(cluster);
                        for (size_t i = 0; i < cmd_cnt; i++)
                                npsd_cluster_append(
                                        cluster,
                                        npsd_cluster_keyslot(
                                                cmds[i].argc > 1
                                                        ? cmds[i].argv[1]
                                                        : "",
                                                cmds[i].argc > 1
                                                        ? cmds[i].argvlen[1]
                                                        : 0),
                                        cmds[i].argc, cmds[i].argv,
                                        cmds[i].argvlen);
                        if (npsd_cluster_exec(cluster, errstr,
                                              sizeof(errstr)) == 0) {
                                for (size_t i = 0; i < cmd_cnt; i++)
                                        probe_print((long)i,
                                                    npsd_cluster_reply(
                                                            cluster, (long)i));
                                printf("ok\n");
                        } else {
                                printf("fail %s\n", errstr);
                        }
                        for (size_t i = 0; i < cmd_cnt; i++)
                                free(cmds[i].line);
                        cmd_cnt = 0;
                } else if (!strcmp(line, "STATS")) {
                        npsd_cluster_stats_t st;
                        npsd_cluster_stats(cluster, &st);
                        printf("stats moved=%llu ask=%llu map_loads=%llu "
                               "node_errors=%llu cluster=%d nodes=%zu\n",
                               (unsigned long long)st.moved,
                               (unsigned long long)st.ask,
                               (unsigned long long)st.map_loads,
                               (unsigned long long)st.node_errors,
                               npsd_cluster_enabled(cluster),
                               npsd_cluster_map(cluster)->node_cnt);
                } else if (*line) {
                        probe_cmd_t *c;
                        char *tok, *save = NULL;
                        if (cmd_cnt == cmd_size) {
                                cmd_size = cmd_size ? cmd_size * 2 : 256;
                                cmds = realloc(cmds, cmd_size * sizeof(*cmds));
                                if (!cmds)
                                        return 1;
                        }
                        c = &cmds[cmd_cnt++];
                        c->line = strdup(line);
                        c->argc = 0;
                        for (tok = strtok_r(c->line, " ", &save);
                             tok && c->argc < PROBE_MAX_ARGS;
                             tok = strtok_r(NULL, " ", &save)) {
                                c->argv[c->argc] = tok;
                                c->argvlen[c->argc++] = strlen(tok);
                        }
                }
        }
        for (size_t i = 0; i < cmd_cnt; i++)
                free(cmds[i].line);
        free(cmds);
        free(line);
        npsd_cluster_destroy(cluster);
        return 0;
}
