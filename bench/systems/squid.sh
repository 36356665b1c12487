# shellcheck shell=bash
# squid: Debian's squid-openssl in H on TPROXY sockets (bench/conf/squid.conf): TLS peeked
# at step 1 and spliced by SNI, plain HTTP judged by Host.  Squid connects upstream from
# the client's own address, so H delivers the answers to Squid's transparent sockets
# (the "socket transparent" rule of bench_nft_up).
squid_up() {
	bench_client squid 2 || return 1
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$W/squid-ca.key" -out "$W/squid-ca.pem" -days 2 \
		-subj "/CN=moat bench squid CA" 2>/dev/null || return 1
	chmod 644 "$W/squid-ca.key"
	sed -e "s|@W@|$W|g" -e "s|@NS@|$TOPO_DNS4|g" "$BENCH/conf/squid.conf" >"$W/squid.conf"
	chown proxy "$W"
	topo_spawn H "$W/squid.out" squid -N -f "$W/squid.conf"
	SYS_PIDS[squid]=$TOPO_LAST_PID
	topo_wait "squid listening" 20 bench_listening 3130 || {
		cat "$W/squid.out" "$W/squid-cache.log" >&2; return 1; }
}
