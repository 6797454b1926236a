"""Bad product-usage and follow-up messages go to the DLQ whole, with their
reason, field and source coordinates, and good messages around them still
count (SPEC §2 "Bad input").

One account's usage events and follow-ups are sent in one partition each,
a good message before and after every bad one. Each bad message must be
in nps.dlq exactly once: reason, field, a detail, topic / partition /
offset / key of the original, the whole payload (base64 when it is not
UTF-8) and rejected_at at the pinned clock; the DLQ record is keyed by the
original key. The good usage events give the exact active-user count, and
the good follow-ups (acknowledged first, routed in the middle, closed
last) close the detractor's loop on time."""
import base64
import json
from collections import Counter
from datetime import datetime, timedelta, timezone

from harness import (Stack, engine_settled, main, outbox_len,
                     produce_tracked, read_topic, state_record, wait_for,
                     wait_processed)

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
NOW = "2026-11-20T12:00:00Z"
A = "acct-q"
TOPICS = ("accounts", "nps.responses", "product.usage", "nps.followups")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def usage(n, **over):
    u = {"event_id": "ub-%d" % n, "account_id": A, "user_id": "bad-%d" % n,
         "occurred_at": iso(T - timedelta(days=1)), "type": "session"}
    u.update(over)
    return {k: v for k, v in u.items() if v is not DROP}


def follow(n, **over):
    f = {"event_id": "fb-%d" % n, "account_id": A, "response_event_id": "r-q1",
         "action": "acknowledged", "at": iso(T - timedelta(minutes=30))}
    f.update(over)
    return {k: v for k, v in f.items() if v is not DROP}


DROP = object()
FUTURE = iso(T + timedelta(hours=2))


def enc(obj):
    return json.dumps(obj).encode()


def bad_usage():
    """(name, key, payload, reason, field)."""
    big = usage(9, feature="f" * 70000)
    return [
        ("not_json", A, b'{"event_id": "ub-1", "account_id": ', "invalid_json",
         None),
        ("empty", A, b"", "invalid_json", None),
        ("not_utf8", A, b'{"event_id":"ub-3","account_id":"acct-q",'
         b'"user_id":"\xff\xfe","occurred_at":"2026-11-19T10:00:00Z"}',
         "invalid_json", None),
        ("array", A, b'[{"event_id":"ub-4"}]', "not_an_object", None),
        ("missing_user", A, enc(usage(5, user_id=DROP)), "missing_field",
         "user_id"),
        ("missing_occurred", None, enc(usage(6, occurred_at=DROP)),
         "missing_field", "occurred_at"),
        ("bad_ts", A, enc(usage(7, occurred_at="yesterday")), "invalid_field",
         "occurred_at"),
        ("type_not_string", A, enc(usage(8, type=5)), "invalid_field", "type"),
        ("too_large", A, enc(big), "too_large", None),
        ("future", A, enc(usage(10, occurred_at=FUTURE)),
         "timestamp_in_future", "occurred_at"),
    ]


def bad_followups():
    big = follow(9, team="t", owner="o", note="n" * 70000)
    return [
        ("not_json", A, b"closed it", "invalid_json", None),
        ("scalar", A, b'"closed"', "not_an_object", None),
        ("missing_rid", A, enc(follow(3, response_event_id=DROP)),
         "missing_field", "response_event_id"),
        ("missing_at", None, enc(follow(4, at=DROP)), "missing_field", "at"),
        ("bad_action", A, enc(follow(5, action="escalated")), "invalid_field",
         "action"),
        ("real_epoch", A, b'{"event_id":"fb-6","account_id":"acct-q",'
         b'"response_event_id":"r-q1","action":"closed","at":1.7e12}',
         "invalid_field", "at"),
        ("too_large", A, enc(big), "too_large", None),
        ("future", A, enc(follow(8, action="closed", at=FUTURE)),
         "timestamp_in_future", "at"),
    ]


def check_record(d, m, case, topic, where):
    name, key, payload, reason, field = case
    ctx = "%s %s: %s" % (topic, name, json.dumps(d)[:300])
    assert d["reason"] == reason, ctx
    assert d["field"] == field, ctx
    assert isinstance(d["detail"], str) and d["detail"], ctx
    assert (d["topic"], d["partition"], d["offset"]) == (topic,) + where, ctx
    assert d["key"] == key and "key_encoding" not in d, ctx
    assert m.key() == (key.encode() if key else None), (ctx, m.key())
    if d["payload_encoding"] == "base64":
        got = base64.b64decode(d["payload"])
        assert name == "not_utf8", ctx
    else:
        assert d["payload_encoding"] == "utf8", ctx
        got = d["payload"].encode()
    assert got == payload, "%s: payload not whole (%d of %d bytes)" % (
        ctx, len(got), len(payload))
    assert d["rejected_at"] == NOW, ctx


