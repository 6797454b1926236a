/*
 * npsctl gen — realistic synthetic traffic for demos and load tests.
 *
 * Everything derives from one seeded PRNG, so a seed and a set of options
 * give the same accounts, users, scores, comments and event ids every run
 * (only timestamps follow the clock unless --now pins it).
 *
 * The hot loop writes JSON into reused fixed buffers with hand-rolled
 * appenders (no malloc, no snprintf per field); librdkafka copies the
 * payload (RD_KAFKA_MSG_F_COPY).
 */
#include "npsctl.h"
#include "npsd/npsd_time.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * PRNG: xoshiro256** seeded through splitmix64.
 */
typedef struct npsctl_rng_s {
        uint64_t s[4];
} npsctl_rng_t;

static uint64_t npsctl_splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void npsctl_rng_seed(npsctl_rng_t *r, uint64_t seed) {
        int i;

        for (i = 0; i < 4; i++)
                r->s[i] = npsctl_splitmix64(&seed);
}

static inline uint64_t npsctl_rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static inline uint64_t npsctl_rng_u64(npsctl_rng_t *r) {
        uint64_t *s = r->s;
        uint64_t result = npsctl_rotl(s[1] * 5, 7) * 9;
        uint64_t t = s[1] << 17;

        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = npsctl_rotl(s[3], 45);
        return result;
}

