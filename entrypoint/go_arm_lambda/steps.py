"""The contract between planning and executing: what is wanted, what AWS has, and the typed steps between them.

The planner (plan.py) turns a `DesiredState` and the AWS state it reads (`FunctionState`, `LayerState`, ...)
into a `Plan` of `Step`s; the executor (execute.py) runs each step with exactly one handler for its type, or on
a dry run previews it through the same handler. lambda_api.py returns the state types. A new kind of step is one
dataclass here and one handler in execute.py; a new deploy input is one field of `DeployConfig`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Protocol

from go_arm_lambda.config import Config, FunctionSpec
from go_arm_lambda.inputs import Traffic

# --- what AWS has (aws.py reads and returns these) ----------------------------------------------------------


@dataclass(frozen=True)
class FunctionState:
    name: str
    arn: str
    package_type: str
    runtime: str | None
    architectures: tuple[str, ...]
    handler: str | None
    layers: tuple[str, ...]
    code_sha256: str
    last_update_status: str | None
    last_update_reason: str | None = None
    version: str = "$LATEST"
    # Lambda's RevisionId of this state: a write that names it is refused (PreconditionFailedException) once
    # anything else has changed the function since it was read, so no update is lost to another writer.
    revision_id: str | None = None
    # The function's tags as GetFunction gave them, which spares a ListTags (of the 15/s control-plane quota) per
    # function. None when it gave none: the function has no tags, or the caller may not lambda:ListTags.
    tags: Mapping[str, str] | None = field(default=None, compare=False)

    def same_as(self, other: FunctionState) -> bool:
        """The same code and the settings go-arm-lambda sets (a published version of it, or a later read)."""
        return (self.code_sha256, self.runtime, self.handler, self.layers, self.architectures) == (
            other.code_sha256, other.runtime, other.handler, other.layers, other.architectures)


@dataclass(frozen=True)
class LayerState:
    arn: str  # the version ARN
    version: int
    code_sha256: str
    compatible_runtimes: tuple[str, ...]
    compatible_architectures: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class AliasState:
    name: str
    arn: str
    function_version: str
    revision_id: str | None = None  # as on FunctionState: moving the alias names it
    description: str = ""  # go-arm-lambda records here where it moved the alias from (rollout.describe_move)
    # Routing in progress: {version: share of traffic}, at most one version besides `function_version`.
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class InvokeAnswer:
    """What a synchronous Invoke answered. A function error is still status 200, with `function_error` set."""

    status_code: int
    function_error: str | None  # "Unhandled"
    payload: bytes
    log_tail: str  # X-Amz-Log-Result decoded: the last 4 KB of the invocation's log


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


# Code for a function or layer: a local zip sent in the request, or an object already uploaded to S3.
CodeSource = Path | S3Object


# --- what is wanted --------------------------------------------------------------------------------------------


class Artifact(Protocol):
    """What package.Artifact provides (see ARCHITECTURE.md); any object with these attributes will do."""

    @property
    def path(self) -> Path: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def unzipped_size(self) -> int: ...
    @property
    def code_sha256(self) -> str: ...


@dataclass(frozen=True)
class DeployConfig:
    """The deploy inputs the planner acts on: the slice of `Config` it sees, made by `of()` alone.

    The fields are named as in `Config` and have no defaults of their own, so a new deploy input is one field
    here and reaches the planner with no other plumbing. config.load has checked them against AWS's rules
    (limits.check_deploy_inputs) before anything was built.
    """

    regions: tuple[str, ...]
    mode: str
    runtime: str
    layer_name: str  # also in bootstrap mode, to take our layer off functions
    layer_permissions: tuple[str, ...]  # account ids, account root ARNs, "*", or "org:o-xxxxxxxxxx"
    publish: bool
    alias: str | None
    s3_bucket: str | None  # may contain {region}: S3 code must sit in the function's own region
    s3_prefix: str
    allow_older: bool  # deploy even over a newer run's deploy (see DeployRun)
    check_deployed: bool
    deployed_check_event: str  # JSON or @FILE
    check_timeout: float
    check_expect: str | None
    traffic: Traffic
    alarms: tuple[str, ...]

    @classmethod
    def of(cls, cfg: Config) -> DeployConfig:
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class DesiredLayer:
    name: str
    zip: Artifact
    compatible_runtimes: tuple[str, ...]
    description: str  # tool version and content hash, see plan.layer_description()
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesiredFunction:
    spec: FunctionSpec
    region: str
    zip: Artifact
    handler: str  # the binary's name in layer mode, "bootstrap" in bootstrap mode
    runtime: str


@dataclass(frozen=True)
class DesiredAlias:
    """promote and rollback: an alias of a function moved to a version AWS already has; nothing is built."""

    spec: FunctionSpec
    region: str
    alias: str
    version: str


# Tags go-arm-lambda puts on each function a GitHub Actions run deploys (DeployRun.tags()).
RUN_TAG_PREFIX = "go-arm-lambda:"
# What Lambda takes in a tag value (letters, digits, spaces and + - = . _ : / @), and how long.
_TAG_VALUE_REFUSED = re.compile(r"[^\w\s+\-=.:/@]")
_MAX_TAG_VALUE = 256


def _tag_value(text: str) -> str:
    return _TAG_VALUE_REFUSED.sub("_", text)[:_MAX_TAG_VALUE]


@dataclass(frozen=True)
class DeployRun:
    """The GitHub Actions run that deploys. Each function it deploys is tagged with it, so that a later run of
    the same workflow can tell whether it is older than the one that last deployed the function (run numbers
    only grow within a workflow; a re-run keeps its number). Values are kept as they are written to the tags,
    so the one read back compares equal."""

    repository: str
    workflow: str
    number: int
    commit: str
    run_id: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeployRun | None:
        """The run under Actions (GITHUB_RUN_NUMBER, GITHUB_WORKFLOW, ...); None anywhere else."""
        number, workflow = env.get("GITHUB_RUN_NUMBER", ""), env.get("GITHUB_WORKFLOW", "")
        if env.get("GITHUB_ACTIONS") != "true" or not (number.isascii() and number.isdigit()) or not workflow:
            return None
        return cls(_tag_value(env.get("GITHUB_REPOSITORY", "")), _tag_value(workflow), int(number),
                   _tag_value(env.get("GITHUB_SHA", "")), _tag_value(env.get("GITHUB_RUN_ID", "")))

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> DeployRun | None:
        """The run a function's tags name; None when go-arm-lambda under Actions never tagged it."""
        def tag(key: str) -> str:
            return tags.get(RUN_TAG_PREFIX + key, "")
        number = tag("run-number")
        if not (number.isascii() and number.isdigit()) or not tag("workflow"):  # anyone may tag: "²" too
            return None
        return cls(tag("repository"), tag("workflow"), int(number), tag("commit"), tag("run-id"))

    def tags(self) -> dict[str, str]:
        return {RUN_TAG_PREFIX + key: value for key, value in (
            ("repository", self.repository), ("workflow", self.workflow), ("run-number", str(self.number)),
            ("commit", self.commit), ("run-id", self.run_id))}

    def newer_than(self, other: DeployRun) -> bool:
        """Run numbers compare only within one workflow of one repository."""
        return (self.repository, self.workflow) == (other.repository, other.workflow) and self.number > other.number

    @property
    def label(self) -> str:
        """'run #58 (commit abc1234)'"""
        return f"run #{self.number} (commit {self.commit[:7]})" if self.commit else f"run #{self.number}"


