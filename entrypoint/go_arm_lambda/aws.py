"""The only module that talks to AWS (boto3): `LambdaView` reads, `LambdaWriter` changes.

What they read comes back as the state types of steps.py (`FunctionState`, `LayerState`, ...), the contract the
planner and the executor share, so neither of them sees a boto3 answer.

Every AWS failure leaves here as an `AwsError` with one line saying what failed and what to do, never as a
botocore traceback. Retries live here too, in one place: botocore's own retries are switched off so a call is
never retried twice over (botocore's attempts times ours), and so ResourceConflictException on a function that
is still updating, which botocore does not retry, gets the same bounded backoff as throttling, 5xx errors,
garbled answers and dropped connections.

Calls are paced here as well, to Lambda's per-region quotas (`quota_of`, `RateLimiter`): a throttled deploy
slows down instead of failing. What we take from botocore's retry mode `adaptive`, and where we differ, is
said at `RateLimiter`.

AWS's answers are read through `Answer`, so a field missing from a garbled or unexpected answer is an AwsError
naming the call, not a KeyError deep in the deploy.
"""

from __future__ import annotations

import base64
import json
import math
import random
import threading
import time
import xml.etree.ElementTree
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
from botocore.retries.adaptive import RateClocker
from botocore.retries.throttling import CubicCalculator

from go_arm_lambda import progress
from go_arm_lambda.config import say
from go_arm_lambda.errors import AwsError
from go_arm_lambda.steps import AliasState, CodeSource, FunctionState, InvokeAnswer, LayerState, S3Object

T = TypeVar("T")

# Error codes worth another attempt: we are throttled, or AWS had a transient fault. Everything else is final,
# but for a conflict on a busy function (below).
_THROTTLE_CODES = frozenset({"TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException",
                             "RequestLimitExceeded", "SlowDown"})
_RETRY_CODES = _THROTTLE_CODES | {"ServiceException", "ServiceUnavailable", "ServiceUnavailableException",
                                  "InternalFailure", "InternalError"}
