"""Runs a plan's steps through one dispatch, `HANDLERS`: exactly one handler per step type (steps.py).

Regions run side by side, each region's layer steps first, then its functions in a pool of its own. One function's
failure does not stop the others, whatever it is (an AWS refusal or an answer nobody expected); the result says
per function what happened, so the report and the exit code can tell which functions were updated, which failed
and which were never touched, and it keeps each failure's exception for --debug.

`--dry-run` is the same walk with no writer: each handler then records what its step would do without calling
AWS, so the plan a dry run shows is, by construction, the plan a deploy runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from go_arm_lambda import progress, rollout
from go_arm_lambda.aws import CHANGED_FIX, AwsChanged
from go_arm_lambda.errors import InternalError, RolledBack, UserError
from go_arm_lambda.lambda_api import LambdaWriter
from go_arm_lambda.report import CheckReport, DeployReport, FunctionDeploy, Status, TrafficStep
from go_arm_lambda.steps import (
    AddLayerPermission,
    CheckVersion,
    FunctionPlan,
    FunctionState,
    LayerRef,
    PendingLayer,
    Plan,
    PublishLayer,
    PublishVersion,
    RegionPlan,
    RemoveLayerPermission,
    ReuseLayer,
    SetAlias,
    ShiftTraffic,
    Step,
    TagRun,
    UpdateCode,
    UpdateConfig,
    UploadS3,
    layer_label,
)


@dataclass
class FunctionResult:
    name: str
    region: str
    arn: str
    status: Status
    changes: list[str]
    code_sha256: str
    runtime: str | None  # the function's runtime and architecture after this run (on a dry run: planned)
    architecture: str
    version: str | None = None
    alias: str | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)  # what `error` says
    check: CheckReport | None = None
    traffic: list[TrafficStep] | None = None
    alias_before: str | None = None  # the version the alias had, and has after the run (report.FunctionDeploy)
    alias_after: str | None = None

    @property
    def changed(self) -> bool:
        return self.status.changed(self.changes)

    def to_report(self) -> FunctionDeploy:
        return {"name": self.name, "region": self.region, "arn": self.arn, "version": self.version,
                "alias": self.alias, "code_sha256": self.code_sha256, "runtime": self.runtime,
                "architecture": self.architecture, "changed": self.changed, "changes": list(self.changes),
                "status": self.status, "error": self.error, "check": self.check,
                "traffic": None if self.traffic is None else list(self.traffic),
                "alias_before": self.alias_before, "alias_after": self.alias_after}


@dataclass
class DeployResult:
    dry_run: bool
    layer_name: str | None
    layer_arns: dict[str, str] = field(default_factory=dict)  # only regions where the layer version exists
    layer_published: dict[str, bool] = field(default_factory=dict)  # on a dry run: would publish
    # What else changed about the layer version in use, per region: "permission added: 111122223333", ...
    # (on a dry run: would change). A reused layer whose sharing changed is not "unchanged".
    layer_changes: dict[str, list[str]] = field(default_factory=dict)
    functions: list[FunctionResult] = field(default_factory=list)
    plan: list[dict[str, str]] = field(default_factory=list)
    mutating_calls: int = 0
    errors: list[str] = field(default_factory=list)  # a region's layer failures; functions carry their own
    # The steps that went through (on a dry run: every step previewed), in plan order within each region.
    steps_done: list[Step] = field(default_factory=list)
    layer_exceptions: list[BaseException] = field(default_factory=list, repr=False)  # behind `errors`

    @property
    def ok(self) -> bool:
        return not self.errors and not any(f.status.failed for f in self.functions)

    @property
    def exceptions(self) -> list[BaseException]:
        """Every failure's exception with its traceback, layers first: what --debug prints."""
        return [*self.layer_exceptions, *(f.exception for f in self.functions if f.exception is not None)]

    def all_errors(self) -> list[str]:
        return [*self.errors, *(f"{f.name} ({f.region}): {f.error}" for f in self.functions if f.error)]

    def to_report(self) -> DeployReport:
        """The deploy's part of the job report; report.assemble merges what the build knows in."""
        layer = None
        if self.layer_name is not None:
            layer = {"name": self.layer_name, "arns": dict(self.layer_arns),
                     "published": dict(self.layer_published),
                     "changes": {region: list(changes) for region, changes in self.layer_changes.items()}}
        return {"dry_run": self.dry_run, "layer": layer, "functions": [f.to_report() for f in self.functions],
                "plan": list(self.plan), "mutating_calls": self.mutating_calls, "errors": self.all_errors()}


