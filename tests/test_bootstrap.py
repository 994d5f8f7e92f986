"""The real layer/bootstrap, run in real processes under every shell it must work with.

Lambda runs /opt/bootstrap through its `#!/bin/sh` line; provided.al2023's /bin/sh is bash, busybox-based
images have ash and Debian has dash. Running every case under dash and busybox keeps the script POSIX: a
bashism fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT, require_tool

BOOTSTRAP = ROOT / "layer" / "bootstrap"
# A PATH with nothing on it: every case passes with it, so the script cannot be calling ls, basename, ...
NO_PATH = "/nonexistent-bin"
# Names the shell itself keeps up to date; everything else must reach the handler untouched.
SHELL_OWNED = {"PWD", "SHLVL"}
LAUNCHERS = ["shebang", "dash", "busybox"]


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0755 copy, so the shebang launch does not depend on how the checkout kept the file's mode."""
    copy = tmp_path_factory.mktemp("layer") / "bootstrap"
    shutil.copyfile(BOOTSTRAP, copy)
    copy.chmod(0o755)
    return copy


@pytest.fixture(params=LAUNCHERS)
def launch(request: pytest.FixtureRequest, bootstrap: Path) -> list[str]:
    """argv starting the bootstrap: as Lambda does (the kernel reads `#!/bin/sh`) or under a named shell."""
    if request.param == "shebang":
        return [str(bootstrap)]
    if request.param == "dash":
        return [require_tool("dash"), str(bootstrap)]
    return [require_tool("busybox"), "sh", str(bootstrap)]


