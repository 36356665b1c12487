# shellcheck shell=bash
# The C/H/U test topology (DESIGN.md, "Test topology"), sourced by integration tests.
#
#   . "$SRC/tests/lib/topo.sh"
#   topo_up                 # H + U namespaces, veth, addresses, routes, servers in U
#   in_H curl --cacert "$TOPO_CA" https://allowed.test/
#   topo_down               # also runs on EXIT/INT/TERM; idempotent
#
# Namespaces (all names start with "moat-", unique per run: moat-t<PID>-h, moat-t<PID>-u):
#   H  the enforcement host; moat runs here (in_H / topo_exec H).
#      veth "u0" 198.18.0.1/24, 2001:2::1/64; routes 198.18.1.0/24, 198.18.2.0/24,
#      2001:2:0:1::/64 via U; forwarding on (v4 and v6); resolv.conf -> 198.18.0.2.
#   U  the simulated internet. veth "h0" 198.18.0.2/24, 2001:2::2/64; the internet
#      hosts 198.18.1.1-9 and 2001:2:0:1::1-9 on its lo (/32, /128); routes 10.0.0.0/8,
#      100.64.0.0/10 and fd00::/8 back via H.
#   C  not made here: moat makes the workload's namespace.  topo_netns_c makes an extra
#      empty one (for `moat enforce`), deleted at teardown.
#
# Servers in U (all listen on every address of U, so any 198.18.1.x reaches them):
#   nginx   TLS on 443 and 8443, plain HTTP on 80 and 8080, one server (and one certificate
#           from the test CA $TOPO_CA) per name: allowed.test denied.test other.test
#           api.example.test www.example.test cdn.example.test.  Unknown names get the
#           default server (name=default, certificate for default.invalid).
#           Every response body is one line:
#             name=<server> host=<Host> uri=<uri> scheme=<http|https> port=<port> addr=<server addr>
#           GET /big      the file $TOPO_DIR/www/big.bin ($TOPO_BIG_MB MiB, default 8,
#                         sha256 in $TOPO_BIG_SHA256)
#           PUT/POST /upload  any size, any framing (chunked too); nginx reads the whole
#                         body, discards it and answers "upload name=<server> bytes=<N>"
#                         (status 200; N = body bytes received)
#           Access log: $TOPO_NGINX_LOG, one JSON object per request (host, sni, server_addr,
#           server_port, remote_addr, request, status, bytes_sent, request_length).
#   dnsmasq on 198.18.0.2 and 2001:2::2 port 53, UDP and TCP, answers zone "test" from its
#           own records only (nothing is forwarded; other names are NXDOMAIN/REFUSED):
#             allowed.test 198.18.1.1 2001:2:0:1::1     denied.test 198.18.1.2 ...::2
#             other.test   198.18.1.3 ...::3            api.example.test 198.18.1.4 ...::4
#             www.example.test 198.18.1.5 ...::5        cdn.example.test 198.18.1.6 ...::6
#             big.test     100 A records 198.18.2.1-100 (answer > 1232 bytes: TC over UDP
#                          even with EDNS, full answer over TCP; no server behind them)
#             ttl.test     198.18.1.7 2001:2:0:1::7 with TTL $TOPO_SHORT_TTL (2 s);
#                          every other record has TTL 300.
#           Query log: $TOPO_DNS_LOG.
#   echo    UDP echo on port 9000, TCP echo on port 9001 (tests/helpers/echo), all addresses.
#
# Exported: TOPO_DIR TOPO_H TOPO_U TOPO_PREFIX TOPO_CA TOPO_NGINX_LOG TOPO_DNS_LOG TOPO_BIG_MB
#   TOPO_BIG_SHA256 TOPO_H4 TOPO_H6 TOPO_U4 TOPO_U6 TOPO_DNS4 TOPO_DNS6 TOPO_<NAME>4/6 for
#   ALLOWED DENIED OTHER API WWW CDN TTL, TOPO_UDP_ECHO_PORT TOPO_TCP_ECHO_PORT.
#
# Other helpers: topo_exec NS CMD... (NS = H, U or a full netns name), in_H, in_U,
# topo_netns_c NAME (sets TOPO_C and prints the name), topo_spawn NS LOG CMD...
# (background process killed at teardown; sets TOPO_LAST_PID), topo_defer CMD (a shell
# command run at teardown, first), topo_wait DESC TIMEOUT CMD... (poll until CMD succeeds).
#
# Needs root, iproute2, nginx, dnsmasq, openssl, dig; HELPERS (the built tests/helpers)
# for the echo server.  Set TOPO_KEEP=1 to leave $TOPO_DIR in place for inspection.
# Works in tests with or without `set -e`.  topo_netns_c, topo_spawn and topo_defer record
# what they make in $TOPO_DIR, so they may also be called from a subshell ($(...)).

