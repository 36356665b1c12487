#!/bin/bash
# moat run --engine podman|docker against a private podman service, moat in H:
# the container is confined like the embedded sandbox (allowed name over TLS, denied name and
# SNI refused and audited), its command's very first action already goes through moat, exit
# statuses (own, 126, 127, 125 with one line), environment and mounts (--env, --volume, the
# profile's read/write lists), signals forwarded, --keep, and fail-closed: a moat killed with
# SIGKILL leaves its container with no network, and `moat cleanup --engine-socket` removes the
# container, the table, the veth and the resolver file.  Nothing is left behind by any case.
set -u
. "$SRC/tests/lib/common.sh"
need_root
need_moat
command -v podman >/dev/null 2>&1 || skip "needs podman (tools/deps installs it)"
need_cmd runc ip nft curl
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/podman.sh"
. "$SRC/tests/lib/image.sh"

topo_up || exit 1
podman_up "$TOPO_DIR/podman" || { echo "FAIL - the podman service did not start"; exit 1; }
image_build "$HELPERS" >/dev/null || { echo "FAIL - the test image did not build"; exit 1; }
[ -x "$BUILD/moat-pause" ] || { echo "FAIL - no $BUILD/moat-pause (make it)"; exit 1; }
SOCK=$PODMAN_SOCK
IMG=$MOAT_TEST_IMAGE
W=$TOPO_DIR/engine
mkdir -p "$W/data" "$W/ro"
cp "$TOPO_CA" "$W/ca.pem"
echo "readable" >"$W/ro/file"
cat >"$W/web.json" <<EOF
{ "network": { "outbound": { "allow_host": ["allowed.test"], "allow_port": [443] } },
  "read": ["$W/ro"], "write": ["$W/data:/data"] }
EOF

# moat run in H with ENGINE, the test profile and audit log $W/audit-ENGINE.log, the CA at
# /ca.pem; ARGS... are moat's options then -- and the command.
mrun_args() {
	MARGS=(run --engine "$1" --engine-socket "$SOCK" --image "$IMG" --profile "$W/web.json"
		--audit-log "$W/audit-$1.log" -v "$W/ca.pem:/ca.pem:ro")
}
mrun() {
	mrun_args "$1"
	shift
	in_H "$MOAT" "${MARGS[@]}" "$@"
}
# the same in the background, output to OUT; MPID is moat's own PID (ip netns exec execs it)
mrun_bg() {
	local out=$1
	mrun_args "$2"
	shift 2
	ip netns exec "$TOPO_H" "$MOAT" "${MARGS[@]}" "$@" >"$out" 2>&1 &
	MPID=$!
}

