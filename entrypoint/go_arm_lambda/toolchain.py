"""The tools a job runs: the Go toolchain (found, versioned, checked against what modules need), the aarch64 C
cross compiler, and qemu-user, which runs arm64 programs on other hosts."""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from go_arm_lambda import proc
from go_arm_lambda.errors import ToolchainError

# GOARM64 arrived in Go 1.23; older toolchains would silently ignore it and build v8.0.
MIN_GO = (1, 23)
CROSS_CC = "aarch64-linux-gnu-gcc"
CROSS_CC_PACKAGES = "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
# On an arm64 host cgo needs no cross compiler: the native one builds for linux/arm64 (Debian's also answers to
# the cross compiler's name).
NATIVE_CC = ("gcc", "cc")
NATIVE_CC_PACKAGES = "gcc libc6-dev"
# The image leaves the C compiler for cgo out (175 MB on amd64, 150 MB on arm64, that only cgo builds use) and
# lists in this file the Debian packages that bring it: the first cgo build in a container installs them.
CC_ON_FIRST_USE = Path("/opt/go-arm-lambda/cgo-packages")
# Where qemu finds /lib/ld-linux-aarch64.so.1 for a cgo binary: Debian's aarch64 cross toolchain puts it here.
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"
QEMU_NAMES = ("qemu-aarch64-static", "qemu-aarch64")
QEMU_PACKAGE = "qemu-user-static"
ARM64_MACHINES = ("aarch64", "arm64")  # platform.machine() on Linux and on macOS

_GO_LINE = re.compile(r"^go\s+(\d+)\.(\d+)(?:\.(\d+))?\s*(?://.*)?$", re.MULTILINE | re.ASCII)
_GOVERSION = re.compile(r"go(\d+)\.(\d+)(?:\.(\d+))?", re.ASCII)


@dataclass(frozen=True)
class GoToolchain:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return "go" + ".".join(map(str, self.version))


def _parse_version(m: re.Match[str]) -> tuple[int, int, int]:
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def find_go(go: str = "go") -> GoToolchain:
    path = shutil.which(go)
    if path is None:
        raise ToolchainError(f"Go toolchain {go!r} not found",
                             f"install Go {MIN_GO[0]}.{MIN_GO[1]} or newer, or pass --go /path/to/go")
    # GOTOOLCHAIN=local: we want the version of this binary, not of one it might download.
    done = proc.run([path, "env", "GOVERSION"], env=proc.merged_env({"GOTOOLCHAIN": "local"}), timeout=60)
    m = _GOVERSION.match(done.stdout.strip())
    if not done.ok or m is None:
        raise ToolchainError(f"{path} did not report its version ({(done.stderr or done.stdout).strip()[:200]})",
                             "check that it is a working Go installation")
    version = _parse_version(m)
    if version[:2] < MIN_GO:
        raise ToolchainError(f"{path} is go{'.'.join(map(str, version))}, older than go{MIN_GO[0]}.{MIN_GO[1]}",
                             f"install Go {MIN_GO[0]}.{MIN_GO[1]} or newer (needed for GOARM64)")
    return GoToolchain(path, version)


def module_go_version(go_mod: Path) -> tuple[int, int, int] | None:
    m = _GO_LINE.search(go_mod.read_text(encoding="utf-8", errors="replace"))
    return _parse_version(m) if m else None


def _workspace_file(module_dir: Path) -> Path | None:
    """The go.work that go would use for this module: $GOWORK, else the nearest one above it."""
    gowork = os.environ.get("GOWORK", "")
    if gowork == "off":
        return None
    if gowork:
        return Path(gowork)
    return next((d / "go.work" for d in (module_dir, *module_dir.parents) if (d / "go.work").is_file()), None)


def check_module(toolchain: GoToolchain, go_mod: Path) -> None:
    """A module (or its go.work) whose `go` line is newer than the toolchain cannot build; say so instead of
    letting go try."""
    if os.environ.get("GOTOOLCHAIN", "").startswith(("auto", "go1", "path")):
        return  # the user asked go to fetch or pick the right toolchain itself
    for needs in (go_mod, _workspace_file(go_mod.parent)):
        needed = module_go_version(needs) if needs is not None and needs.is_file() else None
        if needed is not None and needed > toolchain.version:
            need = ".".join(map(str, needed))
            raise ToolchainError(f"{needs} needs go {need}, but {toolchain.path} is {toolchain.version_text}",
                                 f"install Go {need} or newer, pass --go, or set GOTOOLCHAIN=auto to let go "
                                 "download it")


