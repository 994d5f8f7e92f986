"""The rollout against the test AWS: real Go functions, packaged by the real packager, deployed to moto through the
recording proxy, checked by a real Invoke (run under qemu by tests/lambdainvoke.py), shifted through the alias's
routing on the real clock (durations of a second or two), with CloudWatch alarms from moto flipped by a thread."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from awsfakes import REGION, FakeAws, by_name, deploy, desired, plan_for
from go_arm_lambda import cli, config, inputs, pipeline, render, report, rollout
from go_arm_lambda.errors import UsageError
from go_arm_lambda.execute import preview
from go_arm_lambda.rollout import describe_move
from go_arm_lambda.steps import AliasState, DeployConfig
from lambdainvoke import runnable_artifacts

ALIASES = r"/functions/[^/]+/aliases"


def zips(tmp: Path, bins: Path, **functions: str) -> dict[str, Any]:
    """Runnable zips: {function name: fixture binary} (answer, envdump, fail, slow, ...)."""
    return runnable_artifacts(tmp, bins, functions)


def create(aws: FakeAws, *names: str, timeout: int | None = None) -> None:
    for name in names:
        aws.create_function(name, runtime="provided.al2023", architecture="arm64", handler=name)
        if timeout is not None:
            aws.client("lambda").update_function_configuration(FunctionName=name, Timeout=timeout)


def live_on_1(aws: FakeAws, tmp: Path, bins: Path, **functions: str) -> None:
    """Each function's first published version with alias live on it, as an earlier deploy leaves them."""
    create(aws, *functions)
    first = deploy(aws.url, desired(zips(tmp / "v1", bins, **functions), publish=True, alias="live"))
    assert first.ok, first.all_errors()
    assert {alias(aws, name)["FunctionVersion"] for name in functions} == {"1"}
    aws.proxy.clear()
    aws.invoker.invocations.clear()


def alias(aws: FakeAws, function: str, name: str = "live") -> dict[str, Any]:
    return aws.client("lambda").get_alias(FunctionName=function, Name=name)  # type: ignore[no-any-return]


