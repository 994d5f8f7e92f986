"""verify: real Go/C builds for every architecture and linkage it judges, `go version -m` as the reference for
build info, hand-made ELF files for the old build-info layout and for hostile headers, and a bounded fuzz."""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, FUNCTIONS_MODULE, GoBuilder, require_tool
from go_arm_lambda import limits, proc, verify
from go_arm_lambda.errors import UsageError
from go_arm_lambda.verify import (
    LAMBDA_GO,
    BinaryReport,
    Finding,
    Policy,
    Verdict,
    format_table,
    judge,
    parse_modinfo,
    read_binary,
    verify_path,
)

AL2023 = Policy()
CROSS_CC = "aarch64-linux-gnu-gcc"


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def checks(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.check, f.severity) for f in findings}


# --- builds -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def answer(fixture_bins: Path) -> Path:
    return fixture_bins / "answer"


@pytest.fixture(scope="session")
def answer_rpc(gobuild: GoBuilder) -> Path:
    return gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], tags="") / "answer"


@pytest.fixture(scope="session")
def answer_amd64(gobuild: GoBuilder) -> Path:
    return gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], goarch="amd64") / "answer"


@pytest.fixture(scope="session")
def answer_v9(gobuild: GoBuilder) -> Path:
    # Unstripped, so `go version -m` is also compared on a binary with symbols and no -ldflags setting.
    out = gobuild.build(FUNCTIONS_MODULE, ["./cmd/answer"], ldflags="", extra_env={"GOARM64": "v9.0"})
    return out / "answer"


@pytest.fixture(scope="session")
def oldlambda(gobuild: GoBuilder) -> Path:
    return gobuild.build(FIXTURES / "oldlambda", ["."]) / "oldlambda"


_CGO_MAIN = """package main

/*
#include <stdio.h>
static void hello(void) { puts("hello from C"); }
*/
import "C"

import "example.com/helper"

func main() { C.hello(); helper.Hello() }
"""