# --- the walk ----------------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    """One region's layer version as its steps leave it; its functions read `arn` once they run."""

    arn: str | None = None  # set once the version exists (reused, or published by this run)
    version: int | None = None
    published: bool = False  # on a dry run: would publish
    changes: list[str] = field(default_factory=list)  # grant changes that went through


@dataclass
class _Run:
    """What the handlers work on: a region's layer steps (`function` None) or one function's steps."""

    writer: LambdaWriter | None  # None on a dry run: handlers record what their step would do, and call nothing
    layer: _Layer
    function: FunctionResult | None = None
    done: list[Step] = field(default_factory=list)
    # The function's RevisionId the next write names: the plan's, then what each write left. A write with a
    # stale one is refused by AWS, so a change someone made since the plan is never overwritten.
    revision: str | None = None
    shift: rollout.Shift | None = None  # its ShiftTraffic, run with every other of the run once all are ready

    @property
    def result(self) -> FunctionResult:
        assert self.function is not None, "the plan puts function steps only in a function's list"
        return self.function


def execute(plan: Plan, writers: Mapping[str, LambdaWriter], concurrency: int = 8) -> DeployResult:
    """Runs the plan: one writer per region, at most `concurrency` functions at a time in each region."""
    return _walk(plan, writers, concurrency)


def preview(plan: Plan) -> DeployResult:
    """The result of `--dry-run`: every step through its handler, with no writer, so no call is made."""
    return _walk(plan, None, 8)


def _walk(plan: Plan, writers: Mapping[str, LambdaWriter] | None, concurrency: int) -> DeployResult:
    unknown = sorted({type(s).__name__ for s in plan.steps() if type(s) not in HANDLERS})
    if unknown:  # before any write: a deploy must not stop half-way at a step nobody can run
        raise InternalError(f"the executor has no handler for step type {', '.join(unknown)}",
                            "this is a go-arm-lambda bug; report it with the plan (--dry-run --json)")
    result = DeployResult(writers is None, plan.layer_name)
    before = sum(w.mutating_calls for w in writers.values()) if writers else 0
    # A pool per region: Lambda's request quotas are per region (aws.RateLimiter paces each), so with one pool
    # for all, one region's functions queued ahead of another's would hold every worker while the other
    # region's quota went unused.
    with ThreadPoolExecutor(max_workers=max(1, len(plan.regions))) as regions_pool:
        per_region = list(regions_pool.map(
            lambda r: _run_region(r, writers[r.region] if writers else None, concurrency, plan.alias),
            plan.regions))
    for region, (layer_run, failure, functions) in zip(plan.regions, per_region, strict=True):
        if result.layer_name is not None:
            layer = layer_run.layer
            if layer.arn is not None:
                result.layer_arns[region.region] = layer.arn
            result.layer_published[region.region] = layer.published
            result.layer_changes[region.region] = list(layer.changes)
        if failure is not None:
            result.errors.append(f"layer {plan.layer_name} ({region.region}): {_failure(failure)}")
            result.layer_exceptions.append(failure)
        result.functions.extend(f.result for f in functions)
        result.steps_done += [*layer_run.done, *(s for f in functions for s in f.done)]
    # Every function's traffic shift at once, after every check of the run passed or failed: one window.
    shifting = [f for _, _, functions in per_region for f in functions
                if f.shift is not None and not f.result.status.failed]
    if shifting:
        shifts = [f.shift for f in shifting if f.shift]
        started = time.monotonic()
        progress.note(f"shifting traffic of {len(shifts)} function(s) together: {shifts[0].step.traffic}")
        rollout.shift_together(shifts, concurrency=concurrency)
        progress.note(f"traffic shift took {time.monotonic() - started:.2f} s, "
                      f"{sum(s.error is None for s in shifts)} of {len(shifts)} shifted")
        for run in shifting:
            _shifted(run)
    # A dry run shows the steps its walk visited; a deploy's report shows the whole plan, also what never ran.
    result.plan = [s.describe() for s in result.steps_done] if writers is None else plan.describe()
    result.mutating_calls = sum(w.mutating_calls for w in writers.values()) - before if writers else 0
    return result


