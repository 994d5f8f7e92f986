"""Build speed and reproducibility, measured side by side in one run.

1. Eight functions of one module, warm Go cache:
   go-arm-lambda's build  vs  one `go build` per function (how SAM and CDK build)   goal: <= 0.5x
   go-arm-lambda's build  vs  a bare `go build -o dir/ ./cmd/...`                   goal: <= 1.15x
2. Reproducibility: two clean builds (fresh output dirs, the source copied elsewhere) give identical zips.

Run: .venv/bin/python bench/build_speed.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "entrypoint"))

from go_arm_lambda import build, config, package  # noqa: E402

WORK = ROOT / ".go-arm-lambda" / "bench" / "build"
EVENTS = ["APIGatewayProxyRequest", "SQSEvent", "SNSEvent", "S3Event", "DynamoDBEvent", "KinesisEvent",
          "CloudWatchEvent", "EventBridgeEvent"]


def make_module(dest: Path) -> list[str]:
    """Eight realistic functions (each takes a different event type) sharing the examples' go.mod."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    gomod = (ROOT / "examples" / "go.mod").read_text().replace("example.com/go-arm-lambda-examples", "bench")
    (dest / "go.mod").write_text(gomod)
    shutil.copy(ROOT / "examples" / "go.sum", dest / "go.sum")
    names = []
    for i, event in enumerate(EVENTS):
        name = f"fn{i}"
        (dest / "cmd" / name).mkdir(parents=True)
        (dest / "cmd" / name / "main.go").write_text(f"""package main

import (
\t"context"
\t"fmt"

\t"github.com/aws/aws-lambda-go/events"
\t"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, e events.{event}) (string, error) {{
\treturn fmt.Sprintf("{name} %+v", e), nil
}}

func main() {{ lambda.Start(handle) }}
""")
        names.append(name)
    return names


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    module = WORK / "module"
    names = make_module(module)
    functions = [f"{n}=./cmd/{n}" for n in names]
    cfg = config.load({"source": str(module), "functions": functions}, env={})
    go = build.toolchain.find_go()
    env = build.toolchain.build_env(goarm64="v8.0", cgo=False)
    flags = build.build_flags(cfg)
    out = WORK / "out"

    # Each run writes into a fresh directory, as in CI: go build skips the link when an up-to-date binary is
    # already at the output path, which would turn every round after the first into a no-op.
    def fresh(name: str) -> Path:
        shutil.rmtree(out / name, ignore_errors=True)
        return out / name

    def ours() -> None:
        build.build(cfg, fresh("ours"))

    def bare() -> None:
        subprocess.run([go.path, "build", *flags, "-o", f"{fresh('bare')}/", "./cmd/..."], cwd=module, env=env,
                       check=True)

    def one_at_a_time() -> None:
        dest = fresh("single")
        for n in names:
            subprocess.run([go.path, "build", *flags, "-o", f"{dest}/{n}", f"./cmd/{n}"], cwd=module,
                           env=env, check=True)

    ours()  # warm the Go cache: the goal is about warm builds
    results: dict[str, list[float]] = {"ours": [], "bare": [], "single": []}
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits all three alike
        results["ours"].append(timed(ours))
        results["bare"].append(timed(bare))
        results["single"].append(timed(one_at_a_time))
    med = {k: statistics.median(v) for k, v in results.items()}
    vs_single = med["ours"] / med["single"]
    vs_bare = med["ours"] / med["bare"]
    print(f"8 functions, warm cache, median of {args.rounds} (cores: {os.cpu_count()}):")
    print(f"  go-arm-lambda build        {med['ours'] * 1000:8.0f} ms")
    print(f"  bare go build ./cmd/...    {med['bare'] * 1000:8.0f} ms")
    print(f"  one go build per function  {med['single'] * 1000:8.0f} ms")
    print(f"  ratio vs one-at-a-time: {vs_single:.2f}x (goal <= 0.50x) {'OK' if vs_single <= 0.5 else 'MISSED'}")
    print(f"  ratio vs bare go build: {vs_bare:.2f}x (goal <= 1.15x) {'OK' if vs_bare <= 1.15 else 'MISSED'}")

    # Reproducibility: a copy of the source elsewhere, fresh output directories, a new mtime.
    copy = WORK / "copy" / "module"
    shutil.rmtree(copy.parent, ignore_errors=True)
    shutil.copytree(module, copy)
    (copy / "cmd" / names[0] / "main.go").touch()
    digests = []
    for src, dest in ((module, out / "repro1"), (copy, out / "repro2")):
        shutil.rmtree(dest, ignore_errors=True)
        c = config.load({"source": str(src), "functions": functions[:1]}, env={})
        b = build.build(c, dest / "bin")[0]
        digests.append(package.package_function(b.binary, b.handler, dest / "fn.zip").sha256)
    same = digests[0] == digests[1]
    print(f"reproducibility: zip sha256 {digests[0][:16]}… vs {digests[1][:16]}… {'identical' if same else 'DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