/* Uniform in [0, 1). */
static inline double npsctl_rng_unit(npsctl_rng_t *r) {
        return (double)(npsctl_rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [lo, hi]. */
static inline long npsctl_rng_range(npsctl_rng_t *r, long lo, long hi) {
        return lo + (long)(npsctl_rng_u64(r) % (uint64_t)(hi - lo + 1));
}

static inline int npsctl_rng_chance(npsctl_rng_t *r, double p) {
        return npsctl_rng_unit(r) < p;
}

/* Standard normal (Box-Muller, one of the pair). */
static double npsctl_rng_normal(npsctl_rng_t *r) {
        double u1 = npsctl_rng_unit(r), u2 = npsctl_rng_unit(r);

        if (u1 < 1e-300)
                u1 = 1e-300;
        return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

#define NPSCTL_PICK(r, arr) ((arr)[npsctl_rng_u64(r) % (sizeof(arr) / sizeof(*(arr)))])

/*
 * JSON writer into a fixed buffer. Payloads are bounded (a few KiB), so a
 * buffer far larger than any payload never overflows; the checks only
 * guard against bugs (the message is then cut and flagged).
 */
#define NPSCTL_BUF_SIZE (64 * 1024)

typedef struct npsctl_buf_s {
        size_t len;
        int overflow;
        char p[NPSCTL_BUF_SIZE];
} npsctl_buf_t;

static inline void npsctl_buf_reset(npsctl_buf_t *b) {
        b->len = 0;
        b->overflow = 0;
}

static inline void npsctl_buf_mem(npsctl_buf_t *b, const void *s, size_t n) {
        if (b->len + n >= sizeof(b->p)) {
                b->overflow = 1;
                return;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
}

static inline void npsctl_buf_str(npsctl_buf_t *b, const char *s) {
        npsctl_buf_mem(b, s, strlen(s));
}

#define npsctl_buf_lit(b, lit) npsctl_buf_mem(b, lit, sizeof(lit) - 1)

static void npsctl_buf_int(npsctl_buf_t *b, long long v) {
        char tmp[24];
        int n = 0;
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                                     : (unsigned long long)v;

        do {
                tmp[sizeof(tmp) - 1 - n++] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                tmp[sizeof(tmp) - 1 - n++] = '-';
        npsctl_buf_mem(b, tmp + sizeof(tmp) - n, (size_t)n);
}

/* A JSON string: quotes, backslashes and control characters escaped;
 * bytes >= 0x80 pass through (the templates are valid UTF-8). */
static void npsctl_buf_jstr_n(npsctl_buf_t *b, const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";
        size_t i, run = 0;

        npsctl_buf_lit(b, "\"");
        for (i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                npsctl_buf_mem(b, s + run, i - run);
                run = i + 1;
                switch (c) {
                case '"': npsctl_buf_lit(b, "\\\""); break;
                case '\\': npsctl_buf_lit(b, "\\\\"); break;
                case '\n': npsctl_buf_lit(b, "\\n"); break;
                case '\t': npsctl_buf_lit(b, "\\t"); break;
                case '\r': npsctl_buf_lit(b, "\\r"); break;
                default: {
                        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4],
                                     hex[c & 15]};
                        npsctl_buf_mem(b, u, 6);
                }
                }
        }
        npsctl_buf_mem(b, s + run, n - run);
        npsctl_buf_lit(b, "\"");
}

static inline void npsctl_buf_jstr(npsctl_buf_t *b, const char *s) {
        npsctl_buf_jstr_n(b, s, strlen(s));
}

/* ,"key":"value" */
static inline void npsctl_buf_kv(npsctl_buf_t *b, const char *key,
                                 const char *val) {
        npsctl_buf_lit(b, ",\"");
        npsctl_buf_str(b, key);
        npsctl_buf_lit(b, "\":");
        npsctl_buf_jstr(b, val);
}

/* Timestamps come in every form SPEC §2 allows: mostly RFC 3339 UTC, some
 * with a non-UTC offset, some as epoch milliseconds. */
static void npsctl_buf_ts(npsctl_buf_t *b, npsctl_rng_t *r, int64_t ms,
                          int vary) {
        char t[NPSD_TIME_BUFSZ];
        double u = vary ? npsctl_rng_unit(r) : 1.0;

        if (u < 0.05) {
                npsctl_buf_int(b, ms);
        } else if (u < 0.10) {
                static const int offs_min[] = {120, 60, -300, 330, 540, -420};
                int off = NPSCTL_PICK(r, offs_min);
                char o[8];
                size_t n;

                npsd_time_format(ms + (int64_t)off * 60000, t);
                n = strlen(t) - 1; /* drop the 'Z' */
                o[0] = off < 0 ? '-' : '+';
                if (off < 0)
                        off = -off;
                o[1] = (char)('0' + off / 600);
                o[2] = (char)('0' + (off / 60) % 10);
                o[3] = ':';
                o[4] = (char)('0' + (off % 60) / 10);
                o[5] = (char)('0' + off % 10);
                npsctl_buf_lit(b, "\"");
                npsctl_buf_mem(b, t, n);
                npsctl_buf_mem(b, o, 6);
                npsctl_buf_lit(b, "\"");
        } else {
                npsd_time_format(ms, t);
                npsctl_buf_jstr(b, t);
        }
}

/*
 * The synthetic world.
 */
enum { SEG_SMB, SEG_MID, SEG_ENT };
static const char *npsctl_segments[] = {"smb", "mid_market", "enterprise"};

/* Role codes. Canonical roles and their aliases are sent as written; the
 * last two count as "other" in npsd. */
enum {
        ROLE_END_USER, ROLE_ADMIN, ROLE_DM, ROLE_ALIAS_USER, ROLE_ALIAS_BUYER,
        ROLE_ALIAS_EXEC, ROLE_NONE, ROLE_CONTRACTOR
};
static const char *npsctl_role_names[] = {
        "end_user", "admin", "decision_maker", "user", "buyer", "executive",
        NULL, "contractor",
};

enum { LANG_EN, LANG_DE, LANG_FR, LANG_ES, LANG_JA };
static const char *npsctl_langs[] = {"en", "de", "fr", "es", "ja"};

#define NPSCTL_USERS_MAX 48

typedef struct npsctl_acct_s {
        char id[16];
        size_t id_len;
        char name[64];
        int segment;
        const char *plan;
        long arr;
        int seats;
        int32_t renewal_day;
        const char *stage;
        const char *csm;
        const char *region;
        double mood;       /* base mean score */
        double role_bias;  /* end users +bias/2, decision makers -bias/2 */
        double slope;      /* score points gained per 90 days (trend) */
        double trouble;    /* 0..1, drives errors and tickets */
        int pain[2];       /* themes its detractors keep raising */
        int pool;          /* distinct active users for usage events */
        int n_users;       /* survey respondents */
        uint8_t role[NPSCTL_USERS_MAX];
        uint8_t lang[NPSCTL_USERS_MAX];
        double cum_weight;
} npsctl_acct_t;

static const char *npsctl_name_a[] = {
        "Acme", "Northwind", "Globex", "Initech", "Umbrella", "Stark",
        "Wayne", "Cyberdyne", "Soylent", "Hooli", "Vandelay", "Pied Piper",
        "Wonka", "Tyrell", "Gringotts", "Oscorp", "Aperture", "Black Mesa",
        "Blue Sun", "Monarch", "Dunder", "Bluth", "Sterling", "Prestige",
        "Nakatomi", "Massive", "Contoso", "Fabrikam", "Tailspin", "Litware",
        "Adatum", "Proseware", "Wingtip", "Lucerne", "Margie", "Alpine",
        "Coho", "Fourth Coffee", "Humongous", "Trey",
};
static const char *npsctl_name_b[] = {
        "Analytics", "Logistics", "Health", "Labs", "Systems", "Retail",
        "Financial", "Robotics", "Foods", "Media", "Industries", "Software",
        "Energy", "Travel", "Security", "Bio", "Networks", "Capital",
        "Learning", "Cloud",
};
static const char *npsctl_csms[] = {
        "alice.martin", "bruno.keller", "chen.wei", "dana.okafor",
        "elena.rossi",
};
static const char *npsctl_regions[] = {"amer", "emea", "apac"};
static const char *npsctl_features[] = {
        "dashboards", "reports", "exports", "alerts", "workflows", "api",
        "sso", "integrations.salesforce", "integrations.slack", "audit_log",
        "custom_fields", "search",
};

/* Themes, in the order of npsd's default lexicon (config/themes.conf). */
#define NPSCTL_THEMES 10
static const char *npsctl_complaints[NPSCTL_THEMES][3] = {
        {"Way too expensive for what we get.",
         "The price increase at renewal was hard to justify.",
         "Pricing per seat makes it costly to roll out to the whole team."},
        {"We had another outage last week and lost half a day.",
         "The app keeps failing during syncs, it feels unstable.",
         "Too many bugs in every release."},
        {"Dashboards are painfully slow to load.",
         "Reports take forever and often time out.",
         "The UI gets sluggish with our data volume."},
        {"Support takes days to answer a ticket.",
         "Our account manager is unresponsive.",
         "Getting help from customer service is a struggle."},
        {"Onboarding was chaotic and nobody owned the setup.",
         "The learning curve for new hires is steep and training is thin.",
         "Implementation took three months longer than promised."},
        {"The Salesforce integration breaks every other week.",
         "The API is missing endpoints we need and webhooks are flaky.",
         "SSO setup was a nightmare."},
        {"The new UI is confusing and the navigation is clunky.",
         "Hard to use for anyone who is not a power user.",
         "The \"new\" editor is cluttered and unintuitive."},
        {"Still missing bulk edit, we asked for it a year ago.",
         "The product lacks proper role-based permissions.",
         "There is no way to schedule exports; the roadmap keeps slipping."},
        {"The documentation is outdated and the examples don't work.",
         "The docs are thin; we rely on guesswork.",
         "The help center never has the answer."},
        {"We were double charged and the refund took weeks.",
         "Billing is a mess, invoices never match our seat count.",
         "Auto-renewal charged us without a renewal notice."},
};
static const char *npsctl_praise[NPSCTL_THEMES][2] = {
        {"Great value for money.", "Fair pricing for what it does."},
        {"Rock solid, no downtime in a year.",
         "Very reliable, it just works."},
        {"Fast even with large reports.", "Performance is excellent."},
        {"Support is fantastic and responsive.",
         "Our CSM is proactive and really knows our business."},
        {"Onboarding was smooth, the team was up and running in a week.",
         "Getting started was easy with the kickoff sessions."},
        {"The Slack and Salesforce integrations save us hours.",
         "The API is clean and well designed."},
        {"Easy to use and intuitive, the whole team adopted it.",
         "Clean design, very user friendly."},
        {"The roadmap delivers what we ask for.",
         "Love the new automation features."},
        {"The documentation is clear with good examples.",
         "The knowledge base answers most questions."},
        {"Billing is simple and transparent.",
         "Invoices are clear and always correct."},
};
static const char *npsctl_neutral[] = {
        "Does the job.", "It's fine overall.", "Solid product.",
        "Mostly happy with it.", "Good, not great.",
};
/* A few comments in the respondent's language (not matched by the English
 * lexicon, as in real life). [lang-1][0] complains, [lang-1][1] praises. */
static const char *npsctl_local[4][2] = {
        {"Zu teuer und der Support antwortet viel zu spät.",
         "Sehr zuverlässig, das Team ist begeistert."},
        {"Trop cher et l'intégration Salesforce plante souvent.",
         "Très facile à utiliser, le support est génial."},
        {"Demasiado lento y la facturación es un desastre.",
         "Excelente producto, muy fácil de usar."},
        {"動作が遅く、サポートの返事も遅いです。",
         "とても使いやすく、サポートも親切です。"},
};

/* Kinds of invalid messages, in turn: not JSON, not an object, missing
 * user_id, score 11, score 9.5, score "9", submitted_at 3 days ahead,
 * invalid UTF-8 bytes in a string. */
#define NPSCTL_BAD_KINDS 8

/* Topic indices. */
enum { T_RESPONSES, T_USAGE, T_ACCOUNTS, T_FOLLOWUPS, T_CNT };
static const char *npsctl_topic_names[T_CNT] = {
        "nps.responses", "product.usage", "accounts", "nps.followups",
};

#define NPSCTL_DUP_RING 64

typedef struct npsctl_gen_s {
        /* options */
        int n_accounts;
        double rate;
        long long count;
        double duration;
        uint64_t seed;
        double days;
        int64_t pinned_now; /* -1: wall clock */
        double bad_ratio, dup_ratio, usage_per_response, followup_ratio;
        const char *out_path;
        const char *topic_prefix;

        npsctl_rng_t rng;
        npsctl_acct_t *accts;
        double total_weight;
        int64_t now;
        int32_t today;

        rd_kafka_t *rk;
        rd_kafka_topic_t *rkt[T_CNT];
        char topic_full[T_CNT][256];
        FILE *out;

        /* counters */
        long long responses, dups, bad, usage, followups, accounts_sent;
        long long produced[T_CNT];
        long long n_usage, n_followup, n_bad;
        long long failed_produce;       /* rd_kafka_produce() refused */

        npsctl_buf_t msg;               /* payload in the making */
        npsctl_buf_t line;              /* --out line */
        struct {
                size_t len;
                int acct;
                char p[2048];
        } ring[NPSCTL_DUP_RING];
        long long ring_cnt;
} npsctl_gen_t;

/* Written by the delivery report callback (poll thread = main thread). */
static long long npsctl_dr_ok[T_CNT], npsctl_dr_failed[T_CNT];
static int npsctl_dr_errors_logged;

static void npsctl_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                         void *opaque) {
        intptr_t t = (intptr_t)m->_private;

        (void)rk;
        (void)opaque;
        if (t < 0 || t >= T_CNT)
                t = 0;
        if (!m->err) {
                npsctl_dr_ok[t]++;
                return;
        }
        npsctl_dr_failed[t]++;
        if (npsctl_dr_errors_logged++ < 5)
                fprintf(stderr, "npsctl gen: delivery to %s failed: %s\n",
                        rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
}

static void npsctl_error_cb(rd_kafka_t *rk, int err, const char *reason,
                            void *opaque) {
        (void)opaque;
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                char errstr[512];

                rd_kafka_fatal_error(rk, errstr, sizeof(errstr));
                fprintf(stderr, "npsctl gen: fatal producer error: %s\n",
                        errstr);
                npsctl_stop = 1;
                return;
        }
        fprintf(stderr, "npsctl gen: kafka: %s: %s\n",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/*
 * Accounts and their people.
 */
static void npsctl_gen_accounts(npsctl_gen_t *g) {
        npsctl_rng_t *r = &g->rng;
        double cum = 0;
        int i, u;

        for (i = 0; i < g->n_accounts; i++) {
                npsctl_acct_t *a = &g->accts[i];
                int slot = (int)((i + g->seed) % 10);
                double m = npsctl_rng_unit(r);
                int days_to_renewal;

                a->id_len = (size_t)snprintf(a->id, sizeof(a->id), "acct-%04d",
                                             i + 1);
                snprintf(a->name, sizeof(a->name), "%s %s",
                         npsctl_name_a[(i * 7 + g->seed) % 40],
                         npsctl_name_b[(i + i / 40 + g->seed) % 20]);
                /* Exactly 60/30/10 over every ten accounts. */
                a->segment = slot < 6 ? SEG_SMB : slot < 9 ? SEG_MID : SEG_ENT;
                switch (a->segment) {
                case SEG_SMB:
                        a->plan = npsctl_rng_chance(r, 0.75) ? "starter"
                                                             : "growth";
                        a->arr = npsctl_rng_range(r, 30, 400) * 100;
                        a->seats = (int)npsctl_rng_range(r, 5, 40);
                        a->n_users = (int)npsctl_rng_range(r, 3, 6);
                        break;
                case SEG_MID:
                        a->plan = npsctl_rng_chance(r, 0.7) ? "growth"
                                                            : "enterprise";
                        a->arr = npsctl_rng_range(r, 400, 1500) * 100;
                        a->seats = (int)npsctl_rng_range(r, 40, 250);
                        a->n_users = (int)npsctl_rng_range(r, 6, 14);
                        break;
                default:
                        a->plan = "enterprise";
                        a->arr = npsctl_rng_range(r, 150, 1200) * 1000;
                        a->seats = (int)npsctl_rng_range(r, 250, 2000);
                        a->n_users = (int)npsctl_rng_range(r, 15,
                                                           NPSCTL_USERS_MAX);
                        break;
                }
                days_to_renewal = (int)npsctl_rng_range(r, 1, 365);
                a->renewal_day = g->today + days_to_renewal;
                if (days_to_renewal <= 90 && npsctl_rng_chance(r, 0.7))
                        a->stage = "renewal";
                else {
                        double s = npsctl_rng_unit(r);
                        a->stage = s < 0.15 ? "onboarding"
                                   : s < 0.45 ? "adoption" : "mature";
                }
                a->csm = NPSCTL_PICK(r, npsctl_csms);
                a->region = NPSCTL_PICK(r, npsctl_regions);

                /* Mood: happy, content, mixed, unhappy; overall NPS lands in
                 * the +20..+35 typical of B2B SaaS. */
                a->mood = m < 0.40 ? 9.2 : m < 0.70 ? 8.5 : m < 0.88 ? 7.2
                                                                     : 5.6;
                a->mood += npsctl_rng_normal(r) * 0.3;
                /* A third of the accounts have a clear role split. */
                if (npsctl_rng_chance(r, 0.33))
                        a->role_bias = (npsctl_rng_chance(r, 0.5) ? 1 : -1) *
                                       (1.6 + npsctl_rng_unit(r) * 1.6);
                else
                        a->role_bias = (npsctl_rng_unit(r) - 0.5) * 1.0;
                a->slope = (npsctl_rng_unit(r) - 0.5) * 3.0;
                a->trouble = a->mood < 6 ? 0.6 + npsctl_rng_unit(r) * 0.4
                                         : npsctl_rng_unit(r) * 0.4;
                a->pain[0] = (int)(npsctl_rng_u64(r) % NPSCTL_THEMES);
                a->pain[1] = (int)(npsctl_rng_u64(r) % NPSCTL_THEMES);
                a->pool = (int)(a->seats * (0.3 + 0.6 * (a->mood / 10.0)));
                if (a->pool < a->n_users)
                        a->pool = a->n_users;

                for (u = 0; u < a->n_users; u++) {
                        double x = npsctl_rng_unit(r);
                        int role;

                        if (u == 0)
                                role = ROLE_DM;
                        else if (u == 1)
                                role = ROLE_ADMIN;
                        else if (u == 2 && a->segment != SEG_SMB)
                                role = ROLE_DM;
                        else
                                role = x < 0.72 ? ROLE_END_USER
                                       : x < 0.80 ? ROLE_ADMIN
                                       : x < 0.87 ? ROLE_DM
                                       : x < 0.95 ? ROLE_NONE
                                                  : ROLE_CONTRACTOR;
                        /* Some source systems use the aliases. */
                        if (npsctl_rng_chance(r, 0.15)) {
                                if (role == ROLE_END_USER)
                                        role = ROLE_ALIAS_USER;
                                else if (role == ROLE_DM)
                                        role = npsctl_rng_chance(r, 0.5)
                                                       ? ROLE_ALIAS_BUYER
                                                       : ROLE_ALIAS_EXEC;
                        }
                        a->role[u] = (uint8_t)role;

                        x = npsctl_rng_unit(r);
                        if (!strcmp(a->region, "emea"))
                                a->lang[u] = x < 0.45 ? LANG_EN
                                             : x < 0.70 ? LANG_DE
                                             : x < 0.88 ? LANG_FR : LANG_ES;
                        else if (!strcmp(a->region, "amer"))
                                a->lang[u] = x < 0.85 ? LANG_EN : LANG_ES;
                        else
                                a->lang[u] = x < 0.6 ? LANG_EN : LANG_JA;
                }
                cum += a->segment == SEG_SMB ? 1.0
                       : a->segment == SEG_MID ? 2.0 : 3.0;
                a->cum_weight = cum;
        }
        g->total_weight = cum;
}

/* Bigger accounts answer more surveys. */
static int npsctl_pick_account(npsctl_gen_t *g) {
        double x = npsctl_rng_unit(&g->rng) * g->total_weight;
        int lo = 0, hi = g->n_accounts - 1;

        while (lo < hi) {
                int mid = (lo + hi) / 2;

                if (g->accts[mid].cum_weight > x)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return lo;
}

/*
 * Producing.
 */

/* One JSONL line per produced message for --out; payloads that are not
 * valid UTF-8 (the invalid_utf8 DLQ case) cannot be a JSON string and are
 * written as value_base64 instead. */
static void npsctl_out_write(npsctl_gen_t *g, int t, const char *key,
                             size_t key_len, const char *val, size_t len,
                             int binary) {
        static const char b64[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                "0123456789+/";
        npsctl_buf_t *l = &g->line;

        npsctl_buf_reset(l);
        npsctl_buf_lit(l, "{\"topic\":");
        npsctl_buf_jstr(l, g->topic_full[t]);
        npsctl_buf_lit(l, ",\"key\":");
        npsctl_buf_jstr_n(l, key, key_len);
        if (!binary) {
                npsctl_buf_lit(l, ",\"value\":");
                npsctl_buf_jstr_n(l, val, len);
        } else {
                const unsigned char *s = (const unsigned char *)val;
                size_t i;

                npsctl_buf_lit(l, ",\"value_base64\":\"");
                for (i = 0; i + 2 < len; i += 3) {
                        char q[4] = {b64[s[i] >> 2],
                                     b64[((s[i] & 3) << 4) | (s[i + 1] >> 4)],
                                     b64[((s[i + 1] & 15) << 2) |
                                         (s[i + 2] >> 6)],
                                     b64[s[i + 2] & 63]};
                        npsctl_buf_mem(l, q, 4);
                }
                if (len - i == 1) {
                        char q[4] = {b64[s[i] >> 2], b64[(s[i] & 3) << 4],
                                     '=', '='};
                        npsctl_buf_mem(l, q, 4);
                } else if (len - i == 2) {
                        char q[4] = {b64[s[i] >> 2],
                                     b64[((s[i] & 3) << 4) | (s[i + 1] >> 4)],
                                     b64[(s[i + 1] & 15) << 2], '='};
                        npsctl_buf_mem(l, q, 4);
                }
                npsctl_buf_lit(l, "\"");
        }
        npsctl_buf_lit(l, "}\n");
        fwrite(l->p, 1, l->len, g->out);
}

/* Queues one message; waits (serving delivery reports) while the local
 * queue is full. Returns 0, or -1 when the message was not queued. */
static int npsctl_produce(npsctl_gen_t *g, int t, const char *key,
                          size_t key_len, const char *val, size_t len,
                          int binary) {
        for (;;) {
                if (!rd_kafka_produce(g->rkt[t], RD_KAFKA_PARTITION_UA,
                                      RD_KAFKA_MSG_F_COPY, (void *)val, len,
                                      key, key_len, (void *)(intptr_t)t)) {
                        g->produced[t]++;
                        if (g->out)
                                npsctl_out_write(g, t, key, key_len, val, len,
                                                 binary);
                        return 0;
                }
                if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        if (g->failed_produce++ < 5)
                                fprintf(stderr, "npsctl gen: produce to %s "
                                        "failed: %s\n", g->topic_full[t],
                                        rd_kafka_err2str(
                                                rd_kafka_last_error()));
                        return -1;
                }
                if (npsctl_stop) {
                        g->failed_produce++;
                        return -1;
                }
                rd_kafka_poll(g->rk, 10);
        }
}

static inline int npsctl_produce_buf(npsctl_gen_t *g, int t,
                                     const npsctl_acct_t *a, int binary) {
        if (g->msg.overflow) {
                g->failed_produce++;
                return -1;
        }
        return npsctl_produce(g, t, a->id, a->id_len, g->msg.p, g->msg.len,
                              binary);
}

static void npsctl_send_account(npsctl_gen_t *g, const npsctl_acct_t *a) {
        npsctl_buf_t *b = &g->msg;
        char date[16], t[NPSD_TIME_BUFSZ];

        npsctl_buf_reset(b);
        npsctl_buf_lit(b, "{\"account_id\":");
        npsctl_buf_jstr(b, a->id);
        npsctl_buf_kv(b, "name", a->name);
        npsctl_buf_kv(b, "segment", npsctl_segments[a->segment]);
        npsctl_buf_kv(b, "plan", a->plan);
        npsctl_buf_lit(b, ",\"arr\":");
        npsctl_buf_int(b, a->arr);
        npsctl_buf_lit(b, ",\"seats\":");
        npsctl_buf_int(b, a->seats);
        npsctl_buf_kv(b, "renewal_date", npsd_date_format(a->renewal_day,
                                                          date));
        npsctl_buf_kv(b, "lifecycle_stage", a->stage);
        npsctl_buf_kv(b, "csm_owner", a->csm);
        npsctl_buf_kv(b, "updated_at", npsd_time_format(g->now, t));
        npsctl_buf_lit(b, "}");
        if (!npsctl_produce_buf(g, T_ACCOUNTS, a, 0))
                g->accounts_sent++;
}

/* A comment that hits the account's pain points when the respondent is a
 * detractor and praises when a promoter. Returns 0 when there is none. */
static size_t npsctl_comment(npsctl_gen_t *g, const npsctl_acct_t *a,
                             int score, int lang, char *out, size_t size) {
        npsctl_rng_t *r = &g->rng;
        const char *s1 = NULL, *s2 = NULL;
        int th;

        if (score <= 6 ? !npsctl_rng_chance(r, 0.85)
            : score <= 8 ? !npsctl_rng_chance(r, 0.5)
                         : !npsctl_rng_chance(r, 0.6))
                return 0;

        if (lang != LANG_EN && npsctl_rng_chance(r, 0.35)) {
                s1 = npsctl_local[lang - 1][score <= 6 ? 0 : 1];
                if (score >= 7 && score <= 8)
                        s1 = NPSCTL_PICK(r, npsctl_neutral);
        } else if (score <= 6) {
                th = npsctl_rng_chance(r, 0.7) ? a->pain[npsctl_rng_u64(r) & 1]
                                               : (int)(npsctl_rng_u64(r) %
                                                       NPSCTL_THEMES);
                s1 = NPSCTL_PICK(r, npsctl_complaints[th]);
                if (npsctl_rng_chance(r, 0.35)) {
                        th = (int)(npsctl_rng_u64(r) % NPSCTL_THEMES);
                        s2 = NPSCTL_PICK(r, npsctl_complaints[th]);
                }
        } else if (score <= 8) {
                s1 = npsctl_rng_chance(r, 0.5)
                             ? NPSCTL_PICK(r, npsctl_neutral)
                             : NPSCTL_PICK(r, npsctl_praise[npsctl_rng_u64(r) %
                                                            NPSCTL_THEMES]);
                th = npsctl_rng_chance(r, 0.5) ? a->pain[0]
                                               : (int)(npsctl_rng_u64(r) %
                                                       NPSCTL_THEMES);
                s2 = NPSCTL_PICK(r, npsctl_complaints[th]);
        } else {
                th = (int)(npsctl_rng_u64(r) % NPSCTL_THEMES);
                s1 = NPSCTL_PICK(r, npsctl_praise[th]);
                if (npsctl_rng_chance(r, 0.3)) {
                        th = (int)(npsctl_rng_u64(r) % NPSCTL_THEMES);
                        s2 = NPSCTL_PICK(r, npsctl_praise[th]);
                }
        }
        if (s2 && s2 != s1)
                return (size_t)snprintf(out, size, "%s %s", s1, s2);
        return (size_t)snprintf(out, size, "%s", s1);
}

/* The person's score: the account's mood, moved by role, by time (older
 * responses reflect the account's earlier trajectory) and by survey type,
 * plus noise. */
static int npsctl_score(npsctl_gen_t *g, const npsctl_acct_t *a, int role,
                        double days_ago, int transactional) {
        double mean = a->mood - a->slope * days_ago / 90.0;
        double s;

        if (role == ROLE_END_USER || role == ROLE_ALIAS_USER)
                mean += a->role_bias / 2;
        else if (role == ROLE_DM || role == ROLE_ALIAS_BUYER ||
                 role == ROLE_ALIAS_EXEC)
                mean -= a->role_bias / 2;
        if (transactional)
                mean += 0.4;
        s = floor(mean + npsctl_rng_normal(&g->rng) * 1.5 + 0.5);
        return s < 0 ? 0 : s > 10 ? 10 : (int)s;
}

static void npsctl_send_usage(npsctl_gen_t *g, const npsctl_acct_t *a,
                              int64_t around) {
        npsctl_rng_t *r = &g->rng;
        npsctl_buf_t *b = &g->msg;
        double x = npsctl_rng_unit(r), tr = a->trouble;
        double p_err = 0.03 + 0.15 * tr, p_open = 0.02 + 0.06 * tr;
        double p_close = 0.015 + 0.03 * tr, p_feat = 0.3 - 0.1 * tr;
        const char *type;
        int64_t at;
        char uid[32];
        int k;

        type = x < p_err ? "error"
               : x < p_err + p_open ? "ticket_opened"
               : x < p_err + p_open + p_close ? "ticket_closed"
               : x < p_err + p_open + p_close + p_feat ? "feature_used"
                                                      : "session";
        at = around + (int64_t)((npsctl_rng_unit(r) - 0.5) * NPSD_MS_PER_DAY);
        if (at > g->now)
                at = g->now - (int64_t)(npsctl_rng_unit(r) * 3600000.0);
        k = (int)npsctl_rng_range(r, 1, a->pool);
        snprintf(uid, sizeof(uid), "user-%s-%03d", a->id + 5, k);

        npsctl_buf_reset(b);
        npsctl_buf_lit(b, "{\"event_id\":\"u-");
        npsctl_buf_int(b, (long long)g->seed);
        npsctl_buf_lit(b, "-");
        npsctl_buf_int(b, ++g->n_usage);
        npsctl_buf_lit(b, "\",\"account_id\":");
        npsctl_buf_jstr(b, a->id);
        npsctl_buf_kv(b, "user_id", uid);
        npsctl_buf_kv(b, "type", type);
        if (type[0] == 'f')
                npsctl_buf_kv(b, "feature", NPSCTL_PICK(r, npsctl_features));
        npsctl_buf_lit(b, ",\"occurred_at\":");
        npsctl_buf_ts(b, r, at, 0);
        npsctl_buf_lit(b, "}");
        if (!npsctl_produce_buf(g, T_USAGE, a, 0))
                g->usage++;
}

/* Closed-loop actions on a detractor: on time, late, partial or never.
 * Actions whose time has not come yet (after now) are not sent. */
static void npsctl_send_followups(npsctl_gen_t *g, const npsctl_acct_t *a,
                                  const char *rid, int64_t submitted) {
        static const char *actions[3] = {"acknowledged", "routed", "closed"};
        npsctl_rng_t *r = &g->rng;
        double x = npsctl_rng_unit(r);
        const int64_t H = 3600000LL, D = NPSD_MS_PER_DAY;
        int64_t at[3];
        int n, i;

        if (x < 0.5) { /* on time */
                at[0] = submitted + npsctl_rng_range(r, 1, 40) * H;
                at[1] = submitted + npsctl_rng_range(r, 2, 6) * D;
                at[2] = submitted + npsctl_rng_range(r, 7, 28) * D;
                n = 3;
        } else if (x < 0.7) { /* late at every stage */
                at[0] = submitted + npsctl_rng_range(r, 50, 100) * H;
                at[1] = submitted + npsctl_rng_range(r, 8, 14) * D;
                at[2] = submitted + npsctl_rng_range(r, 31, 45) * D;
                n = 3;
        } else if (x < 0.85) { /* acknowledged and routed, never closed */
                at[0] = submitted + npsctl_rng_range(r, 1, 47) * H;
                at[1] = submitted + npsctl_rng_range(r, 3, 9) * D;
                n = 2;
        } else { /* never */
                return;
        }
        for (i = 0; i < n; i++) {
                npsctl_buf_t *b = &g->msg;

                if (at[i] > g->now)
                        break;
                npsctl_buf_reset(b);
                npsctl_buf_lit(b, "{\"event_id\":\"f-");
                npsctl_buf_int(b, (long long)g->seed);
                npsctl_buf_lit(b, "-");
                npsctl_buf_int(b, ++g->n_followup);
                npsctl_buf_lit(b, "\",\"account_id\":");
                npsctl_buf_jstr(b, a->id);
                npsctl_buf_kv(b, "response_event_id", rid);
                npsctl_buf_kv(b, "action", actions[i]);
                npsctl_buf_lit(b, ",\"at\":");
                npsctl_buf_ts(b, r, at[i], 0);
                npsctl_buf_kv(b, "owner", a->csm);
                npsctl_buf_kv(b, "team", i == 1 ? "support" : "customer-success");
                npsctl_buf_lit(b, "}");
                if (!npsctl_produce_buf(g, T_FOLLOWUPS, a, 0))
                        g->followups++;
        }
}

/* One invalid message for every DLQ reason in turn, so a short run covers
 * them all. */
static void npsctl_send_bad(npsctl_gen_t *g, const npsctl_acct_t *a) {
        npsctl_buf_t *b = &g->msg;
        int kind = (int)(g->n_bad % NPSCTL_BAD_KINDS);
        long long id = ++g->n_bad;
        char t[NPSD_TIME_BUFSZ];
        int binary = 0;

        npsctl_buf_reset(b);
        if (kind == 0) {
                npsctl_buf_lit(b, "{\"event_id\":\"x-");
                npsctl_buf_int(b, (long long)g->seed);
                npsctl_buf_lit(b, "-");
                npsctl_buf_int(b, id);
                npsctl_buf_lit(b, "\",\"score\":9,\"comment\":\"cut off");
        } else if (kind == 1) {
                npsctl_buf_lit(b, "[{\"score\":9},\"not an object\"]");
        } else {
                int score = kind == 3 ? 11 : 7;

                npsctl_buf_lit(b, "{\"event_id\":\"x-");
                npsctl_buf_int(b, (long long)g->seed);
                npsctl_buf_lit(b, "-");
                npsctl_buf_int(b, id);
                npsctl_buf_lit(b, "\",\"account_id\":");
                npsctl_buf_jstr(b, a->id);
                if (kind != 2) /* missing_field: no user_id */
                        npsctl_buf_kv(b, "user_id", "user-bad-001");
                if (kind == 4)
                        npsctl_buf_lit(b, ",\"score\":9.5");
                else if (kind == 5)
                        npsctl_buf_lit(b, ",\"score\":\"9\"");
                else {
                        npsctl_buf_lit(b, ",\"score\":");
                        npsctl_buf_int(b, score);
                }
                npsctl_buf_lit(b, ",\"submitted_at\":");
                npsctl_buf_jstr(b, npsd_time_format(
                                           kind == 6 ? g->now + 3 * NPSD_MS_PER_DAY
                                                     : g->now - 60000,
                                           t));
                if (kind == 7) {
                        /* Bytes that are not UTF-8 inside a string. */
                        npsctl_buf_lit(b, ",\"comment\":\"bad bytes \xff\xfe\xc3\x28\"");
                        binary = 1;
                }
                npsctl_buf_lit(b, "}");
        }
        if (!npsctl_produce_buf(g, T_RESPONSES, a, binary))
                g->bad++;
}

static void npsctl_send_response(npsctl_gen_t *g) {
        npsctl_rng_t *r = &g->rng;
        npsctl_buf_t *b = &g->msg;
        int ai = npsctl_pick_account(g);
        const npsctl_acct_t *a = &g->accts[ai];
        int u = (int)(npsctl_rng_u64(r) % (uint64_t)a->n_users);
        int role = a->role[u], lang = a->lang[u];
        double days_ago = npsctl_rng_unit(r) * g->days;
        int64_t submitted = g->now - (int64_t)(days_ago * NPSD_MS_PER_DAY);
        int transactional = npsctl_rng_chance(r, 0.2);
        int score = npsctl_score(g, a, role, days_ago, transactional);
        double ch = npsctl_rng_unit(r);
        char rid[48], uid[32], comment[512];
        size_t clen, rid_len;
        double k;

        rid_len = (size_t)snprintf(rid, sizeof(rid), "r-%llu-%lld",
                                   (unsigned long long)g->seed,
                                   g->responses + 1);
        snprintf(uid, sizeof(uid), "user-%s-%03d", a->id + 5, u + 1);

        npsctl_buf_reset(b);
        npsctl_buf_lit(b, "{\"event_id\":");
        npsctl_buf_jstr_n(b, rid, rid_len);
        npsctl_buf_lit(b, ",\"account_id\":");
        npsctl_buf_jstr_n(b, a->id, a->id_len);
        npsctl_buf_kv(b, "user_id", uid);
        npsctl_buf_lit(b, ",\"score\":");
        npsctl_buf_int(b, score);
        if (npsctl_role_names[role])
                npsctl_buf_kv(b, "role", npsctl_role_names[role]);
        if (transactional) {
                npsctl_buf_kv(b, "survey_type", "transactional");
                npsctl_buf_kv(b, "trigger", npsctl_rng_chance(r, 0.6)
                                                    ? "support_ticket"
                                                    : "onboarding");
        } else if (npsctl_rng_chance(r, 0.7)) {
                /* The rest leave it out: relationship is the default. */
                npsctl_buf_kv(b, "survey_type", "relationship");
        }
        npsctl_buf_kv(b, "channel", ch < 0.5 ? "email"
                                    : ch < 0.85 ? "in_app" : "web");
        npsctl_buf_kv(b, "language", npsctl_langs[lang]);
        clen = npsctl_comment(g, a, score, lang, comment, sizeof(comment));
        if (clen) {
                npsctl_buf_lit(b, ",\"comment\":");
                npsctl_buf_jstr_n(b, comment, clen < sizeof(comment)
                                                      ? clen
                                                      : sizeof(comment) - 1);
        }
        npsctl_buf_lit(b, ",\"attributes\":{\"region\":");
        npsctl_buf_jstr(b, a->region);
        npsctl_buf_lit(b, "},\"submitted_at\":");
        npsctl_buf_ts(b, r, submitted, 1);
        npsctl_buf_lit(b, "}");

        if (npsctl_produce_buf(g, T_RESPONSES, a, 0))
                return;
        g->responses++;

        if (g->dup_ratio > 0 && b->len < sizeof(g->ring[0].p)) {
                int slot = (int)(g->ring_cnt++ % NPSCTL_DUP_RING);

                memcpy(g->ring[slot].p, b->p, b->len);
                g->ring[slot].len = b->len;
                g->ring[slot].acct = ai;
        }

        for (k = g->usage_per_response; k > 0; k -= 1.0) {
                if (k >= 1.0 || npsctl_rng_chance(r, k))
                        npsctl_send_usage(g, a, submitted);
        }
        if (score <= 6 && g->followup_ratio > 0 &&
            npsctl_rng_chance(r, g->followup_ratio))
                npsctl_send_followups(g, a, rid, submitted);

        /* A redelivery of a recent response, byte for byte. */
        if (g->dup_ratio > 0 && npsctl_rng_chance(r, g->dup_ratio)) {
                long long n = g->ring_cnt < NPSCTL_DUP_RING ? g->ring_cnt
                                                            : NPSCTL_DUP_RING;
                int slot = (int)(npsctl_rng_u64(r) % (uint64_t)n);
                const npsctl_acct_t *da = &g->accts[g->ring[slot].acct];

                if (!npsctl_produce(g, T_RESPONSES, da->id, da->id_len,
                                    g->ring[slot].p, g->ring[slot].len, 0))
                        g->dups++;
        }
        if (g->bad_ratio > 0 && npsctl_rng_chance(r, g->bad_ratio))
                npsctl_send_bad(g, a);
}

static void npsctl_gen_usage(FILE *fp) {
        fprintf(fp,
                "usage: npsctl gen --bootstrap B [options] [-X key=value ...]\n"
                "\n"
                "Produces realistic synthetic NPS traffic: one accounts record "
                "per account,\n"
                "then survey responses (nps.responses) with optional usage "
                "events,\n"
                "follow-ups, duplicates and invalid messages. Keys are "
                "account ids.\n"
                "\n"
                "  --accounts N             accounts acct-0001.. (default 50)\n"
                "  --rate R                 responses per second, 0 = as fast "
                "as possible (default 20)\n"
                "  --count N                stop after N responses (default 0 "
                "= unlimited)\n"
                "  --duration S             stop after S seconds\n"
                "  --seed S                 PRNG seed; ids are r-<seed>-<n> "
                "(default 1)\n"
                "  --days D                 spread submitted_at over the last "
                "D days (default 1)\n"
                "  --now RFC3339            pin \"now\" (default: wall clock)\n"
                "  --bad-ratio F            extra invalid messages per "
                "response, every DLQ reason in turn\n"
                "  --dup-ratio F            responses re-sent with the same "
                "event_id\n"
                "  --usage-per-response K   product.usage events per response "
                "(may be fractional)\n"
                "  --followup-ratio F       detractors that get nps.followups "
                "actions\n"
                "  --out FILE               JSONL of every message produced "
                "(topic, key, value)\n"
                "  --topic-prefix P         prefix of the topic names (default "
                "none)\n"
                "\n"
                "Exits 0 when every message was delivered, 1 otherwise; a "
                "one-line summary goes to stderr.\n");
}

static int npsctl_gen_parse(npsctl_gen_t *g, npsctl_opts_t *opts, int argc,
                            char **argv) {
        const char *v;
        long long n;
        int i, r;

        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        npsctl_gen_usage(stdout);
                        return 1;
                }
/* An option without its value is a usage error: nothing is allocated
 * yet, so exit right away. */
#define NPSCTL_OPT(name) ((r = npsctl_optval(argc, argv, &i, name, &v)) && \
                          (r > 0 || (exit(2), 0)))
                if (NPSCTL_OPT("--accounts")) {
                        if (npsctl_parse_int("--accounts", v, 1, 99999, &n))
                                return -1;
                        g->n_accounts = (int)n;
                } else if (NPSCTL_OPT("--rate")) {
                        if (npsctl_parse_double("--rate", v, 0, 1e9, &g->rate))
                                return -1;
                } else if (NPSCTL_OPT("--count")) {
                        if (npsctl_parse_int("--count", v, 0, INT64_MAX / 2,
                                             &g->count))
                                return -1;
                } else if (NPSCTL_OPT("--duration")) {
                        if (npsctl_parse_double("--duration", v, 0, 1e9,
                                                &g->duration))
                                return -1;
                } else if (NPSCTL_OPT("--seed")) {
                        if (npsctl_parse_int("--seed", v, 0, INT64_MAX / 2, &n))
                                return -1;
                        g->seed = (uint64_t)n;
                } else if (NPSCTL_OPT("--days")) {
                        if (npsctl_parse_double("--days", v, 0, 3650, &g->days))
                                return -1;
                } else if (NPSCTL_OPT("--now")) {
                        if (npsd_time_parse_rfc3339(v, strlen(v),
                                                    &g->pinned_now)) {
                                fprintf(stderr, "npsctl: --now: not an RFC "
                                        "3339 timestamp: \"%s\"\n", v);
                                return -1;
                        }
                } else if (NPSCTL_OPT("--bad-ratio")) {
                        if (npsctl_parse_double("--bad-ratio", v, 0, 1,
                                                &g->bad_ratio))
                                return -1;
                } else if (NPSCTL_OPT("--dup-ratio")) {
                        if (npsctl_parse_double("--dup-ratio", v, 0, 1,
                                                &g->dup_ratio))
                                return -1;
                } else if (NPSCTL_OPT("--usage-per-response")) {
                        if (npsctl_parse_double("--usage-per-response", v, 0,
                                                1000, &g->usage_per_response))
                                return -1;
                } else if (NPSCTL_OPT("--followup-ratio")) {
                        if (npsctl_parse_double("--followup-ratio", v, 0, 1,
                                                &g->followup_ratio))
                                return -1;
                } else if (NPSCTL_OPT("--out")) {
                        g->out_path = v;
                } else if (NPSCTL_OPT("--topic-prefix")) {
                        g->topic_prefix = v;
                } else if ((r = npsctl_common_opt(opts, argc, argv, &i))) {
                        if (r < 0)
                                return -1;
                } else {
                        fprintf(stderr, "npsctl gen: unknown argument "
                                "\"%s\"\n", argv[i]);
                        npsctl_gen_usage(stderr);
                        return -1;
                }
#undef NPSCTL_OPT
        }
        if (!opts->bootstrap) {
                fprintf(stderr, "npsctl gen: --bootstrap is required (start a "
                        "development broker with `npsctl broker`)\n");
                return -1;
        }
        return 0;
}

/* Refreshes "now" (wall clock unless pinned) and today's date. */
static void npsctl_gen_clock(npsctl_gen_t *g) {
        struct timespec ts;

        if (g->pinned_now >= 0) {
                g->now = g->pinned_now;
        } else {
                clock_gettime(CLOCK_REALTIME, &ts);
                g->now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        }
        g->today = npsd_time_day(g->now);
}

/* Idempotent, so that producer retries never duplicate a message; a short
 * linger batches well at high rates and adds little latency at low ones. */
static rd_kafka_t *npsctl_gen_producer(const npsctl_opts_t *opts,
                                       char *errstr, size_t errstr_size) {
        static const char *const defaults[][2] = {
                {"enable.idempotence", "true"},
                {"linger.ms", "5"},
                {"queue.buffering.max.messages", "500000"},
                {"client.id", "npsctl-gen"},
        };
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk;

        conf = npsctl_kafka_conf(opts, defaults,
                                 sizeof(defaults) / sizeof(*defaults), errstr,
                                 errstr_size);
        if (!conf)
                return NULL;
        rd_kafka_conf_set_dr_msg_cb(conf, npsctl_dr_cb);
        rd_kafka_conf_set_error_cb(conf, npsctl_error_cb);

        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
        if (!rk)
                rd_kafka_conf_destroy(conf);
        return rk;
}

int npsctl_gen_main(npsctl_opts_t *opts, int argc, char **argv) {
        static npsctl_gen_t gen; /* large buffers: not on the stack */
        npsctl_gen_t *g = &gen;
        long long total_ok = 0, total_failed = 0, outq;
        int64_t start, elapsed, flush_deadline;
        char errstr[512], out_buf_note[64] = "";
        static char out_iobuf[1 << 20];
        int t, r, rc = 0, a;
        double secs;

        g->n_accounts = 50;
        g->rate = 20;
        g->seed = 1;
        g->days = 1;
        g->pinned_now = -1;
        g->topic_prefix = "";
        r = npsctl_gen_parse(g, opts, argc, argv);
        if (r)
                return r > 0 ? 0 : 2;

        npsctl_signals_install();
        npsctl_rng_seed(&g->rng, g->seed * 0x9e3779b97f4a7c15ULL + 12345);
        npsctl_gen_clock(g);

        g->accts = calloc((size_t)g->n_accounts, sizeof(*g->accts));
        if (!g->accts) {
                fprintf(stderr, "npsctl gen: out of memory\n");
                return 1;
        }
        npsctl_gen_accounts(g);

        if (g->out_path) {
                g->out = fopen(g->out_path, "w");
                if (!g->out) {
                        fprintf(stderr, "npsctl gen: %s: %s\n", g->out_path,
                                strerror(errno));
                        rc = 1;
                        goto done_accts;
                }
                setvbuf(g->out, out_iobuf, _IOFBF, sizeof(out_iobuf));
        }

        g->rk = npsctl_gen_producer(opts, errstr, sizeof(errstr));
        if (!g->rk) {
                fprintf(stderr, "npsctl gen: %s\n", errstr);
                rc = 1;
                goto done_out;
        }
        for (t = 0; t < T_CNT; t++) {
                snprintf(g->topic_full[t], sizeof(g->topic_full[t]), "%s%s",
                         g->topic_prefix, npsctl_topic_names[t]);
                g->rkt[t] = rd_kafka_topic_new(g->rk, g->topic_full[t], NULL);
                if (!g->rkt[t]) {
                        fprintf(stderr, "npsctl gen: topic %s: %s\n",
                                g->topic_full[t],
                                rd_kafka_err2str(rd_kafka_last_error()));
                        rc = 1;
                        goto done_topics;
                }
        }

        start = npsctl_mono_ms();
        for (a = 0; a < g->n_accounts && !npsctl_stop; a++)
                npsctl_send_account(g, &g->accts[a]);

        while (!npsctl_stop) {
                long long target;
                int batch;

                if (g->count && g->responses >= g->count)
                        break;
                elapsed = npsctl_mono_ms() - start;
                if (g->duration > 0 && elapsed >= g->duration * 1000)
                        break;
                npsctl_gen_clock(g);

                if (g->rate > 0) {
                        /* Pace by elapsed time, in ~10 ms slices. */
                        target = (long long)(g->rate * (double)elapsed / 1000.0) + 1;
                        if (g->count && target > g->count)
                                target = g->count;
                        while (g->responses < target && !npsctl_stop) {
                                long long before = g->responses;

                                npsctl_send_response(g);
                                if (g->responses == before &&
                                    g->failed_produce > 1000)
                                        npsctl_stop = 1;
                        }
                        rd_kafka_poll(g->rk, 0);
                        npsctl_sleep_ms(10);
                        continue;
                }
                for (batch = 0; batch < 2048 && !npsctl_stop; batch++) {
                        if (g->count && g->responses >= g->count)
                                break;
                        npsctl_send_response(g);
                }
                if (g->failed_produce > 1000)
                        break;
                rd_kafka_poll(g->rk, 0);
        }
        elapsed = npsctl_mono_ms() - start;

        /* Deliver what is queued; a second signal (or 60 s) gives up. */
        npsctl_stop = 0;
        flush_deadline = npsctl_mono_ms() + 60000;
        while (rd_kafka_outq_len(g->rk) > 0 && !npsctl_stop &&
               npsctl_mono_ms() < flush_deadline)
                rd_kafka_flush(g->rk, 500);
        outq = rd_kafka_outq_len(g->rk);
        secs = (double)(npsctl_mono_ms() - start) / 1000.0;

        for (t = 0; t < T_CNT; t++) {
                total_ok += npsctl_dr_ok[t];
                total_failed += npsctl_dr_failed[t];
        }
        if (g->out)
                snprintf(out_buf_note, sizeof(out_buf_note), " out=%s",
                         g->out_path);
        fprintf(stderr,
                "npsctl gen: %s=%lld %s=%lld %s=%lld %s=%lld | responses=%lld "
                "duplicates=%lld invalid=%lld usage=%lld followups=%lld "
                "accounts=%lld | delivered=%lld failed=%lld undelivered=%lld "
                "elapsed=%.2fs rate=%.0f msgs/s%s\n",
                g->topic_full[T_RESPONSES], g->produced[T_RESPONSES],
                g->topic_full[T_USAGE], g->produced[T_USAGE],
                g->topic_full[T_ACCOUNTS], g->produced[T_ACCOUNTS],
                g->topic_full[T_FOLLOWUPS], g->produced[T_FOLLOWUPS],
                g->responses, g->dups, g->bad, g->usage, g->followups,
                g->accounts_sent, total_ok, total_failed + g->failed_produce,
                outq, secs,
                secs > 0 ? (double)total_ok / secs : 0.0,
                out_buf_note);
        if (total_failed || g->failed_produce || outq)
                rc = 1;

done_topics:
        for (t = 0; t < T_CNT; t++)
                if (g->rkt[t])
                        rd_kafka_topic_destroy(g->rkt[t]);
        rd_kafka_destroy(g->rk);
done_out:
        if (g->out && fclose(g->out)) {
                fprintf(stderr, "npsctl gen: %s: %s\n", g->out_path,
                        strerror(errno));
                rc = 1;
        }
done_accts:
        free(g->accts);
        return rc;
}
