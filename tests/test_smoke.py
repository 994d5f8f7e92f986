"""smoke: real arm64 builds run through the real layer bootstrap and qemu against the Runtime API emulator,
from zips written by go_arm_lambda.package and by other tools."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import FUNCTIONS_MODULE, ROOT, GoBuilder, require_tool
from foreignzip import foreign_zip
from go_arm_lambda import config, package
from go_arm_lambda.errors import UsageError
from go_arm_lambda.smoke import SmokeResult, format_result, lambda_env, smoke

# ---------------------------------------------------------------------------------------------- inputs


def test_inputs_are_checked_before_anything_runs(tmp_path: Path, answer_zip: Path) -> None:
    not_zip = tmp_path / "f.zip"
    not_zip.write_text("hello")
    cases = [
        (dict(function_zip=tmp_path / "no.zip", handler="x"), "function zip '.*no.zip' does not exist"),
        (dict(function_zip=not_zip, handler="x"), "function zip '.*f.zip' is not a zip file"),
        (dict(function_zip=answer_zip, handler="x", layer_zip=not_zip), "layer zip '.*' is not a zip file"),
        (dict(function_zip=tmp_path, handler="x"), f"function zip '{tmp_path}' is a directory"),
        (dict(function_zip=Path("/dev/zero"), handler="x"), "function zip '/dev/zero' is not a regular file"),
        (dict(function_zip=answer_zip, handler="x", layer_zip=tmp_path), "layer zip '.*' is a directory"),
        (dict(function_zip=answer_zip, handler="../answer"), "handler '../answer' is not valid"),
        (dict(function_zip=answer_zip, handler="an swer"), "handler 'an swer' is not valid"),
        (dict(function_zip=answer_zip, handler="answer", event=b"{"), "the event is not valid JSON"),
        (dict(function_zip=answer_zip, handler="answer", runtime="go1.x"), "runtime 'go1.x' cannot be smoke-"),
    ]
    for timeout in (0, -1, 900.5, 1e12, float("inf"), float("nan")):
        cases.append((dict(function_zip=answer_zip, handler="answer", timeout=timeout),
                      re.escape(f"timeout {timeout:g} s is out of range: Lambda allows more than 0 and at most "
                                "900 s. give seconds, e.g. --timeout 10")))
    for kwargs, says in cases:
        with pytest.raises(UsageError, match=says) as info, config.speaking_to("smoke"):
            smoke(**kwargs)  # type: ignore[arg-type]
        assert info.value.exit_code == 2


def test_damaged_zip_is_a_usage_error(tmp_path: Path) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", [("answer", b"A" * 4096, 0o100755)])
    data = bytearray(zpath.read_bytes())
    data[data.index(b"AAAA")] = ord("B")  # stored uncompressed: the CRC no longer matches
    zpath.write_bytes(bytes(data))
    with pytest.raises(UsageError, match=f"'{zpath}' is damaged"):
        smoke(zpath, "answer")


# ---------------------------------------------------------------------------------------------- real runs


@pytest.fixture(scope="session")
def qemu() -> str:
    return require_tool("qemu-aarch64-static")


@pytest.fixture(scope="session")
def zips(tmp_path_factory: pytest.TempPathFactory, fixture_bins: Path, qemu: str) -> Path:
    return tmp_path_factory.mktemp("smoke-zips")


def function_zip(zips: Path, binary: Path, handler: str | None = None) -> Path:
    handler = handler or binary.name
    out = zips / f"{binary.parent.name}-{binary.name}-{handler}.zip"
    if not out.exists():
        package.package_function(binary, handler, out)
    return out


@pytest.fixture(scope="session")
def layer_zip(zips: Path) -> Path:
    return package.package_layer(zips / "layer.zip").path


@pytest.fixture(scope="session")
def answer_zip(zips: Path, fixture_bins: Path) -> Path:
    return function_zip(zips, fixture_bins / "answer")


def run_fixture(zips: Path, fixture_bins: Path, layer_zip: Path, name: str, **kwargs: object) -> SmokeResult:
    started = time.monotonic()
    result = smoke(function_zip(zips, fixture_bins / name), name, layer_zip=layer_zip, **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - started < 8, "a smoke run must stay bounded"
    return result


def test_answer_echoes_event_and_request_id(zips: Path, fixture_bins: Path, layer_zip: Path) -> None:
    result = run_fixture(zips, fixture_bins, layer_zip, "answer", event=b'{"order": 42}',
                         function_name="orders", region="eu-central-1")
    assert result.ok and result.error is None, result
    assert result.response["event"] == {"order": 42}
    assert uuid.UUID(result.response["request_id"])  # it read the Lambda-Runtime-Aws-Request-Id header
    assert result.response["arn"] == "arn:aws:lambda:eu-central-1:000000000000:function:orders"
    assert 0 < result.duration_ms < 5000
    assert result.to_json() == {"ok": True, "response": result.response, "error": None,
                                "duration_ms": result.duration_ms, "stderr_tail": result.stderr_tail}
    assert format_result(result).startswith(f"smoke ok in {result.duration_ms} ms\nresponse:\n{{")


def test_function_error_is_reported(zips: Path, fixture_bins: Path, layer_zip: Path) -> None:
    result = run_fixture(zips, fixture_bins, layer_zip, "fail")
    assert not result.ok and result.response is None
    assert result.error == "Handler returned an error: errorString: order 42 was rejected"
    assert "order 42 was rejected" in result.stderr_tail  # aws-lambda-go logs the error too
    assert format_result(result).startswith("smoke failed after ")


def test_panic_is_reported_with_its_message(zips: Path, fixture_bins: Path, layer_zip: Path) -> None:
    result = run_fixture(zips, fixture_bins, layer_zip, "panic")
    assert not result.ok
    assert result.error == "Handler returned an error: string: nil map in handler"


def test_exit_during_init_reports_status_and_stderr(zips: Path, fixture_bins: Path, layer_zip: Path) -> None:
    result = run_fixture(zips, fixture_bins, layer_zip, "initexit")
    assert not result.ok
    assert result.error == "function exited with status 3 during init: fatal: TABLE_NAME is not set"
    assert result.stderr_tail == "fatal: TABLE_NAME is not set\n"
    assert "fatal: TABLE_NAME is not set" in format_result(result).split("stderr (last lines):")[1]


def test_function_environment_reaches_the_function(zips: Path, fixture_bins: Path, layer_zip: Path) -> None:
    result = run_fixture(zips, fixture_bins, layer_zip, "initexit", env={"TABLE_NAME": "orders"})
    assert result.ok, result


def test_function_that_never_calls_lambda_start(zips: Path, fixture_bins: Path, layer_zip: Path) -> None:
    result = run_fixture(zips, fixture_bins, layer_zip, "nolambda")
    assert result.error == ("function exited with status 0 during init (it never asked for an event: "
                            "does main call lambda.Start?): I am not a Lambda function")


def test_missing_handler_shows_the_bootstrap_message(zips: Path, layer_zip: Path, answer_zip: Path) -> None:
    result = smoke(answer_zip, "orders", layer_zip=layer_zip)
    assert not result.ok
    assert result.error is not None and result.error.startswith("function exited with status 13 during init: "
                                                                'bootstrap: handler "orders" not found')
    assert "contains: answer" in result.error
    assert result.stderr_tail.startswith('bootstrap: handler "orders" not found')


def processes_mentioning(marker: str) -> dict[int, int]:
    """pid -> process group of every live process whose command line mentions `marker`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The kernel separates the arguments with NULs: "sleep 5" is b"sleep\0" b"5\0" there.
                if marker.encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                    found[int(entry.name)] = os.getpgid(int(entry.name))
            except (OSError, ProcessLookupError):  # it ended while we looked
                continue
    return found


