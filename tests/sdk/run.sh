#!/bin/bash
# make check-sdk: the official openai SDK for node as a real client of routerd,
# in front of two fakebe backends (demo-1, demo-2) on loopback.  Needs node and
# npm (the openai package is installed into BUILD/sdk on the first run).
# openai 5.x: it uses the platform's fetch.  4.x goes through node-fetch 2.7,
# which on Debian 12's node 18 fails every chunked answer on a kept-alive
# socket with "Premature close" (a false positive of its end-of-chunks check;
# the same with fakebe alone, without routerd).  5.x is pinned: 7.x asks for node 22.
# usage: tests/sdk/run.sh BUILD_DIR
# exit: 0 passed, 77 skipped (no node or npm, or the openai package could not be
# installed), anything else failed
set -eu
B=$(readlink -f "${1:-build}")
HERE=$(dirname "$(readlink -f "$0")")
command -v node >/dev/null && command -v npm >/dev/null || {
	echo "check-sdk: needs node and npm (apt-get install nodejs npm)" >&2; exit 77; }
mkdir -p "$B/sdk"
# a package.json of its own, so that npm installs here and not in some parent
[ -f "$B/sdk/package.json" ] || echo '{"private": true}' >"$B/sdk/package.json"
if ! (cd "$B/sdk" && node -e 'require("openai")' 2>/dev/null); then
	echo "check-sdk: npm install openai@5 into $B/sdk"
	(cd "$B/sdk" && timeout 300 npm install --loglevel=error --no-audit --no-fund openai@5) || {
		echo "check-sdk: npm install openai@5 failed (is the npm registry reachable?)" >&2; exit 77; }
fi
cp "$HERE/openai-check.mjs" "$B/sdk/"
echo "check-sdk: openai $(sed -n 's/.*"version": "\(.*\)".*/\1/p' "$B/sdk/node_modules/openai/package.json"), node $(node --version)"

W=$(mktemp -d /tmp/check-sdk.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P1=$(port) P2=$(port) PR=$(port) PL=$(port) PA=$(port)
"$B/fakebe" -l 127.0.0.1:$P1 -n demo-1 -m demo-model >/dev/null & be1=$!; pids+=($be1); disown $be1
"$B/fakebe" -l 127.0.0.1:$P2 -n demo-2 -m demo-model >/dev/null & be2=$!; pids+=($be2); disown $be2
cat >"$W/routerd.yaml" <<CONF
listen:
  - address: 127.0.0.1:$PR
workers: 2
pidfile: $W/routerd.pid
control:
  socket: $W/routerd.sock
health:
  interval: 1s
  timeout: 500ms
backends:
  - name: demo-1
    address: 127.0.0.1:$P1
  - name: demo-2
    address: 127.0.0.1:$P2
CONF
"$B/routerd" -d -f "$W/routerd.yaml" 2>"$W/routerd.log" & pids+=($!)
# a second routerd, its pool on the llm strategy, in front of the same two backends
sed -e "s/127.0.0.1:$PR/127.0.0.1:$PL/" -e "s|$W/routerd.pid|$W/llm.pid|" \
    -e "s|$W/routerd.sock|$W/llm.sock|" -e 's/^backends:/strategy: llm\nbackends:/' \
    "$W/routerd.yaml" >"$W/llm.yaml"
printf 'admin:\n  address: 127.0.0.1:%s\n' "$PA" >>"$W/llm.yaml"
"$B/routerd" -d -f "$W/llm.yaml" 2>"$W/llm.log" & pids+=($!)
up=0
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PR/v1/models" && { up=1; break; }; sleep 0.05; done
if [ $up = 0 ]; then echo "check-sdk: routerd did not come up"; cat "$W/routerd.log"; exit 1; fi
up=0
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PL/v1/models" && { up=1; break; }; sleep 0.05; done
if [ $up = 0 ]; then echo "check-sdk: the llm routerd did not come up"; cat "$W/llm.log"; exit 1; fi

rc=0
BASE=http://127.0.0.1:$PR/v1 BASE_LLM=http://127.0.0.1:$PL/v1 ADMIN_LLM=http://127.0.0.1:$PA BE1=http://127.0.0.1:$P1 BE2=http://127.0.0.1:$P2 \
	BE1_PID=$be1 BE2_PID=$be2 node "$B/sdk/openai-check.mjs" || rc=$?
if [ $rc -ne 0 ]; then echo "--- routerd.log"; tail -20 "$W/routerd.log"; fi
exit $rc
