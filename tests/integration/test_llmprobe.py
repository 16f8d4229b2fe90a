"""The prober's LLM reads (health.metrics, health.models) and the per-(backend, model) pairs,
against simulated vLLM servers (tests/vllmsim): load figures in routerd's /metrics that follow
the backend's, a failing /metrics that is only counted, models taken out per backend."""
import json
import re
import shutil
import subprocess
import threading
import time

from harness import free_port, request, wait_port
from test_vllmsim import fault, sim

# health.interval drives the /v1/models reads; the checks themselves are plain GET /health
HEALTH = """health:
  type: http
  path: /health
  interval: 200ms
  timeout: 1s
  metrics: %s
  metrics_interval: 100ms
  models: %s
"""


def _router(env, backends, metrics=True, models=True, workers=1):
    """routerd, strategy model, in front of backends [(name, sim, [models])], with an admin port."""
    aport = free_port()
    lines = ["listen:", "  - address: LISTEN", "workers: %d" % workers,
             HEALTH % ("true" if metrics else "false", "true" if models else "false"),
             "breaker:", "  threshold: 3", "  timeout: 1s",
             "admin:", "  address: 127.0.0.1:%d" % aport,
             "pools:", "  llm:", "    strategy: model", "    backends:"]
    for name, s, ms in backends:
        lines.append("      - { name: %s, address: 127.0.0.1:%d, models: [%s] }"
                     % (name, s.port, ", ".join(ms)))
    r = env.router("\n".join(lines) + "\n")
    wait_port(aport)
    r.admin = aport
    return r


def _prom(r):
    """routerd's /metrics as {(name, frozenset of label items): value}."""
    st, _, data = request(r.admin, "GET", "/metrics")
    assert st == 200, st
    out = {}
    for ln in data.decode().splitlines():
        m = re.match(r'^([a-z_]+)\{([^}]*)\} (\S+)$', ln)
        if m:
            labels = frozenset(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2)))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def _val(prom, name, **labels):
    for (n, ls), v in prom.items():
        if n == name and set(labels.items()) <= set(ls):
            return v
    return None