def test_timeout_stops_the_function_and_cleans_up(zips: Path, fixture_bins: Path, layer_zip: Path,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a timeout nothing is left: no process of the function's group, no temporary task root."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where smoke makes its go-arm-lambda-smoke-* dir
    results: list[SmokeResult] = []
    runner = threading.Thread(target=lambda: results.append(
        run_fixture(zips, fixture_bins, layer_zip, "slow", timeout=2)))
    started = time.monotonic()
    runner.start()
    seen: dict[int, int] = {}
    while runner.is_alive():
        seen.update(processes_mentioning(str(scratch)))
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert seen, "the function (qemu running slow from the task root) was never seen running"
    left = processes_mentioning(str(scratch))
    for pid in left:  # a leak fails the test below, but must not outlive it
        os.kill(pid, signal.SIGKILL)
    assert left == {}
    for group in set(seen.values()):
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)  # no process of the function's group is left
    assert list(scratch.iterdir()) == []
    [result] = results
    assert (result.ok, result.error) == (False, "no response within 2 s")
    assert 2000 <= result.duration_ms < 3000
    assert elapsed < 4.5  # SIGTERM took it down; no wait for the 10-minute sleep


def test_bootstrap_mode_runs_the_zips_own_bootstrap(zips: Path, fixture_bins: Path) -> None:
    zpath = function_zip(zips, fixture_bins / "answer", "bootstrap")
    result = smoke(zpath, "bootstrap", event=b'[1, 2]')
    assert result.ok, result
    assert result.response["event"] == [1, 2]


