/*
 * Unit tests of npsd_cluster's pure half: key slots, the slot-tag table,
 * the slot map from canned CLUSTER SLOTS replies, MOVED and ASK, and the
 * primaries a map names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_cluster.h"

/* ---- canned hiredis replies (built by hand, freed with freeReplyObject) */

static redisReply *r_int(long long v) {
        redisReply *r = calloc(1, sizeof(*r));

        r->type = REDIS_REPLY_INTEGER;
        r->integer = v;
        return r;
}

static redisReply *r_str(const char *s) {
        redisReply *r = calloc(1, sizeof(*r));

        r->type = REDIS_REPLY_STRING;
        r->len = strlen(s);
        r->str = strdup(s);
        return r;
}

static redisReply *r_arr(size_t n, ...) {
        redisReply *r = calloc(1, sizeof(*r));
        va_list ap;

        r->type = REDIS_REPLY_ARRAY;
        r->elements = n;
        r->element = calloc(n ? n : 1, sizeof(*r->element));
        va_start(ap, n);
        for (size_t i = 0; i < n; i++)
                r->element[i] = va_arg(ap, redisReply *);
        va_end(ap);
        return r;
}

/* One CLUSTER SLOTS entry: [lo, hi, [host, port, id], [replica...]]. */
static redisReply *r_range(long long lo, long long hi, const char *host,
                           long long port) {
        return r_arr(4, r_int(lo), r_int(hi),
                     r_arr(3, r_str(host), r_int(port), r_str("id-primary")),
                     r_arr(3, r_str("10.9.9.9"), r_int(7999),
                           r_str("id-replica")));
}

static unsigned slot_of(const char *key) {
        return npsd_cluster_keyslot(key, strlen(key));
}

/* Expected values from a real redis-server 7 (CLUSTER KEYSLOT). */
static void test_keyslot_matches_redis(void **state) {
        assert_int_equal(slot_of("foo"), 12182);
        assert_int_equal(slot_of("bar"), 5061);
        assert_int_equal(slot_of("hello"), 866);
        assert_int_equal(slot_of("123456789"), 12739); /* CRC 0x31C3 */
        assert_int_equal(slot_of(""), 0);
        assert_int_equal(slot_of("nps:{acct-0001}:st"), 7435);
}

static void test_keyslot_hash_tags(void **state) {
        /* the tag alone decides */
        assert_int_equal(slot_of("{user1000}.following"), 3443);
        assert_int_equal(slot_of("user1000"), 3443);
        assert_int_equal(slot_of("nps:{acct-7}:w:30d"),
                         slot_of("nps:{acct-7}:summary"));
        /* the first '{' and the next '}' */
        assert_int_equal(slot_of("foo{bar}{zap}"), 5061);
        assert_int_equal(slot_of("foo{{bar}}zap"), 4015);
        /* an empty tag or no closing brace hashes the whole key */
        assert_int_equal(slot_of("foo{}{bar}"), 8363);
        assert_int_equal(slot_of("a{b"), 13340);
        /* length, not NUL, ends the key */
        assert_int_equal(npsd_cluster_keyslot("foo\0bar", 3), 12182);
}

static void test_slot_tags_cover_every_slot(void **state) {
        char key[64];

        for (unsigned s = 0; s < NPSD_CLUSTER_SLOTS; s++) {
                const char *tag = npsd_cluster_slot_tag(s);
                assert_non_null(tag);
                assert_true(strlen(tag) >= 2 && strlen(tag) <= 6);
                /* a key built around the tag lands in the slot */
                snprintf(key, sizeof(key), "nps:{%s}:fence", tag);
                assert_int_equal(slot_of(key), s);
        }
        assert_null(npsd_cluster_slot_tag(NPSD_CLUSTER_SLOTS));
        /* stable: the first tag in base-36 order */
        assert_string_equal(npsd_cluster_slot_tag(slot_of("f0")), "f0");
}