def _until(what, fn, timeout=5.0):
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def _chat(port, model, max_tokens=1, stream=False):
    body = {"model": model, "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}
    return request(port, "POST", "/v1/chat/completions", json.dumps(body),
                   {"Content-Type": "application/json"}, timeout=20)


def _served(sims, model):
    """Completion requests for model each sim has seen, in order."""
    out = []
    for s in sims:
        st, _, data = request(s.port, "GET", "/sim/stats")
        assert st == 200
        out.append(json.loads(data)["models"].get(model, {}).get("requests", 0))
    return out


def _spread(r, sims, model, n):
    """Send n requests for model through r; all must be 200; returns how many each sim got."""
    before = _served(sims, model)
    for _ in range(n):
        st, _, body = _chat(r.port, model)
        assert st == 200, (st, body)
    return [x - y for x, y in zip(_served(sims, model), before)]


def _models(r):
    st, _, data = request(r.port, "GET", "/v1/models")
    assert st == 200, (st, data)
    return sorted(m["id"] for m in json.loads(data)["data"])


def test_llmprobe_load_follows_the_backend(env):
    # one running sequence at a time: a second and third concurrent request wait
    a = sim(env, "--model", "m1", "--max-num-seqs", "1", "--decode-base-ms", "20")
    r = _router(env, [("a", a, ["m1"])])
    p = _until("a first good metrics read", lambda: (
        lambda m: m if _val(m, "routerd_backend_metrics_fresh", backend="a") == 1 else None)(_prom(r)))
    assert _val(p, "routerd_backend_waiting", backend="a") == 0, p
    assert _val(p, "routerd_backend_running", backend="a") == 0, p
    assert _val(p, "routerd_backend_kv_cache_usage", backend="a") == 0, p
    assert _val(p, "routerd_backend_metrics_errors_total", backend="a") == 0, p

    # three streams of 100 tokens (2 s each at 20 ms a token), sent straight to the sim
    done = []
    ts = [threading.Thread(target=lambda: done.append(_chat(a.port, "m1", 100)[0]))
          for _ in range(3)]
    for t in ts:
        t.start()
    busy = _until("routerd to see 1 running, 2 waiting", lambda: (
        lambda m: m if _val(m, "routerd_backend_running", backend="a") == 1 and
        _val(m, "routerd_backend_waiting", backend="a") == 2 else None)(_prom(r)))
    assert _val(busy, "routerd_backend_kv_cache_usage", backend="a") > 0, busy
    for t in ts:
        t.join()
    assert done == [200, 200, 200], done
    idle = _until("the queue to drain in routerd's figures", lambda: (
        lambda m: m if _val(m, "routerd_backend_running", backend="a") == 0 and
        _val(m, "routerd_backend_waiting", backend="a") == 0 else None)(_prom(r)))
    reads = _val(idle, "routerd_backend_metrics_reads_total", backend="a")
    assert reads >= 5, idle


def test_llmprobe_metrics_failure_is_counted_not_a_verdict(env):
    a = sim(env, "--model", "m1")
    b = sim(env, "--model", "m1")
    r = _router(env, [("a", a, ["m1"]), ("b", b, ["m1"])])
    _until("both fresh", lambda: all(_val(_prom(r), "routerd_backend_metrics_fresh",
                                          backend=n) == 1 for n in ("a", "b")))
    fault(a.port, "metrics-500")            # until cleared
    t0 = time.monotonic()
    # three intervals (100 ms each) after its last good read a's figures are gone
    p = _until("a stale", lambda: (lambda m: m if _val(
        m, "routerd_backend_metrics_fresh", backend="a") == 0 else None)(_prom(r)))
    assert time.monotonic() - t0 < 2.0
    assert _val(p, "routerd_backend_waiting", backend="a") is None, "a stale figure is shown"
    assert _val(p, "routerd_backend_waiting", backend="b") == 0, p
    assert _val(p, "routerd_backend_metrics_fresh", backend="b") == 1, p
    # stale 300 ms after the last good read: two or three failed reads, at 90-110 ms each
    errs = _val(p, "routerd_backend_metrics_errors_total", backend="a")
    assert errs >= 2, errs
    # a is still up and still takes its share
    assert _val(p, "routerd_backend_health", backend="a", state="down") == 0, p
    assert _spread(r, (a, b), "m1", 10) == [5, 5]
    later = _prom(r)
    assert _val(later, "routerd_backend_metrics_errors_total", backend="a") > errs
    assert _val(later, "routerd_backend_health", backend="a", state="down") == 0, later
    # the reads work again: fresh again, errors stop growing
    fault(a.port, "clear")
    _until("a fresh again", lambda: _val(_prom(r), "routerd_backend_metrics_fresh",
                                         backend="a") == 1)
    assert "metrics not read: status 500" in r.output()
    assert "metrics read again" in r.output()


def test_llmprobe_metrics_off_means_no_reads(env):
    a = sim(env, "--model", "m1")
    r = _router(env, [("a", a, ["m1"])], metrics=False, models=False)
    time.sleep(0.6)
    p = _prom(r)
    assert _val(p, "routerd_backend_metrics_fresh", backend="a") is None, p
    assert _val(p, "routerd_backend_model_listed", backend="a") is None, p
    st, _, data = request(a.port, "GET", "/sim/stats")
    assert st == 200
    assert _chat(r.port, "m1")[0] == 200


def test_llmprobe_model_dropped_on_one_backend(env):
    a = sim(env, "--model", "m1", "--model", "m2")
    b = sim(env, "--model", "m1", "--model", "m2")
    r = _router(env, [("a", a, ["m1", "m2"]), ("b", b, ["m1", "m2"])])
    _until("both listed", lambda: _val(_prom(r), "routerd_backend_model_listed",
                                       backend="a", model="m1") == 1)
    fault(a.port, "drop-model:m1")
    _until("a's m1 out", lambda: _val(_prom(r), "routerd_backend_model_listed",
                                      backend="a", model="m1") == 0)
    p = _prom(r)
    assert _val(p, "routerd_backend_model_listed", backend="a", model="m2") == 1, p
    assert _val(p, "routerd_backend_model_listed", backend="b", model="m1") == 1, p
    assert _spread(r, (a, b), "m1", 10) == [0, 10]
    assert _spread(r, (a, b), "m2", 10) == [5, 5]
    assert _models(r) == ["m1", "m2"]
    assert "a model m1 missing from its /v1/models" in r.output()
    # the new families are well-formed exposition
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run packaging/build-deps.sh"
    st, _, data = request(r.admin, "GET", "/metrics")
    chk = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True)
    assert chk.returncode == 0, (chk.stdout + chk.stderr).decode()
    for fam in ("routerd_backend_waiting", "routerd_backend_running",
                "routerd_backend_kv_cache_usage", "routerd_backend_metrics_fresh",
                "routerd_backend_metrics_reads_total", "routerd_backend_metrics_errors_total",
                "routerd_backend_model_listed", "routerd_backend_model_breaker_open"):
        assert ("# TYPE %s " % fam).encode() in data, fam

    # gone from both: the proxy no longer lists it and answers as for an unknown model
    fault(b.port, "drop-model:m1")
    _until("b's m1 out", lambda: _val(_prom(r), "routerd_backend_model_listed",
                                      backend="b", model="m1") == 0)
    assert _models(r) == ["m2"]
    st, _, body = _chat(r.port, "m1")
    st2, _, body2 = _chat(r.port, "nosuch")
    assert st == st2 == 404, (st, body, st2, body2)
    e1, e2 = json.loads(body)["error"], json.loads(body2)["error"]
    assert e1["code"] == e2["code"] == "model_not_found", (e1, e2)
    assert e1["type"] == e2["type"]

    # listed again: back in both the pick and the proxy's list
    fault(a.port, "clear")
    _until("a's m1 back", lambda: _val(_prom(r), "routerd_backend_model_listed",
                                       backend="a", model="m1") == 1)
    assert _models(r) == ["m1", "m2"]
    assert _spread(r, (a, b), "m1", 4) == [4, 0]
    assert "a model m1 listed again" in r.output()


