"""How training and evaluation cost grow with the number of interactions, on 1 and 2 processes.

Data: the preference world at MovieLens-1M shape with the user count scaled
(`WorldConfig.movielens_1m_shape(n_users=round(6040 * size / 1,000,209), seed=0)`): 165.6 observed
interactions per user, the catalog fixed at 3,706 items, so the interaction count grows with the
users. Each world is generated once in a child process and written (observed interactions,
catalog, profiles) as a native parquet directory under artifacts/bench/scaling/.

Ours: `python -m recsys fit -c configs/recsys/{bpr,nbpo}.yaml --data.path <world>` exactly as a user
runs it, with `trainer.max_epochs` = --epochs, validation once at the end, and
`bench.scaling_clock.PhaseClock` added to the callbacks to time every training epoch and every
full-ranking evaluation (validation, then the CLI's own validate + test of the best checkpoint).
1 process uses both cores for the compiled kernel (`num_threads` 2); 2 processes
(`--trainer.strategy ddp --trainer.devices 2`, gloo) use one thread each, so both rows spend the
same two cores. Time per epoch is the median of epochs 2.. (epoch 1 includes numba compilation);
a full epoch covers every training positive (80% of the interactions), so no step limit is needed.

Memory: every run is a fresh process tree; a poller sums the RSS of the process and its children
(psutil, every 0.1 s) and keeps the peak. Under DDP the two ranks' shared pages count twice.

Peer, same data, same split, same threads, same child-process setup: `implicit`'s CPU BPR
(0.7.3, 64 factors) for time per epoch, and its `recommend(N=50, filter_already_liked_items)`
over the validation users for the full-ranking evaluation time. Ratios are ours / peer at each size.

    python -m bench scaling                                     # every size (heavy: the 10M world)
    python -m bench.bench_scaling --sizes 100000 1000000        # a subset
    python -m bench.bench_scaling --sizes 100000 --models bpr --procs 1 --no-peer   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "artifacts" / "bench" / "scaling"
SIZES = (100_000, 1_000_000, 10_000_000)
ML1M_USERS, ML1M_INTERACTIONS = 6040, 1_000_209
MODELS = ("bpr", "nbpo")
MEMORY_TARGET_MB = 6 * 1024
DIM = 64
log = logging.getLogger(__name__)


# --- the worlds ------------------------------------------------------------------------------
def world_users(size: int) -> int:
    return max(1, round(ML1M_USERS * size / ML1M_INTERACTIONS))


GENERATE = r"""
import json, resource, sys, time
from recsys.data.native import write_native
from recsys.data.world import WorldConfig, generate_world
from recsys.data.world.preference_world import GENERATOR, GENERATOR_VERSION
out, n_users = sys.argv[1], int(sys.argv[2])
config = WorldConfig.movielens_1m_shape(n_users=n_users, seed=0)
start, cpu = time.perf_counter(), time.process_time()
world = generate_world(config, progress=True)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
write_native(out, world.observed, metadata={"generator": GENERATOR, "generator_version": GENERATOR_VERSION,
                                            "world_config": config.to_dict()})
print(json.dumps({"interactions": len(world.observed), "users": world.n_users, "items": world.n_items,
                  "generate_seconds": seconds, "generate_cpu_seconds": cpu_seconds, "generate_peak_rss_mb": peak}))
