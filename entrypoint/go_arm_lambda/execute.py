"""Runs a plan's steps: regions side by side, each region's layer first, then its functions in a bounded pool.

One function's failure does not stop the others, whatever it is (an AWS refusal or an answer nobody expected);
the result says per function what happened, so the report and the exit code can tell which functions were
updated, which failed and which were never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from go_arm_lambda.aws import FunctionState, LambdaWriter
from go_arm_lambda.errors import UserError
from go_arm_lambda.plan import (
    AddLayerPermission,
    FunctionPlan,
    LayerGrantStep,
    LayerRef,
    PendingLayer,
    Plan,
    PublishLayer,
    PublishVersion,
    RegionPlan,
    RemoveLayerPermission,
    ReuseLayer,
    SetAlias,
    Step,
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
    status: str  # updated | unchanged | planned | failed | not-touched
    changes: list[str]
    code_sha256: str
    runtime: str | None  # the function's runtime and architecture after this run (on a dry run: planned)
    architecture: str
    version: str | None = None
    alias: str | None = None
    error: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes) and self.status in ("updated", "planned")

    def to_report(self) -> dict[str, Any]:
        return {"name": self.name, "region": self.region, "arn": self.arn, "version": self.version,
                "alias": self.alias, "code_sha256": self.code_sha256, "runtime": self.runtime,
                "architecture": self.architecture, "changed": self.changed, "changes": list(self.changes),
                "status": self.status, "error": self.error}


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

    @property
    def ok(self) -> bool:
        return not self.errors and all(f.status not in ("failed", "not-touched") for f in self.functions)

    def all_errors(self) -> list[str]:
        return [*self.errors, *(f"{f.name} ({f.region}): {f.error}" for f in self.functions if f.error)]

    def to_report(self) -> dict[str, Any]:
        """The deploy's part of the job report (ARCHITECTURE.md); the CLI merges build/verify/smoke in."""
        layer = None
        if self.layer_name is not None:
            layer = {"name": self.layer_name, "arns": dict(self.layer_arns),
                     "published": dict(self.layer_published),
                     "changes": {region: list(changes) for region, changes in self.layer_changes.items()}}
        return {"dry_run": self.dry_run, "layer": layer, "functions": [f.to_report() for f in self.functions],
                "plan": list(self.plan), "mutating_calls": self.mutating_calls, "errors": self.all_errors()}


def preview(plan: Plan) -> DeployResult:
    """The result of `--dry-run`: what the executor would do, with no call made."""
    result = DeployResult(True, plan.layer_name, plan=plan.describe())
    for region in plan.regions:
        _record_layer(result, region, _reused_arn(region),
                      published=any(isinstance(s, PublishLayer) for s in region.layer_steps),
                      changes=[s.change for s in region.layer_steps if isinstance(s, LayerGrantStep)])
        for fp in region.functions:
            result.functions.append(_function_result(fp, "planned" if fp.steps else "unchanged", plan.alias))
    return result


def execute(plan: Plan, writers: Mapping[str, LambdaWriter], concurrency: int = 8) -> DeployResult:
    before = sum(w.mutating_calls for w in writers.values())
    result = DeployResult(False, plan.layer_name, plan=plan.describe())
    # One pool for every function of every region, so --concurrency bounds the whole deploy; region threads
    # only run the (few) layer steps and then wait for their functions.
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as functions_pool, \
            ThreadPoolExecutor(max_workers=max(1, len(plan.regions))) as regions_pool:
        per_region = list(regions_pool.map(
            lambda r: _run_region(r, writers[r.region], functions_pool, plan.alias), plan.regions))
    for region, (layer_arn, changes, error, functions) in zip(plan.regions, per_region, strict=True):
        published = layer_arn is not None and any(isinstance(s, PublishLayer) for s in region.layer_steps)
        _record_layer(result, region, layer_arn, published=published, changes=changes)
        if error:
            result.errors.append(f"layer {plan.layer_name} ({region.region}): {error}")
        result.functions.extend(functions)
    result.mutating_calls = sum(w.mutating_calls for w in writers.values()) - before
    return result


def _reused_arn(region: RegionPlan) -> str | None:
    return next((s.arn for s in region.layer_steps if isinstance(s, ReuseLayer)), None)


def _record_layer(result: DeployResult, region: RegionPlan, arn: str | None, *, published: bool,
                  changes: list[str]) -> None:
    if result.layer_name is None:
        return
    if arn is not None:
        result.layer_arns[region.region] = arn
    result.layer_published[region.region] = published
    result.layer_changes[region.region] = changes


def _failure(exc: Exception) -> str:
    """One line for any failure. A UserError says what to do; anything else is a bug or an answer from AWS
    that nobody expected, and must still only fail its own function or region."""
    if isinstance(exc, UserError):
        return str(exc)
    return (f"unexpected {type(exc).__name__}: {exc}. This is a go-arm-lambda bug or an AWS answer it does not "
            "understand: run the deploy again, and report it if it persists")


def _run_region(region: RegionPlan, writer: LambdaWriter, pool: ThreadPoolExecutor, alias: str | None,
                ) -> tuple[str | None, list[str], str | None, list[FunctionResult]]:
    """(the layer version's ARN, its changes that went through, the layer's failure, the functions)."""
    changes: list[str] = []
    try:
        layer_arn = _run_layer_steps(region.layer_steps, writer, changes)
    except Exception as exc:  # any failure, see _failure
        failure = _failure(exc)
        error = f"not deployed: the layer failed ({failure})"
        untouched = [_function_result(fp, "not-touched", alias, error) for fp in region.functions]
        return None, changes, failure, untouched
    functions = list(pool.map(lambda fp: _run_function(fp, writer, layer_arn, alias), region.functions))
    return layer_arn, changes, None, functions


