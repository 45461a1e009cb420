#!/usr/bin/env bash
# Gathers the cp312 wheels the lent GPU machines lack into .whl/ (their image has torch 2.11,
# torchaudio, accelerate, numpy, scipy, matplotlib, numba, librosa's numeric deps,
# tensorboard, einops, pyyaml, tqdm, safetensors; see /work/.library/device/KINDS.md), in
# three folders so a call carries only what it needs (64 MiB per call, repo included):
#   .whl/core   ours without W&B: soundfile, soxr, pyloudnorm, webdataset, deepspeed (+ deps)
#   .whl/wandb  wandb and what only it needs (20 MB of the total)
#   .whl/ref    the reference venv's packages (DAC, EnCodec, audiotools, librosa...) at the
#               versions .venv-ref resolved, for benchmarks/bench_step.py --refs and
#               benchmarks/bench_budget.py (run them with --ref-python python3)
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
#       .whl/core/*.whl [.whl/ref/*.whl] [.whl/wandb/*.whl]
#   export PYTHONPATH=/tmp/site:$PWD
# --no-deps everywhere: only names missing on that image are fetched, one version of each.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.whl
PY=${PY:-.venv/bin/python}
REF_PY=${REF_PY:-.venv-ref/bin/python}
mkdir -p "$OUT/core" "$OUT/wandb" "$OUT/ref"
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 --platform any)
download() {  # folder, requirement...
  local dir=$1; shift
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLAT[@]}" -d "$dir" "$@"
}
# pydantic is DeepSpeed's (its config classes) as well as wandb's; platformdirs is pooch's too
download "$OUT/core" soundfile cffi pycparser soxr pyloudnorm future webdataset braceexpand hjson \
    pydantic pydantic-core annotated-types typing-inspection platformdirs
download "$OUT/wandb" wandb gitpython gitdb smmap sentry-sdk
# DeepSpeed ships only as source: build a pure-Python wheel here (ops are JIT-built there).
if ! ls "$OUT"/core/deepspeed-*.whl >/dev/null 2>&1; then
  DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/core" deepspeed
fi

# The reference packages the image lacks, pinned to what .venv-ref holds (make refs), so the
# GPU runs the same DAC/EnCodec code as the CPU figures. Not carried: protobuf (audiotools
# pins <3.20 for its tensorboard writer, which the step never uses; the image's own
# tensorboard + protobuf import fine) and everything the image already has.
REF_NAMES=(argbind asttokens audioread decorator descript-audio-codec descript-audiotools
           docstring-parser encodec executing ffmpy fire flatten-dict importlib-resources
           ipython ipython-pygments-lexers jedi julius librosa markdown2 matplotlib-inline parso
           pexpect pooch prompt-toolkit ptyprocess pure-eval pystoi randomname stack-data
           termcolor torch-stoi traitlets tzdata wcwidth)
if [ ! -x "$REF_PY" ]; then
  echo "gather-gpu-wheels: $REF_PY not found; run 'make refs' first" >&2
  exit 1
fi
FREEZE=$("$REF_PY" -m pip list --format=freeze 2>/dev/null | tr 'A-Z_' 'a-z-')
for name in "${REF_NAMES[@]}"; do
  pin=$(grep -E "^${name}==" <<<"$FREEZE" || true)
  if [ -z "$pin" ]; then
    echo "gather-gpu-wheels: $name is not in $REF_PY's environment" >&2
    exit 1
  fi
  # a few (argbind, encodec, randomname) are source-only on PyPI: build pure-Python wheels
  download "$OUT/ref" "$pin" 2>/dev/null || "$PY" -m pip wheel -q --no-deps -w "$OUT/ref" "$pin"
done
du -sh "$OUT"/core "$OUT"/wandb "$OUT"/ref
