"""The image as users meet it: started the way the Actions runner starts a container action, and with the
README's `docker run` commands. Built from the repository's Dockerfile, on look-alike bases where no registry
can be reached (see lookalikes.py)."""

from __future__ import annotations

import grp
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from awsfakes import FakeAws
from conftest import ROOT
from githubdouble import GitHubDouble
from image.conftest import RUNNER_UID, checkout, keep_cache, owners
from image.dockerhost import ActionRun, docker
from test_action import PR, REGION, REPO, TOKEN

pytestmark = pytest.mark.image

FUNCTIONS = "hello=./cmd/hello\norders-api=./cmd/orders\n"
AWS_STEP_ENV = {  # what aws-actions/configure-aws-credentials exports to the steps after it
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
}


def pull_request_event() -> dict[str, Any]:
    return {"action": "synchronize", "number": PR,
            "pull_request": {"number": PR, "head": {"sha": "f" * 40, "repo": {"full_name": REPO}},
                             "base": {"ref": "main", "repo": {"full_name": REPO}}},
            "repository": {"full_name": REPO}}


def step(tmp_path: Path, workspace: Path, gh: GitHubDouble) -> ActionRun:
    gh.add_pull_request(REPO, PR)
    gh.state.tokens[TOKEN] = "write"
    return ActionRun(tmp_path / "_temp", workspace, pull_request_event(), repository=REPO, api_url=gh.base_url)


def assert_nothing_root_owned(workspace: Path) -> None:
    """What the root container wrote is handed back to the runner's user: its next checkout can clean it."""
    found = owners(workspace)
    assert set(found) == {RUNNER_UID}, {uid: paths[:5] for uid, paths in found.items() if uid != RUNNER_UID}


def test_pull_request_check_builds_and_smokes_examples_without_aws(
        image: str, tmp_path: Path, github_double: GitHubDouble, warm_cache: Path) -> None:
    workspace = checkout(tmp_path)
    run = step(tmp_path, workspace, github_double)
    done = run.run(image, {"functions": FUNCTIONS, "github-token": TOKEN})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "::group::build" in done.stdout and "dubious ownership" not in done.stdout + done.stderr
    out = run.outputs()
    assert out["changed"] == "false" and out["report"] == ".go-arm-lambda/report.json"
    report = json.loads((workspace / out["report"]).read_text())
    assert {f["name"]: (f["verify"], f["smoke"]) for f in report["functions"]} == {
        "hello": ("ok", "ok"), "orders-api": ("ok", "ok")}
    assert "orders-api" in run.summary_file.read_text()
    # Go's caches live in the workspace, where actions/cache can keep them, and the runner's user can delete them.
    cache = workspace / ".go-arm-lambda" / "cache"
    assert (cache / "go-build").is_dir() and any((cache / "mod").rglob("go.mod"))
    assert_nothing_root_owned(workspace)
    assert all(p.stat().st_mode & 0o200 for p in (cache / "mod").rglob("*") if p.is_dir())
    comments = github_double.comments(REPO, PR)
    assert len(comments) == 1 and "orders-api" in comments[0]["body"]
    keep_cache(workspace, warm_cache)


def test_deploy_against_moto_keeps_one_sticky_comment(
        image: str, tmp_path: Path, aws: FakeAws, github_double: GitHubDouble, warm_cache: Path) -> None:
    for name in ("hello", "orders-api"):  # already arm64 (moto ignores a change of it), on provided.al2
        aws.create_function(name, runtime="provided.al2", handler="bootstrap", architecture="arm64")
    workspace = checkout(tmp_path, cache=warm_cache)
    run = step(tmp_path, workspace, github_double)
    inputs = {"functions": FUNCTIONS, "regions": REGION, "endpoint-url": aws.url, "publish-version": "true",
              "alias": "live", "github-token": TOKEN}
    first = run.run(image, inputs, AWS_STEP_ENV)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines()[0] == f"::add-mask::{TOKEN}"
    out = run.outputs()
    assert out["changed"] == "true"
    assert re.fullmatch(rf"arn:aws:lambda:{REGION}:\d{{12}}:layer:go-arm-lambda-bootstrap:1", out["layer-arn"])
    assert json.loads(out["function-versions"]) == {REGION: {"hello": "1", "orders-api": "1"}}
    live = aws.function("orders-api")
    assert (live["Runtime"], live["Handler"], live["Layers"][0]["Arn"]) == ("provided.al2023", "orders",
                                                                          out["layer-arn"])
    arns = json.loads(out["function-arns"])[REGION]
    comments = github_double.comments(REPO, PR)
    assert len(comments) == 1 and arns["hello"] in comments[0]["body"]
    assert "provided.al2 -> provided.al2023" in comments[0]["body"]

    second = run.run(image, inputs, AWS_STEP_ENV)
    assert second.returncode == 0, second.stdout + second.stderr
    assert run.outputs()["changed"] == "false"
    assert len(github_double.comments(REPO, PR)) == 1  # edited in place
    assert [r.method for r in github_double.writes()] == ["POST", "PATCH"]
    assert_nothing_root_owned(workspace)


