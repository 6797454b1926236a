"""Scale-out (SPEC §8): three npsd instances in one consumer group share
the 8 partitions of each input topic (each logs "partitions assigned" with
a share); one is killed with kill -9 mid-stream, the others take over its
partitions, and the final state is exact: Redis equals the independent
computation, every response is published at least once. The victim dies
holding a consumed, uncommitted batch (Redis briefly refuses writes), so a
survivor must consume it again: the instances together consumed more than
the input holds.
"""
import os
import re

from harness import (FaultStack, check_exact, committed_sum, counter,
                     end_offsets, gen_stream, input_total, kill_holding_batch,
                     main, wait_for, wait_processed)

NOW = "2026-11-20T12:00:00Z"
COUNT = 12000
# The development broker (librdkafka's mock cluster) waits for missing
# members for session.timeout.ms - 1 s at each rebalance: keep it short.
GROUP = ("kafka.session.timeout.ms=6000", "kafka.heartbeat.interval.ms=500")
SHARE = re.compile(r'partitions assigned" count=([1-9][0-9]*)')


def shares(st, p):
    return [int(n) for n in SHARE.findall(st.log(p))]


def lag_report(st, topics=("nps.responses", "accounts")):
    """{topic: {partition: (committed, end)}} where they differ."""
    rep = {}
    for t in topics:
        ends = end_offsets(st, t)
        got = st.committed("npsd", t, len(ends))
        rep[t] = {p: (got.get(p), e) for p, e in ends.items()
                  if got.get(p) != e and e > 0}
    return rep


def test(build):
    st = FaultStack(build, partitions=8, name="scale-out")
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        sets = ("roll.interval.s=1", "http.listen=") + GROUP
        inst = [st.npsd(*sets, now=NOW, log="npsd-%d.log" % i, metrics=True)
                for i in range(3)]
        # every instance gets a share (cooperative rebalancing may take a
        # few rounds to converge)
        wait_for(lambda: all(shares(st, p) for p in inst), 60,
                 "each instance to get partitions", interval=0.5)
        gen = gen_stream(st, out, COUNT, 1000, 13, NOW,
                         extra=["--dup-ratio", "0.03"])
        wait_for(lambda: committed_sum(st, "npsd", "nps.responses") >= 3000,
                 60, "3000 responses committed")
        assert gen.poll() is None, "the stream ended before the kill"
        victim = inst[1]
        consumed_v, _ = kill_holding_batch(st, victim)
        before = {i: len(shares(st, p)) for i, p in enumerate(inst)}

        _, err = gen.communicate(timeout=90)
        assert gen.returncode == 0, err
        try:
            wait_processed(st, "npsd", timeout=100)
        except AssertionError:
            raise AssertionError("not all committed: %s" % lag_report(st))
        # the survivors took over: each got more partitions after the kill
        for i in (0, 2):
            assert inst[i].poll() is None, "npsd-%d exited" % i
        took = [i for i in (0, 2) if len(shares(st, inst[i])) > before[i]]
        assert took, "no survivor was assigned the victim's partitions"
        probs = check_exact(st, out, NOW)
        assert not probs, probs[:10]
        consumed = consumed_v + sum(
            counter(inst[i], "npsd_messages_consumed_total") for i in (0, 2))
        total = input_total(st)
        assert consumed > total, "no redelivery: %d consumed of %d" % (
            consumed, total)
        for i in (0, 2):
            assert "level=error" not in st.log(inst[i]), st.log(inst[i])[-3000:]
            assert st.stop(inst[i]) == 0, "npsd-%d must exit 0" % i
        print("shares: %s; consumed %d of %d input messages" % (
            [shares(st, p) for p in inst], consumed, total))
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
