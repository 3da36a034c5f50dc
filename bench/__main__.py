"""`python -m bench [name ...]`: run every bench/bench_*.py (or the named ones) in turn.

`python -m bench findings [--quick] [NAME ...]` re-runs the findings of docs/results.md instead
(`python -m bench findings --help`).

Each benchmark module has `main() -> None`, measures against a named peer or reference in the
same run, and writes bench/results/<name>.json through `bench.common.write_result`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv[:1] == ["findings"]:  # re-run the findings of docs/results.md (see bench/findings)
        from bench.findings import main as findings

        return findings(argv[1:])
    if argv[:1] == ["reproduce"]:  # our numbers on the public data beside the published ones (with options)
        importlib.import_module("bench.bench_reproduce").main(argv[1:])
        return 0
    names = argv or sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py")
                           if p.stem != "bench_reproduce")
    for name in names:
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.bench_{name}").main()
    return 0


raise SystemExit(main(sys.argv[1:]))
