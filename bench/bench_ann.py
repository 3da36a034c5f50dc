"""Retrieval from a 1,000,000-item catalog: faiss flat vs HNSW vs IVF-Flat vs IVF-PQ.

Every index is built by `recsys.export.embeddings.build_index(vectors, IndexSpec(...))`, the function the
serving bundle's export uses, so the numbers describe what `python -m recsys export --index ...`
writes. Reference: the exact flat index (`IndexFlatIP`) in the same run; ratios are to it.

Vectors (clustered synthetic, 64-d float32, seed 0): 1,024 cluster centres N(0, I) with
Dirichlet cluster sizes; an item is its centre plus a cluster-specific rank-8 variation (std 0.7
per dimension) and isotropic noise (std 0.6), so clusters overlap, then scaled to a log-normal
norm (sigma 0.3), since trained MF item vectors are clustered by taste and popular items have
longer vectors. Queries (users) are a cluster centre, drawn in proportion to cluster size, plus
N(0, 1) noise: a user sits between tastes, not on an item.

Measured per index and search setting: build seconds (train + add), index bytes
(`faiss.serialize_index`), recall@10 against exact top-10 (float64 brute force, computed in
numpy, not by faiss), single-query latency p50/p99 over --single queries at 1 thread (as serving
runs), and batch throughput (all --queries at once, every core).

    python -m bench ann                                   # 1,000,000 items
    python -m bench.bench_ann --items 100000 --single 100 # a quick run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, peak_rss_mb, write_result

ROOT = Path(__file__).resolve().parents[1]
K = 10


def clustered_vectors(n_items: int, n_queries: int, dim: int = 64, clusters: int = 1024,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(items (n_items, dim), queries (n_queries, dim)) float32, described in the module docstring."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    share = rng.dirichlet(np.full(clusters, 2.0))
    bases = rng.standard_normal((clusters, dim, 8)) * (0.7 / np.sqrt(8))
    cluster = rng.choice(clusters, size=n_items, p=share)
    items = np.empty((n_items, dim), dtype=np.float32)
    for start in range(0, n_items, 100_000):  # chunks keep the float64 temporaries small
        c = cluster[start:start + 100_000]
        coeff = rng.standard_normal((len(c), 8))
        x = centres[c] + np.einsum("ndk,nk->nd", bases[c], coeff) + 0.6 * rng.standard_normal((len(c), dim))
        x *= (np.exp(0.3 * rng.standard_normal(len(c))) / np.linalg.norm(x, axis=1))[:, None] * np.sqrt(dim)
        items[start:start + len(c)] = x
    q = centres[rng.choice(clusters, size=n_queries, p=share)] + rng.standard_normal((n_queries, dim))
    return items, q.astype(np.float32)


def exact_top_k(queries: np.ndarray, items: np.ndarray, k: int = K, chunk: int = 50_000) -> np.ndarray:
    """Exact top-k item ids per query by float64 inner product, chunked over items."""
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    best_scores = np.empty((len(queries), 0))
    q = queries.astype(np.float64)
    for start in range(0, len(items), chunk):
        scores = q @ items[start:start + chunk].astype(np.float64).T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        best_scores = np.hstack([best_scores, np.take_along_axis(scores, top, axis=1)])
        best_ids = np.hstack([best_ids, top + start])
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores, best_ids = np.take_along_axis(best_scores, keep, axis=1), np.take_along_axis(best_ids, keep, axis=1)
    return best_ids


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


def _set_search(index, kind: str, value: int) -> None:
    import faiss

    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = value
    elif kind in ("ivf", "ivfpq"):
        faiss.extract_index_ivf(index).nprobe = value


def measure_search(index, queries: np.ndarray, exact: np.ndarray, single: int, threads: int) -> dict:
    import faiss

    faiss.omp_set_num_threads(1)  # serving answers one request per thread
    latencies = []
    for q in queries[:single]:
        start = time.perf_counter()
        index.search(q[None, :], K)
        latencies.append(time.perf_counter() - start)
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    _, found = index.search(queries, K)
    batch_s = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {"recall@10": recall_at_k(found, exact), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "batch_qps": len(queries) / batch_s}


def run(items: np.ndarray, queries: np.ndarray, exact: np.ndarray, specs: dict, sweeps: dict, single: int,
        threads: int) -> dict:
    import faiss

    from recsys.export.embeddings import build_index

    results = {}
    for name, spec in specs.items():
        faiss.omp_set_num_threads(threads)
        rss_before, load = peak_rss_mb(), os.getloadavg()[0]
        start = time.perf_counter()
        index = build_index(items, spec)
        build_s = time.perf_counter() - start
        index_bytes = int(faiss.serialize_index(index).size)
        searches = {}
        for value in sweeps.get(spec.kind, [None]):
            if value is not None:
                _set_search(index, spec.kind, value)
            searches[str(value)] = measure_search(index, queries, exact, single, threads)
            print(f"  {name} {spec.kind} search={value}: {searches[str(value)]}", flush=True)
        results[name] = {"kind": spec.kind, "params": spec.params(len(items)), "build_s": build_s,
                         "index_bytes": index_bytes, "bytes_per_item": index_bytes / len(items),
                         "peak_rss_growth_mb": peak_rss_mb() - rss_before, "load_before": load,
                         "search_param": {"hnsw": "ef_search", "ivf": "nprobe", "ivfpq": "nprobe"}.get(spec.kind),
                         "searches": searches}
        print(f"{name}: build {build_s:.1f} s, {index_bytes / 2**20:.0f} MiB", flush=True)
        del index
    return results


def plot(results: dict, path: Path, n_items: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, r in results.items():
        points = list(r["searches"].items())
        left.plot([s["recall@10"] for _, s in points], [s["batch_qps"] for _, s in points], marker="o", label=name)
        for value, s in points:
            if value != "None":
                left.annotate(value, (s["recall@10"], s["batch_qps"]), fontsize=6)
        middle.plot([s["recall@10"] for _, s in points], [s["p50_ms"] for _, s in points], marker="o", label=name)
    left.set(yscale="log", xlabel="recall@10 vs exact", ylabel="queries/s (batch)",
             title=f"{n_items:,} items: throughput (labels: ef_search / nprobe)")
    middle.set(yscale="log", xlabel="recall@10 vs exact", ylabel="single-query p50 (ms, 1 thread)",
               title="latency")
    names = list(results)
    right.barh(names, [results[n]["index_bytes"] / 2**20 for n in names], color="tab:blue")
    for y, n in enumerate(names):
        right.annotate(f"build {results[n]['build_s']:.0f} s", (results[n]["index_bytes"] / 2**20, y), fontsize=7)
    right.set(xscale="log", xlabel="index size (MiB)", title="memory and build time")
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ann", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall and batch throughput")
    parser.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=64,
                        help="HNSW build breadth (IndexSpec's default is 200; lower keeps the 1M build short)")
    parser.add_argument("--nlist", type=int, default=1024,
                        help="IVF lists (IndexSpec's default ~4 sqrt(n) = 4,000 at 1M items trains k-means on all 1M)")
    parser.add_argument("--name", default="ann")
    return parser


def main(argv: list[str] | None = None) -> None:
    from recsys.export.embeddings import IndexSpec

    args = _parser().parse_args(argv or [])
    threads = os.cpu_count() or 1
    load_before = os.getloadavg()
    start = time.perf_counter()
    items, queries = clustered_vectors(args.items, args.queries, args.dim)
    exact = exact_top_k(queries, items)
    print(f"{args.items:,} x {args.dim} vectors and exact top-{K} of {args.queries} queries in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    common = {"nlist": args.nlist, "min_recall": 0.0}
    specs = {
        "flat": IndexSpec(kind="flat"),
        "hnsw": IndexSpec(kind="hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction),
        "ivf_flat": IndexSpec(kind="ivf", **common),
        "ivfpq_m16": IndexSpec(kind="ivfpq", pq_m=args.dim // 4, pq_bits=8, **common),
        "ivfpq_m32": IndexSpec(kind="ivfpq", pq_m=args.dim // 2, pq_bits=8, **common),
    }
    sweeps = {"hnsw": [32, 64, 128, 256], "ivf": [8, 16, 64], "ivfpq": [8, 16, 64]}
    results = run(items, queries, exact, specs, sweeps, args.single, threads)
    flat = results["flat"]["searches"]["None"]
    ratios = {f"{name}@{value}": {"batch_qps_vs_flat": s["batch_qps"] / flat["batch_qps"],
                                  "p50_vs_flat": s["p50_ms"] / flat["p50_ms"],
                                  "bytes_vs_flat": r["index_bytes"] / results["flat"]["index_bytes"]}
              for name, r in results.items() for value, s in r["searches"].items()}
    png = RESULTS / f"{args.name}.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(results, png, args.items)
    write_result(args.name, {
        "vectors": f"clustered synthetic, {args.items:,} items x {args.dim}, 1,024 clusters, seed 0 (see docstring)",
        "queries": args.queries, "single_queries": args.single, "threads_batch": threads, "threads_single": 1,
        "reference": "IndexFlatIP (exact), same run; recall against float64 numpy brute force",
        "indexes": results, "ratios_vs_flat": ratios, "process_peak_rss_mb": peak_rss_mb(),
        "load_average": {"before": load_before, "after": os.getloadavg()}, "plot": str(png.relative_to(ROOT)),
        "command": "python -m bench.bench_ann " + " ".join(argv) if argv else "python -m bench ann"})


if __name__ == "__main__":
    main(sys.argv[1:])
