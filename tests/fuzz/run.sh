#!/bin/sh
# make fuzz: runs each harness for SECONDS on a copy of its seed corpus; one line per harness, then a total.
# usage: run.sh BUILDDIR SECONDS NAME:MAXLEN[:OPTS] ...   (OPTS: extra libFuzzer flags, joined by +)
set -u
b=$1 secs=$2
shift 2
here=$(dirname "$0")
pass=0 fail=0
for arg in "$@"; do
	name=${arg%%:*} rest=${arg#*:}
	maxlen=${rest%%:*} opts=
	[ "$rest" != "$maxlen" ] && opts=$(echo "${rest#*:}" | tr + ' ')
	bin=$b/fuzz_$name
	run=$b/run/$name
	rm -rf "$run" && mkdir -p "$run/corpus" "$run/crashes"
	[ -d "$here/corpus/$name" ] && cp -R "$here/corpus/$name/." "$run/corpus/"
	set -- -max_total_time="$secs" -max_len="$maxlen" -timeout=10 -rss_limit_mb=1024 \
	    -print_final_stats=1 -artifact_prefix="$run/crashes/"
	[ -f "$here/$name.dict" ] && set -- "$@" -dict="$here/$name.dict"
	# shellcheck disable=SC2086
	set -- "$@" $opts
	"$bin" "$@" "$run/corpus" >"$run/log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log" | tail -n 1)
	cov=$(sed -n 's/^#[0-9]*.*cov: \([0-9]*\).*/\1/p' "$run/log" | tail -n 1)
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1))
		result=ok
	else
		fail=$((fail + 1))
		result="FAILED (exit $rc; see $run/log, input in $run/crashes/)"
	fi
	printf 'fuzz %-10s %10s runs  cov %6s  %ss  %s\n' "$name" "${runs:-?}" \
	    "${cov:-?}" "$secs" "$result"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
