"""Registry syncer: services from the fake registry (tests/fakereg) and from a real etcd
become backends, survive registry outages, leave only after the grace period, and
static ones never leave.  Registry interval 200 ms, grace 2 s in every case."""
import base64
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import time

from harness import FAKEBE, Proc, free_port, request, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
FAKEREG = os.environ.get("FAKEREG") or os.path.join(os.path.dirname(FAKEBE), "fakereg")
if not os.path.exists(FAKEREG):
    FAKEREG = os.path.join(HERE, "..", "fakereg", "fakereg.py")

INTERVAL, GRACE = 0.2, 2.0


class FakeReg(Proc):
    """tests/fakereg on a free loopback port (or the port given, to restart one)."""

    def __init__(self, workdir, port=None, extra=()):
        self.tls = "--tls" in extra
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        super().__init__(["python3", FAKEREG, "-l", "127.0.0.1:%d" % self.port] + list(extra),
                         os.path.join(workdir, "fakereg-%d.log" % self.port))
        wait_port(self.port)

    def _req(self, method, path, body=None):
        if not self.tls:
            return request(self.port, method, path, body=body)
        c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                        context=ssl._create_unverified_context())
        c.request(method, path, body=body)
        r = c.getresponse()
        out = r.read()
        c.close()
        return r.status, {}, out

    def set(self, services):
        st, _, body = self._req("POST", "/__services", body=json.dumps(services))
        assert st == 200, body

    def mode(self, m):
        st, _, body = self._req("POST", "/__mode?m=" + m)
        assert st == 200, body

    def stats(self):
        return json.loads(self._req("GET", "/__stats")[2])


def fakereg(env, **kw):
    r = FakeReg(env.dir, **kw)
    env.procs.append(r)
    return r


def mech(b, sid=None, status="healthy", env="prod", **kw):
    """A mech-compute record for fakebe b."""
    host, port = b.addr.rsplit(":", 1)
    rec = {"serviceName": "llm", "serviceId": sid or b.name, "vmIp": host,
           "internalPort": int(port), "status": status, "environment": env,
           "region": "nyc1", "capabilities": ["demo-model"],
           "healthCheckEndpoint": "http://%s/health" % b.addr,
           "metadata": {"models": ["demo-model"]}, "lastSeen": "2024-01-01T00:00:00Z",
           "internalUrl": "http://%s" % b.addr}
    for k, v in kw.items():
        if k == "static":
            rec["metadata"]["static"] = v
        else:
            rec[k] = v
    return rec


def simple(b, sid=None, healthy=True, type_="openai-api", **md):
    host, port = b.addr.rsplit(":", 1)
    meta = {"type": type_, "models": ["demo-model"]}
    meta.update(md)
    return {"id": sid or b.name, "name": sid or b.name, "host": host, "port": int(port),
            "healthy": healthy, "metadata": meta}


def reg_yaml(url, fmt="mech-compute", extra_registry="", configured=(), token=""):
    lines = ["listen:", "  - address: LISTEN", "workers: 1", "health:", "  type: none",
             "registry:", "  url: %s" % url, "  format: %s" % fmt,
             "  interval: %dms" % int(INTERVAL * 1000), "  grace: %dms" % int(GRACE * 1000),
             "  pool: llm"]
    if token:
        lines.append("  token: %s" % token)
    lines += ["  " + ln for ln in extra_registry.splitlines() if ln.strip()]
    lines += ["pools:", "  llm:", "    strategy: round_robin"]
    if configured:
        lines.append("    backends:")
        for b in configured:
            lines.append("      - { name: %s, address: %s }" % (b.name, b.addr))
    lines += ["routes:", "  - { prefix: /, pool: llm }"]
    return "\n".join(lines) + "\n"


