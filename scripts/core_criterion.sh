#!/usr/bin/env bash
# scripts/core_criterion.sh [RUNS]: the researcher core's criterion benchmark run RUNS times
# (default 5) on CPU $CPU (default 1). Each run prints, for each case, the core's time over
# decoding and keeping the same pongs, both measured in that run (the mean criterion reports);
# the last line gives the median of each case's ratios. On a shared VM one run moves by a few
# tenths: judge by the median.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for _ in $(seq "${1:-5}"); do
    taskset -c "${CPU:-1}" cargo bench -q -p fedreq-protocol --bench core -- researcher/ \
        --warm-up-time 1 --measurement-time 6 >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    python3 - "$target/criterion/researcher" <<'PY'
import json, sys
def estimate(case, side):
    with open(f"{sys.argv[1]}/{case}_{side}/new/estimates.json") as f:
        return json.load(f)["mean"]["point_estimate"]
cases = ["known", "first_contact", "1000_in_flight"]
print(" ".join(f"{c}={estimate(c, 'core') / estimate(c, 'decode_and_keep'):.2f}" for c in cases))
PY
done | tee /dev/stderr | python3 -c '
import statistics, sys
runs = [dict(pair.split("=") for pair in line.split()) for line in sys.stdin]
if not runs:
    sys.exit("core_criterion.sh: no run finished")
print("median over", len(runs), "runs:", " ".join(
    f"{case} {statistics.median(float(run[case]) for run in runs):.2f}x" for case in runs[0]))
'
