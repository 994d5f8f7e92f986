"""Build: real go, real aws-lambda-go, real files. Every error has a test of its message (and exit code via the CLI)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import struct
from pathlib import Path

import pytest

from conftest import EXAMPLES, FUNCTIONS_MODULE, require_tool
from go_arm_lambda import build, cli, config
from go_arm_lambda.errors import BuildError, ToolchainError, UsageError

EM_AARCH64 = 183


def _cfg(source: Path, *functions: str, **more: object) -> config.Config:
    require_tool("go")
    return config.load({"source": str(source), "functions": list(functions), **more}, env={})


def _elf_machine(path: Path) -> tuple[bytes, int, int]:
    head = path.read_bytes()[:20]
    return head[:4], head[4], struct.unpack_from("<H", head, 18)[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _go_logger(tmp_path: Path) -> tuple[Path, Path]:
    """A `go` that records when each invocation starts and ends around the real go: proves how many builds we
    start and that they overlap."""
    log = tmp_path / "go-calls.log"
    shim = tmp_path / "go"
    shim.write_text(f'#!/bin/sh\necho "start $(date +%s.%N) $*" >> {log}\n{require_tool("go")} "$@"\nrc=$?\n'
                    f'echo "end $(date +%s.%N) $*" >> {log}\nexit $rc\n')
    shim.chmod(0o755)
    return shim, log


def test_builds_every_function_as_aarch64_elf(tmp_path: Path) -> None:
    cfg = _cfg(EXAMPLES, "hello=./cmd/hello", "orders-api=./cmd/orders")
    built = build.build(cfg, tmp_path / "bin")
    assert [(b.spec.name, b.handler, b.binary.name) for b in built] == [
        ("hello", "hello", "hello"), ("orders-api", "orders", "orders")]
    for b in built:
        assert _elf_machine(b.binary) == (b"\x7fELF", 2, EM_AARCH64)  # 64-bit, AArch64
        assert os.access(b.binary, os.X_OK)


def test_one_go_build_per_module_and_modules_in_parallel(tmp_path: Path) -> None:
    shim, log = _go_logger(tmp_path)
    cfg = _cfg(EXAMPLES, "hello=./cmd/hello", "orders=./cmd/orders", "a=../tests/fixtures/functions/cmd/answer",
               "f=../tests/fixtures/functions/cmd/fail", go=str(shim))
    built = build.build(cfg, tmp_path / "bin")
    events = [line.split(" ", 2) for line in log.read_text().splitlines() if " build " in f" {line} "]
    starts = [(float(t), argv) for kind, t, argv in events if kind == "start"]
    ends = [float(t) for kind, t, _ in events if kind == "end"]
    assert len(starts) == 2, starts  # two modules, two invocations, each with all its packages
    assert any("./cmd/hello ./cmd/orders" in argv for _, argv in starts)
    assert any("./cmd/answer ./cmd/fail" in argv for _, argv in starts)
    assert all("-trimpath -buildvcs=false -tags lambda.norpc -ldflags -s -w" in argv for _, argv in starts)
    assert max(t for t, _ in starts) < min(ends)  # the second module started before the first one finished
    assert len(built) == 4


def test_same_source_same_bytes_anywhere(tmp_path: Path) -> None:
    first = build.build(_cfg(EXAMPLES, "orders=./cmd/orders"), tmp_path / "one")
    copy = tmp_path / "elsewhere" / "examples"
    shutil.copytree(EXAMPLES, copy)
    (copy / "cmd" / "orders" / "main.go").touch()  # a new mtime must not matter either
    second = build.build(_cfg(copy, "orders=./cmd/orders"), tmp_path / "two")
    assert _sha(first[0].binary) == _sha(second[0].binary)


def test_user_tags_and_ldflags_are_added(tmp_path: Path) -> None:
    cfg = _cfg(EXAMPLES, "hello=./cmd/hello", tags="netgo,osusergo", ldflags="-X main.version=1.2.3")
    assert build.build_flags(cfg) == ["-trimpath", "-buildvcs=false", "-tags", "lambda.norpc,netgo,osusergo",
                                      "-ldflags", "-s -w -X main.version=1.2.3"]
    require_tool("go")
    done = build.proc.run(["go", "version", "-m", str(build.build(cfg, tmp_path)[0].binary)])
    assert "-tags=lambda.norpc,netgo,osusergo" in done.stdout
    assert "GOARM64=v8.0" in done.stdout and "CGO_ENABLED=0" in done.stdout


def test_bootstrap_mode_names_the_handler_bootstrap(tmp_path: Path) -> None:
    built = build.build(_cfg(EXAMPLES, "hello=./cmd/hello", mode="bootstrap"), tmp_path)
    assert built[0].handler == "bootstrap"


def test_goarm64_reaches_the_binary(tmp_path: Path) -> None:
    built = build.build(_cfg(EXAMPLES, "hello=./cmd/hello", goarm64="v8.2,crypto"), tmp_path)
    assert "GOARM64=v8.2,crypto" in build.proc.run(["go", "version", "-m", str(built[0].binary)]).stdout


def test_cgo_build_uses_the_cross_compiler(tmp_path: Path) -> None:
    require_tool("aarch64-linux-gnu-gcc")
    built = build.build(_cfg(FUNCTIONS_MODULE, "a=./cmd/answer", cgo=True), tmp_path)
    assert "CGO_ENABLED=1" in build.proc.run(["go", "version", "-m", str(built[0].binary)]).stdout
    assert _elf_machine(built[0].binary)[2] == EM_AARCH64


@pytest.mark.parametrize(("functions", "message"), [
    ((), "no functions to build. give --function orders=./cmd/orders"),
    (("x=cmd/hello",), "package 'cmd/hello' is not a relative directory. write it relative to"),
    (("x=./cmd/nope",), "function x: package ./cmd/nope does not exist under"),
    (("x=./internal/greet",), "function x: ./internal/greet is package greet, not a main package"),
    (("x=./cmd",), "function x: ./cmd has no Go files"),
    (("x=./cmd/hello/main.go",), "function x: package ./cmd/hello/main.go is a file, and a package is a directory. "
                                 "give the directory of its main package, e.g. x=./cmd/hello"),
])
def test_bad_packages_fail_before_building(functions: tuple[str, ...], message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError) as exc, config.speaking_to("build"):
        build.build(_cfg(EXAMPLES, *functions), tmp_path)
    assert message in str(exc.value)
    assert not any(tmp_path.iterdir())
    argv = [arg for f in functions for arg in ("--function", f)]
    assert cli.main(["build", "--source", str(EXAMPLES), *argv, "--out", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if line.startswith("error")] == [f"error: {exc.value}"]
    assert lines[-1].startswith("error")


def _module(root: Path, gomod: str, files: dict[str, str]) -> Path:
    (root / "go.mod").parent.mkdir(parents=True, exist_ok=True)
    (root / "go.mod").write_text(gomod)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_clashing_binary_names_are_refused(tmp_path: Path) -> None:
    src = _module(tmp_path / "m", "module m\n\ngo 1.22\n", {
        "a/api/main.go": "package main\nfunc main() {}\n", "b/api/main.go": "package main\nfunc main() {}\n"})
    with pytest.raises(UsageError, match=r"two packages would both build a binary named 'api'.* use --mode bootstrap"):
        build.build(_cfg(src, "one=./a/api", "two=./b/api"), tmp_path / "out")


def test_bootstrap_mode_builds_same_named_packages_apart(tmp_path: Path) -> None:
    src = _module(tmp_path / "m", "module m\n\ngo 1.22\n", {
        "users/handler/main.go": 'package main\n\nfunc main() { println("users") }\n',
        "billing/handler/main.go": 'package main\n\nfunc main() { println("billing") }\n'})
    built = build.build(_cfg(src, "users=./users/handler", "billing=./billing/handler", mode="bootstrap"),
                        tmp_path / "out" / "bin")
    assert [b.handler for b in built] == ["bootstrap", "bootstrap"]
    assert [b.binary.relative_to(tmp_path / "out").as_posix() for b in built] == ["bin/handler", "bin-2/handler"]
    assert _sha(built[0].binary) != _sha(built[1].binary)


def test_same_package_for_two_functions_is_one_binary(tmp_path: Path) -> None:
    built = build.build(_cfg(EXAMPLES, "blue=./cmd/hello", "green=./cmd/hello"), tmp_path)
    assert built[0].binary == built[1].binary


def test_compiler_errors_keep_file_and_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _module(tmp_path / "broken", "module broken\n\ngo 1.22\n", {
        "cmd/api/main.go": "package main\n\nfunc main() {\n\tundefinedThing()\n}\n"})
    with pytest.raises(BuildError) as exc:
        build.build(_cfg(src, "api=./cmd/api"), tmp_path / "out")
    loc = exc.value.locations[0]
    assert (loc.file, loc.line, loc.col) == (str(src.resolve() / "cmd/api/main.go"), 4, 2)
    assert loc.message == "undefined: undefinedThing"
    code = cli.main(["build", "--source", str(src), "--function", "api=./cmd/api", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1
    assert "cmd/api/main.go:4:2: undefined: undefinedThing" in err
    assert err.strip().splitlines()[-1].startswith("error: go build failed in the module at")


def test_missing_go_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --go the user gave that does not exist is bad input (exit 2, before anything runs); a go that vanishes
    later is the toolchain's error."""
    with pytest.raises(UsageError, match=r"go command '/nonexistent/go' does not exist\. give --go the path"):
        _cfg(EXAMPLES, "hello=./cmd/hello", go="/nonexistent/go")
    with pytest.raises(ToolchainError, match=r"Go toolchain '/nonexistent/go' not found\. install Go 1\.23"):
        build.build(dataclasses.replace(_cfg(EXAMPLES, "hello=./cmd/hello"), go="/nonexistent/go"), tmp_path)
    assert cli.main(["build", "--source", str(EXAMPLES), "--function", "h=./cmd/hello", "--go", "/nonexistent/go",
                     "--out", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_module_needing_a_newer_go_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    src = _module(tmp_path / "future", "module future\n\ngo 1.99\n", {"cmd/api/main.go": "package main\n"})
    with pytest.raises(ToolchainError, match=r"needs go 1\.99\.0, but .* is go1\.\d+.* set GOTOOLCHAIN=auto"):
        build.build(_cfg(src, "api=./cmd/api"), tmp_path / "out")


def test_cgo_without_cross_compiler_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    go = require_tool("go")
    bare = tmp_path / "path"
    bare.mkdir()
    (bare / "go").symlink_to(go)
    monkeypatch.setenv("PATH", str(bare))
    with pytest.raises(ToolchainError, match="apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"):
        build.build(_cfg(EXAMPLES, "hello=./cmd/hello", cgo=True), tmp_path / "out")


def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["build", "--source", str(EXAMPLES), "--function", "hello", "--no-smoke"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: --function: 'hello' is not NAME=PACKAGE. write each function as NAME=PACKAGE, "
                   "e.g. orders-api=./cmd/orders"]


def test_binary_names_follow_go_for_module_roots_and_major_versions(tmp_path: Path) -> None:
    main = "package main\n\nfunc main() {}\n"
    src = _module(tmp_path / "shop", "module example.com/shop\n\ngo 1.22\n",
                  {"main.go": main, "cmd/orders/v2/main.go": main})
    built = build.build(_cfg(src, "root=.", "orders=./cmd/orders/v2"), tmp_path / "out")
    assert [(b.handler, b.binary.name) for b in built] == [("shop", "shop"), ("orders", "orders")]
    assert all(b.binary.is_file() for b in built)
    (src / "cmd" / "orders" / "main.go").write_text(main)
    with pytest.raises(UsageError, match="two packages would both build a binary named 'orders'"):
        build.build(_cfg(src, "a=./cmd/orders", "b=./cmd/orders/v2"), tmp_path / "out")


def test_compiler_continuation_lines_stay_with_their_message(tmp_path: Path) -> None:
    src = _module(tmp_path / "m", "module m\n\ngo 1.22\n", {
        "cmd/api/main.go": 'package main\n\nimport "github.com/nobody/missing"\n\nfunc main() { missing.X() }\n'})
    with pytest.raises(BuildError) as exc:
        build.build(_cfg(src, "api=./cmd/api"), tmp_path / "out")
    messages = [loc.message for loc in exc.value.locations]
    assert any("\n" in m and "go get" in m for m in messages), messages


def test_source_that_is_a_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"source directory .*go\.mod is not a directory"):
        build.build(_cfg(EXAMPLES / "go.mod", "hello=./cmd/hello"), tmp_path)


def test_a_go_work_needing_a_newer_go_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOTOOLCHAIN", raising=False)
    monkeypatch.delenv("GOWORK", raising=False)
    src = _module(tmp_path / "repo" / "svc", "module svc\n\ngo 1.22\n", {"cmd/api/main.go": "package main\n"})
    (tmp_path / "repo" / "go.work").write_text("go 1.99\n\nuse ./svc\n")
    with pytest.raises(ToolchainError, match=r"go\.work needs go 1\.99\.0"):
        build.build(_cfg(src, "api=./cmd/api"), tmp_path / "out")


def test_a_cgo_only_package_hints_at_cgo(tmp_path: Path) -> None:
    src = _module(tmp_path / "m", "module m\n\ngo 1.22\n", {
        "cmd/api/main.go": '//go:build cgo\n\npackage main\n\nimport "C"\n\nfunc main() {}\n'})
    with pytest.raises(BuildError, match="a package that needs cgo builds only with --cgo"):
        build.build(_cfg(src, "api=./cmd/api"), tmp_path / "out")