def interleave(goods, bads):
    """good, bad, good, bad, ..., good: returns the items and, per item,
    the bad case or None."""
    items, kinds = [], []
    gi = iter(goods)
    for b in bads:
        g = next(gi)
        items.append((A, enc(g)))
        kinds.append(None)
        items.append((b[1], b[2]))
        kinds.append(b)
    for g in gi:
        items.append((A, enc(g)))
        kinds.append(None)
    return items, kinds


def test(build):
    st = Stack(build, name="dlq-uf")
    npsd = None
    try:
        st.produce("accounts", [(A, enc({"account_id": A, "segment": "smb",
                                         "csm_owner": "quinn",
                                         "updated_at": "2026-11-01T00:00:00Z"}))])
        st.produce("nps.responses", [(A, enc(
            {"event_id": "r-q1", "account_id": A, "user_id": "rq",
             "score": 2, "submitted_at": iso(T - timedelta(hours=2))}))])
        npsd = st.npsd(now=NOW)
        wait_processed(st, "npsd", TOPICS, timeout=60)
        assert st.r.hget("nps:{%s}:summary" % A, "open_detractors") == "1"

        bu, bf = bad_usage(), bad_followups()
        good_u = [usage(100 + i, event_id="ug-%d" % i, user_id="good-%d" % i)
                  for i in range(len(bu) + 1)]
        # acknowledged first, routed in the middle, closed after every bad one
        good_f = [follow(100 + i, event_id="fg-%d" % i,
                         action="acknowledged" if i == 0 else "routed")
                  for i in range(len(bf))]
        good_f.append(follow(200, event_id="fg-close", action="closed",
                             at=iso(T - timedelta(minutes=10))))
        u_items, u_kinds = interleave(good_u, bu)
        f_items, f_kinds = interleave(good_f, bf)
        u_where = produce_tracked(st, "product.usage", u_items)
        f_where = produce_tracked(st, "nps.followups", f_items)
        # the keyless bad messages may land elsewhere; the keyed ones share
        # one partition with every good message
        for where, kinds in ((u_where, u_kinds), (f_where, f_kinds)):
            parts = {p for (p, _), k in zip(where, kinds) if not k or k[1]}
            assert len(parts) == 1, parts
        wait_processed(st, "npsd", TOPICS, timeout=60)
        assert npsd.poll() is None, "npsd died on bad input"

        dlq = read_topic(st, "nps.dlq")
        recs = [(json.loads(m.value()), m) for m in dlq]
        idx = Counter((d["topic"], d["partition"], d["offset"]) for d, _ in recs)
        assert all(c == 1 for c in idx.values()), "repeated: %s" % idx
        by_src = {(d["topic"], d["partition"], d["offset"]): (d, m)
                  for d, m in recs}
        want = set()
        for topic, items_kinds, where in (("product.usage", u_kinds, u_where),
                                          ("nps.followups", f_kinds, f_where)):
            for case, w in zip(items_kinds, where):
                if case is None:
                    continue
                src = (topic,) + w
                want.add(src)
                assert src in by_src, "%s %s not in the DLQ" % (topic, case[0])
                check_record(by_src[src][0], by_src[src][1], case, topic, w)
        assert set(by_src) == want, "unexpected DLQ records: %s" % [
            by_src[s][0] for s in set(by_src) - want]
        assert len(recs) == len(bu) + len(bf)
        # every reason occurred on each of the two topics
        for topic in ("product.usage", "nps.followups"):
            reasons = {d["reason"] for d, _ in recs if d["topic"] == topic}
            assert reasons == {"invalid_json", "not_an_object",
                               "missing_field", "invalid_field", "too_large",
                               "timestamp_in_future"}, (topic, reasons)

        # ---- the good ones around them counted
        s = st.r.hgetall("nps:{%s}:summary" % A)
        assert s["active_users_7d"] == str(len(good_u)), s
        assert s["active_users_30d"] == str(len(good_u)), s
        assert (s["open_detractors"], s["loops_closed"],
                s["loops_closed_on_time"]) == ("0", "1", "1"), s
        # the closed loop stays in the account's state record until its end
        loop = {lp["rid"]: lp for lp in state_record(st, A)["loops"]}["r-q1"]
        assert loop["acknowledge"].get("met_at") == good_f[0]["at"], loop
        assert loop["closed"] is True, loop
        markers = set()
        for k in st.r.scan_iter("nps:{%s}:fevp:*" % A):
            markers |= set(st.r.hkeys(k))
        assert markers == {f["event_id"] for f in good_f}, markers
        # the owner counters follow the account within about a second
        wait_for(lambda: engine_settled(st.r), 30, "global deltas applied")
        assert st.r.hget("nps:csm:quinn", "loops_closed_on_time") == "1"
        wait_for(lambda: outbox_len(st.r) == 0, 30, "outbox drained")
        assert not [m for m in read_topic(st, "nps.alerts")
                    if json.loads(m.value())["type"] == "followup_overdue"]
        st.stop_clean(npsd)
        npsd = None
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
