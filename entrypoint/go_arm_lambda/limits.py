"""Lambda's limits and name rules, as the real API enforces them.

moto and botocore check none of these, so a typo would sail through tests and fail half-way through a real
deploy. Everything here is pure; config, the CLI, package, smoke, verify and the planner call it, all before the
first write.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from go_arm_lambda.errors import UsageError

MAX_ZIP_IN_REQUEST = 50 * 1024 * 1024  # bytes; larger zips must go through S3
MAX_UNZIPPED = 262_144_000  # function plus all its layers, unzipped
MAX_LAYERS = 5
MAX_TIMEOUT_S = 900  # a function's longest timeout
MAX_EVENT = 6 * 1024 * 1024  # bytes of a synchronous invocation's payload
# A synchronous response's ceiling as Lambda enforces it: its own message says "6291556 bytes", 100 more than
# 6 MiB. Beyond it Invoke answers Function.ResponseSizeTooLarge.
MAX_RESPONSE = 6_291_556

# How a message names an input the user can give: config.say, which knows the input table and whether this run
# reads flags or the Action's inputs (`say("publish")` -> "--publish" or "the publish-version input"). limits
# cannot see the table, so callers hand it in.
Say = Callable[..., str]

RUNTIME_GLIBC = {"provided.al2023": (2, 34), "provided.al2": (2, 26)}

# Graviton2 (Neoverse-N1) is armv8.2-a and Lambda may still schedule arm64 functions on it.
GOARM64_CEILING = (8, 2)

# Every pattern here matches ASCII only (re.ASCII): \d would also take Arabic-Indic and other Unicode digits,
# which AWS refuses, or worse, which int() reads as numbers.
_GOARM64 = re.compile(r"^v(8\.[0-9]|9\.[0-5])(,(lse|crypto))*$", re.ASCII)
_NAME = re.compile(r"^[a-zA-Z0-9_-]+$", re.ASCII)
_REGION_PART = r"[a-z0-9-]+"  # which names are regions is botocore's data (partition_of), not a pattern
_FUNCTION_ARN = re.compile(
    rf"^arn:(aws[a-zA-Z-]*):lambda:({_REGION_PART}):(\d{{12}}):function:([a-zA-Z0-9_-]+)(?::(\$LATEST|[a-zA-Z0-9_-]+))?$",
    re.ASCII)
_LAYER_ARN = re.compile(
    rf"^arn:(aws[a-zA-Z-]*):lambda:({_REGION_PART}):(\d{{12}}):layer:([a-zA-Z0-9_-]+)(?::(\d+))?$", re.ASCII)
_ACCOUNT = re.compile(r"^\d{12}$", re.ASCII)
_ACCOUNT_ROOT = re.compile(r"^arn:(aws[a-zA-Z-]*):iam::(\d{12}):root$", re.ASCII)
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$", re.ASCII)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", re.ASCII)
_WHITESPACE = re.compile(r"\s")  # Unicode on purpose: Lambda refuses a Handler with any whitespace


@functools.cache
def _partitions() -> tuple[tuple[str, frozenset[str], re.Pattern[str]], ...]:
    """(partition, its regions, its region pattern) from botocore's endpoints.json: AWS's own list, new
    partitions (aws-eusc) included. Read as data, so that build and smoke never import botocore."""
    spec = importlib.util.find_spec("botocore")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise UsageError("botocore is not installed, and its data says which regions exist",
                         "install go-arm-lambda with its dependencies (pip install go-arm-lambda)")
    data = json.loads((Path(locations[0]) / "data" / "endpoints.json").read_text(encoding="utf-8"))
    # botocore's patterns use \w and \d; as AWS means them they are ASCII.
    return tuple((p["partition"], frozenset(p.get("regions", {})), re.compile(p["regionRegex"], re.ASCII))
                 for p in data["partitions"])


def partition_of(region: str) -> str | None:
    """The partition (aws, aws-cn, aws-us-gov, aws-eusc, aws-iso...) a region belongs to; None if none has it.

    A region botocore lists is known; one it does not list yet but that fits a partition's naming is taken
    (AWS opens regions faster than a pinned botocore learns them)."""
    partitions = _partitions()
    for name, regions, _ in partitions:
        if region in regions:
            return name
    return next((name for name, _, pattern in partitions if pattern.fullmatch(region)), None)


def goarm64_level(value: str) -> tuple[int, int]:
    """`v8.2,lse` -> (8, 2). The caller has checked the syntax."""
    major, minor = value.split(",")[0][1:].split(".")
    return int(major), int(minor)


def is_goarm64(value: str) -> bool:
    """Whether the text is a GOARM64 level at all (verify reads it from binaries, where anything can be)."""
    return _GOARM64.fullmatch(value) is not None


def check_goarm64(value: str) -> None:
    if not is_goarm64(value):
        raise UsageError(f"GOARM64 {value!r} is not a valid level",
                         "use v8.0 to v8.2, optionally with ,lse or ,crypto (e.g. v8.2,crypto)")
    if goarm64_level(value) > GOARM64_CEILING:
        raise UsageError(
            f"GOARM64 {value} is above v8.2: Lambda may run arm64 functions on Graviton2, which would die with SIGILL",
            "use v8.2 or lower (v8.0 is the default)")


def check_region(region: str) -> str:
    """The region's partition, or UsageError when no partition has such a region."""
    partition = partition_of(region)
    if partition is None:
        raise UsageError(f"region {region!r} is not an AWS region name", "use a name such as eu-west-1")
    return partition


