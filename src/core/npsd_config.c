/*
 * npsd_config — the settings of npsd, from one declarative table.
 *
 * Every setting is one row of npsd_opts[]: its name, type, where it lives in
 * npsd_conf_t, its default (as text, applied through the same parser as any
 * other source so a default can never be invalid), bounds and a description.
 * File, environment and --set all go through npsd_conf_set(). The kafka.*
 * namespace is not in the table: it passes straight to librdkafka.
 */
#include "npsd/npsd_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npsd/npsd_time.h"

typedef enum {
        NPSD_OPT_STR,     /* char *, owned */
        NPSD_OPT_INT,     /* int, within [min, max] */
        NPSD_OPT_DBL,     /* double, within [min, max] */
        NPSD_OPT_WINDOWS, /* char * "30d,90d" + window_days[] */
        NPSD_OPT_LIST,    /* char * "a,b" + cohort_attr[] */
        NPSD_OPT_ENUM,    /* char *, one of enums ('|' separated) */
        NPSD_OPT_TIME,    /* char *, "" or RFC 3339 */
        NPSD_OPT_ADDR,    /* char *, "" or host:port */
} npsd_opt_type_t;

#define NPSD_OPT_SECRET 0x1 /* masked by npsd_conf_dump() */
/* Applied by a running npsd on SIGHUP (npsd_conf_apply_live()); a change
 * to any other key is logged as needing a restart. */
#define NPSD_OPT_LIVE 0x2

typedef struct npsd_opt_s {
        const char *name;
        npsd_opt_type_t type;
        size_t offset;
        const char *def;
        double min, max;
        const char *enums;
        int flags;
        const char *desc;
} npsd_opt_t;

#define O(f) offsetof(npsd_conf_t, f)

