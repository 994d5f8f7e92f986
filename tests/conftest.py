"""Shared fixtures: real Go builds of real functions, cached across sessions by the hash of their inputs.

A test that needs go, qemu or moto fails when it is missing: `require_tool` raises, it never skips.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

# Fixtures shared across test modules: moto behind a fault-injecting proxy, the GitHub API double, and the
# binaries the reader tests read.
pytest_plugins = ["awsfakes", "githubdouble", "gobinaries"]

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
FUNCTIONS_MODULE = FIXTURES / "functions"
EXAMPLES = ROOT / "examples"
CACHE = ROOT / ".go-arm-lambda" / "test-cache"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run `make test` (it installs what the suite needs)", pytrace=False)
    return path


def _tree_digest(module: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(module.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(module)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


class GoBuilder:
    """Builds packages of a fixture module with `go build`, caching the output directory per input hash.

    It is deliberately not go_arm_lambda.build: tests of verify, package and smoke must not depend on it.
    """

    def __init__(self) -> None:
        self.go = require_tool("go")
        self.version = subprocess.run([self.go, "version"], capture_output=True, text=True, check=True).stdout

    def build(self, module: Path, packages: Sequence[str], *, goarch: str = "arm64", cgo: bool = False,
              tags: str = "lambda.norpc", ldflags: str = "-s -w", extra_env: dict[str, str] | None = None) -> Path:
        """Returns the directory with one binary per package, named after the package's base name."""
        key = hashlib.sha256(repr((_tree_digest(module), list(packages), goarch, cgo, tags, ldflags,
                                   sorted((extra_env or {}).items()), self.version)).encode()).hexdigest()[:20]
        out = CACHE / key
        if (out / ".done").exists():
            return out
        tmp = CACHE / f"{key}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        env = {**os.environ, "GOOS": "linux", "GOARCH": goarch, "CGO_ENABLED": "1" if cgo else "0",
               "GOFLAGS": "-buildvcs=false", **(extra_env or {})}
        argv = [self.go, "build", "-trimpath", "-o", str(tmp) + "/"]
        if tags:
            argv += ["-tags", tags]
        if ldflags:
            argv += ["-ldflags", ldflags]
        subprocess.run([*argv, *packages], cwd=module, env=env, check=True)
        (tmp / ".done").touch()
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        return out


@pytest.fixture(scope="session")
def gobuild() -> GoBuilder:
    return GoBuilder()


@pytest.fixture(scope="session")
def fixture_bins(gobuild: GoBuilder) -> Path:
    """arm64 builds of every command in tests/fixtures/functions (answer, fail, panic, initexit, slow, ...)."""
    return gobuild.build(FUNCTIONS_MODULE, ["./cmd/..."])
