"""verify: the policy over real Go/C builds for every architecture and linkage it judges, and over build info
forged by hand (GOARM64 levels no `go build` writes, fuzzed module lines). Reading files is tested in
test_binary.py and test_buildinfo.py."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FUNCTIONS_MODULE, GoBuilder, require_tool
from go_arm_lambda import limits, proc
from go_arm_lambda.binary import LAMBDA_GO, BinaryReport, read_binary
from go_arm_lambda.buildinfo import parse_modinfo
from go_arm_lambda.errors import UsageError
from go_arm_lambda.verify import Finding, Policy, Verdict, format_table, judge, verify_path
from gobinaries import CROSS_CC, OLD_MODINFO, pointer_format_elf

AL2023 = Policy()


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def checks(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.check, f.severity) for f in findings}

# --- C builds -----------------------------------------------------------------------------------------------

def _cc(tmp: Path, name: str, source: str, *args: str) -> Path:
    require_tool(CROSS_CC)
    (tmp / f"{name}.c").write_text(source)
    out = tmp / name
    result = proc.run([CROSS_CC, "-O2", "-o", out, tmp / f"{name}.c", *args], cwd=tmp, timeout=120)
    assert result.ok, result.stderr
    return out


@pytest.fixture(scope="session")
def c_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _cc(tmp_path_factory.mktemp("c"), "hello", "int main(void) { return 0; }\n", "-static")


@pytest.fixture(scope="session")
def c_with_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dynamic arm64 program that needs a shared library glibc does not provide."""
    tmp = tmp_path_factory.mktemp("clib")
    _cc(tmp, "libextra.so", "int extra(void) { return 7; }\n", "-shared", "-fPIC")
    return _cc(tmp, "useslib", "int extra(void);\nint main(void) { return extra(); }\n", "-L.", "-lextra")


# --- judging real builds ------------------------------------------------------------------------------------

def test_arm64_static_norpc_build_passes_clean(answer: Path) -> None:
    v = verify_path(answer, AL2023)
    r = v.report
    assert (r.elf_class, r.endianness, r.arch, r.elf_type) == (64, "little", "aarch64", "EXEC")
    assert r.static
    assert r.interpreter is None and r.glibc_required == [] and r.needed == []
    assert r.lambda_go_version == "v1.55.1"
    assert v.findings == [] and v.ok and v.status == "ok"


def test_build_without_norpc_is_a_warning(answer_rpc: Path) -> None:
    v = verify_path(answer_rpc, AL2023)
    assert v.ok and v.status == "warnings"
    assert checks(v.findings) == {("norpc", "warning")}
    assert "lambda.norpc" in v.findings[0].message and "2 MB" in v.findings[0].message


def test_amd64_build_is_named_and_stopped(answer_amd64: Path) -> None:
    v = verify_path(answer_amd64, AL2023)
    assert not v.ok
    assert checks(v.findings) == {("arch", "error")}
    message = v.findings[0].message
    assert "x86-64 ELF" in message and "exec format error" in message and "GOARCH=arm64" in message
    assert "GOARCH=amd64" in message  # what it was built with, from its build info


def test_32bit_arm_build_is_named(gobuild: GoBuilder) -> None:
    v = verify_path(gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], goarch="arm") / "answer", AL2023)
    assert v.report.elf_class == 32 and v.report.arch == "arm"
    assert checks(v.findings) == {("arch", "error")}
    assert "32-bit ARM ELF" in v.findings[0].message and "exec format error" in v.findings[0].message


def test_goarm64_above_graviton2_is_an_error(answer_v9: Path) -> None:
    v = verify_path(answer_v9, AL2023)
    assert v.report.go is not None and v.report.go.settings["GOARM64"] == "v9.0"
    assert checks(v.findings) == {("goarm64", "error")}
    assert "SIGILL" in v.findings[0].message and "v8.2" in v.findings[0].message


def build_info_elf(tmp_path: Path, *lines: str) -> Path:
    """A hand-made arm64 ELF whose build info carries `lines` besides a module list."""
    path = tmp_path / "fn"
    path.write_bytes(pointer_format_elf(modinfo_text=OLD_MODINFO + "".join(f"{line}\n" for line in lines)))
    return path


# What a damaged or forged file may say; `go build` itself only writes levels that limits accepts.
@pytest.mark.parametrize("line", ["build\tGOARM64=v8.1.2", "build\tGOARM64=v9.1x", "build\tGOARM64=v9.1,junk",
                                  "build\tGOARM64=8.0", "build\tGOARM64=", 'build\tGOARM64="v8.0\\n"',
                                  "build\tGOARM64=v10.0"])
