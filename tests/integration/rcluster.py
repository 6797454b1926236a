"""A real Redis Cluster for the integration tests: N primaries (and
replicas per primary) of redis-server --cluster-enabled yes on free
loopback ports, joined with redis-cli --cluster create. Nothing is mocked.
"""
import os
import random
import shutil
import socket
import subprocess
import tempfile

import redis

from harness import wait_for


def free_cluster_port():
    """A free port whose cluster bus port (port + 10000) is free too; Redis
    refuses ports above 55535 for that reason."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair for a cluster node")


class RedisCluster:
    def __init__(self, primaries=3, replicas=0, name="cluster"):
        self.dir = tempfile.mkdtemp(prefix="npsd-%s-" % name)
        self.procs = {}
        self.ports = []
        while len(self.ports) < primaries * (1 + replicas):
            port = free_cluster_port()
            if port not in self.ports:
                self.ports.append(port)
        try:
            self._create(replicas)
        except BaseException:
            self.close()  # no node outlives a cluster that failed to form
            raise

    def _create(self, replicas):
        for port in self.ports:
            self.start_node(port)
        addrs = ["127.0.0.1:%d" % p for p in self.ports]
        out = subprocess.run(
            ["redis-cli", "--cluster", "create"] + addrs +
            ["--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        for port in self.ports:
            wait_for(lambda p=port: self.state_ok(p), 30,
                     "cluster_state:ok on %d" % port)
        # every node must agree on the whole slot map before tests start
        wait_for(self.agreed, 30, "every node knows every slot")

    def start_node(self, port):
        ndir = os.path.join(self.dir, str(port))
        os.makedirs(ndir, exist_ok=True)
        log = open(os.path.join(ndir, "redis.log"), "ab")
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
             "--cluster-config-file", os.path.join(ndir, "nodes.conf"),
             "--save", "", "--appendonly", "no", "--dir", ndir],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._ping(port), 10, "redis-server on %d" % port)

    def client(self, port):
        return redis.Redis(port=port, decode_responses=True)

    def _ping(self, port):
        try:
            return self.client(port).ping()
        except redis.exceptions.ConnectionError:
            return False

    def state_ok(self, port):
        try:
            return "cluster_state:ok" in self.client(port).execute_command(
                "CLUSTER", "INFO")
        except redis.exceptions.ConnectionError:
            return False

    def slot_owners(self, port):
        """slot -> primary port, as one node sees it."""
        owners = {}
        for lo, hi, primary, *_ in self.client(port).execute_command(
                "CLUSTER", "SLOTS"):
            for s in range(lo, hi + 1):
                owners[s] = int(primary[1])
        return owners

    def agreed(self):
        maps = [self.slot_owners(p) for p in self.primaries()]
        return all(len(m) == 16384 and m == maps[0] for m in maps)

    def primaries(self):
        out = []
        for p in self.ports:
            if self.procs[p].poll() is not None:
                continue
            try:
                role = self.client(p).execute_command("ROLE")[0]
            except redis.exceptions.ConnectionError:
                continue
            if role == "master":
                out.append(p)
        return out

    def node_id(self, port):
        return self.client(port).execute_command("CLUSTER", "MYID")

    def keyslot(self, key):
        return self.client(self.primaries()[0]).execute_command(
            "CLUSTER", "KEYSLOT", key)

    def reshard(self, src, dst, slots):
        """Starts redis-cli --cluster reshard (moves `slots` slots from the
        primary on port src to the one on dst); returns the process."""
        log = open(os.path.join(self.dir, "reshard.log"), "ab")
        return subprocess.Popen(
            ["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % src,
             "--cluster-from", self.node_id(src),
             "--cluster-to", self.node_id(dst),
             "--cluster-slots", str(slots), "--cluster-yes",
             "--cluster-pipeline", "5"],
            stdout=log, stderr=subprocess.STDOUT)

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if os.environ.get("IT_KEEP_DIRS"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
