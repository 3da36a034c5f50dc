"""`python -m bench [name ...]`: run every bench/bench_*.py (or the named ones) in turn.

Each benchmark module has `main() -> None`, measures against a named peer or reference in the
same run, and writes bench/results/<name>.json through `bench.common.write_result`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "reproduce":  # the one benchmark with options: python -m bench reproduce --quick
        importlib.import_module("bench.bench_reproduce").main(argv[1:])
        return 0
    names = argv or sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py")
                           if p.stem != "bench_reproduce")
    for name in names:
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bench.bench_{name}").main()
    return 0


raise SystemExit(main(sys.argv[1:]))
