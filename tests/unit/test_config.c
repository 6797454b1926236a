/*
 * Unit tests of npsd_config: defaults, sources and their precedence,
 * validation errors, environment mapping, masking, config/npsd.conf.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npsd/npsd_config.h"

#define NPSD_CONF_FILE NPSD_SOURCE_DIR "/config/npsd.conf"

/* Collects npsd_conf_dump() lines into one string. */
typedef struct {
        char buf[16384];
        size_t len;
} dump_t;

static void dump_emit(const char *line, void *opaque) {
        dump_t *d = opaque;
        int n = snprintf(d->buf + d->len, sizeof(d->buf) - d->len, "%s\n",
                         line);

        assert_true(n > 0 && (size_t)n < sizeof(d->buf) - d->len);
        d->len += (size_t)n;
}

static void dump(const npsd_conf_t *conf, dump_t *d) {
        d->len = 0;
        d->buf[0] = '\0';
        npsd_conf_dump(conf, dump_emit, d);
}

/* Writes text to a temporary file; returns its malloc'd path. */
static char *tmpfile_with(const char *text) {
        const char *dir = getenv("TMPDIR");
        char *path;
        size_t size;
        int fd;

        if (!dir || !*dir)
                dir = "/tmp";
        size = strlen(dir) + sizeof("/npsd_test_conf_XXXXXX");
        path = malloc(size);
        assert_non_null(path);
        snprintf(path, size, "%s/npsd_test_conf_XXXXXX", dir);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        return path;
}

static void set_ok(npsd_conf_t *c, const char *k, const char *v) {
        char errstr[512];

        if (npsd_conf_set(c, k, v, errstr, sizeof(errstr)) == -1)
                fail_msg("%s=%s: %s", k, v, errstr);
}

static void set_err(npsd_conf_t *c, const char *k, const char *v,
                    const char *want) {
        char errstr[512];

        if (npsd_conf_set(c, k, v, errstr, sizeof(errstr)) == 0)
                fail_msg("%s=%s accepted", k, v);
        if (!strstr(errstr, want))
                fail_msg("%s=%s: error '%s' lacks '%s'", k, v, errstr, want);
}

static void test_defaults(void **state) {
        npsd_conf_t *c = npsd_conf_new();
        char errstr[256];

        assert_non_null(c);
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), 0);
        assert_string_equal(npsd_conf_kafka_get(c, "group.id"), "npsd");
        assert_string_equal(npsd_conf_kafka_get(c, "auto.offset.reset"),
                            "earliest");
        assert_string_equal(npsd_conf_kafka_get(c, "bootstrap.servers"), "");
        assert_string_equal(
                npsd_conf_kafka_get(c, "partition.assignment.strategy"),
                "range,roundrobin");
        assert_null(npsd_conf_kafka_get(c, "sasl.username"));
        assert_string_equal(c->topic_responses, "nps.responses");
        assert_string_equal(c->topic_usage, "product.usage");
        assert_string_equal(c->topic_accounts, "accounts");
        assert_string_equal(c->topic_followups, "nps.followups");
        assert_string_equal(c->topic_detractors, "nps.detractors");
        assert_string_equal(c->topic_passives, "nps.passives");
        assert_string_equal(c->topic_promoters, "nps.promoters");
        assert_string_equal(c->topic_alerts, "nps.alerts");
        assert_string_equal(c->topic_dlq, "nps.dlq");
        assert_string_equal(c->redis_host, "127.0.0.1");
        assert_int_equal(c->redis_port, 6379);
        assert_string_equal(c->redis_user, "");
        assert_string_equal(c->redis_password, "");
        assert_int_equal(c->redis_db, 0);
        assert_int_equal(c->redis_timeout_ms, 2000);
        assert_string_equal(c->redis_prefix, "nps");
        assert_string_equal(c->windows, "30d,90d");
        assert_int_equal(c->window_cnt, 2);
        assert_int_equal(c->window_days[0], 30);
        assert_int_equal(c->window_days[1], 90);
        assert_int_equal(c->long_window_days, 90);
        assert_int_equal(c->batch_max, 2000);
        assert_int_equal(c->batch_wait_ms, 20);
        assert_int_equal(c->dedupe_days, 400);
        assert_int_equal(c->replay_days, 7);
        assert_int_equal(c->low_confidence_n, 50);
        assert_true(c->role_gap_threshold == 15.0);
        assert_int_equal(c->role_gap_min_responses, 3);
        assert_true(c->benchmark_all == 38.0);
        assert_true(c->benchmark_smb == 42.0);
        assert_true(c->benchmark_mid_market == 35.0);
        assert_true(c->benchmark_enterprise == 32.0);
        assert_true(c->benchmark_relationship == 35.0);
        assert_true(c->benchmark_transactional == 50.0);
        assert_int_equal(c->priority_renewal_days, 90);
        assert_true(c->priority_arr == 100000.0);
        assert_int_equal(c->followup_ack_hours, 48);
        assert_int_equal(c->followup_route_days, 7);
        assert_int_equal(c->followup_close_days, 30);
        assert_string_equal(c->cohort_attributes, "region");
        assert_int_equal(c->cohort_attr_cnt, 1);
        assert_string_equal(c->cohort_attr[0], "region");
        assert_string_equal(c->themes_file, "");
        assert_int_equal(c->message_max_bytes, 65536);
        assert_int_equal(c->comment_max_bytes, 8192);
        assert_int_equal(c->future_allowance_s, 3600);
        assert_int_equal(c->suppress_days, 30);
        assert_int_equal(c->previous_count, 3);
        assert_int_equal(c->roll_interval_s, 60);
        assert_string_equal(c->log_level, "info");
        assert_string_equal(c->http_listen, "127.0.0.1:9464");
        assert_string_equal(c->now, "");
        npsd_conf_destroy(c);
}

