/*
 * npsd_fmt — numbers as text without printf (see include/npsd/npsd_fmt.h).
 */
#include "npsd/npsd_fmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t npsd_fmt_u64(uint64_t v, char *buf) {
        char tmp[NPSD_FMT_INT_BUFSZ];
        size_t n = 0;

        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        for (size_t i = 0; i < n; i++)
                buf[i] = tmp[n - 1 - i];
        buf[n] = '\0';
        return n;
}

size_t npsd_fmt_i64(int64_t v, char *buf) {
        if (v >= 0)
                return npsd_fmt_u64((uint64_t)v, buf);
        buf[0] = '-';
        /* -(v + 1) + 1 stays in range for INT64_MIN */
        return 1 + npsd_fmt_u64((uint64_t)(-(v + 1)) + 1, buf + 1);
}

/* v * 10 rounded to the nearest integer is what "%.1f" prints, except
 * where v * 10 lies so near a half that the rounding of the product itself
 * could decide it (printf rounds the exact binary value, ties to even):
 * those few go through snprintf, so the output is always printf's. Below
 * 1e8, v * 10 is computed within 1e-7 of its exact value, far inside the
 * 1e-6 margin. */
size_t npsd_fmt_1dp(double v, char *buf) {
        double t, r;
        uint64_t u;
        size_t n = 0;

        if (!(fabs(v) < 1e8))
                return (size_t)snprintf(buf, 24, "%.1f", v);
        t = v * 10.0;
        r = nearbyint(t);
        if (fabs(fabs(t - r) - 0.5) < 1e-6)
                return (size_t)snprintf(buf, 24, "%.1f", v);
        if (r < 0 || (r == 0 && signbit(v)))
                buf[n++] = '-';
        u = (uint64_t)fabs(r);
        n += npsd_fmt_u64(u / 10, buf + n);
        buf[n++] = '.';
        buf[n++] = (char)('0' + u % 10);
        buf[n] = '\0';
        return n;
}
