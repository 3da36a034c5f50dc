import json

import numpy as np
import pytest

from agents.envs.board import Board
from agents.envs.delivery import delivery_board
from agents.planning import TabularMDP, policy_evaluation, solve
from agents.preferences.dataset import PreferenceDataset
from agents.preferences.policy_set import optimal_policy_mask, sample_policy_set, transition_classes
from agents.preferences.segments import Segments, sample_segment_pairs, sample_segments
from agents.preferences.teachers import (
    Teacher,
    partial_returns,
    regret_from_advantages,
    regret_from_values,
)
from recsys.errors import DataFormatError, UserInputError

UP, RIGHT, DOWN, LEFT = range(4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def corridor() -> TabularMDP:
    """Cells 0, 1 and the goal 2; gas -1, goal +10, gamma 0.9, so V* = [8, 10, 0]."""
    return Board.from_text(["..G"], [-1.0, 10.0, -10.0, 1.0, -1.0, -2.0], gamma=0.9).tabular()


def walk(mdp: TabularMDP, start: int, actions: list[int], length: int) -> Segments:
    """A segment following deterministic transitions, stopping on entering an absorbing state."""
    states, features = [start], []
    for a in actions:
        s = states[-1]
        features.append(mdp.features[s, a])
        states.append(int(mdp.transitions[s, a].argmax()))
        if mdp.absorbing[states[-1]]:
            break
    k = len(features)
    padded_states = states + [states[-1]] * (length - k)
    padded_actions = actions[:k] + [0] * (length - k)
    padded_features = np.zeros((length, mdp.n_features))
    padded_features[:k] = features
    return Segments(np.array(padded_states), np.array(padded_actions), padded_features, np.array(k))


def pairs_of(*pairs: tuple[Segments, Segments]) -> Segments:
    return Segments.stack([Segments.stack(list(pair)) for pair in pairs])


@pytest.fixture
def hand_segments():
    mdp = corridor()
    return mdp, {
        "A": walk(mdp, 0, [RIGHT, RIGHT], 2),  # reaches the goal: return 9, regret 0
        "B": walk(mdp, 1, [LEFT, RIGHT], 2),  # steps back: return -2, regret 3.8
        "C": walk(mdp, 0, [UP, RIGHT], 2),  # bumps once: return -2, regret 1.8
        "D": walk(mdp, 1, [RIGHT, UP], 2),  # one step to the goal: return 10, regret 0
    }


def test_partial_return_and_regret_of_hand_made_segments(hand_segments):
    mdp, seg = hand_segments
    batch = Segments.stack([seg[k] for k in "ABCD"])
    np.testing.assert_array_equal(batch.lengths, [2, 2, 2, 1])
    np.testing.assert_allclose(partial_returns(batch, mdp.reward_weights), [9.0, -2.0, -2.0, 10.0])
    solution = solve(mdp)
    by_values = regret_from_values(batch, mdp.reward_weights, solution.values, mdp.gamma)
    by_advantages = regret_from_advantages(batch, solution.advantages, mdp.gamma)
    np.testing.assert_allclose(by_values, [0.0, 3.8, 1.8, 0.0], atol=1e-12)
    np.testing.assert_allclose(by_advantages, [0.0, 3.8, 1.8, 0.0], atol=1e-12)


def test_deterministic_teachers_label_with_ties(hand_segments):
    mdp, seg = hand_segments
    pairs = pairs_of((seg["A"], seg["D"]), (seg["B"], seg["C"]), (seg["C"], seg["B"]))
    rng = np.random.default_rng(0)
    regret = Teacher("regret").label(mdp, pairs, rng).labels
    partial = Teacher("partial_return").label(mdp, pairs, rng).labels
    np.testing.assert_array_equal(regret, [0.5, 0.0, 1.0])  # equal regret ties; C wastes less
    np.testing.assert_array_equal(partial, [0.0, 0.5, 0.5])  # D earns more; B and C earn the same
    advantages = Teacher("regret", regret_form="advantages").label(mdp, pairs, rng).labels
    np.testing.assert_array_equal(advantages, regret)


def test_stochastic_teacher_follows_bradley_terry(hand_segments):
    mdp, seg = hand_segments
    n = 4000
    pairs = pairs_of(*[(seg["B"], seg["C"])] * n)
    labels = (
        Teacher("regret", stochastic=True, temperature=1.0).label(mdp, pairs, np.random.default_rng(1)).labels
    )
    expected = 1.0 / (1.0 + np.exp(2.0))  # sigmoid(-(3.8 - 1.8))
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert labels.mean() == pytest.approx(expected, abs=0.02)
    sharper = (
        Teacher("regret", stochastic=True, temperature=0.25)
        .label(mdp, pairs, np.random.default_rng(1))
        .labels
    )
    assert sharper.mean() == pytest.approx(1.0 / (1.0 + np.exp(8.0)), abs=0.005)


def test_mistakes_flip_strict_labels_and_skips_drop_pairs(hand_segments):
    mdp, seg = hand_segments
    pairs = pairs_of(*[(seg["A"], seg["D"]), (seg["B"], seg["C"])] * 1000)
    flipped = Teacher("regret", mistake_rate=1.0).label(mdp, pairs, np.random.default_rng(0)).labels
    np.testing.assert_array_equal(flipped[:2], [0.5, 1.0])
    answered = Teacher("regret", skip_rate=0.3).label(mdp, pairs, np.random.default_rng(0))
    assert len(answered) / len(pairs.lengths) == pytest.approx(0.7, abs=0.03)
    with pytest.raises(UserInputError, match="mistake_rate"):
        Teacher(mistake_rate=1.5)
    with pytest.raises(UserInputError, match="temperature"):
        Teacher(stochastic=True, temperature=0.0)


def test_regret_forms_agree_on_sampled_delivery_segments():
    mdp = delivery_board().tabular()
    segments = sample_segments(mdp, 3000, length=4, rng=np.random.default_rng(2))
    solution = solve(mdp)
    np.testing.assert_allclose(
        regret_from_values(segments, mdp.reward_weights, solution.values, mdp.gamma),
        regret_from_advantages(segments, solution.advantages, mdp.gamma),
        atol=1e-9,
    )
    assert (segments.lengths < 4).any()  # some segments end at a terminal cell


def test_sampled_segments_follow_the_mdp():
    mdp = delivery_board().tabular()
    pairs = sample_segment_pairs(mdp, 500, length=3, rng=np.random.default_rng(3))
    assert pairs.shape == (500, 2)
    s, a, steps = pairs.states[..., :-1], pairs.actions, pairs.step_mask()
    np.testing.assert_array_equal(mdp.transitions[s, a, pairs.states[..., 1:]][steps], 1.0)
    np.testing.assert_array_equal(pairs.features[steps], mdp.features[s, a][steps])
    assert not pairs.features[~steps].any()
    assert mdp.start[pairs.start_states].min() > 0
    again = sample_segment_pairs(mdp, 500, length=3, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(again.states, pairs.states)


def test_dataset_round_trip(tmp_path):
    mdp = delivery_board().tabular()
    rng = np.random.default_rng(4)
    data = Teacher().label(mdp, sample_segment_pairs(mdp, 200, length=5, rng=rng), rng)
    assert len(set(data.pairs.lengths.ravel())) > 1  # varying lengths survive the trip
    path = data.save(tmp_path / "prefs.jsonl")
    loaded = PreferenceDataset.load(path)
    assert loaded.feature_names == mdp.feature_names
    np.testing.assert_array_equal(loaded.labels, data.labels)
    np.testing.assert_array_equal(loaded.pairs.lengths, data.pairs.lengths)
    np.testing.assert_array_equal(loaded.pairs.states, data.pairs.states)
    np.testing.assert_array_equal(loaded.pairs.features, data.pairs.features)
    mask = data.pairs.step_mask()
    np.testing.assert_array_equal(loaded.pairs.actions[mask], data.pairs.actions[mask])


def test_dataset_reads_headerless_human_records(tmp_path):
    record = {
        "segments": [
            {"states": [3, 4], "actions": [1], "features": [[1, 0]]},
            {"states": [3, 2, 1, 0], "actions": [3, 3, 3], "features": [[1, 0], [1, 0], [0, 1]]},
        ],
        "label": 0.5,
    }
    path = tmp_path / "human.jsonl"
    path.write_text(json.dumps(record) + "\n\n")
    data = PreferenceDataset.load(path)
    assert data.feature_names == ("feature_0", "feature_1")
    np.testing.assert_array_equal(data.pairs.lengths, [[1, 3]])
    np.testing.assert_array_equal(data.pairs.end_states, [[4, 0]])
    np.testing.assert_array_equal(data.pairs.states[0, 0], [3, 4, 4, 4])


GOOD = {"segments": [{"states": [0, 1], "actions": [1], "features": [[1, 0]]}] * 2, "label": 1}


@pytest.mark.parametrize(
    "lines, line, field, message",
    [
        ([GOOD, "{not json"], 2, None, "not valid JSON"),
        ([{"segments": GOOD["segments"]}], 1, "label", "missing required field"),
        ([{**GOOD, "label": 1.5}], 1, "label", "in \\[0, 1\\]"),
        ([{**GOOD, "segments": GOOD["segments"][:1]}], 1, "segments", "exactly two"),
        (
            [
                GOOD,
                {
                    **GOOD,
                    "segments": [GOOD["segments"][0], {"states": [0], "actions": [1], "features": [[1, 0]]}],
                },
            ],
            2,
            "segments[1].states",
            "one more state",
        ),
        (
            [{**GOOD, "segments": [{"states": [0, 1], "actions": [1], "features": [["x", 0]]}] * 2}],
            1,
            "segments[0].features[0]",
            "finite numbers",
        ),
        (
            [
                GOOD,
                GOOD,
                {**GOOD, "segments": [{"states": [0, 1], "actions": [1], "features": [[1, 0, 0]]}] * 2},
            ],
            3,
            "segments[0].features[0]",
            "earlier lines",
        ),
        (
            [GOOD, {"format": "prefengine-preferences", "version": 1, "feature_names": ["a", "b"]}],
            2,
            "format",
            "before",
        ),
        (
            [{"format": "prefengine-preferences", "version": 1, "feature_names": ["a"]}, GOOD],
            2,
            "segments[0].features[0]",
            "earlier lines",
        ),
        (
            [{**GOOD, "segments": [{"states": [0, -1], "actions": [1], "features": [[1, 0]]}] * 2}],
            1,
            "segments[0].states",
            "non-negative integers",
        ),
    ],
)
def test_dataset_bad_lines_name_file_line_and_field(tmp_path, lines, line, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    with pytest.raises(DataFormatError, match=message) as caught:
        PreferenceDataset.load(path)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), line, field)
    assert f"line {line}" in str(caught.value)


def test_dataset_missing_or_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such"):
        PreferenceDataset.load(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataFormatError, match="no preference records"):
        PreferenceDataset.load(tmp_path / "empty.jsonl")


def test_policy_set_values_come_from_successor_features():
    mdp = delivery_board().tabular()
    policy_set = sample_policy_set(mdp, 30, np.random.default_rng(5))
    basis, classes = transition_classes(mdp)
    assert len(basis) == len(np.unique(mdp.features[~mdp.absorbing].reshape(-1, 6), axis=0))
    assert (classes[mdp.absorbing] == -1).all()
    w = np.random.default_rng(6).normal(size=6)
    np.testing.assert_allclose(
        policy_set.values(w), policy_evaluation(mdp, policy_set.policies, mdp.rewards(w)), atol=1e-8
    )
    assert not optimal_policy_mask(mdp, policy_set.policies).any()
    assert len({p.tobytes() for p in policy_set.policies}) == len(policy_set)
    optimal, uniform = solve(mdp).policy, np.full((mdp.n_states, 4), 0.25)
    np.testing.assert_array_equal(optimal_policy_mask(mdp, np.stack([uniform, optimal])), [False, True])
