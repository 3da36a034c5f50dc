"""The embedding bundle: towers, faiss index, tables and manifest, written and verified atomically.

Every exporter builds on `write_bundle`: an embedding recommender's bundle is exactly this
(`export_embeddings`); the personality ranker (`recsys.export.personality`) and TIGER/Mender
(`recsys.export.generative`) add their own graphs through its `extra_files` and
`manifest_sections`. The command that picks the exporter by model kind is `recsys.export.cli`.

A bundle is the only thing `serving` reads (its layout is documented in `serving/bundle.py`; the
manifest's format, names and checksums are `bundleformat.manifest`, shared with the server). Export:

1. takes the user and item vectors of an embedding model (score = dot product);
2. builds plain `nn.Embedding` twins of the TorchRec tables with the same weights - a user tower
   (user index -> vector) and a sequence tower (recent item indices + mask -> mean item vector,
   the query of users the model never saw) - and exports them with `torch.onnx.export(dynamo=True)`
   with a dynamic batch (TorchRec's KeyedJaggedTensor inputs do not export, torchrec #1550);
3. verifies itself: ONNX Runtime equals the torch twins within `tolerance` on a sample, a flat
   faiss index returns the exact top-K, an approximate one reaches `min_recall` at 10;
4. writes into a temporary directory beside `out` and renames it into place only when all checks
   pass, so a failed export leaves nothing behind. Nothing is pickled: arrays are .npy saved with
   allow_pickle=False, tables are JSON, the index is faiss's own format.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import importlib.metadata
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bundleformat.manifest import FORMAT, FORMAT_VERSION, MANIFEST, sha256_file
from bundleformat.signature import key_from_env as bundle_key_from_env
from bundleformat.signature import sign_manifest
from recsys.data.interactions import Catalog, IdVocab
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

OPSET = 20
TOLERANCE = 1e-5
VERIFY_K = 10
IndexKind = Literal["flat", "hnsw", "ivf", "ivfpq"]
INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")


class ExportVerificationError(UserInputError):
    """The exported bundle would not answer like the model; nothing was written."""


# ---------------------------------------------------------------------------------------------
# torch twins of the embedding tables
# ---------------------------------------------------------------------------------------------
class UserTower(nn.Module):
    """user_index (B,) -> user_vector (B, d): a plain embedding lookup."""

    def __init__(self, user_vectors: torch.Tensor):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(user_vectors.detach().float().clone(), freeze=True)

    def forward(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.embedding(user_index)


class SequenceTower(nn.Module):
    """item_index (B, L), mask (B, L) -> query_vector (B, d): mean of the item vectors where mask is 1.

    A padded batch with a mask (rather than `nn.EmbeddingBag` with offsets, whose ONNX export
    becomes a Loop) keeps the graph to Gather/Mul/ReduceSum; a row with an empty mask gives 0.
    """

    def __init__(self, item_vectors: torch.Tensor):
        super().__init__()
        self.embedding = nn.Embedding.from_pretrained(item_vectors.detach().float().clone(), freeze=True)

    def forward(self, item_index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        summed = (self.embedding(item_index) * mask.unsqueeze(-1)).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp_min(1.0)


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The exporter narrates every graph pass at INFO/WARNING; keep only its errors."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                 output_name: str, dynamic_shapes: tuple[dict[int, Any], ...]) -> None:
    module.eval()
    # Tables past ~1.5 GB cannot live inside one protobuf; below that one self-contained file is simpler.
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    with warnings.catch_warnings(), _quiet_loggers("torch.onnx", "torch.fx", "torch.export", "onnxscript", "onnx_ir"):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), dynamo=True, input_names=input_names,
                          output_names=[output_name], dynamic_shapes=dynamic_shapes, opset_version=OPSET,
                          external_data=size > 1_500_000_000, verbose=False)


def _export_towers(user_vectors: np.ndarray, item_vectors: np.ndarray, directory: Path) -> tuple[UserTower, SequenceTower]:
    user_tower = UserTower(torch.from_numpy(user_vectors))
    sequence_tower = SequenceTower(torch.from_numpy(item_vectors))
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1)
    n_users, n_items = len(user_vectors), len(item_vectors)
    export_onnx(user_tower, (torch.tensor([0, n_users - 1], dtype=torch.int64),), directory / "user_tower.onnx",
                 ["user_index"], "user_vector", ({0: batch},))
    example_items = torch.tensor([[0, n_items - 1, 0], [1 % n_items, 0, 0]], dtype=torch.int64)
    example_mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.float32)
    export_onnx(sequence_tower, (example_items, example_mask), directory / "sequence_tower.onnx",
                 ["item_index", "mask"], "query_vector", ({0: batch, 1: length}, {0: batch, 1: length}))
    return user_tower, sequence_tower


def _verify_onnx(directory: Path, user_tower: UserTower, sequence_tower: SequenceTower, n_users: int,
                 n_items: int, sample: int, tolerance: float, rng: np.random.Generator) -> dict[str, float]:
    """Largest |ONNX Runtime - torch| over a sample of users and of padded item sequences."""
    import onnxruntime as ort

    users = np.unique(np.concatenate([[0, n_users - 1], rng.integers(0, n_users, size=sample)])).astype(np.int64)
    lengths = rng.integers(1, 21, size=max(2, sample // 4))
    items = rng.integers(0, n_items, size=(len(lengths), lengths.max())).astype(np.int64)
    mask = (np.arange(lengths.max())[None, :] < lengths[:, None]).astype(np.float32)
    items[mask == 0] = 0  # padding points at a real row, so only the mask keeps it out of the mean
    errors = {}
    with torch.no_grad():
        for name, tower, feeds in (
            ("user_tower", user_tower, {"user_index": users}),
            ("sequence_tower", sequence_tower, {"item_index": items, "mask": mask}),
        ):
            session = ort.InferenceSession(str(directory / f"{name}.onnx"), providers=["CPUExecutionProvider"])
            onnx_out = session.run(None, feeds)[0]
            torch_out = tower(*(torch.from_numpy(v) for v in feeds.values())).numpy()
            if onnx_out.shape != torch_out.shape:
                raise ExportVerificationError(f"{name}.onnx returns shape {onnx_out.shape}, torch {torch_out.shape}")
            errors[name] = float(np.abs(onnx_out - torch_out).max())
            if not errors[name] <= tolerance:
                raise ExportVerificationError(f"{name}.onnx differs from the torch model by {errors[name]:.3g} "
                                              f"(> {tolerance:g}) on a sample batch")
    return errors


# ---------------------------------------------------------------------------------------------
# faiss index
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexSpec:
    """Which faiss index holds the item vectors (inner product) and its parameters.

    flat: exact (`IndexFlatIP`). hnsw: `IndexHNSWFlat` with `hnsw_m` links per node,
    `ef_construction` and `ef_search`. ivf: `IndexIVFFlat` with `nlist` lists (default about
    4 sqrt(n_items)) of which `nprobe` are visited. ivfpq: `IndexIVFPQ`, the same lists with each
    vector's residual compressed to `pq_m` codes of `pq_bits` bits (pq_m * pq_bits / 8 bytes per
    item instead of 4 * dim; `pq_m` must divide the dimension, and training needs at least
    2**pq_bits items). An approximate index must reach `min_recall` (recall@10 against exact search
    on the verification users) or the export fails.
    """

    kind: IndexKind = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 16
    pq_m: int = 16
    pq_bits: int = 8
    min_recall: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise UserInputError(f"index kind must be one of {', '.join(INDEX_KINDS)}, got {self.kind!r}")
        if min(self.hnsw_m, self.ef_construction, self.ef_search, self.nprobe, self.pq_m) < 1 or (self.nlist is not None and self.nlist < 1):
            raise UserInputError("index parameters (hnsw_m, ef_construction, ef_search, nlist, nprobe, pq_m) must be >= 1")
        if not 1 <= self.pq_bits <= 16:
            raise UserInputError(f"pq_bits must be in 1..16, got {self.pq_bits}")
        if not 0.0 <= self.min_recall <= 1.0:
            raise UserInputError(f"min_recall must be in [0, 1], got {self.min_recall}")

    def params(self, n_items: int) -> dict[str, int]:
        if self.kind == "hnsw":
            return {"m": self.hnsw_m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}
        if self.kind in ("ivf", "ivfpq"):
            nlist = self.nlist or max(1, min(n_items // 39, round(4 * math.sqrt(n_items))))
            lists = {"nlist": nlist, "nprobe": min(self.nprobe, nlist)}
            return lists if self.kind == "ivf" else {**lists, "pq_m": self.pq_m, "pq_bits": self.pq_bits}
        return {}


def build_index(item_vectors: np.ndarray, spec: IndexSpec):
    """A faiss inner-product index over the item vectors; faiss id i is item i."""
    import faiss

    n, dim = item_vectors.shape
    params = spec.params(n)
    if spec.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
        index.hnsw.efSearch = params["ef_search"]
    else:
        if params["nlist"] > n:
            raise UserInputError(f"{spec.kind}: nlist {params['nlist']} exceeds the {n} items its k-means trains on")
        quantizer = faiss.IndexFlatIP(dim)
        if spec.kind == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, params["nlist"], faiss.METRIC_INNER_PRODUCT)
        else:
            _check_pq(spec, n, dim)
            index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], spec.pq_m, spec.pq_bits,
                                     faiss.METRIC_INNER_PRODUCT)
            index.pq.cp.seed = 1234
        index.cp.seed = 1234  # k-means initialisation: same vectors, same index
        index.train(item_vectors)
        index.nprobe = params["nprobe"]
    index.add(item_vectors)
    return index


def _check_pq(spec: IndexSpec, n_items: int, dim: int) -> None:
    if dim % spec.pq_m:
        raise UserInputError(f"ivfpq: pq_m {spec.pq_m} must divide the vector dimension {dim}")
    if n_items < 2 ** spec.pq_bits:
        raise UserInputError(f"ivfpq: {n_items} items cannot train {2 ** spec.pq_bits} codes per sub-quantizer "
                             f"(pq_bits {spec.pq_bits}); lower pq_bits to at most {int(math.log2(n_items))}")


def _exact_top_k(queries: np.ndarray, item_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by float64 inner product, ties by the lower item id."""
    scores = queries.astype(np.float64) @ item_vectors.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def _verify_index(index, spec: IndexSpec, queries: np.ndarray, item_vectors: np.ndarray,
                  tolerance: float) -> dict[str, Any]:
    """Flat: faiss's top-K is an exact top-K (ids equal, or swapped only inside ties within
    tolerance). Approximate: recall@K against exact search is at least `spec.min_recall`."""
    k = min(VERIFY_K, len(item_vectors))
    faiss_scores, faiss_ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    exact_ids, exact_scores = _exact_top_k(queries, item_vectors, k)
    if spec.kind != "flat":
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(faiss_ids, exact_ids)]))
        if recall < spec.min_recall:
            raise ExportVerificationError(
                f"the {spec.kind} index reaches recall@{k} {recall:.3f} against exact search, below "
                f"min_recall {spec.min_recall}; raise ef_search/nprobe or lower --min-recall")
        return {"k": k, "queries": len(queries), "recall": recall}
    identical = 0
    for row, (ids, reference_ids, reference_scores) in enumerate(zip(faiss_ids, exact_ids, exact_scores)):
        if np.array_equal(ids, reference_ids):
            identical += 1
            continue
        scale = tolerance * max(1.0, float(np.abs(reference_scores).max()))
        rescored = item_vectors[ids].astype(np.float64) @ queries[row].astype(np.float64)
        if (ids < 0).any() or len(set(ids)) != k or not np.allclose(rescored, reference_scores, atol=scale, rtol=0):
            raise ExportVerificationError(f"the flat faiss index's top-{k} differs from exact search for "
                                          f"verification query {row}: {ids.tolist()} vs {reference_ids.tolist()}")
    return {"k": k, "queries": len(queries), "recall": 1.0, "identical_lists": identical / len(queries)}


