"""The Dockerfile and action.yml, checked against the repository and the code they must agree with.

These need no Docker engine: they catch drift between the files. `make test-image` (tests/image) builds the
image and runs it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from conftest import ROOT
from go_arm_lambda import config, render, toolchain
from go_arm_lambda.toolchain import MIN_GO

DOCKERFILE = ROOT / "Dockerfile"
ACTION = ROOT / "action.yml"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            result.append((keyword.upper(), args.strip()))
            pending = ""
    assert not pending, "a continuation line runs off the end of the Dockerfile"
    return result


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for an allowlist: the last pattern that matches the path or one of its
    parent directories wins; `!` re-includes; `**/NAME` matches NAME at any depth."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        glob = pattern.removeprefix("!").rstrip("/")
        if glob.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, glob[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase(c, glob) for c in candidates)
        if hit:
            verdict = not pattern.startswith("!")
    return verdict


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    copies = [shlex.split(args) for keyword, args in instructions() if keyword in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    stages = {args.split()[-1] for keyword, args in instructions() if keyword == "FROM" and " AS " in args}
    for args in copies:
        if args[0].startswith("--from="):  # from an earlier stage, not from the build context
            assert args[0].removeprefix("--from=") in stages, args
            continue
        for source in args[:-1]:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such path in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                   and "__pycache__" not in p.parts]
            assert files, f"COPY {source} copies nothing"
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                assert not _ignored(rel, patterns), f"{rel} is copied but .dockerignore leaves it out"
    assert _ignored(".venv/bin/python", patterns) and _ignored("tests/conftest.py", patterns)
    assert _ignored("entrypoint/go_arm_lambda/__pycache__/x.pyc", patterns)


def test_everything_the_wheel_needs_is_copied() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {s.rstrip("/") for k, a in instructions() if k == "COPY" for s in shlex.split(a)[:-1]}
    needed = {project["project"]["readme"], "pyproject.toml"}
    needed |= {p.split("/")[0] for p in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]}
    needed |= {p.split("/")[0] for p in project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]}
    assert needed <= copied


def _stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(FROM arguments, the instructions of that stage)."""
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            stages.append((args, []))
        elif stages:
            stages[-1][1].append((keyword, args))
    return stages


def test_bases_are_build_arguments_defaulting_to_pinned_official_images() -> None:
    # Look-alikes replace them where no registry is reachable (tests/image); everything after FROM is the same.
    args = dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "_IMAGE=" in a)
    assert set(args) == {"GO_IMAGE", "BASE_IMAGE"}
    name, _, tag = args["GO_IMAGE"].partition("@")[0].partition(":")
    assert name == "golang" and re.fullmatch(r"1\.\d+\.\d+-bookworm", tag), f"{args['GO_IMAGE']}: pin a Go release"
    assert tuple(int(x) for x in tag.split("-")[0].split("."))[:2] >= MIN_GO
    assert args["BASE_IMAGE"] == "debian:bookworm-slim"  # the Debian release the Go image is built on
    assert [f for f, _ in _stages()] == ["${GO_IMAGE} AS go", "${BASE_IMAGE} AS venv", "${BASE_IMAGE}"]


def test_the_image_takes_only_go_from_the_go_image_and_only_the_venv_from_its_stage() -> None:
    final = _stages()[-1][1]
    from_stages = sorted(a for k, a in final if k == "COPY" and a.startswith("--from="))
    assert from_stages == ["--from=go /usr/local/go /usr/local/go",
                           "--from=venv /opt/go-arm-lambda/venv /opt/go-arm-lambda/venv"]
    assert not [a for k, a in final if k == "COPY" and not a.startswith("--from=")]


def test_go_caches_default_to_tmp_and_stay_unset_for_the_action() -> None:
    env = " ".join(a for k, a in _stages()[-1][1] if k == "ENV")
    # Any user can write under /tmp (also on a read-only root with a tmpfs /tmp); GOCACHE and GOMODCACHE stay
    # unset, or the Action would take them for the user's choice and not put them in the workspace.
    assert "GOPATH=/tmp/go" in env and "XDG_CACHE_HOME=/tmp/.cache" in env
    assert "GOCACHE" not in env and "GOMODCACHE" not in env
    assert "/usr/local/go/bin" in env


def test_entrypoint_is_the_packages_console_script_in_exec_form() -> None:
    entry = [args for keyword, args in instructions() if keyword == "ENTRYPOINT"]
    assert len(entry) == 1
    argv = json.loads(entry[0])  # exec form: a JSON array, so signals reach the program, not a shell
    assert isinstance(argv, list) and len(argv) == 1
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    path = Path(argv[0])
    assert path.is_absolute() and path.name in scripts
    venvs = re.findall(r"python3 -m venv (\S+)", DOCKERFILE.read_text())
    assert venvs and path.parent == Path(venvs[0]) / "bin"


def _installed(stage: list[tuple[str, str]]) -> set[str]:
    runs = " ".join(a for k, a in stage if k == "RUN")
    found = re.search(r"apt-get install (.*?)(;|&&|$)", runs)
    assert found
    return {w for w in found.group(1).split() if not w.startswith("-")}