static void test_map_load(void **state) {
        npsd_cluster_map_t map;
        char err[128];
        redisReply *slots = r_arr(3, r_range(0, 5460, "127.0.0.1", 7001),
                                  r_range(5461, 10922, "", 7002),
                                  r_range(10923, 16383, "127.0.0.1", 7003));

        npsd_cluster_map_init(&map);
        assert_int_equal(npsd_cluster_map_unserved(&map), 16384);
        assert_int_equal(npsd_cluster_map_load(&map, slots, "10.0.0.2", err,
                                               sizeof(err)),
                         0);
        assert_int_equal(npsd_cluster_map_unserved(&map), 0);
        assert_int_equal(map.node_cnt, 3); /* replicas are not routed to */
        assert_int_equal(map.slot_node[0], 0);
        assert_int_equal(map.slot_node[5460], 0);
        assert_int_equal(map.slot_node[5461], 1);
        assert_int_equal(map.slot_node[16383], 2);
        /* an empty host is the node that was asked */
        assert_string_equal(map.nodes[1].host, "10.0.0.2");
        assert_int_equal(map.nodes[1].port, 7002);
        assert_string_equal(map.nodes[2].host, "127.0.0.1");

        /* a reload keeps node indexes and moves the ranges */
        freeReplyObject(slots);
        slots = r_arr(2, r_range(0, 100, "127.0.0.1", 7003),
                      r_range(101, 16383, "127.0.0.1", 7001));
        assert_int_equal(npsd_cluster_map_load(&map, slots, "x", err,
                                               sizeof(err)),
                         0);
        assert_int_equal(map.node_cnt, 3);
        assert_int_equal(map.slot_node[50], 2);
        assert_int_equal(map.slot_node[12000], 0);
        freeReplyObject(slots);
        npsd_cluster_map_reset(&map);
        assert_int_equal(map.node_cnt, 0);
}

static void test_map_partial_and_malformed(void **state) {
        npsd_cluster_map_t map;
        char err[128];
        redisReply *good = r_arr(1, r_range(0, 99, "h", 1)), *bad;

        npsd_cluster_map_init(&map);
        assert_int_equal(npsd_cluster_map_load(&map, good, "h", err,
                                               sizeof(err)),
                         0);
        assert_int_equal(npsd_cluster_map_unserved(&map), 16384 - 100);

        /* a slot past the end: refused, the old assignment stays */
        bad = r_arr(2, r_range(200, 300, "h", 2), r_range(16000, 16384, "h", 3));
        assert_int_equal(npsd_cluster_map_load(&map, bad, "h", err,
                                               sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "malformed entry 1"));
        assert_int_equal(map.slot_node[50], 0);
        assert_int_equal(map.slot_node[250], NPSD_CLUSTER_NO_NODE);
        freeReplyObject(bad);

        /* not an array, a port out of range, a range backwards */
        bad = r_str("ERR This instance has cluster support disabled");
        assert_int_equal(npsd_cluster_map_load(&map, bad, "h", err,
                                               sizeof(err)),
                         -1);
        freeReplyObject(bad);
        bad = r_arr(1, r_range(0, 10, "h", 70000));
        assert_int_equal(npsd_cluster_map_load(&map, bad, "h", err,
                                               sizeof(err)),
                         -1);
        freeReplyObject(bad);
        bad = r_arr(1, r_range(10, 0, "h", 1));
        assert_int_equal(npsd_cluster_map_load(&map, bad, "h", err,
                                               sizeof(err)),
                         -1);
        freeReplyObject(bad);
        assert_int_equal(npsd_cluster_map_unserved(&map), 16384 - 100);
        freeReplyObject(good);
        npsd_cluster_map_reset(&map);
}