@dataclass(frozen=True)
class DesiredState:
    config: DeployConfig
    layer: DesiredLayer | None  # None in bootstrap mode
    functions: tuple[DesiredFunction, ...]  # one per (region, function)
    commit: str | None = None
    run: DeployRun | None = None  # the GitHub Actions run that deploys; None outside Actions

    @property
    def regions(self) -> tuple[str, ...]:
        return self.config.regions


# --- the steps -------------------------------------------------------------------------------------------------

# Statements in a layer version's policy that go-arm-lambda owns (plan.statement_id() makes them): the deploy
# keeps them exactly as the --layer-permission flags say. Statements with other ids are never touched.
STATEMENT_PREFIX = "go-arm-lambda-"


def grantee(sid: str) -> str:
    """Who one of our statements shares with, as --layer-permission names it (plan.statement_id() backwards)."""
    who = sid.removeprefix(STATEMENT_PREFIX)
    return "*" if who == "public" else f"org:{who}" if who.startswith("o-") else who


@dataclass(frozen=True)
class PendingLayer:
    """The layer version this plan publishes in a region: its ARN exists only after publishing."""

    name: str

    def __str__(self) -> str:
        return f"{self.name}:(new version)"


LayerRef = str | PendingLayer


def layer_label(ref: LayerRef) -> str:
    """`name:version` of a layer version ARN, for people to read in plans and reports."""
    if isinstance(ref, PendingLayer):
        return str(ref)
    parts = ref.split(":")
    return ":".join(parts[6:]) if len(parts) >= 8 else ref


