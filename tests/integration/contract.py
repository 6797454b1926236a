"""The machine-readable contract (docs/schemas/*.json) for the tests.

validate(kind, obj) checks one message against its JSON Schema (draft
2020-12) and raises ContractError naming the schema, the message and every
violation. check_topic(topic, values) validates the raw values a test read
from an output topic, chosen by the topic's default name; input topics and
unknown names are not checked (tests read invalid input back on purpose).

Formats are checked by the FormatChecker with "date-time" and "date"
registered here: python3-jsonschema only checks date-time when the optional
rfc3339-validator module is installed, which Debian 12 does not package,
and the schemas' patterns cannot tell that 2026-02-30 does not exist.
"""
import json
import os
import re

from jsonschema import Draft202012Validator, FormatChecker

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_DIR = os.path.join(REPO, "docs", "schemas")

KINDS = ("response", "usage", "account", "followup", "classified", "alert",
         "dlq", "notice")

# output topics (default names) -> schema
TOPIC_KIND = {"nps.detractors": "classified", "nps.passives": "classified",
              "nps.promoters": "classified", "nps.alerts": "alert",
              "nps.dlq": "dlq"}

# input topics (default names) -> schema
INPUT_KIND = {"nps.responses": "response", "product.usage": "usage",
              "accounts": "account", "nps.followups": "followup"}

NOTICE_CHANNEL = "nps:events"


class ContractError(AssertionError):
    pass


_DT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})"
                 r"(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _day_exists(y, m, d):
    if not 1 <= m <= 12 or d < 1:
        return False
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return d <= days[m - 1]


_formats = FormatChecker()


@_formats.checks("date-time")
def _is_date_time(s):
    """RFC 3339 section 5.6, leap second included (year 0000 too, which
    Python's datetime cannot hold)."""
    if not isinstance(s, str):
        return True
    m = _DT.match(s)
    if not m:
        return False
    y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
    if not _day_exists(y, mo, d) or hh > 23 or mi > 59 or ss > 60:
        return False
    if m.group(9) is not None and (int(m.group(9)) > 23 or
                                   int(m.group(10)) > 59):
        return False
    return True


@_formats.checks("date")
def _is_date(s):
    if not isinstance(s, str):
        return True
    m = _DATE.match(s)
    return bool(m) and _day_exists(*(int(g) for g in m.groups()))


_validators = {}


def schema(kind):
    with open(os.path.join(SCHEMA_DIR, kind + ".json")) as f:
        return json.load(f)


def validator(kind):
    if kind not in _validators:
        s = schema(kind)
        Draft202012Validator.check_schema(s)
        _validators[kind] = Draft202012Validator(s, format_checker=_formats)
    return _validators[kind]


def problems(kind, obj):
    """Every violation of kind's schema by obj, as readable lines."""
    out = []
    for e in sorted(validator(kind).iter_errors(obj), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in e.absolute_path) or "(message)"
        out.append("%s: %s" % (where, e.message))
    return out


def validate(kind, obj):
    """Raises ContractError unless obj (parsed JSON) satisfies the schema
    docs/schemas/<kind>.json."""
    probs = problems(kind, obj)
    if probs:
        text = json.dumps(obj, sort_keys=True)
        raise ContractError("message does not match docs/schemas/%s.json:\n  %s"
                            "\nmessage: %s" % (kind, "\n  ".join(probs[:10]),
                                               text[:2000]))


def validate_raw(kind, value):
    """value: the bytes (or str) of one message; it must be JSON."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    try:
        obj = json.loads(value)
    except ValueError as e:
        raise ContractError("%s message is not JSON (%s): %r" % (kind, e,
                                                                 value[:300]))
    validate(kind, obj)
    return obj


def check_topic(topic, values):
    """Validates the values (bytes or str) read from topic when it is an
    output topic; returns how many were checked."""
    kind = TOPIC_KIND.get(topic)
    if not kind:
        return 0
    for v in values:
        validate_raw(kind, v)
    return len(values)


def check_notice(data):
    """One message of the nps:events channel (bytes or str)."""
    return validate_raw("notice", data)