static const npsd_opt_t npsd_opts[] = {
        /* topics */
        {"topic.responses", NPSD_OPT_STR, O(topic_responses), "nps.responses",
         0, 0, NULL, 0, "Input: survey responses"},
        {"topic.usage", NPSD_OPT_STR, O(topic_usage), "product.usage", 0, 0,
         NULL, 0, "Input: product-usage events"},
        {"topic.accounts", NPSD_OPT_STR, O(topic_accounts), "accounts", 0, 0,
         NULL, 0, "Input: account context (compacted)"},
        {"topic.followups", NPSD_OPT_STR, O(topic_followups), "nps.followups",
         0, 0, NULL, 0, "Input: closed-loop follow-up actions"},
        {"topic.detractors", NPSD_OPT_STR, O(topic_detractors),
         "nps.detractors", 0, 0, NULL, 0, "Output: classified detractors"},
        {"topic.passives", NPSD_OPT_STR, O(topic_passives), "nps.passives", 0,
         0, NULL, 0, "Output: classified passives"},
        {"topic.promoters", NPSD_OPT_STR, O(topic_promoters), "nps.promoters",
         0, 0, NULL, 0, "Output: classified promoters"},
        {"topic.alerts", NPSD_OPT_STR, O(topic_alerts), "nps.alerts", 0, 0,
         NULL, 0, "Output: account-level alerts"},
        {"topic.dlq", NPSD_OPT_STR, O(topic_dlq), "nps.dlq", 0, 0, NULL, 0,
         "Output: rejected input messages with the reason"},
        {"accounts.first.s", NPSD_OPT_INT, O(accounts_first_s), "30", 0,
         3600, NULL, 0,
         "After a partition assignment, hold responses, usage and follow-ups "
         "until the assigned accounts partitions are read to their end, for "
         "at most this many seconds (0: do not hold)"},

        /* redis */
        {"redis.host", NPSD_OPT_STR, O(redis_host), "127.0.0.1", 0, 0, NULL, 0,
         "Redis host name or address"},
        {"redis.port", NPSD_OPT_INT, O(redis_port), "6379", 1, 65535, NULL, 0,
         "Redis TCP port"},
        {"redis.user", NPSD_OPT_STR, O(redis_user), "", 0, 0, NULL, 0,
         "Redis ACL user (empty: default user)"},
        {"redis.password", NPSD_OPT_STR, O(redis_password), "", 0, 0, NULL,
         NPSD_OPT_SECRET, "Redis password (empty: no AUTH)"},
        {"redis.db", NPSD_OPT_INT, O(redis_db), "0", 0, 1000, NULL, 0,
         "Redis logical database"},
        {"redis.timeout.ms", NPSD_OPT_INT, O(redis_timeout_ms), "2000", 1,
         600000, NULL, 0, "Redis connect and command timeout"},
        {"redis.prefix", NPSD_OPT_STR, O(redis_prefix), "nps", 0, 0, NULL, 0,
         "Prefix of every Redis key and of the pub/sub channel"},
        {"redis.cluster", NPSD_OPT_ENUM, O(redis_cluster), "auto", 0, 0,
         "auto|on|off", 0,
         "Redis Cluster mode: auto asks redis.host whether cluster mode is "
         "enabled"},
        {"redis.wait.replicas", NPSD_OPT_INT, O(redis_wait_replicas), "0", 0,
         16, NULL, 0,
         "Replicas that must hold a batch's writes (Redis WAIT) before its "
         "offsets are committed: 1 with replicas makes a failover lose "
         "nothing (0: do not wait)"},
        {"redis.nodes", NPSD_OPT_STR, O(redis_nodes), "", 0, 0, NULL, 0,
         "More Redis Cluster seed nodes, host:port,host:port (the first is "
         "redis.host:redis.port)"},

        /* windows & metrics */
        {"windows", NPSD_OPT_WINDOWS, O(windows), "30d,90d", 0, 0, NULL, 0,
         "Rolling windows (1-8, each 1d..3650d); the largest is the trend, "
         "role gap and benchmark window"},
        {"low_confidence.n", NPSD_OPT_INT, O(low_confidence_n), "50", 1,
         1000000, NULL, 0, "Sample size below which low_confidence = 1"},
        {"role_gap.threshold", NPSD_OPT_DBL, O(role_gap_threshold), "15", 0,
         200, NULL, NPSD_OPT_LIVE, "Role gap flagged when |gap| is above this"},
        {"role_gap.min_responses", NPSD_OPT_INT, O(role_gap_min_responses),
         "3", 1, 1000000, NULL, NPSD_OPT_LIVE,
         "Responses each role needs before a gap is flagged"},
        {"benchmark.all", NPSD_OPT_DBL, O(benchmark_all), "38", -100, 100,
         NULL, NPSD_OPT_LIVE, "Median NPS of all B2B SaaS accounts"},
        {"benchmark.smb", NPSD_OPT_DBL, O(benchmark_smb), "42", -100, 100,
         NULL, NPSD_OPT_LIVE, "Median NPS, segment smb"},
        {"benchmark.mid_market", NPSD_OPT_DBL, O(benchmark_mid_market), "35",
         -100, 100, NULL, NPSD_OPT_LIVE, "Median NPS, segment mid_market"},
        {"benchmark.enterprise", NPSD_OPT_DBL, O(benchmark_enterprise), "32",
         -100, 100, NULL, NPSD_OPT_LIVE, "Median NPS, segment enterprise"},
        {"benchmark.relationship", NPSD_OPT_DBL, O(benchmark_relationship),
         "35", -100, 100, NULL, NPSD_OPT_LIVE,
         "Median NPS of relationship surveys (the relationship slice)"},
        {"benchmark.transactional", NPSD_OPT_DBL, O(benchmark_transactional),
         "50", -100, 100, NULL, NPSD_OPT_LIVE,
         "Median NPS of transactional surveys (the transactional slice)"},

        /* batching */
        {"batch.max", NPSD_OPT_INT, O(batch_max), "2000", 1, 100000, NULL, 0,
         "Messages per poll batch"},
        {"batch.wait.ms", NPSD_OPT_INT, O(batch_wait_ms), "20", 0, 10000, NULL,
         0, "How long a batch may gather"},

        /* limits & retention */
        {"dedupe.days", NPSD_OPT_INT, O(dedupe_days), "400", 400, 3650, NULL,
         0, "Exactly-once horizon for responses and follow-ups"},
        {"replay.days", NPSD_OPT_INT, O(replay_days), "7", 1, 400, NULL, 0,
         "How long a response's output snapshot is kept for replays"},
        {"message.max_bytes", NPSD_OPT_INT, O(message_max_bytes), "65536",
         1024, 1048576, NULL, 0, "Larger input messages go to the DLQ"},
        {"comment.max_bytes", NPSD_OPT_INT, O(comment_max_bytes), "8192", 0,
         1048576, NULL, 0, "Comment bytes kept (cut at a UTF-8 boundary)"},
        {"future.allowance.s", NPSD_OPT_INT, O(future_allowance_s), "3600", 0,
         604800, NULL, 0, "How far in the future a timestamp may lie"},
        {"suppress.days", NPSD_OPT_INT, O(suppress_days), "30", 0, 3650, NULL,
         0, "TTL of the survey suppression key per user"},
        {"previous.count", NPSD_OPT_INT, O(previous_count), "3", 0, 10, NULL,
         0, "Earlier responses of the account in each output message"},
        {"roll.interval.s", NPSD_OPT_INT, O(roll_interval_s), "60", 1, 3600,
         NULL, 0, "Timer: window rolls, follow-up deadlines, leftover alerts"},

        /* priority & follow-up */
        {"priority.renewal_days", NPSD_OPT_INT, O(priority_renewal_days), "90",
         0, 3650, NULL, NPSD_OPT_LIVE,
         "Detractor (p1) or passive (p2) renewing within this many days"},
        {"priority.arr", NPSD_OPT_DBL, O(priority_arr), "100000", 0, 1e15,
         NULL, NPSD_OPT_LIVE, "Detractor with at least this ARR is p1"},
        {"followup.ack_hours", NPSD_OPT_INT, O(followup_ack_hours), "48", 1,
         8760, NULL, 0, "Detractor must be acknowledged within"},
        {"followup.route_days", NPSD_OPT_INT, O(followup_route_days), "7", 1,
         365, NULL, 0, "Detractor must be routed within"},
        {"followup.close_days", NPSD_OPT_INT, O(followup_close_days), "30", 1,
         365, NULL, 0, "Detractor loop must be closed within"},

        /* health model (SPEC §5) */
        {"health.weight.nps", NPSD_OPT_DBL, O(health_w_nps), "40", 0, 1000,
         NULL, NPSD_OPT_LIVE, "Weight of the NPS component"},
        {"health.weight.adoption", NPSD_OPT_DBL, O(health_w_adoption), "20", 0,
         1000, NULL, NPSD_OPT_LIVE, "Weight of the adoption component"},
        {"health.weight.engagement", NPSD_OPT_DBL, O(health_w_engagement),
         "15", 0, 1000, NULL, NPSD_OPT_LIVE,
         "Weight of the engagement component"},
        {"health.weight.support", NPSD_OPT_DBL, O(health_w_support), "10", 0,
         1000, NULL, NPSD_OPT_LIVE, "Weight of the support component"},
        {"health.weight.followup", NPSD_OPT_DBL, O(health_w_followup), "15", 0,
         1000, NULL, NPSD_OPT_LIVE, "Weight of the follow-up component"},
        {"health.green", NPSD_OPT_INT, O(health_green), "70", 0, 100, NULL,
         NPSD_OPT_LIVE,
         "Health at or above: green band"},
        {"health.yellow", NPSD_OPT_INT, O(health_yellow), "40", 0, 100, NULL,
         NPSD_OPT_LIVE,
         "Health at or above: yellow band (below: red)"},
        {"health.ticket_penalty", NPSD_OPT_DBL, O(health_ticket_penalty), "15",
         0, 100, NULL, NPSD_OPT_LIVE, "Support score lost per open ticket"},
        {"health.error_penalty", NPSD_OPT_DBL, O(health_error_penalty), "2", 0,
         100, NULL, NPSD_OPT_LIVE, "Support score lost per error in 7 days"},
        {"health.overdue_penalty", NPSD_OPT_DBL, O(health_overdue_penalty),
         "34", 0, 100, NULL, NPSD_OPT_LIVE,
         "Follow-up score lost per overdue detractor"},

        /* alert rules (SPEC §6) */
        {"alert.nps_drop.points", NPSD_OPT_DBL, O(alert_nps_drop_points), "-4",
         -200, 0, NULL, NPSD_OPT_LIVE,
         "nps_drop when the trend is at or below"},
        {"alert.nps_drop.min_responses", NPSD_OPT_INT,
         O(alert_nps_drop_min_responses), "10", 1, 1000000, NULL, NPSD_OPT_LIVE,
         "nps_drop needs this many responses in each period"},
        {"alert.usage_drop.min_users", NPSD_OPT_INT,
         O(alert_usage_drop_min_users), "5", 1, 1000000, NULL, NPSD_OPT_LIVE,
         "usage_drop needs this many active users the 7 days before"},
        {"alert.usage_drop.ratio", NPSD_OPT_DBL, O(alert_usage_drop_ratio),
         "0.7", 0, 1, NULL, NPSD_OPT_LIVE,
         "usage_drop when active users 7d fall below this share"},

        /* cohorts & themes */
        {"cohort.attributes", NPSD_OPT_LIST, O(cohort_attributes), "region", 0,
         0, NULL, 0, "Response attribute keys that get their own cohorts"},
        {"themes.file", NPSD_OPT_STR, O(themes_file), "", 0, 0, NULL,
         NPSD_OPT_LIVE,
         "Theme lexicon file (empty: built-in lexicon)"},

        /* logging, http, clock */
        {"log.level", NPSD_OPT_ENUM, O(log_level), "info", 0, 0,
         "error|warn|info|debug", NPSD_OPT_LIVE, "Log threshold"},
        {"http.listen", NPSD_OPT_ADDR, O(http_listen), "127.0.0.1:9464", 0, 0,
         NULL, 0, "Address of /metrics, /livez, /readyz (empty: off)"},
        {"http.livez.stall.s", NPSD_OPT_INT, O(http_livez_stall_s), "60", 1,
         86400, NULL, NPSD_OPT_LIVE,
         "/livez answers 503 once the main loop has not come round for "
         "this long"},
        {"now", NPSD_OPT_TIME, O(now), "", 0, 0, NULL, 0,
         "Pinned clock, RFC 3339 (empty: wall clock)"},
};

