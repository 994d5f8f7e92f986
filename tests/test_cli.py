"""The CLI as a user meets it: commands, exit codes (0 ok, 1 failed, 2 bad input), one-line errors, JSON output,
and AWS state after `deploy` against moto (through the recording proxy)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from awsfakes import REGION, FakeAws
from conftest import EXAMPLES, FUNCTIONS_MODULE, GoBuilder, require_tool
from go_arm_lambda import build, cli, package, pipeline

HELLO = "hello=./cmd/hello"
ORDERS = "orders-api=./cmd/orders"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines, err
    return lines[-1]


# --- build -------------------------------------------------------------------------------------------------

def test_build_json_lists_zips_and_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("go")
    code, out, _ = run(capsys, "build", "--source", str(EXAMPLES), "--function", HELLO, "--function", ORDERS,
                       "--out", str(tmp_path), "--no-smoke", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [(f["name"], f["handler"], f["package"]) for f in doc["functions"]] == [
        ("hello", "hello", "./cmd/hello"), ("orders-api", "orders", "./cmd/orders")]
    for f in doc["functions"]:
        with zipfile.ZipFile(f["zip"]) as z:
            assert z.namelist() == [f["handler"]]
        assert f["size"] == Path(f["zip"]).stat().st_size and len(f["sha256"]) == 64 and f["verify"] == "ok"
    assert Path(doc["layer"]["zip"]).name == "layer.zip"


def test_build_reads_the_config_file_and_flags_win(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("go")
    source = tmp_path / "src"
    shutil.copytree(EXAMPLES, source, ignore=shutil.ignore_patterns("demo.py"))
    (source / "go-arm-lambda.toml").write_text(
        'mode = "bootstrap"\nsmoke = false\n[functions]\nhello = "./cmd/hello"\n')
    code, out, _ = run(capsys, "build", "--source", str(source), "--out", str(tmp_path / "out"), "--json")
    assert code == 0
    assert [f["handler"] for f in json.loads(out)["functions"]] == ["bootstrap"]
    assert json.loads(out)["layer"] is None
    code, out, _ = run(capsys, "build", "--source", str(source), "--out", str(tmp_path / "out"), "--json",
                       "--mode", "layer")
    assert [f["handler"] for f in json.loads(out)["functions"]] == ["hello"]


def test_build_smoke_invokes_each_function(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_tool("qemu-aarch64-static")
    code, _, err = run(capsys, "build", "--source", str(FUNCTIONS_MODULE), "--function", "answer=./cmd/answer",
                         "--function", "fail=./cmd/fail", "--function", "panic=./cmd/panic", "--out", str(tmp_path))
    assert code == 1
    assert last_error(err) == ("error: smoke invocation of fail (and panic) failed: Handler returned an error: "
                               "errorString: "
                               "order 42 was rejected. run `go-arm-lambda smoke` on its zip to see it, fix the "
                               "function, or turn smoke off (--no-smoke)")


def test_build_stops_a_binary_verify_rejects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "build", "--source", str(FUNCTIONS_MODULE), "--function", "x=./cmd/nolambda",
                       "--out", str(tmp_path))
    assert code == 1
    assert "failed verification" in last_error(err) and "aws-lambda-go" in last_error(err)
    assert not (tmp_path / "functions" / "x.zip").exists()  # nothing packaged, nothing smoke-invoked
    code, _, _ = run(capsys, "build", "--source", str(FUNCTIONS_MODULE), "--function", "x=./cmd/nolambda",
                     "--out", str(tmp_path), "--no-verify", "--no-smoke")
    assert code == 0 and (tmp_path / "functions" / "x.zip").exists()


def test_a_function_named_layer_keeps_the_layer_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "build", "--source", str(EXAMPLES), "--function", "layer=./cmd/hello",
                       "--out", str(tmp_path), "--no-smoke", "--json")
    doc = json.loads(out)
    assert code == 0
    with zipfile.ZipFile(doc["layer"]["zip"]) as z:
        assert z.namelist() == ["bootstrap"]
    assert doc["functions"][0]["zip"] != doc["layer"]["zip"]


def test_json_stays_json_under_actions(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, out, err = run(capsys, "build", "--source", str(EXAMPLES), "--function", HELLO, "--out", str(tmp_path),
                         "--no-smoke", "--json")
    assert code == 0 and json.loads(out)["functions"][0]["name"] == "hello"
    assert "==> build" in err


@pytest.mark.parametrize(("flags", "message"), [
    (["--smoke-event", "{bad"], "is not valid JSON"),
    (["--smoke-timeout", "inf"], "--smoke-timeout='inf' is not a number"),
    (["--endpoint-url", "notaurl", "--region", REGION], "endpoint URL 'notaurl' is not an http(s) URL"),
    (["--layer-name", "arn:aws:lambda:eu-west-1:123456789012:layer:x", "--region", REGION],
     "is an ARN, but layer mode publishes the layer itself"),
])
def test_bad_input_is_refused_before_building(flags: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "deploy", "--source", str(EXAMPLES), "--function", HELLO, "--out", str(tmp_path / "o"),
                       *flags)
    assert code == 2 and message in last_error(err)
    assert "==> build" not in err and not (tmp_path / "o").exists()


def test_file_system_problems_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "layer", "package", "--out", str(tmp_path))  # a directory, not a file
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert last_error(err) == (f"error: layer zip {tmp_path} is a directory. point --out at a file in a writable "
                               "directory")


# --- verify, layer (smoke's CLI is tested in test_smoke) ---------------------------------------------

def test_verify_exit_codes_and_json(gobuild: GoBuilder, fixture_bins: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    good = fixture_bins / "answer"
    amd64 = gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], goarch="amd64") / "answer"
    code, out, _ = run(capsys, "verify", str(good))
    assert code == 0 and "answer" in out
    code, out, _ = run(capsys, "verify", str(good), str(amd64), "--json")
    doc = json.loads(out)
    assert code == 1 and [d["ok"] for d in doc] == [True, False]
    assert doc[1]["arch"] == "x86-64" and any("exec format error" in f["message"] for f in doc[1]["findings"])
    zipped = package.package_function(good, "answer", tmp_path / "answer.zip").path
    code, out, _ = run(capsys, "verify", str(zipped))
    assert code == 1 and "is a zip archive, not a binary: verify the binary inside it" in out
    code, _, err = run(capsys, "verify", str(good), "--runtime", "go1.x")
    assert code == 2 and "invalid choice: 'go1.x'" in err


def test_layer_package_and_upload(tmp_path: Path, aws: FakeAws, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, "layer", "package", "--out", str(tmp_path / "l.zip"), "--json")
    assert code == 0
    with zipfile.ZipFile(tmp_path / "l.zip") as z:
        assert z.namelist() == ["bootstrap"] and z.getinfo("bootstrap").external_attr >> 16 == 0o100755
    aws.create_bucket("layers")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "layer", "upload", "--bucket", "layers", "--key", "boot/layer.zip",
                       "--region", REGION, "--endpoint-url", aws.url)
    assert code == 0 and "ContentS3Bucket=layers ContentS3Key=boot/layer.zip" in out
    body = aws.client("s3").get_object(Bucket="layers", Key="boot/layer.zip")["Body"].read()
    assert body == (tmp_path / "l.zip").read_bytes()  # the same deterministic zip
    code, _, err = run(capsys, "layer", "upload", "--bucket", "Bad_Bucket", "--key", "k", "--region", REGION)
    assert code == 2 and "S3 bucket name 'Bad_Bucket' is not valid" in err


# --- deploy ------------------------------------------------------------------------------------------------

def deploy(capsys: pytest.CaptureFixture[str], aws: FakeAws, tmp_path: Path, *extra: str) -> tuple[int, Any, str]:
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    code, out, err = run(capsys, "deploy", "--source", str(EXAMPLES), "--function", HELLO, "--function", ORDERS,
                         "--region", REGION, "--endpoint-url", aws.url, "--out", str(tmp_path / "dist"),
                         "--report", str(report), "--no-smoke", *extra)
    return code, json.loads(report.read_text()) if report.exists() else None, out + err


def test_deploy_migrates_then_dry_run_shows_nothing_to_do(aws: FakeAws, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    aws.create_function("hello", runtime="go1.x", handler="hello", environment={"TABLE": "orders"})
    aws.create_function("orders-api", runtime="provided.al2", handler="bootstrap", architecture="arm64")
    code, plan_only, _ = deploy(capsys, aws, tmp_path, "--dry-run")
    assert code == 0 and plan_only["dry_run"] and aws.proxy.mutating() == []
    planned = plan_only["plan"]
    code, report, text = deploy(capsys, aws, tmp_path, "--publish", "--alias", "live")
    assert code == 0, text
    assert [p for p in report["plan"] if p["action"] not in ("publish-version", "create-alias")] == planned
    hello = aws.function("hello")
    assert (hello["Runtime"], hello["Handler"], hello["Environment"]["Variables"]) == (
        "provided.al2023", "hello", {"TABLE": "orders"})
    sent = [json.loads(r.body) for r in aws.proxy.matching("PUT", "/2015-03-31/functions/hello/code")]
    assert sent[0]["Architectures"] == ["arm64"]
    assert {f["name"]: f["version"] for f in report["functions"]} == {"hello": "1", "orders-api": "1"}
    assert all(f["verify"] == "ok" and f["smoke"] == "skipped" for f in report["functions"])

    code, again, _ = deploy(capsys, aws, tmp_path, "--dry-run", "--json")
    assert code == 0 and [f["status"] for f in again["functions"] if f["name"] == "orders-api"] == ["unchanged"]


def test_deploy_refuses_bad_input_before_building(aws: FakeAws, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, report, text = deploy(capsys, aws, tmp_path, "--region", "mars-1")
    assert code == 2 and report is None
    assert last_error(text) == "error: region 'mars-1' is not an AWS region name. use a name such as eu-west-1"
    assert not (tmp_path / "dist").exists() and aws.proxy.requests == []


def test_deploy_missing_function_changes_nothing(aws: FakeAws, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    aws.create_function("hello", runtime="go1.x", handler="hello")
    code, report, text = deploy(capsys, aws, tmp_path)
    assert code == 2
    assert "orders-api" in last_error(text) and "Traceback" not in text
    assert aws.proxy.mutating() == []  # hello was fine, but nothing is half-done
    # The report still says what was built and what stopped the deploy.
    assert report["errors"] and "orders-api" in report["errors"][0]
    assert {f["name"]: f["verify"] for f in report["functions"]} == {"hello": "ok", "orders-api": "ok"}


def test_functions_named_by_arn_keep_their_build_fields(aws: FakeAws, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    aws.create_function("hello", runtime="go1.x", handler="hello")
    arn = f"arn:aws:lambda:{REGION}:123456789012:function:hello"
    report = tmp_path / "r.json"
    code, _, text = run(capsys, "deploy", "--source", str(EXAMPLES), "--function", f"{arn}=./cmd/hello",
                        "--region", REGION, "--endpoint-url", aws.url, "--out", str(tmp_path / "d"), "--no-smoke",
                        "--dry-run", "--report", str(report))
    assert code == 0, text
    entry = json.loads(report.read_text())["functions"][0]
    assert entry["name"] == "hello" and entry["package"] == "./cmd/hello" and entry["zip_size"] > 0


def test_deploy_without_credentials_is_one_line(aws: FakeAws, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, text = deploy(capsys, aws, tmp_path)
    assert code == 1
    assert last_error(text).startswith("error: no usable AWS credentials were found. configure AWS credentials")


def test_deploy_reports_which_function_failed(aws: FakeAws, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    aws.create_function("hello", runtime="go1.x", handler="hello")
    aws.create_function("orders-api", runtime="go1.x", handler="orders")
    aws.proxy.respond("PUT", "/2015-03-31/functions/orders-api/code", status=400, code="InvalidParameterValueException",
                      message="Unzipped size must be smaller than 262144000 bytes", times=1)
    code, report, text = deploy(capsys, aws, tmp_path)
    assert code == 1
    status = {f["name"]: f["status"] for f in report["functions"]}
    assert status == {"hello": "updated", "orders-api": "failed"}
    assert any("Unzipped size must be smaller" in e for e in report["errors"])
    assert "error: orders-api (eu-west-1)" in text


# --- the rest ----------------------------------------------------------------------------------------------

def test_doctor_passes_here(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"], out
    assert {c["name"] for c in doc["checks"]} >= {"go", "qemu-aarch64", "cross-cc", "GOCACHE"}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "build", "--mode", "zip")[0] == 2
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("go-arm-lambda ")


# --- error paths ---------------------------------------------------------------------------------------------

INTERNAL = ("internal error: RuntimeError: injected fault. run again with --debug (in Actions: re-run the job with "
            "debug logging) and report the traceback")


@pytest.fixture
def broken_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a stage, injected: nothing else can make a bug on purpose."""
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(build, "build", boom)


