"""runtime_api: the Lambda Runtime API emulator over real HTTP, spoken to the way aws-lambda-go speaks to it."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from go_arm_lambda import limits
from go_arm_lambda.runtime_api import API_PREFIX, MAX_BODY, RuntimeApiEmulator


@pytest.fixture
def api() -> Iterator[RuntimeApiEmulator]:
    with RuntimeApiEmulator(b'{"hello": "world"}', function_name="orders", region="eu-west-1",
                            timeout=7) as emulator:
        yield emulator


def url(api: RuntimeApiEmulator, path: str) -> str:
    return f"http://{api.address}{API_PREFIX}{path}"


def post(api: RuntimeApiEmulator, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url(api, path), data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_next_serves_the_event_with_lambda_headers(api: RuntimeApiEmulator) -> None:
    before_ms = time.time() * 1000
    with urllib.request.urlopen(url(api, "invocation/next"), timeout=5) as resp:
        body, headers, status = resp.read(), resp.headers, resp.status
    assert status == 200
    assert body == b'{"hello": "world"}'
    assert str(uuid.UUID(headers["Lambda-Runtime-Aws-Request-Id"])) == api.request_id
    deadline = int(headers["Lambda-Runtime-Deadline-Ms"])
    assert before_ms + 6000 < deadline < time.time() * 1000 + 7000
    arn = headers["Lambda-Runtime-Invoked-Function-Arn"]
    assert arn == "arn:aws:lambda:eu-west-1:000000000000:function:orders"
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    assert api.address.startswith("127.0.0.1:")


def test_response_gets_202_and_is_recorded(api: RuntimeApiEmulator) -> None:
    assert post(api, f"invocation/{api.request_id}/response", b'{"total": 3}') == 202
    outcome = api.state.outcome
    assert outcome is not None
    assert (outcome.kind, json.loads(outcome.body)) == ("response", {"total": 3})


def test_error_gets_202_and_its_payload_is_parsed(api: RuntimeApiEmulator) -> None:
    payload = {"errorMessage": "order has no items", "stackTrace": ["main.go:40"]}
    status = post(api, f"invocation/{api.request_id}/error", json.dumps(payload).encode(),
                  {"Lambda-Runtime-Function-Error-Type": "Function.EmptyOrder"})
    assert status == 202
    outcome = api.state.outcome
    assert outcome is not None and outcome.kind == "error"
    assert outcome.error_payload() == {**payload, "errorType": "Function.EmptyOrder"}


def test_init_error_gets_202_and_is_recorded(api: RuntimeApiEmulator) -> None:
    assert post(api, "init/error", b'{"errorMessage": "no table", "errorType": "Config"}') == 202
    assert api.state.init_error is not None
    assert api.state.init_error.error_payload()["errorMessage"] == "no table"
    assert api.state.outcome is None


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "invocation/elsewhere"),
    ("GET", "../../etc/passwd"),
    ("POST", "invocation/not-the-request-id/response"),
    ("POST", "invocation/next"),
])
def test_unknown_routes_are_404(api: RuntimeApiEmulator, method: str, path: str) -> None:
    conn = http.client.HTTPConnection(*api.address.split(":"), timeout=5)
    conn.request(method, API_PREFIX + path, body=b"{}" if method == "POST" else None)
    assert conn.getresponse().status == 404
    conn.close()
    assert api.state.outcome is None and not api.state.served


def test_chunked_response_with_error_trailers_is_an_error(api: RuntimeApiEmulator) -> None:
    """aws-lambda-go always posts chunked and reports a failed streamed response in HTTP trailers."""
    error = json.dumps({"errorMessage": "stream broke", "errorType": "ReadError"}).encode()
    raw = (f"POST {API_PREFIX}invocation/{api.request_id}/response HTTP/1.1\r\n"
           f"Host: {api.address}\r\nTransfer-Encoding: chunked\r\n"
           "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
           "5\r\npart-\r\n4\r\nial!\r\n0\r\n"
           "Lambda-Runtime-Function-Error-Type: ReadError\r\n"
           f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(error).decode()}\r\n\r\n").encode()
    host, port = api.address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(raw)
        assert sock.recv(100).startswith(b"HTTP/1.1 202")
    outcome = api.state.outcome
    assert outcome is not None and outcome.kind == "error"
    assert outcome.error_payload() == {"errorMessage": "stream broke", "errorType": "ReadError"}


def test_chunked_plain_response_is_reassembled(api: RuntimeApiEmulator) -> None:
    conn = http.client.HTTPConnection(*api.address.split(":"), timeout=5)
    conn.request("POST", f"{API_PREFIX}invocation/{api.request_id}/response",
                 body=iter([b'{"a":', b' 1}']), encode_chunked=True)
    assert conn.getresponse().status == 202
    conn.close()
    assert api.state.outcome is not None and json.loads(api.state.outcome.body) == {"a": 1}


def test_a_negative_chunk_size_is_a_400_at_once(api: RuntimeApiEmulator) -> None:
    """int() takes "-1", and read(-1) would wait for the end of the connection, which the client keeps open."""
    host, port = api.address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST {API_PREFIX}invocation/{api.request_id}/response HTTP/1.1\r\nHost: x\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n-1\r\n{}\r\n0\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert api.state.outcome is None


def test_second_next_blocks_until_stop_and_stop_does_not_hang() -> None:
    emulator = RuntimeApiEmulator(b"{}").__enter__()
    with urllib.request.urlopen(url(emulator, "invocation/next"), timeout=5) as resp:
        assert resp.status == 200
    blocked: list[object] = []

    def second_next() -> None:
        try:
            urllib.request.urlopen(url(emulator, "invocation/next"), timeout=10).read()
            blocked.append("answered")
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            blocked.append(exc)

    t = threading.Thread(target=second_next, daemon=True)
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and not blocked, "a second /next must wait, like a frozen sandbox"
    started = time.monotonic()
    emulator.stop()
    t.join(timeout=3)
    assert time.monotonic() - started < 2
    assert not t.is_alive() and blocked and blocked[0] != "answered"


TOO_LARGE = {"errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
             "errorType": "Function.ResponseSizeTooLarge"}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_response_up_to_lambdas_limit_is_taken_and_one_byte_more_is_refused(chunked: bool) -> None:
    """Lambda's limit is 6,291,556 bytes (its own message says so): at the limit a response, above it the
    Runtime API's 413 and, for the invocation, Function.ResponseSizeTooLarge."""
    for size, accepted in ((limits.MAX_RESPONSE, True), (limits.MAX_RESPONSE + 1, False), (7_000_002, False)):
        with RuntimeApiEmulator() as api:
            body = b'"' + b"a" * (size - 2) + b'"'
            conn = http.client.HTTPConnection(*api.address.split(":"), timeout=10)
            status, said = None, b""
            try:
                conn.request("POST", f"{API_PREFIX}invocation/{api.request_id}/response",
                             body=iter([body[:1 << 20], body[1 << 20:]]) if chunked else body,
                             encode_chunked=chunked)
                answer = conn.getresponse()
                status, said = answer.status, answer.read()
            except OSError:  # refused before the client had sent it all: the connection closed under it
                assert not accepted
            conn.close()
            outcome = api.state.outcome
            assert outcome is not None
            if accepted:
                assert (status, outcome.kind, len(outcome.body)) == (202, "response", size)
            else:
                assert status is None or (status == 413 and json.loads(said) == {
                    "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
                    "errorType": "RequestEntityTooLarge"})
                assert (outcome.kind, outcome.error_payload()) == ("error", TOO_LARGE)


