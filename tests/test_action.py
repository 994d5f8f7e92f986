"""The whole Action as a subprocess, as the runner starts it: INPUT_* variables, a real pull_request event,
the GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, the GitHub API double and moto as the endpoints."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from awsfakes import FakeAws
from conftest import EXAMPLES, require_tool
from githubdouble import GitHubDouble

REPO = "acme/shop"
PR = 7
REGION = "eu-west-1"
TOKEN = "ghs_writeToken123"


BROKEN_BUILD = """
import sys
from go_arm_lambda import build, cli
def boom(*args, **kwargs):
    raise RuntimeError("injected fault")
build.build = boom
sys.exit(cli.main(sys.argv[1:]))
"""


def _event(path: Path, *, fork: bool = False) -> Path:
    head_repo = "someone/shop" if fork else REPO
    path.write_text(json.dumps({
        "action": "synchronize", "number": PR,
        "pull_request": {"number": PR, "head": {"sha": "f" * 40, "repo": {"full_name": head_repo}},
                         "base": {"ref": "main", "repo": {"full_name": REPO}}},
        "repository": {"full_name": REPO}}))
    return path


def _parse_outputs(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT's file-command format: name<<DELIM / value lines / DELIM."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        name, _, delim = line.partition("<<")
        value = []
        for v in lines:
            if v == delim:
                break
            value.append(v)
        out[name] = "\n".join(value)
    return out


class Runner:
    def __init__(self, tmp: Path, aws: FakeAws, gh: GitHubDouble) -> None:
        self.tmp, self.aws, self.gh = tmp, aws, gh
        self.workspace = tmp / "workspace"
        shutil.copytree(EXAMPLES, self.workspace, ignore=shutil.ignore_patterns("demo.py"))
        (tmp / "home").mkdir()
        self.outputs, self.summary = tmp / "github_output", tmp / "step_summary"

    def env(self, event: Path, **inputs: str) -> dict[str, str]:
        go = require_tool("go")
        require_tool("qemu-aarch64-static")
        gocache = subprocess.run([go, "env", "GOCACHE", "GOMODCACHE"], capture_output=True, text=True, check=True)
        cache, modcache = gocache.stdout.split()
        env = {
            "PATH": os.environ["PATH"], "HOME": str(self.tmp / "home"),
            "GOCACHE": cache, "GOMODCACHE": modcache, "GOFLAGS": "-mod=mod",
            "GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": "f" * 40, "GITHUB_SERVER_URL": "https://github.example", "GITHUB_RUN_ID": "42",
            "GITHUB_API_URL": self.gh.base_url, "GITHUB_OUTPUT": str(self.outputs),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "AWS_ENDPOINT_URL": self.aws.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(self.tmp / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.tmp / "none"),
            "INPUT_FUNCTIONS": "hello=./cmd/hello\norders-api=./cmd/orders\n", "INPUT_REGIONS": REGION,
            "INPUT_PUBLISH-VERSION": "true", "INPUT_ALIAS": "live", "INPUT_GITHUB-TOKEN": TOKEN,
            "INPUT_COMMENT": "auto", "INPUT_SMOKE": "true", "INPUT_DRY-RUN": "false",
        }
        return env | {f"INPUT_{k.upper()}": v for k, v in inputs.items()}

    def run(self, env: dict[str, str], *, broken_build: bool = False) -> subprocess.CompletedProcess[str]:
        """`broken_build` injects a bug into the build stage, the only way to have one on purpose."""
        self.outputs.write_text("")
        self.summary.write_text("")
        program = ["-c", BROKEN_BUILD] if broken_build else ["-m", "go_arm_lambda"]
        return subprocess.run([sys.executable, *program, "action"], env=env, cwd=self.workspace,
                              capture_output=True, text=True, timeout=300)

    def outputs_now(self) -> dict[str, str]:
        return _parse_outputs(self.outputs.read_text())


@pytest.fixture
def runner(tmp_path: Path, aws: FakeAws, github_double: GitHubDouble) -> Runner:
    for name in ("hello", "orders-api"):  # already arm64, still on provided.al2 with the binary as bootstrap
        aws.create_function(name, runtime="provided.al2", handler="bootstrap", architecture="arm64")
    github_double.add_pull_request(REPO, PR)
    github_double.state.tokens[TOKEN] = "write"
    return Runner(tmp_path, aws, github_double)


def _writes(gh: GitHubDouble) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in gh.writes()]


def test_deploys_reports_and_keeps_one_sticky_comment(runner: Runner, github_double: GitHubDouble) -> None:
    event = _event(runner.tmp / "event.json")
    first = runner.run(runner.env(event))
    assert first.returncode == 0, first.stdout + first.stderr
    out = runner.outputs_now()
    assert set(out) == {"layer-arn", "layer-arns", "function-arns", "function-versions", "changed", "rolled-back",
                        "report"}
    assert out["rolled-back"] == "false"
    assert re.fullmatch(rf"arn:aws:lambda:{REGION}:\d{{12}}:layer:go-arm-lambda-bootstrap:1", out["layer-arn"])
    arns = json.loads(out["function-arns"])[REGION]
    assert arns["hello"].endswith(":function:hello") and arns["orders-api"].endswith(":function:orders-api")
    assert json.loads(out["function-versions"]) == {REGION: {"hello": "1", "orders-api": "1"}}
    assert out["changed"] == "true" and out["report"] == ".go-arm-lambda/report.json"
    report: dict[str, Any] = json.loads((runner.workspace / out["report"]).read_text())
    assert {f["name"]: f["status"] for f in report["functions"]} == {"hello": "updated", "orders-api": "updated"}

    live = runner.aws.function("orders-api")
    assert (live["Runtime"], live["Handler"]) == ("provided.al2023", "orders")
    assert live["Layers"][0]["Arn"] == out["layer-arn"]

    summary = runner.summary.read_text()
    assert "orders-api" in summary and arns["orders-api"] in summary and out["layer-arn"] in summary
    # Each stage's group holds what happened in it and ends with its duration; the summary breaks the time down.
    groups = dict(re.findall(r"^::group::(\w+)\n(.*?)^::endgroup::$", first.stdout, re.MULTILINE | re.DOTALL))
    assert {"build", "verify", "package", "smoke", "plan", "deploy"} <= set(groups), first.stdout
    assert all(re.search(rf"^{name} took \d+\.\d+ s.*\n\Z", body, re.MULTILINE) for name, body in groups.items())
    assert "/go build -trimpath " in groups["build"]
    assert re.search(r"^  \d+ steps in 1 region\(s\): .*2 update-code", groups["plan"], re.MULTILINE), groups["plan"]
    for name in ("verify", "package", "smoke"):
        assert re.search(r"^  \[\d/\d\] orders-api: .*\d\.\d\d s$", groups[name], re.MULTILINE), groups[name]
    assert re.search(rf"^  \[\d+/\d+\] update-code hello \({REGION}\): \d+\.\d\d s", groups["deploy"], re.MULTILINE)
    assert re.search(r"^⏱️ build \d+\.\d+ s · verify .* · total \d+\.\d+ s$", summary, re.MULTILINE), summary
    # The token appears once: in the add-mask command that tells the runner to hide it, before anything else.
    assert first.stdout.splitlines()[0] == f"::add-mask::{TOKEN}"
    assert (first.stdout + first.stderr).count(TOKEN) == 1

    comments = github_double.comments(REPO, PR)
    assert len(comments) == 1 and arns["hello"] in comments[0]["body"]
    assert "provided.al2 -> provided.al2023" in comments[0]["body"]

    second = runner.run(runner.env(event))
    assert second.returncode == 0, second.stdout + second.stderr
    assert runner.outputs_now()["changed"] == "false"
    comments = github_double.comments(REPO, PR)
    assert len(comments) == 1  # edited in place, never a second copy
    writes = _writes(github_double)
    assert [m for m, _ in writes] == ["POST", "PATCH"]
    assert writes[1][1].endswith(f"/issues/comments/{comments[0]['id']}")
    assert all(r.headers.get("Authorization") == f"token {TOKEN}" for r in github_double.requests)


def test_a_failed_check_keeps_the_alias_and_promote_moves_the_same_bytes(runner: Runner,
                                                                         github_double: GitHubDouble) -> None:
    event = _event(runner.tmp / "event.json")
    # orders refuses a line with quantity 0 (a function error); hello answers anything.
    check = '{"customer": "Ada", "items": [{"sku": "tea", "quantity": 0, "cents": 250}]}'
    done = runner.run(runner.env(event, **{"CHECK-DEPLOYED": "true", "CHECK-EVENT": check}))
    assert done.returncode == 1, done.stdout + done.stderr
    out = runner.outputs_now()
    assert (out["rolled-back"], out["changed"]) == ("true", "true")
    report: dict[str, Any] = json.loads((runner.workspace / out["report"]).read_text())
    functions = {f["name"]: f for f in report["functions"]}
    assert {name: f["status"] for name, f in functions.items()} == {"hello": "updated", "orders-api": "rolled-back"}
    failed = functions["orders-api"]["check"]
    assert failed["function_error"] == "Unhandled" and "every item needs a quantity of at least 1" in failed["payload"]
    assert runner.aws.client("lambda").get_alias(FunctionName="hello", Name="live")["FunctionVersion"] == "1"
    assert [a["Name"] for a in runner.aws.client("lambda").list_aliases(FunctionName="orders-api")["Aliases"]] == []
    assert re.search(r"^::error title=deploy failed::orders-api \(eu-west-1\): the check of orders-api version 1 .*"
                     r"alias live was not created", done.stdout, re.MULTILINE), done.stdout
    for view in (runner.summary.read_text(), github_double.comments(REPO, PR)[0]["body"]):
        assert "every item needs a quantity of at least 1" in view and "START RequestId: " in view
        assert "passed: version 1 answered in" in view  # hello's check

    # The very version hello's live alias has goes to prod: checked, no build.
    promote = {"PROMOTE-FROM": "live", "ALIAS": "prod", "CHECK-DEPLOYED": "true", "CHECK-EVENT": '{"name": "Ada"}',
               "CHECK-EXPECT": "hello, Ada"}
    done = runner.run(runner.env(event, functions="hello=./cmd/hello", **promote))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::group::build" not in done.stdout and "::group::plan" in done.stdout
    out = runner.outputs_now()
    assert (out["rolled-back"], out["changed"]) == ("false", "true")
    assert json.loads(out["function-versions"]) == {REGION: {"hello": "1"}}
    assert runner.aws.client("lambda").get_alias(FunctionName="hello", Name="prod")["FunctionVersion"] == "1"
    assert "prod: created at 1" in github_double.comments(REPO, PR)[0]["body"]


def test_fork_pull_request_warns_and_deploy_result_stands(runner: Runner, github_double: GitHubDouble) -> None:
    event = _event(runner.tmp / "event.json", fork=True)
    done = runner.run(runner.env(event, **{"DRY-RUN": "true"}))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^::warning title=no PR comment::.*fork", done.stdout, re.MULTILINE)
    assert _writes(github_double) == []
    assert "Plan" in runner.summary.read_text()  # dry run: the plan is in the summary
    assert runner.aws.function("hello")["Runtime"] == "provided.al2"  # and nothing was changed


def test_failing_build_is_annotated_and_commented(runner: Runner, github_double: GitHubDouble) -> None:
    broken = runner.workspace / "cmd" / "orders" / "main.go"
    broken.write_text(broken.read_text().replace("r.Items += it.Quantity", "r.Items += it.Quantity + undefinedThing"))
    done = runner.run(runner.env(_event(runner.tmp / "event.json")))
    assert done.returncode == 1
    assert re.search(r"^::error file=cmd/orders/main\.go,line=\d+,col=\d+,title=go build failed::undefined: "
                     r"undefinedThing$", done.stdout, re.MULTILINE), done.stdout
    comments = github_double.comments(REPO, PR)
    assert len(comments) == 1 and "go build failed" in comments[0]["body"]
    assert "go build failed" in runner.summary.read_text()
    assert runner.aws.proxy.mutating() == []  # nothing half-done in AWS
    assert "Traceback" not in done.stderr


def test_verify_failure_is_annotated_on_the_function_source(runner: Runner) -> None:
    plain = runner.workspace / "cmd" / "plain"
    plain.mkdir()
    (plain / "main.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("no lambda.Start") }\n')
    env = runner.env(_event(runner.tmp / "event.json"), functions="plain=./cmd/plain", comment="never")
    done = runner.run(env)
    assert done.returncode == 1
    annotation = r"^::error file=cmd/plain/main\.go,line=5,title=verify failed::plain does not use .*aws-lambda-go"
    assert re.search(annotation, done.stdout, re.MULTILINE), done.stdout
    assert runner.aws.proxy.mutating() == []


def test_bad_input_still_reports_outputs_and_summary(runner: Runner, github_double: GitHubDouble) -> None:
    done = runner.run(runner.env(_event(runner.tmp / "event.json"), **{"DRY-RUN": "maybe"}))
    assert done.returncode == 2
    assert re.search(r"^::error title=invalid input::input dry-run='maybe' is not a boolean\. use true or false$",
                     done.stdout, re.MULTILINE), done.stdout
    out = runner.outputs_now()
    assert out["changed"] == "false" and out["report"] == ".go-arm-lambda/report.json"
    assert "dry-run='maybe'" in json.loads((runner.workspace / out["report"]).read_text())["errors"][0]
    assert runner.summary.read_text().count("dry-run='maybe'") == 1  # once, not once per layer of reporting
    assert runner.aws.proxy.requests == [] and _writes(github_double) == []


def _errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith("::error")]


def test_an_internal_error_is_reported_and_traced_under_runner_debug(runner: Runner,
                                                                    github_double: GitHubDouble) -> None:
    env = runner.env(_event(runner.tmp / "event.json"))
    done = runner.run(env, broken_build=True)
    assert done.returncode == 1
    message = ("internal error: RuntimeError: injected fault. run again with --debug (in Actions: re-run the job "
               "with debug logging) and report the traceback")
    assert _errors(done) == [f"::error title=internal error::{message}"]
    assert "Traceback" not in done.stderr
    out = runner.outputs_now()
    assert out["changed"] == "false" and out["report"] == ".go-arm-lambda/report.json"
    assert json.loads((runner.workspace / out["report"]).read_text())["errors"] == [message]
    assert message in runner.summary.read_text()
    assert "internal error" in github_double.comments(REPO, PR)[0]["body"]

    done = runner.run(env | {"RUNNER_DEBUG": "1"}, broken_build=True)
    assert done.returncode == 1 and len(_errors(done)) == 1
    assert "Traceback (most recent call last)" in done.stderr and "RuntimeError: injected fault" in done.stderr


def test_an_unusable_output_place_is_refused_before_the_build_and_still_reports(runner: Runner) -> None:
    # .go-arm-lambda is a file: neither the build output, nor the Go caches, nor the report can go there.
    (runner.workspace / ".go-arm-lambda").write_text("not a directory")
    env = runner.env(_event(runner.tmp / "event.json"), comment="never")
    env = {k: v for k, v in env.items() if k not in ("GOCACHE", "GOMODCACHE")}
    done = runner.run(env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert _errors(done) == ["::error title=invalid input::output directory .go-arm-lambda/dist cannot be created: "
                             ".go-arm-lambda is not a directory. point --out at a directory that can be created or "
                             "written"]
    assert "Traceback" not in done.stderr
    out = runner.outputs_now()
    assert out["report"] == "" and out["changed"] == "false"  # no report file to point at
    summary = runner.summary.read_text()
    assert ".go-arm-lambda is not a directory" in summary and "cannot write the report" in summary
    assert runner.aws.proxy.requests == []


def test_a_report_that_cannot_be_written_is_refused_up_front_and_leaves_outputs_and_summary(runner: Runner) -> None:
    (runner.workspace / ".go-arm-lambda" / "report.json").mkdir(parents=True)
    env = runner.env(_event(runner.tmp / "event.json"), functions="hello=./cmd/hello", regions="", smoke="false",
                     comment="never")
    done = runner.run(env)
    assert done.returncode == 2, done.stdout + done.stderr
    report_path = runner.workspace / ".go-arm-lambda" / "report.json"
    assert _errors(done) == [f"::error title=invalid input::the report file {report_path} is a directory. make the "
                             "workspace's .go-arm-lambda a writable directory, or remove what is there"]
    assert runner.outputs_now()["report"] == ""
    summary = runner.summary.read_text()
    assert "the report file" in summary and "cannot write the report" in summary  # why no build, and why no file
    assert not (runner.workspace / ".go-arm-lambda" / "dist").exists()  # nothing was built
