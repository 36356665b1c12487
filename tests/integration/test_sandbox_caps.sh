#!/bin/bash
# The embedded sandbox cannot change or see its own confinement, even as root inside:
# no raw sockets, no link/address/route changes, no nftables, no way into H's namespace
# (its nsfs mounts are gone); after trying all that, the rules still hold. Also: --user
# runs as that user, /etc/resolv.conf names the gateway, the host name is moat-<id>.
# Runs in the C/H/U topology with moat in H, IPv4 and IPv6.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/sandbox.sh"
need_root
need_moat
need_cmd nft ip curl dig nsenter
need_python

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
D=$TOPO_DIR/caps
sb_init "$D"
probe_py_write "$D/probe.py"

P=$D/caps.json
cat >"$P" <<'X'
{"network":{"outbound":{"allow_host":["allowed.test"],"allow_port":[443]}}}
X
CURL="curl -s --connect-timeout 1 --max-time 5 --cacert $TOPO_CA"

sb_start s "$P" || { echo "FAIL - sandbox did not start"; cat "$D/s.moat.log"; exit 1; }
ID=$(sb_id s)
GW4=$(in_H ip -4 -o addr show dev "moat-$ID" | awk '{print $4}' | cut -d/ -f1)
GW6=$(in_H ip -6 -o addr show dev "moat-$ID" scope global | awk '{print $4}' | cut -d/ -f1)
check "sandbox $ID is up, gateway $GW4 / $GW6" test -n "$ID" -a -n "$GW4" -a -n "$GW6"
check_output "the workload runs as root inside" "uid=0" sb_run s "id"
check_output "baseline: allowed.test reachable" "name=allowed.test" \
	sb_run s "$CURL https://allowed.test/"
# the table without its counter values
table_rules() { in_H nft list table inet "moat_$ID" | sed 's/packets [0-9]* bytes [0-9]*//'; }
TABLE_BEFORE=$(table_rules)

# capabilities
check_output "no CAP_NET_ADMIN/CAP_NET_RAW in the effective set" "ok" sb_run s \
	"e=\$(awk '/^CapEff/{print \$2}' /proc/self/status); [ \$(( 0x\$e & 0x3000 )) = 0 ] && echo ok"
check_output "nor in the bounding set" "ok" sb_run s \
	"b=\$(awk '/^CapBnd/{print \$2}' /proc/self/status); [ \$(( 0x\$b & 0x3000 )) = 0 ] && echo ok"
check_output "no_new_privs is set" "NoNewPrivs:	1" sb_run s "grep NoNewPrivs /proc/self/status"

# raw sockets
for fam in AF_INET AF_INET6 AF_PACKET; do
	proto=socket.IPPROTO_TCP
	[ $fam = AF_PACKET ] && proto=0x300
	check_output "raw socket $fam: EPERM" "EPERM" sb_run s "$PY -c '
