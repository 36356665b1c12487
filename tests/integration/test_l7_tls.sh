#!/bin/bash
# The L7 proxy judges TLS by the ClientHello, in the real kernel path: real clients in a
# confined namespace (moat enforce, and moat run for the embedded sandbox), moat in H,
# nginx in U.  With a profile allowing allowed.test and .example.test on 443 and 80:
#   - an allowed name works (v4, v6); a denied SNI gets a TLS access_denied alert and a
#     deny event (host-not-allowed);
#   - an allowed SNI sent to another host's address is denied (sni-ip-mismatch) and that
#     host never sees a request (anti-fronting);
#   - anti-fronting when moat's own lookup fails (H's resolver is dead, DNS for the sandbox
#     goes to --dns-upstream): only the answers relayed to the sandbox vouch for an
#     address, so --resolve to the right IP before any lookup is DENIED (moat cannot prove
#     where the name points, and it never guesses), and allowed after the sandbox looked
#     the name up itself;
#   - no SNI (openssl s_client -noservername) is denied (no-sni);
#   - a ClientHello in two TCP segments 200 ms apart, one cut inside the record header,
#     a 4 KiB hello and a 20 KiB hello spanning two TLS records are all allowed;
#   - Encrypted ClientHello (extension 0xfe0d) is denied (ech);
#   - a client that sends nothing is reset by moat at the first-bytes deadline (10 s);
#   - link-local, RFC 1918, ULA and the host's own addresses are refused even under the
#     allow-all `network` profile, and no packet reaches U although U serves them.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/moat.sh"
need_root
need_cmd ip nginx dnsmasq openssl curl dig socat unshare
need_moat
HELLO=$HELPERS/hello
[ -x "$HELLO" ] || { echo "FAIL - no hello helper at $HELLO"; exit 1; }

topo_up || { echo "FAIL - topology did not come up"; exit 1; }

PROFILE=$TOPO_DIR/l7.json
cat >"$PROFILE" <<'EOF'
{"network":{"outbound":{"allow_host":["allowed.test",".example.test"],"allow_port":[443,80]}}}
EOF

# lines of the nginx log for a server address
nginx_hits() { grep -cF "\"server_addr\":\"$1\"" "$TOPO_NGINX_LOG" || true; }

CURL="curl -sS --max-time 5 --cacert $TOPO_CA"

enforce_up c "$PROFILE" || { echo "FAIL - moat enforce did not come up"; exit 1; }
A=$C_AUDIT

# The silent clients run in the background while the other checks go on.
T0=$(date +%s%N)
in_C timeout 20 socat -u "TCP4:$TOPO_ALLOWED4:443" - >"$TOPO_DIR/silent4.out" 2>"$TOPO_DIR/silent4.err" &
SILENT4=$!
in_C timeout 20 socat -u "TCP6:[$TOPO_ALLOWED6]:443" - >"$TOPO_DIR/silent6.out" 2>"$TOPO_DIR/silent6.err" &
SILENT6=$!

# --- allowed and denied names ---
for v in 4 6; do
	check_output "v$v: curl https://allowed.test/ works" \
		"name=allowed.test host=allowed.test uri=/ scheme=https" in_C $CURL -$v https://allowed.test/
done
check_audit "audit: allow-host for allowed.test over v4" "$A" '"event":"tcp"' '"verdict":"allow"' \
	'"reason":"allow-host"' "\"dst\":\"$TOPO_ALLOWED4\"" '"sni":"allowed.test"'
check_audit "audit: allow-host for allowed.test over v6" "$A" '"event":"tcp"' '"verdict":"allow"' \
	"\"dst\":\"$TOPO_ALLOWED6\"" '"sni":"allowed.test"'

check_output "v4: denied.test gets the TLS access_denied alert" "alert access denied" \
	sh -c "ip netns exec $C_NS $CURL --resolve denied.test:443:$TOPO_DENIED4 https://denied.test/; true"
check_output "v6: denied.test gets the TLS access_denied alert" "alert access denied" \
	sh -c "ip netns exec $C_NS $CURL --resolve 'denied.test:443:[$TOPO_DENIED6]' https://denied.test/; true"
expect_fail "v4: curl to denied.test exits non-zero" \
	in_C $CURL --resolve "denied.test:443:$TOPO_DENIED4" https://denied.test/
for d in "$TOPO_DENIED4" "$TOPO_DENIED6"; do
	check_audit "audit: deny host-not-allowed for denied.test at $d" "$A" '"event":"tcp"' \
		'"verdict":"deny"' '"reason":"host-not-allowed"' "\"dst\":\"$d\"" '"sni":"denied.test"'
done
assert_not_contains "$TOPO_NGINX_LOG" '"sni":"denied.test"' "nginx never saw denied.test"

