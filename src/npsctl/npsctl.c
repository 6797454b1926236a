/*
 * npsctl — companion CLI of npsd.
 *
 *   npsctl broker   run the embedded development broker (development only)
 *   npsctl gen      produce realistic synthetic traffic to Kafka
 *   npsctl account  print one account's card from Redis
 *   npsctl top      live view of cohorts, accounts at risk and themes
 *   npsctl reset    delete npsd's Redis state (npsctl_reset.c)
 *   npsctl replay   reset + rewind the consumer group (npsctl_reset.c)
 *
 * This file holds main(), the options every subcommand shares, Redis
 * access (standalone or Redis Cluster, through npsd_cluster) and the
 * broker subcommand.
 */
#include "npsctl.h"
#include "npsd/npsd_devbroker.h"
#include "npsd/npsd_log.h"
#include "npsd/npsd_time.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t npsctl_stop;

static void npsctl_on_signal(int sig) {
        (void)sig;
        npsctl_stop = 1;
}

/* sigaction without SA_RESTART so that blocking calls (nanosleep, poll in
 * hiredis) return early with EINTR and loops notice npsctl_stop. */
void npsctl_signals_install(void) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = npsctl_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int64_t npsctl_mono_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t npsctl_now_ms(void) {
        const char *pinned = getenv("NPSD_NOW");
        struct timespec ts;
        int64_t ms;

        if (pinned && *pinned &&
            !npsd_time_parse_rfc3339(pinned, strlen(pinned), &ms))
                return ms;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void npsctl_sleep_ms(int64_t ms) {
        int64_t end = npsctl_mono_ms() + ms;
        int64_t left;
        struct timespec ts;

        while (!npsctl_stop && (left = end - npsctl_mono_ms()) > 0) {
                if (left > 100)
                        left = 100; /* re-check the stop flag often */
                ts.tv_sec = (time_t)(left / 1000);
                ts.tv_nsec = (long)(left % 1000) * 1000000L;
                nanosleep(&ts, NULL);
        }
}

int npsctl_optval(int argc, char **argv, int *i, const char *name,
                  const char **val) {
        const char *a = argv[*i];
        size_t n = strlen(name);

        if (strncmp(a, name, n))
                return 0;
        if (a[n] == '=') {
                *val = a + n + 1;
                return 1;
        }
        if (a[n] != '\0')
                return 0;
        if (*i + 1 >= argc) {
                fprintf(stderr, "npsctl: %s needs a value\n", name);
                return -1;
        }
        *val = argv[++(*i)];
        return 1;
}

int npsctl_parse_int(const char *opt, const char *s, long long min,
                     long long max, long long *out) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max) {
                fprintf(stderr, "npsctl: %s: expected an integer %lld-%lld, "
                        "got \"%s\"\n", opt, min, max, s);
                return -1;
        }
        *out = v;
        return 0;
}

int npsctl_parse_double(const char *opt, const char *s, double min,
                        double max, double *out) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || *end || !(v >= min && v <= max)) {
                fprintf(stderr, "npsctl: %s: expected a number %g-%g, "
                        "got \"%s\"\n", opt, min, max, s);
                return -1;
        }
        *out = v;
        return 0;
}

/* -X accepts "-X k=v", "-Xk=v" and "--kafka k=v", like kcat. */
static int npsctl_kconf_opt(npsctl_opts_t *opts, int argc, char **argv,
                            int *i) {
        const char *kv = NULL;
        char *eq;
        int r;

        if (!strncmp(argv[*i], "-X", 2) && argv[*i][2]) {
                kv = argv[*i] + 2;
        } else if (!strcmp(argv[*i], "-X")) {
                if (*i + 1 >= argc) {
                        fprintf(stderr, "npsctl: -X needs key=value\n");
                        return -1;
                }
                kv = argv[++(*i)];
        } else {
                r = npsctl_optval(argc, argv, i, "--kafka", &kv);
                if (r <= 0)
                        return r;
        }
        if (opts->kconf_cnt >= NPSCTL_KCONF_MAX) {
                fprintf(stderr, "npsctl: too many -X options\n");
                return -1;
        }
        if (strlen(kv) >= sizeof(opts->kconf_buf[0]) ||
            !(eq = strchr(kv, '=')) || eq == kv) {
                fprintf(stderr, "npsctl: -X expects key=value, got \"%s\"\n",
                        kv);
                return -1;
        }
        strcpy(opts->kconf_buf[opts->kconf_cnt], kv);
        eq = opts->kconf_buf[opts->kconf_cnt] + (eq - kv);
        *eq = '\0';
        opts->kconf[opts->kconf_cnt][0] = opts->kconf_buf[opts->kconf_cnt];
        opts->kconf[opts->kconf_cnt][1] = eq + 1;
        opts->kconf_cnt++;
        return 1;
}

