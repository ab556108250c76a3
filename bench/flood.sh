#!/usr/bin/env bash
# Hostile input at line rate (issue 16 item 3), release build, longer than the CI form
# (tests/e2e_flood.rs): an IKE_SA_INIT flood from 65,536 spoofed sources at 10x the
# handshakes per CPU second the responder sustains (measured first in the same run)
# while 100 real handshakes start during it, then an ESP garbage flood (random SPIs and
# the live SPI with a bad ICV) against a tunnel carrying a counted UDP stream. Prints
# the flood rate, the daemon's CPU (from /proc/PID/stat), the real handshakes' success
# and latency, the drops by reason, the stream's loss and the CPU per million garbage
# packets. Needs root.
# Usage: sudo bench/flood.sh [SECONDS]   (default 30; ESPRIT_FLOOD_RATE and
#        ESPRIT_ESP_FLOOD_RATE override the rates)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
cargo test --release --test e2e_flood --no-run >/dev/null 2>&1
ESPRIT_FLOOD_SECS="$secs" ESPRIT_FLOOD_LEGIT="${ESPRIT_FLOOD_LEGIT:-100}" \
ESPRIT_ESP_FLOOD_SECS="$secs" ESPRIT_ESP_FLOOD_RATE="${ESPRIT_ESP_FLOOD_RATE:-200000}" \
  cargo test --release --test e2e_flood -- --nocapture --test-threads 1 2>&1 \
  | grep -E 'flood:|garbage packets/s|panicked|FAILED|test result' || true
