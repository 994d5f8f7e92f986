"""Rendering the job report: the text table, the job summary, the PR comment and the Action's outputs.

Most reports here are written out to show every field; where the shape depends on what the deploy did (a dry
run, a failed layer), the report comes from a real plan and execute against moto.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from awsfakes import REGION, FakeAws, artifacts, deploy, desired, plan_for
from go_arm_lambda import report as r
from go_arm_lambda.execute import DeployResult, preview

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LAYER_EU = "arn:aws:lambda:eu-west-1:123456789012:layer:go-arm-lambda-bootstrap:3"
LAYER_US = "arn:aws:lambda:us-east-1:123456789012:layer:go-arm-lambda-bootstrap:1"
RUN_URL = "https://github.com/acme/shop/actions/runs/42"


def _function(name: str, region: str, **over: Any) -> dict[str, Any]:
    f = {"name": name, "region": region, "arn": f"arn:aws:lambda:{region}:123456789012:function:{name}",
         "version": "4", "alias": "live", "code_sha256": "q80=", "changed": True,
         "changes": ["runtime: go1.x -> provided.al2023", "architecture: x86_64 -> arm64", "code"],
         "status": "updated", "error": None, "package": f"./cmd/{name}", "handler": name,
         "zip_size": 4_200_000, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
         "verify": "ok", "smoke": "ok"}
    f.update(over)
    return f


DEPLOY: dict[str, Any] = {
    "tool_version": "0.1.0", "dry_run": False, "commit": COMMIT, "mode": "layer",
    "runtime": "provided.al2023",
    "layer": {"name": "go-arm-lambda-bootstrap", "sha256": "ab" * 32,
              "arns": {"eu-west-1": LAYER_EU, "us-east-1": LAYER_US},
              "published": {"eu-west-1": True, "us-east-1": False}},
    "functions": [_function("orders", "eu-west-1"),
                  _function("orders", "us-east-1", changed=False, changes=[], status="unchanged",
                            version="2"),
                  _function("payments", "eu-west-1", alias=None, version="7", verify="warnings")],
    "plan": [], "mutating_calls": 7, "errors": [],
}


def _dry_run() -> dict[str, Any]:
    rep = copy.deepcopy(DEPLOY)
    rep["dry_run"] = True
    # On a dry run "published" means "would publish", and a version not yet published has no ARN.
    rep["layer"]["arns"] = {"us-east-1": LAYER_US}
    rep["layer"]["published"] = {"eu-west-1": True, "us-east-1": False}
    for f in rep["functions"]:
        f.update(status="planned", version=None)
    rep["plan"] = [{"action": "publish-layer", "target": "go-arm-lambda-bootstrap", "region": "eu-west-1",
                    "detail": "new content"},
                   {"action": "update-code", "target": "orders", "region": "eu-west-1", "detail": "sha a|b"}]
    return rep


def _failure() -> dict[str, Any]:
    rep = copy.deepcopy(DEPLOY)
    rep["functions"][1].update(status="failed", changed=False,
                               error="ResourceConflictException: update in progress\nretry later | <nil>")
    rep["errors"] = ["1 function failed to deploy"]
    return rep


def _bootstrap() -> dict[str, Any]:
    rep = copy.deepcopy(DEPLOY)
    rep.update(mode="bootstrap", layer=None)
    for f in rep["functions"]:
        f["handler"] = "bootstrap"
    return rep


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
    md = r.summary_markdown(DEPLOY)
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
    md = r.summary_markdown(_dry_run())
    assert "dry run" in md.splitlines()[0] and "nothing was changed" in md.splitlines()[0]
    plan = _rows(md, "### Plan")
    assert plan[0] == ["Action", "Target", "Region", "Detail"]
    assert plan[3] == ["update-code", "orders", "eu-west-1", "sha a\\|b"]  # the pipe stays inside its cell
    assert _rows(md, "### eu-west-1")[2][2] == "— (live)"  # no version yet on a dry run
    assert "- eu-west-1: new version (dry run)" in md
    assert f"- us-east-1: `{LAYER_US}` (unchanged)" in md


def test_summary_on_failure_lists_errors_safely() -> None:
    md = r.summary_markdown(_failure())
    assert md.startswith("## ❌ go-arm-lambda failed")
    errors = md.split("### Errors\n", 1)[1].splitlines()
    assert errors[0] == "- 1 function failed to deploy"
    # one bullet per error: the newline is gone, and <nil> cannot become an HTML tag
    assert errors[1] == ("- `orders` (us-east-1): ResourceConflictException: update in progress "
                         "retry later | &lt;nil>")


def test_function_error_repeated_in_errors_is_shown_once() -> None:
    rep = _failure()
    rep["errors"] = ["orders (us-east-1): ResourceConflictException: update in progress"]
    md = r.summary_markdown(rep)
    assert md.count("ResourceConflictException") == 1
    assert r.text_table(rep).count("ResourceConflictException") == 1


def test_bootstrap_mode_has_no_layer() -> None:
    md = r.summary_markdown(_bootstrap())
    assert "No layer: bootstrap mode" in md and "arn:aws:lambda:eu-west-1:123456789012:layer" not in md
    outputs = r.action_outputs(_bootstrap(), "/github/workspace/.go-arm-lambda/report.json")
    assert outputs["layer-arn"] == "" and outputs["layer-arns"] == "{}"
    assert outputs["changed"] == "true"  # the functions changed


def test_action_outputs() -> None:
    outputs = r.action_outputs(DEPLOY, ".go-arm-lambda/report.json")
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
        "report": ".go-arm-lambda/report.json",
    }
    dry = r.action_outputs(_dry_run(), "x.json")
    assert dry["function-versions"] == "{}"  # nothing was published


def test_changed_is_false_when_nothing_changed() -> None:
    rep = copy.deepcopy(DEPLOY)
    rep["layer"]["published"] = {"eu-west-1": False, "us-east-1": False}
    for f in rep["functions"]:
        f.update(changed=False, changes=[], status="unchanged")
    assert r.action_outputs(rep, "x")["changed"] == "false"
    assert "already up to date" in r.summary_markdown(rep).splitlines()[0]
    rep["layer"]["published"]["us-east-1"] = True
    assert r.action_outputs(rep, "x")["changed"] == "true"


def test_comment_body_says_what_went_where() -> None:
    body = r.comment_body(DEPLOY, "prod", COMMIT, RUN_URL)
    lines = body.splitlines()
    assert lines[0] == "<!-- go-arm-lambda:comment-id=prod -->" == r.comment_marker("prod")
    assert lines[1].startswith("### ✅ go-arm-lambda deployed 3 function(s)")
    assert f"commit {COMMIT}" in body and f"[workflow run]({RUN_URL})" in body
    assert f"- eu-west-1: `{LAYER_EU}` (published)" in body
    rows = _rows(body, "**Functions**")
    assert rows[2] == ["`orders`", "eu-west-1", "`arn:aws:lambda:eu-west-1:123456789012:function:orders`",
                       "4 (live)", "4.0 MiB", "✅ ok", "✅ ok", "updated"]
    assert "runtime: go1.x -> provided.al2023; architecture: x86_64 -> arm64" in body
    assert "**Plan**" not in body and "**What failed**" not in body


def test_comment_on_dry_run_and_on_failure() -> None:
    dry = r.comment_body(_dry_run(), "default", COMMIT, None)
    assert "**Plan** (dry run, nothing was changed)" in dry and "| publish-layer |" in dry
    assert "workflow run" not in dry
    failed = r.comment_body(_failure(), "default", COMMIT, RUN_URL)
    assert failed.splitlines()[1].startswith("### ❌ go-arm-lambda failed")
    assert "**What failed**\n- 1 function failed to deploy\n- `orders` (us-east-1): ResourceConflict" in failed
    assert _rows(failed, "**Functions**")[3][-1] == "failed"


def test_build_failure_before_any_deploy() -> None:
    rep = {"tool_version": "0.1.0", "dry_run": False, "commit": COMMIT, "mode": "layer",
           "runtime": "provided.al2023", "layer": None, "functions": [], "plan": [], "mutating_calls": 0,
           "errors": ["go build failed: cmd/orders/main.go:12:3: undefined: handler"]}
    body = r.comment_body(rep, "default", COMMIT, RUN_URL)
    assert body.splitlines()[1] == "### ❌ go-arm-lambda failed"
    assert "**Layer**: not published" in body and "bootstrap mode" not in body
    assert "**What failed**\n- go build failed: cmd/orders/main.go:12:3: undefined: handler" in body
    assert "**Functions**" not in body
    assert "### Errors" in r.summary_markdown(rep)
    assert r.action_outputs(rep, "r.json")["changed"] == "false"
    assert r.text_table(rep).endswith("errors:\n  - go build failed: cmd/orders/main.go:12:3: undefined: handler\n")


def test_comment_commit_defaults_to_the_reports() -> None:
    assert f"commit {COMMIT}" in r.comment_body(DEPLOY, "default")


def test_marker_cannot_be_broken_by_the_comment_id() -> None:
    marker = r.comment_marker("evil --> <b>x</b>")
    assert marker.count("-->") == 1 and marker.endswith(" -->") and "<b>" not in marker
    assert r.comment_marker("a") != r.comment_marker("a b") != r.comment_marker("a%20b")


def test_huge_report_comment_is_capped_with_a_note() -> None:
    rep = copy.deepcopy(DEPLOY)
    rep["functions"] = [_function(f"fn-{i:04d}", "eu-west-1", changes=[f"handler: old-{i} -> new-{i}" * 5])
                        for i in range(1500)]
    rep["errors"] = ["x" * 5000]  # one enormous error is shortened, not allowed to fill the comment
    body = r.comment_body(rep, "default", COMMIT, RUN_URL)
    assert len(body) < 65_536
    assert body.startswith(r.comment_marker("default") + "\n")
    assert body.rstrip().endswith("the job summary and the JSON report have everything._")
    assert "`fn-0000`" in body and "`fn-1499`" not in body
    summary = r.summary_markdown(rep)
    assert "`fn-1499`" in summary  # the summary has its own, larger, cap (see actions.append_summary)
    assert max(len(line) for line in summary.splitlines()) < 1200


def test_fit_measures_what_it_is_told() -> None:
    text = "ääää\nbbbb\ncccc\n"
    assert r.fit(text, 100, "!") == text
    assert r.fit(text, 11, "[cut]") == "ääää\n[cut]"
    assert r.fit(text, 11, "[cut]", measure=lambda s: len(s.encode())) == "[cut]"
    assert r.fit(text, 2, "[cut]") == ""


def test_text_table_for_the_terminal() -> None:
    text = r.text_table(DEPLOY)
    lines = text.splitlines()
    assert lines[0] == "go-arm-lambda 0.1.0: layer mode, provided.al2023, commit 0123456789ab"
    assert lines[1] == f"layer go-arm-lambda-bootstrap in eu-west-1: {LAYER_EU} (published)"
    header = next(line for line in lines if line.startswith("REGION"))
    row = next(line for line in lines if line.startswith("eu-west-1  orders"))
    assert row.index("updated") == header.index("STATUS")  # columns line up
    assert row.index("4 (live)") == header.index("VERSION")
    assert row.endswith("runtime: go1.x -> provided.al2023; architecture: x86_64 -> arm64; code")
    dry = r.text_table(_dry_run())
    assert "(dry run: nothing was changed)" in dry.splitlines()[0]
    assert "  update-code orders (eu-west-1): sha a|b" in dry
    failed = r.text_table(_failure())
    assert ("errors:\n  - 1 function failed to deploy\n"
            "  - orders (us-east-1): ResourceConflictException: update in progress\nretry later") in failed
    assert r.text_table(_bootstrap()).splitlines()[0].startswith("go-arm-lambda 0.1.0: bootstrap mode")


# --- reports of real deploys against moto -------------------------------------------------------------------

def _job(result: DeployResult) -> dict[str, Any]:
    """The deploy's report with the fields the pipeline adds around it."""
    return result.to_report() | {"tool_version": "0.1.0", "commit": COMMIT, "mode": "layer",
                                 "runtime": "provided.al2023"}