def test_bootstrap_mode_without_a_bootstrap(answer_zip: Path, qemu: str) -> None:
    result = smoke(answer_zip, "answer")
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("Couldn't find valid bootstrap(s) in the function zip")


def test_envdump_sees_the_lambda_environment(zips: Path, fixture_bins: Path, layer_zip: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_SECRET", "must-not-leak")
    result = run_fixture(zips, fixture_bins, layer_zip, "envdump", function_name="orders", region="eu-west-1",
                         memory_mb=512, runtime="provided.al2")
    assert result.ok, result
    env, args = result.response["env"], result.response["args"]
    task_root = env["LAMBDA_TASK_ROOT"]
    assert args == [f"{task_root}/envdump"]  # the bootstrap exec'd the handler from the task root
    assert {k: env.get(k) for k in ("_HANDLER", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
                                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_DEFAULT_REGION",
                                    "AWS_LAMBDA_LOG_GROUP_NAME", "TZ")} == {
        "_HANDLER": "envdump", "AWS_LAMBDA_FUNCTION_NAME": "orders", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders", "TZ": ":UTC"}
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_provided.al2"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] and env["LAMBDA_RUNTIME_DIR"]
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_SESSION_TOKEN"]
    assert any(p.endswith("/opt/lib") for p in env["LD_LIBRARY_PATH"].split(":"))
    assert "HOST_SECRET" not in env and "HOME" not in env
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")  # aws-lambda-go copied the trace header


def test_execution_env_names_the_runtime(tmp_path: Path) -> None:
    def execution_env(**runtime: str) -> str:
        return lambda_env("127.0.0.1:1", "fn", task_root=tmp_path, opt=tmp_path, runtime_dir=tmp_path,
                          function_name="fn", region="eu-west-1", memory_mb=128, **runtime)["AWS_EXECUTION_ENV"]

    assert execution_env() == "AWS_Lambda_provided.al2023"
    assert execution_env(runtime="provided.al2") == "AWS_Lambda_provided.al2"


def test_handler_in_a_subdirectory_runs(tmp_path: Path, fixture_bins: Path, layer_zip: Path, qemu: str) -> None:
    """package and smoke apply the same handler rule, so a name one writes the other runs."""
    zpath = package.package_function(fixture_bins / "answer", "bin/answer", tmp_path / "f.zip").path
    result = smoke(zpath, "bin/answer", layer_zip=layer_zip)
    assert result.ok, result


@pytest.mark.parametrize(("layered", "content", "says"), [
    (True, b"MZ\x90\x00 a Windows program", "handler answer is neither an ELF executable nor a #! script"),
    (True, b"echo no shebang\n", "handler answer is neither an ELF executable nor a #! script"),
    (False, b"\xcf\xfa\xed\xfe a macOS program", "the function zip's bootstrap is neither an ELF executable "
                                                    "nor a #! script"),
], ids=["windows-handler", "text-handler", "macos-bootstrap"])
def test_file_that_is_not_a_program_fails_like_lambda(tmp_path: Path, layer_zip: Path, qemu: str, layered: bool,
                                                      content: bytes, says: str) -> None:
    """qemu exits 1 without a word on these; Lambda's execve says `exec format error`, and so do we."""
    name = "answer" if layered else "bootstrap"
    zpath = foreign_zip(tmp_path / "f.zip", [(name, content, 0o100755)])
    result = smoke(zpath, name, layer_zip=layer_zip if layered else None)
    assert (result.ok, result.duration_ms, result.stderr_tail) == (False, 0, "")
    assert result.error == (f"{says}: Lambda would fail with `exec format error`; package the Linux arm64 binary "
                            "(GOOS=linux GOARCH=arm64), or start a script with a #! line")


@pytest.mark.parametrize("layered", [True, False], ids=["handler", "bootstrap"])
def test_missing_shebang_interpreter_fails_like_lambda(tmp_path: Path, layer_zip: Path, qemu: str,
                                                       layered: bool) -> None:
    name = "answer" if layered else "bootstrap"
    zpath = foreign_zip(tmp_path / "f.zip", [(name, b"#!/nonexistent/python3 -u\nprint(1)\n", 0o100755)])
    result = smoke(zpath, name, layer_zip=layer_zip if layered else None)
    what = "handler answer" if layered else "the function zip's bootstrap"
    assert (result.ok, result.duration_ms) == (False, 0)
    assert result.error == (f"{what} starts with #!/nonexistent/python3, which does not exist here: it cannot "
                            "start, and Lambda would fail the same way (Runtime.InvalidEntrypoint, no such file or "
                            "directory); point the #! line at an interpreter the runtime has, such as /bin/sh")


def test_script_handler_runs_through_its_own_interpreter(tmp_path: Path, layer_zip: Path, qemu: str) -> None:
    """The layer execs a #! handler directly; only ELF handlers go through qemu."""
    script = (f"#!{sys.executable}\n"
              "import os, urllib.request\n"
              "api = f\"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation\"\n"
              "with urllib.request.urlopen(api + '/next') as r:\n"
              "    rid = r.headers['Lambda-Runtime-Aws-Request-Id']\n"
              "urllib.request.urlopen(urllib.request.Request(f'{api}/{rid}/response', data=b'\"from a script\"',"
              " method='POST'))\n").encode()
    zpath = foreign_zip(tmp_path / "f.zip", [("handler.py", script, 0o100755)])
    result = smoke(zpath, "handler.py", layer_zip=layer_zip)
    assert (result.ok, result.response) == (True, "from a script"), result


def test_script_bootstrap_reporting_an_init_error(tmp_path: Path, qemu: str) -> None:
    """A bootstrap of one's own (here a Python script) runs directly, and its init/error shows up."""
    script = (f"#!{sys.executable}\n"
              "import os, sys, urllib.request\n"
              "url = f\"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/init/error\"\n"
              "body = b'{\"errorMessage\": \"no table\", \"errorType\": \"Runtime.Config\"}'\n"
              "urllib.request.urlopen(urllib.request.Request(url, data=body, method='POST'))\n"
              "print('giving up', file=sys.stderr)\n"
              "sys.exit(4)\n").encode()
    zpath = foreign_zip(tmp_path / "f.zip", [("bootstrap", script, 0o100755)])
    result = smoke(zpath, "bootstrap")
    assert result.error == ("function exited with status 4 during init after reporting an init error "
                            "(Runtime.Config: no table): giving up")


@pytest.mark.parametrize("layered", [True, False], ids=["layer", "bootstrap-mode"])
def test_lost_exec_bit_fails_clearly(tmp_path: Path, fixture_bins: Path, layer_zip: Path, qemu: str,
                                     layered: bool) -> None:
    handler = "answer" if layered else "bootstrap"
    zpath = foreign_zip(tmp_path / "f.zip", [(handler, (fixture_bins / "answer").read_bytes(), 0o100644)])
    result = smoke(zpath, handler, layer_zip=layer_zip if layered else None)
    assert not result.ok and result.error is not None
    if layered:
        assert result.error.startswith("function exited with status 15 during init: "
                                       'bootstrap: handler "answer" is not an executable file')
    else:
        assert result.error.startswith("function exited with status 126 during init: ")
        assert result.error.endswith("/bootstrap: Permission denied (the file has no exec bit)")


def test_layer_bootstrap_without_exec_bit(tmp_path: Path, answer_zip: Path, qemu: str) -> None:
    bad_layer = foreign_zip(tmp_path / "layer.zip",
                          [("bootstrap", (ROOT / "layer" / "bootstrap").read_bytes(), 0o100644)])
    result = smoke(answer_zip, "answer", layer_zip=bad_layer)
    assert not result.ok and result.error is not None
    assert result.error.startswith("cannot start ") and "/opt/bootstrap: Permission denied" in result.error


def test_amd64_binary_fails_clearly(tmp_path: Path, gobuild: GoBuilder, layer_zip: Path, qemu: str) -> None:
    """verify stops these in the pipeline; on its own, smoke must still fail fast and say why."""
    amd64 = gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], goarch="amd64") / "answer"
    started = time.monotonic()
    result = smoke(function_zip(tmp_path, amd64), "answer", layer_zip=layer_zip)
    assert time.monotonic() - started < 5
    assert not result.ok and result.error is not None
    assert result.error.startswith("function exited with status 255 during init: ")
    assert result.error.endswith("/answer: Invalid ELF image for this architecture")