static void test_set_and_errors(void **state) {
        npsd_conf_t *c = npsd_conf_new();

        set_ok(c, "redis.port", "6380");
        assert_int_equal(c->redis_port, 6380);
        set_ok(c, "redis.host", "redis.internal");
        assert_string_equal(c->redis_host, "redis.internal");
        set_ok(c, "priority.arr", "250000.5");
        assert_true(c->priority_arr == 250000.5);
        set_ok(c, "benchmark.smb", "-12.5");
        assert_true(c->benchmark_smb == -12.5);
        set_ok(c, "benchmark.transactional", "61");
        assert_true(c->benchmark_transactional == 61.0);
        set_ok(c, "log.level", "debug");
        set_ok(c, "now", "2026-11-20T10:00:00Z");
        set_ok(c, "now", "");
        set_ok(c, "http.listen", "");
        set_ok(c, "http.listen", "0.0.0.0:9000");
        set_ok(c, "cohort.attributes", "region, tier,plan_type");
        assert_int_equal(c->cohort_attr_cnt, 3);
        assert_string_equal(c->cohort_attr[1], "tier");
        assert_string_equal(c->cohort_attr[2], "plan_type");
        set_ok(c, "cohort.attributes", "");
        assert_int_equal(c->cohort_attr_cnt, 0);
        set_ok(c, "kafka.group.id", "other");
        assert_string_equal(npsd_conf_kafka_get(c, "group.id"), "other");
        assert_int_equal(c->kafka_cnt, 5); /* replaced, not appended */

        set_err(c, "foo.bar", "1", "unknown key 'foo.bar'");
        set_err(c, "kafka.", "1", "kafka.");
        set_err(c, "redis.port", "99999",
                "redis.port: '99999' is out of range 1..65535");
        set_err(c, "redis.port", "0", "out of range");
        set_err(c, "redis.port", "abc", "redis.port: 'abc' is not an integer");
        set_err(c, "redis.port", "", "not an integer");
        set_err(c, "redis.port", "12x", "not an integer");
        set_err(c, "redis.port", "99999999999999999999", "out of range");
        set_err(c, "batch.max", "1.5", "not an integer");
        set_err(c, "priority.arr", "lots", "priority.arr: 'lots' is not a number");
        set_err(c, "priority.arr", "nan", "not a number");
        set_err(c, "benchmark.all", "101", "out of range");
        set_err(c, "dedupe.days", "399", "out of range");
        set_err(c, "log.level", "verbose", "log.level: 'verbose' is not one of");
        set_err(c, "now", "yesterday", "now: 'yesterday'");
        set_err(c, "http.listen", "localhost", "host:port");
        set_err(c, "http.listen", "localhost:0", "host:port");
        set_err(c, "cohort.attributes", "a,b,c,d,e,f,g,h,i", "more than 8");
        set_err(c, "cohort.attributes", "region,region", "twice");
        set_err(c, "cohort.attributes", "a b", "not an attribute key");
        set_err(c, "cohort.attributes", "region,segment",
                "cohort.attributes: 'segment' is a built-in cohort dimension");
        set_err(c, "cohort.attributes", "plan", "built-in cohort dimension");
        set_err(c, "cohort.attributes", " role ", "'role' is a built-in");
        set_err(c, "cohort.attributes", "all", "built-in");
        set_err(c, "cohort.attributes", "themes", "built-in");
        set_err(c, "cohort.attributes", "lifecycle_stage", "built-in");
        set_err(c, "cohort.attributes", "language,channel", "'language'");
        set_err(c, "cohort.attributes", "survey_type", "built-in");
        set_err(c, "benchmark.transactional", "101", "out of range");
        set_err(c, "benchmark.relationship", "-100.5", "out of range");
        assert_int_equal(c->cohort_attr_cnt, 0); /* errors change nothing */
        assert_int_equal(c->redis_port, 6380);
        npsd_conf_destroy(c);
}

