"""All inputs in one typed object.

Three sources, one table: CLI flags beat `INPUT_*` variables (GitHub Actions), which beat the config file
(`go-arm-lambda.toml` in the source directory, or `--config`), which beats the defaults in `FIELDS`. Under
Actions, action.yml defaults never reach `docker run`, so the defaults here are the only ones that count.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from go_arm_lambda import limits
from go_arm_lambda.errors import UsageError

MODES = ("layer", "bootstrap")
RUNTIMES = ("provided.al2023", "provided.al2")
COMMENT_POLICIES = ("auto", "always", "never")
CONFIG_FILE_NAME = "go-arm-lambda.toml"


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function and the Go main package that becomes it."""

    name: str  # function name, or full/partial ARN
    package: str  # Go package path relative to the source directory, e.g. ./cmd/orders

    @property
    def short_name(self) -> str:
        """The bare function name, also for an ARN (`arn:...:function:NAME[:QUALIFIER]`)."""
        if self.name.startswith("arn:"):
            return self.name.split(":")[6]
        return self.name


@dataclass(frozen=True)
class Config:
    source: Path = Path(".")
    config_file: Path | None = None
    functions: tuple[FunctionSpec, ...] = ()
    out: Path = Path(".go-arm-lambda/dist")
    mode: str = "layer"
    runtime: str = "provided.al2023"
    tags: tuple[str, ...] = ()
    ldflags: str = ""
    goarm64: str = "v8.0"
    cgo: bool = False
    go: str = "go"
    verify: bool = True
    allow_custom_runtime_client: bool = False
    smoke: bool = True
    smoke_event: str = "{}"
    smoke_timeout: float = 10.0
    regions: tuple[str, ...] = ()
    layer_name: str = "go-arm-lambda-bootstrap"
    layer_permissions: tuple[str, ...] = ()
    publish: bool = False
    alias: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "go-arm-lambda/"
    endpoint_url: str | None = None
    dry_run: bool = False
    report: Path | None = None
    concurrency: int = 8
    github_token: str | None = field(default=None, repr=False)
    comment: str = "auto"
    comment_id: str = "default"
    pr_number: int | None = None
    json: bool = False

    @property
    def layer_mode(self) -> bool:
        return self.mode == "layer"


# --- converters: each takes the raw value and a description of where it came from -------------------------

def _split_list(raw: Any, where: str) -> tuple[str, ...]:
    """A list from a TOML array, repeated flags, or one string separated by commas, newlines or spaces.

    Repeats are dropped (first one wins): a region listed twice would otherwise be deployed twice at once.
    """
    if isinstance(raw, list | tuple):
        items = [_scalar(x, where) for x in raw]
    elif isinstance(raw, str):
        # Action inputs are single strings; people write lists one per line, comma or space separated.
        items = re.split(r"[,\s]+", raw)
    else:
        raise UsageError(f"{where} must be a list of strings, not {raw!r}", "write it as a list or one per line")
    return tuple(dict.fromkeys(s.strip() for s in items if s.strip()))


def _scalar(raw: Any, where: str) -> str:
    """A config file's value where one string is expected: a TOML table or array is a mistake, not text."""
    if isinstance(raw, dict | list | tuple):
        raise UsageError(f"{where} must be a single value, not {type(raw).__name__} {raw!r}",
                         "write it as a quoted string")
    return str(raw).strip()


def _bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _scalar(raw, where).lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise UsageError(f"{where}={raw!r} is not a boolean", "use true or false")


def _int(raw: Any, where: str) -> int:
    try:
        value = int(_scalar(raw, where))
    except ValueError:
        raise UsageError(f"{where}={raw!r} is not a whole number", "give a number such as 8") from None
    if value < 1:
        raise UsageError(f"{where}={value} must be at least 1", "give a positive number")
    return value


def _seconds(raw: Any, where: str) -> float:
    try:
        value = float(_scalar(raw, where))
    except ValueError:
        raise UsageError(f"{where}={raw!r} is not a number", "give seconds, such as 10") from None
    # Lambda's own ceiling: a function that needs longer could not run on Lambda either.
    if not 0 < value <= limits.MAX_TIMEOUT_S:
        raise UsageError(f"{where}={value:g} is out of range",
                         f"give seconds from 1 to {limits.MAX_TIMEOUT_S}, such as 10")
    return value


def _text(raw: Any, where: str) -> str:
    return _scalar(raw, where)


def _optional_text(raw: Any, where: str) -> str | None:
    return _scalar(raw, where) or None


def _path(raw: Any, where: str) -> Path:
    return Path(_scalar(raw, where))


def _optional_path(raw: Any, where: str) -> Path | None:
    text = _scalar(raw, where)
    return Path(text) if text else None


