"""Properties of the readers of user input: whatever a user types (a flag, an `INPUT_*` value, a config file, an
event), the answer is a value or a UsageError (exit 2) that says what is wrong; never another exception, which
the CLI could only call an internal error.

Hypothesis generates the inputs; EXAMPLES says how many each property tries per run (the issue asked for the
count: `sum(EXAMPLES.values())` per run).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from go_arm_lambda import config, inputs
from go_arm_lambda.errors import UsageError

EXAMPLES = {"flags": 300, "action inputs": 300, "config file": 200, "config text": 200, "event text": 300,
            "event file": 150, "event json": 150, "event depth": 60}
_SETTINGS: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

# What people and attackers actually type, mixed into the random text.
_NASTY = ["", " ", "0", "-1", "1e309", "inf", "nan", "١٢٣٤٥٦٧٨٩٠١٢", "us-east-١", "²", "٨", "eu-west-1", "true",
          "@/dev/zero", "@/nonexistent", "@", "{}", "[" * 5000, "arn:aws:lambda:", "arn:aws:s3:::b", "a=b=c",
          "x=./cmd/hello/main.go", "\u200b", "\ufeff", "\r\n", "v8.2,lse", "canary:10:5m", "org:o-", "*"]
_TEXT = st.one_of(st.text(), st.sampled_from(_NASTY), st.text(alphabet="0123456789.-:=,@ \n/ab١٢"))


def _reads_or_refuses(read: Callable[[], object]) -> object:
    """The property itself: a value, or a UsageError with a fix and one line; anything else fails the test."""
    try:
        return read()
    except UsageError as exc:
        assert exc.exit_code == 2 and exc.what and "\n" not in exc.what, repr(exc)
        return exc


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory the examples share (each rewrites the files it needs); the current directory meanwhile, so
    relative paths in generated input land here."""
    directory = tmp_path_factory.mktemp("properties")
    before = Path.cwd()
    os.chdir(directory)
    try:
        yield directory
    finally:
        os.chdir(before)


# --- flags ---------------------------------------------------------------------------------------------------

_FLAG_ROWS = {key: row for key, row in config.FIELDS.items() if row.commands}


@st.composite
def _flags(draw: st.DrawFn) -> dict[str, Any]:
    """What argparse hands config: a bool for a switch, a list for a repeated flag, else one string."""
    keys = draw(st.lists(st.sampled_from(sorted(_FLAG_ROWS)), max_size=4, unique=True))
    given: dict[str, Any] = {}
    for key in keys:
        row = _FLAG_ROWS[key]
        given[key] = (draw(st.booleans()) if row.switch else draw(st.lists(_TEXT, max_size=3)) if row.repeat
                      else draw(_TEXT))
    return given


@settings(max_examples=EXAMPLES["flags"], **_SETTINGS)
@given(flags=_flags())
def test_any_flags_give_a_config_or_a_usage_error(place: Path, flags: dict[str, Any]) -> None:
    # argv cannot hold NUL; everything else can arrive, even unpaired surrogates from undecodable bytes.
    flags = {k: [x.replace("\0", "") for x in v] if isinstance(v, list) else
             v.replace("\0", "") if isinstance(v, str) else v for k, v in flags.items()}
    got = _reads_or_refuses(lambda: config.load({"source": str(place), **flags}, env={}))
    if isinstance(got, config.Config):
        for key, value in flags.items():
            if _FLAG_ROWS[key].switch:
                assert getattr(got, key) is value


# --- INPUT_* -------------------------------------------------------------------------------------------------

@settings(max_examples=EXAMPLES["action inputs"], **_SETTINGS)
@given(values=st.dictionaries(st.sampled_from(sorted(config.ACTION_INPUTS)), _TEXT, max_size=5),
       underscores=st.booleans())
def test_any_action_inputs_give_a_config_or_a_usage_error(place: Path, values: dict[str, str],
                                                          underscores: bool) -> None:
    env = {"GITHUB_ACTIONS": "true"} | {
        f"INPUT_{name.upper().replace('-', '_') if underscores else name.upper()}": value.replace("\0", "")
        for name, value in values.items()}  # the environment cannot hold NUL either
    env.setdefault("INPUT_WORKING-DIRECTORY", str(place))
    _reads_or_refuses(lambda: config.load({}, env=env))


