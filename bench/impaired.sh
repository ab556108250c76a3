#!/usr/bin/env bash
# The impaired-link test (tests/e2e_impaired.rs: 5% loss, reordering within 32, 1%
# duplication, 50 MB of TCP, rekeys) over many relay seeds, one after another, with the
# figures of each run: transfer time, relay counters, replay drops, rekeys. A failing
# seed is printed and can be rerun alone with ESPRIT_IMPAIR_SEED=N. Run as root from the
# workspace:
#   bash bench/impaired.sh [FIRST_SEED] [COUNT]
# Everything happens inside namespaces the test makes and removes.
set -euo pipefail
cd "$(dirname "$0")/.."

FIRST=${1:-1}
COUNT=${2:-10}
: "${CARGO_TARGET_DIR:=target}"
export CARGO_TARGET_DIR
cargo test --test e2e_impaired --no-run 2>/dev/null
failed=()
for seed in $(seq "$FIRST" $((FIRST + COUNT - 1))); do
    log=$(mktemp)
    if ESPRIT_IMPAIR_SEED=$seed cargo test -q --test e2e_impaired lossy -- --nocapture >"$log" 2>&1; then
        verdict=ok
    else
        verdict=FAILED
        failed+=("$seed")
    fi
    echo "seed $seed: $verdict"
    grep -E '^(50 MB|relay:|replay drops|[0-9]+ child rekeys)' "$log" | sed 's/^/    /' || true
    rm -f "$log"
done
echo "${#failed[@]} of $COUNT seeds failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
