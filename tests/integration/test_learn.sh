#!/bin/bash
# moat run --learn OUT.json, moat in H of the C/H/U topology:
#
#  - a workload reaching allowed.test:443 over TLS and www.example.test:8080 over HTTP, run
#    with --learn, keeps its own exit status and leaves a profile that passes
#    `moat profile check`, names exactly those two hosts with their ports, and under which
#    the same workload runs again while other.test, allowed.test:8080 and www.example.test:443
#    are denied;
#  - `moat audit --log LOG --suggest-profile` on that run's audit log gives the same profile;
#  - a shared --audit-log holding an earlier run teaches only this run's events; without
#    --audit-log the temporary log is removed; OUT.json is replaced in one step (no temporary
#    file left); --learn with --profile, --learn-wildcards without --learn, --learn with
#    --audit-log - are errors (125) that write nothing;
#  - --learn-wildcards over api/www/cdn.example.test gives `.example.test`, which the rerun
#    allows for all three (and, per `moat profile explain`, for any sibling), not other.test;
#  - --learn with --engine podman (skipped without podman).
set -u
. "$SRC/tests/lib/common.sh"
need_root
need_moat
need_cmd curl dig nft ip python3
. "$SRC/tests/lib/topo.sh"

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
W=$TOPO_DIR/learn
mkdir -p "$W"

leftovers() {
	in_H nft list tables 2>/dev/null | grep -F 'moat_'
	in_H ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
		grep '^moat-'
}
nothing_left() { [ -z "$(leftovers)" ]; }
mrun() { in_H "$MOAT" run "$@"; }
# the temporary logs of --learn (TMPDIR is set for moat below)
temp_logs() { ls "$W/tmp" | grep -c '^moat-learn-'; }
mkdir -p "$W/tmp"
export TMPDIR=$W/tmp

# json_is FILE PYTHON-EXPR: the expression over p (the parsed file) is true
json_is() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
print(json.dumps(p["network"]["outbound"]))
sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)
EOF
}
same_json() {
	python3 -c 'import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:3]); sys.exit(a!=b)' \
		"$1" "$2"
}

cat >"$W/two.sh" <<EOF
curl -sf --max-time 5 --cacert $TOPO_CA https://allowed.test/ | grep -q name=allowed.test || exit 11
curl -sf --max-time 5 http://www.example.test:8080/ | grep -q name=www.example.test || exit 12
exit \${1:-0}
EOF

# --- learning two hosts on two ports -------------------------------------------------------
L=$W/two.json A=$W/two.log
check_output "learn: the workload runs under allow-all; the message names OUT.json and 2 hosts" \
	"moat: learned profile written to $L (2 hosts)" \
	mrun --learn "$L" --audit-log "$A" -- bash "$W/two.sh"
check "learn: the audit log says profile network" grep -qF '"profile":"network"' "$A"
check_output "learn: moat profile check passes" "ok" "$MOAT" profile check "$L"
check "learn: exactly allowed.test:443 and www.example.test:8080" json_is "$L" \
	'sorted(p["network"]["outbound"]["allow_host"]) == ["allowed.test:443", "www.example.test:8080"]'
check "learn: not allow-all" json_is "$L" \
	'p["network"]["outbound"].get("insecure_allow_all") in (False, None)'
"$MOAT" audit --log "$A" --suggest-profile >"$W/suggested.json" 2>"$W/suggested.err"
check "moat audit --suggest-profile exits 0" test $? = 0
check "moat audit --suggest-profile gives the same profile" same_json "$L" "$W/suggested.json"

check "rerun under the learned profile: the workload succeeds" \
	mrun --profile "$L" --audit-log "$W/rerun.log" -- bash "$W/two.sh"
expect_fail "rerun: other.test does not resolve" \
	mrun --profile "$L" --audit-log "$W/rerun.log" -- \
	curl -sf --max-time 5 --cacert "$TOPO_CA" https://other.test/
check "rerun: audit: DNS other.test denied" sh -c "grep -F '\"event\":\"dns\"' '$W/rerun.log' |
	grep -F '\"verdict\":\"deny\"' | grep -qF '\"qname\":\"other.test\"'"
expect_fail "rerun: other.test by its address (SNI other.test) is refused" \
	mrun --profile "$L" -- curl -sf --max-time 5 --cacert "$TOPO_CA" \
	--resolve "other.test:443:$TOPO_OTHER4" https://other.test/
expect_fail "rerun: allowed.test on 8080 is refused (ports are per host)" \
	mrun --profile "$L" -- curl -sf --max-time 5 http://allowed.test:8080/
expect_fail "rerun: www.example.test on 443 is refused" \
	mrun --profile "$L" -- curl -sf --max-time 5 --cacert "$TOPO_CA" https://www.example.test/
check "learn: nothing left" nothing_left

# --- exit status, temporary log, atomic replacement, errors ----------------------------------
L=$W/status.json
echo stale >"$L"
n0=$(temp_logs)
expect_status "learn: the exit status stays the workload's (5)" 5 \
	mrun --learn "$L" -- bash "$W/two.sh" 5
check "learn: the profile is written after a failing workload too" json_is "$L" \
	'len(p["network"]["outbound"]["allow_host"]) == 2'
check "learn: no temporary audit log left behind" test "$(temp_logs)" = "$n0"
check "learn: OUT.json replaced in one step: no temporary file beside it" \
	test -z "$(ls "$W" | grep '^status\.json\.')"
