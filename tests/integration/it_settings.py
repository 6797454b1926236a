"""Settings precedence through the real binary (SPEC §8): built-in default
< the file < the environment (NPSD_...) < --set, and a non-default
redis.prefix, redis.db and Redis password really used.

The test's own redis-server requires a password. A settings file names a
wrong password, redis.db 2, redis.prefix "pfile" and low_confidence.n 3;
the environment overrides the password (the right one), redis.db (5) and
redis.prefix ("penv"); --set overrides redis.prefix again ("cs").

  npsd --check-config shows each level winning in turn, the password
  masked and never printed;
  a running npsd with all three writes under cs: in database 5 only
  (nothing under the other prefixes, nothing in databases 0 and 2; the
  Redis user may touch nothing else),
  announces on cs:events, and 4 responses are not low_confidence (the
  file's 3, not the default 50); npsctl account reads the account back
  with the same prefix, database and password."""
import json
import os
import subprocess

import redis

from harness import REPO, Stack, free_port, main, wait_for

NOW = "2026-11-20T12:00:00Z"
PASSWORD = "s3cret-pw-7781"
WRONG = "file-pw-not-this-one"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPSD_")}
    env.update(extra)
    return env


def check_config(st, conf, env, *sets):
    argv = [os.path.join(st.build, "npsd"), "--config", conf]
    for s in sets:
        argv += ["--set", s]
    argv.append("--check-config")
    p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stderr)
    out = {}
    for ln in p.stdout.splitlines():
        k, sep, v = ln.partition(" = ")
        if sep:
            out[k] = v
    assert PASSWORD not in p.stdout + p.stderr, "password printed"
    assert WRONG not in p.stdout + p.stderr, "password printed"
    return out


def pick(c):
    return {k: c.get(k) for k in ("redis.prefix", "redis.db",
                                  "low_confidence.n", "redis.password",
                                  "role_gap.threshold")}