@pytest.mark.usefixtures("broken_build")
def test_an_internal_error_is_one_line_and_its_traceback_needs_debug(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["build", "--source", str(EXAMPLES), "--function", HELLO, "--out", str(tmp_path), "--no-smoke"]
    code, _, err = run(capsys, *argv)
    assert code == 1 and last_error(err) == f"error: {INTERNAL}" and "Traceback" not in err
    code, _, err = run(capsys, *argv, "--debug")
    assert code == 1 and last_error(err) == f"error: {INTERNAL}"
    assert "Traceback (most recent call last)" in err and "RuntimeError: injected fault" in err
    monkeypatch.setenv("RUNNER_DEBUG", "1")  # what "re-run with debug logging" sets
    code, _, err = run(capsys, *argv)
    assert code == 1 and "RuntimeError: injected fault" in err and "Traceback" in err


@pytest.mark.usefixtures("broken_build")
def test_the_job_words_an_internal_error_as_the_cli_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    code, _, err = run(capsys, "deploy", "--source", str(EXAMPLES), "--function", HELLO, "--region", REGION,
                       "--out", str(tmp_path / "dist"), "--report", str(report))
    assert code == 1 and last_error(err) == f"error: {INTERNAL}"
    assert json.loads(report.read_text())["errors"] == [INTERNAL]


def test_os_errors_speak_of_a_path_only_when_they_have_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(_out: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(package, "package_layer", disk_full)
    code, _, err = run(capsys, "layer", "package", "--out", str(tmp_path / "layer.zip"))
    assert code == 1 and last_error(err) == (
        "error: the operating system refused an operation: No space left on device (OSError). check disk space, "
        "open files and the network, then run again")
    assert "Traceback" not in err


def test_a_report_that_cannot_be_written_keeps_the_deploys_result(aws: FakeAws, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The path is checked before anything is built; should it break while the deploy runs, the result stands."""
    aws.create_function("hello", runtime="go1.x", handler="hello")
    aws.create_function("orders-api", runtime="go1.x", handler="orders")
    reports = tmp_path / "reports"
    reports.mkdir()
    report = reports / "report.json"
    write_report = pipeline.write_report

    def directory_replaced_meanwhile(path: Path, job: Any) -> None:
        shutil.rmtree(reports)
        reports.write_text("")
        write_report(path, job)

    monkeypatch.setattr(pipeline, "write_report", directory_replaced_meanwhile)
    code, _, text = deploy(capsys, aws, tmp_path, "--report", str(report))
    assert code == 1
    assert last_error(text) == (f"error: cannot write the report to {report} ({reports}: File exists). make sure "
                                "its directory exists or can be created, and can be written")
    assert "updated" in text and aws.function("hello")["Runtime"] == "provided.al2023"  # shown, and done


def test_a_report_whose_rename_fails_names_the_users_path_not_a_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory put where the report goes after the up-front check: the rename fails, and the message names
    the report, never the .report.json.xxxx beside it."""
    report = tmp_path / "report.json"
    write_report = pipeline.write_report

    def directory_put_there(path: Path, job: Any) -> None:
        report.mkdir()
        write_report(path, job)

    monkeypatch.setattr(pipeline, "write_report", directory_put_there)
    err = cli._write_report(report, {"errors": []})  # type: ignore[arg-type]
    assert err is not None and str(err) == (f"cannot write the report to {report} (Is a directory). make sure its "
                                            "directory exists or can be created, and can be written")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left either


def test_debug_shows_the_traceback_of_each_failed_step(aws: FakeAws, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    aws.create_function("hello", runtime="go1.x", handler="hello")
    aws.create_function("orders-api", runtime="go1.x", handler="orders")
    for extra in ((), ("--debug",)):
        aws.proxy.respond("PUT", "/2015-03-31/functions/orders-api/code", status=400,
                          code="InvalidParameterValueException", message="Unzipped size must be smaller", times=1)
        code, report, text = deploy(capsys, aws, tmp_path, *extra)
        assert code == 1 and {f["name"]: f["status"] for f in report["functions"]}["orders-api"] == "failed"
        assert ("Traceback (most recent call last)" in text) == bool(extra), text
    assert "Unzipped size must be smaller" in text.split("Traceback (most recent call last)", 1)[1]