static void test_windows(void **state) {
        npsd_conf_t *c = npsd_conf_new();

        set_ok(c, "windows", "7d, 365d,30d");
        assert_int_equal(c->window_cnt, 3);
        assert_int_equal(c->window_days[0], 7);
        assert_int_equal(c->window_days[1], 30);
        assert_int_equal(c->window_days[2], 365);
        assert_int_equal(c->long_window_days, 365);
        set_ok(c, "windows", "1d,2d,3d,4d,5d,6d,7d,3650d");
        assert_int_equal(c->window_cnt, 8);

        set_err(c, "windows", "30x", "windows: '30x' is not a window like 30d");
        set_err(c, "windows", "30d,30d", "twice");
        set_err(c, "windows", "0d", "not a window");
        set_err(c, "windows", "3651d", "not a window");
        set_err(c, "windows", "", "at least one window");
        set_err(c, "windows", "1d,2d,3d,4d,5d,6d,7d,8d,9d", "more than 8");
        set_err(c, "windows", "30d,,90d", "not a window");
        assert_int_equal(c->window_cnt, 8); /* unchanged by the errors */
        npsd_conf_destroy(c);
}

static void test_precedence(void **state) {
        npsd_conf_t *c = npsd_conf_new();
        char *path = tmpfile_with("# test\n"
                                  "redis.host = file-host\n"
                                  "redis.port = 7000\n"
                                  "redis.db = 3\n"
                                  "  redis.prefix=\"  spaced \"\n"
                                  "kafka.client.id = from-file\n");
        char *env[] = {"PATH=/bin", "NPSD_REDIS_PORT=7001",
                       "NPSD_REDIS_DB=4", "NPSD_KAFKA_CLIENT_ID=from-env",
                       NULL};
        char errstr[512];

        assert_int_equal(npsd_conf_load_file(c, path, errstr, sizeof(errstr)),
                         0);
        assert_int_equal(npsd_conf_load_env(c, env, NULL, NULL, errstr,
                                            sizeof(errstr)),
                         0);
        set_ok(c, "redis.db", "5");
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), 0);

        assert_string_equal(c->redis_host, "file-host"); /* file only */
        assert_int_equal(c->redis_port, 7001);           /* env over file */
        assert_int_equal(c->redis_db, 5);                /* set over env */
        assert_string_equal(c->redis_prefix, "  spaced ");
        assert_string_equal(npsd_conf_kafka_get(c, "client.id"), "from-env");
        unlink(path);
        free(path);
        npsd_conf_destroy(c);
}