/* --redis-nodes is parsed where it is used (npsd_cluster_new(), which
 * does not connect); parsing it once here makes a typo a usage error. */
static int npsctl_nodes_check(const char *nodes) {
        npsd_cluster_conf_t conf = {.host = "", .nodes = nodes};
        npsd_cluster_t *c;
        char errstr[512];

        if (!(c = npsd_cluster_new(&conf, errstr, sizeof(errstr)))) {
                fprintf(stderr, "npsctl: --redis-nodes: %s\n", errstr);
                return -1;
        }
        npsd_cluster_destroy(c);
        return 0;
}

int npsctl_common_opt(npsctl_opts_t *opts, int argc, char **argv, int *i) {
        const char *v;
        long long n;
        int r;

        if ((r = npsctl_optval(argc, argv, i, "--redis-host", &v)))
                return r < 0 ? -1 : (opts->redis_host = v, 1);
        if ((r = npsctl_optval(argc, argv, i, "--redis-port", &v))) {
                if (r < 0 || npsctl_parse_int("--redis-port", v, 1, 65535, &n))
                        return -1;
                opts->redis_port = (int)n;
                return 1;
        }
        if ((r = npsctl_optval(argc, argv, i, "--redis-nodes", &v))) {
                if (r < 0 || npsctl_nodes_check(v))
                        return -1;
                opts->redis_nodes = v;
                return 1;
        }
        if ((r = npsctl_optval(argc, argv, i, "--redis-cluster", &v))) {
                if (r < 0)
                        return -1;
                if (!strcmp(v, "auto"))
                        opts->redis_cluster = NPSD_CLUSTER_MODE_AUTO;
                else if (!strcmp(v, "on"))
                        opts->redis_cluster = NPSD_CLUSTER_MODE_ON;
                else if (!strcmp(v, "off"))
                        opts->redis_cluster = NPSD_CLUSTER_MODE_OFF;
                else {
                        fprintf(stderr, "npsctl: --redis-cluster: expected "
                                "auto, on or off, got \"%s\"\n", v);
                        return -1;
                }
                return 1;
        }
        if ((r = npsctl_optval(argc, argv, i, "--redis-password", &v)))
                return r < 0 ? -1 : (opts->redis_password = v, 1);
        if ((r = npsctl_optval(argc, argv, i, "--redis-user", &v)))
                return r < 0 ? -1 : (opts->redis_user = v, 1);
        if ((r = npsctl_optval(argc, argv, i, "--redis-db", &v))) {
                if (r < 0 || npsctl_parse_int("--redis-db", v, 0, 100000, &n))
                        return -1;
                opts->redis_db = (int)n;
                return 1;
        }
        if ((r = npsctl_optval(argc, argv, i, "--prefix", &v))) {
                if (r < 0)
                        return -1;
                if (!*v) {
                        fprintf(stderr, "npsctl: --prefix must not be empty\n");
                        return -1;
                }
                opts->prefix = v;
                return 1;
        }
        if ((r = npsctl_optval(argc, argv, i, "--bootstrap", &v)))
                return r < 0 ? -1 : (opts->bootstrap = v, 1);
        return npsctl_kconf_opt(opts, argc, argv, i);
}

rd_kafka_conf_t *npsctl_kafka_conf(const npsctl_opts_t *opts,
                                   const char *const (*defaults)[2],
                                   size_t default_cnt, char *errstr,
                                   size_t errstr_size) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        size_t d;
        int k;

        for (d = 0; d < default_cnt; d++) {
                if (rd_kafka_conf_set(conf, defaults[d][0], defaults[d][1],
                                      errstr, errstr_size) != RD_KAFKA_CONF_OK)
                        goto fail;
        }
        if (opts->bootstrap &&
            rd_kafka_conf_set(conf, "bootstrap.servers", opts->bootstrap,
                              errstr, errstr_size) != RD_KAFKA_CONF_OK)
                goto fail;
        for (k = 0; k < opts->kconf_cnt; k++) {
                if (rd_kafka_conf_set(conf, opts->kconf[k][0],
                                      opts->kconf[k][1], errstr,
                                      errstr_size) != RD_KAFKA_CONF_OK)
                        goto fail;
        }
        return conf;

fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/*
 * Redis
 */

