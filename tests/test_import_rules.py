"""The house keeps its shape: the import graph, read from the code with `ast`, has no circle and no
arrow that runs the wrong way.

Every `import` counts, also one inside a function (a lazy import is still an arrow). The rules:

- `serving` imports no torch, no Lightning, nothing of `recsys` or `agents` (the bundle is its contract);
- `bundleformat` (the code both sides of the bundle share) imports the standard library and numpy only:
  no torch, no Lightning, nothing of `recsys`, `serving` or `agents`;
- `recsys` imports no `agents` and no `serving`;
- `agents/envs` (the environments) import no `serving` and no `recsys.export`: a recommender reaches
  RecSim through its `Recommender` protocol, made from a checkpoint or a bundle by `agents.recommenders`;
- inside `recsys`, every module sits on a floor and imports only from its own floor or lower ones
  (RECSYS_FLOORS, lowest first); a new folder or loose module must be given a floor here.

The tests at the end plant a forbidden import in a copy of the tree and check that the rules catch it.
"""

from __future__ import annotations

import ast
import functools
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys", "agents", "serving", "bundleformat", "bench")

# Lowest first. `evaluation` sits below `models` because a model's validation step runs the
# evaluator; `preferences` above `models` because its axes build on the generative data helpers.
RECSYS_FLOORS = ("errors", "data", "evaluation", "models", "preferences", "export", "training", "experiments",
                 "cli")
# recsys's own package files: `recsys/__init__.py` imports nothing; `__main__` is the command line.
RECSYS_PLACES = {"recsys": "errors", "recsys.__main__": "cli"}

