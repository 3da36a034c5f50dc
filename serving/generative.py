"""Generative retrieval in the server: semantic-ID beam search over a bundle's ONNX graphs, without torch.

A bundle written by `recsys.export.generative` carries, beside the embedding bundle, a
"generative" manifest section, the encoder and decoder-step graphs, the items' semantic IDs, each
user's recent training history and, for Mender, a text encoder with its tokenizer. `GenerativeRanker`
answers one query: history (item indices, most recent last) and preference sentences -> the top-k
items by beam search over the trie of valid IDs, never returning a disallowed item (seen items,
filters) — by the search of `bundleformat.beam_search`, the same code the torch model and the
exporter run (numpy only, so `serving` still imports no torch and nothing of `recsys`). A
polarity-aware Mender's manifest carries `preference_polarity.negative_pattern`: each stated
preference it matches ("avoid ...", "no ...") is fed to the encoder as a dislike.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bundleformat.beam_search import PrefixTrie, beam_search
from bundleformat.manifest import BundleError
from serving.bundle import BundleData

log = logging.getLogger(__name__)

SPEC_FIELDS = {"variant": str, "level_sizes": list, "offsets": list, "bos": int, "max_history": int,
               "max_preferences": int, "beam_size": int, "text_dim": int, "graphs": dict}


def search_one(step: Callable[[np.ndarray], np.ndarray], trie: PrefixTrie, beam_size: int, k: int,
               excluded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items of one query (best first, only items that exist) and their log-probabilities.

    step(prefix (beams, depth)) -> logits of the next level for each beam; `excluded` is a bool mask
    over items. The search is `bundleformat.beam_search`, the one the torch model runs.
    """
    exclude = [np.flatnonzero(excluded)] if excluded is not None and excluded.any() else None
    items, scores = beam_search(lambda rows, prefix: step(prefix), 1, trie, beam_size, k, exclude)
    found = items[0] >= 0
    return items[0][found], scores[0][found]


