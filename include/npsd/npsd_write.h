/*
 * npsd_write — guarded writes: a batch of calls of the generic script
 * src/lua/write.lua, each "check one field of a guard hash, then run these
 * plain commands" as one atomic EVAL in the guard's slot
 * (docs/design.md, write round trip).
 *
 * A call is either
 *   cas: the guard field must hold an expected value (a version); it is
 *        set to a new one, then the commands run;
 *   seq: the guard field is a fence holding the last sequence applied;
 *        sequence s runs when the fence is s - 1 and sets it to s.
 *
 * Use:
 *   npsd_write_reset(w);                          (reuses the memory)
 *   npsd_write_cas(w, st, "v", "41", "42", ...);    starts call 0
 *   npsd_write_hset(w, view, ...);                 adds to call 0
 *   npsd_write_seq(w, fence, "acct-7", 3, ...);    starts call 1
 *   npsd_write_cmd(w, 4, argv, argvlen, 1, ...);   adds to call 1
 *   npsd_cluster_begin(cl);  ... plain commands ...
 *   npsd_write_append(w, cl, ...);                 one EVAL per call
 *   npsd_cluster_exec(cl, ...);
 *   npsd_write_call_result(w, 0, cl, &cur, ...);   APPLIED, CONFLICT...
 *
 * Every word is copied into blocks of memory that never move until
 * npsd_write_reset() or npsd_write_destroy(): npsd_cluster_append()
 * borrows the EVAL's argv, so the batch must outlive the exec.
 *
 * A command's words go to Lua's unpack(), bounded by Lua's C stack: a
 * command holds at most NPSD_WRITE_CMD_WORDS_MAX words (its name
 * included). npsd_write_cmd() refuses a longer one; npsd_write_hset() and
 * npsd_write_hdel() split theirs into as many commands as needed.
 *
 * Not thread-safe: one writer per thread.
 */
#ifndef NPSD_WRITE_H
#define NPSD_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_cluster.h"

struct redisReply;

/* Words per command, its name included; write.lua refuses more too. */
#define NPSD_WRITE_CMD_WORDS_MAX 7000

typedef struct npsd_write_s npsd_write_t;

typedef enum {
        NPSD_WRITE_ERROR = -1,  /* the call failed; errstr says why */
        NPSD_WRITE_APPLIED = 0, /* the guard passed, the commands ran */
        NPSD_WRITE_CONFLICT,    /* cas: the field held another value */
        NPSD_WRITE_ALREADY,     /* seq: the fence is at s or beyond */
        NPSD_WRITE_GAP,         /* seq: the fence is below s - 1 */
} npsd_write_status_t;

/* The guard field's value when a call did not apply. */
typedef struct npsd_write_cur_s {
        const char *str; /* CONFLICT: the value ("" when absent), borrowed
                          * from the reply, not NUL-terminated; else NULL,
                          * also for a transaction's conflict (unknown) */
        size_t len;
        long long seq;   /* ALREADY, GAP: the fence; else 0 */
} npsd_write_cur_t;

/* A writer with no call. Returns NULL when out of memory. The caller owns
 * it: npsd_write_destroy(). */
npsd_write_t *npsd_write_new(void);

/* Frees the writer and every word it holds (NULL is a no-op). */
void npsd_write_destroy(npsd_write_t *w);

/* Forgets every call, keeping the memory for the next batch. The argv of
 * calls already appended to a pipeline become invalid: reset only after
 * that pipeline's npsd_cluster_exec() returned. */
void npsd_write_reset(npsd_write_t *w);

/* Starts a cas call on hash guard_key (the strings are copied, as every
 * word below): field must hold expected ("" = absent); it is set to
 * new_value, then the call's commands run. Returns the call's index in the
 * batch (0, 1, ...), or -1 with errstr when out of memory (the batch is
 * then unchanged). */
long npsd_write_cas(npsd_write_t *w, const char *guard_key,
                    const char *field, const char *expected,
                    const char *new_value, char *errstr, size_t errstr_size);

/* Starts a seq call on the fence hash fence_key: the commands run when
 * fence field holds seq - 1 (absent = 0), which then becomes seq. seq is
 * 1 .. 2^53 - 1 (Lua numbers). Returns the call's index, or -1 with errstr
 * (seq out of range, out of memory; the batch is then unchanged). */
