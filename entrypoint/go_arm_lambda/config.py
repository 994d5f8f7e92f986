"""All inputs in one typed object, and the one table that describes them: `Config`.

Each field of `Config` is an input, declared with `inputs.setting()`: its default, converter, help text, CLI
flag, Action input and config-file key in one place. The argparse parsers, action.yml's inputs and the README's
input list and CLI synopsis are generated from it (`python -m go_arm_lambda.docs --write`), and tests hold them
to it. A new input is one field here, then that command.

Three sources: CLI flags beat `INPUT_*` variables (GitHub Actions), which beat the config file
(`go-arm-lambda.toml` in the source directory, or `--config`), which beats the defaults. Under Actions,
action.yml defaults never reach `docker run`, so the defaults here are the only ones that count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import os
import re
import shutil
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from go_arm_lambda import inputs, limits
from go_arm_lambda.errors import UsageError
from go_arm_lambda.inputs import BUILD, DEPLOY, MOVES, PROMOTE, ROLLOUT, Choice, Input, setting

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
        parts = self.name.split(":")
        # Read before the name is checked (the "listed twice" rule): a malformed ARN is its own short name.
        return parts[6] if self.name.startswith("arn:") and len(parts) > 6 else self.name


def parse_function(text: str, where: str) -> FunctionSpec:
    name, sep, package = text.partition("=")
    name, package = name.strip(), package.strip()
    if not sep or not name or not package:
        raise UsageError(f"{where}: {text!r} is not NAME=PACKAGE",
                         "write each function as NAME=PACKAGE, e.g. orders-api=./cmd/orders")
    return FunctionSpec(name, package)


def _functions(raw: Any, where: str) -> tuple[FunctionSpec, ...]:
    table_form = 'write each as NAME = "PACKAGE" under [functions], e.g. orders-api = "./cmd/orders"'
    if isinstance(raw, Mapping):  # [functions] table in the config file: name = "package"
        for k, v in raw.items():
            if not isinstance(v, str):
                raise UsageError(f"{where}: function {k!r} is given as {type(v).__name__}, not its package "
                                 "as a string", table_form)
        return tuple(parse_function(f"{k}={v}", where) for k, v in raw.items())
    if isinstance(raw, list | tuple) and any(isinstance(item, Mapping) for item in raw):
        raise UsageError(f"{where} holds a table where NAME=PACKAGE is expected",
                         f'{table_form}, or as a list of "NAME=PACKAGE" strings')
    # One per line or comma separated, `NAME = PACKAGE` spacing allowed, `#` lines are comments (the TOML
    # habit carries over into the Action's multi-line input).
    items = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else None
    if items is None:
        raise UsageError(f"{where} must be NAME=PACKAGE lines, not {raw!r}", "write one NAME=PACKAGE per line")
    lines = [line.strip() for item in items for line in re.split(r"[,\n]", inputs.scalar(item, where))]
    return tuple(parse_function(line, where) for line in lines if line and not line.startswith("#"))


# Commands beyond build/deploy that share an input's flag (they read it without the file or INPUT_*).
_JSON_OUTPUT = (*BUILD, *MOVES, "verify", "smoke", "layer package", "layer upload", "doctor")


@dataclass(frozen=True)
class Config:
    """The input table. Field order is the order of `--help`, action.yml and the README."""

    source: Path = setting(
        Path("."), inputs.path, "Directory with the Go source (the module root or above it; in the Action, "
        "relative to the workspace); packages and the config file are found relative to it.",
        commands=(*BUILD, *MOVES),
        action="working-directory", in_file=False,
        metavar="DIR")
    config_file: Path | None = setting(
        None, inputs.optional_path, f"The config file, relative to the source directory; without it, "
        f"{CONFIG_FILE_NAME} there when it exists.", commands=(*BUILD, *MOVES), name="config", in_file=False,
        metavar="FILE")
    functions: tuple[FunctionSpec, ...] = setting(
        (), _functions, "The functions, each as NAME=PACKAGE (e.g. `orders-api=./cmd/orders`): NAME is the Lambda "
        "function's name or ARN, PACKAGE its Go main package relative to the source directory. Repeat the flag; "
        "in the input, one per line or comma separated.", commands=(*BUILD, *MOVES), flag="function", repeat=True,
        metavar="NAME=PACKAGE")
    out: Path = setting(Path(".go-arm-lambda/dist"), inputs.path, "Output directory for the binaries and zips.",
                        commands=BUILD, action=None, metavar="DIR")
    cache: bool = setting(
        True, inputs.boolean, "Reuse the zip, verify verdict and smoke result of every binary whose bytes were "
        "seen before, from the cache directory (keep it between runs, e.g. with actions/cache); a changed binary "
        "is always packaged, verified and smoke-tested again.", commands=BUILD)
    cache_dir: Path = setting(Path(".go-arm-lambda/cache"), inputs.path, "The cache directory.", commands=BUILD,
                              action=None, metavar="DIR")
    mode: str = setting(
        "layer", Choice(MODES), "`layer`: each binary keeps its own name, the function's Handler names it, and our "
        "/opt/bootstrap layer runs it (go1.x-style handlers keep working). `bootstrap`: each binary is named "
        "bootstrap, no layer.", commands=BUILD)
    runtime: str = setting(
        "provided.al2023", Choice(RUNTIMES), "Target runtime: provided.al2023 (glibc 2.34, supported to 2029) or "
        "provided.al2 (deprecated).", commands=(*BUILD, "verify", "smoke"))
    tags: tuple[str, ...] = setting((), inputs.split_list, "Extra Go build tags, comma separated (lambda.norpc is "
                                    "always set).", commands=BUILD, action="build-tags", metavar="T1,T2")
    ldflags: str = setting("", inputs.text, "Extra linker flags (-s -w is always set).", commands=BUILD,
                           metavar="FLAGS")
    goarm64: str = setting("v8.0", inputs.goarm64, "GOARM64 level, v8.0 to v8.2 (Lambda may run on Graviton2, so "
                           "nothing above v8.2).", commands=BUILD, metavar="LEVEL")
    cgo: bool = setting(False, inputs.boolean, "Build with CGO_ENABLED=1 and the aarch64 cross compiler.",
                        commands=BUILD)
    go: str = setting("go", inputs.text, "The go command: a name on PATH, or a path.", commands=BUILD, action=None,
                      metavar="PATH")
    verify: bool = setting(True, inputs.boolean, "Check each binary (arm64, static or glibc-compatible, "
                           "aws-lambda-go present) before shipping.", commands=BUILD)
    allow_custom_runtime_client: bool = setting(
        False, inputs.boolean, "Accept binaries without aws-lambda-go (own Runtime API client) with a warning "
        "instead of an error.", commands=(*BUILD, "verify"))
    smoke: bool = setting(True, inputs.boolean, "Invoke every function once under qemu against a local Lambda "
                          "Runtime API before deploying.", commands=BUILD)
    smoke_event: str = setting("{}", inputs.event, "The event for the smoke invocation, as JSON or @FILE.",
                               commands=BUILD, metavar="JSON|@FILE", also=(("smoke", "--event"),))
    smoke_timeout: float = setting(10.0, inputs.seconds, "Seconds to wait for a smoke invocation's response.",
                                   commands=BUILD, metavar="S", also=(("smoke", "--timeout"),))
    concurrency: int = setting(8, inputs.count, "Parallel builds and packaging; in a deploy, functions at a time in "
                               "each region (Lambda's quotas are per region).", commands=(*BUILD, *MOVES),
                               action=None, metavar="N")
    regions: tuple[str, ...] = setting(
        (), inputs.split_list, "AWS regions to deploy to (repeat the flag; in the input, comma or newline "
        "separated). The Action without regions builds, verifies, smoke-tests and packages only.",
        commands=(*DEPLOY, *MOVES), flag="region", repeat=True, metavar="REGION")
    layer_name: str = setting("go-arm-lambda-bootstrap", inputs.text, "Name of the bootstrap layer to publish "
                              "(layer mode).", commands=DEPLOY, metavar="NAME")
    layer_permissions: tuple[str, ...] = setting(
        (), inputs.split_list, "Who else may use the layer: 12-digit account ids, `*`, or `org:o-xxxxxxxxxx` "
        "(repeat the flag; in the input, comma or newline separated).", commands=DEPLOY, flag="layer-permission",
        repeat=True, metavar="PRINCIPAL")
    publish: bool = setting(False, inputs.boolean, "Publish a new function version after each update.",
                            commands=DEPLOY, action="publish-version")
    alias: str | None = setting(None, inputs.optional_text, "Alias to point at the published version (needs "
                                "publishing on); with promote-from, the alias to promote to.",
                                commands=(*DEPLOY, "rollback"), metavar="NAME")
    promote_from: str | None = setting(
        None, inputs.optional_text, "Promote instead of deploying: point the alias at the version this alias has "
        "(no build), with the same check and traffic options.", commands=PROMOTE, flag="from-alias",
        in_file=False, metavar="ALIAS")  # never from the file: a file shared by both jobs would promote in both
    to_alias: str | None = setting(None, inputs.optional_text, "The alias to promote to (in the Action and the "
                                   "config file: alias).", commands=PROMOTE, action=None, in_file=False,
                                   metavar="ALIAS")
    check_deployed: bool = setting(
        False, inputs.boolean, "After each update, invoke the new version in AWS (the published one, else "
        "$LATEST) and move the alias only when it answers. Off by default: invoking a production function can "
        "have effects.", commands=ROLLOUT)
    check_event: str | None = setting(None, inputs.optional_event, "The event for the deployed-version check, as "
                                      "JSON or @FILE (default: the smoke event).", commands=ROLLOUT,
                                      metavar="JSON|@FILE")
    check_timeout: float = setting(30.0, inputs.seconds, "Seconds the deployed-version check waits for its "
                                   "answer.", commands=ROLLOUT, metavar="S")
    check_expect: str | None = setting(None, inputs.pattern, "A regular expression the check's response payload "
                                       "must contain.", commands=ROLLOUT, metavar="REGEX")
    traffic: inputs.Traffic = setting(
        inputs.ALL_AT_ONCE, inputs.traffic, "How the alias moves to the new version: `all-at-once`, "
        "`canary:PERCENT:DURATION` (e.g. canary:10:5m) or `linear:PERCENT:DURATION` (e.g. linear:20:1m), through "
        "the alias's routing configuration; all functions of a run shift together.", commands=ROLLOUT,
        metavar="SPEC")
    alarms: tuple[str, ...] = setting(
        (), inputs.lines, "CloudWatch alarms watched while traffic shifts: any in ALARM puts every alias back on "
        "its old version and fails the run (repeat the flag; in the input, one per line).", commands=ROLLOUT,
        flag="alarm", repeat=True, metavar="NAME")
    s3_bucket: str | None = setting(
        None, inputs.optional_text, "Upload zips through this bucket (needed above 50 MB). It must be in the "
        "function's region: with several regions, `{region}` in the name stands for each.", commands=DEPLOY,
        metavar="BUCKET")
    s3_prefix: str = setting("go-arm-lambda/", inputs.text, "Key prefix for uploads to the S3 bucket.",
                             commands=DEPLOY, metavar="PREFIX")
    endpoint_url: str | None = setting(None, inputs.endpoint, "AWS endpoint URL override (LocalStack, moto); "
                                       "leave empty for AWS.", commands=(*DEPLOY, *MOVES, "layer upload"),
                                       metavar="URL")
    rate_limit: float = setting(
        15.0, inputs.per_second, "Lambda control-plane requests per second per region a deploy allows itself. AWS's "
        "quota is 15, for the whole account and region; lower it when other deploys run in the account at the same "
        "time. Throttled anyway, the deploy slows down further on its own.", commands=(*DEPLOY, *MOVES),
        metavar="N")
    dry_run: bool = setting(False, inputs.boolean, "Build, check and show the plan, but change nothing in AWS.",
                            commands=(*DEPLOY, *MOVES))
    allow_older: bool = setting(
        False, inputs.boolean, "Under GitHub Actions each deployed function is tagged with its workflow, run "
        "number and commit, and a run older than the one that last deployed a function (same workflow) does not "
        "deploy it. This deploys it anyway, for a deliberate re-run of an older run.", commands=DEPLOY)
    report: Path | None = setting(None, inputs.optional_path, "Write the JSON job report to this file (the Action "
                                  "always writes .go-arm-lambda/report.json).", commands=(*DEPLOY, *MOVES),
                                  action=None, metavar="FILE")
    # The pull-request comment is the Action's alone: the CLI writes no comment, so these have no flags.
    github_token: str | None = setting(None, inputs.optional_text, "Token for the pull request comment; needs "
                                       "`pull-requests: write`.", action_default="${{ github.token }}", secret=True)
    comment: str = setting(
        "auto", Choice(COMMENT_POLICIES), "Sticky pull request comment: `auto` (on pull request events), `always`, "
        "or `never`. On a fork's pull request the token is read-only: a warning and the job summary instead.")
    comment_id: str = setting("default", inputs.text, "Tells this job's comment apart from another job's on the "
                              "same pull request.")
    pr_number: int | None = setting(None, inputs.optional_count, "Pull request to comment on, when the event "
                                    "payload has none (e.g. workflow_dispatch).")
    json: bool = setting(False, inputs.boolean, "Print one JSON document instead of text.", commands=_JSON_OUTPUT,
                         action=None)

    @property
    def layer_mode(self) -> bool:
        return self.mode == "layer"

    @property
    def deployed_check_event(self) -> str:
        """The deployed-version check's event as given (JSON or @FILE): its own, else the smoke event."""
        return self.check_event if self.check_event is not None else self.smoke_event


