"""The job report's four views: a text table for the terminal, Markdown for the job summary, the pull request
comment, and the Action's outputs. Pure, like report.py: they read a report and return text.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from go_arm_lambda.report import Report, built_only, changed, failed, rolled_back

# GitHub rejects a comment body longer than 65,536 characters; stay clearly below it.
COMMENT_LIMIT = 65_000
# One error or cell never needs more than this; a compiler dump belongs in the log, not in a table.
_ITEM_LIMIT = 1_000

_ICONS = {"ok": "✅ ok", "warnings": "⚠️ warnings", "failed": "❌ failed", "skipped": "➖ skipped"}


# --- small pieces shared by every view ----------------------------------------------------------------------

def fit(text: str, limit: int, note: str, *, measure: Callable[[str], int] = len) -> str:
    """`text` if it fits in `limit`, else its leading whole lines plus `note`, all within `limit`.

    `measure` is `len` for GitHub's character limits and UTF-8 length for the summary's byte limit.
    """
    if measure(text) <= limit:
        return text
    budget = limit - measure(note)
    if budget < 0:
        return ""
    kept: list[str] = []
    used = 0
    for line in text.splitlines(keepends=True):
        size = measure(line)
        if used + size > budget:
            break
        kept.append(line)
        used += size
    return "".join(kept) + note


def _shorten(text: str, limit: int = _ITEM_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _inline(text: Any) -> str:
    """One line of Markdown from arbitrary text: no line breaks, and `<` cannot open an HTML tag
    (Go prints `<nil>`, which GitHub would swallow)."""
    one_line = re.sub(r"\s*[\r\n]+\s*", " ", str(text), flags=re.ASCII)
    return _shorten(one_line.replace("<", "&lt;"))


def _cell(text: Any) -> str:
    """A Markdown table cell: `|` would end the cell and a newline the row."""
    escaped = _shorten(str(text)).replace("<", "&lt;").replace("|", "\\|")
    return re.sub(r"\r\n|\r|\n", "<br>", escaped)


def _code(text: Any) -> str:
    return f"`{text}`" if text not in (None, "") else "—"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def size_text(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _short_sha(sha: str | None) -> str:
    return sha[:12] if sha else "—"


def _version_alias(f: Mapping[str, Any]) -> str:
    version, alias = f.get("version"), f.get("alias")
    if alias:
        return f"{version or '—'} ({alias})"
    return str(version or "—")


def _result(value: str | None) -> str:
    return _ICONS.get(value or "", value or "—")


def _layer_arns(report: Report) -> dict[str, str]:
    """Only the layer versions that exist: not one a dry run would publish, nor one whose publishing failed."""
    layer = report.get("layer") or {}
    return {region: arn for region, arn in (layer.get("arns") or {}).items() if arn}


def _by_region(report: Report) -> dict[str, list[Mapping[str, Any]]]:
    regions: dict[str, list[Mapping[str, Any]]] = {}
    for f in report.get("functions", []):
        regions.setdefault(f.get("region") or "not deployed", []).append(f)
    return regions


def _headline(report: Report) -> str:
    functions = report.get("functions", [])
    regions = [r for r in _by_region(report) if r != "not deployed"]
    where = f" in {', '.join(regions)}" if regions else ""
    if failed(report):
        return f"❌ go-arm-lambda failed{where}"
    if built_only(report):
        return f"✅ go-arm-lambda {_what_was_done(functions)} {len(functions)} function(s); not deployed"
    if report.get("dry_run"):
        return f"🧪 go-arm-lambda dry run{where}: nothing was changed"
    if changed(report):
        return f"✅ go-arm-lambda deployed {len(functions)} function(s){where}"
    return f"✅ go-arm-lambda: {len(functions)} function(s) already up to date{where}"


def _what_was_done(functions: Sequence[Mapping[str, Any]]) -> str:
    """"built, verified, smoke-tested and packaged": the stages every function went through."""
    done = ["built"]
    if functions and all(f.get("verify", "skipped") != "skipped" for f in functions):
        done.append("verified")
    if functions and all(f.get("smoke", "skipped") != "skipped" for f in functions):
        done.append("smoke-tested")
    return ", ".join(done) + " and packaged"


def _context_line(report: Report, run_url: str | None = None) -> str:
    parts = [f"mode `{report.get('mode', '?')}`", f"runtime `{report.get('runtime', '?')}`"]
    if report.get("commit"):
        parts.append(f"commit {report.get('commit')}")
    if run_url:
        parts.append(f"[workflow run]({run_url})")
    parts.append(f"go-arm-lambda {report.get('tool_version', '?')}")
    return " · ".join(parts)


def timing_line(report: Report) -> str | None:
    """"⏱️ build 12.3 s · verify 0.21 s · smoke 1.05 s · total 14.0 s"; None when no stage ran."""
    timings = report.get("timings") or {}
    stages = timings.get("stages") or {}
    if not stages:
        return None
    parts = [f"{name} {seconds_text(took)}" for name, took in stages.items()]
    return "⏱️ " + " · ".join([*parts, f"total {seconds_text(timings.get('total') or 0.0)}"])


def seconds_text(value: float) -> str:
    """A duration for people: two decimals below ten seconds, where they tell, one above."""
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _layer_lines(report: Report) -> list[str]:
    layer = report.get("layer")
    if not layer:
        if report.get("mode") == "bootstrap":
            return ["No layer: bootstrap mode puts `bootstrap` in each function's zip."]
        return ["**Layer**: not published"]
    lines = [f"**Layer** `{layer.get('name')}` (sha256 {_short_sha(layer.get('sha256'))})"]
    regions = _layer_regions(report)
    lines += [f"- {region}: `{arn}` ({note})" if arn else f"- {region}: {note}" for region, arn, note in regions]
    if not regions:
        lines.append("- not published in any region")
    return lines


def _layer_regions(report: Report) -> list[tuple[str, str | None, str]]:
    """(region, ARN or None, what happened) for each region the deploy meant the layer for."""
    layer = report.get("layer") or {}
    arns, published = _layer_arns(report), layer.get("published") or {}
    sharing = layer.get("changes") or {}
    out = []
    for region in dict.fromkeys([*(layer.get("arns") or {}), *published]):
        arn = arns.get(region)
        if arn is None:
            # No version exists: a dry run would publish one, or publishing it failed (the errors say why).
            note = "new version (dry run)" if report.get("dry_run") else "not published"
        elif published.get(region) and not report.get("dry_run"):
            note = "published"
        else:
            note = "; ".join(sharing.get(region) or []) or "unchanged"
        out.append((region, arn, note))
    return out


def _function_errors(report: Report) -> list[tuple[Mapping[str, Any], str]]:
    """Function errors the report's `errors` list does not already say (it usually repeats them)."""
    said = " ".join(str(e) for e in report.get("errors") or [])
    return [(f, str(f["error"])) for f in report.get("functions", [])
            if f.get("error") and str(f["error"]).splitlines()[0] not in said]