#undef O

#define NPSD_OPT_CNT (sizeof(npsd_opts) / sizeof(npsd_opts[0]))

/* librdkafka defaults npsd relies on; anything else is librdkafka's own. */
static const char *npsd_kafka_defaults[][2] = {
        {"bootstrap.servers", ""},
        {"group.id", "npsd"},
        {"auto.offset.reset", "earliest"},
        /* Eager rebalancing (librdkafka's default, spelled out). Not
         * cooperative-sticky: with librdkafka 2.0.2, a manual commit that
         * fails with ILLEGAL_GENERATION during an incremental rebalance can
         * leave the consumer fetching nothing (librdkafka issue #4059; see
         * tests/integration/it_scale_out.py). */
        {"partition.assignment.strategy", "range,roundrobin"},
        /* librdkafka's 64 MiB default prefetch is most of npsd's memory;
         * 4 MiB (a few 2,000-message batches) keeps batches fed as well as
         * 16 did, and takes 17 MiB off rss100k (docs/benchmarks.md) */
        {"queued.max.messages.kbytes", "4096"},
};

/* Cohort dimensions npsd derives itself: an attribute key of the same name
 * would write into (and corrupt) the built-in cohort's hashes. */
static const char *npsd_builtin_dimensions[] = {
        "all",      "segment", "plan",        "lifecycle_stage", "language",
        "channel",  "survey_type", "role",    "themes",          NULL};

