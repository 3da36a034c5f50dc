""""avoid X" in POST /v1/recommend: a polarity-aware Mender, fine-tuned with S-DPO from the session's Mender,
exports to the same bundle kind, and a real server (HTTP on loopback) demotes the avoided item."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from model_bundles import MAX_HISTORY, N_ITEMS, N_USERS, TITLES, MenderBundle
from serving_helpers import save_lightning_checkpoint


@dataclass
class AvoidBundle:
    path: Path
    model: object
    top: np.ndarray  # per user, the supervised model's first item (what the test avoids)


def build_avoid_bundle(mender: MenderBundle, root: Path) -> AvoidBundle:
    """The session's Mender with a (zero-initialised) polarity embedding, fine-tuned by S-DPO to reject an item
    under "Avoid <its title>" and choose it under "Find <its title>"."""
    from recsys.export.cli import export_checkpoint
    from recsys.models.generative import GenerativeRetriever
    from recsys.models.preference_optimization import PreferenceOptimization

    base = mender.model
    torch.manual_seed(0)
    model = GenerativeRetriever(**{**dict(base.hparams), "preference_polarity": True})
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["polarity.weight"] and not unexpected
    torch.nn.init.zeros_(model.polarity.weight)  # starts as the supervised model
    model.set_items(base.item_codes[:-1].numpy(), base.item_text[:-1].numpy())
    model.prefengine_meta = dict(base.prefengine_meta)

    # Queries like the server's: each user's recent items; the items avoided / found are the user's top three.
    rng = np.random.default_rng(0)
    history = np.full((N_USERS, MAX_HISTORY), -1, dtype=np.int64)
    for user in range(N_USERS):
        recent = mender.train[user][-MAX_HISTORY:]
        history[user, MAX_HISTORY - len(recent):] = recent
    top, _ = base.recommend(history, k=3, exclude=mender.train)
    users = np.repeat(np.arange(N_USERS), 6)
    items = np.repeat(top, 2, axis=1).reshape(-1)
    negative = np.arange(len(users)) % 2 == 0
    others = (items[:, None] + rng.integers(1, N_ITEMS, size=(len(users), 3))) % N_ITEMS
    sentences = [f"{'Avoid' if n else 'Find'} {TITLES[i]}" for i, n in zip(items.tolist(), negative.tolist())]
    # plus one row per user without preferences that keeps the supervised model's first item first
    users = np.r_[users, np.arange(N_USERS)]
    chosen = np.r_[np.where(negative, others[:, 0], items), top[:, 0]]
    rejected = np.r_[np.where(negative[:, None], np.c_[items, others[:, 1:]], others), top[:, 1:].repeat(2, 1)[:, :3]]
    stated = np.r_[np.ones(len(negative), dtype=bool), np.zeros(N_USERS, dtype=bool)]
    prefs = np.r_[mender.encoder.encode(sentences), np.zeros((N_USERS, base.hparams.text_dim), np.float32)]
    batch = {"history": torch.as_tensor(history[users]), "prefs": torch.as_tensor(prefs)[:, None],
             "pref_mask": torch.as_tensor(stated)[:, None],
             "pref_negative": torch.as_tensor(np.r_[negative, np.zeros(N_USERS, dtype=bool)])[:, None],
             # under "Avoid X": X rejected against other items; under "Find X": X chosen against others
             "chosen": torch.as_tensor(chosen), "rejected": torch.as_tensor(rejected)}
    module = PreferenceOptimization(policy=model, beta=1.0, n_negatives=3, lr=3e-3)
    module.train()
    optimizer = module.configure_optimizers()
    for _ in range(80):
        optimizer.zero_grad()
        module.step(batch)["loss"].backward()
        optimizer.step()
    assert module.step(batch)["ranking_accuracy"].item() > 0.9
    policy = module.policy.eval()
    checkpoint = save_lightning_checkpoint(policy, root / "avoid.ckpt")
    return AvoidBundle(export_checkpoint(checkpoint, root / "bundle", verify_sample=8), policy, top[:, 0])


@pytest.fixture(scope="module")
def avoid(mender, tmp_path_factory) -> AvoidBundle:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_avoid_bundle(mender, tmp_path_factory.mktemp("avoid"))
    finally:
        torch.set_num_threads(threads)


def test_the_bundle_records_the_polarity_the_server_applies(avoid):
    manifest = json.loads((avoid.path / "manifest.json").read_text())
    assert manifest["model"]["kind"] == "generative-mender"
    polarity = manifest["generative"]["preference_polarity"]
    assert polarity["input"] == "pref_negative" and polarity["negative_pattern"].startswith("^")


def test_avoid_in_the_request_demotes_the_item_over_http(avoid, start_server):
    server = start_server(avoid.path)

    def rank(user: int, item: int, preferences: list[str]) -> int:
        body = {"user_id": f"u{user}", "k": 10, "preferences": preferences}
        answer = httpx.post(f"{server.url}/v1/recommend", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        items = [int(entry["item_id"][1:]) for entry in answer.json()["items"]]
        return items.index(item) if item in items else len(items)

    plain, avoided, found = [], [], []
    for user in range(8):
        item = int(avoid.top[user])
        plain.append(rank(user, item, []))
        avoided.append(rank(user, item, [f"avoid {TITLES[item]}"]))  # lower case: the pattern ignores case
        found.append(rank(user, item, [f"Find {TITLES[item]}"]))
    print(f"rank of the item (10 = not in the top 10): plain {plain}, avoid {avoided}, find {found}")
    assert sum(a > p for a, p in zip(avoided, plain)) >= 7  # demoted for 7 of 8 users
    assert sum(a > f for a, f in zip(avoided, found)) >= 7  # same words as a like: the difference is the polarity
    assert np.mean(avoided) >= 4
