/*
 * npsctl — private interface between the npsctl sources (npsctl.c: main
 * and shared options, Redis access; npsctl_gen.c: traffic generator;
 * npsctl_view.c: account card and live top view; npsctl_reset.c: reset and
 * replay). Not installed, not part of the API.
 */
#ifndef NPSCTL_H
#define NPSCTL_H

#include <librdkafka/rdkafka.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_cluster.h"

#define NPSCTL_KCONF_MAX 64

/* Options every subcommand understands. */
typedef struct npsctl_opts_s {
        const char *redis_host;      /* the first node */
        int redis_port;
        const char *redis_nodes;     /* more seeds "host:port,...", or "" */
        npsd_cluster_mode_t redis_cluster; /* auto: as the server says */
        const char *redis_user;      /* NULL: no ACL user */
        const char *redis_password;  /* NULL: no AUTH */
        int redis_db;
        const char *prefix;          /* "nps" */
        const char *bootstrap;       /* NULL: not given */
        const char *kconf[NPSCTL_KCONF_MAX][2]; /* -X key=value, in order */
        int kconf_cnt;
        char kconf_buf[NPSCTL_KCONF_MAX][512];
} npsctl_opts_t;

/* Set by SIGINT/SIGTERM once npsctl_signals_install() ran. */
extern volatile sig_atomic_t npsctl_stop;
void npsctl_signals_install(void);

/* Matches argv[*i] against option `name` in both "--name value" and
 * "--name=value" forms. Returns 1 and sets *val (advancing *i past a
 * separate value), 0 when argv[*i] is another option, -1 (message
 * printed) when the value is missing. */
int npsctl_optval(int argc, char **argv, int *i, const char *name,
                  const char **val);

/* Consumes one of the shared options at argv[*i]. Returns 1 when it did,
 * 0 when argv[*i] is not a shared option, -1 on a bad value. */
int npsctl_common_opt(npsctl_opts_t *opts, int argc, char **argv, int *i);

/* Strict number parsing for option values; print a message and return -1
 * on garbage or when out of [min, max]. */
int npsctl_parse_int(const char *opt, const char *s, long long min,
                     long long max, long long *out);
int npsctl_parse_double(const char *opt, const char *s, double min,
                        double max, double *out);

/* A librdkafka configuration: the command's defaults (name, value pairs),
 * then bootstrap.servers, then every -X in order, so the user wins. */
rd_kafka_conf_t *npsctl_kafka_conf(const npsctl_opts_t *opts,
                                   const char *const (*defaults)[2],
                                   size_t default_cnt, char *errstr,
                                   size_t errstr_size);

/*
 * Redis, standalone or a Redis Cluster alike, through npsd's router
 * (npsd_cluster): a command goes to the node that owns its key's slot.
 * The router borrows a pipeline's arguments until it is sent; npsctl_redis
 * keeps copies of them so that callers can build commands from temporary
 * strings.
 */
typedef struct npsctl_redis_s npsctl_redis_t;

/* Connects (the mode decided and, on a cluster, the slot map loaded) with
 * the shared options; the password falls back to REDISCLI_AUTH. Returns a
 * handle to close with npsctl_redis_close(), or NULL with errstr naming
 * the node that could not be reached. */
npsctl_redis_t *npsctl_redis_open(const npsctl_opts_t *opts, char *errstr,
                                  size_t errstr_size);
void npsctl_redis_close(npsctl_redis_t *r);

/* The router, for commands built from borrowed arguments (reset). Owned by
 * r. */
npsd_cluster_t *npsctl_redis_cluster(npsctl_redis_t *r);

/* Where the commands go, for people: "127.0.0.1:6379 db 0", or "cluster
 * 127.0.0.1:7000 (3 primaries)". Owned by r, valid until the next call. */
const char *npsctl_redis_where(npsctl_redis_t *r);

/* Starts a new pipeline; replies of the previous one that were not taken
 * are freed. */
void npsctl_redis_begin(npsctl_redis_t *r);

/* Appends command `cmd key args...` (a NULL-terminated list of C strings,
 * copied), routed by the slot of key. Returns the reply's index. An append
 * that runs out of memory returns -1 and fails the next exec. */
long npsctl_redis_cmd(npsctl_redis_t *r, const char *cmd, const char *key,
                      ...) __attribute__((sentinel));

/* Sends the pipeline (see npsd_cluster_exec()). Returns 0, or -1 with
 * errstr. */
int npsctl_redis_exec(npsctl_redis_t *r, char *errstr, size_t errstr_size);

/* The reply of command idx of the last exec, now owned by the caller
 * (freeReplyObject()); NULL when there is none. */
redisReply *npsctl_redis_take(npsctl_redis_t *r, long idx);

/* Wall clock in epoch ms, or NPSD_NOW when set (RFC 3339). */
int64_t npsctl_now_ms(void);

/* Monotonic clock in ms, for pacing and intervals. */
int64_t npsctl_mono_ms(void);

/* Sleeps ms milliseconds; returns early once npsctl_stop is set. */
void npsctl_sleep_ms(int64_t ms);

int npsctl_gen_main(npsctl_opts_t *opts, int argc, char **argv);
int npsctl_account_main(npsctl_opts_t *opts, int argc, char **argv);
int npsctl_top_main(npsctl_opts_t *opts, int argc, char **argv);
int npsctl_reset_main(npsctl_opts_t *opts, int argc, char **argv);
int npsctl_replay_main(npsctl_opts_t *opts, int argc, char **argv);

#endif
