#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: installs mosquitto,
# tinyproxy and dante-server (Debian packages) when missing, creates the
# system account dante's SOCKS5 password tests use, then gofmt, go vet and
# the race-enabled tests. Go modules come through the module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
	echo "installing mosquitto (Debian package)"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
# The package may start a system broker on 1883; the tests use free ports.

# Real proxies for the proxy tests: tinyproxy (HTTP CONNECT) and dante
# (SOCKS5). dante checks SOCKS5 passwords against the system's password
# database, so its tests need a system account (internal/proxyserver).
missing=""
if ! command -v tinyproxy >/dev/null 2>&1 && [ ! -x /usr/bin/tinyproxy ] && [ ! -x /usr/sbin/tinyproxy ]; then missing="$missing tinyproxy"; fi
if ! command -v danted >/dev/null 2>&1 && [ ! -x /usr/sbin/danted ]; then missing="$missing dante-server"; fi
if [ -n "$missing" ]; then
	echo "installing$missing (Debian packages)"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
if ! id mqttloop-socks >/dev/null 2>&1; then
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
	$SUDO useradd --system --no-create-home --shell /usr/sbin/nologin mqttloop-socks
	echo 'mqttloop-socks:socks-test-password' | $SUDO chpasswd
fi

go version
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
	echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 30m ./...
