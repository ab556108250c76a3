#!/usr/bin/env bash
# Pipes (a userspace TCP/IP stack, no TUN) against the TUN path, in the same run:
#   tun   esprit with a TUN on both sides; iperf3 and clients talk to 10.96.2.1;
#   pipe  side a runs esprit with [netstack] and pipes only (no TUN, as uid 65534 with
#         no capabilities); clients talk to 127.0.0.1 ports that come out at 10.96.2.1.
# For each: iperf3 TCP throughput both ways (one stream, SECONDS), and the connection setup rate
# (CONNS sequential connect / 1-byte echo / close against an echo server in b).
# Prints Gbit/s, connections/s and the pipe/tun ratios. Run as root from the workspace:
#   bash bench/pipes.sh [SECONDS] [CONNS]
# Everything happens inside namespaces this script makes and removes.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
CONNS=${2:-2000}
: "${CARGO_TARGET_DIR:=target}"
A=esprit-pipes-a-$$
B=esprit-pipes-b-$$
TMP=$(mktemp -d)
chmod 755 "$TMP"
PIDS=()

stop_pids() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

cleanup() {
    stop_pids
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

cargo build -q --release --bin esprit
install -m 755 "$CARGO_TARGET_DIR/release/esprit" "$TMP/esprit"
ESPRIT="$TMP/esprit"

ip netns add "$A"
ip netns add "$B"
ip link add veth-a netns "$A" type veth peer name veth-b netns "$B"
ip -n "$A" addr add 192.0.2.1/24 dev veth-a
ip -n "$B" addr add 192.0.2.2/24 dev veth-b
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set veth-a up
ip -n "$B" link set veth-b up
ip -n "$A" addr add 10.96.1.1/32 dev lo
ip -n "$B" addr add 10.96.2.1/32 dev lo

b_conf() {
    cat <<CONF
[daemon]
control_socket = "$TMP/b.sock"
[connections.bench]
local_addrs = ["192.0.2.2"]
remote_addrs = ["192.0.2.1"]
remote_port = $1
proposals = ["aes128gcm16-prfsha256-x25519"]
[connections.bench.local]
auth = "psk"
id = "bench-2"
[connections.bench.remote]
auth = "psk"
id = "bench-1"
[connections.bench.children.net]
local_ts = ["10.96.2.0/24"]
remote_ts = ["10.96.1.0/24"]
esp_proposals = ["aes128gcm16"]
[secrets.ike-bench]
secret = "a benchmark secret of some length"
CONF
}

a_conf() { # tun|pipe
    if [ "$1" = pipe ]; then
        cat <<CONF
[daemon]
port = 5500
port_nat_t = 5501
control_socket = "$TMP/a/a.sock"
[netstack]
addrs = ["10.96.1.5"]
tcp_buffer = ${TCP_BUFFER:-524288}
[pipes.iperf]
listen = "127.0.0.1:5201"
remote = "10.96.2.1:5201"
[pipes.echo]
listen = "127.0.0.1:7000"
remote = "10.96.2.1:7000"
CONF
    else
        cat <<CONF
[daemon]
control_socket = "$TMP/a/a.sock"
CONF
    fi
    cat <<CONF
[connections.bench]
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
proposals = ["aes128gcm16-prfsha256-x25519"]
[connections.bench.local]
auth = "psk"
id = "bench-1"
[connections.bench.remote]
auth = "psk"
id = "bench-2"
[connections.bench.children.net]
local_ts = ["10.96.1.0/24"]
remote_ts = ["10.96.2.0/24"]
esp_proposals = ["aes128gcm16"]
start_action = "start"
[secrets.ike-bench]
secret = "a benchmark secret of some length"
CONF
}

wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }

wait_child() { # SOCKET
    for _ in $(seq 200); do
        "$ESPRIT" status --socket "$1" 2>/dev/null | grep -q "net: INSTALLED" && return 0
        sleep 0.1
    done
    echo "no child SA" >&2
    return 1
}

# iperf3 from a to $1 (port 5201) for $SECS s (with -R: from b to a); prints Gbit/s
# as the receiver saw it.
iperf() {
    ip netns exec "$B" iperf3 -s -1 -B 10.96.2.1 >/dev/null &
    local server=$!
    for _ in $(seq 50); do
        ip netns exec "$B" ss -Htln "sport = :5201" | grep -q . && break
        sleep 0.1
    done
    ip netns exec "$A" iperf3 -c "$1" -t "$SECS" -J ${2:-} |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
    wait "$server" 2>/dev/null || true
}

