"""What a file given as a Lambda binary is: `read_binary(path) -> BinaryReport`, verify's input.

Pure: the file is read (pyelftools, and buildinfo.py for the Go build info, over an mmap), never run.
`read_binary` turns whatever it is given into a `BinaryReport`, however broken the input: the parsers' own
errors become one fixed sentence naming the part of the file that is corrupt. Only those are caught, so a
bug in the reader still surfaces as a bug (the fuzz tests rely on that).
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from go_arm_lambda import buildinfo
from go_arm_lambda.buildinfo import GoBuildInfo
from go_arm_lambda.errors import one_line

LAMBDA_GO = "github.com/aws/aws-lambda-go"
# Version names that are not GLIBC_x.y but still demand a glibc at least this new.
_GLIBC_MARKERS = {"GLIBC_ABI_DT_RELR": (2, 36)}

_ELF_MAGIC = b"\x7fELF"

_ARCH_NAMES = {"EM_AARCH64": "aarch64", "EM_X86_64": "x86-64", "EM_ARM": "arm", "EM_386": "x86",
               "EM_RISCV": "riscv", "EM_PPC64": "ppc64", "EM_S390": "s390x", "EM_MIPS": "mips"}
# Files people pass by mistake, recognised by their first bytes.
_FOREIGN = ((b"\xcf\xfa\xed\xfe", "a Mach-O executable for macOS (GOOS=darwin)"),
            (b"\xca\xfe\xba\xbe", "a Mach-O universal binary for macOS"),
            (b"MZ", "a Windows executable (GOOS=windows)"),
            (b"#!", "a script"),
            (b"!<arch>\n", "an ar archive (a Go package archive or C static library, not a program)"))

# The fix for a file built for another platform, in the reader's problems and verify's findings alike.
REBUILD = "build it with GOOS=linux GOARCH=arm64"
_WONT_START = f"Lambda would fail with `exec format error`; {REBUILD}"


@dataclass
class BinaryReport:
    path: Path
    size: int | None = None  # None: the file could not be read at all
    is_elf: bool = False
    elf_class: int | None = None  # 32 or 64
    endianness: Literal["little", "big"] | None = None
    arch: str | None = None  # "aarch64", "x86-64", "arm", ... (unknown machines: e_machine without EM_)
    elf_type: str | None = None  # "EXEC", "DYN", "REL", "CORE", ...
    entry: int | None = None  # e_entry; 0 in a shared library
    static: bool | None = None
    interpreter: str | None = None
    glibc_required: list[str] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)
    go: GoBuildInfo | None = None
    problems: list[str] = field(default_factory=list)  # each a complete "what; what to do" sentence

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def go_version(self) -> str | None:
        return self.go.go_version if self.go else None

    @property
    def lambda_go_version(self) -> str | None:
        return self.go.deps.get(LAMBDA_GO) if self.go else None


class _Corrupt(Exception):
    """The file is an ELF whose headers cannot be trusted, so the kernel would refuse it too; the message is
    the finding."""


class _Damaged(_Corrupt):
    """The headers the kernel reads are sound, but a part only tools read (sections, the dynamic table, the
    Go build info) is not: it might even start, but it is not the file the toolchain wrote."""


@contextmanager
def _parsing(part: str, error: type[_Corrupt] = _Corrupt) -> Iterator[None]:
    """pyelftools and construct raise their own errors on bad bytes, worded for their authors (`expected 4,
    found 0`); the user needs to know which part of the file is broken."""
    try:
        yield
    except (ELFError, ConstructError):
        raise error(f"corrupt ELF: {part} cannot be parsed (corrupt or truncated)") from None


def read_binary(path: Path) -> BinaryReport:
    """Everything verify needs to know about one file. Bad input never raises: an unreadable path, a file
    that is not ELF or a corrupt one becomes `report.problems`. Only a bug in the reader would."""
    report = BinaryReport(path=Path(path))
    try:
        st = os.stat(path)  # follows symlinks, so a loop or a dangling link surfaces here
        if stat.S_ISDIR(st.st_mode):
            report.problems.append(f"{path} is a directory; pass the binary inside it")
            return report
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO would block; a device is never a Lambda binary.
            report.problems.append(f"{path} is not a regular file; pass the built binary")
            return report
        with open(path, "rb") as f:
            report.size = os.fstat(f.fileno()).st_size
            if report.size == 0:
                report.problems.append(f"{report.name} is empty (0 bytes): {_WONT_START}")
                return report
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                _read_elf(mm, report)
    except OSError as exc:
        report.problems.append(_os_problem(path, exc))
    except _Damaged as exc:
        report.problems.append(f"{report.name}: {exc}: the file is damaged; rebuild it")
    except _Corrupt as exc:
        report.problems.append(f"{report.name}: {exc}: {_WONT_START}")
    return report


def _os_problem(path: Path, exc: OSError) -> str:
    fixes = {errno.ENOENT: ("does not exist", "check the path, or build the binary first"),
             errno.EACCES: ("cannot be read: permission denied", "make it readable (chmod +r)"),
             errno.EPERM: ("cannot be read: permission denied", "make it readable (chmod +r)"),
             errno.ELOOP: ("is a symlink loop", "point the link at the binary"),
             errno.ENOTDIR: ("is not a path to a file (a parent is not a directory)", "check the path"),
             errno.EISDIR: ("is a directory", "pass the binary inside it")}
    what, fix = fixes.get(exc.errno or 0, (f"cannot be read: {exc.strerror or exc}", "check the file"))
    if exc.errno == errno.ENOENT and os.path.islink(path):
        what, fix = f"is a symlink to {os.readlink(path)}, which does not exist", "point the link at the binary"
    return f"{path} {what}; {fix}"


def _describe_foreign(head: bytes) -> str:
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            return f"but {what}"
    return "(it starts with " + " ".join(f"{b:02x}" for b in head[:4]) + ")"


class _Stream:
    """The mapped file as the stream pyelftools reads. Any offset may be sought, and reading past the end
    comes back short, which pyelftools reports as its own parse error. A real file object refuses offsets
    past 2**62 (OSError EINVAL) or 2**63 (ValueError), and an mmap any offset past its end (ValueError):
    hostile offsets would otherwise surface as errors that say nothing about the file."""

    def __init__(self, mm: mmap.mmap) -> None:
        self._mm = mm
        self._pos = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self._mm)}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if self._pos < 0:  # a negative offset holds nothing, as the end of the file does
            return b""
        end = len(self._mm) if size is None or size < 0 else self._pos + size
        data = self._mm[self._pos:end]
        self._pos += len(data)
        return data


def _read_elf(mm: mmap.mmap, report: BinaryReport) -> None:
    size = len(mm)
    if mm[:4] != _ELF_MAGIC:
        if mm[:4] == b"PK\x03\x04":  # a function zip given by mistake: the binary in it may be fine
            report.problems.append(f"{report.name} is a zip archive, not a binary: verify the binary inside it "
                                   "(unzip it first), or run it with `go-arm-lambda smoke --zip`")
            return
        what = _describe_foreign(mm[:8])
        report.problems.append(f"{report.name} is not an ELF file {what}: {_WONT_START}")
        return
    report.is_elf = True
    ident = mm[:16]
    header_size = {1: 52, 2: 64}.get(ident[4]) if len(ident) == 16 else None
    if header_size is not None and ident[5] not in (1, 2):
        raise _Corrupt(f"corrupt ELF: invalid byte order {ident[5]} in the header")
    if header_size is None or size < header_size:
        raise _Corrupt(f"truncated or corrupt ELF: the file is {size} bytes and has no complete ELF header")
    with _parsing("the ELF header"):
        elf = ELFFile(_Stream(mm))  # type: ignore[arg-type]  # a read-only stream is all pyelftools uses
        report.elf_class = elf.elfclass
        report.endianness = "little" if elf.little_endian else "big"
        machine = str(elf["e_machine"])
        report.arch = _ARCH_NAMES.get(machine, machine.removeprefix("EM_").lower())
        report.elf_type = str(elf["e_type"]).removeprefix("ET_")
        report.entry = elf["e_entry"]
    _check_tables(elf, size)

    loads: list[buildinfo.Load] = []
    dynamic = False
    with _parsing("the program headers"):
        segments = list(elf.iter_segments())
    for seg in segments:
        kind = seg["p_type"]
        _within(size, seg["p_offset"], seg["p_filesz"], f"a {kind} segment")
        if kind == "PT_LOAD":
            loads.append(buildinfo.Load(seg["p_vaddr"], seg["p_offset"], seg["p_filesz"], seg["p_memsz"],
                                        seg["p_flags"]))
        elif kind == "PT_INTERP":
            raw = mm[seg["p_offset"]:seg["p_offset"] + seg["p_filesz"]].split(b"\0")[0]
            report.interpreter = raw.decode("utf-8", "replace")
        elif kind == "PT_DYNAMIC":
            dynamic = True
            if isinstance(seg, DynamicSegment):
                with _parsing("the dynamic section (the list of shared libraries)", _Damaged):
                    report.needed = [str(t.needed) for t in seg.iter_tags("DT_NEEDED")]
    report.static = report.interpreter is None and not dynamic
    if elf.num_sections():
        with _parsing("the section headers or a section they describe", _Damaged):
            verneed = elf.get_section_by_name(".gnu.version_r")
        if isinstance(verneed, GNUVerNeedSection):
            with _parsing("the symbol version needs (.gnu.version_r)", _Damaged):
                report.glibc_required = _glibc_versions(verneed)
    with _parsing("the section headers or a section they describe", _Damaged):
        section = elf.get_section_by_name(".go.buildinfo") if elf.num_sections() else None
    window = (section["sh_addr"], section["sh_size"]) if section is not None else None
    try:
        report.go = buildinfo.read(mm, loads, window)
    except buildinfo.Damaged as exc:
        raise _Damaged(str(exc)) from None


def _within(size: int, offset: int, length: int, what: str, error: type[_Corrupt] = _Corrupt) -> None:
    if offset + length > size:
        raise error(f"truncated or corrupt ELF: {what} at offset {offset:#x} (+{length} bytes) lies past "
                    f"the end of the file ({size} bytes)")


def _check_tables(elf: ELFFile, size: int) -> None:
    """Bounds-check the header tables before pyelftools walks them, so absurd counts cannot make it loop or
    seek far past the end (e_shnum can come from section 0's sh_size, a 64-bit number)."""
    entry = {"phentsize": 56 if elf.elfclass == 64 else 32, "shentsize": 64 if elf.elfclass == 64 else 40}
    phnum = elf["e_phnum"]
    if phnum:
        if elf["e_phentsize"] != entry["phentsize"]:
            raise _Corrupt(f"corrupt ELF: program header entries are {elf['e_phentsize']} bytes, "
                           f"not {entry['phentsize']}")
        _within(size, elf["e_phoff"], phnum * entry["phentsize"], "the program header table")
    # The kernel never reads sections: a broken table is damage (tools trip over it), not `exec format error`.
    if elf["e_shoff"]:
        _within(size, elf["e_shoff"], entry["shentsize"], "the section header table", _Damaged)
        if elf["e_shentsize"] != entry["shentsize"]:
            raise _Damaged(f"corrupt ELF: section header entries are {elf['e_shentsize']} bytes, "
                           f"not {entry['shentsize']}")
        with _parsing("the section header table", _Damaged):
            count = elf.num_sections()
        _within(size, elf["e_shoff"], count * entry["shentsize"], "the section header table", _Damaged)
        with _parsing("the section headers or a section they describe", _Damaged):
            sections = list(elf.iter_sections())
        for sec in sections:
            if sec["sh_type"] != "SHT_NOBITS":
                _within(size, sec["sh_offset"], sec["sh_size"], f"section {one_line(sec.name) or '?'}", _Damaged)


def glibc_key(name: str) -> tuple[int, ...]:
    """A glibc version name as a comparable tuple; () for a name that is not one."""
    if name in _GLIBC_MARKERS:
        return _GLIBC_MARKERS[name]
    m = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?", name, re.ASCII)  # a forged name may hold any digits
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


# Entries in .gnu.version_r a reader walks at most: a program has a few dozen. The counts in the section are
# the file's word (32 and 16 bits), and a forged one would keep the walk going for billions of steps.
MAX_VERSION_ENTRIES = 10_000


def _glibc_versions(section: GNUVerNeedSection) -> list[str]:
    names: set[str] = set()
    entries = 0
    for _, auxes in section.iter_versions():
        for aux in auxes:
            names.add(str(aux.name))
            entries += 1
            if entries > MAX_VERSION_ENTRIES:
                break
        entries += 1
        if entries > MAX_VERSION_ENTRIES:
            raise _Damaged(f"corrupt ELF: the symbol version needs (.gnu.version_r) hold more than "
                           f"{MAX_VERSION_ENTRIES:,} entries, which no linker writes")
    return sorted((n for n in names if glibc_key(n)), key=glibc_key)
