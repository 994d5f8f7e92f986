"""Desired state -> a `Plan` of typed steps (steps.py), read through the read-only `LambdaView`.

Everything that can be checked against AWS is checked here, before the executor makes its first write: ARNs
against the target region and account, that each function exists, is a Zip package and runs Go, the layer
count after merging, the sizes, and that the S3 bucket exists in each region. The inputs themselves were
checked when the config was loaded. `--dry-run` previews exactly this plan; the executor runs exactly these
steps.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from go_arm_lambda import limits, package, rollout
from go_arm_lambda.config import FunctionSpec, say
from go_arm_lambda.errors import UsageError, UserError, raise_problems
from go_arm_lambda.lambda_api import LambdaView
from go_arm_lambda.steps import (
    STATEMENT_PREFIX,
    AddLayerPermission,
    AliasState,
    Artifact,
    CodeSource,
    DeployConfig,
    DeployRun,
    DesiredFunction,
    DesiredLayer,
    DesiredState,
    FunctionPlan,
    FunctionState,
    LayerRef,
    LayerState,
    PendingLayer,
    Plan,
    PublishLayer,
    PublishVersion,
    RegionPlan,
    RemoveLayerPermission,
    ReuseLayer,
    S3Object,
    Step,
    TagRun,
    UpdateCode,
    UpdateConfig,
    UploadS3,
    layer_label,
)

# Runtimes a Go function can be on today. Anything else (python3.12, nodejs20.x) means the name points at
# someone else's function, and overwriting its code would break it.
GO_RUNTIMES = ("go1.x", "provided", "provided.al2", "provided.al2023")
# How our layer versions describe themselves, whatever the layer's name: layer_description() below, and
# layer/template.yaml's "go-arm-lambda bootstrap: ...".
_OUR_DESCRIPTION = re.compile(r"^go-arm-lambda +(\S+ +)?bootstrap\b", re.ASCII)


def layer_description(tool_version: str, artifact: Artifact) -> str:
    return f"go-arm-lambda {tool_version} bootstrap, sha256 {artifact.sha256}"


def is_our_layer(layer: LayerState, code_sha256: str | None) -> bool:
    """A layer version go-arm-lambda published (under any --layer-name, any tool version), or one with the very
    bootstrap this deploy ships (`code_sha256`, None in bootstrap mode)."""
    return bool(_OUR_DESCRIPTION.match(layer.description)) or layer.code_sha256 == code_sha256


def desired_state(config: DeployConfig, functions: Sequence[tuple[FunctionSpec, str, Artifact]],
                  layer_zip: Artifact | None, *, tool_version: str, commit: str | None = None,
                  run: DeployRun | None = None) -> DesiredState:
    """The desired state for every (region, function); `functions` holds (spec, handler, zip) per function.
    `run`: the GitHub Actions run that deploys, if any (its tags guard against older runs)."""
    layer = None
    if config.mode == "layer":
        if layer_zip is None:
            raise UsageError("layer mode needs the layer zip", f"package the layer, or use {say('mode', 'bootstrap')}")
        layer = DesiredLayer(config.layer_name, layer_zip, (config.runtime,),
                             layer_description(tool_version, layer_zip), tuple(config.layer_permissions))
    return DesiredState(config, layer, tuple(DesiredFunction(spec, region, zip_, handler, config.runtime)
                                             for region in config.regions for spec, handler, zip_ in functions),
                        commit, run)


@dataclass(frozen=True)
class _Current:
    """What the view said about one region, read before planning so the planning itself is pure."""

    account: str | None
    bucket_region: str | None  # where --s3-bucket is (None: it does not exist, or no bucket was given)
    layer: LayerState | None
    layer_sids: frozenset[str]  # statement ids in the policy of `layer`, read only when it is reused
    functions: dict[str, FunctionState | None]
    our_layers: frozenset[str]  # the layer version ARNs on those functions that are ours (by name or content)
    newest_versions: dict[str, FunctionState | None]  # read only with --publish
    aliases: dict[str, AliasState | None]  # read only with --alias
    last_runs: dict[str, DeployRun | None]  # the run each function's tags name; read only under Actions


def make_plan(desired: DesiredState, views: Mapping[str, LambdaView], *, concurrency: int = 8) -> Plan:
    """Reads AWS, checks everything, and returns the steps; raises UsageError before anything is written."""
    _check_inputs(desired)
    rollout.check_alarms({region: views[region] for region in desired.regions}, desired.config.alarms)
    check_event = rollout.check_event(desired.config)
    # Each region reads through a bounded pool of its own: Lambda's quotas are per region, so one region's reads
    # queued ahead of another's would leave the other's quota unused. A region only schedules its reads and
    # waits for them, so regions get a thread each (it must not take a pool worker its own reads wait for).
    def read_region(region: str) -> _Current:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return _read_region(desired, views[region], pool)

    with ThreadPoolExecutor(max_workers=len(desired.regions)) as regions_pool:
        current = dict(zip(desired.regions, regions_pool.map(read_region, desired.regions), strict=True))
    problems: list[UserError] = []
    regions = []
    for region in desired.regions:
        if desired.config.s3_bucket is not None:
            _check_bucket(_bucket(desired, region), region, current[region].bucket_region)
        layer_steps, layer_ref = _plan_layer(desired, region, current[region])
        functions = []
        for want in (f for f in desired.functions if f.region == region):
            try:
                functions.append(_plan_function(desired, want, current[region], layer_ref, check_event))
            except UserError as exc:
                problems.append(exc)
        regions.append(RegionPlan(region, tuple(layer_steps), tuple(functions)))
    raise_problems(problems, "deployed")
    return Plan(tuple(regions), desired.layer.name if desired.layer else None, desired.config.alias)


def _check_inputs(desired: DesiredState) -> None:
    """What loading the config could not know yet: the zips' sizes. (config.load checked the inputs themselves
    against AWS's rules, limits.check_deploy_inputs.)"""
    if not desired.regions:
        raise UsageError("no region to deploy to", f"give {say('regions', 'eu-west-1')}")
    layer_zip = desired.layer.zip if desired.layer else None
    sized = [(want.spec.short_name, want.zip, layer_zip) for want in desired.functions]
    if desired.layer is not None:
        sized.append((desired.layer.name, desired.layer.zip, None))
    for what, zip_, with_layer in sized:
        # The packager's own rule, so a zip it accepts and one the plan accepts are the same zips.
        if package.check_limits(zip_, with_layer, what) and desired.config.s3_bucket is None:
            raise UsageError(f"the zip of {what} is {zip_.size:,} bytes, over the {limits.MAX_ZIP_IN_REQUEST:,} "
                             "bytes Lambda takes in a request", f"give {say('s3_bucket')} to upload it through S3")


