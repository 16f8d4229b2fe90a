#!/bin/sh
# make run: two demo OpenAI-compatible backends and routerd in front of them,
# on the embedded default config (127.0.0.1:8080 -> 127.0.0.1:8001, :8002).
ROUTERD=${1:-./routerd}
FAKEBE=${2:-./build/fakebe}
pids=""
cleanup() {
	[ -n "$pids" ] && kill $pids 2>/dev/null
	wait 2>/dev/null
}
trap cleanup EXIT INT TERM
"$FAKEBE" -l 127.0.0.1:8001 -n demo-1 -m demo-model & pids="$pids $!"
"$FAKEBE" -l 127.0.0.1:8002 -n demo-2 -m demo-model & pids="$pids $!"
sleep 0.3
cat <<'MSG'

routerd is starting on http://127.0.0.1:8080 in front of demo-1 (:8001) and demo-2 (:8002).
Try:
  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \
       -d '{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}'
  curl -sN http://127.0.0.1:8080/v1/chat/completions \
       -d '{"model":"demo-model","stream":true,"messages":[]}'
Stop with Ctrl-C.

MSG
"$ROUTERD" -d