def _rows() -> dict[str, Input]:
    rows = {}
    for f in dataclasses.fields(Config):
        row: Input = f.metadata["input"]
        rows[f.name] = dataclasses.replace(row, key=f.name, default=f.default,
                                           name=row.name or f.name.replace("_", "-"))
    return rows


# Every input by its Config field.
FIELDS: dict[str, Input] = _rows()
# The Action's inputs, as action.yml declares them: input name -> Config field.
ACTION_INPUTS: dict[str, str] = {row.action_name: key for key, row in FIELDS.items() if row.action_name}
# Config-file keys: an input's name or its Action input's name, kebab-case or snake_case.
_FILE_KEYS: dict[str, str] = {n: key for key, row in FIELDS.items()
                              for n in (row.name, row.action_name) if n}


# The command this run serves ("build", "smoke", "action", ...): messages name the inputs as its user gives them.
# The CLI sets it for the run (`speaking_to`); a library caller leaves it "", and messages then name both ways.
_surface = ""


@contextlib.contextmanager
def speaking_to(command: str) -> Iterator[None]:
    global _surface
    before, _surface = _surface, command
    try:
        yield
    finally:
        _surface = before


def say(key: str, value: str | None = None) -> str:
    """How this run's user gives input `key` (optionally with `value`): `--smoke-event`, `--event` in the smoke
    command, `the smoke-event input` in the Action. Every message that names an input words it with this."""
    return FIELDS[key].say(_surface, value)


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
    """Raw values from a TOML file. Keys are the inputs' names (kebab-case); snake_case is accepted too."""
    what = f"config file {path}"
    data_bytes = read_input_file(path, what, f"point {say('config_file')} at a TOML file, or create it",
                                 MAX_CONFIG, "the limit for a config file")
    try:
        data = tomllib.loads(data_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} is not valid TOML ({exc})", "fix the syntax at that place") from None
    except RecursionError:
        raise UsageError(f"{what} nests arrays or tables too deeply to read", "flatten it") from None
    raw: dict[str, Any] = {}
    for k, v in data.items():
        key = _FILE_KEYS.get(k) or _FILE_KEYS.get(k.replace("_", "-"))
        if key is None:
            known = ", ".join(sorted(row.name for row in FIELDS.values() if row.in_file))
            raise UsageError(f"config file {path}: unknown key {k!r}", f"use one of: {known}")
        row = FIELDS[key]
        if not row.in_file:  # the file's own location, or the directory that holds it
            raise UsageError(f"config file {path}: {k!r} cannot be set in the file", f"give it as {say(key)} instead")
        raw[key] = (v, f"{path}: {k}")
    return raw


