#!/bin/bash
# moat's life cycle in the C/H/U topology (moat in H):
#  - SIGINT / SIGTERM to moat: forwarded, the workload exits, moat exits with its status
#    (130 / 143) and removes table, veth and policy routing;
#  - a workload that ignores SIGTERM is killed after the grace period (10 s);
#  - a workload that crashes (SIGSEGV): 139 and the same cleanup;
#  - fail closed: `kill -9` moat run (the sandbox dies with it: PR_SET_PDEATHSIG) and
#    `kill -9` moat enforce on a namespace whose processes live on: that namespace has no
#    network (TPROXY finds no socket, the final drops apply), the table stays, `moat status`
#    names the dead owner, `moat cleanup` removes table, veth and routing, a second cleanup
#    finds nothing, and cleanup never touches a live moat's sandbox.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/moat.sh"
need_root
need_moat
need_cmd nft ip curl

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
D=$TOPO_DIR/life
mkdir -p "$D"
children() { cat /proc/"$1"/task/*/children 2>/dev/null; }
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
gone() { ! alive "$1"; }

P=$D/life.json
cat >"$P" <<'X'
{"network":{"outbound":{"allow_host":["allowed.test"],"allow_port":[443]}}}
X
CURL="curl -s --connect-timeout 1 --max-time 3 --cacert $TOPO_CA"

# start NAME CMD...: moat run in the background; MPID, and WPID (the workload) once it
# has written $D/NAME.up
start() {
	local name=$1
	shift
	rm -f "$D/$name.up"
	ip netns exec "$TOPO_H" "$MOAT" run --profile "$P" --audit-log "$D/$name.audit" -- "$@" \
		</dev/null >"$D/$name.log" 2>&1 &
	MPID=$!
	_topo_record_pid $MPID
	topo_wait "$name up" 20 test -e "$D/$name.up" || return 1
	local init
	init=$(children $MPID | awk '{print $1}')
	WPID=$(children "$init" | awk '{print $1}')
	[ -n "$WPID" ]
}
sid() { audit_sandbox_id "$D/$1.audit"; }

# --- SIGINT, SIGTERM, crash -------------------------------------------------------------
for sig in INT:130 TERM:143; do
	s=${sig%:*} want=${sig#*:}
	check "SIG$s: workload up" start "sig$s" sh -c "touch $D/sig$s.up; exec sleep 300"
	ID=$(sid "sig$s")
	check "SIG$s: its table exists" in_H nft list table inet "moat_$ID"
	rc=0
	moat_stop $MPID "$s" || rc=$?
	check "SIG$s: moat exits $want (the workload's status), got $rc" test $rc = "$want"
	check "SIG$s: the workload is gone" gone "$WPID"
	check "SIG$s: table, veth and routing removed" no_moat_left
	assert_contains "$D/sig$s.audit" '"state":"stopped"' "SIG$s: the audit log says stopped"
done

check "ignoring SIGTERM: workload up" start ign sh -c "trap '' TERM; touch $D/ign.up; while :; do sleep 0.1; done"
t0=$(date +%s%N)
rc=0
moat_stop $MPID || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "ignoring SIGTERM: killed after the grace period: 137 after ${ms} ms" \
	test $rc = 137 -a $ms -ge 9500 -a $ms -lt 15000
check_output "ignoring SIGTERM: moat says why" "did not exit within" cat "$D/ign.log"
check "ignoring SIGTERM: the workload is gone" gone "$WPID"
check "ignoring SIGTERM: everything removed" no_moat_left

check "crash: workload up" start segv sh -c "touch $D/segv.up; sleep 0.3; kill -SEGV \$\$"
rc=0
wait $MPID || rc=$?
check "crash: SIGSEGV gives 139 (got $rc)" test $rc = 139
check "crash: everything removed" no_moat_left

# --- fail closed: kill -9 moat run ----------------------------------------------------------
check "kill -9: workload running a loop of requests" start k9 sh -c \
	"touch $D/k9.up; while :; do $CURL -o /dev/null -w '%{http_code}\n' https://allowed.test/ >>$D/k9.results; sleep 0.1; done"
ID=$(sid k9)
topo_wait "some results" 10 grep -q 200 "$D/k9.results"
check "kill -9: requests succeed before" grep -q '^200$' "$D/k9.results"
moat_stop $MPID KILL
check "kill -9: the workload died with moat (parent-death signal)" topo_wait "workload gone" 5 gone "$WPID"
check "kill -9: the table stays" in_H nft list table inet "moat_$ID"
check_output "kill -9: moat status names the dead owner" "owner dead" in_H "$MOAT" status
check_output "kill -9: moat status --json says alive false" '"alive":false' in_H "$MOAT" status --json
check_output "cleanup removes it" "removed moat_$ID" in_H "$MOAT" cleanup
check "after cleanup: no table, veth or routing" no_moat_left
check_output "a second cleanup finds nothing" "" sh -c "out=\$(ip netns exec $TOPO_H $MOAT cleanup) && [ -z \"\$out\" ] && echo ''"

# --- fail closed: kill -9 moat enforce, the namespace lives on --------------------------------
C=$(topo_netns_c c)
enforce_bg "$D/e" --netns "/run/netns/$C" --profile "$P"
check "enforce: ready" topo_wait "ready file" 20 test -s "$D/e.ready"
EID=$(ready_val "$D/e.ready" id)
GW4=$(ready_val "$D/e.ready" gateway4)
mkdir -p "/etc/netns/$C"
echo "nameserver $GW4" >"/etc/netns/$C/resolv.conf"
# a process of C that keeps requesting, before and after moat's death
topo_spawn "$C" "$D/c.loop.log" sh -c "while :; do $CURL -o /dev/null -w '%{http_code}\n' https://allowed.test/ >>$D/c.results; $CURL -o /dev/null -w '%{http_code}\n' --resolve allowed.test:443:$TOPO_ALLOWED4 https://allowed.test/ >>$D/c.results; sleep 0.1; done"
LPID=$TOPO_LAST_PID
topo_wait "results in C" 10 grep -q '^200$' "$D/c.results"
check "enforce: C's requests succeed while moat runs" grep -q '^200$' "$D/c.results"
# a live sandbox beside it, which cleanup must leave alone
check "a live sandbox beside it" start live sh -c "touch $D/live.up; exec sleep 300"
LIVE_MPID=$MPID LIVE_ID=$(sid live)
moat_stop $EPID KILL
# a request that finished just before the kill may print its 200 a moment after it:
# let the loop write two more lines (they end after the kill) before judging
n_at_kill=$(wc -l <"$D/c.results")
topo_wait "C's loop past the kill" 20 sh -c "[ \$(wc -l <$D/c.results) -ge $((n_at_kill + 2)) ]"
: >"$D/c.results"
nginx_before=$(wc -l <"$TOPO_NGINX_LOG")
check "C's loop made 4 more requests after the kill" \
	topo_wait "C's loop after the kill" 20 sh -c "[ \$(wc -l <$D/c.results) -ge 4 ]"
check "C's process lives on" alive "$LPID"
check "after kill -9: every request of C fails (no 200)" sh -c "! grep -q '^200' $D/c.results"
check "after kill -9: nothing reached U's servers" test "$(wc -l <"$TOPO_NGINX_LOG")" = "$nginx_before"
expect_fail "after kill -9: allowed.test at its address from C fails" \
	ip netns exec "$C" $CURL --resolve allowed.test:443:$TOPO_ALLOWED4 https://allowed.test/
expect_fail "after kill -9: DNS from C gets no answer" \
	ip netns exec "$C" dig +time=1 +tries=1 @"$GW4" allowed.test A
check "after kill -9: the table stays" in_H nft list table inet "moat_$EID"
check "after kill -9: C still has eth0 (the namespace lives)" ip -n "$C" link show eth0
check_output "moat status names the dead owner" "owner dead" in_H "$MOAT" status
check_output "cleanup removes the dead one" "removed moat_$EID" in_H "$MOAT" cleanup
check_output "cleanup keeps the live one" "kept    moat_$LIVE_ID" in_H "$MOAT" cleanup
check "the dead one's table is gone" sh -c "! ip netns exec $TOPO_H nft list table inet moat_$EID 2>/dev/null"
check "its veth is gone (H side)" sh -c "! ip -n $TOPO_H link show moat-$EID 2>/dev/null"
check "its veth is gone (C's eth0)" sh -c "! ip -n $C link show eth0 2>/dev/null"
check "the live one's table survives" in_H nft list table inet "moat_$LIVE_ID"
check "the live one's veth survives" ip -n "$TOPO_H" link show "moat-$LIVE_ID"
check "policy routing survives for the live one" sh -c "ip -n $TOPO_H rule show | grep -qi 'fwmark $MOAT_FWMARK'"
check "the live moat still runs" alive "$LIVE_MPID"
rc=0
moat_stop "$LIVE_MPID" || rc=$?
check "the live one stops with 143" test $rc = 143
check "finally nothing is left" no_moat_left
check_output "and cleanup finds nothing" "" sh -c "out=\$(ip netns exec $TOPO_H $MOAT cleanup) && [ -z \"\$out\" ] && echo ''"
finish
