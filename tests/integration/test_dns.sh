#!/bin/bash
# The DNS filter in the real kernel path: moat run in H, dig/getent in the sandbox,
# dnsmasq in U with its query log.  With a profile allowing allowed.test and big.test:
#   - allowed.test answers A and AAAA, asked over IPv4 and IPv6, over UDP and TCP (dig +tcp),
#     and through glibc (getent); the allowed queries appear in dnsmasq's log;
#   - denied.test and random names below it get NXDOMAIN from moat, asked of the gateway,
#     of the real resolver the workload picked (198.18.0.2, 2001:2::2) and of addresses with
#     no resolver at all (198.18.9.9, 2001:2::99): none of them ever reaches dnsmasq;
#   - big.test (answer > 1232 bytes): a UDP client without EDNS gets an empty answer with
#     TC=1, dig then retries over TCP and gets all 100 records; moat's own retry over TCP is
#     seen by dnsmasq (a TCP query is answered by a forked dnsmasq, another PID);
#   - ANY gets REFUSED, HTTPS (type 65) for an allowed name NOERROR with no answers, and
#     neither reaches dnsmasq;
#   - every query is a `dns` audit event with qname, qtype, verdict, rcode (and answers when
#     forwarded);
#   - the fuzz corpus (tests/fuzz/corpus/dns) and random bytes over UDP (v4, v6) and TCP to
#     the gateway's port 53 get FORMERR/NOTIMP/NXDOMAIN or nothing, never a forwarded answer,
#     and nothing of it reaches dnsmasq; a valid query right after still answers and moat's
#     exit status is the workload's;
#   - under `insecure_allow_all` (the builtin `network` profile) a random .test name is
#     forwarded (in dnsmasq's log, audit verdict allow / allow-all), ANY is still REFUSED.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/sandbox.sh"
need_root
need_moat
need_cmd ip dig getent nginx dnsmasq python3
FUZZ=$HELPERS/dnsfuzzsend
[ -x "$FUZZ" ] || { echo "FAIL - no dnsfuzzsend helper at $FUZZ"; exit 1; }

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
D=$TOPO_DIR/dns
# a long-lived sandbox running the agent (tests/lib/sandbox.sh); a request may take 120 s
sb_init "$D"
SB_RUN_TIMEOUT=120

# query lines of dnsmasq's log
dns_log_queries() { grep -c 'query\[' "$TOPO_DNS_LOG"; }
DNSMASQ_PID=$(grep -m1 'started, version' "$TOPO_DNS_LOG" | sed 's/.*dnsmasq\[\([0-9]*\)\].*/\1/')

DIG="dig +time=2 +tries=1"
# the sandbox's gateway addresses, from the resolv.conf moat wrote
GW="GW4=\$(awk '/^nameserver/ && \$2 !~ /:/ {print \$2; exit}' /etc/resolv.conf); \
GW6=\$(awk '/^nameserver/ && \$2 ~ /:/ {print \$2; exit}' /etc/resolv.conf)"

P=$D/dns.json
cat >"$P" <<'EOF'
{"network":{"outbound":{"allow_host":["allowed.test","big.test"],"allow_port":[443]}}}
EOF
sb_start f "$P" || { echo "FAIL - moat run did not come up"; sed 's/^/    | /' "$D/f.moat.log"; finish; }
A=$D/f.audit
MOAT_PID=${SB_PID[f]}

# --- allowed names ------------------------------------------------------------------------
check_output "gateway v4: allowed.test A" "$TOPO_ALLOWED4" \
	sb_run f "$GW; $DIG +short @\$GW4 allowed.test A"
check_output "gateway v6: allowed.test AAAA" "$TOPO_ALLOWED6" \
	sb_run f "$GW; $DIG +short @\$GW6 allowed.test AAAA"
check_output "gateway v6: allowed.test A" "$TOPO_ALLOWED4" \
	sb_run f "$GW; $DIG +short @\$GW6 allowed.test A"
check_output "default resolver (resolv.conf): allowed.test AAAA" "$TOPO_ALLOWED6" \
	sb_run f "$DIG +short allowed.test AAAA"
check_output "getent hosts allowed.test (glibc)" "allowed.test" \
	sb_run f "getent hosts allowed.test"
check_output "getent ahostsv4 allowed.test (glibc, A)" "$TOPO_ALLOWED4" \
	sb_run f "getent ahostsv4 allowed.test"
expect_status "getent hosts denied.test fails (exit 2: not found)" 2 \
	sb_run f "getent hosts denied.test"
