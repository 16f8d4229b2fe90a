"""Stream-aware failover (DESIGN "Stream-aware failover") on the simulated
vLLM fleet: with llm.hold_headers a backend that answers 5xx, closes, or
stalls before its first event is retried elsewhere and the client never
sees it; a stream that breaks after it began ends with an error event and
no clean end, in every framing; timeout.stream_idle bounds the gaps; and a
backend the prober marks down releases the requests still waiting there
for their first byte."""
import http.client
import json
import socket
import threading
import time

from harness import free_port, request, scripted_backend
from test_vllmsim import fault, metrics, sim


def _yaml(sims, extra="", strategy="llm", workers=1, health="  type: none", models=None):
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % workers,
             "strategy: %s" % strategy, "health:", health, "backends:"]
    for i, s in enumerate(sims):
        addr = s.addr if hasattr(s, "addr") else "127.0.0.1:%d" % s.port
        m = ", models: [%s]" % ", ".join(models[i]) if models else ""
        lines.append("  - { name: s%d, address: %s%s }" % (i, addr, m))
    return "\n".join(lines) + "\n" + extra


def _router(env, text):
    """routerd on text, with an admin listener (r.admin) for its /metrics."""
    aport = free_port()
    r = env.router(text + "admin:\n  address: 127.0.0.1:%d\n" % aport)
    r.admin = aport
    return r


def _body(i, stream=True, max_tokens=6):
    return {"model": "m1", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "request %d: %s" % (i, "x" * (40 + i))}]}


def _post(port, body, http10=False, timeout=10.0):
    """One POST on a fresh socket; returns (status, head, body bytes as sent, closed by peer)."""
    b = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"POST /v1/chat/completions HTTP/1.%d\r\nHost: t\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % (0 if http10 else 1, len(b)) + b)
    buf, closed = b"", False
    t_end = time.time() + timeout
    try:
        while time.time() < t_end:
            c = s.recv(65536)
            if not c:
                closed = True
                break
            buf += c
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep and b"chunked" in head.lower() and rest.endswith(b"0\r\n\r\n"):
                break
            if sep and b"content-length:" in head.lower():
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    break
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.") else None
    return status, head, rest, closed


def _dechunk(rest):
    """Chunked payload -> (data, clean end seen)."""
    data = b""
    while rest:
        ln, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        n = int(ln, 16)
        if n == 0:
            return data, True
        assert len(rest) >= n + 2 and rest[n:n + 2] == b"\r\n", rest[:n + 4]
        data += rest[:n]
        rest = rest[n + 2:]
    return data, False


def _events(data):
    text = data.decode()
    assert text.endswith("\n\n"), text[-200:]
    return [e[len("data: "):] for e in text.split("\n\n") if e]


def _clean_stream(st, head, rest):
    """A whole, clean stream: 200, chunked, every event JSON, ending [DONE] and the last chunk."""
    assert st == 200, (st, head, rest[:300])
    data, clean = _dechunk(rest)
    assert clean, rest[-200:]
    ev = _events(data)
    assert ev[-1] == "[DONE]", ev
    for e in ev[:-1]:
        obj = json.loads(e)
        assert "error" not in obj, obj
    return ev


def _stats(s):
    st, _, data = request(s.port, "GET", "/sim/stats")
    assert st == 200
    return json.loads(data)


def _fired(s, kind):
    return _stats(s)["faults_fired"].get(kind, 0)


def _prom(r, name, backend):
    return sum(v for (n, labels), v in metrics(r.admin).items()
               if n == name and 'backend="%s"' % backend in labels)


def _invisible(env, spec, extra="", n=12):
    """Backend 0 always fails with spec before its first event; every
    stream and every non-streamed request still answers whole, from
    backend 1, and backend 0 did see some of them."""
    bad, good = sim(env, "--model", "m1"), sim(env, "--model", "m1")
    fault(bad.port, spec)
    r = _router(env, _yaml([bad, good], extra="retries:\n  delay: 0s\n" + extra))
    for i in range(n):
        st, head, rest, _ = _post(r.port, _body(i))
        _clean_stream(st, head, rest)
        st, head, rest, _ = _post(r.port, _body(100 + i, stream=False))
        assert st == 200, (st, rest[:300])
        assert json.loads(rest)["choices"][0]["message"]["content"], rest
    assert _fired(bad, spec.split(":")[0]) > 0, _stats(bad)
    return r, bad, good


