"""Preference extraction: the rule-based extractor, the world's truth, measuring extractors, and the LLM
extractor against a real HTTP server on loopback (scripted answers, malformed ones and timeouts included)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from recsys.data.world import WorldConfig, generate_world
from recsys.preferences.extraction import (
    PreferenceContext,
    ReviewedItem,
    RuleBasedExtractor,
    StatedPreferences,
    build_contexts,
    extract_timeline,
    invert,
    is_negative,
    world_contexts,
)
from recsys.preferences.llm import LLMError, LLMExtractor, build_messages, parse_answer
from recsys.preferences.measure import aspect_contrast, measure_extractor, parse_preference


def reviewed(item: int, category: str, aspects, timestamp: int = 0) -> ReviewedItem:
    return ReviewedItem(item=item, title=f"Item {item}", text=f"A {category} item.", category=category,
                        timestamp=timestamp, review="A review.", rating=4.0, aspects=tuple(aspects))


def context(*items: ReviewedItem, user: int = 0) -> PreferenceContext:
    return PreferenceContext(user=user, step=len(items), timestamp=items[-1].timestamp if items else 0, items=items)


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig.toy(seed=3, review_rate=0.5))


# ---------------------------------------------------------------------------------------------
# rules, truth, measuring
# ---------------------------------------------------------------------------------------------
def test_rules_rank_by_recency_weighted_sentiment_and_phrase_likes_and_dislikes():
    extractor = RuleBasedExtractor(half_life=1.0)
    # Newest last. Weights with half-life 1: 0.25, 0.5, 1.0.
    ctx = context(reviewed(0, "hiking gear", [("weight", 1, 1)]),            # lightweight +0.25
                  reviewed(1, "candles", [("scent", 1, -1)]),                 # strongly scented -0.5
                  reviewed(2, "hiking gear", [("weight", 1, 1), ("color", -1, 1)]))  # lightweight +1, muted +1
    sentences = extractor.extract([ctx])[0]
    assert len(sentences) == 3
    # |1.25| lightweight, then muted (|1.0|), then strongly scented (|0.5|)
    assert "lightweight hiking gear" in sentences[0] and not is_negative(sentences[0])
    assert "muted hiking gear" in sentences[1] and not is_negative(sentences[1])
    assert "strongly scented candles" in sentences[2] and is_negative(sentences[2])


def test_rules_cancel_opposite_evidence_and_keep_at_most_five():
    extractor = RuleBasedExtractor()
    assert extractor.extract([context(reviewed(0, "novels", [("tone", 1, 1)]),
                                      reviewed(1, "novels", [("tone", 1, -1)]))])[0][0].startswith(("Avoid", "No", "Exclude"))
    many = context(*[reviewed(i, "toys", [(key, 1, 1)]) for i, key in
                     enumerate(["weight", "scent", "tone", "noise", "sweetness", "complexity", "color"])])
    assert len(extractor.extract([many])[0]) == 5
    assert extractor.extract([context()])[0] == []


def test_contexts_never_see_the_item_they_condition(world):
    contexts = world_contexts(world, window=3, users=[0, 1])
    sequence = world.sequences()[0]
    mine = [c for c in contexts if c.user == 0]
    assert [c.step for c in mine] == list(range(len(sequence) + 1))
    for c in mine:
        assert [i.item for i in c.items] == sequence[max(0, c.step - 3):c.step].tolist()
    # Changing the review of item j leaves the preferences of steps <= j unchanged.
    frame = world.observed.catalog.frame
    reviews, sentences = world.reviews.copy(), world.review_sentences.copy()
    times = [world.observed.timestamp[world.observed.user == 0]]
    rule = RuleBasedExtractor()
    base = rule.extract(build_contexts([sequence], times, frame, reviews, sentences, window=20))
    j = len(sequence) - 1
    flipped = sentences.copy()
    flipped.loc[(flipped["user"] == 0) & (flipped["item"] == sequence[j]), "sentiment"] *= -1
    changed = rule.extract(build_contexts([sequence], times, frame, reviews, flipped, window=20))
    assert base[:j + 1] == changed[:j + 1]


def test_stated_preferences_are_those_said_by_the_context_time():
    table = pd.DataFrame({"user": [0, 0, 0, 1], "timestamp": [10, 20, 30, 5],
                          "sentence": ["a", "b", "c", "d"]})
    truth = StatedPreferences(table, max_preferences=2)
    at = lambda user, time: context(reviewed(0, "toys", [], timestamp=time), user=user)  # noqa: E731
    assert truth.extract([at(0, 25), at(0, 9), at(0, 99), at(1, 5)]) == [["b", "a"], [], ["c", "b"], ["d"]]


def test_negative_preferences_and_their_inversions():
    assert is_negative("Avoid heavy tents") and is_negative("No loud headphones") and is_negative("dislikes ornate lamps")
    assert not is_negative("Look for quiet headphones") and not is_negative("Nothing but bold coffee")
    assert invert("Avoid heavy tents") == "Find heavy tents"
    assert invert("Exclude loud toys") == "Search for loud toys"
    assert invert("Look for quiet headphones") is None


def test_parsing_reads_the_longest_pole_and_the_direction():
    p = parse_preference("Avoid strongly scented candles")
    assert (p.aspect, p.value, p.negative, p.direction) == (1, 1, True, -1)
    q = parse_preference("Look for unscented skincare")
    assert (q.aspect, q.value, q.direction) == (1, -1, -1)
    assert parse_preference("Loves board games") is None


def test_stated_truth_is_perfectly_precise_and_rules_beat_chance(world):
    contexts = world_contexts(world)
    truth = measure_extractor(world, extract_timeline(StatedPreferences(world.preferences), contexts, progress=False))
    assert truth["direction_precision"] == 1.0 and truth["stated_recall"] == 1.0
    rules = measure_extractor(world, extract_timeline(RuleBasedExtractor(), contexts, progress=False))
    assert rules["direction_precision"] > 0.7 and rules["parsed_share"] == 1.0
    assert 0.0 < rules["stated_recall"] < 1.0


def test_aspect_contrast_is_the_mean_utility_gap_between_poles(world):
    users = np.array([0, 5, 7])
    utility = world.true_utility(users)
    values = world.items.aspect_values[:, 2]
    expected = utility[:, values > 0].mean(axis=1) - utility[:, values < 0].mean(axis=1)
    np.testing.assert_allclose(aspect_contrast(world, users)[:, 2], expected, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# the LLM extractor against a real server
# ---------------------------------------------------------------------------------------------
def completion(content: str) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content}}]}


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 answering from a script: (status, JSON body, delay in seconds)."""

    def __init__(self):
        self.script: list[tuple[int, object, float]] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, payload, delay = outer.script.pop(0) if outer.script else (500, {"error": "script empty"}, 0)
                time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = ScriptedServer()
    yield s
    s.stop()


