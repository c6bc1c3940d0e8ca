#!/usr/bin/env bash
# ctrack set-up for a fresh Debian 12 machine, as root. Idempotent: every step checks first.
# Installs Debian packages, provides a header tree for BCC, mounts tracefs/bpffs, builds the
# lab helpers and installs the ctrack package for Debian's /usr/bin/python3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (try: sudo make ...)" >&2
    exit 1
fi

pkgs=(python3-bpfcc bpfcc-tools libbpf1 libbpf-dev python3-pyroute2 python3-rich python3-pytest
      python3-scapy python3-hypothesis python3-dpkt python3-prometheus-client python3-setuptools
      python3-pip iproute2 iputils-ping iperf3 socat hping3 tshark tmux iptables bpftool
      gcc make libc6-dev libnetfilter-queue-dev libmnl-dev linux-headers-amd64 kmod ethtool conntrack chromium python3-matplotlib python3-numpy)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer once, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# BCC needs /lib/modules/$(uname -r)/build. Without headers for the running kernel, Debian's
# generic headers work for ctrack, because its programs read only packet bytes, uapi headers and
# tracepoint arguments, never a kernel-internal struct whose layout could differ.
# Debian splits one version's tree in two: linux-headers-V-amd64 (config, generated headers) is
# `build`, linux-headers-V-common (the sources) is `source`; BCC reads both.
kdir=/lib/modules/$(uname -r)
if [ ! -e "$kdir/build/include/generated" ] || [ ! -e "$kdir/source/include/linux/kconfig.h" ]; then
    hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1)
    common=${hdr%-amd64}-common
    if [ -z "$hdr" ] || [ ! -d "$common" ]; then
        echo "setup: no linux-headers-*-amd64 / -common tree under /usr/src (apt-get install linux-headers-amd64)" >&2
        exit 1
    fi
    say "linking $hdr as $kdir/build and $common as $kdir/source"
    mkdir -p "$kdir"
    ln -sfn "$hdr" "$kdir/build"
    ln -sfn "$common" "$kdir/source"
fi

mountpoint -q /sys/fs/bpf || { say "mounting bpffs"; mount -t bpf bpf /sys/fs/bpf; }
if [ ! -d /sys/kernel/tracing/events ]; then
    say "mounting tracefs"; mount -t tracefs tracefs /sys/kernel/tracing
fi
if [ -d /sys/kernel/debug ] && ! mountpoint -q /sys/kernel/debug; then
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
fi

# Lab helpers written in C (built only when their sources exist).
if [ -f "$here/lab/Makefile" ]; then make -s -C "$here/lab"; fi

# The package, for Debian's python3 (BCC lives there), tools on PATH. An egg-link install keeps
# the checkout as the source, so editing it needs no reinstall.
missing_tool=""
for t in "$here"/tools/*; do
    [ -f "$t" ] && [ -x "$t" ] && ! command -v "$(basename "$t")" >/dev/null && missing_tool=$t
done
# (checked from /: run from the checkout, `import ctrack` would find the checkout itself)
if ! (cd / && /usr/bin/python3 -c 'import ctrack, sys; sys.exit(0 if ctrack.__file__.startswith(sys.argv[1] + "/") else 1)' "$here") 2>/dev/null \
   || [ -n "$missing_tool" ]; then
    say "installing the ctrack package"
    (cd "$here" && /usr/bin/python3 -m pip install --no-deps --no-build-isolation --break-system-packages -e . >/dev/null 2>&1) \
    || (cd "$here" && /usr/bin/python3 setup.py -q develop >/dev/null)
fi
say "ready"
