"""Lambda's API request quotas, enforced by the test AWS's proxy (`FaultProxy.quota`): moto has none.

Per account and region (the region the request was signed for), fixed by AWS: 15 requests/s shared by every
control-plane API except Invoke, GetFunction and GetPolicy, and 100/s for GetFunction. Beyond them Lambda answers
429 TooManyRequestsException with a Retry-After header. Each quota here is a token bucket holding `burst` seconds
of its rate: AWS does not document its buckets, and one second's worth is the assumption. `scale` multiplies
both rates, so a benchmark can be short and keep the ratio between them.

Requests are told apart by Lambda's REST paths, on their own and not with aws.quota_of: a double that shared the
code's table could not catch a mistake in it.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass

from awsfakes import Recorded, aws_error

CONTROL_PLANE = "control plane"
GET_FUNCTION = "GetFunction"
_FUNCTION = r"/20\d\d-\d\d-\d\d/functions/[^/]+"
# Not rate-limited by request quotas: Invoke (bounded by concurrency), its old async form, and GetPolicy.
_UNLIMITED = (("POST", re.compile(_FUNCTION + r"/invocations")),
              ("POST", re.compile(r"/2014-11-13/functions/[^/]+/invoke-async/?")),
              ("GET", re.compile(_FUNCTION + r"/policy")))
_GET_FUNCTION = re.compile(_FUNCTION)  # GET, with or without ?Qualifier=


def lambda_quota(rec: Recorded) -> str | None:
    """The quota a request spends; None for one no request quota limits (Invoke, GetPolicy, S3, STS, ...)."""
    if rec.service != "lambda":
        return None
    if any(rec.method == method and path.fullmatch(rec.path) for method, path in _UNLIMITED):
        return None
    if rec.method == "GET" and _GET_FUNCTION.fullmatch(rec.path):
        return GET_FUNCTION
    return CONTROL_PLANE


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0 when a token was taken; else the seconds until one would be there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the quota saw it
    region: str
    quota: str
    admitted: bool


class Quota:
    """Install with `aws.proxy.quota = Quota(...)`; `throttled` counts the 429s sent, `seen` every request judged."""

    def __init__(self, *, control_plane: float = 15.0, get_function: float = 100.0, scale: float = 1.0,
                 burst: float = 1.0, retry_after: float | None = None, say_retry_after: bool = True) -> None:
        self.rates = {CONTROL_PLANE: control_plane * scale, GET_FUNCTION: get_function * scale}
        self.burst = burst
        # The Retry-After to send; None: the wait for the next token, in whole seconds as HTTP has it (at least 1).
        self.retry_after = retry_after
        self.say_retry_after = say_retry_after  # False: no Retry-After header, as Lambda may also answer
        self.seen: list[Seen] = []
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def throttled(self) -> int:
        return sum(not s.admitted for s in self.seen)

    def __call__(self, rec: Recorded) -> tuple[int, dict[str, str], bytes] | None:
        quota = lambda_quota(rec)
        if quota is None:
            return None
        now = time.monotonic()
        with self._lock:
            key = (rec.region, quota)
            if key not in self._buckets:
                rate = self.rates[quota]
                capacity = max(1.0, rate * self.burst)
                self._buckets[key] = _Bucket(rate, capacity, capacity, now)
            wait = self._buckets[key].take(now)
            self.seen.append(Seen(now, rec.region, quota, admitted=not wait))
        if not wait:
            return None
        answer = aws_error(429, "TooManyRequestsException", "Rate exceeded")
        answer["body"] = json.dumps({"Reason": "CallerRateLimitExceeded", "Type": "User",
                                     "message": "Rate exceeded"}).encode()
        if self.say_retry_after:
            seconds = self.retry_after if self.retry_after is not None else max(1, math.ceil(wait))
            answer["headers"]["Retry-After"] = f"{seconds:g}"
        return answer["status"], answer["headers"], answer["body"]

    def peak(self, region: str, quota: str, window: float = 1.0) -> int:
        """The most requests of `quota` from `region` admitted within any `window` seconds."""
        times = [s.at for s in self.seen if s.admitted and (s.region, s.quota) == (region, quota)]
        most, first = 0, 0
        for last, at in enumerate(times):
            while at - times[first] >= window:
                first += 1
            most = max(most, last - first + 1)
        return most
