"""routerctl and the control socket: every command (text and -j), steering that
the proxy obeys on the next request, monitor events, permissions, and control
requests that are malformed, oversized, truncated or unknown."""
import json
import os
import select
import signal
import socket
import struct
import subprocess
import time

from harness import backends_yaml, free_port, pools_yaml, request

ROUTERCTL = os.environ.get("ROUTERCTL", os.path.abspath("build/routerctl"))


def ctl_yaml(env, text):
    sock = os.path.join(env.dir, "ctl.sock")
    return text + "control:\n  socket: %s\n" % sock, sock


def start(env, backends, strategy="round_robin", workers=1, extra=""):
    text, sock = ctl_yaml(env, backends_yaml(backends, strategy=strategy,
                                             workers=workers, extra=extra))
    r = env.router(text)
    r.sock = sock
    wait_sock(sock)
    return r


def wait_sock(path, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise AssertionError("no control socket at %s" % path)


def ctl(r, *args, json_out=False, user=None, env_sock=False, timeout=15):
    """Run routerctl against r; returns CompletedProcess (text)."""
    cmd = [ROUTERCTL]
    if user is not None:
        cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
    environ = dict(os.environ)
    if env_sock:
        environ["ROUTERD_SOCKET"] = r.sock
    else:
        cmd += ["-s", r.sock]
    if json_out:
        cmd.append("-j")
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=environ)


def ok(r, *args, **kw):
    p = ctl(r, *args, **kw)
    assert p.returncode == 0, "routerctl %s: rc %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr)
    assert p.stderr == "", p.stderr
    return p.stdout


def fails(r, *args, **kw):
    p = ctl(r, *args, **kw)
    assert p.returncode == 1, "routerctl %s: rc %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr)
    assert p.stdout == "", p.stdout
    assert p.stderr.startswith("routerctl: "), p.stderr
    return p.stderr


def jdata(r, *args):
    return json.loads(ok(r, *args, json_out=True))


def backend(r, name):
    for b in jdata(r, "show", "backends"):
        if b["name"] == name:
            return b
    raise AssertionError("no backend %s" % name)


def hits(r, n):
    """Send n requests through the proxy; count answers per X-Backend."""
    seen = {}
    for _ in range(n):
        st, h, _ = request(r.port, "GET", "/")
        assert st == 200, st
        seen[h.get("x-backend")] = seen.get(h.get("x-backend"), 0) + 1
    return seen


def settle(r):
    """One request after a change, before counting (tests that count run one
    worker).  The change must apply to the next request in every worker
    (test_ctl_next_request_sees_change checks that on its own); the counting
    tests do not also depend on it."""
    request(r.port, "GET", "/")