# ---------------------------------------------------------------------------------------------
# writing the bundle
# ---------------------------------------------------------------------------------------------
def save_npy(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


def _as_matrix(name: str, values, rows: int | None = None) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    if array.ndim != 2 or array.shape[1] < 1 or (rows is not None and array.shape[0] != rows):
        raise UserInputError(f"{name} must be a ({rows if rows is not None else 'n'}, d) matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise UserInputError(f"{name} holds NaN or infinite values; the model cannot be exported")
    return array


def _catalog_columns(catalog, n_items: int) -> tuple[list[str], list[str]]:
    if catalog is None:
        return [""] * n_items, [""] * n_items
    if isinstance(catalog, Catalog):
        titles, categories = catalog.titles, catalog.categories
    elif isinstance(catalog, Mapping):
        titles = catalog.get("title", [""] * n_items)
        categories = catalog.get("category", [""] * n_items)
    else:
        raise UserInputError(f"catalog must be a Catalog or a mapping of columns, got {type(catalog).__name__}")
    if len(titles) != n_items or len(categories) != n_items:
        raise UserInputError(f"catalog has {len(titles)} titles and {len(categories)} categories for {n_items} items")
    return [str(t) for t in titles], [str(c) for c in categories]


def _seen_csr(train_items_by_user, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    if train_items_by_user is None:
        return np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if hasattr(train_items_by_user, "indptr"):  # a scipy CSR matrix
        indptr, indices = train_items_by_user.indptr, train_items_by_user.indices
    else:
        indptr, indices = train_items_by_user["indptr"], train_items_by_user["indices"]
    indptr, indices = np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)
    if len(indptr) != n_users + 1 or indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
        raise UserInputError(f"train_items_by_user is not a CSR of {n_users} users (indptr has {len(indptr)} entries)")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise UserInputError("train_items_by_user holds item ids outside the vocabulary")
    return indptr, indices


def _versions() -> dict[str, str]:
    import faiss
    import onnx
    import onnxruntime

    try:
        prefengine_version = importlib.metadata.version("prefengine")
    except importlib.metadata.PackageNotFoundError:
        prefengine_version = "unknown"
    return {"prefengine": prefengine_version, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnx_opset": str(OPSET), "onnxruntime": onnxruntime.__version__, "faiss": faiss.__version__,
            "numpy": np.__version__}


def write_bundle(out_dir: Path | str, user_vectors, item_vectors, vocab_users: Sequence[str],
                 vocab_items: Sequence[str], catalog, item_popularity, train_items_by_user,
                 metrics: Mapping[str, float] | None, model_kind: str, model_name: str | None = None,
                 index_spec: IndexSpec | None = None, *, bundle_version: str | None = None,
                 vocab_digest: str | None = None, model_info: Mapping[str, Any] | None = None,
                 verify_sample: int = 256, tolerance: float = TOLERANCE, overwrite: bool = False,
                 seed: int = 0, extra_files: Mapping[str, Path] | None = None,
                 manifest_sections: Mapping[str, Any] | None = None) -> Path:
    """Write, verify and atomically publish a bundle at `out_dir`; returns its path.

    `user_vectors` (n_users, d) and `item_vectors` (n_items, d) score by dot product.
    `catalog`: a `Catalog` or {"title": [...], "category": [...]}; `item_popularity`: training
    counts per item (the cold-start fallback); `train_items_by_user`: CSR {"indptr", "indices"}
    (or a scipy CSR matrix) of each user's training items (exclude_seen). Raises
    `ExportVerificationError` (writing nothing) when ONNX or faiss disagree with exact scoring.

    A model with more to serve than the two towers (a ranker graph, generative graphs) passes
    `extra_files` (bundle file name -> a file it already wrote and verified; copied in before the
    checksums, so they are listed in the manifest's "files" with their sha256) and
    `manifest_sections` (merged into the manifest: a new top-level key is added, a mapping under an
    existing mapping such as "graphs" or "verification" adds its keys; replacing anything is an error).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UserInputError(f"{out_dir} already exists; choose a new directory or pass overwrite=True (--force)")
    index_spec = index_spec or IndexSpec()
    vocab = IdVocab(np.asarray(list(vocab_users)), np.asarray(list(vocab_items)))
    users = _as_matrix("user_vectors", user_vectors, vocab.n_users)
    items = _as_matrix("item_vectors", item_vectors, vocab.n_items)
    if users.shape[1] != items.shape[1]:
        raise UserInputError(f"user vectors are {users.shape[1]}-d but item vectors {items.shape[1]}-d")
    if vocab.n_users < 1 or vocab.n_items < 1:
        raise UserInputError("a bundle needs at least one user and one item")
    if len(set(vocab.users)) != vocab.n_users or len(set(vocab.items)) != vocab.n_items:
        raise UserInputError("vocab_users / vocab_items hold duplicate ids")
    popularity = np.asarray(item_popularity if item_popularity is not None else np.zeros(vocab.n_items), dtype=np.int64)
    if popularity.shape != (vocab.n_items,):
        raise UserInputError(f"item_popularity has shape {popularity.shape}, expected ({vocab.n_items},)")
    titles, categories = _catalog_columns(catalog, vocab.n_items)
    indptr, indices = _seen_csr(train_items_by_user, vocab.n_users, vocab.n_items)
    digest = vocab.digest()
    if vocab_digest is not None and vocab_digest != digest:
        raise UserInputError("the vocabulary does not match its recorded digest (vocab_digest); the checkpoint is inconsistent")
    rng = np.random.default_rng(seed)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        with tqdm(total=4, desc="export", unit="step") as bar:
            # The index first: it is the cheaper check, so a bad index spec fails fast.
            bar.set_postfix_str(f"faiss {index_spec.kind} index")
            import faiss

            index = build_index(items, index_spec)
            sample_users = rng.choice(vocab.n_users, size=min(verify_sample, vocab.n_users), replace=False)
            index_check = _verify_index(index, index_spec, users[np.sort(sample_users)], items, tolerance)
            faiss.write_index(index, str(work / "item_index.faiss"))
            bar.update()
            bar.set_postfix_str("ONNX towers")
            user_tower, sequence_tower = _export_towers(users, items, work)
            onnx_errors = _verify_onnx(work, user_tower, sequence_tower, vocab.n_users, vocab.n_items,
                                       verify_sample, tolerance, rng)
            bar.update()
            bar.set_postfix_str("tables")
            save_npy(work / "item_vectors.npy", items)
            save_npy(work / "item_popularity.npy", popularity)
            save_npy(work / "seen_indptr.npy", indptr)
            save_npy(work / "seen_indices.npy", indices)
            _write_json(work / "users.json", {"user_id": list(vocab.users)})
            _write_json(work / "items.json", {"item_id": list(vocab.items), "title": titles, "category": categories})
            _copy_extra_files(work, extra_files or {})
            bar.update()
            bar.set_postfix_str("manifest")
            files = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(work.iterdir())}
            created = dt.datetime.now(dt.UTC).replace(microsecond=0)
            content = hashlib.sha256("".join(f"{n}:{f['sha256']}" for n, f in files.items()).encode()).hexdigest()
            name = model_name or model_kind
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "bundle_version": bundle_version or f"{name}-{created:%Y%m%dT%H%M%SZ}-{content[:8]}",
                "created_at": created.isoformat().replace("+00:00", "Z"),
                "model": {"kind": model_kind, "name": name, **dict(model_info or {})},
                "score": "inner_product",
                "embedding_dim": int(items.shape[1]),
                "n_items": vocab.n_items,
                "n_users": vocab.n_users,
                "vocab_digest": digest,
                # NaN/inf (a metric with no users to average) are not JSON; they are left out.
                "metrics": {str(k): float(v) for k, v in (metrics or {}).items() if math.isfinite(float(v))},
                "index": {"kind": index_spec.kind, "params": index_spec.params(vocab.n_items),
                          "verification": index_check},
                "verification": {"tolerance": tolerance, "onnx_max_abs_error": onnx_errors},
                "graphs": {
                    "user_tower": {"file": "user_tower.onnx", "inputs": {"user_index": "int64[batch]"},
                                   "outputs": {"user_vector": "float32[batch, dim]"}},
                    "sequence_tower": {"file": "sequence_tower.onnx",
                                       "inputs": {"item_index": "int64[batch, length]", "mask": "float32[batch, length]"},
                                       "outputs": {"query_vector": "float32[batch, dim]"}},
                },
                "versions": _versions(),
                "files": files,
            }
            _merge_sections(manifest, manifest_sections or {})
            key = bundle_key_from_env()
            if key is not None:  # PREFENGINE_BUNDLE_KEY: serving then refuses bundles without this signature
                manifest = sign_manifest(manifest, key)
            _write_json(work / MANIFEST, manifest)
            bar.update()
        _publish(work, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("wrote bundle %s (%s, %d items, %d users, index %s)", out_dir, manifest["bundle_version"],
             vocab.n_items, vocab.n_users, index_spec.kind)
    return out_dir


# Top-level manifest fields that describe the bundle itself: no section may replace them.
_CORE_FIELDS = frozenset({"format", "format_version", "bundle_version", "created_at", "embedding_dim", "n_items",
                          "n_users", "vocab_digest", "files", "score", "versions"})


def _copy_extra_files(work: Path, extra_files: Mapping[str, Path]) -> None:
    """Copy a model's own files (already verified by its exporter) into the bundle under their bundle names."""
    for name, source in extra_files.items():
        source = Path(source)
        if not name or Path(name).name != name or name.startswith("."):
            raise UserInputError(f"extra bundle file name {name!r} must be a plain file name")
        if (work / name).exists() or name == MANIFEST:
            raise UserInputError(f"extra bundle file {name!r} would replace a file of the bundle itself")
        if not source.is_file():
            raise UserInputError(f"extra bundle file {name!r}: {source} is not a file")
        shutil.copyfile(source, work / name)


def _merge_sections(manifest: dict[str, Any], sections: Mapping[str, Any]) -> None:
    """Add a model's manifest sections; a mapping under an existing mapping adds keys, never replaces one."""
    for name, value in sections.items():
        current = manifest.get(name)
        if name in _CORE_FIELDS:
            raise UserInputError(f"manifest section {name!r} would replace a field of the bundle itself")
        if current is None:
            manifest[name] = value
        elif isinstance(current, dict) and isinstance(value, Mapping):
            clash = sorted(set(current) & set(value))
            if clash:
                raise UserInputError(f"manifest section {name!r} would replace {clash}")
            current.update(value)
        else:
            raise UserInputError(f"manifest section {name!r} would replace the existing {name!r}")


def _publish(work: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished directory into place; an existing bundle is replaced only when asked."""
    os.chmod(work, 0o755)  # mkdtemp creates it private
    if out_dir.exists():
        if not overwrite:
            raise UserInputError(f"{out_dir} appeared while exporting; not replacing it")
        old = out_dir.with_name(f".{out_dir.name}.replaced-{os.getpid()}")
        out_dir.rename(old)
        work.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        work.rename(out_dir)


# ---------------------------------------------------------------------------------------------
# from a checkpoint
# ---------------------------------------------------------------------------------------------
def checkpoint_block(ckpt_path: Path | str) -> dict[str, Any]:
    """The checkpoint's "prefengine" block (model kind and class, vocabulary, catalog ...)."""
    return _read_checkpoint(Path(ckpt_path))[1]


def _read_checkpoint(ckpt_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if not ckpt_path.is_file():
        raise UserInputError(f"{ckpt_path}: checkpoint not found")
    try:
        # A Lightning checkpoint is a torch pickle; only load checkpoints you trust (as with any .ckpt).
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's bad input
        raise UserInputError(f"{ckpt_path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from None
    block = checkpoint.get("prefengine") if isinstance(checkpoint, dict) else None
    if not isinstance(block, dict) or "model_kind" not in block:
        raise UserInputError(f"{ckpt_path}: not a prefengine checkpoint (it has no 'prefengine' block)")
    return checkpoint, block


def load_recommender(ckpt_path: Path | str):
    """The LightningModule of a prefengine checkpoint (its class is named in the checkpoint's block)."""
    ckpt_path = Path(ckpt_path)
    _, block = _read_checkpoint(ckpt_path)
    class_path = block.get("model_class")
    if not isinstance(class_path, str) or "." not in class_path:
        raise UserInputError(f"{ckpt_path}: the 'prefengine' block does not name the model class")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        model_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise UserInputError(f"{ckpt_path}: model class {class_path} cannot be imported") from None
    model = model_class.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=False)
    model.eval()
    return model, block


def _check_dot_product(model, user_vectors: torch.Tensor, item_vectors: torch.Tensor, sample: int,
                       tolerance: float, rng: np.random.Generator) -> float:
    """The model's own scores equal user . item on a sample, so the bundle ranks as the model does."""
    users = np.sort(rng.choice(len(user_vectors), size=min(sample, len(user_vectors)), replace=False))
    with torch.no_grad():
        model_scores = model.score_users(torch.from_numpy(users)).double()
        twin_scores = user_vectors[users].double() @ item_vectors.double().T
    scale = max(1.0, float(model_scores.abs().max()))
    error = float((model_scores - twin_scores).abs().max())
    if error > tolerance * scale:
        raise ExportVerificationError(f"the model's scores differ from user . item vectors by {error:.3g}: "
                                      "it is not a pure dot-product model and cannot be served from embeddings")
    return error


def export_embeddings(ckpt_path: Path, out_dir: Path | str, index_spec: IndexSpec | None, model_name: str | None,
                       bundle_version: str | None, verify_sample: int, tolerance: float, overwrite: bool,
                       seed: int) -> Path:
    """An embedding recommender (score = user . item, e.g. ImplicitRecommender): the two towers."""
    with _quiet_loggers("torch.fx"):  # TorchRec's lookups trip a torch.fx deprecation notice
        model, block = load_recommender(ckpt_path)
    if not (hasattr(model, "user_embeddings") and hasattr(model, "item_embeddings")):
        raise UserInputError(f"{ckpt_path}: a '{block['model_kind']}' model has no user/item embeddings to export")
    for key in ("vocab_users", "vocab_items"):
        if key not in block:
            raise UserInputError(f"{ckpt_path}: the 'prefengine' block lacks '{key}' (trained without a DataModule?)")
    with torch.no_grad():
        user_vectors = model.user_embeddings().detach().float().cpu()
        item_vectors = model.item_embeddings().detach().float().cpu()
    with _quiet_loggers("torch.fx"):
        dot_error = _check_dot_product(model, user_vectors, item_vectors, verify_sample, tolerance,
                                       np.random.default_rng(seed))
    model_info = {"checkpoint": ckpt_path.name, "checkpoint_sha256": sha256_file(ckpt_path),
                  "class": block.get("model_class"), "score_check_max_abs_error": dot_error}
    return write_bundle(
        out_dir, user_vectors.numpy(), item_vectors.numpy(), block["vocab_users"], block["vocab_items"],
        block.get("catalog"), block.get("item_popularity"), block.get("train_items_by_user"),
        block.get("metrics"), block["model_kind"], model_name, index_spec, bundle_version=bundle_version,
        vocab_digest=block.get("vocab_digest"), model_info=model_info, verify_sample=verify_sample,
        tolerance=tolerance, overwrite=overwrite, seed=seed)


__all__ = ["ExportVerificationError", "IndexSpec", "SequenceTower", "UserTower", "build_index", "checkpoint_block",
           "export_embeddings", "export_onnx", "load_recommender", "save_npy", "write_bundle"]