def test_unreadable_goarm64_in_the_build_info_is_a_finding(line: str, tmp_path: Path) -> None:
    v = verify_path(build_info_elf(tmp_path, line), AL2023)
    assert v.report.go is not None
    value = v.report.go.settings["GOARM64"]
    [f] = [f for f in v.findings if f.check == "goarm64"]
    assert (f.severity, f.message) == ("error", (
        f"GOARM64 {value!r} in the build info of fn is not a valid level, which `go build` never writes: the "
        "file is damaged or was altered, and nothing says which arm64 CPUs it runs on; rebuild it with GOARM64 "
        "from v8.0 (the default) to v8.2"))


@pytest.mark.parametrize("value", ["v8.0", "v8.2,lse", "v8.2,crypto,lse", "v8.3", "v9.0,crypto", "v9.5"])
def test_goarm64_in_the_build_info_is_judged_like_the_flag(value: str, tmp_path: Path) -> None:
    try:
        limits.check_goarm64(value)
        flag_ok = True
    except UsageError:
        flag_ok = False
    found = [f for f in verify_path(build_info_elf(tmp_path, f"build\tGOARM64={value}"), AL2023).findings
             if f.check == "goarm64"]
    assert found == [] if flag_ok else ["SIGILL" in f.message for f in found] == [True]


_SETTING_KEY = st.sampled_from(["GOARM64", "GOOS", "GOARCH", "-tags", "CGO_ENABLED", "-ldflags"])
_WORD = st.text(max_size=16)
# Pieces of a Go-quoted value, including escapes Go never writes (code points past U+10FFFF, surrogates).
_QUOTED = st.lists(st.sampled_from(["a", "v8.0", " ", "\\", '\\"', "\\n", "\\x41", "\\101", "\\u00e9",
                                    "\\ud800", "\\UFFFFFFFF", "\\U0001F600", "\\q", "\\", '"', "`", ","]),
                   max_size=6).map(lambda parts: '"' + "".join(parts) + '"')
_MODINFO_LINE = st.one_of(
    st.builds("build\t{}={}".format, st.one_of(_SETTING_KEY, _WORD), st.one_of(_WORD, _QUOTED)),
    st.builds("build\t{}={}".format, _QUOTED, _WORD),
    st.builds("dep\t{}\t{}\th1:x=".format, st.one_of(st.just(LAMBDA_GO), _WORD), _WORD),
    st.builds("=>\t{}\t{}".format, _WORD, _WORD),
    _WORD.map("mod\t{}".format), _WORD.map("path\t{}".format), _WORD)


@settings(max_examples=300, deadline=timedelta(seconds=3))
@given(st.lists(_MODINFO_LINE, max_size=12))
def test_fuzz_build_info_text_is_judged_in_one_line_findings(lines: list[str]) -> None:
    """Whatever the build info says, judging it gives findings, each one printable line, never an exception."""
    report = BinaryReport(path=Path("fn"), size=1000, is_elf=True, elf_class=64, endianness="little",
                          arch="aarch64", elf_type="EXEC", entry=0x10000, static=True,
                          go=parse_modinfo("go1.26.0", "\n".join(lines)))
    verdict = Verdict(report, judge(report, AL2023))
    for f in verdict.findings:
        assert f.message.isprintable() and "; " in f.message, f
    format_table([verdict]).encode()  # what the CLI prints: no lone surrogates
    json.dumps(verdict.to_json(), ensure_ascii=False).encode()


def test_cgo_glibc_versions_equal_readelf_and_are_judged_per_runtime(cgo_bin: Path) -> None:
    readelf = shutil.which("aarch64-linux-gnu-readelf") or require_tool("readelf")
    out = proc.run([readelf, "-V", "-W", cgo_bin])
    assert out.ok, out.stderr
    from_readelf = {w for w in out.stdout.replace(":", " ").split() if w.startswith("GLIBC_")}
    report = read_binary(cgo_bin)
    assert set(report.glibc_required) == from_readelf
    assert report.glibc_required[-1] == "GLIBC_2.34"
    assert (report.static, report.interpreter, report.needed) == (False, "/lib/ld-linux-aarch64.so.1",
                                                                   ["libc.so.6"])

    custom = {"allow_custom_runtime_client": True}  # a plain cgo program, not a Lambda handler
    assert verify_path(cgo_bin, Policy(**custom)).ok
    on_al2 = verify_path(cgo_bin, Policy(runtime="provided.al2", **custom))
    assert not on_al2.ok
    [glibc] = [f for f in on_al2.findings if f.check == "glibc"]
    too_new = [v for v in report.glibc_required if tuple(map(int, v[6:].split("."))) > (2, 26)]
    assert all(v in glibc.message for v in too_new) and "GLIBC_2.17" not in glibc.message
    assert "glibc 2.26" in glibc.message and "provided.al2023" in glibc.message


