# TeluCodec: the two commands in the README are `make demo` and `make test`.
# Everything else here is what they are built from.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
DEMO   ?= runs/demo

# On a small CPU machine torch's OpenMP threads spin-wait by default; with anything else
# busy (a data worker, a second job) steps got 2-30x slower. Passive waiting measured the
# same when idle and 2.3x faster with one busy neighbour (see BENCHMARKS.md).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install refs demo test lint format clean wheels-gpu

install: $(STAMP)

# Order matters: torch first (pinned 2.11), then deepspeed against that torch without build
# isolation (it only ships as source and imports torch in setup.py), then the package.
$(STAMP): setup.cfg pyproject.toml scripts/system-deps.sh
	bash scripts/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools<82" wheel
	$(PIP) install -q "torch==2.11.*" "torchaudio==2.11.*"
	DS_BUILD_OPS=0 $(PIP) install -q --no-build-isolation "deepspeed>=0.16"
	$(PIP) install -q -e ".[dev,eval,deepspeed]"
	touch $(STAMP)

# DAC and EnCodec from PyPI in their own venv (.venv-ref): the performance harness times
# their training steps beside ours (benchmarks/bench_step.py); their pins stay out of ours.
refs:
	bash scripts/ref-venvs.sh

demo: install
	$(PY) -m scripts.demo --out $(DEMO)

test: install refs
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# cp312 wheels for the lent GPU machine (no network there); see scripts/gather-gpu-wheels.sh
wheels-gpu: install
	bash scripts/gather-gpu-wheels.sh

clean:
	rm -rf $(VENV) .venv-ref runs .pytest_cache .ruff_cache *.egg-info
