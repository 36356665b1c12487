#!/bin/bash
# moat enforce: confining a network namespace that something else made (C, made by the
# test), in the C/H/U topology with moat in H, IPv4 and IPv6.
#  - --netns PATH: once the ready file is there, C reaches allowed.test and nothing else
#    (NXDOMAIN, 403, TLS alert, dropped ports, all in the audit log);
#  - SIGTERM: exit 0 and everything removed (table, H's veth, C's eth0 and routes, the
#    policy routing, the ready file);
#  - --pid PID: the same for the namespace of a process sleeping in C;
#  - bad arguments (both or neither of --netns/--pid, a missing path, not a netns, H
#    itself, a dead pid, a bad profile): 125 with a clear message, nothing created.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/moat.sh"
need_root
need_moat
need_cmd nft ip curl dig

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
D=$TOPO_DIR/enforce
mkdir -p "$D"
# C's links, addresses and routes, but for lo (moat brings it up and leaves it up: a
# process of C may be using it by then)
c_state() {
	ip -n "$1" -o link show | awk -F': ' '{print $2}'
	ip -n "$1" -o addr show | grep -v ': lo '
	ip -n "$1" route show table all | grep -v ' dev lo '
	ip -n "$1" -6 route show table all | grep -v ' dev lo '
}

P=$D/enforce.json
cat >"$P" <<'X'
{"network":{"outbound":{"allow_host":["allowed.test"],"allow_port":[443,80]}}}
X
CURL="curl -s --connect-timeout 1 --max-time 5 --cacert $TOPO_CA"

# --- --netns PATH ----------------------------------------------------------------------
C=$(topo_netns_c c)
hbefore=$(h_state)
cbefore=$(c_state "$C")
enforce_bg "$D/c" --netns "/run/netns/$C" --profile "$P"
check "moat enforce --netns writes its ready file" topo_wait "ready file" 20 test -s "$D/c.ready"
ID=$(ready_val "$D/c.ready" id)
IF=$(ready_val "$D/c.ready" interface)
A4=$(ready_val "$D/c.ready" addr4)
GW4=$(ready_val "$D/c.ready" gateway4)
A6=$(ready_val "$D/c.ready" addr6)
GW6=$(ready_val "$D/c.ready" gateway6)
check "ready file: id $ID, interface $IF, addresses $A4 $A6, gateways $GW4 $GW6" \
	test -n "$ID" -a "$IF" = "moat-$ID" -a -n "$A4" -a -n "$GW4" -a -n "$A6" -a -n "$GW6"
check "table inet moat_$ID in H" in_H nft list table inet "moat_$ID"
check_output "the table names moat enforce's pid" "pid=$EPID " in_H nft list table inet "moat_$ID"
check "veth $IF in H" ip -n "$TOPO_H" link show "$IF"
check_output "C got eth0 with $A4" "$A4" ip -n "$C" -4 addr show dev eth0
check_output "C got eth0 with $A6" "$A6" ip -n "$C" -6 addr show dev eth0
check_output "C's default route is the gateway $GW4" "default via $GW4" ip -n "$C" route
check_output "C's v6 default route is the gateway $GW6" "default via $GW6" ip -n "$C" -6 route
check "policy routing in H (fwmark $MOAT_FWMARK)" sh -c "ip -n $TOPO_H rule show | grep -qi 'fwmark $MOAT_FWMARK'"
# C's processes resolve through the gateway
mkdir -p "/etc/netns/$C"
printf 'nameserver %s\nnameserver %s\n' "$GW4" "$GW6" >"/etc/netns/$C/resolv.conf"

for v in 4 6; do
	if [ $v = 4 ]; then A=$TOPO_ALLOWED4 DEN=$TOPO_DENIED4; else A=$TOPO_ALLOWED6 DEN=[$TOPO_DENIED6]; fi
	check_output "v$v: allowed.test over TLS from C" "addr=$A" \
		ip netns exec "$C" $CURL -$v https://allowed.test/
	check_output "v$v: allowed.test over HTTP from C" "scheme=http port=80" \
		ip netns exec "$C" $CURL -$v http://allowed.test/
	check_output "v$v: denied.test is NXDOMAIN" "status: NXDOMAIN" \
		ip netns exec "$C" dig +time=2 +tries=1 -$v denied.test A
	check_output "v$v: Host: denied.test gets moat's 403" "host-not-allowed" \
		ip netns exec "$C" $CURL -$v --resolve denied.test:80:$DEN http://denied.test/
	check_output "v$v: SNI denied.test gets a TLS alert" "alert" \
		sh -c "ip netns exec $C $CURL -v -$v --resolve denied.test:443:$DEN https://denied.test/ 2>&1; test \$? != 0"
	expect_status "v$v: port 8443 is dropped (timeout)" 28 \
		ip netns exec "$C" $CURL -$v https://allowed.test:8443/
