"""The test AWS answers Lambda Invoke for real: real Go functions, packaged by the real packager, created in moto,
invoked with boto3 through the fault proxy, run under qemu by the smoke runner."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from awsfakes import REGION, FakeAws, deploy, desired, make_zip
from foreignzip import foreign_zip
from go_arm_lambda import limits, package
from lambdainvoke import ZipCache, runnable_artifacts
from test_smoke import _responder

LAYER = "go-arm-lambda-bootstrap"


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory, fixture_bins: Path) -> dict[str, bytes]:
    """Function zips by fixture binary, each stored under the handler name `fn`, and the layer under ''."""
    tmp = tmp_path_factory.mktemp("zips")
    out = {binary: package.package_function(fixture_bins / binary, "fn", tmp / f"{binary}.zip").path.read_bytes()
           for binary in ("answer", "envdump", "fail", "panic", "slow", "initexit")}
    out[""] = package.package_layer(tmp / "layer.zip").path.read_bytes()
    return out


def create(aws: FakeAws, zips: dict[str, bytes], name: str, binary: str, *, layers: tuple[str, ...] = (),
           timeout: int | None = None) -> None:
    """A function as go-arm-lambda deploys it: provided.al2023 on arm64, our layer, Handler = binary name."""
    layers = layers or (aws.publish_layer(LAYER, zip_file=zips[""]),)
    aws.create_function(name, runtime="provided.al2023", architecture="arm64", handler="fn", code=zips[binary],
                        layers=layers)
    if timeout is not None:
        aws.client("lambda").update_function_configuration(FunctionName=name, Timeout=timeout)


def client(aws: FakeAws, **config: Any) -> Any:
    return aws.session.client("lambda", region_name=REGION, endpoint_url=aws.url, config=Config(**config))


def invoke(lam: Any, name: str, qualifier: str | None = None, event: Any = None) -> dict[str, Any]:
    """boto3's invoke with LogType=Tail, the payload read and parsed and the log tail decoded."""
    params = {"FunctionName": name, "LogType": "Tail", "Payload": json.dumps(event or {}).encode()}
    out: dict[str, Any] = lam.invoke(**params | ({"Qualifier": qualifier} if qualifier else {}))
    out["Payload"] = json.loads(out["Payload"].read())
    out["Log"] = base64.b64decode(out["LogResult"]).decode()
    out["RequestId"] = out["ResponseMetadata"]["RequestId"]
    return out


def test_invoke_runs_the_version_asked_for_with_its_layers_in_order(aws: FakeAws, zips: dict[str, bytes],
                                                                    tmp_path: Path) -> None:
    # A cache of its own: the session's already holds our layer's zip once any earlier test invoked a function.
    aws.invoker.cache = ZipCache(tmp_path / "zips")
    # A foreign layer with a broken bootstrap first: ours, listed after it, must replace it in /opt.
    foreign = aws.publish_layer("tools", zip_file=make_zip({"bootstrap": b"#!/bin/sh\nexit 42\n", "lib/x": b"x"}))
    ours = aws.publish_layer(LAYER, zip_file=zips[""])
    create(aws, zips, "shop", "answer", layers=(foreign, ours))
    lam = client(aws)
    assert lam.publish_version(FunctionName="shop")["Version"] == "1"
    aws.client("lambda").update_function_code(FunctionName="shop", ZipFile=zips["envdump"])
    aws.proxy.respond("POST", r"/invocations$", status=429, code="TooManyRequestsException", message="Rate exceeded")

    first = invoke(lam, "shop", "1", {"order": 42})
    assert first["StatusCode"] == 200 and "FunctionError" not in first
    assert first["ExecutedVersion"] == "1"
    assert first["Payload"]["event"] == {"order": 42}
    assert first["Payload"]["arn"].endswith(":function:shop")
    log = first["Log"].splitlines()
    assert log[0] == f"START RequestId: {first['RequestId']} Version: 1"
    assert log[-2] == f"END RequestId: {first['RequestId']}"
    assert log[-1].startswith(f"REPORT RequestId: {first['RequestId']}\tDuration: ")
    assert "Memory Size: 256 MB" in log[-1]
    assert aws.invoker.cache.fetches == 3  # the code and two layers

    latest = invoke(lam, aws.function("shop")["FunctionArn"])  # unqualified, by ARN: $LATEST, the new code
    assert latest["ExecutedVersion"] == "$LATEST" and "FunctionError" not in latest
    env = latest["Payload"]["env"]
    assert (env["_HANDLER"], env["AWS_LAMBDA_FUNCTION_NAME"], env["KEEP"]) == ("fn", "shop", "me")

    again = invoke(lam, "shop:1")
    assert again["ExecutedVersion"] == "1" and "event" in again["Payload"]
    assert aws.invoker.cache.fetches == 4  # only $LATEST's code was new
    assert [r.status for r in aws.proxy.matching("POST", r"/functions/[^/]+/invocations$")] == [429, 200, 200, 200]
    assert [i.version for i in aws.invoker.invocations] == ["1", "$LATEST", "1"]


@pytest.mark.parametrize(("binary", "error_type", "message", "in_log"), [
    ("fail", "errorString", "order 42 was rejected", None),
    ("panic", "string", "nil map in handler", None),
    ("slow", "Sandbox.Timedout", "Error: Task timed out after 1.00 seconds", "Task timed out after 1.00 seconds"),
    ("initexit", "Runtime.ExitError", "function exited with status 3 during init", "fatal: TABLE_NAME is not set"),
])
def test_a_failing_function_is_a_200_with_unhandled(aws: FakeAws, zips: dict[str, bytes], binary: str,
                                                    error_type: str, message: str, in_log: str | None) -> None:
    create(aws, zips, binary, binary, timeout=1)
    out = invoke(client(aws), binary)
    assert out["StatusCode"] == 200
    assert out["FunctionError"] == "Unhandled"
    assert out["Payload"]["errorType"] == error_type
    assert message in out["Payload"]["errorMessage"]
    assert out["Log"].startswith(f"START RequestId: {out['RequestId']} Version: $LATEST\n")
    if in_log:
        assert in_log in out["Log"]