# --- the config file -------------------------------------------------------------------------------------------

def _toml_string(text: str) -> str:
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c
                      for c in text)
    return f'"{escaped}"'


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml(v)}" for k, v in value.items()) + "}"


_TOML_VALUES = st.recursive(
    st.one_of(_TEXT, st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=8)
_FILE_KEYS = sorted({n for row in config.FIELDS.values() for n in (row.name, row.action_name) if n}
                    | {row.key for row in config.FIELDS.values()})


@settings(max_examples=EXAMPLES["config file"], **_SETTINGS)
@given(document=st.dictionaries(st.one_of(st.sampled_from(_FILE_KEYS), _TEXT), _TOML_VALUES, max_size=5))
def test_any_config_file_gives_a_config_or_a_usage_error(place: Path, document: dict[str, Any]) -> None:
    path = place / "structured.toml"
    path.write_text("".join(f"{_toml_string(k)} = {_toml(v)}\n" for k, v in document.items()), encoding="utf-8")
    _reads_or_refuses(lambda: config.load({"source": str(place), "config_file": str(path)}, env={}))


@settings(max_examples=EXAMPLES["config text"], **_SETTINGS)
@given(text=st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["a = " + "[" * 5000 + "]" * 5000, "a = {" * 3000, '[functions]\nx = 1\n'])))
def test_any_config_text_gives_a_config_or_a_usage_error(place: Path, text: str) -> None:
    path = place / "raw.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _reads_or_refuses(lambda: config.read_config_file(path))
    _reads_or_refuses(lambda: config.load({"source": str(place), "config_file": str(path)}, env={}))


# --- the event -------------------------------------------------------------------------------------------------

@settings(max_examples=EXAMPLES["event text"], **_SETTINGS)
@given(text=_TEXT)
def test_any_event_text_gives_bytes_or_a_usage_error(place: Path, text: str) -> None:
    got = _reads_or_refuses(lambda: config.load_event(text))
    if isinstance(got, bytes) and not text.startswith("@"):
        assert got == text.encode()


@settings(max_examples=EXAMPLES["event file"], **_SETTINGS)
@given(content=st.one_of(st.binary(), st.text().map(str.encode)))
def test_any_event_file_gives_its_bytes_or_a_usage_error(place: Path, content: bytes) -> None:
    (place / "event.json").write_bytes(content)
    got = _reads_or_refuses(lambda: config.load_event("@event.json"))
    if isinstance(got, bytes):
        assert got == content


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False,
                                                                                   allow_infinity=False), st.text()),
                     lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner,
                                                                                         max_size=4)),
                     max_leaves=20)


@settings(max_examples=EXAMPLES["event json"], **_SETTINGS)
@given(value=_JSON)
def test_every_json_document_is_an_event(place: Path, value: Any) -> None:
    text = json.dumps(value)
    assert config.load_event(text) == text.encode()


@settings(max_examples=EXAMPLES["event depth"], **_SETTINGS)
@given(depth=st.integers(0, 200_000), opener=st.sampled_from(["[", '{"a":']))
def test_nesting_of_any_depth_gives_bytes_or_a_usage_error(place: Path, depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * depth + "1" + closer * depth
    got = _reads_or_refuses(lambda: config.load_event(text))
    assert isinstance(got, bytes) or "too deeply" in str(got) or "larger than" in str(got)


def test_the_converters_alone_give_a_value_or_a_usage_error() -> None:
    """The same property for each converter on its own, over the nasty values, so a new converter is held to it
    the day it is added to the table."""
    converters = {row.convert for row in config.FIELDS.values()} | {inputs.scalar, inputs.split_list}
    for convert in converters:
        for raw in [*_NASTY, ["a", 1], {"t": 1}, 3, 2.5, True, None, "\0"]:
            _reads_or_refuses(lambda convert=convert, raw=raw: convert(raw, "--x"))  # type: ignore[misc]