static void test_file_errors(void **state) {
        npsd_conf_t *c = npsd_conf_new();
        char *path = tmpfile_with("redis.host = h\n\n"
                                  "redis.port = 99999\n");
        char errstr[512];

        assert_int_equal(npsd_conf_load_file(c, path, errstr, sizeof(errstr)),
                         -1);
        assert_non_null(strstr(errstr, ":3: redis.port: '99999' is out of "
                                       "range 1..65535"));
        unlink(path);
        free(path);

        path = tmpfile_with("just words\n");
        assert_int_equal(npsd_conf_load_file(c, path, errstr, sizeof(errstr)),
                         -1);
        assert_non_null(strstr(errstr, ":1: expected 'key = value'"));
        unlink(path);
        free(path);

        path = tmpfile_with("nope = 1\n");
        assert_int_equal(npsd_conf_load_file(c, path, errstr, sizeof(errstr)),
                         -1);
        assert_non_null(strstr(errstr, ":1: unknown key 'nope'"));
        unlink(path);
        free(path);

        assert_int_equal(npsd_conf_load_file(c, "/nonexistent/npsd.conf",
                                             errstr, sizeof(errstr)),
                         -1);
        assert_non_null(strstr(errstr, "/nonexistent/npsd.conf"));
        npsd_conf_destroy(c);
}

/* Collects environment warnings, one per line. */
static void warn_collect(const char *msg, void *opaque) {
        dump_emit(msg, opaque);
}

static void test_env(void **state) {
        npsd_conf_t *c = npsd_conf_new();
        dump_t *w = calloc(1, sizeof(*w));
        char *env[] = {"NPSD_KAFKA_SASL_USERNAME=alice",
                       "NPSD_KAFKA_BOOTSTRAP_SERVERS=k1:9092,k2:9092",
                       "NPSD_LOW_CONFIDENCE_N=30",
                       "NPSD_MESSAGE_MAX_BYTES=2048",
                       "NPSD_PRIORITY_RENEWAL_DAYS=60",
                       "NPSD_NOW=2026-11-20T10:00:00Z",
                       "NPSDX=ignored", "HOME=/root", NULL};
        /* what the kubelet injects for a Service named npsd */
        char *k8s[] = {"NPSD_SERVICE_HOST=10.0.0.7",
                       "NPSD_SERVICE_PORT=9464",
                       "NPSD_SERVICE_PORT_METRICS=9464",
                       "NPSD_PORT=tcp://10.0.0.7:9464",
                       "NPSD_PORT_9464_TCP=tcp://10.0.0.7:9464",
                       "NPSD_PORT_9464_TCP_PROTO=tcp",
                       "NPSD_PORT_9464_TCP_PORT=9464",
                       "NPSD_PORT_9464_TCP_ADDR=10.0.0.7", NULL};
        char *unknown[] = {"NPSD_REDIS_PORTT=1", "NPSD_REDIS_HOST=h2",
                           "NPSD_SERVICEX=1", NULL};
        char *badval[] = {"NPSD_REDIS_PORT=x", NULL};
        char errstr[512];

        assert_non_null(w);
        assert_int_equal(npsd_conf_load_env(c, env, warn_collect, w, errstr,
                                            sizeof(errstr)),
                         0);
        assert_string_equal(npsd_conf_kafka_get(c, "sasl.username"), "alice");
        assert_string_equal(npsd_conf_kafka_get(c, "bootstrap.servers"),
                            "k1:9092,k2:9092");
        assert_int_equal(c->low_confidence_n, 30);
        assert_int_equal(c->message_max_bytes, 2048);
        assert_int_equal(c->priority_renewal_days, 60);
        assert_string_equal(c->now, "2026-11-20T10:00:00Z");
        assert_int_equal(w->len, 0); /* every NPSD_* above is a setting */

        /* service links: silent, and nothing changes */
        assert_int_equal(npsd_conf_load_env(c, k8s, warn_collect, w, errstr,
                                            sizeof(errstr)),
                         0);
        assert_int_equal(w->len, 0);
        assert_int_equal(c->redis_port, 6379);
        assert_string_equal(c->http_listen, "127.0.0.1:9464");

        /* unknown names: one warning each, the start goes on, the known
         * one next to them still applies */
        assert_int_equal(npsd_conf_load_env(c, unknown, warn_collect, w,
                                            errstr, sizeof(errstr)),
                         0);
        assert_string_equal(w->buf,
                            "environment: NPSD_REDIS_PORTT does not name a "
                            "setting; ignored\n"
                            "environment: NPSD_SERVICEX does not name a "
                            "setting; ignored\n");
        assert_string_equal(c->redis_host, "h2");
        assert_int_equal(c->redis_port, 6379);
        /* no callback: still not an error */
        assert_int_equal(npsd_conf_load_env(c, unknown, NULL, NULL, errstr,
                                            sizeof(errstr)),
                         0);

        /* a bad value of a real setting is still refused */
        assert_int_equal(npsd_conf_load_env(c, badval, warn_collect, w,
                                            errstr, sizeof(errstr)),
                         -1);
        assert_non_null(strstr(errstr, "NPSD_REDIS_PORT"));
        assert_non_null(strstr(errstr, "not an integer"));
        free(w);
        npsd_conf_destroy(c);
}

