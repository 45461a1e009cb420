#!/usr/bin/env bash
# Gathers the cp312 wheels the GPU machines lack (their image has torch 2.11, torchaudio,
# accelerate, numpy, scipy, matplotlib, pyyaml, tqdm, safetensors, but not these) into .whl/,
# so a GPU session carries `.whl` and runs:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
# Only names missing on that image are fetched (--no-deps), one version of each.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.whl
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 --platform any)
PKGS=(soundfile cffi pycparser soxr pyloudnorm future webdataset braceexpand
      wandb gitpython gitdb smmap sentry-sdk pydantic pydantic-core annotated-types
      typing-inspection platformdirs hjson)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLAT[@]}" -d "$OUT" "${PKGS[@]}"
# DeepSpeed ships only as source: build a pure-Python wheel here (ops are JIT-built there).
if ! ls "$OUT"/deepspeed-*.whl >/dev/null 2>&1; then
  DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" deepspeed
fi
ls -la "$OUT"
du -sh "$OUT"
