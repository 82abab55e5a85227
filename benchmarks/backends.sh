#!/usr/bin/env bash
# torch vs onnxruntime backend, whole default pipeline, A/B alternated ROUNDS times (shared machines
# drift): flowcli eval --metric epe and flowcli bench on the CPU. Needs the onnx extra.
#   ROUNDS=3 COUNT=32 THREADS=1 bash benchmarks/backends.sh
set -euo pipefail
ROUNDS=${ROUNDS:-3}; COUNT=${COUNT:-32}; THREADS=${THREADS:-1}; PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=$THREADS
$PYTHON -m flowcli eval --metric epe --count 1 --device cpu --backend onnxruntime >/dev/null  # fills the export cache
for round in $(seq "$ROUNDS"); do
  for backend in torch onnxruntime; do
    eval_line=$($PYTHON -m flowcli eval --metric epe --count "$COUNT" --device cpu --backend "$backend" | grep -E "EPE|time per image" | tr -s ' ' | tr '\n' ' ')
    bench_line=$($PYTHON -m flowcli bench --device cpu --threads "$THREADS" --backend "$backend" | grep -E "median ms" | tr -s ' ')
    echo "round $round $backend | eval: $eval_line | bench: $bench_line"
  done
done
