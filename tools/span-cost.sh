#!/usr/bin/env bash
# Instruction counts per span for every rung of the layer benchmark ladder
# and both workloads, with callgrind (examples/span_cost.rs), as a markdown
# table: Ir per iteration and the ratio to registry_noop (same workload,
# same run).
#
#   bash tools/span-cost.sh [rung ...]
#
# With no argument, every rung; registry_noop is always run (the ratios are
# to it). Environment: ITERATIONS (default 10000), WORKLOADS (default
# "span_event parent_3_children"). The callgrind output files are kept in a
# temporary directory (printed), for callgrind_annotate.
set -euo pipefail

ALL_RUNGS=(registry_noop ours_unsampled ours_unsampled_busy
    ours_unsampled_live_idle ours_unsampled_live_watched ours_sampled
    ours_sampled_cold ours_sampled_2threads floor_sampled)
ITERATIONS="${ITERATIONS:-10000}"
read -r -a WORKLOADS <<<"${WORKLOADS:-span_event parent_3_children}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    echo "span-cost: $*" >&2
    exit 1
}

command -v valgrind >/dev/null || die "valgrind is not installed"
[[ "$ITERATIONS" =~ ^[1-9][0-9]*$ ]] || die "ITERATIONS must be a positive number"

if (($#)); then requested=("$@"); else requested=("${ALL_RUNGS[@]}"); fi
rungs=(registry_noop)
for rung in "${requested[@]}"; do
    [[ " ${ALL_RUNGS[*]} " == *" $rung "* ]] ||
        die "unknown rung '$rung' (rungs: ${ALL_RUNGS[*]})"
    [[ " ${rungs[*]} " == *" $rung "* ]] || rungs+=("$rung")
done
for workload in "${WORKLOADS[@]}"; do
    [[ "$workload" == span_event || "$workload" == parent_3_children ]] ||
        die "unknown workload '$workload' (span_event or parent_3_children)"
done

# Where cargo puts the binary (honours CARGO_TARGET_DIR and .cargo/config).
target_dir="$(cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | head -n 1 | cut -d'"' -f4)"
[[ -n "$target_dir" ]] || die "cannot find cargo's target directory"
bin="$target_dir/release/examples/span_cost"

out_dir="$(mktemp -d "${TMPDIR:-/tmp}/span-cost.XXXXXX")"

build=(cargo build --release --features bench-internals --example span_cost)
valgrind=(valgrind --tool=callgrind --fair-sched=yes --collect-atstart=no
    --toggle-collect=span_cost::run_loop)

echo "Commands:"
echo
echo '```sh'
echo "${build[*]}"
echo "${valgrind[*]} --callgrind-out-file=$out_dir/callgrind.<workload>.<rung> \\"
echo "  $bin <rung> $ITERATIONS <workload>"
echo '```'
echo
echo "Rungs: ${rungs[*]}; workloads: ${WORKLOADS[*]}; $ITERATIONS iterations" \
    "(after 1,000 not counted); callgrind files in $out_dir"
echo

"${build[@]}" >"$out_dir/build.log" 2>&1 || {
    cat "$out_dir/build.log" >&2
    die "build failed"
}

declare -A ir
warnings=()
for workload in "${WORKLOADS[@]}"; do
    for rung in "${rungs[@]}"; do
        log="$out_dir/valgrind.$workload.$rung.log"
        echo "running $workload $rung ..." >&2
        if ! "${valgrind[@]}" --callgrind-out-file="$out_dir/callgrind.$workload.$rung" \
            "$bin" "$rung" "$ITERATIONS" "$workload" >"$log" 2>&1; then
            cat "$log" >&2
            die "$workload $rung failed (log: $log)"
        fi
        collected="$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$log" | tail -n 1)"
        [[ -n "$collected" ]] || {
            cat "$log" >&2
            die "no 'Collected' total for $workload $rung (log: $log)"
        }
        ir["$workload.$rung"]="$collected"
        while IFS= read -r line; do
            warnings+=("$line")
        done < <(grep '^warning:' "$log" || true)
    done
done

echo "| workload | rung | Ir/iteration | × registry_noop |"
echo "|---|---|---:|---:|"
for workload in "${WORKLOADS[@]}"; do
    base="${ir[$workload.registry_noop]}"
    for rung in "${rungs[@]}"; do
        awk -v w="$workload" -v r="$rung" -v ir="${ir[$workload.$rung]}" \
            -v base="$base" -v n="$ITERATIONS" \
            'BEGIN { printf "| %s | %s | %.0f | %.2f× |\n", w, r, ir / n, ir / base }'
    done
done

if ((${#warnings[@]})); then
    echo
    printf '%s\n' "${warnings[@]}"
fi
