/*
 * npsd_cluster_map — the pure half of Redis Cluster routing (see
 * include/npsd/npsd_cluster.h): key slots, the slot map and redirections.
 * No I/O here; replies come in as hiredis reply trees.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_cluster.h"

/* CRC16-CCITT in its XMODEM form (polynomial 0x1021, initial value 0, no
 * reflection), the checksum Redis Cluster assigns slots by. Bit by bit: a
 * key is hashed once per command, and keys are short. */
static uint16_t npsd_cluster_crc16(const unsigned char *p, size_t len) {
        uint16_t crc = 0;

        for (size_t i = 0; i < len; i++) {
                crc ^= (uint16_t)(p[i] << 8);
                for (int b = 0; b < 8; b++)
                        crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
                                             : (uint16_t)(crc << 1);
        }
        return crc;
}

unsigned npsd_cluster_keyslot(const char *key, size_t len) {
        const char *open = memchr(key, '{', len);

        if (open) {
                size_t rest = len - (size_t)(open - key) - 1;
                const char *close = memchr(open + 1, '}', rest);
                /* "{}" hashes the whole key, as Redis does */
                if (close && close > open + 1) {
                        key = open + 1;
                        len = (size_t)(close - open - 1);
                }
        }
        return npsd_cluster_crc16((const unsigned char *)key, len) &
               (NPSD_CLUSTER_SLOTS - 1);
}

/* Tags "f0", "f1", … "fz", "f10", … in base 36: the first tag found for each
 * slot wins, so the table is the same in every process and version. */
#define NPSD_CLUSTER_TAG_SIZE 8
static char (*npsd_cluster_tags)[NPSD_CLUSTER_TAG_SIZE];

static int npsd_cluster_tags_build(void) {
        static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
        char (*tags)[NPSD_CLUSTER_TAG_SIZE];
        unsigned left = NPSD_CLUSTER_SLOTS;

        if (!(tags = calloc(NPSD_CLUSTER_SLOTS, sizeof(*tags))))
                return -1;
        for (unsigned long n = 0; left > 0; n++) {
                char rev[NPSD_CLUSTER_TAG_SIZE], tag[NPSD_CLUSTER_TAG_SIZE];
                size_t len = 0, tlen = 0;
                unsigned long v = n;
                unsigned slot;

                do {
                        rev[len++] = digits[v % 36];
                        v /= 36;
                } while (v && len < NPSD_CLUSTER_TAG_SIZE - 2);
                tag[tlen++] = 'f';
                while (len)
                        tag[tlen++] = rev[--len];
                tag[tlen] = '\0';
                slot = npsd_cluster_keyslot(tag, tlen);
                if (!tags[slot][0]) {
                        memcpy(tags[slot], tag, tlen + 1);
                        left--;
                }
        }
        npsd_cluster_tags = tags;
        return 0;
}

const char *npsd_cluster_slot_tag(unsigned slot) {
        if (slot >= NPSD_CLUSTER_SLOTS)
                return NULL;
        if (!npsd_cluster_tags && npsd_cluster_tags_build() == -1)
                return NULL;
        return npsd_cluster_tags[slot];
}

void npsd_cluster_map_init(npsd_cluster_map_t *map) {
        memset(map, 0, sizeof(*map));
        memset(map->slot_node, 0xff, sizeof(map->slot_node));
}

void npsd_cluster_map_reset(npsd_cluster_map_t *map) {
        free(map->nodes);
        npsd_cluster_map_init(map);
}

int npsd_cluster_map_node(npsd_cluster_map_t *map, const char *host,
                          int port) {
        size_t hlen = strlen(host);

        if (hlen >= NPSD_CLUSTER_HOST_MAX)
                return -1;
        for (size_t i = 0; i < map->node_cnt; i++)
                if (map->nodes[i].port == port &&
                    !strcmp(map->nodes[i].host, host))
                        return (int)i;
        if (map->node_cnt == NPSD_CLUSTER_NO_NODE)
                return -1;
        if (map->node_cnt == map->node_size) {
                size_t nsize = map->node_size ? map->node_size * 2 : 4;
                npsd_cluster_node_t *nodes =
                        realloc(map->nodes, nsize * sizeof(*nodes));
                if (!nodes)
                        return -1;
                map->nodes = nodes;
                map->node_size = nsize;
        }
        memcpy(map->nodes[map->node_cnt].host, host, hlen + 1);
        map->nodes[map->node_cnt].port = port;
        return (int)map->node_cnt++;
}

/* One CLUSTER SLOTS entry's primary: [host, port, id, ...]. */
static int npsd_cluster_entry_primary(const redisReply *node,
                                      const char *asked_host,
                                      const char **host, int *port) {
        const redisReply *h, *p;

        if (node->type != REDIS_REPLY_ARRAY || node->elements < 2)
                return -1;
        h = node->element[0];
        p = node->element[1];
        if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_INTEGER ||
            p->integer <= 0 || p->integer > 65535)
                return -1;
        *host = (h->len == 0 || (h->len == 1 && h->str[0] == '?'))
                        ? asked_host
                        : h->str;
        *port = (int)p->integer;
        return 0;
}

/* Checked in full before the map changes, so that a malformed reply leaves
 * the previous (working) map in place. */