struct npsctl_redis_s {
        npsd_cluster_t *cluster;
        char *host; /* the first node, for npsctl_redis_where() */
        int port, db;
        char **blocks; /* one per appended command: its argv, copied */
        size_t block_cnt, block_size;
        int oom;       /* an append failed: the next exec fails */
        char where[NPSD_CLUSTER_HOST_MAX + 64];
};

npsctl_redis_t *npsctl_redis_open(const npsctl_opts_t *opts, char *errstr,
                                  size_t errstr_size) {
        npsd_cluster_conf_t conf;
        npsctl_redis_t *r;

        if (!(r = calloc(1, sizeof(*r))) ||
            !(r->host = strdup(opts->redis_host))) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        r->port = opts->redis_port;
        r->db = opts->redis_db;
        memset(&conf, 0, sizeof(conf));
        conf.host = opts->redis_host;
        conf.port = opts->redis_port;
        conf.nodes = opts->redis_nodes ? opts->redis_nodes : "";
        conf.user = opts->redis_user ? opts->redis_user : "";
        conf.password = opts->redis_password;
        /* Like redis-cli: the password may come from the environment so
         * that it does not show in the process list. */
        if (!conf.password || !*conf.password)
                conf.password = getenv("REDISCLI_AUTH");
        if (!conf.password)
                conf.password = "";
        conf.db = opts->redis_db;
        conf.timeout_ms = 3000;
        conf.mode = opts->redis_cluster;
        if (!(r->cluster = npsd_cluster_new(&conf, errstr, errstr_size)) ||
            npsd_cluster_connect(r->cluster, errstr, errstr_size) == -1)
                goto fail;
        /* A cluster has database 0 only: reading another one's keys there
         * would show the wrong data without a word. */
        if (npsd_cluster_enabled(r->cluster) && opts->redis_db) {
                snprintf(errstr, errstr_size,
                         "redis %s:%d is a Redis Cluster, which has database "
                         "0 only (--redis-db %d)",
                         opts->redis_host, opts->redis_port, opts->redis_db);
                goto fail;
        }
        return r;

fail:
        npsctl_redis_close(r);
        return NULL;
}

void npsctl_redis_begin(npsctl_redis_t *r) {
        npsd_cluster_begin(r->cluster);
        for (size_t i = 0; i < r->block_cnt; i++)
                free(r->blocks[i]);
        r->block_cnt = 0;
        r->oom = 0;
}

void npsctl_redis_close(npsctl_redis_t *r) {
        if (!r)
                return;
        if (r->cluster) {
                npsctl_redis_begin(r);
                npsd_cluster_destroy(r->cluster);
        }
        free(r->blocks);
        free(r->host);
        free(r);
}

npsd_cluster_t *npsctl_redis_cluster(npsctl_redis_t *r) {
        return r->cluster;
}

const char *npsctl_redis_where(npsctl_redis_t *r) {
        if (npsd_cluster_enabled(r->cluster))
                snprintf(r->where, sizeof(r->where),
                         "cluster %s:%d (%zu primaries)", r->host, r->port,
                         npsd_cluster_map_primaries(
                                 npsd_cluster_map(r->cluster), NULL, 0));
        else
                snprintf(r->where, sizeof(r->where), "%s:%d db %d", r->host,
                         r->port, r->db);
        return r->where;
}

/* The router keeps pointers to the arguments until exec: each command's
 * argv, argvlen and strings are copied into one block that lives until
 * the next npsctl_redis_begin(). */
long npsctl_redis_cmd(npsctl_redis_t *r, const char *cmd, const char *key,
                      ...) {
        const char **argv;
        size_t *argvlen, bytes = 0, i;
        char *block, *p, **blocks;
        int argc = 2;
        va_list ap;
        long idx;

        va_start(ap, key);
        while (va_arg(ap, const char *))
                argc++;
        va_end(ap);
        if (r->block_cnt == r->block_size) {
                size_t nsize = r->block_size ? r->block_size * 2 : 16;
                if (!(blocks = realloc(r->blocks, nsize * sizeof(*blocks))))
                        goto oom;
                r->blocks = blocks;
                r->block_size = nsize;
        }
        bytes = strlen(cmd) + strlen(key) + 2;
        va_start(ap, key);
        for (i = 2; i < (size_t)argc; i++)
                bytes += strlen(va_arg(ap, const char *)) + 1;
        va_end(ap);
        if (!(block = malloc((size_t)argc * (sizeof(*argv) +
                                             sizeof(*argvlen)) + bytes)))
                goto oom;
        argv = (const char **)(void *)block;
        argvlen = (size_t *)(void *)(argv + argc);
        p = (char *)(argvlen + argc);
        va_start(ap, key);
        for (i = 0; i < (size_t)argc; i++) {
                const char *a = i == 0 ? cmd
                                       : i == 1 ? key
                                                : va_arg(ap, const char *);
                argvlen[i] = strlen(a);
                memcpy(p, a, argvlen[i] + 1);
                argv[i] = p;
                p += argvlen[i] + 1;
        }
        va_end(ap);
        r->blocks[r->block_cnt++] = block;
        idx = npsd_cluster_append(r->cluster,
                                  npsd_cluster_keyslot(key, strlen(key)),
                                  argc, argv, argvlen);
        if (idx == -1)
                goto oom;
        return idx;

oom:
        r->oom = 1;
        return -1;
}

