"""The Debian package, installed for real (needs root; CI runs as root).

Builds npsd_<version>_<arch>.deb with cpack from the build directory given
(twice: the version and a later Debian revision, for the upgrade), checks
its control data, installs it with `dpkg -i` and checks what an operator
gets: the binaries, the man pages (rendering without a warning), the
systemd unit (`systemd-analyze verify`), the configuration and lexicon in
/etc/npsd (readable by the system user npsd only), and the installed npsd
running as that user with the installed configuration, against a real
redis-server and the development broker: a comment is tagged with a theme
added to /etc/npsd/themes.conf, so the installed configuration points at
the installed lexicon. Changed conffiles survive an upgrade. `dpkg -r` then
`dpkg -P` must leave nothing behind: no file of the package, no /etc/npsd,
no user or group npsd, no statoverride, no link left by `systemctl enable`.

Works with a sanitizer build too (its runtime is a Depends then). Exits 77
(skipped) when not run as root.
"""
import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, Stack, main, read_topic, wait_for  # noqa: E402

SKIP = 77
CONFDIR = "/etc/npsd"
UNIT = "/usr/lib/systemd/system/npsd.service"
MAN = ["/usr/share/man/man8/npsd.8.gz", "/usr/share/man/man1/npsctl.1.gz"]
WANTS = "/etc/systemd/system/multi-user.target.wants/npsd.service"
BINS = ["/usr/bin/npsd", "/usr/bin/npsctl"]
# a theme of our own: the built-in lexicon does not know the word
THEME_LINE = "zz_installed = flibbertigibbet\n"


def run(argv, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (
            " ".join(argv), p.returncode, p.stdout, p.stderr))
    return p


def cache_value(build, name):
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        for ln in f:
            if ln.startswith(name + ":"):
                return ln.split("=", 1)[1].strip()
    return None


def dpkg_status(pkg):
    p = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg], check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def statoverride(path):
    return run(["dpkg-statoverride", "--list", path], check=False).stdout


def build_deb(build, out, revision=None):
    """cpack -G DEB into out; returns the .deb's path."""
    cpack = cache_value(build, "CMAKE_CPACK_COMMAND") or "cpack"
    argv = [cpack, "-G", "DEB", "--config",
            os.path.join(build, "CPackConfig.cmake"), "-B", out]
    if revision:
        argv += ["-D", "CPACK_DEBIAN_PACKAGE_RELEASE=%s" % revision]
    run(argv)
    debs = [f for f in os.listdir(out) if f.endswith(".deb")]
    assert len(debs) == 1, debs
    return os.path.join(out, debs[0])


def check_config_as_npsd(cwd):
    """The installed npsd --check-config as the user npsd, reading the
    installed configuration. Returns {key: value}."""
    p = run(["setpriv", "--reuid=npsd", "--regid=npsd", "--init-groups",
             "--", BINS[0], "--config", CONFDIR + "/npsd.conf",
             "--check-config"], cwd=cwd, env=clean_env())
    out = {}
    for ln in p.stdout.splitlines():
        k, sep, v = ln.partition(" = ")
        if sep:
            out[k] = v
        elif ln.endswith(" ="):
            out[ln[:-2]] = ""
    return out


