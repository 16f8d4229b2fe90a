#!/bin/sh
# Self-check of fakebe: start it on a free loopback port and check its endpoints with curl and python3.
#
# usage: sh tests/fakebe/selfcheck.sh [path/to/fakebe]   (default build/fakebe)
# Exits 0 when every check passes, 1 otherwise.  MAXRSS_KB (default 65536)
# bounds fakebe's peak RSS after the 100 MB transfers.

set -u
FAKEBE=${1:-${FAKEBE:-build/fakebe}}
MAXRSS_KB=${MAXRSS_KB:-65536}
BIG=104857600
tmp=$(mktemp -d)
pid=
fails=0

cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { echo "ok   $1"; }
ko() { echo "FAIL $1"; fails=$((fails + 1)); }
check() {	# check NAME EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok "$1"; else ko "$1: want [$2] got [$3]"; fi
}

"$FAKEBE" -l 127.0.0.1:0 -n selfcheck -m demo-model,other >"$tmp/out" 2>"$tmp/err" &
pid=$!
i=0
while ! grep -q 'listening on' "$tmp/out" 2>/dev/null; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
		echo "FAIL fakebe did not start"; cat "$tmp/err"; exit 1
	fi
	sleep 0.05
done
port=$(sed -n 's/^fakebe selfcheck listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/out")
[ -n "$port" ] || { echo "FAIL banner: $(cat "$tmp/out")"; exit 1; }
B=http://127.0.0.1:$port
ok "started: $(cat "$tmp/out")"

# --- plain endpoints
check "health" '200 {"status":"ok","backend":"selfcheck"}' \
    "$(curl -s -w '%{http_code} ' -o "$tmp/b" $B/health; cat "$tmp/b")"
check "X-Backend" "X-Backend: selfcheck" \
    "$(curl -sI $B/health | grep -i '^x-backend' | tr -d '\r')"
check "models" "demo-model other" "$(curl -s $B/v1/models |
    python3 -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)["data"]))')"
check "chat" "Hello from selfcheck stop" "$(curl -s $B/v1/chat/completions \
    -H 'Content-Type: application/json' \
    -d '{"model":"other","messages":[{"role":"user","content":"hi"}]}' |
    python3 -c 'import json,sys; c=json.load(sys.stdin)["choices"][0]; print(c["message"]["content"], c["finish_reason"])')"
check "chat unknown model" "404 model_not_found" "$(curl -s -o "$tmp/b" -w '%{http_code}' \
    $B/v1/chat/completions -d '{"model":"nope","messages":[]}'; echo " $(python3 -c \
    'import json,sys; print(json.load(open(sys.argv[1]))["error"]["code"])' "$tmp/b")")"
check "default path" '{"backend":"selfcheck","path":"/x/y?z=1","method":"DELETE"}' \
    "$(curl -s -X DELETE "$B/x/y?z=1")"
check "status 503" "503" "$(curl -s -o /dev/null -w '%{http_code}' "$B/status?code=503")"
check "close" "connection: close" \
    "$(curl -si $B/close | grep -i '^connection:' | tr -d '\r' | tr A-Z a-z)"
curl -s -m 1 -o /dev/null $B/hang; check "hang (curl timeout 28)" 28 $?
t=$(curl -s -o /dev/null -w '%{time_total}' "$B/slow?ms=300")
python3 -c "import sys; sys.exit(0 if float('$t') >= 0.3 else 1)" &&
    ok "slow 300 ms ($t s)" || ko "slow: $t s"

# --- 100 MB download, Content-Length and chunked, against a local pattern
pattern_sha() {
	python3 -c '
import hashlib, sys
n = int(sys.argv[1]); blk = bytes((i * 31 + 7) & 0xff for i in range(65536))
h = hashlib.sha256()
while n > 0:
	h.update(blk[:min(n, 65536)]); n -= 65536
print(h.hexdigest())' "$1"
}
want=$(pattern_sha $BIG)
check "bytes 100 MB" "$want" "$(curl -s "$B/bytes?n=$BIG" | sha256sum | cut -d' ' -f1)"
check "bytes 100 MB chunked" "$want" \
    "$(curl -s "$B/bytes?n=$BIG&chunked=1" | sha256sum | cut -d' ' -f1)"
check "bytes odd size" "$(pattern_sha 1000003)" \
    "$(curl -s "$B/bytes?n=1000003" | sha256sum | cut -d' ' -f1)"
check "bytes Content-Length" "content-length: 1000003" \
    "$(curl -sI "$B/bytes?n=1000003" | grep -i '^content-length' | tr -d '\r' | tr A-Z a-z)"
