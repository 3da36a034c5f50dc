"""A real uvicorn process on a loopback port: durability under SIGKILL, reloads under load, the CLI, imports."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serving_helpers import copy_bundle

TOKEN = "e2e-token-0123456789-abcdefghijklmnop"


def test_real_server_answers_like_the_retriever(start_server, bundle_dir):
    from serving.retrieval import Query, Retriever

    server = start_server(bundle_dir)
    answer = httpx.post(f"{server.url}/v1/recommend", json={"user_id": "user-11", "k": 7}).json()
    expected = Retriever.load(bundle_dir).recommend(Query(user_id="user-11", k=7))
    assert [item["item_id"] for item in answer["items"]] == [f"item-{i}" for i in expected.items]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'serving_requests_total{endpoint="/v1/recommend",method="POST",status="200"} 1.0' in metrics


def test_sigkill_while_posting_feedback_loses_no_acknowledged_event(start_server, bundle_dir, tmp_path):
    db = tmp_path / "durable.sqlite"
    # Items named by their event number are unknown to the bundle: stored flagged rather than refused.
    server = start_server(bundle_dir, feedback_db=db, extra=("--feedback-unknown-items", "flag"))
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def post(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5.0) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                item = f"w{worker}-e{n}"
                try:
                    response = client.post("/v1/feedback", json={"events": [
                        {"user_id": f"user-{worker}", "item_id": item, "kind": "click", "timestamp": 1_700_000_000 + n}]})
                except httpx.HTTPError:
                    return  # the server is gone: this event was never acknowledged
                if response.status_code == 200:
                    with lock:
                        acknowledged[item] = response.json()["event_ids"][0]

    threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(acknowledged) >= 150

    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = dict(connection.execute("SELECT item_id, id FROM events").fetchall())
    missing = sorted(set(acknowledged) - set(stored))
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    assert all(stored[item] == event_id for item, event_id in acknowledged.items())


def _hammer(url: str, stop: threading.Event, results: list, user: str = "user-5") -> None:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        while not stop.is_set():
            try:
                response = client.post("/v1/recommend", json={"user_id": user, "k": 10})
                results.append((response.status_code, response.json().get("bundle_version")))
            except httpx.HTTPError as error:
                results.append((type(error).__name__, None))


def test_reload_under_concurrent_load_fails_no_request(start_server, bundle_dir, tmp_path):
    second = copy_bundle(bundle_dir, tmp_path / "second", version="second")
    broken = copy_bundle(bundle_dir, tmp_path / "broken", version="broken")
    copy_bundle(bundle_dir, tmp_path / "first")  # the same bundle, inside the bundle root
    (broken / "item_vectors.npy").write_bytes(b"\x93NUMPY garbage")
    server = start_server(bundle_dir, token=TOKEN, extra=("--bundle-root", str(tmp_path)))
    first = httpx.get(f"{server.url}/readyz").json()["bundle_version"]
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_hammer, args=(server.url, stop, results)) for _ in range(4)]
    for thread in threads:
        thread.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    outcomes = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=30.0) as admin:
        for target in (second, broken, second.with_name("first"), second):
            time.sleep(0.3)
            outcomes.append(admin.post("/v1/admin/reload", json={"bundle": str(target)}).status_code)
        time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert outcomes == [200, 422, 200, 200]
    assert len(results) > 20
    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:5]
    versions = [version for _, version in results]
    assert {first, "second"} <= set(versions) and "broken" not in versions
    assert versions[-1] == "second"


def test_with_two_workers_a_reload_reaches_both(start_server, bundle_dir, tmp_path):
    second = copy_bundle(bundle_dir, tmp_path / "second", version="second")
    server = start_server(bundle_dir, token=TOKEN, workers=2, extra=("--bundle-root", str(tmp_path)))
    response = httpx.post(f"{server.url}/v1/admin/reload", json={"bundle": str(second)},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30.0)
    assert response.status_code == 200
    # Fresh connections land on either worker; once the other worker has followed (it polls every
    # second), every answer names the new bundle.
    deadline, streak = time.monotonic() + 60, 0  # generous: both workers share 2 busy cores
    while streak < 30 and time.monotonic() < deadline:
        answer = httpx.post(f"{server.url}/v1/recommend", json={"user_id": "user-1", "k": 3},
                            headers={"Connection": "close"})
        assert answer.status_code == 200
        streak = streak + 1 if answer.json()["bundle_version"] == "second" else 0
    assert streak == 30
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'serving_bundle_info{bundle_version="second"' in metrics


def test_cli_refuses_a_bad_bundle_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "serving", "--bundle", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: bundle {tmp_path / 'nope'}: is not a directory"]


def test_serving_imports_no_torch_lightning_or_recsys():
    code = ("import sys, json; import serving, serving.app, serving.cli, serving.bundle, serving.retrieval, "
            "serving.feedback, serving.metrics; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'lightning', 'pytorch_lightning', 'recsys', 'agents', 'torchrec'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("target", ["implicit", "rating"])
def test_export_feedback_cli_writes_a_table_the_loaders_read(tmp_path, target):
    from recsys.data.formats import load
    from serving.feedback import Event, FeedbackLog

    log = FeedbackLog(tmp_path / "events.sqlite")
    log.append([Event("u1", "i1", "click", None, 100), Event("u1", "i2", "skip", None, 101),
                Event("u2", "i1", "rating", 5.0, 102), Event("u2", "i3", "rating", 2.0, 103),
                Event("u3", "i,odd\"id", "purchase", None, 104)]).result(timeout=10)
    log.close()
    out = tmp_path / "feedback.csv"
    result = subprocess.run([sys.executable, "-m", "serving", "export-feedback", "--db", str(tmp_path / "events.sqlite"),
                             "--out", str(out), "--target", target], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = load(out, format="table")
    frame = data.to_frame()
    if target == "implicit":
        assert frame[["user", "item", "timestamp"]].values.tolist() == [
            ["u1", "i1", 100], ["u1", "i2", 101], ["u2", "i1", 102], ["u2", "i3", 103], ["u3", "i,odd\"id", 104]]
        assert frame["label"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]
        assert "wrote 5 rows" in result.stdout
    else:
        assert frame[["user", "item", "timestamp", "rating"]].values.tolist() == [["u2", "i1", 102, 5.0], ["u2", "i3", 103, 2.0]]
        assert "left out" in result.stdout
