/*
 * npsd_sums — the increments and set additions of many fenced global
 * deltas, summed before they go to Redis.
 *
 * Thousands of accounts' deltas bump the same few cohort, theme and owner
 * counters (live traffic falls on today's buckets). A groups call in mode
 * "all" (npsd_write.h) runs every group or none, so the groups' HINCRBYs
 * of one key and field can be sent as one HINCRBY of their sum, and their
 * SADDs of one member as one: the store collects them here while it adds
 * a call's groups and appends the sums at the call's end. Increments
 * commute and a set addition repeats harmlessly, so the result is the same
 * as running every group's commands in turn.
 *
 * Use:
 *   npsd_sums_incr(s, key, klen, field, flen, by);   per HINCRBY
 *   npsd_sums_sadd(s, key, klen, member, mlen);      per SADD
 *   for (i = 0; i < npsd_sums_count(s); i++) npsd_sums_get(s, i, &e);
 *   npsd_sums_reset(s);                              (keeps the memory)
 *
 * Entries come back in the order they were first added. Not thread-safe.
 */
#ifndef NPSD_SUMS_H
#define NPSD_SUMS_H

#include <stddef.h>

typedef struct npsd_sums_s npsd_sums_t;

typedef struct npsd_sums_entry_s {
        int is_set;          /* 1: SADD key field; 0: HINCRBY key field by */
        const char *key;     /* borrowed until the next add or reset, */
        size_t key_len;      /* NUL-terminated */
        const char *field;   /* the hash field or the set member, as key */
        size_t field_len;
        long long by;        /* the sum (0 for a set member) */
} npsd_sums_entry_t;

/* An empty table, or NULL when out of memory. The caller owns it:
 * npsd_sums_destroy(). */
npsd_sums_t *npsd_sums_new(void);

/* Frees the table (NULL is a no-op). */
void npsd_sums_destroy(npsd_sums_t *s);

/* Forgets every entry, keeping the memory. */
void npsd_sums_reset(npsd_sums_t *s);

/* Adds by to the sum of (key, field). Returns 0, or -1 when out of memory
 * or when the sum would leave the range of a long long (Redis refuses
 * such an increment too); the table is then unchanged. */
int npsd_sums_incr(npsd_sums_t *s, const char *key, size_t key_len,
                   const char *field, size_t field_len, long long by);

/* Records member of set key once. Returns 0, or -1 when out of memory. */
int npsd_sums_sadd(npsd_sums_t *s, const char *key, size_t key_len,
                   const char *member, size_t member_len);

/* Entries recorded since the last reset. */
size_t npsd_sums_count(const npsd_sums_t *s);

/* Entry i (0 .. count - 1) in first-added order. */
void npsd_sums_get(const npsd_sums_t *s, size_t i, npsd_sums_entry_t *e);

#endif
