"""The only module that talks to AWS (boto3): sessions, clients and `Aws.call`, through which every request goes.
lambda_api.py asks its questions (`LambdaView`) and makes its changes (`LambdaWriter`) through it.

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

import math
import random
import threading
import time
import xml.etree.ElementTree
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import botocore.response
from botocore.retries.adaptive import RateClocker
from botocore.retries.throttling import CubicCalculator

from go_arm_lambda import progress
from go_arm_lambda.config import say
from go_arm_lambda.errors import AwsError

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
# The fix of every AwsChanged: a RevisionId precondition (or a create) found someone else's change.
CHANGED_FIX = "run again: nothing was overwritten, and the new run plans from what is there now"


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
        self._clients: dict[tuple[str, str, float | None], Any] = {}
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
    if isinstance(value, botocore.response.StreamingBody):  # Invoke's Payload
        # Read within the call: a body cut off or stalled is then one AwsError (AwsTimeout) like any other.
        return value.read()
    return value


def make_session(endpoint_url: str | None = None, *, timing: Timing | None = None,
                 rates: Rates | None = None) -> Aws:
    return Aws(endpoint_url, timing=timing, rates=rates)


class _Retryable(Exception):
    def __init__(self, final: AwsError, *, throttled: bool = False, retry_after: float | None = None,
                 sent: bool = False) -> None:
        super().__init__(str(final))
        self.final = final
        self.sent = sent  # the request may have reached AWS (and run there): not to be sent again if not idempotent
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
        # An answer came back, so the request arrived: an Invoke has run and is not sent again (`sent`).
        raise _Retryable(AwsError(f"{operation} for {what} in {region}: AWS's answer could not be read ({first})",
                                  "run the deploy again; check any proxy between here and AWS"), sent=True) from None
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
                          CHANGED_FIX)
    summary = f"{operation} for {what} in {region} failed: {code}: {message}"
    if code in _CONFLICT_CODES and operation not in _CONFLICT_MEANS_BUSY:
        return AwsConflict(summary, _AGAIN_FIX)
    failed = AwsError(summary, _AGAIN_FIX)
    if code in _RETRY_CODES or code in _CONFLICT_CODES or status == 429 or status >= 500:
        throttled = status == 429 or code in _THROTTLE_CODES
        # A 5xx may come after the function ran: an Invoke is then not sent again (`sent`); a throttle was refused.
        return _Retryable(failed, throttled=throttled, retry_after=_retry_after(exc.response) if throttled else None,
                          sent=status >= 500)
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
