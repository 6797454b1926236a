/*
 * npsd_cluster — connections and the routed pipeline (see
 * include/npsd/npsd_cluster.h). One blocking hiredis context per node; a
 * pipeline is written to every node it touches before any node is read,
 * so the nodes work at the same time.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npsd/npsd_cluster.h"
#include "npsd/npsd_fmt.h"

#define NPSD_CLUSTER_ROUNDS 5 /* redirections followed per pipeline */
/* a node's formatted commands are written out once they reach this */
#define NPSD_CLUSTER_OUT_FLUSH (64 * 1024)

/* Commands formatted for one node, not yet written to its socket. */
typedef struct npsd_cluster_out_s {
        char *buf;
        size_t len, size;
} npsd_cluster_out_t;

typedef struct npsd_cluster_cmd_s {
        int argc;
        const char **argv;
        const size_t *argvlen;
        unsigned slot;
        int node;   /* where it was last sent */
        int asking; /* send ASKING first (an ASK redirection) */
        int ask_node;
        redisReply *reply;
} npsd_cluster_cmd_t;

struct npsd_cluster_s {
        char *host, *user, *password;
        int port, db, timeout_ms;
        npsd_cluster_mode_t mode;
        npsd_cluster_node_t *seeds;
        size_t seed_cnt;

        int connected; /* a mode was decided and the map is usable */
        int enabled;   /* cluster mode */
        int stale;     /* reload the map before the next pipeline */
        npsd_cluster_map_t map;
        redisContext **ctx; /* per map node */
        npsd_cluster_out_t *out; /* per map node, as ctx */
        size_t ctx_size;

        npsd_cluster_cmd_t *cmds;
        size_t cmd_cnt, cmd_size;
        npsd_cluster_stats_t stats;
};

/* "h:p,h:p" into a node array; the port after the last colon. */
static int npsd_cluster_seeds_parse(npsd_cluster_t *cluster,
                                    const char *list, char *errstr,
                                    size_t errstr_size) {
        const char *p = list;

        while (p && *p) {
                const char *end = strchr(p, ','), *colon;
                size_t len = end ? (size_t)(end - p) : strlen(p);
                npsd_cluster_node_t *n, *seeds;
                char *stop;
                long port;

                for (colon = p + len; colon > p && colon[-1] != ':'; colon--)
                        ;
                if (colon == p || (size_t)(colon - 1 - p) >=
                                          NPSD_CLUSTER_HOST_MAX) {
                        snprintf(errstr, errstr_size,
                                 "redis.nodes: '%.*s' is not host:port",
                                 (int)len, p);
                        return -1;
                }
                port = strtol(colon, &stop, 10);
                if (stop != p + len || port <= 0 || port > 65535) {
                        snprintf(errstr, errstr_size,
                                 "redis.nodes: bad port in '%.*s'", (int)len,
                                 p);
                        return -1;
                }
                seeds = realloc(cluster->seeds,
                                (cluster->seed_cnt + 1) * sizeof(*seeds));
                if (!seeds) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                cluster->seeds = seeds;
                n = &seeds[cluster->seed_cnt++];
                memcpy(n->host, p, (size_t)(colon - 1 - p));
                n->host[colon - 1 - p] = '\0';
                n->port = (int)port;
                p = end ? end + 1 : NULL;
        }
        return 0;
}

npsd_cluster_t *npsd_cluster_new(const npsd_cluster_conf_t *conf,
                                 char *errstr, size_t errstr_size) {
        npsd_cluster_t *cluster = calloc(1, sizeof(*cluster));

        if (!cluster)
                goto oom;
        npsd_cluster_map_init(&cluster->map);
        cluster->port = conf->port;
        cluster->db = conf->db;
        cluster->timeout_ms = conf->timeout_ms;
        cluster->mode = conf->mode;
        if (!(cluster->host = strdup(conf->host)) ||
            !(cluster->user = strdup(conf->user ? conf->user : "")) ||
            !(cluster->password =
                      strdup(conf->password ? conf->password : "")))
                goto oom;
        if (npsd_cluster_seeds_parse(cluster, conf->nodes, errstr,
                                     errstr_size) == -1)
                goto fail;
        return cluster;

oom:
        snprintf(errstr, errstr_size, "out of memory");
fail:
        npsd_cluster_destroy(cluster);
        return NULL;
}

