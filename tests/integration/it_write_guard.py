"""The guarded writes (src/lua/write.lua, built by src/redis/npsd_write.c
and sent through npsd's routed pipeline) against a real standalone
redis-server and a real three-primary Redis Cluster: a cas call applies
once and a stale one conflicts with the current value and runs nothing; a
seq call applies in order, a replay is "already" and a skipped sequence a
gap, neither running anything; a disallowed command, an undeclared key or
a malformed encoding fails the whole call before anything is written;
commands up to the word bound run and longer ones are refused or split;
on the cluster, one pipeline of calls for hundreds of slots lands every
write on the primary that owns its slot."""
import os
import shutil
import subprocess
import tempfile

import redis

from harness import REPO, dump_differences, free_port, main, redis_dump, wait_for
from rcluster import RedisCluster

# The script itself, comments and all, for the encodings the builder cannot
# produce (npsd_write sends the same body without its comment lines).
SCRIPT = open(os.path.join(REPO, "src", "lua", "write.lua")).read()
WORDS_MAX = 7000


class Probe:
    def __init__(self, build, port, mode="auto"):
        self.p = subprocess.Popen(
            [os.path.join(build, "npsd_write_probe"), "127.0.0.1", str(port),
             "", mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def _send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def _read(self):
        line = self.p.stdout.readline()
        assert line, "probe ended: " + self.p.stderr.read()
        return line.rstrip("\n")

    def add(self, line):
        """A builder line; returns None when accepted, else the refusal."""
        self._send(line)
        out = self._read()
        if out.startswith("+"):
            return out[2:] or None
        assert out.startswith("refused "), out
        return out

    def must(self, *lines):
        for line in lines:
            out = self.add(line)
            assert out is None, (line, out)

    def exec(self, what="EXEC"):
        """Runs the calls built (RETRY: again, in a new pipeline); returns
        one (status, detail) per call."""
        self._send(what)
        results = []
        while True:
            line = self._read()
            if line == "ok":
                return results
            assert not line.startswith("fail "), line
            idx, status, *rest = line.split(" ", 2)
            assert int(idx) == len(results), line
            results.append((status, rest[0] if rest else None))

    def call(self, *lines):
        """One pipeline of the calls in lines; their results."""
        self.must(*lines)
        return self.exec()

    def stats(self):
        self._send("STATS")
        line = self._read().split()
        assert line[0] == "stats", line
        return {k: int(v) for k, v in (f.split("=") for f in line[1:])}

    def close(self):
        self.p.stdin.close()
        err = self.p.stderr.read()
        assert self.p.wait(10) == 0, err
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
            assert bad not in err, err


class Target:
    """Where keys live: one redis-server, or the primaries of a cluster
    (each key read on the primary that owns its slot)."""

    def __init__(self, port=None, rc=None):
        self.rc = rc
        self.owners = None
        self.plain = None if rc else redis.Redis(port=port,
                                                 decode_responses=True)

    def owner(self, key):
        if not self.rc:
            return None
        if not self.owners:  # nothing moves slots in this test
            self.owners = self.rc.slot_owners(self.rc.primaries()[0])
        return self.owners[self.rc.keyslot(key)]

    def r(self, key):
        return self.plain if not self.rc else self.rc.client(self.owner(key))

    def dump(self):
        """Every key with its value, and on a cluster the node holding it."""
        if not self.rc:
            return redis_dump(self.plain, volatile=[], pattern="*")
        out = {}
        for p in self.rc.primaries():
            for k, v in redis_dump(self.rc.client(p), volatile=[],
                                   pattern="*").items():
                out["%d/%s" % (p, k)] = v
        return out

    def raw(self, keys, args):
        """write.lua EVAL'd by hand, on the node of keys[0]; returns the
        reply or the error's text."""
        try:
            return self.r(keys[0] if keys else "x").eval(
                SCRIPT, len(keys), *keys, *args)
        except redis.exceptions.ResponseError as e:
            return "error: %s" % e


def unchanged(target, before, what):
    after = target.dump()
    assert after == before, "%s wrote:\n%s" % (
        what, "\n".join(dump_differences(before, after)))


def check_cas(probe, t, events):
    st, view, mk = "nps:{acct-1}:st", "nps:{acct-1}:w:30d", "nps:{acct-1}:evp:p1"
    # first write of the account: the version is absent
    assert probe.call(
        "CAS %s v '' 1" % st,
        "CMD 1 HSET %s b state-1" % st,
        "CMD 1 HSET %s n 1 nps 100" % view,
        "CMD 1 SADD %s e1" % mk,
        "CMD 0 PUBLISH nps:events acct-1:v1") == [("applied", None)]
    assert t.r(st).hgetall(st) == {"v": "1", "b": "state-1"}
    assert t.r(view).hgetall(view) == {"n": "1", "nps": "100"}
    assert t.r(mk).smembers(mk) == {"e1"}
    # a second instance read the account before that write: its version is
    # stale, it learns the current one, and nothing of its call runs
    before = t.dump()
    assert probe.call(
        "CAS %s v '' 1" % st,
        "CMD 1 HSET %s b state-other" % st,
        "CMD 1 HSET %s n 99" % view,
        "CMD 1 SADD %s e2" % mk,
        "CMD 1 DEL %s" % view,
        "CMD 0 PUBLISH nps:events acct-1:stale") == [("conflict", "1")]
    unchanged(t, before, "a stale cas")
    # with the version read, it applies; the same version again conflicts
    assert probe.call("CAS %s v 1 2" % st,
                      "CMD 1 HINCRBY %s n 1" % view,
                      "CMD 0 PUBLISH nps:events acct-1:v2") == [("applied", None)]
    before = t.dump()
    assert probe.call("CAS %s v 1 2" % st,
                      "CMD 1 HINCRBY %s n 1" % view) == [("conflict", "2")]
    unchanged(t, before, "a cas with a version already used")
    assert t.r(view).hget(view, "n") == "2"
    # two calls from one version in one pipeline: the first wins, the
    # second sees its version
    assert probe.call("CAS %s v 2 3" % st, "CMD 1 HINCRBY %s n 10" % view,
                      "CAS %s v 2 3" % st, "CMD 1 HINCRBY %s n 100" % view) == \
        [("applied", None), ("conflict", "3")]
    assert t.r(view).hget(view, "n") == "12"
    assert t.r(st).hget(st, "v") == "3"
    # the announcements of the applied calls only, each once
    wait_for(lambda: len(events.all()) >= 2, 10, "two announcements")
    assert events.all() == ["acct-1:v1", "acct-1:v2"], events.got


def check_seq(probe, t):
    # a global key without a hash tag, its fence in its slot by a slot tag
    key = "nps:cohort:segment:smb:d"
    tag = probe.add("TAG %s" % key)
    fence = "nps:{%s}:fence" % tag
    if t.rc:
        assert t.rc.keyslot(fence) == t.rc.keyslot(key), (fence, key)
    seq = lambda s, n, acct="acct-1": probe.call(
        "SEQ %s %s %d" % (fence, acct, s), "CMD 1 HINCRBY %s d20000 %d" % (key, n))
    assert seq(1, 5) == [("applied", None)]
    assert seq(2, 3) == [("applied", None)]
    assert t.r(key).hget(key, "d20000") == "8"
    assert t.r(fence).hget(fence, "acct-1") == "2"
    # replays of 2 and 1 are "already applied"; 4 after 2 is a gap; nothing
    # of them runs
    before = t.dump()
    assert seq(2, 3) == [("already", "2")]
    assert seq(1, 5) == [("already", "2")]
    assert seq(4, 7) == [("gap", "2")]
    unchanged(t, before, "replayed and early deltas")
    # another account's fence is its own; 3 then 4 fill the gap in order
    assert seq(1, 1000, "acct-2") == [("applied", None)]
    assert probe.call("SEQ %s acct-1 3" % fence, "CMD 1 HINCRBY %s d20000 1" % key,
                      "SEQ %s acct-1 4" % fence, "CMD 1 HINCRBY %s d20000 7" % key,
                      "SEQ %s acct-1 4" % fence, "CMD 1 HINCRBY %s d20000 7" % key) == \
        [("applied", None), ("applied", None), ("already", "4")]
    assert t.r(key).hget(key, "d20000") == str(8 + 1000 + 1 + 7)
    assert t.r(fence).hgetall(fence) == {"acct-1": "4", "acct-2": "1"}
    # the largest sequence a Lua number holds exactly, as the builder allows
    big = 2 ** 53 - 1
    assert probe.call("SEQ %s acct-3 %d" % (fence, big - 1),
                      "SEQ %s acct-3 %d" % (fence, big)) == \
        [("gap", "0"), ("gap", "0")]
    t.r(fence).hset(fence, "acct-3", big - 1)
    assert probe.call("SEQ %s acct-3 %d" % (fence, big)) == [("applied", None)]
    assert t.r(fence).hget(fence, "acct-3") == str(big)
    assert probe.add("SEQ %s acct-3 %d" % (fence, big + 1)).startswith("refused")


def check_groups(probe, t):
    """Groups calls on one fence hash: exact runs each group that passes,
    newer each that is ahead, all every group or none."""
    fence, c, tm = "nps:{g}:fence", "nps:{g}:c", "nps:{g}:timers"
    res = lambda *lines: [(s, d.split()) for s, d in probe.call(*lines)]
    # all: both pass, every command runs, the fences advance
    assert res("GROUPS %s all" % fence,
               "GROUP a 1", "CMD 1 HINCRBY %s d1 5" % c,
               "CMD 1 ZADD %s 100 a" % tm,
               "GROUP b 1", "CMD 1 HINCRBY %s d1 3" % c,
               "CMD 1 SADD nps:{g}:dirty d1") == \
        [("groups", ["applied", "applied"])]
    assert t.r(c).hgetall(c) == {"d1": "8"}
    assert t.r(fence).hgetall(fence) == {"a": "1", "b": "1"}
    # a field's later group counts on its earlier one in the same call
    assert res("GROUPS %s all" % fence,
               "GROUP a 2", "CMD 1 HINCRBY %s d1 1" % c,
               "GROUP a 3", "CMD 1 ZADD %s 300 a" % tm,
               "GROUP b 2", "CMD 1 HINCRBY %s d1 10" % c) == \
        [("groups", ["applied", "applied", "applied"])]
    assert t.r(c).hget(c, "d1") == "19"
    assert t.r(tm).zscore(tm, "a") == 300
    assert t.r(fence).hgetall(fence) == {"a": "3", "b": "2"}
    # one group found applied, or one gap: nothing runs, no fence moves;
    # the groups that would have passed answer gap
    before = t.dump()
    assert res("GROUPS %s all" % fence,
               "GROUP b 3", "CMD 1 HINCRBY %s d1 100" % c,
               "GROUP a 3", "CMD 1 HINCRBY %s d1 100" % c) == \
        [("groups", ["gap", "already"])]
    assert res("GROUPS %s all" % fence,
               "GROUP b 3", "CMD 1 HINCRBY %s d1 100" % c,
               "GROUP c 2", "CMD 1 DEL %s" % c) == \
        [("groups", ["gap", "gap"])]
    unchanged(t, before, "an all call with a group that does not pass")
    # exact, on the same input, runs the group that passes
    assert res("GROUPS %s exact" % fence,
               "GROUP b 3", "CMD 1 HINCRBY %s d1 100" % c,
               "GROUP a 3", "CMD 1 HINCRBY %s d1 100" % c,
               "GROUP c 2", "CMD 1 DEL %s" % c) == \
        [("groups", ["applied", "already", "gap"])]
    assert t.r(c).hget(c, "d1") == "119"
    # newer runs what is ahead of its field, whatever the gap
    assert res("GROUPS %s newer" % fence,
               "GROUP a 9", "CMD 1 ZADD %s 900 a" % tm,
               "GROUP b 1", "CMD 1 ZADD %s 1 b" % tm) == \
        [("groups", ["applied", "already"])]
    assert t.r(tm).zscore(tm, "a") == 900 and t.r(tm).zscore(tm, "b") is None
    assert t.r(fence).hgetall(fence) == {"a": "9", "b": "3"}


def check_multi(probe, t):
    """WATCH, then the cas and checked groups calls as one MULTI/EXEC of
    plain commands (standalone); EXEC runs nothing when a watched key
    changed. On a cluster the same lines go as scripts, which check."""
    st, view = "nps:{acct-90}:st", "nps:{acct-90}:w:30d"
    fence, c = "nps:{g}:fence90", "nps:{g}:c90"
    t.r(st).hset(st, "v", "7")
    t.r(fence).hset(fence, "a", "4")
    res = lambda *lines: [(s, (d or "").split()) for s, d in probe.call(*lines)]
    calls = lambda: {k: v["calls"] for k, v in
                     t.r(st).info("commandstats").items()} if not t.rc else {}
    batch = ("MULTI",
             "CAS %s v 7 8" % st, "CMD 1 HSET %s b state-8" % st,
             "CMD 1 HINCRBY %s n 1" % view,
             "GROUPS %s checked all" % fence, "GROUP a 5",
             "CMD 1 HINCRBY %s d1 5" % c, "GROUP b 1",
             "CMD 1 HINCRBY %s d1 2" % c)
    if t.rc:
        # no transaction across slots: scripts, so the fences are checked
        # (b is at 0, a at 4: all passes) and a stale version conflicts
        assert res(*batch) == [("applied", []),
                               ("groups", ["applied", "applied"])]
        before = t.dump()
        assert res(*batch) == [("conflict", ["8"]),
                               ("groups", ["already", "already"])]
        unchanged(t, before, "a stale batch on a cluster")
        assert t.r(c).hget(c, "d1") == "7"
        return
    # the watch holds: everything runs, as plain commands in one EXEC
    assert probe.add("WATCH %s %s" % (st, fence)) is None
    was = calls()
    assert res(*batch) == [("applied", []), ("groups", ["applied", "applied"])]
    now = calls()
    assert now.get("cmdstat_exec", 0) == was.get("cmdstat_exec", 0) + 1
    for script in ("cmdstat_eval", "cmdstat_evalsha"):
        assert now.get(script, 0) == was.get(script, 0), (script, was, now)
    assert t.r(st).hgetall(st) == {"v": "8", "b": "state-8"}
    assert t.r(view).hget(view, "n") == "1"
    assert t.r(c).hget(c, "d1") == "7"
    assert t.r(fence).hgetall(fence) == {"a": "5", "b": "1"}
    # another writer changes the version after the WATCH: nothing runs,
    # every call of the transaction answers conflict
    assert probe.add("WATCH %s %s" % (st, fence)) is None
    t.r(st).hset(st, "v", "9")
    before = t.dump()
    assert res("MULTI", "CAS %s v 8 9" % st,
               "CMD 1 HSET %s b state-9" % st,
               "GROUPS %s checked all" % fence, "GROUP a 6",
               "CMD 1 HINCRBY %s d1 100" % c) == \
        [("conflict", []), ("groups", ["conflict"])]
    unchanged(t, before, "a transaction whose watched key changed")
    # so does a change of the fence hash alone (another instance's deltas)
    assert probe.add("WATCH %s %s" % (st, fence)) is None
    t.r(fence).hset(fence, "z", "1")
    before = t.dump()
    assert res("MULTI", "CAS %s v 9 10" % st,
               "CMD 1 HSET %s b state-10" % st) == [("conflict", [])]
    unchanged(t, before, "a transaction whose watched fence changed")
    # a command Redis refuses as it queues it: nothing runs, an error
    assert probe.add("WATCH %s" % st) is None
    before = t.dump()
    out = res("MULTI", "CAS %s v 9 10" % st, "CMD 1 HSET %s b" % st)
    assert out[0][0] == "error" and "EXECABORT" in " ".join(out[0][1]), out
    unchanged(t, before, "a transaction with a refused command")


def check_refusals(probe, t):
    st, view = "nps:{acct-9}:st", "nps:{acct-9}:w:30d"
    t.r(st).hset(st, "v", "5")
    before = t.dump()
    # through the builder: a command not on the list, a key not declared,
    # too few words: Redis fails the call, nothing of it is written (nor
    # its guard)
    for bad, why in (("CMD 1 GET %s" % view, "not allowed: GET"),
                     ("CMD 0 FLUSHALL", "not allowed: FLUSHALL"),
                     ("CMD 0 EVAL x 0", "not allowed: EVAL"),
                     ("CMD 0 HSET nps:{acct-9}:other f v", "undeclared key"),
                     ("CMD 1 HSET %s f" % view, "too few words")):
        res = probe.call("CAS %s v 5 6" % st, "CMD 1 HSET %s a 1" % view,
                         "CMD 1 SADD %s m" % view.replace("w:30d", "s"), bad)
        assert res[0][0] == "error" and why in res[0][1], (bad, res)
        unchanged(t, before, bad)
    # one bad call in a pipeline fails alone
    res = probe.call("CAS nps:{acct-10}:st v '' 1", "CMD 1 HSET nps:{acct-10}:h a 1",
                     "CAS %s v 5 6" % st, "CMD 1 HSET %s a 1" % view,
                     "CMD 1 GET %s" % view,
                     "CAS nps:{acct-11}:st v '' 1", "CMD 1 HSET nps:{acct-11}:h a 1")
    assert [r[0] for r in res] == ["applied", "error", "applied"], res
    assert t.r(st).hget(st, "v") == "5" and not t.r(view).exists(view)
    for a in ("acct-10", "acct-11"):
        k = "nps:{%s}:h" % a
        assert t.r(k).hgetall(k) == {"a": "1"}
        t.r(k).delete(k, "nps:{%s}:st" % a)

    # encodings the builder never produces, by hand: each fails, and the
    # valid command before the bad one did not run
    before = t.dump()
    keys = [st, view]
    good = ["4", "HSET", view, "a", "1"]
    wide = [str(WORDS_MAX + 1), "HSET", view] + ["w%d" % i for i in range(WORDS_MAX - 1)]
    for args, why in (
            (["cas", "v", "5", "6"] + good + ["x", "HSET"], "bad word count"),
            (["cas", "v", "5", "6"] + good + ["0"], "bad word count"),
            (["cas", "v", "5", "6"] + good + ["-1", "HSET"], "bad word count"),
            (["cas", "v", "5", "6"] + good + ["1.5", "HSET"], "bad word count"),
            (["cas", "v", "5", "6"] + good + ["4", "HSET", view, "b"], "bad word count"),
            (["cas", "v", "5", "6"] + good + wide, "bad word count"),
            (["cas", "v", "5", "6"] + good + ["2", "hset", "nps:{acct-99}:x"], "too few"),
            (["cas", "v", "5", "6"] + good + ["3", "DEL", view, "elsewhere"], "undeclared key elsewhere"),
            (["cas", "v", "5"], "needs a guard key"),
            (["xyz", "v", "5", "6"] + good, "unknown mode xyz"),
            (["seq", "v", "0", ""] + good, "bad sequence 0"),
            (["seq", "v", "1.5", ""] + good, "bad sequence"),
            (["seq", "v", "01", ""] + good, "bad sequence"),
            (["seq", "v", str(2 ** 53), ""] + good, "bad sequence")):
        got = t.raw(keys, args)
        assert isinstance(got, str) and why in got, (args[:8], got)
        unchanged(t, before, " ".join(args[:8]))
    # a fence holding something that is not a sequence is an error too
    t.r(st).hset(st, "f", "zz")
    before = t.dump()
    got = t.raw(keys, ["seq", "f", "1", ""] + good)
    assert isinstance(got, str) and "holds zz" in got, got
    unchanged(t, before, "a broken fence")
    assert t.raw([], ["cas", "v", "", "1"]).startswith("error")

    # the word bound: 7,000 words run (Lua's unpack takes them), one more
    # is refused by the builder; hset splits 10,000 pairs itself
    big = "nps:{acct-9}:big"
    assert probe.add("CAS %s v 5 6" % st) is None
    out = probe.add("WIDE %s %d" % (big, WORDS_MAX + 1))
    assert out and "7000" in out, out
    out = probe.add("CMD 1 HSET nps:{acct-8}:x f v")
    assert out and "slot" in out, out
    probe.must("WIDE %s %d" % (big, WORDS_MAX), "HSET %s:h 10000" % big)
    assert probe.exec() == [("applied", None)]
    assert t.r(big).hlen(big) == (WORDS_MAX - 2) // 2
    assert t.r(big).hlen(big + ":h") == 10000
    assert t.r(big).hget(big + ":h", "f9999") == "v9999"
    assert not t.r("nps:{acct-8}:x").exists("nps:{acct-8}:x")
    # the same by hand: a command of exactly the bound runs in Redis
    got = t.raw([st, big], ["cas", "v", "6", "7", str(WORDS_MAX), "HSET", big] +
                ["x%d" % i for i in range(WORDS_MAX - 2)])
    assert got == [1], str(got)[:200]


def check_spread(probe, t, accounts=300):
    """One pipeline with a call per account and per global key: every call
    applies, every write lands where its slot lives; the same calls again
    all conflict (or are already applied) and change nothing."""
    lines, expect = [], []
    globals_ = ["nps:theme:t%d:d" % i for i in range(20)]
    fences = {}
    for g in globals_:
        fences[g] = "nps:{%s}:fence" % probe.add("TAG %s" % g)
    for i in range(accounts):
        a = "acct-%04d" % i
        lines += ["CAS nps:{%s}:st v '' 1" % a,
                  "CMD 1 HSET nps:{%s}:st b s%d" % (a, i),
                  "CMD 1 HSET nps:{%s}:summary nps %d" % (a, i),
                  "CMD 2 DEL nps:{%s}:gone nps:{%s}:old" % (a, a),
                  "CMD 1 ZADD nps:{%s}:gq %d d%d" % (a, i, i)]
        expect.append(("applied", None))
    for j, g in enumerate(globals_):
        lines += ["SEQ %s acct-0000 1" % fences[g], "CMD 1 HINCRBY %s d %d" % (g, j)]
        expect.append(("applied", None))
    assert probe.call(*lines) == expect
    for i in range(accounts):
        a = "acct-%04d" % i
        for k, v in (("nps:{%s}:st" % a, {"v": "1", "b": "s%d" % i}),
                     ("nps:{%s}:summary" % a, {"nps": str(i)})):
            assert t.r(k).hgetall(k) == v, k
        k = "nps:{%s}:gq" % a
        assert t.r(k).zrange(k, 0, -1, withscores=True) == [("d%d" % i, i)]
    for j, g in enumerate(globals_):
        assert t.r(g).hget(g, "d") == str(j)
        assert t.r(fences[g]).hget(fences[g], "acct-0000") == "1"
    if t.rc:
        # each key on exactly the primary that owns its slot, and the calls
        # really were spread over every primary
        owners = t.rc.slot_owners(t.rc.primaries()[0])
        held = {}
        for p in t.rc.primaries():
            for k in t.rc.client(p).scan_iter("*", count=1000):
                assert owners[t.rc.keyslot(k)] == p, (k, p)
                held[p] = held.get(p, 0) + 1
        assert len(held) == 3 and min(held.values()) > 100, held
    # the batch retried as after a failed exec (the same argv appended to a
    # new pipeline): its writes landed already, so every call is refused
    # and nothing changes
    before = t.dump()
    refused = [("conflict", "1")] * accounts + [("already", "1")] * len(globals_)
    res = probe.exec("RETRY")
    assert res == refused, res[:5]
    unchanged(t, before, "the batch retried")
    # and the same calls built anew
    res = probe.call(*lines)
    assert res == refused, res[:5]
    unchanged(t, before, "the same calls again")


class Events:
    """What a subscriber of nps:events received."""

    def __init__(self, r):
        self.sub = r.pubsub(ignore_subscribe_messages=True)
        self.sub.subscribe("nps:events")
        wait_for(lambda: self.sub.get_message(timeout=0.1) is None and
                 r.pubsub_numsub("nps:events")[0][1] >= 1, 10,
                 "the subscription")
        self.got = []

    def all(self):
        while True:
            m = self.sub.get_message(timeout=0.2)
            if m is None:
                return self.got
            self.got.append(m["data"])


def run_all(build, port, t, label):
    events = Events(t.r("nps:events"))
    probe = Probe(build, port)
    check_cas(probe, t, events)
    check_seq(probe, t)
    check_groups(probe, t)
    check_multi(probe, t)
    check_refusals(probe, t)
    check_spread(probe, t)
    st = probe.stats()
    assert st["cluster"] == (1 if t.rc else 0), st
    # a second round of the whole spread reuses the writer's memory
    mem = st["memory"]
    for i in range(3):
        for p in t.rc.primaries() if t.rc else [None]:
            (t.rc.client(p) if t.rc else t.plain).flushall()
        check_spread(probe, t)
        assert probe.stats()["memory"] == mem, (probe.stats(), mem)
    probe.close()
    events.sub.close()
    print("%s: ok, %s" % (label, st))


def test(build):
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="npsd-write-")
    plain = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rc = None
    try:
        wait_for(lambda: subprocess.run(
            ["redis-cli", "-p", str(port), "ping"],
            capture_output=True).returncode == 0, 10, "redis-server")
        run_all(build, port, Target(port=port), "standalone")
        rc = RedisCluster(3, name="write")
        run_all(build, rc.ports[0], Target(rc=rc), "cluster")
    finally:
        plain.terminate()
        plain.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        if rc:
            rc.close()


if __name__ == "__main__":
    main(test)
