# shellcheck shell=bash
# Helpers for moat's benchmarks: a private network namespace to run in, timing, statistics.
#
#   . "$(dirname "$0")/lib.sh"
#   bench_netns_up           # BENCH_NS: a new netns "moat-bench-<PID>", lo up, torn down on exit
#   bench_in CMD...          # CMD in that netns
#   t=$(bench_time_ms CMD...)   # wall time of one run in ms (3 decimals); CMD's output discarded
#   bench_stats 1.2 3.4 ...  # "median min max" of the figures, in ms
#
# Nothing here touches the root network namespace: every command that moat runs in a
# benchmark runs in BENCH_NS.

BENCH_NS=""

bench_netns_down() {
	local pid
	[ -n "$BENCH_NS" ] || return 0
	for pid in $(ip netns pids "$BENCH_NS" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null || true
	done
	ip netns delete "$BENCH_NS" 2>/dev/null || true
	rm -rf "/etc/netns/$BENCH_NS"
	BENCH_NS=""
}

bench_netns_up() {
	BENCH_NS="moat-bench-$$"
	ip netns add "$BENCH_NS" || return 1
	trap 'bench_netns_down' EXIT
	trap 'bench_netns_down; trap - INT; kill -INT $$' INT
	trap 'bench_netns_down; trap - TERM; kill -TERM $$' TERM
	ip -n "$BENCH_NS" link set lo up || return 1
	ip netns exec "$BENCH_NS" sysctl -qw net.ipv6.conf.default.accept_dad=0 \
		net.ipv6.conf.all.accept_dad=0 || return 1
	# moat reads the namespace's resolver; keep it inside the namespace
	mkdir -p "/etc/netns/$BENCH_NS"
	echo "nameserver 127.0.0.1" >"/etc/netns/$BENCH_NS/resolv.conf"
}

bench_in() { ip netns exec "$BENCH_NS" "$@"; }

# Microseconds since the epoch, from bash's own clock (no fork).
_bench_us() {
	local t=${EPOCHREALTIME/./}
	echo "$t"
}

bench_time_ms() {
	local t0 t1
	t0=${EPOCHREALTIME/./}
	"$@" >/dev/null 2>&1
	t1=${EPOCHREALTIME/./}
	printf '%d.%03d\n' $(((t1 - t0) / 1000)) $(((t1 - t0) % 1000))
}

bench_stats() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "- - -"; exit }
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.2f %.2f %.2f\n", m, v[1], v[NR] }'
}
