"""Concurrent writers of one account, and a stalled npsd (a zombie) that
wakes after losing its partitions, change nothing twice.

A third npsd, in a consumer group of its own, reads the same input into the
same Redis at the same time: every account is written by two instances at
once, and each write that finds the account changed since it was read is
refused by its version check (npsd_version_conflicts_total), read again and
computed again, where its events are duplicates.

Two npsd of one consumer group share the stream. One of them is stopped
(SIGSTOP) for longer than the session timeout, again and again, while it
holds work: the group hands its partitions to the other, which consumes the
zombie's uncommitted input again and writes those accounts; the zombie then
wakes up and writes the batch it had read before the stop. Each of its
account writes carries the version it read, so every account the other
instance changed meanwhile refuses it (npsd_version_conflicts_total rises)
and the zombie reads the account again and recomputes it: its events are
now duplicates. The final state is exact (Redis equals the independent
computation of harness.check_exact), and at least one conflict was seen.
"""
import os
import signal
import time

from harness import (FaultStack, check_exact, counter, gen_stream, main,
                     wait_for, wait_processed)

NOW = "2026-11-20T12:00:00Z"
GROUP = ("kafka.session.timeout.ms=6000", "kafka.heartbeat.interval.ms=500")
TOPICS = ("nps.responses", "accounts")


def conflicts(p):
    return counter(p, "npsd_version_conflicts_total") or 0


def test(build):
    st = FaultStack(build, partitions=8, name="zombie")
    try:
        out = os.path.join(st.dir, "sent.jsonl")
        sets = ("roll.interval.s=1",) + GROUP
        # few accounts: both instances' batches touch the same ones
        zombie = st.npsd(*sets, now=NOW, log="npsd-zombie.log", metrics=True)
        other = st.npsd(*sets, now=NOW, log="npsd-other.log", metrics=True)
        twin = st.npsd(*sets, "kafka.group.id=twin", now=NOW,
                       log="npsd-twin.log", metrics=True)
        for p in (zombie, other, twin):
            st.wait_log(p, "partitions assigned", timeout=60)
        gen = gen_stream(st, out, 9000, 200, 17, NOW, accounts=12,
                         extra=["--dup-ratio", "0.03"])
        seen, cycles = 0, 0
        while cycles < 3 and gen.poll() is None:
            time.sleep(1.5)
            cycles += 1
            zombie.send_signal(signal.SIGSTOP)
            # past the session timeout: the group moves on without it
            time.sleep(9)
            zombie.send_signal(signal.SIGCONT)
            st.wait_log(zombie, "partitions revoked", timeout=60)
            time.sleep(2)
        assert cycles >= 2, "the stream ended after %d stalls" % cycles
        _, err = gen.communicate(timeout=180)
        assert gen.returncode == 0, err
        wait_processed(st, "npsd", TOPICS, timeout=180)
        wait_processed(st, "twin", TOPICS, timeout=180)
        seen = [conflicts(p) for p in (zombie, other, twin)]
        assert sum(seen) > 0, "no version conflict: nothing was tested"
        probs = check_exact(st, out, NOW)
        assert not probs, probs[:10]
        print("concurrent writers ok: %d stalls, version conflicts %s" % (
            cycles, seen))
        assert all(p.poll() is None for p in (zombie, other, twin))
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
