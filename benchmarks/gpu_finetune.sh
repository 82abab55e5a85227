#!/usr/bin/env bash
# One prepared GPU run that fits a 15-minute rented machine, its start-up included: fine-tune the
# shipped weights for MINUTES at full speed, evaluate the result with the defaults on the GPU (which
# also checks that refinement and smoothing run inside the CUDA graph there), benchmark it at batch 1
# and batched in fp16/bf16/fp32, and leave everything in $OUT as files of <= 16 MiB each: the
# weights (benchmarks/weight_parts.py: fp16 parts when fp32 would be larger; `join` makes one file
# again) and results.tar.gz with the JSONs and logs. Each step that fails is logged and the next one
# runs; results.tar.gz is rewritten after every step, so a run stopped at its limit still returns
# what it finished; steps that would end past DEADLINE seconds are skipped (the weights never are).
# The device tool stops a command after 600 s: 4 minutes of training leave room for the rest.
#
#   OUT=/tmp/out bash benchmarks/gpu_finetune.sh                        # ~9 minutes on one H200
#   OUT=/tmp/out SMOKE=1 DEVICE=cpu bash benchmarks/gpu_finetune.sh     # the tests' smoke run (seconds)
#   OUT=/tmp/out INIT=old.safetensors WIDTH=0.5 bash ...                # a file grown to width 0.5 first (one
#                                                                       # without the convex upsampler: its head does not grow)
#   OUT=/tmp/out INIT= WIDTH=0.5 bash benchmarks/gpu_finetune.sh        # a wider network from scratch
#   OUT=/tmp/out MOTION=mixed bash benchmarks/gpu_finetune.sh           # half the batches with large motions
#   OUT=/tmp/out COMPILE=1 PROBE="64 256 256:reduce-overhead" bash ...  # compiled steps; width-0.25 img/s probes
#   OUT=/tmp/out INIT=stage.safetensors EXTRA="--freeze-bn" bash ...  # any other `flowcli train` options
#   OUT=/tmp/out PHASE=train MINUTES=8 bash ...; then OUT=/tmp/out PHASE=evaluate bash ...  # two calls
#   ... PHASE=evaluate PARTS=runs/gpu_parts bash ...  # a fresh machine: first join call 1's returned parts
#
# Lessons it encodes (weights/README.md, README): run ONE training process per GPU (several at once
# stalled for minutes before 0.3.0); the width-0.25 step is launch-bound at batch 32 (~1,750 img/s
# on an H200; ~3,800 at batch 256, benchmarks/README.md), so the default batch is 64, which the
# width-0.5 network trains at ~2,300 img/s; use a seed other than 0, which stages 3 and 4 already
# trained on. Everything runs from the repository root without installing (PYTHONPATH); the GPU
# machine's image already has torch, typer, rich, imageio and safetensors.
set -euo pipefail
OUT=${OUT:?set OUT to the folder that collects the results}
DEVICE=${DEVICE:-cuda}
MINUTES=${MINUTES:-4}
BATCH=${BATCH:-64}
LR=${LR:-2e-4}
SEED=${SEED:-11}
COUNT=${COUNT:-64}
INIT=${INIT-weights/flownets.safetensors}  # empty: train from scratch at WIDTH
WIDTH=${WIDTH-}  # with INIT: empty keeps its width, a whole multiple grows it; from scratch: default 0.5
MOTION=${MOTION:-chairs}  # generated training scenes: chairs, wide or mixed (flowcli train --motion)
COMPILE=${COMPILE:-}  # 1: flowcli train --compile (fused kernels; the first steps compile; eager if that fails)
PROBE=${PROBE:-}  # e.g. "128 256 256:reduce-overhead": 30 s (compiled: 96 s) of the shipped width-0.25 network
                  # at each batch size first (:MODE sets torch.compile's mode; reduce-overhead adds CUDA graphs)
PROBE_COMPILE=${PROBE_COMPILE-$COMPILE}  # the probes compiled (default: as the training)
STEPS=${STEPS:-200}  # steps per epoch: each epoch ends in validation and ~155 MB of checkpoints (width 0.5),
                    # which at the preset's 50 steps took a quarter of the run (benchmarks/README.md)
