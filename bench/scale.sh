#!/usr/bin/env bash
# Many peers on one responder (issue 22), release build: for each total N, four initiator
# daemons bring up N/4 IKE SAs each (one child each) against one %any responder in network
# namespaces; prints the time to bring all up, handshakes/s, the responder's RSS per SA
# and CPU per handshake, one full `status` call's time (streamed, parsed as JSON), its
# RSS after ten such calls, the idle CPU once all are up, and the SIGTERM-to-exit time
# with every SA deleted at its peer. Needs root.
# Usage: sudo bench/scale.sh [N ...]   (default: 1000 10000 50000 100000)
# Past 4,000 SAs the responder's cookie threshold is N (no cookies) unless
# ESPRIT_SCALE_COOKIES=THRESHOLD is set (e.g. 64, the default threshold).
# ESPRIT_SCALE_AUTH=ecdsa authenticates with ECDSA P-256 certificates (one per site)
# instead of the PSK.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 50000 100000)
cargo test --release --test e2e_scale --no-run >/dev/null 2>&1
for n in "${sizes[@]}"; do
  ESPRIT_SCALE_N=$((n / 4)) cargo test --release --test e2e_scale -- --nocapture 2>&1 \
    | grep -E '^scale:|panicked|FAILED' || true
done