def test_llmprobe_models_read_failure_keeps_the_pairs(env):
    # a failed /v1/models read takes nothing out: the last good list stands
    a = sim(env, "--model", "m1")
    r = _router(env, [("a", a, ["m1"])])
    _until("listed", lambda: _val(_prom(r), "routerd_backend_model_listed",
                                  backend="a", model="m1") == 1)
    a.stop()
    _until("a models read to fail", lambda: "a models not read" in r.output())
    time.sleep(0.8)                         # four more failed reads
    assert _val(_prom(r), "routerd_backend_model_listed", backend="a", model="m1") == 1


# The workers' per-(backend, model) counters (shm_pair requests/done/fails/consec_fails) come
# from a parallel branch; until they are in the tree nothing feeds the pair breakers.
PAIR_COUNTERS = True


def test_llmprobe_pair_breaker_takes_out_one_model(env):
    if not PAIR_COUNTERS:
        env.skip("the workers do not write the pair counters in this tree yet")
    a = sim(env, "--model", "m1", "--model", "m2")
    b = sim(env, "--model", "m1", "--model", "m2")
    r = _router(env, [("a", a, ["m1", "m2"]), ("b", b, ["m1", "m2"])], metrics=False,
                models=False)
    fault(a.port, "500-model:m1")           # m1 broken on a, a's m2 fine
    # after each m1 request two for m2, one of which round robin sends to a: a's own run of
    # failures never reaches breaker.threshold (m2 succeeds there), its m1 pair's does
    for _ in range(60):
        _chat(r.port, "m1")
        _chat(r.port, "m2")
        _chat(r.port, "m2")
        if "a model m1 breaker open" in r.output():
            break
    assert "a model m1 breaker open" in r.output(), r.output()[-2000:]
    p = _prom(r)
    assert _val(p, "routerd_backend_model_breaker_open", backend="a", model="m1") == 1, p
    assert _val(p, "routerd_backend_model_breaker_open", backend="a", model="m2") == 0, p
    assert _val(p, "routerd_backend_breaker_state", backend="a", state="closed") == 1, p
    assert _spread(r, (a, b), "m1", 10) == [0, 10]
    assert _spread(r, (a, b), "m2", 10) == [5, 5]
    assert _models(r) == ["m1", "m2"]
    # mended: after breaker.timeout the next m1 request is a trial on a, and closes it
    fault(a.port, "clear")
    time.sleep(1.2)
    _spread(r, (a, b), "m1", 4)
    _until("a's m1 breaker closed", lambda: "a model m1 breaker closed" in r.output())
    assert _val(_prom(r), "routerd_backend_model_breaker_open", backend="a", model="m1") == 0