long npsd_write_seq(npsd_write_t *w, const char *fence_key,
                    const char *field, uint64_t seq, char *errstr,
                    size_t errstr_size);

/* How a groups call checks its fences. */
typedef enum {
        NPSD_WRITE_GROUPS_EXACT, /* a group runs when its field holds
                                  * seq - 1 */
        NPSD_WRITE_GROUPS_NEWER, /* a group runs when its field holds less
                                  * than seq */
        NPSD_WRITE_GROUPS_ALL,   /* every group must pass as EXACT, then all
                                  * the commands run in order; else none does
                                  * (the groups that would have passed answer
                                  * GAP): for commands summed across groups */
} npsd_write_groups_mode_t;

/* Starts a groups call on fence hash fence_key: several writers' commands,
 * each group opened by npsd_write_group() and run only when its fence
 * field passes as mode says; the field then becomes seq. Returns the
 * call's index, or -1 with errstr. */
long npsd_write_groups(npsd_write_t *w, const char *fence_key,
                       npsd_write_groups_mode_t mode, char *errstr,
                       size_t errstr_size);

/* Starts a groups call whose fences the caller checked: it read every
 * group's field under a WATCH of fence_key on the connection and found it
 * passing as mode says. In a transaction (npsd_write_use_multi()) the
 * fields are set and the commands run, unchecked (every group answers
 * APPLIED, or CONFLICT when EXEC ran nothing); out of one, the call goes
 * as npsd_write_groups() in mode. Returns the call's index, or -1 with
 * errstr. */
long npsd_write_groups_checked(npsd_write_t *w, const char *fence_key,
                               npsd_write_groups_mode_t mode, char *errstr,
                               size_t errstr_size);

/* Opens a group in the last groups call: the commands added next belong to
 * it. Returns 0, or -1 with errstr (seq out of range, out of memory). */
int npsd_write_group(npsd_write_t *w, const char *field, uint64_t seq,
                     char *errstr, size_t errstr_size);

/* Starts a later call: its commands run when key (which they write) has
 * no expiry before expire_ms (Unix ms; a missing key counts as none).
 * APPLIED, or ALREADY when the key expires at or after it. */
long npsd_write_later(npsd_write_t *w, const char *key, int64_t expire_ms,
                      char *errstr, size_t errstr_size);

/* Adds a command to the last call started: argc words, argv[0] its name;
 * the key_cnt words after the name are the keys it touches (1 for HSET,
 * ZADD...; 0 for PUBLISH; argc - 1 for a DEL of several keys), which the
 * call declares to Redis. Each key must hash to the guard's slot. argvlen
 * NULL: the words are NUL-terminated. The words are copied.
 * Returns 0, or -1 with errstr (no call started, argc outside
 * 1 .. NPSD_WRITE_CMD_WORDS_MAX, key_cnt outside 0 .. argc - 1, a key in
 * another slot, the call already appended, out of memory); the call is
 * then unchanged.
 * Only write.lua's commands run (HSET HSETNX HDEL HINCRBY DEL SET ZADD
 * ZREM ZINCRBY ZREMRANGEBYSCORE SADD SREM EXPIRE PEXPIRE PEXPIREAT LPUSH
 * RPUSH LTRIM PUBLISH): Redis refuses the whole call for any other. */
int npsd_write_cmd(npsd_write_t *w, int argc, const char **argv,
                   const size_t *argvlen, int key_cnt, char *errstr,
                   size_t errstr_size);

/* HSET key f1 v1 f2 v2 ... on the last call, as several commands when the
 * pairs exceed one command's bound (3,499 pairs each). cnt pairs (0: no
 * command); a lens array NULL: those words are NUL-terminated.
 * Returns 0, or -1 with errstr as npsd_write_cmd(); the call is then
 * unchanged. */
int npsd_write_hset(npsd_write_t *w, const char *key, size_t cnt,
                    const char **fields, const size_t *fieldlens,
                    const char **values, const size_t *valuelens,
                    char *errstr, size_t errstr_size);

/* HDEL key f1 f2 ... on the last call, split as npsd_write_hset(). */
int npsd_write_hdel(npsd_write_t *w, const char *key, size_t cnt,
                    const char **fields, const size_t *fieldlens,
                    char *errstr, size_t errstr_size);