for q in "framing=cl&write=0" "framing=chunked&write=0&chunk=1000" "framing=chunked&write=977" \
    "framing=close&write=0" "framing=close&write=977"; do
	check "bytes $q" "$(pattern_sha 100001)" \
	    "$(curl -s "$B/bytes?n=100001&$q" | sha256sum | cut -d' ' -f1)"
done
check "bytes framing=close head" "connection: close|" \
    "$(curl -sI "$B/bytes?n=5&framing=close" | tr -d '\r' | tr A-Z a-z |
    grep -E '^(connection|content-length|transfer-encoding):' | tr '\n' '|')"
check "status 204 cl=7" "204 content-length: 7|0" "$(curl -s -D "$tmp/h" -o "$tmp/b" \
    -w '%{http_code}' "$B/status?code=204&cl=7") $(tr -d '\r' <"$tmp/h" | tr A-Z a-z |
    grep '^content-length' | tr '\n' '|')$(wc -c <"$tmp/b")"

# --- 100 MB upload, Content-Length and chunked; echo
head -c $BIG /dev/urandom >"$tmp/up"
usha=$(sha256sum <"$tmp/up" | cut -d' ' -f1)
check "upload 100 MB" "$BIG $usha" "$(curl -s -T "$tmp/up" $B/upload |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["bytes"], j["sha256"])')"
check "upload 100 MB chunked" "$BIG $usha" "$(curl -s -X POST \
    -H 'Transfer-Encoding: chunked' -T "$tmp/up" $B/upload |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["bytes"], j["sha256"])')"
check "echo 100 MB" "$usha" \
    "$(curl -s --data-binary @"$tmp/up" $B/echo | sha256sum | cut -d' ' -f1)"
check "echo chunked" "hello" "$(curl -s -H 'Transfer-Encoding: chunked' -d hello $B/echo)"
rss=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$pid/status)
[ "$rss" -lt "$MAXRSS_KB" ] && ok "peak RSS $rss kB < $MAXRSS_KB kB" ||
    ko "peak RSS $rss kB >= $MAXRSS_KB kB"

# --- streaming, keep-alive, pipelining, faults and broken answers on raw sockets
python3 - "$port" <<'EOF' || fails=$((fails + 1))
import json, socket, sys, time

port = int(sys.argv[1])
bad = 0

def res(name, cond, detail=""):
    global bad
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
    if not cond:
        bad += 1

def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s

def request(method, path, body=b"", extra=""):
    s = conn()
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               "Content-Length: %d\r\n%s\r\n" % (method, path, len(body), extra)).encode() + body)
    data = b""
    while True:
        try:
            b = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not b:
            break
        data += b
    s.close()
    return data

def stats():
    d = request("GET", "/__stats")
    return json.loads(d.split(b"\r\n\r\n", 1)[1])

def timed_events(path, body=b"", method="GET"):
    """Times (s, from sending) at which each SSE event arrived."""
    s = conn()
    t0 = time.monotonic()
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               "Content-Length: %d\r\n\r\n" % (method, path, len(body))).encode() + body)
    times, buf = [], b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        buf += b
        n = buf.count(b"data: ")
        while len(times) < n:
            times.append(time.monotonic() - t0)
    s.close()
    return times, buf

# SSE: the first event arrives well before the stream ends.
t, _ = timed_events("/sse?n=5&delay_ms=200")
res("sse 5 events", len(t) == 5, str(t))
res("sse first event early (%.3f s of %.3f s)" % (t[0], t[-1]),
    len(t) == 5 and t[0] < 0.15 and t[-1] >= 0.8, str(t))
t, buf = timed_events("/v1/chat/completions",
    b'{"model":"demo-model","stream":true,"max_tokens":4,"messages":[]}', "POST")
res("chat stream token events", len(t) == 4 + 1 + 1 and buf.rstrip().endswith(b"0"), str(t))
res("chat stream [DONE]", b"data: [DONE]\n\n" in buf)
res("chat stream first token early (%.3f s of %.3f s)" % (t[0], t[3]),
    t[0] < 0.05 and t[3] >= 0.06, str(t))

# Keep-alive is checked from the shell with curl; pipelining here:
# two requests in one write, two responses in order, one connection.
c0 = stats()["connections"]
s = conn()
s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
          b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
          b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
s.close()
i1, i2, i3 = data.find(b'"/first"'), data.find(b"\r\n\r\nhello"), data.find(b'"/third"')
res("pipelining: 3 responses in order",
    data.count(b"HTTP/1.1 200 OK") == 3 and 0 < i1 < i2 < i3, repr(data[:300]))
