#!/usr/bin/env bash
# Checks, here and without a GPU, that the carried kit (.whl/core + .whl/ref from
# `make wheels-gpu`) is complete for the lent GPU image: a Python 3.12 venv stands in for
# the image (torch 2.11 + the image's packages that we and the references import, at their
# newest versions: numpy, scipy, numba, tensorboard + protobuf, einops, accelerate...), the
# kit goes in with `pip install --no-deps --target` exactly as on the machine, and the tiny
# step benchmark (ours + DAC + EnCodec) and the tiny budget benchmark run on it.
# A missing wheel shows up here as an ImportError instead of costing device time.
# Usage: bash scripts/check-gpu-kit.sh   (PYTHON312=/path/to/python3.12, SIM=/tmp/gpusim)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON312=${PYTHON312:-}
if [ -z "$PYTHON312" ]; then  # on PATH, or a pyenv build that is not the active version
  for c in python3.12 $(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12; do
    if "$c" --version >/dev/null 2>&1; then PYTHON312=$c; break; fi
  done
fi
if [ -z "$PYTHON312" ]; then
  echo "check-gpu-kit: no Python 3.12 found (the GPU image's version); set PYTHON312=path" >&2
  exit 1
fi
SIM=${SIM:-/tmp/gpusim}
SITE=$SIM-site
if [ ! -x "$SIM/bin/python" ]; then
  "$PYTHON312" -m venv "$SIM"
  # the image's own packages (KINDS.md) that our code or the references import
  "$SIM/bin/pip" install -q "torch==2.11.*" "torchaudio==2.11.*" accelerate numpy scipy numba \
      llvmlite matplotlib tensorboard protobuf einops pyyaml tqdm safetensors rich psutil \
      packaging py-cpuinfo ninja msgpack joblib scikit-learn lazy-loader requests nvidia-ml-py
fi
rm -rf "$SITE"
"$SIM/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    .whl/core/*.whl .whl/ref/*.whl
export PYTHONPATH=$SITE:$PWD OMP_WAIT_POLICY=PASSIVE
"$SIM/bin/python" -m benchmarks.bench_step --tiny --steps 1 --warmup 1 --refs dac,encodec \
    --ref-python "$SIM/bin/python" --reader-seconds 0.5 data.num_workers=1 | grep -E '^\| (ours|dac|encodec)'
"$SIM/bin/python" -m benchmarks.bench_budget --tiny --minutes 0.15 --val-every-minutes 0.1 \
    --workdir "$SIM-budget" --ref-python "$SIM/bin/python" data.num_workers=1 | grep -E '^Bar'
echo "check-gpu-kit: the kit imports and runs both benchmarks on Python 3.12 ($SIM)"
