"""npsctl account, top, reset and replay against a real three-primary Redis
Cluster (tests/integration/rcluster.py) and against a plain redis-server,
the same checks on both: keys of SPEC section 7's shapes for accounts
spread over every primary (account, summary and window hashes and alert
logs under {A}; the open loops npsd keeps in its binary state record are
left to it_account_card, which has npsd write them; ranks, cohorts, themes, CSM and suppression keys
in slots of their own), written with a cluster-aware client. Then

- `npsctl account A --json` equals what Redis holds for every account, and
  the card shows it;
- `npsctl top --once` lists the accounts in rank order with their summary
  values, the cohort row and the themes;
- `npsctl reset` without --yes counts the keys of every primary and
  changes nothing; with --yes it leaves no `nps:*` key on any node while
  keys of other prefixes (`npsx:*` included) keep their values;
- `npsctl replay --yes` (the development broker, no npsd in the group)
  empties every node too, and so does reset while redis-cli --cluster
  reshard moves slots between two primaries;
- a seed given with --redis-nodes is used when the first node is down, an
  account on a stopped primary fails with that node's address, and
  --redis-cluster on is refused by a plain redis-server.
Nothing is mocked."""
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile

import redis
from redis.cluster import RedisCluster as ClusterClient

from harness import free_port, main, sanitizer_report, wait_for
from rcluster import RedisCluster

# redis-py logs each redirection it follows (with a traceback) as an error:
# the seeding client follows many while slots move
logging.getLogger("redis.cluster").setLevel(logging.CRITICAL)

ACCOUNTS = ["acct-c%02d" % i for i in range(12)]
SEGMENTS = ("smb", "mid_market", "enterprise")
NOW_ISO = "2026-03-01T12:00:00Z"


def npsctl(build, *args, check=True, env=None):
    """Runs npsctl; a sanitizer report on stderr fails the test."""
    r = subprocess.run([os.path.join(build, "npsctl")] + list(args),
                       capture_output=True, text=True, timeout=120, env=env)
    found = sanitizer_report(r.stderr)
    assert not found, "npsctl %s: %s" % (args[0], found)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def window(i, scale):
    p, pa, d = 10 + i, 5, 3 + scale
    n = p + pa + d
    nps = round(100.0 * (p - d) / n, 1)
    h = {"responses": n, "promoters": p, "passives": pa, "detractors": d,
         "nps": nps, "moe": 12.5, "ci_low": nps - 12.5,
         "ci_high": nps + 12.5, "low_confidence": 1}
    for f, v in list(h.items()):
        h["relationship." + f] = v
    return {k: str(v) for k, v in h.items()}


