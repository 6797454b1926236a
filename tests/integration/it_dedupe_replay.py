"""Exactly-once state under duplicates and replays (SPEC §3).

(a) generated traffic with byte-for-byte duplicate sends is processed; the
    whole Redis state is snapshotted and checked against an independent
    computation over the distinct event_ids;
(b) exact duplicates of already counted responses are sent again: the state
    must not change at all;
(c) npsd is stopped (SIGTERM, exit 0) and started with a new consumer group,
    so it replays the whole topic from the earliest offset: the state must
    still equal the snapshot;
(d) a marker kept in an earlier 100-day period's hash, and one kept as an
    earlier version's top-level key, still make their response a duplicate.
Outputs: every response has at least one classified message, every copy of
one event_id's message is byte-identical (the snapshot stored at first
counting is what gets republished) and on its category's topic.
"""
import json
import os
from collections import Counter, defaultdict

from harness import (Stack, category, classified, dump_differences,
                     engine_settled, epoch_day, load_sent, main, redis_dump, wait_for,
                     wait_processed, window_problems)

NOW = "2026-11-20T12:00:00Z"
TODAY = epoch_day(NOW)


def settled(st):
    """Cohort and theme views recomputed (nothing waiting)."""
    return engine_settled(st.r)


def check_outputs(st, sends, first, reused=Counter()):
    """sends: event_id -> how many times its response was sent; first:
    event_id -> the response first sent (the one counted: its score gives
    the category, SPEC §4); reused:
    event_id -> sends of the same event_id with another score (these may or
    may not be republished, but never differently). Returns the classified
    messages grouped by event_id."""
    by_id = defaultdict(list)
    for topic, m in classified(st):
        v = json.loads(m.value())
        by_id[v["event_id"]].append((topic, m.key(), m.value(), v))
    missing = set(sends) - set(by_id)
    assert not missing, "no classified message for %d responses, e.g. %s" % (
        len(missing), sorted(missing)[:5])
    extra = set(by_id) - set(sends)
    assert not extra, "outputs for unknown event_ids %s" % sorted(extra)[:5]
    for eid, copies in by_id.items():
        topic, key, raw, v = copies[0]
        cat = category(int(first[eid]["score"]))
        assert topic == "nps.%ss" % cat and v["category"] == cat and \
            v["score"] == first[eid]["score"], \
            (eid, first[eid]["score"], topic, v["category"], v["score"])
        assert key.decode() == v["account_id"]
        for t2, k2, raw2, _ in copies[1:]:
            assert (t2, k2, raw2) == (topic, key, raw), \
                "republished copy of %s differs:\n  %s\n  %s" % (eid, raw, raw2)
        # one classified message per send: no send lost, and a clean run
        # (no crash, every batch committed) has nothing to redeliver
        assert sends[eid] <= len(copies) <= sends[eid] + reused[eid], \
            "%s: %d outputs for %d sends" % (eid, len(copies), sends[eid])
    return by_id


def test(build):
    st = Stack(build, name="dedupe")
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        st.gen("--accounts", "20", "--count", "800", "--dup-ratio", "0.2",
               "--rate", "0", "--seed", "11", "--days", "200", "--now", NOW,
               "--out", out)
        sent = load_sent(out)
        resp_msgs = [(k, v) for t, k, v in sent if t == "nps.responses"]
        first = {}
        sends = Counter()
        for k, v in resp_msgs:
            r = json.loads(v)
            sends[r["event_id"]] += 1
            first.setdefault(r["event_id"], r)
        assert len(first) == 800, len(first)
        ndup = len(resp_msgs) - 800
        assert ndup > 80, "generator sent only %d duplicates" % ndup

        # (a) first pass
        npsd = st.npsd("roll.interval.s=1", now=NOW)
        wait_processed(st, "npsd", timeout=60)
        wait_for(lambda: settled(st), 30, "cohort/theme views settled")
        snap = redis_dump(st.r)

        # the state counts each distinct response exactly once
        by_acct = defaultdict(list)
        for r in first.values():
            by_acct[r["account_id"]].append(r)
        for acct, rs in by_acct.items():
            for w in (30, 90):
                inw = [r for r in rs
                       if TODAY - w < epoch_day(r["submitted_at"]) <= TODAY]
                probs = window_problems(
                    st.r.hgetall("nps:{%s}:w:%dd" % (acct, w)), inw)
                assert not probs, (acct, w, probs[:5])
        allw90 = [r for r in first.values()
                  if TODAY - 90 < epoch_day(r["submitted_at"]) <= TODAY]
        probs = window_problems(st.r.hgetall("nps:cohort:all:all:w:90d"),
                                allw90)
        assert not probs, ("cohort all:all 90d", probs[:5])
        assert any(k.startswith("nps:themes:") and ":w:" in k for k in snap)
        assert "nps:rank:nps_90d" in snap
        assert sum(len(v[1]) for k, v in snap.items() if ":evp:" in k) == 800
        check_outputs(st, sends, first)

        # (b) exact duplicates of counted responses: no state change; nor
        # from an event_id reused with another score (it counted once)
        redo = resp_msgs[::4]
        st.produce("nps.responses", redo)
        reused = []
        for k, v in resp_msgs[1:60:6]:
            r = json.loads(v)
            r["score"] = (r["score"] + 5) % 11
            reused.append((k, json.dumps(r).encode()))
        st.produce("nps.responses", reused)
        nreused = Counter(json.loads(v)["event_id"] for k, v in reused)
        for k, v in redo:
            sends[json.loads(v)["event_id"]] += 1
        wait_processed(st, "npsd", timeout=60)
        wait_for(lambda: settled(st), 30, "views settled after duplicates")
        d = dump_differences(snap, redis_dump(st.r))
        assert not d, "duplicates changed the state:\n" + "\n".join(d)
        check_outputs(st, sends, first, nreused)

        # (c) SIGTERM, then a new consumer group replays the whole topic
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
        npsd = st.npsd("roll.interval.s=1", "kafka.group.id=replay", now=NOW,
                       log="npsd-replay.log")
        wait_processed(st, "replay", timeout=60)
        wait_for(lambda: settled(st), 30, "views settled after replay")
        d = dump_differences(snap, redis_dump(st.r))
        assert not d, "the replay changed the state:\n" + "\n".join(d)
        for k, v in resp_msgs + redo:
            sends[json.loads(v)["event_id"]] += 1
        check_outputs(st, sends, first, nreused + nreused)

        # (d) markers of an earlier period, and of the next one (another
        # instance whose clock is ahead); periods follow the wall clock, not
        # the pinned one
        period = int(next(iter(st.r.scan_iter("nps:*:evp:*"))).rsplit(
            ":", 1)[1])
        (k1, v1), (k2, v2) = resp_msgs[0], next(
            (k, v) for k, v in resp_msgs if k != resp_msgs[0][0])
        moved = []
        for (k, v), other in (((k1, v1), period - 2), ((k2, v2), period + 1)):
            r = json.loads(v)
            eid, acct = r["event_id"], r["account_id"]
            assert st.r.hdel("nps:{%s}:evp:%d" % (acct, period), eid) == 1
            st.r.hset("nps:{%s}:evp:%d" % (acct, other), eid, "1")
            moved.append((k, v))
        snap = redis_dump(st.r)
        st.produce("nps.responses", moved)
        wait_processed(st, "replay", timeout=60)
        wait_for(lambda: settled(st), 30, "views settled after (d)")
        d = dump_differences(snap, redis_dump(st.r))
        assert not d, "an older marker was not honoured:\n" + "\n".join(d)
        log = st.log(npsd)
        assert "level=error" not in log, log[-2000:]
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
