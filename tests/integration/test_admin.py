"""Admin HTTP API and Prometheus /metrics: JSON shapes, auth, bad input, a strategy
switch at run time, the failover and breaker drills on live traffic, and the
Prometheus text checked by two independent parsers (promtool and prometheus_client)."""
import datetime
import http.client
import json
import shutil
import socket
import struct
import subprocess
import threading
import time

from harness import backends_yaml, free_port, pools_yaml, request, wait_port

TOKEN = "t0k3n"
AUTH = {"Authorization": "Bearer " + TOKEN}


def _router(env, backends, strategy="round_robin", workers=1, pools=None):
    aport = free_port()
    extra = "admin:\n  address: 127.0.0.1:%d\n  token: %s\n" % (aport, TOKEN)
    if pools is not None:
        text = pools_yaml(pools, workers=workers, strategy=strategy, extra=extra)
    else:
        text = backends_yaml(backends, strategy=strategy, workers=workers, extra=extra)
    r = env.router(text)
    wait_port(aport)
    r.admin = aport
    return r


def _api(r, method, path, body=None, headers=None, raw=False):
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    st, h, data = request(r.admin, method, path, body=body, headers=hdrs, timeout=30)
    if raw:
        return st, h, data
    assert h.get("content-type", "").startswith("application/json"), h
    return st, json.loads(data)


def _get(r, path):
    st, j = _api(r, "GET", path)
    assert st == 200, (st, j)
    return j


def _is_time(v):
    assert isinstance(v, str) and v.endswith("Z"), v
    datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    return True


def _traffic(port, n, path="/x"):
    """n GETs on one keep-alive connection; {backend: count}."""
    seen = {}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(n):
        c.request("GET", path)
        resp = c.getresponse()
        resp.read()
        assert resp.status < 500 or path != "/x", resp.status
        b = resp.getheader("X-Backend")
        seen[b] = seen.get(b, 0) + 1
    c.close()
    return seen


class Load:
    """Keep-alive GETs in a thread until stopped; records (t_start, t_end, status, backend)."""

    def __init__(self, port, conns=2):
        self.port = port
        self.log = []
        self.errors = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ts = [threading.Thread(target=self._run, daemon=True) for _ in range(conns)]
        for t in self._ts:
            t.start()

    def _run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                c.request("GET", "/x")
                resp = c.getresponse()
                resp.read()
                with self._lock:
                    self.log.append((t0, time.monotonic(), resp.status,
                                     resp.getheader("X-Backend")))
                time.sleep(0.002)
        except Exception as e:  # noqa: BLE001 - the test asserts on it
            with self._lock:
                self.errors.append(repr(e))
        finally:
            c.close()

    def stop(self):
        self._stop.set()
        for t in self._ts:
            t.join(10)
        return self.log


# --- shapes ---------------------------------------------------------------

def test_admin_health_shape(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [a, b])
    j = _get(r, "/api/v1/router/health")
    assert set(j["health_status"]) == {"default"}, j
    for name in ("a", "b"):
        e = j["health_status"]["default"][name]
        assert e["status"] in ("healthy", "unhealthy", "unknown"), e
        assert e["response_time_ms"] is None or isinstance(e["response_time_ms"], float)
        assert e["last_check"] is None or _is_time(e["last_check"])
    assert j["overall_health"] in ("healthy", "degraded", "unhealthy", "unknown")
    assert j["total_backends"] == 2
    assert j["healthy_backends"] + j["unhealthy_backends"] + j["unknown_backends"] == 2
    # health.type none: nothing is checked, and the answer does not pretend otherwise
    assert j["unknown_backends"] == 2 and j["overall_health"] == "unknown", j
    # HEAD: same head, no body
    st, h, data = _api(r, "HEAD", "/api/v1/router/health", raw=True)
    assert st == 200 and data == b"" and int(h["content-length"]) > 0


