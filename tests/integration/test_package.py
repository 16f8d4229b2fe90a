"""The Debian package on this machine: `make deb`, lintian, dpkg -i, the init script
(start, proxy, reload with a good and with a bad file, log rotation, stop), the systemd
unit through `systemd-analyze verify`, and a purge that leaves the machine as it was.

It installs a package, so it runs only as root and only when asked: CI=true (CI sets it)
or ROUTERD_PACKAGE_TEST=1.  Otherwise it says why it did nothing."""
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import harness

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INIT = "/etc/init.d/routerd"
CONF = "/etc/routerd/routerd.yaml"
DAEMON = "/usr/sbin/routerd"
PIDFILE = "/run/routerd/routerd.pid"
ACCESS_LOG = "/var/log/routerd/access.log"
POLICY = "/usr/sbin/policy-rc.d"


def _ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_reason():
    if os.environ.get("SAN") == "1":
        return "the package is built without sanitizers: it is tested in the plain pass"
    if os.geteuid() != 0:
        return "not root (dpkg -i and the init script need root)"
    if not _ci() and os.environ.get("ROUTERD_PACKAGE_TEST") != "1":
        return "installs a package: runs in CI (CI=true) or with ROUTERD_PACKAGE_TEST=1"
    st = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "routerd"],
                        capture_output=True, text=True)
    if "installed" in st.stdout or "config-files" in st.stdout:
        return "a routerd package is already on this machine (%s); not touching it" % st.stdout
    if os.path.exists("/etc/routerd"):
        return "/etc/routerd exists (make install?); not overwriting it"
    return None


def run(args, timeout=120, check=True, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                     p.stdout[-4000:], p.stderr[-4000:]))
    return p