def _bucket(desired: DesiredState, region: str) -> str:
    assert desired.config.s3_bucket is not None
    return desired.config.s3_bucket.replace("{region}", region)


def _check_bucket(bucket: str, region: str, found_in: str | None) -> None:
    if found_in is None:
        raise UsageError(f"S3 bucket {bucket} (for {region}) does not exist",
                         f"create it in {region}, or fix {say('s3_bucket')}")
    if found_in != region:
        raise UsageError(f"S3 bucket {bucket} is in {found_in}, but Lambda in {region} takes code only from a "
                         "bucket in its own region",
                         f"give a bucket per region, e.g. {say('s3_bucket', 'my-bucket-{region}')}")


def _read_region(desired: DesiredState, view: LambdaView, pool: ThreadPoolExecutor) -> _Current:
    wanted = [f.spec.name for f in desired.functions if f.region == view.region]
    needs_account = any(name.startswith("arn:") for name in wanted)
    account = pool.submit(view.account_id) if needs_account else None
    bucket = pool.submit(view.bucket_region, _bucket(desired, view.region)) if desired.config.s3_bucket else None
    layer = pool.submit(view.newest_layer_version, desired.layer.name) if desired.layer else None
    layer_reads: dict[str, Future[LayerState | None]] = {}
    lock = threading.Lock()

    def read_function(name: str) -> FunctionState | None:
        state = view.function(name)
        # Each layer version the functions use is read once, started as soon as a function shows it, while the
        # other reads go on. Only scheduled, never waited for here: a pool worker must not wait on the pool.
        # A version of --layer-name is ours by its name alone and needs no read.
        for arn in state.layers if state else ():
            with lock:
                if arn not in layer_reads and not limits.is_layer_arn_of(arn, desired.config.layer_name):
                    layer_reads[arn] = pool.submit(view.layer_version, arn)
        return state

    functions = dict(zip(wanted, pool.map(read_function, wanted), strict=True))
    existing = [name for name in wanted if functions[name] is not None]
    newest_versions = dict(zip(existing, pool.map(view.newest_published_version, existing), strict=True)) \
        if desired.config.publish else {}
    aliases: dict[str, AliasState | None] = {}
    if desired.config.alias:
        alias = desired.config.alias
        aliases = dict(zip(existing, pool.map(lambda name: view.alias(name, alias), existing), strict=True))
    last_runs: dict[str, DeployRun | None] = {}
    if desired.run is not None:
        def last_run(name: str) -> DeployRun | None:
            state = functions[name]
            assert state is not None
            return DeployRun.from_tags(state.tags if state.tags is not None else view.tags(state.arn))
        last_runs = dict(zip(existing, pool.map(last_run, existing), strict=True))
    newest = layer.result() if layer else None
    sids: frozenset[str] = frozenset()
    if newest and desired.layer and _reusable(desired.layer, newest):
        # Read even with no --layer-permission: grants we made earlier may have to be revoked.
        sids = view.layer_statement_ids(desired.layer.name, newest.version)
    shipped = desired.layer.zip.code_sha256 if desired.layer else None
    ours = {arn for state in functions.values() if state for arn in state.layers
            if limits.is_layer_arn_of(arn, desired.config.layer_name)}
    ours |= {arn for arn, read in layer_reads.items()
             if (found := read.result()) is not None and is_our_layer(found, shipped)}
    return _Current(account.result() if account else None, bucket.result() if bucket else None, newest, sids,
                    functions, frozenset(ours), newest_versions, aliases, last_runs)


