/*
 * npsctl account / npsctl top — read the Redis contract (SPEC §7) for
 * people. Read-only: these commands never write to Redis.
 *
 * A field that is absent prints as "—", never as 0: an NPS over zero
 * responses does not exist.
 */
#define _GNU_SOURCE /* asprintf */
#include "npsctl.h"
#include "npsd/npsd_pack.h"
#include "npsd/npsd_state.h"
#include "npsd/npsd_time.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPSCTL_DASH "—"
#define NPSCTL_FLAG "⚑"

static const char *npsctl_slices[] = {
        "relationship", "transactional", "end_user", "admin",
        "decision_maker", "other",
};
static const char *npsctl_health_components[] = {
        "nps", "adoption", "engagement", "support", "followup",
};
static const char *npsctl_view_segments[] = {"smb", "mid_market",
                                             "enterprise"};

/* ANSI colour only for a terminal, and never with NO_COLOR set. */
static int npsctl_color;

static const char *npsctl_c(const char *code) {
        return npsctl_color ? code : "";
}
#define C_RESET npsctl_c("\033[0m")
#define C_BOLD npsctl_c("\033[1m")
#define C_DIM npsctl_c("\033[2m")
#define C_RED npsctl_c("\033[31m")
#define C_GREEN npsctl_c("\033[32m")
#define C_YELLOW npsctl_c("\033[33m")

/* A hash as HGETALL returned it (flat field, value array). */
typedef struct npsctl_hash_s {
        redisReply *r;
} npsctl_hash_t;

static const char *npsctl_hget(const npsctl_hash_t *h, const char *field) {
        size_t i;

        if (!h->r || h->r->type != REDIS_REPLY_ARRAY)
                return NULL;
        for (i = 0; i + 1 < h->r->elements; i += 2) {
                const redisReply *f = h->r->element[i];
                const redisReply *v = h->r->element[i + 1];

                if (f->type == REDIS_REPLY_STRING && !strcmp(f->str, field))
                        return v->type == REDIS_REPLY_STRING ? v->str : NULL;
        }
        return NULL;
}

static const char *npsctl_hgetf(const npsctl_hash_t *h, char *tmp,
                                size_t size, const char *slice,
                                const char *field) {
        if (!slice)
                return npsctl_hget(h, field);
        snprintf(tmp, size, "%s.%s", slice, field);
        return npsctl_hget(h, tmp);
}

static size_t npsctl_hash_len(const npsctl_hash_t *h) {
        return h->r && h->r->type == REDIS_REPLY_ARRAY ? h->r->elements / 2
                                                         : 0;
}

static int npsctl_parse_num(const char *s, double *v) {
        char *end;

        if (!s || !*s)
                return -1;
        *v = strtod(s, &end);
        return *end || !isfinite(*v) ? -1 : 0;
}

/* NPS-like value with a sign and one decimal; "—" when absent, the raw
 * text when it is not a number. Returns buf. */
static const char *npsctl_fmt_signed(const char *s, char *buf, size_t size) {
        double v;

        if (!s)
                return NPSCTL_DASH;
        if (npsctl_parse_num(s, &v))
                return s;
        snprintf(buf, size, "%+.1f", v == 0 ? 0.0 : v);
        return buf;
}

static const char *npsctl_fmt_1(const char *s, char *buf, size_t size) {
        double v;

        if (!s)
                return NPSCTL_DASH;
        if (npsctl_parse_num(s, &v))
                return s;
        snprintf(buf, size, "%.1f", v);
        return buf;
}

static const char *npsctl_or_dash(const char *s) {
        return s && *s ? s : NPSCTL_DASH;
}

/* printf's field widths count bytes; "—" and names with accents are
 * several bytes but one column. Pads by code points instead: width > 0
 * right-aligns, width < 0 left-aligns. */
static void npsctl_fpad(FILE *fp, const char *s, int width) {
        int cols = 0, pad;
        const char *p;

        for (p = s; *p; p++)
                cols += ((unsigned char)*p & 0xC0) != 0x80;
        pad = (width < 0 ? -width : width) - cols;
        if (width > 0)
                for (; pad > 0; pad--)
                        fputc(' ', fp);
        fputs(s, fp);
        if (width < 0)
                for (; pad > 0; pad--)
                        fputc(' ', fp);
}

/* 1234567 -> "1,234,567" (ARR reads better grouped). */
static const char *npsctl_fmt_grouped(const char *s, char *buf, size_t size) {
        char digits[32];
        double v;
        size_t n, i, o = 0;

        if (!s)
                return NPSCTL_DASH;
        if (npsctl_parse_num(s, &v) || fabs(v) >= 1e15)
                return s;
        snprintf(digits, sizeof(digits), "%.0f", fabs(v));
        n = strlen(digits);
        if (v < 0 && o + 1 < size)
                buf[o++] = '-';
        for (i = 0; i < n && o + 2 < size; i++) {
                if (i && (n - i) % 3 == 0)
                        buf[o++] = ',';
                buf[o++] = digits[i];
        }
        buf[o] = '\0';
        return buf;
}

static const char *npsctl_band_color(const char *band) {
        if (!band)
                return "";
        if (!strcmp(band, "red"))
                return C_RED;
        if (!strcmp(band, "yellow"))
                return C_YELLOW;
        if (!strcmp(band, "green"))
                return C_GREEN;
        return "";
}

/* Days from today (UTC, NPSD_NOW honoured) to a YYYY-MM-DD date. */
static int npsctl_days_until(const char *date, int *days) {
        int32_t d;

        if (!date || npsd_date_parse(date, strlen(date), &d))
                return -1;
        *days = d - npsd_time_day(npsctl_now_ms());
        return 0;
}

/* "3h ago" style age of an RFC 3339 timestamp; empty when unparsable. */
static const char *npsctl_fmt_age(const char *ts, char *buf, size_t size) {
        int64_t ms, d;

        buf[0] = '\0';
        if (!ts || npsd_time_parse_rfc3339(ts, strlen(ts), &ms))
                return buf;
        d = (npsctl_now_ms() - ms) / 1000;
        if (d < 0)
                snprintf(buf, size, "in the future");
        else if (d < 90)
                snprintf(buf, size, "%llds ago", (long long)d);
        else if (d < 90 * 60)
                snprintf(buf, size, "%lldm ago", (long long)(d / 60));
        else if (d < 48 * 3600)
                snprintf(buf, size, "%lldh ago", (long long)(d / 3600));
        else
                snprintf(buf, size, "%lldd ago", (long long)(d / 86400));
        return buf;
}

