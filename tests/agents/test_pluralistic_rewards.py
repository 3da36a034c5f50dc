"""Pluralistic reward learning: planted prototypes are recovered, new people are placed, K=1 is safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.envs.delivery import delivery_board
from agents.preferences.models import LinearReward, RegretModel, to_batch
from agents.preferences.pluralistic import (
    PairScorer,
    fit_per_person,
    fit_restarts,
    fit_selected,
    pair_accuracy,
    people_batch,
    place_people,
)
from agents.preferences.policy_set import sample_policy_set
from agents.preferences.population import PopulationConfig, make_population
from recsys.errors import UserInputError
from recsys.evaluation.clustering import adjusted_rand_index

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mdp():
    return delivery_board().tabular()


def _batches(population, scorer, n_train, n_test, rng):
    labelled = population.label(n_train + n_test, rng)
    train = people_batch([d.subset(slice(0, n_train)) for d, _ in labelled], scorer)
    test = people_batch([d.subset(slice(n_train, None)) for d, _ in labelled], scorer)
    truth = torch.as_tensor(np.concatenate([exact[n_train:] for _, exact in labelled]))
    return train, test, truth


def test_population_keeps_ground_truth(mdp):
    rng = np.random.default_rng(0)
    pure = make_population(mdp, 40, PopulationConfig(n_types=3), rng)
    assert pure.mixtures.shape == (40, 3) and set(pure.mixtures.sum(1)) == {1.0}
    assert np.allclose(pure.teacher_weights, pure.type_weights[pure.dominant_type])
    mixed = make_population(mdp, 40, PopulationConfig(n_types=3, mixing="dirichlet", alpha=0.3), rng)
    assert np.allclose(mixed.mixtures.sum(1), 1) and (mixed.mixtures.max(1) < 1).all()
    with pytest.raises(UserInputError, match="mixing"):
        PopulationConfig(mixing="uniform")


def test_typed_teachers_on_a_random_board_through_the_data_module():
    from agents.pluralistic_learning import PopulationDataModule

    boards = {}
    for seed in (3, 4):
        data = PopulationDataModule(env="prefengine/RandomGrid-v0", env_kwargs={"board_seed": seed}, n_teachers=30,
                                    n_types=3, teacher="regret", pairs_per_teacher=6, val_pairs_per_teacher=4,
                                    n_policies=8, seed=0)
        data.setup()
        population = data.population
        assert population.type_weights.shape == (3, population.mdp.n_features)
        assert population.mixtures.shape == (30, 3) and len(set(population.dominant_type)) == 3
        assert data.train_batch["labels"].shape == (30 * 6,) and data.val_batch["truth"].shape == (30 * 4,)
        assert np.bincount(data.train_batch["people"].numpy()).tolist() == [6] * 30
        boards[seed] = population.mdp.features
    assert boards[3].shape != boards[4].shape or not np.array_equal(boards[3], boards[4])  # board_seed picks the board


def test_regret_scorer_matches_the_single_reward_regret_model(mdp):
    rng = np.random.default_rng(1)
    population = make_population(mdp, 2, PopulationConfig(n_types=2, statistic="regret", pool_size=300), rng)
    policy_set = sample_policy_set(mdp, 20, rng)
    scorer = PairScorer("regret", policy_set, mdp.gamma)
    data = [d for d, _ in population.label(30, rng)]
    batch = people_batch(data, scorer)
    weights = torch.as_tensor(population.type_weights)
    reference = RegretModel(policy_set, mdp.gamma)
    for k in range(2):
        reward = LinearReward(6)
        reward.linear.weight.data[:] = weights[k]
        expected = reference.logits(reward, reference.prepare(to_batch(data[0]) | {}))
        got = scorer.logits(weights, batch)[:30, k]
        torch.testing.assert_close(got, expected)


# The ideal-point form may put a pure-type person anywhere in the prototypes' hull, so its dominant
# prototype is a looser read of the type than the mixture form's.
@pytest.mark.parametrize("form, min_ari", [("mixture", 0.9), ("ideal_point", 0.6)])
def test_recovers_planted_types_and_places_new_people(mdp, form, min_ari):
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    config = PopulationConfig(n_types=3, type_scale=4.0, pool_size=2000)
    seen = make_population(mdp, 45, config, rng)
    scorer = PairScorer("partial_return")
    train, test, truth = _batches(seen, scorer, 30, 40, rng)
    model = fit_restarts(45, scorer, train, 3, form, restarts=2, steps=300)
    found = model.mixtures().argmax(1).detach().numpy()
    assert adjusted_rand_index(seen.dominant_type, found) > min_ari
    # each planted type is matched by a learned prototype pointing the same way (loosely: the goal and
    # sheep weights are seldom exercised by 3-step segments, so they are poorly determined)
    learned = model.prototype_weights().detach().numpy()
    cosine = (seen.type_weights / np.linalg.norm(seen.type_weights, axis=1, keepdims=True)) @ (
        learned / np.linalg.norm(learned, axis=1, keepdims=True)
    ).T
    assert cosine.max(1).min() > 0.7 and (form != "mixture" or np.median(cosine.max(1)) > 0.9)
    shared = fit_restarts(45, scorer, train, 1, form, restarts=1, steps=300)
    assert pair_accuracy(model, scorer, test, truth).mean() > pair_accuracy(shared, scorer, test, truth).mean() + 0.05

    # new people of the same types, placed from 20 comparisons each with the prototypes frozen
    new = make_population(mdp, 30, config, rng, type_weights=seen.type_weights)
    few, new_test, new_truth = _batches(new, scorer, 20, 40, rng)
    before = model.prototypes.detach().clone()
    placed = place_people(model, scorer, few, 30)
    assert torch.equal(placed.prototypes, before) and torch.equal(model.prototypes, before)
    placed_types = placed.mixtures().argmax(1).detach().numpy()
    assert adjusted_rand_index(new.dominant_type, placed_types) > min_ari - 0.3
    assert pair_accuracy(placed, scorer, new_test, new_truth).mean() > 0.8


def test_mixture_is_not_worse_than_one_shared_reward_when_there_is_one_type(mdp):
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    population = make_population(mdp, 30, PopulationConfig(n_types=1, pool_size=1500), rng)
    scorer = PairScorer("partial_return")
    labelled = population.label(70, rng)
    train = people_batch([d.subset(slice(0, 10)) for d, _ in labelled], scorer)
    validation = people_batch([d.subset(slice(10, 30)) for d, _ in labelled], scorer)
    test = people_batch([d.subset(slice(30, None)) for d, _ in labelled], scorer)
    truth = torch.as_tensor(np.concatenate([exact[30:] for _, exact in labelled]))
    # a free mixture over-splits one type; the prior strength chosen on validation pairs must undo it
    mixture, chosen = fit_selected(30, scorer, train, validation, 3, forms=("mixture",), restarts=1)
    assert chosen["logit_l2"] == 3.0
    shared = fit_restarts(30, scorer, train, 1, "mixture", restarts=1, steps=300)
    per_person, _ = fit_per_person(30, scorer, train, validation)
    acc_mixture = pair_accuracy(mixture, scorer, test, truth).mean()
    assert acc_mixture >= pair_accuracy(shared, scorer, test, truth).mean() - 0.02
    assert acc_mixture > pair_accuracy(per_person, scorer, test, truth).mean()


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserInputError, match="policy set"):
        PairScorer("regret")
    with pytest.raises(UserInputError, match="form"):
        fit_restarts(2, PairScorer("partial_return"), {"feature_difference": torch.zeros(1, 6)}, 2, "median")


def test_lightning_fit_writes_prototypes_and_checks_the_people_count(tmp_path):
    from agents.train import main as train_main

    def run(n_people: int, form: str = "regret") -> int:
        config = tmp_path / "pluralistic.yaml"
        config.write_text(
            f"""