int npsctl_redis_exec(npsctl_redis_t *r, char *errstr, size_t errstr_size) {
        if (r->oom) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        return npsd_cluster_exec(r->cluster, errstr, errstr_size);
}

redisReply *npsctl_redis_take(npsctl_redis_t *r, long idx) {
        return npsd_cluster_reply_take(r->cluster, idx);
}

/*
 * broker
 */

static const char *npsctl_default_topics[] = {
        "nps.responses", "product.usage", "accounts",     "nps.followups",
        "nps.detractors", "nps.passives", "nps.promoters", "nps.alerts",
        "nps.dlq",
};
#define NPSCTL_TOPICS_MAX 64

/* Readers poll for the file: write a temporary file next to it and rename
 * it into place so that they never see partial content. */
static int npsctl_write_file_atomic(const char *path, const char *content,
                                    char *errstr, size_t errstr_size) {
        char tmp[4096];
        FILE *fp;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
            (int)sizeof(tmp)) {
                snprintf(errstr, errstr_size, "%s: path too long", path);
                return -1;
        }
        fp = fopen(tmp, "w");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        if (fputs(content, fp) == EOF || fputc('\n', fp) == EOF ||
            fflush(fp) || fsync(fileno(fp))) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                fclose(fp);
                goto fail_unlink;
        }
        if (fclose(fp)) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                goto fail_unlink;
        }
        if (rename(tmp, path)) {
                snprintf(errstr, errstr_size, "rename %s: %s", path,
                         strerror(errno));
                goto fail_unlink;
        }
        return 0;

fail_unlink:
        unlink(tmp);
        return -1;
}

/*
 * broker --control: fault injection for tests, one command per stdin line,
 * each answered with one "ok" or "error: ..." line on stdout.
 */