/* The script as sent (without its comments), owned by the writer: for a
 * SCRIPT LOAD on every node. */
const char *npsd_write_script(const npsd_write_t *w, size_t *len);

/* Calls go as EVALSHA of sha (40 hex digits, as SCRIPT LOAD answered) from
 * now on, saving Redis the body's hashing and parsing on every call; NULL
 * or "": as EVAL again. A node without the script answers NOSCRIPT
 * (npsd_write_noscript()). */
void npsd_write_use_sha(npsd_write_t *w, const char *sha);

/* on = 1: the cas calls (and the checked groups calls) of the
 * next npsd_write_append() go as plain commands in one MULTI/EXEC, ahead
 * of the other calls (still EVALs), and the guard field is not checked by
 * Redis but set: the caller must have sent WATCH of every such call's
 * guard key on the same connection before it read the expected values, so
 * that EXEC runs nothing when one of them changed since (every call of the
 * transaction then answers CONFLICT). Without a script a
 * call costs Redis its commands only. Ignored in cluster mode (a
 * transaction stays in one slot there). on = 0: scripts, as by default,
 * and again after npsd_write_reset(). */
void npsd_write_use_multi(npsd_write_t *w, int on);

/* The setting of npsd_write_use_multi() for the next append. */
int npsd_write_multi(const npsd_write_t *w);

/* 1 when a call of the last exec was refused with NOSCRIPT (a node that
 * restarted or was promoted since the script was loaded). */
int npsd_write_noscript(const npsd_write_t *w, const npsd_cluster_t *cluster);

/* Calls started since the last reset. */
size_t npsd_write_calls(const npsd_write_t *w);

/* The EVAL of call (built on first use, owned by the writer, valid until
 * the next reset): EVAL, the script, numkeys, the guard key then the other
 * keys, then mode, field, two mode words, then per command its word count
 * and words. Returns argc, or -1 with errstr (no such call, out of
 * memory). */
int npsd_write_argv(npsd_write_t *w, size_t call, const char ***argv,
                    const size_t **argvlen, char *errstr,
                    size_t errstr_size);

/* Appends every call of the batch to cluster's current pipeline, one EVAL
 * each for its guard key's slot, and records their reply indexes: once per
 * pipeline. A retry after a failed exec appends them again to the new
 * pipeline (the indexes are then the new ones). A call appended takes no
 * more commands; calls started later go with the next append. The argv
 * stay the writer's: keep it (no reset, no destroy) until
 * npsd_cluster_exec() returned. Returns 0, or -1 with errstr (out of
 * memory; calls before the failing one are appended). */
int npsd_write_append(npsd_write_t *w, npsd_cluster_t *cluster,
                      char *errstr, size_t errstr_size);

/* The reply index of call in the last pipeline it was appended to, or -1
 * when it was not appended by the last npsd_write_append(). */
long npsd_write_reply_index(const npsd_write_t *w, size_t call);

/* What a write.lua reply says. cur (may be NULL) gets the guard field's
 * value on CONFLICT, ALREADY and GAP, borrowed from reply. ERROR: errstr
 * gets Redis's error (or why the reply is not one of write.lua's): the
 * commands did not run, unless Redis failed one while running it (see
 * write.lua). cas answers CONFLICT with a string and seq GAP with an
 * integer: the reply alone tells them apart. */
npsd_write_status_t npsd_write_result(const struct redisReply *reply,
                                      npsd_write_cur_t *cur, char *errstr,
                                      size_t errstr_size);

/* npsd_write_result() of call's reply in cluster's last exec. */
npsd_write_status_t npsd_write_call_result(const npsd_write_t *w,
                                           size_t call,
                                           const npsd_cluster_t *cluster,
                                           npsd_write_cur_t *cur,
                                           char *errstr, size_t errstr_size);

/* What group (0, 1, ... in the order opened) of a groups call did:
 * APPLIED, ALREADY, GAP (exact and all; in all, also "did not run because
 * another group did not pass"), or ERROR when the reply is not a groups
 * reply. */
npsd_write_status_t npsd_write_group_status(const npsd_write_t *w,
                                            size_t call,
                                            const npsd_cluster_t *cluster,
                                            size_t group);

/* Bytes of words and argv the writer holds (kept across resets). */
size_t npsd_write_memory(const npsd_write_t *w);

#endif