/* Copies at most max_bytes of s without splitting a UTF-8 sequence. */
static const char *npsctl_trunc(const char *s, size_t max_bytes, char *buf,
                                size_t size) {
        size_t n;

        if (!s)
                return NPSCTL_DASH;
        n = strlen(s);
        if (n > max_bytes)
                n = max_bytes;
        if (n >= size)
                n = size - 1;
        while (n > 0 && n < strlen(s) && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--;
        memcpy(buf, s, n);
        buf[n] = '\0';
        return buf;
}

/* One line of window stats: NPS ± moe, CI, n, P/Pa/D, low confidence.
 * slice NULL = the window's "all" fields. */
static void npsctl_print_stats(FILE *fp, const npsctl_hash_t *h,
                               const char *slice) {
        char f[64], b1[32], b2[32], b3[32], b4[32];
        const char *n = npsctl_hgetf(h, f, sizeof(f), slice, "responses");
        const char *nps = npsctl_hgetf(h, f, sizeof(f), slice, "nps");
        const char *moe, *lo, *hi, *p, *pa, *d, *lc;

        if (!n && !nps) {
                fputs("NPS ", fp);
                npsctl_fpad(fp, NPSCTL_DASH, 6);
                fputc('\n', fp);
                return;
        }
        nps = npsctl_fmt_signed(nps, b1, sizeof(b1));
        moe = npsctl_fmt_1(npsctl_hgetf(h, f, sizeof(f), slice, "moe"), b2,
                           sizeof(b2));
        fprintf(fp, "NPS %s", C_BOLD);
        npsctl_fpad(fp, nps, 6);
        fprintf(fp, "%s ± ", C_RESET);
        npsctl_fpad(fp, moe, -5);
        lo = npsctl_fmt_signed(npsctl_hgetf(h, f, sizeof(f), slice, "ci_low"),
                               b3, sizeof(b3));
        hi = npsctl_fmt_signed(npsctl_hgetf(h, f, sizeof(f), slice, "ci_high"),
                               b4, sizeof(b4));
        fputs("  95% CI [", fp);
        npsctl_fpad(fp, lo, 6);
        fputs(", ", fp);
        npsctl_fpad(fp, hi, 6);
        fputs("]  n=", fp);
        npsctl_fpad(fp, npsctl_or_dash(n), -4);
        p = npsctl_or_dash(npsctl_hgetf(h, f, sizeof(f), slice, "promoters"));
        pa = npsctl_or_dash(npsctl_hgetf(h, f, sizeof(f), slice, "passives"));
        d = npsctl_or_dash(npsctl_hgetf(h, f, sizeof(f), slice, "detractors"));
        fprintf(fp, "  P %s / Pa %s / D %s", p, pa, d);
        lc = npsctl_hgetf(h, f, sizeof(f), slice, "low_confidence");
        if (lc && !strcmp(lc, "1"))
                fprintf(fp, "  %s(low confidence)%s", C_YELLOW, C_RESET);
        fputc('\n', fp);
}

/* Fetches HGETALL of every key in one round trip (pipelined, each key
 * routed to its slot's node). Returns 0, or -1 with errstr; replies[] are
 * owned by the caller. */
static int npsctl_hgetall_many(npsctl_redis_t *rd, char **keys, size_t cnt,
                               npsctl_hash_t *out, char *errstr,
                               size_t errstr_size) {
        size_t i;

        npsctl_redis_begin(rd);
        for (i = 0; i < cnt; i++)
                npsctl_redis_cmd(rd, "HGETALL", keys[i], (char *)NULL);
        if (npsctl_redis_exec(rd, errstr, errstr_size))
                return -1;
        for (i = 0; i < cnt; i++)
                out[i].r = npsctl_redis_take(rd, (long)i);
        for (i = 0; i < cnt; i++) {
                if (!out[i].r) {
                        snprintf(errstr, errstr_size, "redis %s: no reply",
                                 keys[i]);
                        return -1;
                }
                if (out[i].r->type == REDIS_REPLY_ERROR) {
                        snprintf(errstr, errstr_size, "redis %s: %s", keys[i],
                                 out[i].r->str);
                        return -1;
                }
        }
        return 0;
}

/* A JSON object of a hash's fields, values kept as the strings they are. */
static json_t *npsctl_hash_json(const npsctl_hash_t *h) {
        json_t *o = json_object();
        size_t i;

        for (i = 0; h->r && h->r->type == REDIS_REPLY_ARRAY &&
                    i + 1 < h->r->elements; i += 2) {
                const redisReply *f = h->r->element[i];
                const redisReply *v = h->r->element[i + 1];

                if (f->type == REDIS_REPLY_STRING &&
                    v->type == REDIS_REPLY_STRING)
                        json_object_set_new(o, f->str,
                                            json_stringn(v->str, v->len));
        }
        return o;
}

static void npsctl_account_usage(FILE *fp) {
        fprintf(fp,
                "usage: npsctl account ID [--windows 30d,90d] [--all] "
                "[--json | --state] [--redis-host H] [--redis-port P] "
                "[--prefix P] ...\n"
                "\n"
                "Prints an account's card from Redis: context, NPS per window "
                "and slice,\n"
                "role gap, trend, benchmark, health and its components, "
                "usage, the open\n"
                "follow-ups with their deadlines (overdue first, at most "
                "10 unless --all)\n"
                "and the recent alerts. --json prints the raw hashes "
                "instead (plus\n"
                "\"followups\", every open loop, and \"alerts\" arrays).\n"
                "--state prints npsd's state record of the account (every "
                "loop, closed\n"
                "ones and follow-ups waiting for their response included) as "
                "JSON.\n"
                "Exits 1 when Redis holds no data for the account.\n");
}

#define NPSCTL_WINDOWS_MAX 8

static void npsctl_print_card(FILE *fp, const char *id,
                              const npsctl_hash_t *acct,
                              const npsctl_hash_t *sum,
                              const npsctl_hash_t *win, char **wnames,
                              int wcnt) {
        char b1[64], b2[64], b3[64];
        const char *v, *band;
        int w, s, days;
        size_t i;

        /* Who */
        fprintf(fp, "%s%s%s", C_BOLD, id, C_RESET);
        if ((v = npsctl_hget(acct, "name")))
                fprintf(fp, " · %s%s%s", C_BOLD, v, C_RESET);
        fputc('\n', fp);
        fprintf(fp, "  segment %s · plan %s · ARR %s · seats %s\n",
                npsctl_or_dash(npsctl_hget(acct, "segment")),
                npsctl_or_dash(npsctl_hget(acct, "plan")),
                npsctl_fmt_grouped(npsctl_hget(acct, "arr"), b1, sizeof(b1)),
                npsctl_or_dash(npsctl_hget(acct, "seats")));
        v = npsctl_hget(acct, "renewal_date");
        fprintf(fp, "  renewal %s", npsctl_or_dash(v));
        if (!npsctl_days_until(v, &days)) {
                if (days >= 0)
                        fprintf(fp, " (%sin %d days%s)",
                                days <= 90 ? C_YELLOW : "", days, C_RESET);
                else
                        fprintf(fp, " (%d days ago)", -days);
        }
        fprintf(fp, " · stage %s · CSM %s\n",
                npsctl_or_dash(npsctl_hget(acct, "lifecycle_stage")),
                npsctl_or_dash(npsctl_hget(acct, "csm_owner")));

        /* NPS per window */
        for (w = 0; w < wcnt; w++) {
                fprintf(fp, "\n  %s%-4s%s %-15s", C_BOLD, wnames[w], C_RESET,
                        "all");
                npsctl_print_stats(fp, &win[w], NULL);
                for (s = 0; s < (int)(sizeof(npsctl_slices) /
                                      sizeof(*npsctl_slices)); s++) {
                        fprintf(fp, "       %-15s", npsctl_slices[s]);
                        npsctl_print_stats(fp, &win[w], npsctl_slices[s]);
                }
        }

        /* Summary */
        fputc('\n', fp);
        v = npsctl_hget(sum, "role_gap_flag");
        fprintf(fp, "  %-16s %s", "role gap (90d)",
                npsctl_fmt_signed(npsctl_hget(sum, "role_gap_90d"), b1,
                                  sizeof(b1)));
        if (v && !strcmp(v, "1"))
                fprintf(fp, "  %s%s flagged%s (end users vs decision makers)",
                        C_RED, NPSCTL_FLAG, C_RESET);
        fputc('\n', fp);
        fprintf(fp, "  %-16s %s vs previous 90d (NPS %s)\n", "trend (90d)",
                npsctl_fmt_signed(npsctl_hget(sum, "trend_90d"), b1,
                                  sizeof(b1)),
                npsctl_fmt_signed(npsctl_hget(sum, "nps_prev_90d"), b2,
                                  sizeof(b2)));
        fprintf(fp, "  %-16s %s (delta %s)\n", "benchmark",
                npsctl_fmt_1(npsctl_hget(sum, "benchmark"), b1, sizeof(b1)),
                npsctl_fmt_signed(npsctl_hget(sum, "benchmark_delta"), b2,
                                  sizeof(b2)));
        /* survey-type medians, for the slices that have responses */
        static const char *const types[] = {"relationship", "transactional"};
        for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++) {
                char f1[48], f2[48];
                snprintf(f1, sizeof(f1), "benchmark.%s", types[i]);
                snprintf(f2, sizeof(f2), "benchmark_delta.%s", types[i]);
                if (!npsctl_hget(sum, f2))
                        continue;
                fprintf(fp, "  %-16s %s (delta %s)\n", types[i],
                        npsctl_fmt_1(npsctl_hget(sum, f1), b1, sizeof(b1)),
                        npsctl_fmt_signed(npsctl_hget(sum, f2), b2,
                                          sizeof(b2)));
        }
        v = npsctl_hget(sum, "last_response_at");
        fprintf(fp, "  %-16s %s (score %s) %s%s%s\n", "last response",
                npsctl_or_dash(v), npsctl_or_dash(npsctl_hget(sum,
                                                              "last_score")),
                C_DIM, npsctl_fmt_age(v, b3, sizeof(b3)), C_RESET);

        band = npsctl_hget(sum, "health_band");
        fprintf(fp, "  %-16s %s%s%s", "health", C_BOLD,
                npsctl_or_dash(npsctl_hget(sum, "health")), C_RESET);
        if (band)
                fprintf(fp, " %s%s%s", npsctl_band_color(band), band, C_RESET);
        fputc('\n', fp);
        fprintf(fp, "  %-16s", "");
        for (i = 0; i < sizeof(npsctl_health_components) /
                            sizeof(*npsctl_health_components); i++) {
                snprintf(b1, sizeof(b1), "health.%s",
                         npsctl_health_components[i]);
                fprintf(fp, "%s%s %s", i ? " · " : " ",
                        npsctl_health_components[i],
                        npsctl_or_dash(npsctl_hget(sum, b1)));
        }
        /* Components under names this CLI does not know yet. */
        for (i = 0; sum->r && sum->r->type == REDIS_REPLY_ARRAY &&
                    i + 1 < sum->r->elements; i += 2) {
                const char *f = sum->r->element[i]->str;
                size_t k, known = 0;

                if (!f || strncmp(f, "health.", 7))
                        continue;
                for (k = 0; k < sizeof(npsctl_health_components) /
                                    sizeof(*npsctl_health_components); k++)
                        known |= !strcmp(f + 7, npsctl_health_components[k]);
                if (!known)
                        fprintf(fp, " · %s %s", f + 7,
                                npsctl_or_dash(sum->r->element[i + 1]->str));
        }
        fputc('\n', fp);
        fprintf(fp, "  %-16s active users 7d %s (7d before %s) · 30d %s · "
                "features 30d %s\n", "usage",
                npsctl_or_dash(npsctl_hget(sum, "active_users_7d")),
                npsctl_or_dash(npsctl_hget(sum, "active_users_prev_7d")),
                npsctl_or_dash(npsctl_hget(sum, "active_users_30d")),
                npsctl_or_dash(npsctl_hget(sum, "features_30d")));
        v = npsctl_hget(sum, "last_activity_at");
        fprintf(fp, "  %-16s open tickets %s · errors 7d %s · last activity "
                "%s %s%s%s\n", "",
                npsctl_or_dash(npsctl_hget(sum, "open_tickets")),
                npsctl_or_dash(npsctl_hget(sum, "errors_7d")),
                npsctl_or_dash(v), C_DIM, npsctl_fmt_age(v, b3, sizeof(b3)),
                C_RESET);
        fprintf(fp, "  %-16s open detractors %s · overdue %s · closed %s "
                "(on time %s)\n", "closed loop",
                npsctl_or_dash(npsctl_hget(sum, "open_detractors")),
                npsctl_or_dash(npsctl_hget(sum, "overdue_followups")),
                npsctl_or_dash(npsctl_hget(sum, "loops_closed")),
                npsctl_or_dash(npsctl_hget(sum, "loops_closed_on_time")));
        fprintf(fp, "  %-16s %s\n", "updated",
                npsctl_or_dash(npsctl_hget(sum, "updated_at")));
}