def _plan_lines(report: Report) -> list[str]:
    plan = report.get("plan") or []
    if not plan:
        return ["Nothing to do: everything is already as wanted."]
    rows = ([s.get("action"), s.get("target"), s.get("region") or "—", s.get("detail") or ""] for s in plan)
    return _table(["Action", "Target", "Region", "Detail"], rows)


def _error_lines(report: Report) -> list[str]:
    lines = [f"- {_inline(e)}" for e in report.get("errors") or []]
    lines += [f"- `{f.get('name')}` ({f.get('region') or 'no region'}): {_inline(error)}"
              for f, error in _function_errors(report)]
    return lines


def _rolled_out(report: Report) -> list[Mapping[str, Any]]:
    """The functions a deployed-version check, an alias move or a traffic shift concerned."""
    return [f for f in report.get("functions", [])
            if f.get("check") or f.get("traffic") or f.get("alias_before") != f.get("alias_after")]


def check_text(check: Mapping[str, Any] | None) -> str:
    """'passed: version 4 answered in 0.41 s', 'failed: version 4: function error (Unhandled): …', or '—'."""
    if not check:
        return "—"
    if check.get("passed"):
        return f"passed: version {check.get('version')} answered in {seconds_text(check.get('seconds') or 0.0)}"
    return f"failed: version {check.get('version')}: {check.get('reason')}"


def alias_text(f: Mapping[str, Any]) -> str:
    """'live: 3 -> 4', 'alias: stays on 3' (the alias is named once it serves the new version), 'live: created
    at 4', or '—' without an alias."""
    before, after = f.get("alias_before"), f.get("alias_after")
    name = f.get("alias") or "alias"
    if before is None and after is None:
        return "—"
    if before == after:
        return f"{name}: stays on {after}"
    return f"{name}: created at {after}" if before is None else f"{name}: {before} -> {after}"