"""


def ensure_world(size: int, timeout: float) -> tuple[Path, dict]:
    """The native directory of the world for `size` (generated once, then reused) and its generation record."""
    directory = WORK / f"world-{size}"
    record_path = directory / "generation.json"
    if record_path.is_file():
        return directory, json.loads(record_path.read_text())
    print(f"[{size:,}] generating the world ({world_users(size):,} users)", flush=True)
    run = run_measured([sys.executable, "-c", GENERATE, str(directory), str(world_users(size))], timeout=timeout,
                       env=_thread_env(os.cpu_count() or 1))
    record = {**json.loads(run["stdout"].strip().splitlines()[-1]), "generate_rss_tree_peak_mb": run["rss_peak_mb"]}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return directory, record


# --- running a child and watching its memory -------------------------------------------------
def run_measured(command: list[str], timeout: float, env: dict[str, str], log_path: Path | None = None) -> dict:
    """Run `command` as a new process group; peak summed RSS of it and its children; kill it after `timeout` s."""
    import psutil

    out = open(log_path, "w") if log_path else subprocess.PIPE  # noqa: SIM115 - closed below
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT if log_path else None,
                               text=True, start_new_session=True)
    peak, done = [0.0], threading.Event()

    def poll() -> None:
        try:
            root = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                total = root.memory_info().rss
                for child in root.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            peak[0] = max(peak[0], total / 2**20)
            done.wait(0.1)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # our own child's group: the DDP rank it spawned goes too
        process.communicate()
        raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(command[:4])} ...") from None
    finally:
        done.set()
        watcher.join()
        if log_path:
            out.close()
    if process.returncode != 0:
        tail = log_path.read_text()[-3000:] if log_path else ""
        raise RuntimeError(f"exit {process.returncode}: {' '.join(command[:6])} ...\n{tail}")
    return {"stdout": stdout or "", "seconds": time.perf_counter() - started, "rss_peak_mb": peak[0]}


def _thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONPATH"] = str(ROOT)
    return env


# --- ours: the fit CLI ---------------------------------------------------------------------------
def fit_config(model: str, world: Path, run_dir: Path, procs: int, threads: int, epochs: int) -> dict:
    """configs/recsys/<model>.yaml pointed at the world, timed by PhaseClock, on `procs` processes."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "recsys" / f"{model}.yaml").read_text())
    trainer = config["trainer"]
    trainer.update(default_root_dir=str(run_dir), max_epochs=epochs, check_val_every_n_epoch=epochs,
                   enable_progress_bar=False, num_sanity_val_steps=0, devices=procs)
    if procs > 1:
        trainer["strategy"] = "ddp"
    trainer["callbacks"] = [*trainer.get("callbacks", []),
                            {"class_path": "bench.scaling_clock.PhaseClock",
                             "init_args": {"path": str(run_dir / "clock.json")}}]
    config["model"]["init_args"].update(num_threads=threads, embedding_dim=DIM)
    data = config["data"]
    for key in ("world_preset", "false_positive_rate"):
        data.pop(key, None)
    data["path"] = str(world)
    return config


def run_ours(model: str, size: int, world: Path, procs: int, epochs: int, timeout: float) -> dict:
    import yaml

    cores = os.cpu_count() or 1
    threads = max(1, cores // procs)
    run_dir = WORK / f"run-{size}-{model}-{procs}p"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "clock.json").unlink(missing_ok=True)
    config_path = run_dir / "bench_config.yaml"
    config_path.write_text(yaml.safe_dump(fit_config(model, world, run_dir, procs, threads, epochs), sort_keys=False))
    load = os.getloadavg()[0]
    run = run_measured([sys.executable, "-m", "recsys", "fit", "-c", str(config_path)], timeout=timeout,
                       env=_thread_env(threads), log_path=run_dir / "output.log")
    clock = json.loads((run_dir / "clock.json").read_text())
    epochs_s = clock["train_epoch_s"]
    steady = epochs_s[1:] or epochs_s
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    return {"model": model, "size": size, "procs": procs, "threads_per_process": threads,
            "epochs": len(epochs_s), "train_epoch_s": epochs_s, "epoch_s": float(np.median(steady)),
            "first_epoch_s": epochs_s[0], "validation_s": clock["validation_s"], "test_s": clock["test_s"],
            "eval_s": float(np.median(clock["validation_s"] + clock["test_s"])),
            "setup_s": clock.get("setup_s"), "wall_s": run["seconds"], "rss_tree_peak_mb": run["rss_peak_mb"],
            "rank0_peak_rss_mb": clock["peak_rss_mb"], "load_before": load, "load_after": os.getloadavg()[0],
            "test_recall@20": metrics.get("test/recall@20"), "command": f"python -m recsys fit -c {config_path.relative_to(ROOT)}"}