def test(build):
    st = Stack(build, name="settings")
    npsd = None
    try:
        port = free_port()
        st._spawn(["redis-server", "--port", str(port), "--save", "",
                   "--appendonly", "no", "--dir", st.dir, "--bind",
                   "127.0.0.1", "--requirepass", PASSWORD],
                  "redis-auth.log")
        r5 = redis.Redis(port=port, password=PASSWORD, db=5,
                         decode_responses=True)

        def up():
            try:
                return r5.ping()
            except redis.exceptions.ConnectionError:
                return False
        wait_for(up, 10, "password-protected redis-server")
        # no password, no access: the server really requires it
        try:
            redis.Redis(port=port).set("x", "1")
            raise AssertionError("redis accepted a command without AUTH")
        except redis.exceptions.AuthenticationError:
            pass
        except redis.exceptions.ResponseError as e:
            assert "NOAUTH" in str(e), e

        # from here on, the password's user may touch only keys and
        # channels under cs: (the prefix the running npsd gets): a key
        # npsd wrote or read outside its prefix would fail with NOPERM
        r5.execute_command("ACL", "SETUSER", "default", "resetkeys", "~cs:*",
                           "resetchannels", "&cs:*")

        conf = os.path.join(st.dir, "npsd-test.conf")
        with open(conf, "w") as f:
            f.write("# settings file of it_settings\n"
                    "kafka.bootstrap.servers = %s\n"
                    "kafka.session.timeout.ms = 6000\n"
                    "redis.port = %d\n"
                    "redis.password = %s\n"
                    "redis.db = 2\n"
                    "redis.prefix = pfile\n"
                    "low_confidence.n = 3\n"
                    "batch.wait.ms = 5\n"
                    "http.listen =\n" % (st.bootstrap, port, WRONG))
        env = clean_env(NPSD_REDIS_PASSWORD=PASSWORD, NPSD_REDIS_DB="5",
                        NPSD_REDIS_PREFIX="penv")

        # ---- --check-config: each level in turn
        c = check_config(st, conf, clean_env())
        assert (c["redis.prefix"], c["redis.db"], c["low_confidence.n"],
                c["redis.password"]) == ("pfile", "2", "3", "****"), pick(c)
        assert c["role_gap.threshold"] == "15", pick(c)     # built-in default
        c = check_config(st, conf, env)
        assert (c["redis.prefix"], c["redis.db"], c["low_confidence.n"],
                c["redis.password"]) == ("penv", "5", "3", "****"), pick(c)
        c = check_config(st, conf, env, "redis.prefix=cs")
        assert (c["redis.prefix"], c["redis.db"], c["low_confidence.n"],
                c["redis.password"]) == ("cs", "5", "3", "****"), pick(c)
        c = check_config(st, conf, env, "redis.prefix=cs", "redis.db=7")
        assert c["redis.db"] == "7", pick(c)

        # ---- a running instance with all three levels
        ps = r5.pubsub()
        ps.subscribe("cs:events")
        wait_for(lambda: ps.get_message(timeout=0.2), 10, "subscribed")
        npsd = st._spawn([os.path.join(st.build, "npsd"), "--config", conf,
                          "--set", "redis.prefix=cs", "--now", NOW],
                         "npsd.log", env=env)
        rs = [{"event_id": "s-%d" % i, "account_id": "acct-s",
               "user_id": "su-%d" % i, "score": sc,
               "submitted_at": "2026-11-20T0%d:00:00Z" % i}
              for i, sc in enumerate((10, 9, 8, 3))]
        st.produce("nps.responses", [("acct-s", json.dumps(r)) for r in rs])

        def counted():
            return r5.hget("cs:{acct-s}:w:90d", "responses") == "4"
        wait_for(counted, 60, "4 responses under cs: in db 5")
        h = r5.hgetall("cs:{acct-s}:w:90d")
        # NPS 100 x (2 - 1) / 4 = 25.0; n = 4 >= 3 (the file's
        # low_confidence.n): not low confidence (the default 50 would say 1)
        assert (h["nps"], h["low_confidence"]) == ("25", "0"), h
        # everything under cs:, in database 5 only
        keys = r5.keys("*")
        assert keys and all(k.startswith("cs:") for k in keys), keys
        for db in (0, 2):
            other = redis.Redis(port=port, password=PASSWORD, db=db)
            assert other.dbsize() == 0, "db %d has %s" % (
                db, other.keys("*")[:5])
        # the pub/sub channel follows the prefix
        msgs = []

        def announced():
            m = ps.get_message(timeout=0.2)
            if m and m["type"] == "message":
                msgs.append(json.loads(m["data"]))
            return any(x.get("account_id") == "acct-s" for x in msgs)
        wait_for(announced, 30, "a notice on cs:events")

        # npsctl reads it back with the same prefix, database and password
        args = ("--redis-port", str(port), "--redis-password", PASSWORD,
                "--redis-db", "5", "--prefix", "cs")
        js = json.loads(st.npsctl("account", "acct-s", "--json",
                                  *args).stdout)
        assert js["summary"]["nps_90d"] == "25", js["summary"]
        assert js["summary"] == r5.hgetall("cs:{acct-s}:summary")
        txt = st.npsctl("account", "acct-s", *args).stdout
        assert "acct-s" in txt and "25" in txt, txt
        # ... and finds nothing under the default prefix or another db
        p = st.npsctl("account", "acct-s", "--redis-port", str(port),
                      "--redis-password", PASSWORD, "--redis-db", "5",
                      check=False)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        p = st.npsctl("account", "acct-s", "--redis-port", str(port),
                      "--redis-password", PASSWORD, "--prefix", "cs",
                      check=False)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)

        st.wait_log(npsd, "partitions assigned", 60)
        st.stop_clean(npsd)
        npsd = None
        ps.close()
    finally:
        st.close()


if __name__ == "__main__":
    main(test)