check_output "dig +tcp allowed.test (v4)" "$TOPO_ALLOWED4" \
	sb_run f "$GW; $DIG +tcp +short @\$GW4 allowed.test A"
check_output "dig +tcp allowed.test AAAA (v6)" "$TOPO_ALLOWED6" \
	sb_run f "$GW; $DIG +tcp +short @\$GW6 allowed.test AAAA"
check "audit: the TCP query and its answer" \
	audit_has "$A" '"qname":"allowed.test"' '"proto":"tcp"' '"rcode":"NOERROR"' \
	"\"answers\":[\"$TOPO_ALLOWED4\"]"
assert_contains "$TOPO_DNS_LOG" "query[A] allowed.test from $TOPO_H4" \
	"dnsmasq saw allowed.test A (from H)"
assert_contains "$TOPO_DNS_LOG" "query[AAAA] allowed.test from $TOPO_H4" \
	"dnsmasq saw allowed.test AAAA"

# --- denied names: NXDOMAIN from moat, never upstream ---------------------------------------
R=r$$x$RANDOM
check_output "denied.test: NXDOMAIN" "status: NXDOMAIN" sb_run f "$DIG denied.test"
check_output "v6 gateway: denied.test AAAA NXDOMAIN" "status: NXDOMAIN" \
	sb_run f "$GW; $DIG @\$GW6 denied.test AAAA"
check_output "$R-1.denied.test via resolv.conf: NXDOMAIN" "status: NXDOMAIN" \
	sb_run f "$DIG $R-1.denied.test"
check_output "@$TOPO_DNS4 (the real resolver) $R-2.denied.test: NXDOMAIN" "status: NXDOMAIN" \
	sb_run f "$DIG @$TOPO_DNS4 $R-2.denied.test"
check_output "@198.18.9.9 (no resolver there) $R-3.denied.test: NXDOMAIN" "status: NXDOMAIN" \
	sb_run f "$DIG @198.18.9.9 $R-3.denied.test"
check_output "@$TOPO_DNS6 (the real resolver, v6) $R-4.denied.test: NXDOMAIN" "status: NXDOMAIN" \
	sb_run f "$DIG @$TOPO_DNS6 $R-4.denied.test AAAA"
check_output "@2001:2::99 (no resolver there) $R-5.denied.test: NXDOMAIN" "status: NXDOMAIN" \
	sb_run f "$DIG @2001:2::99 $R-5.denied.test"
check_output "+tcp @$TOPO_DNS4 $R-6.denied.test: NXDOMAIN" "status: NXDOMAIN" \
	sb_run f "$DIG +tcp @$TOPO_DNS4 $R-6.denied.test"
for i in 1 2 3 4 5 6; do
	assert_not_contains "$TOPO_DNS_LOG" "$R-$i.denied.test" "dnsmasq never saw $R-$i.denied.test"
done
assert_not_contains "$TOPO_DNS_LOG" "denied.test" "dnsmasq never saw denied.test at all"
check_output "control: H itself gets denied.test from dnsmasq" "$TOPO_DENIED4" \
	in_H $DIG +short @"$TOPO_DNS4" denied.test
check_output "control: H itself gets NXDOMAIN for $R-0.denied.test from dnsmasq, logged" \
	"status: NXDOMAIN" in_H $DIG @"$TOPO_DNS4" "$R-0.denied.test"
assert_contains "$TOPO_DNS_LOG" "$R-0.denied.test" "control: dnsmasq logs such a query"
check "audit: deny host-not-allowed NXDOMAIN with the resolver the client chose" \
	audit_has "$A" '"verdict":"deny"' '"reason":"host-not-allowed"' "\"qname\":\"$R-2.denied.test\"" \
	'"rcode":"NXDOMAIN"' "\"dst\":\"$TOPO_DNS4\""
check "audit: the query to an address without resolver (v6)" \
	audit_has "$A" '"reason":"host-not-allowed"' "\"qname\":\"$R-5.denied.test\"" '"dst":"2001:2::99"' \
	'"qtype":"A"'

# --- big.test: truncation and TCP ----------------------------------------------------------
N0=$(grep -c "query\[A\] big.test" "$TOPO_DNS_LOG")
check_output "UDP without EDNS, TC not followed: flags tc, no answers" "flags: qr tc" \
	sb_run f "$DIG +noedns +ignore big.test"
