#!/bin/sh
# rootfs.sh IMAGE DEST BINARY: the files of an image, gathered into DEST from
# a Debian bookworm system, with the shared libraries every executable loads.
#
#   svcproxy  the svcproxy binary and the netfilter tools it drives (both
#             iptables backends: it picks the node's at start, as upstream's
#             image does); needs iptables, nftables, conntrack, iproute2,
#             netbase installed. The Dockerfile runs it in a Debian bookworm
#             stage and `make images` on this machine, so that both build an
#             image of the same files.
#   agnhost   Kubernetes' e2e test server (the binary given) with the shell
#             tools the e2e tests run in it: busybox's applets, and bash,
#             curl, nc and GNU wget, whose busybox forms behave differently,
#             and iperf (2); needs busybox-static, bash, curl,
#             netcat-openbsd, wget, iperf.
#   busybox   busybox's applets alone (the e2e tests' busybox image, for
#             init containers and `nc` clients); BINARY is ignored.
#   iptables  busybox's applets and the netfilter tools (the e2e tests'
#             distroless-iptables image, a privileged hostNetwork pod that
#             reads the node's conntrack table); BINARY is ignored.
set -eu
image=$1
dest=$2
bin=$3

# copy PATH...: each file (a link stays a link, and what it points to comes
# too) and, for an executable or library, the shared libraries and loader
# it uses.
copy() {
	for f in "$@"; do
		[ -e "$dest$f" ] || [ -L "$dest$f" ] && continue
		mkdir -p "$dest$(dirname "$f")"
		if [ -L "$f" ]; then
			target=$(readlink "$f")
			ln -s "$target" "$dest$f"
			case $target in
			/*) copy "$target" ;;
			*) copy "$(dirname "$f")/$target" ;;
			esac
			continue
		fi
		cp -p "$f" "$dest$f"
		# Libraries too: iptables' extensions load libraries of their own.
		libs=$(ldd "$f" 2>/dev/null | sed -n 's/.*[ \t]\(\/[^ ]*\) (0x.*/\1/p') || true
		[ -z "$libs" ] || copy $libs
	done
}

# netfilter_tools: iptables (both backends), nft, conntrack and ip with their
# extensions and libraries.
netfilter_tools() {
	for b in xtables-nft-multi xtables-legacy-multi; do copy "/usr/sbin/$b"; done
	for fam in iptables ip6tables; do
		for b in "$fam-nft" "$fam-nft-save" "$fam-nft-restore" "$fam-legacy" "$fam-legacy-save" "$fam-legacy-restore"; do
			copy "/usr/sbin/$b"
		done
		# The plain names are the nft backend's (Debian's default alternative).
		for s in "" -save -restore; do
			ln -sf "xtables-nft-multi" "$dest/usr/sbin/$fam$s"
		done
	done
	copy /usr/sbin/nft /usr/sbin/conntrack /usr/sbin/ip
	# iptables' match and target extensions, loaded at run time.
	mkdir -p "$dest/usr/lib/x86_64-linux-gnu/xtables"
	for f in /usr/lib/x86_64-linux-gnu/xtables/*.so; do copy "$f"; done
	copy /etc/protocols /etc/services /etc/ethertypes
}

svcproxy() {
	mkdir -p "$dest/usr/local/bin" "$dest/tmp" "$dest/run" "$dest/var/run" "$dest/etc"
	cp -p "$bin" "$dest/usr/local/bin/svcproxy"
	netfilter_tools
	copy /bin/sh
	echo "hosts: files dns" >"$dest/etc/nsswitch.conf"
}

busybox() {
	mkdir -p "$dest/bin" "$dest/tmp" "$dest/etc"
	chmod 1777 "$dest/tmp"
	cp -p /bin/busybox "$dest/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ -e "$dest/bin/$applet" ] || ln -s busybox "$dest/bin/$applet"
	done
	echo "hosts: files dns" >"$dest/etc/nsswitch.conf"
}

iptables() {
	busybox
	netfilter_tools
}

agnhost() {
	busybox
	cp -p "$bin" "$dest/agnhost"
	# The real tools win over the applets of the same name.
	for t in /bin/bash /usr/bin/curl /bin/nc.openbsd /usr/bin/wget /usr/bin/iperf; do
		rm -f "$dest$t" "$dest/bin/$(basename "$t")"
		copy "$t"
		[ -e "$dest/bin/$(basename "$t")" ] || ln -s "$t" "$dest/bin/$(basename "$t")"
	done
	ln -sf /bin/nc.openbsd "$dest/bin/nc"
	ln -sf bash "$dest/bin/sh"
	copy /etc/protocols /etc/services /etc/ssl/certs/ca-certificates.crt
}

case $image in
svcproxy | agnhost | busybox | iptables) "$image" ;;
*) echo "rootfs.sh: unknown image $image (svcproxy, agnhost, busybox, iptables)" >&2; exit 2 ;;
esac
