"""Deploys against a real moto server over HTTP, through a recording, fault-injecting proxy."""

from __future__ import annotations

import dataclasses
import json
import re
import traceback
from collections import Counter
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

import pytest

from awsfakes import REGION, FakeArtifact, FakeAws, artifacts, by_name, deploy, desired, execute_plan, plan_for
from go_arm_lambda import pipeline
from go_arm_lambda.aws import make_session
from go_arm_lambda.config import Config
from go_arm_lambda.errors import AwsError, InternalError
from go_arm_lambda.execute import HANDLERS, execute, preview
from go_arm_lambda.lambda_api import LambdaWriter
from go_arm_lambda.steps import DeployRun, Step, layer_label

HANDLERS_BY_NAME = {kind.__name__: handler for kind, handler in HANDLERS.items()}

LAYER = "go-arm-lambda-bootstrap"
CONFIG = r"/functions/[^/]+/configuration$"
FUNCTION = r"/functions/[^/]+$"  # GET: GetFunction, what the planner reads and the waits poll
POLICY = rf"/layers/{LAYER}/versions/\d+/policy$"
TEMPLATE = Path(__file__).parents[1] / "layer" / "template.yaml"


def layers_of(aws: FakeAws, name: str) -> list[str]:
    return [layer["Arn"] for layer in aws.function(name).get("Layers") or ()]


def layer_reads(aws: FakeAws) -> Counter[str]:
    """GetLayerVersion requests by layer version ARN (the ones the planner makes for a function's layers)."""
    return Counter(re.sub(r"^.*/layers/(.*)/versions/(\d+)$", r"\1:\2", unquote(r.path))
                   for r in aws.proxy.matching("GET", r"/layers/arn[^/]*/versions/\d+$"))


def test_first_deploy_migrates_go1x_x86_and_provided_al2(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="go1.x", architecture="x86_64", handler="main")
    aws.create_function("users", runtime="provided.al2", architecture="arm64", handler="bootstrap")
    zips = artifacts(tmp_path, ["orders", "users"])

    result = deploy(aws.url, desired(zips))

    assert result.ok, result.all_errors()
    layer_arn = result.layer_arns[REGION]
    assert layer_arn == f"arn:aws:lambda:{REGION}:123456789012:layer:{LAYER}:1"
    assert result.layer_published == {REGION: True}
    for name in ("orders", "users"):
        config = aws.function(name)
        assert config["Runtime"] == "provided.al2023"
        assert config["Handler"] == name
        assert [layer["Arn"] for layer in config["Layers"]] == [layer_arn]
        assert config["CodeSha256"] == zips[name].code_sha256
        # Nothing else about the function was touched.
        assert (config["MemorySize"], config["Timeout"], config["Environment"]) == (256, 9,
                                                                                   {"Variables": {"KEEP": "me"}})
    # moto ignores Architectures on update_function_code: the request itself proves what AWS would get.
    code_requests = aws.proxy.matching("PUT", r"/functions/orders/code$")
    assert [r.json()["Architectures"] for r in code_requests] == [["arm64"]]
    for request in aws.proxy.matching("PUT", CONFIG):
        assert set(request.json()) <= {"Runtime", "Handler", "Layers", "RevisionId"}
    published = aws.proxy.matching("POST", rf"/layers/{LAYER}/versions$")[0].json()
    assert published["CompatibleArchitectures"] == ["arm64"]
    assert published["CompatibleRuntimes"] == ["provided.al2023"]
    assert zips[""].sha256 in published["Description"]
    report = by_name(result)
    assert report["orders"]["changes"] == ["code", "architecture: x86_64 -> arm64", "runtime: go1.x -> provided.al2023",
                                           "handler: main -> orders", f"layers: [] -> [{LAYER}:1]"]
    assert report["users"]["status"] == "updated" and report["users"]["changed"] is True
    assert {(f["runtime"], f["architecture"]) for f in report.values()} == {("provided.al2023", "arm64")}
    assert result.mutating_calls == len(aws.proxy.mutating()) == 5


