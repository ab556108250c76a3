#!/usr/bin/env bash
# Many peers on one responder (issue 22), release build: for each total N, two initiator
# daemons bring up N/2 IKE SAs (one child each) against one %any responder in network
# namespaces; prints the time to bring all up, handshakes/s, the responder's RSS per SA
# and CPU per handshake, one `status` call's time, the idle CPU once all are up, and the
# SIGTERM-to-exit time with every SA deleted at its peer. Needs root.
# Usage: sudo bench/scale.sh [N ...]   (default: 1000 10000 50000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 50000 100000)
cargo test --release --test e2e_scale --no-run >/dev/null 2>&1
for n in "${sizes[@]}"; do
  ESPRIT_SCALE_N=$((n / 2)) cargo test --release --test e2e_scale -- --nocapture 2>&1 \
    | grep -E '^scale:|panicked|FAILED' || true
done
