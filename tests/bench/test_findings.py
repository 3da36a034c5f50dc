"""`python -m bench findings`: docs/results.md's tables are what their JSON renders, and every finding re-runs.

The quick runs (small worlds, one seed) write to a temporary folder, never to docs/results. Each asserts
the direction its size has the power to show (QUICK_CHECK says which), else only the JSON schema.
"""

from __future__ import annotations

import json

import pytest

from bench.findings import NAMES, core, load, main, render


def test_every_table_in_results_md_is_what_its_json_renders():
    assert render.stale_blocks(core.RESULTS, render.DOC) == [], "run: python -m bench findings --render"
    text = render.DOC.read_text()
    for name in NAMES:
        payload = core.read(name)
        assert core.missing_keys(payload) == [] and payload["finding"] == name
        assert payload["source"] in (core.REGENERATED, core.DOCUMENTED), payload["source"]
        assert payload["holds"] == (bool(payload["checks"]) and all(payload["checks"].values()))
        assert f"<!-- finding:{name} status -->" in text
        for table in render.blocks(payload):
            assert f"<!-- finding:{name} {table} -->" in text, f"{name} {table} is not shown in docs/results.md"


def test_a_regeneration_starts_from_an_empty_workdir(tmp_path):
    from types import SimpleNamespace

    workdir = tmp_path / "work" / "stale_finding"
    (workdir / "mender").mkdir(parents=True)
    (workdir / "mender" / "best.ckpt").write_text("left by an earlier run")
    seen = []

    def run(directory, quick):
        seen.append(sorted(p.name for p in directory.iterdir()))
        return {"config": {}, "numbers": {}, "checks": {"ran": True}}

    finding = SimpleNamespace(NAME="stale_finding", TITLE="t", COMMAND="c", RULE="r", QUICK_CHECK="schema only", FULL_MINUTES=1,
                              run=run, quick_direction=lambda payload: None)
    payload = core.regenerate(finding, workdir, quick=True)
    assert seen == [[]] and payload["holds"]  # nothing an earlier run left can stand in for this run


def test_a_hand_edited_table_or_a_missing_json_is_caught(tmp_path):
    text = render.DOC.read_text()
    start = text.index("<!-- finding:regret_vs_return near_optimal -->")
    edited = text[:start] + text[start:].replace("| 300 | **0.968 ± 0.032** |", "| 300 | **0.990 ± 0.032** |", 1)
    assert edited != text
    rendered, changed = render.render(edited, core.RESULTS)
    assert changed == ["regret_vs_return near_optimal"] and rendered == text
    (tmp_path / "results").mkdir()
    with pytest.raises(FileNotFoundError, match="block all overview needs .*noisy_labels.json, which does not exist"):
        render.render(text, tmp_path / "results")
    doc = tmp_path / "results.md"
    doc.write_text(edited)
    assert render.stale_blocks(core.RESULTS, doc) == ["regret_vs_return near_optimal"]
    assert render.render_file(core.RESULTS, doc) == ["regret_vs_return near_optimal"] and doc.read_text() == text


def test_check_exits_1_on_a_stale_table_and_list_names_every_finding(monkeypatch, tmp_path, capsys):
    doc = tmp_path / "results.md"
    doc.write_text(render.DOC.read_text().replace("| 300 | **0.968 ± 0.032** |", "| 300 | **0.990 ± 0.032** |", 1))
    monkeypatch.setattr(render, "DOC", doc)
    assert main(["--check"]) == 1
    assert "regret_vs_return near_optimal" in capsys.readouterr().err
    assert main(["--render"]) == 0 and main(["--check"]) == 0
    assert main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert all(f"{name}: " in listing for name in NAMES) and "about 60 min" in listing
    with pytest.raises(SystemExit):
        main(["--quick"])  # quick numbers must not land in docs/results


@pytest.mark.parametrize("name", NAMES)
def test_quick_finding_runs_and_shows_what_its_size_can(name, tmp_path):
    import torch

    torch.set_num_threads(1)
    before = {p.name: p.read_bytes() for p in core.RESULTS.glob("*.json")}
    assert main(["--quick", "--out", str(tmp_path), name]) == 0
    payload = json.loads((tmp_path / f"{name}.json").read_text())
    assert core.missing_keys(payload) == [] and payload["source"] == core.QUICK and payload["scale"] == "quick"
    assert payload["checks"] and payload["git"]["commit"] and payload["wall_seconds"] > 0
    render.blocks(payload)  # every table renders from a fresh payload
    direction = payload["quick_direction_holds"]
    assert (direction is None) == load(name).QUICK_CHECK.startswith("schema only"), payload["quick_check"]
    assert direction is not False, f"{name}: {payload['quick_check']}"
    assert {p.name: p.read_bytes() for p in core.RESULTS.glob("*.json")} == before


def test_an_unknown_finding_is_one_error_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["no_such_finding"])
    assert raised.value.code == 2
    assert "unknown finding(s) no_such_finding; choose from: noisy_labels" in capsys.readouterr().err