# --- anti-fronting: an allowed SNI at another host's address ---
for v in 4 6; do
	other=$TOPO_OTHER4 res=$TOPO_OTHER4
	[ $v = 6 ] && other=$TOPO_OTHER6 res="[$TOPO_OTHER6]"
	check_output "v$v: allowed.test at other.test's address gets the alert" "alert access denied" \
		sh -c "ip netns exec $C_NS $CURL --resolve 'allowed.test:443:$res' https://allowed.test/; true"
	check_audit "v$v: audit says sni-ip-mismatch" "$A" '"verdict":"deny"' \
		'"reason":"sni-ip-mismatch"' "\"dst\":\"$other\"" '"sni":"allowed.test"'
	check "v$v: other.test's server saw no request" test "$(nginx_hits "$other")" = 0
done

# --- no SNI ---
check_output "v4: openssl s_client -noservername is refused with alert 49" "alert number 49" \
	sh -c "ip netns exec $C_NS openssl s_client -noservername -connect $TOPO_ALLOWED4:443 </dev/null 2>&1; true"
check_output "v6: openssl s_client -noservername is refused with alert 49" "alert number 49" \
	sh -c "ip netns exec $C_NS openssl s_client -noservername -connect [$TOPO_ALLOWED6]:443 </dev/null 2>&1; true"
check_audit "audit: no-sni" "$A" '"verdict":"deny"' '"reason":"no-sni"' "\"dst\":\"$TOPO_ALLOWED4\""
expect_status "hello --no-sni gets alert 49" 3 in_C "$HELLO" --no-sni "$TOPO_ALLOWED4" 443

# --- shapes of ClientHello ---
for v in 4 6; do
	addr=$TOPO_ALLOWED4
	[ $v = 6 ] && addr=$TOPO_ALLOWED6
	check_output "v$v: a hello in two segments 200 ms apart is allowed" "name=allowed.test" \
		in_C "$HELLO" --sni allowed.test --cafile "$TOPO_CA" --split 200 "$addr" 443
	check_output "v$v: a hello cut inside its record header (3 + rest, 200 ms) is allowed" \
		"name=allowed.test" in_C "$HELLO" --sni allowed.test --cafile "$TOPO_CA" \
		--split 200 --split-at 3 "$addr" 443
done
check_output "a 4 KiB ClientHello is allowed" "name=allowed.test" \
	in_C "$HELLO" --sni allowed.test --cafile "$TOPO_CA" --pad 4096 "$TOPO_ALLOWED4" 443
check_audit "audit: the 4 KiB hello was judged by its SNI" "$A" '"verdict":"allow"' \
	'"sni":"allowed.test"' '"alpn":"http/1.1"'
check_output "a 20 KiB ClientHello over two TLS records, split, is allowed" "name=api.example.test" \
	in_C "$HELLO" --sni api.example.test --cafile "$TOPO_CA" --pad 20000 --split 100 \
	--split-at 16000 "$TOPO_API6" 443
check_output "hello with ECH (0xfe0d) gets alert 49" "alert 49" \
	sh -c "ip netns exec $C_NS $HELLO --sni allowed.test --ech $TOPO_ALLOWED4 443; true"
check_audit "audit: ech" "$A" '"verdict":"deny"' '"reason":"ech"' '"ech":true'
check_output "without ECH the same hello passes (control)" "handshake ok" \
	in_C "$HELLO" --sni allowed.test --ext 0xfe0e:200 "$TOPO_ALLOWED4" 443

# --- the first-bytes deadline ---
wait "$SILENT4"
wait "$SILENT6"
T1=$(date +%s%N)
ELAPSED_MS=$(((T1 - T0) / 1000000))
echo "    silent clients ended after ${ELAPSED_MS} ms"
check "silent clients were cut at the 10 s deadline (9.5-14 s)" \
	test "$ELAPSED_MS" -ge 9500 -a "$ELAPSED_MS" -lt 14000
check "the silent clients got no bytes" test ! -s "$TOPO_DIR/silent4.out" -a ! -s "$TOPO_DIR/silent6.out"
check_audit "audit: first-bytes-timeout (v4)" "$A" '"verdict":"deny"' \
	'"reason":"first-bytes-timeout"' "\"dst\":\"$TOPO_ALLOWED4\""
check_audit "audit: first-bytes-timeout (v6)" "$A" '"verdict":"deny"' \
	'"reason":"first-bytes-timeout"' "\"dst\":\"$TOPO_ALLOWED6\""
moat_stop "$C_PID"

# --- the embedded sandbox (moat run): the same verdicts ---
RA=$TOPO_DIR/audit-run.log
check_output "moat run: curl https://allowed.test/ (v6)" "addr=$TOPO_ALLOWED6" \
	in_H "$MOAT" run --profile "$PROFILE" --audit-log "$RA" -- $CURL -6 https://allowed.test/
expect_status "moat run: curl to denied.test exits 35 (TLS alert)" 35 \
	in_H "$MOAT" run --profile "$PROFILE" --audit-log "$RA" -- \
	$CURL --resolve "denied.test:443:$TOPO_DENIED4" https://denied.test/
check_audit "moat run: audit has the deny" "$RA" '"reason":"host-not-allowed"' '"sni":"denied.test"'

