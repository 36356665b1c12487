# shellcheck shell=bash
# haproxy: Debian's HAProxy in H on TPROXY sockets (bind ... transparent), TCP mode with
# req.ssl_sni for TLS, HTTP mode with a Host check for plain HTTP (bench/conf/haproxy.cfg).
haproxy_up() {
	bench_client haproxy 4 || return 1
	cp "$BENCH/conf/haproxy.cfg" "$W/haproxy.cfg"
	topo_spawn H "$W/haproxy.out" haproxy -db -f "$W/haproxy.cfg"
	SYS_PIDS[haproxy]=$TOPO_LAST_PID
	topo_wait "haproxy listening" 20 bench_listening 5443 || {
		cat "$W/haproxy.out" >&2; return 1; }
}
