#!/usr/bin/env bash
# Truth: the simulator with a fixed injected latency (200 µs, 1 ms) at 1,000 req/s; the
# reported P50 should be the injected value plus the floor (within 5 % or 10 µs).
#
# Two floors are printed: `--calibrate`'s (the generator against an in-process null server)
# and the same simulator with no injected latency (`none`), which adds the simulator's own
# request handling. The injected delay is what the simulator adds on top of the latter, so
# "P50 − zero-latency P50" is the figure to hold against the injected value.
source "$(dirname "${BASH_SOURCE[0]}")/load_common.sh"

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-1}"
build
header
for round in $(seq 1 "$ROUNDS"); do
    for latency in none 200us 1ms; do
        if [[ "$latency" == none ]]; then
            start_sim --profile python
        else
            start_sim --profile python --latency "fixed:$latency"
        fi
        echo "round $round injected $latency" >&2
        run_load "$OUT/truth-$round-$latency" --target "$SIM_URL" --scenario "$SCENARIO" \
            --rate 1000 --duration "$DURATION" --connections 8 --calibrate
        figures "$OUT/truth-$round-$latency"
        stop_sim
    done
done