#define NPSD_CONF_FIELD(conf, opt, type) \
        ((type *)(void *)((char *)(conf) + (opt)->offset))

static const npsd_opt_t *npsd_opt_find(const char *name) {
        size_t i;

        for (i = 0; i < NPSD_OPT_CNT; i++)
                if (!strcmp(npsd_opts[i].name, name))
                        return &npsd_opts[i];
        return NULL;
}

/* Replaces an owned string field. Returns 0 or -1 on allocation failure. */
static int npsd_str_replace(char **field, const char *value) {
        char *s = strdup(value);

        if (!s)
                return -1;
        free(*field);
        *field = s;
        return 0;
}

static int npsd_kafka_set(npsd_conf_t *conf, const char *prop,
                          const char *value, char *errstr,
                          size_t errstr_size) {
        const char *p;
        npsd_kv_t *nkv;
        char *k, *v;
        size_t i;

        if (!*prop) {
                snprintf(errstr, errstr_size,
                         "unknown key 'kafka.': a librdkafka property name "
                         "must follow 'kafka.'");
                return -1;
        }
        for (p = prop; *p; p++) {
                if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' &&
                    *p != '-') {
                        snprintf(errstr, errstr_size,
                                 "kafka.%s: not a librdkafka property name",
                                 prop);
                        return -1;
                }
        }
        for (i = 0; i < conf->kafka_cnt; i++) {
                if (!strcmp(conf->kafka[i].key, prop)) {
                        if (npsd_str_replace(&conf->kafka[i].value, value))
                                goto oom;
                        return 0;
                }
        }
        nkv = realloc(conf->kafka, (conf->kafka_cnt + 1) * sizeof(*nkv));
        if (!nkv)
                goto oom;
        conf->kafka = nkv;
        if (!(k = strdup(prop)))
                goto oom;
        if (!(v = strdup(value))) {
                free(k);
                goto oom;
        }
        conf->kafka[conf->kafka_cnt].key = k;
        conf->kafka[conf->kafka_cnt].value = v;
        conf->kafka_cnt++;
        return 0;

oom:
        snprintf(errstr, errstr_size, "kafka.%s: out of memory", prop);
        return -1;
}

static int npsd_int_cmp(const void *a, const void *b) {
        int x = *(const int *)a, y = *(const int *)b;

        return x < y ? -1 : x > y;
}

/* Parses "30d,90d" into ascending days. Returns the count or -1 with
 * errstr. Kept separate from storage so a bad value changes nothing. */
static int npsd_windows_parse(const char *name, const char *value, int *days,
                              char *errstr, size_t errstr_size) {
        const char *p = value;
        int cnt = 0, i;

        for (;;) {
                const char *s = p, *e = strchr(p, ',');
                char item[32];
                size_t len;
                int d;

                if (!e)
                        e = p + strlen(p);
                while (s < e && isspace((unsigned char)*s))
                        s++;
                len = (size_t)(e - s);
                while (len > 0 && isspace((unsigned char)s[len - 1]))
                        len--;
                if (len == 0 && !*e && cnt == 0) {
                        snprintf(errstr, errstr_size,
                                 "%s: at least one window is needed, like 30d",
                                 name);
                        return -1;
                }
                if (len >= sizeof(item)) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%.*s...' is not a window like 30d",
                                 name, 16, s);
                        return -1;
                }
                memcpy(item, s, len);
                item[len] = '\0';
                if ((d = npsd_window_parse(item)) < 1 || d > 3650) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is not a window like 30d",
                                 name, item);
                        return -1;
                }
                if (cnt == NPSD_WINDOWS_MAX) {
                        snprintf(errstr, errstr_size,
                                 "%s: more than %d windows", name,
                                 NPSD_WINDOWS_MAX);
                        return -1;
                }
                days[cnt++] = d;
                if (!*e)
                        break;
                p = e + 1;
        }
        qsort(days, (size_t)cnt, sizeof(*days), npsd_int_cmp);
        for (i = 1; i < cnt; i++) {
                if (days[i] == days[i - 1]) {
                        snprintf(errstr, errstr_size,
                                 "%s: window %dd is listed twice", name,
                                 days[i]);
                        return -1;
                }
        }
        return cnt;
}

/* Splits "region,tier" into attribute keys. Returns the count or -1. An
 * empty value means no attribute cohorts. */
