"""Fixtures for the image tests (`make test-image`): a Docker engine, the image built from the Dockerfile, and a
workspace like the one `actions/checkout` leaves.

The tests here are marked `image`, which `make test` deselects: they need a Docker engine (started here as
root when none runs, and stopped again) and take minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES
from go_arm_lambda.toolchain import is_arm64
from image.dockerhost import Binfmt, Engine, base_args, build_image, docker

IMAGE = "go-arm-lambda:test-{arch}"
# The runner's user owns the workspace (uid 1001 on GitHub's hosted runners); the container runs as root.
RUNNER_UID = 1001


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    running = Engine(tmp_path_factory.mktemp("engine"))
    running.start()
    yield running
    docker("container", "prune", "-f", "--filter", "label=go-arm-lambda-test", check=False)
    running.stop()


@pytest.fixture(scope="session")
def image(engine: Engine) -> str:
    """The amd64 image, built from the repository's Dockerfile (the engine's layer cache makes reruns quick)."""
    tag = IMAGE.format(arch="amd64")
    build_image(tag, base_args("amd64"), arch="amd64")
    return tag


@pytest.fixture(scope="session")
def image_arm64(engine: Engine) -> Iterator[str]:
    """The arm64 image: built natively on an arm64 host, elsewhere under emulation (qemu-aarch64 registered
    with binfmt_misc for the session)."""
    registration = Binfmt()
    if not is_arm64():
        registration.register()
    try:
        tag = IMAGE.format(arch="arm64")
        build_image(tag, base_args("arm64"), arch="arm64")
        yield tag
    finally:
        registration.remove()


def chown_tree(path: Path, uid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, uid, uid)


def owners(path: Path) -> dict[int, list[str]]:
    """uid -> paths below `path` it owns (symlinks themselves, not their targets)."""
    found: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            found.setdefault(os.lstat(full).st_uid, []).append(os.path.relpath(full, path))
    return found


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a test leaves the Action's Go caches (.go-arm-lambda/cache) for the next, as actions/cache would."""
    return tmp_path_factory.mktemp("actions-cache")


def checkout(directory: Path, *, cache: Path | None = None, uid: int = RUNNER_UID) -> Path:
    """examples/ as actions/checkout leaves it: a git repository owned by the runner's user; with `cache`, the
    Go caches restored into it as actions/cache does."""
    workspace = directory / "workspace"
    shutil.copytree(EXAMPLES, workspace, ignore=shutil.ignore_patterns("demo.py", ".go-arm-lambda"))
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "init.defaultBranch=main"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "examples"]):
        subprocess.run([*git, *argv], cwd=workspace, check=True, capture_output=True)
    if cache is not None and (cache / "cache").is_dir():
        shutil.copytree(cache / "cache", workspace / ".go-arm-lambda" / "cache", symlinks=True)
    chown_tree(workspace, uid)
    return workspace


def keep_cache(workspace: Path, cache: Path) -> None:
    """Save the workspace's Go caches, as actions/cache does at the end of a job (first save wins)."""
    source = workspace / ".go-arm-lambda" / "cache"
    if source.is_dir() and not (cache / "cache").exists():
        shutil.copytree(source, cache / "cache", symlinks=True)