def test_admin_metrics_counts(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [a, b])
    seen = _traffic(r.port, 20)
    assert seen == {"a": 10, "b": 10}, seen
    j = _get(r, "/api/v1/router/metrics")
    rm = j["routing_metrics"]
    for k in ("total_requests", "successful_requests", "failed_requests", "success_rate",
              "avg_response_time_ms", "requests_per_second"):
        assert k in rm, k
    assert rm["total_requests"] == 20 and rm["successful_requests"] == 20, rm
    assert rm["failed_requests"] == 0 and rm["success_rate"] == 100.0, rm
    assert rm["avg_response_time_ms"] >= 0.0 and rm["requests_per_second"] > 0.0, rm
    lb = j["load_balancing"]
    assert lb["strategy"] == "round_robin"
    assert lb["backend_distribution"]["a"] == {"requests": 10, "percentage": 50.0,
                                               "pool": "default"}, lb
    assert lb["distribution_variance"] == 0.0
    for name in ("a", "b"):
        cb = j["circuit_breakers"][name]
        assert cb["status"] == "closed" and cb["failure_count"] == 0, cb
        assert cb["last_failure"] is None
    fo = j["failover_events"]
    assert set(fo) >= {"total_failovers", "successful_failovers", "avg_failover_time_ms",
                       "last_failover"}
    assert fo["total_failovers"] == 0

    # a 500 is a failure, a 404 is not (the backend answered the client's error)
    st, _, _ = request(r.port, "GET", "/status?code=500")
    assert st == 500
    st, _, _ = request(r.port, "GET", "/status?code=404")
    assert st == 404
    rm = _get(r, "/api/v1/router/metrics")["routing_metrics"]
    assert rm["total_requests"] == 22 and rm["failed_requests"] == 1, rm
    assert rm["successful_requests"] == 21 and rm["success_rate"] == round(2100 / 22, 2), rm
    # the rate sampler has a sample a second old by now
    time.sleep(1.2)
    rm = _get(r, "/api/v1/router/metrics")["routing_metrics"]
    assert rm["requests_per_second_window_ms"] >= 1000, rm


def test_admin_services(env):
    a = env.backend("a", models="m1,m2")
    b = env.backend("b")
    r = _router(env, [(a, ", models: [m1, m2], weight: 5"), (b, ", backup: true")])
    j = _get(r, "/services")
    by = {s["name"]: s for s in j["services"]}
    assert set(by) == {"a", "b"} and j["total"] == 2
    sa = by["a"]
    assert sa["address"] == a.addr and sa["pool"] == "default" and sa["weight"] == 5
    assert sa["models"] == ["m1", "m2"] and sa["source"] == "static"
    assert sa["last_seen"] is None and sa["health"] in ("healthy", "unhealthy", "unknown")
    assert sa["breaker"] == "closed" and sa["backup"] is False
    assert by["b"]["backup"] is True and by["b"]["models"] == []


# --- errors and auth ------------------------------------------------------

def test_admin_auth_and_errors(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [a, b])
    body = {"strategy": "random"}
    st, j = _api(r, "PUT", "/api/v1/router/strategy", body)
    assert st == 401 and j["error"]["code"] == 401, (st, j)
    st, h, _ = _api(r, "PUT", "/api/v1/router/strategy", body, raw=True)
    assert h.get("www-authenticate", "").startswith("Bearer")
    st, j = _api(r, "PUT", "/api/v1/router/strategy", body,
                 {"Authorization": "Bearer wrong"})
    assert st == 401, st
    for path, b2 in (("/api/v1/router/circuit-breaker/test", {"backend": "a"}),
                     ("/api/v1/router/failover/test", {"primary_backend": "a"})):
        st, j = _api(r, "POST", path, b2)
        assert st == 401, (path, st)
    assert _get(r, "/api/v1/router/metrics")["load_balancing"]["strategy"] == "round_robin"

    st, j = _api(r, "PUT", "/api/v1/router/strategy", '{"strategy": "random",', AUTH)
    assert st == 400 and "invalid JSON" in j["error"]["message"], j
    st, j = _api(r, "PUT", "/api/v1/router/strategy", "", AUTH)
    assert st == 400, j
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "fastest"}, AUTH)
    assert st == 400 and "unknown strategy" in j["error"]["message"], j
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "random", "pool": "x"},
                 AUTH)
    assert st == 400 and "unknown pool" in j["error"]["message"], j
    st, j = _api(r, "POST", "/api/v1/router/failover/test", {"primary_backend": "zz"}, AUTH)
    assert st == 404, j
    st, j = _api(r, "POST", "/api/v1/router/failover/test",
                 {"primary_backend": "a", "duration_ms": "long"}, AUTH)
    assert st == 400, j
    st, j = _api(r, "GET", "/api/v1/router/nothing")
    assert st == 404 and j["error"]["code"] == 404
    st, h, _ = _api(r, "POST", "/api/v1/router/health", "{}", AUTH, raw=True)
    assert st == 405 and "GET" in h["allow"], (st, h)
    # a body over 64 KiB is refused, and the admin listener still answers
    st, _, _ = _api(r, "PUT", "/api/v1/router/strategy", "x" * (70 * 1024), AUTH, raw=True)
    assert st == 413, st
    assert _get(r, "/api/v1/router/health")["total_backends"] == 2
    # the admin paths are not served on the proxy listener (they go to a backend)
    st, h, _ = request(r.port, "GET", "/api/v1/router/health")
    assert h.get("x-backend") in ("a", "b"), h