def _optional_int(raw: Any, where: str) -> int | None:
    return _int(raw, where) if _scalar(raw, where) else None


def _event(raw: Any, where: str) -> str:
    """The smoke event: JSON text or @FILE; in the config file a TOML table is taken as the JSON object."""
    if isinstance(raw, dict | list):
        return json.dumps(raw)
    return _scalar(raw, where)


def _choice(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def convert(raw: Any, where: str) -> str:
        value = _scalar(raw, where)
        if value not in choices:
            listed = ", ".join(choices)
            raise UsageError(f"{where}={value!r} is not one of {listed}", f"use one of {listed}")
        return value
    return convert


def _goarm64(raw: Any, where: str) -> str:
    value = _scalar(raw, where)
    try:
        limits.check_goarm64(value)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.what}", exc.fix) from None
    return value


def parse_function(text: str, where: str) -> FunctionSpec:
    name, sep, package = text.partition("=")
    name, package = name.strip(), package.strip()
    if not sep or not name or not package:
        raise UsageError(f"{where}: {text!r} is not NAME=PACKAGE",
                         "write each function as NAME=PACKAGE, e.g. orders-api=./cmd/orders")
    return FunctionSpec(name, package)


def _functions(raw: Any, where: str) -> tuple[FunctionSpec, ...]:
    if isinstance(raw, Mapping):  # [functions] table in the config file: name = "package"
        return tuple(parse_function(f"{k}={v}", where) for k, v in raw.items())
    # One per line or comma separated, `NAME = PACKAGE` spacing allowed, `#` lines are comments (the TOML
    # habit carries over into the Action's multi-line input).
    items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else None
    if items is None:
        raise UsageError(f"{where} must be NAME=PACKAGE lines, not {raw!r}", "write one NAME=PACKAGE per line")
    lines = [line.strip() for item in items for line in re.split(r"[,\n]", _scalar(item, where))]
    return tuple(parse_function(line, where) for line in lines if line and not line.startswith("#"))


@dataclass(frozen=True)
class _Field:
    convert: Callable[[Any, str], Any]
    flag: str  # the action input and config key; also the CLI flag unless `cli` says otherwise
    cli: str = ""  # repeatable CLI flags are singular: --function, --region, --layer-permission

    @property
    def cli_flag(self) -> str:
        return f"--{self.cli or self.flag}"


FIELDS: dict[str, _Field] = {
    "source": _Field(_path, "source"),
    "config_file": _Field(_optional_path, "config"),
    "functions": _Field(_functions, "functions", "function"),
    "out": _Field(_path, "out"),
    "mode": _Field(_choice(MODES), "mode"),
    "runtime": _Field(_choice(RUNTIMES), "runtime"),
    "tags": _Field(_split_list, "tags"),
    "ldflags": _Field(_text, "ldflags"),
    "goarm64": _Field(_goarm64, "goarm64"),
    "cgo": _Field(_bool, "cgo"),
    "go": _Field(_text, "go"),
    "verify": _Field(_bool, "verify"),
    "allow_custom_runtime_client": _Field(_bool, "allow-custom-runtime-client"),
    "smoke": _Field(_bool, "smoke"),
    "smoke_event": _Field(_event, "smoke-event"),
    "smoke_timeout": _Field(_seconds, "smoke-timeout"),
    "regions": _Field(_split_list, "regions", "region"),
    "layer_name": _Field(_text, "layer-name"),
    "layer_permissions": _Field(_split_list, "layer-permissions", "layer-permission"),
    "publish": _Field(_bool, "publish"),
    "alias": _Field(_optional_text, "alias"),
    "s3_bucket": _Field(_optional_text, "s3-bucket"),
    "s3_prefix": _Field(_text, "s3-prefix"),
    "endpoint_url": _Field(_optional_text, "endpoint-url"),
    "dry_run": _Field(_bool, "dry-run"),
    "report": _Field(_optional_path, "report"),
    "concurrency": _Field(_int, "concurrency"),
    "github_token": _Field(_optional_text, "github-token"),
    "comment": _Field(_choice(COMMENT_POLICIES), "comment"),
    "comment_id": _Field(_text, "comment-id"),
    "pr_number": _Field(_optional_int, "pr-number"),
    "json": _Field(_bool, "json"),
}

# Action inputs whose names differ from the CLI flag, because the Action reads better with them.
ACTION_INPUT_ALIASES = {
    "working-directory": "source",
    "build-tags": "tags",
    "publish-version": "publish",
    "config": "config_file",
}
# Settings of the command line only: the Action decides these itself (where output goes, which go, JSON).
CLI_ONLY = frozenset({"out", "go", "concurrency", "report", "json"})
# The Action's inputs, as action.yml declares them (tests/test_dockerfile.py holds the two together).
ACTION_INPUTS = {f.flag: key for key, f in FIELDS.items()
                 if key not in CLI_ONLY and key not in ACTION_INPUT_ALIASES.values()} | ACTION_INPUT_ALIASES