# --- the peer: implicit ----------------------------------------------------------------------------
PEER = r"""
import json, resource, sys, time
import numpy as np
from implicit.cpu.bpr import BayesianPersonalizedRanking
from recsys.data.native import read_native
from recsys.data.splits import make_split
world, epochs, threads, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
split = make_split(read_native(world), "random", ratios=(0.8, 0.1, 0.1), seed=0)  # the DataModule's split
matrix = split.train.matrix()
setup = time.perf_counter() - start
model = BayesianPersonalizedRanking(factors=dim, learning_rate=0.05, regularization=0.03, iterations=1,
                                    num_threads=threads, random_state=0)
epoch_s = []
for _ in range(epochs):
    start = time.perf_counter()
    model.fit(matrix, show_progress=False)  # one more iteration from the current factors
    epoch_s.append(time.perf_counter() - start)
users = np.unique(split.valid.user)
start = time.perf_counter()
model.recommend(users, matrix[users], N=50, filter_already_liked_items=True)
recommend_s = time.perf_counter() - start
print(json.dumps({"setup_s": setup, "train_epoch_s": epoch_s, "recommend_s": recommend_s, "eval_users": len(users),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_peer(size: int, world: Path, epochs: int, timeout: float) -> dict:
    threads = os.cpu_count() or 1
    load = os.getloadavg()[0]
    run = run_measured([sys.executable, "-c", PEER, str(world), str(epochs), str(threads), str(DIM)],
                       timeout=timeout, env=_thread_env(threads))
    peer = json.loads(run["stdout"].strip().splitlines()[-1])
    steady = peer["train_epoch_s"][1:] or peer["train_epoch_s"]
    return {**peer, "size": size, "threads": threads, "epoch_s": float(np.median(steady)),
            "rss_tree_peak_mb": run["rss_peak_mb"], "load_before": load, "load_after": os.getloadavg()[0]}


# --- where the memory of one process goes -----------------------------------------------------
BREAKDOWN = r"""
import gc, json, resource, sys, psutil
process = psutil.Process()
steps = []
def mark(step, **extra):
    gc.collect()
    steps.append({"step": step, "rss_mb": process.memory_info().rss / 2**20,
                  "peak_so_far_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra})
mark("python")
import numpy as np, torch, pytorch_lightning, numba  # what the fit CLI imports before it reads data
import recsys.training.train
mark("imports (torch, lightning, numba, recsys.training.train)")
from recsys.data.native import read_native
data = read_native(sys.argv[1])
mark("read_native alone: InteractionData", array_mb=sum(a.nbytes for a in (data.user, data.item, data.timestamp,
                                                                             data.rating) if a is not None) / 2**20)
del data
mark("InteractionData dropped")
from recsys.data.datamodule import InteractionDataModule
dm = InteractionDataModule(path=sys.argv[1], seed=0)
mark("InteractionDataModule(path=...): read, split, train CSR, negative sampler")
from recsys.models.compiled_sgd import CompiledSGD
kernel = CompiledSGD(dm.train_users, dm.train_items, *dm.train_csr(), dm.n_items, objective="bpr", lr=0.05, reg=0.03)
U = torch.randn(dm.n_users, 64) * 0.1
V = torch.randn(dm.n_items, 64) * 0.1
kernel.epoch(U, V, seed=0)
mark("CompiledSGD: state + one epoch (numba compiled)")
from recsys.evaluation import evaluate
truth, exclude = dm.evaluation_inputs("test")
evaluate(lambda users: U[torch.as_tensor(users)] @ V.T, truth=truth, exclude=exclude, ks=(10, 20, 50))
mark("one full-ranking test evaluation")
meta = dm.checkpoint_metadata()
mark("checkpoint_metadata() (the checkpoint['prefengine'] block)",
     csr_elements=len(meta["train_items_by_user"]["indices"]) + len(meta["train_items_by_user"]["indptr"]))
print(json.dumps(steps))
"""


def memory_breakdown(size: int, timeout: float) -> list[dict]:
    """RSS after each step of the one-process data path (the steps the DataModule and the kernel take)."""
    world, _ = ensure_world(size, timeout)
    run = run_measured([sys.executable, "-c", BREAKDOWN, str(world)], timeout=timeout, env=_thread_env(1))
    return json.loads(run["stdout"].strip().splitlines()[-1])


# --- report -------------------------------------------------------------------------------------
def loglog_slope(sizes: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(size): 1 means cost grows linearly."""
    if len(sizes) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def summarize(runs: list[dict], peers: dict[int, dict]) -> dict:
    lines: dict[str, dict] = {}
    for key in sorted({(r["model"], r["procs"]) for r in runs}):
        rows = sorted((r for r in runs if (r["model"], r["procs"]) == key), key=lambda r: r["size"])
        sizes = [r["size"] for r in rows]
        lines[f"{key[0]}_{key[1]}p"] = {
            "sizes": sizes,
            "epoch_s": [r["epoch_s"] for r in rows],
            "eval_s": [r["eval_s"] for r in rows],
            "rss_tree_peak_mb": [r["rss_tree_peak_mb"] for r in rows],
            "epoch_slope": loglog_slope(sizes, [r["epoch_s"] for r in rows]),
            "eval_slope": loglog_slope(sizes, [r["eval_s"] for r in rows]),
            "memory_slope": loglog_slope(sizes, [r["rss_tree_peak_mb"] for r in rows]),
            "epoch_ratio_vs_implicit": [r["epoch_s"] / peers[r["size"]]["epoch_s"] if r["size"] in peers else None
                                        for r in rows],
            "eval_ratio_vs_implicit_recommend": [r["eval_s"] / peers[r["size"]]["recommend_s"]
                                                 if r["size"] in peers else None for r in rows],
        }
    speedup = {}
    for r in runs:
        if r["procs"] == 2:
            one = next((o for o in runs if (o["model"], o["size"], o["procs"]) == (r["model"], r["size"], 1)), None)
            if one is not None:
                speedup[f"{r['model']}@{r['size']}"] = {"epoch": one["epoch_s"] / r["epoch_s"],
                                                       "eval": one["eval_s"] / r["eval_s"]}
    if peers:
        sizes = sorted(peers)
        lines["implicit_bpr"] = {"sizes": sizes, "epoch_s": [peers[s]["epoch_s"] for s in sizes],
                                 "eval_s": [peers[s]["recommend_s"] for s in sizes],
                                 "rss_tree_peak_mb": [peers[s]["rss_tree_peak_mb"] for s in sizes],
                                 "epoch_slope": loglog_slope(sizes, [peers[s]["epoch_s"] for s in sizes]),
                                 "eval_slope": loglog_slope(sizes, [peers[s]["recommend_s"] for s in sizes])}
    return {"lines": lines, "speedup_2_processes": speedup}


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = (("epoch_s", "epoch_slope", "seconds per training epoch"),
              ("eval_s", "eval_slope", "seconds per full-ranking evaluation"),
              ("rss_tree_peak_mb", "memory_slope", "peak RSS of the process tree (MB)"))
    for axis, (key, slope_key, title) in zip(axes, panels):
        for name, line in summary["lines"].items():
            slope = line.get(slope_key)
            label = name + (f" (slope {slope:.2f})" if slope is not None else "")
            axis.plot(line["sizes"], line[key], marker="o", ls="--" if name == "implicit_bpr" else "-", label=label)
        axis.set(xscale="log", yscale="log", xlabel="interactions", title=title)
        axis.legend(fontsize=7)
    axes[2].axhline(MEMORY_TARGET_MB, color="red", lw=0.8, ls=":")
    speedup = summary["speedup_2_processes"]
    if speedup:
        text = "2-process epoch speedup: " + ", ".join(f"{k} {v['epoch']:.2f}x" for k, v in speedup.items())
        fig.text(0.01, 0.01, text, fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="interactions per world")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--procs", type=int, nargs="+", choices=(1, 2), default=[1, 2], help="processes per run")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per run (the first is a warm-up)")
    parser.add_argument("--no-peer", action="store_true", help="skip implicit's BPR")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds any one child may run")
    parser.add_argument("--name", default="scaling", help="results name: bench/results/<name>.json and .png")
    parser.add_argument("--memory-breakdown", action="store_true",
                        help="only measure RSS after each step of the data path at the largest size "
                             "(writes bench/results/<name>_memory.json)")
    return parser


def main(argv: list[str] | None = None) -> None:
    # `python -m bench scaling` calls main() with no arguments (sys.argv holds benchmark names): the defaults.
    args = _parser().parse_args(argv or [])
    if args.epochs < 2:
        raise SystemExit("--epochs must be >= 2 (the first epoch compiles the kernel)")
    WORK.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    if args.memory_breakdown:
        size = max(args.sizes)
        steps = memory_breakdown(size, args.timeout)
        for step in steps:
            print(f"after {step['step']}: RSS {step['rss_mb']:.0f} MB, peak so far {step['peak_so_far_mb']:.0f} MB",
                  flush=True)
        write_result(f"{args.name}_memory", {"size": size, "steps": steps, "load_average": os.getloadavg(),
                                             "command": "python -m bench.bench_scaling " + " ".join(argv or [])})
        return
    worlds, runs, peers, failures = {}, [], {}, {}
    for size in sorted(args.sizes):
        world, record = ensure_world(size, args.timeout)
        worlds[size] = record
        print(f"[{size:,}] world: {record['interactions']:,} interactions, {record['users']:,} users "
              f"(generated in {record['generate_seconds']:.0f} s, peak {record['generate_rss_tree_peak_mb']:.0f} MB)",
              flush=True)
        if not args.no_peer:
            peers[size] = run_peer(size, world, args.epochs, args.timeout)
            print(f"[{size:,}] implicit BPR: {peers[size]['epoch_s']:.2f} s/epoch, recommend "
                  f"{peers[size]['recommend_s']:.2f} s, peak {peers[size]['rss_tree_peak_mb']:.0f} MB", flush=True)
        for model in args.models:
            for procs in sorted(args.procs):
                try:
                    run = run_ours(model, size, world, procs, args.epochs, args.timeout)
                except RuntimeError as error:  # recorded, so one broken configuration does not hide the others
                    failures[f"{model}@{size}/{procs}p"] = str(error)[-1500:]
                    print(f"[{size:,}] {model} {procs}p FAILED: {str(error)[:300]}", flush=True)
                    continue
                runs.append(run)
                print(f"[{size:,}] {model} {procs}p: {run['epoch_s']:.2f} s/epoch, eval {run['eval_s']:.2f} s, "
                      f"peak {run['rss_tree_peak_mb']:.0f} MB (load {run['load_before']:.1f})", flush=True)
    summary = summarize(runs, peers)
    png = RESULTS / f"{args.name}.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(summary, png)
    largest = max(args.sizes)
    one_process = [r for r in runs if r["size"] == largest and r["procs"] == 1]
    result = {
        "data": "WorldConfig.movielens_1m_shape(n_users=round(6040 * size / 1000209), seed=0): 3,706 items, "
                "165.6 interactions per user; random 0.8/0.1/0.1 split (seed 0)",
        "setup": {"epochs": args.epochs, "epoch_s": "median of epochs 2..", "dim": DIM, "cores": os.cpu_count(),
                  "threads": "1 process: num_threads = cores; 2 processes (DDP, gloo): cores / 2 each",
                  "memory": "peak of the summed RSS of the process tree, polled every 0.1 s",
                  "peer": "implicit.cpu.bpr.BayesianPersonalizedRanking 0.7.3, factors 64, same threads"},
        "worlds": worlds, "runs": runs, "peers": peers, "failures": failures, **summary,
        "memory_target_mb": MEMORY_TARGET_MB,
        "largest_one_process_under_target": {r["model"]: r["rss_tree_peak_mb"] < MEMORY_TARGET_MB for r in one_process},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "plot": str(png.relative_to(ROOT)),
        "command": "python -m bench.bench_scaling " + " ".join(argv) if argv else "python -m bench scaling",
    }
    write_result(args.name, result)
    for name, line in summary["lines"].items():
        print(f"{name:14s} sizes {line['sizes']} epoch_s {[round(v, 2) for v in line['epoch_s']]} "
              f"slope {line['epoch_slope']} eval slope {line['eval_slope']}")
    if failures:
        print(f"FAILED runs: {sorted(failures)}")


if __name__ == "__main__":
    main(sys.argv[1:])
