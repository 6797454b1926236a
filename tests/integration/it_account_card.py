"""The account card (npsctl account) with many open follow-ups, and the
nps:events notices checked against docs/schemas/notice.json.

One account gets 14 open detractor loops, the clock pinned (npsd --now,
NPSD_NOW for npsctl) at an instant with milliseconds:
  3 old loops (submitted 11-01..03) acknowledged and routed on time:
    open, not overdue, the oldest of all;
  4 loops submitted 11-09..12 with no follow-up: acknowledge and route
    missed, overdue;
  7 recent loops (11-19/20): nothing due yet.
The card must list the 4 overdue loops first (oldest first among them),
then the others oldest first, show 10 and count the 4 it leaves out;
--all lists all 14 in the same order; --json has all 14. The recent-alert
lines (followup_overdue, fired_at with milliseconds, 24 characters) keep
a space between the time and the severity.

Every nps:events notice published meanwhile, and every alert, detractor
and DLQ message (read through the harness), validates against its
schema.
"""
import json
import os
import re
import subprocess
import threading

import contract
from harness import Stack, main, wait_for, wait_processed

NOW = "2026-11-20T10:00:00.351Z"
ACCT = "card-acct"
OLD = ["r-old-%d" % i for i in range(1, 4)]       # on time, oldest
LATE = ["r-late-%d" % i for i in range(1, 5)]     # overdue
NEW = ["r-new-%d" % i for i in range(1, 8)]       # nothing due yet
SUBMITTED = {}
for i, rid in enumerate(OLD):
    SUBMITTED[rid] = "2026-11-%02dT09:00:00Z" % (1 + i)
for i, rid in enumerate(LATE):
    SUBMITTED[rid] = "2026-11-%02dT09:00:00Z" % (9 + i)
for i, rid in enumerate(NEW):
    SUBMITTED[rid] = "2026-11-19T%02d:00:00Z" % (12 + i)
ALL = OLD + LATE + NEW
# the card's order: overdue first, then by submitted_at
EXPECTED_ORDER = sorted(LATE, key=SUBMITTED.get) + \
    sorted(OLD + NEW, key=SUBMITTED.get)


class Notices:
    """Collects the nps:events channel in a thread."""

    def __init__(self, r):
        self.ps = r.pubsub(ignore_subscribe_messages=True)
        self.ps.subscribe(contract.NOTICE_CHANNEL)
        self.got = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            m = self.ps.get_message(timeout=0.2)
            if m and m["type"] == "message":
                self.got.append(m["data"])

    def close(self):
        self.stop = True
        self.t.join(5)
        self.ps.close()


def card(st, *args):
    env = dict(os.environ, NPSD_NOW=NOW, NO_COLOR="1")
    p = subprocess.run([os.path.join(st.build, "npsctl"), "account", ACCT,
                        "--redis-port", str(st.redis_port)] + list(args),
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def loop_ids(text):
    return re.findall(r"^    (\S+) · submitted ", text, re.M)


def test(build):
    st = Stack(build, name="card")
    notices = None
    try:
        notices = Notices(st.r)
        st.produce("accounts", [(ACCT, json.dumps({
            "account_id": ACCT, "name": "Card Corp", "segment": "smb",
            "csm_owner": "kim", "updated_at": "2026-10-01T00:00:00Z"}))])
        st.produce("nps.responses", [(ACCT, json.dumps({
            "event_id": rid, "account_id": ACCT, "user_id": "u-" + rid,
            "score": 2, "submitted_at": SUBMITTED[rid],
            "comment": "too slow"})) for rid in ALL] +
            [(ACCT, b'{"event_id":"bad","score":11}')])  # one for nps.dlq
        fu = []
        for rid in OLD:  # routed a day after: acknowledge and route on time
            at = SUBMITTED[rid].replace("T09:", "T10:")
            fu.append((ACCT, json.dumps({
                "event_id": "f-" + rid, "account_id": ACCT,
                "response_event_id": rid, "action": "routed", "at": at})))
        st.produce("nps.followups", fu)

        st.npsd("roll.interval.s=1", now=NOW)
        wait_processed(st, "npsd", ("accounts", "nps.responses",
                                    "nps.followups"))
        # evidence that the timer acted on every missed deadline: 4 overdue
        # loops, 8 followup_overdue alerts (acknowledge and route each)
        wait_for(lambda: st.r.hget("nps:{%s}:summary" % ACCT,
                                   "overdue_followups") == "4", 60,
                 "4 overdue follow-ups")
        wait_for(lambda: st.r.llen("nps:{%s}:alert_log" % ACCT) >= 8, 60,
                 "8 followup_overdue alerts in the alert log")
        s = st.r.hgetall("nps:{%s}:summary" % ACCT)
        assert s.get("open_detractors") == "14", s

        # the outputs (validated against their schemas by the harness)
        wait_for(lambda: st.count("nps.alerts") >= 8, 60,
                 "8 alerts on nps.alerts")
        alerts = [json.loads(m.value()) for m in st.consume_all("nps.alerts")]
        assert {a["details"]["response_event_id"] for a in alerts
                if a["type"] == "followup_overdue"} >= set(LATE), alerts
        assert len(st.consume_all("nps.detractors")) == 14
        dlq = [json.loads(m.value()) for m in st.consume_all("nps.dlq")]
        assert [d["reason"] for d in dlq] == ["missing_field"], dlq

        text = card(st)
        # recent alerts: "<fired_at> <severity> <type> ..."
        lines = [ln for ln in text.splitlines()
                 if "followup_overdue" in ln]
        assert len(lines) >= 8, text
        for ln in lines:
            assert re.match(r"^    %s +(high|medium|low) +followup_overdue "
                            % re.escape(NOW), ln), \
                "alert line without a space after the time: %r" % ln
        # follow-ups: overdue first, capped at 10, the rest counted
        assert re.search(r"^  follow-ups +14 open \(4 overdue\)$", text,
                         re.M), text
        shown = loop_ids(text)
        assert shown == EXPECTED_ORDER[:10], \
            "card lists %s,\nexpected %s" % (shown, EXPECTED_ORDER[:10])
        more = re.findall(r"^    … and (\d+) more; --all to list them$",
                          text, re.M)
        assert more == ["4"], "count line %s in:\n%s" % (more, text)

        full = card(st, "--all")
        assert loop_ids(full) == EXPECTED_ORDER, loop_ids(full)
        assert "more; --all" not in full, full

        js = json.loads(card(st, "--json"))
        got = [f["response_event_id"] for f in js["followups"]]
        assert sorted(got) == sorted(ALL), got
        assert len(js["alerts"]) >= 8

        # the nps:events notices, each against notice.json
        wait_for(lambda: len(notices.got) > 0, 30, "nps:events notices")
        for n in notices.got:
            contract.check_notice(n)
        print("card ok: %d follow-ups, %d alerts, %d notices validated" % (
            len(got), len(alerts), len(notices.got)))
    finally:
        if notices:
            notices.close()
        st.close()


if __name__ == "__main__":
    main(test)