static void npsd_cluster_drop(npsd_cluster_t *cluster, size_t node) {
        if (node < cluster->ctx_size && cluster->ctx[node]) {
                redisFree(cluster->ctx[node]);
                cluster->ctx[node] = NULL;
                cluster->out[node].len = 0; /* not for the next connection */
        }
}

/* Every connection goes: after an error a pipeline may have been read only
 * in part, and hiredis contexts are unusable after an error anyway. */
static void npsd_cluster_drop_all(npsd_cluster_t *cluster) {
        for (size_t i = 0; i < cluster->ctx_size; i++)
                npsd_cluster_drop(cluster, i);
}

void npsd_cluster_begin(npsd_cluster_t *cluster) {
        for (size_t i = 0; i < cluster->cmd_cnt; i++)
                if (cluster->cmds[i].reply)
                        freeReplyObject(cluster->cmds[i].reply);
        cluster->cmd_cnt = 0;
}

void npsd_cluster_destroy(npsd_cluster_t *cluster) {
        if (!cluster)
                return;
        npsd_cluster_begin(cluster);
        npsd_cluster_drop_all(cluster);
        for (size_t i = 0; i < cluster->ctx_size; i++)
                free(cluster->out[i].buf);
        free(cluster->ctx);
        free(cluster->out);
        free(cluster->cmds);
        npsd_cluster_map_reset(&cluster->map);
        free(cluster->seeds);
        free(cluster->host);
        free(cluster->user);
        free(cluster->password);
        free(cluster);
}

int npsd_cluster_enabled(const npsd_cluster_t *cluster) {
        return cluster->enabled;
}

const npsd_cluster_map_t *npsd_cluster_map(const npsd_cluster_t *cluster) {
        return &cluster->map;
}

void npsd_cluster_stats(const npsd_cluster_t *cluster,
                        npsd_cluster_stats_t *stats) {
        *stats = cluster->stats;
}

/* One command on a connection being set up; 0 or -1 with errstr. */
static int npsd_cluster_setup_cmd(redisContext *ctx, int argc,
                                  const char **argv, redisReply **out,
                                  char *errstr, size_t errstr_size) {
        redisReply *reply = redisCommandArgv(ctx, argc, argv, NULL);

        if (!reply) {
                snprintf(errstr, errstr_size, "redis %s: %s", argv[0],
                         ctx->errstr);
                return -1;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "redis %s: %s", argv[0],
                         reply->str);
                freeReplyObject(reply);
                return -1;
        }
        if (out)
                *out = reply;
        else
                freeReplyObject(reply);
        return 0;
}

/* A new authenticated connection to host:port (and the database, in
 * standalone mode), or NULL with errstr. */
static redisContext *npsd_cluster_open(npsd_cluster_t *cluster,
                                       const char *host, int port,
                                       int select_db, char *errstr,
                                       size_t errstr_size) {
        struct timeval tv = {cluster->timeout_ms / 1000,
                             (cluster->timeout_ms % 1000) * 1000};
        redisContext *ctx = redisConnectWithTimeout(host, port, tv);

        cluster->stats.connects++;
        if (!ctx || ctx->err) {
                snprintf(errstr, errstr_size, "redis connect %s:%d: %s", host,
                         port, ctx ? ctx->errstr : "out of memory");
                goto fail;
        }
        redisSetTimeout(ctx, tv);
        if (*cluster->password) {
                const char *auth[3] = {"AUTH", cluster->user,
                                       cluster->password};
                int argc = 3;
                if (!*cluster->user) {
                        auth[1] = cluster->password;
                        argc = 2;
                }
                if (npsd_cluster_setup_cmd(ctx, argc, auth, NULL, errstr,
                                           errstr_size) == -1)
                        goto fail;
        }
        if (select_db && cluster->db) {
                char db[16];
                const char *sel[2] = {"SELECT", db};
                snprintf(db, sizeof(db), "%d", cluster->db);
                if (npsd_cluster_setup_cmd(ctx, 2, sel, NULL, errstr,
                                           errstr_size) == -1)
                        goto fail;
        }
        return ctx;

fail:
        if (ctx)
                redisFree(ctx);
        return NULL;
}

