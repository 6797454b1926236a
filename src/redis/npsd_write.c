/*
 * npsd_write — a batch of guarded calls of src/lua/write.lua (see
 * include/npsd/npsd_write.h).
 *
 * Words live in a chain of blocks that are never moved nor freed before
 * the writer is destroyed: npsd_cluster_append() keeps pointers into them
 * until its exec. A reset rewinds the blocks, so a steady stream of
 * batches allocates nothing new. The tables of word references (keys,
 * words, calls) may move as they grow; only the EVAL argv built from them,
 * itself in the blocks, is handed out.
 */
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_fmt.h"
#include "npsd/npsd_write.h"

extern const char npsd_lua_write[]; /* generated from src/lua/write.lua */

#define NPSD_WRITE_BLOCK_SIZE (64 * 1024)
/* Lua numbers are doubles: sequences beyond 2^53 - 1 would round. */
#define NPSD_WRITE_SEQ_MAX ((UINT64_C(1) << 53) - 1)
/* HSET key + pairs / HDEL key + fields in one command. */
#define NPSD_WRITE_HSET_PAIRS ((NPSD_WRITE_CMD_WORDS_MAX - 2) / 2)
#define NPSD_WRITE_HDEL_FIELDS (NPSD_WRITE_CMD_WORDS_MAX - 2)

typedef struct npsd_write_word_s {
        const char *p; /* in a block, NUL-terminated */
        size_t len;
} npsd_write_word_t;

typedef struct npsd_write_block_s {
        struct npsd_write_block_s *next;
        size_t size, used;
        max_align_t data[];
} npsd_write_block_t;

/* KEYS[1], then ARGV[1..4] */
enum { NPSD_WRITE_GUARD, NPSD_WRITE_MODE, NPSD_WRITE_FIELD, NPSD_WRITE_A3,
       NPSD_WRITE_A4, NPSD_WRITE_HEAD };

typedef struct npsd_write_call_s {
        npsd_write_word_t head[NPSD_WRITE_HEAD];
        unsigned slot;             /* of the guard key */
        size_t key_first, key_end; /* other keys, in w->keys */
        size_t word_first, word_end; /* counts and words, in w->words */
        const char **argv;         /* the EVAL, once built */
        size_t *argvlen;
        int argc;
        long reply; /* its pipeline index, -1 before npsd_write_append();
                     * in a transaction, the EXEC's */
        int tx;     /* went in the transaction (npsd_write_use_multi()) */
        int checked; /* groups checked by the caller under a WATCH
                      * (npsd_write_groups_checked()) */
        size_t tx_first, tx_cnt; /* its commands' replies in the EXEC's */
} npsd_write_call_t;

struct npsd_write_s {
        npsd_write_block_t *blocks, *cur;
        size_t mem;  /* bytes of all blocks */
        size_t high; /* the most a round has used */

        npsd_write_call_t *calls;
        size_t call_cnt, call_size;
        npsd_write_word_t *keys;
        size_t key_cnt, key_size;
        npsd_write_word_t *words;
        size_t word_cnt, word_size;
        size_t appended; /* calls [0, appended) were in a pipeline */
        int multi; /* cas and checked calls as one MULTI/EXEC
                    * (npsd_write_use_multi()) */

        char *script; /* write.lua without its comment lines */
        size_t script_len;
        char sha[41]; /* its SHA1 as Redis reported it: EVALSHA; "" EVAL */
};

/* size bytes that stay where they are until the next reset. A request that
 * does not fit the current (last) block gets a new block after it; nothing
 * moves or is freed before npsd_write_reset(), which leaves one block. */
static void *npsd_write_alloc(npsd_write_t *w, size_t size) {
        const size_t align = alignof(max_align_t);
        npsd_write_block_t *b = w->cur;
        void *p;

        size = (size + align - 1) & ~(align - 1);
        if (!b || b->size - b->used < size) {
                size_t bsize = size > NPSD_WRITE_BLOCK_SIZE
                                       ? size
                                       : NPSD_WRITE_BLOCK_SIZE;
                npsd_write_block_t *nb = malloc(sizeof(*nb) + bsize);
                if (!nb)
                        return NULL;
                nb->size = bsize;
                nb->used = 0;
                nb->next = NULL;
                if (b)
                        b->next = nb;
                else
                        w->blocks = nb;
                w->mem += bsize;
                w->cur = b = nb;
        }
        p = (char *)b->data + b->used;
        b->used += size;
        return p;
}