def _dispatch(step: Step, run: _Run) -> None:
    try:
        # Its line in the deploy's log, with its duration and what the AWS layer tallied (retries, waits).
        with progress.task(f"{step.action} {step.target} ({step.region})"):
            HANDLERS[type(step)](step, run)
    except Exception as exc:
        exc.add_note(f"in step {step.action} of {step.target} in {step.region}")  # for the --debug traceback
        raise
    run.done.append(step)


def _failure(exc: BaseException) -> str:
    """One line for any failure. A UserError says what to do; anything else is a bug or an answer from AWS
    that nobody expected, and must still only fail its own function or region."""
    if isinstance(exc, UserError):
        return str(exc)
    return (f"unexpected {type(exc).__name__}: {exc}. This is a go-arm-lambda bug or an AWS answer it does not "
            "understand: run the deploy again, and report it if it persists")


def _run_region(region: RegionPlan, writer: LambdaWriter | None, concurrency: int, alias: str | None,
                ) -> tuple[_Run, Exception | None, list[_Run]]:
    """(the layer's run, the exception that stopped it, the functions' runs)."""
    layer_run = _Run(writer, _Layer())
    try:
        for step in region.layer_steps:
            _dispatch(step, layer_run)
    except Exception as exc:  # any failure, see _failure
        error = f"not deployed: the layer failed ({_failure(exc)})"
        untouched = [_Run(writer, layer_run.layer, _as_it_is(fp, alias, Status.NOT_TOUCHED, error))
                     for fp in region.functions]
        return layer_run, exc, untouched
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return layer_run, None, list(pool.map(lambda fp: _run_function(fp, writer, layer_run.layer, alias),
                                              region.functions))


def _run_function(fp: FunctionPlan, writer: LambdaWriter | None, layer: _Layer, alias: str | None) -> _Run:
    run = _Run(writer, layer, _as_it_is(fp, alias, Status.UNCHANGED), revision=fp.current.revision_id)
    result = run.result
    if fp.refusal is not None:  # decided by the planner, before any write; on a dry run as well
        result.status, result.error = Status.FAILED, fp.refusal
        return run
    if not fp.steps:
        return run
    result.status = Status.UPDATED if writer else Status.PLANNED
    try:
        if writer and fp.current.last_update_status == "InProgress":
            # Someone else's update is still running: a write now would only meet ResourceConflictException.
            _settled(run, fp, writer.wait_updated(fp.desired.spec.name))
        for step in fp.steps:
            _dispatch(step, run)
    except Exception as exc:  # any failure, see _failure
        # A failed check with an alias to keep: the alias never moved, which is the rollback.
        result.status = Status.ROLLED_BACK if isinstance(exc, RolledBack) else Status.FAILED
        result.error, result.exception = _failure(exc), exc
    if layer.arn is not None and result.status is Status.UPDATED:  # name the layer version that now exists
        pending, published = str(PendingLayer(layer.arn.split(":")[6])), layer_label(layer.arn)
        result.changes = [change.replace(pending, published) for change in result.changes]
    return run


