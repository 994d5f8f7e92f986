"""Command line: parses flags into a Config, runs a stage, and is the one place errors become exit codes.

Under GitHub Actions the same errors also become `::error` annotations and a line in the job summary.
Tracebacks are shown only with --debug (or under Actions' debug logging, RUNNER_DEBUG=1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from go_arm_lambda import __version__, actions, config, pipeline, progress
from go_arm_lambda.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, UserError, as_user_error
from go_arm_lambda.inputs import BUILD, Input

PR_EVENTS = ("pull_request", "pull_request_target")
SWITCH = argparse.BooleanOptionalAction  # --x and --no-x
S = argparse.SUPPRESS  # only flags the user gave reach config.load, so lower layers (INPUT_*, file) still count


def flag_help(row: Input) -> str:
    """The table's help text with the default appended: the default is the Config field's, never retyped."""
    shown = f"{row.help} (default: {row.shown_default})" if row.shown_default is not None else row.help
    return shown.replace("%", "%%")  # argparse %-formats help texts


def add_inputs(p: argparse.ArgumentParser, command: str) -> None:
    """The command's input flags, generated from the input table (config.Config); none is written by hand."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for row in config.FIELDS.values():
        if command not in row.commands:
            continue
        target: argparse.ArgumentParser | argparse._ArgumentGroup = p
        if command in BUILD:  # many flags: grouped by the command that introduces them
            title = row.commands[0]
            if title not in groups:
                groups[title] = p.add_argument_group(title)
            target = groups[title]
        kwargs: dict[str, Any] = {"dest": row.key, "default": S, "help": flag_help(row)}
        if row.switch:
            kwargs["action"] = SWITCH
        elif row.choices:
            kwargs["choices"] = row.choices
        else:
            kwargs["metavar"] = row.metavar or row.name.upper()
            if row.repeat:
                kwargs["action"] = "append"
        target.add_argument(row.cli_flag, **kwargs)


def _add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _own_default(key: str) -> str:
    """A command-own flag that mirrors an input takes that input's default, said the same way."""
    return f" (default: {config.FIELDS[key].shown_default})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="go-arm-lambda",
                                     description="Build, verify, smoke-invoke and ship Go Lambda functions on arm64.")
    parser.add_argument("--version", action="version", version=f"go-arm-lambda {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str,
                within: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
                inputs_of: str | None = None) -> argparse.ArgumentParser:
        p = within.add_parser(name, help=help)
        p.set_defaults(run=run, command_name=inputs_of or name)
        _add_debug(p)
        add_inputs(p, inputs_of or name)
        return p

    command("build", cmd_build, "cross-compile, verify, package and smoke-invoke functions")
    command("deploy", cmd_deploy, "build, then publish the layer and update the functions")
    command("promote", cmd_promote, "point an alias at the version another alias has, with the deploy's check "
            "and traffic options; no build")
    command("rollback", cmd_rollback, "put an alias back on the version it had before go-arm-lambda last moved it")

    p = command("verify", cmd_verify, "check binaries: ELF arch, glibc, Go build info, aws-lambda-go")
    p.add_argument("binaries", nargs="+", type=Path, metavar="BINARY")

    p = command("smoke", cmd_smoke, "invoke a packaged function locally against a Runtime API emulator")
    p.add_argument("--zip", required=True, type=Path, metavar="FUNCTION_ZIP", help="the function zip")
    p.add_argument("--handler", required=True, metavar="NAME", help="the handler (binary name in the zip)")
    p.add_argument("--layer", type=Path, metavar="LAYER_ZIP", help="the bootstrap layer zip (omit in bootstrap mode)")
    # The smoke command's own names for two inputs, as the table records them (so messages name them too).
    p.add_argument(config.FIELDS["smoke_event"].flag_of("smoke") or "", dest="event", metavar="JSON|@FILE",
                   default=config.Config.smoke_event, help="the event, as JSON or @FILE" + _own_default("smoke_event"))
    p.add_argument(config.FIELDS["smoke_timeout"].flag_of("smoke") or "", dest="timeout", metavar="S",
                   default=config.Config.smoke_timeout,
                   help="seconds to wait for the response" + _own_default("smoke_timeout"))

    p = sub.add_parser("layer", help="the bootstrap layer on its own")
    lsub = p.add_subparsers(dest="layer_command", metavar="ACTION", required=True)
    lp = command("package", cmd_layer_package, "write the layer zip", lsub, "layer package")
    lp.add_argument("--out", dest="layer_zip", required=True, type=Path, metavar="FILE")
    lu = command("upload", cmd_layer_upload, "upload the layer zip to S3 for layer/template.yaml", lsub,
                 "layer upload")
    lu.add_argument("--bucket", required=True, metavar="B")
    lu.add_argument("--key", required=True, metavar="K")
    lu.add_argument("--region", required=True, metavar="R")

    command("doctor", cmd_doctor, "check that this machine or image has what go-arm-lambda needs")
    command("action", cmd_action, "run as a GitHub Action (reads INPUT_* variables)")
    return parser


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable command's parser by its full name ("build", "layer upload"), in the order of --help."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                found |= subcommands(p, f"{prefix}{name} ") or {f"{prefix}{name}": p}
    return found