def action_input(env: Mapping[str, str], name: str) -> str | None:
    # Runners keep hyphens (INPUT_GITHUB-TOKEN); shells and docker run can only set underscores. Not
    # actions-toolkit's get_input: it knows only the hyphen spelling, and only os.environ.
    for key in (f"INPUT_{name.upper()}", f"INPUT_{name.upper().replace('-', '_')}"):
        if key in env:
            return env[key]
    return None


def from_action_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Raw values from INPUT_* variables. An empty input means 'not given', as Actions sends unset inputs."""
    raw: dict[str, Any] = {}
    for input_name, key in ACTION_INPUTS.items():
        value = action_input(env, input_name)
        if value is not None and value.strip() != "":
            raw[key] = (value, f"input {input_name}")
    return raw


def read_config_file(path: Path) -> dict[str, Any]:
    """Raw values from a TOML file. Keys are the flag names (kebab-case); snake_case is accepted too."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist", "create it or fix the config path") from None
    except OSError as exc:
        raise UsageError(f"config file {path} cannot be read ({exc.strerror})",
                         "point the config path at a readable TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML ({exc})", "fix the syntax at that place") from None
    by_flag = {f.flag: key for key, f in FIELDS.items()} | ACTION_INPUT_ALIASES
    raw: dict[str, Any] = {}
    for k, v in data.items():
        key = by_flag.get(k) or by_flag.get(k.replace("_", "-"))
        if key == "source":
            raise UsageError(f"config file {path}: {k!r} cannot be set in the file that the source directory holds",
                             "pass --source (or working-directory) instead")
        if key is None or key == "config_file":
            known = ", ".join(sorted(f.flag for f in FIELDS.values() if f.flag != "config"))
            raise UsageError(f"config file {path}: unknown key {k!r}", f"use one of: {known}")
        raw[key] = (v, f"{path}: {k}")
    return raw


def load(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         *, use_action_inputs: bool | None = None) -> Config:
    """Merge the three sources over the defaults and convert every value, or raise UsageError.

    `cli` holds only the flags the user actually gave (argparse with SUPPRESS defaults), keyed by field name.
    """
    env = os.environ if env is None else env
    if use_action_inputs is None:
        use_action_inputs = env.get("GITHUB_ACTIONS") == "true"
    cli_raw = {k: (v, FIELDS[k].cli_flag) for k, v in (cli or {}).items() if v is not None}
    action_raw = from_action_env(env) if use_action_inputs else {}

    values: dict[str, Any] = {}
    for layer in (action_raw, cli_raw):  # the file's location comes from these two
        for key, (raw, where) in layer.items():
            values[key] = FIELDS[key].convert(raw, where)
    source: Path = values.get("source", Config.source)
    config_file: Path | None = values.get("config_file")
    if config_file is not None:
        config_file = config_file if config_file.is_absolute() else source / config_file
    elif (source / CONFIG_FILE_NAME).is_file():
        config_file = source / CONFIG_FILE_NAME
    if config_file is not None:
        in_file = read_config_file(config_file)
        values = {key: FIELDS[key].convert(raw, where) for key, (raw, where) in in_file.items()} | values
    cfg = Config(**(values | {"config_file": config_file}))
    _check_together(cfg)
    return cfg


def _check_together(cfg: Config) -> None:
    """Everything about the inputs that can be known without building or asking AWS, checked before any work."""
    seen: set[str] = set()
    for spec in cfg.functions:
        if spec.short_name in seen:
            raise UsageError(f"function {spec.short_name!r} is listed twice", "list each function once")
        seen.add(spec.short_name)
    limits.check_deploy_inputs(functions=[f.name for f in cfg.functions], regions=cfg.regions,
                               layer_name=cfg.layer_name, layer_mode=cfg.layer_mode,
                               principals=cfg.layer_permissions, alias=cfg.alias, publish=cfg.publish,
                               bucket=cfg.s3_bucket)
    if cfg.endpoint_url is not None:
        url = urllib.parse.urlparse(cfg.endpoint_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise UsageError(f"endpoint URL {cfg.endpoint_url!r} is not an http(s) URL",
                             "give one such as http://localhost:4566, or leave it out for AWS")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UsageError(f"output directory {cfg.out} is a file", "point --out at a directory (it is created)")
    if cfg.smoke:
        from go_arm_lambda.smoke import load_event  # the runner owns the event format; fail now, not after the build

        load_event(cfg.smoke_event)