/* What the card shows beyond the hashes: the open closed-loop follow-ups
 * (the loops of the account's state record, <prefix>:{A}:st field b, shown
 * as hashes with the fields npsd's loop records have always had) and the
 * recent alerts (list <prefix>:{A}:alert_log, newest first, the alert
 * messages as published, without their account object). Every reply is
 * owned here and freed by npsctl_extra_free(). */
typedef struct npsctl_extra_s {
        redisReply *alerts;   /* LRANGE reply: alert JSON, newest first */
        npsctl_hash_t *loops; /* one hash per open loop, sorted */
        const char **loop_rid;
        size_t loop_cnt;
} npsctl_extra_t;

#define NPSCTL_ALERTS_SHOWN 10 /* npsd keeps the last 10 */

static void npsctl_extra_free(npsctl_extra_t *x) {
        for (size_t i = 0; i < x->loop_cnt; i++)
                if (x->loops[i].r)
                        freeReplyObject(x->loops[i].r);
        free(x->loops);
        free(x->loop_rid);
        if (x->alerts)
                freeReplyObject(x->alerts);
        memset(x, 0, sizeof(*x));
}

/* A reply of strings as HGETALL would give them, owned by the caller
 * (freeReplyObject()); NULL when out of memory. */
static redisReply *npsctl_reply_pairs(const char *const *kv, size_t n) {
        redisReply *r = calloc(1, sizeof(*r));

        if (!r || !(r->element = calloc(n ? n : 1, sizeof(*r->element)))) {
                free(r);
                return NULL;
        }
        r->type = REDIS_REPLY_ARRAY;
        for (size_t i = 0; i < n; i++) {
                redisReply *e = calloc(1, sizeof(*e));
                if (!e || !(e->str = strdup(kv[i]))) {
                        free(e);
                        freeReplyObject(r);
                        return NULL;
                }
                e->type = REDIS_REPLY_STRING;
                e->len = strlen(e->str);
                r->element[r->elements++] = e;
        }
        return r;
}

/* One open loop of the state record as the hash the card reads. */
static redisReply *npsctl_loop_reply(const npsd_state_loop_t *lp) {
        static const char *stages[3] = {"acknowledge", "route", "close"};
        char num[4][24], f[9][32];
        const char *kv[40];
        size_t n = 0;

        kv[n++] = "rid";
        kv[n++] = lp->rid;
        kv[n++] = "owner";
        kv[n++] = lp->owner;
        snprintf(num[0], sizeof(num[0]), "%lld", (long long)lp->submitted_ms);
        kv[n++] = "submitted_ms";
        kv[n++] = num[0];
        kv[n++] = "submitted_at";
        kv[n++] = lp->submitted_at;
        for (int s = 0; s < 3; s++) {
                snprintf(f[s * 3], sizeof(f[0]), "%s_due", stages[s]);
                snprintf(num[1 + s], sizeof(num[0]), "%lld",
                         (long long)lp->due_ms[s]);
                kv[n++] = f[s * 3];
                kv[n++] = num[1 + s];
                if (lp->met_at[s][0]) {
                        snprintf(f[s * 3 + 1], sizeof(f[0]), "%s_at",
                                 stages[s]);
                        kv[n++] = f[s * 3 + 1];
                        kv[n++] = lp->met_at[s];
                }
                if (lp->status[s] != NPSD_STAGE_OPEN) {
                        snprintf(f[s * 3 + 2], sizeof(f[0]), "%s_missed",
                                 stages[s]);
                        kv[n++] = f[s * 3 + 2];
                        kv[n++] = lp->status[s] == NPSD_STAGE_MISSED ? "1"
                                                                     : "0";
                }
        }
        kv[n++] = "overdue";
        kv[n++] = lp->overdue ? "1" : "0";
        return npsctl_reply_pairs(kv, n);
}

