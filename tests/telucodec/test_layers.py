"""The package layers in setup.cfg's import-linter contracts hold: inference never imports
the trainer, the codec and the data side stand alone, the audio conditioning that prep and
inference share imports nothing above it, and no package has an import cycle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), "lint-imports not installed: pip install -e '.[dev]'"
    # this checkout's packages, not whatever an editable install points at
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [str(exe), "--config", "setup.cfg", "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 4 kept, 0 broken." in r.stdout, r.stdout
