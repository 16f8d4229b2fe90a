"""least_tokens: backends ranked by the tokens in flight there (summed over
the workers), not by the count of requests; and the counts go back down."""
import http.client
import json
import os
import subprocess
import time

from harness import ROUTERD, backends_yaml, request


def _open_stream(port, prompt_chars, delay_ms=25, max_tokens=60):
    """Starts a streaming chat request; returns (connection, response) once the head is in."""
    body = json.dumps({"model": "demo-model", "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "x" * prompt_chars}]})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("POST", "/v1/chat/completions", body=body,
              headers={"Content-Type": "application/json", "X-Fake-Delay-Ms": str(delay_ms)})
    r = c.getresponse()
    assert r.status == 200, r.status
    return c, r


def _short(port):
    body = json.dumps({"model": "demo-model", "max_tokens": 1,
                       "messages": [{"role": "user", "content": "hi"}]})
    st, h, _ = request(port, "POST", "/v1/chat/completions", body=body,
                       headers={"Content-Type": "application/json"})
    assert st == 200, st
    return h["x-backend"]


def _run(env, strategy):
    a, b = env.backend("a"), env.backend("b")
    r = env.router(backends_yaml([a, b], strategy=strategy, workers=2))
    # one long prompt in flight (40000 characters: about 10000 tokens) ...
    big_c, big_r = _open_stream(r.port, 40000)
    big = big_r.getheader("X-Backend")
    other = "b" if big == "a" else "a"
    # ... and two short ones, both placed away from it by token load
    smalls = [_open_stream(r.port, 100) for _ in range(2)]
    small_at = [s[1].getheader("X-Backend") for s in smalls]
    # now the long prompt's backend has 1 request, the other 2
    picks = [_short(r.port) for _ in range(6)]
    for c, resp in [(big_c, big_r)] + smalls:
        data = resp.read()
        assert data.rstrip().endswith(b"data: [DONE]"), data[-80:]
        c.close()
    time.sleep(0.2)
    after = [_short(r.port) for _ in range(6)]
    return big, other, small_at, picks, after


def test_least_tokens_ranks_by_tokens_not_requests(env):
    big, other, small_at, picks, after = _run(env, "least_tokens")
    assert small_at == [other, other], (big, small_at)
    # 2 requests of ~280 tokens at `other` weigh less than 1 of ~10000 at `big`
    assert picks == [other] * 6, (big, picks)
    # everything ended: the tokens came off again, ties go in turn
    assert set(after) == {"a", "b"}, after


def test_least_connections_counts_requests_not_tokens(env):
    """The same traffic under least_connections: the short requests go to the
    backend with fewer requests in flight, whatever their tokens.  When both
    short streams landed away from the long prompt (1 request there, 2 here),
    that is the long prompt's backend: what least_tokens fixes."""
    big, other, small_at, picks, _ = _run(env, "least_connections")
    count = {big: 1, other: 0}
    for b in small_at:
        count[b] += 1
    fewer = min(count, key=count.get)
    assert picks == [fewer] * 6, (big, small_at, picks)


def test_llm_strategy_accepted(env):
    """llm is built: routerd -t takes it as a strategy, a shadow and an allowed override."""
    a = env.backend("a")
    path = os.path.join(env.dir, "llm.yaml")
    with open(path, "w") as f:
        f.write(backends_yaml([a], strategy="llm").replace("LISTEN", "127.0.0.1:1"))
    p = subprocess.run([ROUTERD, "-t", "-f", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_least_latency_uses_live_request_latency(env):
    """No prober latency (health: none): least_latency must still see that one
    backend answers requests 60 ms slower, from what the workers measure."""
    fast, slow = env.backend("fast"), env.backend("slow")
    st, _, _ = slow.fault("slow:60")
    assert st == 200
    r = env.router(backends_yaml([fast, slow], strategy="least_latency", workers=2))
    seen = {"fast": 0, "slow": 0}
    for _ in range(40):
        st, h, _ = request(r.port, "GET", "/x")
        assert st == 200, st
        seen[h["x-backend"]] += 1
    # in turn (the old behaviour with no probe figures) would be 20 / 20; each
    # worker tries the slow one once before it knows, and no more for 10 s
    assert seen["slow"] <= 3, seen
