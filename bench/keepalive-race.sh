#!/bin/bash
# keepalive-race: how many POSTs are lost when a backend closes idle keep-alive
# connections on its own clock.  An nginx backend closes them after 100 ms; a
# client sends one POST per new connection through routerd, the gaps swept
# across 95-105 ms, so some requests are sent into a pooled connection just as
# the backend closes it.  routerd cannot replay those (the backend may have run
# them) and answers 502.  timeout.upstream_idle below the backend's timeout
# makes routerd close first, and nothing is lost.
# usage: bench/keepalive-race.sh [ROUTERD] [UPSTREAM_IDLE] [REQUESTS]
#   e.g. bench/keepalive-race.sh build/routerd 90ms 1000    (expect no 502)
#        bench/keepalive-race.sh build/routerd 200ms 1000   (expect a few % 502)
set -eu
RD=$(readlink -f "${1:-build/routerd}") IDLE=${2:-90ms} N=${3:-1000}
export PATH=$PATH:/usr/sbin
W=$(mktemp -d /tmp/keepalive-race.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; sleep 0.3; rm -rf "$W"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PB=$(port) PR=$(port)
cat >"$W/backend.conf" <<CONF
worker_processes 1;
daemon off;
error_log $W/backend.err;
pid $W/backend.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_timeout 100ms;
  server { listen 127.0.0.1:$PB; location / { return 200 "ok\n"; } }
}
CONF
cat >"$W/routerd.yaml" <<CONF
listen:
  - address: 127.0.0.1:$PR
workers: 1
pidfile: $W/routerd.pid
control:
  socket: $W/routerd.sock
health: {type: none}
timeout: {upstream_idle: $IDLE}
backends:
  - { name: nginx, address: 127.0.0.1:$PB }
CONF
nginx -p "$W" -c "$W/backend.conf" & pids+=($!)
"$RD" -d -f "$W/routerd.yaml" 2>"$W/routerd.log" & pids+=($!)
sleep 0.5
python3 - "$PR" "$N" "$IDLE" <<'PY'
import http.client, sys, time
port, n, idle = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
res = {}
for i in range(n):
    time.sleep(0.095 + (i % 21) * 0.0005)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", "/v1/chat/completions", body=b'{"x":1}',
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    c.close()
    res[r.status] = res.get(r.status, 0) + 1
print("keepalive-race: backend closes idle connections after 100ms, routerd upstream_idle %s: %s"
      % (idle, " ".join("%d x %d" % (k, v) for k, v in sorted(res.items()))))
PY