def _run_layer_steps(steps: tuple[Step, ...], writer: LambdaWriter, changes: list[str]) -> str | None:
    """Runs them in order; `changes` gets each grant change once it went through, even if a later step fails."""
    arn: str | None = None
    version: int | None = None
    for step in steps:
        if isinstance(step, UploadS3):
            writer.put_object(step.object, step.zip_path)
        elif isinstance(step, PublishLayer):
            published = writer.publish_layer_version(step.target, step.source, description=step.description,
                                                     runtimes=step.runtimes)
            arn, version = published.arn, published.version
        elif isinstance(step, ReuseLayer):
            arn, version = step.arn, int(step.arn.rsplit(":", 1)[1])
        elif isinstance(step, AddLayerPermission):
            assert version is not None, "the plan puts permissions after the layer step"
            writer.add_layer_version_permission(step.target, version, statement_id=step.statement_id,
                                                principal=step.principal,
                                                organization_id=step.organization_id)
            changes.append(step.change)
        elif isinstance(step, RemoveLayerPermission):
            assert version is not None, "the plan removes permissions only from a reused layer version"
            writer.remove_layer_version_permission(step.target, version, statement_id=step.statement_id)
            changes.append(step.change)
        else:
            raise TypeError(f"not a layer step: {step!r}")
    return arn


def _resolve(layers: tuple[LayerRef, ...], layer_arn: str | None) -> list[str]:
    resolved = []
    for ref in layers:
        if isinstance(ref, PendingLayer):
            assert layer_arn is not None, "a pending layer is published before the functions run"
            resolved.append(layer_arn)
        else:
            resolved.append(ref)
    return resolved


def _run_function(fp: FunctionPlan, writer: LambdaWriter, layer_arn: str | None,
                  alias: str | None) -> FunctionResult:
    if not fp.steps:
        return _function_result(fp, "unchanged", alias)
    result = _function_result(fp, "updated", alias)
    # What the report says is what AWS has: a version or alias only once it exists, and the code, runtime and
    # architecture of the steps that went through, so a failure half-way never claims the rest.
    result.version, result.alias = fp.version, None
    code_sha256, runtime, architecture = fp.current.code_sha256, fp.current.runtime, _arch(fp.current)
    try:
        if fp.current.last_update_status == "InProgress":
            # Someone else's update is still running: a write now would only meet ResourceConflictException.
            writer.wait_updated(fp.desired.spec.name)
        for step in fp.steps:
            if isinstance(step, UploadS3):
                writer.put_object(step.object, step.zip_path)
            elif isinstance(step, UpdateCode):
                writer.update_function_code(step.target, step.source)
                code_sha256 = writer.wait_updated(step.target).code_sha256
                architecture = "arm64"
            elif isinstance(step, UpdateConfig):
                writer.update_function_configuration(step.target, _config_changes(step, layer_arn))
                writer.wait_updated(step.target)
                runtime = step.runtime or runtime
            elif isinstance(step, PublishVersion):
                result.version = writer.publish_version(step.target, description=step.description,
                                                        code_sha256=code_sha256)
            elif isinstance(step, SetAlias):
                version = step.version or result.version
                assert version is not None, "the plan publishes before it sets the alias"
                writer.set_alias(step.target, step.alias, version, create=step.create)
                result.alias = step.alias
            else:
                raise TypeError(f"not a function step: {step!r}")
    except Exception as exc:  # any failure, see _failure
        result.status = "failed"
        result.error = _failure(exc)
    result.code_sha256, result.runtime, result.architecture = code_sha256, runtime, architecture
    if layer_arn is not None and result.status == "updated":  # name the layer version that now exists
        pending, published = str(PendingLayer(layer_arn.split(":")[6])), layer_label(layer_arn)
        result.changes = [change.replace(pending, published) for change in result.changes]
    return result


def _config_changes(step: UpdateConfig, layer_arn: str | None) -> dict[str, Any]:
    """The request keys: only what the plan found different, so nothing else about the function is touched."""
    changes: dict[str, Any] = {}
    if step.runtime is not None:
        changes["Runtime"] = step.runtime
    if step.handler is not None:
        changes["Handler"] = step.handler
    if step.layers is not None:
        changes["Layers"] = _resolve(step.layers, layer_arn)
    return changes


def _arch(state: FunctionState) -> str:
    return ",".join(state.architectures)


def _function_result(fp: FunctionPlan, status: str, alias: str | None,
                     error: str | None = None) -> FunctionResult:
    """The result before any step ran: as planned for "planned" and "updated", as AWS has it otherwise."""
    moves_alias = any(isinstance(s, SetAlias) for s in fp.steps)
    # The alias serves fp.version when the plan leaves it alone; a planned move counts on a dry run.
    serves = (fp.version is not None and not moves_alias) or (moves_alias and status == "planned")
    planned = status in ("planned", "updated")
    return FunctionResult(
        name=fp.name, region=fp.region, arn=fp.current.arn, status=status, changes=list(fp.changes),
        code_sha256=fp.desired.zip.code_sha256 if planned else fp.current.code_sha256,
        runtime=fp.desired.runtime if planned else fp.current.runtime,
        architecture="arm64" if planned else _arch(fp.current),
        version=fp.version, alias=alias if serves else None, error=error)
