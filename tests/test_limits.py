"""Lambda's name rules and limits, which moto and botocore do not check for us."""

from __future__ import annotations

import pytest

from go_arm_lambda import limits
from go_arm_lambda.errors import UsageError

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:orders"


@pytest.mark.parametrize("name", ["orders", "a" * 64, "my_func-2", ARN, ARN + ":$LATEST",
                                  "arn:aws-cn:lambda:cn-north-1:123456789012:function:x"])
def test_valid_function_names(name: str) -> None:
    limits.check_function_name(name)


@pytest.mark.parametrize("name", ["", "a" * 65, "has space", "dots.not.allowed", ARN + ":live", ARN + ":3",
                                  "arn:aws:lambda:eu-west-1:123:function:orders", "arn:aws:s3:::bucket"])
def test_invalid_function_names(name: str) -> None:
    with pytest.raises(UsageError):
        limits.check_function_name(name)


def test_arn_must_match_target_region_and_account() -> None:
    limits.check_function_arn_target(ARN, "eu-west-1", "123456789012")
    limits.check_function_arn_target("orders", "us-east-1", "123456789012")
    with pytest.raises(UsageError, match="is in eu-west-1, but the deploy targets us-east-1"):
        limits.check_function_arn_target(ARN, "us-east-1", "123456789012")
    with pytest.raises(UsageError, match="belongs to account 123456789012"):
        limits.check_function_arn_target(ARN, "eu-west-1", "999999999999")


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