/* The connection to map node idx, opened when needed. */
static redisContext *npsd_cluster_ctx(npsd_cluster_t *cluster, int node,
                                      char *errstr, size_t errstr_size) {
        const npsd_cluster_node_t *n = &cluster->map.nodes[node];

        if ((size_t)node >= cluster->ctx_size) {
                size_t nsize = cluster->map.node_cnt + 4;
                redisContext **ctx =
                        realloc(cluster->ctx, nsize * sizeof(*ctx));
                npsd_cluster_out_t *out;
                if (ctx)
                        cluster->ctx = ctx;
                if (!ctx ||
                    !(out = realloc(cluster->out, nsize * sizeof(*out)))) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return NULL;
                }
                memset(ctx + cluster->ctx_size, 0,
                       (nsize - cluster->ctx_size) * sizeof(*ctx));
                memset(out + cluster->ctx_size, 0,
                       (nsize - cluster->ctx_size) * sizeof(*out));
                cluster->out = out;
                cluster->ctx_size = nsize;
        }
        if (!cluster->ctx[node])
                cluster->ctx[node] =
                        npsd_cluster_open(cluster, n->host, n->port,
                                          !cluster->enabled, errstr,
                                          errstr_size);
        return cluster->ctx[node];
}

/* Asks one node for the mode (auto) and the slot map. 0, or -1 with
 * errstr. */
static int npsd_cluster_load_from(npsd_cluster_t *cluster, const char *host,
                                  int port, char *errstr,
                                  size_t errstr_size) {
        redisContext *ctx = npsd_cluster_open(cluster, host, port, 0, errstr,
                                              errstr_size);
        redisReply *reply = NULL;
        int enabled = cluster->mode == NPSD_CLUSTER_MODE_ON, node;

        if (!ctx)
                return -1;
        if (cluster->mode == NPSD_CLUSTER_MODE_AUTO) {
                const char *info[2] = {"INFO", "cluster"};
                if (npsd_cluster_setup_cmd(ctx, 2, info, &reply, errstr,
                                           errstr_size) == -1)
                        goto fail;
                enabled = reply->type == REDIS_REPLY_STRING &&
                          strstr(reply->str, "cluster_enabled:1") != NULL;
                freeReplyObject(reply);
                reply = NULL;
        }
        npsd_cluster_drop_all(cluster);
        if (enabled) {
                const char *slots[2] = {"CLUSTER", "SLOTS"};
                if (npsd_cluster_setup_cmd(ctx, 2, slots, &reply, errstr,
                                           errstr_size) == -1 ||
                    npsd_cluster_map_load(&cluster->map, reply, host, errstr,
                                          errstr_size) == -1)
                        goto fail;
                freeReplyObject(reply);
                redisFree(ctx);
                cluster->stats.map_loads++;
        } else {
                /* standalone: one node owns every slot; keep this
                 * connection once the database is selected */
                npsd_cluster_map_reset(&cluster->map);
                if ((node = npsd_cluster_map_node(&cluster->map, host,
                                                  port)) == -1) {
                        snprintf(errstr, errstr_size, "out of memory");
                        goto fail;
                }
                memset(cluster->map.slot_node, 0,
                       sizeof(cluster->map.slot_node));
                redisFree(ctx);
        }
        cluster->enabled = enabled;
        cluster->connected = 1;
        cluster->stale = 0;
        return 0;

fail:
        if (reply)
                freeReplyObject(reply);
        redisFree(ctx);
        return -1;
}

/* Tries the nodes of the current map first (after a failover the first
 * node may be gone), then the first node and the seeds. */
int npsd_cluster_connect(npsd_cluster_t *cluster, char *errstr,
                         size_t errstr_size) {
        npsd_cluster_node_t *known = NULL;
        size_t known_cnt = 0;
        int rc = -1;

        if (cluster->connected && !cluster->stale)
                return 0;
        if (cluster->enabled && cluster->map.node_cnt) {
                known_cnt = cluster->map.node_cnt;
                if (!(known = malloc(known_cnt * sizeof(*known)))) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return -1;
                }
                memcpy(known, cluster->map.nodes, known_cnt * sizeof(*known));
        }
        for (size_t i = 0; rc == -1 && i < known_cnt; i++)
                rc = npsd_cluster_load_from(cluster, known[i].host,
                                            known[i].port, errstr,
                                            errstr_size);
        if (rc == -1)
                rc = npsd_cluster_load_from(cluster, cluster->host,
                                            cluster->port, errstr,
                                            errstr_size);
        for (size_t i = 0; rc == -1 && i < cluster->seed_cnt; i++)
                rc = npsd_cluster_load_from(cluster, cluster->seeds[i].host,
                                            cluster->seeds[i].port, errstr,
                                            errstr_size);
        free(known);
        return rc;
}