def _check_arn_partition(arn: str, partition: str, region: str) -> None:
    expected = partition_of(region)
    if expected is None:
        raise UsageError(f"ARN {arn} names region {region!r}, which is not an AWS region", "fix the region in it")
    if partition != expected:
        raise UsageError(f"ARN {arn} says partition {partition}, but {region} is in {expected}",
                         f"write it as arn:{expected}:...")


def arn(region: str, service: str, account: str, resource: str) -> str:
    """An ARN in the region's own partition (arn:aws-cn:... in China, arn:aws-eusc:... in the EU sovereign
    cloud): never a literal arn:aws:."""
    return f"arn:{partition_of(region) or 'aws'}:{service}:{region}:{account}:{resource}"


def parse_function_arn(arn: str) -> tuple[str, str, str, str | None] | None:
    """(region, account, name, qualifier) of a function ARN, or None if it is not one."""
    m = _FUNCTION_ARN.match(arn)
    return (m.group(2), m.group(3), m.group(4), m.group(5)) if m else None


def check_function_name(name: str, say: Say) -> None:
    if name.startswith("arn:"):
        parsed = parse_function_arn(name)
        if parsed is None or len(name) > 140:
            raise UsageError(f"function ARN {name!r} is not valid",
                             "use arn:aws:lambda:REGION:ACCOUNT:function:NAME, or the bare function name")
        _check_arn_partition(name, name.split(":")[1], parsed[0])
        if len(parsed[2]) > 64:
            raise UsageError(f"function name {parsed[2]!r} is longer than 64 characters", "use the real name")
        if parsed[3] not in (None, "$LATEST"):
            # AWS updates only $LATEST; versions are immutable and aliases only point at them.
            raise UsageError(f"function ARN {name} names version or alias {parsed[3]!r}, which cannot be updated",
                             f"name the function without a qualifier; to move an alias, use {say('publish')} "
                             f"with {say('alias')}")
        return
    if not _NAME.match(name) or len(name) > 64:
        raise UsageError(f"function name {name!r} is not valid",
                         "use 1-64 letters, digits, hyphens or underscores, or a function ARN")


def check_function_arn_target(name: str, region: str, account: str | None, say: Say) -> None:
    """An ARN names its region and account; deploying it elsewhere would update some other function."""
    parsed = parse_function_arn(name) if name.startswith("arn:") else None
    if parsed is None:
        return
    arn_region, arn_account, _, _ = parsed
    if arn_region != region:
        raise UsageError(f"function {name} is in {arn_region}, but the deploy targets {region}",
                         f"deploy it with {say('regions', arn_region)}, or name the function without an ARN")
    if account is not None and arn_account != account:
        raise UsageError(f"function {name} belongs to account {arn_account}, but the credentials are for {account}",
                         "use credentials for that account, or fix the ARN")


def check_handler(handler: str) -> None:
    """Lambda's Handler rule (no whitespace, 1-128 characters) plus what keeps the bootstrap inside the task root.

    package and smoke call this (and layer/bootstrap refuses the same handlers), so a zip we write is one we can
    also run and deploy.
    """
    parts = handler.split("/")
    if (not handler or len(handler) > 128 or _WHITESPACE.search(handler) or handler.startswith("/")
            or "\\" in handler or "" in parts or ".." in parts or "." in parts):
        raise UsageError(f"handler {handler!r} is not valid",
                         "use the binary's path inside the zip: 1-128 characters, no spaces, not absolute, "
                         "no . or .. segments (e.g. orders)")


def check_layer_name(name: str) -> None:
    if name.startswith("arn:"):
        m = _LAYER_ARN.match(name)
        if m is None or len(name) > 140:
            raise UsageError(f"layer ARN {name!r} is not valid",
                             "use arn:aws:lambda:REGION:ACCOUNT:layer:NAME, or a bare layer name")
        _check_arn_partition(name, m.group(1), m.group(2))
        return
    if not _NAME.match(name) or len(name) > 140:
        raise UsageError(f"layer name {name!r} is not valid", "use 1-140 letters, digits, hyphens or underscores")


def is_layer_arn_of(arn: str, layer_name: str) -> bool:
    """True for any version of the named layer. Only the name: the planner also knows our layer under another
    name by its content (plan.is_our_layer)."""
    m = _LAYER_ARN.match(arn)
    return m is not None and m.group(4) == layer_name


def check_alias(alias: str) -> None:
    if not _NAME.match(alias) or alias.isdigit() or len(alias) > 128:
        raise UsageError(f"alias {alias!r} is not valid",
                         "use 1-128 letters, digits, hyphens or underscores, not all digits (e.g. live)")