def test_held_500_before_first_event_is_invisible(env):
    """A 500 is not in retries.on_status (502,503,504) but an LLM request of
    a pool that holds heads moves on for any 5xx: nothing of it has shown."""
    r, bad, _ = _invisible(env, "500")
    assert _stats(bad)["status"].get("500", 0) > 0


def test_held_close_after_head_is_invisible(env):
    """break-after:0: the head and then the connection closes.  The head was
    held, so the client sees only the second backend's answer; and a held
    head is no success: the failures open s0's breaker."""
    r, _, _ = _invisible(env, "break-after:0", n=16)
    assert _prom(r, "routerd_backend_held_stream_failures_total", "s0") > 0
    assert _prom(r, "routerd_backend_breaker_opens_total", "s0") >= 1


def test_held_retry_keeps_the_connection(env):
    """Streams on one kept-alive client connection while one backend 500s
    before its first event: every answer whole, on the same connection."""
    bad, good = sim(env, "--model", "m1"), sim(env, "--model", "m1")
    fault(bad.port, "500")
    r = _router(env, _yaml([bad, good], extra="retries:\n  delay: 0s\n"))
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
    socks = set()
    for i in range(10):
        c.request("POST", "/v1/chat/completions", body=json.dumps(_body(i)),
                  headers={"Content-Type": "application/json"})
        resp = c.getresponse()
        data = resp.read()
        assert resp.status == 200, (resp.status, data)
        assert data.endswith(b"data: [DONE]\n\n"), data[-200:]
        socks.add(id(c.sock))
    assert len(socks) == 1
    c.close()
    assert _fired(bad, "500") > 0


def test_held_head_is_not_a_slow_reader(env):
    """timeout.first_token (2 s) above timeout.client_idle (500 ms): while the
    head is held the client has nothing to read, so it is not closed as a
    slow reader; the stall moves to the other backend."""
    bad, good = sim(env, "--model", "m1"), sim(env, "--model", "m1")
    fault(bad.port, "stall-first-token")
    r = _router(env, _yaml([bad, good], strategy="least_tokens", extra=(
        "retries:\n  delay: 0s\ntimeout:\n  first_token: 2s\n  client_idle: 500ms\n")))
    # until a request did meet the stall (where the first of them goes is the strategy's)
    for i in range(12):
        st, head, rest, _ = _post(r.port, _body(i))
        _clean_stream(st, head, rest)
        if _fired(bad, "stall-first-token") > 0:
            break
    assert _fired(bad, "stall-first-token") > 0


def test_held_stall_past_first_token_is_invisible(env):
    """stall-first-token: the head, then nothing.  timeout.first_token
    (here 500ms) ends that attempt and the stream comes from the other."""
    t0 = time.time()
    r, _, _ = _invisible(env, "stall-first-token", extra="timeout:\n  first_token: 500ms\n", n=3)
    # each stalled attempt costs about first_token, far from upstream_response's minute
    assert time.time() - t0 < 20
    assert _prom(r, "routerd_backend_held_stream_failures_total", "s0") > 0


def _all_on_bad(env, spec, extra="", http10=False):
    """Only the failing backend: the stream's start shows (head not held,
    or held and released by its first event), then it breaks."""
    bad = sim(env, "--model", "m1")
    fault(bad.port, spec)
    r = _router(env, _yaml([bad], extra=extra))
    return r, bad, _post(r.port, _body(1, max_tokens=12), http10=http10)


def _error_event(ev):
    err = json.loads(ev[-1])["error"]
    assert err["code"] == "upstream_stream_broken", err
    assert err["type"] == "server_error" and err["message"], err
    assert "[DONE]" not in ev, ev
    return err


