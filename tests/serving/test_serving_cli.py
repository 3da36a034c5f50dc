"""The serving CLI's own errors: one line on stderr and exit status 2, before anything binds a port."""

import pytest

from serving import cli


@pytest.mark.parametrize(("config", "fragment"), [
    ("bundle: x\nworkers: 0\n", "workers must be a positive integer, got 0"),
    ("bundle: x\nthreads: -1\n", "setting 'threads' must be >= 1"),
    ("bundle: x\nmax_body_bytes: ten\n", "setting 'max_body_bytes' must be int"),
    ("bundle: x\ncolour: blue\n", "unknown setting(s) ['colour']"),
    ("port: 8000\n", "give --bundle DIR"),
    ("- just\n- a list\n", "must hold a mapping of settings"),
    ("bundle: [unclosed\n", "not valid YAML"),
    ("bundle: x\nheader_timeout_s: 0\n", "setting 'header_timeout_s' must be in (0, 3600] seconds"),
    ("bundle: x\nlimit_concurrency: 0\n", "limit_concurrency must be a positive integer, got 0"),
    ("bundle: x\nfeedback_unknown_items: drop\n", "'feedback_unknown_items' must be reject or flag"),
    ("bundle: x\nfeedback_rate_per_s: -1\n", "'feedback_rate_per_s' must be >= 0"),
])
def test_bad_settings_are_named(tmp_path, capsys, config, fragment):
    path = tmp_path / "serving.yaml"
    path.write_text(config)
    assert cli.main(["--config", str(path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and fragment in error


def test_flags_override_the_config_file(tmp_path, capsys):
    path = tmp_path / "serving.yaml"
    path.write_text(f"bundle: {tmp_path / 'from-config'}\nport: 9\n")
    assert cli.main(["--config", str(path), "--bundle", str(tmp_path / "from-flag")]) == 2
    assert f"bundle {tmp_path / 'from-flag'}: is not a directory" in capsys.readouterr().err


def test_export_feedback_names_a_missing_log(tmp_path, capsys):
    assert cli.main(["export-feedback", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "feedback log" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
