"""The job report: its types, its one assembly, the rules read from it, and its four views.

The reports here are put together the way the pipeline does it, with report.assemble from typed parts; where the
shape depends on what the deploy did (a dry run, a failed layer), the deploy's part comes from a real plan and
execute against moto, and the build's from real package artifacts. `_schema_problems` holds every report against
the TypedDicts, so the types are the schema and nothing here restates it.
"""

from __future__ import annotations

import copy
import json
import re
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from awsfakes import REGION, FakeArtifact, FakeAws, artifacts, deploy, desired, plan_for
from go_arm_lambda import build, package, pipeline, render
from go_arm_lambda import report as r
from go_arm_lambda.config import Config, FunctionSpec
from go_arm_lambda.errors import UsageError
from go_arm_lambda.execute import DeployResult, preview
from go_arm_lambda.report import Status

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LAYER_EU = "arn:aws:lambda:eu-west-1:123456789012:layer:go-arm-lambda-bootstrap:3"
LAYER_US = "arn:aws:lambda:us-east-1:123456789012:layer:go-arm-lambda-bootstrap:1"
RUN_URL = "https://github.com/acme/shop/actions/runs/42"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
HEADER: r.JobHeader = {"tool_version": "0.1.0", "dry_run": False, "commit": COMMIT, "mode": "layer",
                       "runtime": "provided.al2023"}


def _build(name: str, **over: Any) -> r.FunctionBuild:
    built: r.FunctionBuild = {
        "name": name, "code_sha256": "q80=", "runtime": "provided.al2023", "architecture": "arm64",
        "package": f"./cmd/{name}", "handler": name, "zip_size": 4_200_000, "sha256": SHA, "verify": "ok",
        "smoke": "ok"}
    return typing.cast(r.FunctionBuild, built | over)


def _state(name: str, region: str, **over: Any) -> r.FunctionDeploy:
    state: r.FunctionDeploy = {
        "name": name, "code_sha256": "q80=", "runtime": "provided.al2023", "architecture": "arm64",
        "region": region, "arn": f"arn:aws:lambda:{region}:123456789012:function:{name}", "version": "4",
        "alias": "live", "changes": ["runtime: go1.x -> provided.al2023", "architecture: x86_64 -> arm64", "code"],
        "changed": True, "status": Status.UPDATED, "error": None, "check": None, "traffic": None,
        "alias_before": "3", "alias_after": "4"}
    return typing.cast(r.FunctionDeploy, state | over)


def _job(states: list[r.FunctionDeploy], *, layer: r.LayerDeploy | None, dry_run: bool = False,
         plan: list[r.PlanLine] | None = None, errors: list[str] | None = None,
         verify: dict[str, r.VerifyStatus] | None = None) -> r.JobReport:
    """A deploy's report, assembled as the pipeline does it: the build's part and the deploy's part."""
    builds = [_build(name, verify=(verify or {}).get(name, "ok")) for name in dict.fromkeys(s["name"] for s in states)]
    deployed: r.DeployReport = {"dry_run": dry_run, "layer": layer, "functions": states, "plan": plan or [],
                                "mutating_calls": 7, "errors": errors or []}
    header: r.JobHeader = {**HEADER, "dry_run": dry_run, "mode": "layer" if layer else "bootstrap"}
    return r.assemble(header, builds, layer["name"] if layer else None, "ab" * 32, deployed)


LAYER: r.LayerDeploy = {"name": "go-arm-lambda-bootstrap", "arns": {"eu-west-1": LAYER_EU, "us-east-1": LAYER_US},
                        "published": {"eu-west-1": True, "us-east-1": False}, "changes": {}}
DEPLOY = _job([_state("orders", "eu-west-1"),
               _state("orders", "us-east-1", changes=[], status=Status.UNCHANGED, version="2"),
               _state("payments", "eu-west-1", alias=None, version="7")],
              layer=LAYER, verify={"payments": "warnings"})


