#!/usr/bin/env bash
# Truth: the simulator with a fixed injected latency (200 µs, 1 ms) at 1,000 req/s; the
# reported P50 should be the injected value plus the calibrated floor (within 5 % or 10 µs).
source "$(dirname "${BASH_SOURCE[0]}")/load_common.sh"

DURATION="${DURATION:-10s}"
build
header
for latency in 200us 1ms; do
    start_sim --profile python --latency "fixed:$latency"
    echo "injected fixed:$latency" >&2
    run_load "$OUT/truth-$latency" --target "$SIM_URL" --scenario "$SCENARIO" \
        --rate 1000 --duration "$DURATION" --connections 8 --calibrate
    figures "$OUT/truth-$latency"
    stop_sim
done