long npsd_cluster_append(npsd_cluster_t *cluster, unsigned slot, int argc,
                         const char **argv, const size_t *argvlen) {
        npsd_cluster_cmd_t *cmd;

        if (cluster->cmd_cnt == cluster->cmd_size) {
                size_t nsize = cluster->cmd_size ? cluster->cmd_size * 2 : 64;
                npsd_cluster_cmd_t *cmds =
                        realloc(cluster->cmds, nsize * sizeof(*cmds));
                if (!cmds)
                        return -1;
                cluster->cmds = cmds;
                cluster->cmd_size = nsize;
        }
        cmd = &cluster->cmds[cluster->cmd_cnt];
        memset(cmd, 0, sizeof(*cmd));
        cmd->argc = argc;
        cmd->argv = argv;
        cmd->argvlen = argvlen;
        cmd->slot = slot & (NPSD_CLUSTER_SLOTS - 1);
        return (long)cluster->cmd_cnt++;
}

/* Writes a node's formatted commands to its socket, past hiredis, whose
 * output buffer stays empty: redisGetReply() then only reads. Returns 0,
 * or -1 with ctx->errstr set. */
static int npsd_cluster_flush(npsd_cluster_t *cluster, int node) {
        redisContext *ctx = cluster->ctx[node];
        npsd_cluster_out_t *out = &cluster->out[node];
        size_t off = 0;

        while (off < out->len) {
                ssize_t n = write(ctx->fd, out->buf + off, out->len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        /* EAGAIN: the context's timeout (SO_SNDTIMEO) */
                        snprintf(ctx->errstr, sizeof(ctx->errstr), "write: %s",
                                 n < 0 && errno != EAGAIN ? strerror(errno)
                                                          : "timed out");
                        ctx->err = REDIS_ERR_IO;
                        out->len = 0;
                        return -1;
                }
                off += (size_t)n;
        }
        out->len = 0;
        return 0;
}

/* Takes a redirection or keeps the reply; 1 when the command must be sent
 * again. */
static int npsd_cluster_settle(npsd_cluster_t *cluster,
                               npsd_cluster_cmd_t *cmd, redisReply *reply) {
        npsd_cluster_redirect_t redirect;
        int node;

        if (reply->type == REDIS_REPLY_ERROR && cluster->enabled) {
                switch (npsd_cluster_redirect_parse(reply->str, reply->len,
                                                    &redirect)) {
                case NPSD_CLUSTER_REDIRECT_MOVED:
                        if (npsd_cluster_map_moved(&cluster->map,
                                                   &redirect) == -1)
                                break;
                        cluster->stats.moved++;
                        cluster->stale = 1; /* a reshard moves many slots */
                        cmd->asking = 0;
                        freeReplyObject(reply);
                        return 1;
                case NPSD_CLUSTER_REDIRECT_ASK:
                        node = npsd_cluster_map_node(&cluster->map,
                                                     redirect.host,
                                                     redirect.port);
                        if (node == -1)
                                break;
                        cluster->stats.ask++;
                        cmd->asking = 1;
                        cmd->ask_node = node;
                        freeReplyObject(reply);
                        return 1;
                case NPSD_CLUSTER_REDIRECT_NONE:
                        break;
                }
        }
        cmd->reply = reply;
        return 0;
}

/* "$<n>\r\n" or "*<n>\r\n" at p; returns the bytes written. */
static size_t npsd_cluster_resp_len(char *p, char mark, size_t n) {
        size_t len;

        p[0] = mark;
        len = 1 + npsd_fmt_u64(n, p + 1);
        p[len++] = '\r';
        p[len++] = '\n';
        return len;
}

/* Queues one command for a node. hiredis's own formatter (sdscatfmt per
 * word) was a tenth of npsd's CPU in the responses benchmark, and its
 * output buffer held a whole pipeline (4.7 MiB of rss100k's peak): the
 * command is written here into the node's reused buffer, which goes to
 * the socket whenever it passes NPSD_CLUSTER_OUT_FLUSH. */
