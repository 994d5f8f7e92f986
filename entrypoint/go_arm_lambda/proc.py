"""The one place that starts processes. Everything else calls these, so tests and timeouts see one seam.

Run as a program (`python -m go_arm_lambda.proc`), it is the zygote: one per runner process, it forks the reaper
`start()` puts between the runner and each long-running child: see `_zygote_main` and `_reaper`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from go_arm_lambda.errors import ToolchainError


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _not_found(program: str, cwd: Path | None) -> ToolchainError:
    # Popen reports a missing working directory with the same exception as a missing program.
    if cwd is not None and not Path(cwd).is_dir():
        return ToolchainError(f"cannot run {program!r} in {cwd}: the directory does not exist",
                              "check the source directory")
    return ToolchainError(f"cannot run {program!r}: not found",
                          "install it or put it on PATH (go-arm-lambda doctor lists what is needed)")


def merged_env(overrides: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(overrides or {})
    return env


def run(argv: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, timeout: float | None = None,
        input_text: str | None = None) -> Completed:
    """Run to completion and capture output. A missing program is a ToolchainError, not a traceback."""
    args = tuple(str(a) for a in argv)
    try:
        cp = subprocess.run(args, cwd=cwd, env=dict(env) if env is not None else None, input=input_text,
                            capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise _not_found(args[0], cwd) from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{' '.join(args[:3])} did not finish within {timeout:g} s",
                             "look for a hung build or raise the timeout") from exc
    return Completed(args, cp.returncode, cp.stdout, cp.stderr)


class Child:
    """A `start()`ed child as the runner sees it: its output, and through its reaper the signals that stop it
    and its exit status. What the smoke runner used of Popen, for a reaper that is the zygote's child, not ours."""

    def __init__(self, args: list[str], pid: int, grace: float, status: BinaryIO, stdout: BinaryIO,
                 stderr: BinaryIO) -> None:
        self.args = args
        self.pid = pid  # the reaper's, the leader of the session and group the child starts in
        self.grace = grace  # what its reaper gives it between SIGTERM and SIGKILL
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._done = threading.Event()
        threading.Thread(target=self._await, args=(status,), daemon=True).start()

    def _await(self, status: BinaryIO) -> None:
        # The status pipe ends once the zygote has reaped the reaper, as Popen's wait() returns once it has.
        with status:
            said = status.read()
        # A reaper killed outright (stop()'s last resort) says nothing: the -9 Popen would have seen.
        self.returncode = json.loads(said) if said else -signal.SIGKILL
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        # Only while the reaper has not reported: its pid is not yet free, or freed a moment ago, and Linux
        # hands pids out in turn, so it is not another process's.
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


def start(argv: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, grace: float = 1.0) -> Child:
    """Start a long-running child (the smoke runner's function) with its output captured as bytes, under a
    reaper of its own: stop it with `stop()`, and nothing it started outlives it.

    The reaper runs with our environment, never the child's (whose LD_LIBRARY_PATH points into the function's
    zip); a child that cannot be started raises here, as Popen would. `grace` is how long a stopped child has
    between SIGTERM and SIGKILL.
    """
    args = [str(a) for a in argv]
    # Directory and environment sent in full: the zygote's are those of the moment it started.
    spec = {"argv": args, "cwd": str(cwd) if cwd is not None else os.getcwd(),
            "env": dict(env if env is not None else os.environ), "grace": grace}
    reads, writes = zip(*(os.pipe() for _ in range(3)), strict=True)
    status, stdout, stderr = (os.fdopen(fd, "rb") for fd in reads)
    try:
        try:
            _ask_zygote(json.dumps(spec).encode(), list(writes))
        finally:
            for fd in writes:
                os.close(fd)
        said = status.readline()  # until the reaper has started the child, or failed to
    except BaseException:
        # Interrupted: a reaper yet to start the child then finds nobody waiting for it, and ends it at once.
        for f in (status, stdout, stderr):
            f.close()
        raise
    started = json.loads(said) if said else {"errno": 0, "strerror": "the reaper exited before starting it"}
    if "pid" in started:
        return Child(args, started["pid"], grace, status, stdout, stderr)
    status.read()  # until the reaper is gone: a child that could not be started leaves nothing behind
    for f in (status, stdout, stderr):
        f.close()
    exc = OSError(started["errno"], started["strerror"], started.get("filename"))
    if isinstance(exc, FileNotFoundError):
        raise _not_found(args[0], cwd) from exc
    raise exc


