/*
 * npsd_buckets — day buckets and window totals (see
 * include/npsd/npsd_buckets.h).
 */
#include "npsd/npsd_buckets.h"

#include "npsd/npsd_codec.h"

#include <stdlib.h>
#include <string.h>

void npsd_slots_of(npsd_category_t cat, npsd_survey_t survey,
                   npsd_role_t role, unsigned slots[3]) {
        slots[0] = NPSD_SLICE_ALL * NPSD_CAT__CNT + cat;
        slots[1] = (NPSD_SLICE_RELATIONSHIP + survey) * NPSD_CAT__CNT + cat;
        slots[2] = (NPSD_SLICE_END_USER + role) * NPSD_CAT__CNT + cat;
}

void npsd_periods_from(npsd_periods_t *periods, const npsd_conf_t *conf) {
        memset(periods, 0, sizeof(*periods));
        periods->window_cnt = conf->window_cnt;
        memcpy(periods->window_days, conf->window_days,
               sizeof(periods->window_days));
        periods->long_days = conf->long_window_days;
}

void npsd_buckets_init(npsd_buckets_t *b) {
        memset(b, 0, sizeof(*b));
}

void npsd_buckets_free(npsd_buckets_t *b) {
        free(b->v);
        npsd_buckets_init(b);
}

static int64_t npsd_bucket_key(int32_t day, unsigned slot) {
        return (int64_t)day * 32 + slot;
}

/* The index of (day, slot), or where it would be inserted. */
static size_t npsd_buckets_find(const npsd_buckets_t *b, int32_t day,
                                unsigned slot) {
        int64_t key = npsd_bucket_key(day, slot);
        size_t lo = 0, hi = b->cnt;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (npsd_bucket_key(b->v[mid].day, b->v[mid].slot) < key)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int npsd_buckets_reserve(npsd_buckets_t *b, size_t n) {
        npsd_bucket_t *v;
        size_t nsize = b->size ? b->size : 16;

        if (n <= b->size)
                return 0;
        while (nsize < n)
                nsize *= 2;
        if (!(v = realloc(b->v, nsize * sizeof(*v))))
                return -1;
        b->v = v;
        b->size = nsize;
        return 0;
}

int npsd_buckets_add(npsd_buckets_t *b, int32_t day, unsigned slot,
                     uint32_t by) {
        size_t i;

        if (slot >= NPSD_SLOT_CNT || by == 0)
                return -1;
        i = npsd_buckets_find(b, day, slot);
        if (i < b->cnt && b->v[i].day == day && b->v[i].slot == slot) {
                if (b->v[i].count > UINT32_MAX - by)
                        return -1;
                b->v[i].count += by;
                return 0;
        }
        if (npsd_buckets_reserve(b, b->cnt + 1) == -1)
                return -1;
        memmove(&b->v[i + 1], &b->v[i], (b->cnt - i) * sizeof(*b->v));
        b->v[i].day = day;
        b->v[i].slot = (uint8_t)slot;
        b->v[i].count = by;
        b->cnt++;
        return 0;
}

void npsd_buckets_totals(const npsd_buckets_t *b,
                         const npsd_periods_t *periods, int32_t today,
                         npsd_totals_t *totals) {
        int prev = periods->window_cnt, l = periods->long_days;

        memset(totals, 0, sizeof(*totals));
        totals->period_cnt = periods->window_cnt + 1;
        for (size_t i = 0; i < b->cnt; i++) {
                const npsd_bucket_t *k = &b->v[i];
                if (k->day > today)
                        continue;
                for (int w = 0; w < periods->window_cnt; w++)
                        if (k->day > today - periods->window_days[w])
                                totals->t[w][k->slot] += k->count;
                if (k->day <= today - l && k->day > today - 2 * l)
                        totals->t[prev][k->slot] += k->count;
        }
}

size_t npsd_buckets_prune(npsd_buckets_t *b, const npsd_periods_t *periods,
                          int32_t today) {
        int32_t oldest = today - 2 * periods->long_days + 1;
        size_t n = 0;

        while (n < b->cnt && b->v[n].day < oldest)
                n++;
        if (n) {
                memmove(b->v, b->v + n, (b->cnt - n) * sizeof(*b->v));
                b->cnt -= n;
        }
        return n;
}

int32_t npsd_buckets_next_change(const npsd_buckets_t *b,
                                 const npsd_periods_t *periods,
                                 int32_t today) {
        int32_t oldest = today - 2 * periods->long_days + 1;
        int32_t best = NPSD_DAY_NONE;

        for (size_t i = 0; i < b->cnt; i++) {
                int32_t day = b->v[i].day, cand[NPSD_PERIODS_MAX + 1];
                int n = 0;

                if (day < oldest || (i > 0 && b->v[i - 1].day == day))
                        continue;
                cand[n++] = day; /* a future day enters */
                for (int w = 0; w < periods->window_cnt; w++)
                        cand[n++] = day + periods->window_days[w];
                cand[n++] = day + 2 * periods->long_days;
                for (int c = 0; c < n; c++)
                        if (cand[c] > today && cand[c] < best)
                                best = cand[c];
        }
        return best;
}

/* ---- serialised form ------------------------------------------------ */

size_t npsd_buckets_encode(const npsd_buckets_t *b, unsigned char *buf,
                           size_t size) {
        npsd_codec_writer_t w = {.buf = buf, .size = size};

        npsd_codec_put_uint(&w, b->cnt);
        for (size_t i = 0; i < b->cnt; i++) {
                const npsd_bucket_t *k = &b->v[i];
                if (i == 0)
                        npsd_codec_put_int(&w, k->day);
                else
                        npsd_codec_put_uint(&w,
                                            (uint64_t)(k->day - b->v[i - 1].day));
                npsd_codec_put_uint(&w, k->slot);
                npsd_codec_put_uint(&w, k->count);
        }
        return w.off;
}

size_t npsd_buckets_decode(npsd_buckets_t *b, const unsigned char *buf,
                           size_t len) {
        npsd_codec_reader_t r = {.buf = buf, .len = len};
        uint64_t cnt = npsd_codec_get_uint_max(&r, len);
        int64_t day = 0;

        b->cnt = 0;
        if (r.err || npsd_buckets_reserve(b, (size_t)cnt) == -1)
                goto fail;
        for (uint64_t i = 0; i < cnt; i++) {
                npsd_bucket_t *k = &b->v[i];
                uint64_t delta = 0;
                if (i == 0)
                        day = npsd_codec_get_int(&r);
                else
                        day += (int64_t)(delta = npsd_codec_get_uint_max(
                                                 &r, INT32_MAX));
                k->slot = (uint8_t)npsd_codec_get_uint_max(&r,
                                                           NPSD_SLOT_CNT - 1);
                k->count = (uint32_t)npsd_codec_get_uint_max(&r, UINT32_MAX);
                if (r.err || k->count == 0 || day < INT32_MIN ||
                    day > INT32_MAX)
                        goto fail;
                /* (day, slot) strictly ascending */
                if (i > 0 && delta == 0 && k->slot <= b->v[i - 1].slot)
                        goto fail;
                k->day = (int32_t)day;
        }
        b->cnt = (size_t)cnt;
        return r.off;

fail:
        b->cnt = 0;
        return 0;
}