def convert_flags(cli: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values from the flags the user gave, keyed by field; an unknown key is a bug, not input."""
    return {k: FIELDS[k].convert(v, FIELDS[k].cli_flag) for k, v in cli.items() if v is not None}


def load(cli: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         *, use_action_inputs: bool | None = None, command: str | None = None) -> Config:
    """Merge the three sources over the defaults and convert every value, or raise UsageError.

    `cli` holds only the flags the user actually gave (argparse with SUPPRESS defaults), keyed by field name.
    `command` says which rules apply ("promote", "rollback"); None: "promote" when promote-from is given (the
    Action), else "deploy".
    """
    env = os.environ if env is None else env
    if use_action_inputs is None:
        use_action_inputs = env.get("GITHUB_ACTIONS") == "true"
    action_raw = from_action_env(env) if use_action_inputs else {}

    # The file's location comes from these two.
    values = {key: FIELDS[key].convert(raw, where) for key, (raw, where) in action_raw.items()}
    values |= convert_flags(cli or {})
    # Where each value came from, in the user's words (`--smoke-event`, `input smoke-event`, `FILE: key`).
    origin = {key: where for key, (_, where) in action_raw.items()}
    origin |= {key: FIELDS[key].cli_flag for key, v in (cli or {}).items() if v is not None}
    source: Path = values.get("source", Config.source)
    config_file: Path | None = values.get("config_file")
    if config_file is not None:
        config_file = config_file if config_file.is_absolute() else source / config_file
    elif _holds_config_file(source):
        config_file = source / CONFIG_FILE_NAME
    if config_file is not None:
        in_file = read_config_file(config_file)
        values = {key: FIELDS[key].convert(raw, where) for key, (raw, where) in in_file.items()} | values
        origin = {key: where for key, (_, where) in in_file.items()} | origin
    if values.get("to_alias") is not None:  # promote's name for the alias a deploy moves
        values["alias"] = values["to_alias"]
    cfg = Config(**(values | {"config_file": config_file}))
    command = command or ("promote" if cfg.promote_from else "deploy")
    _check_together(cfg, command, origin)
    return dataclasses.replace(cfg, **_events_read(cfg, command, origin))


def _holds_config_file(source: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(source / CONFIG_FILE_NAME).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:  # a name too long, a loop, no permission: the source itself is unusable
        raise UsageError(f"source directory {source} cannot be used ({exc.strerror or exc})",
                         f"fix {say('source')}") from None


def _check_together(cfg: Config, command: str, origin: Mapping[str, str]) -> None:
    """Everything about the inputs that can be known without building or asking AWS, checked before any work."""
    seen: set[str] = set()
    for spec in cfg.functions:
        if spec.short_name in seen:
            raise UsageError(f"function {spec.short_name!r} is listed twice", "list each function once")
        seen.add(spec.short_name)
    # promote and rollback point aliases at versions that are published already
    publish = cfg.publish or command in inputs.MOVES
    limits.check_deploy_inputs(functions=[f.name for f in cfg.functions], regions=cfg.regions,
                               layer_name=cfg.layer_name, layer_mode=cfg.layer_mode,
                               principals=cfg.layer_permissions, alias=cfg.alias, publish=publish,
                               bucket=cfg.s3_bucket, say=say)
    given = [say(key) for key in ("check_event", "check_expect") if getattr(cfg, key) is not None]
    limits.check_rollout_inputs(command=command, alias=cfg.alias, promote_from=cfg.promote_from,
                                publish=publish, gradual=cfg.traffic.gradual,
                                alarms=cfg.alarms, check_deployed=cfg.check_deployed, check_options=given, say=say)
    if cfg.go != Config.go and shutil.which(cfg.go) is None:
        why = ("does not exist" if not os.path.lexists(cfg.go) else "is not an executable file") if os.sep in cfg.go \
            else "is not on PATH"
        raise UsageError(f"go command {cfg.go!r} {why}",
                         f"give {say('go')} the path of a go binary, or leave it out to use go from PATH")
    check_output(cfg.out, f"output directory {cfg.out}", directory=True,
                 fix=f"point {say('out')} at a directory that can be created or written")
    if cfg.report is not None:
        check_output(cfg.report, f"report file {cfg.report}", directory=False,
                     fix=f"point {say('report')} at a file in a writable directory")


def _events_read(cfg: Config, command: str, origin: Mapping[str, str]) -> dict[str, str]:
    """The events this run sends, read and checked once, here: an @FILE is replaced by the JSON it held, so the
    smoke runner and the deployed-version check send exactly the bytes that were checked, without reading the
    file again (a text that is not UTF-8 stays as given: its bytes would not survive the round trip). promote
    and rollback build nothing, so they send no smoke event (unless as the check's)."""
    keys = ["smoke_event"] if cfg.smoke and command not in inputs.MOVES else []
    if cfg.check_deployed and command in inputs.ROLLOUT:
        keys.append("check_event" if cfg.check_event is not None else "smoke_event")
    read = {}
    for key in dict.fromkeys(keys):
        data = load_event(getattr(cfg, key), origin.get(key) or say(key))
        with contextlib.suppress(UnicodeDecodeError):
            read[key] = data.decode("utf-8")
    return read


# --- the smoke event: read with the other inputs, so that a bad one stops the job before the build ----------

MAX_CONFIG = 1024 * 1024  # bytes of go-arm-lambda.toml: a config file is a few lines, anything near this is not one


def load_event(text: str, where: str | None = None) -> bytes:
    """An event input's value: inline JSON, or `@FILE`. Returns the bytes to send, after checking they are JSON
    and within Lambda's payload limit. `where` names the input as the user gave it (`--smoke-event`, `input
    smoke-event`, `go-arm-lambda.toml: smoke-event`); by default, as this run's user gives the smoke event."""
    where = where or say("smoke_event")
    if not text.startswith("@"):
        data = text.encode()
        check_event(data, where)
        return data
    path = Path(text[1:])
    what = f"event file {str(path)!r}"
    data = read_input_file(path, what, f"give {where} @PATH of a JSON file, or the JSON itself", limits.MAX_EVENT,
                           "Lambda's limit for an invocation payload")
    check_event(data, what)
    return data


def check_event(data: bytes, what: str) -> None:
    """An event Lambda would accept: JSON, within the payload limit; `what` names it in the error."""
    if len(data) > limits.MAX_EVENT:
        raise UsageError(f"{what} is larger than {limits.MAX_EVENT:,} bytes, Lambda's limit for an invocation payload",
                         "give a smaller event")
    problem = _json_problem(data)
    if problem == "too deep":
        raise UsageError(f"{what} nests arrays or objects too deeply for a JSON reader",
                         "give an event with a sane depth, as Lambda's own runtimes need to parse it")
    if problem is not None:
        raise UsageError(f"{what} is not valid JSON ({problem})",
                         "give a JSON document, e.g. {\"name\": \"Ada\"}, or @FILE naming a JSON file")


@functools.lru_cache(maxsize=4)
def _json_problem(data: bytes) -> str | None:
    """Why `data` is not JSON; None when it is. Remembered: config.load checks the run's events, and the smoke
    runner checks its event again for each of 200 functions, up to 6 MB each time."""
    try:
        json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both
        return str(exc)
    except RecursionError:  # Python's parser is recursive: 100,000 nested arrays exhaust the stack
        return "too deep"
    return None


def read_input_file(path: Path, what: str, fix: str, limit: int, limit_name: str) -> bytes:
    """A file the user gave us, read whole: a regular file (or a link to one) of at most `limit` bytes."""
    check_regular_file(path, what, fix)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)  # one byte more than allowed is enough to refuse it
    except OSError as exc:
        raise UsageError(f"{what} cannot be read: {exc.strerror or exc}", fix) from None
    if len(data) > limit:
        raise UsageError(f"{what} is larger than {limit:,} bytes, {limit_name}", fix)
    return data


def check_output(path: Path, what: str, *, directory: bool, fix: str) -> None:
    """An output path, checked before any work so that a finished job never fails on where it reports: it
    exists as the right kind (a directory, or a regular file) and can be written, or its nearest existing
    parent is a directory that can be written (the rest is created)."""
    try:
        _check_output(path, what, directory=directory, fix=fix)
    except OSError as exc:  # a name too long, a symlink loop: a path the system cannot even look up
        raise UsageError(f"{what} cannot be used ({exc.strerror or exc})", fix) from None


def _check_output(path: Path, what: str, *, directory: bool, fix: str) -> None:
    if path.exists() or path.is_symlink():
        kind_ok = path.is_dir() if directory else path.is_file()
        if not kind_ok:
            is_what = "a directory" if path.is_dir() else "a file" if path.is_file() else "not a regular file"
            raise UsageError(f"{what} is {is_what}", fix)
        # A file is replaced by renaming a new one onto it: its directory is what must be writable.
        if not os.access(path if directory else path.parent, os.W_OK | os.X_OK):
            raise UsageError(f"{what} cannot be written (permission denied)", fix)
        return
    parent = path.parent
    while not (parent.exists() or parent.is_symlink()) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{what} cannot be created: {parent} is not a directory", fix)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} cannot be created: {parent} cannot be written (permission denied)", fix)


def check_regular_file(path: Path, what: str, fix: str) -> None:
    """Inputs are read whole: a FIFO would block the reader and a device (/dev/zero) never ends, so only a
    regular file (or a link to one) is taken."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        why = "does not exist" if exc.errno == errno.ENOENT else f"cannot be read: {exc.strerror or exc}"
        raise UsageError(f"{what} {why}", fix) from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{what} is a directory", fix)
    if not stat.S_ISREG(mode):
        raise UsageError(f"{what} is not a regular file", fix)
