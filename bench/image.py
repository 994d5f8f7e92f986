"""The image: its size, how long it takes to build and to start, and the Action's wall time on examples/.

Goal (issue 12): at most 600 MB unpacked. Measured: size unpacked and gzipped (what a registry stores and a
runner pulls), cold and warm `docker build`, `docker run` to the first output line, and the whole Action on
examples/ (build, verify, smoke, package; no AWS) with cold and warm Go caches (.go-arm-lambda/cache in the
workspace, what the README tells users to keep with actions/cache).

Uses the running Docker engine or starts one (as root; stopped at the end). Where no registry is reachable the
bases are look-alikes (tests/image/lookalikes.py). Run: .venv/bin/python bench/image.py [--arch amd64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "entrypoint"), str(ROOT / "tests")]

from image.dockerhost import (  # noqa: E402
    ActionRun,
    Engine,
    base_args,
    build_image,
    compressed_size,
    docker,
    docker_cli,
    image_size,
)

GOAL_MB = 600
TAG = "go-arm-lambda:bench"
# What the Dockerfile copies from the repository (its .dockerignore allowlist).
CONTEXT = ("Dockerfile", ".dockerignore", "pyproject.toml", "constraints.txt", "README.md", "entrypoint", "layer")


def copy_context(to: Path) -> Path:
    to.mkdir(parents=True)
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, to / name)
    return to


def timed_build(context: Path, args: dict[str, str], arch: str, *, no_cache: bool = False) -> float:
    return build_image(TAG, args, arch=arch, no_cache=no_cache, context=context)


def first_line_after_run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Seconds from `docker run` to its first output line, to its end, and the exit code."""
    start = time.perf_counter()
    with subprocess.Popen([docker_cli(), *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env) as p:
        assert p.stdout is not None
        first = None
        for _ in p.stdout:
            if first is None:
                first = time.perf_counter() - start
        code = p.wait()
    return (first if first is not None else float("nan")), time.perf_counter() - start, code


def action_wall(run: ActionRun, image: str) -> tuple[float, float]:
    """The whole build-only Action on the workspace: (seconds to its first line, seconds to its end)."""
    argv, env = run.argv(image, {"functions": "hello=./cmd/hello\norders-api=./cmd/orders\n", "comment": "never"})
    first, total, code = first_line_after_run(argv, {**os.environ, **env})
    if code != 0:
        sys.exit(f"the Action failed (exit {code}) on examples/")
    return first, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="amd64", choices=("amd64", "arm64"))
    parser.add_argument("--runs", type=int, default=5, help="docker run start-ups to take the median of")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="go-arm-lambda-bench-image-") as tmp_text:
        tmp = Path(tmp_text)
        engine = Engine(tmp / "engine")
        engine.start()
        try:
            return measure(tmp, args.arch, args.runs)
        finally:
            engine.stop()


def measure(tmp: Path, arch: str, runs: int) -> int:
    bases = base_args(arch)
    context = copy_context(tmp / "context")
    cold = timed_build(context, bases, arch, no_cache=True)
    warm = timed_build(context, bases, arch)
    with (context / "entrypoint" / "go_arm_lambda" / "__init__.py").open("a") as source:
        source.write("\n# a source change\n")
    changed = timed_build(context, bases, arch)
    unpacked, packed = image_size(TAG), compressed_size(TAG)

    starts = [first_line_after_run(["run", "--rm", "--network", "host", TAG, "doctor"]) for _ in range(runs)]
    to_first = statistics.median(s[0] for s in starts)
    doctor_total = statistics.median(s[1] for s in starts)

    workspace = tmp / "workspace"
    shutil.copytree(ROOT / "examples", workspace, ignore=shutil.ignore_patterns("demo.py", ".go-arm-lambda"))
    run = ActionRun(tmp / "_temp", workspace, {"repository": {"full_name": "acme/shop"}}, event_name="push")
    cold_first, cold_total = action_wall(run, TAG)
    warm_first, warm_total = action_wall(run, TAG)  # the same workspace: its Go caches as actions/cache restores

    mb = unpacked / 1e6
    met = mb <= GOAL_MB
    print(f"image on linux/{arch}, bases: {', '.join(f'{k}={v}' for k, v in bases.items()) or 'official'}")
    print(f"| size unpacked | {mb:.0f} MB | goal <= {GOAL_MB} MB: {'met' if met else 'MISSED'} |")
    print(f"| size compressed (gzip, what a runner pulls) | {packed / 1e6:.0f} MB | |")
    print(f"| docker build, cold (--no-cache, bases present) | {cold:.0f} s | |")
    print(f"| docker build, warm, nothing changed | {warm:.1f} s | |")
    print(f"| docker build, warm, a source file changed | {changed:.0f} s | |")
    print(f"| docker run to the first output line (doctor, median of {runs}) | {to_first:.2f} s "
          f"(whole doctor {doctor_total:.2f} s) | |")
    print(f"| the Action on examples/, cold Go caches | {cold_total:.1f} s (first line after {cold_first:.2f} s) | |")
    print(f"| the Action on examples/, warm Go caches | {warm_total:.1f} s (first line after {warm_first:.2f} s) | |")
    docker("image", "rm", TAG, check=False)
    print("goal met" if met else "goal MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
