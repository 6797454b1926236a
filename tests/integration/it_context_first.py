"""Context first (accounts.first.s): account records that sit behind a long
accounts backlog still reach Redis before the responses of their accounts
are counted.

The input is all in Kafka before npsd starts, as after a reset, a replay or
a stop: 3,000 other accounts' records, then the records of 20 enterprise
accounts, and 60 responses of those 20 accounts. npsd reads small batches
(batch.max=50), so the accounts topic takes dozens of batches while the few
response partitions could be fetched at once. Every classified output must
carry its account's context (segment, csm_owner), every response must count
in the enterprise segment cohort, and npsd must log that it held the other
inputs until the accounts partitions were read (not until the time limit).
"""
import json

from harness import Stack, classified, main, wait_for, wait_processed

NOW = "2026-11-20T12:00:00Z"
TARGETS = ["acct-ctx-%02d" % i for i in range(20)]


def account(acct, segment, owner):
    return (acct, json.dumps({"account_id": acct, "name": acct.upper(),
                              "segment": segment, "csm_owner": owner,
                              "updated_at": "2026-11-01T00:00:00Z"}))


def test(build):
    st = Stack(build, name="ctxfirst")
    try:
        st.produce("accounts", [account("acct-fill-%04d" % i, "smb", "x")
                                for i in range(3000)])
        st.produce("accounts", [account(a, "enterprise", "erin")
                                for a in TARGETS])
        responses = []
        for i in range(60):
            acct = TARGETS[i % len(TARGETS)]
            responses.append((acct, json.dumps({
                "event_id": "r-ctx-%02d" % i, "account_id": acct,
                "user_id": "u-%02d" % i, "score": i % 11,
                "submitted_at": "2026-11-%02dT10:00:00Z" % (1 + i % 19)})))
        st.produce("nps.responses", responses)

        npsd = st.npsd("batch.max=50", now=NOW)
        wait_processed(st, "npsd", timeout=120)
        msgs = [m.value() for _, m in classified(st)]
        out = [json.loads(v) for v in msgs]
        # output is at-least-once (SPEC §3): a copy sent again after a slow
        # acknowledgement is allowed, but every response is there and each
        # copy of one is the same message
        by_id = {}
        for o, v in zip(out, msgs):
            assert by_id.setdefault(o["event_id"], v) == v, o["event_id"]
        assert sorted(by_id) == sorted(json.loads(v)["event_id"]
                                       for _, v in responses), sorted(by_id)
        missing = [(o["event_id"], o.get("account")) for o in out
                   if (o.get("account") or {}).get("segment") != "enterprise"
                   or o["account"].get("csm_owner") != "erin"]
        assert not missing, "counted before their context: %s" % missing[:5]
        wait_for(lambda: st.r.hget("nps:cohort:segment:enterprise:w:30d",
                                   "responses") == "60", 30,
                 "all 60 responses in the enterprise cohort")
        log = st.log(npsd)
        assert "holding other inputs until account context is read" in log
        assert "reason=accounts_read" in log, log[-2000:]
        assert st.stop(npsd) == 0, "npsd must exit 0 on SIGTERM"
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