@pytest.fixture
def ctx():
    item = ReviewedItem(item=3, title="Ordodell Heavy Down Jacket", text="A heavy down jacket built for travel.",
                        category="jackets", timestamp=7, review="Far too heavy for my taste.", rating=2.0)
    return context(item)


def extractor(server, tmp_path, **options) -> LLMExtractor:
    defaults = dict(model="test-model", base_url=server.url, api_key_env="PREFENGINE_TEST_KEY", timeout_s=2.0,
                    max_retries=2, backoff_s=0.0, cache_dir=tmp_path / "llm-cache")
    return LLMExtractor(**{**defaults, **options})


def test_llm_answer_is_parsed_and_the_request_follows_the_instruction(server, tmp_path, ctx, monkeypatch):
    monkeypatch.setenv("PREFENGINE_TEST_KEY", "secret-key")
    server.script = [(200, completion('{"preferences": ["Avoid heavy jackets", "Look for light  down jackets"]}'), 0)]
    assert extractor(server, tmp_path).extract([ctx]) == [["Avoid heavy jackets", "Look for light down jackets"]]
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret-key"
    assert request["body"]["model"] == "test-model"
    prompt = request["body"]["messages"][-1]["content"]
    assert "Ordodell Heavy Down Jacket" in prompt and "Far too heavy for my taste." in prompt
    assert "up to 5 preferences" in prompt and "brand" in prompt and "prices" in prompt and "JSON" in prompt


