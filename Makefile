# Everything a new user needs, from a machine that has only python3:
#   make demo   set up, then run the whole pipeline on the built-in synthetic city
#   make test   set up, then lint and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: a plain `torch` requirement with no torch installed pulls several GB of CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo-output

.PHONY: setup demo test lint format bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
# with every extra (Ray Data, Opacus): CI tests them too
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,privacy]"
	touch $@

demo: setup
	$(BIN)/cellsynth demo --out $(DEMO_OUT)

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Two workers on two cores: one thread each, or torch and BLAS oversubscribe the cores (measured 6x slower).
test: lint
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile -q

format: setup
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .hypothesis
