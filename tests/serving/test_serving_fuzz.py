"""Property-based fuzzing of every operation in the OpenAPI schema: no input a client can send gets a 5xx."""

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

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
