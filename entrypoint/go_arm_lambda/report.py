"""The job report: its types (the schema of the `--report` file and `--json`), the one place it is assembled,
the rules read from it, and its four views: a text table for the terminal, Markdown for the job summary, the pull
request comment, and the Action's outputs. Pure: nothing here reads files or the environment or imports a stage;
the pipeline hands in plain values. TypedDicts, so the report is a plain dict and its JSON is what the types say.
"""

from __future__ import annotations

import json
import os
import re
import typing
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal, TypedDict


class Status(StrEnum):
    """What happened to one function in one region. A StrEnum, so the JSON holds the plain string."""

    BUILT = "built"  # no deploy: built, verified, smoke-tested and packaged only
    PLANNED = "planned"  # dry run: it has steps that would run
    UNCHANGED = "unchanged"  # AWS already has it as wanted
    UPDATED = "updated"
    FAILED = "failed"  # one of its steps failed; `error` says which and why
    NOT_TOUCHED = "not-touched"  # its region's layer failed, so none of its steps ran
    # Its new version failed the deployed-version check or an alarm fired while traffic shifted: the alias is
    # (back) on the version it had. `error` says why.
    ROLLED_BACK = "rolled-back"

    @property
    def failed(self) -> bool:
        """The function is not as the run wanted it: this fails the job (exit code, headline, `ok`)."""
        return self in (Status.FAILED, Status.NOT_TOUCHED, Status.ROLLED_BACK)

    def changed(self, changes: Sequence[str]) -> bool:
        """Whether a function with these changes changed (on a dry run: would): only if they were applied."""
        return bool(changes) and self in (Status.UPDATED, Status.PLANNED)


VerifyStatus = Literal["ok", "warnings", "failed", "skipped"]
SmokeStatus = Literal["ok", "failed", "skipped"]


class FunctionTarget(TypedDict):
    """What a function is, or is to be: the build's values, replaced by AWS's once it was deployed."""

    name: str
    code_sha256: str  # base64(sha256(zip)), what Lambda reports as CodeSha256
    runtime: str | None
    architecture: str


class FunctionBuild(FunctionTarget):
    """What the build knows about one function."""

    package: str
    handler: str  # the binary's name inside the zip ("bootstrap" in bootstrap mode)
    zip_size: int
    sha256: str  # hex digest of the zip file
    verify: VerifyStatus
    smoke: SmokeStatus


class FunctionDeploy(FunctionTarget):
    """Where one function stands in one region after the deploy (on a dry run: would stand).

    Without a deploy every field here that the build does not know is None, apart from `changes` and `status`
    (see `_not_deployed`), so a new field needs nothing but its line here and its value from the executor.
    """

    region: str | None
    arn: str | None
    version: str | None  # only once it exists
    alias: str | None  # only once it points at `version`
    changes: list[str]  # "runtime: go1.x -> provided.al2023", "code", ...
    changed: bool  # Status.changed's verdict on `changes`; assemble decides it again, so it is never stale
    status: Status
    error: str | None
    check: CheckReport | None  # the deployed-version check, when one ran
    traffic: list[TrafficStep] | None  # the alias's traffic shift, step by step, when it shifted gradually
    alias_before: str | None  # the version the alias had before the run (None: none, or no alias)
    alias_after: str | None  # the version it has after the run


class CheckReport(TypedDict):
    """The deployed-version check: the invoke of the new version in AWS, and its verdict."""

    passed: bool
    version: str  # the version invoked: a number, or "$LATEST"
    seconds: float
    status_code: int | None  # None when no answer came in time
    function_error: str | None  # X-Amz-Function-Error ("Unhandled")
    payload: str  # the response payload, decoded (at most 4 KiB)
    log_tail: str  # X-Amz-Log-Result decoded: the end of the invocation's log
    reason: str | None  # why it failed