static const struct {
        const char *name;
        int16_t key;
} npsctl_api_keys[] = {
        {"Produce", 0},          {"Fetch", 1},
        {"ListOffsets", 2},      {"Metadata", 3},
        {"OffsetCommit", 8},     {"OffsetFetch", 9},
        {"FindCoordinator", 10}, {"JoinGroup", 11},
        {"Heartbeat", 12},       {"LeaveGroup", 13},
        {"SyncGroup", 14},       {"DescribeGroups", 15},
        {"ListGroups", 16},      {"ApiVersion", 18},
        {"InitProducerId", 22},  {"AddPartitionsToTxn", 24},
        {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
        {"TxnOffsetCommit", 28},
};
#define NPSCTL_API_KEY_CNT (sizeof(npsctl_api_keys) / sizeof(*npsctl_api_keys))
#define NPSCTL_CTL_TOPICS_MAX 64

typedef struct npsctl_ctl_s {
        rd_kafka_mock_cluster_t *mcluster;
        int broker_cnt;
        char topics[NPSCTL_CTL_TOPICS_MAX][256]; /* with a topic-error set */
        int topic_cnt;
        char buf[4096];
        size_t len;
        int eof;
} npsctl_ctl_t;

static int npsctl_api_key(const char *name, int16_t *key) {
        char *end;
        long v;
        size_t i;

        for (i = 0; i < NPSCTL_API_KEY_CNT; i++) {
                if (!strcasecmp(name, npsctl_api_keys[i].name)) {
                        *key = npsctl_api_keys[i].key;
                        return 0;
                }
        }
        v = strtol(name, &end, 10);
        if (*name && !*end && v >= 0 && v < 1000) {
                *key = (int16_t)v;
                return 0;
        }
        return -1;
}

/* "NOT_LEADER_FOR_PARTITION", with or without RD_KAFKA_RESP_ERR_, any
 * case, or the number. */
static int npsctl_err_code(const char *name, rd_kafka_resp_err_t *err) {
        const struct rd_kafka_err_desc *descs;
        size_t cnt, i;
        char *end;
        long v;

        if (!strncasecmp(name, "RD_KAFKA_RESP_ERR_", 18))
                name += 18;
        rd_kafka_get_err_descs(&descs, &cnt);
        for (i = 0; i < cnt; i++) {
                if (descs[i].name && !strcasecmp(descs[i].name, name)) {
                        *err = descs[i].code;
                        return 0;
                }
        }
        v = strtol(name, &end, 10);
        if (*name && !*end && v >= -200 && v < 1000 &&
            strcmp(rd_kafka_err2name((rd_kafka_resp_err_t)v), "")) {
                *err = (rd_kafka_resp_err_t)v;
                return 0;
        }
        return -1;
}

static int npsctl_ctl_broker_id(const npsctl_ctl_t *ctl, const char *s,
                                int32_t *id, char *errstr, size_t size) {
        char *end;
        long v = s ? strtol(s, &end, 10) : 0;

        if (!s || !*s || *end || v < 1 || v > ctl->broker_cnt) {
                snprintf(errstr, size, "broker id must be 1-%d, got \"%s\"",
                         ctl->broker_cnt, s ? s : "");
                return -1;
        }
        *id = (int32_t)v;
        return 0;
}

static void npsctl_ctl_clear(npsctl_ctl_t *ctl) {
        int i;

        for (i = 0; i < 100; i++)
                rd_kafka_mock_clear_request_errors(ctl->mcluster, (int16_t)i);
        for (i = 1; i <= ctl->broker_cnt; i++) {
                rd_kafka_mock_broker_set_rtt(ctl->mcluster, i, 0);
                rd_kafka_mock_broker_set_up(ctl->mcluster, i);
        }
        for (i = 0; i < ctl->topic_cnt; i++)
                rd_kafka_mock_topic_set_error(ctl->mcluster, ctl->topics[i],
                                              RD_KAFKA_RESP_ERR_NO_ERROR);
        ctl->topic_cnt = 0;
}

/* Runs one command; returns 0 or -1 with errstr. */
static int npsctl_ctl_exec(npsctl_ctl_t *ctl, char *line, char *errstr,
                           size_t size) {
        char *argv[8], *save = NULL, *tok;
        int argc = 0;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        int32_t id;

        for (tok = strtok_r(line, " \t\r", &save); tok && argc < 8;
             tok = strtok_r(NULL, " \t\r", &save))
                argv[argc++] = tok;
        if (!argc) {
                snprintf(errstr, size, "empty command");
                return -1;
        }
#define NPSCTL_CTL_ARGS(n, usage)                                              \
        do {                                                                   \
                if (argc != (n) + 1) {                                         \
                        snprintf(errstr, size, "usage: %s", usage);            \
                        return -1;                                             \
                }                                                              \
        } while (0)
        if (!strcmp(argv[0], "down") || !strcmp(argv[0], "up")) {
                int down = argv[0][0] == 'd';

                NPSCTL_CTL_ARGS(1, down ? "down <broker_id>"
                                        : "up <broker_id>");
                if (npsctl_ctl_broker_id(ctl, argv[1], &id, errstr, size))
                        return -1;
                err = down ? rd_kafka_mock_broker_set_down(ctl->mcluster, id)
                           : rd_kafka_mock_broker_set_up(ctl->mcluster, id);
        } else if (!strcmp(argv[0], "rtt")) {
                long long ms;
                char *end;

                NPSCTL_CTL_ARGS(2, "rtt <broker_id> <ms>");
                if (npsctl_ctl_broker_id(ctl, argv[1], &id, errstr, size))
                        return -1;
                ms = strtoll(argv[2], &end, 10);
                if (!*argv[2] || *end || ms < 0 || ms > 600000) {
                        snprintf(errstr, size, "rtt must be 0-600000 ms, got "
                                 "\"%s\"", argv[2]);
                        return -1;
                }
                err = rd_kafka_mock_broker_set_rtt(ctl->mcluster, id, (int)ms);
        } else if (!strcmp(argv[0], "errors")) {
                rd_kafka_resp_err_t *errs, code;
                long long cnt;
                char *end;
                int16_t key;

                NPSCTL_CTL_ARGS(3, "errors <ApiKey> <count> <ERR_NAME>");
                if (npsctl_api_key(argv[1], &key)) {
                        snprintf(errstr, size, "unknown ApiKey \"%s\" (e.g. "
                                 "Produce, Fetch, OffsetCommit, JoinGroup)",
                                 argv[1]);
                        return -1;
                }
                cnt = strtoll(argv[2], &end, 10);
                if (!*argv[2] || *end || cnt < 1 || cnt > 100000) {
                        snprintf(errstr, size, "count must be 1-100000, got "
                                 "\"%s\"", argv[2]);
                        return -1;
                }
                if (npsctl_err_code(argv[3], &code)) {
                        snprintf(errstr, size, "unknown error \"%s\" (e.g. "
                                 "NOT_LEADER_FOR_PARTITION)", argv[3]);
                        return -1;
                }
                if (!(errs = malloc((size_t)cnt * sizeof(*errs)))) {
                        snprintf(errstr, size, "out of memory");
                        return -1;
                }
                for (long long i = 0; i < cnt; i++)
                        errs[i] = code;
                rd_kafka_mock_push_request_errors_array(ctl->mcluster, key,
                                                        (size_t)cnt, errs);
                free(errs);
        } else if (!strcmp(argv[0], "topic-error")) {
                rd_kafka_resp_err_t code;
                int i;

                NPSCTL_CTL_ARGS(2, "topic-error <topic> <ERR_NAME>");
                if (npsctl_err_code(argv[2], &code)) {
                        snprintf(errstr, size, "unknown error \"%s\"",
                                 argv[2]);
                        return -1;
                }
                for (i = 0; i < ctl->topic_cnt; i++)
                        if (!strcmp(ctl->topics[i], argv[1]))
                                break;
                if (i == ctl->topic_cnt && code) {
                        if (ctl->topic_cnt == NPSCTL_CTL_TOPICS_MAX ||
                            strlen(argv[1]) >= sizeof(ctl->topics[0])) {
                                snprintf(errstr, size, "too many topic errors");
                                return -1;
                        }
                        strcpy(ctl->topics[ctl->topic_cnt++], argv[1]);
                }
                rd_kafka_mock_topic_set_error(ctl->mcluster, argv[1], code);
        } else if (!strcmp(argv[0], "clear")) {
                NPSCTL_CTL_ARGS(0, "clear");
                npsctl_ctl_clear(ctl);
        } else {
                snprintf(errstr, size, "unknown command \"%s\" (down, up, "
                         "rtt, errors, topic-error, clear)", argv[0]);
                return -1;
        }
#undef NPSCTL_CTL_ARGS
        if (err) {
                snprintf(errstr, size, "%s", rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

/* Reads what stdin has (waiting up to wait_ms) and runs complete lines. */
static void npsctl_ctl_serve(npsctl_ctl_t *ctl, int wait_ms) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        char errstr[512], *nl;
        ssize_t n;

        if (ctl->eof) {
                npsctl_sleep_ms(wait_ms);
                return;
        }
        if (poll(&pfd, 1, wait_ms) <= 0)
                return;
        n = read(STDIN_FILENO, ctl->buf + ctl->len,
                 sizeof(ctl->buf) - 1 - ctl->len);
        if (n <= 0) {
                if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                        /* the controller went away: keep serving Kafka */
                        npsd_info("msg=\"control channel closed\"");
                        ctl->eof = 1;
                }
                return;
        }
        ctl->len += (size_t)n;
        ctl->buf[ctl->len] = '\0';
        while ((nl = strchr(ctl->buf, '\n'))) {
                *nl = '\0';
                npsd_info("msg=\"control command\" command=\"%s\"", ctl->buf);
                if (npsctl_ctl_exec(ctl, ctl->buf, errstr, sizeof(errstr)))
                        printf("error: %s\n", errstr);
                else
                        printf("ok\n");
                fflush(stdout);
                ctl->len -= (size_t)(nl + 1 - ctl->buf);
                memmove(ctl->buf, nl + 1, ctl->len + 1);
        }
        if (ctl->len == sizeof(ctl->buf) - 1) {
                printf("error: command line too long\n");
                fflush(stdout);
                ctl->len = 0;
        }
}

static void npsctl_broker_usage(FILE *fp) {
        fprintf(fp,
                "usage: npsctl broker [--brokers N] [--partitions N] "
                "[--bootstrap-file F]\n"
                "                     [--topic-prefix P] [--topics a,b,...] [--control]\n"
                "\n"
                "Runs the embedded DEVELOPMENT Kafka broker (librdkafka's mock "
                "cluster):\n"
                "in memory, 127.0.0.1 only, no persistence, no security, no "
                "retention\n"
                "guarantees. For demos and tests only — never for production "
                "data.\n"
                "\n"
                "  --brokers N          brokers in the cluster (default 1)\n"
                "  --partitions N       partitions per topic (default 4)\n"
                "  --bootstrap-file F   also write the bootstrap address to F "
                "(atomically)\n"
                "  --topic-prefix P     prefix of the default topic names\n"
                "  --topics LIST        extra topics to create (comma "
                "separated)\n"
                "  --control            read fault-injection commands from "
                "stdin, one per line,\n"
                "                       each answered with \"ok\" or "
                "\"error: ...\" on stdout:\n"
                "                         down <id> | up <id>      broker "
                "<id> (1..N) unreachable / back\n"
                "                         rtt <id> <ms>            add "
                "round-trip latency to broker <id>\n"
                "                         errors <ApiKey> <n> <ERR>  fail the "
                "next n requests, e.g.\n"
                "                                                  errors "
                "Produce 20 NOT_LEADER_FOR_PARTITION\n"
                "                         topic-error <topic> <ERR>  topic "
                "metadata error (NO_ERROR clears)\n"
                "                         clear                    undo all "
                "of the above\n"
                "\n"
                "Prints \"bootstrap.servers=<addr>\" on stdout, then runs "
                "until SIGINT/SIGTERM.\n");
}

static int npsctl_broker_main(npsctl_opts_t *opts, int argc, char **argv) {
        char topic_buf[NPSCTL_TOPICS_MAX][256];
        const char *topics[NPSCTL_TOPICS_MAX];
        const char *bootstrap_file = NULL, *topic_prefix = "", *extra = NULL;
        long long brokers = 1, partitions = 4;
        npsctl_ctl_t *ctl = NULL;
        int control = 0;
        size_t topic_cnt = 0, t;
        npsd_devbroker_t *db;
        char errstr[512];
        const char *v;
        int i, r;

        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        npsctl_broker_usage(stdout);
                        return 0;
                }
                if ((r = npsctl_optval(argc, argv, &i, "--brokers", &v))) {
                        if (r < 0 || npsctl_parse_int("--brokers", v, 1, 16,
                                                      &brokers))
                                return 2;
                } else if ((r = npsctl_optval(argc, argv, &i, "--partitions",
                                              &v))) {
                        if (r < 0 || npsctl_parse_int("--partitions", v, 1,
                                                      1000, &partitions))
                                return 2;
                } else if ((r = npsctl_optval(argc, argv, &i,
                                              "--bootstrap-file", &v))) {
                        if (r < 0)
                                return 2;
                        bootstrap_file = v;
                } else if ((r = npsctl_optval(argc, argv, &i, "--topic-prefix",
                                              &v))) {
                        if (r < 0)
                                return 2;
                        topic_prefix = v;
                } else if ((r = npsctl_optval(argc, argv, &i, "--topics",
                                              &v))) {
                        if (r < 0)
                                return 2;
                        extra = v;
                } else if (!strcmp(argv[i], "--control")) {
                        control = 1;
                } else if ((r = npsctl_common_opt(opts, argc, argv, &i))) {
                        if (r < 0)
                                return 2;
                } else {
                        fprintf(stderr, "npsctl broker: unknown argument "
                                "\"%s\"\n", argv[i]);
                        npsctl_broker_usage(stderr);
                        return 2;
                }
        }

        for (t = 0; t < sizeof(npsctl_default_topics) /
                            sizeof(*npsctl_default_topics); t++) {
                snprintf(topic_buf[topic_cnt], sizeof(topic_buf[0]), "%s%s",
                         topic_prefix, npsctl_default_topics[t]);
                topics[topic_cnt] = topic_buf[topic_cnt];
                topic_cnt++;
        }
        while (extra && *extra && topic_cnt < NPSCTL_TOPICS_MAX) {
                size_t len = strcspn(extra, ",");

                if (len > 0 && len < sizeof(topic_buf[0])) {
                        memcpy(topic_buf[topic_cnt], extra, len);
                        topic_buf[topic_cnt][len] = '\0';
                        topics[topic_cnt] = topic_buf[topic_cnt];
                        topic_cnt++;
                }
                extra += len + (extra[len] == ',');
        }

        npsctl_signals_install();
        db = npsd_devbroker_new((int)brokers, (int)partitions, topics,
                                topic_cnt, errstr, sizeof(errstr));
        if (!db) {
                npsd_error("msg=\"development broker failed to start\" "
                           "error=\"%s\"", errstr);
                return 1;
        }

        if (bootstrap_file &&
            npsctl_write_file_atomic(bootstrap_file,
                                     npsd_devbroker_bootstraps(db), errstr,
                                     sizeof(errstr))) {
                npsd_error("msg=\"could not write bootstrap file\" "
                           "error=\"%s\"", errstr);
                npsd_devbroker_destroy(db);
                return 1;
        }
        printf("bootstrap.servers=%s\n", npsd_devbroker_bootstraps(db));
        fflush(stdout);
        npsd_warn("msg=\"development broker running: in-memory mock cluster, "
                  "for demos and tests only, not for production data\" "
                  "bootstrap=%s brokers=%lld partitions=%lld topics=%zu",
                  npsd_devbroker_bootstraps(db), brokers, partitions,
                  topic_cnt);

        if (control) {
                if (!(ctl = calloc(1, sizeof(*ctl)))) {
                        npsd_error("msg=\"out of memory\"");
                        npsd_devbroker_destroy(db);
                        return 1;
                }
                ctl->mcluster = npsd_devbroker_mock(db);
                ctl->broker_cnt = (int)brokers;
        }
        while (!npsctl_stop) {
                if (ctl)
                        npsctl_ctl_serve(ctl, 100);
                else
                        npsctl_sleep_ms(1000);
        }
        free(ctl);

        npsd_info("msg=\"development broker stopping\"");
        /* The address is dead once we exit; do not leave it around for a
         * reader that waits for the file of the next broker. */
        if (bootstrap_file)
                unlink(bootstrap_file);
        npsd_devbroker_destroy(db);
        return 0;
}

