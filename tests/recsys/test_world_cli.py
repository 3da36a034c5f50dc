import json
import subprocess
import sys

import numpy as np
import pytest

from recsys import cli
from recsys.data import world_cli
from recsys.data.native import read_native, read_native_table
from recsys.data.world import WorldConfig, generate_world


def test_cli_writes_a_world_that_reads_back_unchanged(tmp_path, capsys):
    out = tmp_path / "world"
    argv = ["--out", str(out), "--preset", "toy", "--users", "60", "--items", "80", "--seed", "5",
            "--interactions-per-user", "8",
            "--false-positive-rate", "0.2", "--format", "csv", "--quiet"]
    assert world_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "false positives" in printed and f"wrote {out}" in printed

    expected = generate_world(WorldConfig.toy(n_users=60, n_items=80, seed=5, false_positive_rate=0.2,
                                                interactions_per_user=8.0))
    data = read_native(out)
    for name in ("user", "item", "timestamp", "rating"):
        np.testing.assert_array_equal(getattr(data, name), getattr(expected.observed, name))
    truth = read_native_table(out, "truth")
    np.testing.assert_array_equal(truth["is_false_positive"].to_numpy(dtype=bool), expected.is_false_positive)
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["file_format"] == "csv"
    assert manifest["world_config"] == expected.config.to_dict()
    assert {"truth", "missed", "clicks", "reviews", "review_sentences", "preferences"} <= set(manifest["tables"])
    assert (out / "world.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_lists_the_config_options(capsys):
    with pytest.raises(SystemExit) as stop:
        world_cli.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--preset", "--users", "--false-positive-rate", "--missing-positive-rate",
                   "--trait-influence", "--format"):
        assert option in text


@pytest.mark.parametrize("argv, message", [
    (["--preset", "toy"], "the following arguments are required: --out"),
    (["--out", "x", "--users", "many"], "argument --users/--n-users: invalid int value: 'many'"),
    (["--out", "x", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["--out", "x", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
])
def test_bad_arguments_exit_2_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        world_cli.main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_config_values_print_one_line_and_exit_2(tmp_path, capsys):
    code = cli.main(["world", "--out", str(tmp_path), "--preset", "toy", "--false-positive-rate", "1.5"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: world config: false_positive_rate must be < 1.0, got 1.5"
    assert not any(tmp_path.iterdir())


def test_unwritable_output_is_a_user_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    argv = ["world", "--out", str(blocker / "w"), "--preset", "toy", "--users", "20", "--quiet", "--no-plot"]
    assert cli.main(argv) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "recsys", "world", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "usage: python -m recsys world --out DIR" in result.stdout