def traffic_text(steps: Sequence[Mapping[str, Any]] | None) -> str:
    """'10% (0 s) -> 100% (30 s)', '10% (0 s) -> rolled back (12 s)', or '—' when it moved all at once."""
    if not steps:
        return "—"
    return " -> ".join(("rolled back" if s.get("percent") == 0 else f"{s.get('percent'):g}%")
                       + f" ({s.get('at', 0):.0f} s)" for s in steps)


def _failed_checks(report: Report) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(function, check) for each deployed-version check that failed: the views show its payload and log tail."""
    return [(f, f["check"]) for f in report.get("functions", []) if f.get("check") and not f["check"].get("passed")]


def _rollout_rows(report: Report) -> list[list[str]]:
    return [[str(f.get("name")), f.get("region") or "—", check_text(f.get("check")), alias_text(f),
             traffic_text(f.get("traffic"))] for f in _rolled_out(report)]


def _fence(text: str, kind: str) -> list[str]:
    """A fenced code block that the text itself cannot close (it may hold backticks)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{kind}", text.rstrip("\n"), fence]


def _rollout_markdown(report: Report) -> list[str]:
    """The check, alias and traffic per function; the payload and log tail of each failed check."""
    rows = _rollout_rows(report)
    if not rows:
        return []
    lines = _table(["Function", "Region", "Deployed-version check", "Alias", "Traffic"],
                   ([f"`{r[0]}`", *r[1:]] for r in rows))
    for f, check in _failed_checks(report):
        lines += ["", f"<details><summary><code>{_cell(f.get('name'))}</code> ({f.get('region')}): what the "
                  "failed check got back</summary>", "", "Payload:", "",
                  *_fence(str(check.get("payload") or "(none)"), "json"), "", "Log tail:", "",
                  *_fence(str(check.get("log_tail") or "(none)"), "text"), "", "</details>"]
    return lines


def _changes_lines(report: Report) -> list[str]:
    return [f"- `{f.get('name')}` ({f.get('region') or 'no region'}): "
            + "; ".join(_inline(c) for c in f["changes"])
            for f in report.get("functions", []) if f.get("changes")]


# --- the four views -----------------------------------------------------------------------------------------

def text_table(report: Report) -> str:
    """Human output of the CLI: one line per function and region, then the layer, plan and errors."""
    head = (f"go-arm-lambda {report.get('tool_version', '?')}: {report.get('mode')} mode, "
            f"{report.get('runtime')}")
    if report.get("commit"):
        head += f", commit {str(report['commit'])[:12]}"
    if report.get("dry_run"):
        head += " (dry run: nothing was changed)"
    lines = [head]
    layer = report.get("layer")
    if layer:
        lines += [f"layer {layer.get('name')} in {region}: " + (f"{arn} ({note})" if arn else note)
                  for region, arn, note in _layer_regions(report)]
    rows = [["REGION", "FUNCTION", "STATUS", "VERSION", "ZIP", "SHA256", "VERIFY", "SMOKE", "CHANGES"]]
    for f in report.get("functions", []):
        rows.append([f.get("region") or "-", str(f.get("name")), str(f.get("status") or "-"),
                     _version_alias(f).replace("—", "-"), size_text(f.get("zip_size")).replace("—", "-"),
                     _short_sha(f.get("sha256")).replace("—", "-"), str(f.get("verify") or "-"),
                     str(f.get("smoke") or "-"), "; ".join(f.get("changes") or []) or "-"])
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
                  for r in rows]
    if report.get("dry_run"):
        lines.append("plan:")
        lines += [f"  {s.get('action')} {s.get('target')}"
                  + (f" ({s['region']})" if s.get("region") else "")
                  + (f": {s['detail']}" if s.get("detail") else "") for s in report.get("plan") or []]
        if not report.get("plan"):
            lines.append("  nothing to do")
    errors = [str(e) for e in report.get("errors") or []]
    errors += [f"{f.get('name')} ({f.get('region') or 'no region'}): {error}"
               for f, error in _function_errors(report)]
    rollout = _rollout_rows(report)
    if rollout:
        lines.append("rollout:")
        lines += [f"  {name} ({region}): check {check}; {alias}; traffic {traffic}"
                  for name, region, check, alias, traffic in rollout]
        for f, check in _failed_checks(report):
            lines.append(f"  {f.get('name')} ({f.get('region')}) payload: {check.get('payload') or '(none)'}")
            lines.append(f"  {f.get('name')} ({f.get('region')}) log tail:")
            lines += [f"    {line}" for line in str(check.get("log_tail") or "(none)").splitlines()]
    if errors:
        lines.append("errors:")
        lines += [f"  - {e}" for e in errors]
    return "\n".join(lines) + "\n"


def summary_markdown(report: Report) -> str:
    """The job summary: a table per region, the layer ARNs, the plan on a dry run, the errors."""
    lines = [f"## {_headline(report)}", "", _context_line(report), ""]
    timing = timing_line(report)
    lines += [timing, ""] if timing else []
    lines += [*_layer_lines(report), ""]
    for region, functions in _by_region(report).items():
        lines.append(f"### {region}")
        lines += _table(
            ["Function", "ARN", "Version (alias)", "Arch", "Runtime", "Zip", "SHA-256", "Changed", "Verify",
             "Smoke"],
            ([f"`{f.get('name')}`", _code(f.get("arn")), _version_alias(f), f.get("architecture", "arm64"),
              f.get("runtime") or report.get("runtime", "—"), size_text(f.get("zip_size")),
              _code(_short_sha(f.get("sha256"))), "yes" if f.get("changed") else "no",
              _result(f.get("verify")), _result(f.get("smoke"))] for f in functions))
        lines.append("")
    if report.get("dry_run"):
        lines += ["### Plan", *_plan_lines(report), ""]
    if changes := _changes_lines(report):
        lines += ["### Changes", *changes, ""]
    if rollout := _rollout_markdown(report):
        lines += ["### Rollout", *rollout, ""]
    if errors := _error_lines(report):
        lines += ["### Errors", *errors, ""]
    return "\n".join(lines)


def comment_marker(comment_id: str) -> str:
    """The hidden first line that identifies our sticky comment. The id is percent-encoded so that no
    user-chosen id can close the HTML comment or look like another id."""
    return f"<!-- go-arm-lambda:comment-id={urllib.parse.quote(comment_id, safe='')} -->"


def comment_body(report: Report, comment_id: str, run_url: str | None = None) -> str:
    """The pull request comment: marker first, then what was deployed where, what changed from what, sizes,
    verify and smoke results and the commit; the plan on a dry run; what failed on a failure."""
    lines = [comment_marker(comment_id), f"### {_headline(report)}", "",
             _context_line(report, run_url), "", *_layer_lines(report), ""]
    if report.get("functions"):
        lines.append("**Functions**")
        rows = ([f"`{f.get('name')}`", f.get("region") or "—", _code(f.get("arn")), _version_alias(f),
                 size_text(f.get("zip_size")), _result(f.get("verify")), _result(f.get("smoke")),
                 f.get("status") or "—"] for f in report["functions"])
        lines += _table(["Function", "Region", "ARN", "Version (alias)", "Zip", "Verify", "Smoke", "Status"],
                        rows)
        lines.append("")
    if changes := _changes_lines(report):
        lines += ["**What changed**", *changes, ""]
    if rollout := _rollout_markdown(report):
        lines += ["**Rollout**", *rollout, ""]
    if report.get("dry_run"):
        lines += ["**Plan** (dry run, nothing was changed)", *_plan_lines(report), ""]
    if errors := _error_lines(report):
        lines += ["**What failed**", *errors, ""]
    note = ("\n_This comment was cut to fit GitHub's 65,536 character limit; "
            "the job summary and the JSON report have everything._\n")
    return fit("\n".join(lines), COMMENT_LIMIT, note)


def action_outputs(report: Report, report_path: str | os.PathLike[str]) -> dict[str, str]:
    """The Action's outputs, all strings. JSON ones are keyed by region (then function name), so a
    workflow reads `fromJSON(steps.x.outputs.function-arns)['eu-west-1'].orders`."""
    arns = _layer_arns(report)
    function_arns: dict[str, dict[str, str]] = {}
    versions: dict[str, dict[str, str]] = {}
    for f in report.get("functions", []):
        region = f.get("region")
        if not region:
            continue
        if f.get("arn"):
            function_arns.setdefault(region, {})[f["name"]] = f["arn"]
        if f.get("version"):
            versions.setdefault(region, {})[f["name"]] = str(f["version"])
    return {
        "layer-arn": next(iter(arns.values()), ""),
        "layer-arns": json.dumps(arns),
        "function-arns": json.dumps(function_arns),
        "function-versions": json.dumps(versions),
        "changed": "true" if changed(report) else "false",
        "rolled-back": "true" if rolled_back(report) else "false",
        "report": os.fspath(report_path),
    }