static int64_t npsctl_hget_ll(const npsctl_hash_t *h, const char *field) {
        const char *v = npsctl_hget(h, field);

        return v ? strtoll(v, NULL, 10) : 0;
}

/* A loop npsd has marked overdue (a deadline missed, not closed). */
static int npsctl_loop_is_overdue(const npsctl_hash_t *lp) {
        const char *ov = npsctl_hget(lp, "overdue");

        return ov && !strcmp(ov, "1");
}

/* Overdue loops first (they need someone now), then the oldest (the one
 * closest to its deadlines), then by id, so that the card and --json list
 * them in the same stable order and a capped card shows the urgent ones. */
static int npsctl_loop_cmp(const void *a, const void *b, void *opaque) {
        const npsctl_extra_t *x = opaque;
        size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
        int oa = npsctl_loop_is_overdue(&x->loops[ia]);
        int ob = npsctl_loop_is_overdue(&x->loops[ib]);
        int64_t sa = npsctl_hget_ll(&x->loops[ia], "submitted_ms");
        int64_t sb = npsctl_hget_ll(&x->loops[ib], "submitted_ms");

        if (oa != ob)
                return oa ? -1 : 1;
        if (sa != sb)
                return sa < sb ? -1 : 1;
        return strcmp(x->loop_rid[ia], x->loop_rid[ib]);
}

/* One round trip: the state record and the alert log. The open loops
 * come from the record (npsd_state_decode(): the same code as npsd's).
 * Returns 0, or -1 with errstr. */
static int npsctl_extra_fetch(npsctl_redis_t *rd, const npsctl_opts_t *opts,
                              const char *id, npsctl_extra_t *x,
                              char *errstr, size_t errstr_size) {
        char key[2048], stop[16];
        redisReply *st;
        npsd_state_t state;
        size_t *order = NULL, i;

        memset(x, 0, sizeof(*x));
        npsd_state_init(&state);
        /* one account's keys share its {id} slot: one node answers both */
        if (strlen(opts->prefix) + strlen(id) > 1024) {
                snprintf(errstr, errstr_size, "prefix and id too long");
                return -1;
        }
        npsctl_redis_begin(rd);
        snprintf(key, sizeof(key), "%s:{%s}:st", opts->prefix, id);
        npsctl_redis_cmd(rd, "HGET", key, "b", (char *)NULL);
        snprintf(key, sizeof(key), "%s:{%s}:alert_log", opts->prefix, id);
        snprintf(stop, sizeof(stop), "%d", NPSCTL_ALERTS_SHOWN - 1);
        npsctl_redis_cmd(rd, "LRANGE", key, "0", stop, (char *)NULL);
        if (npsctl_redis_exec(rd, errstr, errstr_size))
                return -1;
        st = npsctl_redis_take(rd, 0);
        x->alerts = npsctl_redis_take(rd, 1);
        if (!st || !x->alerts) {
                if (st)
                        freeReplyObject(st);
                snprintf(errstr, errstr_size, "redis: no reply");
                return -1;
        }
        if (st->type == REDIS_REPLY_ERROR ||
            x->alerts->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "redis: %s",
                         st->type == REDIS_REPLY_ERROR ? st->str
                                                       : x->alerts->str);
                freeReplyObject(st);
                return -1;
        }
        if (st->type == REDIS_REPLY_STRING &&
            npsd_state_decode(&state, (const unsigned char *)st->str, st->len,
                              errstr, errstr_size)) {
                freeReplyObject(st);
                return -1;
        }
        freeReplyObject(st);
        if (!state.loop_cnt)
                goto done;
        x->loops = calloc(state.loop_cnt, sizeof(*x->loops));
        x->loop_rid = calloc(state.loop_cnt, sizeof(*x->loop_rid));
        order = calloc(state.loop_cnt, sizeof(*order));
        if (!x->loops || !x->loop_rid || !order)
                goto oom;
        for (i = 0; i < state.loop_cnt; i++) {
                if (state.loops[i].closed)
                        continue;
                if (!(x->loops[x->loop_cnt].r =
                              npsctl_loop_reply(&state.loops[i])))
                        goto oom;
                /* the rid lives in the reply: element 1 */
                x->loop_rid[x->loop_cnt] = x->loops[x->loop_cnt].r->element[1]->str;
                x->loop_cnt++;
        }
        /* sort through an index: the hashes and ids move together */
        for (i = 0; i < x->loop_cnt; i++)
                order[i] = i;
        qsort_r(order, x->loop_cnt, sizeof(*order), npsctl_loop_cmp, x);
        {
                npsctl_hash_t *sl = calloc(x->loop_cnt + 1, sizeof(*sl));
                const char **sr = calloc(x->loop_cnt + 1, sizeof(*sr));
                if (!sl || !sr) {
                        free(sl);
                        free(sr);
                        goto oom;
                }
                for (i = 0; i < x->loop_cnt; i++) {
                        sl[i] = x->loops[order[i]];
                        sr[i] = x->loop_rid[order[i]];
                }
                free(x->loops);
                free(x->loop_rid);
                x->loops = sl;
                x->loop_rid = sr;
        }
done:
        free(order);
        npsd_state_free(&state);
        return 0;
oom:
        free(order);
        npsd_state_free(&state);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
}

/* npsctl account --state: the decoded state record as JSON. Returns the
 * exit code (1: no record, or Redis failed). */
static int npsctl_state_print(npsctl_redis_t *rd, const npsctl_opts_t *opts,
                              const char *id) {
        char key[2048], errstr[512];
        redisReply *r;
        npsd_state_t st;
        json_t *o;
        char *js;
        int rc = 1;

        snprintf(key, sizeof(key), "%s:{%s}:st", opts->prefix, id);
        npsctl_redis_begin(rd);
        npsctl_redis_cmd(rd, "HGET", key, "b", (char *)NULL);
        if (npsctl_redis_exec(rd, errstr, sizeof(errstr))) {
                fprintf(stderr, "npsctl account: %s\n", errstr);
                return 1;
        }
        if (!(r = npsctl_redis_take(rd, 0)) || r->type != REDIS_REPLY_STRING) {
                fprintf(stderr, "npsctl account: no state record for account "
                        "\"%s\" (key %s)\n", id, key);
                if (r)
                        freeReplyObject(r);
                return 1;
        }
        npsd_state_init(&st);
        if (npsd_state_decode(&st, (const unsigned char *)r->str, r->len,
                              errstr, sizeof(errstr))) {
                fprintf(stderr, "npsctl account: %s\n", errstr);
        } else if ((o = npsd_state_json(&st))) {
                if ((js = json_dumps(o, JSON_INDENT(2)))) {
                        printf("%s\n", js);
                        free(js);
                        rc = 0;
                }
                json_decref(o);
        }
        npsd_state_free(&st);
        freeReplyObject(r);
        return rc;
}

/* One stage of a loop: met (on time or late), missed, or still open with
 * the time left. */
