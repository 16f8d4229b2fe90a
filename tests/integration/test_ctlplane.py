"""One control plane (DESIGN "Processes"): the admin API's writes and drills reach the
master over the control protocol, so every worker sees them and each shared field
keeps one writer; the worker never blocks on the master (503/504 when it does not
answer).  Real routerd, fakebe and routerctl processes on loopback."""
import json
import os
import signal
import subprocess
import threading
import time

from harness import backends_yaml, free_port, request, wait_port

ROUTERCTL = os.environ.get("ROUTERCTL", os.path.abspath("build/routerctl"))
TOKEN = "t0k3n"
AUTH = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}


def _router(env, backends, workers=1, extra="", control=True):
    aport = free_port()
    sock = os.path.join(env.dir, "ctl.sock")
    text = backends_yaml(backends, workers=workers,
                         extra="admin:\n  address: 127.0.0.1:%d\n  token: %s\n%s%s"
                         % (aport, TOKEN, extra,
                            "control:\n  socket: %s\n" % (sock if control
                                                            else "/dev/null/ctl.sock")))
    r = env.router(text)
    wait_port(aport)
    r.admin, r.sock = aport, sock
    return r


def _api(r, method, path, body=None, timeout=30):
    st, h, data = request(r.admin, method, path,
                          body=json.dumps(body) if body is not None else None,
                          headers=AUTH, timeout=timeout)
    return st, json.loads(data)


def _ctlj(r, *args):
    p = subprocess.run([ROUTERCTL, "-s", r.sock, "-j"] + list(args), capture_output=True,
                       text=True, timeout=15)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_ctlplane_strategy_put_goes_through_master(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [a, b], workers=2)
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "random"})
    assert st == 200, j
    sc = j["strategy_change"]
    assert sc["applied_by"] == "master" and sc["strategy_applied"] is True, sc
    assert sc["previous_strategy"] == "round_robin" and sc["new_strategy"] == "random"
    # the master applied it (its audit line names the admin API) and routerctl agrees
    time.sleep(0.1)
    assert "admin API, worker pid" in r.output() and "strategy set random" in r.output(), \
        r.output()[-2000:]
    pools = _ctlj(r, "show", "pools")
    assert "random" in json.dumps(pools), pools
    # the master's refusal comes back as a 400 with its reason
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "round_robin", "pool": "default"})
    assert st == 200 and j["strategy_change"]["previous_strategy"] == "random", j


def test_ctlplane_without_control_socket(env):
    # a control socket that cannot be made turns routerctl off, not the admin API's writes
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [a, b], control=False)
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "weighted"})
    assert st == 200 and j["strategy_change"]["strategy_applied"] is True, j
    assert "control: bind /dev/null/ctl.sock" in r.output(), r.output()[-1500:]


def test_ctlplane_master_silent_is_504_and_worker_not_blocked(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [a, b])
    os.kill(r.p.pid, signal.SIGSTOP)
    try:
        res = {}

        def put():
            t0 = time.monotonic()
            res["r"] = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "random"})
            res["t"] = time.monotonic() - t0

        th = threading.Thread(target=put)
        th.start()
        time.sleep(0.3)
        # the worker is not waiting on the master: reads and proxying go on
        t0 = time.monotonic()
        st, _, _ = request(r.admin, "GET", "/api/v1/router/health", timeout=5)
        assert st == 200 and time.monotonic() - t0 < 0.5
        st, h, _ = request(r.port, "GET", "/x", timeout=5)
        assert st == 200
        th.join(10)
        st, j = res["r"]
        assert st == 504 and j["error"]["code"] == 504, (st, j)
        assert 2.5 < res["t"] < 6.0, res["t"]
    finally:
        os.kill(r.p.pid, signal.SIGCONT)
    # the late reply is dropped, the link stays usable
    time.sleep(0.2)
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "round_robin"})
    assert st == 200, j


def test_ctlplane_drill_is_the_real_breaker_for_every_worker(env):
    p1, p2 = env.backend("p1"), env.backend("p2")
    r = _router(env, [p1, p2], workers=3)
    seen, stop = [], threading.Event()

    def load():
        # new connections: spread over the three workers' listeners
        while not stop.is_set():
            try:
                st, h, _ = request(r.port, "GET", "/x", timeout=5)
                seen.append((time.monotonic(), st, h.get("x-backend")))
            except OSError:
                seen.append((time.monotonic(), 0, None))

    ths = [threading.Thread(target=load) for _ in range(3)]
    for t in ths:
        t.start()
    time.sleep(0.3)
    out = {}

    def drill():
        t0 = time.monotonic()
        out["r"] = _api(r, "POST", "/api/v1/router/circuit-breaker/test",
                        {"backend": "p1", "duration_ms": 1000})
        out["t0"] = t0

    dt = threading.Thread(target=drill)
    dt.start()
    time.sleep(0.4)
    # while it runs routerctl sees the real breaker forced open
    br = _ctlj(r, "show", "breakers")
    row = [x for x in json.dumps(br).split("{") if '"p1"' in x]
    assert row and '"open"' in row[0], br
    dt.join(10)
    stop.set()
    for t in ths:
        t.join()
    st, j = out["r"]
    assert st == 200, j
    c = j["circuit_breaker_test"]
    assert c["circuit_breaker_triggered"] is True and c["scope"] == "router", c
    assert c["new_state"] == "closed" and c["requests_to_backend"] == 0, c
    assert c["requests_failed"] == 0 and c["failover_activated"] is True, c
    t0 = out["t0"]
    inside = [e for e in seen if t0 + 0.15 < e[0] < t0 + 0.9]
    assert len(inside) > 20 and {e[2] for e in inside} == {"p2"}, \
        {e[2] for e in inside}
    assert all(e[1] == 200 for e in seen)
    # counted over every worker's stripe: the same order as what the clients saw
    assert c["requests_during_test"] >= len(inside)
    # put back: the master's "breaker close", applied by the prober
    br = _ctlj(r, "show", "breakers")
    row = [x for x in json.dumps(br).split("{") if '"p1"' in x]
    assert row and '"closed"' in row[0], br
    assert "breaker open p1" in r.output() and "breaker close p1" in r.output()
