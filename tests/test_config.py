"""Config: defaults in one place, three sources with a fixed precedence, and one clear line per bad value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from go_arm_lambda import config
from go_arm_lambda.config import FunctionSpec
from go_arm_lambda.errors import UsageError


def test_defaults_without_any_source(tmp_path: Path) -> None:
    cfg = config.load({"source": str(tmp_path)}, env={})
    assert cfg.mode == "layer" and cfg.runtime == "provided.al2023" and cfg.goarm64 == "v8.0"
    assert cfg.smoke and cfg.verify and not cfg.publish and cfg.functions == ()


def test_flags_beat_inputs_beat_file(tmp_path: Path) -> None:
    (tmp_path / config.CONFIG_FILE_NAME).write_text(
        'mode = "bootstrap"\nruntime = "provided.al2"\nregions = ["eu-west-1"]\n'
        '[functions]\norders = "./cmd/orders"\n')
    env = {"GITHUB_ACTIONS": "true", "INPUT_RUNTIME": "provided.al2023", "INPUT_REGIONS": "us-east-1\neu-central-1"}
    cfg = config.load({"source": str(tmp_path), "mode": "layer"}, env=env)
    assert cfg.mode == "layer"  # flag
    assert cfg.runtime == "provided.al2023"  # input over file
    assert cfg.regions == ("us-east-1", "eu-central-1")
    assert cfg.functions == (FunctionSpec("orders", "./cmd/orders"),)  # file
    assert cfg.config_file == tmp_path / config.CONFIG_FILE_NAME


def test_action_inputs_both_spellings_and_aliases(tmp_path: Path) -> None:
    env = {"GITHUB_ACTIONS": "true", "INPUT_WORKING-DIRECTORY": str(tmp_path), "INPUT_PUBLISH_VERSION": "true",
           "INPUT_BUILD-TAGS": "a, b", "INPUT_FUNCTIONS": "a=./cmd/a\n\nb=./cmd/b\n", "INPUT_ALIAS": "live",
           "INPUT_GITHUB-TOKEN": "t0k", "INPUT_SMOKE": ""}
    cfg = config.load({}, env=env)
    assert cfg.source == tmp_path and cfg.publish and cfg.tags == ("a", "b") and cfg.alias == "live"
    assert [f.name for f in cfg.functions] == ["a", "b"] and cfg.github_token == "t0k"
    assert cfg.smoke  # an empty input is "not given", so the default stands


def test_inputs_ignored_outside_actions(tmp_path: Path) -> None:
    cfg = config.load({"source": str(tmp_path)}, env={"INPUT_MODE": "bootstrap"})
    assert cfg.mode == "layer"


@pytest.mark.parametrize(("given", "message"), [
    ({"mode": "zip"}, "--mode='zip' is not one of layer, bootstrap"),
    ({"goarm64": "v8.3"}, "GOARM64 v8.3 is above v8.2"),
    ({"goarm64": "v7"}, "GOARM64 'v7' is not a valid level"),
    ({"functions": ["orders"]}, "'orders' is not NAME=PACKAGE"),
    ({"functions": ["a=./x", "a=./y"]}, "function 'a' is listed twice"),
    ({"functions": ["bad name=./x"]}, "function name 'bad name' is not valid"),
    ({"regions": ["Europe"]}, "region 'Europe' is not an AWS region name"),
    ({"alias": "live"}, "alias live needs a published version to point at"),
    ({"alias": "123", "publish": True}, "alias '123' is not valid"),
    ({"layer_permissions": ["bob"]}, "layer permission 'bob' is not valid"),
    ({"concurrency": "0"}, "--concurrency=0 must be at least 1"),
    ({"smoke_timeout": "soon"}, "--smoke-timeout='soon' is not a number"),
    ({"s3_bucket": "My_Bucket"}, "S3 bucket name 'My_Bucket' is not valid"),
    ({"smoke_timeout": "inf"}, "--smoke-timeout=inf is out of range"),
    ({"smoke_timeout": "901"}, "--smoke-timeout=901 is out of range"),
    ({"out": __file__}, "is a file"),
])
def test_bad_values_name_the_input_and_the_fix(tmp_path: Path, given: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as exc:
        config.load({"source": str(tmp_path), **given}, env={})
    assert message in str(exc.value)
    assert exc.value.fix and "\n" not in str(exc.value)


def test_bad_input_names_the_action_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"input dry-run='perhaps' is not a boolean\. use true or false"):
        config.load({"source": str(tmp_path)}, env={"GITHUB_ACTIONS": "true", "INPUT_DRY-RUN": "perhaps"})


def test_config_file_errors(tmp_path: Path) -> None:
    (tmp_path / config.CONFIG_FILE_NAME).write_text("mode = \n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        config.load({"source": str(tmp_path)}, env={})
    (tmp_path / config.CONFIG_FILE_NAME).write_text('colour = "blue"\n')
    with pytest.raises(UsageError, match="unknown key 'colour'"):
        config.load({"source": str(tmp_path)}, env={})
    with pytest.raises(UsageError, match="does not exist"):
        config.load({"source": str(tmp_path), "config_file": "missing.toml"}, env={})


def test_function_arn_short_name() -> None:
    spec = FunctionSpec("arn:aws:lambda:eu-west-1:123456789012:function:orders:live", "./cmd/orders")
    assert spec.short_name == "orders"


def test_lists_split_on_commas_newlines_and_spaces_and_drop_repeats(tmp_path: Path) -> None:
    cfg = config.load({"source": str(tmp_path), "regions": "eu-west-1, us-east-1\neu-west-1", "tags": "a b,c"},
                      env={})
    assert cfg.regions == ("eu-west-1", "us-east-1") and cfg.tags == ("a", "b", "c")


def test_bucket_per_region(tmp_path: Path) -> None:
    cfg = config.load({"source": str(tmp_path), "s3_bucket": "deploy-{region}", "regions": ["eu-west-1"]}, env={})
    assert cfg.s3_bucket == "deploy-{region}"


def test_config_file_values_must_have_the_right_shape(tmp_path: Path) -> None:
    f = tmp_path / config.CONFIG_FILE_NAME
    f.write_text('ldflags = ["-X", "main.v=1"]\n')
    with pytest.raises(UsageError, match="ldflags must be a single value"):
        config.load({"source": str(tmp_path)}, env={})
    f.write_text('source = "/elsewhere"\n')
    with pytest.raises(UsageError, match="'source' cannot be set in the file"):
        config.load({"source": str(tmp_path)}, env={})
    f.write_text('[smoke-event]\nname = "Ada"\n')
    assert json.loads(config.load({"source": str(tmp_path)}, env={}).smoke_event) == {"name": "Ada"}
    with pytest.raises(UsageError, match="cannot be read"):
        config.load({"source": str(tmp_path), "config_file": str(tmp_path)}, env={})


def test_functions_lines_allow_spaces_and_comments(tmp_path: Path) -> None:
    env = {"GITHUB_ACTIONS": "true", "INPUT_FUNCTIONS": "# the API\norders = ./cmd/orders\r\n\nhello= ./cmd/hello,\n"}
    cfg = config.load({"source": str(tmp_path)}, env=env)
    assert cfg.functions == (FunctionSpec("orders", "./cmd/orders"), FunctionSpec("hello", "./cmd/hello"))


def test_a_flag_turns_off_a_switch_the_file_turned_on(tmp_path: Path) -> None:
    from go_arm_lambda import cli

    (tmp_path / config.CONFIG_FILE_NAME).write_text("publish = true\ndry-run = true\ncgo = true\n")
    args = cli.build_parser().parse_args(["deploy", "--no-publish", "--no-dry-run", "--no-cgo", "--no-smoke"])
    cfg = config.load({**cli._given(args), "source": str(tmp_path)}, env={})
    assert (cfg.publish, cfg.dry_run, cfg.cgo, cfg.smoke) == (False, False, False, False)


def test_an_arn_in_another_region_is_refused_before_anything_runs(tmp_path: Path) -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
    with pytest.raises(UsageError, match="is in eu-west-1, but the deploy targets us-east-1"):
        config.load({"source": str(tmp_path), "functions": [f"{arn}=./cmd/orders"], "regions": ["us-east-1"]},
                    env={})