def check_layer_principal(principal: str) -> None:
    """`*`, a 12-digit account, an account root ARN, or `org:o-xxxxxxxxxx` (shared with `*` and the org)."""
    if principal == "*" or _ACCOUNT.match(principal):
        return
    if m := _ACCOUNT_ROOT.match(principal):
        # IAM is global within a partition: the ARN names no region, so any partition's root ARN is well formed.
        if m.group(1) not in {name for name, _, _ in _partitions()}:
            raise UsageError(f"layer permission {principal!r} names partition {m.group(1)}, which does not exist",
                             "write it as arn:aws:iam::ACCOUNT:root (or the account id alone)")
        return
    if principal.startswith("org:") and _ORG.match(principal[4:]):
        return
    raise UsageError(f"layer permission {principal!r} is not valid",
                     "use a 12-digit account id, an account root ARN, * for public, or org:o-xxxxxxxxxx")


def check_deploy_inputs(*, functions: Sequence[str], regions: Sequence[str], layer_name: str, layer_mode: bool,
                        principals: Sequence[str], alias: str | None, publish: bool, bucket: str | None,
                        say: Say) -> None:
    """Every deploy input against AWS's rules, which moto and botocore do not check. config.load is its one
    caller, before anything is built; the planner receives these inputs only from a loaded Config."""
    repeated = sorted({r for r in regions if list(regions).count(r) > 1})
    if repeated:
        # Deploying a region twice would publish its layer twice and race two updates of each function.
        raise UsageError(f"region {', '.join(repeated)} is given more than once", "give each region once")
    for region in regions:
        check_region(region)
    for name in functions:
        check_function_name(name, say)
        for region in regions:  # the account needs AWS; the region does not, so it is checked before the build
            check_function_arn_target(name, region, None, say)
    check_layer_name(layer_name)
    if layer_mode and layer_name.startswith("arn:"):
        raise UsageError(f"layer name {layer_name} is an ARN, but layer mode publishes the layer itself",
                         "give a bare layer name (e.g. go-arm-lambda-bootstrap)")
    if principals and not layer_mode:
        raise UsageError(f"{say('layer_permissions')} shares the bootstrap layer, and bootstrap mode publishes no "
                         "layer", f"leave it out, or deploy in layer mode ({say('mode', 'layer')})")
    for principal in principals:
        check_layer_principal(principal)
    if alias is not None:
        check_alias(alias)
        if not publish:
            raise UsageError(f"alias {alias} needs a published version to point at",
                             f"also turn publishing on ({say('publish', 'true')})")
    if bucket is not None:
        # S3 code must sit in the function's region, so one bucket name may stand for one bucket per region.
        for region in regions or ("us-east-1",):
            check_bucket_name(bucket.replace("{region}", region))


def check_bucket_name(bucket: str) -> None:
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UsageError(f"S3 bucket name {bucket!r} is not valid",
                         "use 3-63 lowercase letters, digits, dots or hyphens")


MAX_ALARM_NAME = 255  # CloudWatch's limit for an alarm name


def check_rollout_inputs(*, command: str, alias: str | None, promote_from: str | None, publish: bool,
                         gradual: bool, alarms: Sequence[str], check_deployed: bool,
                         check_options: Sequence[str], say: Say) -> None:
    """The deployed-version check, traffic shifting, promote and rollback: what goes together, checked before
    anything is built or written. `check_options` names the check flags that were given (--check-expect, ...)."""
    if command == "promote":
        if not promote_from or not alias:
            raise UsageError("promote needs the alias to promote from and the alias to promote to",
                             "give --from-alias and --to-alias (in the Action: promote-from and alias)")
        check_alias(promote_from)
        if promote_from == alias:
            raise UsageError(f"promote from alias {alias} to itself changes nothing", "name two different aliases")
    if command == "rollback" and not alias:
        raise UsageError("rollback needs the alias to put back", f"give {say('alias', 'live')}")
    for name in alarms:
        if not 0 < len(name) <= MAX_ALARM_NAME or any(ord(c) < 32 for c in name):
            raise UsageError(f"alarm name {name!r} is not valid", "give the CloudWatch alarm's name: 1-255 "
                             "characters, one per line")
    if gradual and not (alias and publish):
        raise UsageError("shifting traffic needs an alias and published versions: the alias's routing sends a "
                         "share of its traffic to a second published version",
                         f"give {say('publish', 'true')} and {say('alias', 'live')}, or "
                         f"{say('traffic', 'all-at-once')}")
    if alarms and not gradual:
        raise UsageError(f"alarms are watched while traffic shifts, and {say('traffic', 'all-at-once')} shifts none",
                         f"give {say('traffic', 'canary:10:5m')} (or linear:PERCENT:DURATION), or leave the "
                         "alarms out")
    if check_options and not check_deployed and command != "rollback":
        raise UsageError(f"{' and '.join(check_options)} given, but the deployed-version check is off",
                         f"turn it on ({say('check_deployed', 'true')}), or leave them out")
