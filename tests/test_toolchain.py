"""toolchain: the lookups of the tools a job runs, against a PATH without them. Finding go and the cross
compiler is tested through real builds in test_build.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from go_arm_lambda.errors import ToolchainError
from go_arm_lambda.toolchain import find_qemu, is_arm64, which_qemu


def test_missing_qemu_is_a_clear_toolchain_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match="qemu-aarch64-static is not installed") as info:
        find_qemu()
    assert "qemu-user-static" in info.value.fix


def test_qemu_is_found_under_either_name_on_the_path_given(tmp_path: Path) -> None:
    assert which_qemu(str(tmp_path)) is None
    qemu = tmp_path / "qemu-aarch64"
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)
    assert which_qemu(str(tmp_path)) == str(qemu)


@pytest.mark.parametrize(("machine", "arm64"), [("aarch64", True), ("arm64", True), ("AARCH64", True),
                                                 ("x86_64", False), ("armv7l", False)])
def test_arm64_hosts_are_named_as_linux_and_macos_name_them(machine: str, arm64: bool) -> None:
    assert is_arm64(machine) is arm64
