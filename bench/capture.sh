#!/bin/bash
# Benchmark (not a test): what --pcap costs one stream through moat, and whether the capture
# keeps up with it.
#
#   bench/capture.sh [--build DIR] [--rounds N] [--big-mb MB] [--snaplen N]
#
# In the C/H/U topology (tests/lib/topo.sh), moat run in H downloads /big (MB MiB, default 512)
# from allowed.test with one curl, over plain HTTP (port 80) and over TLS (443), each without
# and with --pcap (a fresh file on the disk of $TMPDIR; removed after each run).  A round runs
# the four cases, in an order that alternates from round to round; the figures are the
# medians over the rounds with min-max, and the ratio with/without.  For the runs with a
# capture, the `capture` audit event gives libpcap's ps_drop (packets the ring lost because
# the writer fell behind) and the packets written.  Defaults: 5 rounds, about 1-2 minutes.
# Needs root, curl, python3; everything runs in namespaces made here, removed on exit.
set -u
build=build
rounds=5
big_mb=512
snaplen=""
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--big-mb) big_mb=$2; shift 2 ;;
	--snaplen) snaplen=$2; shift 2 ;;
	-h | --help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "usage: bench/capture.sh [--build DIR] [--rounds N] [--big-mb MB] [--snaplen N]" >&2
	   exit 2 ;;
	esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$build" 2>/dev/null && pwd) || { echo "bench/capture.sh: no build dir $build" >&2; exit 2; }
MOAT=$BUILD/moat
HELPERS=$BUILD/tests/helpers
export SRC BUILD MOAT HELPERS
[ "$(id -u)" -eq 0 ] || { echo "bench/capture.sh: needs root" >&2; exit 2; }
for f in "$MOAT" "$HELPERS/echo"; do
	[ -x "$f" ] || { echo "bench/capture.sh: missing $f (make all tests)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "bench/capture.sh: needs python3" >&2; exit 2; }

export TOPO_BIG_MB=$big_mb
. "$SRC/tests/lib/topo.sh"
topo_up >/dev/null || exit 1
D=$TOPO_DIR/capture
mkdir -p "$D"
cat >"$D/p.json" <<'EOF'
{ "network": { "outbound": { "allow_host": ["allowed.test"], "allow_port": [80, 443] } } }
EOF
want=$((big_mb * 1024 * 1024))

# one NAME PROTO PCAP(0|1): one download; appends "MB/s" to $D/NAME.mbs and, with a
# capture, "ps_drop ps_recv packets" to $D/NAME.cap
one() {
	local name=$1 proto=$2 pcap=$3 url args=() out
	url=http://allowed.test/big
	[ "$proto" = tls ] && url=https://allowed.test/big
	rm -f "$D/audit.log" "$D/c.pcap"*
	[ "$pcap" = 1 ] && args=(--pcap "$D/c.pcap" ${snaplen:+--pcap-snaplen "$snaplen"})
	out=$(in_H "$MOAT" run --profile "$D/p.json" --audit-log "$D/audit.log" "${args[@]}" -- \
		curl -s --cacert "$TOPO_CA" -o /dev/null -w '%{size_download} %{speed_download}\n' \
		"$url" 2>"$D/err") || { echo "bench/capture.sh: $name failed:" >&2; cat "$D/err" >&2; return 1; }
	set -- $out
	[ "$1" = "$want" ] || { echo "bench/capture.sh: $name: got $1 of $want bytes" >&2; return 1; }
	awk -v s="$2" 'BEGIN { printf "%.1f\n", s / 1e6 }' >>"$D/$name.mbs"
	if [ "$pcap" = 1 ]; then
		python3 - "$D/audit.log" >>"$D/$name.cap" <<'EOF' || return 1
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"event":"capture"' in l]
c = ev[-1]
print(c["ps_drop"], c["ps_recv"], c["packets"])
EOF
	fi
	rm -f "$D/c.pcap"*
}

cases=("http 0" "http 1" "tls 0" "tls 1")
echo "bench/capture.sh: $rounds rounds of ${#cases[@]} downloads of $big_mb MiB" >&2
for ((r = 0; r < rounds; r++)); do
	for ((i = 0; i < ${#cases[@]}; i++)); do
		# odd rounds run the cases backwards, so neither variant always goes first
		if ((r % 2)); then c=${cases[${#cases[@]} - 1 - i]}; else c=${cases[i]}; fi
		set -- $c
		one "$1-$2" "$1" "$2" || exit 1
	done
	echo "  round $((r + 1)) done" >&2
done

python3 - "$D" "$big_mb" "$rounds" "${snaplen:-262144}" <<'EOF'
import statistics, sys
d, mb, rounds, snaplen = sys.argv[1:5]
def vals(name, col=None):
    out = []
    for l in open("%s/%s" % (d, name)):
        f = l.split()
        out.append(float(f[col if col is not None else 0]))
    return out
def mmm(v):
    return "%.0f (%.0f-%.0f)" % (statistics.median(v), min(v), max(v))
print("one stream of /big (%s MiB) through moat run, %s rounds, snaplen %s" % (mb, rounds, snaplen))
print("%-6s %-20s %-20s %-6s %-20s %-14s %s" % ("proto", "without --pcap MB/s",
      "with --pcap MB/s", "ratio", "ps_drop median (max)", "lost % (max)", "packets written"))
for p in ("http", "tls"):
    a, b = vals("%s-0.mbs" % p), vals("%s-1.mbs" % p)
    drop, recv, pk = (vals("%s-1.cap" % p, i) for i in range(3))
    lost = [100.0 * x / y if y else 0.0 for x, y in zip(drop, recv)]
    print("%-6s %-20s %-20s %-6s %-20s %-14s %d" % (p, mmm(a), mmm(b),
          "%.2f" % (statistics.median(b) / statistics.median(a)),
          "%d (%d)" % (statistics.median(drop), max(drop)),
          "%.1f (%.1f)" % (statistics.median(lost), max(lost)), statistics.median(pk)))
print("ps_drop: packets the capture ring lost while the writer fell behind; "
      "lost %: ps_drop / ps_recv")
EOF
