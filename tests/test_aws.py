"""AWS access: credentials, endpoints, and the minimal IAM policy, with moto enforcing IAM."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from awsfakes import FAST, REGION, FakeAws, artifacts, deploy, desired, plan_for, reset_moto, set_moto_auth
from go_arm_lambda import config, inputs, pipeline
from go_arm_lambda.aws import AwsTimeout, make_session
from go_arm_lambda.errors import AwsError, UserError
from go_arm_lambda.lambda_api import LambdaView, LambdaWriter, upload_layer
from go_arm_lambda.steps import DeployRun
from lambdainvoke import runnable_artifacts

POLICY = Path(__file__).parent / "fixtures" / "iam-policy.json"
# Lambda itself reads S3 code with the caller's rights on AWS; moto does not, so no test can show it is needed.
NEEDED_ONLY_ON_AWS = {"s3:GetObject"}


def test_missing_credentials_are_one_clear_line(aws: FakeAws, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws.create_function("orders")
    with pytest.raises(AwsError) as info:
        plan_for(aws.url, desired(artifacts(tmp_path, ["orders"])))
    assert str(info.value) == (
        "no usable AWS credentials were found. configure AWS credentials (aws-actions/configure-aws-credentials, "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
    assert aws.proxy.requests == []


def test_unreachable_endpoint_is_one_clear_line(aws: FakeAws) -> None:
    view = LambdaView(make_session("http://127.0.0.1:9"), "eu-west-1")
    with pytest.raises(AwsError, match=r"^cannot reach AWS at http://127.0.0.1:9 for region eu-west-1\. check"):
        view.function("orders")


def test_aws_endpoint_url_from_the_environment(aws: FakeAws, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.create_function("orders")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    state = LambdaView(make_session(None), REGION).function("orders")
    assert state is not None and state.runtime == "go1.x" and state.architectures == ("x86_64",)
    assert [r.path for r in aws.proxy.requests] == ["/2015-03-31/functions/orders"]


def test_upload_layer_puts_the_zip(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_bucket("layers")
    zips = artifacts(tmp_path, [])
    target = upload_layer("layers", "bootstrap/layer.zip", zips[""].path, REGION, aws.url)
    assert str(target) == "s3://layers/bootstrap/layer.zip"
    body = aws.client("s3").get_object(Bucket="layers", Key="bootstrap/layer.zip")["Body"].read()
    assert body == zips[""].path.read_bytes()


@pytest.mark.parametrize(("method", "path", "ask", "answer"), [
    ("GET", r"^/deploy-bucket$", lambda view: view.bucket_region("deploy-bucket"), REGION),
    ("POST", r"^/$", lambda view: view.account_id(), "123456789012"),  # STS
])
def test_a_garbled_answer_is_retried(aws: FakeAws, method: str, path: str, ask: Any, answer: str) -> None:
    aws.create_bucket("deploy-bucket")
    # An HTML error page from a proxy in place of S3's or STS's XML: botocore cannot parse it.
    aws.proxy.rewrite(method, path, lambda body: b"<html><body>502 Bad Gateway<br></body></html>")
    assert ask(LambdaView(make_session(aws.url, timing=FAST), REGION)) == answer
    assert [r.fault for r in aws.proxy.matching(method, path)] == ["rewrite", None]


def test_a_garbled_answer_that_persists_is_one_clear_line(aws: FakeAws) -> None:
    aws.create_bucket("deploy-bucket")
    aws.proxy.rewrite("GET", r"^/deploy-bucket$", lambda body: b"<html><body>502<br></body></html>", times=100)
    with pytest.raises(AwsError, match=r"^GetBucketLocation for S3 bucket deploy-bucket in eu-west-1: AWS's "
                                       r"answer could not be read \(mismatched tag: line 1, column 21\)\. run the "):
        LambdaView(make_session(aws.url, timing=FAST), REGION).bucket_region("deploy-bucket")
    assert len(aws.proxy.matching("GET", r"^/deploy-bucket$")) == FAST.max_attempts


def test_an_answer_without_a_needed_field_is_one_clear_line(aws: FakeAws) -> None:
    aws.create_function("orders")
    aws.proxy.rewrite("GET", r"/functions/orders$", lambda body: b'{"Code": {}}')
    with pytest.raises(AwsError) as info, config.speaking_to("deploy"):
        LambdaView(make_session(aws.url, timing=FAST), REGION).function("orders")
    assert str(info.value) == ("GetFunction for function orders in eu-west-1: AWS's answer has no Configuration. "
                               "run the deploy again; if it persists, check that --endpoint-url points at AWS Lambda")


def test_a_layer_version_that_is_gone_or_not_ours_to_read_is_none(aws: FakeAws) -> None:
    arn = aws.publish_layer("shared", description="theirs")
    view = LambdaView(make_session(aws.url, timing=FAST), REGION)
    found = view.layer_version(arn)
    assert found is not None and (found.arn, found.version, found.description) == (arn, 1, "theirs")
    assert view.layer_version(arn.replace(":shared:1", ":shared:2")) is None
    aws.proxy.respond("GET", r"shared/versions/1$", status=403, code="AccessDeniedException",
                      message="not authorized", times=100)
    assert view.layer_version(arn) is None
    assert [r.status for r in aws.proxy.matching("GET", r"shared/versions/\d$")] == [200, 404, 403]


def test_an_invoke_whose_payload_stops_coming_is_a_timeout(aws: FakeAws) -> None:
    """The answer's headers came, its payload never finishes: AwsTimeout within the time allowed, sent once."""
    done = threading.Event()
    posts: list[str] = []

    class Stalls(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"ok": ')
            self.wfile.flush()
            done.wait(10)

        def log_message(self, *args: Any) -> None:
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        writer = LambdaWriter(make_session(f"http://127.0.0.1:{server.server_address[1]}", timing=FAST), REGION)
        with pytest.raises(AwsTimeout, match=r"^Invoke for function orders:1 in eu-west-1: the connection failed"):
            writer.invoke("orders", "1", b"{}", timeout=0.3)
        assert posts == ["/2015-03-31/functions/orders/invocations?Qualifier=1"]
    finally:
        done.set()
        server.shutdown()
        server.server_close()


def test_missing_bucket_is_a_clear_error(aws: FakeAws, tmp_path: Path) -> None:
    with pytest.raises(AwsError, match=r"s3://nope/k was not found in eu-west-1"):
        upload_layer("nope", "k", artifacts(tmp_path, [])[""].path, REGION, aws.url)


# --- the minimal IAM policy ---------------------------------------------------------------------------------


def _policy_actions() -> list[str]:
    return [a for s in json.loads(POLICY.read_text())["Statement"] for a in s["Action"]]


def _deploys_with(aws: FakeAws, tmp_path: Path, bins: Path, monkeypatch: pytest.MonkeyPatch,
                  actions: list[str]) -> list[str]:
    """Sets up AWS, then deploys twice as an IAM user allowed only `actions`, as run 58 and then run 59 of a
    workflow, with the deployed-version check. Returns the errors.

    The two deploys between them make every call the tool can make: the first publishes and shares the layer,
    checks the bucket, uploads through S3, reads and writes the run tags, invokes the new version and creates an
    alias; the second reuses the layer (reading its policy), stops sharing it (no --layer-permission any more),
    looks for the newest published version and shifts the alias by canary while it watches an alarm.
    """
    # moto 5.2.5 signs a body-less Lambda GET over its own parsed headers (`data=self._body or self._data` in
    # moto/iam/access_control.py), so every signed GetFunction fails with SignatureDoesNotMatch. Only that
    # comparison is skipped: the access key must still exist, and moto still decides which actions it may call.
    from moto.iam.access_control import IAMRequestBase

    monkeypatch.setattr(IAMRequestBase, "check_signature", lambda self: None)
    # moto names CloudWatch's actions by the service's signing name ("monitoring:DescribeAlarms"); IAM policies
    # by its IAM prefix, "cloudwatch:". Only the name is corrected; moto still decides.
    checked_as = IAMRequestBase.__init__

    def aws_names(self: IAMRequestBase, *args: Any, **kwargs: Any) -> None:
        checked_as(self, *args, **kwargs)
        self._action = self._action.replace("monitoring:", "cloudwatch:", 1)
    monkeypatch.setattr(IAMRequestBase, "__init__", aws_names)
    set_moto_auth(aws.moto_url, enforced=False)
    iam = aws.client("iam")
    iam.create_user(UserName="deployer")
    iam.put_user_policy(UserName="deployer", PolicyName="go-arm-lambda", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    key = iam.create_access_key(UserName="deployer")["AccessKey"]
    # Lambda itself reads the function it runs for an Invoke, whatever the caller may do.
    iam.create_user(UserName="lambda-service")
    iam.put_user_policy(UserName="lambda-service", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}]}))
    service = iam.create_access_key(UserName="lambda-service")["AccessKey"]
    aws.invoker.sign_as(service["AccessKeyId"], service["SecretAccessKey"])
    aws.create_bucket("deploy-bucket")
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64", handler="orders")
    aws.set_alarm("orders-errors", "OK")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    options = {"publish": True, "alias": "live", "s3_bucket": "deploy-bucket", "check_deployed": True}
    deploys = [("v1", "answer", 58, {"layer_permissions": ["*"]}),
               ("v2", "envdump", 59, {"traffic": inputs.traffic("canary:50:0.2s", "--traffic"),
                                      "alarms": ("orders-errors",)})]
    # Then the alias moves without a build: live promoted to prod (checked again), and live rolled back.
    moves = [(command, config.load({"source": str(tmp_path), "functions": ["orders=./cmd/orders"],
                                    "regions": [REGION], "endpoint_url": aws.url, **given}, env={}, command=command))
             for command, given in (("promote", {"promote_from": "live", "to_alias": "prod", "check_deployed": True}),
                                    ("rollback", {"alias": "live"}))]
    errors: list[str] = []
    set_moto_auth(aws.moto_url, enforced=True)
    try:
        for version, binary, number, more in deploys:
            zips = runnable_artifacts(tmp_path / version, bins, {"orders": binary})
            run = DeployRun("shop/backend", "Deploy", number, f"{number:040d}", str(number))
            try:
                errors += deploy(aws.url, desired(zips, run=run, **options, **more)).all_errors()
            except UserError as exc:
                errors.append(str(exc))
            if errors:
                return errors
        for command, cfg in moves:
            errors += pipeline.move_aliases(cfg, command).report["errors"]
            if errors:
                return errors
    finally:
        set_moto_auth(aws.moto_url, enforced=False)
    return errors


