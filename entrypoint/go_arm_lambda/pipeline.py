"""The job, in order: build -> verify -> package -> smoke, then plan -> execute; and the report it leaves.

The CLI and the Action both run this; it raises UserError subclasses and leaves presentation to the CLI.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from go_arm_lambda import __version__, build, package, proc, progress, report, smoke, verify
from go_arm_lambda.config import Config, load_event
from go_arm_lambda.errors import SmokeError, UsageError, UserError, VerifyError, as_user_error


@dataclass
class FunctionArtifacts:
    built: build.BuiltFunction
    zip: package.Artifact
    verdict: verify.Verdict | None = None
    smoke: smoke.SmokeResult | None = None

    @property
    def verify_status(self) -> report.VerifyStatus:
        return "skipped" if self.verdict is None else self.verdict.status

    @property
    def smoke_status(self) -> report.SmokeStatus:
        if self.smoke is None:
            return "skipped"
        return "ok" if self.smoke.ok else "failed"


@dataclass
class BuildOutput:
    """What the build stages made so far; a failure part-way still leaves the finished part for the report."""

    functions: list[FunctionArtifacts] = field(default_factory=list)
    layer: package.Artifact | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "functions": [
                {"name": f.built.spec.name, "package": f.built.spec.package, "handler": f.built.handler,
                 "binary": str(f.built.binary), "zip": str(f.zip.path.resolve()), "sha256": f.zip.sha256,
                 "size": f.zip.size, "verify": f.verify_status, "smoke": f.smoke_status}
                for f in self.functions],
            "layer": None if self.layer is None else {"zip": str(self.layer.path.resolve()),
                                                       "sha256": self.layer.sha256},
        }


def verify_policy(cfg: Config) -> verify.Policy:
    return verify.Policy(runtime=cfg.runtime, allow_custom_runtime_client=cfg.allow_custom_runtime_client)


def build_and_package(cfg: Config, job: progress.Job | None = None,
                      output: BuildOutput | None = None) -> BuildOutput:
    """Build, verify, package and smoke-invoke every function; any failure stops the job before AWS is touched.

    Results land in `output` as each stage finishes, so a caller that catches a failure still has them.
    """
    output = BuildOutput() if output is None else output
    stage = (job or progress.Job()).stage
    with stage("build"):
        built = build.build(cfg, cfg.out / "bin")

    verdicts: dict[Path, verify.Verdict] = {}
    if cfg.verify:
        binaries = _by_binary(built)  # two functions may share one binary
        with stage("verify", total=len(binaries)):
            policy = verify_policy(cfg)
            for binary, names in binaries.items():
                with progress.task(names) as t:
                    verdicts[binary] = verify.verify_path(binary, policy)
                    t.detail = verdicts[binary].status
            check_verdicts(built, verdicts)

    with stage("package", total=len(built) + cfg.layer_mode):
        if cfg.layer_mode:
            with progress.task("(layer)") as t:
                output.layer = package.package_layer(cfg.out / "layer.zip")
                t.detail = report.size_text(output.layer.size)

        def pack(b: build.BuiltFunction) -> FunctionArtifacts:
            with progress.task(b.spec.short_name) as t:
                # Their own directory: a function named "layer" must not overwrite layer.zip.
                artifact = package.package_function(b.binary, b.handler,
                                                    cfg.out / "functions" / f"{b.spec.short_name}.zip")
                t.detail = report.size_text(artifact.size)
            # Over 50 MB is fine here: the planner sends such zips through S3, or refuses without a bucket.
            package.check_limits(artifact, output.layer, b.spec.short_name)
            return FunctionArtifacts(b, artifact, verdicts.get(b.binary))

        # zlib releases the GIL, so threads compress on every core.
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            output.functions = list(pool.map(pack, built))

    if cfg.smoke:
        with stage("smoke", total=len(output.functions)):
            run_smoke(cfg, output.functions, output.layer)
    return output


def _by_binary(built: list[build.BuiltFunction]) -> dict[Path, str]:
    """Each binary once, with the names of the functions made from it ("orders, orders-eu")."""
    names: dict[Path, list[str]] = {}
    for b in built:
        names.setdefault(b.binary, []).append(b.spec.short_name)
    return {binary: ", ".join(shared) for binary, shared in names.items()}


def check_verdicts(built: list[build.BuiltFunction], verdicts: dict[Path, verify.Verdict]) -> None:
    """One VerifyError for every binary with errors, each error also pinned to its function's `func main`."""
    errors = {b: [f for f in verdicts[b.binary].findings if f.severity == "error"] for b in built}
    failing = [b for b, found in errors.items() if found]
    if not failing:
        return
    locations = [b.main_location(f.message) for b in failing for f in errors[b]]
    count = len({b.binary for b in failing})
    first = errors[failing[0]][0].message
    raise VerifyError(f"{count} binar{'y' if count == 1 else 'ies'} failed verification; {first}",
                      "fix the findings above, or turn the checks off (--no-verify, or verify: false)",
                      details=verify.format_table(list(verdicts.values())), locations=locations)


