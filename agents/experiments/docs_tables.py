"""Print the markdown tables that docs/results.md quotes, from the JSON results under docs/results/.

    python -m agents.experiments.docs_tables docs/results/*.json

Each file names its experiment ("experiment" key); the table is rendered by that experiment's module, the
same function that writes the experiment's own report, so the docs and the reports cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(doc: dict) -> str:
    kind = doc.get("experiment")
    if kind == "human-likelihood":
        from agents.experiments.human_likelihood import render_markdown

        return render_markdown(doc)
    if kind == "regret-vs-return":
        from agents.experiments.regret_vs_return import render_docs as render_regret

        return render_regret(doc)
    if kind == "rlhg":
        from agents.experiments.rlhg import render_docs

        return render_docs(doc)
    if kind == "pluralistic":
        from agents.experiments.pluralistic import render_docs as render_pluralistic

        return render_pluralistic(doc)
    raise ValueError(f"unknown experiment {kind!r}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    for path in map(Path, argv):
        print(f"<!-- generated from {path} -->")
        print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
