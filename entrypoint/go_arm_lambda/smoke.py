"""Smoke-invoke a packaged function the way Lambda does, on this machine, before anything is deployed.

Two parts: `RuntimeApiEmulator`, a Lambda Runtime API on 127.0.0.1 that hands out one event and records what
the function sends back; and `smoke()`, which extracts the function zip (and layer zip) into a temporary task
root and `/opt`, starts the real `bootstrap` with Lambda's environment, and waits for the answer. arm64
binaries run through qemu-user on x86_64 hosts, with no binfmt registration needed.
"""

from __future__ import annotations

import base64
import binascii
import collections
import datetime
import errno
import json
import math
import os
import platform
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from go_arm_lambda import limits, proc
from go_arm_lambda.errors import ToolchainError, UsageError

API_PREFIX = "/2018-06-01/runtime/"
ACCOUNT = "000000000000"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
QEMU_NAMES = ("qemu-aarch64-static", "qemu-aarch64")
TAIL_LINES = 20
TAIL_BYTES = 4096
STOP_GRACE_S = 1.0
# Lambda caps a synchronous response at 6 MB; anything far beyond that is a runaway, not an answer.
MAX_BODY = 16 * 1024 * 1024
# Lambda's limit for a synchronous invocation's payload, so no event can be larger.
# Lambda's longest function timeout (15 minutes).
# Where qemu finds /lib/ld-linux-aarch64.so.1 for a cgo binary: Debian's aarch64 cross toolchain puts it here.
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"
ELF_MAGIC = b"\x7fELF"
# The kernel reads at most this much of a `#!` line (BINPRM_BUF_SIZE).
SHEBANG_MAX = 256


# ---------------------------------------------------------------------------------------------- emulator

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
        self.function_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{function_name}"
        self.trace_id = (f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
                         f"Parent={uuid.uuid4().hex[:16]};Sampled=0")
        self.state = _State()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        # serve_forever notices shutdown() only between polls; the default 0.5 s would be most of a smoke run.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), name="runtime-api",
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
            try:
                body, trailers = _read_body(self)
            except ValueError as exc:
                self.close_connection = True
                self._answer(400, _api_error("InvalidRequest", str(exc)))
                return
            kind = _post_kind(self.path, api.request_id)
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


def _read_body(handler: BaseHTTPRequestHandler) -> tuple[bytes, dict[str, str]]:
    """The request body and any HTTP trailers (lower-cased names); aws-lambda-go always posts chunked."""
    rfile = handler.rfile
    if "chunked" not in handler.headers.get("Transfer-Encoding", "").lower():
        length = int(handler.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            raise ValueError(f"body of {length} bytes is out of range")
        return rfile.read(length), {}
    chunks: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ValueError(f"bad chunk size line {line[:40]!r}") from None
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise ValueError("chunked body is too large")
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


# ---------------------------------------------------------------------------------------------- runner

@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    response: Any
    error: str | None
    duration_ms: int
    stderr_tail: str
    # The bytes the function posted, response or error document, as Lambda's Invoke hands them back; b"" when
    # it posted neither. `response` and `error` are readings of them for people, and lose the exact bytes.
    payload: bytes = b""
    timed_out: bool = False  # still running at the deadline, as opposed to exiting or failing to start

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "response": self.response, "error": self.error,
                "duration_ms": self.duration_ms, "stderr_tail": self.stderr_tail}


def load_event(text: str) -> bytes:
    """`--event` value: inline JSON, or `@FILE`. Returns the bytes to send, after checking they are JSON
    and within Lambda's payload limit."""
    if not text.startswith("@"):
        data = text.encode()
        _check_event(data, "--event")
        return data
    path = Path(text[1:])
    what = f"event file {str(path)!r}"
    fix = "pass --event @PATH to a JSON file, or the JSON itself"
    _check_regular_file(path, what, fix)
    try:
        with path.open("rb") as f:
            data = f.read(limits.MAX_EVENT + 1)  # one byte more than allowed is enough to refuse it
    except OSError as exc:
        raise UsageError(f"{what} cannot be read: {exc.strerror or exc}", fix) from None
    _check_event(data, what)
    return data