static void test_redirects(void **state) {
        static const struct {
                const char *text;
                npsd_cluster_redirect_type_t type;
                unsigned slot;
                const char *host;
                int port;
        } cases[] = {
                {"MOVED 3999 127.0.0.1:6381", NPSD_CLUSTER_REDIRECT_MOVED,
                 3999, "127.0.0.1", 6381},
                {"ASK 16383 redis-2.example:7000", NPSD_CLUSTER_REDIRECT_ASK,
                 16383, "redis-2.example", 7000},
                {"MOVED 7 [::1]:7001", NPSD_CLUSTER_REDIRECT_MOVED, 7, "::1",
                 7001},
                {"MOVED 0 fe80::1:7001", NPSD_CLUSTER_REDIRECT_MOVED, 0,
                 "fe80::1", 7001},
        };
        npsd_cluster_redirect_t r;

        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
                const char *m = cases[i].text;
                assert_int_equal(npsd_cluster_redirect_parse(m, strlen(m), &r),
                                 cases[i].type);
                assert_int_equal(r.slot, cases[i].slot);
                assert_string_equal(r.host, cases[i].host);
                assert_int_equal(r.port, cases[i].port);
        }

        /* anything else is an ordinary error */
        static const char *const other[] = {
                "ERR unknown command",  "MOVED",
                "MOVED 16384 h:1",      "MOVED 12 h",
                "MOVED 12 h:",          "MOVED 12 :80",
                "MOVED x h:1",          "ASK 1 h:99999",
                "TRYAGAIN Multiple keys request during rehashing of slot",
                "CLUSTERDOWN The cluster is down",
                "MOVED 123456789012345678901 h:1"};
        for (size_t i = 0; i < sizeof(other) / sizeof(*other); i++)
                assert_int_equal(npsd_cluster_redirect_parse(
                                         other[i], strlen(other[i]), &r),
                                 NPSD_CLUSTER_REDIRECT_NONE);
}

/* What a failover, a reshard or a restart answers for a while: the
 * command did not run. Anything else is the command's own answer. */
static void test_transient_errors(void **state) {
        static const char *const transient[] = {
                "CLUSTERDOWN The cluster is down",
                "CLUSTERDOWN Hash slot not served",
                "TRYAGAIN Multiple keys request during rehashing of slot",
                "LOADING Redis is loading the dataset in memory",
                "READONLY You can't write against a read only replica.",
                "MASTERDOWN Link with MASTER is down",
                "BUSY Redis is busy running a script.",
                "NOREPLICAS Not enough good replicas to write.", "BUSY"};
        static const char *const other[] = {
                "ERR unknown command", "NOSCRIPT No matching script.",
                "WRONGTYPE Operation against a key", "BUSYKEY Target key",
                "MOVED 3999 127.0.0.1:6381", "ERR write.lua: bad mode",
                "LOADINGX", ""};

        (void)state;
        for (size_t i = 0; i < sizeof(transient) / sizeof(*transient); i++)
                assert_int_equal(npsd_cluster_error_transient(
                                         transient[i], strlen(transient[i])),
                                 1);
        for (size_t i = 0; i < sizeof(other) / sizeof(*other); i++)
                assert_int_equal(npsd_cluster_error_transient(
                                         other[i], strlen(other[i])),
                                 0);
}

static void test_moved_updates_map(void **state) {
        npsd_cluster_map_t map;
        npsd_cluster_redirect_t r;
        char err[64];
        const char *m = "MOVED 42 127.0.0.1:7009";
        redisReply *slots = r_arr(1, r_range(0, 16383, "127.0.0.1", 7001));

        npsd_cluster_map_init(&map);
        assert_int_equal(npsd_cluster_map_load(&map, slots, "x", err,
                                               sizeof(err)),
                         0);
        npsd_cluster_redirect_parse(m, strlen(m), &r);
        assert_int_equal(npsd_cluster_map_moved(&map, &r), 0);
        assert_int_equal(map.node_cnt, 2);
        assert_int_equal(map.slot_node[42], 1);
        assert_int_equal(map.slot_node[41], 0);
        assert_int_equal(map.slot_node[43], 0);
        /* the same node again is not added twice */
        assert_int_equal(npsd_cluster_map_node(&map, "127.0.0.1", 7009), 1);
        freeReplyObject(slots);
        npsd_cluster_map_reset(&map);
}