def test_the_minimal_policy_is_enough(aws: FakeAws, tmp_path: Path, fixture_bins: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert _deploys_with(aws, tmp_path, fixture_bins, monkeypatch, _policy_actions()) == []
    lam = aws.client("lambda")
    assert [lam.get_alias(FunctionName="orders", Name=a)["FunctionVersion"] for a in ("live", "prod")] == ["1", "2"]
    assert aws.layer_statement_ids("go-arm-lambda-bootstrap", 1) == []  # shared by v1, no longer by v2
    # Every call the policy is for was made: the checks' invokes, the canary's routing, the alarm, the tags.
    assert [i.version for i in aws.invoker.invocations] == ["1", "2", "2"]
    assert any(r.operation == "DescribeAlarms" for r in aws.proxy.requests)
    weights = [(r.json().get("RoutingConfig") or {}).get("AdditionalVersionWeights")
               for r in aws.proxy.matching("PUT", r"/aliases/live$")]
    assert {"2": 0.5} in weights
    tags = aws.client("lambda").list_tags(Resource=aws.function("orders")["FunctionArn"])["Tags"]
    assert tags["go-arm-lambda:run-number"] == "59"


def test_each_action_in_the_policy_is_needed(aws: FakeAws, moto_server: str, tmp_path: Path, fixture_bins: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    actions = _policy_actions()
    checked = [a for a in actions if a not in NEEDED_ONLY_ON_AWS]
    assert len(checked) == len(actions) - len(NEEDED_ONLY_ON_AWS)
    for action in checked:
        reset_moto(moto_server)
        aws._role = None
        errors = _deploys_with(aws, tmp_path / action.replace(":", "-"), fixture_bins, monkeypatch,
                               [a for a in actions if a != action])
        assert errors, f"{action} is in the policy but the deploy works without it"
        assert f"access denied: {action} on " in errors[0], errors
        assert "grant it to the deploying role (see the minimal IAM policy in the README)" in errors[0], errors


def test_the_readme_shows_this_policy() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## The minimal IAM policy", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == json.loads(POLICY.read_text())
