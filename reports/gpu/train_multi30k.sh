#!/usr/bin/env bash
# The GPU run behind reports/gpu/README.md: the `multi30k` preset's model, additive and dot,
# trained side by side on one GPU (each with a wall-clock cap), then scored on every test split.
# Run from the repository root on the GPU machine; OUT is where logs and results go.
# The GPU image lacks pydantic: wheels travel in .whl/, the corpora in .gpudata/.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
MINUTES=${MINUTES:-3.5}
export PYTHONUNBUFFERED=1 DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD ATTNBENCH_DATA_DIR=$PWD/.gpudata ATTNBENCH_CACHE_DIR=/tmp/cache
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
# Both build the same tokenizers; the cache writes atomically (temp file + os.replace).
for attention in additive dot; do
  timeout 420 python3 -m attnbench.cli train --preset multi30k \
    --attention "$attention" --out "/tmp/runs/$attention" --quiet \
    --set train.max_minutes="$MINUTES" > "$OUT/train_$attention.log" 2>&1 &
done
wait
for attention in additive dot; do
  cp "/tmp/runs/$attention/results.json" "$OUT/results_$attention.json" 2>/dev/null
  cp "/tmp/runs/$attention/history.json" "$OUT/history_$attention.json" 2>/dev/null
  grep -E "trained|test_|BLEU|Error|error" "$OUT/train_$attention.log" | head -20
done
