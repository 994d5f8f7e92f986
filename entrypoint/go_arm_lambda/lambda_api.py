"""What go-arm-lambda asks of AWS, in its own terms: `LambdaView` reads one region (the planner gets nothing
else, so planning cannot write), `LambdaWriter` changes it (the executor's and the rollout's only way to write).

Every call goes through `aws.Aws.call` (the only boto3 user: retries, pacing, errors), and what comes back is
turned into the state types of steps.py (`FunctionState`, `LayerState`, ...), so neither the planner nor the
executor sees a boto3 answer.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from go_arm_lambda import progress
from go_arm_lambda.aws import (
    CHANGED_FIX,
    Answer,
    Aws,
    AwsChanged,
    AwsConflict,
    AwsDenied,
    AwsNotFound,
    make_session,
    operation_service,
)
from go_arm_lambda.errors import AwsError
from go_arm_lambda.steps import AliasState, CodeSource, FunctionState, InvokeAnswer, LayerState, S3Object

T = TypeVar("T")


def _not_found(fn: Callable[[], T]) -> T | None:
    """None for a ResourceNotFoundException: for the view, 'does not exist' is an answer, not a failure."""
    try:
        return fn()
    except AwsNotFound:
        return None


def _function_state(config: Answer, tags: Mapping[str, str] | None = None) -> FunctionState:
    return FunctionState(
        name=config["FunctionName"], arn=_unqualified(config["FunctionArn"]),
        package_type=config.get("PackageType", "Zip"), runtime=config.get("Runtime"),
        architectures=tuple(config.get("Architectures") or ("x86_64",)), handler=config.get("Handler"),
        layers=tuple(layer["Arn"] for layer in config.get("Layers") or ()),
        code_sha256=config.get("CodeSha256", ""), last_update_status=config.get("LastUpdateStatus"),
        last_update_reason=config.get("LastUpdateStatusReason"), version=config.get("Version", "$LATEST"),
        revision_id=config.get("RevisionId"),
        tags=None if tags is None else {str(k): str(v) for k, v in tags.items()})


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
        # Tags are the function's, not a version's: GetFunction gives them only unqualified.
        return _function_state(found["Configuration"], None if qualifier else found.get("Tags")) if found else None

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
                raise AwsChanged(f"{what} in {self.region} was created since the plan was read", CHANGED_FIX) from None
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
        return InvokeAnswer(int(out["StatusCode"]), out.get("FunctionError"), out["Payload"], log)


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
