"""One time-boxed GPU check (issue 13): runs one kit under a hard wall deadline and writes
its records as it goes, so a command cut off at its limit still returns every finished stage.

On a lent GPU machine (``make gpu-check`` prints the exact command)::

    python3 scripts/gpu_check.py --out $OUT --ref-python python3 [--kit speed|budget]
        [--deadline 540] [--stages a,b] [--stage-timeout stage=seconds]

Kits (default: the first whose records are missing from benchmarks/results/gpu/):

- ``speed``: env (GPU, driver, torch, measured bf16 matmul TFLOP/s), data, full training
  steps of configs/telugu16k.yaml at batch 12 x 1 s for ours bf16 (STFT/mel fp32), ours
  fp32, DAC's recipe and EnCodec's (benchmarks/refs, run by ``--ref-python``), a 300-step
  ``accelerate launch`` run with a validation at its end, DeepSpeed ZeRO-2 on one GPU
  (50 steps, resume, 10 more, export), batched inference throughput, the step under
  ``torch.compile`` (skipped when the deadline is near). In that order: what matters most
  runs first.
- ``budget``: env, data, ours and DAC's recipe each trained for ``--minutes`` of wall clock
  (shrunk to fit the deadline, and recorded) on the carried Telugu shards, same validation.

Each stage runs in its own process group with a time box: the smaller of its cap and what
the deadline leaves. A stage that overruns is killed (the whole group) and recorded as
``{"status": "timeout"}``; one that raises is ``{"status": "error"}``; one whose box would
be under its minimum is ``{"status": "skipped"}``. After every stage ``--out`` holds
``<date>-<kit>-<gpu>.json`` (the envelope: kit, device, date, torch, records, stages) and
``gpu_check.log`` (every stage's output); nothing else goes there (a call brings back at
most 8 files). ``--rehearse`` runs the same stages at debug-preset sizes on a CPU (CI).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file (python3 scripts/gpu_check.py) or as a module
    sys.path.insert(0, str(ROOT))

from scripts._gpu_stages import Plan, gpu_plan, rehearsal_plan, run_stage  # noqa: E402
from telucodec.errors import UserInputError, run_cli  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gpu"
LOG_NAME = "gpu_check.log"
RESERVE_S = 5.0  # kept back from every box: killing a group and writing the JSON


@dataclass(frozen=True)
class Stage:
    """A stage's cap and minimum box in seconds, on a GPU and in the CPU rehearsal."""

    name: str
    cap_s: float
    min_s: float
    rehearse_cap_s: float
    rehearse_min_s: float


# Caps: what the stage should need plus slack; the order is the priority order.
KITS: dict[str, tuple[Stage, ...]] = {
    "speed": (
        Stage("env", 60, 10, 60, 5),
        Stage("data", 120, 5, 120, 5),
        Stage("step-ours-bf16", 150, 40, 120, 10),
        Stage("step-ours-fp32", 120, 40, 120, 10),
        Stage("step-dac", 120, 40, 120, 10),
        Stage("step-encodec", 120, 40, 120, 10),
        Stage("train", 240, 100, 150, 20),
        Stage("zero2", 200, 90, 300, 30),
        Stage("infer", 90, 20, 90, 10),
        Stage("compile", 240, 150, 240, 30),
    ),
    "budget": (
        Stage("env", 60, 10, 60, 5),
        Stage("data", 120, 5, 120, 5),
        Stage("budget-ours", 600, 60, 300, 15),  # caps replaced by the budget's own boxes
        Stage("budget-dac", 600, 60, 300, 15),
    ),
}
NEEDS_DATA = {"step-ours-bf16", "step-ours-fp32", "train", "zero2", "compile", "budget-ours",
              "budget-dac"}  # fmt: skip
# seconds a budget system needs beyond its training minutes: start-up, chunk export,
# validations' share, the final validation
BUDGET_OVERHEAD_S = {False: 75.0, True: 40.0}
BUDGET_LEAST_S = {False: 30.0, True: 1.0}  # training seconds below which a budget is moot


# ----------------------------------------------------------------------------- pure parts


