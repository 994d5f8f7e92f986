"""The job, in order: build -> verify -> package -> smoke, then plan -> execute; and the report it leaves.

The CLI and the Action both run this; it raises UserError subclasses and leaves presentation to the CLI.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from go_arm_lambda import __version__, build, cache, package, proc, progress, render, report, smoke, verify
from go_arm_lambda.config import Config, load_event, say
from go_arm_lambda.errors import SmokeError, UsageError, UserError, VerifyError, as_user_error

if TYPE_CHECKING:  # the deploy's modules load boto3, which the build never does
    from go_arm_lambda.aws import Aws
    from go_arm_lambda.steps import Plan


@dataclass
class FunctionArtifacts:
    built: build.BuiltFunction
    zip: package.Artifact
    verdict: verify.Verdict | None = None
    smoke: smoke.SmokeResult | None = None
    cached: set[str] = field(default_factory=set)  # the stages the content cache answered: verify, package, smoke

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
                 "size": f.zip.size, "verify": f.verify_status, "smoke": f.smoke_status,
                 "cached": sorted(f.cached)}
                for f in self.functions],
            "layer": None if self.layer is None else {"zip": str(self.layer.path.resolve()),
                                                       "sha256": self.layer.sha256},
        }


def verify_policy(cfg: Config) -> verify.Policy:
    return verify.Policy(runtime=cfg.runtime, allow_custom_runtime_client=cfg.allow_custom_runtime_client)


def build_and_package(cfg: Config, job: progress.Job | None = None,
                      output: BuildOutput | None = None) -> BuildOutput:
    """Build, verify, package and smoke-invoke every function; any failure stops the job before AWS is touched.

    With the cache on, a binary whose bytes were seen before gets its zip, verdict and smoke result from the
    cache (cache.py), and its line says "cached". Results land in `output` as each stage finishes, so a caller
    that catches a failure still has them.
    """
    output = BuildOutput() if output is None else output
    stage = (job or progress.Job()).stage
    store = cache.Cache(cfg.cache_dir, on_problem=progress.note) if cfg.cache else None
    try:
        with stage("build"):
            # Same-named packages (bootstrap mode) spill into bin-2, bin-3, ... (build._batches).
            kept = store.digests.before_build(cfg.out.glob("bin*")) if store else {}
            built = build.build(cfg, cfg.out / "bin")
            if store:
                store.digests.after_build(kept, cfg.out.glob("bin*"))

        verdicts: dict[Path, tuple[verify.Verdict, bool]] = {}
        if cfg.verify:
            binaries = _by_binary(built)  # two functions may share one binary
            with stage("verify", total=len(binaries)):
                policy = verify_policy(cfg)
                # Reading the ELF holds the GIL, but hashing a binary (when the cache must) does not.
                with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
                    verdicts = dict(zip(binaries, pool.map(lambda b: _verify(store, b, binaries[b], policy),
                                                           binaries), strict=True))
                check_verdicts(built, {b: v for b, (v, _) in verdicts.items()})

        with stage("package", total=len(built) + cfg.layer_mode):
            if cfg.layer_mode:
                with progress.task("(layer)") as t:
                    output.layer = package.package_layer(cfg.out / "layer.zip")
                    t.detail = render.size_text(output.layer.size)

            def pack(b: build.BuiltFunction) -> FunctionArtifacts:
                # Their own directory: a function named "layer" must not overwrite layer.zip.
                artifact, reused = _package(store, b, cfg.out / "functions" / f"{b.spec.short_name}.zip")
                # Over 50 MB is fine here: the planner sends such zips through S3, or refuses without a bucket.
                package.check_limits(artifact, output.layer, b.spec.short_name)
                verdict, verdict_reused = verdicts.get(b.binary, (None, False))
                return FunctionArtifacts(b, artifact, verdict, cached={name for name, yes in (
                    ("verify", verdict_reused), ("package", reused)) if yes})

            # zlib releases the GIL, so threads compress on every core.
            with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
                output.functions = list(pool.map(pack, built))

        if cfg.smoke:
            with stage("smoke", total=len(output.functions)):
                run_smoke(cfg, output.functions, output.layer, store)
    finally:
        if store is not None:
            store.close()
    return output


def _verify(store: cache.Cache | None, binary: Path, names: str,
            policy: verify.Policy) -> tuple[verify.Verdict, bool]:
    """The binary's verdict, and whether the cache had it (keyed by the bytes, the file name its messages
    quote, the policy, and how they name an input: a verdict cached by the CLI is not served to the Action)."""
    key = None
    if store is not None:
        try:
            digest = store.digests.of_file(binary)
        except OSError:  # verify_path says what is wrong with the path
            digest = None
        if digest is not None:
            key = cache.key("verify", digest, binary.name, sorted(dataclasses.asdict(policy).items()),
                            say("allow_custom_runtime_client", "true"))
            cached = store.get("verify", key, lambda record: verify.Verdict.from_record(record, binary))
            if cached is not None:
                progress.item(names, cached.status, cached=True)
                return cached, True
    with progress.task(names) as t:
        verdict = verify.verify_path(binary, policy)
        t.detail = verdict.status
    # Stored only when the file is still the one hashed (and was settled when hashed): it is this digest's verdict.
    if store is not None and key is not None and store.digests.known(binary) == digest:
        store.put("verify", key, verdict.to_record())
    return verdict, False


def _package(store: cache.Cache | None, b: build.BuiltFunction, dest: Path) -> tuple[package.Artifact, bool]:
    """The function's zip at `dest`, and whether it came from the cache (keyed by the binary's bytes, its
    handler and the zip writer's settings); a zip made here is stored there."""
    def key(digest: str) -> str:
        return cache.key("zip", digest, b.handler, package.ZIP_FORMAT)

    read = None
    if store is not None:
        known = store.digests.known(b.binary)
        hit = store.zip(key(known)) if known is not None else None
        if hit is None:
            # Zip exactly the bytes that were hashed, so that the entry stored holds what its key says.
            read = store.digests.read(b.binary)
            if read is not None and read[1] != known:
                hit = store.zip(key(read[1]))
        if hit is not None:
            store.place(hit, dest)
            progress.item(b.spec.short_name, render.size_text(hit.size), cached=True)
            return package.Artifact(dest, hit.sha256, hit.size, hit.unzipped_size), True
    with progress.task(b.spec.short_name) as t:
        artifact = package.package_function(b.binary, b.handler, dest, data=read[0] if read else None)
        t.detail = render.size_text(artifact.size)
    if store is not None and read is not None:
        store.put_zip(key(read[1]), artifact.path, artifact.sha256, artifact.size, artifact.unzipped_size)
    return artifact, False


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
                      f"fix the findings above, or turn the checks off ({say('verify', 'false')})",
                      details=verify.format_table(list(verdicts.values())), locations=locations)