static void npsctl_print_stage(FILE *fp, const npsctl_hash_t *lp,
                               const char *stage) {
        char f[64], b[64], dbuf[NPSD_TIME_BUFSZ];
        const char *due, *at, *missed;
        int64_t due_ms, left;

        snprintf(f, sizeof(f), "%s_due_at", stage);
        due = npsctl_hget(lp, f);
        snprintf(f, sizeof(f), "%s_at", stage);
        at = npsctl_hget(lp, f);
        snprintf(f, sizeof(f), "%s_missed", stage);
        missed = npsctl_hget(lp, f);
        snprintf(f, sizeof(f), "%s_due", stage);
        due_ms = npsctl_hget_ll(lp, f);
        if (!due && npsctl_hget(lp, f))
                due = npsd_time_format(due_ms, dbuf);

        fprintf(fp, "      %-12s ", stage);
        if (at && missed && !strcmp(missed, "1")) {
                snprintf(b, sizeof(b), "met late %s", at);
                fprintf(fp, "%s", C_YELLOW);
        } else if (at) {
                snprintf(b, sizeof(b), "met %s", at);
                fprintf(fp, "%s", C_GREEN);
        } else if (missed && !strcmp(missed, "1")) {
                snprintf(b, sizeof(b), "MISSED");
                fprintf(fp, "%s", C_RED);
        } else if (due_ms && (left = due_ms - npsctl_now_ms()) < 0) {
                snprintf(b, sizeof(b), "past due"); /* timer not run yet */
                fprintf(fp, "%s", C_RED);
        } else if (due_ms) {
                left /= 1000;
                if (left < 48 * 3600)
                        snprintf(b, sizeof(b), "open, %lldh left",
                                 (long long)(left / 3600));
                else
                        snprintf(b, sizeof(b), "open, %lldd left",
                                 (long long)(left / 86400));
        } else {
                snprintf(b, sizeof(b), "open");
        }
        npsctl_fpad(fp, b, -34);
        fprintf(fp, "%s %sdue %s%s\n", C_RESET, C_DIM, npsctl_or_dash(due),
                C_RESET);
}

#define NPSCTL_LOOPS_SHOWN 10 /* follow-ups on the card without --all */

/* The open loops in npsctl_loop_cmp() order (overdue first): all of them
 * with all != 0, else at most NPSCTL_LOOPS_SHOWN and a line counting the
 * rest, so that an account with dozens of open detractors still fits on a
 * screen with the urgent ones in view. */
static void npsctl_print_followups(FILE *fp, const npsctl_extra_t *x,
                                   int all) {
        static const char *stages[] = {"acknowledge", "route", "close"};
        size_t overdue = 0, shown = x->loop_cnt;

        for (size_t i = 0; i < x->loop_cnt; i++)
                overdue += npsctl_loop_is_overdue(&x->loops[i]);
        if (!all && shown > NPSCTL_LOOPS_SHOWN)
                shown = NPSCTL_LOOPS_SHOWN;
        fprintf(fp, "  %-16s %zu open", "follow-ups", x->loop_cnt);
        if (overdue)
                fprintf(fp, " (%s%zu overdue%s)", C_RED, overdue, C_RESET);
        fputc('\n', fp);
        for (size_t i = 0; i < shown; i++) {
                const npsctl_hash_t *lp = &x->loops[i];
                const char *owner = npsctl_hget(lp, "owner");

                fprintf(fp, "    %s%s%s · submitted %s", C_BOLD,
                        x->loop_rid[i], C_RESET,
                        npsctl_or_dash(npsctl_hget(lp, "submitted_at")));
                if (owner && *owner)
                        fprintf(fp, " · owner %s", owner);
                if (npsctl_loop_is_overdue(lp))
                        fprintf(fp, " · %soverdue%s", C_RED, C_RESET);
                fputc('\n', fp);
                for (size_t s = 0; s < 3; s++)
                        npsctl_print_stage(fp, lp, stages[s]);
        }
        if (shown < x->loop_cnt)
                fprintf(fp, "    … and %zu more; --all to list them\n",
                        x->loop_cnt - shown);
}

/* A JSON number as short text ("-12.5", "30"), a string as itself, "—"
 * for anything else. Returns buf or a constant. */
static const char *npsctl_json_num(const json_t *v, char *buf, size_t size) {
        if (json_is_integer(v)) {
                snprintf(buf, size, "%lld", (long long)json_integer_value(v));
                return buf;
        }
        if (json_is_real(v)) {
                snprintf(buf, size, "%.1f", json_real_value(v));
                return buf;
        }
        if (json_is_string(v))
                return json_string_value(v);
        return NPSCTL_DASH;
}

/* A one-line human summary of an alert's details, by type; other types
 * show their details as compact JSON. Returns buf. */
static const char *npsctl_alert_summary(const char *type, json_t *d,
                                        char *buf, size_t size) {
        char n1[32], n2[32], n3[32];
#define NUM(k, b) npsctl_json_num(json_object_get(d, k), b, sizeof(b))
        if (!type || !json_is_object(d)) {
                snprintf(buf, size, "%s", "");
        } else if (!strcmp(type, "role_gap")) {
                snprintf(buf, size, "gap %s: end users %s vs decision makers "
                         "%s (%s)", NUM("role_gap", n1), NUM("end_user_nps", n2),
                         NUM("decision_maker_nps", n3),
                         npsctl_or_dash(json_string_value(
                                 json_object_get(d, "window"))));
        } else if (!strcmp(type, "nps_drop")) {
                char a[32], b[32];
                snprintf(buf, size, "trend %s: NPS %s vs %s before (n=%s / "
                         "%s)", NUM("trend", n1), NUM("nps", n2),
                         NUM("nps_prev", n3), NUM("responses", a),
                         NUM("responses_prev", b));
        } else if (!strcmp(type, "health_band")) {
                snprintf(buf, size, "%s → %s (health %s)",
                         npsctl_or_dash(json_string_value(
                                 json_object_get(d, "from"))),
                         npsctl_or_dash(json_string_value(
                                 json_object_get(d, "to"))),
                         NUM("health", n1));
        } else if (!strcmp(type, "usage_drop")) {
                snprintf(buf, size, "active users 7d %s vs %s the 7 days "
                         "before", NUM("active_users_7d", n1),
                         NUM("active_users_prev_7d", n2));
        } else if (!strcmp(type, "followup_overdue")) {
                const char *met = json_string_value(
                        json_object_get(d, "met_at"));
                int o = snprintf(buf, size, "response %s: %s due %s",
                                 npsctl_or_dash(json_string_value(
                                         json_object_get(d,
                                                         "response_event_id"))),
                                 npsctl_or_dash(json_string_value(
                                         json_object_get(d, "stage"))),
                                 npsctl_or_dash(json_string_value(
                                         json_object_get(d, "due_at"))));
                if (met && o > 0 && (size_t)o < size)
                        snprintf(buf + o, size - (size_t)o, ", met %s", met);
        } else {
                char *js = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
                snprintf(buf, size, "%s", js ? js : "");
                free(js);
        }
#undef NUM
        return buf;
}

