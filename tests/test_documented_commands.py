"""The README and docs as tests: every command line in their code blocks runs, at small scale.

The commands come from README.md and docs/*.md (lines of ``` blocks that start with `$ ` or with a
command: python, make, curl, torchrun, printf); `tests/documented_commands.py` says how each runs
small. A non-zero exit fails; so does a documented command with no entry there, or an entry for a
command the docs no longer show. `curl` lines go over real HTTP to a service started on a loopback
port from a bundle exported here from a checkpoint trained here; a reply must be 2xx, or 4xx where
the docs show an error (`{"detail": ...}`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from documented_commands import COMMANDS, SERVICES, Run

from serving.local import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_WORDS = {"python", ".venv/bin/python", "make", "curl", "torchrun", "printf"}
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")

# Paths the docs name that the run writes under another name (the epoch of the best checkpoint
# depends on the run's length): documented path -> glob of what the `makes` command wrote.
PRODUCTS = {
    "nbpo_run": {"artifacts/runs/nbpo/checkpoints/best-epoch=43.ckpt": "artifacts/runs/nbpo/checkpoints/best-*.ckpt",
                 "artifacts/runs/nbpo/checkpoints/best-epoch=XX.ckpt": "artifacts/runs/nbpo/checkpoints/best-*.ckpt"},
    "personality_toy_run": {"artifacts/runs/personality_toy/checkpoints/best-epoch=2.ckpt":
                            "artifacts/runs/personality_toy/checkpoints/best-*.ckpt"},
    "personality_ads_run": {"artifacts/runs/personality_ads/checkpoints/best-epoch=4.ckpt":
                            "artifacts/runs/personality_ads/checkpoints/best-*.ckpt"},
    "bpr_toy_run": {"artifacts/runs/bpr_toy/checkpoints/best-epoch=11.ckpt":
                    "artifacts/runs/bpr_toy/checkpoints/best-*.ckpt"},
    "ml1m_world": {"ml-1m/ratings.dat": "artifacts/ml1m-world/ratings.dat"},
}


def normalize(command: str) -> str:
    """One spelling per command: shell words re-joined, the trailing comment dropped."""
    return shlex.join(shlex.split(command, comments=True))


@dataclass(frozen=True)
class Documented:
    command: str  # normalized
    where: str  # file:line of its first appearance
    output: str  # the line shown after a `$ ` command, if any


def collect() -> list[Documented]:
    found: dict[str, Documented] = {}
    for path in DOCUMENTS:
        lines = path.read_text().splitlines()
        fence: str | None = None
        i = 0
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped[3:].strip()
                i += 1
                continue
            if fence is None or fence in ("python", "json", "yaml"):
                i += 1
                continue
            start, prompt = i, stripped.startswith("$ ")
            text = stripped[2:] if prompt else stripped
            words = text.split()
            first = next((w for w in words if not ENV_ASSIGNMENT.match(w)), "")
            if not prompt and first not in COMMAND_WORDS:
                i += 1
                continue
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            output = lines[i + 1].strip() if prompt and i + 1 < len(lines) else ""
            key = normalize(text)
            found.setdefault(key, Documented(key, f"{path.relative_to(ROOT)}:{start + 1}", output))
            i += 1
    return list(found.values())


DOCUMENTED = collect()


class Scratch:
    """One directory for every command of the module (`configs/` linked in), the inputs made so far,
    and the services started."""

    def __init__(self, root: Path):
        self.root = root
        (root / "configs").symlink_to(ROOT / "configs")
        self.made: set[str] = set()
        self.failed: set[str] = set()  # inputs whose command failed: later needs fail at once
        self.services: dict[str, tuple[subprocess.Popen, str]] = {}  # documented port -> (process, url)
        self.makers = {entry.makes: key for key, entry in COMMANDS.items() if entry.makes}

    # --- inputs ---------------------------------------------------------------------------------
    def need(self, name: str) -> None:
        if name in self.made:
            return
        assert name not in self.failed, f"the command that makes {name!r} failed earlier in this module"
        self.failed.add(name)
        if name in self.makers:
            key = self.makers[name]
            self.run(key, COMMANDS[key])
        elif name == "ads16":
            fixtures = _load(ROOT / "tests" / "recsys" / "ads_fixtures.py")
            fixtures.write_corpus(self.root / "ADS16", n_users=12, seed=0)
        elif name == "shared_data":
            if not (SHARED / "data").is_dir():
                pytest.skip(f"the shared public data is not at {SHARED / 'data'}")
        elif name == "docs_copy":  # a renderer that rewrites docs/results.md works on a copy here
            (self.root / "docs_copy.md").write_text((ROOT / "docs" / "results.md").read_text())
        elif name == "evaluation_inputs":
            for key in [k for k in COMMANDS if k.startswith("printf ")]:
                self.run(key, COMMANDS[key])
        elif name == "nbpo_feedback":  # the service writes the event log the export reads
            self.need("nbpo_service")
            url = self.services["8000"][1]
            reply = httpx.post(f"{url}/v1/feedback", json={"events": [
                {"user_id": "1", "item_id": "2", "kind": "click"},
                {"user_id": "1", "item_id": "3", "kind": "rating", "value": 5}]}, timeout=30)
            assert reply.status_code == 200, reply.text
        else:
            raise AssertionError(f"no way to make {name!r}: add a `makes` entry in tests/documented_commands.py")
        for documented, pattern in PRODUCTS.get(name, {}).items():
            target = self.root / documented
            written = sorted(p for p in self.root.glob(pattern) if not p.is_symlink())
            assert written, f"{name}: nothing matches {pattern}"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(written[-1].resolve())
        self.failed.discard(name)
        self.made.add(name)

    # --- running --------------------------------------------------------------------------------
    def run(self, key: str, entry: Run) -> None:
        for name in entry.needs:
            self.need(name)
        text = key
        for documented, replacement in entry.sub:
            assert documented in text, f"{key}: the table substitutes {documented!r}, which is not in the command"
            text = text.replace(documented, replacement)
        words = shlex.split(text) + shlex.split(entry.add)
        env = {}
        while words and ENV_ASSIGNMENT.match(words[0]):
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        program = words[0]
        if program in ("python", ".venv/bin/python") and words[1] == "-m":
            module, args = words[2], words[3:]
            if module == "serving" and args[0].startswith("--"):
                self.serve(args, env, entry.makes)
            elif entry.process:
                self.subprocess([sys.executable, "-m", module, *args], env)
            else:
                self.in_process(module, args, env)
        elif program == "ruff":
            self.subprocess([str(Path(sys.executable).parent / "ruff"), *words[1:]], env, cwd=ROOT)
        elif program == "printf":
            self.subprocess(["bash", "-c", text], env)
        else:
            raise AssertionError(f"{key}: no runner for {program!r}")
        if entry.makes:
            self.made.add(entry.makes)

    def in_process(self, module: str, args: list[str], env: dict[str, str]) -> None:
        import torch

        saved = sys.argv, os.getcwd(), torch.get_num_threads(), {k: os.environ.get(k) for k in env}
        sys.argv = [module, *args]
        os.environ.update(env)
        os.chdir(self.root)
        code: object = 0
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code
        finally:
            sys.argv = saved[0]
            os.chdir(saved[1])
            torch.set_num_threads(saved[2])
            for k, v in saved[3].items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        assert code in (0, None), f"python -m {shlex.join([module, *args])} exited {code}"

    def subprocess(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(argv, cwd=cwd or self.root, env=full_env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}\n" \
                                     f"{done.stderr[-3000:]}"

    def serve(self, args: list[str], env: dict[str, str], makes: str) -> None:
        documented_port = args[args.index("--port") + 1]
        port = free_port()
        args = [*args]
        args[args.index("--port") + 1] = str(port)
        log = (self.root / f"service-{port}.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "serving", *args], cwd=self.root, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, timeout_s=120)
            assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 200
        except BaseException:
            process.kill()
            raise AssertionError((self.root / f"service-{port}.log").read_text()[-3000:]) from None
        if makes:
            self.services[documented_port] = (process, url)
        else:
            process.terminate()
            process.wait(timeout=30)

    def curl(self, command: Documented) -> None:
        words = shlex.split(command.command)[1:]
        method, headers, data, target = None, {}, None, None
        while words:
            word = words.pop(0)
            if word == "-s":
                continue
            if word == "-X":
                method = words.pop(0)
            elif word == "-H":
                name, value = words.pop(0).split(":", 1)
                headers[name.strip()] = value.strip()
            elif word == "-d":
                data = words.pop(0)
            elif word.startswith("-"):
                raise AssertionError(f"{command.where}: the test does not know curl's {word}")
            else:
                target = word
        host, _, path = target.partition("/")
        port = host.rsplit(":", 1)[1]
        assert port in SERVICES, f"{command.where}: no service for port {port}: add it to SERVICES"
        self.need(SERVICES[port])
        url = self.services[port][1]
        reply = httpx.request(method or ("POST" if data is not None else "GET"), f"{url}/{path}", headers=headers,
                              content=data, timeout=60)
        shows_error = command.output.startswith('{"detail"')
        assert (400 <= reply.status_code < 500) if shows_error else reply.status_code == 200, \
            f"{command.where}: {reply.status_code} {reply.text[:500]}"
        assert isinstance(reply.json(), dict)

    def close(self) -> None:
        for process, _ in self.services.values():
            process.terminate()
        for process, _ in self.services.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # The commands run one folder down, with `../shared` beside them as beside the repository, so the
    # documented relative paths to the shared public data resolve as they do from the repository's root.
    base = tmp_path_factory.mktemp("documented")
    if SHARED.is_dir():
        (base / "shared").symlink_to(SHARED)
    (base / "work").mkdir()
    here = Scratch(base / "work")
    yield here
    here.close()
    torch.set_num_threads(threads)


def test_the_docs_show_commands():
    assert len(DOCUMENTED) > 40, [d.where for d in DOCUMENTED]


def test_every_table_entry_is_still_documented():
    documented = {d.command for d in DOCUMENTED}
    stale = [key for key in COMMANDS if normalize(key) not in documented]
    assert not stale, f"tests/documented_commands.py has entries for commands no document shows: {stale}"


TABLE = {normalize(key): (key, entry) for key, entry in COMMANDS.items()}


@pytest.mark.parametrize("documented", DOCUMENTED, ids=[d.where for d in DOCUMENTED])
def test_documented_command_runs(documented: Documented, scratch: Scratch):
    if documented.command.startswith("curl "):
        scratch.curl(documented)
        return
    assert documented.command in TABLE, (
        f"{documented.where}: `{documented.command}` has no entry in tests/documented_commands.py; "
        "add one line saying how to run it at small scale")
    key, entry = TABLE[documented.command]
    if entry.covered:
        assert len(entry.covered) > 20, f"{documented.where}: say why the command is not run here"
        return
    if entry.makes:
        scratch.need(entry.makes)
    else:
        scratch.run(key, entry)


def test_the_exempt_commands_are_few():
    exempt = [key for key, entry in COMMANDS.items() if entry.covered]
    assert len(exempt) <= 7, exempt


def test_the_service_answers_with_the_checkpoints_own_top_k(scratch: Scratch):
    """The README's path end to end: `recsys fit` -> `recsys export` -> `python -m serving` -> HTTP.
    A known user's served list is the trained checkpoint's own top 10 with its training items left out."""
    import numpy as np
    import torch

    from recsys.models.implicit import ImplicitRecommender

    scratch.need("nbpo_service")
    checkpoint = scratch.root / "artifacts/runs/nbpo/checkpoints/best-epoch=43.ckpt"
    block = torch.load(checkpoint, weights_only=False, map_location="cpu")["prefengine"]
    model = ImplicitRecommender.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    url = scratch.services["8000"][1]
    for user in (0, 42, 199):
        scores = model.scorer(np.array([user]))[0].numpy().astype(np.float64)
        seen = block["train_items_by_user"]
        scores[seen["indices"][seen["indptr"][user]:seen["indptr"][user + 1]].numpy()] = -np.inf
        expected = [block["vocab_items"][i] for i in np.argsort(-scores, kind="stable")[:10]]
        reply = httpx.post(f"{url}/v1/recommend", json={"user_id": block["vocab_users"][user], "k": 10}, timeout=30)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["user_known"] is True
        assert [item["item_id"] for item in body["items"]] == expected