/* The primaries are the nodes that serve a slot now: a node added by a
 * redirection counts while it serves its slot, and a node whose slots all
 * went elsewhere stops counting, though its index stays. */
static void test_map_primaries(void **state) {
        npsd_cluster_map_t map;
        npsd_cluster_redirect_t r;
        char err[64];
        int nodes[8];
        const char *m = "MOVED 42 127.0.0.1:7009";
        redisReply *slots = r_arr(3, r_range(0, 5460, "127.0.0.1", 7001),
                                  r_range(5461, 10922, "127.0.0.1", 7002),
                                  r_range(10923, 16383, "127.0.0.1", 7003));

        npsd_cluster_map_init(&map);
        assert_int_equal(npsd_cluster_map_primaries(&map, nodes, 8), 0);
        assert_int_equal(npsd_cluster_map_primaries(&map, NULL, 0), 0);
        assert_int_equal(npsd_cluster_map_load(&map, slots, "x", err,
                                               sizeof(err)),
                         0);
        assert_int_equal(npsd_cluster_map_primaries(&map, nodes, 8), 3);
        assert_int_equal(nodes[0], 0);
        assert_int_equal(nodes[1], 1);
        assert_int_equal(nodes[2], 2);
        /* a count even when the array is too short (or absent) */
        memset(nodes, 0xff, sizeof(nodes));
        assert_int_equal(npsd_cluster_map_primaries(&map, nodes, 2), 3);
        assert_int_equal(nodes[1], 1);
        assert_int_equal(nodes[2], -1); /* not written */
        assert_int_equal(npsd_cluster_map_primaries(&map, NULL, 0), 3);

        /* one slot moved to a new node: four primaries */
        npsd_cluster_redirect_parse(m, strlen(m), &r);
        assert_int_equal(npsd_cluster_map_moved(&map, &r), 0);
        assert_int_equal(npsd_cluster_map_primaries(&map, nodes, 8), 4);
        assert_int_equal(nodes[3], 3);

        /* a reload where 7002 serves nothing: indexes 0, 2, 3 remain */
        freeReplyObject(slots);
        slots = r_arr(3, r_range(0, 99, "127.0.0.1", 7009),
                      r_range(100, 9999, "127.0.0.1", 7001),
                      r_range(10000, 16383, "127.0.0.1", 7003));
        assert_int_equal(npsd_cluster_map_load(&map, slots, "x", err,
                                               sizeof(err)),
                         0);
        assert_int_equal(map.node_cnt, 4);
        assert_int_equal(npsd_cluster_map_primaries(&map, nodes, 8), 3);
        assert_int_equal(nodes[0], 0);
        assert_int_equal(nodes[1], 2);
        assert_int_equal(nodes[2], 3);

        /* standalone: one node serving every slot */
        npsd_cluster_map_reset(&map);
        assert_int_equal(npsd_cluster_map_node(&map, "127.0.0.1", 6379), 0);
        memset(map.slot_node, 0, sizeof(map.slot_node));
        assert_int_equal(npsd_cluster_map_primaries(&map, nodes, 8), 1);
        assert_int_equal(nodes[0], 0);
        freeReplyObject(slots);
        npsd_cluster_map_reset(&map);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keyslot_matches_redis),
                cmocka_unit_test(test_keyslot_hash_tags),
                cmocka_unit_test(test_slot_tags_cover_every_slot),
                cmocka_unit_test(test_map_load),
                cmocka_unit_test(test_map_partial_and_malformed),
                cmocka_unit_test(test_redirects),
                cmocka_unit_test(test_transient_errors),
                cmocka_unit_test(test_moved_updates_map),
                cmocka_unit_test(test_map_primaries),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