static int npsd_cluster_resp_append(npsd_cluster_t *cluster, int node,
                                    int argc, const char **argv,
                                    const size_t *argvlen) {
        redisContext *ctx = cluster->ctx[node];
        npsd_cluster_out_t *out = &cluster->out[node];
        size_t need = 24, off;
        char *p;

        for (int i = 0; i < argc; i++)
                need += 24 + 2 + (argvlen ? argvlen[i] : strlen(argv[i]));
        if (out->len + need > out->size && out->len &&
            npsd_cluster_flush(cluster, node) == -1)
                return REDIS_ERR;
        if (need > out->size) {
                size_t size = need < NPSD_CLUSTER_OUT_FLUSH
                                      ? NPSD_CLUSTER_OUT_FLUSH
                                      : need;
                if (!(p = realloc(out->buf, size))) {
                        snprintf(ctx->errstr, sizeof(ctx->errstr),
                                 "out of memory");
                        return REDIS_ERR;
                }
                out->buf = p;
                out->size = size;
        }
        p = out->buf + out->len;
        off = npsd_cluster_resp_len(p, '*', (size_t)argc);
        for (int i = 0; i < argc; i++) {
                size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
                off += npsd_cluster_resp_len(p + off, '$', n);
                memcpy(p + off, argv[i], n);
                off += n;
                p[off++] = '\r';
                p[off++] = '\n';
        }
        out->len += off;
        if (out->len >= NPSD_CLUSTER_OUT_FLUSH &&
            npsd_cluster_flush(cluster, node) == -1)
                return REDIS_ERR;
        return REDIS_OK;
}

/* One round: sends every unanswered command to its node, then reads.
 * Returns the number still unanswered (redirected), or -1 with errstr. */
static long npsd_cluster_round(npsd_cluster_t *cluster, char *errstr,
                               size_t errstr_size) {
        static const char *asking[1] = {"ASKING"};
        long pending = 0;
        size_t i;

        for (i = 0; i < cluster->cmd_cnt; i++) {
                npsd_cluster_cmd_t *cmd = &cluster->cmds[i];
                redisContext *ctx;

                if (cmd->reply)
                        continue;
                cmd->node = cmd->asking ? cmd->ask_node
                                        : cluster->map.slot_node[cmd->slot];
                if (cmd->node == NPSD_CLUSTER_NO_NODE) {
                        snprintf(errstr, errstr_size,
                                 "redis cluster: no node serves slot %u",
                                 cmd->slot);
                        return -1;
                }
                if (!(ctx = npsd_cluster_ctx(cluster, cmd->node, errstr,
                                             errstr_size)))
                        return -1;
                if ((cmd->asking &&
                     npsd_cluster_resp_append(cluster, cmd->node, 1, asking,
                                              NULL) != REDIS_OK) ||
                    npsd_cluster_resp_append(cluster, cmd->node, cmd->argc,
                                             cmd->argv,
                                             cmd->argvlen) != REDIS_OK) {
                        const npsd_cluster_node_t *n =
                                &cluster->map.nodes[cmd->node];
                        snprintf(errstr, errstr_size, "redis %s:%d: %s",
                                 n->host, n->port, ctx->errstr);
                        return -1;
                }
        }
        for (i = 0; i < cluster->ctx_size; i++)
                if (cluster->ctx[i] && cluster->out[i].len &&
                    npsd_cluster_flush(cluster, (int)i) == -1) {
                        const npsd_cluster_node_t *n = &cluster->map.nodes[i];
                        snprintf(errstr, errstr_size, "redis %s:%d: %s",
                                 n->host, n->port, cluster->ctx[i]->errstr);
                        return -1;
                }
        for (i = 0; i < cluster->cmd_cnt; i++) {
                npsd_cluster_cmd_t *cmd = &cluster->cmds[i];
                redisContext *ctx = cluster->ctx[cmd->node];
                void *reply = NULL;

                if (cmd->reply)
                        continue;
                if (cmd->asking) {
                        if (redisGetReply(ctx, &reply) != REDIS_OK)
                                goto lost;
                        freeReplyObject(reply);
                        reply = NULL;
                }
                if (redisGetReply(ctx, &reply) != REDIS_OK)
                        goto lost;
                pending += npsd_cluster_settle(cluster, cmd, reply);
                continue;
        lost: {
                const npsd_cluster_node_t *n = &cluster->map.nodes[cmd->node];
                snprintf(errstr, errstr_size, "redis %s:%d: %s", n->host,
                         n->port, ctx->errstr);
                return -1;
        }
        }
        return pending;
}