@dataclass(frozen=True)
class Step:
    action: ClassVar[str]
    region: str
    target: str  # the function (as the user named it) or the layer name

    def detail(self) -> str:
        return ""

    def describe(self) -> dict[str, str]:
        return {"action": self.action, "target": self.target, "region": self.region, "detail": self.detail()}


@dataclass(frozen=True)
class UploadS3(Step):
    action: ClassVar[str] = "upload-s3"
    object: S3Object
    zip_path: Path
    size: int

    def detail(self) -> str:
        return f"{self.zip_path.name} ({self.size} bytes) -> {self.object}"


@dataclass(frozen=True)
class PublishLayer(Step):
    action: ClassVar[str] = "publish-layer"
    source: CodeSource
    description: str
    runtimes: tuple[str, ...]
    code_sha256: str

    def detail(self) -> str:
        return f"new version, CodeSha256 {self.code_sha256}, arm64, {', '.join(self.runtimes)}"


@dataclass(frozen=True)
class ReuseLayer(Step):
    action: ClassVar[str] = "reuse-layer"
    arn: str

    def detail(self) -> str:
        return f"{self.arn} has the same CodeSha256"


@dataclass(frozen=True)
class LayerGrantStep(Step):
    """Adds or removes one of our statements in the policy of the layer version the functions use."""

    verb: ClassVar[str]
    layer: LayerRef
    statement_id: str

    @property
    def change(self) -> str:
        """For the report: 'permission added: 111122223333', 'permission removed: *'."""
        return f"permission {self.verb}: {grantee(self.statement_id)}"


@dataclass(frozen=True)
class AddLayerPermission(LayerGrantStep):
    action: ClassVar[str] = "add-layer-permission"
    verb: ClassVar[str] = "added"
    principal: str
    organization_id: str | None

    def detail(self) -> str:
        org = self.organization_id
        who = f"organization {org}" if org else f"principal {self.principal}"
        return f"lambda:GetLayerVersion on {self.layer} for {who} (statement {self.statement_id})"


@dataclass(frozen=True)
class RemoveLayerPermission(LayerGrantStep):
    action: ClassVar[str] = "remove-layer-permission"
    verb: ClassVar[str] = "removed"

    def detail(self) -> str:
        return (f"lambda:GetLayerVersion on {self.layer} no longer for {grantee(self.statement_id)} "
                f"(statement {self.statement_id}, no --layer-permission asks for it)")


@dataclass(frozen=True)
class UpdateCode(Step):
    action: ClassVar[str] = "update-code"
    source: CodeSource
    code_sha256: str
    changes: tuple[str, ...]

    def detail(self) -> str:
        return f"CodeSha256 {self.code_sha256}, arm64 ({'; '.join(self.changes)})"


@dataclass(frozen=True)
class UpdateConfig(Step):
    """Only Runtime, Handler and Layers, and only those that differ; None means 'leave it as it is'."""

    action: ClassVar[str] = "update-config"
    runtime: str | None
    handler: str | None
    layers: tuple[LayerRef, ...] | None
    changes: tuple[str, ...]

    def detail(self) -> str:
        return "; ".join(self.changes)


@dataclass(frozen=True)
class PublishVersion(Step):
    action: ClassVar[str] = "publish-version"
    description: str

    def detail(self) -> str:
        return f"description {self.description!r}"


