#!/usr/bin/env bash
# One call on a GPU machine: build edgerain._C, run the GPU tests, run the kernel benchmark.
# Everything lands under $OUT (default: out/gpu_check): log.txt, pytest.xml, env.txt and the
# benchmark JSON (also copied to bench/results/ for committing).
#
#   OUT=/some/dir EDGERAIN_COMMIT=$(git rev-parse HEAD) bash bench/gpu_check.sh
#
# Needs: python with torch (CUDA) + triton, nvcc, pytest. Without network, pass wheels of missing
# pure-Python packages (e.g. pytest, iniconfig, pluggy) in $WHEELS; they are installed with --no-index.
# EDGERAIN_CUDA_ARCHS (default "87;90") chooses the compiled architectures; the local GPU's arch is added.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
status=0
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

{
  step "environment"
  nvidia-smi || { echo "no nvidia-smi: this script needs a GPU machine"; exit 2; }
  "$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if not torch.cuda.is_available():
    raise SystemExit("torch sees no CUDA device")
p = torch.cuda.get_device_properties(0)
print("device", p.name, f"sm_{p.major}{p.minor}", p.multi_processor_count, "SMs")
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton not installed: the triton backend will be reported unavailable")
PY
  [ $? -eq 0 ] || exit 2

  if [ -n "${WHEELS:-}" ]; then
    step "installing wheels from $WHEELS"
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$WHEELS"/*.whl || status=1
  fi

  step "building edgerain._C"
  arch=$("$PY" -c "import torch; a, b = torch.cuda.get_device_capability(); print(f'{a}{b}')")
  archs=${EDGERAIN_CUDA_ARCHS:-87;90}
  case ";$archs;" in *";$arch;"*) ;; *) archs="$archs;$arch" ;; esac
  export EDGERAIN_CUDA_ARCHS="$archs"
  MAX_JOBS=${MAX_JOBS:-8} "$PY" -m pip install --no-build-isolation --no-deps -e . || { echo "build failed"; exit 1; }
  "$PY" -c "import torch, edgerain._C as c; print('edgerain._C cuda', c.cuda_compiled(), 'archs', c.cuda_archs())" || status=1
  "$PY" -c "from edgerain.ops import backend_report
for row in backend_report(): print(*row, sep=' | ')" || status=1

  step "GPU tests"
  if "$PY" -c "import pytest" 2>/dev/null; then
    EDGERAIN_GPU_TESTS=1 "$PY" -m pytest -q -m gpu tests/ops --junitxml="$OUT/pytest.xml" -p no:cacheprovider || status=1
  else
    echo "pytest is not installed here: GPU tests NOT run (pass wheels in \$WHEELS)"
    status=1
  fi

  step "benchmark"
  "$PY" bench/kernels.py --out "$OUT" || status=1
  mkdir -p bench/results && cp "$OUT"/kernels-*.json bench/results/ 2>/dev/null

  step "done: status $status"
  exit "$status"
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