done
assert_not_contains "$TOPO_NGINX_LOG" '"host":"denied.test"' "denied.test's server saw nothing"
assert_contains "$D/c.audit" '"event":"drop","verdict":"deny","reason":"port"' "drop events logged"
check "8443 drops for v4 and v6 logged" sh -c "grep '\"reason\":\"port\"' $D/c.audit | grep '\"dport\":8443' | grep -q '\"dst\":\"$TOPO_ALLOWED4\"' && grep '\"reason\":\"port\"' $D/c.audit | grep '\"dport\":8443' | grep -q '\"dst\":\"$TOPO_ALLOWED6\"'"
assert_contains "$D/c.audit" '"qname":"denied.test"' "DNS denials logged"

rc=0
moat_stop $EPID || rc=$?
check "SIGTERM: moat enforce exits 0" test $rc = 0
check "table, veth and policy routing gone from H" no_moat_left
check "H is as before" test "$hbefore" = "$(h_state)"
check "C is as before (no eth0, no addresses, no routes)" test "$cbefore" = "$(c_state "$C")"
check "the ready file is removed" test ! -e "$D/c.ready"
check "C has no eth0 left" sh -c "! ip -n $C link show eth0 2>/dev/null"

# --- --pid PID -------------------------------------------------------------------------
C2=$(topo_netns_c c2)
topo_spawn "$C2" "$D/sleep.log" sleep 600
SPID=$TOPO_LAST_PID
topo_wait "sleeper in C2" 5 sh -c "[ \"\$(readlink /proc/$SPID/ns/net)\" = \"\$(ip netns exec $C2 readlink /proc/self/ns/net)\" ]"
enforce_bg "$D/p" --pid "$SPID" --profile "$P"
check "moat enforce --pid writes its ready file" topo_wait "ready file" 20 test -s "$D/p.ready"
GW4=$(ready_val "$D/p.ready" gateway4)
check_output "the sleeper's netns got eth0" "eth0" nsenter --net=/proc/$SPID/ns/net ip -o link
check_output "allowed.test from the sleeper's netns" "name=allowed.test" \
	nsenter --net=/proc/$SPID/ns/net $CURL --resolve "allowed.test:443:$TOPO_ALLOWED4" https://allowed.test/
check_output "DNS through the gateway: denied.test NXDOMAIN" "status: NXDOMAIN" \
	nsenter --net=/proc/$SPID/ns/net dig +time=2 +tries=1 @"$GW4" denied.test A
expect_status "port 9001 dropped" 28 \
	nsenter --net=/proc/$SPID/ns/net curl -s --connect-timeout 1 telnet://$TOPO_ALLOWED4:9001
rc=0
moat_stop $EPID || rc=$?
check "SIGTERM: exit 0" test $rc = 0
check "everything removed" no_moat_left
check "the sleeper's netns has no eth0 left" sh -c "! nsenter --net=/proc/$SPID/ns/net ip link show eth0 2>/dev/null"

# --- bad arguments: 125, a clear message, nothing created --------------------------------
hbefore=$(h_state)
cbefore=$(c_state "$C")
bad() {
	local desc=$1 msg=$2
	shift 2
	check_output "$desc: 125 and '$msg'" "$msg" sh -c 'ip netns exec "$0" "$@" 2>&1; test $? = 125' \
		"$TOPO_H" "$MOAT" enforce "$@"
}
bad "both --netns and --pid" "exactly one" --netns "/run/netns/$C" --pid "$SPID"
bad "neither --netns nor --pid" "exactly one" --profile "$P"
bad "a nonexistent path" "/run/netns/moat-no-such-ns" --netns /run/netns/moat-no-such-ns
bad "a path that is no netns" "not a network namespace" --netns /etc/hostname
bad "a pid that does not exist" "4194304" --pid 4194304
bad "a pid that is no number" "not a process id" --pid abc
bad "H's own namespace" "itself" --netns "/run/netns/$TOPO_H"
echo '{"network":{"outbound":{"allow_port":[0]}}}' >"$D/bad.json"
bad "a bad profile" "allow_port" --netns "/run/netns/$C" --profile "$D/bad.json"
check "no table, link, rule or route was created in H" test "$hbefore" = "$(h_state)"
check "nothing was created in C" test "$cbefore" = "$(c_state "$C")"
check "nothing left" no_moat_left
finish