seed_everything: 0
trainer:
  max_epochs: 1
  accelerator: cpu
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {tmp_path}
model:
  class_path: agents.pluralistic_learning.PluralisticLearner
  init_args: {{n_people: {n_people}, n_types: 2, preference_model: {form}, form: ideal_point}}
data:
  class_path: agents.pluralistic_learning.PopulationDataModule
  init_args: {{n_teachers: 12, n_types: 2, teacher: regret, pairs_per_teacher: 10, val_pairs_per_teacher: 10,
               n_policies: 10, steps_per_epoch: 5}}
"""
        )
        return train_main(["fit", "-c", str(config)])

    assert run(12) == 0
    info = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=False)["prefengine"]
    assert info["model_kind"] == "pluralistic_reward" and len(info["prototype_weights"]) == 2
    assert np.allclose(np.sum(info["mixtures"], 1), 1) and len(info["mixtures"]) == 12
    with pytest.raises(UserInputError, match="n_people is 11 but the data has 12"):
        run(11)


def test_experiment_cli_at_tiny_scale(tmp_path):
    import json

    from agents.experiments import main as experiment_main
    from agents.experiments.docs_tables import render

    out = tmp_path / "pluralistic.json"
    tiny = ["--seeds", "2", "--ms", "2,5", "--seen", "12", "--unseen", "10", "--val-pairs", "5", "--test-pairs", "10",
            "--steps", "30", "--restarts", "1", "--workers", "1", "--populations", "pure,control"]
    assert experiment_main(["pluralistic", *tiny, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert set(doc["summary"]) == {"pure", "control"} and set(doc["summary"]["pure"]) == {"2", "5"}
    cell = doc["summary"]["pure"]["5"]
    assert set(cell["accuracy"]["unseen"]) == {"pluralistic", "shared", "per_person"}
    assert -1 <= cell["oracle_ari"]["seen"]["mean"] <= 1
    test = cell["tests"]["unseen"]["pluralistic_minus_shared"]
    assert test["mean_difference"] == pytest.approx(
        np.mean(cell["accuracy"]["unseen"]["pluralistic"]["per_seed"]) - np.mean(cell["accuracy"]["unseen"]["shared"]["per_seed"])
    )
    assert {"unseen_gain_over_shared_at_m10", "control_not_worse"} - set(doc["targets"]) == {
        "unseen_gain_over_shared_at_m10"  # M = 10 was not run
    }
    assert "| 5 | unseen |" in render(doc)
    with pytest.raises(UserInputError, match="unknown population 'flat'"):
        experiment_main(["pluralistic", "--populations", "flat", "--out", str(out)])


def test_documented_tables_are_generated_from_the_json():
    import json
    import re
    from pathlib import Path

    from agents.experiments.docs_tables import render

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "results.md").read_text()
    names = re.findall(r"<!-- generated from docs/results/(pluralistic_agents\w*)\.json -->", text)
    assert "pluralistic_agents" in names, "docs/results.md has no table generated from pluralistic_agents.json"
    for name in names:
        doc = json.loads((root / "docs" / "results" / f"{name}.json").read_text())
        marker = f"<!-- generated from docs/results/{name}.json -->\n"
        block = text.split(marker, 1)[1].split("\n<!-- end generated -->", 1)[0]
        assert block.strip() == render(doc).strip(), f"docs/results.md differs from {name}.json"
        # the summary is the per-seed records' summary
        for population, by_m in doc["summary"].items():
            records = [r for r in doc["per_seed"] if r["population"] == population]
            for m, cell in by_m.items():
                expected = np.mean([r["by_m"][m]["accuracy"]["unseen"]["pluralistic"] for r in records])
                assert cell["accuracy"]["unseen"]["pluralistic"]["mean"] == pytest.approx(expected)
