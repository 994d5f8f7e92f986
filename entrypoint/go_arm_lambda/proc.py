"""The one place that starts processes. Everything else calls these, so tests and timeouts see one seam."""

from __future__ import annotations

import os
import signal
import subprocess
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
          env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running child (the smoke runner's function) with its output captured as bytes.

    It gets a process group of its own so that stopping it also stops whatever it exec'd or forked.
    """
    args = [str(a) for a in argv]
    try:
        return subprocess.Popen(args, cwd=cwd, env=dict(env) if env is not None else None,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise _not_found(args[0], cwd) from exc


def stop(child: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGTERM the child's whole process group (what it exec'd or forked too), then SIGKILL after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if child.poll() is not None:
            return
        try:
            os.killpg(child.pid, sig)  # start() gave it a session, and so a process group, of its own
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