def stop(child: Child) -> None:
    """Stop a `start()`ed child and everything it started: its reaper SIGTERMs all of it, SIGKILLs what is left
    after its grace, and exits. Should the reaper itself hang, it is killed with its process group."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=child.grace + 5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


# --- the zygote: one per runner process, forking each start()'s reaper ----------------------------------------

# A request is one message on a SOCK_SEQPACKET socket, which carries at most its send buffer (net.core.wmem_*,
# a few hundred KiB): read with more room than that, none is cut short.
_MAX_REQUEST = 8 << 20


class _Zygote:
    """`python -m go_arm_lambda.proc SOCKET_FD`, started on the first start(): a fork of it costs about a
    millisecond where a reaper started as an interpreter of its own cost ~45 ms of CPU per invocation."""

    def __init__(self) -> None:
        self.socket, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            # Its own session: a Ctrl-C is the runner's to act on, as it was when each reaper had one.
            self.process = subprocess.Popen([sys.executable, "-I", "-m", "go_arm_lambda.proc", str(theirs.fileno())],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            pass_fds=(theirs.fileno(),), start_new_session=True)


_zygote_lock = threading.Lock()
_zygote: _Zygote | None = None


def _ask_zygote(request: bytes, fds: list[int]) -> None:
    global _zygote
    with _zygote_lock:  # the runner's threads share one zygote, one request at a time
        if _zygote is None or _zygote.process.poll() is not None:  # not started yet, or died: a new one
            if _zygote is not None:
                _zygote.socket.close()
            _zygote = _Zygote()
        socket.send_fds(_zygote.socket, [request], fds)


@atexit.register
def _end_zygote() -> None:
    """The zygote exits when its socket closes. Waited for, its CPU time and its reapers' is counted as ours
    (RUSAGE_CHILDREN), as a Popen child's is: the benchmarks read the tool's cost that way."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.socket.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                _zygote.process.wait(timeout=5)
            _zygote = None


def _zygote_main(socket_fd: int) -> int:
    """Fork a reaper per request until the runner is gone (its end of the socket closed). Not
    PR_SET_PDEATHSIG: that fires when the *thread* that started us ends, and the runner starts us from whichever
    of its threads comes first. We are single-threaded, so forking is safe here as it is not in the runner."""
    import ctypes  # noqa: F401  for the reapers' _prctl: loaded once here, not in each fork (nor by the runner)

    sock = socket.socket(fileno=socket_fd)
    # Reaper pid -> its status pipe, closed once the reaper is reaped: only then does the runner see the pipe
    # end, as Popen's wait() returns only once its child is reaped.
    held: dict[int, int] = {}

    def reaped(pid: int) -> None:
        os.close(held.pop(pid))

    # Reaped as they exit, not left to the kernel (SIG_IGN): so their CPU time, and their children's, is ours.
    signal.signal(signal.SIGCHLD, lambda signum, frame: _reap_any(reaped))
    zygote = os.getpid()
    while True:
        request, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, 3)
        if not request:
            return 0
        status_fd, stdout_fd, stderr_fd = fds
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # a reaper is in `held` before it is reaped
        pid = os.fork()
        if pid == 0:  # the reaper: it must never return into this loop
            try:
                _reaper(json.loads(request), status_fd, stdout_fd, stderr_fd, zygote)
            except BaseException:
                traceback.print_exc()  # onto the function's stderr, where the runner shows it
                os._exit(1)
            os._exit(0)
        held[pid] = status_fd
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.close(stdout_fd)
        os.close(stderr_fd)


# --- the reaper, forked by the zygote for one child ---------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class _Stop(Exception):
    """SIGTERM from the runner: the invocation is over."""


_stop = {"asked": False, "armed": False}


def _on_sigterm(signum: int, frame: object) -> None:
    # Only noted while the child is being started: an exception inside Popen could lose the child it forked.
    # Raised once: a second SIGTERM (the zygote's death as well as the runner's stop) must not break off the
    # ending of what the first one stopped.
    _stop["asked"] = True
    if _stop["armed"]:
        _stop["armed"] = False
        raise _Stop


