"""routerctl monitor is pushed by the master (DESIGN "Interfaces"): the master's
own writes (routerctl's and the admin API's) reach every monitor before the write's
reply leaves; the prober's transitions, which the master sees only in the table,
within a few ms of the prober's log moving (a 10 ms watch); registry sync state
changes as they are reported.  Real routerd, fakebe, fake registry and routerctl."""
import json
import os
import select
import socket
import struct
import subprocess
import time

from harness import backends_yaml, free_port, request, wait_port

ROUTERCTL = os.environ.get("ROUTERCTL", os.path.abspath("build/routerctl"))
TOKEN = "t0k3n"


class Monitor:
    """A subscribed control connection, speaking the frames directly."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""
        body = json.dumps({"cmd": ["monitor"], "json": True}).encode()
        self.s.sendall(struct.pack(">I", len(body)) + body)
        first = self.frame(5.0)
        assert first and first["ok"] and first["data"]["monitor"] is True, first

    def frame(self, timeout):
        """The next frame within timeout seconds, or None."""
        end = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    f = json.loads(self.buf[4:4 + n])
                    self.buf = self.buf[4 + n:]
                    return f
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.s], [], [], left)
            if r:
                c = self.s.recv(65536)
                assert c, "monitor closed"
                self.buf += c

    def events(self, timeout):
        out = []
        while True:
            f = self.frame(timeout)
            if f is None:
                return out
            out.append(f["event"])
            timeout = 0

    def close(self):
        self.s.close()


def _ctl(r, *args):
    p = subprocess.run([ROUTERCTL, "-s", r.ctlsock] + list(args), capture_output=True,
                       text=True, timeout=15)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _router(env, n=2, extra=""):
    bs = [env.backend("b%d" % i) for i in range(1, n + 1)]
    aport = free_port()
    r = env.router(backends_yaml(bs, extra="admin:\n  address: 127.0.0.1:%d\n  token: %s\n%s"
                                 % (aport, TOKEN, extra)))
    wait_port(aport)
    r.admin = aport
    return r, bs


def test_monitor_master_writes_pushed_before_reply(env):
    r, _ = _router(env)
    mon = Monitor(r.ctlsock)
    try:
        # each write's event is already on the monitor's socket when routerctl returns:
        # a poll of the table could not be that early every time
        for i in range(6):
            cmd = ("disable", "enable")[i % 2]
            _ctl(r, "backend", cmd, "b1")
            evs = mon.events(0.005)
            assert any(e["type"] == "backend" and e["backend"] == "b1" and
                       e["to"] == ("disabled", "enabled")[i % 2] for e in evs), (i, evs)
        # the admin API's write too: forwarded to the master, pushed before its answer
        st, _, _ = request(r.admin, "PUT", "/api/v1/router/strategy",
                           body=json.dumps({"strategy": "random"}),
                           headers={"Authorization": "Bearer " + TOKEN})
        assert st == 200
        evs = mon.events(0.005)
        assert any(e["type"] == "strategy" and e["to"] == "random" for e in evs), evs
        _ctl(r, "reload")
        evs = mon.events(0.005)
        assert any(e["type"] == "reload" for e in evs), evs
    finally:
        mon.close()


def test_monitor_breaker_transitions_arrive_fast(env):
    r, _ = _router(env)
    mon = Monitor(r.ctlsock)
    lat = []
    try:
        for i in range(8):
            want = ("open", "closed")[i % 2]
            t0 = time.monotonic()
            _ctl(r, "breaker", ("open", "close")[i % 2], "b2")
            while True:
                f = mon.frame(2.0)
                assert f is not None, "no breaker event for %s" % want
                e = f["event"]
                if e["type"] == "breaker" and e["to"] == want:
                    break
            lat.append(time.monotonic() - t0)
    finally:
        mon.close()
    # the prober applies an order within its 10 ms poll, the master sees its log
    # within 10 ms: far below the old 100 ms table poll
    assert max(lat) < 0.07, lat


def test_monitor_registry_events(env):
    from test_registry import fakereg, mech, reg_yaml
    b1 = env.backend("rb1")
    reg = fakereg(env)
    reg.set([mech(b1)])
    r = env.router(reg_yaml(reg.url))
    end = time.time() + 5
    while not os.path.exists(r.ctlsock) and time.time() < end:
        time.sleep(0.02)
    mon = Monitor(r.ctlsock)
    try:
        reg.mode("500")
        got = None
        end = time.monotonic() + 5
        while got is None and time.monotonic() < end:
            f = mon.frame(1.0)
            if f and f["event"]["type"] == "registry" and "failing" in f["event"]["message"]:
                got = f["event"]
        assert got is not None, "no registry failing event"
        reg.mode("ok")
        reg.set([])
        seen_ok = seen_gone = False
        end = time.monotonic() + 6
        while not (seen_ok and seen_gone) and time.monotonic() < end:
            f = mon.frame(1.0)
            if not f:
                continue
            e = f["event"]
            seen_ok |= e["type"] == "registry" and "sync ok" in e["message"]
            seen_gone |= e["type"] == "backend" and e.get("to") == "removed"
        assert seen_ok and seen_gone, (seen_ok, seen_gone)
    finally:
        mon.close()
