"""The rollout: from a new version in AWS to the traffic it serves, and back.

- `release_steps`: what follows an update (or makes a promotion): the deployed-version check (`CheckVersion`),
  then the alias's move, all at once (`SetAlias`) or by degrees (`ShiftTraffic`). The alias moves only after
  the check passed; a failed check leaves it where it was, which is the rollback.
- `check`: invokes the exact version and judges the answer; `check_error` words a failure.
- `shift_together`: every ShiftTraffic of a run through the same stages on one clock, watching the alarms; an
  alarm in ALARM puts every alias back on its old version, routing removed.
- `plan_promote`, `plan_rollback`: the plans of `go-arm-lambda promote` and `rollback`, read through the view
  and run by the same executor as a deploy's.
- `describe_move`: what go-arm-lambda writes into an alias's description when it moves it; rollback reads it.

Durations are real: tests give `canary:10:2s`, never a patched clock.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from go_arm_lambda.aws import AwsTimeout
from go_arm_lambda.config import FunctionSpec, load_event, say
from go_arm_lambda.errors import CheckFailed, RolledBack, UsageError, UserError, raise_problems
from go_arm_lambda.lambda_api import LambdaView, LambdaWriter
from go_arm_lambda.report import CheckReport, TrafficStep
from go_arm_lambda.steps import (
    AliasState,
    CheckVersion,
    DeployConfig,
    DesiredAlias,
    FunctionPlan,
    FunctionState,
    Plan,
    RegionPlan,
    SetAlias,
    ShiftTraffic,
    Step,
)

# How much of a payload and a log the report keeps: Lambda's log tail is 4 KB, and a payload beyond that is
# better read in the function's own logs.
_KEEP = 4096
_PREFIX = "go-arm-lambda: "
_MOVED = re.compile(rf"^{_PREFIX}(moved|rolled back) from version (\S+) to (\S+)", re.ASCII)
_CREATED = re.compile(rf"^{_PREFIX}created at version (\S+)", re.ASCII)


# --- planning ------------------------------------------------------------------------------------------------

def release_steps(config: DeployConfig, region: str, function: str, version: str | None,
                  alias_now: AliasState | None, *, changed: bool, event: bytes | None) -> list[Step]:
    """The check and the alias's move for one function. `version`: the version to release ("$LATEST" without
    --publish; None: the one this plan publishes). `changed`: the plan updates the function, so its new state
    is checked even when no alias moves. `event`: the check's, read once for the whole plan."""
    alias = config.alias
    moves = alias is not None and (version is None or alias_now is None or alias_now.function_version != version
                                   or bool(alias_now.weights))
    steps: list[Step] = []
    if config.check_deployed and (changed or moves):
        assert event is not None, "the planner reads the check's event when the check is on"
        moving_from = alias_now.function_version if moves and alias_now else None
        steps.append(CheckVersion(region, function, version, event, config.check_timeout, config.check_expect,
                                  alias if moves else None, moving_from))
    if not moves:
        return steps
    assert alias is not None
    if alias_now is not None and config.traffic.gradual and alias_now.function_version != version:
        if alias_now.function_version == "$LATEST":
            raise UsageError(f"alias {alias} of {function} in {region} points at $LATEST, and traffic shifts only "
                             "between published versions",
                             f"point the alias at a published version first, or use {say('traffic', 'all-at-once')}")
        steps.append(ShiftTraffic(region, function, alias, alias_now.function_version, version, config.traffic,
                                  config.alarms, alias_now.revision_id))
    else:
        steps.append(SetAlias(region, function, alias, alias_now is None,
                              alias_now.function_version if alias_now else None, version,
                              alias_now.revision_id if alias_now else None))
    return steps


def check_event(config: DeployConfig) -> bytes | None:
    """The event the deployed-version check sends, None with the check off: for deploy and promote alike."""
    return load_event(config.deployed_check_event) if config.check_deployed else None


def check_alarms(views: Mapping[str, LambdaView], alarms: Sequence[str]) -> None:
    """Every alarm exists in every region (a typo would otherwise watch nothing); UsageError before any write."""
    missing = [f"{name} ({region})" for region, view in views.items() if alarms
               for name in sorted(set(alarms) - set(view.alarm_states(alarms)))]
    if missing:
        raise UsageError(f"CloudWatch alarm {', '.join(missing)} does not exist",
                         "give the names of existing alarms (each must exist in every region deployed to)")


def describe_move(before: str | None, after: str, *, rollback: bool = False) -> str:
    """The alias description go-arm-lambda writes when it moves an alias: where from, for `rollback`."""
    if before is None:
        return f"{_PREFIX}created at version {after}"
    return f"{_PREFIX}{'rolled back' if rollback else 'moved'} from version {before} to {after}"


