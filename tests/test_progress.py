"""The job's log and timings: a stage's lines and duration, N/M counters from many threads, the live status line
on a terminal (a real pty) and only plain lines in pipes and under Actions, and the deploy's per-step lines with
the retries and waits the AWS layer tallied (moto behind the fault proxy)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from awsfakes import FAST, FakeAws, artifacts, desired, plan_for
from conftest import EXAMPLES, ROOT, require_tool
from go_arm_lambda import progress
from go_arm_lambda.aws import make_session
from go_arm_lambda.execute import execute
from go_arm_lambda.lambda_api import LambdaWriter

ITEM = re.compile(r"^  (\[(\d+)/(\d+)\] )?(.+?)(: (.+))?$")
ESCAPES = re.compile(r"[\r\x1b]")


def _job(mode: progress.Mode = "plain") -> tuple[progress.Job, io.StringIO]:
    stream = io.StringIO()
    return progress.Job(mode, stream), stream


def test_a_stage_shows_its_work_and_ends_with_its_duration() -> None:
    job, out = _job()
    with job.stage("smoke", total=3):
        progress.note("$ the command")
        with progress.task("orders") as t:
            time.sleep(0.02)
            t.detail = "ok"
        progress.item("users", "ok", cached=True)
        with progress.task("payments") as t:
            t.detail = "failed: exit status 2"
    lines = out.getvalue().splitlines()
    assert lines[0] == "==> smoke" and lines[1] == "  $ the command"
    assert re.fullmatch(r"  \[1/3\] orders: ok, 0\.0[2-9] s", lines[2]), lines[2]
    assert lines[3] == "  [2/3] users: ok, cached"
    assert re.fullmatch(r"  \[3/3\] payments: failed: exit status 2, \d\.\d\d s", lines[4])
    assert re.fullmatch(r"smoke took 0\.\d\d s \(3 done, 1 cached\)", lines[5]), lines[5]
    assert len(lines) == 6 and not ESCAPES.search(out.getvalue())
    timings = job.timings()
    assert list(timings["stages"]) == ["smoke"] and 0.02 <= timings["stages"]["smoke"] <= timings["total"]


def test_a_failing_stage_says_so_and_keeps_its_time() -> None:
    job, out = _job()
    with pytest.raises(RuntimeError, match="boom"), job.stage("deploy", total=2):
        progress.tally(retries=1)  # outside any task: the stage's own cost
        with progress.task("update-code orders (eu-west-1)"):
            progress.tally(retries=2, throttled=1, waited=0.25)
            progress.tally(polls=3)
            raise RuntimeError("boom")
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"  \[1/2\] update-code orders \(eu-west-1\): failed after 0\.\d\d s, "
                        r"2 retries \(1 throttled\), 3 polls, waited 0\.25 s", lines[1]), lines[1]
    assert re.fullmatch(r"deploy failed after 0\.\d\d s \(1 of 2 done, 1 failed; 3 retries \(1 throttled\), "
                        r"3 polls, waited 0\.25 s\)", lines[2]), lines[2]
    assert "deploy" in job.timings()["stages"]


def test_without_a_stage_nothing_is_written_and_work_still_runs() -> None:
    job, out = _job()
    with progress.task("alone") as t:
        progress.tally(retries=1)
        t.detail = "done"
    progress.item("x")
    progress.note("y")
    progress.expect(3)
    assert out.getvalue() == "" and job.timings()["stages"] == {}


def test_lines_from_many_threads_stay_whole_and_count_in_order() -> None:
    job, out = _job("terminal")  # the busiest mode: lines and the status line share the stream
    threads, per_thread = 8, 40
    with job.stage("package", total=threads * per_thread):
        def work(n: int) -> None:
            for i in range(per_thread):
                with progress.task(f"f{n}-{i}") as t:
                    progress.tally(polls=1)
                    t.detail = "ok"
        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
    # What a terminal shows: each erase-and-redraw of the status line undone, the lines left.
    shown = [re.sub(r"^.*\r\x1b\[K", "", line) for line in out.getvalue().split("\n")]
    items = [m for m in map(ITEM.match, shown) if m and m.group(2)]
    assert [int(m.group(2)) for m in items] == list(range(1, threads * per_thread + 1))
    assert {m.group(4) for m in items} == {f"f{n}-{i}" for n in range(threads) for i in range(per_thread)}
    assert all(re.fullmatch(r"ok, \d\.\d\d s, 1 poll", m.group(6)) for m in items)
    assert shown[-2].startswith("package took ") and "(320 done; 320 polls)" in shown[-2]


def test_the_terminal_gets_a_live_status_line_that_is_erased_at_the_end() -> None:
    job, out = _job("terminal")
    with job.stage("build", total=1):
        time.sleep(3 * progress.REFRESH_S)  # one long piece of work: the ticker keeps the time moving
        progress.item("go build", "ok", took=0.6)
    text = out.getvalue()
    assert re.search(r"\r\x1b\[Kbuild 0/1, 0\.[2-9] s", text), text  # redrawn while nothing finished
    assert "\r\x1b[Kbuild 1/1, " in text
    assert text.endswith("\r\x1b[Kbuild took " + text.rsplit("build took ", 1)[1])  # erased before the last line
    assert "\x1b[" not in text.replace("\r\x1b[K", "")  # no colour codes, only erase-line


def test_under_actions_a_stage_is_a_group_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    job = progress.Job("actions")
    with job.stage("verify", total=1):
        progress.item("orders", "ok", took=0.01)
    out, err = capsys.readouterr()
    assert out.splitlines() == ["::group::verify", "  [1/1] orders: ok, 0.01 s",
                                out.splitlines()[2], "::endgroup::"]
    assert re.fullmatch(r"verify took 0\.\d\d s \(1 done\)", out.splitlines()[2]) and err == ""


@pytest.mark.parametrize(("env", "tty", "json", "mode"), [
    ({}, True, False, "terminal"),
    ({}, False, False, "plain"),
    ({"TERM": "dumb"}, True, False, "plain"),
    ({"GITHUB_ACTIONS": "true"}, True, False, "actions"),
    ({"GITHUB_ACTIONS": "true"}, False, True, "plain"),  # stdout must hold the JSON alone
    ({}, True, True, "terminal"),
])
def test_the_mode_follows_where_the_log_goes(env: dict[str, str], tty: bool, json: bool, mode: str) -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w") if tty else open(os.devnull, "w") as stream:
            assert progress.mode_for(env, stream, json=json) == mode
    finally:
        os.close(master)
        if not tty:
            os.close(slave)


# --- the real command, on a terminal and in a pipe ------------------------------------------------------------

def _build_argv(out: Path) -> list[str]:
    # A cache of its own: the lines under test are those of work done, not of the content cache's answers.
    return [sys.executable, "-m", "go_arm_lambda", "build", "--source", str(EXAMPLES),
            "--function", "hello=./cmd/hello", "--function", "orders-api=./cmd/orders", "--out", str(out),
            "--cache-dir", str(out.with_name("cache"))]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "TERM", "GITHUB_WORKSPACE")}
    return env | {"PYTHONPATH": str(ROOT / "entrypoint")} | extra


def _run_on_pty(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The command with its stderr on a pseudo-terminal (so isatty() is true) and stdout on a pipe."""
    master, slave = pty.openpty()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            child.kill()
            pytest.fail(f"no output for 120 s; so far: {seen!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout = child.stdout.read().decode() if child.stdout else ""
    return child.wait(timeout=60), stdout, seen.decode()


def test_build_on_a_terminal_shows_live_progress(tmp_path: Path) -> None:
    require_tool("go")
    require_tool("qemu-aarch64-static")
    code, _, err = _run_on_pty(_build_argv(tmp_path / "out"), _env(TERM="xterm"))
    assert code == 0, err
    assert "\r\x1b[Ksmoke 1/2, " in err or "\r\x1b[Ksmoke 2/2, " in err
    assert "\r\x1b[Kbuild 0/1, " in err
    shown = [re.sub(r"^.*\r\x1b\[K", "", line) for line in err.replace("\r\n", "\n").split("\n")]
    assert any(re.fullmatch(r"smoke took \d+\.\d+ s \(2 done\)", line) for line in shown), shown


@pytest.mark.parametrize("actions", [False, True])
def test_build_in_a_pipe_or_under_actions_writes_plain_lines(tmp_path: Path, actions: bool) -> None:
    require_tool("go")
    require_tool("qemu-aarch64-static")
    env = _env(TERM="xterm", **({"GITHUB_ACTIONS": "true"} if actions else {}))
    if actions:  # on a terminal even: Actions' log keeps every carriage return
        code, out, err = _run_on_pty(_build_argv(tmp_path / "out"), env)
        err = err.replace("\r\n", "\n")  # the pty's own line discipline, not ours
    else:
        done = subprocess.run(_build_argv(tmp_path / "out"), capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=300)
        code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 0, out + err
    assert not ESCAPES.search(out + err), repr(out + err)
    log = out if actions else err
    stages = _stages(log, actions)
    assert list(stages) == ["build", "verify", "package", "smoke"]
    command = stages["build"][0]  # as run: where, the variables it sets, and go's arguments
    assert re.fullmatch(r"  \$ cd \S+/examples && (\w+=\S+ )+\S+/go build -trimpath -buildvcs=false "
                        r"-tags lambda\.norpc -ldflags '-s -w' -o \S+/ \./cmd/hello \./cmd/orders", command), command
    assert " GOOS=linux " in command and " GOARCH=arm64 " in command
    for name in ("verify", "smoke"):
        # In the order they finished (smoke runs two at a time).
        assert sorted(ITEM.match(line).group(4) for line in stages[name][:-1]) == ["hello", "orders-api"]  # type: ignore[union-attr]
        assert all(re.search(r": ok, \d\.\d\d s$", line) for line in stages[name][:-1]), stages[name]
    for name, lines in stages.items():
        assert re.fullmatch(rf"{name} took \d+\.\d+ s \(\d done\)", lines[-1]), lines


def _stages(log: str, grouped: bool) -> dict[str, list[str]]:
    """Each stage's lines, by its group (Actions) or header (elsewhere)."""
    opener = re.compile(r"^::group::(.+)$" if grouped else r"^==> (.+)$")
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in log.splitlines():
        m = opener.match(line)
        if m:
            current = stages.setdefault(m.group(1), [])
        elif line == "::endgroup::" or (not grouped and current is not None and not line.startswith(" ")
                                         and not re.match(r"\S+ (took|failed after) ", line)):
            current = None
        elif current is not None:
            current.append(line)
    return stages


# --- the deploy's lines: one per step, with what the AWS layer tallied ---------------------------------------

def _in_progress(body: bytes) -> bytes:
    """A GetFunction or GetFunctionConfiguration answer saying the update is still running."""
    answer = json.loads(body)
    (answer.get("Configuration") or answer)["LastUpdateStatus"] = "InProgress"
    return json.dumps(answer).encode()


def test_each_deploy_step_has_a_line_with_its_retries_and_waits(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    want = desired(artifacts(tmp_path, ["orders"]))
    plan = plan_for(aws.url, want)
    # After the plan, so that only the waits see them: the code update is throttled once, then still running twice.
    aws.proxy.respond("PUT", r"/code$", status=429, code="TooManyRequestsException", message="Rate exceeded")
    aws.proxy.rewrite("GET", r"/functions/orders(/configuration)?$", _in_progress, times=2)
    job, out = _job()
    session = make_session(aws.url, timing=FAST)
    with job.stage("deploy"):
        result = execute(plan, {r: LambdaWriter(session, r) for r in want.regions})
    assert result.ok, result.all_errors()
    lines = out.getvalue().splitlines()
    steps = {ITEM.match(line).group(4): ITEM.match(line).group(6) for line in lines[1:-1]}  # type: ignore[union-attr]
    assert list(steps) == [f"{s.action} {s.target} ({s.region})" for s in result.steps_done]
    code = steps[f"update-code orders ({want.regions[0]})"]
    assert re.fullmatch(r"\d\.\d\d s, 1 retry \(1 throttled\), 2 polls, waited 0\.\d\d s", code), code
    assert re.fullmatch(r"\d\.\d\d s", steps[f"publish-layer go-arm-lambda-bootstrap ({want.regions[0]})"])
    assert re.fullmatch(r"deploy took \d\.\d\d s \(\d done; 1 retry \(1 throttled\), 2 polls, waited 0\.\d\d s\)",
                        lines[-1]), lines[-1]
