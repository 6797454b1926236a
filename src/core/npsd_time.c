/*
 * npsd_time — timestamps and UTC day math (pure, no I/O).
 *
 * No libc time functions are used: timegm()/gmtime_r() depend on the
 * process environment and do not cover the full int64 range, while the
 * days_from_civil / civil_from_days algorithms (H. Hinnant) are exact for
 * the proleptic Gregorian calendar over any range we can represent.
 */
#include "npsd/npsd_time.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* 64-bit core of npsd_days_from_civil(): the public variant returns int32_t,
 * but intermediate results must not overflow for extreme years. */
static int64_t npsd_days_from_civil64(int64_t y, unsigned m, unsigned d) {
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;                                   /* [0, 399] */
        doy = (153 * (int64_t)(m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
        return era * 146097 + doe - 719468;
}

/* 64-bit core of npsd_civil_from_days(), used by npsd_time_format() so that
 * any int64 epoch-ms value formats without overflow. */
static void npsd_civil_from_days64(int64_t z, int64_t *y, unsigned *m,
                                   unsigned *d) {
        int64_t era, doe, yoe, doy, mp;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = z - era * 146097;
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
        *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
        *y = yoe + era * 400 + (*m <= 2);
}

int32_t npsd_days_from_civil(int y, unsigned m, unsigned d) {
        int64_t z = npsd_days_from_civil64(y, m, d);

        if (z > INT32_MAX)
                return INT32_MAX;
        if (z < INT32_MIN)
                return INT32_MIN;
        return (int32_t)z;
}

void npsd_civil_from_days(int32_t z, int *y, unsigned *m, unsigned *d) {
        int64_t yy;

        npsd_civil_from_days64(z, &yy, m, d);
        *y = (int)yy; /* |year| < 6e6 for any int32 day: always fits */
}

static int npsd_is_leap(int64_t y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned npsd_days_in_month(int64_t y, unsigned m) {
        static const unsigned dim[12] = {31, 28, 31, 30, 31, 30,
                                         31, 31, 30, 31, 30, 31};
        if (m == 2 && npsd_is_leap(y))
                return 29;
        return dim[m - 1];
}

/* Reads exactly n decimal digits at s; -1 if any is not a digit. */
static int npsd_digits(const char *s, int n) {
        int v = 0;

        for (int i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v;
}

/* Parses the "YYYY-MM-DD" prefix shared by dates and date-times, checking
 * the day against the real month length (2023-02-29 is rejected). */
static int npsd_parse_ymd(const char *s, int *y, unsigned *m, unsigned *d) {
        int yy, mm, dd;

        if (s[4] != '-' || s[7] != '-')
                return -1;
        if ((yy = npsd_digits(s, 4)) < 0 || (mm = npsd_digits(s + 5, 2)) < 0 ||
            (dd = npsd_digits(s + 8, 2)) < 0)
                return -1;
        if (mm < 1 || mm > 12 || dd < 1 ||
            (unsigned)dd > npsd_days_in_month(yy, (unsigned)mm))
                return -1;
        *y = yy;
        *m = (unsigned)mm;
        *d = (unsigned)dd;
        return 0;
}

/* Grammar (RFC 3339 §5.6):
 *   full-date "T" HH ":" MM ":" SS [ "." 1*DIGIT ] ( "Z" / ("+"/"-") HH ":" MM )
 * 'T' and 'Z' are accepted in lower case. Fractions beyond milliseconds are
 * truncated. A leap second (:60) is accepted and lands on the next second,
 * which is as close as epoch ms can get. */
int npsd_time_parse_rfc3339(const char *s, size_t len, int64_t *ms) {
        int y, hh, mi, ss, frac_ms = 0, off_min = 0;
        unsigned m, d;
        size_t i;
        int64_t days, v;

        if (!s || len < 20) /* "YYYY-MM-DDTHH:MM:SSZ" */
                return -1;
        if (npsd_parse_ymd(s, &y, &m, &d) < 0)
                return -1;
        if (s[10] != 'T' && s[10] != 't')
                return -1;
        if (s[13] != ':' || s[16] != ':')
                return -1;
        if ((hh = npsd_digits(s + 11, 2)) < 0 ||
            (mi = npsd_digits(s + 14, 2)) < 0 ||
            (ss = npsd_digits(s + 17, 2)) < 0)
                return -1;
        if (hh > 23 || mi > 59 || ss > 60)
                return -1;

        i = 19;
        if (s[i] == '.') {
                int nd = 0;

                i++;
                while (i < len && s[i] >= '0' && s[i] <= '9') {
                        if (nd < 3)
                                frac_ms = frac_ms * 10 + (s[i] - '0');
                        nd++;
                        i++;
                }
                if (nd == 0)
                        return -1;
                for (; nd < 3; nd++)
                        frac_ms *= 10;
        }

        if (i >= len)
                return -1;
        if (s[i] == 'Z' || s[i] == 'z') {
                i++;
        } else if (s[i] == '+' || s[i] == '-') {
                int oh, om;

                if (len - i < 6 || s[i + 3] != ':')
                        return -1;
                if ((oh = npsd_digits(s + i + 1, 2)) < 0 ||
                    (om = npsd_digits(s + i + 4, 2)) < 0)
                        return -1;
                if (oh > 23 || om > 59)
                        return -1;
                off_min = oh * 60 + om;
                if (s[i] == '-')
                        off_min = -off_min;
                i += 6;
        } else {
                return -1;
        }
        if (i != len)
                return -1;

        days = npsd_days_from_civil64(y, m, d);
        v = days * 86400 + (int64_t)hh * 3600 + mi * 60 + ss;
        v -= (int64_t)off_min * 60; /* local = UTC + offset */
        *ms = v * 1000 + frac_ms;
        return 0;
}

/* Floor division: C's '/' truncates toward zero, which would put
 * 1969-12-31T23:59:59.999Z (ms = -1) on day 0 instead of day -1. */
static int64_t npsd_floordiv(int64_t a, int64_t b) {
        int64_t q = a / b;

        if ((a % b != 0) && ((a < 0) != (b < 0)))
                q--;
        return q;
}

char *npsd_time_format(int64_t ms, char *buf) {
        int64_t days, rem, y;
        unsigned m, d;
        int hh, mi, ss, frac;

        days = npsd_floordiv(ms, NPSD_MS_PER_DAY);
        /* Not ms - days * MS_PER_DAY: that overflows near INT64_MIN. */
        rem = ms % NPSD_MS_PER_DAY;
        if (rem < 0)
                rem += NPSD_MS_PER_DAY; /* [0, 86399999] */
        npsd_civil_from_days64(days, &y, &m, &d);
        hh = (int)(rem / 3600000);
        mi = (int)(rem / 60000 % 60);
        ss = (int)(rem / 1000 % 60);
        frac = (int)(rem % 1000);
        if (frac)
                snprintf(buf, NPSD_TIME_BUFSZ,
                         "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y,
                         m, d, hh, mi, ss, frac);
        else
                snprintf(buf, NPSD_TIME_BUFSZ, "%04lld-%02u-%02uT%02d:%02d:%02dZ",
                         (long long)y, m, d, hh, mi, ss);
        return buf;
}

int32_t npsd_time_day(int64_t ms) {
        int64_t days = npsd_floordiv(ms, NPSD_MS_PER_DAY);

        if (days > INT32_MAX)
                return INT32_MAX;
        if (days < INT32_MIN)
                return INT32_MIN;
        return (int32_t)days;
}

int npsd_date_parse(const char *s, size_t len, int32_t *day) {
        int y;
        unsigned m, d;

        if (!s || len != 10)
                return -1;
        if (npsd_parse_ymd(s, &y, &m, &d) < 0)
                return -1;
        *day = npsd_days_from_civil(y, m, d);
        return 0;
}

/* Writes v as exactly n decimal digits (leading zeros), most significant
 * first; v must be below 10^n. */
static void npsd_put_digits(char *p, unsigned v, int n) {
        while (n-- > 0) {
                p[n] = (char)('0' + v % 10);
                v /= 10;
        }
}

/* Only years 0000-9999 fit "YYYY-MM-DD" (and are what npsd_date_parse()
 * accepts), so a day outside them is clamped to the first or last day of
 * that range: the output is always a valid date that parses back. Digits
 * are written by hand because the ranges are then known here, where a
 * printf format would have to allow for any int and draw gcc's
 * -Wformat-truncation at -O2 and above. */
char *npsd_date_format(int32_t day, char *buf) {
        int32_t lo = npsd_days_from_civil(0, 1, 1);
        int32_t hi = npsd_days_from_civil(9999, 12, 31);
        int y;
        unsigned m, d;

        npsd_civil_from_days(day < lo ? lo : day > hi ? hi : day, &y, &m, &d);
        npsd_put_digits(buf, (unsigned)y, 4);
        buf[4] = '-';
        npsd_put_digits(buf + 5, m, 2);
        buf[7] = '-';
        npsd_put_digits(buf + 8, d, 2);
        buf[10] = '\0';
        return buf;
}

int npsd_window_contains(int32_t today, int n_days, int32_t day) {
        if (n_days <= 0)
                return 0;
        return (int64_t)day <= (int64_t)today &&
               (int64_t)day >= (int64_t)today - n_days + 1;
}

int npsd_window_prev_contains(int32_t today, int n_days, int32_t day) {
        if (n_days <= 0)
                return 0;
        return (int64_t)day <= (int64_t)today - n_days &&
               (int64_t)day >= (int64_t)today - 2 * (int64_t)n_days + 1;
}

/* "30d" -> 30. Strict: digits then a single lower-case 'd', nothing else,
 * so that typos in configuration fail loudly rather than defaulting. */
int npsd_window_parse(const char *s) {
        int n = 0, nd = 0;

        if (!s)
                return -1;
        while (*s >= '0' && *s <= '9') {
                if (++nd > 4)
                        return -1;
                n = n * 10 + (*s - '0');
                s++;
        }
        if (nd == 0 || s[0] != 'd' || s[1] != '\0')
                return -1;
        if (n < 1 || n > 3650)
                return -1;
        return n;
}