/* The live column: what SIGHUP applies, what it leaves for a restart. */
static void test_apply_live(void **state) {
        npsd_conf_t *c = npsd_conf_new(), *f = npsd_conf_new();
        char applied[256], restart[256], errstr[512];
        char tiny[12];

        assert_true(npsd_conf_is_live("benchmark.smb"));
        assert_true(npsd_conf_is_live("health.weight.nps"));
        assert_true(npsd_conf_is_live("health.green"));
        assert_true(npsd_conf_is_live("alert.nps_drop.points"));
        assert_true(npsd_conf_is_live("priority.arr"));
        assert_true(npsd_conf_is_live("log.level"));
        assert_true(npsd_conf_is_live("themes.file"));
        assert_true(npsd_conf_is_live("http.livez.stall.s"));
        assert_false(npsd_conf_is_live("redis.port"));
        assert_false(npsd_conf_is_live("http.listen"));
        assert_false(npsd_conf_is_live("topic.responses"));
        assert_false(npsd_conf_is_live("windows"));
        assert_false(npsd_conf_is_live("kafka.bootstrap.servers"));
        assert_false(npsd_conf_is_live("no.such.key"));

        /* nothing changed: nothing to say */
        assert_int_equal(npsd_conf_apply_live(c, f, applied, sizeof(applied),
                                              restart, sizeof(restart),
                                              errstr, sizeof(errstr)),
                         0);
        assert_string_equal(applied, "");
        assert_string_equal(restart, "");

        set_ok(f, "benchmark.smb", "12.5");
        set_ok(f, "alert.usage_drop.ratio", "0.1");
        set_ok(f, "log.level", "debug");
        set_ok(f, "redis.port", "7000");
        set_ok(f, "redis.password", "s3cret");
        set_ok(f, "kafka.bootstrap.servers", "k:9092");
        set_ok(f, "kafka.client.id", "other");
        assert_int_equal(npsd_conf_apply_live(c, f, applied, sizeof(applied),
                                              restart, sizeof(restart),
                                              errstr, sizeof(errstr)),
                         3);
        assert_string_equal(applied,
                            "benchmark.smb,alert.usage_drop.ratio,log.level");
        assert_string_equal(restart, "kafka.bootstrap.servers,"
                                     "kafka.client.id,redis.port,"
                                     "redis.password");
        /* live ones copied exactly, the others left alone */
        assert_true(c->benchmark_smb == 12.5);
        assert_true(c->alert_usage_drop_ratio == 0.1);
        assert_string_equal(c->log_level, "debug");
        assert_int_equal(c->redis_port, 6379);
        assert_string_equal(c->redis_password, "");
        assert_string_equal(npsd_conf_kafka_get(c, "bootstrap.servers"), "");
        assert_null(strstr(restart, "s3cret"));

        /* applied again: the live keys are equal now, restart ones not */
        assert_int_equal(npsd_conf_apply_live(c, f, applied, sizeof(applied),
                                              restart, sizeof(restart),
                                              errstr, sizeof(errstr)),
                         0);
        assert_string_equal(applied, "");
        assert_non_null(strstr(restart, "redis.port"));

        /* a property only the running one has counts too; lists are cut */
        set_ok(c, "kafka.linger.ms", "5");
        assert_int_equal(npsd_conf_apply_live(c, f, applied, sizeof(applied),
                                              tiny, sizeof(tiny), errstr,
                                              sizeof(errstr)),
                         0);
        assert_true(strlen(tiny) < sizeof(tiny));
        assert_non_null(strstr(tiny, "..."));
        npsd_conf_destroy(f);
        npsd_conf_destroy(c);
}

