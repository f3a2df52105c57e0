#!/usr/bin/env bash
# The researcher core's time for 10,000 pongs beside decoding and keeping them, steadier than
# criterion's: each case runs 200 times in a process of its own (the example `absorb`), the
# cases in turn, ROUNDS times (default 8), and each case's figure is the median of its runs'
# tenth percentiles. glibc is told to keep freed memory: returning it to the kernel and
# faulting it back in, as the heap's history decides, moved criterion's baseline by a third
# between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p fedreq-protocol --example absorb
bin=${CARGO_TARGET_DIR:-target}/release/examples/absorb
export GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=1073741824
for _ in $(seq "${1:-8}"); do
    for case in keep known first keep-many many; do
        taskset -c 1 "$bin" "$case" time
    done
done | sort -k1,1 -k2,2n | awk '
    { runs[$1] = runs[$1] " " $2; n[$1]++ }
    END {
        for (case in n) { split(runs[case], t, " "); median[case] = t[int((n[case] + 1) / 2)] }
        printf "decode and keep: %.2f ms (%.2f ms after many'"'"'s setup)\n", median["keep"], median["keep-many"]
        printf "known: %.2f ms (%.2fx)\n", median["known"], median["known"] / median["keep"]
        printf "first: %.2f ms (%.2fx)\n", median["first"], median["first"] / median["keep"]
        printf "many: %.2f ms (%.2fx)\n", median["many"], median["many"] / median["keep-many"]
    }'