int npsd_cluster_map_load(npsd_cluster_map_t *map, const redisReply *reply,
                          const char *asked_host, char *errstr,
                          size_t errstr_size) {
        uint16_t slot_node[NPSD_CLUSTER_SLOTS];

        if (!reply || reply->type != REDIS_REPLY_ARRAY) {
                snprintf(errstr, errstr_size,
                         "CLUSTER SLOTS: expected an array reply");
                return -1;
        }
        memset(slot_node, 0xff, sizeof(slot_node));
        for (size_t i = 0; i < reply->elements; i++) {
                const redisReply *e = reply->element[i];
                const char *host;
                int port, node;
                long long lo, hi;

                if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
                    e->element[0]->type != REDIS_REPLY_INTEGER ||
                    e->element[1]->type != REDIS_REPLY_INTEGER)
                        goto malformed;
                lo = e->element[0]->integer;
                hi = e->element[1]->integer;
                if (lo < 0 || hi < lo || hi >= NPSD_CLUSTER_SLOTS)
                        goto malformed;
                if (npsd_cluster_entry_primary(e->element[2], asked_host,
                                               &host, &port) == -1)
                        goto malformed;
                if ((node = npsd_cluster_map_node(map, host, port)) == -1) {
                        snprintf(errstr, errstr_size,
                                 "CLUSTER SLOTS: cannot add node %s:%d",
                                 host, port);
                        return -1;
                }
                for (long long s = lo; s <= hi; s++)
                        slot_node[s] = (uint16_t)node;
                continue;
        malformed:
                snprintf(errstr, errstr_size,
                         "CLUSTER SLOTS: malformed entry %zu", i);
                return -1;
        }
        memcpy(map->slot_node, slot_node, sizeof(slot_node));
        return 0;
}

unsigned npsd_cluster_map_unserved(const npsd_cluster_map_t *map) {
        unsigned n = 0;

        for (unsigned s = 0; s < NPSD_CLUSTER_SLOTS; s++)
                n += map->slot_node[s] == NPSD_CLUSTER_NO_NODE;
        return n;
}

size_t npsd_cluster_map_primaries(const npsd_cluster_map_t *map, int *nodes,
                                  size_t max) {
        /* one bit per possible node index (there are fewer than
         * NPSD_CLUSTER_NO_NODE): one pass over the slots, then the nodes in
         * index order, with no allocation to fail */
        unsigned char serves[(NPSD_CLUSTER_NO_NODE + 7) / 8];
        size_t cnt = 0;

        memset(serves, 0, sizeof(serves));
        for (unsigned s = 0; s < NPSD_CLUSTER_SLOTS; s++) {
                unsigned n = map->slot_node[s];
                if (n < map->node_cnt)
                        serves[n / 8] |= (unsigned char)(1u << (n % 8));
        }
        for (size_t i = 0; i < map->node_cnt; i++) {
                if (!(serves[i / 8] & (1u << (i % 8))))
                        continue;
                if (cnt < max)
                        nodes[cnt] = (int)i;
                cnt++;
        }
        return cnt;
}

int npsd_cluster_error_transient(const char *err, size_t len) {
        static const char *const codes[] = {
                "CLUSTERDOWN", "TRYAGAIN", "LOADING", "READONLY",
                "MASTERDOWN",  "BUSY",     "NOREPLICAS"};

        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
                size_t n = strlen(codes[i]);
                if (len >= n && !memcmp(err, codes[i], n) &&
                    (len == n || err[n] == ' '))
                        return 1;
        }
        return 0;
}

npsd_cluster_redirect_type_t
npsd_cluster_redirect_parse(const char *err, size_t len,
                            npsd_cluster_redirect_t *redirect) {
        npsd_cluster_redirect_type_t type;
        const char *p, *end = err + len, *colon;
        unsigned long slot = 0;
        long port = 0;
        size_t hlen;

        memset(redirect, 0, sizeof(*redirect));
        if (len > 6 && !memcmp(err, "MOVED ", 6)) {
                type = NPSD_CLUSTER_REDIRECT_MOVED;
                p = err + 6;
        } else if (len > 4 && !memcmp(err, "ASK ", 4)) {
                type = NPSD_CLUSTER_REDIRECT_ASK;
                p = err + 4;
        } else {
                return NPSD_CLUSTER_REDIRECT_NONE;
        }
        if (p == end || *p < '0' || *p > '9')
                return NPSD_CLUSTER_REDIRECT_NONE;
        while (p < end && *p >= '0' && *p <= '9' && slot < NPSD_CLUSTER_SLOTS)
                slot = slot * 10 + (unsigned long)(*p++ - '0');
        if (slot >= NPSD_CLUSTER_SLOTS || p == end || *p != ' ')
                return NPSD_CLUSTER_REDIRECT_NONE;
        p++;
        /* host:port, the port after the last colon (IPv6 hosts have more) */
        for (colon = end; colon > p && colon[-1] != ':'; colon--)
                ;
        if (colon == p || colon == end)
                return NPSD_CLUSTER_REDIRECT_NONE;
        for (const char *q = colon; q < end; q++) {
                if (*q < '0' || *q > '9' || port > 65535)
                        return NPSD_CLUSTER_REDIRECT_NONE;
                port = port * 10 + (*q - '0');
        }
        if (port <= 0 || port > 65535)
                return NPSD_CLUSTER_REDIRECT_NONE;
        hlen = (size_t)(colon - 1 - p);
        if (hlen >= 2 && p[0] == '[' && p[hlen - 1] == ']') {
                p++;
                hlen -= 2;
        }
        if (hlen == 0 || hlen >= NPSD_CLUSTER_HOST_MAX)
                return NPSD_CLUSTER_REDIRECT_NONE;
        memcpy(redirect->host, p, hlen);
        redirect->host[hlen] = '\0';
        redirect->port = (int)port;
        redirect->slot = (unsigned)slot;
        redirect->type = type;
        return type;
}

int npsd_cluster_map_moved(npsd_cluster_map_t *map,
                           const npsd_cluster_redirect_t *redirect) {
        int node = npsd_cluster_map_node(map, redirect->host, redirect->port);

        if (node == -1)
                return -1;
        map->slot_node[redirect->slot] = (uint16_t)node;
        return 0;
}