# A conflict means "busy with an earlier update" only for calls on a function that is updating; elsewhere
# (CreateAlias: the alias exists, AddLayerVersionPermission: the statement exists) it never clears.
_CONFLICT_CODES = frozenset({"ResourceConflictException", "ConflictException"})
_CONFLICT_MEANS_BUSY = frozenset({"UpdateFunctionCode", "UpdateFunctionConfiguration", "PublishVersion",
                                  "UpdateAlias"})
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
_BAD_CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "ExpiredTokenException", "AuthFailure",
})
_NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "NotFound"})
_AGAIN_FIX = "fix the cause above and run the deploy again"
_CREDENTIALS_FIX = ("configure AWS credentials (aws-actions/configure-aws-credentials, AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
IAM_POLICY_FIX = "grant it to the deploying role (see the minimal IAM policy in the README)"


class AwsNotFound(AwsError):
    """A named resource does not exist. The view turns it into None; elsewhere it is a plain AwsError."""


class AwsConflict(AwsError):
    """A conflict that waiting will not clear, such as creating an alias that already exists."""


class AwsDenied(AwsError):
    """The caller may not do this (IAM, or a resource policy such as another account's layer's)."""


class AwsTimeout(AwsError):
    """No answer came within the time allowed (the read timeout)."""


class AwsChanged(AwsError):
    """412 PreconditionFailedException: the RevisionId sent is no longer the resource's, so someone changed it
    since it was read. Never retried: writing anyway would overwrite their change."""

    # An earlier attempt of the same call went unanswered: the change may be that attempt's own (its answer lost).
    retried: bool = False


@dataclass(frozen=True)
class Timing:
    """How patient we are. Tests shrink the delays; the bounds stay the same shape."""

    max_attempts: int = 6  # per call, the first attempt included
    # Throttled answers are counted apart: the limiter slows the region down after each, so they are a pace to
    # find, not a fault, and must not use up the attempts above. Still bounded, for an account throttled for good.
    max_throttled: int = 20
    max_retry_after: float = 30.0  # seconds: the most of a Retry-After we honour
    base_delay: float = 0.5  # seconds; doubled per retry, with jitter, up to max_delay
    max_delay: float = 10.0
    poll_interval: float = 1.0  # while LastUpdateStatus is InProgress (what function_updated_v2 uses)
    wait_timeout: float = 300.0

    def backoff(self, attempt: int) -> float:
        # Equal jitter: the random half keeps concurrent workers hitting the same throttle out of lockstep,
        # the fixed half makes each of our few attempts really wait for the function to finish updating.
        return random.uniform(0.5, 1.0) * min(self.max_delay, self.base_delay * 2 ** attempt)


# Lambda's request quotas, per account and region, fixed by AWS: 15/s shared by every control-plane API except
# Invoke, GetFunction and GetPolicy; GetFunction 100/s of its own. Invoke is bounded by concurrency instead.
CONTROL_PLANE = "control plane"
GET_FUNCTION = "GetFunction"
_LAMBDA_QUOTAS: dict[str, str | None] = {"GetFunction": GET_FUNCTION, "GetPolicy": None, "Invoke": None}


def quota_of(service: str, operation: str) -> str | None:
    """The Lambda quota a call spends; None for a call no request-rate quota of Lambda's paces (Invoke, S3, STS,
    CloudWatch): any Lambda operation not named in the table is control plane."""
    return _LAMBDA_QUOTAS.get(operation, CONTROL_PLANE) if service == "lambda" else None


@dataclass(frozen=True)
class Rates:
    """Requests per second per region we allow ourselves, per quota (`--rate-limit` sets the control plane's)."""

    control_plane: float = 15.0
    get_function: float = 100.0

    def of(self, quota: str) -> float:
        return self.get_function if quota == GET_FUNCTION else self.control_plane


@dataclass(frozen=True)
class _Clock:
    """botocore's RateClocker asks its clock for current_time(); ours is the limiter's (monotonic)."""

    current_time: Callable[[], float]


class RateLimiter:
    """One region's budget for one quota, shared by every thread that calls AWS there.

    It paces requests evenly at `rate`, allowing a burst of three quarters of a second's worth: AWS's own bucket
    is believed to hold a second's worth, and the quarter second left absorbs network jitter, so a deploy that
    keeps to the rate is not throttled for two requests arriving closer together than they were sent. A
    Retry-After pauses every call of the budget, since the quota is the account's and not one call's.

    On a throttle it lowers its rate and climbs back, as botocore's retry mode `adaptive` does, with that mode's
    own parts: the CUBIC curve (`CubicCalculator`) and the measured send rate (`RateClocker`). We do not simply
    turn that mode on, because there it
    - is one limiter per botocore client for all of its operations: GetFunction (100/s) would be slowed with the
      control plane (15/s), and a second client for the same region (plan and writer) would not share it;
    - sends unpaced until the first throttle, while Lambda's quotas are known: we start at them;
    - cuts again for every throttle of a burst, also for requests sent before the last cut (0.7 to the n-th):
      here only a throttle of a request sent at the current rate lowers it;
    - ignores Lambda's Retry-After (botocore reads only x-amz-retry-after), and its retries would not retry a
      conflict on a busy function and would multiply ours, so `Aws.call` keeps the retrying and the bounds.
    """

    MIN_RATE = 0.5  # requests per second: botocore's floor too
    BURST_S = 0.75

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ceiling = rate
        self.rate = rate
        self.sent = 0  # requests let go
        self.throttled_count = 0
        self._clock, self._sleep = clock, sleep
        self._due = 0.0  # GCRA's theoretical arrival time: the bucket is full again once the clock passes it
        self._paused_until = 0.0
        self._last_cut = -math.inf
        self._cubic: CubicCalculator | None = None  # until the first throttle the configured rate stands
        self._clocker = RateClocker(_Clock(clock))
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Blocks until a request may go; returns when it went (on the limiter's clock), for `throttled()`."""
        while True:
            with self._lock:
                now = self._clock()
                interval = 1 / self.rate
                tolerance = max(0.0, self.rate * self.BURST_S - 1) * interval
                slot = max(now, self._due - tolerance, self._paused_until)
                self._due = max(self._due, slot) + interval
            if slot > now:
                self._sleep(slot - now)
            with self._lock:
                if slot >= self._paused_until:  # else a Retry-After came in while this waited: queue again
                    self.sent += 1
                    return slot

    def answered(self) -> None:
        """An answer that was not a throttle: after one, the rate climbs back along the curve."""
        with self._lock:
            self._clocker.record()
            if self._cubic is not None:
                self.rate = self._bounded(self._cubic.success_received(self._clock()))

    def throttled(self, sent: float, retry_after: float | None) -> None:
        """AWS throttled a request this let go at `sent`; `retry_after`: seconds AWS asked everyone to wait."""
        with self._lock:
            measured = self._clocker.record()
            now = self._clock()
            self.throttled_count += 1
            if retry_after:
                self._paused_until = max(self._paused_until, now + retry_after)
            if sent < self._last_cut:
                return  # sent before the last cut, at a rate already lowered
            if self._cubic is None:
                self._cubic = CubicCalculator(starting_max_rate=self.rate, start_time=now)
            # The rate that met the throttle: what we really sent at (botocore's choice), unless not measured yet.
            self.rate = self._bounded(self._cubic.error_received(min(measured or self.rate, self.rate), now))
            self._last_cut = now

    def _bounded(self, rate: float) -> float:
        return min(self.ceiling, max(self.MIN_RATE, rate))


class Aws:
    """boto3 session, endpoint and clients: one client per (service, region), shared by the threads, and one
    `RateLimiter` per (region, quota), shared by every call there: use one Aws for a whole run."""

    def __init__(self, endpoint_url: str | None = None, *, timing: Timing | None = None,
                 rates: Rates | None = None, max_pool_connections: int = 32) -> None:
        # The standard chain: environment, web identity (configure-aws-credentials), profiles, instance roles.
        # AWS_ENDPOINT_URL is read by botocore itself when endpoint_url is None.
        self.session = boto3.Session()
        self.endpoint_url = endpoint_url
        self.timing = timing or Timing()
        self._config = botocore.config.Config(
            retries={"total_max_attempts": 1}, max_pool_connections=max_pool_connections,
            connect_timeout=10, read_timeout=120)
        self.rates = rates or Rates()
        self._clients: dict[tuple[str, str], Any] = {}
        self._limiters: dict[tuple[str, str], RateLimiter] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str, read_timeout: float | None = None) -> Any:
        with self._lock:
            key = (service, region, read_timeout)
            if key not in self._clients:
                config = self._config if read_timeout is None else self._config.merge(
                    botocore.config.Config(read_timeout=read_timeout))
                self._clients[key] = self.session.client(
                    service, region_name=region, endpoint_url=self.endpoint_url, config=config)
            return self._clients[key]

    def limiter(self, region: str, quota: str | None) -> RateLimiter | None:
        """The region's limiter for `quota` (see quota_of); None: not paced."""
        if quota is None:
            return None
        with self._lock:
            key = (region, quota)
            if key not in self._limiters:
                self._limiters[key] = RateLimiter(self.rates.of(quota))
            return self._limiters[key]

    def call(self, service: str, region: str, operation: str, what: str, *, timeout: float | None = None,
             **params: Any) -> Answer:
        """One API call, paced by its region's limiter, with bounded retries; a failure becomes an AwsError naming
        `what` ('function x'). With `timeout` (a call with effects of its own: Invoke) the answer must come within
        that many seconds (AwsTimeout), and a request that may have reached AWS is never sent again."""
        client = self.client(service, region, timeout)
        limiter = self.limiter(region, quota_of(service, operation))
        faults = throttled = 0  # failed attempts so far, apart: see Timing.max_throttled
        while True:
            asked = time.monotonic()
            sent = limiter.acquire() if limiter else asked
            if sent - asked >= 0.001:
                progress.tally(waited=sent - asked)
            try:
                with _translated(operation, what, region, self.endpoint_url):
                    answer = Answer(getattr(client, _snake(operation))(**params),
                                    f"{operation} for {what} in {region}")
            except _Retryable as exc:
                progress.tally(throttled=exc.throttled)
                if exc.throttled:
                    throttled += 1
                    pause = None if exc.retry_after is None else min(exc.retry_after, self.timing.max_retry_after)
                    if limiter:
                        limiter.throttled(sent, pause)
                    if throttled >= self.timing.max_throttled:
                        raise exc.final from None
                    # After a Retry-After the limiter holds back every call of the region, this one's too.
                    delay = self.timing.backoff(throttled - 1) if pause is None else 0.0 if limiter else pause
                else:
                    faults += 1
                    if faults >= self.timing.max_attempts or (timeout is not None and exc.sent):
                        raise exc.final from None
                    delay = self.timing.backoff(faults - 1)
                progress.tally(retries=1, waited=delay)
                time.sleep(delay)
                continue
            except AwsError as exc:
                if limiter:
                    limiter.answered()  # a refusal, but not a throttle: the pace is fine
                if isinstance(exc, AwsChanged):
                    exc.retried = faults > 0
                raise
            if limiter:
                limiter.answered()
            return answer

    def account_id(self, region: str) -> str:
        return str(self.call("sts", region, "GetCallerIdentity", "the caller identity")["Account"])


class Answer(dict[str, Any]):
    """A response (or a part of one): a missing field is an AwsError naming the call, not a KeyError."""

    def __init__(self, data: dict[str, Any], call: str) -> None:
        super().__init__((k, _answer(v, call)) for k, v in data.items())
        self.call = call  # "GetFunction for function orders in eu-west-1"

    def __missing__(self, key: str) -> Any:
        raise AwsError(f"{self.call}: AWS's answer has no {key}",
                       f"run the deploy again; if it persists, check that {say('endpoint_url')} points at AWS Lambda")


def _answer(value: Any, call: str) -> Any:
    if isinstance(value, dict):
        return Answer(value, call)
    if isinstance(value, list):
        return [_answer(v, call) for v in value]
    return value


def make_session(endpoint_url: str | None = None, *, timing: Timing | None = None,
                 rates: Rates | None = None) -> Aws:
    return Aws(endpoint_url, timing=timing, rates=rates)


class _Retryable(Exception):
    def __init__(self, final: AwsError, *, throttled: bool = False, retry_after: float | None = None,
                 sent: bool = False) -> None:
        super().__init__(str(final))
        self.final = final
        self.sent = sent  # the request may have reached AWS, and no answer came back
        self.throttled = throttled  # AWS said "slow down", as opposed to a fault or a busy function
        self.retry_after = retry_after  # seconds AWS asked us to wait, when it said


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


@contextmanager
def _translated(operation: str, what: str, region: str, endpoint_url: str | None) -> Iterator[None]:
    try:
        yield
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError,
            botocore.exceptions.CredentialRetrievalError):
        raise AwsError("no usable AWS credentials were found", _CREDENTIALS_FIX) from None
    except botocore.exceptions.ProfileNotFound as exc:
        raise AwsError(f"AWS profile {exc.kwargs.get('profile')!r} does not exist",
                       "fix AWS_PROFILE or add the profile to ~/.aws/config") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        where = endpoint_url or exc.kwargs.get("endpoint_url", "")
        raise AwsError(f"cannot reach AWS at {where} for region {region}",
                       f"check the region name (e.g. eu-west-1), {say('endpoint_url')} and the network") from None
    except (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectTimeoutError) as exc:
        # A dropped connection or a timeout: the request may or may not have arrived. Every call we make is
        # safe to repeat; the two creates that then conflict (alias, layer permission) are handled where made.
        # Invoke is not (the function would run twice): Aws.call leaves it to `sent`.
        kind = AwsTimeout if isinstance(exc, botocore.exceptions.ReadTimeoutError) else AwsError
        raise _Retryable(kind(f"{operation} for {what} in {region}: the connection failed ({exc})",
                              "check the network and run the deploy again"),
                         sent=not isinstance(exc, botocore.exceptions.ConnectTimeoutError)) from None
    except (botocore.parsers.ResponseParserError, xml.etree.ElementTree.ParseError) as exc:
        # A garbled answer (a proxy's HTML error page, a truncated body) is usually gone on the next try.
        # botocore's own handler for GetBucketLocation lets ElementTree's error out unwrapped.
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _Retryable(AwsError(f"{operation} for {what} in {region}: AWS's answer could not be read ({first})",
                                  "run the deploy again; check any proxy between here and AWS")) from None
    except botocore.exceptions.ClientError as exc:
        raise _client_error(exc, operation, what, region) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"{operation} for {what} in {region} failed: {exc}", _AGAIN_FIX) from None


