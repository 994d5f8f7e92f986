"""Two writers on one function: no lost updates (every write names the RevisionId it follows) and no
out-of-order deploys (each function carries the GitHub Actions run that last deployed it), against moto behind
the proxy, which keeps and enforces RevisionIds as Lambda does (tests/revisions.py)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from awsfakes import FAST, REGION, FakeAws, artifacts, by_name, deploy, desired, plan_for
from go_arm_lambda import pipeline
from go_arm_lambda.aws import make_session
from go_arm_lambda.build import BuiltFunction
from go_arm_lambda.config import Config, FunctionSpec
from go_arm_lambda.execute import DeployResult, execute, preview
from go_arm_lambda.lambda_api import LambdaWriter
from go_arm_lambda.steps import RUN_TAG_PREFIX, DeployRun, Plan

CHANGED = "changed since the plan was read (AWS refused {}: PreconditionFailedException). run again: nothing was " \
          "overwritten, and the new run plans from what is there now"
WRITES = r"/functions/[^/]+/(code|configuration|versions|aliases(/[^/]+)?)$"


def run_plan(aws: FakeAws, plan: Plan) -> DeployResult:
    session = make_session(aws.url, timing=FAST)
    return execute(plan, {REGION: LambdaWriter(session, REGION)})


def sent_revisions(aws: FakeAws, name: str) -> list[tuple[str, str, str | None, int | None]]:
    """(method, what, RevisionId sent, status) of each write to one function, in order."""
    return [(r.method, r.path.rsplit("/", 1)[-1], r.json().get("RevisionId"), r.status)
            for r in aws.proxy.requests if r.method in ("PUT", "POST") and f"/functions/{name}/" in r.path]


# --- no lost updates --------------------------------------------------------------------------------------------


def test_a_change_between_plan_and_execute_fails_that_function_only(aws: FakeAws, tmp_path: Path) -> None:
    for name in ("orders", "users", "admin"):
        aws.create_function(name)
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders", "users", "admin"])))
    read = {fp.name: fp.current.revision_id for r in plan.regions for fp in r.functions}
    assert all(read.values()) and len(set(read.values())) == 3
    # Someone changes users after the plan was read, before it runs.
    aws.client("lambda").update_function_configuration(FunctionName="users", MemorySize=1024)

    result = run_plan(aws, plan)

    report = by_name(result)
    assert (report["orders"]["status"], report["admin"]["status"]) == ("updated", "updated")
    assert report["users"]["status"] == "failed"
    assert report["users"]["error"] == f"function users in {REGION} " + CHANGED.format("UpdateFunctionCode")
    # The RevisionId sent was the one the plan read; refused once, never retried, nothing else sent.
    assert sent_revisions(aws, "users") == [("PUT", "code", read["users"], 412)]
    [refused] = aws.proxy.guard.refused
    assert refused.path.endswith("/functions/users/code")
    # Their change stands, and so does the old code: nothing of users was overwritten.
    users = aws.function("users")
    assert (users["MemorySize"], users["Runtime"], users["Architectures"]) == (1024, "go1.x", ["x86_64"])
    assert aws.function("orders")["Runtime"] == aws.function("admin")["Runtime"] == "provided.al2023"
    assert result.all_errors() == [f"users ({REGION}): {report['users']['error']}"]


def test_each_write_names_the_revision_the_one_before_left(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    zips = artifacts(tmp_path / "v1", ["orders"])
    assert deploy(aws.url, desired(zips, publish=True, alias="live")).ok
    aws.proxy.clear()

    # Code, configuration (the handler), a version and the alias: four writes in a row on one function.
    aws.client("lambda").update_function_configuration(FunctionName="orders", Handler="main")
    result = deploy(aws.url, desired(artifacts(tmp_path / "v2", ["orders"], version="v2"), publish=True,
                                     alias="live"))

    assert result.ok, result.all_errors()
    sent = sent_revisions(aws, "orders")
    assert [(method, what, status) for method, what, _, status in sent] == [
        ("PUT", "code", 200), ("PUT", "configuration", 200), ("POST", "versions", 201), ("PUT", "live", 201)]
    # Each names a RevisionId, a new one after each update: the one read once that update had finished (the
    # update's own answer carries one that is stale by then, as on AWS, and would have been refused).
    revisions = [revision for _, _, revision, _ in sent]
    assert all(revisions) and len(set(revisions[:3])) == 3
    assert aws.proxy.guard.refused == []
    assert aws.client("lambda").get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "2"


def test_an_alias_moved_since_the_plan_is_left_where_they_put_it(aws: FakeAws, tmp_path: Path) -> None:
    for name in ("orders", "users"):
        aws.create_function(name)
    assert deploy(aws.url, desired(artifacts(tmp_path / "v1", ["orders", "users"]), publish=True,
                                   alias="live")).ok
    lam = aws.client("lambda")
    lam.update_function_configuration(FunctionName="users", MemorySize=512)
    lam.publish_version(FunctionName="users")  # version 2, by someone else
    plan = plan_for(aws.url, desired(artifacts(tmp_path / "v2", ["orders", "users"], version="v2"), publish=True,
                                     alias="live"))
    lam.update_alias(FunctionName="users", Name="live", FunctionVersion="2")

    result = run_plan(aws, plan)

    report = by_name(result)
    assert report["orders"]["status"] == "updated"
    assert report["users"]["status"] == "failed"
    assert report["users"]["error"] == f"alias live of users in {REGION} " + CHANGED.format("UpdateAlias")
    assert lam.get_alias(FunctionName="users", Name="live")["FunctionVersion"] == "2"  # as they left it
    assert lam.get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "2"


def test_an_alias_created_since_the_plan_is_not_taken_over(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    lam = aws.client("lambda")
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders"]), publish=True, alias="live"))
    lam.publish_version(FunctionName="orders")
    lam.create_alias(FunctionName="orders", Name="live", FunctionVersion="1")

    result = run_plan(aws, plan)

    assert result.functions[0].status == "failed"
    assert result.functions[0].error == (
        f"alias live of orders in {REGION} was created since the plan was read. run again: nothing was "
        "overwritten, and the new run plans from what is there now")
    assert aws.proxy.matching("PUT", r"/aliases/live$") == []
    assert lam.get_alias(FunctionName="orders", Name="live")["FunctionVersion"] == "1"


def test_an_update_whose_answer_was_lost_is_recognised_as_ours(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    aws.proxy.lose_answer("PUT", r"/functions/orders/code$")

    result = deploy(aws.url, desired(artifacts(tmp_path, ["orders"])))

    assert result.ok, result.all_errors()
    # The update went through, its answer did not; the retry names the same RevisionId, now stale because of that
    # very update, and is refused. The function is exactly as the update asked, so it was ours: no failure.
    code = aws.proxy.matching("PUT", r"/functions/orders/code$")
    assert [r.status for r in code] == [None, 412]
    assert code[0].json()["RevisionId"] == code[1].json()["RevisionId"]
    assert aws.function("orders")["CodeSha256"] == result.functions[0].code_sha256
    assert [r.status for r in aws.proxy.matching("PUT", r"/functions/orders/configuration$")] == [200]


def test_a_refused_retry_after_someone_elses_change_still_fails(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    # The first attempt is reset before it arrives; meanwhile someone else changes the function.
    fault = aws.proxy.reset("PUT", r"/functions/orders/code$")
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders"])))
    aws.client("lambda").update_function_code(FunctionName="orders", ZipFile=b"PK\x05\x06" + b"\0" * 18)

    result = run_plan(aws, plan)

    assert fault.times == 0
    assert result.functions[0].status == "failed"
    assert CHANGED.format("UpdateFunctionCode") in (result.functions[0].error or "")
    assert [r.status for r in aws.proxy.matching("PUT", r"/functions/orders/code$")] == [None, 412]


def test_an_update_in_progress_at_plan_time_that_ends_otherwise_is_not_overwritten(aws: FakeAws,
                                                                                    tmp_path: Path) -> None:
    aws.create_function("orders")

    def in_progress(body: bytes) -> bytes:
        answer = json.loads(body)
        answer["Configuration"]["LastUpdateStatus"] = "InProgress"
        return json.dumps(answer).encode()
    aws.proxy.rewrite("GET", r"/functions/orders$", in_progress)  # what the planner reads: someone is updating
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders"])))
    # Their update ends with a handler of their own. AWS gives the function a new RevisionId as any update
    # ends, so the plan's is stale either way; the executor waits, sees what changed, and leaves it alone.
    aws.client("lambda").update_function_configuration(FunctionName="orders", Handler="theirs")

    result = run_plan(aws, plan)

    assert result.functions[0].status == "failed"
    assert result.functions[0].error == (
        f"function orders in {REGION} changed since the plan was read (the update in progress then finished with "
        "other code or settings). run again: nothing was overwritten, and the new run plans from what is there now")
    assert [r for r in aws.proxy.requests if r.method == "PUT"] == []
    assert aws.function("orders")["Handler"] == "theirs"


# --- no out-of-order deploys ------------------------------------------------------------------------------------

def actions_run(number: int, commit: str, workflow: str = "Deploy") -> DeployRun:
    run = DeployRun.from_env({"GITHUB_ACTIONS": "true", "GITHUB_RUN_NUMBER": str(number), "GITHUB_WORKFLOW": workflow,
                              "GITHUB_SHA": commit, "GITHUB_RUN_ID": str(9000 + number),
                              "GITHUB_REPOSITORY": "shop/backend"})
    assert run is not None
    return run


def tags(aws: FakeAws, name: str) -> dict[str, str]:
    arn = aws.function(name)["FunctionArn"]
    return {k: v for k, v in aws.client("lambda").list_tags(Resource=arn)["Tags"].items()
            if k.startswith(RUN_TAG_PREFIX)}


def test_each_deployed_function_carries_its_run(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("shop-checkout")
    aws.client("lambda").tag_resource(Resource=aws.function("shop-checkout")["FunctionArn"], Tags={"team": "shop"})

    result = deploy(aws.url, desired(artifacts(tmp_path, ["shop-checkout"]), run=actions_run(58, "abc1234" * 6)))

    assert result.ok, result.all_errors()
    assert tags(aws, "shop-checkout") == {
        "go-arm-lambda:repository": "shop/backend", "go-arm-lambda:workflow": "Deploy",
        "go-arm-lambda:run-number": "58", "go-arm-lambda:commit": "abc1234" * 6, "go-arm-lambda:run-id": "9058"}
    # On the unqualified ARN, after the function's last write; the team's own tag is kept.
    [tagged] = aws.proxy.matching("POST", r"^/2017-03-31/tags/")
    assert unquote(tagged.path).endswith(":function:shop-checkout") and tagged.started > max(
        r.finished for r in aws.proxy.matching("PUT", r"/functions/shop-checkout/"))
    arn = aws.function("shop-checkout")["FunctionArn"]
    assert aws.client("lambda").list_tags(Resource=arn)["Tags"]["team"] == "shop"
    assert [s.action for s in result.steps_done][-1] == "tag-run"


def test_an_older_run_does_not_overwrite_a_newer_ones_deploy(aws: FakeAws, tmp_path: Path) -> None:
    for name in ("shop-checkout", "shop-cart"):
        aws.create_function(name)
    newer = actions_run(58, "abc1234" * 6)
    assert deploy(aws.url, desired(artifacts(tmp_path / "58", ["shop-checkout"]), run=newer)).ok
    aws.proxy.clear()

    older = desired(artifacts(tmp_path / "57", ["shop-checkout", "shop-cart"], version="v57"),
                    run=actions_run(57, "0ld5eed" * 6))
    dry = preview(plan_for(aws.url, older))
    result = deploy(aws.url, older)

    refusal = ("run #58 (commit abc1234) already deployed shop-checkout; not deploying run #57 (commit 0ld5eed). "
               "this run is older: deploy from a newer run, or give --allow-older (input allow-older) to deploy it "
               "on purpose")
    for outcome in (dry, result):
        report = by_name(outcome)
        assert (report["shop-checkout"]["status"], report["shop-checkout"]["error"]) == ("failed", refusal)
        assert report["shop-checkout"]["changes"] == []
    assert by_name(dry)["shop-cart"]["status"] == "planned"
    assert by_name(result)["shop-cart"]["status"] == "updated"  # never deployed by a newer run
    # Refused before any write: shop-checkout was only read, by the dry run and then the deploy, one GetFunction
    # each, whose answer carries run 58's tags (no ListTags: the 15/s quota is for the updates); it still carries
    # run 58 and its code. shop-cart had no tags, so GetFunction said nothing of them, and ListTags had to.
    def reads(name: str) -> list[str]:
        return [f"{r.method} {unquote(r.path).split('/')[2]}" for r in aws.proxy.requests
                if name in unquote(r.path) and r.method == "GET"]
    assert reads("shop-checkout") == ["GET functions"] * 2
    assert [r.method for r in aws.proxy.requests if "shop-checkout" in unquote(r.path)] == ["GET"] * 2
    assert reads("shop-cart").count("GET tags") == 2
    assert tags(aws, "shop-checkout")["go-arm-lambda:run-number"] == "58"
    assert tags(aws, "shop-cart")["go-arm-lambda:run-number"] == "57"
    assert result.all_errors() == [f"shop-checkout ({REGION}): {refusal}"]


def test_allow_older_deploys_an_older_run_on_purpose(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("shop-checkout")
    assert deploy(aws.url, desired(artifacts(tmp_path / "58", ["shop-checkout"]), run=actions_run(58, "a" * 40))).ok

    older = artifacts(tmp_path / "57", ["shop-checkout"], version="v57")
    result = deploy(aws.url, desired(older, run=actions_run(57, "b" * 40), allow_older=True))

    assert result.ok, result.all_errors()
    assert aws.function("shop-checkout")["CodeSha256"] == older["shop-checkout"].code_sha256
    assert tags(aws, "shop-checkout")["go-arm-lambda:run-number"] == "57"


@pytest.mark.parametrize(("number", "workflow"), [(58, "Deploy"), (12, "Hotfix")])
def test_a_rerun_or_another_workflows_run_deploys(aws: FakeAws, tmp_path: Path, number: int, workflow: str) -> None:
    aws.create_function("shop-checkout")
    assert deploy(aws.url, desired(artifacts(tmp_path / "58", ["shop-checkout"]), run=actions_run(58, "a" * 40))).ok

    result = deploy(aws.url, desired(artifacts(tmp_path / "again", ["shop-checkout"], version="v2"),
                                     run=actions_run(number, "c" * 40, workflow)))

    assert result.ok, result.all_errors()  # run numbers compare only within one workflow; a re-run keeps its own
    assert tags(aws, "shop-checkout")["go-arm-lambda:workflow"] == workflow


def test_outside_actions_no_tags_are_read_or_written(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    assert deploy(aws.url, desired(artifacts(tmp_path, ["orders"]))).ok
    assert [r.path for r in aws.proxy.requests if "/tags/" in r.path] == []


def test_an_unchanged_function_is_neither_refused_nor_tagged(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders", runtime="provided.al2023", architecture="arm64")  # moto keeps x86_64 otherwise
    zips = artifacts(tmp_path, ["orders"])
    assert deploy(aws.url, desired(zips, run=actions_run(58, "a" * 40))).ok
    aws.proxy.clear()

    result = deploy(aws.url, desired(zips, run=actions_run(57, "b" * 40)))

    assert result.ok, result.all_errors()
    assert result.functions[0].status == "unchanged"
    assert aws.proxy.mutating() == []  # nothing to overwrite, nothing to claim


def test_the_run_comes_from_the_actions_environment() -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_RUN_NUMBER": "58", "GITHUB_WORKFLOW": "Deploy (prod) ✓ & more",
           "GITHUB_SHA": "abc1234def", "GITHUB_RUN_ID": "77", "GITHUB_REPOSITORY": "shop/backend"}
    run = DeployRun.from_env(env)
    assert run == DeployRun("shop/backend", "Deploy _prod_ _ _ more", 58, "abc1234def", "77")
    assert run.label == "run #58 (commit abc1234)"
    # What is written is what is read back, so the next run compares like with like.
    assert DeployRun.from_tags(run.tags()) == run
    assert DeployRun.from_env(env | {"GITHUB_WORKFLOW": "w" * 300}).workflow == "w" * 256  # type: ignore[union-attr]
    assert all(len(k) <= 128 and not k.startswith("aws:") for k in run.tags())
    for missing in ("GITHUB_ACTIONS", "GITHUB_RUN_NUMBER", "GITHUB_WORKFLOW"):
        assert DeployRun.from_env({k: v for k, v in env.items() if k != missing}) is None
    assert DeployRun.from_tags({"go-arm-lambda:run-number": "many", "go-arm-lambda:workflow": "Deploy"}) is None


def test_the_job_refuses_an_older_run_under_actions(aws: FakeAws, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the pipeline: the run from GITHUB_*, --allow-older from the config, the refusal in the report."""
    aws.create_function("shop-checkout")
    for key, value in {"GITHUB_ACTIONS": "true", "GITHUB_WORKFLOW": "Deploy", "GITHUB_REPOSITORY": "shop/backend",
                       "GITHUB_RUN_ID": "1"}.items():
        monkeypatch.setenv(key, value)
    zips = {n: artifacts(tmp_path / n, ["shop-checkout"], version=n) for n in ("58", "57")}

    def job(number: str, **options: bool) -> pipeline.JobResult:
        monkeypatch.setenv("GITHUB_RUN_NUMBER", number)
        monkeypatch.setenv("GITHUB_SHA", number * 20)
        cfg = Config(source=tmp_path, regions=(REGION,), endpoint_url=aws.url, **options)
        built = BuiltFunction(FunctionSpec("shop-checkout", "./cmd/shop"), "shop-checkout", Path("b"), Path("."))
        function = pipeline.FunctionArtifacts(built, zips[number]["shop-checkout"])  # type: ignore[arg-type]
        return pipeline.deploy_built(cfg, pipeline.BuildOutput(functions=[function], layer=zips[number][""]))

    assert job("58").ok
    refused = job("57")
    assert not refused.ok
    [function] = refused.report["functions"]
    assert (function["status"], function["error"]) == ("failed", (
        "run #58 (commit 5858585) already deployed shop-checkout; not deploying run #57 (commit 5757575). this "
        "run is older: deploy from a newer run, or give --allow-older (input allow-older) to deploy it on purpose"))
    assert job("57", allow_older=True).ok
    assert tags(aws, "shop-checkout")["go-arm-lambda:run-number"] == "57"


def test_the_tag_step_is_in_the_plan(aws: FakeAws, tmp_path: Path) -> None:
    aws.create_function("orders")
    plan = plan_for(aws.url, desired(artifacts(tmp_path, ["orders"]), run=actions_run(59, "d" * 40)))
    [line] = [s.describe() for s in plan.steps() if s.action == "tag-run"]
    assert line == {"action": "tag-run", "target": "orders", "region": REGION,
                    "detail": "run #59 (commit ddddddd) of workflow Deploy"}
    assert json.dumps(preview(plan).plan)  # the dry run shows it as it is