def build_env(*, goarm64: str, cgo: bool) -> dict[str, str]:
    """The environment of every build: linux/arm64, no surprise toolchain downloads, cgo only when asked."""
    overrides = {"GOOS": "linux", "GOARCH": "arm64", "GOARM64": goarm64, "CGO_ENABLED": "1" if cgo else "0"}
    if "GOTOOLCHAIN" not in os.environ:
        overrides["GOTOOLCHAIN"] = "local"
    if cgo:
        overrides["CC"] = find_cross_cc()
    return proc.merged_env(overrides)


def cc_packages(machine: str | None = None) -> str:
    """The Debian packages that bring the C compiler cgo builds use on `machine` (default: this one)."""
    return NATIVE_CC_PACKAGES if is_arm64(machine) else CROSS_CC_PACKAGES


def which_cross_cc(search_path: str | None = None, machine: str | None = None) -> str | None:
    """The C compiler for linux/arm64 on PATH (or on `search_path`, which the doctor uses to check another PATH):
    the cross compiler, or on an arm64 `machine` (default: this one) also the native compiler."""
    names = (CROSS_CC, *NATIVE_CC) if is_arm64(machine) else (CROSS_CC,)
    return next((p for p in (shutil.which(n, path=search_path) for n in names) if p), None)


def find_cross_cc() -> str:
    path = which_cross_cc()
    if path is not None:
        return path
    if CC_ON_FIRST_USE.is_file():
        return _install_cc(CC_ON_FIRST_USE.read_text().split())
    raise ToolchainError(f"--cgo needs an aarch64 C cross compiler, and {CROSS_CC} is not installed",
                         f"install it (Debian/Ubuntu: apt-get install {cc_packages()}) or drop --cgo")


def _install_cc(packages: list[str]) -> str:
    """Install the image's C compiler for cgo with apt, once per container, saying what it costs."""
    wanted = " ".join(packages)
    if os.geteuid() != 0:
        raise ToolchainError(f"--cgo needs a C compiler for linux/arm64, which this image installs on first use, "
                             f"and only root can install it (this container runs as uid {os.geteuid()})",
                             "run the container as root (without -u) for cgo builds, or build an image FROM this "
                             f"one with `RUN apt-get update && apt-get install -y {wanted}`")
    sys.stderr.write(f"go-arm-lambda: cgo: installing the C compiler for linux/arm64 ({wanted}), once per "
                     "container; it takes about 10-30 s\n")
    sys.stderr.flush()
    start = time.monotonic()
    env = proc.merged_env({"DEBIAN_FRONTEND": "noninteractive"})
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        done = proc.run(argv, env=env, timeout=900)
        if not done.ok:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ToolchainError(f"installing the C compiler for cgo failed: `{' '.join(argv[:2])}`: "
                                 f"{' / '.join(tail)}",
                                 "let the container reach Debian's package mirror, or build an image FROM this "
                                 f"one with `RUN apt-get update && apt-get install -y {wanted}`")
    path = which_cross_cc()
    if path is None:
        raise ToolchainError(f"{wanted} installed, but {CROSS_CC} is still not on PATH",
                             "check PATH inside the container")
    sys.stderr.write(f"go-arm-lambda: cgo: {path} installed in {time.monotonic() - start:.0f} s\n")
    return path


def is_arm64(machine: str | None = None) -> bool:
    """Whether `machine` (default: this one) runs arm64 programs itself, so smoke needs no qemu."""
    return (machine or platform.machine()).lower() in ARM64_MACHINES


def which_qemu(search_path: str | None = None) -> str | None:
    """The aarch64 user emulator on PATH (or on `search_path`, which the doctor uses to check another PATH)."""
    return next((p for p in (shutil.which(n, path=search_path) for n in QEMU_NAMES) if p), None)


def find_qemu() -> str:
    path = which_qemu()
    if path:
        return path
    raise ToolchainError(f"{QEMU_NAMES[0]} is not installed, so arm64 functions cannot run on this "
                         f"{platform.machine()} host", f"install {QEMU_PACKAGE} (apt-get install {QEMU_PACKAGE}), "
                         "run on an arm64 machine, or turn smoke off with --no-smoke")
