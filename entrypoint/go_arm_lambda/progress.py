"""Progress and timings: the one place a stage starts and ends, and the lines that say what happened in it.

A `Job` times its stages (`Job.stage`, the context manager the pipeline opens every stage with, for the CLI and
the Action alike) and shows them where the log goes: a foldable group per stage under GitHub Actions, a
`==> stage` header otherwise, each stage ending with its duration. On a terminal a live `N/M` status line is
redrawn in place below the lines; in Actions and in pipes only plain lines are written (no carriage returns, no
escape codes), because the Actions log and a file keep them as garbage.

The work inside a stage reports through the module functions (`task`, `item`, `note`, `expect`, `tally`), which
reach the stage open at the time from any thread: the stages run their work in pools, and passing a logger
through every signature would tie each stage to presentation. With no stage open they print nothing, so a stage
run on its own (a test, `go-arm-lambda smoke`) behaves the same and stays quiet.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Literal, TextIO

from go_arm_lambda import actions
from go_arm_lambda.render import seconds_text
from go_arm_lambda.report import Timings

# actions: a ::group:: per stage; terminal: plain lines plus a live status line; plain: lines only; quiet: none.
Mode = Literal["actions", "terminal", "plain", "quiet"]
# Often enough to look alive, rarely enough to cost nothing next to the work it watches.
REFRESH_S = 0.2
_CLEAR = "\r\x1b[K"  # back to the line's start and erase it: only ever written in terminal mode


def mode_for(env: Mapping[str, str] | None = None, stream: TextIO | None = None, *, json: bool = False) -> Mode:
    """Where the log goes decides how it is written. `stream` defaults to stderr, where the lines go."""
    env = os.environ if env is None else env
    if actions.in_actions(env):
        # With --json stdout must hold the JSON document alone, and the group commands go to stdout.
        return "plain" if json else "actions"
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        tty = False
    return "terminal" if tty and env.get("TERM") != "dumb" else "plain"


def _counted(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


@dataclass
class Tally:
    """What a piece of work cost beyond its own calls: the AWS layer adds to it, the line shows it."""

    retries: int = 0  # attempts after the first, whatever the cause
    throttled: int = 0  # answers that said "slow down" (429, ThrottlingException), retried or not
    polls: int = 0  # status reads while waiting for an update to finish
    waited: float = 0.0  # seconds spent sleeping: backoff, the rate limiter, poll intervals

    def add(self, other: Tally) -> None:
        self.retries += other.retries
        self.throttled += other.throttled
        self.polls += other.polls
        self.waited += other.waited

    def describe(self) -> str:
        """"2 retries (1 throttled), 3 polls, waited 1.50 s"; "" when it cost nothing extra."""
        parts = []
        if self.retries:
            throttled = f" ({self.throttled} throttled)" if self.throttled else ""
            parts.append(_counted(self.retries, "retry", "retries") + throttled)
        elif self.throttled:
            parts.append(f"{self.throttled} throttled")
        if self.polls:
            parts.append(_counted(self.polls, "poll"))
        if self.waited >= 0.005:
            parts.append(f"waited {seconds_text(self.waited)}")
        return ", ".join(parts)


@dataclass
class Task:
    """One piece of work in a stage (a function verified, a step run). Set `detail` ("ok", "failed") and
    `cached` while it runs; its line is written when it ends."""

    label: str
    detail: str = ""
    cached: bool = False
    tally: Tally = field(default_factory=Tally)
    started: float = field(default_factory=time.monotonic)


class Console:
    """The stream the log is written to, and on a terminal the status line kept below it. Thread-safe."""

    def __init__(self, mode: Mode, stream: TextIO | None = None) -> None:
        self.mode = mode
        self._stream = stream  # None: the standard stream as it is when writing (pytest swaps them)
        self._lock = threading.RLock()
        self._status = ""

    @property
    def stream(self) -> TextIO:
        if self._stream is not None:
            return self._stream
        # Under Actions beside the ::group:: commands, which go to stdout: the runner reads stdout and stderr
        # through two pipes, and only lines on one stream are sure to stay inside their group.
        return sys.stdout if self.mode == "actions" else sys.stderr

    def line(self, text: str) -> None:
        if self.mode == "quiet":
            return
        with self._lock:
            if self._status:
                self.stream.write(_CLEAR)
            self.stream.write(text + "\n")
            if self._status:
                self.stream.write(self._status)
            self.stream.flush()

    def status(self, text: str) -> None:
        """Redraw the status line (terminal mode only); "" erases it."""
        if self.mode != "terminal":
            return
        with self._lock:
            if text != self._status:
                self.stream.write(_CLEAR + text)
                self.stream.flush()
                self._status = text


class Stage:
    """One stage being run: its lines, how many pieces of work are done (of how many), and what they cost."""

    def __init__(self, console: Console, name: str, total: int | None) -> None:
        self.console = console
        self.name = name
        self.total = total
        self.done = 0
        self.cached = 0
        self.failed = 0
        self.tally = Tally()
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        self.console.line(f"  {text}")

    def add(self, tally: Tally) -> None:
        with self._lock:
            self.tally.add(tally)

    def finish(self, task: Task, took: float | None, failed: bool = False) -> None:
        """Count a piece of work as done and write its line: "[3/8] orders: ok, 0.41 s"."""
        with self._lock:
            self.done += 1
            self.cached += task.cached
            self.failed += failed
            self.tally.add(task.tally)
            counter = f"[{self.done}/{self.total}] " if self.total else ""
            # Written under the stage's lock, so the counters appear in order.
            if failed:
                outcome = f"failed after {seconds_text(took or 0.0)}"
            else:
                outcome = "cached" if task.cached else seconds_text(took) if took is not None else ""
            parts = [p for p in (task.detail, outcome, task.tally.describe()) if p]
            self.console.line(f"  {counter}{task.label}" + (f": {', '.join(parts)}" if parts else ""))
            self.console.status(self.status())

    def status(self) -> str:
        """The terminal's live line: "smoke 3/8, 1.2 s"."""
        done = f"{self.done}/{self.total}" if self.total else f"{self.done} done" if self.done else "running"
        return f"{self.name} {done}, {self.elapsed():.1f} s"

    def ending(self, took: float, ok: bool) -> str:
        """The stage's last line: "smoke took 1.23 s (8 done, 6 cached)", or "... failed after ..."."""
        with self._lock:
            done = f"{self.done} of {self.total}" if self.total and self.done != self.total else str(self.done)
            counts = [f"{done} done"] if self.done else []
            counts += [f"{self.cached} cached"] if self.cached else []
            counts += [f"{self.failed} failed"] if self.failed else []
            cost = self.tally.describe()
        said = "; ".join(p for p in (", ".join(counts), cost) if p)
        head = f"{self.name} took {seconds_text(took)}" if ok else f"{self.name} failed after {seconds_text(took)}"
        return head + (f" ({said})" if said else "")


