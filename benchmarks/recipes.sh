#!/usr/bin/env bash
# README's "Which recipe to start from": three recipes, the same wall-clock budget, the same folder and
# split; then the reference's table for each, network alone and with the defaults.
#   DATA=/tmp/chairs1485 OUT=/tmp/recipes MINUTES=8 bash benchmarks/recipes.sh   (from the repository root)
# Make the folder first: flowcli synth /tmp/chairs1485 --count 1485
set -euo pipefail
DATA=${DATA:?a Flying Chairs folder}; OUT=${OUT:?an output folder}; MINUTES=${MINUTES:-8}
WIDTH=${WIDTH:-0.25}; DEVICE=${DEVICE:-cpu}; PYTHON=${PYTHON:-python3}
flowcli() { "$PYTHON" -m flowcli "$@"; }
mkdir -p "$OUT"
common=(--minutes "$MINUTES" --device "$DEVICE" --overwrite)
flowcli train "$DATA" --preset reference --width "$WIDTH" "${common[@]}" -o "$OUT/a" > "$OUT/a_train.txt" 2>&1
flowcli train "$DATA" --split reference --width "$WIDTH" --epochs 1000 "${common[@]}" -o "$OUT/b" > "$OUT/b_train.txt" 2>&1
flowcli train "$DATA" --split reference --init weights/flownets.safetensors --freeze-bn --lr 1e-4 --epochs 1000 \
    "${common[@]}" -o "$OUT/c" > "$OUT/c_train.txt" 2>&1
for run in a b c; do
    # last.safetensors: the reference split's val part is its test part, so best.* was chosen on the test pairs
    flowcli eval "$DATA" --weights "$OUT/$run/last.safetensors" --report reference --refine 0 --no-smooth \
        --device "$DEVICE" --json "$OUT/${run}_net.json" --overwrite
    flowcli eval "$DATA" --weights "$OUT/$run/last.safetensors" --report reference --device "$DEVICE" \
        --json "$OUT/${run}_def.json" --overwrite
done
