#!/usr/bin/env bash
# Coordinated omission: the simulator stalls 100 ms in every second; 1,000 req/s for 20 s.
# 10 % of the requests wait for the end of a stall (uniformly 0-100 ms), so P99 from the
# intended send time should be ~90 ms; P99 from the actual send time (what a closed-loop
# generator reports) is shown beside it.
source "$(dirname "${BASH_SOURCE[0]}")/load_common.sh"

DURATION="${DURATION:-20s}"
CONNECTIONS="${CONNECTIONS:-4}"
build
start_sim --profile python --fault stall:100ms/1s
header
run_load "$OUT/co" --target "$SIM_URL" --scenario "$SCENARIO" \
    --rate 1000 --duration "$DURATION" --connections "$CONNECTIONS"
figures "$OUT/co"
echo "analytic P99 from the intended send time: 90 ms (100 ms - 1 % x 1 s)" >&2
