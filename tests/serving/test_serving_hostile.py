"""The API under hostile input, in process: every answer a 4xx (never a 5xx), bundles only from inside
the bundle root, no host path in any reply, throttled tokens, declared security, guarded feedback."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serving_helpers import copy_bundle, export, rewrite_file

from serving import cli
from serving.app import create_app
from serving.retrieval import Retriever
from serving.settings import Settings

TOKEN = "admin-token-0123456789-abcdefghijklmnop"
FEEDBACK_TOKEN = "feedback-token-0123456789-abcdefghijklm"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def retriever(bundle_dir):
    return Retriever.load(bundle_dir)


def make_client(bundle: Path, tmp_path: Path, monkeypatch, retriever=None, env: dict | None = None, **settings):
    monkeypatch.setenv("PREFENGINE_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("PREFENGINE_FEEDBACK_TOKEN", raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    settings.setdefault("bundle_root", str(tmp_path))
    app = create_app(Settings(bundle=str(bundle), feedback_db=str(tmp_path / "events.sqlite"), **settings),
                     retriever or Retriever.load(bundle))
    return TestClient(app)


@pytest.fixture
def root(tmp_path, bundle_dir) -> Path:
    """A bundle root holding a copy of the test bundle as 'current'."""
    copy_bundle(bundle_dir, tmp_path / "current")
    return tmp_path


@pytest.fixture
def client(root, monkeypatch):
    with make_client(root / "current", root, monkeypatch) as test_client:
        yield test_client


def assert_no_host_path(text: str, *paths: Path) -> None:
    for path in (*paths, Path.cwd(), Path(sys.prefix)):
        assert str(path) not in text, f"a reply names the host path {path}: {text}"


# --- input errors are 4xx, never 5xx ------------------------------------------------------------------
RAW_BODIES = [
    ("/v1/recommend", '{"user_id": "user-1", "k": NaN}'),
    ("/v1/recommend", '{"user_id": "user-1", "k": Infinity}'),
    ("/v1/recommend", '{"user_id": "user-1", "k": -Infinity}'),
    ("/v1/recommend", '{"user_id": "user-1", "k": 1e400}'),
    ("/v1/recommend", '{"profile": {"traits": {"openness": NaN}}}'),
    ("/v1/recommend", '{"profile": {"traits": {"openness": 1e400}}}'),
    ("/v1/recommend", '{"profile": {"demographics": {"age": -Infinity}}}'),
    ("/v1/recommend", '{"profile": {"demographics": {"\\ud800": "x"}}}'),
    ("/v1/recommend", '{"user_id": "\\ud800"}'),
    ("/v1/recommend", '{"user_id": "a\\udfffb", "k": 3}'),
    ("/v1/recommend", '{"recent_items": ["item-1", "\\ud800"]}'),
    ("/v1/recommend", '{"user_id": "user-1", "filters": {"include_categories": ["\\udc00"]}}'),
    ("/v1/recommend", '{"user_id": "user-1", "filters": {"exclude_items": ["\\ud800"]}}'),
    ("/v1/recommend", '{"preferences": ["\\ud800 quiet"]}'),
    ("/v1/recommend", '{"\\ud800": 1, "user_id": "user-1"}'),
    ("/v1/recommend", '{"user_id": "nul\\u0000id"}'),
    ("/v1/recommend", '{"user_id": "user-1", "k": ' + "9" * 5000 + "}"),
    ("/v1/feedback", '{"events": [{"user_id": "u", "item_id": "item-1", "kind": "rating", "value": NaN}]}'),
    ("/v1/feedback", '{"events": [{"user_id": "u", "item_id": "item-1", "kind": "rating", "value": Infinity}]}'),
    ("/v1/feedback", '{"events": [{"user_id": "u", "item_id": "item-1", "kind": "click", "timestamp": 1e400}]}'),
    ("/v1/feedback", '{"events": [{"user_id": "\\ud800", "item_id": "item-1", "kind": "click"}]}'),
    ("/v1/feedback", '{"events": [{"user_id": "u", "item_id": "\\ud800", "kind": "click"}]}'),
    ("/v1/admin/reload", '{"bundle": "\\ud800"}'),
    ("/v1/admin/reload", '{"bundle": NaN}'),
]


@pytest.mark.parametrize(("path", "raw"), RAW_BODIES)
def test_hostile_values_are_a_clear_422(client, path, raw):
    headers = {"content-type": "application/json", **(AUTH if "admin" in path else {})}
    response = client.post(path, content=raw.encode(), headers=headers)
    # A 5,000-digit number is refused by the JSON parser itself (400); everything else by validation.
    assert response.status_code == (400 if "9" * 5000 in raw else 422), response.text
    detail = json.loads(response.content.decode("utf-8"))["detail"]  # encodable, and valid UTF-8
    assert detail and len(response.content) < 4000


def test_the_422_echo_is_cut_and_escaped(client):
    response = client.post("/v1/recommend", content=b'{"user_id": "\\ud800' + b"x" * 5000 + b'"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "user_id"] and "unicode" in error["msg"]
    assert error["input"].startswith("\\ud800xxx") and error["input"].endswith("...") and len(error["input"]) < 100


# --- bundles come from one place ----------------------------------------------------------------------
def reload(client, bundle, headers=AUTH):
    return client.post("/v1/admin/reload", json={} if bundle is None else {"bundle": bundle}, headers=headers)


def still_serving(client, version: str) -> None:
    answer = client.post("/v1/recommend", json={"user_id": "user-3", "k": 3})
    assert answer.status_code == 200 and answer.json()["bundle_version"] == version


@pytest.mark.parametrize("target", ["<a valid bundle outside the root>", "<the same, through ..>", "outside-link",
                                    "../current", "current/../current", "/proc/1", "/etc", "/", "nul\x00name",
                                    "no-such-bundle"])
def test_reload_refuses_paths_outside_the_root_and_keeps_serving(client, root, tmp_path_factory, target):
    outside = copy_bundle(root / "current", tmp_path_factory.mktemp("elsewhere") / "bundle", version="outside")
    (root / "outside-link").symlink_to(outside, target_is_directory=True)
    target = {"<a valid bundle outside the root>": str(outside),
              "<the same, through ..>": os.path.relpath(outside, root)}.get(target, target)
    version = client.get("/readyz").json()["bundle_version"]
    response = reload(client, target)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"bundle rejected, still serving {version}")
    assert_no_host_path(response.text, root, outside.parent)
    still_serving(client, version)


def test_reload_answers_alike_for_outside_paths_that_exist_and_that_do_not(client):
    exists, missing = reload(client, "/proc/1"), reload(client, "/proc/999999999")
    assert exists.status_code == missing.status_code == 422 and exists.json() == missing.json()


def test_reload_takes_a_name_inside_the_root_and_answers_it_relative(client, root):
    copy_bundle(root / "current", root / "next", version="next-1")
    response = reload(client, "next")
    assert response.status_code == 200, response.text
    assert response.json()["bundle"] == "next" and response.json()["bundle_version"] == "next-1"
    response = reload(client, str(root / "current"))  # an absolute path inside the root is fine too
    assert response.status_code == 200 and response.json()["bundle"] == "current"
    assert_no_host_path(response.text, root)


def test_a_symlink_out_of_the_bundle_is_refused_even_with_its_checksum(client, root, tmp_path_factory):
    escape = copy_bundle(root / "current", root / "escape", version="escape-1")
    table = json.loads((escape / "items.json").read_text())
    table["title"] = ["SECRET from outside"] * len(table["title"])
    outside = tmp_path_factory.mktemp("host") / "secret.json"
    outside.write_text(json.dumps(table))
    (escape / "items.json").unlink()
    (escape / "items.json").symlink_to(outside)
    manifest = json.loads((escape / "manifest.json").read_text())
    payload = outside.read_bytes()
    manifest["files"]["items.json"] = {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
    (escape / "manifest.json").write_text(json.dumps(manifest))
    version = client.get("/readyz").json()["bundle_version"]
    response = reload(client, "escape")
    assert response.status_code == 422
    assert "bundle escape: items.json is a symbolic link" in response.json()["detail"]
    assert_no_host_path(response.text, root, outside.parent)
    still_serving(client, version)
    assert "SECRET" not in client.post("/v1/recommend", json={"user_id": "user-3", "k": 50}).text


def test_a_symlinked_manifest_is_refused(client, root):
    linked = copy_bundle(root / "current", root / "linked")
    real = root / "manifest-copy.json"
    (linked / "manifest.json").rename(real)
    (linked / "manifest.json").symlink_to(real)
    response = reload(client, "linked")
    assert response.status_code == 422 and "manifest.json is a symbolic link" in response.json()["detail"]


@pytest.mark.parametrize(("name", "damage"), [
    ("user_tower.onnx", "truncate"), ("user_tower.onnx", "flip"), ("sequence_tower.onnx", "truncate"),
    ("sequence_tower.onnx", "flip"), ("item_index.faiss", "truncate"), ("item_index.faiss", "flip"),
])
def test_unloadable_files_with_recomputed_checksums_are_422(client, root, name, damage):
    broken = copy_bundle(root / "current", root / "broken")
    payload = bytearray((broken / name).read_bytes())
    if damage == "truncate":
        payload = payload[: len(payload) // 3]
    else:  # flip every byte of a stretch near the start: the structure, not just a weight, is broken
        for i in range(8, min(len(payload), 72)):
            payload[i] ^= 0xFF
    rewrite_file(broken, name, bytes(payload))
    version = client.get("/readyz").json()["bundle_version"]
    response = reload(client, "broken")
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"bundle rejected, still serving {version}: bundle broken:")
    assert_no_host_path(response.text, root)
    still_serving(client, version)


def test_a_load_error_at_start_names_no_host_path(tmp_path):
    settings = Settings(bundle=str(tmp_path / "missing"), feedback_db=str(tmp_path / "events.sqlite"))
    with TestClient(create_app(settings)) as test_client:
        for _ in range(200):
            response = test_client.get("/readyz")
            if "is not a directory" in response.text:
                break
            import time

            time.sleep(0.02)
        assert response.status_code == 503 and "bundle missing: is not a directory" in response.json()["detail"]
        assert_no_host_path(response.text, tmp_path)


# --- signed bundles -------------------------------------------------------------------------------------
KEY = "bundle-signing-key-for-tests-0123456789"


def test_signed_bundles_only_when_a_key_is_set(world, tmp_path, monkeypatch, bundle_dir):
    from bundleformat.manifest import BundleError
    from bundleformat.signature import FIELD

    monkeypatch.setenv("PREFENGINE_BUNDLE_KEY", KEY)
    signed = export(world, tmp_path / "signed")
    manifest = json.loads((signed / "manifest.json").read_text())
    assert manifest[FIELD]["algorithm"] == "HMAC-SHA256" and len(manifest[FIELD]["hmac"]) == 64
    assert Retriever.load(signed, key=KEY.encode()).data.version == manifest["bundle_version"]
    with pytest.raises(BundleError, match="is not signed"):
        Retriever.load(bundle_dir, key=KEY.encode())
    with pytest.raises(BundleError, match="does not match the key"):
        Retriever.load(signed, key=b"another-key-another-key-another-key")
    tampered = copy_bundle(signed, tmp_path / "tampered", version="tampered")  # the manifest changed, not re-signed
    with pytest.raises(BundleError, match="does not match the key"):
        Retriever.load(tampered, key=KEY.encode())
    # The server reads the key from the environment: an unsigned bundle exits 2 at start, one line.
    result = subprocess.run([sys.executable, "-m", "serving", "--bundle", str(bundle_dir)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PREFENGINE_BUNDLE_KEY": KEY})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is not signed, and PREFENGINE_BUNDLE_KEY is set" in result.stderr
    # ... and a reload of one is a 422.
    copy_bundle(signed, tmp_path / "signed-copy")
    with make_client(signed, tmp_path, monkeypatch) as test_client:
        copy_bundle(bundle_dir, tmp_path / "unsigned")
        response = reload(test_client, "unsigned")
        assert response.status_code == 422 and "is not signed" in response.json()["detail"]
        assert reload(test_client, "signed-copy").status_code == 200


# --- the admin surface ------------------------------------------------------------------------------------
def never_serve(self, *args, **kwargs):
    raise AssertionError("the server started with a short token")


@pytest.mark.parametrize("token", ["x", "short-token-31-characters-long!"])
def test_a_short_admin_token_refuses_to_start(bundle_dir, monkeypatch, capsys, token):
    monkeypatch.setattr(cli.uvicorn.Server, "run", never_serve)
    monkeypatch.setattr(cli.uvicorn, "run", never_serve)
    monkeypatch.setenv("PREFENGINE_ADMIN_TOKEN", token)
    assert cli.main(["--bundle", str(bundle_dir)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: PREFENGINE_ADMIN_TOKEN holds a token of {len(token)} characters; use at least 32")


def test_a_short_feedback_token_refuses_to_start(bundle_dir, monkeypatch, capsys):
    monkeypatch.setattr(cli.uvicorn.Server, "run", never_serve)
    monkeypatch.setattr(cli.uvicorn, "run", never_serve)
    monkeypatch.delenv("PREFENGINE_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("PREFENGINE_FEEDBACK_TOKEN", "abc")
    assert cli.main(["--bundle", str(bundle_dir)]) == 2
    assert "PREFENGINE_FEEDBACK_TOKEN holds a token of 3 characters" in capsys.readouterr().err


def test_wrong_tokens_are_throttled_per_address(client):
    statuses = [reload(client, None, {"Authorization": f"Bearer guess-{i}"}).status_code for i in range(12)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    blocked = reload(client, None)  # even the right token waits out the window
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    text = client.get("/metrics").text
    assert "serving_auth_failures_total 5.0" in text and "serving_auth_throttled_total 8.0" in text


def test_the_schema_declares_the_bearer_schemes_and_no_docs_page_loads_a_cdn(client, root, monkeypatch):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["adminToken"] == {"type": "http", "scheme": "bearer",
                                     "description": "the token in the server's PREFENGINE_ADMIN_TOKEN"}
    assert schemes["feedbackToken"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/admin/reload"]["post"]["security"] == [{"adminToken": []}]
    assert "429" in schema["paths"]["/v1/admin/reload"]["post"]["responses"]
    for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(page).status_code == 404
    with make_client(root / "current", root, monkeypatch, docs=False) as production:
        assert production.get("/openapi.json").status_code == 404 and production.get("/docs").status_code == 404


# --- feedback integrity -------------------------------------------------------------------------------
def events(n: int, item: str = "item-1", user: str = "user-1") -> dict:
    return {"events": [{"user_id": user, "item_id": item, "kind": "click"} for _ in range(n)]}


def test_feedback_needs_its_token_when_one_is_set(root, monkeypatch):
    with make_client(root / "current", root, monkeypatch, env={"PREFENGINE_FEEDBACK_TOKEN": FEEDBACK_TOKEN}) as c:
        assert c.post("/v1/feedback", json=events(1)).status_code == 401
        assert c.post("/v1/feedback", json=events(1), headers=AUTH).status_code == 401  # the admin token is not it
        response = c.post("/v1/feedback", json=events(1), headers={"Authorization": f"Bearer {FEEDBACK_TOKEN}"})
        assert response.status_code == 200 and response.json()["accepted"] == 1


def test_feedback_is_rate_limited_per_client(root, monkeypatch):
    with make_client(root / "current", root, monkeypatch, feedback_rate_per_s=0.5, feedback_burst=10) as c:
        assert c.post("/v1/feedback", json=events(6)).status_code == 200
        assert c.post("/v1/feedback", json=events(4)).status_code == 200
        refused = c.post("/v1/feedback", json=events(2))
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert "serving_feedback_throttled_total 1.0" in c.get("/metrics").text
        rows = sqlite3.connect(root / "events.sqlite").execute("SELECT COUNT(*) FROM events").fetchone()
        assert rows == (10,)


def test_unknown_items_are_rejected_and_unknown_users_counted(client, root):
    response = client.post("/v1/feedback", json={"events": [
        {"user_id": "user-1", "item_id": "item-1", "kind": "click"},
        {"user_id": "user-1", "item_id": "no-such-item", "kind": "click"}]})
    assert response.status_code == 422 and "'no-such-item'" in response.json()["detail"]
    response = client.post("/v1/feedback", json=events(2, user="a-new-visitor"))
    assert response.status_code == 200
    text = client.get("/metrics").text
    assert 'serving_feedback_unknown_items_total{action="rejected"} 1.0' in text
    assert "serving_feedback_unknown_users_total 2.0" in text
    rows = sqlite3.connect(root / "events.sqlite").execute(
        "SELECT user_id, item_id, client, user_known, item_known FROM events").fetchall()
    assert rows == [("a-new-visitor", "item-1", "testclient", 0, 1)] * 2


def test_unknown_items_can_be_flagged_instead_and_export_leaves_them_out(root, monkeypatch, tmp_path):
    with make_client(root / "current", root, monkeypatch, feedback_unknown_items="flag") as c:
        response = c.post("/v1/feedback", json={"events": [
            {"user_id": "user-1", "item_id": "item-1", "kind": "click"},
            {"user_id": "user-1", "item_id": "no-such-item", "kind": "click"}]})
        assert response.status_code == 200
        assert 'serving_feedback_unknown_items_total{action="flagged"} 1.0' in c.get("/metrics").text
    out = tmp_path / "out.csv"
    assert cli.main(["export-feedback", "--db", str(root / "events.sqlite"), "--out", str(out)]) == 0
    assert out.read_text().splitlines()[1:] == [f"user-1,item-1,{out.read_text().splitlines()[1].split(',')[2]},1"]
    assert cli.main(["export-feedback", "--db", str(root / "events.sqlite"), "--out", str(out),
                     "--keep-unknown-items"]) == 0
    assert len(out.read_text().splitlines()) == 3


def test_export_feedback_drops_clients_and_users_over_a_rate(tmp_path, capsys):
    from serving.feedback import Event, FeedbackLog

    log = FeedbackLog(tmp_path / "events.sqlite")
    flood = [Event("bot-user", f"i{n}", "click", None, 100 + n, client="10.0.0.9") for n in range(30)]
    spread = [Event(f"u{n % 3}", f"i{n}", "click", None, 200 + n, client=f"10.0.1.{n % 3}") for n in range(12)]
    busy_user = [Event("busy", f"i{n}", "click", None, 300 + n, client=f"10.0.2.{n}") for n in range(8)]
    legacy = [Event("old", "i1", "skip", None, 50)]  # written before clients were recorded
    log.append(flood + spread + busy_user + legacy).result(timeout=10)
    log.close()
    out = tmp_path / "out.csv"
    assert cli.main(["export-feedback", "--db", str(tmp_path / "events.sqlite"), "--out", str(out),
                     "--drop-clients-over", "20", "--drop-users-over", "6"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 13 rows" in printed
    assert "dropped 30 events of 1 clients over 20 events/hour: 10.0.0.9 (30)" in printed
    assert "dropped 8 events of 1 users over 6 events/hour: busy (8)" in printed
    users = {line.split(",")[0] for line in out.read_text().splitlines()[1:]}
    assert users == {"u0", "u1", "u2", "old"}


def test_an_event_log_from_before_the_client_columns_still_opens_and_exports(tmp_path):
    from serving.feedback import Event, FeedbackLog, export_feedback

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
                           "item_id TEXT NOT NULL, kind TEXT NOT NULL, value REAL, timestamp INTEGER NOT NULL, "
                           "received_at REAL NOT NULL, bundle_version TEXT)")
        connection.execute("INSERT INTO events (user_id, item_id, kind, value, timestamp, received_at) "
                           "VALUES ('u', 'i', 'click', NULL, 5, 1.0)")
    counts = export_feedback(db, tmp_path / "a.csv", max_client_events_per_hour=1)
    assert counts.written == 1 and not counts.dropped_clients
    log = FeedbackLog(db)
    log.append([Event("u", "j", "click", None, 6, client="1.2.3.4", user_known=True, item_known=True)]).result(10)
    log.close()
    assert export_feedback(db, tmp_path / "b.csv").written == 2