# Everything moat may leave: tables, veths, containers, resolver files of dead moats.
leftovers() {
	local f pid
	in_H nft list tables 2>/dev/null | grep -F 'moat_'
	in_H ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
		grep '^moat-'
	podman ps -a --format '{{.Names}} {{.Status}}' 2>/dev/null
	for f in /run/moat/*.resolv.conf; do
		[ -e "$f" ] || continue
		pid=${f%.resolv.conf}
		pid=${pid##*.}
		kill -0 "$pid" 2>/dev/null || echo "$f"
	done
}
nothing_left() { [ -z "$(leftovers)" ]; }
check_clean() {
	if nothing_left; then
		check "$1: nothing left (table, veth, container, resolver file)" true
	else
		check "$1: nothing left (table, veth, container, resolver file)" \
			sh -c "echo '$(leftovers | tr '\n' ';')'; false"
	fi
}

# one line of the audit log with all the fixed strings given
audit_has() {
	local log=$1 l
	shift
	while IFS= read -r l; do
		local s ok=1
		for s in "$@"; do
			case $l in *"$s"*) ;; *) ok=0 ;; esac
		done
		[ $ok = 1 ] && return 0
	done <"$log"
	return 1
}

for engine in podman docker; do
	rm -f "$W/audit-$engine.log"
	# the command is tlsclient itself, as pid 1: its very first action is the lookup and
	# the connection, which already go through moat
	check_output "$engine: the command's first action reaches allowed.test over TLS" \
		"HTTP/1.1 200" mrun $engine -- tlsclient --cafile /ca.pem allowed.test 443
	check "$engine: audit log: allowed.test allowed by SNI" audit_has "$W/audit-$engine.log" \
		'"event":"tcp"' '"verdict":"allow"' '"sni":"allowed.test"'
	expect_fail "$engine: denied.test does not resolve" \
		mrun $engine -- tlsclient --cafile /ca.pem --timeout 3 denied.test 443
	check "$engine: audit log: DNS for denied.test denied" audit_has "$W/audit-$engine.log" \
		'"event":"dns"' '"verdict":"deny"' '"qname":"denied.test"'
	expect_fail "$engine: SNI denied.test to its address is refused" \
		mrun $engine -- tlsclient --cafile /ca.pem --timeout 3 "$TOPO_DENIED4" 443 denied.test
	check "$engine: audit log: TLS to denied.test denied" audit_has "$W/audit-$engine.log" \
		'"event":"tcp"' '"verdict":"deny"' '"sni":"denied.test"'
	expect_fail "$engine: port 8443 is not allowed" \
		mrun $engine -- tlsclient --cafile /ca.pem --timeout 2 allowed.test 8443
	check "$engine: audit log: the drop on port 8443" audit_has "$W/audit-$engine.log" \
		'"event":"drop"' '"dport":8443'
	check_output "$engine: resolv.conf names the gateway" "nameserver 10." \
		mrun $engine -- cat /etc/resolv.conf

	expect_status "$engine: the command's exit status (7)" 7 mrun $engine -- sh -c 'exit 7'
	expect_status "$engine: a command not found gives 127" 127 mrun $engine -- nosuchcmd
	expect_status "$engine: a command not executable gives 126" 126 mrun $engine -- /ca.pem
	check "$engine: --env reaches the command" \
		mrun $engine -e FOO=bar -e EMPTY= -- sh -c 'test "$FOO" = bar && test -z "$EMPTY"'
	rm -f "$W/data/out"
	check "$engine: profile write list: read-write mount" \
		mrun $engine -- sh -c "echo written >/data/out"
	check "$engine: the file written reached the host" grep -qx written "$W/data/out"
	check_output "$engine: profile read list: readable" "readable" \
		mrun $engine -- cat "$W/ro/file"
	expect_fail "$engine: profile read list: read-only" \
		mrun $engine -- sh -c "echo x >$W/ro/file"
	check_clean "$engine: after the runs"

	# signals reach the container through the engine
	out=$W/sig-$engine.out
	mrun_bg "$out" $engine -- \
		sh -c 'trap "echo got-term; exit 3" TERM; echo ready; while :; do sleep 0.1; done'
	mpid=$MPID
	topo_wait "$engine: container ready" 20 grep -q ready "$out"
	kill -TERM $mpid
	rc=0
	wait $mpid || rc=$?
	check "$engine: SIGTERM to moat reaches the container (exit 3)" test "$rc" = 3
	check "$engine: the container's trap ran" grep -q got-term "$out"
	check_clean "$engine: after the signal"

	# fail closed: moat killed, the container keeps running without any network
	log=$W/data/loop-$engine
	rm -f "$log"
	mrun_bg "$W/loop-$engine.out" $engine -- sh -c "while :; do if tlsclient --cafile /ca.pem \
		--timeout 1 $TOPO_ALLOWED4 443 allowed.test >/dev/null 2>&1; then echo ok; \
		else echo fail; fi >>/data/loop-$engine; sleep 0.2; done"
	mpid=$MPID
	check "$engine: the looping container reaches allowed.test" \
		topo_wait "an ok line" 20 grep -q ok "$log"
	kill -KILL $mpid
	wait $mpid 2>/dev/null
	n=$(wc -l <"$log")
	# a connection in flight at the kill may still finish; after the first failure none
	# may succeed again
	check "$engine: after SIGKILL of moat the container's connections fail" \
		topo_wait "a failure after the kill" 20 sh -c "tail -n +$((n + 1)) '$log' | grep -q fail"
	first=$(($(tail -n +$((n + 1)) "$log" | grep -n fail | head -1 | cut -d: -f1) + n))
	topo_wait "three more attempts" 30 sh -c "[ \$(wc -l <'$log') -ge $((first + 3)) ]"
	check "$engine: and none succeeds again ($(($(wc -l <"$log") - first)) attempts)" \
		sh -c "! tail -n +$((first + 1)) '$log' | grep -q ok"
	check "$engine: the container is still running" \
		sh -c "podman ps --format '{{.Names}}' | grep -q '^moat-'"
	check "$engine: moat cleanup --engine-socket removes it all" \
		in_H "$MOAT" cleanup --engine-socket "$SOCK"
	check_clean "$engine: after moat cleanup"

	# --keep: the container stays, stopped
	check "$engine: --keep runs" mrun $engine --keep -- true
	check "$engine: --keep leaves the container, exited" \
		sh -c "podman ps -a --format '{{.Names}} {{.Status}}' | grep '^moat-' | grep -q Exited"
	check "$engine: --keep leaves nothing running" \
		sh -c "[ -z \"\$(podman ps -q)\" ]"
	check "$engine: moat cleanup removes kept containers (owner gone)" \
		in_H "$MOAT" cleanup --engine-socket "$SOCK"
	check_clean "$engine: after cleanup of a kept container"
done

# Failures: status 125, one clear line, nothing left.
fails() {
	local desc=$1 want=$2 rc=0
	shift 2
	"$@" >"$W/fail.out" 2>"$W/fail.err" || rc=$?
	check "$desc: status 125" test "$rc" = 125
	check "$desc: one line on stderr" test "$(wc -l <"$W/fail.err")" = 1
	check "$desc: the line says '$want'" grep -qF -- "$want" "$W/fail.err"
	check_clean "$desc"
}
for engine in podman docker; do
	fails "$engine: a bad image" "image not known" \
		in_H "$MOAT" run --engine $engine --engine-socket "$SOCK" --image localhost/nope -- true
	fails "$engine: an unreachable socket" "cannot reach the $engine API at $W/none.sock" \
		in_H "$MOAT" run --engine $engine --engine-socket "$W/none.sock" --image "$IMG" -- true
	fails "$engine: an engine error (unknown user)" "nosuchuser" \
		in_H "$MOAT" run --engine $engine --engine-socket "$SOCK" --image "$IMG" \
		--user nosuchuser -- true
	fails "$engine: a missing volume source" "$W/missing" \
		in_H "$MOAT" run --engine $engine --engine-socket "$SOCK" --image "$IMG" \
		-v "$W/missing:/m" -- true
done
fails "a relative volume" "absolute" \
	in_H "$MOAT" run --engine podman --engine-socket "$SOCK" --image "$IMG" -v rel:/m -- true
check_output "moat -v cleanup with no engine reachable says so and carries on" \
	"no container engine reachable" env -u CONTAINER_HOST -u DOCKER_HOST \
	ip netns exec "$TOPO_H" "$MOAT" -v cleanup
expect_status "moat cleanup with an unreachable --engine-socket fails" 1 \
	in_H "$MOAT" cleanup --engine-socket "$W/none.sock"

finish
