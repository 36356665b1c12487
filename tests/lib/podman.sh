# shellcheck shell=bash
# A private podman API service for tests, with its own configuration and storage:
#
#   . tests/lib/podman.sh
#   podman_start DIR          # starts the service; sets PODMAN_SOCK, PODMAN_PID, and exports
#                             # CONTAINERS_CONF / CONTAINERS_STORAGE_CONF for the podman CLI
#   podman_stop               # stops it (by PID) and removes its containers
#   podman_up DIR             # with tests/lib/topo.sh: podman_start, and at teardown
#                             # podman_down (containers, service, store, in that order)
#
# DIR holds containers.conf, storage.conf, the storage itself (graph/, run/), the socket and
# the service log.  podman_start fails (status 1) when podman is missing or the socket does not
# come up within 20 s.
# Facts of these machines: only runc works (crun rejects the hybrid cgroup layout); root lacks
# CAP_SYS_RESOURCE, so the ulimits must be at most what it has; netns "none" keeps podman from
# ever setting up its bridge network.

PODMAN_SOCK=""
PODMAN_PID=""
PODMAN_DIR=""

podman_write_conf() {
	local dir=$1
	mkdir -p "$dir/graph" "$dir/run" "$dir/tmp"
	cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$dir/tmp"
CONF
	cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/graph"
runroot = "$dir/run"
CONF
}

podman_start() {
	local dir=$1 i
	command -v podman >/dev/null 2>&1 || { echo "podman is not installed" >&2; return 1; }
	PODMAN_DIR=$(mkdir -p "$dir" && cd "$dir" && pwd)
	podman_write_conf "$PODMAN_DIR"
	export CONTAINERS_CONF=$PODMAN_DIR/containers.conf
	export CONTAINERS_STORAGE_CONF=$PODMAN_DIR/storage.conf
	PODMAN_SOCK=$PODMAN_DIR/podman.sock
	rm -f "$PODMAN_SOCK"
	podman system service --time=0 "unix://$PODMAN_SOCK" >"$PODMAN_DIR/service.log" 2>&1 &
	PODMAN_PID=$!
	for i in $(seq 1 200); do
		if [ -S "$PODMAN_SOCK" ] &&
			curl -sf --max-time 2 --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null; then
			return 0
		fi
		kill -0 "$PODMAN_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "podman service did not come up; its log:" >&2
	tail -n 20 "$PODMAN_DIR/service.log" >&2
	podman_stop
	return 1
}

# Removes every container of this private store, then stops the service by its PID.
podman_stop() {
	if [ -n "$PODMAN_DIR" ] && [ -n "${CONTAINERS_CONF:-}" ]; then
		podman rm -af -t 0 >/dev/null 2>&1 || true
	fi
	if [ -n "$PODMAN_PID" ]; then
		kill -TERM "$PODMAN_PID" 2>/dev/null
		for _ in $(seq 1 50); do
			kill -0 "$PODMAN_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$PODMAN_PID" 2>/dev/null
		wait "$PODMAN_PID" 2>/dev/null
	fi
	PODMAN_PID=""
	return 0
}

# conmon processes of this private store that outlived their containers' removal (a store
# deleted under them): found by the store path on their command line, ended by PID.
podman_reap_conmon() {
	local f pid
	[ -n "$PODMAN_DIR" ] || return 0
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}
		pid=${pid%/cmdline}
		if tr '\0' ' ' <"$f" 2>/dev/null | grep -q "^/usr/bin/conmon .*$PODMAN_DIR/"; then
			pkill -KILL -P "$pid" 2>/dev/null
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	return 0
}

# Everything of the private podman, in the order that leaves nothing: the containers and
# the service first (podman needs its store for that), stray conmons, then whatever of
# the store is still mounted, then the store itself.
podman_down() {
	local dir=$PODMAN_DIR
	podman_stop
	podman_reap_conmon
	if [ -n "$dir" ]; then
		awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
			xargs -r umount -l 2>/dev/null
		rm -rf "$dir"
	fi
	return 0
}

podman_up() {
	topo_defer podman_down
	podman_start "$1"
}