def test_shared_library_is_not_an_executable(c_with_lib: Path) -> None:
    """ET_DYN like a PIE, but without a loader or an entry point: the kernel would jump to address 0."""
    v = verify_path(c_with_lib.parent / "libextra.so", AL2023)
    assert (v.report.elf_type, v.report.interpreter, v.report.entry) == ("DYN", None, 0)
    assert not v.ok and checks(v.findings) == {("arch", "error"), ("go", "error")}
    [arch] = [f for f in errors(v.findings) if f.check == "arch"]
    assert arch.message == ("libextra.so is a shared library, not an executable: it has no entry point, so "
                            "Lambda would crash it the moment it starts; build the program itself (package "
                            "main, without -buildmode=c-shared or plugin)")


def test_shared_library_beyond_glibc_is_a_warning(c_with_lib: Path) -> None:
    v = verify_path(c_with_lib, AL2023)
    assert v.report.needed == ["libextra.so", "libc.so.6"]
    assert checks(v.findings) == {("shared-libs", "warning"), ("go", "error")}
    [libs] = [f for f in v.findings if f.check == "shared-libs"]
    assert "libextra.so" in libs.message and "libc.so.6" not in libs.message and "/opt/lib" in libs.message


def test_a_program_without_go_build_info_fails_unless_its_own_client_is_allowed(c_static: Path) -> None:
    """Nothing in a C program shows a Runtime API client: like a library, it is refused; allowed, it passes the
    ELF checks with a warning."""
    v = verify_path(c_static, AL2023)
    assert v.report.static and v.report.arch == "aarch64" and v.report.go is None
    assert not v.ok and checks(v.findings) == {("go", "error")}
    assert "not a Go program" in v.findings[0].message and "--allow-custom-runtime-client" in v.findings[0].message
    allowed = verify_path(c_static, Policy(allow_custom_runtime_client=True))
    assert allowed.ok and checks(allowed.findings) == {("go", "warning")}


def test_missing_aws_lambda_go_is_an_error_unless_allowed(fixture_bins: Path) -> None:
    strict = verify_path(fixture_bins / "nolambda", AL2023)
    assert checks(strict.findings) == {("runtime-client", "error")}
    message = strict.findings[0].message
    assert "Runtime API" in message and "--allow-custom-runtime-client" in message
    lenient = verify_path(fixture_bins / "nolambda", Policy(allow_custom_runtime_client=True))
    assert lenient.ok and checks(lenient.findings) == {("runtime-client", "warning")}


def test_aws_lambda_go_older_than_1_18_is_an_error(oldlambda: Path) -> None:
    v = verify_path(oldlambda, AL2023)
    assert v.report.lambda_go_version == "v1.17.0"
    assert checks(v.findings) == {("runtime-client", "error")}
    [old] = errors(v.findings)
    assert "v1.17.0" in old.message and "v1.18" in old.message and "go get" in old.message


def test_size_above_the_unzipped_limit_is_an_error(answer: Path) -> None:
    report = read_binary(answer)
    report.size = limits.MAX_UNZIPPED + 1
    assert checks(judge(report, AL2023)) == {("size", "error")}


def test_unknown_runtime_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"provided\.al2023"):
        Policy(runtime="go1.x")


def test_json_and_table_output(answer: Path, answer_amd64: Path, tmp_path: Path) -> None:
    verdicts = [verify_path(p, AL2023) for p in (answer, answer_amd64, tmp_path / "missing")]
    good = verdicts[0].to_json()
    assert list(good) == ["path", "ok", "arch", "static", "glibc_required", "go_version", "lambda_go_version",
                          "settings", "findings"]
    assert good["ok"] is True and good["arch"] == "aarch64" and good["settings"]["-tags"] == "lambda.norpc"
    assert good["go_version"].startswith("go1.") and good["lambda_go_version"] == "v1.55.1"
    bad = verdicts[1].to_json()
    assert bad["ok"] is False and bad["findings"][0]["check"] == "arch"
    assert json.loads(json.dumps([v.to_json() for v in verdicts]))[2]["findings"][0]["severity"] == "error"

    table = format_table(verdicts)
    assert "answer  OK" in table and "answer  FAILED (1 error)" in table and "missing  FAILED" in table
    assert "exec format error" in table and "does not exist" in table
    assert max(len(line) for line in table.splitlines()) <= 110


def test_pre_1_18_pointer_format_is_judged(tmp_path: Path) -> None:
    path = tmp_path / "old"
    path.write_bytes(pointer_format_elf())
    assert checks(verify_path(path, AL2023).findings) == {("runtime-client", "error"), ("norpc", "warning")}


