#!/usr/bin/env bash
# The one-GPU recipe (conf/experiment/synthetic_gpu.yaml) on a lent GPU: train for KIMG kimg (or
# until LIMIT_S seconds, whichever first; the run saves last.ckpt when stopped), then benchmark3d
# on the newest checkpoint. Logs, samples, the benchmark JSON and panel land under $OUT.
#   run: KIMG=200 LIMIT_S=480 bash tools/gpu_recipe.sh
# UNMEASURED so far: no GPU has been lent to this project (README, "The one-GPU recipe").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_recipe}
KIMG=${KIMG:-200}
LIMIT_S=${LIMIT_S:-480}
mkdir -p "$OUT"
export WANDB_MODE=offline HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
make setup > "$OUT/setup.log" 2>&1 || { echo "setup failed: see $OUT/setup.log"; exit 1; }
PY=.venv/bin/python
start=$(date +%s)
# SIGINT at the limit: Lightning stops cleanly and the checkpoint callback writes last.ckpt.
timeout -s INT "$LIMIT_S" $PY -m gp3d.train experiment=synthetic_gpu trainer=gpu \
  model.total_kimg="$KIMG" hydra.run.dir="$OUT/run" > "$OUT/train.log" 2>&1
echo "train rc=$? wall_s=$(( $(date +%s) - start ))" >> "$OUT/summary.txt"
ckpt=$(ls -t "$OUT"/run/checkpoints/*.ckpt 2>/dev/null | head -1)
if [ -n "$ckpt" ]; then
  $PY -m gp3d.benchmark3d "$ckpt" --out "$OUT/benchmark3d" --num-invert 8 --no-progress \
    > "$OUT/benchmark3d.log" 2>&1
  echo "benchmark3d rc=$? ckpt=$ckpt" >> "$OUT/summary.txt"
fi
cat "$OUT/summary.txt"; tail -30 "$OUT/benchmark3d.log" 2>/dev/null