def plan_promote(config: DeployConfig, functions: Sequence[FunctionSpec], views: Mapping[str, LambdaView],
                 *, from_alias: str, concurrency: int = 8) -> Plan:
    """`go-arm-lambda promote`: each function's alias `config.alias` to the version `from_alias` has, with the
    check and traffic options of a deploy; UsageError, before any write, for whatever cannot be promoted."""
    to_alias = config.alias
    assert to_alias is not None, "config.load requires the alias to promote to"
    check_alarms(views, config.alarms)
    event = check_event(config)

    def plan_one(spec: FunctionSpec, view: LambdaView) -> FunctionPlan:
        name, where = spec.short_name, f"in {view.region}"
        source = view.alias(spec.name, from_alias)
        if source is None:
            raise UsageError(f"function {name} has no alias {from_alias} {where}",
                             f"deploy to {from_alias} first, or fix --from-alias, the function or --region")
        if source.weights:
            raise UsageError(f"alias {from_alias} of {name} {where} is shifting traffic ({_routing(source)})",
                             "promote once that shift has finished, or roll it back")
        version = source.function_version
        if version == "$LATEST":
            raise UsageError(f"alias {from_alias} of {name} {where} points at $LATEST, which is not a fixed version",
                             f"deploy to {from_alias} with --publish, so that the same bytes can be promoted")
        target = view.alias(spec.name, to_alias)
        state = _version_state(view, spec, version)
        steps = release_steps(config, view.region, spec.name, version, target, changed=False, event=event)
        changes = () if not steps else (f"{to_alias}: version {target.function_version} -> {version}",) \
            if target else (f"{to_alias}: created at version {version}",)
        return FunctionPlan(DesiredAlias(spec, view.region, to_alias, version), state, changes, tuple(steps),
                            version)

    return _plan_each(functions, views, plan_one, to_alias, "promoted", concurrency)


def plan_rollback(functions: Sequence[FunctionSpec], views: Mapping[str, LambdaView], *, alias: str,
                  concurrency: int = 8) -> Plan:
    """`go-arm-lambda rollback`: each function's alias back on the version it had before go-arm-lambda last
    moved it, as the alias's description records; an alias caught mid-shift just loses its routing."""

    def plan_one(spec: FunctionSpec, view: LambdaView) -> FunctionPlan:
        name, where = spec.short_name, f"in {view.region}"
        now = view.alias(spec.name, alias)
        if now is None:
            raise UsageError(f"function {name} has no alias {alias} {where}", "fix --alias, the function or --region")
        current = now.function_version
        if now.weights:  # a shift that never finished (the job was cancelled): stop it where it started
            back, change = current, f"{alias}: routing removed ({_routing(now)}), stays on version {current}"
        else:
            back = _before(now, name, where)
            change = f"{alias}: version {current} -> {back} (rollback)"
        step = SetAlias(view.region, spec.name, alias, False, current, back, now.revision_id, rollback=True)
        return FunctionPlan(DesiredAlias(spec, view.region, alias, back), _version_state(view, spec, back),
                            (change,), (step,), back)

    return _plan_each(functions, views, plan_one, alias, "rolled back", concurrency)


def _before(alias: AliasState, name: str, where: str) -> str:
    """The version an alias had before go-arm-lambda last moved it, or why there is none to go back to."""
    what = f"alias {alias.name} of {name} {where}"
    moved = _MOVED.match(alias.description)
    if moved is None:
        created = _CREATED.match(alias.description)
        if created is not None:
            raise UsageError(f"{what} was created by go-arm-lambda at version {created.group(1)}: there is no "
                             "earlier version to go back to",
                             "point it at a version yourself (aws lambda update-alias)")
        raise UsageError(f"{what} was not moved by go-arm-lambda (its description does not say where from)",
                         "point it at a version yourself (aws lambda update-alias)")
    verb, before, after = moved.groups()
    if alias.function_version != after:
        raise UsageError(f"{what} is on version {alias.function_version}, but go-arm-lambda last moved it to "
                         f"{after}: something else moved it since", "point it at a version yourself")
    if verb == "rolled back":
        raise UsageError(f"{what} was last moved by a rollback (from version {before} to {after}); rolling back "
                         f"again would bring version {before} back", "deploy or promote the version you want")
    return before


def _version_state(view: LambdaView, spec: FunctionSpec, version: str) -> FunctionState:
    state = view.function(spec.name, version)
    if state is None:
        raise UsageError(f"function {spec.short_name} has no version {version} in {view.region}",
                         "check the function and --region")
    return state


