"""New users placed from comparisons over HTTP: latency of a pluralistic bundle, against known-user queries.

A pluralistic model (configs/recsys/pluralistic.yaml's world: 1,000 users x 300 items, 4 taste
types) is trained for a few epochs, exported, and served by a real `python -m serving` process on
loopback. Closed-loop clients (raw asyncio keep-alive connections, as in bench_serving) send
`comparisons` queries of 10 random answers each; the peer is the same server answering known
`user_id` queries, in alternating slices so both see the same machine load. Reported: p50/p99 at
concurrency 1 and 8, requests/s, the load average during the run, and the in-process cost of one
numpy placement (`bundleformat.pluralistic`). The issue's target: p99 < 15 ms for 10 comparisons.
`BENCH_COMPARISONS_QUICK=1` shortens the slices.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.bench_serving import running_server
from bench.common import write_result

QUICK = bool(os.environ.get("BENCH_COMPARISONS_QUICK"))
CONCURRENCY = (1, 8)
SECONDS_PER_SLICE = 1.0 if QUICK else 3.0
ROUNDS = 1 if QUICK else 3
WARMUP_SECONDS = 0.5
COMPARISONS = 10
K = 10
WORK = Path("artifacts/bench/comparisons")


def build_bundle() -> tuple[Path, list[str], list[str]]:
    import pytorch_lightning as pl
    import torch

    from recsys.data.datamodule import InteractionDataModule
    from recsys.export.cli import export_checkpoint
    from recsys.models.pluralistic import PluralisticRecommender

    torch.set_num_threads(1)
    datamodule = InteractionDataModule(world_preset="toy", world_users=1000, world_items=300,
                                       world_options={"taste_types": 4}, batch_size=1024, seed=0)
    pl.seed_everything(0, verbose=False)
    model = PluralisticRecommender(datamodule.n_users, datamodule.n_items, prototypes=4, embedding_dim=32)
    trainer = pl.Trainer(max_epochs=3 if QUICK else 10, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    WORK.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(WORK / "pluralistic.ckpt")
    bundle = export_checkpoint(WORK / "pluralistic.ckpt", WORK / "bundle", verify_sample=64, overwrite=True)
    vocab = datamodule.split.train.vocab
    return bundle, list(vocab.items), list(vocab.users)


async def load_slice(url: str, bodies: list[bytes], concurrency: int, seconds: float, warmup: float) -> dict:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def client(offset: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        n = offset
        try:
            while (now := time.perf_counter()) < stop_at:
                body = bodies[n % len(bodies)]
                writer.write(b"POST /v1/recommend HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
                if now >= measure_from:
                    latencies.append(time.perf_counter() - now)
                    errors += not head.startswith(b"HTTP/1.1 200")
                n += concurrency
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


def placement_cost(bundle: Path, items: int, repeats: int = 2000) -> float:
    """Median seconds of one numpy placement from 10 comparisons, in process."""
    from bundleformat.pluralistic import Placement

    manifest = json.loads((bundle / "manifest.json").read_text())
    placement = Placement.from_arrays(np.load(bundle / "prototypes.npy"), np.load(bundle / "item_vectors.npy"),
                                      manifest["pluralistic"])
    rng = np.random.default_rng(1)
    times = []
    for _ in range(repeats):
        pairs = rng.choice(items, (COMPARISONS, 2), replace=False)
        started = time.perf_counter()
        placement.query(pairs[:, 0], pairs[:, 1])
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    bundle, item_ids, user_ids = build_bundle()
    rng = np.random.default_rng(0)
    comparison_bodies = []
    for _ in range(2000):
        pairs = rng.choice(len(item_ids), (COMPARISONS, 2), replace=False)
        comparison_bodies.append(json.dumps({"comparisons": [{"preferred": item_ids[a], "over": item_ids[b]}
                                                             for a, b in pairs], "k": K}).encode())
    user_bodies = [json.dumps({"user_id": user_ids[u], "k": K}).encode()
                   for u in rng.integers(0, len(user_ids), 2000)]
    results = []
    load_before = os.getloadavg()[0]
    with running_server(bundle, 1, "thread") as (url, _, start_seconds, rss):
        for concurrency in CONCURRENCY:
            runs = {"comparisons": [], "user_id": []}
            for _ in range(ROUNDS):  # alternate, so both query kinds see the same machine load
                for kind, bodies in (("comparisons", comparison_bodies), ("user_id", user_bodies)):
                    runs[kind].append(asyncio.run(load_slice(url, bodies, concurrency, SECONDS_PER_SLICE,
                                                             WARMUP_SECONDS)))
            for kind, slices in runs.items():
                latencies = np.concatenate([s["latencies"] for s in slices]) * 1000
                p50, p99 = np.percentile(latencies, [50, 99])
                results.append({"query": kind, "concurrency": concurrency, "requests": len(latencies),
                                "errors": int(sum(s["errors"] for s in slices)), "p50_ms": round(float(p50), 2),
                                "p99_ms": round(float(p99), 2),
                                "requests_per_s": round(len(latencies) / sum(s["seconds"] for s in slices), 1)})
                print(results[-1], flush=True)
    result = {"bundle": {"n_items": len(item_ids), "n_users": len(user_ids), "comparisons_per_query": COMPARISONS},
              "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
              "cpus": os.cpu_count(), "placement_ms_in_process": round(placement_cost(bundle, len(item_ids)) * 1000, 3),
              "target": "p99 < 15 ms for a profile from 10 comparisons", "runs": results,
              "target_met_at_concurrency_8": next(r["p99_ms"] < 15 for r in results
                                                  if r["query"] == "comparisons" and r["concurrency"] == 8)}
    write_result("comparisons", result)


if __name__ == "__main__":
    main()
