"""Config: defaults in one place, three sources with a fixed precedence, and one clear line per bad value."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT
from go_arm_lambda import cli, config, docs
from go_arm_lambda.config import FunctionSpec
from go_arm_lambda.errors import UsageError
from go_arm_lambda.inputs import BUILD
from go_arm_lambda.limits import MAX_EVENT


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
    ({"rate_limit": "0"}, "--rate-limit='0' is not a positive number"),
    ({"rate_limit": "fast"}, "--rate-limit='fast' is not a positive number"),
    ({"rate_limit": "0.000001"}, "--rate-limit=0.000001 is out of range. give 0.1 to 10,000 requests per second"),
    ({"rate_limit": "9" * 400}, f"--rate-limit={'9' * 400} is out of range"),
    ({"smoke_timeout": "soon"}, "--smoke-timeout='soon' is not a number"),
    ({"s3_bucket": "My_Bucket"}, "S3 bucket name 'My_Bucket' is not valid"),
    ({"smoke_timeout": "inf"}, "--smoke-timeout='inf' is not a number"),
    ({"smoke_timeout": "0.001"}, "--smoke-timeout=0.001 is out of range"),
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


def test_lists_split_on_commas_newlines_and_spaces_and_keep_repeats(tmp_path: Path) -> None:
    cfg = config.load({"source": str(tmp_path), "regions": "eu-west-1, us-east-1", "tags": "a b,c\na"}, env={})
    assert cfg.regions == ("eu-west-1", "us-east-1") and cfg.tags == ("a", "b", "c", "a")
    # A region given twice is refused, not quietly merged: one behaviour, whichever way it is given.
    for regions in ("eu-west-1, us-east-1\neu-west-1", ["eu-west-1", "eu-west-1"]):
        with pytest.raises(UsageError, match="region eu-west-1 is given more than once"):
            config.load({"source": str(tmp_path), "regions": regions}, env={})


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
    with pytest.raises(UsageError, match="is a directory"):
        config.load({"source": str(tmp_path), "config_file": str(tmp_path)}, env={})


def test_functions_lines_allow_spaces_and_comments(tmp_path: Path) -> None:
    env = {"GITHUB_ACTIONS": "true", "INPUT_FUNCTIONS": "# the API\norders = ./cmd/orders\r\n\nhello= ./cmd/hello,\n"}
    cfg = config.load({"source": str(tmp_path)}, env=env)
    assert cfg.functions == (FunctionSpec("orders", "./cmd/orders"), FunctionSpec("hello", "./cmd/hello"))


def test_a_flag_turns_off_a_switch_the_file_turned_on(tmp_path: Path) -> None:
    (tmp_path / config.CONFIG_FILE_NAME).write_text("publish = true\ndry-run = true\ncgo = true\n")
    args = cli.build_parser().parse_args(["deploy", "--no-publish", "--no-dry-run", "--no-cgo", "--no-smoke"])
    cfg = config.load({**cli._given(args), "source": str(tmp_path)}, env={})
    assert (cfg.publish, cfg.dry_run, cfg.cgo, cfg.smoke) == (False, False, False, False)


def test_an_arn_in_another_region_is_refused_before_anything_runs(tmp_path: Path) -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:orders"
    with pytest.raises(UsageError, match="is in eu-west-1, but the deploy targets us-east-1"):
        config.load({"source": str(tmp_path), "functions": [f"{arn}=./cmd/orders"], "regions": ["us-east-1"]},
                    env={})


# --- the input table: the one place an input is described -----------------------------------------------------

def action_yml_problems(action: dict[str, Any]) -> list[str]:
    """Where action.yml's inputs differ from the table: names, descriptions, defaults."""
    declared: dict[str, dict[str, Any]] = action.get("inputs") or {}
    problems = [f"input {n} is not in the table" for n in declared if n not in config.ACTION_INPUTS]
    problems += [f"input {n} is missing from action.yml" for n in config.ACTION_INPUTS if n not in declared]
    for name, spec in declared.items():
        row = config.FIELDS.get(config.ACTION_INPUTS.get(name, ""))
        if row is None:
            continue
        if " ".join(str(spec.get("description", "")).split()) != row.help:
            problems.append(f"input {name}: description differs from the table's help")
        if spec.get("default") != (row.action_default or row.shown_default):
            problems.append(f"input {name}: default {spec.get('default')!r} differs from the table's")
        if spec.get("required", False):
            problems.append(f"input {name} is required, but the config file may give it")
    return problems


