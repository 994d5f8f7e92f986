"""proc: start() through the zygote, with real processes. Every test ends what it started, whatever happens."""

from __future__ import annotations

import concurrent.futures
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from go_arm_lambda import proc
from go_arm_lambda.errors import ToolchainError


def marker() -> str:
    """A sleep duration no other process has on its command line: `sleep {marker}N` is findable in /proc."""
    return f"777.{uuid.uuid4().int % 10**9:09d}"


def sleeping(mark: str) -> list[int]:
    """The live processes of a test's tree: `sleep {mark}N`, and a shell that runs one."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:  # it ended while we looked
                continue
            if argv[0] in (b"sleep", b"sh") and any(mark.encode() in arg for arg in argv):
                found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def until(condition: Callable[[], bool], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextmanager
def started(argv: list[str], **kwargs: object) -> Iterator[proc.Child]:
    child = proc.start(argv, **kwargs)  # type: ignore[arg-type]
    try:
        yield child
    finally:
        proc.stop(child)


@contextmanager
def no_sleep_left(mark: str) -> Iterator[None]:
    """Whatever the test says, none of its `sleep {mark}N` outlives it."""
    try:
        yield
    finally:
        for pid in sleeping(mark):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_exit_status_and_output_as_popen_gives_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with started(["sh", "-c", 'echo "out $PWD $ONLY"; echo err >&2; exit 3'], cwd=tmp_path,
                 env={"ONLY": "this", "PATH": os.environ["PATH"]}) as child:
        assert (child.stdout.read(), child.stderr.read()) == (f"out {tmp_path} this\n".encode(), b"err\n")
        assert child.wait(timeout=5) == 3
        assert child.poll() == child.returncode == 3
    # By default our environment and directory as they are now, not as they were when the zygote started.
    monkeypatch.setenv("MARK", "set after the zygote started")
    monkeypatch.chdir(tmp_path)
    with started(["sh", "-c", "echo $MARK; pwd"]) as child:
        assert child.stdout.read() == f"set after the zygote started\n{tmp_path}\n".encode()
        assert child.wait(timeout=5) == 0


def test_a_signal_death_is_minus_the_signal() -> None:
    with started(["sh", "-c", "kill -USR1 $$"]) as child:
        assert child.wait(timeout=5) == -signal.SIGUSR1


def test_a_child_that_cannot_start_raises_as_popen_did(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match=r"^cannot run '/no/such/program': not found\. install it"):
        proc.start(["/no/such/program"])
    with pytest.raises(ToolchainError, match=f"^cannot run 'sh' in {tmp_path}/gone: the directory does not exist\\. "):
        proc.start(["sh"], cwd=tmp_path / "gone")
    text = tmp_path / "text"
    text.write_text("not a program\n")
    with pytest.raises(PermissionError, match="Permission denied"):
        proc.start([text])
    with started(["true"]) as child:  # and the zygote is none the worse for it
        assert child.wait(timeout=5) == 0


def test_stop_ends_a_child_deaf_to_sigterm_after_its_grace() -> None:
    mark = marker()
    with no_sleep_left(mark):
        child = proc.start(["sh", "-c", f"trap '' TERM; sleep {mark}1 & exec sleep {mark}2"], grace=0.5)
        assert until(lambda: len(sleeping(mark)) == 2)
        began = time.monotonic()
        proc.stop(child)
        assert 0.5 <= time.monotonic() - began < 3
        assert child.returncode == -signal.SIGTERM
        assert sleeping(mark) == []
        assert gone(child.pid)  # the reaper itself, reaped before the runner heard its status


def test_eight_threads_start_at_once() -> None:
    barrier = threading.Barrier(8)

    def run(n: int) -> tuple[bytes, int]:
        barrier.wait(timeout=10)
        with started(["sh", "-c", f"echo {n}; exit {n}"]) as child:
            return child.stdout.read(), child.wait(timeout=10)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(run, range(8))) == [(f"{n}\n".encode(), n) for n in range(8)]


def test_an_invocation_ends_when_it_does_not_when_a_later_one_does() -> None:
    """A reaper forked while others run must not hold their status pipes: each ends on its own."""
    mark = marker()
    with no_sleep_left(mark), started(["sleep", f"{mark}1"]) as first, started(["sleep", f"{mark}2"]) as second:
        first.send_signal(signal.SIGTERM)  # while the second, forked after it, runs on
        assert first.wait(timeout=3) == -signal.SIGTERM
        assert second.poll() is None


def test_the_zygote_is_restarted_when_it_died_and_takes_its_children_along() -> None:
    mark = marker()
    with no_sleep_left(mark):
        with started(["true"]) as child:
            child.wait(timeout=5)
        assert proc._zygote is not None
        zygote = proc._zygote.process
        with started(["sh", "-c", f"sleep {mark}1 & exec sleep {mark}2"]) as running:
            assert until(lambda: len(sleeping(mark)) == 2)
            zygote.kill()
            zygote.wait(timeout=5)
            assert running.wait(timeout=5) == -signal.SIGTERM  # its reaper had the zygote's death for a stop
            assert sleeping(mark) == []
        with started(["sh", "-c", "echo again"]) as child:
            assert child.stdout.read() == b"again\n"
            assert child.wait(timeout=5) == 0
        assert proc._zygote.process.pid != zygote.pid


RUNNER = """
import sys, threading, time
from go_arm_lambda import proc
children = []
# Started from a thread that then ends: the zygote must not go with it (PR_SET_PDEATHSIG would).
starter = threading.Thread(target=lambda: children.append(proc.start(sys.argv[1:])))
starter.start()
starter.join()
time.sleep(0.3)
print(children[0].poll(), proc._zygote.process.pid, flush=True)
time.sleep(60)
"""


def test_a_runner_killed_outright_takes_the_function_tree_along() -> None:
    mark = marker()
    with no_sleep_left(mark):
        runner = subprocess.Popen([sys.executable, "-c", RUNNER, "sh", "-c", f"sleep {mark}1 & exec sleep {mark}2"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert runner.stdout is not None
            returncode, zygote = runner.stdout.readline().split()
            assert returncode == "None"
            assert until(lambda: len(sleeping(mark)) == 2)
        finally:
            runner.kill()
            runner.wait()
        assert until(lambda: sleeping(mark) == []), "the function outlived its runner"
        assert until(lambda: gone(int(zygote)))


def test_the_cpu_time_of_what_a_runner_started_is_counted_as_its_own() -> None:
    """As with Popen, a runner's RUSAGE_CHILDREN includes its functions: the benchmarks measure the tool so."""
    burn = "import time\nwhile time.process_time() < 0.4: pass"
    script = f"from go_arm_lambda import proc\nproc.start([{sys.executable!r}, '-c', {burn!r}]).wait(timeout=30)"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) >= 0.4