# --- strategy at run time -------------------------------------------------

def test_admin_strategy_switch_changes_distribution(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [(a, ", weight: 1"), (b, ", weight: 3")])
    seen = _traffic(r.port, 400)
    assert seen == {"a": 200, "b": 200}, seen      # round robin ignores weights
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "weighted"}, AUTH)
    assert st == 200, j
    sc = j["strategy_change"]
    assert sc["previous_strategy"] == "round_robin" and sc["new_strategy"] == "weighted"
    assert sc["strategy_applied"] is True and _is_time(sc["change_timestamp"])
    assert sc["active_connections_before"] == {"a": 0, "b": 0}, sc
    assert set(sc["active_connections_after"]) == {"a", "b"}
    seen = _traffic(r.port, 400)
    assert seen == {"a": 100, "b": 300}, seen      # smooth WRR: exact over full cycles
    lb = _get(r, "/api/v1/router/metrics")["load_balancing"]
    assert lb["strategy"] == "weighted"
    assert lb["backend_distribution"]["a"]["requests"] == 300
    assert lb["backend_distribution"]["b"]["requests"] == 500
    assert lb["backend_distribution"]["b"]["percentage"] == 62.5
    # ((37.5-50)^2 + (62.5-50)^2) / 2
    assert lb["distribution_variance"] == 156.25
    st, j = _api(r, "PUT", "/api/v1/router/strategy",
                 {"strategy": "round_robin", "pool": "default"}, AUTH)
    assert st == 200 and j["strategy_change"]["previous_strategy"] == "weighted"
    assert _get(r, "/api/v1/router/strategy")["pools"] == {"default": "round_robin"}


def test_admin_strategy_switch_every_worker(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [(a, ", weight: 1"), (b, ", weight: 4")], workers=3)
    st, j = _api(r, "PUT", "/api/v1/router/strategy", {"strategy": "weighted"}, AUTH)
    assert st == 200
    # many short connections spread over the workers' listeners
    seen = {"a": 0, "b": 0}
    for _ in range(300):
        st, h, _ = request(r.port, "GET", "/x")
        seen[h["x-backend"]] += 1
    share = seen["b"] / 300.0
    assert 0.70 <= share <= 0.90, seen


# --- Prometheus -----------------------------------------------------------

# Debian's python3-prometheus-client lives in /usr/bin/python3's path, which a
# pyenv or venv interpreter running this suite may not share: parse out there.
_PARSE = r"""
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = [{"name": f.name, "type": f.type,
        "samples": [[s.name, s.labels, s.value] for s in f.samples]}
       for f in text_string_to_metric_families(sys.stdin.read())]
json.dump(out, sys.stdout)
"""


class _Sample:
    def __init__(self, name, labels, value):
        self.name, self.labels, self.value = name, labels, value


class _Family:
    def __init__(self, d):
        self.name, self.type = d["name"], d["type"]
        self.samples = [_Sample(*s) for s in d["samples"]]


def _prom_parse(text):
    py = "/usr/bin/python3" if shutil.which("/usr/bin/python3") else "python3"
    p = subprocess.run([py, "-c", _PARSE], input=text.encode(), capture_output=True)
    assert p.returncode == 0, "prometheus_client: " + p.stderr.decode()[-2000:]
    return {d["name"]: _Family(d) for d in json.loads(p.stdout)}


