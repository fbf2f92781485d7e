#!/usr/bin/env bash
# One call on a lent GPU machine (device tool, `run`): set up, run the GPU tests, then the training
# step benchmark at the 3DGP ImageNet-256 configuration in fp32, bf16, bf16+compile and
# bf16+channels_last (D in NHWC). Everything
# lands as JSON (and logs) under $OUT (default ./gpu_check), within ~8 minutes on one H100.
#   run: bash tools/gpu_check.sh            (carry .venv only if it was built with CUDA torch)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
export WANDB_MODE=offline HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
start=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
make setup > "$OUT/setup.log" 2>&1 || { echo "setup failed: see $OUT/setup.log"; exit 1; }
PY=.venv/bin/python
$PY - > "$OUT/torch.json" <<'PYEOF'
import json, torch
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda,
                  "available": torch.cuda.is_available(),
                  "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
PYEOF
# 1. GPU tests (CUDA vs CPU render, bf16 step) -> junit XML
timeout 150 $PY -m pytest -m gpu -q --junitxml="$OUT/gpu_tests.xml" > "$OUT/gpu_tests.log" 2>&1
echo "gpu tests rc=$?" >> "$OUT/summary.txt"
# 2. Training step at the ImageNet-256 configuration: fp32 eager is the baseline of the ratios.
#    TF32 is on in every entry (gp3d.utils.env) so fp32 means fp32 weights with TF32 matmuls.
timeout 400 $PY -m gp3d.bench --size full --device cuda --batch-size 32 --steps 16 --warmup 4 \
  --experiments 3dgp_imagenet \
                3dgp_imagenet,trainer.precision=bf16-mixed \
                3dgp_imagenet,trainer.precision=bf16-mixed,model.module.compile=true \
                3dgp_imagenet,trainer.precision=bf16-mixed,model.module.channels_last=true \
  --json "$OUT/bench_3dgp_imagenet.json" > "$OUT/bench.log" 2>&1
echo "bench rc=$?" >> "$OUT/summary.txt"
# 3. Data preparation: depth (Depth-Anything-V2-Small arch; LeReS ResNeXt-101 at 448 and 256) and
#    teacher images/s on the GPU in fp32 and bf16 (random weights, batches of 32), for the README's
#    ImageNet wall times.
for flag in "" "--bf16"; do
  timeout 120 $PY -m data_prep.bench --stages --images 30 --device cuda $flag \
    >> "$OUT/data_prep_bench.log" 2>&1
  echo "data_prep bench $flag rc=$?" >> "$OUT/summary.txt"
done
echo "wall_s=$(( $(date +%s) - start ))" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"; tail -20 "$OUT/bench.log"