static void npsctl_print_alerts(FILE *fp, const npsctl_extra_t *x) {
        size_t n = x->alerts && x->alerts->type == REDIS_REPLY_ARRAY
                           ? x->alerts->elements
                           : 0;

        if (n)
                fprintf(fp, "  %-16s %zu, newest first\n", "recent alerts", n);
        else
                fprintf(fp, "  %-16s %s\n", "recent alerts", NPSCTL_DASH);
        for (size_t i = 0; i < n; i++) {
                const redisReply *e = x->alerts->element[i];
                char err[256] = "not a string";
                json_t *a = e->type == REDIS_REPLY_STRING
                                    ? npsd_pack_decode(e->str, e->len, err,
                                                       sizeof(err))
                                    : NULL;
                const char *type = json_string_value(json_object_get(a, "type"));
                const char *sev =
                        json_string_value(json_object_get(a, "severity"));
                char sum[512];

                fputs("    ", fp);
                npsctl_fpad(fp, npsctl_or_dash(json_string_value(
                                    json_object_get(a, "fired_at"))),
                            -24);
                fputc(' ', fp); /* a fired_at with milliseconds fills 24 */
                fputs(sev && !strcmp(sev, "high")
                              ? C_RED
                              : (sev && !strcmp(sev, "medium") ? C_YELLOW
                                                                : ""),
                      fp);
                npsctl_fpad(fp, npsctl_or_dash(sev), -7);
                fprintf(fp, "%s ", C_RESET);
                npsctl_fpad(fp, npsctl_or_dash(type), -17);
                fprintf(fp, " %s\n",
                        a ? npsctl_alert_summary(type,
                                                 json_object_get(a, "details"),
                                                 sum, sizeof(sum))
                          : "(unreadable)");
                json_decref(a);
        }
}

/* Adds <stage>_due_at (RFC 3339) where the loop hash holds only the
 * epoch-ms <stage>_due (npsctl_loop_reply() builds it from the state
 * record with <stage>_due only), so that --json always carries both. */
static void npsctl_loop_due_at(json_t *lo) {
        static const char *stages[] = {"acknowledge", "route", "close"};
        char f[64], buf[NPSD_TIME_BUFSZ];

        for (size_t s = 0; s < 3; s++) {
                const char *ms;
                snprintf(f, sizeof(f), "%s_due", stages[s]);
                ms = json_string_value(json_object_get(lo, f));
                snprintf(f, sizeof(f), "%s_due_at", stages[s]);
                if (!ms || json_object_get(lo, f))
                        continue;
                json_object_set_new(
                        lo, f,
                        json_string(npsd_time_format(strtoll(ms, NULL, 10),
                                                     buf)));
        }
}

/* The "followups" and "alerts" members of --json: loop hashes as strings
 * (like every other hash there) with their response id, alerts as the
 * objects they were published as (less their account object: see
 * alert_log), newest first. */
static void npsctl_extra_json(json_t *o, const npsctl_extra_t *x) {
        json_t *fl = json_array(), *al = json_array();
        size_t n = x->alerts && x->alerts->type == REDIS_REPLY_ARRAY
                           ? x->alerts->elements
                           : 0;

        for (size_t i = 0; i < x->loop_cnt; i++) {
                json_t *lo = npsctl_hash_json(&x->loops[i]);
                json_object_set_new(lo, "response_event_id",
                                    json_string(x->loop_rid[i]));
                npsctl_loop_due_at(lo);
                json_array_append_new(fl, lo);
        }
        for (size_t i = 0; i < n; i++) {
                const redisReply *e = x->alerts->element[i];
                char err[256] = "not a string";
                json_t *a = e->type == REDIS_REPLY_STRING
                                    ? npsd_pack_decode(e->str, e->len, err,
                                                       sizeof(err))
                                    : NULL;
                /* an entry that is not an alert shows why, in its place */
                json_array_append_new(al, a ? a : json_pack("{ss}", "error",
                                                            err));
        }
        json_object_set_new(o, "followups", fl);
        json_object_set_new(o, "alerts", al);
}

int npsctl_account_main(npsctl_opts_t *opts, int argc, char **argv) {
        char *keys[2 + NPSCTL_WINDOWS_MAX] = {0};
        npsctl_hash_t h[2 + NPSCTL_WINDOWS_MAX];
        char wbuf[256], *wnames[NPSCTL_WINDOWS_MAX], *save, *tok;
        const char *id = NULL, *windows = "30d,90d", *v;
        int i, r, json = 0, all = 0, wcnt = 0, rc = 1, nkeys, any = 0;
        int state = 0;
        npsctl_redis_t *rd = NULL;
        npsctl_extra_t extra;
        char errstr[512];

        memset(h, 0, sizeof(h));
        memset(&extra, 0, sizeof(extra));
        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        npsctl_account_usage(stdout);
                        return 0;
                }
                if (!strcmp(argv[i], "--json")) {
                        json = 1;
                } else if (!strcmp(argv[i], "--state")) {
                        state = 1;
                } else if (!strcmp(argv[i], "--all")) {
                        all = 1;
                } else if ((r = npsctl_optval(argc, argv, &i, "--windows",
                                              &v))) {
                        if (r < 0)
                                return 2;
                        windows = v;
                } else if ((r = npsctl_common_opt(opts, argc, argv, &i))) {
                        if (r < 0)
                                return 2;
                } else if (argv[i][0] != '-' && !id) {
                        id = argv[i];
                } else {
                        fprintf(stderr, "npsctl account: unknown argument "
                                "\"%s\"\n", argv[i]);
                        npsctl_account_usage(stderr);
                        return 2;
                }
        }
        if (!id) {
                npsctl_account_usage(stderr);
                return 2;
        }
        snprintf(wbuf, sizeof(wbuf), "%s", windows);
        for (tok = strtok_r(wbuf, ", ", &save); tok && wcnt < NPSCTL_WINDOWS_MAX;
             tok = strtok_r(NULL, ", ", &save))
                wnames[wcnt++] = tok;

        npsctl_color = !json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");

        nkeys = 2 + wcnt;
        if (asprintf(&keys[0], "%s:{%s}:account", opts->prefix, id) < 0 ||
            asprintf(&keys[1], "%s:{%s}:summary", opts->prefix, id) < 0) {
                keys[0] = keys[1] = NULL;
                goto done_keys;
        }
        for (i = 0; i < wcnt; i++)
                if (asprintf(&keys[2 + i], "%s:{%s}:w:%s", opts->prefix, id,
                             wnames[i]) < 0) {
                        keys[2 + i] = NULL;
                        goto done_keys;
                }

        rd = npsctl_redis_open(opts, errstr, sizeof(errstr));
        if (!rd) {
                fprintf(stderr, "npsctl account: %s\n", errstr);
                goto done_keys;
        }
        if (state) {
                rc = npsctl_state_print(rd, opts, id);
                goto done_replies;
        }
        if (npsctl_hgetall_many(rd, keys, (size_t)nkeys, h, errstr,
                                sizeof(errstr))) {
                fprintf(stderr, "npsctl account: %s\n", errstr);
                goto done_replies;
        }
        if (npsctl_extra_fetch(rd, opts, id, &extra, errstr,
                               sizeof(errstr))) {
                fprintf(stderr, "npsctl account: %s\n", errstr);
                goto done_replies;
        }
        for (i = 0; i < nkeys; i++)
                any |= npsctl_hash_len(&h[i]) > 0;
        if (!any) {
                fprintf(stderr, "npsctl account: no data for account \"%s\" "
                        "(keys %s:{%s}:*)\n", id, opts->prefix, id);
                goto done_replies;
        }

        if (json) {
                json_t *o = json_object(), *wo = json_object();

                json_object_set_new(o, "account_id", json_string(id));
                json_object_set_new(o, "account", npsctl_hash_json(&h[0]));
                json_object_set_new(o, "summary", npsctl_hash_json(&h[1]));
                for (i = 0; i < wcnt; i++)
                        json_object_set_new(wo, wnames[i],
                                            npsctl_hash_json(&h[2 + i]));
                json_object_set_new(o, "windows", wo);
                npsctl_extra_json(o, &extra);
                json_dumpf(o, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
                fputc('\n', stdout);
                json_decref(o);
        } else {
                npsctl_print_card(stdout, id, &h[0], &h[1], &h[2], wnames,
                                  wcnt);
                fputc('\n', stdout);
                npsctl_print_followups(stdout, &extra, all);
                npsctl_print_alerts(stdout, &extra);
        }
        rc = fflush(stdout) ? 1 : 0;

done_replies:
        npsctl_extra_free(&extra);
        for (i = 0; i < nkeys; i++)
                if (h[i].r)
                        freeReplyObject(h[i].r);
        npsctl_redis_close(rd);
done_keys:
        for (i = 0; i < nkeys; i++)
                free(keys[i]);
        return rc;
}