def test_admin_prometheus_parses(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, [a, (b, ", backup: true")], workers=2)
    _traffic(r.port, 30)
    request(r.port, "GET", "/status?code=503")
    st, h, data = request(r.admin, "GET", "/metrics")
    assert st == 200, st
    assert h["content-type"].startswith("text/plain; version=0.0.4"), h
    text = data.decode()

    # 1. promtool (Debian package prometheus): parse and lint
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run packaging/build-deps.sh"
    p = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()

    # 2. prometheus_client's parser (python3-prometheus-client): the values
    fam = _prom_parse(text)
    for name in ("routerd_backend_requests", "routerd_backend_responses",
                 "routerd_backend_failures", "routerd_backend_retries",
                 "routerd_backend_inflight_requests", "routerd_backend_health",
                 "routerd_backend_breaker_state", "routerd_backend_breaker_opens",
                 "routerd_backend_response_seconds", "routerd_workers",
                 "routerd_worker_queued_requests", "routerd_failovers"):
        assert name in fam, (name, sorted(fam))

    def val(family, suffix="", **labels):
        for s in fam[family].samples:
            if s.name == family + suffix and all(s.labels.get(k) == v
                                                 for k, v in labels.items()):
                return s.value
        raise AssertionError("no sample %s%s %r" % (family, suffix, labels))

    assert fam["routerd_backend_responses"].type == "counter"
    assert fam["routerd_backend_response_seconds"].type == "histogram"
    assert fam["routerd_backend_inflight_requests"].type == "gauge"
    # a took the traffic (b is a backup); the 503 may have been retried on b
    total = val("routerd_backend_requests", "_total", backend="a") + \
        val("routerd_backend_requests", "_total", backend="b")
    assert total >= 31, total
    assert val("routerd_backend_responses", "_total", backend="a", code="2xx") == 30
    # histogram: cumulative, +Inf == _count == answered attempts
    buckets = [s for s in fam["routerd_backend_response_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["backend"] == "a"]
    vals = [s.value for s in buckets]
    assert vals == sorted(vals) and buckets[-1].labels["le"] == "+Inf", vals
    answered = sum(val("routerd_backend_responses", "_total", backend="a", code=c)
                   for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))
    assert vals[-1] == answered == val("routerd_backend_response_seconds", "_count",
                                       backend="a")
    assert val("routerd_workers", state="running") == 2
    assert val("routerd_backend_breaker_state", backend="a", state="closed") == 1
    assert val("routerd_backend_health", backend="a", state="unknown") == 1
    assert val("routerd_backend_inflight_requests", backend="a") == 0


def test_admin_prometheus_many_backends(env):
    # 300 backends (addresses where nothing listens): the answer outgrows the 32 KiB buffer
    backs = ["127.0.0.1:%d" % (20000 + i) for i in range(300)]
    r = _router(env, None, pools={"default": backs})
    st, h, data = request(r.admin, "GET", "/metrics")
    assert st == 200 and len(data) > 300 * 1024, len(data)
    assert int(h["content-length"]) == len(data)
    p = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=data,
                       capture_output=True)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()[:2000]
    j = _get(r, "/services")
    assert j["total"] == 300


# --- drills ---------------------------------------------------------------

def test_admin_failover_drill(env):
    p1, p2 = env.backend("p1"), env.backend("p2")
    r = _router(env, [p1, p2])
    load = Load(r.port)
    time.sleep(0.3)
    t0 = time.monotonic()
    st, j = _api(r, "POST", "/api/v1/router/failover/test",
                 {"primary_backend": "p1", "simulate_failure": True, "duration_ms": 1000},
                 AUTH)
    t1 = time.monotonic()
    time.sleep(0.2)
    log = load.stop()
    assert not load.errors, load.errors[:3]
    assert st == 200, j
    f = j["failover_test"]
    assert f["primary_backend"] == "p1" and f["backup_backend"] == "p2", f
    assert f["failure_simulation"] is True and f["failover_triggered"] is True
    assert 0 <= f["failover_time_ms"] < 50, f
    assert f["requests_to_primary"] == 0, f
    assert f["requests_lost"] == 0, f
    assert f["recovery_successful"] is True and f["recovery_time_ms"] is not None, f
    assert f["total_downtime_ms"] == f["failover_time_ms"]
    assert 1000 <= f["drill_window_ms"] < 1500, f
    assert f["test_duration_ms"] >= f["drill_window_ms"]
    # what the clients saw agrees: inside the window only p2 answered ...
    inside = [e for e in log if e[0] > t0 + 0.1 and e[1] < t0 + 0.9]
    assert len(inside) > 20, len(inside)
    assert {e[3] for e in inside} == {"p2"}, {e[3] for e in inside}
    assert all(e[2] == 200 for e in log)
    # ... the drill's count is of the same order as the clients' (window edges aside)
    during = [e for e in log if e[0] >= t0 and e[1] <= t1]
    assert f["requests_during_failover"] >= len(inside)
    assert f["requests_during_failover"] <= len(during) + 4
    # ... and p1 is back afterwards
    after = [e for e in log if e[0] > t1]
    assert "p1" in {e[3] for e in after}, after[:10]


