#!/usr/bin/env bash
# One prepared GPU run that fits a 15-minute rented machine, its start-up included: fine-tune the
# shipped weights for MINUTES at full speed, evaluate the result with the defaults on the GPU (which
# also checks that refinement and smoothing run inside the CUDA graph there), benchmark it at batch 1
# and batched in fp16/bf16/fp32, and leave everything in $OUT as files of <= 16 MiB each: the
# weights (stored in fp16 when fp32 would be larger) and results.tar.gz with the JSONs and logs.
#
#   OUT=/tmp/out bash benchmarks/gpu_finetune.sh                        # ~13 minutes on one H200
#   OUT=/tmp/out SMOKE=1 DEVICE=cpu bash benchmarks/gpu_finetune.sh     # the tests' smoke run (seconds)
#   OUT=/tmp/out WIDTH=0.5 bash benchmarks/gpu_finetune.sh              # the shipped file grown to width 0.5 first
#   OUT=/tmp/out INIT= WIDTH=0.5 bash benchmarks/gpu_finetune.sh        # a wider network from scratch
#   OUT=/tmp/out MOTION=mixed bash benchmarks/gpu_finetune.sh           # half the batches with large motions
#   OUT=/tmp/out COMPILE=1 PROBE="64 256" bash benchmarks/gpu_finetune.sh  # torch.compile'd steps (not yet measured)
#
# Lessons it encodes (weights/README.md, README): run ONE training process per GPU (several at once
# stalled for minutes before 0.3.0); the width-0.25 step is launch-bound at batch 32 (~1,750 img/s
# on an H200), so the default batch is 64; use a seed other than 0, which stages 3 and 4 already
# trained on. Everything runs from the repository root without installing (PYTHONPATH); the GPU
# machine's image already has torch, typer, rich, imageio and safetensors.
set -euo pipefail
OUT=${OUT:?set OUT to the folder that collects the results}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-10}
BATCH=${BATCH:-64}
LR=${LR:-2e-4}
SEED=${SEED:-11}
COUNT=${COUNT:-64}
INIT=${INIT-weights/flownets.safetensors}  # empty: train from scratch at WIDTH
WIDTH=${WIDTH-}  # with INIT: empty keeps its width, a whole multiple grows it; from scratch: default 0.5
MOTION=${MOTION:-chairs}  # generated training scenes: chairs, wide or mixed (flowcli train --motion)
COMPILE=${COMPILE:-}  # 1: flowcli train --compile (fused kernels; the first steps compile)
PROBE=${PROBE:-}  # e.g. "128 256": 20 s of training at each batch size first, for img/s and data share
RUN=${RUN:-runs/gpu_finetune}
PYTHON=${PYTHON:-python3}
LIMIT_MIB=${LIMIT_MIB:-16}  # the device tool returns files of at most 16 MiB
PRESET=gpu
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
flowcli() { "$PYTHON" -m flowcli "$@"; }

train_options=(--device "$DEVICE" --lr "$LR" --seed "$SEED" --motion "$MOTION" --overwrite)
if [ -n "$INIT" ]; then train_options+=(--init "$INIT"); else WIDTH=${WIDTH:-0.5}; fi
if [ -n "$WIDTH" ]; then train_options+=(--width "$WIDTH"); fi
if [ -n "$COMPILE" ]; then train_options+=(--compile); fi
# the test set, 64 scenes of another seed (both judge a new file) and large motions; defaults and network alone
evals=("" "--refine 0 --no-smooth" "--passes 2" "--scene-seed 99" "--scene-seed 99 --refine 0 --no-smooth"
       "--motion wide" "--motion wide --refine 0 --no-smooth")
bench_options=(--runs 30)
bench_batches="1 $BATCH"
if [ -n "${SMOKE:-}" ]; then  # the smallest run that still goes through every step
    MINUTES=0.02 BATCH=2 COUNT=1 PRESET=quick
    train_options+=(--steps-per-epoch 2 --crop 64x64 --epochs 1)
    evals=("")
    bench_options=(--runs 1 --size 64x64) bench_batches=1
