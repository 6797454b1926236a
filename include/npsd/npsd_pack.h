/*
 * npsd_pack — the compact stored form of JSON values npsd keeps many of
 * (pure, no I/O): response snapshots (nps:{A}:out:<id>, one per response
 * for replay.days, read back when a response is redelivered) and the
 * account's recent alerts (nps:{A}:alert_log). Stored as JSON text they
 * were the two largest per-account items after 90 days; packed they take
 * about a third of the bytes:
 *
 *   - object keys and frequent string values are two bytes, an index into
 *     a fixed dictionary (append only: stored values index it);
 *   - RFC 3339 times, dates, lowercase hex digests and decimal strings are
 *     stored as the numbers they spell, when printing the number gives the
 *     same string back;
 *   - integers are zig-zag varints, reals with one decimal their tenths;
 *   - every other string is length-prefixed.
 *
 * A decoded value equals the encoded one (json_equal(), member order
 * kept). Bytes that begin with '{' are JSON text (what earlier versions
 * stored) and are parsed as such.
 */
#ifndef NPSD_PACK_H
#define NPSD_PACK_H

#include <jansson.h>
#include <stddef.h>

/* Encodes a JSON value (objects nest at most NPSD_PACK_DEPTH deep).
 * Returns a malloc'd buffer the caller free()s, *lenp its length (it may
 * hold NUL bytes); NULL when out of memory or nested too deep. */
char *npsd_pack_encode(const json_t *value, size_t *lenp);

/* Decodes what npsd_pack_encode() wrote (or JSON text). Returns a new
 * reference the caller json_decref()s; NULL with the reason in errstr when
 * the bytes are neither packed nor JSON. */
json_t *npsd_pack_decode(const char *buf, size_t len, char *errstr,
                             size_t errstr_size);

#define NPSD_PACK_DEPTH 8

#endif
