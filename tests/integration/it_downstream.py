"""What downstream consumers see besides the windows (SPEC §5, §6, §7, §8):

- priority (p1/p2/p3) and playbook in every classified message, checked
  against SPEC §5's rule applied here to the account context this test
  sent (renewal within 90 days at both edges, enterprise, arr at and just
  under 100000, a renewal already past, no context at all);
- the nps:events pub/sub notices (subscribed before anything is
  produced): only account_id, nps_90d, health, health_band and updated_at,
  the last notice of each account equal to its summary, absent values left
  out for an account that has context but no response;
- nps:suppress:<user_id>: the user's latest submitted_at, TTL up to 30
  days after it, extended only, none for a response already 30 days old;
- npsctl top, run in tmux: its screen (captured with capture-pane) shows
  the ranked accounts in rank order with their NPS, margin, responses and
  health as Redis holds them, and the all-responses cohort; Ctrl-C quits
  it with status 0."""
import json
import os
import shlex
import shutil
import subprocess
import time
from datetime import date, datetime, timedelta, timezone

import redis

from harness import (REPO, Stack, engine_settled, main, read_topic, wait_for,
                     wait_processed)

T = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 20)
NOW = "2026-11-20T12:00:00Z"
TOPICS = ("accounts", "nps.responses")


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def renew(days):
    return (TODAY + timedelta(days=days)).isoformat()


# account -> context (None: no context record at all)
CONTEXT = {
    "p-ent": {"segment": "enterprise", "arr": 5000, "renewal_date": renew(400)},
    "p-arr": {"segment": "smb", "arr": 100000, "renewal_date": renew(200)},
    "p-arr-under": {"segment": "smb", "arr": 99999.5},
    "p-ren90": {"segment": "mid_market", "arr": 1000,
                "renewal_date": renew(90)},
    "p-ren91": {"segment": "mid_market", "arr": 1000,
                "renewal_date": renew(91)},
    "p-ren0": {"segment": "smb", "renewal_date": renew(0)},
    "p-past": {"segment": "smb", "renewal_date": renew(-1)},
    "p-none": None,
}
SCORES = (6, 7, 9, 0, 8, 10)


def category(score):
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def expected_priority(cat, ctx):
    """SPEC §5: p1 detractor with renewal within 90 days, or segment
    enterprise, or arr >= 100000; p2 other detractors and passives within
    90 days of renewal; p3 the rest. Playbook: detractor retention (p1) or
    recovery, passive nudge, promoter advocacy."""
    ctx = ctx or {}
    within = False
    if "renewal_date" in ctx:
        days = (date.fromisoformat(ctx["renewal_date"]) - TODAY).days
        within = 0 <= days <= 90
    if cat == "detractor":
        p1 = within or ctx.get("segment") == "enterprise" or \
            ctx.get("arr", 0) >= 100000
        return ("p1", "retention") if p1 else ("p2", "recovery")
    if cat == "passive":
        return ("p2" if within else "p3"), "nudge"
    return "p3", "advocacy"


def tmux(sock, *args, check=True):
    return subprocess.run(["tmux", "-L", sock, "-f", "/dev/null"] +
                          list(args), capture_output=True, text=True,
                          check=check, timeout=30)


def top_problems(screen, r):
    """Differences between the top screen and Redis."""
    probs = []
    lines = screen.splitlines()
    rank = r.zrange("nps:rank:nps_90d", 0, 19, withscores=True)
    rows = [ln.split() for ln in lines if ln.startswith("  ") and
            ln.split() and ln.split()[0] in dict(rank)]
    if [row[0] for row in rows] != [a for a, _ in rank]:
        probs.append("accounts %s, rank %s" % ([row[0] for row in rows],
                                               [a for a, _ in rank]))
        return probs
    for row in rows:
        s = r.hgetall("nps:{%s}:summary" % row[0])
        want = ["%+.1f" % float(s["nps_90d"]), "%.1f" % float(s["moe_90d"]),
                s["responses_90d"]]
        if row[3:6] != want:
            probs.append("%s: %s, expected %s" % (row[0], row[3:6], want))
        hb = "%s %s" % (s["health"], s["health_band"])
        if hb not in " ".join(row[6:]):
            probs.append("%s: no health %r in %s" % (row[0], hb, row))
    c = r.hgetall("nps:cohort:all:all:w:90d")
    allrow = [ln.split() for ln in lines if ln.split()[:1] == ["all"]]
    want = ["all", "%+.1f" % float(c.get("nps", "nan")), "±",
            "%.1f" % float(c.get("moe", "nan")), "n=%s" % c.get("responses"),
            "P", c.get("promoters"), "Pa", c.get("passives"), "D",
            c.get("detractors")]
    if not allrow or allrow[0][:11] != want:
        probs.append("cohort row %s, expected %s" % (allrow[:1], want))
    return probs


