"""binary: hostile files, hostile paths and fuzzed bytes all become one clear finding, never an exception;
only a bug in the reader itself escapes."""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from go_arm_lambda import binary
from go_arm_lambda.binary import BinaryReport, read_binary
from go_arm_lambda.verify import Policy, Verdict, format_table, judge, verify_path
from gobinaries import pointer_format_elf

AL2023 = Policy()


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


def test_version_needs_that_never_end_are_refused_not_walked(cgo_bin: Path, tmp_path: Path) -> None:
    """A forged count of 2**32-1 version needs, each pointing back at itself (vn_next 0): walked, it would take
    hours; the reader stops past any real program's count."""
    data = bytearray(cgo_bin.read_bytes())
    with open(cgo_bin, "rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".gnu.version_r")
        verneed = elf.get_section(index)["sh_offset"]
        header = elf["e_shoff"] + index * elf["e_shentsize"]
    struct.pack_into("<I", data, header + 44, 0xFFFFFFFF)  # Elf64_Shdr.sh_info: the number of entries
    struct.pack_into("<I", data, verneed + 12, 0)  # Elf64_Verneed.vn_next: the same entry again
    path = tmp_path / "cgo"
    path.write_bytes(bytes(data))
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(verify_path(path, AL2023)), daemon=True)
    reader.start()
    reader.join(60)
    assert found, "the reader walked the forged version needs for over a minute"
    [f] = found[0].findings  # type: ignore[attr-defined]
    assert f.message == ("cgo: corrupt ELF: the symbol version needs (.gnu.version_r) hold more than 10,000 "
                         "entries, which no linker writes: the file is damaged; rebuild it")


def test_a_bug_in_the_reader_is_not_dressed_up_as_a_finding(monkeypatch: pytest.MonkeyPatch,
                                                             cgo_bin: Path) -> None:
    """Only the parsers' errors become findings, so the fuzz tests below can catch the reader's own bugs."""
    def broken(section: object) -> list[str]:
        raise KeyError("a bug")

    monkeypatch.setattr(binary, "_glibc_versions", broken)
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
