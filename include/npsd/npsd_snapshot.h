/*
 * npsd_snapshot — the stored form of a response's snapshot (pure, no I/O).
 *
 * A counted response's snapshot (processed_at, digest, account, metrics,
 * previous: see npsd_enrich_build()) is kept in Redis for replay.days, one
 * per response: it is the largest per-account item after 90 days. Stored
 * as JSON it took about 950 bytes; this encoding keeps the same JSON value
 * in about a third of that:
 *
 *   - object keys and frequent string values are one byte pairs from a
 *     fixed dictionary (append only: stored snapshots index it);
 *   - RFC 3339 times, dates, lowercase hex digests and decimal strings are
 *     stored as the numbers they spell, when printing the number gives the
 *     same string back;
 *   - integers are zig-zag varints, reals with one decimal their tenths;
 *   - every other string is length-prefixed.
 *
 * A decoded value equals the encoded one (json_equal(), member order
 * kept). Bytes that begin with '{' are the JSON earlier versions stored,
 * and are parsed as such.
 */
#ifndef NPSD_SNAPSHOT_H
#define NPSD_SNAPSHOT_H

#include <jansson.h>
#include <stddef.h>

/* Encodes a JSON value (objects nest at most NPSD_SNAPSHOT_DEPTH deep).
 * Returns a malloc'd buffer the caller free()s, *lenp its length (it may
 * hold NUL bytes); NULL when out of memory or nested too deep. */
char *npsd_snapshot_encode(const json_t *value, size_t *lenp);

/* Decodes what npsd_snapshot_encode() wrote (or JSON text). Returns a new
 * reference the caller json_decref()s; NULL with the reason in errstr when
 * the bytes are not a snapshot. */
json_t *npsd_snapshot_decode(const char *buf, size_t len, char *errstr,
                             size_t errstr_size);

#define NPSD_SNAPSHOT_DEPTH 8

#endif