def test_a_runaway_response_is_refused_at_once_without_reading_it_all() -> None:
    """100 MB offered chunk by chunk: the answer comes after the limit, long before the rest is sent."""
    sent = 0

    def runaway() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"a" * 65536
        for _ in range(1600):
            sent += len(chunk)
            yield chunk

    with RuntimeApiEmulator() as api:
        conn = http.client.HTTPConnection(*api.address.split(":"), timeout=10)
        try:
            conn.request("POST", f"{API_PREFIX}invocation/{api.request_id}/response", body=runaway(),
                         encode_chunked=True)
            status: int | None = conn.getresponse().status
        except OSError:  # the emulator closed the connection while the client was still sending
            status = None
        conn.close()
        assert status in (413, None)
        assert api.state.outcome is not None and api.state.outcome.error_payload() == TOO_LARGE
        assert sent < 20 * 1024 * 1024, "the emulator read on far past the limit"


def test_an_announced_oversized_response_is_answered_413_before_its_body_is_sent() -> None:
    with RuntimeApiEmulator() as api:
        host, port = api.address.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(f"POST {API_PREFIX}invocation/{api.request_id}/response HTTP/1.1\r\nHost: x\r\n"
                         "Content-Length: 7000002\r\n\r\n".encode())
            answer = sock.makefile("rb").read()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413") and json.loads(body) == {
            "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
            "errorType": "RequestEntityTooLarge"}
        assert api.state.outcome is not None and api.state.outcome.error_payload() == TOO_LARGE


def test_an_oversized_error_is_answered_413_with_the_limit_it_passed(api: RuntimeApiEmulator) -> None:
    host, port = api.address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST {API_PREFIX}invocation/{api.request_id}/error HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        answer = sock.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and json.loads(body)["errorMessage"] == (
        f"Exceeded maximum allowed payload size ({MAX_BODY} bytes).")
    assert api.state.outcome is None
