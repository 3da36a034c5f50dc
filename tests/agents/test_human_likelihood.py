"""The human-likelihood experiment: the loader, the cross-entropy, the authors' grid minima on the real data."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agents.cli import main as agents_main
from agents.experiments import human_likelihood as hl
from recsys.errors import DataFormatError, UserInputError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "delivery-human-prefs"
# The shared data README's table: in-sample minima on the authors' grid (partial return, regret).
PUBLISHED = {"Privileged-Control": (0.6197, 0.5727), "Question-Control": (0.5286, 0.4812),
             "Trained-Control": (0.5251, 0.4341)}


def softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def write_condition(folder: Path, name: str, X, Y) -> None:
    np.save(folder / f"{name}_X.npy", np.asarray(X))
    np.save(folder / f"{name}_Y.npy", np.asarray(Y))


def test_cross_entropy_matches_a_hand_computation():
    X = np.array([[1.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    Y = np.array([1.0, 0.5, 0.0])
    w = 0.5
    # partial return: z = 1, -2, 0; the 0.5 label counts half each way
    by_hand = [softplus(-0.5), 0.5 * softplus(1.0) + 0.5 * softplus(-1.0), math.log(2.0)]
    losses = hl.label_losses(hl.statistic(X, "partial_return"), Y, w)
    assert losses == pytest.approx(by_hand, abs=1e-12)
    # regret: z = X0 + X2 - X1 = 1, -3, 3
    by_hand = [softplus(-0.5), 0.5 * softplus(1.5) + 0.5 * softplus(-1.5), softplus(1.5)]
    assert hl.label_losses(hl.statistic(X, "regret"), Y, w) == pytest.approx(by_hand, abs=1e-12)
    assert hl.label_losses(hl.statistic(X, "regret"), Y, 0.0).mean() == pytest.approx(hl.UNIFORM)


def test_grid_is_the_authors_and_the_fit_takes_its_minimum():
    assert len(hl.GRID) == 51 and hl.GRID[0] == 0.0
    assert max(hl.GRID) == pytest.approx(0.01 * 1.236**25) and min(hl.GRID) == pytest.approx(-0.01 * 1.236**25)
    z, y = np.array([1.0, 2.0, -1.0, 3.0]), np.array([1.0, 1.0, 0.0, 0.5])
    w, loss = hl.fit_on_grid(z, y)
    brute = min((np.mean([hl.label_losses(z, y, g)]), g) for g in hl.GRID)
    assert (loss, w) == pytest.approx(brute)


def test_held_out_w_is_chosen_on_the_other_folds_only():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=60), rng.choice([0.0, 0.5, 1.0], size=60)
    folds = hl.fold_ids(60, 3, rng)
    losses, chosen = hl.held_out_losses(z, y, folds)
    for fold, w in zip(range(3), chosen):
        test = folds == fold
        assert w == hl.fit_on_grid(z[~test], y[~test])[0]
        assert losses[test] == pytest.approx(hl.label_losses(z[test], y[test], w))


@pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared human-preference data is not at {DATA}")
@pytest.mark.parametrize("condition", sorted(PUBLISHED))
def test_in_sample_minima_reproduce_the_published_table(condition):
    X, Y = hl.load_condition(DATA, condition)
    for model, published in zip(hl.MODELS, PUBLISHED[condition]):
        _, loss = hl.fit_on_grid(hl.statistic(X, model), Y)
        assert loss == pytest.approx(published, abs=1e-4)


def test_loader_names_file_row_and_field(tmp_path):
    write_condition(tmp_path, "ok", np.zeros((3, 3)), [0.0, 0.5, 1.0])
    X, Y = hl.load_condition(tmp_path, "ok")
    assert X.shape == (3, 3) and Y.tolist() == [0.0, 0.5, 1.0]
    write_condition(tmp_path, "shape", np.zeros((3, 2)), [0.0, 0.5, 1.0])
    with pytest.raises(DataFormatError, match=r"shape_X\.npy: expected shape \(n, 3\)"):
        hl.load_condition(tmp_path, "shape")
    write_condition(tmp_path, "label", np.zeros((3, 3)), [0.0, 0.3, 1.0])
    with pytest.raises(DataFormatError, match=r"label_Y\.npy: row 1: label 0\.3"):
        hl.load_condition(tmp_path, "label")
    write_condition(tmp_path, "length", np.zeros((3, 3)), [0.0, 1.0])
    with pytest.raises(DataFormatError, match=r"length_Y\.npy: 2 labels for 3 rows"):
        hl.load_condition(tmp_path, "length")
    bad = np.zeros((3, 3))
    bad[2, 1] = np.nan
    write_condition(tmp_path, "nan", bad, [0.0, 0.5, 1.0])
    with pytest.raises(DataFormatError, match=r"nan_X\.npy, field 'start_value_difference': row 2"):
        hl.load_condition(tmp_path, "nan")
    np.save(tmp_path / "lonely_X.npy", np.zeros((3, 3)))
    with pytest.raises(DataFormatError, match=r"lonely_Y\.npy: file is missing"):
        hl.load_condition(tmp_path, "lonely")
    with pytest.raises(UserInputError, match="no absent_X.npy"):
        hl.load_condition(tmp_path, "absent")


def test_cli_writes_results_and_rejects_bad_data_with_one_line(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(scale=5.0, size=(80, 3))
    regret = X[:, 0] + X[:, 2] - X[:, 1]
    Y = (rng.random(80) < 1 / (1 + np.exp(-0.8 * regret))).astype(float)  # labels from the regret model
    data = tmp_path / "data"
    data.mkdir()
    write_condition(data, "Toy-Control", X, Y)
    out = tmp_path / "out"
    assert agents_main(["experiment", "human-likelihood", "--data", str(data), "--out", str(out),
                        "--folds", "4", "--bootstrap", "200"]) == 0
    results = json.loads((out / "results.json").read_text())
    toy = results["conditions"]["Toy-Control"]
    assert toy["regret"]["in_sample"] < toy["partial_return"]["in_sample"]
    assert (out / "report.md").exists() and (out / "human_likelihood.png").stat().st_size > 0
    capsys.readouterr()
    write_condition(data, "Broken", np.zeros((4, 2)), [0.0, 1.0, 0.0, 1.0])
    assert agents_main(["experiment", "human-likelihood", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Broken_X.npy" in err[0] and "(n, 3)" in err[0]
