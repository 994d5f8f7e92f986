"""Deploys paced to Lambda's request quotas: aws.RateLimiter on its own, then whole deploys through the test
AWS's proxy enforcing the quotas as Lambda does (tests/quota.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from awsfakes import FAST, REGION, FakeAws, artifacts, deploy, desired
from go_arm_lambda import config
from go_arm_lambda.aws import (
    CONTROL_PLANE,
    GET_FUNCTION,
    RateLimiter,
    Rates,
    make_session,
    quota_of,
)
from go_arm_lambda.execute import execute
from go_arm_lambda.lambda_api import LambdaView, LambdaWriter
from go_arm_lambda.plan import make_plan
from quota import Quota, lambda_quota
from test_cli import deploy as cli_deploy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(rate: float) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(rate, clock=clock, sleep=clock.sleep), clock


# --- the limiter -----------------------------------------------------------------------------------------------

def test_the_limiter_paces_evenly_after_a_burst_of_three_quarters_of_a_second() -> None:
    paced, clock = limiter(20)
    start = clock.now
    sent = [paced.acquire() - start for _ in range(20)]
    assert sent == pytest.approx([0.0] * 15 + [0.05 * k for k in range(1, 6)])
    assert paced.sent == 20


def test_a_throttle_lowers_the_rate_once_and_it_climbs_back_to_the_ceiling() -> None:
    paced, clock = limiter(10)
    before = paced.acquire()
    clock.sleep(0.01)
    paced.throttled(paced.acquire(), None)
    assert paced.rate == pytest.approx(7.0)  # botocore's CUBIC: beta 0.7
    # Answered after the cut, but sent before it at the old rate: no second cut for the same burst.
    paced.throttled(before, None)
    assert paced.rate == pytest.approx(7.0)
    clock.sleep(1.0)
    paced.answered()
    assert 7.0 < paced.rate < 10.0
    clock.sleep(0.96)  # CUBIC is back at the rate that met the throttle after (10 * 0.3 / 0.4) ** (1/3) s
    paced.answered()
    assert paced.rate == pytest.approx(10.0, abs=0.05)
    clock.sleep(10)
    paced.answered()
    assert paced.rate == 10.0  # never above what it was given
    assert paced.throttled_count == 2


def test_a_retry_after_holds_back_every_call() -> None:
    paced, clock = limiter(10)
    paced.throttled(paced.acquire(), 2.0)
    throttled_at = clock.now
    assert paced.acquire() >= throttled_at + 2.0


def test_each_call_spends_the_quota_lambda_counts_it_in() -> None:
    assert quota_of("lambda", "GetFunction") == GET_FUNCTION
    assert quota_of("lambda", "Invoke") is quota_of("lambda", "GetPolicy") is None
    for operation in ("UpdateFunctionCode", "GetFunctionConfiguration", "ListVersionsByFunction", "GetAlias",
                      "PublishLayerVersion", "TagResource", "ListTags"):
        assert quota_of("lambda", operation) == CONTROL_PLANE
    assert quota_of("s3", "PutObject") is quota_of("sts", "GetCallerIdentity") is None


# --- deploys through the proxy enforcing the quotas ------------------------------------------------------------

def _deploy(aws: FakeAws, tmp_path: Path, names: list[str], regions: tuple[str, ...], rates: Rates,
            ) -> tuple[object, float, object]:
    for region in regions:
        for name in names:
            aws.create_function(name, region=region)  # straight to moto: not through the quotas
    want = desired(artifacts(tmp_path, names), regions=regions)
    session = make_session(aws.url, timing=FAST, rates=rates)
    start = time.monotonic()
    plan = make_plan(want, {r: LambdaView(session, r) for r in regions})
    result = execute(plan, {r: LambdaWriter(session, r) for r in regions})
    return result, time.monotonic() - start, session


def test_a_deploy_at_the_quota_is_never_throttled(aws: FakeAws, tmp_path: Path) -> None:
    aws.proxy.quota = quota = Quota()
    names = [f"fn{i:02d}" for i in range(20)]
    regions = (REGION, "us-east-1")

    result, took, session = _deploy(aws, tmp_path, names, regions, Rates())

    assert result.ok, result.all_errors()  # type: ignore[attr-defined]
    assert quota.throttled == 0
    calls = 2 + 2 * len(names)  # per region: list and publish the layer, then code and configuration of each
    for region in regions:
        # The limiter's classification and the proxy's own (by the REST paths) agree, call for call.
        seen = [lambda_quota(r) for r in aws.proxy.requests if r.region == region]
        for kind in (CONTROL_PLANE, GET_FUNCTION):
            assert session.limiter(region, kind).sent == seen.count(kind)  # type: ignore[attr-defined]
        assert seen.count(CONTROL_PLANE) == calls
        assert seen.count(GET_FUNCTION) == 3 * len(names)  # the plan's read, and a wait after each update
        # Within any second, no more than the limiter's burst (three quarters of a second's) and a second's worth.
        assert quota.peak(region, CONTROL_PLANE) <= 1.75 * 15 + 1
    # The regions' quotas are their own and are spent side by side: the time is one region's, not two.
    floor = (calls - 0.75 * 15) / 15
    assert floor - 0.1 <= took < 1.5 * floor


def test_a_deploy_throttled_below_its_rate_slows_down_and_no_function_fails(aws: FakeAws, tmp_path: Path) -> None:
    # Others spend most of the account's quota: 10/s are left, while we believe we may send 30/s. No Retry-After
    # either, and only FAST's five throttled attempts per call: sending on at 30/s, calls would run out of them.
    aws.proxy.quota = quota = Quota(control_plane=10, say_retry_after=False)
    names = [f"fn{i:02d}" for i in range(20)]

    result, _, session = _deploy(aws, tmp_path, names, (REGION,), Rates(control_plane=30))

    assert result.ok, result.all_errors()  # type: ignore[attr-defined]
    assert {f.status for f in result.functions} == {"updated"}  # type: ignore[attr-defined]
    assert quota.throttled > 0
    paced = session.limiter(REGION, CONTROL_PLANE)  # type: ignore[attr-defined]
    assert paced.throttled_count == quota.throttled
    assert quota.throttled <= 15, quota.throttled  # a few to learn from, then the pace that gets through


def test_retry_after_holds_back_the_regions_control_plane_calls(aws: FakeAws, tmp_path: Path) -> None:
    names = [f"fn{i}" for i in range(6)]
    for name in names:
        aws.create_function(name)
    fault = aws.proxy.respond("PUT", r"/code$", status=429, code="TooManyRequestsException", message="Rate exceeded")
    fault.headers["Retry-After"] = "1"
    aws.proxy.latency = 0.05

    result = deploy(aws.url, desired(artifacts(tmp_path, names)))

    assert result.ok, result.all_errors()
    [throttled] = [r for r in aws.proxy.requests if r.status == 429]
    paused = (throttled.finished + 0.05, throttled.finished + 0.95)
    control_plane = [r for r in aws.proxy.requests if lambda_quota(r) == CONTROL_PLANE]
    assert [r for r in control_plane if paused[0] < r.started < paused[1]] == []
    # The throttled update went through after the pause.
    again = [r for r in aws.proxy.matching("PUT", throttled.path) if r.started > throttled.started]
    assert [r.status for r in again] == [200] and again[0].started >= throttled.finished + 0.95


def test_the_rate_limit_input(aws: FakeAws, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert config.load({"source": str(tmp_path), "rate_limit": "4.5"}, env={}).rate_limit == 4.5
    aws.create_function("hello", runtime="go1.x", handler="hello")
    aws.create_function("orders-api", runtime="go1.x", handler="bootstrap")

    code, _, text = cli_deploy(capsys, aws, tmp_path, "--rate-limit", "2")

    assert code == 0, text
    sent = [r.started for r in aws.proxy.requests if lambda_quota(r) == CONTROL_PLANE]
    assert len(sent) == 6  # the layer's list and publish, each function's code and configuration
    # At 2/s, with a burst of 1.5 (the second goes a quarter second early), then half a second apart. Each may
    # leave here a little late on a busy machine: the span only says that the rate was kept.
    assert sent[-1] - sent[0] >= 5 * 0.5 - 0.25 - 0.1
