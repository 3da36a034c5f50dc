"""Test-time beam search of TIGER at the paper's size on a real catalog: batched search vs the per-query search.

`python -m bench beam_search` (defaults) or `python -m bench.bench_beam_search --data DIR --device cuda --users N`.

Data: the test queries of an S3-Rec sequence file (default `../shared/data/amazon-toys`: 19,412 users,
11,924 items), history = every item but the last (at most 20, as TIGER reads), the history excluded.
Model: `configs/recsys/tiger_paper.yaml`'s architecture (4 + 4 layers, d_model 128, 6 heads, ff 1024),
untrained, over semantic IDs of 3 x 256 random codes plus the collision token: the work per query does
not depend on the weights' values (every level decodes beam_size beams under the same trie masking).
Beam 20, top 10. Ours: `recommend(search="batched")` over all the test queries (or `--users`).
Reference, in the same run: `recommend(search="per-query")`, the numpy search over full decoder passes
(256 queries per call, as before), on the first `--reference-users` queries; its lists must equal ours.
Both are reported as ms per user; the ratio is the speed-up.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "amazon-toys"
PAPER = dict(d_model=128, n_heads=4, encoder_layers=4, decoder_layers=4, ff_dim=1024, dropout=0.1, max_history=20)
BEAM, K, CODEBOOK, SEED = 20, 10, 256, 0


def paper_model(n_items: int, device: str):
    """TIGER at the paper's size over random 3 x 256 semantic IDs (+ collision token), untrained, in eval mode.

    The paper's 6 heads of width 64 (T5's 384-wide attention inside a 128-wide model) cannot be built from
    torch's attention, which splits d_model among the heads: 4 heads of 32 instead (see tiger_paper.yaml).
    """
    from recsys.models.generative import GenerativeRetriever
    from recsys.models.semantic_ids import SemanticIds

    rng = np.random.default_rng(SEED)
    ids = SemanticIds.from_codes(rng.integers(0, CODEBOOK, size=(n_items, 3)), [CODEBOOK] * 3)
    torch.manual_seed(SEED)
    model = GenerativeRetriever(n_items=n_items, level_sizes=ids.level_sizes, beam_size=BEAM, **PAPER)
    model.set_items(ids.codes)
    return model.to(device).eval()


def test_queries(data: Path, max_history: int = 20):
    from recsys.data.formats.sequences import read_sequences
    from recsys.models.generative_data import leave_last_out

    sequences = read_sequences(data)
    test = leave_last_out(sequences.sequences, max_history).test
    seen = [np.asarray(sequences.sequences[u][:s]) for u, s in zip(test.user.tolist(), test.step.tolist())]
    return sequences.n_items, test.history, seen


def measure(data: Path = DEFAULT_DATA, device: str = "cpu", users: int | None = None, reference_users: int = 256,
            batch_size: int | None = None) -> dict:
    n_items, history, seen = test_queries(data)
    n = len(history) if users is None else min(users, len(history))
    model = paper_model(n_items, device)
    from recsys.models import generative

    batch_size = batch_size or (generative.CPU_BATCH_SIZE if device == "cpu" else generative.ACCELERATOR_BATCH_SIZE)

    def run(search: str, count: int, size: int):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started, cpu = time.perf_counter(), time.process_time()
        items, _ = model.recommend(history[:count], k=K, beam_size=BEAM, exclude=seen[:count], batch_size=size,
                                   search=search)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return items, time.perf_counter() - started, time.process_time() - cpu

    model.recommend(history[:8], k=K, beam_size=BEAM, exclude=seen[:8], search="batched")  # warm-up
    reference_users = min(reference_users, n)
    reference, reference_s, reference_cpu = run("per-query", reference_users, 256)
    ours, ours_s, ours_cpu = run("batched", n, batch_size)
    equal = bool(np.array_equal(ours[:reference_users], reference))
    load = os.getloadavg()[0]
    return {"data": str(data), "device": device, "threads": torch.get_num_threads(), "beam": BEAM, "k": K,
            "catalog_items": n_items, "users": n, "batch_size": batch_size,
            # recommend runs this many batches at once on the CPU, one torch thread each (see its doc)
            "workers": torch.get_num_threads() if device == "cpu" else 1,
            "batched_s": round(ours_s, 2), "batched_ms_per_user": round(1000 * ours_s / n, 3),
            "per_query_users": reference_users, "per_query_ms_per_user": round(1000 * reference_s / reference_users, 3),
            "speedup": round((reference_s / reference_users) / (ours_s / n), 2), "lists_equal": equal,
            # CPU seconds (all threads) per user: less sensitive than wall time to other work on the machine.
            "batched_cpu_ms_per_user": round(1000 * ours_cpu / n, 3),
            "per_query_cpu_ms_per_user": round(1000 * reference_cpu / reference_users, 3),
            "load_average_1min": round(load, 2), "cpus": os.cpu_count()}


def docs_table(results: list[dict]) -> str:
    lines = ["| device | users | batched: ms per user (CPU ms) | per-query: ms per user (CPU ms) | speed-up (CPU) | "
             "same lists | batched: all users, wall (CPU) | load (1 min) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        cpu_total = r["users"] * r.get("batched_cpu_ms_per_user", float("nan")) / 1000
        cpu_ratio = r.get("per_query_cpu_ms_per_user", float("nan")) / r.get("batched_cpu_ms_per_user", float("nan"))
        lines.append(f"| {r['device']}, {r['threads']} threads | {r['users']:,} | {r['batched_ms_per_user']:.1f} "
                     f"({r.get('batched_cpu_ms_per_user', float('nan')):.1f}) | {r['per_query_ms_per_user']:.1f} "
                     f"({r.get('per_query_cpu_ms_per_user', float('nan')):.1f}) | {r['speedup']:.1f}x "
                     f"({cpu_ratio:.1f}x) | {'yes' if r['lists_equal'] else 'NO'} | {r['batched_s']:.0f} s "
                     f"({cpu_total:.0f} CPU-s) | {r['load_average_1min']:.1f} on {r['cpus']} CPUs |")
    return "\n".join(lines)


def write_docs() -> None:
    """The table in docs/benchmarks.md from bench/results/beam_search*.json."""
    import json

    from bench.common import RESULTS
    from recsys.evaluation.doc_blocks import replace_block

    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("beam_search*.json"))]
    docs = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
    text = docs.read_text()
    updated = replace_block(text, "<!-- beam:start -->", "<!-- beam:end -->", f"\n{docs_table(results)}\n") \
        if results else None
    if updated is not None:
        docs.write_text(updated)
        print(f"wrote the table in {docs}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_beam_search", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="S3-Rec sequence directory or sequences.txt")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--users", type=int, default=None, help="test queries for the batched search (all)")
    parser.add_argument("--reference-users", type=int, default=256, help="queries for the per-query search")
    parser.add_argument("--batch-size", type=int, default=None, help="queries per batch (recommend's default: cpu 64, cuda 4096)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    parser.add_argument("--json", type=Path, default=None, help="also write the result to this file")
    args = parser.parse_args([] if argv is None else argv)  # `python -m bench beam_search`: the defaults
    torch.set_num_threads(args.threads)
    if not (args.data.is_dir() or args.data.is_file()):
        raise SystemExit(f"skipped: {args.data} is absent (see the shared data README)")
    result = measure(args.data, args.device, args.users, args.reference_users, args.batch_size)
    print({k: v for k, v in result.items() if k != "data"})
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_write:
        from bench.common import write_result

        name = "beam_search" if args.device == "cpu" else f"beam_search_{args.device.split(':')[0]}"
        write_result(name, result)
        write_docs()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
