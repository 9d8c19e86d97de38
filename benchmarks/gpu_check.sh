#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go (a few minutes on one H100/H200):
#   1. the GPU-only tests (pytest -m gpu);
#   2. the paper's experiment (experiment=gopro_full: grey ConvLSTM model, batch 16 of 256x256,
#      float32) for 2 short epochs on a synthetic set in GOPRO's folder layout, then a resume
#      from its last checkpoint for a third epoch: CUDA training, validation, test and resume;
#   3. benchmarks/bench.py's training and inference speed, plain float32 against bf16 +
#      channels-last (no torch.compile cases: their compile time would dominate a short check).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR [PARTS]]   (default: gpu_check_out/, "tests gopro bench")
# Each stage runs under its own time limit, so one failing stage does not stop the others;
# logs land in OUT_DIR. The exit status is the number of failed stages.
set -u
out=${1:-gpu_check_out}
parts=${2:-tests gopro bench}
mkdir -p "$out"
python=${PYTHON:-python3}
work=$(mktemp -d)
failed=0

stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "=== $name"
    local start=$SECONDS
    if timeout "$limit" "$@" >"$out/$name.log" 2>&1; then
        echo "=== $name: ok in $((SECONDS - start)) s"
    else
        echo "=== $name: FAILED (status $?) after $((SECONDS - start)) s; last lines:"
        failed=$((failed + 1))
    fi
    tail -n 15 "$out/$name.log"
}

wants() { [[ " $parts " == *" $1 "* ]]; }

nvidia-smi -L || true
if wants tests; then
# Only the files holding GPU tests: the others may import packages a GPU image lacks.
stage gpu_tests 240 "$python" -m pytest -q -m gpu -p no:cacheprovider $(grep -l "mark.gpu" tests/test_*.py)
fi

if wants gopro; then
stage gopro_data 120 "$python" -c "
from datamodules.synthetic import build_synthetic_dataset
# Samples every scikit-image release has bundled (no download on a machine without internet).
build_synthetic_dataset('$work/data/GOPRO_Large', train_frames=8, test_frames=1,
    train_images=['astronaut', 'rocket', 'coins', 'brick', 'grass', 'gravel', 'moon', 'camera'],
    test_images=['chelsea', 'coffee'])"

common=(experiment=gopro_full "paths.data_dir=$work/data" "paths.log_dir=$work/logs"
        data.train_samples_per_epoch=1600 trainer.check_val_every_n_epoch=1
        +trainer.limit_val_batches=2 trainer.log_every_n_steps=10 trainer.enable_progress_bar=false
        ~callbacks.rich_progress_bar)
stage gopro_full_train 300 "$python" train.py "${common[@]}" trainer.max_epochs=2
last=$(ls -t "$work"/logs/gopro_full/runs/*/checkpoints/last.ckpt 2>/dev/null | head -n 1)
stage gopro_full_resume 300 "$python" train.py "${common[@]}" trainer.max_epochs=3 "ckpt_path=$last"
for run in "$work"/logs/gopro_full/runs/*/; do
    cp "$run/csv/version_0/metrics.csv" "$out/metrics_$(basename "$run").csv" 2>/dev/null || true
done
fi

if wants bench; then
stage bench 300 "$python" benchmarks/bench.py --preset gpu \
    --infer lstm:plain,bf16_cl --train lstm:plain,bf16_cl --train color_lstm:plain,bf16_cl \
    --tiled none --warmup 3 --repeats 7 --loader-workers 8 --loader-batches 20 --json "$out/bench.json"
fi

rm -rf "$work"
echo "failed stages: $failed"
exit "$failed"