def stage_box(
    stage: Stage, rehearse: bool, left_s: float, cap_s: float | None = None, strict: bool = True
) -> tuple[float | None, str | None]:
    """``(box seconds, None)`` for a stage with ``left_s`` seconds of deadline left, or
    ``(None, why)`` when there is no time for it. ``cap_s`` replaces the stage's cap;
    ``strict=False`` (a cap the user gave) runs the stage even under its minimum."""
    if cap_s is None:
        cap_s = stage.rehearse_cap_s if rehearse else stage.cap_s
    least = stage.rehearse_min_s if rehearse else stage.min_s
    box = min(cap_s, left_s - RESERVE_S)
    if strict and box < least:
        return None, f"deadline near: {max(0.0, left_s):.0f} s left, the stage needs >= {least:g} s"
    if box <= 0:
        return None, f"deadline reached ({max(0.0, left_s):.0f} s left)"
    return box, None


def budget_minutes(asked: float, left_s: float, rehearse: bool) -> float:
    """Training minutes per system so both systems and their overheads fit ``left_s``."""
    fit = (left_s - 2 * (BUDGET_OVERHEAD_S[rehearse] + RESERVE_S)) / 2 / 60
    return max(0.0, min(asked, fit))


def default_kit(results: Path = RESULTS) -> str:
    """The first kit with no ``<date>-<kit>-<gpu>.json`` record in ``results`` (speed when
    every kit has one)."""
    for kit in KITS:
        if not list(results.glob(f"*-{kit}-*.json")):
            return kit
    return next(iter(KITS))


def slug(name: str) -> str:
    """A device name as a file-name part: ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def parse_seconds_map(items: list[str], flag: str, names: set[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not sep or name not in names or seconds < 0:
            raise UserInputError(
                f"{flag} {item!r}: want stage=seconds with stage in {sorted(names)}"
            )
        out[name] = seconds
    return out


# ----------------------------------------------------------------------------- running


class Recorder:
    """The kit's JSON in ``out``, rewritten (atomically) after every stage."""

    def __init__(self, out: Path, kit: str, plan: Plan, deadline: float, command: str):
        self.out, self.t0 = out, time.time()
        self.date = dt.datetime.now(dt.UTC)
        self.doc = {
            "kit": kit, "device": None, "date": self.date.strftime("%Y-%m-%d %H:%M UTC"),
            "torch": None, "rehearsal": plan.rehearse, "command": command,
            "deadline_s": deadline, "elapsed_s": 0.0, "complete": False,
            "records": [], "stages": {},
        }  # fmt: skip
        self.path: Path | None = None

    def stage(self, name: str, rec: dict) -> None:
        if "record" in rec:
            self.doc["records"].append(rec.pop("record"))
        self.doc["stages"][name] = rec
        if name == "env" and rec.get("status") == "ok":
            self.doc["device"], self.doc["torch"] = rec["device"], rec["torch"]
        self.write()

    def write(self, complete: bool = False) -> Path:
        self.doc["elapsed_s"] = round(time.time() - self.t0, 1)
        self.doc["complete"] = complete
        device = slug(self.doc["device"] or "unknown")
        path = self.out / f"{self.date:%Y-%m-%d}-{self.doc['kit']}-{device}.json"
        if self.path is not None and self.path != path:
            self.path.unlink(missing_ok=True)  # named before the env stage knew the device
        tmp = self.out / ".gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.doc, indent=1, default=str) + "\n")
        os.replace(tmp, path)
        self.path = path
        return path


class _Current:
    """The stage process now running, so a SIGTERM to the orchestrator can end its group."""

    proc: subprocess.Popen | None = None


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(name: str, plan_path: Path, box_s: float, work: Path, log) -> dict:
    """Run stage ``name`` in its own process group for at most ``box_s`` seconds; its
    record with ``status`` and ``seconds``."""
    result = work / f"stage-{name}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_stage", name,
           "--_plan", str(plan_path), "--_box", f"{box_s:.1f}", "--_result", str(result)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )}  # fmt: skip
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    _Current.proc = proc
    try:
        rc = proc.wait(timeout=box_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return {
            "status": "timeout",
            "box_s": round(box_s, 1),
            "seconds": round(time.time() - t0, 1),
        }
    finally:
        _Current.proc = None
    seconds = round(time.time() - t0, 1)
    if rc != 0 or not result.is_file():
        return {"status": "error", "returncode": rc, "seconds": seconds, "box_s": round(box_s, 1),
                "error": _last_error(log.name)}  # fmt: skip
    rec = json.loads(result.read_text())
    status = "skipped" if "skipped" in rec else "ok"
    return {"status": status, "seconds": seconds, "box_s": round(box_s, 1), **rec}


def _last_error(log_path: str) -> str:
    """The last few non-blank lines of the log (the stage's traceback ends there)."""
    lines = [ln for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-4:])[-1500:]