static void npsctl_usage(FILE *fp) {
        fprintf(fp,
                "usage: npsctl <command> [options]\n"
                "\n"
                "commands:\n"
                "  account ID [--windows 30d,90d] [--json]\n"
                "                      print an account's NPS card from Redis\n"
                "  top [--limit N] [--interval S] [--once]\n"
                "                      live view: cohorts, accounts at risk, "
                "detractor themes\n"
                "  gen --bootstrap B [...]\n"
                "                      produce realistic synthetic traffic "
                "(npsctl gen --help)\n"
                "  broker [--brokers N] [--partitions N] [--bootstrap-file F]\n"
                "         [--topics a,b] [--topic-prefix P] [--control]\n"
                "                      run the embedded development broker "
                "(development only);\n"
                "                      --control reads fault-injection "
                "commands on stdin\n"
                "  reset --yes         delete every Redis key under the "
                "prefix (npsctl reset --help)\n"
                "  replay --yes --bootstrap B [--group G]\n"
                "                      reset, and rewind the consumer group "
                "to the earliest offsets\n"
                "  help                this text\n"
                "\n"
                "shared options:\n"
                "  --redis-host H        Redis host (default 127.0.0.1)\n"
                "  --redis-port P        Redis port (default 6379)\n"
                "  --redis-password PW   AUTH password (or env REDISCLI_AUTH)\n"
                "  --redis-user U        ACL user (AUTH U PW)\n"
                "  --redis-db N          database number (default 0; a "
                "cluster has 0 only)\n"
                "  --redis-cluster M     auto (ask the server, default), on "
                "or off\n"
                "  --redis-nodes H:P,... more Redis Cluster nodes to start "
                "from\n"
                "  --prefix P            Redis key prefix (default nps)\n"
                "  --bootstrap B         Kafka bootstrap servers\n"
                "  -X key=value          librdkafka property (repeatable), "
                "e.g. -X security.protocol=SASL_SSL\n");
}

