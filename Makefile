# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when the pinned set or the build description changes.
STAMP := $(VENV)/.stamp-install
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test lint typecheck pytest cpp bench-quant train-default clean

install: $(STAMP)

# The edgerain._C extension's sources (csrc/runtime/ is a separate CMake project): editing them
# re-runs the editable install, which rebuilds the extension in place.
EXT_SOURCES := $(shell find csrc -path csrc/runtime -prune -o -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' \) -print 2>/dev/null)

$(STAMP): requirements/lock.txt pyproject.toml setup.py $(EXT_SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements/lock.txt
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .
	@touch $@

demo: install
	@bash scripts/demo.sh $(BIN)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# --durations: the ten slowest tests in every run, to keep CI (25-minute budget) in view.
pytest: install
	$(BIN)/python -m pytest -q --durations=10 $(PYTEST_ARGS)

test: lint typecheck pytest

# The C++ runtime (edgerain-infer) and its ctest; `make test` also builds and checks it from pytest.
cpp: install
	bash scripts/build_cpp_runtime.sh --test

# CPU INT8 vs FP32 benchmark (minutes; writes bench/results/quant_cpu.json). Not part of `make test`.
bench-quant: install
	nice -n 15 $(BIN)/python bench/quant.py

# Re-train the bundled default network from its recipe (about 12 hours on a 2-core CPU for eight
# training stages, the router and its offsets, plus two ~10-minute stages that need a CUDA GPU and
# are skipped with a notice without one; see MODEL_CARD.md).
train-default: install
	RUN=runs/default bash scripts/train_default.sh

clean:
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache
