"""`python -m bench reproduce`: our models on the shared public data, beside the published numbers.

Rows (each trains with the project's own command in a fresh interpreter, and is scored on the test split):

- BPR on MovieLens-100k (RecBole's atomic file, RecBole's protocol), `configs/recsys/bpr_movielens.yaml`,
  with the default compiled engine, and `configs/recsys/bpr_movielens_autograd.yaml` with the autograd engine;
  published: RecBole 1.2.1's BPR;
- SASRec on amazon-toys and amazon-sports (`configs/recsys/sasrec.yaml`);
- TIGER at the paper's size on both (`configs/recsys/tiger_paper.yaml`), semantic IDs from attribute sets
  and from SVD factors, and on both also at a size two CPU cores train in about half an hour (toys) or an hour (sports)
  (2 + 2 layers, ff 512, 5 epochs); published: the TIGER paper and the public re-implementation. Leave-one-out by time,
  full ranking, Recall@K / NDCG@K at K = 5, 10 (hit rate = recall with one target).

Writes bench/results/reproduce.json (rows are merged into what is there, so rows can be run separately) and
the table in docs/benchmarks.md between its `reproduce` markers. Options:

  --only ROW[,ROW]     run these rows (names as in the table); default all
  --max-minutes M      wall-clock budget per training run (the best validation epoch so far is kept)
  --accelerator A      cpu | gpu | auto (default cpu)
  --reuse              rows whose run directory already holds metrics are read, not retrained
  --table-only         rewrite the docs table from reproduce.json
  --quick              seconds-long: slices of the files and tiny models, written under artifacts/ only
  --data DIR           the shared data folder (default ../shared/data beside the repository)
  --note TEXT          a remark shown in the table beside the rows run now (e.g. how their budget ended)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from recsys.evaluation.doc_blocks import replace_block

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data"
RESULTS = ROOT / "bench" / "results" / "reproduce.json"
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- reproduce:start -->", "<!-- reproduce:end -->"

# Published rows (../shared/data/README.md). Keys: metric -> value; "wall_s" where the source gives one.
PUBLISHED = {
    "ml-100k": [("RecBole 1.2.1 BPR (same file, split and evaluator rules; 2 cores)",
                 {"recall@10": 0.2466, "ndcg@10": 0.2928, "wall_s": 25.0})],
    "amazon-sports": [("TIGER, Rajput et al. 2023 (Sentence-T5 text IDs)",
                       {"recall@5": 0.0264, "ndcg@5": 0.0181, "recall@10": 0.0400, "ndcg@10": 0.0225}),
                      ("TIGER, public re-implementation (LLaMA-7B item embeddings)",
                       {"recall@5": 0.0232, "ndcg@5": 0.0148, "recall@10": 0.0368, "ndcg@10": 0.0192})],
    "amazon-toys": [("TIGER, Rajput et al. 2023 (Sentence-T5 text IDs)",
                     {"recall@5": 0.0521, "ndcg@5": 0.0371, "recall@10": 0.0712, "ndcg@10": 0.0432}),
                    ("TIGER, public re-implementation (LLaMA-7B item embeddings)",
                     {"recall@5": 0.0349, "ndcg@5": 0.0236, "recall@10": 0.0522, "ndcg@10": 0.0292})],
}
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "fit" (LightningCLI) or "discern"
    config: str
    data: str  # dataset folder under the data directory (or a file inside it)
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    note: str = ""
    dataset: str = field(default="")

    @property
    def data_name(self) -> str:
        return self.dataset or self.data.split("/")[0]


TINY_TIGER = ("--model.d_model", "32", "--model.ff_dim", "64", "--model.encoder_layers", "1",
              "--model.decoder_layers", "1", "--model.n_heads", "2", "--rqvae.max_epochs", "2",
              "--rqvae.codebook_size", "16", "--rqvae.hidden_dims", "[32]", "--train.max_epochs", "1")
# TIGER sized for two CPU cores (about 35 minutes on amazon-toys): the paper's config with 2 + 2 layers,
# ff 512 and 5 epochs, as the S-DPO comparison in docs/results.md trains it.
CPU_TIGER = ("--model.encoder_layers", "2", "--model.decoder_layers", "2", "--model.ff_dim", "512",
             "--model.warmup_steps", "300", "--train.max_epochs", "5")
ROWS = [
    Row("bpr-ml100k", "fit", "configs/recsys/bpr_movielens.yaml", "ml-100k/ml-100k.inter",
        ("--data.format", "recbole"), ("--trainer.max_epochs", "2"), "compiled engine"),
    Row("bpr-autograd-ml100k", "fit", "configs/recsys/bpr_movielens_autograd.yaml", "ml-100k/ml-100k.inter",
        ("--data.format", "recbole"), ("--trainer.max_epochs", "2"), "autograd engine, Adam"),
    Row("sasrec-toys", "fit", "configs/recsys/sasrec.yaml", "amazon-toys", (), ("--trainer.max_epochs", "2")),
    Row("sasrec-sports", "fit", "configs/recsys/sasrec.yaml", "amazon-sports", (), ("--trainer.max_epochs", "2")),
    Row("tiger-toys-attributes", "discern", "configs/recsys/tiger_paper.yaml", "amazon-toys",
        ("--data.id_source", "attributes"), TINY_TIGER, "IDs: attribute sets"),
    Row("tiger-toys-svd", "discern", "configs/recsys/tiger_paper.yaml", "amazon-toys",
        ("--data.id_source", "svd"), TINY_TIGER, "IDs: SVD factors"),
    Row("tiger-cpu-toys-attributes", "discern", "configs/recsys/tiger_paper.yaml", "amazon-toys",
        ("--data.id_source", "attributes", *CPU_TIGER), TINY_TIGER, "IDs: attribute sets; 2+2 layers, ff 512, 5 epochs"),
    Row("tiger-cpu-toys-svd", "discern", "configs/recsys/tiger_paper.yaml", "amazon-toys",
        ("--data.id_source", "svd", *CPU_TIGER), TINY_TIGER, "IDs: SVD factors; 2+2 layers, ff 512, 5 epochs"),
    Row("tiger-cpu-sports-attributes", "discern", "configs/recsys/tiger_paper.yaml", "amazon-sports",
        ("--data.id_source", "attributes", *CPU_TIGER), TINY_TIGER, "IDs: attribute sets; 2+2 layers, ff 512, 5 epochs"),
    Row("tiger-cpu-sports-svd", "discern", "configs/recsys/tiger_paper.yaml", "amazon-sports",
        ("--data.id_source", "svd", *CPU_TIGER), TINY_TIGER, "IDs: SVD factors; 2+2 layers, ff 512, 5 epochs"),
    Row("tiger-sports-attributes", "discern", "configs/recsys/tiger_paper.yaml", "amazon-sports",
        ("--data.id_source", "attributes"), TINY_TIGER, "IDs: attribute sets"),
    Row("tiger-sports-svd", "discern", "configs/recsys/tiger_paper.yaml", "amazon-sports",
        ("--data.id_source", "svd"), TINY_TIGER, "IDs: SVD factors"),
]


def quick_data(data: Path, out: Path) -> Path:
    """The first lines of each file (users keep their whole sequences), for `--quick`."""
    import json as _json

    out.mkdir(parents=True, exist_ok=True)
    for name in ("amazon-toys", "amazon-sports"):
        source = data / name
        if not (source / "sequences.txt").is_file():
            continue
        (out / name).mkdir(exist_ok=True)
        lines = (source / "sequences.txt").read_text().splitlines()[:150]
        (out / name / "sequences.txt").write_text("\n".join(lines) + "\n")
        attributes = _json.loads((source / "item2attributes.json").read_text())
        items = {t for line in lines for t in line.split()[1:]}
        (out / name / "item2attributes.json").write_text(_json.dumps({i: attributes[i] for i in items if i in attributes}))
    inter = data / "ml-100k" / "ml-100k.inter"
    if inter.is_file():
        (out / "ml-100k").mkdir(exist_ok=True)
        lines = inter.read_text().splitlines()
        (out / "ml-100k" / "ml-100k.inter").write_text("\n".join(lines[:6001]) + "\n")
    return out


def command(row: Row, data: Path, run_dir: Path, options) -> list[str]:
    path = str(data / row.data)
    budget = options.max_minutes
    if row.kind == "fit":
        argv = ["fit", "-c", row.config, "--data.path", path, "--trainer.default_root_dir", str(run_dir),
                "--trainer.enable_progress_bar", "false", "--trainer.accelerator", options.accelerator, *row.args]
        if budget:
            minutes = int(budget)
            argv += ["--trainer.max_time", f"00:00:{minutes:02d}:{int(round((budget - minutes) * 60)):02d}"]
    else:
        argv = ["discern", "-c", row.config, "--data.sequences", path, "--out", str(run_dir),
                "--train.progress", "false", "--train.accelerator", options.accelerator, "--threads",
                str(options.threads), *row.args]
        if budget:
            argv += ["--train.max_minutes", str(budget)]
    return argv + list(row.quick if options.quick else ())


def read_metrics(row: Row, run_dir: Path) -> dict[str, float] | None:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    if row.kind == "discern":
        found = payload.get("tiger", {}).get("recommendation", {})
        return {m: float(found[m]) for m in METRICS if m in found}
    return {m: float(payload[f"test/{m}"]) for m in (*METRICS, "recall@20", "ndcg@20") if f"test/{m}" in payload}


def semantic_id_details(run_dir: Path) -> dict:
    path = run_dir / "details.json"
    if not path.is_file():
        return {}
    ids = json.loads(path.read_text()).get("semantic_ids", {})
    return {k: ids[k] for k in ("source", "collision_rate", "max_group") if k in ids}


def shown_command(argv: list[str]) -> str:
    """The command as a user at the repository root types it: no machine-specific absolute paths."""
    return "python -m recsys " + " ".join(argv).replace(f"{ROOT}/", "")


def run_row(row: Row, data: Path, runs: Path, options) -> dict:
    run_dir = runs / row.name
    if options.reuse and read_metrics(row, run_dir):
        metrics, wall, code = read_metrics(row, run_dir), None, 0
        print(f"== {row.name}: reusing {run_dir}/metrics.json")
    else:
        argv = command(row, data, run_dir, options)
        print(f"== {row.name}: python -m recsys {' '.join(argv)}", flush=True)
        # a fresh interpreter, as a user runs it: the wall includes imports and exit, like RecBole's 25 s
        started = time.perf_counter()
        code = subprocess.run([sys.executable, "-m", "recsys", *argv]).returncode
        wall = round(time.perf_counter() - started, 1)
        metrics = read_metrics(row, run_dir) if code == 0 else None
    result = {"row": row.name, "dataset": row.data_name, "model": row.name.split("-")[0], "note": row.note,
              "command": shown_command(command(row, data, run_dir, options)),
              "budget_minutes": options.max_minutes, "accelerator": options.accelerator, "quick": options.quick,
              "exit": code, "wall_s": wall, "metrics": metrics, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                           time.gmtime())}
    if row.kind == "discern":
        result["semantic_ids"] = semantic_id_details(run_dir)
    return result


def _cell(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) and value < 1 else f"{value:g}"


def table(rows: dict[str, dict]) -> str:
    """Markdown: per data set, the published rows, then ours."""
    lines = ["| data | system | R@5 | N@5 | R@10 | N@10 | wall | budget / notes |", "|---|---|---|---|---|---|---|---|"]
    for dataset in ("ml-100k", "amazon-toys", "amazon-sports"):
        for name, values in PUBLISHED[dataset]:
            lines.append(f"| {dataset} | {name} | " + " | ".join(_cell(values.get(m)) for m in METRICS) +
                         f" | {_cell(values.get('wall_s')) + ' s' if values.get('wall_s') else ''} | published |")
        for key in (r.name for r in ROWS):
            result = rows.get(key)
            if result is None or result["dataset"] != dataset:
                continue
            metrics = result.get("metrics") or {}
            notes = [result.get("note") or ""]
            if result.get("budget_minutes"):
                notes.append(f"{result['budget_minutes']} min budget")
            if result.get("semantic_ids", {}).get("collision_rate") is not None:
                notes.append(f"collisions {result['semantic_ids']['collision_rate']:.2f}")
            if result.get("extra"):
                notes.append(result["extra"])
            if not metrics:
                notes.append("did not finish")
            wall = f"{result['wall_s']:.0f} s" if result.get("wall_s") else ""
            lines.append(f"| {dataset} | ours: {key} | " + " | ".join(_cell(metrics.get(m)) for m in METRICS) +
                         f" | {wall} | {'; '.join(n for n in notes if n)} ({result.get('accelerator', 'cpu')}) |")
    return "\n".join(lines)


def write_docs(rows: dict[str, dict], path: Path = DOCS) -> None:
    text = path.read_text()
    body = f"\n{table(rows)}\n"
    updated = replace_block(text, START, END, body)
    path.write_text(updated if updated is not None else text.rstrip("\n") + f"\n\n{START}{body}{END}\n")
    print(f"wrote the table in {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench reproduce", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[14:]))
    parser.add_argument("--only", default=None)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--note", default=None, help="a remark stored with the rows run now (e.g. the budget)")
    options = parser.parse_args(argv or [])
    results_path = ROOT / "artifacts" / "reproduce-quick" / "reproduce.json" if options.quick else RESULTS
    stored = json.loads(results_path.read_text()).get("rows", {}) if results_path.is_file() else {}
    if options.table_only:
        write_docs(stored)
        return
    names = [r.name for r in ROWS] if options.only is None else options.only.split(",")
    unknown = sorted(set(names) - {r.name for r in ROWS})
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; rows: {', '.join(r.name for r in ROWS)}")
    data = options.data
    runs = ROOT / "artifacts" / ("reproduce-quick" if options.quick else "reproduce")
    if options.quick:
        data = quick_data(options.data, runs / "data")
    for row in (r for r in ROWS if r.name in names):
        if not (data / row.data).exists():
            print(f"== {row.name}: skipped, {data / row.data} is absent (see ../shared/data/README.md)")
            continue
        stored[row.name] = run_row(row, data, runs, options)
        if options.note:
            stored[row.name]["extra"] = options.note
        print(json.dumps({k: stored[row.name][k] for k in ("row", "wall_s", "metrics")}), flush=True)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        # Re-read before writing: another `--only` run may have added rows meanwhile.
        latest = json.loads(results_path.read_text()).get("rows", {}) if results_path.is_file() else {}
        stored = {**latest, row.name: stored[row.name]}
        results_path.write_text(json.dumps({"benchmark": "reproduce", "rows": stored}, indent=2) + "\n")
    print(f"wrote {results_path}")
    if not options.quick:
        write_docs(stored)
    else:
        print(table(stored))