def daemon_pids():
    """Processes of the packaged binary (not the ones other tests run from build/)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % d) == DAEMON:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def uid_of(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def master_pid():
    with open(PIDFILE) as f:
        return int(f.read().strip())


def config(port, backend):
    return ("listen:\n  - address: 127.0.0.1:%d\nworkers: 2\nuser: routerd\ngroup: routerd\n"
            "access_log: %s\nhealth:\n  type: none\nbackends:\n"
            "  - { name: %s, address: %s }\n" % (port, ACCESS_LOG, backend.name, backend.addr))


def write_conf(text):
    with open(CONF, "w") as f:
        f.write(text)


def served_by(port):
    st, hdrs, _ = harness.request(port, "GET", "/x", timeout=5)
    return st, hdrs.get("x-backend")


def wait_for(what, fn, timeout=10.0):
    end = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def build_deb(outdir):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SAN")}
    env["DEB_BUILD_OPTIONS"] = "noddebs parallel=%d" % (os.cpu_count() or 1)
    run(["make", "-C", TOP, "--no-print-directory", "deb", "BUILD=" + outdir], timeout=300,
        env=env)
    debs = [f for f in os.listdir(os.path.join(outdir, "deb"))
            if f.startswith("routerd_") and f.endswith(".deb")]
    assert len(debs) == 1, debs
    return os.path.join(outdir, "deb", debs[0])


def test_package(env):
    why = skip_reason()
    if why:
        env.skip(why)
    t0 = time.time()
    build = tempfile.mkdtemp(prefix="routerd-deb-")
    had_user = True
    try:
        pwd.getpwnam("routerd")
    except KeyError:
        had_user = False
    had_rundir = os.path.exists("/run/routerd")
    own_policy = False
    try:
        deb = build_deb(build)
        print("  deb built in %.1fs: %s" % (time.time() - t0, os.path.basename(deb)), flush=True)
        if shutil.which("lintian"):
            p = run(["lintian", "--fail-on", "error,warning", deb], check=False)
            assert p.returncode == 0, "lintian:\n" + p.stdout + p.stderr
        else:
            # a partial skip: fine here, not in CI, which installs lintian
            assert not _ci(), "lintian missing under CI=true (packaging/build-deps.sh installs it)"
            print("  note: lintian is not installed; the package is not linted", flush=True)

        # dpkg -i must not start the service with the shipped config: we start it ourselves
        if not os.path.exists(POLICY):
            with open(POLICY, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(POLICY, 0o755)
            own_policy = True
        p = run(["dpkg", "-i", deb], check=False, env=dict(os.environ,
                                                            DEBIAN_FRONTEND="noninteractive"))
        if p.returncode != 0:
            run(["apt-get", "install", "-f", "-y", "-q"],
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if own_policy:
            os.unlink(POLICY)
            own_policy = False
        if daemon_pids():
            run([INIT, "stop"])

        # what the package put in place
        for path in (DAEMON, "/usr/sbin/routerctl", INIT, CONF,
                     "/lib/systemd/system/routerd.service", "/etc/logrotate.d/routerd",
                     "/usr/share/man/man8/routerd.8.gz", "/usr/share/man/man8/routerctl.8.gz",
                     "/usr/share/man/man5/routerd.yaml.5.gz"):
            assert os.path.exists(path), path + " is missing"
        conffiles = run(["dpkg-query", "-W", "-f", "${Conffiles}", "routerd"]).stdout
        assert CONF in conffiles, conffiles
        pw = pwd.getpwnam("routerd")
        assert pw.pw_uid < 1000 and pw.pw_shell.endswith("nologin"), pw
        st = os.stat("/var/log/routerd")
        assert st.st_uid == pw.pw_uid and grp.getgrgid(st.st_gid).gr_name == "adm"
        run([DAEMON, "-t", "-f", CONF])  # the shipped config is valid

        if shutil.which("systemd-analyze"):
            args = ["systemd-analyze", "verify"]
            if not shutil.which("man"):
                args.append("--man=no")
            run(args + ["/lib/systemd/system/routerd.service"])
        else:
            print("  note: systemd-analyze is not installed; routerd.service not verified",
                  flush=True)

        # start through the init script, proxy a request
        a, b = env.backend("pkg-a"), env.backend("pkg-b")
        port = harness.free_port()
        write_conf(config(port, a))
        run([INIT, "start"])
        harness.wait_port(port)
        assert served_by(port) == (200, "pkg-a")
        master = master_pid()
        assert uid_of(master) == 0

        def kids_are_routerd():
            kids = [k for k in daemon_pids() if k != master]
            return kids and all(uid_of(k) == pw.pw_uid for k in kids)
        wait_for("the children to run as routerd (user: routerd)", kids_are_routerd,
                 timeout=5)
        run([INIT, "status"])
        run([INIT, "start"])  # already running: still fine
        assert master_pid() == master

        # reload with a good file: the new backend takes over, same master
        write_conf(config(port, b))
        run([INIT, "reload"])
        wait_for("the reloaded config", lambda: served_by(port) == (200, "pkg-b"))
        assert master_pid() == master

        # reload and restart with a bad file: refused, the running config keeps serving
        write_conf(config(port, b) + "workers: many\n")
        p = run([INIT, "reload"], check=False)
        assert p.returncode != 0, "reload accepted a bad config:\n" + p.stdout + p.stderr
        assert "%s:" % CONF in p.stderr, "reload should print routerd's errors:\n" + p.stderr
        p = run([INIT, "restart"], check=False)
        assert p.returncode != 0, "restart accepted a bad config"
        for _ in range(20):
            assert served_by(port) == (200, "pkg-b")
        assert master_pid() == master and master in daemon_pids()
        write_conf(config(port, b))

        # log rotation as /etc/logrotate.d/routerd does it: a new file, then postrotate
        wait_for("access log lines", lambda: os.path.exists(ACCESS_LOG) and
                 os.path.getsize(ACCESS_LOG) > 0)
        if shutil.which("logrotate"):
            state = os.path.join(build, "logrotate.state")
            run(["logrotate", "-f", "-s", state, "/etc/logrotate.d/routerd"])
        else:
            assert not _ci(), "logrotate missing under CI=true (packaging/build-deps.sh installs it)"
            print("  note: logrotate is not installed; running its steps by hand", flush=True)
            os.rename(ACCESS_LOG, ACCESS_LOG + ".1")
            open(ACCESS_LOG, "w").close()
            os.chown(ACCESS_LOG, pw.pw_uid, grp.getgrnam("adm").gr_gid)
            text = open("/etc/logrotate.d/routerd").read()
            script = text.split("postrotate", 1)[1].split("endscript", 1)[0]
            run(["sh", "-ec", script])
        assert os.path.exists(ACCESS_LOG + ".1") and os.path.getsize(ACCESS_LOG) == 0

        def new_lines():
            served_by(port)
            return os.path.getsize(ACCESS_LOG) > 0
        wait_for("requests logged to the new access log after postrotate "
                 "(routerctl log reopen / SIGUSR1)", new_lines, timeout=5)

        # stop: nothing of routerd is left
        run([INIT, "stop"])
        wait_for("every routerd process to exit", lambda: not daemon_pids(), timeout=5)
        assert not os.path.exists(PIDFILE)
        p = run([INIT, "status"], check=False)
        assert p.returncode == 3, "status of a stopped routerd: %d" % p.returncode
        try:
            harness.request(port, "GET", "/x", timeout=1)
            raise AssertionError("port %d still answers after stop" % port)
        except OSError:
            pass
    finally:
        if own_policy:
            os.unlink(POLICY)
        if os.path.exists(INIT) and daemon_pids():
            run([INIT, "stop"], check=False)
        for pid in daemon_pids():
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        run(["dpkg", "--purge", "routerd"], check=False)
        if not had_user:
            run(["deluser", "--quiet", "--system", "routerd"], check=False)
            run(["delgroup", "--quiet", "--system", "routerd"], check=False)
        shutil.rmtree(build, ignore_errors=True)
        if not had_rundir and os.path.isdir("/run/routerd"):
            shutil.rmtree("/run/routerd", ignore_errors=True)
        print("  package test took %.1fs" % (time.time() - t0), flush=True)
    # the purge put everything back
    assert not os.path.exists("/etc/routerd") and not os.path.exists("/var/log/routerd")
    assert not os.path.exists(INIT) and not os.path.exists(DAEMON)
    st = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "routerd"],
                        capture_output=True, text=True)
    assert "installed" not in st.stdout and "config-files" not in st.stdout, st.stdout