/* Grows a table of elem-sized entries to hold need; it may move. */
static int npsd_write_grow(void **arr, size_t *size, size_t need,
                           size_t elem) {
        size_t nsize = *size ? *size : 64;
        void *n;

        if (need <= *size)
                return 0;
        while (nsize < need)
                nsize *= 2;
        if (!(n = realloc(*arr, nsize * elem)))
                return -1;
        *arr = n;
        *size = nsize;
        return 0;
}

/* A NUL-terminated copy of p[0..len) in the blocks. */
static int npsd_write_copy(npsd_write_t *w, const char *p, size_t len,
                           npsd_write_word_t *out) {
        char *c = npsd_write_alloc(w, len + 1);

        if (!c)
                return -1;
        if (len)
                memcpy(c, p, len);
        c[len] = '\0';
        out->p = c;
        out->len = len;
        return 0;
}

/* The embedded script without whole-line comments, blank lines and
 * indentation: EVAL sends the body with every call, and Lua needs none of
 * them (the script has no multi-line string). */
static char *npsd_write_script_strip(const char *src, size_t *lenp) {
        char *out = malloc(strlen(src) + 1), *o = out;

        if (!out)
                return NULL;
        while (*src) {
                const char *eol = strchr(src, '\n');
                size_t len = eol ? (size_t)(eol - src) : strlen(src);
                const char *s = src;

                while (s < src + len && (*s == ' ' || *s == '\t'))
                        s++;
                if (s < src + len && strncmp(s, "--", 2)) {
                        memcpy(o, s, (size_t)(src + len - s));
                        o += src + len - s;
                        *o++ = '\n';
                }
                src += len + (eol ? 1 : 0);
        }
        *o = '\0';
        *lenp = (size_t)(o - out);
        return out;
}

npsd_write_t *npsd_write_new(void) {
        npsd_write_t *w = calloc(1, sizeof(*w));

        if (!w)
                goto fail;
        if (!(w->script =
                      npsd_write_script_strip(npsd_lua_write, &w->script_len)))
                goto fail;
        return w;

fail:
        npsd_write_destroy(w);
        return NULL;
}

void npsd_write_destroy(npsd_write_t *w) {
        npsd_write_block_t *b, *next;

        if (!w)
                return;
        for (b = w->blocks; b; b = next) {
                next = b->next;
                free(b);
        }
        free(w->calls);
        free(w->keys);
        free(w->words);
        free(w->script);
        free(w);
}

/* Blocks kept as they were would fragment: a round whose large argv
 * lands where a smaller block sits gets a new block placed there, and
 * rounds of varying shapes keep adding them (a benchmark's writer grew
 * to 48 MiB for rounds of at most 7.6 MiB). So a round that needed more
 * than one block leaves a single block as large as the largest round yet:
 * a few mallocs while the rounds grow, none once they stop growing. */
void npsd_write_reset(npsd_write_t *w) {
        npsd_write_block_t *b, *next;
        size_t used = 0;

        for (b = w->blocks; b; b = b->next)
                used += b->used;
        if (used > w->high)
                w->high = used;
        if (w->blocks && w->blocks->next) {
                size_t bsize = (w->high + NPSD_WRITE_BLOCK_SIZE - 1) /
                               NPSD_WRITE_BLOCK_SIZE * NPSD_WRITE_BLOCK_SIZE;
                for (b = w->blocks; b; b = next) {
                        next = b->next;
                        free(b);
                }
                w->blocks = NULL;
                w->mem = 0;
                /* on failure the next alloc starts a new chain */
                if ((b = malloc(sizeof(*b) + bsize))) {
                        b->size = bsize;
                        b->next = NULL;
                        w->blocks = b;
                        w->mem = bsize;
                }
        }
        if (w->blocks)
                w->blocks->used = 0;
        w->cur = w->blocks;
        w->call_cnt = w->key_cnt = w->word_cnt = w->appended = 0;
        w->multi = 0; /* only for the batch whose watch is known to hold */
}

const char *npsd_write_script(const npsd_write_t *w, size_t *len) {
        *len = w->script_len;
        return w->script;
}

void npsd_write_use_sha(npsd_write_t *w, const char *sha) {
        if (sha && strlen(sha) == 40)
                memcpy(w->sha, sha, 41);
        else
                w->sha[0] = '\0';
        for (size_t i = 0; i < w->call_cnt; i++)
                w->calls[i].argv = NULL; /* rebuilt with the other verb */
}

