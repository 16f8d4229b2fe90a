"""Pool identity across generations (issue 11 point 4, DESIGN "The shared table"): pools
are named, not numbered, for everything that outlives a generation.  A worker of
generation N routes by generation N's pools whatever generation N+1 does to the table:
a reload that reorders, renames, adds or removes pools never sends a request of an old
worker to another pool's backends."""
import http.client
import json
import os
import re
import signal
import time

from test_reload import _ctl, _worker_pids, _write_conf
from test_resilience import wait_until

WORKERS = 2


def _pools_text(r, pools, routes, extra=""):
    """pools: [(name, [backend, ...])] in file order; routes: [(prefix, pool)]."""
    lines = ["listen:", "  - address: 127.0.0.1:%d" % r.port, "workers: %d" % WORKERS,
             "strategy: round_robin", "health:", "  type: none",
             "pidfile: %s" % r.pidfile, "control:", "  socket: %s" % r.ctlsock,
             "timeout:", "  drain: 5s", "pools:"]
    for name, members in pools:
        lines += ["  %s:" % name, "    backends:"]
        for b in members:
            lines.append("      - { name: %s, address: %s }" % (b.name, b.addr))
    lines.append("routes:")
    for prefix, pool in routes:
        lines.append("  - { prefix: %s, pool: %s }" % (prefix, pool))
    return "\n".join(lines) + "\n" + extra


def _start(env, pools, routes):
    # a placeholder config to learn the port, the pidfile and the socket, then the real one
    r = env.router("listen:\n  - address: LISTEN\nworkers: %d\nhealth:\n  type: none\n"
                   "backends:\n  - { name: boot, address: %s }\n" % (WORKERS, pools[0][1][0].addr))
    wait_until(lambda: os.path.exists(r.ctlsock), 5, "the control socket")
    _write_conf(r, _pools_text(r, pools, routes))
    gen = _reload(r, 2)
    return r, gen


def _generations(r):
    """{pid: generation} of the running workers, from routerctl."""
    p = _ctl(r, "-j", "show", "workers")
    assert p.returncode == 0, p.stderr
    return {w["pid"]: w["generation"] for w in json.loads(p.stdout)
            if w.get("role") == "worker" and w.get("pid")}


def _reload(r, gen):
    """SIGHUP, then wait until every worker of generation gen runs and the older ones
    have been told to drain.  Returns gen."""
    r.p.send_signal(signal.SIGHUP)
    pat = re.compile(r"reload: .*: generation %d, " % gen)
    wait_until(lambda: any(pat.search(ln) for ln in r.output().splitlines()), 5,
               "reload to generation %d" % gen)
    wait_until(lambda: sorted(_generations(r).values()).count(gen) == WORKERS, 5,
               "the workers of generation %d" % gen)
    time.sleep(0.3)         # the master has seen them ready and sent SIGQUIT to the old
    return gen


def _get(c, path):
    c.request("GET", path)
    resp = c.getresponse()
    resp.read()
    return resp.status, resp.getheader("X-Backend"), resp.will_close


def test_poolid_swap_keepalive(env):
    """The issue's report: pools a and b, routes /a and /b; swap the two pool blocks and
    SIGHUP; the next GET /a on a connection kept alive across the reload (answered by a
    draining worker of the old generation) must still come from pool a's backend."""
    ba, bb = env.backend("ba"), env.backend("bb")
    pools = [("a", [ba]), ("b", [bb])]
    routes = [("/a", "a"), ("/b", "b")]
    r, gen = _start(env, pools, routes)

    conns = []
    for _ in range(4):      # several, so that every worker holds at least one
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
        assert _get(c, "/a") == (200, "ba", False)
        assert _get(c, "/b") == (200, "bb", False)
        conns.append(c)
    old = set(_worker_pids(r))

    _write_conf(r, _pools_text(r, list(reversed(pools)), routes))
    _reload(r, gen + 1)
    assert set(_worker_pids(r)) & old, "the old workers exited with idle keep-alive conns"
    got = []
    for c in conns:
        got.append(_get(c, "/a"))
        c.close()
    # each answered by the old worker, with Connection: close, from pool a
    assert all(g == (200, "ba", True) for g in got), got

    # and the new generation routes by the new file the same way
    for path, want in (("/a", "ba"), ("/b", "bb")):
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
        st, be, _ = _get(c, path)
        c.close()
        assert (st, be) == (200, want), (path, st, be)