class GenerativeRanker:
    """The generative half of a bundle; built by the retriever when the manifest has a "generative" section."""

    def __init__(self, data: BundleData, threads: int = 1):
        path, spec = data.path, data.manifest.get("generative")
        if not isinstance(spec, dict):
            raise BundleError(path, "manifest.json: 'generative' must be an object")
        for field, kind in SPEC_FIELDS.items():
            if not isinstance(spec.get(field), kind):
                raise BundleError(path, f"manifest.json: generative.{field} must be {kind.__name__}")
        if spec["variant"] not in ("tiger", "mender"):
            raise BundleError(path, f"manifest.json: generative.variant {spec['variant']!r} is not tiger or mender")
        self.spec, self.path = spec, path
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1

        def session(name: str) -> ort.InferenceSession:
            if name not in data.manifest["files"]:
                raise BundleError(path, f"{name} is not listed in manifest.json")
            return ort.InferenceSession(str(path / name), options, providers=["CPUExecutionProvider"])

        graphs = spec["graphs"]
        unlisted = sorted(str(name) for name in graphs.values() if name not in data.manifest["files"])
        if unlisted:  # every file read must be one that verify_files checked
            raise BundleError(path, f"generative.graphs name files not listed in manifest.json: {unlisted}")
        self.encoder, self.decoder = session(graphs["encoder"]), session(graphs["decoder_step"])
        codes = np.load(path / graphs["semantic_ids"], allow_pickle=False)
        if codes.dtype != np.int64 or codes.shape != (data.n_items, len(spec["level_sizes"])):
            raise BundleError(path, f"{graphs['semantic_ids']} must be int64 ({data.n_items}, "
                                    f"{len(spec['level_sizes'])}), got {codes.dtype} {codes.shape}")
        try:
            self.trie = PrefixTrie(codes, spec["level_sizes"])
        except (ValueError, IndexError) as error:
            raise BundleError(path, f"{graphs['semantic_ids']}: {error}") from None
        self.offsets = np.asarray(spec["offsets"], dtype=np.int64)
        self.history_indptr, self.history_indices = self._history(path, graphs, len(data.user_ids), data.n_items)
        self.text = self.tokenizer = None
        if spec["variant"] == "mender":
            text = spec.get("text_encoder")
            if not isinstance(text, dict):
                raise BundleError(path, "manifest.json: a mender bundle needs generative.text_encoder")
            from tokenizers import Tokenizer

            self.text = session(text["graph"])
            if text["tokenizer"] not in data.manifest["files"]:
                raise BundleError(path, f"{text['tokenizer']} is not listed in manifest.json")
            self.tokenizer = Tokenizer.from_file(str(path / text["tokenizer"]))
            self.tokenizer.enable_padding(pad_id=int(text["pad_id"]), pad_token=str(text["pad_token"]))
            self.tokenizer.enable_truncation(int(text["max_length"]))
        self.negative = self._negative_pattern(path, spec.get("preference_polarity"))
        self._smoke_test()

    @staticmethod
    def _negative_pattern(path: Path, polarity) -> re.Pattern | None:
        if polarity is None:
            return None
        if not isinstance(polarity, dict) or not isinstance(polarity.get("negative_pattern"), str):
            raise BundleError(path, "manifest.json: generative.preference_polarity.negative_pattern must be a string")
        try:
            return re.compile(polarity["negative_pattern"], re.IGNORECASE if "i" in str(polarity.get("flags", "")) else 0)
        except re.error as error:
            raise BundleError(path, f"manifest.json: generative.preference_polarity.negative_pattern: {error}") from None

    @staticmethod
    def _history(path: Path, graphs: dict, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
        if "history_indptr" not in graphs:
            return np.zeros(n_users + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
        indptr = np.load(path / graphs["history_indptr"], allow_pickle=False)
        indices = np.load(path / graphs["history_indices"], allow_pickle=False)
        if len(indptr) != n_users + 1 or indptr[-1] != len(indices) or (len(indices) and indices.max() >= n_items):
            raise BundleError(path, "the users' history arrays do not match the users and items of the bundle")
        return indptr.astype(np.int64), indices.astype(np.int64)

    def _smoke_test(self) -> None:
        items, _ = self.rank(np.zeros(0, dtype=np.int64), [], k=1)
        if len(items) != 1:
            raise BundleError(self.path, "the generative graphs return no item for an empty query")

    @property
    def reads_preferences(self) -> bool:
        return self.spec["variant"] == "mender"

    def user_history(self, user: int) -> np.ndarray:
        return self.history_indices[self.history_indptr[user]:self.history_indptr[user + 1]]

    def encode_preferences(self, sentences: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(sentences))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return self.text.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def rank(self, history: np.ndarray, preferences: Sequence[str], k: int, excluded: np.ndarray | None = None,
             beam_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items (best first) and their log-probabilities; `excluded` is a bool mask over items."""
        spec = self.spec
        width = spec["max_history"]
        recent = np.asarray(history, dtype=np.int64)[-width:]
        padded = np.full((1, width), -1, dtype=np.int64)
        if len(recent):
            padded[0, width - len(recent):] = recent
        feeds = {"history": padded}
        if self.reads_preferences:
            sentences = list(preferences)[: spec["max_preferences"]]
            if sentences:
                prefs = self.encode_preferences(sentences)[None].astype(np.float32)
                mask = np.ones((1, len(sentences)), dtype=bool)
            else:
                prefs, mask = np.zeros((1, 1, spec["text_dim"]), np.float32), np.zeros((1, 1), dtype=bool)
            feeds.update(prefs=prefs, pref_mask=mask)
            if self.negative is not None:
                feeds["pref_negative"] = np.array([[bool(self.negative.match(s)) for s in sentences]], dtype=bool) \
                    if sentences else np.zeros((1, 1), dtype=bool)
        memory, padding = self.encoder.run(None, feeds)

        def step(prefix: np.ndarray) -> np.ndarray:
            level = prefix.shape[1]
            tokens = np.concatenate([np.full((len(prefix), 1), spec["bos"], dtype=np.int64),
                                     prefix + self.offsets[:level]], axis=1)
            rows = np.zeros(len(prefix), dtype=np.int64)
            logits = self.decoder.run(None, {"memory": memory[rows], "padding": padding[rows], "tokens": tokens})[0]
            return logits[:, self.offsets[level]:self.offsets[level] + spec["level_sizes"][level]]

        beam = max(int(beam_size or spec["beam_size"]), k)
        return search_one(step, self.trie, beam, k, excluded)

