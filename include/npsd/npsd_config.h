/*
 * npsd_config — the settings of npsd, from one declarative table.
 *
 * Precedence, lowest to highest: built-in default, config file
 * (`key = value`, '#' comments), environment (NPSD_<KEY> with '.' as '_',
 * upper case: redis.host -> NPSD_REDIS_HOST), then --set key=value.
 * Every `kafka.<prop>` key is passed straight to librdkafka (environment:
 * NPSD_KAFKA_<PROP>, '_' read as '.'). An NPSD_* variable that names no
 * setting is a warning, not an error (Kubernetes service links: silent).
 *
 * The file: --config FILE, else config/npsd.conf in the working directory,
 * else NPSD_SYSCONFDIR/npsd.conf (npsd_conf_find_file()).
 */
#ifndef NPSD_CONFIG_H
#define NPSD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* Where the system-wide npsd.conf lives; a build may set its own
 * (-DNPSD_SYSCONFDIR="/opt/npsd/etc"). */
#ifndef NPSD_SYSCONFDIR
#define NPSD_SYSCONFDIR "/etc/npsd"
#endif
#define NPSD_SYSCONF_FILE NPSD_SYSCONFDIR "/npsd.conf"

#define NPSD_WINDOWS_MAX 8
#define NPSD_COHORT_ATTRS_MAX 8

typedef struct npsd_kv_s {
        char *key;   /* librdkafka property name, without "kafka." */
        char *value;
} npsd_kv_t;

typedef struct npsd_conf_s {
        /* Kafka: librdkafka properties, in the order they were set. An empty
         * bootstrap.servers means "start the embedded development broker". */
        npsd_kv_t *kafka;
        size_t kafka_cnt;

        char *topic_responses, *topic_usage, *topic_accounts, *topic_followups;
        char *topic_detractors, *topic_passives, *topic_promoters;
        char *topic_alerts, *topic_dlq;
        /* after an assignment, hold the other inputs for at most this long
         * while the assigned accounts partitions are read to their end */
        int accounts_first_s;

        char *redis_host;
        int redis_port;
        char *redis_user;     /* ACL user, "" for none */
        char *redis_password; /* "" for none */
        int redis_db;
        int redis_timeout_ms;
        char *redis_prefix;   /* "nps" */
        char *redis_cluster;  /* "auto", "on", "off" */
        char *redis_nodes;    /* more cluster seeds, "host:port,..." */
        int redis_wait_replicas; /* WAIT for this many replicas per batch */

        /* windows, e.g. "30d,90d": parsed into days, ascending */
        char *windows;
        int window_days[NPSD_WINDOWS_MAX];
        int window_cnt;
        int long_window_days; /* window of trend, role gap, benchmark (largest) */

        int batch_max;        /* messages per poll batch */
        int batch_wait_ms;    /* how long a batch may gather */
        int dedupe_days;      /* exactly-once horizon for responses (>= 400) */
        int replay_days;      /* how long a response's output snapshot is kept */
        int low_confidence_n;
        double role_gap_threshold;
        int role_gap_min_responses;
        double benchmark_all, benchmark_smb, benchmark_mid_market,
                benchmark_enterprise;
        /* medians of the relationship and transactional slices */
        double benchmark_relationship, benchmark_transactional;
        int priority_renewal_days;
        double priority_arr;
        int followup_ack_hours, followup_route_days, followup_close_days;
        char *cohort_attributes; /* comma list of attribute keys */
        char *cohort_attr[NPSD_COHORT_ATTRS_MAX];
        int cohort_attr_cnt;
        char *themes_file;    /* "" = built-in lexicon */
        int message_max_bytes;
        int comment_max_bytes;
        int future_allowance_s;
        int suppress_days;
        int previous_count;
        int roll_interval_s;  /* how often quiet accounts' windows are rolled */
        /* health model (SPEC §5): component weights, bands, penalties */
        double health_w_nps, health_w_adoption, health_w_engagement,
                health_w_support, health_w_followup;
        int health_green, health_yellow;
        double health_ticket_penalty, health_error_penalty,
                health_overdue_penalty;
        /* alert rules (SPEC §6) */
        double alert_nps_drop_points;   /* trend at or below: -4 */
        int alert_nps_drop_min_responses; /* in each period: 10 */
        int alert_usage_drop_min_users; /* active users the 7 days before: 5 */
        double alert_usage_drop_ratio;  /* below this share of them: 0.7 */
        char *log_level;      /* error, warn, info, debug */
        char *http_listen;    /* host:port of /metrics and probes, "" = off */
        int http_livez_stall_s; /* /livez 503 after the loop stalls this long */
        char *now;            /* pinned clock (RFC 3339), "" = wall clock */
} npsd_conf_t;

