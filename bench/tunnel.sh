#!/usr/bin/env bash
# TCP throughput through a tunnel between two network namespaces, against references
# measured in the same run (iperf3, one stream, SECONDS each):
#   veth      the bare veth pair both tunnels run over;
#   esprit    two esprit daemons (PSK, UDP-encapsulated ESP), once with AES-128-GCM and
#             once with AES-128-CBC + HMAC-SHA2-256-128 (esp_proposals "aes128-sha256");
#   copy loop tun-io's TUN -> UDP -> TUN loop (offloads and batching, no crypto), whose
#             cost plus AES-128-GCM's (esp's seal_open_cost, one core) is the floor no
#             userspace tunnel here gets under (../shared/PERFORMANCE.md);
#   strongswan two charons with kernel-libipsec (userspace ESP, AES-128-GCM), when
#              strongSwan is installed (skip with NO_STRONGSWAN=1).
# Prints, for each path: Gbit/s and its ratio to the veth (CBC's also to GCM); the CPU
# seconds per GB carried, of the whole machine (/proc/stat: iperf3, the kernel and the
# daemons together) and of the VPN daemons alone (/proc/PID/stat, both peers); and the
# round trip of 200 pings at 5 ms intervals with no load (median and p99), with the
# tunnel's minus the veth's. Run as root from the workspace:
#   bash bench/tunnel.sh [-P STREAMS] [SECONDS]
# With PERF_DATA=FILE, `perf record -a -g` profiles the AES-GCM run into FILE (it then
# costs some throughput: compare figures only between runs without it).
# Everything happens inside namespaces this script makes and removes.
set -euo pipefail
cd "$(dirname "$0")/.."

P=1
if [ "${1:-}" = "-P" ]; then P=$2; shift 2; fi
SECS=${1:-10}
: "${CARGO_TARGET_DIR:=target}"
A=esprit-bench-a-$$
B=esprit-bench-b-$$
TMP=$(mktemp -d)
PIDS=()
. tests/strongswan/lib.sh

stop_pids() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

cleanup() {
    stop_pids
    sw_cleanup
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

cargo build -q --release --bin esprit -p esprit -p tun-io --example copy_loop -p esp \
    --example seal_open_cost
ESPRIT="$CARGO_TARGET_DIR/release/esprit"
LOOP="$CARGO_TARGET_DIR/release/examples/copy_loop"
SEAL_OPEN="$CARGO_TARGET_DIR/release/examples/seal_open_cost"

fresh_pair() {
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    sw_ns_pair "$A" "$B" 192.0.2.1/24 192.0.2.2/24 10.96.1.1/32 10.96.2.1/32
}

# CPU seconds the whole machine spent so far (user, nice, system, irq, softirq, steal).
machine_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2+$3+$4+$7+$8+$9)/hz }' /proc/stat
}

# CPU seconds the processes in PIDS spent so far (utime + stime).
daemons_cpu() {
    local t=0 p
    for p in "${PIDS[@]}" ${EXTRA_PIDS:-}; do
        [ -r "/proc/$p/stat" ] || continue
        t=$(awk -v hz="$(getconf CLK_TCK)" -v t="$t" \
            '{ sub(/^.*\) /, ""); print t + ($12+$13)/hz }' "/proc/$p/stat")
    done
    echo "$t"
}

