#!/bin/sh
# Installs everything gvm needs to build, run and test on Debian 12, with apt.
# Safe to run again. Usage: packaging/install-deps.sh (as root, or via sudo)
set -eu

if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo "$0" "$@"
	fi
	echo "install-deps.sh: run as root (apt-get needs it)" >&2
	exit 1
fi

packages="
	meson ninja-build pkg-config g++ git make
	libuv1-dev android-libboringssl-dev libseccomp-dev
	libnl-3-dev libnl-route-3-dev libnftables-dev nlohmann-json3-dev libyaml-cpp-dev
	libpcre2-dev libsystemd-dev catch2 libbenchmark-dev libhttp-parser-dev
	systemd iproute2 nftables procps passwd util-linux mount
	curl python3
	nginx-light openssl python3-requests nodejs dnsmasq-base
	openjdk-17-jdk-headless
"

# The system tests run real clients (curl, python3-requests, node, git, and
# Java's HttpClient from a JDK's single-file source launcher) against
# a real upstream: the distribution's nginx, started by the tests themselves
# on loopback ports (tests/support/upstream.h). Debian also enables and starts
# an nginx service on port 80 when the package is installed; the tests do not
# use it. The sandbox tests also run dnsmasq (dnsmasq-base: the program only,
# no service) as the upstream resolver inside a namespace of their own.

# tests/system/test_openclaw.cpp's setup bootstraps a pinned Node.js with
# npm; a Node.js from elsewhere may bring its own npm.
command -v npm >/dev/null 2>&1 || packages="$packages npm"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
fi

# The group whose members may use gvmctl, and the proxy workers' user.
getent group gvm >/dev/null || groupadd --system gvm
getent passwd gvm-proxy >/dev/null ||
	useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin --user-group gvm-proxy
echo "install-deps.sh: build and test dependencies are installed"
