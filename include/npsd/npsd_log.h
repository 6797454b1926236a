/*
 * npsd_log — logfmt lines on stderr with a level threshold.
 *   ts=2026-11-20T10:00:00.123Z level=info msg="..." key=value ...
 * Never called per event on the hot path: per batch, per state change.
 */
#ifndef NPSD_LOG_H
#define NPSD_LOG_H

typedef enum { NPSD_LOG_ERROR = 0, NPSD_LOG_WARN, NPSD_LOG_INFO, NPSD_LOG_DEBUG } npsd_log_level_t;

/* Returns -1 for an unknown level name. */
int npsd_log_set_level(const char *name);
int npsd_log_enabled(npsd_log_level_t level);

/* fmt produces the rest of the line after level=...: by convention
 * msg="..." followed by key=value pairs. */
void npsd_log_write(npsd_log_level_t level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Makes text safe inside a quoted logfmt value, in place: '"' and '\'
 * become '\''. For messages npsd does not write itself (librdkafka,
 * libmicrohttpd, configuration errors). Returns s. */
char *npsd_log_quote_safe(char *s);

#define npsd_error(...) npsd_log_write(NPSD_LOG_ERROR, __VA_ARGS__)
#define npsd_warn(...)  npsd_log_write(NPSD_LOG_WARN, __VA_ARGS__)
#define npsd_info(...)  npsd_log_write(NPSD_LOG_INFO, __VA_ARGS__)
#define npsd_debug(...) do { if (npsd_log_enabled(NPSD_LOG_DEBUG)) npsd_log_write(NPSD_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
