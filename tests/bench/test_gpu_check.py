"""`bash bench/gpu_check.sh DATA_DIR --cpu --tiny` on slices of the shared files, with the packages the GPU
machine lacks (torchrec, faiss, gymnasium, fastapi) made unimportable: the script a GPU session runs once
must not fail there on an import or a renamed flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.bench_reproduce import DEFAULT_DATA, ROOT, quick_data

MISSING_ON_GPU_MACHINE = "torchrec,faiss,gymnasium,fastapi"


@pytest.mark.skipif(not (DEFAULT_DATA / "amazon-toys" / "sequences.txt").is_file(), reason="needs ../shared/data")
def test_gpu_check_runs_every_part_without_the_packages_the_gpu_machine_lacks(tmp_path):
    data = quick_data(DEFAULT_DATA, tmp_path / "data")
    env = {**os.environ, "PYTHON": f"{sys.executable} -m bench.block_imports {MISSING_ON_GPU_MACHINE} --",
           "RESULTS": str(tmp_path / "results"), "RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "bench/gpu_check.sh", str(data), "--cpu", "--tiny"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["part"]: row for row in map(json.loads, (tmp_path / "results" / "gpu_check.jsonl").read_text().split("\n")[:-1])}
    assert set(rows) == {"bpr_autograd", "tiger_paper_toys", "beam_search", "sasrec_toys", "sasrec_sports"}
    for row in rows.values():
        assert row["exit"] == 0 and not row["timed_out"], (row, done.stderr[-2000:])
    assert "test/recall@10" in rows["bpr_autograd"] and "recall@10" in rows["tiger_paper_toys"]
    assert rows["beam_search"]["lists_equal"] is True and rows["beam_search"]["device"] == "cpu"
