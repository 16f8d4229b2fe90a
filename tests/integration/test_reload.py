"""Hot reload under load (issue 4 point 3, DESIGN "Processes"): a load generator runs while
routerd is reloaded 20 times by SIGHUP and a few times by `routerctl reload`, each reload
changing weights and the backend set; no request may fail because of a reload, the final
config is the one in effect, and no worker of an old generation is left behind."""
import http.client
import json
import os
import re
import signal
import subprocess
import time

from harness import proc_title, request
from test_resilience import Load, figure, wait_until

ROUTERCTL = os.environ.get("ROUTERCTL", os.path.abspath("build/routerctl"))
WORKERS = 2


def _conf_text(r, members, extra=""):
    """members: [(backend, weight)].  The listener, pidfile and control socket stay."""
    lines = ["listen:", "  - address: 127.0.0.1:%d" % r.port, "workers: %d" % WORKERS,
             "strategy: weighted", "health:", "  type: none",
             "pidfile: %s" % r.pidfile, "control:", "  socket: %s" % r.ctlsock,
             "timeout:", "  drain: 5s", "backends:"]
    for b, w in members:
        lines.append("  - { name: %s, address: %s, weight: %d }" % (b.name, b.addr, w))
    return "\n".join(lines) + "\n" + extra


def _write_conf(r, text):
    """Replace the config file in one step (rename), as an editor or a deploy tool does."""
    tmp = r.conf + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, r.conf)


