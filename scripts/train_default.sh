#!/usr/bin/env bash
# Reproduces the bundled default checkpoint (edgerain/weights/default.safetensors).
#
# clip-rpn-edge, random CLIP (router calibrated on synthetic labels), trained on pairs synthesised on
# the fly from ../shared/data/train (clean photos + Garg-Nayar streak layers), never on the
# evaluation folders. CPU run under `nice -n 15`, resumable: run the script again with RESUME=1.
#
#   RUN=/path/to/run scripts/train_default.sh          # fresh run
#   RUN=/path/to/run RESUME=1 scripts/train_default.sh # continue it
#
# On a GPU host drop `nice`, raise --batch/--patch and the budget; under torchrun (DDP):
#   torchrun --nproc-per-node N -m edgerain.cli train ... (same options)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/default}
VAL=${VAL:-$RUN/val_synth}
BUDGET_MIN=${BUDGET_MIN:-60}
EDGERAIN=${EDGERAIN:-.venv/bin/edgerain}

if [[ ! -d "$VAL" ]]; then
  # Held-out validation pairs: a different seed (other rain, other crops) than the training stream.
  nice -n 15 "$EDGERAIN" synth --out "$VAL" --count 12 --size 128 --seed 999
fi
extra=()
[[ "${RESUME:-0}" == 1 ]] && extra+=(--resume)
exec nice -n 15 "$EDGERAIN" train \
  --model clip-rpn-edge --data synth --out "$RUN" \
  --iters 20000 --time-budget-minutes "$BUDGET_MIN" \
  --batch 4 --patch 64 --lr 1e-3 --warmup-iters 30 --weight-decay 1e-4 \
  --shared-warmup 0.7 --calibrate-per-class 100 \
  --val "$VAL" --val-every 250 \
  --ckpt-every 100 --ckpt-minutes 4 --log-every 10 --seed 0 \
  --threads 1 --no-progress "${extra[@]}"
