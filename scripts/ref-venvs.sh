#!/usr/bin/env bash
# Creates the reference-implementation virtualenv that benchmarks/refs/*.py run in:
#   .venv-ref/ (override with REF_VENV=path): torch 2.11 + torchaudio 2.11 (the same line as
#   our .venv, so both sides run the same kernels) plus DAC (`descript-audio-codec`) and
#   EnCodec (`encodec`) from PyPI.
# Why a separate venv: DAC pulls descript-audiotools, which pins protobuf<3.20 and drags in
# librosa/numba/tensorboard/ipython; none of that belongs in our environment. DAC and
# EnCodec resolve together (checked with `pip install --dry-run`), so one venv serves both.
# Idempotent: a stamp file records the exact requirement list; a second run with the same
# list is a no-op. Usage: bash scripts/ref-venvs.sh   (PYTHON=python3.11 REF_VENV=.venv-ref)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
REF_VENV=${REF_VENV:-.venv-ref}
STAMP="$REF_VENV/.installed"
# Exact reference versions: a benchmark of "DAC" must say which DAC. torch/torchaudio follow
# our own pin (setup.cfg) so the ratios compare the implementations, not torch releases.
TORCH_REQS=("torch==2.11.*" "torchaudio==2.11.*")
REF_REQS=("descript-audio-codec==1.0.0" "encodec==0.1.1")
SPEC="${TORCH_REQS[*]} ${REF_REQS[*]}"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SPEC" ]; then
  echo "ref-venvs: $REF_VENV is up to date ($SPEC)"
  exit 0
fi

fail() {
  echo "ref-venvs: FAILED while $1 (venv: $REF_VENV). Nothing was stamped; fix the cause" \
       "and rerun, or delete $REF_VENV to start clean." >&2
}
trap 'fail "${step:-starting}"' ERR

SECONDS=0
step="checking $PYTHON"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "ref-venvs: $PYTHON not found; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
step="creating the venv"
test -x "$REF_VENV/bin/python" || "$PYTHON" -m venv "$REF_VENV"
PIP=("$REF_VENV/bin/python" -m pip)
step="upgrading pip"
"${PIP[@]}" install -q --upgrade pip
# torch first and alone, then the references with torch re-stated, so the resolver can never
# swap torch for another version to satisfy them.
step="installing ${TORCH_REQS[*]}"
"${PIP[@]}" install -q "${TORCH_REQS[@]}"
step="installing ${REF_REQS[*]}"
"${PIP[@]}" install -q "${TORCH_REQS[@]}" "${REF_REQS[@]}"
step="checking the imports"
"$REF_VENV/bin/python" - <<'EOF'
import importlib.metadata as md

import audiotools  # noqa: F401  (DAC's losses take AudioSignal objects)
import dac  # noqa: F401
import encodec  # noqa: F401
import torch

assert torch.__version__.startswith("2.11"), torch.__version__
print("ref-venvs: torch", torch.__version__, "| descript-audio-codec",
      md.version("descript-audio-codec"), "| encodec", md.version("encodec"))
EOF
echo "$SPEC" >"$STAMP"
trap - ERR
echo "ref-venvs: installed $REF_VENV in ${SECONDS}s, size $(du -sh "$REF_VENV" | cut -f1)"
