#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (issue #17, item 4): the benchmark, then the
# `full` profile of the notebooks, within one deadline. Run it from the repository root:
#
#   OUT=/some/folder DEADLINE_S=540 bash tools/gpu_check.sh [NN ...]
#
# - Nothing is downloaded: the machine needs the project's dependencies already installed
#   (`python -m pip install -e ".[test]"` from a local wheel cache, or a carried environment).
# - $OUT receives: nvidia-smi.txt, bench-gpu.md/.json (precision "auto", i.e.
#   mixed_float16 on the GPU) and bench-gpu-xla.md/.json (the same with --jit-compile), then
#   full/NN/... (each notebook's run folder with summary.json) and times.tsv (notebook,
#   return code, seconds). Notebooks that would start after the deadline are listed as skipped.
# - The notebook numbers default to all 17 in order; pass a subset when the deadline is short.
# - BENCH_ARGS and PROFILE override the benchmark's settings and the profile (full), e.g. for a
#   dry run of the script itself on a CPU:
#   BENCH_ARGS="--input-size 32 --batch-size 2 --steps 1 --warmup 1" PROFILE=ci bash tools/gpu_check.sh 16
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
DEADLINE_S=${DEADLINE_S:-540}
BENCH_ARGS=${BENCH_ARGS:---input-size 224 --batch-size 64 --steps 20 --warmup 5}
PROFILE=${PROFILE:-full}
mkdir -p "$OUT/full"
start=$(date +%s)
left() { echo $(( DEADLINE_S - ($(date +%s) - start) )); }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$OUT/nvidia-smi.txt"
python -c "import tensorflow as tf; print(tf.__version__, tf.config.list_physical_devices())" \
    > "$OUT/devices.txt" 2>&1

# the benchmark at the papers' input size, with and without XLA (at most 150 s each)
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
timeout $(( $(left) > 150 ? 150 : $(left) )) bestiary bench $BENCH_ARGS \
    --output "$OUT/bench-gpu.md" --note "tools/gpu_check.sh" > "$OUT/bench.log" 2>&1
# shellcheck disable=SC2086
timeout $(( $(left) > 150 ? 150 : $(left) )) bestiary bench $BENCH_ARGS --jit-compile \
    --output "$OUT/bench-gpu-xla.md" --note "tools/gpu_check.sh, XLA" > "$OUT/bench-xla.log" 2>&1

notebooks=("$@")
if [ ${#notebooks[@]} -eq 0 ]; then
    notebooks=(01 02 03 04 05 06 07 08 09 10 11 12 13 14 15 16 17)
fi
printf "notebook\trc\tseconds\n" > "$OUT/times.tsv"
for nb in "${notebooks[@]}"; do
    remaining=$(left)
    if [ "$remaining" -lt 30 ]; then
        printf "%s\tskipped\t0\n" "$nb" >> "$OUT/times.tsv"
        continue
    fi
    t0=$(date +%s)
    timeout "$remaining" bestiary run "$nb" --profile "$PROFILE" --results "$OUT/full/$nb" \
        > "$OUT/full/$nb.log" 2>&1
    rc=$?
    printf "%s\t%s\t%s\n" "$nb" "$rc" "$(( $(date +%s) - t0 ))" >> "$OUT/times.tsv"
done
cat "$OUT/times.tsv"