def flag_problems(parser: argparse.ArgumentParser) -> list[str]:
    """Flags that are not what the table says: a build/deploy flag outside it, an input's flag written by hand,
    or a table row whose command lacks its flag."""
    problems = []
    commands = cli.subcommands(parser)
    for name, p in commands.items():
        for a in p._actions:
            if isinstance(a, argparse._HelpAction) or a.dest == "debug" or not a.option_strings:
                continue
            row = config.FIELDS.get(a.dest)
            if row is None:
                if name in BUILD:  # every flag of these is an input
                    problems.append(f"{name} {a.option_strings[0]} is not in the table")
                continue
            expected = [row.cli_flag, f"--no-{row.cli_flag[2:]}"] if row.switch else [row.cli_flag]
            if name not in row.commands or a.option_strings != expected or a.help != cli.flag_help(row):
                problems.append(f"{name} {a.option_strings[0]} is not the flag the table generates")
    for row in config.FIELDS.values():
        for name in row.commands:
            if name not in commands or row.key not in {a.dest for a in commands[name]._actions}:
                problems.append(f"{name} lacks {row.cli_flag}")
    return problems


def test_action_yml_declares_exactly_the_tables_inputs() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action_yml_problems(action) == []
    # and the check catches each way of drifting
    action["inputs"].pop("alias")
    action["inputs"]["smoke"]["default"] = "false"
    action["inputs"]["mode"]["description"] = "Which mode."
    action["inputs"]["bake-time"] = {"description": "Wait a while."}
    assert sorted(action_yml_problems(action)) == [
        "input alias is missing from action.yml", "input bake-time is not in the table",
        "input mode: description differs from the table's help",
        "input smoke: default 'false' differs from the table's"]


def test_every_flag_is_generated_from_the_table() -> None:
    parser = cli.build_parser()
    assert flag_problems(parser) == []
    commands = cli.subcommands(parser)
    commands["deploy"].add_argument("--bake-time", default=argparse.SUPPRESS)  # a flag written by hand
    commands["smoke"].add_argument("--cgo", dest="cgo", action="store_true")  # an input's flag written by hand
    assert flag_problems(parser) == ["deploy --bake-time is not in the table", "smoke --cgo is not the flag the table "
                                     "generates"]


def test_a_flag_the_table_lacks_is_never_dropped_silently(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="bake_time"):
        config.load({"source": str(tmp_path), "bake_time": "10m"}, env={})


