"""layer/template.yaml, checked by the real cfn-lint and read with cfn-lint's CloudFormation YAML decoder.

moto's CloudFormation cannot deploy a Lambda layer meaningfully, so cfn-lint (CloudFormation's resource
schemas) is the strongest check available offline. Used in-process: a subprocess costs 3 s of start-up each.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cfnlint.api import lint, lint_file
from cfnlint.decode import decode

from conftest import ROOT
from go_arm_lambda.config import Config
from go_arm_lambda.errors import UsageError
from go_arm_lambda.limits import RUNTIME_GLIBC, check_bucket_name, check_layer_name

TEMPLATE = ROOT / "layer" / "template.yaml"


def load(path: Path) -> dict:
    template, problems = decode(str(path))
    assert problems == []
    return template


def test_cfn_lint_passes() -> None:
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in lint_file(TEMPLATE)] == []


@pytest.mark.parametrize(("good", "bad", "rule"), [
    ("        - arm64\n", "        - aarch64\n", "E3030"),  # the architecture name people guess from uname
    ("      - provided.al2\n", "      - provided.al2025\n", "W1030"),  # a runtime Lambda does not have
    ("    Type: AWS::Lambda::LayerVersion\n", "    Type: AWS::Lambda::LayerVersions\n", "E3006"),
    ('      Name: !Sub "${AWS::StackName}:runtime-layer-arn"\n',
     '      Name: !Sub "${AWS::StackName}:${NoSuchParameter}"\n', "E1019"),
], ids=["architecture", "runtime", "resource-type", "export-name"])
def test_cfn_lint_catches_a_broken_copy(good: str, bad: str, rule: str) -> None:
    """Proves the lint test above can fail: the same template with one realistic mistake."""
    text = TEMPLATE.read_text()
    assert text.count(good) == 1
    assert [m.rule.id for m in lint(text.replace(good, bad))] == [rule]


def test_parameters() -> None:
    params = load(TEMPLATE)["Parameters"]
    assert set(params) == {"ContentS3Bucket", "ContentS3Key", "LayerName", "CompatibleRuntime"}
    assert all(p["Type"] == "String" and p["Description"] for p in params.values())
    # The defaults must be what the CLI publishes, so both ways of deploying share one layer.
    assert params["LayerName"]["Default"] == Config().layer_name
    assert params["CompatibleRuntime"]["Default"] == Config().runtime == "provided.al2023"
    # Every runtime the CLI builds, verifies and smoke-tests for, and no other.
    assert params["CompatibleRuntime"]["AllowedValues"] == list(RUNTIME_GLIBC) == ["provided.al2023", "provided.al2"]


@pytest.mark.parametrize(("param", "check", "samples"), [
    ("LayerName", check_layer_name, ["go-arm-lambda-bootstrap", "a", "x" * 140, "x" * 141, "a b", "a.b"]),
    ("ContentS3Bucket", check_bucket_name, ["my-bucket", "my.bucket.eu", "ab", "Upper", "-lead", "a" * 64,
                                            "my..bucket", "a" * 63, "a-.b", "a.-b", "abc.", ".abc"]),
])
def test_parameter_patterns_agree_with_the_cli(param: str, check: object, samples: list[str]) -> None:
    """CloudFormation should refuse exactly the names the CLI refuses, not fail later inside Lambda or S3."""
    pattern = re.compile(load(TEMPLATE)["Parameters"][param]["AllowedPattern"])

    def cli_accepts(value: str) -> bool:
        try:
            check(value)  # type: ignore[operator]
        except UsageError:
            return False
        return True

    verdicts = {s: (bool(pattern.fullmatch(s)), cli_accepts(s)) for s in samples}
    assert all(template == cli for template, cli in verdicts.values()), verdicts
    assert {template for template, _ in verdicts.values()} == {True, False}  # the samples test both sides


def test_layer_version() -> None:
    resources = load(TEMPLATE)["Resources"]
    assert list(resources) == ["RuntimeLayer"]
    layer = resources["RuntimeLayer"]
    assert layer["Type"] == "AWS::Lambda::LayerVersion"
    # Functions keep using old versions; deleting or replacing the stack must not delete them.
    assert (layer["DeletionPolicy"], layer["UpdateReplacePolicy"]) == ("Retain", "Retain")
    props = layer["Properties"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert props["CompatibleRuntimes"] == [{"Ref": "CompatibleRuntime"}]
    assert props["LayerName"] == {"Ref": "LayerName"}
    assert props["Content"] == {"S3Bucket": {"Ref": "ContentS3Bucket"}, "S3Key": {"Ref": "ContentS3Key"}}
    assert props["LicenseInfo"] == "MIT"
    assert "bootstrap" in props["Description"]


def test_output_export_name() -> None:
    outputs = load(TEMPLATE)["Outputs"]
    # Output logical ids are alphanumeric only (cfn-lint E6001), so `runtime-layer-arn` is the export's name.
    assert outputs == {"RuntimeLayerArn": {
        "Description": outputs["RuntimeLayerArn"]["Description"],
        "Value": {"Ref": "RuntimeLayer"},
        "Export": {"Name": {"Fn::Sub": "${AWS::StackName}:runtime-layer-arn"}},
    }}