check_output "... and ANSWER: 0" "ANSWER: 0," sb_run f "$DIG +noedns +ignore big.test"
check_output "UDP without EDNS: dig retries over TCP and gets all 100" "ANSWER: 100," \
	sb_run f "$DIG +noedns big.test"
check_output "UDP with EDNS 1232: still truncated, then 100 over TCP" "ANSWER: 100," \
	sb_run f "$DIG +bufsize=1232 big.test"
check_output "dig +tcp big.test: 100 A records" "100" \
	sb_run f "$DIG +tcp +short big.test | grep -c '^198\.18\.2\.'"
# dnsmasq answers TCP in a forked child: a query logged under another PID came over TCP
check "dnsmasq saw moat's TCP retries of big.test (child PID != $DNSMASQ_PID)" \
	sh -c "grep 'query\[A\] big.test' '$TOPO_DNS_LOG' | grep -v 'dnsmasq\[$DNSMASQ_PID\]' | grep -q ."
check "dnsmasq saw moat's UDP queries of big.test too (main PID)" \
	sh -c "grep 'query\[A\] big.test' '$TOPO_DNS_LOG' | grep -q 'dnsmasq\[$DNSMASQ_PID\]'"
check "audit: the truncated UDP answer relayed no addresses" \
	audit_has "$A" '"qname":"big.test"' '"proto":"udp"' '"answers":[]' '"rcode":"NOERROR"'
check "audit: the TCP answer's addresses" \
	audit_has "$A" '"qname":"big.test"' '"proto":"tcp"' '"answers":["198.18.2.'

# --- ANY and HTTPS ------------------------------------------------------------------------
check_output "ANY allowed.test: REFUSED" "status: REFUSED" sb_run f "$DIG allowed.test ANY"
check_output "ANY allowed.test over TCP: REFUSED" "status: REFUSED" sb_run f "$DIG +tcp allowed.test ANY"
check_output "HTTPS (type 65) allowed.test: NOERROR" "status: NOERROR" \
	sb_run f "$DIG allowed.test TYPE65"
check_output "... with no answers" "ANSWER: 0," sb_run f "$DIG allowed.test TYPE65"
check "audit: ANY denied (qtype-any, REFUSED)" \
	audit_has "$A" '"reason":"qtype-any"' '"qtype":"ANY"' '"rcode":"REFUSED"'
check "audit: HTTPS answered empty (https-svcb-empty)" \
	audit_has "$A" '"reason":"https-svcb-empty"' '"qtype":"HTTPS"' '"rcode":"NOERROR"'
assert_not_contains "$TOPO_DNS_LOG" "query[ANY]" "dnsmasq never saw ANY"
assert_not_contains "$TOPO_DNS_LOG" "query[HTTPS]" "dnsmasq never saw HTTPS"
assert_not_contains "$TOPO_DNS_LOG" "query[type=65]" "dnsmasq never saw type 65"

# --- every query is an audit event with its fields -----------------------------------------
check "audit: every dns event has qname, qtype, verdict, reason, rcode, src, dst, proto" \
	python3 - "$A" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("event") != "dns":
        continue
    n += 1
    need = ["qname", "qtype", "verdict", "reason", "rcode", "src", "dst", "proto"]
    miss = [k for k in need if k not in d]
    if miss:
        sys.exit("missing %s in %s" % (miss, line))
    if d["reason"] in ("allow-host", "allow-all") and "answers" not in d:
        sys.exit("forwarded without answers: " + line)
print(n, "dns events")
sys.exit(0 if n >= 25 else "too few dns events: %d" % n)
EOF

