/*
 * npsd_cluster — Redis Cluster routing for hiredis 0.14, which has none:
 * the hash slot of a key, the slot map from CLUSTER SLOTS, MOVED and ASK
 * redirections, and a pipeline that is split per node and answers in the
 * order the commands were appended.
 *
 * The slot and map functions are pure (no I/O) and unit-tested with canned
 * replies; npsd_cluster_t owns one hiredis context per node. A standalone
 * Redis is the same code with one node that owns every slot, so the store
 * has one path for both.
 */
#ifndef NPSD_CLUSTER_H
#define NPSD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;

#define NPSD_CLUSTER_SLOTS 16384
#define NPSD_CLUSTER_NO_NODE 0xffff
#define NPSD_CLUSTER_HOST_MAX 256

/* The hash slot of a key: CRC16 (XMODEM) of the key's hash tag — the bytes
 * between the first '{' and the next '}' when there is at least one — or of
 * the whole key, modulo 16384. */
unsigned npsd_cluster_keyslot(const char *key, size_t len);

/* A short tag (NUL-terminated, valid for the process's lifetime) whose
 * CRC16 falls in slot: a key "<prefix>:{<tag>}:..." lives in that slot.
 * Lets npsd keep a companion key (a fence) in the slot of a key whose name
 * it does not choose. The table is built on first use (about 160,000
 * CRC16s, a few ms); not thread-safe before that first call. Returns NULL
 * for a slot out of range or when the table cannot be allocated. */
const char *npsd_cluster_slot_tag(unsigned slot);

typedef struct npsd_cluster_node_s {
        char host[NPSD_CLUSTER_HOST_MAX];
        int port;
} npsd_cluster_node_t;

/* Which node serves each slot. Nodes are only ever added (indexes stay
 * valid until npsd_cluster_map_reset()). */
typedef struct npsd_cluster_map_s {
        uint16_t slot_node[NPSD_CLUSTER_SLOTS]; /* NPSD_CLUSTER_NO_NODE */
        npsd_cluster_node_t *nodes;
        size_t node_cnt;
        size_t node_size;
} npsd_cluster_map_t;

/* Initialises an empty map (no node, no slot served). */
void npsd_cluster_map_init(npsd_cluster_map_t *map);
/* Frees the node table; the map is empty and reusable afterwards. */
void npsd_cluster_map_reset(npsd_cluster_map_t *map);

/* The index of node host:port, added when new. Returns -1 when out of
 * memory or the host name is too long. */
int npsd_cluster_map_node(npsd_cluster_map_t *map, const char *host,
                          int port);

/* Replaces the slot assignment with a CLUSTER SLOTS reply. An entry whose
 * primary host is empty or "?" (Redis does not know its own address) means
 * the node asked: asked_host. Returns 0, or -1 with errstr when the reply
 * is not a well-formed slot map (the slot assignment is then unchanged;
 * nodes already named by the reply may have been added to the table). */
int npsd_cluster_map_load(npsd_cluster_map_t *map,
                          const struct redisReply *reply,
                          const char *asked_host, char *errstr,
                          size_t errstr_size);

/* Slots no node serves (a cluster being set up or broken). */
unsigned npsd_cluster_map_unserved(const npsd_cluster_map_t *map);

/* The primaries of the map: the nodes that serve at least one slot, as
 * node indexes in increasing order. A node the table still names but that
 * serves nothing any more (its slots moved away, or it was only ever named
 * by a redirection since superseded) is left out. Writes at most max
 * indexes to nodes (which may be NULL when max is 0) and returns how many
 * primaries there are, which may be more than max. */
size_t npsd_cluster_map_primaries(const npsd_cluster_map_t *map, int *nodes,
                                  size_t max);

typedef enum {
        NPSD_CLUSTER_REDIRECT_NONE = 0,
        NPSD_CLUSTER_REDIRECT_MOVED, /* the slot lives there now */
        NPSD_CLUSTER_REDIRECT_ASK,   /* this one command, after ASKING */
} npsd_cluster_redirect_type_t;

typedef struct npsd_cluster_redirect_s {
        npsd_cluster_redirect_type_t type;
        unsigned slot;
        char host[NPSD_CLUSTER_HOST_MAX];
        int port;
} npsd_cluster_redirect_t;

/* 1 when an error reply's text says the server or the cluster cannot
 * serve the command right now (CLUSTERDOWN, TRYAGAIN, LOADING, READONLY,
 * MASTERDOWN, BUSY, NOREPLICAS): the command did not run and will once
 * the failover, reshard or load is over; else 0. */
int npsd_cluster_error_transient(const char *err, size_t len);

/* Parses an error reply's text ("MOVED 3999 127.0.0.1:6381", "ASK ...",
 * IPv6 hosts as "[::1]:6381" or "::1:6381"). Returns the redirect type, or
 * NPSD_CLUSTER_REDIRECT_NONE for any other error. */
npsd_cluster_redirect_type_t
npsd_cluster_redirect_parse(const char *err, size_t len,
                            npsd_cluster_redirect_t *redirect);

/* Applies a MOVED redirect to the map: the slot is served by its node from
 * now on. Returns 0, or -1 when out of memory. */
int npsd_cluster_map_moved(npsd_cluster_map_t *map,
                           const npsd_cluster_redirect_t *redirect);

/* ---- connections and the routed pipeline ---------------------------- */

