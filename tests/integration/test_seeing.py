"""Seeing the routing: X-Router-Strategy honoured only where allow_strategies lists it
(and counted either way), the LLM families of /metrics (promtool-clean, HELP/TYPE and
bucket structure), routerctl explain and GET /api/v1/explain on a live router."""
import http.client
import json
import os
import re
import shutil
import subprocess

from harness import free_port, request, wait_port

ROUTERCTL = os.environ.get("ROUTERCTL")


def _router(env, a, b, pool_keys="    allow_strategies: [weighted]\n"):
    aport = free_port()
    text = """listen:
  - address: LISTEN
workers: 1
health:
  type: none
admin:
  address: 127.0.0.1:%d
pools:
  default:
    strategy: round_robin
%s    backends:
      - { name: a, address: %s, weight: 1 }
      - { name: b, address: %s, weight: 9 }
""" % (aport, pool_keys, a.addr, b.addr)
    r = env.router(text)
    wait_port(aport)
    r.admin = aport
    return r


def _spread(port, n, ask=None):
    """n GETs on one keep-alive connection, with X-Router-Strategy: ask; {backend: count}."""
    seen = {}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(n):
        c.request("GET", "/x", headers={"X-Router-Strategy": ask} if ask else {})
        resp = c.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        be = resp.getheader("X-Backend")
        seen[be] = seen.get(be, 0) + 1
    c.close()
    return seen


def _metrics(r):
    st, h, data = request(r.admin, "GET", "/metrics")
    assert st == 200, st
    return data.decode()


def _sample(text, line_start):
    m = re.search(r"^%s (\S+)$" % re.escape(line_start), text, re.M)
    assert m, "no sample %s in /metrics" % line_start
    return float(m.group(1))


def test_strategy_override_allowed_ignored_counted(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, a, b)
    # the pool's own strategy: round robin ignores the weights
    assert _spread(r.port, 10) == {"a": 5, "b": 5}
    # allowed: weighted, 1:9
    assert _spread(r.port, 10, "weighted") == {"a": 1, "b": 9}
    # a strategy the pool does not allow, and a name nobody knows: ignored, round robin
    assert _spread(r.port, 10, "least_connections") == {"a": 5, "b": 5}
    assert _spread(r.port, 10, "no-such-strategy") == {"a": 5, "b": 5}
    # the override is per request: the same connection goes back to round robin
    assert _spread(r.port, 10) == {"a": 5, "b": 5}
    text = _metrics(r)
    assert _sample(text, 'routerd_pool_strategy_overrides_total{pool="default",result="used"}') == 10
    assert _sample(text, 'routerd_pool_strategy_overrides_total{pool="default",result="ignored"}') == 20
    # the field reaches the backend as it came, like any other
    st, _, body = request(r.port, "GET", "/headers", headers={"X-Router-Strategy": "weighted"})
    assert st == 200
    got = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert got.get("x-router-strategy") == "weighted", got


def test_strategy_override_needs_allow_strategies(env):
    """Without allow_strategies nothing a request asks for is used."""
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, a, b, pool_keys="")
    assert _spread(r.port, 10, "weighted") == {"a": 5, "b": 5}
    text = _metrics(r)
    assert _sample(text, 'routerd_pool_strategy_overrides_total{pool="default",result="used"}') == 0
    assert _sample(text, 'routerd_pool_strategy_overrides_total{pool="default",result="ignored"}') == 10


FAMILIES = {
    "routerd_backend_ttft_seconds": "histogram",
    "routerd_backend_itl_seconds": "histogram",
    "routerd_backend_prompt_tokens": "histogram",
    "routerd_backend_output_tokens": "histogram",
    "routerd_backend_llm_requests_total": "counter",
    "routerd_backend_prompt_tokens_total": "counter",
    "routerd_backend_output_tokens_total": "counter",
    "routerd_backend_cached_tokens_total": "counter",
    "routerd_backend_tokens_inflight": "gauge",
    "routerd_pool_shadow_decisions_total": "counter",
    "routerd_pool_strategy_overrides_total": "counter",
    "routerd_pool_llm_picks_total": "counter",
}


def _histograms(text, name):
    """{label set without le: [(le, value)...]} of a histogram's _bucket lines, in order."""
    out = {}
    for m in re.finditer(r"^%s_bucket\{(.*),le=\"([^\"]+)\"\} (\S+)$" % name, text, re.M):
        out.setdefault(m.group(1), []).append((m.group(2), float(m.group(3))))
    return out


