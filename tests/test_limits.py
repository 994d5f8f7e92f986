"""Lambda's name rules and limits, which moto and botocore do not check for us."""

from __future__ import annotations

import pytest

from go_arm_lambda import config, limits
from go_arm_lambda.errors import UsageError

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders"


@pytest.mark.parametrize("name", ["orders", "a" * 64, "my_func-2", ARN, ARN + ":$LATEST",
                                  "arn:aws-cn:lambda:cn-north-1:123456789012:function:x"])
def test_valid_function_names(name: str) -> None:
    limits.check_function_name(name, config.say)


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "dots.not.allowed", ARN + ":live", ARN + ":3",
                                  "arn:aws:lambda:eu-west-1:123:function:orders", "arn:aws:s3:::bucket"])
def test_invalid_function_names(name: str) -> None:
    with pytest.raises(UsageError):
        limits.check_function_name(name, config.say)


def test_arn_must_match_target_region_and_account() -> None:
    limits.check_function_arn_target(ARN, "eu-west-1", "123456789012", config.say)
    limits.check_function_arn_target("orders", "us-east-1", "123456789012", config.say)
    with pytest.raises(UsageError, match="is in eu-west-1, but the deploy targets us-east-1") as info, \
            config.speaking_to("deploy"):
        limits.check_function_arn_target(ARN, "us-east-1", "123456789012", config.say)
    assert info.value.fix == "deploy it with --region eu-west-1, or name the function without an ARN"
    with pytest.raises(UsageError, match="belongs to account 123456789012"):
        limits.check_function_arn_target(ARN, "eu-west-1", "999999999999", config.say)


@pytest.mark.parametrize(("value", "ok"), [("v8.0", True), ("v8.2,lse", True), ("v8.2,crypto,lse", True),
                                           ("v8.3", False), ("v9.0", False), ("v8", False), ("8.0", False)])
def test_goarm64(value: str, ok: bool) -> None:
    if ok:
        limits.check_goarm64(value)
    else:
        with pytest.raises(UsageError):
            limits.check_goarm64(value)


def test_layer_rules() -> None:
    limits.check_layer_name("go-arm-lambda-bootstrap")
    limits.check_layer_name("arn:aws:lambda:eu-west-1:123456789012:layer:x")
    with pytest.raises(UsageError):
        limits.check_layer_name("no spaces")
    assert limits.is_layer_arn_of("arn:aws:lambda:eu-west-1:123456789012:layer:boot:7", "boot")
    assert not limits.is_layer_arn_of("arn:aws:lambda:eu-west-1:123456789012:layer:bootx:7", "boot")
    for p in ("*", "123456789012", "arn:aws:iam::123456789012:root", "org:o-abcdefghij"):
        limits.check_layer_principal(p)
    for p in ("12345", "org:o-short", "arn:aws:iam::123456789012:user/bob"):
        with pytest.raises(UsageError):
            limits.check_layer_principal(p)


def test_alias_and_region() -> None:
    limits.check_alias("live")
    limits.check_region("us-gov-west-1")
    for bad in ("42", "a" * 129, "with.dot"):
        with pytest.raises(UsageError):
            limits.check_alias(bad)


def test_handler_rule() -> None:
    for good in ("orders", "bin/orders", "bootstrap", "a" * 128):
        limits.check_handler(good)
    for bad in ("", "a b", "/abs", "../up", "a/../b", "./a", "a//b", "a\\b", "a" * 129, "a\nb", "dir/"):
        with pytest.raises(UsageError, match="is not valid"):
            limits.check_handler(bad)


@pytest.mark.parametrize(("region", "partition"), [
    ("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("us-iso-east-1", "aws-iso"),
    ("us-isob-east-1", "aws-iso-b"), ("eusc-de-east-1", "aws-eusc"),
    ("ap-southeast-9", "aws"),  # not in this botocore yet, but named as the aws partition names its regions
])
def test_regions_and_their_partitions_come_from_botocores_data(region: str, partition: str) -> None:
    assert limits.check_region(region) == partition == limits.partition_of(region)
    assert limits.arn(region, "lambda", "123456789012", "function:x") == (
        f"arn:{partition}:lambda:{region}:123456789012:function:x")


@pytest.mark.parametrize("region", ["us-east-١", "eu-west", "xx-west-1", "EU-WEST-1", "eu_west_1", "eusc-fr-east-1",
                                    " eu-west-1", "eu-west-1\n", ""])
def test_what_no_partition_has_is_not_a_region(region: str) -> None:
    assert limits.partition_of(region) is None
    with pytest.raises(UsageError, match="is not an AWS region name"):
        limits.check_region(region)


def test_an_arn_must_carry_its_regions_partition() -> None:
    for good in ("arn:aws-eusc:lambda:eusc-de-east-1:123456789012:function:x",
                 "arn:aws-cn:lambda:cn-north-1:123456789012:function:x"):
        limits.check_function_name(good, config.say)
    limits.check_layer_name("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:layer:x")
    for bad, says in (("arn:aws:lambda:cn-north-1:123456789012:function:x", "cn-north-1 is in aws-cn"),
                      ("arn:aws-cn:lambda:eusc-de-east-1:123456789012:function:x", "is in aws-eusc"),
                      ("arn:aws:lambda:mars-north-1:123456789012:function:x", "not an AWS region")):
        with pytest.raises(UsageError, match=says):
            limits.check_function_name(bad, config.say)
    with pytest.raises(UsageError, match="is in aws-us-gov"):
        limits.check_layer_name("arn:aws:lambda:us-gov-west-1:123456789012:layer:x")
    limits.check_layer_principal("arn:aws-eusc:iam::123456789012:root")
    with pytest.raises(UsageError, match="partition aws-mars"):
        limits.check_layer_principal("arn:aws-mars:iam::123456789012:root")
