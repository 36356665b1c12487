#!/bin/bash
# The L7 proxy judges every plain-HTTP request, in the real kernel path (a namespace
# confined by moat enforce in H, nginx in U), with a profile allowing allowed.test and
# .example.test on 443 and 80, over IPv4 and IPv6:
#   - an allowed Host works; a denied Host gets 403 whose body names moat and the reason;
#   - a pipelined second request for a denied Host, in the same write as an allowed one,
#     never reaches nginx: the first response arrives, then the 403;
#   - keep-alive: two requests on one connection are judged one by one (two http events,
#     same source port);
#   - absolute-form whose authority disagrees with Host is refused; CONNECT, Upgrade: h2c
#     and a Host port other than the destination port are refused;
#   - an allowed Host sent to another host's address is refused (host-ip-mismatch) and
#     that host's server sees nothing;
#   - a chunked upload arrives complete (nginx counts the bytes), and request-looking bytes
#     inside a chunked body are not taken for a request, while the real request after it is.
set -u
. "$SRC/tests/lib/common.sh"
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/moat.sh"
need_root
need_cmd ip nginx dnsmasq openssl curl dig socat
need_moat

topo_up || { echo "FAIL - topology did not come up"; exit 1; }

PROFILE=$TOPO_DIR/l7.json
cat >"$PROFILE" <<'EOF'
{"network":{"outbound":{"allow_host":["allowed.test",".example.test"],"allow_port":[443,80]}}}
EOF

enforce_up c "$PROFILE" || { echo "FAIL - moat enforce did not come up"; exit 1; }
A=$C_AUDIT

# the source port of the http event for TARGET
sport_of() {
	grep -F "\"event\":\"http\"" "$A" | grep -F "\"target\":\"$1\"" | head -1 |
		sed -n 's/.*"sport":\([0-9]*\).*/\1/p'
}

# raw ADDR: sends stdin to ADDR:80 and prints the answer until the server side closes.
# The client never half-closes (nginx treats a half-close as an abort of a proxied request).
raw() {
	ip netns exec "$C_NS" timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/80" && cat >&3 && cat <&3' \
		raw "$1"
}

CURL="curl -sS --max-time 5"

for v in 4 6; do
	eval "allowed=\$TOPO_ALLOWED$v denied=\$TOPO_DENIED$v other=\$TOPO_OTHER$v"
	ra=$allowed ro=$other rd=$denied
	[ $v = 6 ] && ra="[$allowed]" ro="[$other]" rd="[$denied]"

	check_output "v$v: an allowed Host works" "name=allowed.test host=allowed.test uri=/v$v" \
		in_C $CURL -$v "http://allowed.test/v$v"
	check_audit "v$v: audit: http allow-host" "$A" '"event":"http"' '"verdict":"allow"' \
		'"reason":"allow-host"' "\"dst\":\"$allowed\"" "\"target\":\"/v$v\""

	check_output "v$v: a denied Host gets 403" "403" \
		in_C $CURL -o /dev/null -w '%{http_code}' --resolve "denied.test:80:$rd" \
		"http://denied.test/d$v"
	check_output "v$v: the 403 body names moat and the reason" \
		"moat: host-not-allowed: denied.test" \
		in_C $CURL --resolve "denied.test:80:$rd" "http://denied.test/d$v"
	check_audit "v$v: audit: http deny host-not-allowed" "$A" '"event":"http"' '"verdict":"deny"' \
		'"reason":"host-not-allowed"' '"host":"denied.test"' "\"target\":\"/d$v\""

	# pipelining: both requests in one write
	printf 'GET /pipe1-v%s HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET /pipe2-v%s HTTP/1.1\r\nHost: denied.test\r\n\r\n' \
		$v $v >"$TOPO_DIR/pipe$v.req"
	raw "$allowed" <"$TOPO_DIR/pipe$v.req" >"$TOPO_DIR/pipe$v.out" 2>&1
	check "v$v: pipelined: the allowed response comes first" \
		grep -qF "uri=/pipe1-v$v" "$TOPO_DIR/pipe$v.out"
	check "v$v: pipelined: then the 403 for the denied Host" \
		sh -c "sed -n '/uri=\/pipe1/,\$p' $TOPO_DIR/pipe$v.out | grep -qF 'moat: host-not-allowed: denied.test'"
	assert_contains "$TOPO_NGINX_LOG" "\"request\":\"GET /pipe1-v$v HTTP/1.1\"" \
		"v$v: pipelined: nginx got the first request"
	assert_not_contains "$TOPO_NGINX_LOG" "/pipe2-v$v" \
		"v$v: pipelined: the denied second request never reached nginx"
	check_audit "v$v: pipelined: the second request has its own deny event" "$A" \
		'"verdict":"deny"' "\"target\":\"/pipe2-v$v\""
	check "v$v: pipelined: both events are on one connection" \
		test -n "$(sport_of "/pipe1-v$v")" -a "$(sport_of "/pipe1-v$v")" = "$(sport_of "/pipe2-v$v")"

	# keep-alive: curl reuses the connection for the second URL
	check_output "v$v: keep-alive: two requests on one connection" "uri=/ka2-v$v" \
		in_C $CURL -$v "http://allowed.test/ka1-v$v" "http://allowed.test/ka2-v$v"
	check "v$v: keep-alive: each request was judged (two http events, one source port)" \
		test -n "$(sport_of "/ka1-v$v")" -a "$(sport_of "/ka1-v$v")" = "$(sport_of "/ka2-v$v")"

	# anti-fronting for HTTP
	check_output "v$v: allowed.test at other.test's address gets 403 host-ip-mismatch" \
		"moat: host-ip-mismatch: allowed.test" \
		in_C $CURL --resolve "allowed.test:80:$ro" "http://allowed.test/front$v"
	check_audit "v$v: audit: host-ip-mismatch" "$A" '"reason":"host-ip-mismatch"' \
		"\"dst\":\"$other\"" "\"target\":\"/front$v\""
	check "v$v: other.test's server saw nothing" \
		sh -c "! grep -qF '\"server_addr\":\"$other\"' $TOPO_NGINX_LOG"

	# chunked upload
	check_output "v$v: a 3 MB chunked upload arrives complete" "upload name=allowed.test bytes=3000000" \
		sh -c "head -c 3000000 /dev/urandom | ip netns exec $C_NS $CURL -$v \
		-H 'Transfer-Encoding: chunked' -T - http://allowed.test/upload"
