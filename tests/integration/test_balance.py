"""Balancing: weighted shares, least_connections away from a slow backend,
power_of_two and random spread, backup tier and failover past dead primaries."""
import http.client
import threading
import time

from harness import backends_yaml, dead_addr, pools_yaml, request


def _count(port, n, names, path="/x", conns=1):
    """n GETs over `conns` keep-alive connections (threads); returns ({backend: count}, [errors])."""
    seen = {k: 0 for k in names}
    errors = []
    lock = threading.Lock()

    def run(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for _ in range(k):
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                with lock:
                    if r.status != 200:
                        errors.append(r.status)
                    else:
                        b = r.getheader("X-Backend")
                        seen[b] = seen.get(b, 0) + 1
        except Exception as e:  # noqa: BLE001 - reported by the caller's assert
            with lock:
                errors.append(repr(e))
        finally:
            c.close()

    per = n // conns
    ts = [threading.Thread(target=run, args=(per,)) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return seen, errors


def _sequence(port, n):
    """n GETs on one connection; the X-Backend of each, in order."""
    out = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(n):
        c.request("GET", "/x")
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        out.append(r.getheader("X-Backend"))
    c.close()
    return out


def test_weighted_1_3(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = env.router(backends_yaml([(b1, ", weight: 1"), (b2, ", weight: 3")],
                                 strategy="weighted", workers=2))
    seen, errors = _count(r.port, 4000, ("b1", "b2"), conns=4)
    assert not errors, errors[:5]
    total = seen["b1"] + seen["b2"]
    assert total == 4000, seen
    share = 100.0 * seen["b1"] / total
    assert abs(share - 25.0) <= 2.0, seen
    # the backends agree with what the client saw
    assert b1.stats()["requests"] == seen["b1"]
    assert b2.stats()["requests"] == seen["b2"]


def test_least_connections_avoids_slow(env):
    fast, slow = env.backend("fast"), env.backend("slow")
    st, _, _ = slow.fault("slow:300")
    assert st == 200
    r = env.router(backends_yaml([fast, slow], strategy="least_connections", workers=2))
    seen = {"fast": 0, "slow": 0}
    errors = []
    lock = threading.Lock()
    stop = time.time() + 2.0

    def client():
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
        try:
            while time.time() < stop:
                c.request("GET", "/x")
                resp = c.getresponse()
                resp.read()
                with lock:
                    if resp.status == 200:
                        seen[resp.getheader("X-Backend")] += 1
                    else:
                        errors.append(resp.status)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))
        finally:
            c.close()

    ts = [threading.Thread(target=client) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert not errors, errors[:5]
    # round robin would give both the same count; least_connections keeps the
    # slow backend at about one request in flight and sends the rest away
    assert seen["fast"] >= 100, seen
    assert seen["fast"] >= 5 * seen["slow"], seen


def _assert_spread(seq, names):
    n = len(seq)
    for name in names:
        k = seq.count(name)
        assert 0.35 * n <= k <= 0.65 * n, (name, k, n)
    # a random pick is not a strict alternation (that would be round robin)
    alternating = all(seq[i] != seq[i + 1] for i in range(len(seq) - 1))
    assert not alternating, "strict alternation: strategy looks like round robin"
    runs = sum(1 for i in range(len(seq) - 1) if seq[i] == seq[i + 1])
    assert runs >= n // 10, runs


def test_power_of_two_spreads(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = env.router(backends_yaml([b1, b2], strategy="power_of_two"))
    _assert_spread(_sequence(r.port, 1000), ("b1", "b2"))


def test_random_spreads(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = env.router(backends_yaml([b1, b2], strategy="random"))
    _assert_spread(_sequence(r.port, 1000), ("b1", "b2"))


def test_backup_idle_while_primary_up(env):
    p1, p2, bk = env.backend("p1"), env.backend("p2"), env.backend("bk")
    r = env.router(backends_yaml([p1, p2, (bk, ", backup: true")], workers=2))
    seen, errors = _count(r.port, 200, ("p1", "p2", "bk"), conns=2)
    assert not errors, errors[:5]
    assert seen["bk"] == 0 and seen["p1"] == 100 and seen["p2"] == 100, seen
    assert bk.stats()["requests"] == 0


def test_backup_takes_all_when_primaries_down(env):
    bk = env.backend("bk")
    d1, d2 = dead_addr(), dead_addr()
    r = env.router(pools_yaml({"default": [d1, d2, (bk, ", backup: true")]}, workers=2))
    seen, errors = _count(r.port, 100, ("bk",), conns=2)
    assert not errors, errors[:5]
    assert seen == {"bk": 100}, seen


def test_failover_past_dead_primary(env):
    """A primary with nothing listening: its requests move to the live primary, no error."""
    live = env.backend("live")
    d = dead_addr()
    r = env.router(pools_yaml({"default": [d, live]}))
    seen, errors = _count(r.port, 100, ("live",))
    assert not errors, errors[:5]
    assert seen == {"live": 100}, seen


def test_backup_after_primaries_stop(env):
    """Primaries that were up and served (pooled connections) die: the backup takes over."""
    p1, p2, bk = env.backend("p1"), env.backend("p2"), env.backend("bk")
    r = env.router(backends_yaml([p1, p2, (bk, ", backup: true")], workers=1))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for _ in range(10):
        c.request("GET", "/x")
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200 and resp.getheader("X-Backend") in ("p1", "p2")
    p1.stop()
    p2.stop()
    for _ in range(20):
        c.request("GET", "/x")
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        assert resp.getheader("X-Backend") == "bk"
    c.close()
    st, _, _ = request(r.port, "GET", "/y")
    assert st == 200


def _worker_of(port, client_port):
    """pid of the routerd worker holding the accepted end of a client connection."""
    import re
    import subprocess
    out = subprocess.run(["ss", "-tnpH", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.split()[3].endswith(":%d" % client_port):
            m = re.search(r"pid=(\d+)", line)
            return int(m.group(1)) if m else None
    return None


def test_least_connections_counts_other_workers(env):
    """Two workers, two backends, least_connections.  A request held at a backend
    by one worker must steer the next request, accepted by the OTHER worker, to the
    other backend: each worker counting only its own requests would send both to
    the first backend in turn."""
    a, b = env.backend("a"), env.backend("b")
    r = env.router(backends_yaml([a, b], strategy="least_connections", workers=2))
    # two client connections that landed on different workers
    conns = {}
    deadline = time.time() + 10
    while len(conns) < 2 and time.time() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        c.connect()
        pid = None
        for _ in range(50):
            pid = _worker_of(r.port, c.sock.getsockname()[1])
            if pid:
                break
            time.sleep(0.01)
        if pid and pid not in conns:
            conns[pid] = c
        else:
            c.close()
    assert len(conns) == 2, "could not reach both workers: %s" % list(conns)
    c1, c2 = conns.values()
    got = {}

    def slow(name, c):
        c.request("GET", "/slow?ms=2000")
        resp = c.getresponse()
        resp.read()
        got[name] = (resp.status, resp.getheader("X-Backend"))

    t1 = threading.Thread(target=slow, args=("first", c1))
    t1.start()
    time.sleep(0.5)                      # the first request is at its backend
    t2 = threading.Thread(target=slow, args=("second", c2))
    t2.start()
    t1.join(10)
    t2.join(10)
    c1.close()
    c2.close()
    assert got["first"][0] == 200 and got["second"][0] == 200, got
    assert got["first"][1] != got["second"][1], got