EXTRA=${EXTRA:-}  # more `flowcli train` options, e.g. --freeze-bn
KERNEL_CHECK=${KERNEL_CHECK-1}  # 1: first the generator's kernels on DEVICE (eager, compiled) against the CPU's
DEADLINE=${DEADLINE:-570}  # seconds: later steps that would not finish by then are skipped
# all; or train (up to the weights) in one call, then evaluate (RUN's weights) in a second call while
# the machine is still warm and holds RUN (else PARTS): 8 minutes of training then fit a call (the
# PROBEs run before training in all, after the benchmarks in evaluate, never in train)
PHASE=${PHASE:-all}
RUN=${RUN:-runs/gpu_finetune}
# evaluate on a fresh machine (the warm one is released after ~30 s idle, and RUN with it): a folder
# holding the first call's best.part*.safetensors, carried up with the tree; joined when RUN has none
PARTS=${PARTS:-}
PYTHON=${PYTHON:-python3}
LIMIT_MIB=${LIMIT_MIB:-16}  # the device tool returns files of at most 16 MiB
PRESET=gpu
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
flowcli() { "$PYTHON" -m flowcli "$@"; }
results=$RUN-results
pack() { tar -czf "$OUT/results.tar.gz.tmp" -C "$(dirname "$results")" "$(basename "$results")" \
             && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"; }
step() {  # step SECONDS_NEEDED NAME COMMAND...: unless it would end past DEADLINE (0: always); log failures
    local need=$1 name=$2; shift 2
    if (( need > 0 && SECONDS + need > DEADLINE )); then
        echo "skipped $name: ${SECONDS}s gone" | tee -a "$results/steps.txt"; return 0
    fi
    local t0=$SECONDS
    if "$@"; then echo "done $name in $((SECONDS - t0))s" >> "$results/steps.txt"
    else echo "FAILED $name (exit $?) after $((SECONDS - t0))s" | tee -a "$results/steps.txt"; fi
    pack || echo "packing the results failed" | tee -a "$results/steps.txt"
}
seconds() { awk "BEGIN { print int($1) }"; }  # bash has no fractions: MINUTES may be 0.02
left() { local n=$((DEADLINE - SECONDS - 15)); echo $((n > 1 ? n : 1)); }  # for timeout, where 0 means none

train_options=(--device "$DEVICE" --lr "$LR" --seed "$SEED" --motion "$MOTION" --steps-per-epoch "$STEPS" --overwrite)
if [ -n "$INIT" ]; then train_options+=(--init "$INIT"); else WIDTH=${WIDTH:-0.5}; fi
if [ -n "$WIDTH" ]; then train_options+=(--width "$WIDTH"); fi
# shellcheck disable=SC2206  # EXTRA is meant to split into words
train_options+=($EXTRA)
if [ "$COMPILE" = 1 ]; then compile_option=--compile; else compile_option=; fi  # one word or none
if [ "$PROBE_COMPILE" = 1 ]; then probe_compile=--compile; else probe_compile=; fi
# the test set, 64 scenes of another seed (both judge a new file) and large motions; defaults and network alone
evals=("" "--refine 0 --no-smooth" "--passes 2" "--scene-seed 99" "--scene-seed 99 --refine 0 --no-smooth"
       "--motion wide" "--motion wide --refine 0 --no-smooth")
if [ -n "${EVALS+set}" ]; then IFS='|' read -ra evals <<< "$EVALS"; fi  # e.g. EVALS="|--refine 0 --no-smooth"
bench_options=(--runs 30 --overwrite)
bench_batches="1 $BATCH"
probe_options=(--minutes 0.5) probe_need=60
# compiling the step takes ~46 s on an H200 (benchmarks/README.md): a compiled probe runs longer
if [ "$PROBE_COMPILE" = 1 ]; then probe_options=(--minutes 1.6) probe_need=120; fi
if [ -n "${SMOKE:-}" ]; then  # the smallest run that still goes through every step
    MINUTES=0.02 BATCH=2 COUNT=1 PRESET=quick KERNEL_CHECK=
    train_options+=(--steps-per-epoch 2 --crop 64x64 --epochs 1)
    probe_options=(--minutes 0.01 --steps-per-epoch 1 --crop 64x64 --epochs 1)
    evals=("")
    bench_options=(--runs 1 --size 64x64 --overwrite) bench_batches=1
fi
train_options+=(--preset "$PRESET")

case $PHASE in all | train | evaluate) ;; *) echo "PHASE=$PHASE: choose all, train or evaluate" >&2; exit 2 ;; esac
for entry in $PROBE; do  # a mode is torch.compile's: refused where nothing compiles, or misspelt
    case $entry in
        *:*) if [ "$PROBE_COMPILE" != 1 ]; then echo "PROBE=$entry: a compile mode needs PROBE_COMPILE=1" >&2; exit 2; fi
             modes=$("$PYTHON" -c "from flowcli.training.setup import COMPILE_MODES; print(' '.join(COMPILE_MODES))")
             case " $modes " in *" ${entry#*:} "*) ;;
                 *) echo "PROBE=$entry: the mode is one of ${modes// /, }" >&2; exit 2 ;; esac ;;
    esac
