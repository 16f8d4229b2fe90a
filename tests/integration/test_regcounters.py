"""Registry counters (syncs ok/failed, last success, backends by source) in the
three places operators look: Prometheus /metrics, the admin API, routerctl.  The
master keeps them from the syncer's reports and publishes them in the table's
header; fake registry, fakebe, routerd and routerctl are real processes."""
import json
import os
import subprocess
import time

from harness import free_port, request, wait_port
from test_registry import fakereg, mech, reg_yaml, wait_for

ROUTERCTL = os.environ.get("ROUTERCTL", os.path.abspath("build/routerctl"))


def _prom(port):
    st, _, body = request(port, "GET", "/metrics")
    assert st == 200
    out = {}
    for ln in body.decode().splitlines():
        if ln and not ln.startswith("#"):
            k, v = ln.rsplit(" ", 1)
            out[k] = float(v)
    return out


def _ctl(r, *args):
    p = subprocess.run([ROUTERCTL, "-s", r.ctlsock] + list(args), capture_output=True,
                       text=True, timeout=15)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_registry_counters_everywhere(env):
    b1, b2, st1 = env.backend("b1"), env.backend("b2"), env.backend("st1")
    reg = fakereg(env)
    reg.set([mech(b1), mech(b2)])
    aport = free_port()
    text = reg_yaml(reg.url, configured=[st1]) + "admin:\n  address: 127.0.0.1:%d\n" % aport
    r = env.router(text)
    wait_port(aport)
    t_start = time.time()

    def synced():
        m = _prom(aport)
        return m if m.get('routerd_registry_syncs_total{result="ok"}', 0) >= 2 and \
            m.get('routerd_backends_by_source{source="registry"}') == 2 else None
    m = wait_for(synced, what="two good syncs in /metrics")
    assert m['routerd_backends_by_source{source="static"}'] == 1, m
    assert m['routerd_registry_syncs_total{result="failed"}'] == 0, m
    assert m["routerd_registry_failing"] == 0
    assert abs(m["routerd_registry_last_success_timestamp_seconds"] - time.time()) < 5, m
    assert m["routerd_registry_last_success_timestamp_seconds"] >= t_start - 1

    # the admin API: in /services and in the health answer
    sv = json.loads(request(aport, "GET", "/services")[2])
    g = sv["registry"]
    assert g["enabled"] is True and g["syncs_ok"] >= 2 and g["syncs_failed"] == 0, g
    assert g["backends"] == {"static": 1, "registry": 2}, g
    assert g["last_success"].endswith("Z") and g["failing"] is False, g
    h = json.loads(request(aport, "GET", "/api/v1/router/health")[2])
    assert h["registry"]["backends"] == {"static": 1, "registry": 2}, h["registry"]

    # routerctl: show registry, show summary, -j
    out = _ctl(r, "show", "registry")
    assert "syncs ok" in out and "0 failed" in out and "1 static, 2 registry" in out, out
    assert "registry: ok" in _ctl(r, "show", "summary")
    j = json.loads(_ctl(r, "-j", "show", "registry"))
    assert j["backends"] == {"static": 1, "registry": 2} and j["syncs_ok"] >= 2, j

    # the registry fails: failures count, the set is kept, last success stays put
    last = m["routerd_registry_last_success_timestamp_seconds"]
    reg.mode("500")
    m = wait_for(lambda: (lambda x: x if x['routerd_registry_syncs_total{result="failed"}'] >= 2
                          else None)(_prom(aport)), what="failed syncs")
    assert m["routerd_registry_failing"] == 1, m
    assert m['routerd_backends_by_source{source="registry"}'] == 2, m
    assert m["routerd_registry_last_success_timestamp_seconds"] <= last + 0.5, m
    out = _ctl(r, "show", "registry")
    assert "registry: failing" in out and "last error" in out, out
    j = json.loads(request(aport, "GET", "/services")[2])["registry"]
    assert j["failing"] is True and j["syncs_failed"] >= 2, j
