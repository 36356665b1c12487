#!/bin/bash
# Benchmark (not a test): what confinement costs a container's start.
#
#   bench/container.sh [--build DIR] [-n RUNS]
#
# Times, from the start of the command to its exit, the median of RUNS runs of:
#   moat run --engine podman|docker --image IMG --profile P -- tlsclient allowed.test 443
#       (prepare, wiring and rules, start, the container's first allowed TLS connection
#        and HTTP answer, teardown)
#   podman run --rm --network none IMG true               (the podman CLI, local store)
#   podman --remote run --rm --network none IMG true      (the same through the API service)
# and prints them as a table with each one's ratio to `podman run ... true`.
# Runs in throw-away namespaces (tests/lib/topo.sh) against a private podman service
# (tests/lib/podman.sh) and the test image (tests/lib/image.sh); needs root and podman.
set -u
build=build
runs=10
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	-n) runs=$2; shift 2 ;;
	*) echo "usage: bench/container.sh [--build DIR] [-n RUNS]" >&2; exit 2 ;;
	esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$build" 2>/dev/null && pwd) || { echo "no build dir $build" >&2; exit 2; }
MOAT=$BUILD/moat
HELPERS=$BUILD/tests/helpers
export SRC BUILD MOAT HELPERS
[ "$(id -u)" -eq 0 ] || { echo "bench/container.sh: needs root" >&2; exit 2; }
command -v podman >/dev/null || { echo "bench/container.sh: needs podman" >&2; exit 2; }
for f in "$MOAT" "$BUILD/moat-pause" "$HELPERS/echo" "$HELPERS/tlsclient"; do
	[ -x "$f" ] || { echo "bench/container.sh: missing $f (make all tests)" >&2; exit 2; }
done

. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/podman.sh"
. "$SRC/tests/lib/image.sh"
topo_up >/dev/null || exit 1
PDIR=$TOPO_DIR/podman
bench_store_cleanup() {
	awk -v d="$PDIR/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
		xargs -r umount -l 2>/dev/null
	rm -rf "$PDIR"
}
topo_defer bench_store_cleanup
topo_defer podman_stop
podman_start "$PDIR" || exit 1
image_build "$HELPERS" >/dev/null || exit 1
cp "$TOPO_CA" "$TOPO_DIR/ca.pem"
cat >"$TOPO_DIR/p.json" <<'EOF'
{ "network": { "outbound": { "allow_host": ["allowed.test"], "allow_port": [443] } } }
EOF

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# median of the numbers on stdin
median() { sort -n | awk '{v[NR] = $1} END {
	if (NR == 0) { print "-"; exit }
	if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# time_runs NAME CMD...: RUNS timed runs (after one warm-up); every run must succeed
declare -A result
time_runs() {
	local name=$1 i t0 t1 f=$TOPO_DIR/times
	shift
	"$@" >/dev/null 2>&1 || { echo "bench/container.sh: '$name' failed: $*" >&2; return 1; }
	: >"$f"
	for ((i = 0; i < runs; i++)); do
		t0=$(now_ms)
		"$@" >/dev/null 2>&1 || { echo "bench/container.sh: '$name' failed" >&2; return 1; }
		t1=$(now_ms)
		echo $((t1 - t0)) >>"$f"
	done
	result[$name]=$(median <"$f")
}

moat_run() {
	in_H "$MOAT" run --engine "$1" --engine-socket "$PODMAN_SOCK" --image "$MOAT_TEST_IMAGE" \
		--profile "$TOPO_DIR/p.json" -v "$TOPO_DIR/ca.pem:/ca.pem:ro" -- \
		tlsclient --cafile /ca.pem allowed.test 443
}

names=("podman run --network none IMG true"
	"podman --remote run --network none IMG true"
	"moat run --engine podman (tlsclient)"
	"moat run --engine docker (tlsclient)")
time_runs "${names[0]}" podman run --rm --network none "$MOAT_TEST_IMAGE" true || exit 1
time_runs "${names[1]}" podman --url "unix://$PODMAN_SOCK" run --rm --network none \
	"$MOAT_TEST_IMAGE" true || exit 1
time_runs "${names[2]}" moat_run podman || exit 1
time_runs "${names[3]}" moat_run docker || exit 1

base=${result[${names[0]}]}
printf '\n%-48s %10s %8s\n' "start to exit, median of $runs runs" "ms" "ratio"
for n in "${names[@]}"; do
	printf '%-48s %10s %8s\n' "$n" "${result[$n]}" \
		"$(awk -v a="${result[$n]}" -v b="$base" 'BEGIN { printf "%.2f", a / b }')"
done
echo "(podman $(podman --version | awk '{print $3}'), runc, $(nproc) CPUs)"
