import subprocess
import sys

import pytest

from recsys import cli
from recsys.errors import DataFormatError


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for name in cli.COMMANDS:
        assert name in result.stdout


def test_unknown_command_exits_non_zero_with_usage():
    result = run("frobnicate")
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr and "usage:" in result.stderr


def test_user_errors_print_one_line_and_exit_2(monkeypatch, capsys):
    class Failing:
        __name__ = "failing"

        @staticmethod
        def main(argv):
            raise DataFormatError("ratings.csv", "rating 'abc' is not a number", line=7, field="rating")

    monkeypatch.setitem(cli.COMMANDS, "boom", ("failing", "fails"))
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: Failing)
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: ratings.csv, line 7, field 'rating': rating 'abc' is not a number"


@pytest.mark.parametrize("module", ["recsys", "agents"])
def test_dispatchers_answer_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout
