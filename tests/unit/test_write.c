/*
 * Unit tests of npsd_write, the builder of write.lua calls: the EVAL each
 * call becomes, keys declared once and kept in the guard's slot, the
 * per-command word bound, pointers that stay put while a batch grows,
 * memory reused across resets, and what each kind of reply means. Redis
 * runs the script in tests/integration/it_write_guard.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_cluster.h"
#include "npsd/npsd_write.h"

extern const char npsd_lua_write[];

/* ---- helpers ------------------------------------------------------- */

typedef struct want_s {
        const char *p;
        size_t len;
} want_t;

#define W(s) {s, sizeof(s) - 1}

/* The call's EVAL after the script equals want (numkeys onwards). */
static void assert_eval(npsd_write_t *w, size_t call, const want_t *want,
                        size_t cnt) {
        const char **argv;
        const size_t *argvlen;
        char err[256];
        int argc = npsd_write_argv(w, call, &argv, &argvlen, err, sizeof(err));

        assert_int_equal(argc, 2 + (int)cnt);
        assert_int_equal(argvlen[0], 4);
        assert_memory_equal(argv[0], "EVAL", 4);
        for (size_t i = 0; i < cnt; i++) {
                if (argvlen[2 + i] != want[i].len ||
                    memcmp(argv[2 + i], want[i].p, want[i].len))
                        fail_msg("word %zu: '%.*s', want '%.*s'", 2 + i,
                                 (int)argvlen[2 + i], argv[2 + i],
                                 (int)want[i].len, want[i].p);
        }
}

/* The hash slot of a NUL-terminated key. */
static unsigned slot_of(const char *key) {
        return npsd_cluster_keyslot(key, strlen(key));
}

/* ---- encoding ------------------------------------------------------ */

/* The script goes without comment lines, blank lines or indentation, and
 * nothing else of it is lost. */
static void test_script_stripped(void **state) {
        npsd_write_t *w = npsd_write_new();
        const char **argv;
        const size_t *argvlen;
        char err[256];
        size_t code_lines = 0, sent_lines = 0;
        const char *p;

        assert_non_null(w);
        assert_true(npsd_write_cas(w, "g", "v", "", "1", err, sizeof(err)) ==
                    0);
        assert_int_equal(npsd_write_argv(w, 0, &argv, &argvlen, err,
                                         sizeof(err)),
                         3 + 1 + 4);
        assert_int_equal(strlen(argv[1]), argvlen[1]);
        /* the comments are most of the file: what goes is much shorter */
        assert_true(argvlen[1] < strlen(npsd_lua_write) * 3 / 4);
        assert_non_null(strstr(argv[1], "redis.call(unpack(ARGV"));
        for (p = argv[1]; *p; p = strchr(p, '\n') + 1) {
                assert_true(strncmp(p, "--", 2) != 0);
                assert_true(*p != ' ' && *p != '\n');
                sent_lines++;
        }
        for (p = npsd_lua_write; *p; p = strchr(p, '\n') + 1) {
                const char *s = p + strspn(p, " \t");
                if (*s != '\n' && strncmp(s, "--", 2))
                        code_lines++;
        }
        assert_int_equal(sent_lines, code_lines);
        npsd_write_destroy(w);
}