def run_kit(args: argparse.Namespace) -> Path:
    """Run ``args.kit``'s stages under ``args.deadline``; the path of the kit's JSON."""
    t_end = time.time() + args.deadline
    out, work = args.out, args.workdir
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)  # check_args: empty, absent or one of ours
    work.mkdir(parents=True)
    make = rehearsal_plan if args.rehearse else gpu_plan
    plan = make(args.ref_python, args.data, str(work), args.minutes)
    plan.sleep = args.sleep
    stages = [s for s in KITS[args.kit] if not args.stages or s.name in args.stages]
    rec = Recorder(out, args.kit, plan, args.deadline, args.command)
    rec.write()
    plan_path = work / "plan.json"

    def on_term(signum, frame):  # the caller's own limit: save what there is, end the stage
        if _Current.proc is not None:
            _kill_group(_Current.proc)
        for name, st in rec.doc["stages"].items():
            if st["status"] == "running":
                rec.doc["stages"][name] = {**st, "status": "killed", "reason": f"signal {signum}"}
        rec.doc["stopped_by_signal"] = signum
        rec.write()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    with open(out / LOG_NAME, "a", buffering=1) as log:
        for stage in stages:
            left = t_end - time.time()
            if stage.name == "budget-ours":
                plan.budget_minutes = budget_minutes(args.minutes, left, args.rehearse)
                plan.budget_val_every_minutes = min(
                    plan.budget_val_every_minutes, plan.budget_minutes / 2
                )
                rec.doc["budget_minutes"] = plan.budget_minutes
            cap, strict = args.stage_timeout.get(stage.name), False
            if cap is None:
                strict = True
                if stage.name.startswith("budget-"):  # the budget's own box, not the cap
                    cap = plan.budget_minutes * 60 + BUDGET_OVERHEAD_S[args.rehearse]
            box, why = stage_box(stage, args.rehearse, left, cap, strict)
            if (
                stage.name.startswith("budget-")
                and plan.budget_minutes * 60 < BUDGET_LEAST_S[args.rehearse]
            ):
                box, why = None, f"deadline near: {plan.budget_minutes * 60:.0f} s of training fit"
            print(f"\n===== gpu_check {args.kit}: {stage.name} ({why or f'box {box:.0f} s'}, "
                  f"{left:.0f} s left) =====", file=log, flush=True)  # fmt: skip
            if box is None:
                rec.stage(stage.name, {"status": "skipped", "reason": why})
                continue
            plan.save(plan_path)
            # a command stopped from outside still shows which stage it was in
            rec.stage(stage.name, {"status": "running", "box_s": round(box, 1)})
            r = run_one(stage.name, plan_path, box, work, log)
            if stage.name == "data" and r["status"] == "ok":
                plan.shards = r["shards"]
            rec.stage(stage.name, r)
            print(
                f"===== {stage.name}: {r['status']} in {r['seconds']} s =====", file=log, flush=True
            )
    return rec.write(complete=True)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--kit", choices=sorted(KITS), default=None, help="default: first missing")
    p.add_argument("--out", type=Path, required=False, help="records + log (at most 8 files)")
    p.add_argument("--deadline", type=float, default=540.0, help="wall seconds for the kit")
    p.add_argument("--rehearse", action="store_true", help="debug-preset sizes on the CPU")
    p.add_argument("--ref-python", default=None,
                   help="DAC/EnCodec interpreter (default .venv-ref/bin/python; python3 on the GPU)")  # fmt: skip
    p.add_argument("--data", default=None,
                   help="shard folder (default .gpu-data/telugu-emotion; rehearsal: generated)")  # fmt: skip
    p.add_argument("--minutes", type=float, default=4.0, help="budget kit: minutes per system")
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "gpu-check",
                   help="checkpoints, exports, generated data (wiped first; not brought back)")  # fmt: skip
    p.add_argument("--stages", default=None, help="comma list: run only these stages")
    p.add_argument("--print-command", action="store_true",
                   help="check the carried size and print the GPU window's run call (make gpu-check)")  # fmt: skip
    p.add_argument("--stage-timeout", action="append", default=[], metavar="STAGE=S",
                   help="replace a stage's cap (its minimum no longer applies)")  # fmt: skip
    # test aid: the stage sleeps this long first (proves an overrunning stage is cut)
    p.add_argument("--_sleep", action="append", default=[], help=argparse.SUPPRESS)
    # the orchestrator's call into a stage process
    p.add_argument("--_stage", help=argparse.SUPPRESS)
    p.add_argument("--_plan", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_box", type=float, help=argparse.SUPPRESS)
    p.add_argument("--_result", type=Path, help=argparse.SUPPRESS)
    return p


def _child(args: argparse.Namespace) -> int:
    """One stage in this process: its dict to ``--_result`` (JSON)."""
    rec = run_stage(args._stage, Plan.load(args._plan), args._box)
    args._result.write_text(json.dumps(rec, default=str))
    return 0


def check_args(args: argparse.Namespace, argv: list[str]) -> None:
    """Resolve defaults and refuse bad values, naming the flag."""
    if args.out is None:
        raise UserInputError("--out: required (the folder the records and the log go to)")
    if args.deadline <= 0 or args.minutes <= 0:
        raise UserInputError(
            f"--deadline and --minutes must be > 0 (got {args.deadline}, {args.minutes})"
        )
    args.kit = args.kit or default_kit()
    names = {s.name for s in KITS[args.kit]}
    args.stages = [s for s in (args.stages or "").split(",") if s]
    if set(args.stages) - names:
        raise UserInputError(
            f"--stages: {sorted(set(args.stages) - names)} not in kit {args.kit} ({sorted(names)})"
        )
    if args.stages:  # env names the record (device, torch); the others read data's shards
        args.stages += ["env"] + (["data"] if set(args.stages) & NEEDS_DATA else [])
    args.stage_timeout = parse_seconds_map(args.stage_timeout, "--stage-timeout", names)
    args.sleep = parse_seconds_map(args._sleep, "--_sleep", names)
    if args.ref_python is None:
        args.ref_python = str(ROOT / ".venv-ref" / "bin" / "python")
    if args.data is None and not args.rehearse:
        args.data = str(ROOT / ".gpu-data" / "telugu-emotion")
    w = args.workdir
    if w.exists() and (not w.is_dir() or (any(w.iterdir()) and not (w / "plan.json").is_file())):
        # the kit wipes its workdir first: only ever one it made (plan.json marks it)
        raise UserInputError(f"--workdir {w}: exists and is not a gpu_check workdir")
    if args.data is not None and not Path(args.data).is_dir():
        raise UserInputError(f"--data {args.data}: not a folder (make gpu-data prepares it)")
    args.command = "python3 scripts/gpu_check.py " + shlex.join(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args._stage:
        return _child(args)

    def body() -> int:
        if args.print_command:
            from scripts import _gpu_carry

            sizes = _gpu_carry.carried()
            print(_gpu_carry.command_text(sizes, args.kit or default_kit()))
            if sum(sizes.values()) > _gpu_carry.LIMIT_BYTES:
                raise UserInputError("the carried files exceed the 64 MiB a call takes")
            return 0
        check_args(args, argv)
        path = run_kit(args)
        doc = json.loads(path.read_text())
        for name, r in doc["stages"].items():
            print(f"{name:15s} {r['status']:8s} {r.get('seconds', '')}")
        print(f"gpu_check: {args.kit} records in {path}")
        return 0

    return run_cli("gpu_check", body)


if __name__ == "__main__":
    sys.exit(main())
