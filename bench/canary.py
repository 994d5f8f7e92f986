"""What a canary costs beyond its window: 10 functions deployed with `--traffic canary:10:W` against the same
deploy all at once, through moto behind the recording proxy (fake zips: no check, so nothing is invoked).

Goal (issue 10): the canary adds under 1.1x its configured window W, because every function of the run shifts
together on one clock (10 windows one after another would add 10x). Printed: both wall times, what the canary
added over the all-at-once deploy as a multiple of W, and how far apart the functions' first shifts were.
Run: .venv/bin/python bench/canary.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "entrypoint"), str(ROOT / "tests")]


from awsfakes import FakeAws, artifacts, deploy, desired, reset_moto, standalone  # noqa: E402
from go_arm_lambda import inputs  # noqa: E402

NAMES = [f"fn{i:02d}" for i in range(10)]
WINDOWS = (5.0, 15.0)  # seconds
GOAL = 1.1


def timed(aws: FakeAws, tmp: Path, spec: str) -> tuple[float, list[float]]:
    """Fresh functions with alias live on version 1, then the timed deploy of version 2 with `spec`; returns
    the wall time and each function's first traffic move (seconds into the shift)."""
    reset_moto(aws.moto_url)
    aws._role = None
    for name in NAMES:
        aws.create_function(name, runtime="provided.al2023", architecture="arm64", handler=name)
    first = deploy(aws.url, desired(artifacts(tmp / "v1", NAMES), publish=True, alias="live"))
    assert first.ok, first.all_errors()
    want = desired(artifacts(tmp / "v2", NAMES, version="v2"), publish=True, alias="live",
                   traffic=inputs.traffic(spec, "--traffic"))
    start = time.perf_counter()
    result = deploy(aws.url, want)
    took = time.perf_counter() - start
    assert result.ok, result.all_errors()
    firsts = [f.traffic[0]["at"] for f in result.functions if f.traffic]
    return took, firsts


def main() -> int:
    with standalone() as aws:
        ok = True
        with tempfile.TemporaryDirectory() as tmp:
            baseline, _ = timed(aws, Path(tmp) / "all", "all-at-once")
            print(f"10 functions, all at once: {baseline:.2f} s")
            for window in WINDOWS:
                took, firsts = timed(aws, Path(tmp) / f"canary{window:g}", f"canary:10:{window:g}s")
                added = took - baseline
                ratio = added / window
                spread = max(firsts) - min(firsts)
                print(f"10 functions, canary:10:{window:g}s: {took:.2f} s, adds {added:.2f} s = {ratio:.3f}x the "
                      f"window (goal < {GOAL}x): {'met' if ratio < GOAL else 'NOT met'}; the functions' first "
                      f"shifts {spread * 1000:.0f} ms apart")
                ok &= ratio < GOAL and len(firsts) == len(NAMES)
    print("(2 shared cores, other work running: wall times are noisy)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