def run_smoke(cfg: Config, functions: list[FunctionArtifacts], layer: package.Artifact | None) -> None:
    event = load_event(cfg.smoke_event)

    def one(f: FunctionArtifacts) -> smoke.SmokeResult:
        with progress.task(f.built.spec.short_name) as t:
            result = smoke.smoke(f.zip.path, f.built.handler, layer_zip=layer.path if layer else None, event=event,
                                 timeout=cfg.smoke_timeout, function_name=f.built.spec.short_name,
                                 runtime=cfg.runtime)
            t.detail = "ok" if result.ok else "failed: " + (result.error or "").split("\n", 1)[0]
        return result

    # Two at a time: each is one emulated process, and the machine is usually also building or deploying.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f, result in zip(functions, pool.map(one, functions), strict=True):
            f.smoke = result
    failed = [f for f in functions if f.smoke and not f.smoke.ok]
    if failed:
        f = failed[0]
        others = f" (and {', '.join(x.built.spec.short_name for x in failed[1:])})" if failed[1:] else ""
        raise SmokeError(f"smoke invocation of {f.built.spec.short_name}{others} failed: "
                         f"{f.smoke.error if f.smoke else ''}",
                         "run `go-arm-lambda smoke` on its zip to see it, fix the function, or turn smoke off "
                         "(--no-smoke, or smoke: false)",
                         details="\n".join(f"{x.built.spec.short_name}: {smoke.format_result(x.smoke)}"
                                           for x in failed if x.smoke))


@functools.cache
def git_commit(source: Path) -> str | None:
    """The commit being deployed: GITHUB_SHA under Actions, else the source checkout's HEAD, else unknown."""
    sha = os.environ.get("GITHUB_SHA")
    if sha:
        return sha
    try:
        done = proc.run(["git", "rev-parse", "HEAD"], cwd=source, timeout=10)
    except UserError:  # no git: the commit is only informative
        return None
    return done.stdout.strip() if done.ok else None


def _function_build(cfg: Config, f: FunctionArtifacts) -> report.FunctionBuild:
    return {"name": f.built.spec.short_name, "package": f.built.spec.package, "handler": f.built.handler,
            "zip_size": f.zip.size, "sha256": f.zip.sha256, "code_sha256": f.zip.code_sha256,
            "architecture": "arm64", "runtime": cfg.runtime, "verify": f.verify_status, "smoke": f.smoke_status}


def job_report(cfg: Config, output: BuildOutput | None, deployed: report.DeployReport | None,
               errors: Sequence[str] = (), job: progress.Job | None = None) -> report.JobReport:
    """The job report (report.JobReport): this job's stage results, handed to report.assemble as plain values."""
    header: report.JobHeader = {"tool_version": __version__, "dry_run": cfg.dry_run,
                                "commit": git_commit(cfg.source), "mode": cfg.mode, "runtime": cfg.runtime}
    return report.assemble(
        header, [_function_build(cfg, f) for f in output.functions] if output else [],
        layer_name=cfg.layer_name if cfg.layer_mode else None,
        layer_sha256=output.layer.sha256 if output and output.layer else None, deployed=deployed, errors=errors,
        timings=job.timings() if job else None)


@dataclass
class JobResult:
    report: report.JobReport
    ok: bool
    error: UserError | None = None  # what stopped the job, if something did
    # The exception of each step that failed while the job went on (a function's update): --debug shows them.
    step_errors: list[BaseException] = field(default_factory=list)

    @classmethod
    def of(cls, job: report.JobReport, error: UserError | None = None, **more: Any) -> JobResult:
        """`ok` is report.failed's verdict, so the exit code says what the summary and the comment say."""
        return cls(job, error is None and not report.failed(job), error, **more)


def run_job(cfg: Config, job: progress.Job | None = None, *, deploy: bool) -> JobResult:
    """The whole job. Never raises: whatever fails, the report says what was done and what stopped it."""
    job = job or progress.Job()
    output = BuildOutput()
    try:
        if deploy and not cfg.regions:  # before the build: nothing is worth building for a deploy that cannot start
            raise UsageError("no region to deploy to", "give --region (or the regions input), e.g. eu-west-1")
        build_and_package(cfg, job, output)
        if not deploy:
            return JobResult.of(job_report(cfg, output, None, job=job))
        return deploy_built(cfg, output, job)
    except UserError as err:
        return JobResult.of(job_report(cfg, output, None, errors=[str(err)], job=job), err)
    except Exception as exc:  # a bug, or the OS refusing: still report and comment; the cause keeps the traceback
        err = as_user_error(exc)
        return JobResult.of(job_report(cfg, output, None, errors=[str(err)], job=job), err)


def deploy_built(cfg: Config, output: BuildOutput, job: progress.Job | None = None) -> JobResult:
    """Plan against AWS, then execute (or only preview on --dry-run). Returns the job report and success."""
    # Imported here so that build, verify and package never load boto3, not even through this module.
    from go_arm_lambda import aws, execute, plan
    from go_arm_lambda.steps import DeployConfig, DeployRun

    job = job or progress.Job()
    stage = job.stage
    session = aws.make_session(cfg.endpoint_url)
    desired = plan.desired_state(DeployConfig.of(cfg),
                                 [(f.built.spec, f.built.handler, f.zip) for f in output.functions], output.layer,
                                 tool_version=__version__, commit=git_commit(cfg.source),
                                 run=DeployRun.from_env(os.environ))
    with stage("plan"):
        the_plan = plan.make_plan(desired, {r: aws.LambdaView(session, r) for r in desired.regions},
                                  concurrency=cfg.concurrency)
        planned = Counter(s.action for s in the_plan.steps())
        progress.note(f"{sum(planned.values())} steps in {len(desired.regions)} region(s): "
                      + (", ".join(f"{n} {action}" for action, n in planned.items()) or "nothing to do"))
    if cfg.dry_run:
        result = execute.preview(the_plan)
    else:
        with stage("deploy", total=len(the_plan.steps())):
            result = execute.execute(the_plan, {r: aws.LambdaWriter(session, r) for r in desired.regions},
                                     cfg.concurrency)
    return JobResult.of(job_report(cfg, output, result.to_report(), job=job), step_errors=result.exceptions)


def write_report(path: Path, job: report.JobReport) -> None:
    """Atomically: a reader (the next step, actions/upload-artifact) never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(job, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