def _reusable(layer: DesiredLayer, newest: LayerState) -> bool:
    return (newest.code_sha256 == layer.zip.code_sha256 and "arm64" in newest.compatible_architectures
            and set(layer.compatible_runtimes) <= set(newest.compatible_runtimes))


def statement_id(principal: str) -> str:
    """One statement id per principal, so adding the same sharing twice is recognised and skipped."""
    if principal == "*":
        return f"{STATEMENT_PREFIX}public"
    if principal.startswith("org:"):
        return f"{STATEMENT_PREFIX}{principal[4:]}"
    return f"{STATEMENT_PREFIX}{principal.split(':')[4] if principal.startswith('arn:') else principal}"


def _plan_layer(desired: DesiredState, region: str, current: _Current) -> tuple[list[Step], LayerRef | None]:
    layer = desired.layer
    if layer is None:
        return [], None
    if current.layer is not None and not is_our_layer(current.layer, layer.zip.code_sha256):
        # Publishing would make our bootstrap the newest version of somebody else's layer, and every function
        # of theirs that moves to the newest version would get it.
        raise UsageError(f"layer {layer.name} in {region} is not go-arm-lambda's: its newest version "
                         f"({current.layer.arn}) has neither our description nor our bootstrap",
                         f"give {say('layer_name')} a name of our own (the default is go-arm-lambda-bootstrap); "
                         "nothing was changed")
    steps: list[Step] = []
    ref: LayerRef
    if current.layer is not None and _reusable(layer, current.layer):
        ref = current.layer.arn
        steps.append(ReuseLayer(region, layer.name, ref))
    else:
        ref = PendingLayer(layer.name)
        source = _source(desired, region, steps, layer.name, f"layers/{layer.name}", layer.zip)
        steps.append(PublishLayer(region, layer.name, source, layer.description, layer.compatible_runtimes,
                                  layer.zip.code_sha256))
    # Our statements end up exactly as the flags say. "111122223333" and "arn:aws:iam::111122223333:root" are
    # one grant with one statement id: adding it twice would make AWS refuse the second.
    wanted: dict[str, str] = {}
    for principal in layer.permissions:
        wanted.setdefault(statement_id(principal), principal)
    have = set() if isinstance(ref, PendingLayer) else {
        sid for sid in current.layer_sids if sid.startswith(STATEMENT_PREFIX)}
    for sid, principal in wanted.items():
        if sid not in have:
            org = principal[4:] if principal.startswith("org:") else None
            steps.append(AddLayerPermission(region, layer.name, ref, sid, "*" if org else principal, org))
    # Revoked after the grants are added, so that moving from one grant to another never leaves a consumer
    # who is meant to keep access without it for a moment.
    steps += [RemoveLayerPermission(region, layer.name, ref, sid) for sid in sorted(have - wanted.keys())]
    return steps, ref


def _source(desired: DesiredState, region: str, steps: list[Step], target: str, key_dir: str,
            zip_: Artifact) -> CodeSource:
    """The zip itself, or (with a bucket) an upload step and the S3 object it creates. Keys carry the content
    hash, so an object never changes once written."""
    if desired.config.s3_bucket is None:
        return zip_.path
    obj = S3Object(_bucket(desired, region), f"{desired.config.s3_prefix}{key_dir}/{zip_.sha256}.zip")
    steps.append(UploadS3(region, target, obj, zip_.path, zip_.size))
    return obj


