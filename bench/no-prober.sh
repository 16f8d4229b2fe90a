#!/bin/sh
# For comparing figures: routerd exactly as proxy-bench starts it, but with
# health.type none (no active checks), so the prober's cost can be measured:
#   ../shared/bench/proxy-bench -r bench/no-prober.sh
# Takes the same arguments proxy-bench passes: -d -f FILE.
dir=$(dirname "$(readlink -f "$0")")
while [ $# -gt 0 ]; do
	case $1 in
	-f) conf=$2; shift 2 ;;
	*) shift ;;
	esac
done
sed 's/^health:$/health:\n  type: none/' "$conf" > "$conf.noprober"
exec "$dir/../routerd" -d -f "$conf.noprober"
