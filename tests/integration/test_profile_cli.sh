#!/bin/bash
# moat profile: check, show, explain and list from the command line.  Needs no
# network and no namespaces; MOAT is the binary, SRC the source tree.
set -u
: "${MOAT:?MOAT must name the moat binary}" "${SRC:?SRC must name the source tree}"
[ -x "$MOAT" ] || { echo "FAIL - moat binary not found at '$MOAT'"; exit 1; }
command -v python3 >/dev/null || { echo "skip - python3 not installed"; exit 77; }

failed=0
ok() { echo "ok - $1"; }
bad() { echo "FAIL - $1"; failed=$((failed + 1)); }
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Runs "$@", expects exit status $1 (shifted); output kept in $out.
status_is() {
	local want=$1 desc=$2
	shift 2
	"$@" >"$out" 2>&1
	local got=$?
	if [ "$got" -eq "$want" ]; then
		ok "$desc"
	else
		bad "$desc (exit $got, want $want)"
		sed 's/^/    /' "$out"
	fi
}

contains() {
	if grep -qF -- "$2" "$out"; then ok "$1"; else bad "$1: no '$2' in:"; sed 's/^/    /' "$out"; fi
}

# every bad profile: exit 2 and exactly one error line naming it
bad_dir=$SRC/tests/profiles/bad
status_is 2 "check of tests/profiles/bad exits 2" "$MOAT" profile check "$bad_dir"
n_files=$(ls "$bad_dir"/*.json | wc -l)
n_lines=$(wc -l <"$out")
if [ "$n_files" -ge 15 ] && [ "$n_lines" -eq "$n_files" ]; then
	ok "one error line per bad file ($n_files files)"
else
	bad "one error line per bad file: $n_files files, $n_lines lines"
	sed 's/^/    /' "$out"
fi
for f in "$bad_dir"/*.json; do
	if [ "$(grep -c -- "^$f[:]" "$out")" -ne 1 ]; then
		bad "$f: not exactly one line naming it"
	fi
done
if grep -q ': ok$' "$out"; then bad "a bad profile reported ok"; fi
status_is 2 "unknown key is an error" "$MOAT" profile check "$bad_dir/unknown-key.json"
contains "the unknown key names its field and suggests the right one" \
	'network.outbound.allow_hosts: unknown key (did you mean "allow_host"?)'
status_is 2 "malformed JSON is an error" "$MOAT" profile check "$bad_dir/malformed-json.json"
contains "malformed JSON gives line and column" "malformed-json.json:4:35: malformed JSON"

# good profiles and built-ins check clean
status_is 0 "tests/profiles/good checks clean" "$MOAT" profile check "$SRC/tests/profiles/good"
contains "good files print ok" "toolhive-none.json: ok"
builtins=$(cd "$SRC/profiles/builtin" && ls *.json | sed 's/\.json$//')
for b in $builtins; do
	status_is 0 "built-in $b checks clean" "$MOAT" profile check "$b"
	if grep -q 'warning' "$out"; then bad "built-in $b has warnings"; sed 's/^/    /' "$out"; fi
done
status_is 2 "a mix of good and bad exits 2" "$MOAT" profile check github "$bad_dir/port-zero.json"
status_is 2 "an unknown built-in is an error" "$MOAT" profile check nosuchprofile
contains "an unknown built-in lists the built-ins" "unknown profile (built-ins: none, network, github"

# list
status_is 0 "list exits 0" "$MOAT" profile list
for b in none network github npm pypi anthropic openai; do
	contains "list shows $b and where it was found" "$b"
done
if grep -q 'not found' "$out"; then bad "list could not find a built-in"; fi

# explain
status_is 0 "explain github api.github.com:443 allows" "$MOAT" profile explain github api.github.com:443
contains "explain names the deciding rule" 'allow: api.github.com:443 matches "api.github.com" (network.outbound.allow_host[1]) on port 443 (allow_port)'
contains "explain gives the reason" "reason: allow-host"
status_is 0 "explain github raw.githubusercontent.com allows (port 443 by default)" \
	"$MOAT" profile explain github raw.githubusercontent.com
contains "a wildcard rule decides" '".githubusercontent.com"'
status_is 1 "explain github evilgithub.com:443 denies" "$MOAT" profile explain github evilgithub.com:443
contains "deny reason host-not-allowed" "reason: host-not-allowed"
status_is 1 "explain github github.com.evil.com denies" "$MOAT" profile explain github github.com.evil.com:443
status_is 1 "explain github api.github.com:80 denies" "$MOAT" profile explain github api.github.com:80
contains "deny reason port-not-allowed" "reason: port-not-allowed"
status_is 1 "explain github api.github.com --udp denies" "$MOAT" profile explain github api.github.com --udp
contains "deny reason transport-not-allowed" "reason: transport-not-allowed"
status_is 1 "explain none 127.0.0.1:80 denies" "$MOAT" profile explain none 127.0.0.1:80
contains "loopback is a closed class" "reason: loopback"
status_is 1 "explain network 169.254.169.254:80 denies even under allow-all" \
	"$MOAT" profile explain network 169.254.169.254:80
contains "link-local is a closed class" "reason: link-local"
status_is 0 "explain network example.com:25 allows" "$MOAT" profile explain network example.com:25
contains "allow-all reason" "reason: allow-all"
status_is 1 "explain github 127.1 denies as a bad name" "$MOAT" profile explain github 127.1:443
contains "numeric names are bad names" "reason: bad-name"
ext=$SRC/tests/profiles/good/moat-extensions.json
status_is 0 "explain a bracketed IPv6 address with its own port" "$MOAT" profile explain "$ext" "[2001:2::1]:443"
contains "address rule decides" "reason: allow-addr"
status_is 0 "explain a per-host port range" "$MOAT" profile explain "$ext" ports.example.com:8050
status_is 1 "explain outside the per-host port range" "$MOAT" profile explain "$ext" ports.example.com:8101
status_is 2 "explain with a bad port is a usage error" "$MOAT" profile explain github api.github.com:0
status_is 2 "explain with a missing host is a usage error" "$MOAT" profile explain github
status_is 2 "explain of a bad profile exits 2" "$MOAT" profile explain "$bad_dir/port-zero.json" a.example.com

# show
for p in github none network "$ext"; do
	status_is 0 "show $(basename "$p")" "$MOAT" profile show "$p"
	if python3 -m json.tool "$out" >/dev/null 2>&1; then
		ok "show $(basename "$p") prints valid JSON"
	else
		bad "show $(basename "$p") prints invalid JSON"; sed 's/^/    /' "$out"
	fi
done
"$MOAT" profile show "$ext" >"$out.json" 2>/dev/null
status_is 0 "show output checks clean" "$MOAT" profile check "$out.json"
rm -f "$out.json"

# usage
status_is 2 "no subcommand is a usage error" "$MOAT" profile
status_is 2 "an unknown subcommand is a usage error" "$MOAT" profile frobnicate
if [ "$(wc -l <"$out")" -eq 1 ]; then ok "usage errors are one line"; else bad "usage error is not one line"; fi
status_is 0 "profile --help" "$MOAT" profile --help
contains "usage lists explain" "moat profile explain FILE|NAME HOST[:PORT] [--udp]"

if [ "$failed" -ne 0 ]; then
	echo "$failed check(s) failed"
	exit 1
fi
echo "all checks passed"
exit 0
