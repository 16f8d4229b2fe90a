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
import threading
import time

from test_reload import _ctl, _worker_pids, _write_conf
from test_resilience import figure, wait_until

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


# --- under load: reorder, rename, add, remove pools and routes across reloads ---------


def _owner(port, cport, pids):
    """pid of the process (among pids) holding the server side of the loopback
    connection 127.0.0.1:cport -> 127.0.0.1:port, or None (not accepted yet)."""
    want_local = "0100007F:%04X" % port
    want_rem = "0100007F:%04X" % cport
    inode = None
    with open("/proc/net/tcp") as f:
        for ln in f.readlines()[1:]:
            x = ln.split()
            if x[1] == want_local and x[2] == want_rem:
                inode = x[9]
                break
    if inode is None or inode == "0":
        return None
    target = "socket:[%s]" % inode
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == target:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


class _Clients:
    """`threads` threads, each on its own keep-alive connection, GET one of paths in
    turn until stopped.  A new connection is first attributed to the worker that
    accepted it (the server side of a loopback socket, from /proc), so every answer
    on it is known to come from that worker; a Connection: close answer makes the
    thread open another.  recs: (pid, path, status, backend, t, error)."""

    def __init__(self, r, paths, threads=6, seconds=30.0):
        self.r = r
        self.paths = paths
        self.recs = []
        self.lost = 0               # connections no worker was seen to own in 2 s
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.deadline = time.time() + seconds
        self.ts = [threading.Thread(target=self._run, args=(k,), daemon=True)
                   for k in range(threads)]
        for t in self.ts:
            t.start()

    def _connect(self):
        for _ in range(20):
            c = http.client.HTTPConnection("127.0.0.1", self.r.port, timeout=5)
            c.connect()
            cport = c.sock.getsockname()[1]
            end = time.time() + 2.0
            while time.time() < end:
                pid = _owner(self.r.port, cport, self.r.workers())
                if pid is not None:
                    return c, pid
                time.sleep(0.005)
            c.close()
            with self.lock:
                self.lost += 1
        raise AssertionError("no worker accepted a connection in 20 tries")

    def _run(self, k):
        c, pid, i = None, None, k
        while not self.stop_ev.is_set() and time.time() < self.deadline:
            if c is None:
                c, pid = self._connect()
            path = self.paths[i % len(self.paths)]
            i += 1
            t0 = time.time()
            try:
                c.request("GET", "%s?i=%d" % (path, i))
                resp = c.getresponse()
                resp.read()
                rec = (pid, path, resp.status, resp.getheader("X-Backend"), t0, None)
                if resp.will_close:
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException) as e:
                rec = (pid, path, None, None, t0, repr(e))
                c.close()
                c = None
            with self.lock:
                self.recs.append(rec)
        if c is not None:
            c.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.ts:
            t.join(10)


