"""`go-arm-lambda doctor`: checks that this machine or image provides what a job needs, before a job needs it.

No Docker engine is at hand where the image is written, so the image proves itself at start instead: the
same checks run here, in CI, and as the first thing a user can run inside the container.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from go_arm_lambda import proc
from go_arm_lambda.errors import ToolchainError
from go_arm_lambda.toolchain import (
    CC_ON_FIRST_USE,
    CROSS_CC,
    MIN_GO,
    QEMU_NAMES,
    QEMU_PACKAGE,
    cc_packages,
    find_go,
    is_arm64,
    which_cross_cc,
    which_qemu,
)

MIN_PYTHON = (3, 11)

Status = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status  # "error" fails the doctor; "warning" is something only some jobs need
    detail: str
    fix: str = ""


def _first_line(done: proc.Completed) -> str:
    return ((done.stdout or done.stderr).strip().splitlines() or [""])[0]


def _version_of(path: str, env: Mapping[str, str], arg: str = "--version") -> str:
    try:
        return _first_line(proc.run([path, arg], env=env, timeout=30))
    except ToolchainError as exc:
        return f"did not run: {exc.what}"


def _check_go(go: str, env: dict[str, str]) -> tuple[Check, dict[str, str]]:
    """The go on `env`'s PATH, judged by toolchain.find_go (the same rule a build applies), and its caches."""
    path = shutil.which(go, path=env.get("PATH", ""))
    if path is None:  # find_go would search os.environ's PATH, not the one being checked
        need = f"{MIN_GO[0]}.{MIN_GO[1]}"
        return Check("go", "error", f"Go toolchain {go!r} not found on PATH",
                     f"install Go {need} or newer (GOARM64 needs {need}), or pass --go /path/to/go"), {}
    try:
        toolchain = find_go(path)
    except ToolchainError as exc:
        return Check("go", "error", exc.what, exc.fix), {}
    # GOTOOLCHAIN=local: ask this go, not one that a go.mod nearby would make it download.
    done = proc.run([toolchain.path, "env", "-json", "GOCACHE", "GOMODCACHE"],
                    env={**env, "GOTOOLCHAIN": "local"}, timeout=60)
    try:
        goenv = json.loads(done.stdout) if done.ok else {}
    except json.JSONDecodeError:
        goenv = {}
    return Check("go", "ok", f"{toolchain.version_text} at {toolchain.path}"), goenv


def _check_writable(var: str, directory: str) -> Check:
    fix = f"set {var} to a directory this user can write (under Actions it defaults into the workspace)"
    if not directory or directory == "off":
        return Check(var, "error", f"{var} is {directory or 'unset'}", fix)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".go-arm-lambda-doctor-") as f:
            f.write(b"ok")
    except OSError as exc:
        return Check(var, "error", f"{directory} is not writable ({exc.strerror or exc})", fix)
    return Check(var, "ok", f"{directory} is writable")


def _check_qemu(env: Mapping[str, str], machine: str) -> Check:
    if is_arm64(machine):
        return Check("qemu-aarch64", "ok", f"not needed: this {machine} machine runs arm64 binaries itself")
    # The same lookup the smoke runner makes, on the PATH being checked.
    path = which_qemu(env.get("PATH", ""))
    if path:
        return Check("qemu-aarch64", "ok", f"{_version_of(path, env)} at {path}")
    return Check("qemu-aarch64", "error",
                 f"neither {' nor '.join(QEMU_NAMES)} is on PATH; smoke invocations need it to run arm64 "
                 f"binaries on this {machine} machine",
                 f"install it (Debian/Ubuntu: apt-get install {QEMU_PACKAGE}), or pass --no-smoke")


def _check_cross_cc(env: Mapping[str, str], cgo: bool, machine: str) -> Check:
    # The same lookup a --cgo build makes, on the PATH being checked.
    path = which_cross_cc(env.get("PATH", ""), machine)
    if path:
        return Check("cross-cc", "ok", f"{_version_of(path, env)} at {path}")
    packages = cc_packages(machine)
    compiler = f"{CROSS_CC} or gcc" if is_arm64(machine) else CROSS_CC
    if CC_ON_FIRST_USE.is_file():  # the image: the first cgo build installs it
        wanted = " ".join(CC_ON_FIRST_USE.read_text().split())
        root = os.geteuid() == 0
        return Check("cross-cc", "error" if cgo and not root else "warning",
                     f"{compiler} is not installed; the first --cgo build in this container installs it ({wanted}, "
                     f"about 10-30 s){'' if root else ', which needs root'}",
                     "run the container as root for --cgo builds" if not root else "")
    return Check("cross-cc", "error" if cgo else "warning",
                 f"{compiler} not found on PATH; only --cgo builds need it",
                 f"install it (Debian/Ubuntu: apt-get install {packages}) to build with --cgo")


def _check_git(env: Mapping[str, str]) -> Check:
    path = shutil.which("git", path=env.get("PATH", ""))
    if path is None:
        # Builds use -buildvcs=false, so only modules fetched straight from a repository need git, and the
        # commit in the report and the version description is simply left out without it.
        return Check("git", "warning",
                     "git not found on PATH; go needs it only for modules fetched straight from version control "
                     "(private modules, GOPRIVATE, GOPROXY=direct), and the commit is left out of the report",
                     "install git (Debian/Ubuntu: apt-get install git)")
    return Check("git", "ok", f"{_version_of(path, env)} at {path}")


def _check_python() -> Check:
    found = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", "error", f"Python {found} is older than {MIN_PYTHON[0]}.{MIN_PYTHON[1]}",
                     "run go-arm-lambda with Python 3.11 or newer")
    return Check("python", "ok", f"Python {found} at {sys.executable}")


def run_doctor(env: Mapping[str, str] | None = None, *, go: str = "go", cgo: bool = False,
               machine: str | None = None) -> list[Check]:
    """Every check, in a stable order. `env` is the environment to look in (PATH, GOCACHE, ...; default
    os.environ); `cgo=True` turns a missing cross compiler into an error; `machine` defaults to this one's."""
    env = dict(os.environ if env is None else env)
    go_check, goenv = _check_go(go, env)
    checks = [go_check]
    if go_check.status == "ok":
        checks += [_check_writable(var, goenv.get(var, "")) for var in ("GOCACHE", "GOMODCACHE")]
    machine = machine or platform.machine()
    checks += [_check_qemu(env, machine), _check_cross_cc(env, cgo, machine), _check_git(env), _check_python()]
    return checks


def all_ok(checks: list[Check]) -> bool:
    """The doctor's verdict: the CLI exits 0 when true, 1 otherwise. Warnings do not count."""
    return all(c.status != "error" for c in checks)


def checks_to_json(checks: list[Check]) -> str:
    return json.dumps({"ok": all_ok(checks), "checks": [asdict(c) for c in checks]}, indent=2)


def format_checks(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<8}{c.name:<{width}}  {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"{'':<8}{'':<{width}}  fix: {c.fix}")
    failed = sum(c.status == "error" for c in checks)
    lines.append("all required checks passed" if not failed else f"{failed} required check(s) failed")
    return "\n".join(lines) + "\n"