def routing(aws: FakeAws, function: str, name: str = "live") -> dict[str, float]:
    return (alias(aws, function, name).get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def alias_writes(aws: FakeAws) -> list[tuple[str, str, dict[str, Any]]]:
    """(function, the version it names, the routing it sets) for each UpdateAlias/CreateAlias the tool sent."""
    out = []
    for r in aws.proxy.requests:
        if r.method in ("POST", "PUT") and re.search(ALIASES, r.path):
            body = r.json()
            out.append((r.path.split("/")[3], body["FunctionVersion"],
                        (body.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}))
    return out


def traffic(spec: str) -> inputs.Traffic:
    return inputs.traffic(spec, "--traffic")


# --- the check, and the alias that moves only after it ----------------------------------------------------

def test_a_good_version_is_checked_then_shifted_by_canary(aws: FakeAws, tmp_path: Path, fixture_bins: Path) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer")
    want = desired(zips(tmp_path / "v2", fixture_bins, shop="envdump"), publish=True, alias="live",
                   check_deployed=True, check_event='{"order": 7}', check_expect=r'"AWS_LAMBDA_FUNCTION_NAME": *"shop"',
                   traffic=traffic("canary:25:1.5s"))

    result = deploy(aws.url, want)

    assert result.ok, result.all_errors()
    shop = by_name(result)["shop"]
    assert shop["status"] == "updated" and (shop["version"], shop["alias"]) == ("2", "live")
    check = shop["check"]
    assert check["passed"] and check["version"] == "2" and check["status_code"] == 200
    assert '"AWS_LAMBDA_FUNCTION_NAME"' in check["payload"] and check["log_tail"].startswith("START RequestId: ")
    # The exact new version was invoked, once, with the check's event, before the alias moved at all.
    [invocation] = aws.invoker.invocations
    assert (invocation.qualifier, invocation.version) == ("2", "2")
    [invoke] = aws.proxy.matching("POST", r"/invocations$")
    assert invoke.body == b'{"order": 7}' and invoke.headers["X-Amz-Log-Type"] == "Tail"
    invoke_at = invoke.finished
    moves = [r for r in aws.proxy.requests if r.method == "PUT" and re.search(ALIASES, r.path)]
    assert all(r.started > invoke_at for r in moves)
    assert alias_writes(aws) == [("shop", "1", {"2": 0.25}), ("shop", "2", {})]
    assert moves[1].started - moves[0].finished >= 1.5  # the canary held its share for its duration
    assert [(s["percent"], s["version"]) for s in shop["traffic"]] == [(25, "2"), (100, "2")]
    assert (shop["alias_before"], shop["alias_after"]) == ("1", "2")
    now = alias(aws, "shop")
    assert now["FunctionVersion"] == "2" and routing(aws, "shop") == {}
    assert now["Description"] == describe_move("1", "2") == "go-arm-lambda: moved from version 1 to 2"


def test_a_failing_version_is_rolled_back_and_the_others_go_on(aws: FakeAws, tmp_path: Path,
                                                              fixture_bins: Path) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer", cart="answer")
    want = desired(zips(tmp_path / "v2", fixture_bins, shop="fail", cart="envdump"), publish=True, alias="live",
                   check_deployed=True, traffic=traffic("canary:50:1s"))

    result = deploy(aws.url, want)

    assert not result.ok
    shop, cart = by_name(result)["shop"], by_name(result)["cart"]
    assert shop["status"] == "rolled-back" and report.Status(shop["status"]).failed
    assert shop["check"]["function_error"] == "Unhandled" and not shop["check"]["passed"]
    assert "order 42 was rejected" in shop["check"]["payload"]
    assert shop["check"]["log_tail"].startswith("START RequestId: ") and "END RequestId" in shop["check"]["log_tail"]
    assert shop["error"] == ("the check of shop version 2 in eu-west-1 failed: function error (Unhandled): "
                             "errorString: order 42 was rejected; alias live stays on version 1. the report shows "
                             "its answer and log tail; fix the function and deploy again")
    assert (shop["alias"], shop["alias_before"], shop["alias_after"], shop["traffic"]) == (None, "1", "1", None)
    assert alias(aws, "shop")["FunctionVersion"] == "1" and routing(aws, "shop") == {}
    # The other function of the run was not held back.
    assert cart["status"] == "updated" and cart["check"]["passed"] and alias(aws, "cart")["FunctionVersion"] == "2"
    assert [w for w in alias_writes(aws) if w[0] == "shop"] == []

    job = report.assemble(HEADER, [], None, None, result.to_report())
    assert report.failed(job) and report.rolled_back(job)
    assert render.action_outputs(job, "r.json")["rolled-back"] == "true"
    for view in (render.summary_markdown(job), render.comment_body(job, "default")):
        assert "order 42 was rejected" in view and "START RequestId: " in view and "alias: stays on 1" in view
        assert "live: 1 -> 2" in view and "50% (0 s) -> 100% (1 s)" in view
    text = render.text_table(job)
    assert "rollout:" in text and "shop (eu-west-1) log tail:" in text and "    START RequestId: " in text


HEADER: report.JobHeader = {"tool_version": "0.1.0", "dry_run": False, "commit": None, "mode": "layer",
                            "runtime": "provided.al2023"}


def test_a_version_that_times_out_fails_and_without_an_alias_the_run_says_so(aws: FakeAws, tmp_path: Path,
                                                                           fixture_bins: Path) -> None:
    create(aws, "shop", timeout=3)
    want = desired(zips(tmp_path, fixture_bins, shop="slow"), check_deployed=True, check_timeout=1.0)

    started = time.monotonic()
    result = deploy(aws.url, want)

    assert time.monotonic() - started < 2.5  # it did not wait for the function's own 3 s timeout
    shop = by_name(result)["shop"]
    assert shop["status"] == "failed" and shop["check"]["reason"] == "no answer within 1 s"
    assert shop["check"]["version"] == "$LATEST" and shop["check"]["status_code"] is None
    assert "it already serves calls that name no alias" in shop["error"]
    assert "With --publish and --alias, the alias would have kept traffic on the old version" in shop["error"]
    # Sent once: an invoke that may have reached the function is never repeated.
    assert len(aws.proxy.matching("POST", r"/invocations$")) == 1


def test_the_payload_must_match_the_expectation(aws: FakeAws, tmp_path: Path, fixture_bins: Path) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer")
    want = desired(zips(tmp_path / "v2", fixture_bins, shop="envdump"), publish=True, alias="live",
                   check_deployed=True, check_expect=r'"status": *"ok"')

    shop = by_name(deploy(aws.url, want))["shop"]

    assert shop["status"] == "rolled-back"
    assert shop["check"]["reason"] == "the payload does not match '\"status\": *\"ok\"'"
    assert alias(aws, "shop")["FunctionVersion"] == "1"


# --- the shift: one clock for the run, alarms watched ----------------------------------------------------

def test_an_alarm_mid_canary_puts_every_alias_back(aws: FakeAws, tmp_path: Path, fixture_bins: Path) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer", cart="answer")
    aws.set_alarm("shop-errors", "OK")
    aws.set_alarm("cart-latency", "OK")
    want = desired(zips(tmp_path / "v2", fixture_bins, shop="envdump", cart="envdump"), publish=True, alias="live",
                   traffic=traffic("canary:10:6s"), alarms=("cart-latency", "shop-errors"))

    def go_off() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(alias_writes(aws)) < 2:  # both got their 10%
            time.sleep(0.05)
        time.sleep(0.5)
        aws.set_alarm("shop-errors", "ALARM", reason="errors on version 2")

    flipper = threading.Thread(target=go_off)
    flipper.start()
    started = time.monotonic()
    result = deploy(aws.url, want)
    took = time.monotonic() - started
    flipper.join()

    assert took < 5, "the shift stopped when the alarm went off, not at the end of its window"
    assert not result.ok
    for name, f in by_name(result).items():
        assert f["status"] == "rolled-back", f
        assert f["error"].startswith(f"alarm shop-errors ({REGION}) is in ALARM during the traffic shift of {name} "
                                     f"in {REGION} (at 10% on version 2): alias live is back on version 1")
        assert [(s["percent"], s["version"]) for s in f["traffic"]] == [(10, "2"), (0, "2")]
        assert (f["alias_before"], f["alias_after"]) == ("1", "1")
        assert alias(aws, name)["FunctionVersion"] == "1" and routing(aws, name) == {}
        assert alias(aws, name)["Description"] == "go-arm-lambda: created at version 1"  # the last finished move
    for name in ("shop", "cart"):
        assert [w[1:] for w in alias_writes(aws) if w[0] == name] == [("1", {"2": 0.1}), ("1", {})]
    reads = [r for r in aws.proxy.requests if r.operation == "DescribeAlarms"]
    assert len(reads) >= 3 and not any(r.mutating for r in reads)


def test_an_alarm_already_going_off_moves_no_traffic(aws: FakeAws, tmp_path: Path, fixture_bins: Path) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer")
    aws.set_alarm("shop-errors", "ALARM")
    want = desired(zips(tmp_path / "v2", fixture_bins, shop="envdump"), publish=True, alias="live",
                   traffic=traffic("linear:50:1s"), alarms=("shop-errors",))

    shop = by_name(deploy(aws.url, want))["shop"]

    assert shop["status"] == "rolled-back" and shop["traffic"] == []
    assert "(at 0% on version 2): alias live is back on version 1" in shop["error"]
    assert alias_writes(aws) == []


def test_linear_steps_shift_every_function_together(aws: FakeAws, tmp_path: Path, fixture_bins: Path) -> None:
    names = {f"fn{i}": "answer" for i in range(3)}
    live_on_1(aws, tmp_path, fixture_bins, **names)
    want = desired(zips(tmp_path / "v2", fixture_bins, **dict.fromkeys(names, "envdump")), publish=True,
                   alias="live", traffic=traffic("linear:34:0.6s"))

    started = time.monotonic()
    result = deploy(aws.url, want)
    took = time.monotonic() - started

    assert result.ok, result.all_errors()
    steps = {name: f["traffic"] for name, f in by_name(result).items()}
    assert all([s["percent"] for s in taken] == [34, 68, 100] for taken in steps.values()) and len(steps) == 3
    # One clock: each stage starts for every function at the same moment, 0.6 s after the one before.
    for stage in range(3):
        moments = [taken[stage]["at"] for taken in steps.values()]
        assert max(moments) - min(moments) < 0.3, moments
    first, last = (steps["fn0"][i]["at"] for i in (0, 2))
    assert 1.2 <= last - first < 2.5
    assert took < 1.2 + 10  # the window once, not once per function
    for name in names:
        assert [w[1:] for w in alias_writes(aws) if w[0] == name] == [
            ("1", {"2": 0.34}), ("1", {"2": 0.68}), ("2", {})]
        assert alias(aws, name)["FunctionVersion"] == "2" and routing(aws, name) == {}


def test_the_dry_run_shows_the_check_and_the_shift_and_invokes_nothing(aws: FakeAws, tmp_path: Path,
                                                                      fixture_bins: Path) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer")
    aws.set_alarm("shop-errors", "OK")
    want = desired(zips(tmp_path / "v2", fixture_bins, shop="envdump"), publish=True, alias="live",
                   check_deployed=True, traffic=traffic("canary:10:5m"), alarms=("shop-errors",))

    dry = preview(plan_for(aws.url, want))

    assert [p["action"] for p in dry.plan] == ["reuse-layer", "update-code", "publish-version", "check-version",
                                                "shift-traffic"]
    details = {p["action"]: p["detail"] for p in dry.plan}
    assert details["check-version"] == ("invoke the published version with a 2-byte event; passes on 200 with no "
                                        "function error within 30 s")
    assert details["shift-traffic"] == ("live from version 1 to the published version: 10% for 5m, then 100%; "
                                        "watching shop-errors")
    assert aws.proxy.mutating() == [] and aws.invoker.invocations == []
    assert by_name(dry)["shop"]["status"] == "planned"


# --- promote and rollback through the CLI ----------------------------------------------------------------

def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def test_promote_staging_to_prod_then_roll_back(aws: FakeAws, tmp_path: Path, fixture_bins: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    create(aws, "shop")
    assert deploy(aws.url, desired(zips(tmp_path / "v1", fixture_bins, shop="answer"), publish=True,
                                   alias="staging")).ok
    flags = ["--source", str(tmp_path), "--function", "shop=./cmd/shop", "--region", REGION,
             "--endpoint-url", aws.url, "--json"]

    code, first, _ = cli_json(capsys, "promote", "--from-alias", "staging", "--to-alias", "prod", *flags)

    assert code == 0, first
    assert alias(aws, "shop", "prod")["FunctionVersion"] == "1"
    assert [f["changes"] for f in first["functions"]] == [["prod: created at version 1"]]
    # A new build reaches staging; promote the very version staging has, checked first, by a canary.
    assert deploy(aws.url, desired(zips(tmp_path / "v2", fixture_bins, shop="envdump"), publish=True,
                                   alias="staging")).ok
    aws.proxy.clear()

    code, second, _ = cli_json(capsys, "promote", "--from-alias", "staging", "--to-alias", "prod",
                               "--check-deployed", "--traffic", "canary:50:1s", *flags)

    assert code == 0, second
    [shop] = second["functions"]
    assert (shop["status"], shop["version"], shop["alias"]) == ("updated", "2", "prod")
    assert shop["check"]["passed"] and shop["check"]["version"] == "2"
    assert [s["percent"] for s in shop["traffic"]] == [50, 100]
    assert [p["action"] for p in second["plan"]] == ["check-version", "shift-traffic"]
    assert alias(aws, "shop", "prod")["FunctionVersion"] == "2"
    assert not any(r.method == "PUT" and r.path.endswith("/code") for r in aws.proxy.requests)  # no rebuild

    code, back, _ = cli_json(capsys, "rollback", "--alias", "prod", *flags)

    assert code == 0, back
    assert [(f["status"], f["version"], f["changes"]) for f in back["functions"]] == [
        ("updated", "1", ["prod: version 2 -> 1 (rollback)"])]
    assert alias(aws, "shop", "prod")["FunctionVersion"] == "1"
    assert alias(aws, "shop", "prod")["Description"] == "go-arm-lambda: rolled back from version 2 to 1"

    code, _, err = cli_json(capsys, "rollback", "--alias", "prod", *flags)

    assert code == 2
    assert ("alias prod of shop in eu-west-1 was last moved by a rollback (from version 2 to 1); rolling back "
            "again would bring version 2 back") in err
    assert alias(aws, "shop", "prod")["FunctionVersion"] == "1"


def test_rollback_of_a_shift_that_never_finished_takes_the_routing_off(aws: FakeAws, tmp_path: Path,
                                                                      fixture_bins: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer")
    setup = aws.client("lambda")
    setup.update_function_code(FunctionName="shop", ZipFile=zips(tmp_path / "v2", fixture_bins, shop="envdump")[
        "shop"].path.read_bytes())
    setup.publish_version(FunctionName="shop")
    setup.update_alias(FunctionName="shop", Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})

    code, done, _ = cli_json(capsys, "rollback", "--alias", "live", "--source", str(tmp_path), "--function",
                             "shop=./cmd/shop", "--region", REGION, "--endpoint-url", aws.url, "--json")

    assert code == 0, done
    assert done["functions"][0]["changes"] == ["live: routing removed (version 2 gets 10%), stays on version 1"]
    assert alias(aws, "shop")["FunctionVersion"] == "1" and routing(aws, "shop") == {}
    assert alias(aws, "shop")["Description"] == "go-arm-lambda: created at version 1"


def test_promote_refuses_what_cannot_be_promoted_before_any_write(aws: FakeAws, tmp_path: Path,
                                                                  fixture_bins: Path) -> None:
    create(aws, "shop", "cart")
    assert deploy(aws.url, desired(zips(tmp_path, fixture_bins, shop="answer"), publish=True, alias="staging")).ok
    aws.proxy.clear()
    cfg = config.load({"source": str(tmp_path), "functions": ["shop=./cmd/shop", "cart=./cmd/cart"],
                       "regions": [REGION], "endpoint_url": aws.url, "promote_from": "staging",
                       "to_alias": "prod"}, env={}, command="promote")

    result = pipeline.move_aliases(cfg, "promote")

    assert isinstance(result.error, UsageError)
    assert str(result.error) == ("function cart has no alias staging in eu-west-1. deploy to staging first, or fix "
                                 "--from-alias, the function or --region")
    assert aws.proxy.mutating() == []


# --- everything checked up front ---------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "message"), [
    ({"traffic": "canary:10:5m"}, "shifting traffic needs an alias and published versions"),
    ({"traffic": "canary:10:5m", "alias": "live"}, "alias live needs a published version"),
    ({"traffic": "blue-green"}, "--traffic='blue-green' is not a traffic shift"),
    ({"traffic": "linear:10:5"}, "'5' is not a duration"),
    ({"traffic": "canary:100:1m", "alias": "live", "publish": True}, "the percentage must be above 0 and below 100"),
    ({"alarms": ["shop-errors"], "alias": "live", "publish": True}, "alarms are watched while traffic shifts"),
    ({"alarms": ["x" * 256], "alias": "live", "publish": True, "traffic": "canary:5:1m"}, "is not valid"),
    ({"check_expect": "(unclosed"}, "--check-expect='(unclosed' is not a valid regular expression"),
    ({"check_expect": "ok"}, "--check-expect (in the Action, the check-expect input) given, but the "
                             "deployed-version check is off. turn it on (--check-deployed (in the Action, "
                             "check-deployed: true))"),
    ({"check_deployed": True, "check_event": "{nope"}, "is not valid JSON"),
])
def test_rollout_inputs_are_checked_before_anything_is_built(tmp_path: Path, given: dict[str, Any],
                                                             message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        config.load({"source": str(tmp_path), "functions": ["shop=./cmd/shop"], "regions": [REGION], **given},
                    env={})


@pytest.mark.parametrize(("given", "message"), [
    ({"promote_from": "staging"}, "promote needs the alias to promote from and the alias to promote to"),
    ({"promote_from": "prod", "to_alias": "prod"}, "promote from alias prod to itself changes nothing"),
    ({"promote_from": "staging", "to_alias": "prod", "traffic": "canary:10:1m", "alarms": ["a"]}, None),
])
def test_promote_inputs(tmp_path: Path, given: dict[str, Any], message: str | None) -> None:
    load = lambda: config.load({"source": str(tmp_path), **given}, env={}, command="promote")  # noqa: E731
    if message is None:
        cfg = load()
        assert (cfg.alias, cfg.promote_from, cfg.traffic.stages()) == ("prod", "staging", ((10, 60), (100, 0)))
    else:
        with pytest.raises(UsageError, match=re.escape(message)):
            load()


def test_an_alarm_that_does_not_exist_stops_the_plan(aws: FakeAws, tmp_path: Path, fixture_bins: Path) -> None:
    live_on_1(aws, tmp_path, fixture_bins, shop="answer")
    aws.set_alarm("shop-errors", "OK")
    want = desired(zips(tmp_path / "v2", fixture_bins, shop="envdump"), publish=True, alias="live",
                   traffic=traffic("canary:10:5m"), alarms=("shop-errors", "shop-eror"))

    with pytest.raises(UsageError, match=r"CloudWatch alarm shop-eror \(eu-west-1\) does not exist"):
        deploy(aws.url, want)
    assert aws.proxy.mutating() == []


def test_every_problem_is_listed_in_the_order_the_functions_were_given() -> None:
    class View:  # no alias anywhere; the first function's read is the slowest
        region = REGION

        def alias(self, function: str, name: str) -> None:
            time.sleep(0.2 if function == "slow" else 0)

    specs = [config.FunctionSpec(name, f"./cmd/{name}") for name in ("slow", "fast")]
    with pytest.raises(UsageError, match=r"^2 functions cannot be rolled back: function slow has no alias live in "
                                         r"eu-west-1; function fast has no alias live in eu-west-1\."):
        rollout.plan_rollback(specs, {REGION: View()}, alias="live")  # type: ignore[dict-item]


def test_a_gradual_shift_from_latest_is_refused_in_the_users_words() -> None:
    cfg = DeployConfig.of(config.Config(regions=(REGION,), publish=True, alias="live",
                                        traffic=traffic("canary:10:5m")))
    on_latest = AliasState("live", "arn:live", "$LATEST")
    for surface, fix in (("deploy", "--traffic all-at-once"), ("action", "traffic: all-at-once")):
        with config.speaking_to(surface), pytest.raises(UsageError) as info:
            rollout.release_steps(cfg, REGION, "shop", None, on_latest, changed=True, event=None)
        assert "points at $LATEST" in info.value.what and info.value.fix.endswith(f"or use {fix}")


def test_traffic_stages_and_windows() -> None:
    assert traffic("all-at-once").stages() == ((100, 0),) and not traffic("all-at-once").gradual
    assert traffic("canary:10:5m").stages() == ((10, 300), (100, 0))
    assert traffic("linear:25:30s").stages() == ((25, 30), (50, 30), (75, 30), (100, 0))
    assert traffic("linear:30:1m").stages() == ((30, 60), (60, 60), (90, 60), (100, 0))
    assert traffic("linear:10:1m").window == 540 and traffic("canary:5:1h").window == 3600
    assert str(traffic("canary:10:500ms")) == "canary:10:500ms" and traffic("canary:10:500ms").interval == 0.5