def test_admin_breaker_drill_pool_fails_over_to_backup(env):
    p1, p2, bk = env.backend("p1"), env.backend("p2"), env.backend("bk")
    r = _router(env, [p1, p2, (bk, ", backup: true")])
    load = Load(r.port)
    time.sleep(0.3)
    t0 = time.monotonic()
    st, j = _api(r, "POST", "/api/v1/router/circuit-breaker/test",
                 {"backend": "default", "simulate_failure": True, "duration_ms": 800}, AUTH)
    log = load.stop()
    assert not load.errors, load.errors[:3]
    assert st == 200, j
    c = j["circuit_breaker_test"]
    assert c["backend"] == "default" and sorted(c["backends"]) == ["p1", "p2"], c
    assert c["test_type"] == "failure_simulation"
    assert c["initial_state"] == "closed" and c["new_state"] == "closed", c
    # the real breaker, ordered open through the master, then put back
    assert c["drill_state"] == "open" and c["circuit_breaker_triggered"] is True, c
    assert c["failure_threshold"] == 10 and c["simulated_failures"] is None
    assert c["failover_activated"] is True and c["backup_backend"] == "bk", c
    assert c["requests_to_backend"] == 0 and c["requests_failed"] == 0, c
    assert c["requests_during_test"] > 0 and c["recovery_successful"] is True, c
    assert c["scope"] == "router" and c["ordered_by"] == "master" and "note" in c
    inside = [e for e in log if e[0] > t0 + 0.1 and e[1] < t0 + 0.7]
    assert inside and {e[3] for e in inside} == {"bk"}, {e[3] for e in inside}
    # the backup went idle again: the primaries are back
    seen = _traffic(r.port, 20)
    assert seen == {"p1": 10, "p2": 10}, seen


def test_admin_drill_single_backend_not_run(env):
    a = env.backend("a")
    r = _router(env, [a])
    st, j = _api(r, "POST", "/api/v1/router/failover/test", {"primary_backend": "a"}, AUTH)
    assert st == 200, j
    f = j["failover_test"]
    assert f["failover_triggered"] is False and f["backup_backend"] is None, f
    assert f["requests_lost"] is None and "not run" in f["note"], f
    assert _traffic(r.port, 5) == {"a": 5}