done
# nothing of an earlier run is returned as this one's
if [ "$PHASE" = evaluate ]; then rm -rf "$results"; else rm -rf "$results" "$RUN" "$RUN"-probe*; fi
mkdir -p "$results" "$OUT"
{ date -u; "$PYTHON" -c "import torch; print('torch', torch.__version__)"; nvidia-smi -L 2>/dev/null || true; } \
    > "$results/machine.txt"
if [ "$KERNEL_CHECK" = 1 ] && [ "$PHASE" != evaluate ]; then
    step 90 kernel_check timeout 90 "$PYTHON" benchmarks/kernel_check.py --variants cpu "$DEVICE" "$DEVICE:compile" \
        --json "$results/kernel_check.json" > "$results/kernel_check.log" 2>&1
fi

probe_train=(--device "$DEVICE" --seed "$SEED" --overwrite --init weights/flownets.safetensors --preset "$PRESET")
probe() {  # probe BATCH[:MODE], MODE being torch.compile's (reduce-overhead: CUDA graphs)
    local batch=${1%%:*} mode= name=$1
    if [ "$batch" != "$1" ]; then mode=${1#*:} name=$batch-$mode; fi
    # shellcheck disable=SC2086  # probe_compile is one word or none
    local limit=$((probe_need + 30)) ends; ends=$(left); limit=$((limit < ends ? limit : ends))
    FLOWCLI_COMPILE_MODE=$mode timeout -k 10 "$limit" "$PYTHON" -m flowcli train "${probe_train[@]}" \
        $probe_compile "${probe_options[@]}" --batch-size "$batch" --output "$RUN-probe$name" \
        --json "$results/probe_$name.json" > "$results/probe_$name.log" 2>&1
    local status=$?
    cp "$RUN-probe$name/log.jsonl" "$results/probe_$name.jsonl" 2>/dev/null
    return $status
}
probes() { for batch in $PROBE; do step "$probe_need" "probe b$batch" probe "$batch"; done; }
if [ "$PHASE" = all ]; then probes; fi  # train: none (all the time trains); evaluate: at the end

train() {  # compiled when asked; if compiling fails before the first epoch ends, eager for the time left
    local t0=$SECONDS status
    # a hang or an overrun is stopped in time to return the epochs already saved (the tool's 600 s kill would not)
    # shellcheck disable=SC2086  # compile_option is one word or none
    timeout -k 10 "$(left)" "$PYTHON" -m flowcli train "${train_options[@]}" $compile_option --minutes "$MINUTES" \
        --batch-size "$BATCH" --output "$RUN" --json "$results/train.json" > "$results/train.log" 2>&1
    status=$?
    if [ $status -ne 0 ] && [ -n "$compile_option" ] && [ ! -f "$RUN/last.safetensors" ]; then
        echo "compiled training failed after $((SECONDS - t0))s; eager" >> "$results/steps.txt"
        timeout -k 10 "$(left)" "$PYTHON" -m flowcli train "${train_options[@]}" \
            --minutes "$(awk "BEGIN { print $MINUTES - ($SECONDS - $t0) / 60 }")" \
            --batch-size "$BATCH" --output "$RUN" --json "$results/train.json" > "$results/train_eager.log" 2>&1
        status=$?
    fi
    cp "$RUN/log.jsonl" "$RUN/config.json" "$results/" 2>/dev/null
    return $status
}
if [ "$PHASE" != evaluate ]; then
    step "$(seconds "$MINUTES * 60 + 55")" train train  # 40 s: start-up and the last validation; 15 s: the weights
fi
if [ "$PHASE" = evaluate ] && [ ! -f "$RUN/best.safetensors" ] && [ -n "$PARTS" ]; then
    mkdir -p "$RUN"
    step 0 join "$PYTHON" benchmarks/weight_parts.py join "$PARTS"/best.part*.safetensors -o "$RUN/best.safetensors"
fi
if [ ! -f "$RUN/best.safetensors" ]; then
    echo "no trained weights: weights, evaluations and benchmarks skipped" | tee -a "$results/steps.txt"
    evals=() dtypes=
else
    if [ "$PHASE" != evaluate ]; then
        step 0 weights "$PYTHON" benchmarks/weight_parts.py split "$RUN/best.safetensors" "$OUT" --limit-mib "$LIMIT_MIB"
    fi
    if [ "$PHASE" = train ]; then evals=() dtypes=; elif [ "$DEVICE" = cpu ]; then dtypes="fp32"
    else dtypes="fp16 bf16 fp32"; fi
fi

for options in ${evals[@]+"${evals[@]}"}; do
    name=$(echo "${options:-defaults}" | tr -d '-' | tr ' ' '_')  # defaults, refine_0_nosmooth, passes_2
    # shellcheck disable=SC2086  # the options are meant to split into words
    step 20 "eval $name" flowcli eval --weights "$RUN/best.safetensors" --device "$DEVICE" --metric all \
        --count "$COUNT" $options --json "$results/eval_$name.json" --overwrite > /dev/null 2> "$results/eval_$name.err"
done
for dtype in $dtypes; do
    for batch in $bench_batches; do
        step 15 "bench $dtype b$batch" flowcli bench --device "$DEVICE" --dtype "$dtype" --batch-size "$batch" \
            --weights "$RUN/best.safetensors" "${bench_options[@]}" --json "$results/bench_${dtype}_b$batch.json" \
            > /dev/null 2> "$results/bench_${dtype}_b$batch.err"
    done
done
if [ "$PHASE" = evaluate ]; then probes; fi
pack

"$PYTHON" - "$OUT" <<'EOF'
import json, sys, tarfile
with tarfile.open(f"{sys.argv[1]}/results.tar.gz") as tar:
    files = {m.name.split("/")[-1]: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}
print(files.get("steps.txt", ""), end="")
print(files.get("kernel_check.log", ""), end="")
if "log.jsonl" in files:
    log = [json.loads(line) for line in files["log.jsonl"].splitlines()]
    print(f"trained {len(log)} epochs, best val EPE {min(r['val_epe'] for r in log):.3f}, "
          f"last {log[-1]['images_per_s']:.0f} img/s, data {100 * log[-1]['data_share']:.0f}% of step time")
for name in sorted(files):
    if name.startswith("probe_") and name.endswith(".jsonl") and files[name].strip():
        last = json.loads(files[name].splitlines()[-1])
        print(f"probe batch {name[6:-6]}: {last['images_per_s']:.0f} img/s, data {100 * last['data_share']:.0f}% of step time")
    elif name.endswith(".err") and files[name].strip() and name[:-4] + ".json" not in files:  # failed: why
        print(f"{name[:-4]:>32}: {files[name].strip().splitlines()[-1]}")
    elif name.startswith("eval_") and name.endswith(".json"):
        r = json.loads(files[name])
        print(f"{name[5:-5]:>32}: EPE {r['epe']:.3f}, <1px {100 * r['within']['1px']:.1f}%, {r['ms_per_image']:.2f} ms/img")
    elif name.startswith("bench_") and name.endswith(".json"):
        r = json.loads(files[name])
        print(f"{name[6:-5]:>32}: {r['median_ms_per_image']:.3f} ms/img median at batch {r['batch_size']}")
EOF
