"""Seeing flow control: the admission queue's bands and waits, deadline drops,
rate-limit 429s, tenants and the retry budget, as /metrics, GET
/api/v1/router/queue and /tenants and routerctl show queue / show tenants
report them, the three agreeing; a tenant named by a secret shown cut to its
ends everywhere, never whole; label values escaped so promtool reads them."""
import json
import os
import re
import shutil
import subprocess
import threading
import time

from harness import free_port, request, wait_port

ROUTERCTL = os.environ.get("ROUTERCTL")

# Authorization: Bearer KEY names the tenant; each is shown cut to its ends
K_LIMITED = "sk-aaaa-bbbb-cccc-0001"
K_BUSY = "sk-busy-bbbb-cccc-0002"
K_PRIO = "sk-prio-bbbb-cccc-0003"
K_LATE = "sk-late-bbbb-cccc-0004"
K_GONE = "sk-gone-bbbb-cccc-0005"
SHOWN = {K_LIMITED: "sk-a...0001", K_BUSY: "sk-b...0002", K_PRIO: "sk-p...0003",
         K_LATE: "sk-l...0004"}


def _router(env, be, extra=""):
    aport = free_port()
    text = """listen:
  - address: LISTEN
workers: 2
strategy: round_robin
health:
  type: none
backends:
  - { name: a, address: %s, max_conns: 1 }
queue:
  timeout: 10s
ratelimits:
  - { tenant: "*", requests_per_second: 2, burst: 1 }
  - { tenant: "%s", requests_per_second: 2, burst: 1, priority: 3 }
admin:
  address: 127.0.0.1:%d
%s""" % (be.addr, K_PRIO, aport, extra)
    r = env.router(text)
    wait_port(aport)
    r.admin = aport
    return r


def _auth(key, **more):
    h = {"Authorization": "Bearer " + key}
    h.update(more)
    return h


_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def _parse(text):
    """Prometheus text: ({family: type}, [(name, {label: value}, float)]); each
    sample's family has HELP and TYPE lines before it."""
    types, helps, samples = {}, set(), []
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            helps.add(ln.split()[2])
            continue
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split()
            assert name in helps, "TYPE before HELP: " + ln
            types[name] = typ
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', ln)
        assert m, "not a sample line: %r" % ln
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group(2) or "")}
        samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def _val(samples, name, **labels):
    got = [v for n, lab, v in samples if n == name and
           all(lab.get(k) == w for k, w in labels.items())]
    assert len(got) == 1, (name, labels, got)
    return got[0]


def _scrape(r):
    st, h, data = request(r.admin, "GET", "/metrics")
    assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4"), (st, h)
    return data.decode()


def _api(r, path):
    st, h, data = request(r.admin, "GET", path)
    assert st == 200 and h["content-type"] == "application/json", (st, h, data)
    return data.decode(), json.loads(data)


