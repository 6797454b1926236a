/*
 * npsd_event — parsing and validating input messages (pure, no I/O).
 *
 * One function per input kind turns a raw Kafka payload into a typed event,
 * or into a rejection (reason, field, human-readable detail) that the caller
 * sends, with the whole payload, to the dead-letter topic.
 */
#ifndef NPSD_EVENT_H
#define NPSD_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define NPSD_ID_MAX 128         /* identifiers: 1..128 of [A-Za-z0-9._:@-] */
#define NPSD_SHORT_MAX 64       /* trigger, channel, language, ... */
#define NPSD_ATTR_MAX 32        /* attributes per response */

typedef enum {
        NPSD_KIND_RESPONSE = 0,
        NPSD_KIND_USAGE,
        NPSD_KIND_ACCOUNT,
        NPSD_KIND_FOLLOWUP,
} npsd_kind_t;

typedef enum {
        NPSD_REJECT_NONE = 0,
        NPSD_REJECT_INVALID_JSON,
        NPSD_REJECT_NOT_AN_OBJECT,
        NPSD_REJECT_MISSING_FIELD,
        NPSD_REJECT_INVALID_FIELD,
        NPSD_REJECT_TOO_LARGE,
        NPSD_REJECT_TIMESTAMP_IN_FUTURE,
        NPSD_REJECT__CNT
} npsd_reject_reason_t;

/* "invalid_json", "not_an_object", ... (the DLQ contract names). */
const char *npsd_reject_reason_name(npsd_reject_reason_t reason);

typedef struct npsd_reject_s {
        npsd_reject_reason_t reason;
        char field[64];   /* "" when the whole message is at fault */
        char detail[256]; /* for a person: "score must be an integer 0-10, got 11" */
} npsd_reject_t;

typedef enum {
        NPSD_ROLE_END_USER = 0,
        NPSD_ROLE_ADMIN,
        NPSD_ROLE_DECISION_MAKER,
        NPSD_ROLE_OTHER,
        NPSD_ROLE__CNT
} npsd_role_t;

typedef enum {
        NPSD_SURVEY_RELATIONSHIP = 0,
        NPSD_SURVEY_TRANSACTIONAL,
        NPSD_SURVEY__CNT
} npsd_survey_t;

typedef enum {
        NPSD_CAT_DETRACTOR = 0,
        NPSD_CAT_PASSIVE,
        NPSD_CAT_PROMOTER,
        NPSD_CAT__CNT
} npsd_category_t;

const char *npsd_role_name(npsd_role_t role);        /* "end_user", ... "other" */
const char *npsd_survey_name(npsd_survey_t survey);  /* "relationship", ... */
const char *npsd_category_name(npsd_category_t cat); /* "detractor", ... */
/* Canonical role for a raw value (aliases user, executive, buyer); NULL or
 * anything unknown is NPSD_ROLE_OTHER. */
npsd_role_t npsd_role_from_string(const char *s);
/* 9-10 promoter, 7-8 passive, 0-6 detractor. */
npsd_category_t npsd_category_of(int score);

/* String fields point into the parsed JSON document held by `root`; they are
 * valid until npsd_event_clear(). Optional absent strings are NULL. */
typedef struct npsd_response_s {
        const char *event_id, *account_id, *user_id;
        int score;
        npsd_category_t category;
        int64_t submitted_at_ms;
        npsd_role_t role;
        npsd_survey_t survey_type;
        const char *trigger, *channel, *language; /* NULL when absent */
        const char *comment;    /* NULL when absent; truncated copy if > max */
        size_t comment_len;     /* bytes kept (<= comment max, UTF-8 safe cut) */
        json_t *attributes;     /* borrowed object of string values, or NULL */
} npsd_response_t;

typedef enum {
        NPSD_USAGE_SESSION = 0,
        NPSD_USAGE_FEATURE_USED,
        NPSD_USAGE_ERROR,
        NPSD_USAGE_TICKET_OPENED,
        NPSD_USAGE_TICKET_CLOSED,
        NPSD_USAGE_OTHER, /* any other type: counts as activity */
} npsd_usage_type_t;

typedef struct npsd_usage_s {
        const char *event_id, *account_id, *user_id;
        int64_t occurred_at_ms;
        npsd_usage_type_t type;
        const char *feature; /* NULL when absent */
} npsd_usage_t;

typedef struct npsd_account_s {
        const char *account_id;
        const char *name, *segment, *plan, *lifecycle_stage, *csm_owner; /* NULL when absent */
        int has_arr;
        double arr;
        int has_seats;
        int64_t seats;
        int has_renewal;
        int32_t renewal_day; /* epoch day */
        int has_updated_at;
        int64_t updated_at_ms;
} npsd_account_t;

typedef enum {
        NPSD_FOLLOWUP_ACKNOWLEDGED = 0,
        NPSD_FOLLOWUP_ROUTED,
        NPSD_FOLLOWUP_CLOSED,
} npsd_followup_action_t;

typedef struct npsd_followup_s {
        const char *event_id, *account_id, *response_event_id;
        npsd_followup_action_t action;
        int64_t at_ms;
        const char *owner, *team; /* NULL when absent */
} npsd_followup_t;

typedef struct npsd_event_s {
        npsd_kind_t kind;
        json_t *root; /* owned parsed document */
        char *comment_copy; /* owned, when the comment had to be truncated */
        union {
                npsd_response_t response;
                npsd_usage_t usage;
                npsd_account_t account;
                npsd_followup_t followup;
        } u;
} npsd_event_t;

typedef struct npsd_parse_limits_s {
        size_t max_message_bytes;  /* default 65536 */
        size_t max_comment_bytes;  /* default 8192 */
        int64_t future_allowance_ms; /* default 3600000 */
} npsd_parse_limits_t;

void npsd_parse_limits_default(npsd_parse_limits_t *limits);

/* Parses and validates one payload of the given kind against SPEC §2.
 * now_ms is "now" (wall clock or pinned). On success returns 0 and fills
 * *event, which must be released with npsd_event_clear(). On rejection
 * returns -1, fills *reject, and *event needs no clearing. */
int npsd_event_parse(npsd_kind_t kind, const void *payload, size_t len,
                     int64_t now_ms, const npsd_parse_limits_t *limits,
                     npsd_event_t *event, npsd_reject_t *reject);

void npsd_event_clear(npsd_event_t *event);

/* Checks an identifier: 1..128 chars of [A-Za-z0-9._:@-]. */
int npsd_id_valid(const char *s, size_t len);

/* 1 if buf is valid UTF-8 (no overlongs, no surrogates). */
int npsd_utf8_valid(const void *buf, size_t len);

/* Builds the dead-letter message of SPEC §2 for a rejected input:
 * {"reason","field","detail","topic","partition","offset","key","payload",
 *  "payload_encoding","rejected_at"}. key may be NULL (JSON null); a key or
 * payload that is not valid UTF-8 is base64 encoded (payload_encoding /
 * key_encoding "base64"). Returns a malloc'd NUL-terminated JSON string the
 * caller must free(), with *lenp set to its length; NULL on allocation failure. */
char *npsd_dlq_build(const npsd_reject_t *reject, const char *topic,
                     int32_t partition, int64_t offset, const void *key,
                     size_t key_len, const void *payload, size_t len,
                     int64_t now_ms, size_t *lenp);

/* Standard base64 of buf. Returns malloc'd NUL-terminated string. */
char *npsd_base64_encode(const void *buf, size_t len);

#endif
