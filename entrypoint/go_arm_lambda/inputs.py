"""What an input is: the row type of the input table (`config.Config`), and the converters that turn raw text
from a flag, an `INPUT_*` variable or the config file into a typed value.

A row says everything the CLI, the Action, the config file and the docs need, so none of them restates it:
the flag and its `--no-` form, the Action input's name, the config-file key, the commands that take it, the
help text; its default is the `Config` field's own. `config.Config` declares each input with `setting()`.
"""

from __future__ import annotations

import json
import re
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
    name: str = ""  # kebab-case: the config-file key, and the flag and the input unless they differ
    key: str = ""  # the Config field
    default: Any = None

    @property
    def cli_flag(self) -> str:
        return f"--{self.flag or self.name}"

    @property
    def action_name(self) -> str | None:
        return None if self.action is None else self.action or self.name

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
    return str(raw).strip()


def split_list(raw: Any, where: str) -> tuple[str, ...]:
    """A list from a TOML array, repeated flags, or one string separated by commas, newlines or spaces.

    Repeats are dropped (first one wins): a region listed twice would otherwise be deployed twice at once.
    """
    if isinstance(raw, list | tuple):
        items = [scalar(x, where) for x in raw]
    elif isinstance(raw, str):
        # Action inputs are single strings; people write lists one per line, comma or space separated.
        items = re.split(r"[,\s]+", raw)
    else:
        raise UsageError(f"{where} must be a list of strings, not {raw!r}", "write it as a list or one per line")
    return tuple(dict.fromkeys(s.strip() for s in items if s.strip()))


def boolean(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = scalar(raw, where).lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise UsageError(f"{where}={raw!r} is not a boolean", "use true or false")


def count(raw: Any, where: str) -> int:
    try:
        value = int(scalar(raw, where))
    except ValueError:
        raise UsageError(f"{where}={raw!r} is not a whole number", "give a number such as 8") from None
    if value < 1:
        raise UsageError(f"{where}={value} must be at least 1", "give a positive number")
    return value


def optional_count(raw: Any, where: str) -> int | None:
    return count(raw, where) if scalar(raw, where) else None


def seconds(raw: Any, where: str) -> float:
    try:
        value = float(scalar(raw, where))
    except ValueError:
        raise UsageError(f"{where}={raw!r} is not a number", "give seconds, such as 10") from None
    # Lambda's own ceiling: a function that needs longer could not run on Lambda either.
    if not 0 < value <= limits.MAX_TIMEOUT_S:
        raise UsageError(f"{where}={value:g} is out of range",
                         f"give seconds from 1 to {limits.MAX_TIMEOUT_S}, such as 10")
    return value


def per_second(raw: Any, where: str) -> float:
    """A rate: a number of requests per second above 0."""
    try:
        value = float(scalar(raw, where))
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise UsageError(f"{where}={raw!r} is not a positive number", "give requests per second, such as 15")
    return value


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