def test_redeploy_with_nothing_changed_makes_no_mutating_call(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2", architecture="arm64")
    aws.create_function("users", runtime="provided.al2023", architecture="arm64")
    zips = artifacts(tmp_path, ["orders", "users"])
    want = desired(zips, publish=True, alias="live")
    assert deploy(aws.url, want).ok
    aws.proxy.clear()

    again = deploy(aws.url, want)

    assert again.ok
    assert aws.proxy.requests, "the planner must have read AWS"
    assert aws.proxy.mutating() == [] and again.mutating_calls == 0
    assert {f.status for f in again.functions} == {"unchanged"}
    assert {(f.version, f.alias) for f in again.functions} == {("1", "live")}
    assert again.plan == [{"action": "reuse-layer", "target": LAYER, "region": REGION,
                           "detail": f"{again.layer_arns[REGION]} has the same CodeSha256"}]


def test_code_only_change_updates_only_the_code_and_reuses_the_layer(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    assert deploy(aws.url, desired(artifacts(tmp_path / "a", ["orders"]))).ok
    aws.proxy.clear()

    result = deploy(aws.url, desired(artifacts(tmp_path / "b", ["orders"], version="v2")))

    assert [(r.method, r.path) for r in aws.proxy.mutating()] == [("PUT", "/2015-03-31/functions/orders/code")]
    assert by_name(result)["orders"]["changes"] == ["code"]
    assert result.layer_published == {REGION: False}
    assert [s["action"] for s in result.plan] == ["reuse-layer", "update-code"]


def test_foreign_layers_kept_in_order_and_ours_replaced(aws: FakeAws, tmp_path: Path) -> None:
    first = aws.publish_layer("first")
    old_ours = aws.publish_layer(LAYER, content=b"an old bootstrap", description="go-arm-lambda 0.0.9 bootstrap")
    last = aws.publish_layer("last")
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64", layers=(first, old_ours, last))

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert result.ok
    new_ours = result.layer_arns[REGION]
    assert new_ours.endswith(f":{LAYER}:2")
    assert [layer["Arn"] for layer in aws.function("orders")["Layers"]] == [first, new_ours, last]


def test_bootstrap_mode_publishes_no_layer_and_takes_ours_off(aws: FakeAws, tmp_path: Path) -> None:
    foreign = aws.publish_layer("foreign")
    ours = aws.publish_layer(LAYER)
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64", handler="orders",
                        layers=(ours, foreign))

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"]), mode="bootstrap"))

    assert result.ok and result.to_report()["layer"] is None
    assert aws.proxy.matching("POST", r"/layers/") == []
    config = aws.function("orders")
    assert config["Handler"] == "bootstrap"
    assert [layer["Arn"] for layer in config["Layers"]] == [foreign]


def test_our_layer_is_recognised_under_any_layer_name(aws: FakeAws, tmp_path: Path) -> None:
    foreign = aws.publish_layer("foreign")
    for name in ("orders", "users"):
        aws.create_function(name, runtime="provided.al2023", architecture="arm64", handler=name, layers=(foreign,))
    zips = artifacts(tmp_path, ["orders", "users"])
    old = deploy(aws.url, desired(zips, layer_name="team-bootstrap")).layer_arns[REGION]
    assert [layers_of(aws, name) for name in ("orders", "users")] == [[foreign, old]] * 2
    aws.proxy.clear()

    renamed = deploy(aws.url, desired(zips, layer_name="team-bootstrap-v2"))

    assert renamed.ok, renamed.all_errors()
    new = renamed.layer_arns[REGION]
    assert layer_label(new) == "team-bootstrap-v2:1"
    # The old version is ours by what it is (its description), so it is replaced, not kept as a sixth slot.
    assert [layers_of(aws, name) for name in ("orders", "users")] == [[foreign, new]] * 2
    assert by_name(renamed)["orders"]["changes"] == [
        "layers: [foreign:1, team-bootstrap:1] -> [foreign:1, team-bootstrap-v2:1]"]
    # One read per distinct layer version, however many functions use it; the foreign layer is only read.
    assert layer_reads(aws) == {foreign: 1, old: 1}
    assert [r.path for r in aws.proxy.mutating() if "foreign" in unquote(r.path)] == []
    aws.proxy.clear()

    again = deploy(aws.url, desired(zips, layer_name="team-bootstrap-v2"))

    assert aws.proxy.mutating() == [] and again.mutating_calls == 0
    assert {f.status for f in again.functions} == {"unchanged"}
    assert layer_reads(aws) == {foreign: 1}  # the version of --layer-name is ours by its name alone

    # Bootstrap mode with the default --layer-name still takes team-bootstrap-v2 off.
    boot = deploy(aws.url, desired(zips, mode="bootstrap"))

    assert boot.ok, boot.all_errors()
    assert [layers_of(aws, name) for name in ("orders", "users")] == [[foreign]] * 2
    assert aws.proxy.matching("POST", r"/layers/") == []


def test_our_layer_is_recognised_by_content_and_template_description(aws: FakeAws, tmp_path: Path) -> None:
    zips = artifacts(tmp_path, ["orders"])
    # The way layer/template.yaml describes the versions it publishes.
    described = re.search(r'Description: "(go-arm-lambda bootstrap[^"]*)"', TEMPLATE.read_text())
    assert described, "layer/template.yaml must describe its layer version as ours"
    from_template = aws.publish_layer("cfn-bootstrap", content=b"an older bootstrap",
                                      description=described.group(1))
    # The very bootstrap this deploy ships, published by hand without a description.
    same_content = aws.publish_layer("copied", zip_file=zips[""].path.read_bytes())
    foreign = aws.publish_layer("foreign")
    lookalike = aws.publish_layer("tools", description="go-arm-lambda-tools helpers (not a bootstrap)")
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64", handler="orders",
                        layers=(from_template, foreign, same_content, lookalike))

    result = deploy(aws.url, desired(zips))

    assert result.ok, result.all_errors()
    # Ours replaced in place by the new version, the extra copy removed, the others kept in order.
    assert layers_of(aws, "orders") == [result.layer_arns[REGION], foreign, lookalike]
    assert layer_reads(aws) == dict.fromkeys((from_template, same_content, foreign, lookalike), 1)


