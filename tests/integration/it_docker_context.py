"""The Dockerfile's build stage configures and prepares its install from what
it copies, without Docker (CI has none).

The build stage sees only what its COPY lines take from the build context,
minus .dockerignore (tests/ among it). This test copies exactly that into
an empty directory, runs the stage's own `cmake -S . -B build ...` command
there, and builds the install files that need no compiler (the installed
npsd.conf, the gzipped man pages): a CMakeLists.txt that needs a file the
image lacks, or an install rule whose source is not copied, fails here
instead of in `docker build`. Compiling is left out to keep the test short;
the other tests compile the same sources.
"""
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import REPO, main  # noqa: E402


def dockerfile_lines():
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    return [ln.strip() for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def ignore_patterns():
    path = os.path.join(REPO, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [p.strip().rstrip("/") for p in f
                if p.strip() and not p.startswith("#")]


def ignored(rel, pats):
    """Docker's rule, enough for ours: a pattern excludes a path when it
    matches the path or one of its parent directories."""
    parts = rel.split("/")
    return any(fnmatch.fnmatch("/".join(parts[:i]), p)
               for p in pats for i in range(1, len(parts) + 1))


def copy_context(src, dst, pats):
    """COPY src dst (relative to the context) into the directory dst."""
    full = os.path.join(REPO, src)
    if os.path.isfile(full):
        if not ignored(os.path.normpath(src), pats):
            os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
            shutil.copy(full, dst)
        return
    for root, dirs, files in os.walk(full):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, REPO)
            if ignored(rel, pats):
                continue
            out = os.path.join(dst, os.path.relpath(path, full))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            shutil.copy(path, out)


def test(build):
    lines = dockerfile_lines()
    froms = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2, "not multi-stage"
    stage = lines[froms[0]:froms[1]]
    workdir = [ln.split()[1] for ln in stage if ln.upper().startswith("WORKDIR ")]
    assert workdir, "the build stage has no WORKDIR"
    pats = ignore_patterns()

    ctx = tempfile.mkdtemp(prefix="npsd-docker-")
    try:
        for ln in stage:
            if not ln.upper().startswith("COPY ") or "--from" in ln:
                continue
            args = [a for a in ln.split()[1:] if not a.startswith("--")]
            srcs, dst = args[:-1], args[-1]
            for s in srcs:
                if os.path.isfile(os.path.join(REPO, s)) and dst.endswith("/"):
                    target = os.path.join(ctx, dst, os.path.basename(s))
                else:  # a directory's contents, or a file to a file
                    target = os.path.join(ctx, dst)
                copy_context(s, target, pats)
        # what ignoring tests/ must not break
        assert not os.path.exists(os.path.join(ctx, "tests")), \
            "tests/ reached the build stage"

        # the stage's own configure command, as written
        runs = " && ".join(ln[4:] for ln in stage
                           if ln.upper().startswith("RUN "))
        cmds = [c.strip() for c in runs.split("&&")]
        configure = [c for c in cmds if c.startswith("cmake -S")]
        assert len(configure) == 1, cmds
        argv = shlex.split(configure[0])
        assert any(c.startswith(("cmake --install",
                                 "DESTDIR=/out cmake --install"))
                   for c in cmds), "the build stage does not cmake --install"
        p = subprocess.run(argv, cwd=ctx, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, "configure in the Docker context:\n" + \
            p.stdout[-3000:] + p.stderr[-3000:]
        bdir = argv[argv.index("-B") + 1]
        p = subprocess.run(["cmake", "--build", bdir, "--target",
                            "npsd_install_files"], cwd=ctx,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, "install files in the Docker context:\n" + \
            p.stdout[-3000:] + p.stderr[-3000:]
        # every file an install rule names exists in the context or build
        with open(os.path.join(ctx, bdir, "cmake_install.cmake")) as f:
            script = f.read()
        named = re.findall(r'\sFILES\s+((?:"[^"]+"\s*)+)', script)
        files = [x for group in named for x in re.findall(r'"([^"]+)"', group)]
        assert files, "no install(FILES) rules found"
        binaries = ("/npsd", "/npsctl", "/npsd.service")
        missing = [x for x in files if not os.path.exists(x)
                   and not x.endswith(binaries)]
        assert not missing, "install sources missing in the Docker " \
            "context: %s" % missing
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


if __name__ == "__main__":
    main(test)
