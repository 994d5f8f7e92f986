"""The job report: its types (the schema of the `--report` file and `--json`), the one place it is assembled,
and the rules read from it; render.py draws its views (text table, job summary, PR comment, outputs). Pure:
nothing here reads files or the environment or imports a stage; the pipeline hands in plain values. TypedDicts,
so the report is a plain dict and its JSON is what the types say.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
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