def test_bad_input_exits_2_with_an_error_summary_and_outputs(
        image: str, tmp_path: Path, github_double: GitHubDouble) -> None:
    workspace = checkout(tmp_path)
    run = step(tmp_path, workspace, github_double)
    done = run.run(image, {"functions": FUNCTIONS, "dry-run": "maybe", "comment": "never"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(r"^::error title=invalid input::input dry-run='maybe' is not a boolean\. use true or false$",
                     done.stdout, re.MULTILINE), done.stdout
    assert "Traceback" not in done.stderr
    out = run.outputs()
    assert out["changed"] == "false" and out["report"] == ".go-arm-lambda/report.json"
    assert "dry-run='maybe'" in run.summary_file.read_text()
    assert_nothing_root_owned(workspace)


# --- the README's docker run commands ----------------------------------------------------------------------------

def readme_commands() -> list[str]:
    """The `docker run` commands in the README's "With docker run" section, continuation lines joined."""
    section = (ROOT / "README.md").read_text().split("## With docker run", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    return [" ".join(line.split()) for line in lines if line.strip().startswith("docker run")]


def as_user(command: str, image: str, cwd: Path, env: dict[str, str], uid: int,
            extra: str = "") -> subprocess.CompletedProcess[str]:
    """Run a README command as a non-root user in the docker group, as a developer would type it, with the
    image under test and the two flags this machine's engine needs (host network; a local AWS endpoint)."""
    assert command.startswith("docker run ") and " go-arm-lambda " in command, command
    command = command.replace("docker run ", f"docker run --network host -e AWS_ENDPOINT_URL {extra} ", 1)
    command = command.replace(" go-arm-lambda ", f" {image} ", 1)
    docker_gid = grp.getgrnam("docker").gr_gid
    argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={docker_gid}", "bash", "-c", command]
    return subprocess.run(argv, cwd=cwd, env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), **env},
                          capture_output=True, text=True, timeout=900)


def test_readme_docker_run_as_the_calling_user(image: str, tmp_path: Path, aws: FakeAws) -> None:
    aws.create_function("orders-api")
    uid = 1234
    workspace = checkout(tmp_path, uid=uid)
    deploy = next(c for c in readme_commands() if " deploy " in c)
    assert '-u "$(id -u):$(id -g)"' in deploy
    env = {**AWS_STEP_ENV, "AWS_ENDPOINT_URL": aws.url}
    done = as_user(deploy, image, workspace, env, uid)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "orders-api" in done.stdout and "provided.al2023" in done.stdout  # the plan
    assert aws.proxy.mutating() == []  # a dry run
    assert set(owners(workspace)) == {uid}


def test_readme_cache_form_runs_on_a_read_only_root(image: str, tmp_path: Path, warm_cache: Path) -> None:
    uid = 1234
    workspace = checkout(tmp_path, cache=warm_cache, uid=uid)
    kept = next(c for c in readme_commands() if "GOCACHE=" in c)
    # Nothing outside the workspace and /tmp is written: the image needs no writable root.
    done = as_user(kept, image, workspace, {}, uid, extra="--read-only --tmpfs /tmp:rw,exec")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke ok" in done.stdout
    assert set(owners(workspace)) == {uid}
    assert (workspace / ".go-arm-lambda" / "dist" / "functions" / "orders-api.zip").is_file()


# --- doctor and cgo ------------------------------------------------------------------------------------------------

def doctor(image: str, *flags: str) -> dict[str, Any]:
    done = docker("run", "--rm", "--network", "host", *flags, image, "doctor", "--json", check=False)
    assert done.returncode in (0, 1), done.stderr
    return dict(json.loads(done.stdout))


def test_doctor_passes_as_root_and_as_any_user(image: str) -> None:
    for flags in ((), ("-u", "4321:4321"), ("-u", "4321:4321", "--read-only", "--tmpfs", "/tmp:rw,exec")):
        result = doctor(image, *flags)
        checks = {c["name"]: c for c in result["checks"]}
        assert result["ok"], (flags, checks)
        assert [c for c in checks if checks[c]["status"] != "ok"] == ["cross-cc"], checks
        assert "the first --cgo build in this container installs it" in checks["cross-cc"]["detail"]
        assert checks["GOCACHE"]["detail"] == "/tmp/.cache/go-build is writable"
        assert "go1.26" in checks["go"]["detail"] and "qemu-aarch64" in checks["qemu-aarch64"]["detail"]


def test_cgo_installs_the_cross_compiler_on_first_use(image: str, tmp_path: Path, warm_cache: Path) -> None:
    workspace = checkout(tmp_path, cache=warm_cache)
    volume = ["-v", f"{workspace}:/work", "-w", "/work", "-e", "GOCACHE=/work/.go-arm-lambda/cache/go-build",
              "-e", "GOMODCACHE=/work/.go-arm-lambda/cache/mod"]
    build = ["build", "--cgo", "--function", "orders-api=./cmd/orders"]
    refused = docker("run", "--rm", "--network", "host", "-u", f"{RUNNER_UID}:{RUNNER_UID}", *volume, image,
                     *build, check=False)
    assert refused.returncode == 1
    assert "only root can install it" in refused.stderr and "run the container as root" in refused.stderr
    start = time.monotonic()
    done = docker("run", "--rm", "--network", "host", *volume, image, *build, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = re.search(r"aarch64-linux-gnu-gcc installed in (\d+) s", done.stderr)
    assert installed, done.stderr
    assert "smoke ok" in done.stdout and "verify ok" in done.stdout
    print(f"cgo on first use: cross compiler installed in {installed.group(1)} s, whole run "
          f"{time.monotonic() - start:.0f} s")


# --- arm64 ------------------------------------------------------------------------------------------------------

def test_arm64_image_runs_doctor_and_a_smoke_natively(image: str, image_arm64: str, tmp_path: Path,
                                                      warm_cache: Path) -> None:
    """Built and run under emulation here, as it runs natively on an arm64 runner: no qemu inside, and the
    native gcc for cgo on first use."""
    arch = docker("image", "inspect", "--format", "{{.Architecture}}", image_arm64).stdout.strip()
    assert arch == "arm64"
    result = doctor(image_arm64)
    checks = {c["name"]: c for c in result["checks"]}
    assert result["ok"], checks
    assert [c for c in checks if checks[c]["status"] != "ok"] == ["cross-cc"], checks
    assert "not needed" in checks["qemu-aarch64"]["detail"]
    assert "installs it (gcc libc6-dev" in checks["cross-cc"]["detail"]

    # Package on amd64 (fast), run on arm64: the binary runs as Lambda runs it, without qemu.
    workspace = checkout(tmp_path, cache=warm_cache)
    volume = ["-v", f"{workspace}:/work", "-w", "/work"]
    built = docker("run", "--rm", "--network", "host", *volume, "-e", "GOCACHE=/work/.go-arm-lambda/cache/go-build",
                   "-e", "GOMODCACHE=/work/.go-arm-lambda/cache/mod", image, "build", "--no-smoke",
                   "--function", "orders-api=./cmd/orders")
    assert "orders-api" in built.stdout
    assert docker("run", "--rm", "--entrypoint", "uname", image_arm64, "-m").stdout.strip() == "aarch64"
    assert "qemu" not in docker("run", "--rm", "--entrypoint", "sh", image_arm64, "-c",
                                "ls /usr/bin | grep qemu || true").stdout
    dist = ".go-arm-lambda/dist"
    # The real smoke runner, in the arm64 image: qemu-user before 8 refuses prctl(PR_SET_CHILD_SUBREAPER), and the
    # runner's reaper goes on without it there (proc._reaper), so this runs under emulation too.
    smoke = docker("run", "--rm", "--network", "host", *volume, image_arm64, "smoke", "--json",
                   "--zip", f"{dist}/functions/orders-api.zip", "--layer", f"{dist}/layer.zip",
                   "--handler", "orders", "--event", '{"items": [{"sku": "a", "quantity": 2}]}', check=False)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    result = json.loads(smoke.stdout)
    assert result["ok"] is True and result["response"]["items"] == 2, result
