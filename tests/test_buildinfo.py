"""buildinfo: what `go version -m` prints, read from real builds (with and without section headers), from
hand-made Go < 1.18 layouts, and from bare bytes with no ELF library involved."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from conftest import require_tool
from go_arm_lambda import buildinfo, proc
from go_arm_lambda.binary import read_binary
from go_arm_lambda.buildinfo import parse_modinfo
from gobinaries import BASE, INFO_END, INFO_START, OLD_MODINFO, pointer_format_elf

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


def test_the_old_layout_is_read_from_bare_bytes() -> None:
    """No ELF library: the bytes and the one PT_LOAD segment are enough, found through the data segment."""
    data = pointer_format_elf()
    load = buildinfo.Load(vaddr=BASE, offset=0, filesz=len(data), memsz=len(data), flags=buildinfo.PF_W | 4)
    info = buildinfo.read(data, [load], None)
    assert info is not None and (info.go_version, info.modinfo) == ("go1.16.15", OLD_MODINFO)


# --- the Go >= 1.18 inline layout, built byte by byte ---------------------------------------------------------

VADDR = 0x4000
MODINFO = "path\texample.com/fn\nmod\texample.com/fn\t(devel)\t\nbuild\tGOARCH=arm64\n"


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def inline_image(*, lead: bytes = b"", version: bytes = b"go1.26.0", modinfo: bytes | None = None,
                 tail: bytes | None = None) -> bytes:
    """`lead` bytes, then the 32-byte header (pointer size 8, flags: inline strings), then both strings;
    `tail` replaces everything after the header."""
    framed = INFO_START + MODINFO.encode() + INFO_END if modinfo is None else modinfo
    header = (b"\xff Go buildinf:" + bytes([8, 2])).ljust(32, b"\0")
    body = uvarint(len(version)) + version + uvarint(len(framed)) + framed if tail is None else tail
    return lead + header + body


def read_inline(image: bytes) -> buildinfo.GoBuildInfo | None:
    load = buildinfo.Load(vaddr=VADDR, offset=0, filesz=len(image), memsz=len(image), flags=buildinfo.PF_W)
    return buildinfo.read(image, [load], (VADDR, len(image)))


def test_the_inline_layout_is_read() -> None:
    info = read_inline(inline_image())
    assert info is not None and info.go_version == "go1.26.0" and info.path == "example.com/fn"
    assert info.settings == {"GOARCH": "arm64"} and info.modinfo == MODINFO


def test_a_modinfo_without_its_sentinels_is_dropped_as_go_does() -> None:
    info = read_inline(inline_image(modinfo=MODINFO.encode()))
    assert info is not None and info.go_version == "go1.26.0" and (info.modinfo, info.path) == ("", "")


def test_the_magic_counts_only_at_a_16_byte_boundary() -> None:
    assert read_inline(inline_image(lead=bytes(8))) is None
    assert read_inline(inline_image(lead=bytes(16))) is not None


@pytest.mark.parametrize(("image", "says"), [
    (inline_image()[:20], "the header is cut short"),
    (inline_image(tail=b"\x80" * 10), "a string length is unreadable"),
    (inline_image(tail=uvarint(9 * 1024 * 1024)), "a string length is unreadable"),
    (inline_image(tail=uvarint(100) + b"go1.26"), "a string runs past its segment"),
    (inline_image(version=b""), "no Go version in it"),
])
def test_damaged_inline_build_info_names_what_is_wrong(image: bytes, says: str) -> None:
    with pytest.raises(buildinfo.Damaged) as info:
        read_inline(image)
    assert str(info.value) == f"corrupt Go build info: {says}"