def seen(port, n=20):
    """X-Backend of n requests on fresh connections: {name: count}; 503s count as None."""
    out = {}
    for _ in range(n):
        st, h, _ = request(port, "GET", "/x", timeout=5)
        k = h.get("x-backend") if st == 200 else None
        out[k] = out.get(k, 0) + 1
    return out


def wait_for(fn, timeout=5.0, what="condition"):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def names(port, n=20):
    return set(k for k in seen(port, n) if k is not None)


def test_registry_services_take_traffic(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    reg = fakereg(env, extra=["--token", "s3cret"])
    reg.set([mech(b1), mech(b2)])
    r = env.router(reg_yaml(reg.url, token="s3cret"))
    wait_for(lambda: names(r.port) == {"b1", "b2"}, what="b1 and b2 from the registry")
    assert reg.stats()["last_headers"].get("x-registry-token") == "s3cret"
    c = seen(r.port, 40)
    assert c == {"b1": 20, "b2": 20}, c


def test_registry_grace_then_removed(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    reg = fakereg(env)
    reg.set([mech(b1), mech(b2)])
    r = env.router(reg_yaml(reg.url))
    wait_for(lambda: names(r.port) == {"b1", "b2"}, what="both backends")
    reg.set([mech(b1)])
    t0 = time.time()
    # within the grace the dropped service keeps taking its share
    while time.time() - t0 < GRACE - 0.5:
        c = seen(r.port, 10)
        assert c.get("b2", 0) >= 3 and c.get("b1", 0) >= 3, (time.time() - t0, c)
        time.sleep(0.1)
    # then none at all (grace + one interval + a worker's table refresh)
    wait_for(lambda: names(r.port) == {"b1"}, timeout=GRACE + 2, what="b2 removed")
    assert time.time() - t0 >= GRACE - 0.1
    c = seen(r.port, 30)
    assert c == {"b1": 30}, c
    assert "b2 removed" in r.output(), r.output()[-2000:]


def test_registry_static_never_removed(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    reg = fakereg(env)
    reg.set([mech(b1), mech(b2, static=True)])
    r = env.router(reg_yaml(reg.url))
    wait_for(lambda: names(r.port) == {"b1", "b2"}, what="both backends")
    reg.set([mech(b1)])
    time.sleep(GRACE + 1.5)
    c = seen(r.port, 20)
    assert c == {"b1": 10, "b2": 10}, c
    # an empty registry: the static one still stays
    reg.set([])
    time.sleep(GRACE + 1.5)
    assert names(r.port) == {"b2"}


def test_registry_outage_changes_nothing(env):
    b1, b2 = env.backend("b1"), env.backend("b2")
    reg = fakereg(env)
    reg.set([mech(b1), mech(b2)])
    r = env.router(reg_yaml(reg.url, extra_registry="timeout: 500ms\nmax_size: 64k"))
    wait_for(lambda: names(r.port) == {"b1", "b2"}, what="both backends")
    t0 = time.time()
    for m in ("down", "500", "garbage", "truncated", "partial", "nosuccess",
              "oversize:200000", "slow:1500"):
        reg.mode(m)
        time.sleep(0.5)
        c = seen(r.port, 10)
        assert c == {"b1": 5, "b2": 5}, (m, c)
    # the registry process gone altogether: connection refused
    reg.stop()
    while time.time() - t0 < GRACE + 1.5:
        c = seen(r.port, 10)
        assert c == {"b1": 5, "b2": 5}, ("registry down", c)
        time.sleep(0.2)
    out = r.output()
    assert out.count("failing:") == 1, out[-3000:]
    # it comes back with one service less: now the grace starts
    reg2 = fakereg(env, port=reg.port)
    reg2.set([mech(b1)])
    wait_for(lambda: "is back" in r.output(), what="recovery logged")
    assert names(r.port, 10) == {"b1", "b2"}
    wait_for(lambda: names(r.port) == {"b1"}, timeout=GRACE + 2, what="b2 removed after grace")


def test_registry_filters_and_invalid_records(env):
    bs = [env.backend("b%d" % i) for i in range(1, 7)]
    reg = fakereg(env)
    bad_port = mech(bs[5], sid="badport")
    bad_port["internalPort"] = 70000
    no_ip = mech(bs[5], sid="noip")
    del no_ip["vmIp"], no_ip["internalUrl"]
    reg.set([
        mech(bs[0]),                                  # taken
        mech(bs[1], status="degraded"),               # taken
        mech(bs[2], status="unhealthy"),              # not eligible
        mech(bs[3], status="offline"),                # not eligible
        mech(bs[4], env="staging"),                   # other environment
        bad_port, no_ip,                              # invalid: skipped
        {"serviceId": "x" * 100, "vmIp": "127.0.0.1", "internalPort": 1,
         "status": "healthy", "environment": "prod"},  # name too long
        "not an object", 42,
        mech(bs[5], sid="b6"),                        # taken: bad neighbours do not hurt
    ])
    r = env.router(reg_yaml(reg.url, extra_registry="environment: prod"))
    wait_for(lambda: names(r.port, 30) == {"b1", "b2", "b6"}, what="exactly b1, b2, b6")
    time.sleep(0.5)
    assert names(r.port, 30) == {"b1", "b2", "b6"}


def test_registry_simple_format_type_filter(env):
    b1, b2, b3, b4 = (env.backend(n) for n in ("b1", "b2", "b3", "b4"))
    reg = fakereg(env)
    reg.set([simple(b1), simple(b2, type_="vector-db"), simple(b3, healthy=False),
             simple(b4, weight=3)])
    r = env.router(reg_yaml(reg.url, fmt="simple"))
    wait_for(lambda: names(r.port) == {"b1", "b4"}, what="b1 and b4")
    assert reg.stats()["pulls"] > 0
    # another type filter, from the config
    r.stop()
    env.procs.remove(r)
    r2 = env.router(reg_yaml(reg.url, fmt="simple", extra_registry="type_filter: vector-db"))
    wait_for(lambda: names(r2.port) == {"b2"}, what="only the vector-db service")


def test_registry_update_in_place(env):
    b1, b2, b3 = env.backend("b1"), env.backend("b2"), env.backend("b3")
    reg = fakereg(env)
    reg.set([mech(b1, sid="svc-a"), mech(b2, sid="svc-b")])
    r = env.router(reg_yaml(reg.url))
    wait_for(lambda: names(r.port) == {"b1", "b2"}, what="both backends")
    # svc-a moves to b3's address: same backend, new address, no grace involved
    moved = mech(b3, sid="svc-a")
    reg.set([moved, mech(b2, sid="svc-b")])
    wait_for(lambda: names(r.port) == {"b2", "b3"}, timeout=3, what="svc-a at b3")
    assert "svc-a updated" in r.output() or "1 updated" in r.output(), r.output()[-2000:]


def test_registry_name_of_configured_backend_ignored(env):
    b1, b2, b3 = env.backend("b1"), env.backend("b2"), env.backend("b3")
    reg = fakereg(env)
    # the registry claims the name b1 for b3's address: the configured b1 wins
    reg.set([mech(b3, sid="b1"), mech(b2)])
    r = env.router(reg_yaml(reg.url, configured=[b1]))
    wait_for(lambda: names(r.port) == {"b1", "b2"}, what="configured b1 and registry b2")
    time.sleep(0.5)
    assert names(r.port, 30) == {"b1", "b2"}
    assert r.output().count("service b1 ignored") == 1, r.output()[-2000:]


def test_registry_https_verified(env):
    """HTTPS with a certificate the trust store (SSL_CERT_FILE) vouches for works; without it, nothing."""
    if shutil.which("openssl") is None:
        raise AssertionError("openssl command missing")
    b1 = env.backend("b1")
    cert, key = os.path.join(env.dir, "reg.crt"), os.path.join(env.dir, "reg.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    reg = fakereg(env, extra=["--tls", cert, key])
    reg.set([mech(b1)])
    url = "https://localhost:%d" % reg.port
    old = os.environ.get("SSL_CERT_FILE")
    try:
        os.environ["SSL_CERT_FILE"] = cert
        r = env.router(reg_yaml(url))
    finally:
        if old is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = old
    wait_for(lambda: names(r.port) == {"b1"}, what="b1 over https")
    r.stop()
    env.procs.remove(r)
    # the same registry, not trusted: the pull fails and the pool stays empty
    r2 = env.router(reg_yaml(url))
    wait_for(lambda: "failing:" in r2.output(), what="certificate failure logged")
    assert "certificate" in r2.output(), r2.output()[-2000:]
    assert seen(r2.port, 5) == {None: 5}


# --- etcd -------------------------------------------------------------------

def _etcd_put(port, key, value):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(json.dumps(value).encode()).decode()})
    st, _, out = request(port, "POST", "/v3/kv/put", body=body,
                         headers={"Content-Type": "application/json"})
    assert st == 200, out


def _etcd_del(port, key):
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()})
    st, _, out = request(port, "POST", "/v3/kv/deleterange", body=body,
                         headers={"Content-Type": "application/json"})
    assert st == 200, out


