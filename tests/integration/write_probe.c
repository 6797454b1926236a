/*
 * npsd_write_probe — drives npsd's guarded writes (npsd_write, through the
 * routed pipeline of npsd_cluster) from a test.
 *
 *   npsd_write_probe HOST PORT [NODES] [MODE]   (MODE: auto | on | off)
 *
 * Reads lines from stdin, words separated by single spaces ('' is the
 * empty word). Each line but EXEC answers "+" or "refused <why>":
 *   CAS <guard> <field> <expected> <new>   starts a cas call
 *   SEQ <fence> <field> <seq>              starts a seq call
 *   CMD <key_cnt> <word>...                adds a command to the last call
 *   HSET <key> <pairs>                     npsd_write_hset of fields
 *                                          f0..f<pairs-1>, values v0..
 *   WIDE <key> <words>                     HSET key w2 w3 ...: a command
 *                                          of <words> words
 *   TAG <key>                              answers "+ <tag>": a hash tag
 *                                          in the key's slot
 * EXEC appends every call (one EVAL each) to a pipeline, runs it and
 * prints one line per call, "<call> applied | conflict <current> |
 * already <fence> | gap <fence> | error <text>", then "ok" or "fail
 * <reason>". RETRY runs the same calls again in a new pipeline, as after
 * a failed exec; the next builder line starts a new batch (a reset).
 * "STATS" prints "stats memory=N cluster=0|1 nodes=N" (memory: the
 * writer's blocks). "WATCH <key>..." sends a WATCH at once on the
 * connection the pipelines use; "MULTI" (a builder line) makes the batch
 * go as npsd_write_use_multi(); "GROUPS <fence> checked <mode>" starts a
 * groups call whose fences the caller checked. EOF ends it.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_cluster.h"
#include "npsd/npsd_write.h"

#define PROBE_MAX_WORDS 64
#define PROBE_NAME 24 /* "f<n>", "v<n>", "w<n>" */
#define PROBE_MAX_CALLS 4096

/* per call of the batch, its groups (groups calls only; 0 for others) */
static size_t probe_groups[PROBE_MAX_CALLS];

static const char *probe_word(const char *tok) {
        return strcmp(tok, "''") ? tok : "";
}

