#!/usr/bin/env bash
# Failover of an esprit HA pair behind BGP (tests/e2e_ha.rs): gateways a1 and a2, each with
# a route-based tunnel to gateway b, FRR (bgpd, bfdd) on every node and a client router c
# that prefers a1. Numbered UDP datagrams every 10 ms in both directions measure the
# outage when a1's esprit is killed (SIGKILL), when it comes back (failback) and when its
# outer link is cut. Prints the timers used and each outage (lost datagrams x interval).
#
#   bash bench/ha.sh [BFD_MS|off] [KEEPALIVE HOLD]     (defaults: 100, 3 9)
#
# 100 ms BFD wants a quiet machine: under heavy load (other builds on the 2 cores) every
# BFD session can miss its 300 ms and the sessions flap, which shows as extra losses.
# Run as root from the workspace; needs FRR (Debian `frr`). Everything happens inside
# namespaces the test makes and removes.
set -euo pipefail
cd "$(dirname "$0")/.."

BFD=${1:-100}
KEEPALIVE=${2:-3}
HOLD=${3:-9}
report=$(mktemp)
log=$(mktemp)
trap 'rm -f "$report" "$log"' EXIT

if ! ESPRIT_HA_BFD_MS=$BFD ESPRIT_HA_BGP="$KEEPALIVE $HOLD" ESPRIT_HA_REPORT=$report \
    cargo test -q --test e2e_ha -- --nocapture >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
cat "$report"
