#!/usr/bin/env bash
# Device run on two GPUs (nvidia-h200-x2): the diffusion stages through torchrun + FSDP2, and
# what each stage is for, measured on held-out clips. Two commands (10-minute limit each;
# runs/x2 stays on the warm machine in between):
#   bash benchmarks/device_stages_x2.sh A   frame cache; Stage 1 on one GPU (throughput
#                                           reference), then Stages 1 and 2 on two GPUs
#   bash benchmarks/device_stages_x2.sh B   Stage 3 on two GPUs; benchmarks/stage_figures.py
# Carries .carry/data (scripts/make_data_pack.py, plus the curated manifest.jsonl) and .carry/vae
# (a model folder whose VAE the stages use: the bundled model's). No PyAV there: frames are
# decoded by OpenCV and the RealBasicVSR codec pass is off (both rounds' codec_prob = 0).
# Minutes per run come from the environment: S1_1GPU_MIN, S1_MIN, S2_MIN, S3_MIN.
set -u
PART=${1:?A or B}
R=$(realpath -m runs/x2)
DATA=$(realpath .carry/data)
VAE=$(realpath .carry/vae)
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$R"
common=(--set "data.root=$DATA" --set "data.manifest=$DATA/manifest.jsonl" --set "data.frame_store=$R/frames"
        --set "vae=$VAE" --set "data.degradation.round1.codec_prob=0" --set "data.degradation.round2.codec_prob=0")
two_gpus=(torchrun --standalone --nproc-per-node 2 -m flashvsr.train train)

run() {  # run NAME MINUTES LAUNCHER... -- CONFIG EXTRA...
    local name=$1 minutes=$2
    shift 2
    echo "== $name ($minutes min)"
    local start=$(date +%s)
    "$@" "${common[@]}" --set "run.out_dir=$R/$name" --set "run.max_minutes=$minutes" > "$R/$name.log" 2>&1
    echo "exit $? after $(( $(date +%s) - start )) s"
    grep -v "^step" "$R/$name.log" | tail -n 4
    tail -n 1 "$R/$name/metrics.jsonl"
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [ "$PART" = A ]; then
    python -m flashvsr.train data cache "$DATA/manifest.jsonl" --root "$DATA" -o "$R/frames" --max-short-side 384
    run stage1_1gpu "${S1_1GPU_MIN:-1.0}" python -m flashvsr.train train stage1 configs/small/stage1.toml
    run stage1 "${S1_MIN:-3.0}" "${two_gpus[@]}" stage1 configs/small/stage1.toml --set run.distributed=fsdp
    run stage2 "${S2_MIN:-1.5}" "${two_gpus[@]}" stage2 configs/small/stage2.toml --set run.distributed=fsdp \
        --set "init=$R/stage1"
fi
if [ "$PART" = B ]; then
    run stage3 "${S3_MIN:-2.0}" "${two_gpus[@]}" stage3 configs/small/stage3.toml --set run.distributed=fsdp \
        --set "init=$R/stage2" --set "dmd.teacher=$R/stage1"
    python benchmarks/stage_figures.py --config configs/small/stage2.toml --vae "$VAE" --stage1 "$R/stage1" \
        --stage2 "$R/stage2" --stage3 "$R/stage3" "$DATA"/heldout/* | tee "$OUT/stage_figures.jsonl"
fi
tar -czf "$OUT/x2_$PART.tar.gz" -C "$R" $(cd "$R" && ls -d *.log */metrics.jsonl */samples 2>/dev/null)
ls -la "$OUT"
