"""A Docker engine, the image built from the Dockerfile, and `docker run` as the Actions runner does it.

Shared by tests/image and bench/image.py. The engine is the one already running, or containerd and dockerd
started here (as root) and stopped again by PID. Where no registry is reachable, the Dockerfile's bases are
look-alikes made by lookalikes.py and passed as build arguments; everything after FROM is the Dockerfile as
users get it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOKALIKES = Path(__file__).with_name("lookalikes.py")
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
# The engine on this kind of machine has no bridge and no iptables: builds and containers share the host's
# network, which is also how a container reaches moto and the GitHub double on 127.0.0.1.
NETWORK = ["--network", "host"]


class DockerError(RuntimeError):
    pass


def docker_cli() -> str:
    path = shutil.which("docker")
    if path is None:
        raise DockerError("the docker CLI is not installed; `make test-image` installs docker.io")
    return path


def build_cli() -> str:
    """A docker CLI that builds with BuildKit, as the runner and docker/build-push-action do. The legacy builder
    cannot build for another platform (it records the engine's architecture in each step's image). A CLI with
    the buildx plugin can; so can the CLI of Debian's docker.io (20.10), which has BuildKit built in."""
    for cli in dict.fromkeys([docker_cli(), "/usr/bin/docker"]):
        if not Path(cli).is_file():
            continue
        if subprocess.run([cli, "buildx", "version"], capture_output=True, timeout=60).returncode == 0:
            return cli
        version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return cli
    raise DockerError("no docker CLI here builds with BuildKit: install the buildx plugin, or Debian's docker.io")


def docker(*args: str, timeout: float = 900, check: bool = True, env: Mapping[str, str] | None = None,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """The docker CLI; `docker build` through BuildKit."""
    cli, run_env = docker_cli(), {**os.environ, **(env or {})}
    if args[:1] == ("build",):
        cli, run_env["DOCKER_BUILDKIT"] = build_cli(), "1"
        args = ("build", "--progress", "plain", *args[1:])
    done = subprocess.run([cli, *args], capture_output=True, text=True, timeout=timeout, env=run_env,
                          input=input)
    if check and done.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:3])} exited {done.returncode}:\n{done.stdout[-3000:]}"
                          f"\n{done.stderr[-3000:]}")
    return done


def engine_answers() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@dataclass
class Engine:
    """Use the running engine, or start containerd and dockerd; `stop()` ends only what `start()` started."""

    logdir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        if engine_answers():
            return
        if os.geteuid() != 0:
            raise DockerError("no Docker engine is running and only root can start one here")
        for tool in ("containerd", "dockerd"):
            if shutil.which(tool) is None:
                raise DockerError(f"{tool} is not installed; `make test-image` installs docker.io as root")
        self.logdir.mkdir(parents=True, exist_ok=True)
        if not self._containerd_answers():
            self._spawn(["containerd"], "containerd.log")
            self._wait(self._containerd_answers, "containerd")
        self._spawn(["dockerd", "--iptables=false", "--bridge=none", "--storage-driver=overlay2",
                     f"--containerd={CONTAINERD_SOCKET}"], "dockerd.log")
        self._wait(engine_answers, "dockerd")

    def stop(self) -> None:
        # dockerd first: it stops its containers and lets go of containerd.
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.started.clear()

    def _spawn(self, argv: list[str], log: str) -> None:
        with open(self.logdir / log, "ab") as out:
            self.started.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, start_new_session=True))

    def _containerd_answers(self) -> bool:
        ctr = shutil.which("ctr")
        if ctr is None or not Path(CONTAINERD_SOCKET).exists():
            return False
        return subprocess.run([ctr, "--address", CONTAINERD_SOCKET, "version"], capture_output=True,
                              timeout=20).returncode == 0

    def _wait(self, ready: object, name: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self.started):
                break
            time.sleep(0.5)
        self.stop()
        log = (self.logdir / f"{name}.log").read_text(errors="replace")[-3000:]
        raise DockerError(f"{name} did not come up; its log ends:\n{log}")


# --- binfmt: running arm64 containers on an x86_64 engine ----------------------------------------------------

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