: "${TOPO_BIG_MB:=8}"
: "${TOPO_SHORT_TTL:=2}"
TOPO_PREFIX="moat-t$$-"
TOPO_H="${TOPO_PREFIX}h"
TOPO_U="${TOPO_PREFIX}u"
TOPO_H4=198.18.0.1 TOPO_H6=2001:2::1
TOPO_U4=198.18.0.2 TOPO_U6=2001:2::2
TOPO_DNS4=$TOPO_U4 TOPO_DNS6=$TOPO_U6
TOPO_ALLOWED4=198.18.1.1 TOPO_ALLOWED6=2001:2:0:1::1
TOPO_DENIED4=198.18.1.2 TOPO_DENIED6=2001:2:0:1::2
TOPO_OTHER4=198.18.1.3 TOPO_OTHER6=2001:2:0:1::3
TOPO_API4=198.18.1.4 TOPO_API6=2001:2:0:1::4
TOPO_WWW4=198.18.1.5 TOPO_WWW6=2001:2:0:1::5
TOPO_CDN4=198.18.1.6 TOPO_CDN6=2001:2:0:1::6
TOPO_TTL4=198.18.1.7 TOPO_TTL6=2001:2:0:1::7
TOPO_UDP_ECHO_PORT=9000 TOPO_TCP_ECHO_PORT=9001
TOPO_NAMES="allowed.test denied.test other.test api.example.test www.example.test cdn.example.test"
export TOPO_PREFIX TOPO_H TOPO_U TOPO_H4 TOPO_H6 TOPO_U4 TOPO_U6 TOPO_DNS4 TOPO_DNS6 \
	TOPO_ALLOWED4 TOPO_ALLOWED6 TOPO_DENIED4 TOPO_DENIED6 TOPO_OTHER4 TOPO_OTHER6 \
	TOPO_API4 TOPO_API6 TOPO_WWW4 TOPO_WWW6 TOPO_CDN4 TOPO_CDN6 TOPO_TTL4 TOPO_TTL6 \
	TOPO_UDP_ECHO_PORT TOPO_TCP_ECHO_PORT TOPO_BIG_MB TOPO_SHORT_TTL TOPO_NAMES
TOPO_DIR=""
_TOPO_UP=0

_topo_log() { echo "topo: $*" >&2; }

_topo_ns() {
	case "$1" in
	H | h) echo "$TOPO_H" ;;
	U | u) echo "$TOPO_U" ;;
	C | c) echo "${TOPO_C:?topo: no C namespace (topo_netns_c NAME)}" ;;
	*) echo "$1" ;;
	esac
}

topo_exec() {
	local ns
	ns=$(_topo_ns "$1") || return 1
	shift
	ip netns exec "$ns" "$@"
}
in_H() { ip netns exec "$TOPO_H" "$@"; }
in_U() { ip netns exec "$TOPO_U" "$@"; }

