/*
 * npsd_buckets — day buckets and window totals (see
 * include/npsd/npsd_buckets.h).
 */
#include "npsd/npsd_buckets.h"

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

/* ---- serialised form: unsigned LEB128 varints ------------------------- */

static size_t npsd_varint_put(uint64_t v, unsigned char *buf, size_t off,
                              size_t size) {
        do {
                unsigned char byte = v & 0x7f;
                v >>= 7;
                if (v)
                        byte |= 0x80;
                if (off < size)
                        buf[off] = byte;
                off++;
        } while (v);
        return off;
}

/* Reads one varint at *off; -1 when truncated or longer than 64 bits. */
static int npsd_varint_get(const unsigned char *buf, size_t len, size_t *off,
                           uint64_t *v) {
        uint64_t out = 0;

        for (int shift = 0; shift < 64; shift += 7) {
                unsigned char byte;
                if (*off >= len)
                        return -1;
                byte = buf[(*off)++];
                out |= (uint64_t)(byte & 0x7f) << shift;
                if (!(byte & 0x80)) {
                        *v = out;
                        return 0;
                }
        }
        return -1;
}

size_t npsd_buckets_encode(const npsd_buckets_t *b, unsigned char *buf,
                           size_t size) {
        size_t off = npsd_varint_put(b->cnt, buf, 0, size);

        for (size_t i = 0; i < b->cnt; i++) {
                const npsd_bucket_t *k = &b->v[i];
                uint64_t day;
                if (i == 0) /* zig-zag: days before 1970 stay small */
                        day = k->day < 0 ? ((uint64_t)(-(int64_t)k->day) << 1) - 1
                                         : (uint64_t)k->day << 1;
                else
                        day = (uint64_t)(k->day - b->v[i - 1].day);
                off = npsd_varint_put(day, buf, off, size);
                off = npsd_varint_put(k->slot, buf, off, size);
                off = npsd_varint_put(k->count, buf, off, size);
        }
        return off;
}

size_t npsd_buckets_decode(npsd_buckets_t *b, const unsigned char *buf,
                           size_t len) {
        uint64_t cnt, day, slot, count;
        int64_t cur = 0;
        size_t off = 0;

        b->cnt = 0;
        if (npsd_varint_get(buf, len, &off, &cnt) == -1 || cnt > len ||
            npsd_buckets_reserve(b, (size_t)cnt) == -1)
                goto fail;
        for (uint64_t i = 0; i < cnt; i++) {
                npsd_bucket_t *k = &b->v[i];
                if (npsd_varint_get(buf, len, &off, &day) == -1 ||
                    npsd_varint_get(buf, len, &off, &slot) == -1 ||
                    npsd_varint_get(buf, len, &off, &count) == -1 ||
                    slot >= NPSD_SLOT_CNT || count == 0 ||
                    count > UINT32_MAX || day > INT32_MAX)
                        goto fail;
                if (i == 0)
                        cur = (day & 1) ? -(int64_t)((day + 1) >> 1)
                                        : (int64_t)(day >> 1);
                else if (day == 0 && slot <= b->v[i - 1].slot)
                        goto fail; /* not in (day, slot) order */
                else
                        cur += (int64_t)day;
                if (cur < INT32_MIN || cur > INT32_MAX)
                        goto fail;
                k->day = (int32_t)cur;
                k->slot = (uint8_t)slot;
                k->count = (uint32_t)count;
        }
        b->cnt = (size_t)cnt;
        return off;

fail:
        b->cnt = 0;
        return 0;
}
