#!/bin/bash
# Forensics end to end, moat in H of the C/H/U topology: the capture (--pcap) of moat run and
# moat enforce, and `moat audit` joining it with the audit log.
#
#  - one run allowed to reach allowed.test:443 makes an allowed TLS connection, a denied one
#    (SNI denied.test to its real address), a denied DNS query and a dropped UDP datagram as
#    its very last action: tshark reads both SNIs from the capture, `moat audit --json` shows
#    the four flows with packets from the capture and the verdicts and reasons of the log, and
#    the first (the lookup of allowed.test) and the last (the UDP datagram) packets are there;
#  - SIGTERM to moat run, and to moat enforce, in the middle of a rate-limited 256 MiB
#    download leaves a complete file (tshark and capinfos read it without a "cut short"), with
#    the client's FIN/RST at the end, and a `capture` audit event without drops;
#  - --pcap-rotate 1M,3: FILE.N files of at most 1 MiB, at most 3 kept, each readable, and
#    `moat audit --pcap FILE` reads the set;
#  - --pcap-filter 'tcp port 443' keeps only those packets; a bad filter is exit 125 with
#    libpcap's reason, before anything is made (no file, table, veth or namespace);
#  - --pcap with --engine podman (skipped without podman).
set -u
. "$SRC/tests/lib/common.sh"
need_root
need_moat
need_cmd tshark capinfos curl dig nft ip python3
. "$SRC/tests/lib/topo.sh"

export TOPO_BIG_MB=256
topo_up || { echo "FAIL - topology did not come up"; exit 1; }
W=$TOPO_DIR/forensics
mkdir -p "$W"
cat >"$W/web.json" <<EOF
{ "network": { "outbound": { "allow_host": ["allowed.test"], "allow_port": [443] } } }
EOF

# Everything a moat in H may leave behind.
leftovers() {
	in_H nft list tables 2>/dev/null | grep -F 'moat_'
	in_H ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}' |
		grep '^moat-'
}
nothing_left() { [ -z "$(leftovers)" ]; }

# tshark FILE reads the whole file: exit 0 and no "cut short" (a killed or undrained writer)
pcap_complete() {
	local out rc=0
	out=$(tshark -r "$1" 2>&1 >/dev/null) || rc=$?
	echo "$out"
	[ "$rc" = 0 ] || return 1
	case $out in *"cut short"*) return 1 ;; esac
	capinfos "$1" >/dev/null || return 1
}
# packets in FILE matching a display filter
pcap_count() { tshark -r "$1" -Y "$2" 2>/dev/null | wc -l; }
pcap_has() { [ "$(pcap_count "$1" "$2")" -gt 0 ]; }
# the capture event of a log reports no packet lost
capture_no_drops() {
	python3 - "$1" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"event":"capture"' in l]
print(ev)
sys.exit(0 if len(ev) == 1 and ev[0]["ps_drop"] == 0 and ev[0]["ps_ifdrop"] == 0
         and ev[0]["packets"] > 0 else 1)
EOF
}

# --- one run, four flows -----------------------------------------------------------------
# The workload's last action is the UDP datagram: it must be in the capture.
cat >"$W/four.sh" <<EOF
curl -sf --max-time 5 --cacert $TOPO_CA https://allowed.test/ >/dev/null || exit 11
curl -s --max-time 5 --cacert $TOPO_CA --resolve denied.test:443:$TOPO_DENIED4 \
	https://denied.test/ && exit 12
dig +time=2 +tries=1 denied.test | grep -q 'status: NXDOMAIN' || exit 13
echo moat-forensics >/dev/udp/$TOPO_ALLOWED4/$TOPO_UDP_ECHO_PORT || exit 14
exit 0
EOF
P=$W/four.pcap L=$W/four.log
check "run: the workload's four steps behave (allowed, denied SNI, NXDOMAIN, UDP sent)" \
	in_H "$MOAT" run --profile "$W/web.json" --audit-log "$L" --pcap "$P" -- bash "$W/four.sh"
check "run: the capture is complete" pcap_complete "$P"
check_output "run: the capture file is private (0600)" 600 stat -c %a "$P"
tshark -r "$P" -Y tls.handshake.extensions_server_name -T fields \
	-e tls.handshake.extensions_server_name >"$W/sni.txt" 2>/dev/null
check "tshark: SNI allowed.test in the capture" grep -qx allowed.test "$W/sni.txt"
check "tshark: SNI denied.test in the capture" grep -qx denied.test "$W/sni.txt"
check "run: the workload's first packet (its lookup of allowed.test) is in the capture" sh -c \
	"tshark -r '$P' -Y dns -T fields -e dns.qry.name 2>/dev/null | head -n 1 |
	grep -qx allowed.test"
