"""Data-layer throughput on 1M interactions: splits and loading, against pandas peers.

Peers (same run, same data): for the splits, the usual pandas idiom (sort or shuffle, then
`groupby().cumcount()` per user; it neither groups repeated pairs nor guards against leaks, so
it does less work than ours); for loading, a bare `pandas.read_csv` of the same file (no
validation, no vocabulary).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import peak_rss_mb, timer, write_result
from recsys.data.formats import load
from recsys.data.interactions import IdVocab, InteractionData
from recsys.data.native import read_native, write_native
from recsys.data.splits import leave_one_out, random_split, temporal_split

N_ROWS, N_USERS, N_ITEMS = 1_000_000, 6_040, 3_706


def _data(seed: int = 0) -> InteractionData:
    rng = np.random.default_rng(seed)
    return InteractionData(rng.integers(0, N_USERS, N_ROWS), rng.integers(0, N_ITEMS, N_ROWS),
                           rng.integers(9 * 10**8, 10**9, N_ROWS), IdVocab.range(N_USERS, N_ITEMS),
                           rating=rng.integers(1, 6, N_ROWS))


def _best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        with timer() as elapsed:
            fn()
        times.append(elapsed())
    return min(times)


def _pandas_loo(frame: pd.DataFrame) -> pd.Series:
    ordered = frame.sort_values(["user", "timestamp"], kind="stable")
    return ordered.groupby("user").cumcount(ascending=False)


def _pandas_random(frame: pd.DataFrame, seed: int) -> pd.Series:
    shuffled = frame.sample(frac=1.0, random_state=seed)
    rank = shuffled.groupby("user").cumcount()
    size = shuffled.groupby("user")["item"].transform("size")
    return rank < (size * 0.8).round()


def _pandas_temporal(frame: pd.DataFrame) -> np.ndarray:
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    return order[: int(len(order) * 0.8)]


def main() -> None:
    data = _data()
    frame = data.to_frame(outside_ids=False)
    leave_one_out(data)  # warm-up
    result: dict = {"rows": N_ROWS, "users": N_USERS, "items": N_ITEMS}
    for name, ours, peer in (
        ("random_split", lambda: random_split(data, seed=0), lambda: _pandas_random(frame, 0)),
        ("leave_one_out", lambda: leave_one_out(data), lambda: _pandas_loo(frame)),
        ("temporal_split", lambda: temporal_split(data), lambda: _pandas_temporal(frame)),
    ):
        ours_s, peer_s = _best(ours), _best(peer)
        result[name] = {"seconds": round(ours_s, 3), "pandas_peer_seconds": round(peer_s, 3),
                        "ratio_vs_peer": round(ours_s / peer_s, 2)}
        print(f"{name:15s} ours {ours_s:.3f}s  pandas {peer_s:.3f}s  ratio {ours_s / peer_s:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        ratings = Path(tmp) / "ratings.csv"
        data.to_frame().rename(columns={"user": "userId", "item": "movieId"}).to_csv(ratings, index=False)
        ours_s = _best(lambda: load(ratings), repeats=2)
        peer_s = _best(lambda: pd.read_csv(ratings), repeats=2)
        result["load_movielens_csv"] = {"seconds": round(ours_s, 3), "pandas_read_csv_seconds": round(peer_s, 3),
                                        "ratio_vs_peer": round(ours_s / peer_s, 2)}
        print(f"load csv        ours {ours_s:.3f}s  pandas.read_csv {peer_s:.3f}s  ratio {ours_s / peer_s:.2f}")
        native = Path(tmp) / "native"
        write_native(native, data)
        ours_s = _best(lambda: read_native(native), repeats=2)
        peer_s = _best(lambda: pd.read_parquet(native / "interactions.parquet"), repeats=2)
        result["read_native_parquet"] = {"seconds": round(ours_s, 3), "pandas_read_parquet_seconds": round(peer_s, 3),
                                         "ratio_vs_peer": round(ours_s / peer_s, 2)}
        print(f"read native     ours {ours_s:.3f}s  pandas.read_parquet {peer_s:.3f}s  ratio {ours_s / peer_s:.2f}")
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    write_result("data", result)
