"""A Lambda Runtime API on 127.0.0.1 that hands out one event and records what the function sends back.

The other half of a smoke run (smoke.py starts the function against it). Speaks what aws-lambda-go and
Lambda's own runtimes expect: the invocation headers, 202 for every post, chunked bodies with error trailers.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from go_arm_lambda import limits

API_PREFIX = "/2018-06-01/runtime/"
ACCOUNT = "000000000000"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
# Lambda caps a synchronous response at 6 MB; anything far beyond that is a runaway, not an answer.
MAX_BODY = 16 * 1024 * 1024
TOO_LARGE = "Function.ResponseSizeTooLarge"  # the errorType Invoke answers with for a response over the limit

@dataclass(frozen=True)
class Posted:
    """One thing the function sent back: a response, an invocation error or an init error."""

    kind: str  # "response" | "error" | "init_error"
    body: bytes
    error_type: str  # from the Lambda-Runtime-Function-Error-Type header or trailer, "" if none
    at: float  # time.monotonic() when it arrived

    def error_payload(self) -> dict[str, Any]:
        """The {"errorMessage","errorType","stackTrace"} document, tolerant of anything else."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            doc = {"errorMessage": self.body.decode("utf-8", "replace")}
        if self.error_type and not doc.get("errorType"):
            doc["errorType"] = self.error_type
        return doc

    def describe(self) -> str:
        """`errorType: errorMessage`, the way Lambda's console sums up a function error."""
        doc = self.error_payload()
        return f"{doc.get('errorType') or 'Unknown'}: {doc.get('errorMessage', '')}"


@dataclass
class _State:
    served: bool = False
    outcome: Posted | None = None
    init_error: Posted | None = None