def _client_error(exc: botocore.exceptions.ClientError, operation: str, what: str,
                  region: str) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    # One line, whatever the service sent (some endpoints answer with an XML document).
    message = " ".join(str(error.get("Message", "")).split()) or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _DENIED_CODES or (status == 403 and code not in _BAD_CREDENTIAL_CODES):
        return AwsDenied(f"access denied: {iam_action(operation)} on {what} in {region} ({message})",
                         IAM_POLICY_FIX)
    if code in _BAD_CREDENTIAL_CODES:
        return AwsError(f"AWS rejected the credentials ({code}: {message})", _CREDENTIALS_FIX)
    if code in _NOT_FOUND_CODES:
        return AwsNotFound(f"{what} was not found in {region} ({message})",
                        f"check the name and {say('regions')}, or create it first")
    if code == "PreconditionFailedException" or status == 412:
        return AwsChanged(f"{what} in {region} changed since the plan was read (AWS refused {operation}: {code})",
                          "run again: nothing was overwritten, and the new run plans from what is there now")
    summary = f"{operation} for {what} in {region} failed: {code}: {message}"
    if code in _CONFLICT_CODES and operation not in _CONFLICT_MEANS_BUSY:
        return AwsConflict(summary, _AGAIN_FIX)
    failed = AwsError(summary, _AGAIN_FIX)
    if code in _RETRY_CODES or code in _CONFLICT_CODES or status == 429 or status >= 500:
        throttled = status == 429 or code in _THROTTLE_CODES
        return _Retryable(failed, throttled=throttled, retry_after=_retry_after(exc.response) if throttled else None)
    return failed


