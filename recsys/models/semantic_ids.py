"""Semantic IDs: each item becomes a short tuple of codes, similar items sharing prefixes (TIGER).

An RQ-VAE (Rajput et al., 2023; Zeghidour et al., 2021) encodes an item's text embedding with an
MLP into a latent vector z and quantizes it residually: level 1 picks the nearest code of its
codebook to z, level 2 the nearest code to what is left (z - e1), and so on for `n_levels`
levels; the decoder reconstructs the embedding from e1 + e2 + ... Loss per batch:

    ||x - decode(z_q)||^2 + sum_l ( ||sg(r_l) - e_l||^2 + commitment * ||r_l - sg(e_l)||^2 )

with straight-through gradients (z_q = z + sg(sum e_l - z)). Codebooks start from k-means of
the residuals of the untrained encoder, level by level. Items whose codes coincide get one more
token, their rank within the group (0, 1, ...), so every item's ID is unique.

IDs can also come from a file (`SemanticIds.read`): JSON {item id: [c1, c2, c3]} (the collision
token is then added) or {item id: [c1, c2, c3, c4]} (taken as given; must be unique).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from recsys.errors import DataFormatError, UserInputError

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# the IDs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SemanticIds:
    """Codes per item (row i is item i; the last column separates collisions) and each level's vocabulary size."""

    codes: np.ndarray
    level_sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes, dtype=np.int64)
        sizes = tuple(int(s) for s in self.level_sizes)
        if codes.ndim != 2 or codes.shape[1] != len(sizes) or codes.shape[1] < 1:
            raise UserInputError(f"semantic IDs must be (n_items, {len(sizes)}) codes, got shape {codes.shape}")
        if len(codes) and ((codes < 0).any() or (codes >= np.asarray(sizes)[None, :]).any()):
            raise UserInputError(f"semantic ID codes must lie in 0..level_size-1 (level sizes {sizes})")
        if len(np.unique(codes, axis=0)) != len(codes):
            raise UserInputError("semantic IDs are not unique: two items share all their codes")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "level_sizes", sizes)

    @property
    def n_items(self) -> int:
        return len(self.codes)

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    @classmethod
    def from_codes(cls, codes: np.ndarray, codebook_sizes: Sequence[int] | None = None) -> SemanticIds:
        """Add the collision token to (n_items, L) codes: each item's rank among items with the same codes."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2:
            raise UserInputError(f"codes must be a (n_items, levels) matrix, got shape {codes.shape}")
        _, group, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
        group = group.reshape(-1)
        order = np.lexsort((np.arange(len(codes)), group))  # by group, then item id
        rank = np.empty(len(codes), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank[order] = np.arange(len(codes)) - np.repeat(starts, counts)
        sizes = list(codebook_sizes) if codebook_sizes is not None else [int(c.max()) + 1 if len(c) else 1
                                                                          for c in codes.T]
        return cls(np.column_stack([codes, rank]), (*sizes, int(counts.max()) if len(counts) else 1))

    def collision_stats(self) -> dict[str, float]:
        """Share of items that needed a nonzero collision token, and the largest group of equal prefixes."""
        prefix = self.codes[:, :-1]
        if not len(prefix):
            return {"collision_rate": 0.0, "max_group": 0.0}
        _, counts = np.unique(prefix, axis=0, return_counts=True)
        return {"collision_rate": float(1 - len(counts) / len(prefix)), "max_group": float(counts.max())}

    def write(self, path: Path | str, item_ids: Sequence[str]) -> Path:
        path = Path(path)
        if len(item_ids) != self.n_items:
            raise UserInputError(f"{len(item_ids)} item ids for {self.n_items} semantic IDs")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({str(i): row for i, row in zip(item_ids, self.codes.tolist())}))
        return path

    @classmethod
    def read(cls, path: Path | str, item_ids: Sequence[str]) -> SemanticIds:
        """IDs for `item_ids` (in that order) from a JSON file {item id: [codes...]}; every item must be there."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserInputError(f"{path}: semantic ID file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataFormatError(path, f"not valid JSON ({error})") from None
        if not isinstance(payload, dict) or not payload:
            raise DataFormatError(path, "must hold a non-empty JSON object {item id: [code, ...]}")
        lengths = set()
        for item, row in payload.items():
            if not isinstance(row, list) or not row or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                                                                for c in row):
                raise DataFormatError(path, "codes must be a non-empty list of non-negative integers", field=str(item))
            lengths.add(len(row))
        if len(lengths) != 1:
            raise DataFormatError(path, f"every item needs the same number of codes, found lengths {sorted(lengths)}")
        missing = [str(i) for i in item_ids if str(i) not in payload]
        if missing:
            raise DataFormatError(path, f"{len(missing)} items of the data have no semantic ID (first: {missing[:3]})")
        extra = len(payload) - len(set(map(str, item_ids)) & set(payload))
        if extra:
            log.info("%s: %d semantic IDs belong to items not in the data; ignored", path, extra)
        codes = np.array([payload[str(i)] for i in item_ids], dtype=np.int64)
        if codes.shape[1] == 3:
            return cls.from_codes(codes)
        if len(np.unique(codes, axis=0)) != len(codes):
            raise DataFormatError(path, "the IDs are not unique; give 3 codes per item to have a collision "
                                        "token added, or make the last code separate items")
        return cls(codes, tuple(int(c.max()) + 1 for c in codes.T))


