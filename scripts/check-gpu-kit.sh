#!/usr/bin/env bash
# Checks, here and without a GPU, that the carried kit (.whl/core + .whl/ref from
# `make wheels-gpu`) is complete for the lent GPU image: a Python 3.12 venv stands in for
# the image (torch 2.11 + the image's packages that we and the references import, at their
# newest versions: numpy, scipy, numba, tensorboard + protobuf, einops, accelerate,
# transformers...), the kit goes in with `pip install --no-deps --target` exactly as on the
# machine, and the GPU window's own script rehearses both kits on it at debug sizes
# (`scripts/gpu_check.py --rehearse`: every stage, the DAC/EnCodec timers, DeepSpeed ZeRO-2
# and torch.compile included); every stage must end "ok".
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
# Accelerate's DeepSpeed plugin imports transformers: the image has it, an older stand-in
# venv may not
"$SIM/bin/python" -c "import transformers" 2>/dev/null || "$SIM/bin/pip" install -q transformers
rm -rf "$SITE"
"$SIM/bin/python" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    .whl/core/*.whl .whl/ref/*.whl
export PYTHONPATH=$SITE:$PWD OMP_WAIT_POLICY=PASSIVE
OUT=$SIM-out
rm -rf "$OUT"
for kit in speed budget; do
  "$SIM/bin/python" scripts/gpu_check.py --rehearse --kit "$kit" --minutes 0.1 --out "$OUT" \
      --workdir "$SIM-work" --ref-python "$SIM/bin/python"
done
# every stage of both kits ended ok, and the records carry the envelope the tables read
"$SIM/bin/python" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

bad = []
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    doc = json.loads(path.read_text())
    assert {"kit", "device", "date", "torch", "records"} <= set(doc), path
    bad += [f"{doc['kit']}/{n}: {s['status']} {s.get('error', s.get('reason', ''))}"
            for n, s in doc["stages"].items() if s["status"] != "ok"]
    print(f"check-gpu-kit: {path.name}: {len(doc['records'])} records, "
          f"{len(doc['stages'])} stages, {doc['elapsed_s']} s")
if bad:
    sys.exit("check-gpu-kit: stages not ok:\n  " + "\n  ".join(bad))
EOF
echo "check-gpu-kit: the kit imports and rehearses both kits on Python 3.12 ($SIM; records in $OUT)"
