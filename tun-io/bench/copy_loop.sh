#!/usr/bin/env bash
# iperf3 TCP between two network namespaces joined by a veth pair:
#   (a) over the plain veth,
#   (b) through tun-io's TUN <-> UDP copy loop (offloads + batching, no crypto),
#   (c) the same loop with TUN offloads off (one packet per TUN read), for contrast.
# Prints Gbit/s and the ratios. Run as root from the workspace root:
#   bash tun-io/bench/copy_loop.sh [SECONDS]
# Everything happens inside namespaces this script makes and removes.
# Measured on the 2-core dev machine while other builds and fuzzers ran (2026-11-23):
#   (a) 13.2-15.2, (b) 6.6-7.2, (c) 0.9 Gbit/s; (b)/(a) 0.43-0.55.
set -euo pipefail

SECS=${1:-10}
MTU=${MTU:-1400}
: "${CARGO_TARGET_DIR:=target}"
A=tio-bench-a-$$
B=tio-bench-b-$$
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT

command -v iperf3 >/dev/null || apt-get install -y iperf3 >/dev/null
cargo build -q --release -p tun-io --example copy_loop
LOOP="$CARGO_TARGET_DIR/release/examples/copy_loop"

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip link add veth0 netns "$A" type veth peer name veth0 netns "$B"
ip -n "$A" addr add 192.0.2.1/24 dev veth0
ip -n "$B" addr add 192.0.2.2/24 dev veth0
ip -n "$A" link set veth0 up
ip -n "$B" link set veth0 up

# iperf3 client in A towards $1 for $SECS s; prints Gbit/s (receiver side).
iperf() {
    ip netns exec "$B" iperf3 -s -1 -B "$1" >/dev/null &
    local server=$!
    PIDS+=("$server")
    sleep 0.5
    ip netns exec "$A" iperf3 -c "$1" -t "$SECS" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
    wait "$server" 2>/dev/null || true
}

# Starts both loops (extra flags in $1), runs iperf3 through them, prints Gbit/s.
through_loop() {
    local flags=$1 dur=$((SECS + 3)) out
    out=$(mktemp -d)
    ip netns exec "$A" "$LOOP" --tun esp0 --mtu "$MTU" --addr 10.96.1.1/24 --route 10.96.2.0/24 \
        --bind 192.0.2.1:4500 --peer 192.0.2.2:4500 --seconds "$dur" $flags >"$out/a" &
    local pa=$!
    ip netns exec "$B" "$LOOP" --tun esp0 --mtu "$MTU" --addr 10.96.2.1/24 --route 10.96.1.0/24 \
        --bind 192.0.2.2:4500 --peer 192.0.2.1:4500 --seconds "$dur" $flags >"$out/b" &
    local pb=$!
    PIDS+=("$pa" "$pb")
    sleep 1
    iperf 10.96.2.1
    wait "$pa" "$pb"
    sed 's/^/    A /' "$out/a" >&2
    sed 's/^/    B /' "$out/b" >&2
    rm -rf "$out"
}

echo "iperf3 TCP, one stream, ${SECS}s each, TUN MTU $MTU, $(nproc) cores"
VETH=$(iperf 192.0.2.2)
echo "(a) veth:                               $VETH Gbit/s"
LOOPED=$(through_loop "")
echo "(b) TUN<->UDP loop, offloads+batching:  $LOOPED Gbit/s"
PLAIN=$(through_loop "--no-offload")
echo "(c) TUN<->UDP loop, no TUN offloads:    $PLAIN Gbit/s"
python3 -c "print('ratio (b)/(a) = %.2f, (b)/(c) = %.2f' % ($LOOPED/$VETH, $LOOPED/max($PLAIN,0.001)))"
