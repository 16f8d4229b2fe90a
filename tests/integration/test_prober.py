"""The prober: active checks (http, babysitter, tcp, llm) mark backends down and up on time,
a down backend gets no traffic, and circuit breakers open on 500s, half-open after their
timeout and close when the backend recovers.  Asserted through traffic (X-Backend) and
through the prober's log lines in routerd's stderr."""
import calendar
import http.client
import os
import signal
import re
import socket
import threading
import time

import harness
from harness import free_port, request

INTERVAL = 0.2          # health.interval of these tests, seconds
LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z ")


def _conf(backends, health="none", extra_health="", breaker="", workers=1):
    """Config text: one default pool of backends ((backend, opts) tuples allowed),
    checks of type `health` every INTERVAL."""
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % workers,
             "strategy: round_robin",
             "health:", "  type: %s" % health, "  interval: %dms" % int(INTERVAL * 1000),
             "  timeout: 150ms", "  fall: 3", "  rise: 2"]
    lines += ["  " + x for x in extra_health.splitlines() if x.strip()]
    if breaker:
        lines += ["breaker:"] + ["  " + x for x in breaker.splitlines() if x.strip()]
    lines.append("backends:")
    for b in backends:
        opts = ""
        if isinstance(b, tuple):
            b, opts = b
        lines.append("  - { name: %s, address: %s%s }" % (b.name, b.addr, opts))
    return "\n".join(lines) + "\n"


def _log_time(line):
    """CLOCK_REALTIME seconds of a routerd log line (ms precision)."""
    m = LOG_TS.match(line)
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + \
        int(m.group(2)) / 1000.0


def _wait_log(router, pattern, timeout=5.0, after=0):
    """Wait for a line of routerd's log matching pattern (a regex), looking only at
    lines after the first `after` ones.  Returns (line time, match, line count)."""
    rx = re.compile(pattern)
    end = time.time() + timeout
    while True:
        lines = router.output().splitlines()
        for i in range(after, len(lines)):
            m = rx.search(lines[i])
            if m:
                return _log_time(lines[i]), m, i + 1
        if time.time() > end:
            raise AssertionError("no log line /%s/ within %.1fs:\n%s"
                                 % (pattern, timeout, "\n".join(lines[-30:])))
        time.sleep(0.01)


def _router(env, text):
    """routerd on text, once its prober runs (the workers may serve before it
    does: what they count then is judged when it starts)."""
    r = env.router(text)
    _wait_log(r, r"prober: (\w+ checks every|no active checks)")
    return r


def _nlines(router):
    return len(router.output().splitlines())


def _spread(port, n):
    """n GETs on one keep-alive connection: {backend: count}, statuses other than 200."""
    seen, bad = {}, []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(n):
        c.request("GET", "/x")
        r = c.getresponse()
        r.read()
        if r.status != 200:
            bad.append(r.status)
        b = r.getheader("X-Backend")
        seen[b] = seen.get(b, 0) + 1
    c.close()
    return seen, bad


def _port_pair():
    """A port p with p + 1 also free (for a babysitter at port_offset 1)."""
    for _ in range(100):
        p = free_port()
        if p >= 65535:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no two free ports in a row")


class _Fakebe(harness.Proc):
    """A fakebe on a port of our choice (Backend picks its own)."""

    def __init__(self, env, name, port, models="demo-model", extra=()):
        self.name = name
        self.port = port
        self.addr = "127.0.0.1:%d" % port
        super().__init__([harness.FAKEBE, "-l", self.addr, "-n", name, "-m", models]
                         + list(extra), os.path.join(env.dir, "fakebe-%s.log" % name))
        env.procs.append(self)
        harness.wait_port(port)

    def stats(self):
        return harness.get_json(self.port, "/__stats")

    def fault(self, mode):
        return request(self.port, "POST", "/__fault?mode=" + mode)


