"""Run to run on the preference world: the default BPR command, three times at the default thread count
and once on one thread, and whether every metric is identical; then the same command with `--seeds 0,1,2`
(mean ± sd over seeds, and whether seed 0 is the default run); last, twice with the opt-in Hogwild
schedule (`--model.init_args.hogwild true`), whose racing threads need not give the same numbers twice.

    python -m bench.run_to_run_world        # writes bench/results/run_to_run_world.json

Extra arguments go to every fit (the documented-commands test shrinks the world with them). Each fit is
its own process, as a user runs it; CPU seconds are that process's user + sys.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMAND = ["-m", "recsys", "fit", "-c", "configs/recsys/bpr.yaml"]
RUNS = (("2 (default)", None), ("2 (default)", None), ("2 (default)", None), ("1 (NUMBA_NUM_THREADS=1)", "1"))
OUT = Path("bench/results/run_to_run_world.json")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fit(root: Path, numba_threads: str | None, extra: list[str], seeds: str | None = None) -> dict:
    env = dict(os.environ)
    if numba_threads is not None:
        env["NUMBA_NUM_THREADS"] = numba_threads
    load = os.getloadavg()[0]
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, *COMMAND, "--trainer.default_root_dir", str(root),
                           "--trainer.enable_progress_bar", "false", *extra, *(["--seeds", seeds] if seeds else [])],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the fit into {root} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu
    metrics = json.loads((root / "metrics.json").read_text())
    if seeds:
        return {"metrics": metrics, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
    selection = metrics.pop("selection")
    return {"metrics": metrics, "best_epoch": selection["best_epoch"], "stopped": selection["why"],
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load_average_before": round(load, 2)}


def table(result: dict) -> str:
    """docs/benchmarks.md's run-to-run table for the world, from the JSON."""
    lines = ["| run | threads | best epoch | test recall@10 | test ndcg@10 | hidden ndcg@10 | wall | CPU |",
             "|---|---|---|---|---|---|---|---|"]
    for run in result["runs"]:
        lines.append(f"| {run['run']} | {run['threads']} | {run['best_epoch']} | {run['test/recall@10']:.4f} "
                     f"| {run['test/ndcg@10']:.4f} | {run['hidden/ndcg@10']:.4f} | {run['wall_s']:.0f} s "
                     f"| {run['cpu_s']:.1f} s |")
    over = result["over_seeds"]
    lines.append(f"| seeds {', '.join(map(str, over['seeds']))} (`--seeds 0,1,2`), mean ± sd | 2 (default) "
                 f"| {', '.join(map(str, over['best_epoch']))} | "
                 + " | ".join(f"{over[k]['mean']:.4f} ± {over[k]['sd']:.4f}"
                              for k in ("test/recall@10", "test/ndcg@10", "hidden/ndcg@10"))
                 + f" | {over['wall_s']:.0f} s (3 fits) | {over['cpu_s']:.1f} s (3 fits) |")
    for i, run in enumerate(result["hogwild"]["runs"], start=1):
        lines.append(f"| Hogwild {i} (`--model.init_args.hogwild true`) | {result['hogwild']['threads']} "
                     f"| {run['best_epoch']} | {run['test/recall@10']:.4f} | {run['test/ndcg@10']:.4f} "
                     f"| {run['hidden/ndcg@10']:.4f} | {run['wall_s']:.0f} s | {run['cpu_s']:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    extra = list(argv)
    work = Path("artifacts/run_to_run_world")
    shutil.rmtree(work, ignore_errors=True)  # fresh roots: no checkpoint of an earlier run
    runs = []
    for i, (threads, numba_threads) in enumerate(RUNS, start=1):
        run = fit(work / f"run{i}", numba_threads, extra)
        runs.append({"run": i, "threads": threads, **run})
        print(f"run {i} ({threads}): best epoch {run['best_epoch']}, test/recall@10 "
              f"{run['metrics']['test/recall@10']:.4f}, test/ndcg@10 {run['metrics']['test/ndcg@10']:.4f}, "
              f"{run['wall_s']:.0f} s wall, {run['cpu_s']:.1f} s CPU", flush=True)
    identical = all(run["metrics"] == runs[0]["metrics"] and run["best_epoch"] == runs[0]["best_epoch"]
                    for run in runs)
    keys = ("test/recall@10", "test/ndcg@10", "hidden/ndcg@10", "clean/ndcg@10", "valid/ndcg@20")
    over = fit(work / "seeds", None, extra, seeds="0,1,2")
    seed0 = json.loads((work / "seeds" / "seed0" / "metrics.json").read_text())
    seed0.pop("selection")
    hogwild = [fit(work / f"hogwild{i}", None, [*extra, "--model.init_args.hogwild", "true"]) for i in (1, 2)]
    over_seeds = {"command_suffix": "--seeds 0,1,2", "seeds": over["metrics"]["seeds"],
                  "best_epoch": over["metrics"]["selection"]["best_epoch"],
                  "seed0_is_the_default_run": seed0 == runs[0]["metrics"],
                  "wall_s": over["wall_s"], "cpu_s": over["cpu_s"],
                  **{key: {"mean": over["metrics"][key], "sd": over["metrics"]["sd"][key],
                           "per_seed": over["metrics"]["per_seed"][key]} for key in keys if key in over["metrics"]}}
    result = {
        "benchmark": "run_to_run_world",
        "measured_at": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
        "command": "python " + " ".join(COMMAND) + (" " + " ".join(extra) if extra else ""),
        "machine": {"cpus": os.cpu_count()},
        "note": "shared 2-core machine with other work: wall seconds move with the load; cpu_s is user+sys of each fit",
        "identical": identical,
        "metrics_compared": len(runs[0]["metrics"]),
        "runs": [{key: value for key, value in run.items() if key != "metrics"}
                 | {key: run["metrics"][key] for key in keys if key in run["metrics"]} for run in runs],
        "over_seeds": over_seeds,
        "hogwild": {"command_suffix": "--model.init_args.hogwild true", "threads": "2 (default)",
                    "identical": hogwild[0]["metrics"] == hogwild[1]["metrics"],
                    "runs": [{key: value for key, value in run.items() if key != "metrics"}
                             | {key: run["metrics"][key] for key in keys if key in run["metrics"]}
                             for run in hogwild]},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"every one of {result['metrics_compared']} metrics identical in all {len(runs)} runs: {identical}; "
          f"wrote {OUT}")
    print("over seeds " + ", ".join(map(str, over_seeds["seeds"])) + ": " + ", ".join(
        f"{key} {over_seeds[key]['mean']:.4f} ± {over_seeds[key]['sd']:.4f}" for key in keys if key in over_seeds)
        + f"; best epochs {over_seeds['best_epoch']}; seed 0 is the default run: {over_seeds['seed0_is_the_default_run']}")
    print(f"Hogwild, twice: identical {result['hogwild']['identical']}")
    print(table(result))
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
