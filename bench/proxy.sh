#!/bin/bash
# The L7 proxy against no proxy at all, same clients, same server, one run.
#
#   bench/proxy.sh [--build DIR] [--rounds N] [--big-mb MB] [--latency-n N] [--cps-seconds S]
#
# Topology (tests/lib/topo.sh): nginx in U, H routes to it.  Two client namespaces hang off H:
#   moat    confined by `moat enforce` (profile: allowed.test on 443 and 80), so every
#           connection is TPROXY'd to moat, judged, and spliced upstream;
#   direct  a plain namespace with a veth to H and routes: H forwards its packets, no moat.
# Rounds alternate direct/moat so drift (CPU frequency, page cache) hits both alike.
# Per round and mode:
#   throughput   one curl downloading /big (BIG_MB MiB) over TLS and over plain HTTP
#   cps          wrk, new connection per request (Connection: close), HTTP and TLS
#   latency      one curl fetching N URLs, each on a new connection: time_connect,
#                time_appconnect (TLS handshake done) and time_starttransfer (HTTP first
#                byte); for moat the TCP handshake is with the proxy, and the proxy's own
#                connect upstream shows in the TLS handshake / first byte
#   cpu          utime+stime of the moat process over the throughput runs, per GiB moved
# Prints medians, min-max over the rounds, and moat/direct ratios.  Aims: throughput >
# 0.9 of direct; added latency < 100 us at the median.
# Needs root, nginx, dnsmasq, curl, wrk (apt-get install wrk), the built moat and helpers.
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
build=$SRC/build
ROUNDS=5 BIG_MB=1024 LAT_N=200 CPS_S=3
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$(cd "$2" && pwd) && shift 2 ;;
	--rounds) ROUNDS=$2 && shift 2 ;;
	--big-mb) BIG_MB=$2 && shift 2 ;;
	--latency-n) LAT_N=$2 && shift 2 ;;
	--cps-seconds) CPS_S=$2 && shift 2 ;;
	*) echo "usage: bench/proxy.sh [--build DIR] [--rounds N] [--big-mb MB] [--latency-n N] [--cps-seconds S]" >&2; exit 2 ;;
	esac
done
export SRC MOAT=$build/moat HELPERS=$build/tests/helpers TOPO_BIG_MB=$BIG_MB
for c in curl wrk nginx dnsmasq ip; do
	command -v $c >/dev/null || { echo "bench/proxy.sh: needs $c" >&2; exit 2; }
done
[ -x "$MOAT" ] || { echo "bench/proxy.sh: no moat at $MOAT" >&2; exit 2; }
. "$SRC/tests/lib/topo.sh"

echo "setting up (nginx in U, /big = $BIG_MB MiB) ..." >&2
topo_up || exit 1
W=$TOPO_DIR/bench
mkdir -p "$W"

# --- the moat client namespace ---
PROFILE=$W/profile.json
echo '{"network":{"outbound":{"allow_host":["allowed.test"],"allow_port":[443,80]}}}' >"$PROFILE"
NS_MOAT=$(topo_netns_c moat)
mkdir -p "/etc/netns/$NS_MOAT"
echo "nameserver $TOPO_DNS4" >"/etc/netns/$NS_MOAT/resolv.conf"
topo_defer "rm -rf /etc/netns/$NS_MOAT"
topo_spawn H "$W/moat.out" "$MOAT" enforce --netns "/run/netns/$NS_MOAT" --profile "$PROFILE" \
	--ready-file "$W/ready"
MOAT_PID=$TOPO_LAST_PID
topo_wait "moat enforce" 10 test -s "$W/ready" || { cat "$W/moat.out" >&2; exit 1; }

# --- the direct client namespace: veth to H, H forwards ---
NS_DIRECT=$(topo_netns_c direct)
ip -n "$NS_DIRECT" link set lo up
ip -n "$TOPO_H" link add d0 type veth peer name eth0 netns "$NS_DIRECT"
ip -n "$TOPO_H" addr add 10.232.0.1/30 dev d0
ip -n "$TOPO_H" addr add fd77::1/64 dev d0 nodad
ip -n "$TOPO_H" link set d0 up
ip -n "$NS_DIRECT" addr add 10.232.0.2/30 dev eth0
ip -n "$NS_DIRECT" addr add fd77::2/64 dev eth0 nodad
ip -n "$NS_DIRECT" link set eth0 up
ip -n "$NS_DIRECT" route add default via 10.232.0.1
ip -n "$NS_DIRECT" -6 route add default via fd77::1
mkdir -p "/etc/netns/$NS_DIRECT"
echo "nameserver $TOPO_DNS4" >"/etc/netns/$NS_DIRECT/resolv.conf"
topo_defer "rm -rf /etc/netns/$NS_DIRECT"

CURL="curl -sS --cacert $TOPO_CA"
for m in moat direct; do
	ns=$NS_MOAT
	[ $m = direct ] && ns=$NS_DIRECT
	if ! ip netns exec "$ns" $CURL -4 --max-time 5 -o /dev/null https://allowed.test/; then
		echo "bench/proxy.sh: $m client cannot reach allowed.test" >&2
		exit 1
	fi
done