/* One line but EXEC and STATS; 0, or -1 with errstr. */
static int probe_line(npsd_write_t *w, char *line, char *errstr,
                      size_t errstr_size) {
        const char *argv[PROBE_MAX_WORDS];
        char *tok, *save = NULL;
        int argc = 0;

        for (tok = strtok_r(line, " ", &save); tok && argc < PROBE_MAX_WORDS;
             tok = strtok_r(NULL, " ", &save))
                argv[argc++] = probe_word(tok);
        if (argc == 5 && !strcmp(argv[0], "CAS"))
                return npsd_write_cas(w, argv[1], argv[2], argv[3], argv[4],
                                      errstr, errstr_size) == -1
                               ? -1
                               : 0;
        if (argc == 4 && !strcmp(argv[0], "SEQ"))
                return npsd_write_seq(w, argv[1], argv[2],
                                      strtoull(argv[3], NULL, 10), errstr,
                                      errstr_size) == -1
                               ? -1
                               : 0;
        if ((argc == 3 || argc == 4) && !strcmp(argv[0], "GROUPS")) {
                const char *m = argv[argc - 1];
                npsd_write_groups_mode_t mode =
                        !strcmp(m, "all")     ? NPSD_WRITE_GROUPS_ALL
                        : !strcmp(m, "newer") ? NPSD_WRITE_GROUPS_NEWER
                                              : NPSD_WRITE_GROUPS_EXACT;
                long call = argc == 4 && !strcmp(argv[2], "checked")
                                    ? npsd_write_groups_checked(
                                              w, argv[1], mode, errstr,
                                              errstr_size)
                                    : npsd_write_groups(w, argv[1], mode,
                                                        errstr, errstr_size);
                if (call >= PROBE_MAX_CALLS) {
                        snprintf(errstr, errstr_size, "too many calls");
                        return -1;
                }
                if (call >= 0)
                        probe_groups[call] = 0;
                return call == -1 ? -1 : 0;
        }
        if (argc == 3 && !strcmp(argv[0], "GROUP")) {
                size_t calls = npsd_write_calls(w);
                if (npsd_write_group(w, argv[1], strtoull(argv[2], NULL, 10),
                                     errstr, errstr_size) == -1)
                        return -1;
                probe_groups[calls - 1]++;
                return 0;
        }
        if (argc >= 2 && !strcmp(argv[0], "CMD"))
                return npsd_write_cmd(w, argc - 2, argv + 2, NULL,
                                      atoi(argv[1]), errstr, errstr_size);
        if (argc == 3 && !strcmp(argv[0], "HSET")) {
                size_t pairs = strtoul(argv[2], NULL, 10);
                const char **f = calloc(pairs + 1, sizeof(*f));
                const char **v = calloc(pairs + 1, sizeof(*v));
                char *names = calloc(pairs + 1, 2 * PROBE_NAME);
                int rc = -1;

                if (!f || !v || !names) {
                        snprintf(errstr, errstr_size, "out of memory");
                        goto hset_done;
                }
                for (size_t i = 0; i < pairs; i++) {
                        f[i] = names + 2 * PROBE_NAME * i;
                        v[i] = names + 2 * PROBE_NAME * i + PROBE_NAME;
                        snprintf(names + 2 * PROBE_NAME * i, PROBE_NAME,
                                 "f%zu", i);
                        snprintf(names + 2 * PROBE_NAME * i + PROBE_NAME,
                                 PROBE_NAME, "v%zu", i);
                }
                rc = npsd_write_hset(w, argv[1], pairs, f, NULL, v, NULL,
                                     errstr, errstr_size);
        hset_done:
                free(f);
                free(v);
                free(names);
                return rc;
        }
        if (argc == 3 && !strcmp(argv[0], "WIDE")) {
                int words = atoi(argv[2]), rc = -1;
                const char **wide = calloc((size_t)words + 2, sizeof(*wide));
                char *names = calloc((size_t)words + 2, PROBE_NAME);

                if (!wide || !names) {
                        snprintf(errstr, errstr_size, "out of memory");
                        goto wide_done;
                }
                wide[0] = "HSET";
                wide[1] = argv[1];
                for (int i = 2; i < words; i++) {
                        snprintf(names + PROBE_NAME * i, PROBE_NAME, "w%d",
                                 i);
                        wide[i] = names + PROBE_NAME * i;
                }
                rc = npsd_write_cmd(w, words, wide, NULL, 1, errstr,
                                    errstr_size);
        wide_done:
                free(wide);
                free(names);
                return rc;
        }
        if (argc == 2 && !strcmp(argv[0], "TAG")) {
                const char *tag = npsd_cluster_slot_tag(
                        npsd_cluster_keyslot(argv[1], strlen(argv[1])));
                if (!tag) {
                        snprintf(errstr, errstr_size, "no tag");
                        return -1;
                }
                printf("+ %s\n", tag);
                return 1; /* answered */
        }
        if (argc == 1 && !strcmp(argv[0], "MULTI")) {
                npsd_write_use_multi(w, 1);
                return 0;
        }
        snprintf(errstr, errstr_size, "unknown line");
        return -1;
}

/* WATCH key...: sent at once on the connection the pipelines use (the
 * node of the first key's slot), as the store does in its read. */
static void probe_watch(npsd_cluster_t *cluster, char *line) {
        const char *argv[PROBE_MAX_WORDS];
        char errstr[512], *tok, *save = NULL;
        int argc = 0;
        redisReply *r;

        for (tok = strtok_r(line, " ", &save); tok && argc < PROBE_MAX_WORDS;
             tok = strtok_r(NULL, " ", &save))
                argv[argc++] = tok;
        if (argc < 2 || npsd_cluster_connect(cluster, errstr, sizeof(errstr))) {
                printf("refused %s\n", argc < 2 ? "no key" : errstr);
                return;
        }
        r = npsd_cluster_node_command(
                cluster,
                npsd_cluster_map(cluster)->slot_node[npsd_cluster_keyslot(
                        argv[1], strlen(argv[1]))],
                argc, argv, NULL, errstr, sizeof(errstr));
        if (!r)
                printf("refused %s\n", errstr);
        else if (r->type == REDIS_REPLY_ERROR)
                printf("refused %s\n", r->str);
        else
                printf("+\n");
        if (r)
                freeReplyObject(r);
}