def test_admin_drill_busy_and_abandoned(env):
    p1, p2 = env.backend("p1"), env.backend("p2")
    r = _router(env, [p1, p2])
    body = json.dumps({"primary_backend": "p1", "duration_ms": 1500}).encode()
    req = (b"POST /api/v1/router/failover/test HTTP/1.1\r\nHost: x\r\n"
           b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", r.admin))
    s.sendall(req)
    time.sleep(0.2)
    # one drill per worker at a time
    st, j = _api(r, "POST", "/api/v1/router/circuit-breaker/test", {"backend": "p2"}, AUTH)
    assert st == 409, (st, j)
    assert _traffic(r.port, 6) == {"p2": 6}        # p1 is out for now
    # the drill's client goes away with a reset
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    # p1 is back by the end of the window at the latest, and drills work again
    time.sleep(max(0.0, t0 + 1.7 - time.monotonic()))
    assert _traffic(r.port, 6) == {"p1": 3, "p2": 3}
    # (the abandoned drill may still be watching for p1's first request: 10 ms ticks)
    end = time.monotonic() + 2.0
    while True:
        st, j = _api(r, "POST", "/api/v1/router/failover/test",
                     {"primary_backend": "p1", "duration_ms": 0}, AUTH)
        if st != 409 or time.monotonic() > end:
            break
        time.sleep(0.02)
    assert st == 200 and j["failover_test"]["failover_triggered"] is True, j
    assert r.p.poll() is None


def test_admin_health_with_checks(env):
    a = env.backend("a")
    dead = "127.0.0.1:%d" % free_port()
    aport = free_port()
    text = ("listen:\n  - address: LISTEN\nworkers: 1\n"
            "health: {type: http, interval: 200ms, timeout: 500ms, fall: 1, rise: 1}\n"
            "admin:\n  address: 127.0.0.1:%d\n  token: %s\n"
            "backends:\n  - { name: a, address: %s }\n  - { name: gone, address: %s }\n"
            % (aport, TOKEN, a.addr, dead))
    r = env.router(text)
    wait_port(aport)
    r.admin = aport
    end = time.monotonic() + 5
    while True:
        j = _get(r, "/api/v1/router/health")
        hs = j["health_status"]["default"]
        if hs["a"]["status"] == "healthy" and hs["gone"]["status"] == "unhealthy":
            break
        assert time.monotonic() < end, j
        time.sleep(0.1)
    assert _is_time(hs["a"]["last_check"]) and _is_time(hs["gone"]["last_check"])
    assert isinstance(hs["a"]["response_time_ms"], float) and hs["a"]["response_time_ms"] >= 0
    assert j["overall_health"] == "degraded", j
    assert (j["healthy_backends"], j["unhealthy_backends"]) == (1, 1), j
    fam = _prom_parse(request(r.admin, "GET", "/metrics")[2].decode())
    h = {(s.labels["backend"], s.labels["state"]): s.value
         for s in fam["routerd_backend_health"].samples}
    assert h[("a", "up")] == 1 and h[("gone", "down")] == 1 and h[("gone", "up")] == 0, h
    svc = {s["name"]: s for s in _get(r, "/services")["services"]}
    assert svc["gone"]["health"] == "unhealthy"
    # the proxy keeps away from the down backend
    assert _traffic(r.port, 6) == {"a": 6}


def test_admin_real_breaker_reported(env):
    a, b = env.backend("a"), env.backend("b")
    aport = free_port()
    text = ("listen:\n  - address: LISTEN\nworkers: 1\nhealth: {type: none}\n"
            "breaker: {threshold: 3, timeout: 60s}\n"
            "admin:\n  address: 127.0.0.1:%d\n  token: %s\n"
            "backends:\n  - { name: a, address: %s }\n  - { name: b, address: %s }\n"
            % (aport, TOKEN, a.addr, b.addr))
    r = env.router(text)
    wait_port(aport)
    r.admin = aport
    assert b.fault("500")[0] == 200
    end = time.monotonic() + 5
    while True:
        for _ in range(10):
            request(r.port, "GET", "/x")
        cb = _get(r, "/api/v1/router/metrics")["circuit_breakers"]
        if cb["b"]["status"] == "open":
            break
        assert time.monotonic() < end, cb
        time.sleep(0.1)
    assert cb["b"]["failure_count"] >= 3 and _is_time(cb["b"]["last_failure"]), cb
    assert cb["b"]["opens"] == 1 and cb["a"]["status"] == "closed", cb
    fam = _prom_parse(request(r.admin, "GET", "/metrics")[2].decode())
    st = {(s.labels["backend"], s.labels["state"]): s.value
          for s in fam["routerd_backend_breaker_state"].samples}
    assert st[("b", "open")] == 1 and st[("b", "closed")] == 0, st
    opens = {s.labels["backend"]: s.value for s in fam["routerd_backend_breaker_opens"].samples}
    assert opens == {"a": 0, "b": 1}, opens
    # the drill reads the real breaker: b is already open, a fails over to nothing but b
    st, j = _api(r, "POST", "/api/v1/router/circuit-breaker/test",
                 {"backend": "b", "simulate_failure": False}, AUTH)
    assert st == 200 and j["circuit_breaker_test"]["initial_state"] == "open", j
    st, j = _api(r, "POST", "/api/v1/router/failover/test", {"primary_backend": "a"}, AUTH)
    f = j["failover_test"]
    assert f["backup_backend"] is None and "not run" in f["note"], f
