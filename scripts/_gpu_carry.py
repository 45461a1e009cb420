"""What one GPU window carries and the one command it runs (``make gpu-check`` prints it).

A lent GPU machine gets the working tree (tracked files and untracked files git does not
ignore) plus the ignored paths named in ``carry``, 64 MiB in all, and has no network: the
wheels its image lacks (``make wheels-gpu``: .whl/core, .whl/ref) and the Telugu shards
(``make gpu-data``: .gpu-data) travel with it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from telucodec.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
CARRY = (".whl/core", ".whl/ref", ".gpu-data")
LIMIT_BYTES = 64 * 2**20  # the device tool's carry limit, working tree included
TIMEOUT_S = 600  # the run call's limit: the kit's 540 s deadline + the wheel install
INSTALL = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "
    ".whl/core/*.whl .whl/ref/*.whl"
)
KIT = "PYTHONPATH=/tmp/site:$PWD python3 scripts/gpu_check.py --out $OUT --ref-python python3"


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of the files a call copies without being told: tracked + untracked-not-ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, check=True,
    ).stdout  # fmt: skip
    names = [n for n in out.decode().split("\0") if n]
    return sum((root / n).stat().st_size for n in names if (root / n).is_file())


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def carried(root: Path = ROOT, carry: tuple[str, ...] = CARRY) -> dict[str, int]:
    """Bytes per carried part (``tree`` + each carry path); refuses a missing path."""
    sizes = {"tree": tree_bytes(root)}
    for rel in carry:
        path = root / rel
        if not path.is_dir() or not any(path.iterdir()):
            raise UserInputError(f"{rel}: missing or empty (make wheels-gpu / make gpu-data)")
        sizes[rel] = dir_bytes(path)
    return sizes


def command_text(sizes: dict[str, int], kit: str) -> str:
    """The ``run`` call to make in a GPU window, with the measured carry."""
    total = sum(sizes.values())
    parts = ", ".join(f"{k} {v / 2**20:.1f}" for k, v in sizes.items())
    return "\n".join([
        f"gpu-check: carried {total / 2**20:.1f} MiB of {LIMIT_BYTES / 2**20:.0f} ({parts} MiB)",
        f"gpu-check: next kit without a record in benchmarks/results/gpu/: {kit}",
        "gpu-check: in the GPU window, before anything else, call the device tool `run` with",
        f"  carry: {list(CARRY)}",
        f"  timeout_s: {TIMEOUT_S}",
        f"  command: {INSTALL} && {KIT}",
        "then copy the returned <date>-<kit>-<gpu>.json to benchmarks/results/gpu/, run "
        "`python -m benchmarks.gpu_tables` and commit both (launch/README.md, \"GPU checks\").",
    ])  # fmt: skip