def test_no_user_no_workdir_and_the_right_system_packages() -> None:
    keywords = [k for k, _ in instructions()]
    assert "USER" not in keywords and "WORKDIR" not in keywords
    _, (_, venv), (_, final) = _stages()
    assert _installed(venv) == {"python3", "python3-venv"}
    assert _installed(final) == {"ca-certificates", "git", "python3", "$arch_packages"}
    runs = " ".join(a for k, a in final if k == "RUN")
    arch = dict(re.findall(r"(amd64|arm64)\) (.*?) ;;", runs))
    assert set(arch) == {"amd64", "arm64"}

    def assigned(text: str, name: str) -> str:
        m = re.search(rf'{name}="([^"]*)"', text)
        assert m, (name, text)
        return m.group(1)

    assert assigned(arch["amd64"], "arch_packages") == "qemu-user-static"
    assert assigned(arch["arm64"], "arch_packages") == ""  # arm64 binaries run natively there
    # The compiler cgo installs on first use is the one the toolchain names in its own error messages.
    assert assigned(arch["amd64"], "cgo_packages") == toolchain.cc_packages("x86_64")
    assert assigned(arch["arm64"], "cgo_packages") == toolchain.cc_packages("aarch64")
    assert f"> {toolchain.CC_ON_FIRST_USE}" in runs
    assert "! -name 'qemu-aarch64-static' -delete" in runs  # only the aarch64 emulator stays
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "pip uninstall -y -q pip setuptools" in " ".join(a for k, a in venv if k == "RUN")


def test_layers_are_ordered_for_caching() -> None:
    steps = instructions()
    order = [i for i, (k, a) in enumerate(steps) if k in ("COPY", "RUN")]
    copy_pyproject = next(i for i in order
                          if steps[i] == ("COPY", "pyproject.toml constraints.txt /opt/go-arm-lambda/src/"))
    install_deps = next(i for i in order if "-c /opt/go-arm-lambda/src/constraints.txt -r" in steps[i][1])
    copy_source = next(i for i in order if steps[i][0] == "COPY" and "entrypoint" in steps[i][1])
    assert copy_pyproject < install_deps < copy_source
    # the dependency layer is only as reproducible as the pins it installs
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", d) for d in deps), deps
    # and constraints.txt locks every transitive one
    locked = {line.split("==")[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines()
              if "==" in line}
    assert {"boto3", "botocore", "pygithub", "pyelftools", "urllib3", "requests"} <= locked


def test_the_dependency_step_reads_the_pins_from_pyproject(tmp_path: Path) -> None:
    # Run the Dockerfile's own snippet (with Debian's python3 as in the image) on this repository's pyproject.
    snippet = re.search(r"python3 -c '([^']+)'", DOCKERFILE.read_text())
    assert snippet
    code = snippet.group(1).replace("/opt/go-arm-lambda/src/pyproject.toml", str(ROOT / "pyproject.toml"))
    done = subprocess.run(["python3", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert done.stdout.split() == deps


# --- action.yml ----------------------------------------------------------------------------------------------

def _action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text())


def _field_for(input_name: str) -> str | None:
    return config.ACTION_INPUTS.get(input_name)


def test_action_is_a_docker_action_built_from_the_dockerfile() -> None:
    action = _action()
    assert action["runs"] == {"using": "docker", "image": "Dockerfile", "args": ["action"]}
    assert action["name"] and action["description"]
    assert set(action["branding"]) == {"icon", "color"}


def test_the_action_subcommand_exists_in_the_console_script() -> None:
    script = ROOT / ".venv" / "bin" / "go-arm-lambda"
    done = subprocess.run([str(script), "action", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_input_is_documented_and_maps_to_a_config_field() -> None:
    inputs = _action()["inputs"]
    required = {"working-directory", "functions", "config", "mode", "runtime", "regions", "layer-name",
                "layer-permissions", "build-tags", "ldflags", "cgo", "goarm64", "smoke", "smoke-event",
                "publish-version", "alias", "s3-bucket", "dry-run", "github-token", "comment", "comment-id",
                "pr-number"}
    assert required <= set(inputs)
    for name, spec in inputs.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name), f"{name}: inputs are kebab-case"
        assert len(str(spec.get("description", "")).strip()) > 15, f"input {name} is not documented"
        assert spec.get("required", False) is False, f"{name}: the config file may provide it"
        assert _field_for(name) is not None, f"input {name} has no field in config.FIELDS"
    # and the program reads no input that action.yml does not declare
    assert set(config.ACTION_INPUTS) == set(inputs)


def test_input_defaults_match_the_programs_own_defaults() -> None:
    # docker run never sees action.yml's defaults, so the two must say the same thing.
    for name, spec in _action()["inputs"].items():
        if "default" not in spec or name == "github-token":
            continue
        key = _field_for(name)
        assert key is not None
        value = config.FIELDS[key].convert(spec["default"], f"action.yml {name}")
        assert value == getattr(config.Config(), key), f"input {name}: default {spec['default']!r} drifted"
    assert _action()["inputs"]["github-token"]["default"] == "${{ github.token }}"
    assert _action()["inputs"]["smoke"]["default"] == "true"


def test_outputs_are_the_ones_report_produces() -> None:
    outputs = _action()["outputs"]
    sample = {"functions": [], "layer": None}
    assert set(outputs) == set(render.action_outputs(sample, "report.json"))
    assert all(len(str(o.get("description", ""))) > 15 for o in outputs.values())