def test_an_alias_runs_its_versions_by_their_routing_weights(aws: FakeAws, zips: dict[str, bytes]) -> None:
    create(aws, zips, "shop", "answer")
    setup = aws.client("lambda")
    setup.publish_version(FunctionName="shop")
    setup.update_function_code(FunctionName="shop", ZipFile=zips["envdump"])
    setup.publish_version(FunctionName="shop")
    setup.create_alias(FunctionName="shop", Name="live", FunctionVersion="1",
                       RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    seed = 3
    draws = random.Random(seed)
    expected = ["2" if draws.random() < 0.3 else "1" for _ in range(3)]
    assert set(expected) == {"1", "2"}, "pick a seed that sends the invokes to both versions"
    aws.invoker.random.seed(seed)
    lam = client(aws)

    ran = [invoke(lam, "shop", "live") for _ in expected]
    assert [r["ExecutedVersion"] for r in ran] == expected
    # Each version ran its own code: answer echoes the event, envdump shows its environment.
    assert [("event" in r["Payload"], "env" in r["Payload"]) for r in ran] == [(v == "1", v == "2") for v in expected]

    setup.update_alias(FunctionName="shop", Name="live", FunctionVersion="2", RoutingConfig={})
    assert invoke(lam, "shop", "live")["ExecutedVersion"] == "2"


def test_a_response_up_to_lambdas_limit_is_answered_and_one_byte_more_is_unhandled(aws: FakeAws,
                                                                                   tmp_path: Path) -> None:
    lam = client(aws)
    for size, answered in ((limits.MAX_RESPONSE, True), (limits.MAX_RESPONSE + 1, False)):
        code = foreign_zip(tmp_path / f"{size}.zip", [("bootstrap", _responder(size), 0o100755)]).read_bytes()
        aws.create_function(f"big{size}", runtime="provided.al2023", architecture="arm64", handler="bootstrap",
                            code=code)
        out = lam.invoke(FunctionName=f"big{size}")
        payload = out["Payload"].read()
        if answered:
            assert "FunctionError" not in out and len(payload) == size
        else:
            assert out["FunctionError"] == "Unhandled"
            assert json.loads(payload)["errorType"] == "Function.ResponseSizeTooLarge"


def test_what_never_runs_answers_as_lambda(aws: FakeAws, zips: dict[str, bytes], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    create(aws, zips, "shop", "answer")
    aws.create_function("legacy")  # go1.x on x86_64, as before a migration
    lam = client(aws, retries={"total_max_attempts": 1})

    for name, qualifier in (("nope", None), ("shop", "staging"), ("shop", "7")):
        with pytest.raises(ClientError) as caught:
            lam.invoke(FunctionName=name, **({"Qualifier": qualifier} if qualifier else {}))
        assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(lam.exceptions.InvalidRuntimeException, match=r"go1\.x"):
        lam.invoke(FunctionName="legacy")
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke(FunctionName="shop", Payload=b"{not json")
    assert lam.invoke(FunctionName="shop", InvocationType="DryRun")["StatusCode"] == 204
    aws.create_function("junk", runtime="provided.al2023", architecture="arm64", handler="fn", code=b"not a zip")
    with pytest.raises(lam.exceptions.InvalidZipFileException, match="is not a zip file"):
        lam.invoke(FunctionName="junk")
    with monkeypatch.context() as env:  # a missing tool fails the test with its name, not a dropped connection
        env.setenv("PATH", str(tmp_path))
        with pytest.raises(ClientError, match="qemu-aarch64-static is not installed"):
            lam.invoke(FunctionName="shop")
    assert aws.invoker.invocations == []


def test_cloudwatch_alarm_states_read_through_the_proxy(aws: FakeAws) -> None:
    cloudwatch = aws.session.client("cloudwatch", region_name=REGION, endpoint_url=aws.url)

    def state() -> str:
        return str(cloudwatch.describe_alarms(AlarmNames=["shop-errors"])["MetricAlarms"][0]["StateValue"])

    aws.set_alarm("shop-errors", "ALARM")
    assert state() == "ALARM"
    aws.set_alarm("shop-errors", "OK")
    assert state() == "OK"
    reads = [r for r in aws.proxy.requests if r.operation == "DescribeAlarms"]
    assert len(reads) == 2 and not any(r.mutating for r in reads)
    cloudwatch.set_alarm_state(AlarmName="shop-errors", StateValue="ALARM", StateReason="through the proxy")
    assert state() == "ALARM"
    assert [r.operation for r in aws.proxy.mutating()] == ["SetAlarmState"]


def test_a_function_go_arm_lambda_deployed_answers(aws: FakeAws, fixture_bins: Path, tmp_path: Path) -> None:
    aws.create_function("shop")  # go1.x on x86_64, as before the migration
    deploy(aws.url, desired(runnable_artifacts(tmp_path, fixture_bins, {"shop": "answer"})))
    lam = client(aws)
    out = invoke(lam, "shop", event={"order": 7})
    assert "FunctionError" not in out and out["Payload"]["event"] == {"order": 7}
    assert lam.invoke(FunctionName="shop", InvocationType="Event")["StatusCode"] == 202
    assert [i.function_error for i in aws.invoker.invocations] == [None, None]
