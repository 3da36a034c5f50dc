"""Training speed of the compiled SGD kernel against `implicit`'s CPU BPR: same matrix, same threads, one run.

Data: the preference world at MovieLens-1M shape (`WorldConfig.movielens_1m_shape(seed=0)`:
6,040 users x 3,706 items, 1,000,209 observed positives), split per user 0.8/0.1/0.1 at random
(`random_split`, seed 0); every method trains on the same train matrix.

Peer: `implicit.cpu.bpr.BayesianPersonalizedRanking` (0.7.3, Cython + OpenMP), factors=64 (it
adds a 65th column for an item bias), its own sampler (negatives in proportion to popularity,
positives rejected). Ours: `recsys.models.compiled_sgd.CompiledSGD` stepping the TorchRec tables of
`ImplicitRecommender` (the model `recsys fit` trains, with its initialization) for BPR and NBPO, 64-d, uniform
negatives, one per positive, on the kernel's default stratified schedule (bit-identical at any
thread count); the racy Hogwild schedule is timed beside it (speed only). L2 0.01 everywhere (the
same per-row gradient term in both).

Tuning, the same budget for each method: learning rate in LRS; recall@20 on the validation split
every CHECK_EVERY epochs up to MAX_EPOCHS; a run stops after PATIENCE checks without a new best.
The best (learning rate, epochs) state of each method is scored once on the test split (train
and validation items masked), with `recsys.evaluation.evaluate` (full ranking).

Speed: after tuning, ROUNDS interleaved rounds; in each, every method trains TIMED_EPOCHS epochs
back to back, at 1 thread and at THREADS threads (implicit `num_threads`, ours `num_threads`).
samples/s = (user, positive, negative) triples / wall seconds; implicit's count is its nnz draws
per iteration, skipped draws included (generous to it). The ratio is the median over rounds of
ours / implicit in the same round, so machine load that drifts between rounds cancels.
Reference: the autograd path (`ImplicitRecommender.loss` + Adam on batches of 4,096 triples with
negatives from `NegativeSampler`), timed on AUTOGRAD_BATCHES batches, Lightning's loop left out.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from bench.common import RESULTS, timer, write_result

DIM, REG, SEED = 64, 0.01, 0
LRS = (0.005, 0.01, 0.02)
CHECK_EVERY, MAX_EPOCHS, PATIENCE = 10, 60, 2
ROUNDS, TIMED_EPOCHS = 3, 3
AUTOGRAD_BATCHES, AUTOGRAD_BATCH_SIZE = 30, 4096
THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))


# --- the methods, behind one small interface -------------------------------------------------------
class _ImplicitBPR:
    label = "implicit BPR (peer)"

    def __init__(self, train, lr: float, threads: int):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        self.matrix = train.matrix()
        self.samples_per_epoch = self.matrix.nnz
        self.model = BayesianPersonalizedRanking(factors=DIM, learning_rate=lr, regularization=REG, iterations=1,
                                                 num_threads=threads, random_state=SEED)

    def set_threads(self, threads: int) -> None:
        self.model.num_threads = threads

    def train(self, epochs: int) -> None:
        self.model.iterations = epochs  # fit() continues from the current factors
        self.model.fit(self.matrix, show_progress=False)

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        return self.model.user_factors, self.model.item_factors


class _Compiled:
    def __init__(self, train, lr: float, threads: int, objective: str, popularity_negatives: bool = False,
                 schedule: str = "stratified"):
        import torch

        from recsys.models.compiled_sgd import CompiledSGD, positives_csr
        from recsys.models.implicit import ImplicitRecommender

        self.label = (f"ours {objective.upper()}" + (" (popularity negatives)" if popularity_negatives else "")
                      + (" (Hogwild, not reproducible)" if schedule == "hogwild" else ""))
        torch.manual_seed(SEED)
        module = ImplicitRecommender(train.n_users, train.n_items, objective=objective, embedding_dim=DIM,
                                     engine="compiled", lr=lr, l2=REG, flip_l2=REG)
        indptr, indices = positives_csr(train.user, train.item, train.n_users, train.n_items)
        weights = train.item_counts().astype(np.float64) if popularity_negatives else None  # implicit's sampler
        self.kernel = CompiledSGD(train.user, train.item, indptr, indices, train.n_items, objective=objective, lr=lr,
                                  reg=REG, flip_reg=REG, item_weights=weights, num_threads=threads, schedule=schedule)
        self.samples_per_epoch = self.kernel.samples_per_epoch
        self.tables = {"user_w": module.preference.user_weight, "item_w": module.preference.item_weight}
        if module.flip is not None:
            self.tables |= {"flip_user_w": module.flip.user_weight, "flip_item_w": module.flip.item_weight}
        self.epochs_done = 0

    def set_threads(self, threads: int) -> None:
        self.kernel.num_threads = threads

    def train(self, epochs: int) -> None:
        for _ in range(epochs):
            self.kernel.epoch(**self.tables, seed=SEED * 100_003 + self.epochs_done)
            self.epochs_done += 1

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        return self.tables["user_w"].detach().numpy(), self.tables["item_w"].detach().numpy()


METHODS = {
    "implicit_bpr": lambda train, lr, threads: _ImplicitBPR(train, lr, threads),
    "ours_bpr": lambda train, lr, threads: _Compiled(train, lr, threads, "bpr"),
    "ours_nbpo": lambda train, lr, threads: _Compiled(train, lr, threads, "nbpo"),
}


# --- tuning ------------------------------------------------------------------------------------------
def _recall20(split, factors, stage: str) -> float:
    from recsys.evaluation import evaluate

    U, V = (np.ascontiguousarray(f, dtype=np.float32) for f in factors)
    if stage == "valid":
        result = evaluate(lambda users: U[users] @ V.T, {"valid": split.valid}, exclude=[split.train], ks=(20,))
    else:
        result = evaluate(lambda users: U[users] @ V.T, {"test": split.test}, exclude=[split.train, split.valid],
                          ks=(20,))
    return result.metrics[f"{stage}/recall@20"]


@dataclass
class _Tuned:
    best: tuple[float, int, float] = (0.0, 0, -1.0)  # lr, epochs, valid recall@20
    best_factors: tuple[np.ndarray, np.ndarray] | None = None
    curves: dict[str, list[list[float]]] = field(default_factory=dict)  # lr -> [[epochs, valid recall], ...]
    samples: int = 0
    seconds: float = 0.0
    final: object = None  # the instance trained at the best learning rate


def _tune(split, progress) -> dict[str, _Tuned]:
    tuned = {name: _Tuned() for name in METHODS}
    for lr in LRS:  # learning rates outermost, so load drifting over the run touches every method alike
        for name, make in METHODS.items():
            method, state, run_best, since_best, curve = make(split.train, lr, THREADS), tuned[name], -1.0, 0, []
            for epochs in range(CHECK_EVERY, MAX_EPOCHS + 1, CHECK_EVERY):
                with timer() as elapsed:
                    method.train(CHECK_EVERY)
                state.seconds += elapsed()
                state.samples += CHECK_EVERY * method.samples_per_epoch
                recall = _recall20(split, method.factors(), "valid")
                curve.append([epochs, recall])
                progress.set_postfix_str(f"{name} lr={lr} epoch {epochs}: valid recall@20 {recall:.4f}")
                progress.update(1)
                if recall > state.best[2]:
                    state.best, state.final = (lr, epochs, recall), method
                    state.best_factors = tuple(np.array(f, copy=True) for f in method.factors())
                since_best = 0 if recall > run_best else since_best + 1
                run_best = max(run_best, recall)
                if since_best >= PATIENCE:
                    break
            state.curves[str(lr)] = curve
    return tuned


# --- speed -------------------------------------------------------------------------------------------
def _timed_rounds(instances: dict[str, object], threads: int) -> dict[str, list[float]]:
    speeds: dict[str, list[float]] = {name: [] for name in instances}
    for _ in range(ROUNDS):
        for name, method in instances.items():
            method.set_threads(threads)
            with timer() as elapsed:
                method.train(TIMED_EPOCHS)
            speeds[name].append(TIMED_EPOCHS * method.samples_per_epoch / elapsed())
    return speeds


def _autograd_speed(split, objective: str, threads: int) -> float:
    """Triples/s of the autograd path: sampling + TorchRec lookups + loss + backward + Adam step."""
    import torch

    from recsys.data.sampling import NegativeSampler
    from recsys.models.implicit import ImplicitRecommender

    torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    train = split.train
    module = ImplicitRecommender(train.n_users, train.n_items, objective=objective, embedding_dim=DIM, l2=REG, flip_l2=REG)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    sampler = NegativeSampler(train.matrix())
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(train))

    def step(b: int) -> None:
        rows = order[b * AUTOGRAD_BATCH_SIZE:(b + 1) * AUTOGRAD_BATCH_SIZE]
        users = train.user[rows]
        negatives = sampler.sample(users, 1, rng)
        loss = module.loss(torch.from_numpy(users), torch.from_numpy(train.item[rows]), torch.from_numpy(negatives))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step(0)  # warm-up
    with timer() as elapsed:
        for b in range(1, AUTOGRAD_BATCHES + 1):
            step(b)
    return AUTOGRAD_BATCHES * AUTOGRAD_BATCH_SIZE / elapsed()


# --- report ------------------------------------------------------------------------------------------
def _plot(tuned: dict[str, _Tuned], speed: dict[str, dict[str, float]], autograd: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (name, state), color in zip(tuned.items(), ("tab:gray", "tab:blue", "tab:green")):
        for lr, curve in state.curves.items():
            xs, ys = zip(*curve)
            best = float(lr) == state.best[0]
            left.plot(xs, ys, color=color, lw=2.2 if best else 0.8, alpha=1.0 if best else 0.6,
                      label=f"{name} lr={lr}" + (" (best)" if best else ""))
    left.set(xlabel="epochs", ylabel="valid recall@20", title="Tuning: validation recall@20 per learning rate")
    left.legend(fontsize=7)
    names = list(speed[str(THREADS)]) + [f"autograd {k}" for k in autograd]
    values = [v / 1e6 for v in speed[str(THREADS)].values()] + [v / 1e6 for v in autograd.values()]
    right.barh(names, values, color=["tab:gray"] + ["tab:blue"] * (len(speed[str(THREADS)]) - 1) + ["tab:red"] * len(autograd))
    right.set(xlabel=f"million samples/s ({THREADS} threads, median of {ROUNDS} rounds)", title="Training throughput")
    fig.tight_layout()
    fig.savefig(RESULTS / "training.png", dpi=120)
    plt.close(fig)


def main() -> None:
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    from recsys.data.splits import random_split
    from recsys.data.world import WorldConfig, generate_world

    logging.getLogger("recsys").setLevel(logging.WARNING)
    load_before = os.getloadavg()
    with timer() as elapsed:
        world = generate_world(WorldConfig.movielens_1m_shape(seed=SEED))
        split = random_split(world.observed, (0.8, 0.1, 0.1), seed=SEED)
    print(f"data: world movielens_1m_shape(seed={SEED}), {world.observed.describe()}; "
          f"train {len(split.train):,} ({elapsed():.0f}s)", flush=True)

    with threadpool_limits(THREADS):
        steps = len(LRS) * len(METHODS) * (MAX_EPOCHS // CHECK_EVERY)
        with tqdm(total=steps, desc="tuning (checks; runs may stop early)") as progress:
            tuned = _tune(split, progress)
        test = {name: _recall20(split, state.best_factors, "test") for name, state in tuned.items()}
        instances = {name: state.final for name, state in tuned.items()}
        instances["ours_bpr_popularity_negatives"] = _Compiled(split.train, tuned["ours_bpr"].best[0], THREADS, "bpr",
                                                               popularity_negatives=True)
        instances["ours_bpr_hogwild"] = _Compiled(split.train, tuned["ours_bpr"].best[0], THREADS, "bpr",
                                                  schedule="hogwild")
        rounds = {str(t): _timed_rounds(instances, t) for t in sorted({1, THREADS})}
        autograd_rounds = {str(t): {objective: _autograd_speed(split, objective, t) for objective in ("bpr", "nbpo")}
                           for t in sorted({1, THREADS})}
        autograd = autograd_rounds[str(THREADS)]

    speed = {t: {name: float(np.median(v)) for name, v in per.items()} for t, per in rounds.items()}
    ratios = {t: {name: float(np.median(np.array(v) / np.array(per["implicit_bpr"])))
                  for name, v in per.items() if name != "implicit_bpr"} for t, per in rounds.items()}
    peer_test = test["implicit_bpr"]
    result = {
        "data": {"source": f"recsys.data.world WorldConfig.movielens_1m_shape(seed={SEED})",
                 "interactions": len(world.observed), "users": world.observed.n_users, "items": world.observed.n_items,
                 "split": "random per user 0.8/0.1/0.1, seed 0", "train": len(split.train)},
        "setup": {"dim": DIM, "reg": REG, "lrs": LRS, "check_every": CHECK_EVERY, "max_epochs": MAX_EPOCHS,
                  "patience": PATIENCE, "threads": THREADS, "rounds": ROUNDS, "timed_epochs": TIMED_EPOCHS,
                  "peer": "implicit.cpu.bpr.BayesianPersonalizedRanking 0.7.3 (65 columns: 64 + item bias)",
                  "negatives": {"implicit_bpr": "popularity-proportional (implicit's sampler)",
                                "ours_bpr": "uniform", "ours_nbpo": "uniform",
                                "ours_bpr_popularity_negatives": "popularity-proportional (alias table), untuned",
                                "ours_bpr_hogwild": "uniform; threads race on shared rows (schedule='hogwild'), "
                                                    "speed only"},
                  "schedule": "ours: the stratified (reproducible) default unless the name says hogwild"},
        "methods": {name: {"best_lr": state.best[0], "best_epochs": state.best[1], "valid_recall@20": state.best[2],
                           "test_recall@20": test[name], "test_recall_ratio_vs_implicit": test[name] / peer_test,
                           "tuning_samples_per_s": state.samples / state.seconds, "curves": state.curves}
                    for name, state in tuned.items()},
        "samples_per_s": speed,
        "samples_per_s_rounds": rounds,
        "ratio_vs_implicit": ratios,
        "autograd_samples_per_s": autograd_rounds,
        "autograd_ratio_vs_implicit": {t: {k: v / speed[t]["implicit_bpr"] for k, v in per.items()}
                                       for t, per in autograd_rounds.items()},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "note": "shared 2-core machine: absolute samples/s move with other load; the ratios are measured "
                "back to back in the same rounds",
    }
    _plot(tuned, speed, autograd)
    write_result("training", result)
    print(f"\n{'method':32s} {'lr':>6s} {'epochs':>6s} {'test R@20':>9s} " +
          " ".join(f"{t + ' thr Ms/s':>12s}" for t in speed))
    for name in instances:
        row = result["methods"].get(name)
        head = f"{name:32s} " + (f"{row['best_lr']:6g} {row['best_epochs']:6d} {row['test_recall@20']:9.4f} " if row
                                  else f"{'':6s} {'':6s} {'-':>9s} ")
        print(head + " ".join(f"{speed[t][name] / 1e6:12.2f}" for t in speed))
    for t, per in ratios.items():
        print(f"ratio vs implicit at {t} thread(s): " + ", ".join(f"{k} {v:.2f}x" for k, v in per.items()))
    print("test recall@20 ratio vs implicit: " + ", ".join(
        f"{k} {v['test_recall_ratio_vs_implicit']:.3f}" for k, v in result["methods"].items() if k != "implicit_bpr"))
    for t, per in autograd_rounds.items():
        print(f"autograd path (reference) at {t} thread(s): " + ", ".join(
            f"{k} {v / 1e6:.3f}M samples/s ({v / speed[t]['implicit_bpr']:.3f}x implicit)" for k, v in per.items()))
    print(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (2 shared cores)")


if __name__ == "__main__":
    main()