BUNDLEFORMAT_MAY_IMPORT = frozenset(sys.stdlib_module_names) | {"numpy", "bundleformat", "__future__"}
TORCH = ("torch", "torchrec", "pytorch_lightning", "lightning", "lightning_fabric", "fbgemm_gpu")
# (importer prefix, imported prefixes it must not reach, why)
FORBIDDEN = (
    ("serving", TORCH + ("recsys", "agents"), "serving answers from a bundle: no torch, no recsys, no agents"),
    ("bundleformat", TORCH + ("recsys", "serving", "agents"),
     "bundleformat is shared by export and serving, so it imports neither (nor torch)"),
    ("recsys", ("agents", "serving"), "recsys imports no agents and no serving"),
    ("agents.envs", ("serving", "recsys.export"),
     "environments take a Recommender protocol; the adapters live in agents.recommenders"),
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def imports_of(module: str, is_package: bool, text: str) -> tuple[tuple[str, int], ...]:
    """(absolute dotted name, line) of everything a file imports; `from a import b` gives `a.b`."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return tuple(found)


def read_sources(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, tuple[Path, str]]:
    """module -> (path relative to root, source text) for every .py under `packages`."""
    return {_module_name(path, root): (path.relative_to(root), path.read_text())
            for package in packages for path in sorted((root / package).rglob("*.py"))}


def build_graph(sources: dict[str, tuple[Path, str]]) -> dict[str, dict]:
    """module -> {"path", "imports": [(name, line)], "internal": {module: line}}."""
    graph = {module: {"path": path, "imports": imports_of(module, path.name == "__init__.py", text)}
             for module, (path, text) in sources.items()}
    for module, entry in graph.items():
        internal: dict[str, int] = {}
        for name, line in entry["imports"]:
            target = name
            while target and target not in graph:  # `from pkg import name`: a module, or an attribute of pkg
                target = target.rpartition(".")[0]
            if target and target != module:
                internal.setdefault(target, line)
        entry["internal"] = internal
    return graph


def circles(graph: dict[str, dict]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start]["internal"])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]["internal"]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def recsys_floor(module: str) -> str | None:
    """The floor a recsys module sits on, or None when it has none (a new folder or loose module)."""
    if module in RECSYS_PLACES:
        return RECSYS_PLACES[module]
    part = module.split(".")[1]
    return part if part in RECSYS_FLOORS else None


def forbidden_arrows(graph: dict[str, dict]) -> list[str]:
    """One line per import that breaks a rule: file:line, the arrow, and the rule."""
    problems = []
    for module, entry in sorted(graph.items()):
        for importer, targets, why in FORBIDDEN:
            if not _within(module, importer):
                continue
            for name, line in entry["imports"]:
                if any(_within(name, target) for target in targets):
                    problems.append(f"{entry['path']}:{line}: {module} imports {name} ({why})")
        if _within(module, "bundleformat"):
            for name, line in entry["imports"]:
                if name.split(".")[0] not in BUNDLEFORMAT_MAY_IMPORT:
                    problems.append(f"{entry['path']}:{line}: {module} imports {name} (bundleformat imports the "
                                    "standard library and numpy only)")
        if not _within(module, "recsys"):
            continue
        floor = recsys_floor(module)
        if floor is None:
            problems.append(f"{entry['path']}: {module} sits on no floor of recsys; add it to RECSYS_FLOORS "
                            f"({', '.join(RECSYS_FLOORS)}) in {Path(__file__).name}")
            continue
        for target, line in sorted(entry["internal"].items()):
            if not _within(target, "recsys"):
                continue
            other = recsys_floor(target)
            if other is not None and RECSYS_FLOORS.index(other) > RECSYS_FLOORS.index(floor):
                problems.append(f"{entry['path']}:{line}: {module} ({floor}) imports {target} ({other}), a higher "
                                f"floor (lowest first: {', '.join(RECSYS_FLOORS)})")
    return problems


def problems_of(graph: dict[str, dict]) -> list[str]:
    return forbidden_arrows(graph) + [f"import circle: {' <-> '.join(c)}" for c in circles(graph)]


# -- the house as it is -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sources() -> dict[str, tuple[Path, str]]:
    return read_sources()


@pytest.fixture(scope="module")
def graph(sources) -> dict[str, dict]:
    return build_graph(sources)


def test_the_graph_is_read_from_every_package(graph):
    for package in PACKAGES:
        assert package in graph, f"{package}/__init__.py not found"
    # a plain import, a `from` import and a lazy import inside a function are all arrows
    assert "recsys.experiments.runs" in graph["recsys.experiments.compare"]["internal"]
    assert "recsys.errors" in graph["recsys.data.filters"]["internal"]
    assert "recsys.experiments.compare_personality" in graph["recsys.experiments.compare"]["internal"]


def test_there_is_no_import_circle(graph):
    assert circles(graph) == []


def test_no_import_runs_the_wrong_way(graph):
    assert forbidden_arrows(graph) == []


def test_every_recsys_module_sits_on_a_floor(graph):
    placed = {module: recsys_floor(module) for module in graph if _within(module, "recsys")}
    assert [module for module, floor in placed.items() if floor is None] == []
    assert set(placed.values()) == set(RECSYS_FLOORS), "a floor without modules: drop it from RECSYS_FLOORS"


# -- the rules can fail ---------------------------------------------------------------------------
def planted(sources: dict[str, tuple[Path, str]], module: str, line: str) -> dict[str, tuple[Path, str]]:
    """The sources with `line` added to `module` inside a function (a lazy import counts too)."""
    path, text = sources[module]
    return {**sources, module: (path, text + f"\n\ndef _planted():\n    {line}\n")}


def test_a_planted_import_on_disk_is_caught(tmp_path):
    """The whole path, files to verdict: a copy of the tree, one forbidden import written into it."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    assert problems_of(build_graph(read_sources(tmp_path))) == []
    retrieval = tmp_path / "serving" / "retrieval.py"
    retrieval.write_text("import torch\n" + retrieval.read_text())
    problems = problems_of(build_graph(read_sources(tmp_path)))
    assert problems == ["serving/retrieval.py:1: serving.retrieval imports torch "
                        "(serving answers from a bundle: no torch, no recsys, no agents)"]


@pytest.mark.parametrize(("module", "line", "expected"), [
    ("serving.retrieval", "import torch", "serving.retrieval imports torch"),
    ("serving.bundle", "from recsys.errors import UserInputError", "serving.bundle imports recsys.errors"),
    ("serving.app", "from agents import simulate", "serving.app imports agents.simulate"),
    ("bundleformat.signature", "import pytorch_lightning", "bundleformat.signature imports pytorch_lightning"),
    ("bundleformat.signature", "from serving.bundle import BundleData", "bundleformat.signature imports serving"),
    ("bundleformat.signature", "from recsys.errors import UserInputError", "bundleformat.signature imports recsys"),
    ("bundleformat.profile", "import pandas", "bundleformat.profile imports pandas (bundleformat imports the standard"),
    ("recsys.models.base", "from agents.simulate import simulate", "recsys.models.base imports agents.simulate"),
    ("recsys.experiments.demo", "import serving.local", "recsys.experiments.demo imports serving.local"),
    ("agents.envs.recsim", "from serving.bundle import load_bundle_data", "agents.envs.recsim imports serving.bundle"),
    ("agents.envs.collab", "from recsys.export.embeddings import write_bundle",
     "agents.envs.collab imports recsys.export.embeddings"),
    ("recsys.data.datamodule", "from recsys.models.base import RecommenderModule",
     "recsys.data.datamodule (data) imports recsys.models.base (models)"),
    ("recsys.models.base", "from recsys.training.train import main",
     "recsys.models.base (models) imports recsys.training.train (training)"),
    ("recsys.export.embeddings", "from recsys.experiments import runs",
     "recsys.export.embeddings (export) imports recsys.experiments.runs (experiments)"),
])
def test_a_planted_forbidden_import_is_caught(sources, module, line, expected):
    assert not any(expected in problem for problem in problems_of(build_graph(sources)))
    problems = problems_of(build_graph(planted(sources, module, line)))
    assert any(expected in problem for problem in problems), problems


def test_a_planted_circle_is_caught(sources):
    # runs.py is what compare.py builds on; runs importing compare back closes a circle on one floor.
    graph = build_graph(planted(sources, "recsys.experiments.runs", "from recsys.experiments.compare import main"))
    assert forbidden_arrows(graph) == []
    (circle,) = circles(graph)
    assert {"recsys.experiments.compare", "recsys.experiments.runs"} <= set(circle)


def test_a_longer_circle_is_caught(sources):
    graph = build_graph(planted(sources, "agents.envs.board", "from agents.envs import gridworld"))
    assert any({"agents.envs.board", "agents.envs.gridworld"} <= set(c) for c in circles(graph)), circles(graph)


def test_a_module_without_a_floor_is_caught(sources):
    extra = {"recsys.loose": (Path("recsys/loose.py"), "from recsys.errors import UserInputError\n"),
             "recsys.newfolder": (Path("recsys/newfolder/__init__.py"), '"""A folder nobody placed."""\n')}
    problems = forbidden_arrows(build_graph({**sources, **extra}))
    assert any("recsys.loose sits on no floor" in p for p in problems), problems
    assert any("recsys.newfolder sits on no floor" in p for p in problems), problems
