#!/bin/bash
# The DNS filter against no filter at all: same client (dnsperf), same names, same resolver.
#
#   bench/dns.sh [--build DIR] [--rounds N] [--seconds S] [--clients C] [--outstanding Q]
#                [--light-qps R]
#
# Topology (tests/lib/topo.sh), plus a second dnsmasq in U on 198.18.0.3 with the same
# records and no query log (the topology's one logs every query to a file, which would be
# the bottleneck of both paths).  Two client namespaces hang off H:
#   moat    confined by `moat enforce --dns-upstream 198.18.0.3` (profile: allowed.test and
#           .example.test); dnsperf queries the gateway, every query goes through the filter:
#           parsed, judged, forwarded upstream on a fresh socket, the answer checked, learned
#           and relayed;
#   direct  a plain namespace with a veth to H; dnsperf queries 198.18.0.3 itself, H forwards.
# Rounds alternate which path goes first.  Per round and path:
#   max      dnsperf -c C -q Q for S seconds: queries per second at saturation, and its
#            average latency (allowed names: A and AAAA of allowed.test, api/www/cdn.example.test)
#   light    dnsperf -Q R (rate-limited, no queueing): average latency per query; the
#            difference moat - direct is the latency the filter adds
#   denied   the same at saturation with names the profile denies (denied.test, other.test):
#            moat answers NXDOMAIN itself, direct gets dnsmasq's answer
# Prints medians with min-max over the rounds and the moat/direct ratios.
# Needs root, dnsperf (apt-get install dnsperf), dnsmasq, nginx, the built moat and helpers.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
build=$SRC/build
ROUNDS=5 SECS=5 CLIENTS=4 OUTSTANDING=64 LIGHT_QPS=500
usage() {
	echo "usage: bench/dns.sh [--build DIR] [--rounds N] [--seconds S] [--clients C] [--outstanding Q] [--light-qps R]" >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$(cd "$2" && pwd) && shift 2 ;;
	--rounds) ROUNDS=$2 && shift 2 ;;
	--seconds) SECS=$2 && shift 2 ;;
	--clients) CLIENTS=$2 && shift 2 ;;
	--outstanding) OUTSTANDING=$2 && shift 2 ;;
	--light-qps) LIGHT_QPS=$2 && shift 2 ;;
	*) usage ;;
	esac
done
export SRC MOAT=$build/moat HELPERS=$build/tests/helpers TOPO_BIG_MB=1
for c in dnsperf dnsmasq nginx ip; do
	command -v $c >/dev/null || { echo "bench/dns.sh: needs $c" >&2; exit 2; }
done
[ -x "$MOAT" ] || { echo "bench/dns.sh: no moat at $MOAT" >&2; exit 2; }
. "$SRC/tests/lib/topo.sh"

echo "setting up ..." >&2
topo_up || exit 1
W=$TOPO_DIR/bench
mkdir -p "$W"

# --- a resolver without query log on 198.18.0.3 ---
BDNS=198.18.0.3
ip -n "$TOPO_U" addr add "$BDNS/24" dev h0 || exit 1
mapfile -t dargs < <(_topo_dnsmasq_args | grep -v -E '^--(listen-address|log-queries|log-facility|pid-file)')
topo_spawn U "$W/dnsmasq.out" dnsmasq "${dargs[@]}" --listen-address="$BDNS" \
	--pid-file="$W/dnsmasq.pid" --log-facility="$W/dnsmasq.log" --dns-forward-max=1000
topo_wait "bench dnsmasq" 10 sh -c "[ -n \"\$(ip netns exec $TOPO_H dig +short +time=1 +tries=1 @$BDNS allowed.test)\" ]" ||
	{ cat "$W/dnsmasq.out" >&2; exit 1; }

# --- the moat client namespace ---
PROFILE=$W/profile.json
echo '{"network":{"outbound":{"allow_host":["allowed.test",".example.test"],"allow_port":[443]}}}' >"$PROFILE"
NS_MOAT=$(topo_netns_c moat)
topo_spawn H "$W/moat.out" "$MOAT" enforce --netns "/run/netns/$NS_MOAT" --profile "$PROFILE" \
	--dns-upstream "$BDNS" --ready-file "$W/ready"
MOAT_PID=$TOPO_LAST_PID
topo_wait "moat enforce" 10 test -s "$W/ready" || { cat "$W/moat.out" >&2; exit 1; }
GW=$(ip -n "$NS_MOAT" -4 route show default | awk '{print $3; exit}')
[ -n "$GW" ] || { echo "bench/dns.sh: no gateway in $NS_MOAT" >&2; exit 1; }