static int npsd_list_parse(const char *name, const char *value,
                           char *keys[NPSD_COHORT_ATTRS_MAX], char *errstr,
                           size_t errstr_size) {
        const char *p = value;
        int cnt = 0, i;

        while (isspace((unsigned char)*p))
                p++;
        if (!*p)
                return 0;
        for (;;) {
                const char *s = p, *e = strchr(p, ','), *q;
                size_t len;

                if (!e)
                        e = p + strlen(p);
                while (s < e && isspace((unsigned char)*s))
                        s++;
                len = (size_t)(e - s);
                while (len > 0 && isspace((unsigned char)s[len - 1]))
                        len--;
                if (len == 0 || len > 64) {
                        snprintf(errstr, errstr_size,
                                 "%s: attribute keys must be 1-64 characters",
                                 name);
                        goto fail;
                }
                for (q = s; q < s + len; q++) {
                        if (!isalnum((unsigned char)*q) && *q != '_' &&
                            *q != '-' && *q != '.') {
                                snprintf(errstr, errstr_size,
                                         "%s: '%.*s' is not an attribute key "
                                         "(letters, digits, '_', '-', '.')",
                                         name, (int)len, s);
                                goto fail;
                        }
                }
                for (i = 0; npsd_builtin_dimensions[i]; i++) {
                        if (strlen(npsd_builtin_dimensions[i]) == len &&
                            !memcmp(npsd_builtin_dimensions[i], s, len)) {
                                snprintf(errstr, errstr_size,
                                         "%s: '%.*s' is a built-in cohort "
                                         "dimension (all, segment, plan, "
                                         "lifecycle_stage, language, channel, "
                                         "survey_type, role, themes); name "
                                         "the attribute differently",
                                         name, (int)len, s);
                                goto fail;
                        }
                }
                for (i = 0; i < cnt; i++) {
                        if (strlen(keys[i]) == len &&
                            !memcmp(keys[i], s, len)) {
                                snprintf(errstr, errstr_size,
                                         "%s: '%s' is listed twice", name,
                                         keys[i]);
                                goto fail;
                        }
                }
                if (cnt == NPSD_COHORT_ATTRS_MAX) {
                        snprintf(errstr, errstr_size,
                                 "%s: more than %d attribute keys", name,
                                 NPSD_COHORT_ATTRS_MAX);
                        goto fail;
                }
                if (!(keys[cnt] = strndup(s, len))) {
                        snprintf(errstr, errstr_size, "%s: out of memory",
                                 name);
                        goto fail;
                }
                cnt++;
                if (!*e)
                        break;
                p = e + 1;
        }
        return cnt;

fail:
        for (i = 0; i < cnt; i++)
                free(keys[i]);
        return -1;
}

/* "" or host:port (host may be empty or a [v6] literal, port 1..65535). */
static int npsd_addr_valid(const char *s) {
        const char *colon = strrchr(s, ':');
        char *end;
        long port;

        if (!*s)
                return 1;
        if (!colon || !colon[1])
                return 0;
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        return !*end && !errno && port >= 1 && port <= 65535 &&
               isdigit((unsigned char)colon[1]);
}

/* Applies one table option. Nothing in conf changes on error. */
static int npsd_opt_set(npsd_conf_t *conf, const npsd_opt_t *opt,
                        const char *value, char *errstr, size_t errstr_size) {
        char *end;

        switch (opt->type) {
        case NPSD_OPT_INT: {
                long long ll;

                errno = 0;
                ll = strtoll(value, &end, 10);
                if (!*value || *end || errno == EINVAL ||
                    isspace((unsigned char)*value)) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is not an integer", opt->name,
                                 value);
                        return -1;
                }
                if (errno == ERANGE || ll < (long long)opt->min ||
                    ll > (long long)opt->max) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is out of range %.0f..%.0f",
                                 opt->name, value, opt->min, opt->max);
                        return -1;
                }
                *NPSD_CONF_FIELD(conf, opt, int) = (int)ll;
                return 0;
        }

        case NPSD_OPT_DBL: {
                double d;

                errno = 0;
                d = strtod(value, &end);
                if (!*value || *end || isspace((unsigned char)*value) ||
                    !isfinite(d)) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is not a number", opt->name, value);
                        return -1;
                }
                if (d < opt->min || d > opt->max) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is out of range %.15g..%.15g",
                                 opt->name, value, opt->min, opt->max);
                        return -1;
                }
                *NPSD_CONF_FIELD(conf, opt, double) = d;
                return 0;
        }

        case NPSD_OPT_WINDOWS: {
                int days[NPSD_WINDOWS_MAX], cnt;

                if ((cnt = npsd_windows_parse(opt->name, value, days, errstr,
                                              errstr_size)) < 0)
                        return -1;
                if (npsd_str_replace(NPSD_CONF_FIELD(conf, opt, char *),
                                     value))
                        goto oom;
                memcpy(conf->window_days, days, sizeof(days[0]) * (size_t)cnt);
                conf->window_cnt = cnt;
                conf->long_window_days = days[cnt - 1];
                return 0;
        }

        case NPSD_OPT_LIST: {
                char *keys[NPSD_COHORT_ATTRS_MAX];
                int cnt, i;

                if ((cnt = npsd_list_parse(opt->name, value, keys, errstr,
                                           errstr_size)) < 0)
                        return -1;
                if (npsd_str_replace(NPSD_CONF_FIELD(conf, opt, char *),
                                     value)) {
                        for (i = 0; i < cnt; i++)
                                free(keys[i]);
                        goto oom;
                }
                for (i = 0; i < conf->cohort_attr_cnt; i++)
                        free(conf->cohort_attr[i]);
                for (i = 0; i < NPSD_COHORT_ATTRS_MAX; i++)
                        conf->cohort_attr[i] = i < cnt ? keys[i] : NULL;
                conf->cohort_attr_cnt = cnt;
                return 0;
        }

        case NPSD_OPT_ENUM: {
                const char *p = opt->enums;
                size_t len = strlen(value);
                int ok = 0;

                while (p && *p) {
                        const char *bar = strchr(p, '|');
                        size_t n = bar ? (size_t)(bar - p) : strlen(p);

                        if (n == len && !strncmp(p, value, n)) {
                                ok = 1;
                                break;
                        }
                        p = bar ? bar + 1 : NULL;
                }
                if (!ok) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is not one of %s", opt->name,
                                 value, opt->enums);
                        return -1;
                }
                break;
        }

        case NPSD_OPT_TIME: {
                int64_t ms;

                if (*value &&
                    npsd_time_parse_rfc3339(value, strlen(value), &ms) == -1) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is not an RFC 3339 timestamp like "
                                 "2026-11-20T10:00:00Z", opt->name, value);
                        return -1;
                }
                break;
        }

        case NPSD_OPT_ADDR:
                if (!npsd_addr_valid(value)) {
                        snprintf(errstr, errstr_size,
                                 "%s: '%s' is not host:port (or empty)",
                                 opt->name, value);
                        return -1;
                }
                break;

        case NPSD_OPT_STR:
                break;
        }

        /* every string type ends up here once validated */
        if (npsd_str_replace(NPSD_CONF_FIELD(conf, opt, char *), value))
                goto oom;
        return 0;

