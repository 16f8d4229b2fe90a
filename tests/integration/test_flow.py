"""Flow control (DESIGN "Flow control"): host-wide rate limits with
OpenAI's 429s, the admission queue's bands, deadlines and token-weighted
fairness across workers, and the retry budget, on real routerd processes
in front of fakebe and the simulated vLLM fleet."""
import http.client
import json
import os
import random
import signal
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import Router, free_port, raw, request
from test_vllmsim import metrics, sim


def _yaml(backends, workers=1, extra="", strategy="round_robin", opts="", health="  type: none"):
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % workers,
             "strategy: %s" % strategy, "health:", health, "backends:"]
    for b in backends:
        addr = b.addr if hasattr(b, "addr") else "127.0.0.1:%d" % b.port
        name = getattr(b, "name", "s%d" % b.port)
        lines.append("  - { name: %s, address: %s%s }" % (name, addr, opts))
    return "\n".join(lines) + "\n" + extra


def _router(env, text):
    """routerd on text with an admin listener (r.admin), in a directory of its own."""
    aport = free_port()
    d = tempfile.mkdtemp(dir=env.dir)
    r = Router(d, text + "admin:\n  address: 127.0.0.1:%d\n" % aport)
    env.procs.append(r)
    r.admin = aport
    return r


def _prom(r, name, **labels):
    """The sum of name's samples in routerd's /metrics that carry labels."""
    want = ['%s="%s"' % kv for kv in labels.items()]
    st, _, data = request(r.admin, "GET", "/metrics")
    assert st == 200, st
    total = 0.0
    for ln in data.decode().splitlines():
        m = re.match(r'^([a-z_:]+)(?:\{([^}]*)\})? (\S+)$', ln)
        if m and m.group(1) == name and all(w in (m.group(2) or "") for w in want):
            total += float(m.group(3))
    return total


class _Hammer:
    """threads each sending GETs on a keep-alive connection of its own until
    stop; every answer's status and the time it was sent are kept."""

    def __init__(self, port, threads, path="/x", headers=None, limit=40000):
        self.port, self.path, self.headers = port, path, headers or {}
        self.stop_at = None
        self.res = []
        self.lock = threading.Lock()
        self.limit = limit
        self.ts = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        mine = []
        while time.time() < self.stop_at and len(mine) < self.limit:
            t = time.time()
            try:
                c.request("GET", self.path, headers=self.headers)
                r = c.getresponse()
                r.read()
                mine.append((t, r.status, dict((k.lower(), v) for k, v in r.getheaders())))
                if r.getheader("connection", "").lower() == "close":
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.close()
        with self.lock:
            self.res.extend(mine)

    def run(self, seconds):
        self.stop_at = time.time() + seconds
        for t in self.ts:
            t.start()
        for t in self.ts:
            t.join()
        return sorted(self.res, key=lambda x: x[0])


