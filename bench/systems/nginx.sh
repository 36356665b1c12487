# shellcheck shell=bash
# nginx: a second nginx, in H, behind an nft redirect (nginx cannot take TPROXY sockets):
# stream + ssl_preread routes TLS by SNI, the http module proxies the allowed Host
# (bench/conf/nginx.conf).  Its processes: the master and its workers.
nginx_up() {
	bench_client nginx 3 || return 1
	mkdir -p "$W/nginx-tmp"
	sed -e "s|@W@|$W|g" "$BENCH/conf/nginx.conf" >"$W/nginx.conf"
	topo_spawn H "$W/nginx.out" nginx -c "$W/nginx.conf" -g "user root;"
	NGINX_MASTER=$TOPO_LAST_PID
	SYS_PIDS[nginx]=$NGINX_MASTER
	topo_wait "nginx listening" 20 bench_listening 4443 || {
		cat "$W/nginx.out" "$W/nginx-error.log" >&2; return 1; }
}
# the master and every worker (workers are the master's children)
nginx_pids() { echo "$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')"; }