oom:
        snprintf(errstr, errstr_size, "%s: out of memory", opt->name);
        return -1;
}

int npsd_conf_set(npsd_conf_t *conf, const char *key, const char *value,
                  char *errstr, size_t errstr_size) {
        const npsd_opt_t *opt;

        if (!value)
                value = "";
        if (!strncmp(key, "kafka.", 6))
                return npsd_kafka_set(conf, key + 6, value, errstr,
                                      errstr_size);
        if (!(opt = npsd_opt_find(key))) {
                snprintf(errstr, errstr_size, "unknown key '%s'", key);
                return -1;
        }
        return npsd_opt_set(conf, opt, value, errstr, errstr_size);
}

npsd_conf_t *npsd_conf_new(void) {
        npsd_conf_t *conf;
        char errstr[256];
        size_t i;

        if (!(conf = calloc(1, sizeof(*conf))))
                return NULL;
        for (i = 0; i < sizeof(npsd_kafka_defaults) /
                                sizeof(npsd_kafka_defaults[0]); i++) {
                if (npsd_kafka_set(conf, npsd_kafka_defaults[i][0],
                                   npsd_kafka_defaults[i][1], errstr,
                                   sizeof(errstr)) == -1)
                        goto fail;
        }
        /* Defaults are table text run through the ordinary parser. */
        for (i = 0; i < NPSD_OPT_CNT; i++) {
                if (npsd_opt_set(conf, &npsd_opts[i], npsd_opts[i].def, errstr,
                                 sizeof(errstr)) == -1)
                        goto fail;
        }
        return conf;

fail:
        npsd_conf_destroy(conf);
        return NULL;
}

void npsd_conf_destroy(npsd_conf_t *conf) {
        size_t i;
        int j;

        if (!conf)
                return;
        for (i = 0; i < conf->kafka_cnt; i++) {
                free(conf->kafka[i].key);
                free(conf->kafka[i].value);
        }
        free(conf->kafka);
        for (i = 0; i < NPSD_OPT_CNT; i++) {
                const npsd_opt_t *opt = &npsd_opts[i];

                if (opt->type != NPSD_OPT_INT && opt->type != NPSD_OPT_DBL)
                        free(*NPSD_CONF_FIELD(conf, opt, char *));
        }
        for (j = 0; j < conf->cohort_attr_cnt; j++)
                free(conf->cohort_attr[j]);
        free(conf);
}

const char *npsd_conf_find_file(const char *given) {
        if (given)
                return given;
        if (access("config/npsd.conf", R_OK) == 0)
                return "config/npsd.conf";
        if (access(NPSD_SYSCONF_FILE, R_OK) == 0)
                return NPSD_SYSCONF_FILE;
        return NULL;
}

int npsd_conf_load_file(npsd_conf_t *conf, const char *path, char *errstr,
                        size_t errstr_size) {
        FILE *fp;
        char line[4096], err[512];
        int lineno = 0, ret = -1;

        if (!(fp = fopen(path, "r"))) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return -1;
        }
        while (fgets(line, sizeof(line), fp)) {
                size_t len = strlen(line);
                char *s = line, *e, *eq, *ke, *v;

                lineno++;
                if (len == sizeof(line) - 1 && line[len - 1] != '\n' &&
                    !feof(fp)) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: line longer than %d bytes", path,
                                 lineno, (int)sizeof(line) - 2);
                        goto done;
                }
                e = line + len;
                while (e > s && isspace((unsigned char)e[-1]))
                        *--e = '\0';
                while (isspace((unsigned char)*s))
                        s++;
                if (!*s || *s == '#')
                        continue;
                if (!(eq = strchr(s, '='))) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: expected 'key = value'", path,
                                 lineno);
                        goto done;
                }
                for (ke = eq; ke > s && isspace((unsigned char)ke[-1]); ke--)
                        ;
                *ke = '\0';
                for (v = eq + 1; isspace((unsigned char)*v); v++)
                        ;
                /* "..." lets a value keep surrounding spaces or be "" */
                len = strlen(v);
                if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
                        v[len - 1] = '\0';
                        v++;
                }
                if (!*s) {
                        snprintf(errstr, errstr_size, "%s:%d: missing key",
                                 path, lineno);
                        goto done;
                }
                if (npsd_conf_set(conf, s, v, err, sizeof(err)) == -1) {
                        snprintf(errstr, errstr_size, "%s:%d: %s", path,
                                 lineno, err);
                        goto done;
                }
        }
        if (ferror(fp)) {
                snprintf(errstr, errstr_size, "%s: read error", path);
                goto done;
        }
        ret = 0;