def _etcd_binary():
    etcd = shutil.which("etcd")
    if etcd is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "etcd-server"], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        etcd = shutil.which("etcd")
    return etcd


def test_registry_etcd(env):
    etcd = _etcd_binary()
    if etcd is None:
        env.skip("etcd not installed and cannot be (apt-get install etcd-server)",
                 package="etcd-server")
    cport, pport = free_port(), free_port()
    data = os.path.join(env.dir, "etcd-data")
    e = Proc([etcd, "--name", "routerd-test", "--data-dir", data,
              "--listen-client-urls", "http://127.0.0.1:%d" % cport,
              "--advertise-client-urls", "http://127.0.0.1:%d" % cport,
              "--listen-peer-urls", "http://127.0.0.1:%d" % pport,
              "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % pport,
              "--initial-cluster", "routerd-test=http://127.0.0.1:%d" % pport],
             os.path.join(env.dir, "etcd.log"))
    env.procs.append(e)
    wait_port(cport, timeout=15)
    wait_for(lambda: request(cport, "GET", "/health")[0] == 200, timeout=15, what="etcd healthy")
    b1, b2, b3 = env.backend("b1"), env.backend("b2"), env.backend("b3")
    _etcd_put(cport, "/routerd/services/b1", mech(b1))
    _etcd_put(cport, "/routerd/services/b2", mech(b2))
    _etcd_put(cport, "/routerd/servicesX/b3", mech(b3))   # outside the prefix
    _etcd_put(cport, "/routerd/services/bad", {"serviceId": "bad"})   # invalid: skipped
    r = env.router(reg_yaml("http://127.0.0.1:%d" % cport, fmt="etcd",
                            extra_registry="prefix: /routerd/services/"))
    wait_for(lambda: names(r.port) == {"b1", "b2"}, what="b1 and b2 from etcd")
    # a change is followed; a deleted key waits out the grace
    _etcd_put(cport, "/routerd/services/b3", mech(b3))
    wait_for(lambda: names(r.port, 30) == {"b1", "b2", "b3"}, what="b3 added")
    _etcd_del(cport, "/routerd/services/b1")
    t0 = time.time()
    time.sleep(GRACE - 0.7)
    assert "b1" in names(r.port, 30)
    wait_for(lambda: names(r.port, 30) == {"b2", "b3"}, timeout=GRACE + 2, what="b1 removed")
    assert time.time() - t0 >= GRACE - 0.1
    # etcd stopped: an outage, nothing changes
    e.stop(signal.SIGKILL)
    time.sleep(GRACE + 1)
    assert names(r.port, 30) == {"b2", "b3"}
