#!/bin/sh
# esprit's container entrypoint: checks what `esprit run` will need and says exactly what
# is missing, then execs the daemon (PID 1 stays esprit, so SIGTERM deletes the SAs).
#
#   with NET_ADMIN (docker run --cap-add NET_ADMIN --device /dev/net/tun ...): esprit
#     creates its TUN device and routes itself;
#   without it (a pod, or --cap-drop ALL): an init step must have made the device named
#     in [tun] name (ip tuntap add mode tun name esprit0; mtu, up, routes) in the
#     container's network namespace; esprit attaches to it by name;
#   with `run --tun-fd N`: an inherited TUN descriptor, nothing else is needed.
#
# Anything else than `run` (check, status, import, ...) goes straight to esprit.
# Paths can be moved for testing: ESPRIT_BIN, ESPRIT_TUN_DEV, ESPRIT_SYS_NET.
set -eu

bin=${ESPRIT_BIN:-/usr/bin/esprit}
tun_dev=${ESPRIT_TUN_DEV:-/dev/net/tun}
sys_net=${ESPRIT_SYS_NET:-/sys/class/net}

die() {
    echo "esprit-entrypoint: $*" >&2
    exit 1
}

if [ "${1:-run}" != run ]; then
    exec "$bin" "$@"
fi
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- -c /etc/esprit/esprit.toml

# The configuration file and whether a descriptor is handed over.
config=
tun_fd=no
prev=
for a in "$@"; do
    case "$prev" in
    -c | --config) config=$a ;;
    esac
    case "$a" in
    --config=*) config=${a#--config=} ;;
    --tun-fd | --tun-fd=*) tun_fd=yes ;;
    esac
    prev=$a
done
[ -n "$config" ] || die "no configuration file: run -c FILE"
"$bin" check -c "$config" >&2 || die "the configuration above does not load; not starting"

if [ "$tun_fd" = yes ]; then
    exec "$bin" run "$@"
fi
[ -c "$tun_dev" ] || die "$tun_dev is missing: give the container the TUN device (docker run --device /dev/net/tun, or a device plugin in Kubernetes)"

# CAP_NET_ADMIN is bit 12 of the effective capabilities.
caps=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
if [ $(((0x$caps >> 12) & 1)) -eq 1 ]; then
    exec "$bin" run "$@"
fi

# No NET_ADMIN: the device named in [tun] (default esprit0) must be there already.
tun=$(awk '
    /^[[:space:]]*\[/ { in_tun = ($0 ~ /^[[:space:]]*\[tun\][[:space:]]*(#.*)?$/) }
    in_tun && /^[[:space:]]*name[[:space:]]*=/ {
        sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*/, ""); print; exit
    }' "$config")
tun=${tun:-esprit0}
[ -e "$sys_net/$tun" ] || die "no CAP_NET_ADMIN, and no TUN device $tun prepared: either run with --cap-add NET_ADMIN (esprit creates the device), or create it first in the container's network namespace (ip tuntap add mode tun name $tun; ip link set $tun mtu 1400 up; routes to the remote subnets), e.g. from an init container"
exec "$bin" run "$@"
