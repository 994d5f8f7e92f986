"""Smoke-invoke a packaged function the way Lambda does, on this machine, before anything is deployed.

`smoke()` extracts the function zip (and layer zip) into a temporary task root and `/opt`, starts the real
`bootstrap` with Lambda's environment against a `RuntimeApiEmulator` (runtime_api.py), and waits for the
answer. arm64 binaries run through qemu-user on x86_64 hosts, with no binfmt registration needed.
"""

from __future__ import annotations

import base64
import collections
import datetime
import json
import math
import os
import signal
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from go_arm_lambda import config, limits, proc, toolchain
from go_arm_lambda.errors import UsageError
from go_arm_lambda.package import extract_zip
from go_arm_lambda.runtime_api import TOO_LARGE, Posted, RuntimeApiEmulator

TAIL_LINES = 20
TAIL_BYTES = 4096
STOP_GRACE_S = 1.0
ELF_MAGIC = b"\x7fELF"
# The kernel reads at most this much of a `#!` line (BINPRM_BUF_SIZE).
SHEBANG_MAX = 256


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

    def to_record(self) -> dict[str, Any]:
        """All of the result as JSON values, for the content cache."""
        return {**self.to_json(), "payload": base64.b64encode(self.payload).decode(), "timed_out": self.timed_out}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SmokeResult:
        """The result `to_record` stored; a record of another shape raises (the cache then runs it again)."""
        return cls(**{**record, "payload": base64.b64decode(record["payload"], validate=True)})


def smoke(function_zip: Path, handler: str, *, layer_zip: Path | None = None, event: bytes = b"{}",
          timeout: float = 10.0, function_name: str = "smoke-test", region: str = "us-east-1",
          memory_mb: int = 128, env: Mapping[str, str] | None = None,
          runtime: str = "provided.al2023", function_files: Mapping[str, Path] | None = None) -> SmokeResult:
    """Invoke the packaged function once with `event`, as Lambda would, and say what came back.

    `function_files`: files that hold entries of the function zip (the binary it was made from), taken instead
    of inflating those entries when the zip's own size and CRC-32 vouch for them (package.extract_zip).

    Bad input raises UsageError before anything runs; everything the function does, including failing to
    start, is a SmokeResult.
    """
    _check_inputs(function_zip, handler, layer_zip, event, timeout, runtime)
    qemu = None if toolchain.is_arm64() else toolchain.find_qemu()
    with tempfile.TemporaryDirectory(prefix="go-arm-lambda-smoke-", ignore_cleanup_errors=True) as tmp:
        task_root, opt, runtime_dir = Path(tmp, "task"), Path(tmp, "opt"), Path(tmp, "runtime")
        for d in (task_root, opt, runtime_dir):
            d.mkdir()
        extract_zip(function_zip, task_root, function_files)
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
                if Path(toolchain.AARCH64_SYSROOT).is_dir():
                    run_env.setdefault("QEMU_LD_PREFIX", toolchain.AARCH64_SYSROOT)
            return _invoke(api, argv, run_env, task_root, timeout)


def _check_inputs(function_zip: Path, handler: str, layer_zip: Path | None, event: bytes,
                  timeout: float, runtime: str) -> None:
    for what, path in (("function zip", function_zip), ("layer zip", layer_zip)):
        if path is None:
            continue
        config.check_regular_file(Path(path), f"{what} {str(path)!r}",
                                  "pass the zip that go-arm-lambda package wrote (build it first, or fix the path)")
        if not zipfile.is_zipfile(path):
            raise UsageError(f"{what} {str(path)!r} is not a zip file",
                             "pass the zip that go-arm-lambda package wrote")
    limits.check_handler(handler)
    config.check_event(event, "the event")
    if not (math.isfinite(timeout) and 0 < timeout <= limits.MAX_TIMEOUT_S):
        raise UsageError(f"timeout {timeout:g} s is out of range: Lambda allows more than 0 and at most "
                         f"{limits.MAX_TIMEOUT_S} s", f"give seconds, e.g. {config.say('smoke_timeout', '10')}")
    if runtime not in limits.RUNTIME_GLIBC:
        raise UsageError(f"runtime {runtime!r} cannot be smoke-tested", "use " + " or ".join(limits.RUNTIME_GLIBC))


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
        child = proc.start(argv, cwd=cwd, env=env, grace=STOP_GRACE_S)
    except OSError as exc:  # e.g. a bootstrap without its exec bit, or not a program at all
        return SmokeResult(False, None, f"cannot start {argv[-1]}: {exc.strerror or exc}; Lambda would "
                           "fail with Runtime.InvalidEntrypoint: store it with mode 0755 (a script needs #!)",
                           0, "")
    stderr, stdout = _Tail(), _Tail()
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
        proc.stop(child)
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
        if outcome.error_type == TOO_LARGE:
            return f"the response is larger than Lambda allows: {outcome.describe()}"
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