def run_smoke(cfg: Config, functions: list[FunctionArtifacts], layer: package.Artifact | None,
              store: cache.Cache | None = None) -> None:
    event = load_event(cfg.smoke_event)
    event_digest = hashlib.sha256(event).hexdigest()

    def one(f: FunctionArtifacts) -> smoke.SmokeResult:
        name = f.built.spec.short_name
        key = None
        if store is not None:
            # Everything the invocation sees: the zip, the layer, the event, the runtime's environment (the
            # function's name is in it), and how long it may take.
            key = cache.key("smoke", f.zip.sha256, layer.sha256 if layer else None, event_digest, cfg.runtime,
                            cfg.smoke_timeout, name, f.built.handler)
            cached = store.get("smoke", key, smoke.SmokeResult.from_record)
            if cached is not None:
                progress.item(name, "ok", cached=True)
                f.cached.add("smoke")
                return cached
        with progress.task(name) as t:
            result = smoke.smoke(f.zip.path, f.built.handler, layer_zip=layer.path if layer else None, event=event,
                                 timeout=cfg.smoke_timeout, function_name=name, runtime=cfg.runtime,
                                 function_files={f.built.handler: f.built.binary})
            t.detail = "ok" if result.ok else "failed: " + (result.error or "").split("\n", 1)[0]
        # Only answers are kept: a failure (or a timeout on a busy machine) is worth running again next time.
        if key is not None and result.ok:
            store.put("smoke", key, result.to_record())
        return result

    # One more than the cores: an emulated start keeps a core busy most of the time but not all of it (process
    # start, the Runtime API round trips, the stop), and nothing else runs during this stage.
    with ThreadPoolExecutor(max_workers=max(1, min(cfg.concurrency, (os.cpu_count() or 1) + 1))) as pool:
        for f, result in zip(functions, pool.map(one, functions), strict=True):
            f.smoke = result
    failed = [f for f in functions if f.smoke and not f.smoke.ok]
    if failed:
        f = failed[0]
        others = f" (and {', '.join(x.built.spec.short_name for x in failed[1:])})" if failed[1:] else ""
        raise SmokeError(f"smoke invocation of {f.built.spec.short_name}{others} failed: "
                         f"{f.smoke.error if f.smoke else ''}",
                         "run `go-arm-lambda smoke` on its zip to see it, fix the function, or turn smoke off "
                         f"({say('smoke', 'false')})",
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
               errors: Sequence[str] = (), job: progress.Job | None = None, *, layer: bool = True) -> report.JobReport:
    """The job report (report.JobReport): this job's stage results, handed to report.assemble as plain values.
    `layer` False: promote and rollback, which have no layer to speak of."""
    header: report.JobHeader = {"tool_version": __version__, "dry_run": cfg.dry_run,
                                "commit": git_commit(cfg.source), "mode": cfg.mode, "runtime": cfg.runtime}
    return report.assemble(
        header, [_function_build(cfg, f) for f in output.functions] if output else [],
        layer_name=cfg.layer_name if cfg.layer_mode and layer else None,
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
            raise UsageError("no region to deploy to", f"give {say('regions', 'eu-west-1')}")
        build_and_package(cfg, job, output)
        if not deploy:
            return JobResult.of(job_report(cfg, output, None, job=job))
        return deploy_built(cfg, output, job)
    except Exception as exc:  # ours, a bug, or the OS refusing: still report and comment; the cause keeps the traceback
        err = as_user_error(exc)
        return JobResult.of(job_report(cfg, output, None, errors=[str(err)], job=job), err)


def deploy_built(cfg: Config, output: BuildOutput, job: progress.Job | None = None) -> JobResult:
    """Plan against AWS, then execute (or only preview on --dry-run). Returns the job report and success."""
    # Imported here so that build, verify and package never load boto3, not even through this module.
    from go_arm_lambda import aws, lambda_api, plan
    from go_arm_lambda.steps import DeployConfig, DeployRun

    job = job or progress.Job()
    stage = job.stage
    session = aws.make_session(cfg.endpoint_url, rates=aws.Rates(control_plane=cfg.rate_limit))
    desired = plan.desired_state(DeployConfig.of(cfg),
                                 [(f.built.spec, f.built.handler, f.zip) for f in output.functions], output.layer,
                                 tool_version=__version__, commit=git_commit(cfg.source),
                                 run=DeployRun.from_env(os.environ))
    with stage("plan"):
        the_plan = plan.make_plan(desired, {r: lambda_api.LambdaView(session, r) for r in desired.regions},
                                  concurrency=cfg.concurrency)
        planned = Counter(s.action for s in the_plan.steps())
        progress.note(f"{sum(planned.values())} steps in {len(desired.regions)} region(s): "
                      + (", ".join(f"{n} {action}" for action, n in planned.items()) or "nothing to do"))
    return _execute(cfg, the_plan, session, output, job)


def _execute(cfg: Config, the_plan: Plan, session: Aws, output: BuildOutput | None, job: progress.Job) -> JobResult:
    """Runs a plan (steps.Plan) with a writer per region, or previews it on --dry-run; the job's result."""
    from go_arm_lambda import execute, lambda_api

    if cfg.dry_run:
        result = execute.preview(the_plan)
    else:
        with job.stage("deploy", total=len(the_plan.steps())):
            result = execute.execute(the_plan, {r.region: lambda_api.LambdaWriter(session, r.region)
                                                for r in the_plan.regions}, cfg.concurrency)
    return JobResult.of(job_report(cfg, output, result.to_report(), job=job, layer=output is not None),
                        step_errors=result.exceptions)


def move_aliases(cfg: Config, command: str, job: progress.Job | None = None) -> JobResult:
    """`promote` (an alias to the version another alias has, with the deploy's check and traffic options) or
    `rollback` (an alias back where go-arm-lambda moved it from): no build, the same executor and report.
    Never raises, as run_job."""
    from go_arm_lambda import aws, lambda_api, rollout
    from go_arm_lambda.steps import DeployConfig

    job = job or progress.Job()
    try:
        if not cfg.regions or not cfg.functions:
            raise UsageError(f"{command} needs the functions and the regions",
                             f"give {say('functions', 'shop=./cmd/shop')} and {say('regions', 'eu-west-1')}")
        session = aws.make_session(cfg.endpoint_url, rates=aws.Rates(control_plane=cfg.rate_limit))
        views = {r: lambda_api.LambdaView(session, r) for r in cfg.regions}
        with job.stage("plan"):
            if command == "promote":
                assert cfg.promote_from is not None, "config.load requires it for promote"
                the_plan = rollout.plan_promote(DeployConfig.of(cfg), cfg.functions, views,
                                                from_alias=cfg.promote_from, concurrency=cfg.concurrency)
            else:
                assert cfg.alias is not None, "config.load requires it for rollback"
                the_plan = rollout.plan_rollback(cfg.functions, views, alias=cfg.alias, concurrency=cfg.concurrency)
        return _execute(cfg, the_plan, session, None, job)
    except Exception as exc:  # as run_job: the report says what stopped it
        err = as_user_error(exc)
        return JobResult.of(job_report(cfg, None, None, errors=[str(err)], job=job, layer=False), err)


def write_report(path: Path, job: report.JobReport) -> None:
    """Atomically: a reader (the next step, actions/upload-artifact) never sees half a report."""
    cache.atomic_write(path, (json.dumps(job, indent=2) + "\n").encode())