# topo_wait DESC TIMEOUT_SECONDS CMD...: polls CMD every 50 ms, fails after TIMEOUT.
topo_wait() {
	local desc=$1 timeout=$2 i n
	shift 2
	n=$((timeout * 20))
	for ((i = 0; i < n; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	_topo_log "timed out after ${timeout}s waiting for $desc"
	return 1
}

# Field 22 of /proc/PID/stat (start time), so teardown never kills a recycled PID.
_topo_starttime() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	set -- $stat
	echo "${20}"
}

_topo_alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat:0:1}" != Z ]
}

_topo_record_pid() {
	local st
	st=$(_topo_starttime "$1") || st=0
	echo "$1 $st" >>"$TOPO_DIR/pids"
}

# topo_spawn NS LOGFILE CMD...: runs CMD in NS in the background (stdout+stderr to
# LOGFILE, stdin from /dev/null), killed at teardown.  PID in TOPO_LAST_PID.
topo_spawn() {
	local ns log
	ns=$(_topo_ns "$1") || return 1
	log=$2
	shift 2
	ip netns exec "$ns" "$@" </dev/null >"$log" 2>&1 &
	TOPO_LAST_PID=$!
	_topo_record_pid "$TOPO_LAST_PID"
}

topo_defer() {
	echo "$*" >>"$TOPO_DIR/deferred"
}

_topo_add_netns() {
	ip netns add "$1" || return 1
	echo "$1" >>"$TOPO_DIR/netns"
}

# topo_netns_c NAME: an extra empty netns "<prefix>NAME" (lo down, nothing else), deleted
# at teardown.  Sets TOPO_C and prints the name.
topo_netns_c() {
	local ns="${TOPO_PREFIX}${1:-c}"
	_topo_add_netns "$ns" || return 1
	TOPO_C=$ns
	export TOPO_C
	echo "$ns"
}

_topo_make_certs() {
	local d=$TOPO_DIR/pki name
	mkdir -p "$d"
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$d/ca.key" -out "$d/ca.pem" -days 2 -subj "/CN=moat test CA $$" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
	for name in $TOPO_NAMES default.invalid; do
		openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-keyout "$d/$name.key" -out "$d/$name.csr" -subj "/CN=$name" \
			2>/dev/null || return 1
		printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
			"$name" >"$d/$name.ext"
		openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
			-CAcreateserial -days 2 -extfile "$d/$name.ext" -out "$d/$name.pem" \
			2>/dev/null || return 1
	done
	TOPO_CA=$d/ca.pem
	export TOPO_CA
}

# One nginx server block.  $1 = server name ("default" for the catch-all), $2 = cert base.
_topo_nginx_server() {
	local name=$1 cert=$2 ds="" sn=$1
	if [ "$name" = default ]; then
		ds=" default_server"
		sn=_
	fi
	cat <<EOF
	server {
		listen 80$ds;
		listen [::]:80$ds;
		listen 8080$ds;
		listen [::]:8080$ds;
		listen 443 ssl$ds;
		listen [::]:443 ssl$ds;
		listen 8443 ssl$ds;
		listen [::]:8443 ssl$ds;
		server_name $sn;
		ssl_certificate $TOPO_DIR/pki/$cert.pem;
		ssl_certificate_key $TOPO_DIR/pki/$cert.key;
		location / {
			return 200 "name=$name host=\$host uri=\$request_uri scheme=\$scheme port=\$server_port addr=\$server_addr\n";
		}
		location = /big {
			alias $TOPO_DIR/www/big.bin;
			default_type application/octet-stream;
		}
		location = /upload {
			client_max_body_size 0;
			client_body_buffer_size 1m;
			proxy_set_header X-Moat-Name $name;
			proxy_pass http://127.0.0.1:8089;
		}
	}
EOF
}