@pytest.fixture(scope="session")
def cgo_bin(gobuild: GoBuilder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cgo against the cross toolchain's glibc (2.36 on Debian 12): pthread_create et al. need GLIBC_2.34.
    Its local `replace` also puts a `=>` line into the build info."""
    require_tool(CROSS_CC)
    module = tmp_path_factory.mktemp("cgo")
    (module / "go.mod").write_text("module example.com/cgo\n\ngo 1.26\n\nrequire example.com/helper v0.0.0\n"
                                   "\nreplace example.com/helper => ./helper\n")
    (module / "main.go").write_text(_CGO_MAIN)
    (module / "helper").mkdir()
    (module / "helper" / "go.mod").write_text("module example.com/helper\n\ngo 1.26\n")
    (module / "helper" / "helper.go").write_text('package helper\n\nfunc Hello() { println("hi") }\n')
    return gobuild.build(module, ["."], cgo=True, extra_env={"CC": CROSS_CC}) / "cgo"


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


# --- build info equals `go version -m` ----------------------------------------------------------------------

def _go_version_m(path: Path) -> tuple[str, dict]:
    go = require_tool("go")
    text, js = proc.run([go, "version", "-m", path]), proc.run([go, "version", "-m", "-json", path])
    assert text.ok and js.ok, text.stderr + js.stderr
    return text.stdout, json.loads(js.stdout)


def assert_build_info_matches_go(path: Path) -> None:
    info = read_binary(path).go
    assert info is not None
    text, want = _go_version_m(path)
    assert info.go_version == want["GoVersion"]
    assert info.path == want["Path"]
    assert (info.main_module, info.main_version) == (want["Main"]["Path"], want["Main"]["Version"])
    assert info.deps == {d["Path"]: (d["Replace"]["Version"] or d["Replace"]["Path"]) if "Replace" in d
                         else d["Version"] for d in want.get("Deps", [])}
    assert info.settings == {s["Key"]: s["Value"] for s in want["Settings"]}
    # `go version -m` prints the stored text line by line, tab-indented.
    lines = "".join(f"\t{line}\n" for line in info.modinfo.splitlines())
    assert text == f"{path}: {info.go_version}\n{lines}"


@pytest.mark.parametrize("name", ["answer", "answer_rpc", "answer_amd64", "answer_v9", "oldlambda",
                                  "cgo_bin"])
def test_build_info_equals_go_version_m(name: str, request: pytest.FixtureRequest) -> None:
    assert_build_info_matches_go(request.getfixturevalue(name))


def test_build_info_found_through_the_data_segment_when_section_headers_are_gone(answer: Path,
                                                                                tmp_path: Path) -> None:
    """Without section headers (sstrip and friends) the reader falls back to the first writable,
    non-executable PT_LOAD; `go version -m` does the same, and both still agree with the intact binary."""
    data = bytearray(answer.read_bytes())
    struct.pack_into("<Q", data, 40, 0)  # e_shoff
    struct.pack_into("<HH", data, 60, 0, 0)  # e_shnum, e_shstrndx
    stripped = tmp_path / "answer"
    stripped.write_bytes(bytes(data))
    report = read_binary(stripped)
    assert report.problems == []
    assert report.go == read_binary(answer).go
    assert_build_info_matches_go(stripped)


def test_settings_and_replacements_from_go_quoting() -> None:
    """Values with spaces are Go-quoted in modinfo; a local replacement has no version, so its path stands."""
    info = parse_modinfo("go1.26.8", 'path\tx/cmd\nmod\tx\t(devel)\t\ndep\ta/b\tv1.0.0\th1:abc=\n'
                                     '=>\tc/d\tv1.2.0\th1:def=\ndep\te/f\tv0.1.0\th1:x=\n=>\t../f\t\t\n'
                                     'build\t-ldflags="-s -w -X \\"main.v=1\\""\nbuild\t"we=ird"=`a b`\n'
                                     'build\tGOARCH=arm64\nnonsense\n')
    assert info.deps == {"a/b": "v1.2.0", "e/f": "../f"}
    assert info.settings == {"-ldflags": '-s -w -X "main.v=1"', "we=ird": "a b", "GOARCH": "arm64"}
    assert (info.path, info.main_module, info.main_version) == ("x/cmd", "x", "(devel)")


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
    assert not v.ok and checks(v.findings) == {("arch", "error"), ("go", "warning")}
    [arch] = errors(v.findings)
    assert arch.message == ("libextra.so is a shared library, not an executable: it has no entry point, so "
                            "Lambda would crash it the moment it starts; build the program itself (package "
                            "main, without -buildmode=c-shared or plugin)")


def test_shared_library_beyond_glibc_is_a_warning(c_with_lib: Path) -> None:
    v = verify_path(c_with_lib, AL2023)
    assert v.report.needed == ["libextra.so", "libc.so.6"]
    assert checks(v.findings) == {("shared-libs", "warning"), ("go", "warning")}
    [libs] = [f for f in v.findings if f.check == "shared-libs"]
    assert "libextra.so" in libs.message and "libc.so.6" not in libs.message and "/opt/lib" in libs.message


def test_static_c_program_is_not_go_but_passes_elf_checks(c_static: Path) -> None:
    v = verify_path(c_static, AL2023)
    assert v.report.static and v.report.arch == "aarch64" and v.report.go is None
    assert v.ok and checks(v.findings) == {("go", "warning")}


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


# --- hand-made ELF files ------------------------------------------------------------------------------------

INFO_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")  # cmd/go's modinfo sentinels
INFO_END = bytes.fromhex("f932433186182072008242104116d8f2")
OLD_MODINFO = ("path\texample.com/old\nmod\texample.com/old\t(devel)\t\n"
               "dep\tgithub.com/aws/aws-lambda-go\tv1.17.0\th1:x=\n")
BASE = 0x10000


def pointer_format_elf(*, bits: int = 64, order: str = "<", sections: bool = True,
                       modinfo_text: str = OLD_MODINFO) -> bytes:
    """An executable laid out the way Go < 1.18 wrote build info: one RW PT_LOAD holding, at a 16-aligned
    offset, the 32-byte header whose two pointers lead to Go string headers {data, len}, then the strings.
    With `sections`, a .go.buildinfo section names the header; without, the PT_LOAD fallback must find it."""
    w = "Q" if bits == 64 else "I"
    ptr = bits // 8
    ehsize, phsize, shsize = (64, 56, 64) if bits == 64 else (52, 32, 40)
    info = 0x100
    version, modinfo = b"go1.16.15", INFO_START + modinfo_text.encode() + INFO_END
    headers = info + 32  # the two string headers
    strings = headers + 4 * ptr
    blob = bytearray(info)
    blob += (b"\xff Go buildinf:" + bytes([ptr, 1 if order == ">" else 0])
             + struct.pack(f"{order}{w}{w}", BASE + headers, BASE + headers + 2 * ptr)).ljust(32, b"\0")
    blob += struct.pack(f"{order}{w}{w}{w}{w}", BASE + strings, len(version),
                        BASE + strings + len(version), len(modinfo))
    blob += version + modinfo
    load_size = len(blob)

    shoff = shnum = shstrndx = 0
    if sections:
        names = b"\0.go.buildinfo\0.shstrtab\0"
        names_at = len(blob)
        blob += names
        blob += bytes(-len(blob) % 8)
        shoff, shnum, shstrndx = len(blob), 3, 2
        for name, kind, flags, addr, off, size in ((0, 0, 0, 0, 0, 0),
                                                   (1, 1, 3, BASE + info, info, 32),  # PROGBITS, WA
                                                   (15, 3, 0, 0, names_at, len(names))):  # STRTAB
            blob += struct.pack(f"{order}II{w}{w}{w}{w}II{w}{w}", name, kind, flags, addr, off, size,
                                0, 0, 1, 0)

    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 2 if order == ">" else 1, 1]) + bytes(9)
    machine = 183 if bits == 64 and order == "<" else 20  # AArch64; PPC for the other layouts
    struct.pack_into(f"{order}16sHHI{w}{w}{w}IHHHHHH", blob, 0, ident, 2, machine, 1, BASE, ehsize, shoff, 0,
                     ehsize, phsize, 1, shsize, shnum, shstrndx)
    if bits == 64:  # PT_LOAD, PF_R|PF_W
        struct.pack_into(f"{order}IIQQQQQQ", blob, ehsize, 1, 6, 0, BASE, BASE, load_size, load_size, 0x1000)
    else:
        struct.pack_into(f"{order}IIIIIIII", blob, ehsize, 1, 0, BASE, BASE, load_size, load_size, 6, 0x1000)
    return bytes(blob)


@pytest.mark.parametrize(("bits", "order", "sections"), [(64, "<", True), (64, "<", False), (32, ">", True),
                                                         (32, "<", False)])
def test_pre_1_18_pointer_format(bits: int, order: str, sections: bool, tmp_path: Path) -> None:
    path = tmp_path / "old"
    path.write_bytes(pointer_format_elf(bits=bits, order=order, sections=sections))
    report = read_binary(path)
    assert report.problems == []
    assert report.go is not None
    assert report.go_version == "go1.16.15"
    assert report.go.modinfo == OLD_MODINFO
    assert report.go.path == "example.com/old" and report.lambda_go_version == "v1.17.0"
    assert (report.elf_class, report.endianness) == (bits, "big" if order == ">" else "little")


def test_pre_1_18_pointer_format_is_judged(tmp_path: Path) -> None:
    path = tmp_path / "old"
    path.write_bytes(pointer_format_elf())
    assert checks(verify_path(path, AL2023).findings) == {("runtime-client", "error"), ("norpc", "warning")}


def _patched(data: bytes, fmt: str, offset: int, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


_GOOD = pointer_format_elf()
_SHOFF = struct.unpack_from("<Q", _GOOD, 40)[0]
HOSTILE_FILES = {
    "empty": (b"", "empty"),
    "random bytes": (bytes(range(7, 250, 3)), "not an ELF file"),
    "mach-o": (b"\xcf\xfa\xed\xfe" + bytes(60), "Mach-O"),
    "ELF magic only": (b"\x7fELF", "no complete ELF header"),
    "invalid class": (b"\x7fELF\x07" + _GOOD[5:], "no complete ELF header"),
    "invalid byte order": (b"\x7fELF\x02\x05" + _GOOD[6:], "byte order"),
    "header cut short": (_GOOD[:40], "no complete ELF header"),
    "truncated": (_GOOD[:0x130], "past the end of the file"),
    "absurd e_phoff": (_patched(_GOOD, "<Q", 32, 1 << 62), "program header table"),
    "absurd e_shoff": (_patched(_GOOD, "<Q", 40, 1 << 62), "section header table"),
    "absurd e_phnum": (_patched(_GOOD, "<H", 56, 0xFFFF), "program header table"),
    "wrong e_phentsize": (_patched(_GOOD, "<H", 54, 1), "program header entries"),
    "zero e_shentsize": (_patched(_GOOD, "<H", 58, 0), "section header entries"),
    # e_shnum 0 means "the count is in section 0's sh_size": make that count 2**63.
    "extended section count": (_patched(_patched(_GOOD, "<H", 60, 0), "<Q", _SHOFF + 32, 1 << 63),
                               "section header table"),
    "huge section": (_patched(_GOOD, "<Q", _SHOFF + 64 + 32, 1 << 60), "section .go.buildinfo"),
    "huge segment": (_patched(_GOOD, "<Q", 64 + 32, 1 << 60), "PT_LOAD segment"),
    "bad shstrndx": (_patched(_GOOD, "<H", 62, 999), "the section headers or a section they describe cannot be"),
    "string pointer outside": (_patched(_GOOD, "<Q", 0x120, 0xDEAD0000), "corrupt Go build info"),
}


@pytest.mark.parametrize("name", list(HOSTILE_FILES))
def test_hostile_file_gives_one_clear_finding(name: str, tmp_path: Path) -> None:
    content, words = HOSTILE_FILES[name]
    path = tmp_path / "bootstrap"
    path.write_bytes(content)
    assert_one_read_error(path, words)


@pytest.mark.parametrize(("name", "ending"), [
    ("absurd e_phoff", "Lambda would fail with `exec format error`; build it with GOOS=linux GOARCH=arm64"),
    ("huge segment", "Lambda would fail with `exec format error`; build it with GOOS=linux GOARCH=arm64"),
    # The kernel never reads sections: the file may even start, so "damaged", not "exec format error".
    ("absurd e_shoff", "the file is damaged; rebuild it"),
    ("bad shstrndx", "the file is damaged; rebuild it"),
    ("string pointer outside", "the file is damaged; rebuild it"),
])
def test_what_the_kernel_reads_decides_the_verdict(name: str, ending: str, tmp_path: Path) -> None:
    path = tmp_path / "bootstrap"
    path.write_bytes(HOSTILE_FILES[name][0])
    [f] = verify_path(path, AL2023).findings
    assert f.message.endswith(ending), f.message


def test_corrupt_version_needs_are_named(cgo_bin: Path, tmp_path: Path) -> None:
    """The first version need's aux offset points past the end: pyelftools' short read becomes a sentence."""
    data = bytearray(cgo_bin.read_bytes())
    with open(cgo_bin, "rb") as f:
        verneed = ELFFile(f).get_section_by_name(".gnu.version_r")["sh_offset"]
    struct.pack_into("<I", data, verneed + 8, 0x7FFFFF00)  # Elf64_Verneed.vn_aux
    path = tmp_path / "cgo"
    path.write_bytes(bytes(data))
    [f] = verify_path(path, AL2023).findings
    assert f.message == ("cgo: corrupt ELF: the symbol version needs (.gnu.version_r) cannot be parsed "
                         "(corrupt or truncated): the file is damaged; rebuild it")


def test_a_bug_in_the_reader_is_not_dressed_up_as_a_finding(monkeypatch: pytest.MonkeyPatch,
                                                             cgo_bin: Path) -> None:
    """Only the parsers' errors become findings, so the fuzz tests below can catch the reader's own bugs."""
    def broken(section: object) -> list[str]:
        raise KeyError("a bug")

    monkeypatch.setattr(verify, "_glibc_versions", broken)
    with pytest.raises(KeyError, match="a bug"):
        read_binary(cgo_bin)


def assert_one_read_error(path: Path, words: str) -> None:
    v = verify_path(path, AL2023)
    assert len(v.findings) == 1, v.findings
    [f] = v.findings
    assert (f.check, f.severity) == ("read", "error")
    assert words in f.message and ";" in f.message  # the problem, then what to do
    assert not v.ok and format_table([v]) and json.dumps(v.to_json())


def test_hostile_paths_give_one_clear_finding(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "file").write_text("x")
    for path, words in ((tmp_path / "missing", "does not exist"), (tmp_path, "is a directory"),
                        (tmp_path / "a", "symlink loop"), (tmp_path / "dangling", "gone, which does not exist"),
                        (tmp_path / "fifo", "not a regular file"),
                        (tmp_path / "file" / "x", "not a directory")):
        assert_one_read_error(path, words)


def test_permission_denied_gives_one_clear_finding() -> None:
    """Root reads anything, so a forked child drops to nobody first when the suite runs as root. A readable
    file beside the unreadable one shows the directory itself is reachable."""
    where = Path(tempfile.mkdtemp(prefix="verify-perm-"))
    try:
        where.chmod(0o755)
        (where / "readable").write_bytes(_GOOD)
        secret = where / "bootstrap"
        secret.write_bytes(_GOOD)
        secret.chmod(0)
        out = _in_child_as_nobody(lambda: json.dumps([verify_path(where / name, AL2023).to_json()
                                                      for name in ("readable", "bootstrap")]))
        readable, unreadable = json.loads(out)
        assert readable["go_version"] == "go1.16.15"
        [f] = unreadable["findings"]
        assert f["check"] == "read" and "permission denied" in f["message"] and "chmod" in f["message"]
    finally:
        shutil.rmtree(where)


def _in_child_as_nobody(work: Callable[[], str]) -> str:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            os.write(write_end, work().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    return out


# --- fuzz ---------------------------------------------------------------------------------------------------

def _survives(path: Path) -> BinaryReport:
    # read_binary maps only the parsers' own errors; anything else (a bug in the reader) fails the test here.
    report = read_binary(path)
    assert isinstance(report, BinaryReport)
    for problem in report.problems:  # fixed sentences, never a parser's internals
        assert problem.isprintable() and "Error(" not in problem and "expected " not in problem, problem
    verdict = Verdict(report, judge(report, AL2023))
    assert all(f.message.isprintable() for f in verdict.findings), verdict.findings
    format_table([verdict]).encode()
    json.dumps(verdict.to_json(), ensure_ascii=False).encode()
    if report.problems:
        assert len(verdict.findings) == len(report.problems)
    return report


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


FUZZ = settings(max_examples=300, deadline=timedelta(seconds=3),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(st.one_of(st.binary(max_size=2048), st.binary(max_size=2048).map(lambda b: b"\x7fELF" + b)))
def test_fuzz_random_bytes(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "random"
    path.write_bytes(data)
    _survives(path)


def _mutations(size: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    return st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)), min_size=1, max_size=8)


@FUZZ
@given(st.integers(0, len(_GOOD)), _mutations(len(_GOOD)), st.booleans())
def test_fuzz_mutated_hand_made_elf(fuzz_dir: Path, cut: int, mutations: list[tuple[int, int]],
                                    sections: bool) -> None:
    data = bytearray(pointer_format_elf(sections=sections))
    for offset, value in mutations:
        data[offset % len(data)] = value
    path = fuzz_dir / "handmade"
    path.write_bytes(bytes(data[:cut]) if cut else bytes(data))
    _survives(path)


RealElf = tuple[Path, bytes, list[int]]  # a scratch copy, the original bytes, offsets worth corrupting


@pytest.fixture(scope="module")
def real_elf_regions(cgo_bin: Path, fuzz_dir: Path) -> RealElf:
    """A copy of a real dynamic Go binary and the offsets worth corrupting: the ELF header, program and
    section headers, and what the reader interprets (interpreter, dynamic table, version needs, build info)."""
    original = cgo_bin.read_bytes()
    copy = fuzz_dir / "real"
    copy.write_bytes(original)
    with open(cgo_bin, "rb") as f:
        elf = ELFFile(f)
        tables = [(0, 64), (elf["e_phoff"], 56 * elf["e_phnum"]), (elf["e_shoff"], 64 * elf["e_shnum"])]
        parts = [(sec["sh_offset"], min(sec["sh_size"], 256)) for sec in elf.iter_sections()
                 if sec.name in (".interp", ".dynamic", ".dynstr", ".gnu.version_r", ".go.buildinfo")]
    assert len(parts) == 5
    return copy, original, [offset for start, size in tables + parts for offset in range(start, start + size)]


def _patch(path: Path, changes: Iterator[tuple[int, int]]) -> None:
    with open(path, "r+b") as f:
        for offset, value in changes:
            f.seek(offset)
            f.write(bytes([value]))


@FUZZ
@given(st.data())
def test_fuzz_mutated_real_go_binary(real_elf_regions: RealElf, data: st.DataObject) -> None:
    path, original, offsets = real_elf_regions
    change = st.tuples(st.sampled_from(offsets), st.integers(0, 255))
    picks = data.draw(st.lists(change, min_size=1, max_size=6))
    _patch(path, iter(picks))
    try:
        _survives(path)
    finally:
        _patch(path, ((offset, original[offset]) for offset, _ in picks))


@FUZZ
@given(st.integers(0, 64 * 1024), _mutations(64 * 1024))
def test_fuzz_mutated_real_go_prefix(real_elf_regions: RealElf, fuzz_dir: Path, cut: int,
                                     mutations: list[tuple[int, int]]) -> None:
    data = bytearray(real_elf_regions[1][:cut])
    for offset, value in mutations:
        if offset < len(data):
            data[offset] = value
    path = fuzz_dir / "prefix"
    path.write_bytes(bytes(data))
    _survives(path)
