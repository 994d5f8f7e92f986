"""Command line: parses flags into a Config, runs a stage, and is the one place errors become exit codes.

Under GitHub Actions the same errors also become `::error` annotations and a line in the job summary.
Tracebacks are shown only with --debug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from go_arm_lambda import __version__, actions, config, pipeline
from go_arm_lambda.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, UserError

PR_EVENTS = ("pull_request", "pull_request_target")
SWITCH = argparse.BooleanOptionalAction  # --x and --no-x
S = argparse.SUPPRESS  # only flags the user gave reach config.load, so lower layers (INPUT_*, file) still count


def _add_build_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("build")
    g.add_argument("--source", default=S, help="directory the packages are relative to (default: .)")
    g.add_argument("--config", dest="config_file", default=S,
                   help=f"config file (default: SOURCE/{config.CONFIG_FILE_NAME} when it exists)")
    g.add_argument("--function", dest="functions", action="append", default=S, metavar="NAME=PACKAGE",
                   help="a Lambda function (name or ARN) and its Go main package, e.g. orders=./cmd/orders; repeat")
    g.add_argument("--out", default=S, help="output directory for binaries and zips (default: .go-arm-lambda/dist)")
    g.add_argument("--mode", choices=config.MODES, default=S,
                   help="layer: binary named after its package, run by our /opt/bootstrap layer (default); "
                        "bootstrap: binary named bootstrap, no layer")
    g.add_argument("--runtime", choices=config.RUNTIMES, default=S, help="target runtime (default provided.al2023)")
    g.add_argument("--tags", default=S, help="extra build tags, comma separated (lambda.norpc is always set)")
    g.add_argument("--ldflags", default=S, help="extra linker flags (-s -w is always set)")
    g.add_argument("--goarm64", default=S, help="GOARM64 level, v8.0 (default) to v8.2")
    # Every switch has a --no- form, so a setting from go-arm-lambda.toml can be turned off for one run.
    g.add_argument("--cgo", action=SWITCH, default=S, help="CGO_ENABLED=1 with the aarch64 cross compiler")
    g.add_argument("--go", default=S, help="the go command to use (default: go on PATH)")
    g.add_argument("--verify", action=SWITCH, default=S, help="check the binaries (default on)")
    g.add_argument("--allow-custom-runtime-client", action=SWITCH, default=S,
                   help="a binary without aws-lambda-go is a warning, not an error")
    g.add_argument("--smoke", action=SWITCH, default=S,
                   help="invoke each function locally under the Runtime API emulator (default on)")
    g.add_argument("--smoke-event", default=S, help="event for the smoke invocation: JSON or @FILE (default {})")
    g.add_argument("--smoke-timeout", default=S, help="seconds to wait for the smoke response (default 10)")
    g.add_argument("--concurrency", default=S, help="parallel builds and deploys (default 8)")


def _add_aws_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS")
    g.add_argument("--region", dest="regions", action="append", default=S, help="target region; repeat for more")
    g.add_argument("--layer-name", default=S, help="name of the bootstrap layer (default go-arm-lambda-bootstrap)")
    g.add_argument("--layer-permission", dest="layer_permissions", action="append", default=S,
                   metavar="PRINCIPAL", help="share the layer: account id, *, or org:o-xxxxxxxxxx; repeat")
    g.add_argument("--publish", action=SWITCH, default=S, help="publish a version of each function")
    g.add_argument("--alias", default=S, help="create or move this alias to the published version")
    g.add_argument("--s3-bucket", default=S, help="upload zips through this bucket (needed above 50 MB)")
    g.add_argument("--s3-prefix", default=S, help="key prefix in the bucket (default go-arm-lambda/)")
    g.add_argument("--endpoint-url", default=S, help="AWS endpoint, e.g. LocalStack or moto")
    g.add_argument("--dry-run", action=SWITCH, default=S, help="print the plan; change nothing")
    g.add_argument("--report", default=S, help="write the JSON report to this file")


def _add_output_flags(p: argparse.ArgumentParser, *, has_json: bool = True) -> None:
    if has_json:
        p.add_argument("--json", action="store_true", default=S, help="print one JSON document")
    p.add_argument("--debug", action="store_true", default=S, help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="go-arm-lambda",
                                     description="Build, verify, smoke-invoke and ship Go Lambda functions on arm64.")
    parser.add_argument("--version", action="version", version=f"go-arm-lambda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("build", help="cross-compile, verify, package and smoke-invoke functions")
    _add_build_flags(p)
    _add_output_flags(p)
    p.set_defaults(run=cmd_build)

    p = sub.add_parser("deploy", help="build, then publish the layer and update the functions")
    _add_build_flags(p)
    _add_aws_flags(p)
    _add_output_flags(p)
    p.set_defaults(run=cmd_deploy)

    p = sub.add_parser("verify", help="check binaries: ELF arch, glibc, Go build info, aws-lambda-go")
    p.add_argument("binaries", nargs="+", type=Path, metavar="BINARY")
    p.add_argument("--runtime", choices=config.RUNTIMES, default="provided.al2023")
    p.add_argument("--allow-custom-runtime-client", action="store_true", default=S)
    _add_output_flags(p)
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("smoke", help="invoke a packaged function locally against a Runtime API emulator")
    p.add_argument("--zip", required=True, type=Path, help="the function zip")
    p.add_argument("--handler", required=True, help="the handler (binary name in the zip)")
    p.add_argument("--layer", type=Path, help="the bootstrap layer zip (omit in bootstrap mode)")
    p.add_argument("--event", default="{}", help="JSON event, or @FILE (default {})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the response (default 10)")
    p.add_argument("--runtime", choices=config.RUNTIMES, default="provided.al2023",
                   help="the runtime to emulate (default provided.al2023)")
    _add_output_flags(p)
    p.set_defaults(run=cmd_smoke)

    p = sub.add_parser("layer", help="the bootstrap layer on its own")
    lsub = p.add_subparsers(dest="layer_command", metavar="ACTION", required=True)
    lp = lsub.add_parser("package", help="write the layer zip")
    lp.add_argument("--out", required=True, type=Path)
    _add_output_flags(lp)
    lp.set_defaults(run=cmd_layer_package)
    lu = lsub.add_parser("upload", help="upload the layer zip to S3 for layer/template.yaml")
    lu.add_argument("--bucket", required=True)
    lu.add_argument("--key", required=True)
    lu.add_argument("--region", required=True)
    lu.add_argument("--endpoint-url", default=None)
    _add_output_flags(lu)
    lu.set_defaults(run=cmd_layer_upload)

    p = sub.add_parser("action", help="run as a GitHub Action (reads INPUT_* variables)")
    _add_output_flags(p, has_json=False)
    p.set_defaults(run=cmd_action)

    p = sub.add_parser("doctor", help="check that this machine or image has what go-arm-lambda needs")
    _add_output_flags(p)
    p.set_defaults(run=cmd_doctor)
    return parser


# --- shared presentation -----------------------------------------------------------------------------------

def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user set on the command line."""
    return {k: v for k, v in vars(args).items() if k in config.FIELDS}


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=False))


