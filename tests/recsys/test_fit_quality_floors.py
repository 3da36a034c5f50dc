"""`python -m recsys fit` with the shipped configs as they are (the compiled engine, their defaults),
on the toy world with 1,000 users: BPR and NBPO must beat the popularity baseline by a margin.

Margins, NDCG@20 over popularity (16 epochs; measured with data seeds 0, 1, 2 on a loaded 2-core machine):
  clean labels:    BPR +0.084, +0.102, +0.106   NBPO +0.042, +0.064, +0.064   -> floors 0.04 and 0.02
  observed labels: BPR +0.045, +0.066, +0.079   NBPO +0.021, +0.037, +0.045   -> floor 0.01 for both
The test runs seed 0, the lowest of the three.
"""

import json

import pytest
import torch

from recsys.cli import main as recsys_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORLD = ["--data.world_preset", "toy", "--data.world_users", "1000", "--trainer.enable_progress_bar", "false"]
FLOORS = {"bpr": {"clean/ndcg@20": 0.04, "test/ndcg@20": 0.01}, "nbpo": {"clean/ndcg@20": 0.02, "test/ndcg@20": 0.01}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("floors")
    metrics = {}
    for name in ("popularity", "bpr", "nbpo"):
        epochs = [] if name == "popularity" else ["--trainer.max_epochs", "16"]
        assert recsys_main(["fit", "-c", f"configs/recsys/{name}.yaml", *WORLD, *epochs,
                            "--trainer.default_root_dir", str(root / name)]) == 0
        metrics[name] = json.loads((root / name / "metrics.json").read_text())
    return root, metrics


@pytest.mark.parametrize("model", ["bpr", "nbpo"])
def test_trained_with_the_compiled_engine(runs, model):
    root, _ = runs
    checkpoint = next((root / model / "checkpoints").glob("best-*.ckpt"))
    assert torch.load(checkpoint, weights_only=False)["hyper_parameters"]["engine"] == "compiled"


@pytest.mark.parametrize("model", ["bpr", "nbpo"])
def test_beats_popularity_by_the_stated_margin(runs, model):
    _, metrics = runs
    for key, floor in FLOORS[model].items():
        gain = metrics[model][key] - metrics["popularity"][key]
        assert gain >= floor, f"{model} {key}: {metrics[model][key]:.4f} vs popularity " \
                              f"{metrics['popularity'][key]:.4f} (gain {gain:+.4f} < {floor})"