int npsd_cluster_exec(npsd_cluster_t *cluster, char *errstr,
                      size_t errstr_size) {
        long pending = 1;

        if (npsd_cluster_connect(cluster, errstr, errstr_size) == -1)
                return -1;
        for (int round = 0; pending > 0 && round < NPSD_CLUSTER_ROUNDS;
             round++) {
                if ((pending = npsd_cluster_round(cluster, errstr,
                                                  errstr_size)) == -1) {
                        cluster->stats.node_errors++;
                        npsd_cluster_drop_all(cluster);
                        cluster->stale = 1;
                        return -1;
                }
        }
        if (pending > 0) {
                snprintf(errstr, errstr_size,
                         "redis cluster: still redirected after %d rounds",
                         NPSD_CLUSTER_ROUNDS);
                cluster->stale = 1;
                return -1;
        }
        /* A command refused for now (a failover, a reshard, a node still
         * loading) fails the pipeline like an unreachable node: callers
         * repeat the whole pipeline, while a caller that read the error as
         * one command's answer (a write it checks no further) would lose
         * it. */
        for (size_t i = 0; i < cluster->cmd_cnt; i++) {
                const redisReply *r = cluster->cmds[i].reply;
                if (r && r->type == REDIS_REPLY_ERROR &&
                    npsd_cluster_error_transient(r->str, r->len)) {
                        const npsd_cluster_node_t *n =
                                &cluster->map.nodes[cluster->cmds[i].node];
                        snprintf(errstr, errstr_size, "redis %s:%d: %s",
                                 n->host, n->port, r->str);
                        cluster->stale = 1;
                        return -1;
                }
        }
        return 0;
}

const redisReply *npsd_cluster_reply(const npsd_cluster_t *cluster,
                                     long idx) {
        if (idx < 0 || (size_t)idx >= cluster->cmd_cnt)
                return NULL;
        return cluster->cmds[idx].reply;
}

int npsd_cluster_reply_node(const npsd_cluster_t *cluster, long idx) {
        if (idx < 0 || (size_t)idx >= cluster->cmd_cnt ||
            !cluster->cmds[idx].reply)
                return -1;
        return cluster->cmds[idx].node;
}

redisReply *npsd_cluster_reply_take(npsd_cluster_t *cluster, long idx) {
        redisReply *reply;

        if (idx < 0 || (size_t)idx >= cluster->cmd_cnt)
                return NULL;
        reply = cluster->cmds[idx].reply;
        cluster->cmds[idx].reply = NULL;
        return reply;
}

/* Outside the pipeline: a command about a node (SCAN walks the keys of the
 * node it runs on), so it goes where the caller says, whoever owns which
 * slot. An I/O failure is handled as in npsd_cluster_exec(): the node's
 * connection goes and the map is reloaded before the next use, since the
 * node may have failed over. */
redisReply *npsd_cluster_node_command(npsd_cluster_t *cluster, int node,
                                      int argc, const char **argv,
                                      const size_t *argvlen, char *errstr,
                                      size_t errstr_size) {
        const npsd_cluster_node_t *n;
        redisContext *ctx;
        redisReply *reply;

        if (npsd_cluster_connect(cluster, errstr, errstr_size) == -1)
                return NULL;
        if (node < 0 || (size_t)node >= cluster->map.node_cnt) {
                snprintf(errstr, errstr_size, "redis cluster: no node %d",
                         node);
                return NULL;
        }
        n = &cluster->map.nodes[node];
        if (!(ctx = npsd_cluster_ctx(cluster, node, errstr, errstr_size)))
                goto fail;
        if (!(reply = redisCommandArgv(ctx, argc, argv, argvlen))) {
                snprintf(errstr, errstr_size, "redis %s:%d: %s", n->host,
                         n->port, ctx->errstr[0] ? ctx->errstr : "no reply");
                npsd_cluster_drop(cluster, (size_t)node);
                goto fail;
        }
        return reply;

fail:
        cluster->stats.node_errors++;
        cluster->stale = 1;
        return NULL;
}