def test_llm_metrics_families(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, a, b, pool_keys="    shadow_strategy: least_connections\n")
    for _ in range(6):
        body = json.dumps({"model": "demo-model", "max_tokens": 5, "stream": True,
                           "messages": [{"role": "user", "content": "hello " * 50}]})
        st, _, data = request(r.port, "POST", "/v1/chat/completions", body=body,
                              headers={"Content-Type": "application/json"})
        assert st == 200 and data.rstrip().endswith(b"data: [DONE]"), (st, data[-80:])
    text = _metrics(r)
    for name, typ in FAMILIES.items():
        assert "# HELP %s " % name in text, name
        assert "# TYPE %s %s\n" % (name, typ) in text, name
        # one family, one block: every sample of it follows its TYPE line without a gap
        lines = [i for i, l in enumerate(text.splitlines())
                 if re.match(r"%s(_bucket|_sum|_count)?[{ ]" % name, l)]
        assert lines == list(range(lines[0], lines[0] + len(lines))) if lines else True, name
    for result in ("agree", "differ"):
        _sample(text, 'routerd_pool_shadow_decisions_total{pool="default",result="%s"}' % result)
    for reason in ("affinity", "yield", "cold"):
        _sample(text, 'routerd_pool_llm_picks_total{pool="default",reason="%s"}' % reason)
    # whatever pairs have samples: cumulative buckets, the right bounds, +Inf == _count
    for name, bounds in (("routerd_backend_ttft_seconds", None),
                         ("routerd_backend_prompt_tokens", [str(1 << i) for i in range(15)])):
        for labels, buckets in _histograms(text, name).items():
            assert 'backend="' in labels and 'model="' in labels, labels
            vals = [v for _, v in buckets]
            assert vals == sorted(vals) and buckets[-1][0] == "+Inf", buckets
            if bounds:
                assert [le for le, _ in buckets[:-1]] == bounds, buckets
            assert _sample(text, "%s_count{%s}" % (name, labels)) == vals[-1]
    promtool = shutil.which("promtool")
    if promtool is None:
        env.skip("promtool is not installed", package="prometheus")
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()[:2000]


def test_explain_ctl_and_api(env):
    a, b = env.backend("a"), env.backend("b")
    r = _router(env, a, b)
    _spread(r.port, 4)
    # routerctl explain and the admin API agree on the shape; each decision names names
    p = subprocess.run([ROUTERCTL, "-s", r.ctlsock, "-j", "explain", "3"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    ds = json.loads(p.stdout)["decisions"]
    assert isinstance(ds, list) and len(ds) == 3, ds
    st, _, data = request(r.admin, "GET", "/api/v1/explain?n=2")
    assert st == 200
    api = json.loads(data)["decisions"]
    assert isinstance(api, list) and len(api) == 2, api
    # newest first, the same newest two
    assert [d["request_id"] for d in api] == [d["request_id"] for d in ds[:2]], (api, ds)
    for d in ds:
        assert d["strategy"] == "round_robin" and d["reason"] == "strategy", d
    for d in ds + api:
        assert d["pool"] == "default" and d["pick"] in ("a", "b"), d
        assert d["time"].endswith("Z") and d["request_id"], d
        for c in d["candidates"]:
            assert c["backend"] in ("a", "b"), c
    p = subprocess.run([ROUTERCTL, "-s", r.ctlsock, "explain"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("no routing decisions recorded") or " pool default " in p.stdout, \
        p.stdout
    # bad N: an error and exit 1, for routerctl and the API alike
    p = subprocess.run([ROUTERCTL, "-s", r.ctlsock, "explain", "0"], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 1 and "explain" in p.stderr, (p.returncode, p.stderr)
    st, _, _ = request(r.admin, "GET", "/api/v1/explain?n=many")
    assert st == 400


def test_explain_llm_decisions_and_shadow(env):
    """An llm pool with a shadow: the first request of a prompt is placed
    cold, the next ones by affinity with their warm blocks shown; the
    shadow's verdicts add up to the requests; the pick counters agree."""
    a, b = env.backend("a"), env.backend("b")
    aport = free_port()
    r = env.router("""listen:
  - address: LISTEN
workers: 1
health:
  type: none
admin:
  address: 127.0.0.1:%d
pools:
  default:
    strategy: llm
    shadow_strategy: least_connections
    backends:
      - { name: a, address: %s }
      - { name: b, address: %s }
""" % (aport, a.addr, b.addr))
    system = "a shared system prompt, long enough for several blocks. " * 30
    picks = []
    for i in range(5):
        body = json.dumps({"model": "demo-model", "max_tokens": 1,
                           "messages": [{"role": "system", "content": system},
                                        {"role": "user", "content": "q%d" % i}]})
        st, h, _ = request(r.port, "POST", "/v1/chat/completions", body,
                           {"Content-Type": "application/json"})
        assert st == 200
        picks.append(h["x-backend"])
    assert len(set(picks)) == 1, picks
    st, _, data = request(aport, "GET", "/api/v1/explain?n=5")
    assert st == 200
    ds = json.loads(data)["decisions"]
    assert len(ds) == 5, ds
    assert [d["reason"] for d in ds] == ["affinity"] * 4 + ["cold"], ds
    for d in ds:
        assert d["strategy"] == "llm" and d["pick"] == picks[0], d
        assert d["shadow"] in ("a", "b"), d
        assert d["prefix_blocks"] == len(system) // 256, d
        assert len(d["candidates"]) == 2, d
    warm = [c for c in ds[0]["candidates"] if c["backend"] == picks[0]][0]
    cold = [c for c in ds[0]["candidates"] if c["backend"] != picks[0]][0]
    assert warm["match"] == ds[0]["prefix_blocks"] and cold["match"] == 0, ds[0]
    assert warm["score"] < cold["score"], ds[0]
    st, _, data = request(aport, "GET", "/metrics")
    text = data.decode()
    agree = _sample(text, 'routerd_pool_shadow_decisions_total{pool="default",result="agree"}')
    differ = _sample(text, 'routerd_pool_shadow_decisions_total{pool="default",result="differ"}')
    assert agree + differ == 5, (agree, differ)
    assert _sample(text, 'routerd_pool_llm_picks_total{pool="default",reason="cold"}') == 1
    assert _sample(text, 'routerd_pool_llm_picks_total{pool="default",reason="affinity"}') == 4