def seed(c, accounts=ACCOUNTS):
    """Writes the SPEC section 7 shapes with client c (cluster-aware or
    plain) and keys of other prefixes. Returns the keys of other prefixes
    with their values."""
    for i, a in enumerate(accounts):
        seg = SEGMENTS[i % 3]
        c.hset("nps:{%s}:account" % a, mapping={
            "account_id": a, "name": "Name-" + a, "segment": seg,
            "plan": "pro", "arr": str(10000 * (i + 1)), "seats": "40",
            "csm_owner": "dana"})
        c.hset("nps:{%s}:summary" % a, mapping={
            "nps_30d": "%.1f" % (-40 + 6 * i), "nps_90d": "%.1f" % (-50 + 7 * i),
            "responses_90d": str(20 + i), "moe_90d": "10.5",
            "trend_90d": "-3.0", "role_gap_90d": "4.0", "role_gap_flag": "0",
            "health": str(40 + i), "health_band": "red" if i < 4 else "green",
            "health.nps": "30", "last_response_at": NOW_ISO,
            "last_score": "6", "updated_at": NOW_ISO})
        c.hset("nps:{%s}:w:30d" % a, mapping=window(i, 1))
        c.hset("nps:{%s}:w:90d" % a, mapping=window(i, 2))
        c.rpush("nps:{%s}:alert_log" % a, json.dumps({
            "type": "nps_drop", "severity": "high", "fired_at": NOW_ISO,
            "account_id": a, "details": {"trend": -12, "nps": 10,
                                         "nps_prev": 22, "responses": 30,
                                         "responses_prev": 25}}))
        c.zadd("nps:rank:nps_90d", {a: -50 + 7 * i})
        c.zadd("nps:rank:health", {a: 40 + i})
        c.set("nps:suppress:u-%s" % a, NOW_ISO, ex=30 * 86400)
    c.hset("nps:cohort:all:all:w:90d", mapping=window(3, 0))
    for i, seg in enumerate(SEGMENTS):
        c.hset("nps:cohort:segment:%s:w:90d" % seg, mapping=window(i, 4))
    c.zadd("nps:themes:detractor:w:90d", {"pricing": 9, "support": 4,
                                          "onboarding": 2})
    c.hset("nps:csm:dana", mapping={"accounts": str(len(accounts)),
                                    "open_detractors": "3"})
    others = {"npsx:{%s}:kept" % a: "x-" + a for a in accounts}
    others.update({"other:%d" % i: str(i) for i in range(30)})
    others["nps"] = "not under the prefix"
    for k, v in others.items():
        c.set(k, v)
    return others


def nps_keys(nodes):
    """Every nps:* key on every node (a list of plain clients)."""
    return sorted(k for n in nodes for k in n.scan_iter("nps:*", count=1000))


def check_views(build, c, ropt):
    """account and top against what client c reads from Redis."""
    for a in ACCOUNTS:
        js = json.loads(npsctl(build, "account", a, "--json", *ropt).stdout)
        assert js["account"] == c.hgetall("nps:{%s}:account" % a), js
        assert js["summary"] == c.hgetall("nps:{%s}:summary" % a), js
        for w in ("30d", "90d"):
            assert js["windows"][w] == c.hgetall("nps:{%s}:w:%s" % (a, w)), \
                (a, w, js["windows"])
        assert js["followups"] == [], js["followups"]
        assert [x["type"] for x in js["alerts"]] == ["nps_drop"], js["alerts"]
    a = ACCOUNTS[5]
    card = npsctl(build, "account", a, *ropt).stdout
    w30 = c.hgetall("nps:{%s}:w:30d" % a)
    for want in ("Name-" + a, "%+.1f" % float(w30["nps"]),
                 "nps_drop", "health"):
        assert want in card, (want, card)
    r = npsctl(build, "account", "acct-none", *ropt, check=False)
    assert r.returncode == 1 and "no data" in r.stderr, (r.returncode, r.stderr)

    screen = npsctl(build, "top", "--once", "--limit", "20", *ropt).stdout
    rank = c.zrange("nps:rank:nps_90d", 0, 19, withscores=True)
    assert len(rank) == len(ACCOUNTS)
    rows = [ln.split() for ln in screen.splitlines()
            if ln.startswith("  ") and ln.split()[0] in dict(rank)]
    assert [row[0] for row in rows] == [m for m, _ in rank], screen
    for row in rows:
        s = c.hgetall("nps:{%s}:summary" % row[0])
        assert row[1] == "Name-" + row[0], row
        assert row[3:6] == ["%+.1f" % float(s["nps_90d"]),
                            "%.1f" % float(s["moe_90d"]),
                            s["responses_90d"]], (row, s)
        assert "%s %s" % (s["health"], s["health_band"]) in " ".join(row), row
    co = c.hgetall("nps:cohort:all:all:w:90d")
    allrow = [ln.split() for ln in screen.splitlines()
              if ln.split()[:1] == ["all"]]
    assert allrow and allrow[0][1] == "%+.1f" % float(co["nps"]), screen
    assert "pricing 9 · support 4 · onboarding 2" in screen, screen
    return screen


