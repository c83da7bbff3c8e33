#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: installs mosquitto
# (Debian package) when missing, then gofmt, go vet and the race-enabled
# tests. Go modules come through the module proxy.
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

go version
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
	echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 30m ./...