def _prctl(option: int, value: int) -> None:
    import ctypes  # only reapers call this: the runner's start-up does without ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _descendants(root: int) -> dict[int, str]:
    """Every process below `root` (pid -> its state letter), from /proc's parent links."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not (entry.isascii() and entry.isdigit()):
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append((int(entry), fields[0].decode()))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for pid, state in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = state
                todo.append(pid)
    return found


def _reap_any(reaped: Callable[[int], None] | None = None) -> bool:
    """Reap every child that has exited, telling `reaped` each pid; False when no child is left at all."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True
        if reaped is not None:
            reaped(pid)


def _living_descendants() -> list[int]:
    return [pid for pid, state in _descendants(os.getpid()).items() if state not in "ZX"]


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _end_all(grace: float) -> None:
    """SIGTERM everything below us, give it `grace`, then SIGKILL until nothing is left. As a subreaper we
    inherit whatever a dying process leaves behind, so each pass also catches what was forked meanwhile."""
    _signal_all(_living_descendants(), signal.SIGTERM)
    deadline = time.monotonic() + grace
    pause = 0.0005  # doubling to 10 ms: most functions are gone a millisecond or two after SIGTERM
    while _reap_any() and _living_descendants() and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    while _reap_any():  # until no child is left, not even a zombie
        _signal_all(_living_descendants(), signal.SIGKILL)
        time.sleep(0.005)


def _say(status: TextIO, what: object) -> None:
    status.write(json.dumps(what) + "\n")
    status.flush()


def _reaper(spec: dict[str, Any], status_fd: int, stdout_fd: int, stderr_fd: int, zygote: int) -> None:
    """Start the child as a child subreaper (PR_SET_CHILD_SUBREAPER): every process it starts stays below us,
    even one that double-forks or leaves its session and process group, as Lambda's sandbox holds all of a
    function's processes. When the child exits, or SIGTERM says the invocation is over, all of it is ended;
    then its exit status goes to the runner on the status pipe (negative for a signal, as Popen says)."""
    # The zygote's SIGCHLD handler would take our children's exit statuses, and what it blocked across the
    # fork the child would inherit: both as a fresh process has them.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.setsid()  # the child's session and group are ours: stop()'s last resort kills the group
    os.dup2(stdout_fd, 1)  # the child's output, and our own traceback should we fail
    os.dup2(stderr_fd, 2)
    # Everything else of the zygote's goes, above all other invocations' status pipes: held here, they would
    # not end when those invocations do.
    os.closerange(3, status_fd)
    os.closerange(status_fd + 1, os.sysconf("SC_OPEN_MAX"))
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # the zygote goes with the runner, and we with the zygote
    if os.getppid() != zygote:
        return
    # Best effort: qemu-user (an arm64 image run under emulation) answers EINVAL. Without it, what the function
    # forks is still ended while it hangs below the child; only what daemonizes away from it can escape.
    with contextlib.suppress(OSError):
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    status = os.fdopen(status_fd, "w")
    try:
        child = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
                                 restore_signals=True)
    except OSError as exc:
        _say(status, {"errno": exc.errno, "strerror": exc.strerror, "filename": exc.filename})
        return
    try:
        _say(status, {"pid": os.getpid()})
    except BrokenPipeError:  # the runner was interrupted while it waited: nobody else will stop the child
        _stop["asked"] = True
    code, grace = 0, 0.0  # the child gone, what it left is killed at once, as Lambda resets the sandbox
    try:
        _stop["armed"] = True
        if _stop["asked"]:
            _on_sigterm(signal.SIGTERM, None)
        while True:  # reaping orphans as they come, until the child itself is done
            pid, wait_status = os.waitpid(-1, 0)
            if pid == child.pid:
                code = os.waitstatus_to_exitcode(wait_status)
                break
        # Disarmed inside the try: a SIGTERM that comes as the child exits raises here or not at all, never
        # past the except, where it would end the reaper before _end_all and its status.
        _stop["armed"] = False
    except _Stop:
        code, grace = -signal.SIGTERM, spec["grace"]
    _end_all(grace)
    with contextlib.suppress(BrokenPipeError):
        _say(status, code)


if __name__ == "__main__":
    sys.exit(_zygote_main(int(sys.argv[1])))