def test_prober_http_down_after_fall_up_after_rise(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = _router(env, _conf([b1, b2], health="http"))
    _wait_log(r, r"prober: b1 up: 1 check ok")
    _wait_log(r, r"prober: b2 up: 1 check ok")
    assert b1.stats()["health"] >= 1

    n = _nlines(r)
    t0 = time.time()
    b1.fault("500")
    t_down, _, n = _wait_log(r, r"prober: b1 down: status 500, 3 checks", after=n)
    took = t_down - t0
    # the first failing check comes within one interval, then two more intervals
    assert 2 * 0.9 * INTERVAL - 0.02 <= took <= 3 * 1.1 * INTERVAL + 0.3, took

    seen, bad = _spread(r.port, 40)
    assert bad == [] and seen == {"b2": 40}, (seen, bad)

    t0 = time.time()
    b1.fault("none")
    t_up, _, n = _wait_log(r, r"prober: b1 up: 2 checks ok", after=n)
    took = t_up - t0
    assert 0.9 * INTERVAL - 0.02 <= took <= 2 * 1.1 * INTERVAL + 0.3, took
    seen, bad = _spread(r.port, 40)
    assert bad == [] and seen == {"b1": 20, "b2": 20}, (seen, bad)
    assert "b2 down" not in r.output()


def test_prober_killed_backend_gets_no_traffic(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = _router(env, _conf([b1, b2], health="http"))
    _wait_log(r, r"prober: b1 up")
    _wait_log(r, r"prober: b2 up")
    n = _nlines(r)
    b1.stop()
    _wait_log(r, r"prober: b1 down: connection refused, 3 checks", after=n)
    seen, bad = _spread(r.port, 50)
    assert bad == [] and seen == {"b2": 50}, (seen, bad)


def test_prober_per_backend_health_path(env):
    # b1's own path answers 404 in fakebe (/nope is echoed with 200, /status?code=404 is not)
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = _router(env, _conf([(b1, ', health_path: "/status?code=404"'), b2], health="http"))
    _wait_log(r, r"prober: b1 down: status 404, 3 checks")
    _wait_log(r, r"prober: b2 up")
    assert b1.stats()["health"] == 0      # never asked for the global /health
    seen, bad = _spread(r.port, 20)
    assert bad == [] and seen == {"b2": 20}, (seen, bad)


def test_prober_babysitter_port_offset(env):
    p, q = _port_pair(), _port_pair()
    main = _Fakebe(env, "b1", p)
    sitter = _Fakebe(env, "b1-sitter", p + 1)
    b2 = _Fakebe(env, "b2", q)
    _Fakebe(env, "b2-sitter", q + 1)
    r = _router(env, _conf([main, b2], health="http", extra_health="port_offset: 1"))
    _wait_log(r, r"prober: b1 up: 1 check ok")
    _wait_log(r, r"prober: b2 up: 1 check ok")
    time.sleep(3 * INTERVAL)
    assert sitter.stats()["health"] >= 2
    assert main.stats()["health"] == 0 and b2.stats()["health"] == 0
    seen, bad = _spread(r.port, 20)
    assert bad == [] and seen == {"b1": 10, "b2": 10}, (seen, bad)

    # the babysitter says the backend is gone: it is, though its port still answers
    n = _nlines(r)
    sitter.stop()
    _wait_log(r, r"prober: b1 down: connection refused, 3 checks", after=n)
    seen, bad = _spread(r.port, 20)
    assert bad == [] and seen == {"b2": 20}, (seen, bad)


def test_prober_tcp(env):
    b1 = env.backend("b1")
    dead = harness.Backend(env.dir, "b2")
    dead.stop()
    r = _router(env, _conf([b1, dead], health="tcp"))
    _wait_log(r, r"prober: b1 up: 1 check ok")
    _wait_log(r, r"prober: b2 down: connection refused, 3 checks")
    assert b1.stats()["health"] == 0      # a tcp check sends nothing
    seen, bad = _spread(r.port, 10)
    assert bad == [] and seen == {"b1": 10}, (seen, bad)


def test_prober_llm(env):
    b1 = env.backend("b1", models="m1", extra=["-d"])
    b2 = env.backend("b2", models="m2", extra=["-d"])
    bad_model = env.backend("b3", models="m3", extra=["-d"])
    nomodel = env.backend("b4", extra=["-d"])
    r = _router(env, _conf([(b1, ", models: [m1]"), (b2, ", models: [m2, m1]"),
                          (bad_model, ", models: [nope]"), nomodel], health="llm"))
    _wait_log(r, r"prober: b1 up: 1 check ok")
    _wait_log(r, r"prober: b2 up: 1 check ok")
    _wait_log(r, r"prober: b4 up: 1 check ok")
    # b3 is configured for a model it does not serve: fakebe says 404
    _wait_log(r, r"prober: b3 down: status 404, 3 checks")
    time.sleep(2 * INTERVAL)
    for b, want in ((b1, "POST /v1/chat/completions -> 200"),
                    (b2, "POST /v1/chat/completions -> 200"),
                    (bad_model, "POST /v1/chat/completions -> 404"),
                    (nomodel, "GET /v1/models -> 200")):
        out = b.output()
        assert out.count(want) >= 2, (b.name, out[-500:])
        assert "/health" not in out, (b.name, out[-500:])
        assert b.stats()["health"] == 0


def test_prober_none_leaves_health_unknown(env):
    b1 = env.backend("b1")
    dead = harness.Backend(env.dir, "b2")
    dead.stop()
    r = _router(env, _conf([b1, dead], health="none"))
    time.sleep(4 * INTERVAL)
    assert b1.stats()["health"] == 0
    out = r.output()
    assert " up:" not in out and " down:" not in out, out


def _hammer(port, stop, out, lock):
    """GETs on one keep-alive connection until stop is set; (recv time, status, backend)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        while not stop.is_set():
            c.request("GET", "/x")
            r = c.getresponse()
            r.read()
            with lock:
                out.append((time.time(), r.status, r.getheader("X-Backend")))
    except Exception as e:  # noqa: BLE001 - shows up as a missing count
        with lock:
            out.append((time.time(), repr(e), None))
    finally:
        c.close()


def _reaction(env, conns, threshold=5):
    """Two backends, b1 turns to 500s under `conns` connections of load.  Returns
    (threshold reached -> breaker open per the log, -> last 500 seen by a client),
    in seconds, and the router."""
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = _router(env, _conf([b1, b2], health="none",
                         breaker="threshold: %d\ntimeout: 1s" % threshold,
                         workers=1 if conns == 1 else 2))
    seen, bad = _spread(r.port, 10)
    assert bad == [], bad
    b1.fault("500")
    stop, lock, out = threading.Event(), threading.Lock(), []
    ts = [threading.Thread(target=_hammer, args=(r.port, stop, out, lock))
          for _ in range(conns)]
    for t in ts:
        t.start()
    t_open, m, _ = _wait_log(r, r"prober: b1 breaker open: (\d+) consecutive failed requests")
    time.sleep(0.3)
    stop.set()
    for t in ts:
        t.join(10)
    out.sort()
    fails = [x for x in out if x[1] == 500]
    assert len(fails) >= threshold, out[:20]
    assert all(x[2] == "b1" for x in fails)
    assert all(x[1] == 200 for x in out if x not in fails), [x for x in out if x[1] != 200][:5]
    t_thr = fails[threshold - 1][0]
    t_last = fails[-1][0]
    # after the last 500, b2 takes everything
    after = [x for x in out if x[0] > t_last]
    assert after and all(x[2] == "b2" for x in after)
    return t_open - t_thr, t_last - t_thr, len(fails), int(m.group(1)), len(out), r


def test_prober_breaker_reaction(env):
    log_ms, traffic_ms, nfail, counted, total, _ = _reaction(env, 1)
    print("    breaker reaction, 1 connection: threshold -> open %.1f ms (log), "
          "-> last 500 %.1f ms; %d 500s, %d counted, %d requests"
          % (log_ms * 1000, traffic_ms * 1000, nfail, counted, total))
    assert log_ms <= 0.1 and traffic_ms <= 0.1


def test_prober_breaker_reaction_under_load(env):
    log_ms, traffic_ms, nfail, counted, total, _ = _reaction(env, 8)
    print("    breaker reaction, 8 connections, 2 workers: threshold -> open %.1f ms (log), "
          "-> last 500 %.1f ms; %d 500s, %d counted, %d requests"
          % (log_ms * 1000, traffic_ms * 1000, nfail, counted, total))
    assert log_ms <= 0.1 and traffic_ms <= 0.1


def test_prober_breaker_half_open_and_close(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    r = _router(env, _conf([b1, b2], health="none", breaker="threshold: 5\ntimeout: 1s"))
    b1.fault("500")
    seen, bad = _spread(r.port, 10)
    assert seen == {"b1": 5, "b2": 5} and bad == [500] * 5, (seen, bad)
    t_open, _, n = _wait_log(r, r"prober: b1 breaker open: 5 consecutive failed requests")
    seen, bad = _spread(r.port, 20)
    assert bad == [] and seen == {"b2": 20}, (seen, bad)

    # half-open after the timeout; the trial still fails: open again
    t_half, m, n = _wait_log(r, r"prober: b1 breaker half-open: 1 trial request after (\d+) ms",
                             after=n)
    assert 1.0 - 0.02 <= t_half - t_open <= 1.1, t_half - t_open
    seen, bad = _spread(r.port, 4)
    assert seen.get("b1") == 1 and bad == [500], (seen, bad)
    t_reopen, _, n = _wait_log(r, r"prober: b1 breaker open: trial request failed", after=n)
    seen, bad = _spread(r.port, 10)
    assert bad == [] and seen == {"b2": 10}, (seen, bad)

    # the backend recovers: the next trial closes the breaker
    b1.fault("none")
    t_half2, _, n = _wait_log(r, r"prober: b1 breaker half-open", after=n)
    assert 1.0 - 0.02 <= t_half2 - t_reopen <= 1.1, t_half2 - t_reopen
    # one request at a time until the trial reaches b1: once it succeeds the
    # breaker closes within a 10 ms poll, and b1 may then rightly get more
    seen, bad = {}, []
    for _ in range(4):
        s1, b1_ = _spread(r.port, 1)
        for k, v in s1.items():
            seen[k] = seen.get(k, 0) + v
        bad += b1_
        if seen.get("b1"):
            break
    assert bad == [] and seen.get("b1") == 1, (seen, bad)
    _wait_log(r, r"prober: b1 breaker closed: trial request succeeded", after=n)
    seen, bad = _spread(r.port, 20)
    assert bad == [] and seen == {"b1": 10, "b2": 10}, (seen, bad)


def test_prober_breaker_single_backend(env):
    """The only backend's breaker opens: clients get 503 at once, not 500s."""
    b1 = env.backend("b1")
    r = _router(env, _conf([b1], health="none", breaker="threshold: 3\ntimeout: 1s"))
    b1.fault("500")
    for _ in range(3):
        assert request(r.port, "GET", "/x")[0] == 500
    _wait_log(r, r"prober: b1 breaker open: 3 consecutive failed requests")
    t0 = time.time()
    st, hdrs, _ = request(r.port, "GET", "/x")
    assert st == 503 and time.time() - t0 < 0.5, st
    b1.fault("none")
    _wait_log(r, r"prober: b1 breaker half-open")
    assert request(r.port, "GET", "/x")[0] == 200
    _wait_log(r, r"prober: b1 breaker closed: trial request succeeded")
    assert all(request(r.port, "GET", "/x")[0] == 200 for _ in range(5))


def test_prober_follows_membership(env):
    """A reload adds b3 and removes b1: b3 is checked, b1 no longer."""
    b1, b2, b3 = env.backend("b1"), env.backend("b2"), env.backend("b3")
    r = _router(env, _conf([b1, b2], health="http"))
    _wait_log(r, r"prober: b1 up")
    n = _nlines(r)
    with open(r.conf, "w") as f:
        f.write(_conf([b2, b3], health="http").replace("LISTEN", "127.0.0.1:%d" % r.port)
                + "pidfile: %s\n" % r.pidfile)
    r.p.send_signal(signal.SIGHUP)
    _wait_log(r, r"prober: b3 up: 1 check ok", after=n)
    time.sleep(2 * INTERVAL)
    before = b1.stats()["health"]
    time.sleep(3 * INTERVAL)
    assert b1.stats()["health"] == before
    assert b3.stats()["health"] >= 3


def test_prober_restart_keeps_state(env):
    """A prober killed with SIGKILL comes back without forgetting that b1 is down
    and that b2's breaker is open: both still serve /x, so a prober that forgot
    would send them traffic at once."""
    b1, b2, b3 = env.backend("b1"), env.backend("b2"), env.backend("b3")
    r = _router(env, _conf([(b1, ', health_path: "/status?code=503"'), b2, b3],
                           health="http", breaker="threshold: 3\ntimeout: 5s"))
    _wait_log(r, r"prober: b1 down: status 503, 3 checks")
    _wait_log(r, r"prober: b2 up")
    _wait_log(r, r"prober: b3 up")
    b2.fault("500")
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    for _ in range(8):
        c.request("GET", "/x")
        c.getresponse().read()
    c.close()
    _wait_log(r, r"prober: b2 breaker open: \d+ consecutive")
    b2.fault("none")

    old = [p for p in r.workers() if "prober" in harness.proc_title(p)]
    assert len(old) == 1, old
    n = _nlines(r)
    os.kill(old[0], signal.SIGKILL)
    _wait_log(r, r"prober: (\w+ checks every|no active checks)", after=n)
    time.sleep(0.05)        # a few breaker polls of the new prober
    seen, bad = _spread(r.port, 30)
    assert bad == [] and seen == {"b3": 30}, (seen, bad)
    out = "\n".join(r.output().splitlines()[n:])
    assert "b1 up" not in out and "b2 breaker closed" not in out, out
