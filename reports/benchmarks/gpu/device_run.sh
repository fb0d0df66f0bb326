#!/usr/bin/env bash
# The GPU checks and benchmarks of one lent-GPU session, in one call (see ../README.md):
# correctness and times of the fused kernel (SWEEP=1: other blocks too), whether the dispatch
# rule picks the faster path, the old-vs-new kernel comparison, the benchmark grid.
# Everything lands in $OUT (logs, and results.tgz with the benchmark folder and JSON files).
#   OUT=/tmp/gpu-out bash reports/benchmarks/gpu/device_run.sh [OLD_KERNEL.py]
# At most ~9.5 minutes without SWEEP or OLD (180 + 120 + BENCH_SECONDS + 60 s): the check's
# compiles took ~90 s on an H200 with the large-dv cases, the timings ~20 s.
set -u
OUT=${OUT:-/tmp/attnbench-gpu}
OLD=${1:-}
LENGTHS=${LENGTHS:-1024,4096,16384}
MODES=${MODES:-forward,backward,model}
BENCH_SECONDS=${BENCH_SECONDS:-200}
SWEEP=${SWEEP:-0}
SWEEP_FLAG=$([ "$SWEEP" = 1 ] && echo --sweep)
mkdir -p "$OUT/gpu"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout $((SWEEP ? 300 : 180)) "$PY" -m attnbench.attention.kernels.gpu_check $SWEEP_FLAG --lengths ${LENGTHS//,/ } --json "$OUT/gpu_check.json" \
    > "$OUT/gpu_check.log" 2>&1
echo "gpu_check exit $?"; grep -E "FAIL|correctness:|T= *[0-9]+ " "$OUT/gpu_check.log" | cut -c1-150
# the whole dispatch grid outlasted 180 s on an H200 (float32 fwd+bwd is slow in the kernel's
# precise mode); by default the trainer's CUDA precision only
timeout 120 "$PY" reports/benchmarks/gpu/dispatch_rule.py ${DISPATCH_ARGS:---precision bfloat16} \
    --json "$OUT/dispatch_rule.json" > "$OUT/dispatch_rule.md" 2>&1
echo "dispatch_rule exit $?"; cat "$OUT/dispatch_rule.md"
if [ -n "$OLD" ]; then
    timeout 60 "$PY" reports/benchmarks/gpu/kernel_versions.py --old "$OLD" --lengths ${LENGTHS//,/ } > "$OUT/versions.md" 2>&1
    echo "kernel_versions exit $?"; cat "$OUT/versions.md"
fi
timeout $((BENCH_SECONDS + 60)) "$PY" -m attnbench.bench --device cuda --out "$OUT/gpu" --lengths "${BENCH_LENGTHS:-$LENGTHS}" \
    --modes "$MODES" --max-seconds "$BENCH_SECONDS" > "$OUT/bench.log" 2>&1
echo "bench exit $?"
(cd "$OUT" && tar czf results.tgz gpu $(ls *.json 2>/dev/null) && rm -rf gpu ./*.json)
sed -n "/forward: tokens/,/^#* *Notes/p" "$OUT/bench.log" | grep -v "^$" | cut -c1-230
nvidia-smi --query-gpu=clocks.sm,temperature.gpu --format=csv,noheader