static void test_cas_encoding(void **state) {
        npsd_write_t *w = npsd_write_new();
        char err[256];
        const char blob[] = {'s', 0, 1, '\n', 'x'};
        const char *st[] = {"HSET", "nps:{a}:st", "b", blob};
        const size_t stlen[] = {4, 10, 1, sizeof(blob)};
        const char *pub[] = {"PUBLISH", "nps:events", "a changed"};
        const char *del[] = {"DEL", "nps:{a}:x", "nps:{a}:y"};
        const char *hdel[] = {"HDEL", "nps:{a}:w:30d", "old"};
        const char *f[] = {"nps", "n"}, *v[] = {"12.5", "40"};
        const want_t want[] = {
                W("4"), /* numkeys: the guard, then each other key once */
                W("nps:{a}:st"), W("nps:{a}:w:30d"), W("nps:{a}:x"),
                W("nps:{a}:y"),
                W("cas"), W("v"), W("41"), W("42"),
                W("4"), W("HSET"), W("nps:{a}:st"), W("b"),
                {blob, sizeof(blob)},
                W("6"), W("HSET"), W("nps:{a}:w:30d"), W("nps"), W("12.5"),
                W("n"), W("40"),
                W("3"), W("PUBLISH"), W("nps:events"), W("a changed"),
                W("3"), W("DEL"), W("nps:{a}:x"), W("nps:{a}:y"),
                W("3"), W("HDEL"), W("nps:{a}:w:30d"), W("old"),
        };

        assert_int_equal(npsd_write_cas(w, "nps:{a}:st", "v", "41", "42", err,
                                        sizeof(err)),
                         0);
        assert_int_equal(npsd_write_cmd(w, 4, st, stlen, 1, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_hset(w, "nps:{a}:w:30d", 2, f, NULL, v,
                                         NULL, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_cmd(w, 3, pub, NULL, 0, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_cmd(w, 3, del, NULL, 2, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_cmd(w, 3, hdel, NULL, 1, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_calls(w), 1);
        assert_eval(w, 0, want, sizeof(want) / sizeof(*want));
        npsd_write_destroy(w);
}

/* An absent expected value is the empty word; a call may have no
 * command (a version bump); seq sends its number and an empty ARGV[4]. */
static void test_seq_and_empty(void **state) {
        npsd_write_t *w = npsd_write_new();
        char err[256];
        const char *incr[] = {"HINCRBY", "nps:{t}:cohort", "d", "3"};
        const want_t want0[] = {W("1"), W("nps:{a}:st"), W("cas"), W("v"),
                                W(""), W("1")};
        const want_t want1[] = {W("2"), W("nps:{t}:fence"), W("nps:{t}:cohort"),
                                W("seq"), W("acct-7"), W("9007199254740991"),
                                W(""), W("4"), W("HINCRBY"),
                                W("nps:{t}:cohort"), W("d"), W("3")};

        assert_int_equal(npsd_write_cas(w, "nps:{a}:st", "v", "", "1", err,
                                        sizeof(err)),
                         0);
        assert_int_equal(npsd_write_seq(w, "nps:{t}:fence", "acct-7",
                                        (UINT64_C(1) << 53) - 1, err,
                                        sizeof(err)),
                         1);
        assert_int_equal(npsd_write_cmd(w, 4, incr, NULL, 1, err, sizeof(err)),
                         0);
        assert_eval(w, 0, want0, sizeof(want0) / sizeof(*want0));
        assert_eval(w, 1, want1, sizeof(want1) / sizeof(*want1));
        /* beyond what a Lua number holds exactly, and 0, are refused */
        assert_int_equal(npsd_write_seq(w, "f", "a", UINT64_C(1) << 53, err,
                                        sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "2^53"));
        assert_int_equal(npsd_write_seq(w, "f", "a", 0, err, sizeof(err)),
                         -1);
        assert_int_equal(npsd_write_calls(w), 2);
        npsd_write_destroy(w);
}

/* Refusals leave the call as it was. */
static void test_refusals(void **state) {
        npsd_write_t *w = npsd_write_new();
        char err[256];
        const char *ok[] = {"SADD", "nps:{a}:s", "m"};
        const char *cross[] = {"SADD", "nps:{b}:s", "m"};
        const char *del[] = {"DEL", "nps:{a}:x", "nps:{b}:x"};
        const char *f[] = {"x"}, *v[] = {"y"};
        const want_t want[] = {W("2"), W("nps:{a}:st"), W("nps:{a}:s"),
                               W("cas"), W("v"), W("1"), W("2"),
                               W("3"), W("SADD"), W("nps:{a}:s"), W("m")};

        assert_true(slot_of("nps:{a}:st") != slot_of("nps:{b}:s"));
        /* no call yet */
        assert_int_equal(npsd_write_cmd(w, 3, ok, NULL, 1, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "no call"));
        assert_int_equal(npsd_write_cas(w, "nps:{a}:st", "v", "1", "2", err,
                                        sizeof(err)),
                         0);
        assert_int_equal(npsd_write_cmd(w, 3, ok, NULL, 1, err, sizeof(err)),
                         0);
        /* a key of another slot: refused by name, the call unchanged */
        assert_int_equal(npsd_write_cmd(w, 3, cross, NULL, 1, err,
                                        sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "nps:{b}:s"));
        assert_int_equal(npsd_write_cmd(w, 3, del, NULL, 2, err, sizeof(err)),
                         -1);
        assert_int_equal(npsd_write_hset(w, "nps:{b}:h", 1, f, NULL, v, NULL,
                                         err, sizeof(err)),
                         -1);
        /* key counts that do not fit the words */
        assert_int_equal(npsd_write_cmd(w, 3, ok, NULL, 3, err, sizeof(err)),
                         -1);
        assert_int_equal(npsd_write_cmd(w, 3, ok, NULL, -1, err, sizeof(err)),
                         -1);
        assert_int_equal(npsd_write_cmd(w, 0, ok, NULL, 0, err, sizeof(err)),
                         -1);
        assert_eval(w, 0, want, sizeof(want) / sizeof(*want));
        npsd_write_destroy(w);
}

/* One command holds NPSD_WRITE_CMD_WORDS_MAX words, not one more; hset
 * and hdel split theirs. */
static void test_word_bound(void **state) {
        npsd_write_t *w = npsd_write_new();
        char err[256];
        size_t n = 12000;
        const char **words = calloc(n, sizeof(*words));
        char *names = calloc(n, 8);
        const char **argv;
        const size_t *argvlen;
        int argc;
        size_t pairs = 0, fields = 0, cmds = 0;

        for (size_t i = 0; i < n; i++) {
                snprintf(names + 8 * i, 8, "w%zu", i);
                words[i] = names + 8 * i;
        }
        words[0] = "HSET";
        words[1] = "k";
        assert_int_equal(npsd_write_cas(w, "k", "v", "", "1", err,
                                        sizeof(err)),
                         0);
        assert_int_equal(npsd_write_cmd(w, NPSD_WRITE_CMD_WORDS_MAX, words,
                                        NULL, 1, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_cmd(w, NPSD_WRITE_CMD_WORDS_MAX + 1, words,
                                        NULL, 1, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "7000"));
        argc = npsd_write_argv(w, 0, &argv, &argvlen, err, sizeof(err));
        assert_int_equal(argc, 3 + 1 + 4 + 1 + NPSD_WRITE_CMD_WORDS_MAX);

        /* 10,000 pairs and 7,000 fields, on a second call */
        assert_int_equal(npsd_write_cas(w, "k", "v", "1", "2", err,
                                        sizeof(err)),
                         1);
        assert_int_equal(npsd_write_hset(w, "k", 10000, words + 2, NULL,
                                         words + 2, NULL, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_hdel(w, "k", 7000, words + 2, NULL, err,
                                         sizeof(err)),
                         0);
        argc = npsd_write_argv(w, 1, &argv, &argvlen, err, sizeof(err));
        for (int i = 3 + 1 + 4; i < argc;) {
                long cnt = strtol(argv[i], NULL, 10);

                assert_true(cnt >= 3 && cnt <= NPSD_WRITE_CMD_WORDS_MAX);
                assert_string_equal(argv[i + 2], "k");
                if (!strcmp(argv[i + 1], "HSET")) {
                        assert_int_equal((cnt - 2) % 2, 0);
                        /* the pairs keep their order across commands */
                        assert_string_equal(argv[i + 3], words[2 + pairs]);
                        pairs += (size_t)(cnt - 2) / 2;
                } else {
                        assert_string_equal(argv[i + 1], "HDEL");
                        fields += (size_t)(cnt - 2);
                }
                cmds++;
                i += 1 + (int)cnt;
        }
        assert_int_equal(pairs, 10000);
        assert_int_equal(fields, 7000);
        assert_int_equal(cmds, 3 + 2); /* 3,499 + 3,499 + 3,002; 6,998 + 2 */
        free(words);
        free(names);
        npsd_write_destroy(w);
}

/* Every argv handed out keeps its address and bytes while the batch grows
 * by thousands of calls and words bigger than a block, as the pipeline
 * borrows them until its exec. */
static void test_pointers_stay(void **state) {
        enum { CALLS = 3000 };
        npsd_write_t *w = npsd_write_new();
        char err[256], key[64], val[32];
        static const char **saved_argv[CALLS];
        static size_t saved_argc[CALLS];
        static char *saved[CALLS];
        char *big = malloc(200000);

        memset(big, 'b', 200000);
        for (int c = 0; c < CALLS; c++) {
                const char **argv;
                const size_t *argvlen;
                const char *set[] = {"SET", key, big};
                size_t setlen[] = {3, 0, (size_t)(c % 100 == 0 ? 200000 : c)};
                size_t total = 0;
                char *p;
                int argc;

                snprintf(key, sizeof(key), "nps:{acct-%d}:st", c);
                snprintf(val, sizeof(val), "%d", c);
                setlen[1] = strlen(key);
                assert_int_equal(npsd_write_cas(w, key, "v", val, "x", err,
                                                sizeof(err)),
                                 c);
                assert_int_equal(npsd_write_cmd(w, 3, set, setlen, 1, err,
                                                sizeof(err)),
                                 0);
                argc = npsd_write_argv(w, (size_t)c, &argv, &argvlen, err,
                                       sizeof(err));
                assert_true(argc > 0);
                /* a copy of every word, to compare at the end */
                for (int i = 0; i < argc; i++)
                        total += argvlen[i] + 1;
                p = saved[c] = malloc(total);
                for (int i = 0; i < argc; i++) {
                        memcpy(p, argv[i], argvlen[i]);
                        p[argvlen[i]] = '\0';
                        p += argvlen[i] + 1;
                }
                saved_argv[c] = argv;
                saved_argc[c] = (size_t)argc;
        }
        for (int c = 0; c < CALLS; c++) {
                const char **argv;
                const size_t *argvlen;
                const char *p = saved[c];

                assert_int_equal(npsd_write_argv(w, (size_t)c, &argv, &argvlen,
                                                 err, sizeof(err)),
                                 (int)saved_argc[c]);
                assert_ptr_equal(argv, saved_argv[c]);
                for (size_t i = 0; i < saved_argc[c]; i++) {
                        assert_memory_equal(argv[i], p, argvlen[i]);
                        p += argvlen[i] + 1;
                }
                free(saved[c]);
        }
        free(big);
        npsd_write_destroy(w);
}

/* The same batch after a reset takes no new memory. */
static void test_reset_reuses(void **state) {
        npsd_write_t *w = npsd_write_new();
        char err[256], key[64];
        char *big = calloc(1, 100000);
        size_t mem = 0;

        memset(big, 'x', 99999);
        for (int round = 0; round < 5; round++) {
                npsd_write_reset(w);
                assert_int_equal(npsd_write_calls(w), 0);
                for (int c = 0; c < 500; c++) {
                        const char **argv;
                        const size_t *argvlen;
                        const char *set[] = {"SET", key,
                                             c % 50 == 7 ? big : "small"};

                        snprintf(key, sizeof(key), "nps:{acct-%d}:st", c);
                        assert_true(npsd_write_cas(w, key, "v", "1", "2", err,
                                                   sizeof(err)) == c);
                        assert_int_equal(npsd_write_cmd(w, 3, set, NULL, 1,
                                                        err, sizeof(err)),
                                         0);
                        assert_true(npsd_write_argv(w, (size_t)c, &argv,
                                                    &argvlen, err,
                                                    sizeof(err)) > 0);
                }
                /* the first reset merges the first round's blocks */
                if (round == 1)
                        mem = npsd_write_memory(w);
                if (round >= 1)
                        assert_int_equal(npsd_write_memory(w), mem);
        }
        assert_true(mem >= 10 * 100000);
        free(big);
        npsd_write_destroy(w);
}

/* Rounds of varying shapes (a large argv now early, now late) keep the
 * writer's memory near the largest round's, not the sum of every shape. */
static void test_reset_varying_shapes(void **state) {
        npsd_write_t *w = npsd_write_new();
        char err[256], key[64];
        char *big = calloc(1, 200000);
        size_t mem, most = 0;

        (void)state;
        memset(big, 'x', 199999);
        for (int round = 0; round < 60; round++) {
                npsd_write_reset(w);
                for (int c = 0; c < 300; c++) {
                        const char **argv;
                        const size_t *argvlen;
                        /* one large value, at a place and of a size that
                         * change every round */
                        int at = (round * 37) % 300;
                        size_t blen = 70000 + (size_t)(round % 7) * 18000;
                        char saved = big[blen];
                        const char *set[] = {"SET", key,
                                             c == at ? big : "small"};

                        big[blen] = '\0';
                        snprintf(key, sizeof(key), "nps:{acct-%d}:st", c);
                        assert_true(npsd_write_cas(w, key, "v", "1", "2", err,
                                                   sizeof(err)) == c);
                        assert_int_equal(npsd_write_cmd(w, 3, set, NULL, 1,
                                                        err, sizeof(err)),
                                         0);
                        assert_true(npsd_write_argv(w, (size_t)c, &argv,
                                                    &argvlen, err,
                                                    sizeof(err)) > 0);
                        big[blen] = saved;
                }
                mem = npsd_write_memory(w);
                if (mem > most)
                        most = mem;
        }
        /* one round is about 200 KiB of words and argv; every shape kept
         * apart would be megabytes */
        assert_true(most < 1024 * 1024);
        free(big);
        npsd_write_destroy(w);
}

/* Appending records each call's reply index in the pipeline; a call in a
 * pipeline takes no more commands; a retry appends every call again to
 * the new pipeline, with new indexes. */
static void test_append_indexes(void **state) {
        npsd_cluster_conf_t conf = {.host = "127.0.0.1",
                                    .port = 1,
                                    .nodes = "",
                                    .mode = NPSD_CLUSTER_MODE_OFF};
        char cerr[256];
        npsd_cluster_t *cl = npsd_cluster_new(&conf, cerr, sizeof(cerr));
        npsd_write_t *w = npsd_write_new();
        const char *plain[] = {"GET", "x"}, *set[] = {"SET", "g", "1"};
        size_t plainlen[] = {3, 1};
        char err[256];

        assert_non_null(cl);
        npsd_cluster_begin(cl);
        assert_int_equal(npsd_cluster_append(cl, 0, 2, plain, plainlen), 0);
        npsd_write_cas(w, "g", "v", "", "1", err, sizeof(err));
        npsd_write_seq(w, "g", "a", 1, err, sizeof(err));
        assert_int_equal(npsd_write_reply_index(w, 0), -1);
        assert_int_equal(npsd_write_append(w, cl, err, sizeof(err)), 0);
        assert_int_equal(npsd_write_reply_index(w, 0), 1);
        assert_int_equal(npsd_write_reply_index(w, 1), 2);
        assert_int_equal(npsd_write_cmd(w, 3, set, NULL, 1, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "pipeline"));
        assert_int_equal(npsd_write_cas(w, "g", "v", "1", "2", err,
                                        sizeof(err)),
                         2);
        assert_int_equal(npsd_write_cmd(w, 3, set, NULL, 1, err, sizeof(err)),
                         0);
        assert_int_equal(npsd_write_reply_index(w, 2), -1);
        /* the retry: a new pipeline, the same calls and the new one */
        npsd_cluster_begin(cl);
        assert_int_equal(npsd_write_append(w, cl, err, sizeof(err)), 0);
        assert_int_equal(npsd_write_reply_index(w, 0), 0);
        assert_int_equal(npsd_write_reply_index(w, 1), 1);
        assert_int_equal(npsd_write_reply_index(w, 2), 2);
        assert_int_equal(npsd_write_reply_index(w, 3), -1);
        assert_int_equal(npsd_write_cmd(w, 3, set, NULL, 1, err, sizeof(err)),
                         -1);
        npsd_write_destroy(w);
        npsd_cluster_destroy(cl);
}

/* ---- replies ------------------------------------------------------- */

static redisReply *r_int(long long v) {
        redisReply *r = calloc(1, sizeof(*r));

        r->type = REDIS_REPLY_INTEGER;
        r->integer = v;
        return r;
}

static redisReply *r_str(int type, const char *s) {
        redisReply *r = calloc(1, sizeof(*r));

        r->type = type;
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

static npsd_write_status_t result(redisReply *r, npsd_write_cur_t *cur,
                                  char *err, size_t size) {
        npsd_write_status_t s = npsd_write_result(r, cur, err, size);

        freeReplyObject(r);
        return s;
}

static void test_results(void **state) {
        npsd_write_cur_t cur;
        char err[256];
        redisReply *r;

        assert_int_equal(result(r_arr(1, r_int(1)), &cur, err, sizeof(err)),
                         NPSD_WRITE_APPLIED);
        assert_null(cur.str);
        r = r_arr(2, r_int(0), r_str(REDIS_REPLY_STRING, "41"));
        assert_int_equal(npsd_write_result(r, &cur, err, sizeof(err)),
                         NPSD_WRITE_CONFLICT);
        assert_int_equal(cur.len, 2);
        assert_memory_equal(cur.str, "41", 2);
        freeReplyObject(r);
        r = r_arr(2, r_int(0), r_str(REDIS_REPLY_STRING, ""));
        assert_int_equal(npsd_write_result(r, &cur, err, sizeof(err)),
                         NPSD_WRITE_CONFLICT);
        assert_int_equal(cur.len, 0);
        freeReplyObject(r);
        assert_int_equal(result(r_arr(2, r_int(2), r_int(5)), &cur, err,
                                sizeof(err)),
                         NPSD_WRITE_ALREADY);
        assert_int_equal(cur.seq, 5);
        assert_int_equal(result(r_arr(2, r_int(0), r_int(2)), &cur, err,
                                sizeof(err)),
                         NPSD_WRITE_GAP);
        assert_int_equal(cur.seq, 2);
        assert_int_equal(result(r_str(REDIS_REPLY_ERROR,
                                      "ERR write.lua: command not allowed: GET"),
                                &cur, err, sizeof(err)),
                         NPSD_WRITE_ERROR);
        assert_string_equal(err, "ERR write.lua: command not allowed: GET");
        assert_int_equal(npsd_write_result(NULL, &cur, err, sizeof(err)),
                         NPSD_WRITE_ERROR);
        /* not write.lua's shapes */
        assert_int_equal(result(r_int(1), NULL, err, sizeof(err)),
                         NPSD_WRITE_ERROR);
        assert_int_equal(result(r_arr(1, r_int(0)), NULL, err, sizeof(err)),
                         NPSD_WRITE_ERROR);
        assert_int_equal(result(r_arr(2, r_int(2),
                                      r_str(REDIS_REPLY_STRING, "5")),
                                NULL, err, sizeof(err)),
                         NPSD_WRITE_ERROR);
        assert_int_equal(result(r_arr(3, r_int(0), r_int(1), r_int(1)), NULL,
                                err, sizeof(err)),
                         NPSD_WRITE_ERROR);
        assert_int_equal(result(r_arr(0), NULL, err, sizeof(err)),
                         NPSD_WRITE_ERROR);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_script_stripped),
                cmocka_unit_test(test_cas_encoding),
                cmocka_unit_test(test_seq_and_empty),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_word_bound),
                cmocka_unit_test(test_pointers_stay),
                cmocka_unit_test(test_reset_reuses),
                cmocka_unit_test(test_reset_varying_shapes),
                cmocka_unit_test(test_append_indexes),
                cmocka_unit_test(test_results),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