/* --config, then ./config/npsd.conf, then NPSD_SYSCONF_FILE. */
static void test_find_file(void **state) {
        const char *tmp = getenv("TMPDIR");
        char cwd[4096], dir[4096];
        int sys = access(NPSD_SYSCONF_FILE, R_OK) == 0;
        FILE *fp;

        snprintf(dir, sizeof(dir), "%s/npsd_test_cwd_XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_non_null(mkdtemp(dir));
        assert_int_equal(chdir(dir), 0);
        assert_string_equal(npsd_conf_find_file("x.conf"), "x.conf");
        /* no config/ here: the system file when present, else none */
        if (sys)
                assert_string_equal(npsd_conf_find_file(NULL),
                                    NPSD_SYSCONF_FILE);
        else
                assert_null(npsd_conf_find_file(NULL));
        assert_int_equal(mkdir("config", 0700), 0);
        fp = fopen("config/npsd.conf", "w");
        assert_non_null(fp);
        fclose(fp);
        assert_string_equal(npsd_conf_find_file(NULL), "config/npsd.conf");
        assert_string_equal(npsd_conf_find_file("x.conf"), "x.conf");
        unlink("config/npsd.conf");
        rmdir("config");
        assert_int_equal(chdir(cwd), 0);
        rmdir(dir);
}

/* Every setting is reachable from the environment under NPSD_<KEY>. */
static void test_env_every_key(void **state) {
        npsd_conf_t *c = npsd_conf_new();
        dump_t *d = calloc(1, sizeof(*d));
        char *line, *save = NULL, errstr[512];

        assert_non_null(d);
        dump(c, d);
        for (line = strtok_r(d->buf, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                char var[256];
                char *env[2] = {var, NULL};
                const char *eq = strstr(line, " = ");
                size_t i, o = 5;

                assert_non_null(eq);
                memcpy(var, "NPSD_", 5);
                for (i = 0; line + i < eq; i++)
                        var[o++] = line[i] == '.' ? '_'
                                                  : (char)toupper(
                                                            (unsigned char)line[i]);
                snprintf(var + o, sizeof(var) - o, "=%s", eq + 3);
                if (npsd_conf_load_env(c, env, NULL, NULL, errstr,
                                            sizeof(errstr)))
                        fail_msg("%s: %s", var, errstr);
        }
        free(d);
        npsd_conf_destroy(c);
}

static void test_dump_masks_secrets(void **state) {
        npsd_conf_t *c = npsd_conf_new();
        dump_t *d = calloc(1, sizeof(*d));

        assert_non_null(d);
        dump(c, d);
        /* empty secrets are shown as empty, so "unset" stays visible */
        assert_non_null(strstr(d->buf, "\nredis.password = \n"));
        assert_non_null(strstr(d->buf, "kafka.bootstrap.servers = \n"));

        set_ok(c, "redis.password", "hunter2");
        set_ok(c, "redis.user", "npsd");
        set_ok(c, "kafka.sasl.username", "alice");
        set_ok(c, "kafka.sasl.password", "pw1");
        set_ok(c, "kafka.sasl.oauthbearer.client.secret", "pw2");
        set_ok(c, "kafka.sasl.jaas.config", "pw3");
        set_ok(c, "kafka.ssl.key.pem", "pw4");
        set_ok(c, "kafka.ssl.key.password", "pw5");
        set_ok(c, "kafka.ssl.certificate.pem", "CERT");
        dump(c, d);
        assert_null(strstr(d->buf, "hunter2"));
        assert_null(strstr(d->buf, "pw"));
        assert_non_null(strstr(d->buf, "redis.password = ****\n"));
        assert_non_null(strstr(d->buf, "redis.user = npsd\n"));
        assert_non_null(strstr(d->buf, "kafka.sasl.username = alice\n"));
        assert_non_null(strstr(d->buf, "kafka.sasl.password = ****\n"));
        assert_non_null(strstr(d->buf, "kafka.ssl.key.pem = ****\n"));
        assert_non_null(strstr(d->buf, "kafka.ssl.certificate.pem = CERT\n"));
        assert_non_null(strstr(d->buf, "redis.port = 6379\n"));
        assert_non_null(strstr(d->buf, "priority.arr = 100000\n"));
        assert_non_null(strstr(d->buf, "windows = 30d,90d\n"));
        free(d);
        npsd_conf_destroy(c);
}

/* The annotated config/npsd.conf loads cleanly, equals the defaults, and
 * names every setting. */
static void test_shipped_conf(void **state) {
        npsd_conf_t *def = npsd_conf_new(), *c = npsd_conf_new();
        dump_t *d1 = calloc(1, sizeof(*d1)), *d2 = calloc(1, sizeof(*d2));
        char errstr[512], *line, *save = NULL;
        FILE *fp;
        char *text;
        size_t n;

        assert_non_null(d1);
        assert_non_null(d2);
        if (npsd_conf_load_file(c, NPSD_CONF_FILE, errstr, sizeof(errstr)))
                fail_msg("%s", errstr);
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), 0);
        assert_int_equal(npsd_conf_finalize(def, errstr, sizeof(errstr)), 0);
        dump(def, d1);
        dump(c, d2);
        assert_string_equal(d1->buf, d2->buf);

        fp = fopen(NPSD_CONF_FILE, "r");
        assert_non_null(fp);
        text = calloc(1, 1 << 16);
        assert_non_null(text);
        n = fread(text, 1, (1 << 16) - 1, fp);
        fclose(fp);
        text[n] = '\0';
        for (line = strtok_r(d1->buf, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                char key[128], want[160];
                const char *eq = strstr(line, " = ");

                assert_non_null(eq);
                snprintf(key, sizeof(key), "%.*s", (int)(eq - line), line);
                snprintf(want, sizeof(want), "\n%s =", key);
                if (!strstr(text, want))
                        fail_msg("config/npsd.conf does not mention %s", key);
        }
        free(text);
        free(d1);
        free(d2);
        npsd_conf_destroy(c);
        npsd_conf_destroy(def);
}

static void test_finalize_checks(void **state) {
        npsd_conf_t *c = npsd_conf_new();
        char errstr[512];

        set_ok(c, "topic.alerts", "nps.responses");
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), -1);
        assert_non_null(strstr(errstr, "nps.responses"));
        set_ok(c, "topic.alerts", "nps.alerts");
        set_ok(c, "topic.dlq", "");
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), -1);
        assert_non_null(strstr(errstr, "topic.dlq"));
        set_ok(c, "topic.dlq", "nps.dlq");
        set_ok(c, "kafka.group.id", "");
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), -1);
        assert_non_null(strstr(errstr, "group.id"));
        set_ok(c, "kafka.group.id", "g");
        /* one topic for all classified responses is allowed */
        set_ok(c, "topic.passives", "nps.detractors");
        assert_int_equal(npsd_conf_finalize(c, errstr, sizeof(errstr)), 0);
        npsd_conf_destroy(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_set_and_errors),
                cmocka_unit_test(test_windows),
                cmocka_unit_test(test_precedence),
                cmocka_unit_test(test_file_errors),
                cmocka_unit_test(test_env),
                cmocka_unit_test(test_apply_live),
                cmocka_unit_test(test_find_file),
                cmocka_unit_test(test_env_every_key),
                cmocka_unit_test(test_dump_masks_secrets),
                cmocka_unit_test(test_shipped_conf),
                cmocka_unit_test(test_finalize_checks),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
