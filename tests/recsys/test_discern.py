"""The preference-discerning benchmark: the axes' queries, the command end to end, real sequence data."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from recsys.errors import DataFormatError, UserInputError
from recsys.experiments.discern import main, read_sequences
from recsys.models.generative_data import leave_last_out
from recsys.preferences.axes import SentenceTable, build_axes, matched_preference, training_preferences
from recsys.preferences.extraction import PreferenceTimeline

AXES = ["recommendation", "fine_steering", "coarse_steering", "sentiment", "consolidation"]
TINY = ["--seed", "0", "--data.world_preset", "toy",
        "--data.world", "{n_users: 120, n_items: 80, n_categories: 4, interactions_per_user: 10.0, review_rate: 1.0}",
        "--rqvae.max_epochs", "5", "--rqvae.codebook_size", "8", "--rqvae.hidden_dims", "[32]",
        "--rqvae.latent_dim", "8", "--model.d_model", "16", "--model.n_heads", "2", "--model.ff_dim", "32",
        "--model.encoder_layers", "1", "--model.decoder_layers", "1", "--model.max_history", "5",
        "--train.max_epochs", "1", "--train.batch_size", "128", "--train.progress", "false",
        "--eval.beam_size", "10", "--eval.max_queries", "40"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------
# the axes, against hand-made preferences and embeddings
# ---------------------------------------------------------------------------------------------
def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


SENTENCE_VECTORS = {"Look for red toys": [1, 0, 0], "Look for blue toys": [0, 1, 0], "Avoid green toys": [0, 0, 1],
                    "Find green toys": [0, 0.2, 1], "Look for teal toys": [0, 0.7, 0.7]}


def encode(sentences):
    return unit([SENTENCE_VECTORS[s] for s in sentences])


def table_and_timeline(ids: dict) -> tuple[SentenceTable, PreferenceTimeline]:
    sentences = ["Look for red toys", "Look for blue toys", "Avoid green toys", "Look for teal toys"]
    timeline = PreferenceTimeline(sentences, {k: np.asarray(v, dtype=np.int64) for k, v in ids.items()})
    return SentenceTable.build(timeline, encode), timeline


def test_the_matched_preference_is_the_closest_positive_or_an_inverted_negative():
    table, _ = table_and_timeline({})
    items = unit([[0.9, 0.1, 0], [0, 0.1, 1], [0, 1, 0.1]])
    assert table.sentences[-1] == "Find green toys" and table.inverted[2] == 4
    assert matched_preference(np.array([0, 1]), 0, table, items) == 0
    assert matched_preference(np.array([0, 1, 2]), 1, table, items) == 1  # positives first, even if less close
    assert matched_preference(np.array([2]), 1, table, items) == 4  # only a negative: its inversion
    assert matched_preference(np.array([], dtype=np.int64), 1, table, items) == -1


def test_axes_follow_the_protocol():
    sequences = [np.array([0, 1, 2, 3]), np.array([4, 5, 6]), np.array([7, 8, 9]), np.array([1, 4, 7, 10])]
    items = unit([[1, 0, 0]] * 3 + [[0.9, 0.1, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0.1], [0, 0, 1], [0, 0, 1], [0, 0.1, 1],
                  [0.8, 0.2, 0]])
    steps = {(u, s): [0, 1, 2, 3] for u in range(4) for s in range(5)}
    table, timeline = table_and_timeline(steps)
    split = leave_last_out(sequences, max_history=3)
    axes = build_axes(sequences, split.test, timeline, table, items, review_negative={(1, 6), (2, 9)},
                      max_history=3, seed=0)
    test = split.test
    assert test.target.tolist() == [3, 6, 9, 10]
    # 1. one preference, the positive closest to the held-out item; history excluded.
    rec = axes["recommendation"]
    for prefs, target in zip(rec.preferences, rec.target):
        positives = [0, 1, 3]
        assert prefs.tolist() == [positives[int(np.argmax(table.embeddings[positives] @ items[target]))]]
    assert [e.tolist() for e in rec.exclude] == [[0, 1, 2], [4, 5], [7, 8], [1, 4, 7]]
    # 5. every preference of the step.
    assert all(p.tolist() == [0, 1, 2, 3] for p in axes["consolidation"].preferences)
    # 2./3. the partner is the most (least) similar other test item; its user's history comes with the preference.
    fine = axes["fine_steering"]
    for user, target in zip(fine.user, fine.target):
        assert target in test.target and user != test.user[test.target.tolist().index(target)]
    similarity = items[[3, 6, 9, 10]] @ items[[3, 6, 9, 10]].T
    np.fill_diagonal(similarity, -np.inf)
    assert (fine.target[0], fine.user[0]) == (3, [0, 1, 2, 3][int(np.argmax(similarity[0]))])
    # 4. sentiment: the negative preference and its inversion, for items reviewed negatively.
    pos, neg = axes["sentiment_positive"], axes["sentiment_negative"]
    assert pos.target.tolist() == neg.target.tolist() == [6, 9]
    assert all(table.negative[n[0]] and table.inverted[n[0]] == p[0] for p, n in zip(pos.preferences, neg.preferences))


def test_training_preferences_hold_the_matched_one_and_maybe_others():
    steps = {(0, s): [0, 1, 2, 3] for s in range(6)}
    table, timeline = table_and_timeline(steps)
    items = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0.1, 0], [0, 1, 0]])
    split = leave_last_out([np.array([0, 1, 2, 3, 4])], max_history=3)
    for context in ("matched", "mixed"):
        prefs = training_preferences(split.train, timeline, table, items, context, seed=0)
        for chosen, target in zip(prefs, split.train.target):
            assert matched_preference(np.array([0, 1, 2, 3]), target, table, items) in chosen.tolist()
            assert len(set(chosen.tolist())) == len(chosen) and (context == "mixed" or len(chosen) == 1)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------
def test_discern_on_the_world_writes_every_axis_and_reuses_its_checkpoints(tmp_path, caplog):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--encoder.cache_dir", str(tmp_path / "cache")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"tiger", "mender"}
    for variant in metrics.values():
        assert list(variant) == AXES
        for axis in variant.values():
            for k in (5, 10):
                assert 0 <= axis[f"ndcg@{k}"] <= axis[f"recall@{k}"] <= 1
            assert axis["recall@5"] <= axis["recall@10"]
    tiger = metrics["tiger"]
    # TIGER reads no preferences: the same history gives the same list whatever is said.
    assert tiger["recommendation"] == tiger["consolidation"]
    assert tiger["sentiment"]["combined@10"] == 0.0
    assert tiger["sentiment"]["recall@10"] == tiger["sentiment"]["negative_recall@10"]
    assert (out / "discern.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "5. history consolidation" in report and "mender - tiger" in report
    details = json.loads((out / "details.json").read_text())
    assert details["extractor"]["name"] == "rules" and 0.5 < details["extractor"]["direction_precision"] <= 1
    assert details["semantic_ids"]["n_items"] == 80
    assert (out / "mender" / "best.ckpt").is_file() and (out / "semantic_ids.json").is_file()

    with caplog.at_level(logging.INFO, logger="recsys.experiments.discern"):
        assert main(["--out", str(out), *TINY, "--encoder.cache_dir", str(tmp_path / "cache")]) == 0
    assert sum("reusing" in r.message for r in caplog.records) == 2
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_real_sequences_train_and_evaluate_tiger(tmp_path, caplog):
    rng = np.random.default_rng(0)
    sequences = {f"u{u}": [f"i{(s + 3 * j) % 30}" for j in range(rng.integers(2, 9))]
                 for u, s in enumerate(rng.integers(0, 30, 60))}
    items = sorted({i for seq in sequences.values() for i in seq})
    codes = {item: [int(item[1:]) % 4, int(item[1:]) // 4 % 4, int(item[1:]) // 16] for item in items}
    (tmp_path / "seq.json").write_text(json.dumps(sequences))
    (tmp_path / "ids.json").write_text(json.dumps(codes))
    out = tmp_path / "real"
    with caplog.at_level(logging.WARNING, logger="recsys.experiments.discern"):
        assert main(["--out", str(out), *TINY, "--data.sequences", str(tmp_path / "seq.json"),
                     "--data.semantic_ids", str(tmp_path / "ids.json")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["tiger"] and list(metrics["tiger"]) == ["recommendation"]
    assert metrics["tiger"]["recommendation"]["queries"] == 40  # eval.max_queries of the 60 users
    assert any("only tiger runs" in r.message for r in caplog.records)


def test_tiger_sdpo_fine_tunes_tiger_on_sequences_without_preferences(tmp_path):
    import torch

    rng = np.random.default_rng(1)
    sequences = {f"u{u}": [f"i{(s + 3 * j) % 30}" for j in range(rng.integers(4, 10))]
                 for u, s in enumerate(rng.integers(0, 30, 80))}
    codes = {f"i{i}": [i % 4, i // 4 % 4, i // 16] for i in range(30)}
    (tmp_path / "seq.json").write_text(json.dumps(sequences))
    (tmp_path / "ids.json").write_text(json.dumps(codes))
    out = tmp_path / "sdpo"
    assert main(["--out", str(out), *TINY, "--data.sequences", str(tmp_path / "seq.json"),
                 "--data.semantic_ids", str(tmp_path / "ids.json"), "--model.variants", "[tiger, tiger-sdpo]",
                 "--dpo.max_epochs", "2", "--dpo.lr", "0.01", "--dpo.max_train_pairs", "150"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["tiger", "tiger-sdpo"]
    assert all(list(m) == ["recommendation"] for m in metrics.values())
    details = json.loads((out / "details.json").read_text())
    paired = details["tiger_sdpo_vs_tiger"]["recommendation"]
    assert set(paired) == {"recall@5", "recall@10"} and paired["recall@10"]["n"] == 40
    assert "TIGER + S-DPO minus TIGER" in (out / "report.md").read_text()
    tuned = torch.load(out / "tiger-sdpo" / "best.ckpt", map_location="cpu", weights_only=False)
    start = torch.load(out / "tiger" / "best.ckpt", map_location="cpu", weights_only=False)
    run = tuned["prefengine"]["preference_optimization_run"]
    assert run["pairs"]["train"] == 150 and run["pairs"]["valid"] == 80  # the seeded subset; every validation user
    assert tuned["prefengine"]["preference_optimization_settings"]["kinds"] == ["positive"]
    moved = [k for k, v in tuned["state_dict"].items() if not torch.equal(v, start["state_dict"][k])]
    assert moved  # the policy left its start


def test_sequences_without_ids_or_text_get_ids_from_the_interactions(tmp_path):
    sequences = {str(u): [str((u + j) % 25) for j in range(6)] for u in range(50)}
    (tmp_path / "seq.json").write_text(json.dumps(sequences))
    out = tmp_path / "svd"
    assert main(["--out", str(out), *TINY, "--data.sequences", str(tmp_path / "seq.json"),
                 "--model.variants", "[tiger]"]) == 0
    details = json.loads((out / "details.json").read_text())
    assert details["semantic_ids"]["source"] == "rqvae over SVD item factors"
    assert len(json.loads((out / "semantic_ids.json").read_text())) == 25


def test_two_training_processes_write_a_checkpoint_one_process_loads(tmp_path):
    from recsys.models.generative import GenerativeRetriever

    sequences = {str(u): [str((u + j) % 25) for j in range(6)] for u in range(50)}
    (tmp_path / "seq.json").write_text(json.dumps(sequences))
    out = tmp_path / "ddp"
    assert main(["--out", str(out), *TINY, "--data.sequences", str(tmp_path / "seq.json"),
                 "--model.variants", "[tiger]", "--train.devices", "2"]) == 0
    model = GenerativeRetriever.load_from_checkpoint(out / "tiger" / "best.ckpt", map_location="cpu", weights_only=False)
    assert model.variant == "tiger"
    assert 0 <= json.loads((out / "metrics.json").read_text())["tiger"]["recommendation"]["recall@10"] <= 1


@pytest.mark.parametrize("flags, message", [
    (["--model.variants", "[bert]"], "model.variants must list some of tiger, mender"),
    (["--train.devices", "0"], "train.devices must be >= 1"),
    (["--eval.ks", "[5, 50]", "--eval.beam_size", "20"], "at most eval.beam_size"),
    (["--model.no_such_option", "3"], "discern:"),
    (["--seeds", "0,a"], "--seeds: expected non-negative integers"),
])
def test_bad_configs_are_one_line_user_errors(tmp_path, flags, message):
    with pytest.raises(UserInputError, match=message):
        main(["--out", str(tmp_path / "x"), *flags])


def test_bad_sequence_files_name_the_file_and_the_user(tmp_path):
    path = tmp_path / "seq.json"
    path.write_text('{"u1": ["a", "b"], "u2": "abc"}')
    with pytest.raises(DataFormatError, match="field 'u2'"):
        read_sequences(path)
    path.write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        read_sequences(path)
    path.write_text('{"u1": ["a", "b"]}')
    (tmp_path / "text.json").write_text('{"a": "an item"}')
    with pytest.raises(DataFormatError, match="1 items of the sequences have no text"):
        read_sequences(path, tmp_path / "text.json")


def test_seeds_run_once_per_seed_and_summarize_them(tmp_path):
    cache = ["--encoder.cache_dir", str(tmp_path / "cache")]
    out = tmp_path / "seeds"
    assert main(["--out", str(out), *TINY, *cache, "--seeds", "0,1"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    per_run = {seed: json.loads((out / f"seed{seed}" / "metrics.json").read_text()) for seed in (0, 1)}
    assert summary["seeds"] == [0, 1]
    for variant in ("tiger", "mender"):
        for axis in AXES:
            for metric in ("recall@10", "ndcg@5"):
                key = f"{variant}/{axis}/{metric}"
                values = [per_run[0][variant][axis][metric], per_run[1][variant][axis][metric]]
                assert summary["per_seed"][key] == values
                assert summary[key] == pytest.approx(np.mean(values))
                assert summary["sd"][key] == pytest.approx(np.std(values, ddof=1))
    # The seeds differ (another world, other models), so the spread is real.
    assert any(sd > 0 for sd in summary["sd"].values())
    paired = summary["mender_vs_tiger"]["recommendation/recall@10"]
    assert paired["n"] == 2 and paired["mean_difference"] == pytest.approx(
        summary["mender/recommendation/recall@10"] - summary["tiger/recommendation/recall@10"])
    report = (out / "report.md").read_text()
    assert "mender/coarse_steering/recall@10" in report and "mender - tiger, paired over 2 seeds" in report

    # Without --seeds the command is unchanged: seed 1 alone writes the same files and numbers as seed 1 of the set.
    single = tmp_path / "single"
    assert main(["--out", str(single), *TINY, *cache, "--seed", "1"]) == 0
    assert sorted(p.name for p in single.iterdir()) == sorted(p.name for p in (out / "seed1").iterdir())
    assert json.loads((single / "metrics.json").read_text()) == per_run[1]
    assert (single / "report.md").read_text() == (out / "seed1" / "report.md").read_text()