class RuntimeApiEmulator:
    """A Lambda Runtime API serving one event, on 127.0.0.1 with an ephemeral port.

    After the event is served, further `invocation/next` calls block until the emulator stops, as a frozen
    Lambda sandbox would. Use as a context manager; `wait_for()` lets a runner sleep until something happens.
    """

    def __init__(self, event: bytes = b"{}", *, function_name: str = "smoke-test", region: str = "us-east-1",
                 timeout: float = 10.0) -> None:
        self.event = event
        self.timeout = timeout
        self.request_id = str(uuid.uuid4())
        self.function_arn = limits.arn(region, "lambda", ACCOUNT, f"function:{function_name}")
        self.trace_id = (f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
                         f"Parent={uuid.uuid4().hex[:16]};Sampled=0")
        self.state = _State()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        # serve_forever notices shutdown() only between polls, so a smoke run's stop waits half a poll on
        # average: the default 0.5 s would be most of the run. 5 ms costs ~30 idle wake-ups per run, a fraction
        # of a millisecond of CPU, where 20 ms made every run ~8 ms longer.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.005,), name="runtime-api",
                                        daemon=True)

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> RuntimeApiEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()  # releases handlers parked in /next
        self.notify()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def notify(self) -> None:
        """Wake `wait_for()` callers, e.g. when the function's process has exited."""
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # Called from handler threads ------------------------------------------------------------------

    def _next_event(self) -> bytes | None:
        with self._cond:
            first = not self.state.served
            self.state.served = True
        if first:
            return self.event
        self._stopping.wait()
        return None

    def _record(self, posted: Posted) -> None:
        # Recorded before the 202 goes out, so by the time the function can exit, its answer is here.
        with self._cond:
            if posted.kind == "init_error":
                self.state.init_error = posted
            elif self.state.outcome is None:
                self.state.outcome = posted
            self._cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler parked in /next must never keep the runner alive

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The function is killed mid-connection at the end of every run; a reset is expected, not news.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _make_handler(api: RuntimeApiEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps the Go client's connection alive between /response and the next /next.
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded in api.state; the runner's output is not the place for access logs

        def do_GET(self) -> None:
            if self.path != API_PREFIX + "invocation/next":
                self._not_found()
                return
            event = api._next_event()
            if event is None:
                self.close_connection = True
                return
            deadline_ms = int((time.time() + api.timeout) * 1000)
            self._answer(200, event, {
                "Lambda-Runtime-Aws-Request-Id": api.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                "Lambda-Runtime-Trace-Id": api.trace_id,
                "Content-Type": "application/json",
            })

        def do_POST(self) -> None:
            kind = _post_kind(self.path, api.request_id)
            limit = limits.MAX_RESPONSE if kind == "response" else MAX_BODY
            try:
                body, trailers = _read_body(self, limit)
            except _TooLarge:
                # As Lambda does: refused once the limit is passed, without reading the rest, and the
                # invocation fails with Function.ResponseSizeTooLarge at once, not at the timeout.
                self.close_connection = True
                size = f"{limit} bytes"  # Lambda's for a response, ours (MAX_BODY) for an error
                if kind == "response":
                    api._record(Posted("error", _api_error(TOO_LARGE, "Response payload size exceeded maximum "
                                                           f"allowed payload size ({size})."),
                                       TOO_LARGE, time.monotonic()))
                self._answer(413, _api_error("RequestEntityTooLarge", f"Exceeded maximum allowed payload size "
                                             f"({size})."))
                return
            except ValueError as exc:
                self.close_connection = True
                self._answer(400, _api_error("InvalidRequest", str(exc)))
                return
            if kind is None:
                self._not_found()
                return
            error_type = trailers.get(ERROR_TYPE_HEADER.lower()) or self.headers.get(ERROR_TYPE_HEADER) or ""
            if kind == "response" and error_type:
                # A streamed response that failed half-way: aws-lambda-go puts the error in trailers.
                kind, body = "error", _trailer_error_body(trailers, body)
            api._record(Posted(kind, body, error_type, time.monotonic()))
            self._answer(202, b'{"status":"OK"}')

        def _not_found(self) -> None:
            self._answer(404, _api_error("InvalidRequest", f"no route for {self.command} {self.path}"))

        def _answer(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _post_kind(path: str, request_id: str) -> str | None:
    if path == API_PREFIX + "init/error":
        return "init_error"
    for kind in ("response", "error"):
        if path == f"{API_PREFIX}invocation/{request_id}/{kind}":
            return kind
    return None


def _api_error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class _TooLarge(ValueError):
    """A body over the limit, refused before it is read."""


def _read_body(handler: BaseHTTPRequestHandler, limit: int) -> tuple[bytes, dict[str, str]]:
    """The request body and any HTTP trailers (lower-cased names); aws-lambda-go always posts chunked. Stops
    reading as soon as the body is over `limit` bytes."""
    rfile = handler.rfile
    if "chunked" not in handler.headers.get("Transfer-Encoding", "").lower():
        length = int(handler.headers.get("Content-Length") or 0)
        if length > limit:
            raise _TooLarge(f"body of {length} bytes is over {limit}")
        if length < 0:
            raise ValueError(f"body of {length} bytes is out of range")
        return rfile.read(length), {}
    chunks: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:  # int() takes "-1", and read(-1) would wait for the connection's end
            raise ValueError(f"bad chunk size line {line[:40]!r}")
        if size == 0:
            break
        total += size
        if total > limit:
            raise _TooLarge(f"chunked body is over {limit} bytes")
        chunks.append(rfile.read(size))
        rfile.readline(8)  # the CRLF after each chunk
    trailers: dict[str, str] = {}
    while (line := rfile.readline(65536)) not in (b"", b"\r\n", b"\n"):
        name, _, value = line.decode("latin-1").partition(":")
        trailers[name.strip().lower()] = value.strip()
    return b"".join(chunks), trailers


def _trailer_error_body(trailers: Mapping[str, str], fallback: bytes) -> bytes:
    try:
        return base64.b64decode(trailers.get(ERROR_BODY_TRAILER.lower(), ""), validate=True) or fallback
    except (binascii.Error, ValueError):
        return fallback
