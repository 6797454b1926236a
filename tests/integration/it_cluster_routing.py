"""npsd's Redis Cluster routing (src/redis/npsd_cluster.c) against a real
three-primary Redis Cluster: commands reach the node that owns their slot,
replies come back in append order, and while redis-cli --cluster reshard
moves slots under a running pipeline, MOVED (and ASK, when a key is caught
mid-migration) are followed so that every write lands exactly where the
cluster says and every read sees it. Mode auto picks standalone on a plain
redis-server."""
import os
import subprocess
import time

from harness import free_port, main, wait_for
from rcluster import RedisCluster

KEYS = ["nps:{acct-%04d}:st" % i for i in range(300)] + \
       ["nps:cohort:segment:s%d:w:30d" % i for i in range(60)]


class Probe:
    def __init__(self, build, port, mode="auto", nodes=""):
        self.p = subprocess.Popen(
            [os.path.join(build, "npsd_cluster_probe"), "127.0.0.1",
             str(port), nodes, mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def run(self, lines):
        """Sends a pipeline; returns (ok, replies or the failure reason)."""
        self.p.stdin.write("\n".join(lines + ["EXEC"]) + "\n")
        self.p.stdin.flush()
        replies = []
        while True:
            line = self.p.stdout.readline()
            assert line, "probe ended: " + self.p.stderr.read()
            line = line.rstrip("\n")
            if line == "ok":
                return True, replies
            if line.startswith("fail "):
                return False, line[5:]
            idx, kind, *rest = line.split(" ", 2)
            assert int(idx) == len(replies), line
            replies.append((kind, rest[0] if rest else None))

    def stats(self):
        self.p.stdin.write("STATS\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline().split()
        assert line[0] == "stats", line
        return {k: int(v) for k, v in (f.split("=") for f in line[1:])}

    def close(self):
        self.p.stdin.close()
        err = self.p.stderr.read()
        assert self.p.wait(10) == 0, err
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
            assert bad not in err, err


def write_read(probe, value):
    """One pipeline: SET every key, then GET every key. Returns ok and, when
    ok, checks the replies are in order and each GET sees its SET."""
    lines = ["SET %s %s" % (k, value) for k in KEYS] + \
            ["GET %s" % k for k in KEYS]
    ok, replies = probe.run(lines)
    if not ok:
        return False, replies
    assert len(replies) == 2 * len(KEYS), len(replies)
    for i, k in enumerate(KEYS):
        assert replies[i] == ("status", "OK"), (k, replies[i])
        assert replies[len(KEYS) + i] == ("str", value), (k, replies[len(KEYS) + i])
    return True, None


def check_placement(rc, value):
    """Each key is on exactly the primary that owns its slot, with value."""
    primaries = rc.primaries()
    owners = rc.slot_owners(primaries[0])
    for k in KEYS:
        slot = rc.keyslot(k)
        holders = [p for p in primaries if rc.client(p).execute_command(
            "CLUSTER", "COUNTKEYSINSLOT", slot) and rc.client(p).exists(k)]
        assert holders == [owners[slot]], (k, slot, holders, owners[slot])
        assert rc.client(owners[slot]).get(k) == value, k


def test(build):
    rc = RedisCluster(3, name="routing")
    plain_port = free_port()
    plain = subprocess.Popen(
        ["redis-server", "--port", str(plain_port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", rc.dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = None
    try:
        # 1. routing: auto mode finds the cluster and its three primaries
        probe = Probe(build, rc.ports[0])
        ok, why = write_read(probe, "v0")
        assert ok, why
        st = probe.stats()
        assert st["cluster"] == 1 and st["nodes"] == 3, st
        assert st["moved"] == 0 and st["map_loads"] == 1, st
        check_placement(rc, "v0")
        # the keys really are spread: every primary holds some
        for p in rc.primaries():
            assert rc.client(p).dbsize() > 0, p

        # 2. a slot caught mid-migration, held there: the key already moved
        # is served by the importing node only after ASKING; the keys still
        # on the old node are served there
        key = KEYS[0]
        slot = rc.keyslot(key)
        owners = rc.slot_owners(rc.ports[0])
        src = owners[slot]
        dst = [p for p in rc.primaries() if p != src][0]
        rc.client(dst).execute_command("CLUSTER", "SETSLOT", slot,
                                       "IMPORTING", rc.node_id(src))
        rc.client(src).execute_command("CLUSTER", "SETSLOT", slot,
                                       "MIGRATING", rc.node_id(dst))
        rc.client(src).execute_command("MIGRATE", "127.0.0.1", dst, key, 0,
                                       5000)
        assert rc.client(dst).execute_command("CLUSTER", "COUNTKEYSINSLOT",
                                              slot) == 1
        ok, replies = probe.run(["GET %s" % key, "SET %s v1" % key,
                                 "GET %s" % key])
        assert ok, replies
        assert replies == [("str", "v0"), ("status", "OK"), ("str", "v1")], replies
        pipe = rc.client(dst).pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.get(key)
        assert pipe.execute()[1] == "v1"
        st2 = probe.stats()
        assert st2["ask"] == st["ask"] + 3 and st2["moved"] == st["moved"], st2
        # finish the migration by hand: the rest of the slot's keys, then
        # the slot's new owner on every primary
        while True:
            rest = rc.client(src).execute_command("CLUSTER", "GETKEYSINSLOT",
                                                  slot, 100)
            if not rest:
                break
            rc.client(src).execute_command("MIGRATE", "127.0.0.1", dst, "", 0,
                                           5000, "KEYS", *rest)
        for p in rc.primaries():
            rc.client(p).execute_command("CLUSTER", "SETSLOT", slot, "NODE",
                                         rc.node_id(dst))
        wait_for(rc.agreed, 30, "the nodes to agree on slot %d" % slot)
        ok, why = write_read(probe, "v0")
        assert ok, why
        assert probe.stats()["moved"] > st2["moved"]  # the old map said src
        check_placement(rc, "v0")

        # 3. reshard 3000 slots from the first primary to the second while
        # pipelines keep writing and reading every key
        src, dst = rc.primaries()[0], rc.primaries()[1]
        before = rc.slot_owners(src)
        moving = rc.reshard(src, dst, 3000)
        rounds = 0
        while moving.poll() is None or rounds < 3:
            rounds += 1
            ok, why = write_read(probe, "r%d" % rounds)
            # nothing is down: every pipeline must get through
            assert ok, "round %d: %s" % (rounds, why)
            assert rounds < 20000, "reshard did not finish"
        assert moving.returncode == 0, open(os.path.join(rc.dir, "reshard.log")).read()
        ok, why = write_read(probe, "final")
        assert ok, why
        st = probe.stats()
        after = rc.slot_owners(dst)
        moved_slots = sum(1 for s in before if before[s] == src and after[s] == dst)
        assert moved_slots >= 2999, moved_slots
        # the fault reached the router: it was redirected and reloaded its map
        assert st["moved"] > 0 and st["map_loads"] >= 2, st
        print("reshard: %d rounds, stats %s" % (rounds, st))
        wait_for(rc.agreed, 30, "the nodes to agree after the reshard")
        check_placement(rc, "final")

        # 4. a pipeline to a stopped primary fails with a reason, no crash
        victim = rc.primaries()[2]
        rc.procs[victim].terminate()
        rc.procs[victim].wait(10)
        ok, why = write_read(probe, "gone")
        assert not ok and "127.0.0.1" in why, why
        probe.close()
        probe = None

        # 5. auto mode on a plain redis-server is standalone: one node, no
        # slot routing, and the database is selected
        wait_for(lambda: subprocess.run(
            ["redis-cli", "-p", str(plain_port), "ping"],
            capture_output=True).returncode == 0, 10, "plain redis")
        probe = Probe(build, plain_port)
        ok, why = write_read(probe, "solo")
        assert ok, why
        st = probe.stats()
        assert st["cluster"] == 0 and st["nodes"] == 1, st
        probe.close()
        probe = None
        # mode on against a plain redis-server is refused with the reason
        probe = Probe(build, plain_port, mode="on")
        ok, why = probe.run(["GET x"])
        assert not ok and "CLUSTER" in why, why
        probe.close()
        probe = None
    finally:
        if probe:
            probe.p.kill()
        plain.terminate()
        plain.wait(10)
        rc.close()


if __name__ == "__main__":
    main(test)