def _plan_each(functions: Sequence[FunctionSpec], views: Mapping[str, LambdaView],
               plan_one: Callable[[FunctionSpec, LambdaView], FunctionPlan], alias: str, verb: str,
               concurrency: int) -> Plan:
    """Reads and plans every (region, function) side by side; every problem is reported, before any write."""
    pairs = [(spec, views[region]) for region in views for spec in functions]

    def one(pair: tuple[FunctionSpec, LambdaView]) -> FunctionPlan | UserError:
        try:
            return plan_one(*pair)
        except UserError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        planned = list(pool.map(one, pairs))
    # In the order of the regions and functions given, not in the order the reads happened to finish.
    raise_problems([p for p in planned if isinstance(p, UserError)], verb)
    return Plan(tuple(RegionPlan(region, (), tuple(fp for fp in planned
                                                   if isinstance(fp, FunctionPlan) and fp.region == region))
                      for region in views), None, alias)


def _routing(alias: AliasState) -> str:
    return ", ".join(f"version {v} gets {w:.0%}" for v, w in sorted(alias.weights.items()))


# --- the check -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One deployed-version check: what the invoke answered and whether that passes."""

    version: str
    seconds: float
    status_code: int | None
    function_error: str | None
    payload: bytes
    log_tail: str
    reason: str | None  # why it failed; None when it passed

    @property
    def passed(self) -> bool:
        return self.reason is None

    def to_report(self) -> CheckReport:
        return {"passed": self.passed, "version": self.version, "seconds": round(self.seconds, 3),
                "status_code": self.status_code, "function_error": self.function_error,
                "payload": _text(self.payload), "log_tail": self.log_tail[-_KEEP:], "reason": self.reason}


def check(writer: LambdaWriter, step: CheckVersion, version: str) -> Check:
    """Invokes `version` of the function with the step's event; passes on 200, no function error, within the
    timeout, and (with an expectation) a payload it matches."""
    started = time.monotonic()
    try:
        answer = writer.invoke(step.target, version, step.event, timeout=step.timeout)
    except AwsTimeout:
        return Check(version, time.monotonic() - started, None, None, b"", "",
                     f"no answer within {step.timeout:g} s")
    seconds = time.monotonic() - started
    reason = None
    if answer.status_code != 200:
        reason = f"Invoke answered {answer.status_code}"
    elif answer.function_error:
        reason = f"function error ({answer.function_error}): {_error_message(answer.payload)}"
    elif seconds > step.timeout:
        reason = f"it answered after {seconds:.1f} s, over the {step.timeout:g} s allowed"
    elif step.expect and not re.search(step.expect, _text(answer.payload)):
        reason = f"the payload does not match {step.expect!r}"
    return Check(version, seconds, answer.status_code, answer.function_error, answer.payload, answer.log_tail,
                 reason)


def check_error(step: CheckVersion, check: Check) -> UserError:
    """The failure of a check: with an alias, the rollback (the alias never moved); without one, the new code
    already takes the function's unqualified traffic."""
    what = f"the check of {step.target} version {check.version} in {step.region} failed: {check.reason}"
    fix = "the report shows its answer and log tail; fix the function and deploy again"
    if step.alias is None:
        return CheckFailed(f"{what}; it already serves calls that name no alias",
                           f"{fix}. With --publish and --alias, the alias would have kept traffic on the old version")
    where = f"stays on version {step.alias_version}" if step.alias_version else "was not created"
    return RolledBack(f"{what}; alias {step.alias} {where}", fix)


def _text(payload: bytes) -> str:
    return payload[:_KEEP].decode("utf-8", "replace")


def _error_message(payload: bytes) -> str:
    """'errorString: order 42 was rejected' from a function error's payload, or the payload itself."""
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("errorMessage") is not None:
        kind = f"{doc['errorType']}: " if doc.get("errorType") else ""
        return f"{kind}{doc['errorMessage']}"
    return _text(payload)[:200] or "(no payload)"


# --- the shift -----------------------------------------------------------------------------------------------

@dataclass
class Shift:
    """One function's ShiftTraffic, gathered by the executor and run with every other of the run."""

    step: ShiftTraffic
    version: str  # the version moving in
    writer: LambdaWriter
    revision_id: str | None  # the alias's: the plan's, then what each move left
    taken: list[TrafficStep] = field(default_factory=list)
    alias_version: str | None = None  # where the alias is when the shift ends
    rolled_back: bool = False
    error: UserError | None = None
    exception: BaseException | None = None  # behind `error`, for --debug

    def __post_init__(self) -> None:
        self.alias_version = self.step.current_version


