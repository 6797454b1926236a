"""Bad input never stops the stream and is never silently dropped (SPEC §2).

Good responses are interleaved, in one partition, with every kind of bad
input. Each bad message must reach nps.dlq exactly once, whole, with its
reason, field and source coordinates; every good one must be counted
(Redis == independent computation) and published, including those sent
after the bad ones.
"""
import base64
import json
from collections import Counter, defaultdict

from harness import (Stack, category, classified, dedupe_markers, epoch_day,
                     main, produce_tracked, read_topic, wait_processed,
                     window_problems)

NOW = "2026-11-20T12:00:00Z"
TODAY = epoch_day(NOW)
ACCT = "acct-mix"  # key of the interleaved partition
OTHER = ["acct-mix-b", "acct-mix-c"]


def ts(days_ago, hour=9):
    from datetime import datetime, timedelta, timezone
    t = datetime(2026, 11, 20, hour, tzinfo=timezone.utc) - timedelta(days=days_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def good(n, acct, score, **extra):
    r = {"event_id": "mix-%s-%d" % (acct, n), "account_id": acct,
         "user_id": "u-%d" % n, "score": score,
         "submitted_at": ts(n % 40)}
    r.update(extra)
    return r


def base(n, **over):
    r = {"event_id": "bad-%d" % n, "account_id": ACCT, "user_id": "u-b%d" % n,
         "score": 8, "submitted_at": ts(1)}
    r.update(over)
    return json.dumps(r).encode()


def without(n, field):
    r = json.loads(base(n))
    del r[field]
    return json.dumps(r).encode()


def bad_cases():
    """(name, topic, key, payload bytes, reason, field or None)."""
    big = json.loads(base(90))
    big["comment"] = "x" * 70000
    # exactly at the limit (65536 bytes) is accepted: see GOOD_AT_LIMIT
    over = json.loads(base(91))
    pad = 65537 - len(json.dumps(dict(over, comment="")).encode())
    over["comment"] = "y" * pad
    over_b = json.dumps(over).encode()
    assert len(over_b) == 65537
    future = ts(0, hour=14)  # NOW + 2 h
    R = "nps.responses"
    return [
        ("not_json", R, ACCT, b'{"event_id": "bad-1", "score": ', "invalid_json", None),
        ("empty", R, ACCT, b"", "invalid_json", None),
        ("bad_utf8", R, ACCT,
         b'{"event_id":"bad-3","account_id":"acct-mix","user_id":"u\xff\xfe",'
         b'"score":8,"submitted_at":"2026-11-19T09:00:00Z"}',
         "invalid_json", None),
        ("array", R, ACCT, b'[{"event_id":"bad-4"}]', "not_an_object", None),
        ("scalar", R, ACCT, b'42', "not_an_object", None),
        ("missing_user", R, ACCT, without(6, "user_id"), "missing_field", "user_id"),
        ("missing_score", R, ACCT, without(7, "score"), "missing_field", "score"),
        ("null_event_id", R, ACCT, base(8, event_id=None), "missing_field", "event_id"),
        ("score_11", R, ACCT, base(9, score=11), "invalid_field", "score"),
        ("score_9_5", R, ACCT, base(10, score=9.5), "invalid_field", "score"),
        ("score_str", R, ACCT, base(11, score="9"), "invalid_field", "score"),
        ("score_true", R, ACCT, base(12, score=True), "invalid_field", "score"),
        ("score_neg", R, ACCT, base(13, score=-1), "invalid_field", "score"),
        ("future", R, ACCT, base(14, submitted_at=future),
         "timestamp_in_future", "submitted_at"),
        ("bad_ts", R, ACCT, base(15, submitted_at="yesterday"),
         "invalid_field", "submitted_at"),
        ("too_large", R, ACCT, json.dumps(big).encode(), "too_large", None),
        ("too_large_by_1", R, ACCT, over_b, "too_large", None),
        ("survey_type", R, ACCT, base(18, survey_type="annual"),
         "invalid_field", "survey_type"),
        ("account_id_chars", R, ACCT, base(19, account_id="acct mix"),
         "invalid_field", "account_id"),
        ("event_id_129", R, ACCT, base(20, event_id="e" * 129),
         "invalid_field", "event_id"),
        ("attr_not_string", R, ACCT, base(21, attributes={"region": 5}),
         "invalid_field", "attributes.region"),
        ("null_key", R, None, base(22, score=12), "invalid_field", "score"),
        ("binary_key", R, b"\xff\x00k", base(23, score=12), "invalid_field", "score"),
        ("account_segment", "accounts", "acct-mix-c",
         json.dumps({"account_id": "acct-mix-c", "segment": "huge",
                     "updated_at": "2026-11-01T00:00:00Z"}).encode(),
         "invalid_field", "segment"),
        ("account_not_json", "accounts", "acct-mix-b", b"segment=smb",
         "invalid_json", None),
    ]


def check_dlq_record(d, case, where):
    name, topic, key, payload, reason, field = case
    ctx = "%s: %s" % (name, json.dumps(d)[:400])
    assert d["reason"] == reason, ctx
    assert d.get("field") == field, ctx
    assert isinstance(d.get("detail"), str) and d["detail"], ctx
    assert d["topic"] == topic, ctx
    assert (d["partition"], d["offset"]) == where, (ctx, where)
    if key is None:
        assert d["key"] is None, ctx
    elif isinstance(key, bytes) and d.get("key_encoding") == "base64":
        assert base64.b64decode(d["key"]) == key, ctx
    else:
        kb = key if isinstance(key, bytes) else key.encode()
        assert d["key"].encode() == kb and "key_encoding" not in d, ctx
    enc = d["payload_encoding"]
    assert enc in ("utf8", "base64"), ctx
    got = base64.b64decode(d["payload"]) if enc == "base64" \
        else d["payload"].encode()
    assert got == payload, "%s: payload not whole (%d vs %d bytes)" % (
        name, len(got), len(payload))
    if name == "bad_utf8":
        assert enc == "base64", ctx
    assert d["rejected_at"] == NOW, ctx


def test(build):
    st = Stack(build, name="mixed")
    try:
        goods = []
        # account context: b is smb, c enterprise (c's bad record must not
        # replace it)
        accounts = [
            (a, json.dumps({"account_id": a, "segment": seg, "name": a,
                            "updated_at": "2026-11-10T00:00:00Z"}).encode())
            for a, seg in (("acct-mix", "mid_market"), ("acct-mix-b", "smb"),
                           ("acct-mix-c", "enterprise"))]
        produce_tracked(st, "accounts", accounts)

        cases = bad_cases()
        items, kinds = [], []  # kinds: ("good", response) or ("bad", case)
        n = 0
        roles = ["end_user", "admin", "decision_maker", "user", "buyer",
                 "ceo", None]
        for case in cases:
            # a good response before and after every bad one, same key
            for _ in range(2):
                n += 1
                extra = {"role": roles[n % len(roles)]}
                if n % 3 == 0:
                    extra["survey_type"] = "transactional"
                if n % 5 == 0:
                    extra["comment"] = "pricing is too high and support slow"
                r = good(n, ACCT, n % 11, **{k: v for k, v in extra.items() if v})
                goods.append(r)
                items.append(("nps.responses", ACCT, json.dumps(r).encode()))
                kinds.append(("good", r))
            if case[1] == "nps.responses":
                items.append((case[1], case[2], case[3]))
                kinds.append(("bad", case))
        # 9.0 is accepted as 9; epoch ms and +02:00 offsets; unknown fields
        specials = [
            good(901, ACCT, 9.0),
            good(902, "acct-mix-b", 6, submitted_at=int(
                (TODAY - 3) * 86400000 + 3600000), unknown={"x": 1}),
            good(903, "acct-mix-c", 10, submitted_at="2026-11-20T01:30:00+02:00"),
            good(904, "acct-mix-b", 7, submitted_at="2026-11-20T12:59:00Z"),
        ]
        # exactly 65536 bytes is not over the limit
        at_limit = good(905, "acct-mix-c", 3)
        at_limit["comment"] = ""
        at_limit["comment"] = "z" * (65536 - len(json.dumps(at_limit).encode()))
        specials.append(at_limit)
        for r in specials:
            goods.append(r)
            items.append(("nps.responses", r["account_id"], json.dumps(r).encode()))
            kinds.append(("good", r))
        assert len(json.dumps(at_limit).encode()) == 65536

        npsd = st.npsd("roll.interval.s=1", now=NOW)
        where = produce_tracked(st, "nps.responses",
                                [(k, v) for t, k, v in items])
        acct_bad = [c for c in cases if c[1] == "accounts"]
        where_acct = produce_tracked(st, "accounts",
                                     [(c[2], c[3]) for c in acct_bad])
        # more good traffic after all the bad, other accounts
        tail = [good(1000 + i, OTHER[i % 2], (i * 7) % 11, role="admin")
                for i in range(30)]
        goods += tail
        produce_tracked(st, "nps.responses",
                                [(r["account_id"], json.dumps(r).encode())
                                 for r in tail])
        wait_processed(st, "npsd", timeout=60)
        assert npsd.poll() is None, "npsd died on bad input"

        # every good response after a bad one in the same partition was read
        part = {where[i][0] for i, (k, _) in enumerate(kinds)
                if k == "good" and kinds[i][1]["account_id"] == ACCT}
        assert len(part) == 1

        # -- the DLQ: each bad message exactly once, whole
        dlq = [json.loads(m.value()) for m in read_topic(st, "nps.dlq")]
        by_src = Counter((d["topic"], d["partition"], d["offset"]) for d in dlq)
        dups = [k for k, c in by_src.items() if c > 1]
        assert not dups, "DLQ records repeated: %s" % dups
        index = {(d["topic"], d["partition"], d["offset"]): d for d in dlq}
        expected_src = {}
        for i, (kind, obj) in enumerate(kinds):
            if kind == "bad":
                src = ("nps.responses",) + where[i]
                assert src in index, "bad message %s not in the DLQ" % obj[0]
                check_dlq_record(index[src], obj, where[i])
                expected_src[src] = obj
        for case, w in zip(acct_bad, where_acct):
            src = ("accounts",) + w
            assert src in index, "bad account record %s not in DLQ" % case[0]
            check_dlq_record(index[src], case, w)
            expected_src[src] = case
        stray = set(index) - set(expected_src)
        assert not stray, "good messages in the DLQ: %s" % [
            index[s] for s in stray][:3]
        assert len(dlq) == len(cases), (len(dlq), len(cases))
        # DLQ records are keyed by the original key
        for m in read_topic(st, "nps.dlq"):
            d = json.loads(m.value())
            case = expected_src[(d["topic"], d["partition"], d["offset"])]
            k = case[2]
            assert m.key() == (k.encode() if isinstance(k, str) else k), (
                case[0], m.key())

        # -- every good response counted and published
        outs = defaultdict(list)
        for topic, m in classified(st):
            v = json.loads(m.value())
            outs[v["event_id"]].append((topic, v))
        for r in goods:
            got = outs.get(r["event_id"])
            assert got, "good response %s not published" % r["event_id"]
            assert len(got) == 1, (r["event_id"], len(got))
            topic, v = got[0]
            cat = category(int(r["score"]))
            assert topic == "nps.%ss" % cat and v["category"] == cat, (
                r["event_id"], topic)
            assert v["score"] == int(r["score"]) and \
                isinstance(v["score"], int), (r["event_id"], v["score"])
        assert len(outs) == len(goods), (len(outs), len(goods))
        assert outs["mix-acct-mix-c-903"][0][1]["submitted_at"] == \
            "2026-11-19T23:30:00Z"

        norm = []
        for r in goods:
            r = dict(r)
            if isinstance(r["submitted_at"], str):
                r["submitted_at"] = epoch_day(r["submitted_at"])
            else:
                r["submitted_at"] = r["submitted_at"] // 86400000
            norm.append(r)
        for acct in [ACCT] + OTHER:
            rs = [r for r in norm if r["account_id"] == acct]
            for w in (30, 90):
                inw = [r for r in rs if TODAY - w < r["submitted_at"] <= TODAY]
                probs = window_problems(
                    st.r.hgetall("nps:{%s}:w:%dd" % (acct, w)), inw)
                assert not probs, (acct, w, probs[:6])
        # the bad account record did not replace acct-mix-c's context
        assert st.r.hget("nps:{acct-mix-c}:account", "segment") == "enterprise"
        assert st.r.hget("nps:{acct-mix-c}:summary", "benchmark") == "32"
        # nothing of the bad responses reached Redis
        bad_ids = [json.loads(c[3]).get("event_id") for c in cases
                   if c[3][:1] == b"{" and c[0] not in ("not_json", "bad_utf8")]
        markers = dedupe_markers(st.r)
        for eid in bad_ids:
            if eid and isinstance(eid, str):
                assert not any(e == eid for _, e in markers), eid
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
