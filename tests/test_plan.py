"""Planning: everything is checked before the first write, and the plan says exactly what will change."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import unquote

import pytest

from awsfakes import REGION, FakeAws, artifacts, desired, plan_for
from go_arm_lambda import config, limits
from go_arm_lambda.config import FunctionSpec
from go_arm_lambda.errors import PackageError, UsageError
from go_arm_lambda.plan import is_our_layer, merge_layers
from go_arm_lambda.steps import LayerState, PendingLayer

LAYER = "go-arm-lambda-bootstrap"
OURS_V1 = f"arn:aws:lambda:{REGION}:123456789012:layer:{LAYER}:1"
FOREIGN = f"arn:aws:lambda:{REGION}:999999999999:layer:datadog:7"
OURS_OTHER_NAME = f"arn:aws:lambda:{REGION}:123456789012:layer:team-bootstrap:4"


def refused(aws: FakeAws, want: object, match: str) -> UsageError:
    with pytest.raises(UsageError, match=match) as info:
        plan_for(aws.url, want)  # type: ignore[arg-type]
    assert aws.proxy.mutating() == [], "nothing may be written when the plan is refused"
    return info.value


def test_merge_layers_keeps_order_and_replaces_ours() -> None:
    new = PendingLayer(LAYER)
    assert merge_layers([FOREIGN, OURS_V1], {OURS_V1}, new) == (FOREIGN, new)
    assert merge_layers([OURS_V1, FOREIGN], {OURS_V1}, new) == (new, FOREIGN)
    assert merge_layers([FOREIGN], set(), new) == (FOREIGN, new)
    assert merge_layers([OURS_V1, FOREIGN], {OURS_V1}, None) == (FOREIGN,)
    # Ours under another name: the first replaced in place, every other copy taken off (bootstrap mode: all).
    assert merge_layers([OURS_OTHER_NAME, FOREIGN, OURS_V1], {OURS_V1, OURS_OTHER_NAME}, new) == (new, FOREIGN)
    assert merge_layers([OURS_OTHER_NAME, FOREIGN, OURS_V1], {OURS_V1, OURS_OTHER_NAME}, None) == (FOREIGN,)


@pytest.mark.parametrize(("description", "code_sha256", "ours"), [
    ("go-arm-lambda 0.1.0 bootstrap, sha256 " + "ab" * 32, "other", True),  # layer_description()
    ("go-arm-lambda  bootstrap, sha256 " + "ab" * 32, "other", True),  # a build without a version
    ("go-arm-lambda bootstrap: execs $LAMBDA_TASK_ROOT/$_HANDLER (Go, arm64)", "other", True),  # the template
    ("", "shipped", True),  # the very bootstrap this deploy ships
    ("", "other", False),
    ("go-arm-lambda-tools 2.0 bootstrap helpers", "other", False),
    ("built with go-arm-lambda 0.1.0 bootstrap", "other", False),
    ("go-arm-lambda 0.1.0 bootstrapper", "other", False),
])
def test_our_layer_versions_are_known_by_what_they_are(description: str, code_sha256: str, ours: bool) -> None:
    layer = LayerState(FOREIGN, 7, code_sha256, ("provided.al2023",), ("arm64",), description)
    assert is_our_layer(layer, "shipped") is ours
    assert is_our_layer(layer, None) is (ours and code_sha256 != "shipped")  # bootstrap mode ships no layer


def test_layer_versions_are_read_once_each_alongside_the_other_reads(aws: FakeAws, tmp_path: Path) -> None:
    shared, other = aws.publish_layer("shared"), aws.publish_layer("other")
    for name in ("orders", "users", "admin"):
        aws.create_function(name, runtime="provided.al2023", architecture="arm64",
                            layers=(shared, other) if name == "admin" else (shared,))
    aws.proxy.latency = 0.2  # every read takes long enough for the others to start meanwhile

    plan_for(aws.url, desired(artifacts(tmp_path, ["orders", "users", "admin"]), publish=True))

    layer_reads = aws.proxy.matching("GET", r"/layers/arn[^/]*/versions/1$")
    assert sorted(unquote(r.path).split(":")[-1] for r in layer_reads) == ["other/versions/1", "shared/versions/1"]
    # Started while the functions' versions were being listed, not in a round of their own after all else.
    others = aws.proxy.matching("GET", r"/functions/[^/]+/versions$")
    assert len(others) == 3
    assert all(any(o.started < r.finished and r.started < o.finished for o in others) for r in layer_reads)


def test_too_many_layers_is_refused_before_any_write(aws: FakeAws, tmp_path: Path) -> None:
    foreign = tuple(aws.publish_layer(f"foreign{i}") for i in range(5))
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64", layers=foreign)
    error = refused(aws, desired(artifacts(tmp_path, ["orders"])), "would have 6 layers, over Lambda's 5")
    assert "remove a layer" in str(error)


def test_image_and_missing_functions_are_refused_together(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", image=True)
    aws.create_function("users")
    error = refused(aws, desired(artifacts(tmp_path, ["orders", "ghost", "users"])), "2 functions cannot be")
    assert "orders in eu-west-1 is a container image function (PackageType Image)" in error.what
    assert "ghost does not exist in eu-west-1" in error.what


def test_non_go_runtime_is_refused(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="python3.12", handler="app.handler")
    refused(aws, desired(artifacts(tmp_path, ["orders"])), "runs python3.12, not Go")


@pytest.mark.parametrize(("arn", "match"), [
    ("arn:aws:lambda:us-east-1:123456789012:function:orders", "is in us-east-1, but the deploy targets eu-west-1"),
    ("arn:aws:lambda:eu-west-1:444455556666:function:orders", "belongs to account 444455556666"),
])
def test_arn_of_another_region_or_account_is_refused(aws: FakeAws, tmp_path: Path, arn: str, match: str) -> None:
    aws.create_function("orders")
    zips = artifacts(tmp_path, ["orders"])
    want = desired(zips)
    want = dataclasses.replace(want, functions=tuple(
        dataclasses.replace(f, spec=FunctionSpec(arn, "./cmd/orders")) for f in want.functions))
    refused(aws, want, match)


def test_function_arn_of_the_target_is_accepted(aws: FakeAws, tmp_path: Path) -> None:
    arn = aws.create_function("orders")["FunctionArn"]
    want = desired(artifacts(tmp_path, ["orders"]))
    want = dataclasses.replace(want, functions=tuple(
        dataclasses.replace(f, spec=FunctionSpec(arn, "./cmd/orders")) for f in want.functions))
    plan = plan_for(aws.url, want)
    assert [s.target for s in plan.steps()][1:] == [arn, arn]


def test_big_zip_needs_a_bucket(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    zips = artifacts(tmp_path, ["orders"])
    zips["orders"] = dataclasses.replace(zips["orders"], size=limits.MAX_ZIP_IN_REQUEST + 1)
    refused(aws, desired(zips), "give --s3-bucket")
    # With a bucket the same zip goes through S3, in the function's own region.
    aws.create_bucket(f"deploy-{REGION}")
    plan = plan_for(aws.url, desired(zips, s3_bucket="deploy-{region}"))
    uploads = [s.describe() for s in plan.steps() if s.action == "upload-s3"]
    assert [u["target"] for u in uploads] == [LAYER, "orders"]
    assert all(f"s3://deploy-{REGION}/go-arm-lambda/" in u["detail"] for u in uploads)


def test_bucket_must_exist_in_each_target_region(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.create_function("orders", region="us-east-1")
    zips = artifacts(tmp_path, ["orders"])
    two_regions = (REGION, "us-east-1")
    with config.speaking_to("deploy"):  # the deploy command's words: its flags
        refused(aws, desired(zips, s3_bucket="deploy-bucket"),
                r"^S3 bucket deploy-bucket \(for eu-west-1\) does not exist\. create it in eu-west-1, or fix "
                r"--s3-bucket$")
    with config.speaking_to("action"):  # the Action's: its inputs
        refused(aws, desired(zips, s3_bucket="deploy-bucket"), r"or fix the s3-bucket input$")
    aws.create_bucket("deploy-bucket", "us-east-1")
    error = refused(aws, desired(zips, s3_bucket="deploy-bucket", regions=two_regions),
                    "S3 bucket deploy-bucket is in us-east-1, but Lambda in eu-west-1 takes code only from a bucket "
                    "in its own region")
    assert "--s3-bucket my-bucket-{region}" in error.fix
    # One bucket per region, each where its functions are: accepted, and each region asked where its own is.
    aws.create_bucket(f"deploy-{REGION}", REGION)
    aws.create_bucket("deploy-us-east-1", "us-east-1")
    aws.proxy.clear()
    plan = plan_for(aws.url, desired(zips, s3_bucket="deploy-{region}", regions=two_regions))
    assert {s.region for s in plan.steps() if s.action == "upload-s3"} == set(two_regions)
    asked = sorted((r.path, r.region) for r in aws.proxy.requests if r.query == "location")
    assert asked == [(f"/deploy-{REGION}", REGION), ("/deploy-us-east-1", "us-east-1")]


def test_regions_are_read_side_by_side(aws: FakeAws, tmp_path: Path) -> None:
    regions = (REGION, "us-east-1", "ap-southeast-2")
    for region in regions:
        aws.create_function("orders", region=region)
    aws.proxy.latency = 0.2  # every read takes long enough for the others to start meanwhile

    plan_for(aws.url, desired(artifacts(tmp_path, ["orders"]), regions=regions))

    spans = {region: [(r.started, r.finished) for r in aws.proxy.requests if r.region == region]
             for region in regions}
    assert all(spans.values()), spans
    # Read one after another, each region's first read would start after the previous region's last ended.
    last_start = max(min(start for start, _ in s) for s in spans.values())
    first_end = min(max(end for _, end in s) for s in spans.values())
    assert last_start < first_end


def test_unzipped_limit(aws: FakeAws, tmp_path: Path) -> None:
    zips = artifacts(tmp_path, ["orders"])
    zips["orders"] = dataclasses.replace(zips["orders"], unzipped_size=limits.MAX_UNZIPPED)
    # The packager's rule and error (exit 1: the build made something Lambda cannot take), before any write.
    with pytest.raises(PackageError, match="unzipped with the bootstrap layer, over Lambda's limit"):
        plan_for(aws.url, desired(zips))
    assert aws.proxy.mutating() == []


def test_plan_describes_each_step(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="go1.x", handler="main")
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders"]), layer_permissions=["*"]))
    assert [(s["action"], s["target"]) for s in plan.describe()] == [
        ("publish-layer", LAYER), ("add-layer-permission", LAYER), ("update-code", "orders"),
        ("update-config", "orders")]
    config = plan.describe()[-1]
    assert config["region"] == REGION
    assert config["detail"] == (f"runtime: go1.x -> provided.al2023; handler: main -> orders; "
                                f"layers: [] -> [{LAYER}:(new version)]")
    assert plan.describe()[1]["detail"].endswith("for principal * (statement go-arm-lambda-public)")


def test_a_layer_name_that_is_somebody_elses_layer_is_refused_before_any_write(aws: FakeAws, tmp_path: Path) -> None:
    """The user's own layer `foreign-1`, named as --layer-name: publishing into it would put our bootstrap on
    every function that takes its newest version."""
    theirs = aws.publish_layer("foreign-1", description="team tooling")
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64", layers=(theirs,))
    err = refused(aws, desired(artifacts(tmp_path, ["orders"]), layer_name="foreign-1"),
                  "layer foreign-1 in eu-west-1 is not go-arm-lambda's")
    assert theirs in str(err) and "--layer-name" in err.fix
    assert [layer["Arn"] for layer in aws.function("orders")["Layers"]] == [theirs]
    # Ours by description (any tool version) or by the very bootstrap we ship is taken as ours.
    zips = artifacts(tmp_path / "again", ["orders"])
    aws.publish_layer("ours-by-content", zip_file=zips[""].path.read_bytes())
    assert plan_for(aws.url, desired(zips, layer_name="ours-by-content")).layer_name == "ours-by-content"
