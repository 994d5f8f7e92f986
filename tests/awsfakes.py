"""AWS for tests: a real moto server on 127.0.0.1 and a recording, fault-injecting HTTP proxy in front of it.

boto3 talks real HTTP to the proxy, the proxy to moto. moto never reports InProgress, never throttles and
ignores Architectures on update_function_code, so the proxy supplies what moto lacks: canned error responses,
connection resets (before moto sees the request, or after it acted: the answer lost), rewritten responses and
latency, and a record of every request sent (with its region and timing), so tests assert on what went over
the wire.

Fixtures: `moto_server` (session) and `aws` (per test: moto reset, credentials in the environment, a fresh
proxy). tests/ is on sys.path under pytest: conftest registers them (`pytest_plugins`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import json
import logging
import os
import re
import socket
import struct
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from go_arm_lambda.aws import Timing, make_session
from go_arm_lambda.config import Config, FunctionSpec
from go_arm_lambda.execute import DeployResult, execute
from go_arm_lambda.lambda_api import LambdaView, LambdaWriter
from go_arm_lambda.plan import desired_state, make_plan
from go_arm_lambda.steps import DeployConfig, DeployRun, DesiredState, Plan

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
               "trailer", "upgrade"}


# --- the proxy ----------------------------------------------------------------------------------------------

@dataclass
class Recorded:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # None: the connection was reset
    fault: str | None = None
    started: float = 0.0  # time.monotonic() when the request arrived and when its answer (or reset) went out
    finished: float = 0.0

    @property
    def region(self) -> str:
        """The region the request was signed for (SigV4's credential scope: key/date/region/service/...)."""
        return self._scope()[0]

    @property
    def service(self) -> str:
        """The service the request was signed for ("lambda", "s3", "sts"), from the same credential scope."""
        return self._scope()[1]

    def _scope(self) -> tuple[str, str]:
        m = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", self.headers.get("Authorization", ""))
        return (m.group(1), m.group(2)) if m else ("", "")

    @property
    def operation(self) -> str:
        """The operation a JSON-protocol request (X-Amz-Target: CloudWatch) or a query-protocol one (Action=:
        STS, IAM) names; "" for REST APIs such as Lambda's, where the method and path say it."""
        if target := self.headers.get("X-Amz-Target", ""):
            return target.rpartition(".")[2]
        m = re.search(rb"(?:^|&)Action=(\w+)", self.body) if self.path == "/" else None
        return m.group(1).decode() if m else ""

    @property
    def mutating(self) -> bool:
        """A write. STS's GetCallerIdentity is a POST that only reads, and so is CloudWatch's DescribeAlarms."""
        if self.method in ("GET", "HEAD"):
            return False
        return re.match(r"(Get|List|Describe)", self.operation) is None

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Fault:
    """What to do, `times` times, with the requests that match `method` and the `path` regex."""

    method: str
    path: str
    kind: str  # respond | reset | lose (forward, then reset: done, but the answer never arrives) | rewrite
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    rewrite: Callable[[bytes], bytes] | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.search(self.path, path) is not None


def aws_error(status: int, code: str, message: str) -> dict[str, Any]:
    """A Lambda (restJson) error the way AWS sends it: botocore reads the code from x-amzn-ErrorType."""
    return {"status": status, "headers": {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/",
                                          "Content-Type": "application/json"},
            "body": json.dumps({"Type": "User", "message": message}).encode()}


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a concurrent deploy opens more connections than that at once, and
    # the kernel drops the extra SYNs, which costs a 1 s retransmit and made timings bimodal.
    request_queue_size = 128


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        m = re.match(r"http://([^:/]+):(\d+)", upstream)
        assert m, upstream
        self.upstream = (m.group(1), int(m.group(2)))
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.latency = 0.0
        # Answers what moto cannot do for real (the aws fixture installs lambdainvoke.LambdaInvoke for Invoke):
        # an answer, or None to forward. Faults still come first.
        self.local: Callable[[Recorded], tuple[int, dict[str, str], bytes] | None] | None = None
        # Sees every other request with the way to forward it to moto, and answers it (the aws fixture installs
        # revisions.RevisionIds: RevisionId kept and enforced as Lambda does). Faults still come first.
        self.guard: Callable[[Recorded, Callable[[], tuple[int, dict[str, str], bytes]]],
                             tuple[int, dict[str, str], bytes]] | None = None
        # Lambda's request quotas, when a test installs them (quota.Quota): a 429 answer, or None to go on.
        self.quota: Callable[[Recorded], tuple[int, dict[str, str], bytes] | None] | None = None
        self._lock = threading.Lock()
        self._server = _ProxyServer(("127.0.0.1", 0), self._handler_class())
        # shutdown() waits for serve_forever's next poll: at the default 0.5 s, most of a short test's time.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- configuring faults
    def respond(self, method: str, path: str, *, status: int, code: str, message: str,
                times: int = 1) -> Fault:
        fault = Fault(method, path, "respond", times, **aws_error(status, code, message))
        self.faults.append(fault)
        return fault

    def reset(self, method: str, path: str, *, times: int = 1) -> Fault:
        fault = Fault(method, path, "reset", times)
        self.faults.append(fault)
        return fault

    def lose_answer(self, method: str, path: str, *, times: int = 1) -> Fault:
        """moto does the request, then the connection drops before the answer: the caller cannot tell."""
        fault = Fault(method, path, "lose", times)
        self.faults.append(fault)
        return fault

    def rewrite(self, method: str, path: str, fn: Callable[[bytes], bytes], *, times: int = 1) -> Fault:
        fault = Fault(method, path, "rewrite", times, rewrite=fn)
        self.faults.append(fault)
        return fault

    # -- reading the record
    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def mutating(self) -> list[Recorded]:
        return [r for r in self.requests if r.mutating]

    def matching(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(path, r.path)]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                path, _, query = self.path.partition("?")
                rec = Recorded(self.command, path, query, dict(self.headers.items()), body,
                               started=time.monotonic())
                with proxy._lock:
                    proxy.requests.append(rec)
                try:
                    self._answer(rec, body, path)
                finally:
                    rec.finished = time.monotonic()

            def _answer(self, rec: Recorded, body: bytes, path: str) -> None:
                if proxy.latency:
                    time.sleep(proxy.latency)
                # Over Lambda's request quotas (tests/quota.py) a request is turned away before anything else.
                refused = proxy.quota(rec) if proxy.quota else None
                fault = None if refused else proxy._take_fault(self.command, path)
                rec.fault = fault.kind if fault else None
                if fault and fault.kind in ("reset", "lose"):
                    if fault.kind == "lose":
                        self._upstream(rec, body)
                    # SO_LINGER 0: close() sends RST, as a dropped connection on the internet looks.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if refused:
                    status, headers, out = refused
                elif fault and fault.kind == "respond":
                    status, headers, out = fault.status, fault.headers, fault.body
                else:
                    status, headers, out = self._upstream(rec, body)
                    if fault and fault.rewrite:
                        out = fault.rewrite(out)
                rec.status = status
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in _HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _upstream(self, rec: Recorded, body: bytes) -> tuple[int, dict[str, str], bytes]:
                answer = proxy.local(rec) if proxy.local else None
                if answer is not None:
                    return answer
                return proxy.guard(rec, lambda: self._forward(body)) if proxy.guard else self._forward(body)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    return resp.status, dict(resp.getheaders()), resp.read()
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler


# --- moto and the AWS state tests start from ----------------------------------------------------------------

def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            # A fixed date: the same files must make the same zip, or layer reuse would depend on the clock.
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass(frozen=True)
class FakeArtifact:
    """The attributes of package.Artifact, for zips a test writes itself."""

    path: Path
    sha256: str
    size: int
    unzipped_size: int

    @property
    def code_sha256(self) -> str:
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()

    @classmethod
    def write(cls, path: Path, files: dict[str, bytes], *, size: int | None = None) -> FakeArtifact:
        data = make_zip(files)
        path.write_bytes(data)
        return cls(path, hashlib.sha256(data).hexdigest(), size if size is not None else len(data),
                   sum(len(v) for v in files.values()))


class FakeAws:
    """Direct access to moto (bypassing the proxy) to set up and inspect state, and the proxy for the tool."""

    def __init__(self, moto_url: str, proxy: FaultProxy) -> None:
        self.moto_url = moto_url
        self.proxy = proxy
        self.session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        self._role: str | None = None

    @property
    def url(self) -> str:
        """Where the tool under test should point: the proxy."""
        return self.proxy.url

    def client(self, service: str, region: str = REGION) -> Any:
        return self.session.client(service, region_name=region, endpoint_url=self.moto_url)

    def role(self) -> str:
        if self._role is None:
            self._role = self.client("iam").create_role(
                RoleName="go-arm-lambda-test", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"}),
            )["Role"]["Arn"]
        return self._role

    def create_function(self, name: str, *, region: str = REGION, runtime: str = "go1.x",
                        architecture: str = "x86_64", handler: str = "main", code: bytes | None = None,
                        layers: tuple[str, ...] = (), image: bool = False,
                        environment: dict[str, str] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"FunctionName": name, "Role": self.role(), "MemorySize": 256, "Timeout": 9,
                                  "Environment": {"Variables": environment or {"KEEP": "me"}}}
        if image:
            uri = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{name}:latest"
            params |= {"PackageType": "Image", "Code": {"ImageUri": uri}}
        else:
            params |= {"Runtime": runtime, "Handler": handler, "Architectures": [architecture],
                       "Code": {"ZipFile": code or make_zip({handler: b"old x86_64 binary"})},
                       "Layers": list(layers)}
        return self.client("lambda", region).create_function(**params)  # type: ignore[no-any-return]

    def publish_layer(self, name: str, *, region: str = REGION, content: bytes = b"foreign",
                      zip_file: bytes | None = None, description: str = "") -> str:
        """A layer version published by someone else (or by an earlier go-arm-lambda, given its zip)."""
        out = self.client("lambda", region).publish_layer_version(
            LayerName=name, Content={"ZipFile": zip_file or make_zip({"lib/x.so": content})},
            CompatibleArchitectures=["arm64"], Description=description)
        return str(out["LayerVersionArn"])

    def layer_statement_ids(self, name: str, version: int, region: str = REGION) -> list[str]:
        """The statement ids in a layer version's policy, sorted; [] when it has none."""
        client = self.client("lambda", region)
        try:
            policy = client.get_layer_version_policy(LayerName=name, VersionNumber=version)["Policy"]
        except client.exceptions.ResourceNotFoundException:
            return []
        return sorted(s["Sid"] for s in json.loads(policy)["Statement"])

    def function(self, name: str, region: str = REGION, qualifier: str | None = None) -> dict[str, Any]:
        params = {"FunctionName": name} | ({"Qualifier": qualifier} if qualifier else {})
        return self.client("lambda", region).get_function(**params)["Configuration"]  # type: ignore[no-any-return]

    @property
    def invoker(self) -> Any:
        """The lambdainvoke.LambdaInvoke behind the proxy: its `invocations`, its seeded `random`, its `cache`."""
        return self.proxy.local

    def set_alarm(self, name: str, state: str, *, region: str = REGION, reason: str = "set by a test") -> None:
        """Put CloudWatch alarm `name` in `state` (OK | ALARM | INSUFFICIENT_DATA), creating it on first use."""
        cloudwatch = self.client("cloudwatch", region)
        if not cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
            cloudwatch.put_metric_alarm(
                AlarmName=name, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
                EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)

    def create_bucket(self, name: str, region: str = REGION) -> None:
        # us-east-1 is S3's default and refuses to be named as a location constraint.
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        self.client("s3", region).create_bucket(Bucket=name, **where)


@contextlib.contextmanager
def _moto() -> Iterator[str]:
    """A moto server on 127.0.0.1, quiet; its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def standalone() -> Iterator[FakeAws]:
    """moto behind a fresh proxy outside pytest, for the benchmarks; test credentials in the environment."""
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    with _moto() as url:
        proxy = FaultProxy(url)
        try:
            yield FakeAws(url, proxy)
        finally:
            proxy.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    with _moto() as url:
        yield url


def reset_moto(moto_url: str) -> None:
    conn = http.client.HTTPConnection(*moto_url.removeprefix("http://").split(":"), timeout=30)
    try:
        conn.request("POST", "/moto-api/reset")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def set_moto_auth(moto_url: str, enforced: bool) -> None:
    """Turn moto's IAM access control on (every request checked against the caller's policies) or off."""
    conn = http.client.HTTPConnection(*moto_url.removeprefix("http://").split(":"), timeout=30)
    try:
        conn.request("POST", "/moto-api/reset-auth", body=b"0" if enforced else b"inf")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAws]:
    """A clean moto behind a fresh proxy that runs Invoke for real and keeps RevisionIds as Lambda does;
    credentials in the environment for the standard chain."""
    from lambdainvoke import LambdaInvoke, ZipCache  # they build on this module, so they come in late
    from revisions import RevisionIds

    reset_moto(moto_server)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no 1 s timeouts probing for an instance role
    # Keep the developer's own ~/.aws out of the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    proxy = FaultProxy(moto_server)
    # One zip cache for the session: it is keyed by CodeSha256, so moto's reset between tests cannot stale it.
    proxy.local = LambdaInvoke(moto_server, ZipCache(tmp_path_factory.getbasetemp() / "invoke-zips"))
    proxy.guard = RevisionIds()
    try:
        yield FakeAws(moto_server, proxy)
    finally:
        proxy.close()


# --- deploying in tests and benchmarks ----------------------------------------------------------------------

FAST = Timing(max_attempts=5, max_throttled=5, base_delay=0.01, max_delay=0.05, poll_interval=0.01,
              wait_timeout=10)


def artifacts(tmp: Path, names: list[str], *, version: str = "v1") -> dict[str, FakeArtifact]:
    """One function zip per name (the binary named after the function) and the layer zip under key ''."""
    tmp.mkdir(parents=True, exist_ok=True)
    out = {name: FakeArtifact.write(tmp / f"{name}-{version}.zip", {name: f"arm64 {name} {version}".encode()})
           for name in names}
    bootstrap = b'#!/bin/sh\nexec "$LAMBDA_TASK_ROOT/$_HANDLER"\n'
    out[""] = FakeArtifact.write(tmp / "layer.zip", {"bootstrap": bootstrap})
    return out


def desired(zips: dict[str, FakeArtifact], *, regions: tuple[str, ...] = (REGION,), mode: str = "layer",
            commit: str | None = None, run: DeployRun | None = None, **options: Any) -> DesiredState:
    """What `go-arm-lambda deploy` wants after packaging; `options` are Config fields (publish=True, ...);
    `run`: the GitHub Actions run that deploys."""
    names = [n for n in zips if n]
    handler = (lambda n: n) if mode == "layer" else (lambda n: "bootstrap")
    cfg = Config(regions=regions, mode=mode, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    return desired_state(DeployConfig.of(cfg), [(FunctionSpec(n, f"./cmd/{n}"), handler(n), zips[n]) for n in names],
                         zips[""], tool_version="0.1.0", commit=commit, run=run)


def plan_for(url: str, want: DesiredState, *, concurrency: int = 8, timing: Timing = FAST) -> Plan:
    session = make_session(url, timing=timing)
    return make_plan(want, {r: LambdaView(session, r) for r in want.regions}, concurrency=concurrency)


def execute_plan(url: str, plan: Plan, *, concurrency: int = 8, timing: Timing = FAST) -> DeployResult:
    """The second half of a deploy, for tests that change what AWS answers between planning and executing."""
    session = make_session(url, timing=timing)
    return execute(plan, {r.region: LambdaWriter(session, r.region) for r in plan.regions}, concurrency)


def deploy(url: str, want: DesiredState, *, concurrency: int = 8, timing: Timing = FAST) -> DeployResult:
    """What `go-arm-lambda deploy` does after packaging: plan through the view, then execute with writers."""
    session = make_session(url, timing=timing)
    plan = make_plan(want, {r: LambdaView(session, r) for r in want.regions}, concurrency=concurrency)
    return execute(plan, {r: LambdaWriter(session, r) for r in want.regions}, concurrency)


def by_name(result: DeployResult) -> dict[str, dict[str, Any]]:
    """The report's function entries of a one-region deploy, by function name."""
    return {f["name"]: dict(f) for f in result.to_report()["functions"]}