def test_broken_stream_ends_with_error_event_chunked(env):
    """break-after:N for N across the stream: N whole events, then the error
    event, then the connection closed without the last chunk."""
    for n in (1, 3, 7):
        r, bad, (st, head, rest, closed) = _all_on_bad(env, "break-after:%d" % n)
        assert st == 200 and b"chunked" in head.lower(), head
        data, clean = _dechunk(rest)
        assert not clean, rest[-100:]
        assert closed
        ev = _events(data)
        assert len(ev) == n + 1, (n, ev)
        for e in ev[:-1]:
            assert json.loads(e)["choices"], e
        assert "closed" in _error_event(ev)["message"]
        assert _prom(r, "routerd_backend_streams_broken_total", "s0") == 1
        r.stop()
        bad.stop()


def test_broken_stream_ends_with_error_event_http10(env):
    """An HTTP/1.0 client reads to the close: the error event is the last
    thing before it."""
    r, _, (st, head, rest, closed) = _all_on_bad(env, "break-after:2", http10=True)
    assert st == 200 and b"chunked" not in head.lower(), head
    assert closed
    ev = _events(rest)
    assert len(ev) == 3, ev
    _error_event(ev)


def test_no_hold_stall_ends_with_error_event(env):
    """llm.hold_headers: false shows the head at once: a stall before the
    first event can no longer move on, and ends with the error event after
    timeout.first_token."""
    r, _, (st, head, rest, closed) = _all_on_bad(
        env, "stall-first-token",
        extra="llm:\n  hold_headers: false\ntimeout:\n  first_token: 400ms\n")
    assert st == 200, head
    data, clean = _dechunk(rest)
    assert not clean and closed
    ev = _events(data)
    assert len(ev) == 1, ev
    assert "first_token" in _error_event(ev)["message"]


def test_held_stall_with_no_other_backend_is_504(env):
    """Held, and nowhere else to go: the client gets a plain 504, not a
    stream that begins and breaks."""
    r, _, (st, head, rest, closed) = _all_on_bad(
        env, "stall-first-token", extra="timeout:\n  first_token: 300ms\nretries:\n  delay: 0s\n")
    assert st == 504, (head, rest)
    assert json.loads(rest.split(b"\r\n\r\n")[-1] if b"{" not in rest[:1] else rest)["error"]


def test_stream_idle_bounds_the_gap_between_events(env):
    """Decode steps of 1.5 s against timeout.stream_idle 400ms: the first
    event comes (first_token is generous), the second does not in time."""
    s = sim(env, "--model", "m1", "--decode-base-ms", "1500")
    r = _router(env, _yaml([s], extra="timeout:\n  first_token: 10s\n  stream_idle: 400ms\n"))
    t0 = time.time()
    st, head, rest, closed = _post(r.port, _body(1, max_tokens=5))
    assert st == 200, head
    data, clean = _dechunk(rest)
    assert not clean and closed
    ev = _events(data)
    # the first event, then the error: the second was 1.5 s away
    assert len(ev) == 2, ev
    assert "stream_idle" in _error_event(ev)["message"]
    assert time.time() - t0 < 4


def test_stream_sweep_of_sizes_and_framings_is_byte_exact(env):
    """Held heads change nothing of a healthy stream: for output lengths
    across the buffer (1 to 2000 events), chunked and HTTP/1.0, the bytes
    the client gets are the backend's own events, in order, whole."""
    s = sim(env, "--model", "m1", "--decode-base-ms", "0.2", "--max-batched-tokens", "4096")
    r = _router(env, _yaml([s]))
    for mt in (1, 2, 17, 300, 2000):
        for http10 in (False, True):
            st, head, rest, closed = _post(r.port, _body(mt, max_tokens=mt), http10=http10,
                                           timeout=30)
            assert st == 200, head
            if http10:
                assert closed
                ev = _events(rest)
            else:
                ev = _clean_stream(st, head, rest)
            assert ev[-1] == "[DONE]"
            toks = [json.loads(e)["choices"][0]["delta"]["content"] for e in ev[:-1]]
            assert len(toks) == mt, (mt, len(toks))