def _settled(run: _Run, fp: FunctionPlan, state: FunctionState) -> None:
    """After waiting out an update the plan saw in progress. AWS gives a function a new RevisionId when an update
    finishes, so the plan's is stale; the new one is taken only while the function is as the plan read it."""
    if not state.same_as(fp.current):
        raise AwsChanged(f"function {fp.name} in {fp.region} changed since the plan was read (the update in "
                         "progress then finished with other code or settings)",
                         CHANGED_FIX)
    run.revision = state.revision_id


def _as_it_is(fp: FunctionPlan, alias: str | None, status: Status, error: str | None = None) -> FunctionResult:
    """The function as AWS has it before any step; each step's handler then records what it changed, so a
    failure half-way never claims the rest, and a dry run ends where the plan would."""
    # The alias serves fp.version when the plan leaves it alone; a step that moves it says so itself.
    move = next((s for s in fp.steps if isinstance(s, SetAlias | ShiftTraffic)), None)
    serves = fp.version is not None and move is None
    alias_version = move.current_version if move else fp.version if serves and alias else None
    return FunctionResult(
        name=fp.name, region=fp.region, arn=fp.current.arn, status=status, changes=list(fp.changes),
        code_sha256=fp.current.code_sha256, runtime=fp.current.runtime, architecture=_arch(fp.current),
        version=fp.version, alias=alias if serves else None, error=error, alias_before=alias_version,
        alias_after=alias_version)


def _shifted(run: _Run) -> None:
    """What the run-wide traffic shift did to this function."""
    shift, result = run.shift, run.result
    assert shift is not None
    result.traffic, result.alias_after = list(shift.taken), shift.alias_version
    if shift.error is None:
        result.alias = shift.step.alias
        return
    result.status = Status.ROLLED_BACK if shift.rolled_back else Status.FAILED
    result.error, result.exception = _failure(shift.error), shift.exception or shift.error


def _arch(state: FunctionState) -> str:
    return ",".join(state.architectures)


# --- the handlers: one per step type ------------------------------------------------------------------------------

S = TypeVar("S", bound=Step)
Handler = Callable[[Any, _Run], None]
HANDLERS: dict[type[Step], Handler] = {}


def _handles(kind: type[S]) -> Callable[[Callable[[S, _Run], None]], Callable[[S, _Run], None]]:
    def register(handler: Callable[[S, _Run], None]) -> Callable[[S, _Run], None]:
        assert kind not in HANDLERS, f"a second handler for {kind.__name__}"
        HANDLERS[kind] = handler
        return handler
    return register


@_handles(UploadS3)
def _upload_s3(step: UploadS3, run: _Run) -> None:
    if run.writer:
        run.writer.put_object(step.object, step.zip_path)


@_handles(PublishLayer)
def _publish_layer(step: PublishLayer, run: _Run) -> None:
    if run.writer:  # on a dry run no version exists yet, so there is no ARN to show
        published = run.writer.publish_layer_version(step.target, step.source, description=step.description,
                                                     runtimes=step.runtimes)
        run.layer.arn, run.layer.version = published.arn, published.version
    run.layer.published = True


@_handles(ReuseLayer)
def _reuse_layer(step: ReuseLayer, run: _Run) -> None:
    run.layer.arn, run.layer.version = step.arn, int(step.arn.rsplit(":", 1)[1])


@_handles(AddLayerPermission)
def _add_layer_permission(step: AddLayerPermission, run: _Run) -> None:
    if run.writer:
        assert run.layer.version is not None, "the plan puts permissions after the layer step"
        run.writer.add_layer_version_permission(step.target, run.layer.version, statement_id=step.statement_id,
                                                principal=step.principal, organization_id=step.organization_id)
    run.layer.changes.append(step.change)


@_handles(RemoveLayerPermission)
def _remove_layer_permission(step: RemoveLayerPermission, run: _Run) -> None:
    if run.writer:
        assert run.layer.version is not None, "the plan removes permissions only from a reused layer version"
        run.writer.remove_layer_version_permission(step.target, run.layer.version, statement_id=step.statement_id)
    run.layer.changes.append(step.change)


