#!/bin/bash
# moat run, the kernel half: what the per-sandbox nftables table does to the workload's
# traffic, in the C/H/U topology (moat in H), over IPv4 and IPv6.
#
#  - TCP to an allowed port reaches the proxy with its original destination (audit dst/dport
#    are the ones the client used; a wrong address for an allowed name is refused as such);
#  - TCP to other ports, UDP other than DNS, ICMP echo and anything sent to H's own addresses
#    (even on an allowed port, even with a server listening there) are dropped: the client
#    times out, the audit log has a `drop` event with the right reason and dport, and the
#    per-reason counter of the table grows;
#  - the first connection of a fresh sandbox succeeds on its first SYN;
#  - two sandboxes with different profiles run side by side without touching each other, and
#    leave nothing behind (table, veth, policy routing);
#  - exit statuses: the workload's own, 127, 126, 125 (nothing created), --profile none.
#
# The workload of a long-lived sandbox is a small agent (sh) that runs the command files the
# test drops into a shared directory, so each case is checked while moat runs.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/sandbox.sh"
need_root
need_moat
need_cmd nft ip curl dig nsenter
need_python

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
D=$TOPO_DIR/l4
sb_init "$D"
probe_py_write "$D/probe.py"

# --- profiles ----------------------------------------------------------------------------
P=$D/l4.json
cat >"$P" <<'EOF'
{"network":{"outbound":{"allow_host":["allowed.test",".example.test"],"allow_port":[443,80,8080]}}}
EOF
PA=$D/only-allowed.json
cat >"$PA" <<'EOF'
{"network":{"outbound":{"allow_host":["allowed.test"],"allow_port":[443]}}}
EOF
PB=$D/only-other.json
cat >"$PB" <<'EOF'
{"network":{"outbound":{"allow_host":["other.test"],"allow_port":[443]}}}
EOF
CURL="curl -s --connect-timeout 1 --max-time 5 --cacert $TOPO_CA"

# --- positive controls: the probes can succeed --------------------------------------------
in_H sysctl -qw net.ipv4.ping_group_range="0 2147483647"
# (polled: the very first packet to U may wait for neighbour discovery)
for a in "$TOPO_ALLOWED4" "$TOPO_ALLOWED6"; do
	check "control: TCP echo $a:9001 answers H" \
		topo_wait "tcp echo" 5 in_H "$PY" "$D/probe.py" tcp "$a" 9001
	check "control: UDP echo $a:9000 answers H" \
		topo_wait "udp echo" 5 in_H "$PY" "$D/probe.py" udp "$a" 9000
	check "control: ICMP echo to $a answers H" \
		topo_wait "icmp echo" 5 in_H "$PY" "$D/probe.py" icmp "$a"
done

# servers in H itself, dual-stack on 80 and 8080
topo_spawn H "$D/hsrv80.log" "$HELPERS/echo" --tcp 80 --ready "$D/hsrv80.ready"
topo_spawn H "$D/hsrv8080.log" "$HELPERS/echo" --tcp 8080 --ready "$D/hsrv8080.ready"
topo_wait "servers in H" 10 test -e "$D/hsrv80.ready" -a -e "$D/hsrv8080.ready"
check "control: H's own server 198.18.0.1:8080 answers in H" \
	in_H "$PY" "$D/probe.py" tcp "$TOPO_H4" 8080