def test(build):
    st = Stack(build, name="downstream")
    npsd = None
    sock = "npsd-it-%d" % os.getpid()
    try:
        sub = redis.Redis(port=st.redis_port, decode_responses=True).pubsub()
        sub.subscribe("nps:events")
        wait_for(lambda: sub.get_message(timeout=0.2), 10, "subscribed")

        accts = [(a, json.dumps(dict(ctx, account_id=a, name="N-" + a,
                                     updated_at="2026-11-01T00:00:00Z")))
                 for a, ctx in CONTEXT.items() if ctx is not None]
        accts.append(("acct-ctx", json.dumps(
            {"account_id": "acct-ctx", "segment": "smb", "name": "Ctx",
             "updated_at": "2026-11-01T00:00:00Z"})))
        st.produce("accounts", accts)
        npsd = st.npsd(now=NOW)
        # context first: priority uses the context as of counting
        wait_processed(st, "npsd", ("accounts",), timeout=60)

        rs = []
        for k, a in enumerate(CONTEXT):
            # k more promoters per account: distinct NPS, distinct ranks
            for i, sc in enumerate(SCORES + (10,) * k):
                rs.append({"event_id": "%s-%d" % (a, i), "account_id": a,
                           "user_id": "%s-u%d" % (a, i), "score": sc,
                           "submitted_at": iso(T - timedelta(hours=i + 1))})
        # suppression: sup-1 once (offset time); sup-2 twice, the later
        # response first; sup-3 only 31 days ago
        sup = [("sup-1", "2026-11-20T13:00:00+02:00"),
               ("sup-2", iso(T - timedelta(days=2))),
               ("sup-2", iso(T - timedelta(days=10))),
               ("sup-3", iso(T - timedelta(days=31)))]
        for i, (u, at) in enumerate(sup):
            rs.append({"event_id": "sup-r%d" % i, "account_id": "acct-sup",
                       "user_id": u, "score": 8, "submitted_at": at})
        st.produce("nps.responses", [(r["account_id"], json.dumps(r))
                                     for r in rs])
        wait_processed(st, "npsd", TOPICS, timeout=60)

        # ---- priority and playbook
        seen = 0
        for t in ("nps.detractors", "nps.passives", "nps.promoters"):
            for m in read_topic(st, t):
                v = json.loads(m.value())
                if v["account_id"] not in CONTEXT:
                    continue
                cat = category(next(r["score"] for r in rs
                                    if r["event_id"] == v["event_id"]))
                assert t == "nps.%ss" % cat, (v["event_id"], t)
                prio, play = expected_priority(cat, CONTEXT[v["account_id"]])
                assert (v["priority"], v["playbook"]) == (prio, play), \
                    "%s (%s, %s): %s/%s, expected %s/%s" % (
                        v["event_id"], cat, CONTEXT[v["account_id"]],
                        v["priority"], v["playbook"], prio, play)
                ctx = CONTEXT[v["account_id"]] or {}
                if "renewal_date" in ctx:
                    assert v["account"]["days_to_renewal"] == (
                        date.fromisoformat(ctx["renewal_date"]) - TODAY).days
                else:
                    assert v["account"]["days_to_renewal"] is None, v
                seen += 1
        assert seen == len([r for r in rs if r["account_id"] in CONTEXT]), seen
        # the cases this test meant to cover all occurred
        got = {expected_priority(category(sc), c) for c in CONTEXT.values()
               for sc in SCORES}
        assert got == {("p1", "retention"), ("p2", "recovery"),
                       ("p2", "nudge"), ("p3", "nudge"),
                       ("p3", "advocacy")}, got

        # ---- nps:suppress:<user_id>: a global key, written with the
        # account's other global deltas within about a second of its batch
        wait_for(lambda: engine_settled(st.r), 60, "global deltas applied")

        def ttl_ok(user, value, until):
            assert st.r.get("nps:suppress:" + user) == value, (
                user, st.r.get("nps:suppress:" + user))
            exp = int((until - T).total_seconds())
            ttl = st.r.ttl("nps:suppress:" + user)
            # the clock is pinned: the TTL was exp when set, and has run
            # down by the seconds since
            assert exp - 300 <= ttl <= exp, (user, ttl, exp)
        ttl_ok("sup-1", "2026-11-20T11:00:00Z", datetime(
            2026, 12, 20, 11, 0, tzinfo=timezone.utc))
        ttl_ok("sup-2", iso(T - timedelta(days=2)),
               T - timedelta(days=2) + timedelta(days=30))
        assert st.r.exists("nps:suppress:sup-3") == 0
        ttl_ok("p-ent-u0", iso(T - timedelta(hours=1)),
               T - timedelta(hours=1) + timedelta(days=30))

        # ---- nps:events
        # processing is complete (committed): every notice was published;
        # read until each account has been heard of and nothing is left
        notices = []
        want_accts = set(CONTEXT) | {"acct-ctx", "acct-sup"}
        deadline = time.time() + 30
        while True:
            m = sub.get_message(timeout=1.0)
            if m is None:
                if {n["account_id"] for n in notices} >= want_accts:
                    break
                assert time.time() < deadline, "notices heard: %s" % notices
                continue
            if m["type"] == "message":
                notices.append(json.loads(m["data"]))
        allowed = {"account_id", "nps_90d", "health", "health_band",
                   "updated_at"}
        last = {}
        for n in notices:
            assert set(n) <= allowed and {"account_id", "updated_at"} <= \
                set(n), n
            assert n["updated_at"] == NOW, n
            last[n["account_id"]] = n
        for a in list(CONTEXT) + ["acct-sup"]:
            s = st.r.hgetall("nps:{%s}:summary" % a)
            assert last[a] == {"account_id": a,
                               "nps_90d": float(s["nps_90d"]),
                               "health": int(s["health"]),
                               "health_band": s["health_band"],
                               "updated_at": s["updated_at"]}, (last[a], s)
        assert last["acct-ctx"] == {"account_id": "acct-ctx",
                                    "updated_at": NOW}, last["acct-ctx"]
        sub.close()

        # ---- npsctl top in tmux
        assert shutil.which("tmux"), "tmux is needed (scripts/install-deps.sh)"
        n_all = len(rs)
        wait_for(lambda: st.r.hget("nps:cohort:all:all:w:90d", "responses")
                 == str(n_all), 30, "cohort all:all")
        # the pane runs npsctl top under a shell that records its exit
        # status (the shell itself ignores the Ctrl-C; npsctl handles it)
        status_file = os.path.join(st.dir, "top.status")
        tmux(sock, "new-session", "-d", "-s", "top", "-x", "200", "-y", "60",
             "-c", REPO, "sh", "-c",
             'trap "" INT; "$@"; echo $? > %s' % shlex.quote(status_file),
             "sh", os.path.join(st.build, "npsctl"), "top",
             "--redis-port", str(st.redis_port), "--limit", "20",
             "--interval", "0.5")
        tmux(sock, "set-option", "-t", "top", "remain-on-exit", "on")
        last_screen, last_probs = [""], [["no screen yet"]]

        def screen_matches():
            last_screen[0] = tmux(sock, "capture-pane", "-p", "-t",
                                  "top").stdout
            if "AT RISK" not in last_screen[0]:
                return False
            last_probs[0] = top_problems(last_screen[0], st.r)
            return not last_probs[0]
        try:
            wait_for(screen_matches, 30, "npsctl top showing Redis")
        except AssertionError:
            raise AssertionError("%s\n%s" % (last_probs[0], last_screen[0]))
        assert "nps.responses" not in last_screen[0]
        assert "p-ent" in last_screen[0] and "acct-ctx" not in last_screen[0]
        tmux(sock, "send-keys", "-t", "top", "C-c")

        wait_for(lambda: os.path.exists(status_file) and
                 open(status_file).read().strip(), 15,
                 "npsctl top to quit on Ctrl-C")
        with open(status_file) as f:
            status = f.read().strip()
        assert status == "0", "npsctl top exit status %s" % status

        st.stop_clean(npsd)
        npsd = None
    finally:
        tmux(sock, "kill-server", check=False)
        st.close()


if __name__ == "__main__":
    main(test)
