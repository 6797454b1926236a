/*
 * npsd_sums — summed increments and set additions (see
 * include/npsd/npsd_sums.h).
 *
 * Entries sit in an array in first-added order; an open-addressing table
 * of entry indexes finds one by (kind, key, field). The strings live in
 * one growing buffer and are referred to by offset, so the buffer may
 * move as it grows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "npsd/npsd_sums.h"

typedef struct npsd_sums_item_s {
        uint64_t hash;
        size_t key_off, key_len, field_off, field_len;
        long long by;
        int is_set;
} npsd_sums_item_t;

struct npsd_sums_s {
        npsd_sums_item_t *items;
        size_t cnt, size;
        size_t *slots; /* index + 1 into items; 0 = empty */
        size_t slot_cnt; /* a power of two, at least twice cnt */
        char *text;
        size_t text_len, text_size;
};

/* FNV-1a over the kind, the key and the field, with a separator that no
 * length-prefixed pair can fake (the key's length goes in too). */
static uint64_t npsd_sums_hash(int is_set, const char *key, size_t key_len,
                               const char *field, size_t field_len) {
        uint64_t h = UINT64_C(14695981039346656037);
        const uint64_t prime = UINT64_C(1099511628211);

        h = (h ^ (uint64_t)is_set) * prime;
        for (size_t i = 0; i < sizeof(key_len); i++)
                h = (h ^ ((key_len >> (8 * i)) & 0xff)) * prime;
        for (size_t i = 0; i < key_len; i++)
                h = (h ^ (unsigned char)key[i]) * prime;
        for (size_t i = 0; i < field_len; i++)
                h = (h ^ (unsigned char)field[i]) * prime;
        return h;
}

npsd_sums_t *npsd_sums_new(void) {
        return calloc(1, sizeof(npsd_sums_t));
}

void npsd_sums_destroy(npsd_sums_t *s) {
        if (!s)
                return;
        free(s->items);
        free(s->slots);
        free(s->text);
        free(s);
}

void npsd_sums_reset(npsd_sums_t *s) {
        s->cnt = 0;
        s->text_len = 0;
        if (s->slots)
                memset(s->slots, 0, s->slot_cnt * sizeof(*s->slots));
}

size_t npsd_sums_count(const npsd_sums_t *s) {
        return s->cnt;
}

void npsd_sums_get(const npsd_sums_t *s, size_t i, npsd_sums_entry_t *e) {
        const npsd_sums_item_t *it = &s->items[i];

        e->is_set = it->is_set;
        e->key = s->text + it->key_off;
        e->key_len = it->key_len;
        e->field = s->text + it->field_off;
        e->field_len = it->field_len;
        e->by = it->by;
}

static int npsd_sums_same(const npsd_sums_t *s, const npsd_sums_item_t *it,
                          uint64_t hash, int is_set, const char *key,
                          size_t key_len, const char *field,
                          size_t field_len) {
        return it->hash == hash && it->is_set == is_set &&
               it->key_len == key_len && it->field_len == field_len &&
               !memcmp(s->text + it->key_off, key, key_len) &&
               !memcmp(s->text + it->field_off, field, field_len);
}

/* Doubles the slot table (or makes the first) and puts every entry back. */
static int npsd_sums_rehash(npsd_sums_t *s) {
        size_t n = s->slot_cnt ? s->slot_cnt * 2 : 256;
        size_t *slots = calloc(n, sizeof(*slots));

        if (!slots)
                return -1;
        for (size_t i = 0; i < s->cnt; i++) {
                size_t j = (size_t)s->items[i].hash & (n - 1);
                while (slots[j])
                        j = (j + 1) & (n - 1);
                slots[j] = i + 1;
        }
        free(s->slots);
        s->slots = slots;
        s->slot_cnt = n;
        return 0;
}

/* Copies p[0..len) and a NUL onto the text buffer; *off gets its place. */
static int npsd_sums_text(npsd_sums_t *s, const char *p, size_t len,
                          size_t *off) {
        if (s->text_size - s->text_len < len + 1) {
                size_t n = s->text_size ? s->text_size : 4096;
                char *t;
                while (n - s->text_len < len + 1)
                        n *= 2;
                if (!(t = realloc(s->text, n)))
                        return -1;
                s->text = t;
                s->text_size = n;
        }
        memcpy(s->text + s->text_len, p, len);
        s->text[s->text_len + len] = '\0';
        *off = s->text_len;
        s->text_len += len + 1;
        return 0;
}

/* The entry of (is_set, key, field), made (with by 0) when new; NULL when
 * out of memory. */
static npsd_sums_item_t *npsd_sums_find(npsd_sums_t *s, int is_set,
                                        const char *key, size_t key_len,
                                        const char *field, size_t field_len) {
        uint64_t hash = npsd_sums_hash(is_set, key, key_len, field, field_len);
        npsd_sums_item_t *it;
        size_t j, text_len = s->text_len;

        if ((s->cnt + 1) * 2 > s->slot_cnt && npsd_sums_rehash(s) == -1)
                return NULL;
        for (j = (size_t)hash & (s->slot_cnt - 1); s->slots[j];
             j = (j + 1) & (s->slot_cnt - 1)) {
                it = &s->items[s->slots[j] - 1];
                if (npsd_sums_same(s, it, hash, is_set, key, key_len, field,
                                   field_len))
                        return it;
        }
        if (s->cnt == s->size) {
                size_t n = s->size ? s->size * 2 : 128;
                npsd_sums_item_t *items = realloc(s->items, n * sizeof(*items));
                if (!items)
                        return NULL;
                s->items = items;
                s->size = n;
        }
        it = &s->items[s->cnt];
        memset(it, 0, sizeof(*it));
        if (npsd_sums_text(s, key, key_len, &it->key_off) == -1 ||
            npsd_sums_text(s, field, field_len, &it->field_off) == -1) {
                s->text_len = text_len;
                return NULL;
        }
        it->hash = hash;
        it->key_len = key_len;
        it->field_len = field_len;
        it->is_set = is_set;
        s->slots[j] = ++s->cnt;
        return it;
}

int npsd_sums_incr(npsd_sums_t *s, const char *key, size_t key_len,
                   const char *field, size_t field_len, long long by) {
        npsd_sums_item_t *it =
                npsd_sums_find(s, 0, key, key_len, field, field_len);
        long long sum;

        if (!it)
                return -1;
        /* a new entry holds 0, so only an existing one can overflow, and
         * the table is then unchanged */
        if (__builtin_add_overflow(it->by, by, &sum))
                return -1;
        it->by = sum;
        return 0;
}

int npsd_sums_sadd(npsd_sums_t *s, const char *key, size_t key_len,
                   const char *member, size_t member_len) {
        return npsd_sums_find(s, 1, key, key_len, member, member_len) ? 0 : -1;
}
