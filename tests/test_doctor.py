"""The doctor against this machine (which must have everything) and against PATHs that lack things."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import require_tool
from go_arm_lambda import doctor
from go_arm_lambda.doctor import Check, all_ok, checks_to_json, format_checks, run_doctor


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def _bin_with(tmp_path: Path, *tools: str) -> str:
    """A PATH directory holding only the named tools (links to the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).symlink_to(require_tool(tool))
    return str(bin_dir)


def test_this_machine_has_everything_the_image_must_provide() -> None:
    for tool in ("go", "qemu-aarch64-static", "aarch64-linux-gnu-gcc", "git"):
        require_tool(tool)
    checks = run_doctor(cgo=True)
    report = format_checks(checks)
    assert [c.name for c in checks] == ["go", "GOCACHE", "GOMODCACHE", "qemu-aarch64", "cross-cc", "git",
                                        "python"]
    assert all(c.status == "ok" for c in checks), report
    assert all_ok(checks)
    assert report.endswith("all required checks passed\n")
    assert "go1." in _by_name(checks)["go"].detail


def test_path_without_go_and_qemu_fails_and_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _bin_with(tmp_path, "git")}
    checks = _by_name(run_doctor(env, machine="x86_64"))
    assert checks["go"].status == "error"
    assert "not found on PATH" in checks["go"].detail and "install Go 1.23 or newer" in checks["go"].fix
    assert "GOCACHE" not in checks  # no go, no cache to ask it about: one cause, one error
    assert checks["qemu-aarch64"].status == "error"
    assert "qemu-user-static" in checks["qemu-aarch64"].fix
    assert checks["cross-cc"].status == "warning"  # only --cgo needs it
    assert checks["git"].status == "ok"
    assert not all_ok(list(checks.values()))
    text = format_checks(list(checks.values()))
    assert "fix: install it (Debian/Ubuntu: apt-get install qemu-user-static)" in text
    assert text.endswith("2 required check(s) failed\n")


def test_cgo_makes_the_cross_compiler_required(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _bin_with(tmp_path, "go", "qemu-aarch64-static", "git")}
    assert all_ok(run_doctor(env, machine="x86_64"))
    checks = _by_name(run_doctor(env, cgo=True, machine="x86_64"))
    assert checks["cross-cc"].status == "error"
    assert "gcc-aarch64-linux-gnu libc6-dev-arm64-cross" in checks["cross-cc"].fix


def test_an_arm64_machine_needs_no_qemu(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _bin_with(tmp_path, "go", "git")}
    checks = _by_name(run_doctor(env, machine="aarch64"))
    assert checks["qemu-aarch64"].status == "ok" and "not needed" in checks["qemu-aarch64"].detail


def test_go_older_than_1_23_is_rejected(tmp_path: Path) -> None:
    bin_dir = tmp_path / "old"
    bin_dir.mkdir()
    # Answers `go env GOVERSION` as Go 1.22 does; 1.22 would silently ignore GOARM64.
    fake = bin_dir / "go"
    fake.write_text("#!/bin/sh\necho go1.22.9\n")
    fake.chmod(0o755)
    checks = _by_name(run_doctor({**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}))
    assert checks["go"].status == "error"
    assert "go1.22.9, older than go1.23" in checks["go"].detail
    assert "GOARM64" in checks["go"].fix


def test_unwritable_go_cache_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {**os.environ, "GOCACHE": str(blocker / "go-build"), "GOMODCACHE": str(tmp_path / "mod")}
    checks = _by_name(run_doctor(env))
    assert checks["GOCACHE"].status == "error" and "not writable" in checks["GOCACHE"].detail
    assert checks["GOMODCACHE"].status == "ok" and (tmp_path / "mod").is_dir()
    assert list((tmp_path / "mod").iterdir()) == []  # the probe file is gone again


def test_json_form(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _bin_with(tmp_path, "git")}
    data = json.loads(checks_to_json(run_doctor(env, machine="x86_64")))
    assert data["ok"] is False
    assert {"name": "git", "status": "ok"}.items() <= data["checks"][-2].items()
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in data["checks"])


def test_git_is_needed_only_for_some_jobs(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": _bin_with(tmp_path, "go", "qemu-aarch64-static")}
    checks = _by_name(run_doctor(env, machine="x86_64"))
    git = checks["git"]
    # Builds run with -buildvcs=false: without git only private modules and the report's commit are missing.
    assert git.status == "warning"
    assert "modules fetched straight from version control" in git.detail and "buildvcs" not in git.fix
    assert all_ok(list(checks.values()))


def test_an_arm64_machine_builds_cgo_with_its_native_gcc(tmp_path: Path) -> None:
    # Amazon Linux and others name the native compiler only gcc; on arm64 that is the compiler cgo needs.
    env = {**os.environ, "PATH": _bin_with(tmp_path, "go", "git", "gcc")}
    arm = _by_name(run_doctor(env, cgo=True, machine="aarch64"))
    assert arm["cross-cc"].status == "ok" and arm["cross-cc"].detail.endswith(str(tmp_path / "bin" / "gcc"))
    assert all_ok(list(arm.values()))
    x86 = _by_name(run_doctor(env, cgo=True, machine="x86_64"))["cross-cc"]
    assert x86.status == "error" and "gcc-aarch64-linux-gnu" in x86.fix  # a native x86 gcc cannot build arm64


def test_the_image_installs_the_compiler_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The image leaves the compiler out and names its packages in CC_ON_FIRST_USE.
    listed = tmp_path / "cgo-packages"
    listed.write_text("gcc libc6-dev\n")
    monkeypatch.setattr(doctor, "CC_ON_FIRST_USE", listed)
    env = {**os.environ, "PATH": _bin_with(tmp_path, "go", "git")}
    check = _by_name(run_doctor(env, machine="aarch64"))["cross-cc"]
    assert check.status == "warning"
    assert "the first --cgo build in this container installs it (gcc libc6-dev" in check.detail
    as_root = os.geteuid() == 0
    assert ("which needs root" in check.detail) is not as_root
    required = _by_name(run_doctor(env, cgo=True, machine="aarch64"))["cross-cc"]
    assert (required.status == "error") is not as_root
