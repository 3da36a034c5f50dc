"""Personality ranker checkpoint -> serving bundle, with a ranker graph for users the model never saw.

    python -m recsys export --ckpt PATH --out DIR [--force]     (dispatches here by the model kind)

The bundle is `recsys.export.embeddings.write_bundle`'s (the standard embedding bundle, verified there: ONNX user tower and
exact faiss top-K), built from the ranker's exact scores as an inner product: the user vectors
are every vocabulary user's score row (warm users with their id, cold users from their profile)
and the item vectors one-hot, so the service ranks known users exactly as the model does.

Added beside it through `write_bundle(extra_files=..., manifest_sections=...)`, so they are listed in
the manifest with their sha256 and described under graphs.ranker:

- `ranker.onnx`: the whole ranker as a plain-`nn.EmbeddingBag` twin of the TorchRec tables
  (TorchRec's KeyedJaggedTensor inputs do not export to ONNX):
      user_index int64[batch], user_known float32[batch] (0: no user id, the cold-start path),
      demographics int64[batch, fields], tastes int64[batch, length] (0 = padding),
      traits float32[batch, 5] (raw scores, BIG_FIVE order), trait_mask float32[batch, 5] (1 = known)
      -> scores float32[batch, n_items] (the model's ranking score: click logit or rating)
  Item-side terms are constants of the graph (they do not depend on the user).
- `profile_features.json`: how a raw profile becomes those inputs: the demographic fields (their
  values, id = position + 1, or numeric bin edges), the taste vocabulary (id = position + 1),
  the trait names and the scale they were trained on.

Export verifies itself: ONNX Runtime's ranker output equals the torch (TorchRec) model within
`tolerance` for a sample of vocabulary users (through their ids and through their profiles) and
of random profiles; otherwise nothing is written.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bundleformat.manifest import sha256_file
from recsys.data.interactions import BIG_FIVE
from recsys.errors import UserInputError
from recsys.export.embeddings import (
    TOLERANCE,
    ExportVerificationError,
    IndexSpec,
    export_onnx,
    load_recommender,
    write_bundle,
)
from recsys.models.personality import PersonalityRecommender, fm_interaction

log = logging.getLogger(__name__)

RANKER_FILE = "ranker.onnx"
FEATURES_FILE = "profile_features.json"
INPUTS = ("user_index", "user_known", "demographics", "tastes", "traits", "trait_mask")
# The manifest's graphs.ranker entry (serving reads the file names and checks the inputs).
RANKER_GRAPH = {"file": RANKER_FILE, "features": FEATURES_FILE,
                "inputs": {"user_index": "int64[batch]", "user_known": "float32[batch]",
                           "demographics": "int64[batch, fields]", "tastes": "int64[batch, length]",
                           "traits": "float32[batch, 5]", "trait_mask": "float32[batch, 5]"},
                "outputs": {"scores": "float32[batch, n_items]"}}


def _bag(weight: torch.Tensor, mode: str) -> nn.EmbeddingBag:
    # padding_idx 0: id 0 (unknown / padding) is left out of sums and means, as TorchRec's bags leave it out.
    return nn.EmbeddingBag.from_pretrained(weight.detach().float().clone(), freeze=True, mode=mode, padding_idx=0)


class RankerTwin(nn.Module):
    """The personality ranker with plain `nn.EmbeddingBag` tables: user fields in, scores of all items out."""

    def __init__(self, model: PersonalityRecommender):
        super().__init__()
        net = model._require_net()
        space = model.features
        self.k = net.embedding_dim
        self.rank_column = 0 if model.hparams.rank_by == "click" else 1
        tables = net.user_tables.embedding_bags
        self.user_bag = _bag(tables["user"].weight, "sum")
        self.demographic_bags = nn.ModuleList(_bag(tables[name].weight, "sum") for name in net.demographic_features)
        self.taste_bag = _bag(tables["tastes"].weight, "mean") if net.use_tastes else None
        self.trait_vectors = None if net.trait_vectors is None else nn.Parameter(
            net.trait_vectors.detach().clone(), requires_grad=False)
        self.register_buffer("trait_mean", torch.as_tensor(space.trait_mean))
        self.register_buffer("trait_std", torch.as_tensor(space.trait_std))
        self.user_projection = _frozen_copy(net.user_projection)
        self.mlp = _frozen_copy(net.mlp)
        self.heads = _frozen_copy(net.heads)
        self.register_buffer("head_bias", net.head_bias.detach().clone())
        self.register_buffer("wide_scale", net.wide_scale.detach().clone())
        # Item side through plain bags too, once: it does not depend on the user.
        items = torch.arange(model.hparams.n_items)
        with torch.no_grad():
            item_rows = torch.where(model.warm_items, items + 1, torch.zeros_like(items)).unsqueeze(1)
            item_tables = net.item_tables.embedding_bags
            stacked = torch.stack([_bag(item_tables["item"].weight, "sum")(item_rows),
                                   _bag(item_tables["category"].weight, "sum")(model.item_category.unsqueeze(1))], 1)
            embeddings = stacked[..., :self.k]
            self.register_buffer("item_total", embeddings.sum(1))
            self.register_buffer("item_wide", stacked[..., self.k].sum(1) + fm_interaction(embeddings))
            self.register_buffer("item_projection", net.item_projection(embeddings.flatten(1)))

    def forward(self, user_index: torch.Tensor, user_known: torch.Tensor, demographics: torch.Tensor,
                tastes: torch.Tensor, traits: torch.Tensor, trait_mask: torch.Tensor) -> torch.Tensor:
        rows = torch.where(user_known > 0, user_index + 1, torch.zeros_like(user_index)).unsqueeze(1)
        fields = [self.user_bag(rows)]
        fields += [bag(demographics[:, j:j + 1]) for j, bag in enumerate(self.demographic_bags)]
        if self.taste_bag is not None:
            fields.append(self.taste_bag(tastes))
        if self.trait_vectors is not None:
            z = torch.where(trait_mask > 0, (traits - self.trait_mean) / self.trait_std, torch.zeros_like(traits))
            fields += list((z.unsqueeze(-1) * self.trait_vectors).unbind(dim=1))
        stacked = torch.stack(fields, dim=1)
        embeddings = stacked[..., :self.k]
        user_wide = stacked[..., self.k].sum(1) + fm_interaction(embeddings)
        wide = user_wide[:, None] + self.item_wide[None, :] + embeddings.sum(1) @ self.item_total.T
        first = self.user_projection(embeddings.flatten(1))[:, None, :] + self.item_projection[None, :, :]
        out = self.head_bias + self.wide_scale * wide.unsqueeze(-1) + self.heads(self.mlp(first))
        return out[..., self.rank_column]


def _frozen_copy(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module).eval()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone


def user_inputs(model: PersonalityRecommender, users: np.ndarray) -> dict[str, np.ndarray]:
    """The ranker graph's inputs for vocabulary users (their stored profile, raw trait scale)."""
    space = model.features
    rows = space.user_rows(users)
    raw = rows["traits"] * space.trait_std + space.trait_mean
    return {"user_index": users.astype(np.int64), "user_known": model.warm_users[users].numpy().astype(np.float32),
            "demographics": rows["demographics"], "tastes": rows["tastes"],
            "traits": np.where(rows["trait_mask"] > 0, raw, 0).astype(np.float32),
            "trait_mask": rows["trait_mask"].astype(np.float32)}