def test_rate_limit_requests_per_second_exact_over_four_workers(env):
    """N requests per second, one budget for 4 workers: over a run the
    admitted count is the bucket (burst) plus N per second, within 1 %;
    each refusal is OpenAI's 429 with its headers."""
    be = env.backend("a")
    n, burst = 100, 10
    r = _router(env, _yaml([be], workers=4, extra=(
        "ratelimits:\n  - { tenant: \"*\", requests_per_second: %d, burst: %d }\n" % (n, burst))))
    res = _Hammer(r.port, 16, headers={"Authorization": "Bearer sk-one-tenant-0001"}).run(6.0)
    ok = [x for x in res if x[1] == 200]
    lim = [x for x in res if x[1] == 429]
    assert len(ok) + len(lim) == len(res), set(x[1] for x in res)
    assert len(lim) > 5 * len(ok), (len(ok), len(lim))     # offered well past the limit
    span = res[-1][0] - res[0][0]
    want = burst + n * span
    assert abs(len(ok) - want) <= 0.01 * want + 1, (len(ok), want, span)
    # spread over the workers: each served some (SO_REUSEPORT spreads the 16 connections)
    per = [_prom(r, "routerd_tenant_requests_total")]
    assert per[0] == len(ok), per
    h = ok[0][2]           # an admitted answer says what is left, as OpenAI's do
    assert h["x-ratelimit-limit-requests"] == str(burst), h
    assert 0 <= int(h["x-ratelimit-remaining-requests"]) <= burst - 1, h
    assert "x-ratelimit-limit-tokens" not in h, h
    h = lim[-1][2]
    assert int(h["retry-after"]) >= 1 and 0 < int(h["retry-after-ms"]) <= 1000, h
    assert h["x-ratelimit-limit-requests"] == str(burst), h
    assert h["x-ratelimit-remaining-requests"] == "0", h
    assert h["x-ratelimit-reset-requests"].endswith("ms"), h
    st, hd, body = request(r.port, "GET", "/x", headers={"Authorization": "Bearer sk-one-tenant-0001"})
    while st != 429:
        st, hd, body = request(r.port, "GET", "/x", headers={"Authorization": "Bearer sk-one-tenant-0001"})
    err = json.loads(body)["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests", err
    assert "param" in err and err["param"] is None, err
    assert "sk-o...0001" in err["message"], err    # the key is shown cut to its ends
    # another tenant has a budget of its own
    st, _, _ = request(r.port, "GET", "/x", headers={"Authorization": "Bearer sk-other"})
    assert st == 200


def test_rate_limit_named_tenant_and_client_address(env):
    """A named entry wins over *; without the header the tenant is the
    client's address; tokens_per_minute over a whole minute is refused as too large."""
    be = env.backend("a")
    r = _router(env, _yaml([be], workers=2, extra=(
        "queue:\n  tenant: \"header:X-Api-Key\"\n"
        "ratelimits:\n  - { tenant: \"*\", requests_per_second: 1000 }\n"
        "  - { tenant: \"gold\", requests_per_second: 1, burst: 2 }\n"
        "  - { tenant: \"127.0.0.1\", requests_per_second: 1, burst: 1 }\n")))
    sts = [request(r.port, "GET", "/x", headers={"X-Api-Key": "gold"})[0] for _ in range(4)]
    assert sts[:2] == [200, 200] and sts[2:] == [429, 429], sts
    st, h, body = request(r.port, "GET", "/x", headers={"X-Api-Key": "gold"})
    assert "...ld" in json.loads(body)["error"]["message"]    # a key's field: shown cut
    sts = [request(r.port, "GET", "/x")[0] for _ in range(3)]
    assert sts == [200, 429, 429], sts
    sts = [request(r.port, "GET", "/x", headers={"X-Api-Key": "k%d" % i})[0] for i in range(20)]
    assert sts == [200] * 20, sts


def test_tokens_per_minute_within_5_percent_mixed_prompts(env):
    """A tokens_per_minute budget, mixed prompt sizes, the backend's usage
    correcting each charge: the tokens the backend reports for the admitted
    requests are the bucket (a minute's worth) plus the rate, within 5 %."""
    s = sim(env, "--model", "m1", "--max-num-seqs", "16", "--prefill-us-per-token", "5",
            "--decode-base-ms", "2")
    tpm = 12000
    r = _router(env, _yaml([s], workers=2, extra=(
        "ratelimits:\n  - { tenant: \"*\", tokens_per_minute: %d }\n" % tpm)))
    used, lock = [], threading.Lock()
    t_end = time.time() + 12.0
    sizes = [40, 200, 800, 2400]

    def client(seed):
        rnd = random.Random(seed)
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        while time.time() < t_end:
            body = json.dumps({"model": "m1", "max_tokens": rnd.choice([4, 16, 32]),
                               "messages": [{"role": "user", "content": "w%d " % seed +
                                             "abcd" * (rnd.choice(sizes) // 4)}]})
            t = time.time()
            c.request("POST", "/v1/chat/completions", body=body,
                      headers={"Content-Type": "application/json", "Authorization": "Bearer t1"})
            resp = c.getresponse()
            data = resp.read()
            if resp.status == 200:
                u = json.loads(data)["usage"]
                with lock:
                    used.append((t, u["prompt_tokens"] + u["completion_tokens"]))
            else:
                assert resp.status == 429, (resp.status, data[:200])
                assert json.loads(data)["error"]["type"] == "tokens"
                time.sleep(0.01)
        c.close()

    t0 = time.time()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    span = max(t for t, _ in used) - t0
    got = sum(n for _, n in used)
    want = tpm + tpm / 60.0 * span
    assert abs(got - want) <= 0.05 * want, (got, want, span, len(used))
    # a request that a whole minute cannot hold: refused at once, said so
    st, h, body = request(r.port, "POST", "/v1/chat/completions", body=json.dumps(
        {"model": "m1", "max_tokens": 50000, "messages": [{"role": "user", "content": "hi"}]}),
        headers={"Content-Type": "application/json", "Authorization": "Bearer t2"})
    assert st == 429 and "too large" in json.loads(body)["error"]["message"], (st, body)
    assert h["x-ratelimit-limit-tokens"] == str(tpm), h
    st, h, body = request(r.port, "POST", "/v1/chat/completions", body=json.dumps(
        {"model": "m1", "max_tokens": 10, "messages": [{"role": "user", "content": "abcd" * 25}]}),
        headers={"Content-Type": "application/json", "Authorization": "Bearer t3"})
    assert st == 200, (st, body)
    left = int(h["x-ratelimit-remaining-tokens"])
    assert tpm - 200 < left < tpm, h       # a fresh bucket, less this request's estimate
    assert "x-ratelimit-limit-requests" not in h, h


def _slow(port, ms, headers=None, out=None, key=None):
    st, h, body = request(port, "GET", "/slow?ms=%d" % ms, headers=headers or {}, timeout=30)
    if out is not None:
        out.append((key, time.time(), st, h.get("x-backend")))
    return st


def test_deadline_passed_in_queue_or_before_never_reaches_backend(env):
    be = env.backend("a")
    r = _router(env, _yaml([be], workers=2, opts=", max_conns: 1",
                           extra="queue:\n  timeout: 10s\n"))
    busy = threading.Thread(target=_slow, args=(r.port, 1500))
    busy.start()
    time.sleep(0.3)
    n0 = be.stats()["requests"]
    t = time.time()
    st, _, body = request(r.port, "GET", "/slow?ms=1", headers={"X-Request-Deadline": "300ms"})
    waited = time.time() - t
    assert st == 503 and "deadline" in json.loads(body)["error"]["message"], (st, body)
    assert 0.25 <= waited < 1.2, waited
    st, _, body = request(r.port, "GET", "/slow?ms=1",
                          headers={"X-Request-Deadline": "%.3f" % (time.time() + 0.2)})
    assert st == 503, st
    busy.join()
    # already past on arrival: 503 at once, even with a free backend
    st, _, body = request(r.port, "GET", "/x", headers={"X-Request-Deadline": "%.3f" % (time.time() - 1)})
    assert st == 503 and "deadline" in json.loads(body)["error"]["message"], (st, body)
    assert be.stats()["requests"] == n0, be.stats()
    st, _, _ = request(r.port, "GET", "/x", headers={"X-Request-Deadline": "soon"})
    assert st == 400
    st, _, _ = request(r.port, "GET", "/x", headers={"X-Request-Deadline": "5s"})
    assert st == 200
    assert _prom(r, "routerd_queue_deadline_dropped_total") == 2
    assert _prom(r, "routerd_queue_deadline_expired_total") == 1


def test_high_priority_overtakes_queued_low_across_workers(env):
    """One backend slot, two workers: low-priority requests queue in order
    (on either worker); a high-priority one sent last is served first.
    Its tenant may go up to 7 (its ratelimits entry); the others may only
    lower theirs (X-Priority: 5 from them is 0)."""
    be = env.backend("a")
    r = _router(env, _yaml([be], workers=2, opts=", max_conns: 1", extra=(
        "ratelimits:\n  - { tenant: \"hi\", priority: 7 }\n")))
    out = []
    ts = [threading.Thread(target=_slow, args=(r.port, 600), kwargs={"out": out, "key": "busy"})]
    ts[0].start()
    time.sleep(0.2)
    for i in range(6):
        ts.append(threading.Thread(target=_slow, args=(r.port, 60),
                                   kwargs={"headers": {"X-Priority": "-2", "Authorization": "Bearer low"},
                                           "out": out, "key": "low%d" % i}))
        ts[-1].start()
        time.sleep(0.05)
    ts.append(threading.Thread(target=_slow, args=(r.port, 60),
                               kwargs={"headers": {"X-Priority": "5", "Authorization": "Bearer hi"},
                                       "out": out, "key": "high"}))
    ts[-1].start()
    for t in ts:
        t.join()
    order = [k for k, _, st, _ in sorted(out, key=lambda x: x[1])]
    assert all(st == 200 for _, _, st, _ in out), out
    assert order[0] == "busy" and order[1] == "high", order
    assert order[2:] == ["low%d" % i for i in range(6)], order   # one tenant, one band: in order
    assert _prom(r, "routerd_queue_admitted_total", priority="5") == 1
    assert _prom(r, "routerd_queue_admitted_total", priority="-2") == 6
    # a tenant without a higher priority cannot raise its own
    ts = [threading.Thread(target=_slow, args=(r.port, 300))]
    ts[0].start()
    time.sleep(0.15)
    ts.append(threading.Thread(target=_slow, args=(r.port, 1),
                               kwargs={"headers": {"X-Priority": "5", "Authorization": "Bearer low"}}))
    ts[-1].start()
    for t in ts:
        t.join()
    assert _prom(r, "routerd_queue_admitted_total", priority="5") == 1
    assert _prom(r, "routerd_queue_admitted_total", priority="0") >= 1
    # two tenant fields: which tenant is it?  Refused, not taken as the address
    resp = raw(r.port, b"GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a\r\n"
               b"Authorization: Bearer b\r\n\r\n", shut=True)
    assert resp.startswith(b"HTTP/1.1 400 "), resp[:200]


_DRIVER = r'''
import json, random, socket, sys, threading, time
port, key, n, secs, first = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rnd = random.Random(key)
out, lock = [], threading.Lock()
t_end = time.time() + secs
body = json.dumps({"model": "demo-model", "stream": True, "max_tokens": 3,
                   "messages": [{"role": "user", "content": "q" * 400}]}).encode()
def run():
    while time.time() < t_end:
        # prefills of first/2 to 3*first/2 ms: real prompts differ, and slots then free apart
        req = (b"POST /v1/chat/completions?first_ms=%d&delay_ms=2 HTTP/1.1\r\nHost: t\r\n"
               b"Content-Type: application/json\r\nAuthorization: Bearer %s\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n"
               % (rnd.randint(first // 2, first * 3 // 2), key.encode(), len(body)) + body)
        t = time.time()
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(req)
        buf, ttft = b"", None
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
            if ttft is None and b"data: {" in buf:
                ttft = time.time() - t
        s.close()
        st = int(buf.split(b" ")[1]) if buf.startswith(b"HTTP/1.1 ") else 0
        with lock:
            out.append((st if b"data: [DONE]" in buf else -st, ttft))
ts = [threading.Thread(target=run) for _ in range(n)]
[t.start() for t in ts]
[t.join() for t in ts]
print(json.dumps(out))
'''


def _drive(port, key, n, secs, first=200):
    return subprocess.Popen([sys.executable, "-c", _DRIVER, str(port), key, str(n), str(secs), str(first)],
                            stdout=subprocess.PIPE, text=True)


def _p(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def test_heavy_tenant_cannot_raise_light_tenant_ttft_p99(env):
    """A simulated fleet of 32 stream slots (2 backends, max_conns 16) with
    prefills of 100 to 300 ms.  A light tenant keeps 4 streams going; alone, its TTFT
    p99 is its solo figure.  A heavy tenant then keeps 40 going (10x the
    load, past the fleet: the rest wait in routerd's queue, on 2 workers):
    the light tenant's TTFT p99 stays within 20 % of its solo figure, while
    the heavy tenant's own requests wait."""
    b1, b2 = env.backend("a"), env.backend("b")
    r = _router(env, _yaml([b1, b2], workers=2, strategy="least_connections", opts=", max_conns: 16"))
    solo = _drive(r.port, "light", 4, 6.0)
    solo_res = json.loads(solo.communicate(timeout=60)[0])
    heavy = _drive(r.port, "heavy", 40, 10.0)
    time.sleep(2.0)
    light = _drive(r.port, "light", 4, 6.0)
    light_res = json.loads(light.communicate(timeout=60)[0])
    heavy_res = json.loads(heavy.communicate(timeout=60)[0])
    for res in (solo_res, light_res, heavy_res):
        assert res and all(st == 200 and t is not None for st, t in res), res[:5]
    s99 = _p([t for _, t in solo_res], 0.99)
    l99 = _p([t for _, t in light_res], 0.99)
    h50 = _p([t for _, t in heavy_res], 0.5)
    l50 = _p([t for _, t in light_res], 0.5)
    assert l99 <= 1.2 * s99, (l99, s99, len(light_res))
    # the fleet was past its capacity: the heavy tenant's requests waited for it
    assert h50 > 1.15 * l50, (h50, l50)
    assert _prom(r, "routerd_tenant_queue_waits_total", tenant="...vy") > len(heavy_res) / 4


def test_fair_share_is_weighted_by_tokens(env):
    """Two tenants, both always waiting, one sending prompts ten times as
    long: the fleet's tokens are shared about evenly, so the short-prompt
    tenant gets about ten times the requests (per-request fairness would
    give them the same count)."""
    be = env.backend("a")
    r = _router(env, _yaml([be], workers=2, strategy="least_tokens", opts=", max_conns: 2"))
    res = {}

    def tenant(key, chars, secs=6.0, n=8):
        done, lock = [0], threading.Lock()
        t_end = time.time() + secs
        body = json.dumps({"model": "demo-model", "max_tokens": 4,
                           "messages": [{"role": "user", "content": "z" * chars}]})

        def run():
            c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)
            while time.time() < t_end:
                c.request("POST", "/v1/chat/completions?first_ms=40&delay_ms=1", body=json.dumps(
                    dict(json.loads(body), stream=True)),
                    headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
                resp = c.getresponse()
                resp.read()
                assert resp.status == 200
                if time.time() < t_end:
                    with lock:
                        done[0] += 1
            c.close()
        ts = [threading.Thread(target=run) for _ in range(n)]
        for t in ts:
            t.start()
        return ts, done

    la, da = tenant("long", 8000)
    sa, ds = tenant("short", 800)
    for t in la + sa:
        t.join()
    res = {"long": da[0], "short": ds[0]}
    tok_long = res["long"] * (8000 / 4 + 4)
    tok_short = res["short"] * (800 / 4 + 4)
    assert res["long"] > 0 and res["short"] > 0, res
    ratio = tok_short / tok_long
    assert 0.5 <= ratio <= 2.0, (res, ratio)
    assert res["short"] >= 4 * res["long"], res


def test_retry_budget_holds_when_every_backend_fails(env):
    """Every backend answers 429 (overloaded, a retried status here): the
    retries of both workers stay under budget_percent of the requests (or
    budget_min per second), and a request the budget refuses gets the
    backend's own answer."""
    bs = [env.backend("f%d" % i) for i in range(3)]
    r = _router(env, _yaml(bs, workers=2, extra=(
        "retries:\n  on_status: \"429,502,503,504\"\n  delay: 0s\n"
        "  budget_percent: 20\n  budget_min: 1\n")))
    res = _Hammer(r.port, 8, path="/status?code=429").run(3.0)
    n = len(res)
    assert n >= 100, n
    assert all(st == 429 for _, st, _ in res), set(st for _, st, _ in res)
    assert all(h.get("x-backend", "").startswith("f") for _, _, h in res)   # the backend's own
    sent = sum(b.stats()["requests"] for b in bs)
    retries = sent - n
    allowed = max(1 * 10, 0.20 * n)
    assert 0 < retries <= allowed + 2, (retries, allowed, n)
    assert _prom(r, "routerd_retry_budget_refused_total") > 0
    assert _prom(r, "routerd_retry_budget_retries_total") == retries
    # without a budget every request tries all three
    r2 = _router(env, _yaml(bs, workers=2, extra=(
        "retries:\n  on_status: \"429\"\n  delay: 0s\n  budget_percent: 0\n")))
    before = sum(b.stats()["requests"] for b in bs)
    for _ in range(20):
        assert request(r2.port, "GET", "/status?code=429")[0] == 429
    assert sum(b.stats()["requests"] for b in bs) - before == 60


def _gate_run(env, saturation):
    """Eight requests 120 ms apart to one simulated GPU that runs one
    sequence at a time (about 350 ms each); the most requests seen
    waiting in its own queue."""
    from test_vllmsim import chat
    s = sim(env, "--model", "m1", "--max-num-seqs", "1", "--decode-base-ms", "20")
    r = _router(env, _yaml([s], workers=2, strategy="llm",
                           health="  type: none\n  metrics: true\n  metrics_interval: 50ms", extra=(
        "llm:\n  queue_limit: 1\n"
        "queue:\n  saturation: %s\n" % ("true" if saturation else "false"))))
    time.sleep(0.3)     # a first read of its /metrics
    results = []
    ts = [threading.Thread(target=lambda: results.append(
        chat(r.port, "x" * 200, max_tokens=16)[0])) for _ in range(8)]
    seen = 0
    for t in ts:
        t.start()
        t_next = time.time() + 0.12      # past the next read of its /metrics
        while time.time() < t_next:
            seen = max(seen, metrics(s.port)[("vllm:num_requests_waiting", 'model_name="m1"')])
            time.sleep(0.01)
    while any(t.is_alive() for t in ts):
        seen = max(seen, metrics(s.port)[("vllm:num_requests_waiting", 'model_name="m1"')])
        time.sleep(0.01)
    assert results == [200] * 8, results
    return seen, r


def test_saturation_gate_keeps_the_wait_in_routerd(env):
    """queue.saturation: a backend whose own metrics show llm.queue_limit
    waiting requests takes no new one; requests wait in routerd's queue
    (in their order) instead of in the GPU's FIFO.  Without it, they pile
    up there."""
    seen_on, r = _gate_run(env, True)
    assert seen_on <= 2, seen_on       # what slips in before the next metrics read
    waited = _prom(r, "routerd_queue_admitted_total")
    assert waited >= 3, (waited, seen_on)
    seen_off, _ = _gate_run(env, False)
    assert seen_off >= 4, seen_off


def test_reload_with_requests_queued_loses_none(env):
    """Requests waiting in the queue of the old workers when routerd
    reloads: each is served (in its order, before the new workers' later
    arrivals of the same band), none is lost, and the new generation's
    rate limit starts from the same host-wide budget."""
    be = env.backend("a")
    text = _yaml([be], workers=2, opts=", max_conns: 1", extra=(
        "ratelimits:\n  - { tenant: \"*\", requests_per_second: 1000 }\n"))
    r = _router(env, text)
    out = []
    ts = [threading.Thread(target=_slow, args=(r.port, 700), kwargs={"out": out, "key": "busy"})]
    ts[0].start()
    time.sleep(0.2)
    for i in range(4):
        ts.append(threading.Thread(target=_slow, args=(r.port, 50),
                                   kwargs={"out": out, "key": "old%d" % i}))
        ts[-1].start()
        time.sleep(0.05)
    os.kill(r.p.pid, signal.SIGHUP)
    time.sleep(0.3)      # the new generation is up; the old one drains
    for i in range(3):
        ts.append(threading.Thread(target=_slow, args=(r.port, 50),
                                   kwargs={"out": out, "key": "new%d" % i}))
        ts[-1].start()
        time.sleep(0.05)
    for t in ts:
        t.join()
    order = [k for k, _, st, _ in sorted(out, key=lambda x: x[1])]
    assert all(st == 200 for _, _, st, _ in out), out
    assert order == ["busy"] + ["old%d" % i for i in range(4)] + ["new%d" % i for i in range(3)], order
    assert be.stats()["requests"] == 8


def test_requests_for_a_full_model_do_not_hold_back_another(env):
    """One worker, the only backend of model x at its one slot with more x
    requests waiting first in the queue: requests for model y, whose
    backend is free, are served at once (they wait behind the others only
    for a backend the others could use)."""
    bx = env.backend("bx", models="x")
    by = env.backend("by", models="y")
    r = _router(env, "\n".join([
        "listen:", "  - address: LISTEN", "workers: 1", "strategy: model",
        "health:", "  type: none", "backends:",
        "  - { name: bx, address: %s, models: [x], max_conns: 1 }" % bx.addr,
        "  - { name: by, address: %s, models: [y] }" % by.addr]) + "\n")

    def post(model, first_ms, out):
        body = json.dumps({"model": model, "stream": True, "max_tokens": 1,
                           "messages": [{"role": "user", "content": "hi"}]})
        t = time.time()
        st, _, _ = request(r.port, "POST", "/v1/chat/completions?first_ms=%d" % first_ms,
                           body=body, headers={"Content-Type": "application/json"}, timeout=30)
        out.append((model, st, time.time() - t))

    out = []
    ts = [threading.Thread(target=post, args=("x", 1500, out))]
    ts[0].start()
    time.sleep(0.2)
    for _ in range(6):
        ts.append(threading.Thread(target=post, args=("x", 10, out)))
        ts[-1].start()
    time.sleep(0.2)
    ys = []
    for _ in range(5):
        post("y", 0, ys)
    assert all(st == 200 for _, st, _ in ys), ys
    assert max(d for _, _, d in ys) < 0.5, ys
    for t in ts:
        t.join()
    assert all(st == 200 for _, st, _ in out), out


def test_tenant_priority_and_deadline_fields_across_their_space(env):
    """The three request fields flow control reads, swept: a tenant key of
    every length around the label's cut (12) and width (64) up to 8 KB,
    X-Priority at and past its ends and malformed, X-Request-Deadline in
    each form and malformed.  Each gets its documented answer; the labels
    in /metrics stay printable and never hold a whole key of 12 or more."""
    be = env.backend("a")
    r = _router(env, _yaml([be], workers=2, extra=(
        "ratelimits:\n  - { tenant: \"*\", requests_per_second: 1000000 }\n")))
    keys = ["k" * n for n in (1, 2, 11, 12, 13, 63, 64, 65, 1000, 8000)]
    for k in keys:
        st, h, _ = request(r.port, "GET", "/x", headers={"Authorization": "Bearer " + k})
        assert st == 200 and "x-ratelimit-limit-requests" in h, (len(k), st)
    st, _, _ = request(r.port, "GET", "/x", headers={"Authorization": "Bearer "})
    assert st == 200
    text = request(r.admin, "GET", "/metrics")[2].decode()
    labels = re.findall(r'^routerd_tenant_requests_total\{tenant="([^"]*)"\}', text, re.M)
    assert "kkkk...kkkk" in labels and "...kk" in labels, labels
    assert all(len(l) < 64 and "k" * 12 not in l for l in labels), labels
    for v, want in (("-9", 200), ("-8", 200), ("7", 200), ("8", 200), ("+3", 200), (" 3", 200), ("-99999", 200),
                    ("99999999999999999999", 400), ("3.5", 400), ("x", 400), ("", 400)):
        st, _, _ = request(r.port, "GET", "/x", headers={"X-Priority": v})
        assert st == want, (v, st)
    now = time.time()
    for v, want in (("0", 503), ("0ms", 503), ("1e3", 503), ("%.3f" % (now - 5), 503),
                    ("9999999999999", 200), ("%.3f" % (now + 30), 200), ("1.5s", 200),
                    ("250ms", 200), ("-1", 400), ("abc", 400), ("10000000000001", 400),
                    ("5m", 400), ("1" * 60, 400)):
        st, _, _ = request(r.port, "GET", "/x", headers={"X-Request-Deadline": v})
        assert st == want, (v, st)
    assert r.p.poll() is None and be.stats()["requests"] == len(keys) + 1 + 7 + 4
