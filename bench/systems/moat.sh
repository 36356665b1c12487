# shellcheck shell=bash
# moat: `moat enforce` on an empty client namespace; the profile allows allowed.test on
# 443 and 80, so every connection is TPROXY'd to moat in H, judged, and relayed.
moat_up() {
	local ns
	ns=$(topo_netns_c moat) || return 1
	SYS_NS[moat]=$ns
	mkdir -p "/etc/netns/$ns"
	echo "nameserver $TOPO_DNS4" >"/etc/netns/$ns/resolv.conf"
	topo_defer "rm -rf /etc/netns/$ns"
	echo '{"network":{"outbound":{"allow_host":["allowed.test"],"allow_port":[443,80]}}}' \
		>"$W/moat-profile.json"
	topo_spawn H "$W/moat.out" "$MOAT" enforce --netns "/run/netns/$ns" \
		--profile "$W/moat-profile.json" --ready-file "$W/moat.ready"
	SYS_PIDS[moat]=$TOPO_LAST_PID
	topo_wait "moat enforce" 20 test -s "$W/moat.ready" || { cat "$W/moat.out" >&2; return 1; }
}
