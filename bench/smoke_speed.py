"""How long a smoke invocation takes per function on this host (through qemu on x86_64). Goal: at most 2 s.

Builds the example functions for linux/arm64 into .go-arm-lambda/bench/, packages them with the bootstrap
layer, then times `smoke()` end to end (extract, start, invoke, stop) several times per function and prints
the median wall time beside the median time to the function's response.

    .venv/bin/python bench/smoke_speed.py [--runs N]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "entrypoint"))

from go_arm_lambda import package, proc  # noqa: E402
from go_arm_lambda.smoke import smoke  # noqa: E402

OUT = ROOT / ".go-arm-lambda" / "bench"
GOAL_S = 2.0
EVENTS = {
    "hello": b'{"name": "Ada"}',
    "orders": b'{"customer": "Ada", "items": [{"sku": "tea", "quantity": 2, "cents": 350}]}',
}


def build_examples() -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = proc.merged_env({"GOOS": "linux", "GOARCH": "arm64", "CGO_ENABLED": "0",
                           "GOFLAGS": "-buildvcs=false"})
    OUT.mkdir(parents=True, exist_ok=True)
    done = proc.run([go, "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags", "-s -w", "-o", f"{OUT}/",
                     *(f"./cmd/{name}" for name in EVENTS)], cwd=ROOT / "examples", env=env, timeout=600)
    if not done.ok:
        sys.exit(f"go build failed:\n{done.stderr}")
    return OUT


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    bins = build_examples()
    layer = package.package_layer(OUT / "layer.zip").path
    print(f"smoke per function on {platform.machine()} ({runs} runs each, medians), goal <= {GOAL_S:g} s")
    print(f"{'function':<10} {'wall s':>8} {'to response ms':>15} {'max wall s':>11}  goal")
    all_met = True
    for name, event in EVENTS.items():
        zpath = package.package_function(bins / name, name, OUT / f"{name}.zip").path
        walls, durations = [], []
        for _ in range(runs):
            started = time.perf_counter()
            result = smoke(zpath, name, layer_zip=layer, event=event, function_name=name)
            walls.append(time.perf_counter() - started)
            if not result.ok:
                print(f"{name}: smoke failed: {result.error}\n{result.stderr_tail}")
                return 1
            durations.append(result.duration_ms)
        wall = statistics.median(walls)
        met = wall <= GOAL_S
        all_met &= met
        print(f"{name:<10} {wall:>8.3f} {statistics.median(durations):>15.0f} {max(walls):>11.3f}  "
              f"{'met' if met else 'MISSED'} ({wall / GOAL_S:.0%} of the budget)")
    print("goal met" if all_met else "goal MISSED")
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
