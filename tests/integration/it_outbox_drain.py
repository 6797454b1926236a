"""Alerts are published from the account's outbox after the batch commits;
ones left there by an earlier run (killed between the two) are published by
the account's timer (due 30 s after they were raised) even when no input
arrives, and removed once acknowledged."""
import json

from harness import Stack, main, timers_ran, wait_for, outbox_len


def test(build):
    st = Stack(build, name="outbox")
    try:
        # shaped as npsd raises it (docs/schemas/alert.json)
        msg = {"alert_id": "role_gap:acct-x:1:1795190400000",
               "type": "role_gap", "severity": "medium",
               "account_id": "acct-x", "fired_at": "2026-11-20T12:00:00Z",
               "details": {"role_gap": -40, "end_user_nps": -50,
                           "decision_maker_nps": -10, "window": "90d"},
               "account": {}, "event_id": "r-1"}
        # what a run killed before the broker had the alert leaves: the
        # alert in the account's outbox, the account's timer due
        st.r.hset("nps:{acct-x}:outbox", msg["alert_id"], json.dumps(msg))
        st.r.zadd("nps:{g}:timers", {"acct-x": 0})
        npsd = st.npsd("roll.interval.s=1", metrics=True)
        wait_for(lambda: st.count("nps.alerts") == 1, 30, "the alert")
        wait_for(lambda: outbox_len(st.r) == 0, 10, "an empty outbox")
        # published once: later timer passes (seen to run) add no copy
        timers_ran(st, npsd)
        assert st.count("nps.alerts") == 1, st.count("nps.alerts")
        got = st.consume_all("nps.alerts")
        assert got[0].key() == b"acct-x", got[0].key()
        assert json.loads(got[0].value()) == msg
        assert st.stop(npsd) == 0
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
