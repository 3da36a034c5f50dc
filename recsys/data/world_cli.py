"""`python -m recsys world`: generate the preference world and write it as a prefengine data directory."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import MISSING, fields

from recsys.data.world import WorldConfig, generate_world
from recsys.errors import UserInputError

# Short spellings for the options people set most; every WorldConfig field also has its own long name.
ALIASES = {"n_users": "--users", "n_items": "--items", "n_categories": "--categories", "n_aspects": "--aspects"}

EPILOG = """\
The directory holds interactions, items and users (read back with recsys.data.native.read_native)
plus the truth tables: truth (each observed row with is_false_positive and true_utility),
missed (liked, exposed items never observed), clicks (every impression, click 0/1), reviews,
review_sentences (aspect and sentiment per sentence) and preferences (stated preference
sentences). dataset.json records the full config, so the same world can be regenerated;
world.png plots user activity, item popularity, ratings and time.

examples:
  python -m recsys world --out artifacts/world --preset toy
  python -m recsys world --out artifacts/ml1m --preset movielens-1m --false-positive-rate 0.2
  python -m recsys world --out artifacts/w --users 5000 --items 2000 --seed 3 --format csv
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recsys world",
        usage="python -m recsys world --out DIR [--preset NAME] [--format parquet|csv] [config options ...]",
        description=__doc__.split(":", 1)[1].strip().capitalize(),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write (created if missing)")
    parser.add_argument("--preset", choices=WorldConfig.PRESETS, default="small",
                        help="starting config; options below override it (default: small)")
    parser.add_argument("--format", dest="file_format", choices=("parquet", "csv"), default="parquet",
                        help="table file format (default: parquet)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-plot", dest="plot", action="store_false",
                        help="skip DIR/world.png (activity, popularity, ratings, time)")
    group = parser.add_argument_group("world config (each defaults to the preset's value)")
    for spec in fields(WorldConfig):
        flags = [f"--{spec.name.replace('_', '-')}"]
        if spec.name in ALIASES:
            flags.insert(0, ALIASES[spec.name])
        default = spec.default if spec.default is not MISSING else None
        group.add_argument(*flags, dest=spec.name, type=int if spec.type == "int" else float, default=None,
                           metavar="N" if spec.type == "int" else "X",
                           help=f"{spec.metadata['help']} (base default {default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {spec.name: getattr(args, spec.name) for spec in fields(WorldConfig)
                 if getattr(args, spec.name) is not None}
    config = WorldConfig.preset(args.preset, **overrides)
    print(f"world: preset {args.preset}, seed {config.seed}, {config.n_users:,} users x {config.n_items:,} items, "
          f"false-positive rate {config.false_positive_rate}, missing-positive rate {config.missing_positive_rate}")
    started = time.perf_counter()
    world = generate_world(config, progress=not args.quiet)
    generated = time.perf_counter() - started
    print(f"generated in {generated:.1f} s: {world.describe()}")
    try:
        directory = world.to_native(args.out, file_format=args.file_format)
    except OSError as error:
        raise UserInputError(f"cannot write to {args.out}: {error.strerror or error}") from error
    written_in = time.perf_counter() - started - generated
    if args.plot:
        from recsys.data.world.plots import plot_world  # matplotlib only when a plot is wanted

        plot_world(world, directory / "world.png")
    files = sorted(p.name for p in directory.iterdir() if p.is_file())
    print(f"wrote {directory} (tables in {written_in:.1f} s): {', '.join(files)}")
    example = world.preferences.iloc[0] if len(world.preferences) else None
    print(f"item 0: {world.items.title[0]!r} — {world.items.text[0]}")
    if example is not None:
        print(f"user {example['user']} {example['polarity']}s: {example['sentence']!r}")
    return 0
