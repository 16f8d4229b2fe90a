"""Supervision: a worker killed with SIGKILL is reaped and respawned; traffic barely notices."""
import http.client
import os
import signal
import threading
import time

from harness import backends_yaml, worker_pids


def _get(port, path, timeout=3):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def _wait_workers(r, n, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        w = worker_pids(r)
        if len(w) == n:
            return w
        time.sleep(0.02)
    raise AssertionError("expected %d workers, have %s" % (n, worker_pids(r)))


def test_killed_worker_respawned(env):
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], workers=2))
    before = _wait_workers(r, 2)

    stop = threading.Event()
    results = []  # (time, ok, detail)
    lock = threading.Lock()

    def load():
        while not stop.is_set():
            t = time.monotonic()
            try:
                st = _get(r.port, "/slow?ms=20")
                ok, why = st == 200, st
            except Exception as e:  # noqa: BLE001
                ok, why = False, repr(e)
            with lock:
                results.append((t, ok, why))

    ts = [threading.Thread(target=load) for _ in range(2)]
    for t in ts:
        t.start()
    try:
        time.sleep(0.5)
        victim = before[0]
        t_kill = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        # 20 new connections opened right after the kill (about half of them
        # land on the dead worker's listener socket): each served within 1 s
        fresh_conns = []

        def one():
            try:
                st = _get(r.port, "/x", timeout=3.0)
            except Exception as e:  # noqa: BLE001
                st = repr(e)
            with lock:
                fresh_conns.append((st, time.monotonic() - t_kill))

        cs = [threading.Thread(target=one) for _ in range(20)]
        for t in cs:
            t.start()

        # a new pid within 1 s, the victim reaped
        new = None
        while time.monotonic() - t_kill < 1.0:
            w = worker_pids(r)
            fresh = [p for p in w if p not in before]
            if fresh and len(w) == 2:
                new = fresh[0]
                break
            time.sleep(0.01)
        assert new is not None, "no respawned worker after 1 s: %s" % worker_pids(r)
        assert before[1] in worker_pids(r), "the other worker changed"
        for t in cs:
            t.join(5)
        assert len(fresh_conns) == 20, fresh_conns
        assert all(st == 200 and dt < 1.0 for st, dt in fresh_conns), sorted(fresh_conns, key=lambda x: -x[1])[:5]
        time.sleep(0.5)
    finally:
        stop.set()
        for t in ts:
            t.join(10)

    end = time.monotonic() + 1.0
    while os.path.exists("/proc/%d" % victim) and time.monotonic() < end:
        time.sleep(0.02)
    assert not os.path.exists("/proc/%d" % victim), "victim not reaped"

    fails = [x for x in results if not x[1]]
    after = [x for x in results if x[0] > t_kill + 0.1]
    # only requests in flight in the killed worker may fail: one per load thread at most
    assert len(fails) <= 2, fails
    assert all(f[0] <= t_kill + 0.05 for f in fails), (t_kill, fails)
    assert len([x for x in after if x[1]]) >= 10, len(after)


def test_worker_killed_twice(env):
    """The respawned worker can itself be killed and is respawned again (back-off stays short)."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], workers=2))
    pids = _wait_workers(r, 2)
    seen = set(pids)
    for _ in range(2):
        victim = sorted(worker_pids(r))[0]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        new = None
        while time.monotonic() - t0 < 1.5:
            w = worker_pids(r)
            fresh = [p for p in w if p not in seen]
            if fresh and len(w) == 2:
                new = fresh[0]
                break
            time.sleep(0.01)
        assert new is not None, worker_pids(r)
        seen.add(new)
    for _ in range(20):
        assert _get(r.port, "/x", timeout=2) == 200


def test_process_titles(env):
    """ps shows each role plainly: "routerd: master", "routerd: worker N", "routerd: prober"."""
    import re
    from harness import proc_title
    b = env.backend("b1")
    r = env.router(backends_yaml([b], workers=2))
    _wait_workers(r, 2)
    titles = sorted([proc_title(r.p.pid)] + [proc_title(p) for p in r.workers()])
    assert titles[0] == "routerd: master", titles
    for t in titles[1:]:
        assert re.fullmatch(r"routerd: (worker \d+|prober|syncer)", t), titles
    assert sum(t.startswith("routerd: worker") for t in titles) == 2, titles


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigquit_drains_then_stops(env):
    """SIGQUIT: new connections are refused, the request in flight finishes with
    200, then every process exits and the pidfile is gone."""
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1], workers=2))
    kids = _wait_workers(r, 2)
    res = {}

    def slow():
        try:
            res["st"] = _get(r.port, "/slow?ms=1500", timeout=5)
        except Exception as e:  # noqa: BLE001
            res["st"] = repr(e)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)                     # the request is at the backend
    r.p.send_signal(signal.SIGQUIT)
    time.sleep(0.3)
    assert r.p.poll() is None, "master stopped before the request finished"
    t.join(5)
    assert res.get("st") == 200, res
    r.p.wait(5)
    assert r.p.returncode == 0, r.p.returncode
    assert not any(_alive(p) for p in kids), kids
    assert not os.path.exists(r.pidfile), "pidfile left behind"


def test_sigint_and_sigterm_stop(env):
    b1 = env.backend("b1")
    for sig in (signal.SIGINT, signal.SIGTERM):
        r = env.router(backends_yaml([b1], workers=2))
        kids = _wait_workers(r, 2)
        assert _get(r.port, "/x") == 200
        t0 = time.monotonic()
        r.p.send_signal(sig)
        r.p.wait(5)
        assert time.monotonic() - t0 < 2.0, (sig, time.monotonic() - t0)
        assert r.p.returncode == 0, (sig, r.p.returncode)
        end = time.monotonic() + 2.0
        while any(_alive(p) for p in kids) and time.monotonic() < end:
            time.sleep(0.02)
        assert not any(_alive(p) for p in kids), (sig, kids)
        r.stop()


def test_pidfile_refuses_second_instance(env):
    """A second routerd on the same pidfile says who runs and exits 1; the first
    keeps serving."""
    import subprocess
    from harness import ROUTERD
    b1 = env.backend("b1")
    r = env.router(backends_yaml([b1]))
    p = subprocess.run([ROUTERD, "-d", "-f", r.conf], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "already running as pid %d" % r.p.pid in p.stdout + p.stderr, p.stderr
    assert _get(r.port, "/x") == 200
    with open(r.pidfile) as f:
        assert int(f.read().strip()) == r.p.pid
