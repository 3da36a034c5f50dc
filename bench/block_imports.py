"""Make chosen packages unimportable, to check that a code path runs on a machine without them.

`python -m bench.block_imports torchrec,faiss,gymnasium,fastapi -- -m recsys discern --help` runs the
rest of the command line as `python ...` would, with those packages raising ImportError on import.
The GPU machine has torch, Lightning, onnxruntime, numba, pandas and transformers, but not torchrec,
faiss, gymnasium or fastapi: tests/bench/test_gpu_check.py runs bench/gpu_check.sh through here.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys


class Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(f"{fullname} is blocked (not installed on the target machine)")
        return None


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        raise SystemExit("usage: python -m bench.block_imports NAME[,NAME...] -- -m MODULE [ARGS...] | SCRIPT [ARGS...]")
    sys.meta_path.insert(0, Blocker(set(sys.argv[1].split(","))))
    rest = sys.argv[3:]
    if rest[0] == "-m":
        sys.argv = [rest[1], *rest[2:]]
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = rest
        runpy.run_path(rest[0], run_name="__main__")


if __name__ == "__main__":
    main()
