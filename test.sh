#!/usr/bin/env bash
# The README's test command: installs the Debian packages the tests use (when missing),
# then runs every test of the workspace. Needs root: the tests build network namespaces,
# TUN devices and NAT routers, and run strongSwan, nginx and iperf3 inside them.
# Arguments are passed to `cargo test` (e.g. `sudo ./test.sh --test e2e_tunnel`).
# .ci/run calls this script, so CI and a newcomer run the same thing.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: run it as root (sudo ./test.sh): the tests make network namespaces and TUN devices, and it installs packages" >&2
  exit 1
fi

# Every outside program a test runs, by Debian package (src/testbed/tools.rs names the
# same packages when a program is missing).
need=(
  iproute2 iputils-ping iperf3 openssl systemd
  iptables nftables
  nginx libnginx-mod-stream
  strongswan-charon strongswan-swanctl strongswan-pki libcharon-extra-plugins
  libstrongswan-standard-plugins strongswan-starter containernetworking-plugins
)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cargo test, then one closing line with the totals over every test binary (cargo's own
# last line is often a crate's empty doctest run).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
