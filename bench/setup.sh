#!/bin/bash
# Set-up cost of a moat sandbox, end to end, against a bare network namespace.
#
#   bench/setup.sh --build build [-n 50] [--ports "1 10 100 1000"] [--sandboxes "1 10 100"]
#
# Needs root. Runs in its own network namespace (moat-bench-<PID>, deleted at the end, also
# on failure); nothing is sent anywhere: the workloads are `true` and `sleep`.
# Prints three tables (all times wall clock, in ms):
#  1. `moat run -- true` (profile none) vs `unshare -n true`: median/min/max of N runs and
#     the ratio of the medians. moat's figure is everything: parse, clone into five
#     namespaces, veth + addresses + routes, nftables table, proxy and DNS listeners, NFLOG,
#     the workload, and the whole teardown.
#  2. the same with a profile allowing 1, 10, 100, 1000 separate ports (each its own
#     interval, so the set has that many elements), and beside it the install of the table
#     alone (nft_install: one libnftnl batch), as measured by the unit test
#     $BUILD/tests/test_nft when it is built (`make BUILD=... BUILD/tests/test_nft`).
#  3. 1, 10, 100 concurrent sandboxes: the time from starting N `moat run -- sleep` at once
#     until every workload has started, and the cost of `moat run -- true` while N run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

build=build
n=50
ports="1 10 100 1000"
sandboxes="1 10 100"
inner=0
args=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	-n) n=$2; shift 2 ;;
	--ports) ports=$2; shift 2 ;;
	--sandboxes) sandboxes=$2; shift 2 ;;
	--inner) inner=1; shift ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "bench/setup.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done
build=$(cd "$build" 2>/dev/null && pwd) || { echo "bench/setup.sh: no build dir" >&2; exit 2; }
MOAT=$build/moat
[ -x "$MOAT" ] || { echo "bench/setup.sh: $MOAT not built" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/setup.sh: needs root" >&2; exit 2; }

if [ $inner = 0 ]; then
	bench_netns_up || { echo "bench/setup.sh: could not make the namespace" >&2; exit 1; }
	echo "# moat set-up benchmark: $(uname -r), $(nproc) CPUs, moat $("$MOAT" --version | cut -d' ' -f2), netns $BENCH_NS"
	bench_in bash "$0" "${args[@]}" --inner
	rc=$?
	bench_netns_down
	exit $rc
fi

# ---- inside the benchmark namespace from here on --------------------------------------------
W=$(mktemp -d /tmp/moat-bench.XXXXXX)
pids=()
finish() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	"$MOAT" cleanup >/dev/null 2>&1
	rm -rf "$W"
}
trap finish EXIT

row() { printf '%-34s %10s %10s %10s %s\n' "$@"; }

# runs CMD n times; prints "median min max"
series() {
	local i t=()
	for ((i = 0; i < n; i++)); do
		t+=("$(bench_time_ms "$@")")
	done
	bench_stats "${t[@]}"
}

# a profile with N separate ports (1001, 1003, ...: never merged into ranges)
profile_ports() {
	local k=$1 f=$W/ports$1.json list
	list=$(seq 1001 2 $((1000 + 2 * k)) | paste -sd, -)
	echo "{\"network\":{\"outbound\":{\"allow_host\":[\"bench.test\"],\"allow_port\":[$list]}}}" >"$f"
	echo "$f"
}

# sanity: moat works here
if ! "$MOAT" run -- true; then
	echo "bench/setup.sh: 'moat run -- true' fails in the benchmark namespace" >&2
	exit 1
fi

echo
echo "## 1. end to end, $n runs each (ms)"
row "command" median min max
read -r um umin umax < <(series unshare -n true)
row "unshare -n true" "$um" "$umin" "$umax"
read -r mm mmin mmax < <(series "$MOAT" run -- true)
row "moat run -- true (profile none)" "$mm" "$mmin" "$mmax"
echo "ratio of medians: $(awk -v a="$mm" -v b="$um" 'BEGIN { printf "%.1fx", a / b }')"

echo
echo "## 2. rules for N allowed ports, $n runs each (ms)"
declare -A inst
if [ -x "$build/tests/test_nft" ]; then
	# "nft_install with    1 port ranges: median 1.234 ms (min 1.1, max 2.0)"
	while read -r k med; do
		inst[$k]=$med
	done < <("$build/tests/test_nft" 2>&1 | sed -n \
		's/.*nft_install with *\([0-9]*\) port ranges: median \([0-9.]*\) ms.*/\1 \2/p')
fi
printf '%-34s %10s %10s %10s %s\n' "moat run --profile P -- true" median min max "  install alone (median)"
for k in $ports; do
	p=$(profile_ports "$k")
	read -r m lo hi < <(series "$MOAT" run --profile "$p" -- true)
	row "$k ports" "$m" "$lo" "$hi" "  ${inst[$k]:--}"
done
[ ${#inst[@]} -gt 0 ] || echo "(install alone: build $build/tests/test_nft to see it)"

echo
echo "## 3. concurrent sandboxes (ms)"
printf "%-34s %10s %10s %10s %10s\n" "N sandboxes" "all up" "+1 median" "+1 min" "+1 max"
for k in $sandboxes; do
	rm -f "$W"/up.*
	pids=()
	t0=${EPOCHREALTIME/./}
	for ((i = 0; i < k; i++)); do
		"$MOAT" run -- sh -c "touch $W/up.$i; exec sleep 600" </dev/null >/dev/null 2>&1 &
		pids+=($!)
	done
	deadline=$((SECONDS + 120))
	while [ "$(find "$W" -name 'up.*' | wc -l)" -lt "$k" ]; do
		if [ $SECONDS -ge $deadline ]; then
			echo "bench/setup.sh: only $(find "$W" -name 'up.*' | wc -l) of $k sandboxes came up" >&2
			exit 1
		fi
		sleep 0.005
	done
	t1=${EPOCHREALTIME/./}
	up=$(printf '%d.%03d' $(((t1 - t0) / 1000)) $(((t1 - t0) % 1000)))
	live=$("$MOAT" status --json | grep -o '"alive":true' | wc -l)
	[ "$live" = "$k" ] || echo "bench/setup.sh: moat status shows $live live sandboxes, expected $k" >&2
	nn=$n
	[ "$n" -gt 20 ] && n=20
	read -r m lo hi < <(series "$MOAT" run -- true)
	n=$nn
	printf "%-34s %10s %10s %10s %10s\n" "$k" "$up" "$m" "$lo" "$hi"
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	pids=()
done
left=$("$MOAT" status --json | grep -o '"sandbox"' | wc -l)
[ "$left" = 0 ] || echo "bench/setup.sh: $left sandboxes left behind" >&2
