#!/usr/bin/env bash
# The main job on the bundled default network, with nothing but the installed package:
#   1. demo pairs: public-domain photos shipped with scikit-image + edgerain's procedural rain
#   2. edgerain eval on them (metrics table, CSV, JSON, side-by-side images)
#   3. edgerain derain on one rainy image
#   4. edgerain export of the default network for Jetson Orin, then edgerain verify of the bundle
# Usage: scripts/demo.sh BIN_DIR   (make demo passes .venv/bin). Outputs go to $EDGERAIN_DEMO_OUT
# (default out/demo).
set -euo pipefail

BIN_DIR="${1:?usage: scripts/demo.sh BIN_DIR (the folder holding the edgerain command, e.g. .venv/bin)}"
EDGERAIN="$BIN_DIR/edgerain"
OUT="${EDGERAIN_DEMO_OUT:-out/demo}"
if [[ ! -x "$EDGERAIN" ]]; then
    echo "demo: $EDGERAIN not found; install first (make install)" >&2
    exit 2
fi

echo "== 1/4 demo data: 6 rain/norain pairs (scikit-image photos + procedural rain) -> $OUT/pairs"
"$EDGERAIN" demo-data "$OUT/pairs" --count 6 --seed 0

echo
echo "== 2/4 evaluate the bundled default network on them -> $OUT/eval"
"$EDGERAIN" eval --data "$OUT/pairs" --out "$OUT/eval" --save-images

echo
echo "== 3/4 derain one image -> $OUT/derained"
"$EDGERAIN" derain "$OUT/pairs/rain/001.png" -o "$OUT/derained"

echo
echo "== 4/4 export the default network for jetson-orin -> $OUT/bundle, then verify it"
"$EDGERAIN" export --target jetson-orin --samples "$OUT/pairs/rain" --out "$OUT/bundle"
"$EDGERAIN" verify "$OUT/bundle"

echo
echo "demo done. Outputs:"
echo "  $OUT/pairs/{rain,norain}/NNN.png   demo pairs (labels.csv: photo, crop, rain pattern)"
echo "  $OUT/eval/summary.json             mean PSNR-Y / SSIM-Y / PSNR-RGB, rainy-input baseline"
echo "  $OUT/eval/per_image.csv            per-image metrics"
echo "  $OUT/eval/images/NNN.png           rainy | derained | clean"
echo "  $OUT/derained/001.png              the derained image"
echo "  $OUT/bundle/                       Jetson Orin bundle: ONNX graphs, manifest.json, build_engine.sh"