def check_reset(build, c, nodes, others, ropt):
    """reset: a dry run counts every node's keys; --yes empties them all
    and spares the other prefixes."""
    before = nps_keys(nodes)
    # per account: account, summary, 2 windows, alert log, a suppression;
    # then 2 ranks, 4 cohorts, themes, a CSM
    assert len(before) == 6 * len(ACCOUNTS) + 8, len(before)
    r = npsctl(build, "reset", *ropt, check=False)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "would delete %d keys matching nps:*" % len(before) in r.stdout, \
        r.stdout
    assert nps_keys(nodes) == before
    r = npsctl(build, "reset", "--yes", *ropt)
    assert "deleted %d keys matching nps:*" % len(before) in r.stdout, r.stdout
    left = nps_keys(nodes)
    assert not left, "left behind: %s" % left[:10]
    for k, v in others.items():
        assert c.get(k) == v, k


def check_replay(build, c, nodes, ropt, work):
    """replay --yes with the development broker (no npsd in the group)
    empties every node as reset does."""
    bfile = os.path.join(work, "bootstrap")
    broker = subprocess.Popen(
        [os.path.join(build, "npsctl"), "broker", "--partitions", "2",
         "--bootstrap-file", bfile], stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.exists(bfile), 15, "broker bootstrap file")
        with open(bfile) as f:
            bootstrap = f.read().strip()
        seed(c)
        n = len(nps_keys(nodes))
        r = npsctl(build, "replay", "--yes", "--bootstrap", bootstrap,
                   "--group", "it-npsctl-cluster", "--timeout", "30",
                   "-X", "session.timeout.ms=6000", *ropt, check=False)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert "deleted %d keys matching nps:*" % n in r.stdout, r.stdout
        assert not nps_keys(nodes)
    finally:
        broker.terminate()
        err = broker.communicate(timeout=30)[1]
        assert broker.returncode == 0, err
        assert not sanitizer_report(err), err


def check_reset_resharding(build, rc, c):
    """reset while redis-cli --cluster reshard moves slots (and their keys)
    between two primaries: each reset deletes exactly what was written and
    leaves no nps:* key anywhere, whichever node a key was on when its
    node was scanned."""
    accounts = ["acct-r%03d" % i for i in range(80)]
    src, dst = rc.primaries()[0], rc.primaries()[1]
    nodes = [rc.client(p) for p in rc.primaries()]
    moving = rc.reshard(src, dst, 3000)
    try:
        rounds = 0
        while moving.poll() is None or rounds < 2:
            rounds += 1
            seed(c, accounts)
            # counted from what was written: a scan of the nodes here
            # could see a key twice or not at all while it migrates
            n = 6 * len(accounts) + 8
            r = npsctl(build, "reset", "--yes", "--redis-port",
                       str(rc.ports[2]))
            assert "deleted %d keys" % n in r.stdout, (rounds, r.stdout)
            left = nps_keys(nodes)
            assert not left, "round %d left %s" % (rounds, left[:10])
            assert rounds < 500, "reshard did not finish"
        assert moving.returncode == 0, open(
            os.path.join(rc.dir, "reshard.log")).read()
        print("reset under a reshard: %d rounds" % rounds)
    finally:
        if moving.poll() is None:
            moving.kill()
            moving.wait()


