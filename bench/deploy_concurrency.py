"""Deploy speed against moto through the latency-injecting proxy.

Goals (issue 4): a no-op redeploy of 10 functions makes 0 mutating calls; deploying 10 changed functions with
50 ms of latency per request takes at most 0.3x the time of deploying them one after another.
Run: .venv/bin/python bench/deploy_concurrency.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "entrypoint"), str(ROOT / "tests")]


from awsfakes import FakeAws, artifacts, deploy, desired, reset_moto, standalone  # noqa: E402

NAMES = [f"fn{i:02d}" for i in range(10)]
LATENCY = 0.05
GOAL_RATIO = 0.3


def timed_deploy(aws: FakeAws, tmp: Path, concurrency: int) -> float:
    """Fresh go1.x functions, then one full deploy (layer, code, configuration) at the given concurrency."""
    reset_moto(aws.moto_url)
    aws._role = None
    aws.proxy.latency = 0
    for name in NAMES:
        aws.create_function(name)
    want = desired(artifacts(tmp, NAMES))
    aws.proxy.latency = LATENCY
    start = time.perf_counter()
    result = deploy(aws.url, want, concurrency=concurrency)
    elapsed = time.perf_counter() - start
    assert result.ok, result.all_errors()
    return elapsed


def main() -> int:
    with standalone() as aws:
        ok = True
        with tempfile.TemporaryDirectory() as tmp:
            serial = timed_deploy(aws, Path(tmp) / "serial", concurrency=1)
            parallel = timed_deploy(aws, Path(tmp) / "parallel", concurrency=8)
            ratio = parallel / serial
            print(f"10 changed functions, {LATENCY * 1000:.0f} ms per request: one after another {serial:.2f} s, "
                  f"concurrency 8 {parallel:.2f} s, ratio {ratio:.2f} (goal <= {GOAL_RATIO}): "
                  f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}")
            ok &= ratio <= GOAL_RATIO

            # moto ignores Architectures on update_function_code, so start from arm64 functions for the no-op.
            reset_moto(aws.moto_url)
            aws._role = None
            aws.proxy.latency = 0
            for name in NAMES:
                aws.create_function(name, runtime="provided.al2023", architecture="arm64")
            # With --publish too: an unchanged function must not get another copy of its newest version.
            want = desired(artifacts(Path(tmp) / "noop", NAMES), publish=True)
            deploy(aws.url, want)
            aws.proxy.clear()
            start = time.perf_counter()
            result = deploy(aws.url, want)
            noop = time.perf_counter() - start
            mutating = len(aws.proxy.mutating())
            print(f"no-op redeploy of 10 functions with --publish: {mutating} mutating requests seen by the proxy "
                  f"({result.mutating_calls} counted by the tool), {len(aws.proxy.requests)} reads, {noop:.2f} s "
                  f"(goal 0): {'met' if mutating == 0 == result.mutating_calls else 'NOT met'}")
            ok &= mutating == 0 == result.mutating_calls
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
