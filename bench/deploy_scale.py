"""A deploy of 200 changed functions in 3 regions, paced to Lambda's request quotas.

Goal (issue 11): through the test proxy enforcing Lambda's quotas (15/s control plane, 100/s GetFunction per
region, 429 with Retry-After beyond them) with 50 ms of latency per request, no function fails and the wall time
is at most 1.3x the floor the quota sets: the control-plane calls one region needs, divided by the rate.
`--scale N` multiplies both quotas and our limits together, which shortens the run and keeps the ratio.
Run: .venv/bin/python bench/deploy_scale.py [--scale N] [--functions N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "entrypoint"), str(ROOT / "tests")]


from awsfakes import artifacts, desired, standalone  # noqa: E402
from go_arm_lambda.aws import Rates, make_session  # noqa: E402
from go_arm_lambda.execute import execute  # noqa: E402
from go_arm_lambda.lambda_api import LambdaView, LambdaWriter  # noqa: E402
from go_arm_lambda.plan import make_plan  # noqa: E402
from quota import CONTROL_PLANE, Quota  # noqa: E402

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
LATENCY = 0.05
GOAL_RATIO = 1.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="both quotas and our limits times this")
    parser.add_argument("--functions", type=int, default=200, help="functions per region")
    parser.add_argument("--concurrency", type=int, default=8, help="functions at a time per region")
    args = parser.parse_args()
    with standalone() as aws:
        names = [f"fn{i:03d}" for i in range(args.functions)]
        aws.role()  # once, before the threads ask for it
        with ThreadPoolExecutor(8) as pool:  # go1.x on x86_64: every function has code and configuration to change
            list(pool.map(lambda job: aws.create_function(job[1], region=job[0]),
                          [(region, name) for region in REGIONS for name in names]))
        with tempfile.TemporaryDirectory() as tmp:
            want = desired(artifacts(Path(tmp), names), regions=REGIONS)
            aws.proxy.quota = quota = Quota(scale=args.scale)
            aws.proxy.latency = LATENCY
            rate = 15.0 * args.scale
            session = make_session(aws.url, rates=Rates(rate, 100.0 * args.scale))
            start = time.perf_counter()
            plan = make_plan(want, {r: LambdaView(session, r) for r in REGIONS}, concurrency=args.concurrency)
            result = execute(plan, {r: LambdaWriter(session, r) for r in REGIONS}, args.concurrency)
            took = time.perf_counter() - start
    failed = [f for f in result.functions if f.status.failed]
    # The calls each region needed (those the quota let through), the most of any region, at the quota's rate.
    needed = max(sum(s.admitted and s.region == r and s.quota == CONTROL_PLANE for s in quota.seen) for r in REGIONS)
    floor = needed / rate
    ratio = took / floor
    met = not failed and ratio <= GOAL_RATIO
    print(f"{args.functions} changed functions x {len(REGIONS)} regions, quotas x{args.scale:g} "
          f"({rate:g}/s control plane, {100 * args.scale:g}/s GetFunction per region), {LATENCY * 1000:.0f} ms "
          f"per request, concurrency {args.concurrency} per region: {needed} control-plane calls per region, "
          f"floor {floor:.2f} s, took {took:.2f} s, ratio {ratio:.2f} (goal <= {GOAL_RATIO}), "
          f"{quota.throttled} 429s received, {len(failed)} failed functions: {'met' if met else 'NOT met'}")
    for f in failed[:5]:
        print(f"  {f.name} ({f.region}): {f.error}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