def wait_for(pred, timeout=5.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


# --- raw protocol helpers ---------------------------------------------------

def raw_conn(r):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(r.sock)
    return s


def frame(obj):
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


def read_frame(s):
    """One reply frame as JSON, or None if the master closed the connection."""
    hdr = b""
    while len(hdr) < 4:
        c = s.recv(4 - len(hdr))
        if not c:
            return None
        hdr += c
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        c = s.recv(n - len(body))
        assert c, "short frame"
        body += c
    return json.loads(body)


def closed(s, timeout=10.0):
    """True when the peer closes s within timeout (remaining bytes ignored)."""
    s.settimeout(timeout)
    try:
        while True:
            c = s.recv(65536)
            if not c:
                return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def still_fine(r):
    """The master answers routerctl and the proxy serves."""
    assert len(jdata(r, "show", "backends")) >= 1
    st, _, _ = request(r.port, "GET", "/")
    assert st == 200


# --- tests ------------------------------------------------------------------

def test_ctl_show_commands(env):
    b1 = env.backend("b1", models="phi3,llama3")
    b2 = env.backend("b2", models="phi3")
    r = start(env, [(b1, ", models: [phi3, llama3]"), (b2, ", models: [phi3]")], workers=2)
    hits(r, 4)

    out = ok(r, "show", "summary")
    assert "2 backends" in out and "POOL" in out and "NAME" in out, out
    d = jdata(r, "show", "summary")
    assert d["router"]["backends"] == 2 and d["router"]["workers"] == 2, d
    assert [p["name"] for p in d["pools"]] == ["default"]
    assert {b["name"] for b in d["backends"]} == {"b1", "b2"}

    out = ok(r, "show", "backends")
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["NAME", "POOL", "ADDRESS", "STATE", "HEALTH", "BREAKER"], out
    assert any(ln.startswith("b1 ") and b1.addr in ln for ln in lines), out
    d = jdata(r, "show", "backends")
    for key in ("name", "pool", "address", "state", "health", "breaker", "weight",
                "inflight", "requests", "fails", "models", "flags"):
        assert key in d[0], (key, d[0])
    assert sum(b["requests"] for b in d) == 4, d
    assert sorted(backend(r, "b1")["models"]) == ["llama3", "phi3"]

    out = ok(r, "show", "pools")
    assert out.splitlines()[1].split()[:2] == ["default", "round_robin"], out
    d = jdata(r, "show", "pools")
    assert d[0]["backends"] == 2 and d[0]["eligible"] == 2 and d[0]["strategy"] == "round_robin"

    out = ok(r, "show", "models")
    assert "phi3" in out and "llama3" in out, out
    d = {m["model"]: m for m in jdata(r, "show", "models")}
    assert sorted(d["phi3"]["backends"]) == ["b1", "b2"] and d["llama3"]["backends"] == ["b1"], d

    out = ok(r, "show", "stats")
    assert out.splitlines()[-1].split()[:2] == ["total", "4"], out
    d = jdata(r, "show", "stats")
    assert d["total"]["requests"] == 4 and d["total"]["2xx"] == 4, d

    out = ok(r, "show", "breakers")
    assert "closed" in out and "FORCED" in out, out
    d = jdata(r, "show", "breakers")
    assert {b["breaker"] for b in d} == {"closed"} and {b["forced"] for b in d} == {"none"}

    out = ok(r, "show", "workers")
    assert out.count("worker ") == 2, out
    d = jdata(r, "show", "workers")
    ws = [w for w in d if w["role"] == "worker"]
    assert len(ws) == 2 and all(w["pid"] > 0 for w in ws), d
    assert sorted(w["pid"] for w in ws) == sorted(p for p in r.workers() if p in [w["pid"] for w in ws])

    out = ok(r, "show", "config")
    assert "listen:" in out and b1.addr in out and "control:" in out, out
    d = jdata(r, "show", "config")
    assert d["settings"]["control.socket"] == r.sock, d["settings"]
    assert [b["name"] for b in d["pools"]["default"]["backends"]] == ["b1", "b2"]

    # abbreviations and ROUTERD_SOCKET
    assert ok(r, "sh", "b").splitlines()[0] == ok(r, "show", "backends").splitlines()[0]
    assert ok(r, "sh", "po", env_sock=True).splitlines()[0].startswith("POOL")


def test_ctl_show_config_masks_tokens(env):
    b1 = env.backend("b1")
    r = start(env, [b1], extra="admin:\n  address: 127.0.0.1:%d\n  token: s3cret-token\n"
              % free_port())
    out = ok(r, "show", "config")
    assert "s3cret-token" not in out and "********" in out, out
    raw = ok(r, "show", "config", json_out=True)
    assert "s3cret-token" not in raw
    assert json.loads(raw)["settings"]["admin.token"] == "********"


def test_ctl_parse_errors(env):
    b1 = env.backend("b1")
    r = start(env, [b1])
    e = fails(r, "s")
    assert e.strip() == "routerctl: ambiguous command: s (show, strategy, stop)", e
    e = fails(r, "frobnicate")
    assert "unknown command: frobnicate; valid commands: show, explain, backend, breaker" in e, e
    e = fails(r, "show")
    assert "incomplete command: show; valid commands: summary, backends" in e, e
    e = fails(r, "backend", "weight", "b1")
    assert e.strip() == "routerctl: usage: backend weight NAME N", e
    e = fails(r, "backend", "disable", "nosuch")
    assert "no such backend: nosuch" in e, e
    e = fails(r, "backend", "weight", "b1", "0")
    assert "weight 0" in e, e
    e = fails(r, "backend", "weight", "b1", "abc")
    assert "weight abc" in e, e
    e = fails(r, "strategy", "set", "bogus")
    assert "unknown strategy: bogus; valid strategies: round_robin" in e, e
    e = fails(r, "strategy", "set", "nopool", "random")
    assert "no such pool: nopool" in e, e
    p = subprocess.run([ROUTERCTL, "-s", os.path.join(env.dir, "nothere.sock"), "show", "pools"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "No such file" in p.stderr, p.stderr
    p = subprocess.run([ROUTERCTL, "-h"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "strategy set [POOL] NAME" in p.stdout, p.stdout
    still_fine(r)


def test_ctl_disable_enable(env):
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1, b2])
    assert set(hits(r, 10)) == {"b1", "b2"}

    out = ok(r, "backend", "disable", "b1")
    assert out.strip() == "backend b1: disabled", out
    assert backend(r, "b1")["state"] == "disabled"
    settle(r)
    assert hits(r, 20) == {"b2": 20}

    d = jdata(r, "backend", "enable", "b1")
    assert d["state"] == "enabled" and d["previous"] == "disabled", d
    settle(r)
    seen = hits(r, 20)
    assert seen.get("b1", 0) >= 8 and seen.get("b2", 0) >= 8, seen

    # disabling every backend: 503, and the table says why
    ok(r, "ba", "di", "b1")
    ok(r, "ba", "di", "b2")
    settle(r)
    st, _, _ = request(r.port, "GET", "/")
    assert st == 503, st
    ok(r, "backend", "enable", "b1")
    ok(r, "backend", "enable", "b2")
    settle(r)
    assert set(hits(r, 10)) == {"b1", "b2"}


def test_ctl_drain(env):
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1, b2])
    out = ok(r, "backend", "drain", "b2")
    assert out.strip() == "backend b2: draining", out
    assert backend(r, "b2")["state"] == "draining"
    assert "draining" in backend(r, "b2")["flags"]
    settle(r)
    assert hits(r, 20) == {"b1": 20}
    d = jdata(r, "backend", "drain", "b2")
    assert d["previous"] == "draining" and d["state"] == "draining"
    ok(r, "backend", "enable", "b2")
    settle(r)
    assert "b2" in hits(r, 10)


def test_ctl_weight(env):
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1, b2], strategy="weighted", workers=1)
    out = ok(r, "backend", "weight", "b1", "3")
    assert out.strip() == "backend b1: weight 3 (was 1)", out
    assert backend(r, "b1")["weight"] == 3
    settle(r)
    assert hits(r, 40) == {"b1": 30, "b2": 10}
    d = jdata(r, "backend", "weight", "b1", "1")
    assert d == {"backend": "b1", "weight": 1, "previous": 3,
                 "message": "backend b1: weight 1 (was 3)"}, d
    settle(r)
    seen = hits(r, 40)
    assert seen == {"b1": 20, "b2": 20}, seen