# The stages open now, innermost last (one at a time in practice), and each thread's open tasks.
_open: list[Stage] = []
_open_lock = threading.Lock()
_local = threading.local()


def _current() -> Stage | None:
    with _open_lock:
        return _open[-1] if _open else None


def _tasks() -> list[Task]:
    if not hasattr(_local, "tasks"):
        _local.tasks = []
    tasks: list[Task] = _local.tasks
    return tasks


class Job:
    """A run's stages: shows each as it runs (see the module's doc) and keeps how long each took."""

    def __init__(self, mode: Mode = "quiet", stream: TextIO | None = None) -> None:
        self.console = Console(mode, stream)
        self.started = time.monotonic()
        self._stages: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_log(cls, *, json: bool = False) -> Job:
        """The job for this process's stderr and environment: what the CLI and the Action both run with."""
        return cls(mode_for(json=json))

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Stage]:
        """Run a stage: its header (or ::group::), its lines, its duration as the last line, and its timing kept
        for the report, also when it fails. `total`, when known, is how many pieces of work it has (see expect)."""
        stage = Stage(self.console, name, total)
        with ExitStack() as frame:
            if self.console.mode == "actions":
                frame.enter_context(actions.group(name))
            else:
                self.console.line(f"==> {name}")
            with _open_lock:
                _open.append(stage)
            ticker = _Ticker(stage) if self.console.mode == "terminal" else None
            ok = False
            try:
                yield stage
                ok = True
            finally:
                if ticker:
                    ticker.stop()
                with _open_lock:
                    _open.remove(stage)
                took = stage.elapsed()
                with self._lock:
                    self._stages[name] = self._stages.get(name, 0.0) + took
                self.console.status("")
                self.console.line(stage.ending(took, ok))

    def timings(self) -> Timings:
        """Seconds per stage in the order they ran, and the job's wall time so far (the stages and between)."""
        with self._lock:
            stages = {name: round(took, 3) for name, took in self._stages.items()}
        return {"stages": stages, "total": round(time.monotonic() - self.started, 3)}


class _Ticker:
    """Redraws a stage's status line while it runs, so a long step (one big go build) still shows time passing."""

    def __init__(self, stage: Stage) -> None:
        self._stage = stage
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{stage.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._stage.console.status(self._stage.status())
            if self._stopped.wait(REFRESH_S):
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


# --- what the stages call, from any thread ----------------------------------------------------------------------

@contextmanager
def task(label: str) -> Iterator[Task]:
    """Time one piece of work in the open stage; its line ("label: detail, 0.41 s") is written when it ends, also
    when it raises ("failed after ..."). Tallies from this thread while it runs are added to it."""
    stage = _current()  # the stage it started in, even if it ends after that stage closed
    current = Task(label)
    tasks = _tasks()
    tasks.append(current)
    failed = True
    try:
        yield current
        failed = False
    finally:
        tasks.remove(current)
        if stage is not None:
            stage.finish(current, time.monotonic() - current.started, failed)


def item(label: str, detail: str = "", *, took: float | None = None, cached: bool = False) -> None:
    """A piece of work done in one go, e.g. found in the cache: `item("orders", "ok", cached=True)`."""
    stage = _current()
    if stage is not None:
        stage.finish(Task(label, detail, cached), took)


def note(text: str) -> None:
    """A line in the open stage, e.g. the command about to run."""
    stage = _current()
    if stage is not None:
        stage.note(text)


def expect(total: int) -> None:
    """How many pieces of work the open stage has, once known: the `N/M` counters."""
    stage = _current()
    if stage is not None:
        stage.total = total


def tally(*, retries: int = 0, throttled: int = 0, polls: int = 0, waited: float = 0.0) -> None:
    """Add to what this thread's open task cost (or, outside any task, its stage): the AWS layer calls this."""
    counts = Tally(retries, throttled, polls, waited)
    tasks = _tasks()
    if tasks:
        tasks[-1].tally.add(counts)
        return
    stage = _current()
    if stage is not None:
        stage.add(counts)
