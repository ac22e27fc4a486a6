#!/usr/bin/env bash
# One call on a lent CUDA machine (the device tool): continue training a checkpoint on synthetic rain
# for $MINUTES, then leave under $OUT what the tool can bring back (at most 8 files of 16 MiB): the
# checkpoint in parts of 15 MiB with its sha256, and the run's log.jsonl, run.json and curve.png.
#
#   here:    .venv/bin/python bench/pack_device.py --wheels     # .gl/train (data subset) and .whl/
#   device:  MINUTES=20 bash bench/gpu_train.sh --lr 1e-4 --route-by router --noise-rain 0.6 --seed 131
#            (the device tool's run, with carry [".gl", ".whl"])
#   here:    cat FILES_AT/ckpt.part* > stage.safetensors && sha256sum stage.safetensors  # = ckpt.sha256
#
# Options after the script's name go to `edgerain train` after its defaults here (batch 32 of
# 128x128 crops, --procedural-rain 0.5, the router kept); a later option wins. INIT (default: the
# bundled default), MINUTES (default 20), EDGERAIN_TRAIN_DATA (default .gl/train), WORKERS (default:
# cores - 2) and PYTHON (default python3) set the rest.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_train}
PY=${PYTHON:-python3}
INIT=${INIT:-edgerain/weights/default.safetensors}
MINUTES=${MINUTES:-20}
DATA=${EDGERAIN_TRAIN_DATA:-.gl/train}
WORKERS=${WORKERS:-$(($(nproc) > 2 ? $(nproc) - 2 : 1))}
RUN=${RUN:-/tmp/edgerain_gpu_train}
fail() { echo "error: $*" >&2; exit 2; }

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null ||
  fail "bench/gpu_train.sh trains on a CUDA GPU and $PY's torch sees none (on a CPU, run edgerain train itself)"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl ||
    fail "could not install the wheels in .whl/"
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
[[ -f $INIT ]] || fail "INIT=$INIT: no such checkpoint"
[[ -d $DATA ]] || fail "no training data at $DATA (make it here with bench/pack_device.py and carry it)"
mkdir -p "$OUT"
rm -rf "$RUN"

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"
EDGERAIN_TRAIN_DATA=$DATA "$PY" -m edgerain.cli train --model clip-rpn-edge --data synth --init "$INIT" --out "$RUN" \
  --batch 32 --patch 128 --iters 1000000 --time-budget-minutes "$MINUTES" --warmup-iters 100 --weight-decay 1e-4 \
  --procedural-rain 0.5 --calibrate-per-class 0 --workers "$WORKERS" --threads 2 --log-every 50 \
  --ckpt-every 1000000 --ckpt-minutes 3 --no-progress "$@" || fail "training failed (log: $RUN/log.jsonl)"

split -b 15M -d -a 1 "$RUN/last.safetensors" "$OUT/ckpt.part"
(cd "$RUN" && sha256sum last.safetensors) >"$OUT/ckpt.sha256"
cp "$RUN/log.jsonl" "$RUN/run.json" "$OUT/"
[[ -f $RUN/curve.png ]] && cp "$RUN/curve.png" "$OUT/"
ls -l "$OUT"