def test_ctl_strategy_set(env):
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1, (b2, ", weight: 4")], strategy="round_robin", workers=1)
    assert hits(r, 40) == {"b1": 20, "b2": 20}

    out = ok(r, "strategy", "set", "weighted")
    assert out.strip() == "pool default: round_robin -> weighted", out
    assert jdata(r, "show", "pools")[0]["strategy"] == "weighted"
    settle(r)
    assert hits(r, 50) == {"b1": 10, "b2": 40}

    d = jdata(r, "str", "s", "default", "round_robin")
    assert d["pools"] == [{"pool": "default", "previous": "weighted", "strategy": "round_robin"}], d
    settle(r)
    assert hits(r, 40) == {"b1": 20, "b2": 20}


def test_ctl_strategy_one_pool(env):
    a1 = env.backend("a1")
    a2 = env.backend("a2")
    c1 = env.backend("c1")
    text, sock = ctl_yaml(env, pools_yaml({"alpha": [a1, a2], "gamma": [c1]},
                                          routes=[("/a", "alpha"), ("/", "gamma")]))
    r = env.router(text)
    r.sock = sock
    wait_sock(sock)
    ok(r, "strategy", "set", "alpha", "least_connections")
    pools = {p["name"]: p["strategy"] for p in jdata(r, "show", "pools")}
    assert pools == {"alpha": "least_connections", "gamma": "round_robin"}, pools
    d = jdata(r, "strategy", "set", "random")
    assert {p["pool"] for p in d["pools"]} == {"alpha", "gamma"}, d
    pools = {p["name"]: p["strategy"] for p in jdata(r, "show", "pools")}
    assert pools == {"alpha": "random", "gamma": "random"}, pools