res("pipelining: one connection", stats()["connections"] == c0 + 2)

# Bad requests: 400 and close.
d = request("POST", "/x", b"", "Transfer-Encoding: chunked\r\n")
res("CL + TE request -> 400", d.startswith(b"HTTP/1.1 400"), repr(d[:60]))
# llhttp 8.1 accepts obs-fold in a request even in strict mode and joins
# the lines; fakebe records it as such (rejecting it is routerd's job).
d = request("GET", "/headers", b"", "X-Fold: a\r\n b\r\n")
res("obs-fold request recorded joined", b'["X-Fold","a b"]' in d, repr(d[-200:]))
d = request("GET", "/" + "a" * 20000)
res("URI too long -> 414", d.startswith(b"HTTP/1.1 414"), repr(d[:60]))

# Broken answers.
def bad_kind(kind):
    return request("GET", "/bad?kind=" + kind)
res("bad status_line", bad_kind("status_line").startswith(b"HTTP/1.1 2x0 "))
d = bad_kind("conflicting_cl")
res("bad conflicting_cl", b"Content-Length: 5\r\nContent-Length: 6\r\n" in d)
d = bad_kind("cl_te")
res("bad cl_te", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n" in d)
res("bad obs_fold", b"X-Folded: a\r\n b\r\n" in bad_kind("obs_fold"))
d = bad_kind("short_cl")
res("bad short_cl", d.endswith(b"\r\n\r\n0123456789") and b"Content-Length: 100\r\n" in d)
res("bad short_chunked", bad_kind("short_chunked").endswith(b"\r\n\r\n5\r\nhello\r\n"))
res("bad close_early", bad_kind("close_early") == b"")
d = bad_kind("bare_lf")
res("bad bare_lf", d.startswith(b"HTTP/1.1 200 OK\nX-Backend") and b"\r" not in d)
d = bad_kind("huge_header")
res("bad huge_header", len(d) > 65536 and d.endswith(b"\r\n\r\nok"))
# early_answer: 200 before the body is sent; the connection then still serves.
s = conn()
s.sendall(b"POST /bad?kind=early_answer HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
d = s.recv(4096)
res("bad early_answer answers before the body", d.startswith(b"HTTP/1.1 200"), repr(d[:40]))
s.sendall(b"0123456789GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
d = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    d += b
s.close()
res("bad early_answer keeps serving", b'"/after"' in d, repr(d[:80]))

# Faults; /__stats and /__fault stay reachable.
def fault(m):
    return request("POST", "/__fault?mode=" + m).startswith(b"HTTP/1.1 200")
res("fault 500", fault("500") and request("GET", "/health").startswith(b"HTTP/1.1 500"))
res("fault 500: stats exempt", stats()["fault"] == "500")
fault("hang")
s = conn()
s.settimeout(0.5)
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    d = s.recv(100)
    res("fault hang", False, repr(d))
except socket.timeout:
    res("fault hang", True)
s.close()
fault("close")
res("fault close", request("GET", "/health") == b"")
res("fault close: stats exempt", stats()["fault"] == "close")
fault("slow:300")
t0 = time.monotonic()
d = request("GET", "/health")
dt = time.monotonic() - t0
res("fault slow:300 (%.3f s)" % dt, d.startswith(b"HTTP/1.1 200") and dt >= 0.3)
fault("none")
res("fault none", request("GET", "/health").startswith(b"HTTP/1.1 200"))
res("bad fault mode -> 400", request("POST", "/__fault?mode=bogus").startswith(b"HTTP/1.1 400"))
sys.exit(1 if bad else 0)
EOF

# keep-alive: two URLs on one curl connection add one connection, not two.
c0=$(curl -s $B/__stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])')
c12=$(curl -s $B/__stats $B/__stats | python3 -c '
import json, sys
d = json.JSONDecoder(); s = sys.stdin.read().strip(); a, i = d.raw_decode(s); b, _ = d.raw_decode(s[i:].lstrip())
print(a["connections"], b["connections"])')
check "keep-alive (two URLs, one connection)" "$((c0 + 1)) $((c0 + 1))" "$c12"
check "reset" '0 0' "$(curl -s -X POST $B/__reset |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["requests"], j["health"])')"

# SIGTERM: a clean exit with status 0.
kill -TERM "$pid"
wait "$pid"
check "SIGTERM exit status" 0 $?
pid=
if [ -s "$tmp/err" ]; then
	ko "fakebe stderr not empty:"; cat "$tmp/err"
fi

if [ $fails -ne 0 ]; then
	echo "selfcheck: $fails FAILED"
	exit 1
fi
echo "selfcheck: all passed"