def test_a_layer_we_may_not_read_is_foreign_and_kept(aws: FakeAws, tmp_path: Path) -> None:
    shared = aws.publish_layer("shared")
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64", handler="orders",
                        layers=(shared,))
    # What another account's layer answers when its owner lets us use it but not read it.
    aws.proxy.respond("GET", r"shared/versions/1$", status=403, code="AccessDeniedException",
                      message="User is not authorized to perform: lambda:GetLayerVersion", times=100)

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert result.ok, result.all_errors()
    assert layers_of(aws, "orders") == [shared, result.layer_arns[REGION]]
    assert [r.status for r in aws.proxy.matching("GET", r"shared/versions/1$")] == [403]  # asked once


def test_two_regions(aws: FakeAws, tmp_path: Path) -> None:
    for region in (REGION, "us-east-1"):
        aws.create_function("orders", region=region)

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"]), regions=(REGION, "us-east-1")))

    assert result.ok
    assert sorted(result.layer_arns) == [REGION, "us-east-1"]
    for region in (REGION, "us-east-1"):
        assert result.layer_arns[region].startswith(f"arn:aws:lambda:{region}:")
        config = aws.function("orders", region)
        assert config["Runtime"] == "provided.al2023"
        assert [layer["Arn"] for layer in config["Layers"]] == [result.layer_arns[region]]
    assert sorted(f.region for f in result.functions) == [REGION, "us-east-1"]