def test_ctl_breaker(env):
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1, b2])
    out = ok(r, "breaker", "open", "b1")
    assert out.startswith("backend b1: breaker ordered open"), out
    br = {b["name"]: b for b in jdata(r, "show", "breakers")}
    assert br["b1"]["forced"] == "open" and br["b1"]["force_seq"] >= 1, br
    assert br["b2"]["forced"] == "none"
    # the prober applies the order: the breaker opens and b1 takes no traffic
    wait_for(lambda: backend(r, "b1")["breaker"] == "open", what="b1 breaker open")
    settle(r)
    assert hits(r, 20) == {"b2": 20}
    assert "open" in ok(r, "show", "breakers")

    d = jdata(r, "breaker", "close", "b1")
    assert d["forced"] == "close", d
    wait_for(lambda: backend(r, "b1")["breaker"] == "closed", what="b1 breaker closed")
    settle(r)
    assert "b1" in hits(r, 10)
    fails(r, "breaker", "open", "nosuch")


def test_ctl_log(env):
    b1 = env.backend("b1")
    r = start(env, [b1])
    assert ok(r, "log", "verbose").strip() == "logging verbose"
    assert jdata(r, "log", "brief") == {"verbose": 0, "message": "logging brief"}
    assert ok(r, "log", "reopen").strip() == "log files reopened"
    assert jdata(r, "log", "reopen")["reopened"] is True
    assert jdata(r, "l", "v")["verbose"] == 1
    ok(r, "log", "brief")
    out = r.output()
    assert "control: uid 0" in out and "log verbose" in out, out[-2000:]


def test_ctl_reload(env):
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1])
    with open(r.conf) as f:
        good = f.read()
    # a bad file: exit 1 with FILE:LINE:COL, the old config keeps serving
    with open(r.conf, "w") as f:
        f.write(good.replace("strategy: round_robin", "strategy: nonsense"))
    p = ctl(r, "reload")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("routerctl: "), p.stderr
    assert ("%s:" % r.conf) in p.stderr, p.stderr
    import re
    assert re.search(re.escape(r.conf) + r":\d+:\d+: ", p.stderr), p.stderr
    still_fine(r)
    assert hits(r, 4) == {"b1": 4}

    # a good file: exit 0, b2 joins
    with open(r.conf, "w") as f:
        f.write(good.replace("backends:\n", "backends:\n  - { name: b2, address: %s }\n" % b2.addr))
    out = ok(r, "reload")
    assert out.startswith("reloaded"), out
    wait_for(lambda: {b["name"] for b in jdata(r, "show", "backends")} == {"b1", "b2"},
             what="b2 in the table")
    settle(r)
    assert set(hits(r, 20)) == {"b1", "b2"}
    # the old generation has drained (it holds counter stripes) before the next one
    wait_for(lambda: all(w["state"] == "running" for w in jdata(r, "show", "workers")),
             what="the old generation to drain")
    d = jdata(r, "reload")
    assert d["generation"] >= 3, d


def test_ctl_stop(env):
    b1 = env.backend("b1")
    r = start(env, [b1])
    out = ok(r, "stop")
    assert out.strip() == "stopping", out
    r.p.wait(10)
    assert r.p.returncode == 0, r.p.returncode
    assert not os.path.exists(r.sock), "socket left behind"


