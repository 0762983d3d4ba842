#!/usr/bin/env bash
# Side by side with oha (`cargo install oha --locked`) at the same rate against the same
# zero-latency simulator, alternating runs (P99.9 varies 3-4x between identical runs on two
# shared cores, so compare over several).
source "$(dirname "${BASH_SOURCE[0]}")/load_common.sh"

RATE="${RATE:-10000}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-32}"
RUNS="${RUNS:-3}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"
[[ -x "$OHA" ]] || { echo "oha not found: cargo install oha --locked" >&2; exit 1; }

build
start_sim --profile python
echo "simulator at $SIM_URL; runs in $OUT" >&2
for i in $(seq 1 "$RUNS"); do
    run_load "$OUT/shadowgate-$i" --target "$SIM_URL" --scenario "$SCENARIO" \
        --rate "$RATE" --duration "$DURATION" --connections "$CONNECTIONS"
    echo -n "shadowgate run $i: " ; figures "$OUT/shadowgate-$i"
    /usr/bin/time -f '%U %S %e' -o "$OUT/oha-$i.cpu" "$OHA" --no-tui --output-format json \
        -q "$RATE" -z "$DURATION" -c "$CONNECTIONS" --latency-correction \
        "$SIM_URL/health" >"$OUT/oha-$i.json"
    python3 - "$OUT/oha-$i.json" "$OUT/oha-$i.cpu" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
user, sys_, elapsed = (float(x) for x in open(sys.argv[2]).read().split())
p = o["latencyPercentiles"]
s = o["summary"]
n = sum(o.get("statusCodeDistribution", {}).values())
print(f"oha run: {s['requestsPerSec']:.0f} req/s, P50 {p['p50'] * 1e6:.0f} µs, P99 {p['p99'] * 1e6:.0f} µs, "
      f"P99.9 {p['p99.9'] * 1e6:.0f} µs, CPU {100 * (user + sys_) / elapsed:.0f}% of a core, "
      f"{1e6 * (user + sys_) / max(n, 1):.1f} µs/request")
PY
done
