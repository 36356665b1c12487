#!/bin/bash
# 1 GiB through the L7 proxy arrives intact in both directions, in the real kernel path
# (a namespace confined by moat enforce in H, servers in U):
#   - download /big (1 GiB of random bytes) over TLS (v4) and over plain HTTP (v6):
#     sha256 equal to the file's;
#   - upload the same GiB over TLS with Content-Length and over plain HTTP chunked: nginx
#     reports bytes=1073741824;
#   - the same GiB through the TCP echo on 9001 (allowed by an IP-literal rule, so the
#     proxy relays a stream that is neither TLS nor HTTP): what comes back has the same
#     sha256;
#   - the close events account every byte: bytes_up/bytes_down equal what the clients
#     sent and received (exactly for the echo and the plain-HTTP download).
# TOPO_BIG_MB (default 1024) sets the size.
set -u
. "$SRC/tests/lib/common.sh"
: "${TOPO_BIG_MB:=1024}"
export TOPO_BIG_MB
. "$SRC/tests/lib/topo.sh"
. "$SRC/tests/lib/moat.sh"
need_root
need_cmd ip nginx dnsmasq openssl curl dig socat sha256sum
need_moat

topo_up || { echo "FAIL - topology did not come up"; exit 1; }
BIG=$TOPO_DIR/www/big.bin
SIZE=$((TOPO_BIG_MB * 1024 * 1024))

PROFILE=$TOPO_DIR/l7.json
cat >"$PROFILE" <<EOF
{"network":{"outbound":{"allow_host":["allowed.test","$TOPO_OTHER4:$TOPO_TCP_ECHO_PORT",
 "[$TOPO_OTHER6]:$TOPO_TCP_ECHO_PORT"],"allow_port":[443,80]}}}
EOF

enforce_up c "$PROFILE" || { echo "FAIL - moat enforce did not come up"; exit 1; }
A=$C_AUDIT

CURL="curl -sS --max-time 120 --cacert $TOPO_CA"

# close_field SPORT FIELD: FIELD (an integer) of the close event of the connection from SPORT
close_field() {
	grep -F '"event":"close"' "$A" | grep -F "\"sport\":$1," | head -1 |
		sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}

# wait_close SPORT: the close event is written when the proxy sees both sides end
wait_close() { topo_wait "close event of :$1" 10 sh -c "grep -F '\"event\":\"close\"' '$A' | grep -qF '\"sport\":$1,'"; }

t0=$(date +%s)

# --- download over TLS (v4): blind splice ---
out=$TOPO_DIR/dl-tls.out
in_C $CURL -4 -o >(sha256sum >"$out.sha") -w '%{local_port} %{size_download}\n' \
	https://allowed.test/big >"$out" 2>&1
topo_wait "sha256 of the TLS download" 30 test -s "$out.sha"
read -r port got <"$out"
check "TLS download of $TOPO_BIG_MB MiB: $got bytes" test "$got" = "$SIZE"
check "TLS download: sha256 matches" test "$(cut -c1-64 "$out.sha")" = "$TOPO_BIG_SHA256"
wait_close "$port"
down=$(close_field "$port" bytes_down)
check "TLS download: close event bytes_down ($down) >= $SIZE" test "${down:-0}" -ge "$SIZE"

# --- download over plain HTTP (v6): every byte accounted ---
out=$TOPO_DIR/dl-http.out
in_C $CURL -6 -o >(sha256sum >"$out.sha") \
	-w '%{local_port} %{size_download} %{size_header} %{size_request}\n' \
	http://allowed.test/big >"$out" 2>&1
topo_wait "sha256 of the HTTP download" 30 test -s "$out.sha"
read -r port got hdr req <"$out"
check "HTTP download (v6): $got bytes" test "$got" = "$SIZE"
check "HTTP download (v6): sha256 matches" test "$(cut -c1-64 "$out.sha")" = "$TOPO_BIG_SHA256"
wait_close "$port"
down=$(close_field "$port" bytes_down)
up=$(close_field "$port" bytes_up)
check "HTTP download: close bytes_down ($down) = header + body ($((hdr + got)))" \
	test "${down:-0}" = $((hdr + got))
check "HTTP download: close bytes_up ($up) = the request ($req)" test "${up:-0}" = "$req"

# --- upload over TLS with Content-Length (v4) ---
check_output "TLS upload of $TOPO_BIG_MB MiB (Content-Length): nginx got every byte" \
	"upload name=allowed.test bytes=$SIZE" in_C $CURL -4 -T "$BIG" https://allowed.test/upload

# --- upload over plain HTTP, chunked (v6): the proxy walks every chunk ---
out=$TOPO_DIR/ul-http.out
in_C sh -c "cat '$BIG' | $CURL -6 -H 'Transfer-Encoding: chunked' -T - \
	-w '\nport=%{local_port} up=%{size_upload} req=%{size_request}\n' \
	http://allowed.test/upload" >"$out" 2>&1
check "HTTP chunked upload (v6): nginx got every byte" \
	grep -qF "upload name=allowed.test bytes=$SIZE" "$out"
port=$(sed -n 's/^port=\([0-9]*\).*/\1/p' "$out")
wait_close "${port:-0}"
up=$(close_field "${port:-0}" bytes_up)
check "HTTP chunked upload: close bytes_up ($up) > $SIZE (body + chunk framing)" \
	test "${up:-0}" -gt "$SIZE"

# --- both directions at once: TCP echo, IP-literal rule ---
for v in 4 6; do
	addr=$TOPO_OTHER4
	[ $v = 6 ] && addr="[$TOPO_OTHER6]"
	out=$TOPO_DIR/echo$v.sha
	in_C sh -c "socat -t 60 -T 60 - TCP$v:$addr:$TOPO_TCP_ECHO_PORT <'$BIG' | sha256sum" \
		>"$out" 2>&1
	check "v$v: $TOPO_BIG_MB MiB through the TCP echo comes back intact" \
		test "$(cut -c1-64 "$out")" = "$TOPO_BIG_SHA256"
done
for d in "$TOPO_OTHER4" "$TOPO_OTHER6"; do
	topo_wait "close event of the echo to $d" 10 \
		sh -c "grep -F '\"event\":\"close\"' '$A' | grep -qF '\"dst\":\"$d\"'"
	line=$(grep -F '"event":"close"' "$A" | grep -F "\"dst\":\"$d\"" | head -1)
	check "echo to $d: close event has bytes_up = bytes_down = $SIZE" \
		sh -c "echo '$line' | grep -qF '\"bytes_up\":$SIZE,\"bytes_down\":$SIZE,'"
done
grep -F '"event":"tcp"' "$A" | grep -F "\"dst\":\"$TOPO_OTHER4\"" >"$TOPO_DIR/echo-ev" || true
check "the echo stream was allowed by the IP-literal rule (allow-addr)" \
	grep -qF '"reason":"allow-addr"' "$TOPO_DIR/echo-ev"
echo "    transfers took $(($(date +%s) - t0)) s"

check "moat enforce stopped cleanly" moat_stop "$C_PID"
finish