# --- the direct client namespace: veth to H, H forwards ---
NS_DIRECT=$(topo_netns_c direct)
ip -n "$NS_DIRECT" link set lo up
ip -n "$TOPO_H" link add d0 type veth peer name eth0 netns "$NS_DIRECT"
ip -n "$TOPO_H" addr add 10.232.0.1/30 dev d0
ip -n "$TOPO_H" link set d0 up
ip -n "$NS_DIRECT" addr add 10.232.0.2/30 dev eth0
ip -n "$NS_DIRECT" link set eth0 up
ip -n "$NS_DIRECT" route add default via 10.232.0.1

printf 'allowed.test A\nallowed.test AAAA\napi.example.test A\nwww.example.test AAAA\ncdn.example.test A\n' >"$W/allowed.q"
printf 'denied.test A\nother.test AAAA\n' >"$W/denied.q"

declare -A SERVER=([moat]=$GW [direct]=$BDNS) NS=([moat]=$NS_MOAT [direct]=$NS_DIRECT)
for m in moat direct; do
	if ! ip netns exec "${NS[$m]}" dig +short +time=2 +tries=1 @"${SERVER[$m]}" allowed.test |
		grep -q "$TOPO_ALLOWED4"; then
		echo "bench/dns.sh: the $m client gets no answer from ${SERVER[$m]}" >&2
		exit 1
	fi
done

stats() {
	sort -g "$1" | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan nan nan"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.6g %.6g %.6g\n", m, v[1], v[NR] }'
}

# perf M KIND ARGS...: one dnsperf run; appends qps, latency (us) and lost queries
perf() {
	local m=$1 kind=$2 out=$W/perf.out
	shift 2
	ip netns exec "${NS[$m]}" dnsperf -s "${SERVER[$m]}" "$@" >"$out" 2>&1
	awk '/Queries per second:/ { print $4 }' "$out" >>"$W/$kind-qps-$m"
	awk '/Average Latency \(s\):/ { printf "%.1f\n", $4 * 1e6 }' "$out" >>"$W/$kind-lat-$m"
	awk '/Queries lost:/ { print $3 }' "$out" >>"$W/$kind-lost-$m"
}

round() {
	local m=$1
	perf "$m" max -d "$W/allowed.q" -l "$SECS" -c "$CLIENTS" -q "$OUTSTANDING"
	perf "$m" light -d "$W/allowed.q" -l "$SECS" -c 1 -q 1 -Q "$LIGHT_QPS"
	perf "$m" denied -d "$W/denied.q" -l "$SECS" -c "$CLIENTS" -q "$OUTSTANDING"
}

for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order="direct moat"; else order="moat direct"; fi
	for m in $order; do
		echo "round $r/$ROUNDS: $m" >&2
		round "$m"
	done
done

line() {
	local label=$1 file=$2 unit=$3 a b
	read -r a amin amax < <(stats "$W/$file-direct")
	read -r b bmin bmax < <(stats "$W/$file-moat")
	printf '%-34s %12s %-6s  %12s (%s-%s)  %12s (%s-%s)  %6s\n' "$label" "" "$unit" \
		"$a" "$amin" "$amax" "$b" "$bmin" "$bmax" \
		"$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }')"
}

echo
echo "DNS filter vs direct, $ROUNDS rounds, dnsperf $SECS s each; saturation: -c $CLIENTS -q $OUTSTANDING; light: -Q $LIGHT_QPS"
echo "kernel $(uname -r), $(nproc) CPUs; medians (min-max); ratio = moat / direct"
printf '%-34s %12s %-6s  %30s  %30s  %6s\n' "" "" "" "direct" "moat" "ratio"
line "allowed names, saturation: qps" max-qps "q/s"
line "allowed names, saturation: latency" max-lat "us"
line "allowed names, light load: latency" light-lat "us"
line "denied names, saturation: qps" denied-qps "q/s"
line "denied names, saturation: latency" denied-lat "us"
read -r dl _ _ < <(stats "$W/light-lat-direct")
read -r ml _ _ < <(stats "$W/light-lat-moat")
echo "added latency at light load (median moat - median direct): $(awk -v a="$dl" -v b="$ml" 'BEGIN { printf "%.1f", b - a }') us"
sum() { awk '{ s += $1 } END { print s + 0 }' "$1"; }
echo "queries lost (sum over rounds): allowed direct $(sum "$W/max-lost-direct") moat $(sum "$W/max-lost-moat");" \
	"denied direct $(sum "$W/denied-lost-direct") moat $(sum "$W/denied-lost-moat")"
kill -0 "$MOAT_PID" 2>/dev/null || echo "WARNING: moat enforce is gone" >&2
