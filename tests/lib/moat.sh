# shellcheck shell=bash
# moat in H for integration tests: starting and stopping `moat enforce`, a namespace C
# confined by it, what moat leaves in H, table counters and audit-log queries.  Sourced
# after common.sh and topo.sh:
#
#   . "$SRC/tests/lib/moat.sh"
#   before=$(h_state)
#   enforce_up c "$PROFILE" || { echo "FAIL - moat enforce did not come up"; exit 1; }
#   check_output "allowed.test works" "name=allowed.test" in_C curl -s http://allowed.test/
#   check_audit "allow event" "$C_AUDIT" '"event":"http"' '"verdict":"allow"'
#   moat_stop "$C_PID"
#   check "nothing of moat is left in H" no_moat_left
#   check "H is as before" test "$before" = "$(h_state)"
#
# Constants: MOAT_FWMARK (the fwmark of moat's policy routing rules in H) and MOAT_RTABLE
#   (their routing table).
# Starting and stopping moat:
#   enforce_bg PREFIX ENFORCE-ARGS...: `moat enforce ENFORCE-ARGS --audit-log PREFIX.audit
#     --ready-file PREFIX.ready` in H, in the background (output in PREFIX.log; killed at
#     teardown if still there), run under the command prefix in the array ENFORCE_WRAP if it
#     is not empty.  Moat's PID in EPID.  Does not wait for the ready file.
#   enforce_up TAG PROFILE [ENFORCE-ARGS...]: a new namespace C ($(topo_netns_c TAG)) whose
#     resolv.conf names U's resolver (which moat intercepts like any other), confined by
#     enforce_bg $TOPO_DIR/enforce-TAG --netns ... --profile PROFILE ENFORCE-ARGS; returns
#     once the ready file is there (10 s at most; else prints moat's output, returns 1).
#     Sets C_NS (the namespace), C_AUDIT (the audit log), C_PID (moat's PID).
#   in_C CMD...: CMD in the namespace C_NS.
#   moat_stop PID [SIGNAL]: sends SIGNAL (default TERM) to moat, waits for it and returns
#     its exit status.
#   ready_val FILE KEY: the value of KEY in a ready file (KEY=VALUE lines).
# What moat leaves in H:
#   no_moat_left: succeeds when H has no moat_* table, no moat-* link, no rule with moat's
#     fwmark and nothing in its routing table (v4 and v6); else prints what is left.
#   h_state: H's tables, links, rules and routes (not local/broadcast/multicast/link-local
#     ones), to compare before and after.
# Counters of the table inet moat_ID:
#   counter ID NAME: the packets of the named counter.
#   counter_grew ID NAME BEFORE: the counter now holds more than BEFORE (prints both).
# Audit logs (JSON Lines; STRINGs are fixed strings):
#   audit_sandbox_id FILE: the sandbox id of the first line of FILE that names one.
#   audit_line FILE STRING...: one line of FILE holds every STRING.
#   audit_has FILE STRING...: the same, polled for 5 s (events from NFLOG come asynchronously).
#   check_audit DESC FILE STRING...: a check (common.sh) that audit_line holds; on failure
#     it shows the last lines of FILE other than dns events.

MOAT_FWMARK=0x4d4f0001
MOAT_RTABLE=19791
ENFORCE_WRAP=()

enforce_bg() {
	local prefix=$1
	shift
	topo_spawn H "$prefix.log" "${ENFORCE_WRAP[@]}" "$MOAT" enforce "$@" \
		--audit-log "$prefix.audit" --ready-file "$prefix.ready"
	EPID=$TOPO_LAST_PID
}

# shellcheck disable=SC2034 # C_AUDIT, C_PID are for the test
enforce_up() {
	local tag=$1 prof=$2 prefix=$TOPO_DIR/enforce-$1
	shift 2
	C_NS=$(topo_netns_c "$tag") || return 1
	mkdir -p "/etc/netns/$C_NS"
	echo "nameserver $TOPO_DNS4" >"/etc/netns/$C_NS/resolv.conf"
	topo_defer "rm -rf /etc/netns/$C_NS"
	C_AUDIT=$prefix.audit
	enforce_bg "$prefix" --netns "/run/netns/$C_NS" --profile "$prof" "$@"
	C_PID=$EPID
	topo_wait "moat enforce ($tag)" 10 test -s "$prefix.ready" || {
		sed 's/^/    | /' "$prefix.log"
		return 1
	}
}

in_C() { ip netns exec "$C_NS" "$@"; }

moat_stop() {
	local rc=0
	kill -"${2:-TERM}" "$1" 2>/dev/null
	wait "$1" 2>/dev/null || rc=$?
	return $rc
}

ready_val() { sed -n "s/^$2=//p" "$1"; }

no_moat_left() {
	local t l r
	t=$(in_H nft list tables | grep moat_) && { echo "tables: $t"; return 1; }
	l=$(in_H ip -o link show | awk -F': ' '{print $2}' | grep '^moat-') &&
		{ echo "links: $l"; return 1; }
	r=$(in_H ip rule show | grep -i "fwmark $MOAT_FWMARK") && { echo "rule: $r"; return 1; }
	r=$(in_H ip -6 rule show | grep -i "fwmark $MOAT_FWMARK") && { echo "rule6: $r"; return 1; }
	r=$(in_H ip route show table $MOAT_RTABLE 2>/dev/null) && [ -n "$r" ] &&
		{ echo "route: $r"; return 1; }
	r=$(in_H ip -6 route show table $MOAT_RTABLE 2>/dev/null) && [ -n "$r" ] &&
		{ echo "route6: $r"; return 1; }
	return 0
}

h_state() {
	in_H nft list tables
	in_H ip -o link show | awk -F': ' '{print $2}'
	in_H ip rule show
	in_H ip -6 rule show
	in_H ip route show table all | grep -v "^local\|^broadcast\|^multicast\|^ff00\|^fe80"
}

counter() {
	in_H nft list counter inet "moat_$1" "$2" | grep -o 'packets [0-9]*' | cut -d' ' -f2
}

counter_grew() {
	local now
	now=$(counter "$1" "$2") || return 1
	echo "$2: $3 -> $now"
	[ "$now" -gt "$3" ]
}

audit_sandbox_id() { grep -o '"sandbox":"[^"]*"' "$1" | head -n1 | cut -d'"' -f4; }

audit_line() {
	local f=$1
	shift
	awk -v n=$# 'BEGIN { for (i = 1; i < ARGC; i++) want[i] = ARGV[i]; ARGC = 1 }
		{ ok = 1; for (i = 1; i <= n; i++) if (index($0, want[i]) == 0) { ok = 0; break }
		  if (ok) { found = 1; exit } }
		END { exit found ? 0 : 1 }' "$@" <"$f"
}

audit_has() { topo_wait "audit $*" 5 audit_line "$@"; }

check_audit() {
	local desc=$1 f=$2
	shift 2
	if audit_line "$f" "$@"; then
		: >"$_CHECK_OUT"
		_pass "$desc"
	else
		{ echo "    no line of $f holds: $*"; grep -v '"event":"dns"' "$f" | tail -n 8; } \
			>"$_CHECK_OUT"
		_fail "$desc"
	fi
}
