#!/bin/bash
# The test topology itself: H reaches U's servers by name over TLS and plain HTTP, on
# IPv4 and IPv6; DNS answers (and truncates big answers over UDP); echo servers answer;
# the servers' logs record what happened; everything is gone after teardown.
#
# FAIL_ON_PURPOSE=1 makes a check fail and the test exit at once, FAIL_ON_PURPOSE=signal
# makes the test kill itself with SIGTERM: either way the EXIT/TERM trap of topo_up must
# still tear the namespaces and servers down (check with `ip netns list` afterwards).
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
need_root
need_cmd ip nginx dnsmasq openssl curl dig socat

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
C="--max-time 5 -s --cacert $TOPO_CA"

check_output "TLS by name over IPv4 reaches allowed.test" "name=allowed.test host=allowed.test" \
	in_H curl $C -4 https://allowed.test/
check_output "TLS by name over IPv6 reaches allowed.test" "addr=$TOPO_ALLOWED6" \
	in_H curl $C -6 https://allowed.test/
check_output "TLS on 8443 picks the certificate by SNI" "name=api.example.test host=api.example.test" \
	in_H curl $C -4 https://api.example.test:8443/x?y=1
check_output "plain HTTP over IPv4 names the server and uri" \
	"name=www.example.test host=www.example.test uri=/hello scheme=http port=80" \
	in_H curl $C -4 http://www.example.test/hello
check_output "plain HTTP over IPv6 on 8080" "name=cdn.example.test host=cdn.example.test" \
	in_H curl $C -6 http://cdn.example.test:8080/
check_output "an unknown Host gets the default server" "name=default host=nobody.test" \
	in_H curl $C -H "Host: nobody.test" "http://$TOPO_OTHER4/"
expect_fail "a name without a certificate fails TLS verification" \
	in_H curl $C -f --resolve "nocert.test:443:$TOPO_ALLOWED4" https://nocert.test/
expect_fail "a name outside the zone does not resolve" in_H curl $C -f http://nope.invalid/
check_output "/big serves $TOPO_BIG_MB MiB intact" "$TOPO_BIG_SHA256" \
	sh -c "ip netns exec $TOPO_H curl $C -4 https://allowed.test/big | sha256sum"
check_output "/upload accepts a large PUT" "upload name=denied.test bytes=4194304" \
	sh -c "head -c 4194304 /dev/zero | ip netns exec $TOPO_H curl $C -T - https://denied.test/upload"

check_output "dig allowed.test A" "$TOPO_ALLOWED4" in_H dig +short allowed.test A
check_output "dig allowed.test AAAA" "$TOPO_ALLOWED6" in_H dig +short allowed.test AAAA
check_output "dig over IPv6 to the resolver" "$TOPO_API4" \
	in_H dig +short @"$TOPO_DNS6" api.example.test A
check_output "unknown names in the zone are NXDOMAIN" "status: NXDOMAIN" \
	in_H dig +time=2 +tries=1 nothere.test A
check_output "big.test over UDP is truncated (TC)" "flags: qr aa tc" \
	in_H dig +ignore +time=2 +tries=1 big.test A
check_output "big.test over TCP has all 100 answers" "ANSWER: 100" \
	in_H dig +tcp +time=2 +tries=1 big.test A
check_output "ttl.test has the short TTL" "ttl.test.		$TOPO_SHORT_TTL	IN	A" \
	in_H dig +noall +answer +time=2 +tries=1 ttl.test A

check_output "UDP echo over IPv4" "ping-udp4" sh -c "echo ping-udp4 | ip netns exec $TOPO_H \
	socat -t 0.5 - UDP4:$TOPO_ALLOWED4:$TOPO_UDP_ECHO_PORT"
check_output "UDP echo over IPv6" "ping-udp6" sh -c "echo ping-udp6 | ip netns exec $TOPO_H \
	socat -t 0.5 - UDP6:[$TOPO_ALLOWED6]:$TOPO_UDP_ECHO_PORT"
check_output "TCP echo over IPv4" "ping-tcp4" sh -c "echo ping-tcp4 | ip netns exec $TOPO_H \
	socat -t 2 - TCP4:$TOPO_ALLOWED4:$TOPO_TCP_ECHO_PORT"
check_output "TCP echo over IPv6" "ping-tcp6" sh -c "echo ping-tcp6 | ip netns exec $TOPO_H \
	socat -t 2 - TCP6:[$TOPO_ALLOWED6]:$TOPO_TCP_ECHO_PORT"
check_output "TCP echo returns 1 MiB intact" "$(head -c 1048576 /dev/zero | sha256sum | cut -c1-64)" \
	sh -c "head -c 1048576 /dev/zero | ip netns exec $TOPO_H \
	socat -t 2 - TCP4:$TOPO_ALLOWED4:$TOPO_TCP_ECHO_PORT | sha256sum"

assert_contains "$TOPO_NGINX_LOG" '"host":"allowed.test","sni":"allowed.test"' \
	"nginx log records host and SNI"
assert_contains "$TOPO_NGINX_LOG" "\"server_addr\":\"$TOPO_ALLOWED6\"" \
	"nginx log records the IPv6 server address"
assert_contains "$TOPO_NGINX_LOG" '"request":"GET /hello HTTP/1.1"' "nginx log records the request"
assert_contains "$TOPO_DNS_LOG" "query[AAAA] allowed.test" "dnsmasq log records queries"
assert_contains "$TOPO_DNS_LOG" "query[A] big.test" "dnsmasq log records big.test"

check "H forwards (moat must hold with forwarding on)" \
	test "$(in_H cat /proc/sys/net/ipv4/ip_forward)" = 1
check "the root namespace has no topology addresses" \
	sh -c "! ip addr show | grep -q 198.18.0.1/"
C_NS=$(topo_netns_c c)
check "topo_netns_c makes an empty namespace" sh -c "ip -n $C_NS -o link show | grep -qv ' lo:' && exit 1; exit 0"

case "${FAIL_ON_PURPOSE:-0}" in
1)
	check "fails on purpose (FAIL_ON_PURPOSE=1)" false
	finish
	;;
signal)
	echo "killing myself with SIGTERM (FAIL_ON_PURPOSE=signal)"
	kill -TERM $$
	;;
esac

# teardown, then prove nothing is left
pids=$(awk '{print $1}' "$TOPO_DIR/pids" | tr '\n' ' ')
dir=$TOPO_DIR
topo_down
check "teardown deletes the namespaces" sh -c "! ip netns list | grep -q '^$TOPO_PREFIX'"
check "teardown removes /etc/netns entries" test ! -e "/etc/netns/$TOPO_H"
check "teardown removes the temp dir" test ! -e "$dir"
check "teardown stops the servers" sh -c "for p in $pids; do [ -e /proc/\$p ] && exit 1; done; exit 0"
finish
