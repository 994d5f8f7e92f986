"""The one place that starts processes. Everything else calls these, so tests and timeouts see one seam.

Run as a program (`python -m go_arm_lambda.proc`), it is the reaper `start()` puts between the runner and a
long-running child: see `_reaper`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def start(argv: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
          env: Mapping[str, str] | None = None, grace: float = 1.0) -> subprocess.Popen[bytes]:
    """Start a long-running child (the smoke runner's function) with its output captured as bytes, under a
    reaper of its own: stop it with `stop()`, and nothing it started outlives it.

    The returned process is the reaper; its exit status is the child's. It runs with our environment, never
    the child's (whose LD_LIBRARY_PATH points into the function's zip); a child that cannot be started raises
    here, as Popen would. `grace` is how long a stopped child has between SIGTERM and SIGKILL.
    """
    args = [str(a) for a in argv]
    spec = {"argv": args, "cwd": str(cwd) if cwd is not None else None,
            "env": dict(env) if env is not None else None, "grace": grace}
    status_read, status_write = os.pipe()
    try:
        reaper = subprocess.Popen([sys.executable, "-I", "-m", "go_arm_lambda.proc", str(status_write)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  pass_fds=(status_write,), start_new_session=True)
    finally:
        os.close(status_write)
    try:
        assert reaper.stdin is not None
        with reaper.stdin:
            reaper.stdin.write(json.dumps(spec).encode())
        reaper.stdin = None  # closed: communicate() must not flush it, as for a child started without one
        with os.fdopen(status_read, "rb") as status:
            said = status.read()  # until the reaper has started the child, or failed to
    except BaseException:
        reaper.kill()
        reaper.wait()
        raise
    failure = json.loads(said) if said else {"errno": 0, "strerror": "the reaper exited before starting it"}
    if failure is None:
        return reaper
    reaper.wait()
    exc = OSError(failure["errno"], failure["strerror"], failure.get("filename"))
    if isinstance(exc, FileNotFoundError):
        raise _not_found(args[0], cwd) from exc
    raise exc


def stop(child: subprocess.Popen[bytes], *, grace: float) -> None:
    """Stop a `start()`ed child and everything it started: its reaper SIGTERMs all of it, SIGKILLs what is left
    after its grace, and exits. Should the reaper itself hang, it is killed with its process group."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace + 5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


# --- the reaper: `python -m go_arm_lambda.proc STATUS_FD`, the child's spec as JSON on stdin ---------------------

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class _Stop(Exception):
    """SIGTERM from the runner: the invocation is over."""


_stop = {"asked": False, "armed": False}


def _on_sigterm(signum: int, frame: object) -> None:
    # Only noted while the child is being started: an exception inside Popen could lose the child it forked.
    _stop["asked"] = True
    if _stop["armed"]:
        raise _Stop


def _prctl(option: int, value: int) -> None:
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


def _reap_any() -> bool:
    """Reap every child that has exited; False when no child is left at all."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


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
    while _reap_any() and _living_descendants() and time.monotonic() < deadline:
        time.sleep(0.01)
    while _reap_any():  # until no child is left, not even a zombie
        _signal_all(_living_descendants(), signal.SIGKILL)
        time.sleep(0.005)


def _reaper(status_fd: int) -> int:
    """Start the child as a child subreaper (PR_SET_CHILD_SUBREAPER): every process it starts stays below us,
    even one that double-forks or leaves its session and process group, as Lambda's sandbox holds all of a
    function's processes. When the child exits, or SIGTERM says the invocation is over, all of it is ended;
    then we exit as the child did."""
    spec = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    signal.signal(signal.SIGTERM, _on_sigterm)
    parent = os.getppid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # a runner killed outright still takes its function down
    if os.getppid() != parent:
        return 1
    # Best effort: qemu-user (an arm64 image run under emulation) answers EINVAL. Without it, what the function
    # forks is still ended while it hangs below the child; only what daemonizes away from it can escape.
    with contextlib.suppress(OSError):
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    status = os.fdopen(status_fd, "w")
    try:
        child = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
                                 restore_signals=True)
    except OSError as exc:
        status.write(json.dumps({"errno": exc.errno, "strerror": exc.strerror, "filename": exc.filename}))
        status.close()
        return 127
    status.write("null")
    status.close()
    code, grace = 0, 0.0  # the child gone, what it left is killed at once, as Lambda resets the sandbox
    try:
        _stop["armed"] = True
        if _stop["asked"]:
            raise _Stop
        while True:  # reaping orphans as they come, until the child itself is done
            pid, wait_status = os.waitpid(-1, 0)
            if pid == child.pid:
                code = os.waitstatus_to_exitcode(wait_status)
                break
    except _Stop:
        code, grace = -signal.SIGTERM, spec["grace"]
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _end_all(grace)
    if code < 0:  # died of a signal: so do we, so that the runner sees the same (without a core file of ours)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code  # a signal whose default is to be ignored: the shell's way of saying it
    return code


if __name__ == "__main__":
    sys.exit(_reaper(int(sys.argv[1])))
