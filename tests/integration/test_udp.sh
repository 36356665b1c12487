#!/bin/bash
# UDP by learned addresses, in the real kernel path: moat run in H with a profile that allows
# UDP (allow_transport tcp+udp, port 9000, allowed.test and ttl.test), the UDP echo in U.
#   - before any lookup, UDP to allowed.test's address is dropped (a `drop` udp event);
#   - after the sandbox resolved allowed.test, UDP to its address on 9000 gets the echo back,
#     v4 and v6; the element is in learned4/learned6 with the answer's TTL (300 s), and U sees
#     the datagrams from H's address (masqueraded by the `post` chain);
#   - UDP to an address never resolved (other.test's), to a denied name's and to a learned
#     address on another port is dropped, with `drop` events;
#   - ttl.test (DNS TTL 2 s): its element gets moat's 5 s floor, UDP works right after the
#     answer and stops when the element expires (measured: between 4 and 9 s); a lookup
#     again restarts the element's clock; after expiry a new lookup opens it again;
#   - a profile allowing UDP is refused at start-up (exit 125, nothing left) in a namespace
#     that does not forward, with a message naming the sysctl; TCP-only profiles still run.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/sandbox.sh"
need_root
need_moat
need_cmd ip dig nft python3 dnsmasq nginx

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
D=$TOPO_DIR/udp
sb_init "$D"

# probe.py HOST PORT: 0 = the echo came back (prints its source), 3 = nothing within 1 s.
cat >"$D/probe.py" <<'EOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
s.sendto(b"moat-udp-probe", (host, port))
try:
    d, a = s.recvfrom(100)
    print("echo %r from %s" % (d, a[0]))
    sys.exit(0 if d == b"moat-udp-probe" else 2)
except socket.timeout:
    print("timeout")
    sys.exit(3)
EOF
PROBE="python3 $D/probe.py"

# U counts the echo's datagrams by source: H's address (masqueraded) or the sandbox's own
in_U nft -f - <<'EOF'
table inet moattest_udp {
	counter from_h4 {}
	counter from_h6 {}
	counter from_sandbox {}
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr 198.18.0.1 udp dport 9000 counter name "from_h4"
		ip6 saddr 2001:2::1 udp dport 9000 counter name "from_h6"
		ip saddr 10.0.0.0/8 udp dport 9000 counter name "from_sandbox"
		ip6 saddr fd00::/8 udp dport 9000 counter name "from_sandbox"
	}
}
EOF
ucount() { in_U nft list counter inet moattest_udp "$1" | grep -o 'packets [0-9]*' | cut -d' ' -f2; }

P=$D/udp.json
cat >"$P" <<'EOF'
{"network":{"outbound":{"allow_host":["allowed.test","ttl.test"],"allow_port":[9000],"allow_transport":["tcp","udp"]}}}
EOF
check "control: H reaches the UDP echo on allowed.test's address" in_H $PROBE "$TOPO_ALLOWED4" 9000
sb_start u "$P" || { echo "FAIL - moat run did not come up"; sed 's/^/    | /' "$D/u.moat.log"; finish; }
A=$D/u.audit
ID=$(sb_id u)
set4() { in_H nft list set inet "moat_$ID" learned4; }
set6() { in_H nft list set inet "moat_$ID" learned6; }

# --- before any lookup -----------------------------------------------------------------------
expect_status "before the lookup: UDP to $TOPO_ALLOWED4:9000 gets nothing" 3 \
	sb_run u "$PROBE $TOPO_ALLOWED4 9000"
check "audit: drop udp to $TOPO_ALLOWED4:9000" \
	audit_has "$A" '"event":"drop"' '"reason":"udp"' "\"dst\":\"$TOPO_ALLOWED4\"" '"dport":9000'
expect_status "before the lookup: UDP to [$TOPO_ALLOWED6]:9000 gets nothing" 3 \
	sb_run u "$PROBE $TOPO_ALLOWED6 9000"