def _stager(cfg: config.Config) -> pipeline.Stage:
    """A foldable group per stage under Actions; a header line on stderr otherwise, and always with --json,
    whose stdout must be the JSON document alone (the runner reads workflow commands on stderr too)."""
    grouped = actions.in_actions(os.environ) and not cfg.json

    def stage(name: str) -> AbstractContextManager[object]:
        if grouped:
            return actions.group(name)
        print(f"==> {name}", file=sys.stderr, flush=True)
        return pipeline.no_stage(name)

    return stage


# --- commands ----------------------------------------------------------------------------------------------

def cmd_build(args: argparse.Namespace) -> int:
    cfg = config.load(_given(args))
    out = pipeline.build_and_package(cfg, _stager(cfg))
    if cfg.json:
        _print_json(out.to_json())
    else:
        for f in out.functions:
            print(f"{f.built.spec.short_name:<24} {f.zip.path}  {f.zip.size:>10,} B  sha256 {f.zip.sha256[:12]}  "
                  f"verify {f.verify_status}  smoke {f.smoke_status}")
        if out.layer:
            print(f"{'(layer)':<24} {out.layer.path}  {out.layer.size:>10,} B  sha256 {out.layer.sha256[:12]}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from go_arm_lambda import verify

    policy = verify.Policy(runtime=args.runtime,
                           allow_custom_runtime_client=getattr(args, "allow_custom_runtime_client", False))
    verdicts = [verify.verify_path(p, policy) for p in args.binaries]
    if getattr(args, "json", False):
        _print_json([v.to_json() for v in verdicts])
    else:
        print(verify.format_table(verdicts))
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_FAILED


def cmd_smoke(args: argparse.Namespace) -> int:
    from go_arm_lambda import smoke

    result = smoke.smoke(args.zip, args.handler, layer_zip=args.layer, event=smoke.load_event(args.event),
                         timeout=args.timeout, runtime=args.runtime)
    if getattr(args, "json", False):
        _print_json(result.to_json())
    else:
        print(smoke.format_result(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_layer_package(args: argparse.Namespace) -> int:
    from go_arm_lambda import package

    artifact = package.package_layer(args.out)
    if getattr(args, "json", False):
        _print_json({"zip": str(artifact.path), "sha256": artifact.sha256, "size": artifact.size})
    else:
        print(f"{artifact.path}  {artifact.size:,} B  sha256 {artifact.sha256}")
    return EXIT_OK


def cmd_layer_upload(args: argparse.Namespace) -> int:
    from go_arm_lambda import aws, limits, package

    limits.check_bucket_name(args.bucket)
    limits.check_region(args.region)
    if not 0 < len(args.key.encode()) <= 1024:
        raise UsageError(f"S3 key {args.key!r} is not valid", "give 1 to 1024 bytes, e.g. layers/bootstrap.zip")
    artifact = package.package_layer(Path(".go-arm-lambda") / "layer.zip")
    target = aws.upload_layer(args.bucket, args.key, artifact.path, args.region, args.endpoint_url)
    doc = {"bucket": target.bucket, "key": target.key, "sha256": artifact.sha256, "size": artifact.size}
    if getattr(args, "json", False):
        _print_json(doc)
    else:
        print(f"uploaded the layer ({artifact.size:,} B, sha256 {artifact.sha256[:12]}) to {target}; deploy "
              f"layer/template.yaml with ContentS3Bucket={target.bucket} ContentS3Key={target.key}")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from go_arm_lambda import report

    cfg = config.load(_given(args))
    result = pipeline.run_job(cfg, _stager(cfg), deploy=True)
    if cfg.report:
        pipeline.write_report(cfg.report, result.report)
    if cfg.json:
        _print_json(result.report)
    elif result.error is None:
        print(report.text_table(result.report))
    if result.error is not None:
        raise result.error
    for line in result.report["errors"]:  # functions that failed while the others deployed
        print(f"error: {line}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_action(args: argparse.Namespace) -> int:
    """The Action: inputs from INPUT_*, the job, then the report file, outputs, job summary and PR comment.

    Whatever fails, even reading the inputs, the report, outputs, summary and comment still say what happened.
    """
    from go_arm_lambda import report

    env = os.environ
    workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
    cfg: config.Config | None = None
    # First of all, so that no later line, not even an error about the inputs, can show the token.
    actions.mask(config.action_input(env, "github-token"))
    try:
        cfg = config.load({}, use_action_inputs=True)
        os.environ.update(actions.prepare_container(env, cfg.source.resolve()))
        # Regions given: build and deploy. None: build, verify, smoke and package only (a pull request check).
        result = pipeline.run_job(cfg, _stager(cfg), deploy=bool(cfg.regions))
    except UserError as err:  # the inputs themselves were wrong
        result = pipeline.JobResult(pipeline.job_report(cfg or config.Config(), None, None, errors=[str(err)]),
                                    False, err)
    report_path = workspace / ".go-arm-lambda" / "report.json"
    pipeline.write_report(report_path, result.report)
    actions.set_outputs(report.action_outputs(result.report, actions.relative_to_workspace(report_path)))
    actions.append_summary(report.summary_markdown(result.report))
    if cfg is not None:
        _comment(cfg, result.report)
    for path in (workspace / ".go-arm-lambda", report_path, *([cfg.out] if cfg else [])):
        actions.chown_like_workspace(path)
    if result.error is not None:
        present_error(result.error, summary=False)  # the summary already lists it
        return result.error.exit_code
    for line in result.report["errors"]:
        actions.annotate("error", line, title="deploy failed")
    print(report.text_table(result.report))
    return EXIT_OK if result.ok else EXIT_FAILED


def _comment(cfg: config.Config, report_doc: dict[str, Any]) -> None:
    """The sticky PR comment. Never fails the job: the deploy's result stands, a warning says why not."""
    from go_arm_lambda import ghclient, report
    from go_arm_lambda.errors import GitHubError

    env = os.environ
    event_name, event_path = env.get("GITHUB_EVENT_NAME"), env.get("GITHUB_EVENT_PATH")
    if cfg.comment == "never" or (cfg.comment == "auto" and event_name not in PR_EVENTS and cfg.pr_number is None):
        return
    try:
        pr = ghclient.pr_number_from_event(event_path, cfg.pr_number)
        if pr is None:
            actions.annotate("warning", f"comment: {cfg.comment}, but this run's event names no pull request; "
                             "set pr-number, or run on pull_request events", title="no PR comment")
            return
        if not cfg.github_token or not env.get("GITHUB_REPOSITORY"):
            actions.annotate("warning", "no github-token or GITHUB_REPOSITORY, so no PR comment was written; "
                             "the job summary has the report", title="no PR comment")
            return
        server, repo, run = env.get("GITHUB_SERVER_URL"), env["GITHUB_REPOSITORY"], env.get("GITHUB_RUN_ID")
        run_url = f"{server}/{repo}/actions/runs/{run}" if server and run else None
        body = report.comment_body(report_doc, cfg.comment_id, report_doc.get("commit"), run_url)
        result = ghclient.upsert_comment(cfg.github_token, env.get("GITHUB_API_URL"), repo, pr, cfg.comment_id,
                                         body, fork=ghclient.is_fork_pr(event_path, event_name))
    except GitHubError as err:
        actions.annotate("warning", str(err), title=err.title)
        return
    if result.warning:
        actions.annotate("warning", result.warning, title="no PR comment")
    elif result.url:
        print(f"PR comment {result.action}: {result.url}", file=sys.stderr)


def cmd_doctor(args: argparse.Namespace) -> int:
    from go_arm_lambda import doctor

    checks = doctor.run_doctor()
    if getattr(args, "json", False):
        print(doctor.checks_to_json(checks))
    else:
        print(doctor.format_checks(checks), end="")
    return EXIT_OK if doctor.all_ok(checks) else EXIT_FAILED


# --- errors ------------------------------------------------------------------------------------------------

def present_error(err: UserError, *, summary: bool = True) -> None:
    if err.details:
        print(err.details.rstrip(), file=sys.stderr)
    print(f"error: {err}", file=sys.stderr)
    if actions.in_actions(os.environ):
        for loc in err.locations:
            actions.annotate("error", loc.message or err.what, file=actions.relative_to_workspace(loc.file),
                             line=loc.line, col=loc.col, title=err.title)
        actions.annotate("error", str(err), title=err.title)
        if summary:
            actions.append_summary(f"\n**{err.title}**: {err}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return EXIT_USAGE if exc.code else EXIT_OK
    # RUNNER_DEBUG is what "re-run with debug logging" sets in Actions.
    debug = getattr(args, "debug", False) or os.environ.get("RUNNER_DEBUG") == "1"
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UserError as err:
        if debug:
            traceback.print_exception(err)
        present_error(err)
        return err.exit_code
    except OSError as exc:  # a file or directory the user named: a clear line, not a traceback
        if debug:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        present_error(UserError(f"cannot use{where}: {exc.strerror or exc}", "check the path and its permissions"))
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc}. Run again with --debug and report the traceback.",
              file=sys.stderr)
        return EXIT_FAILED