class TrafficStep(TypedDict):
    """One move of a traffic shift: `percent` of the alias's traffic on `version`, `at` seconds into the shift.
    The last is 100 when the shift finished, 0 when it was rolled back."""

    percent: float
    version: str
    at: float


class FunctionReport(FunctionBuild, FunctionDeploy):
    """One function in one region (or, without a deploy, once), as the report holds it."""


class PlanLine(TypedDict):
    action: str  # "update-code", "publish-layer", ...
    target: str
    region: str
    detail: str


class LayerDeploy(TypedDict):
    name: str
    arns: dict[str, str]  # only regions where the version exists (not one a dry run would publish)
    published: dict[str, bool]  # on a dry run: would publish
    changes: dict[str, list[str]]  # its sharing, per region: "permission added: 111122223333", ...


class LayerReport(LayerDeploy):
    sha256: str | None  # hex digest of layer.zip; None when the job stopped before packaging it


class DeployTotals(TypedDict):
    plan: list[PlanLine]
    mutating_calls: int
    errors: list[str]  # one line per failure, functions' included


class DeployReport(DeployTotals):
    """The deploy's part of the job report, as the executor hands it over."""

    dry_run: bool
    layer: LayerDeploy | None  # None in bootstrap mode
    functions: list[FunctionDeploy]


class Timings(TypedDict):
    """How long the job took, in seconds."""

    stages: dict[str, float]  # per stage that ran ("build", "verify", ...), in the order they ran
    total: float  # the job's wall time: the stages and what lies between them


class JobHeader(TypedDict):
    tool_version: str
    dry_run: bool
    commit: str | None
    mode: Literal["layer", "bootstrap"]
    runtime: str


class JobReport(JobHeader, DeployTotals):
    """The job report: the `--report` file, `--json`, and what every view below renders."""

    layer: LayerReport | None  # None in bootstrap mode
    functions: list[FunctionReport]
    timings: Timings


def assemble(header: JobHeader, built: Sequence[FunctionBuild], layer_name: str | None,
             layer_sha256: str | None, deployed: DeployReport | None, errors: Sequence[str] = (),
             timings: Timings | None = None) -> JobReport:
    """The job report, the one place it is put together: the deploy's result with what the build knows merged in.

    `layer_name` is None in bootstrap mode. Without a deploy (build only, or a failure before it) each built
    function appears once, not deployed.
    """
    builds = {b["name"]: b for b in built}
    layer: LayerReport | None = None
    if layer_name is not None:
        deployed_layer = deployed["layer"] if deployed else None
        layer = {"name": layer_name, "arns": {}, "published": {}, "changes": {}, **(deployed_layer or {}),
                 "sha256": layer_sha256}
    states = deployed["functions"] if deployed else [_not_deployed(b) for b in built]
    functions: list[FunctionReport] = []
    for state in states:
        # A deployed function's state replaces the build's target values: what AWS has is what the report says.
        merged: Any = {**builds.get(state["name"], {}), **state, "status": Status(state["status"])}
        merged["changed"] = function_changed(merged)
        functions.append(merged)
    return {**header, "layer": layer, "functions": functions,
            "plan": list(deployed["plan"]) if deployed else [],
            "mutating_calls": deployed["mutating_calls"] if deployed else 0,
            "errors": [*(deployed["errors"] if deployed else []), *errors],
            "timings": timings or {"stages": {}, "total": 0.0}}


def _not_deployed(built: FunctionBuild) -> FunctionDeploy:
    # Every deploy field None unless the build knows it: a field added to FunctionDeploy needs no line here.
    target = {key: value for key, value in built.items() if key in FunctionTarget.__annotations__}
    state = dict.fromkeys(FunctionDeploy.__annotations__) | target | {"changes": [], "status": Status.BUILT}
    return typing.cast(FunctionDeploy, state)


# --- the rules: each decided here once, for the exit code and every view ------------------------------------

Report = Mapping[str, Any]  # what the rules and views read: a JobReport, or the part of one a test holds


