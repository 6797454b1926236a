/*
 * npsd_fmt — numbers as text without printf. A batch formats thousands of
 * counts, metrics and field names (views, deltas, command word counts);
 * snprintf parses its format string and takes locks on every call, and was
 * a fifth of npsd's CPU in the responses benchmark.
 *
 * Pure: no I/O, no allocation. Every function writes a NUL-terminated
 * string into the caller's buffer and returns its length.
 */
#ifndef NPSD_FMT_H
#define NPSD_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Room for any int64_t in decimal, with sign and NUL. */
#define NPSD_FMT_INT_BUFSZ 21

/* v in decimal, as "%" PRId64 would; buf holds NPSD_FMT_INT_BUFSZ. */
size_t npsd_fmt_i64(int64_t v, char *buf);

/* v in decimal, as "%" PRIu64 would; buf holds NPSD_FMT_INT_BUFSZ. */
size_t npsd_fmt_u64(uint64_t v, char *buf);

/* v with one decimal, as "%.1f" would (the same rounding of the binary
 * value); a value the shortcut cannot round with certainty, or one of
 * 1e8 or more in magnitude, goes through snprintf. buf holds 24 bytes. */
size_t npsd_fmt_1dp(double v, char *buf);

#endif
