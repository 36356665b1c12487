# shellcheck shell=bash
# direct: the client namespace routed through H with no proxy and no rules (the limit).
direct_up() {
	bench_client direct 1 || return 1
	SYS_PIDS[direct]=""
}
