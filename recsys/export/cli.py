"""`python -m recsys export --ckpt PATH --out DIR [--index flat|hnsw|ivf|ivfpq]`: one command for every model.

`export_checkpoint` reads the checkpoint's model kind and hands it to the exporter of that kind:
a personality ranker to `recsys.export.personality` (adds the ranker graph for new users), a
TIGER/Mender retriever to `recsys.export.generative` (adds the generative graphs), any other
embedding recommender to `recsys.export.embeddings` (the two towers). The first two build on
`recsys.export.embeddings.write_bundle` through its `extra_files` and `manifest_sections`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from recsys.export.embeddings import INDEX_KINDS, TOLERANCE, IndexSpec, checkpoint_block, export_embeddings


def export_checkpoint(ckpt_path: Path | str, out_dir: Path | str, index_spec: IndexSpec | None = None,
                      model_name: str | None = None, bundle_version: str | None = None,
                      verify_sample: int | None = None, tolerance: float | None = None, overwrite: bool = False,
                      seed: int = 0, text_model: str | None = None) -> Path:
    """Export any prefengine checkpoint as a serving bundle, by its model kind.

    "personality": the embedding bundle of its exact score rows plus the ranker graph for new users
    (`recsys.export.personality`); "generative-tiger" / "generative-mender": plus the encoder,
    decoder-step (and text encoder) graphs (`recsys.export.generative`; `text_model`
    overrides the checkpoint's sentence encoder); "pluralistic": plus the taste prototypes for placing
    new users from comparisons (`recsys.export.pluralistic`); any other embedding recommender: the two towers.
    `verify_sample` and `tolerance` default to each exporter's own (None).
    """
    ckpt_path = Path(ckpt_path)
    kind = str(checkpoint_block(ckpt_path)["model_kind"])
    if kind == "personality":
        from recsys.export.personality import export_personality

        return export_personality(ckpt_path, out_dir, model_name, bundle_version, verify_sample or 256,
                                  tolerance or TOLERANCE, overwrite, seed, index_spec=index_spec)
    if kind == "pluralistic":
        from recsys.export.pluralistic import export_pluralistic

        return export_pluralistic(ckpt_path, out_dir, model_name, bundle_version, verify_sample or 256,
                                  tolerance or TOLERANCE, overwrite, seed, index_spec=index_spec)
    if kind.startswith("generative-"):
        from recsys.export.generative import GENERATIVE_TOLERANCE, export_generative

        return export_generative(ckpt_path, out_dir, verify_sample or 32, tolerance or GENERATIVE_TOLERANCE,
                                 overwrite, seed, text_model_name=text_model, model_name=model_name,
                                 bundle_version=bundle_version, index_spec=index_spec)
    return export_embeddings(ckpt_path, out_dir, index_spec, model_name, bundle_version, verify_sample or 256,
                              tolerance or TOLERANCE, overwrite, seed)


def _parser() -> argparse.ArgumentParser:
    defaults = IndexSpec()
    parser = argparse.ArgumentParser(prog="python -m recsys export",
                                     description="Turn a checkpoint into a serving bundle (ONNX towers + faiss index + "
                                                 "catalog; plus the ranker graph of a personality model, the generative "
                                                 "graphs of a TIGER/Mender model).")
    parser.add_argument("--ckpt", required=True, type=Path,
                        help="prefengine checkpoint: embedding recommender, personality ranker or TIGER/Mender")
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to create")
    parser.add_argument("--index", choices=INDEX_KINDS, default="flat",
                        help="faiss index: exact flat (default), HNSW, IVF-Flat or IVF-PQ")
    parser.add_argument("--hnsw-m", type=int, default=defaults.hnsw_m, help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=defaults.ef_construction, help="HNSW build breadth")
    parser.add_argument("--ef-search", type=int, default=defaults.ef_search, help="HNSW search breadth")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default about 4 sqrt(n_items))")
    parser.add_argument("--nprobe", type=int, default=defaults.nprobe, help="IVF lists visited per query")
    parser.add_argument("--pq-m", type=int, default=defaults.pq_m, help="IVF-PQ codes per vector (divides the dimension)")
    parser.add_argument("--pq-bits", type=int, default=defaults.pq_bits, help="IVF-PQ bits per code")
    parser.add_argument("--min-recall", type=float, default=defaults.min_recall,
                        help="fail when an approximate index's recall@10 vs exact is below this")
    parser.add_argument("--name", default=None, help="model name in the manifest (default: the model kind)")
    parser.add_argument("--version", dest="bundle_version", default=None,
                        help="bundle version (default: <name>-<UTC time>-<content hash>)")
    parser.add_argument("--verify-sample", type=int, default=None,
                        help="users checked for ONNX and faiss parity (default 256; 32 queries for TIGER/Mender)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest |ONNX - torch| accepted (default 1e-5; 1e-4 for TIGER/Mender)")
    parser.add_argument("--text-encoder", default=None,
                        help="Mender: sentence encoder to export (default: the one the checkpoint was trained with)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the verification sample")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # the embedding bundle writer's one-line summary ("wrote bundle ..."), as before the split into modules
    logging.getLogger("recsys.export.embeddings").setLevel(logging.INFO)
    spec = IndexSpec(kind=args.index, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                     ef_search=args.ef_search, nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m,
                     pq_bits=args.pq_bits, min_recall=args.min_recall)
    out = export_checkpoint(args.ckpt, args.out, spec, model_name=args.name, bundle_version=args.bundle_version,
                            verify_sample=args.verify_sample, tolerance=args.tolerance, overwrite=args.force,
                            seed=args.seed, text_model=args.text_encoder)
    manifest = json.loads((out / "manifest.json").read_text())
    summary = {"bundle": str(out), "bundle_version": manifest["bundle_version"], "model_kind": manifest["model"]["kind"],
               "n_items": manifest["n_items"], "n_users": manifest["n_users"],
               "index": {k: v for k, v in manifest["index"].items()}, "graphs": sorted(manifest["graphs"]),
               "verification": manifest["verification"]}
    if "generative" in manifest:
        summary["generative"] = {k: manifest["generative"][k] for k in ("variant", "level_sizes", "verification")}
    print(json.dumps(summary, indent=2))
    return 0



__all__ = ["export_checkpoint", "main"]
