"""Slow and hostile clients against a real uvicorn process on loopback, over raw sockets: a body shorter
than its Content-Length, headers that never finish, a token brute-force loop."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from serving_helpers import Server

TIMEOUT_S = 0.5  # the server's header and body timeouts here
SLACK_S = 3.0  # generous: two busy cores


@pytest.fixture(scope="module")
def server(bundle_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("slow")
    server = Server(bundle_dir, run / "events.sqlite", token="slow-token-0123456789-abcdefghijklmnop",
                    extra=("--header-timeout-s", str(TIMEOUT_S), "--body-timeout-s", str(TIMEOUT_S)))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def read_until_closed(connection: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that took."""
    connection.settimeout(limit_s)
    started, received = time.monotonic(), b""
    while True:
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server held the connection for {limit_s} s; received {received!r}") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def test_a_body_shorter_than_its_content_length_gets_408_and_the_connection_closes(server):
    with connect(server) as connection:
        connection.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100\r\n\r\n{\"user_id\": \"u")
        received, seconds = read_until_closed(connection, TIMEOUT_S + SLACK_S)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"connection: close" in received.lower() and b"did not arrive within 0.5 s" in received
    assert TIMEOUT_S * 0.8 <= seconds <= TIMEOUT_S + SLACK_S


def test_a_body_trickled_a_byte_at_a_time_gets_no_more_time(server):
    with connect(server) as connection:
        connection.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 400\r\n\r\n")
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError, AssertionError)):
            while time.monotonic() - started < TIMEOUT_S + SLACK_S:
                connection.sendall(b" ")
                time.sleep(0.05)
            raise AssertionError("the server kept reading a trickled body past its timeout")
        assert time.monotonic() - started <= TIMEOUT_S + SLACK_S


def test_headers_that_never_finish_get_408_and_the_connection_closes(server):
    with connect(server) as connection:
        connection.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Le")
        received, seconds = read_until_closed(connection, TIMEOUT_S + SLACK_S)
    assert received.startswith(b"HTTP/1.1 408 ") and b"headers did not arrive" in received, received
    assert seconds <= TIMEOUT_S + SLACK_S


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as connection:
        _, seconds = read_until_closed(connection, TIMEOUT_S + SLACK_S)
    assert seconds <= TIMEOUT_S + SLACK_S


def test_keep_alive_requests_still_work_one_after_another(server):
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        for _ in range(3):
            assert client.post("/v1/recommend", json={"user_id": "user-1", "k": 2}).status_code == 200
            time.sleep(TIMEOUT_S * 1.2)  # idle between requests is the keep-alive timeout's, not the header one's


def test_a_token_brute_force_loop_meets_429(server):
    statuses = []
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        for attempt in range(200):
            response = client.post("/v1/admin/reload", json={}, headers={"Authorization": f"Bearer guess-{attempt}"})
            statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert "serving_auth_throttled_total 195.0" in httpx.get(f"{server.url}/metrics").text
