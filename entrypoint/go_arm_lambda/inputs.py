"""What an input is: the row type of the input table (`config.Config`), and the converters that turn raw text
from a flag, an `INPUT_*` variable or the config file into a typed value.

A row says everything the CLI, the Action, the config file and the docs need, so none of them restates it:
the flag and its `--no-` form, the Action input's name, the config-file key, the commands that take it, the
help text; its default is the `Config` field's own. `config.Config` declares each input with `setting()`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from go_arm_lambda import limits
from go_arm_lambda.errors import UsageError

# Each takes the raw value and where it came from ("--mode", "input mode", "go-arm-lambda.toml: mode").
Converter = Callable[[Any, str], Any]

# The commands that take the build's inputs; deploy-only inputs name ("deploy",).
BUILD = ("build", "deploy")
DEPLOY = ("deploy",)
PROMOTE = ("promote",)
MOVES = ("promote", "rollback")  # commands that move aliases between versions AWS already has: no build
ROLLOUT = ("deploy", "promote")  # the deployed-version check and the traffic shift


@dataclass(frozen=True)
class Input:
    """One row of the input table. `key` and `default` are filled in from the `Config` field it describes."""

    convert: Converter
    help: str  # one text for `--help`, action.yml and the README; the default is appended where shown
    commands: tuple[str, ...] = ()  # the CLI commands that take it as a flag; () = an Action-only input
    flag: str = ""  # the flag's name when it is not `name` (repeatable flags are singular: --region)
    action: str | None = ""  # the Action input's name when it is not `name`; None = not an Action input
    action_default: str | None = None  # action.yml's default when it cannot be the program's (a token)
    in_file: bool = True  # may be set in go-arm-lambda.toml
    repeat: bool = False  # the flag may be given more than once
    metavar: str = ""
    # (command, flag): a command's own flag that stands for this input (`smoke --event` for smoke-event).
    also: tuple[tuple[str, str], ...] = ()
    name: str = ""  # kebab-case: the config-file key, and the flag and the input unless they differ
    key: str = ""  # the Config field
    default: Any = None

    @property
    def cli_flag(self) -> str:
        return f"--{self.flag or self.name}"

    @property
    def action_name(self) -> str | None:
        return None if self.action is None else self.action or self.name

    def flag_of(self, command: str) -> str | None:
        """The flag this input has in `command`, or None when that command does not take it."""
        own = dict(self.also).get(command)
        return own or (self.cli_flag if command in self.commands else None)

    def say(self, surface: str, value: str | None = None) -> str:
        """How a user of `surface` (a CLI command, "action", or "" when unknown) gives this input, optionally
        with a value: `--region eu-west-1`, `--no-smoke`, `regions: eu-west-1`, `the smoke-event input`.
        Messages word their fixes with it, so they never name a flag the user cannot give."""
        if surface == "action" and self.action_name:
            return f"{self.action_name}: {value}" if value is not None else f"the {self.action_name} input"
        flag = self.flag_of(surface)
        if flag is None:  # unknown surface: both ways, as far as they exist
            flag = self.flag_of(self.commands[0]) if self.commands else None
            if flag is None or not self.action_name:
                return self.say("action" if flag is None else self.commands[0], value)
            return f"{self.say(self.commands[0], value)} (in the Action, {self.say('action', value)})"
        if value is None:
            return flag
        if self.switch and value in ("true", "false"):
            return flag if value == "true" else f"--no-{flag.removeprefix('--')}"
        return f"{flag} {value}"

    @property
    def switch(self) -> bool:
        """A true/false input: its flag has a --no- form, so the CLI can turn off what the file turned on."""
        return self.convert is boolean

    @property
    def choices(self) -> tuple[str, ...] | None:
        return self.convert.choices if isinstance(self.convert, Choice) else None

    @property
    def shown_default(self) -> str | None:
        """The default as a user writes it (`true`, `10`, `.`), or None when there is nothing to show."""
        value = self.default
        if value is None or value == () or value == "":
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


def setting(default: Any, convert: Converter, help: str, *, secret: bool = False, **row: Any) -> Any:
    """A `Config` field that is an input: the field's default is the input's default."""
    return field(default=default, repr=not secret, metadata={"input": Input(convert, help, **row)})


# --- converters --------------------------------------------------------------------------------------------

def scalar(raw: Any, where: str) -> str:
    """A value where one string is expected: a TOML table or array is a mistake, not text."""
    if isinstance(raw, dict | list | tuple):
        raise UsageError(f"{where} must be a single value, not {type(raw).__name__} {raw!r}",
                         "write it as a quoted string")
    if isinstance(raw, str) and "\0" in raw:
        # Only a TOML string can hold one (argv and the environment cannot): no path, name or flag takes it.
        raise UsageError(f"{where}={raw!r} holds a NUL character", "remove it")
    return str(raw).strip()


def split_list(raw: Any, where: str) -> tuple[str, ...]:
    """A list from a TOML array, repeated flags, or one string separated by commas, newlines or spaces.

    Repeats are kept: where one matters (a region given twice) the rules refuse it rather than hide it.
    """
    if isinstance(raw, list | tuple):
        items = [scalar(x, where) for x in raw]
    elif isinstance(raw, str):
        # Action inputs are single strings; people write lists one per line, comma or space separated.
        items = re.split(r"[,\s]+", raw, flags=re.ASCII)
    else:
        raise UsageError(f"{where} must be a list of strings, not {raw!r}", "write it as a list or one per line")
    return tuple(s.strip() for s in items if s.strip())


def boolean(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = scalar(raw, where).lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise UsageError(f"{where}={raw!r} is not a boolean", "use true or false")


# int() and float() also read Arabic-Indic and other Unicode digits: numbers are ASCII here, as AWS has them.
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", re.ASCII)


def count(raw: Any, where: str) -> int:
    text = scalar(raw, where)
    if not _WHOLE.fullmatch(text):
        raise UsageError(f"{where}={raw!r} is not a whole number", "give a number such as 8")
    value = int(text)
    if value < 1:
        raise UsageError(f"{where}={value} must be at least 1", "give a positive number")
    return value


def optional_count(raw: Any, where: str) -> int | None:
    return count(raw, where) if scalar(raw, where) else None


def seconds(raw: Any, where: str) -> float:
    text = scalar(raw, where)
    if not _DECIMAL.fullmatch(text):
        raise UsageError(f"{where}={raw!r} is not a number", "give seconds, such as 10")
    value = float(text)
    # Lambda's own range for a function's timeout: a function that needs longer could not run on Lambda either.
    if not 1 <= value <= limits.MAX_TIMEOUT_S:
        raise UsageError(f"{where}={value:g} is out of range",
                         f"give seconds from 1 to {limits.MAX_TIMEOUT_S}, such as 10")
    return value


# A rate below one request in ten seconds would stall a deploy for hours; one in the thousands is no limit at
# all (Lambda's own is 15), and one of 400 digits would be infinity.
MIN_RATE, MAX_RATE = 0.1, 10_000


def per_second(raw: Any, where: str) -> float:
    """A rate: a number of requests per second, from MIN_RATE to MAX_RATE."""
    text = scalar(raw, where)
    if not _DECIMAL.fullmatch(text) or float(text) <= 0:
        raise UsageError(f"{where}={raw!r} is not a positive number", "give requests per second, such as 15")
    rate = float(text)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UsageError(f"{where}={text} is out of range", f"give {MIN_RATE:g} to {MAX_RATE:,} requests per second, "
                         "such as 15")
    return rate


def text(raw: Any, where: str) -> str:
    return scalar(raw, where)


def optional_text(raw: Any, where: str) -> str | None:
    return scalar(raw, where) or None


def path(raw: Any, where: str) -> Path:
    return Path(scalar(raw, where))


def optional_path(raw: Any, where: str) -> Path | None:
    value = scalar(raw, where)
    return Path(value) if value else None


def event(raw: Any, where: str) -> str:
    """The smoke event: JSON text or @FILE; in the config file a TOML table is taken as the JSON object."""
    if isinstance(raw, dict | list):
        return json.dumps(raw)
    return scalar(raw, where)


def goarm64(raw: Any, where: str) -> str:
    value = scalar(raw, where)
    try:
        limits.check_goarm64(value)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.what}", exc.fix) from None
    return value


def optional_event(raw: Any, where: str) -> str | None:
    return event(raw, where) or None


def pattern(raw: Any, where: str) -> str | None:
    """A regular expression (Python's `re`, searched anywhere in the text), compiled here so a typo stops the
    job before anything is built."""
    value = scalar(raw, where)
    if not value:
        return None
    try:
        with warnings.catch_warnings():  # Python's notes on patterns it may read differently one day: not ours
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(value)
    except re.error as exc:
        raise UsageError(f"{where}={value!r} is not a valid regular expression ({exc})",
                         "fix the pattern, e.g. '\"status\": *\"ok\"'") from None
    return value


def lines(raw: Any, where: str) -> tuple[str, ...]:
    """A list of names that may hold spaces and commas (CloudWatch alarm names do): a TOML array, repeated
    flags, or one name per line."""
    if isinstance(raw, list | tuple):
        items = [scalar(x, where) for x in raw]
    elif isinstance(raw, str):
        items = raw.splitlines()
    else:
        raise UsageError(f"{where} must be a list of names, not {raw!r}", "write one name per line")
    return tuple(s.strip() for s in items if s.strip())


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Traffic:
    """How an alias moves to a new version: `all-at-once`, or a canary or linear shift through the alias's
    routing configuration. `percent` and `interval` (seconds) are unset for all-at-once."""

    kind: str  # "all-at-once" | "canary" | "linear"
    percent: float = 0.0
    interval: float = 0.0
    text: str = "all-at-once"  # as the user wrote it, to show back

    def __str__(self) -> str:
        return self.text

    @property
    def gradual(self) -> bool:
        return self.kind != "all-at-once"

    def stages(self) -> tuple[tuple[float, float], ...]:
        """(percent of traffic on the new version, seconds to hold it) in order; the last is (100, 0).
        canary:10:5m -> (10, 300), (100, 0); linear:30:1m -> (30, 60), (60, 60), (90, 60), (100, 0)."""
        if self.kind == "canary":
            return ((self.percent, self.interval), (100.0, 0.0))
        if self.kind == "linear":
            steps = int(100 // self.percent) - (100 % self.percent == 0)
            return (*(((i + 1) * self.percent, self.interval) for i in range(steps)), (100.0, 0.0))
        return ((100.0, 0.0),)

    @property
    def window(self) -> float:
        """Seconds the shift holds traffic split: the time a gradual deploy adds by design."""
        return sum(hold for _, hold in self.stages())


ALL_AT_ONCE = Traffic("all-at-once")


def endpoint(raw: Any, where: str) -> str | None:
    """An http(s) URL, or nothing (AWS itself). A converter, so every command that takes it checks it."""
    value = optional_text(raw, where)
    if value is not None:
        url = urllib.parse.urlparse(value)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise UsageError(f"endpoint URL {value!r} is not an http(s) URL",
                             "give one such as http://localhost:4566, or leave it out for AWS")
    return value


# A linear shift moves at least 1% a step (at most 100 alias updates per function), and a step holds at most a
# day: beyond either the deploy would, in effect, never finish.
_MIN_LINEAR_PERCENT = 1.0
_MAX_HOLD_S = 24 * 3600.0


def traffic(raw: Any, where: str) -> Traffic:
    """`all-at-once`, `canary:PERCENT:DURATION` or `linear:PERCENT:DURATION` (durations such as 30s, 5m, 1h)."""
    value = scalar(raw, where)
    fix = "use all-at-once, canary:PERCENT:DURATION or linear:PERCENT:DURATION, e.g. canary:10:5m or linear:20:1m"
    if value == "all-at-once":
        return ALL_AT_ONCE
    kind, _, rest = value.partition(":")
    percent_text, _, duration_text = rest.partition(":")
    if kind not in ("canary", "linear") or not percent_text or not duration_text:
        raise UsageError(f"{where}={value!r} is not a traffic shift", fix)
    if not _DECIMAL.fullmatch(percent_text):  # float() would also take "inf", "1e1" and other scripts' digits
        raise UsageError(f"{where}={value!r}: {percent_text!r} is not a percentage", fix)
    percent = float(percent_text)
    # Lambda takes a weight strictly between 0 and 1 for the additional version.
    if not 0 < percent < 100:
        raise UsageError(f"{where}={value!r}: the percentage must be above 0 and below 100", fix)
    if kind == "linear" and percent < _MIN_LINEAR_PERCENT:
        raise UsageError(f"{where}={value!r}: a linear shift moves at least {_MIN_LINEAR_PERCENT:g}% a step", fix)
    m = _DURATION.match(duration_text)
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else 0.0
    if not seconds > 0:
        raise UsageError(f"{where}={value!r}: {duration_text!r} is not a duration", fix)
    if seconds > _MAX_HOLD_S:
        raise UsageError(f"{where}={value!r}: {duration_text!r} is longer than a day", fix)
    return Traffic(kind, percent, seconds, value)


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words; the CLI also offers them to argparse, so `--help` lists them."""

    choices: tuple[str, ...]

    def __call__(self, raw: Any, where: str) -> str:
        value = scalar(raw, where)
        if value not in self.choices:
            listed = ", ".join(self.choices)
            raise UsageError(f"{where}={value!r} is not one of {listed}", f"use one of {listed}")
        return value