static void probe_exec(npsd_write_t *w, npsd_cluster_t *cluster) {
        char errstr[512];

        npsd_cluster_begin(cluster);
        if (npsd_write_append(w, cluster, errstr, sizeof(errstr)) == -1 ||
            npsd_cluster_exec(cluster, errstr, sizeof(errstr)) == -1) {
                printf("fail %s\n", errstr);
                return;
        }
        for (size_t i = 0; i < npsd_write_calls(w); i++) {
                npsd_write_cur_t cur;

                if (i < PROBE_MAX_CALLS && probe_groups[i]) {
                        static const char *const names[] = {
                                "applied", "conflict", "already", "gap"};
                        printf("%zu groups", i);
                        for (size_t g = 0; g < probe_groups[i]; g++) {
                                npsd_write_status_t st =
                                        npsd_write_group_status(w, i, cluster,
                                                                g);
                                printf(" %s", st == NPSD_WRITE_ERROR
                                                      ? "error"
                                                      : names[st]);
                        }
                        printf("\n");
                        continue;
                }

                switch (npsd_write_call_result(w, i, cluster, &cur, errstr,
                                               sizeof(errstr))) {
                case NPSD_WRITE_APPLIED:
                        printf("%zu applied\n", i);
                        break;
                case NPSD_WRITE_CONFLICT:
                        printf("%zu conflict %.*s\n", i, (int)cur.len,
                               cur.str ? cur.str : "");
                        break;
                case NPSD_WRITE_ALREADY:
                        printf("%zu already %lld\n", i, cur.seq);
                        break;
                case NPSD_WRITE_GAP:
                        printf("%zu gap %lld\n", i, cur.seq);
                        break;
                default:
                        printf("%zu error %s\n", i, errstr);
                }
        }
        printf("ok\n");
}

int main(int argc, char **argv) {
        npsd_cluster_conf_t conf = {0};
        npsd_cluster_t *cluster = NULL;
        npsd_write_t *w = NULL;
        char errstr[512], *line = NULL;
        size_t line_size = 0;
        ssize_t n;
        int rc = 1, executed = 0;

        if (argc < 3) {
                fprintf(stderr, "usage: %s HOST PORT [NODES] [MODE]\n",
                        argv[0]);
                return 2;
        }
        conf.host = argv[1];
        conf.port = atoi(argv[2]);
        conf.nodes = argc > 3 ? argv[3] : "";
        conf.timeout_ms = 5000;
        if (argc > 4)
                conf.mode = !strcmp(argv[4], "on")    ? NPSD_CLUSTER_MODE_ON
                            : !strcmp(argv[4], "off") ? NPSD_CLUSTER_MODE_OFF
                                                      : NPSD_CLUSTER_MODE_AUTO;
        if (!(cluster = npsd_cluster_new(&conf, errstr, sizeof(errstr)))) {
                fprintf(stderr, "%s\n", errstr);
                goto fail;
        }
        if (!(w = npsd_write_new())) {
                fprintf(stderr, "out of memory\n");
                goto fail;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        while ((n = getline(&line, &line_size, stdin)) != -1) {
                int r;

                if (n && line[n - 1] == '\n')
                        line[--n] = '\0';
                if (!strcmp(line, "EXEC") || !strcmp(line, "RETRY")) {
                        probe_exec(w, cluster);
                        executed = 1;
                        continue;
                }
                if (!strncmp(line, "WATCH ", 6)) {
                        probe_watch(cluster, line);
                        continue;
                }
                if (!strcmp(line, "STATS")) {
                        printf("stats memory=%zu cluster=%d nodes=%zu\n",
                               npsd_write_memory(w),
                               npsd_cluster_enabled(cluster),
                               npsd_cluster_map(cluster)->node_cnt);
                        continue;
                }
                if (executed && strncmp(line, "TAG ", 4)) {
                        npsd_write_reset(w);
                        memset(probe_groups, 0, sizeof(probe_groups));
                        executed = 0;
                }
                r = probe_line(w, line, errstr, sizeof(errstr));
                if (r == -1)
                        printf("refused %s\n", errstr);
                else if (r == 0)
                        printf("+\n");
        }
        rc = 0;

fail:
        free(line);
        npsd_write_destroy(w);
        npsd_cluster_destroy(cluster);
        return rc;
}
