"""The GitHub workflows (CI and release) and the README's workflow examples, checked by actionlint (with
shellcheck on their scripts), and the release's rewrite of action.yml run for real."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, require_tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint() -> str:
    """The actionlint `make setup` builds into the venv, else one on PATH."""
    local = ROOT / ".venv" / "bin" / "actionlint"
    return str(local) if local.is_file() else require_tool("actionlint")


def lint(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([actionlint(), "-no-color", "-oneline", "-shellcheck", require_tool("shellcheck"),
                           *map(str, files)], capture_output=True, text=True, timeout=300, cwd=ROOT)


def readme_workflows(tmp_path: Path) -> list[Path]:
    """Every ```yaml block in the README that is a whole workflow, written out as a file actionlint can read."""
    blocks = re.findall(r"```ya?ml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    files = []
    for i, block in enumerate(b for b in blocks if re.search(r"^jobs:", b, re.MULTILINE)):
        path = tmp_path / f"readme-example-{i}.yml"
        path.write_text(block)
        files.append(path)
    return files


def test_actionlint_passes_every_workflow_and_readme_example(tmp_path: Path) -> None:
    examples = readme_workflows(tmp_path)
    assert examples, "the README has no workflow example"
    assert {w.name for w in WORKFLOWS} >= {"ci.yml", "release.yml"}
    done = lint(*WORKFLOWS, *examples)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    # The check above means something only if actionlint and shellcheck really look: an unknown runner label, an
    # expression on an undefined step and an unquoted variable in a script must each be reported.
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latst\n    steps:\n"
                      "      - run: echo ${{ steps.nothing.outputs.x }}\n      - run: cat $FILE\n")
    done = lint(broken)
    assert done.returncode == 1
    assert "ubuntu-latst" in done.stdout and '"nothing" is not defined' in done.stdout and "SC2086" in done.stdout


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def _load(path: Path) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True; keep the text's own keys.
    text = path.read_text().replace("\non:", "\n'on':")
    return dict(yaml.safe_load(text))


def test_third_party_actions_are_pinned_by_commit_with_the_version_named() -> None:
    for path in WORKFLOWS:
        lines = path.read_text().splitlines()
        for step in _steps(_load(path)):
            uses = step.get("uses")
            if uses is None or uses.startswith(("./", "docker://")):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), f"{path.name}: {uses} is not pinned"
            line = next(x for x in lines if f"uses: {uses}" in x)
            assert re.search(r"# v\d+(\.\d+)*$", line), f"{path.name}: say which version {uses} is"


def test_ci_runs_the_suite_on_both_architectures_and_the_image_tests() -> None:
    ci = _load(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci["jobs"]["test"]["strategy"]["matrix"]["runner"] == ["ubuntu-latest", "ubuntu-24.04-arm"]
    runs = [s.get("run", "") for s in _steps(ci)]
    assert "make test" in runs and any("make test-image" in r for r in runs)


def _release_step(name: str) -> dict[str, Any]:
    release = _load(ROOT / ".github" / "workflows" / "release.yml")
    return next(s for s in _steps(release) if s.get("name") == name)


def test_release_builds_both_platforms_and_pushes_by_tag() -> None:
    push = next(s for s in _steps(_load(ROOT / ".github" / "workflows" / "release.yml"))
                if s.get("uses", "").startswith("docker/build-push-action@"))
    assert push["with"]["platforms"] == "linux/amd64,linux/arm64" and push["with"]["push"] is True


@pytest.fixture
def rewrite(tmp_path: Path) -> Any:
    """Run the release's "point action.yml at the image" script, as the runner would, on a copy of action.yml."""
    step = _release_step("Point action.yml at the pushed image")
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    bash = require_tool("bash")

    def run(digest: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "IMAGE": "ghcr.io/acme/go-arm-lambda", "VERSION": "v1.2.3",
               "DIGEST": digest}
        return subprocess.run([bash, "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)

    return run


def test_release_points_action_yml_at_the_pushed_digest(rewrite: Any, tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    done = rewrite(digest)
    assert done.returncode == 0, done.stdout + done.stderr
    released = yaml.safe_load((tmp_path / "action.yml").read_text())
    original = yaml.safe_load((ROOT / "action.yml").read_text())
    assert released["runs"] == {**original["runs"],
                                "image": f"docker://ghcr.io/acme/go-arm-lambda:v1.2.3@{digest}"}
    assert {k: v for k, v in released.items() if k != "runs"} == {k: v for k, v in original.items() if k != "runs"}


def test_release_refuses_to_publish_without_a_digest(rewrite: Any, tmp_path: Path) -> None:
    done = rewrite("")
    assert done.returncode == 1 and "::error::no image digest" in done.stdout
    assert (tmp_path / "action.yml").read_text() == (ROOT / "action.yml").read_text()