import errno, socket
try:
    socket.socket(socket.$fam, socket.SOCK_RAW, $proto)
    print(\"opened\")
except OSError as e:
    print(errno.errorcode[e.errno])'"
done

# the network configuration
expect_fail "ip link set eth0 down fails" sb_run s "ip link set eth0 down"
expect_fail "ip link set eth0 address change fails" sb_run s "ip link set eth0 address 02:00:00:00:00:01"
expect_fail "ip addr add 198.18.0.99/24 dev eth0 fails" sb_run s "ip addr add 198.18.0.99/24 dev eth0"
expect_fail "ip -6 addr add 2001:2::99/64 dev eth0 fails" sb_run s "ip -6 addr add 2001:2::99/64 dev eth0"
expect_fail "ip route del default fails" sb_run s "ip route del default"
expect_fail "ip -6 route del default fails" sb_run s "ip -6 route del default"
expect_fail "ip route add 198.18.1.0/24 via the gateway fails" sb_run s "ip route add 198.18.1.0/24 via $GW4"
expect_fail "ip link add dummy0 type dummy fails" sb_run s "ip link add dummy0 type dummy"
expect_fail "sysctl -w net.ipv4.ip_forward=1 fails" sb_run s "sysctl -w net.ipv4.ip_forward=1"
expect_fail "nft list ruleset fails" sb_run s "nft list ruleset"
expect_fail "nft add table inet evil fails" sb_run s "nft add table inet evil"
expect_fail "nft list table inet moat_$ID fails (H's table is not visible)" \
	sb_run s "nft list table inet moat_$ID"
check_output "eth0 is still up with its address" "10.231." sb_run s "ip -4 addr show dev eth0 up"
check_output "the default route is still the gateway" "default via $GW4" sb_run s "ip route"
check_output "the v6 default route is still the gateway" "default via $GW6" sb_run s "ip -6 route"

# H's namespace cannot be entered
expect_fail "nsenter into H's netns file fails" sb_run s "nsenter --net=/run/netns/$TOPO_H true"
check_output "no process of H is visible (own pid namespace)" "ok" sb_run s \
	"[ \$(ls -d /proc/[0-9]* | wc -l) -lt 10 ] && echo ok"
check_output "H's interfaces are not visible" "ok" sb_run s \
	"ip -o link | grep -q u0 || ls /sys/class/net | grep -q u0 || echo ok"

# after all that, the rules still hold
check "H's table is unchanged" test "$TABLE_BEFORE" = "$(table_rules)"
check_output "allowed.test still reachable" "name=allowed.test" \
	sb_run s "$CURL https://allowed.test/"
for v in 4 6; do
	if [ $v = 4 ]; then A=$TOPO_ALLOWED4 DNS=$TOPO_DNS4 DEN=$TOPO_DENIED4
	else A=$TOPO_ALLOWED6 DNS=$TOPO_DNS6 DEN=[$TOPO_DENIED6]; fi
	expect_status "v$v: TCP $A:8443 still dropped" 3 sb_run s "$PY $D/probe.py tcp $A 8443"
	check_output "v$v: denied.test still NXDOMAIN, even asked of U's resolver $DNS" \
		"status: NXDOMAIN" sb_run s "dig +time=2 +tries=1 @$DNS denied.test A"
	expect_fail "v$v: denied.test at its address still refused" sb_run s \
		"$CURL -f -$v --resolve denied.test:443:$DEN https://denied.test/"
done
assert_not_contains "$TOPO_DNS_LOG" "denied.test" "U's resolver never saw denied.test"
assert_not_contains "$TOPO_NGINX_LOG" '"host":"denied.test"' "denied.test's server never saw a request"

# identity of the sandbox
check_output "resolv.conf names the gateway $GW4" "nameserver $GW4" sb_run s "cat /etc/resolv.conf"
check_output "resolv.conf names the gateway $GW6" "nameserver $GW6" sb_run s "cat /etc/resolv.conf"
check_output "hostname is moat-$ID" "moat-$ID" sb_run s "hostname"
check_output "uname -n is moat-$ID" "moat-$ID" sb_run s "uname -n"
expect_status "moat exits 0" 0 sb_stop s 0

check_output "--user 65534 runs as nobody" "uid=65534" \
	in_H "$MOAT" run --profile "$P" --user 65534 -- id
check_output "--user 65534:65534 sets the group" "gid=65534" \
	in_H "$MOAT" run --profile "$P" --user 65534:65534 -- id
# the test CA where nobody can read it ($TOPO_DIR is private)
CA_PUB=$(mktemp /tmp/moat-caps-ca.XXXXXX)
topo_defer "rm -f $CA_PUB"
cp "$TOPO_CA" "$CA_PUB" && chmod 644 "$CA_PUB"
check_output "--user nobody reaches allowed.test as nobody" "name=allowed.test" \
	in_H "$MOAT" run --profile "$P" --user nobody -- \
	curl -s --connect-timeout 1 --max-time 5 --cacert "$CA_PUB" https://allowed.test/
check_output "--user nobody: hostname still moat-*" "moat-" \
	in_H "$MOAT" run --profile "$P" --user nobody -- hostname
expect_status "--user no-such-user exits 125" 125 \
	in_H "$MOAT" run --profile "$P" --user no-such-user-moat -- true
check "nothing left" no_moat_left
finish