/* Creates a configuration holding every default. Must be destroyed with
 * npsd_conf_destroy(). */
npsd_conf_t *npsd_conf_new(void);
void npsd_conf_destroy(npsd_conf_t *conf);

/* Sets one key. Returns 0, or -1 with errstr naming the key and the problem
 * (unknown key, bad number, out of bounds, bad window). */
int npsd_conf_set(npsd_conf_t *conf, const char *key, const char *value,
                  char *errstr, size_t errstr_size);

/* The configuration file to read: given when not NULL (it need not exist:
 * reading it reports that), else "config/npsd.conf" when readable in the
 * working directory, else NPSD_SYSCONF_FILE when readable, else NULL (no
 * file: defaults, environment and --set only). Returns given or a static
 * string. */
const char *npsd_conf_find_file(const char *given);

/* Reads a `key = value` file. Returns 0 or -1 (errstr has file:line). */
int npsd_conf_load_file(npsd_conf_t *conf, const char *path, char *errstr,
                        size_t errstr_size);

/* Receives one warning (a NUL-terminated line, valid during the call). */
typedef void(npsd_conf_warn_cb_t)(const char *msg, void *opaque);

/* Applies NPSD_* variables from envp (NULL-terminated "K=V" strings, not
 * kept). A variable that names a setting is set like any other source, and
 * a bad value is an error: -1 with errstr. Kubernetes service-link
 * variables (NPSD_SERVICE_HOST, NPSD_SERVICE_PORT[_*], NPSD_PORT[_*]) are
 * skipped silently; any other NPSD_* name is skipped with a warning to
 * warn (may be NULL: no warnings). Returns 0 or -1. */
int npsd_conf_load_env(npsd_conf_t *conf, char **envp,
                       npsd_conf_warn_cb_t *warn, void *opaque,
                       char *errstr, size_t errstr_size);

/* Cross-key checks and derived fields (windows parsed, attributes split).
 * Call once after all sources. Returns 0 or -1 with errstr. */
int npsd_conf_finalize(npsd_conf_t *conf, char *errstr, size_t errstr_size);

/* 1 when a running npsd applies a change of key on SIGHUP (log.level, the
 * theme lexicon, benchmarks, role gap, priority, health and alert settings,
 * http.livez.stall.s), 0 when the change needs a restart (every other key,
 * kafka.* included). */
int npsd_conf_is_live(const char *key);

/* Reload: compares fresh (a complete, finalized configuration read from the
 * same sources; not changed, still owned by the caller) with conf key by
 * key. Copies the changed live keys into conf and leaves every other key of
 * conf as it is. applied and restart receive the changed keys of each kind
 * as comma lists (cut with "..." when longer than their size; values are
 * never written, so secrets stay out of logs). Returns the number of keys
 * applied, or -1 with errstr when out of memory (conf may then hold some of
 * the new live values). */
int npsd_conf_apply_live(npsd_conf_t *conf, const npsd_conf_t *fresh,
                         char *applied, size_t applied_size, char *restart,
                         size_t restart_size, char *errstr,
                         size_t errstr_size);

/* Looks up a kafka.* property; NULL when unset. */
const char *npsd_conf_kafka_get(const npsd_conf_t *conf, const char *prop);

/* Writes the effective configuration, one `key = value` per line, secrets
 * (password, sasl.*password*, ssl.*key*, *secret*) masked as "****". */
void npsd_conf_dump(const npsd_conf_t *conf, void (*emit)(const char *line, void *opaque),
                    void *opaque);

#endif