def test_poolid_reloads_under_load(env):
    """Six generations under keep-alive load from six connections: pools reordered,
    renamed (c -> d -> c), added (e), removed (b, then e), routes changed (/b to pool a,
    /e added then removed) and a backend moved between pools (a2 into e and back).
    Every answer must come from a backend of the pool its worker's own generation
    routes that path to (counting that pool's later members by name, as the table
    moves on), never from another pool's; a path its generation has no route for is
    404; and no request fails for a pool that every later generation still has."""
    bk = {n: env.backend(n) for n in ("a1", "a2", "b1", "c1", "e1", "e2")}
    a1, a2, b1, c1, e1, e2 = (bk[n] for n in ("a1", "a2", "b1", "c1", "e1", "e2"))
    R = [("/a", "a"), ("/b", "b"), ("/c", "c")]
    plan = [
        # 1: the first file
        ([("a", [a1, a2]), ("b", [b1]), ("c", [c1])], R),
        # 2: the same pools, the order reversed (the report)
        ([("c", [c1]), ("b", [b1]), ("a", [a1, a2])], R),
        # 3: c renamed d (its backend with it), e added, order shuffled
        ([("e", [e1]), ("a", [a1, a2]), ("d", [c1]), ("b", [b1])],
         [("/a", "a"), ("/b", "b"), ("/c", "d"), ("/e", "e")]),
        # 4: b removed and /b now to a; a2 moved from a to e
        ([("d", [c1]), ("e", [e1, a2]), ("a", [a1])],
         [("/a", "a"), ("/b", "a"), ("/c", "d"), ("/e", "e")]),
        # 5: b back (first), d renamed back to c, a2 back in a, e2 added to e
        ([("b", [b1]), ("c", [c1]), ("a", [a1, a2]), ("e", [e1, e2])],
         [("/a", "a"), ("/b", "b"), ("/c", "c"), ("/e", "e")]),
        # 6: e and its route removed, the first order again
        ([("a", [a1, a2]), ("b", [b1]), ("c", [c1])], R),
    ]
    r, gen = _start(env, plan[0][0], plan[0][1])
    # config generation g (the master's numbering) -> plan entry
    gen_plan = {gen: plan[0]}
    pid_gen = dict(_generations(r))

    def members(g, pool):
        for name, ms in gen_plan[g][0]:
            if name == pool:
                return {b.name for b in ms}
        return None

    def route(g, path):
        for prefix, pool in gen_plan[g][1]:
            if path == prefix:
                return pool
        return None

    cl = _Clients(r, ["/a", "/b", "/c", "/e"], threads=6)
    loaded_at = {}
    try:
        time.sleep(0.6)
        for pools, routes in plan[1:]:
            _write_conf(r, _pools_text(r, pools, routes))
            gen_plan[gen + 1] = (pools, routes)
            loaded_at[gen + 1] = time.time()
            gen = _reload(r, gen + 1)
            pid_gen.update(_generations(r))
            time.sleep(0.5)
        time.sleep(0.3)
    finally:
        cl.stop()
    last = gen

    bad, failed, stale, per_gen, gone503 = [], [], 0, {}, 0
    for pid, path, status, be, t0, err in cl.recs:
        g = pid_gen.get(pid)
        if g is None:
            bad.append(("worker of no known generation", pid, path, status, be))
            continue
        per_gen[g] = per_gen.get(g, 0) + 1
        if g + 1 in loaded_at and t0 > loaded_at[g + 1]:
            stale += 1          # asked of a worker whose generation was already replaced
        pool = route(g, path)
        if err is not None:
            failed.append((g, path, err))
            continue
        if pool is None:
            if status != 404 or be is not None:
                bad.append(("no route in its generation", g, path, status, be))
            continue
        # the pool's members by name in its generation and every later one
        allowed = set()
        kept = True
        for g2 in range(g, last + 1):
            m = members(g2, pool)
            if m is None:
                kept = False
            else:
                allowed |= m
        if status == 200:
            if be not in allowed:
                bad.append(("another pool's backend", g, path, pool, be, sorted(allowed)))
        elif status == 503 and not kept:
            gone503 += 1        # its pool left the table: what a removed pool gets
        else:
            failed.append((g, path, pool, status, be))
    n = len(cl.recs)
    figure("poolid", "%d reloads under %d requests from 6 keep-alive connections: %d "
           "answered by a generation already replaced, %d wrong pool, %d failed, %d 503 "
           "for a pool its generation had and the table no longer; per generation %s" % (
               len(plan) - 1, n, stale, len(bad), len(failed), gone503, per_gen))
    assert bad == [], "%d of %d answers wrong, e.g. %s" % (len(bad), n, bad[:8])
    assert failed == [], "%d of %d requests failed, e.g. %s" % (len(failed), n, failed[:8])
    assert n >= 500, "only %d requests" % n
    assert sorted(per_gen) == list(range(2, last + 1)), per_gen
    # the race this is about happened: old workers answered after the table moved on
    assert stale >= 2 * len(plan), "only %d answers from replaced generations" % stale
    assert cl.lost < 5, cl.lost