done

# request forms that are refused
printf 'GET http://denied.test/abs HTTP/1.1\r\nHost: allowed.test\r\n\r\n' >"$TOPO_DIR/abs.req"
raw "$TOPO_ALLOWED4" <"$TOPO_DIR/abs.req" >"$TOPO_DIR/abs.out" 2>&1
check "absolute-form whose authority disagrees with Host gets 403" \
	grep -qF "403 Forbidden" "$TOPO_DIR/abs.out"
check_audit "audit: the disagreeing absolute-form is denied" "$A" '"event":"http"' \
	'"verdict":"deny"' "\"dst\":\"$TOPO_ALLOWED4\"" '"reason":"bad-http"'
assert_not_contains "$TOPO_NGINX_LOG" "/abs" "nginx never saw the absolute-form request"
printf 'GET http://denied.test/abs2 HTTP/1.1\r\nHost: denied.test\r\n\r\n' >"$TOPO_DIR/abs2.req"
check_output "absolute-form naming a denied host gets 403" "moat: host-not-allowed: denied.test" \
	raw "$TOPO_DENIED4" <"$TOPO_DIR/abs2.req"
printf 'GET http://allowed.test/abs3 HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n' >"$TOPO_DIR/abs3.req"
check_output "absolute-form agreeing with Host is allowed (control)" "uri=/abs3" \
	raw "$TOPO_ALLOWED4" <"$TOPO_DIR/abs3.req"

check_output "Upgrade: h2c (curl --http2 over http) gets 403 h2c" "moat: h2c" \
	in_C $CURL --http2 http://allowed.test/h2c
check_audit "audit: h2c" "$A" '"verdict":"deny"' '"reason":"h2c"' '"target":"/h2c"'
check_output "CONNECT (curl through allowed.test:80 as a proxy) gets 403" "response 403" \
	sh -c "ip netns exec $C_NS $CURL -p -x http://allowed.test:80 https://allowed.test/ 2>&1; true"
check_audit "audit: connect" "$A" '"verdict":"deny"' '"reason":"connect"' '"method":"CONNECT"'
check_output "v6: CONNECT gets 403" "response 403" \
	sh -c "ip netns exec $C_NS $CURL -6 -p -x http://allowed.test:80 https://allowed.test/ 2>&1; true"
check_output "Host port 8080 on a connection to port 80 gets 403" "moat: host-port-mismatch" \
	in_C $CURL -H 'Host: allowed.test:8080' http://allowed.test/hostport
check_audit "audit: host-port-mismatch" "$A" '"reason":"host-port-mismatch"' '"target":"/hostport"'
check_output "Host with the destination port (:80) is allowed (control)" "uri=/hostport80" \
	in_C $CURL -H 'Host: allowed.test:80' http://allowed.test/hostport80
for t in /h2c /hostport; do
	assert_not_contains "$TOPO_NGINX_LOG" "\"GET $t HTTP" "nginx never saw $t"
done
assert_not_contains "$TOPO_NGINX_LOG" '"request":"CONNECT' "nginx never saw a CONNECT"

# A chunked body holding a request-looking line is body, not a request; the request after
# the body is judged on its own.  (The request after it is allowed here: after a denied
# request moat half-closes the upstream, and nginx drops a proxied request such as
# /upload when its client half-closes: status 499, no response.)
SMUGGLE=$'GET /smuggled HTTP/1.1\r\nHost: denied.test\r\n\r\n'
{
	printf 'POST /upload?s=1 HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n'
	printf '%x\r\n%s\r\n0\r\n\r\n' "${#SMUGGLE}" "$SMUGGLE"
	printf 'GET /after-body HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n'
} >"$TOPO_DIR/smuggle.req"
raw "$TOPO_ALLOWED4" <"$TOPO_DIR/smuggle.req" >"$TOPO_DIR/smuggle.out" 2>&1
check "chunked body with a request inside: uploaded as ${#SMUGGLE} body bytes" \
	grep -qF "upload name=allowed.test bytes=${#SMUGGLE}" "$TOPO_DIR/smuggle.out"
check "the request after the body is answered" grep -qF "uri=/after-body" "$TOPO_DIR/smuggle.out"
check "audit: the request after the body was judged on the same connection" \
	test -n "$(sport_of /after-body)" -a "$(sport_of /after-body)" = "$(sport_of '/upload?s=1')"
check "audit: nothing inside the body was judged as a request" \
	sh -c "! grep -qF '/smuggled' $A"
assert_not_contains "$TOPO_NGINX_LOG" "GET /smuggled" "nginx saw no /smuggled request"

# close events account the bytes of the upload
check_audit "close event of the chunked upload counts its bytes" "$A" '"event":"close"' \
	'"host":"allowed.test"' '"bytes_up":300'

check "moat enforce stopped cleanly" moat_stop "$C_PID"
finish
