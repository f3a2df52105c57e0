#!/usr/bin/env bash
# The researcher core's instructions per pong, beside decoding and keeping the same pongs:
# counted by cachegrind, so the figures do not move with the machine's load as times do.
# Needs valgrind (apt-get install -y valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p fedreq-protocol --example absorb
bin=${CARGO_TARGET_DIR:-target}/release/examples/absorb
instructions() {
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" "$@" 2>&1 |
        awk '/I *refs/ { gsub(",", "", $4); print $4 }'
}
per_pong() { echo $(( ($(instructions "$1") - $(instructions "$1" setup)) / 10000 )); }
# Each case against decoding and keeping the same pongs after the same setup.
for pair in known:keep-known first:keep many:keep-many; do
    case=${pair%%:*}
    base=$(per_pong "${pair#*:}")
    cost=$(per_pong "$case")
    echo "$case: $cost against $base ($(awk -v a="$cost" -v b="$base" 'BEGIN { printf "%.2fx", a / b }'))"
done