def _worker_pids(r):
    out = subprocess.run(["pgrep", "-P", str(r.p.pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split() if "routerd: worker" in proc_title(int(x))]


def _reload_lines(r):
    return [ln for ln in r.output().splitlines() if "reload" in ln]


def _ctl(r, *args):
    return subprocess.run([ROUTERCTL, "-s", r.ctlsock] + list(args), capture_output=True,
                          text=True, timeout=15)


def _start(env, members):
    # Router writes LISTEN, the pidfile and the control socket into the text for us
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % WORKERS,
             "strategy: weighted", "health:", "  type: none", "timeout:", "  drain: 5s",
             "backends:"]
    for b, w in members:
        lines.append("  - { name: %s, address: %s, weight: %d }" % (b.name, b.addr, w))
    r = env.router("\n".join(lines) + "\n")
    wait_until(lambda: os.path.exists(r.ctlsock), 5, "the control socket")
    wait_until(lambda: len(_worker_pids(r)) == WORKERS, 5, "the first workers")
    return r


def test_reload_under_load(env):
    bs = [env.backend("b%d" % i) for i in range(1, 5)]
    b1, b2, b3, b4 = bs
    r = _start(env, [(b1, 1), (b2, 1), (b3, 1)])
    first_workers = set(_worker_pids(r))

    # 24 reloads: 20 by SIGHUP, 4 by routerctl; the set rotates through 2..4 of the
    # four backends, weights change every time; never an empty set
    plan = []
    for i in range(24):
        k = 2 + i % 3
        members = [(bs[(i + j) % 4], 1 + (i * 7 + j * 3) % 9) for j in range(k)]
        plan.append(("ctl" if i % 6 == 4 else "hup", members))
    final = [(b1, 1), (b3, 3)]
    plan[-1] = ("hup", final)
    assert sum(1 for how, _ in plan if how == "hup") == 20

    load = Load(r.port, threads=4, seconds=12.0, path="/reload")
    t_begin = time.time()
    took = []
    errors = []
    gen = 1
    peak = 0
    for how, members in plan:
        t0 = time.time()
        _write_conf(r, _conf_text(r, members))
        gen += 1
        if how == "hup":
            r.p.send_signal(signal.SIGHUP)
            pat = re.compile(r"reload: .*: generation %d, " % gen)
            try:
                wait_until(lambda: any(pat.search(ln) for ln in _reload_lines(r)), 3,
                           "reload to generation %d" % gen)
            except AssertionError as e:
                errors.append("%s\n%s" % (e, "\n".join(_reload_lines(r)[-5:])))
                break
        else:
            p = _ctl(r, "reload")
            if p.returncode != 0 or not p.stdout.startswith("reloaded"):
                errors.append("routerctl reload: rc %d %s%s" % (p.returncode, p.stdout,
                                                                p.stderr))
                break
        took.append(time.time() - t0)
        peak = max(peak, len(_worker_pids(r)))
        # an operator's pace, not a script's: ~3 reloads a second (test_reload_burst
        # covers reloads that come faster than a generation drains)
        time.sleep(0.25)
    t_last = time.time()
    # let the last generation take over under load, then stop the load
    time.sleep(0.7)
    load.stop()
    t_stop = time.time()
    assert errors == [], errors

    recs, bad = load.recs, load.failures()
    # the old generations drain (keep-alive connections got Connection: close) and exit
    t0 = time.time()
    try:
        wait_until(lambda: len(_worker_pids(r)) == WORKERS, 6, "the old workers to exit")
    finally:
        left = _worker_pids(r)
    t_drained = time.time() - t0
    figure("reload", "%d reloads (20 SIGHUP, 4 routerctl) in %.1fs under %d requests "
           "(%.0f/s), %d failed, %d Connection: close reconnections; reload -> new "
           "generation logged: max %.0f ms, median %.0f ms; old workers gone %.0f ms "
           "after the load stopped; at most %d workers seen after a reload" % (
               len(took), t_last - t_begin, len(recs), len(recs) / (t_stop - t_begin),
               len(bad), load.closes, max(took) * 1000, sorted(took)[len(took) // 2] * 1000,
               t_drained * 1000, peak))
    assert len(took) == 24
    assert peak <= 2 * WORKERS, "old generations pile up: %d workers" % peak
    assert len(recs) >= 2000, "the load generator made only %d requests" % len(recs)
    assert bad == [], "%d of %d requests failed, e.g. %s" % (len(bad), len(recs), bad[:5])
    assert len(left) == WORKERS, "workers left: %s" % [(p, proc_title(p)) for p in left]
    assert not (set(left) & first_workers), "a first-generation worker survived"
    out = r.output()
    assert "not ready" not in out and "do not fit" not in out, out[-3000:]
    # every reload took: generation 25, all workers of it
    p = _ctl(r, "-j", "show", "workers")
    assert p.returncode == 0, p.stderr
    ws = [w for w in json.loads(p.stdout) if w.get("role") == "worker"]
    assert sorted(w["generation"] for w in ws) == [25] * WORKERS, ws
    assert all(w["state"] == "running" for w in ws), ws

    # the final config is in effect: b1 weight 1, b3 weight 3, b2 and b4 gone
    p = _ctl(r, "-j", "show", "backends")
    assert p.returncode == 0, p.stderr
    table = {b["name"]: b["weight"] for b in json.loads(p.stdout)}
    assert table == {"b1": 1, "b3": 3}, table
    for b in (b2, b4):
        request(b.port, "POST", "/__reset")
    seen = {}
    for _ in range(40):
        st, h, _body = request(r.port, "GET", "/after")
        assert st == 200, st
        seen[h.get("x-backend")] = seen.get(h.get("x-backend"), 0) + 1
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for _ in range(40):
        c.request("GET", "/after-ka")
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        be = resp.getheader("X-Backend")
        seen[be] = seen.get(be, 0) + 1
    c.close()
    assert set(seen) == {"b1", "b3"}, seen
    assert 2.0 <= seen["b3"] / seen["b1"] <= 4.5, seen      # weights 1:3
    assert b2.stats()["requests"] == 0 and b4.stats()["requests"] == 0
    # and during the last stretch of the load, after the final generation took over
    late = load.by_backend(since=t_last + 0.4)
    assert late and set(late) <= {"b1", "b3"}, late


def test_reload_idle_keepalive_is_answered(env):
    """A keep-alive connection idle across a reload: its next request is answered (with
    Connection: close) by the draining worker, not lost to a close while idle; then that
    worker exits."""
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = _start(env, [(b1, 1)])
    old = set(_worker_pids(r))
    conns = []
    for _ in range(4):
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
        c.request("GET", "/before")
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200 and not resp.will_close
        conns.append(c)
    _write_conf(r, _conf_text(r, [(b2, 1)]))
    r.p.send_signal(signal.SIGHUP)
    wait_until(lambda: len(set(_worker_pids(r)) - old) == WORKERS, 3, "the new workers")
    time.sleep(0.5)                 # the old workers have been told to drain
    assert set(_worker_pids(r)) & old, "the old workers exited with idle keep-alive conns"
    for c in conns:
        c.request("GET", "/after-reload")
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        assert resp.will_close, resp.getheaders()
        c.close()
    wait_until(lambda: not (set(_worker_pids(r)) & old), 3, "the drained workers to exit")
    st, h, _ = request(r.port, "GET", "/new")
    assert st == 200 and h.get("x-backend") == "b2", (st, h)


def test_reload_burst_last_config_wins(env):
    """Reloads faster than a generation drains (a deploy tool sending SIGHUP twice, an
    operator running `systemctl reload` again): under load, 6 SIGHUPs 20 ms apart, each
    with a new file.  A good file must not be silently dropped: once things settle, the
    last file is the one in effect, no request failed, no old worker is left."""
    bs = [env.backend("b%d" % i) for i in range(1, 5)]
    b1, b2, b3, b4 = bs
    r = _start(env, [(b1, 1), (b2, 1)])
    load = Load(r.port, threads=4, seconds=6.0, path="/burst")
    time.sleep(0.3)
    sets = [[(b2, 2), (b3, 1)], [(b3, 1), (b4, 5)], [(b4, 1), (b1, 2)], [(b1, 3), (b2, 1)],
            [(b2, 1), (b4, 1)], [(b3, 7), (b4, 2)]]
    for members in sets:
        _write_conf(r, _conf_text(r, members))
        r.p.send_signal(signal.SIGHUP)
        time.sleep(0.02)
    t_last = time.time()
    want = {b.name: w for b, w in sets[-1]}

    def table():
        p = _ctl(r, "-j", "show", "backends")
        return {b["name"]: b["weight"] for b in json.loads(p.stdout)} if p.returncode == 0 \
            else None
    try:
        wait_until(lambda: table() == want, 3, "the last file to be in effect")
        applied = True
    except AssertionError:
        applied = False
    time.sleep(0.3)
    load.stop()
    bad = load.failures()
    log = "\n".join(_reload_lines(r))
    refused = [ln for ln in _reload_lines(r) if "do not fit" in ln]
    figure("reload burst", "6 SIGHUPs 20 ms apart under load: %d requests, %d failed, "
           "%d reload(s) refused ('do not fit'), last file in effect: %s" % (
               len(load.recs), len(bad), len(refused), applied))
    assert bad == [], "%d of %d requests failed, e.g. %s" % (len(bad), len(load.recs), bad[:5])
    assert applied, "the last config never took effect: table %s, want %s\n%s" % (
        table(), want, log)
    late = load.by_backend(since=t_last + 1.0)
    assert set(late) <= {"b3", "b4"}, late
    wait_until(lambda: len(_worker_pids(r)) == WORKERS, 6, "the old workers to exit")