def test_cluster(build):
    rc = RedisCluster(3, name="npsctl")
    try:
        port = rc.ports[0]
        c = ClusterClient(host="127.0.0.1", port=port, decode_responses=True)
        others = seed(c)
        nodes = [rc.client(p) for p in rc.primaries()]
        # the accounts really are spread: every primary holds some
        owners = rc.slot_owners(port)
        held = {owners[rc.keyslot("nps:{%s}:summary" % a)] for a in ACCOUNTS}
        assert held == set(rc.primaries()), held
        ropt = ["--redis-port", str(port)]

        screen = check_views(build, c, ropt)
        assert "redis cluster 127.0.0.1:%d (3 primaries)" % port in screen, \
            screen
        # mode on and a seed list work the same; the first node being down
        # is survived through a seed
        dead = free_port()
        js = json.loads(npsctl(
            build, "account", ACCOUNTS[0], "--json", "--redis-cluster", "on",
            "--redis-port", str(dead), "--redis-nodes",
            "127.0.0.1:%d,127.0.0.1:%d" % (rc.ports[1], rc.ports[2])).stdout)
        assert js["summary"]["nps_90d"] == "-50.0", js["summary"]
        # a cluster has database 0 only
        r = npsctl(build, "account", ACCOUNTS[0], "--redis-db", "3", *ropt,
                   check=False)
        assert r.returncode == 1 and "database 0" in r.stderr, r.stderr

        check_reset(build, c, nodes, others, ropt)
        with tempfile.TemporaryDirectory(prefix="npsd-npsctl-cl-") as work:
            check_replay(build, c, nodes, ropt, work)
        check_reset_resharding(build, rc, c)

        # a stopped primary: an account it holds fails with its address
        seed(c)
        victim = rc.primaries()[2]
        acct = [a for a in ACCOUNTS
                if owners[rc.keyslot("nps:{%s}:summary" % a)] == victim][0]
        live = [p for p in rc.primaries() if p != victim][0]
        rc.procs[victim].terminate()
        rc.procs[victim].wait(10)
        r = npsctl(build, "account", acct, "--redis-port", str(live),
                   check=False)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert "127.0.0.1:%d" % victim in r.stderr, r.stderr
        r = npsctl(build, "reset", "--yes", "--redis-port", str(live),
                   check=False)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert re.search(r"127\.0\.0\.1:\d+", r.stderr), r.stderr
    finally:
        rc.close()


def test_standalone(build):
    work = tempfile.mkdtemp(prefix="npsd-npsctl-solo-")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", work],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = redis.Redis(port=port, decode_responses=True)
        wait_for(lambda: _ping(c), 10, "redis-server")
        others = seed(c)
        ropt = ["--redis-port", str(port)]
        screen = check_views(build, c, ropt)
        assert "redis 127.0.0.1:%d db 0" % port in screen, screen
        # mode off is the same path; mode on is refused with the reason
        js = json.loads(npsctl(build, "account", ACCOUNTS[1], "--json",
                               "--redis-cluster", "off", *ropt).stdout)
        assert js["summary"] == c.hgetall("nps:{%s}:summary" % ACCOUNTS[1])
        r = npsctl(build, "top", "--once", "--redis-cluster", "on", *ropt,
                   check=False)
        assert r.returncode == 1 and "CLUSTER" in r.stderr, r.stderr
        r = npsctl(build, "account", "x", "--redis-cluster", "maybe", *ropt,
                   check=False)
        assert r.returncode == 2, (r.returncode, r.stderr)
        r = npsctl(build, "account", "x", "--redis-nodes", "nowhere", *ropt,
                   check=False)
        assert r.returncode == 2, (r.returncode, r.stderr)

        check_reset(build, c, [c], others, ropt)
        # the dry run's wording on a standalone server is as before
        r = npsctl(build, "reset", *ropt, check=False)
        assert r.returncode == 2 and \
            "would delete 0 keys matching nps:* in redis 127.0.0.1:%d db 0" \
            % port in r.stdout, r.stdout
        check_replay(build, c, [c], ropt, work)

        # nothing listening: exit 1 naming the address
        dead = free_port()
        r = npsctl(build, "account", ACCOUNTS[0], "--redis-port", str(dead),
                   check=False)
        assert r.returncode == 1 and "127.0.0.1:%d" % dead in r.stderr, \
            r.stderr
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def _ping(c):
    try:
        return c.ping()
    except redis.exceptions.ConnectionError:
        return False


def test(build):
    test_standalone(build)
    test_cluster(build)


if __name__ == "__main__":
    main(test)
