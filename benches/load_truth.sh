#!/usr/bin/env bash
# Truth: the simulator with a fixed injected latency (200 µs, 1 ms) at 1,000 req/s; the
# reported P50 should be the injected value plus the floor (within 5 % or 10 µs).
#
# The simulator counts an injected latency from the request's arrival (its kernel receive
# stamp), so its answer leaves `injected` after the request reached it. `--calibrate`'s null
# server records its own time per request from the same point; the generator's own floor is
# the null server's P50 response time minus that (`generator_p50_ns` in the manifest). The
# figure to hold against the injected value is "P50 − generator floor" (printed per run on a
# `truth:` line, with the error). The zero-latency simulator (`none`) is printed for
# reference: it adds the simulator's request handling, which an injected latency includes.
source "$(dirname "${BASH_SOURCE[0]}")/load_common.sh"

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-1}"
# truth DIR INJECTED : the P50 against the injected value plus the generator's own floor.
truth() {
    python3 - "$@" <<'PY'
import json, sys
d, injected = sys.argv[1], sys.argv[2]
m = json.load(open(f"{d}/manifest.json"))["extra"]
c = m.get("calibration") or {}
p50 = m["response"]["p50_ns"] / 1000
floor = (c.get("response") or {}).get("p50_ns", 0) / 1000
server = (c.get("server") or {}).get("p50_ns", 0) / 1000
own = (c.get("generator_p50_ns") or 0) / 1000
line = f"truth: injected {injected}: P50 {p50:.1f} µs, null floor {floor:.1f} µs of which the null server {server:.1f} µs, generator floor {own:.1f} µs"
if injected != "none":
    inj = {"200us": 200.0, "1ms": 1000.0}[injected]
    got = p50 - own
    ok = abs(got - inj) <= max(0.05 * inj, 10.0)
    line += f"; P50 − generator floor {got:.1f} µs ({100 * (got - inj) / inj:+.1f} %, {'within' if ok else 'NOT within'} 5 % or 10 µs)"
print(line, file=sys.stderr)
PY
}

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
        truth "$OUT/truth-$round-$latency" "$latency"
        stop_sim
    done
done