_topo_nginx_conf() {
	local name
	cat <<EOF
# generated by tests/lib/topo.sh
user root root;
worker_processes 2;
worker_rlimit_nofile 16384;
daemon off;
pid $TOPO_DIR/nginx/nginx.pid;
error_log $TOPO_DIR/nginx-error.log warn;
events { worker_connections 4096; }
http {
	default_type text/plain;
	sendfile on;
	keepalive_requests 100000;
	client_body_temp_path $TOPO_DIR/nginx/tmp/body;
	proxy_temp_path $TOPO_DIR/nginx/tmp/proxy;
	fastcgi_temp_path $TOPO_DIR/nginx/tmp/fastcgi;
	uwsgi_temp_path $TOPO_DIR/nginx/tmp/uwsgi;
	scgi_temp_path $TOPO_DIR/nginx/tmp/scgi;
	log_format moat escape=json '{"time":"\$time_iso8601","host":"\$host",'
		'"sni":"\$ssl_server_name","server_name":"\$server_name",'
		'"server_addr":"\$server_addr","server_port":"\$server_port",'
		'"remote_addr":"\$remote_addr","request":"\$request","status":"\$status",'
		'"bytes_sent":"\$bytes_sent","request_length":"\$request_length"}';
	access_log $TOPO_DIR/nginx-access.log moat;
	ssl_protocols TLSv1.2 TLSv1.3;
EOF
	# /upload lands here after nginx has read the whole body (any framing): the
	# proxied request carries its real length.
	cat <<EOF
	server {
		listen 127.0.0.1:8089;
		client_max_body_size 0;
		access_log off;
		location / {
			return 200 "upload name=\$http_x_moat_name bytes=\$content_length\n";
		}
	}
EOF
	_topo_nginx_server default default.invalid
	for name in $TOPO_NAMES; do
		_topo_nginx_server "$name" "$name"
	done
	echo "}"
}

_topo_dnsmasq_args() {
	local i
	echo "--conf-file=/dev/null"
	echo "--keep-in-foreground"
	echo "--no-resolv"
	echo "--no-hosts"
	echo "--user=root"
	echo "--port=53"
	echo "--bind-interfaces"
	echo "--listen-address=$TOPO_DNS4"
	echo "--listen-address=$TOPO_DNS6"
	echo "--local=/test/"
	echo "--local-ttl=300"
	echo "--log-queries=extra"
	echo "--log-facility=$TOPO_DNS_LOG"
	echo "--pid-file=$TOPO_DIR/dnsmasq.pid"
	echo "--host-record=allowed.test,$TOPO_ALLOWED4,$TOPO_ALLOWED6"
	echo "--host-record=denied.test,$TOPO_DENIED4,$TOPO_DENIED6"
	echo "--host-record=other.test,$TOPO_OTHER4,$TOPO_OTHER6"
	echo "--host-record=api.example.test,$TOPO_API4,$TOPO_API6"
	echo "--host-record=www.example.test,$TOPO_WWW4,$TOPO_WWW6"
	echo "--host-record=cdn.example.test,$TOPO_CDN4,$TOPO_CDN6"
	echo "--host-record=ttl.test,$TOPO_TTL4,$TOPO_TTL6,$TOPO_SHORT_TTL"
	for i in $(seq 1 100); do
		echo "--host-record=big.test,198.18.2.$i"
	done
}

_topo_net() {
	local h=$TOPO_H u=$TOPO_U i
	_topo_add_netns "$h" || return 1
	_topo_add_netns "$u" || return 1
	for ns in "$h" "$u"; do
		# addresses usable at once: no duplicate address detection in these namespaces
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.accept_dad=0 \
			net.ipv6.conf.all.accept_dad=0 || return 1
		ip -n "$ns" link set lo up || return 1
	done
	ip -n "$h" link add u0 type veth peer name h0 netns "$u" || return 1
	ip -n "$h" addr add "$TOPO_H4/24" dev u0 || return 1
	ip -n "$h" addr add "$TOPO_H6/64" dev u0 nodad || return 1
	ip -n "$h" link set u0 up || return 1
	ip -n "$u" addr add "$TOPO_U4/24" dev h0 || return 1
	ip -n "$u" addr add "$TOPO_U6/64" dev h0 nodad || return 1
	ip -n "$u" link set h0 up || return 1
	for i in 1 2 3 4 5 6 7 8 9; do
		ip -n "$u" addr add "198.18.1.$i/32" dev lo || return 1
		ip -n "$u" addr add "2001:2:0:1::$i/128" dev lo nodad || return 1
	done
	ip -n "$h" route add 198.18.1.0/24 via "$TOPO_U4" || return 1
	ip -n "$h" route add 198.18.2.0/24 via "$TOPO_U4" || return 1
	ip -n "$h" -6 route add 2001:2:0:1::/64 via "$TOPO_U6" || return 1
	ip -n "$u" route add 10.0.0.0/8 via "$TOPO_H4" || return 1
	ip -n "$u" route add 100.64.0.0/10 via "$TOPO_H4" || return 1
	ip -n "$u" -6 route add fd00::/8 via "$TOPO_H6" || return 1
	ip netns exec "$h" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
		|| return 1
	mkdir -p "/etc/netns/$h" || return 1
	echo "nameserver $TOPO_DNS4" >"/etc/netns/$h/resolv.conf"
}

_topo_servers() {
	local echo_bin=${HELPERS:-}/echo
	# nginx
	head -c $((TOPO_BIG_MB * 1024 * 1024)) /dev/urandom >"$TOPO_DIR/www/big.bin" || return 1
	TOPO_BIG_SHA256=$(sha256sum "$TOPO_DIR/www/big.bin" | cut -d' ' -f1)
	export TOPO_BIG_SHA256
	mkdir -p "$TOPO_DIR/nginx/tmp" || return 1
	_topo_nginx_conf >"$TOPO_DIR/nginx/nginx.conf" || return 1
	topo_spawn U "$TOPO_DIR/nginx.out" nginx -c "$TOPO_DIR/nginx/nginx.conf" \
		-p "$TOPO_DIR/nginx/" -e "$TOPO_DIR/nginx-error.log" || return 1
	_TOPO_NGINX_PID=$TOPO_LAST_PID
	# dnsmasq
	mapfile -t _topo_dargs < <(_topo_dnsmasq_args)
	topo_spawn U "$TOPO_DIR/dnsmasq.out" dnsmasq "${_topo_dargs[@]}" || return 1
	_TOPO_DNSMASQ_PID=$TOPO_LAST_PID
	# echo
	if [ ! -x "$echo_bin" ]; then
		_topo_log "no echo helper at '$echo_bin' (set HELPERS to the built tests/helpers)"
		return 1
	fi
	topo_spawn U "$TOPO_DIR/echo.out" "$echo_bin" --udp "$TOPO_UDP_ECHO_PORT" \
		--tcp "$TOPO_TCP_ECHO_PORT" --ready "$TOPO_DIR/echo.ready" || return 1
	_TOPO_ECHO_PID=$TOPO_LAST_PID

	topo_wait "nginx" 10 _topo_ready_nginx || { _topo_server_failed nginx; return 1; }
	topo_wait "dnsmasq" 10 _topo_ready_dns || { _topo_server_failed dnsmasq; return 1; }
	topo_wait "echo" 10 test -s "$TOPO_DIR/echo.ready" || { _topo_server_failed echo; return 1; }
}

_topo_ready_nginx() {
	_topo_alive "$_TOPO_NGINX_PID" || return 1
	in_U curl -sf -o /dev/null --max-time 1 --cacert "$TOPO_CA" \
		--resolve "allowed.test:443:$TOPO_ALLOWED4" https://allowed.test/
}

_topo_ready_dns() {
	_topo_alive "$_TOPO_DNSMASQ_PID" || return 1
	[ -n "$(in_H dig +short +time=1 +tries=1 @"$TOPO_DNS4" allowed.test A)" ]
}

_topo_server_failed() {
	local f
	_topo_log "$1 did not come up; its output:"
	for f in "$TOPO_DIR/$1.out" "$TOPO_DIR/$1-error.log"; do
		[ -s "$f" ] && sed 's/^/  /' "$f" >&2
	done
	return 0
}

_topo_on_exit() {
	topo_down
	if declare -F _common_cleanup >/dev/null; then
		_common_cleanup
	fi
}

topo_up() {
	if [ "$(id -u)" -ne 0 ]; then
		_topo_log "needs root"
		return 1
	fi
	[ "$_TOPO_UP" = 1 ] && return 0
	TOPO_DIR=$(mktemp -d /tmp/moat-topo.XXXXXX) || return 1
	mkdir -p "$TOPO_DIR/www"
	: >"$TOPO_DIR/pids"
	: >"$TOPO_DIR/netns"
	: >"$TOPO_DIR/deferred"
	TOPO_NGINX_LOG=$TOPO_DIR/nginx-access.log
	TOPO_DNS_LOG=$TOPO_DIR/dnsmasq.log
	export TOPO_DIR TOPO_NGINX_LOG TOPO_DNS_LOG
	_TOPO_UP=1
	trap '_topo_on_exit' EXIT
	trap 'topo_down; trap - INT; kill -INT $$' INT
	trap 'topo_down; trap - TERM; kill -TERM $$' TERM
	if ! _topo_make_certs; then
		_topo_log "could not make the test certificates"
		topo_down
		return 1
	fi
	if ! _topo_net; then
		_topo_log "could not build the namespaces"
		topo_down
		return 1
	fi
	if ! _topo_servers; then
		topo_down
		return 1
	fi
	return 0
}

_topo_kill_pids() {
	local pid st now i alive
	[ -s "$TOPO_DIR/pids" ] || return 0
	while read -r pid st; do
		now=$(_topo_starttime "$pid") || continue
		[ "$st" = 0 ] || [ "$now" = "$st" ] || continue
		kill -TERM "$pid" 2>/dev/null || true
	done <"$TOPO_DIR/pids"
	for ((i = 0; i < 60; i++)); do
		alive=0
		while read -r pid st; do
			_topo_alive "$pid" && alive=1
		done <"$TOPO_DIR/pids"
		[ $alive = 0 ] && break
		sleep 0.05
	done
	while read -r pid st; do
		now=$(_topo_starttime "$pid") || continue
		[ "$st" = 0 ] || [ "$now" = "$st" ] || continue
		_topo_alive "$pid" && { kill -KILL "$pid" 2>/dev/null || true; }
	done <"$TOPO_DIR/pids"
	# reap our own children so no zombies stay behind
	while read -r pid st; do
		wait "$pid" 2>/dev/null || true
	done <"$TOPO_DIR/pids"
	return 0
}

topo_down() {
	local ns pid cmd
	[ "$_TOPO_UP" = 1 ] || return 0
	_TOPO_UP=0
	trap - INT TERM
	# hand the EXIT trap back to common.sh (its scratch file), if it is loaded
	if declare -F _common_cleanup >/dev/null; then
		trap _common_cleanup EXIT
	else
		trap - EXIT
	fi
	if [ -s "$TOPO_DIR/deferred" ]; then
		while IFS= read -r cmd; do
			eval "$cmd" || true
		done <"$TOPO_DIR/deferred"
	fi
	_topo_kill_pids
	# Whatever else still runs inside our own namespaces was started by this test.
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TOPO_PREFIX"); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null || true
		done
	done
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TOPO_PREFIX"); do
		ip netns delete "$ns" 2>/dev/null || _topo_log "could not delete netns $ns"
		rm -rf "/etc/netns/$ns"
	done
	rm -rf "/etc/netns/$TOPO_H" "/etc/netns/$TOPO_U"
	if [ -n "$TOPO_DIR" ] && [ -d "$TOPO_DIR" ]; then
		if [ "${TOPO_KEEP:-0}" = 1 ]; then
			_topo_log "kept $TOPO_DIR"
		else
			rm -rf "$TOPO_DIR"
		fi
	fi
	return 0
}