def test_cli_exit_codes_and_json(zips: Path, fixture_bins: Path, layer_zip: Path, answer_zip: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "go_arm_lambda", "smoke", *args], capture_output=True,
                              text=True, timeout=30, check=False, cwd=ROOT)

    ok = cli("--zip", str(answer_zip), "--handler", "answer", "--layer", str(layer_zip),
             "--event", '{"a": 1}', "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert set(doc) == {"ok", "response", "error", "duration_ms", "stderr_tail"}
    assert doc["ok"] is True and doc["response"]["event"] == {"a": 1}

    failed = cli("--zip", str(function_zip(zips, fixture_bins / "fail")), "--handler", "fail",
                 "--layer", str(layer_zip))
    assert failed.returncode == 1
    assert "Handler returned an error: errorString: order 42 was rejected" in failed.stdout

    usage = cli("--zip", str(answer_zip), "--handler", "answer", "--event", "{nope")
    assert usage.returncode == 2
    assert "--event is not valid JSON" in usage.stderr + usage.stdout

    # Input that used to hang, eat memory or end in a traceback: exit 2 and one line naming it.
    for args, says in ((("--zip", "/tmp", "--handler", "answer"), "function zip '/tmp' is a directory. "),
                       (("--zip", str(answer_zip), "--handler", "answer", "--event", "@/dev/zero"),
                        "event file '/dev/zero' is not a regular file. give --event @PATH"),
                       (("--zip", str(answer_zip), "--handler", "answer", "--timeout", "inf"),
                        "--timeout='inf' is not a number. give seconds, such as 10"),
                       (("--zip", str(answer_zip), "--handler", "answer", "--timeout", "0.001"),
                        "--timeout=0.001 is out of range. give seconds from 1 to 900, such as 10")):
        refused = cli(*args)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr and "Traceback" not in refused.stderr


# ---------------------------------------------------------------------------------------------- the sandbox

@pytest.mark.parametrize("ending", ["exits", "runs-on"])
def test_nothing_the_function_started_outlives_the_invocation(tmp_path: Path, ending: str) -> None:
    """Lambda discards the whole sandbox: a double fork, a new session, a process that ignores SIGTERM, whether
    the function exits at once or is still running at the deadline, nothing is left."""
    marker = f"777.{uuid.uuid4().int % 10**9:09d}"
    script = ("#!/bin/sh\n"
              f"(sleep {marker}1 &)\n"  # re-parented away from the shell at once
              f"setsid sh -c 'sleep {marker}2' &\n"  # its own session and process group
              f"sh -c 'trap \"\" TERM; exec sleep {marker}3' &\n"  # deaf to SIGTERM
              + ("exit 0\n" if ending == "exits" else f"exec sleep {marker}4\n")).encode()
    zpath = foreign_zip(tmp_path / "f.zip", [("bootstrap", script, 0o100755)])
    try:
        result = smoke(zpath, "bootstrap", timeout=1)
        left = processes_mentioning(f"sleep {marker}")
    finally:
        for pid in processes_mentioning(f"sleep {marker}"):  # a leak fails the test, but must not outlive it
            os.kill(pid, signal.SIGKILL)
    assert left == {}
    expected = ("function exited with status 0 during init (it never asked for an event: does main call "
                "lambda.Start?)") if ending == "exits" else "no response within 1 s"
    assert result.error == expected


def _responder(size: int) -> bytes:
    """A bootstrap (Python) that answers its event with a JSON string of `size` bytes, sent in chunks."""
    return (f"#!{sys.executable}\n"
            "import os, urllib.request\n"
            "api = f\"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation\"\n"
            "with urllib.request.urlopen(api + '/next') as r:\n"
            "    rid = r.headers['Lambda-Runtime-Aws-Request-Id']\n"
            f"size, chunk = {size}, 1 << 20\n"
            "def body():\n"
            "    yield b'\"'\n"
            "    for at in range(0, size - 2, chunk):\n"
            "        yield b'a' * min(chunk, size - 2 - at)\n"
            "    yield b'\"'\n"
            "urllib.request.urlopen(urllib.request.Request(f'{api}/{rid}/response', data=body(), method='POST'))\n"
            ).encode()


@pytest.mark.parametrize("size", [7_000_002, 100 * 1024 * 1024])
def test_a_response_over_lambdas_limit_fails_at_once_as_lambda_says(tmp_path: Path, size: int) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", [("bootstrap", _responder(size), 0o100755)])
    started = time.monotonic()
    result = smoke(zpath, "bootstrap", timeout=30)
    assert time.monotonic() - started < 15, "refused only at the timeout"
    assert result.error == ("the response is larger than Lambda allows: Function.ResponseSizeTooLarge: Response "
                            "payload size exceeded maximum allowed payload size (6291556 bytes).")
    assert json.loads(result.payload)["errorType"] == "Function.ResponseSizeTooLarge" and not result.timed_out


def test_a_response_at_lambdas_limit_is_an_answer(tmp_path: Path) -> None:
    zpath = foreign_zip(tmp_path / "f.zip", [("bootstrap", _responder(6_291_556), 0o100755)])
    result = smoke(zpath, "bootstrap", timeout=30)
    assert result.ok and len(result.payload) == 6_291_556 and result.response == "a" * 6_291_554