def clean_env():
    """PATH and the sanitizer options only: no NPSD_* from the caller."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


def package_paths(deb):
    """Paths the package ships (files, and directories it alone owns)."""
    p = run(["dpkg-deb", "-c", deb])
    paths = []
    for ln in p.stdout.splitlines():
        path = ln.split()[-1].lstrip(".").rstrip("/")
        if path:
            paths.append(path)
    return paths


def check_control(deb, version):
    name = os.path.basename(deb)
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    assert name == "npsd_%s_%s.deb" % (version, arch), name
    f = lambda field: run(["dpkg-deb", "-f", deb, field]).stdout.strip()
    assert f("Package") == "npsd"
    assert f("Version") == version, f("Version")
    deps = [d.strip().split()[0] for d in f("Depends").split(",")]
    for lib in ("librdkafka1", "libjansson4", "libhiredis0.14",
                "libmicrohttpd12", "libc6", "adduser"):
        assert lib in deps, "Depends lacks %s: %s" % (lib, f("Depends"))
    tmp = tempfile.mkdtemp(prefix="npsd-ctrl-")
    try:
        run(["dpkg-deb", "-e", deb, tmp])
        with open(os.path.join(tmp, "conffiles")) as fh:
            conffiles = fh.read().split()
        assert CONFDIR + "/npsd.conf" in conffiles, conffiles
        assert CONFDIR + "/themes.conf" in conffiles, conffiles
        for s in ("postinst", "prerm", "postrm"):
            mode = os.stat(os.path.join(tmp, s)).st_mode & 0o777
            assert mode == 0o755, "%s mode %o" % (s, mode)
    finally:
        shutil.rmtree(tmp)
    paths = package_paths(deb)
    for p in BINS + MAN + [UNIT, CONFDIR + "/npsd.conf",
                           CONFDIR + "/themes.conf",
                           "/usr/share/doc/npsd/README.md"]:
        assert p in paths, "%s not in the package" % p
    return paths


def check_installed(version):
    assert dpkg_status("npsd") == "ii", dpkg_status("npsd")
    assert run(["dpkg-query", "-W", "-f=${Version}", "npsd"]).stdout == \
        version
    u = pwd.getpwnam("npsd")
    assert u.pw_uid < 1000, "npsd is not a system user: uid %d" % u.pw_uid
    assert u.pw_shell.endswith("nologin"), u.pw_shell
    assert not os.path.exists(u.pw_dir), "home %s created" % u.pw_dir
    g = grp.getgrnam("npsd")
    assert u.pw_gid == g.gr_gid
    for b in BINS:
        assert os.access(b, os.X_OK), b
    # the configuration may hold passwords: root and group npsd only
    st = os.stat(CONFDIR + "/npsd.conf")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, g.gr_gid,
                                                          0o640), \
        (st.st_uid, st.st_gid, oct(st.st_mode))
    # kept by dpkg across upgrades (a plain chmod would be undone)
    assert statoverride(CONFDIR + "/npsd.conf").split() == [
        "root", "npsd", "640", CONFDIR + "/npsd.conf"], \
        statoverride(CONFDIR + "/npsd.conf")
    # man pages: in place (gzipped), found by man, no groff warning
    for page in MAN:
        with open(page, "rb") as f:
            assert f.read(2) == b"\x1f\x8b", page + " is not gzipped"
        p = run(["sh", "-c", 'zcat "$1" | groff -man -ww -z', "sh", page])
        assert p.stdout == "" and p.stderr == "", (page, p.stderr)
    for sec, name in (("8", "npsd"), ("1", "npsctl")):
        p = run(["man", "-w", sec, name])
        assert p.stdout.strip() == "/usr/share/man/man%s/%s.%s.gz" % (
            sec, name, sec), p.stdout
        p = run(["man", "-P", "cat", sec, name], env=dict(
            clean_env(), MANWIDTH="80", LANG="C.UTF-8"))
        assert "EXIT STATUS" in p.stdout and "FILES" in p.stdout, name
    # the unit: systemd accepts it (its ExecStart binary and
    # Documentation man pages must exist for that)
    p = run(["systemd-analyze", "verify", UNIT], check=False)
    assert p.returncode == 0 and not p.stderr.strip(), \
        "systemd-analyze verify:\n" + p.stdout + p.stderr
    with open(UNIT) as f:
        unit = f.read()
    directives = dict(ln.split("=", 1) for ln in unit.splitlines()
                      if "=" in ln and not ln.startswith("#"))
    assert directives["ExecStart"].split()[:3] == [
        BINS[0], "--config", CONFDIR + "/npsd.conf"], directives["ExecStart"]
    assert directives["User"] == "npsd", directives
    assert directives["Type"] in ("exec", "notify"), directives["Type"]
    assert "-HUP" in directives["ExecReload"], directives["ExecReload"]
    assert directives["Restart"] == "on-failure"
    for k, v in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                 ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes")):
        assert directives.get(k) == v, (k, directives.get(k))
    assert "SystemCallFilter" in directives and \
        "RestrictAddressFamilies" in directives


def run_installed(build, want_log_level):
    """The installed npsd as user npsd with the installed configuration,
    against a private redis-server and the development broker: a detractor
    whose comment only the theme added to /etc/npsd/themes.conf knows comes
    out tagged with it, and SIGTERM stops it with status 0."""
    st = Stack(build, name="package")
    try:
        # the user npsd must be able to write its log and enter its cwd
        log_path = os.path.join(st.dir, "npsd-installed.log")
        log = open(log_path, "ab")
        p = subprocess.Popen(
            [BINS[0], "--config", CONFDIR + "/npsd.conf",
             "--set", "kafka.bootstrap.servers=" + st.bootstrap,
             "--set", "redis.port=%d" % st.redis_port,
             "--set", "http.listen=",
             "--set", "kafka.session.timeout.ms=6000",
             "--now", "2026-11-20T12:00:00Z"],
            stdout=log, stderr=subprocess.STDOUT, cwd="/", env=clean_env(),
            user="npsd", group="npsd", extra_groups=[])
        p.logname = log_path
        st.procs.append(p)
        resp = {"event_id": "pkg-1", "account_id": "acme", "user_id": "u1",
                "score": 2, "submitted_at": "2026-11-20T10:00:00Z",
                "comment": "The flibbertigibbet ate my report"}
        st.produce("nps.responses", [("acme", json.dumps(resp))])
        wait_for(lambda: read_topic(st, "nps.detractors", timeout=10) or
                 p.poll() is not None, 60, "the classified detractor")
        assert p.poll() is None, "installed npsd exited %s:\n%s" % (
            p.returncode, st.log(p)[-3000:])
        out = [json.loads(m.value()) for m in
               read_topic(st, "nps.detractors")]
        assert [m["event_id"] for m in out] == ["pkg-1"], out
        assert "zz_installed" in out[0]["themes"], out[0]["themes"]
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
        text = st.log(p)
        assert rc == 0, "exit %s on SIGTERM:\n%s" % (rc, text[-3000:])
        assert "level=error" not in text, text[-3000:]
        if want_log_level == "warn":
            assert "level=info" not in text, "log.level from the file unused"
    finally:
        st.close()


def purge_quietly():
    """Leaves the machine as found after a failure half-way."""
    if dpkg_status("npsd"):
        run(["dpkg", "-P", "npsd"], check=False)
    for cmd in (["userdel", "npsd"], ["groupdel", "npsd"]):
        run(cmd, check=False)
    if os.path.islink(WANTS):
        os.unlink(WANTS)


def test(build):
    build = os.path.abspath(build)
    # a machine that already has npsd cannot show that we leave nothing
    assert not dpkg_status("npsd"), "package npsd already on this machine"
    assert not os.path.exists(CONFDIR), CONFDIR + " already exists"
    assert not user_exists("npsd") and not group_exists("npsd"), \
        "user or group npsd already exists"
    for tool in ("dpkg-shlibdeps", "systemd-analyze", "groff", "man",
                 "setpriv"):
        assert shutil.which(tool), "%s missing (scripts/install-deps.sh)" \
            % tool

    version = cache_value(build, "CMAKE_PROJECT_VERSION")
    work = tempfile.mkdtemp(prefix="npsd-package-")
    try:
        t0 = time.time()
        deb1 = build_deb(build, os.path.join(work, "v1"))
        deb2 = build_deb(build, os.path.join(work, "v2"), revision="2")
        print("packages built in %.1fs: %s (%d bytes)" % (
            time.time() - t0, os.path.basename(deb1), os.path.getsize(deb1)))
        paths = check_control(deb1, version)
        check_control(deb2, version + "-2")

        run(["dpkg", "-i", deb1])
        check_installed(version)
        conf = check_config_as_npsd(work)
        assert conf["themes.file"] == CONFDIR + "/themes.conf", conf
        assert conf["log.level"] == "info", conf

        # the operator changes both conffiles, then upgrades
        with open(CONFDIR + "/npsd.conf") as f:
            text = f.read()
        text, n = re.subn(r"(?m)^log\.level = info$", "log.level = warn",
                          text)
        assert n == 1, "no 'log.level = info' line in the installed file"
        with open(CONFDIR + "/npsd.conf", "w") as f:
            f.write(text)
        with open(CONFDIR + "/themes.conf", "a") as f:
            f.write(THEME_LINE)
        run(["dpkg", "-i", "--force-confdef", "--force-confold", deb2],
            stdin=subprocess.DEVNULL)
        check_installed(version + "-2")
        conf = check_config_as_npsd(work)
        assert conf["log.level"] == "warn", \
            "the changed npsd.conf was not kept on upgrade"
        with open(CONFDIR + "/themes.conf") as f:
            assert THEME_LINE in f.read(), \
                "the changed themes.conf was not kept on upgrade"

        run_installed(build, "warn")

        # the operator enabled the service (offline: no systemd running)
        run(["systemctl", "enable", "npsd.service"])
        assert os.path.islink(WANTS), WANTS

        # remove: the program goes, configuration and user stay
        run(["dpkg", "-r", "npsd"])
        assert dpkg_status("npsd") == "rc", dpkg_status("npsd")
        for p in BINS + MAN + [UNIT, "/usr/share/doc/npsd"]:
            assert not os.path.exists(p), "%s left after dpkg -r" % p
        assert os.path.exists(CONFDIR + "/npsd.conf")
        assert user_exists("npsd")

        # purge: nothing left
        run(["dpkg", "-P", "npsd"])
        assert dpkg_status("npsd") == "", dpkg_status("npsd")
        left = [p for p in paths if p.startswith((CONFDIR, "/usr/share/doc/npsd"))
                or not os.path.isdir(p)]
        left = [p for p in left if os.path.lexists(p)]
        assert not left, "left behind: %s" % left
        assert not os.path.exists(CONFDIR), os.listdir(CONFDIR)
        assert not user_exists("npsd"), "user npsd left behind"
        assert not group_exists("npsd"), "group npsd left behind"
        assert not statoverride(CONFDIR + "/npsd.conf"), \
            "statoverride left behind"
        assert not os.path.lexists(WANTS), WANTS + " left behind"
    except BaseException:
        purge_quietly()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIPPED %s: needs root (dpkg -i installs system-wide)" %
              os.path.basename(sys.argv[0]))
        sys.exit(SKIP)
    main(test)