@_handles(UpdateCode)
def _update_code(step: UpdateCode, run: _Run) -> None:
    result = run.result
    if run.writer:
        run.writer.update_function_code(step.target, step.source, code_sha256=step.code_sha256,
                                        revision_id=run.revision)
        result.code_sha256 = _wait(run, step.target).code_sha256  # what AWS has, not what we sent
    else:
        result.code_sha256 = step.code_sha256
    result.architecture = "arm64"


@_handles(UpdateConfig)
def _update_config(step: UpdateConfig, run: _Run) -> None:
    if run.writer:
        run.writer.update_function_configuration(step.target, _config_changes(step, run.layer.arn),
                                                  revision_id=run.revision)
        _wait(run, step.target)
    run.result.runtime = step.runtime or run.result.runtime


def _wait(run: _Run, function: str) -> FunctionState:
    """Until our update finished. Its RevisionId is the one the next write names: AWS changes it again when an
    update finishes, so the one in the write's own answer would already be stale."""
    assert run.writer is not None
    state = run.writer.wait_updated(function)
    run.revision = state.revision_id
    return state


def _config_changes(step: UpdateConfig, layer_arn: str | None) -> dict[str, Any]:
    """The request keys: only what the plan found different, so nothing else about the function is touched."""
    changes: dict[str, Any] = {}
    if step.runtime is not None:
        changes["Runtime"] = step.runtime
    if step.handler is not None:
        changes["Handler"] = step.handler
    if step.layers is not None:
        changes["Layers"] = [_resolve(ref, layer_arn) for ref in step.layers]
    return changes


def _resolve(ref: LayerRef, layer_arn: str | None) -> str:
    if isinstance(ref, PendingLayer):
        assert layer_arn is not None, "a pending layer is published before the functions run"
        return layer_arn
    return ref


@_handles(PublishVersion)
def _publish_version(step: PublishVersion, run: _Run) -> None:
    result = run.result
    if run.writer:  # on a dry run the number is not known yet
        result.version = run.writer.publish_version(step.target, description=step.description,
                                                    code_sha256=result.code_sha256, revision_id=run.revision)


@_handles(SetAlias)
def _set_alias(step: SetAlias, run: _Run) -> None:
    result = run.result
    version = step.version or result.version
    if run.writer:
        assert version is not None, "the plan publishes before it sets the alias"
        # Where it moved from goes into its description, for `go-arm-lambda rollback`; a rollback that only
        # takes an unfinished shift's routing off leaves the record of the last move as it is.
        description = None if step.current_version == version else rollout.describe_move(
            step.current_version, version, rollback=step.rollback)
        run.writer.set_alias(step.target, step.alias, version, create=step.create, revision_id=step.revision_id,
                             description=description)
    result.alias, result.alias_after = step.alias, version


@_handles(CheckVersion)
def _check_version(step: CheckVersion, run: _Run) -> None:
    result = run.result
    if run.writer:  # on a dry run nothing is invoked: invoking can have effects
        version = step.version or result.version
        assert version is not None, "the plan publishes before it checks"
        check = rollout.check(run.writer, step, version)
        result.check = check.to_report()
        if not check.passed:
            raise rollout.check_error(step, check)


@_handles(ShiftTraffic)
def _shift_traffic(step: ShiftTraffic, run: _Run) -> None:
    result = run.result
    version = step.version or result.version
    if run.writer:  # only gathered here: every function of the run shifts together once all are ready
        assert version is not None, "the plan publishes before it shifts"
        run.shift = rollout.Shift(step, version, run.writer, step.revision_id)
    else:
        result.alias, result.alias_after = step.alias, version


@_handles(TagRun)
def _tag_run(step: TagRun, run: _Run) -> None:
    if run.writer:
        run.writer.tag_resource(step.arn, step.run.tags())
