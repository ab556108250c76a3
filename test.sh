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
  frr
)
# libreswan 4.10 as a second IKEv2 peer (tests/libreswan_interop.rs). Debian's `libreswan`
# conflicts with the strongSwan packages, so it is not installed: its .deb is fetched and
# unpacked into a cache folder (below) and pluto runs from there; only the libraries it
# links and NSS's certutil/pk12util are installed.
need+=(
  libnss3-tools libnss3 libnspr4 libunbound8 libldns3 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libcurl3-nss libcap-ng0 libaudit1 libldap-2.5-0 libpam0g
  libselinux1 libsystemd0 libcrypt1
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

# The unpacked libreswan (tests/libreswan/pluto.rs reads the same folder): fetched once.
lsw_dir=${ESPRIT_LIBRESWAN_DIR:-/var/cache/esprit-tests/libreswan}
if [ ! -x "$lsw_dir/root/usr/libexec/ipsec/pluto" ]; then
  echo "test.sh: fetching libreswan into $lsw_dir (apt-get download, dpkg -x; not installed)"
  tmp=$(mktemp -d)
  chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt when it can
  (cd "$tmp" && apt-get download -qq libreswan 2>/dev/null) ||
    { apt-get update -qq && (cd "$tmp" && apt-get download -qq libreswan); }
  rm -rf "$lsw_dir.new"
  mkdir -p "$lsw_dir.new"
  dpkg -x "$tmp"/libreswan_*.deb "$lsw_dir.new/root"
  dpkg-deb -f "$tmp"/libreswan_*.deb Version >"$lsw_dir.new/VERSION"
  rm -rf "$lsw_dir" "$tmp"
  mv "$lsw_dir.new" "$lsw_dir"
fi
export ESPRIT_LIBRESWAN_DIR=$lsw_dir

# cargo test, then one closing line with the totals over every test binary (cargo's own
# last line is often a crate's empty doctest run).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# --no-fail-fast: one failing test binary does not hide the results of the others.
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