check_output "learn: the file is 0644" 644 stat -c %a "$L"

# a shared log: the earlier run reached other.test, the learning run allowed.test only
S=$W/shared.log
check "shared log: an earlier run to other.test" mrun --profile network --audit-log "$S" -- \
	curl -sf --max-time 5 --cacert "$TOPO_CA" https://other.test/
check "shared log: the learning run to allowed.test" mrun --learn "$W/shared.json" \
	--audit-log "$S" -- curl -sf --max-time 5 --cacert "$TOPO_CA" https://allowed.test/
check "shared log: only this run's host was learned" json_is "$W/shared.json" \
	'p["network"]["outbound"]["allow_host"] == ["allowed.test"] and
	 p["network"]["outbound"]["allow_port"] == [443]'

expect_status "--learn with --profile: 125" 125 mrun --learn "$W/x.json" --profile network -- true
expect_status "--learn-wildcards without --learn: 125" 125 mrun --learn-wildcards -- true
expect_status "--learn with --audit-log -: 125" 125 mrun --learn "$W/x.json" --audit-log - -- true
check "the errors wrote nothing" test ! -e "$W/x.json"
expect_status "--learn with a command not found: 127, nothing written" 127 \
	mrun --learn "$W/x.json" -- nosuchcommand-moat
check "a command not found wrote nothing" test ! -e "$W/x.json"
check "errors: no temporary audit log left behind" test "$(temp_logs)" = "$n0"

# --- wildcards -------------------------------------------------------------------------------
cat >"$W/three.sh" <<EOF
for h in api www cdn; do
	curl -sf --max-time 5 --cacert $TOPO_CA https://\$h.example.test/ | grep -q name=\$h || exit 1
done
EOF
L=$W/wild.json
check_output "wildcards: three siblings learned as one entry" "(1 host)" \
	mrun --learn "$L" --learn-wildcards -- bash "$W/three.sh"
check "wildcards: allow_host is [.example.test], allow_port [443]" json_is "$L" \
	'p["network"]["outbound"]["allow_host"] == [".example.test"] and
	 p["network"]["outbound"]["allow_port"] == [443]'
check_output "wildcards: moat profile check passes" "ok" "$MOAT" profile check "$L"
check "wildcards: the rerun reaches all three" mrun --profile "$L" -- bash "$W/three.sh"
check "wildcards: a fourth sibling matches the wildcard (profile explain)" \
	"$MOAT" profile explain "$L" new.example.test:443
expect_fail "wildcards: other.test is refused" \
	mrun --profile "$L" -- curl -sf --max-time 5 --cacert "$TOPO_CA" https://other.test/
check "without --learn-wildcards: the three names, one by one" sh -c \
	"ip netns exec $TOPO_H $MOAT run --learn $W/nowild.json -- bash $W/three.sh 2>/dev/null &&
	python3 -c 'import json; h = json.load(open(\"$W/nowild.json\"))[\"network\"][\"outbound\"][\"allow_host\"];
exit(sorted(h) != [\"api.example.test\", \"cdn.example.test\", \"www.example.test\"])'"
expect_fail "without --learn-wildcards: a fourth sibling does not match (profile explain)" \
	"$MOAT" profile explain "$W/nowild.json" new.example.test:443
check "wildcards: nothing left" nothing_left

# --- --engine podman -------------------------------------------------------------------------
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
	echo "SKIP: --learn with --engine podman (needs podman and runc)"
elif [ ! -x "$BUILD/moat-pause" ]; then
	check "podman: $BUILD/moat-pause is built" false
else
	. "$SRC/tests/lib/podman.sh"
	. "$SRC/tests/lib/image.sh"
	if podman_up "$TOPO_DIR/podman" && image_build "$HELPERS" >/dev/null; then
		cp "$TOPO_CA" "$W/ca.pem"
		L=$W/engine.json
		n0=$(temp_logs)
		check_output "podman: --learn writes the profile" "(1 host)" \
			mrun --engine podman --engine-socket "$PODMAN_SOCK" --image "$MOAT_TEST_IMAGE" \
			--learn "$L" -v "$W/ca.pem:/ca.pem:ro" -- \
			tlsclient --cafile /ca.pem allowed.test 443
		check "podman: allowed.test on 443 learned" json_is "$L" \
			'p["network"]["outbound"]["allow_host"] == ["allowed.test"] and
			 p["network"]["outbound"]["allow_port"] == [443]'
		check "podman: the rerun under it succeeds" \
			mrun --engine podman --engine-socket "$PODMAN_SOCK" --image "$MOAT_TEST_IMAGE" \
			--profile "$L" -v "$W/ca.pem:/ca.pem:ro" -- \
			tlsclient --cafile /ca.pem allowed.test 443
		expect_status "podman: the exit status stays the container's (4)" 4 \
			mrun --engine podman --engine-socket "$PODMAN_SOCK" --image "$MOAT_TEST_IMAGE" \
			--learn "$W/engine4.json" -- sh -c 'exit 4'
		check "podman: no temporary audit log left behind" test "$(temp_logs)" = "$n0"
		check "podman: nothing left" nothing_left
		check "podman: no container left" test -z "$(podman ps -a --format '{{.Names}}')"
	else
		check "podman: the service and the test image come up" false
	fi
fi

finish
