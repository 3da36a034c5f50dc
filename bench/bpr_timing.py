"""Where a fresh `python -m recsys fit` of BPR on ml-100k spends its time (the row beside RecBole's 25 s).

`python -m bench.bpr_timing [--data ../shared/data/ml-100k/ml-100k.inter] [--runs 2] [--quick]`

Runs `configs/recsys/bpr_movielens.yaml` (the default compiled engine) as a new user would, each run in a
fresh interpreter, and splits its wall and CPU time into: interpreter start, imports (torch, Lightning,
the project), configuration and data loading, the compiled kernels' first call (numba compiles them, or
loads them from its cache after the first run), training, the evaluations (every validation and the
test), and the rest (configuration, data loading, Lightning's loop, checkpoints, metrics files). Writes
bench/results/bpr_ml100k_timing.json (`--quick`: 2 epochs, one run, nothing written).
The phases are timed by wrapping the methods that run them, in the child process only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "ml-100k" / "ml-100k.inter"


class Clock:
    """Wall and CPU seconds per phase; `wrap` adds a method's time to a phase."""

    def __init__(self):
        self.totals: dict[str, list[float]] = {}
        self.first: dict[str, list[float]] = {}

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(self, phase: str, since: tuple[float, float]) -> None:
        wall, cpu = self.now()
        total = self.totals.setdefault(phase, [0.0, 0.0])
        total[0] += wall - since[0]
        total[1] += cpu - since[1]
        self.first.setdefault(phase, [wall - since[0], cpu - since[1]])

    def wrap(self, owner, name: str, phase: str) -> None:
        method = getattr(owner, name)

        def timed(*args, **kwargs):
            since = self.now()
            try:
                return method(*args, **kwargs)
            finally:
                self.add(phase, since)

        setattr(owner, name, timed)


def child(argv: list[str], started_wall: float) -> dict:
    clock = Clock()
    begin = clock.now()
    import torch  # noqa: F401

    clock.add("import torch", begin)
    since = clock.now()
    import pytorch_lightning  # noqa: F401

    clock.add("import lightning", since)
    since = clock.now()
    import recsys.cli
    import recsys.models.base as base
    import recsys.models.compiled_sgd  # noqa: F401  (numba)
    import recsys.models.implicit as implicit
    import recsys.training.train  # noqa: F401

    clock.add("import recsys (numba, the CLI)", since)
    clock.wrap(implicit.ImplicitRecommender, "_compiled_step", "training epochs")
    clock.wrap(base.RecommenderModule, "_evaluate_and_log", "evaluation (full ranking)")
    run = clock.now()
    code = recsys.cli.main(argv)
    clock.add("whole command", run)
    phases = {k: {"wall_s": round(v[0], 2), "cpu_s": round(v[1], 2)} for k, v in clock.totals.items()}
    first = clock.first.get("training epochs")
    epochs = clock.totals.get("training epochs")
    return {"exit": code, "phases": phases, "first_epoch": {"wall_s": round(first[0], 2), "cpu_s": round(first[1], 2)}
            if first else None, "epochs_total": epochs, "interpreter_start_s": round(begin[0] - started_wall, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bpr_timing", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=2, help="fresh processes, one after another")
    parser.add_argument("--quick", action="store_true", help="2 epochs, one run, print only")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        started = float(os.environ["BPR_TIMING_START"])
        print("BPR_TIMING " + json.dumps(child(args.child, started)), flush=True)
        from recsys.cli import exit_after

        exit_after(0)  # ends as `python -m recsys` does, so the process wall below includes the same exit
    if not args.data.is_file():
        raise SystemExit(f"skipped: {args.data} is absent (see the shared data README)")
    results = []
    for index in range(1 if args.quick else args.runs):
        out = Path.cwd() / "artifacts" / "bpr_timing" / f"run{index}"
        command = ["fit", "-c", "configs/recsys/bpr_movielens.yaml", "--data.path", str(args.data.resolve()),
                   "--data.format", "recbole", "--trainer.enable_progress_bar", "false"]
        if args.quick:
            command += ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1"]
        fit = [*command, "--trainer.default_root_dir", str(out)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BPR_TIMING_START": repr(time.perf_counter())}
        started, cpu = time.perf_counter(), os.times()
        done = subprocess.run([sys.executable, "-m", "bench.bpr_timing", "--child", *fit], env=env,
                              capture_output=True, text=True)
        wall, after = time.perf_counter() - started, os.times()
        line = [x for x in done.stdout.splitlines() if x.startswith("BPR_TIMING ")]
        if done.returncode or not line:
            raise SystemExit(f"run {index} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        result = json.loads(line[-1][len("BPR_TIMING "):])
        result["process_wall_s"] = round(wall, 2)
        result["process_cpu_s"] = round(after.children_user + after.children_system - cpu.children_user
                                        - cpu.children_system, 2)
        metrics = json.loads((out / "metrics.json").read_text())
        phases = result["phases"]
        named = sum(v["cpu_s"] for k, v in phases.items() if k not in ("whole command",))
        result["rest_cpu_s"] = round(result["process_cpu_s"] - named, 2)  # start, CLI, data, Lightning's loop
        result["test"] = {k: round(metrics[f"test/{k}"], 4) for k in ("recall@10", "ndcg@10")}
        result["exit_wall_s"] = round(wall - result["interpreter_start_s"] - sum(
            v["wall_s"] for k, v in phases.items() if k.startswith("import") or k == "whole command"), 2)
        # the user's own command, with nothing wrapped, for the wall beside RecBole's
        started = time.perf_counter()
        plain = subprocess.run([sys.executable, "-m", "recsys", *command, "--trainer.default_root_dir", f"{out}-plain"],
                               capture_output=True, text=True)
        if plain.returncode:
            raise SystemExit(f"plain run {index} failed ({plain.returncode}):\n{plain.stderr[-2000:]}")
        result["plain_command_wall_s"] = round(time.perf_counter() - started, 2)
        result["load_average_1min"] = round(os.getloadavg()[0], 2)
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.quick:
        return
    from bench.common import write_result

    write_result("bpr_ml100k_timing", {"command": "python -m recsys fit -c configs/recsys/bpr_movielens.yaml "
                                                  "--data.path ../shared/data/ml-100k/ml-100k.inter --data.format recbole",
                                       "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
                                       "runs": results})


if __name__ == "__main__":
    main(sys.argv[1:])