def test_dry_run_of_a_new_layer_shows_no_arn(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    rep = _job(preview(plan_for(aws.url, desired(artifacts(tmp_path, ["orders"])))))

    md, text = r.summary_markdown(rep), r.text_table(rep)
    assert f"- {REGION}: new version (dry run)" in md
    assert f"layer go-arm-lambda-bootstrap in {REGION}: new version (dry run)" in text.splitlines()
    assert "None" not in md and "None" not in text
    outputs = r.action_outputs(rep, "r.json")
    assert (outputs["layer-arn"], outputs["layer-arns"], outputs["changed"]) == ("", "{}", "true")
    # The planned runtime and architecture, not what the function has now.
    row = _rows(md, f"### {REGION}")[2]
    assert (row[3], row[4], row[7]) == ("arm64", "provided.al2023", "yes")


def test_failed_layer_is_not_reported_as_published(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")  # go1.x on x86_64
    aws.proxy.respond("POST", r"/layers/", status=400, code="InvalidParameterValueException", message="too long")
    rep = _job(deploy(aws.url, desired(artifacts(tmp_path, ["orders"]))))

    md = r.summary_markdown(rep)
    assert md.startswith("## ❌ go-arm-lambda failed")
    assert f"- {REGION}: not published" in md and "(published)" not in md and "None" not in md
    # orders was never touched: it is still go1.x on x86_64, and the summary says so.
    row = _rows(md, f"### {REGION}")[2]
    assert (row[0], row[3], row[4], row[7]) == ("`orders`", "x86_64", "go1.x", "no")
    assert "InvalidParameterValueException: too long" in md.split("### Errors", 1)[1]
    outputs = r.action_outputs(rep, "r.json")
    assert (outputs["layer-arn"], outputs["layer-arns"], outputs["changed"]) == ("", "{}", "false")
    assert f"layer go-arm-lambda-bootstrap in {REGION}: not published" in r.text_table(rep)


def test_a_sharing_change_on_a_reused_layer_is_shown_and_counts_as_changed() -> None:
    arn = "arn:aws:lambda:eu-west-1:123456789012:layer:go-arm-lambda-bootstrap:3"
    doc = {"dry_run": False, "mode": "layer", "runtime": "provided.al2023", "functions": [], "plan": [], "errors": [],
           "layer": {"name": "go-arm-lambda-bootstrap", "arns": {"eu-west-1": arn}, "published": {"eu-west-1": False},
                     "changes": {"eu-west-1": ["permission removed: *"]}}}
    assert "(permission removed: *)" in r.summary_markdown(doc)
    assert r.action_outputs(doc, "r.json")["changed"] == "true"
    doc["layer"]["changes"] = {"eu-west-1": []}
    assert "(unchanged)" in r.summary_markdown(doc) and r.changed(doc) is False