@dataclass
class Binfmt:
    """qemu-aarch64 registered with the kernel's F flag (the interpreter opened now, so it works inside
    containers too); `remove()` undoes only what `register()` did."""

    mounted: bool = False
    registered: bool = False

    def register(self) -> None:
        if not (BINFMT / "register").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True,
                           capture_output=True)
            self.mounted = True
        entry = BINFMT / "qemu-aarch64"
        if entry.exists() and "enabled" in entry.read_text() and "flags: " in entry.read_text() \
                and "F" in entry.read_text().split("flags: ")[1].split("\n")[0]:
            return
        if not QEMU_BINFMT_CONF.exists():
            raise DockerError(f"{QEMU_BINFMT_CONF} is missing; install qemu-user-static")
        if entry.exists():  # registered without F: it would not work inside a container's root
            entry.write_text("-1")
        line = QEMU_BINFMT_CONF.read_text().strip()
        if not line.split(":")[-1].count("F"):
            line += "F"
        (BINFMT / "register").write_text(line)
        self.registered = True

    def remove(self) -> None:
        if self.registered and (BINFMT / "qemu-aarch64").exists():
            (BINFMT / "qemu-aarch64").write_text("-1")
        if self.mounted:
            subprocess.run(["umount", str(BINFMT)], check=False, capture_output=True)
        self.registered = self.mounted = False


# --- the image -----------------------------------------------------------------------------------------------

def dockerfile_bases() -> dict[str, str]:
    """The Dockerfile's base-image arguments and their defaults (the official images)."""
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", text, re.MULTILINE))


def base_args(arch: str) -> dict[str, str]:
    """Build arguments for the bases: none when this engine can pull the official ones, else look-alikes made
    (or found cached) by lookalikes.py."""
    pulled = [docker("pull", "--platform", f"linux/{arch}", ref, check=False, timeout=900).returncode == 0
              for ref in dockerfile_bases().values()]
    if all(pulled):
        return {}
    done = subprocess.run([sys.executable, str(LOOKALIKES), "--arch", arch], capture_output=True, text=True,
                          timeout=1800)
    if done.returncode != 0:
        raise DockerError(f"lookalikes.py --arch {arch} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def build_image(tag: str, build_args: Mapping[str, str], *, arch: str = "amd64", no_cache: bool = False,
                context: Path = ROOT) -> float:
    """`docker build` of the Dockerfile in `context` (the repository); returns the seconds it took."""
    argv = ["build", *NETWORK, "--platform", f"linux/{arch}", "-t", tag, "-f", str(context / "Dockerfile")]
    argv += [a for k, v in sorted(build_args.items()) for a in ("--build-arg", f"{k}={v}")]
    if no_cache:
        argv.append("--no-cache")
    start = time.perf_counter()
    docker(*argv, str(context), timeout=3600)
    return time.perf_counter() - start