def random_profiles(model: PersonalityRecommender, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Profiles of users outside the vocabulary: random field values, tastes and (partly unknown) traits."""
    space = model.features
    demographics = np.stack([rng.integers(0, f.size, size=n) for f in space.fields], axis=1) if space.fields \
        else np.zeros((n, 0), dtype=np.int64)
    tastes = rng.integers(0, max(space.n_tastes, 1), size=(n, 3)) if space.n_tastes > 1 else np.zeros((n, 1))
    mask = (rng.random((n, len(BIG_FIVE))) < 0.8).astype(np.float32)
    traits = (space.trait_mean + space.trait_std * rng.standard_normal((n, len(BIG_FIVE)))).astype(np.float32)
    return {"user_index": np.zeros(n, dtype=np.int64), "user_known": np.zeros(n, dtype=np.float32),
            "demographics": demographics.astype(np.int64), "tastes": tastes.astype(np.int64),
            "traits": traits * mask, "trait_mask": mask}


def export_ranker(model: PersonalityRecommender, path: Path) -> RankerTwin:
    twin = RankerTwin(model).eval()
    # Two users and two taste slots: torch.export would fix a dimension whose example size is 1.
    example = user_inputs(model, np.arange(2) % model.hparams.n_users)
    example["tastes"] = np.pad(example["tastes"], ((0, 0), (0, max(0, 2 - example["tastes"].shape[1]))))
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=1)
    # The number of demographic fields is fixed by the model; batch and taste list length are not.
    shapes = ({0: batch}, {0: batch}, {0: batch}, {0: batch, 1: length}, {0: batch}, {0: batch})
    export_onnx(twin, tuple(torch.from_numpy(example[name]) for name in INPUTS), path, list(INPUTS), "scores", shapes)
    return twin


def verify_ranker(model: PersonalityRecommender, path: Path, sample: int, tolerance: float, seed: int) -> dict:
    """Largest |ONNX Runtime - torch model| over vocabulary users and random new profiles."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    n_users = model.hparams.n_users
    users = np.unique(np.concatenate([[0, n_users - 1], rng.integers(0, n_users, size=sample)])).astype(np.int64)
    errors = {}
    with torch.no_grad():
        feeds = user_inputs(model, users)
        expected = model.score_users(torch.from_numpy(users)).numpy()
        errors["vocabulary_users"] = _max_error(session, feeds, expected)
        # The same users through the cold-start path: no user id, their profile only.
        cold = dict(feeds, user_known=np.zeros(len(users), dtype=np.float32))
        space = model.features
        expected = model.score_profiles(torch.from_numpy(cold["demographics"]), torch.from_numpy(cold["tastes"]),
                                        torch.from_numpy(space.user_traits[users])).numpy()
        errors["profiles_of_vocabulary_users"] = _max_error(session, cold, expected)
        profiles = random_profiles(model, max(2, sample // 4), rng)
        z = model.features.standardize(np.where(profiles["trait_mask"] > 0, profiles["traits"], np.nan))
        expected = model.score_profiles(torch.from_numpy(profiles["demographics"]),
                                        torch.from_numpy(profiles["tastes"]), torch.from_numpy(z)).numpy()
        errors["new_profiles"] = _max_error(session, profiles, expected)
    worst = max(errors.values())
    if not worst <= tolerance:
        raise ExportVerificationError(f"{path.name} differs from the torch model by {worst:.3g} (> {tolerance:g}): "
                                      f"{errors}")
    return errors


def _max_error(session, feeds: dict[str, np.ndarray], expected: np.ndarray) -> float:
    out = session.run(None, feeds)[0]
    if out.shape != expected.shape:
        raise ExportVerificationError(f"{RANKER_FILE} returns shape {out.shape}, the model {expected.shape}")
    return float(np.abs(out - expected).max())


def profile_features(model: PersonalityRecommender) -> dict:
    space = model.features
    return {"inputs": {"user_index": "int64[batch]", "user_known": "float32[batch]",
                       "demographics": f"int64[batch, {len(space.fields)}]", "tastes": "int64[batch, length]",
                       "traits": f"float32[batch, {len(BIG_FIVE)}]", "trait_mask": f"float32[batch, {len(BIG_FIVE)}]"},
            "output": "scores float32[batch, n_items]", "score": model.hparams.rank_by,
            "demographic_fields": [f.to_dict() for f in space.fields],
            "demographic_ids": "1-based position in 'values' (or 1 + number of edges <= the value); 0 = unknown",
            "tastes": list(space.tastes), "taste_ids": "1-based position in 'tastes'; 0 = padding",
            "traits": list(BIG_FIVE), "trait_mean": space.trait_mean.tolist(), "trait_std": space.trait_std.tolist(),
            "use_traits": bool(model.hparams.use_traits)}


def export_personality(ckpt_path, out_dir, model_name: str | None = None, bundle_version: str | None = None,
                       verify_sample: int = 256, tolerance: float = TOLERANCE, overwrite: bool = False,
                       seed: int = 0, *, index_spec: IndexSpec | None = None) -> Path:
    """Write and verify the bundle of a personality checkpoint (see the module doc)."""
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UserInputError(f"{out_dir} already exists; choose a new directory or pass --force")
    model, block = load_recommender(ckpt_path)
    if not isinstance(model, PersonalityRecommender):
        raise UserInputError(f"{ckpt_path}: a '{block['model_kind']}' checkpoint, not a personality ranker")
    with torch.no_grad():
        user_vectors, item_vectors = model.user_embeddings().numpy(), model.item_embeddings().numpy()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # The ranker graph is written and verified first, beside the bundle; write_bundle copies it in.
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.ranker-", dir=out_dir.parent))
    try:
        export_ranker(model, work / RANKER_FILE)
        errors = verify_ranker(model, work / RANKER_FILE, verify_sample, tolerance, seed)
        (work / FEATURES_FILE).write_text(json.dumps(profile_features(model), ensure_ascii=False))
        write_bundle(
            out_dir, user_vectors, item_vectors, block["vocab_users"], block["vocab_items"], block.get("catalog"),
            block.get("item_popularity"), block.get("train_items_by_user"), block.get("metrics"), block["model_kind"],
            model_name, index_spec or IndexSpec("flat"), bundle_version=bundle_version,
            vocab_digest=block.get("vocab_digest"),
            model_info={"checkpoint": ckpt_path.name, "checkpoint_sha256": sha256_file(ckpt_path),
                        "class": block.get("model_class"),
                        "score": f"{model.hparams.rank_by} (exact score rows, one-hot item vectors)",
                        "cold_start": f"{RANKER_FILE} with user_known = 0 scores a new user from a profile"},
            verify_sample=verify_sample, tolerance=tolerance, overwrite=overwrite, seed=seed,
            extra_files={RANKER_FILE: work / RANKER_FILE, FEATURES_FILE: work / FEATURES_FILE},
            manifest_sections={"graphs": {"ranker": RANKER_GRAPH}, "verification": {"ranker_max_abs_error": errors}})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("wrote personality bundle %s (ranker parity %s)", out_dir, errors)
    return out_dir