# --- one sandbox, case by case -------------------------------------------------------------
before=$(h_state)
sb_start s "$P" || { echo "FAIL - sandbox did not start"; cat "$D/s.moat.log"; exit 1; }
ID=$(sb_id s)
check "sandbox id known from the audit log ($ID)" test -n "$ID"
check "table inet moat_$ID exists in H" in_H nft list table inet "moat_$ID"
GW4=$(in_H ip -4 -o addr show dev "moat-$ID" | awk '{print $4}' | cut -d/ -f1)
GW6=$(in_H ip -6 -o addr show dev "moat-$ID" scope global | awk '{print $4}' | cut -d/ -f1)
check "H end of the veth has addresses ($GW4, $GW6)" test -n "$GW4" -a -n "$GW6"
# the sandbox's init, child of moat: its netns is the sandbox's
SBPID=$(cat /proc/"${SB_PID[s]}"/task/*/children 2>/dev/null | awk '{print $1}')
check "sandbox init found (pid $SBPID)" test -n "$SBPID"

for v in 4 6; do
	if [ $v = 4 ]; then A=$TOPO_ALLOWED4 O=$TOPO_OTHER4; else A=$TOPO_ALLOWED6 O=$TOPO_OTHER6; fi

	# allowed ports: the proxy sees the original destination
	audit_mark s
	check_output "v$v: https://allowed.test/ reaches allowed.test at $A" "addr=$A" \
		sb_run s "$CURL -$v https://allowed.test/"
	check "v$v: tcp allow event with dst $A dport 443" audit_wait s '"event":"tcp"' \
		'"verdict":"allow"' "\"dst\":\"$A\"" '"dport":443,' '"sni":"allowed.test"'
	audit_mark s
	check_output "v$v: http://allowed.test:8080/ reaches port 8080" "port=8080" \
		sb_run s "$CURL -$v http://allowed.test:8080/"
	check "v$v: http allow event with dst $A dport 8080" audit_wait s '"event":"http"' \
		'"verdict":"allow"' "\"dst\":\"$A\"" '"dport":8080,'
	audit_mark s
	expect_fail "v$v: allowed.test pinned to other.test's address $O is refused" \
		sb_run s "$CURL -$v --resolve allowed.test:443:$O https://allowed.test/"
	check "v$v: refused with the destination the client used ($O)" audit_wait s \
		'"event":"tcp"' '"verdict":"deny"' '"reason":"sni-ip-mismatch"' "\"dst\":\"$O\"" \
		'"dport":443,'

	# other TCP ports: dropped in the kernel
	for port in 8443 9001; do
		c0=$(counter "$ID" drop_port)
		audit_mark s
		expect_status "v$v: TCP to $A:$port times out (dropped, not reset)" 3 \
			sb_run s "$PY $D/probe.py tcp $A $port"
		check "v$v: drop event reason port dport $port dst $A" audit_wait s \
			'"event":"drop"' '"reason":"port"' "\"dport\":$port," "\"dst\":\"$A\""
		check "v$v: counter drop_port grew ($port)" counter_grew "$ID" drop_port "$c0"
	done

	# UDP other than DNS
	c0=$(counter "$ID" drop_udp)
	audit_mark s
	expect_status "v$v: UDP echo $A:9000 gets no answer" 3 \
		sb_run s "$PY $D/probe.py udp $A 9000"
	check "v$v: drop event reason udp dport 9000" audit_wait s '"event":"drop"' \
		'"reason":"udp"' '"dport":9000' "\"dst\":\"$A\""
	check "v$v: counter drop_udp grew" counter_grew "$ID" drop_udp "$c0"
done

# ICMP echo. The workload has no CAP_NET_RAW, so it can only send ICMP through a datagram
# ICMP socket, which the kernel allows to the gids in net.ipv4.ping_group_range of the
# sandbox's netns (default "1 0": nobody). The test opens it from outside, so that the rule
# under test (ICMP from the sandbox is dropped in H) is what stops the echo.
check "sandbox netns allows ICMP datagram sockets (set from H)" \
	nsenter --net=/proc/"$SBPID"/ns/net sysctl -qw net.ipv4.ping_group_range="0 2147483647"
for v in 4 6; do
	if [ $v = 4 ]; then A=$TOPO_ALLOWED4 t=8; else A=$TOPO_ALLOWED6 t=128; fi
	c0=$(counter "$ID" drop_icmp)
	audit_mark s
	expect_status "v$v: ICMP echo to $A from the sandbox gets no reply" 3 \
		sb_run s "$PY $D/probe.py icmp $A"
	check "v$v: drop event reason icmp, echo request to $A" audit_wait s '"event":"drop"' \
		'"reason":"icmp"' "\"dst\":\"$A\"" "\"icmp_type\":$t,"
	check "v$v: counter drop_icmp grew" counter_grew "$ID" drop_icmp "$c0"
done

# H's own addresses: never reachable, even on an allowed port with a server listening
for dst in "$TOPO_H4 8080" "$GW4 8080" "$TOPO_H6 8080" "$GW6 8080" "$TOPO_H4 80" "$GW4 80" \
	"$GW6 80"; do
	set -- $dst
	c0=$(counter "$ID" drop_host)
	audit_mark s
	expect_status "H's own $1:$2 (allowed port, server listening) is not reachable" 3 \
		sb_run s "$PY $D/probe.py tcp $1 $2"
	check "drop event reason host dport $2 dst $1" audit_wait s '"event":"drop"' \
		'"reason":"host"' "\"dport\":$2," "\"dst\":\"$1\""
	check "counter drop_host grew ($1:$2)" counter_grew "$ID" drop_host "$c0"
done

check "moat status --json lists the sandbox with its counters" \
	sh -c "ip netns exec $TOPO_H $MOAT status --json | jq -e '.[] | select(.sandbox==\"$ID\") | .alive and .counters.drop_port.packets > 0 and .counters.drop_host.packets > 0'"

expect_status "moat run exits with the workload's status (agent quits 0)" 0 sb_stop s 0
after=$(h_state)
check "nothing of the sandbox is left in H" no_moat_left
check "H's tables, links, rules and routes are as before" test "$before" = "$after"

# --- the very first connection succeeds on its first SYN -----------------------------------
for v in 4 6; do
	for i in 1 2 3 4 5; do
		check_output "v$v: first action is a connection: run $i succeeds in under 1 s" \
			"code=200" in_H "$MOAT" run --profile "$P" -- \
			curl -sS -o /dev/null -$v --connect-timeout 1 --max-time 3 --cacert "$TOPO_CA" \
			-w 'code=%{http_code} connect=%{time_connect}\n' https://allowed.test/
	done
done

# --- two sandboxes side by side -------------------------------------------------------------
sb_start a "$PA" && sb_start b "$PB" || { echo "FAIL - sandboxes did not start"; finish; }
IDA=$(sb_id a)
IDB=$(sb_id b)
check "two sandboxes, two ids ($IDA, $IDB)" test -n "$IDA" -a -n "$IDB" -a "$IDA" != "$IDB"
check "each has its own table" sh -c "ip netns exec $TOPO_H nft list table inet moat_$IDA | grep -q 'profile=only-allowed' && ip netns exec $TOPO_H nft list table inet moat_$IDB | grep -q 'profile=only-other'"
check "each has its own veth" sh -c "ip -n $TOPO_H link show moat-$IDA && ip -n $TOPO_H link show moat-$IDB"
# both run a loop of requests at the same time
LOOP='i=0; ok=0; bad=0; while [ $i -lt 15 ]; do
	if '"$CURL"' -o /dev/null -f https://NAME_OK/; then ok=$((ok+1)); fi
	if '"$CURL"' -o /dev/null -f https://NAME_BAD/; then bad=$((bad+1)); fi
	i=$((i+1)); done; echo "ok=$ok bad=$bad"'
LA=${LOOP//NAME_OK/allowed.test}
LB=${LOOP//NAME_OK/other.test}
sb_run a "${LA//NAME_BAD/other.test}" >/dev/null &
sb_run_a=$!
sb_run b "${LB//NAME_BAD/allowed.test}" >/dev/null &
sb_run_b=$!
wait $sb_run_a $sb_run_b
SB_N[a]=1 SB_N[b]=1
check "a (allowed.test only): 15 allowed, 0 other" grep -qx "ok=15 bad=0" "$D/a/out.0"
check "b (other.test only): 15 other, 0 allowed" grep -qx "ok=15 bad=0" "$D/b/out.0"
assert_not_contains "$D/a.audit" '"sni":"other.test","rule"' "a never allowed other.test"
assert_not_contains "$D/b.audit" '"sni":"allowed.test","rule"' "b never allowed allowed.test"
check "b's audit log has only b's events" sh -c "! grep -v '\"sandbox\":\"$IDB\"' $D/b.audit"
# one leaving must not take the other's network (shared policy routing)
expect_status "a exits 0" 0 sb_stop a 0
check "a's table and veth are gone" sh -c "! ip netns exec $TOPO_H nft list table inet moat_$IDA 2>/dev/null && ! ip -n $TOPO_H link show moat-$IDA 2>/dev/null"
check "policy routing stays while b runs" sh -c "ip -n $TOPO_H rule show | grep -qi 'fwmark $MOAT_FWMARK'"
check_output "b still reaches other.test after a left" "name=other.test" \
	sb_run b "$CURL https://other.test/"
expect_status "b exits with its workload's status 3" 3 sb_stop b 3
check "after both: no moat_* table, no moat-* link, no fwmark rule, table $MOAT_RTABLE empty" \
	no_moat_left

# --- exit statuses --------------------------------------------------------------------------
expect_status "moat run -- sh -c 'exit 7' exits 7" 7 in_H "$MOAT" run -- sh -c 'exit 7'
expect_status "a missing command exits 127" 127 in_H "$MOAT" run -- /nonexistent/cmd
check_output "... with a clear message" "command not found" \
	sh -c "ip netns exec $TOPO_H $MOAT run -- no-such-command-moat 2>&1; test \$? = 127"
printf '#!/bin/sh\necho hi\n' >"$D/noexec.sh"
chmod 644 "$D/noexec.sh"
expect_status "a non-executable file exits 126" 126 in_H "$MOAT" run -- "$D/noexec.sh"
check_output "... with a clear message" "Permission denied" \
	sh -c "ip netns exec $TOPO_H $MOAT run -- $D/noexec.sh 2>&1; test \$? = 126"
check "nothing left after 127/126" no_moat_left
echo '{"network":{"outbound":{"allow_hots":["a.test"]}}}' >"$D/bad.json"
before=$(h_state)
expect_status "a bad profile exits 125" 125 in_H "$MOAT" run --profile "$D/bad.json" -- true
check_output "... naming the bad field" "allow_hots" \
	sh -c "ip netns exec $TOPO_H $MOAT run --profile $D/bad.json -- true 2>&1; test \$? = 125"
expect_status "an unknown profile name exits 125" 125 \
	in_H "$MOAT" run --profile no-such-profile-moat -- true
after=$(h_state)
check "a bad profile creates nothing (tables, links, rules, routes unchanged)" \
	test "$before" = "$after"

# --profile none: no network at all
: >"$D/none.audit"
check_output "--profile none: DNS answers NXDOMAIN for allowed.test" "status: NXDOMAIN" \
	in_H "$MOAT" run --profile none -- dig +time=2 +tries=1 allowed.test A
check_output "--profile none: TCP to 198.18.1.1:443 times out" "timeout" \
	sh -c "ip netns exec $TOPO_H $MOAT run --profile none --audit-log $D/none.audit -- $PY $D/probe.py tcp $TOPO_ALLOWED4 443; test \$? = 3"
check_output "--profile none: TCP to [$TOPO_ALLOWED6]:443 times out" "timeout" \
	sh -c "ip netns exec $TOPO_H $MOAT run --profile none --audit-log $D/none.audit -- $PY $D/probe.py tcp $TOPO_ALLOWED6 443; test \$? = 3"
assert_contains "$D/none.audit" '"reason":"port"' "--profile none: the TCP attempts are drop events"
check "nothing left at the end" no_moat_left

finish