done:
        fclose(fp);
        return ret;
}

/* redis.host -> NPSD_REDIS_HOST */
static void npsd_env_name(const char *key, char *buf, size_t size) {
        size_t i;

        snprintf(buf, size, "NPSD_");
        for (i = 5; *key && i < size - 1; key++, i++)
                buf[i] = *key == '.' ? '_' : (char)toupper((unsigned char)*key);
        buf[i] = '\0';
}

/* Kubernetes injects service-link variables for every Service of the
 * namespace into every pod: a Service named "npsd" gives NPSD_SERVICE_HOST,
 * NPSD_SERVICE_PORT, NPSD_SERVICE_PORT_<NAME>, NPSD_PORT and
 * NPSD_PORT_<PORT>_<PROTO>[_ADDR|_PORT|_PROTO]. None names a setting, and
 * none is the operator's doing: they are ignored without a word. */
static int npsd_env_service_link(const char *name) {
        return !strcmp(name, "NPSD_SERVICE_HOST") ||
               !strcmp(name, "NPSD_SERVICE_PORT") ||
               !strncmp(name, "NPSD_SERVICE_PORT_", 18) ||
               !strcmp(name, "NPSD_PORT") || !strncmp(name, "NPSD_PORT_", 10);
}

int npsd_conf_load_env(npsd_conf_t *conf, char **envp,
                       npsd_conf_warn_cb_t *warn, void *opaque,
                       char *errstr, size_t errstr_size) {
        char name[256], key[256], err[512];

        for (; envp && *envp; envp++) {
                const char *kv = *envp, *eq = strchr(kv, '=');
                const npsd_opt_t *opt = NULL;
                size_t nlen, i;

                if (strncmp(kv, "NPSD_", 5) || !eq)
                        continue;
                nlen = (size_t)(eq - kv);
                if (nlen >= sizeof(name)) {
                        if (warn) {
                                snprintf(err, sizeof(err),
                                         "environment: %.64s... is too long "
                                         "to name a setting; ignored",
                                         kv);
                                warn(err, opaque);
                        }
                        continue;
                }
                memcpy(name, kv, nlen);
                name[nlen] = '\0';

                if (!strncmp(name, "NPSD_KAFKA_", 11)) {
                        /* librdkafka property: '_' reads as '.' */
                        snprintf(key, sizeof(key), "kafka.");
                        for (i = 11; name[i]; i++)
                                key[6 + i - 11] =
                                        name[i] == '_'
                                                ? '.'
                                                : (char)tolower(
                                                          (unsigned char)name[i]);
                        key[6 + i - 11] = '\0';
                } else {
                        for (i = 0; i < NPSD_OPT_CNT; i++) {
                                npsd_env_name(npsd_opts[i].name, key,
                                              sizeof(key));
                                if (!strcmp(key, name)) {
                                        opt = &npsd_opts[i];
                                        break;
                                }
                        }
                        if (!opt) {
                                /* NPSD_NOW is the setting "now": found
                                 * above. Anything else is not ours to
                                 * refuse a start over. */
                                if (!npsd_env_service_link(name) && warn) {
                                        snprintf(err, sizeof(err),
                                                 "environment: %s does not "
                                                 "name a setting; ignored",
                                                 name);
                                        warn(err, opaque);
                                }
                                continue;
                        }
                        snprintf(key, sizeof(key), "%s", opt->name);
                }
                if (npsd_conf_set(conf, key, eq + 1, err, sizeof(err)) == -1) {
                        snprintf(errstr, errstr_size, "environment %s: %s",
                                 name, err);
                        return -1;
                }
        }
        return 0;
}

int npsd_conf_finalize(npsd_conf_t *conf, char *errstr, size_t errstr_size) {
        const char *inputs[] = {conf->topic_responses, conf->topic_usage,
                                conf->topic_accounts, conf->topic_followups};
        const char *outputs[] = {conf->topic_detractors, conf->topic_passives,
                                 conf->topic_promoters, conf->topic_alerts,
                                 conf->topic_dlq};
        const char *gid;
        size_t i, j;

        for (i = 0; i < NPSD_OPT_CNT; i++) {
                const npsd_opt_t *opt = &npsd_opts[i];

                if (!strncmp(opt->name, "topic.", 6) &&
                    !**NPSD_CONF_FIELD(conf, opt, char *)) {
                        snprintf(errstr, errstr_size, "%s: must not be empty",
                                 opt->name);
                        return -1;
                }
        }
        /* Publishing into a topic npsd consumes would loop forever. */
        for (i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++) {
                for (j = 0; j < sizeof(inputs) / sizeof(inputs[0]); j++) {
                        if (!strcmp(outputs[i], inputs[j])) {
                                snprintf(errstr, errstr_size,
                                         "output topic '%s' is also an input "
                                         "topic", outputs[i]);
                                return -1;
                        }
                }
        }
        if (!*conf->redis_prefix) {
                snprintf(errstr, errstr_size, "redis.prefix: must not be empty");
                return -1;
        }
        if (conf->health_yellow > conf->health_green) {
                snprintf(errstr, errstr_size,
                         "health.yellow (%d) must not be above health.green "
                         "(%d)",
                         conf->health_yellow, conf->health_green);
                return -1;
        }
        gid = npsd_conf_kafka_get(conf, "group.id");
        if (!gid || !*gid) {
                snprintf(errstr, errstr_size,
                         "kafka.group.id: must not be empty");
                return -1;
        }
        if (conf->window_cnt < 1) {
                snprintf(errstr, errstr_size, "windows: no window");
                return -1;
        }
        conf->long_window_days = conf->window_days[conf->window_cnt - 1];
        return 0;
}

