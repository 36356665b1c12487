# shellcheck shell=bash
# The test image localhost/moat-test:latest: busybox (static), the static tlsclient and pause
# helpers, and just enough glibc for the static tlsclient to resolve names (glibc loads its NSS
# modules at run time even in a static program).  Imported with `podman import` from a rootfs
# tarball, as no registry is reachable.
#
#   . tests/lib/image.sh
#   image_build HELPERS_DIR   # needs CONTAINERS_CONF/CONTAINERS_STORAGE_CONF (tests/lib/podman.sh)
#
# Idempotent: the tarball is cached under $MOAT_IMAGE_CACHE (default /var/tmp/moat-test-image)
# keyed by the content of its inputs, and the import is skipped when the store already holds an
# image labelled with the same key.  The static helpers are built there from tests/helpers/ when
# HELPERS_DIR lacks static ones.

MOAT_TEST_IMAGE=localhost/moat-test:latest

_image_static() { file -L "$1" 2>/dev/null | grep -q 'statically linked'; }

# image_helper NAME SRC HELPERS_DIR CACHE: prints the path of a static build of NAME
_image_helper() {
	local name=$1 src=$2 helpers=$3 cache=$4 out
	if [ -x "$helpers/$name" ] && _image_static "$helpers/$name"; then
		echo "$helpers/$name"
		return 0
	fi
	out=$cache/$name
	if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
		cc -static -O2 -std=gnu11 -D_GNU_SOURCE -o "$out.tmp" "$src" -lssl -lcrypto \
			-lpthread 2>"$cache/$name.log" || { cat "$cache/$name.log" >&2; return 1; }
		mv "$out.tmp" "$out"
	fi
	echo "$out"
}

image_build() {
	local helpers=${1:-} cache=${MOAT_IMAGE_CACHE:-/var/tmp/moat-test-image}
	local src root pause tlsclient key lib f
	src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	mkdir -p "$cache" || return 1
	pause=$(_image_helper pause "$src/tests/helpers/pause.c" "$helpers" "$cache") || return 1
	tlsclient=$(_image_helper tlsclient "$src/tests/helpers/tlsclient.c" "$helpers" "$cache") ||
		return 1
	lib=/lib/x86_64-linux-gnu
	key=$(cat /bin/busybox "$pause" "$tlsclient" $lib/libnss_dns.so.2 $lib/libnss_files.so.2 \
		$lib/libc.so.6 $lib/libresolv.so.2 | sha256sum | cut -c1-16)
	if podman image inspect --format '{{index .Labels "dev.moat.key"}}' "$MOAT_TEST_IMAGE" \
		2>/dev/null | grep -qx "$key"; then
		return 0
	fi
	if [ ! -s "$cache/rootfs-$key.tar" ]; then
		root=$(mktemp -d "$cache/root.XXXXXX")
		mkdir -p "$root"/{bin,sbin,etc,tmp,proc,sys,dev,root,mnt,usr/bin,lib64,$lib}
		chmod 1777 "$root/tmp"
		cp /bin/busybox "$root/bin/busybox"
		for f in $("$root/bin/busybox" --list); do
			[ -e "$root/bin/$f" ] || ln -s busybox "$root/bin/$f"
		done
		cp "$pause" "$root/bin/pause"
		cp "$tlsclient" "$root/bin/tlsclient"
		for f in libnss_dns.so.2 libnss_files.so.2 libc.so.6 libresolv.so.2; do
			cp -L "$lib/$f" "$root$lib/$f"
		done
		cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
		printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' \
			>"$root/etc/passwd"
		printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
		printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
		tar -C "$root" --numeric-owner -cf "$cache/rootfs-$key.tar.tmp" . &&
			mv "$cache/rootfs-$key.tar.tmp" "$cache/rootfs-$key.tar"
		rm -rf "$root"
	fi
	podman import --change "LABEL dev.moat.key=$key" --change 'CMD ["/bin/sh"]' \
		"$cache/rootfs-$key.tar" "$MOAT_TEST_IMAGE" >"$cache/import.log" 2>&1 ||
		{ cat "$cache/import.log" >&2; return 1; }
}
