"""The README's input list and CLI synopsis, and action.yml's inputs, generated from the input table and the
parsers built from it, so that none of them is kept up to date by hand.

`python -m go_arm_lambda.docs --write` rewrites each section between its `BEGIN generated: NAME` and
`END generated: NAME` lines; without `--write` it names the stale ones and exits 1. tests/test_config.py
fails while one is stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from go_arm_lambda import cli, config
from go_arm_lambda.inputs import Input

WIDTH = 116
COMMAND = "python -m go_arm_lambda.docs --write"
NONE = "–"


def _flag(row: Input) -> str:
    if row.switch:
        return f"--[no-]{row.cli_flag[2:]}"
    value = "|".join(row.choices) if row.choices else row.metavar or row.name.upper()
    return f"{row.cli_flag} {value}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def input_table() -> str:
    """Markdown: one line per input, how each surface names it, its default and what it is."""
    rows = ["| Action input | CLI flag | config-file key | default | what it is |", "|---|---|---|---|---|"]
    for row in config.FIELDS.values():
        default = row.action_default or row.shown_default
        cells = [f"`{row.action_name}`" if row.action_name else NONE,
                 f"`{_flag(row)}`" if row.commands else NONE,
                 f"`{row.name}`" if row.in_file else NONE,
                 f"`{default}`" if default is not None else NONE,
                 row.help]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    action_only = [f"`{r.action_name}`" for r in config.FIELDS.values() if not r.commands]
    cli_only = [f"`{r.cli_flag}`" for r in config.FIELDS.values() if r.commands and not r.action_name]
    renamed = [f"`{r.action_name}`" for r in config.FIELDS.values()
               if r.in_file and r.action_name not in (None, r.name)]
    notes = [f"Every Action input is also a CLI flag except {', '.join(action_only)}: only the Action writes the "
             "pull-request comment.",
             f"CLI only, because the Action decides them itself: {', '.join(cli_only)}.",
             f"The config file also takes the Action's names for its keys ({', '.join(renamed)})."]
    return "\n".join([*rows, "", *[textwrap.fill(n, WIDTH) for n in notes]]) + "\n"


def _synopsis_item(action: argparse.Action) -> str:
    if not action.option_strings:  # a positional
        metavar = str(action.metavar or action.dest.upper())
        return f"{metavar}…" if action.nargs in ("+", "*") else metavar
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        text = f"--[no-]{flag[2:]}"
    elif action.nargs == 0:
        text = flag
    else:
        value = "|".join(map(str, action.choices)) if action.choices else action.metavar or action.dest.upper()
        text = f"{flag} {value}"
    if isinstance(action, argparse._AppendAction):
        text += " …"
    return text if action.required else f"[{text}]"


def cli_synopsis() -> str:
    """Every command and its flags, from the parsers themselves. A command that takes all of an earlier
    command's (many) flags says so instead of listing them again."""
    lines: list[str] = ["```"]
    seen: dict[str, set[str]] = {}
    for name, parser in cli.subcommands(cli.build_parser()).items():
        shown = [a for a in parser._actions if not isinstance(a, argparse._HelpAction) and a.dest != "debug"]
        shown.sort(key=lambda a: (bool(a.option_strings), not a.required))  # as people type them
        dests = {a.dest for a in shown}
        items: list[str] = []
        for earlier, earlier_dests in seen.items():
            if len(earlier_dests) > 3 and earlier_dests <= dests:
                items.append(f"(every {earlier} flag)")
                shown = [a for a in shown if a.dest not in earlier_dests]
                break
        seen[name] = dests
        items += [_synopsis_item(a) for a in shown]
        prefix = f"go-arm-lambda {name}".ljust(22) + " "
        # Lines break between items, never inside one ("[--mode layer|bootstrap]").
        wrapped = textwrap.wrap(" ".join(i.replace(" ", "\0") for i in items), WIDTH, initial_indent=prefix,
                                subsequent_indent=" " * len(prefix), break_on_hyphens=False, break_long_words=False)
        lines += [line.replace("\0", " ") for line in wrapped] or [prefix.rstrip()]
    lines.append("```")
    return "\n".join(lines) + "\n"


def action_inputs() -> str:
    """action.yml's `inputs:` block. Every input is optional: the config file may give it instead."""
    lines = ["inputs:"]
    for row in config.FIELDS.values():
        if not row.action_name:
            continue
        lines += [f"  {row.action_name}:", "    description: >-"]
        lines += textwrap.wrap(row.help, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6,
                               break_on_hyphens=False, break_long_words=False)
        lines.append("    required: false")
        default = row.action_default or row.shown_default
        if default is not None:
            lines.append(f"    default: {json.dumps(default)}")  # a JSON string is a YAML string
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Section:
    file: str  # relative to the repository root
    name: str
    render: Callable[[], str]

    def _bounds(self, lines: list[str]) -> tuple[int, int]:
        begin, end = ([i for i, line in enumerate(lines)
                       if re.search(rf"{mark} generated: {self.name}\b", line, re.ASCII)]
                      for mark in ("BEGIN", "END"))
        if len(begin) != 1 or len(end) != 1 or begin[0] > end[0]:
            raise ValueError(f"{self.file} needs one 'BEGIN generated: {self.name}' line and one 'END ...' "
                             "line after it")
        return begin[0] + 1, end[0]

    def current(self, root: Path) -> str:
        lines = (root / self.file).read_text(encoding="utf-8").splitlines(keepends=True)
        start, stop = self._bounds(lines)
        return "".join(lines[start:stop])

    def write(self, root: Path) -> None:
        path = root / self.file
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        start, stop = self._bounds(lines)
        path.write_text("".join([*lines[:start], self.render(), *lines[stop:]]), encoding="utf-8")


SECTIONS = (Section("README.md", "inputs", input_table), Section("README.md", "cli", cli_synopsis),
            Section("action.yml", "inputs", action_inputs))


def stale(root: Path) -> list[Section]:
    return [s for s in SECTIONS if s.current(root) != s.render()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m go_arm_lambda.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the stale sections in place")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: .)")
    args = parser.parse_args(argv)
    found = stale(args.root)
    for section in found:
        if args.write:
            section.write(args.root)
            print(f"updated {section.file}: {section.name}")
        else:
            print(f"stale: {section.file}: {section.name} (run {COMMAND})")
    return 0 if args.write or not found else 1


if __name__ == "__main__":
    sys.exit(main())