def _retry_after(response: dict[str, Any]) -> float | None:
    """The seconds a throttled answer asks us to wait: Lambda's Retry-After header, which botocore also parses
    into the error's retryAfterSeconds; None when it says nothing usable."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    for raw in (response.get("retryAfterSeconds"), headers.get("retry-after")):
        try:
            seconds = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def operation_service(operation: str) -> str:
    """The IAM service prefix of an operation we call (for 'access denied: lambda:UpdateFunctionCode')."""
    return {"PutObject": "s3", "GetBucketLocation": "s3", "GetCallerIdentity": "sts",
            "DescribeAlarms": "cloudwatch"}.get(operation, "lambda")


# Operations whose IAM action has another name than the operation.
_IAM_NAMES = {"Invoke": "InvokeFunction"}


def iam_action(operation: str) -> str:
    """The IAM action an operation needs, as a policy names it: 'lambda:UpdateFunctionCode'."""
    return f"{operation_service(operation)}:{_IAM_NAMES.get(operation, operation)}"


def _not_found(fn: Callable[[], T]) -> T | None:
    """None for a ResourceNotFoundException: for the view, 'does not exist' is an answer, not a failure."""
    try:
        return fn()
    except AwsNotFound:
        return None


def _function_state(config: Answer) -> FunctionState:
    return FunctionState(
        name=config["FunctionName"], arn=_unqualified(config["FunctionArn"]),
        package_type=config.get("PackageType", "Zip"), runtime=config.get("Runtime"),
        architectures=tuple(config.get("Architectures") or ("x86_64",)), handler=config.get("Handler"),
        layers=tuple(layer["Arn"] for layer in config.get("Layers") or ()),
        code_sha256=config.get("CodeSha256", ""), last_update_status=config.get("LastUpdateStatus"),
        last_update_reason=config.get("LastUpdateStatusReason"), version=config.get("Version", "$LATEST"),
        revision_id=config.get("RevisionId"))


def _layer_state(answer: Answer) -> LayerState:
    """A GetLayerVersion or PublishLayerVersion answer."""
    return LayerState(arn=answer["LayerVersionArn"], version=int(answer["Version"]),
                      code_sha256=answer["Content"]["CodeSha256"],
                      compatible_runtimes=tuple(answer.get("CompatibleRuntimes") or ()),
                      compatible_architectures=tuple(answer.get("CompatibleArchitectures") or ()),
                      description=answer.get("Description") or "")


def _alias_state(answer: Answer) -> AliasState:
    weights = (answer.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return AliasState(answer["Name"], answer["AliasArn"], answer["FunctionVersion"], answer.get("RevisionId"),
                      answer.get("Description") or "", {str(k): float(v) for k, v in weights.items()})


def _revision(revision_id: str | None) -> dict[str, str]:
    """The precondition of a write: only if the resource still has this RevisionId."""
    return {"RevisionId": revision_id} if revision_id else {}


def _unqualified(arn: str) -> str:
    parts = arn.split(":")
    return ":".join(parts[:7])


class LambdaView:
    """Read-only questions about one region. The planner gets nothing else, so planning cannot write."""

    def __init__(self, aws: Aws, region: str) -> None:
        self.aws = aws
        self.region = region

    def _call(self, operation: str, what: str, **params: Any) -> Answer:
        return self.aws.call("lambda", self.region, operation, what, **params)

    def function(self, name: str, qualifier: str | None = None) -> FunctionState | None:
        params = {"FunctionName": name} | ({"Qualifier": qualifier} if qualifier else {})
        found = _not_found(lambda: self._call("GetFunction", f"function {name}", **params))
        return _function_state(found["Configuration"]) if found else None

    def newest_published_version(self, name: str) -> FunctionState | None:
        """The function's newest published version, None when it has none. Lambda lists versions oldest
        first, at most 50 a page, so the newest is on the last page."""
        newest: FunctionState | None = None
        marker: dict[str, str] = {}
        while True:
            page = self._call("ListVersionsByFunction", f"function {name}", FunctionName=name, **marker)
            for config in page.get("Versions") or ():
                if config.get("Version") != "$LATEST" and (
                        newest is None or int(config["Version"]) > int(newest.version)):
                    newest = _function_state(config)
            if not page.get("NextMarker"):
                return newest
            marker = {"Marker": page["NextMarker"]}

    def bucket_region(self, bucket: str) -> str | None:
        """The region an S3 bucket is in, None when it does not exist."""
        found = _not_found(lambda: self.aws.call("s3", self.region, "GetBucketLocation", f"S3 bucket {bucket}",
                                                 Bucket=bucket))
        if found is None:
            return None
        # us-east-1 answers with no location at all, and buckets from before 2012 in Ireland with "EU".
        location = found.get("LocationConstraint") or "us-east-1"
        return "eu-west-1" if location == "EU" else str(location)

    def newest_layer_version(self, layer_name: str) -> LayerState | None:
        # Lambda lists the newest version first; one page is enough to find it.
        listed = _not_found(lambda: self._call("ListLayerVersions", f"layer {layer_name}",
                                               LayerName=layer_name))
        versions = (listed or {}).get("LayerVersions") or []
        if not versions:
            return None
        newest = max(versions, key=lambda v: int(v["Version"]))
        return _layer_state(self._call("GetLayerVersion", f"layer {layer_name}", LayerName=layer_name,
                                       VersionNumber=int(newest["Version"])))

    def layer_version(self, arn: str) -> LayerState | None:
        """A layer version by its ARN (as a function lists it); None when it is gone, or when its owner
        (another account) does not let us read it: a layer we cannot read is not one we published."""
        # By the layer's ARN and the version number, not GetLayerVersionByArn: the ARN reaches another
        # account's layer as well, and moto answers GetLayerVersionByArn with an error.
        layer, _, version = arn.rpartition(":")
        if not (version.isascii() and version.isdigit()):  # int() would also read other scripts' digits
            return None
        try:
            return _layer_state(self._call("GetLayerVersion", f"layer version {arn}", LayerName=layer,
                                           VersionNumber=int(version)))
        except (AwsNotFound, AwsDenied):
            return None

    def layer_statement_ids(self, layer_name: str, version: int) -> frozenset[str]:
        """Statement ids in a layer version's policy (none when it has no policy yet)."""
        what = f"policy of layer {layer_name}:{version}"
        found = _not_found(lambda: self._call("GetLayerVersionPolicy", what, LayerName=layer_name,
                                              VersionNumber=version))
        if not found:
            return frozenset()
        statements = json.loads(found.get("Policy") or "{}").get("Statement") or []
        return frozenset(str(s.get("Sid")) for s in statements)

    def alias(self, function: str, name: str) -> AliasState | None:
        found = _not_found(lambda: self._call("GetAlias", f"alias {name} of {function}",
                                              FunctionName=function, Name=name))
        return _alias_state(found) if found else None

    def tags(self, arn: str) -> dict[str, str]:
        """A function's tags, by its unqualified ARN."""
        return {str(k): str(v) for k, v in
                (self._call("ListTags", f"tags of {arn}", Resource=arn).get("Tags") or {}).items()}

    def account_id(self) -> str:
        return self.aws.account_id(self.region)

    def alarm_states(self, names: Sequence[str]) -> dict[str, str]:
        """The state (OK | ALARM | INSUFFICIENT_DATA) of each CloudWatch alarm named, metric or composite; a name
        no alarm in this region has is left out."""
        states: dict[str, str] = {}
        for i in range(0, len(names), 100):  # DescribeAlarms takes at most 100 names
            chunk = list(names[i:i + 100])
            out = self.aws.call("cloudwatch", self.region, "DescribeAlarms", f"alarms {', '.join(chunk)}",
                                AlarmNames=chunk, AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            for alarm in [*(out.get("MetricAlarms") or ()), *(out.get("CompositeAlarms") or ())]:
                states[str(alarm["AlarmName"])] = str(alarm["StateValue"])
        return states


class LambdaWriter:
    """The mutating calls for one region. Counts them, so a report can say how many changes a deploy made."""

    def __init__(self, aws: Aws, region: str) -> None:
        self.aws = aws
        self.region = region
        self._count = 0
        self._lock = threading.Lock()

    @property
    def mutating_calls(self) -> int:
        return self._count

    def _write(self, operation: str, what: str, **params: Any) -> Answer:
        with self._lock:
            self._count += 1
        service = operation_service(operation)
        return self.aws.call(service, self.region, operation, what, **params)

    def put_object(self, target: S3Object, zip_path: Path) -> None:
        self._write("PutObject", str(target), Bucket=target.bucket, Key=target.key,
                    Body=zip_path.read_bytes())

    def publish_layer_version(self, name: str, source: CodeSource, *, description: str,
                              runtimes: tuple[str, ...]) -> LayerState:
        out = self._write("PublishLayerVersion", f"layer {name}", LayerName=name, Content=_code(source),
                          Description=description, CompatibleRuntimes=list(runtimes),
                          CompatibleArchitectures=["arm64"])
        return _layer_state(out)

    def add_layer_version_permission(self, name: str, version: int, *, statement_id: str, principal: str,
                                     organization_id: str | None = None) -> None:
        params = {"OrganizationId": organization_id} if organization_id else {}
        # A conflict means the statement exists: our own attempt got through before its answer was lost, or
        # another deploy added it since the plan. The id is made from the principal, so it is this very grant.
        # No RevisionId on the layer's policy calls: each touches only its own statement id, so another deploy's
        # grants made meanwhile are never lost, while a RevisionId would fail every function of the region on
        # them (and on our own retries after a lost answer).
        with suppress(AwsConflict):
            self._write("AddLayerVersionPermission", f"layer {name}:{version}", LayerName=name,
                        VersionNumber=version, StatementId=statement_id, Action="lambda:GetLayerVersion",
                        Principal=principal, **params)

    def remove_layer_version_permission(self, name: str, version: int, *, statement_id: str) -> None:
        # Not found means the statement is gone already: our own attempt got through before its answer was
        # lost, or another deploy removed it since the plan. Either way the grant is revoked, as wanted.
        with suppress(AwsNotFound):
            self._write("RemoveLayerVersionPermission", f"layer {name}:{version}", LayerName=name,
                        VersionNumber=version, StatementId=statement_id)

    def update_function_code(self, function: str, source: CodeSource, *, code_sha256: str,
                             revision_id: str | None = None) -> FunctionState:
        """Only while the function still has `revision_id` (AwsChanged otherwise); `code_sha256` is the zip's."""
        try:
            out = self._write("UpdateFunctionCode", f"function {function}", FunctionName=function,
                              Architectures=["arm64"], **_code(source), **_revision(revision_id))
        except AwsChanged as exc:  # the code is sent with its architecture, so the code tells whose update it was
            return self._ours_after_all(exc, function, lambda state: state.code_sha256 == code_sha256)
        return _function_state(out)

    def update_function_configuration(self, function: str, changes: dict[str, Any], *,
                                      revision_id: str | None = None) -> FunctionState:
        """Sends only `changes`: a key left out is a setting (environment, memory, role, ...) left alone."""
        try:
            out = self._write("UpdateFunctionConfiguration", f"function {function}", FunctionName=function,
                              **changes, **_revision(revision_id))
        except AwsChanged as exc:
            return self._ours_after_all(exc, function, lambda state: all(
                {"Runtime": state.runtime, "Handler": state.handler, "Layers": list(state.layers)}[key] == value
                for key, value in changes.items()))
        return _function_state(out)

    def _ours_after_all(self, exc: AwsChanged, function: str, as_asked: Callable[[FunctionState], bool],
                        ) -> FunctionState:
        """A refused retry of a write whose first attempt went unanswered: that attempt may have got through and
        changed the RevisionId itself. If the function is now exactly as the write asked, it did; else someone
        else changed it, and `exc` stands."""
        if exc.retried:
            state = self._current(function)
            if as_asked(state):
                return state
        raise exc

    def wait_updated(self, function: str) -> FunctionState:
        """Polls until LastUpdateStatus leaves InProgress (as function_updated_v2 does); Failed: AwsError."""
        deadline = time.monotonic() + self.aws.timing.wait_timeout
        while True:
            state = self._current(function)
            if state.last_update_status == "Failed":
                raise AwsError(f"the update of function {function} in {self.region} failed: "
                               f"{state.last_update_reason or 'no reason given'}",
                               "fix the cause AWS gives and run the deploy again")
            if state.last_update_status != "InProgress":
                return state
            if time.monotonic() > deadline:
                raise AwsError(f"function {function} in {self.region} was still updating after "
                               f"{self.aws.timing.wait_timeout:.0f} s",
                               "look at it in the console, then retry")
            progress.tally(polls=1, waited=self.aws.timing.poll_interval)
            time.sleep(self.aws.timing.poll_interval)

    def publish_version(self, function: str, *, description: str, code_sha256: str,
                        revision_id: str | None = None) -> str:
        # CodeSha256 and RevisionId make AWS refuse to publish if someone else changed the function since our
        # update. A retry after a lost answer needs no care: $LATEST unchanged since a version publishes none.
        out = self._write("PublishVersion", f"function {function}", FunctionName=function,
                          Description=description, CodeSha256=code_sha256, **_revision(revision_id))
        return str(out["Version"])

    def set_alias(self, function: str, alias: str, version: str, *, create: bool,
                  revision_id: str | None = None, weights: dict[str, float] | None = None,
                  description: str | None = None) -> AliasState:
        """Creates the alias, or moves it while it still has `revision_id` (AwsChanged otherwise). `weights`
        ({version: share}) routes part of its traffic elsewhere; without them any routing is removed.
        `description` None leaves the alias's as it is."""
        what = f"alias {alias} of {function}"
        params: dict[str, Any] = {"FunctionName": function, "Name": alias, "FunctionVersion": version,
                                  "RoutingConfig": {"AdditionalVersionWeights": dict(weights or {})}}
        if description is not None:
            params["Description"] = description

        def as_asked() -> AliasState | None:
            # Our own earlier attempt got through and its answer was lost, or someone else did the very same.
            found = _alias_state(self._read("GetAlias", what, FunctionName=function, Name=alias))
            return found if (found.function_version, found.weights) == (version, dict(weights or {})) else None
        if create:
            try:
                return _alias_state(self._write("CreateAlias", what, **params))
            except AwsConflict:  # it exists: created by our lost attempt, or by someone since the plan
                if (state := as_asked()) is not None:
                    return state
                raise AwsChanged(f"{what} in {self.region} was created since the plan was read",
                                 "run again: nothing was overwritten, and the new run plans from what is there now"
                                 ) from None
        try:
            return _alias_state(self._write("UpdateAlias", what, **params, **_revision(revision_id)))
        except AwsChanged as exc:
            if exc.retried and (state := as_asked()) is not None:
                return state
            raise

    def _read(self, operation: str, what: str, **params: Any) -> Answer:
        """A read the writer needs (a wait, or telling its own lost write from someone else's): not counted."""
        return self.aws.call("lambda", self.region, operation, what, **params)

    def _current(self, function: str) -> FunctionState:
        # GetFunction, not GetFunctionConfiguration (what botocore's waiter polls): GetFunction has its own
        # 100/s quota, while GetFunctionConfiguration would spend the control plane's 15/s the updates need.
        return _function_state(self._read("GetFunction", f"function {function}", FunctionName=function)[
            "Configuration"])

    def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        self._write("TagResource", f"function {arn.rsplit(':', 1)[-1]}", Resource=arn, Tags=tags)

    def invoke(self, function: str, qualifier: str, payload: bytes, *, timeout: float) -> InvokeAnswer:
        """A synchronous invoke with the log tail (LogType Tail). It changes nothing go-arm-lambda counts, but it
        runs the function: it is sent once, and AwsTimeout is raised when no answer came within `timeout` s."""
        out = self.aws.call("lambda", self.region, "Invoke", f"function {function}:{qualifier}", timeout=timeout,
                            FunctionName=function, Qualifier=qualifier, LogType="Tail", Payload=payload)
        log = base64.b64decode(out.get("LogResult") or "").decode("utf-8", "replace")
        return InvokeAnswer(int(out["StatusCode"]), out.get("FunctionError"), out["Payload"].read(), log,
                            out.get("ExecutedVersion"))


def _code(source: CodeSource) -> dict[str, Any]:
    if isinstance(source, S3Object):
        return {"S3Bucket": source.bucket, "S3Key": source.key}
    return {"ZipFile": source.read_bytes()}


def upload_layer(bucket: str, key: str, zip_path: Path, region: str,
                 endpoint_url: str | None = None) -> S3Object:
    """`go-arm-lambda layer upload`: the layer zip where layer/template.yaml's ContentS3Bucket/Key point."""
    target = S3Object(bucket, key)
    LambdaWriter(make_session(endpoint_url), region).put_object(target, zip_path)
    return target
