# shellcheck shell=bash
# Long-lived `moat run` sandboxes for integration tests, sourced after common.sh and topo.sh
# (it sources moat.sh too; call sb_init after topo_up).  The workload of each sandbox is a
# small agent (sh) that runs the command files the test drops into a shared directory, so
# each case is checked while moat runs:
#
#   need_python                        # PY, or skip
#   D=$TOPO_DIR/l4
#   sb_init "$D"                       # SB_DIR=$D (made), writes $D/agent.sh
#   probe_py_write "$D/probe.py"
#   sb_start s "$P" || { echo "FAIL - sandbox did not start"; exit 1; }
#   check_output "runs as root" "uid=0" sb_run s "id"
#   ID=$(sb_id s)
#   audit_mark s
#   expect_status "8443 dropped" 3 sb_run s "$PY $D/probe.py tcp 198.18.1.1 8443"
#   check "drop event" audit_wait s '"event":"drop"' '"dport":8443,'
#   expect_status "moat exits with the agent's status" 0 sb_stop s 0
#
# sb_init DIR: SB_DIR=DIR, the working directory of every sandbox (DIR differs per test).
# sb_start NAME PROFILE: `moat run --profile PROFILE --audit-log $SB_DIR/NAME.audit` in H, in
#   the background, with the agent on $SB_DIR/NAME/; moat's output in $SB_DIR/NAME.moat.log;
#   returns once the agent is up (20 s at most).  SB_PID[NAME] is moat's PID (killed at
#   teardown if still there).
# sb_run NAME SHELL-COMMAND: runs it in the sandbox (req.N -> out.N, rc.N in $SB_DIR/NAME/);
#   prints its output and returns its status, 99 if it did not end within SB_RUN_TIMEOUT
#   seconds (default 60).  SB_N[NAME] is the number of the next request (a test that runs
#   sb_run in a background subshell sets it afterwards).
# sb_stop NAME [STATUS]: the agent exits with STATUS (default 0); returns moat's exit status.
# sb_id NAME: the sandbox id, from the first line of its audit log that names one.
# audit_mark NAME / audit_new NAME PATTERN...: audit_new succeeds when some line of NAME's
#   audit log written since the mark holds every PATTERN (fixed strings);
#   audit_wait NAME PATTERN...: polls audit_new for 5 s (drop events come through NFLOG,
#   asynchronously).
# need_python: PY is python3 (/usr/bin/python3, else the one on PATH); skips the test without.
# probe_py_write FILE: writes probe.py, a reachability probe run as
#   `python3 FILE tcp|udp|icmp HOST [PORT]`; exit 0 = an answer came back, 3 = timed out,
#   4 = refused/unreachable, 5 = could not even send (EPERM...); 1 s per attempt.
#   tcp sends "moat-probe\n" and waits for bytes back (the TCP echo), udp a datagram
#   (the UDP echo), icmp an echo request through a datagram ICMP socket.

declare -F audit_line >/dev/null || . "$SRC/tests/lib/moat.sh"

SB_DIR=""
: "${SB_RUN_TIMEOUT:=60}"
declare -gA SB_PID SB_N
declare -gA _SB_AMARK

sb_init() {
	SB_DIR=$1
	mkdir -p "$SB_DIR"
	# The agent: runs $dir/req.N in order, writes out.N and rc.N; exits when $dir/quit
	# appears, with the status written in it.
	cat >"$SB_DIR/agent.sh" <<'EOF'
dir=$1
n=0
: >"$dir/ready"
while :; do
	if [ -e "$dir/req.$n" ]; then
		sh "$dir/req.$n" >"$dir/out.$n" 2>&1
		echo $? >"$dir/rc.tmp"
		mv "$dir/rc.tmp" "$dir/rc.$n"
		n=$((n + 1))
	elif [ -e "$dir/quit" ]; then
		exit "$(cat "$dir/quit")"
	else
		sleep 0.02
	fi
done
EOF
}

sb_start() {
	local name=$1 profile=$2
	mkdir -p "$SB_DIR/$name"
	SB_N[$name]=0
	ip netns exec "$TOPO_H" "$MOAT" run --profile "$profile" --audit-log "$SB_DIR/$name.audit" \
		-- sh "$SB_DIR/agent.sh" "$SB_DIR/$name" </dev/null >"$SB_DIR/$name.moat.log" 2>&1 &
	SB_PID[$name]=$!
	_topo_record_pid "${SB_PID[$name]}"
	topo_wait "sandbox $name" 20 test -e "$SB_DIR/$name/ready"
}

sb_run() {
	local name=$1 n=${SB_N[$1]} dir=$SB_DIR/$1
	SB_N[$name]=$((n + 1))
	printf '%s\n' "$2" >"$dir/req.tmp"
	mv "$dir/req.tmp" "$dir/req.$n"
	topo_wait "request $n in $name" "$SB_RUN_TIMEOUT" test -e "$dir/rc.$n" || return 99
	cat "$dir/out.$n"
	return "$(cat "$dir/rc.$n")"
}

sb_stop() {
	local name=$1 rc=0
	echo "${2:-0}" >"$SB_DIR/$name/quit"
	wait "${SB_PID[$name]}" || rc=$?
	return $rc
}

sb_id() { audit_sandbox_id "$SB_DIR/$1.audit"; }

audit_mark() { _SB_AMARK[$1]=$(wc -l <"$SB_DIR/$1.audit"); }
audit_new() {
	local name=$1 lines p
	shift
	lines=$(tail -n +"$((_SB_AMARK[$name] + 1))" "$SB_DIR/$name.audit")
	for p in "$@"; do
		lines=$(grep -F -- "$p" <<<"$lines") || return 1
	done
	[ -n "$lines" ]
}
audit_wait() {
	local name=$1
	shift
	topo_wait "audit event $*" 5 audit_new "$name" "$@"
}

need_python() {
	PY=/usr/bin/python3
	[ -x "$PY" ] || PY=$(command -v python3) || skip "needs python3"
}

probe_py_write() {
	cat >"$1" <<'EOF'
import errno, socket, sys
kind, host = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if kind == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect((host, port))
        s.sendall(b"moat-probe\n")
        d = s.recv(100)
        print("connected, got %r" % d)
        sys.exit(0 if d else 2)
    if kind == "udp":
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(1)
        s.sendto(b"moat-probe", (host, port))
        d, a = s.recvfrom(100)
        print("answer %r from %s" % (d, a[0]))
        sys.exit(0)
    if kind == "icmp":
        proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
        s = socket.socket(fam, socket.SOCK_DGRAM, proto)
        s.settimeout(1)
        typ = 128 if fam == socket.AF_INET6 else 8
        s.sendto(bytes([typ, 0, 0, 0, 0, 1, 0, 1]) + b"moat", (host, 0))
        d, a = s.recvfrom(100)
        print("echo reply from %s" % a[0])
        sys.exit(0)
except socket.timeout:
    print("timeout"); sys.exit(3)
except OSError as e:
    print("error: %s" % e)
    if e.errno in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT):
        sys.exit(5)
    sys.exit(4)
EOF
}