def test_the_defaults_shown_are_the_configs(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # argparse wraps help at hyphens
    assert cli.main(["deploy", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: go-arm-lambda-bootstrap)" in help_text and "(default: 10)" in help_text
    assert f"(default: {config.Config.s3_prefix})" in help_text


def test_readme_and_action_yml_are_generated_from_the_table(tmp_path: Path) -> None:
    stale = [f"{s.file}: {s.name}" for s in docs.stale(ROOT)]
    assert stale == [], f"run `{docs.COMMAND}` to regenerate {stale}"
    # A new row makes every generated section stale, and --write brings them back in line.
    for name in ("README.md", "action.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    extra = dataclasses.replace(config.FIELDS["alias"], key="bake_time", name="bake-time", help="Wait a while.")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(config.FIELDS, "bake_time", extra)
        mp.setitem(config.ACTION_INPUTS, "bake-time", "bake_time")
        assert {(s.file, s.name) for s in docs.stale(tmp_path)} == {
            ("README.md", "inputs"), ("README.md", "cli"), ("action.yml", "inputs")}
        assert docs.main(["--write", "--root", str(tmp_path)]) == 0
        assert docs.stale(tmp_path) == []
        action = yaml.safe_load((tmp_path / "action.yml").read_text())
        assert action_yml_problems(action) == []
        assert "[--bake-time NAME]" in (tmp_path / "README.md").read_text()


def test_action_only_inputs_say_so_in_the_readme() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "Every Action input is also a CLI flag except `github-token`, `comment`, `comment-id`, `pr-number`" in readme
    assert "mirrors a CLI flag" not in readme


# --- the smoke event ----------------------------------------------------------------------------------------

def test_load_event_inline_and_file(tmp_path: Path) -> None:
    assert config.load_event('{"name": "Ada"}') == b'{"name": "Ada"}'
    event = tmp_path / "event.json"
    event.write_text('{"items": [1, 2]}')
    assert config.load_event(f"@{event}") == b'{"items": [1, 2]}'


@pytest.mark.parametrize(("text", "says"), [
    ("{name: Ada}", "--event is not valid JSON"),
    ("@/nonexistent/event.json", "event file '/nonexistent/event.json' does not exist"),
    ("@/dev/zero", "event file '/dev/zero' is not a regular file"),  # would read forever
    ("@/tmp", "event file '/tmp' is a directory"),
])
def test_load_event_rejects_bad_input(text: str, says: str) -> None:
    with pytest.raises(UsageError, match="^" + says) as info, config.speaking_to("smoke"):
        config.load_event(text)
    assert info.value.exit_code == 2 and "--event" in str(info.value) and "--smoke-event" not in str(info.value)


def test_load_event_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "event.json"
    os.mkfifo(fifo)
    raised: list[BaseException] = []

    def load() -> None:
        try:
            config.load_event(f"@{fifo}")
        except BaseException as exc:
            raised.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # release the blocked open() so the thread ends, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_event blocked on a FIFO")
    [err] = raised
    assert isinstance(err, UsageError) and str(err).startswith(f"event file '{fifo}' is not a regular file.")


def test_event_size_is_lambdas_payload_limit(tmp_path: Path) -> None:
    largest = b"{}".ljust(MAX_EVENT)  # JSON may end in whitespace: exactly 6 MB, still valid
    event = tmp_path / "event.json"
    event.write_bytes(largest)
    assert config.load_event(f"@{event}") == largest
    event.write_bytes(largest + b" ")
    with pytest.raises(UsageError) as info:
        config.load_event(f"@{event}")
    assert str(info.value) == (f"event file '{event}' is larger than 6,291,456 bytes, Lambda's limit for an "
                               "invocation payload. give --smoke-event (in the Action, the smoke-event input) "
                               "@PATH of a JSON file, or the JSON itself")
    with pytest.raises(UsageError, match=r"^--event is larger than 6,291,456 bytes"), config.speaking_to("smoke"):
        config.load_event((largest + b" ").decode())


def test_load_event_rejects_a_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(UsageError, match=f"event file '{bad}' is not valid JSON"):
        config.load_event(f"@{bad}")


def test_promote_and_rollback_do_not_read_a_smoke_event_they_never_send(tmp_path: Path) -> None:
    """A config file shared with the build jobs may name an event file only they have: a rollback must not be
    refused over it."""
    (tmp_path / config.CONFIG_FILE_NAME).write_text('smoke-event = "@events/missing.json"\n')
    given = {"source": str(tmp_path), "functions": ["hello=./cmd/hello"], "regions": ["eu-west-1"], "alias": "live"}
    assert config.load(given, env={}, command="rollback").smoke_event == "@events/missing.json"
    assert config.load({**given, "promote_from": "beta"}, env={}, command="promote").alias == "live"
    with pytest.raises(UsageError, match=r"event file 'events/missing\.json' does not exist"):
        config.load({**given, "publish": True}, env={})
    # promote's check still sends the smoke event when it has none of its own: read and checked then
    with pytest.raises(UsageError, match="does not exist"):
        config.load({**given, "promote_from": "beta", "check_deployed": True}, env={}, command="promote")


def test_a_key_the_file_cannot_set_is_named_as_this_runs_user_gives_it(tmp_path: Path) -> None:
    (tmp_path / config.CONFIG_FILE_NAME).write_text('source = "/elsewhere"\n')
    for surface, fix in (("build", "give it as --source instead"),
                         ("action", "give it as the working-directory input instead")):
        with pytest.raises(UsageError) as info, config.speaking_to(surface):
            config.read_config_file(tmp_path / config.CONFIG_FILE_NAME)
        assert info.value.fix == fix