# /proc/PID/stat utime + stime, in clock ticks
cpu_ticks() {
	local s
	s=$(cat "/proc/$1/stat") || return 1
	s=${s##*) }
	set -- $s
	echo $((${12} + ${13}))
}
HZ=$(getconf CLK_TCK)

# stats FILE: "median min max" of the numbers in FILE (one per line)
stats() {
	sort -g "$1" | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print "nan nan nan"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.6g %.6g %.6g\n", m, v[1], v[NR] }'
}

# pct FILE P: the P-th percentile (nearest rank)
pct() {
	sort -g "$1" | awk -v p="$2" '{ v[NR] = $1 } END {
		r = int((p / 100) * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR
		printf "%.6g\n", v[r] }'
}

round() {
	local r=$1 m=$2 ns=$3 t0 t1 v urls i
	# throughput (bytes/s -> MB/s), and moat's CPU over both downloads
	[ $m = moat ] && t0=$(cpu_ticks "$MOAT_PID")
	for proto in https http; do
		v=$(ip netns exec "$ns" $CURL -4 -o /dev/null -w '%{speed_download}' \
			"$proto://allowed.test/big")
		echo "$v" | awk '{ printf "%.1f\n", $1 / 1e6 }' >>"$W/tput-$proto-$m"
	done
	if [ $m = moat ]; then
		t1=$(cpu_ticks "$MOAT_PID")
		# two downloads of BIG_MB MiB each
		awk -v t=$((t1 - t0)) -v hz="$HZ" -v mb="$BIG_MB" \
			'BEGIN { printf "%.4f\n", (t / hz) / (2 * mb / 1024) }' >>"$W/cpu-$m"
	fi
	# connections per second, a new connection per request
	for proto in http https; do
		ip netns exec "$ns" wrk -t2 -c16 -d"${CPS_S}s" -H 'Connection: close' \
			"$proto://allowed.test/" >"$W/wrk.out" 2>&1
		awk '/Requests\/sec/ { print $2 }' "$W/wrk.out" >>"$W/cps-$proto-$m"
	done
	# latency: N URLs in one curl, each on a new connection
	for proto in https http; do
		urls=()
		for ((i = 0; i < LAT_N; i++)); do urls+=("$proto://allowed.test/"); done
		ip netns exec "$ns" $CURL -4 -o /dev/null -H 'Connection: close' \
			-w '%{time_connect} %{time_appconnect} %{time_starttransfer}\n' "${urls[@]}" \
			>"$W/lat.out"
		# times from curl are in seconds; keep microseconds
		awk '{ printf "%.1f\n", $1 * 1e6 }' "$W/lat.out" >"$W/lat-connect-$proto-$m-$r"
		awk '{ printf "%.1f\n", $2 * 1e6 }' "$W/lat.out" >"$W/lat-app-$proto-$m-$r"
		awk '{ printf "%.1f\n", $3 * 1e6 }' "$W/lat.out" >"$W/lat-first-$proto-$m-$r"
	done
}

for ((r = 1; r <= ROUNDS; r++)); do
	echo "round $r/$ROUNDS ..." >&2
	if ((r % 2)); then order="direct moat"; else order="moat direct"; fi
	for m in $order; do
		ns=$NS_MOAT
		[ $m = direct ] && ns=$NS_DIRECT
		round "$r" "$m" "$ns"
	done
done

# per-round percentiles of the latency figures
for kind in connect app first; do
	for proto in https http; do
		for m in direct moat; do
			: >"$W/p50-$kind-$proto-$m"
			: >"$W/p99-$kind-$proto-$m"
			for ((r = 1; r <= ROUNDS; r++)); do
				pct "$W/lat-$kind-$proto-$m-$r" 50 >>"$W/p50-$kind-$proto-$m"
				pct "$W/lat-$kind-$proto-$m-$r" 99 >>"$W/p99-$kind-$proto-$m"
			done
		done
	done
done

row() {
	local label=$1 unit=$2 base=$3 d m
	read -r dmed dmin dmax < <(stats "$W/$base-direct")
	read -r mmed mmin mmax < <(stats "$W/$base-moat")
	awk -v l="$label" -v u="$unit" -v dm="$dmed" -v dl="$dmin" -v dh="$dmax" \
		-v mm="$mmed" -v ml="$mmin" -v mh="$mmax" 'BEGIN {
		ratio = (dm > 0) ? sprintf("%.3f", mm / dm) : "-"
		diff = sprintf("%+.6g", mm - dm)
		printf "%-34s %-6s %10s %-21s %10s %-21s %7s %10s\n", l, u, dm, "(" dl "-" dh ")",
			mm, "(" ml "-" mh ")", ratio, diff }'
}

echo
echo "moat L7 proxy vs direct: $ROUNDS rounds, /big = $BIG_MB MiB, $LAT_N requests per latency" \
	"sample, wrk -t2 -c16 ${CPS_S}s; $(nproc) CPUs, $(uname -r)"
printf "%-34s %-6s %10s %-21s %10s %-21s %7s %10s\n" metric unit "direct" "(min-max)" \
	"moat" "(min-max)" "ratio" "moat-dir"
row "throughput TLS /big (1 stream)" MB/s tput-https
row "throughput HTTP /big (1 stream)" MB/s tput-http
row "connections/s HTTP (wrk, close)" conn/s cps-http
row "connections/s TLS (wrk, close)" conn/s cps-https
row "TCP connect p50 (TLS runs)" us p50-connect-https
row "TCP connect p99 (TLS runs)" us p99-connect-https
row "TLS handshake done p50" us p50-app-https
row "TLS handshake done p99" us p99-app-https
row "HTTP first byte p50" us p50-first-http
row "HTTP first byte p99" us p99-first-http
read -r cmed cmin cmax < <(stats "$W/cpu-moat")
echo "moat CPU per GiB relayed: median $cmed s (min $cmin, max $cmax) [utime+stime of the moat process]"
echo "(latency rows: median over rounds of each round's percentile; 'moat-dir' is the added cost)"

kill -TERM "$MOAT_PID" 2>/dev/null
wait "$MOAT_PID" 2>/dev/null
exit 0