def poll_interval(hold: float) -> float:
    """How often alarms are read while a stage holds: ten times a stage, within 0.2 s and 10 s."""
    return max(0.2, min(10.0, hold / 10))


def shift_together(shifts: Sequence[Shift], *, concurrency: int = 8) -> None:
    """Every function through the same stages at the same time: one clock for the whole run, so a canary of
    many functions takes its window once. Each shift records what it did; none raises."""
    if not shifts:
        return
    first = shifts[0].step
    assert all((s.step.traffic, s.step.alarms) == (first.traffic, first.alarms) for s in shifts), \
        "one run shifts with one --traffic and one set of alarms"
    views = {(id(s.writer.aws), s.writer.region): LambdaView(s.writer.aws, s.writer.region) for s in shifts}
    started = time.monotonic()
    live = list(shifts)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(shifts)))) as pool:

        def each(action: Callable[[Shift], None], targets: list[Shift]) -> None:
            list(pool.map(action, targets))

        fired = _fired(views.values(), first.alarms)  # an alarm already going off: no traffic moves at all
        for percent, hold in first.traffic.stages():
            if fired:
                break
            each(lambda s, percent=percent: _move(s, percent, time.monotonic() - started), live)
            live = [s for s in live if s.error is None]
            deadline = time.monotonic() + hold
            while live and hold:
                fired = _fired(views.values(), first.alarms)
                remaining = deadline - time.monotonic()
                if fired or remaining <= 0:
                    break
                time.sleep(min(poll_interval(hold), remaining))
        if fired:
            each(lambda s: _roll_back(s, fired, time.monotonic() - started), live)


def _fired(views: Iterable[LambdaView], alarms: Sequence[str]) -> str | None:
    """'shop-errors (eu-west-1) is in ALARM', or why the alarms cannot be read (then it is not safe to go on)."""
    if not alarms:
        return None
    for view in views:
        try:
            states = view.alarm_states(alarms)
        except UserError as exc:
            return f"the alarms could not be read in {view.region} ({exc.what})"
        firing = [name for name in alarms if states.get(name) == "ALARM"]
        if firing:
            return f"alarm {', '.join(firing)} ({view.region}) is in ALARM"
    return None


def _move(shift: Shift, percent: float, at: float) -> None:
    step = shift.step
    final = percent >= 100
    try:
        moved = shift.writer.set_alias(
            step.target, step.alias, shift.version if final else step.current_version, create=False,
            revision_id=shift.revision_id, weights=None if final else {shift.version: round(percent / 100, 6)},
            description=describe_move(step.current_version, shift.version) if final else None)
    except Exception as exc:  # any failure stops this function's shift only; see execute._failure
        shift.exception = exc
        shift.error = UserError(f"the traffic shift of {step.target} in {step.region} stopped at "
                                f"{_share(shift)}: {exc}", "run again, or `go-arm-lambda rollback --alias "
                                f"{step.alias}` to take the routing off")
        if shift.taken:  # traffic reached the new version: take it off again
            _roll_back(shift, "its shift failed", at)
        return
    shift.revision_id = moved.revision_id
    shift.taken.append({"percent": percent, "version": shift.version, "at": round(at, 3)})
    if final:
        shift.alias_version = shift.version


def _roll_back(shift: Shift, why: str, at: float) -> None:
    """Puts the alias back on its old version with no routing; nothing to write when no traffic moved yet."""
    step = shift.step
    share = _share(shift)
    if shift.taken:
        try:
            moved = shift.writer.set_alias(step.target, step.alias, step.current_version, create=False,
                                           revision_id=shift.revision_id)
        except Exception as exc:
            shift.exception = shift.exception or exc
            shift.error = UserError(f"{why}, and alias {step.alias} of {step.target} in {step.region} could not be "
                                    f"put back on version {step.current_version} ({exc}): it still sends {share} "
                                    f"to version {shift.version}",
                                    f"run `go-arm-lambda rollback --alias {step.alias}` to take the routing off")
            return
        shift.revision_id = moved.revision_id
        shift.taken.append({"percent": 0.0, "version": shift.version, "at": round(at, 3)})
    shift.alias_version = step.current_version
    # A shift that failed on its own stays failed: the rollback only cleaned up after it.
    shift.rolled_back = shift.error is None
    if shift.rolled_back:
        shift.error = RolledBack(f"{why} during the traffic shift of {step.target} in {step.region} (at {share} "
                                 f"on version {shift.version}): alias {step.alias} is back on version "
                                 f"{step.current_version}", "look at the alarm and the new version's logs, fix "
                                 "it and deploy again")


def _share(shift: Shift) -> str:
    return f"{shift.taken[-1]['percent']:g}%" if shift.taken else "0%"

