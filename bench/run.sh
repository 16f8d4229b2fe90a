#!/bin/sh
# make bench: the selection micro-benchmark, then the referee proxy benchmark when it is there.
set -e
B=${B:-build}
"$B/bench-select" 1000
"$B/bench-registry" 10000
if [ -x ../shared/bench/proxy-bench ]; then
	../shared/bench/proxy-bench -r ./routerd
else
	echo "bench: ../shared/bench/proxy-bench not found; skipping the proxy comparison"
fi