# $CONNS sequential connect / 1-byte echo / close to $1:7000 from a; prints conn/s.
conn_rate() {
    ip netns exec "$A" python3 -c '
import socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
t = time.monotonic()
for i in range(n):
    s = socket.create_connection((host, 7000), timeout=10)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    s.close()
print("%.0f" % (n / (time.monotonic() - t)))' "$1" "$CONNS"
}

# CPU seconds (user + system) a process used so far.
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

run_path() { # tun|pipe TARGET
    mkdir -p "$TMP/a"
    a_conf "$1" >"$TMP/a/a.toml"
    if [ "$1" = pipe ]; then
        b_conf 5500 >"$TMP/b.toml"
    else
        b_conf 500 >"$TMP/b.toml"
    fi
    ip netns exec "$B" "$ESPRIT" run -c "$TMP/b.toml" 2>"$TMP/b-$1.log" &
    PIDS+=($!)
    wait_sock "$TMP/b.sock"
    if [ "$1" = pipe ]; then
        chown 65534:65534 "$TMP/a"
        ip netns exec "$A" setpriv --reuid=65534 --regid=65534 --clear-groups \
            --inh-caps=-all --bounding-set=-all \
            "$ESPRIT" run -c "$TMP/a/a.toml" 2>"$TMP/a-$1.log" &
    else
        ip netns exec "$A" "$ESPRIT" run -c "$TMP/a/a.toml" 2>"$TMP/a-$1.log" &
    fi
    local apid=$!
    PIDS+=($apid)
    wait_sock "$TMP/a/a.sock"
    wait_child "$TMP/a/a.sock"
    local c0
    c0=$(cpu $apid)
    if [ -n "${PROFILE:-}" ]; then
        # PROFILE=1: a perf profile of side a's esprit during the iperf3 run.
        perf record -q -g -p "$apid" -o "/tmp/pipes-$1.perf" -- sleep "$SECS" 2>/dev/null &
    fi
    GBPS=$(iperf "$2")
    CPU_A=$(python3 -c "print('%.2f' % (($(cpu $apid) - $c0) / $SECS))")
    c0=$(cpu $apid)
    GBPS_R=$(iperf "$2" -R)
    CPU_R=$(python3 -c "print('%.2f' % (($(cpu $apid) - $c0) / $SECS))")
    RATE=$(conn_rate "$2")
    if [ -n "${DEBUG:-}" ]; then
        "$ESPRIT" status --json --socket "$TMP/b.sock" >"/tmp/pipes-b-$1.json" || true
        "$ESPRIT" status --json --socket "$TMP/a/a.sock" >"/tmp/pipes-a-$1.json" || true
    fi
    stop_pids
    rm -rf "$TMP/a" "$TMP/b.sock"
}

# The echo server was stopped with the daemons: start it again for each path.
start_echo() {
    ip netns exec "$B" python3 -c '
import socketserver
class H(socketserver.BaseRequestHandler):
    def handle(self):
        d = self.request.recv(1)
        if d: self.request.sendall(d)
class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    request_queue_size = 1024
    daemon_threads = True
S(("10.96.2.1", 7000), H).serve_forever()' &
    PIDS+=($!)
    sleep 0.3
}

stop_pids
start_echo
run_path tun 10.96.2.1
tun_gbps=$GBPS tun_rate=$RATE tun_cpu=$CPU_A tun_r=$GBPS_R tun_cpu_r=$CPU_R
start_echo
run_path pipe 127.0.0.1
pipe_gbps=$GBPS pipe_rate=$RATE pipe_cpu=$CPU_A pipe_r=$GBPS_R pipe_cpu_r=$CPU_R

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
echo "throughput a -> b (iperf3, 1 stream, ${SECS}s):"
echo "  tun:  $tun_gbps Gbit/s (side a's esprit: $tun_cpu cores)"
echo "  pipe: $pipe_gbps Gbit/s (side a's esprit: $pipe_cpu cores)  pipe/tun $(ratio "$pipe_gbps" "$tun_gbps")"
echo "throughput b -> a (iperf3 -R):"
echo "  tun:  $tun_r Gbit/s (side a's esprit: $tun_cpu_r cores)"
echo "  pipe: $pipe_r Gbit/s (side a's esprit: $pipe_cpu_r cores)  pipe/tun $(ratio "$pipe_r" "$tun_r")"
echo "connection setup ($CONNS sequential connect + 1-byte echo + close):"
echo "  tun:  $tun_rate conn/s"
echo "  pipe: $pipe_rate conn/s  pipe/tun $(ratio "$pipe_rate" "$tun_rate")"