class _Staller:
    """A backend that accepts and never answers, and whose listener can be
    closed (so that the prober's tcp check fails) while it keeps the
    accepted connections open."""

    def __init__(self, env):
        self.conns = []
        self.requests = 0
        self.log = "staller"
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()
        env.procs.append(self)

    def _serve(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(s)
            threading.Thread(target=self._read, args=(s,), daemon=True).start()

    def _read(self, s):
        try:
            if s.recv(65536):
                self.requests += 1     # not a probe's bare connect
        except OSError:
            pass

    def go_down(self):
        self.ls.close()

    def stop(self, *a, **kw):
        try:
            self.ls.close()
        except OSError:
            pass
        for s in self.conns:
            s.close()

    def output(self):
        return "staller: %d connections, %d requests" % (len(self.conns), self.requests)


def _down_router(env, backends, strategy, extra=""):
    return _router(env, _yaml(backends, strategy=strategy, health=(
        "  type: tcp\n  interval: 200ms\n  timeout: 200ms\n  fall: 1\n  rise: 1"),
        extra="timeout:\n  upstream_response: 30s\nretries:\n  delay: 0s\n" + extra))


def _concurrently(fn, n):
    out = [None] * n
    ts = [threading.Thread(target=lambda i=i: out.__setitem__(i, fn(i))) for i in range(n)]
    for t in ts:
        t.start()
    return ts, out


def test_down_backend_releases_waiting_gets(env):
    """GETs hang at a backend that accepted them; the prober marks it down
    (its listener closed) and the GETs move to the other backend at once,
    not after upstream_response's 30 s."""
    st_ = _Staller(env)
    good = env.backend("good")
    r = _down_router(env, [st_, good], "round_robin")
    time.sleep(0.5)
    ts, out = _concurrently(lambda i: request(r.port, "GET", "/get/%d" % i, timeout=20), 6)
    deadline = time.time() + 5
    while st_.requests == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert st_.requests, "no request reached the stalling backend"
    t0 = time.time()
    st_.go_down()
    for t in ts:
        t.join(20)
    took = time.time() - t0
    assert all(o is not None and o[0] == 200 for o in out), out
    assert took < 5, took
    assert _prom(r, "routerd_backend_down_released_total", "s0") >= 1


def test_down_backend_keeps_waiting_posts_that_cannot_move(env):
    """A POST that is neither idempotent nor an LLM request may already be
    running at the backend: it is not replayed when the prober marks the
    backend down; it waits for its own timer (here 2 s) and gets 504, and
    the other backend never sees it."""
    st_ = _Staller(env)
    good = env.backend("good")
    r = _router(env, _yaml([st_, good], strategy="round_robin", health=(
        "  type: tcp\n  interval: 200ms\n  timeout: 200ms\n  fall: 1\n  rise: 1"),
        extra="timeout:\n  upstream_response: 2s\nretries:\n  delay: 0s\n"))
    time.sleep(0.5)
    got = []
    for i in range(4):
        t = threading.Thread(target=lambda i=i: got.append(
            request(r.port, "POST", "/post/%d" % i, b"x" * 10, timeout=20)[0]))
        t.start()
        t.join(0.05)
    deadline = time.time() + 5
    while st_.requests == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert st_.requests
    st_.go_down()
    deadline = time.time() + 10
    while len(got) < 4 and time.time() < deadline:
        time.sleep(0.05)
    assert st_.requests >= 1 and got.count(504) == st_.requests, (got, st_.requests)
    assert got.count(200) == 4 - st_.requests, got
    assert _prom(r, "routerd_backend_down_released_total", "s0") == 0


def test_down_backend_releases_waiting_llm_streams(env):
    """An LLM stream (a POST) of a pool that holds heads is safe to move:
    the prober's down moves it to the simulated backend, whole."""
    st_ = _Staller(env)
    good = sim(env, "--model", "m1")
    r = _down_router(env, [st_, good], "least_tokens")
    time.sleep(0.5)
    ts, out = _concurrently(lambda i: _post(r.port, _body(i), timeout=20), 4)
    deadline = time.time() + 5
    while st_.requests == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert st_.requests
    st_.go_down()
    for t in ts:
        t.join(20)
    for o in out:
        _clean_stream(o[0], o[1], o[2])
    assert _prom(r, "routerd_backend_down_released_total", "s0") >= 1


def test_down_backend_keeps_streams_no_other_backend_can_serve(env):
    """s0 serves m1, s1 only m2: a stream of m1 waiting at s0 when it goes
    down is not released to s1 (it cannot serve it); it waits for its
    first_token (1.5 s) and only then gets its 504."""
    st_ = _Staller(env)
    other = sim(env, "--model", "m2")
    r = _router(env, _yaml([st_, other], strategy="least_tokens", models=[["m1"], ["m2"]], health=(
        "  type: tcp\n  interval: 200ms\n  timeout: 200ms\n  fall: 1\n  rise: 1"),
        extra="timeout:\n  first_token: 1500ms\nretries:\n  delay: 0s\n"))
    time.sleep(0.5)
    t0 = time.time()
    ts, out = _concurrently(lambda i: _post(r.port, _body(i), timeout=20)[0], 1)
    deadline = time.time() + 5
    while st_.requests == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert st_.requests == 1
    st_.go_down()
    ts[0].join(20)
    assert out == [504], out
    assert time.time() - t0 >= 1.4
    assert _prom(r, "routerd_backend_down_released_total", "s0") == 0
    assert _stats(other)["requests"] == 0


def test_down_backend_alone_keeps_its_requests(env):
    """With no other backend to move to, a GET waiting at a backend marked
    down stays: the backend may still answer (here it never does, so it
    gets 504 after upstream_response, 2 s), and none is released."""
    st_ = _Staller(env)
    r = _router(env, _yaml([st_], strategy="round_robin", health=(
        "  type: tcp\n  interval: 200ms\n  timeout: 200ms\n  fall: 1\n  rise: 1"),
        extra="timeout:\n  upstream_response: 2s\nretries:\n  delay: 0s\n"))
    time.sleep(0.5)
    t0 = time.time()
    ts, out = _concurrently(lambda i: request(r.port, "GET", "/x", timeout=20)[0], 1)
    deadline = time.time() + 5
    while st_.requests == 0 and time.time() < deadline:
        time.sleep(0.05)
    st_.go_down()
    ts[0].join(20)
    assert out == [504], out
    assert time.time() - t0 >= 1.9
    assert _prom(r, "routerd_backend_down_released_total", "s0") == 0


_SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n")


def _chunk(b):
    return b"%x\r\n" % len(b) + b + b"\r\n"


def test_first_event_larger_than_the_buffer_is_not_held_back(env):
    """A first event of 200 KB cannot wait in a buffer for its end: the held
    head goes out with as much as fits and the rest follows at once, long
    before the backend's next event (1.5 s later)."""
    big = b'data: {"choices":[{"delta":{"content":"' + b"y" * 200000 + b'"}}]}\n\n'

    def respond(s, head, n):
        s.sendall(_SSE_HEAD + _chunk(big))
        time.sleep(1.5)
        s.sendall(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return False

    b = scripted_backend(env, "big", respond)
    r = _router(env, _yaml([b], strategy="least_tokens"))
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    body = json.dumps(_body(1)).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    t0, got = time.time(), b""
    while len(got) < len(big) and time.time() - t0 < 1.2:
        s.settimeout(max(0.01, 1.2 - (time.time() - t0)))
        try:
            c = s.recv(65536)
        except socket.timeout:
            break
        if not c:
            break
        got += c
    assert len(got) > len(big), (len(got), time.time() - t0)
    s.settimeout(5)
    while not got.endswith(b"0\r\n\r\n"):
        c = s.recv(65536)
        assert c
        got += c
    s.close()
    data, clean = _dechunk(got.partition(b"\r\n\r\n")[2])
    assert clean and data == big + b"data: [DONE]\n\n"


def test_break_inside_an_event_ends_it_before_the_error_event(env):
    """The backend dies in the middle of its second event (in a line, or
    after a whole line): the client gets the first event, the broken one
    ended, then the error event, and no clean end."""
    for cut, tail in ((b'data: {"cho', b"\n\n"), (b'data: {"choices":[]}\n', b"\n")):
        def respond(s, head, n, cut=cut):
            s.sendall(_SSE_HEAD + _chunk(b'data: {"choices":[]}\n\n'))
            time.sleep(0.1)
            s.sendall(_chunk(cut))
            time.sleep(0.1)
            return False

        b = scripted_backend(env, "cut%d" % len(cut), respond)
        r = _router(env, _yaml([b], strategy="least_tokens"))
        st, head, rest, closed = _post(r.port, _body(1))
        assert st == 200 and closed, head
        data, clean = _dechunk(rest)
        assert not clean
        first = b'data: {"choices":[]}\n\n'
        assert data.startswith(first + cut + tail), data
        ev = _events(data[len(first + cut + tail):])
        assert len(ev) == 1
        _error_event(ev)
        r.stop()


def test_llm_pool_does_not_replay_other_posts(env):
    """Only the inference endpoints may run twice: a JSON POST to
    /v1/batches in the same llm pool, waiting at a backend the prober marks
    down, stays there (504 after upstream_response, 2 s), never replayed."""
    st_ = _Staller(env)
    good = sim(env, "--model", "m1")
    r = _router(env, _yaml([st_, good], strategy="least_tokens", health=(
        "  type: tcp\n  interval: 200ms\n  timeout: 200ms\n  fall: 1\n  rise: 1"),
        extra="timeout:\n  upstream_response: 2s\nretries:\n  delay: 0s\n"))
    time.sleep(0.5)
    body = json.dumps({"model": "m1", "input_file_id": "f", "endpoint": "/v1/chat/completions"})
    got = []
    for i in range(6):
        threading.Thread(target=lambda: got.append(request(
            r.port, "POST", "/v1/batches", body, {"Content-Type": "application/json"},
            timeout=20)[0])).start()
        time.sleep(0.05)
    deadline = time.time() + 5
    while st_.requests == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert st_.requests >= 1
    st_.go_down()
    deadline = time.time() + 10
    while len(got) < 6 and time.time() < deadline:
        time.sleep(0.05)
    # the simulator answers 404 to /v1/batches: what matters is that none moved
    assert got.count(504) == st_.requests, (got, st_.requests)
    assert _prom(r, "routerd_backend_down_released_total", "s0") == 0


def test_comment_pings_are_not_a_first_token(env):
    """A backend that sends the head and then only SSE comments (": ping")
    has not sent a token: timeout.first_token (600ms) still ends it, the
    held head never showed, and the stream comes whole from the other."""
    def respond(s, head, n):
        s.sendall(_SSE_HEAD)
        for _ in range(30):
            time.sleep(0.1)
            s.sendall(_chunk(b": ping\n\n"))
        return False

    pinger = scripted_backend(env, "pinger", respond)
    good = sim(env, "--model", "m1")
    r = _router(env, _yaml([pinger, good], strategy="least_tokens",
                           extra="timeout:\n  first_token: 600ms\nretries:\n  delay: 0s\n"))
    for i in range(12):
        st, head, rest, _ = _post(r.port, _body(i))
        _clean_stream(st, head, rest)
        assert b": ping" not in rest, rest[:200]
        if i >= 3 and pinger.lines:
            break
    assert len(pinger.lines) >= 1, pinger.lines
    assert _prom(r, "routerd_backend_held_stream_failures_total", "s0") >= 1


def test_reload_in_the_middle_of_held_and_running_streams(env):
    """SIGHUP while streams run and while held ones wait out a stall at s0:
    the old worker finishes them (a held one retried elsewhere, unseen), the
    new one takes what follows, every stream whole."""
    import signal
    bad = sim(env, "--model", "m1")
    good = sim(env, "--model", "m1", "--decode-base-ms", "60")
    fault(bad.port, "stall-first-token")
    r = _router(env, _yaml([bad, good], strategy="least_tokens", extra=(
        "retries:\n  delay: 0s\ntimeout:\n  first_token: 1s\n")))
    for rnd in range(2):
        ts, out = _concurrently(lambda i: _post(r.port, _body(10 * rnd + i, max_tokens=10),
                                                timeout=20), 8)
        time.sleep(0.3)
        r.p.send_signal(signal.SIGHUP)
        for t in ts:
            t.join(20)
        for o in out:
            assert o is not None
            _clean_stream(o[0], o[1], o[2])
    assert _fired(bad, "stall-first-token") > 0
    assert "reload" in r.output()