int main(int argc, char **argv) {
        npsctl_opts_t opts;
        const char *cmd;

        memset(&opts, 0, sizeof(opts));
        opts.redis_host = "127.0.0.1";
        opts.redis_port = 6379;
        opts.prefix = "nps";

        if (argc < 2) {
                npsctl_usage(stderr);
                return 2;
        }
        cmd = argv[1];
        if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") ||
            !strcmp(cmd, "--help")) {
                npsctl_usage(stdout);
                return 0;
        }
        if (!strcmp(cmd, "broker"))
                return npsctl_broker_main(&opts, argc - 2, argv + 2);
        if (!strcmp(cmd, "gen"))
                return npsctl_gen_main(&opts, argc - 2, argv + 2);
        if (!strcmp(cmd, "account"))
                return npsctl_account_main(&opts, argc - 2, argv + 2);
        if (!strcmp(cmd, "top"))
                return npsctl_top_main(&opts, argc - 2, argv + 2);
        if (!strcmp(cmd, "reset"))
                return npsctl_reset_main(&opts, argc - 2, argv + 2);
        if (!strcmp(cmd, "replay"))
                return npsctl_replay_main(&opts, argc - 2, argv + 2);
        fprintf(stderr, "npsctl: unknown command \"%s\"\n\n", cmd);
        npsctl_usage(stderr);
        return 2;
}
