"""Failover knobs: backup pools, retries.on_status, the delayed same-backend retry, failover figures."""
import http.client
import subprocess
import threading
import time

import harness
from harness import backends_yaml, dead_addr, free_port, get_json, request


def _get(port, path="/x"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("X-Backend"), body


def test_backup_pool_takes_over(env):
    spare = env.backend("spare")
    dead = dead_addr()
    r = env.router("""listen:
  - address: LISTEN
workers: 1
health: {type: none}
retries: {delay: 0}
pools:
  main:
    backup_pool: reserve
    backends:
      - { name: gone, address: %s }
  reserve:
    backends:
      - { name: spare, address: %s }
routes:
  - { prefix: /, pool: main }
""" % (dead, spare.addr))
    seen = [_get(r.port) for _ in range(10)]
    assert all(s == 200 and b == "spare" for s, b, _ in seen), seen


def test_backup_pool_unused_while_the_pool_serves(env):
    a, spare = env.backend("a"), env.backend("spare")
    r = env.router("""listen:
  - address: LISTEN
workers: 1
health: {type: none}
pools:
  main:
    backup_pool: reserve
    backends:
      - { name: a, address: %s }
  reserve:
    backends:
      - { name: spare, address: %s }
routes:
  - { prefix: /, pool: main }
""" % (a.addr, spare.addr))
    seen = [_get(r.port) for _ in range(20)]
    assert all(b == "a" for _, b, _ in seen), seen
    assert spare.stats()["requests"] == 0


def test_on_status_list_is_configurable(env):
    bad, good = env.backend("bad"), env.backend("good")
    bad.fault("500")
    # default list (502,503,504): a 500 is forwarded as it is
    r = env.router(backends_yaml([bad, good]))
    got = [_get(r.port)[0] for _ in range(4)]
    assert 500 in got, got
    env.procs.remove(r)
    r.stop()
    # with 500 in the list, GETs that hit "bad" move to "good"
    r2 = env.router(backends_yaml([bad, good], extra="retries: {on_status: \"500,502,503,504\"}\nbreaker: {threshold: 1000}\n"))
    got = [_get(r2.port) for _ in range(6)]
    assert all(s == 200 and b == "good" for s, b, _ in got), got


def test_same_backend_retried_after_delay(env):
    # the only backend comes up 400 ms after the request: one retry after retries.delay finds it
    port = free_port()
    r = env.router(backends_yaml([type("B", (), {"name": "late", "addr": "127.0.0.1:%d" % port})()],
                                 extra="retries: {delay: 1s}\n"))
    started = {}

    def late_fakebe():
        time.sleep(0.4)
        started["p"] = subprocess.Popen([harness.FAKEBE, "-l", "127.0.0.1:%d" % port, "-n", "late"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = threading.Thread(target=late_fakebe)
    t.start()
    t0 = time.time()
    try:
        status, who, _ = _get(r.port)
        dt = time.time() - t0
    finally:
        t.join()
        if "p" in started:
            started["p"].terminate()
            started["p"].wait()
    assert status == 200 and who == "late", (status, who)
    assert 0.9 <= dt < 3.0, dt


def test_failover_figures_reported(env):
    good = env.backend("good")
    admin_port = free_port()
    r = env.router(backends_yaml(
        [type("B", (), {"name": "gone", "addr": dead_addr()})(), good],
        extra="admin: {address: 127.0.0.1:%d, token: t}\nretries: {delay: 0}\n" % admin_port))
    for _ in range(10):
        assert _get(r.port)[0] == 200
    m = get_json(admin_port, "/api/v1/router/metrics")["failover_events"]
    assert m["total_failovers"] >= 1, m
    assert m["successful_failovers"] == m["total_failovers"], m
    assert m["avg_failover_time_ms"] is not None and m["last_failover"], m
    st, _, body = request(admin_port, "GET", "/metrics")
    text = body.decode()
    assert "routerd_failovers_succeeded_total" in text
    assert 'routerd_pool_queue_depth{pool="default"} 0' in text