def function_failed(function: Mapping[str, Any]) -> bool:
    return Status(function["status"]).failed


def function_changed(function: Mapping[str, Any]) -> bool:
    return Status(function["status"]).changed(function["changes"])


def failed(report: Report) -> bool:
    """Whether the job failed: an error anywhere, or a function left other than wanted."""
    return bool(report.get("errors")) or any(function_failed(f) for f in report.get("functions", []))


def changed(report: Report) -> bool:
    """Whether anything changed (on a dry run: would change): a function, a new layer version, or its sharing."""
    layer = report.get("layer") or {}
    return (any(function_changed(f) for f in report.get("functions", []))
            or any((layer.get("published") or {}).values()) or any((layer.get("changes") or {}).values()))


def rolled_back(report: Report) -> bool:
    """Whether a function's new version was kept from (or taken off) its alias: output `rolled-back`."""
    return any(Status(f["status"]) is Status.ROLLED_BACK for f in report.get("functions", []))


def built_only(report: Report) -> bool:
    """Whether the job stopped short of AWS by design: without regions it builds, checks and packages only."""
    functions = report.get("functions", [])
    return bool(functions) and all(Status(f["status"]) is Status.BUILT for f in functions)


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


def _context_line(report: Report, commit: str | None = None, run_url: str | None = None) -> str:
    parts = [f"mode `{report.get('mode', '?')}`", f"runtime `{report.get('runtime', '?')}`"]
    if commit or report.get("commit"):
        parts.append(f"commit {commit or report.get('commit')}")
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
    lines += [f"- {region}: `{arn}` ({note})" if arn else f"- {region}: {note}"
              for region, arn, note in _layer_regions(report)]
    if not _layer_regions(report):
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
    for f in _rolled_out(report):
        check = f.get("check") or {}
        if check and not check.get("passed"):
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
        for f in _rolled_out(report):
            check = f.get("check") or {}
            if check and not check.get("passed"):
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
    if _changes_lines(report):
        lines += ["### Changes", *_changes_lines(report), ""]
    if _rollout_markdown(report):
        lines += ["### Rollout", *_rollout_markdown(report), ""]
    if _error_lines(report):
        lines += ["### Errors", *_error_lines(report), ""]
    return "\n".join(lines)


def comment_marker(comment_id: str) -> str:
    """The hidden first line that identifies our sticky comment. The id is percent-encoded so that no
    user-chosen id can close the HTML comment or look like another id."""
    return f"<!-- go-arm-lambda:comment-id={urllib.parse.quote(comment_id, safe='')} -->"


def comment_body(report: Report, comment_id: str, commit: str | None = None,
                 run_url: str | None = None) -> str:
    """The pull request comment: marker first, then what was deployed where, what changed from what, sizes,
    verify and smoke results and the commit; the plan on a dry run; what failed on a failure."""
    lines = [comment_marker(comment_id), f"### {_headline(report)}", "",
             _context_line(report, commit, run_url), "", *_layer_lines(report), ""]
    if report.get("functions"):
        lines.append("**Functions**")
        rows = ([f"`{f.get('name')}`", f.get("region") or "—", _code(f.get("arn")), _version_alias(f),
                 size_text(f.get("zip_size")), _result(f.get("verify")), _result(f.get("smoke")),
                 f.get("status") or "—"] for f in report["functions"])
        lines += _table(["Function", "Region", "ARN", "Version (alias)", "Zip", "Verify", "Smoke", "Status"],
                        rows)
        lines.append("")
    if _changes_lines(report):
        lines += ["**What changed**", *_changes_lines(report), ""]
    if _rollout_markdown(report):
        lines += ["**Rollout**", *_rollout_markdown(report), ""]
    if report.get("dry_run"):
        lines += ["**Plan** (dry run, nothing was changed)", *_plan_lines(report), ""]
    if _error_lines(report):
        lines += ["**What failed**", *_error_lines(report), ""]
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
