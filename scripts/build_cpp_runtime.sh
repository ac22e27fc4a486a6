#!/usr/bin/env bash
# Build the C++ runtime (csrc/runtime) into csrc/runtime/build; with --test, also run ctest.
# Fetches the header dependencies first (scripts/fetch_cpp_deps.sh). Independent of the Makefile.
#   scripts/build_cpp_runtime.sh [--test] [--python PATH]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${EDGERAIN_CPP_BUILD:-$REPO/csrc/runtime/build}"
PYTHON="$REPO/.venv/bin/python"
RUN_TESTS=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --test) RUN_TESTS=1 ;;
    --python) PYTHON="$2"; shift ;;
    *) echo "usage: $0 [--test] [--python PATH]" >&2; exit 2 ;;
  esac
  shift
done

bash "$REPO/scripts/fetch_cpp_deps.sh"

# The default ONNX Runtime library: the onnxruntime wheel's, when that Python has it.
ort_lib=""
if [[ -x "$PYTHON" ]]; then
  ort_lib="$("$PYTHON" - <<'PY' 2>/dev/null || true
import glob, os
import onnxruntime
libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
print(libs[0] if libs else "")
PY
)"
fi

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$REPO/csrc/runtime" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DEDGERAIN_ORT_DEFAULT_LIB="$ort_lib" -DEDGERAIN_PYTHON="$PYTHON" >/dev/null
else
  cmake "$BUILD" -DEDGERAIN_ORT_DEFAULT_LIB="$ort_lib" -DEDGERAIN_PYTHON="$PYTHON" >/dev/null
fi
cmake --build "$BUILD" -j "${EDGERAIN_BUILD_JOBS:-2}"
echo "built $BUILD/edgerain-infer" >&2
if [[ $RUN_TESTS == 1 ]]; then
  (cd "$BUILD" && ctest --output-on-failure)
fi