check "run: the workload's last packet (UDP to $TOPO_UDP_ECHO_PORT) is in the capture" \
	pcap_has "$P" "udp.dstport == $TOPO_UDP_ECHO_PORT && udp.payload contains \"moat-forensics\""
check "run: capture event in the audit log, no drops" capture_no_drops "$L"

check "moat audit --pcap --log --json exits 0" \
	sh -c '"$1" audit --pcap "$2" --log "$3" --json >"$4"' - "$MOAT" "$P" "$L" "$W/four.json"
# each expected flow: a row with packets both from the capture and from the log
audit_flow() {
	python3 - "$W/four.json" "$@" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
want = dict(a.split("=", 1) for a in sys.argv[2:])
for r in rows:
    if all(str(r.get(k)) == v for k, v in want.items()):
        print(r)
        sys.exit(0 if r["packets_up"] > 0 and r.get("audit_events", 0) > 0 else 2)
print("no row with", want)
for r in rows:
    print(r)
sys.exit(1)
EOF
}
check "audit: TLS allowed.test: allow / allow-host" audit_flow proto=tcp dport=443 \
	sni=allowed.test verdict=allow reason=allow-host
check "audit: TLS denied.test: deny / host-not-allowed" audit_flow proto=tcp dport=443 \
	sni=denied.test verdict=deny reason=host-not-allowed "dst=$TOPO_DENIED4"
check "audit: DNS denied.test: deny / host-not-allowed, NXDOMAIN" audit_flow proto=udp \
	dport=53 qname=denied.test verdict=deny reason=host-not-allowed rcode=NXDOMAIN
check "audit: UDP to $TOPO_UDP_ECHO_PORT: dropped (L4) / udp" audit_flow proto=udp \
	"dport=$TOPO_UDP_ECHO_PORT" "dst=$TOPO_ALLOWED4" "verdict=dropped (L4)" reason=udp
check "run: nothing left" nothing_left

# --- SIGTERM in the middle of a large transfer ----------------------------------------------
# FILE grows past 2 MB: the transfer is under way
pcap_grows() { [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -gt 2000000 ]; }
# the client's side ended its connection (FIN or RST from the sandbox to port 443)
client_ended() {
	pcap_has "$1" "tcp.dstport == 443 && (tcp.flags.fin == 1 || tcp.flags.reset == 1)"
}

P=$W/term.pcap L=$W/term.log
ip netns exec "$TOPO_H" "$MOAT" run --profile "$W/web.json" --audit-log "$L" --pcap "$P" -- \
	curl -s --limit-rate 4M --max-time 120 --cacert "$TOPO_CA" -o /dev/null \
	https://allowed.test/big </dev/null >"$W/term.out" 2>&1 &
mpid=$!
check "SIGTERM run: the download is under way" topo_wait "capture growing" 30 pcap_grows "$P"
kill -TERM $mpid
rc=0
wait $mpid || rc=$?
check "SIGTERM run: moat exits with the workload's status (143)" test "$rc" = 143
check "SIGTERM run: the capture is complete (tshark, capinfos)" pcap_complete "$P"
check "SIGTERM run: the client's FIN/RST is in the capture" client_ended "$P"
check "SIGTERM run: capture event, no drops" capture_no_drops "$L"
check "SIGTERM run: nothing left" nothing_left

C=$(topo_netns_c fc)
P=$W/enf.pcap L=$W/enf.log
ip netns exec "$TOPO_H" "$MOAT" enforce --netns "/run/netns/$C" --profile "$W/web.json" \
	--audit-log "$L" --pcap "$P" --ready-file "$W/enf.ready" </dev/null >"$W/enf.out" 2>&1 &
mpid=$!
check "SIGTERM enforce: ready" topo_wait "ready file" 20 test -s "$W/enf.ready"
ip netns exec "$C" curl -s --limit-rate 4M --max-time 120 --cacert "$TOPO_CA" \
	--resolve "allowed.test:443:$TOPO_ALLOWED4" -o /dev/null https://allowed.test/big \
	</dev/null >/dev/null 2>&1 &
cpid=$!
check "SIGTERM enforce: the download is under way" topo_wait "capture growing" 30 pcap_grows "$P"
kill -TERM $mpid
rc=0
wait $mpid || rc=$?
check "SIGTERM enforce: moat exits 0" test "$rc" = 0
kill $cpid 2>/dev/null
wait $cpid 2>/dev/null
check "SIGTERM enforce: the capture is complete (tshark, capinfos)" pcap_complete "$P"
check "SIGTERM enforce: capture event, no drops" capture_no_drops "$L"
check "SIGTERM enforce: nothing left" nothing_left