typedef enum {
        NPSD_CLUSTER_MODE_AUTO = 0, /* ask the first node (INFO cluster) */
        NPSD_CLUSTER_MODE_ON,
        NPSD_CLUSTER_MODE_OFF,
} npsd_cluster_mode_t;

/* Where and how to connect. Strings are copied by npsd_cluster_new(). */
typedef struct npsd_cluster_conf_s {
        const char *host;     /* the first node */
        int port;
        const char *nodes;    /* more seeds, "host:port,host:port", or "" */
        const char *user;     /* ACL user, "" for none */
        const char *password; /* "" for none */
        int db;               /* standalone only: a cluster has db 0 */
        int timeout_ms;
        npsd_cluster_mode_t mode;
} npsd_cluster_conf_t;

typedef struct npsd_cluster_s npsd_cluster_t;

/* Creates a router; connects lazily (npsd_cluster_connect() or the first
 * exec). Returns NULL when out of memory or nodes does not parse, with
 * errstr. Destroy with npsd_cluster_destroy(). */
npsd_cluster_t *npsd_cluster_new(const npsd_cluster_conf_t *conf,
                                 char *errstr, size_t errstr_size);
void npsd_cluster_destroy(npsd_cluster_t *cluster);

/* Connects to the first reachable node, decides the mode (auto: from
 * "cluster_enabled" of INFO cluster) and, in cluster mode, loads the slot
 * map. Returns 0, or -1 with errstr. */
int npsd_cluster_connect(npsd_cluster_t *cluster, char *errstr,
                         size_t errstr_size);

/* 1 in cluster mode (as of the last connect), else 0. */
int npsd_cluster_enabled(const npsd_cluster_t *cluster);

/* The router's map (node table and slot owners), for inspection. */
const npsd_cluster_map_t *npsd_cluster_map(const npsd_cluster_t *cluster);

/* Counts since creation: redirections followed, map reloads, node
 * connections dropped after an error, connections opened (a caller whose
 * state lives on a connection, a WATCH, knows it is gone when this moved). */
typedef struct npsd_cluster_stats_s {
        uint64_t moved, ask, map_loads, node_errors, connects;
} npsd_cluster_stats_t;
void npsd_cluster_stats(const npsd_cluster_t *cluster,
                        npsd_cluster_stats_t *stats);

/* Starts a new pipeline, freeing the previous one's replies. */
void npsd_cluster_begin(npsd_cluster_t *cluster);

/* Appends a command for slot (ignored in standalone mode). argv and
 * argvlen are borrowed: they must stay valid until npsd_cluster_exec()
 * returns. Returns the command's index (its reply's), or -1 when out of
 * memory. */
long npsd_cluster_append(npsd_cluster_t *cluster, unsigned slot, int argc,
                         const char **argv, const size_t *argvlen);

/* Sends the pipeline: one batch of commands per node, every node written
 * before any is read, then follows MOVED (the map entry changes, and the
 * whole map is reloaded before the next pipeline) and ASK (ASKING, then
 * the command, on the named node) for at most 5 rounds. A transient
 * error reply (npsd_cluster_error_transient()) fails the exec; other error
 * replies are left for the caller to read. Returns 0, or
 * -1 with errstr when a node could not be reached or answered garbage:
 * then some commands may have run and others not (the caller retries the
 * whole pipeline; its writes must be safe to repeat), and the map is
 * reloaded on the next call. */
int npsd_cluster_exec(npsd_cluster_t *cluster, char *errstr,
                      size_t errstr_size);

/* The reply of command idx of the last exec (owned by the router, valid
 * until the next npsd_cluster_begin()), or NULL. */
const struct redisReply *npsd_cluster_reply(const npsd_cluster_t *cluster,
                                            long idx);

/* The map node that answered command idx of the last exec (after any
 * redirection), or -1 when it has no reply: a caller that must follow
 * its writes with a per-connection command (WAIT) checks where they ran. */
int npsd_cluster_reply_node(const npsd_cluster_t *cluster, long idx);

/* Takes the reply of command idx of the last exec out of the router, for a
 * caller that keeps replies across pipelines: the caller owns it (free it
 * with freeReplyObject()) and npsd_cluster_reply() returns NULL for idx
 * from then on. Returns NULL when there is no such reply. */
struct redisReply *npsd_cluster_reply_take(npsd_cluster_t *cluster,
                                           long idx);

/* Sends one command to map node `node` (an index into
 * npsd_cluster_map(cluster)->nodes, such as one of
 * npsd_cluster_map_primaries()) instead of the owner of a slot: for a
 * command about a node rather than a key, such as SCAN, which walks only
 * the keys of the node it runs on. Connects first when needed (as
 * npsd_cluster_connect(); node indexes stay valid across a map reload).
 * Follows no redirection and leaves the pipeline alone. argv and argvlen
 * (NULL: the arguments are C strings) are borrowed for the call. Returns
 * the reply, an error reply included, owned by the caller
 * (freeReplyObject()); or NULL with errstr naming the node when the node
 * cannot be reached or the index is out of range: the connection is then
 * dropped and the map reloaded on the next call. */
struct redisReply *npsd_cluster_node_command(npsd_cluster_t *cluster,
                                             int node, int argc,
                                             const char **argv,
                                             const size_t *argvlen,
                                             char *errstr,
                                             size_t errstr_size);

#endif
