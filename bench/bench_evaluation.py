"""Full-ranking evaluation speed and memory against a per-user numpy reference.

Two shapes, each in a fresh process so its peak memory is its own:

- movielens_1m: 6,040 users x 3,706 items, 64-d embeddings, 800k train / 200k test pairs;
- large: 100,000 users x 50,000 items, 64-d, 2M train / 500k test pairs.

Ours: `recsys.evaluation.evaluate` end to end (scores = U @ V.T in user batches, mask train
items, top-20, all metrics). Reference: the straightforward loop many libraries use — per user,
scores with numpy, train items set to -inf, `np.argsort` (stable, so ties also go to the lower
item id), then Python loops for the metrics. On the large shape the reference runs on a sample
of users and its time is scaled to all users (marked as such). The two must agree to 1e-9 on
every per-user value.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import peak_rss_mb, timer, write_result

SHAPES = {
    "movielens_1m": {"n_users": 6040, "n_items": 3706, "n_train": 800_000, "n_test": 200_000,
                     "repeats": 3, "reference_users": None},
    "large": {"n_users": 100_000, "n_items": 50_000, "n_train": 2_000_000, "n_test": 500_000,
              "repeats": 1, "reference_users": 1000},
}
DIM, KS, SEED = 64, (10, 20), 0
COMPARED = ("recall", "precision", "ndcg", "mrr", "hit_rate", "map")


def _interactions(n_users: int, n_items: int, n_train: int, n_test: int, rng: np.random.Generator):
    """Disjoint random train and test pairs (no test item is a train item of the same user)."""
    from recsys.data.interactions import IdVocab, InteractionData

    keys = np.unique(rng.integers(0, n_users * n_items, size=int((n_train + n_test) * 1.01)))
    keys = rng.permutation(keys)[: n_train + n_test]
    vocab = IdVocab.range(n_users, n_items)

    def data(part):
        return InteractionData(user=part // n_items, item=part % n_items, timestamp=np.zeros(len(part)), vocab=vocab)

    return data(keys[:n_train]), data(keys[n_train:])


def reference_per_user(U: np.ndarray, V: np.ndarray, train, test, users: np.ndarray, k_max: int):
    """Per-user numpy + Python loops: the straightforward implementation."""
    train_m, test_m = train.matrix().tocsr(), test.matrix().tocsr()
    out = {f"{m}@{k}": [] for m in COMPARED for k in KS}
    for u in users:
        scores = V @ U[u]
        scores[train_m.indices[train_m.indptr[u]:train_m.indptr[u + 1]]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k_max]
        relevant = set(test_m.indices[test_m.indptr[u]:test_m.indptr[u + 1]].tolist())
        for k in KS:
            hits = [item in relevant for item in top[:k].tolist()]
            n_hits = sum(hits)
            dcg = sum(1 / math.log2(j + 2) for j, h in enumerate(hits) if h)
            idcg = sum(1 / math.log2(j + 2) for j in range(min(len(relevant), k)))
            first = next((j for j, h in enumerate(hits) if h), None)
            seen, ap = 0, 0.0
            for j, h in enumerate(hits):
                if h:
                    seen += 1
                    ap += seen / (j + 1)
            out[f"recall@{k}"].append(n_hits / len(relevant))
            out[f"precision@{k}"].append(n_hits / k)
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"mrr@{k}"].append(0.0 if first is None else 1 / (first + 1))
            out[f"hit_rate@{k}"].append(float(n_hits > 0))
            out[f"map@{k}"].append(ap / min(len(relevant), k))
    return {key: np.array(v) for key, v in out.items()}


def measure(shape: str) -> dict:
    """Run one shape in this process and return its numbers."""
    import torch

    from recsys.evaluation import evaluate
    from recsys.evaluation.ranking import batch_size_for

    spec = SHAPES[shape]
    rng = np.random.default_rng(SEED)
    generator = torch.Generator().manual_seed(SEED)
    U = torch.randn(spec["n_users"], DIM, generator=generator) / DIM ** 0.5
    V = torch.randn(spec["n_items"], DIM, generator=generator) / DIM ** 0.5
    train, test = _interactions(spec["n_users"], spec["n_items"], spec["n_train"], spec["n_test"], rng)
    rss_inputs = peak_rss_mb()

    def scorer(users: np.ndarray) -> torch.Tensor:
        return U[torch.from_numpy(users)] @ V.T

    seconds, cpu_seconds = [], []
    for _ in range(spec["repeats"]):
        cpu_start = time.process_time()
        with timer() as elapsed:
            result = evaluate(scorer, {"test": test}, exclude=[train], ks=KS)
        seconds.append(elapsed())
        cpu_seconds.append(time.process_time() - cpu_start)
    rss_peak = peak_rss_mb()

    users = result.users["test"]
    sample = users if spec["reference_users"] is None else np.sort(
        np.random.default_rng(SEED + 1).choice(users, spec["reference_users"], replace=False))
    cpu_start = time.process_time()
    with timer() as elapsed:
        reference = reference_per_user(U.numpy(), V.numpy(), train, test, sample, max(KS))
    reference_seconds = elapsed() * len(users) / len(sample)
    reference_cpu_seconds = (time.process_time() - cpu_start) * len(users) / len(sample)
    rows = np.searchsorted(users, sample)
    disagreement = max(float(np.abs(result.per_user[f"test/{key}"][rows] - values).max())
                       for key, values in reference.items())
    ours = float(np.median(seconds))
    return {
        "shape": {k: spec[k] for k in ("n_users", "n_items", "n_train", "n_test")} | {"dim": DIM, "ks": list(KS)},
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch_size_for(spec["n_items"]),
        "users_evaluated": int(len(users)),
        "ours_seconds": ours, "ours_seconds_all_runs": seconds,
        # CPU time over all threads: less sensitive than wall time to other load on a shared machine.
        "ours_cpu_seconds": float(np.median(cpu_seconds)),
        "load_average_1min": os.getloadavg()[0],
        "reference": "per-user numpy argsort + Python metric loops",
        "reference_seconds": reference_seconds,
        "reference_users_timed": int(len(sample)),
        "reference_seconds_extrapolated": len(sample) < len(users),
        "reference_cpu_seconds": reference_cpu_seconds,
        "speedup": reference_seconds / ours,
        "speedup_cpu": reference_cpu_seconds / float(np.median(cpu_seconds)),
        "max_abs_difference_vs_reference": disagreement,
        "agrees_with_reference": disagreement < 1e-9,
        "peak_rss_mb": rss_peak, "rss_after_inputs_mb": rss_inputs,
        "ndcg@20": result.metrics["test/ndcg@20"],
    }


def _measure_in_fresh_process(shape: str) -> dict:
    root = Path(__file__).resolve().parent.parent
    code = f"import json; from bench.bench_evaluation import measure; print(json.dumps(measure({shape!r})))"
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench shape {shape} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    started = time.time()
    results = {}
    for shape in SHAPES:
        results[shape] = _measure_in_fresh_process(shape)
        r = results[shape]
        print(f"{shape}: ours {r['ours_seconds']:.3f} s ({r['ours_cpu_seconds']:.2f} s CPU), reference {r['reference_seconds']:.1f} s"
              f"{' (extrapolated)' if r['reference_seconds_extrapolated'] else ''}, speedup {r['speedup']:.0f}x, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB, agrees: {r['agrees_with_reference']}", flush=True)
    write_result("evaluation", {"command": "python -m bench evaluation", "cpus_visible": os.cpu_count(),
                                "wall_seconds": time.time() - started, "shapes": results})


if __name__ == "__main__":
    main()