# --- after the lookup ------------------------------------------------------------------------
check_output "the sandbox resolves allowed.test (A)" "$TOPO_ALLOWED4" sb_run u "dig +short allowed.test A"
check_output "the sandbox resolves allowed.test (AAAA)" "$TOPO_ALLOWED6" sb_run u "dig +short allowed.test AAAA"
check_output "learned4 holds $TOPO_ALLOWED4 with the DNS TTL (300 s)" "$TOPO_ALLOWED4 timeout 5m" set4
check_output "learned6 holds $TOPO_ALLOWED6 with the DNS TTL (300 s)" "$TOPO_ALLOWED6 timeout 5m" set6
H4_0=$(ucount from_h4) H6_0=$(ucount from_h6) SB_0=$(ucount from_sandbox)
check_output "UDP to $TOPO_ALLOWED4:9000: the echo comes back" "from $TOPO_ALLOWED4" \
	sb_run u "$PROBE $TOPO_ALLOWED4 9000"
check_output "UDP to [$TOPO_ALLOWED6]:9000: the echo comes back" "from $TOPO_ALLOWED6" \
	sb_run u "$PROBE $TOPO_ALLOWED6 9000"
check "U saw the v4 datagram from H's address (masqueraded)" test "$(ucount from_h4)" -gt "$H4_0"
check "U saw the v6 datagram from H's address (masqueraded)" test "$(ucount from_h6)" -gt "$H6_0"
check "U never saw the sandbox's own address" test "$(ucount from_sandbox)" = "$SB_0"

# --- never resolved, denied, other port --------------------------------------------------------
expect_status "UDP to other.test's $TOPO_OTHER4 (never resolved): nothing" 3 \
	sb_run u "$PROBE $TOPO_OTHER4 9000"
check "audit: drop udp to $TOPO_OTHER4" \
	audit_has "$A" '"event":"drop"' '"reason":"udp"' "\"dst\":\"$TOPO_OTHER4\"" '"dport":9000' '"proto":"udp"'
expect_status "UDP to other.test's $TOPO_OTHER6 (never resolved): nothing" 3 \
	sb_run u "$PROBE $TOPO_OTHER6 9000"
check "audit: drop udp to $TOPO_OTHER6" \
	audit_has "$A" '"event":"drop"' '"reason":"udp"' "\"dst\":\"$TOPO_OTHER6\"" '"dport":9000'
check_output "denied.test does not resolve" "status: NXDOMAIN" sb_run u "dig denied.test"
expect_status "UDP to denied.test's $TOPO_DENIED4: nothing" 3 sb_run u "$PROBE $TOPO_DENIED4 9000"
expect_status "UDP to the learned $TOPO_ALLOWED4 on port 9001 (not allowed): nothing" 3 \
	sb_run u "$PROBE $TOPO_ALLOWED4 9001"
check "audit: drop udp to $TOPO_ALLOWED4:9001" \
	audit_has "$A" '"event":"drop"' '"reason":"udp"' "\"dst\":\"$TOPO_ALLOWED4\"" '"dport":9001'
check "learned4 holds nothing but allowed.test's address" \
	sh -c "ip netns exec $TOPO_H nft list set inet moat_$ID learned4 | grep elements | grep -v -q -E '$TOPO_OTHER4|$TOPO_DENIED4'"

# --- expiry with the DNS TTL -------------------------------------------------------------------
check_output "ttl.test resolves (TTL $TOPO_SHORT_TTL s)" "$TOPO_TTL4" sb_run u "dig +short ttl.test A"
T0=$(date +%s.%N)
check_output "learned4: ttl.test's element has the 5 s floor, not 30 s" "$TOPO_TTL4 timeout 5s" set4
check_output "UDP to $TOPO_TTL4:9000 right after the answer: echo" "from $TOPO_TTL4" \
	sb_run u "$PROBE $TOPO_TTL4 9000"
