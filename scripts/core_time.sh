#!/usr/bin/env bash
# scripts/core_time.sh [ROUNDS]: the researcher core's time for 10,000 pongs beside decoding and
# keeping them after the same setup, steadier than criterion's. Each case runs 200 times in a
# process of its own (the example `absorb`), the cases in turn, ROUNDS times (default 9), on
# CPU $CPU (default 1); a case's figure is the median over the rounds of its tenth percentile.
# glibc is told to keep freed memory: returning it to the kernel and faulting it back in, as
# the heap's history decides, moved criterion's baseline by a third between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p fedreq-protocol --example absorb
bin=${CARGO_TARGET_DIR:-target}/release/examples/absorb
# 32 MiB: older glibc refuses a larger mmap threshold.
tunables=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432
export GLIBC_TUNABLES=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}$tunables
for _ in $(seq "${1:-9}"); do
    for case in keep-known known keep first keep-many many; do
        taskset -c "${CPU:-1}" "$bin" "$case" time
    done
done | LC_ALL=C sort -k1,1 -k2,2n | awk '
    { runs[$1] = runs[$1] " " $2; n[$1]++ }
    END {
        for (name in n) { split(runs[name], t, " "); median[name] = t[int((n[name] + 1) / 2)]; cases++ }
        if (cases != 6) { print "core_time.sh: a case did not run" > "/dev/stderr"; exit 1 }
        print "ms for 10,000 pongs, the median of each case'"'"'s tenth percentiles:"
        printf "known: %.2f against %.2f (%.2fx)\n", median["known"], median["keep-known"], median["known"] / median["keep-known"]
        printf "first contact: %.2f against %.2f (%.2fx)\n", median["first"], median["keep"], median["first"] / median["keep"]
        printf "1,000 in flight: %.2f against %.2f (%.2fx)\n", median["many"], median["keep-many"], median["many"] / median["keep-many"]
    }'