/*
 * top
 */

static void npsctl_top_usage(FILE *fp) {
        fprintf(fp,
                "usage: npsctl top [--limit N] [--interval S] [--once] "
                "[--redis-host H] [--redis-port P] [--prefix P] ...\n"
                "\n"
                "Live view (refreshes every --interval seconds, default 2; "
                "Ctrl-C quits):\n"
                "cohort NPS (all and per segment, 90d), the --limit (default "
                "10) accounts\n"
                "with the lowest 90d NPS, and the top detractor themes. --once "
                "prints one\n"
                "snapshot without clearing the screen.\n");
}

/* One cohort row: NPS ± moe, n, P/Pa/D. */
static void npsctl_top_cohort(FILE *fp, const char *label,
                              const npsctl_hash_t *h) {
        char b1[32], b2[32];
        const char *lc = npsctl_hget(h, "low_confidence");

        fprintf(fp, "  %-12s %s", label, C_BOLD);
        npsctl_fpad(fp, npsctl_fmt_signed(npsctl_hget(h, "nps"), b1,
                                          sizeof(b1)), 7);
        fprintf(fp, "%s ± ", C_RESET);
        npsctl_fpad(fp, npsctl_fmt_1(npsctl_hget(h, "moe"), b2, sizeof(b2)),
                    -5);
        fputs("  n=", fp);
        npsctl_fpad(fp, npsctl_or_dash(npsctl_hget(h, "responses")), -6);
        fputs(" P ", fp);
        npsctl_fpad(fp, npsctl_or_dash(npsctl_hget(h, "promoters")), -5);
        fputs(" Pa ", fp);
        npsctl_fpad(fp, npsctl_or_dash(npsctl_hget(h, "passives")), -5);
        fputs(" D ", fp);
        npsctl_fpad(fp, npsctl_or_dash(npsctl_hget(h, "detractors")), -5);
        fprintf(fp, "%s\n", lc && !strcmp(lc, "1") ? " (low confidence)" : "");
}

/* Renders one frame into fp. Returns 0, or -1 when Redis failed (the
 * frame then says so). Every key is routed to its own slot's node: the
 * cohorts, the rank and the themes live in slots of their own, an
 * account's summary and context in its {id} slot. */