const char *npsd_conf_kafka_get(const npsd_conf_t *conf, const char *prop) {
        size_t i;

        for (i = 0; i < conf->kafka_cnt; i++)
                if (!strcmp(conf->kafka[i].key, prop))
                        return conf->kafka[i].value;
        return NULL;
}

/* librdkafka properties holding credentials or private keys. */
static int npsd_kafka_secret(const char *prop) {
        return strstr(prop, "password") || strstr(prop, "secret") ||
               strstr(prop, "sasl.jaas") || strstr(prop, "key.pem") ||
               strstr(prop, "ssl.key");
}

/* The value of one table option as text. mask hides a set secret. DBL
 * values are written with 17 digits, so that the text parses back to the
 * same double (npsd_conf_apply_live() copies values through it). */
static void npsd_opt_text(const npsd_conf_t *conf, const npsd_opt_t *opt,
                          int mask, int digits, char *buf, size_t size) {
        const char *s;

        switch (opt->type) {
        case NPSD_OPT_INT:
                snprintf(buf, size, "%d", *NPSD_CONF_FIELD(conf, opt, int));
                break;
        case NPSD_OPT_DBL:
                snprintf(buf, size, "%.*g", digits,
                         *NPSD_CONF_FIELD(conf, opt, double));
                break;
        default:
                s = *NPSD_CONF_FIELD(conf, opt, char *);
                snprintf(buf, size, "%s",
                         mask && (opt->flags & NPSD_OPT_SECRET) && *s ? "****"
                                                                       : s);
                break;
        }
}

void npsd_conf_dump(const npsd_conf_t *conf,
                    void (*emit)(const char *line, void *opaque),
                    void *opaque) {
        char line[4096], value[4000];
        size_t i;

        for (i = 0; i < conf->kafka_cnt; i++) {
                const char *v = conf->kafka[i].value;

                snprintf(line, sizeof(line), "kafka.%s = %s",
                         conf->kafka[i].key,
                         *v && npsd_kafka_secret(conf->kafka[i].key) ? "****"
                                                                      : v);
                emit(line, opaque);
        }
        for (i = 0; i < NPSD_OPT_CNT; i++) {
                npsd_opt_text(conf, &npsd_opts[i], 1, 15, value,
                              sizeof(value));
                snprintf(line, sizeof(line), "%s = %s", npsd_opts[i].name,
                         value);
                emit(line, opaque);
        }
}

int npsd_conf_is_live(const char *key) {
        const npsd_opt_t *opt = npsd_opt_find(key);

        return opt && (opt->flags & NPSD_OPT_LIVE);
}

/* Appends ",key" (or "key") to a comma list, cut with "..." when full. */
static void npsd_list_add(char *list, size_t size, const char *key) {
        size_t len = strlen(list);

        if (!size || len + 4 >= size)
                return;
        if ((size_t)snprintf(list + len, size - len, "%s%s", len ? "," : "",
                             key) >= size - len)
                snprintf(list + size - 4, 4, "...");
}

int npsd_conf_apply_live(npsd_conf_t *conf, const npsd_conf_t *fresh,
                         char *applied, size_t applied_size, char *restart,
                         size_t restart_size, char *errstr,
                         size_t errstr_size) {
        char a[4000], b[4000], key[300];
        size_t i;
        int cnt = 0;

        if (applied_size)
                *applied = '\0';
        if (restart_size)
                *restart = '\0';
        /* kafka.*: every property is read once, when the clients are made */
        for (i = 0; i < fresh->kafka_cnt; i++) {
                const char *old = npsd_conf_kafka_get(conf,
                                                      fresh->kafka[i].key);

                if (!old || strcmp(old, fresh->kafka[i].value)) {
                        snprintf(key, sizeof(key), "kafka.%s",
                                 fresh->kafka[i].key);
                        npsd_list_add(restart, restart_size, key);
                }
        }
        for (i = 0; i < conf->kafka_cnt; i++) {
                if (!npsd_conf_kafka_get(fresh, conf->kafka[i].key)) {
                        snprintf(key, sizeof(key), "kafka.%s",
                                 conf->kafka[i].key);
                        npsd_list_add(restart, restart_size, key);
                }
        }
        for (i = 0; i < NPSD_OPT_CNT; i++) {
                const npsd_opt_t *opt = &npsd_opts[i];

                npsd_opt_text(conf, opt, 0, 17, a, sizeof(a));
                npsd_opt_text(fresh, opt, 0, 17, b, sizeof(b));
                if (!strcmp(a, b))
                        continue;
                if (!(opt->flags & NPSD_OPT_LIVE)) {
                        npsd_list_add(restart, restart_size, opt->name);
                        continue;
                }
                /* validated in fresh already: only memory can fail */
                if (npsd_opt_set(conf, opt, b, errstr, errstr_size) == -1)
                        return -1;
                npsd_list_add(applied, applied_size, opt->name);
                cnt++;
        }
        return cnt;
}
