/*
 * npsd_buckets — day buckets of responses and the window totals derived
 * from them (pure, no I/O).
 *
 * An account (or a cohort) keeps, per UTC day, a count per slot: slot =
 * slice x 3 + category, slices all, relationship, transactional, end_user,
 * admin, decision_maker, other; categories detractor, passive, promoter. A
 * response adds 1 to three slots: all, its survey type, its role. Window
 * totals are sums over the days a window holds (SPEC §3), plus the period
 * before the long window (the trend's). Only days that some window or that
 * previous period can still hold are kept: 2 x the long window.
 *
 * This is the state engine's representation (docs/design.md): an account's
 * buckets live in its state record (npsd_state), a cohort's in a Redis hash
 * the store sums with these functions; npsd_buckets_next_change() sets the
 * account's timer.
 */
#ifndef NPSD_BUCKETS_H
#define NPSD_BUCKETS_H

#include <stddef.h>
#include <stdint.h>

#include "npsd/npsd_config.h"
#include "npsd/npsd_event.h"

#define NPSD_SLICE_CNT 7
#define NPSD_SLOT_CNT (NPSD_SLICE_CNT * NPSD_CAT__CNT)
#define NPSD_PERIODS_MAX (NPSD_WINDOWS_MAX + 1)
#define NPSD_DAY_NONE INT32_MAX

typedef enum {
        NPSD_SLICE_ALL = 0,
        NPSD_SLICE_RELATIONSHIP,
        NPSD_SLICE_TRANSACTIONAL,
        NPSD_SLICE_END_USER,
        NPSD_SLICE_ADMIN,
        NPSD_SLICE_DECISION_MAKER,
        NPSD_SLICE_OTHER,
} npsd_slice_t;

/* The three slots a response counts in: all, its survey type, its role. */
void npsd_slots_of(npsd_category_t cat, npsd_survey_t survey,
                   npsd_role_t role, unsigned slots[3]);

/* The windows of the configuration, ascending, and the long one. */
typedef struct npsd_periods_s {
        int window_days[NPSD_WINDOWS_MAX];
        int window_cnt;
        int long_days;
} npsd_periods_t;

void npsd_periods_from(npsd_periods_t *periods, const npsd_conf_t *conf);

/* Totals per period: t[0 .. window_cnt-1] the windows, t[window_cnt] the
 * period before the long window (days long..2*long-1 before today). */
typedef struct npsd_totals_s {
        int64_t t[NPSD_PERIODS_MAX][NPSD_SLOT_CNT];
        int period_cnt;
} npsd_totals_t;

typedef struct npsd_bucket_s {
        int32_t day;
        uint8_t slot;
        uint32_t count;
} npsd_bucket_t;

/* Sorted by (day, slot), no zero counts. */
typedef struct npsd_buckets_s {
        npsd_bucket_t *v;
        size_t cnt, size;
} npsd_buckets_t;

/* An empty set; npsd_buckets_free() releases what adds allocated. */
void npsd_buckets_init(npsd_buckets_t *b);
void npsd_buckets_free(npsd_buckets_t *b);

/* Adds by (> 0) to the slot of a day. Returns 0, or -1 when out of memory
 * or slot is out of range (nothing changed). */
int npsd_buckets_add(npsd_buckets_t *b, int32_t day, unsigned slot,
                     uint32_t by);

/* Totals of every period as of today. Days after today count nowhere yet
 * (a response dated up to an hour ahead may fall on tomorrow). */
void npsd_buckets_totals(const npsd_buckets_t *b,
                         const npsd_periods_t *periods, int32_t today,
                         npsd_totals_t *totals);

/* Removes the days no period can hold any more (before today - 2 x long
 * + 1). Returns how many buckets went. */
size_t npsd_buckets_prune(npsd_buckets_t *b, const npsd_periods_t *periods,
                          int32_t today);

/* The first day after today on which the totals change with no new
 * response (a future day enters, a day leaves a window or moves into or
 * out of the previous period), or NPSD_DAY_NONE. */
int32_t npsd_buckets_next_change(const npsd_buckets_t *b,
                                 const npsd_periods_t *periods,
                                 int32_t today);

/* Serialised form (for the state record, npsd_codec varints): a count of
 * buckets, then per bucket the day (the first one signed, then each as a
 * delta from the one before), the slot and the count. Returns the bytes
 * needed; writes them when they fit in size. */
size_t npsd_buckets_encode(const npsd_buckets_t *b, unsigned char *buf,
                           size_t size);

/* Replaces b's contents with an encoded set. Returns the bytes consumed,
 * or 0 when the input is malformed or memory ran out (b is then empty). */
size_t npsd_buckets_decode(npsd_buckets_t *b, const unsigned char *buf,
                           size_t len);

#endif