def _ctl(r, *args, json_out=False):
    cmd = [ROUTERCTL, "-s", r.ctlsock] + (["-j"] if json_out else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    assert p.returncode == 0 and p.stderr == "", (args, p.returncode, p.stdout, p.stderr)
    return p.stdout


def _table(lines):
    """Rows of an aligned routerctl table (header first) as dicts, by the header's words."""
    head = lines[0].split()
    return [dict(zip(head, ln.split())) for ln in lines[1:]]


def _blocks(text):
    """routerctl output cut at blank lines."""
    return [b.splitlines() for b in text.strip("\n").split("\n\n")]


def _wait(pred, timeout=3.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def _slow(port, ms, headers, out):
    t = time.time()
    st, h, body = request(port, "GET", "/slow?ms=%d" % ms, headers=headers, timeout=30)
    out.append((st, time.time() - t, body))


def test_queue_tenants_metrics_api_and_ctl_agree(env):
    be = env.backend("a")
    r = _router(env, be)
    pool = _api(r, "/api/v1/router/queue")[1]["pools"][0]["pool"]

    # 429s: one tenant over requests_per_second (burst 1)
    sts = [request(r.port, "GET", "/x", headers=_auth(K_LIMITED))[0] for _ in range(4)]
    assert set(sts) <= {200, 429} and sts[0] == 200 and 429 in sts, sts
    n_ok, n_lim = sts.count(200), sts.count(429)
    # a deadline already past on arrival: 503 at once, no tenant kept for it
    st, _, body = request(r.port, "GET", "/x", headers=_auth(
        K_GONE, **{"X-Request-Deadline": "%.3f" % (time.time() - 1)}))
    assert st == 503 and b"deadline" in body, (st, body)

    # the one slot busy; a priority 3 request waits for it, one with a short deadline is dropped
    busy, prio = [], []
    tb = threading.Thread(target=_slow, args=(r.port, 1000, _auth(K_BUSY), busy))
    tb.start()
    assert _wait(lambda: be.stats()["requests"] >= n_ok + 1), be.stats()
    tp = threading.Thread(target=_slow, args=(r.port, 1, _auth(K_PRIO, **{"X-Priority": "3"}), prio))
    tp.start()

    def prio_waits():
        q = _api(r, "/api/v1/router/queue")[1]["pools"][0]
        return q["waiting"] == 1 and {"priority": 3, "waiting": 1, "admitted": 0} in q["bands"]
    assert _wait(prio_waits, 0.6), _api(r, "/api/v1/router/queue")[1]
    # while it waits, every view says so
    _, s = _parse(_scrape(r))
    assert _val(s, "routerd_queue_waiting", pool=pool, priority="3") == 1
    assert _val(s, "routerd_queue_waiting", pool=pool, priority="0") == 0
    assert _val(s, "routerd_tenant_queued", tenant=SHOWN[K_PRIO]) == 1
    t = {x["tenant"]: x for x in _api(r, "/api/v1/router/tenants")[1]["tenants"]}
    assert t[SHOWN[K_PRIO]]["queued"] == 1, t
    cq = json.loads(_ctl(r, "show", "queue", json_out=True))["pools"][0]
    assert cq["waiting"] == 1 and cq["bands"][0] == {"priority": 3, "waiting": 1, "admitted": 0}, cq
    t0 = time.time()
    st, _, body = request(r.port, "GET", "/x", headers=_auth(K_LATE, **{"X-Request-Deadline": "200ms"}))
    assert st == 503 and b"passed while it waited" in body, (st, body)
    assert 0.15 <= time.time() - t0 < 0.9, time.time() - t0
    tb.join()
    tp.join()
    assert busy[0][0] == 200 and prio[0][0] == 200, (busy, prio)
    assert _wait(lambda: _api(r, "/api/v1/router/queue")[1]["pools"][0]["waiting"] == 0)

    # --- /metrics ---
    text = _scrape(r)
    types, s = _parse(text)
    for fam, typ in (("routerd_queue_waiting", "gauge"), ("routerd_queue_admitted_total", "counter"),
                     ("routerd_queue_wait_seconds", "histogram"),
                     ("routerd_queue_deadline_dropped_total", "counter"),
                     ("routerd_queue_deadline_expired_total", "counter"),
                     ("routerd_ratelimited_total", "counter"),
                     ("routerd_tenant_requests_total", "counter"),
                     ("routerd_tenant_ratelimited_total", "counter"),
                     ("routerd_tenant_tokens_total", "counter"),
                     ("routerd_tenant_queued", "gauge"),
                     ("routerd_tenant_queue_waits_total", "counter"),
                     ("routerd_tenant_queue_wait_seconds_total", "counter"),
                     ("routerd_tenant_deadline_dropped_total", "counter"),
                     ("routerd_retry_budget_refused_total", "counter"),
                     ("routerd_retry_budget_retries_total", "counter")):
        assert types.get(fam) == typ, (fam, types.get(fam))
    assert _val(s, "routerd_queue_admitted_total", pool=pool, priority="3") == 1
    assert _val(s, "routerd_queue_waiting", pool=pool, priority="3") == 0
    assert _val(s, "routerd_queue_waiting", pool=pool, priority="0") == 0
    # only used bands (and priority 0) have samples
    bands = sorted(int(lab["priority"]) for n, lab, _ in s if n == "routerd_queue_admitted_total")
    assert bands == sorted(int(lab["priority"]) for n, lab, _ in s if n == "routerd_queue_waiting")
    assert 0 in bands and 3 in bands and set(bands) <= {0, 3}, bands
    assert _val(s, "routerd_queue_deadline_dropped_total", pool=pool) == 1
    assert _val(s, "routerd_queue_deadline_expired_total", pool=pool) == 1
    assert _val(s, "routerd_ratelimited_total", pool=pool) == n_lim
    # the wait histogram: cumulative, +Inf last, one wait of about the busy request's rest
    bk = [(lab["le"], v) for n, lab, v in s if n == "routerd_queue_wait_seconds_bucket"]
    assert bk[-1][0] == "+Inf" and [v for _, v in bk] == sorted(v for _, v in bk), bk
    waits = _val(s, "routerd_queue_wait_seconds_count", pool=pool)
    assert waits == bk[-1][1] == sum(_val(s, "routerd_queue_admitted_total", pool=pool,
                                          priority=str(b)) for b in bands), (waits, bk)
    assert waits >= 1
    wsum = _val(s, "routerd_queue_wait_seconds_sum", pool=pool)
    assert 0.3 <= wsum <= 1.5 * waits, wsum
    # tenants: the keys cut to their ends, the counts of what they did
    tenants = {lab["tenant"] for n, lab, _ in s if n == "routerd_tenant_requests_total"}
    assert tenants == set(SHOWN.values()), tenants
    assert _val(s, "routerd_tenant_requests_total", tenant=SHOWN[K_LIMITED]) == n_ok
    assert _val(s, "routerd_tenant_ratelimited_total", tenant=SHOWN[K_LIMITED],
                limit="requests") == n_lim
    assert _val(s, "routerd_tenant_ratelimited_total", tenant=SHOWN[K_LIMITED], limit="tokens") == 0
    assert _val(s, "routerd_tenant_requests_total", tenant=SHOWN[K_LATE]) == 1
    assert _val(s, "routerd_tenant_deadline_dropped_total", tenant=SHOWN[K_LATE]) == 1
    assert _val(s, "routerd_tenant_queue_waits_total", tenant=SHOWN[K_LATE]) == 0
    assert _val(s, "routerd_tenant_queue_waits_total", tenant=SHOWN[K_PRIO]) == 1
    pw = _val(s, "routerd_tenant_queue_wait_seconds_total", tenant=SHOWN[K_PRIO])
    assert 0.3 <= pw <= 1.5, pw
    for k in SHOWN.values():
        assert _val(s, "routerd_tenant_queued", tenant=k) == 0
        assert _val(s, "routerd_tenant_tokens_total", tenant=k) == 0
    assert _val(s, "routerd_retry_budget_retries_total") == 0
    assert _val(s, "routerd_retry_budget_refused_total") == 0

    # --- the admin API ---
    qtext, q = _api(r, "/api/v1/router/queue")
    assert set(q) == {"pools", "retry_budget"} and q["retry_budget"] == {"retries": 0, "refused": 0}, q
    qp = q["pools"][0]
    assert set(qp) == {"pool", "waiting", "bands", "waits", "wait_ms_avg", "timeouts", "rejected",
                       "deadline_dropped", "deadline_expired", "ratelimited"}, qp
    assert qp["pool"] == pool and qp["waiting"] == 0 and qp["waits"] == waits, qp
    assert (qp["deadline_dropped"], qp["deadline_expired"], qp["ratelimited"]) == (1, 1, n_lim), qp
    assert qp["timeouts"] == 0 and qp["rejected"] == 0, qp
    assert [b["priority"] for b in qp["bands"]] == sorted(bands, reverse=True), qp
    assert qp["bands"][0] == {"priority": 3, "waiting": 0, "admitted": 1}, qp
    assert abs(qp["wait_ms_avg"] - 1000.0 * wsum / waits) <= 1.0, (qp, wsum)
    ttext, tj = _api(r, "/api/v1/router/tenants")
    tl = tj["tenants"]
    assert [x["requests"] for x in tl] == sorted((x["requests"] for x in tl), reverse=True), tl
    t = {x["tenant"]: x for x in tl}
    assert set(t) == set(SHOWN.values()), t
    for x in tl:
        assert set(x) == {"tenant", "queued", "requests", "limited_requests", "limited_tokens",
                          "tokens", "waits", "wait_ms_avg", "deadline_dropped", "last_seen"}, x
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", x["last_seen"]), x
    a = t[SHOWN[K_LIMITED]]
    assert (a["requests"], a["limited_requests"], a["limited_tokens"]) == (n_ok, n_lim, 0), a
    assert a["waits"] == 0 and a["wait_ms_avg"] is None, a
    p = t[SHOWN[K_PRIO]]
    assert p["waits"] == 1 and abs(p["wait_ms_avg"] - 1000 * pw) <= 1.0 and p["queued"] == 0, p
    late = t[SHOWN[K_LATE]]
    assert late["deadline_dropped"] == 1 and late["waits"] == 0, late

    # --- routerctl, JSON: the admin API's answer ---
    assert json.loads(_ctl(r, "show", "queue", json_out=True)) == q
    assert json.loads(_ctl(r, "show", "tenants", json_out=True)) == tj
    # --- routerctl, tables ---
    qout = _ctl(r, "show", "queue")
    b = _blocks(qout)
    assert len(b) == 3, qout
    assert b[0][0].split() == ["POOL", "WAITING", "WAITS", "AVG_WAIT_MS", "TIMEOUTS", "REJECTED",
                               "DROPPED", "EXPIRED", "LIMITED"], qout
    row = _table(b[0])[0]
    assert row["POOL"] == pool and row["WAITING"] == "0" and int(row["WAITS"]) == waits, row
    assert (row["DROPPED"], row["EXPIRED"], row["LIMITED"]) == ("1", "1", str(n_lim)), row
    assert abs(float(row["AVG_WAIT_MS"]) - qp["wait_ms_avg"]) <= 0.06, row
    assert b[1][0].split() == ["POOL", "PRIORITY", "WAITING", "ADMITTED"], qout
    assert [(x["POOL"], x["PRIORITY"], x["WAITING"], x["ADMITTED"]) for x in _table(b[1])] == \
        [(pool, str(x["priority"]), str(x["waiting"]), str(x["admitted"])) for x in qp["bands"]], qout
    assert b[2] == ["retry budget: 0 retries allowed, 0 refused"], qout
    tout = _ctl(r, "show", "tenants")
    lines = tout.splitlines()
    assert lines[0].split() == ["TENANT", "QUEUED", "REQUESTS", "LIMITED_REQ", "LIMITED_TOK",
                                "TOKENS", "WAITS", "AVG_WAIT_MS", "DROPPED", "LAST_SEEN"], tout
    rows = _table(lines)
    assert [x["TENANT"] for x in rows] == [x["tenant"] for x in tl], tout
    x = {x["TENANT"]: x for x in rows}
    assert (x[SHOWN[K_LIMITED]]["REQUESTS"], x[SHOWN[K_LIMITED]]["LIMITED_REQ"]) == \
        (str(n_ok), str(n_lim)), tout
    assert x[SHOWN[K_LIMITED]]["AVG_WAIT_MS"] == "-", tout
    assert x[SHOWN[K_LATE]]["DROPPED"] == "1" and x[SHOWN[K_PRIO]]["WAITS"] == "1", tout

    # never a whole key, nor its middle, anywhere
    for where, out in (("metrics", text), ("queue", qtext), ("tenants", ttext),
                       ("show queue", qout), ("show tenants", tout)):
        for k in SHOWN:
            assert k not in out and k[4:-4] not in out, (where, k)
        assert K_GONE not in out, where

    promtool = shutil.which("promtool")
    if promtool is not None:
        p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
        assert p.returncode == 0, (p.stdout + p.stderr).decode()[:2000]


def test_tenant_labels_escaped_and_promtool_clean(env):
    """A key whose kept ends hold a quote and a backslash: /metrics escapes
    them (promtool reads the page), JSON and routerctl show them as they are."""
    be = env.backend("a")
    r = _router(env, be)
    key = 'sk"\\-bbbb-cccc-dddd-9"\\'
    shown = 'sk"\\...-9"\\'
    sts = [request(r.port, "GET", "/x", headers=_auth(key))[0] for _ in range(3)]
    assert sts[0] == 200 and 429 in sts, sts
    text = _scrape(r)
    assert 'routerd_tenant_requests_total{tenant="sk\\"\\\\...-9\\"\\\\"} 1\n' in text, text
    _, s = _parse(text)
    assert _val(s, "routerd_tenant_ratelimited_total", tenant=shown, limit="requests") == \
        sts.count(429)
    _, tj = _api(r, "/api/v1/router/tenants")
    assert [x["tenant"] for x in tj["tenants"]] == [shown], tj
    assert json.loads(_ctl(r, "show", "tenants", json_out=True)) == tj
    assert _ctl(r, "show", "tenants").splitlines()[1].split()[0] == shown
    for out in (text, json.dumps(tj)):
        assert "bbbb-cccc-dddd" not in out
    promtool = shutil.which("promtool")
    if promtool is None:
        env.skip("promtool is not installed", package="prometheus")
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()[:2000]