# one probe every 0.3 s until the echo stops
expire_wait() {
	local i
	for ((i = 0; i < 60; i++)); do
		sb_run u "$PROBE $TOPO_TTL4 9000 0.3" >/dev/null || return 0
	done
	return 1
}
check "the echo stops when the element expires" expire_wait
T1=$(date +%s.%N)
ELAPSED=$(python3 -c "print('%.1f' % ($T1 - $T0))")
echo "# ttl.test: UDP stopped ${ELAPSED}s after the answer"
check "... between 4 and 9 s after the answer (${ELAPSED}s)" \
	python3 -c "import sys; sys.exit(0 if 4.0 <= $ELAPSED <= 9.0 else 1)"
check "... and the element is gone from learned4" sh -c "! ip netns exec $TOPO_H nft list set inet moat_$ID learned4 | grep -q '$TOPO_TTL4'"
check "audit: drop udp to the expired $TOPO_TTL4" \
	audit_has "$A" '"event":"drop"' '"reason":"udp"' "\"dst\":\"$TOPO_TTL4\""
check_output "a new lookup of ttl.test opens it again" "from $TOPO_TTL4" \
	sb_run u "dig +short ttl.test A >/dev/null && $PROBE $TOPO_TTL4 9000"
# a lookup again restarts the element's clock: 3 s later it has ~5 s left, not ~2 s
sleep 3
sb_run u "dig +short ttl.test A" >/dev/null
LEFT=$(set4 | grep -o "$TOPO_TTL4 timeout 5s expires [0-9ms]*" | sed 's/.*expires //')
echo "# ttl.test: after a lookup again, the element expires in $LEFT"
check "a lookup again restarts the element's expiry ($LEFT left)" \
	sh -c "echo '$LEFT' | grep -q -E '^(4s|5s)'"

expect_status "moat's exit status is the workload's (5)" 5 sb_stop u 5

# --- forwarding off in the enforcement namespace -----------------------------------------------
H2=$(topo_netns_c h2)
ip netns exec "$H2" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
check_output "no forwarding: moat run refuses the UDP profile, naming the sysctl" \
	"allow_transport udp needs IP forwarding in the enforcement namespace: sysctl net.ipv4.ip_forward=1" \
	sh -c "ip netns exec $H2 $MOAT run --profile $P -- true 2>&1; test \$? = 125"
ip netns exec "$H2" sysctl -qw net.ipv4.ip_forward=1
check_output "v4 forwarding only: refused, naming the IPv6 sysctl" \
	"sysctl net.ipv6.conf.all.forwarding=1" \
	sh -c "ip netns exec $H2 $MOAT run --profile $P -- true 2>&1; test \$? = 125"
check "the workload never ran" sh -c "! ip netns exec $H2 $MOAT run --profile $P -- touch $D/ran 2>/dev/null; test ! -e $D/ran"
check "nothing left in that namespace (no table, no veth)" \
	sh -c "! ip netns exec $H2 nft list tables | grep -q moat_ && ! ip -n $H2 -o link | grep -q moat-"
ip netns exec "$H2" sysctl -qw net.ipv4.ip_forward=0
TP=$D/tcp-only.json
echo '{"network":{"outbound":{"allow_host":["allowed.test"],"allow_port":[443]}}}' >"$TP"
expect_status "no forwarding: a TCP-only profile still runs (exit 3 from the workload)" 3 \
	ip netns exec "$H2" "$MOAT" run --profile "$TP" -- sh -c 'exit 3'
ip netns exec "$H2" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
expect_status "forwarding on: the UDP profile runs there (exit 4 from the workload)" 4 \
	ip netns exec "$H2" "$MOAT" run --profile "$P" -- sh -c 'exit 4'

check "nothing of moat left in H" sh -c "! ip netns exec $TOPO_H nft list tables | grep -q moat_"
finish
