/*
 * npsd_log — logfmt lines on stderr.
 */
#include "npsd/npsd_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Atomic: a reload (SIGHUP) changes it on the main thread while
 * librdkafka's and the HTTP server's threads log. */
static atomic_int npsd_log_level = NPSD_LOG_INFO;
static const char *npsd_log_names[] = {"error", "warn", "info", "debug"};

int npsd_log_set_level(const char *name) {
        for (int i = 0; i < 4; i++) {
                if (!strcmp(name, npsd_log_names[i])) {
                        npsd_log_level = i;
                        return 0;
                }
        }
        return -1;
}

char *npsd_log_quote_safe(char *s) {
        for (char *p = s; *p; p++)
                if (*p == '"' || *p == '\\')
                        *p = '\'';
        return s;
}

int npsd_log_enabled(npsd_log_level_t level) {
        return (int)level <= npsd_log_level;
}

/* One write(2)-sized line per call so that lines of concurrent threads never
 * interleave mid-line. */
void npsd_log_write(npsd_log_level_t level, const char *fmt, ...) {
        char line[2048];
        struct timespec ts;
        struct tm tm;
        size_t off;
        va_list ap;
        int n;

        if (!npsd_log_enabled(level))
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        off = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(line + off, sizeof(line) - off, ".%03ldZ level=%s ",
                     ts.tv_nsec / 1000000L, npsd_log_names[level]);
        off += (size_t)n;
        va_start(ap, fmt);
        n = vsnprintf(line + off, sizeof(line) - off - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        off += (size_t)n;
        if (off > sizeof(line) - 2)
                off = sizeof(line) - 2;
        line[off++] = '\n';
        fwrite(line, 1, off, stderr);
}
