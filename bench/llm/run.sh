#!/bin/bash
# make bench-llm: nginx, HAProxy and routerd (least_connections, least_tokens, llm) in front
# of the same simulated vLLM fleet (4 x tests/vllmsim/vllmsim.py on loopback), the same
# open-loop streaming workloads at the same rates, one proxy at a time.  The sims restart
# before every run, so every proxy starts from cold prefix caches.
#
# Workloads:
#   a  shared-prefix at a rate that least-connection routing cannot carry (cache misses
#      make the fleet prefill-bound) but prefix affinity can
#   b  shared-prefix at a rate the fleet carries under least-connection
#   c  unique prompts (no affinity to be had: routing must not cost anything)
# The sims are calibrated so that each backend's prefix cache holds about a quarter of the
# groups' system prompts: least-connection gets ~25 % hits, perfect affinity > 80 %
# (the row "pinned", loadgen.py --pin straight at the sims with no proxy, shows that ceiling).
#
# Environment: BENCH_LLM_SECONDS (arrivals per run, default 20), BENCH_LLM_RATE_A / _B / _C
# (req/s, default 36 / 16 / 12), BENCH_LLM_PROXIES (default "nginx haproxy
# routerd:least_connections routerd:least_tokens routerd:llm pinned"), BENCH_LLM_WORKLOADS
# (default "a b c"; also "m": multi-turn at rate B), BENCH_LLM_METRICS (1: llm reads the
# sims' /metrics, the default; 0: it does not), ROUTERD (default build/routerd),
# B (build dir; results go to $B/bench-llm/).
set -u
cd "$(dirname "$0")/../.."
B=${B:-build}
ROUTERD=${ROUTERD:-$B/routerd}
SECS=${BENCH_LLM_SECONDS:-20}
RATE_A=${BENCH_LLM_RATE_A:-36}
RATE_B=${BENCH_LLM_RATE_B:-16}
RATE_C=${BENCH_LLM_RATE_C:-12}
PROXIES=${BENCH_LLM_PROXIES:-nginx haproxy routerd:least_connections routerd:least_tokens routerd:llm pinned}
WORKLOADS=${BENCH_LLM_WORKLOADS:-a b c}
MODEL=sim-llm
OUT=$B/bench-llm
export PATH=$PATH:/usr/sbin

# One GPU each: 8 sequences, 16-token blocks, a 320-block (5,120-token) prefix cache, a
# 512-token step budget, prefill at 150 us/token (a 1,088-token miss: ~160 ms of engine time)
# and decode steps of 5 ms + 0.5 ms per running sequence.
SIM_ARGS=(--model "$MODEL" --max-num-seqs 8 --block-tokens 16 --cache-blocks 320
	  --max-batched-tokens 512 --prefill-us-per-token 150 --decode-base-ms 5
	  --decode-per-seq-ms 0.5)
# 16 groups x a 1,024-token system prompt + a 64-token question, 32 output tokens.
LOAD_ARGS=(--model "$MODEL" --groups 16 --system-tokens 1024 --question-tokens 64
	   --max-tokens 32 --timeout 60)
DRAIN=$((SECS / 2 + 5))

need() { command -v "$1" >/dev/null 2>&1; }
for t in nginx haproxy python3; do
	need "$t" || { echo "bench-llm: $t is not installed (sh packaging/build-deps.sh)" >&2; exit 2; }
done
[ -x "$ROUTERD" ] || { echo "bench-llm: $ROUTERD not built (make)" >&2; exit 2; }

