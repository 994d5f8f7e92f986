"""`make demo`: the main job end to end on examples/, against a local AWS endpoint (moto on 127.0.0.1).

It seeds the fake account with what a real one has before a migration: `hello` on go1.x/x86_64 and
`orders-api` on provided.al2 with the binary named bootstrap. Then it runs `go-arm-lambda deploy` twice:
the first run builds, verifies, smoke-invokes, publishes the layer and migrates both functions; the second
finds nothing to change and makes no mutating call. Then two releases go out as canaries: each new version is
invoked in the (local) AWS first, and 25% of the `live` alias's traffic goes to it while a CloudWatch alarm is
watched. The first finishes; during the second the alarm goes off, and every alias goes back to the version it had.

Invoke runs for real: the local endpoint is the tests' proxy in front of moto, which runs each function version's
zip and layers under qemu (tests/lambdainvoke.py), as moto alone cannot without Docker.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import boto3
from moto.awslambda.models import LambdaFunction

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "entrypoint"), str(ROOT / "tests")]  # the Invoke emulation the tests use

from awsfakes import standalone  # noqa: E402
from go_arm_lambda import render  # noqa: E402
from lambdainvoke import LambdaInvoke, ZipCache  # noqa: E402

REGIONS = ("eu-west-1", "us-east-1")
OUT = ROOT / ".go-arm-lambda" / "demo"
ALARM = "demo-errors"
CANARY = ["--check-deployed", "--check-expect", "from linux/arm64", "--traffic", "canary:25:4s", "--alarm", ALARM]


def honour_architectures_on_code_update() -> None:
    """moto drops `Architectures` on UpdateFunctionCode (AWS applies it), so every redeploy would see x86_64
    and move the function again. The demo closes that one gap so the second run shows what AWS would do."""
    original = LambdaFunction.update_function_code

    def update_function_code(self: LambdaFunction, updated_spec: dict[str, object]) -> dict[str, object]:
        if updated_spec.get("Architectures"):
            self.architectures = list(updated_spec["Architectures"])  # type: ignore[call-overload]
        return original(self, updated_spec)

    LambdaFunction.update_function_code = update_function_code  # type: ignore[method-assign]


def old_zip(name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, b"an old x86_64 build")
    return buf.getvalue()


def seed(endpoint: str) -> None:
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    role = iam.create_role(RoleName="demo-lambda", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    for region in REGIONS:
        lam = boto3.client("lambda", endpoint_url=endpoint, region_name=region)
        lam.create_function(FunctionName="hello", Runtime="go1.x", Handler="hello", Role=role,
                            Architectures=["x86_64"], Code={"ZipFile": old_zip("hello")},
                            Environment={"Variables": {"GREETING": "kept as it is"}}, MemorySize=256)
        lam.create_function(FunctionName="orders-api", Runtime="provided.al2", Handler="bootstrap", Role=role,
                            Architectures=["x86_64"], Code={"ZipFile": old_zip("bootstrap")}, Timeout=30)


def deploy(endpoint: str, report: Path, source: Path = ROOT / "examples", *extra: str,
           fails: bool = False) -> dict[str, object]:
    argv = [sys.executable, "-m", "go_arm_lambda", "deploy", "--source", str(source),
            "--function", "hello=./cmd/hello", "--function", "orders-api=./cmd/orders",
            *(f"--region={r}" for r in REGIONS), "--publish", "--alias", "live",
            "--endpoint-url", endpoint, "--out", str(OUT / "dist"), "--report", str(report), *extra]
    print("$ go-arm-lambda " + " ".join(argv[3:]), flush=True)
    code = subprocess.run(argv, check=False).returncode
    if (code != 0) != fails:
        raise SystemExit(f"demo: the deploy above {'failed' if code else 'was meant to fail'}; its last lines say why")
    return json.loads(report.read_text())


def release(source: Path, greeting: str) -> None:
    """A new version of the code: both functions greet through internal/greet."""
    greet = source / "internal" / "greet" / "greet.go"
    greet.write_text(re.sub(r'"\w+, %s, from', f'"{greeting}, %s, from', greet.read_text()))


def set_alarm(endpoint: str, state: str, region: str) -> None:
    cloudwatch = boto3.client("cloudwatch", endpoint_url=endpoint, region_name=region)
    if not cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"]:
        cloudwatch.put_metric_alarm(AlarmName=ALARM, Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum",
                                    Period=60, EvaluationPeriods=1, Threshold=1,
                                    ComparisonOperator="GreaterThanOrEqualToThreshold")
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue=state, StateReason=f"set by the demo: {state}")


def alarm_once_canary_runs(endpoint: str) -> threading.Thread:
    """Waits until the canary routes traffic to the new version, then sets the alarm off, as errors would."""
    lam = boto3.client("lambda", endpoint_url=endpoint, region_name=REGIONS[0])

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            routing = lam.get_alias(FunctionName="hello", Name="live").get("RoutingConfig") or {}
            if routing.get("AdditionalVersionWeights"):
                time.sleep(1)
                print(f"demo: setting CloudWatch alarm {ALARM} to ALARM in {REGIONS[0]}", flush=True)
                set_alarm(endpoint, "ALARM", REGIONS[0])
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def rollout_lines(report: dict[str, object]) -> list[str]:
    """Each function's status, alias move and traffic steps, in the words of the job summary's rollout table."""
    return [f"  {f['name']} ({f['region']}): {f['status']}, {render.alias_text(f)}, traffic "
            f"{render.traffic_text(f.get('traffic'))}" for f in report["functions"]]  # type: ignore[attr-defined]


def main() -> int:
    os.environ["AWS_DEFAULT_REGION"] = REGIONS[0]
    os.environ.pop("AWS_PROFILE", None)
    honour_architectures_on_code_update()
    # moto behind the tests' proxy, as the benchmarks run it: quiet, test credentials in the environment.
    with standalone() as aws:
        moto, endpoint = aws.moto_url, aws.url
        aws.proxy.local = LambdaInvoke(moto, ZipCache(OUT / "invoke-zips"))
        print(f"moto (local AWS) at {moto}, Invoke run for real at {endpoint}; seeding go1.x and provided.al2 "
              f"functions in {', '.join(REGIONS)}")
        seed(moto)
        first = deploy(endpoint, OUT / "report-1.json")
        print(f"\nfirst deploy: {first['mutating_calls']} mutating calls; report in {OUT / 'report-1.json'}\n")
        second = deploy(endpoint, OUT / "report-2.json")
        print(f"\nsecond deploy, nothing changed: {second['mutating_calls']} mutating calls\n")
        ok = second["mutating_calls"] == 0

        source = OUT / "src"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(ROOT / "examples", source, ignore=shutil.ignore_patterns("demo.py"))
        for region in REGIONS:
            set_alarm(moto, "OK", region)
        release(source, "hi")
        third = deploy(endpoint, OUT / "report-3.json", source, *CANARY)
        print("\na canary that succeeds: each new version answered in AWS, then took 25% of live for 4 s, then all:")
        print("\n".join(rollout_lines(third)) + "\n")
        ok &= all(f["status"] == "updated" for f in third["functions"])  # type: ignore[attr-defined]

        release(source, "hey")
        watcher = alarm_once_canary_runs(moto)
        fourth = deploy(endpoint, OUT / "report-4.json", source, *CANARY, fails=True)
        watcher.join()
        print(f"\na canary rolled back: {ALARM} went off while 25% of live was on the new versions, so every alias "
              "went back:")
        print("\n".join(rollout_lines(fourth)))
        ok &= all(f["status"] == "rolled-back" for f in fourth["functions"])  # type: ignore[attr-defined]
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
