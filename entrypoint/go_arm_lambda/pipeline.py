"""The job, in order: build -> verify -> package -> smoke, then plan -> execute; and the report it leaves.

The CLI and the Action both run this; it raises UserError subclasses and leaves presentation to the CLI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from go_arm_lambda import __version__, build, package, smoke, verify
from go_arm_lambda.config import Config
from go_arm_lambda.errors import SmokeError, VerifyError

Stage = Callable[[str], AbstractContextManager[object]]


def no_stage(_name: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass
class FunctionArtifacts:
    built: build.BuiltFunction
    zip: package.Artifact
    verdict: verify.Verdict | None = None
    smoke: smoke.SmokeResult | None = None

    @property
    def verify_status(self) -> str:
        if self.verdict is None:
            return "skipped"
        if not self.verdict.ok:
            return "failed"
        return "warnings" if self.verdict.findings else "ok"

    @property
    def smoke_status(self) -> str:
        if self.smoke is None:
            return "skipped"
        return "ok" if self.smoke.ok else "failed"


@dataclass
class BuildOutput:
    functions: list[FunctionArtifacts]
    layer: package.Artifact | None

    def to_json(self) -> dict[str, Any]:
        return {
            "functions": [
                {"name": f.built.spec.name, "package": f.built.spec.package, "handler": f.built.handler,
                 "binary": str(f.built.binary), "zip": str(f.zip.path), "sha256": f.zip.sha256,
                 "size": f.zip.size, "verify": f.verify_status, "smoke": f.smoke_status}
                for f in self.functions],
            "layer": None if self.layer is None else {"zip": str(self.layer.path), "sha256": self.layer.sha256},
        }


def verify_policy(cfg: Config) -> verify.Policy:
    return verify.Policy(runtime=cfg.runtime, allow_custom_runtime_client=cfg.allow_custom_runtime_client)


def build_and_package(cfg: Config, stage: Stage = no_stage) -> BuildOutput:
    """Build, verify, package and smoke-invoke every function; any failure stops the job before AWS is touched."""
    with stage("build"):
        built = build.build(cfg, cfg.out / "bin")

    verdicts: dict[Path, verify.Verdict] = {}
    if cfg.verify:
        with stage("verify"):
            policy = verify_policy(cfg)
            for b in built:
                verdicts.setdefault(b.binary, verify.verify_path(b.binary, policy))
            bad = [v for v in verdicts.values() if not v.ok]
            if bad:
                first = next(f for f in bad[0].findings if f.severity == "error")
                raise VerifyError(f"{len(bad)} binary(ies) failed verification; {bad[0].report.path.name}: "
                                  f"{first.message}", "fix the findings above, or pass --no-verify to skip the checks",
                                  details=verify.format_table(list(verdicts.values())))

    with stage("package"):
        layer = package.package_layer(cfg.out / "layer.zip") if cfg.layer_mode else None
        functions = []
        for b in built:
            artifact = package.package_function(b.binary, b.handler, cfg.out / f"{b.spec.short_name}.zip")
            package.check_limits(artifact, layer, b.spec.short_name)
            functions.append(FunctionArtifacts(b, artifact, verdicts.get(b.binary)))

    if cfg.smoke:
        with stage("smoke"):
            run_smoke(cfg, functions, layer)
    return BuildOutput(functions, layer)


def run_smoke(cfg: Config, functions: list[FunctionArtifacts], layer: package.Artifact | None) -> None:
    event = smoke.load_event(cfg.smoke_event)

    def one(f: FunctionArtifacts) -> smoke.SmokeResult:
        return smoke.smoke(f.zip.path, f.built.handler, layer_zip=layer.path if layer else None, event=event,
                           timeout=cfg.smoke_timeout, function_name=f.built.spec.short_name)

    # Two at a time: each is one emulated process, and the machine is usually also building or deploying.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f, result in zip(functions, pool.map(one, functions), strict=True):
            f.smoke = result
    failed = [f for f in functions if f.smoke and not f.smoke.ok]
    if failed:
        f = failed[0]
        raise SmokeError(f"smoke invocation of {f.built.spec.short_name} failed: {f.smoke.error if f.smoke else ''}",
                         "run `go-arm-lambda smoke` on its zip to see it, fix the function, or pass --no-smoke",
                         details="\n".join(f"{x.built.spec.short_name}: {smoke.format_result(x.smoke)}"
                                           for x in failed if x.smoke))


def tool_version() -> str:
    return __version__