def run(launch: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(launch, env={"PATH": NO_PATH, **env}, capture_output=True, text=True, timeout=10,
                          check=False)


def assert_fails(result: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert (result.returncode, result.stderr, result.stdout) == (code, f"bootstrap: {line}\n", "")


# ---------------------------------------------------------------------------------------------- failures


def test_repo_copy_is_an_executable_posix_sh_script() -> None:
    assert BOOTSTRAP.read_bytes().startswith(b"#!/bin/sh\n")
    assert BOOTSTRAP.stat().st_mode & 0o111 == 0o111, "layer/bootstrap lost its exec bit: chmod 755 it"


@pytest.mark.parametrize("handler_env", [{}, {"_HANDLER": ""}], ids=["unset", "empty"])
def test_handler_unset_or_empty(launch: list[str], tmp_path: Path, handler_env: dict[str, str]) -> None:
    result = run(launch, {"LAMBDA_TASK_ROOT": str(tmp_path), **handler_env})
    assert_fails(result, 10, "_HANDLER is not set or empty: set the function's Handler to the name of its "
                             "binary in the zip (e.g. orders)")


@pytest.mark.parametrize("root_env", [{}, {"LAMBDA_TASK_ROOT": ""}], ids=["unset", "empty"])
def test_task_root_unset_or_empty(launch: list[str], root_env: dict[str, str]) -> None:
    result = run(launch, {"_HANDLER": "orders", **root_env})
    assert_fails(result, 11, "LAMBDA_TASK_ROOT is not set or empty: it must name the directory holding the "
                             "function code (/var/task on Lambda)")


def test_absolute_handler(launch: list[str], tmp_path: Path) -> None:
    # /bin/true exists and is executable: the script must refuse it before looking at the file.
    result = run(launch, {"_HANDLER": "/bin/true", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 12, f'handler "/bin/true" is an absolute path, outside the task root {tmp_path}: '
                             "use the binary's path inside the function zip (e.g. orders)")


@pytest.mark.parametrize("handler", ["..", "../orders", "bin/..", "bin/../../orders"])
def test_handler_with_dotdot_segment(launch: list[str], tmp_path: Path, handler: str) -> None:
    root = tmp_path / "task"
    (root / "bin").mkdir(parents=True)
    outside = tmp_path / "orders"
    outside.write_text("#!/bin/sh\necho escaped\n")
    outside.chmod(0o755)
    result = run(launch, {"_HANDLER": handler, "LAMBDA_TASK_ROOT": str(root)})
    assert_fails(result, 12, f'handler "{handler}" has a ".." segment and would leave the task root {root}: '
                             "use the binary's path inside the function zip (e.g. orders)")


@pytest.mark.parametrize(("handler", "shown"), [
    ("my orders", ' after "my"'), ("orders\n", ' after "orders"'), ("bin/orders\tx", ' after "bin/orders"'),
    ("\norders", ""), ("orders\r", ' after "orders"'),
])
def test_handler_with_whitespace(launch: list[str], tmp_path: Path, handler: str, shown: str) -> None:
    """Lambda's Handler cannot hold whitespace; the message stays one line even when the value has a break."""
    target = tmp_path / handler
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("#!/bin/sh\necho ran\n")
    target.chmod(0o755)  # it exists and could run: refused for its name alone
    result = run(launch, {"_HANDLER": handler, "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 12, f"handler contains whitespace (a space, tab or line break){shown}, which a Lambda "
                             "Handler cannot: use the binary's path inside the function zip (e.g. orders)")


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_handler_with_a_trailing_slash(launch: list[str], tmp_path: Path, kind: str) -> None:
    target = tmp_path / "orders"
    if kind == "file":
        target.write_text("#!/bin/sh\necho ran\n")
        target.chmod(0o755)
    else:
        target.mkdir()
    result = run(launch, {"_HANDLER": "orders/", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 12, 'handler "orders/" ends in "/", so it names a directory, not the binary: use the '
                             "binary's path inside the function zip without the trailing / (e.g. orders)")


def test_dots_inside_a_name_are_not_a_segment(launch: list[str], tmp_path: Path) -> None:
    result = run(launch, {"_HANDLER": "..orders", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert result.returncode == 13


def test_missing_handler_lists_the_task_root(launch: list[str], tmp_path: Path) -> None:
    (tmp_path / "hello").write_bytes(b"")
    (tmp_path / "orders").mkdir()
    result = run(launch, {"_HANDLER": "order", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 13, f'handler "order" not found: {tmp_path}/order does not exist; '
                             f"{tmp_path} contains: hello, orders")


def test_missing_handler_listing_is_capped(launch: list[str], tmp_path: Path) -> None:
    for i in range(8):
        (tmp_path / f"fn{i}").write_bytes(b"")
    result = run(launch, {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 13, f'handler "orders" not found: {tmp_path}/orders does not exist; '
                             f"{tmp_path} contains 8 names: fn0, fn1, fn2, fn3, fn4, ...")


def test_missing_handler_listing_counts_dotfiles_and_broken_links(launch: list[str], tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("X=1")
    (tmp_path / "..data").write_text("")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    result = run(launch, {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 13, f'handler "orders" not found: {tmp_path}/orders does not exist; '
                             f"{tmp_path} contains: gone, .env, ..data")


def test_missing_handler_in_empty_task_root(launch: list[str], tmp_path: Path) -> None:
    result = run(launch, {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 13, f'handler "orders" not found: {tmp_path}/orders does not exist; '
                             f"{tmp_path} is empty")


def test_missing_task_root(launch: list[str], tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    result = run(launch, {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(root)})
    assert_fails(result, 13, f'handler "orders" not found: {root}/orders does not exist; '
                             f"the task root {root} does not exist")


def test_dangling_symlink(launch: list[str], tmp_path: Path) -> None:
    (tmp_path / "orders").symlink_to(tmp_path / "gone")
    result = run(launch, {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 13, f'handler "orders" is a broken symlink: {tmp_path}/orders points to nothing; '
                             "put the binary itself in the zip")


def test_handler_is_a_directory(launch: list[str], tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    result = run(launch, {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 14, f'handler "orders" is a directory: {tmp_path}/orders; '
                             "set the Handler to the binary's name")


def test_handler_not_executable(launch: list[str], tmp_path: Path) -> None:
    # The classic zip made on Windows: the file is there, the exec bit is not.
    handler = tmp_path / "orders"
    handler.write_text("#!/bin/sh\necho ran\n")
    handler.chmod(0o644)
    result = run(launch, {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(tmp_path)})
    assert_fails(result, 15, f'handler "orders" is not an executable file: {tmp_path}/orders; '
                             "zip it with mode 0755 (go-arm-lambda package does)")


# ---------------------------------------------------------------------------------------------- success


def write_handler(path: Path) -> None:
    """A handler that reports its PID, argv and environment, so the test sees exactly what it received."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "print(json.dumps({'pid': os.getpid(), 'argv': sys.argv, 'env': dict(os.environ)}))\n")
    path.chmod(0o755)


def start(launch: list[str], env: dict[str, str], *args: str, cwd: Path) -> tuple[int, dict]:
    proc = subprocess.Popen([*launch, *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, err) == (0, "")
    return proc.pid, json.loads(out)


def test_execs_handler_with_args_and_environment(launch: list[str], tmp_path: Path) -> None:
    handler = tmp_path / "task" / "bin" / "orders"
    write_handler(handler)
    args = ["plain", "two words", "", "*", "$HOME", "-e", "line\nbreak"]
    # Names the script assigns (on the failure path only, it must stay so) and values a careless script mangles.
    env = {"_HANDLER": "bin/orders", "LAMBDA_TASK_ROOT": str(tmp_path / "task"), "PATH": NO_PATH,
           "PWD": str(tmp_path), "LC_CTYPE": "C.UTF-8", "found": "keep", "count": "7", "entry": "x y",
           "before": "b",
           "AWS_LAMBDA_FUNCTION_NAME": "orders", "ODD": "a\\nb $x `y` 'q' \"d\" * %s"}
    pid, seen = start(launch, env, *args, cwd=tmp_path)
    assert seen["pid"] == pid, "the bootstrap must exec the handler, not run it as a child"
    assert seen["argv"] == [str(handler), *args]
    assert {k: v for k, v in seen["env"].items() if k not in SHELL_OWNED} == {
        k: v for k, v in env.items() if k not in SHELL_OWNED}
    assert seen["env"]["PWD"] == str(tmp_path)


def test_exec_wrapper_gets_handler_path_then_args(launch: list[str], tmp_path: Path) -> None:
    handler = tmp_path / "task" / "orders"
    write_handler(handler)
    # The wrapper is a shell script that execs what it was given, as Lambda's wrapper scripts do.
    wrapper = tmp_path / "wrapper"
    wrapper.write_text('#!/bin/sh\nexport WRAPPED_FOR="$1"\nexec "$@"\n')
    wrapper.chmod(0o755)
    env = {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(tmp_path / "task"), "PATH": NO_PATH,
           "LC_CTYPE": "C.UTF-8", "AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)}
    pid, seen = start(launch, env, "a b", cwd=tmp_path)
    assert seen["pid"] == pid
    assert seen["argv"] == [str(handler), "a b"]
    assert seen["env"]["WRAPPED_FOR"] == str(handler)


def test_success_path_forks_nothing(launch: list[str], tmp_path: Path) -> None:
    """strace sees every process: exactly one execve for the bootstrap, one for the handler, no fork/clone."""
    strace = require_tool("strace")
    handler = tmp_path / "task" / "orders"
    handler.parent.mkdir()
    handler.write_bytes(Path("/bin/true").read_bytes())
    handler.chmod(0o755)
    trace = tmp_path / "trace"
    env = {"_HANDLER": "orders", "LAMBDA_TASK_ROOT": str(handler.parent), "PATH": NO_PATH}
    subprocess.run([strace, "-f", "-qq", "-o", trace, "-e", "trace=execve,fork,vfork,clone,clone3", *launch],
                   env=env, check=True, timeout=20)
    calls = [line.split(None, 1)[1].split("(", 1)[0] for line in trace.read_text().splitlines()]
    assert calls == ["execve", "execve"]
    assert f'execve("{handler}"' in trace.read_text().splitlines()[1]


# ---------------------------------------------------------------------------------------------- real arm64


class _RuntimeApi(BaseHTTPRequestHandler):
    """One invocation of the Lambda Runtime API: hands out `{}` once and keeps the response."""

    protocol_version = "HTTP/1.1"

    responses: list[bytes]
    answered: threading.Event
    handed_out: threading.Event

    def do_GET(self) -> None:
        if self.handed_out.is_set():
            # aws-lambda-go asks for the next event straight away; hold it until the test is done.
            self.answered.wait(30)
            self.send_error(503)
            return
        self.handed_out.set()
        self.send_response(200)
        for name, value in (("Lambda-Runtime-Aws-Request-Id", "req-1"),
                            ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000)),
                            ("Lambda-Runtime-Invoked-Function-Arn",
                             "arn:aws:lambda:eu-west-1:123456789012:function:envdump"),
                            ("Lambda-Runtime-Trace-Id", "Root=1-0-0"), ("Content-Length", "2")):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"{}")

    def do_POST(self) -> None:
        self.responses.append(self.path.encode() + b" " + self._body())
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.answered.set()

    def _body(self) -> bytes:
        """aws-lambda-go streams the response: chunked transfer encoding, possibly with trailers."""
        if "Content-Length" in self.headers:
            return self.rfile.read(int(self.headers["Content-Length"]))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return body

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def runtime_api() -> Iterator[type[_RuntimeApi]]:
    api = type("Api", (_RuntimeApi,), {"responses": [], "answered": threading.Event(),
                                       "handed_out": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), api)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api.address = f"127.0.0.1:{server.server_address[1]}"
    yield api
    api.answered.set()
    server.shutdown()
    server.server_close()


def test_real_arm64_function_through_qemu_wrapper(launch: list[str], fixture_bins: Path,
                                                  runtime_api: type[_RuntimeApi]) -> None:
    """The layer as the smoke runner uses it: qemu as exec wrapper, the real envdump function behind it."""
    qemu = require_tool("qemu-aarch64-static")
    env = {"_HANDLER": "envdump", "LAMBDA_TASK_ROOT": str(fixture_bins), "PATH": NO_PATH,
           "AWS_LAMBDA_RUNTIME_API": runtime_api.address, "AWS_LAMBDA_EXEC_WRAPPER": qemu,
           "AWS_LAMBDA_FUNCTION_NAME": "envdump"}
    proc = subprocess.Popen([*launch, "--flag"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert runtime_api.answered.wait(30), "no response from envdump within 30 s"
    finally:
        proc.kill()
        proc.communicate()
    path, body = runtime_api.responses[0].split(b" ", 1)
    assert path == b"/2018-06-01/runtime/invocation/req-1/response"
    seen = json.loads(body)
    assert seen["args"] == [str(fixture_bins / "envdump"), "--flag"]
    assert {k: seen["env"][k] for k in env} == env


# ---------------------------------------------------------------------------------------------- benchmark


def test_startup_bench_reports_a_function_that_never_asks(tmp_path: Path) -> None:
    """bench/bootstrap_startup.py's timeout path: one clear exit with the child's stderr, the child gone."""
    spec = importlib.util.spec_from_file_location("bootstrap_startup", ROOT / "bench" / "bootstrap_startup.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    pid_file = tmp_path / "pid"
    silent = [sys.executable, "-c", f"import os, sys, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
              "sys.stderr.write('still warming up'); sys.stderr.flush(); time.sleep(60)"]
    started = time.monotonic()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(1.5)
        with pytest.raises(SystemExit) as exited:
            bench.time_to_first_request(silent, {"PATH": "/usr/bin:/bin"}, listener)
    assert time.monotonic() - started < 5
    assert exited.value.code == f"{sys.executable} made no Runtime API request within 1.5 s: still warming up"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
