"""`make demo`: the main job end to end on examples/, against a local AWS endpoint (moto on 127.0.0.1).

It seeds the fake account with what a real one has before a migration: `hello` on go1.x/x86_64 and
`orders-api` on provided.al2 with the binary named bootstrap. Then it runs `go-arm-lambda deploy` twice:
the first run builds, verifies, smoke-invokes, publishes the layer and migrates both functions; the second
finds nothing to change and makes no mutating call.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
from moto.awslambda.models import LambdaFunction
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ("eu-west-1", "us-east-1")
OUT = ROOT / ".go-arm-lambda" / "demo"


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


def deploy(endpoint: str, report: Path) -> dict[str, object]:
    argv = [sys.executable, "-m", "go_arm_lambda", "deploy", "--source", str(ROOT / "examples"),
            "--function", "hello=./cmd/hello", "--function", "orders-api=./cmd/orders",
            *(f"--region={r}" for r in REGIONS), "--publish", "--alias", "live",
            "--endpoint-url", endpoint, "--out", str(OUT / "dist"), "--report", str(report)]
    print("$ go-arm-lambda " + " ".join(argv[3:]), flush=True)
    if subprocess.run(argv, check=False).returncode != 0:
        raise SystemExit("demo: the deploy above failed; its last line says why")
    return json.loads(report.read_text())


def main() -> int:
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION=REGIONS[0])
    os.environ.pop("AWS_PROFILE", None)
    honour_architectures_on_code_update()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request would bury the demo
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        print(f"moto (local AWS) at {endpoint}; seeding go1.x and provided.al2 functions in {', '.join(REGIONS)}")
        seed(endpoint)
        first = deploy(endpoint, OUT / "report-1.json")
        print(f"\nfirst deploy: {first['mutating_calls']} mutating calls; report in {OUT / 'report-1.json'}\n")
        second = deploy(endpoint, OUT / "report-2.json")
        print(f"\nsecond deploy, nothing changed: {second['mutating_calls']} mutating calls")
        return 0 if second["mutating_calls"] == 0 else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