def test_ctl_permissions(env):
    b1 = env.backend("b1")
    r = start(env, [b1])
    st = os.stat(r.sock)
    assert st.st_mode & 0o777 == 0o660, oct(st.st_mode)
    # nobody cannot even connect to a 0660 root socket
    os.chmod(env.dir, 0o755)
    p = ctl(r, "show", "backends", user=65534)
    assert p.returncode == 1 and "Permission denied" in p.stderr, p.stderr
    # let it connect: reads are allowed, writes refused by SO_PEERCRED
    os.chmod(r.sock, 0o666)
    out = ok(r, "show", "backends", user=65534)
    assert "b1" in out
    mon = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            ROUTERCTL, "-s", r.sock, "monitor"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        assert "monitoring" in read_lines(mon, 1)[0]
    finally:
        mon.send_signal(signal.SIGINT)
        mon.wait(5)
    for cmd in (["backend", "disable", "b1"], ["backend", "weight", "b1", "5"],
                ["strategy", "set", "random"], ["breaker", "open", "b1"],
                ["reload"], ["stop"], ["log", "verbose"]):
        e = fails(r, *cmd, user=65534)
        assert e.strip() == "routerctl: permission denied", (cmd, e)
    b = backend(r, "b1")
    assert b["state"] == "enabled" and b["weight"] == 1, b
    assert jdata(r, "show", "pools")[0]["strategy"] == "round_robin"
    assert r.p.poll() is None
    assert "permission denied" in r.output()
    still_fine(r)


_pending = {}


def read_lines(p, n, timeout=10.0):
    """n lines from p.stdout (a binary pipe, read unbuffered), waiting at most timeout in all."""
    fd = p.stdout.fileno()
    buf = _pending.get(fd, b"")
    end = time.time() + timeout
    while buf.count(b"\n") < n:
        left = end - time.time()
        assert left > 0, "only %r" % buf
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            c = os.read(fd, 65536)
            assert c, "monitor ended: %r" % buf
            buf += c
    lines = buf.split(b"\n")
    _pending[fd] = b"\n".join(lines[n:])
    return [ln.decode() for ln in lines[:n]]