def _dry_run() -> r.JobReport:
    # On a dry run "published" means "would publish", and a version not yet published has no ARN.
    layer: r.LayerDeploy = {**LAYER, "arns": {"us-east-1": LAYER_US}}
    states = [_state("orders", "eu-west-1", status=Status.PLANNED, version=None),
              _state("orders", "us-east-1", changes=[], status=Status.UNCHANGED, version=None),
              _state("payments", "eu-west-1", alias=None, status=Status.PLANNED, version=None)]
    plan: list[r.PlanLine] = [
        {"action": "publish-layer", "target": "go-arm-lambda-bootstrap", "region": "eu-west-1",
         "detail": "new content"},
        {"action": "update-code", "target": "orders", "region": "eu-west-1", "detail": "sha a|b"}]
    return _job(states, layer=layer, dry_run=True, plan=plan)


def _failure() -> r.JobReport:
    rep = copy.deepcopy(DEPLOY)
    rep["functions"][1].update(status=Status.FAILED, changed=False,
                               error="ResourceConflictException: update in progress\nretry later | <nil>")
    rep["errors"] = ["1 function failed to deploy"]
    return rep


def _bootstrap() -> r.JobReport:
    states = [_state("orders", "eu-west-1"), _state("payments", "eu-west-1", alias=None, version="7")]
    rep = _job(states, layer=None)
    for f in rep["functions"]:
        f["handler"] = "bootstrap"
    return rep


def _rolled_out() -> r.JobReport:
    """A canary that finished for orders, and payments kept on its old version by a failed check."""
    passed: r.CheckReport = {"passed": True, "version": "4", "seconds": 0.41, "status_code": 200,
                             "function_error": None, "payload": '{"ok":true}', "log_tail": "START RequestId: 1",
                             "reason": None}
    failed: r.CheckReport = {"passed": False, "version": "8", "seconds": 0.2, "status_code": 200,
                             "function_error": "Unhandled", "payload": '{"errorMessage":"```boom```"}',
                             "log_tail": "START RequestId: 2\npanic: ```boom```\nEND RequestId: 2",
                             "reason": "function error (Unhandled): ```boom```"}
    states = [_state("orders", "eu-west-1", check=passed, alias_before="3", alias_after="4",
                     traffic=[{"percent": 10.0, "version": "4", "at": 0.0},
                              {"percent": 100.0, "version": "4", "at": 300.4}]),
              _state("payments", "eu-west-1", status=Status.ROLLED_BACK, alias=None, version="8", check=failed,
                     alias_before="7", alias_after="7", error="the check of payments version 8 failed")]
    return _job(states, layer=LAYER)


def test_the_rollout_in_every_view() -> None:
    rep = _conforms(_rolled_out())
    assert r.failed(rep) and r.rolled_back(rep) and render.action_outputs(rep, "x")["rolled-back"] == "true"
    assert render.action_outputs(DEPLOY, "x")["rolled-back"] == "false"
    views = ((render.summary_markdown(rep), "### Rollout"), (render.comment_body(rep, "c"), "**Rollout**"))
    for view, heading in views:
        assert _rows(view, heading) == [
            ["Function", "Region", "Deployed-version check", "Alias", "Traffic"], ["---"] * 5,
            ["`orders`", "eu-west-1", "passed: version 4 answered in 0.41 s", "live: 3 -> 4",
             "10% (0 s) -> 100% (300 s)"],
            ["`payments`", "eu-west-1", "failed: version 8: function error (Unhandled): ```boom```",
             "alias: stays on 7", "—"]]
        # The failed check's payload and log tail, in fences the backticks they hold cannot close.
        assert "````json\n{\"errorMessage\":\"```boom```\"}\n````" in view
        assert "````text\nSTART RequestId: 2\npanic: ```boom```\nEND RequestId: 2\n````" in view
        assert "START RequestId: 1" not in view  # a passed check's details stay in the JSON report
    text = render.text_table(rep)
    assert "  orders (eu-west-1): check passed: version 4 answered in 0.41 s; live: 3 -> 4; traffic 10% (0 s) -> " \
           "100% (300 s)" in text
    assert "    panic: ```boom```" in text
    assert "rollout:" not in render.text_table(_built_only())
    assert "Rollout" not in render.summary_markdown(_built_only())


