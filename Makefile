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

.PHONY: install refs demo test lint format clean wheels-gpu gpu-data check-gpu-kit gpu-check

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

# What a lent GPU machine (no network, 64 MiB carried per call) needs: cp312 wheels in
# .whl/{core,wandb,ref} (scripts/gather-gpu-wheels.sh) and the Telugu clips as 16-bit shards,
# speakers held out, in .gpu-data/telugu-emotion (28 MiB; the source FLACs are 106 MiB).
# launch/README.md, "GPU checks", has the commands that use them.
wheels-gpu: install refs
	bash scripts/gather-gpu-wheels.sh

# The kit on a Python 3.12 stand-in for the GPU image, here (5 GB venv in /tmp, minutes):
# a missing wheel fails here instead of on device time.
check-gpu-kit: wheels-gpu
	bash scripts/check-gpu-kit.sh

# Everything a GPU window needs (wheels, shards, scripts/gpu_check.py), then the one `run`
# call to make there, with the carried size measured against the 64 MiB limit (issue 13).
gpu-check: wheels-gpu gpu-data
	$(PY) scripts/gpu_check.py --print-command

GPU_DATA_SRC ?= ../shared/data/telugu-emotion
gpu-data: install
	$(VENV)/bin/telucodec-prep $(GPU_DATA_SRC) --out .gpu-data/telugu-emotion --overwrite \
	    --flac-bits 16 --split file --val-fraction 0.1 --group-regex 'SPK[FM]\d+' --quiet
	du -sh .gpu-data/telugu-emotion

clean:
	rm -rf $(VENV) .venv-ref runs .whl .gpu-data .pytest_cache .ruff_cache *.egg-info
