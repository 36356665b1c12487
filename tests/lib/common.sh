# shellcheck shell=bash
# Assertions for integration tests, so a test reads like its specification:
#
#   check "allowed.test answers over TLS" in_H curl -sf --cacert "$TOPO_CA" https://allowed.test/
#   expect_fail "denied.test is refused" in_H curl -sf https://denied.test/
#   check_output "body names the server" "name=allowed.test" in_H curl -s http://allowed.test/
#   assert_contains "$TOPO_NGINX_LOG" '"host":"allowed.test"'
#   skip "needs podman"          # exit 77: the runner reports SKIP
#   finish                       # exit 1 if any check failed
#
# Each check prints "ok - DESC" or "FAIL - DESC" (with the command's output, indented).
# Environment from tests/run: MOAT BUILD SRC HELPERS.

_CHECKS=0
_FAILED=0
_CHECK_OUT=$(mktemp /tmp/moat-check.XXXXXX)
# remove the scratch file even when a topology trap replaces ours
_common_cleanup() { rm -f "$_CHECK_OUT"; }
trap _common_cleanup EXIT

_pass() {
	_CHECKS=$((_CHECKS + 1))
	echo "ok - $1"
}

_fail() {
	_CHECKS=$((_CHECKS + 1))
	_FAILED=$((_FAILED + 1))
	echo "FAIL - $1"
	if [ -s "$_CHECK_OUT" ]; then
		tail -n 20 "$_CHECK_OUT" | sed 's/^/    | /'
	fi
}

# check DESC CMD...: CMD must exit 0.
check() {
	local desc=$1
	shift
	if "$@" >"$_CHECK_OUT" 2>&1; then
		_pass "$desc"
	else
		echo "    exit status $? from: $*" >>"$_CHECK_OUT"
		_fail "$desc"
	fi
}

# expect_fail DESC CMD...: CMD must exit non-zero.
expect_fail() {
	local desc=$1
	shift
	if "$@" >"$_CHECK_OUT" 2>&1; then
		echo "    unexpectedly succeeded: $*" >>"$_CHECK_OUT"
		_fail "$desc"
	else
		_pass "$desc"
	fi
}

# expect_status DESC STATUS CMD...: CMD must exit with STATUS.
expect_status() {
	local desc=$1 want=$2 rc=0
	shift 2
	"$@" >"$_CHECK_OUT" 2>&1 || rc=$?
	if [ "$rc" = "$want" ]; then
		_pass "$desc"
	else
		echo "    exit status $rc, expected $want, from: $*" >>"$_CHECK_OUT"
		_fail "$desc"
	fi
}

# check_output DESC STRING CMD...: CMD must exit 0 and print STRING (fixed string).
check_output() {
	local desc=$1 want=$2 rc=0
	shift 2
	"$@" >"$_CHECK_OUT" 2>&1 || rc=$?
	if [ "$rc" = 0 ] && grep -qF -- "$want" "$_CHECK_OUT"; then
		_pass "$desc"
	else
		echo "    exit status $rc; expected output containing '$want' from: $*" >>"$_CHECK_OUT"
		_fail "$desc"
	fi
}

# assert_contains FILE STRING [DESC]: FILE holds STRING (fixed string).
assert_contains() {
	local file=$1 want=$2 desc=${3:-"$1 contains '$2'"}
	if grep -qF -- "$want" "$file" 2>/dev/null; then
		: >"$_CHECK_OUT"
		_pass "$desc"
	else
		{ echo "    '$want' not found in $file:"; tail -n 10 "$file" 2>&1; } >"$_CHECK_OUT"
		_fail "$desc"
	fi
}

# assert_not_contains FILE STRING [DESC]
assert_not_contains() {
	local file=$1 bad=$2 desc=${3:-"$1 does not contain '$2'"}
	if grep -qF -- "$bad" "$file" 2>/dev/null; then
		{ echo "    '$bad' found in $file:"; grep -F -- "$bad" "$file" | head -5; } >"$_CHECK_OUT"
		_fail "$desc"
	else
		: >"$_CHECK_OUT"
		_pass "$desc"
	fi
}

# need_root, need_cmd CMD..., need_moat: skip (exit 77) when a precondition is missing.
skip() {
	echo "SKIP: $*"
	_common_cleanup
	exit 77
}
need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root"; }
need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "needs $c"
	done
}
# A missing moat binary is a failure, not a skip: the build is broken.
need_moat() {
	if [ -z "${MOAT:-}" ] || [ ! -x "$MOAT" ]; then
		echo "FAIL - moat binary not found at '${MOAT:-}'"
		_common_cleanup
		exit 1
	fi
}

# finish: summary line; exit 1 if any check failed (or none ran).
finish() {
	_common_cleanup
	if [ "$_CHECKS" -eq 0 ]; then
		echo "no checks ran"
		exit 1
	fi
	echo "$((_CHECKS - _FAILED))/$_CHECKS checks passed"
	[ "$_FAILED" -eq 0 ] || exit 1
	exit 0
}
