"""SIGTERM mid-stream loses nothing and counts nothing twice (SPEC §3).

A steady stream (npsctl gen at 2000 responses/s, with duplicate sends) is
flowing when npsd gets SIGTERM: it must exit 0 within a few seconds. npsd is
started again in the same group; once everything is processed Redis must
equal an independent computation over everything sent, every response must
have at least one classified message, and after a final SIGTERM the group's
committed offsets must be the end offsets of the input topics.
"""
import json
import os
import signal
import time
from collections import Counter, defaultdict

from harness import (Stack, category, classified, dedupe_markers, end_offsets,
                     epoch_day, gen_stream, load_sent, main, read_topic,
                     wait_for, wait_processed, window_problems)

NOW = "2026-11-20T12:00:00Z"
TODAY = epoch_day(NOW)
COUNT = 20000
# The development broker (librdkafka 2.0.2's mock cluster) does not act on
# LeaveGroup: a member joining after a clean close waits out the departed
# member's session timeout (45 s by default). A short one keeps the restart
# within the test's time budget; it does not change what is tested.
SESSION = "kafka.session.timeout.ms=6000"


def committed_total(st, group, topic):
    parts = len(end_offsets(st, topic)) or 4
    return sum(max(o, 0) for o in st.committed(group, topic, parts).values())


def test(build):
    st = Stack(build, name="sigterm")
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        npsd = st.npsd("roll.interval.s=1", SESSION, now=NOW,
                       log="npsd-1.log")
        # 1,000/s: the stream lasts 20 s, so that a sanitized build (about
        # a third as fast) is still mid-stream at the SIGTERM
        gen = gen_stream(st, out, COUNT, 1000, 5, NOW,
                         extra=("--dup-ratio", "0.05"))

        # mid-stream: a good part processed, the generator still sending
        wait_for(lambda: committed_total(st, "npsd", "nps.responses") >= 3000,
                 60, "3000 responses committed")
        assert gen.poll() is None, "the stream ended before SIGTERM"
        t0 = time.time()
        npsd.send_signal(signal.SIGTERM)
        rc = npsd.wait(15)
        took = time.time() - t0
        assert rc == 0, "npsd exited %s on SIGTERM" % rc
        assert took < 5, "npsd took %.1fs to stop" % took
        log1 = st.log(npsd)
        assert "npsd stopped" in log1 and "level=error" not in log1, log1[-2000:]
        assert gen.poll() is None, "the stream ended before npsd stopped"
        done_at_stop = committed_total(st, "npsd", "nps.responses")

        # nothing was committed early: every response below the committed
        # offsets is in Redis and its classified message was published
        ends = end_offsets(st, "nps.responses")
        upto = st.committed("npsd", "nps.responses", len(ends))
        below = [json.loads(m.value())["event_id"]
                 for m in read_topic(st, "nps.responses")
                 if m.offset() < upto.get(m.partition(), -1)]
        assert len(below) == done_at_stop and below
        published = {json.loads(m.value())["event_id"]
                     for _, m in classified(st)}
        accts = {json.loads(v)["event_id"]: k for k, v in
                 ((m.key().decode(), m.value())
                  for m in read_topic(st, "nps.responses"))}
        marked = dedupe_markers(st.r)
        lost = [e for e in below if (accts[e], e) not in marked]
        assert not lost, "committed but not in Redis: %s" % lost[:5]
        unpub = [e for e in below if e not in published]
        assert not unpub, "committed but not published: %s" % unpub[:5]

        npsd = st.npsd("roll.interval.s=1", SESSION, now=NOW,
                       log="npsd-2.log")
        _, err = gen.communicate(timeout=60)
        assert gen.returncode == 0, err
        wait_processed(st, "npsd", timeout=90)

        sent = load_sent(out)
        resp = [json.loads(v) for t, k, v in sent if t == "nps.responses"]
        sends = Counter(r["event_id"] for r in resp)
        first = {}
        for r in resp:
            first.setdefault(r["event_id"], r)
        assert len(first) == COUNT, len(first)
        assert len(resp) > COUNT, "no duplicate sends"
        assert done_at_stop < len(resp), "SIGTERM came after the end"

        # each distinct response counted exactly once
        evs = len(dedupe_markers(st.r))
        assert evs == COUNT, "%d dedupe markers for %d responses" % (evs, COUNT)
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
            s = st.r.hgetall("nps:{%s}:summary" % acct)
            n90 = sum(1 for r in rs if TODAY - 90 < epoch_day(r["submitted_at"]) <= TODAY)
            assert int(s["responses_90d"]) == n90, (acct, s, n90)
        all90 = [r for r in first.values()
                 if TODAY - 90 < epoch_day(r["submitted_at"]) <= TODAY]

        def cohort_ok():
            return not window_problems(
                st.r.hgetall("nps:cohort:all:all:w:90d"), all90)
        wait_for(cohort_ok, 30, "cohort all:all 90d")

        # every response published at least once, copies identical
        by_id = defaultdict(list)
        for topic, m in classified(st):
            v = json.loads(m.value())
            by_id[v["event_id"]].append((topic, m.value()))
        missing = set(first) - set(by_id)
        assert not missing, "%d responses never published, e.g. %s" % (
            len(missing), sorted(missing)[:5])
        assert not set(by_id) - set(first)
        for eid, copies in by_id.items():
            assert len(copies) >= sends[eid], (eid, len(copies), sends[eid])
            assert len(set(copies)) == 1, "copies of %s differ" % eid
            # the category from the score sent (SPEC §4), not the message's
            cat = category(int(first[eid]["score"]))
            v = json.loads(copies[0][1])
            assert copies[0][0] == "nps.%ss" % cat and v["category"] == cat \
                and v["score"] == first[eid]["score"], (eid, copies[0][0], v)

        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
        for topic in ("nps.responses", "accounts"):
            ends = end_offsets(st, topic)
            got = st.committed("npsd", topic, len(ends))
            assert got == ends, "%s committed %s, end offsets %s" % (
                topic, got, ends)
        total = sum(end_offsets(st, "nps.responses").values())
        assert total == len(resp), (total, len(resp))
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
