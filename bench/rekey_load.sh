#!/usr/bin/env bash
# Rekeys under counted load, long form (issue 16 item 2): at least 100 CHILD_SA rekeys and
# 20 IKE_SA rekeys while numbered UDP datagrams (5,000 a second) and TCP cross the tunnel,
# against esprit (tests/e2e_rekey_load.rs, full-speed TCP) and against charon 5.9.8 with
# kernel-libipsec (tests/interop_rekey_load.rs, TCP paced to 50 Mbit/s, 1,000 datagrams a
# second back). Each is the test file's ignored long test; this prints, per run, the lost
# datagrams, the rekeys done and the SAs left. Run as root from the workspace:
#   bash bench/rekey_load.sh [esprit|charon|both]
# ESPRIT_REKEY_LOAD_SECS (default 150 against esprit, 160 against charon),
# ESPRIT_REKEY_LOAD_CHILD (100), ESPRIT_REKEY_LOAD_IKE (20) and, against charon,
# ESPRIT_REKEY_LOAD_TCP_MBIT (50) change the form. Everything happens inside namespaces
# the tests make and remove.
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-both}
: "${CARGO_TARGET_DIR:=target}"
export CARGO_TARGET_DIR
cargo test --test e2e_rekey_load --test interop_rekey_load --no-run 2>/dev/null
failed=0
run() {
    local name=$1 test=$2 filter=$3 log verdict start
    log=$(mktemp)
    start=$SECONDS
    if cargo test -q --test "$test" "$filter" -- --ignored --nocapture >"$log" 2>&1; then
        verdict=ok
    else
        verdict=FAILED
        failed=1
    fi
    echo "against $name: $verdict in $((SECONDS - start)) s"
    grep -E '^(TCP load|SAs left|[0-9]+ s of load|udp |child SAs|IKE rekeys|collisions|esprit.s dataplane|ESP and IKE|at the end|a->b: missing|b->a: missing)|panicked|lost ' "$log" |
        cut -c1-400 | sed 's/^/    /' || true
    rm -f "$log"
}
case $which in
esprit | both) run esprit e2e_rekey_load long_rekeys_under_full_load ;;
esac
case $which in
charon | both) run "charon 5.9.8" interop_rekey_load long_rekeys_under_load_with_charon ;;
esac
exit $failed