def _built_only(**over: Any) -> r.JobReport:
    """A run without regions: built, checked and packaged, nothing deployed."""
    return r.assemble(HEADER, [_build("orders", **over), _build("payments", **over)], "go-arm-lambda-bootstrap",
                      "ab" * 32, None)


def _schema_problems(value: Any, tp: Any = r.JobReport, where: str = "report") -> list[str]:
    """Where `value` (as JSON gives it back) differs from the type: a missing or extra key, a wrong value."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if typing.is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        hints = typing.get_type_hints(tp)
        problems = [f"{where}: no {key!r}" for key in hints if key not in value]
        problems += [f"{where}: {key!r} is not in {tp.__name__}" for key in value if key not in hints]
        return problems + [p for key in hints.keys() & value.keys()
                           for p in _schema_problems(value[key], hints[key], f"{where}.{key}")]
    if origin in (types.UnionType, typing.Union):  # `X | None`: what is wrong with it as an X
        return min((_schema_problems(value, arg, where) for arg in args), key=len)
    if origin is typing.Literal:
        return [] if value in args else [f"{where}: {value!r} is none of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [p for i, item in enumerate(value) for p in _schema_problems(item, args[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            return [f"{where}: {value!r} is not an object"]
        return [p for k, item in value.items() for p in _schema_problems(item, args[1], f"{where}.{k}")]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return [] if value in {m.value for m in tp} else [f"{where}: {value!r} is not a {tp.__name__}"]
    if tp is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if tp is int and isinstance(value, bool):
        return [f"{where}: {value!r} is not a number"]
    return [] if isinstance(value, tp) else [f"{where}: {value!r} is not {tp.__name__}"]


def _conforms(report: r.JobReport) -> r.JobReport:
    assert _schema_problems(json.loads(json.dumps(report))) == []
    return report


def _rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the table after `heading`, split at unescaped pipes as GitHub does."""
    section = markdown.split(heading + "\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_summary_has_a_table_per_region() -> None:
    md = render.summary_markdown(DEPLOY)
    assert md.startswith("## ✅ go-arm-lambda deployed 3 function(s) in eu-west-1, us-east-1\n")
    eu = _rows(md, "### eu-west-1")
    assert eu[0] == ["Function", "ARN", "Version (alias)", "Arch", "Runtime", "Zip", "SHA-256", "Changed",
                     "Verify", "Smoke"]
    assert eu[2] == ["`orders`", "`arn:aws:lambda:eu-west-1:123456789012:function:orders`", "4 (live)",
                     "arm64", "provided.al2023", "4.0 MiB", "`9f86d081884c`", "yes", "✅ ok", "✅ ok"]
    assert eu[3][0] == "`payments`" and eu[3][2] == "7" and eu[3][8] == "⚠️ warnings"
    us = _rows(md, "### us-east-1")
    assert len(us) == 3 and us[2][2] == "2 (live)" and us[2][7] == "no"
    assert f"- eu-west-1: `{LAYER_EU}` (published)" in md
    assert f"- us-east-1: `{LAYER_US}` (unchanged)" in md
    assert "### Plan" not in md and "### Errors" not in md
    assert ("- `orders` (eu-west-1): runtime: go1.x -> provided.al2023; architecture: x86_64 -> arm64; code"
            in md)


def test_summary_on_dry_run_shows_the_plan_with_escaped_cells() -> None:
    md = render.summary_markdown(_dry_run())
    assert "dry run" in md.splitlines()[0] and "nothing was changed" in md.splitlines()[0]
    plan = _rows(md, "### Plan")
    assert plan[0] == ["Action", "Target", "Region", "Detail"]
    assert plan[3] == ["update-code", "orders", "eu-west-1", "sha a\\|b"]  # the pipe stays inside its cell
    assert _rows(md, "### eu-west-1")[2][2] == "— (live)"  # no version yet on a dry run
    assert "- eu-west-1: new version (dry run)" in md
    assert f"- us-east-1: `{LAYER_US}` (unchanged)" in md


def test_summary_on_failure_lists_errors_safely() -> None:
    md = render.summary_markdown(_failure())
    assert md.startswith("## ❌ go-arm-lambda failed")
    errors = md.split("### Errors\n", 1)[1].splitlines()
    assert errors[0] == "- 1 function failed to deploy"
    # one bullet per error: the newline is gone, and <nil> cannot become an HTML tag
    assert errors[1] == ("- `orders` (us-east-1): ResourceConflictException: update in progress "
                         "retry later | &lt;nil>")


def test_function_error_repeated_in_errors_is_shown_once() -> None:
    rep = _failure()
    rep["errors"] = ["orders (us-east-1): ResourceConflictException: update in progress"]
    md = render.summary_markdown(rep)
    assert md.count("ResourceConflictException") == 1
    assert render.text_table(rep).count("ResourceConflictException") == 1


def test_bootstrap_mode_has_no_layer() -> None:
    md = render.summary_markdown(_bootstrap())
    assert "No layer: bootstrap mode" in md and "arn:aws:lambda:eu-west-1:123456789012:layer" not in md
    outputs = render.action_outputs(_bootstrap(), "/github/workspace/.go-arm-lambda/report.json")
    assert outputs["layer-arn"] == "" and outputs["layer-arns"] == "{}"
    assert outputs["changed"] == "true"  # the functions changed


def test_action_outputs() -> None:
    outputs = render.action_outputs(DEPLOY, ".go-arm-lambda/report.json")
    assert outputs == {
        "layer-arn": LAYER_EU,
        "layer-arns": json.dumps({"eu-west-1": LAYER_EU, "us-east-1": LAYER_US}),
        "function-arns": json.dumps({
            "eu-west-1": {"orders": "arn:aws:lambda:eu-west-1:123456789012:function:orders",
                          "payments": "arn:aws:lambda:eu-west-1:123456789012:function:payments"},
            "us-east-1": {"orders": "arn:aws:lambda:us-east-1:123456789012:function:orders"}}),
        "function-versions": json.dumps({"eu-west-1": {"orders": "4", "payments": "7"},
                                         "us-east-1": {"orders": "2"}}),
        "changed": "true",
        "rolled-back": "false",
        "report": ".go-arm-lambda/report.json",
    }
    dry = render.action_outputs(_dry_run(), "x.json")
    assert dry["function-versions"] == "{}"  # nothing was published


def test_changed_is_false_when_nothing_changed() -> None:
    rep = copy.deepcopy(DEPLOY)
    rep["layer"]["published"] = {"eu-west-1": False, "us-east-1": False}
    for f in rep["functions"]:
        f.update(changed=False, changes=[], status="unchanged")
    assert render.action_outputs(rep, "x")["changed"] == "false"
    assert "already up to date" in render.summary_markdown(rep).splitlines()[0]
    rep["layer"]["published"]["us-east-1"] = True
    assert render.action_outputs(rep, "x")["changed"] == "true"


def test_comment_body_says_what_went_where() -> None:
    body = render.comment_body(DEPLOY, "prod", RUN_URL)
    lines = body.splitlines()
    assert lines[0] == "<!-- go-arm-lambda:comment-id=prod -->" == render.comment_marker("prod")
    assert lines[1].startswith("### ✅ go-arm-lambda deployed 3 function(s)")
    assert f"commit {COMMIT}" in body and f"[workflow run]({RUN_URL})" in body
    assert f"- eu-west-1: `{LAYER_EU}` (published)" in body
    rows = _rows(body, "**Functions**")
    assert rows[2] == ["`orders`", "eu-west-1", "`arn:aws:lambda:eu-west-1:123456789012:function:orders`",
                       "4 (live)", "4.0 MiB", "✅ ok", "✅ ok", "updated"]
    assert "runtime: go1.x -> provided.al2023; architecture: x86_64 -> arm64" in body
    assert "**Plan**" not in body and "**What failed**" not in body


def test_comment_on_dry_run_and_on_failure() -> None:
    dry = render.comment_body(_dry_run(), "default")
    assert "**Plan** (dry run, nothing was changed)" in dry and "| publish-layer |" in dry
    assert "workflow run" not in dry
    failed = render.comment_body(_failure(), "default", RUN_URL)
    assert failed.splitlines()[1].startswith("### ❌ go-arm-lambda failed")
    assert "**What failed**\n- 1 function failed to deploy\n- `orders` (us-east-1): ResourceConflict" in failed
    assert _rows(failed, "**Functions**")[3][-1] == "failed"


def test_build_failure_before_any_deploy() -> None:
    # What the pipeline reports when the build stops it (and what the Action reports for bad inputs).
    rep = _conforms(pipeline.job_report(Config(), None, None,
                                        errors=["go build failed: cmd/orders/main.go:12:3: undefined: handler"]))
    body = render.comment_body(rep, "default", RUN_URL)
    assert body.splitlines()[1] == "### ❌ go-arm-lambda failed"
    assert "**Layer** `go-arm-lambda-bootstrap` (sha256 —)\n- not published in any region" in body
    assert "bootstrap mode" not in body
    assert "**What failed**\n- go build failed: cmd/orders/main.go:12:3: undefined: handler" in body
    assert "**Functions**" not in body
    assert "### Errors" in render.summary_markdown(rep)
    assert render.action_outputs(rep, "r.json")["changed"] == "false"
    error = "go build failed: cmd/orders/main.go:12:3: undefined: handler"
    assert render.text_table(rep).endswith(f"errors:\n  - {error}\n")


def test_comment_commit_defaults_to_the_reports() -> None:
    assert f"commit {COMMIT}" in render.comment_body(DEPLOY, "default")


def test_marker_cannot_be_broken_by_the_comment_id() -> None:
    marker = render.comment_marker("evil --> <b>x</b>")
    assert marker.count("-->") == 1 and marker.endswith(" -->") and "<b>" not in marker
    assert render.comment_marker("a") != render.comment_marker("a b") != render.comment_marker("a%20b")


def test_huge_report_comment_is_capped_with_a_note() -> None:
    rep = _job([_state(f"fn-{i:04d}", "eu-west-1", changes=[f"handler: old-{i} -> new-{i}" * 5])
                for i in range(1500)], layer=LAYER, errors=["x" * 5000])
    # one enormous error is shortened, not allowed to fill the comment
    body = render.comment_body(rep, "default", RUN_URL)
    assert len(body) < 65_536
    assert body.startswith(render.comment_marker("default") + "\n")
    assert body.rstrip().endswith("the job summary and the JSON report have everything._")
    assert "`fn-0000`" in body and "`fn-1499`" not in body
    summary = render.summary_markdown(rep)
    assert "`fn-1499`" in summary  # the summary has its own, larger, cap (see actions.append_summary)
    assert max(len(line) for line in summary.splitlines()) < 1200


def test_fit_measures_what_it_is_told() -> None:
    text = "ääää\nbbbb\ncccc\n"
    assert render.fit(text, 100, "!") == text
    assert render.fit(text, 11, "[cut]") == "ääää\n[cut]"
    assert render.fit(text, 11, "[cut]", measure=lambda s: len(s.encode())) == "[cut]"
    assert render.fit(text, 2, "[cut]") == ""


def test_text_table_for_the_terminal() -> None:
    text = render.text_table(DEPLOY)
    lines = text.splitlines()
    assert lines[0] == "go-arm-lambda 0.1.0: layer mode, provided.al2023, commit 0123456789ab"
    assert lines[1] == f"layer go-arm-lambda-bootstrap in eu-west-1: {LAYER_EU} (published)"
    header = next(line for line in lines if line.startswith("REGION"))
    row = next(line for line in lines if line.startswith("eu-west-1  orders"))
    assert row.index("updated") == header.index("STATUS")  # columns line up
    assert row.index("4 (live)") == header.index("VERSION")
    assert row.endswith("runtime: go1.x -> provided.al2023; architecture: x86_64 -> arm64; code")
    dry = render.text_table(_dry_run())
    assert "(dry run: nothing was changed)" in dry.splitlines()[0]
    assert "  update-code orders (eu-west-1): sha a|b" in dry
    failed = render.text_table(_failure())
    assert ("errors:\n  - 1 function failed to deploy\n"
            "  - orders (us-east-1): ResourceConflictException: update in progress\nretry later") in failed
    assert render.text_table(_bootstrap()).splitlines()[0].startswith("go-arm-lambda 0.1.0: bootstrap mode")


# --- reports of real deploys against moto -------------------------------------------------------------------

def _output(zips: dict[str, FakeArtifact]) -> pipeline.BuildOutput:
    """What the build stages would hand on for these zips (verify and smoke skipped)."""
    functions = [pipeline.FunctionArtifacts(build.BuiltFunction(FunctionSpec(n, f"./cmd/{n}"), n, z.path,
                                                                z.path.parent), typing.cast(package.Artifact, z))
                 for n, z in zips.items() if n]
    return pipeline.BuildOutput(functions, typing.cast(package.Artifact, zips[""]))


def _pipeline_report(zips: dict[str, FakeArtifact], result: DeployResult) -> r.JobReport:
    """The job report exactly as the pipeline makes it from this build and this deploy."""
    deployed = result.to_report()
    assert _schema_problems(json.loads(json.dumps(deployed)), r.DeployReport, "deploy") == []  # the executor's side
    cfg = Config(regions=(REGION,), dry_run=result.dry_run)
    return _conforms(pipeline.job_report(cfg, _output(zips), deployed))


def test_dry_run_of_a_new_layer_shows_no_arn(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    zips = artifacts(tmp_path, ["orders"])
    rep = _pipeline_report(zips, preview(plan_for(aws.url, desired(zips))))

    md, text = render.summary_markdown(rep), render.text_table(rep)
    assert f"- {REGION}: new version (dry run)" in md
    assert f"layer go-arm-lambda-bootstrap in {REGION}: new version (dry run)" in text.splitlines()
    assert "None" not in md and "None" not in text
    outputs = render.action_outputs(rep, "r.json")
    assert (outputs["layer-arn"], outputs["layer-arns"], outputs["changed"]) == ("", "{}", "true")
    # The planned runtime and architecture, not what the function has now.
    row = _rows(md, f"### {REGION}")[2]
    assert (row[3], row[4], row[7]) == ("arm64", "provided.al2023", "yes")


def test_failed_layer_is_not_reported_as_published(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")  # go1.x on x86_64
    aws.proxy.respond("POST", r"/layers/", status=400, code="InvalidParameterValueException", message="too long")
    zips = artifacts(tmp_path, ["orders"])
    rep = _pipeline_report(zips, deploy(aws.url, desired(zips)))

    md = render.summary_markdown(rep)
    assert md.startswith("## ❌ go-arm-lambda failed")
    assert f"- {REGION}: not published" in md and "(published)" not in md and "None" not in md
    # orders was never touched: it is still go1.x on x86_64, and the summary says so.
    row = _rows(md, f"### {REGION}")[2]
    assert (row[0], row[3], row[4], row[7]) == ("`orders`", "x86_64", "go1.x", "no")
    assert "InvalidParameterValueException: too long" in md.split("### Errors", 1)[1]
    outputs = render.action_outputs(rep, "r.json")
    assert (outputs["layer-arn"], outputs["layer-arns"], outputs["changed"]) == ("", "{}", "false")
    assert f"layer go-arm-lambda-bootstrap in {REGION}: not published" in render.text_table(rep)
    assert rep["layer"] is not None and rep["layer"]["sha256"] == zips[""].sha256
    assert [(f["status"], f["changed"]) for f in rep["functions"]] == [(Status.NOT_TOUCHED, False)]
    assert not pipeline.JobResult.of(rep).ok  # the exit code says what the headline says


def test_a_sharing_change_on_a_reused_layer_is_shown_and_counts_as_changed() -> None:
    layer: r.LayerDeploy = {"name": "go-arm-lambda-bootstrap", "arns": {"eu-west-1": LAYER_EU},
                            "published": {"eu-west-1": False}, "changes": {"eu-west-1": ["permission removed: *"]}}
    unchanged = _state("orders", "eu-west-1", changes=[], status=Status.UNCHANGED)
    doc = _job([unchanged], layer=layer)
    assert "(permission removed: *)" in render.summary_markdown(doc)
    assert render.action_outputs(doc, "r.json")["changed"] == "true"
    doc = _job([unchanged], layer={**layer, "changes": {"eu-west-1": []}})
    assert "(unchanged)" in render.summary_markdown(doc) and r.changed(doc) is False
    assert "already up to date in eu-west-1" in render.summary_markdown(doc).splitlines()[0]


# --- the types, the assembly and the rules ------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: DEPLOY, _dry_run, _failure, _bootstrap, _built_only, _rolled_out])
def test_every_report_here_is_what_the_types_say(make: Any) -> None:
    _conforms(make())


def test_the_schema_check_can_fail() -> None:
    rep: Any = json.loads(json.dumps(DEPLOY))
    rep["functions"][0]["status"] = "deployed"
    rep["functions"][1]["zip_size"] = "4 MB"
    del rep["functions"][2]["error"]
    rep["layer"]["extra"] = 1
    assert sorted(_schema_problems(rep)) == [
        "report.functions[0].status: 'deployed' is not a Status",
        "report.functions[1].zip_size: '4 MB' is not int",
        "report.functions[2]: no 'error'",
        "report.layer: 'extra' is not in LayerReport"]


def _architecture_example() -> dict[str, Any]:
    text = (Path(__file__).parents[1] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## The job report", 1)[1]
    return json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])


def test_the_architecture_example_has_the_fields_of_the_types() -> None:
    example = _architecture_example()

    def keys(tp: Any) -> set[str]:
        return set(typing.get_type_hints(tp))

    assert set(example) == keys(r.JobReport)
    assert set(example["layer"]) == keys(r.LayerReport)
    assert set(example["functions"][0]) == keys(r.FunctionReport)
    assert set(example["plan"][0]) == keys(r.PlanLine)
    function = example["functions"][0]
    assert function["status"].split(" | ") == [s.value for s in Status]
    assert tuple(function["verify"].split(" | ")) == typing.get_args(r.VerifyStatus)
    assert tuple(function["smoke"].split(" | ")) == typing.get_args(r.SmokeStatus)


def test_status_values_are_the_json_strings_and_the_rules_are_decided_on_them() -> None:
    assert json.dumps([Status.NOT_TOUCHED, Status.BUILT]) == '["not-touched", "built"]'
    assert {s for s in Status if s.failed} == {Status.FAILED, Status.NOT_TOUCHED, Status.ROLLED_BACK}
    assert {s for s in Status if s.changed(["code"])} == {Status.UPDATED, Status.PLANNED}
    for status in Status:
        assert r.function_failed({"status": status.value}) is status.failed
        assert r.function_changed({"status": status.value, "changes": ["code"]}) is status.changed(["code"])
        assert r.function_changed({"status": status.value, "changes": []}) is status.changed([]) is False


def test_assemble_decides_changed_by_the_rule_and_refuses_an_unknown_status() -> None:
    rep = _job([_state("orders", "eu-west-1", status="failed", error="boom"),
                _state("payments", "eu-west-1", status="not-touched", error="layer failed")], layer=LAYER)
    assert [(f["status"], f["changed"]) for f in rep["functions"]] == [(Status.FAILED, False),
                                                                       (Status.NOT_TOUCHED, False)]
    assert r.failed(rep) and not r.changed(_job(rep["functions"][:0], layer=None))
    with pytest.raises(ValueError, match="half-done"):
        _job([_state("orders", "eu-west-1", status="half-done")], layer=LAYER)


def test_a_function_left_untouched_fails_the_job_even_without_an_error_line() -> None:
    rep = _job([_state("orders", "eu-west-1"), _state("payments", "eu-west-1", status=Status.NOT_TOUCHED)],
               layer=LAYER)
    assert rep["errors"] == [] and r.failed(rep)
    assert render.summary_markdown(rep).startswith("## ❌ go-arm-lambda failed in eu-west-1")
    assert not pipeline.JobResult.of(rep).ok
    assert pipeline.JobResult.of(DEPLOY).ok
    assert not pipeline.JobResult.of(DEPLOY, UsageError("x", "y")).ok


def test_a_build_only_run_says_what_it_did_and_that_it_did_not_deploy() -> None:
    rep = _built_only()
    headline = "go-arm-lambda built, verified, smoke-tested and packaged 2 function(s); not deployed"
    assert render.summary_markdown(rep).splitlines()[0] == f"## ✅ {headline}"
    assert render.comment_body(rep, "default").splitlines()[1] == f"### ✅ {headline}"
    assert "up to date" not in render.summary_markdown(rep) + render.comment_body(rep, "default")
    assert render.action_outputs(rep, "r.json")["changed"] == "false" and pipeline.JobResult.of(rep).ok
    assert "built, verified and packaged 2" in render.summary_markdown(_built_only(smoke="skipped")).splitlines()[0]
    assert "## ✅ go-arm-lambda built and packaged 2" in render.summary_markdown(_built_only(verify="skipped",
                                                                                        smoke="skipped"))


def test_the_pipeline_reports_a_build_without_deploy(tmp_path: Path) -> None:
    zips = artifacts(tmp_path, ["orders", "payments"])
    rep = _conforms(pipeline.job_report(Config(), _output(zips), None))
    assert [(f["name"], f["status"], f["region"], f["changed"]) for f in rep["functions"]] == [
        ("orders", Status.BUILT, None, False), ("payments", Status.BUILT, None, False)]
    assert rep["functions"][0]["code_sha256"] == zips["orders"].code_sha256  # what Lambda will report
    assert rep["layer"] == {"name": "go-arm-lambda-bootstrap", "arns": {}, "published": {}, "changes": {},
                            "sha256": zips[""].sha256}
    assert render.summary_markdown(rep).startswith("## ✅ go-arm-lambda built and packaged 2 function(s); not deployed")
    bootstrap = _conforms(pipeline.job_report(Config(mode="bootstrap"), _output(zips), None))
    assert bootstrap["layer"] is None


def test_timings_are_in_the_report_and_one_line_of_the_summary() -> None:
    timings: r.Timings = {"stages": {"build": 12.345, "verify": 0.021, "smoke": 1.5}, "total": 14.2}
    rep = _conforms(r.assemble(HEADER, [_build("orders")], None, None, None, timings=timings))
    assert rep["timings"] == timings
    lines = render.summary_markdown(rep).splitlines()
    assert lines[4] == "⏱️ build 12.3 s · verify 0.02 s · smoke 1.50 s · total 14.2 s"
    # A job stopped before any stage ran has nothing to break down.
    assert "⏱️" not in render.summary_markdown(_conforms(r.assemble(HEADER, [], None, None, None)))