# --- shared presentation -----------------------------------------------------------------------------------

def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The inputs the user set on the command line (flags left out are absent: their defaults are SUPPRESS)."""
    return {k: v for k, v in vars(args).items() if k in config.FIELDS}


def _flags(args: argparse.Namespace) -> config.Config:
    """The inputs of a command that reads neither the config file nor INPUT_*: its flags over the defaults."""
    return config.Config(**config.convert_flags(_given(args)))


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, sort_keys=False))


def _write_report(path: Path, doc: Any) -> UserError | None:
    """The report file; when it cannot be written, the error that says so (the run's results still stand)."""
    try:
        pipeline.write_report(path, doc)
    except OSError as exc:
        failing = exc.filename2 or exc.filename  # the report, or a parent directory of it, worth naming
        shown = failing is not None and Path(failing) != path
        where = f"{failing}: " if shown else ""
        err = UserError(f"cannot write the report to {path} ({where}{exc.strerror or exc})",
                        "make sure its directory exists or can be created, and can be written")
        err.__cause__ = exc
        return err
    return None


def _show_step_errors(result: pipeline.JobResult, debug: bool) -> None:
    """Under --debug, the traceback of each step that failed while the others went on."""
    if debug:
        for exc in result.step_errors:
            traceback.print_exception(exc)


# --- commands ----------------------------------------------------------------------------------------------

def cmd_build(args: argparse.Namespace) -> int:
    cfg = config.load(_given(args))
    out = pipeline.build_and_package(cfg, progress.Job.for_log(json=cfg.json))
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

    flags = _flags(args)
    for path in args.binaries:  # all of them before any verdict: a typo is bad input, not a failed binary
        config.check_regular_file(path, f"binary {str(path)!r}", "give the path of a built binary")
    policy = pipeline.verify_policy(flags)
    verdicts = [verify.verify_path(p, policy) for p in args.binaries]
    if flags.json:
        _print_json([v.to_json() for v in verdicts])
    else:
        print(verify.format_table(verdicts))
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_FAILED


def cmd_smoke(args: argparse.Namespace) -> int:
    from go_arm_lambda import smoke

    flags = _flags(args)
    timeout = config.FIELDS["smoke_timeout"].convert(args.timeout, config.say("smoke_timeout"))
    result = smoke.smoke(args.zip, args.handler, layer_zip=args.layer, event=config.load_event(args.event),
                         timeout=timeout, runtime=flags.runtime)
    if flags.json:
        _print_json(result.to_json())
    else:
        print(smoke.format_result(result))
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_layer_package(args: argparse.Namespace) -> int:
    from go_arm_lambda import package

    config.check_output(args.layer_zip, f"layer zip {args.layer_zip}", directory=False,
                        fix="point --out at a file in a writable directory")
    artifact = package.package_layer(args.layer_zip)
    if _flags(args).json:
        _print_json({"zip": str(artifact.path), "sha256": artifact.sha256, "size": artifact.size})
    else:
        print(f"{artifact.path}  {artifact.size:,} B  sha256 {artifact.sha256}")
    return EXIT_OK


def cmd_layer_upload(args: argparse.Namespace) -> int:
    from go_arm_lambda import lambda_api, limits, package

    limits.check_bucket_name(args.bucket)
    limits.check_region(args.region)
    if not 0 < len(args.key.encode()) <= 1024:
        raise UsageError(f"S3 key {args.key!r} is not valid", "give 1 to 1024 bytes, e.g. layers/bootstrap.zip")
    flags = _flags(args)
    artifact = package.package_layer(Path(".go-arm-lambda") / "layer.zip")
    target = lambda_api.upload_layer(args.bucket, args.key, artifact.path, args.region, flags.endpoint_url)
    doc = {"bucket": target.bucket, "key": target.key, "sha256": artifact.sha256, "size": artifact.size}
    if flags.json:
        _print_json(doc)
    else:
        print(f"uploaded the layer ({artifact.size:,} B, sha256 {artifact.sha256[:12]}) to {target}; deploy "
              f"layer/template.yaml with ContentS3Bucket={target.bucket} ContentS3Key={target.key}")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    cfg = config.load(_given(args))
    return _deployed(args, cfg, pipeline.run_job(cfg, progress.Job.for_log(json=cfg.json), deploy=True))


def cmd_promote(args: argparse.Namespace) -> int:
    cfg = config.load(_given(args), command="promote")
    return _deployed(args, cfg, pipeline.move_aliases(cfg, "promote", progress.Job.for_log(json=cfg.json)))


def cmd_rollback(args: argparse.Namespace) -> int:
    cfg = config.load(_given(args), command="rollback")
    return _deployed(args, cfg, pipeline.move_aliases(cfg, "rollback", progress.Job.for_log(json=cfg.json)))


def _deployed(args: argparse.Namespace, cfg: config.Config, result: pipeline.JobResult) -> int:
    """What deploy, promote and rollback show and exit with: the report, then its errors."""
    from go_arm_lambda import render

    if cfg.json:
        _print_json(result.report)
    elif result.error is None:
        print(render.text_table(result.report))
    _show_step_errors(result, args.debug)
    # After the results are shown: a report path problem must not hide what the deploy did.
    report_error = _write_report(cfg.report, result.report) if cfg.report else None
    if result.error is not None:
        if report_error is not None:
            present_error(report_error, debug=args.debug)
        raise result.error
    for line in result.report["errors"]:  # functions that failed while the others deployed
        print(f"error: {line}", file=sys.stderr)
    if report_error is not None:
        raise report_error
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_action(args: argparse.Namespace) -> int:
    """The Action: inputs from INPUT_*, the job, then the report file, outputs, job summary and PR comment.

    Whatever fails, even reading the inputs, the report, outputs, summary and comment still say what happened.
    """
    from go_arm_lambda import render

    env = os.environ
    workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
    cfg: config.Config | None = None
    report_path = workspace / ".go-arm-lambda" / "report.json"
    # First of all, so that no later line, not even an error about the inputs, can show the token.
    actions.mask(config.action_input(env, "github-token"))
    try:
        cfg = config.load({}, use_action_inputs=True)
        config.check_output(report_path, f"the report file {report_path}", directory=False,
                            fix="make the workspace's .go-arm-lambda a writable directory, or remove what is there")
        os.environ.update(actions.prepare_container(env, cfg.source.resolve()))
        # Regions given: build and deploy. None: build, verify, smoke and package only (a pull request check).
        # promote-from given: promote, no build.
        job = progress.Job.for_log(json=cfg.json)
        result = pipeline.move_aliases(cfg, "promote", job) if cfg.promote_from else \
            pipeline.run_job(cfg, job, deploy=bool(cfg.regions))
    except Exception as exc:  # wrong inputs, or the run could not start (e.g. an unusable workspace)
        err = as_user_error(exc)
        result = pipeline.JobResult(pipeline.job_report(cfg or config.Config(), None, None, errors=[str(err)]),
                                    False, err)
    failures = list(result.report["errors"])
    report_error = _write_report(report_path, result.report)
    if report_error is not None:  # the outputs, summary and comment say so too
        result.report["errors"].append(str(report_error))
        result.ok = False
    report_output = "" if report_error else actions.relative_to_workspace(report_path)
    actions.set_outputs(render.action_outputs(result.report, report_output))
    actions.append_summary(render.summary_markdown(result.report))
    if cfg is not None:
        _comment(cfg, result.report)
    for path in (workspace / ".go-arm-lambda", report_path, *([cfg.out] if cfg else [])):
        actions.chown_like_workspace(path)
    _show_step_errors(result, args.debug)
    if result.error is not None:
        present_error(result.error, debug=args.debug, summary=False)  # the summary already lists it
        return result.error.exit_code  # one ::error for what stopped the job, even if the report failed too
    for line in failures:
        actions.annotate("error", line, title="deploy failed")
    if report_error is not None:
        present_error(report_error, debug=args.debug, summary=False)
    print(render.text_table(result.report))
    return EXIT_OK if result.ok else EXIT_FAILED


def _comment(cfg: config.Config, report_doc: dict[str, Any]) -> None:
    """The sticky PR comment. Never fails the job: the deploy's result stands, a warning says why not."""
    from go_arm_lambda import ghclient, render
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
        body = render.comment_body(report_doc, cfg.comment_id, run_url)
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
    if _flags(args).json:
        print(doctor.checks_to_json(checks))
    else:
        print(doctor.format_checks(checks), end="")
    return EXIT_OK if doctor.all_ok(checks) else EXIT_FAILED


# --- errors ------------------------------------------------------------------------------------------------

def present_error(err: UserError, *, debug: bool = False, summary: bool = True) -> None:
    """The one line (after any details), its `::error` annotations under Actions, and with debug the traceback
    of what caused it."""
    if debug:
        traceback.print_exception(err)
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
    args.debug = args.debug or os.environ.get("RUNNER_DEBUG") == "1"
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        with config.speaking_to(args.command_name):  # messages name this command's flags (or the Action's inputs)
            return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # ours as they are, an OSError as the path it names, anything else as a bug
        err = as_user_error(exc)
        present_error(err, debug=args.debug)
        return err.exit_code