def test_llm_answers_are_cached_on_disk(server, tmp_path, ctx):
    server.script = [(200, completion('["Look for quiet headphones"]'), 0)]
    assert extractor(server, tmp_path).extract([ctx]) == [["Look for quiet headphones"]]
    again = extractor(server, tmp_path)
    assert again.extract([ctx]) == [["Look for quiet headphones"]]
    assert len(server.requests) == 1 and again.requests == 0


def test_llm_retries_malformed_answers_and_server_errors(server, tmp_path, ctx):
    server.script = [(200, completion("Sure! Here are the preferences: lightweight"), 0),
                     (503, {"error": "overloaded"}, 0),
                     (200, completion('```json\n{"preferences": ["Find rugged tents"]}\n```'), 0)]
    assert extractor(server, tmp_path).extract([ctx]) == [["Find rugged tents"]]
    assert len(server.requests) == 3


@pytest.mark.parametrize("content, problem", [
    ("not json at all", "not JSON"),
    ('{"likes": ["a"]}', "no 'preferences' key"),
    ('{"preferences": "Look for tents"}', "must be a list"),
    ('{"preferences": ["ok", 3]}', "is a int"),
])
def test_llm_gives_a_clear_error_after_retries_of_malformed_answers(server, tmp_path, ctx, content, problem):
    server.script = [(200, completion(content), 0)] * 3
    with pytest.raises(LLMError, match=problem) as error:
        extractor(server, tmp_path).extract([ctx])
    assert server.url in str(error.value) and "test-model" in str(error.value) and "3 attempts" in str(error.value)
    assert len(server.requests) == 3


def test_llm_timeouts_are_retried_then_reported(server, tmp_path, ctx):
    server.script = [(200, completion('["a"]'), 1.5)] * 2
    started = time.perf_counter()
    with pytest.raises(LLMError, match="no answer within 0.3 s"):
        extractor(server, tmp_path, timeout_s=0.3, max_retries=1).extract([ctx])
    assert time.perf_counter() - started < 3.0 and len(server.requests) == 2


def test_llm_refused_key_fails_at_once(server, tmp_path, ctx):
    server.script = [(401, {"error": "bad key"}, 0)]
    with pytest.raises(LLMError, match="API key"):
        extractor(server, tmp_path).extract([ctx])
    assert len(server.requests) == 1


def test_llm_unreachable_endpoint_is_reported(tmp_path, ctx):
    probe = ScriptedServer()
    url = probe.url
    probe.stop()  # nothing listens on that port any more
    with pytest.raises(LLMError, match="cannot connect"):
        LLMExtractor(model="m", base_url=url, max_retries=0, timeout_s=1.0, cache_dir=None).extract([ctx])


def test_llm_keeps_five_and_skips_empty_contexts(server, tmp_path, ctx):
    server.script = [(200, completion(json.dumps({"preferences": [f"p{i}" for i in range(7)]})), 0)]
    llm = extractor(server, tmp_path)
    assert llm.extract([context(), ctx]) == [[], ["p0", "p1", "p2", "p3", "p4"]]
    assert len(server.requests) == 1
    assert parse_answer('{"preferences": ["a", "a", " b "]}') == ["a", "b"]
    assert build_messages(ctx)[0]["role"] == "system"