@dataclass(frozen=True)
class SetAlias(Step):
    alias: str
    create: bool
    current_version: str | None
    version: str | None  # None: the version this plan publishes
    revision_id: str | None = None  # the alias's, as the plan read it; None when it is created
    rollback: bool = False  # `go-arm-lambda rollback`: back where the alias was before go-arm-lambda moved it

    @property
    def action(self) -> str:  # type: ignore[override]
        return "create-alias" if self.create else "rollback-alias" if self.rollback else "update-alias"

    def detail(self) -> str:
        if self.current_version is not None and self.current_version == self.version:
            return f"{self.alias} stays on version {self.version}; the traffic it sends elsewhere is removed"
        moved = f"from version {self.current_version} " if self.current_version else ""
        to = f"version {self.version}" if self.version else "the published version"
        return f"{self.alias} {'back ' if self.rollback else ''}{moved}to {to}"


def seconds_text(seconds: float) -> str:
    """30 -> '30s', 300 -> '5m', 90 -> '1m30s', 0.5 -> '0.5s': as --traffic writes durations."""
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"


@dataclass(frozen=True)
class CheckVersion(Step):
    """Invokes the new version in AWS; it passes on a 200 with no function error within the timeout (and, with
    an expectation, a payload that matches it). The alias moves only after it passed."""

    action: ClassVar[str] = "check-version"
    version: str | None  # "$LATEST", a version number, or None: the version this plan publishes
    event: bytes
    timeout: float
    expect: str | None  # a regular expression the payload must contain
    alias: str | None  # the alias the plan moves after the check, if any
    alias_version: str | None  # where that alias is now; None when the plan creates it

    def detail(self) -> str:
        what = self.version if self.version == "$LATEST" else (
            f"version {self.version}" if self.version else "the published version")
        expect = f" and a payload matching {self.expect!r}" if self.expect else ""
        return (f"invoke {what} with a {len(self.event)}-byte event; passes on 200 with no function error within "
                f"{self.timeout:g} s{expect}")


@dataclass(frozen=True)
class ShiftTraffic(Step):
    """Moves the alias to the new version by degrees through its routing configuration, while the alarms are
    watched; every function's shift of a run goes through the same stages on one clock (rollout.py)."""

    action: ClassVar[str] = "shift-traffic"
    alias: str
    current_version: str
    version: str | None  # None: the version this plan publishes
    traffic: Traffic
    alarms: tuple[str, ...]
    revision_id: str | None = None  # the alias's, as the plan read it

    def detail(self) -> str:
        to = f"version {self.version}" if self.version else "the published version"
        stages = ", ".join(f"{percent:g}% for {seconds_text(hold)}" for percent, hold in self.traffic.stages()[:-1])
        watch = f"; watching {', '.join(self.alarms)}" if self.alarms else ""
        return f"{self.alias} from version {self.current_version} to {to}: {stages}, then 100%{watch}"


@dataclass(frozen=True)
class TagRun(Step):
    """Tags the function with the run that deployed it, the last of its steps, for the next run's check."""

    action: ClassVar[str] = "tag-run"
    arn: str  # unqualified: tags belong to the function, not to one version
    run: DeployRun

    def detail(self) -> str:
        return f"{self.run.label} of workflow {self.run.workflow}"


# --- the plan --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionPlan:
    desired: DesiredFunction | DesiredAlias
    current: FunctionState
    changes: tuple[str, ...]  # what differs, for people: "runtime: go1.x -> provided.al2023", "code", ...
    steps: tuple[Step, ...]
    version: str | None = None  # the newest published version, reused when nothing changed since it
    # Why this function is not deployed at all (a newer run deployed it): its error, with no steps.
    refusal: str | None = None

    @property
    def region(self) -> str:
        return self.desired.region

    @property
    def name(self) -> str:
        return self.desired.spec.short_name


@dataclass(frozen=True)
class RegionPlan:
    region: str
    layer_steps: tuple[Step, ...]
    functions: tuple[FunctionPlan, ...]


@dataclass(frozen=True)
class Plan:
    regions: tuple[RegionPlan, ...]
    layer_name: str | None  # None in bootstrap mode
    alias: str | None = None

    def steps(self) -> list[Step]:
        """Every step in the order the executor takes them in a region: the layer's, then each function's."""
        return [s for r in self.regions for s in (*r.layer_steps, *(s for f in r.functions for s in f.steps))]

    def describe(self) -> list[dict[str, str]]:
        return [s.describe() for s in self.steps()]
