"""`make demo`: the main job end to end on the embedded preference world.

world -> train BPR and NBPO -> evaluate against observed and clean labels -> table ->
export NBPO as a bundle -> start the service -> send a few requests -> print the answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from recsys.experiments.demo_models import run_demo
from recsys.export.cli import export_checkpoint
from recsys.training.train import quiet_lightning_warnings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(base: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the service exited with status {server.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service was not ready within {timeout_s:.0f} s")


def _show(title: str, request: dict, answer: dict) -> None:
    print(f"\nPOST /v1/recommend {json.dumps(request)}   # {title}")
    flag = answer["fallback"] or "none"
    print(f"  user_known={answer['user_known']} fallback={flag} bundle={answer['bundle_version']}")
    for rank, item in enumerate(answer["items"], 1):
        print(f"  {rank:>2}. item {item['item_id']:>5}  score {item['score']:8.4f}  [{item['category']}] {item['title']}")


def serve_and_query(bundle: Path, out: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (out / "service.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", "--bundle", str(bundle), "--port", str(port),
         "--feedback-db", str(out / "feedback.sqlite")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        started = time.monotonic()
        _wait_ready(base, server)
        print(f"\nservice: {base} ready in {time.monotonic() - started:.1f} s (log: {out / 'service.log'})")
        model = httpx.get(f"{base}/v1/models", timeout=10).json()["models"][0]
        shown = ("name", "bundle_version", "n_items", "n_users", "embedding_dim")
        print(f"GET /v1/models -> {json.dumps({key: model[key] for key in shown})}")
        items = json.loads((bundle / "items.json").read_text())
        requests = [
            ("a known user, seen items excluded", {"user_id": "0", "k": 5}),
            ("the same user, one category only",
             {"user_id": "0", "k": 3, "filters": {"include_categories": [items["category"][0]]}}),
            ("an unknown user with recent items", {"recent_items": items["item_id"][:3], "k": 3}),
            ("an unknown user and nothing else: popularity", {"user_id": "newcomer", "k": 3}),
        ]
        for title, body in requests:
            answer = httpx.post(f"{base}/v1/recommend", json=body, timeout=10)
            answer.raise_for_status()
            _show(title, body, answer.json())
        event = {"events": [{"user_id": "0", "item_id": items["item_id"][0], "kind": "click"}]}
        ack = httpx.post(f"{base}/v1/feedback", json=event, timeout=10).json()
        print(f"\nPOST /v1/feedback {json.dumps(event)} -> {json.dumps(ack)}")
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recsys demo",
        description="Train BPR and NBPO on the noisy preference world, evaluate both against observed and clean "
                    "labels, export NBPO as a serving bundle, start the service and query it.")
    parser.add_argument("--out", default="artifacts/demo", help="where runs, the bundle and logs go (default: %(default)s)")
    parser.add_argument("--false-positive-rate", type=float, default=0.2,
                        help="share of observed positives that are clicks on disliked items (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap the epochs of both models (default: the configs')")
    args = parser.parse_args(argv)
    quiet_lightning_warnings()
    for name in ("lightning.pytorch", "pytorch_lightning", "torch.fx"):  # banners, not findings
        logging.getLogger(name).setLevel(logging.ERROR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    table = run_demo(out, false_positive_rate=args.false_positive_rate, max_epochs=args.max_epochs)
    bundle = export_checkpoint(table.loc["NBPO", "checkpoint"], out / "bundle-nbpo", overwrite=True)
    print(f"\nexported NBPO -> {bundle} ({', '.join(sorted(p.name for p in Path(bundle).iterdir()))})")
    serve_and_query(Path(bundle), out)
    print("\ndone: python -m recsys --help lists every command; the README walks through each step.")
    return 0