# --- malformed and random bytes -------------------------------------------------------------
Q0=$(dns_log_queries)
CORPUS=("$SRC"/tests/fuzz/corpus/dns/*)
sb_run f "$GW; $FUZZ -n 64 -s 7 \$GW4 53 ${CORPUS[*]}" >"$D/fuzz-udp4.out" 2>&1
check_output "fuzz over UDP (v4) ran" "summary proto=udp sent=$((${#CORPUS[@]} + 64))" cat "$D/fuzz-udp4.out"
sb_run f "$GW; $FUZZ -n 64 -s 8 \$GW6 53 ${CORPUS[*]}" >"$D/fuzz-udp6.out" 2>&1
check_output "fuzz over UDP (v6) ran" "summary proto=udp sent=$((${#CORPUS[@]} + 64))" cat "$D/fuzz-udp6.out"
sb_run f "$GW; $FUZZ -t -n 64 -s 9 \$GW4 53 ${CORPUS[*]}" >"$D/fuzz-tcp4.out" 2>&1
check_output "fuzz over TCP (v4) ran" "summary proto=tcp sent=$((${#CORPUS[@]} + 64))" cat "$D/fuzz-tcp4.out"
for f in udp4 udp6 tcp4; do
	O=$D/fuzz-$f.out
	check "$f: random bytes get FORMERR, NOTIMP, NXDOMAIN or nothing" \
		sh -c "! grep '^random-' '$O' | grep 'reply' | grep -v -E 'rcode=(FORMERR|NOTIMP|NXDOMAIN|REFUSED) qr=1'"
	check "$f: no random message got an answer with records" \
		sh -c "! grep '^random-' '$O' | grep -v 'ancount=0' | grep -q reply"
	# over UDP the tcp-* files are framed bytes (garbage), over TCP they are responses too
	RESP='^reply-'
	[ $f = tcp4 ] && RESP='^(tcp-)?reply-'
	check "$f: responses (QR=1) are dropped, never answered" \
		sh -c "grep -E '$RESP' '$O' | grep -q . && ! grep -E '$RESP' '$O' | grep -q ' reply '"
	check "$f: the pointer loop gets FORMERR with its id" \
		grep -q "^malformed-pointer-loop.bin .* rcode=FORMERR qr=1 id=match" "$O"
	check "$f: some random messages were answered FORMERR (the parser saw them)" \
		grep -q "^random-.*rcode=FORMERR" "$O"
	check "$f: the ANY query in the corpus is REFUSED" \
		sh -c "grep -q '^tcp-query-any.bin .* rcode=REFUSED' '$O' || [ $f != tcp4 ]"
done
# the corpus holds one query for an allowed name (allowed.test TXT): forwarded, as it should
check "of the fuzzing only the corpus' allowed.test TXT query reached dnsmasq (3 times)" \
	sh -c "grep 'query\[' '$TOPO_DNS_LOG' | tail -n +$((Q0 + 1)) | grep -v -c 'query\[TXT\] allowed.test ' | grep -qx 0 &&
		test \$(grep -c 'query\[TXT\] allowed.test ' '$TOPO_DNS_LOG') = 3"
check "moat still runs after the fuzzing" kill -0 "$MOAT_PID"
check_output "a valid query right after still answers (UDP v4)" "$TOPO_ALLOWED4" \
	sb_run f "$GW; $DIG +short @\$GW4 allowed.test A"
check_output "a valid query right after still answers (UDP v6)" "$TOPO_ALLOWED6" \
	sb_run f "$GW; $DIG +short @\$GW6 allowed.test AAAA"
check_output "a valid query right after still answers (TCP)" "$TOPO_ALLOWED4" \
	sb_run f "$DIG +tcp +short allowed.test A"
check "audit: malformed queries are deny/malformed events" \
	audit_has "$A" '"verdict":"deny"' '"reason":"malformed"' '"rcode":"FORMERR"'
expect_status "moat's exit status is the workload's (7): it did not crash" 7 sb_stop f 7
check "moat wrote 'stopped' last" sh -c "tail -n1 '$A' | grep -q '\"state\":\"stopped\"'"

# --- insecure_allow_all forwards everything (but ANY) ----------------------------------------
RA=$D/allow-all.audit
R2=all$$x$RANDOM
check_output "network profile: $R2.test goes upstream (NXDOMAIN from dnsmasq)" "status: NXDOMAIN" \
	in_H "$MOAT" run --profile network --audit-log "$RA" -- $DIG "$R2.test"
assert_contains "$TOPO_DNS_LOG" "query[A] $R2.test" "dnsmasq saw $R2.test"
check "audit: allow / allow-all, the upstream's NXDOMAIN, no answers" \
	audit_has "$RA" '"verdict":"allow"' '"reason":"allow-all"' "\"qname\":\"$R2.test\"" \
	'"rcode":"NXDOMAIN"' '"answers":[]'
check_output "network profile: denied.test resolves" "$TOPO_DENIED4" \
	in_H "$MOAT" run --profile network --audit-log "$RA" -- $DIG +short denied.test
check_output "network profile: ANY still REFUSED" "status: REFUSED" \
	in_H "$MOAT" run --profile network --audit-log "$RA" -- $DIG allowed.test ANY
assert_not_contains "$TOPO_DNS_LOG" "query[ANY]" "dnsmasq never saw ANY (allow-all)"

check "nothing of moat left in H" sh -c "! ip netns exec $TOPO_H nft list tables | grep -q moat_"
finish
