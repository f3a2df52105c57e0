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
# Each case against decoding and keeping the same pongs (`many`'s carry longer sequences).
keep=$(per_pong keep)
keep_many=$(per_pong keep-many)
echo "decode and keep: $keep instructions a pong ($keep_many for many's pongs)"
for case in known first many; do
    base=$([ "$case" = many ] && echo "$keep_many" || echo "$keep")
    cost=$(per_pong "$case")
    echo "$case: $cost ($(awk -v a="$cost" -v b="$base" 'BEGIN { printf "%.2fx", a / b }'))"
done
