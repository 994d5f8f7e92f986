"""Lambda Invoke for the test AWS, for real: the fault proxy hands `POST /2015-03-31/functions/{name}/invocations`
to `LambdaInvoke`, which runs the function the way Lambda would and answers the way Lambda does.

moto cannot run a function without a container runtime (it answers a canned "Simple Lambda happy path OK"), so
this resolves the qualifier through moto (a version, an alias with its routing weights, or $LATEST), takes that
version's code zip and layers, and runs them with go-arm-lambda's own smoke runner under qemu: the same
bootstrap layer, the same Runtime API emulator. The answer is Lambda's: 200 with the payload; a function error,
a crash or a timeout still 200 with `X-Amz-Function-Error: Unhandled` and an {"errorMessage","errorType"} payload;
`X-Amz-Log-Result` (LogType=Tail) with the last 4 KB of the log; `X-Amz-Executed-Version`; moto's own 404 for
an unknown function or qualifier.

Known differences from Lambda: the log holds the function's stderr (where aws-lambda-go and Go's log package
write), not its stdout; the function sees AWS_LAMBDA_FUNCTION_VERSION=$LATEST and its own request id, not the
one in the log's START line; every invoke is a cold start; Architectures is not checked (moto ignores it on
update_function_code, so a deployed function may still claim x86_64 there).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import random
import re
import threading
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import boto3
from botocore.exceptions import ClientError
from moto.backends import get_backend

from awsfakes import ACCOUNT, REGION, Recorded, aws_error
from go_arm_lambda import cache, limits, package
from go_arm_lambda.errors import UsageError
from go_arm_lambda.smoke import SmokeResult, smoke

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
# A name in the path: bare, `name:qualifier`, or a partial or full ARN with an optional qualifier.
FUNCTION_REF = re.compile(r"^(?:(?:arn:[\w-]+:lambda:[\w-]+:)?\d{12}:function:)?(?P<name>[\w-]+)(?::(?P<q>[$\w-]+))?$")
LAYER_VERSION_ARN = re.compile(
    r"^arn:[\w-]+:lambda:[\w-]+:(?P<account>\d{12}):layer:(?P<name>[\w-]+):(?P<version>\d+)$")
LOG_TAIL_BYTES = 4096  # what Lambda returns in X-Amz-Log-Result

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Invocation:
    """One Invoke the test AWS ran, for tests to assert on (the proxy's record has the request itself)."""

    function: str  # the function's name
    qualifier: str | None  # as asked: a version, an alias, $LATEST or None
    version: str  # the version that ran
    function_error: str | None  # "Unhandled", or None when the function answered
    payload: bytes  # what the caller got back
    log: str  # the whole log of the invocation; X-Amz-Log-Result carries its last 4 KB
    result: SmokeResult


class ZipCache:
    """Code and layer zips on disk by CodeSha256: the runner takes zip files, and tests invoke the same code again
    and again. Content-addressed, so one directory serves every test of a session, whatever moto holds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.fetches = 0  # zips read out of moto, i.e. cache misses

    def get(self, code_sha256: str, fetch: Callable[[], bytes]) -> Path:
        path = self.directory / f"{base64.b64decode(code_sha256).hex()}.zip"
        if not path.exists():
            data = fetch()
            self.fetches += 1
            got = base64.b64encode(hashlib.sha256(data).digest()).decode()
            if got != code_sha256:
                raise RuntimeError(f"moto holds code with CodeSha256 {got}, but reports {code_sha256}")
            cache.atomic_write(path, data)  # concurrent invokes of the same code may race; same bytes
        return path

    def merged(self, layers: list[Path]) -> Path | None:
        """One zip with what the layers put in /opt: Lambda extracts them in order, so a later layer's file
        replaces an earlier one's. Modes are kept (a bootstrap without its exec bit must fail as on Lambda)."""
        if len(layers) <= 1:
            return layers[0] if layers else None
        key = hashlib.sha256("\0".join(p.stem for p in layers).encode()).hexdigest()
        path = self.directory / f"layers-{key}.zip"
        if not path.exists():
            cache.atomic_write(path, _merge(layers))
        return path


def _merge(layers: list[Path]) -> bytes:
    sources = [zipfile.ZipFile(p) for p in layers]
    out = io.BytesIO()
    try:
        entries = {info.filename: (zf, info) for zf in sources for info in zf.infolist()}
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for zf, info in entries.values():
                dst.writestr(info, zf.read(info))
    finally:
        for zf in sources:
            zf.close()
    return out.getvalue()


class LambdaInvoke:
    """Answers Lambda Invoke for a FaultProxy (`proxy.local`); None for every other request, which goes to moto.

    `random` picks the version behind an alias with AdditionalVersionWeights; it is seeded, so a test sees
    the same picks on every run (reseed or replace it to choose others).
    """

    def __init__(self, moto_url: str, cache: ZipCache, *, seed: int = 0) -> None:
        self.moto_url = moto_url
        self.cache = cache
        self.random = random.Random(seed)
        self.invocations: list[Invocation] = []
        self._lock = threading.Lock()
        self._session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing")
        self._clients: dict[str, Any] = {}

    def __call__(self, rec: Recorded) -> Answer | None:
        m = INVOKE_PATH.match(rec.path)
        if rec.method != "POST" or m is None:
            return None
        if (denied := _denied(rec)) is not None:
            return denied
        try:
            return self._invoke(rec, unquote(m["name"]))
        except ClientError as exc:  # moto's answer to a lookup: an unknown function, alias or version
            err = exc.response["Error"]
            return _error(exc.response["ResponseMetadata"]["HTTPStatusCode"], err["Code"], err["Message"])
        except Exception as exc:  # e.g. qemu missing: the failing test says why instead of seeing a dropped line
            return _error(500, "ServiceException", f"the test AWS could not run the function: {exc}")

    def sign_as(self, access_key_id: str, secret_access_key: str) -> None:
        """The identity of its own reads of moto. With moto's IAM enforcement on, Lambda reading the function it
        runs must not hang on the caller's policy, so a test gives the emulator an IAM user of its own."""
        with self._lock:
            self._session = boto3.Session(aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)
            self._clients.clear()

    # -- resolving what to run ------------------------------------------------------------------------------

    def _client(self, region: str) -> Any:
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._session.client("lambda", region_name=region,
                                                             endpoint_url=self.moto_url)
            return self._clients[region]

    def _resolve(self, client: Any, name: str, qualifier: str | None) -> dict[str, Any]:
        """The configuration of the version that runs: an alias picks one by its routing weights."""
        params = {"FunctionName": name} | ({"Qualifier": qualifier} if qualifier else {})
        config: dict[str, Any] = client.get_function(**params)["Configuration"]
        if qualifier is None or qualifier == "$LATEST" or qualifier.isdigit():
            return config
        alias = client.get_alias(FunctionName=name, Name=qualifier)
        weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
        version = self._route(alias["FunctionVersion"], weights)
        if version == config["Version"]:
            return config
        return client.get_function(FunctionName=name, Qualifier=version)["Configuration"]  # type: ignore[no-any-return]

    def _route(self, primary: str, weights: dict[str, float]) -> str:
        with self._lock:
            draw = self.random.random()
        for version, weight in sorted(weights.items()):
            if draw < weight:
                return version
            draw -= weight
        return primary

    def _zips(self, config: dict[str, Any], region: str, client: Any) -> tuple[Path, Path | None]:
        # moto answers GetFunction's Code.Location with a URL into a bucket that does not exist, and
        # GetLayerVersion's Content.Location with "s3://": no HTTP way to the bytes. ThreadedMotoServer runs in
        # this process, so they come from its backend, checked against the CodeSha256 moto reports over HTTP.
        backends = get_backend("lambda")
        account = config["FunctionArn"].split(":")[4]
        code = self.cache.get(config["CodeSha256"], lambda: bytes(
            backends[account][region].get_function(config["FunctionName"], config["Version"]).code_bytes))
        layers = []
        for layer in config.get("Layers", []):
            m = LAYER_VERSION_ARN.match(layer["Arn"])
            assert m, layer["Arn"]
            content = client.get_layer_version(LayerName=layer["Arn"].rpartition(":")[0],
                                               VersionNumber=int(m["version"]))["Content"]
            layers.append(self.cache.get(content["CodeSha256"], lambda m=m: bytes(
                backends[m["account"]][region].get_layer_version(m["name"], m["version"]).code_bytes)))
        return code, self.cache.merged(layers)

    # -- running it and answering ----------------------------------------------------------------------------

    def _invoke(self, rec: Recorded, ref: str) -> Answer:
        m = FUNCTION_REF.match(ref)
        if m is None:
            return _error(400, "ValidationException", f"1 validation error detected: Value '{ref}' at "
                          "'functionName' failed to satisfy constraint: Member must satisfy regular expression "
                          "pattern")
        asked = parse_qs(rec.query).get("Qualifier", [None])[0]
        if m["q"] and asked and m["q"] != asked:
            return _error(400, "InvalidParameterValueException",
                          "The derived qualifier from the function name does not match the specified qualifier.")
        qualifier = m["q"] or asked
        region = rec.region or REGION
        client = self._client(region)
        config = self._resolve(client, m["name"], qualifier)
        headers = {k.lower(): v for k, v in rec.headers.items()}
        if headers.get("x-amz-invocation-type") == "DryRun":
            return 204, {"x-amzn-RequestId": str(uuid.uuid4())}, b""
        if config.get("PackageType") == "Image" or config.get("Runtime") not in limits.RUNTIME_GLIBC:
            return _error(502, "InvalidRuntimeException",
                          f"The test AWS runs only {' and '.join(limits.RUNTIME_GLIBC)} zip functions; "
                          f"{config['FunctionName']} is {config.get('Runtime') or config.get('PackageType')}")
        event = rec.body or b"{}"
        if len(event) > limits.MAX_EVENT:
            return _error(413, "RequestTooLargeException", "Request must be smaller than 6291456 bytes for the "
                          "InvokeFunction operation")
        try:
            json.loads(event)
        except ValueError as exc:
            return _error(400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}")
        code, layer = self._zips(config, region, client)
        try:
            result = smoke(code, config.get("Handler") or "bootstrap", layer_zip=layer, event=event,
                           timeout=float(config["Timeout"]), function_name=config["FunctionName"], region=region,
                           memory_mb=int(config["MemorySize"]),
                           env=config.get("Environment", {}).get("Variables"), runtime=config["Runtime"])
        except UsageError as exc:  # a zip Lambda would not have taken, or a Handler it could not run
            return _error(502, "InvalidZipFileException", str(exc))
        request_id = str(uuid.uuid4())
        function_error, payload, log = _outcome(result, config, request_id)
        with self._lock:
            self.invocations.append(Invocation(config["FunctionName"], qualifier, config["Version"],
                                               function_error, payload, log, result))
        out = {"Content-Type": "application/json", "x-amzn-RequestId": request_id,
               "X-Amz-Executed-Version": config["Version"]}
        if function_error:
            out["X-Amz-Function-Error"] = function_error
        if headers.get("x-amz-log-type") == "Tail":
            out["X-Amz-Log-Result"] = base64.b64encode(log.encode()[-LOG_TAIL_BYTES:]).decode()
        if headers.get("x-amz-invocation-type") == "Event":
            return 202, {"x-amzn-RequestId": request_id}, b""
        return 200, out, payload


def _outcome(result: SmokeResult, config: dict[str, Any], request_id: str) -> tuple[str | None, bytes, str]:
    """(X-Amz-Function-Error, payload, log) for what the runner saw, in Lambda's words."""
    version = config["Version"]
    lines = [f"START RequestId: {request_id} Version: {version}", *result.stderr_tail.splitlines()]
    lines += [f"END RequestId: {request_id}",
              f"REPORT RequestId: {request_id}\tDuration: {result.duration_ms:.2f} ms\tBilled Duration: "
              f"{max(1, result.duration_ms)} ms\tMemory Size: {config['MemorySize']} MB\t"]
    # An answer, or the error document the function posted itself (or the Runtime API emulator posted for it:
    # Function.ResponseSizeTooLarge over limits.MAX_RESPONSE, as Lambda answers).
    if result.ok or result.payload:
        return (None if result.ok else "Unhandled"), result.payload, "\n".join(lines) + "\n"
    if result.timed_out:
        message = f"Task timed out after {float(config['Timeout']):.2f} seconds"
        lines.append(f"{_now()} {request_id} {message}")
        error = ("Sandbox.Timedout", f"RequestId: {request_id} Error: {message}")
    else:  # it exited, or never started, without posting anything
        # The runner reports 0 ms exactly when it never started the bootstrap (none found, or not runnable).
        kind = "Runtime.InvalidEntrypoint" if result.duration_ms == 0 else "Runtime.ExitError"
        error = (kind, f"RequestId: {request_id} Error: {result.error}")
    payload = json.dumps({"errorType": error[0], "errorMessage": error[1]}).encode()
    return "Unhandled", payload, "\n".join(lines) + "\n"


def _denied(rec: Recorded) -> Answer | None:
    """moto never sees an Invoke, so its IAM enforcement, when a test turned it on (awsfakes.set_moto_auth), is
    asked here, for the action Lambda checks: lambda:InvokeFunction."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import AccessDeniedError
    from moto.iam.access_control import IAMRequest

    if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
        return None
    try:
        IAMRequest(account_id=ACCOUNT, method=rec.method, path=rec.path, data={}, body=rec.body,
                   headers=rec.headers, action="InvokeFunction").check_action_permitted("*")
    except AccessDeniedError as exc:
        return _error(403, "AccessDeniedException", exc.message)
    return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(status: int, code: str, message: str) -> Answer:
    out = aws_error(status, code, message)
    return out["status"], out["headers"], out["body"]


def runnable_artifacts(tmp: Path, bins: Path, functions: dict[str, str]) -> dict[str, package.Artifact]:
    """Like awsfakes.artifacts(), but zips that run, made by the real packager: {function name: fixture binary}
    (e.g. {"shop": "answer"}), each binary under its function's name as handler, and the layer under key ''."""
    out = {name: package.package_function(bins / binary, name, tmp / f"{name}.zip")
           for name, binary in functions.items()}
    out[""] = package.package_layer(tmp / "layer.zip")
    return out
