"""Property-based fuzzing of every operation in the OpenAPI schema: no input a client can send gets a 5xx."""

import json
import os

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance
from serving_helpers import copy_bundle

from serving.app import create_app
from serving.retrieval import Retriever
from serving.settings import Settings

OPERATIONS = [("POST", "/v1/recommend"), ("POST", "/v1/feedback"), ("POST", "/v1/admin/reload"),
              ("GET", "/v1/models"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")]
CHECKS = [not_a_server_error, response_schema_conformance, negative_data_rejection]


def _schema(bundle, tmp_path_factory):
    settings_ = Settings(bundle=str(bundle), feedback_db=str(tmp_path_factory.mktemp("fuzz") / "events.sqlite"))
    app = create_app(settings_, Retriever.load(bundle))
    with TestClient(app):  # runs the lifespan, so the feedback log is open as in a real server
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def api_schema(bundle_dir, tmp_path_factory):
    yield from _schema(bundle_dir, tmp_path_factory)


# The same API over the bundles that read profiles (ranker graph) and preferences (Mender).
@pytest.fixture(scope="module", params=["personality", "mender"])
def model_api_schema(request, tmp_path_factory):
    yield from _schema(request.getfixturevalue(request.param).path, tmp_path_factory)


def test_the_schema_lists_every_operation(api_schema):
    listed = {(operation.ok().method.upper(), operation.ok().path) for operation in api_schema.get_all_operations()}
    assert set(OPERATIONS) <= listed


# Negative cases (inputs the schema forbids) exist only for operations that take a body.
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"]


def _fuzz(operation, mode, examples: int) -> None:
    # derandomize: the same examples every run, so a pass today is a pass tomorrow.
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def fuzz(case):
        # negative_data_rejection: a body the schema forbids must be refused with a 4xx, never accepted.
        case.call_and_validate(checks=CHECKS)

    fuzz()


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=lambda v: str(getattr(v, "value", v)))
def test_no_input_gets_a_server_error(api_schema, method, path, mode):
    _fuzz(api_schema[path][method], mode, 40 if method == "POST" else 5)


# Positive only: a body the schema forbids is refused before any bundle code runs (the cases above).
def test_no_profile_or_preference_gets_a_server_error(model_api_schema):
    _fuzz(model_api_schema["/v1/recommend"]["POST"], GenerationMode.POSITIVE, 40)


# --- hostile values the schema generator never sends ---------------------------------------------------
# schemathesis draws finite numbers and strings it can encode as UTF-8: it never sends NaN, Infinity,
# a number beyond float range or a lone surrogate. Here each generated body is re-written with such
# values (non-finite literals, "\ud800" escapes, NUL, bidi controls, long strings) and sent as raw JSON.
HOSTILE_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e308", "-0.0", "123456789012345678901234567890")
HOSTILE_STRINGS = ("\ud800", "a\udfffb", "\udc80", "\x00", "nul\x00inside", "\u202eevil", "\ufeff", "\U0010ffff",
                   "../../etc/passwd", "/proc/self/environ", "x" * 300, "")
TOKEN = "fuzz-token-0123456789-abcdefghijklmnop"


@st.composite
def hostile_case(draw, cases):
    case = draw(cases)
    if not isinstance(case.body, dict):
        return case
    literals: dict[str, str] = {}

    def number() -> str:
        marker = f"__hostile_number_{len(literals)}__"
        literals[marker] = draw(st.sampled_from(HOSTILE_NUMBERS))
        return marker

    def rewrite(value):
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            return number() if draw(st.booleans()) else value
        if isinstance(value, str):
            return draw(st.sampled_from(HOSTILE_STRINGS)) if draw(st.booleans()) else value
        if isinstance(value, dict):
            rewritten = {}
            for key, item in value.items():
                if draw(st.integers(0, 9)) == 0:
                    key = draw(st.sampled_from(HOSTILE_STRINGS))
                rewritten[key] = rewrite(item)
            return rewritten
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        return value

    body = rewrite(case.body)
    if draw(st.booleans()):  # a non-finite number where the schema wants one, present or not
        body[draw(st.sampled_from(["k", "value", "timestamp", "bundle"]))] = number()
    text = json.dumps(body)  # ensure_ascii: a lone surrogate travels as its \ud800 escape
    for marker, literal in literals.items():
        text = text.replace(f'"{marker}"', literal)
    case.body = text.encode()
    return case


@pytest.fixture(scope="module")
def hostile_schema(bundle_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-root")
    copy_bundle(bundle_dir, root / "current")
    saved = os.environ.get("PREFENGINE_ADMIN_TOKEN")
    os.environ["PREFENGINE_ADMIN_TOKEN"] = TOKEN
    try:
        settings_ = Settings(bundle=str(root / "current"), feedback_db=str(root / "events.sqlite"),
                             bundle_root=str(root), feedback_unknown_items="flag")
        app = create_app(settings_, Retriever.load(root / "current"))
    finally:
        os.environ.pop("PREFENGINE_ADMIN_TOKEN")
        if saved is not None:
            os.environ["PREFENGINE_ADMIN_TOKEN"] = saved
    with TestClient(app):
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("path", ["/v1/recommend", "/v1/feedback", "/v1/admin/reload"])
def test_non_finite_numbers_and_unusual_strings_get_no_server_error(hostile_schema, path):
    operation = hostile_schema[path]["POST"]
    # With the admin token, so reload bodies reach the path checks and the loader.
    cases = operation.as_strategy(generation_mode=GenerationMode.POSITIVE,
                                  headers={"Authorization": f"Bearer {TOKEN}"})

    @given(case=hostile_case(cases))
    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    def fuzz(case):
        response = case.call()
        assert response.status_code < 500, (case.body, response.status_code, response.text)
        json.loads(response.content.decode("utf-8"))  # every answer is JSON in valid UTF-8
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    fuzz()