def deterministic_setting(accelerator: str) -> bool | str:
    """Lightning's `deterministic`: strict on CPU; on a GPU "warn", since some CUDA kernels (embedding
    backward, scatter) have no deterministic version and strict mode would stop the run."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    return True if on_cpu else "warn"


# ---------------------------------------------------------------------------------------------
# the RQ-VAE
# ---------------------------------------------------------------------------------------------
def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAE(pl.LightningModule):
    """Residual-quantized autoencoder of item embeddings; `codes(x)` gives each item's semantic ID."""

    def __init__(self, input_dim: int = 384, hidden_dims: Sequence[int] = (512, 256, 128), latent_dim: int = 32,
                 n_levels: int = 3, codebook_size: int = 256, commitment: float = 0.25, lr: float = 1e-3,
                 weight_decay: float = 0.0, kmeans_init: bool = True, seed: int = 0):
        super().__init__()
        if min(input_dim, latent_dim, n_levels, codebook_size) < 1 or any(h < 1 for h in hidden_dims):
            raise UserInputError("rqvae: input_dim, hidden_dims, latent_dim, n_levels and codebook_size must be >= 1")
        if commitment < 0 or lr <= 0:
            raise UserInputError("rqvae: commitment must be >= 0 and lr > 0")
        self.save_hyperparameters()
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(list(hidden_dims)), input_dim])
        generator = torch.Generator().manual_seed(seed)
        self.codebooks = nn.Parameter(torch.randn(n_levels, codebook_size, latent_dim, generator=generator) * 0.1)
        # Inputs are centred and scaled to unit variance per coordinate on average (`fit_input_scaling`):
        # sentence embeddings share a large common direction that would otherwise dominate level 1.
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_scale", torch.ones(()))

    @torch.no_grad()
    def fit_input_scaling(self, x: torch.Tensor | np.ndarray) -> None:
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        self.input_mean.copy_(x.mean(0))
        self.input_scale.copy_((x - self.input_mean).pow(2).mean().sqrt().clamp_min(1e-8))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_scale

    # -- quantization ---------------------------------------------------------------------------
    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_q with straight-through gradient, codes (B, L), codebook loss, commitment loss)."""
        residual, total = z, torch.zeros_like(z)
        codes, codebook_loss, commit_loss = [], z.new_zeros(()), z.new_zeros(())
        for level in range(self.hparams.n_levels):
            book = self.codebooks[level]
            distance = (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(1)[None, :])
            code = distance.argmin(dim=1)
            chosen = book[code]
            codebook_loss = codebook_loss + (chosen - residual.detach()).pow(2).sum(1).mean()
            commit_loss = commit_loss + (residual - chosen.detach()).pow(2).sum(1).mean()
            total = total + chosen
            residual = residual - chosen.detach()  # later levels train their own codebooks, not this one
            codes.append(code)
        z_q = z + (total - z).detach()
        return z_q, torch.stack(codes, dim=1), codebook_loss, commit_loss

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses on the normalized input; the reconstruction loss is the mean squared error per coordinate
        (1.0 = no better than predicting the mean embedding)."""
        x = self.normalize(x)
        z = self.encoder(x)
        z_q, codes, codebook_loss, commit_loss = self.quantize(z)
        reconstruction = self.decoder(z_q)
        recon_loss = (reconstruction - x).pow(2).mean()
        loss = recon_loss + codebook_loss + self.hparams.commitment * commit_loss
        return {"loss": loss, "reconstruction": recon_loss, "codebook": codebook_loss, "commitment": commit_loss,
                "codes": codes}

    @torch.no_grad()
    def codes(self, x: torch.Tensor | np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """(n, n_levels) int64 codes, without the collision token."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        was = self.training
        self.eval()
        out = [self.quantize(self.encoder(self.normalize(x[s:s + batch_size])))[1] for s in range(0, len(x), batch_size)]
        self.train(was)
        return torch.cat(out).numpy().astype(np.int64)

    @torch.no_grad()
    def initialize_codebooks(self, x: torch.Tensor | np.ndarray) -> None:
        """k-means of each level's residuals (of the current encoder) as that level's codebook."""
        from sklearn.cluster import KMeans

        x = self.normalize(torch.as_tensor(np.asarray(x, dtype=np.float32)))
        residual = self.encoder(x).numpy().astype(np.float64)
        size = self.hparams.codebook_size
        rng = np.random.default_rng(self.hparams.seed)
        for level in range(self.hparams.n_levels):
            clusters = min(size, len(np.unique(residual.round(8), axis=0)))
            kmeans = KMeans(n_clusters=clusters, n_init=1, max_iter=100, random_state=self.hparams.seed + level)
            labels = kmeans.fit_predict(residual)
            centers = kmeans.cluster_centers_
            if clusters < size:  # fewer distinct points than codes: the spare codes start near random points
                extra = residual[rng.integers(0, len(residual), size - clusters)]
                centers = np.vstack([centers, extra + rng.normal(0, 1e-3, extra.shape)])
            self.codebooks.data[level] = torch.as_tensor(centers, dtype=torch.float32)
            residual = residual - centers[labels]

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        (x,) = batch
        out = self(x)
        self.log_dict({f"rqvae/{k}": out[k] for k in ("loss", "reconstruction", "commitment")},
                      prog_bar=True, on_step=False, on_epoch=True, batch_size=len(x))
        return out["loss"]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @torch.no_grad()
    def report(self, x: np.ndarray) -> dict[str, object]:
        """Reconstruction loss over `x`, codebook usage per level and the collision rate of the 3 codes."""
        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32))
        was = self.training
        self.eval()
        out = self(tensor)
        self.train(was)
        codes = out["codes"].numpy()
        size = self.hparams.codebook_size
        ids = SemanticIds.from_codes(codes, [size] * self.hparams.n_levels)
        return {"reconstruction_loss": float(out["reconstruction"]),
                "codebook_usage": [float(len(np.unique(c)) / size) for c in codes.T],
                **ids.collision_stats(), "n_items": len(codes)}


def train_rqvae(embeddings: np.ndarray, max_epochs: int = 200, batch_size: int = 256, seed: int = 0,
                progress: bool = True, accelerator: str = "auto", devices: int | str = 1,
                **hyperparameters) -> tuple[RQVAE, SemanticIds, dict[str, object]]:
    """Fit an RQ-VAE on item embeddings; returns the model, every item's semantic ID and the report.
    `accelerator`/`devices`: Lightning's (cpu, gpu, auto); the codes are computed on the CPU afterwards."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise UserInputError(f"RQ-VAE needs a (n_items >= 2, dim) embedding matrix, got {embeddings.shape}")
    if max_epochs < 1 or batch_size < 1:
        raise UserInputError("rqvae: max_epochs and batch_size must be >= 1")
    pl.seed_everything(seed, workers=True, verbose=False)
    model = RQVAE(input_dim=embeddings.shape[1], seed=seed, **hyperparameters)
    model.fit_input_scaling(embeddings)
    if model.hparams.kmeans_init:
        model.initialize_codebooks(embeddings)
    loader = DataLoader(TensorDataset(torch.from_numpy(embeddings)), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator=accelerator, devices=devices, logger=False,
                         enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False,
                         deterministic=deterministic_setting(accelerator))
    trainer.fit(model, loader)
    model = model.cpu()
    report = model.report(embeddings)
    ids = SemanticIds.from_codes(model.codes(embeddings), [model.hparams.codebook_size] * model.hparams.n_levels)
    log.info("RQ-VAE: reconstruction %.4f, codebook usage %s, collision rate %.3f (largest group %d)",
             report["reconstruction_loss"], [round(u, 3) for u in report["codebook_usage"]],
             report["collision_rate"], report["max_group"])
    return model, ids, report