fi

train_options+=(--preset "$PRESET")
mkdir -p "$OUT/results"
{ date -u; "$PYTHON" -c "import torch; print('torch', torch.__version__)"; nvidia-smi -L 2>/dev/null || true; } \
    > "$OUT/results/machine.txt"
for batch in $PROBE; do
    flowcli train "${train_options[@]}" --minutes 0.33 --batch-size "$batch" --output "$RUN-probe$batch" \
        --json "$OUT/results/probe_$batch.json" > "$OUT/results/probe_$batch.log" 2>&1
    cp "$RUN-probe$batch/log.jsonl" "$OUT/results/probe_$batch.jsonl"
done
flowcli train "${train_options[@]}" --minutes "$MINUTES" --batch-size "$BATCH" --output "$RUN" \
    --json "$OUT/results/train.json" > "$OUT/results/train.log" 2>&1
cp "$RUN/log.jsonl" "$RUN/config.json" "$OUT/results/"

for options in "${evals[@]}"; do
    name=$(echo "${options:-defaults}" | tr -d '-' | tr ' ' '_')  # defaults, refine_0_nosmooth, passes_2
    # shellcheck disable=SC2086  # the options are meant to split into words
    flowcli eval --weights "$RUN/best.safetensors" --device "$DEVICE" --metric all --count "$COUNT" \
        $options --json "$OUT/results/eval_$name.json" > /dev/null
done
if [ "$DEVICE" = cpu ]; then dtypes="fp32"; else dtypes="fp16 bf16 fp32"; fi
for dtype in $dtypes; do
    for batch in $bench_batches; do
        flowcli bench --device "$DEVICE" --dtype "$dtype" --batch-size "$batch" --weights "$RUN/best.safetensors" \
            "${bench_options[@]}" --json "$OUT/results/bench_${dtype}_b$batch.json" > /dev/null
    done
done
tar -czf "$OUT/results.tar.gz" -C "$OUT" results
rm -r "$OUT/results"

# The weights come back whole if they fit the 16 MiB limit on returned files, else in fp16.
"$PYTHON" - "$RUN/best.safetensors" "$OUT" "$LIMIT_MIB" <<'EOF'
import os, shutil, sys
from safetensors import safe_open
from safetensors.torch import save_file
source, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]) << 20
if os.path.getsize(source) <= limit:
    shutil.copy(source, f"{out}/best.safetensors")
else:
    with safe_open(source, "pt") as f:
        tensors = {k: (t.half() if t.is_floating_point() else t) for k in f.keys() for t in [f.get_tensor(k)]}
        save_file(tensors, f"{out}/best.fp16.safetensors", metadata=f.metadata())
EOF

"$PYTHON" - "$OUT" <<'EOF'
import io, json, sys, tarfile
with tarfile.open(f"{sys.argv[1]}/results.tar.gz") as tar:
    files = {m.name.split("/")[-1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
for name in sorted(n for n in files if n.startswith("probe_") and n.endswith(".jsonl")):
    last = json.loads(files[name].decode().splitlines()[-1])
    print(f"probe batch {name[6:-6]}: {last['images_per_s']:.0f} img/s, data {100 * last['data_share']:.0f}% of step time")
log = [json.loads(line) for line in io.BytesIO(files["log.jsonl"]).read().decode().splitlines()]
print(f"trained {len(log)} epochs, best val EPE {min(r['val_epe'] for r in log):.3f}, "
      f"last {log[-1]['images_per_s']:.0f} img/s, data {100 * log[-1]['data_share']:.0f}% of step time")
for name in sorted(n for n in files if n.startswith(("eval_", "bench_"))):
    r = json.loads(files[name])
    if name.startswith("eval_"):
        print(f"{name[5:-5]:>32}: EPE {r['epe']:.3f}, <1px {100 * r['within']['1px']:.1f}%, {r['ms_per_image']:.2f} ms/img")
    else:
        print(f"{name[6:-5]:>32}: {r['median_ms_per_image']:.3f} ms/img median at batch {r['batch_size']}")
EOF