def _check_event(data: bytes, what: str) -> None:
    if len(data) > limits.MAX_EVENT:
        raise UsageError(f"{what} is larger than {limits.MAX_EVENT:,} bytes, Lambda's limit for an invocation payload",
                         "pass a smaller event (--event JSON or --event @FILE)")
    try:
        json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
        raise UsageError(f"{what} is not valid JSON ({exc})",
                         "pass a JSON document, e.g. --event '{\"name\": \"Ada\"}' or --event @event.json"
                         ) from None


def _check_regular_file(path: Path, what: str, fix: str) -> None:
    """Inputs are read whole: a FIFO would block the reader and a device (/dev/zero) never ends, so only a
    regular file (or a link to one) is taken."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        why = "does not exist" if exc.errno == errno.ENOENT else f"cannot be read: {exc.strerror or exc}"
        raise UsageError(f"{what} {why}", fix) from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{what} is a directory", fix)
    if not stat.S_ISREG(mode):
        raise UsageError(f"{what} is not a regular file", fix)


def smoke(function_zip: Path, handler: str, *, layer_zip: Path | None = None, event: bytes = b"{}",
          timeout: float = 10.0, function_name: str = "smoke-test", region: str = "us-east-1",
          memory_mb: int = 128, env: Mapping[str, str] | None = None,
          runtime: str = "provided.al2023") -> SmokeResult:
    """Invoke the packaged function once with `event`, as Lambda would, and say what came back.

    Bad input raises UsageError before anything runs; everything the function does, including failing to
    start, is a SmokeResult.
    """
    _check_inputs(function_zip, handler, layer_zip, event, timeout, runtime)
    qemu = None if _host_is_arm64() else find_qemu()
    with tempfile.TemporaryDirectory(prefix="go-arm-lambda-smoke-", ignore_cleanup_errors=True) as tmp:
        task_root, opt, runtime_dir = Path(tmp, "task"), Path(tmp, "opt"), Path(tmp, "runtime")
        for d in (task_root, opt, runtime_dir):
            d.mkdir()
        extract_zip(function_zip, task_root)
        if layer_zip is not None:
            extract_zip(layer_zip, opt)
        # Lambda's own order: the function's bootstrap wins over a layer's.
        bootstrap = next((p for p in (task_root / "bootstrap", opt / "bootstrap") if p.exists()), None)
        if bootstrap is None:
            where = "the function zip" if layer_zip is None else "the function zip or the layer"
            return SmokeResult(False, None, f"Couldn't find valid bootstrap(s) in {where}: Lambda fails "
                               "every invocation with Runtime.InvalidEntrypoint; name the binary bootstrap "
                               "or add the bootstrap layer (--layer)", 0, "")
        # The layer's bootstrap execs the handler; a zip's own bootstrap is the handler itself.
        layered = bootstrap.parent == opt
        handler_path = task_root / handler if layered else None
        starts = [(bootstrap, "the layer's bootstrap" if layered else "the function zip's bootstrap")]
        if handler_path is not None:
            starts.append((handler_path, f"handler {handler}"))
        for path, what in starts:
            problem = _exec_problem(path, what, cwd=task_root)
            if problem:
                return SmokeResult(False, None, problem, 0, "")
        with RuntimeApiEmulator(event, function_name=function_name, region=region, timeout=timeout) as api:
            run_env = lambda_env(api.address, handler, task_root=task_root, opt=opt,
                                 runtime_dir=runtime_dir, function_name=function_name, region=region,
                                 memory_mb=memory_mb, user_env=env, runtime=runtime)
            argv: list[str] = [str(bootstrap)]
            if qemu is not None:
                shim = write_exec_shim(Path(tmp), qemu)
                if _head(bootstrap).startswith(ELF_MAGIC):
                    argv.insert(0, str(shim))
                elif handler_path is None or not _head(handler_path).startswith(b"#!"):
                    # A script bootstrap execs the handler through the wrapper, as Lambda's runtimes do; a
                    # script handler runs as it is, through its own #! interpreter.
                    run_env["AWS_LAMBDA_EXEC_WRAPPER"] = str(shim)
                if Path(AARCH64_SYSROOT).is_dir():
                    run_env.setdefault("QEMU_LD_PREFIX", AARCH64_SYSROOT)
            return _invoke(api, argv, run_env, task_root, timeout)


def _check_inputs(function_zip: Path, handler: str, layer_zip: Path | None, event: bytes,
                  timeout: float, runtime: str) -> None:
    for what, path in (("function zip", function_zip), ("layer zip", layer_zip)):
        if path is None:
            continue
        _check_regular_file(Path(path), f"{what} {str(path)!r}",
                           "pass the zip that go-arm-lambda package wrote (build it first, or fix the path)")
        if not zipfile.is_zipfile(path):
            raise UsageError(f"{what} {str(path)!r} is not a zip file",
                             "pass the zip that go-arm-lambda package wrote")
    limits.check_handler(handler)
    _check_event(event, "the event")
    if not (math.isfinite(timeout) and 0 < timeout <= limits.MAX_TIMEOUT_S):
        raise UsageError(f"timeout {timeout:g} s is out of range: Lambda allows more than 0 and at most "
                         f"{limits.MAX_TIMEOUT_S} s", "pass --timeout in seconds, e.g. 10")
    if runtime not in limits.RUNTIME_GLIBC:
        raise UsageError(f"runtime {runtime!r} cannot be smoke-tested", "use " + " or ".join(limits.RUNTIME_GLIBC))


def _host_is_arm64() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64")


def which_qemu(search_path: str | None = None) -> str | None:
    """The aarch64 user emulator on PATH (or on `search_path`, which the doctor uses to check another PATH)."""
    return next((p for p in (shutil.which(n, path=search_path) for n in QEMU_NAMES) if p), None)


def find_qemu() -> str:
    path = which_qemu()
    if path:
        return path
    raise ToolchainError("qemu-aarch64-static is not installed, so arm64 functions cannot run on this "
                         f"{platform.machine()} host", "install qemu-user-static (apt-get install "
                         "qemu-user-static), run on an arm64 machine, or turn smoke off with --no-smoke")


def write_exec_shim(directory: Path, qemu: str) -> Path:
    """A wrapper that runs an arm64 program through qemu after the checks the kernel's execve would make.

    qemu-user exits with status 1 and no message when the file is not executable, which would hide a lost
    exec bit, the most common packaging mistake; Lambda says "permission denied" there, and so do we.
    """
    shim = directory / "qemu-exec"
    shim.write_text(
        "#!/bin/sh\n"
        '[ -f "$1" ] || { echo "$1: No such file or directory" >&2; exit 127; }\n'
        '[ -x "$1" ] || { echo "$1: Permission denied (the file has no exec bit)" >&2; exit 126; }\n'
        f'exec "{qemu}" "$@"\n')
    shim.chmod(0o755)
    return shim


def _head(path: Path) -> bytes:
    """The bytes the kernel looks at to decide how to run a file; b"" for anything but a readable file."""
    if not path.is_file():  # never open a FIFO: it would block
        return b""
    try:
        with path.open("rb") as f:
            return f.read(SHEBANG_MAX)
    except OSError:
        return b""


def _exec_problem(path: Path, what: str, *, cwd: Path) -> str | None:
    """Why execve would refuse `path`, said the way Lambda would, where the runner would say it badly:
    qemu-user exits 1 without a word on a file that is not ELF, and a missing #! interpreter surfaces as
    ENOENT, as if the file itself were missing. None when it would start, or when starting it (or the
    bootstrap's own checks) says what is wrong clearly: a missing file, a directory, a lost exec bit."""
    head = _head(path)
    if not head or head.startswith(ELF_MAGIC):
        return None
    if not head.startswith(b"#!"):
        return (f"{what} is neither an ELF executable nor a #! script: Lambda would fail with `exec format "
                "error`; package the Linux arm64 binary (GOOS=linux GOARCH=arm64), or start a script with a #! "
                "line")
    words = head[2:].split(b"\n", 1)[0].split()
    interpreter = words[0].decode("utf-8", "replace") if words else ""
    if not interpreter or not os.path.exists(os.path.join(cwd, interpreter)):  # relative: the kernel's cwd
        return (f"{what} starts with #!{interpreter}, which does not exist here: it cannot start, and Lambda "
                "would fail the same way (Runtime.InvalidEntrypoint, no such file or directory); point the #! "
                "line at an interpreter the runtime has, such as /bin/sh")
    return None


def lambda_env(api_address: str, handler: str, *, task_root: Path, opt: Path, runtime_dir: Path,
               function_name: str, region: str, memory_mb: int,
               user_env: Mapping[str, str] | None = None, runtime: str = "provided.al2023") -> dict[str, str]:
    """The environment Lambda gives a provided.* runtime: nothing of the host's but PATH."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y/%m/%d")
    env = dict(user_env or {})
    # Lambda rejects reserved names in a function's configuration, so its own values always win.
    env.update({
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "AWS_LAMBDA_RUNTIME_API": api_address,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[$LATEST]{uuid.uuid4().hex}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "LD_LIBRARY_PATH": f"{task_root}/lib:{task_root}:{opt}/lib",
        # Dummy credentials: an SDK call made during init fails on auth, not by reaching for the host's.
        "AWS_ACCESS_KEY_ID": "ASIASMOKETESTDUMMYKEY",
        "AWS_SECRET_ACCESS_KEY": "smoke-test-dummy-secret",
        "AWS_SESSION_TOKEN": "smoke-test-dummy-session-token",
    })
    return env


def extract_zip(zip_path: Path, dest: Path) -> None:
    """Extract with the unix permission bits the zip carries (zipfile drops them), refusing names outside
    `dest`, more than Lambda would unzip, and entries this file system cannot hold.

    The modes matter: a handler stored without its exec bit is what breaks in Lambda, so it must break here.
    """
    try:
        _extract(zip_path, dest.resolve())
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError) as exc:
        raise UsageError(f"{str(zip_path)!r} is damaged ({exc})", "package the function again") from None


def _extract(zip_path: Path, root: Path) -> None:
    seen: set[str] = set()
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        # zipfile stops each entry at its declared size (and checks its CRC there), so the sum bounds what
        # is written: a zip bomb is refused before its first byte lands on disk.
        unzipped = sum(info.file_size for info in infos)
        if unzipped > limits.MAX_UNZIPPED:
            raise UsageError(f"{str(zip_path)!r} unzips to {unzipped:,} bytes, over Lambda's limit of "
                             f"{limits.MAX_UNZIPPED:,} bytes (250 MB) for a function and its layers",
                             "make the binary smaller (-ldflags '-s -w', fewer dependencies)")
        for info in infos:
            name = info.filename
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or re.match(r"^[A-Za-z]:", name):
                raise UsageError(f"{str(zip_path)!r} holds an unsafe name {name!r}",
                                 "rebuild the zip with relative names only (go-arm-lambda package does)")
            if name.rstrip("/") in seen:  # a second copy could re-point a link already checked
                raise UsageError(f"{str(zip_path)!r} holds {name!r} twice", "rebuild the zip")
            seen.add(name.rstrip("/"))
            try:
                _extract_entry(zf, info, root, zip_path)
            except OSError as exc:  # a name too long for this file system, "a" then "a/b", ...
                clash = exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR)
                why = "a file and a directory in it share a path" if clash else exc.strerror or str(exc)
                raise UsageError(f"{str(zip_path)!r} holds {name!r}, which cannot be extracted: {why}",
                                 "rebuild the zip (go-arm-lambda package writes one file per name)") from None


def _extract_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path, zip_path: Path) -> None:
    name = info.filename
    mode = (info.external_attr >> 16) if info.create_system == 3 else 0
    target = root / name
    if not target.parent.resolve().is_relative_to(root):
        raise UsageError(f"{str(zip_path)!r} writes {name!r} through a link outside the archive",
                         "rebuild the zip without symlinks that point outside it")
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if stat.S_ISLNK(mode):
        link = zf.read(info).decode()
        if os.path.isabs(link) or not (target.parent / link).resolve().is_relative_to(root):
            raise UsageError(f"{str(zip_path)!r} holds a symlink {name!r} -> {link!r} outside it",
                             "ship the file itself instead of a link")
        target.symlink_to(link)
        return
    with zf.open(info) as src, target.open("wb") as out:
        shutil.copyfileobj(src, out)
    # Permission bits only: a setuid, setgid or sticky bit from a zip has no business on this machine. No
    # unix mode at all (a zip made on Windows) means no exec bit, so a handler packaged that way fails here.
    target.chmod(mode & 0o777 if mode else 0o644)


class _Tail:
    """The last lines of a stream, bounded in lines and bytes, filled by a draining thread."""

    def __init__(self) -> None:
        self._lines: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)

    def drain(self, stream: IO[bytes]) -> None:
        for line in iter(lambda: stream.readline(65536), b""):  # bounded: a function may print no newline
            self._lines.append(line[-TAIL_BYTES:])
        stream.close()

    def text(self) -> str:
        return b"".join(self._lines)[-TAIL_BYTES:].decode("utf-8", "replace")

    def last_line(self) -> str:
        return next((ln.strip() for ln in reversed(self.text().splitlines()) if ln.strip()), "")


def _invoke(api: RuntimeApiEmulator, argv: list[str], env: dict[str, str], cwd: Path,
            timeout: float) -> SmokeResult:
    started = time.monotonic()
    try:
        child = proc.start(argv, cwd=cwd, env=env)
    except OSError as exc:  # e.g. a bootstrap without its exec bit, or not a program at all
        return SmokeResult(False, None, f"cannot start {argv[-1]}: {exc.strerror or exc}; Lambda would "
                           "fail with Runtime.InvalidEntrypoint: store it with mode 0755 (a script needs #!)",
                           0, "")
    stderr, stdout = _Tail(), _Tail()
    assert child.stdout is not None and child.stderr is not None
    threads = [threading.Thread(target=tail.drain, args=(stream,), daemon=True)
               for tail, stream in ((stdout, child.stdout), (stderr, child.stderr))]

    def reap() -> None:  # wakes the runner the moment the function exits, e.g. during init
        child.wait()
        api.notify()

    threads.append(threading.Thread(target=reap, daemon=True))
    for t in threads:
        t.start()
    try:
        api.wait_for(lambda: api.state.outcome is not None or child.poll() is not None, timeout)
        exited_early = child.poll() is not None
    finally:
        proc.stop(child, grace=STOP_GRACE_S)
    for t in threads:
        t.join(timeout=STOP_GRACE_S)
    outcome = api.state.outcome
    duration_ms = int(((outcome.at if outcome else time.monotonic()) - started) * 1000)
    returncode = child.returncode if exited_early else None
    error = _failure(api, outcome, returncode, stderr.last_line() or stdout.last_line(), timeout)
    response = _parse_response(outcome.body) if error is None and outcome else None
    return SmokeResult(error is None, response, error, duration_ms, stderr.text(),
                       payload=outcome.body if outcome else b"", timed_out=outcome is None and returncode is None)


def _failure(api: RuntimeApiEmulator, outcome: Posted | None, returncode: int | None, last_line: str,
             timeout: float) -> str | None:
    """The one-line reason the invocation failed, or None when the function answered.

    `returncode` is None when the process was still running when the wait ended, i.e. it timed out.
    """
    if outcome is not None:
        return None if outcome.kind == "response" else f"Handler returned an error: {outcome.describe()}"
    init = api.state.init_error
    reported = f" after reporting an init error ({init.describe()})" if init else ""
    if returncode is None:
        return f"no response within {timeout:g} s{reported}"
    phase = "during the invocation" if api.state.served else "during init"
    status = (f"was killed by {_signal_name(-returncode)}" if returncode < 0
              else f"exited with status {returncode}")
    hint = ""
    if returncode == 0 and not api.state.served and not init:
        hint = " (it never asked for an event: does main call lambda.Start?)"
    return f"function {status} {phase}{reported}{hint}" + (f": {last_line}" if last_line else "")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _parse_response(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def format_result(result: SmokeResult) -> str:
    """Human output for `go-arm-lambda smoke`."""
    if result.ok:
        body = (result.response if isinstance(result.response, str)
                else json.dumps(result.response, indent=2, sort_keys=True))
        return f"smoke ok in {result.duration_ms} ms\nresponse:\n{body}"
    lines = [f"smoke failed after {result.duration_ms} ms: {result.error}"]
    if result.stderr_tail.strip():
        lines += ["stderr (last lines):", *("  " + ln for ln in result.stderr_tail.rstrip().splitlines())]
    return "\n".join(lines)
