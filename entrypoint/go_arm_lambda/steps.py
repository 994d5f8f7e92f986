"""The contract between planning and executing: what is wanted, what AWS has, and the typed steps between them.

The planner (plan.py) turns a `DesiredState` and the AWS state it reads (`FunctionState`, `LayerState`, ...)
into a `Plan` of `Step`s; the executor (execute.py) runs each step with exactly one handler for its type, or on
a dry run previews it through the same handler. aws.py returns the state types. A new kind of step is one
dataclass here and one handler in execute.py; a new deploy input is one field of `DeployConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, Protocol

from go_arm_lambda.config import Config, FunctionSpec

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
class DesiredState:
    config: DeployConfig
    layer: DesiredLayer | None  # None in bootstrap mode
    functions: tuple[DesiredFunction, ...]  # one per (region, function)
    commit: str | None = None

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

    @property
    def action(self) -> str:  # type: ignore[override]
        return "create-alias" if self.create else "update-alias"

    def detail(self) -> str:
        moved = f"from version {self.current_version} " if self.current_version else ""
        to = f"version {self.version}" if self.version else "the published version"
        return f"{self.alias} {moved}to {to}"


# --- the plan --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionPlan:
    desired: DesiredFunction
    current: FunctionState
    changes: tuple[str, ...]  # what differs, for people: "runtime: go1.x -> provided.al2023", "code", ...
    steps: tuple[Step, ...]
    version: str | None = None  # the newest published version, reused when nothing changed since it

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