def image_size(tag: str) -> int:
    """Bytes unpacked: the sum of the image's layers as the engine stores them."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def compressed_size(tag: str) -> int:
    """Bytes to pull: each layer gzipped as a registry would store it (from `docker save`)."""

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "image.tar"
        docker("save", "-o", str(archive), tag)
        total = 0
        with tarfile.open(archive) as tar:
            for member in tar:
                if not (member.isfile() and (member.name.endswith("layer.tar")
                                             or member.name.startswith("blobs/"))):
                    continue
                data = tar.extractfile(member)
                assert data is not None
                compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing, as registries store layers
                while chunk := data.read(1 << 20):
                    total += len(compressor.compress(chunk))
                total += len(compressor.flush())
        return total


# --- docker run, the way the Actions runner starts a container action -----------------------------------------

@dataclass
class ActionRun:
    """One step of a job: the runner's temp directories on the host and the container's view of them."""

    runner_temp: Path
    workspace: Path
    event: dict[str, object]
    event_name: str = "pull_request"
    repository: str = "acme/shop"
    api_url: str = "https://api.github.com"

    def __post_init__(self) -> None:
        for sub in ("_github_home", "_github_workflow", "_runner_file_commands"):
            (self.runner_temp / sub).mkdir(parents=True, exist_ok=True)
        (self.runner_temp / "_github_workflow" / "event.json").write_text(json.dumps(self.event))
        self.output_file = self.runner_temp / "_runner_file_commands" / "set_output_step1"
        self.summary_file = self.runner_temp / "_runner_file_commands" / "step_summary_step1"

    def environment(self) -> dict[str, str]:
        """What the runner passes with -e to every container action, with the values a pull request job has."""
        fc = "/github/file_commands"
        return {
            "HOME": "/github/home", "GITHUB_JOB": "lambda", "GITHUB_REF": "refs/pull/7/merge",
            "GITHUB_SHA": "f" * 40, "GITHUB_REPOSITORY": self.repository,
            "GITHUB_REPOSITORY_OWNER": self.repository.split("/")[0], "GITHUB_RUN_ID": "42",
            "GITHUB_RUN_NUMBER": "3", "GITHUB_RETENTION_DAYS": "90", "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_ACTOR": "octocat", "GITHUB_WORKFLOW": "deploy", "GITHUB_HEAD_REF": "feature",
            "GITHUB_BASE_REF": "main", "GITHUB_EVENT_NAME": self.event_name,
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_API_URL": self.api_url,
            "GITHUB_GRAPHQL_URL": "https://api.github.com/graphql", "GITHUB_REF_NAME": "7/merge",
            "GITHUB_REF_PROTECTED": "false", "GITHUB_REF_TYPE": "branch", "GITHUB_WORKSPACE": "/github/workspace",
            "GITHUB_ACTION": "lambda", "GITHUB_EVENT_PATH": "/github/workflow/event.json",
            "GITHUB_ACTION_REPOSITORY": "", "GITHUB_ACTION_REF": "", "GITHUB_PATH": f"{fc}/add_path_step1",
            "GITHUB_ENV": f"{fc}/set_env_step1", "GITHUB_STEP_SUMMARY": f"{fc}/step_summary_step1",
            "GITHUB_STATE": f"{fc}/save_state_step1", "GITHUB_OUTPUT": f"{fc}/set_output_step1",
            "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_NAME": "GitHub Actions 2",
            "RUNNER_ENVIRONMENT": "github-hosted", "RUNNER_TOOL_CACHE": "/opt/hostedtoolcache",
            "RUNNER_TEMP": "/home/runner/work/_temp", "RUNNER_WORKSPACE": "/home/runner/work/shop",
            "ACTIONS_RUNTIME_URL": "", "ACTIONS_RUNTIME_TOKEN": "", "ACTIONS_CACHE_URL": "",
            "GITHUB_ACTIONS": "true", "CI": "true",
        }

    def argv(self, image: str, inputs: Mapping[str, str], step_env: Mapping[str, str] | None = None,
             args: Sequence[str] = ("action",)) -> tuple[list[str], dict[str, str]]:
        """`docker run` as the runner builds it, and the environment whose values its bare `-e NAME` pass.

        Inputs are `INPUT_<NAME>` with the name upper-cased and hyphens kept, as the runner sends them.
        """
        given = {f"INPUT_{k.upper()}": v for k, v in inputs.items()}
        values = given | self.environment() | dict(step_env or {})
        names = list(values)
        argv = ["run", "--name", f"go-arm-lambda-step-{os.getpid()}-{time.monotonic_ns()}",
                "--label", "go-arm-lambda-test", "--workdir", "/github/workspace", "--rm", *NETWORK]
        for name in names:
            argv += ["-e", name]
        argv += ["-v", "/var/run/docker.sock:/var/run/docker.sock",
                 "-v", f"{self.runner_temp / '_github_home'}:/github/home",
                 "-v", f"{self.runner_temp / '_github_workflow'}:/github/workflow",
                 "-v", f"{self.runner_temp / '_runner_file_commands'}:/github/file_commands",
                 "-v", f"{self.workspace}:/github/workspace", image, *args]
        return argv, {n: values.get(n, "") for n in names}

    def run(self, image: str, inputs: Mapping[str, str], step_env: Mapping[str, str] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
        for f in (self.output_file, self.summary_file):  # the runner gives every step fresh files
            f.write_text("")
        argv, env = self.argv(image, inputs, step_env)
        return docker(*argv, env=env, check=False, timeout=timeout)

    def outputs(self) -> dict[str, str]:
        from test_action import _parse_outputs  # the file-command parser the Action's own tests use

        return _parse_outputs(self.output_file.read_text())