def merge_layers(existing: Sequence[str], ours_now: Collection[str],
                 ours: LayerRef | None) -> tuple[LayerRef, ...]:
    """Existing layers kept in order; the first of ours (`ours_now`: any version, any name) replaced in place by
    `ours` and any other copy removed, or `ours` appended when there is none (extracted last, its
    /opt/bootstrap wins); with `ours` None (bootstrap mode) all of ours are removed."""
    merged: list[LayerRef] = []
    placed = False
    for arn in existing:
        if arn in ours_now:
            if ours is not None and not placed:
                merged.append(ours)
                placed = True
            continue
        merged.append(arn)
    if ours is not None and not placed:
        merged.append(ours)
    return tuple(merged)


def _plan_function(desired: DesiredState, want: DesiredFunction, current: _Current,
                   layer_ref: LayerRef | None, check_event: bytes | None = None) -> FunctionPlan:
    name, region = want.spec.name, want.region
    limits.check_function_arn_target(name, region, current.account, say)
    state = current.functions.get(name)
    if state is None:
        raise UsageError(f"function {want.spec.short_name} does not exist in {region}",
                         "create it first (go-arm-lambda updates functions, it does not create them), "
                         f"or fix the name or {say('regions')}")
    if state.package_type != "Zip":
        raise UsageError(f"function {want.spec.short_name} in {region} is a container image function "
                         f"(PackageType {state.package_type})",
                         "go-arm-lambda deploys Zip functions; name a Zip function instead")
    if state.runtime not in GO_RUNTIMES:
        raise UsageError(f"function {want.spec.short_name} in {region} runs {state.runtime}, not Go",
                         f"check the name: only functions on {', '.join(GO_RUNTIMES)} are updated")
    layers = merge_layers(state.layers, current.our_layers, layer_ref)
    if len(layers) > limits.MAX_LAYERS:
        raise UsageError(f"function {want.spec.short_name} in {region} would have {len(layers)} layers, "
                         f"over Lambda's {limits.MAX_LAYERS}", "remove a layer from the function first")

    steps: list[Step] = []
    code_changes = []
    if state.code_sha256 != want.zip.code_sha256:
        code_changes.append("code")
    if state.architectures != ("arm64",):
        code_changes.append(f"architecture: {','.join(state.architectures)} -> arm64")
    if code_changes:
        source = _source(desired, region, steps, name, f"functions/{want.spec.short_name}", want.zip)
        steps.append(UpdateCode(region, name, source, want.zip.code_sha256, tuple(code_changes)))

    config_changes = []
    runtime = want.runtime if state.runtime != want.runtime else None
    if runtime:
        config_changes.append(f"runtime: {state.runtime} -> {want.runtime}")
    handler = want.handler if state.handler != want.handler else None
    if handler:
        config_changes.append(f"handler: {state.handler} -> {want.handler}")
    new_layers = layers if layers != state.layers else None
    if new_layers is not None:
        config_changes.append("layers: [{}] -> [{}]".format(", ".join(map(layer_label, state.layers)),
                                                            ", ".join(map(layer_label, layers))))
    if config_changes:
        steps.append(UpdateConfig(region, name, runtime, handler, new_layers, tuple(config_changes)))

    changes = (*code_changes, *config_changes)
    version = None
    if desired.config.publish:
        newest = current.newest_versions.get(name)
        if not changes and newest is not None and newest.same_as(state):
            version = newest.version  # already published exactly as wanted: another version would be a copy
        else:
            steps.append(PublishVersion(region, name, desired.commit or "go-arm-lambda"))
    # The deployed-version check, then the alias's move (rollout.py): without --publish the check invokes $LATEST.
    steps += rollout.release_steps(desired.config, region, name, version if desired.config.publish else "$LATEST",
                                   current.aliases.get(name), changed=bool(steps), event=check_event)
    run, last = desired.run, current.last_runs.get(name)
    if steps and run is not None:
        if last is not None and last.newer_than(run) and not desired.config.allow_older:
            # Before any write: an older run must not overwrite what a newer one deployed.
            refusal = UsageError(f"{last.label} already deployed {want.spec.short_name}; not deploying {run.label}",
                                 "this run is older: deploy from a newer run, or give --allow-older (input "
                                 "allow-older) to deploy it on purpose")
            return FunctionPlan(want, state, (), (), refusal=str(refusal))
        steps.append(TagRun(region, name, state.arn, run))
    return FunctionPlan(want, state, changes, tuple(steps), version)