static int npsctl_top_frame(FILE *fp, npsctl_redis_t *rd,
                            const npsctl_opts_t *opts, int limit,
                            double interval, int once) {
        char b1[64], b2[64], b3[64], b4[64], t[NPSD_TIME_BUFSZ];
        char key[1024], stop[16], errstr[512];
        npsctl_hash_t cohorts[4];
        redisReply *rank = NULL, *themes = NULL, **sums = NULL,
                   **names = NULL;
        size_t i, n = 0;
        int ret = -1;

        memset(cohorts, 0, sizeof(cohorts));
        fprintf(fp, "%snpsctl top%s — redis %s · prefix %s · %s",
                C_BOLD, C_RESET, npsctl_redis_where(rd), opts->prefix,
                npsd_time_format(npsctl_now_ms() / 1000 * 1000, t));
        if (!once)
                fprintf(fp, " · every %gs, Ctrl-C quits", interval);
        fputs("\n\n", fp);
        if (strlen(opts->prefix) > 512) {
                snprintf(errstr, sizeof(errstr), "prefix too long");
                goto redis_fail;
        }

        /* Round trip 1: cohorts, rank, themes. */
        npsctl_redis_begin(rd);
        snprintf(key, sizeof(key), "%s:cohort:all:all:w:90d", opts->prefix);
        npsctl_redis_cmd(rd, "HGETALL", key, (char *)NULL);
        for (i = 0; i < 3; i++) {
                snprintf(key, sizeof(key), "%s:cohort:segment:%s:w:90d",
                         opts->prefix, npsctl_view_segments[i]);
                npsctl_redis_cmd(rd, "HGETALL", key, (char *)NULL);
        }
        snprintf(key, sizeof(key), "%s:rank:nps_90d", opts->prefix);
        snprintf(stop, sizeof(stop), "%d", limit - 1);
        npsctl_redis_cmd(rd, "ZRANGE", key, "0", stop, "WITHSCORES",
                         (char *)NULL);
        snprintf(key, sizeof(key), "%s:themes:detractor:w:90d", opts->prefix);
        npsctl_redis_cmd(rd, "ZREVRANGE", key, "0", "9", "WITHSCORES",
                         (char *)NULL);
        if (npsctl_redis_exec(rd, errstr, sizeof(errstr)))
                goto redis_fail;
        for (i = 0; i < 4; i++)
                cohorts[i].r = npsctl_redis_take(rd, (long)i);
        rank = npsctl_redis_take(rd, 4);
        themes = npsctl_redis_take(rd, 5);
        if (!rank || !themes)
                goto no_reply;

        /* Round trip 2: each ranked account's summary and context. */
        if (rank->type == REDIS_REPLY_ARRAY)
                n = rank->elements / 2;
        if (n) {
                sums = calloc(n, sizeof(*sums));
                names = calloc(n, sizeof(*names));
                if (!sums || !names)
                        goto done;
        }
        npsctl_redis_begin(rd);
        for (i = 0; i < n; i++) {
                const char *id = rank->element[2 * i]->str;

                snprintf(key, sizeof(key), "%s:{%.256s}:summary",
                         opts->prefix, id);
                npsctl_redis_cmd(rd, "HGETALL", key, (char *)NULL);
                snprintf(key, sizeof(key), "%s:{%.256s}:account",
                         opts->prefix, id);
                npsctl_redis_cmd(rd, "HMGET", key, "name", "segment",
                                 (char *)NULL);
        }
        if (n && npsctl_redis_exec(rd, errstr, sizeof(errstr)))
                goto redis_fail;
        for (i = 0; i < n; i++) {
                sums[i] = npsctl_redis_take(rd, (long)(2 * i));
                names[i] = npsctl_redis_take(rd, (long)(2 * i + 1));
                if (!sums[i] || !names[i])
                        goto no_reply;
        }

        fprintf(fp, "%sCOHORT NPS (90d)%s\n", C_BOLD, C_RESET);
        npsctl_top_cohort(fp, "all", &cohorts[0]);
        for (i = 0; i < 3; i++)
                npsctl_top_cohort(fp, npsctl_view_segments[i], &cohorts[i + 1]);

        fprintf(fp, "\n%sAT RISK — lowest NPS (90d)%s\n", C_BOLD, C_RESET);
        if (rank->type == REDIS_REPLY_ERROR) {
                fprintf(fp, "  %sredis: %s%s\n", C_RED, rank->str, C_RESET);
        } else if (!n) {
                fprintf(fp, "  %s (no accounts ranked yet: %s:rank:nps_90d is "
                        "empty)\n", NPSCTL_DASH, opts->prefix);
        } else {
                fprintf(fp, "  %s%-12s %-22s %-11s %7s %6s %5s %7s %9s "
                        "%-12s %s%s\n", C_DIM, "account", "name", "segment",
                        "NPS 90d", "±moe", "n", "trend", "role gap",
                        "health", "last response", C_RESET);
        }
        for (i = 0; i < n; i++) {
                npsctl_hash_t s = {.r = sums[i]};
                const char *id = rank->element[2 * i]->str;
                const char *nps = npsctl_hget(&s, "nps_90d");
                const char *flag = npsctl_hget(&s, "role_gap_flag");
                const char *band = npsctl_hget(&s, "health_band");
                const char *health = npsctl_hget(&s, "health");
                const char *name = NULL, *seg = NULL, *last;
                char hb[48], nm[32];
                int flagged = flag && !strcmp(flag, "1");

                if (names[i]->type == REDIS_REPLY_ARRAY &&
                    names[i]->elements == 2) {
                        if (names[i]->element[0]->type == REDIS_REPLY_STRING)
                                name = names[i]->element[0]->str;
                        if (names[i]->element[1]->type == REDIS_REPLY_STRING)
                                seg = names[i]->element[1]->str;
                }
                /* The rank's score is the 90d NPS when the summary lacks
                 * it (the summary may be mid-update). */
                if (!nps)
                        nps = rank->element[2 * i + 1]->str;
                snprintf(hb, sizeof(hb), "%s %s", health ? health : NPSCTL_DASH,
                         band ? band : "");
                last = npsctl_hget(&s, "last_response_at");
                fputs("  ", fp);
                npsctl_fpad(fp, id, -12);
                fputc(' ', fp);
                npsctl_fpad(fp, npsctl_trunc(name, 22, nm, sizeof(nm)), -22);
                fputc(' ', fp);
                npsctl_fpad(fp, npsctl_or_dash(seg), -11);
                fprintf(fp, " %s", C_BOLD);
                npsctl_fpad(fp, npsctl_fmt_signed(nps, b1, sizeof(b1)), 7);
                fprintf(fp, "%s ", C_RESET);
                npsctl_fpad(fp, npsctl_fmt_1(npsctl_hget(&s, "moe_90d"), b2,
                                             sizeof(b2)), 6);
                fputc(' ', fp);
                npsctl_fpad(fp, npsctl_or_dash(npsctl_hget(&s,
                                                           "responses_90d")),
                            5);
                fputc(' ', fp);
                npsctl_fpad(fp, npsctl_fmt_signed(npsctl_hget(&s, "trend_90d"),
                                                  b3, sizeof(b3)), 7);
                fputc(' ', fp);
                npsctl_fpad(fp, npsctl_fmt_signed(npsctl_hget(&s,
                                                              "role_gap_90d"),
                                                  b4, sizeof(b4)), 7);
                fprintf(fp, " %s%s%s ", flagged ? C_RED : "",
                        flagged ? NPSCTL_FLAG : " ", flagged ? C_RESET : "");
                fputs(npsctl_band_color(band), fp);
                npsctl_fpad(fp, hb, -12);
                fprintf(fp, "%s %s %s%s%s\n", C_RESET, npsctl_or_dash(last),
                        C_DIM, npsctl_fmt_age(last, b1, sizeof(b1)), C_RESET);
        }
        if (n)
                fprintf(fp, "  %s%s = role gap flagged (|end users − decision "
                        "makers| > threshold)%s\n", C_DIM, NPSCTL_FLAG,
                        C_RESET);

        fprintf(fp, "\n%sTOP DETRACTOR THEMES (90d)%s\n  ", C_BOLD, C_RESET);
        if (themes->type == REDIS_REPLY_ERROR)
                fprintf(fp, "%sredis: %s%s", C_RED, themes->str, C_RESET);
        else if (themes->type != REDIS_REPLY_ARRAY || themes->elements < 2)
                fprintf(fp, "%s", NPSCTL_DASH);
        for (i = 0; themes->type == REDIS_REPLY_ARRAY &&
                    i + 1 < themes->elements; i += 2)
                fprintf(fp, "%s%s %s", i ? " · " : "",
                        themes->element[i]->str,
                        themes->element[i + 1]->str);
        fputc('\n', fp);
        ret = 0;
        goto done;

no_reply:
        snprintf(errstr, sizeof(errstr), "no reply");
redis_fail:
        fprintf(fp, "%sredis error: %s%s\n", C_RED, errstr, C_RESET);
done:
        for (i = 0; i < n; i++) {
                if (sums && sums[i])
                        freeReplyObject(sums[i]);
                if (names && names[i])
                        freeReplyObject(names[i]);
        }
        free(sums);
        free(names);
        if (themes)
                freeReplyObject(themes);
        if (rank)
                freeReplyObject(rank);
        for (i = 0; i < 4; i++)
                if (cohorts[i].r)
                        freeReplyObject(cohorts[i].r);
        return ret;
}

int npsctl_top_main(npsctl_opts_t *opts, int argc, char **argv) {
        long long limit = 10;
        double interval = 2;
        int i, r, once = 0, ret = 0;
        npsctl_redis_t *rd = NULL;
        char errstr[512];
        const char *v;
        char *frame;
        size_t frame_len;
        FILE *fp;

        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        npsctl_top_usage(stdout);
                        return 0;
                }
                if (!strcmp(argv[i], "--once")) {
                        once = 1;
                } else if ((r = npsctl_optval(argc, argv, &i, "--limit",
                                              &v))) {
                        if (r < 0 || npsctl_parse_int("--limit", v, 1, 1000,
                                                      &limit))
                                return 2;
                } else if ((r = npsctl_optval(argc, argv, &i, "--interval",
                                              &v))) {
                        if (r < 0 || npsctl_parse_double("--interval", v, 0.1,
                                                         86400, &interval))
                                return 2;
                } else if ((r = npsctl_common_opt(opts, argc, argv, &i))) {
                        if (r < 0)
                                return 2;
                } else {
                        fprintf(stderr, "npsctl top: unknown argument \"%s\"\n",
                                argv[i]);
                        npsctl_top_usage(stderr);
                        return 2;
                }
        }
        npsctl_color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
        npsctl_signals_install();

        if (!once && isatty(STDOUT_FILENO))
                fputs("\033[?25l", stdout); /* hide the cursor */
        do {
                if (!rd) {
                        rd = npsctl_redis_open(opts, errstr, sizeof(errstr));
                        if (!rd && once) {
                                fprintf(stderr, "npsctl top: %s\n", errstr);
                                return 1;
                        }
                }
                /* Render off-screen, then clear and write the frame in one
                 * go so that the terminal never flickers half-drawn. */
                fp = open_memstream(&frame, &frame_len);
                if (!fp)
                        break;
                if (rd) {
                        ret = npsctl_top_frame(fp, rd, opts, (int)limit,
                                               interval, once);
                        if (ret) {
                                /* reconnect next time */
                                npsctl_redis_close(rd);
                                rd = NULL;
                        }
                } else {
                        ret = -1;
                        fprintf(fp, "npsctl top — %s (retrying every %gs)\n",
                                errstr, interval);
                }
                fclose(fp);
                if (!once)
                        fputs("\033[H\033[2J", stdout);
                fwrite(frame, 1, frame_len, stdout);
                fflush(stdout);
                free(frame);
                if (once)
                        break;
                npsctl_sleep_ms((int64_t)(interval * 1000));
        } while (!npsctl_stop);

        if (!once && isatty(STDOUT_FILENO))
                fputs("\033[?25h", stdout);
        fflush(stdout);
        npsctl_redis_close(rd);
        return once && ret ? 1 : 0;
}