# iperf3 from A to $1 for $SECS s with $P streams. Sets GBITS (as the receiver saw
# it), CPU_GB (machine CPU s per GB received) and DCPU_GB (the daemons' CPU s per GB).
iperf() {
    ip netns exec "$B" iperf3 -s -1 -B "$1" >/dev/null &
    local server=$!
    for _ in $(seq 50); do
        ip netns exec "$B" ss -Htln "sport = :5201" | grep -q . && break
        sleep 0.1
    done
    local m0 d0 m1 d1 out
    m0=$(machine_cpu); d0=$(daemons_cpu)
    local perf=
    if [ -n "${PROFILE:-}" ]; then
        # A system-wide profile of the middle of the run (after 1 s, for SECS - 2 s).
        (sleep 1; exec perf record -q -a -g -o "$PROFILE" -- sleep $((SECS > 3 ? SECS - 2 : 1))) \
            >/dev/null 2>&1 &
        perf=$!
    fi
    out=$(ip netns exec "$A" iperf3 -c "$1" -t "$SECS" -P "$P" -J |
        python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum_received"]; print("%.2f %d" % (e["bits_per_second"]/1e9, e["bytes"]))')
    m1=$(machine_cpu); d1=$(daemons_cpu)
    wait "$server" 2>/dev/null || true
    [ -z "$perf" ] || wait "$perf" || true
    GBITS=${out% *}
    local bytes=${out#* }
    CPU_GB=$(python3 -c "print('%.2f' % (($m1 - $m0) / ($bytes / 1e9)))")
    DCPU_GB=$(python3 -c "print('%.2f' % (($d1 - $d0) / ($bytes / 1e9)))")
}

# 200 pings at 5 ms from A to $1; sets RTT_MED and RTT_P99 in microseconds.
latency() {
    local out
    out=$(ip netns exec "$A" ping -n -q -c 1 -W 2 "$1" >/dev/null 2>&1;
          ip netns exec "$A" ping -n -c 200 -i 0.005 "$1" |
          sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' |
          python3 -c 'import sys; v=sorted(float(x)*1000 for x in sys.stdin); print("%.0f %.0f" % (v[len(v)//2], v[min(len(v)-1, int(len(v)*0.99))]))')
    RTT_MED=${out% *}
    RTT_P99=${out#* }
}

esprit_conf() { # SIDE ME PEER START ESP_PROPOSAL
    cat <<CONF
[daemon]
control_socket = "$TMP/$1.sock"
[connections.bench]
local_addrs = ["192.0.2.$2"]
remote_addrs = ["192.0.2.$3"]
proposals = ["aes128gcm16-prfsha256-x25519"]
[connections.bench.local]
auth = "psk"
id = "bench-$2"
[connections.bench.remote]
auth = "psk"
[connections.bench.children.net]
local_ts = ["10.96.$2.0/24"]
remote_ts = ["10.96.$3.0/24"]
esp_proposals = ["$5"]
start_action = "$4"
[secrets.ike-bench]
secret = "a benchmark secret of some length"
CONF
}

fresh_pair
echo "$P stream(s), $SECS s each, $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
latency 192.0.2.2
veth_med=$RTT_MED veth_p99=$RTT_P99
iperf 192.0.2.2
veth=$GBITS
echo "veth:       $veth Gbit/s  machine $CPU_GB CPU s/GB  ping median $veth_med us p99 $veth_p99 us"

# Two esprit daemons with ESP proposal $1; sets GBITS to iperf3's Gbit/s through them.
# Not run in a subshell, so that cleanup sees the daemons' PIDs.
esprit_run() {
    esprit_conf b 2 1 none "$1" >"$TMP/b.toml"
    esprit_conf a 1 2 start "$1" >"$TMP/a.toml"
    rm -f "$TMP/a.sock" "$TMP/b.sock"
    ip netns exec "$B" "$ESPRIT" run -c "$TMP/b.toml" >/dev/null 2>"$TMP/b.log" &
    PIDS+=($!)
    for _ in $(seq 50); do [ -S "$TMP/b.sock" ] && break; sleep 0.1; done
    ip netns exec "$A" "$ESPRIT" run -c "$TMP/a.toml" >/dev/null 2>"$TMP/a.log" &
    PIDS+=($!)
    for _ in $(seq 50); do [ -S "$TMP/a.sock" ] && break; sleep 0.1; done
    "$ESPRIT" initiate bench --socket "$TMP/a.sock" --timeout 20 >/dev/null
    latency 10.96.2.1
    iperf 10.96.2.1
    stop_pids
}

# The figures of the last run after its Gbit/s: ratio to veth, CPU, added latency.
figures() {
    echo "($(ratio "$GBITS" "$veth") of veth)  machine $CPU_GB CPU s/GB, daemons $DCPU_GB  ping median $RTT_MED us (+$((RTT_MED - veth_med))) p99 $RTT_P99 us (+$((RTT_P99 - veth_p99)))"
}

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

PROFILE=${PERF_DATA:-} esprit_run aes128gcm16
esp=$GBITS
esp_cpu=$CPU_GB
echo "esprit:     $esp Gbit/s  $(figures)  AES-128-GCM"
esprit_run aes128-sha256
cbc=$GBITS
echo "esprit:     $cbc Gbit/s  $(figures)  AES-128-CBC + HMAC-SHA2-256; $(ratio "$cbc" "$esp") of AES-GCM"

# The floor (../shared/PERFORMANCE.md): what carrying the traffic costs with the
# packets moved as esprit moves them (TUN -> UDP -> TUN, offloads and batching, tun-io's
# copy loop with no crypto, measured like the others) plus what AES-128-GCM seal + open
# of 1400-byte packets costs on one core (esp's seal_open_cost). A tunnel cannot cost
# less; "close to the limit" is at most 1.25x the floor.
copy_loop_run() {
    local me peer ns
    for me in 1 2; do
        peer=$((3 - me))
        if [ $me = 1 ]; then ns=$A; else ns=$B; fi
        ip netns exec "$ns" "$LOOP" --tun esp0 --mtu 1400 --addr "10.96.$me.1/24" \
            --route "10.96.$peer.0/24" --bind "192.0.2.$me:4500" --peer "192.0.2.$peer:4500" \
            --seconds $((SECS + 10)) >/dev/null 2>&1 &
        PIDS+=($!)
    done
    for me in 1 2; do
        peer=$((3 - me))
        if [ $me = 1 ]; then ns=$A; else ns=$B; fi
        for _ in $(seq 50); do
            ip -n "$ns" route show "10.96.$peer.0/24" 2>/dev/null | grep -q esp0 && break
            sleep 0.1
        done
    done
    latency 10.96.2.1
    iperf 10.96.2.1
    stop_pids
}
copy_loop_run
loop=$GBITS loop_cpu=$CPU_GB
crypto=$("$SEAL_OPEN")
floor=$(python3 -c "print('%.2f' % ($loop_cpu + $crypto))")
echo "copy loop:  $loop Gbit/s  $(figures)  (TUN -> UDP -> TUN, no crypto)"
python3 - "$floor" "$loop_cpu" "$crypto" "$esp_cpu" "$veth" <<'PY'
import sys
floor, loop, crypto, esp, veth = map(float, sys.argv[1:])
# At the floor, the two cores carry at most 2 / floor GB/s.
most = 2 / floor * 8
print("floor:      %.2f CPU s/GB (copy loop %.2f + AES-128-GCM seal + open %.2f on one core);"
      " esprit costs %.2fx the floor (close: <= 1.25x); 2 cores at the floor carry at most"
      " %.1f Gbit/s (%.2f of veth)" % (floor, loop, crypto, esp / floor, most, most / veth))
PY

if [ -z "${NO_STRONGSWAN:-}" ] && [ -x "$SW_CHARON" ]; then
    fresh_pair
    for side in a b; do
        if [ $side = a ]; then me=1 peer=2 ns=$A; else me=2 peer=1 ns=$B; fi
        d="$TMP/sw-$side"
        sw_instance_init "$d"
        sw_write_strongswan_conf "$d"
        {
            sw_conn_conf bench "192.0.2.$me" "192.0.2.$peer" aes128gcm16-prfsha256-x25519 \
                aes128gcm16 psk "bench-$me" "bench-$peer" "10.96.$me.0/24" "10.96.$peer.0/24"
            sw_psk_secret "a benchmark secret of some length" bench-1 bench-2
        } >"$d/swanctl/swanctl.conf"
        sw_start_charon "$ns" "$d"
        sw_wait_vici "$d"
        sw_load "$d"
    done
    sw_initiate "$TMP/sw-a" bench
    EXTRA_PIDS="$(cat "$TMP/sw-a/charon.pid") $(cat "$TMP/sw-b/charon.pid")"
    latency 10.96.2.1
    iperf 10.96.2.1
    sw=$GBITS
    echo "strongswan: $sw Gbit/s  $(figures); esprit/strongswan $(python3 -c "print('%.1f' % ($esp / $sw))")x"
fi
