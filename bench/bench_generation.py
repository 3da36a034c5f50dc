"""Generation latency of the generative retriever (top-10 by trie-constrained beam search, beam 10/20/30)
against exact dot-product retrieval over the same item embeddings, measured in one run.

Model: the benchmark's architecture (`configs/recsys/mender.yaml`: d_model 64, 2 + 2 layers, history
10, up to 5 preferences) for both variants, over semantic IDs of 3 levels x 64 codes plus the
collision token for a catalog of 3,706 items (MovieLens-1M size). The weights are untrained: the
work per query does not depend on their values (every step decodes the same number of beams and
masks the same trie), so no training run is needed to time it.

Ours: `GenerativeRetriever.recommend` (torch encoder and decoder, numpy beam search, exclude
seen items). Reference: exact retrieval, query vector (the mean of the history's item vectors)
times the item matrix (item vector = the sum of its semantic-ID token embeddings, d = 64), seen
items masked, `np.argpartition` top-10 then sorted. Both per user (batch 1, the online case) and
per user within a batch of 256 (the offline case); reported as milliseconds per user and as the
ratio ours / reference.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import write_result

N_ITEMS, CODEBOOK, LEVELS, TEXT_DIM = 3706, 64, 3, 384
BEAMS, K, BATCH = (10, 20, 30), 10, 256
SINGLE_QUERIES, SEED = 40, 0


def _model(variant: str):
    from recsys.models.generative import GenerativeRetriever
    from recsys.models.semantic_ids import SemanticIds

    rng = np.random.default_rng(SEED)
    ids = SemanticIds.from_codes(rng.integers(0, CODEBOOK, size=(N_ITEMS, LEVELS)), [CODEBOOK] * LEVELS)
    torch.manual_seed(SEED)
    model = GenerativeRetriever(variant=variant, n_items=N_ITEMS, level_sizes=ids.level_sizes, text_dim=TEXT_DIM,
                                d_model=64, n_heads=4, encoder_layers=2, decoder_layers=2, ff_dim=128,
                                max_history=10).eval()
    text = rng.normal(size=(N_ITEMS, TEXT_DIM)).astype(np.float32)
    model.set_items(ids.codes, text / np.linalg.norm(text, axis=1, keepdims=True))
    return model


def _queries(n: int, rng: np.random.Generator):
    history = rng.integers(0, N_ITEMS, size=(n, 10))
    prefs = rng.normal(size=(n, 5, TEXT_DIM)).astype(np.float32)
    return history, prefs, np.ones((n, 5), dtype=bool), [h for h in history]


def _reference(item_vectors: np.ndarray, history: np.ndarray, exclude) -> np.ndarray:
    queries = item_vectors[history].mean(axis=1)
    scores = queries @ item_vectors.T
    for row, seen in enumerate(exclude):
        scores[row, seen] = -np.inf
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def _per_user_ms(run, n_users: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return 1000 * best / n_users


def _measure(model, vectors: np.ndarray, beam: int, history, prefs, mask, exclude) -> dict[str, float]:
    def ours(rows: slice):
        model.recommend(history[rows], prefs[rows], mask[rows], k=K, beam_size=beam, exclude=exclude[rows])

    def reference(rows: slice):
        _reference(vectors, history[rows], exclude[rows])

    single = [_per_user_ms(lambda q=q: ours(slice(q, q + 1)), 1, 1) for q in range(SINGLE_QUERIES)]
    ref_single = [_per_user_ms(lambda q=q: reference(slice(q, q + 1)), 1) for q in range(SINGLE_QUERIES)]
    batched = _per_user_ms(lambda: ours(slice(0, BATCH)), BATCH)
    ref_batched = _per_user_ms(lambda: reference(slice(0, BATCH)), BATCH)
    return {"ms_per_user_online": float(np.median(single)), "p95_ms_online": float(np.percentile(single, 95)),
            "reference_ms_per_user_online": float(np.median(ref_single)),
            "ratio_online": float(np.median(single) / np.median(ref_single)),
            "ms_per_user_batch": batched, "reference_ms_per_user_batch": ref_batched,
            "ratio_batch": batched / ref_batched}


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    results = {"setup": {"items": N_ITEMS, "levels": LEVELS + 1, "codebook": CODEBOOK, "k": K, "batch": BATCH,
                         "torch_threads": 1, "model": "d_model 64, 2+2 layers, history 10, 5 preferences (untrained)"},
               "reference": "exact dot product (mean history vector x item matrix, seen masked, argpartition top-10)"}
    history, prefs, mask, exclude = _queries(BATCH, rng)
    for variant in ("tiger", "mender"):
        model = _model(variant)
        with torch.no_grad():
            vectors = model.tokens(model.item_codes[:N_ITEMS] + model.offsets).sum(1).numpy()
        rows = {}
        for beam in BEAMS:
            row = rows[f"beam_{beam}"] = _measure(model, vectors, beam, history, prefs, mask, exclude)
            print(f"{variant} beam {beam}: {row['ms_per_user_online']:.2f} ms/user online "
                  f"({row['ratio_online']:.0f}x dot product), {row['ms_per_user_batch']:.2f} ms/user in batches "
                  f"of {BATCH} ({row['ratio_batch']:.0f}x)", flush=True)
        results[variant] = rows
    write_result("generation", results)