def test_publish_and_alias_created_then_moved(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    first = deploy(aws.url, desired(artifacts(tmp_path / "a", ["orders"]), publish=True, alias="live",
                                    commit="abc123"))
    assert (first.functions[0].version, first.functions[0].alias) == ("1", "live")
    assert aws.client("lambda").get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "1"
    assert aws.function("orders", qualifier="1")["Description"] == "abc123"

    second = deploy(aws.url, desired(artifacts(tmp_path / "b", ["orders"], version="v2"), publish=True,
                                     alias="live", commit="def456"))

    assert [s["action"] for s in second.plan] == ["reuse-layer", "update-code", "publish-version", "update-alias"]
    assert second.functions[0].version == "2"
    assert aws.client("lambda").get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "2"


def test_s3_bucket_sends_code_and_layer_through_s3(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_bucket("deploy-bucket")
    aws.create_function("orders")
    zips = artifacts(tmp_path, ["orders"])

    result = deploy(aws.url, desired(zips, s3_bucket="deploy-bucket", s3_prefix="ci/"))

    assert result.ok
    puts = [r.path for r in aws.proxy.mutating() if r.method == "PUT" and "/2015-03-31/" not in r.path]
    assert sorted(puts) == sorted([f"/deploy-bucket/ci/layers/{LAYER}/{zips[''].sha256}.zip",
                                   f"/deploy-bucket/ci/functions/orders/{zips['orders'].sha256}.zip"])
    code = aws.proxy.matching("PUT", r"/functions/orders/code$")[0].json()
    assert "ZipFile" not in code and code["S3Bucket"] == "deploy-bucket"
    assert aws.function("orders")["CodeSha256"] == zips["orders"].code_sha256


def test_dry_run_writes_nothing_and_shows_the_plan_the_executor_runs(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    want = desired(artifacts(tmp_path, ["orders"]), publish=True, alias="live")

    dry = preview(plan_for(aws.url, want))

    assert aws.proxy.mutating() == []
    assert dry.dry_run and dry.mutating_calls == 0
    assert dry.functions[0].status == "planned" and dry.layer_published == {REGION: True}
    # No layer version exists yet, so there is no ARN to show; the runtime is the one planned.
    assert dry.to_report()["layer"]["arns"] == {}
    assert (dry.functions[0].runtime, dry.functions[0].architecture) == ("provided.al2023", "arm64")
    # A deploy planned afresh from the same AWS state runs exactly the plan the dry run showed.
    session = make_session(aws.url)
    real = execute(plan_for(aws.url, want), {REGION: LambdaWriter(session, REGION)})
    assert real.ok and real.plan == dry.plan
    kinds = [s["action"] for s in dry.plan]
    assert kinds == ["publish-layer", "update-code", "update-config", "publish-version", "create-alias"]
    assert [(r.method, r.path.split("/")[-1]) for r in aws.proxy.mutating()] == [
        ("POST", "versions"), ("PUT", "code"), ("PUT", "configuration"), ("POST", "versions"), ("POST", "aliases")]


def test_dry_run_and_deploy_visit_the_same_steps_in_the_same_order(aws: FakeAws, tmp_path: Path) -> None:
    for region in (REGION, "us-east-1"):
        aws.create_bucket(f"deploy-{region}", region)
        for name in ("orders", "users"):
            aws.create_function(name, region=region)
    want = desired(artifacts(tmp_path, ["orders", "users"]), regions=(REGION, "us-east-1"), publish=True,
                   alias="live", layer_permissions=["111122223333"], s3_bucket="deploy-{region}",
                   run=DeployRun("shop/backend", "Deploy", 7, "c" * 40, "1"))
    plan = plan_for(aws.url, want)

    dry = preview(plan)
    real = deploy(aws.url, want)

    assert aws.proxy.mutating(), "the deploy wrote"
    # Both walked every step through the one dispatch, region by region, layer first: steps of every kind but
    # the two a first deploy cannot have (reusing a layer version, revoking a grant on one) and the rollout's,
    # which need functions that run (test_rollout.py).
    assert {type(s).__name__ for s in dry.steps_done} == set(HANDLERS_BY_NAME) - {
        "ReuseLayer", "RemoveLayerPermission", "CheckVersion", "ShiftTraffic"}
    assert dry.steps_done == real.steps_done == plan.steps()
    assert dry.plan == real.plan == plan.describe()
    assert [(f.name, f.region, f.status) for f in dry.functions] == [
        (f.name, f.region, "planned") for f in real.functions]
    # What the dry run says each function ends as is what the deploy left.
    assert [(f.code_sha256, f.runtime, f.architecture, f.alias) for f in dry.functions] == [
        (f.code_sha256, f.runtime, f.architecture, f.alias) for f in real.functions]


def test_a_step_without_a_handler_fails_before_any_write(aws: FakeAws, tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class ShiftTraffic(Step):
        action: ClassVar[str] = "shift-traffic"

    aws.create_function("orders")
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders"])))
    region = plan.regions[0]
    function = dataclasses.replace(region.functions[0],
                                   steps=(*region.functions[0].steps, ShiftTraffic(REGION, "orders")))
    odd = dataclasses.replace(plan, regions=(dataclasses.replace(region, functions=(function,)),))

    for run in (preview, lambda p: execute(p, {REGION: LambdaWriter(make_session(aws.url), REGION)})):
        with pytest.raises(InternalError, match="no handler for step type ShiftTraffic") as info:
            run(odd)
        assert "go-arm-lambda bug" in info.value.fix
    assert aws.proxy.mutating() == []


def test_layer_permissions_added_once(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    zips = artifacts(tmp_path, ["orders"])
    want = desired(zips, layer_permissions=["111122223333", "org:o-abcdefghij"])
    assert deploy(aws.url, want).ok
    assert aws.layer_statement_ids(LAYER, 1) == ["go-arm-lambda-111122223333", "go-arm-lambda-o-abcdefghij"]
    # An organization is shared with as AWS wants it: every principal, limited by OrganizationId.
    assert [r.json() for r in aws.proxy.matching("POST", POLICY)] == [
        {"StatementId": "go-arm-lambda-111122223333", "Action": "lambda:GetLayerVersion",
         "Principal": "111122223333"},
        {"StatementId": "go-arm-lambda-o-abcdefghij", "Action": "lambda:GetLayerVersion", "Principal": "*",
         "OrganizationId": "o-abcdefghij"}]
    aws.proxy.clear()

    assert deploy(aws.url, want).ok

    assert aws.proxy.mutating() == []


def test_layer_permissions_follow_the_flags_exactly(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    zips = artifacts(tmp_path, ["orders"])
    assert deploy(aws.url, desired(zips, layer_permissions=["*", "org:o-abc123defg"])).ok
    # Shared by hand as well: a statement that is not ours, never touched.
    aws.client("lambda").add_layer_version_permission(
        LayerName=LAYER, VersionNumber=1, StatementId="team-share", Action="lambda:GetLayerVersion",
        Principal="444455556666")
    aws.proxy.clear()

    added = deploy(aws.url, desired(zips, layer_permissions=["*", "org:o-abc123defg", "111122223333"]))

    assert [(r.method, r.json()["StatementId"]) for r in aws.proxy.mutating()] == [
        ("POST", "go-arm-lambda-111122223333")]
    assert [s["action"] for s in added.plan] == ["reuse-layer", "add-layer-permission"]
    # Not "unchanged": no version was published, but the one in use is shared with one more account.
    layer = added.to_report()["layer"]
    assert (layer["published"], layer["changes"]) == ({REGION: False}, {REGION: ["permission added: 111122223333"]})
    aws.proxy.clear()

    revoked = deploy(aws.url, desired(zips))

    assert revoked.ok, revoked.all_errors()
    assert aws.layer_statement_ids(LAYER, 1) == ["team-share"]
    assert [(r.method, r.path.rsplit("/", 1)[1]) for r in aws.proxy.mutating()] == [
        ("DELETE", "go-arm-lambda-111122223333"), ("DELETE", "go-arm-lambda-o-abc123defg"),
        ("DELETE", "go-arm-lambda-public")]
    assert revoked.mutating_calls == 3
    assert [s["action"] for s in revoked.plan] == ["reuse-layer"] + ["remove-layer-permission"] * 3
    assert revoked.to_report()["layer"]["changes"] == {REGION: [
        "permission removed: 111122223333", "permission removed: org:o-abc123defg", "permission removed: *"]}
    aws.proxy.clear()

    again = deploy(aws.url, desired(zips))

    assert aws.proxy.mutating() == [] and again.mutating_calls == 0
    assert again.to_report()["layer"]["changes"] == {REGION: []}


def test_moving_a_grant_adds_the_new_one_before_revoking_the_old(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    zips = artifacts(tmp_path, ["orders"])
    assert deploy(aws.url, desired(zips, layer_permissions=["*"])).ok
    aws.proxy.clear()
    want = desired(zips, layer_permissions=["arn:aws:iam::111122223333:root"])

    dry = preview(plan_for(aws.url, want))

    assert aws.proxy.mutating() == []
    layer_arn = dry.layer_arns[REGION]
    assert [(s["action"], s["detail"]) for s in dry.plan[1:]] == [
        ("add-layer-permission", f"lambda:GetLayerVersion on {layer_arn} for principal "
                                 "arn:aws:iam::111122223333:root (statement go-arm-lambda-111122223333)"),
        ("remove-layer-permission", f"lambda:GetLayerVersion on {layer_arn} no longer for * "
                                    "(statement go-arm-lambda-public, no --layer-permission asks for it)")]
    assert dry.to_report()["layer"]["changes"] == {REGION: ["permission added: 111122223333",
                                                            "permission removed: *"]}

    real = deploy(aws.url, want)

    assert real.ok and real.plan == dry.plan
    assert [r.method for r in aws.proxy.mutating()] == ["POST", "DELETE"]
    assert aws.layer_statement_ids(LAYER, 1) == ["go-arm-lambda-111122223333"]


def test_a_new_layer_version_gets_only_the_grants_asked_for(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    assert deploy(aws.url, desired(artifacts(tmp_path / "a", ["orders"]), layer_permissions=["*"])).ok
    aws.proxy.clear()
    zips = artifacts(tmp_path / "b", ["orders"])
    zips[""] = FakeArtifact.write(tmp_path / "layer-v2.zip", {"bootstrap": b"#!/bin/sh\nexec true\n"})

    result = deploy(aws.url, desired(zips, layer_permissions=["111122223333"]))

    # Version 2 starts with an empty policy: nothing to revoke there, and version 1 is no longer in use.
    assert [s["action"] for s in result.plan] == ["publish-layer", "add-layer-permission", "update-config"]
    assert aws.layer_statement_ids(LAYER, 2) == ["go-arm-lambda-111122223333"]
    assert result.to_report()["layer"]["changes"] == {REGION: ["permission added: 111122223333"]}


def test_one_principal_named_twice_is_shared_once(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    want = desired(artifacts(tmp_path, ["orders"]),
                   layer_permissions=["111122223333", "arn:aws:iam::111122223333:root", "111122223333"])

    result = deploy(aws.url, want)

    assert result.ok, result.all_errors()
    assert [s["action"] for s in result.plan].count("add-layer-permission") == 1
    assert [(r.json()["Principal"], r.status) for r in aws.proxy.matching("POST", POLICY)] == [("111122223333", 200)]


def test_publish_without_alias_publishes_only_what_changed(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    want = desired(artifacts(tmp_path / "a", ["orders"]), publish=True)
    assert deploy(aws.url, want).functions[0].version == "1"
    aws.proxy.clear()

    again = deploy(aws.url, want)

    assert aws.proxy.mutating() == [] and again.mutating_calls == 0
    assert (again.functions[0].status, again.functions[0].version) == ("unchanged", "1")
    changed = deploy(aws.url, desired(artifacts(tmp_path / "b", ["orders"], version="v2"), publish=True))
    assert [s["action"] for s in changed.plan] == ["reuse-layer", "update-code", "publish-version"]
    assert changed.functions[0].version == "2"
    versions = aws.client("lambda").list_versions_by_function(FunctionName="orders")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]


def test_alias_moves_to_an_identical_published_version_without_publishing(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    want = desired(artifacts(tmp_path, ["orders"]), publish=True)
    assert deploy(aws.url, want).ok  # version 1, no alias yet
    aws.proxy.clear()

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"]), publish=True, alias="live"))

    assert [s["action"] for s in result.plan] == ["reuse-layer", "create-alias"]
    assert result.plan[1]["detail"] == "live to version 1"
    assert [(r.method, r.path.split("/")[-1]) for r in aws.proxy.mutating()] == [("POST", "aliases")]
    assert (result.functions[0].version, result.functions[0].alias) == ("1", "live")
    assert aws.client("lambda").get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "1"


# --- faults moto cannot produce, injected by the proxy ------------------------------------------------------


def test_conflict_on_config_update_is_retried(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.respond("PUT", CONFIG, status=409, code="ResourceConflictException",
                      message="The operation cannot be performed at this time. An update is in progress")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert result.ok
    assert [r.status for r in aws.proxy.matching("PUT", CONFIG)] == [409, 200]
    assert aws.function("orders")["Runtime"] == "provided.al2023"


def test_throttling_and_server_errors_are_retried(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.respond("PUT", r"/code$", status=429, code="TooManyRequestsException", message="Rate exceeded")
    aws.proxy.respond("POST", r"/layers/", status=500, code="ServiceException", message="internal")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert result.ok
    assert [r.status for r in aws.proxy.matching("PUT", r"/code$")] == [429, 200]
    assert [r.status for r in aws.proxy.matching("POST", r"/layers/")] == [500, 201]


def test_a_conflict_that_waiting_cannot_clear_is_not_retried(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.respond("POST", POLICY, status=409, code="ResourceConflictException",
                      message="The statement id (go-arm-lambda-public) provided already exists", times=100)

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"]), layer_permissions=["*"]))

    # Asked once: the statement is there (its id names the principal), so the layer is shared as wanted.
    assert len(aws.proxy.matching("POST", POLICY)) == 1
    assert result.ok, result.all_errors()
    assert by_name(result)["orders"]["status"] == "updated"


def test_a_revoke_whose_answer_was_lost_is_done(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    zips = artifacts(tmp_path, ["orders"])
    assert deploy(aws.url, desired(zips, layer_permissions=["*"])).ok
    aws.proxy.lose_answer("DELETE", r"/policy/go-arm-lambda-public$")

    result = deploy(aws.url, desired(zips))

    assert result.ok, result.all_errors()
    # Removed, but the answer never came; the retry finds it gone, which is what was wanted.
    assert [r.status for r in aws.proxy.matching("DELETE", r"/policy/")] == [None, 404]
    assert aws.layer_statement_ids(LAYER, 1) == []
    assert result.to_report()["layer"]["changes"] == {REGION: ["permission removed: *"]}


def test_create_alias_whose_answer_was_lost_still_points_the_alias(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")
    aws.proxy.lose_answer("POST", r"/functions/orders/aliases$")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"]), publish=True, alias="live"))

    assert result.ok, result.all_errors()
    # Created, but the answer never came; the retry then conflicts, and the alias is found as asked: the lost
    # attempt was ours, so nothing more is written (an alias someone else made would not be taken over).
    assert [r.status for r in aws.proxy.matching("POST", r"/aliases$")] == [None, 409]
    assert len(aws.proxy.matching("GET", r"/aliases/live$")) == 2  # the plan's read; the one that found it
    assert aws.proxy.matching("PUT", r"/aliases/live$") == []
    assert aws.client("lambda").get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "1"
    assert (result.functions[0].version, result.functions[0].alias) == ("1", "live")


def test_retries_are_bounded(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.respond("PUT", r"/code$", status=429, code="TooManyRequestsException", message="Rate exceeded",
                      times=100)

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert not result.ok
    assert len(aws.proxy.matching("PUT", r"/code$")) == 5  # FAST.max_throttled
    assert "TooManyRequestsException" in result.functions[0].error


def test_connection_reset_mid_deploy_is_retried(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.create_function("users")
    aws.proxy.reset("PUT", r"/functions/users/code$")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders", "users"])))

    assert result.ok, result.all_errors()
    assert [r.status for r in aws.proxy.matching("PUT", r"/functions/users/code$")] == [None, 200]
    assert aws.function("users")["CodeSha256"] == result.functions[1].code_sha256


def _status(status: str, reason: str = "") -> object:
    """Rewrites a GetFunction answer's LastUpdateStatus."""
    def rewrite(body: bytes) -> bytes:
        answer = json.loads(body)
        answer["Configuration"]["LastUpdateStatus"] = status
        if reason:
            answer["Configuration"]["LastUpdateStatusReason"] = reason
        return json.dumps(answer).encode()
    return rewrite


def test_waits_while_the_update_is_in_progress(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders"])))
    aws.proxy.clear()
    aws.proxy.rewrite("GET", FUNCTION, _status("InProgress"), times=2)  # type: ignore[arg-type]

    result = execute_plan(aws.url, plan)

    assert result.ok
    polls = aws.proxy.matching("GET", FUNCTION)
    assert [r.fault for r in polls] == ["rewrite", "rewrite", None, None]  # two after the code, one after config
    # The configuration update waited until the code update had finished.
    order = [(r.method, r.fault) for r in aws.proxy.requests if r.method == "PUT" or r.fault]
    assert order[:3] == [("PUT", None), ("GET", "rewrite"), ("GET", "rewrite")]
    # Polled with GetFunction, which has a quota of its own, not with GetFunctionConfiguration: that would
    # spend the control plane's, which the updates need.
    assert aws.proxy.matching("GET", CONFIG) == []


def test_waits_for_an_update_already_in_progress_before_writing(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    # What the planner reads, and the first poll: still busy.
    aws.proxy.rewrite("GET", FUNCTION, _status("InProgress"), times=2)  # type: ignore[arg-type]

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert result.ok, result.all_errors()
    function_calls = [(r.method, r.path.split("/")[-1], r.fault) for r in aws.proxy.requests
                      if "/functions/orders" in r.path]
    assert function_calls[:4] == [("GET", "orders", "rewrite"), ("GET", "orders", "rewrite"),
                                  ("GET", "orders", None), ("PUT", "code", None)]
    assert [r.status for r in aws.proxy.matching("PUT", r"/functions/orders/")] == [200, 200]


def test_failed_update_stops_that_function_only(aws: FakeAws, tmp_path: Path) -> None:
    for name in ("orders", "users", "admin"):
        aws.create_function(name)
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders", "users", "admin"])))
    aws.proxy.rewrite("GET", r"/functions/users$",
                      _status("Failed", "The runtime provided.al2023 is not supported here"))  # type: ignore[arg-type]

    result = execute_plan(aws.url, plan)

    assert not result.ok
    report = by_name(result)
    assert report["users"]["status"] == "failed"
    assert "The runtime provided.al2023 is not supported here" in report["users"]["error"]
    assert report["orders"]["status"] == report["admin"]["status"] == "updated"
    # users stopped after the failed code update: its configuration was never sent.
    assert aws.proxy.matching("PUT", r"/functions/users/configuration$") == []
    assert aws.function("admin")["Runtime"] == "provided.al2023"
    assert result.all_errors() == [f"users ({REGION}): {report['users']['error']}"]
    # Its failed step and the one after it did not go through; the exception stays for --debug.
    assert [(s.action, s.target) for s in result.steps_done] == [("publish-layer", LAYER)] + [
        (action, name) for name in ("orders", "admin") for action in ("update-code", "update-config")]
    [failure] = result.exceptions
    assert str(failure) == report["users"]["error"]
    assert failure.__notes__ == [f"in step update-code of users in {REGION}"]
    # The report states users as it is: its code update failed, so it is still go1.x on x86_64.
    assert (report["users"]["runtime"], report["users"]["architecture"]) == ("go1.x", "x86_64")


def test_layer_failure_leaves_the_regions_functions_not_touched(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.respond("POST", r"/layers/", status=400, code="InvalidParameterValueException",
                      message="Layer description too long")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert not result.ok
    assert result.functions[0].status == "not-touched"
    assert "Layer description too long" in result.errors[0]
    assert aws.proxy.matching("PUT", r"/functions/") == []
    report = result.to_report()
    # Nothing was published and the function is as it was: the report must not say otherwise.
    assert report["layer"] == {"name": LAYER, "arns": {}, "published": {REGION: False}, "changes": {REGION: []}}
    assert (report["functions"][0]["runtime"], report["functions"][0]["architecture"]) == ("go1.x", "x86_64")


def test_an_unreadable_answer_fails_only_that_function(aws: FakeAws, tmp_path: Path) -> None:
    for name in ("orders", "users", "admin"):
        aws.create_function(name)
    # A gateway's error page with status 200 in place of users' UpdateFunctionCode answer.
    aws.proxy.rewrite("PUT", r"/functions/users/code$", lambda body: b"<html>bad gateway</html>")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders", "users", "admin"])))

    report = by_name(result)
    assert report["users"]["status"] == "failed"
    assert report["users"]["error"].startswith(
        f"UpdateFunctionCode for function users in {REGION}: AWS's answer has no FunctionName. run the deploy again")
    assert report["orders"]["status"] == report["admin"]["status"] == "updated"
    assert aws.function("admin")["Runtime"] == "provided.al2023"
    assert aws.proxy.matching("PUT", r"/functions/users/configuration$") == []


def test_an_unexpected_error_fails_only_that_function(aws: FakeAws, tmp_path: Path) -> None:
    for name in ("orders", "users"):
        aws.create_function(name)

    def odd(body: bytes) -> bytes:
        answer = json.loads(body)
        answer["Configuration"]["Architectures"] = 64
        return json.dumps(answer).encode()
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders", "users"])))
    aws.proxy.rewrite("GET", r"/functions/users$", odd)

    result = execute_plan(aws.url, plan)

    report = by_name(result)
    assert report["users"]["status"] == "failed"
    assert report["users"]["error"].startswith("unexpected TypeError: ")
    assert "run the deploy again, and report it if it persists" in report["users"]["error"]
    assert report["orders"]["status"] == "updated"
    # The exception itself, with its traceback through the step's handler down to where it was raised, for --debug.
    [failure] = result.exceptions
    assert isinstance(failure, TypeError)
    frames = [(Path(f.filename).name, f.name) for f in traceback.extract_tb(failure.__traceback__)]
    assert ("execute.py", "_update_code") in frames and ("lambda_api.py", "wait_updated") in frames
    assert frames[-1][0] == "parsers.py"  # botocore met the odd answer


def test_an_unexpected_layer_error_leaves_the_region_not_touched(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")

    def odd(body: bytes) -> bytes:
        return json.dumps(json.loads(body) | {"Version": "latest"}).encode()
    aws.proxy.rewrite("POST", rf"/layers/{LAYER}/versions$", odd)

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert result.errors[0].startswith(f"layer {LAYER} ({REGION}): unexpected ValueError: ")
    assert result.functions[0].status == "not-touched"
    assert result.to_report()["layer"]["published"] == {REGION: False}
    assert [type(e) for e in result.exceptions] == [ValueError] and result.steps_done == []


def test_changes_name_the_layer_version_that_was_published(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="go1.x", handler="orders")
    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))
    layers = [c for c in result.functions[0].changes if c.startswith("layers:")]
    assert layers == ["layers: [] -> [go-arm-lambda-bootstrap:1]"]


def test_the_job_result_keeps_the_exception_of_a_failed_step(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.respond("POST", r"/layers/", status=400, code="InvalidParameterValueException",
                      message="Layer description too long")
    cfg = Config(source=tmp_path, regions=(REGION,), endpoint_url=aws.url)

    job = pipeline.deploy_built(cfg, pipeline.BuildOutput(layer=artifacts(tmp_path, [])[""]))  # type: ignore[arg-type]

    assert not job.ok and job.error is None  # the job went on to its report; the step failed
    [failure] = job.step_errors
    assert isinstance(failure, AwsError) and "Layer description too long" in str(failure)
    assert failure.__notes__ == [f"in step publish-layer of {LAYER} in {REGION}"]
    assert job.report["errors"] == [f"layer {LAYER} ({REGION}): {failure}"]


def test_a_grant_failing_after_the_publish_still_reports_the_published_version(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.respond("POST", POLICY, status=400, code="InvalidParameterValueException", message="bad principal")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"]), layer_permissions=["111122223333"]))

    assert not result.ok and result.functions[0].status == "not-touched"
    # The version exists in AWS, so the report names it; the grant that failed is no change.
    layer = result.to_report()["layer"]
    assert layer["arns"] == {REGION: f"arn:aws:lambda:{REGION}:123456789012:layer:{LAYER}:1"}
    assert (layer["published"], layer["changes"]) == ({REGION: True}, {REGION: []})
    assert [s.action for s in result.steps_done] == ["publish-layer"]
