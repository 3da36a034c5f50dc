"""`python -m recsys evaluate`: score recommendation lists from any system against held-out truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.interactions import IdVocab, InteractionData
from recsys.data.parsing import Source, interaction_columns, parse_ids, require_columns
from recsys.data.tables import read_table_with_source
from recsys.errors import UserInputError

log = logging.getLogger(__name__)

DESCRIPTION = """\
Score top-K recommendation lists produced by any system with the same protocol as the
built-in evaluator, so outside systems compare on equal terms.

Files are CSV (.csv), TSV (.tsv) or Parquet (.parquet), with a header row; ids are read as text.

  --recs    columns: user, item, and rank (smaller is better, integers >= 0) or score
            (larger is better; equal scores are ordered by item id). Each user's list must
            not repeat an item or a rank.
              user,item,rank
              u1,i7,1
              u1,i3,2
  --truth   held-out interactions: user, item [, label] [, split]. Rows with label 1 (or every
            row when there is no label column) are relevant. With a split column each value is
            evaluated as its own split (e.g. test and clean); otherwise the split is --split.
  --train   interactions the users already had: user, item [, ...]. Their items are removed
            from the lists (full ranking never shows them) and their counts are the item
            popularity for avg_popularity. Repeat --train to mask more files (e.g. validation).

One id vocabulary is built over all files. Users of the truth with at least one relevant item
count; one without a list counts with an empty list. Writes metrics.json (flat
"<split>/<metric>@<k>" keys), evaluation.json (counts and protocol), report.md and
metric_vs_k.png to --out.
"""


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserInputError(f"--k must be comma-separated positive integers like 10,20, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise UserInputError(f"--k must be comma-separated positive integers like 10,20, got {text!r}")
    return ks


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys evaluate", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recs", required=True, type=Path, help="recommendation lists (user, item, rank|score)")
    parser.add_argument("--truth", required=True, type=Path, help="held-out interactions (user, item[, label][, split])")
    parser.add_argument("--train", type=Path, action="append", default=[],
                        help="interactions to mask (user, item); repeatable")
    parser.add_argument("--k", default="10,20", help="cut-offs, comma-separated (default 10,20)")
    parser.add_argument("--split", default="test", help="split name when --truth has no split column (default test)")
    parser.add_argument("--out", required=True, type=Path, help="directory for metrics.json, report.md, plots")
    return parser


def _read(path: Path) -> tuple[pd.DataFrame, Source]:
    frame, source = read_table_with_source(path)
    require_columns(frame, ["user", "item"], source)
    frame = frame.copy()
    for column in ("user", "item"):
        frame[column] = parse_ids(frame[column], source, column)
    return frame, source


def _interactions(frame: pd.DataFrame, source: Source, vocab: IdVocab) -> InteractionData:
    columns = interaction_columns(frame, source, timestamp_required=False)
    return InteractionData(user=vocab.encode_users(columns["user"]), item=vocab.encode_items(columns["item"]),
                           timestamp=columns["timestamp"], vocab=vocab, label=columns["label"])


def _truth_splits(frame: pd.DataFrame, source: Source, vocab: IdVocab, default: str) -> dict[str, InteractionData]:
    data = _interactions(frame, source, vocab)
    if "split" not in frame.columns:
        return {default: data}
    names = parse_ids(frame["split"], source, "split").to_numpy()
    return {name: data.subset(names == name) for name in pd.unique(names)}


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    # Loaded after parsing, so --help answers without importing torch and matplotlib.
    from recsys.evaluation.evaluator import evaluate_lists
    from recsys.evaluation.report import markdown_table, write_report

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ks = _parse_ks(args.k)
    recs, recs_source = _read(args.recs)
    truth_frame, truth_source = _read(args.truth)
    train = [_read(path) for path in args.train]
    frames = [recs, truth_frame, *(f for f, _ in train)]
    vocab = IdVocab.from_ids(np.concatenate([f["user"].to_numpy(dtype=str) for f in frames]),
                             np.concatenate([f["item"].to_numpy(dtype=str) for f in frames]))
    truth = _truth_splits(truth_frame, truth_source, vocab, args.split)
    exclude = [_interactions(frame, source, vocab) for frame, source in train]
    result = evaluate_lists(recs, truth, exclude=exclude, ks=ks, where=recs_source)
    paths = write_report(result, args.out, title=f"Evaluation of {args.recs.name}")
    print(markdown_table(result), end="")
    for split, counts in result.counts.items():
        print(f"{split}: " + ", ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in counts.items()))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0

