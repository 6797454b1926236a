/*
 * npsd_time — timestamps and UTC day math (pure, no I/O).
 *
 * Internally every instant is epoch milliseconds (int64_t) and every date is
 * an epoch day: the number of whole UTC days since 1970-01-01 (int32_t).
 */
#ifndef NPSD_TIME_H
#define NPSD_TIME_H

#include <stddef.h>
#include <stdint.h>

#define NPSD_MS_PER_DAY 86400000LL
#define NPSD_TIME_BUFSZ 32 /* "2026-11-20T10:00:00.123Z" + NUL fits */

/* Parses an RFC 3339 timestamp with any offset ("2026-11-20T10:00:00Z",
 * "2026-11-20T12:00:00.5+02:00", lowercase 't'/'z' accepted) into epoch ms.
 * Returns 0 on success, -1 if the text is not a valid RFC 3339 date-time. */
int npsd_time_parse_rfc3339(const char *s, size_t len, int64_t *ms);

/* Formats epoch ms as RFC 3339 UTC. Whole seconds print without a fraction
 * ("2026-11-20T10:00:00Z"), otherwise milliseconds are shown ("...00.250Z").
 * buf must hold NPSD_TIME_BUFSZ bytes. Returns buf. */
char *npsd_time_format(int64_t ms, char *buf);

/* Epoch day (UTC) of an instant; floors correctly for negative ms. */
int32_t npsd_time_day(int64_t ms);

/* Parses "YYYY-MM-DD" into an epoch day. Returns 0 or -1. */
int npsd_date_parse(const char *s, size_t len, int32_t *day);

/* Formats an epoch day as "YYYY-MM-DD"; buf holds >= 11 bytes. Days before
 * 0000-01-01 or after 9999-12-31 give those dates. Returns buf. */
char *npsd_date_format(int32_t day, char *buf);

/* Epoch day <-> civil date (proleptic Gregorian). */
int32_t npsd_days_from_civil(int y, unsigned m, unsigned d);
void npsd_civil_from_days(int32_t z, int *y, unsigned *m, unsigned *d);

/* Window day math. A window of n days "ending today" holds days
 * [today - n + 1, today]; the previous period of the same length holds
 * [today - 2n + 1, today - n]. */
int npsd_window_contains(int32_t today, int n_days, int32_t day);
int npsd_window_prev_contains(int32_t today, int n_days, int32_t day);

/* Parses a window spec "30d" (1..3650 days). Returns days or -1. */
int npsd_window_parse(const char *s);

#endif