def test_ctl_monitor(env):
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1, b2])
    mon = subprocess.Popen([ROUTERCTL, "-s", r.sock, "monitor"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    monj = subprocess.Popen([ROUTERCTL, "-s", r.sock, "-j", "monitor"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        first = read_lines(mon, 1)
        assert "monitoring" in first[0], first
        assert json.loads("".join(read_lines(monj, 4)))["monitor"] is True

        ok(r, "backend", "disable", "b1")
        line = read_lines(mon, 1)[0]
        assert " backend: b1 (pool default): enabled -> disabled" in line, line
        ev = json.loads(read_lines(monj, 1)[0])
        assert ev["type"] == "backend" and ev["backend"] == "b1" and ev["to"] == "disabled", ev
        assert ev["time"].endswith("Z")

        ok(r, "strategy", "set", "random")
        line = read_lines(mon, 1)[0]
        assert "strategy: pool default: round_robin -> random" in line, line
        read_lines(monj, 1)

        ok(r, "breaker", "open", "b2")
        line = read_lines(mon, 1)[0]
        assert "breaker: b2 (pool default): closed -> open" in line, line
        ev = json.loads(read_lines(monj, 1)[0])
        assert ev["type"] == "breaker" and ev["from"] == "closed" and ev["to"] == "open", ev

        # another client is served while two monitors stream
        ok(r, "backend", "enable", "b1")
        read_lines(mon, 1)
        read_lines(monj, 1)
        settle(r)
        still_fine(r)
    finally:
        for p in (mon, monj):
            p.send_signal(signal.SIGINT)
            p.wait(5)
    # the master noticed they left and keeps serving
    still_fine(r)


def test_ctl_malformed_requests(env):
    b1 = env.backend("b1")
    r = start(env, [b1])

    # a request that hangs half-way: the master keeps answering others meanwhile
    half = raw_conn(r)
    half.sendall(struct.pack(">I", 100) + b'{"cmd": ["sh')
    t0 = time.time()

    # garbage without framing reads as an oversized length: error, then closed
    s = raw_conn(r)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    rep = read_frame(s)
    assert rep["ok"] is False and "bad frame" in rep["error"], rep
    assert closed(s)

    # zero length
    s = raw_conn(r)
    s.sendall(struct.pack(">I", 0))
    rep = read_frame(s)
    assert rep["ok"] is False and "bad frame" in rep["error"], rep
    assert closed(s)

    # oversized: 64 KiB + 1 announced, and a 1 MiB body actually sent
    s = raw_conn(r)
    try:
        s.sendall(struct.pack(">I", 65537) + b"x" * 65537)
    except (BrokenPipeError, ConnectionResetError):
        pass
    rep = read_frame(s)
    assert rep is None or (rep["ok"] is False and "bad frame" in rep["error"]), rep
    assert closed(s)

    # exactly 64 KiB of JSON is allowed (and is an unknown command)
    s = raw_conn(r)
    pad = "x" * (65536 - len(json.dumps({"cmd": ["frob"], "pad": ""})))
    body = json.dumps({"cmd": ["frob"], "pad": pad}).encode()
    assert len(body) == 65536
    s.sendall(frame(body))
    rep = read_frame(s)
    assert rep == {"ok": False, "error": "unknown command: frob"}, rep
    s.close()

    # not JSON inside a good frame: error and closed
    s = raw_conn(r)
    s.sendall(frame(b"\x00\xff not json"))
    rep = read_frame(s)
    assert rep["ok"] is False and rep["error"].startswith("bad request"), rep
    assert closed(s)

    # well-formed but wrong: error replies on a connection that stays usable
    s = raw_conn(r)
    for req, want in (({"cmd": ["frobnicate", "now"]}, "unknown command: frobnicate now"),
                      ({"cmd": "show backends"}, "bad request"),
                      ({"cmd": []}, "bad request"),
                      ({"cmd": ["show", 5]}, "bad request"),
                      ({"nocmd": 1}, "bad request"),
                      ([1, 2], "bad request"),
                      ({"cmd": ["sh", "b"]}, "unknown command: sh b"),
                      ({"cmd": ["backend", "weight", "b1"]}, "usage: backend weight NAME N"),
                      ({"cmd": ["show", "backends", "extra"]}, "usage: show backends")):
        s.sendall(frame(req))
        rep = read_frame(s)
        assert rep is not None, req
        if rep["ok"] is False and "not a JSON object" in rep["error"]:
            s = raw_conn(r)  # a non-object request ends the connection
            continue
        assert rep["ok"] is False and rep["error"].startswith(want), (req, rep)
    # and the same connection still runs a real command
    s.sendall(frame({"cmd": ["show", "pools"], "json": True}))
    rep = read_frame(s)
    assert rep["ok"] is True and rep["data"][0]["name"] == "default", rep
    # two requests in one write: two replies in order
    s.sendall(frame({"cmd": ["show", "pools"]}) + frame({"cmd": ["show", "workers"]}))
    a, b = read_frame(s), read_frame(s)
    assert a["data"][0]["name"] == "default" and b["data"][0]["role"] == "worker", (a, b)
    s.close()

    # a peer that disconnects before its reply is read
    s = raw_conn(r)
    s.sendall(frame({"cmd": ["show", "config"]}))
    s.close()

    # routerctl works while the half request is still pending
    still_fine(r)
    assert time.time() - t0 < 5.0, "the checks above took too long to prove much"
    # the half request is dropped after 5 s
    assert closed(half, timeout=10.0)
    assert 4.0 <= time.time() - t0 <= 8.0, time.time() - t0

    assert r.p.poll() is None, "routerd died"
    still_fine(r)


def test_ctl_many_clients(env):
    b1 = env.backend("b1")
    r = start(env, [b1])
    idle = [raw_conn(r) for _ in range(10)]
    procs = [subprocess.Popen([ROUTERCTL, "-s", r.sock, "-j", "show", "backends"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    for p in procs:
        out, err = p.communicate(timeout=15)
        assert p.returncode == 0, err
        assert json.loads(out)[0]["name"] == "b1"
    for s in idle:
        s.close()
    still_fine(r)


def test_ctl_next_request_sees_change(env):
    """DESIGN: a change applies to the next request in every worker.  Each
    disable is followed at once by one request, which must not reach b1."""
    b1 = env.backend("b1")
    b2 = env.backend("b2")
    r = start(env, [b1, b2], workers=1)
    leaks = 0
    for _ in range(20):
        ok(r, "backend", "disable", "b1")
        _, h, _ = request(r.port, "GET", "/")
        leaks += h.get("x-backend") == "b1"
        ok(r, "backend", "enable", "b1")
        request(r.port, "GET", "/")
    assert leaks == 0, "%d of 20 requests reached b1 right after it was disabled" % leaks