# --- anti-fronting from the sandbox's own DNS answers only ---
# H's resolver for moat's own lookups is dead (U's 198.18.1.9 port 53: refused at once);
# the sandbox's DNS goes to dnsmasq through --dns-upstream.
DEAD=$TOPO_DIR/resolv-dead.conf
printf 'nameserver 198.18.1.9\noptions timeout:1 attempts:1\n' >"$DEAD"
check "control: moat's own lookup of allowed.test fails in H with the dead resolver" \
	sh -c "! ip netns exec $TOPO_H unshare -m sh -c 'mount --bind $DEAD /etc/resolv.conf && getent ahosts allowed.test'"
ENFORCE_WRAP=(unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$DEAD")
enforce_up f "$PROFILE" --dns-upstream "$TOPO_DNS4" || { echo "FAIL - moat enforce (dead resolver) did not come up"; finish; }
F=$C_AUDIT
check_output "no lookup yet: --resolve to allowed.test's right IP is denied" "alert access denied" \
	sh -c "ip netns exec $C_NS $CURL --resolve allowed.test:443:$TOPO_ALLOWED4 https://allowed.test/; true"
check_audit "audit: sni-ip-mismatch (moat could not vouch for the address)" "$F" \
	'"reason":"sni-ip-mismatch"' "\"dst\":\"$TOPO_ALLOWED4\"" '"sni":"allowed.test"'
check_output "by name: the relayed answer vouches, allowed" "name=allowed.test" \
	in_C $CURL -4 https://allowed.test/
check_audit "audit: the sandbox's DNS query was relayed" "$F" '"event":"dns"' '"verdict":"allow"' \
	'"qname":"allowed.test"'
check_output "after the lookup, --resolve to the same IP is allowed" "name=allowed.test" \
	in_C $CURL --resolve "allowed.test:443:$TOPO_ALLOWED4" https://allowed.test/
check_output "after the lookup, other.test's IP is still denied" "alert access denied" \
	sh -c "ip netns exec $C_NS $CURL --resolve allowed.test:443:$TOPO_OTHER4 https://allowed.test/; true"
check "other.test's server still saw no request" test "$(nginx_hits "$TOPO_OTHER4")" = 0
moat_stop "$C_PID"
ENFORCE_WRAP=()

# --- internal destinations under the allow-all profile ---
# U serves these addresses (nginx listens on all), H routes them to U: only moat stops them.
INTERNAL4="169.254.169.254 10.1.2.3 192.168.1.1"
INTERNAL6="fd00::1:2:3"
for a in $INTERNAL4; do
	ip -n "$TOPO_U" addr add "$a/32" dev lo
	ip -n "$TOPO_H" route add "$a/32" via "$TOPO_U4"
done
ip -n "$TOPO_U" addr add "$INTERNAL6/128" dev lo nodad
ip -n "$TOPO_H" -6 route add "$INTERNAL6/128" via "$TOPO_U6"
check_output "control: H itself reaches 169.254.169.254:80 in U" "addr=169.254.169.254" \
	in_H $CURL http://169.254.169.254/
check_output "control: H itself reaches [fd00::1:2:3]:80 in U" "addr=fd00::1:2:3" \
	in_H $CURL "http://[fd00::1:2:3]/"
BEFORE=$(wc -l <"$TOPO_NGINX_LOG")
enforce_up n network || { echo "FAIL - moat enforce (network) did not come up"; finish; }
N=$C_AUDIT
check_output "network profile: an ordinary address is allowed (control)" "name=other.test" \
	in_C $CURL --resolve "other.test:443:$TOPO_OTHER4" https://other.test/
AFTER_CONTROL=$(wc -l <"$TOPO_NGINX_LOG")
check_output "169.254.169.254:80 (metadata) is refused" "dst-link-local" \
	in_C curl -sS --max-time 5 http://169.254.169.254/latest/meta-data/
check_output "10.1.2.3:80 is refused" "dst-private" in_C curl -sS --max-time 5 http://10.1.2.3/
check_output "192.168.1.1:443 is refused with the TLS alert" "alert access denied" \
	sh -c "ip netns exec $C_NS curl -sS -k --max-time 5 https://192.168.1.1/; true"
check_output "[fd00::1:2:3]:80 (ULA) is refused" "dst-ula" \
	in_C curl -sS --max-time 5 "http://[fd00::1:2:3]/"
expect_fail "H's own address 198.18.0.1:80 is unreachable" \
	in_C curl -sS --max-time 2 http://198.18.0.1/
for r in dst-link-local:169.254.169.254 dst-private:10.1.2.3 dst-private:192.168.1.1 \
	dst-ula:fd00::1:2:3; do
	check_audit "audit: ${r%%:*} for ${r#*:}" "$N" '"verdict":"deny"' "\"reason\":\"${r%%:*}\"" \
		"\"dst\":\"${r#*:}\""
done
check_audit "audit: the host's own address is dropped" "$N" '"event":"drop"' '"reason":"host"' \
	'"dst":"198.18.0.1"'
AFTER=$(wc -l <"$TOPO_NGINX_LOG")
check "no request from the sandbox reached U's servers (only the control)" \
	test "$AFTER" -eq "$AFTER_CONTROL" -a "$AFTER_CONTROL" -eq $((BEFORE + 1))
moat_stop "$C_PID"

finish
