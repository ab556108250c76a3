#!/usr/bin/env bash
# Soak (issue 16 item 7), release build: two esprit peers carry mixed traffic (a counted
# 1,000 datagrams/s UDP stream, 4 MiB SHA-256-checked TCP transfers one after another,
# a second of full-speed TCP every ten seconds) for SECONDS with child SAs rekeyed every
# CHILD_LIFETIME and the IKE SA every IKE_LIFETIME. Prints each daemon's RSS, open
# descriptors, threads and SA counts every twentieth of the run, then the traffic's
# figures; fails if the descriptors or threads changed after the warm-up, RSS grew by
# 8 MiB or more, a datagram was lost or a transfer arrived damaged. Needs root.
# Usage: sudo bench/soak.sh [SECONDS] [CHILD_LIFETIME] [IKE_LIFETIME]
#        (defaults: 3600 60s 600s; the CI form is `cargo test --test e2e_soak`, 40 s)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3600}"
child="${2:-60s}"
ike="${3:-600s}"
cargo test --release --test e2e_soak --no-run >/dev/null 2>&1
ESPRIT_SOAK_SECS="$secs" ESPRIT_SOAK_CHILD_LIFETIME="$child" ESPRIT_SOAK_IKE_LIFETIME="$ike" \
  cargo test --release --test e2e_soak -- --nocapture 2>&1 \
  | grep -E '^soak:|^  |panicked|FAILED|test result' || true