# --- rotation ----------------------------------------------------------------------------
P=$W/rot.pcap
check "rotate: a 6 MB download with --pcap-rotate 1M,3" \
	in_H "$MOAT" run --profile "$W/web.json" --pcap "$P" --pcap-rotate 1M,3 -- \
	curl -sf -r 0-6000000 --cacert "$TOPO_CA" -o /dev/null https://allowed.test/big
rot_files() { ls "$W" | grep -E '^rot\.pcap(\.[0-9]+)?$'; }
rot_files >"$W/rot.list"
check "rotate: at most 3 files kept ($(tr '\n' ' ' <"$W/rot.list"))" \
	test "$(wc -l <"$W/rot.list")" -ge 1 -a "$(wc -l <"$W/rot.list")" -le 3
check "rotate: it rotated past FILE.3 (the oldest were removed)" \
	sh -c "grep -E '^rot\\.pcap\\.[0-9]+$' '$W/rot.list' | awk -F. '\$NF >= 3 {f=1} END {exit !f}'"
while read -r f; do
	check "rotate: $f is readable" pcap_complete "$W/$f"
	check "rotate: $f is at most 1 MiB" test "$(stat -c %s "$W/$f")" -le 1048576
done <"$W/rot.list"
check "rotate: moat audit --pcap FILE reads the set" "$MOAT" audit --pcap "$P"

# --- filter ------------------------------------------------------------------------------
P=$W/filt.pcap
check "filter: a run with --pcap-filter 'tcp port 443'" \
	in_H "$MOAT" run --profile "$W/web.json" --pcap "$P" --pcap-filter 'tcp port 443' -- \
	bash "$W/four.sh"
check "filter: packets on port 443 captured" pcap_has "$P" "tcp.port == 443"
check "filter: nothing else captured (DNS, UDP, ND)" \
	test "$(pcap_count "$P" "!(tcp.port == 443)")" = 0

P=$W/bad.pcap
expect_status "bad filter: moat run exits 125" 125 \
	in_H "$MOAT" run --profile "$W/web.json" --pcap "$P" --pcap-filter 'tcp port' -- true
check_output "bad filter: moat run names the filter and libpcap's reason" \
	"capture filter 'tcp port': " sh -c \
	"ip netns exec $TOPO_H $MOAT run --pcap $P --pcap-filter 'tcp port' -- true 2>&1; true"
expect_status "bad filter: moat enforce exits 125" 125 \
	in_H "$MOAT" enforce --netns "/run/netns/$C" --pcap "$P" --pcap-filter 'port 99999'
check "bad filter: no capture file" test ! -e "$P"
check "bad filter: nothing left" nothing_left
check "bad filter: moat enforce left the namespace unwired (only lo)" \
	sh -c "[ \"\$(ip -n $C -o link show | grep -vc ': lo:')\" = 0 ]"
expect_status "--pcap-filter without --pcap exits 125" 125 \
	in_H "$MOAT" run --pcap-filter 'tcp' -- true

# --- --engine podman ---------------------------------------------------------------------
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
	echo "SKIP: --pcap with --engine podman (needs podman and runc)"
elif [ ! -x "$BUILD/moat-pause" ]; then
	check "podman: $BUILD/moat-pause is built" false
else
	. "$SRC/tests/lib/podman.sh"
	. "$SRC/tests/lib/image.sh"
	if podman_up "$TOPO_DIR/podman" && image_build "$HELPERS" >/dev/null; then
		cp "$TOPO_CA" "$W/ca.pem"
		P=$W/engine.pcap L=$W/engine.log
		check "podman: tlsclient reaches allowed.test with --pcap" \
			in_H "$MOAT" run --engine podman --engine-socket "$PODMAN_SOCK" \
			--image "$MOAT_TEST_IMAGE" --profile "$W/web.json" --audit-log "$L" \
			--pcap "$P" -v "$W/ca.pem:/ca.pem:ro" -- \
			tlsclient --cafile /ca.pem allowed.test 443
		check "podman: the capture is complete" pcap_complete "$P"
		check "podman: SNI allowed.test in the capture" pcap_has "$P" \
			'tls.handshake.extensions_server_name == "allowed.test"'
		check "podman: the connection's end (FIN) is in the capture" pcap_has "$P" \
			"tcp.port == 443 && tcp.flags.fin == 1"
		check "podman: capture event, no drops" capture_no_drops "$L"
		check "podman: nothing left" nothing_left
		check "podman: no container left" \
			test -z "$(podman ps -a --format '{{.Names}}')"
	else
		check "podman: the service and the test image come up" false
	fi
fi

finish