DIR=$(mktemp -d /tmp/bench-llm.XXXXXX)
mkdir -p "$OUT" && rm -f "$OUT"/*.json
SIMPIDS=()
PROXYPID=
cleanup() {
	for p in "${SIMPIDS[@]}" $PROXYPID; do kill "$p" 2>/dev/null; done
	sleep 0.2
	for p in "${SIMPIDS[@]}" $PROXYPID; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() {
	for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
	return 1
}
stop() {	# stop PID and reap it
	[ -n "$1" ] || return 0
	kill "$1" 2>/dev/null
	for _ in $(seq 1 40); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

SP=() PN=$(freeport) PH=$(freeport) PR=$(freeport) PA=$(freeport)
for i in 1 2 3 4; do SP+=("$(freeport)"); done

fleet_start() {
	local i
	SIMPIDS=()
	for i in 0 1 2 3; do
		python3 tests/vllmsim/vllmsim.py --listen "127.0.0.1:${SP[$i]}" --seed $((i + 1)) \
		    "${SIM_ARGS[@]}" >"$DIR/sim$i.log" 2>&1 &
		SIMPIDS+=($!)
	done
	for i in 0 1 2 3; do
		waitport "${SP[$i]}" || { echo "bench-llm: sim $i did not listen" >&2; cat "$DIR/sim$i.log" >&2; exit 1; }
	done
}
fleet_stop() { local q; for q in "${SIMPIDS[@]}"; do stop "$q"; done; SIMPIDS=(); }

cat >"$DIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $DIR/nginx.err;
pid $DIR/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  upstream be {
    least_conn;
    server 127.0.0.1:${SP[0]}; server 127.0.0.1:${SP[1]};
    server 127.0.0.1:${SP[2]}; server 127.0.0.1:${SP[3]};
    keepalive 256;
  }
  server { listen 127.0.0.1:$PN backlog=4096;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_read_timeout 120s; } }
}
EOF
cat >"$DIR/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  http-reuse always
  option http-no-delay      # token events leave one by one (no merging for MSG_MORE)
frontend fe
  bind 127.0.0.1:$PH
  default_backend be
backend be
  balance leastconn
  server s1 127.0.0.1:${SP[0]}
  server s2 127.0.0.1:${SP[1]}
  server s3 127.0.0.1:${SP[2]}
  server s4 127.0.0.1:${SP[3]}
EOF
routerd_conf() {	# routerd_conf STRATEGY EXTRA-HEALTH-LINES > file
	cat <<EOF
# written by bench/llm/run.sh
listen:
  - address: 127.0.0.1:$PR
pidfile: $DIR/routerd.pid
control:
  socket: $DIR/routerd.sock
admin:
  address: 127.0.0.1:$PA
workers: 1
health:
  type: http
  path: /health
  interval: 2s
  timeout: 1s
$2
timeout:
  upstream_response: 120s
pools:
  llm:
    strategy: $1
    backends:
      - { name: sim1, address: 127.0.0.1:${SP[0]}, models: [$MODEL] }
      - { name: sim2, address: 127.0.0.1:${SP[1]}, models: [$MODEL] }
      - { name: sim3, address: 127.0.0.1:${SP[2]}, models: [$MODEL] }
      - { name: sim4, address: 127.0.0.1:${SP[3]}, models: [$MODEL] }
EOF
}

# Which routerd strategies this build takes: the llm one with the backends' /metrics read
# when it can, without when not, SKIP when `routerd -t` refuses the strategy itself.
declare -A CONF SKIP
for p in $PROXIES; do
	case $p in routerd:*) ;; *) continue ;; esac
	s=${p#routerd:} f="$DIR/routerd-$s.yaml"
	routerd_conf "$s" "  metrics: true
  metrics_interval: 1s" >"$f"
	if [ "$s" = llm ] && [ "${BENCH_LLM_METRICS:-1}" = 1 ] &&
	    "$ROUTERD" -t -f "$f" >/dev/null 2>&1; then CONF[$p]=$f; continue; fi
	routerd_conf "$s" "" >"$f"
	if "$ROUTERD" -t -f "$f" >"$DIR/t-$s.log" 2>&1; then CONF[$p]=$f; else SKIP[$p]=1; fi
done

proxy_start() {	# proxy_start NAME: sets PROXYPID and URLS
	local PORT
	case $1 in
	pinned)	# no proxy: each group (session) always on the same sim, the affinity ceiling
		URLS=(--pin)
		for PORT in "${SP[@]}"; do URLS+=(--url "http://127.0.0.1:$PORT"); done
		return 0 ;;
	nginx) nginx -p "$DIR" -c "$DIR/nginx.conf" & PROXYPID=$! PORT=$PN ;;
	haproxy) haproxy -f "$DIR/haproxy.cfg" -db >"$DIR/haproxy.log" 2>&1 & PROXYPID=$! PORT=$PH ;;
	routerd:*) "$ROUTERD" -d -f "${CONF[$1]}" >"$DIR/routerd.log" 2>&1 & PROXYPID=$! PORT=$PR ;;
	esac
	URLS=(--url "http://127.0.0.1:$PORT")
	waitport "$PORT" || { echo "bench-llm: $1 did not listen on $PORT" >&2; exit 1; }
	# one request through it must stream to [DONE] before the run is timed
	for _ in $(seq 1 50); do
		if python3 tests/vllmsim/loadgen.py --url "http://127.0.0.1:$PORT" --model "$MODEL" \
		    --requests 1 --rate 1 --system-tokens 4 --question-tokens 4 --max-tokens 2 \
		    --json 2>/dev/null | grep -q '"errors": 0'; then
			return 0
		fi
		sleep 0.1
	done
	echo "bench-llm: $1 does not answer a streaming request" >&2
	[ -f "$DIR/routerd.log" ] && tail -20 "$DIR/routerd.log" >&2
	exit 1
}

wl_args() {	# the loadgen arguments of workload $1
	case $1 in
	a) echo "--workload shared-prefix --rate $RATE_A" ;;
	b) echo "--workload shared-prefix --rate $RATE_B" ;;
	c) echo "--workload unique --rate $RATE_C" ;;
	m) echo "--workload multi-turn --rate $RATE_B" ;;
	esac
}

echo "bench-llm: ${SECS}s per run, rates a=$RATE_A b=$RATE_B c=$RATE_C req/s, results in $OUT/"
for w in $WORKLOADS; do
	for p in $PROXIES; do
		tag="$w-${p/:/-}"
		if [ -n "${SKIP[$p]:-}" ]; then
			echo "  $w $p: SKIP (routerd -t refuses strategy ${p#routerd:})"
			echo "{\"skip\": \"routerd -t refuses strategy ${p#routerd:}\"}" >"$OUT/$tag.json"
			continue
		fi
		fleet_start
		proxy_start "$p"
		# (the check request's 4-token prompt fills no cache block: caches are still cold)
		# shellcheck disable=SC2046
		python3 tests/vllmsim/loadgen.py "${URLS[@]}" "${LOAD_ARGS[@]}" \
		    $(wl_args "$w") --duration "$SECS" --drain "$DRAIN" --json >"$OUT/$tag.json" \
		    2>"$DIR/loadgen.err" || { echo "bench-llm: loadgen failed" >&2; cat "$DIR/loadgen.err" >&2; }
		stop "$PROXYPID"; PROXYPID=
		fleet_stop
		python3 - "$OUT/$tag.json" "$w" "$p" <<'EOF'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
    print("  %s %-26s TTFT p50 %7.0f ms  p99 %7.0f ms  %6.0f tok/s  hit %4.1f%%  errors %d" % (
        sys.argv[2], sys.argv[3], s["ttft_ms"]["p50"] or 0, s["ttft_ms"]["p99"] or 0,
        s["output_tok_s"], 100 * (s["hit_rate"] or 0), s["errors"]))
except Exception as e:
    print("  %s %s: no result (%s)" % (sys.argv[2], sys.argv[3], e))
EOF
	done
done

python3 bench/llm/table.py "$OUT" $WORKLOADS -- $PROXIES