void npsd_write_use_multi(npsd_write_t *w, int on) {
        w->multi = on;
}

int npsd_write_multi(const npsd_write_t *w) {
        return w->multi;
}

int npsd_write_noscript(const npsd_write_t *w, const npsd_cluster_t *cluster) {
        for (size_t i = 0; i < w->call_cnt; i++) {
                const redisReply *r;
                if (w->calls[i].reply < 0)
                        continue;
                r = npsd_cluster_reply(cluster, w->calls[i].reply);
                if (r && r->type == REDIS_REPLY_ERROR &&
                    !strncmp(r->str, "NOSCRIPT", 8))
                        return 1;
        }
        return 0;
}

size_t npsd_write_calls(const npsd_write_t *w) {
        return w->call_cnt;
}

size_t npsd_write_memory(const npsd_write_t *w) {
        return w->mem;
}

/* Starts a call from its five head words; the batch is unchanged on
 * failure (words already copied stay in the blocks until the reset). */
static long npsd_write_call_start(npsd_write_t *w, const char *key,
                                  const char *mode, const char *field,
                                  const char *a3, size_t a3len,
                                  const char *a4, char *errstr,
                                  size_t errstr_size) {
        npsd_write_call_t *c;

        if (npsd_write_grow((void **)&w->calls, &w->call_size,
                            w->call_cnt + 1, sizeof(*w->calls)) == -1)
                goto oom;
        c = &w->calls[w->call_cnt];
        memset(c, 0, sizeof(*c));
        if (npsd_write_copy(w, key, strlen(key), &c->head[NPSD_WRITE_GUARD]) ==
                    -1 ||
            npsd_write_copy(w, mode, strlen(mode), &c->head[NPSD_WRITE_MODE]) ==
                    -1 ||
            npsd_write_copy(w, field, strlen(field),
                            &c->head[NPSD_WRITE_FIELD]) == -1 ||
            npsd_write_copy(w, a3, a3len, &c->head[NPSD_WRITE_A3]) == -1 ||
            npsd_write_copy(w, a4, strlen(a4), &c->head[NPSD_WRITE_A4]) == -1)
                goto oom;
        c->slot = npsd_cluster_keyslot(key, strlen(key));
        c->key_first = c->key_end = w->key_cnt;
        c->word_first = c->word_end = w->word_cnt;
        c->reply = -1;
        return (long)w->call_cnt++;

oom:
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

long npsd_write_cas(npsd_write_t *w, const char *guard_key,
                    const char *field, const char *expected,
                    const char *new_value, char *errstr, size_t errstr_size) {
        return npsd_write_call_start(w, guard_key, "cas", field, expected,
                                     strlen(expected), new_value, errstr,
                                     errstr_size);
}

long npsd_write_seq(npsd_write_t *w, const char *fence_key,
                    const char *field, uint64_t seq, char *errstr,
                    size_t errstr_size) {
        char num[24];

        if (seq < 1 || seq > NPSD_WRITE_SEQ_MAX) {
                snprintf(errstr, errstr_size,
                         "sequence %" PRIu64 " is outside 1 .. 2^53 - 1", seq);
                return -1;
        }
        snprintf(num, sizeof(num), "%" PRIu64, seq);
        return npsd_write_call_start(w, fence_key, "seq", field, num,
                                     strlen(num), "", errstr, errstr_size);
}

long npsd_write_groups(npsd_write_t *w, const char *fence_key,
                       npsd_write_groups_mode_t mode, char *errstr,
                       size_t errstr_size) {
        static const char *const names[] = {"exact", "newer", "all"};

        return npsd_write_call_start(w, fence_key, "groups", names[mode], "",
                                     0, "", errstr, errstr_size);
}

long npsd_write_groups_checked(npsd_write_t *w, const char *fence_key,
                               npsd_write_groups_mode_t mode, char *errstr,
                               size_t errstr_size) {
        long call = npsd_write_groups(w, fence_key, mode, errstr, errstr_size);

        if (call >= 0)
                w->calls[call].checked = 1;
        return call;
}

int npsd_write_group(npsd_write_t *w, const char *field, uint64_t seq,
                     char *errstr, size_t errstr_size) {
        char num[24];
        const char *argv[3] = {"GROUP", field, num};

        if (seq < 1 || seq > NPSD_WRITE_SEQ_MAX) {
                snprintf(errstr, errstr_size,
                         "sequence %" PRIu64 " is outside 1 .. 2^53 - 1", seq);
                return -1;
        }
        snprintf(num, sizeof(num), "%" PRIu64, seq);
        return npsd_write_cmd(w, 3, argv, NULL, 0, errstr, errstr_size);
}

long npsd_write_later(npsd_write_t *w, const char *key, int64_t expire_ms,
                      char *errstr, size_t errstr_size) {
        char num[24];

        if (expire_ms < 1 || (uint64_t)expire_ms > NPSD_WRITE_SEQ_MAX) {
                snprintf(errstr, errstr_size, "expiry %" PRId64 " out of range",
                         expire_ms);
                return -1;
        }
        snprintf(num, sizeof(num), "%" PRId64, expire_ms);
        return npsd_write_call_start(w, key, "later", "", num, strlen(num), "",
                                     errstr, errstr_size);
}

/* ---- adding commands: words go on the tables uncommitted; the call takes
 * them (commit) only when the whole command (or hset/hdel) is in, so a
 * refusal halfway leaves the call as it was (rollback). */

/* The call commands are added to, or NULL with errstr. */
static npsd_write_call_t *npsd_write_cmd_open(npsd_write_t *w,
                                              char *errstr,
                                              size_t errstr_size) {
        if (!w->call_cnt) {
                snprintf(errstr, errstr_size,
                         "no call started (npsd_write_cas or _seq)");
                return NULL;
        }
        if (w->call_cnt <= w->appended) {
                snprintf(errstr, errstr_size,
                         "call %zu is already in a pipeline", w->call_cnt - 1);
                return NULL;
        }
        return &w->calls[w->call_cnt - 1];
}

static void npsd_write_cmd_commit(npsd_write_t *w, npsd_write_call_t *c) {
        c->word_end = w->word_cnt;
        c->key_end = w->key_cnt;
        c->argv = NULL; /* rebuilt by npsd_write_argv() */
}

static void npsd_write_cmd_rollback(npsd_write_t *w, npsd_write_call_t *c) {
        w->word_cnt = c->word_end;
        w->key_cnt = c->key_end;
}

/* Refuses a key outside the guard's slot: Redis Cluster would refuse the
 * whole EVAL, and a standalone Redis would run it, hiding the error. */
static int npsd_write_key_check(const npsd_write_call_t *c, const char *key,
                                size_t len, char *errstr,
                                size_t errstr_size) {
        unsigned slot = npsd_cluster_keyslot(key, len);

        if (slot == c->slot)
                return 0;
        snprintf(errstr, errstr_size,
                 "key '%.*s' is in slot %u, guard '%s' in slot %u",
                 (int)(len > 200 ? 200 : len), key, slot,
                 c->head[NPSD_WRITE_GUARD].p, c->slot);
        return -1;
}

/* Copies a word onto the words table; *out (may be NULL) gets its copy. */
static int npsd_write_push_word(npsd_write_t *w, const char *p, size_t len,
                                npsd_write_word_t *out) {
        npsd_write_word_t word;

        if (npsd_write_grow((void **)&w->words, &w->word_size,
                            w->word_cnt + 1, sizeof(*w->words)) == -1 ||
            npsd_write_copy(w, p, len, &word) == -1)
                return -1;
        w->words[w->word_cnt++] = word;
        if (out)
                *out = word;
        return 0;
}

static int npsd_write_push_count(npsd_write_t *w, size_t n) {
        char num[NPSD_FMT_INT_BUFSZ];
        size_t len = npsd_fmt_u64(n, num);

        return npsd_write_push_word(w, num, len, NULL);
}

/* Declares a key (already copied) once per call; the guard is KEYS[1]. A
 * linear search: a call touches a handful of keys. */
static int npsd_write_push_key(npsd_write_t *w, const npsd_write_call_t *c,
                               const npsd_write_word_t *key) {
        const npsd_write_word_t *g = &c->head[NPSD_WRITE_GUARD];

        if (key->len == g->len && !memcmp(key->p, g->p, g->len))
                return 0;
        for (size_t i = c->key_first; i < w->key_cnt; i++)
                if (w->keys[i].len == key->len &&
                    !memcmp(w->keys[i].p, key->p, key->len))
                        return 0;
        if (npsd_write_grow((void **)&w->keys, &w->key_size, w->key_cnt + 1,
                            sizeof(*w->keys)) == -1)
                return -1;
        w->keys[w->key_cnt++] = *key;
        return 0;
}

/* A command's name for a message: it need not be NUL-terminated. */
#define NPSD_WRITE_NAME(argv, argvlen)                                         \
        (int)((argvlen ? argvlen[0] : strlen(argv[0])) > 32                    \
                      ? 32                                                     \
                      : (argvlen ? argvlen[0] : strlen(argv[0])))

int npsd_write_cmd(npsd_write_t *w, int argc, const char **argv,
                   const size_t *argvlen, int key_cnt, char *errstr,
                   size_t errstr_size) {
        npsd_write_call_t *c;

        if (!(c = npsd_write_cmd_open(w, errstr, errstr_size)))
                return -1;
        if (argc < 1 || argc > NPSD_WRITE_CMD_WORDS_MAX) {
                snprintf(errstr, errstr_size,
                         "%.*s of %d words: a command has 1 .. %d (split it)",
                         argc >= 1 ? NPSD_WRITE_NAME(argv, argvlen) : 7,
                         argc >= 1 ? argv[0] : "command", argc,
                         NPSD_WRITE_CMD_WORDS_MAX);
                return -1;
        }
        if (key_cnt < 0 || key_cnt > argc - 1) {
                snprintf(errstr, errstr_size,
                         "%.*s: %d keys in %d words after the name",
                         NPSD_WRITE_NAME(argv, argvlen), argv[0], key_cnt,
                         argc - 1);
                return -1;
        }
        for (int i = 1; i <= key_cnt; i++)
                if (npsd_write_key_check(
                            c, argv[i],
                            argvlen ? argvlen[i] : strlen(argv[i]), errstr,
                            errstr_size) == -1)
                        return -1;

        if (npsd_write_push_count(w, (size_t)argc) == -1)
                goto oom;
        for (int i = 0; i < argc; i++) {
                npsd_write_word_t word;

                if (npsd_write_push_word(
                            w, argv[i],
                            argvlen ? argvlen[i] : strlen(argv[i]),
                            &word) == -1 ||
                    (i >= 1 && i <= key_cnt &&
                     npsd_write_push_key(w, c, &word) == -1))
                        goto oom;
        }
        npsd_write_cmd_commit(w, c);
        return 0;

oom:
        npsd_write_cmd_rollback(w, c);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

/* name key a1 [b1] a2 [b2] ...: HSET (b given) or HDEL, cnt items, split
 * into commands of at most per items each. */
static int npsd_write_cmd_items(npsd_write_t *w, const char *name,
                                const char *key, size_t cnt, size_t per,
                                const char **a, const size_t *alens,
                                const char **b, const size_t *blens,
                                char *errstr, size_t errstr_size) {
        npsd_write_call_t *c;
        npsd_write_word_t kw;
        size_t keylen = strlen(key);

        if (!(c = npsd_write_cmd_open(w, errstr, errstr_size)) ||
            npsd_write_key_check(c, key, keylen, errstr, errstr_size) == -1)
                return -1;
        for (size_t from = 0; from < cnt; from += per) {
                size_t n = cnt - from < per ? cnt - from : per;

                if (npsd_write_push_count(w, 2 + n * (b ? 2 : 1)) == -1 ||
                    npsd_write_push_word(w, name, strlen(name), NULL) == -1 ||
                    npsd_write_push_word(w, key, keylen, &kw) == -1 ||
                    npsd_write_push_key(w, c, &kw) == -1)
                        goto oom;
                for (size_t i = from; i < from + n; i++) {
                        if (npsd_write_push_word(
                                    w, a[i], alens ? alens[i] : strlen(a[i]),
                                    NULL) == -1)
                                goto oom;
                        if (b && npsd_write_push_word(
                                         w, b[i],
                                         blens ? blens[i] : strlen(b[i]),
                                         NULL) == -1)
                                goto oom;
                }
        }
        npsd_write_cmd_commit(w, c);
        return 0;

oom:
        npsd_write_cmd_rollback(w, c);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

int npsd_write_hset(npsd_write_t *w, const char *key, size_t cnt,
                    const char **fields, const size_t *fieldlens,
                    const char **values, const size_t *valuelens,
                    char *errstr, size_t errstr_size) {
        return npsd_write_cmd_items(w, "HSET", key, cnt, NPSD_WRITE_HSET_PAIRS,
                                    fields, fieldlens, values, valuelens,
                                    errstr, errstr_size);
}

int npsd_write_hdel(npsd_write_t *w, const char *key, size_t cnt,
                    const char **fields, const size_t *fieldlens,
                    char *errstr, size_t errstr_size) {
        return npsd_write_cmd_items(w, "HDEL", key, cnt,
                                    NPSD_WRITE_HDEL_FIELDS, fields, fieldlens,
                                    NULL, NULL, errstr, errstr_size);
}

/* ---- the EVAL ---------------------------------------------------------- */

int npsd_write_argv(npsd_write_t *w, size_t call, const char ***argv,
                    const size_t **argvlen, char *errstr,
                    size_t errstr_size) {
        npsd_write_call_t *c;
        size_t key_cnt, word_cnt, argc, i = 0;
        npsd_write_word_t numkeys;
        char num[24];
        int len;

        if (call >= w->call_cnt) {
                snprintf(errstr, errstr_size, "no call %zu (%zu calls)", call,
                         w->call_cnt);
                return -1;
        }
        c = &w->calls[call];
        if (c->argv)
                goto done;
        key_cnt = c->key_end - c->key_first;
        word_cnt = c->word_end - c->word_first;
        argc = 3 + 1 + key_cnt + 4 + word_cnt;
        if (argc > INT_MAX) {
                snprintf(errstr, errstr_size, "call %zu has %zu words", call,
                         argc);
                return -1;
        }
        len = snprintf(num, sizeof(num), "%zu", 1 + key_cnt);
        if (npsd_write_copy(w, num, (size_t)len, &numkeys) == -1 ||
            !(c->argv = npsd_write_alloc(w, argc * sizeof(*c->argv))) ||
            !(c->argvlen = npsd_write_alloc(w, argc * sizeof(*c->argvlen)))) {
                c->argv = NULL;
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
#define NPSD_WRITE_PUT(P, L)                                                   \
        do {                                                                   \
                c->argv[i] = (P);                                              \
                c->argvlen[i++] = (L);                                         \
        } while (0)
        if (w->sha[0]) {
                NPSD_WRITE_PUT("EVALSHA", 7);
                NPSD_WRITE_PUT(w->sha, 40);
        } else {
                NPSD_WRITE_PUT("EVAL", 4);
                NPSD_WRITE_PUT(w->script, w->script_len);
        }
        NPSD_WRITE_PUT(numkeys.p, numkeys.len);
        NPSD_WRITE_PUT(c->head[NPSD_WRITE_GUARD].p,
                       c->head[NPSD_WRITE_GUARD].len);
        for (size_t k = c->key_first; k < c->key_end; k++)
                NPSD_WRITE_PUT(w->keys[k].p, w->keys[k].len);
        for (int h = NPSD_WRITE_MODE; h < NPSD_WRITE_HEAD; h++)
                NPSD_WRITE_PUT(c->head[h].p, c->head[h].len);
        for (size_t k = c->word_first; k < c->word_end; k++)
                NPSD_WRITE_PUT(w->words[k].p, w->words[k].len);
#undef NPSD_WRITE_PUT
        c->argc = (int)argc;

done:
        *argv = c->argv;
        *argvlen = c->argvlen;
        return c->argc;
}

/* A call's commands as plain commands of a transaction, appended to
 * cluster's pipeline (inside the MULTI): a cas call's HSET of its guard
 * field first; a checked groups call's GROUP field seq as HSET fence field
 * seq. Sets the call's tx_first and tx_cnt from *pos, the index of its
 * first reply in the EXEC's array. The argv table lives in the blocks: the
 * pipeline borrows it until its exec. */
static int npsd_write_append_plain(npsd_write_t *w, npsd_cluster_t *cluster,
                                   npsd_write_call_t *c, size_t *pos) {
        /* every command's count word leaves room for GROUP's fence key */
        size_t n = 4 + (c->word_end - c->word_first), at = 0;
        const char **argv = npsd_write_alloc(w, n * sizeof(*argv));
        size_t *lens = npsd_write_alloc(w, n * sizeof(*lens));
        static const char hset[] = "HSET";

        if (!argv || !lens)
                return -1;
        c->tx_first = *pos;
        c->tx_cnt = 0;
        if (!c->checked) {
                argv[0] = hset;
                lens[0] = 4;
                argv[1] = c->head[NPSD_WRITE_GUARD].p;
                lens[1] = c->head[NPSD_WRITE_GUARD].len;
                argv[2] = c->head[NPSD_WRITE_FIELD].p;
                lens[2] = c->head[NPSD_WRITE_FIELD].len;
                argv[3] = c->head[NPSD_WRITE_A4].p;
                lens[3] = c->head[NPSD_WRITE_A4].len;
                if (npsd_cluster_append(cluster, c->slot, 4, argv, lens) == -1)
                        return -1;
                (*pos)++;
                c->tx_cnt++;
                at = 4;
        }
        for (size_t k = c->word_first; k < c->word_end;) {
                /* a command: its word count, then its words */
                size_t words = strtoul(w->words[k].p, NULL, 10), off = 0;
                if (!strcmp(w->words[k + 1].p, "GROUP")) {
                        /* HSET fence, then GROUP's field and seq */
                        argv[at] = hset;
                        lens[at] = 4;
                        argv[at + 1] = c->head[NPSD_WRITE_GUARD].p;
                        lens[at + 1] = c->head[NPSD_WRITE_GUARD].len;
                        for (size_t j = 1; j < words; j++) {
                                argv[at + 1 + j] = w->words[k + 1 + j].p;
                                lens[at + 1 + j] = w->words[k + 1 + j].len;
                        }
                        off = words + 1;
                } else {
                        for (size_t j = 0; j < words; j++) {
                                argv[at + j] = w->words[k + 1 + j].p;
                                lens[at + j] = w->words[k + 1 + j].len;
                        }
                        off = words;
                }
                if (npsd_cluster_append(cluster, c->slot, (int)off, argv + at,
                                        lens + at) == -1)
                        return -1;
                at += off;
                k += 1 + words;
                (*pos)++;
                c->tx_cnt++;
        }
        return 0;
}

/* Every call, every time: a retry of a failed exec is a new pipeline with
 * the same calls. A call in a pipeline is sealed (npsd_write_cmd_open()):
 * a command added afterwards would be missing from the EVAL already sent.
 * With npsd_write_use_multi() on a standalone Redis, the cas and checked
 * calls go first, as one transaction; the other calls follow as EVALs. */
int npsd_write_append(npsd_write_t *w, npsd_cluster_t *cluster,
                      char *errstr, size_t errstr_size) {
        int multi = w->multi && !npsd_cluster_enabled(cluster);
        static const char *multi_argv[1] = {"MULTI"};
        static const char *exec_argv[1] = {"EXEC"};
        long exec = -1;
        size_t pos = 0;

        w->appended = w->call_cnt; /* sealed, even if this fails */
        for (size_t i = 0; i < w->call_cnt; i++) {
                w->calls[i].reply = -1;
                w->calls[i].tx = multi &&
                                 (w->calls[i].checked ||
                                  !strcmp(w->calls[i].head[NPSD_WRITE_MODE].p,
                                          "cas"));
        }
        for (size_t i = 0; i < w->call_cnt; i++) {
                npsd_write_call_t *c = &w->calls[i];
                if (!c->tx)
                        continue;
                if (!pos && npsd_cluster_append(cluster, c->slot, 1,
                                                multi_argv, NULL) == -1)
                        goto oom;
                if (npsd_write_append_plain(w, cluster, c, &pos) == -1)
                        goto oom;
        }
        if (pos && (exec = npsd_cluster_append(cluster, 0, 1, exec_argv,
                                               NULL)) == -1)
                goto oom;
        for (size_t i = 0; i < w->call_cnt; i++) {
                npsd_write_call_t *c = &w->calls[i];
                const char **argv;
                const size_t *argvlen;
                int argc;

                if (c->tx) {
                        c->reply = exec;
                        continue;
                }
                if ((argc = npsd_write_argv(w, i, &argv, &argvlen, errstr,
                                            errstr_size)) == -1)
                        return -1;
                c->reply = npsd_cluster_append(cluster, c->slot, argc, argv,
                                               argvlen);
                if (c->reply == -1)
                        goto oom;
        }
        return 0;

oom:
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

long npsd_write_reply_index(const npsd_write_t *w, size_t call) {
        return call < w->call_cnt ? w->calls[call].reply : -1;
}

/* ---- replies ----------------------------------------------------------- */

static npsd_write_status_t npsd_write_tx_result(const npsd_write_call_t *c,
                                                const redisReply *exec,
                                                npsd_write_cur_t *cur,
                                                char *errstr,
                                                size_t errstr_size);

npsd_write_status_t npsd_write_result(const redisReply *reply,
                                      npsd_write_cur_t *cur, char *errstr,
                                      size_t errstr_size) {
        const redisReply *v;
        long long code;

        if (cur)
                memset(cur, 0, sizeof(*cur));
        if (!reply) {
                snprintf(errstr, errstr_size, "no reply");
                return NPSD_WRITE_ERROR;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "%.*s", (int)reply->len,
                         reply->str);
                return NPSD_WRITE_ERROR;
        }
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
            reply->elements > 2 ||
            reply->element[0]->type != REDIS_REPLY_INTEGER)
                goto garbage;
        code = reply->element[0]->integer;
        if (reply->elements == 1) {
                if (code == 1)
                        return NPSD_WRITE_APPLIED;
                goto garbage;
        }
        v = reply->element[1];
        if (code == 0 && v->type == REDIS_REPLY_STRING) {
                if (cur) {
                        cur->str = v->str;
                        cur->len = v->len;
                }
                return NPSD_WRITE_CONFLICT;
        }
        if ((code == 0 || code == 2) && v->type == REDIS_REPLY_INTEGER) {
                if (cur)
                        cur->seq = v->integer;
                return code == 2 ? NPSD_WRITE_ALREADY : NPSD_WRITE_GAP;
        }

garbage:
        snprintf(errstr, errstr_size, "not a write.lua reply (type %d)",
                 reply->type);
        return NPSD_WRITE_ERROR;
}

npsd_write_status_t npsd_write_group_status(const npsd_write_t *w,
                                            size_t call,
                                            const npsd_cluster_t *cluster,
                                            size_t group) {
        long idx = npsd_write_reply_index(w, call);
        const redisReply *r = idx == -1 ? NULL : npsd_cluster_reply(cluster, idx);

        if (idx != -1 && w->calls[call].tx) {
                /* the transaction's groups ran, or none did */
                char e[8];
                return npsd_write_tx_result(&w->calls[call], r, NULL, e,
                                            sizeof(e));
        }

        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < group + 2 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[0]->integer != 3 ||
            r->element[group + 1]->type != REDIS_REPLY_INTEGER)
                return NPSD_WRITE_ERROR;
        switch (r->element[group + 1]->integer) {
        case 1:
                return NPSD_WRITE_APPLIED;
        case 2:
                return NPSD_WRITE_ALREADY;
        default:
                return NPSD_WRITE_GAP;
        }
}

/* A call sent in the transaction: EXEC answers nil when a watched key
 * changed (nothing ran: CONFLICT, the value unknown), an error when
 * Redis refused a command as it was queued (nothing ran), else one reply
 * per command, where an error means Redis failed that command as it ran
 * (the others ran, as a script's would have). */
static npsd_write_status_t npsd_write_tx_result(const npsd_write_call_t *c,
                                                const redisReply *exec,
                                                npsd_write_cur_t *cur,
                                                char *errstr,
                                                size_t errstr_size) {
        if (cur)
                memset(cur, 0, sizeof(*cur));
        if (!exec) {
                snprintf(errstr, errstr_size, "no reply");
                return NPSD_WRITE_ERROR;
        }
        if (exec->type == REDIS_REPLY_NIL)
                return NPSD_WRITE_CONFLICT;
        if (exec->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "%.*s", (int)exec->len,
                         exec->str);
                return NPSD_WRITE_ERROR;
        }
        if (exec->type != REDIS_REPLY_ARRAY ||
            exec->elements < c->tx_first + c->tx_cnt) {
                snprintf(errstr, errstr_size, "not an EXEC reply (type %d)",
                         exec->type);
                return NPSD_WRITE_ERROR;
        }
        for (size_t k = c->tx_first; k < c->tx_first + c->tx_cnt; k++) {
                const redisReply *r = exec->element[k];
                if (r->type == REDIS_REPLY_ERROR) {
                        snprintf(errstr, errstr_size, "%.*s", (int)r->len,
                                 r->str);
                        return NPSD_WRITE_ERROR;
                }
        }
        return NPSD_WRITE_APPLIED;
}

npsd_write_status_t npsd_write_call_result(const npsd_write_t *w,
                                           size_t call,
                                           const npsd_cluster_t *cluster,
                                           npsd_write_cur_t *cur,
                                           char *errstr, size_t errstr_size) {
        long idx = npsd_write_reply_index(w, call);

        if (idx == -1) {
                if (cur)
                        memset(cur, 0, sizeof(*cur));
                snprintf(errstr, errstr_size, "call %zu was not appended",
                         call);
                return NPSD_WRITE_ERROR;
        }
        if (w->calls[call].tx)
                return npsd_write_tx_result(&w->calls[call],
                                            npsd_cluster_reply(cluster, idx),
                                            cur, errstr, errstr_size);
        return npsd_write_result(npsd_cluster_reply(cluster, idx), cur, errstr,
                                 errstr_size);
}
