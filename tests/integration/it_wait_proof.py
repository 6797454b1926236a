"""With redis.wait.replicas = 1, input is committed only once a replica
holds its state: also when its redelivery finds everything applied
already (README "Redis Cluster", redis.wait.replicas).

A Redis Cluster of three primaries with a replica each. The replica of
the node holding the account (not the `{g}` node) is stopped (SIGSTOP)
and usage events are sent: the batch's writes land on the account's
primary and npsd waits there. npsd is killed (kill -9) and another takes
over. It reads the batch again and finds every event counted, so it has
nothing to write on the account's node; its only write is the waiting
global delta on the `{g}` node, whose replica acknowledges it. WAIT covers
only what its own connection wrote, so a WAIT on the account's node alone
would prove nothing. It must not commit while the account's replica is
stopped (a failover then would lose input that Kafka no longer
redelivers). Once the replica runs again (SIGCONT), everything is
committed, counted once, and the replica holds it.
"""
import json
import os
import signal

import redis

from harness import (Stack, committed_sum, counter, epoch_day, main,
                     wait_for, wait_processed)
from rcluster import RedisCluster

NOW = "2026-11-20T12:00:00Z"
TOPICS = ("product.usage",)
ACCT = None  # chosen on a node other than {g}'s


def link_up(r):
    try:
        return r.info("replication").get("master_link_status") == "up"
    except redis.exceptions.ConnectionError:
        return False


def usage(st, first, minute):
    """Five users' sessions today: the same users each time, so the
    active-user counts (and with them health and the ranks) stay as they
    are; only the last activity moves."""
    evs = [{"event_id": "w-%03d" % (first + i), "account_id": ACCT,
            "user_id": "user-%d" % i, "type": "session",
            "occurred_at": "2026-11-20T10:%02d:%02dZ" % (minute, i)}
           for i in range(5)]
    st.produce("product.usage", [(ACCT, json.dumps(e)) for e in evs])
    return [e["event_id"] for e in evs]


def seen(r, ids):
    key = "nps:{%s}:useen:%d" % (ACCT, epoch_day(NOW))
    return all(r.sismember(key, i) for i in ids)


def replica_of(cl, primary):
    for p in cl.ports:
        role = cl.client(p).execute_command("ROLE")
        if role[0] == "slave" and int(role[2]) == primary:
            return p
    raise AssertionError("no replica of %d" % primary)


def test(build):
    global ACCT
    cl = RedisCluster(primaries=3, replicas=1, name="waitproof")
    st = Stack(build, name="waitproof")
    stopped = None
    try:
        owners = cl.slot_owners(cl.primaries()[0])
        g_node = owners[cl.keyslot("nps:{g}:fence")]
        ACCT = next(a for a in ("acct-w%d" % i for i in range(1, 100))
                    if owners[cl.keyslot("nps:{%s}:st" % a)] != g_node)
        primary = owners[cl.keyslot("nps:{%s}:st" % ACCT)]
        pr = cl.client(primary)
        rport = replica_of(cl, primary)
        rr = redis.Redis(port=rport, decode_responses=True,
                         single_connection_client=True)
        rr.execute_command("READONLY")

        sets = ("redis.port=%d" % cl.ports[0], "redis.cluster=on",
                "redis.nodes=" + ",".join("127.0.0.1:%d" % p
                                          for p in cl.ports[1:]),
                "redis.wait.replicas=1", "redis.timeout.ms=2000")
        npsd = st.npsd(*sets, now=NOW, log="npsd-1.log")
        usage(st, 0, 0)
        wait_processed(st, "npsd", TOPICS, timeout=60)
        # the account's global deltas (health, ranks) applied and cleared
        wait_for(lambda: not pr.exists("nps:{%s}:gq" % ACCT), 30,
                 "no global delta waiting")

        # the account's replica stops acknowledging: a WAIT there
        # answers 0 after 1 s
        stopped = cl.procs[rport]
        stopped.send_signal(signal.SIGSTOP)
        ids = usage(st, 100, 30)
        # the batch's writes are on the primary, and npsd waits for them
        wait_for(lambda: seen(pr, ids), 30,
                 "the second batch's writes on the primary")
        wait_for(lambda: any(c.get("cmd") == "wait"
                             for c in pr.client_list()), 30, "npsd in WAIT")
        st.killed(npsd)
        before = committed_sum(st, "npsd", "product.usage")
        assert before == 5, before

        # the next instance reads the batch again: all of it applied
        npsd = st.npsd(*sets, now=NOW, log="npsd-2.log", metrics=True)
        wait_for(lambda: counter(npsd, "npsd_redis_errors_total") >= 2 or
                 committed_sum(st, "npsd", "product.usage") > before, 60,
                 "two failed applies of the redelivered batch")
        done = committed_sum(st, "npsd", "product.usage")
        assert done == before, (
            "committed %d more usage events while no replica held them" % (
                done - before))

        stopped.send_signal(signal.SIGCONT)
        stopped = None
        wait_for(lambda: link_up(rr), 30, "the replica back")
        wait_processed(st, "npsd", TOPICS, timeout=60)
        assert seen(rr, ids), "the replica holds the batch"
        summary = pr.hgetall("nps:{%s}:summary" % ACCT)
        assert summary.get("active_users_7d") == "5", summary
        assert summary.get("last_activity_at") == "2026-11-20T10:30:04Z", \
            summary
        st.stop_clean(npsd)
    except BaseException:
        if stopped is not None:
            stopped.send_signal(signal.SIGCONT)
        st.print_tails()
        raise
    finally:
        st.close()
        cl.close()


if __name__ == "__main__":
    main(test)
