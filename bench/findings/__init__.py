"""`python -m bench findings`: re-run the findings of docs/results.md and render its tables from their JSON.

    python -m bench findings --list                  # every finding, its command and full-scale time
    python -m bench findings regret_vs_return        # re-run one at its documented scale, write
                                                     # docs/results/regret_vs_return.json, re-render the doc
    python -m bench findings --quick --out DIR       # every finding at a small size (one seed), in minutes
    python -m bench findings --render                # rewrite docs/results.md's tables from docs/results/*.json
    python -m bench findings --check                 # exit 1 if a table differs from what its JSON renders
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.findings import core, render
from bench.findings.core import NAMES, load


def shown(path: Path) -> str:
    """A path as a user types it: relative to the repository when inside it."""
    return str(path.relative_to(core.REPO)) if path.is_relative_to(core.REPO) else str(path)


def list_findings() -> str:
    lines = []
    for name in NAMES:
        finding = load(name)
        lines += [f"{name}: {finding.TITLE}", f"  command: {finding.COMMAND}",
                  f"  full scale: about {finding.FULL_MINUTES} min on 2 cores; holds when {finding.RULE}",
                  f"  --quick checks: {finding.QUICK_CHECK}", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench findings", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"findings to run (default: all): {', '.join(NAMES)}")
    parser.add_argument("--quick", action="store_true", help="small worlds, one seed, few epochs (needs --out)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where the JSON goes (default {core.RESULTS.relative_to(core.REPO)}, full runs only)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where each experiment writes its own outputs (default artifacts/findings)")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/results.md's tables from the JSON")
    parser.add_argument("--check", action="store_true", help="only check docs/results.md's tables against the JSON")
    parser.add_argument("--list", action="store_true", help="list the findings, their commands and times")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        parser.error(f"unknown finding(s) {', '.join(unknown)}; choose from: {', '.join(NAMES)}")
    if args.list:
        print(list_findings())
        return 0
    if args.render or args.check:
        stale = render.stale_blocks(core.RESULTS, render.DOC)
        if args.check:
            for block in stale:
                print(f"{shown(render.DOC)}: table {block} differs from what its JSON renders "
                      "(python -m bench findings --render)", file=sys.stderr)
            return 1 if stale else 0
        render.render_file(core.RESULTS, render.DOC)
        print(f"rendered {shown(render.DOC)} ({len(stale)} table(s) changed)")
        return 0
    if args.quick and args.out is None:
        parser.error("--quick writes to --out DIR: quick numbers never replace the documented ones in docs/results")
    out = args.out or core.RESULTS
    workdir = args.workdir or (out / "work" if args.quick else core.REPO / "artifacts" / "findings")
    for name in args.names or NAMES:
        finding = load(name)
        scale = "quick" if args.quick else f"full scale, about {finding.FULL_MINUTES} min on 2 cores"
        print(f"== finding {name} ({scale}): {finding.COMMAND}", flush=True)
        started = time.perf_counter()
        payload = core.regenerate(finding, workdir / name, args.quick)
        path = core.write(payload, out)
        print(f"== {name}: {'holds' if payload['holds'] else 'does NOT hold'} "
              f"({time.perf_counter() - started:.0f} s); wrote {path}", flush=True)
    if out.resolve() == core.RESULTS.resolve():
        render.render_file(core.RESULTS, render.DOC)
        print(f"rendered {shown(render.DOC)}")
    return 0
